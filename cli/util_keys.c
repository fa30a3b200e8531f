// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * keys in-use and keys unused: which key-encryption keys the scanned
 * datastores depend on, so that nobody retires a key that is still needed,
 * and which keys vmcryptfs made on a provider that none of them uses.
 *
 * A key is in use when a usable slot of a file header names it (every slot:
 * during a shallow rekey a file depends on both of its keys), or a key
 * record (a VM's, or the datastore's) names it as current or next key. The
 * data comes from the same survey as scan (util_survey). Files whose header
 * cannot be read are listed apart: the keys they depend on are not known.
 *
 * keys unused needs the provider to list its keys (vmc_keyring_list, the
 * optional list_keys plugin operation); the native provider derives its keys
 * from its primary key and keeps no list, so it cannot answer.
 */
#include "util_cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The label prefix of the keys the daemon creates (fs/vm.c, fs/rekey.c). */
#define VMC_KEY_LABEL_PREFIX "vmcryptfs-"

struct usage {
	json_object *keys;       /* "provider\nkek_id" -> {provider, kek_id, files, vms[]} */
	json_object *incomplete; /* files whose keys are unknown */
	const char *datastore;
};

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

/* Count one use of KEK @provider/@kek_id by @vm (NULL: outside VMs): a file, or @role. */
static void use(struct usage *u, const char *provider, const char *kek_id, const char *vm,
		const char *role)
{
	char key[VMC_FMT_PROVIDER_MAX + VMC_FMT_KEKID_MAX + 2];
	json_object *e, *vms, *ve = NULL, *v;

	snprintf(key, sizeof(key), "%s\n%s", provider, kek_id);
	if (!json_object_object_get_ex(u->keys, key, &e)) {
		e = json_object_new_object();
		json_object_object_add(e, "provider", json_object_new_string(provider));
		json_object_object_add(e, "kek_id", json_object_new_string(kek_id));
		json_object_object_add(e, "files", json_object_new_int64(0));
		json_object_object_add(e, "vms", json_object_new_array());
		json_object_object_add(u->keys, key, e);
	}
	json_object_object_get_ex(e, "vms", &vms);
	for (size_t i = 0; i < json_object_array_length(vms) && !ve; i++) {
		json_object *c = json_object_array_get_idx(vms, i);
		const char *cvm = js(c, "vm");

		if (!strcmp(js(c, "datastore"), u->datastore) &&
		    ((!vm && !cvm) || (vm && cvm && !strcmp(vm, cvm))))
			ve = c;
	}
	if (!ve) {
		ve = json_object_new_object();
		json_object_object_add(ve, "datastore", json_object_new_string(u->datastore));
		json_object_object_add(ve, "vm", vm ? json_object_new_string(vm) : NULL);
		json_object_object_add(ve, "files", json_object_new_int64(0));
		json_object_object_add(ve, "records", json_object_new_array());
		json_object_array_add(vms, ve);
	}
	if (role) {
		json_object_object_get_ex(ve, "records", &v);
		json_object_array_add(v, json_object_new_string(role));
		return;
	}
	json_object_object_get_ex(e, "files", &v);
	json_object_set_int64(v, json_object_get_int64(v) + 1);
	json_object_object_get_ex(ve, "files", &v);
	json_object_set_int64(v, json_object_get_int64(v) + 1);
}

static void use_record(struct usage *u, json_object *rec, const char *vm, const char *what)
{
	char role[32];

	for (int i = 0; i < 2 && rec && !json_object_is_type(rec, json_type_null); i++) {
		json_object *ref;

		if (!json_object_object_get_ex(rec, i ? "next" : "current", &ref) ||
		    json_object_is_type(ref, json_type_null))
			continue;
		snprintf(role, sizeof(role), "%s%s", i ? "next " : "", what);
		use(u, js(ref, "provider"), js(ref, "kek_id"), vm, role);
	}
	if (js(rec, "error")) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "datastore", json_object_new_string(u->datastore));
		json_object_object_add(o, "file", json_object_new_string(js(rec, "file")));
		json_object_object_add(o, "error", json_object_new_string(js(rec, "error")));
		json_object_array_add(u->incomplete, o);
	}
}

static void use_files(struct usage *u, json_object *files, const char *vm)
{
	for (size_t i = 0; i < json_object_array_length(files); i++) {
		json_object *f = json_object_array_get_idx(files, i), *keys;
		const char *state = js(f, "state");

		if (json_object_object_get_ex(f, "keys", &keys)) {
			for (size_t k = 0; k < json_object_array_length(keys); k++) {
				json_object *key = json_object_array_get_idx(keys, k);

				use(u, js(key, "provider"), js(key, "kek_id"), vm, NULL);
			}
		} else if (!strcmp(state, "damaged") || !strcmp(state, "unsupported") ||
			   !strcmp(state, "unreadable")) {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "datastore", json_object_new_string(u->datastore));
			json_object_object_add(o, "file", json_object_new_string(js(f, "path")));
			json_object_object_add(o, "error", json_object_new_string(
				js(f, "error") ? js(f, "error") : state));
			json_object_array_add(u->incomplete, o);
		}
	}
}

