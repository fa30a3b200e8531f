// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The "native" key provider: the embedded default, no external server.
 *
 * A 256-bit primary key lives in one file on the host (never in a
 * datastore), by default /var/lib/vmcryptfs/native/default.key, mode 0600.
 * KEKs are derived from it and never stored:
 *
 *     id  = "nkp1." || hex(primary key id, 16 bytes) || "." || hex(random 16 bytes)
 *     KEK = HKDF-SHA256(IKM = primary key, salt = "vmcryptfs/native/v1",
 *                       info = id)                            (RFC 5869)
 *
 * The id names the primary key it was made under, so a KEK asked of the wrong
 * primary key is reported as exactly that (-ENOKEY), not as a wrong key.
 *
 * The key file is created by the first create_key when it does not exist, with
 * O_EXCL and link(2), so an existing file is never replaced. Beside it,
 * "<key-file>.id" records the id (the public fingerprint) of the key made
 * there: if the key file later disappears, create_key refuses to make a new
 * one (that would leave every VM of the old key locked while new VMs use the
 * new one) until the file is restored or the marker removed on purpose. A
 * missing file never makes get_key invent one; a corrupt file is reported and
 * never overwritten. File layout: docs/FORMAT.md, "Native primary key".
 */
#include "vmc_format.h"
#include "vmc_paths.h"
#include "vmcryptfs_keyprov.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <gcrypt.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NATIVE_SALT "vmcryptfs/native/v1"
#define NATIVE_ID_PREFIX "nkp1."
#define NATIVE_ID_LEN (5 + 32 + 1 + 32)

#define NATIVE_PATH_MAX 160 /* keeps every message within VMC_KP_ERR_MAX */
#define ERR(...) snprintf(err, VMC_KP_ERR_MAX, __VA_ARGS__)

enum native_state {
	NATIVE_MISSING, /* no key file yet: create_key makes one */
	NATIVE_LOADED,
	NATIVE_BROKEN,  /* unreadable or corrupt: every operation fails */
};

struct native {
	const struct vmc_kp_host *host;
	char *name;
	char path[NATIVE_PATH_MAX];
	pthread_mutex_t lock; /* protects state, key, key_id, broken */
	enum native_state state;
	int broken_errno;
	char broken[VMC_KP_ERR_MAX];
	uint8_t *key;         /* 32 bytes, host secret memory */
	uint8_t key_id[16];
	struct stat loaded;   /* the key file the key came from */
};

static void hex(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

static int hmac(const void *key, size_t keylen, const void *d1, size_t l1, const void *d2,
		size_t l2, uint8_t out[32])
{
	gcry_mac_hd_t h;
	size_t outlen = 32;
	int r = -EIO;

	if (gcry_mac_open(&h, GCRY_MAC_HMAC_SHA256, GCRY_MAC_FLAG_SECURE, NULL))
		return -EIO;
	if (!gcry_mac_setkey(h, key, keylen) && !gcry_mac_write(h, d1, l1) &&
	    (!l2 || !gcry_mac_write(h, d2, l2)) && !gcry_mac_read(h, out, &outlen))
		r = 0;
	gcry_mac_close(h);
	return r;
}

/* HKDF-SHA256 with a 32-byte output: PRK = HMAC(salt, IKM); OKM = HMAC(PRK, info | 0x01). */
static int derive_kek(struct native *n, const char *id, uint8_t *kek)
{
	uint8_t *prk = n->host->secret_alloc(32);
	static const uint8_t one = 1;
	int r;

	if (!prk)
		return -ENOMEM;
	r = hmac(NATIVE_SALT, strlen(NATIVE_SALT), n->key, 32, NULL, 0, prk);
	if (!r)
		r = hmac(prk, 32, id, strlen(id), &one, 1, kek);
	n->host->secret_free(prk, 32);
	return r;
}

static void set_broken(struct native *n, int e, const char *msg)
{
	n->state = NATIVE_BROKEN;
	n->broken_errno = e;
	snprintf(n->broken, sizeof(n->broken), "%s", msg);
}

/* The fingerprint recorded beside the key file, or "" if there is none. */
static void read_marker(struct native *n, char fp[33])
{
	char path[NATIVE_PATH_MAX + 8];
	ssize_t got;
	int fd;

	fp[0] = '\0';
	snprintf(path, sizeof(path), "%s.id", n->path);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	got = read(fd, fp, 32);
	close(fd);
	fp[got == 32 ? 32 : 0] = '\0';
}

static void write_marker(struct native *n)
{
	char path[NATIVE_PATH_MAX + 8], tmp[NATIVE_PATH_MAX + 24], line[34];
	int fd;

	snprintf(path, sizeof(path), "%s.id", n->path);
	snprintf(tmp, sizeof(tmp), "%s.id.tmp%d", n->path, (int)getpid());
	hex(n->key_id, sizeof(n->key_id), line);
	line[32] = '\n';
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, 33) == 33 && !fsync(fd) && !rename(tmp, path)) {
		close(fd);
		return;
	}
	close(fd);
	unlink(tmp);
}

