// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Plugin loader and KEK cache (see vmc_keyring.h).
 *
 * The loader follows the cryptsetup token model: the provider type is
 * validated, the plugin path is built from one absolute directory (no library
 * search path), the file and its directory must not be writable by anyone but
 * root, the ABI version and the mandatory operations are checked before use.
 *
 * Lock order: kr_lock (cache) is never held while calling a plugin; a
 * provider's kp_serial lock (only for VMC_KP_F_SERIALIZE plugins) is taken
 * with no other lock held.
 */
#include "vmc_keyring.h"
#include "vmc_config.h"
#include "vmc_crypto.h"
#include "vmc_log.h"
#include "vmc_paths.h"
#include "vmcryptfs_keyprov.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KR_BUCKETS 256
#define KR_RETRY_NS (2ull * 1000000000ull) /* failures are remembered for 2 s */
#define KR_DOWN_MAX_NS (60ull * 1000000000ull)
#define KR_MSG_MAX 512

struct kr_plugin {
	char *type;
	void *dl;
	const struct vmc_kp_ops *ops;
	struct kr_plugin *next;
};

struct kr_provider {
	char *name;
	struct kr_plugin *plugin;
	void *inst;
	pthread_mutex_t kp_serial; /* held around calls when VMC_KP_F_SERIALIZE */
	/*
	 * The provider as a whole was unreachable (a transient error) at
	 * kp_down_ns: for kp_down_window (2 s, or twice what the failed call
	 * took, at most 60 s) every request fails at once with the same answer,
	 * so a dead key server costs one time-out, not one per key. A successful
	 * call (provider test, the health probe) ends it. Protected by kr_lock.
	 */
	uint64_t kp_down_ns;
	uint64_t kp_down_window; /* how long: at least twice what the failed call took */
	int kp_down_err;
	char kp_down_msg[KR_MSG_MAX];
	struct vmc_kp_stats kp_stats; /* kr_lock */
};

/* One cache entry: a KEK's derived keys, or a remembered failure. */
struct kr_entry {
	struct kr_entry *next;
	struct vmc_kek *kek; /* NULL for a remembered failure */
	int fail;            /* -errno of the failure */
	uint64_t fail_ns;    /* when it happened (CLOCK_MONOTONIC) */
	char fail_msg[KR_MSG_MAX];
	char provider[VMC_FMT_PROVIDER_MAX];
	char id[VMC_FMT_KEKID_MAX];
};

/* An administratively locked KEK. */
struct kr_lock {
	struct kr_lock *next;
	char provider[VMC_FMT_PROVIDER_MAX];
	char id[VMC_FMT_KEKID_MAX];
};

struct vmc_keyring {
	struct kr_lock *locks;   /* kr_lock */
	struct kr_plugin *plugins;
	struct kr_provider *providers;
	size_t nproviders;
	pthread_mutex_t kr_lock; /* protects buckets */
	struct kr_entry *buckets[KR_BUCKETS];
};

__attribute__((format(printf, 2, 3)))
static void host_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmc_vlog(level, fmt, ap);
	va_end(ap);
}

static const struct vmc_kp_host kr_host = {
	.abi_version = VMC_KP_ABI_VERSION,
	.struct_size = sizeof(struct vmc_kp_host),
	.log = host_log,
	.secret_alloc = vmc_secret_alloc,
	.secret_free = vmc_secret_free,
	.random = vmc_random,
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool vmc_kp_error_transient(int r)
{
	switch (-r) {
	case EHOSTUNREACH:
	case ECONNREFUSED:
	case ETIMEDOUT:
	case ENETUNREACH:
	case ECONNRESET:
	case EAGAIN:
		return true;
	}
	return false;
}

/* A file the root daemon will execute code from: root-owned, not writable by others. */
static int check_trusted(const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st)) {
		int e = errno;

		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	if ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		snprintf(err, errlen, "%s: refusing to load code from a file or directory that "
			 "others can write (owner %u, mode %04o)", path, st.st_uid,
			 st.st_mode & 07777);
		return -EPERM;
	}
	return 0;
}

