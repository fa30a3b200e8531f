// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of the on-disk formats: the file header (lib/vmc_header.h) and
 * the VM key record (lib/vmc_vmstate.h), with vmc_kek_derive() from
 * lib/vmc_keyring.h for the wrap keys.
 *
 * The layout is checked byte by byte against lib/vmc_format.h with OpenSSL
 * recomputing every checksum, HKDF and GCM tag; every single-bit change of a
 * sealed header is tried (as random damage, and as tampering with the
 * checksums recomputed); and a header built here from the format description
 * alone, without the library, must open with the library. That header is kept
 * as tests/unit/vectors/header-v1.hex and must keep opening.
 *
 * Usage: test_format VECTOR_DIR
 *        test_format VECTOR_DIR --write-vectors   (regenerate the vector files)
 */
#include "vmc_crypto.h"
#include "vmc_dek.h"
#include "vmc_format.h"
#include "vmc_header.h"
#include "vmc_keyring.h"
#include "vmc_ref.h"
#include "vmc_test.h"
#include "vmc_vmstate.h"

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HDR VMC_FMT_HDR_SIZE
#define SLOT_OFF(i) (512u + 512u * (unsigned)(i))
#define KEKID_A "nkp1.000102030405060708090a0b0c0d0e0f.a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
#define KEKID_B "corp-kms/9f8e7d6c-5b4a-4321-8765-0fedcba98765"
#define INFO_WRAP "vmcryptfs/v1/dek-wrap"
#define INFO_CHECK "vmcryptfs/v1/key-check"

static char errbuf[512];

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* The checksums lib/vmc_format.h describes, recomputed with OpenSSL. */
static void fix_fixed_sum(uint8_t *raw)
{
	ref_sha256(raw, 224, raw + 224);
}

static void fix_slot_sum(uint8_t *raw, int slot)
{
	ref_sha256(raw + SLOT_OFF(slot), 480, raw + SLOT_OFF(slot) + 480);
}

static int parse(struct vmc_hdr *h, const uint8_t *raw, size_t len)
{
	errbuf[0] = '\0';
	return vmc_hdr_parse(h, raw, len, errbuf, sizeof(errbuf));
}

static struct vmc_kek *derive(const char *provider, const char *id, const uint8_t kek[32])
{
	struct vmc_kek *k = NULL;

	REQUIRE_(vmc_kek_derive(provider, id, kek, &k) == 0 && k);
	return k;
}

/* --- struct layout -------------------------------------------------------- */

static void test_struct_offsets(void)
{
	struct vmc_fmt_file_header fh;
	struct vmc_fmt_vmstate vs;
	struct vmc_fmt_native_key nk;
	const uint8_t *raw;

	memset(&fh, 0, sizeof(fh));
	fh.fixed.prefix.version = htole16(0x0102);
	fh.fixed.header_size = htole16(0x1000);
	fh.fixed.incompat_flags = htole32(0xa1b2c3d4);
	fh.fixed.created = htole64(0x1122334455667788ull);
	fh.fixed.checksum[0] = 0xcc;
	fh.slots[2].kek_id_len = htole16(0x0203);
	fh.slots[2].generation = htole64(0x0807060504030201ull);
	fh.slots[3].nonce[0] = 0x99;
	fh.slots[3].tag[15] = 0xee;
	fh.slots[3].checksum[31] = 0xdd;
	fh.reserved2[0] = 0x55;
	raw = (const uint8_t *)&fh;
	EQ_(sizeof(fh), 4096);
	EQ_(raw[16], 0x02);
	EQ_(raw[17], 0x01);
	EQ_(raw[18], 0x00);
	EQ_(raw[19], 0x10);
	EQ_(raw[20], 0xd4);
	EQ_(raw[23], 0xa1);
	EQ_(get64(raw + 64), 0x1122334455667788ull);
	EQ_(raw[64], 0x88);
	EQ_(raw[224], 0xcc);
	EQ_(raw[SLOT_OFF(2) + 4], 0x03);
	EQ_(raw[SLOT_OFF(2) + 5], 0x02);
	EQ_(raw[SLOT_OFF(2) + 8], 0x01);
	EQ_(raw[SLOT_OFF(2) + 15], 0x08);
	EQ_(raw[SLOT_OFF(3) + 336], 0x99);
	EQ_(raw[SLOT_OFF(3) + 416 + 15], 0xee);
	EQ_(raw[SLOT_OFF(3) + 511], 0xdd);
	EQ_(raw[2560], 0x55);
	EQ_(VMC_FMT_SLOT_AAD_LEN, 336);

	memset(&vs, 0, sizeof(vs));
	vs.seq = htole64(0x0102030405060708ull);
	vs.state = 0x5a;
	vs.current.kek_id_len = htole16(0x0304);
	vs.next.provider[0] = 'p';
	vs.next.key_check[31] = 0x77;
	vs.checksum[0] = 0x66;
	raw = (const uint8_t *)&vs;
	EQ_(sizeof(vs), 1024);
	EQ_(raw[40], 0x08);
	EQ_(raw[47], 0x01);
	EQ_(raw[56], 0x5a);
	EQ_(raw[64 + 2], 0x04);
	EQ_(raw[64 + 3], 0x03);
	EQ_(raw[448 + 32], 'p');
	EQ_(raw[448 + 352 + 31], 0x77);
	EQ_(raw[992], 0x66);

	memset(&nk, 0, sizeof(nk));
	nk.key_id[0] = 0x11;
	nk.key[0] = 0x22;
	nk.checksum[0] = 0x33;
	raw = (const uint8_t *)&nk;
	EQ_(sizeof(nk), 128);
	EQ_(raw[24], 0x11);
	EQ_(raw[40], 0x22);
	EQ_(raw[96], 0x33);
}

/* --- create, seal, parse, unseal ------------------------------------------ */

