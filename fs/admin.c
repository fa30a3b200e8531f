// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Control verbs that inspect and administer a datastore without converting
 * data: status, lock, unlock, the provider verbs (list, test, create-native,
 * backup, restore), events and the datastore's encryption mode.
 */
#include "audit.h"
#include "ctl.h"
#include "vmcfs.h"
#include "lease.h"
#include "metrics.h"
#include "vmc_backup.h"
#include "vmc_crypto.h"
#include "vmc_ctlproto.h"
#include "vmc_log.h"
#include "vmc_paths.h"
#include "vmc_priv.h"
#include "vmc_vmstate.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Every string of an answer is in the name encoding (vmc_ctlproto.h). */
static void jstr(json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, vmc_json_name(v));
}

static const char *kek_state_name(enum vmc_kek_state s)
{
	switch (s) {
	case VMC_KEK_LOADED:
		return "unlocked";
	case VMC_KEK_FAILED:
		return "locked";
	case VMC_KEK_LOCKED:
		return "locked by an administrator";
	default:
		return "keys not loaded";
	}
}

/* --- status --------------------------------------------------------------- */

/* The status of one VM directory (@dirfd, @rel) as a JSON object. */
static json_object *vm_status(int dirfd, const char *rel)
{
	json_object *o = json_object_new_object();
	struct vmc_vm_policy pol;
	struct vmc_vmstate st;
	struct stat dst;
	char err[512], msg[512];
	int r;

	jstr(o, "vm", rel);
	r = vmc_vm_policy_at(dirfd, rel, &pol, err, sizeof(err));
	if (r == -ENOENT) {
		jstr(o, "policy", NULL);
	} else if (r) {
		jstr(o, "policy", NULL);
		jstr(o, "policy_error", err);
	} else {
		jstr(o, "policy", pol.policy);
		json_object_object_add(o, "disks", json_object_new_boolean(
					       vmc_policy_encrypts_disks(vmcfs.fs_cfg, &pol)));
	}
	r = vmc_vmstate_read(dirfd, VMC_FMT_STATE_NAME, &st, err, sizeof(err));
	json_object_object_add(o, "encrypted", json_object_new_boolean(r == 0));
	if (r && r != -ENOENT)
		jstr(o, "key_record_error", err);
	if (!r) {
		enum vmc_kek_state ks = vmc_keyring_peek(vmcfs.fs_keyring, st.current.provider,
							 st.current.kek_id, msg, sizeof(msg));

		jstr(o, "provider", st.current.provider);
		jstr(o, "kek_id", st.current.kek_id);
		jstr(o, "keys", kek_state_name(ks));
		if (ks == VMC_KEK_FAILED)
			jstr(o, "lock_reason", msg);
		json_object_object_add(o, "rekey_in_progress",
				       json_object_new_boolean(st.state == VMC_FMT_VMSTATE_REKEY));
		if (st.state == VMC_FMT_VMSTATE_REKEY) {
			jstr(o, "next_provider", st.next.provider);
			jstr(o, "next_kek_id", st.next.kek_id);
		}
	}
	json_object_object_add(o, "conversion_in_progress", json_object_new_boolean(
				       !faccessat(dirfd, VMC_FMT_JOURNAL_NAME, F_OK,
						  AT_SYMLINK_NOFOLLOW)));
	{
		char op[16];

		if (!vmc_conv_journal_op(dirfd, op, sizeof(op)))
			jstr(o, "conversion_op", op);
	}
	if (!fstat(dirfd, &dst)) {
		json_object_object_add(o, "open_files", json_object_new_int(
					       vmc_inode_open_under(dst.st_dev, dst.st_ino)));
		/* Running here and now, or left behind by an interrupted run. */
		json_object_object_add(o, "conversion_running", json_object_new_boolean(
					       vmc_vm_busy_id(dst.st_dev, dst.st_ino)));
	}
	{
		char holder[192];
		bool here;

		/* The cross-host lock: who writes to this VM right now. */
		if (!vmc_lease_describe(dirfd, holder, sizeof(holder), &here)) {
			jstr(o, "writer", holder);
			json_object_object_add(o, "writer_is_this_host",
					       json_object_new_boolean(here));
		}
	}
	return o;
}

