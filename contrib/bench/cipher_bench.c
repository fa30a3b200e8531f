// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * In-process AES-256-XTS throughput of the core library, for the benchmark
 * (contrib/bench/run.sh): vmc_dek_encrypt / vmc_dek_decrypt over many 4 KiB
 * data units, one thread, the way the daemon calls them (one call per
 * request of --chunk bytes, cycling over a --buffer bytes region).
 *
 * Self-check first: one call of vmc_dek_encrypt over several units must give
 * the same ciphertext as OpenSSL's EVP aes-256-xts with the tweak = unit
 * index (128-bit little-endian), unit by unit; decrypting must give the
 * plaintext back. A mismatch exits 1, so the benchmark never reports the
 * speed of something that is not AES-256-XTS.
 *
 * Output: one line of key=value pairs, for example
 *   encrypt_MBps=6012.3 decrypt_MBps=6120.8 openssl_evp_unit_MBps=3900.1 chunk=131072 ...
 * (MB = 10^6 bytes, like `openssl speed`). openssl_evp_unit_MBps is OpenSSL's
 * EVP re-initialised per 4 KiB unit, in process, for reference.
 *
 * usage: vmc-cipher-bench [--seconds S] [--chunk BYTES] [--buffer BYTES]
 */
#include "vmc_crypto.h"
#include "vmc_dek.h"
#include "vmc_format.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define UNIT 4096

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void tweak_of(uint8_t tw[16], uint64_t unit)
{
	for (int i = 0; i < 8; i++)
		tw[i] = (uint8_t)(unit >> (8 * i));
	memset(tw + 8, 0, 8);
}

/* OpenSSL EVP AES-256-XTS of whole units [unit, unit + len / UNIT) from in to out. */
static int evp_xts(EVP_CIPHER_CTX *ctx, const uint8_t key[64], uint64_t unit,
		   const uint8_t *in, uint8_t *out, size_t len)
{
	uint8_t tw[16];
	int outl;

	for (size_t off = 0; off < len; off += UNIT, unit++) {
		tweak_of(tw, unit);
		if (EVP_EncryptInit_ex(ctx, NULL, NULL, key, tw) != 1 ||
		    EVP_EncryptUpdate(ctx, out + off, &outl, in + off, UNIT) != 1 || outl != UNIT)
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	double seconds = 2.0;
	size_t chunk = 128 * 1024, buflen = 1024 * 1024;
	uint8_t key[VMC_FMT_DEK_LEN], *buf, *ref, *plain;
	struct vmc_dek *dek;
	EVP_CIPHER_CTX *ctx;
	double enc, dec, evp;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--chunk") && i + 1 < argc)
			chunk = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--buffer") && i + 1 < argc)
			buflen = strtoull(argv[++i], NULL, 0);
		else {
			fprintf(stderr, "usage: %s [--seconds S] [--chunk BYTES] [--buffer BYTES]\n",
				argv[0]);
			return 2;
		}
	}
	if (seconds <= 0 || chunk < UNIT || chunk % UNIT || buflen < chunk || buflen % chunk) {
		fprintf(stderr, "vmc-cipher-bench: --chunk must be a multiple of %d and divide "
			"--buffer\n", UNIT);
		return 2;
	}
	if (vmc_crypto_init() || vmc_dek_generate(key) || vmc_dek_new(&dek, key)) {
		fprintf(stderr, "vmc-cipher-bench: cannot set up the core library's cipher\n");
		return 1;
	}
	buf = aligned_alloc(UNIT, buflen);
	ref = aligned_alloc(UNIT, buflen);
	plain = aligned_alloc(UNIT, buflen);
	ctx = EVP_CIPHER_CTX_new();
	if (!buf || !ref || !plain || !ctx ||
	    EVP_EncryptInit_ex(ctx, EVP_aes_256_xts(), NULL, NULL, NULL) != 1) {
		fprintf(stderr, "vmc-cipher-bench: out of memory or no OpenSSL aes-256-xts\n");
		return 1;
	}
	if (vmc_random(plain, buflen))
		return 1;

	/* Self-check against OpenSSL on the first chunk, from unit 12345. */
	memcpy(buf, plain, chunk);
	if (vmc_dek_encrypt(dek, 12345, buf, chunk) ||
	    evp_xts(ctx, key, 12345, plain, ref, chunk)) {
		fprintf(stderr, "vmc-cipher-bench: encryption failed\n");
		return 1;
	}
	if (memcmp(buf, ref, chunk)) {
		fprintf(stderr, "vmc-cipher-bench: SELF-CHECK FAILED: vmc_dek_encrypt differs from "
			"OpenSSL EVP aes-256-xts (tweak = unit index)\n");
		return 1;
	}
	if (vmc_dek_decrypt(dek, 12345, buf, chunk) || memcmp(buf, plain, chunk)) {
		fprintf(stderr, "vmc-cipher-bench: SELF-CHECK FAILED: decryption does not give the "
			"plaintext back\n");
		return 1;
	}

	/* vmc_dek_encrypt, then vmc_dek_decrypt, each for @seconds. */
	memcpy(buf, plain, buflen);
	for (int pass = 0; pass < 3; pass++) {
		uint64_t bytes = 0, unit = 0;
		double t0 = now(), t;
		int r = 0;

		do {
			for (size_t off = 0; off < buflen && !r; off += chunk) {
				if (pass == 0)
					r = vmc_dek_encrypt(dek, unit, buf + off, chunk);
				else if (pass == 1)
					r = vmc_dek_decrypt(dek, unit, buf + off, chunk);
				else
					r = evp_xts(ctx, key, unit, buf + off, ref + off, chunk);
				unit += chunk / UNIT;
				bytes += chunk;
			}
			t = now() - t0;
		} while (!r && t < seconds);
		if (r) {
			fprintf(stderr, "vmc-cipher-bench: cipher call failed\n");
			return 1;
		}
		if (pass == 0)
			enc = (double)bytes / t / 1e6;
		else if (pass == 1)
			dec = (double)bytes / t / 1e6;
		else
			evp = (double)bytes / t / 1e6;
	}
	printf("encrypt_MBps=%.1f decrypt_MBps=%.1f openssl_evp_unit_MBps=%.1f chunk=%zu "
	       "buffer=%zu seconds=%.1f selfcheck=ok\n", enc, dec, evp, chunk, buflen, seconds);
	EVP_CIPHER_CTX_free(ctx);
	vmc_dek_free(dek);
	vmc_wipe(key, sizeof(key));
	free(buf);
	free(ref);
	free(plain);
	return 0;
}