static void test_roundtrip(void)
{
	static struct vmc_hdr h, h2;
	uint8_t kek[32], dek[64], out[64], uuid[16], wrap[32], check[32], gcm[64], tag[16];
	uint8_t raw[HDR], aad[256 + 336];
	const uint8_t *s = raw + SLOT_OFF(0);
	size_t klen = strlen(KEKID_A);
	struct vmc_kek *k;
	time_t t0, t1;

	ref_random(kek, sizeof(kek));
	ref_random(dek, sizeof(dek));
	ref_random(uuid, sizeof(uuid));

	/* The two derived keys, by RFC 5869 with OpenSSL. */
	k = derive("native", KEKID_A, kek);
	ref_hkdf_sha256(kek, 32, NULL, 0, INFO_WRAP, strlen(INFO_WRAP), wrap, 32);
	ref_hkdf_sha256(kek, 32, NULL, 0, INFO_CHECK, strlen(INFO_CHECK), check, 32);
	MEMEQ_(k->kek_wrap_key, wrap, 32);
	MEMEQ_(k->kek_check_key, check, 32);
	MEMNE_(wrap, check, 32);
	STREQ_(k->kek_provider, "native");
	STREQ_(k->kek_id, KEKID_A);

	t0 = time(NULL);
	OK_(vmc_hdr_create(&h, VMC_FMT_CLASS_HOME, uuid));
	t1 = time(NULL);
	OK_(vmc_hdr_seal(&h, 0, "native", KEKID_A, k->kek_wrap_key, dek, 0x0102030405060708ull));
	memcpy(raw, &h.raw, HDR);

	/* Fixed part, byte by byte (lib/vmc_format.h). */
	MEMEQ_(raw, VMC_FMT_MAGIC, 14);
	EQ_(raw[14], 1);
	EQ_(raw[15], 0);
	EQ_(raw[16], 1);
	EQ_(raw[17], 0);
	EQ_(raw[18], 0x00);
	EQ_(raw[19], 0x10);
	TRUE_(all_zero(raw + 20, 8));
	EQ_(raw[28], VMC_FMT_CIPHER_AES256_XTS);
	EQ_(raw[29], 12);
	EQ_(raw[30], VMC_FMT_CLASS_HOME);
	EQ_(raw[31], 4);
	TRUE_(!all_zero(raw + 32, 16));
	MEMEQ_(raw + 48, uuid, 16);
	TRUE_(get64(raw + 64) >= (uint64_t)t0 && get64(raw + 64) <= (uint64_t)t1);
	TRUE_(all_zero(raw + 72, 152));
	ref_sha256(raw, 224, check);
	MEMEQ_(raw + 224, check, 32);
	TRUE_(all_zero(raw + 256, 256));

	/* Slot 0. */
	EQ_(s[0], VMC_FMT_SLOT_ACTIVE);
	EQ_(s[1], VMC_FMT_WRAP_AES256_GCM);
	EQ_(s[2], VMC_FMT_ROLE_DEK);
	EQ_(s[3], 6);
	EQ_(s[4] | s[5] << 8, klen);
	EQ_(s[6], 64);
	EQ_(s[7], 0);
	EQ_(s[8], 0x08);
	EQ_(s[15], 0x01);
	MEMEQ_(s + 16, "native", 6);
	TRUE_(all_zero(s + 22, 64 - 6));
	MEMEQ_(s + 80, KEKID_A, klen);
	TRUE_(all_zero(s + 80 + klen, 256 - klen));
	TRUE_(!all_zero(s + 336, 12));
	TRUE_(all_zero(s + 348, 4));
	TRUE_(all_zero(s + 432, 48));
	ref_sha256(s, 480, check);
	MEMEQ_(s + 480, check, 32);
	/* The wrap is AES-256-GCM, AAD = fixed part | slot bytes 0..335. */
	memcpy(aad, raw, 256);
	memcpy(aad + 256, s, 336);
	ref_gcm_seal(wrap, s + 336, aad, sizeof(aad), dek, 64, gcm, tag);
	MEMEQ_(s + 352, gcm, 64);
	MEMEQ_(s + 416, tag, 16);
	TRUE_(all_zero(raw + SLOT_OFF(1), HDR - SLOT_OFF(1)));

	/* Parse and open. */
	EQ_(vmc_hdr_probe(raw, HDR), VMC_PROBE_ENCRYPTED);
	EQ_(vmc_hdr_probe(raw, 18), VMC_PROBE_ENCRYPTED);
	EQ_(vmc_hdr_probe(raw, 16), VMC_PROBE_ENCRYPTED);
	EQ_(vmc_hdr_probe(raw, 15), VMC_PROBE_CLEAR);
	OK_(parse(&h2, raw, HDR));
	EQ_(h2.version, 1);
	EQ_(h2.file_class, VMC_FMT_CLASS_HOME);
	EQ_(h2.created, get64(raw + 64));
	EQ_(h2.slots[0].status, VMC_SLOT_OK);
	STREQ_(h2.slots[0].provider, "native");
	STREQ_(h2.slots[0].kek_id, KEKID_A);
	EQ_(h2.slots[0].generation, 0x0102030405060708ull);
	for (int i = 1; i < 4; i++)
		EQ_(h2.slots[i].status, VMC_SLOT_EMPTY);
	EQ_(vmc_hdr_max_generation(&h2), 0x0102030405060708ull);
	memset(out, 0, sizeof(out));
	OK_(vmc_hdr_unseal(&h2, 0, k->kek_wrap_key, out));
	MEMEQ_(out, dek, 64);
	FAIL_(vmc_hdr_unseal(&h2, 1, k->kek_wrap_key, out), EINVAL);
	FAIL_(vmc_hdr_unseal(&h2, -1, k->kek_wrap_key, out), EINVAL);
	FAIL_(vmc_hdr_unseal(&h2, 4, k->kek_wrap_key, out), EINVAL);

	/* Fresh file id and nonce every time. */
	OK_(vmc_hdr_create(&h2, VMC_FMT_CLASS_HOME, uuid));
	MEMNE_(h2.raw.fixed.file_id, raw + 32, 16);
	OK_(vmc_hdr_seal(&h, 0, "native", KEKID_A, k->kek_wrap_key, dek, 1));
	MEMNE_(h.raw.slots[0].nonce, s + 336, 12);

	vmc_kek_put(k);
}

static void test_seal_limits(void)
{
	static struct vmc_hdr h, h2;
	char prov[VMC_FMT_PROVIDER_MAX + 1], id[VMC_FMT_KEKID_MAX + 1];
	uint8_t kek[32], dek[64], out[64], uuid[16] = { 1 };
	struct vmc_kek *k;

	ref_random(kek, sizeof(kek));
	ref_random(dek, sizeof(dek));
	k = derive("native", "x", kek);
	OK_(vmc_hdr_create(&h, VMC_FMT_CLASS_DISK, uuid));
	FAIL_(vmc_hdr_seal(&h, 4, "native", "x", k->kek_wrap_key, dek, 1), EINVAL);
	FAIL_(vmc_hdr_seal(&h, -1, "native", "x", k->kek_wrap_key, dek, 1), EINVAL);
	FAIL_(vmc_hdr_seal(&h, 0, "", "x", k->kek_wrap_key, dek, 1), EINVAL);
	FAIL_(vmc_hdr_seal(&h, 0, "native", "", k->kek_wrap_key, dek, 1), EINVAL);
	memset(prov, 'p', sizeof(prov));
	prov[64] = '\0';
	memset(id, 'i', sizeof(id));
	id[256] = '\0';
	FAIL_(vmc_hdr_seal(&h, 0, prov, "x", k->kek_wrap_key, dek, 1), EINVAL);
	FAIL_(vmc_hdr_seal(&h, 0, "native", id, k->kek_wrap_key, dek, 1), EINVAL);
	/* The longest names fit: 63 and 255 bytes. */
	prov[63] = '\0';
	id[255] = '\0';
	OK_(vmc_hdr_seal(&h, 3, prov, id, k->kek_wrap_key, dek, 7));
	OK_(parse(&h2, (const uint8_t *)&h.raw, HDR));
	EQ_(h2.slots[3].status, VMC_SLOT_OK);
	STREQ_(h2.slots[3].provider, prov);
	STREQ_(h2.slots[3].kek_id, id);
	OK_(vmc_hdr_unseal(&h2, 3, k->kek_wrap_key, out));
	MEMEQ_(out, dek, 64);
	vmc_kek_put(k);
	FAIL_(vmc_kek_derive("", "x", kek, &k), EINVAL);
	FAIL_(vmc_kek_derive("native", "", kek, &k), EINVAL);
	k = NULL;
	OK_(vmc_kek_derive(prov, id, kek, &k)); /* 63 and 255 bytes */
	vmc_kek_put(k);
	prov[63] = 'p';
	FAIL_(vmc_kek_derive(prov, "x", kek, &k), EINVAL);
	id[255] = 'i';
	FAIL_(vmc_kek_derive("native", id, kek, &k), EINVAL);
}

/* A header with slot 0 under KEK A (generation 1) and slot 1 under KEK B (2). */
struct two_slots {
	uint8_t raw[HDR];
	uint8_t dek[64];
	struct vmc_kek *a, *b;
};