static int by_key(const void *a, const void *b)
{
	json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b;
	int c = strcmp(js(x, "provider"), js(y, "provider"));

	return c ? c : strcmp(js(x, "kek_id"), js(y, "kek_id"));
}

/* Survey every datastore of @argv and count the keys: the sorted array of keys. */
static int collect(int argc, char **argv, json_object **keys, json_object **incomplete)
{
	struct usage u = { .keys = json_object_new_object(),
			   .incomplete = json_object_new_array() };
	json_object *arr = json_object_new_array();
	char err[1024];
	int status;

	for (int i = 0; i < argc; i++) {
		json_object *rep = util_survey(argv[i], false, &status, err, sizeof(err)), *x, *vms;

		if (!rep || status) {
			util_err("%s", err);
			json_object_put(rep);
			json_object_put(u.keys);
			json_object_put(u.incomplete);
			json_object_put(arr);
			return util_exit_code(status) == UTIL_EXIT_NOTFOUND ? UTIL_EXIT_NOTFOUND :
									       UTIL_EXIT_FAIL;
		}
		u.datastore = argv[i];
		json_object_object_get_ex(rep, "datastore_record", &x);
		use_record(&u, x, NULL, "datastore key");
		json_object_object_get_ex(rep, "vms", &vms);
		for (size_t v = 0; v < json_object_array_length(vms); v++) {
			json_object *vm = json_object_array_get_idx(vms, v), *files;

			json_object_object_get_ex(vm, "key_record", &x);
			use_record(&u, x, js(vm, "vm"), "VM key");
			json_object_object_get_ex(vm, "files", &files);
			use_files(&u, files, js(vm, "vm"));
		}
		json_object_object_get_ex(rep, "outside", &x);
		json_object_object_get_ex(x, "files", &x);
		use_files(&u, x, NULL);
		json_object_put(rep);
	}
	json_object_object_foreach(u.keys, name, val) {
		(void)name;
		json_object_array_add(arr, json_object_get(val));
	}
	json_object_put(u.keys);
	json_object_array_sort(arr, by_key);
	*keys = arr;
	*incomplete = u.incomplete;
	return 0;
}

static void warn_incomplete(json_object *incomplete)
{
	size_t n = json_object_array_length(incomplete);

	for (size_t i = 0; i < n; i++) {
		json_object *o = json_object_array_get_idx(incomplete, i);

		util_err("warning: %s/%s: keys unknown: %s", js(o, "datastore"), js(o, "file"),
			 js(o, "error"));
	}
}

static void print_in_use(json_object *keys, bool several)
{
	printf("%-12s %-72s %6s  %s\n", "PROVIDER", "KEK ID", "FILES", "USED BY");
	for (size_t i = 0; i < json_object_array_length(keys); i++) {
		json_object *k = json_object_array_get_idx(keys, i), *vms;

		printf("%-12s %-72s %6lld  ", js(k, "provider"), js(k, "kek_id"), ji(k, "files"));
		json_object_object_get_ex(k, "vms", &vms);
		for (size_t v = 0; v < json_object_array_length(vms); v++) {
			json_object *e = json_object_array_get_idx(vms, v), *recs;
			const char *sep = " (";

			printf("%s", v ? "; " : "");
			if (several)
				printf("%s:", js(e, "datastore"));
			printf("%s", js(e, "vm") ? js(e, "vm") : "(outside VMs)");
			if (ji(e, "files")) {
				printf("%s%lld file%s", sep, ji(e, "files"), ji(e, "files") == 1 ? "" : "s");
				sep = ", ";
			}
			json_object_object_get_ex(e, "records", &recs);
			for (size_t r = 0; r < json_object_array_length(recs); r++) {
				printf("%s%s", sep, json_object_get_string(
					json_object_array_get_idx(recs, r)));
				sep = ", ";
			}
			if (strcmp(sep, " ("))
				putchar(')');
		}
		putchar('\n');
	}
}

static int cmd_in_use(int argc, char **argv)
{
	static const char help[] =
		"usage: vmcryptfs-util keys in-use DATASTORE...\n"
		"Every key-encryption key (per provider) that the datastores (backing\n"
		"directories) depend on: named by a usable key slot of a file header, or by a\n"
		"key record (a VM's current or next key, the datastore's key); with the number\n"
		"of files and the VMs that use it. Files whose header cannot be read are\n"
		"reported on stderr (their keys are unknown). Reads only.\n";
	json_object *keys, *incomplete;
	int r;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(help, stdout);
		return 0;
	}
	if (argc < 2)
		return util_usage_error("keys in-use: name at least one DATASTORE");
	r = collect(argc - 1, argv + 1, &keys, &incomplete);
	if (r)
		return r;
	warn_incomplete(incomplete);
	if (util_g.json) {
		json_object *o = json_object_new_object(), *ds = json_object_new_array();

		for (int i = 1; i < argc; i++)
			json_object_array_add(ds, json_object_new_string(argv[i]));
		json_object_object_add(o, "datastores", ds);
		json_object_object_add(o, "keys", keys);
		json_object_object_add(o, "incomplete", incomplete);
		util_print_json(o);
		return 0;
	}
	print_in_use(keys, argc > 2);
	json_object_put(keys);
	json_object_put(incomplete);
	return 0;
}

