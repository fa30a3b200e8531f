// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Fuzz target: the vmcrypt.policy parser (lib/vmc_config.c), as fed by any
 * VM directory. The configuration is the embedded default.
 */
#include "vmc_config.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vmc_config *cfg;
	struct vmc_vm_policy pol;
	char err[512], *text;

	if (!cfg && vmc_config_parse(vmc_config_default_text, "default", &cfg, err, sizeof(err)))
		abort();
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0'; /* the daemon refuses files with NUL bytes before parsing */
	vmc_policy_parse(text, "vmcrypt.policy", cfg, &pol, err, sizeof(err));
	free(text);
	return 0;
}
