/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Range locks over data units of one file: shared for reads, exclusive for
 * writes, so that requests on different regions of a disk image run in
 * parallel and only overlapping ones wait. A request is a small struct on the
 * caller's stack, linked into the lock's list while held.
 */
#ifndef VMC_RANGELOCK_H
#define VMC_RANGELOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct vmc_rl_req {
	uint64_t rq_start; /* first unit */
	uint64_t rq_end;   /* one past the last unit */
	bool rq_excl;
	struct vmc_rl_req *rq_next;
};

struct vmc_rangelock {
	pthread_mutex_t rl_mutex; /* protects rl_held */
	pthread_cond_t rl_cond;
	struct vmc_rl_req *rl_held;
};

#define VMC_RL_ALL UINT64_MAX

void vmc_rl_init(struct vmc_rangelock *rl);
void vmc_rl_destroy(struct vmc_rangelock *rl);
void vmc_rl_lock(struct vmc_rangelock *rl, struct vmc_rl_req *rq, uint64_t start, uint64_t end,
		 bool excl);
void vmc_rl_unlock(struct vmc_rangelock *rl, struct vmc_rl_req *rq);

#endif