static int plugin_load(struct vmc_keyring *kr, const char *dir, const char *type,
		       struct kr_plugin **out, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct kr_plugin *p;
	vmc_kp_entry_fn entry;
	const struct vmc_kp_ops *ops;
	int r;

	for (p = kr->plugins; p; p = p->next)
		if (!strcmp(p->type, type)) {
			*out = p;
			return 0;
		}
	if (dir[0] != '/') {
		snprintf(err, errlen, "key-provider plugin directory %s is not absolute", dir);
		return -EINVAL;
	}
	if (snprintf(path, sizeof(path), "%s/vmcryptfs-keyprov-%s.so", dir, type) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	r = check_trusted(dir, err, errlen);
	if (!r)
		r = check_trusted(path, err, errlen);
	if (r) {
		if (r == -ENOENT)
			snprintf(err, errlen, "no key-provider plugin for type \"%s\" (%s missing)",
				 type, path);
		return r;
	}
	p = calloc(1, sizeof(*p));
	if (!p || !(p->type = strdup(type))) {
		free(p);
		return -ENOMEM;
	}
	p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!p->dl) {
		snprintf(err, errlen, "cannot load %s: %s", path, dlerror());
		r = -ELIBBAD;
		goto fail;
	}
	entry = (vmc_kp_entry_fn)dlsym(p->dl, VMC_KP_ENTRY_SYMBOL);
	ops = entry ? entry() : NULL;
	if (!ops || ops->abi_version != VMC_KP_ABI_VERSION ||
	    ops->struct_size < offsetof(struct vmc_kp_ops, test) || !ops->type ||
	    strcmp(ops->type, type) || !ops->open || !ops->close || !ops->create_key ||
	    !ops->get_key) {
		snprintf(err, errlen, "%s is not a vmcryptfs key-provider plugin of ABI version %u "
			 "and type \"%s\"", path, VMC_KP_ABI_VERSION, type);
		r = -ELIBBAD;
		goto fail;
	}
	p->ops = ops;
	p->next = kr->plugins;
	kr->plugins = p;
	vmc_dbg("loaded key-provider plugin %s (version %s)", path,
		ops->version ? ops->version : "?");
	*out = p;
	return 0;
fail:
	if (p->dl)
		dlclose(p->dl);
	free(p->type);
	free(p);
	return r;
}

int vmc_keyring_new(const struct vmc_config *cfg, const char *plugin_dir,
		    struct vmc_keyring **out, char *err, size_t errlen)
{
	struct vmc_keyring *kr;
	int r = 0;

	if (vmc_crypto_init())
		return -EIO;
	kr = calloc(1, sizeof(*kr));
	if (!kr)
		return -ENOMEM;
	pthread_mutex_init(&kr->kr_lock, NULL);
	kr->providers = calloc(cfg->nproviders ? cfg->nproviders : 1, sizeof(*kr->providers));
	if (!kr->providers) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < cfg->nproviders; i++) {
		const struct vmc_provider_conf *pc = &cfg->providers[i];
		struct kr_provider *p = &kr->providers[i];
		char perr[VMC_KP_ERR_MAX] = "";

		p->name = strdup(pc->name);
		if (!p->name) {
			r = -ENOMEM;
			goto fail;
		}
		pthread_mutex_init(&p->kp_serial, NULL);
		kr->nproviders++;
		r = plugin_load(kr, plugin_dir ? plugin_dir : VMC_KEYPROV_DIR, pc->type, &p->plugin,
				err, errlen);
		if (r)
			goto fail;
		r = p->plugin->ops->open(&kr_host, pc->name, pc->params, pc->nparams, &p->inst,
					 perr);
		if (r) {
			snprintf(err, errlen, "key-provider \"%s\": %s", pc->name,
				 perr[0] ? perr : strerror(-r));
			p->inst = NULL;
			goto fail;
		}
	}
	*out = kr;
	return 0;
