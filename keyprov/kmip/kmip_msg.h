/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * KMIP 1.1 messages that vmcryptfs sends, and the checks of their answers
 * (KMIP 1.1 specification sections 4, 6 and 7).
 *
 * Requests are the smallest that work: a Request Header with Protocol Version
 * 1.1 and Batch Count 1, one Batch Item, no Time Stamp (PyKMIP refuses one
 * more than 60 s off its clock), no Maximum Response Size, no asynchronous or
 * batch options. Their bytes are deterministic and equal to PyKMIP's own
 * encoder's (tests/kmip/vectors).
 *
 * kmip_resp_parse() checks the envelope of an answer (Response Message,
 * header, exactly one Batch Item, the operation we asked for) and yields the
 * Result Status, Reason and Message, and the payload; kmip_resp_parse_batch()
 * does the same for the one batched request (Get Attributes of up to
 * KMIP_LIST_BATCH keys, when listing keys). The payload getters
 * then check what each operation must return. None of this code copies
 * values: a response that carries key material stays in the caller's secret
 * buffer, and kmip_payload_key() returns a pointer into it.
 *
 * Nothing here does I/O or needs OpenSSL, so the fuzz target and the unit
 * tests link it alone.
 */
#ifndef VMC_KMIP_MSG_H
#define VMC_KMIP_MSG_H

#include "ttlv.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Tags (KMIP 1.1 section 9.1.3.1) */
#define KMIP_TAG_ATTRIBUTE 0x420008u
#define KMIP_TAG_ATTRIBUTE_NAME 0x42000Au
#define KMIP_TAG_ATTRIBUTE_VALUE 0x42000Bu
#define KMIP_TAG_BATCH_COUNT 0x42000Du
#define KMIP_TAG_BATCH_ERROR_CONTINUATION 0x42000Eu
#define KMIP_TAG_BATCH_ITEM 0x42000Fu
#define KMIP_TAG_CRYPTO_ALGORITHM 0x420028u
#define KMIP_TAG_CRYPTO_LENGTH 0x42002Au
#define KMIP_TAG_KEY_BLOCK 0x420040u
#define KMIP_TAG_KEY_COMPRESSION_TYPE 0x420041u
#define KMIP_TAG_KEY_FORMAT_TYPE 0x420042u
#define KMIP_TAG_KEY_MATERIAL 0x420043u
#define KMIP_TAG_KEY_VALUE 0x420045u
#define KMIP_TAG_KEY_WRAPPING_DATA 0x420046u
#define KMIP_TAG_MAXIMUM_ITEMS 0x42004Fu
#define KMIP_TAG_NAME 0x420053u
#define KMIP_TAG_NAME_TYPE 0x420054u
#define KMIP_TAG_NAME_VALUE 0x420055u
#define KMIP_TAG_OBJECT_TYPE 0x420057u
#define KMIP_TAG_OPERATION 0x42005Cu
#define KMIP_TAG_PROTOCOL_VERSION 0x420069u
#define KMIP_TAG_PROTOCOL_VERSION_MAJOR 0x42006Au
#define KMIP_TAG_PROTOCOL_VERSION_MINOR 0x42006Bu
#define KMIP_TAG_REQUEST_HEADER 0x420077u
#define KMIP_TAG_REQUEST_MESSAGE 0x420078u
#define KMIP_TAG_REQUEST_PAYLOAD 0x420079u
#define KMIP_TAG_RESPONSE_HEADER 0x42007Au
#define KMIP_TAG_RESPONSE_MESSAGE 0x42007Bu
#define KMIP_TAG_RESPONSE_PAYLOAD 0x42007Cu
#define KMIP_TAG_RESULT_MESSAGE 0x42007Du
#define KMIP_TAG_RESULT_REASON 0x42007Eu
#define KMIP_TAG_RESULT_STATUS 0x42007Fu
#define KMIP_TAG_STATE 0x42008Du
#define KMIP_TAG_SYMMETRIC_KEY 0x42008Fu
#define KMIP_TAG_TEMPLATE_ATTRIBUTE 0x420091u
#define KMIP_TAG_UNIQUE_BATCH_ITEM_ID 0x420093u
#define KMIP_TAG_UNIQUE_IDENTIFIER 0x420094u

/* Operations (9.1.3.2.26) */
#define KMIP_OP_CREATE 0x01u
#define KMIP_OP_LOCATE 0x08u
#define KMIP_OP_GET 0x0Au
#define KMIP_OP_GET_ATTRIBUTES 0x0Bu
#define KMIP_OP_ACTIVATE 0x12u
#define KMIP_OP_DISCOVER_VERSIONS 0x1Eu

