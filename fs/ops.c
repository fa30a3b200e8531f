// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The FUSE low-level operation table. Each vmc_ll_<op> decodes its request,
 * calls a worker that returns 0 or -errno (or a count), and replies exactly
 * once; the sign of an errno flips only here. Backing objects are reached
 * through O_PATH descriptors relative to their parent, never by path from the
 * root, so nothing outside the backing directory is touched.
 *
 * Names starting with ".vmcrypt." belong to vmcryptfs (the VM key record):
 * they are invisible through the mount and cannot be created there.
 */
#include "vmcfs.h"
#include "lease.h"
#include "vmc_crypto.h"
#include "vmc_log.h"
#include "vmc_priv.h"
#include "audit.h"
#include "metrics.h"
#include "ctl.h"
#include "vmc_ctlproto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

static struct vmc_handle *handle_of(struct fuse_file_info *fi)
{
	return (struct vmc_handle *)(uintptr_t)fi->fh;
}

/* Answer with an error (or 0), counting the kinds worth watching. */
static void reply_err(fuse_req_t req, int err)
{
	vmc_metric_error(err);
	fuse_reply_err(req, err);
}

static void proc_path(const struct vmc_inode *in, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/self/fd/%d", in->in_fd);
}

/* --- lookup and attributes ------------------------------------------------ */

static int do_lookup(struct vmc_inode *dir, const char *name, struct fuse_entry_param *e)
{
	struct vmc_inode *in;
	struct stat st;
	int fd, r;

	memset(e, 0, sizeof(*e));
	if (vmc_name_reserved(name))
		return -ENOENT;
	fd = openat(dir->in_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) {
		r = -errno;
		close(fd);
		return r;
	}
	in = vmc_inode_get(fd, &st, dir, name, true);
	if (!in)
		return -ENOMEM;
	r = vmc_inode_stat(in, &e->attr);
	if (r) {
		vmc_inode_forget(in, 1);
		return r;
	}
	e->ino = (fuse_ino_t)(uintptr_t)in;
	e->attr_timeout = vmcfs.fs_attr_timeout;
	e->entry_timeout = vmcfs.fs_entry_timeout;
	return 0;
}

static void vmc_ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int r = do_lookup(vmc_inode_of(parent), name, &e);

	if (r == -ENOENT && vmcfs.fs_entry_timeout > 0) {
		/* A negative entry, cached like a positive one. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = vmcfs.fs_entry_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (r)
		reply_err(req, -r);
	else
		fuse_reply_entry(req, &e);
}

static void vmc_ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	vmc_inode_forget(vmc_inode_of(ino), nlookup);
	fuse_reply_none(req);
}

static void vmc_ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++)
		vmc_inode_forget(vmc_inode_of(f[i].ino), f[i].nlookup);
	fuse_reply_none(req);
}

static void vmc_ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int r = vmc_inode_stat(vmc_inode_of(ino), &st);

	if (r)
		reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, vmcfs.fs_attr_timeout);
}

/* --- privileges at the mount ----------------------------------------------- */

static bool is_policy_name(const char *name)
{
	return !strcmp(name, VMC_FMT_POLICY_NAME);
}

static bool is_policy_file(struct vmc_inode *in)
{
	char name[NAME_MAX + 1];
	struct vmc_inode *parent = vmc_inode_name(in, name, sizeof(name));

	if (!parent)
		return false;
	vmc_inode_unref(parent);
	return S_ISREG(in->in_type) && is_policy_name(name);
}

/*
 * The caller of @req must hold @priv for @op on @in (or on @name inside the
 * directory @in); a refusal is audited and answered EACCES.
 */
static int mount_require(fuse_req_t req, uint32_t priv, const char *op, struct vmc_inode *in,
			 const char *name)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char path[PATH_MAX], full[PATH_MAX + NAME_MAX + 2], detail[128];

	if (vmc_privs_of(vmcfs.fs_cfg, ctx->uid, ctx->gid) & priv)
		return 0;
	vmc_inode_path(in, path, sizeof(path));
	if (name)
		snprintf(full, sizeof(full), "%s/%s", path, name);
	else
		snprintf(full, sizeof(full), "%s", path);
	snprintf(detail, sizeof(detail), "missing privilege %s", vmc_priv_name(priv));
	vmc_audit(&(struct vmc_event){ .op = op, .uid = ctx->uid, .file = full,
				       .result = -EACCES, .detail = detail });
	vmc_info("%s: %s refused to uid %u: %s", full, op, (unsigned)ctx->uid, detail);
	return -EACCES;
}

/* A policy file is being created (@existed false) or replaced under @dir. */
static int policy_create_check(fuse_req_t req, struct vmc_inode *dir, const char *name)
{
	bool existed = !faccessat(dir->in_fd, name, F_OK, AT_SYMLINK_NOFOLLOW);

	return mount_require(req, existed ? VMC_PRIV_MANAGE_POLICY : VMC_PRIV_ENCRYPT_NEW,
			     existed ? "policy-change" : "policy-create", dir, name);
}

static void policy_event(fuse_req_t req, const char *op, struct vmc_inode *dir,
			 const char *name, int r)
{
	char path[PATH_MAX], full[PATH_MAX + NAME_MAX + 2];

	vmc_inode_path(dir, path, sizeof(path));
	snprintf(full, sizeof(full), "%s/%s", path, name);
	vmc_audit(&(struct vmc_event){ .op = op, .uid = fuse_req_ctx(req)->uid, .vm = path,
				       .file = full, .result = r });
}