fail:
	vmc_keyring_free(kr);
	return r;
}

static void entry_free(struct kr_entry *e)
{
	if (e->kek)
		vmc_kek_put(e->kek);
	free(e);
}

void vmc_keyring_free(struct vmc_keyring *kr)
{
	struct kr_plugin *pl, *n;

	if (!kr)
		return;
	for (int b = 0; b < KR_BUCKETS; b++) {
		struct kr_entry *e = kr->buckets[b], *next;

		for (; e; e = next) {
			next = e->next;
			entry_free(e);
		}
	}
	while (kr->locks) {
		struct kr_lock *l = kr->locks;

		kr->locks = l->next;
		free(l);
	}
	for (size_t i = kr->nproviders; i-- > 0;) {
		struct kr_provider *p = &kr->providers[i];

		if (p->inst)
			p->plugin->ops->close(p->inst);
		pthread_mutex_destroy(&p->kp_serial);
		free(p->name);
	}
	free(kr->providers);
	for (pl = kr->plugins; pl; pl = n) {
		n = pl->next;
		dlclose(pl->dl);
		free(pl->type);
		free(pl);
	}
	pthread_mutex_destroy(&kr->kr_lock);
	free(kr);
}

static struct kr_provider *provider_find(struct vmc_keyring *kr, const char *name)
{
	for (size_t i = 0; i < kr->nproviders; i++)
		if (!strcmp(kr->providers[i].name, name))
			return &kr->providers[i];
	return NULL;
}

bool vmc_keyring_has_provider(struct vmc_keyring *kr, const char *provider)
{
	return provider_find(kr, provider) != NULL;
}

struct vmc_kek *vmc_kek_get(struct vmc_kek *k)
{
	atomic_fetch_add(&k->kek_refs, 1);
	return k;
}

void vmc_kek_put(struct vmc_kek *k)
{
	if (!k || atomic_fetch_sub(&k->kek_refs, 1) != 1)
		return;
	vmc_secret_free(k->kek_wrap_key, 32);
	vmc_secret_free(k->kek_check_key, 32);
	free(k);
}

int vmc_kek_derive(const char *provider, const char *id, const uint8_t kek[32],
		   struct vmc_kek **out)
{
	struct vmc_kek *k;
	int r = -ENOMEM;

	if (strlen(provider) >= VMC_FMT_PROVIDER_MAX || !provider[0] ||
	    strlen(id) >= VMC_FMT_KEKID_MAX || !id[0])
		return -EINVAL;
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	atomic_init(&k->kek_refs, 1);
	strcpy(k->kek_provider, provider);
	strcpy(k->kek_id, id);
	k->kek_wrap_key = vmc_secret_alloc(32);
	k->kek_check_key = vmc_secret_alloc(32);
	if (!k->kek_wrap_key || !k->kek_check_key)
		goto fail;
	/* Distinct HKDF info strings keep the two keys independent. */
	r = vmc_hkdf_sha256(kek, 32, NULL, 0, VMC_FMT_INFO_DEK_WRAP,
			    strlen(VMC_FMT_INFO_DEK_WRAP), k->kek_wrap_key, 32);
	if (!r)
		r = vmc_hkdf_sha256(kek, 32, NULL, 0, VMC_FMT_INFO_KEY_CHECK,
				    strlen(VMC_FMT_INFO_KEY_CHECK), k->kek_check_key, 32);
	if (r)
		goto fail;
	*out = k;
	return 0;
fail:
	vmc_kek_put(k);
	return r;
}

