// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of lib/vmc_crypto.h and lib/vmc_dek.h: AES-256-XTS data units
 * (IEEE Std 1619 known answers, then random cross-checks against OpenSSL,
 * ciphertext stealing and the 1..15-byte keystream rule), AES-256-GCM key
 * wrapping (OpenSSL byte for byte, every single-bit forgery rejected),
 * HKDF/HMAC/SHA-256 against their RFC vectors, the DEK's multi-unit and hole
 * rules, and the constant-time comparison.
 *
 * References are OpenSSL's EVP (tests/unit/vmc_ref.c) and published vectors;
 * nothing is compared with values computed by the code under test.
 */
#include "vmc_crypto.h"
#include "vmc_dek.h"
#include "vmc_format.h"
#include "vmc_ref.h"
#include "vmc_test.h"

#include <pthread.h>

#define ITERATIONS 24 /* random keys per cross-check */

/*
 * IEEE Std 1619-2007, Annex B, XTS-AES-256 vectors 10..14: one key, 512-byte
 * data units 0..255 0..255, data unit sequence numbers 0xff .. 0xffffffffff.
 * Transcribed from the published vectors as reproduced in public test suites
 * (RustCrypto xts, libtomcrypt, OpenSSL's evptests); each is also re-checked
 * against OpenSSL below, so a transcription error cannot pass silently.
 */
static const char ieee_key[] =
	"2718281828459045235360287471352662497757247093699959574966967627"
	"3141592653589793238462643383279502884197169399375105820974944592";