static int status_cb(void *arg, int dirfd, const char *rel)
{
	if (strcmp(rel, ".")) /* the root's policy, if any, is not a VM */
		json_object_array_add(arg, vm_status(dirfd, rel));
	return 0;
}

int verb_status(struct ctl_conn *c, json_object *args, json_object *result)
{
	json_object *ds, *provs, *vms;
	const char *vm = NULL;
	struct vmc_vmstate st;
	char err[512], norm[PATH_MAX];
	int r, fd;

	r = vmc_ctl_arg_str(args, "vm", false, &vm, c->cc_msg, sizeof(c->cc_msg));
	if (r)
		return r;
	ds = json_object_new_object();
	provs = json_object_new_array();
	jstr(ds, "backing", vmcfs.fs_backing);
	jstr(ds, "mountpoint", vmcfs.fs_mountpoint);
	jstr(ds, "control_socket", vmc_ctl_path());
	jstr(ds, "configuration", vmcfs.fs_cfg->source);
	r = vmc_vmstate_read(vmcfs.fs_root.in_fd, VMC_FMT_DATASTORE_NAME, &st, err, sizeof(err));
	jstr(ds, "encryption_mode", r == 0 ? "on" : "off");
	if (!r) {
		jstr(ds, "datastore_provider", st.current.provider);
		jstr(ds, "datastore_kek_id", st.current.kek_id);
	}
	for (size_t i = 0; i < vmcfs.fs_cfg->nproviders; i++) {
		const struct vmc_provider_conf *p = &vmcfs.fs_cfg->providers[i];
		json_object *po = json_object_new_object();

		jstr(po, "name", p->name);
		jstr(po, "type", p->type);
		if (c->cc_privs & VMC_PRIV_READ_KEY_SERVERS) {
			char msg[512];
			int h = vmc_keyring_health(vmcfs.fs_keyring, p->name, msg, sizeof(msg));

			jstr(po, "health", h ? "unreachable" : "ok");
			if (h)
				jstr(po, "health_detail", msg);
		}
		json_object_array_add(provs, po);
	}
	json_object_object_add(ds, "providers", provs);
	json_object_object_add(result, "datastore", ds);

	if (vm) {
		r = ctl_open_dir(c, vm, &fd, norm, sizeof(norm));
		if (r)
			return r;
		vms = json_object_new_array();
		json_object_array_add(vms, vm_status(fd, norm));
		close(fd);
	} else {
		vms = json_object_new_array();
		r = vmc_vm_foreach(status_cb, vms);
		if (r) {
			json_object_put(vms);
			return ctl_fail(c, r, "cannot list the VMs: %s", strerror(-r));
		}
	}
	json_object_object_add(result, "vms", vms);
	return 0;
}

/* --- lock / unlock ---------------------------------------------------------- */

