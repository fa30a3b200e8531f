// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Metrics of a mounted datastore (see metrics.h). Rendering walks the VM
 * directories for the encrypted/locked gauges; everything else is counters.
 * The HTTP endpoint is deliberately tiny: loopback only, one request per
 * connection, GET /metrics, bounded reads with a time-out.
 */
#include "metrics.h"
#include "vmcfs.h"
#include "vmc_keyring.h"
#include "vmc_log.h"
#include "vmc_vmstate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct vmc_metrics vmc_metrics;

void vmc_metric_error(int err)
{
	enum vmc_err_kind k;

	switch (err) {
	case 0:
	case ENOENT: /* lookups of names that do not exist: not a problem */
	case EEXIST:
	case ENODATA:
	case ENOTEMPTY:
	case EAGAIN:
	case EINTR:
	case ERANGE:
		return;
	case EIO:
		k = VMC_ERR_EIO;
		break;
	case ENOKEY:
		k = VMC_ERR_ENOKEY;
		break;
	case EKEYREJECTED:
		k = VMC_ERR_EKEYREJECTED;
		break;
	case EACCES:
	case EPERM:
		k = VMC_ERR_EACCES;
		break;
	case ENOSPC:
	case EDQUOT:
		k = VMC_ERR_ENOSPC;
		break;
	case EBUSY:
		k = VMC_ERR_EBUSY;
		break;
	default:
		k = VMC_ERR_OTHER;
	}
	vmc_metric_add(&vmc_metrics.errors[k], 1);
}

/* A growable text buffer. */
struct text {
	char *buf;
	size_t len, cap;
	int err;
};

__attribute__((format(printf, 2, 3)))
static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->err)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->err = -EINVAL;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		{
			size_t cap = t->cap * 2 + (size_t)n;
			char *nb = realloc(t->buf, cap);

			if (!nb) {
				t->err = -ENOMEM;
				return;
			}
			t->buf = nb;
			t->cap = cap;
		}
	}
}

static void head(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP vmcryptfs_%s %s\n# TYPE vmcryptfs_%s %s\n", name, help, name, type);
}

