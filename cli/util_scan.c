// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * scan: a compliance report of a datastore, read from its backing directory
 * without a daemon and without writing anything. The survey (util_survey)
 * is shared with the keys verbs, which only count what it found.
 *
 * What is checked (vmcryptfs-util(8), SCAN, is the user's description):
 *  - per VM directory: its policy (or why it is unusable, with file and
 *    line), its key record, and every regular file below it that is not in
 *    a nested VM: class (by name and first bytes, as the daemon decides),
 *    encrypted or not, the key slots of its header;
 *  - violations: a non-empty cleartext file that the VM's policy encrypts;
 *    a non-empty cleartext home file (nvram, vswp, vmsn, vmem, vmss) in a VM
 *    that has an encrypted disk file; a damaged, truncated or unsupported
 *    header; an unreadable file; an unusable policy; a damaged key record;
 *    a provider that a header or key record names and the configuration
 *    does not define; outside VMs, a non-empty cleartext core dump while the
 *    datastore's encryption mode is on; with --verify, a KEK its provider
 *    does not have (or refuses), a slot its KEK does not open, and a key
 *    record whose key check value does not match the provider's key;
 *  - warnings: a shallow rekey or a conversion left unfinished, a damaged
 *    key slot beside a usable one, a key record without a policy, leftover
 *    files of vmcryptfs, a provider that could not be reached to verify.
 */
#include "util_cli.h"
#include "vmc_class.h"
#include "vmc_crypto.h"
#include "vmc_pwkek.h"
#include "vmc_vmstate.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One VM directory while the survey runs. */
struct scan_vm {
	char rel[PATH_MAX];
	json_object *j;           /* its entry in "vms" (owned by the array) */
	bool has_policy;          /* a usable policy in @pol */
	struct vmc_vm_policy pol;
	char enc_disk[PATH_MAX];  /* an encrypted disk file, "" if none */
	json_object *clear_home;  /* paths of non-empty cleartext home files */
};

struct scan {
	const struct vmc_config *cfg;
	struct vmc_keyring *kr;   /* with --verify */
	bool verify;
	bool mode_on;             /* the datastore record exists */
	json_object *root, *vms, *outside, *violations, *warnings;
	struct scan_vm *vm;
	size_t nvm, capvm;
	long files, encrypted, cleartext;
};

__attribute__((format(printf, 5, 6)))
static void note(struct scan *s, bool violation, const char *kind, const char *vm_file[2],
		 const char *fmt, ...)
{
	json_object *o = json_object_new_object();
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_object_add(o, "kind", json_object_new_string(kind));
	json_object_object_add(o, "vm", vm_file[0] ? json_object_new_string(vm_file[0]) : NULL);
	json_object_object_add(o, "file", vm_file[1] ? json_object_new_string(vm_file[1]) : NULL);
	json_object_object_add(o, "message", json_object_new_string(msg));
	json_object_array_add(violation ? s->violations : s->warnings, o);
}

#define VIOLATION(s, kind, vm, file, ...) \
	note(s, true, kind, (const char *[2]){ vm, file }, __VA_ARGS__)
#define WARNING(s, kind, vm, file, ...) \
	note(s, false, kind, (const char *[2]){ vm, file }, __VA_ARGS__)

static struct scan_vm *vm_find(struct scan *s, const char *rel)
{
	if (!rel)
		return NULL;
	for (size_t i = s->nvm; i-- > 0;)
		if (!strcmp(s->vm[i].rel, rel))
			return &s->vm[i];
	return NULL;
}

static bool provider_known(struct scan *s, const char *name)
{
	return vmc_config_provider(s->cfg, name) != NULL;
}

/*
 * --verify of one KEK: can its provider give it? 0, or the keyring's error
 * (noted: a violation, or a warning when the provider is unreachable).
 */
static int verify_kek(struct scan *s, const char *vm, const char *file, const char *provider,
		      const char *kek_id, struct vmc_kek **out)
{
	char err[512];
	int r = vmc_keyring_get(s->kr, provider, kek_id, out, err, sizeof(err));

	if (r && vmc_kp_error_transient(r))
		WARNING(s, "not-verified", vm, file, "cannot verify key %s: %s", kek_id, err);
	else if (r)
		VIOLATION(s, "key-missing", vm, file, "%s", err);
	return r;
}

static json_object *kekref_json(const struct vmc_kekref *k)
{
	json_object *o;

	if (!k->set)
		return NULL;
	o = json_object_new_object();
	json_object_object_add(o, "provider", json_object_new_string(k->provider));
	json_object_object_add(o, "kek_id", json_object_new_string(k->kek_id));
	return o;
}

/* Check the key record @name of @dirfd; returns its JSON (NULL if there is none). */
static json_object *check_record(struct scan *s, int dirfd, const char *name, const char *vm,
				 const char *path)
{
	struct vmc_vmstate st;
	json_object *o;
	char err[512], id[33];
	int r = vmc_vmstate_read(dirfd, name, &st, err, sizeof(err));

	if (r == -ENOENT)
		return NULL;
	o = json_object_new_object();
	json_object_object_add(o, "file", json_object_new_string(path));
	if (r) {
		json_object_object_add(o, "error", json_object_new_string(err));
		VIOLATION(s, "damaged-record", vm, path, "key record unusable: %s", err);
		return o;
	}
	for (int i = 0; i < 16; i++)
		sprintf(id + 2 * i, "%02x", st.vm_uuid[i]);
	json_object_object_add(o, "state", json_object_new_string(
		st.state == VMC_FMT_VMSTATE_REKEY ? "rekey" : "steady"));
	json_object_object_add(o, "vm_id", json_object_new_string(id));
	json_object_object_add(o, "seq", json_object_new_int64((int64_t)st.seq));
	json_object_object_add(o, "current", kekref_json(&st.current));
	json_object_object_add(o, "next", kekref_json(&st.next));
	if (st.state == VMC_FMT_VMSTATE_REKEY)
		WARNING(s, "rekey-in-progress", vm, path, "a shallow rekey to key %s of provider "
			"\"%s\" was not finished: run 'vmcryptfs-ctl rekey %s' again",
			st.next.kek_id, st.next.provider, vm ? vm : "--all");
	for (int i = 0; i < 2; i++) {
		const struct vmc_kekref *k = i ? &st.next : &st.current;
		struct vmc_kek *kek = NULL;
		uint8_t kcv[32];

		if (!k->set)
			continue;
		if (!provider_known(s, k->provider)) {
			VIOLATION(s, "unknown-provider", vm, path, "key record names provider \"%s\" "
				  "(key %s), which the configuration %s does not define", k->provider,
				  k->kek_id, s->cfg->source);
			continue;
		}
		if (!s->verify || verify_kek(s, vm, path, k->provider, k->kek_id, &kek))
			continue;
		if (vmc_vmstate_key_check(kek->kek_check_key, st.vm_uuid, k->provider, k->kek_id,
					  kcv) || !vmc_memeq(kcv, k->key_check, sizeof(kcv)))
			VIOLATION(s, "key-check-mismatch", vm, path, "provider \"%s\" gives a key for "
				  "%s that does not match the key record's check value", k->provider,
				  k->kek_id);
		vmc_kek_put(kek);
	}
	return o;
}

static int on_vm(void *arg, int dirfd, const char *rel)
{
	struct scan *s = arg;
	struct scan_vm *v;
	json_object *rec;
	char err[1024], path[PATH_MAX + 32];
	int r;

	if (s->nvm == s->capvm) {
		struct scan_vm *n = realloc(s->vm, (s->capvm ? s->capvm * 2 : 16) * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->vm = n;
		s->capvm = s->capvm ? s->capvm * 2 : 16;
	}
	v = &s->vm[s->nvm++];
	memset(v, 0, sizeof(*v));
	snprintf(v->rel, sizeof(v->rel), "%s", rel);
	v->clear_home = json_object_new_array();
	v->j = json_object_new_object();
	json_object_array_add(s->vms, v->j);
	json_object_object_add(v->j, "vm", json_object_new_string(rel));
	r = vmc_policy_read_at(dirfd, rel, s->cfg, &v->pol, err, sizeof(err));
	if (!r) {
		v->has_policy = true;
		json_object_object_add(v->j, "policy", json_object_new_string(v->pol.policy));
		json_object_object_add(v->j, "policy_disks", json_object_new_boolean(
			vmc_policy_encrypts_disks(s->cfg, &v->pol)));
	} else {
		json_object_object_add(v->j, "policy", NULL);
		if (r != -ENOENT) {
			json_object_object_add(v->j, "policy_error", json_object_new_string(err));
			VIOLATION(s, "policy-error", rel, NULL, "%s", err);
		}
	}
	if (!strcmp(rel, "."))
		snprintf(path, sizeof(path), "%s", VMC_FMT_STATE_NAME);
	else
		snprintf(path, sizeof(path), "%s/%s", rel, VMC_FMT_STATE_NAME);
	rec = check_record(s, dirfd, VMC_FMT_STATE_NAME, rel, path);
	json_object_object_add(v->j, "key_record", rec);
	if (rec && r == -ENOENT)
		WARNING(s, "no-policy", rel, NULL, "a key record but no %s: files of this VM that "
			"are written from now on stay cleartext", VMC_FMT_POLICY_NAME);
	json_object_object_add(v->j, "files", json_object_new_array());
	return 0;
}

static int on_reserved(void *arg, const char *name, const char *rel, const char *vm)
{
	struct scan *s = arg;

	size_t n = strlen(name);

	if (!strcmp(name, VMC_FMT_JOURNAL_NAME) || !strcmp(name, VMC_FMT_CONV_TMP_NAME))
		WARNING(s, "conversion-in-progress", vm, rel, "an encrypt, decrypt or deep rekey "
			"was interrupted (%s): run the same vmcryptfs-ctl command again", name);
	else if (n > 4 && !strcmp(name + n - 4, ".tmp"))
		WARNING(s, "leftover", vm, rel, "the temporary copy of an interrupted atomic "
			"replacement (the daemon replaces it at its next write; it can be removed)");
	/* Other names of vmcryptfs' own are its business, not the scan's. */
	return 0;
}

static int on_error(void *arg, const char *rel, const char *vm, int err)
{
	struct scan *s = arg;

	VIOLATION(s, "unreadable", vm, rel, "cannot look into this directory: %s",
		  err == -ELOOP ? "too deep" : strerror(-err));
	return 0;
}

/* Header checks of an encrypted file that opened (verdict 0). */
static void check_slots(struct scan *s, const struct util_file *f, const char *vm,
			const char *rel, json_object *keys)
{
	uint8_t *dek = s->verify ? vmc_secret_alloc(VMC_FMT_DEK_LEN) : NULL;

	for (unsigned int i = 0; i < f->rep.nproblems; i++)
		WARNING(s, "damaged-slot", vm, rel, "%s (the file opens with another slot)",
			f->rep.problems[i]);
	for (int i = 0; i < VMC_FMT_NSLOTS; i++) {
		const struct vmc_hdr_slot *sl = &f->hdr.slots[i];
		struct vmc_kek *kek = NULL;
		json_object *k;

		if (sl->status != VMC_SLOT_OK)
			continue;
		k = json_object_new_object();
		json_object_object_add(k, "slot", json_object_new_int(i));
		json_object_object_add(k, "provider", json_object_new_string(sl->provider));
		json_object_object_add(k, "kek_id", json_object_new_string(sl->kek_id));
		json_object_object_add(k, "generation", json_object_new_int64((int64_t)sl->generation));
		json_object_array_add(keys, k);
		if (!provider_known(s, sl->provider)) {
			if (!strcmp(sl->provider, VMC_PWKEK_PROVIDER))
				VIOLATION(s, "unknown-provider", vm, rel, "slot %d is sealed under a "
					  "password (a coredump export): the daemon cannot open it", i);
			else
				VIOLATION(s, "unknown-provider", vm, rel, "slot %d names provider \"%s\" "
					  "(key %s), which the configuration %s does not define", i,
					  sl->provider, sl->kek_id, s->cfg->source);
			continue;
		}
		if (!dek || verify_kek(s, vm, rel, sl->provider, sl->kek_id, &kek))
			continue;
		if (vmc_hdr_unseal(&f->hdr, i, kek->kek_wrap_key, dek))
			VIOLATION(s, "slot-rejected", vm, rel, "key %s of provider \"%s\" does not open "
				  "slot %d (wrong key or tampered header)", sl->kek_id, sl->provider, i);
		vmc_kek_put(kek);
	}
	vmc_secret_free(dek, VMC_FMT_DEK_LEN);
}

static int on_file(void *arg, int dirfd, const char *name, const char *rel, const char *vm)
{
	struct scan *s = arg;
	struct scan_vm *v = vm_find(s, vm);
	json_object *o = json_object_new_object(), *files;
	struct util_file f;
	enum vmc_class cls;
	const char *state;
	char err[1024];
	int r;

	s->files++;
	json_object_object_add(o, "path", json_object_new_string(rel));
	json_object_object_get_ex(v ? v->j : s->outside, "files", &files);
	json_object_array_add(files, o);
	r = util_file_open(&f, dirfd, name, rel, true, err, sizeof(err));
	if (r) {
		json_object_object_add(o, "state", json_object_new_string("unreadable"));
		json_object_object_add(o, "error", json_object_new_string(err));
		VIOLATION(s, "unreadable", vm, rel, "%s", err);
		return 0;
	}
	cls = vmc_class_resolve(vmc_class_of_name(s->cfg, name), f.first, f.nfirst);
	json_object_object_add(o, "class", json_object_new_string(vmc_class_name(cls)));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)f.size));
	if (f.encrypted) {
		state = f.verdict == -EPROTONOSUPPORT ? "unsupported" : f.verdict ? "damaged" :
										      "encrypted";
		if (f.verdict) {
			char all[1024] = "";
			size_t n = 0;

			for (unsigned int i = 0; i < f.rep.nproblems && n < sizeof(all); i++)
				n += (size_t)snprintf(all + n, sizeof(all) - n, "%s%s", i ? "; " : "",
						      f.rep.problems[i]);
			json_object_object_add(o, "error", json_object_new_string(f.rep.verdict_msg));
			VIOLATION(s, f.verdict == -EPROTONOSUPPORT ? "unsupported-header" :
				  "damaged-header", vm, rel, "%s (%s)", f.rep.verdict_msg, all);
		} else {
			json_object *keys = json_object_new_array();

			s->encrypted++;
			json_object_object_add(o, "header_class", json_object_new_string(
				vmc_class_fmt_name(f.hdr.file_class)));
			json_object_object_add(o, "keys", keys);
			check_slots(s, &f, vm, rel, keys);
			if (v && cls == VMC_CLASS_DISK && !v->enc_disk[0])
				snprintf(v->enc_disk, sizeof(v->enc_disk), "%s", rel);
		}
	} else {
		s->cleartext++;
		state = f.size ? "cleartext" : "empty";
		if (f.size && v && v->has_policy && vmc_policy_encrypts(s->cfg, &v->pol, cls))
			VIOLATION(s, "cleartext-file", vm, rel, "cleartext, but the VM's policy \"%s\" "
				  "encrypts %s files: encrypt the VM with vmcryptfs-ctl encrypt",
				  v->pol.policy, vmc_class_name(cls));
		if (f.size && v && cls == VMC_CLASS_HOME)
			json_object_array_add(v->clear_home, json_object_new_string(rel));
		if (f.size && !v && cls == VMC_CLASS_COREDUMP && s->mode_on)
			VIOLATION(s, "cleartext-coredump", NULL, rel, "a cleartext core dump while the "
				  "datastore's encryption mode is on");
	}
	json_object_object_add(o, "state", json_object_new_string(state));
	util_file_close(&f);
	return 0;
}

