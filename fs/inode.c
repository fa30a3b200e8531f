// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The inode table: one struct vmc_inode per backing object (st_dev, st_ino),
 * found through a hash table, alive while the kernel holds lookups on it or
 * the daemon holds internal references (a child's link to its parent, an
 * operation in progress). Also: what the mount shows of a backing object
 * (sizes of encrypted files exclude their header) and header probing.
 */
#include "vmcfs.h"
#include "vmc_format.h"
#include "vmc_header.h"
#include "vmc_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define INITIAL_BUCKETS 1024

static size_t bucket_of(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;

	return (size_t)(h ^ (h >> 29)) & (vmcfs.fs_nbuckets - 1);
}

int vmc_inode_table_init(void)
{
	vmcfs.fs_nbuckets = INITIAL_BUCKETS;
	vmcfs.fs_buckets = calloc(vmcfs.fs_nbuckets, sizeof(*vmcfs.fs_buckets));
	return vmcfs.fs_buckets ? 0 : -ENOMEM;
}

static void inode_free(struct vmc_inode *in)
{
	if (in->in_crypt) {
		/* Only reachable if a release was lost; wipe anyway. */
		vmc_dek_free(in->in_crypt->fc_dek);
		free(in->in_crypt);
	}
	if (S_ISREG(in->in_type)) {
		pthread_mutex_destroy(&in->in_lock);
		vmc_rl_destroy(&in->in_rl);
	}
	close(in->in_fd);
	free(in->in_name);
	free(in);
}

void vmc_inode_table_fini(void)
{
	for (size_t b = 0; b < vmcfs.fs_nbuckets; b++) {
		struct vmc_inode *in = vmcfs.fs_buckets[b], *next;

		for (; in; in = next) {
			next = in->in_hnext;
			inode_free(in);
		}
	}
	free(vmcfs.fs_buckets);
	vmcfs.fs_buckets = NULL;
}

/* Double the table; fs_ino_lock held. */
static void table_grow(void)
{
	size_t old_n = vmcfs.fs_nbuckets;
	struct vmc_inode **old = vmcfs.fs_buckets, **nb;

	nb = calloc(old_n * 2, sizeof(*nb));
	if (!nb)
		return; /* keep the longer chains */
	vmcfs.fs_buckets = nb;
	vmcfs.fs_nbuckets = old_n * 2;
	for (size_t b = 0; b < old_n; b++) {
		struct vmc_inode *in = old[b], *next;

		for (; in; in = next) {
			size_t nbk = bucket_of(in->in_dev, in->in_ino);

			next = in->in_hnext;
			in->in_hnext = nb[nbk];
			nb[nbk] = in;
		}
	}
	free(old);
}

/* Set parent/name; fs_ino_lock held. Returns the old parent to unref. */
static struct vmc_inode *set_name_locked(struct vmc_inode *in, struct vmc_inode *parent,
					 const char *name)
{
	struct vmc_inode *old = in->in_parent;
	char *dup;

	if (!parent || !name || in == &vmcfs.fs_root)
		return NULL;
	if (old == parent && in->in_name && !strcmp(in->in_name, name))
		return NULL;
	dup = strdup(name);
	if (!dup)
		return NULL; /* keep the old name; classification uses what it has */
	free(in->in_name);
	in->in_name = dup;
	parent->in_refs++;
	in->in_parent = parent;
	return old;
}