static const struct ieee_vector {
	int number;
	uint64_t unit;
	const char *ct;
} ieee_vectors[] = {
	{ 10, 0xffull,
	  "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b"
	  "5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd"
	  "5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0"
	  "c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca"
	  "2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0"
	  "b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f"
	  "93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec"
	  "583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a"
	  "84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1"
	  "505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae"
	  "9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29"
	  "a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac"
	  "6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f"
	  "645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed4385"
	  "1ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa"
	  "773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151" },
	{ 11, 0xffffull,
	  "77a31251618a15e6b92d1d66dffe7b50b50bad552305ba0217a610688eff7e11"
	  "e1d0225438e093242d6db274fde801d4cae06f2092c728b2478559df58e837c2"
	  "469ee4a4fa794e4bbc7f39bc026e3cb72c33b0888f25b4acf56a2a9804f1ce6d"
	  "3d6e1dc6ca181d4b546179d55544aa7760c40d06741539c7e3cd9d2f6650b201"
	  "3fd0eeb8c2b8e3d8d240ccae2d4c98320a7442e1c8d75a42d6e6cfa4c2eca179"
	  "8d158c7aecdf82490f24bb9b38e108bcda12c3faf9a21141c3613b58367f922a"
	  "aa26cd22f23d708dae699ad7cb40a8ad0b6e2784973dcb605684c08b8d6998c6"
	  "9aac049921871ebb65301a4619ca80ecb485a31d744223ce8ddc2394828d6a80"
	  "470c092f5ba413c3378fa6054255c6f9df4495862bbb3287681f931b687c888a"
	  "bf844dfc8fc28331e579928cd12bd2390ae123cf03818d14dedde5c0c24c8ab0"
	  "18bfca75ca096f2d531f3d1619e785f1ada437cab92e980558b3dce1474afb75"
	  "bfedbf8ff54cb2618e0244c9ac0d3c66fb51598cd2db11f9be39791abe447c63"
	  "094f7c453b7ff87cb5bb36b7c79efb0872d17058b83b15ab0866ad8a58656c5a"
	  "7e20dbdf308b2461d97c0ec0024a2715055249cf3b478ddd4740de654f75ca68"
	  "6e0d7345c69ed50cdc2a8b332b1f8824108ac937eb050585608ee734097fc090"
	  "54fbff89eeaeea791f4a7ab1f9868294a4f9e27b42af8100cb9d59cef9645803" },
	{ 12, 0xffffffull,
	  "e387aaa58ba483afa7e8eb469778317ecf4cf573aa9d4eac23f2cdf914e4e200"
	  "a8b490e42ee646802dc6ee2b471b278195d60918ececb44bf79966f83faba049"
	  "9298ebc699c0c8634715a320bb4f075d622e74c8c932004f25b41e361025b5a8"
	  "7815391f6108fc4afa6a05d9303c6ba68a128a55705d415985832fdeaae6c8e1"
	  "9110e84d1b1f199a2692119edc96132658f09da7c623efcec712537a3d94c0bf"
	  "5d7e352ec94ae5797fdb377dc1551150721adf15bd26a8efc2fcaad56881fa9e"
	  "62462c28f30ae1ceaca93c345cf243b73f542e2074a705bd2643bb9f7cc79bb6"
	  "e7091ea6e232df0f9ad0d6cf502327876d82207abf2115cdacf6d5a48f6c1879"
	  "a65b115f0f8b3cb3c59d15dd8c769bc014795a1837f3901b5845eb491adfefe0"
	  "97b1fa30a12fc1f65ba22905031539971a10f2f36c321bb51331cdefb39e3964"
	  "c7ef079994f5b69b2edd83a71ef549971ee93f44eac3938fcdd61d01fa71799d"
	  "a3a8091c4c48aa9ed263ff0749df95d44fef6a0bb578ec69456aa5408ae32c7a"
	  "f08ad7ba8921287e3bbee31b767be06a0e705c864a769137df28292283ea81a2"
	  "480241b44d9921cdbec1bc28dc1fda114bd8e5217ac9d8ebafa720e9da4f9ace"
	  "231cc949e5b96fe76ffc21063fddc83a6b8679c00d35e09576a875305bed5f36"
	  "ed242c8900dd1fa965bc950dfce09b132263a1eef52dd6888c309f5a7d712826" },
	{ 13, 0xffffffffull,
	  "bf53d2dade78e822a4d949a9bc6766b01b06a8ef70d26748c6a7fc36d80ae4c5"
	  "520f7c4ab0ac8544424fa405162fef5a6b7f229498063618d39f0003cb5fb8d1"
	  "c86b643497da1ff945c8d3bedeca4f479702a7a735f043ddb1d6aaade3c4a0ac"
	  "7ca7f3fa5279bef56f82cd7a2f38672e824814e10700300a055e1630b8f1cb0e"
	  "919f5e942010a416e2bf48cb46993d3cb6a51c19bacf864785a00bc2ecff15d3"
	  "50875b246ed53e68be6f55bd7e05cfc2b2ed6432198a6444b6d8c247fab941f5"
	  "69768b5c429366f1d3f00f0345b96123d56204c01c63b22ce78baf116e525ed9"
	  "0fdea39fa469494d3866c31e05f295ff21fea8d4e6e13d67e47ce722e9698a1c"
	  "1048d68ebcde76b86fcf976eab8aa9790268b7068e017a8b9b749409514f1053"
	  "027fd16c3786ea1bac5f15cb79711ee2abe82f5cf8b13ae73030ef5b9e4457e7"
	  "5d1304f988d62dd6fc4b94ed38ba831da4b7634971b6cd8ec325d9c61c00f1df"
	  "73627ed3745a5e8489f3a95c69639c32cd6e1d537a85f75cc844726e8a72fc00"
	  "77ad22000f1d5078f6b866318c668f1ad03d5a5fced5219f2eabbd0aa5c0f460"
	  "d183f04404a0d6f469558e81fab24a167905ab4c7878502ad3e38fdbe62a4155"
	  "6cec37325759533ce8f25f367c87bb5578d667ae93f9e2fd99bcbc5f2fbba88c"
	  "f6516139420fcff3b7361d86322c4bd84c82f335abb152c4a93411373aaa8220" },
	{ 14, 0xffffffffffull,
	  "64497e5a831e4a932c09be3e5393376daa599548b816031d224bbf50a818ed23"
	  "50eae7e96087c8a0db51ad290bd00c1ac1620857635bf246c176ab463be30b80"
	  "8da548081ac847b158e1264be25bb0910bbc92647108089415d45fab1b3d2604"
	  "e8a8eff1ae4020cfa39936b66827b23f371b92200be90251e6d73c5f86de5fd4"
	  "a950781933d79a28272b782a2ec313efdfcc0628f43d744c2dc2ff3dcb66999b"
	  "50c7ca895b0c64791eeaa5f29499fb1c026f84ce5b5c72ba1083cddb5ce45434"
	  "631665c333b60b11593fb253c5179a2c8db813782a004856a1653011e93fb6d8"
	  "76c18366dd8683f53412c0c180f9c848592d593f8609ca736317d356e13e2bff"
	  "3a9f59cd9aeb19cd482593d8c46128bb32423b37a9adfb482b99453fbe25a41b"
	  "f6feb4aa0bef5ed24bf73c762978025482c13115e4015aac992e5613a3b5c2f6"
	  "85b84795cb6e9b2656d8c88157e52c42f978d8634c43d06fea928f2822e465aa"
	  "6576e9bf419384506cc3ce3c54ac1a6f67dc66f3b30191e698380bc999b05abc"
	  "e19dc0c6dcc2dd001ec535ba18deb2df1a101023108318c75dc98611a09dc48a"
	  "0acdec676fabdf222f07e026f059b672b56e5cbc8e1d21bbd867dd9272120546"
	  "81d70ea737134cdfce93b6f82ae22423274e58a0821cc5502e2d0ab4585e94de"
	  "6975be5e0b4efce51cd3e70c25a1fbbbd609d273ad5b0d59631c531f6a0a57b9" },
};

