// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Range locks (see rangelock.h). The held list is short (one entry per
 * request in flight on the file), so a linear scan is cheaper than a tree.
 */
#include "rangelock.h"

void vmc_rl_init(struct vmc_rangelock *rl)
{
	pthread_mutex_init(&rl->rl_mutex, NULL);
	pthread_cond_init(&rl->rl_cond, NULL);
	rl->rl_held = NULL;
}

void vmc_rl_destroy(struct vmc_rangelock *rl)
{
	pthread_cond_destroy(&rl->rl_cond);
	pthread_mutex_destroy(&rl->rl_mutex);
}

static bool rl_conflicts(const struct vmc_rangelock *rl, const struct vmc_rl_req *rq)
{
	for (const struct vmc_rl_req *h = rl->rl_held; h; h = h->rq_next)
		if (h->rq_start < rq->rq_end && rq->rq_start < h->rq_end &&
		    (h->rq_excl || rq->rq_excl))
			return true;
	return false;
}

void vmc_rl_lock(struct vmc_rangelock *rl, struct vmc_rl_req *rq, uint64_t start, uint64_t end,
		 bool excl)
{
	rq->rq_start = start;
	rq->rq_end = end > start ? end : start + 1;
	rq->rq_excl = excl;
	pthread_mutex_lock(&rl->rl_mutex);
	while (rl_conflicts(rl, rq))
		pthread_cond_wait(&rl->rl_cond, &rl->rl_mutex);
	rq->rq_next = rl->rl_held;
	rl->rl_held = rq;
	pthread_mutex_unlock(&rl->rl_mutex);
}

void vmc_rl_unlock(struct vmc_rangelock *rl, struct vmc_rl_req *rq)
{
	struct vmc_rl_req **pp;

	pthread_mutex_lock(&rl->rl_mutex);
	for (pp = &rl->rl_held; *pp; pp = &(*pp)->rq_next)
		if (*pp == rq) {
			*pp = rq->rq_next;
			break;
		}
	pthread_cond_broadcast(&rl->rl_cond);
	pthread_mutex_unlock(&rl->rl_mutex);
}
