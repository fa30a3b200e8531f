// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Converting the data of a VM: encrypt (cleartext -> encrypted), decrypt
 * (encrypted -> cleartext) and deep rekey (encrypted -> encrypted under new
 * data keys and a new KEK).
 *
 * Each file is converted into a hidden temporary file in the same directory
 * (.vmcrypt.conv.tmp), synced, given the original's owner, mode, times and
 * extended attributes, and renamed over the original: at every instant the
 * file is complete in its old or its new form, never neither, and a crash
 * loses nothing. Like vSphere, this needs free space for one more copy of the
 * largest file, which is checked first. Holes stay holes.
 *
 * A journal (.vmcrypt.journal, docs/FORMAT.md) names the operation, the file
 * being converted and how far its copy is durable; re-running the operation
 * after a crash resumes inside that file and skips the files already done
 * (their state tells). The VM's files must be closed; while the conversion
 * runs, opening them through the mount fails with EBUSY.
 */
#include "audit.h"
#include "ctl.h"
#include "vmcfs.h"
#include "lease.h"
#include "metrics.h"
#include "vmc_class.h"
#include "vmc_crypto.h"
#include "vmc_ctlproto.h"
#include "vmc_dek.h"
#include "vmc_header.h"
#include "vmc_fault.h"
#include "vmc_log.h"
#include "vmc_priv.h"
#include "vmc_vmstate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define HDR ((uint64_t)VMC_FMT_HDR_SIZE)
#define UNIT ((uint64_t)VMC_FMT_UNIT_SIZE)
#define CHUNK (1u << 20)
#define CHECKPOINT (256ull << 20) /* journal the progress every 256 MiB */

enum conv_op {
	CONV_ENCRYPT,
	CONV_DECRYPT,
	CONV_DEEP,
};

static const char *const op_names[] = { "encrypt", "decrypt", "rekey-deep" };

/* One file to convert. */
struct conv_file {
	char rel[PATH_MAX];   /* relative to the VM directory */
	uint64_t size;        /* logical size */
	uint64_t alloc;       /* bytes allocated in the backing store */
};

struct conv_job {
	struct ctl_conn *c;
	enum conv_op op;
	int vmfd;
	const char *vm;
	struct vmc_vm_policy pol;   /* encrypt: which classes */
	struct vmc_kek *kek;        /* encrypt/deep: the KEK new headers are sealed under */
	bool claimed;               /* job_claim succeeded: the VM is ours */
	struct vmc_lease *lease;    /* the VM's lock across hosts */
	dev_t vm_dev;               /* the VM directory */
	ino_t vm_ino;
	uint8_t vm_uuid[16];
	struct conv_file *files;
	int nfiles, cap;
	uint64_t total, done;       /* bytes, for progress */
	char err[512];
};

/* --- journal ---------------------------------------------------------------- */

struct journal {
	char op[16];
	char file[PATH_MAX];
	unsigned long long ino, size, mtime_ns, done;
};

static void escape(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in && o + 4 < len; in++) {
		unsigned char ch = (unsigned char)*in;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    strchr("._-/", ch))
			out[o++] = (char)ch;
		else
			o += (size_t)snprintf(out + o, len - o, "%%%02x", ch);
	}
	out[o] = '\0';
}

static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		unsigned int v;

		if (*s == '%' && sscanf(s + 1, "%2x", &v) == 1) {
			*o++ = (char)v;
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

static int journal_write(int vmfd, const struct journal *j)
{
	char esc[PATH_MAX * 3], text[PATH_MAX * 3 + 256];
	int fd, n, r = 0;

	escape(j->file, esc, sizeof(esc));
	n = snprintf(text, sizeof(text),
		     "vmcryptfs-journal 1\nop %s\nfile %s\nino %llu\nsize %llu\nmtime %llu\n"
		     "done %llu\n", j->op, esc, j->ino, j->size, j->mtime_ns, j->done);
	unlinkat(vmfd, VMC_FMT_JOURNAL_NAME ".tmp", 0);
	fd = openat(vmfd, VMC_FMT_JOURNAL_NAME ".tmp",
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, text, (size_t)n) != n || fsync(fd))
		r = errno ? -errno : -EIO;
	close(fd);
	if (!r && renameat(vmfd, VMC_FMT_JOURNAL_NAME ".tmp", vmfd, VMC_FMT_JOURNAL_NAME))
		r = -errno;
	if (!r && fsync(vmfd))
		r = -errno;
	return r;
}