/* After the walk: the rule that an encrypted disk needs encrypted home files. */
static void check_home_rule(struct scan *s)
{
	for (size_t i = 0; i < s->nvm; i++) {
		struct scan_vm *v = &s->vm[i];

		if (v->enc_disk[0])
			for (size_t j = 0; j < json_object_array_length(v->clear_home); j++)
				VIOLATION(s, "cleartext-home", v->rel, json_object_get_string(
					json_object_array_get_idx(v->clear_home, j)),
					"a cleartext home file in a VM whose disk %s is encrypted",
					v->enc_disk);
		json_object_put(v->clear_home);
	}
}

json_object *util_survey(const char *datastore, bool verify, int *status, char *err,
			 size_t errlen)
{
	static const struct util_walk_ops ops = {
		.vm = on_vm, .file = on_file, .reserved = on_reserved, .error = on_error,
	};
	struct scan s = { .verify = verify };
	json_object *rec, *sum;
	int fd, r;

	*status = 0;
	r = util_config(&s.cfg, err, errlen);
	if (!r && verify)
		r = util_keyring(&s.kr, err, errlen);
	if (r) {
		*status = r;
		return NULL;
	}
	fd = util_open_datastore(datastore, err, errlen);
	if (fd < 0) {
		*status = fd;
		return NULL;
	}
	s.root = json_object_new_object();
	s.vms = json_object_new_array();
	s.outside = json_object_new_object();
	s.violations = json_object_new_array();
	s.warnings = json_object_new_array();
	json_object_object_add(s.outside, "files", json_object_new_array());
	json_object_object_add(s.root, "datastore", json_object_new_string(datastore));
	json_object_object_add(s.root, "configuration", json_object_new_string(s.cfg->source));
	json_object_object_add(s.root, "verified", json_object_new_boolean(verify));
	rec = check_record(&s, fd, VMC_FMT_DATASTORE_NAME, NULL, VMC_FMT_DATASTORE_NAME);
	s.mode_on = rec != NULL;
	json_object_object_add(s.root, "encryption_mode", json_object_new_boolean(s.mode_on));
	json_object_object_add(s.root, "datastore_record", rec);
	r = util_walk(fd, &ops, &s);
	close(fd);
	check_home_rule(&s);
	free(s.vm);
	json_object_object_add(s.root, "vms", s.vms);
	json_object_object_add(s.root, "outside", s.outside);
	json_object_object_add(s.root, "violations", s.violations);
	json_object_object_add(s.root, "warnings", s.warnings);
	sum = json_object_new_object();
	json_object_object_add(sum, "vms", json_object_new_int64((int64_t)s.nvm));
	json_object_object_add(sum, "files", json_object_new_int64(s.files));
	json_object_object_add(sum, "encrypted", json_object_new_int64(s.encrypted));
	json_object_object_add(sum, "cleartext", json_object_new_int64(s.cleartext));
	json_object_object_add(sum, "violations", json_object_new_int64(
		(int64_t)json_object_array_length(s.violations)));
	json_object_object_add(sum, "warnings", json_object_new_int64(
		(int64_t)json_object_array_length(s.warnings)));
	json_object_object_add(s.root, "summary", sum);
	json_object_object_add(s.root, "compliant", json_object_new_boolean(
		!json_object_array_length(s.violations)));
	if (r) {
		snprintf(err, errlen, "%s: %s", datastore, strerror(-r));
		*status = r;
	}
	return s.root;
}

