// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of what the core library offers inspection tools
 * (vmcryptfs-util): vmc_hdr_examine on intact, damaged and truncated headers
 * (its verdict always equals vmc_hdr_parse's), the "password" pseudo-provider
 * (vmc_pwkek: key id grammar and bounds, derivation), the configuration's
 * refusal of a provider named "password", and vmc_keyring_list (the native
 * plugin cannot list; the test plugin "testlist" of tests/util can).
 *
 * Usage: test_inspect PLUGIN_DIR
 */
#include "vmc_config.h"
#include "vmc_crypto.h"
#include "vmc_dek.h"
#include "vmc_header.h"
#include "vmc_keyring.h"
#include "vmc_pwkek.h"
#include "vmc_test.h"

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *plugin_dir;
static char tmp[] = "/tmp/vmc-unit-inspect-XXXXXX";
static char err[512];

/* A sealed header with one slot, as the daemon writes it. */
static void make_header(struct vmc_hdr *h, uint8_t dek[VMC_FMT_DEK_LEN], struct vmc_kek **kek)
{
	static const uint8_t uuid[16] = { 1, 2, 3, 4 };
	uint8_t raw[32] = { 0x42 };

	OK_(vmc_kek_derive("native", "nkp1.test", raw, kek));
	OK_(vmc_dek_generate(dek));
	OK_(vmc_hdr_create(h, VMC_FMT_CLASS_DISK, uuid));
	OK_(vmc_hdr_seal(h, 0, "native", "nkp1.test", (*kek)->kek_wrap_key, dek, 1));
}

static bool has_problem(const struct vmc_hdr_report *rep, const char *what)
{
	for (unsigned int i = 0; i < rep->nproblems; i++)
		if (strstr(rep->problems[i], what))
			return true;
	return false;
}

/* Examine @len bytes of @buf: the verdict must be vmc_hdr_parse's. */
static int examine(const void *buf, size_t len, struct vmc_hdr *h, struct vmc_hdr_report *rep)
{
	struct vmc_hdr p;
	char msg[256];
	int v = vmc_hdr_parse(&p, buf, len, msg, sizeof(msg));
	int r = vmc_hdr_examine(h, buf, len, rep);

	EQ_(r, v);
	EQ_(rep->verdict, v);
	if (v)
		STREQ_(rep->verdict_msg, msg);
	return r;
}

static void test_examine(void)
{
	struct vmc_hdr h, x;
	struct vmc_hdr_report rep;
	struct vmc_kek *kek;
	uint8_t dek[VMC_FMT_DEK_LEN], buf[VMC_FMT_HDR_SIZE], out[VMC_FMT_DEK_LEN];

	make_header(&h, dek, &kek);
	memcpy(buf, &h.raw, sizeof(buf));

	/* Intact: exactly what vmc_hdr_parse gives, no problems. */
	OK_(examine(buf, sizeof(buf), &x, &rep));
	EQ_(rep.nproblems, 0);
	TRUE_(rep.fixed_intact);
	TRUE_(!rep.truncated);
	EQ_(x.slots[0].status, VMC_SLOT_OK);
	STREQ_(x.slots[0].kek_id, "nkp1.test");
	OK_(vmc_hdr_unseal(&x, 0, kek->kek_wrap_key, out));
	MEMEQ_(out, dek, sizeof(dek));

	/* Truncated to 100 and 4095 bytes: damaged, fields decoded as found. */
	FAIL_(examine(buf, 100, &x, &rep), EUCLEAN);
	TRUE_(rep.truncated);
	TRUE_(has_problem(&rep, "truncated: 100 of 4096"));
	EQ_(x.version, 1);
	EQ_(x.file_class, VMC_FMT_CLASS_DISK);
	FAIL_(examine(buf, 4095, &x, &rep), EUCLEAN);
	TRUE_(has_problem(&rep, "truncated: 4095"));
	EQ_(x.slots[0].status, VMC_SLOT_OK); /* the slot is within the 4095 bytes */

	/* A flipped cipher byte: the checksum and the cipher both reported. */
	buf[28] ^= 2;
	FAIL_(examine(buf, sizeof(buf), &x, &rep), EUCLEAN);
	TRUE_(!rep.fixed_intact);
	TRUE_(has_problem(&rep, "checksum of the fixed part"));
	TRUE_(has_problem(&rep, "unknown cipher 3"));
	EQ_(x.slots[0].status, VMC_SLOT_OK); /* each slot is checked on its own */
	buf[28] ^= 2;

	/* A flipped magic byte and a flipped version bit. */
	buf[3] ^= 0x10;
	FAIL_(examine(buf, sizeof(buf), &x, &rep), EUCLEAN);
	TRUE_(has_problem(&rep, "bad magic"));
	buf[3] ^= 0x10;
	buf[17] ^= 1;
	FAIL_(examine(buf, sizeof(buf), &x, &rep), EPROTONOSUPPORT);
	TRUE_(has_problem(&rep, "format version 257"));
	buf[17] ^= 1;

	/* The only slot damaged: no usable slot. */
	buf[512 + 100] ^= 1;
	FAIL_(examine(buf, sizeof(buf), &x, &rep), EUCLEAN);
	TRUE_(has_problem(&rep, "key slot 0: slot checksum mismatch"));
	TRUE_(has_problem(&rep, "no usable key slot"));
	EQ_(x.slots[0].status, VMC_SLOT_DAMAGED);

	/* ... but beside a usable slot (an interrupted rekey): usable, listed. */
	memcpy(&h.raw.slots[1], buf + 512, 512);
	memcpy(buf, &h.raw, sizeof(buf));
	OK_(examine(buf, sizeof(buf), &x, &rep));
	EQ_(rep.nproblems, 1);
	TRUE_(has_problem(&rep, "key slot 1"));
	EQ_(x.slots[1].status, VMC_SLOT_DAMAGED);

	/* Every truncation and every single bit flip of the fixed part and slot 0:
	 * verdicts agree with vmc_hdr_parse (checked in examine()). */
	vmc_hdr_clear_slot(&h, 1);
	memcpy(buf, &h.raw, sizeof(buf));
	for (size_t len = 0; len <= sizeof(buf); len += 97)
		examine(buf, len, &x, &rep);
	for (size_t bit = 0; bit < 1024 * 8; bit += 7) {
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		if (examine(buf, sizeof(buf), &x, &rep) == 0)
			VMC_T_FAIL("bit %zu flipped: the header still parses", bit);
		else if (!rep.nproblems)
			VMC_T_FAIL("bit %zu flipped: no problem listed", bit);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	vmc_kek_put(kek);
}

static void test_pwkek(void)
{
	struct vmc_pwkek_params p;
	struct vmc_kek *a = NULL, *b = NULL, *c = NULL;
	char id[VMC_FMT_KEKID_MAX], id2[VMC_FMT_KEKID_MAX];
	static const char good[] = "argon2id:t=3:m=65536:p=1:s=000102030405060708090a0b0c0d0e0f";
	static const char *const bad[] = {
		"", "argon2i:t=3:m=65536:p=1:s=000102030405060708090a0b0c0d0e0f",
		"argon2id:t=0:m=65536:p=1:s=000102030405060708090a0b0c0d0e0f",
		"argon2id:t=101:m=65536:p=1:s=000102030405060708090a0b0c0d0e0f",
		"argon2id:t=03:m=65536:p=1:s=000102030405060708090a0b0c0d0e0f",
		"argon2id:t=3:m=7:p=1:s=000102030405060708090a0b0c0d0e0f",
		"argon2id:t=3:m=64:p=9:s=000102030405060708090a0b0c0d0e0f",
		"argon2id:t=3:m=2097153:p=1:s=000102030405060708090a0b0c0d0e0f",
		"argon2id:t=3:m=65536:p=17:s=000102030405060708090a0b0c0d0e0f",
		"argon2id:t=3:m=65536:p=1:s=000102030405060708090a0b0c0d0e",
		"argon2id:t=3:m=65536:p=1:s=000102030405060708090a0b0c0d0e0f00",
		"argon2id:t=3:m=65536:p=1:s=000102030405060708090A0B0C0D0E0F",
		"argon2id:m=65536:t=3:p=1:s=000102030405060708090a0b0c0d0e0f",
		"argon2id:t=+3:m=65536:p=1:s=000102030405060708090a0b0c0d0e0f",
		"argon2id:t=99999999999:m=65536:p=1:s=000102030405060708090a0b0c0d0e0f",
	};

	OK_(vmc_pwkek_id_parse(good, &p));
	EQ_(p.t_cost, 3);
	EQ_(p.m_cost_kib, 65536);
	EQ_(p.parallel, 1);
	EQ_(p.salt[15], 15);
	vmc_pwkek_id_format(&p, id);
	STREQ_(id, good);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (vmc_pwkek_id_parse(bad[i], &p) != -EINVAL)
			VMC_T_FAIL("accepted bad password key id \"%s\"", bad[i]);

	OK_(vmc_pwkek_new_id(id));
	OK_(vmc_pwkek_new_id(id2));
	TRUE_(strcmp(id, id2) != 0); /* fresh salts */
	OK_(vmc_pwkek_id_parse(id, &p));
	EQ_(p.m_cost_kib, VMC_PWKEK_M_COST_KIB);

	/* Cheap costs for the derivations below (the grammar allows them). */
	strcpy(id, "argon2id:t=1:m=64:p=1:s=000102030405060708090a0b0c0d0e0f");
	strcpy(id2, "argon2id:t=1:m=64:p=1:s=100102030405060708090a0b0c0d0e0f");
	OK_(vmc_pwkek_derive(id, "secret", 6, &a, err, sizeof(err)));
	OK_(vmc_pwkek_derive(id, "secret", 6, &b, err, sizeof(err)));
	STREQ_(a->kek_provider, VMC_PWKEK_PROVIDER);
	STREQ_(a->kek_id, id);
	MEMEQ_(a->kek_wrap_key, b->kek_wrap_key, 32);
	vmc_kek_put(b);
	OK_(vmc_pwkek_derive(id, "secreT", 6, &b, err, sizeof(err)));
	MEMNE_(a->kek_wrap_key, b->kek_wrap_key, 32);
	OK_(vmc_pwkek_derive(id2, "secret", 6, &c, err, sizeof(err)));
	MEMNE_(a->kek_wrap_key, c->kek_wrap_key, 32);
	vmc_kek_put(a);
	vmc_kek_put(b);
	vmc_kek_put(c);
	FAIL_(vmc_pwkek_derive(id, "", 0, &a, err, sizeof(err)), EINVAL);
	CONTAINS_(err, "empty password");
	FAIL_(vmc_pwkek_derive("nkp1.x", "pw", 2, &a, err, sizeof(err)), EINVAL);
	CONTAINS_(err, "not a password key id");
}

static void test_config_refuses_password(void)
{
	struct vmc_config *cfg = NULL;

	FAIL_(vmc_config_parse("key-provider \"password\" {\n\ttype = \"native\"\n}\n",
			       "t.conf", &cfg, err, sizeof(err)), EINVAL);
	CONTAINS_(err, "t.conf:");
	CONTAINS_(err, "key-provider \"password\": the name is reserved");
	TRUE_(cfg == NULL);
	OK_(vmc_config_parse("key-provider \"passwords\" {\n\ttype = \"native\"\n}\n", "t.conf",
			     &cfg, err, sizeof(err)));
	vmc_config_free(cfg);
}

struct seen {
	int n;
	char ids[8][VMC_FMT_KEKID_MAX];
	char labels[8][64];
};

static int on_key(void *arg, const char *id, const char *label)
{
	struct seen *s = arg;

	if (s->n < 8) {
		snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", id);
		snprintf(s->labels[s->n], sizeof(s->labels[0]), "%s", label ? label : "(none)");
	}
	s->n++;
	return 0;
}

static void test_keyring_list(void)
{
	struct vmc_config *cfg = NULL;
	struct vmc_keyring *kr = NULL;
	struct vmc_kek *k1 = NULL, *k2 = NULL;
	struct seen s = { 0 };
	char *text, plugin[PATH_MAX];

	snprintf(plugin, sizeof(plugin), "%s/vmcryptfs-keyprov-testlist.so", plugin_dir);
	if (access(plugin, F_OK)) {
		fprintf(stderr, "note: %s not built: list_keys not tested\n", plugin);
		return;
	}
	REQUIRE_(asprintf(&text,
			  "key-provider \"native\" {\n\ttype = \"native\"\n\tkey-file = \"%s/n.key\"\n}\n"
			  "key-provider \"tl\" {\n\ttype = \"testlist\"\n\tkey-dir = \"%s\"\n}\n",
			  tmp, tmp) > 0);
	OK_(vmc_config_parse(text, "list.conf", &cfg, err, sizeof(err)));
	free(text);
	if (vmc_keyring_new(cfg, plugin_dir, &kr, err, sizeof(err))) {
		VMC_T_FAIL("vmc_keyring_new: %s", err);
		vmc_config_free(cfg);
		return;
	}
	FAIL_(vmc_keyring_list(kr, "native", "vmcryptfs-", on_key, &s, err, sizeof(err)),
	      EOPNOTSUPP);
	CONTAINS_(err, "cannot list its keys");
	FAIL_(vmc_keyring_list(kr, "nope", "", on_key, &s, err, sizeof(err)), ENOENT);
	OK_(vmc_keyring_create(kr, "tl", "vmcryptfs-vm-abc", &k1, err, sizeof(err)));
	OK_(vmc_keyring_create(kr, "tl", "someone-else", &k2, err, sizeof(err)));
	OK_(vmc_keyring_list(kr, "tl", "vmcryptfs-", on_key, &s, err, sizeof(err)));
	EQ_(s.n, 1);
	STREQ_(s.ids[0], k1->kek_id);
	STREQ_(s.labels[0], "vmcryptfs-vm-abc");
	s.n = 0;
	OK_(vmc_keyring_list(kr, "tl", NULL, on_key, &s, err, sizeof(err)));
	EQ_(s.n, 2);
	vmc_kek_put(k1);
	vmc_kek_put(k2);
	vmc_keyring_free(kr);
	vmc_config_free(cfg);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_inspect PLUGIN_DIR\n");
		return 2;
	}
	plugin_dir = argv[1];
	REQUIRE_(vmc_crypto_init() == 0);
	REQUIRE_(mkdtemp(tmp) != NULL);
	test_examine();
	test_pwkek();
	test_config_refuses_password();
	test_keyring_list();
	nftw(tmp, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return vmc_test_exit("test_inspect");
}
