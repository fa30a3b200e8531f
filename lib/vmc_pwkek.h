/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "password" pseudo-provider (docs/FORMAT.md 3.5): a key slot whose KEK
 * is derived from a password with Argon2id (RFC 9106) instead of being held
 * by a key provider. It seals files handed to someone who has no access to
 * our key providers, such as a core dump exported for a support engineer
 * (vmcryptfs-util coredump export); such a file opens with the password
 * alone. The daemon never writes or opens these slots, and a configuration
 * may not define a provider of this name.
 *
 * The slot's KEK id carries the KDF, its cost parameters and the salt, so the
 * slot describes itself and the GCM additional data (which covers the id)
 * authenticates them:
 *
 *     argon2id:t=3:m=65536:p=1:s=<32 lower-case hex digits: 16-byte salt>
 *
 * Costs outside the bounds below are refused before any work is done, so a
 * crafted file cannot make a reader spend unbounded time or memory.
 */
#ifndef VMC_PWKEK_H
#define VMC_PWKEK_H

#include <stddef.h>
#include <stdint.h>

#include "vmc_format.h"

struct vmc_kek;

#define VMC_PWKEK_PROVIDER "password"

/* Written by vmc_pwkek_new_id: 3 passes over 64 MiB, one lane. */
#define VMC_PWKEK_T_COST 3
#define VMC_PWKEK_M_COST_KIB 65536
#define VMC_PWKEK_PARALLEL 1
/* Accepted when reading. */
#define VMC_PWKEK_T_MAX 100
#define VMC_PWKEK_M_MAX_KIB (1u << 21) /* 2 GiB */
#define VMC_PWKEK_P_MAX 16
#define VMC_PWKEK_SALT_LEN 16

struct vmc_pwkek_params {
	uint32_t t_cost;     /* passes, 1..VMC_PWKEK_T_MAX */
	uint32_t m_cost_kib; /* memory, 8 * parallel .. VMC_PWKEK_M_MAX_KIB */
	uint32_t parallel;   /* lanes, 1..VMC_PWKEK_P_MAX */
	uint8_t salt[VMC_PWKEK_SALT_LEN];
};

/*
 * Parse a KEK id of the grammar above (exactly: fields in that order,
 * decimal numbers without sign or leading zeros, lower-case hex). Returns 0,
 * or -EINVAL for anything else, including costs out of bounds.
 */
int vmc_pwkek_id_parse(const char *id, struct vmc_pwkek_params *p);
/* Write the KEK id of @p into @id (VMC_FMT_KEKID_MAX bytes). */
void vmc_pwkek_id_format(const struct vmc_pwkek_params *p, char id[VMC_FMT_KEKID_MAX]);
/* A KEK id with the default costs and a fresh random salt. */
int vmc_pwkek_new_id(char id[VMC_FMT_KEKID_MAX]);

/*
 * The keys of the KEK that @id and the password @pw (@pwlen bytes, not
 * empty) give: KEK = Argon2id(pw, salt, t, m, p, 32 bytes), then the usual
 * derivation (vmc_kek_derive) under provider VMC_PWKEK_PROVIDER. Returns 0
 * with a reference in *out, -EINVAL (bad id or empty password, with a
 * message) or -ENOMEM / -EIO. A wrong password is not detected here: the
 * slot then fails to unseal (-EKEYREJECTED).
 */
int vmc_pwkek_derive(const char *id, const char *pw, size_t pwlen, struct vmc_kek **out,
		     char *err, size_t errlen);

#endif
