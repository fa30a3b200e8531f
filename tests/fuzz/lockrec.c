// SPDX-License-Identifier: GPL-2.0-or-later
/* Fuzz target: the VM lock record parser (lib/vmc_lockrec.c); what parses
 * must format back to bytes that parse to the same record. */
#include "vmc_lockrec.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmc_lockrec r, back;
	uint8_t buf[VMC_LOCKREC_SIZE];
	char err[128];

	if (vmc_lockrec_parse(&r, data, size, err, sizeof(err)))
		return 0;
	if (vmc_lockrec_format(&r, buf) ||
	    vmc_lockrec_parse(&back, buf, sizeof(buf), err, sizeof(err)) ||
	    memcmp(&r, &back, sizeof(r)))
		abort();
	return 0;
}