/* --- the human report ---------------------------------------------------------- */

static const char *js(json_object *o, const char *k)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	return json_object_get_string(v);
}

static long long ji(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? (long long)json_object_get_int64(v) : 0;
}

static void print_ref(const char *label, json_object *rec)
{
	json_object *cur, *next;

	if (!rec) {
		printf("  %-13s none\n", label);
		return;
	}
	if (js(rec, "error")) {
		printf("  %-13s UNUSABLE: %s\n", label, js(rec, "error"));
		return;
	}
	json_object_object_get_ex(rec, "current", &cur);
	json_object_object_get_ex(rec, "next", &next);
	printf("  %-13s %s, provider '%s' keyID '%s'", label, js(rec, "state"),
	       js(cur, "provider"), js(cur, "kek_id"));
	if (next && !json_object_is_type(next, json_type_null))
		printf(", next provider '%s' keyID '%s'", js(next, "provider"), js(next, "kek_id"));
	putchar('\n');
}

static void print_files(json_object *files)
{
	for (size_t i = 0; i < json_object_array_length(files); i++) {
		json_object *f = json_object_array_get_idx(files, i), *keys;

		printf("  %-11s %-9s %s", js(f, "state"), js(f, "class") ? js(f, "class") : "-",
		       js(f, "path"));
		if (json_object_object_get_ex(f, "keys", &keys))
			for (size_t k = 0; k < json_object_array_length(keys); k++) {
				json_object *key = json_object_array_get_idx(keys, k);

				printf("%s%s/%s", k ? ", " : "  ", js(key, "provider"),
				       js(key, "kek_id"));
			}
		putchar('\n');
	}
}

