/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A file's data encryption key (DEK) and the transformation of file data.
 *
 * A vmc_dek holds the 512-bit AES-256-XTS key in locked memory and a small
 * pool of ready key schedules, so concurrent requests on one file each get
 * their own cipher context without re-keying per request.
 *
 * Data rules (docs/FORMAT.md, "Data units"): data unit i covers plaintext
 * bytes [4096 i, 4096 i + 4096) and is stored at backing offset 4096 + 4096 i;
 * the tweak is i. A unit of 16 bytes or more whose ciphertext is all zeros
 * reads as zeros: that is how holes (sparse regions) work. A final unit of
 * 1..15 bytes is always real ciphertext (the writer never leaves such a unit
 * as a hole).
 */
#ifndef VMC_DEK_H
#define VMC_DEK_H

#include <stddef.h>
#include <stdint.h>

#include "vmc_format.h"

struct vmc_dek;
struct vmc_xts;

int vmc_dek_new(struct vmc_dek **out, const uint8_t key[VMC_FMT_DEK_LEN]);
/* Wipes the key and every cached key schedule. */
void vmc_dek_free(struct vmc_dek *d);
/* Generate a fresh random DEK into @key (64 bytes, caller's secret memory). */
int vmc_dek_generate(uint8_t key[VMC_FMT_DEK_LEN]);

/*
 * Encrypt / decrypt @len bytes in place: whole units starting at unit
 * @unit, the last one possibly partial (its length is what remains of @len).
 * Decryption leaves an all-zero unit of >= 16 bytes as zeros.
 */
int vmc_dek_encrypt(struct vmc_dek *d, uint64_t unit, uint8_t *buf, size_t len);
int vmc_dek_decrypt(struct vmc_dek *d, uint64_t unit, uint8_t *buf, size_t len);
/* Encrypt @len bytes from @in into @out (no overlap), units as above. */
int vmc_dek_encrypt_to(struct vmc_dek *d, uint64_t unit, const uint8_t *in, uint8_t *out,
		       size_t len);

/* True when a ciphertext unit of @len bytes is a hole. */
int vmc_unit_is_hole(const uint8_t *buf, size_t len);

#endif
