// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Privilege names and evaluation (see vmc_priv.h). Group membership comes
 * from the system's user and group databases (getpwuid_r, getgrouplist), not
 * from the calling process's supplementary groups, so the answer is the same
 * for the control socket and the mount. A small cache keeps the databases
 * from being read on every open().
 */
#include "vmc_priv.h"
#include "vmc_config.h"

#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
	uint32_t bit;
	const char *name;
} priv_names[] = {
	{ VMC_PRIV_ACCESS, "Cryptographer.Access" },
	{ VMC_PRIV_ENCRYPT, "Cryptographer.Encrypt" },
	{ VMC_PRIV_ENCRYPT_NEW, "Cryptographer.EncryptNew" },
	{ VMC_PRIV_DECRYPT, "Cryptographer.Decrypt" },
	{ VMC_PRIV_RECRYPT, "Cryptographer.Recrypt" },
	{ VMC_PRIV_ADD_DISK, "Cryptographer.AddDisk" },
	{ VMC_PRIV_CLONE, "Cryptographer.Clone" },
	{ VMC_PRIV_MIGRATE, "Cryptographer.Migrate" },
	{ VMC_PRIV_MANAGE_KEYS, "Cryptographer.ManageKeys" },
	{ VMC_PRIV_MANAGE_KEY_SERVERS, "Cryptographer.ManageKeyServers" },
	{ VMC_PRIV_MANAGE_POLICY, "Cryptographer.ManageEncryptionPolicy" },
	{ VMC_PRIV_REGISTER_VM, "Cryptographer.RegisterVM" },
	{ VMC_PRIV_READ_KEY_SERVERS, "Cryptographer.ReadKeyServersInfo" },
	{ VMC_PRIV_SYSTEM_VIEW, "System.View" },
};

uint32_t vmc_priv_from_name(const char *name)
{
	for (size_t i = 0; i < sizeof(priv_names) / sizeof(priv_names[0]); i++)
		if (!strcmp(priv_names[i].name, name))
			return priv_names[i].bit;
	return 0;
}

const char *vmc_priv_name(uint32_t priv)
{
	for (size_t i = 0; i < sizeof(priv_names) / sizeof(priv_names[0]); i++)
		if (priv_names[i].bit == priv)
			return priv_names[i].name;
	return "?";
}

void vmc_user_name(uid_t uid, char *buf, size_t len)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];

	if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &res) == 0 && res)
		snprintf(buf, len, "%s", pw.pw_name);
	else
		snprintf(buf, len, "%u", (unsigned)uid);
}

/* Does grant @g name user @uid or one of @groups? */
static bool grant_matches(const struct vmc_grant_conf *g, uid_t uid, const char *user,
			  const gid_t *groups, int ngroups)
{
	if (!g->is_group)
		return g->id_set ? g->id == (unsigned)uid : !strcmp(g->who, user);
	for (int i = 0; i < ngroups; i++) {
		if (g->id_set) {
			if (g->id == (unsigned)groups[i])
				return true;
		} else {
			struct group gr, *res = NULL;
			char tmp[4096];

			if (getgrgid_r(groups[i], &gr, tmp, sizeof(tmp), &res) == 0 && res &&
			    !strcmp(gr.gr_name, g->who))
				return true;
		}
	}
	return false;
}

static uint32_t compute(const struct vmc_config *cfg, uid_t uid, gid_t gid)
{
	char user[256];
	gid_t groups[256];
	int ngroups = 256;
	uint32_t privs = 0;

	if (!cfg->ngrants) /* the default grant */
		return uid == 0 ? VMC_ROLE_ADMINISTRATOR : 0;
	vmc_user_name(uid, user, sizeof(user));
	if (getgrouplist(user, gid, groups, &ngroups) < 0) {
		groups[0] = gid;
		ngroups = 1;
	}
	for (size_t i = 0; i < cfg->ngrants; i++)
		if (grant_matches(&cfg->grants[i], uid, user, groups, ngroups))
			privs |= cfg->grants[i].privs;
	return privs;
}

#define CACHE_SLOTS 64
#define CACHE_TTL 5 /* seconds */

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	const struct vmc_config *cfg;
	uid_t uid;
	gid_t gid;
	time_t at;
	uint32_t privs;
} cache[CACHE_SLOTS]; /* protected by cache_lock */

uint32_t vmc_privs_of(const struct vmc_config *cfg, uid_t uid, gid_t gid)
{
	unsigned int slot = ((unsigned)uid * 31u + (unsigned)gid) % CACHE_SLOTS;
	time_t now = time(NULL);
	uint32_t privs;

	pthread_mutex_lock(&cache_lock);
	if (cache[slot].cfg == cfg && cache[slot].uid == uid && cache[slot].gid == gid &&
	    now - cache[slot].at < CACHE_TTL) {
		privs = cache[slot].privs;
		pthread_mutex_unlock(&cache_lock);
		return privs;
	}
	pthread_mutex_unlock(&cache_lock);
	privs = compute(cfg, uid, gid);
	pthread_mutex_lock(&cache_lock);
	cache[slot].cfg = cfg;
	cache[slot].uid = uid;
	cache[slot].gid = gid;
	cache[slot].at = now;
	cache[slot].privs = privs;
	pthread_mutex_unlock(&cache_lock);
	return privs;
}