/* A permitted change of the existing policy file @in, in the audit log. */
static void policy_change_event(fuse_req_t req, struct vmc_inode *in, const char *how)
{
	char name[NAME_MAX + 1];
	struct vmc_inode *dir = vmc_inode_name(in, name, sizeof(name));
	char path[PATH_MAX], full[PATH_MAX + NAME_MAX + 2];

	if (!dir)
		return;
	vmc_inode_path(dir, path, sizeof(path));
	snprintf(full, sizeof(full), "%s/%s", path, name);
	vmc_audit(&(struct vmc_event){ .op = "policy-change", .uid = fuse_req_ctx(req)->uid,
				       .vm = path, .file = full, .detail = how, .result = 0 });
	vmc_inode_unref(dir);
}

/* --- size changes and first data ------------------------------------------ */

/*
 * An empty cleartext file gets its first data: classify it, and when it is
 * to be encrypted write its header. in_lock held.
 */
static int first_data(struct vmc_inode *in, int fd, const void *first, size_t firstlen, uid_t uid,
		      gid_t gid)
{
	struct vmc_hdr *hdr;
	uint8_t *dek;
	struct stat st;
	bool enc = false;
	int r;

	if (atomic_load(&in->in_enc) != VMC_ENC_CLEAR || !atomic_load(&in->in_undecided))
		return 0;
	if (fstat(fd, &st))
		return -errno;
	if (st.st_size != 0) {
		atomic_store(&in->in_undecided, false);
		return 0;
	}
	hdr = malloc(sizeof(*hdr));
	dek = vmc_secret_alloc(VMC_FMT_DEK_LEN);
	if (!hdr || !dek) {
		r = -ENOMEM;
		goto out;
	}
	r = vmc_vm_classify_new(in, first, firstlen, uid, &enc, hdr, dek);
	if (r)
		goto out;
	if (enc && !(vmc_privs_of(vmcfs.fs_cfg, uid, gid) & VMC_PRIV_ACCESS)) {
		/* Decided by content (a binary VMDK): the writer would see plaintext
		 * of an encrypted file. */
		char path[PATH_MAX];

		vmc_inode_path(in, path, sizeof(path));
		vmc_audit(&(struct vmc_event){ .op = "write", .uid = uid, .file = path,
					       .result = -EACCES,
					       .detail = "missing privilege Cryptographer.Access" });
		r = -EACCES;
		goto out;
	}
	if (enc) {
		struct vmc_rl_req rq;

		vmc_rl_lock(&in->in_rl, &rq, 0, VMC_RL_ALL, true);
		r = vmc_crypt_init_header(in, fd, hdr, dek);
		vmc_rl_unlock(&in->in_rl, &rq);
	} else {
		atomic_store(&in->in_undecided, false);
	}
out:
	vmc_secret_free(dek, VMC_FMT_DEK_LEN);
	free(hdr);
	return r;
}

/* Truncate a regular file to @size; in_lock held and a crypt user held. */
static int truncate_locked(struct vmc_inode *in, int fd, uint64_t size, uid_t uid, gid_t gid)
{
	struct vmc_rl_req rq;
	int r = 0;

	if (atomic_load(&in->in_enc) == VMC_ENC_CLEAR && atomic_load(&in->in_undecided) && size)
		r = first_data(in, fd, NULL, 0, uid, gid);
	if (r)
		return r;
	if (atomic_load(&in->in_enc) == VMC_ENC_CRYPT)
		return vmc_crypt_truncate(in, fd, size);
	vmc_rl_lock(&in->in_rl, &rq, 0, VMC_RL_ALL, size == 0);
	if (ftruncate(fd, (off_t)size))
		r = -errno;
	else if (size == 0)
		atomic_store(&in->in_undecided, true);
	vmc_rl_unlock(&in->in_rl, &rq);
	return r;
}

static bool open_writes(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

static int do_truncate(struct vmc_inode *in, struct fuse_file_info *fi, off_t size, uid_t uid,
		       gid_t gid)
{
	struct vmc_lease *lease = NULL;
	int fd, r;

	if (!S_ISREG(in->in_type))
		return S_ISDIR(in->in_type) ? -EISDIR : -EINVAL;
	if (size < 0)
		return -EINVAL;
	if (fi && vmc_lease_lost(handle_of(fi)->fh_lease))
		return -EIO;
	if (!fi) {
		r = vmc_inode_lease(in, NULL, &lease); /* truncate(2) by name */
		if (r)
			return r;
	}
	fd = fi ? handle_of(fi)->fh_fd : vmc_reopen(in, O_RDWR);
	if (fd < 0) {
		vmc_lease_put(lease);
		return fd;
	}
	pthread_mutex_lock(&in->in_lock);
	r = vmc_crypt_attach(in, fd);
	if (!r) {
		r = truncate_locked(in, fd, (uint64_t)size, uid, gid);
		vmc_crypt_detach(in);
	}
	pthread_mutex_unlock(&in->in_lock);
	if (!fi)
		close(fd);
	vmc_lease_put(lease);
	return r;
}

static int do_setattr(fuse_req_t req, struct vmc_inode *in, struct stat *attr, int valid,
		      struct fuse_file_info *fi)
{
	char path[64];
	int fd = fi ? handle_of(fi)->fh_fd : -1, r;

	proc_path(in, path, sizeof(path));
	if (valid & FUSE_SET_ATTR_MODE) {
		r = fd >= 0 ? fchmod(fd, attr->st_mode) : chmod(path, attr->st_mode);
		if (r)
			return -errno;
	}
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = valid & FUSE_SET_ATTR_UID ? attr->st_uid : (uid_t)-1;
		gid_t gid = valid & FUSE_SET_ATTR_GID ? attr->st_gid : (gid_t)-1;

		if (fchownat(in->in_fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
			return -errno;
	}
	if (valid & FUSE_SET_ATTR_SIZE) {
		if (!fi && is_policy_file(in)) {
			r = mount_require(req, VMC_PRIV_MANAGE_POLICY, "policy-change", in, NULL);
			if (r)
				return r;
			policy_change_event(req, in, "truncated");
		}
		r = do_truncate(in, fi, attr->st_size, fuse_req_ctx(req)->uid,
				fuse_req_ctx(req)->gid);
		if (r)
			return r;
	}
	if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };

		if (valid & FUSE_SET_ATTR_ATIME_NOW)
			tv[0].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_ATIME)
			tv[0] = attr->st_atim;
		if (valid & FUSE_SET_ATTR_MTIME_NOW)
			tv[1].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_MTIME)
			tv[1] = attr->st_mtim;
		if (fd >= 0)
			r = futimens(fd, tv);
		else if (S_ISLNK(in->in_type))
			r = utimensat(in->in_fd, "", tv, AT_EMPTY_PATH);
		else
			r = utimensat(AT_FDCWD, path, tv, 0);
		if (r)
			return -errno;
	}
	return 0;
}