/* A random XTS key whose two halves differ (IEEE 1619 requirement). */
static void random_xts_key(uint8_t key[64])
{
	do
		ref_random(key, 64);
	while (!memcmp(key, key + 32, 32));
}

static void test_xts_ieee1619(void)
{
	uint8_t key[64], pt[512], ct[512], ref[512], buf[512], tweak[16];
	struct vmc_xts *x = NULL;

	REQUIRE_(vmc_test_unhex(ieee_key, key, sizeof(key)) == 64);
	for (size_t i = 0; i < sizeof(pt); i++)
		pt[i] = (uint8_t)i;
	OK_(vmc_xts_new(&x, key));
	REQUIRE_(x);
	for (size_t v = 0; v < sizeof(ieee_vectors) / sizeof(ieee_vectors[0]); v++) {
		const struct ieee_vector *t = &ieee_vectors[v];

		fprintf(stderr, "IEEE 1619 vector %d (unit 0x%llx)\n", t->number,
			(unsigned long long)t->unit);
		REQUIRE_(vmc_test_unhex(t->ct, ct, sizeof(ct)) == 512);
		/* The transcription agrees with OpenSSL... */
		ref_xts_tweak(t->unit, false, tweak);
		ref_xts(true, key, tweak, pt, ref, sizeof(pt));
		MEMEQ_(ref, ct, sizeof(ct));
		/* ...and so does the code under test, both ways. */
		memcpy(buf, pt, sizeof(buf));
		OK_(vmc_xts_encrypt_unit(x, t->unit, buf, sizeof(buf)));
		MEMEQ_(buf, ct, sizeof(ct));
		OK_(vmc_xts_decrypt_unit(x, t->unit, buf, sizeof(buf)));
		MEMEQ_(buf, pt, sizeof(pt));
	}
	vmc_xts_free(x);
}

static void test_xts_random(void)
{
	static const uint64_t units[] = { 0, 1, 2, 0xff, (1ull << 32) + 5, (1ull << 63) - 1,
					  UINT64_MAX };
	static const size_t lens[] = { 16, 17, 31, 32, 33, 100, 511, 512, 4095, 4096 };
	uint8_t key[64], pt[4096], ref[4096], buf[4096];
	int bad_enc = 0, bad_dec = 0, bad_rc = 0, n = 0;

	for (int k = 0; k < ITERATIONS; k++) {
		struct vmc_xts *x = NULL;

		random_xts_key(key);
		OK_(vmc_xts_new(&x, key));
		REQUIRE_(x);
		for (size_t u = 0; u < sizeof(units) / sizeof(units[0]) + 1; u++) {
			uint64_t unit;

			if (u < sizeof(units) / sizeof(units[0]))
				unit = units[u];
			else
				ref_random(&unit, sizeof(unit));
			for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
				size_t len = lens[l];

				ref_random(pt, len);
				ref_unit(true, key, unit, pt, ref, len);
				memcpy(buf, pt, len);
				bad_rc += vmc_xts_encrypt_unit(x, unit, buf, len) != 0;
				if (memcmp(buf, ref, len)) {
					if (!bad_enc++)
						fprintf(stderr, "xts: first mismatch: unit %llu, "
							"len %zu\n", (unsigned long long)unit, len);
				}
				bad_rc += vmc_xts_decrypt_unit(x, unit, buf, len) != 0;
				bad_dec += memcmp(buf, pt, len) != 0;
				n++;
			}
		}
		vmc_xts_free(x);
	}
	fprintf(stderr, "xts: %d random units cross-checked against OpenSSL\n", n);
	EQ_(bad_rc, 0);
	EQ_(bad_enc, 0);
	EQ_(bad_dec, 0);
}

