// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Shallow rekey: a new KEK re-wraps the data keys of a VM. Only headers
 * change, so it takes the same time for a 1 GiB and a 1 TiB VM, and it runs
 * while the VM's files are open (their data keys do not change).
 *
 * Crash safety (PRODUCT.md): every file stays readable under the old or the
 * new KEK at every instant.
 *   1. The VM key record gets the new KEK as "next" (state rekey) and is
 *      synced: from now on new files are wrapped under the new KEK.
 *   2. For each file: the DEK is sealed under the new KEK into an empty slot,
 *      written and synced; only then are the old slots cleared and synced.
 *   3. The record's "next" becomes "current" (state steady).
 * Re-running after an interruption at any point finishes the job with the
 * same new KEK (step 1 is skipped when the record already has it).
 */
#include "audit.h"
#include "ctl.h"
#include "vmcfs.h"
#include "metrics.h"
#include "vmc_crypto.h"
#include "vmc_ctlproto.h"
#include "vmc_header.h"
#include "vmc_fault.h"
#include "vmc_log.h"
#include "vmc_priv.h"
#include "vmc_vmstate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct rekey_job {
	struct ctl_conn *c;
	const char *vm;
	struct vmc_kek *next;    /* the new KEK */
	int files;               /* files re-wrapped */
	int errors;
	char first_err[512];
};