/* Load the key file; caller holds n->lock. */
static void load_key(struct native *n)
{
	struct vmc_fmt_native_key *k = NULL;
	uint8_t sum[32];
	char msg[VMC_KP_ERR_MAX];
	struct stat st;
	ssize_t got;
	int fd;

	fd = open(n->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			n->state = NATIVE_MISSING;
			return;
		}
		snprintf(msg, sizeof(msg), "cannot open primary key file %s: %s", n->path,
			 strerror(errno));
		set_broken(n, -EACCES, msg);
		return;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(msg, sizeof(msg), "primary key file %s is not a regular file", n->path);
		set_broken(n, -EBADMSG, msg);
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO) || st.st_uid != geteuid()) {
		snprintf(msg, sizeof(msg), "primary key file %s must be owned by uid %u and not "
			 "accessible to others (chmod 600)", n->path, (unsigned)geteuid());
		set_broken(n, -EACCES, msg);
		goto out;
	}
	k = n->host->secret_alloc(sizeof(*k));
	if (!k) {
		set_broken(n, -ENOMEM, "out of secure memory");
		goto out;
	}
	got = pread(fd, k, sizeof(*k), 0);
	if (st.st_size != (off_t)sizeof(*k) || got != (ssize_t)sizeof(*k)) {
		snprintf(msg, sizeof(msg), "primary key file %s is damaged (%lld bytes, expected "
			 "%zu); restore it from backup", n->path, (long long)st.st_size, sizeof(*k));
		set_broken(n, -EBADMSG, msg);
		goto out;
	}
	gcry_md_hash_buffer(GCRY_MD_SHA256, sum, k, offsetof(struct vmc_fmt_native_key, checksum));
	if (memcmp(k->prefix.magic, VMC_FMT_MAGIC, VMC_FMT_MAGIC_LEN) ||
	    le16toh(k->prefix.type) != VMC_FMT_TYPE_NATIVE_KEY ||
	    le16toh(k->prefix.version) != VMC_FMT_VERSION ||
	    memcmp(sum, k->checksum, sizeof(sum))) {
		snprintf(msg, sizeof(msg), "primary key file %s is damaged (bad magic, version or "
			 "checksum); restore it from backup", n->path);
		set_broken(n, -EBADMSG, msg);
		goto out;
	}
	n->key = n->host->secret_alloc(32);
	if (!n->key) {
		set_broken(n, -ENOMEM, "out of secure memory");
		goto out;
	}
	memcpy(n->key, k->key, 32);
	memcpy(n->key_id, k->key_id, sizeof(n->key_id));
	n->loaded = st;
	n->state = NATIVE_LOADED;
	{
		char fp[33];

		read_marker(n, fp);
		if (!fp[0])
			write_marker(n); /* key files made before markers existed */
	}
out:
	n->host->secret_free(k, sizeof(*k));
	close(fd);
}

static int mkdir_parents(char *path, mode_t leaf_mode)
{
	char *slash = strrchr(path, '/');
	int r;

	if (!slash || slash == path)
		return 0;
	*slash = '\0';
	if (mkdir(path, leaf_mode) == 0 || errno == EEXIST) {
		r = 0;
	} else if (errno == ENOENT) {
		r = mkdir_parents(path, 0755);
		if (!r && mkdir(path, leaf_mode) && errno != EEXIST)
			r = -errno;
	} else {
		r = -errno;
	}
	*slash = '/';
	return r;
}

/*
 * Bring the loaded key in line with the key file: load it if it is not
 * loaded, and load it again if another file was put in its place (a
 * `provider restore --force`). A key file that went away leaves the loaded
 * key in use: the VMs keep running. Caller holds n->lock.
 */
static void refresh(struct native *n)
{
	struct stat st;

	if (n->state == NATIVE_LOADED) {
		if (stat(n->path, &st) ||
		    (st.st_dev == n->loaded.st_dev && st.st_ino == n->loaded.st_ino &&
		     st.st_size == n->loaded.st_size &&
		     st.st_mtim.tv_sec == n->loaded.st_mtim.tv_sec &&
		     st.st_mtim.tv_nsec == n->loaded.st_mtim.tv_nsec))
			return;
		n->host->secret_free(n->key, 32);
		n->key = NULL;
		n->state = NATIVE_MISSING;
		n->host->log(VMC_KP_LOG_NOTICE, "key-provider \"%s\": %s was replaced; loading it",
			     n->name, n->path);
	}
	load_key(n);
}

