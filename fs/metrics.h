/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Counters of a mounted datastore and their Prometheus text exposition
 * (version 0.0.4): bytes and operations read and written (encrypted and
 * cleartext files), cipher throughput, errors by kind, encrypted and locked
 * VMs, key-provider calls, failures and round-trip times, rekeys and
 * conversions in progress. Served by `vmcryptfs-ctl metrics` and, with
 * -o metrics_port=N, over HTTP on 127.0.0.1:N (GET /metrics).
 *
 * Counters are relaxed atomics: one add per request on the data path.
 */
#ifndef VMC_METRICS_H
#define VMC_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

enum vmc_err_kind {
	VMC_ERR_EIO,
	VMC_ERR_ENOKEY,
	VMC_ERR_EKEYREJECTED,
	VMC_ERR_EACCES,
	VMC_ERR_ENOSPC,
	VMC_ERR_EBUSY,
	VMC_ERR_OTHER,
	VMC_ERR_KINDS,
};

struct vmc_metrics {
	atomic_uint_fast64_t read_bytes[2];  /* [0] cleartext, [1] encrypted files */
	atomic_uint_fast64_t write_bytes[2];
	atomic_uint_fast64_t read_ops[2];
	atomic_uint_fast64_t write_ops[2];
	atomic_uint_fast64_t cipher_bytes[2]; /* [0] encrypted, [1] decrypted */
	atomic_uint_fast64_t cipher_ns[2];
	atomic_uint_fast64_t errors[VMC_ERR_KINDS];
	atomic_uint_fast64_t rekeys;          /* finished, shallow and deep */
	atomic_uint_fast64_t conversions;     /* finished encrypt/decrypt of a VM */
	atomic_int rekeys_running;
	atomic_int conversions_running;
};

extern struct vmc_metrics vmc_metrics;

static inline void vmc_metric_add(atomic_uint_fast64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* Count an error answered to a request (only the kinds worth watching). */
void vmc_metric_error(int err);
/* Render every metric; the caller frees *out. */
int vmc_metrics_render(char **out);

int vmc_metrics_http_start(int port);
void vmc_metrics_http_stop(void);

#endif
