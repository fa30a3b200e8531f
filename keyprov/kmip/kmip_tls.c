// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * TLS transport of the KMIP provider (see kmip_tls.h).
 *
 * Name resolution has no time-out of its own in getaddrinfo(3), so names
 * that are not IP literals are resolved in a short-lived detached thread;
 * the caller waits for it until its deadline and, if it gives up, the thread
 * frees the result itself when the lookup ends (the request is reference
 * counted). Such a thread may outlive the provider instance, so the first
 * one pins this plugin in memory (RTLD_NODELETE): the host's dlclose() must
 * not unmap code a thread still runs. IP literals never leave the calling
 * thread.
 */
#include "kmip_tls.h"
#include "kmip_msg.h"
#include "ttlv.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define ERR(...) snprintf(err, errlen, __VA_ARGS__)

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_msf(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* The last OpenSSL error as text (and the queue cleared). */
static const char *ssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (!e)
		snprintf(buf, len, "unknown error");
	else if (ERR_reason_error_string(e))
		snprintf(buf, len, "%s", ERR_reason_error_string(e));
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

/* --- Our socket BIO: recv/send(MSG_NOSIGNAL), errno kept for the caller ---- */

static int sock_write(BIO *b, const char *buf, size_t len, size_t *done)
{
	struct kmip_sock *s = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	s->err = 0;
	n = send(s->fd, buf, len, MSG_NOSIGNAL);
	if (n < 0) {
		s->err = errno;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			BIO_set_retry_write(b);
		return 0;
	}
	*done = (size_t)n;
	return 1;
}

static int sock_read(BIO *b, char *buf, size_t len, size_t *done)
{
	struct kmip_sock *s = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	s->err = 0;
	n = recv(s->fd, buf, len, 0);
	if (n < 0) {
		s->err = errno;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			BIO_set_retry_read(b);
		return 0;
	}
	if (n == 0) {
		s->eof = true;
		return 0;
	}
	*done = (size_t)n;
	return 1;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct kmip_sock *s = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_EOF:
		return s && s->eof;
	default:
		return 0;
	}
}

static int sock_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

/* --- TLS context ------------------------------------------------------------- */

/* Never prompt for a passphrase on the daemon's terminal: an encrypted key
 * is a configuration error. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(int *)u = 1;
	return -1;
}

/* @what "@path" must be a readable regular file. */
static int file_check(const char *what, const char *path, char *err, size_t errlen,
		      struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0) {
		ERR("%s \"%s\": cannot read: %s", what, path, strerror(errno));
		return -EINVAL;
	}
	if (fstat(fd, st) || !S_ISREG(st->st_mode)) {
		close(fd);
		ERR("%s \"%s\": not a regular file", what, path);
		return -EINVAL;
	}
	close(fd);
	return 0;
}

static void cert_warnings(SSL_CTX *ctx, const char *cert, const char *key,
			  const struct stat *keyst, char *warn, size_t warnlen)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);

	if (x && !(X509_get_extension_flags(x) & EXFLAG_XKUSAGE))
		snprintf(warn, warnlen, "certificate \"%s\" has no extended key usage "
			 "clientAuth; KMIP servers such as PyKMIP refuse such certificates", cert);
	else if (x && !(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT))
		snprintf(warn, warnlen, "certificate \"%s\" does not allow TLS client "
			 "authentication (extended key usage without clientAuth); the KMS will "
			 "likely refuse it", cert);
	else if (x && X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		snprintf(warn, warnlen, "certificate \"%s\" has expired", cert);
	else if (keyst->st_mode & (S_IRWXG | S_IRWXO))
		snprintf(warn, warnlen, "key \"%s\" is accessible to group or others "
			 "(mode %04o); chmod 600", key, (unsigned)(keyst->st_mode & 07777));
}