static void two_slots_make(struct two_slots *t, uint8_t file_class)
{
	static struct vmc_hdr h;
	uint8_t kek_a[32], kek_b[32], uuid[16];

	ref_random(kek_a, sizeof(kek_a));
	ref_random(kek_b, sizeof(kek_b));
	ref_random(t->dek, sizeof(t->dek));
	ref_random(uuid, sizeof(uuid));
	t->a = derive("native", KEKID_A, kek_a);
	t->b = derive("corp-kms", KEKID_B, kek_b);
	REQUIRE_(vmc_hdr_create(&h, file_class, uuid) == 0);
	REQUIRE_(vmc_hdr_seal(&h, 0, "native", KEKID_A, t->a->kek_wrap_key, t->dek, 1) == 0);
	REQUIRE_(vmc_hdr_seal(&h, 1, "corp-kms", KEKID_B, t->b->kek_wrap_key, t->dek, 2) == 0);
	memcpy(t->raw, &h.raw, HDR);
}

static void two_slots_free(struct two_slots *t)
{
	vmc_kek_put(t->a);
	vmc_kek_put(t->b);
}

static void test_two_slots(void)
{
	static struct two_slots t;
	static struct vmc_hdr h;
	uint8_t raw[HDR], out[64];

	two_slots_make(&t, VMC_FMT_CLASS_DISK);
	OK_(parse(&h, t.raw, HDR));
	EQ_(h.slots[0].status, VMC_SLOT_OK);
	EQ_(h.slots[1].status, VMC_SLOT_OK);
	STREQ_(h.slots[1].provider, "corp-kms");
	STREQ_(h.slots[1].kek_id, KEKID_B);
	EQ_(h.slots[0].generation, 1);
	EQ_(h.slots[1].generation, 2);
	EQ_(vmc_hdr_max_generation(&h), 2);
	OK_(vmc_hdr_unseal(&h, 0, t.a->kek_wrap_key, out));
	MEMEQ_(out, t.dek, 64);
	memset(out, 0, sizeof(out));
	OK_(vmc_hdr_unseal(&h, 1, t.b->kek_wrap_key, out));
	MEMEQ_(out, t.dek, 64);
	FAIL_(vmc_hdr_unseal(&h, 0, t.b->kek_wrap_key, out), EKEYREJECTED);
	FAIL_(vmc_hdr_unseal(&h, 1, t.a->kek_wrap_key, out), EKEYREJECTED);

	/* Slot 0 damaged: slot 1 still opens the file. */
	memcpy(raw, t.raw, HDR);
	raw[SLOT_OFF(0) + 100] ^= 0xff;
	OK_(parse(&h, raw, HDR));
	EQ_(h.slots[0].status, VMC_SLOT_DAMAGED);
	TRUE_(h.slots[0].damage[0] != '\0');
	EQ_(h.slots[1].status, VMC_SLOT_OK);
	EQ_(vmc_hdr_max_generation(&h), 2);
	FAIL_(vmc_hdr_unseal(&h, 0, t.a->kek_wrap_key, out), EINVAL);
	OK_(vmc_hdr_unseal(&h, 1, t.b->kek_wrap_key, out));
	MEMEQ_(out, t.dek, 64);

	/* Slot 1 damaged: slot 0 opens, and the newest usable generation is 1. */
	memcpy(raw, t.raw, HDR);
	raw[SLOT_OFF(1) + 500] ^= 0x01;
	OK_(parse(&h, raw, HDR));
	EQ_(h.slots[1].status, VMC_SLOT_DAMAGED);
	EQ_(vmc_hdr_max_generation(&h), 1);
	OK_(vmc_hdr_unseal(&h, 0, t.a->kek_wrap_key, out));
	MEMEQ_(out, t.dek, 64);

	/* Both damaged, or both cleared: no usable key slot. */
	raw[SLOT_OFF(0) + 7] ^= 0x10;
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	CONTAINS_(errbuf, "no usable key slot");
	OK_(parse(&h, t.raw, HDR));
	vmc_hdr_clear_slot(&h, 0);
	vmc_hdr_clear_slot(&h, 1);
	EQ_(h.slots[0].status, VMC_SLOT_EMPTY);
	TRUE_(all_zero((const uint8_t *)&h.raw.slots[0], 1024));
	memcpy(raw, &h.raw, HDR);
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	CONTAINS_(errbuf, "no usable key slot");

	/* Clearing one slot of a parsed header keeps the other one usable. */
	OK_(parse(&h, t.raw, HDR));
	vmc_hdr_clear_slot(&h, 0);
	memcpy(raw, &h.raw, HDR);
	OK_(parse(&h, raw, HDR));
	EQ_(h.slots[0].status, VMC_SLOT_EMPTY);
	OK_(vmc_hdr_unseal(&h, 1, t.b->kek_wrap_key, out));
	MEMEQ_(out, t.dek, 64);
	two_slots_free(&t);
}

static void test_wrong_kek(void)
{
	static struct two_slots t;
	static struct vmc_hdr h;
	uint8_t kek_c[32], out[64];
	struct vmc_kek *c;

	two_slots_make(&t, VMC_FMT_CLASS_HOME);
	ref_random(kek_c, sizeof(kek_c));
	c = derive("native", KEKID_A, kek_c); /* right name, wrong key */
	OK_(parse(&h, t.raw, HDR));
	memset(out, 0xa5, sizeof(out));
	FAIL_(vmc_hdr_unseal(&h, 0, c->kek_wrap_key, out), EKEYREJECTED);
	TRUE_(all_zero(out, sizeof(out))); /* nothing of a wrong unwrap is left */
	/* The check key is not the wrap key. */
	FAIL_(vmc_hdr_unseal(&h, 0, t.a->kek_check_key, out), EKEYREJECTED);
	vmc_kek_put(c);
	two_slots_free(&t);
}

/*
 * Every single-bit change of a sealed header. "damage" flips the bit only;
 * "tamper" also recomputes the checksum covering it, as an attacker could.
 * Neither may ever yield a DEK from an altered slot or fixed part, nor a
 * different DEK; an unaltered slot may keep opening the file.
 */
static void test_bit_flips(void)
{
	static struct two_slots t;
	static struct vmc_hdr h;
	static uint8_t raw[HDR];

	two_slots_make(&t, VMC_FMT_CLASS_DISK);
	for (int tamper = 0; tamper < 2; tamper++) {
		int parse_fail = 0, all_rejected = 0, isolated = 0, violations = 0, flips = 0;
		int fixed_fail = 0, fixed_flips = 0, reserved_fail = 0, reserved_flips = 0;
		int tag_rejected = 0;

		for (unsigned int off = 0; off < HDR; off++) {
			int altered_slot = off >= 512 && off < 2560 ? (int)((off - 512) / 512) : -1;
			int opened = 0, usable = 0;

			memcpy(raw, t.raw, HDR);
			raw[off] ^= (uint8_t)(1u << (off % 8));
			if (tamper && off < 224)
				fix_fixed_sum(raw);
			else if (tamper && altered_slot >= 0 && (off - 512) % 512 < 480)
				fix_slot_sum(raw, altered_slot);
			flips++;
			if (off < 256)
				fixed_flips++;
			if ((off >= 256 && off < 512) || off >= 2560)
				reserved_flips++;
			if (parse(&h, raw, HDR)) {
				parse_fail++;
				fixed_fail += off < 256;
				reserved_fail += (off >= 256 && off < 512) || off >= 2560;
				continue;
			}
			for (int i = 0; i < VMC_FMT_NSLOTS; i++) {
				struct vmc_kek *keys[2] = { t.a, t.b };
				bool altered = off < 256 || i == altered_slot;

				if (h.slots[i].status != VMC_SLOT_OK)
					continue;
				usable++;
				for (int j = 0; j < 2; j++) {
					uint8_t out[64];
					int r = vmc_hdr_unseal(&h, i, keys[j]->kek_wrap_key, out);

					if (r == 0 && (altered || memcmp(out, t.dek, 64))) {
						if (!violations++)
							fprintf(stderr, "%s at offset %u: slot %d "
								"opened\n", tamper ? "tamper"
								: "damage", off, i);
					} else if (r == 0) {
						opened++;
					} else if (r != -EKEYREJECTED) {
						violations++;
					} else if (altered && j == (i & 1)) {
						tag_rejected++;
					}
				}
			}
			if (opened)
				isolated++;
			else if (usable)
				all_rejected++;
		}
		fprintf(stderr, "%s: %d flips: parse failed %d, parsed but every usable slot "
			"rejected %d, only an unaltered slot opened %d (altered slots that "
			"parsed and failed the GCM tag: %d), violations %d\n",
			tamper ? "tamper (checksums recomputed)" : "damage", flips, parse_fail,
			all_rejected, isolated, tag_rejected, violations);
		EQ_(violations, 0);
		EQ_(parse_fail + all_rejected + isolated, flips);
		/* The reserved areas are never accepted with a changed bit. */
		EQ_(reserved_fail, reserved_flips);
		/* Plain damage of the fixed part always fails its checksum. */
		if (!tamper)
			EQ_(fixed_fail, fixed_flips);
	}
	two_slots_free(&t);
}