struct listing {
	const char *provider;
	json_object *in_use;   /* kek ids of @provider in use: id -> true */
	json_object *unused;   /* [{kek_id, label}] */
	long listed;
};

static int listed_key(void *arg, const char *id, const char *label)
{
	struct listing *l = arg;
	json_object *o;

	l->listed++;
	if (json_object_object_get_ex(l->in_use, id, NULL))
		return 0;
	o = json_object_new_object();
	json_object_object_add(o, "kek_id", json_object_new_string(id));
	json_object_object_add(o, "label", label ? json_object_new_string(label) : NULL);
	json_object_array_add(l->unused, o);
	return 0;
}

static int cmd_unused(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "provider", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char help[] =
		"usage: vmcryptfs-util keys unused --provider NAME DATASTORE...\n"
		"The keys that vmcryptfs created on provider NAME (labels vmcryptfs-...) and\n"
		"that none of the datastores uses (see keys in-use): candidates for retiring,\n"
		"once every datastore that could use them has been scanned. The provider must\n"
		"be able to list its keys (a KMIP provider); a native provider derives its keys\n"
		"and keeps no list: not supported.\n";
	struct listing l = { 0 };
	struct vmc_keyring *kr;
	const char *type, *version;
	json_object *keys, *incomplete;
	char err[1024];
	uint32_t flags;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			l.provider = optarg;
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			return UTIL_EXIT_USAGE;
		}
	}
	if (!l.provider || optind >= argc)
		return util_usage_error("keys unused: give --provider NAME and at least one "
					"DATASTORE");
	r = util_keyring(&kr, err, sizeof(err));
	if (r) {
		util_err("%s", err);
		return UTIL_EXIT_FAIL;
	}
	if (vmc_keyring_provider_info(kr, l.provider, &type, &version, &flags)) {
		util_err("key provider \"%s\" is not defined in the configuration", l.provider);
		return UTIL_EXIT_NOTFOUND;
	}
	if (!strcmp(type, "native")) {
		util_err("keys unused: not supported for native providers: \"%s\" derives its keys "
			 "from its primary key and keeps no list of them (an unused native key id "
			 "costs nothing and needs no retiring)", l.provider);
		return UTIL_EXIT_FAIL;
	}
	r = collect(argc - optind, argv + optind, &keys, &incomplete);
	if (r)
		return r;
	l.in_use = json_object_new_object();
	l.unused = json_object_new_array();
	for (size_t i = 0; i < json_object_array_length(keys); i++) {
		json_object *k = json_object_array_get_idx(keys, i);

		if (!strcmp(js(k, "provider"), l.provider))
			json_object_object_add(l.in_use, js(k, "kek_id"), json_object_new_boolean(1));
	}
	r = vmc_keyring_list(kr, l.provider, VMC_KEY_LABEL_PREFIX, listed_key, &l, err,
			     sizeof(err));
	if (r) {
		if (r == -EOPNOTSUPP)
			util_err("keys unused: not supported for provider \"%s\": its plugin (type %s) "
				 "cannot list keys (no list_keys operation)", l.provider, type);
		else
			util_err("%s", err);
		r = util_exit_code(r);
		goto out;
	}
	warn_incomplete(incomplete);
	if (util_g.json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "provider", json_object_new_string(l.provider));
		json_object_object_add(o, "listed", json_object_new_int64(l.listed));
		json_object_object_add(o, "in_use", json_object_new_int64(
			json_object_object_length(l.in_use)));
		json_object_object_add(o, "unused", json_object_get(l.unused));
		json_object_object_add(o, "incomplete", json_object_get(incomplete));
		util_print_json(o);
	} else {
		for (size_t i = 0; i < json_object_array_length(l.unused); i++) {
			json_object *k = json_object_array_get_idx(l.unused, i);

			printf("%-72s %s\n", js(k, "kek_id"), js(k, "label") ? js(k, "label") : "");
		}
		printf("provider %s: %ld key(s) made by vmcryptfs, %d in use, %zu unused\n",
		       l.provider, l.listed, json_object_object_length(l.in_use),
		       json_object_array_length(l.unused));
	}
	r = 0;
out:
	json_object_put(l.in_use);
	json_object_put(l.unused);
	json_object_put(keys);
	json_object_put(incomplete);
	return r;
}

int util_cmd_keys(int argc, char **argv)
{
	static const char help[] =
		"usage: vmcryptfs-util keys in-use DATASTORE...\n"
		"       vmcryptfs-util keys unused --provider NAME DATASTORE...\n";

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(help, argc < 2 ? stderr : stdout);
		return argc < 2 ? UTIL_EXIT_USAGE : 0;
	}
	if (!strcmp(argv[1], "in-use"))
		return cmd_in_use(argc - 1, argv + 1);
	if (!strcmp(argv[1], "unused"))
		return cmd_unused(argc - 1, argv + 1);
	return util_usage_error("keys: unknown subcommand \"%s\"", argv[1]);
}