static int lock_unlock(struct ctl_conn *c, json_object *args, json_object *result, bool lock)
{
	const char *vm = NULL;
	struct vmc_vmstate st;
	struct vmc_kek *k = NULL;
	char norm[PATH_MAX], err[512];
	uint8_t uuid[16];
	struct stat dst;
	int r, fd;

	r = vmc_ctl_arg_str(args, "vm", true, &vm, c->cc_msg, sizeof(c->cc_msg));
	if (r)
		return r;
	r = ctl_open_dir(c, vm, &fd, norm, sizeof(norm));
	if (r)
		return r;
	r = vmc_vmstate_read(fd, VMC_FMT_STATE_NAME, &st, err, sizeof(err));
	if (r) {
		close(fd);
		return ctl_fail(c, r == -ENOENT ? -ENOENT : -EIO, "%s: %s", norm,
				r == -ENOENT ? "not an encrypted VM" : err);
	}
	if (lock) {
		if (!fstat(fd, &dst) && vmc_inode_open_under(dst.st_dev, dst.st_ino)) {
			close(fd);
			r = ctl_fail(c, -EBUSY, "%s: files of the VM are open (is it powered on?)",
				     norm);
			goto audit;
		}
		vmc_keyring_lock(vmcfs.fs_keyring, st.current.provider, st.current.kek_id, true);
		if (st.next.set)
			vmc_keyring_lock(vmcfs.fs_keyring, st.next.provider, st.next.kek_id, true);
		r = 0;
	} else {
		vmc_keyring_lock(vmcfs.fs_keyring, st.current.provider, st.current.kek_id, false);
		if (st.next.set)
			vmc_keyring_lock(vmcfs.fs_keyring, st.next.provider, st.next.kek_id, false);
		r = vmc_vm_kek(fd, norm, VMC_FMT_STATE_NAME, NULL, false, c->cc_uid, &k, uuid);
		vmc_kek_put(k);
		if (r)
			ctl_fail(c, r, "%s: cannot unlock: the key %s of provider \"%s\" is not "
				 "available (see the log)", norm, st.current.kek_id,
				 st.current.provider);
	}
	close(fd);
	jstr(result, "vm", norm);
	jstr(result, "keys", lock ? "locked by an administrator" : r ? "locked" : "unlocked");
audit:
	vmc_audit(&(struct vmc_event){ .op = lock ? "lock" : "unlock", .uid = c->cc_uid,
				       .vm = norm, .provider = st.current.provider,
				       .key_from = st.current.kek_id, .from = lock ? "unlocked" : "locked",
				       .to = lock ? "locked" : "unlocked", .result = r,
				       .detail = r ? c->cc_msg : NULL });
	return r;
}

int verb_lock(struct ctl_conn *c, json_object *args, json_object *result)
{
	return lock_unlock(c, args, result, true);
}

int verb_unlock(struct ctl_conn *c, json_object *args, json_object *result)
{
	return lock_unlock(c, args, result, false);
}

/* --- providers -------------------------------------------------------------- */

static const char *param_of(const struct vmc_provider_conf *p, const char *name)
{
	for (size_t i = 0; i < p->nparams; i++)
		if (!strcmp(p->params[i].name, name))
			return p->params[i].value;
	return NULL;
}

int verb_provider_list(struct ctl_conn *c, json_object *args, json_object *result)
{
	json_object *arr = json_object_new_array();

	for (size_t i = 0; i < vmcfs.fs_cfg->nproviders; i++) {
		const struct vmc_provider_conf *p = &vmcfs.fs_cfg->providers[i];
		json_object *o = json_object_new_object(), *pol = json_object_new_array();
		const char *type = NULL, *version = NULL;
		uint32_t flags = 0;
		char msg[512];

		vmc_keyring_provider_info(vmcfs.fs_keyring, p->name, &type, &version, &flags);
		jstr(o, "name", p->name);
		jstr(o, "type", p->type);
		jstr(o, "plugin_version", version);
		json_object_object_add(o, "remote", json_object_new_boolean(flags & VMC_KP_F_REMOTE));
		for (size_t j = 0; j < p->nparams; j++)
			if (!strcmp(p->params[j].name, "server") ||
			    !strcmp(p->params[j].name, "key-file")) {
				json_object *srv;

				if (!json_object_object_get_ex(o, p->params[j].name, &srv)) {
					srv = json_object_new_array();
					json_object_object_add(o, p->params[j].name, srv);
				}
				json_object_array_add(srv, vmc_json_name(p->params[j].value));
			}
		for (size_t j = 0; j < vmcfs.fs_cfg->npolicies; j++)
			if (!strcmp(vmcfs.fs_cfg->policies[j].provider, p->name))
				json_object_array_add(pol,
						      vmc_json_name(vmcfs.fs_cfg->policies[j].name));
		json_object_object_add(o, "policies", pol);
		if (vmc_keyring_health(vmcfs.fs_keyring, p->name, msg, sizeof(msg))) {
			jstr(o, "health", "unreachable");
			jstr(o, "health_detail", msg);
		} else {
			jstr(o, "health", "ok");
		}
		json_object_array_add(arr, o);
	}
	json_object_object_add(result, "providers", arr);
	return 0;
}

static void test_report(void *arg, const char *line)
{
	json_object_array_add(arg, vmc_json_name(line));
}

