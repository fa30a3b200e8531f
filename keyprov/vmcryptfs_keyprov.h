/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vmcryptfs key-provider plugin ABI, version 1.
 *
 * A key provider hands vmcryptfs key-encryption keys (KEKs): 256-bit AES keys,
 * each named by an id string that vmcryptfs stores next to the data it
 * protects. vmcryptfs never stores a KEK; after a restart it asks the provider
 * again, by id. Providers are shared objects loaded with dlopen() from one
 * fixed directory, one file per provider type:
 *
 *     <plugin dir>/vmcryptfs-keyprov-<type>.so
 *
 * Each exports one function, VMC_KP_ENTRY_SYMBOL, that returns a pointer to a
 * constant operations table. The table starts with the ABI version and its own
 * size, so later versions can append operations without breaking plugins built
 * against this one (the host only calls what the plugin's struct_size covers).
 *
 * Versioning: appending an optional operation at the end of struct
 * vmc_kp_ops (or a service at the end of struct vmc_kp_host) keeps ABI
 * version 1 and the entry symbol: an older plugin's struct_size ends before
 * the new member and the host treats it as absent (NULL); a plugin that uses
 * a host service added later checks host->struct_size first. Only a change
 * to an existing member, or a new mandatory one, bumps VMC_KP_ABI_VERSION.
 * Members appended so far (still version 1): list_keys.
 *
 * The same table serves local providers (the built-in "native" one derives
 * KEKs from a primary key on the host) and remote ones (KMIP: connect to a
 * cluster of servers, create a key on the server, fetch it by id). The error
 * codes below let the host tell "the key server is unreachable" (retry later;
 * the VM is locked meanwhile) from "the server answered: no such key".
 *
 * Rules for plugins:
 *  - Every operation returns 0 or a negative errno from the table below, and
 *    on error writes one line for an administrator into err (at most
 *    VMC_KP_ERR_MAX bytes including the NUL): what failed and what to do.
 *  - Key bytes are written only into the buffers the host passes in (they
 *    live in locked, non-dumpable memory); any copy the plugin makes must come
 *    from host->secret_alloc and be released with host->secret_free, which
 *    wipes it. Key material is never logged, at any level.
 *  - Operations may be called from several threads at once unless the plugin
 *    sets VMC_KP_F_SERIALIZE in flags, in which case the host calls at most
 *    one operation per provider instance at a time.
 *  - Every network wait has a time-out; no call blocks indefinitely.
 *  - Plugins set struct_size = sizeof(struct vmc_kp_ops) and leave the
 *    optional operations they lack NULL (designated initializers do that).
 *
 * Error codes (negative errno):
 *   -ENOKEY        the provider does not know this key id (never created,
 *                  destroyed, or made by a different primary key)
 *   -EKEYREVOKED   the key exists but may not be used (revoked, deactivated,
 *                  compromised)
 *   -EACCES        the provider refused us (authentication, permission)
 *   -EHOSTUNREACH, -ECONNREFUSED, -ETIMEDOUT, -ENETUNREACH, -ECONNRESET
 *                  no server of the provider could be reached or answered in
 *                  time: a transient condition, the host retries later
 *   -EPROTO        a server answered something that is not the protocol
 *   -EINVAL        bad configuration or parameter
 *   -ENOENT        local key material (such as a key file) is missing
 *   -EBADMSG       local key material is corrupt
 *   -E2BIG         list_keys only: more keys than the provider can list in
 *                  one call (the message says how many it can)
 *   -EOPNOTSUPP    an optional operation the provider cannot perform
 *   -ENOMEM, -EIO  as usual
 */
#ifndef VMCRYPTFS_KEYPROV_H
#define VMCRYPTFS_KEYPROV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version implemented by this header. */
#define VMC_KP_ABI_VERSION 1u

/** Name of the entry function each plugin exports. */
#define VMC_KP_ENTRY_SYMBOL "vmcryptfs_keyprov_entry_v1"

/** Length in bytes of every KEK (AES-256). */
#define VMC_KP_KEK_LEN 32u

/** Maximum length of a key id, including the terminating NUL. */
#define VMC_KP_ID_MAX 256u

/** Size of the error message buffer passed to every operation. */
#define VMC_KP_ERR_MAX 256u

/** Flags in vmc_kp_ops.flags. */
#define VMC_KP_F_SERIALIZE (1u << 0) /**< host serializes calls per instance */
#define VMC_KP_F_REMOTE (1u << 1)    /**< keys live on a server (may be unreachable) */

/** Log levels: the syslog(3) priorities. */
#define VMC_KP_LOG_ERR 3
#define VMC_KP_LOG_WARNING 4
#define VMC_KP_LOG_NOTICE 5
#define VMC_KP_LOG_INFO 6
#define VMC_KP_LOG_DEBUG 7

/** One configuration parameter of a provider instance ("name = value"). */
struct vmc_kp_param {
	const char *name;
	const char *value;
};

/**
 * Services the host offers to plugins. Valid from open() until close()
 * returns; plugins keep the pointer.
 */
struct vmc_kp_host {
	uint32_t abi_version; /**< VMC_KP_ABI_VERSION of the host */
	uint32_t struct_size; /**< sizeof(struct vmc_kp_host) of the host */
	/** Log one line (no trailing newline needed); thread-safe. */
	void (*log)(int level, const char *fmt, ...)
		__attribute__((format(printf, 2, 3)));
	/** Zeroed, locked, non-dumpable memory; NULL on failure. */
	void *(*secret_alloc)(size_t len);
	/** Wipe and release memory from secret_alloc; NULL is allowed. */
	void (*secret_free)(void *p, size_t len);
	/** Fill buf with cryptographically strong random bytes. */
	int (*random)(void *buf, size_t len);
};

/**
 * The operations of one provider type. Returned by the entry function; must
 * stay valid until the plugin is unloaded.
 */
struct vmc_kp_ops {
	uint32_t abi_version; /**< must be VMC_KP_ABI_VERSION */
	uint32_t struct_size; /**< sizeof(struct vmc_kp_ops) the plugin was built with */
	const char *type;     /**< provider type, equal to the file name's <type> */
	const char *version;  /**< plugin version, for logs */
	uint32_t flags;       /**< VMC_KP_F_* */

	/**
	 * Create a provider instance named @name from its configuration
	 * parameters. Must not contact a remote server (that happens lazily,
	 * so a datastore mounts while its key server is down); it validates
	 * the parameters and local files. On success stores the instance in
	 * *inst. Mandatory.
	 */
	int (*open)(const struct vmc_kp_host *host, const char *name,
		    const struct vmc_kp_param *params, size_t nparams,
		    void **inst, char *err);

	/** Release an instance; wipes everything it holds. Mandatory. */
	void (*close)(void *inst);

	/**
	 * Create a new KEK. @label is a name the provider may attach to the
	 * key (a remote provider should, so that a key created by a request
	 * that timed out can be found again). Writes the new key's id
	 * (NUL-terminated, at most VMC_KP_ID_MAX bytes) to @id and its
	 * VMC_KP_KEK_LEN bytes to @kek. Mandatory.
	 */
	int (*create_key)(void *inst, const char *label, char *id,
			  uint8_t *kek, char *err);

	/**
	 * Fetch the KEK named @id into @kek (VMC_KP_KEK_LEN bytes).
	 * Mandatory.
	 */
	int (*get_key)(void *inst, const char *id, uint8_t *kek, char *err);

	/**
	 * Optional (may be NULL): check the provider's health and report one
	 * line per server or component through @report. Returns 0 when the
	 * provider is usable.
	 */
	int (*test)(void *inst, void (*report)(void *arg, const char *line),
		    void *arg, char *err);

	/**
	 * Optional (may be NULL): call @cb once per key this provider holds whose
	 * label starts with @label_prefix ("" = every key), with its id (as
	 * get_key takes it) and its label (NULL if the provider keeps none). A
	 * non-zero return from @cb stops the listing and is returned. Returns 0
	 * or the usual negative errno with a message in @err.
	 *
	 * The label is the one create_key was given (a provider that decorates
	 * labels, with a configured prefix for instance, matches and reports
	 * them undecorated). Each key is reported at most once, in no defined
	 * order; keys the provider no longer has (destroyed) are left out. A
	 * provider that derives its keys and stores none (native) has nothing
	 * to list and leaves this NULL: the host reports -EOPNOTSUPP.
	 *
	 * Threads: as the other operations (VMC_KP_F_SERIALIZE applies; a
	 * serialized provider is busy for the whole listing, which may take many
	 * round trips to a server). @cb runs on the calling thread, never while
	 * the plugin holds a lock of its own, but possibly while the host holds
	 * the instance's serialization: it must not call operations of the
	 * same instance. Appended to ABI version 1: check struct_size (see
	 * "Versioning" above) before calling it.
	 */
	int (*list_keys)(void *inst, const char *label_prefix,
			 int (*cb)(void *arg, const char *id, const char *label),
			 void *arg, char *err);
};

/** Type of the entry function exported as VMC_KP_ENTRY_SYMBOL. */
typedef const struct vmc_kp_ops *(*vmc_kp_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* VMCRYPTFS_KEYPROV_H */
