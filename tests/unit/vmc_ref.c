// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * OpenSSL (libcrypto 3) reference implementations for the unit tests; see
 * vmc_ref.h. Written against the EVP interfaces only, with no shortcuts shared
 * with lib/vmc_crypto.c (which is libgcrypt), so the two can disagree.
 */
#include "vmc_ref.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ref_die(const char *what)
{
	fprintf(stderr, "FATAL: OpenSSL reference failed: %s\n", what);
	exit(1);
}

void ref_xts_tweak(uint64_t unit, bool short_domain, uint8_t tweak[16])
{
	memset(tweak, 0, 16);
	for (int i = 0; i < 8; i++)
		tweak[i] = (uint8_t)(unit >> (8 * i));
	if (short_domain)
		tweak[15] = 0x80;
}

void ref_xts(bool enc, const uint8_t key[64], const uint8_t tweak[16], const uint8_t *in,
	     uint8_t *out, size_t len)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int outl = 0;

	if (!ctx || len < 16)
		ref_die("xts setup");
	/* One update call: OpenSSL's XTS does the ciphertext stealing inside it. */
	if (!EVP_CipherInit_ex(ctx, EVP_aes_256_xts(), NULL, key, tweak, enc ? 1 : 0) ||
	    !EVP_CipherUpdate(ctx, out, &outl, in, (int)len) || (size_t)outl != len)
		ref_die("EVP aes-256-xts");
	EVP_CIPHER_CTX_free(ctx);
}

void ref_unit(bool enc, const uint8_t key[64], uint64_t unit, const uint8_t *in, uint8_t *out,
	      size_t len)
{
	uint8_t tweak[16], zero[16] = { 0 }, ks[16];

	if (len >= 16) {
		ref_xts_tweak(unit, false, tweak);
		ref_xts(enc, key, tweak, in, out, len);
		return;
	}
	/* Short unit: a keystream, the same in both directions. */
	ref_xts_tweak(unit, true, tweak);
	ref_xts(true, key, tweak, zero, ks, 16);
	for (size_t i = 0; i < len; i++)
		out[i] = in[i] ^ ks[i];
}

void ref_gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const void *aad,
		  size_t aadlen, const void *pt, size_t len, uint8_t *ct, uint8_t tag[16])
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int outl = 0;

	if (!ctx || !EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) ||
	    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) ||
	    !EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce))
		ref_die("EVP aes-256-gcm init");
	if (aadlen && !EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)aadlen))
		ref_die("EVP aes-256-gcm aad");
	if (len && (!EVP_EncryptUpdate(ctx, ct, &outl, pt, (int)len) || (size_t)outl != len))
		ref_die("EVP aes-256-gcm update");
	if (!EVP_EncryptFinal_ex(ctx, ct + len, &outl) ||
	    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag))
		ref_die("EVP aes-256-gcm final");
	EVP_CIPHER_CTX_free(ctx);
}

void ref_sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 0;

	if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) || n != 32)
		ref_die("EVP sha256");
}

void ref_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
		     uint8_t out[32])
{
	size_t n = 0;

	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen, data, len, out, 32,
		       &n) || n != 32)
		ref_die("EVP_Q_mac HMAC-SHA256");
}

void ref_hkdf_sha256(const void *ikm, size_t ikmlen, const void *salt, size_t saltlen,
		     const char *info, size_t infolen, uint8_t *out, size_t outlen)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[5], *p = params;

	if (!ctx)
		ref_die("EVP_KDF HKDF");
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikmlen);
	if (salt)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
							 saltlen);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen);
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(ctx, out, outlen, params) != 1)
		ref_die("EVP_KDF_derive HKDF");
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
}

void ref_random(void *buf, size_t len)
{
	if (RAND_bytes(buf, (int)len) != 1)
		ref_die("RAND_bytes");
}