static unsigned int bucket_of(const char *provider, const char *id)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (const char *s = provider; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	h = (h ^ '/') * 16777619u;
	for (const char *s = id; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h % KR_BUCKETS;
}

/* Caller holds kr_lock. */
static struct kr_entry **entry_find(struct vmc_keyring *kr, const char *provider, const char *id)
{
	struct kr_entry **pp = &kr->buckets[bucket_of(provider, id)];

	for (; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->provider, provider) && !strcmp((*pp)->id, id))
			return pp;
	return pp;
}

/* Publish a result (a KEK or a failure) in the cache, replacing what was there. */
static void cache_store(struct vmc_keyring *kr, const char *provider, const char *id,
			struct vmc_kek *kek, int fail, const char *msg)
{
	struct kr_entry *e = calloc(1, sizeof(*e)), **pp;

	if (!e)
		return;
	snprintf(e->provider, sizeof(e->provider), "%s", provider);
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->kek = kek ? vmc_kek_get(kek) : NULL;
	e->fail = fail;
	e->fail_ns = now_ns();
	snprintf(e->fail_msg, sizeof(e->fail_msg), "%s", msg ? msg : "");
	pthread_mutex_lock(&kr->kr_lock);
	pp = entry_find(kr, provider, id);
	if (*pp) {
		struct kr_entry *old = *pp;

		e->next = old->next;
		*pp = e;
		pthread_mutex_unlock(&kr->kr_lock);
		entry_free(old);
		return;
	}
	*pp = e;
	pthread_mutex_unlock(&kr->kr_lock);
}

static int call_provider(struct kr_provider *p, bool create, const char *arg, char *id_out,
			 uint8_t *kek, char *perr)
{
	bool serial = p->plugin->ops->flags & VMC_KP_F_SERIALIZE;
	int r;

	if (serial)
		pthread_mutex_lock(&p->kp_serial);
	if (create)
		r = p->plugin->ops->create_key(p->inst, arg, id_out, kek, perr);
	else
		r = p->plugin->ops->get_key(p->inst, arg, kek, perr);
	if (serial)
		pthread_mutex_unlock(&p->kp_serial);
	if (r > 0)
		r = -EIO; /* a plugin broke the contract */
	return r;
}

/* kr_lock held. */
static bool is_locked(struct vmc_keyring *kr, const char *provider, const char *id)
{
	for (struct kr_lock *l = kr->locks; l; l = l->next)
		if (!strcmp(l->provider, provider) && !strcmp(l->id, id))
			return true;
	return false;
}

/* Drop the remembered failures of @p (all of its ids). */
static void forget_failures(struct vmc_keyring *kr, struct kr_provider *p)
{
	struct kr_entry *dead = NULL;

	pthread_mutex_lock(&kr->kr_lock);
	p->kp_down_err = 0;
	for (int b = 0; b < KR_BUCKETS; b++) {
		struct kr_entry **pp = &kr->buckets[b];

		while (*pp) {
			struct kr_entry *e = *pp;

			if (!e->kek && !strcmp(e->provider, p->name)) {
				*pp = e->next;
				e->next = dead;
				dead = e;
			} else {
				pp = &e->next;
			}
		}
	}
	pthread_mutex_unlock(&kr->kr_lock);
	while (dead) {
		struct kr_entry *n = dead->next;

		entry_free(dead);
		dead = n;
	}
}

/*
 * Record how a call to @p went: a transient error marks the whole provider
 * down for a while; any answer (even "no such key") marks it up.
 */
