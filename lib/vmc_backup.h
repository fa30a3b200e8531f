/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Password-protected backup of a native provider's primary key (format
 * object 4, docs/FORMAT.md "Native key backup"): the 128-byte key file
 * sealed with AES-256-GCM under a key derived from the password with
 * Argon2id (RFC 9106), a memory-hard KDF, so that a stolen backup resists
 * offline guessing. Restoring it onto a new host brings back every VM whose
 * KEKs were derived from that primary key.
 */
#ifndef VMC_BACKUP_H
#define VMC_BACKUP_H

#include <stddef.h>
#include <stdint.h>

#include "vmc_format.h"

#define VMC_BACKUP_SIZE 288
#define VMC_NATIVE_KEY_SIZE 128

/* Argon2id cost: 3 passes over 64 MiB, one lane. */
#define VMC_BACKUP_T_COST 3
#define VMC_BACKUP_M_COST_KIB 65536
#define VMC_BACKUP_PARALLEL 1

/*
 * Seal @keyfile (the VMC_NATIVE_KEY_SIZE bytes of a native key file, whose
 * checksum is verified first) for provider @provider under @password into
 * @out (VMC_BACKUP_SIZE bytes).
 */
int vmc_backup_seal(const char *password, size_t pwlen, const char *provider,
		    const uint8_t *keyfile, uint8_t *out, char *err, size_t errlen);
/*
 * Open a backup: -EBADMSG for a wrong password or a damaged backup,
 * -EUCLEAN for something that is not a backup. Writes the key file bytes
 * into @keyfile (secret memory, VMC_NATIVE_KEY_SIZE) and the provider name.
 */
int vmc_backup_open(const char *password, size_t pwlen, const uint8_t *in, size_t len,
		    uint8_t *keyfile, char provider[VMC_FMT_PROVIDER_MAX], char *err,
		    size_t errlen);
/* Check a native key file's bytes (magic, type, version, checksum). */
int vmc_native_key_check(const uint8_t *keyfile, size_t len, uint8_t key_id[16]);

/* Base64 (RFC 4648) for carrying binary data in JSON. */
char *vmc_base64_encode(const uint8_t *in, size_t len);
/* Returns the decoded length, or -EINVAL. @out holds at least len*3/4. */
long vmc_base64_decode(const char *in, uint8_t *out, size_t cap);

#endif
