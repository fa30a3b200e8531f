// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * File header encode/decode (docs/FORMAT.md, "File header"). The parser
 * treats its input as hostile: every length is bounded, every reserved or
 * padding byte is checked, and nothing is trusted before the checksums match.
 * The checksums only detect damage; authenticity comes from the GCM tag of a
 * key slot, whose additional data covers the fixed part and the slot's
 * descriptor, so a header can only be opened with the right KEK and unaltered.
 */
#include "vmc_header.h"
#include "vmc_crypto.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define HDR_ERR(...) snprintf(err, errlen, __VA_ARGS__)

/* A key slot at @off of @buf that is non-empty and has a correct checksum. */
static bool slot_intact(const uint8_t *buf, size_t len, size_t off)
{
	const struct vmc_fmt_slot *s = (const void *)(buf + off);
	uint8_t sum[VMC_SHA256_LEN];

	if (len < off + sizeof(*s) || vmc_fmt_is_zero(s, sizeof(*s)))
		return false;
	vmc_sha256(s, offsetof(struct vmc_fmt_slot, checksum), sum);
	return !memcmp(sum, s->checksum, sizeof(sum));
}

enum vmc_probe vmc_hdr_probe(const void *buf, size_t len)
{
	static const uint8_t prefix[16] = VMC_FMT_MAGIC "\x01\x00";
	const uint8_t *b = buf;
	int diff = 0;

	if (len >= sizeof(prefix)) {
		uint16_t type = (uint16_t)(b[14] | b[15] << 8);
		bool magic = !memcmp(b, VMC_FMT_MAGIC, VMC_FMT_MAGIC_LEN);

		for (size_t i = 0; i < sizeof(prefix); i++)
			diff += b[i] != prefix[i];
		/* Another vmcryptfs object (a VM key record, a key file) is not a
		 * near miss; only an intact slot would make it a file header. */
		if (diff <= 2 && !(magic && (type == VMC_FMT_TYPE_VMSTATE ||
					     type == VMC_FMT_TYPE_NATIVE_KEY)))
			return VMC_PROBE_ENCRYPTED;
	}
	for (size_t i = 0; i < VMC_FMT_NSLOTS; i++)
		if (slot_intact(b, len, offsetof(struct vmc_fmt_file_header, slots) +
					       i * sizeof(struct vmc_fmt_slot)))
			return VMC_PROBE_ENCRYPTED;
	return VMC_PROBE_CLEAR;
}

const char *vmc_class_fmt_name(uint8_t file_class)
{
	switch (file_class) {
	case VMC_FMT_CLASS_DISK:
		return "disk";
	case VMC_FMT_CLASS_HOME:
		return "home";
	case VMC_FMT_CLASS_COREDUMP:
		return "coredump";
	case VMC_FMT_CLASS_OTHER:
		return "other";
	}
	return "unknown";
}

/* A NUL-padded string field of @size bytes holding exactly @len bytes. */
static bool padded_ok(const char *s, size_t size, size_t len)
{
	if (len == 0 || len >= size)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\0' || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return vmc_fmt_is_zero(s + len, size - len);
}

static void slot_parse(const struct vmc_fmt_slot *s, struct vmc_hdr_slot *out)
{
	uint8_t sum[VMC_SHA256_LEN];
	size_t plen = s->provider_len, klen = le16toh(s->kek_id_len);

	memset(out, 0, sizeof(*out));
	if (vmc_fmt_is_zero(s, sizeof(*s))) {
		out->status = VMC_SLOT_EMPTY;
		return;
	}
	out->status = VMC_SLOT_DAMAGED;
	vmc_sha256(s, offsetof(struct vmc_fmt_slot, checksum), sum);
	if (memcmp(sum, s->checksum, sizeof(sum))) {
		snprintf(out->damage, sizeof(out->damage), "slot checksum mismatch");
		return;
	}
	if (s->state != VMC_FMT_SLOT_ACTIVE) {
		snprintf(out->damage, sizeof(out->damage), "unknown slot state %u", s->state);
		return;
	}
	if (s->wrap != VMC_FMT_WRAP_AES256_GCM || s->role != VMC_FMT_ROLE_DEK ||
	    le16toh(s->wrapped_len) != VMC_FMT_DEK_LEN) {
		snprintf(out->damage, sizeof(out->damage),
			 "unsupported slot (wrap %u, role %u, length %u)", s->wrap, s->role,
			 le16toh(s->wrapped_len));
		return;
	}
	if (!padded_ok(s->provider, sizeof(s->provider), plen) ||
	    !padded_ok(s->kek_id, sizeof(s->kek_id), klen)) {
		snprintf(out->damage, sizeof(out->damage), "bad provider or key id field");
		return;
	}
	if (!vmc_fmt_is_zero(s->reserved1, sizeof(s->reserved1)) ||
	    !vmc_fmt_is_zero(s->reserved2, sizeof(s->reserved2))) {
		snprintf(out->damage, sizeof(out->damage), "reserved bytes not zero");
		return;
	}
	memcpy(out->provider, s->provider, plen);
	memcpy(out->kek_id, s->kek_id, klen);
	out->generation = le64toh(s->generation);
	out->status = VMC_SLOT_OK;
}

