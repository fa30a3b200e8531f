// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * TTLV encoder and hardened decoder (see ttlv.h; KMIP 1.1 section 9.1).
 *
 * The decoder's single pass (ttlv_parse) is what makes the lookups safe: it
 * proves that every item header and padded value of the tree lies inside its
 * parent before anything is read, so ttlv_next() can step through a checked
 * structure. ttlv_next() still re-checks each step, so a struct ttlv that did
 * not come from ttlv_parse() cannot lead it outside its value either.
 */
#include "ttlv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define WHY(...) ((void)(why && whylen ? snprintf(why, whylen, __VA_ARGS__) : 0))

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint64_t padded(uint64_t len)
{
	return (len + 7u) & ~(uint64_t)7u;
}

/* --- Encoder ------------------------------------------------------------- */

void ttlv_enc_init(struct ttlv_enc *e, uint8_t *buf, size_t cap)
{
	memset(e, 0, sizeof(*e));
	e->buf = buf;
	e->cap = cap;
}

/* Append a header and @len value bytes from @val (NULL: zeros), padded. */
static void put_item(struct ttlv_enc *e, uint32_t tag, uint8_t type, const void *val,
		     size_t len)
{
	size_t need = TTLV_HDR_LEN + (size_t)padded(len);

	if (e->err)
		return;
	if (len > UINT32_MAX || need > e->cap - e->len) {
		e->err = -ENOBUFS;
		return;
	}
	put_be32(e->buf + e->len, tag << 8 | type);
	put_be32(e->buf + e->len + 4, (uint32_t)len);
	memset(e->buf + e->len + TTLV_HDR_LEN, 0, need - TTLV_HDR_LEN);
	if (val && len)
		memcpy(e->buf + e->len + TTLV_HDR_LEN, val, len);
	e->len += need;
}

void ttlv_begin(struct ttlv_enc *e, uint32_t tag)
{
	if (e->err)
		return;
	if (e->depth + 1 >= TTLV_MAX_DEPTH) { /* what the decoder accepts */
		e->err = -EINVAL;
		return;
	}
	e->open[e->depth] = e->len;
	put_item(e, tag, TTLV_STRUCT, NULL, 0);
	if (!e->err)
		e->depth++;
}

void ttlv_end(struct ttlv_enc *e)
{
	size_t start;

	if (e->err)
		return;
	if (!e->depth) {
		e->err = -EINVAL;
		return;
	}
	start = e->open[--e->depth];
	put_be32(e->buf + start + 4, (uint32_t)(e->len - start - TTLV_HDR_LEN));
}

void ttlv_put_int(struct ttlv_enc *e, uint32_t tag, int32_t v)
{
	uint8_t b[4];

	put_be32(b, (uint32_t)v);
	put_item(e, tag, TTLV_INT, b, 4);
}

void ttlv_put_enum(struct ttlv_enc *e, uint32_t tag, uint32_t v)
{
	uint8_t b[4];

	put_be32(b, v);
	put_item(e, tag, TTLV_ENUM, b, 4);
}

void ttlv_put_long(struct ttlv_enc *e, uint32_t tag, int64_t v)
{
	uint8_t b[8];

	put_be32(b, (uint32_t)((uint64_t)v >> 32));
	put_be32(b + 4, (uint32_t)v);
	put_item(e, tag, TTLV_LONG, b, 8);
}

void ttlv_put_bool(struct ttlv_enc *e, uint32_t tag, bool v)
{
	uint8_t b[8] = { 0, 0, 0, 0, 0, 0, 0, v ? 1 : 0 };

	put_item(e, tag, TTLV_BOOL, b, 8);
}

void ttlv_put_text(struct ttlv_enc *e, uint32_t tag, const char *s, size_t len)
{
	put_item(e, tag, TTLV_TEXT, s, len);
}

void ttlv_put_bytes(struct ttlv_enc *e, uint32_t tag, const void *p, size_t len)
{
	put_item(e, tag, TTLV_BYTES, p, len);
}

int ttlv_enc_finish(struct ttlv_enc *e, size_t *len)
{
	if (e->err)
		return e->err;
	if (e->depth)
		return -EINVAL;
	*len = e->len;
	return 0;
}

/* --- Decoder ------------------------------------------------------------- */

/* Read the item header at @p, of which @left bytes remain in the parent. */
static int item_at(const uint8_t *p, size_t left, struct ttlv *it, char *why, size_t whylen)
{
	uint32_t tt;

	if (left < TTLV_HDR_LEN) {
		WHY("truncated item header (%zu bytes left)", left);
		return -EPROTO;
	}
	tt = get_be32(p);
	it->tag = tt >> 8;
	it->type = (uint8_t)tt;
	it->len = get_be32(p + 4);
	it->val = p + TTLV_HDR_LEN;
	if ((it->tag >> 16) != 0x42 && (it->tag >> 16) != 0x54) {
		WHY("tag %06x is neither a standard (42xxxx) nor an extension (54xxxx) tag",
		    it->tag);
		return -EPROTO;
	}
	if (padded(it->len) > left - TTLV_HDR_LEN) {
		WHY("tag %06x: length %u exceeds its parent (%zu bytes left)", it->tag, it->len,
		    left - TTLV_HDR_LEN);
		return -EPROTO;
	}
	return 0;
}

static int check_value(const struct ttlv *it, unsigned int depth, char *why, size_t whylen);