/* Result Status (9.1.3.2.28) */
#define KMIP_STATUS_SUCCESS 0u
#define KMIP_STATUS_FAILED 1u

/* Result Reason (9.1.3.2.29), the ones we act on */
#define KMIP_REASON_ITEM_NOT_FOUND 0x01u
#define KMIP_REASON_RESPONSE_TOO_LARGE 0x02u
#define KMIP_REASON_AUTH_NOT_SUCCESSFUL 0x03u
#define KMIP_REASON_INVALID_MESSAGE 0x04u
#define KMIP_REASON_OPERATION_NOT_SUPPORTED 0x05u
#define KMIP_REASON_FEATURE_NOT_SUPPORTED 0x08u
#define KMIP_REASON_PERMISSION_DENIED 0x0Cu
#define KMIP_REASON_OBJECT_ARCHIVED 0x0Du

/* State (9.1.3.2.17) */
#define KMIP_STATE_PRE_ACTIVE 1u
#define KMIP_STATE_ACTIVE 2u
#define KMIP_STATE_DEACTIVATED 3u
#define KMIP_STATE_COMPROMISED 4u
#define KMIP_STATE_DESTROYED 5u
#define KMIP_STATE_DESTROYED_COMPROMISED 6u

/* Object Type 2 = Symmetric Key, Algorithm 3 = AES, Key Format Type 1 = Raw */
#define KMIP_OBJECT_SYMMETRIC_KEY 2u
#define KMIP_ALG_AES 3u
#define KMIP_FORMAT_RAW 1u

/* Batch Error Continuation Option (9.1.3.2.30) */
#define KMIP_BATCH_CONTINUE 1u

/* Largest request we build (a Create with a 255-byte name is under 700). */
#define KMIP_REQ_MAX 1024u

/*
 * Listing keys (KMIP 1.1 has no Offset Items, so no paging): one Locate of
 * every symmetric key, with Maximum Items KMIP_LIST_MAX + 1 so that "more
 * than we list" shows; its answer may be up to KMIP_LOCATE_MAX_MSG bytes
 * (100,001 identifiers of up to 160 bytes). Then Get Attributes in batches
 * of KMIP_LIST_BATCH keys per request, whose request needs at most
 * KMIP_BATCH_REQ_MAX bytes (344 per key with a 255-byte identifier).
 */
#define KMIP_LIST_MAX 100000u
#define KMIP_LOCATE_MAX_MSG (16u * 1024u * 1024u)
#define KMIP_LIST_BATCH 32u
#define KMIP_BATCH_REQ_MAX (16u * 1024u)
/* Longest Unique Identifier / Name we send or accept, NUL excluded. */
#define KMIP_UID_MAX 255u
#define KMIP_NAME_MAX 255u
/* Longest Result Message we keep (printable ASCII, truncated). */
#define KMIP_TEXT_MAX 160u

/* --- Requests: each fills @buf (KMIP_REQ_MAX bytes) and sets *len. ------ */

/* Create a Symmetric Key, AES, 256 bits, Encrypt|Decrypt; named if @name. */
int kmip_req_create(uint8_t *buf, size_t cap, size_t *len, const char *name);
int kmip_req_get(uint8_t *buf, size_t cap, size_t *len, const char *uid);
int kmip_req_activate(uint8_t *buf, size_t cap, size_t *len, const char *uid);
/* Locate by Name (Uninterpreted Text String). */
int kmip_req_locate(uint8_t *buf, size_t cap, size_t *len, const char *name);
/* Get Attributes, asking for the State attribute only. */
int kmip_req_get_state(uint8_t *buf, size_t cap, size_t *len, const char *uid);
/* Locate every Symmetric Key (Object Type filter), at most @max_items of them. */
int kmip_req_locate_keys(uint8_t *buf, size_t cap, size_t *len, int32_t max_items);
/*
 * Get Attributes "Name" and "State" of the @n keys @uids (1 to
 * KMIP_LIST_BATCH), one Batch Item each. With n > 1 the header carries Batch
 * Error Continuation Option Continue (a key gone since it was located must
 * not stop the others) and each item a Unique Batch Item ID: its index in
 * @uids as 4 bytes, big-endian. With n == 1 it is a request like the others.
 */
int kmip_req_get_names(uint8_t *buf, size_t cap, size_t *len, const char *const *uids,
		       size_t n);
/* Discover Versions with an empty payload: the server lists all it speaks. */
int kmip_req_discover(uint8_t *buf, size_t cap, size_t *len);

/* --- Responses ----------------------------------------------------------- */

