// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Fuzz target: the KMIP TTLV decoder and the answer checks of the kmip key
 * provider (keyprov/kmip/ttlv.c, kmip_msg.c), fed what a KMS or anything
 * posing as one could send. Every input is read as the 8-byte header a
 * client sees first, then as a whole message, then as the answer to each
 * operation the provider sends, with every payload getter applied, and as
 * the answer to batches of Get Attributes (list_keys). The seed corpus holds
 * the answers captured from pykmip-server.
 */
#include "../../keyprov/kmip/kmip_msg.h"
#include "../../keyprov/kmip/ttlv.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t ops[] = {
	KMIP_OP_CREATE, KMIP_OP_LOCATE, KMIP_OP_GET, KMIP_OP_GET_ATTRIBUTES,
	KMIP_OP_ACTIVATE, KMIP_OP_DISCOVER_VERSIONS,
};

static int count_uid(void *arg, const char *uid)
{
	if (!uid[0] || strlen(uid) > KMIP_UID_MAX)
		__builtin_trap();
	(*(size_t *)arg)++;
	return 0;
}

/* The getters list_keys applies to one answered key. */
static void names(const struct kmip_resp *r)
{
	char why[160], name[KMIP_NAME_MAX + 1], uid[KMIP_UID_MAX + 1];
	uint32_t state;
	size_t n;

	if (!kmip_payload_name(r, "vmcryptfs-", name, &n, why, sizeof(why)) &&
	    (strncmp(name, "vmcryptfs-", 10) || strlen(name) > KMIP_NAME_MAX))
		__builtin_trap();
	kmip_payload_name(r, "", name, NULL, why, sizeof(why));
	kmip_payload_state(r, &state, why, sizeof(why));
	kmip_payload_uid(r, uid, why, sizeof(why));
}

/* Walk every item of a checked tree: the iteration must stay inside it. */
static size_t walk(const struct ttlv *parent, unsigned int depth)
{
	struct ttlv it;
	size_t n = 0;
	bool more;

	if (parent->type != TTLV_STRUCT || depth > TTLV_MAX_DEPTH)
		return 0;
	more = ttlv_next(parent, NULL, &it);
	for (; more; more = ttlv_next(parent, &it, &it)) {
		n++;
		n += walk(&it, depth + 1);
		(void)ttlv_int(&it);
		(void)ttlv_long(&it);
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[160], uid[KMIP_UID_MAX + 1];
	const uint8_t *key;
	struct kmip_resp r;
	struct ttlv top;
	int32_t v[8][2];
	uint32_t state;
	size_t len;

	if (size >= TTLV_HDR_LEN)
		ttlv_msg_len(data, KMIP_TAG_RESPONSE_MESSAGE, TTLV_MAX_MSG, &len, why, sizeof(why));
	if (ttlv_parse(data, size, &top, why, sizeof(why)) == 0)
		walk(&top, 0);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (kmip_resp_parse(data, size, ops[i], &r, why, sizeof(why)))
			continue;
		if (strlen(r.text) > KMIP_TEXT_MAX)
			__builtin_trap();
		kmip_payload_uid(&r, uid, why, sizeof(why));
		kmip_payload_uid_count(&r);
		if (!kmip_payload_key(&r, "2", &key, 32, why, sizeof(why)) &&
		    (key < data || key + 32 > data + size))
			__builtin_trap();
		kmip_payload_state(&r, &state, why, sizeof(why));
		kmip_payload_versions(&r, v, 8);
		len = 0;
		if (!kmip_payload_uid_each(&r, count_uid, &len, why, sizeof(why)) &&
		    len != kmip_payload_uid_count(&r))
			__builtin_trap();
		names(&r);
	}
	for (size_t n = 1; n <= KMIP_LIST_BATCH; n += 15) {
		struct kmip_resp items[KMIP_LIST_BATCH];
		bool seen[KMIP_LIST_BATCH] = { false };
		size_t count;

		if (kmip_resp_parse_batch(data, size, KMIP_OP_GET_ATTRIBUTES, n, items, &count, why,
					  sizeof(why)))
			continue;
		if (!count || count > n)
			__builtin_trap();
		for (size_t i = 0; i < count; i++) {
			if (items[i].has_batch_id) {
				if (items[i].batch_id >= n || seen[items[i].batch_id])
					__builtin_trap();
				seen[items[i].batch_id] = true;
			}
			names(&items[i]);
		}
	}
	return 0;
}