static void test_xts_short_units(void)
{
	static const uint64_t units[] = { 0, 1, 7, (1ull << 32) + 5, (1ull << 63) - 1,
					  UINT64_MAX };
	uint8_t key[64], pt[16], ref[16], buf[16], ks[16], zero[16] = { 0 }, tweak[16];
	int bad_enc = 0, bad_dec = 0, bad_rc = 0, n = 0;

	for (int k = 0; k < ITERATIONS; k++) {
		struct vmc_xts *x = NULL;

		random_xts_key(key);
		OK_(vmc_xts_new(&x, key));
		REQUIRE_(x);
		for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
			/* keystream = XTS-AES-256(K, unit | 2^127, 0^128), by hand */
			ref_xts_tweak(units[u], false, tweak);
			tweak[15] = 0x80;
			ref_xts(true, key, tweak, zero, ks, 16);
			for (size_t len = 1; len < 16; len++) {
				ref_random(pt, len);
				for (size_t i = 0; i < len; i++)
					ref[i] = pt[i] ^ ks[i];
				memcpy(buf, pt, len);
				bad_rc += vmc_xts_encrypt_unit(x, units[u], buf, len) != 0;
				bad_enc += memcmp(buf, ref, len) != 0;
				bad_rc += vmc_xts_decrypt_unit(x, units[u], buf, len) != 0;
				bad_dec += memcmp(buf, pt, len) != 0;
				n++;
			}
		}
		vmc_xts_free(x);
	}
	fprintf(stderr, "xts: %d short units (1..15 bytes) checked\n", n);
	EQ_(bad_rc, 0);
	EQ_(bad_enc, 0);
	EQ_(bad_dec, 0);

	/* The short-unit keystream is not the one of the full-unit tweak domain. */
	{
		struct vmc_xts *x = NULL;
		uint8_t full[16];

		random_xts_key(key);
		OK_(vmc_xts_new(&x, key));
		REQUIRE_(x);
		ref_xts_tweak(3, false, tweak);
		ref_xts(true, key, tweak, zero, full, 16);
		memset(buf, 0, sizeof(buf));
		OK_(vmc_xts_encrypt_unit(x, 3, buf, 15));
		MEMNE_(buf, full, 15);
		vmc_xts_free(x);
	}
}

static void test_xts_bad_input(void)
{
	uint8_t key[64], buf[4097] = { 0 };
	struct vmc_xts *x = NULL;

	random_xts_key(key);
	memcpy(key + 32, key, 32);
	FAIL_(vmc_xts_new(&x, key), EINVAL);
	TRUE_(x == NULL);

	random_xts_key(key);
	OK_(vmc_xts_new(&x, key));
	REQUIRE_(x);
	FAIL_(vmc_xts_encrypt_unit(x, 0, buf, 0), EINVAL);
	FAIL_(vmc_xts_encrypt_unit(x, 0, buf, 4097), EINVAL);
	FAIL_(vmc_xts_decrypt_unit(x, 0, buf, 0), EINVAL);
	FAIL_(vmc_xts_decrypt_unit(x, 0, buf, 4097), EINVAL);
	vmc_xts_free(x);
	vmc_xts_free(NULL);
}

/* --- AES-256-GCM ---------------------------------------------------------- */

