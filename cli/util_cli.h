/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vmcryptfs-util internals: the verbs (util_envelope.c, util_scan.c,
 * util_keys.c, util_coredump.c), what they share (util_main.c: options, exit
 * codes, configuration and key providers loaded on first use, passwords;
 * util_file.c: one backing file opened, described, unlocked and streamed;
 * util_walk.c: the walk of a backing directory).
 *
 * The tool reads the format only through the core library (vmc_header.h,
 * vmc_dek.h, vmc_vmstate.h, vmc_pwkek.h); nothing here parses on-disk bytes.
 */
#ifndef VMC_UTIL_CLI_H
#define VMC_UTIL_CLI_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "vmc_config.h"
#include "vmc_dek.h"
#include "vmc_header.h"
#include "vmc_keyring.h"

/* Exit codes (vmcryptfs-util(8), EXIT STATUS). */
enum {
	UTIL_EXIT_OK = 0,
	UTIL_EXIT_FAIL = 1,          /* the operation failed */
	UTIL_EXIT_USAGE = 2,         /* bad command line */
	UTIL_EXIT_NONCOMPLIANT = 3,  /* scan: violations found */
	UTIL_EXIT_NOTFOUND = 4,      /* no such file or directory */
	UTIL_EXIT_DAMAGED = 5,       /* a header or key record is damaged or unsupported */
	UTIL_EXIT_KEY = 6,           /* a key is not available, or a wrong password */
};

/* Global options, set once by main(). */
struct util_opts {
	const char *config;      /* --config, NULL: the daemon's default rule */
	const char *keyprov_dir; /* --keyprov-dir, NULL: compiled-in */
	bool json;
};
extern struct util_opts util_g;

/* --- util_main.c ----------------------------------------------------------- */

/* The exit code for a -errno (one table; see the manual page). */
int util_exit_code(int err);
/* "vmcryptfs-util: MESSAGE" on stderr. */
void util_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int util_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print @o (pretty JSON) on stdout and release it. */
void util_print_json(json_object *o);
/* The configuration, loaded on first use (--config or the daemon's rule). */
int util_config(const struct vmc_config **out, char *err, size_t errlen);
/* The key providers of the configuration, opened on first use. */
int util_keyring(struct vmc_keyring **out, char *err, size_t errlen);
/*
 * A password: the first line of @file ("-": standard input), or asked on the
 * terminal (twice with @confirm). Secret memory, free with util_password_free.
 */
char *util_password_read(const char *file, bool confirm);
void util_password_free(char *pw);
/* Parse a byte count (decimal, or with a K/M/G/T suffix: powers of 1024). */
int util_parse_size(const char *s, uint64_t *out);

/* --- util_file.c ------------------------------------------------------------ */

/* A backing file opened for inspection; lives for one verb on one file. */
struct util_file {
	char path[4096];         /* as named in messages */
	int fd;
	struct stat st;
	bool encrypted;          /* the probe says so (header intact or not) */
	int verdict;             /* 0, or why the header is unusable (-EUCLEAN, ...) */
	struct vmc_hdr hdr;      /* when encrypted: as examined */
	struct vmc_hdr_report rep;
	uint64_t size;           /* logical size: backing size less the header */
	uint8_t first[64];       /* first bytes, for classification */
	size_t nfirst;
};

/*
 * Open @name relative to @dirfd (AT_FDCWD for a path); @nofollow refuses a
 * symbolic link. Reads and examines the header. Returns 0, or -errno with a
 * message (not a regular file: -EINVAL).
 */
int util_file_open(struct util_file *f, int dirfd, const char *name, const char *display,
		   bool nofollow, char *err, size_t errlen);
/*
 * What util_file_open does with the first @n bytes (at most 4096) of a file
 * whose size is already in f->st: classification bytes, probe, examination.
 */
void util_file_examine(struct util_file *f, const uint8_t *buf, size_t n);
void util_file_close(struct util_file *f);
/* Whether the header is usable but not intact (a damaged spare slot). */
bool util_file_damaged(const struct util_file *f);
/* The description of @f for envelope describe and scan. */
json_object *util_file_json(const struct util_file *f);
/*
 * Open slot @slot: its KEK from its provider (or, for a "password" slot,
 * from @password), then unseal. 0 with the DEK in @dek (secret memory,
 * VMC_FMT_DEK_LEN), or -errno with a message.
 */
int util_slot_open(const struct util_file *f, int slot, const char *password, uint8_t *dek,
		   char *err, size_t errlen);
/*
 * The data key of @f: usable slots in order of decreasing generation, the
 * first that opens. *slot says which. -ENOKEY / -EKEYREJECTED with the
 * reason of the first failure otherwise.
 */
int util_file_unlock(const struct util_file *f, const char *password, struct vmc_dek **dek,
		     int *slot, char *err, size_t errlen);
/*
 * Write logical bytes [@off, @off + @len) of @f (clipped to its size) to
 * @out, decrypting with @dek (NULL: a cleartext file, copied). Streams in
 * fixed chunks; holes are read as zeros without decryption and, when @out
 * is a regular file, left as holes. *written gets the byte count.
 */
int util_file_stream(const struct util_file *f, struct vmc_dek *dek, int out, uint64_t off,
		     uint64_t len, uint64_t *written, char *err, size_t errlen);

/* --- util_walk.c ------------------------------------------------------------ */

/* Callbacks of a datastore walk. Each returns 0 to go on, or -errno to stop. */
struct util_walk_ops {
	/* A VM directory (it has vmcrypt.policy or .vmcrypt.state), before its files. */
	int (*vm)(void *arg, int dirfd, const char *rel);
	/* A regular file: @rel its path in the datastore, @vm its VM (NULL outside). */
	int (*file)(void *arg, int dirfd, const char *name, const char *rel, const char *vm);
	/* One of vmcryptfs' own names (.vmcrypt.*) other than the key records. */
	int (*reserved)(void *arg, const char *name, const char *rel, const char *vm);
	/* A directory that could not be listed. */
	int (*error)(void *arg, const char *rel, const char *vm, int err);
};

/*
 * Walk the backing directory open as @rootfd: every directory below it (no
 * symbolic link is followed; each level is opened relative to its parent
 * with O_NOFOLLOW), in name order, reporting VM directories, regular files
 * with the VM they belong to (the nearest directory up to the root, their
 * own first, that is a VM directory), and vmcryptfs' own files. Returns 0,
 * or what a callback returned to stop.
 */
int util_walk(int rootfd, const struct util_walk_ops *ops, void *arg);

/* Open a datastore's backing directory (the caller closes it). */
int util_open_datastore(const char *path, char *err, size_t errlen);

/* --- util_scan.c ------------------------------------------------------------ */

/*
 * Survey the datastore @datastore (a backing directory) for scan and keys:
 * the JSON document that scan --json prints. NULL with *status (-errno) and
 * @err when it could not start; otherwise *status is 0, or the error that
 * cut the walk short (the document then covers what was seen).
 */
json_object *util_survey(const char *datastore, bool verify, int *status, char *err,
			 size_t errlen);

/* --- verbs -------------------------------------------------------------------- */

int util_cmd_envelope(int argc, char **argv);
int util_cmd_scan(int argc, char **argv);
int util_cmd_keys(int argc, char **argv);
int util_cmd_coredump(int argc, char **argv);
/* Shared by envelope extract and coredump extract. */
int util_extract(const char *verb, int argc, char **argv);

#endif
