/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The VM lock record: the content of a VM's lock file ".vmcrypt.locks/vm.INODE"
 * (docs/FORMAT.md, "VM lock file"). A daemon that opens a VM's files for
 * writing holds the VM's lock file on the shared backing store and rewrites
 * it periodically with a growing heartbeat counter; another host that finds
 * the counter unchanged for the whole lease period may take the lock over.
 *
 * The record is text, one "key value" per line, padded with NUL bytes to
 * VMC_LOCKREC_SIZE so every heartbeat rewrites it in place with one write.
 */
#ifndef VMC_LOCKREC_H
#define VMC_LOCKREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VMC_LOCKREC_SIZE 512
#define VMC_LOCKREC_MAGIC "vmcryptfs-lock 1"
#define VMC_LOCKREC_HOST_MAX 64     /* host id: [A-Za-z0-9._-], 1..63 bytes */
#define VMC_LOCKREC_NAME_MAX 64     /* host name, for people */
#define VMC_LOCKREC_INSTANCE_LEN 32 /* hex digits of a daemon instance */
#define VMC_LOCKREC_BOOT_MAX 40     /* /proc/sys/kernel/random/boot_id */

struct vmc_lockrec {
	char host[VMC_LOCKREC_HOST_MAX];
	char hostname[VMC_LOCKREC_NAME_MAX];
	char instance[VMC_LOCKREC_INSTANCE_LEN + 1];
	char boot[VMC_LOCKREC_BOOT_MAX];
	uint64_t pid;
	uint64_t lease_ms; /* the holder's lease: stale after this long unchanged */
	uint64_t beat;     /* heartbeat counter */
};

/* Is @s a usable host id (also used for -o host_id=)? */
bool vmc_lockrec_host_ok(const char *s);

/* Render @r into @buf (VMC_LOCKREC_SIZE bytes). -EINVAL for a bad field. */
int vmc_lockrec_format(const struct vmc_lockrec *r, uint8_t buf[VMC_LOCKREC_SIZE]);

/*
 * Parse @len bytes. -EUCLEAN with a reason in @err for anything that is not
 * a complete record (a torn or foreign file): the caller then treats the
 * raw bytes as an opaque heartbeat.
 */
int vmc_lockrec_parse(struct vmc_lockrec *r, const uint8_t *buf, size_t len, char *err,
		      size_t errlen);

#endif
