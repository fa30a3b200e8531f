// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Fuzz target: the KMIP TTLV decoder and the answer checks of the kmip key
 * provider (keyprov/kmip/ttlv.c, kmip_msg.c), fed what a KMS or anything
 * posing as one could send. Every input is read as the 8-byte header a
 * client sees first, then as a whole message, then as the answer to each
 * operation the provider sends, with every payload getter applied. The seed
 * corpus holds the answers captured from pykmip-server.
 */
#include "../../keyprov/kmip/kmip_msg.h"
#include "../../keyprov/kmip/ttlv.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t ops[] = {
	KMIP_OP_CREATE, KMIP_OP_LOCATE, KMIP_OP_GET, KMIP_OP_GET_ATTRIBUTES,
	KMIP_OP_ACTIVATE, KMIP_OP_DISCOVER_VERSIONS,
};

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
	}
	return 0;
}
