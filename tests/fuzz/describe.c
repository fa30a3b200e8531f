// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Fuzz target: what vmcryptfs-util does with the first bytes of any file of
 * a backing store (cli/util_file.c): probe, and for a file that looks
 * encrypted, vmc_hdr_examine (which runs vmc_hdr_parse and then checks every
 * field and slot on its own, also of truncated and damaged headers), then the
 * key ids of usable slots as password key ids (lib/vmc_pwkek.c) and an
 * unseal with a fixed key, which must fail cleanly. Invariants: the examined
 * verdict equals vmc_hdr_parse's; a usable header has a usable slot; a
 * damaged one lists at least one problem.
 */
#include "vmc_header.h"
#include "vmc_pwkek.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[32] = { 7 };
	struct vmc_hdr_report rep;
	struct vmc_hdr h, p;
	uint8_t dek[VMC_FMT_DEK_LEN];
	char err[256];
	size_t len = size < VMC_FMT_HDR_SIZE ? size : VMC_FMT_HDR_SIZE;
	int usable = 0;

	if (vmc_hdr_probe(data, len) != VMC_PROBE_ENCRYPTED)
		return 0;
	if (vmc_hdr_examine(&h, data, len, &rep) != vmc_hdr_parse(&p, data, len, err, sizeof(err)))
		abort();
	if (rep.verdict && !rep.nproblems)
		abort();
	for (int i = 0; i < VMC_FMT_NSLOTS; i++) {
		struct vmc_pwkek_params pp;

		if (h.slots[i].status != VMC_SLOT_OK)
			continue;
		usable++;
		if (memchr(h.slots[i].kek_id, '\0', sizeof(h.slots[i].kek_id)) == NULL)
			abort();
		vmc_pwkek_id_parse(h.slots[i].kek_id, &pp);
		if (!rep.verdict)
			vmc_hdr_unseal(&h, i, key, dek);
	}
	if (!rep.verdict && !usable)
		abort();
	return 0;
}
