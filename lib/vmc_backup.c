// SPDX-License-Identifier: GPL-2.0-or-later
/* Native key backup (see vmc_backup.h). */
#include "vmc_backup.h"
#include "vmc_crypto.h"

#include <endian.h>
#include <errno.h>
#include <gcrypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VMC_FMT_TYPE_NATIVE_BACKUP 4
#define KDF_ARGON2ID 1

struct backup_hdr {
	struct vmc_fmt_prefix prefix;      /* 0: type 4 */
	uint16_t reserved0;                /* 18 */
	uint32_t kdf;                      /* 20: 1 = Argon2id */
	uint32_t t_cost;                   /* 24 */
	uint32_t m_cost_kib;               /* 28 */
	uint32_t parallel;                 /* 32 */
	uint32_t reserved1;                /* 36 */
	uint8_t salt[16];                  /* 40 */
	uint8_t nonce[12];                 /* 56 */
	uint32_t reserved2;                /* 68 */
	char provider[VMC_FMT_PROVIDER_MAX]; /* 72 */
	uint8_t sealed[VMC_NATIVE_KEY_SIZE]; /* 136: GCM ciphertext of the key file */
	uint8_t tag[16];                   /* 264 */
	uint8_t reserved3[8];              /* 280 */
} __attribute__((packed));

_Static_assert(sizeof(struct backup_hdr) == VMC_BACKUP_SIZE, "backup size");
_Static_assert(offsetof(struct backup_hdr, sealed) == 136, "sealed offset");

int vmc_native_key_check(const uint8_t *k, size_t len, uint8_t key_id[16])
{
	const struct vmc_fmt_native_key *nk = (const void *)k;
	uint8_t sum[VMC_SHA256_LEN];

	if (len != sizeof(*nk) || memcmp(nk->prefix.magic, VMC_FMT_MAGIC, VMC_FMT_MAGIC_LEN) ||
	    le16toh(nk->prefix.type) != VMC_FMT_TYPE_NATIVE_KEY ||
	    le16toh(nk->prefix.version) != VMC_FMT_VERSION)
		return -EUCLEAN;
	vmc_sha256(nk, offsetof(struct vmc_fmt_native_key, checksum), sum);
	if (memcmp(sum, nk->checksum, sizeof(sum)))
		return -EUCLEAN;
	if (key_id)
		memcpy(key_id, nk->key_id, 16);
	return 0;
}

/* Argon2id (RFC 9106) through libgcrypt's KDF interface. */
static int derive(const char *pw, size_t pwlen, const struct backup_hdr *h, uint8_t key[32])
{
	unsigned long param[4] = { 32, le32toh(h->t_cost), le32toh(h->m_cost_kib),
				   le32toh(h->parallel) };
	gcry_kdf_hd_t kh;
	int r = -EIO;

	if (le32toh(h->kdf) != KDF_ARGON2ID || param[1] < 1 || param[1] > 100 ||
	    param[2] < 8 * param[3] || param[2] > (1u << 21) || param[3] < 1 || param[3] > 16)
		return -EUCLEAN; /* never let a file make us spend unbounded time or memory */
	if (gcry_kdf_open(&kh, GCRY_KDF_ARGON2, GCRY_KDF_ARGON2ID, param, 4, pw, pwlen, h->salt,
			  sizeof(h->salt), NULL, 0, NULL, 0))
		return -EIO;
	if (!gcry_kdf_compute(kh, NULL) && !gcry_kdf_final(kh, 32, key))
		r = 0;
	gcry_kdf_close(kh);
	return r;
}