static void test_parse_errors(void)
{
	static const size_t short_lens[] = { 0, 1, 17, 18, 100, 4095 };
	static struct two_slots t;
	static struct vmc_hdr h;
	static uint8_t raw[HDR];

	two_slots_make(&t, VMC_FMT_CLASS_OTHER);
	OK_(parse(&h, t.raw, HDR));
	EQ_(h.file_class, VMC_FMT_CLASS_OTHER);

	for (size_t i = 0; i < sizeof(short_lens) / sizeof(short_lens[0]); i++) {
		FAIL_(parse(&h, t.raw, short_lens[i]), EUCLEAN);
		if (short_lens[i] >= 18)
			CONTAINS_(errbuf, "truncated");
	}
	memset(raw, 0, HDR);
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	CONTAINS_(errbuf, "not a vmcryptfs file header");
	EQ_(vmc_hdr_probe(raw, HDR), VMC_PROBE_CLEAR);
	/* Damage to the first 16 bytes never turns a header into "cleartext":
	 * a near-miss magic or an intact key slot still says "encrypted", and
	 * parsing then reports the damage. */
	memcpy(raw, t.raw, HDR);
	raw[1] = 'v';
	EQ_(vmc_hdr_probe(raw, HDR), VMC_PROBE_ENCRYPTED);
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	CONTAINS_(errbuf, "damaged");
	memcpy(raw, t.raw, HDR);
	memset(raw, 0x55, 16); /* the whole prefix destroyed: slot 0 is intact */
	EQ_(vmc_hdr_probe(raw, HDR), VMC_PROBE_ENCRYPTED);
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	CONTAINS_(errbuf, "damaged");
	/* A damaged type in a file header: the intact slot still tells. */
	memcpy(raw, t.raw, HDR);
	put16(raw + 14, VMC_FMT_TYPE_VMSTATE);
	fix_fixed_sum(raw);
	EQ_(vmc_hdr_probe(raw, HDR), VMC_PROBE_ENCRYPTED);
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	/* A genuine VM key record (another object type) is not a file header. */
	{
		struct vmc_vmstate vs;
		struct vmc_fmt_vmstate enc;

		memset(&vs, 0, sizeof(vs));
		vs.current.set = true;
		strcpy(vs.current.provider, "native");
		strcpy(vs.current.kek_id, "k");
		vmc_vmstate_encode(&vs, &enc);
		EQ_(vmc_hdr_probe(&enc, sizeof(enc)), VMC_PROBE_CLEAR);
	}

	/* A newer version is "not supported", with or without a valid checksum. */
	memcpy(raw, t.raw, HDR);
	put16(raw + 16, 2);
	FAIL_(parse(&h, raw, HDR), EPROTONOSUPPORT);
	fix_fixed_sum(raw);
	FAIL_(parse(&h, raw, HDR), EPROTONOSUPPORT);
	CONTAINS_(errbuf, "version 2");
	memcpy(raw, t.raw, HDR);
	put16(raw + 16, 0);
	fix_fixed_sum(raw);
	FAIL_(parse(&h, raw, HDR), EUCLEAN);

	/* Unknown required feature; unknown optional feature. */
	memcpy(raw, t.raw, HDR);
	raw[20] = 0x01;
	fix_fixed_sum(raw);
	FAIL_(parse(&h, raw, HDR), EPROTONOSUPPORT);
	memcpy(raw, t.raw, HDR);
	raw[23] = 0x80;
	fix_fixed_sum(raw);
	FAIL_(parse(&h, raw, HDR), EPROTONOSUPPORT);
	memcpy(raw, t.raw, HDR);
	raw[24] = 0x01;
	fix_fixed_sum(raw);
	OK_(parse(&h, raw, HDR));

	/* Unknown cipher. */
	memcpy(raw, t.raw, HDR);
	raw[28] = 2;
	fix_fixed_sum(raw);
	FAIL_(parse(&h, raw, HDR), EPROTONOSUPPORT);
	CONTAINS_(errbuf, "cipher");
	raw[28] = 0;
	fix_fixed_sum(raw);
	FAIL_(parse(&h, raw, HDR), EPROTONOSUPPORT);

	/* Geometry and class. */
	memcpy(raw, t.raw, HDR);
	put16(raw + 18, 8192);
	fix_fixed_sum(raw);
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	memcpy(raw, t.raw, HDR);
	raw[29] = 13;
	fix_fixed_sum(raw);
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	memcpy(raw, t.raw, HDR);
	raw[31] = 8;
	fix_fixed_sum(raw);
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	for (size_t i = 0; i < 9; i++) {
		static const int classes[] = { 0, 1, 2, 3, 4, 5, 6, 128, 255 };
		int c = classes[i];

		memcpy(raw, t.raw, HDR);
		raw[30] = (uint8_t)c;
		fix_fixed_sum(raw);
		if (c >= VMC_FMT_CLASS_DISK && c <= VMC_FMT_CLASS_OTHER)
			OK_(parse(&h, raw, HDR));
		else
			FAIL_(parse(&h, raw, HDR), EUCLEAN);
	}

	/* Reserved bytes: in the checksummed part, after it, at the very end. */
	memcpy(raw, t.raw, HDR);
	raw[72] = 1;
	fix_fixed_sum(raw);
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	CONTAINS_(errbuf, "reserved");
	memcpy(raw, t.raw, HDR);
	raw[223] = 0x40;
	fix_fixed_sum(raw);
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	memcpy(raw, t.raw, HDR);
	raw[300] = 1;
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	memcpy(raw, t.raw, HDR);
	raw[HDR - 1] = 1;
	FAIL_(parse(&h, raw, HDR), EUCLEAN);

	/* Checksum. */
	memcpy(raw, t.raw, HDR);
	raw[230] ^= 4;
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	CONTAINS_(errbuf, "checksum");

	/* A slot with a bad descriptor but a valid checksum is damaged, not used. */
	{
		static const struct {
			unsigned int off;
			uint8_t val;
		} bad[] = {
			{ 0, 2 },          /* unknown state */
			{ 1, 2 },          /* unknown wrap */
			{ 2, 2 },          /* unknown role */
			{ 3, 0 },          /* provider_len 0 */
			{ 3, 5 },          /* provider_len short of the name */
			{ 3, 64 },         /* provider_len out of range */
			{ 4, 0 },          /* kek_id_len 0 (low byte) */
			{ 6, 32 },         /* wrapped_len */
			{ 16, 0x01 },      /* control character in the provider */
			{ 16 + 63, 'x' },  /* no NUL padding */
			{ 80 + 255, 'x' }, /* kek id: no NUL padding */
			{ 349, 1 },        /* reserved1 */
			{ 470, 1 },        /* reserved2 */
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			memcpy(raw, t.raw, HDR);
			raw[SLOT_OFF(0) + bad[i].off] = bad[i].val;
			fix_slot_sum(raw, 0);
			OK_(parse(&h, raw, HDR));
			EQ_(h.slots[0].status, VMC_SLOT_DAMAGED);
			EQ_(h.slots[1].status, VMC_SLOT_OK);
		}
	}
	two_slots_free(&t);
}