/* Check an interrupted-truncate record that is not all zeros. */
static const char *trunc_check(const struct vmc_fmt_trunc *t)
{
	uint8_t sum[VMC_SHA256_LEN];
	uint64_t size = le64toh(t->new_size);
	uint16_t off = le16toh(t->off);

	if (memcmp(t->magic, VMC_FMT_TRUNC_MAGIC, sizeof(t->magic)))
		return "reserved header bytes 256..511 are not zero";
	vmc_sha256(t, offsetof(struct vmc_fmt_trunc, checksum), sum);
	if (memcmp(sum, t->checksum, sizeof(sum)))
		return "the record of an interrupted truncate is damaged (checksum mismatch)";
	if (t->len < 1 || t->len > VMC_FMT_TRUNC_MAX || size > (uint64_t)INT64_MAX ||
	    (size & (VMC_FMT_UNIT_SIZE - 1)) != (uint64_t)off + t->len ||
	    !vmc_fmt_is_zero(t->reserved0, sizeof(t->reserved0)) ||
	    !vmc_fmt_is_zero(t->reserved1, sizeof(t->reserved1)) ||
	    !vmc_fmt_is_zero(t->bytes + t->len, VMC_FMT_TRUNC_MAX - t->len))
		return "the record of an interrupted truncate is inconsistent";
	return NULL;
}

int vmc_hdr_trunc_fill(struct vmc_fmt_trunc *t, uint64_t new_size, uint16_t off,
		       const uint8_t *bytes, size_t len)
{
	memset(t, 0, sizeof(*t));
	if (len < 1 || len > VMC_FMT_TRUNC_MAX ||
	    (new_size & (VMC_FMT_UNIT_SIZE - 1)) != (uint64_t)off + len)
		return -EINVAL;
	memcpy(t->magic, VMC_FMT_TRUNC_MAGIC, sizeof(t->magic));
	t->new_size = htole64(new_size);
	t->off = htole16(off);
	t->len = (uint8_t)len;
	memcpy(t->bytes, bytes, len);
	vmc_sha256(t, offsetof(struct vmc_fmt_trunc, checksum), t->checksum);
	return 0;
}

