/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Audit events: every cryptographic operation, policy change, lock/unlock
 * and refusal, with time, user, operation, VM, provider and key ids, what
 * changed from and to, and the result. Never key material.
 *
 * Events are queued and written by one thread: to the JSON-lines audit log,
 * to the local syslog (facility authpriv) and to up to three remote syslog
 * targets in RFC 5424 format (UDP datagrams, or TCP with octet counting,
 * RFC 6587), so a slow or dead log server never stalls a FUSE request.
 * Subscribers (`vmcryptfs-ctl events --follow`) get each event as written.
 */
#ifndef VMC_AUDIT_H
#define VMC_AUDIT_H

#include <stdbool.h>
#include <sys/types.h>

struct vmc_config;

struct vmc_event {
	const char *op;        /* "encrypt", "rekey", "open-refused", ... */
	uid_t uid;             /* who asked */
	const char *vm;        /* VM directory relative to the datastore, or NULL */
	const char *file;      /* a file, relative to the datastore, or NULL */
	const char *provider;  /* key provider, or NULL */
	const char *key_from;  /* KEK id before, or NULL */
	const char *key_to;    /* KEK id after, or NULL */
	const char *from;      /* state before ("cleartext", a policy name, ...) */
	const char *to;        /* state after */
	int result;            /* 0 or -errno */
	const char *detail;    /* free text: why it failed, ... */
};

int vmc_audit_start(const struct vmc_config *cfg, const char *datastore);
void vmc_audit_stop(void);
/* Queue an event (never blocks on the network or the disk). */
void vmc_audit(const struct vmc_event *ev);

/*
 * A subscriber: each new event (of VM @vm only, if not NULL) is written to
 * @fd as a line {"event": {...}} until unsubscribed or a write fails.
 */
int vmc_audit_subscribe(int fd, const char *vm);
void vmc_audit_unsubscribe(int fd);

#endif