static void provider_health(struct vmc_keyring *kr, struct kr_provider *p, int r,
			    const char *msg, uint64_t t0)
{
	double secs = (double)(now_ns() - t0) / 1e9;
	bool was_down;

	pthread_mutex_lock(&kr->kr_lock);
	p->kp_stats.calls++;
	p->kp_stats.failures += r != 0;
	p->kp_stats.transient += vmc_kp_error_transient(r);
	p->kp_stats.seconds += secs;
	p->kp_stats.last_seconds = secs;
	was_down = p->kp_down_err != 0;
	if (vmc_kp_error_transient(r)) {
		uint64_t took = now_ns() - t0;

		p->kp_down_err = r;
		p->kp_down_ns = now_ns();
		/* A black-holed cluster takes its time-outs per attempt: retry no
		 * more often than that, or every request pays them. */
		p->kp_down_window = 2 * took > KR_RETRY_NS ? 2 * took : KR_RETRY_NS;
		if (p->kp_down_window > KR_DOWN_MAX_NS)
			p->kp_down_window = KR_DOWN_MAX_NS;
		snprintf(p->kp_down_msg, sizeof(p->kp_down_msg), "key provider \"%s\": %s", p->name,
			 msg[0] ? msg : strerror(-r));
	} else {
		p->kp_down_err = 0;
	}
	pthread_mutex_unlock(&kr->kr_lock);
	if (was_down && !vmc_kp_error_transient(r))
		forget_failures(kr, p); /* it answers again: retry every key now */
}

void vmc_keyring_reset(struct vmc_keyring *kr, const char *provider)
{
	struct kr_provider *p = provider_find(kr, provider);

	if (p)
		forget_failures(kr, p);
}

int vmc_keyring_get(struct vmc_keyring *kr, const char *provider, const char *id,
		    struct vmc_kek **out, char *err, size_t errlen)
{
	struct kr_provider *p = provider_find(kr, provider);
	struct kr_entry **pp;
	char perr[VMC_KP_ERR_MAX] = "";
	uint8_t *kek;
	struct vmc_kek *k = NULL;
	uint64_t t0;
	int r;

	if (!p) {
		snprintf(err, errlen, "key provider \"%s\" is not configured", provider);
		return -ENOKEY;
	}
	pthread_mutex_lock(&kr->kr_lock);
	if (is_locked(kr, provider, id)) {
		pthread_mutex_unlock(&kr->kr_lock);
		snprintf(err, errlen, "key provider \"%s\", key %s: locked by an administrator "
			 "(vmcryptfs-ctl unlock)", provider, id);
		return -ENOKEY;
	}
	pp = entry_find(kr, provider, id);
	if (*pp && (*pp)->kek) {
		*out = vmc_kek_get((*pp)->kek);
		pthread_mutex_unlock(&kr->kr_lock);
		return 0;
	}
	if (*pp && now_ns() - (*pp)->fail_ns < KR_RETRY_NS) {
		r = (*pp)->fail;
		snprintf(err, errlen, "%s", (*pp)->fail_msg);
		pthread_mutex_unlock(&kr->kr_lock);
		return r;
	}
	if (p->kp_down_err && now_ns() - p->kp_down_ns < p->kp_down_window) {
		r = p->kp_down_err;
		snprintf(err, errlen, "%s", p->kp_down_msg);
		pthread_mutex_unlock(&kr->kr_lock);
		return r;
	}
	pthread_mutex_unlock(&kr->kr_lock);

	kek = vmc_secret_alloc(VMC_KP_KEK_LEN);
	if (!kek)
		return -ENOMEM;
	t0 = now_ns();
	r = call_provider(p, false, id, NULL, kek, perr);
	if (!r)
		r = vmc_kek_derive(provider, id, kek, &k);
	vmc_secret_free(kek, VMC_KP_KEK_LEN);
	provider_health(kr, p, r, perr, t0);
	if (r) {
		snprintf(err, errlen, "key provider \"%s\", key %s: %s", provider, id,
			 perr[0] ? perr : strerror(-r));
		cache_store(kr, provider, id, NULL, r, err);
		return r;
	}
	cache_store(kr, provider, id, k, 0, NULL);
	*out = k;
	return 0;
}

int vmc_keyring_create(struct vmc_keyring *kr, const char *provider, const char *label,
		       struct vmc_kek **out, char *err, size_t errlen)
{
	struct kr_provider *p = provider_find(kr, provider);
	char perr[VMC_KP_ERR_MAX] = "", id[VMC_KP_ID_MAX] = "";
	struct vmc_kek *k = NULL;
	uint64_t t0;
	uint8_t *kek;
	int r;