int kmip_tls_init(struct kmip_tls *t, const char *ca, const char *cert, const char *key,
		  char *err, size_t errlen, char *warn, size_t warnlen)
{
	struct stat st, keyst;
	char why[160];
	int prompted = 0, r;

	memset(t, 0, sizeof(*t));
	warn[0] = '\0';
	r = file_check("ca", ca, err, errlen, &st);
	if (!r)
		r = file_check("cert", cert, err, errlen, &st);
	if (!r)
		r = file_check("key", key, err, errlen, &keyst);
	if (r)
		return r;
	ERR_clear_error();
	t->ctx = SSL_CTX_new(TLS_client_method());
	t->bio_meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				   "vmcryptfs-kmip-socket");
	if (!t->ctx || !t->bio_meth || !BIO_meth_set_write_ex(t->bio_meth, sock_write) ||
	    !BIO_meth_set_read_ex(t->bio_meth, sock_read) ||
	    !BIO_meth_set_ctrl(t->bio_meth, sock_ctrl) ||
	    !BIO_meth_set_create(t->bio_meth, sock_create) ||
	    !SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION)) {
		ERR("cannot set up OpenSSL: %s", ssl_reason(why, sizeof(why)));
		r = -ENOMEM;
		goto fail;
	}
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CLEANSE_PLAINTEXT |
				    SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_default_passwd_cb(t->ctx, no_passphrase);
	SSL_CTX_set_default_passwd_cb_userdata(t->ctx, &prompted);
	r = -EINVAL;
	/* The configured CA only: no SSL_CTX_set_default_verify_paths(). */
	if (SSL_CTX_load_verify_locations(t->ctx, ca, NULL) != 1) {
		ERR("ca \"%s\": no usable CA certificate (%s)", ca, ssl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(t->ctx, cert) != 1) {
		ERR("cert \"%s\": not a usable PEM certificate (%s)", cert,
		    ssl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_last_error();

		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			ERR("key \"%s\" does not belong to certificate \"%s\"", key, cert);
		} else if (prompted) {
			ERR_clear_error();
			ERR("key \"%s\" is protected by a passphrase; vmcryptfs needs an "
			    "unencrypted key file (mode 0600)", key);
		} else {
			ERR("key \"%s\": not a usable PEM private key (%s)", key,
			    ssl_reason(why, sizeof(why)));
		}
		goto fail;
	}
	if (SSL_CTX_check_private_key(t->ctx) != 1) {
		ERR_clear_error();
		ERR("key \"%s\" does not belong to certificate \"%s\"", key, cert);
		goto fail;
	}
	SSL_CTX_set_default_passwd_cb_userdata(t->ctx, NULL);
	SSL_CTX_set_default_passwd_cb(t->ctx, NULL);
	cert_warnings(t->ctx, cert, key, &keyst, warn, warnlen);
	return 0;
fail:
	kmip_tls_free(t);
	return r;
}

void kmip_tls_free(struct kmip_tls *t)
{
	SSL_CTX_free(t->ctx);
	BIO_meth_free(t->bio_meth);
	t->ctx = NULL;
	t->bio_meth = NULL;
}

/* --- Name resolution with a deadline --------------------------------------- */

struct lookup {
	pthread_mutex_t lock;
	pthread_cond_t done_cv;
	int refs; /* the thread and the waiter */
	bool done;
	int rc;
	struct addrinfo *res;
	char host[256];
	char port[8];
};

