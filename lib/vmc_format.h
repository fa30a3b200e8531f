/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The on-disk structures of vmcryptfs, format version 1. docs/FORMAT.md is the
 * normative description; this header and that document change together.
 *
 * Every structure is packed, fixed-width and little-endian, starts with the
 * common magic, object type and version, and keeps explicit reserved fields
 * that writers zero; version-1 readers reject non-zero reserved bytes (a newer
 * writer announces new fields through the version or a feature flag).
 * Sizes and offsets are checked at compile time below.
 *
 * Objects:
 *   1. file header: the first 4096 bytes of every encrypted backing file;
 *   2. VM key record: ".vmcrypt.state" in an encrypted VM's directory;
 *   3. native primary key: the native key provider's key file on the host.
 */
#ifndef VMC_FORMAT_H
#define VMC_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define VMC_FMT_MAGIC "\x89VMCRYPTFS\r\n\x1a\n"
#define VMC_FMT_MAGIC_LEN 14

#define VMC_FMT_TYPE_FILE 1
#define VMC_FMT_TYPE_VMSTATE 2
#define VMC_FMT_TYPE_NATIVE_KEY 3

#define VMC_FMT_VERSION 1u

/* Data layout of an encrypted file. */
#define VMC_FMT_HDR_SIZE 4096u   /* header bytes before the first data unit */
#define VMC_FMT_UNIT_SHIFT 12u
#define VMC_FMT_UNIT_SIZE 4096u  /* AES-256-XTS data unit */

#define VMC_FMT_CIPHER_AES256_XTS 1

/* File classes recorded in the header (informative: audits, scans). */
#define VMC_FMT_CLASS_DISK 1
#define VMC_FMT_CLASS_HOME 2
#define VMC_FMT_CLASS_COREDUMP 3
#define VMC_FMT_CLASS_OTHER 4

#define VMC_FMT_NSLOTS 4
#define VMC_FMT_SLOT_EMPTY 0
#define VMC_FMT_SLOT_ACTIVE 1
#define VMC_FMT_WRAP_AES256_GCM 1 /* key = HKDF-SHA256(KEK, info "vmcryptfs/v1/dek-wrap") */
#define VMC_FMT_ROLE_DEK 1
#define VMC_FMT_PROVIDER_MAX 64   /* including NUL padding; names are 1..63 bytes */
#define VMC_FMT_KEKID_MAX 256     /* including NUL padding; ids are 1..255 bytes */
#define VMC_FMT_DEK_LEN 64

/* Names in a VM directory. The state file is hidden from the mount. */
#define VMC_FMT_POLICY_NAME "vmcrypt.policy"
#define VMC_FMT_STATE_NAME ".vmcrypt.state"
/* At the datastore root: a VM key record for the datastore itself. It exists
 * while encryption mode is on; its KEK encrypts core dumps outside VMs. */
#define VMC_FMT_DATASTORE_NAME ".vmcrypt.datastore"
/* A conversion in progress in a VM directory (docs/FORMAT.md, "Journal"). */
#define VMC_FMT_JOURNAL_NAME ".vmcrypt.journal"
#define VMC_FMT_CONV_TMP_NAME ".vmcrypt.conv.tmp"
/* At the datastore root: the lock files of VMs hosts write to, "vm.INODE"
 * (docs/FORMAT.md, "VM lock file"). */
#define VMC_FMT_LOCK_DIR ".vmcrypt.locks"
#define VMC_FMT_RESERVED_PREFIX ".vmcrypt."

/* HKDF info strings: one per purpose, never reused across purposes. */
#define VMC_FMT_INFO_DEK_WRAP "vmcryptfs/v1/dek-wrap"
#define VMC_FMT_INFO_KEY_CHECK "vmcryptfs/v1/key-check"

/* True when @len bytes at @p are all zero (reserved fields, empty slots). */
static inline int vmc_fmt_is_zero(const void *p, size_t len)
{
	const uint8_t *b = (const uint8_t *)p;

	for (size_t i = 0; i < len; i++)
		if (b[i])
			return 0;
	return 1;
}

