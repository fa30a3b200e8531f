// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The "kmip" key provider: KEKs live on a KMIP 1.1 key manager, reached over
 * mutually authenticated TLS (docs/KMIP.md).
 *
 * A provider instance is a KMS cluster: a list of servers that replicate one
 * another. Requests go to the server that answered last and fail over, in
 * list order, on connection, TLS and time-out errors; a KMIP answer (even
 * "no such key" or "permission denied") is final. Each server has at most
 * one open connection, reused across requests and reopened when the server
 * closed it (checked before each use, and once more when a reused connection
 * fails before any answer byte arrived).
 *
 *   create_key: Create (AES-256, Name = [name-prefix]label) -> Activate -> Get.
 *               When a Create may have reached a server but its answer was
 *               lost (time-out, reset), the next attempt first Locates the
 *               name, so the key made by the lost request is used, not
 *               orphaned.
 *   get_key:    Get Attributes (State) -> Get. A Deactivated or Compromised
 *               key is refused (-EKEYREVOKED), a Destroyed one is -ENOKEY.
 *   test:       per server: connect, handshake, Discover Versions.
 *   list_keys:  Locate (Object Type Symmetric Key, Maximum Items 100,001;
 *               KMIP 1.1 Locate matches whole names only, and cannot page)
 *               -> Get Attributes (Name, State) of each key, KMIP_LIST_BATCH
 *               keys per request (one per request for a server that refuses
 *               batches), filtered here by name prefix; Destroyed keys are
 *               left out. Each step fails over on its own, so a listing
 *               survives a server going down halfway.
 *
 * Keys are never revoked or destroyed here.
 *
 * Threads: the plugin sets VMC_KP_F_SERIALIZE, so the host makes one call
 * per instance at a time. KEKs are fetched once per VM and cached by the
 * host, so parallel requests would buy little, while serial ones let the
 * failover found by one call serve the next instead of every waiting thread
 * paying the same time-out. k_lock enforces the same for callers that do
 * not honour the flag (tests, tools).
 *
 * Secrets: answers are read into host->secret_alloc memory and released with
 * host->secret_free (which wipes); key bytes go from there straight into the
 * host's buffer. Locate answers, which carry identifiers only and may be
 * megabytes long when listing keys, go to ordinary memory. Nothing here logs
 * message contents.
 */
#include "kmip_msg.h"
#include "kmip_tls.h"
#include "vmc_paths.h"
#include "vmcryptfs_keyprov.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KMIP_DEFAULT_PORT 5696
#define KMIP_MAX_SERVERS 16
#define KMIP_DEFAULT_TIMEOUT_MS 5000
#define KMIP_HOST_MAX 253
#define KMIP_PREFIX_MAX 64
#define KMIP_PATH_MAX 120 /* keeps messages naming a file within VMC_KP_ERR_MAX */

#define ERR(...) snprintf(err, VMC_KP_ERR_MAX, __VA_ARGS__)

/* One server of the cluster; lives as long as its instance. */
struct kmip_server {
	char host[KMIP_HOST_MAX + 1]; /* name or IP literal, no brackets */
	uint16_t port;
	char label[KMIP_HOST_MAX + 10]; /* "host:port" / "[v6]:port" for messages */
	char verify[KMIP_HOST_MAX + 1];  /* name or IP its certificate must carry */
	struct kmip_conn conn;           /* guarded by k_lock */
};

/* A provider instance (a KMS cluster), from open() to close(). */
struct kmip {
	const struct vmc_kp_host *host;
	char *name;
	struct kmip_tls tls;
	struct kmip_server srv[KMIP_MAX_SERVERS];
	size_t nsrv;
	int timeout_ms;
	char prefix[KMIP_PREFIX_MAX + 1];
	pthread_mutex_t k_lock; /* one request at a time; guards srv[].conn, preferred */
	size_t preferred;       /* the server that answered last */
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static bool transient(int r)
{
	return r == -EHOSTUNREACH || r == -ECONNREFUSED || r == -ETIMEDOUT ||
	       r == -ENETUNREACH || r == -ECONNRESET;
}

/* --- Configuration --------------------------------------------------------- */

static bool host_ok(const char *h)
{
	size_t n = strlen(h);

	if (!n || n > KMIP_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)h[i]) && !strchr(".-_", h[i]))
			return false;
	return true;
}