int vmc_backup_seal(const char *password, size_t pwlen, const char *provider,
		    const uint8_t *keyfile, uint8_t *out, char *err, size_t errlen)
{
	struct backup_hdr *h = (struct backup_hdr *)out;
	uint8_t *key;
	int r;

	if (!pwlen) {
		snprintf(err, errlen, "an empty password is not allowed");
		return -EINVAL;
	}
	if (strlen(provider) >= VMC_FMT_PROVIDER_MAX || vmc_native_key_check(keyfile,
									       VMC_NATIVE_KEY_SIZE, NULL)) {
		snprintf(err, errlen, "the native key file is damaged; nothing to back up");
		return -EUCLEAN;
	}
	memset(h, 0, sizeof(*h));
	memcpy(h->prefix.magic, VMC_FMT_MAGIC, VMC_FMT_MAGIC_LEN);
	h->prefix.type = htole16(VMC_FMT_TYPE_NATIVE_BACKUP);
	h->prefix.version = htole16(VMC_FMT_VERSION);
	h->kdf = htole32(KDF_ARGON2ID);
	h->t_cost = htole32(VMC_BACKUP_T_COST);
	h->m_cost_kib = htole32(VMC_BACKUP_M_COST_KIB);
	h->parallel = htole32(VMC_BACKUP_PARALLEL);
	strcpy(h->provider, provider);
	r = vmc_random(h->salt, sizeof(h->salt));
	if (!r)
		r = vmc_random(h->nonce, sizeof(h->nonce));
	if (r)
		return r;
	key = vmc_secret_alloc(32);
	if (!key)
		return -ENOMEM;
	r = derive(password, pwlen, h, key);
	if (!r)
		r = vmc_gcm_seal(key, h->nonce, h, offsetof(struct backup_hdr, sealed), keyfile,
				 VMC_NATIVE_KEY_SIZE, h->sealed, h->tag);
	vmc_secret_free(key, 32);
	if (r)
		snprintf(err, errlen, "cannot seal the backup: %s", strerror(-r));
	return r;
}

int vmc_backup_open(const char *password, size_t pwlen, const uint8_t *in, size_t len,
		    uint8_t *keyfile, char provider[VMC_FMT_PROVIDER_MAX], char *err,
		    size_t errlen)
{
	const struct backup_hdr *h = (const void *)in;
	uint8_t *key;
	int r;

	if (len != sizeof(*h) || memcmp(h->prefix.magic, VMC_FMT_MAGIC, VMC_FMT_MAGIC_LEN) ||
	    le16toh(h->prefix.type) != VMC_FMT_TYPE_NATIVE_BACKUP ||
	    le16toh(h->prefix.version) != VMC_FMT_VERSION || !memchr(h->provider, '\0',
								   sizeof(h->provider))) {
		snprintf(err, errlen, "not a vmcryptfs native key backup");
		return -EUCLEAN;
	}
	key = vmc_secret_alloc(32);
	if (!key)
		return -ENOMEM;
	r = derive(password, pwlen, h, key);
	if (!r)
		r = vmc_gcm_open(key, h->nonce, h, offsetof(struct backup_hdr, sealed), h->sealed,
				 VMC_NATIVE_KEY_SIZE, keyfile, h->tag);
	vmc_secret_free(key, 32);
	if (r == -EBADMSG)
		snprintf(err, errlen, "wrong password, or the backup is damaged");
	else if (r == -EUCLEAN)
		snprintf(err, errlen, "the backup asks for unreasonable key-derivation costs");
	else if (!r && vmc_native_key_check(keyfile, VMC_NATIVE_KEY_SIZE, NULL)) {
		vmc_wipe(keyfile, VMC_NATIVE_KEY_SIZE);
		snprintf(err, errlen, "the backup holds a damaged key file");
		r = -EUCLEAN;
	}
	if (!r)
		snprintf(provider, VMC_FMT_PROVIDER_MAX, "%s", h->provider);
	return r;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *vmc_base64_encode(const uint8_t *in, size_t len)
{
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
			     (i + 2 < len ? in[i + 2] : 0);

		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		*o++ = i + 1 < len ? b64[v >> 6 & 63] : '=';
		*o++ = i + 2 < len ? b64[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

long vmc_base64_decode(const char *in, uint8_t *out, size_t cap)
{
	size_t n = strlen(in), o = 0;
	uint32_t acc = 0;
	int bits = 0;

	if (n % 4)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		const char *p;

		if (in[i] == '=') {
			if (i < n - 2 || (i == n - 2 && in[n - 1] != '='))
				return -EINVAL;
			break;
		}
		p = strchr(b64, in[i]);
		if (!p || !in[i])
			return -EINVAL;
		acc = acc << 6 | (uint32_t)(p - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -EINVAL;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	return (long)o;
}