/* Common prefix of every object. */
struct vmc_fmt_prefix {
	uint8_t magic[VMC_FMT_MAGIC_LEN];
	uint16_t type;
	uint16_t version;
} __attribute__((packed));

/* Bytes 0..255 of the file header: the immutable part. */
struct vmc_fmt_file_fixed {
	struct vmc_fmt_prefix prefix; /* 0 */
	uint16_t header_size;         /* 18: 4096 */
	uint32_t incompat_flags;      /* 20: reader refuses unknown bits */
	uint32_t compat_flags;        /* 24: reader ignores unknown bits */
	uint8_t cipher;               /* 28: VMC_FMT_CIPHER_* */
	uint8_t unit_shift;           /* 29: log2 of the data unit size, 12 */
	uint8_t file_class;           /* 30: VMC_FMT_CLASS_* */
	uint8_t nslots;               /* 31: 4 */
	uint8_t file_id[16];          /* 32: random, unique per file */
	uint8_t vm_uuid[16];          /* 48: VM that created the file */
	uint64_t created;             /* 64: creation time, Unix seconds */
	uint8_t reserved[152];        /* 72: zero */
	uint8_t checksum[32];         /* 224: SHA-256 of bytes 0..223 */
} __attribute__((packed));

/* One key slot: the file's DEK wrapped under one KEK. */
struct vmc_fmt_slot {
	uint8_t state;                       /* 0: VMC_FMT_SLOT_* */
	uint8_t wrap;                        /* 1: VMC_FMT_WRAP_* */
	uint8_t role;                        /* 2: VMC_FMT_ROLE_* */
	uint8_t provider_len;                /* 3: 1..63 */
	uint16_t kek_id_len;                 /* 4: 1..255 */
	uint16_t wrapped_len;                /* 6: 64 */
	uint64_t generation;                 /* 8: higher is newer */
	char provider[VMC_FMT_PROVIDER_MAX]; /* 16: NUL padded */
	char kek_id[VMC_FMT_KEKID_MAX];      /* 80: NUL padded */
	uint8_t nonce[12];                   /* 336: GCM nonce */
	uint8_t reserved1[4];                /* 348 */
	uint8_t wrapped[VMC_FMT_DEK_LEN];    /* 352: GCM ciphertext of the DEK */
	uint8_t tag[16];                     /* 416: GCM tag */
	uint8_t reserved2[48];               /* 432 */
	uint8_t checksum[32];                /* 480: SHA-256 of bytes 0..479 */
} __attribute__((packed));

/* Bytes of a slot covered by the GCM additional data. */
#define VMC_FMT_SLOT_AAD_LEN offsetof(struct vmc_fmt_slot, nonce)

/*
 * An interrupted truncate (header bytes 256..511; all zero when none). A
 * truncate to the middle of a data unit changes the last 1..32 ciphertext
 * bytes of the new final unit (XTS ciphertext stealing) as well as the file
 * size, and no single write does both: the record names both, is synced
 * before either changes, and is zeroed (and synced) once both are done. A
 * reader that finds a valid record treats the file as truncated to new_size
 * with those bytes in place, and a writer completes it.
 */
#define VMC_FMT_TRUNC_MAGIC "VMCTRNC1"
#define VMC_FMT_TRUNC_MAX 32
struct vmc_fmt_trunc {
	uint8_t magic[8];       /* 0: VMC_FMT_TRUNC_MAGIC, no NUL */
	uint64_t new_size;      /* 8: logical size after the truncate */
	uint16_t off;           /* 16: where the bytes go in the new final unit */
	uint8_t len;            /* 18: 1..VMC_FMT_TRUNC_MAX; off + len = new_size % unit */
	uint8_t reserved0[5];   /* 19: zero */
	uint8_t bytes[VMC_FMT_TRUNC_MAX]; /* 24: the unit's new ciphertext there, zero past len */
	uint8_t reserved1[168]; /* 56: zero */
	uint8_t checksum[32];   /* 224: SHA-256 of bytes 0..223 */
} __attribute__((packed));

