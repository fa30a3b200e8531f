// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DEK and data-unit transformation (see vmc_dek.h).
 * Lock: d_lock protects the free list only; contexts are used unlocked by the
 * thread that took them.
 */
#include "vmc_dek.h"
#include "vmc_crypto.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DEK_POOL_MAX 16

struct vmc_dek {
	uint8_t *d_key;                     /* 64 bytes, secret memory */
	pthread_mutex_t d_lock;             /* protects d_free, d_nfree */
	struct vmc_xts *d_free[DEK_POOL_MAX];
	int d_nfree;
};

int vmc_dek_generate(uint8_t key[VMC_FMT_DEK_LEN])
{
	int r;

	do {
		r = vmc_random(key, VMC_FMT_DEK_LEN);
		if (r)
			return r;
		/* IEEE 1619: the two XTS keys must differ (never in practice). */
	} while (vmc_memeq(key, key + 32, 32));
	return 0;
}

int vmc_dek_new(struct vmc_dek **out, const uint8_t key[VMC_FMT_DEK_LEN])
{
	struct vmc_dek *d = calloc(1, sizeof(*d));
	struct vmc_xts *x;
	int r;

	if (!d)
		return -ENOMEM;
	d->d_key = vmc_secret_alloc(VMC_FMT_DEK_LEN);
	if (!d->d_key) {
		free(d);
		return -ENOMEM;
	}
	memcpy(d->d_key, key, VMC_FMT_DEK_LEN);
	pthread_mutex_init(&d->d_lock, NULL);
	/* Build one schedule now: this also validates the key. */
	r = vmc_xts_new(&x, d->d_key);
	if (r) {
		vmc_dek_free(d);
		return r;
	}
	d->d_free[d->d_nfree++] = x;
	*out = d;
	return 0;
}

void vmc_dek_free(struct vmc_dek *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->d_nfree; i++)
		vmc_xts_free(d->d_free[i]);
	vmc_secret_free(d->d_key, VMC_FMT_DEK_LEN);
	pthread_mutex_destroy(&d->d_lock);
	free(d);
}

static struct vmc_xts *dek_acquire(struct vmc_dek *d)
{
	struct vmc_xts *x = NULL;

	pthread_mutex_lock(&d->d_lock);
	if (d->d_nfree)
		x = d->d_free[--d->d_nfree];
	pthread_mutex_unlock(&d->d_lock);
	if (!x && vmc_xts_new(&x, d->d_key))
		return NULL;
	return x;
}

static void dek_release(struct vmc_dek *d, struct vmc_xts *x)
{
	pthread_mutex_lock(&d->d_lock);
	if (d->d_nfree < DEK_POOL_MAX) {
		d->d_free[d->d_nfree++] = x;
		x = NULL;
	}
	pthread_mutex_unlock(&d->d_lock);
	vmc_xts_free(x);
}

int vmc_unit_is_hole(const uint8_t *buf, size_t len)
{
	static const uint8_t zero[16];

	if (len < 16 || memcmp(buf, zero, 16))
		return 0;
	for (size_t i = 16; i < len; i++)
		if (buf[i])
			return 0;
	return 1;
}

static int dek_transform(struct vmc_dek *d, bool enc, uint64_t unit, uint8_t *buf, size_t len)
{
	struct vmc_xts *x = dek_acquire(d);
	int r = 0;

	if (!x)
		return -ENOMEM;
	while (len && !r) {
		size_t n = len < VMC_FMT_UNIT_SIZE ? len : VMC_FMT_UNIT_SIZE;

		if (enc)
			r = vmc_xts_encrypt_unit(x, unit, buf, n);
		else if (!vmc_unit_is_hole(buf, n))
			r = vmc_xts_decrypt_unit(x, unit, buf, n);
		buf += n;
		len -= n;
		unit++;
	}
	dek_release(d, x);
	return r;
}

int vmc_dek_encrypt_to(struct vmc_dek *d, uint64_t unit, const uint8_t *in, uint8_t *out,
		       size_t len)
{
	struct vmc_xts *x = dek_acquire(d);
	int r = 0;

	if (!x)
		return -ENOMEM;
	while (len && !r) {
		size_t n = len < VMC_FMT_UNIT_SIZE ? len : VMC_FMT_UNIT_SIZE;

		r = vmc_xts_encrypt_unit_to(x, unit, in, out, n);
		in += n;
		out += n;
		len -= n;
		unit++;
	}
	dek_release(d, x);
	return r;
}

int vmc_dek_encrypt(struct vmc_dek *d, uint64_t unit, uint8_t *buf, size_t len)
{
	return dek_transform(d, true, unit, buf, len);
}

int vmc_dek_decrypt(struct vmc_dek *d, uint64_t unit, uint8_t *buf, size_t len)
{
	return dek_transform(d, false, unit, buf, len);
}