static void vmc_ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
			   struct fuse_file_info *fi)
{
	struct vmc_inode *in = vmc_inode_of(ino);
	struct stat st;
	int r = do_setattr(req, in, attr, valid, fi);

	if (!r)
		r = vmc_inode_stat(in, &st);
	if (r)
		reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, vmcfs.fs_attr_timeout);
}

/* --- creating and removing names ------------------------------------------ */

/* Give a new object the caller's ownership (the daemon creates it as root). */
static int set_owner(fuse_req_t req, struct vmc_inode *dir, const char *name)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat dst;
	gid_t gid = ctx->gid;

	if (!vmcfs.fs_is_root)
		return 0;
	if (fstatat(dir->in_fd, "", &dst, AT_EMPTY_PATH) == 0 && (dst.st_mode & S_ISGID))
		gid = (gid_t)-1; /* setgid directory: keep the inherited group */
	if (fchownat(dir->in_fd, name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW))
		return -errno;
	return 0;
}

/* Is @gid the caller's group or one of its supplementary groups? */
static bool caller_in_group(fuse_req_t req, gid_t gid)
{
	gid_t groups[64];
	int n;

	if (fuse_req_ctx(req)->gid == gid)
		return true;
	n = fuse_req_getgroups(req, 64, groups);
	for (int i = 0; i < n && i < 64; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

/*
 * set_owner's chown cleared the set-id bits of a new regular file: give back
 * those the caller asked for in @mode, as the kernel keeps them for a file
 * the caller creates itself (S_ISGID only if the file's group is one of the
 * caller's, or the caller is root).
 */
static void keep_setid(fuse_req_t req, int fd, mode_t mode)
{
	mode_t want = mode & (S_ISUID | S_ISGID);
	struct stat st;

	if (!want || !vmcfs.fs_is_root || fstat(fd, &st) || !S_ISREG(st.st_mode))
		return;
	if ((want & S_ISGID) && fuse_req_ctx(req)->uid != 0 && !caller_in_group(req, st.st_gid))
		want &= (mode_t)~S_ISGID;
	if (want && fchmod(fd, (st.st_mode & 07777) | want))
		vmc_warn("cannot restore the set-id bits of a new file: %s", strerror(errno));
}

static void reply_entry(fuse_req_t req, struct vmc_inode *dir, const char *name, int r)
{
	struct fuse_entry_param e;

	if (!r)
		r = do_lookup(dir, name, &e);
	if (r)
		reply_err(req, -r);
	else
		fuse_reply_entry(req, &e);
}

static void reply_new_entry(fuse_req_t req, struct vmc_inode *dir, const char *name, int r)
{
	if (!r)
		r = set_owner(req, dir, name);
	reply_entry(req, dir, name, r);
}

static void vmc_ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			 dev_t rdev)
{
	struct vmc_inode *dir = vmc_inode_of(parent);
	int r = 0;

	if (vmc_name_reserved(name))
		r = -EPERM;
	else if (mknodat(dir->in_fd, name, mode, rdev))
		r = -errno;
	if (!r)
		r = set_owner(req, dir, name);
	if (!r && S_ISREG(mode) && (mode & (S_ISUID | S_ISGID))) {
		int fd = openat(dir->in_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

		if (fd >= 0) {
			keep_setid(req, fd, mode);
			close(fd);
		}
	}
	reply_entry(req, dir, name, r);
}

static void vmc_ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct vmc_inode *dir = vmc_inode_of(parent);
	int r = 0;

	if (vmc_name_reserved(name))
		r = -EPERM;
	else if (mkdirat(dir->in_fd, name, mode))
		r = -errno;
	reply_new_entry(req, dir, name, r);
}

static void vmc_ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
			   const char *name)
{
	struct vmc_inode *dir = vmc_inode_of(parent);
	int r = 0;

	if (vmc_name_reserved(name))
		r = -EPERM;
	else if (symlinkat(link, dir->in_fd, name))
		r = -errno;
	reply_new_entry(req, dir, name, r);
}

