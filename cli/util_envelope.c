// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * envelope describe and envelope extract (also coredump extract): one file
 * at a time, named by the caller (so a symbolic link given on the command
 * line is followed, as cat(1) would).
 *
 * describe says what can be known without keys: encrypted or not, format
 * version, cipher and data unit, class, logical size, ids, creation time, and
 * every key slot (a shallow rekey that was interrupted leaves two), and
 * whether the header is intact, listing everything that is wrong with it.
 * The key-id line keeps crypto-util's shape (keyID 'ID') so that scripts that
 * cut the id out from between the quotes work on both. With --verify each
 * usable slot is opened with its provider's key.
 *
 * extract decrypts to a file (created with the source's mode, never over an
 * existing one without --force, removed again if extraction fails) or to
 * standard output; the key is obtained before the output is created, so a
 * missing key or a wrong password writes nothing.
 */
#include "util_cli.h"
#include "vmc_crypto.h"
#include "vmc_pwkek.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

static bool jbool(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

/* Whether @f has a usable slot sealed under a password and none under a provider. */
static bool password_only(const struct util_file *f)
{
	bool pw = false;

	for (int i = 0; i < VMC_FMT_NSLOTS; i++) {
		if (f->hdr.slots[i].status != VMC_SLOT_OK)
			continue;
		if (strcmp(f->hdr.slots[i].provider, VMC_PWKEK_PROVIDER))
			return false;
		pw = true;
	}
	return pw;
}

/* --verify: open each usable slot; the results go into @o. Returns whether one opened. */
static bool verify_slots(const struct util_file *f, const char *password, json_object *o)
{
	json_object *arr = json_object_new_array();
	uint8_t *dek = vmc_secret_alloc(VMC_FMT_DEK_LEN);
	bool any = false;

	for (int i = 0; i < VMC_FMT_NSLOTS && dek; i++) {
		const struct vmc_hdr_slot *s = &f->hdr.slots[i];
		json_object *v;
		char err[512];
		int r;

		if (s->status != VMC_SLOT_OK)
			continue;
		r = util_slot_open(f, i, password, dek, err, sizeof(err));
		v = json_object_new_object();
		json_object_object_add(v, "slot", json_object_new_int(i));
		json_object_object_add(v, "opens", json_object_new_boolean(!r));
		if (r)
			json_object_object_add(v, "error", json_object_new_string(err));
		json_object_array_add(arr, v);
		any |= !r;
	}
	vmc_secret_free(dek, VMC_FMT_DEK_LEN);
	json_object_object_add(o, "verify", arr);
	json_object_object_add(o, "opens", json_object_new_boolean(any));
	return any;
}

static void print_description(json_object *d)
{
	json_object *arr;
	const char *file = jstr(d, "file");

	if (jstr(d, "open_error")) {
		printf("%s: %s\n", file, jstr(d, "open_error"));
		return;
	}
	if (!jbool(d, "encrypted")) {
		if (jint(d, "size"))
			printf("%s: cleartext (not encrypted), %lld bytes\n", file,
			       (long long)jint(d, "size"));
		else
			printf("%s: cleartext (empty: a header comes with its first data)\n", file);
		return;
	}
	if (!jbool(d, "usable"))
		printf("%s: encrypted, header DAMAGED: %s\n", file, jstr(d, "error"));
	else
		printf("%s: encrypted%s\n", file, jbool(d, "intact") ? "" :
		       ", header usable but DAMAGED in part");
	if (json_object_object_get_ex(d, "version", NULL)) {
		printf("  format version    %lld\n", (long long)jint(d, "version"));
		printf("  cipher            %s (%lld), data unit %lld bytes\n", jstr(d, "cipher"),
		       (long long)jint(d, "cipher_id"), (long long)jint(d, "data_unit"));
		printf("  file class        %s\n", jstr(d, "class"));
		printf("  logical size      %lld bytes%s\n", (long long)jint(d, "size"),
		       jbool(d, "truncate_pending") ? " (an interrupted truncate to this size: "
						      "the daemon finishes it at the next open)" : "");
		printf("  file id           %s\n", jstr(d, "file_id"));
		printf("  VM id             %s\n", jstr(d, "vm_id"));
		printf("  created           %s (%s)\n", jstr(d, "created_utc") ?
		       jstr(d, "created_utc") : "?", jstr(d, "created"));
	}
	if (json_object_object_get_ex(d, "slots", &arr))
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			json_object *s = json_object_array_get_idx(arr, i);

			if (!strcmp(jstr(s, "status"), "ok"))
				printf("  slot %lld            provider '%s' keyID '%s' generation %lld\n",
				       (long long)jint(s, "slot"), jstr(s, "provider"),
				       jstr(s, "kek_id"), (long long)jint(s, "generation"));
			else
				printf("  slot %lld            DAMAGED: %s\n", (long long)jint(s, "slot"),
				       jstr(s, "damage"));
		}
	json_object_object_get_ex(d, "problems", &arr);
	if (!json_object_array_length(arr))
		printf("  header            intact\n");
	for (size_t i = 0; i < json_object_array_length(arr); i++)
		printf("  problem           %s\n",
		       json_object_get_string(json_object_array_get_idx(arr, i)));
	if (json_object_object_get_ex(d, "verify", &arr))
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			json_object *v = json_object_array_get_idx(arr, i);

			if (jbool(v, "opens"))
				printf("  verify            slot %lld opens\n", (long long)jint(v, "slot"));
			else
				printf("  verify            slot %lld does NOT open: %s\n",
				       (long long)jint(v, "slot"), jstr(v, "error"));
		}
}

