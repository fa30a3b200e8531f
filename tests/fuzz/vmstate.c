// SPDX-License-Identifier: GPL-2.0-or-later
/* Fuzz target: the VM key record parser (lib/vmc_vmstate.c). */
#include "vmc_vmstate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmc_vmstate s;
	char err[256];

	vmc_vmstate_parse(&s, data, size, err, sizeof(err));
	return 0;
}