/* Check every item of a structure's value @p..@p+@len. */
static int check_children(const uint8_t *p, size_t len, unsigned int depth, char *why,
			  size_t whylen)
{
	size_t off = 0;
	int r;

	while (off < len) {
		struct ttlv it;

		r = item_at(p + off, len - off, &it, why, whylen);
		if (!r)
			r = check_value(&it, depth, why, whylen);
		if (r)
			return r;
		off += TTLV_HDR_LEN + (size_t)padded(it.len);
	}
	return 0;
}

static int check_value(const struct ttlv *it, unsigned int depth, char *why, size_t whylen)
{
	uint32_t want = 0;

	switch (it->type) {
	case TTLV_STRUCT:
		if (it->len % 8) {
			WHY("structure %06x: length %u is not a multiple of 8", it->tag, it->len);
			return -EPROTO;
		}
		if (depth + 1 >= TTLV_MAX_DEPTH) {
			WHY("structure %06x: nested deeper than %u levels", it->tag, TTLV_MAX_DEPTH);
			return -EPROTO;
		}
		return check_children(it->val, it->len, depth + 1, why, whylen);
	case TTLV_INT:
	case TTLV_ENUM:
	case TTLV_INTERVAL:
		want = 4;
		break;
	case TTLV_LONG:
	case TTLV_BOOL:
	case TTLV_DATETIME:
	case TTLV_DATETIME_EXT:
		want = 8;
		break;
	case TTLV_BIGINT:
		if (it->len % 8 || !it->len) {
			WHY("big integer %06x: length %u is not a positive multiple of 8", it->tag,
			    it->len);
			return -EPROTO;
		}
		return 0;
	case TTLV_TEXT:
	case TTLV_BYTES:
		return 0;
	default:
		WHY("tag %06x: unknown item type 0x%02x", it->tag, it->type);
		return -EPROTO;
	}
	if (it->len != want) {
		WHY("tag %06x: type 0x%02x needs length %u, not %u", it->tag, it->type, want,
		    it->len);
		return -EPROTO;
	}
	return 0;
}

int ttlv_parse(const uint8_t *buf, size_t len, struct ttlv *top, char *why, size_t whylen)
{
	return ttlv_parse_max(buf, len, TTLV_MAX_MSG, top, why, whylen);
}

int ttlv_parse_max(const uint8_t *buf, size_t len, size_t max, struct ttlv *top, char *why,
		   size_t whylen)
{
	int r;

	if (len > max) {
		WHY("message of %zu bytes exceeds the limit of %zu", len, max);
		return -EPROTO;
	}
	r = item_at(buf, len, top, why, whylen);
	if (r)
		return r;
	if (TTLV_HDR_LEN + padded(top->len) != len) {
		WHY("message is %zu bytes but its top item spans %llu", len,
		    (unsigned long long)(TTLV_HDR_LEN + padded(top->len)));
		return -EPROTO;
	}
	return check_value(top, 0, why, whylen);
}

int ttlv_msg_len(const uint8_t hdr[TTLV_HDR_LEN], uint32_t tag, size_t max, size_t *len,
		 char *why, size_t whylen)
{
	uint32_t tt = get_be32(hdr), l = get_be32(hdr + 4);

	if (tt != (tag << 8 | TTLV_STRUCT)) {
		WHY("does not start like a KMIP message (bytes %02x %02x %02x %02x)", hdr[0],
		    hdr[1], hdr[2], hdr[3]);
		return -EPROTO;
	}
	if (l % 8 || (uint64_t)l + TTLV_HDR_LEN > max) {
		WHY("announces a message of %u bytes (a multiple of 8 up to %zu expected)", l,
		    max - TTLV_HDR_LEN);
		return -EPROTO;
	}
	*len = (size_t)l + TTLV_HDR_LEN;
	return 0;
}

bool ttlv_next(const struct ttlv *parent, const struct ttlv *prev, struct ttlv *out)
{
	const uint8_t *end, *p;

	if (parent->type != TTLV_STRUCT)
		return false;
	end = parent->val + parent->len;
	p = prev ? prev->val + padded(prev->len) : parent->val;
	if (p < parent->val || p >= end)
		return false;
	return item_at(p, (size_t)(end - p), out, NULL, 0) == 0;
}

bool ttlv_find(const struct ttlv *parent, uint32_t tag, uint8_t type, struct ttlv *out)
{
	struct ttlv cur;
	bool more = ttlv_next(parent, NULL, &cur);

	for (; more; more = ttlv_next(parent, &cur, &cur))
		if (cur.tag == tag && (!type || cur.type == type)) {
			*out = cur;
			return true;
		}
	return false;
}

size_t ttlv_count(const struct ttlv *parent, uint32_t tag)
{
	struct ttlv cur;
	size_t n = 0;
	bool more = ttlv_next(parent, NULL, &cur);

	for (; more; more = ttlv_next(parent, &cur, &cur))
		n += cur.tag == tag;
	return n;
}

int32_t ttlv_int(const struct ttlv *it)
{
	return it->len >= 4 ? (int32_t)get_be32(it->val) : 0;
}

uint32_t ttlv_enum(const struct ttlv *it)
{
	return it->len >= 4 ? get_be32(it->val) : 0;
}

int64_t ttlv_long(const struct ttlv *it)
{
	return it->len >= 8 ? (int64_t)((uint64_t)get_be32(it->val) << 32 | get_be32(it->val + 4))
			    : 0;
}