struct kmip_resp {
	int32_t major, minor;          /* Protocol Version of the answer */
	bool has_op;                   /* PyKMIP omits Operation in parse errors */
	uint32_t op;                   /* the operation asked for (and answered, if has_op) */
	uint32_t status;               /* KMIP_STATUS_* */
	bool has_reason;
	uint32_t reason;               /* KMIP_REASON_* when status is not success */
	char text[KMIP_TEXT_MAX + 1];  /* Result Message, printable, may be "" */
	bool has_payload;
	struct ttlv payload;           /* Response Payload (points into the buffer) */
	bool has_batch_id;             /* batched answers: the item's Unique Batch Item ID */
	uint32_t batch_id;             /* ... as kmip_req_get_names set it (an index) */
};

/* The largest answer accepted to operation @op: TTLV_MAX_MSG, or
 * KMIP_LOCATE_MAX_MSG for Locate (identifiers only, never key material). */
size_t kmip_resp_max(uint32_t op);

/*
 * Check the answer @buf/@len to a request for operation @op. Returns 0 with
 * *r filled (the KMIP answer may still be a failure: look at r->status), or
 * -EPROTO with the reason in @why when it is not a well-formed answer to it.
 */
int kmip_resp_parse(const uint8_t *buf, size_t len, uint32_t op, struct kmip_resp *r,
		    char *why, size_t whylen);

/*
 * Check the answer to a batch of @n requests for operation @op, as built by
 * kmip_req_get_names: 1 to @n Batch Items (a server that stops at a failure,
 * or refuses the whole batch, answers fewer), Batch Count equal to their
 * number, each checked as kmip_resp_parse does and stored in items[0..]; the
 * number in *count. With n > 1, an item's Unique Batch Item ID must be one
 * we sent (index below @n), at most once; an item without one (a failure of
 * the whole message) has has_batch_id false. Returns 0 or -EPROTO.
 */
int kmip_resp_parse_batch(const uint8_t *buf, size_t len, uint32_t op, size_t n,
			  struct kmip_resp *items, size_t *count, char *why, size_t whylen);

/* Unique Identifier of a Create, Activate or Locate(first) answer; 0 or -EPROTO
 * (-ENOKEY for a Locate that found nothing). */
int kmip_payload_uid(const struct kmip_resp *r, char uid[KMIP_UID_MAX + 1], char *why,
		     size_t whylen);
/* Number of identifiers in a Locate answer. */
size_t kmip_payload_uid_count(const struct kmip_resp *r);
/*
 * Call @fn with each Unique Identifier of a Locate answer, in order. Returns
 * 0, the first non-zero return of @fn, or -EPROTO (with @why) at the first
 * identifier we do not accept (wrong type, empty, too long, control bytes).
 */
int kmip_payload_uid_each(const struct kmip_resp *r, int (*fn)(void *arg, const char *uid),
			  void *arg, char *why, size_t whylen);

/*
 * The key material of a Get answer for @uid: checks Object Type Symmetric
 * Key, Key Format Type Raw, an unwrapped and uncompressed Key Value
 * structure, AES and 256 bits, and 32 bytes of material. Returns 0 with *key
 * pointing into the response, -ENOKEY when the object is not an AES-256 key,
 * or -EPROTO when the answer is malformed.
 */
int kmip_payload_key(const struct kmip_resp *r, const char *uid, const uint8_t **key,
		     size_t keylen, char *why, size_t whylen);

/* The State attribute of a Get Attributes answer: 0 or -EPROTO. */
int kmip_payload_state(const struct kmip_resp *r, uint32_t *state, char *why, size_t whylen);

/*
 * The first name of a Get Attributes answer (the Name Value of a Name
 * attribute, in answer order) that starts with @prefix ("" matches every
 * name) and that we accept as a label (1 to KMIP_NAME_MAX bytes, no control
 * character; others never match). Returns 0 with it in @name, -ENOENT when
 * no name matches (*nnames, if not NULL, counts the Name attributes), or
 * -EPROTO for a malformed Name attribute.
 */
int kmip_payload_name(const struct kmip_resp *r, const char *prefix,
		      char name[KMIP_NAME_MAX + 1], size_t *nnames, char *why, size_t whylen);

/* The versions of a Discover Versions answer, best first, at most @max. */
size_t kmip_payload_versions(const struct kmip_resp *r, int32_t (*v)[2], size_t max);

/* Names for messages. */
const char *kmip_reason_name(uint32_t reason);
const char *kmip_state_name(uint32_t state);
const char *kmip_op_name(uint32_t op);

#endif