int verb_provider_test(struct ctl_conn *c, json_object *args, json_object *result)
{
	json_object *lines = json_object_new_array();
	const char *name = NULL;
	char err[512] = "";
	int r;

	r = vmc_ctl_arg_str(args, "name", true, &name, c->cc_msg, sizeof(c->cc_msg));
	if (r) {
		json_object_put(lines);
		return r;
	}
	if (!vmc_keyring_has_provider(vmcfs.fs_keyring, name)) {
		json_object_put(lines);
		return ctl_fail(c, -ENOENT, "key provider \"%s\" is not configured", name);
	}
	r = vmc_keyring_test(vmcfs.fs_keyring, name, test_report, lines, err, sizeof(err));
	jstr(result, "provider", name);
	json_object_object_add(result, "lines", lines);
	json_object_object_add(result, "healthy", json_object_new_boolean(r == 0));
	if (r)
		jstr(result, "error", err);
	return 0;
}

/* The native provider @name's configuration, or a failure. */
static int native_conf(struct ctl_conn *c, const char *name,
		       const struct vmc_provider_conf **out, const char **keyfile)
{
	const struct vmc_provider_conf *p = vmc_config_provider(vmcfs.fs_cfg, name);

	if (!p)
		return ctl_fail(c, -ENOENT, "key provider \"%s\" is not configured", name);
	if (strcmp(p->type, "native"))
		return ctl_fail(c, -EINVAL, "key provider \"%s\" is of type %s, not native", name,
				p->type);
	*out = p;
	*keyfile = param_of(p, "key-file");
	if (!*keyfile)
		*keyfile = VMC_NATIVE_DEFAULT_KEY;
	return 0;
}

int verb_provider_create_native(struct ctl_conn *c, json_object *args, json_object *result)
{
	const struct vmc_provider_conf *p;
	const char *name = NULL, *keyfile;
	struct vmc_kek *k = NULL;
	char err[512], idhex[33];
	bool existed;
	int r;

	r = vmc_ctl_arg_str(args, "name", true, &name, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = native_conf(c, name, &p, &keyfile);
	if (r)
		return r;
	existed = access(keyfile, F_OK) == 0;
	/* Making a key of the provider creates its primary key when there is none. */
	r = vmc_keyring_create(vmcfs.fs_keyring, name, "vmcryptfs-init", &k, err, sizeof(err));
	if (r) {
		ctl_fail(c, r, "%s", err);
	} else {
		snprintf(idhex, sizeof(idhex), "%.32s", k->kek_id + 5); /* nkp1.<id>.<rand> */
		jstr(result, "provider", name);
		jstr(result, "key_file", keyfile);
		jstr(result, "primary_key_id", idhex);
		json_object_object_add(result, "created", json_object_new_boolean(!existed));
		vmc_kek_put(k);
	}
	vmc_audit(&(struct vmc_event){ .op = "provider-create-native", .uid = c->cc_uid,
				       .provider = name, .to = existed ? "existing" : "created",
				       .result = r, .detail = r ? c->cc_msg : NULL });
	return r;
}

static int read_keyfile(const char *path, uint8_t *buf)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), r = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = pread(fd, buf, VMC_NATIVE_KEY_SIZE + 1, 0);
	if (n != VMC_NATIVE_KEY_SIZE)
		r = n < 0 ? -errno : -EUCLEAN;
	close(fd);
	return r;
}