struct vmc_fmt_file_header {
	struct vmc_fmt_file_fixed fixed;            /* 0 */
	struct vmc_fmt_trunc trunc;                 /* 256: zero, or an interrupted truncate */
	struct vmc_fmt_slot slots[VMC_FMT_NSLOTS];  /* 512 */
	uint8_t reserved2[1536];                    /* 2560 */
} __attribute__((packed));

/* A KEK reference in the VM key record. */
struct vmc_fmt_kekref {
	uint8_t provider_len;                /* 0 */
	uint8_t reserved0;                   /* 1 */
	uint16_t kek_id_len;                 /* 2 */
	uint8_t reserved1[28];               /* 4 */
	char provider[VMC_FMT_PROVIDER_MAX]; /* 32 */
	char kek_id[VMC_FMT_KEKID_MAX];      /* 96 */
	uint8_t key_check[32];               /* 352: HMAC-SHA256, see FORMAT.md */
} __attribute__((packed));

#define VMC_FMT_VMSTATE_STEADY 0
#define VMC_FMT_VMSTATE_REKEY 1

/* The VM key record, ".vmcrypt.state": which KEK new files are wrapped under. */
struct vmc_fmt_vmstate {
	struct vmc_fmt_prefix prefix;  /* 0 */
	uint16_t reserved0;            /* 18 */
	uint32_t incompat_flags;       /* 20 */
	uint8_t vm_uuid[16];           /* 24 */
	uint64_t seq;                  /* 40: incremented by every rewrite */
	uint64_t created;              /* 48: Unix seconds */
	uint8_t state;                 /* 56: VMC_FMT_VMSTATE_* */
	uint8_t reserved1[7];          /* 57 */
	struct vmc_fmt_kekref current; /* 64 */
	struct vmc_fmt_kekref next;    /* 448: during a rekey, else zero */
	uint8_t reserved2[160];        /* 832 */
	uint8_t checksum[32];          /* 992: SHA-256 of bytes 0..991 */
} __attribute__((packed));

/* The native provider's primary key file (on the host, mode 0600). */
struct vmc_fmt_native_key {
	struct vmc_fmt_prefix prefix; /* 0 */
	uint16_t reserved0;           /* 18 */
	uint32_t flags;               /* 20 */
	uint8_t key_id[16];           /* 24: public fingerprint of this primary key */
	uint8_t key[32];              /* 40: the primary key */
	uint8_t reserved1[24];        /* 72 */
	uint8_t checksum[32];         /* 96: SHA-256 of bytes 0..95 */
} __attribute__((packed));

_Static_assert(sizeof(struct vmc_fmt_prefix) == 18, "prefix size");
_Static_assert(sizeof(struct vmc_fmt_file_fixed) == 256, "file fixed part size");
_Static_assert(sizeof(struct vmc_fmt_trunc) == 256, "truncate record size");
_Static_assert(offsetof(struct vmc_fmt_file_fixed, file_id) == 32, "file_id offset");
_Static_assert(offsetof(struct vmc_fmt_file_fixed, checksum) == 224, "checksum offset");
_Static_assert(sizeof(struct vmc_fmt_slot) == 512, "slot size");
_Static_assert(offsetof(struct vmc_fmt_slot, nonce) == 336, "slot nonce offset");
_Static_assert(offsetof(struct vmc_fmt_slot, wrapped) == 352, "slot wrapped offset");
_Static_assert(offsetof(struct vmc_fmt_slot, checksum) == 480, "slot checksum offset");
_Static_assert(sizeof(struct vmc_fmt_file_header) == VMC_FMT_HDR_SIZE, "file header size");
_Static_assert(offsetof(struct vmc_fmt_file_header, slots) == 512, "slots offset");
_Static_assert(sizeof(struct vmc_fmt_kekref) == 384, "kekref size");
_Static_assert(sizeof(struct vmc_fmt_vmstate) == 1024, "vmstate size");
_Static_assert(offsetof(struct vmc_fmt_vmstate, next) == 448, "vmstate next offset");
_Static_assert(sizeof(struct vmc_fmt_native_key) == 128, "native key size");

#endif
