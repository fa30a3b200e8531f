/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control channel of a mounted datastore (ctl.c) and its verbs:
 * admin.c (status, lock, unlock, providers, events, encryption mode),
 * rekey.c (shallow rekey), convert.c (encrypt, decrypt, deep rekey).
 *
 * A verb handler runs in the connection's own thread with the caller's
 * identity (SO_PEERCRED) and privileges already checked against the verb's
 * table entry, and only the argument names the table lists; "vm" and "vms"
 * hold raw (decoded) names. It fills @result and returns 0, or returns -errno
 * after ctl_fail() said why. Every string it puts in @result goes through
 * vmc_json_name() (vmc_ctlproto.h: the name encoding); ctl_fail() messages
 * quote raw names and are encoded when sent. Long operations report progress
 * with ctl_progress() and stop early (resumably) when ctl_stopping() says the
 * daemon is going.
 */
#ifndef VMC_CTL_H
#define VMC_CTL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct ctl_conn {
	int cc_fd;
	uid_t cc_uid;
	gid_t cc_gid;
	pid_t cc_pid;
	uint32_t cc_privs;
	char cc_msg[1024];      /* why the verb failed */
	uint64_t cc_last_ns;    /* last progress line */
	bool cc_detached;       /* the handler kept cc_fd (events --follow) */
	int cc_vm_index;        /* several VMs in one call: which one is running */
	int cc_vm_count;
	json_object *cc_vms;    /* the VM directories the request names, normalized
				 * (raw bytes), for refusals' events; owned */
};

int vmc_ctl_start(const char *mountpoint, const char *path_opt);
void vmc_ctl_stop(void);
const char *vmc_ctl_path(void);
bool ctl_stopping(void);

int ctl_fail(struct ctl_conn *c, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void ctl_progress(struct ctl_conn *c, uint64_t done, uint64_t total, const char *item,
		  int items_done, int items_total, bool force);
int ctl_send(struct ctl_conn *c, json_object *o);
/* Check an extra privilege inside a verb (audits a refusal, on @vm or, if
 * NULL, on each VM directory the request names). */
int ctl_require(struct ctl_conn *c, uint32_t priv, const char *op, const char *vm);

/*
 * Open the VM directory @vm (relative to the datastore, no "..", no
 * symlinks) as an O_RDONLY directory descriptor; @norm gets the normalized
 * relative path ("." for the datastore root).
 */
int ctl_open_dir(struct ctl_conn *c, const char *vm, int *fd, char *norm, size_t normlen);

/* The VM directories named by "vm", "vms" or "all" (of "provider"). */
int ctl_vm_targets(struct ctl_conn *c, json_object *args, char (**out)[4096], int *n);

/* admin.c */
int verb_status(struct ctl_conn *c, json_object *args, json_object *result);
int verb_lock(struct ctl_conn *c, json_object *args, json_object *result);
int verb_unlock(struct ctl_conn *c, json_object *args, json_object *result);
int verb_provider_list(struct ctl_conn *c, json_object *args, json_object *result);
int verb_provider_test(struct ctl_conn *c, json_object *args, json_object *result);
int verb_provider_create_native(struct ctl_conn *c, json_object *args, json_object *result);
int verb_provider_backup(struct ctl_conn *c, json_object *args, json_object *result);
int verb_provider_restore(struct ctl_conn *c, json_object *args, json_object *result);
int verb_events(struct ctl_conn *c, json_object *args, json_object *result);
int verb_encryption_mode(struct ctl_conn *c, json_object *args, json_object *result);
int verb_metrics(struct ctl_conn *c, json_object *args, json_object *result);
/* rekey.c */
int verb_rekey(struct ctl_conn *c, json_object *args, json_object *result);
/* convert.c */
int verb_encrypt(struct ctl_conn *c, json_object *args, json_object *result);
int verb_decrypt(struct ctl_conn *c, json_object *args, json_object *result);
/* The operation of the VM's conversion journal in @op: 0, -ENOENT (none) or
 * -EUCLEAN (damaged). */
int vmc_conv_journal_op(int vmfd, char *op, size_t oplen);
int vmc_rekey_deep(struct ctl_conn *c, int vmfd, const char *vm, const char *to_provider,
		   json_object *result);

#endif