int verb_provider_backup(struct ctl_conn *c, json_object *args, json_object *result)
{
	const struct vmc_provider_conf *p;
	const char *name = NULL, *pw = NULL, *keyfile;
	uint8_t *key = vmc_secret_alloc(VMC_NATIVE_KEY_SIZE + 1), blob[VMC_BACKUP_SIZE];
	char *b64;
	int r;

	if (!key)
		return -ENOMEM;
	r = vmc_ctl_arg_str(args, "name", true, &name, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = vmc_ctl_arg_str(args, "password", true, &pw, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = native_conf(c, name, &p, &keyfile);
	if (r)
		goto out;
	r = read_keyfile(keyfile, key);
	if (r) {
		ctl_fail(c, r, "cannot read the primary key file %s: %s", keyfile,
			 r == -EUCLEAN ? "damaged" : strerror(-r));
		goto audit;
	}
	r = vmc_backup_seal(pw, strlen(pw), name, key, blob, c->cc_msg, sizeof(c->cc_msg));
	if (r)
		goto audit;
	b64 = vmc_base64_encode(blob, sizeof(blob));
	if (!b64) {
		r = -ENOMEM;
		goto audit;
	}
	jstr(result, "provider", name);
	jstr(result, "backup", b64);
	free(b64);
audit:
	vmc_audit(&(struct vmc_event){ .op = "provider-backup", .uid = c->cc_uid,
				       .provider = name, .result = r,
				       .detail = r ? c->cc_msg : NULL });
out:
	vmc_secret_free(key, VMC_NATIVE_KEY_SIZE + 1);
	return r;
}

/* Write @key to @path (created with O_EXCL beside a temporary) and its .id marker. */
static int install_keyfile(const char *path, const uint8_t *key, bool force, char *msg,
			   size_t msglen)
{
	char tmp[PATH_MAX], marker[PATH_MAX], line[34];
	uint8_t id[16];
	int fd, r = 0;

	vmc_native_key_check(key, VMC_NATIVE_KEY_SIZE, id);
	for (int i = 0; i < 16; i++)
		sprintf(line + 2 * i, "%02x", id[i]);
	line[32] = '\n';
	snprintf(tmp, sizeof(tmp), "%s.restore%d", path, (int)getpid());
	snprintf(marker, sizeof(marker), "%s.id", path);
	{
		char dir[PATH_MAX], *slash;

		snprintf(dir, sizeof(dir), "%s", path);
		slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = '\0';
			if (mkdir(dir, 0700) && errno != EEXIST) {
				snprintf(msg, msglen, "cannot create %s: %s", dir, strerror(errno));
				return -errno;
			}
		}
	}
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, key, VMC_NATIVE_KEY_SIZE) != VMC_NATIVE_KEY_SIZE || fsync(fd)) {
		r = -errno;
		snprintf(msg, msglen, "cannot write %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return r;
	}
	close(fd);
	if (force)
		r = rename(tmp, path) ? -errno : 0;
	else
		r = link(tmp, path) ? -errno : 0; /* never replaces an existing key */
	unlink(tmp);
	if (r) {
		snprintf(msg, msglen, "cannot install %s: %s", path, strerror(-r));
		return r;
	}
	snprintf(tmp, sizeof(tmp), "%s.id.restore%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, line, 33) == 33 && !fsync(fd))
			rename(tmp, marker);
		close(fd);
		unlink(tmp);
	}
	return 0;
}