static void test_gcm(void)
{
	static const size_t lens[] = { 0, 1, 16, 64, 100 };
	static const size_t aadlens[] = { 0, 1, 592 };
	uint8_t key[32], nonce[12], aad[592], pt[100], ct[116], ref[116], tag[16], rtag[16];
	uint8_t out[100];

	for (int k = 0; k < ITERATIONS / 4 + 1; k++) {
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			for (size_t a = 0; a < sizeof(aadlens) / sizeof(aadlens[0]); a++) {
				size_t len = lens[l], aadlen = aadlens[a];

				ref_random(key, sizeof(key));
				ref_random(nonce, sizeof(nonce));
				ref_random(aad, sizeof(aad));
				ref_random(pt, sizeof(pt));
				ref_gcm_seal(key, nonce, aad, aadlen, pt, len, ref, rtag);
				OK_(vmc_gcm_seal(key, nonce, aad, aadlen, pt, len, ct, tag));
				MEMEQ_(ct, ref, len);
				MEMEQ_(tag, rtag, 16);
				memset(out, 0xa5, sizeof(out));
				OK_(vmc_gcm_open(key, nonce, aad, aadlen, ct, len, out, tag));
				MEMEQ_(out, pt, len);
			}
		}
	}
	/* No additional data at all. */
	ref_gcm_seal(key, nonce, NULL, 0, pt, 64, ref, rtag);
	OK_(vmc_gcm_seal(key, nonce, NULL, 0, pt, 64, ct, tag));
	MEMEQ_(ct, ref, 64);
	MEMEQ_(tag, rtag, 16);
	OK_(vmc_gcm_open(key, nonce, NULL, 0, ct, 64, out, tag));
	MEMEQ_(out, pt, 64);
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* Every single-bit change of ciphertext, tag, nonce or AAD is a forgery. */
static void test_gcm_forgery(void)
{
	uint8_t key[32], nonce[12], aad[64], pt[64], ct[64], tag[16], out[64];
	int accepted = 0, wrong_rc = 0, not_wiped = 0, n = 0;
	struct {
		uint8_t *p;
		size_t len;
		const char *name;
	} fields[] = {
		{ ct, sizeof(ct), "ciphertext" },
		{ tag, sizeof(tag), "tag" },
		{ nonce, sizeof(nonce), "nonce" },
		{ aad, sizeof(aad), "aad" },
	};

	ref_random(key, sizeof(key));
	ref_random(nonce, sizeof(nonce));
	ref_random(aad, sizeof(aad));
	ref_random(pt, sizeof(pt));
	OK_(vmc_gcm_seal(key, nonce, aad, sizeof(aad), pt, sizeof(pt), ct, tag));
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		for (size_t bit = 0; bit < fields[f].len * 8; bit++) {
			int r;

			fields[f].p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			memset(out, 0xa5, sizeof(out));
			r = vmc_gcm_open(key, nonce, aad, sizeof(aad), ct, sizeof(ct), out, tag);
			fields[f].p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			if (r == 0 && !accepted++)
				fprintf(stderr, "gcm: forgery accepted: %s bit %zu\n",
					fields[f].name, bit);
			wrong_rc += r != -EBADMSG;
			not_wiped += !all_zero(out, sizeof(out));
			n++;
		}
	}
	fprintf(stderr, "gcm: %d single-bit forgeries tried\n", n);
	EQ_(accepted, 0);
	EQ_(wrong_rc, 0);
	EQ_(not_wiped, 0);
	/* Unchanged inputs still open (the loop restored every bit). */
	OK_(vmc_gcm_open(key, nonce, aad, sizeof(aad), ct, sizeof(ct), out, tag));
	MEMEQ_(out, pt, sizeof(pt));
	/* A wrong key is the same failure. */
	key[31] ^= 1;
	FAIL_(vmc_gcm_open(key, nonce, aad, sizeof(aad), ct, sizeof(ct), out, tag), EBADMSG);
}

/* --- HKDF, HMAC, SHA-256 -------------------------------------------------- */