static void lookup_put(struct lookup *l)
{
	bool last;

	pthread_mutex_lock(&l->lock);
	last = --l->refs == 0;
	pthread_mutex_unlock(&l->lock);
	if (!last)
		return;
	if (l->res)
		freeaddrinfo(l->res);
	pthread_cond_destroy(&l->done_cv);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

/* Keep this shared object mapped until the process exits. */
static void pin_plugin(void)
{
	Dl_info info;

	if (dladdr((void *)pin_plugin, &info) && info.dli_fname)
		dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

static void *lookup_thread(void *arg)
{
	struct lookup *l = arg;
	/* Every address family: a family without a route fails at once and the
	 * next address is tried (AI_ADDRCONFIG would hide "localhost" on a
	 * host whose only interface is the loopback). */
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(l->host, l->port, &hints, &res);

	pthread_mutex_lock(&l->lock);
	l->rc = rc;
	l->res = res;
	l->done = true;
	pthread_cond_signal(&l->done_cv);
	pthread_mutex_unlock(&l->lock);
	lookup_put(l);
	return NULL;
}

static int resolve(const char *host, uint16_t port, int64_t deadline, struct addrinfo **out,
		   char *err, size_t errlen)
{
	static pthread_once_t pinned = PTHREAD_ONCE_INIT;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	pthread_condattr_t ca;
	struct lookup *l;
	pthread_t th;
	char portstr[8];
	int r = 0;

	snprintf(portstr, sizeof(portstr), "%u", port);
	if (getaddrinfo(host, portstr, &hints, out) == 0)
		return 0; /* an IP literal */
	pthread_once(&pinned, pin_plugin);
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	snprintf(l->host, sizeof(l->host), "%s", host);
	snprintf(l->port, sizeof(l->port), "%s", portstr);
	pthread_mutex_init(&l->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->done_cv, &ca);
	pthread_condattr_destroy(&ca);
	l->refs = 2;
	if (pthread_create(&th, NULL, lookup_thread, l)) {
		l->refs = 1;
		lookup_put(l);
		return -ENOMEM;
	}
	pthread_detach(th);
	pthread_mutex_lock(&l->lock);
	while (!l->done) {
		struct timespec ts = { .tv_sec = deadline / 1000,
				       .tv_nsec = (deadline % 1000) * 1000000 };

		if (pthread_cond_timedwait(&l->done_cv, &l->lock, &ts) == ETIMEDOUT)
			break;
	}
	if (!l->done) {
		ERR("cannot resolve host name %s: no answer in time", host);
		r = -ETIMEDOUT;
	} else if (l->rc) {
		ERR("cannot resolve host name %s: %s", host, gai_strerror(l->rc));
		r = -EHOSTUNREACH;
	} else {
		*out = l->res;
		l->res = NULL;
	}
	pthread_mutex_unlock(&l->lock);
	lookup_put(l);
	return r;
}

/* --- Waiting ---------------------------------------------------------------- */

/* Wait until @fd is ready for @events or @deadline passes: 0 or -ETIMEDOUT. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int64_t left = deadline - now_ms();
		int n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int tcp_connect(const struct addrinfo *ai, int64_t deadline, int *fdp)
{
	int fd, one = 1, soerr = 0, r;
	socklen_t len = sizeof(soerr);

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    ai->ai_protocol);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
		*fdp = fd;
		return 0;
	}
	if (errno != EINPROGRESS) {
		r = -errno;
		close(fd);
		return r;
	}
	r = wait_fd(fd, POLLOUT, deadline);
	if (!r && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len))
		r = -errno;
	if (!r && soerr)
		r = -soerr;
	if (r) {
		close(fd);
		return r;
	}
	*fdp = fd;
	return 0;
}

void kmip_conn_init(struct kmip_conn *c)
{
	memset(c, 0, sizeof(*c));
	c->sock.fd = -1;
}

bool kmip_conn_is_open(const struct kmip_conn *c)
{
	return c->ssl != NULL;
}

void kmip_conn_close(struct kmip_conn *c)
{
	if (c->ssl) {
		/* One close_notify attempt; never wait for the peer's. */
		if (!c->sock.eof && !c->sock.err)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl); /* frees the BIO */
	}
	if (c->sock.fd >= 0)
		close(c->sock.fd);
	ERR_clear_error();
	kmip_conn_init(c);
}

const char *kmip_conn_version(const struct kmip_conn *c)
{
	return c->ssl ? SSL_get_version(c->ssl) : "-";
}

const char *kmip_conn_cipher(const struct kmip_conn *c)
{
	return c->ssl ? SSL_get_cipher_name(c->ssl) : "-";
}

/*
 * Classify a failed TLS call (@ret from SSL_connect/read/write) in @phase:
 * EOF and resets are -ECONNRESET, verification failures and alerts from the
 * peer -EACCES, anything else -EPROTO.
 */