/* The notes of @list about VM @vm (NULL: outside VMs). */
static void print_notes(json_object *list, const char *label, const char *vm)
{
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *n = json_object_array_get_idx(list, i);
		const char *nvm = js(n, "vm"), *file = js(n, "file");

		if (vm ? !nvm || strcmp(nvm, vm) : nvm != NULL)
			continue;
		printf("  %-11s %s: %s%s%s\n", label, js(n, "kind"), file ? file : "",
		       file ? ": " : "", js(n, "message"));
	}
}

static void print_report(json_object *r)
{
	json_object *vms, *outside, *files, *viol, *warn, *sum;
	bool mode = false;

	json_object_object_get_ex(r, "vms", &vms);
	json_object_object_get_ex(r, "outside", &outside);
	json_object_object_get_ex(r, "violations", &viol);
	json_object_object_get_ex(r, "warnings", &warn);
	json_object_object_get_ex(r, "summary", &sum);
	{
		json_object *v;

		mode = json_object_object_get_ex(r, "encryption_mode", &v) &&
		       json_object_get_boolean(v);
	}
	printf("datastore        %s\n", js(r, "datastore"));
	printf("configuration    %s\n", js(r, "configuration"));
	printf("encryption mode  %s\n", mode ? "on" : "off");
	for (size_t i = 0; i < json_object_array_length(vms); i++) {
		json_object *vm = json_object_array_get_idx(vms, i), *rec;

		printf("\nVM %s\n", js(vm, "vm"));
		if (js(vm, "policy"))
			printf("  %-13s %s (%s)\n", "policy", js(vm, "policy"),
			       ji(vm, "policy_disks") ? "home files and disks" : "home files only");
		else
			printf("  %-13s %s\n", "policy", js(vm, "policy_error") ? "UNUSABLE" : "none");
		json_object_object_get_ex(vm, "key_record", &rec);
		print_ref("key record", rec);
		json_object_object_get_ex(vm, "files", &files);
		print_files(files);
		print_notes(viol, "VIOLATION", js(vm, "vm"));
		print_notes(warn, "warning", js(vm, "vm"));
	}
	json_object_object_get_ex(outside, "files", &files);
	printf("\noutside VMs\n");
	if (mode) {
		json_object *rec;

		json_object_object_get_ex(r, "datastore_record", &rec);
		print_ref("datastore key", rec);
	}
	print_files(files);
	print_notes(viol, "VIOLATION", NULL);
	print_notes(warn, "warning", NULL);
	printf("\nsummary: %lld VMs, %lld files, %lld encrypted, %lld cleartext, "
	       "%lld violations, %lld warnings: %s\n", ji(sum, "vms"), ji(sum, "files"),
	       ji(sum, "encrypted"), ji(sum, "cleartext"), ji(sum, "violations"),
	       ji(sum, "warnings"), ji(sum, "violations") ? "NOT COMPLIANT" : "compliant");
}