/* --- the record of an interrupted truncate (header bytes 256..511) -------- */

static void test_trunc_record(void)
{
	static const size_t toff = offsetof(struct vmc_fmt_file_header, trunc);
	static struct two_slots t;
	static struct vmc_hdr h;
	static uint8_t raw[HDR];
	struct vmc_fmt_trunc rec;
	uint8_t bytes[VMC_FMT_TRUNC_MAX];

	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(0xa0 + i);
	two_slots_make(&t, VMC_FMT_CLASS_DISK);
	OK_(parse(&h, t.raw, HDR));
	EQ_(h.trunc_pending, false);

	/* 3 units and 1000 bytes: 17 bytes at 983 of unit 3. */
	OK_(vmc_hdr_trunc_fill(&rec, 3 * 4096 + 1000, 983, bytes, 17));
	EQ_(memcmp(rec.magic, "VMCTRNC1", 8), 0);
	memcpy(raw, t.raw, HDR);
	memcpy(raw + toff, &rec, sizeof(rec));
	OK_(parse(&h, raw, HDR));
	EQ_(h.trunc_pending, true);
	EQ_(h.trunc_size, 3 * 4096 + 1000);
	EQ_(h.trunc_off, 983);
	EQ_(h.trunc_len, 17);
	EQ_(memcmp(h.raw.trunc.bytes, bytes, 17), 0);
	EQ_(h.slots[0].status, VMC_SLOT_OK);

	/* Fields that do not fit. */
	FAIL_(vmc_hdr_trunc_fill(&rec, 3 * 4096 + 1000, 982, bytes, 17), EINVAL);
	FAIL_(vmc_hdr_trunc_fill(&rec, 3 * 4096 + 40, 0, bytes, 40), EINVAL);
	FAIL_(vmc_hdr_trunc_fill(&rec, 3 * 4096, 0, bytes, 0), EINVAL);

	/* Every byte of the record is covered: a flip is damage, never ignored. */
	for (size_t i = 0; i < sizeof(rec); i++) {
		memcpy(raw, t.raw, HDR);
		OK_(vmc_hdr_trunc_fill(&rec, 3 * 4096 + 1000, 983, bytes, 17));
		memcpy(raw + toff, &rec, sizeof(rec));
		raw[toff + i] ^= 0x01;
		FAIL_(parse(&h, raw, HDR), EUCLEAN);
	}
	/* A checksum that matches inconsistent fields: still refused. */
	OK_(vmc_hdr_trunc_fill(&rec, 3 * 4096 + 1000, 983, bytes, 17));
	rec.len = 16;
	vmc_sha256(&rec, offsetof(struct vmc_fmt_trunc, checksum), rec.checksum);
	memcpy(raw, t.raw, HDR);
	memcpy(raw + toff, &rec, sizeof(rec));
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	CONTAINS_(errbuf, "inconsistent");
	/* Non-zero bytes without the magic: reserved bytes, as before. */
	memcpy(raw, t.raw, HDR);
	raw[toff + 100] = 1;
	FAIL_(parse(&h, raw, HDR), EUCLEAN);
	CONTAINS_(errbuf, "not zero");
	two_slots_free(&t);
}

/* --- the known-answer header, built from the format description alone ------ */