static int tls_error(struct kmip_conn *c, int ret, const char *phase, char *err, size_t errlen)
{
	int e = SSL_get_error(c->ssl, ret);
	unsigned long oe = ERR_peek_last_error();
	long vr = SSL_get_verify_result(c->ssl);
	int reason = ERR_GET_REASON(oe);
	char why[160];

	if (vr != X509_V_OK) {
		ERR_clear_error();
		ERR("TLS verification of the server certificate failed: %s",
		    X509_verify_cert_error_string(vr));
		return -EACCES;
	}
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !oe) ||
	    (e == SSL_ERROR_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
		ERR_clear_error();
		if (c->sock.err)
			ERR("connection lost %s: %s", phase, strerror(c->sock.err));
		else
			ERR("the server closed the connection %s", phase);
		return c->sock.err == ETIMEDOUT ? -ETIMEDOUT : -ECONNRESET;
	}
	if (e == SSL_ERROR_SSL && reason >= SSL_AD_REASON_OFFSET &&
	    reason < SSL_AD_REASON_OFFSET + 256) {
		ERR("the server refused us %s (TLS alert: %s); does it trust our client "
		    "certificate, and share a TLS version and cipher with us?", phase,
		    ssl_reason(why, sizeof(why)));
		return -EACCES;
	}
	if (e == SSL_ERROR_SSL) {
		ERR("TLS failure %s: %s (is it a TLS server?)", phase, ssl_reason(why, sizeof(why)));
		return -EPROTO;
	}
	ERR_clear_error();
	ERR("TLS failure %s (SSL error %d)", phase, e);
	return -EPROTO;
}

/* Wait for what OpenSSL asked for after @ret; 0 to retry, or an error. */
static int tls_wait(struct kmip_conn *c, int ret, int64_t deadline, const char *phase,
		    int timeout_ms, char *err, size_t errlen)
{
	int e = SSL_get_error(c->ssl, ret), r;

	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
		return tls_error(c, ret, phase, err, errlen);
	ERR_clear_error();
	r = wait_fd(c->sock.fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
	if (r == -ETIMEDOUT)
		ERR("time-out %s (%.1f s)", phase, timeout_ms / 1000.0);
	else if (r)
		ERR("poll failed %s: %s", phase, strerror(-r));
	return r;
}

static bool is_ip(const char *s)
{
	struct in6_addr a;

	return inet_pton(AF_INET, s, &a) == 1 || inet_pton(AF_INET6, s, &a) == 1;
}

int kmip_conn_open(struct kmip_conn *c, struct kmip_tls *t, const char *host, uint16_t port,
		   const char *verify_name, int timeout_ms, char *err, size_t errlen,
		   double *connect_ms, double *handshake_ms)
{
	struct addrinfo *res = NULL;
	int64_t deadline = now_ms() + timeout_ms;
	double t0 = now_msf();
	BIO *bio;
	int r, ret;

	kmip_conn_close(c);
	r = resolve(host, port, deadline, &res, err, errlen);
	if (r)
		return r;
	r = -EHOSTUNREACH;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		r = tcp_connect(ai, deadline, &c->sock.fd);
		if (!r || r == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (r == -ETIMEDOUT) {
		ERR("time-out connecting (%.1f s)", timeout_ms / 1000.0);
		return r;
	}
	if (r) {
		ERR("cannot connect: %s", strerror(-r));
		return r == -ENETUNREACH || r == -ECONNREFUSED || r == -ECONNRESET ||
		       r == -EHOSTUNREACH ? r : -EHOSTUNREACH;
	}
	if (connect_ms)
		*connect_ms = now_msf() - t0;

	t0 = now_msf();
	deadline = now_ms() + timeout_ms;
	ERR_clear_error();
	c->ssl = SSL_new(t->ctx);
	bio = c->ssl ? BIO_new(t->bio_meth) : NULL;
	if (!bio) {
		ERR("cannot set up a TLS connection: out of memory");
		kmip_conn_close(c);
		return -ENOMEM;
	}
	BIO_set_data(bio, &c->sock);
	SSL_set_bio(c->ssl, bio, bio);
	SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (is_ip(verify_name)) {
		ret = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), verify_name);
	} else {
		ret = SSL_set1_host(c->ssl, verify_name);
		if (ret == 1)
			ret = SSL_set_tlsext_host_name(c->ssl, verify_name);
	}
	if (ret != 1) {
		ERR_clear_error();
		ERR("cannot verify server certificates for name \"%s\"", verify_name);
		kmip_conn_close(c);
		return -EINVAL;
	}
	for (;;) {
		ret = SSL_connect(c->ssl);
		if (ret == 1)
			break;
		r = tls_wait(c, ret, deadline, "during the TLS handshake", timeout_ms, err, errlen);
		if (r) {
			kmip_conn_close(c);
			return r;
		}
	}
	if (handshake_ms)
		*handshake_ms = now_msf() - t0;
	return 0;
}

