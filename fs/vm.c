// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * VM directories: which policy applies to a file, whether a new file is
 * encrypted, the VM key record, and unwrapping a file's DEK.
 *
 * A file belongs to the VM whose directory is the nearest ancestor holding a
 * vmcrypt.policy (the file's own directory first). The policy file is read
 * relative to the directory's descriptor with O_NOFOLLOW, so a symlink
 * planted in a VM directory cannot make the daemon read elsewhere; a policy
 * file that cannot be read or parsed blocks every write of data that might
 * have to be encrypted, and the log names the file and line.
 *
 * Encryption is decided once per file, when its first data arrives (an empty
 * file has no header). From then on the file's own header says it is
 * encrypted; the policy is not consulted to read it.
 */
#include "vmcfs.h"
#include "vmc_class.h"
#include "vmc_crypto.h"
#include "vmc_log.h"
#include "vmc_vmstate.h"
#include "audit.h"
#include "lease.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define VM_DEPTH_MAX 256

/* The VM a file belongs to, as found by vm_find. */
struct vm_ctx {
	struct vmc_inode *dir;     /* VM directory (referenced), NULL if none */
	int policy_err;            /* 0, or why the policy is unusable */
	struct vmc_vm_policy pol;  /* valid when dir && !policy_err */
	char err[512];
};

int vmc_vm_policy_at(int dirfd, const char *dir, struct vmc_vm_policy *pol, char *err,
		     size_t errlen)
{
	return vmc_policy_read_at(dirfd, dir, vmcfs.fs_cfg, pol, err, errlen);
}

/* Find the VM of the directory @d (referenced by the caller). */
static void vm_find(struct vmc_inode *d, struct vm_ctx *ctx)
{
	struct vmc_inode *cur = d;
	int depth = 0;

	memset(ctx, 0, sizeof(*ctx));
	vmc_inode_ref(cur);
	while (cur && depth++ < VM_DEPTH_MAX) {
		struct vmc_inode *up;
		char where[PATH_MAX];
		int r;

		vmc_inode_path(cur, where, sizeof(where));
		r = vmc_vm_policy_at(cur->in_fd, where, &ctx->pol, ctx->err, sizeof(ctx->err));
		if (r != -ENOENT) {
			ctx->dir = cur;
			ctx->policy_err = r;
			return;
		}
		if (cur == &vmcfs.fs_root)
			break;
		up = vmc_inode_parent(cur);
		vmc_inode_unref(cur);
		cur = up;
	}
	if (cur)
		vmc_inode_unref(cur);
}

static void vm_ctx_done(struct vm_ctx *ctx)
{
	if (ctx->dir)
		vmc_inode_unref(ctx->dir);
	ctx->dir = NULL;
}

static void hex(const uint8_t *in, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", in[i]);
}

/*
 * The KEK that new files are wrapped under, from the key record @record of
 * directory @dirfd (a VM's, or the datastore's): its current KEK, or during
 * a shallow rekey the next one. With @create, a missing record is created
 * with a new KEK from @provider.
 *
 * The key provider may be a key server across the network: it is never
 * called with fs_vm_lock held, which only orders the record's reads and
 * writes against a rekey's. A record created meanwhile (by this host or
 * another) wins over the one we would have made: its KEK is used.
 */
static int vm_kek(int dirfd, const char *where, const char *record, const char *provider,
		  bool create, uid_t uid, struct vmc_kek **out, uint8_t vm_uuid[16])
{
	bool is_ds = !strcmp(record, VMC_FMT_DATASTORE_NAME);
	struct vmc_vmstate st;
	struct vmc_kekref *ref;
	struct vmc_kek *k = NULL;
	char err[512], label[64], uuid[33];
	uint8_t kcv[32];
	int r;

	pthread_mutex_lock(&vmcfs.fs_vm_lock);
	r = vmc_vmstate_read(dirfd, record, &st, err, sizeof(err));
	pthread_mutex_unlock(&vmcfs.fs_vm_lock);
	if (r == -ENOENT && create) {
		memset(&st, 0, sizeof(st));
		r = vmc_random(st.vm_uuid, sizeof(st.vm_uuid));
		if (r)
			return r;
		hex(st.vm_uuid, 16, uuid);
		snprintf(label, sizeof(label), "vmcryptfs-%s-%s", is_ds ? "ds" : "vm", uuid);
		r = vmc_keyring_create(vmcfs.fs_keyring, provider, label, &k, err, sizeof(err));
		if (r) {
			vmc_err("%s %s: cannot create its key: %s", is_ds ? "datastore" : "VM", where,
				err);
			vmc_audit(&(struct vmc_event){ .op = is_ds ? "encryption-mode" : "encrypt-new",
						       .uid = uid, .vm = is_ds ? NULL : where,
						       .provider = provider, .to = "encrypted",
						       .result = r, .detail = err });
			return vmc_key_errno(r);
		}
		st.created = (uint64_t)time(NULL);
		st.current.set = true;
		snprintf(st.current.provider, sizeof(st.current.provider), "%s", provider);
		snprintf(st.current.kek_id, sizeof(st.current.kek_id), "%s", k->kek_id);
		r = vmc_vmstate_key_check(k->kek_check_key, st.vm_uuid, provider, k->kek_id,
					  st.current.key_check);
		if (!r) {
			pthread_mutex_lock(&vmcfs.fs_vm_lock);
			r = vmc_vmstate_create(dirfd, record, &st);
			pthread_mutex_unlock(&vmcfs.fs_vm_lock);
		}
		if (r == -EEXIST) {
			/* Made meanwhile, here or by another host: use its key. */
			vmc_info("%s %s: its key record was just created elsewhere; using it",
				 is_ds ? "datastore" : "VM", where);
			vmc_kek_put(k);
			return vm_kek(dirfd, where, record, provider, false, uid, out, vm_uuid);
		}
		vmc_audit(&(struct vmc_event){ .op = is_ds ? "encryption-mode" : "encrypt-new",
					       .uid = uid, .vm = is_ds ? NULL : where,
					       .provider = provider, .key_to = k->kek_id,
					       .from = is_ds ? "off" : "none",
					       .to = is_ds ? "on" : "encrypted", .result = r });
		if (r) {
			vmc_err("%s: cannot write %s: %s", where, record, strerror(-r));
			vmc_kek_put(k);
			return r;
		}
		vmc_notice("%s %s: encrypted with key %s from provider \"%s\"",
			   is_ds ? "datastore" : "VM", where, k->kek_id, provider);
	} else if (r) {
		if (r != -ENOENT)
			vmc_err("%s %s: %s", is_ds ? "datastore" : "VM", where, err);
		return r == -ENOENT ? r : -EIO;
	} else {
		ref = st.state == VMC_FMT_VMSTATE_REKEY ? &st.next : &st.current;
		r = vmc_keyring_get(vmcfs.fs_keyring, ref->provider, ref->kek_id, &k, err,
				    sizeof(err));
		if (r) {
			vmc_warn("VM %s: locked: %s", where, err);
			return -ENOKEY;
		}
		r = vmc_vmstate_key_check(k->kek_check_key, st.vm_uuid, ref->provider, ref->kek_id,
					  kcv);
		if (!r && !vmc_memeq(kcv, ref->key_check, sizeof(kcv))) {
			vmc_err("%s: provider \"%s\" returned a key for %s that does not match the key "
				"record", where, ref->provider, ref->kek_id);
			r = -EKEYREJECTED;
		}
		if (r) {
			vmc_kek_put(k);
			return r;
		}
	}
	memcpy(vm_uuid, st.vm_uuid, 16);
	*out = k;
	return 0;
}

int vmc_vm_kek(int dirfd, const char *where, const char *record, const char *provider,
	       bool create, uid_t uid, struct vmc_kek **out, uint8_t vm_uuid[16])
{
	struct vmc_kek *dk = NULL;
	uint8_t ds_uuid[16];
	int r;

	r = vm_kek(dirfd, where, record, provider, create, uid, out, vm_uuid);
	/* The first encrypted VM turns on the datastore's encryption mode. */
	if (!r && create && strcmp(record, VMC_FMT_DATASTORE_NAME) &&
	    faccessat(vmcfs.fs_root.in_fd, VMC_FMT_DATASTORE_NAME, F_OK, AT_SYMLINK_NOFOLLOW) &&
	    vm_kek(vmcfs.fs_root.in_fd, ".", VMC_FMT_DATASTORE_NAME, provider, true, uid, &dk,
		   ds_uuid) == 0)
		vmc_kek_put(dk);
	return r;
}

/*
 * What the policy says about data written to @in, whose first bytes are
 * @first (NULL: unknown). On return *encrypt tells, and when true @ctx holds
 * the VM (release with vm_ctx_done). -EIO when the VM's policy is unusable
 * (logged, naming the file and line).
 */
static int vm_decide_name(struct vmc_inode *parent, const char *name, const void *first,
			  size_t firstlen, bool *encrypt, enum vmc_class *cls, struct vm_ctx *ctx)
{
	char where[512];

	*encrypt = false;
	memset(ctx, 0, sizeof(*ctx));
	*cls = vmc_class_resolve(vmc_class_of_name(vmcfs.fs_cfg, name), first, firstlen);
	if (*cls == VMC_CLASS_CLEARTEXT)
		return 0;
	vm_find(parent, ctx);
	if (!ctx->dir)
		return 0; /* not in a VM directory */
	if (ctx->policy_err) {
		vmc_inode_path(parent, where, sizeof(where));
		vmc_err("%s/%s: refusing to write: %s", where, name, ctx->err);
		vm_ctx_done(ctx);
		return -EIO;
	}
	*encrypt = vmc_policy_encrypts(vmcfs.fs_cfg, &ctx->pol, *cls);
	if (!*encrypt)
		vm_ctx_done(ctx);
	return 0;
}

static int vm_decide(struct vmc_inode *in, const void *first, size_t firstlen, bool *encrypt,
		     enum vmc_class *cls, struct vm_ctx *ctx)
{
	char name[NAME_MAX + 1];
	struct vmc_inode *parent = vmc_inode_name(in, name, sizeof(name));
	int r;

	*encrypt = false;
	memset(ctx, 0, sizeof(*ctx));
	if (!parent)
		return -ENOENT;
	r = vm_decide_name(parent, name, first, firstlen, encrypt, cls, ctx);
	vmc_inode_unref(parent);
	return r;
}

int vmc_vm_classify_new(struct vmc_inode *in, const void *first, size_t firstlen, uid_t uid,
			bool *encrypt, struct vmc_hdr *hdr, uint8_t *dek)
{
	char where[PATH_MAX];
	struct vm_ctx ctx = { 0 };
	struct vmc_kek *kek = NULL;
	enum vmc_class cls;
	uint8_t vm_uuid[16];
	bool enc;
	int r;

	*encrypt = false;
	r = vm_decide(in, first, firstlen, &enc, &cls, &ctx);
	if (r == -ENOENT) {
		vmc_err("cannot classify a file whose name is unknown; refusing to write it");
		return -EIO;
	}
	if (r)
		return r;
	if (!enc && cls == VMC_CLASS_COREDUMP && !ctx.dir) {
		/* A core dump outside any VM: encrypted while encryption mode is on. */
		r = vmc_vm_kek(vmcfs.fs_root.in_fd, ".", VMC_FMT_DATASTORE_NAME, NULL, false, uid,
			       &kek, vm_uuid);
		if (r == -ENOENT)
			return 0; /* encryption mode is off */
		if (r)
			return r;
		goto seal;
	}
	if (!enc)
		return 0;
	vmc_inode_path(ctx.dir, where, sizeof(where));
	r = vmc_vm_kek(ctx.dir->in_fd, where, VMC_FMT_STATE_NAME,
		       vmc_config_policy(vmcfs.fs_cfg, ctx.pol.policy)->provider, true, uid, &kek,
		       vm_uuid);
seal:
	if (!r)
		r = vmc_dek_generate(dek);
	if (!r)
		r = vmc_hdr_create(hdr, vmc_class_fmt(cls), vm_uuid);
	if (!r)
		r = vmc_hdr_seal(hdr, 0, kek->kek_provider, kek->kek_id, kek->kek_wrap_key, dek, 1);
	if (!r)
		*encrypt = true;
	vmc_kek_put(kek);
	vm_ctx_done(&ctx);
	return r;
}

int vmc_vm_check_clear_write(struct vmc_inode *in, int fd)
{
	char first[32], where[512];
	struct vm_ctx ctx;
	enum vmc_class cls;
	int q = vmc_quiet_fd(in, fd);
	ssize_t n = q < 0 ? q : pread(q, first, sizeof(first), 0);
	bool enc;
	int r;

	if (q >= 0)
		close(q);

	r = vm_decide(in, first, n > 0 ? (size_t)n : 0, &enc, &cls, &ctx);
	if (r == -ENOENT)
		return 0; /* not reachable by name (e.g. the root) */
	if (r || !enc)
		return r;
	/* Cleartext data where the policy asks for encryption (a VM that had data
	 * before its policy, or a header destroyed beyond recognition). */
	vmc_inode_path(in, where, sizeof(where));
	vmc_warn("%s: refusing to write plaintext: the file is cleartext but the VM's policy "
		 "\"%s\" encrypts it; encrypt the VM with vmcryptfs-ctl", where, ctx.pol.policy);
	vm_ctx_done(&ctx);
	return -EACCES;
}

int vmc_vm_unwrap(struct vmc_inode *in, const struct vmc_hdr *hdr, uint8_t *dek)
{
	char err[512], first_err[512] = "", where[512];
	int order[VMC_FMT_NSLOTS], n = 0, r, first_r = -ENOKEY;
	bool rejected = false;

	/* Try usable slots, newest generation first. */
	for (int i = 0; i < VMC_FMT_NSLOTS; i++)
		if (hdr->slots[i].status == VMC_SLOT_OK)
			order[n++] = i;
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && hdr->slots[order[j]].generation >
					 hdr->slots[order[j - 1]].generation; j--) {
			int t = order[j];

			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	for (int i = 0; i < n; i++) {
		const struct vmc_hdr_slot *s = &hdr->slots[order[i]];
		struct vmc_kek *k;

		r = vmc_keyring_get(vmcfs.fs_keyring, s->provider, s->kek_id, &k, err, sizeof(err));
		if (r) {
			if (!first_err[0]) {
				snprintf(first_err, sizeof(first_err), "%s", err);
				first_r = r;
			}
			continue;
		}
		r = vmc_hdr_unseal(hdr, order[i], k->kek_wrap_key, dek);
		vmc_kek_put(k);
		if (!r)
			return 0;
		if (r == -EKEYREJECTED) {
			rejected = true;
			snprintf(first_err, sizeof(first_err), "key %s of provider \"%s\" does not "
				 "open this file (wrong key or tampered header)", s->kek_id, s->provider);
		}
	}
	vmc_inode_path(in, where, sizeof(where));
	if (rejected) {
		vmc_err("%s: %s", where, first_err);
		return -EKEYREJECTED;
	}
	vmc_warn("%s: locked (%s): %s", where,
		 vmc_kp_error_transient(first_r) ? "key provider unreachable" : "key unavailable",
		 first_err);
	return -ENOKEY;
}

/* --- VMs under conversion ------------------------------------------------- */

#define BUSY_MAX 64

static pthread_mutex_t busy_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	dev_t dev;
	ino_t ino;
} busy[BUSY_MAX];                /* busy_lock */
static atomic_int nbusy;         /* written under busy_lock */

