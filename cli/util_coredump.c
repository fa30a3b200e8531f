// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Core dumps. With the datastore's encryption mode on, the daemon writes
 * core dumps as encrypted files (class coredump; under the VM's KEK inside a
 * VM directory, under the datastore record's KEK outside). coredump extract
 * decrypts one, like envelope extract. coredump export re-encrypts one for
 * someone who has no access to our key providers (a support engineer): a
 * standard encrypted file (FORMAT.md 3) with a fresh random data key, whose
 * only slot is sealed under a password (the "password" pseudo-provider,
 * FORMAT.md 3.5, lib/vmc_pwkek.h); coredump extract --password-file opens it
 * with the password alone.
 *
 * The export is written to a new file (never over another without --force),
 * synced, and removed again if anything fails; the source stays untouched.
 * Holes of the source stay holes. Caveat: Argon2id takes 64 MiB of memory
 * and about a second, on export and on every extraction.
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

#define HDR ((uint64_t)VMC_FMT_HDR_SIZE)
#define UNIT ((uint64_t)VMC_FMT_UNIT_SIZE)
#define CHUNK (1u << 20)

/* Re-encrypt the data of @f (key @src) under @dst into @out after its header. */
static int recrypt(const struct util_file *f, struct vmc_dek *src, struct vmc_dek *dst, int out,
		   char *err, size_t errlen)
{
	uint8_t *buf = malloc(CHUNK);
	uint64_t pos = 0;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	while (pos < f->size && !r) {
		uint64_t n = f->size - pos < CHUNK ? f->size - pos : CHUNK;
		ssize_t got = pread(f->fd, buf, (size_t)n, (off_t)(HDR + pos));

		if (got < 0 || (uint64_t)got != n) {
			r = got < 0 ? -errno : -EIO;
			snprintf(err, errlen, "%s: cannot read: %s", f->path,
				 got < 0 ? strerror(errno) : "shorter than its size");
			break;
		}
		/* Unit by unit: a hole stays a hole (all-zero stored unit); a final
		 * unit of 1..15 bytes is never a hole (FORMAT.md 3.3). */
		for (uint64_t u = 0; u < n && !r; u += UNIT) {
			size_t len = (size_t)(n - u < UNIT ? n - u : UNIT);
			uint8_t *p = buf + u;

			if (vmc_unit_is_hole(p, len))
				continue;
			r = vmc_dek_decrypt(src, (pos + u) / UNIT, p, len);
			if (!r)
				r = vmc_dek_encrypt(dst, (pos + u) / UNIT, p, len);
		}
		if (r) {
			snprintf(err, errlen, "%s: cannot re-encrypt: %s", f->path, strerror(-r));
			break;
		}
		for (uint64_t u = 0; u < n && !r; u += UNIT) {
			size_t len = (size_t)(n - u < UNIT ? n - u : UNIT);

			if (vmc_unit_is_hole(buf + u, len))
				continue; /* left sparse; the final ftruncate sizes the file */
			if (pwrite(out, buf + u, len, (off_t)(HDR + pos + u)) != (ssize_t)len) {
				r = -errno;
				snprintf(err, errlen, "cannot write the export: %s", strerror(errno));
			}
		}
		pos += n;
	}
	vmc_wipe(buf, CHUNK);
	free(buf);
	if (!r && ftruncate(out, (off_t)(HDR + f->size))) {
		r = -errno;
		snprintf(err, errlen, "cannot size the export: %s", strerror(errno));
	}
	return r;
}

/* A header for the export of @f: same class and VM id, a new DEK sealed under @pw. */
static int seal_export(const struct util_file *f, const char *pw, struct vmc_hdr *h,
		       uint8_t *dek, char *id, char *err, size_t errlen)
{
	struct vmc_kek *k = NULL;
	int r;

	r = vmc_pwkek_new_id(id);
	if (!r)
		r = vmc_pwkek_derive(id, pw, strlen(pw), &k, err, errlen);
	if (!r)
		r = vmc_dek_generate(dek);
	if (!r)
		r = vmc_hdr_create(h, VMC_FMT_CLASS_COREDUMP, f->hdr.raw.fixed.vm_uuid);
	if (!r)
		r = vmc_hdr_seal(h, 0, VMC_PWKEK_PROVIDER, id, k->kek_wrap_key, dek, 1);
	vmc_kek_put(k);
	if (r && !err[0])
		snprintf(err, errlen, "cannot seal the export: %s", strerror(-r));
	return r;
}

static int cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "password-file", required_argument, NULL, 'w' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char help[] =
		"usage: vmcryptfs-util coredump export FILE --out OUT [--password-file F] [--force]\n"
		"Re-encrypt the encrypted core dump FILE (decrypted with the key from its\n"
		"provider, --config) under a password, into OUT: a vmcryptfs encrypted file with\n"
		"a new data key whose only key slot is sealed under the password (Argon2id), for\n"
		"someone without access to the key providers. They open it with\n"
		"'vmcryptfs-util coredump extract --password-file F OUT PLAIN'. The password\n"
		"comes from the first line of F (- for standard input) or is asked twice on the\n"
		"terminal. OUT is never written over unless --force.\n";
	const char *out = NULL, *pwfile = NULL;
	struct vmc_dek *src = NULL, *dst = NULL;
	struct vmc_hdr *h = NULL;
	struct util_file f;
	uint8_t *dek = NULL;
	char err[1024] = "", id[VMC_FMT_KEKID_MAX], *pw = NULL;
	bool force = false;
	int c, r, fd = -1, slot, rc = UTIL_EXIT_FAIL;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'w':
			pwfile = optarg;
			break;
		case 'f':
			force = true;
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			return UTIL_EXIT_USAGE;
		}
	}
	if (argc - optind != 1 || !out)
		return util_usage_error("coredump export: give FILE and --out OUT");
	r = util_file_open(&f, AT_FDCWD, argv[optind], argv[optind], false, err, sizeof(err));
	if (r) {
		util_err("%s", err);
		return util_exit_code(r);
	}
	if (!f.encrypted) {
		util_err("%s is not encrypted: nothing to protect; hand it over as it is, or encrypt "
			 "it in an encrypted VM first", f.path);
		goto out;
	}
	if (!f.verdict && f.hdr.file_class != VMC_FMT_CLASS_COREDUMP) {
		util_err("%s is not a core dump (class %s): coredump export only hands over core "
			 "dumps", f.path, vmc_class_fmt_name(f.hdr.file_class));
		goto out;
	}
	r = util_file_unlock(&f, NULL, &src, &slot, err, sizeof(err));
	if (r) {
		util_err("%s", err);
		rc = util_exit_code(r);
		goto out;
	}
	pw = util_password_read(pwfile, !pwfile);
	dek = vmc_secret_alloc(VMC_FMT_DEK_LEN);
	h = calloc(1, sizeof(*h));
	if (!pw || !dek || !h)
		goto out;
	err[0] = '\0';
	r = seal_export(&f, pw, h, dek, id, err, sizeof(err));
	if (!r)
		r = vmc_dek_new(&dst, dek);
	if (r) {
		util_err("%s", err[0] ? err : strerror(-r));
		goto out;
	}
	fd = open(out, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | (force ? O_TRUNC : O_EXCL), 0600);
	if (fd < 0) {
		util_err("%s: %s", out, errno == EEXIST ? "exists (use --force to overwrite it)" :
			 strerror(errno));
		goto out;
	}
	if (pwrite(fd, &h->raw, sizeof(h->raw), 0) != (ssize_t)sizeof(h->raw)) {
		r = -errno;
		snprintf(err, sizeof(err), "cannot write the export: %s", strerror(errno));
	}
	if (!r)
		r = recrypt(&f, src, dst, fd, err, sizeof(err));
	if (!r && fsync(fd)) {
		r = -errno;
		snprintf(err, sizeof(err), "%s: %s", out, strerror(errno));
	}
	if (r) {
		util_err("%s", err);
		unlink(out);
		goto out;
	}
	rc = UTIL_EXIT_OK;
	if (util_g.json) {
		json_object *j = json_object_new_object();

		json_object_object_add(j, "file", json_object_new_string(f.path));
		json_object_object_add(j, "out", json_object_new_string(out));
		json_object_object_add(j, "size", json_object_new_int64((int64_t)f.size));
		json_object_object_add(j, "provider", json_object_new_string(VMC_PWKEK_PROVIDER));
		json_object_object_add(j, "kek_id", json_object_new_string(id));
		util_print_json(j);
	} else {
		printf("%s: core dump (%llu bytes) exported to %s under a password (%s)\n", f.path,
		       (unsigned long long)f.size, out, id);
	}
out:
	if (fd >= 0)
		close(fd);
	vmc_dek_free(src);
	vmc_dek_free(dst);
	vmc_secret_free(dek, VMC_FMT_DEK_LEN);
	if (h) {
		vmc_wipe(h, sizeof(*h));
		free(h);
	}
	util_password_free(pw);
	util_file_close(&f);
	return rc;
}

int util_cmd_coredump(int argc, char **argv)
{
	static const char help[] =
		"usage: vmcryptfs-util coredump extract [--password-file F] FILE OUT|-\n"
		"       vmcryptfs-util coredump export FILE --out OUT [--password-file F]\n";

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(help, argc < 2 ? stderr : stdout);
		return argc < 2 ? UTIL_EXIT_USAGE : 0;
	}
	if (!strcmp(argv[1], "extract"))
		return util_extract("coredump extract", argc - 1, argv + 1);
	if (!strcmp(argv[1], "export"))
		return cmd_export(argc - 1, argv + 1);
	return util_usage_error("coredump: unknown subcommand \"%s\"", argv[1]);
}
