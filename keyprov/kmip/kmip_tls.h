/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Mutually authenticated TLS connections to KMIP servers (OpenSSL 3), with a
 * time-out on every wait.
 *
 * Profile (KMIP 1.1 Profiles, TLS 1.2 Authentication Suite): TLS 1.2 or
 * later; the server certificate is verified against the configured CA file
 * only (never the system store) and must carry the expected DNS name or IP
 * address; the client presents its certificate and key. The cipher list is
 * OpenSSL's DEFAULT, which shares suites with PyKMIP's TLS 1.2 list (an
 * AEAD-only list would not, with an RSA server certificate).
 *
 * Sockets are non-blocking and every wait is a poll(2) bounded by a deadline:
 * name resolution and TCP connect share one, the TLS handshake has one, and
 * sending a request and reading its whole answer share one. A server that
 * trickles bytes cannot stretch a phase beyond its deadline. Writes use
 * send(MSG_NOSIGNAL) through a small BIO of our own, so a peer that closed
 * the connection cannot raise SIGPIPE in the host process.
 *
 * Secrets: answers are read into memory from the caller's allocator (the
 * host's secret allocator, except for Locate answers, which carry only
 * identifiers).
 * OpenSSL decrypts records in its own buffers first; SSL_OP_CLEANSE_PLAINTEXT
 * makes it wipe them after use (they are not locked memory, though).
 */
#ifndef VMC_KMIP_TLS_H
#define VMC_KMIP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

/* TLS settings shared by the connections of one provider instance. */
struct kmip_tls {
	SSL_CTX *ctx;
	BIO_METHOD *bio_meth;
};

/* State of our socket BIO: the descriptor and what the last call saw. */
struct kmip_sock {
	int fd;
	int err; /* errno of the last failed send/recv, 0 if none */
	bool eof;
};

/* One connection to one server; fd -1 (and ssl NULL) when closed. */
struct kmip_conn {
	struct kmip_sock sock;
	SSL *ssl;
	unsigned int answered; /* requests answered on it: > 0 means it is reused */
};

/* How far one exchange got, to tell "never reached the server" apart. */
struct kmip_io {
	size_t sent; /* request bytes accepted by TLS */
	size_t got;  /* answer bytes received */
};

/*
 * Load the CA, certificate and key (PEM files). Returns 0, or -EINVAL with
 * a message naming the file in @err; @warn (may stay "") gets a warning
 * about a usable but doubtful setup (no clientAuth usage, expired, key
 * readable by others).
 */
int kmip_tls_init(struct kmip_tls *t, const char *ca, const char *cert, const char *key,
		  char *err, size_t errlen, char *warn, size_t warnlen);
void kmip_tls_free(struct kmip_tls *t);

void kmip_conn_init(struct kmip_conn *c);

/*
 * Resolve @host, connect to @port and complete the TLS handshake, verifying
 * the server certificate for @verify_name (a DNS name or an IP address).
 * Returns 0 or:
 *   -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH, -ENETUNREACH, -ECONNRESET
 *             the server cannot be reached (transient)
 *   -EACCES   certificate verification failed, or the server refused us in
 *             the handshake (a trust or configuration problem)
 *   -EPROTO   the peer does not speak TLS
 * with a message in @err. @connect_ms and @handshake_ms get the times taken.
 */
int kmip_conn_open(struct kmip_conn *c, struct kmip_tls *t, const char *host, uint16_t port,
		   const char *verify_name, int timeout_ms, char *err, size_t errlen,
		   double *connect_ms, double *handshake_ms);

/*
 * Send one request and read its answer (one TTLV Response Message, at most
 * @max bytes) into a buffer from @alloc, returned in *resp (release
 * with @release(*resp, *resplen)). Returns 0, or a negative errno as for
 * kmip_conn_open (-ECONNRESET when the server closed the connection, -EPROTO
 * for an answer that is not a KMIP message) with @io telling how far it got.
 * On error the connection is closed.
 */
int kmip_conn_exchange(struct kmip_conn *c, const uint8_t *req, size_t reqlen, uint8_t **resp,
		       size_t *resplen, size_t max, void *(*alloc)(size_t),
		       void (*release)(void *, size_t), int timeout_ms, struct kmip_io *io,
		       char *err, size_t errlen);

/* False when an idle open connection was closed by the peer (or has unasked
 * data waiting): it must be reopened before use. */
bool kmip_conn_usable(struct kmip_conn *c);

bool kmip_conn_is_open(const struct kmip_conn *c);
/* Negotiated protocol and cipher of an open connection. */
const char *kmip_conn_version(const struct kmip_conn *c);
const char *kmip_conn_cipher(const struct kmip_conn *c);

void kmip_conn_close(struct kmip_conn *c);

#endif