int vmc_vm_busy_set(dev_t dev, ino_t ino, bool on)
{
	int r = 0, n;

	pthread_mutex_lock(&busy_lock);
	n = atomic_load(&nbusy);
	for (int i = 0; i < n; i++)
		if (busy[i].dev == dev && busy[i].ino == ino) {
			if (on) {
				r = -EBUSY; /* another operation holds it */
			} else {
				busy[i] = busy[n - 1];
				atomic_store(&nbusy, n - 1);
			}
			goto out;
		}
	if (on) {
		if (n == BUSY_MAX) {
			r = -EAGAIN;
		} else {
			busy[n].dev = dev;
			busy[n].ino = ino;
			atomic_store(&nbusy, n + 1);
		}
	}
out:
	pthread_mutex_unlock(&busy_lock);
	return r;
}

bool vmc_vm_busy_id(dev_t dev, ino_t ino)
{
	bool hit = false;

	pthread_mutex_lock(&busy_lock);
	for (int i = 0; i < atomic_load(&nbusy); i++)
		hit |= busy[i].dev == dev && busy[i].ino == ino;
	pthread_mutex_unlock(&busy_lock);
	return hit;
}

bool vmc_vm_busy(struct vmc_inode *in)
{
	struct vmc_inode *cur;
	bool hit = false;

	if (atomic_load(&nbusy) == 0)
		return false; /* the common case: no conversion anywhere */
	cur = vmc_inode_parent(in);
	for (int depth = 0; cur && depth < VM_DEPTH_MAX && !hit; depth++) {
		struct vmc_inode *up;

		pthread_mutex_lock(&busy_lock);
		for (int i = 0; i < atomic_load(&nbusy); i++)
			if (busy[i].dev == cur->in_dev && busy[i].ino == cur->in_ino)
				hit = true;
		pthread_mutex_unlock(&busy_lock);
		up = cur == &vmcfs.fs_root ? NULL : vmc_inode_parent(cur);
		vmc_inode_unref(cur);
		cur = up;
	}
	if (cur)
		vmc_inode_unref(cur);
	return hit;
}