static void vmc_ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	struct vmc_inode *in = vmc_inode_of(ino), *dir = vmc_inode_of(parent);
	struct fuse_entry_param e;
	char path[64];
	int r = 0;

	proc_path(in, path, sizeof(path));
	if (vmc_name_reserved(name))
		r = -EPERM;
	else if (is_policy_name(name) && (r = policy_create_check(req, dir, name)))
		; /* refused */
	else if (linkat(AT_FDCWD, path, dir->in_fd, name, AT_SYMLINK_FOLLOW))
		r = -errno;
	if (!r)
		r = do_lookup(dir, name, &e);
	if (r)
		reply_err(req, -r);
	else
		fuse_reply_entry(req, &e);
}

static void vmc_ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vmc_inode *dir = vmc_inode_of(parent);
	int r = 0;

	if (vmc_name_reserved(name))
		r = -ENOENT;
	else if (is_policy_name(name) &&
		 (r = mount_require(req, VMC_PRIV_DECRYPT, "policy-remove", dir, name)))
		; /* refused */
	else if (unlinkat(dir->in_fd, name, 0))
		r = -errno;
	if (is_policy_name(name) && r != -EACCES && r != -ENOENT)
		policy_event(req, "policy-remove", dir, name, r);
	reply_err(req, -r);
}

/*
 * rmdir of a directory whose only remaining entries are vmcryptfs' own (a VM
 * key record): remove those, then the directory.
 */
static int rmdir_vm(struct vmc_inode *dir, const char *name)
{
	struct dirent *de;
	DIR *dp;
	int fd, r = 0;

	fd = openat(dir->in_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dp = fdopendir(fd);
	if (!dp) {
		close(fd);
		return -ENOMEM;
	}
	while ((de = readdir(dp)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    !vmc_name_reserved(de->d_name)) {
			r = -ENOTEMPTY;
			break;
		}
	if (!r) {
		rewinddir(dp);
		while ((de = readdir(dp)))
			if (vmc_name_reserved(de->d_name) && unlinkat(dirfd(dp), de->d_name, 0) &&
			    errno != ENOENT) {
				r = -errno;
				break;
			}
	}
	closedir(dp);
	if (!r && unlinkat(dir->in_fd, name, AT_REMOVEDIR))
		r = -errno;
	return r;
}

static void vmc_ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vmc_inode *dir = vmc_inode_of(parent);
	int r = 0;

	if (vmc_name_reserved(name))
		r = -ENOENT;
	else if (unlinkat(dir->in_fd, name, AT_REMOVEDIR))
		r = errno == ENOTEMPTY || errno == EEXIST ? rmdir_vm(dir, name) : -errno;
	reply_err(req, -r);
}

/* Keep the remembered name of a renamed object current (classification). */
static void renamed(struct vmc_inode *dir, const char *name)
{
	struct fuse_entry_param e;

	if (do_lookup(dir, name, &e) == 0)
		vmc_inode_forget(vmc_inode_of(e.ino), 1);
}

static void vmc_ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			  fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct vmc_inode *dir = vmc_inode_of(parent), *ndir = vmc_inode_of(newparent);
	int r = 0;

	if (vmc_name_reserved(name))
		r = -ENOENT;
	else if (vmc_name_reserved(newname))
		r = -EPERM;
	else if (is_policy_name(name) &&
		 (r = mount_require(req, VMC_PRIV_DECRYPT, "policy-remove", dir, name)))
		; /* moving a policy away removes it from its VM */
	else if (is_policy_name(newname) && (r = policy_create_check(req, ndir, newname)))
		; /* refused */
	else if (renameat2(dir->in_fd, name, ndir->in_fd, newname, flags))
		r = -errno;
	if (!r && (is_policy_name(name) || is_policy_name(newname)))
		policy_event(req, "policy-rename", ndir, newname, r);
	if (!r) {
		renamed(ndir, newname);
		if (flags & RENAME_EXCHANGE)
			renamed(dir, name);
	}
	reply_err(req, -r);
}

static void vmc_ll_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n = readlinkat(vmc_inode_of(ino)->in_fd, "", buf, sizeof(buf));

	if (n < 0)
		reply_err(req, errno);
	else if (n == sizeof(buf))
		reply_err(req, ENAMETOOLONG);
	else {
		buf[n] = '\0';
		fuse_reply_readlink(req, buf);
	}
}

/* --- open files ----------------------------------------------------------- */

static int open_flags(int flags)
{
	int f = (flags & O_ACCMODE) == O_RDONLY ? O_RDONLY : O_RDWR;

	/* The daemon reads to re-encrypt partial units, so writers are O_RDWR;
	 * it uses explicit offsets, so no O_APPEND; page-cache semantics are the
	 * kernel's business, so no O_DIRECT on the backing file. */
	return f | (flags & (O_SYNC | O_DSYNC | O_NOATIME)) | O_CLOEXEC;
}

/*
 * Finish opening @fd on @in for the caller of @req: refuse while a
 * conversion owns the VM, check privileges (the plaintext of an encrypted
 * file needs Cryptographer.Access, and so does writing a new file that will
 * be encrypted; changing a policy file needs ManageEncryptionPolicy), attach
 * the keys, honour O_TRUNC, refuse plaintext where the policy encrypts.
 */
static int open_finish(fuse_req_t req, struct vmc_inode *in, int fd, int flags,
		       struct fuse_file_info *fi, bool created, struct vmc_lease *lease)
{
	uid_t uid = fuse_req_ctx(req)->uid;
	gid_t gid = fuse_req_ctx(req)->gid;
	bool writing = (flags & O_ACCMODE) != O_RDONLY, enc;
	struct vmc_handle *h;
	int r;

