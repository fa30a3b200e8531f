/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The cryptography vmcryptfs uses, behind one small interface, implemented on
 * libgcrypt (vmc_crypto.c):
 *  - AES-256-XTS (IEEE Std 1619-2018) over 4096-byte data units, with
 *    ciphertext stealing for a final partial unit of 16..4095 bytes and a
 *    keystream for one of 1..15 bytes (docs/FORMAT.md, "Data units");
 *  - AES-256-GCM (NIST SP 800-38D) to wrap data keys, with the header as AAD;
 *  - HKDF-SHA256 (RFC 5869) to derive separate keys from a KEK;
 *  - HMAC-SHA256 and SHA-256;
 *  - a strong random source and locked, wiped memory for every secret.
 *
 * Secret memory comes from libgcrypt's secure pool: locked (mlock), never
 * swapped, wiped when freed. The process must call vmc_crypto_init() once,
 * after any fork() (memory locks are not inherited).
 */
#ifndef VMC_CRYPTO_H
#define VMC_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMC_XTS_KEY_LEN 64  /* AES-256-XTS: two 256-bit keys */
#define VMC_AES256_KEY_LEN 32
#define VMC_GCM_NONCE_LEN 12
#define VMC_GCM_TAG_LEN 16
#define VMC_SHA256_LEN 32

/* Initialize libgcrypt and its secure memory. Returns 0 or -errno. */
int vmc_crypto_init(void);

/* Locked, zeroed secret memory; NULL on failure. Free with vmc_secret_free. */
void *vmc_secret_alloc(size_t len);
/* Wipe len bytes and release; NULL is allowed. */
void vmc_secret_free(void *p, size_t len);
/* Wipe memory so that the compiler cannot elide it. */
void vmc_wipe(void *p, size_t len);
/* Constant-time comparison; true when equal. */
bool vmc_memeq(const void *a, const void *b, size_t len);

/* Strong random bytes (libgcrypt GCRY_STRONG_RANDOM). */
int vmc_random(void *buf, size_t len);

/*
 * One AES-256-XTS key schedule. Not thread-safe: one thread at a time uses a
 * given vmc_xts (see vmc_dek for a pool).
 */
struct vmc_xts;

int vmc_xts_new(struct vmc_xts **out, const uint8_t key[VMC_XTS_KEY_LEN]);
void vmc_xts_free(struct vmc_xts *x);
/*
 * Encrypt / decrypt one data unit in place. @unit is the data unit's index in
 * the file (the XTS tweak); @len is 1..4096. Returns 0 or -errno.
 */
int vmc_xts_encrypt_unit(struct vmc_xts *x, uint64_t unit, uint8_t *buf, size_t len);
int vmc_xts_decrypt_unit(struct vmc_xts *x, uint64_t unit, uint8_t *buf, size_t len);
/* Encrypt from @in to @out (distinct buffers): saves the copy of an in-place call. */
int vmc_xts_encrypt_unit_to(struct vmc_xts *x, uint64_t unit, const uint8_t *in, uint8_t *out,
			    size_t len);

/* AES-256-GCM with a 96-bit nonce. open returns -EBADMSG on a bad tag. */
int vmc_gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const void *aad,
		 size_t aadlen, const void *pt, size_t len, void *ct, uint8_t tag[16]);
int vmc_gcm_open(const uint8_t key[32], const uint8_t nonce[12], const void *aad,
		 size_t aadlen, const void *ct, size_t len, void *pt, const uint8_t tag[16]);

/* HKDF-SHA256 (RFC 5869 section 2): extract then expand; outlen <= 255*32. */
int vmc_hkdf_sha256(const void *ikm, size_t ikmlen, const void *salt, size_t saltlen,
		    const void *info, size_t infolen, void *out, size_t outlen);
int vmc_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
		    uint8_t out[VMC_SHA256_LEN]);
void vmc_sha256(const void *data, size_t len, uint8_t out[VMC_SHA256_LEN]);

#endif