struct vmc_inode *vmc_inode_get(int fd, const struct stat *st, struct vmc_inode *parent,
				const char *name, bool lookup)
{
	struct vmc_inode *in, *fresh, *old_parent;
	size_t b;

	fresh = calloc(1, sizeof(*fresh));
	if (!fresh) {
		close(fd);
		return NULL;
	}
	pthread_mutex_lock(&vmcfs.fs_ino_lock);
	b = bucket_of(st->st_dev, st->st_ino);
	for (in = vmcfs.fs_buckets[b]; in; in = in->in_hnext)
		if (in->in_dev == st->st_dev && in->in_ino == st->st_ino)
			break;
	if (in) {
		close(fd);
		free(fresh);
	} else {
		in = fresh;
		in->in_fd = fd;
		in->in_dev = st->st_dev;
		in->in_ino = st->st_ino;
		in->in_type = st->st_mode & S_IFMT;
		if (S_ISREG(in->in_type)) {
			pthread_mutex_init(&in->in_lock, NULL);
			vmc_rl_init(&in->in_rl);
		}
		in->in_hnext = vmcfs.fs_buckets[b];
		vmcfs.fs_buckets[b] = in;
		if (++vmcfs.fs_ninodes > vmcfs.fs_nbuckets * 2)
			table_grow();
	}
	if (lookup)
		in->in_nlookup++;
	else
		in->in_refs++;
	old_parent = set_name_locked(in, parent, name);
	pthread_mutex_unlock(&vmcfs.fs_ino_lock);
	if (old_parent)
		vmc_inode_unref(old_parent);
	return in;
}

void vmc_inode_set_name(struct vmc_inode *in, struct vmc_inode *parent, const char *name)
{
	struct vmc_inode *old;

	pthread_mutex_lock(&vmcfs.fs_ino_lock);
	old = set_name_locked(in, parent, name);
	pthread_mutex_unlock(&vmcfs.fs_ino_lock);
	if (old)
		vmc_inode_unref(old);
}

struct vmc_inode *vmc_inode_name(struct vmc_inode *in, char *name, size_t len)
{
	struct vmc_inode *parent = NULL;

	pthread_mutex_lock(&vmcfs.fs_ino_lock);
	if (in->in_parent && in->in_name && strlen(in->in_name) < len) {
		parent = in->in_parent;
		parent->in_refs++;
		strcpy(name, in->in_name);
	}
	pthread_mutex_unlock(&vmcfs.fs_ino_lock);
	return parent;
}

void vmc_inode_ref(struct vmc_inode *in)
{
	pthread_mutex_lock(&vmcfs.fs_ino_lock);
	in->in_refs++;
	pthread_mutex_unlock(&vmcfs.fs_ino_lock);
}

/*
 * Drop @nlookup lookups or one reference, freeing the inode (and walking up
 * to its parent) when nothing holds it any more.
 */
static void inode_release(struct vmc_inode *in, uint64_t nlookup, bool ref)
{
	while (in && in != &vmcfs.fs_root) {
		struct vmc_inode **pp, *parent = NULL;
		bool dead = false;

		pthread_mutex_lock(&vmcfs.fs_ino_lock);
		if (ref) {
			if (in->in_refs == 0)
				abort(); /* reference counting is broken: stop before damage */
			in->in_refs--;
		} else {
			if (in->in_nlookup < nlookup)
				abort();
			in->in_nlookup -= nlookup;
		}
		if (in->in_nlookup == 0 && in->in_refs == 0) {
			pp = &vmcfs.fs_buckets[bucket_of(in->in_dev, in->in_ino)];
			while (*pp != in)
				pp = &(*pp)->in_hnext;
			*pp = in->in_hnext;
			vmcfs.fs_ninodes--;
			parent = in->in_parent;
			dead = true;
		}
		pthread_mutex_unlock(&vmcfs.fs_ino_lock);
		if (!dead)
			return;
		inode_free(in);
		in = parent;
		ref = true;
	}
}

void vmc_inode_forget(struct vmc_inode *in, uint64_t n)
{
	inode_release(in, n, false);
}

void vmc_inode_unref(struct vmc_inode *in)
{
	inode_release(in, 0, true);
}