/* Create the key file; caller holds n->lock and saw NATIVE_MISSING. */
static int create_key_file(struct native *n, char *err)
{
	struct vmc_fmt_native_key *k;
	char tmp[NATIVE_PATH_MAX + 16], dir[NATIVE_PATH_MAX];
	int fd, dfd, r = 0;

	{
		char fp[33];

		read_marker(n, fp);
		if (fp[0]) {
			/* Another daemon may have just created it (and the marker). */
			load_key(n);
			if (n->state == NATIVE_LOADED)
				return 0;
			ERR("primary key file %s (key id %s) is missing; restore it from backup, or "
			    "remove %s.id to start over with a new key", n->path, fp, n->path);
			return -ENOENT;
		}
	}
	snprintf(dir, sizeof(dir), "%s", n->path);
	r = mkdir_parents(dir, 0700);
	if (r) {
		ERR("cannot create the directory of %s: %s", n->path, strerror(-r));
		return r;
	}
	k = n->host->secret_alloc(sizeof(*k));
	if (!k)
		return -ENOMEM;
	memcpy(k->prefix.magic, VMC_FMT_MAGIC, VMC_FMT_MAGIC_LEN);
	k->prefix.type = htole16(VMC_FMT_TYPE_NATIVE_KEY);
	k->prefix.version = htole16(VMC_FMT_VERSION);
	r = n->host->random(k->key_id, sizeof(k->key_id));
	if (!r)
		r = n->host->random(k->key, sizeof(k->key));
	if (r)
		goto out;
	gcry_md_hash_buffer(GCRY_MD_SHA256, k->checksum, k,
			    offsetof(struct vmc_fmt_native_key, checksum));

	snprintf(tmp, sizeof(tmp), "%s.tmp%d", n->path, (int)getpid());
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		ERR("cannot create primary key file %s: %s", n->path, strerror(errno));
		goto out;
	}
	if (write(fd, k, sizeof(*k)) != (ssize_t)sizeof(*k) || fsync(fd)) {
		r = errno ? -errno : -EIO;
		ERR("cannot write primary key file %s: %s", n->path, strerror(-r));
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	/* link(2) fails if the name exists: an existing key is never replaced. */
	if (link(tmp, n->path)) {
		r = -errno;
		unlink(tmp);
		if (r == -EEXIST) {
			/* Another daemon created it first: use that one. */
			load_key(n);
			if (n->state == NATIVE_LOADED) {
				r = 0;
				goto out;
			}
		}
		ERR("cannot install primary key file %s: %s", n->path, strerror(-r));
		goto out;
	}
	unlink(tmp);
	*strrchr(dir, '/') = '\0';
	dfd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	n->key = n->host->secret_alloc(32);
	if (!n->key) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(n->key, k->key, 32);
	memcpy(n->key_id, k->key_id, sizeof(n->key_id));
	n->state = NATIVE_LOADED;
	write_marker(n);
	{
		char fp[33];

		hex(n->key_id, sizeof(n->key_id), fp);
		n->host->log(VMC_KP_LOG_NOTICE,
			     "key-provider \"%s\": created primary key %s (id %s); back it up",
			     n->name, n->path, fp);
	}
out:
	n->host->secret_free(k, sizeof(*k));
	return r;
}

static int native_open(const struct vmc_kp_host *host, const char *name,
		       const struct vmc_kp_param *params, size_t nparams, void **inst, char *err)
{
	struct native *n;
	const char *path = VMC_NATIVE_DEFAULT_KEY;

	for (size_t i = 0; i < nparams; i++) {
		if (!strcmp(params[i].name, "key-file")) {
			path = params[i].value;
		} else {
			ERR("unknown option \"%s\" (the native provider takes: key-file)",
			    params[i].name);
			return -EINVAL;
		}
	}
	if (path[0] != '/' || strlen(path) >= NATIVE_PATH_MAX) {
		ERR("key-file \"%.100s\" must be an absolute path of at most %d bytes", path,
		    NATIVE_PATH_MAX - 1);
		return -EINVAL;
	}
	if (gcry_check_version("1.10.0") == NULL) {
		ERR("libgcrypt 1.10 or later is required");
		return -EIO;
	}
	n = calloc(1, sizeof(*n));
	if (!n || !(n->name = strdup(name))) {
		free(n);
		return -ENOMEM;
	}
	n->host = host;
	snprintf(n->path, sizeof(n->path), "%s", path);
	pthread_mutex_init(&n->lock, NULL);
	load_key(n);
	if (n->state == NATIVE_BROKEN)
		host->log(VMC_KP_LOG_ERR, "key-provider \"%s\": %s", name, n->broken);
	*inst = n;
	return 0;
}

