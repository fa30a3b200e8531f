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
 * as hostile: size-limited, nesting-limited, strictly typed, UTF-8 only (a
 * string or key that is not well-formed UTF-8, or holds a NUL character, is
 * refused), and each verb refuses arguments it does not know.
 *
 * Names are bytes, JSON is UTF-8 (RFC 8259). Every string the daemon writes
 * into JSON (answers, progress, audit events) is in the name encoding: each
 * byte that is not part of well-formed UTF-8, and each '%', is written "%XX"
 * (two upper-case hex digits); everything else is as it is. Decoding replaces
 * every %XX by its byte, so it is lossless, and it is the identity on UTF-8
 * text without '%'. The VM directories a request names ("vm", "vms") are in
 * the same encoding and decoded by vmc_ctl_parse_request().
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

/* Parse one request; -EINVAL / -EMSGSIZE with a message. The "vm" and "vms"
 * arguments come out decoded (raw names). @err never quotes bytes that are not
 * UTF-8. */
int vmc_ctl_parse_request(const char *buf, size_t len, struct vmc_ctl_req *req, char *err,
			  size_t errlen);
void vmc_ctl_req_free(struct vmc_ctl_req *req);
/* -EINVAL (message in @err) if @args has a key not in @allowed (NULL-terminated). */
int vmc_ctl_check_args(json_object *args, const char *verb, const char *const *allowed,
		       char *err, size_t errlen);

/* Typed access to request arguments: -EINVAL (message in @err) on a wrong
 * type or a missing required argument; absent optional ones leave *out. */
int vmc_ctl_arg_str(json_object *args, const char *key, bool required, const char **out,
		    char *err, size_t errlen);
int vmc_ctl_arg_bool(json_object *args, const char *key, bool *out, char *err, size_t errlen);
int vmc_ctl_arg_int(json_object *args, const char *key, long long *out, char *err,
		    size_t errlen);

/* @name in the name encoding: a string to free(), or NULL (no memory). */
char *vmc_name_encode(const char *name);
/* A JSON string of @name in the name encoding; NULL for NULL (or no memory). */
json_object *vmc_json_name(const char *name);
/* Decode @s in place; the decoded length in *@len. -EINVAL if a '%' does not
 * begin %XX or XX is 00 (names hold no NUL). */
int vmc_name_decode(char *s, size_t *len);
/* Give every string in @o that is not UTF-8 (an audit line of an earlier
 * version, say) the name encoding; other strings stay as they are. */
void vmc_json_repair_utf8(json_object *o);

/* The default socket path of a mount point: VMC_CTL_DEFAULT_DIR/<hash>.sock. */
void vmc_ctl_default_socket(const char *mountpoint, char *buf, size_t len);

#endif