static const char kat_kek[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char kat_dek[] = "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
			      "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f";
static const char kat_file_id[] = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
static const char kat_vm_uuid[] = "123456789abc4def8011223344556677";
static const char kat_nonce[] = "c0c1c2c3c4c5c6c7c8c9cacb";
#define KAT_CREATED 1700000000ull /* 2023-11-14T22:13:20Z */
#define KAT_PROVIDER "native"
#define KAT_KEKID KEKID_A
/*
 * SHA-256 of the two data-unit vectors' ciphertexts, computed with OpenSSL
 * when the vectors were made (see vectors/README); re-checked every run.
 */
static const char kat_unit0_sha[] =
	"e33c796a0c7b5abc6d3ccefc3b673a7425b8a10e84831542583c8ee781861cbb";
static const char kat_unit1_sha[] =
	"0bb0501298c85fc7124c62224d0ae19a47c4e05828468d62fd4d34ea6a6fc92a";

static void kat_build(uint8_t raw[HDR])
{
	uint8_t kek[32], dek[64], wrap[32], aad[256 + 336];
	uint8_t *s = raw + 512;

	vmc_test_unhex(kat_kek, kek, sizeof(kek));
	vmc_test_unhex(kat_dek, dek, sizeof(dek));
	memset(raw, 0, HDR);
	memcpy(raw, "\x89VMCRYPTFS\r\n\x1a\n", 14);
	put16(raw + 14, 1);  /* type: file */
	put16(raw + 16, 1);  /* version */
	put16(raw + 18, 4096);
	raw[28] = 1;         /* AES-256-XTS */
	raw[29] = 12;        /* 4096-byte units */
	raw[30] = 1;         /* class: disk */
	raw[31] = 4;         /* slots */
	vmc_test_unhex(kat_file_id, raw + 32, 16);
	vmc_test_unhex(kat_vm_uuid, raw + 48, 16);
	put64(raw + 64, KAT_CREATED);
	ref_sha256(raw, 224, raw + 224);

	s[0] = 1;            /* active */
	s[1] = 1;            /* AES-256-GCM */
	s[2] = 1;            /* DEK */
	s[3] = (uint8_t)strlen(KAT_PROVIDER);
	put16(s + 4, (uint16_t)strlen(KAT_KEKID));
	put16(s + 6, 64);
	put64(s + 8, 1);     /* generation */
	memcpy(s + 16, KAT_PROVIDER, strlen(KAT_PROVIDER));
	memcpy(s + 80, KAT_KEKID, strlen(KAT_KEKID));
	vmc_test_unhex(kat_nonce, s + 336, 12);
	ref_hkdf_sha256(kek, 32, NULL, 0, INFO_WRAP, strlen(INFO_WRAP), wrap, 32);
	memcpy(aad, raw, 256);
	memcpy(aad + 256, s, 336);
	ref_gcm_seal(wrap, s + 336, aad, sizeof(aad), dek, 64, s + 352, s + 416);
	ref_sha256(s, 480, s + 480);
}

/* Plaintext of the data-unit vectors: unit 0 = 00..ff repeated, unit 1 = 100 x 'A'. */
static void kat_units(uint8_t pt[4196], uint8_t ct[4196])
{
	uint8_t dek[64];

	vmc_test_unhex(kat_dek, dek, sizeof(dek));
	for (size_t i = 0; i < 4096; i++)
		pt[i] = (uint8_t)i;
	memset(pt + 4096, 0x41, 100);
	ref_unit(true, dek, 0, pt, ct, 4096);
	ref_unit(true, dek, 1, pt + 4096, ct + 4096, 100);
}

static char *path_join(const char *dir, const char *name)
{
	char *p = NULL;

	REQUIRE_(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static void write_vectors(const char *dir)
{
	static uint8_t raw[HDR], pt[4196], ct[4196];
	char *hex_path = path_join(dir, "header-v1.hex"), *readme = path_join(dir, "README");
	char line[65], sha0[65], sha1[65];
	uint8_t sum[32];
	FILE *f;

	kat_build(raw);
	kat_units(pt, ct);
	f = fopen(hex_path, "w");
	REQUIRE_(f);
	for (size_t i = 0; i < HDR; i += 32) {
		vmc_test_hex(raw + i, 32, line);
		fprintf(f, "%s\n", line);
	}
	REQUIRE_(fclose(f) == 0);
	ref_sha256(ct, 4096, sum);
	vmc_test_hex(sum, 32, sha0);
	ref_sha256(ct + 4096, 100, sum);
	vmc_test_hex(sum, 32, sha1);
	f = fopen(readme, "w");
	REQUIRE_(f);
	fprintf(f,
		"Test vectors for the vmcryptfs on-disk format, version 1\n"
		"=========================================================\n"
		"\n"
		"Generated by tests/unit/test_format.c (--write-vectors) from the layout\n"
		"in lib/vmc_format.h with OpenSSL only (SHA-256, HKDF-SHA256, AES-256-GCM,\n"
		"AES-256-XTS); the vmcryptfs library is not used to make them. Every run of\n"
		"unit_format checks that the library opens header-v1.hex and encrypts the\n"
		"data units below to the same ciphertext. Do not regenerate them to make a\n"
		"test pass: a change here is a change of the on-disk format.\n"
		"\n"
		"header-v1.hex: one encrypted file's 4096-byte header, 64 hex digits (32\n"
		"bytes) per line, with one active key slot (slot 0).\n"
		"\n"
		"  KEK (32 bytes)      %s\n"
		"  DEK (64 bytes)      %.64s\n"
		"                      %s\n"
		"  provider            %s\n"
		"  KEK id              %s\n"
		"  slot 0 generation   1\n"
		"  slot 0 GCM nonce    %s\n"
		"  file id             %s\n"
		"  VM uuid             %s\n"
		"  created             %llu (Unix seconds)\n"
		"  file class          1 (disk)\n"
		"\n"
		"  wrap key = HKDF-SHA256(IKM = KEK, no salt, info = \"%s\", L = 32)\n"
		"  slot 0 wrapped DEK and tag = AES-256-GCM(wrap key, nonce, plaintext = DEK,\n"
		"      AAD = header bytes 0..255 followed by slot bytes 0..335)\n"
		"  checksums = SHA-256 of header bytes 0..223 (at 224) and of slot bytes\n"
		"      0..479 (at slot offset 480); the slot starts at header offset 512.\n"
		"\n"
		"Data units under that DEK (AES-256-XTS, tweak = unit index as a 128-bit\n"
		"little-endian number; unit i is stored at file offset 4096 + 4096 i):\n"
		"\n"
		"  unit 0: plaintext = bytes 00 01 02 .. ff repeated to 4096 bytes\n"
		"          SHA-256(ciphertext) = %s\n"
		"  unit 1: plaintext = 100 bytes of 0x41 (a final partial unit:\n"
		"          ciphertext stealing)\n"
		"          SHA-256(ciphertext) = %s\n",
		kat_kek, kat_dek, kat_dek + 64, KAT_PROVIDER, KAT_KEKID, kat_nonce, kat_file_id,
		kat_vm_uuid, KAT_CREATED, INFO_WRAP, sha0, sha1);
	REQUIRE_(fclose(f) == 0);
	printf("wrote %s and %s\nunit 0 ciphertext SHA-256 %s\nunit 1 ciphertext SHA-256 %s\n",
	       hex_path, readme, sha0, sha1);
	free(hex_path);
	free(readme);
}

/* Read the committed hex vector; returns its byte count. */
static size_t read_hex_file(const char *path, uint8_t *out, size_t max)
{
	FILE *f = fopen(path, "r");
	char *text;
	long n;
	size_t len;

	if (!f) {
		VMC_T_FAIL("cannot open %s: %s", path, strerror(errno));
		return 0;
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

static void test_known_answer(const char *dir)
{
	static uint8_t raw[HDR], file[HDR], pt[4196], ct[4196], buf[4196];
	static struct vmc_hdr h;
	uint8_t kek[32], dek[64], out[64], sum[32], want[32];
	char *hex_path = path_join(dir, "header-v1.hex");
	struct vmc_kek *k;
	struct vmc_dek *d = NULL;

	kat_build(raw);
	vmc_test_unhex(kat_kek, kek, sizeof(kek));
	vmc_test_unhex(kat_dek, dek, sizeof(dek));

	/* The library opens a header it did not write. */
	OK_(parse(&h, raw, HDR));
	EQ_(h.version, 1);
	EQ_(h.file_class, VMC_FMT_CLASS_DISK);
	EQ_(h.created, KAT_CREATED);
	EQ_(h.slots[0].status, VMC_SLOT_OK);
	STREQ_(h.slots[0].provider, KAT_PROVIDER);
	STREQ_(h.slots[0].kek_id, KAT_KEKID);
	EQ_(h.slots[0].generation, 1);
	k = derive(KAT_PROVIDER, KAT_KEKID, kek);
	memset(out, 0, sizeof(out));
	OK_(vmc_hdr_unseal(&h, 0, k->kek_wrap_key, out));
	MEMEQ_(out, dek, 64);
	vmc_kek_put(k);

	/* The committed fixture is exactly that header, and keeps opening. */
	EQ_(read_hex_file(hex_path, file, sizeof(file)), HDR);
	MEMEQ_(file, raw, HDR);
	OK_(parse(&h, file, HDR));

	/* Data units under the vector DEK. */
	kat_units(pt, ct);
	ref_sha256(ct, 4096, sum);
	vmc_test_unhex(kat_unit0_sha, want, sizeof(want));
	MEMEQ_(sum, want, 32);
	ref_sha256(ct + 4096, 100, sum);
	vmc_test_unhex(kat_unit1_sha, want, sizeof(want));
	MEMEQ_(sum, want, 32);
	OK_(vmc_dek_new(&d, dek));
	REQUIRE_(d);
	memcpy(buf, pt, sizeof(buf));
	OK_(vmc_dek_encrypt(d, 0, buf, sizeof(buf)));
	MEMEQ_(buf, ct, sizeof(ct));
	OK_(vmc_dek_decrypt(d, 0, buf, sizeof(buf)));
	MEMEQ_(buf, pt, sizeof(pt));
	vmc_dek_free(d);
	free(hex_path);
}

/* --- VM key record -------------------------------------------------------- */

static void kekref_set(struct vmc_kekref *r, const char *provider, const char *id,
		       const uint8_t check_key[32], const uint8_t uuid[16])
{
	memset(r, 0, sizeof(*r));
	r->set = true;
	strcpy(r->provider, provider);
	strcpy(r->kek_id, id);
	REQUIRE_(vmc_vmstate_key_check(check_key, uuid, provider, id, r->key_check) == 0);
}

static void vmstate_make(struct vmc_vmstate *s, const uint8_t check_key[32])
{
	memset(s, 0, sizeof(*s));
	ref_random(s->vm_uuid, sizeof(s->vm_uuid));
	s->seq = 41;
	s->created = 1700000000;
	s->state = VMC_FMT_VMSTATE_REKEY;
	kekref_set(&s->current, "native", KEKID_A, check_key, s->vm_uuid);
	kekref_set(&s->next, "corp-kms", KEKID_B, check_key, s->vm_uuid);
}

static void vmstate_eq(const struct vmc_vmstate *a, const struct vmc_vmstate *b)
{
	MEMEQ_(a->vm_uuid, b->vm_uuid, 16);
	EQ_(a->seq, b->seq);
	EQ_(a->created, b->created);
	EQ_(a->state, b->state);
	EQ_(a->current.set, b->current.set);
	STREQ_(a->current.provider, b->current.provider);
	STREQ_(a->current.kek_id, b->current.kek_id);
	MEMEQ_(a->current.key_check, b->current.key_check, 32);
	EQ_(a->next.set, b->next.set);
	STREQ_(a->next.provider, b->next.provider);
	STREQ_(a->next.kek_id, b->next.kek_id);
	MEMEQ_(a->next.key_check, b->next.key_check, 32);
}

static int vs_parse(struct vmc_vmstate *s, const void *buf, size_t len)
{
	errbuf[0] = '\0';
	return vmc_vmstate_parse(s, buf, len, errbuf, sizeof(errbuf));
}

static void test_vmstate_codec(void)
{
	uint8_t check_key[32], sum[32], msg[16 + 64 + 256], mac[32], buf[1100];
	struct vmc_vmstate s, s2;
	struct vmc_fmt_vmstate v;
	const uint8_t *raw = (const uint8_t *)&v;

	ref_random(check_key, sizeof(check_key));
	vmstate_make(&s, check_key);

	/* Key check value: HMAC-SHA256(check key, uuid | provider 64 | kek id 256). */
	memset(msg, 0, sizeof(msg));
	memcpy(msg, s.vm_uuid, 16);
	memcpy(msg + 16, "native", 6);
	memcpy(msg + 80, KEKID_A, strlen(KEKID_A));
	ref_hmac_sha256(check_key, 32, msg, sizeof(msg), mac);
	MEMEQ_(s.current.key_check, mac, 32);
	OK_(vmc_vmstate_key_check(check_key, s.vm_uuid, "nativf", KEKID_A, mac));
	MEMNE_(mac, s.current.key_check, 32);
	OK_(vmc_vmstate_key_check(check_key, s.vm_uuid, "native", KEKID_A "x", mac));
	MEMNE_(mac, s.current.key_check, 32);
	s.vm_uuid[15] ^= 1;
	OK_(vmc_vmstate_key_check(check_key, s.vm_uuid, "native", KEKID_A, mac));
	s.vm_uuid[15] ^= 1;
	MEMNE_(mac, s.current.key_check, 32);
	check_key[0] ^= 1;
	OK_(vmc_vmstate_key_check(check_key, s.vm_uuid, "native", KEKID_A, mac));
	check_key[0] ^= 1;
	MEMNE_(mac, s.current.key_check, 32);
	{
		char longp[65];

		memset(longp, 'p', 64);
		longp[64] = '\0';
		FAIL_(vmc_vmstate_key_check(check_key, s.vm_uuid, longp, "x", mac), EINVAL);
	}

	/* Encoding, byte by byte. */
	vmc_vmstate_encode(&s, &v);
	MEMEQ_(raw, VMC_FMT_MAGIC, 14);
	EQ_(raw[14], VMC_FMT_TYPE_VMSTATE);
	EQ_(raw[15], 0);
	EQ_(raw[16], 1);
	EQ_(raw[17], 0);
	TRUE_(all_zero(raw + 18, 6));
	MEMEQ_(raw + 24, s.vm_uuid, 16);
	EQ_(get64(raw + 40), 41);
	EQ_(get64(raw + 48), 1700000000);
	EQ_(raw[56], VMC_FMT_VMSTATE_REKEY);
	TRUE_(all_zero(raw + 57, 7));
	EQ_(raw[64], 6);
	EQ_(raw[66] | raw[67] << 8, strlen(KEKID_A));
	MEMEQ_(raw + 64 + 32, "native", 6);
	MEMEQ_(raw + 64 + 96, KEKID_A, strlen(KEKID_A));
	MEMEQ_(raw + 64 + 352, s.current.key_check, 32);
	EQ_(raw[448], 8);
	MEMEQ_(raw + 448 + 32, "corp-kms", 8);
	MEMEQ_(raw + 448 + 352, s.next.key_check, 32);
	TRUE_(all_zero(raw + 832, 160));
	ref_sha256(raw, 992, sum);
	MEMEQ_(raw + 992, sum, 32);

	OK_(vs_parse(&s2, &v, sizeof(v)));
	vmstate_eq(&s, &s2);

	/* Steady state: no next key. */
	s.state = VMC_FMT_VMSTATE_STEADY;
	memset(&s.next, 0, sizeof(s.next));
	vmc_vmstate_encode(&s, &v);
	TRUE_(all_zero(raw + 448, 384));
	OK_(vs_parse(&s2, &v, sizeof(v)));
	vmstate_eq(&s, &s2);
	EQ_(s2.next.set, false);

	/* Damage. */
	memcpy(buf, &v, sizeof(v));
	buf[995] ^= 1;
	FAIL_(vs_parse(&s2, buf, 1024), EUCLEAN);
	CONTAINS_(errbuf, "checksum");
	memcpy(buf, &v, sizeof(v));
	buf[100] ^= 1;
	FAIL_(vs_parse(&s2, buf, 1024), EUCLEAN);
	memcpy(buf, &v, sizeof(v));
	buf[1024] = 0;
	FAIL_(vs_parse(&s2, buf, 1023), EUCLEAN);
	FAIL_(vs_parse(&s2, buf, 1025), EUCLEAN);
	FAIL_(vs_parse(&s2, buf, 17), EUCLEAN);
	FAIL_(vs_parse(&s2, buf, 0), EUCLEAN);

	/* Versions, flags, reserved bytes, references (valid checksums). */
	memcpy(buf, &v, sizeof(v));
	put16(buf + 16, 2);
	ref_sha256(buf, 992, buf + 992);
	FAIL_(vs_parse(&s2, buf, 1024), EPROTONOSUPPORT);
	memcpy(buf, &v, sizeof(v));
	buf[22] = 1;
	ref_sha256(buf, 992, buf + 992);
	FAIL_(vs_parse(&s2, buf, 1024), EPROTONOSUPPORT);
	memcpy(buf, &v, sizeof(v));
	buf[900] = 1;
	ref_sha256(buf, 992, buf + 992);
	FAIL_(vs_parse(&s2, buf, 1024), EUCLEAN);
	memcpy(buf, &v, sizeof(v));
	buf[56] = 7;
	ref_sha256(buf, 992, buf + 992);
	FAIL_(vs_parse(&s2, buf, 1024), EUCLEAN);
	memcpy(buf, &v, sizeof(v));
	memset(buf + 64, 0, 384); /* no current key */
	ref_sha256(buf, 992, buf + 992);
	FAIL_(vs_parse(&s2, buf, 1024), EUCLEAN);
	memcpy(buf, &v, sizeof(v));
	buf[64] = 7; /* provider_len past the name */
	ref_sha256(buf, 992, buf + 992);
	FAIL_(vs_parse(&s2, buf, 1024), EUCLEAN);
	memcpy(buf, &v, sizeof(v));
	put16(buf + 14, VMC_FMT_TYPE_FILE);
	ref_sha256(buf, 992, buf + 992);
	FAIL_(vs_parse(&s2, buf, 1024), EUCLEAN);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static size_t read_file(int dirfd, const char *name, uint8_t *buf, size_t max)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW);
	ssize_t n;

	REQUIRE_(fd >= 0);
	n = read(fd, buf, max);
	close(fd);
	REQUIRE_(n >= 0);
	return (size_t)n;
}

static void write_file(int dirfd, const char *name, const void *buf, size_t len)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);

	REQUIRE_(fd >= 0);
	REQUIRE_(write(fd, buf, len) == (ssize_t)len);
	close(fd);
}

/* Entries of directory @dir whose names begin with @prefix. */
static int count_prefixed(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	REQUIRE_(d != NULL);
	while ((de = readdir(d)))
		n += !strncmp(de->d_name, prefix, strlen(prefix));
	closedir(d);
	return n;
}

static char vmstate_dir[] = "/tmp/vmc-unit-vmstate-XXXXXX";

/* Remove the temporary directory however the program ends. */
static void cleanup(void)
{
	nftw(vmstate_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void test_vmstate_files(void)
{
	char *dir = vmstate_dir;
	uint8_t check_key[32], before[1024], after[1024];
	struct vmc_vmstate s, s2, s3;
	struct stat st;
	int dirfd, pathfd;

	REQUIRE_(mkdtemp(dir));
	atexit(cleanup);
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	REQUIRE_(dirfd >= 0);
	ref_random(check_key, sizeof(check_key));
	vmstate_make(&s, check_key);

	FAIL_(vmc_vmstate_read(dirfd, VMC_FMT_STATE_NAME, &s2, errbuf, sizeof(errbuf)), ENOENT);

	OK_(vmc_vmstate_write(dirfd, VMC_FMT_STATE_NAME, &s));
	EQ_(s.seq, 42);
	OK_(fstatat(dirfd, VMC_FMT_STATE_NAME, &st, AT_SYMLINK_NOFOLLOW));
	TRUE_(S_ISREG(st.st_mode));
	EQ_(st.st_mode & 07777, 0600);
	EQ_(st.st_size, 1024);
	FAIL_(faccessat(dirfd, VMC_FMT_STATE_NAME ".tmp", F_OK, AT_SYMLINK_NOFOLLOW) ? -errno : 0,
	      ENOENT);
	OK_(vmc_vmstate_read(dirfd, VMC_FMT_STATE_NAME, &s2, errbuf, sizeof(errbuf)));
	vmstate_eq(&s, &s2);
	OK_(vmc_vmstate_write(dirfd, VMC_FMT_STATE_NAME, &s));
	OK_(vmc_vmstate_read(dirfd, VMC_FMT_STATE_NAME, &s2, errbuf, sizeof(errbuf)));
	EQ_(s2.seq, 43);

	/* Through an O_PATH descriptor of the directory, as the daemon may hold. */
	pathfd = open(dir, O_PATH | O_DIRECTORY);
	REQUIRE_(pathfd >= 0);
	OK_(vmc_vmstate_write(pathfd, VMC_FMT_STATE_NAME, &s));
	OK_(vmc_vmstate_read(pathfd, VMC_FMT_STATE_NAME, &s2, errbuf, sizeof(errbuf)));
	EQ_(s2.seq, 44);
	close(pathfd);

	/* Writes go through a private temporary name (hosts share the
	 * directory) and leave none behind; another name is not touched. */
	write_file(dirfd, VMC_FMT_STATE_NAME ".tmp", "junk", 4);
	OK_(vmc_vmstate_write(dirfd, VMC_FMT_STATE_NAME, &s));
	EQ_(count_prefixed(dir, VMC_FMT_STATE_NAME ".tmp."), 0);
	EQ_(read_file(dirfd, VMC_FMT_STATE_NAME ".tmp", after, sizeof(after)), 4);
	OK_(unlinkat(dirfd, VMC_FMT_STATE_NAME ".tmp", 0));

	/* Creating a record that exists fails, leaves it as it was, and no
	 * temporary file. */
	EQ_(read_file(dirfd, VMC_FMT_STATE_NAME, before, sizeof(before)), 1024);
	s2 = s;
	FAIL_(vmc_vmstate_create(dirfd, VMC_FMT_STATE_NAME, &s2), EEXIST);
	EQ_(read_file(dirfd, VMC_FMT_STATE_NAME, after, sizeof(after)), 1024);
	MEMEQ_(after, before, 1024);
	EQ_(count_prefixed(dir, VMC_FMT_STATE_NAME ".tmp."), 0);
	OK_(vmc_vmstate_create(dirfd, "fresh-record", &s2));
	OK_(vmc_vmstate_read(dirfd, "fresh-record", &s3, errbuf, sizeof(errbuf)));
	EQ_(s3.seq, s2.seq);
	OK_(unlinkat(dirfd, "fresh-record", 0));

	/* A symlink planted at the record's name is neither read nor written through. */
	EQ_(read_file(dirfd, VMC_FMT_STATE_NAME, before, sizeof(before)), 1024);
	write_file(dirfd, "elsewhere", before, 1024);
	OK_(unlinkat(dirfd, VMC_FMT_STATE_NAME, 0));
	OK_(symlinkat("elsewhere", dirfd, VMC_FMT_STATE_NAME));
	memset(&s2, 0, sizeof(s2));
	TRUE_(vmc_vmstate_read(dirfd, VMC_FMT_STATE_NAME, &s2, errbuf, sizeof(errbuf)) < 0);
	EQ_(s2.seq, 0);
	OK_(vmc_vmstate_write(dirfd, VMC_FMT_STATE_NAME, &s));
	OK_(fstatat(dirfd, VMC_FMT_STATE_NAME, &st, AT_SYMLINK_NOFOLLOW));
	TRUE_(S_ISREG(st.st_mode));
	EQ_(read_file(dirfd, "elsewhere", after, sizeof(after)), 1024);
	MEMEQ_(after, before, 1024);

	/* Nor is one planted at the old temporary name. */
	write_file(dirfd, "victim", "victim", 6);
	OK_(symlinkat("victim", dirfd, VMC_FMT_STATE_NAME ".tmp"));
	OK_(vmc_vmstate_write(dirfd, VMC_FMT_STATE_NAME, &s));
	EQ_(read_file(dirfd, "victim", after, sizeof(after)), 6);
	MEMEQ_(after, "victim", 6);
	OK_(vmc_vmstate_read(dirfd, VMC_FMT_STATE_NAME, &s2, errbuf, sizeof(errbuf)));
	EQ_(s2.seq, s.seq);

	/* A FIFO at the name is refused without blocking. */
	OK_(unlinkat(dirfd, VMC_FMT_STATE_NAME, 0));
	OK_(mkfifoat(dirfd, VMC_FMT_STATE_NAME, 0600));
	FAIL_(vmc_vmstate_read(dirfd, VMC_FMT_STATE_NAME, &s2, errbuf, sizeof(errbuf)), EUCLEAN);
	OK_(unlinkat(dirfd, VMC_FMT_STATE_NAME, 0));

	/* Wrong size on disk; a directory at the name. */
	write_file(dirfd, VMC_FMT_STATE_NAME, before, 1000);
	FAIL_(vmc_vmstate_read(dirfd, VMC_FMT_STATE_NAME, &s2, errbuf, sizeof(errbuf)), EUCLEAN);
	OK_(unlinkat(dirfd, VMC_FMT_STATE_NAME, 0));
	OK_(mkdirat(dirfd, VMC_FMT_STATE_NAME, 0700));
	FAIL_(vmc_vmstate_read(dirfd, VMC_FMT_STATE_NAME, &s2, errbuf, sizeof(errbuf)), EUCLEAN);
	CONTAINS_(errbuf, "not a regular file");

	close(dirfd);
}

int main(int argc, char **argv)
{
	const char *dir;

	if (argc < 2)
		SKIP_("usage: %s VECTOR_DIR [--write-vectors]", argv[0]);
	dir = argv[1];
	REQUIRE_(vmc_crypto_init() == 0);
	if (argc > 2 && !strcmp(argv[2], "--write-vectors")) {
		write_vectors(dir);
		return 0;
	}

	test_struct_offsets();
	test_roundtrip();
	test_seal_limits();
	test_two_slots();
	test_wrong_kek();
	test_bit_flips();
	test_parse_errors();
	test_trunc_record();
	test_known_answer(dir);
	test_vmstate_codec();
	test_vmstate_files();
	return vmc_test_exit("test_format");
}