bool kmip_conn_usable(struct kmip_conn *c)
{
	struct pollfd p;

	if (!c->ssl)
		return false;
	if (SSL_pending(c->ssl) > 0)
		return false;
	p.fd = c->sock.fd;
	p.events = POLLIN;
	p.revents = 0;
	/* Nothing may arrive on an idle connection but its end (or an alert). */
	return poll(&p, 1, 0) == 0;
}

/* Read exactly @len bytes into @buf; @got counts what arrived so far. */
static int read_exact(struct kmip_conn *c, uint8_t *buf, size_t len, int64_t deadline,
		      int timeout_ms, size_t *got, size_t total, char *err, size_t errlen)
{
	size_t off = 0;

	while (off < len) {
		size_t n = 0;
		int ret = SSL_read_ex(c->ssl, buf + off, len - off, &n), r;
		char phase[96];

		if (ret == 1) {
			off += n;
			*got += n;
			continue;
		}
		if (*got && total)
			snprintf(phase, sizeof(phase), "after %zu of %zu bytes of its answer", *got,
				 total);
		else if (*got)
			snprintf(phase, sizeof(phase), "after %zu bytes of its answer", *got);
		else
			snprintf(phase, sizeof(phase), "before answering");
		r = tls_wait(c, ret, deadline, phase, timeout_ms, err, errlen);
		if (r)
			return r;
	}
	return 0;
}

int kmip_conn_exchange(struct kmip_conn *c, const uint8_t *req, size_t reqlen, uint8_t **resp,
		       size_t *resplen, size_t max, void *(*alloc)(size_t),
		       void (*release)(void *, size_t), int timeout_ms, struct kmip_io *io,
		       char *err, size_t errlen)
{
	int64_t deadline = now_ms() + timeout_ms;
	uint8_t hdr[TTLV_HDR_LEN], *buf = NULL;
	size_t total = 0;
	char why[160];
	int r;

	memset(io, 0, sizeof(*io));
	*resp = NULL;
	ERR_clear_error();
	c->sock.err = 0;
	while (io->sent < reqlen) {
		size_t n = 0;
		int ret = SSL_write_ex(c->ssl, req + io->sent, reqlen - io->sent, &n);

		if (ret == 1) {
			io->sent += n;
			continue;
		}
		r = tls_wait(c, ret, deadline, "while sending the request", timeout_ms, err, errlen);
		if (r)
			goto fail;
	}
	r = read_exact(c, hdr, sizeof(hdr), deadline, timeout_ms, &io->got, 0, err, errlen);
	if (r)
		goto fail;
	r = ttlv_msg_len(hdr, KMIP_TAG_RESPONSE_MESSAGE, max, &total, why, sizeof(why));
	if (r) {
		ERR("not a KMIP server: its answer %s", why);
		goto fail;
	}
	buf = alloc(total);
	if (!buf) {
		ERR("out of memory for a %zu-byte answer", total);
		r = -ENOMEM;
		goto fail;
	}
	memcpy(buf, hdr, sizeof(hdr));
	r = read_exact(c, buf + sizeof(hdr), total - sizeof(hdr), deadline, timeout_ms, &io->got,
		       total, err, errlen);
	if (r)
		goto fail;
	c->answered++;
	*resp = buf;
	*resplen = total;
	return 0;
fail:
	if (buf)
		release(buf, total);
	kmip_conn_close(c);
	return r;
}