int util_cmd_scan(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "verify", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char help[] =
		"usage: vmcryptfs-util scan [--verify] DATASTORE\n"
		"A compliance report of the backing directory DATASTORE, per VM directory: its\n"
		"policy and key record, and for each file its class and whether it is encrypted\n"
		"(and under which keys); then the violations and warnings, and a summary line.\n"
		"--verify also asks the key providers (--config) for every KEK and opens every\n"
		"key slot. Reads only; never follows a symbolic link.\n"
		"Exit status: 0 compliant, 3 not compliant, 4 DATASTORE missing, 1 other errors.\n";
	bool verify = false;
	json_object *rep, *v;
	char err[1024];
	int c, status;
	bool ok;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			verify = true;
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			return UTIL_EXIT_USAGE;
		}
	}
	if (argc - optind != 1)
		return util_usage_error("scan: name one DATASTORE (a backing directory)");
	rep = util_survey(argv[optind], verify, &status, err, sizeof(err));
	if (!rep) {
		util_err("%s", err);
		return util_exit_code(status) == UTIL_EXIT_NOTFOUND ? UTIL_EXIT_NOTFOUND :
									UTIL_EXIT_FAIL;
	}
	ok = json_object_object_get_ex(rep, "compliant", &v) && json_object_get_boolean(v);
	if (util_g.json) {
		util_print_json(rep);
	} else {
		print_report(rep);
		json_object_put(rep);
	}
	if (status) {
		util_err("%s", err);
		return UTIL_EXIT_FAIL;
	}
	return ok ? UTIL_EXIT_OK : UTIL_EXIT_NONCOMPLIANT;
}