	if (vmc_vm_busy(in))
		return -EBUSY; /* vmcryptfs-ctl is converting this VM */
	if (!created && (writing || (flags & O_TRUNC)) && is_policy_file(in)) {
		r = mount_require(req, VMC_PRIV_MANAGE_POLICY, "policy-change", in, NULL);
		if (r)
			return r;
		policy_change_event(req, in, flags & O_TRUNC ? "opened to be rewritten" :
							       "opened for writing");
	}
	pthread_mutex_lock(&in->in_lock);
	r = vmc_crypt_attach(in, fd);
	if (r) {
		pthread_mutex_unlock(&in->in_lock);
		return r;
	}
	if (atomic_load(&in->in_enc) == VMC_ENC_CRYPT) {
		r = mount_require(req, VMC_PRIV_ACCESS, "open", in, NULL);
	} else if (writing && atomic_load(&in->in_undecided) && !created) {
		char name[NAME_MAX + 1];
		struct vmc_inode *parent = vmc_inode_name(in, name, sizeof(name));

		/* (create checked this before making the file) */
		r = parent ? vmc_vm_would_encrypt(parent, name, &enc) : 0;
		if (!r && parent && enc)
			r = mount_require(req, VMC_PRIV_ACCESS, "open", in, NULL);
		if (parent)
			vmc_inode_unref(parent);
	}
	if (!r && (flags & O_TRUNC))
		r = truncate_locked(in, fd, 0, uid, gid);
	if (!r && writing && atomic_load(&in->in_enc) == VMC_ENC_CLEAR &&
	    !atomic_load(&in->in_undecided))
		r = vmc_vm_check_clear_write(in, fd);
	h = r ? NULL : calloc(1, sizeof(*h));
	if (!r && !h)
		r = -ENOMEM;
	if (r) {
		vmc_crypt_detach(in);
		pthread_mutex_unlock(&in->in_lock);
		return r;
	}
	atomic_fetch_add(&in->in_opens, 1);
	pthread_mutex_unlock(&in->in_lock);
	h->fh_fd = fd;
	h->fh_lease = lease;
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = (flags & O_DIRECT) != 0;
	fi->keep_cache = 0;
	return 0;
}

/* Undo open_finish when the opener went away before the reply. */
static void open_undo(struct vmc_inode *in, int fd, struct fuse_file_info *fi)
{
	pthread_mutex_lock(&in->in_lock);
	atomic_fetch_sub(&in->in_opens, 1);
	vmc_crypt_detach(in);
	pthread_mutex_unlock(&in->in_lock);
	close(fd);
	vmc_lease_put(handle_of(fi)->fh_lease);
	free(handle_of(fi));
}

/* The kernel's open reply (linux/fuse.h); libfuse 3.14 cannot set every flag. */
struct vmc_open_out {
	uint64_t fh;
	uint32_t open_flags;
	uint32_t padding;
};
#define VMC_FOPEN_DIRECT_IO (1u << 0)
#define VMC_FOPEN_PARALLEL_DIRECT_WRITES (1u << 6) /* Linux 6.2 */

/*
 * Reply to an open. An O_DIRECT open (a hypervisor's cache=none disk) also
 * gets FOPEN_PARALLEL_DIRECT_WRITES: otherwise the kernel serializes direct
 * writes per inode, and writes to different regions of one disk image could
 * never overlap; the range locks of cryptio.c order what must be ordered.
 */
static int reply_open(fuse_req_t req, struct fuse_file_info *fi)
{
	struct vmc_open_out o = { .fh = fi->fh };
	struct iovec iov = { &o, sizeof(o) };

	if (!fi->direct_io)
		return fuse_reply_open(req, fi);
	o.open_flags = VMC_FOPEN_DIRECT_IO | VMC_FOPEN_PARALLEL_DIRECT_WRITES;
	return fuse_reply_iov(req, &iov, 1);
}

static void vmc_ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vmc_inode *in = vmc_inode_of(ino);
	struct vmc_lease *lease = NULL;
	int fd, r;

	if (!S_ISREG(in->in_type)) {
		reply_err(req, S_ISDIR(in->in_type) ? EISDIR : ENXIO);
		return;
	}
	/* Another host writing to the VM: EBUSY before anything changes. */
	if (open_writes(fi->flags)) {
		r = vmc_inode_lease(in, NULL, &lease);
		if (r) {
			reply_err(req, -r);
			return;
		}
	}
	fd = vmc_reopen(in, open_flags(fi->flags));
	if (fd == -EPERM && (fi->flags & O_NOATIME))
		fd = vmc_reopen(in, open_flags(fi->flags & ~O_NOATIME));
	if (fd < 0) {
		vmc_lease_put(lease);
		reply_err(req, -fd);
		return;
	}
	r = open_finish(req, in, fd, fi->flags, fi, false, lease);
	if (r) {
		vmc_lease_put(lease);
		close(fd);
		reply_err(req, -r);
		return;
	}
	if (reply_open(req, fi) == -ENOENT)
		open_undo(in, fd, fi); /* the opener was interrupted */
}