static int parse_port(const char *p, uint16_t *port)
{
	unsigned long v = 0;

	if (!*p || strlen(p) > 5)
		return -EINVAL;
	for (const char *c = p; *c; c++) {
		if (!isdigit((unsigned char)*c))
			return -EINVAL;
		v = v * 10 + (unsigned long)(*c - '0');
	}
	if (!v || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address. */
static int parse_server(const char *spec, struct kmip_server *s, char *err)
{
	char buf[KMIP_HOST_MAX + 16];
	const char *port = NULL;
	struct in6_addr a6;
	bool v6 = false;

	if (strlen(spec) >= sizeof(buf)) {
		ERR("server \"%.60s...\": too long", spec);
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", spec);
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');

		if (!close || (close[1] && close[1] != ':')) {
			ERR("server \"%s\": an IPv6 address is written [address] or "
			    "[address]:port", spec);
			return -EINVAL;
		}
		*close = '\0';
		port = close[1] ? close + 2 : NULL;
		memmove(buf, buf + 1, strlen(buf + 1) + 1);
		if (inet_pton(AF_INET6, buf, &a6) != 1) {
			ERR("server \"%s\": \"%s\" is not an IPv6 address", spec, buf);
			return -EINVAL;
		}
		v6 = true;
	} else if (strchr(buf, ':') != strrchr(buf, ':')) {
		if (inet_pton(AF_INET6, buf, &a6) != 1) {
			ERR("server \"%s\": not host:port (an IPv6 address with a port is written "
			    "[address]:port)", spec);
			return -EINVAL;
		}
		v6 = true;
	} else if (strchr(buf, ':')) {
		char *colon = strchr(buf, ':');

		*colon = '\0';
		port = colon + 1;
	}
	if (!v6 && !host_ok(buf)) {
		ERR("server \"%s\": \"%s\" is not a host name or IP address", spec, buf);
		return -EINVAL;
	}
	s->port = KMIP_DEFAULT_PORT;
	if (port && parse_port(port, &s->port)) {
		ERR("server \"%s\": port \"%s\" is not a number from 1 to 65535", spec, port);
		return -EINVAL;
	}
	snprintf(s->host, sizeof(s->host), "%s", buf);
	snprintf(s->label, sizeof(s->label), v6 ? "[%s]:%u" : "%s:%u", buf, s->port);
	return 0;
}

static int parse_timeout(const char *v, int *ms, char *err)
{
	char *end;
	double t;

	errno = 0;
	t = strtod(v, &end);
	if (errno || end == v || *end || !(t >= 0.1 && t <= 600)) {
		ERR("timeout \"%s\": a number of seconds from 0.1 to 600 is expected", v);
		return -EINVAL;
	}
	*ms = (int)(t * 1000 + 0.5);
	return 0;
}

static int path_opt(const char *opt, const char *v, const char **out, char *err)
{
	if (*out) {
		ERR("option \"%s\" is given twice", opt);
		return -EINVAL;
	}
	if (v[0] != '/' || strlen(v) > KMIP_PATH_MAX) {
		ERR("%s \"%.100s\": an absolute path of at most %d bytes is expected", opt, v,
		    KMIP_PATH_MAX);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static void kmip_close(void *inst);

static int kmip_open(const struct vmc_kp_host *host, const char *name,
		     const struct vmc_kp_param *params, size_t nparams, void **inst, char *err)
{
	const char *ca = NULL, *cert = NULL, *key = NULL, *verify = NULL, *prefix = NULL;
	const char *timeout = NULL;
	char warn[VMC_KP_ERR_MAX];
	struct kmip *k;
	int r = -EINVAL;

	k = calloc(1, sizeof(*k));
	if (!k || !(k->name = strdup(name))) {
		free(k);
		return -ENOMEM;
	}
	k->host = host;
	k->timeout_ms = KMIP_DEFAULT_TIMEOUT_MS;
	pthread_mutex_init(&k->k_lock, NULL);
	for (size_t i = 0; i < KMIP_MAX_SERVERS; i++)
		kmip_conn_init(&k->srv[i].conn);

	for (size_t i = 0; i < nparams; i++) {
		const char *o = params[i].name, *v = params[i].value;
		const char **single = NULL;

		if (!strcmp(o, "server")) {
			if (k->nsrv == KMIP_MAX_SERVERS) {
				ERR("at most %d servers per key provider", KMIP_MAX_SERVERS);
				goto fail;
			}
			if (parse_server(v, &k->srv[k->nsrv], err))
				goto fail;
			k->nsrv++;
			continue;
		}
		if (!strcmp(o, "ca") || !strcmp(o, "cert") || !strcmp(o, "key")) {
			if (path_opt(o, v, !strcmp(o, "ca") ? &ca : !strcmp(o, "cert") ? &cert : &key,
				     err))
				goto fail;
			continue;
		}
		if (!strcmp(o, "verify-name"))
			single = &verify;
		else if (!strcmp(o, "timeout"))
			single = &timeout;
		else if (!strcmp(o, "name-prefix"))
			single = &prefix;
		if (!single) {
			ERR("unknown option \"%.60s\" (the kmip provider takes: server, ca, cert, "
			    "key, verify-name, timeout, name-prefix)", o);
			goto fail;
		}
		if (*single) {
			ERR("option \"%s\" is given twice", o);
			goto fail;
		}
		*single = v;
	}
	if (!k->nsrv) {
		ERR("no server: give server = {\"host:port\", ...} (port %d by default)",
		    KMIP_DEFAULT_PORT);
		goto fail;
	}
	if (!ca || !cert || !key) {
		ERR("option \"%s\" is required (PEM file: %s)", !ca ? "ca" : !cert ? "cert" : "key",
		    !ca ? "the CA that signed the servers' certificates"
			: !cert ? "this host's client certificate" : "the client certificate's key");
		goto fail;
	}
	if (verify) {
		struct in6_addr a6;

		if (!host_ok(verify) && inet_pton(AF_INET6, verify, &a6) != 1) {
			ERR("verify-name \"%.100s\" is not a host name or IP address", verify);
			goto fail;
		}
	}
	if (timeout && parse_timeout(timeout, &k->timeout_ms, err))
		goto fail;
	if (prefix) {
		if (strlen(prefix) > KMIP_PREFIX_MAX) {
			ERR("name-prefix is longer than %d bytes", KMIP_PREFIX_MAX);
			goto fail;
		}
		for (const char *c = prefix; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f) {
				ERR("name-prefix contains a control character");
				goto fail;
			}
		snprintf(k->prefix, sizeof(k->prefix), "%s", prefix);
	}
	for (size_t i = 0; i < k->nsrv; i++)
		snprintf(k->srv[i].verify, sizeof(k->srv[i].verify), "%s",
			 verify ? verify : k->srv[i].host);
	r = kmip_tls_init(&k->tls, ca, cert, key, err, VMC_KP_ERR_MAX, warn, sizeof(warn));
	if (r)
		goto fail;
	if (warn[0])
		host->log(VMC_KP_LOG_WARNING, "key-provider \"%s\": %s", name, warn);
	host->log(VMC_KP_LOG_INFO, "key-provider \"%s\": KMIP cluster of %zu server(s), first "
		  "%s, time-out %.1f s", name, k->nsrv, k->srv[0].label, k->timeout_ms / 1000.0);
	*inst = k;
	return 0;
fail:
	kmip_close(k);
	return r;
}

static void kmip_close(void *inst)
{
	struct kmip *k = inst;

	if (!k)
		return;
	for (size_t i = 0; i < KMIP_MAX_SERVERS; i++)
		kmip_conn_close(&k->srv[i].conn);
	kmip_tls_free(&k->tls);
	pthread_mutex_destroy(&k->k_lock);
	free(k->name);
	free(k);
}

/* --- One request to one server --------------------------------------------- */

/* The outcome of a request to one server. */
struct call {
	bool answered;  /* the server gave a KMIP answer (success or failure) */
	bool maybe_run; /* no answer, but the server may have executed the request */
	bool stale;     /* a reused connection failed before any answer byte */
	double ms;      /* round trip, connection set-up excluded */
	struct kmip_resp resp;
	uint8_t *buf;   /* the answer, release with call_done() */
	size_t buflen;
	bool plain;     /* buf is ordinary memory (a Locate answer), not secret */
};

static void *plain_alloc(size_t len)
{
	return calloc(1, len ? len : 1);
}

static void plain_free(void *p, size_t len)
{
	(void)len;
	free(p);
}

static void call_done(struct kmip *k, struct call *c)
{
	if (c->buf)
		(c->plain ? plain_free : k->host->secret_free)(c->buf, c->buflen);
	c->buf = NULL;
}

static int server_connect(struct kmip *k, struct kmip_server *s, char *err)
{
	double cms = 0, hms = 0;
	int r = kmip_conn_open(&s->conn, &k->tls, s->host, s->port, s->verify, k->timeout_ms,
			       err, VMC_KP_ERR_MAX, &cms, &hms);

	if (!r)
		k->host->log(VMC_KP_LOG_INFO, "key-provider \"%s\": connected to %s (%s, %s) in "
			     "%.1f + %.1f ms", k->name, s->label, kmip_conn_version(&s->conn),
			     kmip_conn_cipher(&s->conn), cms, hms);
	return r;
}

/* Map a KMIP failure answer about @what to an errno and a message. */
static int kmip_failure(const struct kmip_resp *resp, const char *what, char *err)
{
	const char *rn = resp->has_reason ? kmip_reason_name(resp->reason) : "no reason given";
	const char *msg = resp->text[0] ? resp->text : "-";

	if (resp->status != KMIP_STATUS_FAILED) {
		ERR("%s: unexpected Result Status %u from the KMS", what, resp->status);
		return -EPROTO;
	}
	switch (resp->has_reason ? resp->reason : 0x100) {
	case KMIP_REASON_ITEM_NOT_FOUND:
		ERR("%s: not found on the KMS (Item Not Found: %s)", what, msg);
		return -ENOKEY;
	case KMIP_REASON_AUTH_NOT_SUCCESSFUL:
		ERR("the KMS rejected our client certificate (Authentication Not Successful: %s); "
		    "it needs a CA the server trusts and extended key usage clientAuth", msg);
		return -EACCES;
	case KMIP_REASON_PERMISSION_DENIED:
		ERR("%s: permission denied by the KMS (%s); keys belong to the client identity "
		    "(certificate CN) that created them", what, msg);
		return -EACCES;
	case KMIP_REASON_OBJECT_ARCHIVED:
		ERR("%s: archived on the KMS (%s); recover it there", what, msg);
		return -EKEYREVOKED;
	case 0x0B: /* Illegal Operation: not in the object's current state */
		ERR("%s: the KMS refuses it in the key's current state (Illegal Operation: %s)",
		    what, msg);
		return resp->op == KMIP_OP_CREATE || resp->op == KMIP_OP_LOCATE ? -EPROTO
										 : -EKEYREVOKED;
	case 0x04: case 0x05: case 0x06: case 0x07: case 0x08: case 0x0F: case 0x10:
	case 0x11: case 0x12:
		ERR("%s: the KMS does not accept our request (%s: %s)", what, rn, msg);
		return -EPROTO;
	default:
		ERR("%s: the KMS failed (%s: %s)", what, rn, msg);
		return -EIO;
	}
}

/*
 * Send request @req for @op to server @s, reconnecting as needed, and read
 * its answer, unchecked, into c->buf. Returns 0 or the transport error.
 * Idempotent requests are retried once, transparently, when a reused
 * connection turns out to be closed.
 */
static int server_exchange(struct kmip *k, struct kmip_server *s, const uint8_t *req,
			   size_t len, uint32_t op, bool idempotent, struct call *c, char *err)
{
	struct kmip_io io;
	double t0;
	int r;

	memset(c, 0, sizeof(*c));
	c->plain = op == KMIP_OP_LOCATE;
	for (int attempt = 0;; attempt++) {
		bool reused;

		if (kmip_conn_is_open(&s->conn) && !kmip_conn_usable(&s->conn)) {
			k->host->log(VMC_KP_LOG_DEBUG, "key-provider \"%s\": %s closed the idle "
				     "connection; reconnecting", k->name, s->label);
			kmip_conn_close(&s->conn);
		}
		reused = kmip_conn_is_open(&s->conn);
		if (!reused) {
			r = server_connect(k, s, err);
			if (r)
				return r;
		}
		t0 = now_ms();
		r = kmip_conn_exchange(&s->conn, req, len, &c->buf, &c->buflen, kmip_resp_max(op),
				       c->plain ? plain_alloc : k->host->secret_alloc,
				       c->plain ? plain_free : k->host->secret_free, k->timeout_ms,
				       &io, err, VMC_KP_ERR_MAX);
		if (!r)
			break;
		c->maybe_run = io.sent > 0;
		c->stale = reused && !io.got && r == -ECONNRESET;
		if (c->stale && idempotent && !attempt) {
			k->host->log(VMC_KP_LOG_DEBUG, "key-provider \"%s\": %s closed the reused "
				     "connection; reconnecting once", k->name, s->label);
			continue;
		}
		return r;
	}
	c->ms = now_ms() - t0;
	return 0;
}

/* An answer that does not parse: released, and the connection (whose framing
 * is in doubt) closed. Returns -EPROTO with the message in @err. */
static int call_malformed(struct kmip *k, struct kmip_server *s, struct call *c, uint32_t op,
			  const char *why, char *err)
{
	call_done(k, c);
	kmip_conn_close(&s->conn);
	c->maybe_run = true; /* something answered: the request may have run */
	ERR("not a valid KMIP answer to %s: %s", kmip_op_name(op), why);
	return -EPROTO;
}

/*
 * Send request @req for @op to server @s (see server_exchange). Returns 0
 * with the answer in @c (c->resp.status may still be a failure), or the
 * transport error, or -EPROTO for an answer that is not a KMIP answer to it.
 */
static int server_call(struct kmip *k, struct kmip_server *s, const uint8_t *req, size_t len,
		       uint32_t op, bool idempotent, struct call *c, char *err)
{
	char why[160];
	int r = server_exchange(k, s, req, len, op, idempotent, c, err);

	if (r)
		return r;
	if (kmip_resp_parse(c->buf, c->buflen, op, &c->resp, why, sizeof(why)))
		return call_malformed(k, s, c, op, why, err);
	c->answered = true;
	k->host->log(VMC_KP_LOG_DEBUG, "key-provider \"%s\": %s on %s: %s in %.1f ms", k->name,
		     kmip_op_name(op), s->label,
		     c->resp.status == KMIP_STATUS_SUCCESS ? "success"
			: c->resp.has_reason ? kmip_reason_name(c->resp.reason) : "failure",
		     c->ms);
	return 0;
}

/*
 * A request whose failure answer is mapped to an errno: 0 on success (answer
 * in @c, to be released with call_done), or -errno with *answered telling
 * whether it was the server's answer (no failover) or a transport error.
 */
static int server_do(struct kmip *k, struct kmip_server *s, const uint8_t *req, size_t len,
		     uint32_t op, bool idempotent, const char *what, struct call *c,
		     bool *answered, char *err)
{
	int r = server_call(k, s, req, len, op, idempotent, c, err);

	*answered = c->answered;
	if (r)
		return r;
	if (c->resp.status != KMIP_STATUS_SUCCESS) {
		r = kmip_failure(&c->resp, what, err);
		call_done(k, c);
	}
	return r;
}

/* --- The cluster ------------------------------------------------------------ */

typedef int (*server_fn)(struct kmip *k, struct kmip_server *s, void *ctx, bool *answered,
			 char *err);

/*
 * Run @fn on the servers, starting with the one that answered last, until one
 * answers. When none does, the result is the first error that is not a
 * reachability problem (TLS verification, not a KMIP server), else the last
 * one; every failure is logged.
 */
static int cluster_run(struct kmip *k, server_fn fn, void *ctx, char *err)
{
	char serr[VMC_KP_ERR_MAX], first_msg[VMC_KP_ERR_MAX] = "";
	int first_hard = 0, r = -EHOSTUNREACH;
	size_t first_idx = 0;

	for (size_t i = 0; i < k->nsrv; i++) {
		size_t idx = (k->preferred + i) % k->nsrv;
		struct kmip_server *s = &k->srv[idx];
		bool answered = false;

		serr[0] = '\0';
		r = fn(k, s, ctx, &answered, serr);
		if (!r || answered) {
			if (idx != k->preferred)
				k->host->log(VMC_KP_LOG_NOTICE, "key-provider \"%s\": now using "
					     "server %s", k->name, s->label);
			k->preferred = idx;
			if (r)
				ERR("%s: %s", s->label, serr);
			return r;
		}
		k->host->log(VMC_KP_LOG_WARNING, "key-provider \"%s\": server %s: %s%s", k->name,
			     s->label, serr, i + 1 < k->nsrv ? "; trying the next server" : "");
		if (!transient(r) && !first_hard) {
			first_hard = r;
			first_idx = idx;
			snprintf(first_msg, sizeof(first_msg), "%s", serr);
		}
		if (!first_hard) {
			first_idx = idx;
			snprintf(first_msg, sizeof(first_msg), "%s", serr);
		}
	}
	if (first_hard)
		r = first_hard;
	if (k->nsrv == 1)
		ERR("%s: %s", k->srv[first_idx].label, first_msg);
	else
		ERR("no KMS server answered (%zu tried; see the log): %s: %s", k->nsrv,
		    k->srv[first_idx].label, first_msg);
	return r;
}

/* --- get_key ----------------------------------------------------------------- */

struct get_ctx {
	const char *uid;
	uint8_t *kek;
	bool check_state;
};

/* Get (no state check) of @uid into @kek. */
static int fetch_key(struct kmip *k, struct kmip_server *s, const char *uid, uint8_t *kek,
		     bool *answered, char *err)
{
	uint8_t req[KMIP_REQ_MAX];
	char what[KMIP_UID_MAX + 16], why[160];
	const uint8_t *key;
	struct call c;
	size_t len;
	int r;

	snprintf(what, sizeof(what), "key %s", uid);
	r = kmip_req_get(req, sizeof(req), &len, uid);
	if (r) {
		ERR("key id \"%.60s\" cannot be sent to a KMIP server", uid);
		*answered = true;
		return -EINVAL;
	}
	r = server_do(k, s, req, len, KMIP_OP_GET, true, what, &c, answered, err);
	if (r)
		return r;
	r = kmip_payload_key(&c.resp, uid, &key, VMC_KP_KEK_LEN, why, sizeof(why));
	if (r)
		ERR("Get of key %s: %s", uid, why);
	else
		memcpy(kek, key, VMC_KP_KEK_LEN);
	call_done(k, &c);
	return r;
}

static int get_on(struct kmip *k, struct kmip_server *s, void *arg, bool *answered, char *err)
{
	struct get_ctx *g = arg;
	uint8_t req[KMIP_REQ_MAX];
	char what[KMIP_UID_MAX + 16], why[160];
	uint32_t state;
	struct call c;
	size_t len;
	int r;

	if (g->check_state) {
		snprintf(what, sizeof(what), "key %s", g->uid);
		r = kmip_req_get_state(req, sizeof(req), &len, g->uid);
		if (r) {
			ERR("key id \"%.60s\" cannot be sent to a KMIP server", g->uid);
			*answered = true;
			return -EINVAL;
		}
		r = server_call(k, s, req, len, KMIP_OP_GET_ATTRIBUTES, true, &c, err);
		*answered = c.answered;
		if (r)
			return r;
		if (c.resp.status != KMIP_STATUS_SUCCESS) {
			if (c.resp.has_reason && (c.resp.reason == KMIP_REASON_OPERATION_NOT_SUPPORTED ||
						  c.resp.reason == KMIP_REASON_FEATURE_NOT_SUPPORTED)) {
				/* The server cannot tell; let Get decide. */
				g->check_state = false;
				call_done(k, &c);
				return fetch_key(k, s, g->uid, g->kek, answered, err);
			}
			r = kmip_failure(&c.resp, what, err);
			call_done(k, &c);
			return r;
		}
		r = kmip_payload_state(&c.resp, &state, why, sizeof(why));
		call_done(k, &c);
		if (r) {
			ERR("Get Attributes of key %s: %s", g->uid, why);
			return r;
		}
		switch (state) {
		case KMIP_STATE_PRE_ACTIVE:
		case KMIP_STATE_ACTIVE:
			break;
		case KMIP_STATE_DEACTIVATED:
		case KMIP_STATE_COMPROMISED:
			ERR("key %s is %s on the KMS (revoked); it may not be used", g->uid,
			    kmip_state_name(state));
			return -EKEYREVOKED;
		case KMIP_STATE_DESTROYED:
		case KMIP_STATE_DESTROYED_COMPROMISED:
			ERR("key %s is %s on the KMS", g->uid, kmip_state_name(state));
			return -ENOKEY;
		default:
			ERR("key %s is in unknown state %u on the KMS", g->uid, state);
			return -EKEYREVOKED;
		}
	}
	return fetch_key(k, s, g->uid, g->kek, answered, err);
}

static int kmip_get_key(void *inst, const char *id, uint8_t *kek, char *err)
{
	struct kmip *k = inst;
	struct get_ctx g = { .uid = id, .kek = kek, .check_state = true };
	int r;

	pthread_mutex_lock(&k->k_lock);
	r = cluster_run(k, get_on, &g, err);
	pthread_mutex_unlock(&k->k_lock);
	return r;
}

/* --- create_key -------------------------------------------------------------- */

struct create_ctx {
	char name[KMIP_PREFIX_MAX + VMC_KP_ID_MAX];
	bool maybe_created; /* a Create may have run without our seeing its answer */
	char uid[KMIP_UID_MAX + 1];
	uint8_t *kek;
};

/* Locate the key a lost Create made: 0 with c->uid, -ENOKEY if none. */
static int locate_orphan(struct kmip *k, struct kmip_server *s, struct create_ctx *cc,
			 bool *answered, char *err)
{
	uint8_t req[KMIP_REQ_MAX];
	char why[160], what[KMIP_NAME_MAX + 16];
	struct call c;
	size_t len, n;
	int r;

	snprintf(what, sizeof(what), "Locate of \"%s\"", cc->name);
	r = kmip_req_locate(req, sizeof(req), &len, cc->name);
	if (!r)
		r = server_do(k, s, req, len, KMIP_OP_LOCATE, true, what, &c, answered, err);
	if (r)
		return r;
	r = kmip_payload_uid(&c.resp, cc->uid, why, sizeof(why));
	n = kmip_payload_uid_count(&c.resp);
	call_done(k, &c);
	if (r == -ENOKEY)
		return r;
	if (r) {
		ERR("Locate of \"%s\": %s", cc->name, why);
		return r;
	}
	k->host->log(VMC_KP_LOG_NOTICE, "key-provider \"%s\": key %s named \"%s\" was made by a "
		     "request whose answer was lost; using it%s", k->name, cc->uid, cc->name,
		     n > 1 ? " (the newest of several with that name)" : "");
	return 0;
}

static int create_on(struct kmip *k, struct kmip_server *s, void *arg, bool *answered,
		     char *err)
{
	struct create_ctx *cc = arg;
	uint8_t req[KMIP_REQ_MAX];
	char why[160], what[KMIP_UID_MAX + 32];
	bool found = false;
	struct call c;
	size_t len;
	int r;

	for (int attempt = 0; !found; attempt++) {
		if (cc->maybe_created) {
			r = locate_orphan(k, s, cc, answered, err);
			if (!r) {
				found = true;
				break;
			}
			if (r != -ENOKEY)
				return r;
		}
		r = kmip_req_create(req, sizeof(req), &len, cc->name);
		if (r) {
			ERR("cannot encode a Create request for \"%.60s\"", cc->name);
			*answered = true;
			return r;
		}
		r = server_do(k, s, req, len, KMIP_OP_CREATE, false, "Create", &c, answered, err);
		if (!r)
			break;
		if (c.maybe_run)
			cc->maybe_created = true;
		if (!(c.stale && !attempt))
			return r;
		k->host->log(VMC_KP_LOG_DEBUG, "key-provider \"%s\": %s closed the reused "
			     "connection during Create; retrying", k->name, s->label);
	}
	if (!found) {
		r = kmip_payload_uid(&c.resp, cc->uid, why, sizeof(why));
		call_done(k, &c);
		if (r) {
			ERR("Create: %s", why);
			return -EPROTO;
		}
	}
	/* From here on a retry must find this key, not make another. */
	cc->maybe_created = true;

	snprintf(what, sizeof(what), "Activate of key %s", cc->uid);
	r = kmip_req_activate(req, sizeof(req), &len, cc->uid);
	if (!r)
		r = server_do(k, s, req, len, KMIP_OP_ACTIVATE, true, what, &c, answered, err);
	if (!r)
		call_done(k, &c);
	else if (!*answered)
		return r;
	else
		k->host->log(found ? VMC_KP_LOG_INFO : VMC_KP_LOG_WARNING,
			     "key-provider \"%s\": %s; using the key as it is", k->name, err);
	return fetch_key(k, s, cc->uid, cc->kek, answered, err);
}

static void hex(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

static int kmip_create_key(void *inst, const char *label, char *id, uint8_t *kek, char *err)
{
	struct kmip *k = inst;
	struct create_ctx cc = { .kek = kek };
	int r;

	if (label && label[0]) {
		snprintf(cc.name, sizeof(cc.name), "%s%s", k->prefix, label);
	} else {
		uint8_t rnd[16];
		char h[33];

		/* Still a unique name, so a lost Create can be found. */
		r = k->host->random(rnd, sizeof(rnd));
		if (r)
			return r;
		hex(rnd, sizeof(rnd), h);
		snprintf(cc.name, sizeof(cc.name), "%svmcryptfs-%s", k->prefix, h);
	}
	if (strlen(cc.name) > KMIP_NAME_MAX) {
		ERR("key name \"%.60s...\" is longer than %u bytes", cc.name, KMIP_NAME_MAX);
		return -EINVAL;
	}
	pthread_mutex_lock(&k->k_lock);
	r = cluster_run(k, create_on, &cc, err);
	pthread_mutex_unlock(&k->k_lock);
	if (!r) {
		snprintf(id, VMC_KP_ID_MAX, "%s", cc.uid);
		k->host->log(VMC_KP_LOG_INFO, "key-provider \"%s\": created key %s \"%s\"", k->name,
			     cc.uid, cc.name);
	}
	return r;
}

/* --- test -------------------------------------------------------------------- */

static int test_server(struct kmip *k, struct kmip_server *s, char *line, size_t linelen)
{
	char err[VMC_KP_ERR_MAX], vers[96] = "", tls[96];
	int32_t v[16][2];
	double cms = 0, hms = 0;
	uint8_t req[KMIP_REQ_MAX];
	bool has11 = false;
	struct call c;
	size_t len, n;
	int r;

	kmip_conn_close(&s->conn);
	r = kmip_conn_open(&s->conn, &k->tls, s->host, s->port, s->verify, k->timeout_ms, err,
			   sizeof(err), &cms, &hms);
	if (r) {
		snprintf(line, linelen, "server %s: %s: %s", s->label,
			 transient(r) ? "unreachable" : r == -EACCES ? "TLS rejected"
			 : r == -EPROTO ? "not a KMIP server" : "failed", err);
		return r;
	}
	/* Now: a failed exchange closes the connection. */
	snprintf(tls, sizeof(tls), "%s, %s", kmip_conn_version(&s->conn),
		 kmip_conn_cipher(&s->conn));
	r = kmip_req_discover(req, sizeof(req), &len);
	if (!r)
		r = server_call(k, s, req, len, KMIP_OP_DISCOVER_VERSIONS, true, &c, err);
	if (r) {
		snprintf(line, linelen, "server %s: TLS ok (%s) but %s", s->label, tls, err);
		return r;
	}
	if (c.resp.status != KMIP_STATUS_SUCCESS) {
		if (c.resp.has_reason && c.resp.reason == KMIP_REASON_OPERATION_NOT_SUPPORTED) {
			snprintf(vers, sizeof(vers), "KMIP 1.x (no Discover Versions)");
		} else {
			r = kmip_failure(&c.resp, "Discover Versions", err);
			snprintf(line, linelen, "server %s: TLS ok (%s) but %s%s", s->label, tls,
				 r == -EACCES ? "authentication rejected: " : "", err);
			call_done(k, &c);
			return r;
		}
	} else {
		n = kmip_payload_versions(&c.resp, v, 16);
		snprintf(vers, sizeof(vers), "KMIP 1.1 (server offers");
		for (size_t i = 0; i < n; i++) {
			size_t l = strlen(vers);

			snprintf(vers + l, sizeof(vers) - l, " %d.%d", v[i][0], v[i][1]);
			has11 |= v[i][0] == 1 && v[i][1] == 1;
		}
		strncat(vers, ")", sizeof(vers) - strlen(vers) - 1);
		if (n && !has11) {
			snprintf(line, linelen, "server %s: TLS ok (%s) but it does not speak "
				 "KMIP 1.1 (%s)", s->label, tls, vers + 9);
			call_done(k, &c);
			return -EPROTO;
		}
	}
	snprintf(line, linelen, "server %s: ok, %s %s, %s, connect %.1f ms, TLS handshake %.1f ms, "
		 "round trip %.1f ms", s->label, kmip_conn_version(&s->conn),
		 kmip_conn_cipher(&s->conn), vers, cms, hms, c.ms);
	call_done(k, &c);
	return 0;
}

static int kmip_test(void *inst, void (*report)(void *arg, const char *line), void *arg,
		     char *err)
{
	struct kmip *k = inst;
	char line[512];
	int r = 0, ok = 0;

	pthread_mutex_lock(&k->k_lock);
	for (size_t i = 0; i < k->nsrv; i++) {
		int sr = test_server(k, &k->srv[i], line, sizeof(line));

		report(arg, line);
		if (!sr)
			ok++;
		else if (!r || (transient(r) && !transient(sr)))
			r = sr;
	}
	pthread_mutex_unlock(&k->k_lock);
	if (ok)
		return 0;
	ERR("none of the %zu server(s) is usable", k->nsrv);
	return r;
}

/* --- list_keys --------------------------------------------------------------- */

/* The identifiers one Locate found: unique, in the KMS's order. One listing. */
struct list_ids {
	char **ids;
	size_t n, cap;
};

static void list_ids_free(struct list_ids *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->ids[i]);
	free(l->ids);
	memset(l, 0, sizeof(*l));
}

static int list_ids_add(void *arg, const char *uid)
{
	struct list_ids *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		char **ids = realloc(l->ids, cap * sizeof(*ids));

		if (!ids)
			return -ENOMEM;
		l->ids = ids;
		l->cap = cap;
	}
	l->ids[l->n] = strdup(uid);
	if (!l->ids[l->n])
		return -ENOMEM;
	l->n++;
	return 0;
}

struct id_pos {
	const char *id;
	size_t pos;
};

static int by_id(const void *a, const void *b)
{
	const struct id_pos *x = a, *y = b;
	int c = strcmp(x->id, y->id);

	return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

/* Drop repeated identifiers (keeping the first of each), so that no key is
 * reported twice by a server that repeats one. */
static int list_ids_unique(struct list_ids *l)
{
	struct id_pos *order;
	size_t n = 0;

	if (l->n < 2)
		return 0;
	order = malloc(l->n * sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++)
		order[i] = (struct id_pos){ l->ids[i], i };
	qsort(order, l->n, sizeof(*order), by_id);
	/* Each run of equal ids keeps its first (lowest position), which is
	 * what the rest of the run is compared with: never a freed one. */
	for (size_t i = 1, keep = 0; i < l->n; i++) {
		if (strcmp(order[i].id, order[keep].id)) {
			keep = i;
			continue;
		}
		free(l->ids[order[i].pos]);
		l->ids[order[i].pos] = NULL;
	}
	free(order);
	for (size_t i = 0; i < l->n; i++)
		if (l->ids[i])
			l->ids[n++] = l->ids[i];
	l->n = n;
	return 0;
}

static int locate_keys_on(struct kmip *k, struct kmip_server *s, void *arg, bool *answered,
			  char *err)
{
	struct list_ids *l = arg;
	uint8_t req[KMIP_REQ_MAX];
	char why[160];
	struct call c;
	size_t len, n;
	int r;

	r = kmip_req_locate_keys(req, sizeof(req), &len, (int32_t)KMIP_LIST_MAX + 1);
	if (r) {
		ERR("cannot encode a Locate request");
		*answered = true;
		return r;
	}
	r = server_call(k, s, req, len, KMIP_OP_LOCATE, true, &c, err);
	*answered = c.answered;
	if (r)
		return r;
	if (c.resp.status != KMIP_STATUS_SUCCESS) {
		if (c.resp.has_reason && c.resp.reason == KMIP_REASON_RESPONSE_TOO_LARGE) {
			ERR("the KMS will not list its symmetric keys in one answer (Response Too "
			    "Large: %s); KMIP 1.1 cannot page a Locate", c.resp.text[0] ?
			    c.resp.text : "-");
			r = -E2BIG;
		} else {
			r = kmip_failure(&c.resp, "Locate of the symmetric keys", err);
		}
		call_done(k, &c);
		return r;
	}
	n = kmip_payload_uid_count(&c.resp);
	if (n > KMIP_LIST_MAX) {
		ERR("the KMS has more than %u symmetric keys for us; vmcryptfs lists at most %u "
		    "(KMIP 1.1 cannot page a Locate)", KMIP_LIST_MAX, KMIP_LIST_MAX);
		call_done(k, &c);
		return -E2BIG;
	}
	list_ids_free(l);
	r = kmip_payload_uid_each(&c.resp, list_ids_add, l, why, sizeof(why));
	call_done(k, &c);
	if (r == -EPROTO)
		ERR("Locate of the symmetric keys: %s", why);
	else if (r)
		ERR("out of memory for %zu key identifiers", n);
	else
		r = list_ids_unique(l);
	return r;
}

/* What the listing does with one key of a batch. */
enum list_verdict {
	LIST_PENDING,  /* not answered yet */
	LIST_NAMED,    /* reported with its label */
	LIST_UNNAMED,  /* reported without a label (no name; "" prefix only) */
	LIST_SKIPPED,  /* not ours, destroyed, gone or hidden */
};

/* One batch of keys of a listing, and the listing's running totals. */
struct list_batch {
	const struct list_ids *l;
	const char *prefix;  /* the name prefix matched: name-prefix + label prefix */
	size_t first, n;     /* keys l->ids[first .. first + n) */
	enum list_verdict verdict[KMIP_LIST_BATCH];
	char name[KMIP_LIST_BATCH][KMIP_NAME_MAX + 1];
	bool single;         /* the KMS refused a batch: one key per request */
	size_t requests, gone, denied, destroyed;
};

/* Judge the answer @r about key @pos of batch @b. */
static int list_judge(struct kmip *k, struct list_batch *b, size_t pos,
		      const struct kmip_resp *r, char *err)
{
	const char *uid = b->l->ids[b->first + pos];
	char why[160];
	uint32_t state;
	size_t names;
	int rc;

	if (r->status != KMIP_STATUS_SUCCESS && r->has_reason &&
	    (r->reason == KMIP_REASON_ITEM_NOT_FOUND ||
	     r->reason == KMIP_REASON_PERMISSION_DENIED)) {
		/* Deleted since the Locate, or visible but not readable by us. */
		if (r->reason == KMIP_REASON_ITEM_NOT_FOUND)
			b->gone++;
		else
			b->denied++;
		b->verdict[pos] = LIST_SKIPPED;
		return 0;
	}
	if (r->status != KMIP_STATUS_SUCCESS) {
		char what[KMIP_UID_MAX + 32];

		snprintf(what, sizeof(what), "Get Attributes of key %s", uid);
		return kmip_failure(r, what, err);
	}
	/* The identifier is optional in the answer; if there, it must be ours. */
	if (kmip_payload_uid_count(r)) {
		char got[KMIP_UID_MAX + 1];

		rc = kmip_payload_uid(r, got, why, sizeof(why));
		if (rc) {
			ERR("Get Attributes of key %s: %s", uid, why);
			return rc;
		}
		if (strcmp(got, uid)) {
			ERR("Get Attributes of key %s: answered about another object (%s)", uid,
			    got);
			return -EPROTO;
		}
	}
	rc = kmip_payload_state(r, &state, why, sizeof(why));
	if (rc) {
		ERR("Get Attributes of key %s: %s", uid, why);
		return rc;
	}
	if (state == KMIP_STATE_DESTROYED || state == KMIP_STATE_DESTROYED_COMPROMISED) {
		b->destroyed++;
		b->verdict[pos] = LIST_SKIPPED;
		return 0;
	}
	rc = kmip_payload_name(r, b->prefix, b->name[pos], &names, why, sizeof(why));
	if (rc == -EPROTO) {
		ERR("Get Attributes of key %s: %s", uid, why);
		return rc;
	}
	if (!rc)
		b->verdict[pos] = LIST_NAMED;
	else
		b->verdict[pos] = !names && !b->prefix[0] ? LIST_UNNAMED : LIST_SKIPPED;
	return 0;
}

/*
 * Get Attributes (Name, State) of the keys of batch @b still pending, on
 * server @s: as many per request as the batch holds, and again for those a
 * server that stops at a failure left unanswered. Keys judged stay judged
 * when cluster_run moves on to the next server.
 */
static int list_batch_on(struct kmip *k, struct kmip_server *s, void *arg, bool *answered,
			 char *err)
{
	struct list_batch *b = arg;
	struct kmip_resp items[KMIP_LIST_BATCH];
	const char *uids[KMIP_LIST_BATCH];
	size_t pos[KMIP_LIST_BATCH], count;
	uint8_t req[KMIP_BATCH_REQ_MAX];
	char why[160];
	struct call c;
	size_t len;

	for (;;) {
		size_t m = 0;
		int r;

		for (size_t i = 0; i < b->n && !(b->single && m); i++)
			if (b->verdict[i] == LIST_PENDING) {
				pos[m] = i;
				uids[m++] = b->l->ids[b->first + i];
			}
		if (!m)
			return 0;
		r = kmip_req_get_names(req, sizeof(req), &len, uids, m);
		if (r) {
			ERR("cannot encode a Get Attributes request for %zu key(s)", m);
			*answered = true;
			return r;
		}
		b->requests++;
		*answered = false; /* this request's transport errors fail over */
		r = server_exchange(k, s, req, len, KMIP_OP_GET_ATTRIBUTES, true, &c, err);
		if (r)
			return r;
		if (kmip_resp_parse_batch(c.buf, c.buflen, KMIP_OP_GET_ATTRIBUTES, m, items, &count,
					  why, sizeof(why)))
			return call_malformed(k, s, &c, KMIP_OP_GET_ATTRIBUTES, why, err);
		*answered = true;
		k->host->log(VMC_KP_LOG_DEBUG, "key-provider \"%s\": Get Attributes of %zu key(s) "
			     "on %s: %zu answer(s) in %.1f ms", k->name, m, s->label, count, c.ms);
		if (m > 1 && count == 1 && !items[0].has_batch_id) {
			/* The message as a whole was answered, not its items. */
			const struct kmip_resp *f = &items[0];

			if (f->status != KMIP_STATUS_SUCCESS && f->has_reason &&
			    (f->reason == KMIP_REASON_INVALID_MESSAGE ||
			     f->reason == KMIP_REASON_OPERATION_NOT_SUPPORTED ||
			     f->reason == KMIP_REASON_FEATURE_NOT_SUPPORTED)) {
				k->host->log(VMC_KP_LOG_NOTICE, "key-provider \"%s\": %s does not "
					     "take batched requests (%s: %s); asking about one key "
					     "at a time", k->name, s->label,
					     kmip_reason_name(f->reason), f->text[0] ? f->text : "-");
				b->single = true;
				call_done(k, &c);
				continue;
			}
			if (f->status != KMIP_STATUS_SUCCESS) {
				r = kmip_failure(f, "Get Attributes", err);
				call_done(k, &c);
				return r;
			}
		}
		for (size_t i = 0; i < count; i++) {
			if (m > 1 && !items[i].has_batch_id) {
				ERR("Get Attributes of %zu keys: an answer without its Unique "
				    "Batch Item ID", m);
				r = -EPROTO;
			} else {
				r = list_judge(k, b, pos[m > 1 ? items[i].batch_id : 0], &items[i],
					       err);
			}
			if (r) {
				call_done(k, &c);
				return r;
			}
		}
		call_done(k, &c);
	}
}

static int kmip_list_keys(void *inst, const char *label_prefix,
			  int (*cb)(void *arg, const char *id, const char *label), void *arg,
			  char *err)
{
	struct kmip *k = inst;
	char prefix[KMIP_PREFIX_MAX + VMC_KP_ID_MAX];
	size_t plen = strlen(k->prefix), listed = 0;
	struct list_ids l = { 0 };
	struct list_batch *b;
	double t0 = now_ms();
	int r;

	snprintf(prefix, sizeof(prefix), "%s%s", k->prefix, label_prefix ? label_prefix : "");
	if (strlen(prefix) > KMIP_NAME_MAX)
		return 0; /* no name can start with it */
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->l = &l;
	b->prefix = prefix;
	pthread_mutex_lock(&k->k_lock);
	r = cluster_run(k, locate_keys_on, &l, err);
	pthread_mutex_unlock(&k->k_lock);
	/* Batch by batch, with the lock released for the callbacks. */
	for (size_t first = 0; !r && first < l.n; first += b->n) {
		b->first = first;
		b->n = l.n - first < KMIP_LIST_BATCH ? l.n - first : KMIP_LIST_BATCH;
		for (size_t i = 0; i < b->n; i++)
			b->verdict[i] = LIST_PENDING;
		pthread_mutex_lock(&k->k_lock);
		r = cluster_run(k, list_batch_on, b, err);
		pthread_mutex_unlock(&k->k_lock);
		for (size_t i = 0; !r && i < b->n; i++) {
			if (b->verdict[i] == LIST_NAMED)
				r = cb(arg, l.ids[first + i], b->name[i] + plen);
			else if (b->verdict[i] == LIST_UNNAMED)
				r = cb(arg, l.ids[first + i], NULL);
			else
				continue;
			listed++;
		}
	}
	if (!r) {
		k->host->log(VMC_KP_LOG_INFO, "key-provider \"%s\": listed %zu of %zu symmetric "
			     "key(s) (names starting with \"%s\"; %zu destroyed, %zu gone since "
			     "located) in %.1f ms, %zu request(s)%s", k->name, listed, l.n, prefix,
			     b->destroyed, b->gone, now_ms() - t0, b->requests + 1,
			     b->single ? ", one key per request" : "");
		if (b->denied)
			k->host->log(VMC_KP_LOG_WARNING, "key-provider \"%s\": %zu key(s) that "
				     "Locate found could not be read (permission denied by the KMS) "
				     "and are not listed", k->name, b->denied);
	}
	list_ids_free(&l);
	free(b);
	return r;
}

static const struct vmc_kp_ops kmip_ops = {
	.abi_version = VMC_KP_ABI_VERSION,
	.struct_size = sizeof(struct vmc_kp_ops),
	.type = "kmip",
	.version = VMC_VERSION,
	.flags = VMC_KP_F_SERIALIZE | VMC_KP_F_REMOTE,
	.open = kmip_open,
	.close = kmip_close,
	.create_key = kmip_create_key,
	.get_key = kmip_get_key,
	.test = kmip_test,
	.list_keys = kmip_list_keys,
};

__attribute__((visibility("default"))) const struct vmc_kp_ops *vmcryptfs_keyprov_entry_v1(void);

const struct vmc_kp_ops *vmcryptfs_keyprov_entry_v1(void)
{
	return &kmip_ops;
}
