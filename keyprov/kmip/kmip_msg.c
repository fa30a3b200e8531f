// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * KMIP 1.1 request builders and response checks (see kmip_msg.h).
 *
 * Field order in requests follows the specification (sections 4.1, 4.9,
 * 4.11, 4.12, 4.19, 4.26 and 7), since PyKMIP reads structures in that order.
 * Answers are read by tag, in any order, with unknown fields ignored.
 */
#include "kmip_msg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define WHY(...) ((void)(why && whylen ? snprintf(why, whylen, __VA_ARGS__) : 0))

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* --- Requests ------------------------------------------------------------ */

/*
 * Request Message and Request Header: Protocol Version 1.1, and for a batch
 * (@count > 1) Batch Error Continuation Option Continue; Batch Count.
 */
static void req_header(struct ttlv_enc *e, uint8_t *buf, size_t cap, int32_t count)
{
	ttlv_enc_init(e, buf, cap);
	ttlv_begin(e, KMIP_TAG_REQUEST_MESSAGE);
	ttlv_begin(e, KMIP_TAG_REQUEST_HEADER);
	ttlv_begin(e, KMIP_TAG_PROTOCOL_VERSION);
	ttlv_put_int(e, KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
	ttlv_put_int(e, KMIP_TAG_PROTOCOL_VERSION_MINOR, 1);
	ttlv_end(e);
	if (count > 1)
		ttlv_put_enum(e, KMIP_TAG_BATCH_ERROR_CONTINUATION, KMIP_BATCH_CONTINUE);
	ttlv_put_int(e, KMIP_TAG_BATCH_COUNT, count);
	ttlv_end(e);
}

/* Batch Item (Operation, Unique Batch Item ID if @batch_id) and its payload. */
static void req_item(struct ttlv_enc *e, uint32_t op, const uint8_t *batch_id)
{
	ttlv_begin(e, KMIP_TAG_BATCH_ITEM);
	ttlv_put_enum(e, KMIP_TAG_OPERATION, op);
	if (batch_id)
		ttlv_put_bytes(e, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, batch_id, 4);
	ttlv_begin(e, KMIP_TAG_REQUEST_PAYLOAD);
}

/* Request Message, Request Header (1.1, Batch Count 1), Batch Item, Payload. */
static void req_begin(struct ttlv_enc *e, uint8_t *buf, size_t cap, uint32_t op)
{
	req_header(e, buf, cap, 1);
	req_item(e, op, NULL);
}

static int req_end(struct ttlv_enc *e, size_t *len)
{
	ttlv_end(e); /* payload */
	ttlv_end(e); /* batch item */
	ttlv_end(e); /* message */
	return ttlv_enc_finish(e, len);
}

/* A text we send: 1..max bytes, no NUL (a C string), no control characters. */
static bool text_ok(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (!n || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static void attr_name(struct ttlv_enc *e, const char *name)
{
	ttlv_begin(e, KMIP_TAG_ATTRIBUTE);
	ttlv_put_text(e, KMIP_TAG_ATTRIBUTE_NAME, name, strlen(name));
}

/* Attribute "Name" { Name Value, Name Type = Uninterpreted Text String } */
static void attr_name_value(struct ttlv_enc *e, const char *name)
{
	attr_name(e, "Name");
	ttlv_begin(e, KMIP_TAG_ATTRIBUTE_VALUE);
	ttlv_put_text(e, KMIP_TAG_NAME_VALUE, name, strlen(name));
	ttlv_put_enum(e, KMIP_TAG_NAME_TYPE, 1);
	ttlv_end(e);
	ttlv_end(e);
}

int kmip_req_create(uint8_t *buf, size_t cap, size_t *len, const char *name)
{
	struct ttlv_enc e;

	if (name && !text_ok(name, KMIP_NAME_MAX))
		return -EINVAL;
	req_begin(&e, buf, cap, KMIP_OP_CREATE);
	ttlv_put_enum(&e, KMIP_TAG_OBJECT_TYPE, KMIP_OBJECT_SYMMETRIC_KEY);
	ttlv_begin(&e, KMIP_TAG_TEMPLATE_ATTRIBUTE);
	attr_name(&e, "Cryptographic Algorithm");
	ttlv_put_enum(&e, KMIP_TAG_ATTRIBUTE_VALUE, KMIP_ALG_AES);
	ttlv_end(&e);
	attr_name(&e, "Cryptographic Length");
	ttlv_put_int(&e, KMIP_TAG_ATTRIBUTE_VALUE, 256);
	ttlv_end(&e);
	/* Encrypt | Decrypt: what PyKMIP and most servers accept for AES keys. */
	attr_name(&e, "Cryptographic Usage Mask");
	ttlv_put_int(&e, KMIP_TAG_ATTRIBUTE_VALUE, 0x4 | 0x8);
	ttlv_end(&e);
	if (name)
		attr_name_value(&e, name);
	ttlv_end(&e);
	return req_end(&e, len);
}

static int req_uid(uint8_t *buf, size_t cap, size_t *len, uint32_t op, const char *uid)
{
	struct ttlv_enc e;

	if (!text_ok(uid, KMIP_UID_MAX))
		return -EINVAL;
	req_begin(&e, buf, cap, op);
	ttlv_put_text(&e, KMIP_TAG_UNIQUE_IDENTIFIER, uid, strlen(uid));
	return req_end(&e, len);
}

int kmip_req_get(uint8_t *buf, size_t cap, size_t *len, const char *uid)
{
	return req_uid(buf, cap, len, KMIP_OP_GET, uid);
}

int kmip_req_activate(uint8_t *buf, size_t cap, size_t *len, const char *uid)
{
	return req_uid(buf, cap, len, KMIP_OP_ACTIVATE, uid);
}

int kmip_req_locate(uint8_t *buf, size_t cap, size_t *len, const char *name)
{
	struct ttlv_enc e;

	if (!text_ok(name, KMIP_NAME_MAX))
		return -EINVAL;
	req_begin(&e, buf, cap, KMIP_OP_LOCATE);
	attr_name_value(&e, name);
	return req_end(&e, len);
}

int kmip_req_get_state(uint8_t *buf, size_t cap, size_t *len, const char *uid)
{
	struct ttlv_enc e;

	if (!text_ok(uid, KMIP_UID_MAX))
		return -EINVAL;
	req_begin(&e, buf, cap, KMIP_OP_GET_ATTRIBUTES);
	ttlv_put_text(&e, KMIP_TAG_UNIQUE_IDENTIFIER, uid, strlen(uid));
	ttlv_put_text(&e, KMIP_TAG_ATTRIBUTE_NAME, "State", 5);
	return req_end(&e, len);
}

int kmip_req_locate_keys(uint8_t *buf, size_t cap, size_t *len, int32_t max_items)
{
	struct ttlv_enc e;

	if (max_items < 1)
		return -EINVAL;
	req_begin(&e, buf, cap, KMIP_OP_LOCATE);
	ttlv_put_int(&e, KMIP_TAG_MAXIMUM_ITEMS, max_items);
	attr_name(&e, "Object Type");
	ttlv_put_enum(&e, KMIP_TAG_ATTRIBUTE_VALUE, KMIP_OBJECT_SYMMETRIC_KEY);
	ttlv_end(&e);
	return req_end(&e, len);
}

int kmip_req_get_names(uint8_t *buf, size_t cap, size_t *len, const char *const *uids,
		       size_t n)
{
	struct ttlv_enc e;

	if (!n || n > KMIP_LIST_BATCH)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!text_ok(uids[i], KMIP_UID_MAX))
			return -EINVAL;
	req_header(&e, buf, cap, (int32_t)n);
	for (size_t i = 0; i < n; i++) {
		const uint8_t id[4] = { 0, 0, (uint8_t)(i >> 8), (uint8_t)i };

		req_item(&e, KMIP_OP_GET_ATTRIBUTES, n > 1 ? id : NULL);
		ttlv_put_text(&e, KMIP_TAG_UNIQUE_IDENTIFIER, uids[i], strlen(uids[i]));
		ttlv_put_text(&e, KMIP_TAG_ATTRIBUTE_NAME, "Name", 4);
		ttlv_put_text(&e, KMIP_TAG_ATTRIBUTE_NAME, "State", 5);
		ttlv_end(&e); /* payload */
		ttlv_end(&e); /* batch item */
	}
	ttlv_end(&e); /* message */
	return ttlv_enc_finish(&e, len);
}

int kmip_req_discover(uint8_t *buf, size_t cap, size_t *len)
{
	struct ttlv_enc e;

	req_begin(&e, buf, cap, KMIP_OP_DISCOVER_VERSIONS);
	return req_end(&e, len);
}

/* --- Responses ----------------------------------------------------------- */

/* Copy a server's text for a message: printable ASCII, truncated. */
static void text_copy(char *out, size_t outlen, const struct ttlv *it)
{
	size_t n = 0;

	for (uint32_t i = 0; i < it->len && n + 1 < outlen; i++) {
		unsigned char c = it->val[i];

		out[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[n] = '\0';
	if (it->len >= outlen && outlen > 4)
		memcpy(out + outlen - 4, "...", 4);
}

/* A required child of a given type. */
static bool need(const struct ttlv *parent, uint32_t tag, uint8_t type, struct ttlv *out,
		 const char *what, char *why, size_t whylen)
{
	struct ttlv any;

	if (ttlv_find(parent, tag, type, out))
		return true;
	if (ttlv_find(parent, tag, 0, &any))
		WHY("%s has the wrong type (0x%02x)", what, any.type);
	else
		WHY("%s is missing", what);
	return false;
}

size_t kmip_resp_max(uint32_t op)
{
	return op == KMIP_OP_LOCATE ? KMIP_LOCATE_MAX_MSG : TTLV_MAX_MSG;
}

/* The Response Message of an answer to @op, its version and Batch Count. */
static int resp_envelope(const uint8_t *buf, size_t len, uint32_t op, struct ttlv *top,
			 struct kmip_resp *r, int32_t *count, char *why, size_t whylen)
{
	struct ttlv hdr, ver, it;
	char sub[128];

	if (ttlv_parse_max(buf, len, kmip_resp_max(op), top, sub, sizeof(sub))) {
		WHY("malformed answer: %s", sub);
		return -EPROTO;
	}
	if (top->tag != KMIP_TAG_RESPONSE_MESSAGE || top->type != TTLV_STRUCT) {
		WHY("not a KMIP Response Message (tag %06x, type 0x%02x)", top->tag, top->type);
		return -EPROTO;
	}
	if (!need(top, KMIP_TAG_RESPONSE_HEADER, TTLV_STRUCT, &hdr, "Response Header", why,
		  whylen) ||
	    !need(&hdr, KMIP_TAG_PROTOCOL_VERSION, TTLV_STRUCT, &ver, "Protocol Version", why,
		  whylen))
		return -EPROTO;
	if (!need(&ver, KMIP_TAG_PROTOCOL_VERSION_MAJOR, TTLV_INT, &it, "Protocol Version Major",
		  why, whylen))
		return -EPROTO;
	r->major = ttlv_int(&it);
	if (!need(&ver, KMIP_TAG_PROTOCOL_VERSION_MINOR, TTLV_INT, &it, "Protocol Version Minor",
		  why, whylen))
		return -EPROTO;
	r->minor = ttlv_int(&it);
	if (r->major != 1) {
		WHY("answered in KMIP version %d.%d; vmcryptfs speaks 1.1", r->major, r->minor);
		return -EPROTO;
	}
	if (!need(&hdr, KMIP_TAG_BATCH_COUNT, TTLV_INT, &it, "Batch Count", why, whylen))
		return -EPROTO;
	*count = ttlv_int(&it);
	return 0;
}

/* One Batch Item of an answer to @op into *r (whose version is already set). */
static int resp_item(const struct ttlv *item, uint32_t op, struct kmip_resp *r, char *why,
		     size_t whylen)
{
	struct ttlv it;

	if (ttlv_find(item, KMIP_TAG_OPERATION, TTLV_ENUM, &it)) {
		r->has_op = true;
		r->op = ttlv_enum(&it);
		if (r->op != op) {
			WHY("answered operation %s (0x%02x) to a %s request", kmip_op_name(r->op),
			    r->op, kmip_op_name(op));
			return -EPROTO;
		}
	}
	r->op = op;
	if (ttlv_find(item, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, TTLV_BYTES, &it) && it.len == 4) {
		r->has_batch_id = true;
		r->batch_id = get_be32(it.val);
	}
	if (!need(item, KMIP_TAG_RESULT_STATUS, TTLV_ENUM, &it, "Result Status", why, whylen))
		return -EPROTO;
	r->status = ttlv_enum(&it);
	if (ttlv_find(item, KMIP_TAG_RESULT_REASON, TTLV_ENUM, &it)) {
		r->has_reason = true;
		r->reason = ttlv_enum(&it);
	}
	if (ttlv_find(item, KMIP_TAG_RESULT_MESSAGE, TTLV_TEXT, &it))
		text_copy(r->text, sizeof(r->text), &it);
	r->has_payload = ttlv_find(item, KMIP_TAG_RESPONSE_PAYLOAD, TTLV_STRUCT, &r->payload);
	/* A Locate that found nothing may come without a payload. */
	if (r->status == KMIP_STATUS_SUCCESS && !r->has_payload && op != KMIP_OP_LOCATE) {
		WHY("%s succeeded without a Response Payload", kmip_op_name(op));
		return -EPROTO;
	}
	return 0;
}

int kmip_resp_parse(const uint8_t *buf, size_t len, uint32_t op, struct kmip_resp *r,
		    char *why, size_t whylen)
{
	struct ttlv top, item;
	int32_t count;
	int rc;

	memset(r, 0, sizeof(*r));
	rc = resp_envelope(buf, len, op, &top, r, &count, why, whylen);
	if (rc)
		return rc;
	if (count != 1 || ttlv_count(&top, KMIP_TAG_BATCH_ITEM) != 1) {
		WHY("answered %d batch items (Batch Count %d) to a request of one",
		    (int)ttlv_count(&top, KMIP_TAG_BATCH_ITEM), count);
		return -EPROTO;
	}
	if (!need(&top, KMIP_TAG_BATCH_ITEM, TTLV_STRUCT, &item, "Batch Item", why, whylen))
		return -EPROTO;
	return resp_item(&item, op, r, why, whylen);
}

int kmip_resp_parse_batch(const uint8_t *buf, size_t len, uint32_t op, size_t n,
			  struct kmip_resp *items, size_t *count, char *why, size_t whylen)
{
	bool seen[KMIP_LIST_BATCH] = { false };
	struct kmip_resp head = { 0 };
	struct ttlv top, item, any;
	size_t got = 0, nitems;
	int32_t bc;
	bool more;
	int rc;

	*count = 0;
	if (n == 1) {
		rc = kmip_resp_parse(buf, len, op, items, why, whylen);
		if (!rc)
			*count = 1;
		return rc;
	}
	if (!n || n > KMIP_LIST_BATCH) {
		WHY("a batch of %zu requests is not one we send", n);
		return -EPROTO;
	}
	rc = resp_envelope(buf, len, op, &top, &head, &bc, why, whylen);
	if (rc)
		return rc;
	nitems = ttlv_count(&top, KMIP_TAG_BATCH_ITEM);
	if (bc < 1 || (size_t)bc != nitems || nitems > n) {
		WHY("answered %zu batch items (Batch Count %d) to a batch of %zu", nitems, bc, n);
		return -EPROTO;
	}
	more = ttlv_next(&top, NULL, &item);
	for (; more; more = ttlv_next(&top, &item, &item)) {
		struct kmip_resp *r = &items[got];

		if (item.tag != KMIP_TAG_BATCH_ITEM)
			continue;
		if (item.type != TTLV_STRUCT) {
			WHY("Batch Item has the wrong type (0x%02x)", item.type);
			return -EPROTO;
		}
		memset(r, 0, sizeof(*r));
		r->major = head.major;
		r->minor = head.minor;
		rc = resp_item(&item, op, r, why, whylen);
		if (rc)
			return rc;
		if (!r->has_batch_id &&
		    ttlv_find(&item, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, 0, &any)) {
			WHY("a Unique Batch Item ID we did not send (type 0x%02x, %u bytes)",
			    any.type, any.len);
			return -EPROTO;
		}
		if (r->has_batch_id) {
			if (r->batch_id >= n || seen[r->batch_id]) {
				WHY("Unique Batch Item ID %u %s", r->batch_id,
				    r->batch_id >= n ? "was not sent" : "is answered twice");
				return -EPROTO;
			}
			seen[r->batch_id] = true;
		}
		got++;
	}
	*count = got;
	return 0;
}

/* A Unique Identifier we accept: 1..KMIP_UID_MAX bytes, no control bytes. */
static int uid_copy(const struct ttlv *it, char uid[KMIP_UID_MAX + 1], char *why,
		    size_t whylen)
{
	if (!it->len || it->len > KMIP_UID_MAX) {
		WHY("Unique Identifier of %u bytes (1 to %u accepted)", it->len, KMIP_UID_MAX);
		return -EPROTO;
	}
	for (uint32_t i = 0; i < it->len; i++)
		if (it->val[i] < 0x20 || it->val[i] == 0x7f) {
			WHY("Unique Identifier contains control character 0x%02x", it->val[i]);
			return -EPROTO;
		}
	memcpy(uid, it->val, it->len);
	uid[it->len] = '\0';
	return 0;
}

int kmip_payload_uid(const struct kmip_resp *r, char uid[KMIP_UID_MAX + 1], char *why,
		     size_t whylen)
{
	struct ttlv it;

	if (!r->has_payload || !ttlv_find(&r->payload, KMIP_TAG_UNIQUE_IDENTIFIER, 0, &it)) {
		if (r->op == KMIP_OP_LOCATE) {
			WHY("no object found");
			return -ENOKEY;
		}
		WHY("Unique Identifier is missing");
		return -EPROTO;
	}
	if (it.type != TTLV_TEXT) {
		WHY("Unique Identifier has the wrong type (0x%02x)", it.type);
		return -EPROTO;
	}
	return uid_copy(&it, uid, why, whylen);
}

size_t kmip_payload_uid_count(const struct kmip_resp *r)
{
	return r->has_payload ? ttlv_count(&r->payload, KMIP_TAG_UNIQUE_IDENTIFIER) : 0;
}

int kmip_payload_uid_each(const struct kmip_resp *r, int (*fn)(void *arg, const char *uid),
			  void *arg, char *why, size_t whylen)
{
	char uid[KMIP_UID_MAX + 1];
	struct ttlv it;
	bool more;
	int rc;

	if (!r->has_payload)
		return 0;
	more = ttlv_next(&r->payload, NULL, &it);
	for (; more; more = ttlv_next(&r->payload, &it, &it)) {
		if (it.tag != KMIP_TAG_UNIQUE_IDENTIFIER)
			continue;
		if (it.type != TTLV_TEXT) {
			WHY("Unique Identifier has the wrong type (0x%02x)", it.type);
			return -EPROTO;
		}
		rc = uid_copy(&it, uid, why, whylen);
		if (!rc)
			rc = fn(arg, uid);
		if (rc)
			return rc;
	}
	return 0;
}

int kmip_payload_key(const struct kmip_resp *r, const char *uid, const uint8_t **key,
		     size_t keylen, char *why, size_t whylen)
{
	struct ttlv it, sk, kb, kv, km;
	char got[KMIP_UID_MAX + 1];
	uint32_t v;

	if (!r->has_payload) {
		WHY("answer has no payload");
		return -EPROTO;
	}
	if (!need(&r->payload, KMIP_TAG_OBJECT_TYPE, TTLV_ENUM, &it, "Object Type", why, whylen))
		return -EPROTO;
	v = ttlv_enum(&it);
	if (v != KMIP_OBJECT_SYMMETRIC_KEY) {
		WHY("object %s is not a symmetric key (Object Type %u)", uid, v);
		return -ENOKEY;
	}
	if (ttlv_find(&r->payload, KMIP_TAG_UNIQUE_IDENTIFIER, 0, &it)) {
		if (it.type != TTLV_TEXT || uid_copy(&it, got, NULL, 0) || strcmp(got, uid)) {
			WHY("answered with another object than %s", uid);
			return -EPROTO;
		}
	}
	if (!need(&r->payload, KMIP_TAG_SYMMETRIC_KEY, TTLV_STRUCT, &sk, "Symmetric Key", why,
		  whylen) ||
	    !need(&sk, KMIP_TAG_KEY_BLOCK, TTLV_STRUCT, &kb, "Key Block", why, whylen) ||
	    !need(&kb, KMIP_TAG_KEY_FORMAT_TYPE, TTLV_ENUM, &it, "Key Format Type", why, whylen))
		return -EPROTO;
	v = ttlv_enum(&it);
	if (v != KMIP_FORMAT_RAW) {
		WHY("key %s comes in Key Format Type %u; vmcryptfs needs Raw (1)", uid, v);
		return -EPROTO;
	}
	if (ttlv_find(&kb, KMIP_TAG_KEY_COMPRESSION_TYPE, 0, &it) ||
	    ttlv_find(&kb, KMIP_TAG_KEY_WRAPPING_DATA, 0, &it)) {
		WHY("key %s comes compressed or wrapped, which vmcryptfs did not ask for", uid);
		return -EPROTO;
	}
	if (!ttlv_find(&kb, KMIP_TAG_KEY_VALUE, 0, &kv)) {
		WHY("Key Value is missing");
		return -EPROTO;
	}
	if (kv.type != TTLV_STRUCT) {
		WHY("Key Value is not a structure (a wrapped key?)");
		return -EPROTO;
	}
	if (!need(&kv, KMIP_TAG_KEY_MATERIAL, TTLV_BYTES, &km, "Key Material", why, whylen))
		return -EPROTO;
	if (!need(&kb, KMIP_TAG_CRYPTO_ALGORITHM, TTLV_ENUM, &it, "Cryptographic Algorithm", why,
		  whylen))
		return -EPROTO;
	v = ttlv_enum(&it);
	if (v != KMIP_ALG_AES) {
		WHY("key %s is not an AES key (Cryptographic Algorithm %u)", uid, v);
		return -ENOKEY;
	}
	if (!need(&kb, KMIP_TAG_CRYPTO_LENGTH, TTLV_INT, &it, "Cryptographic Length", why,
		  whylen))
		return -EPROTO;
	if (ttlv_int(&it) != (int32_t)(keylen * 8)) {
		WHY("key %s is AES-%d; vmcryptfs needs AES-%zu", uid, ttlv_int(&it), keylen * 8);
		return -ENOKEY;
	}
	if (km.len != keylen) {
		WHY("key %s has %u bytes of Key Material, not %zu", uid, km.len, keylen);
		return -EPROTO;
	}
	*key = km.val;
	return 0;
}

int kmip_payload_state(const struct kmip_resp *r, uint32_t *state, char *why, size_t whylen)
{
	struct ttlv attr, name, value;
	bool more;

	if (!r->has_payload) {
		WHY("answer has no payload");
		return -EPROTO;
	}
	more = ttlv_next(&r->payload, NULL, &attr);
	for (; more; more = ttlv_next(&r->payload, &attr, &attr)) {
		if (attr.tag != KMIP_TAG_ATTRIBUTE || attr.type != TTLV_STRUCT ||
		    !ttlv_find(&attr, KMIP_TAG_ATTRIBUTE_NAME, TTLV_TEXT, &name) ||
		    name.len != 5 || memcmp(name.val, "State", 5))
			continue;
		if (!need(&attr, KMIP_TAG_ATTRIBUTE_VALUE, TTLV_ENUM, &value, "State value", why,
			  whylen))
			return -EPROTO;
		*state = ttlv_enum(&value);
		return 0;
	}
	WHY("the State attribute is missing");
	return -EPROTO;
}

/* A name we report as a label: 1..KMIP_NAME_MAX bytes, no control bytes. */
static bool name_ok(const struct ttlv *it)
{
	if (!it->len || it->len > KMIP_NAME_MAX)
		return false;
	for (uint32_t i = 0; i < it->len; i++)
		if (it->val[i] < 0x20 || it->val[i] == 0x7f)
			return false;
	return true;
}

int kmip_payload_name(const struct kmip_resp *r, const char *prefix,
		      char name[KMIP_NAME_MAX + 1], size_t *nnames, char *why, size_t whylen)
{
	struct ttlv attr, an, value, nv;
	size_t plen = strlen(prefix), n = 0;
	bool more;

	if (nnames)
		*nnames = 0;
	if (!r->has_payload) {
		WHY("answer has no payload");
		return -EPROTO;
	}
	more = ttlv_next(&r->payload, NULL, &attr);
	for (; more; more = ttlv_next(&r->payload, &attr, &attr)) {
		if (attr.tag != KMIP_TAG_ATTRIBUTE || attr.type != TTLV_STRUCT ||
		    !ttlv_find(&attr, KMIP_TAG_ATTRIBUTE_NAME, TTLV_TEXT, &an) || an.len != 4 ||
		    memcmp(an.val, "Name", 4))
			continue;
		n++;
		if (nnames)
			*nnames = n;
		if (!need(&attr, KMIP_TAG_ATTRIBUTE_VALUE, TTLV_STRUCT, &value,
			  "Name attribute value", why, whylen) ||
		    !need(&value, KMIP_TAG_NAME_VALUE, TTLV_TEXT, &nv, "Name Value", why, whylen))
			return -EPROTO;
		if (nv.len < plen || memcmp(nv.val, prefix, plen) || !name_ok(&nv))
			continue;
		memcpy(name, nv.val, nv.len);
		name[nv.len] = '\0';
		return 0;
	}
	WHY(n ? "no name starts with \"%s\"" : "the object has no name", prefix);
	return -ENOENT;
}

size_t kmip_payload_versions(const struct kmip_resp *r, int32_t (*v)[2], size_t max)
{
	struct ttlv pv, it;
	size_t n = 0;
	bool more;

	if (!r->has_payload)
		return 0;
	more = ttlv_next(&r->payload, NULL, &pv);
	for (; more && n < max; more = ttlv_next(&r->payload, &pv, &pv)) {
		if (pv.tag != KMIP_TAG_PROTOCOL_VERSION || pv.type != TTLV_STRUCT)
			continue;
		v[n][0] = ttlv_find(&pv, KMIP_TAG_PROTOCOL_VERSION_MAJOR, TTLV_INT, &it)
				  ? ttlv_int(&it) : -1;
		v[n][1] = ttlv_find(&pv, KMIP_TAG_PROTOCOL_VERSION_MINOR, TTLV_INT, &it)
				  ? ttlv_int(&it) : -1;
		n++;
	}
	return n;
}

const char *kmip_reason_name(uint32_t reason)
{
	static const char *const names[] = {
		[0x01] = "Item Not Found",
		[0x02] = "Response Too Large",
		[0x03] = "Authentication Not Successful",
		[0x04] = "Invalid Message",
		[0x05] = "Operation Not Supported",
		[0x06] = "Missing Data",
		[0x07] = "Invalid Field",
		[0x08] = "Feature Not Supported",
		[0x09] = "Operation Canceled By Requester",
		[0x0A] = "Cryptographic Failure",
		[0x0B] = "Illegal Operation",
		[0x0C] = "Permission Denied",
		[0x0D] = "Object Archived",
		[0x0E] = "Index Out of Bounds",
		[0x0F] = "Application Namespace Not Supported",
		[0x10] = "Key Format Type Not Supported",
		[0x11] = "Key Compression Type Not Supported",
		[0x12] = "Encoding Option Error",
	};

	if (reason < sizeof(names) / sizeof(names[0]) && names[reason])
		return names[reason];
	return reason == 0x100 ? "General Failure" : "unknown reason";
}

const char *kmip_state_name(uint32_t state)
{
	static const char *const names[] = {
		[1] = "Pre-Active", [2] = "Active",	[3] = "Deactivated",
		[4] = "Compromised", [5] = "Destroyed", [6] = "Destroyed Compromised",
	};

	if (state < sizeof(names) / sizeof(names[0]) && names[state])
		return names[state];
	return "unknown state";
}

const char *kmip_op_name(uint32_t op)
{
	switch (op) {
	case KMIP_OP_CREATE:
		return "Create";
	case KMIP_OP_LOCATE:
		return "Locate";
	case KMIP_OP_GET:
		return "Get";
	case KMIP_OP_GET_ATTRIBUTES:
		return "Get Attributes";
	case KMIP_OP_ACTIVATE:
		return "Activate";
	case KMIP_OP_DISCOVER_VERSIONS:
		return "Discover Versions";
	}
	return "unknown operation";
}
