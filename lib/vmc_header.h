/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Encrypted-file header (format object 1): parse and check it without keys,
 * create one for a new file, and seal / open the DEK in its key slots.
 * Everything that reads or writes file headers goes through here: the daemon,
 * vmcryptfs-ctl and vmcryptfs-util.
 */
#ifndef VMC_HEADER_H
#define VMC_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmc_format.h"

enum vmc_slot_status {
	VMC_SLOT_EMPTY = 0,
	VMC_SLOT_OK,
	VMC_SLOT_DAMAGED,
};

/* What a slot says, as far as can be checked without keys. */
struct vmc_hdr_slot {
	enum vmc_slot_status status;
	uint64_t generation;
	char provider[VMC_FMT_PROVIDER_MAX];
	char kek_id[VMC_FMT_KEKID_MAX];
	char damage[96]; /* why the slot is DAMAGED */
};

/* A parsed header: the exact bytes plus decoded fields. */
struct vmc_hdr {
	struct vmc_fmt_file_header raw;
	uint16_t version;
	uint8_t file_class;
	uint64_t created;
	struct vmc_hdr_slot slots[VMC_FMT_NSLOTS];
	/* An interrupted truncate (raw.trunc): the file is new_size bytes
	 * long, with raw.trunc.bytes at off in its final unit. */
	bool trunc_pending;
	uint64_t trunc_size;
	uint16_t trunc_off;
	uint8_t trunc_len;
};

/* Result of looking at the first bytes of a backing file. */
enum vmc_probe {
	VMC_PROBE_CLEAR,     /* no vmcryptfs magic: a cleartext file */
	VMC_PROBE_ENCRYPTED, /* starts with the magic of a file header */
};

/*
 * Look at the first @len bytes (up to 4096) of a file. A file is encrypted
 * when it starts with the prefix of a file header, and also, so that damage
 * to those 16 bytes is not mistaken for a cleartext file, when its magic is
 * off by at most two bytes or a key slot's checksum is intact.
 */
enum vmc_probe vmc_hdr_probe(const void *buf, size_t len);

/*
 * Parse and check a header from @len bytes at @buf (len < 4096 means the
 * backing file is shorter than a header). Checks magic, version, flags,
 * cipher, sizes and checksums, and that at least one slot is usable.
 * Returns 0, -EPROTONOSUPPORT for a newer version or unknown required
 * feature, or -EUCLEAN for a damaged header; @err says what is wrong.
 */
int vmc_hdr_parse(struct vmc_hdr *h, const void *buf, size_t len, char *err, size_t errlen);

/* Start a header for a new file: random file id, no slots. */
int vmc_hdr_create(struct vmc_hdr *h, uint8_t file_class, const uint8_t vm_uuid[16]);

/*
 * Wrap @dek (VMC_FMT_DEK_LEN bytes) into slot @slot under @wrap_key (derived
 * from the KEK named provider/kek_id), with a fresh random nonce. Updates the
 * raw bytes and checksums.
 */
int vmc_hdr_seal(struct vmc_hdr *h, int slot, const char *provider, const char *kek_id,
		 const uint8_t wrap_key[32], const uint8_t *dek, uint64_t generation);

/* Unwrap the DEK of slot @slot. -EKEYREJECTED when the tag does not verify. */
int vmc_hdr_unseal(const struct vmc_hdr *h, int slot, const uint8_t wrap_key[32], uint8_t *dek);

/*
 * Fill @t as the record of a truncate to @new_size whose final unit gets
 * @len (1..VMC_FMT_TRUNC_MAX) bytes of new ciphertext @bytes at @off
 * (off + len = new_size % unit size). -EINVAL if they do not fit.
 */
int vmc_hdr_trunc_fill(struct vmc_fmt_trunc *t, uint64_t new_size, uint16_t off,
		       const uint8_t *bytes, size_t len);

/* Empty slot @slot (all zeros). */
void vmc_hdr_clear_slot(struct vmc_hdr *h, int slot);

/* Highest generation among usable slots; 0 if none. */
uint64_t vmc_hdr_max_generation(const struct vmc_hdr *h);

const char *vmc_class_fmt_name(uint8_t file_class);

/* What vmc_hdr_examine found wrong, beyond its verdict. */
#define VMC_HDR_PROBLEMS_MAX 12
struct vmc_hdr_report {
	int verdict;            /* what vmc_hdr_parse returns for the same bytes */
	char verdict_msg[256];  /* and its message ("" when the verdict is 0) */
	bool truncated;         /* fewer than VMC_FMT_HDR_SIZE bytes */
	bool fixed_intact;      /* bytes 0..223 match the checksum at 224 */
	unsigned int nproblems; /* entries of @problems, in header order */
	char problems[VMC_HDR_PROBLEMS_MAX][128];
};

/*
 * Describe a header as far as it can be without keys, for inspection tools
 * (vmcryptfs-util envelope describe, scan). The verdict is vmc_hdr_parse's
 * (returned, and in @rep), so a tool never calls a header good that the
 * daemon refuses; but where vmc_hdr_parse stops at the first problem, this
 * goes on: the fields of the fixed part are decoded into @h as found
 * (h->version, h->file_class, h->created and the bytes in h->raw, zero past
 * @len), every key slot within @len is checked on its own (h->slots[]), and
 * each problem is listed in @rep: truncation, magic, type, version, checksum,
 * geometry, features, cipher, class, reserved bytes, each damaged slot.
 * A header that parses but has a damaged slot beside a usable one has
 * verdict 0 and that slot in @rep->problems. When the verdict is 0, @h is
 * exactly what vmc_hdr_parse gives.
 */
int vmc_hdr_examine(struct vmc_hdr *h, const void *buf, size_t len, struct vmc_hdr_report *rep);

#endif
