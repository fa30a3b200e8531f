/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The daemon configuration (/etc/vmcryptfs/vmcryptfs.conf, libconfuse syntax)
 * and the per-VM policy file (vmcrypt.policy). Parsed once into plain structs;
 * nothing else touches libconfuse. libconfuse's lexer keeps global state, so
 * every parse here holds one process-wide lock.
 *
 * Without a configuration file the embedded default applies: the native
 * provider with its primary key at /var/lib/vmcryptfs/native/default.key and
 * the policy "vm-encryption" (home files and disks).
 */
#ifndef VMC_CONFIG_H
#define VMC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmc_class.h"
#include "vmcryptfs_keyprov.h"

#define VMC_NAME_MAX 64 /* provider and policy names: 1..63 bytes */
#define VMC_AUDIT_LOG_DEFAULT "/var/log/vmcryptfs/audit.jsonl"

struct vmc_provider_conf {
	char *name;
	char *type;
	struct vmc_kp_param *params; /* everything but "type" */
	size_t nparams;
};

struct vmc_policy_conf {
	char *name;
	char *provider;
	bool disks; /* encrypt disks too, not only home files */
};

struct vmc_class_rule {
	char *pattern; /* fnmatch(3) on the file name, case-insensitive */
	enum vmc_class cls;
};

struct vmc_role_conf {
	char *name;
	uint32_t privs; /* enum vmc_priv bits */
};

/* A grant of roles to a user or a group, by name or by number. */
struct vmc_grant_conf {
	bool is_group;
	char *who;
	bool id_set; /* @who is numeric: @id */
	unsigned int id;
	uint32_t privs; /* union of the granted roles */
};

#define VMC_AUDIT_REMOTE_MAX 3

struct vmc_config {
	char *source; /* file name, or "(embedded default)" */
	int log_level; /* -1 when not set */
	char *ctl_socket;  /* control socket path, NULL: derived from the mountpoint */
	char *ctl_group;   /* group allowed to connect (mode 0660), NULL: root only */
	char *audit_log;   /* JSON-lines audit log, "" to disable */
	bool audit_syslog; /* events to the local syslog too */
	char *audit_remote[VMC_AUDIT_REMOTE_MAX]; /* "udp://host:port", "tcp://host:port" */
	size_t naudit_remote;
	struct vmc_role_conf *roles; /* custom roles (the predefined ones are built in) */
	size_t nroles;
	struct vmc_grant_conf *grants; /* none: root gets Administrator */
	size_t ngrants;
	struct vmc_provider_conf *providers;
	size_t nproviders;
	struct vmc_policy_conf *policies;
	size_t npolicies;
	struct vmc_class_rule *rules;
	size_t nrules;
};

/* The text of the embedded default configuration. */
extern const char vmc_config_default_text[];

/*
 * Load @path; with @path NULL, the default file if it exists, otherwise the
 * embedded default. Returns 0 or -errno with a message ("FILE:LINE: ...").
 */
int vmc_config_load(const char *path, struct vmc_config **out, char *err, size_t errlen);
/* Parse configuration text; @name names it in messages. */
int vmc_config_parse(const char *text, const char *name, struct vmc_config **out, char *err,
		     size_t errlen);
void vmc_config_free(struct vmc_config *cfg);

const struct vmc_provider_conf *vmc_config_provider(const struct vmc_config *cfg,
						    const char *name);
const struct vmc_policy_conf *vmc_config_policy(const struct vmc_config *cfg, const char *name);
/* Privileges of the role @name (predefined or custom); false if unknown. */
bool vmc_config_role(const struct vmc_config *cfg, const char *name, uint32_t *privs);

/* What a vmcrypt.policy file says. */
struct vmc_vm_policy {
	char policy[VMC_NAME_MAX]; /* named storage policy */
	bool disks_set;            /* "disks" given in the file */
	bool disks;                /* if set: false restricts to home files */
};

/*
 * Parse a vmcrypt.policy file's text; @path names it in messages. Checks
 * that the named policy exists in @cfg. Returns 0 or -EINVAL with
 * "PATH:LINE: what is wrong" in @err.
 */
int vmc_policy_parse(const char *text, const char *path, const struct vmc_config *cfg,
		     struct vmc_vm_policy *out, char *err, size_t errlen);

/*
 * Read and parse the vmcrypt.policy of directory @dirfd (@dir names the
 * directory in messages, "." for the root). Opened with O_NOFOLLOW: a
 * symlink is refused. -ENOENT when there is none; -EINVAL (and others) with
 * "PATH:LINE: ..." in @err when it is unusable.
 */
int vmc_policy_read_at(int dirfd, const char *dir, const struct vmc_config *cfg,
		       struct vmc_vm_policy *pol, char *err, size_t errlen);

/* Whether the files of a VM under @pol get encrypted: home files always,
 * disks when both the named policy and the file allow it. */
bool vmc_policy_encrypts_disks(const struct vmc_config *cfg, const struct vmc_vm_policy *pol);
/* Whether a file of (resolved) class @c in a VM under @pol is encrypted. */
bool vmc_policy_encrypts(const struct vmc_config *cfg, const struct vmc_vm_policy *pol,
			 enum vmc_class c);

#endif