static void vmc_ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			  struct fuse_file_info *fi)
{
	struct vmc_inode *dir = vmc_inode_of(parent), *in = NULL;
	struct vmc_lease *lease = NULL;
	struct fuse_entry_param e;
	int fd, r;

	if (vmc_name_reserved(name)) {
		reply_err(req, EPERM);
		return;
	}
	r = vmc_inode_lease(NULL, dir, &lease);
	if (r) {
		reply_err(req, -r);
		return;
	}
	if (is_policy_name(name)) {
		r = policy_create_check(req, dir, name);
	} else {
		/* Refuse before the file exists: a new file that will be encrypted
		 * needs Cryptographer.Access, and a VM with an unusable policy takes
		 * no new files that might need encryption. */
		bool enc = false;

		r = vmc_vm_would_encrypt(dir, name, &enc);
		if (!r && enc)
			r = mount_require(req, VMC_PRIV_ACCESS, "create", dir, name);
	}
	if (r) {
		vmc_lease_put(lease);
		reply_err(req, -r);
		return;
	}
	fd = openat(dir->in_fd, name,
		    open_flags(fi->flags) | O_CREAT | (fi->flags & O_EXCL) | O_NOFOLLOW,
		    mode & 07777);
	if (fd < 0) {
		r = errno;
		vmc_lease_put(lease);
		reply_err(req, r);
		return;
	}
	r = set_owner(req, dir, name);
	if (!r)
		keep_setid(req, fd, mode);
	if (!r)
		r = do_lookup(dir, name, &e);
	if (!r) {
		in = vmc_inode_of(e.ino);
		r = open_finish(req, in, fd, fi->flags, fi, true, lease);
		if (r)
			vmc_inode_forget(in, 1);
	}
	if (is_policy_name(name))
		policy_event(req, "policy-create", dir, name, r);
	if (r) {
		vmc_lease_put(lease);
		close(fd);
		reply_err(req, -r);
		return;
	}
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		open_undo(in, fd, fi);
}

static void vmc_ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	struct vmc_inode *in = vmc_inode_of(ino);
	int fd = handle_of(fi)->fh_fd;

	for (;;) {
		if (atomic_load(&in->in_enc) == VMC_ENC_CRYPT) {
			uint8_t *p = NULL;
			size_t n;
			int r = vmc_crypt_read(in, fd, &p, size, off, &n);

			if (r) {
				reply_err(req, -r);
			} else {
				vmc_metric_add(&vmc_metrics.read_bytes[1], n);
				vmc_metric_add(&vmc_metrics.read_ops[1], 1);
				fuse_reply_buf(req, (const char *)p, n);
			}
			return;
		} else {
			struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
			struct vmc_rl_req rq;
			struct stat st;
			size_t n = size;

			vmc_rl_lock(&in->in_rl, &rq, 0, VMC_RL_ALL, false);
			if (atomic_load(&in->in_enc) == VMC_ENC_CRYPT) {
				vmc_rl_unlock(&in->in_rl, &rq);
				continue; /* became encrypted meanwhile */
			}
			bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
			bv.buf[0].fd = fd;
			bv.buf[0].pos = off;
			/* Spliced: count what the file holds, as the reply will carry. */
			if (!fstat(fd, &st))
				n = off >= st.st_size ? 0 : (size_t)(st.st_size - off);
			if (n > size)
				n = size;
			vmc_metric_add(&vmc_metrics.read_ops[0], 1);
			vmc_metric_add(&vmc_metrics.read_bytes[0], n);
			/* Once replied to, the file may be closed and forgotten
			 * before the unlock: hold the inode until then. */
			vmc_inode_ref(in);
			fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
			vmc_rl_unlock(&in->in_rl, &rq);
			vmc_inode_unref(in);
			return;
		}
	}
}

static ssize_t do_write(struct vmc_inode *in, int fd, const char *buf, size_t size, off_t off,
			uid_t uid, gid_t gid)
{
	for (;;) {
		struct vmc_rl_req rq;
		ssize_t n;
		int r;

		switch (atomic_load(&in->in_enc)) {
		case VMC_ENC_CRYPT:
			n = vmc_crypt_write(in, fd, (const uint8_t *)buf, size, off);
			if (n == -EAGAIN)
				continue;
			return n;
		case VMC_ENC_CLEAR:
			vmc_rl_lock(&in->in_rl, &rq, 0, VMC_RL_ALL, false);
			if (atomic_load(&in->in_enc) != VMC_ENC_CLEAR) {
				vmc_rl_unlock(&in->in_rl, &rq);
				continue;
			}
			if (!atomic_load(&in->in_undecided)) {
				n = pwrite(fd, buf, size, off);
				if (n < 0)
					n = -errno;
				vmc_rl_unlock(&in->in_rl, &rq);
				return n;
			}
			vmc_rl_unlock(&in->in_rl, &rq);
			pthread_mutex_lock(&in->in_lock);
			r = first_data(in, fd, off == 0 ? buf : NULL, size, uid, gid);
			pthread_mutex_unlock(&in->in_lock);
			if (r)
				return r;
			continue;
		default:
			return -EIO;
		}
	}
}

static void vmc_ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
			 off_t off, struct fuse_file_info *fi)
{
	struct vmc_inode *in = vmc_inode_of(ino);
	ssize_t n = vmc_lease_lost(handle_of(fi)->fh_lease) ?
			    -EIO : /* another host owns the VM now */
			    do_write(in, handle_of(fi)->fh_fd, buf, size, off,
				     fuse_req_ctx(req)->uid, fuse_req_ctx(req)->gid);
	int k = atomic_load(&in->in_enc) == VMC_ENC_CRYPT;

	if (n < 0) {
		reply_err(req, (int)-n);
	} else {
		vmc_metric_add(&vmc_metrics.write_bytes[k], (uint64_t)n);
		vmc_metric_add(&vmc_metrics.write_ops[k], 1);
		fuse_reply_write(req, (size_t)n);
	}
}

