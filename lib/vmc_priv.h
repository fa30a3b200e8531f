/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Privileges and roles, in the vSphere vocabulary (PRODUCT.md "Roles and
 * privileges"). A role is a set of privileges; the configuration grants roles
 * to users and groups; a caller holds the union of the roles granted to its
 * uid and to every group it belongs to. root is not special: without any
 * grant in the configuration, the default grant gives root Administrator.
 */
#ifndef VMC_PRIV_H
#define VMC_PRIV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum vmc_priv {
	VMC_PRIV_ACCESS = 1u << 0,             /* Cryptographer.Access */
	VMC_PRIV_ENCRYPT = 1u << 1,            /* Cryptographer.Encrypt */
	VMC_PRIV_ENCRYPT_NEW = 1u << 2,        /* Cryptographer.EncryptNew */
	VMC_PRIV_DECRYPT = 1u << 3,            /* Cryptographer.Decrypt */
	VMC_PRIV_RECRYPT = 1u << 4,            /* Cryptographer.Recrypt */
	VMC_PRIV_ADD_DISK = 1u << 5,           /* Cryptographer.AddDisk */
	VMC_PRIV_CLONE = 1u << 6,              /* Cryptographer.Clone */
	VMC_PRIV_MIGRATE = 1u << 7,            /* Cryptographer.Migrate */
	VMC_PRIV_MANAGE_KEYS = 1u << 8,        /* Cryptographer.ManageKeys */
	VMC_PRIV_MANAGE_KEY_SERVERS = 1u << 9, /* Cryptographer.ManageKeyServers */
	VMC_PRIV_MANAGE_POLICY = 1u << 10,     /* Cryptographer.ManageEncryptionPolicy */
	VMC_PRIV_REGISTER_VM = 1u << 11,       /* Cryptographer.RegisterVM */
	VMC_PRIV_READ_KEY_SERVERS = 1u << 12,  /* Cryptographer.ReadKeyServersInfo */
	VMC_PRIV_SYSTEM_VIEW = 1u << 16,       /* System.View: status, events */
};

#define VMC_PRIV_CRYPTO_ALL 0x1fffu
#define VMC_PRIV_ALL (VMC_PRIV_CRYPTO_ALL | VMC_PRIV_SYSTEM_VIEW)
/* The predefined roles. */
#define VMC_ROLE_ADMINISTRATOR VMC_PRIV_ALL
#define VMC_ROLE_NO_CRYPTO_ADMIN (VMC_PRIV_ALL & ~VMC_PRIV_CRYPTO_ALL)

/* Privilege by name ("Cryptographer.Encrypt", "System.View"); 0 if unknown. */
uint32_t vmc_priv_from_name(const char *name);
/* The name of a single privilege bit. */
const char *vmc_priv_name(uint32_t priv);

struct vmc_config;

/*
 * The privileges of user @uid (primary group @gid) under @cfg: the union of
 * the roles granted to the user and to each group it belongs to (looked up in
 * the group database). Thread-safe; results are cached for a few seconds.
 */
uint32_t vmc_privs_of(const struct vmc_config *cfg, uid_t uid, gid_t gid);
/* The user name of @uid, or its number, into @buf. */
void vmc_user_name(uid_t uid, char *buf, size_t len);

#endif