static void native_close(void *inst)
{
	struct native *n = inst;

	if (!n)
		return;
	n->host->secret_free(n->key, 32);
	pthread_mutex_destroy(&n->lock);
	free(n->name);
	free(n);
}

static int native_create_key(void *inst, const char *label, char *id, uint8_t *kek, char *err)
{
	struct native *n = inst;
	uint8_t rnd[16];
	char fp[33], rh[33];
	int r = 0;

	(void)label; /* native ids are random; nothing to name on a server */
	pthread_mutex_lock(&n->lock);
	refresh(n); /* the file may have been restored or fixed meanwhile */
	if (n->state == NATIVE_MISSING)
		r = create_key_file(n, err);
	if (!r && n->state == NATIVE_BROKEN) {
		ERR("%s", n->broken);
		r = n->broken_errno;
	}
	if (!r)
		r = n->host->random(rnd, sizeof(rnd));
	if (!r) {
		hex(n->key_id, sizeof(n->key_id), fp);
		hex(rnd, sizeof(rnd), rh);
		snprintf(id, VMC_KP_ID_MAX, NATIVE_ID_PREFIX "%s.%s", fp, rh);
		r = derive_kek(n, id, kek);
	}
	pthread_mutex_unlock(&n->lock);
	return r;
}

static int native_get_key(void *inst, const char *id, uint8_t *kek, char *err)
{
	struct native *n = inst;
	char fp[33];
	int r;

	if (strlen(id) != NATIVE_ID_LEN || strncmp(id, NATIVE_ID_PREFIX, 5) || id[37] != '.') {
		ERR("\"%s\" is not a native provider key id", id);
		return -ENOKEY;
	}
	pthread_mutex_lock(&n->lock);
	if (n->state == NATIVE_LOADED) {
		hex(n->key_id, sizeof(n->key_id), fp);
		if (strncmp(id + 5, fp, 32))
			refresh(n); /* made by another primary key: was the file restored? */
	} else {
		load_key(n);
	}
	switch (n->state) {
	case NATIVE_MISSING:
		ERR("primary key file %s is missing; restore it from backup (the key was made by "
		    "primary key %.32s)", n->path, id + 5);
		r = -ENOENT;
		break;
	case NATIVE_BROKEN:
		ERR("%s", n->broken);
		r = n->broken_errno;
		break;
	default:
		hex(n->key_id, sizeof(n->key_id), fp);
		if (strncmp(id + 5, fp, 32)) {
			ERR("key was made by native primary key %.32s, but %s holds primary key %s",
			    id + 5, n->path, fp);
			r = -ENOKEY;
		} else {
			r = derive_kek(n, id, kek);
		}
	}
	pthread_mutex_unlock(&n->lock);
	return r;
}

static int native_test(void *inst, void (*report)(void *arg, const char *line), void *arg,
		       char *err)
{
	struct native *n = inst;
	char line[512], fp[33];
	int r = 0;

	pthread_mutex_lock(&n->lock);
	refresh(n);
	switch (n->state) {
	case NATIVE_MISSING:
		read_marker(n, fp);
		if (fp[0]) {
			snprintf(line, sizeof(line), "primary key %s: MISSING (it was key id %s); "
				 "restore it from backup", n->path, fp);
			ERR("primary key file %s is missing; restore it from backup, or remove "
			    "%s.id to start over with a new key", n->path, n->path);
			r = -ENOENT;
		} else {
			snprintf(line, sizeof(line), "primary key %s: not created yet (made on first "
				 "use)", n->path);
		}
		break;
	case NATIVE_BROKEN:
		snprintf(line, sizeof(line), "primary key %s: %s", n->path, n->broken);
		ERR("%s", n->broken);
		r = n->broken_errno;
		break;
	default:
		hex(n->key_id, sizeof(n->key_id), fp);
		snprintf(line, sizeof(line), "primary key %s: loaded, id %s", n->path, fp);
	}
	pthread_mutex_unlock(&n->lock);
	report(arg, line);
	return r;
}

static const struct vmc_kp_ops native_ops = {
	.abi_version = VMC_KP_ABI_VERSION,
	.struct_size = sizeof(struct vmc_kp_ops),
	.type = "native",
	.version = VMC_VERSION,
	.flags = 0,
	.open = native_open,
	.close = native_close,
	.create_key = native_create_key,
	.get_key = native_get_key,
	.test = native_test,
};

__attribute__((visibility("default"))) const struct vmc_kp_ops *vmcryptfs_keyprov_entry_v1(void);

const struct vmc_kp_ops *vmcryptfs_keyprov_entry_v1(void)
{
	return &native_ops;
}