/*
 * Write @st (read earlier, then changed) as @record, unless the record on
 * disk changed since it was read: -EAGAIN (another operation got there
 * first; re-run).
 */
int vmc_vm_record_update(int vmfd, const char *record, struct vmc_vmstate *st, char *err,
			 size_t errlen)
{
	struct vmc_vmstate now;
	int r;

	pthread_mutex_lock(&vmcfs.fs_vm_lock);
	r = vmc_vmstate_read(vmfd, record, &now, err, errlen);
	if (!r && now.seq != st->seq) {
		snprintf(err, errlen, "the key record changed meanwhile (another rekey?): re-run");
		r = -EAGAIN;
	}
	if (!r)
		r = vmc_vmstate_write(vmfd, record, st);
	pthread_mutex_unlock(&vmcfs.fs_vm_lock);
	return r;
}

int vmc_key_errno(int r)
{
	return r == -ENOMEM || r == -EKEYREJECTED || r == -EKEYREVOKED || r == -EINVAL ? r :
												   -ENOKEY;
}

/* --- locks across hosts ------------------------------------------------------ */

int vmc_vm_lease(struct vmc_inode *dir, struct vmc_lease **out)
{
	struct vm_ctx ctx;
	char vm[PATH_MAX], msg[512];
	int r;

	*out = NULL;
	if (!vmc_lease_enabled())
		return 0;
	vm_find(dir, &ctx);
	if (!ctx.dir) {
		/* A VM without a policy (yet): its directory is the VM. */
		vmc_inode_ref(dir);
		ctx.dir = dir;
	}
	if (ctx.dir == &vmcfs.fs_root) {
		vm_ctx_done(&ctx);
		return 0; /* files at the datastore root belong to no VM */
	}
	vmc_inode_path(ctx.dir, vm, sizeof(vm));
	r = vmc_lease_take(ctx.dir->in_fd, vm, out, msg, sizeof(msg));
	if (r == -EBUSY)
		vmc_warn("%s", msg);
	else if (r && msg[0])
		vmc_err("%s", msg);
	else if (r)
		vmc_err("VM %s: cannot take its lock: %s", vm, strerror(-r));
	vm_ctx_done(&ctx);
	return r;
}

