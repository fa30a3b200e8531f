// SPDX-License-Identifier: GPL-2.0-or-later
/* Test crash points (see vmc_fault.h). */
#include "vmc_fault.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fault_point[64];
static long fault_at;
static atomic_long fault_hits;

void vmc_fault_init(void)
{
	const char *v = getenv("VMCRYPTFS_FAULT");
	const char *colon = v ? strrchr(v, ':') : NULL;

	if (!colon || colon == v || (size_t)(colon - v) >= sizeof(fault_point))
		return;
	memcpy(fault_point, v, (size_t)(colon - v));
	fault_point[colon - v] = '\0';
	fault_at = strtol(colon + 1, NULL, 10);
}

void vmc_fault(const char *point)
{
	if (!fault_point[0] || strcmp(point, fault_point))
		return;
	if (atomic_fetch_add(&fault_hits, 1) + 1 == fault_at) {
		static const char msg[] = "vmcryptfs: test crash point reached\n";

		if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
			/* dying anyway */
		}
		_exit(99);
	}
}
