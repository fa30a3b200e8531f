// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Fuzz target: the encrypted-file header parser and probe (lib/vmc_header.c),
 * as fed by any file in a backing store. When the input parses, unsealing a
 * usable slot with a fixed key must fail cleanly (the tag cannot verify).
 */
#include "vmc_header.h"
#include "vmc_crypto.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[32] = { 1, 2, 3 };
	struct vmc_hdr h;
	uint8_t dek[VMC_FMT_DEK_LEN];
	char err[256];

	vmc_hdr_probe(data, size);
	if (vmc_hdr_parse(&h, data, size, err, sizeof(err)))
		return 0;
	for (int i = 0; i < VMC_FMT_NSLOTS; i++)
		if (h.slots[i].status == VMC_SLOT_OK)
			vmc_hdr_unseal(&h, i, key, dek);
	return 0;
}