static void note_error(struct rekey_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note_error(struct rekey_job *j, const char *fmt, ...)
{
	va_list ap;

	j->errors++;
	if (j->first_err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(j->first_err, sizeof(j->first_err), fmt, ap);
	va_end(ap);
}

static int slot_write(int fd, const struct vmc_hdr *h, int slot)
{
	off_t off = (off_t)offsetof(struct vmc_fmt_file_header, slots) +
		    (off_t)slot * (off_t)sizeof(struct vmc_fmt_slot);

	if (pwrite(fd, &h->raw.slots[slot], sizeof(h->raw.slots[slot]), off) !=
	    (ssize_t)sizeof(h->raw.slots[slot]))
		return errno ? -errno : -EIO;
	return 0;
}

/* Re-wrap one file's DEK under j->next (see the protocol above). */
static int rewrap(struct rekey_job *j, int fd, const char *path)
{
	struct vmc_hdr *h = malloc(sizeof(*h));
	uint8_t *buf = malloc(VMC_FMT_HDR_SIZE), *dek = vmc_secret_alloc(VMC_FMT_DEK_LEN);
	const char *np = j->next->kek_provider, *nid = j->next->kek_id;
	int have_new = -1, empty = -1, r;
	bool got_dek = false;
	char err[512];
	ssize_t n;

	if (!h || !buf || !dek) {
		r = -ENOMEM;
		goto out;
	}
	n = pread(fd, buf, VMC_FMT_HDR_SIZE, 0);
	if (n < 0) {
		r = -errno;
		goto out;
	}
	if (vmc_hdr_probe(buf, (size_t)n) == VMC_PROBE_CLEAR) {
		r = 1; /* a cleartext file: nothing to re-wrap */
		goto out;
	}
	{
		struct stat st;

		/* Another name of the inode may live outside the datastore. */
		if (!fstat(fd, &st) && st.st_nlink > 1) {
			r = -EMLINK;
			note_error(j, "%s has %ju hard links; its key slots are not rewritten "
				   "(remove the other links, then rekey again)", path,
				   (uintmax_t)st.st_nlink);
			goto out;
		}
	}
	r = vmc_hdr_parse(h, buf, (size_t)n, err, sizeof(err));
	if (r) {
		note_error(j, "%s: %s", path, err);
		goto out;
	}
	for (int i = 0; i < VMC_FMT_NSLOTS; i++) {
		const struct vmc_hdr_slot *s = &h->slots[i];

		if (s->status == VMC_SLOT_OK && !strcmp(s->provider, np) && !strcmp(s->kek_id, nid))
			have_new = i;
		else if (s->status != VMC_SLOT_OK && empty < 0)
			empty = i;
	}
	if (have_new < 0) {
		/* Step 2a: seal the DEK under the new KEK into an empty slot. */
		for (int i = 0; i < VMC_FMT_NSLOTS && !got_dek; i++) {
			struct vmc_kek *k;

			if (h->slots[i].status != VMC_SLOT_OK ||
			    vmc_keyring_get(vmcfs.fs_keyring, h->slots[i].provider, h->slots[i].kek_id,
					    &k, err, sizeof(err)))
				continue;
			got_dek = !vmc_hdr_unseal(h, i, k->kek_wrap_key, dek);
			vmc_kek_put(k);
		}
		if (!got_dek) {
			r = -ENOKEY;
			note_error(j, "%s: no slot opens with an available key", path);
			goto out;
		}
		if (empty < 0) {
			r = -ENOSPC;
			note_error(j, "%s: no free key slot", path);
			goto out;
		}
		r = vmc_hdr_seal(h, empty, np, nid, j->next->kek_wrap_key, dek,
				 vmc_hdr_max_generation(h) + 1);
		if (!r)
			r = slot_write(fd, h, empty);
		if (!r && fdatasync(fd))
			r = -errno;
		if (r) {
			note_error(j, "%s: cannot write the new key slot: %s", path, strerror(-r));
			goto out;
		}
		vmc_fault("rekey-new-slot"); /* the file has both slots */
		have_new = empty;
	}
	/* Step 2b: the new slot is durable; clear every other one. */
	for (int i = 0; i < VMC_FMT_NSLOTS; i++) {
		if (i == have_new || vmc_fmt_is_zero(&h->raw.slots[i], sizeof(h->raw.slots[i])))
			continue;
		vmc_hdr_clear_slot(h, i);
		r = slot_write(fd, h, i);
		if (r)
			break;
	}
	if (!r && fdatasync(fd))
		r = -errno;
	if (r)
		note_error(j, "%s: cannot clear the old key slots: %s", path, strerror(-r));
	else
		j->files++;
	vmc_fault("rekey-file-done");
out:
	vmc_secret_free(dek, VMC_FMT_DEK_LEN);
	free(buf);
	free(h);
	return r < 0 ? r : 0;
}

/* Re-wrap @name in @dirfd, serialized with the daemon's own users of it. */
static void rewrap_at(struct rekey_job *j, int dirfd, const char *name, const char *path)
{
	struct vmc_inode *in;
	struct stat st;
	int fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		note_error(j, "%s: %s", path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return;
	}
	in = vmc_inode_find(st.st_dev, st.st_ino);
	if (in && S_ISREG(in->in_type)) {
		/* in_lock: no truncate-to-empty or new header meanwhile. */
		pthread_mutex_lock(&in->in_lock);
		rewrap(j, fd, path);
		if (in->in_crypt && atomic_load(&in->in_enc) == VMC_ENC_CRYPT) {
			uint8_t buf[VMC_FMT_HDR_SIZE];
			char err[256];

			if (pread(fd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf))
				vmc_hdr_parse(&in->in_crypt->fc_hdr, buf, sizeof(buf), err, sizeof(err));
		}
		pthread_mutex_unlock(&in->in_lock);
	} else {
		rewrap(j, fd, path);
	}
	if (in && in != &vmcfs.fs_root)
		vmc_inode_unref(in);
	close(fd);
}

/* Every regular file below @dirfd, not descending into another VM. */
static void rewrap_dir(struct rekey_job *j, int dirfd, const char *rel, int depth)
{
	struct dirent *de;
	DIR *dp;
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || !(dp = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		note_error(j, "%s: cannot list: %s", rel, strerror(errno));
		return;
	}
	while ((de = readdir(dp))) {
		char path[PATH_MAX];

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    vmc_name_reserved(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", rel, de->d_name);
		if (de->d_type == DT_DIR && depth < 8) {
			int sub = openat(dirfd, de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub < 0)
				continue;
			if (faccessat(sub, VMC_FMT_POLICY_NAME, F_OK, AT_SYMLINK_NOFOLLOW) &&
			    faccessat(sub, VMC_FMT_STATE_NAME, F_OK, AT_SYMLINK_NOFOLLOW))
				rewrap_dir(j, sub, path, depth + 1);
			close(sub);
		} else if (de->d_type == DT_REG || de->d_type == DT_UNKNOWN) {
			rewrap_at(j, dirfd, de->d_name, path);
		}
	}
	closedir(dp);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Shallow rekey of one VM; fills @out. */
static int rekey_shallow(struct ctl_conn *c, int vmfd, const char *vm, const char *to_provider,
			 json_object *out)
{
	/* The datastore root (".") has the datastore's key record: its KEK wraps
	 * the files outside VMs (core dumps), which this re-wraps the same way. */
	const char *record = strcmp(vm, ".") ? VMC_FMT_STATE_NAME : VMC_FMT_DATASTORE_NAME;
	struct rekey_job j = { .c = c, .vm = vm };
	struct vmc_vmstate st;
	struct vmc_kek *k = NULL;
	char err[512] = "", label[80], uuid[33], old_id[VMC_FMT_KEKID_MAX];
	char old_prov[VMC_FMT_PROVIDER_MAX];
	uint8_t kcv[32];
	uint64_t t0 = now_ms();
	int r;

	{
		struct stat vst;

		if (!fstat(vmfd, &vst) && vmc_vm_busy_id(vst.st_dev, vst.st_ino))
			return ctl_fail(c, -EBUSY, "%s: a conversion of the VM is running", vm);
	}
	atomic_fetch_add(&vmc_metrics.rekeys_running, 1);
	/* The key provider is called without fs_vm_lock (it may be a key server
	 * across the network); the record is written only if it did not change
	 * meanwhile. */
	pthread_mutex_lock(&vmcfs.fs_vm_lock);
	r = vmc_vmstate_read(vmfd, record, &st, err, sizeof(err));
	pthread_mutex_unlock(&vmcfs.fs_vm_lock);
	if (r) {
		atomic_fetch_sub(&vmc_metrics.rekeys_running, 1);
		return ctl_fail(c, r == -ENOENT ? -ENOENT : -EIO, "%s: %s", vm,
				r == -ENOENT ? (strcmp(vm, ".") ? "not an encrypted VM" :
							   "the datastore's encryption mode is off") :
					       err);
	}
	snprintf(old_id, sizeof(old_id), "%s", st.current.kek_id);
	snprintf(old_prov, sizeof(old_prov), "%s", st.current.provider);
	if (st.state == VMC_FMT_VMSTATE_REKEY) {
		/* Resume: the new KEK was chosen by the interrupted run. */
		r = vmc_keyring_get(vmcfs.fs_keyring, st.next.provider, st.next.kek_id, &k, err,
				    sizeof(err));
		r = r ? vmc_key_errno(r) : 0;
		if (!r) {
			r = vmc_vmstate_key_check(k->kek_check_key, st.vm_uuid, st.next.provider,
						  st.next.kek_id, kcv);
			if (!r && !vmc_memeq(kcv, st.next.key_check, sizeof(kcv)))
				r = -EKEYREJECTED;
		}
	} else {
		const char *prov = to_provider ? to_provider : st.current.provider;

		for (int i = 0; i < 16; i++)
			sprintf(uuid + 2 * i, "%02x", st.vm_uuid[i]);
		snprintf(label, sizeof(label), "vmcryptfs-%s-%s-%llu", strcmp(vm, ".") ? "vm" : "ds",
			 uuid, (unsigned long long)time(NULL));
		r = vmc_keyring_create(vmcfs.fs_keyring, prov, label, &k, err, sizeof(err));
		r = r ? vmc_key_errno(r) : 0;
		if (!r) {
			st.next.set = true;
			snprintf(st.next.provider, sizeof(st.next.provider), "%s", prov);
			snprintf(st.next.kek_id, sizeof(st.next.kek_id), "%s", k->kek_id);
			r = vmc_vmstate_key_check(k->kek_check_key, st.vm_uuid, prov, k->kek_id,
						  st.next.key_check);
			st.state = VMC_FMT_VMSTATE_REKEY;
		}
		if (!r)
			r = vmc_vm_record_update(vmfd, record, &st, err, sizeof(err));
	}
	if (r) {
		r = ctl_fail(c, r, "%s: cannot get the new key: %s", vm,
			 err[0] ? err : strerror(-r));
		goto audit;
	}
	j.next = k;
	vmc_fault("rekey-record-next"); /* the record names the next KEK, no file has it */
	rewrap_dir(&j, vmfd, vm, 0);
	if (j.errors) {
		r = ctl_fail(c, -EIO, "%s: %d file(s) not re-wrapped, the rekey stays in progress "
			     "(re-run it): %s", vm, j.errors, j.first_err);
		goto audit;
	}
	/* Step 3: the new KEK becomes current. */
	pthread_mutex_lock(&vmcfs.fs_vm_lock);
	r = vmc_vmstate_read(vmfd, record, &st, err, sizeof(err));
	if (!r && st.state == VMC_FMT_VMSTATE_REKEY && !strcmp(st.next.kek_id, k->kek_id)) {
		st.current = st.next;
		memset(&st.next, 0, sizeof(st.next));
		st.state = VMC_FMT_VMSTATE_STEADY;
		r = vmc_vmstate_write(vmfd, record, &st);
	}
	pthread_mutex_unlock(&vmcfs.fs_vm_lock);
	if (r) {
		ctl_fail(c, r, "%s: cannot finish the key record: %s", vm, strerror(-r));
		goto audit;
	}
	if (strcmp(old_id, k->kek_id))
		vmc_keyring_forget(vmcfs.fs_keyring, old_prov, old_id);
	json_object_object_add(out, "vm", vmc_json_name(vm));
	json_object_object_add(out, "from", vmc_json_name(old_id));
	json_object_object_add(out, "to", vmc_json_name(k->kek_id));
	json_object_object_add(out, "provider", vmc_json_name(k->kek_provider));
	json_object_object_add(out, "files", json_object_new_int(j.files));
	json_object_object_add(out, "milliseconds", json_object_new_int64((int64_t)(now_ms() - t0)));
audit:
	atomic_fetch_sub(&vmc_metrics.rekeys_running, 1);
	if (!r)
		vmc_metric_add(&vmc_metrics.rekeys, 1);
	vmc_audit(&(struct vmc_event){ .op = "rekey", .uid = c->cc_uid, .vm = vm,
				       .provider = k ? k->kek_provider : old_prov, .key_from = old_id,
				       .key_to = k ? k->kek_id : NULL, .from = old_prov,
				       .to = k ? k->kek_provider : NULL, .result = r,
				       .detail = r ? c->cc_msg : NULL });
	vmc_kek_put(k);
	return r;
}

struct vm_list {
	char (*vms)[PATH_MAX];
	int n, cap;
	const char *provider; /* filter, or NULL */
};

static int list_cb(void *arg, int dirfd, const char *rel)
{
	struct vm_list *l = arg;
	struct vmc_vmstate st;
	char err[256];

	if (!strcmp(rel, ".") || vmc_vmstate_read(dirfd, VMC_FMT_STATE_NAME, &st, err, sizeof(err)))
		return 0;
	if (l->provider && strcmp(st.current.provider, l->provider))
		return 0;
	if (l->n == l->cap) {
		void *nv = realloc(l->vms, (size_t)(l->cap ? l->cap * 2 : 16) * PATH_MAX);

		if (!nv)
			return -ENOMEM;
		l->vms = nv;
		l->cap = l->cap ? l->cap * 2 : 16;
	}
	snprintf(l->vms[l->n++], PATH_MAX, "%s", rel);
	return 0;
}

/* The VM directories a verb applies to: "vm", "vms", or "all" (optionally of a provider). */
int ctl_vm_targets(struct ctl_conn *c, json_object *args, char (**out)[PATH_MAX], int *n)
{
	struct vm_list l = { 0 };
	json_object *vms;
	const char *vm = NULL;
	bool all = false;
	int r;

	r = vmc_ctl_arg_str(args, "vm", false, &vm, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = vmc_ctl_arg_bool(args, "all", &all, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = vmc_ctl_arg_str(args, "provider", false, &l.provider, c->cc_msg,
				    sizeof(c->cc_msg));
	if (r)
		return r;
	if (l.provider && !all)
		return ctl_fail(c, -EINVAL, "\"provider\" selects among all VMs: it needs \"all\"");
	if (all) {
		r = vmc_vm_foreach(list_cb, &l);
		if (r) {
			free(l.vms);
			return ctl_fail(c, r, "cannot list the VMs: %s", strerror(-r));
		}
	} else if (json_object_object_get_ex(args, "vms", &vms) &&
		   json_object_is_type(vms, json_type_array)) {
		size_t cnt = json_object_array_length(vms);

		l.vms = calloc(cnt ? cnt : 1, PATH_MAX);
		if (!l.vms)
			return -ENOMEM;
		for (size_t i = 0; i < cnt; i++) {
			json_object *e = json_object_array_get_idx(vms, i);

			if (!json_object_is_type(e, json_type_string)) {
				free(l.vms);
				return ctl_fail(c, -EINVAL, "\"vms\" must be a list of strings");
			}
			snprintf(l.vms[l.n++], PATH_MAX, "%s", json_object_get_string(e));
		}
	} else if (vm) {
		l.vms = calloc(1, PATH_MAX);
		if (!l.vms)
			return -ENOMEM;
		snprintf(l.vms[l.n++], PATH_MAX, "%s", vm);
	} else {
		return ctl_fail(c, -EINVAL, "name a VM directory, several, or --all");
	}
	*out = l.vms;
	*n = l.n;
	return 0;
}

int verb_rekey(struct ctl_conn *c, json_object *args, json_object *result)
{
	json_object *arr = json_object_new_array();
	const char *to = NULL;
	char (*vms)[PATH_MAX] = NULL, norm[PATH_MAX];
	bool deep = false;
	int n = 0, failed = 0, r;

	json_object_object_add(result, "vms", arr);
	r = vmc_ctl_arg_bool(args, "deep", &deep, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = vmc_ctl_arg_str(args, "to_provider", false, &to, c->cc_msg, sizeof(c->cc_msg));
	if (!r && to && !vmc_keyring_has_provider(vmcfs.fs_keyring, to))
		r = ctl_fail(c, -ENOENT, "key provider \"%s\" is not configured", to);
	if (!r)
		r = ctl_vm_targets(c, args, &vms, &n);
	if (r)
		return r;
	c->cc_vm_count = n;
	for (int i = 0; i < n && !ctl_stopping(); i++) {
		json_object *one = json_object_new_object();
		int fd;

		c->cc_msg[0] = '\0';
		c->cc_vm_index = i + 1;
		r = ctl_open_dir(c, vms[i], &fd, norm, sizeof(norm));
		if (!r && deep && !strcmp(norm, ".")) {
			r = ctl_fail(c, -EINVAL, "the datastore key is rekeyed shallowly only (no "
				     "--deep)");
			close(fd);
		} else if (!r) {
			r = deep ? vmc_rekey_deep(c, fd, norm, to, one) :
				   rekey_shallow(c, fd, norm, to, one);
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
		return r; /* one VM: its error is the answer */
	return 0;
}
