// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * VM locks across hosts: see lease.h for the model.
 *
 * Taking a lock works on NFS without byte-range locks: the record is written
 * complete into a private file "vm.INODE.<instance>" in .vmcrypt.locks, then hard-linked to
 * the lock name; link() either creates the name or fails with EEXIST,
 * atomically on the server. (A retransmitted link whose reply was lost may
 * report an error although it worked: the private file then has two links.)
 *
 * Taking over a stale lock renames it aside to a private name first, then
 * checks that what it moved is the very record it watched go stale: if a new
 * holder got in between, its lock is linked back and the taker backs off.
 *
 * Locks: take_lock serializes the file work of taking and removing locks in
 * this process; L.lock protects the table and each lease's reference count.
 * take_lock -> L.lock.
 */
#include "lease.h"
#include "audit.h"
#include "vmc_crypto.h"
#include "vmc_format.h"
#include "vmc_lockrec.h"
#include "vmc_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OBS_MAX 64
#define LINGER_MS 1000u /* a lock outlives its last user by this long */

struct vmc_lease {
	struct vmc_lease *ls_next; /* L.held; L.lock */
	dev_t ls_dev;              /* the VM directory */
	ino_t ls_ino;
	char ls_name[32];          /* the lock file in the lock directory */
	int ls_fd;                 /* the lock file, read-write */
	ino_t ls_lock_ino;
	unsigned ls_refs;          /* L.lock */
	bool ls_listed;            /* in L.held; L.lock */
	uint64_t ls_idle_ms;       /* refs 0 since then (lingering); L.lock */
	uint64_t ls_beat;          /* heartbeat thread */
	uint64_t ls_beat_ms;       /* when it last beat; heartbeat thread */
	atomic_bool ls_lost;
	char ls_vm[PATH_MAX];
};

/* A foreign lock this host watches, to tell when its heartbeat stops. */
struct obs {
	dev_t dev;
	ino_t ino;
	uint64_t digest;   /* of the lock file's inode and bytes */
	uint64_t since_ms; /* when this content was first seen */
	bool used;
};

static struct {
	pthread_mutex_t lock;
	pthread_mutex_t take_lock;
	pthread_cond_t cond;
	struct vmc_lease *held;
	struct obs obs[OBS_MAX];
	struct vmc_lockrec self;
	unsigned lease_ms;
	int rootfd;  /* the backing directory (not owned) */
	int dirfd;   /* VMC_FMT_LOCK_DIR, once it exists; take_lock */
	bool enabled, running, stop;
	pthread_t thread;
} L = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.take_lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.rootfd = -1,
	.dirfd = -1,
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t digest(ino_t ino, const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)ino;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Keep [A-Za-z0-9._-] of @in, at most @len - 1 bytes; "-" if nothing is left. */
static void sanitize(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in && o + 1 < len; in++)
		if ((*in >= 'a' && *in <= 'z') || (*in >= 'A' && *in <= 'Z') ||
		    (*in >= '0' && *in <= '9') || *in == '.' || *in == '_' || *in == '-')
			out[o++] = *in;
	if (!o)
		out[o++] = '-';
	out[o] = '\0';
}

static void read_line_file(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "re");

	out[0] = '\0';
	if (!f)
		return;
	if (!fgets(out, (int)len, f))
		out[0] = '\0';
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
}

bool vmc_lease_enabled(void)
{
	return L.enabled;
}

const char *vmc_lease_host(void)
{
	return L.self.host;
}

bool vmc_lease_lost(const struct vmc_lease *l)
{
	return l && atomic_load(&l->ls_lost);
}

/* --- reading and writing lock files ----------------------------------------- */

/* The lock file of the VM directory with inode @ino. */
static void lock_name(ino_t ino, char *out, size_t len)
{
	snprintf(out, len, "vm.%llu", (unsigned long long)ino);
}