int vmc_reopen(struct vmc_inode *in, int flags)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", in->in_fd);
	fd = open(path, (flags & ~O_CREAT) | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

bool vmc_name_reserved(const char *name)
{
	return !strncmp(name, VMC_FMT_RESERVED_PREFIX, strlen(VMC_FMT_RESERVED_PREFIX));
}

int vmc_inode_probe(struct vmc_inode *in)
{
	uint8_t *p;
	ssize_t n;
	int fd;

	if (!S_ISREG(in->in_type))
		return 0;
	if (atomic_load(&in->in_enc) != VMC_ENC_UNKNOWN)
		return 0;
	fd = vmc_reopen(in, O_RDONLY | O_NOATIME);
	if (fd == -EPERM)
		fd = vmc_reopen(in, O_RDONLY);
	if (fd < 0)
		return fd;
	p = malloc(VMC_FMT_HDR_SIZE);
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	n = pread(fd, p, VMC_FMT_HDR_SIZE, 0);
	close(fd);
	if (n < 0) {
		free(p);
		return -errno;
	}
	pthread_mutex_lock(&in->in_lock);
	if (atomic_load(&in->in_enc) == VMC_ENC_UNKNOWN) {
		if (vmc_hdr_probe(p, (size_t)n) == VMC_PROBE_ENCRYPTED) {
			atomic_store(&in->in_enc, VMC_ENC_CRYPT);
		} else {
			atomic_store(&in->in_undecided, n == 0);
			atomic_store(&in->in_enc, VMC_ENC_CLEAR);
		}
	}
	pthread_mutex_unlock(&in->in_lock);
	free(p);
	return 0;
}

int vmc_inode_stat(struct vmc_inode *in, struct stat *st)
{
	int r;

	if (fstatat(in->in_fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
		return -errno;
	if (!S_ISREG(st->st_mode))
		return 0;
	r = vmc_inode_probe(in);
	if (r)
		return r;
	if (atomic_load(&in->in_enc) == VMC_ENC_CRYPT || atomic_load(&in->in_enc) == VMC_ENC_DAMAGED) {
		st->st_size = st->st_size > (off_t)VMC_FMT_HDR_SIZE ?
				      st->st_size - (off_t)VMC_FMT_HDR_SIZE : 0;
		st->st_blocks = st->st_blocks > 8 ? st->st_blocks - 8 : 0;
	}
	return 0;
}

struct vmc_inode *vmc_inode_parent(struct vmc_inode *in)
{
	struct vmc_inode *p;

	pthread_mutex_lock(&vmcfs.fs_ino_lock);
	p = in->in_parent;
	if (p)
		p->in_refs++;
	pthread_mutex_unlock(&vmcfs.fs_ino_lock);
	return p;
}

void vmc_inode_path(struct vmc_inode *in, char *buf, size_t len)
{
	const char *parts[64] = { NULL };
	size_t n = 0, off = 0;

	pthread_mutex_lock(&vmcfs.fs_ino_lock);
	for (struct vmc_inode *i = in; i && i != &vmcfs.fs_root && n < 64; i = i->in_parent)
		parts[n++] = i->in_name ? i->in_name : "?";
	buf[0] = '\0';
	while (n-- > 0 && off < len)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "/" : "", parts[n]);
	pthread_mutex_unlock(&vmcfs.fs_ino_lock);
	if (!buf[0])
		snprintf(buf, len, ".");
}

struct vmc_inode *vmc_inode_find(dev_t dev, ino_t ino)
{
	struct vmc_inode *in;

	if (dev == vmcfs.fs_root.in_dev && ino == vmcfs.fs_root.in_ino)
		return &vmcfs.fs_root;
	pthread_mutex_lock(&vmcfs.fs_ino_lock);
	for (in = vmcfs.fs_buckets[bucket_of(dev, ino)]; in; in = in->in_hnext)
		if (in->in_dev == dev && in->in_ino == ino) {
			in->in_refs++;
			break;
		}
	pthread_mutex_unlock(&vmcfs.fs_ino_lock);
	return in;
}

int vmc_inode_open_under(dev_t dev, ino_t ino)
{
	int n = 0;

	pthread_mutex_lock(&vmcfs.fs_ino_lock);
	for (size_t b = 0; b < vmcfs.fs_nbuckets; b++)
		for (struct vmc_inode *in = vmcfs.fs_buckets[b]; in; in = in->in_hnext) {
			if (!S_ISREG(in->in_type) || atomic_load(&in->in_opens) == 0)
				continue;
			for (struct vmc_inode *p = in->in_parent; p; p = p->in_parent)
				if (p->in_dev == dev && p->in_ino == ino) {
					n += atomic_load(&in->in_opens);
					break;
				}
		}
	pthread_mutex_unlock(&vmcfs.fs_ino_lock);
	return n;
}