int vmc_hdr_parse(struct vmc_hdr *h, const void *buf, size_t len, char *err, size_t errlen)
{
	const char *why;
	const struct vmc_fmt_file_fixed *f;
	uint8_t sum[VMC_SHA256_LEN];
	int usable = 0;
	uint32_t incompat;

	memset(h, 0, sizeof(*h));
	if (vmc_hdr_probe(buf, len) != VMC_PROBE_ENCRYPTED) {
		HDR_ERR("not a vmcryptfs file header");
		return -EUCLEAN;
	}
	f = buf;
	if (len < sizeof(f->prefix) || memcmp(f->prefix.magic, VMC_FMT_MAGIC, VMC_FMT_MAGIC_LEN) ||
	    le16toh(f->prefix.type) != VMC_FMT_TYPE_FILE) {
		HDR_ERR("header damaged: bad magic or object type in the first 16 bytes");
		return -EUCLEAN;
	}
	if (len < VMC_FMT_HDR_SIZE) {
		HDR_ERR("header truncated: %zu of %u bytes", len, VMC_FMT_HDR_SIZE);
		return -EUCLEAN;
	}
	vmc_sha256(f, offsetof(struct vmc_fmt_file_fixed, checksum), sum);
	if (le16toh(f->prefix.version) > VMC_FMT_VERSION) {
		/* A newer writer: its checksum may be laid out differently. */
		HDR_ERR("header format version %u is newer than this vmcryptfs supports (%u)%s",
			le16toh(f->prefix.version), VMC_FMT_VERSION,
			memcmp(sum, f->checksum, sizeof(sum)) ? ", or the header is damaged" : "");
		return -EPROTONOSUPPORT;
	}
	memcpy(&h->raw, buf, sizeof(h->raw));
	f = &h->raw.fixed;
	if (memcmp(sum, f->checksum, sizeof(sum))) {
		HDR_ERR("header checksum mismatch (damaged header)");
		return -EUCLEAN;
	}
	if (le16toh(f->prefix.version) != VMC_FMT_VERSION) {
		HDR_ERR("unknown header format version %u", le16toh(f->prefix.version));
		return -EUCLEAN;
	}
	incompat = le32toh(f->incompat_flags);
	if (incompat) {
		HDR_ERR("header requires unsupported features 0x%x", incompat);
		return -EPROTONOSUPPORT;
	}
	if (le16toh(f->header_size) != VMC_FMT_HDR_SIZE || f->unit_shift != VMC_FMT_UNIT_SHIFT ||
	    f->nslots != VMC_FMT_NSLOTS) {
		HDR_ERR("unsupported header geometry (size %u, unit shift %u, %u slots)",
			le16toh(f->header_size), f->unit_shift, f->nslots);
		return -EUCLEAN;
	}
	if (f->cipher != VMC_FMT_CIPHER_AES256_XTS) {
		HDR_ERR("unknown cipher %u", f->cipher);
		return -EPROTONOSUPPORT;
	}
	if (f->file_class < VMC_FMT_CLASS_DISK || f->file_class > VMC_FMT_CLASS_OTHER) {
		HDR_ERR("unknown file class %u", f->file_class);
		return -EUCLEAN;
	}
	if (!vmc_fmt_is_zero(f->reserved, sizeof(f->reserved)) ||
	    !vmc_fmt_is_zero(h->raw.reserved2, sizeof(h->raw.reserved2))) {
		HDR_ERR("reserved header bytes are not zero");
		return -EUCLEAN;
	}
	if (!vmc_fmt_is_zero(&h->raw.trunc, sizeof(h->raw.trunc))) {
		why = trunc_check(&h->raw.trunc);
		if (why) {
			HDR_ERR("%s", why);
			return -EUCLEAN;
		}
		h->trunc_pending = true;
		h->trunc_size = le64toh(h->raw.trunc.new_size);
		h->trunc_off = le16toh(h->raw.trunc.off);
		h->trunc_len = h->raw.trunc.len;
	}
	h->version = le16toh(f->prefix.version);
	h->file_class = f->file_class;
	h->created = le64toh(f->created);
	for (int i = 0; i < VMC_FMT_NSLOTS; i++) {
		slot_parse(&h->raw.slots[i], &h->slots[i]);
		if (h->slots[i].status == VMC_SLOT_OK)
			usable++;
	}
	if (!usable) {
		HDR_ERR("no usable key slot (%s)",
			h->slots[0].status == VMC_SLOT_DAMAGED ? h->slots[0].damage : "all empty");
		return -EUCLEAN;
	}
	return 0;
}

static void fixed_checksum(struct vmc_fmt_file_fixed *f)
{
	vmc_sha256(f, offsetof(struct vmc_fmt_file_fixed, checksum), f->checksum);
}

int vmc_hdr_create(struct vmc_hdr *h, uint8_t file_class, const uint8_t vm_uuid[16])
{
	struct vmc_fmt_file_fixed *f = &h->raw.fixed;
	int r;

	memset(h, 0, sizeof(*h));
	memcpy(f->prefix.magic, VMC_FMT_MAGIC, VMC_FMT_MAGIC_LEN);
	f->prefix.type = htole16(VMC_FMT_TYPE_FILE);
	f->prefix.version = htole16(VMC_FMT_VERSION);
	f->header_size = htole16(VMC_FMT_HDR_SIZE);
	f->cipher = VMC_FMT_CIPHER_AES256_XTS;
	f->unit_shift = VMC_FMT_UNIT_SHIFT;
	f->file_class = file_class;
	f->nslots = VMC_FMT_NSLOTS;
	r = vmc_random(f->file_id, sizeof(f->file_id));
	if (r)
		return r;
	memcpy(f->vm_uuid, vm_uuid, 16);
	f->created = htole64((uint64_t)time(NULL));
	fixed_checksum(f);
	h->version = VMC_FMT_VERSION;
	h->file_class = file_class;
	h->created = le64toh(f->created);
	return 0;
}

/* GCM additional data: the fixed part, then the slot's descriptor. */
static void slot_aad(const struct vmc_hdr *h, int slot, uint8_t aad[256 + VMC_FMT_SLOT_AAD_LEN])
{
	memcpy(aad, &h->raw.fixed, 256);
	memcpy(aad + 256, &h->raw.slots[slot], VMC_FMT_SLOT_AAD_LEN);
}