/* The lock directory, made on first use; take_lock held. */
static int lock_dir(bool create)
{
	int fd;

	if (L.dirfd >= 0)
		return L.dirfd;
	fd = openat(L.rootfd, VMC_FMT_LOCK_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && create) {
		if (mkdirat(L.rootfd, VMC_FMT_LOCK_DIR, 0755) && errno != EEXIST)
			return -errno;
		fd = openat(L.rootfd, VMC_FMT_LOCK_DIR,
			    O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0)
		return -errno;
	L.dirfd = fd;
	return fd;
}

static void sync_dir(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

static int write_record(int fd, uint64_t beat)
{
	uint8_t rec[VMC_LOCKREC_SIZE];
	struct vmc_lockrec r = L.self;
	ssize_t n;

	r.beat = beat;
	if (vmc_lockrec_format(&r, rec))
		return -EINVAL;
	n = pwrite(fd, rec, sizeof(rec), 0);
	if (n != (ssize_t)sizeof(rec))
		return n < 0 ? -errno : -EIO;
	return fdatasync(fd) ? -errno : 0;
}

/*
 * Read the lock file @name of @dirfd: its inode, its bytes' digest and, if
 * it parses, its record (*parsed). -ENOENT when there is none.
 */
static int read_lock(int dirfd, const char *name, ino_t *ino, uint64_t *dg,
		     struct vmc_lockrec *rec, bool *parsed)
{
	uint8_t buf[VMC_LOCKREC_SIZE + 1];
	char err[64];
	struct stat st;
	ssize_t n;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		int e = -errno;

		close(fd);
		return e;
	}
	n = pread(fd, buf, sizeof(buf), 0);
	close(fd);
	if (n < 0)
		return -errno;
	*ino = st.st_ino;
	*dg = digest(st.st_ino, buf, (size_t)n);
	*parsed = n <= VMC_LOCKREC_SIZE && !vmc_lockrec_parse(rec, buf, (size_t)n, err, sizeof(err));
	return 0;
}

static void describe(const struct vmc_lockrec *r, bool parsed, char *out, size_t len)
{
	if (parsed)
		snprintf(out, len, "host %s (%s, pid %llu)", r->host, r->hostname,
			 (unsigned long long)r->pid);
	else
		snprintf(out, len, "an unreadable lock record");
}

/* --- observations of foreign locks -------------------------------------------- */

/* How long @dg has stood unchanged on the VM (dev, ino); starts watching. */
static uint64_t watched_for(dev_t dev, ino_t ino, uint64_t dg)
{
	uint64_t now = now_ms();
	struct obs *o = NULL, *oldest = &L.obs[0];

	pthread_mutex_lock(&L.lock);
	for (int i = 0; i < OBS_MAX; i++) {
		if (L.obs[i].used && L.obs[i].dev == dev && L.obs[i].ino == ino)
			o = &L.obs[i];
		if (!L.obs[i].used || L.obs[i].since_ms < oldest->since_ms)
			oldest = &L.obs[i];
	}
	if (!o)
		o = oldest;
	if (!o->used || o->dev != dev || o->ino != ino || o->digest != dg)
		*o = (struct obs){ .dev = dev, .ino = ino, .digest = dg, .since_ms = now,
				   .used = true };
	now -= o->since_ms;
	pthread_mutex_unlock(&L.lock);
	return now;
}

static void forget_watch(dev_t dev, ino_t ino)
{
	pthread_mutex_lock(&L.lock);
	for (int i = 0; i < OBS_MAX; i++)
		if (L.obs[i].used && L.obs[i].dev == dev && L.obs[i].ino == ino)
			L.obs[i].used = false;
	pthread_mutex_unlock(&L.lock);
}

/*
 * The lock of the VM is held by someone else: is it stale? 1 when the stale
 * lock was removed (try again), -EBUSY with the holder in @msg, or -errno.
 * take_lock held.
 */
static int inspect(int dirfd, const char *name, const char *vm, dev_t dev, ino_t ino, char *msg,
		   size_t msglen)
{
	char aside[96], who[160], why[96];
	struct vmc_lockrec rec;
	uint64_t dg, dg2, lease, age;
	ino_t lino, lino2;
	bool parsed, parsed2, stale = false;
	int r;

	r = read_lock(dirfd, name, &lino, &dg, &rec, &parsed);
	if (r)
		return r == -ENOENT ? 1 : r;
	describe(&rec, parsed, who, sizeof(who));
	lease = parsed && rec.lease_ms > L.lease_ms ? rec.lease_ms : L.lease_ms;
	if (parsed && !strcmp(rec.instance, L.self.instance)) {
		stale = true;
		snprintf(why, sizeof(why), "left by this daemon");
	} else if (parsed && !strcmp(rec.host, L.self.host)) {
		if (strcmp(rec.boot, L.self.boot)) {
			stale = true;
			snprintf(why, sizeof(why), "left before this host last booted");
		} else if (kill((pid_t)rec.pid, 0) && errno == ESRCH) {
			stale = true;
			snprintf(why, sizeof(why), "its daemon (pid %llu) is gone",
				 (unsigned long long)rec.pid);
		}
	}
	if (!stale) {
		age = watched_for(dev, ino, dg);
		if (age < lease) {
			snprintf(msg, msglen,
				 "VM %s is in use by %s; its lock was last seen changing %.1f s ago "
				 "(a lock whose heartbeat stops is taken over after %.1f s)",
				 vm, who, (double)age / 1000, (double)lease / 1000);
			return -EBUSY;
		}
		snprintf(why, sizeof(why), "its heartbeat stood still for %.1f s",
			 (double)age / 1000);
	}

	/* Move exactly the stale record out of the way. */
	snprintf(aside, sizeof(aside), "%s.stale.%s", name, L.self.instance);
	if (renameat(dirfd, name, dirfd, aside))
		return errno == ENOENT ? 1 : -errno;
	r = read_lock(dirfd, aside, &lino2, &dg2, &rec, &parsed2);
	if (!r && lino2 == lino && dg2 == dg) {
		unlinkat(dirfd, aside, 0);
		forget_watch(dev, ino);
		vmc_notice("VM %s: took over the lock of %s: %s", vm, who, why);
		vmc_audit(&(struct vmc_event){ .op = "lock-takeover", .vm = vm, .from = who,
					       .to = L.self.host, .detail = why });
		return 1;
	}
	/* A new holder got in between: give its lock back. */
	if (!r && (!linkat(dirfd, aside, dirfd, name, 0) || errno == EEXIST))
		unlinkat(dirfd, aside, 0);
	snprintf(msg, msglen, "VM %s is in use by another host (its lock just changed hands)", vm);
	return -EBUSY;
}

/* Create the lock file of the VM; take_lock held. */
static int acquire(const char *vm, dev_t dev, ino_t ino, struct vmc_lease **out, char *msg,
		   size_t msglen)
{
	char name[32], tmp[96];
	int r = -EBUSY, dirfd = lock_dir(true);

	if (dirfd < 0) {
		snprintf(msg, msglen, "VM %s: cannot use the lock directory %s at the datastore "
			 "root (%s; it must be a directory, not a symbolic link): writes to VMs "
			 "are refused until it is fixed", vm, VMC_FMT_LOCK_DIR, strerror(-dirfd));
		return -EIO;
	}
	lock_name(ino, name, sizeof(name));
	snprintf(tmp, sizeof(tmp), "%s.%s", name, L.self.instance);
	for (int attempt = 0; attempt < 4; attempt++) {
		struct vmc_lease *l;
		struct stat st;
		int fd, e;

		/* Never through a name someone planted: remove it, then create anew. */
		if (unlinkat(dirfd, tmp, 0) && errno != ENOENT)
			return -errno;
		fd = openat(dirfd, tmp, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0)
			return -errno;
		r = write_record(fd, 1);
		if (r) {
			close(fd);
			unlinkat(dirfd, tmp, 0);
			return r;
		}
		e = linkat(dirfd, tmp, dirfd, name, 0) ? errno : 0;
		if (e && e != EEXIST && !fstat(fd, &st) && st.st_nlink == 2)
			e = 0; /* the link worked; its reply was lost */
		unlinkat(dirfd, tmp, 0);
		if (!e) {
			l = calloc(1, sizeof(*l));
			if (!l || fstat(fd, &st)) {
				free(l);
				close(fd);
				unlinkat(dirfd, name, 0);
				return -ENOMEM;
			}
			sync_dir(dirfd);
			l->ls_fd = fd;
			l->ls_lock_ino = st.st_ino;
			l->ls_dev = dev;
			l->ls_ino = ino;
			l->ls_beat = 1;
			snprintf(l->ls_name, sizeof(l->ls_name), "%s", name);
			snprintf(l->ls_vm, sizeof(l->ls_vm), "%s", vm);
			*out = l;
			vmc_dbg("VM %s: lock taken", vm);
			return 0;
		}
		close(fd);
		if (e != EEXIST)
			return -e;
		r = inspect(dirfd, name, vm, dev, ino, msg, msglen);
		if (r != 1)
			return r;
	}
	snprintf(msg, msglen, "VM %s: its lock keeps changing hands", vm);
	return -EBUSY;
}

static void unlist(struct vmc_lease *l)
{
	struct vmc_lease **pp;

	for (pp = &L.held; *pp; pp = &(*pp)->ls_next)
		if (*pp == l) {
			*pp = l->ls_next;
			break;
		}
	l->ls_listed = false;
}

int vmc_lease_take(int vmdirfd, const char *vm, struct vmc_lease **out, char *msg, size_t msglen)
{
	struct vmc_lease *l;
	struct stat st;
	int r;

	*out = NULL;
	msg[0] = '\0';
	if (!L.enabled)
		return 0;
	if (fstat(vmdirfd, &st))
		return -errno;
	pthread_mutex_lock(&L.take_lock);
	pthread_mutex_lock(&L.lock);
	for (l = L.held; l; l = l->ls_next)
		if (l->ls_dev == st.st_dev && l->ls_ino == st.st_ino)
			break;
	if (l && !l->ls_refs && atomic_load(&l->ls_lost)) {
		/* Lingering and lost meanwhile: not ours any more; take it anew. */
		unlist(l);
		close(l->ls_fd);
		free(l);
		l = NULL;
	}
	if (l)
		l->ls_refs++;
	pthread_mutex_unlock(&L.lock);
	if (!l) {
		r = acquire(vm, st.st_dev, st.st_ino, &l, msg, msglen);
		if (r) {
			pthread_mutex_unlock(&L.take_lock);
			return r;
		}
		pthread_mutex_lock(&L.lock);
		l->ls_refs = 1;
		l->ls_beat_ms = now_ms();
		l->ls_listed = true;
		l->ls_next = L.held;
		L.held = l;
		pthread_mutex_unlock(&L.lock);
	}
	pthread_mutex_unlock(&L.take_lock);
	*out = l;
	return 0;
}

/* Remove the lock file if it is still ours; take_lock held. */
static void remove_lock(struct vmc_lease *l)
{
	struct vmc_lockrec rec;
	uint64_t dg;
	ino_t ino;
	bool parsed;

	if (atomic_load(&l->ls_lost))
		return;
	if (!read_lock(L.dirfd, l->ls_name, &ino, &dg, &rec, &parsed) && ino == l->ls_lock_ino &&
	    parsed && !strcmp(rec.instance, L.self.instance)) {
		if (unlinkat(L.dirfd, l->ls_name, 0))
			vmc_warn("VM %s: cannot remove its lock file: %s", l->ls_vm, strerror(errno));
		else
			sync_dir(L.dirfd);
	}
}

/*
 * Drop a reference. The last one leaves the lock lingering for LINGER_MS
 * (@touch: from now), so that a tool that opens and closes many files of a
 * VM (tar, cp, rm) takes the lock once, not once per file; the heartbeat
 * removes it once it has lingered that long (@touch false).
 */
static void lease_drop(struct vmc_lease *l, bool touch)
{
	pthread_mutex_lock(&L.take_lock);
	pthread_mutex_lock(&L.lock);
	if (--l->ls_refs) {
		pthread_mutex_unlock(&L.lock);
		pthread_mutex_unlock(&L.take_lock);
		return;
	}
	if (l->ls_listed && !atomic_load(&l->ls_lost) && !L.stop &&
	    (touch || now_ms() - l->ls_idle_ms < LINGER_MS)) {
		if (touch) {
			l->ls_idle_ms = now_ms();
			pthread_cond_broadcast(&L.cond); /* the heartbeat's next wake-up */
		}
		pthread_mutex_unlock(&L.lock);
		pthread_mutex_unlock(&L.take_lock);
		return;
	}
	if (l->ls_listed)
		unlist(l);
	pthread_mutex_unlock(&L.lock);
	remove_lock(l);
	pthread_mutex_unlock(&L.take_lock);
	vmc_dbg("VM %s: lock released", l->ls_vm);
	close(l->ls_fd);
	free(l);
}

void vmc_lease_put(struct vmc_lease *l)
{
	if (l)
		lease_drop(l, true);
}

/* --- the heartbeat -------------------------------------------------------------- */

static void beat(struct vmc_lease *l)
{
	struct stat st;
	int r;

	if (atomic_load(&l->ls_lost))
		return;
	r = write_record(l->ls_fd, ++l->ls_beat);
	if (r)
		vmc_warn("VM %s: cannot refresh its lock: %s", l->ls_vm, strerror(-r));
	if (fstatat(L.dirfd, l->ls_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (st.st_ino == l->ls_lock_ino)
			return;
	} else if (errno != ENOENT) {
		vmc_warn("VM %s: cannot check its lock: %s", l->ls_vm, strerror(errno));
		return; /* the backing store hiccups: try again next time */
	}
	atomic_store(&l->ls_lost, true);
	pthread_mutex_lock(&L.lock);
	if (l->ls_listed)
		unlist(l);
	pthread_mutex_unlock(&L.lock);
	vmc_err("VM %s: lost its lock (another host took it over while this one did not "
		"refresh it): writes to its open files now fail with EIO; close and reopen them",
		l->ls_vm);
	vmc_audit(&(struct vmc_event){ .op = "lock-lost", .vm = l->ls_vm, .result = -EIO });
}

static void *heartbeat(void *arg)
{
	unsigned period = L.lease_ms / 4 ? L.lease_ms / 4 : 1;

	(void)arg;
	pthread_mutex_lock(&L.lock);
	while (!L.stop) {
		struct vmc_lease *batch[64];
		unsigned wait = period;
		struct timespec ts;
		int n = 0;

		/* A lingering lock is removed on time. */
		for (struct vmc_lease *l = L.held; l; l = l->ls_next)
			if (!l->ls_refs && wait > LINGER_MS / 4)
				wait = LINGER_MS / 4;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += wait / 1000;
		ts.tv_nsec += (long)(wait % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&L.cond, &L.lock, &ts);
		if (L.stop)
			break;
		/* In batches, references held, the table unlocked during I/O. */
		for (struct vmc_lease *l = L.held; l && n < 64; l = l->ls_next) {
			l->ls_refs++;
			batch[n++] = l;
		}
		pthread_mutex_unlock(&L.lock);
		for (int i = 0; i < n; i++) {
			/* (woken early for a lingering lock: beat on the period) */
			if (now_ms() - batch[i]->ls_beat_ms >= period * 3 / 4) {
				beat(batch[i]);
				batch[i]->ls_beat_ms = now_ms();
			}
			lease_drop(batch[i], false);
		}
		pthread_mutex_lock(&L.lock);
		/* More than 64 VMs open for writing: rotate so all get their turn. */
		if (n == 64 && L.held) {
			struct vmc_lease **pp = &L.held, *first = L.held;

			while (*pp)
				pp = &(*pp)->ls_next;
			L.held = first->ls_next;
			first->ls_next = NULL;
			*pp = first;
		}
	}
	pthread_mutex_unlock(&L.lock);
	return NULL;
}

int vmc_lease_init(int rootfd, const char *host_id, unsigned lease_ms, char *err, size_t errlen)
{
	char buf[256], hn[256];
	uint8_t inst[16];

	memset(&L.self, 0, sizeof(L.self));
	L.lease_ms = lease_ms;
	L.rootfd = rootfd;
	if (!lease_ms)
		return 0;
	if (host_id) {
		if (!vmc_lockrec_host_ok(host_id)) {
			snprintf(err, errlen, "host_id \"%s\": use 1 to %d letters, digits, '.', "
				 "'_' or '-'", host_id, VMC_LOCKREC_HOST_MAX - 1);
			return -EINVAL;
		}
		snprintf(L.self.host, sizeof(L.self.host), "%s", host_id);
	} else {
		read_line_file("/etc/machine-id", buf, sizeof(buf));
		if (!buf[0] && gethostname(buf, sizeof(buf)))
			buf[0] = '\0';
		buf[sizeof(buf) - 1] = '\0';
		sanitize(buf, L.self.host, sizeof(L.self.host));
	}
	if (gethostname(hn, sizeof(hn)))
		hn[0] = '\0';
	hn[sizeof(hn) - 1] = '\0';
	sanitize(hn, L.self.hostname, sizeof(L.self.hostname));
	read_line_file("/proc/sys/kernel/random/boot_id", buf, sizeof(buf));
	sanitize(buf, L.self.boot, sizeof(L.self.boot));
	if (vmc_random(inst, sizeof(inst))) {
		snprintf(err, errlen, "no random bytes for the lock instance id");
		return -EIO;
	}
	for (size_t i = 0; i < sizeof(inst); i++)
		sprintf(L.self.instance + 2 * i, "%02x", inst[i]);
	L.self.pid = (uint64_t)getpid();
	L.self.lease_ms = lease_ms;
	L.stop = false;
	if (pthread_create(&L.thread, NULL, heartbeat, NULL)) {
		snprintf(err, errlen, "cannot start the lock heartbeat thread");
		return -EAGAIN;
	}
	L.running = true;
	L.enabled = true;
	vmc_info("VM locks: host id %s, lease %.1f s", L.self.host, lease_ms / 1000.0);
	return 0;
}

void vmc_lease_fini(void)
{
	if (!L.running)
		return;
	pthread_mutex_lock(&L.lock);
	L.stop = true;
	pthread_cond_broadcast(&L.cond);
	pthread_mutex_unlock(&L.lock);
	pthread_join(L.thread, NULL);
	L.running = false;
	/* Unmounted: no handle is left, remove whatever locks remain. */
	pthread_mutex_lock(&L.take_lock);
	pthread_mutex_lock(&L.lock);
	while (L.held) {
		struct vmc_lease *l = L.held;

		unlist(l);
		pthread_mutex_unlock(&L.lock);
		remove_lock(l);
		close(l->ls_fd);
		free(l);
		pthread_mutex_lock(&L.lock);
	}
	pthread_mutex_unlock(&L.lock);
	if (L.dirfd >= 0)
		close(L.dirfd);
	L.dirfd = -1;
	pthread_mutex_unlock(&L.take_lock);
	L.enabled = false;
}

int vmc_lease_describe(int vmdirfd, char *out, size_t outlen, bool *here)
{
	struct vmc_lockrec rec;
	struct stat st;
	char name[32];
	uint64_t dg;
	ino_t ino;
	bool parsed;
	int r, dirfd;

	*here = false;
	if (!L.enabled || fstat(vmdirfd, &st))
		return -ENOENT;
	pthread_mutex_lock(&L.take_lock);
	dirfd = lock_dir(false);
	pthread_mutex_unlock(&L.take_lock);
	if (dirfd < 0)
		return -ENOENT;
	lock_name(st.st_ino, name, sizeof(name));
	r = read_lock(dirfd, name, &ino, &dg, &rec, &parsed);
	if (r)
		return r;
	*here = parsed && !strcmp(rec.instance, L.self.instance);
	describe(&rec, parsed, out, outlen);
	return 0;
}