int verb_provider_restore(struct ctl_conn *c, json_object *args, json_object *result)
{
	const struct vmc_provider_conf *p;
	const char *b64 = NULL, *pw = NULL, *as = NULL, *keyfile;
	uint8_t blob[VMC_BACKUP_SIZE + 4], *key = NULL, *cur = NULL, id[16];
	char provider[VMC_FMT_PROVIDER_MAX] = "", idhex[33];
	bool force = false;
	long n;
	int r;

	r = ctl_require(c, VMC_PRIV_MANAGE_KEYS, "provider-restore", NULL);
	if (!r)
		r = vmc_ctl_arg_str(args, "backup", true, &b64, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = vmc_ctl_arg_str(args, "password", true, &pw, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = vmc_ctl_arg_str(args, "provider", false, &as, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = vmc_ctl_arg_bool(args, "force", &force, c->cc_msg, sizeof(c->cc_msg));
	if (r)
		return r;
	n = vmc_base64_decode(b64, blob, sizeof(blob));
	if (n < 0)
		return ctl_fail(c, -EINVAL, "the backup is not valid base64");
	key = vmc_secret_alloc(VMC_NATIVE_KEY_SIZE);
	cur = vmc_secret_alloc(VMC_NATIVE_KEY_SIZE + 1);
	if (!key || !cur) {
		r = -ENOMEM;
		goto out;
	}
	r = vmc_backup_open(pw, strlen(pw), blob, (size_t)n, key, provider, c->cc_msg,
			    sizeof(c->cc_msg));
	if (r)
		goto audit;
	r = native_conf(c, as ? as : provider, &p, &keyfile);
	if (r)
		goto audit;
	vmc_native_key_check(key, VMC_NATIVE_KEY_SIZE, id);
	for (int i = 0; i < 16; i++)
		sprintf(idhex + 2 * i, "%02x", id[i]);
	if (read_keyfile(keyfile, cur) == 0) {
		if (!memcmp(cur, key, VMC_NATIVE_KEY_SIZE)) {
			jstr(result, "restored", "already in place");
			goto done;
		}
		if (!force) {
			r = ctl_fail(c, -EEXIST, "%s holds another primary key; restoring over it "
				     "would lock the VMs that use it (use --force to replace it)",
				     keyfile);
			goto audit;
		}
	}
	r = install_keyfile(keyfile, key, force, c->cc_msg, sizeof(c->cc_msg));
	if (r)
		goto audit;
	vmc_keyring_reset(vmcfs.fs_keyring, p->name); /* VMs locked for its lack open now */
	jstr(result, "restored", keyfile);
done:
	jstr(result, "provider", p->name);
	jstr(result, "primary_key_id", idhex);
audit:
	vmc_audit(&(struct vmc_event){ .op = "provider-restore", .uid = c->cc_uid,
				       .provider = as ? as : provider, .to = r ? NULL : idhex,
				       .result = r, .detail = r ? c->cc_msg : NULL });
out:
	vmc_secret_free(key, VMC_NATIVE_KEY_SIZE);
	vmc_secret_free(cur, VMC_NATIVE_KEY_SIZE + 1);
	return r;
}

/* --- events ----------------------------------------------------------------- */

/* Does event @ev pass the filters? @since is an ISO 8601 prefix or ""; @vm is
 * in the name encoding, as events are. */
static bool event_matches(json_object *ev, const char *since, const char *vm)
{
	json_object *v;

	if (since && since[0] && json_object_object_get_ex(ev, "time", &v) &&
	    strcmp(json_object_get_string(v), since) < 0)
		return false;
	if (vm && (!json_object_object_get_ex(ev, "vm", &v) ||
		   strcmp(json_object_get_string(v), vm)))
		return false;
	return true;
}

int verb_events(struct ctl_conn *c, json_object *args, json_object *result)
{
	const char *since = NULL, *vm = NULL;
	char vmnorm[PATH_MAX], *line = NULL, *vmenc = NULL;
	bool follow = false;
	size_t cap = 0;
	int r, count = 0;
	FILE *f;

	r = vmc_ctl_arg_str(args, "since", false, &since, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = vmc_ctl_arg_str(args, "vm", false, &vm, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = vmc_ctl_arg_bool(args, "follow", &follow, c->cc_msg, sizeof(c->cc_msg));
	if (r)
		return r;
	if (vm) { /* compare with the normalized form events carry */
		int fd;

		r = ctl_open_dir(c, vm, &fd, vmnorm, sizeof(vmnorm));
		if (r)
			return r;
		close(fd);
		vm = vmnorm;
		vmenc = vmc_name_encode(vm);
		if (!vmenc)
			return -ENOMEM;
	}
	f = vmcfs.fs_cfg->audit_log[0] ? fopen(vmcfs.fs_cfg->audit_log, "re") : NULL;
	while (f && getline(&line, &cap, f) > 0) {
		json_object *ev = json_tokener_parse(line), *wrap;

		if (!ev)
			continue;
		vmc_json_repair_utf8(ev); /* a line an earlier version wrote raw */
		if (event_matches(ev, since, vmenc)) {
			wrap = json_object_new_object();
			json_object_object_add(wrap, "event", ev);
			r = ctl_send(c, wrap);
			json_object_put(wrap);
			count++;
			if (r)
				break;
		} else {
			json_object_put(ev);
		}
	}
	free(line);
	free(vmenc);
	if (f)
		fclose(f);
	json_object_object_add(result, "events", json_object_new_int(count));
	if (!follow || r)
		return r;
	/* Follow: the audit thread writes new events to this socket. */
	r = vmc_audit_subscribe(c->cc_fd, vm);
	if (r)
		return ctl_fail(c, r, "too many followers");
	while (!ctl_stopping()) {
		struct pollfd pfd = { .fd = c->cc_fd, .events = POLLIN | POLLRDHUP };

		if (poll(&pfd, 1, 500) > 0 && (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLIN)))
			break; /* the follower hung up (it never sends anything more) */
	}
	vmc_audit_unsubscribe(c->cc_fd);
	return 0;
}

/* --- encryption mode -------------------------------------------------------- */

static int count_encrypted(void *arg, int dirfd, const char *rel)
{
	if (!faccessat(dirfd, VMC_FMT_STATE_NAME, F_OK, AT_SYMLINK_NOFOLLOW))
		(*(int *)arg)++;
	return 0;
}

int verb_encryption_mode(struct ctl_conn *c, json_object *args, json_object *result)
{
	const char *mode = NULL, *provider = NULL;
	struct vmc_kek *k = NULL;
	uint8_t uuid[16];
	int r, n = 0;

	r = vmc_ctl_arg_str(args, "mode", true, &mode, c->cc_msg, sizeof(c->cc_msg));
	if (!r)
		r = vmc_ctl_arg_str(args, "provider", false, &provider, c->cc_msg,
				    sizeof(c->cc_msg));
	if (r)
		return r;
	if (!strcmp(mode, "on")) {
		bool asked = provider != NULL;

		if (!provider)
			provider = vmcfs.fs_cfg->npolicies ? vmcfs.fs_cfg->policies[0].provider :
							     vmcfs.fs_cfg->providers[0].name;
		if (!vmc_keyring_has_provider(vmcfs.fs_keyring, provider))
			return ctl_fail(c, -ENOENT, "key provider \"%s\" is not configured", provider);
		{
			struct vmc_vmstate st;
			char err[256];

			/* Already on: the provider of its key changes by a rekey only. */
			if (asked && !vmc_vmstate_read(vmcfs.fs_root.in_fd, VMC_FMT_DATASTORE_NAME,
						       &st, err, sizeof(err)) &&
			    strcmp(st.current.provider, provider))
				return ctl_fail(c, -EEXIST, "encryption mode is already on with key "
						"provider \"%s\"; to move the datastore key, run "
						"'vmcryptfs-ctl rekey --to-provider %s MOUNTPOINT'",
						st.current.provider, provider);
		}
		r = vmc_vm_kek(vmcfs.fs_root.in_fd, ".", VMC_FMT_DATASTORE_NAME, provider, true,
			       c->cc_uid, &k, uuid);
		vmc_kek_put(k);
		if (r)
			return ctl_fail(c, r, "cannot turn encryption mode on (see the log)");
	} else if (!strcmp(mode, "off")) {
		r = vmc_vm_foreach(count_encrypted, &n);
		if (!r && n)
			r = ctl_fail(c, -EBUSY, "%d encrypted VM(s) remain: encryption mode stays on", n);
		if (!r && unlinkat(vmcfs.fs_root.in_fd, VMC_FMT_DATASTORE_NAME, 0) && errno != ENOENT)
			r = ctl_fail(c, -errno, "cannot turn encryption mode off: %s", strerror(errno));
		vmc_audit(&(struct vmc_event){ .op = "encryption-mode", .uid = c->cc_uid,
					       .from = "on", .to = "off", .result = r,
					       .detail = r ? c->cc_msg : NULL });
		if (r)
			return r;
	} else {
		return ctl_fail(c, -EINVAL, "mode must be \"on\" or \"off\"");
	}
	jstr(result, "encryption_mode", mode);
	return 0;
}

/* --- metrics ---------------------------------------------------------------- */

int verb_metrics(struct ctl_conn *c, json_object *args, json_object *result)
{
	char *text = NULL;
	int r = vmc_metrics_render(&text);

	if (r)
		return ctl_fail(c, r, "cannot render the metrics");
	jstr(result, "text", text);
	free(text);
	return 0;
}
