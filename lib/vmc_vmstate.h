/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The VM key record (format object 2), ".vmcrypt.state" in the directory of
 * an encrypted VM: the VM's identity and the KEK that new files of the VM are
 * wrapped under (and, during a shallow rekey, the next one). It holds key ids,
 * never keys. Reading a file never needs it; creating one does.
 *
 * Written atomically: a temporary file, fsync, rename over the old record,
 * fsync of the directory. Opened with O_NOFOLLOW relative to the VM
 * directory's descriptor, so a planted symlink cannot redirect it.
 */
#ifndef VMC_VMSTATE_H
#define VMC_VMSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmc_format.h"

struct vmc_kekref {
	bool set;
	char provider[VMC_FMT_PROVIDER_MAX];
	char kek_id[VMC_FMT_KEKID_MAX];
	uint8_t key_check[32];
};

struct vmc_vmstate {
	uint8_t vm_uuid[16];
	uint64_t seq;
	uint64_t created;
	uint8_t state; /* VMC_FMT_VMSTATE_* */
	struct vmc_kekref current;
	struct vmc_kekref next;
};

/* Parse @len bytes; -EUCLEAN (damaged) or -EPROTONOSUPPORT with @err. */
int vmc_vmstate_parse(struct vmc_vmstate *s, const void *buf, size_t len, char *err,
		      size_t errlen);
void vmc_vmstate_encode(const struct vmc_vmstate *s, struct vmc_fmt_vmstate *out);

/*
 * Key check value binding a KEK to a VM: HMAC-SHA256 under the KEK's
 * key-check key over vm_uuid | provider (64, NUL padded) | kek_id (256).
 */
int vmc_vmstate_key_check(const uint8_t check_key[32], const uint8_t vm_uuid[16],
			  const char *provider, const char *kek_id, uint8_t out[32]);

/*
 * Read the record @name (VMC_FMT_STATE_NAME in a VM directory,
 * VMC_FMT_DATASTORE_NAME at the datastore root) of directory @dirfd:
 * 0, -ENOENT when there is none.
 */
int vmc_vmstate_read(int dirfd, const char *name, struct vmc_vmstate *s, char *err,
		     size_t errlen);
/* Replace it atomically (seq is incremented first). */
int vmc_vmstate_write(int dirfd, const char *name, struct vmc_vmstate *s);
/* Create it; -EEXIST (nothing written) when it exists, made by another host. */
int vmc_vmstate_create(int dirfd, const char *name, struct vmc_vmstate *s);

#endif
