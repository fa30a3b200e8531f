/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Crash points for tests. With VMCRYPTFS_FAULT="POINT:N" in the daemon's
 * environment, the N-th time execution reaches vmc_fault("POINT") the process
 * ends at once with _exit(99), as if killed with SIGKILL at that instant
 * (nothing is flushed or unwound). Without the variable this costs one
 * predictable branch. Points are named where they are placed (rekey.c,
 * convert.c); tests use them to leave half-done operations on purpose.
 */
#ifndef VMC_FAULT_H
#define VMC_FAULT_H

void vmc_fault_init(void);
void vmc_fault(const char *point);

#endif