static void test_hkdf_rfc5869(void)
{
	/* RFC 5869 Appendix A, test cases 1, 2 and 3 (SHA-256). */
	static const struct {
		int tc;
		const char *ikm, *salt, *info, *okm;
	} tcs[] = {
		{ 1, "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "000102030405060708090a0b0c",
		  "f0f1f2f3f4f5f6f7f8f9",
		  "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
		  "34007208d5b887185865" },
		{ 2,
		  "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
		  "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
		  "404142434445464748494a4b4c4d4e4f",
		  "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
		  "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
		  "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
		  "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
		  "d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef"
		  "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
		  "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
		  "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
		  "cc30c58179ec3e87c14c01d5c1f3434f1d87" },
		{ 3, "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "", "",
		  "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
		  "9d201395faa4b61a96c8" },
	};

	for (size_t i = 0; i < sizeof(tcs) / sizeof(tcs[0]); i++) {
		uint8_t ikm[80], salt[80], info[80], okm[82], out[82];
		size_t ikmlen = vmc_test_unhex(tcs[i].ikm, ikm, sizeof(ikm));
		size_t saltlen = vmc_test_unhex(tcs[i].salt, salt, sizeof(salt));
		size_t infolen = vmc_test_unhex(tcs[i].info, info, sizeof(info));
		size_t okmlen = vmc_test_unhex(tcs[i].okm, okm, sizeof(okm));

		fprintf(stderr, "RFC 5869 test case %d\n", tcs[i].tc);
		memset(out, 0, sizeof(out));
		OK_(vmc_hkdf_sha256(ikm, ikmlen, saltlen ? salt : NULL, saltlen, info, infolen,
				    out, okmlen));
		MEMEQ_(out, okm, okmlen);
	}

	/* Longer and odd output lengths against OpenSSL; the limit is 255 blocks. */
	{
		uint8_t ikm[32], ref[255 * 32], *out = malloc(255 * 32 + 1);

		REQUIRE_(out);
		ref_random(ikm, sizeof(ikm));
		for (size_t len = 1; len <= 255 * 32; len = len * 3 + 1) {
			ref_hkdf_sha256(ikm, sizeof(ikm), NULL, 0, "ctx", 3, ref, len);
			OK_(vmc_hkdf_sha256(ikm, sizeof(ikm), NULL, 0, "ctx", 3, out, len));
			MEMEQ_(out, ref, len);
		}
		ref_hkdf_sha256(ikm, sizeof(ikm), NULL, 0, "ctx", 3, ref, 255 * 32);
		OK_(vmc_hkdf_sha256(ikm, sizeof(ikm), NULL, 0, "ctx", 3, out, 255 * 32));
		MEMEQ_(out, ref, 255 * 32);
		FAIL_(vmc_hkdf_sha256(ikm, sizeof(ikm), NULL, 0, "ctx", 3, out, 255 * 32 + 1),
		      EINVAL);
		free(out);
	}
}

static void test_hmac_sha256(void)
{
	/* RFC 4231 section 4.2 and 4.3: test cases 1 and 2. */
	uint8_t key1[20], out[32], want[32], ref[32];

	memset(key1, 0x0b, sizeof(key1));
	OK_(vmc_hmac_sha256(key1, sizeof(key1), "Hi There", 8, out));
	vmc_test_unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", want,
		       sizeof(want));
	MEMEQ_(out, want, 32);

	OK_(vmc_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, out));
	vmc_test_unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want,
		       sizeof(want));
	MEMEQ_(out, want, 32);

	/* A key longer than the block is hashed first (RFC 2104). */
	{
		uint8_t key[131], data[50];

		ref_random(key, sizeof(key));
		ref_random(data, sizeof(data));
		ref_hmac_sha256(key, sizeof(key), data, sizeof(data), ref);
		OK_(vmc_hmac_sha256(key, sizeof(key), data, sizeof(data), out));
		MEMEQ_(out, ref, 32);
	}

	/* An empty key is the all-zero block (RFC 2104), as OpenSSL does it. */
	ref_hmac_sha256("", 0, "abc", 3, ref);
	OK_(vmc_hmac_sha256("", 0, "abc", 3, out));
	MEMEQ_(out, ref, 32);

	/* SHA-256("abc"), FIPS 180-2 appendix B.1. */
	vmc_sha256("abc", 3, out);
	vmc_test_unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want,
		       sizeof(want));
	MEMEQ_(out, want, 32);
}

/* --- DEK ------------------------------------------------------------------ */

