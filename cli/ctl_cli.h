/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vmcryptfs-ctl internals: the connection (ctl_conn.c) and the verbs (ctl_main.c). */
#ifndef VMC_CTL_CLI_H
#define VMC_CTL_CLI_H

#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

/* Exit codes (vmcryptfs-ctl(8), EXIT STATUS). */
enum {
	CTL_EXIT_OK = 0,
	CTL_EXIT_FAIL = 1,      /* the operation failed */
	CTL_EXIT_USAGE = 2,     /* bad command line */
	CTL_EXIT_PERM = 3,      /* permission denied (privileges) */
	CTL_EXIT_NOTFOUND = 4,  /* no such VM, provider or file */
	CTL_EXIT_BUSY = 5,      /* VM in use, or another operation in progress */
	CTL_EXIT_KEY = 6,       /* a key is not available (VM locked) */
	CTL_EXIT_NOSPACE = 7,   /* not enough free space */
	CTL_EXIT_NODAEMON = 8,  /* no mounted datastore or daemon to talk to */
	CTL_EXIT_PARTIAL = 9,   /* some of several VMs failed */
	CTL_EXIT_UNHEALTHY = 10,/* provider test: the provider is not usable */
};

typedef void (*ctl_line_fn)(void *arg, json_object *line);

int ctl_exit_code(int err);
/* The mount points of fuse.vmcryptfs filesystems; returns how many. */
int ctl_find_mounts(char mounts[][PATH_MAX], int max);
/* The control socket of a mount point. */
int ctl_socket_of(const char *mountpoint, char *path, size_t len);
/*
 * Send @req, read the answer: lines other than progress and the final one go
 * to @on_line. Returns 0 with the result in *result, or a positive errno
 * with the daemon's message in @msg (in the name encoding, vmc_ctlproto.h):
 * ENOTCONN when the daemon could not be reached or never answered (the
 * daemon's own errors never use ENOTCONN).
 */
int ctl_call(const char *socket_path, json_object *req, ctl_line_fn on_line, void *arg,
	     json_object **result, char *msg, size_t msglen, bool show_progress);

/*
 * A string of the daemon's JSON (in the name encoding) for a terminal:
 * decoded, then control characters and bytes that are not UTF-8 as \xHH
 * (vmc_log_escape), into @out (truncated to fit). Returns its length.
 */
size_t ctl_display(char *out, size_t outlen, const char *s);
/* Every string in @o as ctl_display() shows it: for human-readable output. */
void ctl_display_tree(json_object *o);

#endif
