// SPDX-License-Identifier: GPL-2.0-or-later
/* Fuzz target: the configuration parser (lib/vmc_config.c). */
#include "vmc_config.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmc_config *cfg = NULL;
	char err[512], *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (!vmc_config_parse(text, "fuzz.conf", &cfg, err, sizeof(err)))
		vmc_config_free(cfg);
	free(text);
	return 0;
}