static int cmd_describe(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "verify", no_argument, NULL, 'v' },
		{ "password-file", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char help[] =
		"usage: vmcryptfs-util envelope describe [--verify] [--password-file F] FILE...\n"
		"Whether each FILE (a file of a backing directory) is encrypted; if so its format\n"
		"version, cipher and data unit, file class, logical size, file and VM ids,\n"
		"creation time, each key slot (provider, keyID, generation), and whether the\n"
		"header is intact (everything wrong with it is listed). --verify: open each\n"
		"usable slot with the key from its provider (--config), or with the password of\n"
		"--password-file for a slot sealed under a password.\n"
		"Exit status: 5 if a header is damaged, else 6 if --verify found a file that no\n"
		"slot opens, else 4 if a FILE does not exist, else 1 on another error.\n";
	bool verify = false, damaged = false, locked = false, missing = false, failed = false;
	const char *pwfile = NULL;
	json_object *all = json_object_new_array();
	char *pw = NULL;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			verify = true;
			break;
		case 'w':
			pwfile = optarg;
			break;
		case 'h':
			fputs(help, stdout);
			json_object_put(all);
			return 0;
		default:
			json_object_put(all);
			return UTIL_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		json_object_put(all);
		return util_usage_error("envelope describe: name at least one FILE");
	}
	if (pwfile && !(pw = util_password_read(pwfile, false))) {
		json_object_put(all);
		return UTIL_EXIT_FAIL;
	}
	for (int i = optind; i < argc; i++) {
		struct util_file f;
		json_object *d;
		char err[512];
		int r = util_file_open(&f, AT_FDCWD, argv[i], argv[i], false, err, sizeof(err));

		if (r) {
			d = json_object_new_object();
			json_object_object_add(d, "file", json_object_new_string(argv[i]));
			json_object_object_add(d, "open_error", json_object_new_string(err));
			missing |= r == -ENOENT;
			failed |= r != -ENOENT;
		} else {
			d = util_file_json(&f);
			damaged |= util_file_damaged(&f);
			if (verify && f.encrypted && !f.verdict && !verify_slots(&f, pw, d))
				locked = true;
			util_file_close(&f);
		}
		if (!util_g.json)
			print_description(d);
		json_object_array_add(all, d);
	}
	util_password_free(pw);
	if (util_g.json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "files", all);
		util_print_json(o);
	} else {
		json_object_put(all);
	}
	return damaged ? UTIL_EXIT_DAMAGED : locked ? UTIL_EXIT_KEY : missing ? UTIL_EXIT_NOTFOUND :
	       failed ? UTIL_EXIT_FAIL : UTIL_EXIT_OK;
}