static void vmc_ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* close() of a duplicate flushes what a network backing store buffers. */
	int r = close(dup(handle_of(fi)->fh_fd));

	reply_err(req, r ? errno : 0);
}

static void vmc_ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vmc_inode *in = vmc_inode_of(ino);
	struct vmc_handle *h = handle_of(fi);

	pthread_mutex_lock(&in->in_lock);
	atomic_fetch_sub(&in->in_opens, 1);
	vmc_crypt_detach(in);
	pthread_mutex_unlock(&in->in_lock);
	close(h->fh_fd);
	vmc_lease_put(h->fh_lease);
	free(h);
	reply_err(req, 0);
}

static void vmc_ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	int fd = handle_of(fi)->fh_fd;
	int r = datasync ? fdatasync(fd) : fsync(fd);

	reply_err(req, r ? errno : 0);
}

static int do_fallocate(struct vmc_inode *in, int fd, int mode, off_t off, off_t len, uid_t uid,
			gid_t gid)
{
	for (;;) {
		struct vmc_rl_req rq;
		int r;

		switch (atomic_load(&in->in_enc)) {
		case VMC_ENC_CRYPT:
			r = vmc_crypt_fallocate(in, fd, mode, off, len);
			if (r == -EAGAIN)
				continue;
			return r;
		case VMC_ENC_CLEAR:
			if (atomic_load(&in->in_undecided) && !(mode & FALLOC_FL_KEEP_SIZE)) {
				pthread_mutex_lock(&in->in_lock);
				r = first_data(in, fd, NULL, 0, uid, gid);
				pthread_mutex_unlock(&in->in_lock);
				if (r)
					return r;
				if (atomic_load(&in->in_enc) == VMC_ENC_CRYPT)
					continue;
			}
			vmc_rl_lock(&in->in_rl, &rq, 0, VMC_RL_ALL, false);
			if (atomic_load(&in->in_enc) != VMC_ENC_CLEAR) {
				vmc_rl_unlock(&in->in_rl, &rq);
				continue;
			}
			r = fallocate(fd, mode, off, len) ? -errno : 0;
			if (!r && !(mode & FALLOC_FL_KEEP_SIZE))
				atomic_store(&in->in_undecided, false);
			vmc_rl_unlock(&in->in_rl, &rq);
			return r;
		default:
			return -EIO;
		}
	}
}

static void vmc_ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			     struct fuse_file_info *fi)
{
	if (vmc_lease_lost(handle_of(fi)->fh_lease))
		reply_err(req, EIO);
	else
		reply_err(req, -do_fallocate(vmc_inode_of(ino), handle_of(fi)->fh_fd, mode, off,
					  len, fuse_req_ctx(req)->uid, fuse_req_ctx(req)->gid));
}

static void vmc_ll_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
			 struct fuse_file_info *fi)
{
	struct vmc_inode *in = vmc_inode_of(ino);
	int fd = handle_of(fi)->fh_fd;
	off_t r;

	if (atomic_load(&in->in_enc) == VMC_ENC_CRYPT) {
		r = vmc_crypt_lseek(in, fd, off, whence);
	} else {
		r = lseek(fd, off, whence);
		if (r < 0)
			r = -errno;
	}
	if (r < 0)
		reply_err(req, (int)-r);
	else
		fuse_reply_lseek(req, r);
}

/* --- directories ---------------------------------------------------------- */

struct vmc_dir {
	DIR *d_dp;
	off_t d_offset;
	struct dirent *d_entry; /* read but not yet returned */
};

static void vmc_ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vmc_dir *d = calloc(1, sizeof(*d));
	int fd;

	if (!d) {
		reply_err(req, ENOMEM);
		return;
	}
	fd = openat(vmc_inode_of(ino)->in_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d->d_dp = fdopendir(fd))) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		free(d);
		reply_err(req, e);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		closedir(d->d_dp);
		free(d);
	}
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		       struct fuse_file_info *fi, bool plus)
{
	struct vmc_dir *d = (struct vmc_dir *)(uintptr_t)fi->fh;
	struct vmc_inode *dir = vmc_inode_of(ino);
	char *buf = malloc(size), *p = buf;
	size_t rem = size;
	int err = 0;

	if (!buf) {
		reply_err(req, ENOMEM);
		return;
	}
	if (offset != d->d_offset) {
		seekdir(d->d_dp, offset);
		d->d_entry = NULL;
		d->d_offset = offset;
	}
	for (;;) {
		struct fuse_entry_param e;
		size_t n;

		if (!d->d_entry) {
			errno = 0;
			d->d_entry = readdir(d->d_dp);
			if (!d->d_entry) {
				err = errno;
				break;
			}
		}
		if (vmc_name_reserved(d->d_entry->d_name)) {
			d->d_offset = d->d_entry->d_off;
			d->d_entry = NULL;
			continue;
		}
		if (plus) {
			bool dot = !strcmp(d->d_entry->d_name, ".") ||
				   !strcmp(d->d_entry->d_name, "..");

			memset(&e, 0, sizeof(e));
			if (dot) {
				e.attr.st_ino = d->d_entry->d_ino;
				e.attr.st_mode = (mode_t)d->d_entry->d_type << 12;
			} else {
				int r = do_lookup(dir, d->d_entry->d_name, &e);

				if (r == -ENOENT) { /* vanished meanwhile */
					d->d_offset = d->d_entry->d_off;
					d->d_entry = NULL;
					continue;
				}
				if (r) {
					err = -r;
					break;
				}
			}
			n = fuse_add_direntry_plus(req, p, rem, d->d_entry->d_name, &e,
						   d->d_entry->d_off);
			if (n > rem) {
				if (!dot)
					vmc_inode_forget(vmc_inode_of(e.ino), 1);
				break;
			}
		} else {
			struct stat st = { .st_ino = d->d_entry->d_ino,
					   .st_mode = (mode_t)d->d_entry->d_type << 12 };

			n = fuse_add_direntry(req, p, rem, d->d_entry->d_name, &st,
					      d->d_entry->d_off);
			if (n > rem)
				break;
		}
		p += n;
		rem -= n;
		d->d_offset = d->d_entry->d_off;
		d->d_entry = NULL;
	}
	/* An error after some entries is reported on the next call. */
	if (err && p == buf)
		reply_err(req, err);
	else
		fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

static void vmc_ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void vmc_ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void vmc_ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vmc_dir *d = (struct vmc_dir *)(uintptr_t)fi->fh;

	closedir(d->d_dp);
	free(d);
	reply_err(req, 0);
}

