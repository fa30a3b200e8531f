// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of the KMIP TTLV encoder/decoder and message layer
 * (keyprov/kmip/ttlv.c, kmip_msg.c).
 *
 * Requests are compared byte for byte with the exchanges captured from
 * PyKMIP 0.10.0's pykmip-server (tests/kmip/vectors/, whose request bytes
 * PyKMIP's own encoder reproduces); every captured answer is decoded. Then
 * hostile input: every truncation, lengths beyond the parent, deep nesting,
 * oversize messages, unknown tags and types, wrong fixed lengths, and Get
 * answers that are well formed but must not be used as a KEK. Then what
 * list_keys sends and reads: the Locate of every key, batched Get Attributes
 * (captured, then altered: repeated or unknown batch ids, wrong counts,
 * truncations), names and states, and a Locate answer of 100,001 keys.
 *
 * Usage: test_kmip_msg VECTOR_DIR
 */
#include "kmip_msg.h"
#include "ttlv.h"
#include "vmc_test.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OP_REVOKE 0x13u
#define OP_DESTROY 0x14u

static const char *vec_dir;

/* Read vectors/<name>.hex into @out; returns the length. */
static size_t vec(const char *name, uint8_t *out, size_t max)
{
	char path[PATH_MAX], *text;
	FILE *f;
	long n;
	size_t len;

	snprintf(path, sizeof(path), "%s/%s.hex", vec_dir, name);
	f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "FATAL: cannot open %s\n", path);
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)n + 1);
	REQUIRE_(text && fread(text, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	len = vmc_test_unhex(text, out, max);
	free(text);
	return len;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Offset of the first item header with @tag in @buf (a linear scan). */
static size_t find_tag(const uint8_t *buf, size_t len, uint32_t tag)
{
	for (size_t off = 0; off + 8 <= len; off += 8)
		if (((uint32_t)buf[off] << 16 | (uint32_t)buf[off + 1] << 8 | buf[off + 2]) == tag)
			return off;
	REQUIRE_(!"tag present");
	return 0;
}

/* --- Requests ---------------------------------------------------------------- */

static void test_requests(void)
{
	uint8_t want[1024], got[KMIP_REQ_MAX];
	size_t wlen, glen;
	struct ttlv top;
	char why[128];

	wlen = vec("01-create.req", want, sizeof(want));
	EQ_(wlen, 296);
	OK_(kmip_req_create(got, sizeof(got), &glen, NULL));
	EQ_(glen, wlen);
	MEMEQ_(got, want, wlen);

	wlen = vec("02-get.req", want, sizeof(want));
	OK_(kmip_req_get(got, sizeof(got), &glen, "2"));
	EQ_(glen, 120);
	EQ_(glen, wlen);
	MEMEQ_(got, want, wlen);

	wlen = vec("03-create-name.req", want, sizeof(want));
	OK_(kmip_req_create(got, sizeof(got), &glen, "vmcryptfs-kek-vector"));
	EQ_(glen, 376);
	EQ_(glen, wlen);
	MEMEQ_(got, want, wlen);

	wlen = vec("04-locate.req", want, sizeof(want));
	OK_(kmip_req_locate(got, sizeof(got), &glen, "vmcryptfs-kek-vector"));
	EQ_(glen, 184);
	EQ_(glen, wlen);
	MEMEQ_(got, want, wlen);

	wlen = vec("05-activate.req", want, sizeof(want));
	OK_(kmip_req_activate(got, sizeof(got), &glen, "3"));
	EQ_(glen, wlen);
	MEMEQ_(got, want, wlen);

	wlen = vec("09-get-destroyed.req", want, sizeof(want));
	OK_(kmip_req_get(got, sizeof(got), &glen, "3"));
	EQ_(glen, wlen);
	MEMEQ_(got, want, wlen);

	/* The requests without a vector decode as what they claim to be. */
	OK_(kmip_req_get_state(got, sizeof(got), &glen, "42"));
	OK_(ttlv_parse(got, glen, &top, why, sizeof(why)));
	EQ_(top.tag, KMIP_TAG_REQUEST_MESSAGE);
	OK_(kmip_req_discover(got, sizeof(got), &glen));
	OK_(ttlv_parse(got, glen, &top, why, sizeof(why)));
	EQ_(glen, 8 + 64 + 8 + 16 + 8); /* message, header, batch item, operation, payload */

	/* The longest accepted name fits the request buffer. */
	{
		char name[KMIP_NAME_MAX + 2];

		memset(name, 'n', KMIP_NAME_MAX);
		name[KMIP_NAME_MAX] = '\0';
		OK_(kmip_req_create(got, sizeof(got), &glen, name));
		OK_(ttlv_parse(got, glen, &top, why, sizeof(why)));
		OK_(kmip_req_locate(got, sizeof(got), &glen, name));
		name[KMIP_NAME_MAX] = 'n';
		name[KMIP_NAME_MAX + 1] = '\0';
		FAIL_(kmip_req_create(got, sizeof(got), &glen, name), EINVAL);
		FAIL_(kmip_req_get(got, sizeof(got), &glen, name), EINVAL);
	}
	/* Texts we refuse to send. */
	FAIL_(kmip_req_get(got, sizeof(got), &glen, ""), EINVAL);
	FAIL_(kmip_req_get(got, sizeof(got), &glen, "a\nb"), EINVAL);
	FAIL_(kmip_req_create(got, sizeof(got), &glen, ""), EINVAL);
	FAIL_(kmip_req_locate(got, sizeof(got), &glen, "x\x7f"), EINVAL);
	/* A buffer too small is an error, never an overflow. */
	for (size_t cap = 0; cap < 296; cap += 7)
		FAIL_(kmip_req_create(got, cap, &glen, NULL), ENOBUFS);
}

static void test_encoder(void)
{
	uint8_t buf[256];
	struct ttlv_enc e;
	size_t len = 0;

	/* Unbalanced structures. */
	ttlv_enc_init(&e, buf, sizeof(buf));
	ttlv_begin(&e, 0x420001);
	FAIL_(ttlv_enc_finish(&e, &len), EINVAL);
	ttlv_enc_init(&e, buf, sizeof(buf));
	ttlv_end(&e);
	FAIL_(ttlv_enc_finish(&e, &len), EINVAL);
	/* Deeper than the limit. */
	ttlv_enc_init(&e, buf, sizeof(buf));
	for (unsigned int i = 0; i <= TTLV_MAX_DEPTH; i++)
		ttlv_begin(&e, 0x420001);
	FAIL_(ttlv_enc_finish(&e, &len), EINVAL);
	/* Padding is written as zeros, lengths unpadded. */
	memset(buf, 0xee, sizeof(buf));
	ttlv_enc_init(&e, buf, sizeof(buf));
	ttlv_put_text(&e, 0x420055, "abc", 3);
	ttlv_put_bool(&e, 0x420006, true);
	ttlv_put_long(&e, 0x420092, -2);
	OK_(ttlv_enc_finish(&e, &len));
	EQ_(len, 48);
	{
		static const uint8_t want[48] = {
			0x42, 0x00, 0x55, 0x07, 0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0, 0,
			0x42, 0x00, 0x06, 0x06, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1,
			0x42, 0x00, 0x92, 0x03, 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff,
			0xff, 0xff, 0xff, 0xfe,
		};

		MEMEQ_(buf, want, 48);
	}
}

/* --- Captured answers -------------------------------------------------------- */

static void test_responses(void)
{
	static const char key_hex[] =
		"24966d0a7c1e5f1f8a0aecd8067372ae1e082fa97c72ec9f930fa0e802ee8fbf";
	uint8_t buf[1024], want_key[32];
	char uid[KMIP_UID_MAX + 1], why[160];
	const uint8_t *key = NULL;
	struct kmip_resp r;
	size_t len;

	len = vec("01-create.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse(buf, len, KMIP_OP_CREATE, &r, why, sizeof(why)));
	EQ_(r.major, 1);
	EQ_(r.minor, 1);
	TRUE_(r.has_op);
	EQ_(r.status, KMIP_STATUS_SUCCESS);
	TRUE_(!r.has_reason);
	OK_(kmip_payload_uid(&r, uid, why, sizeof(why)));
	STREQ_(uid, "2");
	/* An answer to another operation than the one asked. */
	FAIL_(kmip_resp_parse(buf, len, KMIP_OP_GET, &r, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "Create");

	len = vec("02-get.resp", buf, sizeof(buf));
	EQ_(len, 280);
	OK_(kmip_resp_parse(buf, len, KMIP_OP_GET, &r, why, sizeof(why)));
	EQ_(r.status, KMIP_STATUS_SUCCESS);
	OK_(kmip_payload_key(&r, "2", &key, 32, why, sizeof(why)));
	vmc_test_unhex(key_hex, want_key, sizeof(want_key));
	TRUE_(key >= buf && key + 32 <= buf + len); /* points into the answer */
	if (key)
		MEMEQ_(key, want_key, 32);
	FAIL_(kmip_payload_key(&r, "3", &key, 32, why, sizeof(why)), EPROTO);
	FAIL_(kmip_payload_key(&r, "2", &key, 16, why, sizeof(why)), ENOKEY);

	len = vec("03-create-name.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse(buf, len, KMIP_OP_CREATE, &r, why, sizeof(why)));
	OK_(kmip_payload_uid(&r, uid, why, sizeof(why)));
	STREQ_(uid, "3");

	len = vec("04-locate.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse(buf, len, KMIP_OP_LOCATE, &r, why, sizeof(why)));
	OK_(kmip_payload_uid(&r, uid, why, sizeof(why)));
	STREQ_(uid, "3");
	EQ_(kmip_payload_uid_count(&r), 1);

	len = vec("05-activate.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse(buf, len, KMIP_OP_ACTIVATE, &r, why, sizeof(why)));
	OK_(kmip_payload_uid(&r, uid, why, sizeof(why)));
	STREQ_(uid, "3");

	len = vec("06-destroy-active.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse(buf, len, OP_DESTROY, &r, why, sizeof(why)));
	EQ_(r.status, KMIP_STATUS_FAILED);
	TRUE_(r.has_reason);
	EQ_(r.reason, KMIP_REASON_PERMISSION_DENIED);
	STREQ_(r.text, "Object is active and cannot be destroyed.");
	TRUE_(!r.has_payload);
	STREQ_(kmip_reason_name(r.reason), "Permission Denied");

	len = vec("07-revoke.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse(buf, len, OP_REVOKE, &r, why, sizeof(why)));
	EQ_(r.status, KMIP_STATUS_SUCCESS);
	len = vec("08-destroy.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse(buf, len, OP_DESTROY, &r, why, sizeof(why)));
	EQ_(r.status, KMIP_STATUS_SUCCESS);
	len = vec("10-destroy-preactive.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse(buf, len, OP_DESTROY, &r, why, sizeof(why)));
	OK_(kmip_payload_uid(&r, uid, why, sizeof(why)));
	STREQ_(uid, "2");

	len = vec("09-get-destroyed.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse(buf, len, KMIP_OP_GET, &r, why, sizeof(why)));
	EQ_(r.status, KMIP_STATUS_FAILED);
	EQ_(r.reason, KMIP_REASON_ITEM_NOT_FOUND);
	STREQ_(r.text, "Could not locate object: 3");
	FAIL_(kmip_payload_key(&r, "3", &key, 32, why, sizeof(why)), EPROTO);

	/* PyKMIP's answer to a message it cannot parse: version 1.0, no Operation. */
	len = vec("11-get-version-9.9.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse(buf, len, KMIP_OP_GET, &r, why, sizeof(why)));
	EQ_(r.major, 1);
	EQ_(r.minor, 0);
	TRUE_(!r.has_op);
	EQ_(r.status, KMIP_STATUS_FAILED);
	EQ_(r.reason, 0x04);
	STREQ_(r.text, "Error parsing request message. See server logs for more information.");
	STREQ_(kmip_reason_name(r.reason), "Invalid Message");

	/* Captured later from the same server (see vectors/README). */
	{
		int32_t v[8][2];
		uint32_t state = 0;

		len = vec("12-discover-versions.resp", buf, sizeof(buf));
		OK_(kmip_resp_parse(buf, len, KMIP_OP_DISCOVER_VERSIONS, &r, why, sizeof(why)));
		EQ_(kmip_payload_versions(&r, v, 8), 6);
		TRUE_(v[0][0] == 2 && v[0][1] == 0 && v[4][0] == 1 && v[4][1] == 1);

		len = vec("13-get-attributes-state.resp", buf, sizeof(buf));
		OK_(kmip_resp_parse(buf, len, KMIP_OP_GET_ATTRIBUTES, &r, why, sizeof(why)));
		OK_(kmip_payload_state(&r, &state, why, sizeof(why)));
		EQ_(state, KMIP_STATE_ACTIVE);

		len = vec("14-locate-none.resp", buf, sizeof(buf));
		OK_(kmip_resp_parse(buf, len, KMIP_OP_LOCATE, &r, why, sizeof(why)));
		EQ_(r.status, KMIP_STATUS_SUCCESS);
		EQ_(kmip_payload_uid_count(&r), 0);
		FAIL_(kmip_payload_uid(&r, uid, why, sizeof(why)), ENOKEY);

		len = vec("15-get-attributes-missing.resp", buf, sizeof(buf));
		OK_(kmip_resp_parse(buf, len, KMIP_OP_GET_ATTRIBUTES, &r, why, sizeof(why)));
		EQ_(r.status, KMIP_STATUS_FAILED);
		EQ_(r.reason, KMIP_REASON_ITEM_NOT_FOUND);
		FAIL_(kmip_payload_state(&r, &state, why, sizeof(why)), EPROTO);
	}

	/* A request is not an answer. */
	len = vec("02-get.req", buf, sizeof(buf));
	FAIL_(kmip_resp_parse(buf, len, KMIP_OP_GET, &r, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "Response Message");
}

/* --- Hostile input ------------------------------------------------------------- */

static void test_truncation(void)
{
	static const char *const names[] = {
		"01-create.resp", "02-get.resp", "04-locate.resp", "06-destroy-active.resp",
		"09-get-destroyed.resp", "11-get-version-9.9.resp",
	};
	uint8_t buf[1024];
	struct kmip_resp r;
	struct ttlv top;
	char why[160];

	for (size_t v = 0; v < sizeof(names) / sizeof(names[0]); v++) {
		size_t len = vec(names[v], buf, sizeof(buf));
		int bad = 0;

		for (size_t n = 0; n < len; n++) {
			uint8_t *copy = malloc(n ? n : 1);

			/* A copy of exactly n bytes, so a read past it is caught
			 * by valgrind / ASan. */
			REQUIRE_(copy);
			memcpy(copy, buf, n);
			bad += ttlv_parse(copy, n, &top, why, sizeof(why)) != -EPROTO;
			bad += kmip_resp_parse(copy, n, KMIP_OP_GET, &r, why, sizeof(why)) !=
			       -EPROTO;
			free(copy);
		}
		EQ_(bad, 0);
	}
}

static void test_lengths(void)
{
	uint8_t buf[1024], copy[1024];
	struct kmip_resp r;
	struct ttlv top;
	char why[160];
	size_t len = vec("02-get.resp", buf, sizeof(buf)), off;

	/* Key Material (32 bytes) claims one or many more than its parent holds. */
	off = find_tag(buf, len, KMIP_TAG_KEY_MATERIAL);
	memcpy(copy, buf, len);
	put32(copy + off + 4, 33 + 8);
	FAIL_(ttlv_parse(copy, len, &top, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "exceeds its parent");
	put32(copy + off + 4, 0xfffffff9u);
	FAIL_(ttlv_parse(copy, len, &top, why, sizeof(why)), EPROTO);
	put32(copy + off + 4, 0xffffffffu);
	FAIL_(ttlv_parse(copy, len, &top, why, sizeof(why)), EPROTO);
	/* A structure longer than its parent, and one not a multiple of 8. */
	memcpy(copy, buf, len);
	off = find_tag(copy, len, KMIP_TAG_KEY_BLOCK);
	put32(copy + off + 4, 0x60 + 8);
	FAIL_(ttlv_parse(copy, len, &top, why, sizeof(why)), EPROTO);
	put32(copy + off + 4, 0x60 - 4);
	FAIL_(ttlv_parse(copy, len, &top, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "multiple of 8");
	/* The top item shorter or longer than the message. */
	memcpy(copy, buf, len);
	put32(copy + 4, (uint32_t)len - 16);
	FAIL_(ttlv_parse(copy, len, &top, why, sizeof(why)), EPROTO);
	put32(copy + 4, (uint32_t)len);
	FAIL_(ttlv_parse(copy, len, &top, why, sizeof(why)), EPROTO);
	/* Trailing bytes after the message. */
	memcpy(copy, buf, len);
	memset(copy + len, 0, 8);
	FAIL_(ttlv_parse(copy, len + 8, &top, why, sizeof(why)), EPROTO);

	/* Wrong fixed lengths: Enumeration, Integer, Date-Time. */
	memcpy(copy, buf, len);
	off = find_tag(copy, len, KMIP_TAG_RESULT_STATUS);
	put32(copy + off + 4, 8);
	FAIL_(kmip_resp_parse(copy, len, KMIP_OP_GET, &r, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "needs length 4");
	memcpy(copy, buf, len);
	off = find_tag(copy, len, KMIP_TAG_BATCH_COUNT);
	put32(copy + off + 4, 2);
	FAIL_(kmip_resp_parse(copy, len, KMIP_OP_GET, &r, why, sizeof(why)), EPROTO);
	memcpy(copy, buf, len);
	off = find_tag(copy, len, 0x420092); /* Time Stamp */
	put32(copy + off + 4, 4);
	FAIL_(kmip_resp_parse(copy, len, KMIP_OP_GET, &r, why, sizeof(why)), EPROTO);
	/* A tag in neither the 42 nor the 54 space; an unknown type. */
	memcpy(copy, buf, len);
	off = find_tag(copy, len, KMIP_TAG_CRYPTO_LENGTH);
	copy[off] = 0x43;
	FAIL_(ttlv_parse(copy, len, &top, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "430");
	memcpy(copy, buf, len);
	copy[off + 3] = 0x0c;
	FAIL_(ttlv_parse(copy, len, &top, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "unknown item type");
	/* Non-zero padding is tolerated (other servers send it). */
	memcpy(copy, buf, len);
	off = find_tag(copy, len, KMIP_TAG_RESULT_STATUS);
	memset(copy + off + 12, 0xa5, 4);
	OK_(kmip_resp_parse(copy, len, KMIP_OP_GET, &r, why, sizeof(why)));
	EQ_(r.status, KMIP_STATUS_SUCCESS);
}

static void test_depth_and_size(void)
{
	static uint8_t big[TTLV_MAX_MSG + 64];
	uint8_t buf[512], hdr[8];
	struct ttlv_enc e;
	struct ttlv top;
	char why[160];
	size_t len, n;

	/* Nesting up to the limit parses, one more level does not. */
	for (unsigned int depth = TTLV_MAX_DEPTH - 2; depth <= TTLV_MAX_DEPTH + 4; depth++) {
		memset(buf, 0, sizeof(buf));
		len = depth * 8;
		for (unsigned int i = 0; i < depth; i++) {
			put32(buf + i * 8, 0x42007B01u);
			put32(buf + i * 8 + 4, (uint32_t)(len - (i + 1) * 8));
		}
		if (depth < TTLV_MAX_DEPTH) {
			OK_(ttlv_parse(buf, len, &top, why, sizeof(why)));
		} else {
			FAIL_(ttlv_parse(buf, len, &top, why, sizeof(why)), EPROTO);
			CONTAINS_(why, "nested deeper");
		}
	}
	/* The encoder cannot build deeper than the decoder accepts. */
	ttlv_enc_init(&e, buf, sizeof(buf));
	for (unsigned int i = 0; i < TTLV_MAX_DEPTH - 1; i++)
		ttlv_begin(&e, KMIP_TAG_RESPONSE_MESSAGE);
	for (unsigned int i = 0; i < TTLV_MAX_DEPTH - 1; i++)
		ttlv_end(&e);
	OK_(ttlv_enc_finish(&e, &len));
	OK_(ttlv_parse(buf, len, &top, why, sizeof(why)));

	/* A message beyond the size limit, however well formed. */
	n = TTLV_MAX_MSG + 8;
	memset(big, 0, n);
	put32(big, 0x42007B01u);
	put32(big + 4, (uint32_t)(n - 8));
	for (size_t off = 8; off < n; off += 16) {
		put32(big + off, 0x54000108u); /* extension Byte Strings of 8 bytes */
		put32(big + off + 4, 8);
	}
	FAIL_(ttlv_parse(big, n, &top, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "exceeds the limit");
	n = TTLV_MAX_MSG - 8; /* the largest with a whole number of items */
	put32(big + 4, (uint32_t)(n - 8));
	OK_(ttlv_parse(big, n, &top, why, sizeof(why)));
	EQ_(ttlv_count(&top, 0x540001), (n - 8) / 16);

	/* The reader's header check. */
	put32(hdr, 0x42007B01u);
	put32(hdr + 4, 272);
	OK_(ttlv_msg_len(hdr, KMIP_TAG_RESPONSE_MESSAGE, TTLV_MAX_MSG, &len, why, sizeof(why)));
	EQ_(len, 280);
	put32(hdr + 4, 273);
	FAIL_(ttlv_msg_len(hdr, KMIP_TAG_RESPONSE_MESSAGE, TTLV_MAX_MSG, &len, why, sizeof(why)),
	      EPROTO);
	put32(hdr + 4, TTLV_MAX_MSG);
	FAIL_(ttlv_msg_len(hdr, KMIP_TAG_RESPONSE_MESSAGE, TTLV_MAX_MSG, &len, why, sizeof(why)),
	      EPROTO);
	put32(hdr + 4, 0xfffffff8u);
	FAIL_(ttlv_msg_len(hdr, KMIP_TAG_RESPONSE_MESSAGE, TTLV_MAX_MSG, &len, why, sizeof(why)),
	      EPROTO);
	memcpy(hdr, "HTTP/1.1", 8);
	FAIL_(ttlv_msg_len(hdr, KMIP_TAG_RESPONSE_MESSAGE, TTLV_MAX_MSG, &len, why, sizeof(why)),
	      EPROTO);
	CONTAINS_(why, "48 54 54 50");
}

/* --- Built answers: what a Get may and may not return --------------------------- */

struct get_answer {
	uint32_t version_major;
	int batch_count;
	bool with_op;
	uint32_t op;
	uint32_t object_type;
	uint32_t format;
	bool value_as_bytes; /* a wrapped Key Value */
	bool wrapping_data;
	size_t material_len;
	uint32_t alg;
	int32_t bits;
	bool unknown_tags;
	bool no_payload;
};

static const struct get_answer good = {
	.version_major = 1, .batch_count = 1, .with_op = true, .op = KMIP_OP_GET,
	.object_type = 2, .format = 1, .material_len = 32, .alg = 3, .bits = 256,
};

static size_t build_get(const struct get_answer *a, uint8_t *buf, size_t cap)
{
	static const uint8_t material[64] = { 0x11, 0x22, 0x33 };
	struct ttlv_enc e;
	size_t len = 0;

	ttlv_enc_init(&e, buf, cap);
	ttlv_begin(&e, KMIP_TAG_RESPONSE_MESSAGE);
	ttlv_begin(&e, KMIP_TAG_RESPONSE_HEADER);
	ttlv_begin(&e, KMIP_TAG_PROTOCOL_VERSION);
	ttlv_put_int(&e, KMIP_TAG_PROTOCOL_VERSION_MAJOR, (int32_t)a->version_major);
	ttlv_put_int(&e, KMIP_TAG_PROTOCOL_VERSION_MINOR, 1);
	ttlv_end(&e);
	if (a->unknown_tags)
		ttlv_put_text(&e, 0x54ABCD, "vendor extension", 16);
	ttlv_put_long(&e, 0x420092, 0x6b02c09a);
	ttlv_put_int(&e, KMIP_TAG_BATCH_COUNT, a->batch_count);
	ttlv_end(&e);
	ttlv_begin(&e, KMIP_TAG_BATCH_ITEM);
	if (a->unknown_tags) {
		ttlv_begin(&e, 0x42FFF0); /* an unknown standard structure */
		ttlv_put_int(&e, 0x42FFF1, 7);
		ttlv_end(&e);
	}
	if (a->with_op)
		ttlv_put_enum(&e, KMIP_TAG_OPERATION, a->op);
	ttlv_put_enum(&e, KMIP_TAG_RESULT_STATUS, 0);
	if (!a->no_payload) {
		ttlv_begin(&e, KMIP_TAG_RESPONSE_PAYLOAD);
		/* Optional fields in an unusual order: looked up by tag. */
		ttlv_put_text(&e, KMIP_TAG_UNIQUE_IDENTIFIER, "key-7", 5);
		ttlv_put_enum(&e, KMIP_TAG_OBJECT_TYPE, a->object_type);
		ttlv_begin(&e, KMIP_TAG_SYMMETRIC_KEY);
		ttlv_begin(&e, KMIP_TAG_KEY_BLOCK);
		ttlv_put_enum(&e, KMIP_TAG_CRYPTO_ALGORITHM, a->alg);
		ttlv_put_int(&e, KMIP_TAG_CRYPTO_LENGTH, a->bits);
		ttlv_put_enum(&e, KMIP_TAG_KEY_FORMAT_TYPE, a->format);
		if (a->value_as_bytes) {
			ttlv_put_bytes(&e, KMIP_TAG_KEY_VALUE, material, 40);
		} else {
			ttlv_begin(&e, KMIP_TAG_KEY_VALUE);
			if (a->unknown_tags)
				ttlv_put_bool(&e, 0x540001, true);
			ttlv_put_bytes(&e, KMIP_TAG_KEY_MATERIAL, material, a->material_len);
			ttlv_end(&e);
		}
		if (a->wrapping_data) {
			ttlv_begin(&e, KMIP_TAG_KEY_WRAPPING_DATA);
			ttlv_end(&e);
		}
		ttlv_end(&e);
		ttlv_end(&e);
		ttlv_end(&e);
	}
	ttlv_end(&e);
	ttlv_end(&e);
	REQUIRE_(ttlv_enc_finish(&e, &len) == 0);
	return len;
}

static int try_get(const struct get_answer *a, char *why, size_t whylen)
{
	uint8_t buf[1024];
	const uint8_t *key;
	struct kmip_resp r;
	size_t len = build_get(a, buf, sizeof(buf));
	int rc = kmip_resp_parse(buf, len, KMIP_OP_GET, &r, why, whylen);

	if (rc)
		return rc;
	rc = kmip_payload_key(&r, "key-7", &key, 32, why, whylen);
	if (!rc && key[0] != 0x11)
		return -EIO;
	return rc;
}

static void test_get_answers(void)
{
	struct get_answer a;
	char why[160];

	OK_(try_get(&good, why, sizeof(why)));
	a = good;
	a.unknown_tags = true;
	OK_(try_get(&a, why, sizeof(why)));
	a = good;
	a.with_op = false;
	OK_(try_get(&a, why, sizeof(why)));

	a = good;
	a.version_major = 2;
	FAIL_(try_get(&a, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "2.1");
	a = good;
	a.batch_count = 2;
	FAIL_(try_get(&a, why, sizeof(why)), EPROTO);
	a = good;
	a.op = KMIP_OP_CREATE;
	FAIL_(try_get(&a, why, sizeof(why)), EPROTO);
	a = good;
	a.no_payload = true;
	FAIL_(try_get(&a, why, sizeof(why)), EPROTO);
	a = good;
	a.object_type = 7; /* Secret Data */
	FAIL_(try_get(&a, why, sizeof(why)), ENOKEY);
	a = good;
	a.format = 7; /* Transparent Symmetric Key */
	FAIL_(try_get(&a, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "Raw");
	a = good;
	a.value_as_bytes = true;
	FAIL_(try_get(&a, why, sizeof(why)), EPROTO);
	a = good;
	a.wrapping_data = true;
	FAIL_(try_get(&a, why, sizeof(why)), EPROTO);
	a = good;
	a.material_len = 31;
	FAIL_(try_get(&a, why, sizeof(why)), EPROTO);
	a = good;
	a.material_len = 64;
	FAIL_(try_get(&a, why, sizeof(why)), EPROTO);
	a = good;
	a.alg = 2; /* 3DES */
	FAIL_(try_get(&a, why, sizeof(why)), ENOKEY);
	a = good;
	a.bits = 128;
	a.material_len = 16;
	FAIL_(try_get(&a, why, sizeof(why)), ENOKEY);
	CONTAINS_(why, "AES-128");
}

static size_t build_simple(uint32_t op, uint8_t *buf, size_t cap, void (*payload)(struct ttlv_enc *),
			   const char *text)
{
	struct ttlv_enc e;
	size_t len = 0;

	ttlv_enc_init(&e, buf, cap);
	ttlv_begin(&e, KMIP_TAG_RESPONSE_MESSAGE);
	ttlv_begin(&e, KMIP_TAG_RESPONSE_HEADER);
	ttlv_begin(&e, KMIP_TAG_PROTOCOL_VERSION);
	ttlv_put_int(&e, KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
	ttlv_put_int(&e, KMIP_TAG_PROTOCOL_VERSION_MINOR, 1);
	ttlv_end(&e);
	ttlv_put_int(&e, KMIP_TAG_BATCH_COUNT, 1);
	ttlv_end(&e);
	ttlv_begin(&e, KMIP_TAG_BATCH_ITEM);
	ttlv_put_enum(&e, KMIP_TAG_OPERATION, op);
	ttlv_put_enum(&e, KMIP_TAG_RESULT_STATUS, text ? 1 : 0);
	if (text) {
		ttlv_put_enum(&e, KMIP_TAG_RESULT_REASON, 0x100);
		ttlv_put_text(&e, KMIP_TAG_RESULT_MESSAGE, text, strlen(text));
	}
	if (payload) {
		ttlv_begin(&e, KMIP_TAG_RESPONSE_PAYLOAD);
		payload(&e);
		ttlv_end(&e);
	}
	ttlv_end(&e);
	ttlv_end(&e);
	REQUIRE_(ttlv_enc_finish(&e, &len) == 0);
	return len;
}

static void state_payload(struct ttlv_enc *e)
{
	ttlv_put_text(e, KMIP_TAG_UNIQUE_IDENTIFIER, "9", 1);
	ttlv_begin(e, KMIP_TAG_ATTRIBUTE);
	ttlv_put_text(e, KMIP_TAG_ATTRIBUTE_NAME, "Name", 4);
	ttlv_begin(e, KMIP_TAG_ATTRIBUTE_VALUE);
	ttlv_put_text(e, KMIP_TAG_NAME_VALUE, "x", 1);
	ttlv_put_enum(e, KMIP_TAG_NAME_TYPE, 1);
	ttlv_end(e);
	ttlv_end(e);
	ttlv_begin(e, KMIP_TAG_ATTRIBUTE);
	ttlv_put_text(e, KMIP_TAG_ATTRIBUTE_NAME, "State", 5);
	ttlv_put_enum(e, KMIP_TAG_ATTRIBUTE_VALUE, KMIP_STATE_DEACTIVATED);
	ttlv_end(e);
}

static void versions_payload(struct ttlv_enc *e)
{
	static const int v[][2] = { { 2, 0 }, { 1, 4 }, { 1, 1 } };

	for (size_t i = 0; i < 3; i++) {
		ttlv_begin(e, KMIP_TAG_PROTOCOL_VERSION);
		ttlv_put_int(e, KMIP_TAG_PROTOCOL_VERSION_MAJOR, v[i][0]);
		ttlv_put_int(e, KMIP_TAG_PROTOCOL_VERSION_MINOR, v[i][1]);
		ttlv_end(e);
	}
}

static void uid_payload_ctl(struct ttlv_enc *e)
{
	ttlv_put_text(e, KMIP_TAG_UNIQUE_IDENTIFIER, "a\nb", 3);
}

static void empty_payload(struct ttlv_enc *e)
{
	(void)e;
}

static void test_other_answers(void)
{
	uint8_t buf[1024];
	char why[160], uid[KMIP_UID_MAX + 1];
	int32_t v[8][2];
	struct kmip_resp r;
	uint32_t state = 0;
	size_t len;

	len = build_simple(KMIP_OP_GET_ATTRIBUTES, buf, sizeof(buf), state_payload, NULL);
	OK_(kmip_resp_parse(buf, len, KMIP_OP_GET_ATTRIBUTES, &r, why, sizeof(why)));
	OK_(kmip_payload_state(&r, &state, why, sizeof(why)));
	EQ_(state, KMIP_STATE_DEACTIVATED);
	STREQ_(kmip_state_name(state), "Deactivated");
	len = build_simple(KMIP_OP_GET_ATTRIBUTES, buf, sizeof(buf), uid_payload_ctl, NULL);
	OK_(kmip_resp_parse(buf, len, KMIP_OP_GET_ATTRIBUTES, &r, why, sizeof(why)));
	FAIL_(kmip_payload_state(&r, &state, why, sizeof(why)), EPROTO);

	len = build_simple(KMIP_OP_DISCOVER_VERSIONS, buf, sizeof(buf), versions_payload, NULL);
	OK_(kmip_resp_parse(buf, len, KMIP_OP_DISCOVER_VERSIONS, &r, why, sizeof(why)));
	EQ_(kmip_payload_versions(&r, v, 8), 3);
	EQ_(v[0][0], 2);
	EQ_(v[2][1], 1);
	EQ_(kmip_payload_versions(&r, v, 2), 2);

	/* A UID with a control character is refused; Locate with none is -ENOKEY. */
	len = build_simple(KMIP_OP_CREATE, buf, sizeof(buf), uid_payload_ctl, NULL);
	OK_(kmip_resp_parse(buf, len, KMIP_OP_CREATE, &r, why, sizeof(why)));
	FAIL_(kmip_payload_uid(&r, uid, why, sizeof(why)), EPROTO);
	len = build_simple(KMIP_OP_LOCATE, buf, sizeof(buf), empty_payload, NULL);
	OK_(kmip_resp_parse(buf, len, KMIP_OP_LOCATE, &r, why, sizeof(why)));
	FAIL_(kmip_payload_uid(&r, uid, why, sizeof(why)), ENOKEY);
	EQ_(kmip_payload_uid_count(&r), 0);
	len = build_simple(KMIP_OP_LOCATE, buf, sizeof(buf), NULL, NULL);
	OK_(kmip_resp_parse(buf, len, KMIP_OP_LOCATE, &r, why, sizeof(why)));
	FAIL_(kmip_payload_uid(&r, uid, why, sizeof(why)), ENOKEY);
	len = build_simple(KMIP_OP_CREATE, buf, sizeof(buf), empty_payload, NULL);
	OK_(kmip_resp_parse(buf, len, KMIP_OP_CREATE, &r, why, sizeof(why)));
	FAIL_(kmip_payload_uid(&r, uid, why, sizeof(why)), EPROTO);

	/* A server's message is kept printable and bounded. */
	{
		char text[400];

		memset(text, 'm', sizeof(text) - 1);
		text[sizeof(text) - 1] = '\0';
		text[0] = '\x1b';
		text[1] = '\n';
		len = build_simple(KMIP_OP_GET, buf, sizeof(buf), NULL, text);
		OK_(kmip_resp_parse(buf, len, KMIP_OP_GET, &r, why, sizeof(why)));
		EQ_(r.status, KMIP_STATUS_FAILED);
		EQ_(r.reason, 0x100);
		STREQ_(kmip_reason_name(r.reason), "General Failure");
		EQ_(strlen(r.text), KMIP_TEXT_MAX);
		TRUE_(r.text[0] == '?' && r.text[1] == '?');
		TRUE_(!strcmp(r.text + KMIP_TEXT_MAX - 3, "..."));
	}
}

/* --- Listing keys: Locate of every key, batched Get Attributes ---------------- */

/* Offset of the @n-th (from 0) item header with @tag in @buf. */
static size_t find_tag_n(const uint8_t *buf, size_t len, uint32_t tag, unsigned int n)
{
	for (size_t off = 0; off + 8 <= len; off += 8)
		if (((uint32_t)buf[off] << 16 | (uint32_t)buf[off + 1] << 8 | buf[off + 2]) ==
			    tag && !n--)
			return off;
	REQUIRE_(!"tag present");
	return 0;
}

static void test_list_requests(void)
{
	uint8_t want[1024], got[KMIP_BATCH_REQ_MAX];
	const char *uids[KMIP_LIST_BATCH + 1];
	char longest[KMIP_UID_MAX + 1];
	size_t wlen, glen;
	struct ttlv top;
	char why[128];

	wlen = vec("16-locate-keys.req", want, sizeof(want));
	OK_(kmip_req_locate_keys(got, KMIP_REQ_MAX, &glen, (int32_t)KMIP_LIST_MAX + 1));
	EQ_(glen, 168);
	EQ_(glen, wlen);
	MEMEQ_(got, want, wlen);
	FAIL_(kmip_req_locate_keys(got, KMIP_REQ_MAX, &glen, 0), EINVAL);

	wlen = vec("17-get-names.req", want, sizeof(want));
	uids[0] = "1";
	OK_(kmip_req_get_names(got, sizeof(got), &glen, uids, 1));
	EQ_(glen, 152);
	EQ_(glen, wlen);
	MEMEQ_(got, want, wlen);

	wlen = vec("18-get-names-batch.req", want, sizeof(want));
	uids[0] = "2";
	uids[1] = "999";
	uids[2] = "4";
	OK_(kmip_req_get_names(got, sizeof(got), &glen, uids, 3));
	EQ_(glen, 376);
	EQ_(glen, wlen);
	MEMEQ_(got, want, wlen);

	/* A full batch of the longest identifiers fits the batch buffer. */
	memset(longest, 'u', KMIP_UID_MAX);
	longest[KMIP_UID_MAX] = '\0';
	for (size_t i = 0; i <= KMIP_LIST_BATCH; i++)
		uids[i] = longest;
	OK_(kmip_req_get_names(got, sizeof(got), &glen, uids, KMIP_LIST_BATCH));
	TRUE_(glen <= KMIP_BATCH_REQ_MAX);
	OK_(ttlv_parse(got, glen, &top, why, sizeof(why)));
	EQ_(ttlv_count(&top, KMIP_TAG_BATCH_ITEM), KMIP_LIST_BATCH);
	FAIL_(kmip_req_get_names(got, glen - 8, &glen, uids, KMIP_LIST_BATCH), ENOBUFS);
	/* Batches we never send, and identifiers we refuse to send. */
	FAIL_(kmip_req_get_names(got, sizeof(got), &glen, uids, 0), EINVAL);
	FAIL_(kmip_req_get_names(got, sizeof(got), &glen, uids, KMIP_LIST_BATCH + 1), EINVAL);
	uids[1] = "a\tb";
	FAIL_(kmip_req_get_names(got, sizeof(got), &glen, uids, 2), EINVAL);
	uids[1] = "";
	FAIL_(kmip_req_get_names(got, sizeof(got), &glen, uids, 2), EINVAL);
}

struct seen_uids {
	char uid[8][KMIP_UID_MAX + 1];
	size_t n, stop_at;
};

static int seen_uid(void *arg, const char *uid)
{
	struct seen_uids *s = arg;

	if (s->n < 8)
		snprintf(s->uid[s->n], sizeof(s->uid[0]), "%s", uid);
	return ++s->n == s->stop_at ? 7 : 0;
}

static void test_list_answers(void)
{
	uint8_t buf[1024], copy[1024];
	struct kmip_resp r, items[KMIP_LIST_BATCH];
	char why[160], name[KMIP_NAME_MAX + 1], uid[KMIP_UID_MAX + 1];
	struct seen_uids s = { 0 };
	uint32_t state = 0;
	size_t len, count, names, off;

	/* 16: every key the client may see, newest first. */
	len = vec("16-locate-keys.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse(buf, len, KMIP_OP_LOCATE, &r, why, sizeof(why)));
	EQ_(kmip_payload_uid_count(&r), 4);
	OK_(kmip_payload_uid_each(&r, seen_uid, &s, why, sizeof(why)));
	EQ_(s.n, 4);
	STREQ_(s.uid[0], "2");
	STREQ_(s.uid[3], "1");
	s = (struct seen_uids){ .stop_at = 2 };
	EQ_(kmip_payload_uid_each(&r, seen_uid, &s, why, sizeof(why)), 7); /* stops */
	EQ_(s.n, 2);

	/* 17: one key, one name. */
	len = vec("17-get-names.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse(buf, len, KMIP_OP_GET_ATTRIBUTES, &r, why, sizeof(why)));
	OK_(kmip_payload_uid(&r, uid, why, sizeof(why)));
	STREQ_(uid, "1");
	OK_(kmip_payload_state(&r, &state, why, sizeof(why)));
	EQ_(state, KMIP_STATE_ACTIVE);
	OK_(kmip_payload_name(&r, "vmcryptfs-", name, &names, why, sizeof(why)));
	STREQ_(name, "vmcryptfs-vm-0123456789abcdef0123456789abcdef");
	OK_(kmip_payload_name(&r, "", name, NULL, why, sizeof(why)));
	STREQ_(name, "vmcryptfs-vm-0123456789abcdef0123456789abcdef");
	FAIL_(kmip_payload_name(&r, "vmcryptfs-ds-", name, &names, why, sizeof(why)), ENOENT);
	EQ_(names, 1);
	CONTAINS_(why, "no name starts with \"vmcryptfs-ds-\"");
	/* The same answer through the batch parser, as a batch of one. */
	OK_(kmip_resp_parse_batch(buf, len, KMIP_OP_GET_ATTRIBUTES, 1, items, &count, why,
				  sizeof(why)));
	EQ_(count, 1);
	TRUE_(!items[0].has_batch_id);

	/* 18: a batch of three, one of them unknown to the server. */
	len = vec("18-get-names-batch.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse_batch(buf, len, KMIP_OP_GET_ATTRIBUTES, 3, items, &count, why,
				  sizeof(why)));
	EQ_(count, 3);
	for (size_t i = 0; i < 3; i++) {
		TRUE_(items[i].has_batch_id && items[i].has_op);
		EQ_(items[i].batch_id, i);
	}
	EQ_(items[0].status, KMIP_STATUS_SUCCESS);
	OK_(kmip_payload_name(&items[0], "vmcryptfs-", name, NULL, why, sizeof(why)));
	STREQ_(name, "vmcryptfs-ds-fedcba9876543210fedcba9876543210-2");
	OK_(kmip_payload_state(&items[0], &state, why, sizeof(why)));
	EQ_(state, KMIP_STATE_PRE_ACTIVE);
	EQ_(items[1].status, KMIP_STATUS_FAILED);
	EQ_(items[1].reason, KMIP_REASON_ITEM_NOT_FOUND);
	STREQ_(items[1].text, "Could not locate object: 999");
	OK_(kmip_payload_uid(&items[2], uid, why, sizeof(why)));
	STREQ_(uid, "4");
	FAIL_(kmip_payload_name(&items[2], "", name, &names, why, sizeof(why)), ENOENT);
	EQ_(names, 0);
	CONTAINS_(why, "has no name");
	/* Not an answer to one request, nor to a batch of two. */
	FAIL_(kmip_resp_parse(buf, len, KMIP_OP_GET_ATTRIBUTES, &r, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "3 batch items");
	FAIL_(kmip_resp_parse_batch(buf, len, KMIP_OP_GET_ATTRIBUTES, 2, items, &count, why,
				    sizeof(why)), EPROTO);
	FAIL_(kmip_resp_parse_batch(buf, len, KMIP_OP_LOCATE, 3, items, &count, why,
				    sizeof(why)), EPROTO);
	FAIL_(kmip_resp_parse_batch(buf, len, KMIP_OP_GET_ATTRIBUTES, KMIP_LIST_BATCH + 1, items,
				    &count, why, sizeof(why)), EPROTO);
	/* A batch id answered twice, one never sent, one of the wrong size. */
	off = find_tag_n(buf, len, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, 1);
	memcpy(copy, buf, len);
	copy[off + 11] = 0;
	FAIL_(kmip_resp_parse_batch(copy, len, KMIP_OP_GET_ATTRIBUTES, 3, items, &count, why,
				    sizeof(why)), EPROTO);
	CONTAINS_(why, "answered twice");
	copy[off + 11] = 9;
	FAIL_(kmip_resp_parse_batch(copy, len, KMIP_OP_GET_ATTRIBUTES, 3, items, &count, why,
				    sizeof(why)), EPROTO);
	CONTAINS_(why, "was not sent");
	memcpy(copy, buf, len);
	put32(copy + off + 4, 3);
	FAIL_(kmip_resp_parse_batch(copy, len, KMIP_OP_GET_ATTRIBUTES, 3, items, &count, why,
				    sizeof(why)), EPROTO);
	CONTAINS_(why, "did not send");
	/* Batch Count that disagrees with the items. */
	memcpy(copy, buf, len);
	off = find_tag(copy, len, KMIP_TAG_BATCH_COUNT);
	put32(copy + off + 8, 2);
	FAIL_(kmip_resp_parse_batch(copy, len, KMIP_OP_GET_ATTRIBUTES, 3, items, &count, why,
				    sizeof(why)), EPROTO);
	CONTAINS_(why, "Batch Count 2");
	/* Every truncation of the batch answer is refused (an exact-size copy, so
	 * that a read past it is caught by valgrind / ASan). */
	{
		int bad = 0;

		for (size_t n = 0; n < len; n++) {
			uint8_t *t = malloc(n ? n : 1);

			REQUIRE_(t);
			memcpy(t, buf, n);
			bad += kmip_resp_parse_batch(t, n, KMIP_OP_GET_ATTRIBUTES, 3, items, &count,
						     why, sizeof(why)) != -EPROTO;
			free(t);
		}
		EQ_(bad, 0);
	}

	/* 19: PyKMIP refuses a batch without ids as a whole. */
	len = vec("19-batch-without-ids.resp", buf, sizeof(buf));
	OK_(kmip_resp_parse_batch(buf, len, KMIP_OP_GET_ATTRIBUTES, 2, items, &count, why,
				  sizeof(why)));
	EQ_(count, 1);
	TRUE_(!items[0].has_batch_id && !items[0].has_op && !items[0].has_payload);
	EQ_(items[0].status, KMIP_STATUS_FAILED);
	EQ_(items[0].reason, KMIP_REASON_INVALID_MESSAGE);
	STREQ_(items[0].text, "Batch item ID is undefined.");
}

/* Get Attributes payloads for kmip_payload_name: a name list and a state. */
static const char *names_in[4];
static uint32_t names_value_type = TTLV_STRUCT;

static void names_payload(struct ttlv_enc *e)
{
	ttlv_put_text(e, KMIP_TAG_UNIQUE_IDENTIFIER, "9", 1);
	for (size_t i = 0; i < 4 && names_in[i]; i++) {
		ttlv_begin(e, KMIP_TAG_ATTRIBUTE);
		ttlv_put_text(e, KMIP_TAG_ATTRIBUTE_NAME, "Name", 4);
		ttlv_put_int(e, 0x420009, (int32_t)i); /* Attribute Index */
		if (names_value_type == TTLV_STRUCT) {
			ttlv_begin(e, KMIP_TAG_ATTRIBUTE_VALUE);
			ttlv_put_text(e, KMIP_TAG_NAME_VALUE, names_in[i], strlen(names_in[i]));
			ttlv_put_enum(e, KMIP_TAG_NAME_TYPE, 1);
			ttlv_end(e);
		} else {
			ttlv_put_text(e, KMIP_TAG_ATTRIBUTE_VALUE, names_in[i],
				      strlen(names_in[i]));
		}
		ttlv_end(e);
	}
	ttlv_begin(e, KMIP_TAG_ATTRIBUTE);
	ttlv_put_text(e, KMIP_TAG_ATTRIBUTE_NAME, "State", 5);
	ttlv_put_enum(e, KMIP_TAG_ATTRIBUTE_VALUE, KMIP_STATE_DESTROYED);
	ttlv_end(e);
}

static void uid_int_payload(struct ttlv_enc *e)
{
	ttlv_put_text(e, KMIP_TAG_UNIQUE_IDENTIFIER, "1", 1);
	ttlv_put_int(e, KMIP_TAG_UNIQUE_IDENTIFIER, 2);
}

static int payload_name(const char *n0, const char *n1, const char *prefix, char *name,
			size_t *names, char *why, size_t whylen)
{
	uint8_t buf[2048];
	struct kmip_resp r;
	size_t len;

	names_in[0] = n0;
	names_in[1] = n1;
	len = build_simple(KMIP_OP_GET_ATTRIBUTES, buf, sizeof(buf), names_payload, NULL);
	REQUIRE_(kmip_resp_parse(buf, len, KMIP_OP_GET_ATTRIBUTES, &r, why, whylen) == 0);
	return kmip_payload_name(&r, prefix, name, names, why, whylen);
}

static void test_list_built_answers(void)
{
	char why[160], name[KMIP_NAME_MAX + 1], big_name[KMIP_NAME_MAX + 2];
	struct seen_uids s = { 0 };
	struct kmip_resp r;
	struct ttlv top;
	uint8_t buf[1024], *big;
	uint32_t state = 0;
	size_t len, names, cap, n;
	struct ttlv_enc e;

	/* The first name with the prefix wins; names that are not labels never match. */
	OK_(payload_name("backup", "vmcryptfs-vm-1", "vmcryptfs-", name, &names, why, sizeof(why)));
	STREQ_(name, "vmcryptfs-vm-1");
	EQ_(names, 2);
	OK_(payload_name("vmcryptfs-a", "vmcryptfs-b", "vmcryptfs-", name, NULL, why, sizeof(why)));
	STREQ_(name, "vmcryptfs-a");
	FAIL_(payload_name("vmcryptfs-\n1", "vmcryptfs", "vmcryptfs-", name, &names, why,
			   sizeof(why)), ENOENT);
	EQ_(names, 2);
	memset(big_name, 'v', KMIP_NAME_MAX + 1);
	big_name[KMIP_NAME_MAX + 1] = '\0';
	FAIL_(payload_name(big_name, NULL, "", name, &names, why, sizeof(why)), ENOENT);
	big_name[KMIP_NAME_MAX] = '\0';
	OK_(payload_name(big_name, NULL, "vv", name, &names, why, sizeof(why)));
	EQ_(strlen(name), KMIP_NAME_MAX);
	names_value_type = TTLV_TEXT; /* a Name that is not a structure */
	FAIL_(payload_name("vmcryptfs-x", NULL, "", name, &names, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "Name attribute value");
	names_value_type = TTLV_STRUCT;
	/* State Destroyed comes through as it is; listing leaves such keys out. */
	names_in[0] = NULL;
	len = build_simple(KMIP_OP_GET_ATTRIBUTES, buf, sizeof(buf), names_payload, NULL);
	OK_(kmip_resp_parse(buf, len, KMIP_OP_GET_ATTRIBUTES, &r, why, sizeof(why)));
	OK_(kmip_payload_state(&r, &state, why, sizeof(why)));
	EQ_(state, KMIP_STATE_DESTROYED);
	FAIL_(kmip_payload_name(&r, "", name, &names, why, sizeof(why)), ENOENT);
	/* A failure answer has no names. */
	len = build_simple(KMIP_OP_GET_ATTRIBUTES, buf, sizeof(buf), NULL, "gone");
	OK_(kmip_resp_parse(buf, len, KMIP_OP_GET_ATTRIBUTES, &r, why, sizeof(why)));
	FAIL_(kmip_payload_name(&r, "", name, &names, why, sizeof(why)), EPROTO);

	/* A Locate answer with an identifier that is not text, or not printable. */
	len = build_simple(KMIP_OP_LOCATE, buf, sizeof(buf), uid_int_payload, NULL);
	OK_(kmip_resp_parse(buf, len, KMIP_OP_LOCATE, &r, why, sizeof(why)));
	FAIL_(kmip_payload_uid_each(&r, seen_uid, &s, why, sizeof(why)), EPROTO);
	EQ_(s.n, 1);
	len = build_simple(KMIP_OP_LOCATE, buf, sizeof(buf), uid_payload_ctl, NULL);
	OK_(kmip_resp_parse(buf, len, KMIP_OP_LOCATE, &r, why, sizeof(why)));
	FAIL_(kmip_payload_uid_each(&r, seen_uid, &s, why, sizeof(why)), EPROTO);
	len = build_simple(KMIP_OP_LOCATE, buf, sizeof(buf), NULL, NULL);
	OK_(kmip_resp_parse(buf, len, KMIP_OP_LOCATE, &r, why, sizeof(why)));
	s = (struct seen_uids){ 0 };
	OK_(kmip_payload_uid_each(&r, seen_uid, &s, why, sizeof(why)));
	EQ_(s.n, 0);

	/* The largest listing: KMIP_LIST_MAX + 1 identifiers. Only a Locate answer
	 * may be that large, and not beyond KMIP_LOCATE_MAX_MSG. */
	cap = 128 + (KMIP_LIST_MAX + 1) * 24;
	big = malloc(cap);
	REQUIRE_(big);
	ttlv_enc_init(&e, big, cap);
	ttlv_begin(&e, KMIP_TAG_RESPONSE_MESSAGE);
	ttlv_begin(&e, KMIP_TAG_RESPONSE_HEADER);
	ttlv_begin(&e, KMIP_TAG_PROTOCOL_VERSION);
	ttlv_put_int(&e, KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
	ttlv_put_int(&e, KMIP_TAG_PROTOCOL_VERSION_MINOR, 1);
	ttlv_end(&e);
	ttlv_put_int(&e, KMIP_TAG_BATCH_COUNT, 1);
	ttlv_end(&e);
	ttlv_begin(&e, KMIP_TAG_BATCH_ITEM);
	ttlv_put_enum(&e, KMIP_TAG_OPERATION, KMIP_OP_LOCATE);
	ttlv_put_enum(&e, KMIP_TAG_RESULT_STATUS, 0);
	ttlv_begin(&e, KMIP_TAG_RESPONSE_PAYLOAD);
	for (unsigned int i = 0; i <= KMIP_LIST_MAX; i++) {
		char id[16];

		ttlv_put_text(&e, KMIP_TAG_UNIQUE_IDENTIFIER, id,
			      (size_t)snprintf(id, sizeof(id), "%u", i + 1));
	}
	ttlv_end(&e);
	ttlv_end(&e);
	ttlv_end(&e);
	OK_(ttlv_enc_finish(&e, &len));
	TRUE_(len > TTLV_MAX_MSG && len <= KMIP_LOCATE_MAX_MSG);
	EQ_(kmip_resp_max(KMIP_OP_LOCATE), KMIP_LOCATE_MAX_MSG);
	EQ_(kmip_resp_max(KMIP_OP_GET_ATTRIBUTES), TTLV_MAX_MSG);
	OK_(kmip_resp_parse(big, len, KMIP_OP_LOCATE, &r, why, sizeof(why)));
	EQ_(kmip_payload_uid_count(&r), KMIP_LIST_MAX + 1);
	s = (struct seen_uids){ 0 };
	OK_(kmip_payload_uid_each(&r, seen_uid, &s, why, sizeof(why)));
	EQ_(s.n, KMIP_LIST_MAX + 1);
	/* The same bytes as an answer to anything else are too large. */
	FAIL_(kmip_resp_parse(big, len, KMIP_OP_GET_ATTRIBUTES, &r, why, sizeof(why)), EPROTO);
	CONTAINS_(why, "exceeds the limit");
	FAIL_(ttlv_parse_max(big, len, len - 8, &top, why, sizeof(why)), EPROTO);
	/* The reader takes such an answer only with the Locate limit. */
	OK_(ttlv_msg_len(big, KMIP_TAG_RESPONSE_MESSAGE, kmip_resp_max(KMIP_OP_LOCATE), &n, why,
			 sizeof(why)));
	EQ_(n, len);
	FAIL_(ttlv_msg_len(big, KMIP_TAG_RESPONSE_MESSAGE, TTLV_MAX_MSG, &n, why, sizeof(why)),
	      EPROTO);
	free(big);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s VECTOR_DIR\n", argv[0]);
		return 2;
	}
	vec_dir = argv[1];
	test_requests();
	test_encoder();
	test_responses();
	test_truncation();
	test_lengths();
	test_depth_and_size();
	test_get_answers();
	test_other_answers();
	test_list_requests();
	test_list_answers();
	test_list_built_answers();
	return vmc_test_exit("test_kmip_msg");
}