int vmc_hdr_seal(struct vmc_hdr *h, int slot, const char *provider, const char *kek_id,
		 const uint8_t wrap_key[32], const uint8_t *dek, uint64_t generation)
{
	struct vmc_fmt_slot *s;
	uint8_t aad[256 + VMC_FMT_SLOT_AAD_LEN];
	size_t plen = strlen(provider), klen = strlen(kek_id);
	int r;

	if (slot < 0 || slot >= VMC_FMT_NSLOTS || plen == 0 || plen >= VMC_FMT_PROVIDER_MAX ||
	    klen == 0 || klen >= VMC_FMT_KEKID_MAX)
		return -EINVAL;
	s = &h->raw.slots[slot];
	memset(s, 0, sizeof(*s));
	s->state = VMC_FMT_SLOT_ACTIVE;
	s->wrap = VMC_FMT_WRAP_AES256_GCM;
	s->role = VMC_FMT_ROLE_DEK;
	s->provider_len = (uint8_t)plen;
	s->kek_id_len = htole16((uint16_t)klen);
	s->wrapped_len = htole16(VMC_FMT_DEK_LEN);
	s->generation = htole64(generation);
	memcpy(s->provider, provider, plen);
	memcpy(s->kek_id, kek_id, klen);
	r = vmc_random(s->nonce, sizeof(s->nonce));
	if (r)
		goto fail;
	slot_aad(h, slot, aad);
	r = vmc_gcm_seal(wrap_key, s->nonce, aad, sizeof(aad), dek, VMC_FMT_DEK_LEN, s->wrapped,
			 s->tag);
	if (r)
		goto fail;
	vmc_sha256(s, offsetof(struct vmc_fmt_slot, checksum), s->checksum);
	slot_parse(s, &h->slots[slot]);
	return 0;
fail:
	vmc_hdr_clear_slot(h, slot);
	return r;
}

int vmc_hdr_unseal(const struct vmc_hdr *h, int slot, const uint8_t wrap_key[32], uint8_t *dek)
{
	const struct vmc_fmt_slot *s;
	uint8_t aad[256 + VMC_FMT_SLOT_AAD_LEN];
	int r;

	if (slot < 0 || slot >= VMC_FMT_NSLOTS || h->slots[slot].status != VMC_SLOT_OK)
		return -EINVAL;
	s = &h->raw.slots[slot];
	slot_aad(h, slot, aad);
	r = vmc_gcm_open(wrap_key, s->nonce, aad, sizeof(aad), s->wrapped, VMC_FMT_DEK_LEN, dek,
			 s->tag);
	return r == -EBADMSG ? -EKEYREJECTED : r;
}

void vmc_hdr_clear_slot(struct vmc_hdr *h, int slot)
{
	memset(&h->raw.slots[slot], 0, sizeof(h->raw.slots[slot]));
	memset(&h->slots[slot], 0, sizeof(h->slots[slot]));
}

uint64_t vmc_hdr_max_generation(const struct vmc_hdr *h)
{
	uint64_t g = 0;

	for (int i = 0; i < VMC_FMT_NSLOTS; i++)
		if (h->slots[i].status == VMC_SLOT_OK && h->slots[i].generation > g)
			g = h->slots[i].generation;
	return g;
}

/* --- examining a header for tools -------------------------------------------- */

