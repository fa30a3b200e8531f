/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Independent reference implementations for the unit tests, on OpenSSL's
 * libcrypto (EVP): the code under test uses libgcrypt, so agreement between
 * the two is evidence, not an echo. Nothing here calls the vmcryptfs library.
 *
 * Every function aborts the test program (exit 1) if OpenSSL itself fails:
 * a broken reference must never turn into a passing check.
 */
#ifndef VMC_REF_H
#define VMC_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The 16-byte XTS tweak for data unit @unit (128-bit little-endian). */
void ref_xts_tweak(uint64_t unit, bool short_domain, uint8_t tweak[16]);

/* AES-256-XTS (IEEE Std 1619) of @len >= 16 bytes with an explicit tweak. */
void ref_xts(bool enc, const uint8_t key[64], const uint8_t tweak[16], const uint8_t *in,
	     uint8_t *out, size_t len);

/*
 * One vmcryptfs data unit (docs: vmc_crypto.h): XTS with tweak = unit for
 * 16..4096 bytes; for 1..15 bytes, in XOR the first @len bytes of
 * XTS-AES-256(K, tweak = unit | 2^127, 16 zero bytes).
 */
void ref_unit(bool enc, const uint8_t key[64], uint64_t unit, const uint8_t *in, uint8_t *out,
	      size_t len);

/* AES-256-GCM with a 12-byte nonce and a 16-byte tag (NIST SP 800-38D). */
void ref_gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const void *aad,
		  size_t aadlen, const void *pt, size_t len, uint8_t *ct, uint8_t tag[16]);

void ref_sha256(const void *data, size_t len, uint8_t out[32]);
void ref_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
		     uint8_t out[32]);
/* HKDF-SHA256 (RFC 5869); @salt NULL means no salt. */
void ref_hkdf_sha256(const void *ikm, size_t ikmlen, const void *salt, size_t saltlen,
		     const char *info, size_t infolen, uint8_t *out, size_t outlen);

/* Random bytes from OpenSSL's generator (test inputs, not keys of the code under test). */
void ref_random(void *buf, size_t len);

#endif