	if (!p) {
		snprintf(err, errlen, "key provider \"%s\" is not configured", provider);
		return -ENOKEY;
	}
	kek = vmc_secret_alloc(VMC_KP_KEK_LEN);
	if (!kek)
		return -ENOMEM;
	t0 = now_ns();
	r = call_provider(p, true, label, id, kek, perr);
	if (!r && (!memchr(id, '\0', sizeof(id)) || !id[0] || strlen(id) >= VMC_FMT_KEKID_MAX)) {
		snprintf(perr, sizeof(perr), "provider returned an invalid key id");
		r = -EPROTO;
	}
	if (!r)
		r = vmc_kek_derive(provider, id, kek, &k);
	vmc_secret_free(kek, VMC_KP_KEK_LEN);
	provider_health(kr, p, r, perr, t0);
	if (r) {
		snprintf(err, errlen, "key provider \"%s\": cannot create a key: %s", provider,
			 perr[0] ? perr : strerror(-r));
		return r;
	}
	/* The provider changed (a native key file may exist now): stale
	 * failures would hide its real answers. */
	forget_failures(kr, p);
	cache_store(kr, provider, id, k, 0, NULL);
	*out = k;
	return 0;
}

void vmc_keyring_forget(struct vmc_keyring *kr, const char *provider, const char *id)
{
	struct kr_entry **pp, *e = NULL;

	pthread_mutex_lock(&kr->kr_lock);
	pp = entry_find(kr, provider, id);
	if (*pp) {
		e = *pp;
		*pp = e->next;
	}
	pthread_mutex_unlock(&kr->kr_lock);
	if (e)
		entry_free(e);
}

void vmc_keyring_lock(struct vmc_keyring *kr, const char *provider, const char *id, bool lock)
{
	struct kr_lock **pp, *l;

	pthread_mutex_lock(&kr->kr_lock);
	for (pp = &kr->locks; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->provider, provider) && !strcmp((*pp)->id, id))
			break;
	if (lock && !*pp) {
		l = calloc(1, sizeof(*l));
		if (l) {
			snprintf(l->provider, sizeof(l->provider), "%s", provider);
			snprintf(l->id, sizeof(l->id), "%s", id);
			l->next = kr->locks;
			kr->locks = l;
		}
	} else if (!lock && *pp) {
		l = *pp;
		*pp = l->next;
		free(l);
	}
	pthread_mutex_unlock(&kr->kr_lock);
	vmc_keyring_forget(kr, provider, id); /* wipe it now, or retry afresh */
}

enum vmc_kek_state vmc_keyring_peek(struct vmc_keyring *kr, const char *provider, const char *id,
				    char *msg, size_t msglen)
{
	enum vmc_kek_state st = VMC_KEK_UNKNOWN;
	struct kr_entry **pp;

	msg[0] = '\0';
	if (!provider_find(kr, provider)) {
		snprintf(msg, msglen, "key provider \"%s\" is not configured", provider);
		return VMC_KEK_FAILED; /* no way to get its key here */
	}
	pthread_mutex_lock(&kr->kr_lock);
	if (is_locked(kr, provider, id)) {
		st = VMC_KEK_LOCKED;
	} else {
		pp = entry_find(kr, provider, id);
		if (*pp && (*pp)->kek) {
			st = VMC_KEK_LOADED;
		} else if (*pp) {
			st = VMC_KEK_FAILED;
			snprintf(msg, msglen, "%s", (*pp)->fail_msg);
		}
	}
	pthread_mutex_unlock(&kr->kr_lock);
	return st;
}

int vmc_keyring_provider_info(struct vmc_keyring *kr, const char *name, const char **type,
			      const char **version, uint32_t *flags)
{
	struct kr_provider *p = provider_find(kr, name);

	if (!p)
		return -ENOENT;
	*type = p->plugin->ops->type;
	*version = p->plugin->ops->version ? p->plugin->ops->version : "?";
	*flags = p->plugin->ops->flags;
	return 0;
}