__attribute__((format(printf, 2, 3)))
static void problem(struct vmc_hdr_report *rep, const char *fmt, ...)
{
	va_list ap;

	if (rep->nproblems == VMC_HDR_PROBLEMS_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(rep->problems[rep->nproblems++], sizeof(rep->problems[0]), fmt, ap);
	va_end(ap);
}

/* Whether bytes [@off, @off + @n) of a @len-byte header are present and zero. */
static bool zero_within(const uint8_t *b, size_t len, size_t off, size_t n)
{
	if (off >= len)
		return true; /* absent: truncation is reported on its own */
	return vmc_fmt_is_zero(b + off, off + n <= len ? n : len - off);
}

int vmc_hdr_examine(struct vmc_hdr *h, const void *buf, size_t len, struct vmc_hdr_report *rep)
{
	static const size_t slots_off = offsetof(struct vmc_fmt_file_header, slots);
	const struct vmc_fmt_file_fixed *f = &h->raw.fixed;
	const uint8_t *b = (const uint8_t *)&h->raw;
	size_t n = len < VMC_FMT_HDR_SIZE ? len : VMC_FMT_HDR_SIZE;
	int usable = 0, present = 0;

	memset(rep, 0, sizeof(*rep));
	rep->verdict = vmc_hdr_parse(h, buf, len, rep->verdict_msg, sizeof(rep->verdict_msg));
	if (rep->verdict) {
		/* vmc_hdr_parse cleared @h; decode what is there, as found. */
		memset(h, 0, sizeof(*h));
		memcpy(&h->raw, buf, n);
		if (n >= offsetof(struct vmc_fmt_file_fixed, reserved)) {
			h->version = le16toh(f->prefix.version);
			h->file_class = f->file_class;
			h->created = le64toh(f->created);
		}
		for (int i = 0; i < VMC_FMT_NSLOTS; i++)
			if (n >= slots_off + (size_t)(i + 1) * sizeof(struct vmc_fmt_slot))
				slot_parse(&h->raw.slots[i], &h->slots[i]);
	} else {
		rep->verdict_msg[0] = '\0';
	}
	rep->truncated = len < VMC_FMT_HDR_SIZE;
	if (rep->truncated)
		problem(rep, "truncated: %zu of %u header bytes", len, VMC_FMT_HDR_SIZE);
	if (n >= sizeof(f->prefix)) {
		if (memcmp(f->prefix.magic, VMC_FMT_MAGIC, VMC_FMT_MAGIC_LEN))
			problem(rep, "bad magic");
		if (le16toh(f->prefix.type) != VMC_FMT_TYPE_FILE)
			problem(rep, "object type %u is not a file header (1)",
				le16toh(f->prefix.type));
		if (le16toh(f->prefix.version) != VMC_FMT_VERSION)
			problem(rep, "format version %u (this vmcryptfs reads version %u)",
				le16toh(f->prefix.version), VMC_FMT_VERSION);
	} else {
		problem(rep, "too short to hold the magic");
	}
	if (n >= sizeof(*f)) {
		uint8_t sum[VMC_SHA256_LEN];

		vmc_sha256(f, offsetof(struct vmc_fmt_file_fixed, checksum), sum);
		rep->fixed_intact = !memcmp(sum, f->checksum, sizeof(sum));
		if (!rep->fixed_intact)
			problem(rep, "checksum of the fixed part (bytes 0..223) does not match");
		if (le16toh(f->header_size) != VMC_FMT_HDR_SIZE || f->unit_shift != VMC_FMT_UNIT_SHIFT ||
		    f->nslots != VMC_FMT_NSLOTS)
			problem(rep, "header geometry: size %u, unit shift %u, %u slots "
				"(expected %u, %u, %u)", le16toh(f->header_size), f->unit_shift,
				f->nslots, VMC_FMT_HDR_SIZE, VMC_FMT_UNIT_SHIFT, VMC_FMT_NSLOTS);
		if (le32toh(f->incompat_flags))
			problem(rep, "unknown incompatible features 0x%x", le32toh(f->incompat_flags));
		if (f->cipher != VMC_FMT_CIPHER_AES256_XTS)
			problem(rep, "unknown cipher %u", f->cipher);
		if (f->file_class < VMC_FMT_CLASS_DISK || f->file_class > VMC_FMT_CLASS_OTHER)
			problem(rep, "unknown file class %u", f->file_class);
	}
	if (!zero_within(b, n, offsetof(struct vmc_fmt_file_fixed, reserved), sizeof(f->reserved)) ||
	    !zero_within(b, n, offsetof(struct vmc_fmt_file_header, reserved2),
			 sizeof(h->raw.reserved2)))
		problem(rep, "reserved bytes are not zero");
	if (n >= offsetof(struct vmc_fmt_file_header, slots) &&
	    !vmc_fmt_is_zero(&h->raw.trunc, sizeof(h->raw.trunc))) {
		const char *why = trunc_check(&h->raw.trunc);

		if (why)
			problem(rep, "%s", why);
	}
	for (int i = 0; i < VMC_FMT_NSLOTS; i++) {
		if (n < slots_off + (size_t)(i + 1) * sizeof(struct vmc_fmt_slot))
			break;
		present++;
		if (h->slots[i].status == VMC_SLOT_OK)
			usable++;
		else if (h->slots[i].status == VMC_SLOT_DAMAGED)
			problem(rep, "key slot %d: %s", i, h->slots[i].damage);
	}
	if (present == VMC_FMT_NSLOTS && !usable)
		problem(rep, "no usable key slot");
	/* Whatever the checks above missed, the verdict's own words say. */
	if (rep->verdict && !rep->nproblems)
		problem(rep, "%s", rep->verdict_msg);
	return rep->verdict;
}
