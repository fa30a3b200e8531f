/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Key providers and the KEK cache.
 *
 * The keyring loads one plugin per provider type (keyprov/, dlopen from a
 * fixed directory), opens one instance per configured provider, and caches
 * the keys derived from each KEK it obtains. A KEK itself is held only for the
 * instant it takes to derive two keys from it (HKDF-SHA256, RFC 5869): the
 * wrap key that seals data keys in file headers and the key-check key of the
 * VM key record. Derived keys live in locked memory, are reference counted,
 * and are wiped when dropped (lock, unmount).
 *
 * Failures are cached for a short time, so a dead key server costs one
 * time-out per few seconds and not one per request; when the provider
 * answers again, the next request after that window succeeds.
 */
#ifndef VMC_KEYRING_H
#define VMC_KEYRING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmc_format.h"

struct vmc_config;
struct vmc_keyring;

/* Keys derived from one KEK. Immutable once published; reference counted. */
struct vmc_kek {
	char kek_provider[VMC_FMT_PROVIDER_MAX];
	char kek_id[VMC_FMT_KEKID_MAX];
	uint8_t *kek_wrap_key;  /* 32 bytes, secret memory */
	uint8_t *kek_check_key; /* 32 bytes, secret memory */
	atomic_int kek_refs;
};

/*
 * Load the plugins and open every provider of @cfg. Plugins come from
 * @plugin_dir (absolute; NULL means the compiled-in directory). No provider
 * is contacted here.
 */
int vmc_keyring_new(const struct vmc_config *cfg, const char *plugin_dir,
		    struct vmc_keyring **out, char *err, size_t errlen);
void vmc_keyring_free(struct vmc_keyring *kr);

/* Whether @provider is configured. */
bool vmc_keyring_has_provider(struct vmc_keyring *kr, const char *provider);

/*
 * Obtain the keys of KEK @id from @provider, from the cache or the provider.
 * Returns 0 with a reference in *out, or the provider's -errno (-ENOKEY,
 * -EHOSTUNREACH, ...) with a message.
 */
int vmc_keyring_get(struct vmc_keyring *kr, const char *provider, const char *id,
		    struct vmc_kek **out, char *err, size_t errlen);

/* Create a new KEK on @provider; @label names it on the provider. */
int vmc_keyring_create(struct vmc_keyring *kr, const char *provider, const char *label,
		       struct vmc_kek **out, char *err, size_t errlen);

/* Drop a cached KEK (the next get asks the provider again). */
void vmc_keyring_forget(struct vmc_keyring *kr, const char *provider, const char *id);
/* Forget the remembered failures of @provider (its key file was restored). */
void vmc_keyring_reset(struct vmc_keyring *kr, const char *provider);

/*
 * Administrative lock: while locked, get() of this KEK fails with -ENOKEY
 * ("locked by an administrator") without asking the provider, and the cached
 * keys are dropped. Unlock lifts that; the next get fetches the KEK again.
 */
void vmc_keyring_lock(struct vmc_keyring *kr, const char *provider, const char *id, bool lock);

enum vmc_kek_state {
	VMC_KEK_UNKNOWN,   /* never asked for, or forgotten */
	VMC_KEK_LOADED,    /* in memory */
	VMC_KEK_FAILED,    /* the last attempt failed (reason in msg) */
	VMC_KEK_LOCKED,    /* locked by an administrator */
};
/* What the keyring knows of a KEK, without contacting the provider. */
enum vmc_kek_state vmc_keyring_peek(struct vmc_keyring *kr, const char *provider, const char *id,
				    char *msg, size_t msglen);

/*
 * Whether provider @name was reachable at its last answer: 0, or the
 * transient error (with a message) that marks it down, without contacting it.
 */
int vmc_keyring_health(struct vmc_keyring *kr, const char *name, char *msg, size_t msglen);

/* Calls made to a provider since start (for metrics). */
struct vmc_kp_stats {
	uint64_t calls;        /* create_key, get_key and test calls */
	uint64_t failures;     /* of which failed */
	uint64_t transient;    /* of which failed because it was unreachable */
	double seconds;        /* total time spent in those calls */
	double last_seconds;   /* the last call's round trip */
};
int vmc_keyring_stats(struct vmc_keyring *kr, const char *name, struct vmc_kp_stats *st);

/* Provider @name: its type, plugin version and flags; -ENOENT if unknown. */
int vmc_keyring_provider_info(struct vmc_keyring *kr, const char *name, const char **type,
			      const char **version, uint32_t *flags);
/* Run the provider's health check; lines go to @report. -EOPNOTSUPP if none. */
int vmc_keyring_test(struct vmc_keyring *kr, const char *name,
		     void (*report)(void *arg, const char *line), void *arg, char *err,
		     size_t errlen);

/*
 * One key a provider lists: its id and the label it was created with (NULL
 * when the provider keeps none). A non-zero return stops the listing and is
 * what vmc_keyring_list returns.
 */
typedef int (*vmc_keyring_list_fn)(void *arg, const char *id, const char *label);

/*
 * Enumerate the keys provider @name holds whose label starts with @prefix
 * ("" or NULL: all), for instance "vmcryptfs-" for the keys vmcryptfs made
 * (the daemon labels them vmcryptfs-vm-UUID[-N] and vmcryptfs-ds-UUID).
 * Needs the optional plugin operation list_keys (a plugin whose struct_size
 * ends before it lacks it): -EOPNOTSUPP with a message when the plugin has
 * none (the native provider derives its keys and has nothing to list),
 * -ENOENT for an unknown provider, or the provider's error.
 */
int vmc_keyring_list(struct vmc_keyring *kr, const char *name, const char *prefix,
		     vmc_keyring_list_fn cb, void *arg, char *err, size_t errlen);

/* Take / release a reference. */
struct vmc_kek *vmc_kek_get(struct vmc_kek *k);
void vmc_kek_put(struct vmc_kek *k);

/* Derive a vmc_kek from raw KEK bytes (exposed for tests and offline tools). */
int vmc_kek_derive(const char *provider, const char *id, const uint8_t kek[32],
		   struct vmc_kek **out);

/* True for the errors that mean "provider unreachable, try again later". */
bool vmc_kp_error_transient(int r);

#endif