int vmc_keyring_test(struct vmc_keyring *kr, const char *name,
		     void (*report)(void *arg, const char *line), void *arg, char *err,
		     size_t errlen)
{
	struct kr_provider *p = provider_find(kr, name);
	char perr[VMC_KP_ERR_MAX] = "";
	uint64_t t0;
	bool serial;
	int r;

	if (!p) {
		snprintf(err, errlen, "key provider \"%s\" is not configured", name);
		return -ENOENT;
	}
	if (p->plugin->ops->struct_size < offsetof(struct vmc_kp_ops, test) + sizeof(void *) ||
	    !p->plugin->ops->test) {
		snprintf(err, errlen, "key provider \"%s\" has no health check", name);
		return -EOPNOTSUPP;
	}
	serial = p->plugin->ops->flags & VMC_KP_F_SERIALIZE;
	t0 = now_ns();
	if (serial)
		pthread_mutex_lock(&p->kp_serial);
	r = p->plugin->ops->test(p->inst, report, arg, perr);
	if (serial)
		pthread_mutex_unlock(&p->kp_serial);
	if (r)
		snprintf(err, errlen, "%s", perr[0] ? perr : strerror(-r));
	provider_health(kr, p, r, perr, t0);
	return r > 0 ? -EIO : r;
}

int vmc_keyring_health(struct vmc_keyring *kr, const char *name, char *msg, size_t msglen)
{
	struct kr_provider *p = provider_find(kr, name);
	int r = 0;

	msg[0] = '\0';
	if (!p)
		return -ENOENT;
	pthread_mutex_lock(&kr->kr_lock);
	if (p->kp_down_err) {
		r = p->kp_down_err;
		snprintf(msg, msglen, "%s", p->kp_down_msg);
	}
	pthread_mutex_unlock(&kr->kr_lock);
	return r;
}

int vmc_keyring_list(struct vmc_keyring *kr, const char *name, const char *prefix,
		     vmc_keyring_list_fn cb, void *arg, char *err, size_t errlen)
{
	struct kr_provider *p = provider_find(kr, name);
	const struct vmc_kp_ops *ops;
	char perr[VMC_KP_ERR_MAX] = "";
	uint64_t t0;
	bool serial;
	int r;

	if (!p) {
		snprintf(err, errlen, "key provider \"%s\" is not configured", name);
		return -ENOENT;
	}
	ops = p->plugin->ops;
	/* Appended to ABI 1: a plugin built before it ends before the member. */
	if (ops->struct_size < offsetof(struct vmc_kp_ops, list_keys) + sizeof(void *) ||
	    !ops->list_keys) {
		snprintf(err, errlen, "key provider \"%s\" (type %s) cannot list its keys", name,
			 ops->type);
		return -EOPNOTSUPP;
	}
	serial = ops->flags & VMC_KP_F_SERIALIZE;
	t0 = now_ns();
	if (serial)
		pthread_mutex_lock(&p->kp_serial);
	r = ops->list_keys(p->inst, prefix ? prefix : "", cb, arg, perr);
	if (serial)
		pthread_mutex_unlock(&p->kp_serial);
	if (r < 0) {
		snprintf(err, errlen, "key provider \"%s\": %s", name,
			 perr[0] ? perr : strerror(-r));
		provider_health(kr, p, r, perr, t0);
	}
	return r;
}

int vmc_keyring_stats(struct vmc_keyring *kr, const char *name, struct vmc_kp_stats *st)
{
	struct kr_provider *p = provider_find(kr, name);

	if (!p)
		return -ENOENT;
	pthread_mutex_lock(&kr->kr_lock);
	*st = p->kp_stats;
	pthread_mutex_unlock(&kr->kr_lock);
	return 0;
}
