/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VM locks across hosts. Several hosts may mount one backing directory (an
 * NFS export, say); a VM's files may be open for writing on only one of them
 * at a time. The host that writes holds the VM's lock file
 * (vm.INODE in VMC_FMT_LOCK_DIR at the datastore root, named by the VM
 * directory's inode number; lib/vmc_lockrec.h) and rewrites it
 * every quarter lease with a growing heartbeat; another host takes the lock
 * over only after watching the heartbeat stand still for a whole lease, or at
 * once when the record shows a holder on its own host that is gone (the same
 * boot and a dead pid, or an earlier boot).
 *
 * Every open for writing and every conversion holds a reference on the lease
 * of its VM; a second after the last reference is dropped the lock file is
 * removed (a tool that opens files one after another takes it once). A
 * holder that finds its lock file replaced (it was stopped for longer than a
 * lease and another host took over) marks the lease lost: writes through it
 * fail with EIO.
 */
#ifndef VMC_LEASE_H
#define VMC_LEASE_H

#include <stdbool.h>
#include <stddef.h>

struct vmc_lease;

/*
 * Start the heartbeat; lock files go below the backing directory @rootfd
 * (kept open by the caller). @host_id names this host (NULL: /etc/machine-id, or
 * the host name); @lease_ms 0 turns VM locking off.
 */
int vmc_lease_init(int rootfd, const char *host_id, unsigned lease_ms, char *err,
		   size_t errlen);
/* Release every lock (unmount) and stop the heartbeat. */
void vmc_lease_fini(void);
bool vmc_lease_enabled(void);
const char *vmc_lease_host(void);

/*
 * A reference on the lease of the VM directory @vmdirfd (@vm names it for
 * messages). -EBUSY with the holder in @msg when another host holds it.
 */
int vmc_lease_take(int vmdirfd, const char *vm, struct vmc_lease **out, char *msg, size_t msglen);
void vmc_lease_put(struct vmc_lease *l);
/* The lock was taken over by another host: writes must fail. NULL is fine. */
bool vmc_lease_lost(const struct vmc_lease *l);

/* Who holds the lock of @vmdirfd, for status: 0 and a description, or -ENOENT. */
int vmc_lease_describe(int vmdirfd, char *out, size_t outlen, bool *here);

#endif