/* Open the output: standard output, or a new file with the source's mode. */
static int open_out(const char *out, const struct util_file *f, bool force, bool *created)
{
	struct stat st;
	int fd;

	*created = false;
	if (!strcmp(out, "-")) {
		if (isatty(STDOUT_FILENO)) {
			util_err("refusing to write decrypted data to a terminal: name an output file "
				 "or redirect standard output");
			return -EINVAL;
		}
		return STDOUT_FILENO;
	}
	if (!stat(out, &st) && st.st_dev == f->st.st_dev && st.st_ino == f->st.st_ino) {
		util_err("%s: the output is the file being read", out);
		return -EINVAL;
	}
	fd = open(out, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | (force ? O_TRUNC : O_EXCL),
		  f->st.st_mode & 07777);
	if (fd < 0) {
		int e = errno;

		util_err("%s: %s", out, e == EEXIST ? "exists (use --force to overwrite it)" :
			 strerror(e));
		return -e;
	}
	*created = true;
	if (!fstat(fd, &st) && S_ISREG(st.st_mode) && fchmod(fd, f->st.st_mode & 07777)) {
		/* the umask may have narrowed it; not worth failing over */
	}
	return fd;
}

int util_extract(const char *verb, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "offset", required_argument, NULL, 'o' },
		{ "length", required_argument, NULL, 'l' },
		{ "force", no_argument, NULL, 'f' },
		{ "password-file", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char help_envelope[] =
		"usage: vmcryptfs-util envelope extract FILE [OUT|-] [--offset N] [--length N]\n"
		"                                       [--force] [--password-file F]\n"
		"Decrypt FILE (a file of a backing directory) offline, with the key from its key\n"
		"provider (--config), to OUT (created with FILE's mode; --force overwrites) or to\n"
		"standard output (- or no OUT). Streams in 1 MiB pieces: any size, little memory.\n"
		"Holes read as zeros and stay holes in OUT. --offset/--length (bytes, or with a\n"
		"K, M, G or T suffix) select part of the plaintext. A cleartext FILE is copied\n"
		"as is (with a note on stderr). A file sealed under a password (coredump export)\n"
		"needs --password-file.\n";
	static const char help_coredump[] =
		"usage: vmcryptfs-util coredump extract [--password-file F] FILE OUT|-\n"
		"                                       [--offset N] [--length N] [--force]\n"
		"Decrypt a core dump: with the key from its provider (--config) if it was written\n"
		"by the daemon (encryption mode on), or with the password if it was made by\n"
		"'coredump export' (--password-file F, or asked on the terminal); no key\n"
		"provider and no configuration is needed then. A wrong password writes nothing\n"
		"and exits with status 6. Otherwise as envelope extract.\n";
	bool coredump = !strcmp(verb, "coredump extract"), force = false, created = false;
	const char *pwfile = NULL, *out;
	uint64_t off = 0, len = UINT64_MAX, written = 0;
	struct vmc_dek *dek = NULL;
	struct util_file f;
	char err[1024], *pw = NULL;
	int c, r, fd = -1, slot = -1, rc;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (util_parse_size(optarg, &off))
				return util_usage_error("%s: bad --offset \"%s\"", verb, optarg);
			break;
		case 'l':
			if (util_parse_size(optarg, &len))
				return util_usage_error("%s: bad --length \"%s\"", verb, optarg);
			break;
		case 'f':
			force = true;
			break;
		case 'w':
			pwfile = optarg;
			break;
		case 'h':
			fputs(coredump ? help_coredump : help_envelope, stdout);
			return 0;
		default:
			return UTIL_EXIT_USAGE;
		}
	}
	if (optind >= argc || argc - optind > 2 || (coredump && argc - optind != 2))
		return util_usage_error("%s: give FILE %s", verb, coredump ? "and OUT" : "[OUT|-]");
	out = optind + 1 < argc ? argv[optind + 1] : "-";
	r = util_file_open(&f, AT_FDCWD, argv[optind], argv[optind], false, err, sizeof(err));
	if (r) {
		util_err("%s", err);
		return util_exit_code(r);
	}
	if (f.encrypted) {
		if (pwfile || (!f.verdict && password_only(&f))) {
			pw = util_password_read(pwfile, false);
			if (!pw) {
				rc = UTIL_EXIT_FAIL;
				goto out;
			}
		}
		r = util_file_unlock(&f, pw, &dek, &slot, err, sizeof(err));
		if (r) {
			util_err("%s", err);
			rc = util_exit_code(r);
			goto out;
		}
	} else {
		fprintf(stderr, "vmcryptfs-util: %s is not encrypted: copying it as is\n", f.path);
	}
	fd = open_out(out, &f, force, &created);
	if (fd < 0) {
		rc = fd == -EINVAL ? UTIL_EXIT_USAGE : UTIL_EXIT_FAIL;
		goto out;
	}
	r = util_file_stream(&f, dek, fd, off, len, &written, err, sizeof(err));
	if (!r && created && fsync(fd)) {
		r = -errno;
		snprintf(err, sizeof(err), "%s: %s", out, strerror(errno));
	}
	if (r) {
		util_err("%s", err);
		if (created)
			unlink(out);
		rc = UTIL_EXIT_FAIL;
		goto out;
	}
	rc = UTIL_EXIT_OK;
	{
		FILE *o = fd == STDOUT_FILENO ? stderr : stdout;

		if (util_g.json) {
			json_object *j = json_object_new_object();

			json_object_object_add(j, "file", json_object_new_string(f.path));
			json_object_object_add(j, "out", json_object_new_string(out));
			json_object_object_add(j, "encrypted", json_object_new_boolean(f.encrypted));
			json_object_object_add(j, "offset", json_object_new_int64((int64_t)off));
			json_object_object_add(j, "bytes", json_object_new_int64((int64_t)written));
			if (slot >= 0) {
				json_object_object_add(j, "slot", json_object_new_int(slot));
				json_object_object_add(j, "provider", json_object_new_string(
					f.hdr.slots[slot].provider));
				json_object_object_add(j, "kek_id", json_object_new_string(
					f.hdr.slots[slot].kek_id));
			}
			fprintf(o, "%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
						JSON_C_TO_STRING_NOSLASHESCAPE));
			json_object_put(j);
		} else if (fd != STDOUT_FILENO) {
			if (slot >= 0)
				fprintf(o, "%s: %llu bytes decrypted to %s (slot %d, provider '%s' "
					"keyID '%s')\n", f.path, (unsigned long long)written, out, slot,
					f.hdr.slots[slot].provider, f.hdr.slots[slot].kek_id);
			else
				fprintf(o, "%s: %llu bytes copied to %s\n", f.path,
					(unsigned long long)written, out);
		}
	}
out:
	if (fd >= 0 && fd != STDOUT_FILENO)
		close(fd);
	vmc_dek_free(dek);
	util_password_free(pw);
	util_file_close(&f);
	return rc;
}

int util_cmd_envelope(int argc, char **argv)
{
	static const char help[] =
		"usage: vmcryptfs-util envelope describe [--verify] FILE...\n"
		"       vmcryptfs-util envelope extract FILE [OUT|-] [--offset N] [--length N]\n";

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(help, argc < 2 ? stderr : stdout);
		return argc < 2 ? UTIL_EXIT_USAGE : 0;
	}
	if (!strcmp(argv[1], "describe"))
		return cmd_describe(argc - 1, argv + 1);
	if (!strcmp(argv[1], "extract"))
		return util_extract("envelope extract", argc - 1, argv + 1);
	return util_usage_error("envelope: unknown subcommand \"%s\"", argv[1]);
}