/* A label value: Prometheus escapes backslash, double quote and newline. */
static void label_escape(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in && o + 3 < len; in++) {
		if (*in == '\\' || *in == '"') {
			out[o++] = '\\';
			out[o++] = *in;
		} else if (*in == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

struct vm_count {
	int encrypted, locked, rekeying;
};

static int count_vm(void *arg, int dirfd, const char *rel)
{
	struct vm_count *vc = arg;
	struct vmc_vmstate st;
	char err[256], msg[256];
	enum vmc_kek_state ks;

	if (!strcmp(rel, ".") || vmc_vmstate_read(dirfd, VMC_FMT_STATE_NAME, &st, err,
						  sizeof(err)))
		return 0;
	vc->encrypted++;
	vc->rekeying += st.state == VMC_FMT_VMSTATE_REKEY;
	ks = vmc_keyring_peek(vmcfs.fs_keyring, st.current.provider, st.current.kek_id, msg,
			      sizeof(msg));
	vc->locked += ks == VMC_KEK_FAILED || ks == VMC_KEK_LOCKED;
	return 0;
}

/* Key-provider families; the statistics are read once so the groups agree. */
static void render_providers(struct text *t, const char *ds)
{
	size_t n = vmcfs.fs_cfg->nproviders;
	struct prov {
		char name[256];
		bool ok, up;
		struct vmc_kp_stats st;
	} *pv = calloc(n ? n : 1, sizeof(*pv));

	if (!pv) {
		t->err = -ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const char *name = vmcfs.fs_cfg->providers[i].name;
		char msg[512];

		pv[i].ok = !vmc_keyring_stats(vmcfs.fs_keyring, name, &pv[i].st);
		pv[i].up = !vmc_keyring_health(vmcfs.fs_keyring, name, msg, sizeof(msg));
		label_escape(name, pv[i].name, sizeof(pv[i].name));
	}
#define EACH_PROVIDER for (size_t i = 0; i < n; i++) if (pv[i].ok)
#define LABELS "datastore=\"%s\",provider=\"%s\""
	head(t, "provider_up", "gauge", "1 unless the provider's last call found it unreachable.");
	EACH_PROVIDER put(t, "vmcryptfs_provider_up{" LABELS "} %d\n", ds, pv[i].name, pv[i].up);
	head(t, "provider_requests_total", "counter", "Calls to the key provider.");
	EACH_PROVIDER put(t, "vmcryptfs_provider_requests_total{" LABELS "} %llu\n", ds,
			  pv[i].name, (unsigned long long)pv[i].st.calls);
	head(t, "provider_failures_total", "counter", "Calls that failed, by reason.");
	EACH_PROVIDER {
		put(t, "vmcryptfs_provider_failures_total{" LABELS ",reason=\"unreachable\"} %llu\n",
		    ds, pv[i].name, (unsigned long long)pv[i].st.transient);
		put(t, "vmcryptfs_provider_failures_total{" LABELS ",reason=\"refused\"} %llu\n",
		    ds, pv[i].name, (unsigned long long)(pv[i].st.failures - pv[i].st.transient));
	}
	head(t, "provider_seconds_total", "counter", "Time spent in calls to the provider.");
	EACH_PROVIDER put(t, "vmcryptfs_provider_seconds_total{" LABELS "} %.6f\n", ds,
			  pv[i].name, pv[i].st.seconds);
	head(t, "provider_last_seconds", "gauge", "Round trip of the last call.");
	EACH_PROVIDER put(t, "vmcryptfs_provider_last_seconds{" LABELS "} %.6f\n", ds,
			  pv[i].name, pv[i].st.last_seconds);
#undef LABELS
#undef EACH_PROVIDER
	free(pv);
}

int vmc_metrics_render(char **out)
{
	static const char *const kinds[] = { "cleartext", "encrypted" };
	static const char *const errs[] = { "eio", "enokey", "ekeyrejected", "eacces",
					    "enospc", "ebusy", "other" };
	struct text t = { .cap = 8192 };
	struct vm_count vc = { 0 };
	char ds[1024];

	t.buf = malloc(t.cap);
	if (!t.buf)
		return -ENOMEM;
	label_escape(vmcfs.fs_backing, ds, sizeof(ds));
#define PER_KIND(name, field)                                                                  \
	for (int i = 0; i < 2; i++)                                                            \
		put(&t, "vmcryptfs_" name "{datastore=\"%s\",file=\"%s\"} %llu\n", ds, kinds[i],   \
		    (unsigned long long)atomic_load(&vmc_metrics.field[i]))
	head(&t, "read_bytes_total", "counter", "Bytes read through the mount.");
	PER_KIND("read_bytes_total", read_bytes);
	head(&t, "written_bytes_total", "counter", "Bytes written through the mount.");
	PER_KIND("written_bytes_total", write_bytes);
	head(&t, "reads_total", "counter", "Read requests.");
	PER_KIND("reads_total", read_ops);
	head(&t, "writes_total", "counter", "Write requests.");
	PER_KIND("writes_total", write_ops);
#undef PER_KIND
	/* One group per family: the text format wants a family's samples together. */
	head(&t, "cipher_bytes_total", "counter",
	     "Bytes encrypted and decrypted (AES-256-XTS data units).");
	for (int i = 0; i < 2; i++)
		put(&t, "vmcryptfs_cipher_bytes_total{datastore=\"%s\",op=\"%s\"} %llu\n", ds,
		    i ? "decrypt" : "encrypt",
		    (unsigned long long)atomic_load(&vmc_metrics.cipher_bytes[i]));
	head(&t, "cipher_seconds_total", "counter", "Time spent encrypting and decrypting.");
	for (int i = 0; i < 2; i++)
		put(&t, "vmcryptfs_cipher_seconds_total{datastore=\"%s\",op=\"%s\"} %.6f\n", ds,
		    i ? "decrypt" : "encrypt",
		    (double)atomic_load(&vmc_metrics.cipher_ns[i]) / 1e9);
	head(&t, "errors_total", "counter", "Requests answered with an error, by kind.");
	for (int i = 0; i < VMC_ERR_KINDS; i++)
		put(&t, "vmcryptfs_errors_total{datastore=\"%s\",kind=\"%s\"} %llu\n", ds, errs[i],
		    (unsigned long long)atomic_load(&vmc_metrics.errors[i]));

	vmc_vm_foreach(count_vm, &vc);
	head(&t, "vms_encrypted", "gauge", "Encrypted VMs (with a key record).");
	put(&t, "vmcryptfs_vms_encrypted{datastore=\"%s\"} %d\n", ds, vc.encrypted);
	head(&t, "vms_locked", "gauge", "Encrypted VMs whose key is unavailable or locked.");
	put(&t, "vmcryptfs_vms_locked{datastore=\"%s\"} %d\n", ds, vc.locked);
	head(&t, "rekeys_in_progress", "gauge", "Rekeys running, or left unfinished in a VM.");
	put(&t, "vmcryptfs_rekeys_in_progress{datastore=\"%s\"} %d\n", ds,
	    vc.rekeying > atomic_load(&vmc_metrics.rekeys_running) ?
		    vc.rekeying : atomic_load(&vmc_metrics.rekeys_running));
	head(&t, "conversions_in_progress", "gauge", "Encrypt/decrypt/deep rekey operations running.");
	put(&t, "vmcryptfs_conversions_in_progress{datastore=\"%s\"} %d\n", ds,
	    atomic_load(&vmc_metrics.conversions_running));
	head(&t, "rekeys_total", "counter", "Rekeys finished.");
	put(&t, "vmcryptfs_rekeys_total{datastore=\"%s\"} %llu\n", ds,
	    (unsigned long long)atomic_load(&vmc_metrics.rekeys));
	head(&t, "conversions_total", "counter", "VM conversions finished.");
	put(&t, "vmcryptfs_conversions_total{datastore=\"%s\"} %llu\n", ds,
	    (unsigned long long)atomic_load(&vmc_metrics.conversions));

	render_providers(&t, ds);
	if (t.err) {
		free(t.buf);
		return t.err;
	}
	*out = t.buf;
	return 0;
}

/* --- HTTP on loopback ----------------------------------------------------- */

static struct {
	int fd;
	pthread_t thread;
	bool running;
	atomic_bool stop;
} http = { .fd = -1 };

static void http_answer(int c)
{
	char req[1024], hdr[256], *body = NULL;
	const char *status = "404 Not Found", *ctype = "text/plain";
	struct pollfd pfd = { .fd = c, .events = POLLIN };
	size_t blen = 0;
	ssize_t n = 0;

	if (poll(&pfd, 1, 2000) == 1)
		n = recv(c, req, sizeof(req) - 1, 0);
	if (n <= 0)
		return;
	req[n] = '\0';
	if (!strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET /metrics?", 13)) {
		if (!vmc_metrics_render(&body)) {
			status = "200 OK";
			ctype = "text/plain; version=0.0.4; charset=utf-8";
			blen = strlen(body);
		}
	}
	snprintf(hdr, sizeof(hdr), "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		 "Connection: close\r\n\r\n", status, ctype, blen);
	if (send(c, hdr, strlen(hdr), MSG_NOSIGNAL) > 0 && body)
		send(c, body, blen, MSG_NOSIGNAL);
	free(body);
}

static void *http_thread(void *arg)
{
	(void)arg;
	while (!atomic_load(&http.stop)) {
		int c = accept4(http.fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;
		}
		http_answer(c);
		close(c);
	}
	return NULL;
}

int vmc_metrics_http_start(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1;

	if (port <= 0 || port > 65535)
		return -EINVAL;
	http.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (http.fd < 0)
		return -errno;
	setsockopt(http.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(http.fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(http.fd, 8)) {
		int e = errno;

		vmc_err("metrics: cannot listen on 127.0.0.1:%d: %s", port, strerror(e));
		close(http.fd);
		http.fd = -1;
		return -e;
	}
	if (pthread_create(&http.thread, NULL, http_thread, NULL)) {
		close(http.fd);
		http.fd = -1;
		return -EAGAIN;
	}
	http.running = true;
	vmc_info("metrics on http://127.0.0.1:%d/metrics", port);
	return 0;
}

void vmc_metrics_http_stop(void)
{
	if (!http.running)
		return;
	atomic_store(&http.stop, true);
	shutdown(http.fd, SHUT_RDWR);
	pthread_join(http.thread, NULL);
	close(http.fd);
	http.running = false;
}