/* 0 with @j filled, -ENOENT when there is no journal, -EUCLEAN if unreadable. */
static int journal_read(int vmfd, struct journal *j)
{
	char text[PATH_MAX * 3 + 256], esc[PATH_MAX * 3];
	int fd = openat(vmfd, VMC_FMT_JOURNAL_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t n;

	memset(j, 0, sizeof(*j));
	if (fd < 0)
		return -errno;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -EUCLEAN;
	text[n] = '\0';
	if (sscanf(text, "vmcryptfs-journal 1\nop %15s\nfile %4095s\nino %llu\nsize %llu\n"
		   "mtime %llu\ndone %llu\n", j->op, esc, &j->ino, &j->size, &j->mtime_ns,
		   &j->done) != 6)
		return -EUCLEAN;
	unescape(esc);
	snprintf(j->file, sizeof(j->file), "%s", esc);
	return 0;
}

int vmc_conv_journal_op(int vmfd, char *op, size_t oplen)
{
	struct journal jn;
	int r = journal_read(vmfd, &jn);

	if (!r)
		snprintf(op, oplen, "%s", jn.op);
	return r;
}

/* --- which files ------------------------------------------------------------ */

static bool is_snapshot_disk(const char *name)
{
	return !fnmatch("*-delta.vmdk", name, FNM_CASEFOLD) ||
	       !fnmatch("*-sesparse.vmdk", name, FNM_CASEFOLD) ||
	       !fnmatch("*-[0-9][0-9][0-9][0-9][0-9][0-9].vmdk", name, FNM_CASEFOLD);
}

/* Does file @name (open as @fd, @st) need converting by @j? */
static bool needs_conversion(struct conv_job *j, const char *name, int fd, const struct stat *st)
{
	uint8_t first[VMC_FMT_HDR_SIZE];
	ssize_t n = pread(fd, first, sizeof(first), 0);
	bool enc = n > 0 && vmc_hdr_probe(first, (size_t)n) == VMC_PROBE_ENCRYPTED;
	enum vmc_class cls;

	if (st->st_size == 0)
		return false; /* empty files are decided at their first data */
	switch (j->op) {
	case CONV_ENCRYPT:
		if (enc)
			return false;
		cls = vmc_class_resolve(vmc_class_of_name(vmcfs.fs_cfg, name), first,
					n > 0 ? (size_t)n : 0);
		return vmc_policy_encrypts(vmcfs.fs_cfg, &j->pol, cls);
	case CONV_DECRYPT:
		return enc;
	case CONV_DEEP: {
		struct vmc_hdr h;
		char err[256];

		/* Converted files carry a slot of the new KEK (never a shallow
		 * re-wrap: a deep rekey writes new data keys only). Before the
		 * new KEK is chosen (preflight), every encrypted file counts. */
		if (!enc || !j->kek || vmc_hdr_parse(&h, first, (size_t)n, err, sizeof(err)))
			return enc;
		for (int i = 0; i < VMC_FMT_NSLOTS; i++)
			if (h.slots[i].status == VMC_SLOT_OK &&
			    !strcmp(h.slots[i].kek_id, j->kek->kek_id) &&
			    !strcmp(h.slots[i].provider, j->kek->kek_provider))
				return false;
		return true;
	}
	}
	return false;
}

static int add_file(struct conv_job *j, const char *rel, uint64_t size, uint64_t alloc)
{
	if (j->nfiles == j->cap) {
		void *n = realloc(j->files, (size_t)(j->cap ? j->cap * 2 : 16) * sizeof(*j->files));

		if (!n)
			return -ENOMEM;
		j->files = n;
		j->cap = j->cap ? j->cap * 2 : 16;
	}
	snprintf(j->files[j->nfiles].rel, PATH_MAX, "%s", rel);
	j->files[j->nfiles].size = size;
	j->files[j->nfiles].alloc = alloc;
	j->nfiles++;
	j->total += size;
	return 0;
}

/* Collect the files to convert below @dirfd (not descending into other VMs). */
static int scan_dir(struct conv_job *j, int dirfd, const char *rel, int depth)
{
	struct dirent *de;
	DIR *dp;
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	if (fd < 0 || !(dp = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return ctl_fail(j->c, -errno, "%s: cannot list %s", j->vm, rel);
	}
	while (!r && (de = readdir(dp))) {
		char path[PATH_MAX];
		struct stat st;
		int f;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    vmc_name_reserved(de->d_name) || !strcmp(de->d_name, VMC_FMT_POLICY_NAME))
			continue;
		snprintf(path, sizeof(path), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
		if (is_snapshot_disk(de->d_name)) {
			r = ctl_fail(j->c, -EBUSY, "%s: %s is a snapshot delta disk: consolidate the "
				     "VM's snapshots first", j->vm, path);
			break;
		}
		f = openat(dirfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (f < 0)
			continue; /* a symlink (not followed) or gone */
		if (fstat(f, &st)) {
			close(f);
			continue;
		}
		if (S_ISDIR(st.st_mode) && depth < 8) {
			if (faccessat(f, VMC_FMT_POLICY_NAME, F_OK, AT_SYMLINK_NOFOLLOW) &&
			    faccessat(f, VMC_FMT_STATE_NAME, F_OK, AT_SYMLINK_NOFOLLOW))
				r = scan_dir(j, f, path, depth + 1);
		} else if (S_ISREG(st.st_mode) && needs_conversion(j, de->d_name, f, &st)) {
			if (st.st_nlink > 1) {
				r = ctl_fail(j->c, -EMLINK, "%s: %s has %ju hard links; converting it "
					     "would split them", j->vm, path, (uintmax_t)st.st_nlink);
			} else {
				bool enc = j->op != CONV_ENCRYPT;

				r = add_file(j, path, enc ? (uint64_t)st.st_size - HDR :
						    (uint64_t)st.st_size,
					     (uint64_t)st.st_blocks * 512);
			}
		}
		close(f);
	}
	closedir(dp);
	return r;
}

/* --- converting one file ------------------------------------------------------ */

/* The DEK of an encrypted file's header @buf (any slot whose KEK is available). */
static int open_dek(const uint8_t *buf, size_t len, struct vmc_dek **out, struct vmc_hdr *h,
		    char *err, size_t errlen)
{
	uint8_t *dek = vmc_secret_alloc(VMC_FMT_DEK_LEN);
	int r = vmc_hdr_parse(h, buf, len, err, errlen);

	if (!dek)
		return -ENOMEM;
	if (r) {
		vmc_secret_free(dek, VMC_FMT_DEK_LEN);
		return -EIO;
	}
	r = -ENOKEY;
	snprintf(err, errlen, "no key slot opens with an available key");
	for (int i = 0; i < VMC_FMT_NSLOTS && r; i++) {
		struct vmc_kek *k;

		if (h->slots[i].status != VMC_SLOT_OK ||
		    vmc_keyring_get(vmcfs.fs_keyring, h->slots[i].provider, h->slots[i].kek_id, &k,
				    err, errlen))
			continue;
		if (!vmc_hdr_unseal(h, i, k->kek_wrap_key, dek))
			r = vmc_dek_new(out, dek);
		vmc_kek_put(k);
	}
	vmc_secret_free(dek, VMC_FMT_DEK_LEN);
	return r;
}

static int copy_xattrs(int src, int dst)
{
	char *names, *val = NULL;
	ssize_t n = flistxattr(src, NULL, 0);
	int r = 0;

	if (n <= 0)
		return 0;
	names = malloc((size_t)n);
	if (!names)
		return -ENOMEM;
	n = flistxattr(src, names, (size_t)n);
	for (char *p = names; n > 0 && p < names + n; p += strlen(p) + 1) {
		ssize_t vl = fgetxattr(src, p, NULL, 0);

		if (vl < 0)
			continue;
		free(val);
		val = malloc((size_t)vl + 1);
		if (!val) {
			r = -ENOMEM;
			break;
		}
		vl = fgetxattr(src, p, val, (size_t)vl);
		if (vl >= 0 && fsetxattr(dst, p, val, (size_t)vl, 0) && errno != ENOTSUP) {
			r = -errno;
			break;
		}
	}
	free(val);
	free(names);
	return r;
}

/* Make the kernel forget the dentry @name of directory (dev, ino). */
static void invalidate(dev_t dev, ino_t ino, const char *name)
{
	struct vmc_inode *dir = vmc_inode_find(dev, ino);

	if (!dir)
		return; /* the kernel does not know the directory */
	if (vmcfs.fs_se)
		fuse_lowlevel_notify_inval_entry(vmcfs.fs_se,
						 dir == &vmcfs.fs_root ? FUSE_ROOT_ID :
									  (fuse_ino_t)(uintptr_t)dir,
						 name, strlen(name));
	if (dir != &vmcfs.fs_root)
		vmc_inode_unref(dir);
}

/*
 * Convert @f (in directory @dirfd under the name @name). Resumes from
 * @resume_done when the journal said so and the temporary file matches.
 */
static int convert_file(struct conv_job *j, int dirfd, const char *name, struct conv_file *f,
			uint64_t resume_done)
{
	bool src_enc = j->op != CONV_ENCRYPT, dst_enc = j->op != CONV_DECRYPT;
	uint64_t sbase = src_enc ? HDR : 0, dbase = dst_enc ? HDR : 0, off, size = f->size;
	struct vmc_dek *sdek = NULL, *ddek = NULL;
	struct vmc_hdr *sh = NULL, *dh = NULL;
	uint8_t *buf = NULL, *hb = NULL, *dek = NULL;
	struct journal jn = { 0 };
	struct stat st, st2, dst;
	int src = -1, tmp = -1, r;
	char err[512];

	src = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (src < 0 || fstat(src, &st))
		return ctl_fail(j->c, -errno, "%s/%s: %s", j->vm, f->rel, strerror(errno));
	buf = malloc(CHUNK);
	hb = malloc(HDR);
	sh = malloc(sizeof(*sh));
	dh = malloc(sizeof(*dh));
	if (!buf || !hb || !sh || !dh) {
		r = -ENOMEM;
		goto out;
	}
	if (src_enc) {
		ssize_t n = pread(src, hb, HDR, 0);

		r = open_dek(hb, n > 0 ? (size_t)n : 0, &sdek, sh, err, sizeof(err));
		if (r) {
			ctl_fail(j->c, r, "%s/%s: %s", j->vm, f->rel, err);
			goto out;
		}
		if (sh->trunc_pending) {
			/* A truncate a crash interrupted: finish it (this job holds
			 * the VM's lock), then copy what it left. */
			int w = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);

			r = w < 0 ? -errno : vmc_crypt_finish_truncate(w, sh);
			if (w >= 0)
				close(w);
			if (!r && fstat(src, &st))
				r = -errno;
			if (r) {
				ctl_fail(j->c, r, "%s/%s: cannot finish an interrupted truncate: %s",
					 j->vm, f->rel, strerror(-r));
				goto out;
			}
			size = sh->trunc_size;
			vmc_notice("%s/%s: finished an interrupted truncate to %llu bytes", j->vm,
				   f->rel, (unsigned long long)size);
		}
	}
	/* The temporary copy: resumed, or started afresh. */
	if (resume_done) {
		tmp = openat(dirfd, VMC_FMT_CONV_TMP_NAME,
			     O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		/* Only a copy this daemon made: a planted hard link of a file
		 * elsewhere, or anything but a plain file of ours, is not resumed. */
		if (tmp >= 0 && (fstat(tmp, &dst) || !S_ISREG(dst.st_mode) || dst.st_nlink != 1 ||
				 dst.st_uid != geteuid())) {
			close(tmp);
			tmp = -1;
		}
	}
	if (tmp >= 0 && dst_enc) {
		ssize_t n = pread(tmp, hb, HDR, 0);
		struct vmc_hdr *h = dh;

		r = n == (ssize_t)HDR ? vmc_hdr_parse(h, hb, HDR, err, sizeof(err)) : -EIO;
		dek = vmc_secret_alloc(VMC_FMT_DEK_LEN);
		if (!r && dek)
			r = vmc_hdr_unseal(h, 0, j->kek->kek_wrap_key, dek);
		if (!r && dek)
			r = vmc_dek_new(&ddek, dek);
		if (r || !dek) { /* not ours after all: start again */
			close(tmp);
			tmp = -1;
		}
	}
	if (tmp < 0) {
		resume_done = 0;
		unlinkat(dirfd, VMC_FMT_CONV_TMP_NAME, 0);
		tmp = openat(dirfd, VMC_FMT_CONV_TMP_NAME,
			     O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (tmp < 0) {
			r = ctl_fail(j->c, -errno, "%s: cannot create a temporary file: %s", j->vm,
				     strerror(errno));
			goto out;
		}
		if (dst_enc) {
			if (!dek)
				dek = vmc_secret_alloc(VMC_FMT_DEK_LEN);
			r = dek ? vmc_dek_generate(dek) : -ENOMEM;
			if (!r)
				r = vmc_hdr_create(dh, src_enc ? sh->file_class :
						   vmc_class_fmt(vmc_class_resolve(
								 vmc_class_of_name(vmcfs.fs_cfg, name),
								 NULL, 0)),
						   j->vm_uuid);
			if (!r)
				r = vmc_hdr_seal(dh, 0, j->kek->kek_provider, j->kek->kek_id,
						 j->kek->kek_wrap_key, dek, 1);
			if (!r)
				r = vmc_dek_new(&ddek, dek);
			if (!r && pwrite(tmp, &dh->raw, HDR, 0) != (ssize_t)HDR)
				r = -errno;
			if (r) {
				ctl_fail(j->c, r, "%s/%s: cannot start the new copy: %s", j->vm, f->rel,
					 strerror(-r));
				goto out;
			}
		}
	}
	snprintf(jn.op, sizeof(jn.op), "%s", op_names[j->op]);
	snprintf(jn.file, sizeof(jn.file), "%s", f->rel);
	jn.ino = st.st_ino;
	jn.size = (unsigned long long)st.st_size;
	jn.mtime_ns = (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
		      (unsigned long long)st.st_mtim.tv_nsec;
	jn.done = resume_done;
	r = journal_write(j->vmfd, &jn);
	if (r) {
		ctl_fail(j->c, r, "%s: cannot write the journal: %s", j->vm, strerror(-r));
		goto out;
	}
	j->done += resume_done;

	/* Copy the data, unit-aligned chunk by chunk; zero units become holes. */
	for (off = resume_done; off < size;) {
		uint64_t len = size - off < CHUNK ? size - off : CHUNK;
		off_t data = lseek(src, (off_t)(sbase + off), SEEK_DATA);

		if (ctl_stopping()) {
			r = ctl_fail(j->c, -EINTR, "%s: stopped (the daemon is unmounting); re-run "
				     "to resume", j->vm);
			goto out;
		}
		if (data < 0 && errno == ENXIO)
			break; /* only a hole remains */
		if (data > (off_t)(sbase + off)) { /* skip a hole, unit-aligned */
			uint64_t skip = (((uint64_t)data - sbase) & ~(UNIT - 1)) - off;

			if (skip >= UNIT) {
				off += skip;
				j->done += skip;
				continue;
			}
		}
		if (pread(src, buf, len, (off_t)(sbase + off)) != (ssize_t)len) {
			r = ctl_fail(j->c, -EIO, "%s/%s: read error at %llu: %s", j->vm, f->rel,
				     (unsigned long long)off, strerror(errno));
			goto out;
		}
		if (sdek && (r = vmc_dek_decrypt(sdek, off / UNIT, buf, len)))
			goto out;
		/* Runs of data units, each encrypted and written at once; a unit
		 * that is all zero (and, when encrypting, long enough to be a
		 * hole) ends a run and stays a hole. */
		for (uint64_t u = 0, run = 0; u < len || run < u;) {
			uint64_t ul = len - u < UNIT ? len - u : UNIT;
			bool hole = u < len && vmc_fmt_is_zero(buf + u, ul) && (!dst_enc || ul >= 16);

			if (u < len && !hole) {
				u += ul;
				continue;
			}
			if (run < u && ddek && (r = vmc_dek_encrypt(ddek, (off + run) / UNIT,
								     buf + run, u - run)))
				goto out;
			if (run < u && pwrite(tmp, buf + run, u - run, (off_t)(dbase + off + run)) !=
					       (ssize_t)(u - run)) {
				r = ctl_fail(j->c, errno == ENOSPC ? -ENOSPC : -EIO,
					     "%s/%s: write error: %s", j->vm, f->rel, strerror(errno));
				goto out;
			}
			u += hole ? ul : 0;
			run = u;
		}
		off += len;
		j->done += len;
		vmc_fault("convert-chunk");
		ctl_progress(j->c, j->done, j->total, f->rel, 0, 0, false);
		if (off / CHECKPOINT != (off - len) / CHECKPOINT) {
			if (fdatasync(tmp)) {
				r = -errno;
				goto out;
			}
			jn.done = off;
			journal_write(j->vmfd, &jn);
		}
	}
	if (ftruncate(tmp, (off_t)(dbase + size)) || fsync(tmp)) {
		r = ctl_fail(j->c, -errno, "%s/%s: cannot finish the copy: %s", j->vm, f->rel,
			     strerror(errno));
		goto out;
	}
	/* The original's identity and metadata. */
	{
		struct timespec tv[2] = { st.st_atim, st.st_mtim };

		if (fchown(tmp, st.st_uid, st.st_gid) || fchmod(tmp, st.st_mode & 07777) ||
		    copy_xattrs(src, tmp) || futimens(tmp, tv)) {
			r = ctl_fail(j->c, -errno, "%s/%s: cannot copy ownership, mode or times: %s",
				     j->vm, f->rel, strerror(errno));
			goto out;
		}
	}
	if (fstat(src, &st2) || st2.st_size != st.st_size || st2.st_mtim.tv_sec != st.st_mtim.tv_sec ||
	    st2.st_mtim.tv_nsec != st.st_mtim.tv_nsec) {
		r = ctl_fail(j->c, -EAGAIN, "%s/%s changed during the conversion; re-run it",
			     j->vm, f->rel);
		goto out;
	}
	vmc_fault("convert-before-rename");
	if (fsync(tmp) || renameat(dirfd, VMC_FMT_CONV_TMP_NAME, dirfd, name) || fsync(dirfd)) {
		r = ctl_fail(j->c, -errno, "%s/%s: cannot replace the original: %s", j->vm,
			     f->rel, strerror(errno));
		goto out;
	}
	vmc_fault("convert-after-rename");
	if (!fstat(dirfd, &dst))
		invalidate(dst.st_dev, dst.st_ino, name);
	r = 0;
out:
	if (tmp >= 0)
		close(tmp);
	close(src);
	vmc_dek_free(sdek);
	vmc_dek_free(ddek);
	vmc_secret_free(dek, VMC_FMT_DEK_LEN);
	free(buf);
	free(hb);
	free(sh);
	free(dh);
	return r;
}

/* Open the directory of @rel (relative to the VM directory); @name points into @rel. */
static int open_parent(int vmfd, char *rel, const char **name)
{
	char *slash = strrchr(rel, '/');
	int fd;

	if (!slash) {
		*name = rel;
		return openat(vmfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	*slash = '\0';
	fd = openat(vmfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	*slash = '/';
	*name = slash + 1;
	return fd;
}

/* --- the operation on one VM ----------------------------------------------- */

static int check_space(struct conv_job *j)
{
	uint64_t need = 0;
	struct statvfs sv;

	for (int i = 0; i < j->nfiles; i++)
		if (j->files[i].alloc > need)
			need = j->files[i].alloc;
	need += HDR + (16u << 20); /* the header and some headroom */
	if (fstatvfs(j->vmfd, &sv))
		return 0; /* cannot tell: the copy will report ENOSPC itself */
	if ((uint64_t)sv.f_bavail * sv.f_frsize < need)
		return ctl_fail(j->c, -ENOSPC, "%s: needs %llu MiB free for a copy of its largest "
				"file, the backing store has %llu MiB", j->vm,
				(unsigned long long)(need >> 20),
				(unsigned long long)((uint64_t)sv.f_bavail * sv.f_frsize >> 20));
	return 0;
}

/*
 * Make the VM this job's: no other operation converting it here, no file of
 * it open here, and its lock taken so no other host writes to it. Undone by
 * job_release.
 */
static int job_claim(struct conv_job *j)
{
	struct stat vst;
	char msg[512];
	int r;

	if (j->claimed)
		return 0;
	if (fstat(j->vmfd, &vst))
		return ctl_fail(j->c, -errno, "%s: %s", j->vm, strerror(errno));
	r = vmc_vm_busy_set(vst.st_dev, vst.st_ino, true);
	if (r)
		return ctl_fail(j->c, -EBUSY, "%s: another operation is converting this VM", j->vm);
	j->vm_dev = vst.st_dev;
	j->vm_ino = vst.st_ino;
	/* Another host writing to the VM has its lock: never convert under it. */
	r = vmc_lease_take(j->vmfd, j->vm, &j->lease, msg, sizeof(msg));
	if (r) {
		r = ctl_fail(j->c, r, "%s", msg[0] ? msg : strerror(-r));
	} else if (vmc_inode_open_under(vst.st_dev, vst.st_ino)) {
		r = ctl_fail(j->c, -EBUSY, "%s: files of the VM are open (power the VM off first)",
			     j->vm);
	}
	if (r) {
		vmc_lease_put(j->lease);
		j->lease = NULL;
		vmc_vm_busy_set(vst.st_dev, vst.st_ino, false);
		return r;
	}
	j->claimed = true;
	return 0;
}

static void job_release(struct conv_job *j)
{
	if (!j->claimed)
		return;
	vmc_lease_put(j->lease);
	j->lease = NULL;
	vmc_vm_busy_set(j->vm_dev, j->vm_ino, false);
	j->claimed = false;
}

/*
 * Everything that can refuse the operation, before anything changes: claim
 * the VM, then look at its files (snapshot delta disks, hard links) and the
 * free space a copy of the largest one needs. Undone by job_release.
 */
static int preflight(struct conv_job *j)
{
	int r = job_claim(j);

	if (r)
		return r;
	r = scan_dir(j, j->vmfd, "", 0);
	if (!r)
		r = check_space(j);
	j->nfiles = 0; /* run_job looks again, with the key it converts to */
	j->total = 0;
	if (r)
		job_release(j);
	return r;
}

static int run_job(struct conv_job *j)
{
	bool own = !j->claimed; /* else the caller claimed the VM and releases it */
	struct journal jn;
	int r;

	r = job_claim(j);
	if (r)
		return r;
	atomic_fetch_add(&vmc_metrics.conversions_running, 1);
	r = journal_read(j->vmfd, &jn);
	if (r == -EUCLEAN) {
		r = ctl_fail(j->c, -EIO, "%s: the conversion journal %s is damaged", j->vm,
			     VMC_FMT_JOURNAL_NAME);
		goto out;
	}
	if (!r && strcmp(jn.op, op_names[j->op])) {
		r = ctl_fail(j->c, -EBUSY, "%s: an interrupted \"%s\" must be finished first "
			     "(re-run it)", j->vm, jn.op);
		goto out;
	}
	bool resuming = r == 0;

	r = scan_dir(j, j->vmfd, "", 0);
	if (!r)
		r = check_space(j);
	for (int i = 0; !r && i < j->nfiles; i++) {
		struct conv_file *f = &j->files[i];
		const char *name;
		uint64_t resume = 0;
		int dfd = open_parent(j->vmfd, f->rel, &name);

		if (dfd < 0) {
			r = ctl_fail(j->c, -errno, "%s/%s: %s", j->vm, f->rel, strerror(errno));
			break;
		}
		if (resuming && !strcmp(jn.file, f->rel)) {
			struct stat st;

			/* Resume inside the file only if it is the one the journal saw. */
			if (!fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) && st.st_ino == jn.ino &&
			    (unsigned long long)st.st_size == jn.size &&
			    (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
					    (unsigned long long)st.st_mtim.tv_nsec == jn.mtime_ns)
				resume = jn.done & ~(UNIT - 1);
		}
		ctl_progress(j->c, j->done, j->total, f->rel, i, j->nfiles, true);
		r = convert_file(j, dfd, name, f, resume);
		close(dfd);
	}
	if (!r) {
		unlinkat(j->vmfd, VMC_FMT_CONV_TMP_NAME, 0);
		if (unlinkat(j->vmfd, VMC_FMT_JOURNAL_NAME, 0) && errno != ENOENT)
			r = -errno;
		fsync(j->vmfd);
		ctl_progress(j->c, j->total, j->total, NULL, j->nfiles, j->nfiles, true);
	}
out:
	atomic_fetch_sub(&vmc_metrics.conversions_running, 1);
	if (!r)
		vmc_metric_add(j->op == CONV_DEEP ? &vmc_metrics.rekeys : &vmc_metrics.conversions, 1);
	if (own)
		job_release(j);
	return r;
}

/* The text of a new policy file. */
static int policy_text(const char *policy, bool home_only, char *text, size_t len)
{
	return snprintf(text, len, "# written by vmcryptfs-ctl encrypt\npolicy = \"%s\"\n%s",
			policy, home_only ? "disks = false\n" : "");
}

/*
 * Write the VM's policy file (a new one), synced: complete under a private
 * name first, then linked to its name, so that no failure leaves an empty or
 * partial policy file (which would refuse the VM's writes).
 */
static int write_policy(int vmfd, const char *policy, bool home_only)
{
	char text[256], tmp[64];
	int fd, n, r = 0;

	n = policy_text(policy, home_only, text, sizeof(text));
	snprintf(tmp, sizeof(tmp), "%spolicy.%ld", VMC_FMT_RESERVED_PREFIX, (long)getpid());
	unlinkat(vmfd, tmp, 0);
	fd = openat(vmfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	errno = 0;
	if (write(fd, text, (size_t)n) != n || fsync(fd))
		r = errno ? -errno : -EIO;
	close(fd);
	if (!r && linkat(vmfd, tmp, vmfd, VMC_FMT_POLICY_NAME, 0))
		r = -errno;
	unlinkat(vmfd, tmp, 0);
	if (!r && fsync(vmfd))
		r = -errno;
	return r;
}

static void job_result(struct conv_job *j, json_object *out, int r)
{
	json_object_object_add(out, "vm", vmc_json_name(j->vm));
	json_object_object_add(out, "files", json_object_new_int(r ? 0 : j->nfiles));
	json_object_object_add(out, "bytes", json_object_new_int64((int64_t)j->done));
}

static int encrypt_one(struct ctl_conn *c, int vmfd, const char *vm, const char *policy,
		       bool home_only, json_object *out)
{
	struct conv_job j = { .c = c, .op = CONV_ENCRYPT, .vmfd = vmfd, .vm = vm };
	const struct vmc_policy_conf *pc = NULL;
	char err[512];
	int r;

	/* Everything that can refuse it, before the policy or key record appear. */
	r = vmc_vm_policy_at(vmfd, vm, &j.pol, err, sizeof(err));
	if (r == -ENOENT) {
		char text[256];

		if (!policy)
			policy = "vm-encryption";
		if (!vmc_config_policy(vmcfs.fs_cfg, policy)) {
			r = ctl_fail(c, -ENOENT, "policy \"%s\" is not defined in %s", policy,
				     vmcfs.fs_cfg->source);
			goto done;
		}
		policy_text(policy, home_only, text, sizeof(text));
		r = vmc_policy_parse(text, vm, vmcfs.fs_cfg, &j.pol, err, sizeof(err));
		if (r) {
			r = ctl_fail(c, r, "%s: %s", vm, err);
			goto done;
		}
		r = preflight(&j);
		if (r)
			goto done;
		r = write_policy(vmfd, policy, home_only);
		if (r) {
			r = ctl_fail(c, r, "%s: cannot write its policy file: %s", vm, strerror(-r));
			goto done;
		}
		vmc_audit(&(struct vmc_event){ .op = "policy-create", .uid = c->cc_uid, .vm = vm,
					       .to = policy, .result = 0 });
	} else if (!r && policy && strcmp(policy, j.pol.policy)) {
		r = ctl_fail(c, -EEXIST, "%s already has the policy \"%s\"", vm, j.pol.policy);
		goto done;
	} else if (r) {
		r = ctl_fail(c, r, "%s", err);
		goto done;
	} else {
		r = preflight(&j);
		if (r)
			goto done;
	}
	pc = vmc_config_policy(vmcfs.fs_cfg, j.pol.policy);
	r = vmc_vm_kek(vmfd, vm, VMC_FMT_STATE_NAME, pc->provider, true, c->cc_uid, &j.kek,
		       j.vm_uuid);
	if (r)
		ctl_fail(c, r, "%s: cannot get the VM's key (see the log)", vm);
	else
		r = run_job(&j);
done:
	job_release(&j);
	job_result(&j, out, r);
	if (!pc && j.pol.policy[0])
		pc = vmc_config_policy(vmcfs.fs_cfg, j.pol.policy);
	/* Every outcome is audited, refusals included. */
	vmc_audit(&(struct vmc_event){ .op = "encrypt", .uid = c->cc_uid, .vm = vm,
				       .provider = pc ? pc->provider : NULL,
				       .key_to = j.kek ? j.kek->kek_id : NULL, .from = "cleartext",
				       .to = j.pol.policy[0] ? j.pol.policy : policy, .result = r,
				       .detail = r ? c->cc_msg : NULL });
	vmc_kek_put(j.kek);
	free(j.files);
	return r;
}

static int decrypt_one(struct ctl_conn *c, int vmfd, const char *vm, json_object *out)
{
	struct conv_job j = { .c = c, .op = CONV_DECRYPT, .vmfd = vmfd, .vm = vm };
	struct vmc_vmstate st;
	char err[512];
	bool had_record;
	int r;

	had_record = vmc_vmstate_read(vmfd, VMC_FMT_STATE_NAME, &st, err, sizeof(err)) == 0;
	/* Held until the policy and the record are gone. */
	r = preflight(&j);
	if (!r)
		r = run_job(&j);
	if (!r) {
		/* All data is cleartext: the VM leaves encryption. */
		if ((unlinkat(vmfd, VMC_FMT_POLICY_NAME, 0) && errno != ENOENT) ||
		    (unlinkat(vmfd, VMC_FMT_STATE_NAME, 0) && errno != ENOENT) || fsync(vmfd))
			r = ctl_fail(c, -errno, "%s: cannot remove its policy and key record: %s", vm,
				     strerror(errno));
		else {
			struct stat dst;

			if (!fstat(vmfd, &dst))
				invalidate(dst.st_dev, dst.st_ino, VMC_FMT_POLICY_NAME);
		}
	}
	job_release(&j);
	job_result(&j, out, r);
	vmc_audit(&(struct vmc_event){ .op = "decrypt", .uid = c->cc_uid, .vm = vm,
				       .provider = had_record ? st.current.provider : NULL,
				       .key_from = had_record ? st.current.kek_id : NULL,
				       .from = "encrypted", .to = "cleartext", .result = r,
				       .detail = r ? c->cc_msg : NULL });
	free(j.files);
	return r;
}

int vmc_rekey_deep(struct ctl_conn *c, int vmfd, const char *vm, const char *to_provider,
		   json_object *out)
{
	struct conv_job j = { .c = c, .op = CONV_DEEP, .vmfd = vmfd, .vm = vm };
	struct vmc_vmstate st;
	char err[512] = "", label[80], uuid[33], old_id[VMC_FMT_KEKID_MAX];
	char old_prov[VMC_FMT_PROVIDER_MAX];
	uint8_t kcv[32];
	int r;

	/* Everything that can refuse it, before its record names a new KEK. */
	old_id[0] = old_prov[0] = '\0';
	r = preflight(&j);
	if (r)
		goto audit;
	/* The new KEK, recorded as "next" before any data key changes (the key
	 * provider is called without fs_vm_lock: see vmc_vm_record_update). */
	pthread_mutex_lock(&vmcfs.fs_vm_lock);
	r = vmc_vmstate_read(vmfd, VMC_FMT_STATE_NAME, &st, err, sizeof(err));
	pthread_mutex_unlock(&vmcfs.fs_vm_lock);
	if (r) {
		r = ctl_fail(c, r == -ENOENT ? -ENOENT : -EIO, "%s: %s", vm,
			     r == -ENOENT ? "not an encrypted VM" : err);
		goto audit;
	}
	snprintf(old_id, sizeof(old_id), "%s", st.current.kek_id);
	snprintf(old_prov, sizeof(old_prov), "%s", st.current.provider);
	memcpy(j.vm_uuid, st.vm_uuid, 16);
	if (st.state == VMC_FMT_VMSTATE_REKEY) {
		r = vmc_keyring_get(vmcfs.fs_keyring, st.next.provider, st.next.kek_id, &j.kek, err,
				    sizeof(err));
		r = r ? vmc_key_errno(r) : 0;
		if (!r && !vmc_vmstate_key_check(j.kek->kek_check_key, st.vm_uuid, st.next.provider,
						  st.next.kek_id, kcv) &&
		    !vmc_memeq(kcv, st.next.key_check, sizeof(kcv)))
			r = -EKEYREJECTED;
	} else {
		const char *prov = to_provider ? to_provider : st.current.provider;

		for (int i = 0; i < 16; i++)
			sprintf(uuid + 2 * i, "%02x", st.vm_uuid[i]);
		snprintf(label, sizeof(label), "vmcryptfs-vm-%s-%llu", uuid,
			 (unsigned long long)time(NULL));
		r = vmc_keyring_create(vmcfs.fs_keyring, prov, label, &j.kek, err, sizeof(err));
		r = r ? vmc_key_errno(r) : 0;
		if (!r) {
			st.next.set = true;
			snprintf(st.next.provider, sizeof(st.next.provider), "%s", prov);
			snprintf(st.next.kek_id, sizeof(st.next.kek_id), "%s", j.kek->kek_id);
			r = vmc_vmstate_key_check(j.kek->kek_check_key, st.vm_uuid, prov,
						  j.kek->kek_id, st.next.key_check);
			st.state = VMC_FMT_VMSTATE_REKEY;
		}
		if (!r)
			r = vmc_vm_record_update(vmfd, VMC_FMT_STATE_NAME, &st, err, sizeof(err));
	}
	if (r) {
		r = ctl_fail(c, r, "%s: cannot get the new key: %s", vm,
			 err[0] ? err : strerror(-r));
		goto audit;
	}
	r = run_job(&j);
	if (r)
		goto audit;
	pthread_mutex_lock(&vmcfs.fs_vm_lock);
	r = vmc_vmstate_read(vmfd, VMC_FMT_STATE_NAME, &st, err, sizeof(err));
	if (!r && st.state == VMC_FMT_VMSTATE_REKEY) {
		st.current = st.next;
		memset(&st.next, 0, sizeof(st.next));
		st.state = VMC_FMT_VMSTATE_STEADY;
		r = vmc_vmstate_write(vmfd, VMC_FMT_STATE_NAME, &st);
	}
	pthread_mutex_unlock(&vmcfs.fs_vm_lock);
	if (r)
		ctl_fail(c, r, "%s: cannot finish the key record: %s", vm, strerror(-r));
	else if (strcmp(old_id, j.kek->kek_id))
		vmc_keyring_forget(vmcfs.fs_keyring, old_prov, old_id);
audit:
	job_release(&j);
	job_result(&j, out, r);
	if (j.kek) {
		json_object_object_add(out, "from", vmc_json_name(old_id));
		json_object_object_add(out, "to", vmc_json_name(j.kek->kek_id));
	}
	vmc_audit(&(struct vmc_event){ .op = "rekey-deep", .uid = c->cc_uid, .vm = vm,
				       .provider = j.kek ? j.kek->kek_provider :
							   old_prov[0] ? old_prov : NULL,
				       .key_from = old_id[0] ? old_id : NULL,
				       .key_to = j.kek ? j.kek->kek_id : NULL,
				       .from = old_prov[0] ? old_prov : NULL,
				       .to = j.kek ? j.kek->kek_provider : NULL,
				       .result = r, .detail = r ? c->cc_msg : NULL });
	vmc_kek_put(j.kek);
	free(j.files);
	return r;
}

/* encrypt / decrypt of one VM, several, or all. */
static int convert_verb(struct ctl_conn *c, json_object *args, json_object *result, bool enc)
{
	json_object *arr = json_object_new_array();
	const char *policy = NULL;
	char (*vms)[PATH_MAX] = NULL, norm[PATH_MAX];
	bool home_only = false, all = false;
	int n = 0, failed = 0, r;

	json_object_object_add(result, "vms", arr);
	r = vmc_ctl_arg_str(args, "policy", false, &policy, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = vmc_ctl_arg_bool(args, "home_only", &home_only, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = vmc_ctl_arg_bool(args, "all", &all, c->cc_msg, sizeof(c->cc_msg));
	if (r)
		return r;
	if (all && enc) {
		/* Every top-level directory of the datastore not encrypted yet. */
		DIR *dp = fdopendir(openat(vmcfs.fs_root.in_fd, ".", O_RDONLY | O_DIRECTORY |
					   O_CLOEXEC));
		struct dirent *de;

		if (!dp)
			return ctl_fail(c, -errno, "cannot list the datastore");
		while ((de = readdir(dp))) {
			void *nv;

			if (de->d_type != DT_DIR || de->d_name[0] == '.')
				continue;
			nv = realloc(vms, (size_t)(n + 1) * PATH_MAX);
			if (!nv)
				break;
			vms = nv;
			snprintf(vms[n++], PATH_MAX, "%s", de->d_name);
		}
		closedir(dp);
	} else {
		r = ctl_vm_targets(c, args, &vms, &n);
		if (r)
			return r;
	}
	c->cc_vm_count = n;
	for (int i = 0; i < n && !ctl_stopping(); i++) {
		json_object *one = json_object_new_object();
		int fd;

		c->cc_msg[0] = '\0';
		c->cc_vm_index = i + 1;
		r = ctl_open_dir(c, vms[i], &fd, norm, sizeof(norm));
		if (!r) {
			r = enc ? encrypt_one(c, fd, norm, policy, home_only, one) :
				  decrypt_one(c, fd, norm, one);
			close(fd);
		}
		if (r) {
			json_object_object_add(one, "vm", vmc_json_name(vms[i]));
			json_object_object_add(one, "error", vmc_json_name(c->cc_msg));
			failed++;
		}
		json_object_array_add(arr, one);
	}
	free(vms);
	json_object_object_add(result, "failed", json_object_new_int(failed));
	if (n == 1 && failed)
		return r;
	return 0;
}

int verb_encrypt(struct ctl_conn *c, json_object *args, json_object *result)
{
	return convert_verb(c, args, result, true);
}

int verb_decrypt(struct ctl_conn *c, json_object *args, json_object *result)
{
	return convert_verb(c, args, result, false);
}
