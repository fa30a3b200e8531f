// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Fuzz target: what vmcryptfs-util does with the first bytes of any file of
 * a backing store (cli/util_file.c): probe and, for a file that looks
 * encrypted, vmc_hdr_examine (vmc_hdr_parse, then every field and slot on
 * its own, also of truncated and damaged headers); the description that
 * envelope describe and scan print (util_file_json, every field of the
 * header as found, whatever its value); the key ids of usable slots as
 * password key ids (lib/vmc_pwkek.c); an unseal with a fixed key, which must
 * fail cleanly. Invariants: the examined verdict equals vmc_hdr_parse's; a
 * usable header has a usable slot; a damaged one lists at least one problem.
 * The input is the file's first bytes; its size is taken as the input's
 * size plus 4096 when it is a whole header, so logical sizes are exercised.
 */
#include "util_cli.h"
#include "vmc_pwkek.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The target has no key providers (util_main.c is not linked). */
int util_keyring(struct vmc_keyring **out, char *err, size_t errlen)
{
	(void)out;
	snprintf(err, errlen, "no key providers in the fuzz target");
	return -ENOKEY;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[32] = { 7 };
	static struct util_file f; /* large: not on the stack */
	struct vmc_hdr p;
	uint8_t dek[VMC_FMT_DEK_LEN];
	char err[256];
	size_t len = size < VMC_FMT_HDR_SIZE ? size : VMC_FMT_HDR_SIZE;
	int usable = 0;

	memset(&f, 0, sizeof(f));
	f.fd = -1;
	strcpy(f.path, "fuzz");
	f.st.st_size = (off_t)(size == VMC_FMT_HDR_SIZE ? 2 * size : size);
	util_file_examine(&f, data, len);
	json_object_put(util_file_json(&f));
	if (!f.encrypted)
		return 0;
	if (f.verdict != vmc_hdr_parse(&p, data, len, err, sizeof(err)))
		abort();
	if (f.verdict && !f.rep.nproblems)
		abort();
	for (int i = 0; i < VMC_FMT_NSLOTS; i++) {
		struct vmc_pwkek_params pp;

		if (f.hdr.slots[i].status != VMC_SLOT_OK)
			continue;
		usable++;
		if (!memchr(f.hdr.slots[i].kek_id, '\0', sizeof(f.hdr.slots[i].kek_id)))
			abort();
		vmc_pwkek_id_parse(f.hdr.slots[i].kek_id, &pp);
		if (!f.verdict)
			vmc_hdr_unseal(&f.hdr, i, key, dek);
	}
	if (!f.verdict && !usable)
		abort();
	return 0;
}