static void vmc_ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			    struct fuse_file_info *fi)
{
	int fd = dirfd(((struct vmc_dir *)(uintptr_t)fi->fh)->d_dp);
	int r = datasync ? fdatasync(fd) : fsync(fd);

	reply_err(req, r ? errno : 0);
}

static void vmc_ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	if (fstatvfs(vmc_inode_of(ino)->in_fd, &sv))
		reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

/* --- extended attributes -------------------------------------------------- */

static void vmc_ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			    size_t size, int flags)
{
	char path[64];

	if (ino == FUSE_ROOT_ID && !strcmp(name, VMC_CTL_XATTR)) {
		reply_err(req, EPERM);
		return;
	}
	proc_path(vmc_inode_of(ino), path, sizeof(path));
	reply_err(req, setxattr(path, name, value, size, flags) ? errno : 0);
}

/* getxattr/listxattr: a size of 0 asks for the size only. */
static void reply_xattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char path[64], *buf = NULL;
	ssize_t n;

	proc_path(vmc_inode_of(ino), path, sizeof(path));
	if (size) {
		buf = malloc(size);
		if (!buf) {
			reply_err(req, ENOMEM);
			return;
		}
	}
	n = name ? getxattr(path, name, buf, size) : listxattr(path, buf, size);
	if (n < 0)
		reply_err(req, errno);
	else if (size)
		fuse_reply_buf(req, buf, (size_t)n);
	else
		fuse_reply_xattr(req, (size_t)n);
	free(buf);
}

static void vmc_ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	/* The mount root tells vmcryptfs-ctl where the control socket is. */
	if (ino == FUSE_ROOT_ID && !strcmp(name, VMC_CTL_XATTR)) {
		const char *p = vmc_ctl_path();
		size_t len = strlen(p);

		if (!size)
			fuse_reply_xattr(req, len);
		else if (size < len)
			reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, p, len);
		return;
	}
	reply_xattr(req, ino, name, size);
}

static void vmc_ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	reply_xattr(req, ino, NULL, size);
}

static void vmc_ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	char path[64];

	proc_path(vmc_inode_of(ino), path, sizeof(path));
	reply_err(req, removexattr(path, name) ? errno : 0);
}

/* --- session -------------------------------------------------------------- */

static void vmc_ll_init(void *userdata, struct fuse_conn_info *conn)
{
	if (vmcfs.fs_writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	else
		conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* Let the kernel keep flock()/fcntl() locks: no lock operations here. */
	conn->want &= ~(FUSE_CAP_FLOCK_LOCKS | FUSE_CAP_POSIX_LOCKS);
	conn->max_readahead = conn->max_readahead > (1u << 20) ? conn->max_readahead : (1u << 20);
	vmc_dbg("FUSE protocol %u.%u, max_write %u, max_readahead %u, writeback %s",
		conn->proto_major, conn->proto_minor, conn->max_write, conn->max_readahead,
		conn->want & FUSE_CAP_WRITEBACK_CACHE ? "on" : "off");
}

const struct fuse_lowlevel_ops vmc_ll_ops = {
	.init = vmc_ll_init,
	.lookup = vmc_ll_lookup,
	.forget = vmc_ll_forget,
	.forget_multi = vmc_ll_forget_multi,
	.getattr = vmc_ll_getattr,
	.setattr = vmc_ll_setattr,
	.readlink = vmc_ll_readlink,
	.mknod = vmc_ll_mknod,
	.mkdir = vmc_ll_mkdir,
	.symlink = vmc_ll_symlink,
	.link = vmc_ll_link,
	.unlink = vmc_ll_unlink,
	.rmdir = vmc_ll_rmdir,
	.rename = vmc_ll_rename,
	.open = vmc_ll_open,
	.create = vmc_ll_create,
	.read = vmc_ll_read,
	.write = vmc_ll_write,
	.flush = vmc_ll_flush,
	.release = vmc_ll_release,
	.fsync = vmc_ll_fsync,
	.fallocate = vmc_ll_fallocate,
	.lseek = vmc_ll_lseek,
	.opendir = vmc_ll_opendir,
	.readdir = vmc_ll_readdir,
	.readdirplus = vmc_ll_readdirplus,
	.releasedir = vmc_ll_releasedir,
	.fsyncdir = vmc_ll_fsyncdir,
	.statfs = vmc_ll_statfs,
	.setxattr = vmc_ll_setxattr,
	.getxattr = vmc_ll_getxattr,
	.listxattr = vmc_ll_listxattr,
	.removexattr = vmc_ll_removexattr,
};