/* The VM lock for writing to @in (in directory @dir, or its remembered one). */
int vmc_inode_lease(struct vmc_inode *in, struct vmc_inode *dir, struct vmc_lease **out)
{
	int r;

	*out = NULL;
	if (!vmc_lease_enabled())
		return 0;
	if (dir)
		return vmc_vm_lease(dir, out);
	dir = vmc_inode_parent(in);
	if (!dir)
		return 0;
	r = vmc_vm_lease(dir, out);
	vmc_inode_unref(dir);
	return r;
}

/* --- enumerating VMs -------------------------------------------------------- */

static int foreach_dir(int dirfd, const char *rel, int depth,
		       int (*cb)(void *arg, int dirfd, const char *rel), void *arg)
{
	struct dirent *de;
	DIR *dp;
	int fd, r = 0;

	if (!faccessat(dirfd, VMC_FMT_POLICY_NAME, F_OK, AT_SYMLINK_NOFOLLOW) ||
	    !faccessat(dirfd, VMC_FMT_STATE_NAME, F_OK, AT_SYMLINK_NOFOLLOW)) {
		r = cb(arg, dirfd, rel);
		if (r)
			return r;
	}
	if (depth >= 8)
		return 0;
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	dp = fdopendir(fd);
	if (!dp) {
		close(fd);
		return 0;
	}
	while (!r && (de = readdir(dp))) {
		char child[PATH_MAX];
		int sub;

		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    vmc_name_reserved(de->d_name))
			continue;
		sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue; /* not a directory, or a symlink: not followed */
		if (strcmp(rel, "."))
			snprintf(child, sizeof(child), "%s/%s", rel, de->d_name);
		else
			snprintf(child, sizeof(child), "%s", de->d_name);
		r = foreach_dir(sub, child, depth + 1, cb, arg);
		close(sub);
	}
	closedir(dp);
	return r;
}

int vmc_vm_foreach(int (*cb)(void *arg, int dirfd, const char *rel), void *arg)
{
	int fd = openat(vmcfs.fs_root.in_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = foreach_dir(fd, ".", 0, cb, arg);
	close(fd);
	return r;
}

int vmc_vm_would_encrypt(struct vmc_inode *dir, const char *name, bool *encrypt)
{
	enum vmc_class cls;
	struct vm_ctx ctx;
	int r;

	*encrypt = false;
	if (vmc_class_of_name(vmcfs.fs_cfg, name) == VMC_CLASS_VMDK)
		return 0; /* decided by its first bytes, at its first data */
	r = vm_decide_name(dir, name, NULL, 0, encrypt, &cls, &ctx);

	if (!r && *encrypt)
		vm_ctx_done(&ctx);
	return r;
}