static void test_dek_units(void)
{
	const size_t len = 3 * 4096 + 100;
	uint8_t key[64], *pt = malloc(len), *ref = malloc(len), *buf = malloc(len);
	struct vmc_dek *d = NULL;

	REQUIRE_(pt && ref && buf);
	random_xts_key(key);
	OK_(vmc_dek_new(&d, key));
	REQUIRE_(d);

	/* 3 whole units and a 100-byte tail, starting at unit 7. */
	ref_random(pt, len);
	for (size_t u = 0; u < 4; u++) {
		size_t n = u < 3 ? 4096 : 100;

		ref_unit(true, key, 7 + u, pt + 4096 * u, ref + 4096 * u, n);
	}
	memcpy(buf, pt, len);
	OK_(vmc_dek_encrypt(d, 7, buf, len));
	MEMEQ_(buf, ref, len);
	OK_(vmc_dek_decrypt(d, 7, buf, len));
	MEMEQ_(buf, pt, len);

	/* A 15-byte tail (keystream rule) inside a multi-unit call. */
	for (size_t u = 0; u < 2; u++)
		ref_unit(true, key, 40 + u, pt + 4096 * u, ref + 4096 * u, u ? 15 : 4096);
	memcpy(buf, pt, 4096 + 15);
	OK_(vmc_dek_encrypt(d, 40, buf, 4096 + 15));
	MEMEQ_(buf, ref, 4096 + 15);
	OK_(vmc_dek_decrypt(d, 40, buf, 4096 + 15));
	MEMEQ_(buf, pt, 4096 + 15);

	/*
	 * Holes: an all-zero ciphertext unit of >= 16 bytes reads as zeros. The
	 * real XTS decryption of zeros is not zeros, so this cannot pass by luck.
	 */
	memset(buf, 0, len);
	ref_unit(false, key, 7, buf, ref, 4096);
	TRUE_(!all_zero(ref, 4096));
	OK_(vmc_dek_decrypt(d, 7, buf, len));
	TRUE_(all_zero(buf, len));
	memset(buf, 0, 16);
	OK_(vmc_dek_decrypt(d, 9, buf, 16));
	TRUE_(all_zero(buf, 16));

	/* Data, hole, data: only the hole stays zero. */
	memcpy(buf, pt, 3 * 4096);
	OK_(vmc_dek_encrypt(d, 0, buf, 3 * 4096));
	memset(buf + 4096, 0, 4096);
	OK_(vmc_dek_decrypt(d, 0, buf, 3 * 4096));
	MEMEQ_(buf, pt, 4096);
	TRUE_(all_zero(buf + 4096, 4096));
	MEMEQ_(buf + 2 * 4096, pt + 2 * 4096, 4096);

	/* One non-zero byte anywhere (here the last) makes it ciphertext again. */
	memset(buf, 0, 4096);
	buf[4095] = 1;
	memcpy(pt, buf, 4096);
	ref_unit(false, key, 5, pt, ref, 4096);
	OK_(vmc_dek_decrypt(d, 5, buf, 4096));
	MEMEQ_(buf, ref, 4096);

	/* A 1..15-byte final unit of zeros is ciphertext, never a hole. */
	for (size_t n = 1; n < 16; n++) {
		uint8_t z[16] = { 0 }, want[16];

		ref_unit(false, key, 11, z, want, n);
		TRUE_(!all_zero(want, n));
		memset(buf, 0, 4096 + n);
		OK_(vmc_dek_decrypt(d, 10, buf, 4096 + n));
		TRUE_(all_zero(buf, 4096));
		MEMEQ_(buf + 4096, want, n);
		EQ_(vmc_unit_is_hole(z, n), 0);
	}
	{
		uint8_t z[4096] = { 0 };

		EQ_(vmc_unit_is_hole(z, 16), 1);
		EQ_(vmc_unit_is_hole(z, 4096), 1);
		z[17] = 1;
		EQ_(vmc_unit_is_hole(z, 4096), 0);
		EQ_(vmc_unit_is_hole(z, 17), 1);
	}

	vmc_dek_free(d);
	memcpy(key + 32, key, 32);
	d = NULL;
	FAIL_(vmc_dek_new(&d, key), EINVAL);
	TRUE_(d == NULL);
	vmc_dek_free(NULL);
	free(pt);
	free(ref);
	free(buf);
}

