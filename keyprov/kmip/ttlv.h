/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * TTLV, the KMIP 1.1 wire encoding (KMIP 1.1 specification section 9.1):
 * every item is Tag (3 bytes) | Type (1) | Length (4) | Value, big-endian,
 * the value zero-padded to a multiple of 8 bytes; a Structure's value is its
 * encoded children.
 *
 * The encoder writes into a caller's fixed buffer and reports overflow once,
 * at the end, so request builders need no error check per item. It writes
 * zero padding and emits items in the order it is called (PyKMIP's parser is
 * strict about both).
 *
 * The decoder treats its input as hostile: ttlv_parse() walks the whole tree
 * once and checks every length against its parent, the fixed lengths of the
 * fixed-size types, the nesting depth and the total size, and accepts both
 * standard (0x42....) and extension (0x54....) tags. Items are then looked up
 * by tag, so unknown tags are skipped and optional fields may come in any
 * order. Padding must be present but its bytes are not checked (other servers
 * have been seen to send garbage there). Values are never copied: a struct
 * ttlv points into the caller's buffer, which must outlive it (for responses
 * that carry key material that buffer is secret memory).
 */
#ifndef VMC_KMIP_TTLV_H
#define VMC_KMIP_TTLV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ttlv_type {
	TTLV_STRUCT = 0x01,
	TTLV_INT = 0x02,
	TTLV_LONG = 0x03,
	TTLV_BIGINT = 0x04,
	TTLV_ENUM = 0x05,
	TTLV_BOOL = 0x06,
	TTLV_TEXT = 0x07,
	TTLV_BYTES = 0x08,
	TTLV_DATETIME = 0x09,
	TTLV_INTERVAL = 0x0a,
	TTLV_DATETIME_EXT = 0x0b, /* KMIP 2.0; accepted so such a server's answer parses */
};

#define TTLV_HDR_LEN 8u
/* Deepest nesting accepted (a Get response uses 7 levels). */
#define TTLV_MAX_DEPTH 16u
/* Largest message accepted by default, header included. Our answers are a
 * few hundred bytes, a batch of Get Attributes a few KiB; only a Locate that
 * lists every key needs more (kmip_resp_max() in kmip_msg.h). */
#define TTLV_MAX_MSG (64u * 1024u)

/* --- Encoder ------------------------------------------------------------- */

struct ttlv_enc {
	uint8_t *buf;
	size_t cap;
	size_t len;
	size_t open[TTLV_MAX_DEPTH]; /* offsets of the unfinished structures */
	unsigned int depth;
	int err; /* first error: -ENOBUFS (overflow) or -EINVAL (unbalanced) */
};

void ttlv_enc_init(struct ttlv_enc *e, uint8_t *buf, size_t cap);
void ttlv_begin(struct ttlv_enc *e, uint32_t tag);
void ttlv_end(struct ttlv_enc *e);
void ttlv_put_int(struct ttlv_enc *e, uint32_t tag, int32_t v);
void ttlv_put_enum(struct ttlv_enc *e, uint32_t tag, uint32_t v);
void ttlv_put_long(struct ttlv_enc *e, uint32_t tag, int64_t v);
void ttlv_put_bool(struct ttlv_enc *e, uint32_t tag, bool v);
void ttlv_put_text(struct ttlv_enc *e, uint32_t tag, const char *s, size_t len);
void ttlv_put_bytes(struct ttlv_enc *e, uint32_t tag, const void *p, size_t len);
/* 0 and the encoded length, or -ENOBUFS (overflow) / -EINVAL (unbalanced). */
int ttlv_enc_finish(struct ttlv_enc *e, size_t *len);

/* --- Decoder ------------------------------------------------------------- */

/* One decoded item; val points into the parsed buffer (len bytes). */
struct ttlv {
	uint32_t tag;
	uint8_t type;
	uint32_t len;
	const uint8_t *val;
};

/*
 * Validate the whole message @buf of @len bytes (exactly one top-level item,
 * at most TTLV_MAX_MSG bytes) and describe its top item in *top. Returns 0,
 * or -EPROTO with the reason in @why.
 */
int ttlv_parse(const uint8_t *buf, size_t len, struct ttlv *top, char *why, size_t whylen);
/* The same with a size limit of @max bytes instead of TTLV_MAX_MSG. */
int ttlv_parse_max(const uint8_t *buf, size_t len, size_t max, struct ttlv *top, char *why,
		   size_t whylen);

/*
 * Length of the message whose 8-byte header is @hdr, header included, for a
 * reader that has the header only. Returns 0, or -EPROTO when the header is
 * not that of a Structure with tag @tag or the message would exceed @max.
 */
int ttlv_msg_len(const uint8_t hdr[TTLV_HDR_LEN], uint32_t tag, size_t max, size_t *len,
		 char *why, size_t whylen);

/* Iterate over the children of a parsed structure: @prev NULL gives the first. */
bool ttlv_next(const struct ttlv *parent, const struct ttlv *prev, struct ttlv *out);
/* The first child of @parent with @tag (and, if @type is not 0, that type). */
bool ttlv_find(const struct ttlv *parent, uint32_t tag, uint8_t type, struct ttlv *out);
/* How many children of @parent carry @tag. */
size_t ttlv_count(const struct ttlv *parent, uint32_t tag);

/* Typed values of parsed items (the types are checked by the caller's find). */
int32_t ttlv_int(const struct ttlv *it);
uint32_t ttlv_enum(const struct ttlv *it);
int64_t ttlv_long(const struct ttlv *it);

#endif
