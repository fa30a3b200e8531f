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

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POLICY_MAX (64 * 1024)
#define VM_DEPTH_MAX 256

/* The VM a file belongs to, as found by vm_find. */
struct vm_ctx {
	struct vmc_inode *dir;     /* VM directory (referenced), NULL if none */
	int policy_err;            /* 0, or why the policy is unusable */
	struct vmc_vm_policy pol;  /* valid when dir && !policy_err */
	char err[512];
};

/* Read and parse the policy file in directory @d. */
static int policy_load(struct vmc_inode *d, int fd, struct vm_ctx *ctx)
{
	char where[512], *text;
	struct stat st;
	ssize_t n;
	int r;

	vmc_inode_path(d, where, sizeof(where));
	if (strlen(where) + sizeof("/" VMC_FMT_POLICY_NAME) < sizeof(where))
		strcat(where, strcmp(where, ".") ? "/" VMC_FMT_POLICY_NAME : "");
	if (!strcmp(where, "."))
		snprintf(where, sizeof(where), "%s", VMC_FMT_POLICY_NAME);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(ctx->err, sizeof(ctx->err), "%s: not a regular file", where);
		return -EINVAL;
	}
	if (st.st_size > POLICY_MAX) {
		snprintf(ctx->err, sizeof(ctx->err), "%s: larger than %d bytes", where, POLICY_MAX);
		return -EFBIG;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text)
		return -ENOMEM;
	n = pread(fd, text, (size_t)st.st_size, 0);
	if (n < 0) {
		r = -errno;
		snprintf(ctx->err, sizeof(ctx->err), "%s: cannot read: %s", where, strerror(errno));
		free(text);
		return r;
	}
	text[n] = '\0';
	if (memchr(text, '\0', (size_t)n)) {
		snprintf(ctx->err, sizeof(ctx->err), "%s: contains a NUL byte", where);
		free(text);
		return -EINVAL;
	}
	r = vmc_policy_parse(text, where, vmcfs.fs_cfg, &ctx->pol, ctx->err, sizeof(ctx->err));
	free(text);
	return r;
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
		int fd = openat(cur->in_fd, VMC_FMT_POLICY_NAME,
				O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);

		if (fd >= 0 || errno != ENOENT) {
			ctx->dir = cur;
			if (fd < 0) {
				char where[512];

				vmc_inode_path(cur, where, sizeof(where));
				snprintf(ctx->err, sizeof(ctx->err), "%s/%s: cannot open: %s", where,
					 VMC_FMT_POLICY_NAME,
					 errno == ELOOP ? "it is a symbolic link" : strerror(errno));
				ctx->policy_err = -EINVAL;
			} else {
				ctx->policy_err = policy_load(cur, fd, ctx);
				close(fd);
			}
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
 * The KEK that new files of the VM in @dir are wrapped under: from the VM key
 * record, created (with a new KEK from @provider) if the VM has none yet.
 */
static int vm_kek(struct vmc_inode *dir, const char *provider, struct vmc_kek **out,
		  uint8_t vm_uuid[16])
{
	struct vmc_vmstate st;
	struct vmc_kek *k = NULL;
	char err[512], where[512], label[64], uuid[33];
	uint8_t kcv[32];
	int r;

	vmc_inode_path(dir, where, sizeof(where));
	pthread_mutex_lock(&vmcfs.fs_vm_lock);
	r = vmc_vmstate_read(dir->in_fd, &st, err, sizeof(err));
	if (r == -ENOENT) {
		memset(&st, 0, sizeof(st));
		r = vmc_random(st.vm_uuid, sizeof(st.vm_uuid));
		if (r)
			goto out;
		hex(st.vm_uuid, 16, uuid);
		snprintf(label, sizeof(label), "vmcryptfs-vm-%s", uuid);
		r = vmc_keyring_create(vmcfs.fs_keyring, provider, label, &k, err, sizeof(err));
		if (r) {
			vmc_err("VM %s: cannot create its key: %s", where, err);
			goto out;
		}
		st.created = (uint64_t)time(NULL);
		st.current.set = true;
		snprintf(st.current.provider, sizeof(st.current.provider), "%s", provider);
		snprintf(st.current.kek_id, sizeof(st.current.kek_id), "%s", k->kek_id);
		r = vmc_vmstate_key_check(k->kek_check_key, st.vm_uuid, provider, k->kek_id,
					  st.current.key_check);
		if (!r)
			r = vmc_vmstate_write(dir->in_fd, &st);
		if (r) {
			vmc_err("VM %s: cannot write %s: %s", where, VMC_FMT_STATE_NAME, strerror(-r));
			goto out;
		}
		vmc_notice("VM %s: encrypted with key %s from provider \"%s\"", where, k->kek_id,
			   provider);
	} else if (r) {
		vmc_err("VM %s: %s", where, err);
		r = -EIO;
		goto out;
	} else {
		r = vmc_keyring_get(vmcfs.fs_keyring, st.current.provider, st.current.kek_id, &k, err,
				    sizeof(err));
		if (r) {
			vmc_warn("VM %s: locked: %s", where, err);
			r = -ENOKEY;
			goto out;
		}
		r = vmc_vmstate_key_check(k->kek_check_key, st.vm_uuid, st.current.provider,
					  st.current.kek_id, kcv);
		if (!r && !vmc_memeq(kcv, st.current.key_check, sizeof(kcv))) {
			vmc_err("VM %s: provider \"%s\" returned a key for %s that does not match the "
				"VM key record", where, st.current.provider, st.current.kek_id);
			r = -EKEYREJECTED;
		}
		if (r)
			goto out;
	}
	memcpy(vm_uuid, st.vm_uuid, 16);
	*out = k;
	k = NULL;
out:
	pthread_mutex_unlock(&vmcfs.fs_vm_lock);
	vmc_kek_put(k);
	return r;
}

/*
 * What the policy says about data written to @in, whose first bytes are
 * @first (NULL: unknown). On return *encrypt tells, and when true @ctx holds
 * the VM (release with vm_ctx_done). -EIO when the VM's policy is unusable
 * (logged, naming the file and line).
 */
static int vm_decide(struct vmc_inode *in, const void *first, size_t firstlen, bool *encrypt,
		     enum vmc_class *cls, struct vm_ctx *ctx)
{
	char name[NAME_MAX + 1], where[512];
	struct vmc_inode *parent;

	*encrypt = false;
	memset(ctx, 0, sizeof(*ctx));
	parent = vmc_inode_name(in, name, sizeof(name));
	if (!parent)
		return -ENOENT;
	*cls = vmc_class_resolve(vmc_class_of_name(vmcfs.fs_cfg, name), first, firstlen);
	if (*cls == VMC_CLASS_CLEARTEXT) {
		vmc_inode_unref(parent);
		return 0;
	}
	vm_find(parent, ctx);
	vmc_inode_unref(parent);
	if (!ctx->dir)
		return 0; /* not in a VM directory */
	if (ctx->policy_err) {
		vmc_inode_path(in, where, sizeof(where));
		vmc_err("%s: refusing to write: %s", where, ctx->err);
		vm_ctx_done(ctx);
		return -EIO;
	}
	*encrypt = vmc_policy_encrypts(vmcfs.fs_cfg, &ctx->pol, *cls);
	if (!*encrypt)
		vm_ctx_done(ctx);
	return 0;
}

int vmc_vm_classify_new(struct vmc_inode *in, const void *first, size_t firstlen,
			bool *encrypt, struct vmc_hdr *hdr, uint8_t *dek)
{
	struct vm_ctx ctx;
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
	if (r || !enc)
		return r;
	r = vm_kek(ctx.dir, vmc_config_policy(vmcfs.fs_cfg, ctx.pol.policy)->provider, &kek,
		   vm_uuid);
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
	ssize_t n = pread(fd, first, sizeof(first), 0);
	bool enc;
	int r;

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
