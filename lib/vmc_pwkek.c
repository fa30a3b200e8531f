// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The "password" pseudo-provider (see vmc_pwkek.h). Argon2id comes from
 * libgcrypt's KDF interface, as for the native key backup (vmc_backup.c);
 * the KEK lives in secret memory only while the wrap and check keys are
 * derived from it.
 */
#include "vmc_pwkek.h"
#include "vmc_crypto.h"
#include "vmc_keyring.h"

#include <errno.h>
#include <gcrypt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* A decimal number of 1..10 digits, no leading zero, at *s; advances *s. */
static bool parse_u32(const char **s, uint32_t *out)
{
	const char *p = *s;
	uint64_t v = 0;
	int digits = 0;

	if (*p == '0')
		return false;
	while (*p >= '0' && *p <= '9' && digits < 10) {
		v = v * 10 + (uint64_t)(*p++ - '0');
		digits++;
	}
	if (!digits || v > UINT32_MAX || (*p >= '0' && *p <= '9'))
		return false;
	*out = (uint32_t)v;
	*s = p;
	return true;
}

static bool expect(const char **s, const char *lit)
{
	size_t n = strlen(lit);

	if (strncmp(*s, lit, n))
		return false;
	*s += n;
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int vmc_pwkek_id_parse(const char *id, struct vmc_pwkek_params *p)
{
	const char *s = id;

	memset(p, 0, sizeof(*p));
	if (!expect(&s, "argon2id:t=") || !parse_u32(&s, &p->t_cost) || !expect(&s, ":m=") ||
	    !parse_u32(&s, &p->m_cost_kib) || !expect(&s, ":p=") || !parse_u32(&s, &p->parallel) ||
	    !expect(&s, ":s="))
		return -EINVAL;
	for (size_t i = 0; i < VMC_PWKEK_SALT_LEN; i++) {
		int hi = hexval(s[2 * i]), lo = hi < 0 ? -1 : hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		p->salt[i] = (uint8_t)(hi << 4 | lo);
	}
	if (s[2 * VMC_PWKEK_SALT_LEN] != '\0')
		return -EINVAL;
	/* RFC 9106 section 3.1: m >= 8 p. Upper bounds keep a crafted id cheap. */
	if (p->t_cost < 1 || p->t_cost > VMC_PWKEK_T_MAX || p->parallel < 1 ||
	    p->parallel > VMC_PWKEK_P_MAX || p->m_cost_kib < 8 * p->parallel ||
	    p->m_cost_kib > VMC_PWKEK_M_MAX_KIB)
		return -EINVAL;
	return 0;
}

void vmc_pwkek_id_format(const struct vmc_pwkek_params *p, char id[VMC_FMT_KEKID_MAX])
{
	int n = snprintf(id, VMC_FMT_KEKID_MAX, "argon2id:t=%u:m=%u:p=%u:s=", p->t_cost,
			 p->m_cost_kib, p->parallel);

	for (size_t i = 0; i < VMC_PWKEK_SALT_LEN; i++)
		n += snprintf(id + n, VMC_FMT_KEKID_MAX - (size_t)n, "%02x", p->salt[i]);
}

int vmc_pwkek_new_id(char id[VMC_FMT_KEKID_MAX])
{
	struct vmc_pwkek_params p = {
		.t_cost = VMC_PWKEK_T_COST,
		.m_cost_kib = VMC_PWKEK_M_COST_KIB,
		.parallel = VMC_PWKEK_PARALLEL,
	};
	int r = vmc_random(p.salt, sizeof(p.salt));

	if (!r)
		vmc_pwkek_id_format(&p, id);
	return r;
}

int vmc_pwkek_derive(const char *id, const char *pw, size_t pwlen, struct vmc_kek **out,
		     char *err, size_t errlen)
{
	struct vmc_pwkek_params p;
	unsigned long param[4];
	gcry_kdf_hd_t kh;
	uint8_t *kek;
	int r;

	if (vmc_pwkek_id_parse(id, &p)) {
		snprintf(err, errlen, "\"%s\" is not a password key id (argon2id:t=T:m=M:p=P:s=SALT, "
			 "within the cost limits)", id);
		return -EINVAL;
	}
	if (!pwlen) {
		snprintf(err, errlen, "an empty password is not allowed");
		return -EINVAL;
	}
	r = vmc_crypto_init();
	if (r)
		return r;
	kek = vmc_secret_alloc(VMC_AES256_KEY_LEN);
	if (!kek)
		return -ENOMEM;
	param[0] = VMC_AES256_KEY_LEN;
	param[1] = p.t_cost;
	param[2] = p.m_cost_kib;
	param[3] = p.parallel;
	r = -EIO;
	if (!gcry_kdf_open(&kh, GCRY_KDF_ARGON2, GCRY_KDF_ARGON2ID, param, 4, pw, pwlen, p.salt,
			   sizeof(p.salt), NULL, 0, NULL, 0)) {
		if (!gcry_kdf_compute(kh, NULL) && !gcry_kdf_final(kh, VMC_AES256_KEY_LEN, kek))
			r = 0;
		gcry_kdf_close(kh);
	}
	if (!r)
		r = vmc_kek_derive(VMC_PWKEK_PROVIDER, id, kek, out);
	else
		snprintf(err, errlen, "Argon2id key derivation failed (out of memory?)");
	vmc_secret_free(kek, VMC_AES256_KEY_LEN);
	return r;
}