static void test_dek_generate(void)
{
	uint8_t *a = vmc_secret_alloc(64), *b = vmc_secret_alloc(64);

	REQUIRE_(a && b);
	TRUE_(all_zero(a, 64));
	OK_(vmc_dek_generate(a));
	OK_(vmc_dek_generate(b));
	MEMNE_(a, b, 64);
	MEMNE_(a, a + 32, 32);
	MEMNE_(b, b + 32, 32);
	TRUE_(!all_zero(a, 32) && !all_zero(a + 32, 32));
	vmc_secret_free(a, 64);
	vmc_secret_free(b, 64);
	vmc_secret_free(NULL, 64);
}

/* Several threads share one vmc_dek: each must get its own key schedule. */
struct dek_thread {
	struct vmc_dek *d;
	const uint8_t *pt, *ct;
	int bad;
};

static void *dek_thread_main(void *arg)
{
	struct dek_thread *t = arg;
	uint8_t buf[4096];

	for (int i = 0; i < 200; i++) {
		uint64_t unit = (uint64_t)(i % 8);

		memcpy(buf, t->pt + 4096 * unit, 4096);
		t->bad += vmc_dek_encrypt(t->d, unit, buf, 4096) != 0;
		t->bad += memcmp(buf, t->ct + 4096 * unit, 4096) != 0;
		t->bad += vmc_dek_decrypt(t->d, unit, buf, 4096) != 0;
		t->bad += memcmp(buf, t->pt + 4096 * unit, 4096) != 0;
	}
	return NULL;
}

static void test_dek_threads(void)
{
	uint8_t key[64], *pt = malloc(8 * 4096), *ct = malloc(8 * 4096);
	struct dek_thread t[4];
	pthread_t th[4];
	struct vmc_dek *d = NULL;

	REQUIRE_(pt && ct);
	random_xts_key(key);
	ref_random(pt, 8 * 4096);
	for (uint64_t u = 0; u < 8; u++)
		ref_unit(true, key, u, pt + 4096 * u, ct + 4096 * u, 4096);
	OK_(vmc_dek_new(&d, key));
	REQUIRE_(d);
	for (int i = 0; i < 4; i++) {
		t[i] = (struct dek_thread){ .d = d, .pt = pt, .ct = ct };
		REQUIRE_(pthread_create(&th[i], NULL, dek_thread_main, &t[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		EQ_(t[i].bad, 0);
	}
	vmc_dek_free(d);
	free(pt);
	free(ct);
}

static void test_memeq(void)
{
	uint8_t a[64], b[64];

	ref_random(a, sizeof(a));
	memcpy(b, a, sizeof(b));
	TRUE_(vmc_memeq(a, b, sizeof(a)));
	TRUE_(vmc_memeq(a, b, 0));
	b[0] ^= 1;
	TRUE_(!vmc_memeq(a, b, sizeof(a)));
	b[0] ^= 1;
	b[63] ^= 0x80;
	TRUE_(!vmc_memeq(a, b, sizeof(a)));
	TRUE_(vmc_memeq(a, b, 63));
	b[63] ^= 0x80;
	b[31] = (uint8_t)~b[31];
	TRUE_(!vmc_memeq(a, b, sizeof(a)));
}

static void test_secret_memory(void)
{
	uint8_t *p = vmc_secret_alloc(100);

	REQUIRE_(p);
	TRUE_(all_zero(p, 100));
	memset(p, 0x5a, 100);
	vmc_wipe(p, 100);
	TRUE_(all_zero(p, 100));
	vmc_wipe(NULL, 10);
	vmc_secret_free(p, 100);
}

int main(void)
{
	REQUIRE_(vmc_crypto_init() == 0);

	test_xts_ieee1619();
	test_xts_random();
	test_xts_short_units();
	test_xts_bad_input();
	test_gcm();
	test_gcm_forgery();
	test_hkdf_rfc5869();
	test_hmac_sha256();
	test_dek_units();
	test_dek_generate();
	test_dek_threads();
	test_memeq();
	test_secret_memory();
	return vmc_test_exit("test_crypto");
}
