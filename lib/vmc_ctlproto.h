/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control protocol between vmcryptfs-ctl and the daemon, over the mount's
 * Unix socket (docs/CONTROL.md). One request per connection: a JSON object
 *
 *     {"verb": "rekey", "args": {"vm": "vm1", "deep": true}}
 *
 * terminated by a newline, at most VMC_CTL_MAX_REQUEST bytes. The daemon
 * answers with JSON lines: zero or more {"progress": {...}} or {"event":
 * {...}} lines, then exactly one final {"ok": true, "result": {...}} or
 * {"ok": false, "errno": N, "error": "...", "message": "..."}.
 *
 * Requests come from any local user that can connect; the parser treats them
 * as hostile: size-limited, nesting-limited, strictly typed.
 */
#ifndef VMC_CTLPROTO_H
#define VMC_CTLPROTO_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#define VMC_CTL_MAX_REQUEST (64 * 1024)
#define VMC_CTL_MAX_DEPTH 8
/* Read-only virtual attribute of the mount root naming the control socket. */
#define VMC_CTL_XATTR "user.vmcryptfs.control"
#define VMC_CTL_DEFAULT_DIR "/run/vmcryptfs"

struct vmc_ctl_req {
	char verb[32];
	json_object *args; /* an object; owned */
};

/* Parse one request; -EINVAL / -EMSGSIZE with a message. */
int vmc_ctl_parse_request(const char *buf, size_t len, struct vmc_ctl_req *req, char *err,
			  size_t errlen);
void vmc_ctl_req_free(struct vmc_ctl_req *req);

/* Typed access to request arguments: -EINVAL (message in @err) on a wrong
 * type or a missing required argument; absent optional ones leave *out. */
int vmc_ctl_arg_str(json_object *args, const char *key, bool required, const char **out,
		    char *err, size_t errlen);
int vmc_ctl_arg_bool(json_object *args, const char *key, bool *out, char *err, size_t errlen);
int vmc_ctl_arg_int(json_object *args, const char *key, long long *out, char *err,
		    size_t errlen);

/* The default socket path of a mount point: VMC_CTL_DEFAULT_DIR/<hash>.sock. */
void vmc_ctl_default_socket(const char *mountpoint, char *buf, size_t len);

#endif
