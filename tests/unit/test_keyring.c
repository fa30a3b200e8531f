// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of lib/vmc_keyring.h with the real "native" key-provider plugin
 * (keyprov/native/native.c), loaded from the build tree.
 *
 * The primary key file lives in a temporary directory (never
 * /var/lib/vmcryptfs). Keys are checked against an independent derivation
 * with OpenSSL from the key file's bytes: KEK = HKDF-SHA256(primary key, salt
 * "vmcryptfs/native/v1", info = id), then the wrap and key-check keys as
 * HKDF-SHA256(KEK, no salt, "vmcryptfs/v1/dek-wrap" | "vmcryptfs/v1/key-check").
 * Also covered: the key file is created once and never replaced, missing,
 * corrupt or exposed key files give the documented errors, the plugin loader
 * refuses writable plugin directories, and failures are remembered for 2 s.
 *
 * Usage: test_keyring PLUGIN_DIR
 */
#include "vmc_config.h"
#include "vmc_crypto.h"
#include "vmc_format.h"
#include "vmc_keyring.h"
#include "vmc_ref.h"
#include "vmc_test.h"

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PLUGIN_FILE "vmcryptfs-keyprov-native.so"
#define NATIVE_SALT "vmcryptfs/native/v1"

static const char *plugin_dir;
static char tmp[] = "/tmp/vmc-unit-keyring-XXXXXX";
static char key_dir[PATH_MAX], key_path[PATH_MAX];
static char err[512];
static uint8_t orig_key[128]; /* the key file made by the first create */
static char first_id[VMC_FMT_KEKID_MAX];

static struct vmc_config *config(const char *type, const char *path, const char *extra)
{
	struct vmc_config *cfg = NULL;
	char *text = NULL;

	REQUIRE_(asprintf(&text,
			  "key-provider \"native\" {\n"
			  "\ttype = \"%s\"\n"
			  "\tkey-file = \"%s\"\n"
			  "%s"
			  "}\n"
			  "policy \"vm-encryption\" {\n"
			  "\tprovider = \"native\"\n"
			  "}\n",
			  type, path, extra) > 0);
	if (vmc_config_parse(text, "keyring-test.conf", &cfg, err, sizeof(err))) {
		fprintf(stderr, "FATAL: test configuration: %s\n", err);
		exit(1);
	}
	free(text);
	return cfg;
}

static struct vmc_keyring *keyring(void)
{
	struct vmc_config *cfg = config("native", key_path, "");
	struct vmc_keyring *kr = NULL;

	if (vmc_keyring_new(cfg, plugin_dir, &kr, err, sizeof(err))) {
		fprintf(stderr, "FATAL: vmc_keyring_new: %s\n", err);
		exit(1);
	}
	vmc_config_free(cfg);
	return kr;
}

static ssize_t read_path(const char *path, uint8_t *buf, size_t max)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, max);
	close(fd);
	return n;
}

static void write_path(const char *path, const void *buf, size_t len, mode_t mode)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
	REQUIRE_(fd >= 0);
	REQUIRE_(write(fd, buf, len) == (ssize_t)len);
	REQUIRE_(fchmod(fd, mode) == 0);
	close(fd);
}

/* The keys of KEK @id, derived by OpenSSL from the primary key file @file. */
static void expected_keys(const uint8_t file[128], const char *id, uint8_t wrap[32],
			  uint8_t check[32])
{
	uint8_t kek[32];

	ref_hkdf_sha256(file + 40, 32, NATIVE_SALT, strlen(NATIVE_SALT), id, strlen(id), kek, 32);
	ref_hkdf_sha256(kek, 32, NULL, 0, "vmcryptfs/v1/dek-wrap", 21, wrap, 32);
	ref_hkdf_sha256(kek, 32, NULL, 0, "vmcryptfs/v1/key-check", 22, check, 32);
}

static bool id_well_formed(const char *id)
{
	if (strlen(id) != 70 || strncmp(id, "nkp1.", 5) || id[37] != '.')
		return false;
	for (int i = 5; i < 70; i++)
		if (i != 37 && !strchr("0123456789abcdef", id[i]))
			return false;
	return true;
}

static void test_create_and_get(void)
{
	uint8_t file[200], again[200], sum[32], wrap[32], check[32];
	char fp[33], id2[VMC_FMT_KEKID_MAX];
	struct vmc_keyring *kr = keyring(), *kr2;
	struct vmc_kek *k = NULL, *k2 = NULL;
	struct stat st;

	TRUE_(vmc_keyring_has_provider(kr, "native"));
	TRUE_(!vmc_keyring_has_provider(kr, "nosuch"));
	/* Opening the provider does not create the key. */
	TRUE_(access(key_path, F_OK) != 0 && errno == ENOENT);

	OK_(vmc_keyring_create(kr, "native", "vm1", &k, err, sizeof(err)));
	REQUIRE_(k);
	TRUE_(id_well_formed(k->kek_id));
	STREQ_(k->kek_provider, "native");
	snprintf(first_id, sizeof(first_id), "%s", k->kek_id);

	/* The key file: 0600 in a 0700 directory, format object 3. */
	OK_(lstat(key_path, &st));
	TRUE_(S_ISREG(st.st_mode));
	EQ_(st.st_mode & 07777, 0600);
	EQ_(st.st_uid, geteuid());
	OK_(stat(key_dir, &st));
	EQ_(st.st_mode & 07777, 0700);
	EQ_(read_path(key_path, file, sizeof(file)), 128);
	MEMEQ_(file, VMC_FMT_MAGIC, 14);
	EQ_(file[14] | file[15] << 8, VMC_FMT_TYPE_NATIVE_KEY);
	EQ_(file[16] | file[17] << 8, 1);
	ref_sha256(file, 96, sum);
	MEMEQ_(file + 96, sum, 32);
	vmc_test_hex(file + 24, 16, fp);
	TRUE_(!strncmp(k->kek_id + 5, fp, 32));
	memcpy(orig_key, file, sizeof(orig_key));

	/* The derived keys, independently. */
	expected_keys(file, k->kek_id, wrap, check);
	MEMEQ_(k->kek_wrap_key, wrap, 32);
	MEMEQ_(k->kek_check_key, check, 32);

	/* Cached; then after forget; then from a fresh keyring. */
	OK_(vmc_keyring_get(kr, "native", first_id, &k2, err, sizeof(err)));
	TRUE_(k2 == k);
	vmc_kek_put(k2);
	vmc_keyring_forget(kr, "native", first_id);
	k2 = NULL;
	OK_(vmc_keyring_get(kr, "native", first_id, &k2, err, sizeof(err)));
	REQUIRE_(k2);
	TRUE_(k2 != k);
	MEMEQ_(k2->kek_wrap_key, wrap, 32);
	MEMEQ_(k2->kek_check_key, check, 32);
	vmc_kek_put(k2);
	kr2 = keyring();
	k2 = NULL;
	OK_(vmc_keyring_get(kr2, "native", first_id, &k2, err, sizeof(err)));
	REQUIRE_(k2);
	MEMEQ_(k2->kek_wrap_key, wrap, 32);
	vmc_kek_put(k2);

	/* More keys never replace the key file, from either keyring. */
	k2 = NULL;
	OK_(vmc_keyring_create(kr, "native", "vm2", &k2, err, sizeof(err)));
	REQUIRE_(k2);
	snprintf(id2, sizeof(id2), "%s", k2->kek_id);
	TRUE_(strcmp(id2, first_id) != 0);
	TRUE_(!strncmp(id2, first_id, 37)); /* same primary key */
	MEMNE_(k2->kek_wrap_key, k->kek_wrap_key, 32);
	vmc_kek_put(k2);
	k2 = NULL;
	OK_(vmc_keyring_create(kr2, "native", "vm3", &k2, err, sizeof(err)));
	vmc_kek_put(k2);
	EQ_(read_path(key_path, again, sizeof(again)), 128);
	MEMEQ_(again, file, 128);

	/* Ids the provider cannot have made. */
	FAIL_(vmc_keyring_get(kr, "native", "nkp1.short", &k2, err, sizeof(err)), ENOKEY);
	CONTAINS_(err, "not a native provider key id");
	{
		char other[VMC_FMT_KEKID_MAX];

		char ofp[33];

		snprintf(other, sizeof(other), "%s", first_id);
		other[5] = other[5] == '0' ? '1' : '0';
		snprintf(ofp, sizeof(ofp), "%.32s", other + 5);
		FAIL_(vmc_keyring_get(kr2, "native", other, &k2, err, sizeof(err)), ENOKEY);
		/* The provider's words (after the id) name both primary keys. */
		CONTAINS_(strstr(err, other) ? strstr(err, other) + strlen(other) : NULL, fp);
		CONTAINS_(strstr(err, other) ? strstr(err, other) + strlen(other) : NULL, ofp);
	}

	vmc_kek_put(k);
	vmc_keyring_free(kr);
	vmc_keyring_free(kr2);
}

static void test_missing_file(void)
{
	struct vmc_keyring *kr;
	struct vmc_kek *k = NULL;
	uint8_t file[128];
	char old_fp[33], new_fp[33];

	OK_(unlink(key_path));
	kr = keyring();
	FAIL_(vmc_keyring_get(kr, "native", first_id, &k, err, sizeof(err)), ENOENT);
	CONTAINS_(err, "missing");
	CONTAINS_(err, key_path);
	TRUE_(access(key_path, F_OK) != 0); /* get never invents a key */

	/* Creating is refused while the marker beside it remembers the key
	 * made there: a new key would leave the old VMs locked. */
	{
		char marker[PATH_MAX], fp[40] = "";

		snprintf(marker, sizeof(marker), "%s.id", key_path);
		EQ_(read_path(marker, (uint8_t *)fp, 33), 33);
		fp[32] = '\0';
		vmc_test_hex(orig_key + 24, 16, old_fp);
		STREQ_(fp, old_fp);
		FAIL_(vmc_keyring_create(kr, "native", "vm4", &k, err, sizeof(err)), ENOENT);
		CONTAINS_(err, old_fp);
		CONTAINS_(err, ".id");
		TRUE_(access(key_path, F_OK) != 0);
		/* Removing the marker on purpose allows a fresh key. */
		OK_(unlink(marker));
	}
	OK_(vmc_keyring_create(kr, "native", "vm4", &k, err, sizeof(err)));
	vmc_kek_put(k);
	EQ_(read_path(key_path, file, sizeof(file)), 128);
	MEMNE_(file + 24, orig_key + 24, 16);

	/* The old id names the old primary key: -ENOKEY naming both. */
	vmc_keyring_forget(kr, "native", first_id); /* drop the remembered -ENOENT */
	FAIL_(vmc_keyring_get(kr, "native", first_id, &k, err, sizeof(err)), ENOKEY);
	memcpy(old_fp, first_id + 5, 32);
	old_fp[32] = '\0';
	vmc_test_hex(file + 24, 16, new_fp);
	/* The provider's words (after the id) name both primary keys. */
	CONTAINS_(strstr(err, first_id) ? strstr(err, first_id) + strlen(first_id) : NULL,
		  old_fp);
	CONTAINS_(strstr(err, first_id) ? strstr(err, first_id) + strlen(first_id) : NULL,
		  new_fp);
	vmc_keyring_free(kr);

	/* Put the original key back for the next tests. */
	write_path(key_path, orig_key, 128, 0600);
}

/* A damaged or exposed key file: @want from get and create; the file is kept. */
static void key_file_case(const char *what, const uint8_t *bytes, size_t len, mode_t mode,
			  int want)
{
	uint8_t before[200], after[200];
	struct vmc_keyring *kr;
	struct vmc_kek *k = NULL;
	ssize_t n;
	struct stat st;

	fprintf(stderr, "key file case: %s\n", what);
	write_path(key_path, bytes, len, mode);
	n = read_path(key_path, before, sizeof(before));
	kr = keyring();
	FAIL_(vmc_keyring_get(kr, "native", first_id, &k, err, sizeof(err)), want);
	CONTAINS_(err, key_path);
	vmc_keyring_forget(kr, "native", first_id);
	FAIL_(vmc_keyring_create(kr, "native", "vm5", &k, err, sizeof(err)), want);
	CONTAINS_(err, key_path);
	EQ_(read_path(key_path, after, sizeof(after)), n);
	MEMEQ_(after, before, (size_t)n);
	OK_(stat(key_path, &st));
	EQ_(st.st_mode & 07777, mode);
	vmc_keyring_free(kr);
}

static void test_bad_key_files(void)
{
	uint8_t bad[200];
	struct vmc_keyring *kr;
	struct vmc_kek *k = NULL;

	memcpy(bad, orig_key, 128);
	bad[50] ^= 0x01;
	key_file_case("one bit flipped in the key", bad, 128, 0600, EBADMSG);
	memcpy(bad, orig_key, 128);
	bad[3] ^= 0x80;
	key_file_case("bad magic", bad, 128, 0600, EBADMSG);
	memcpy(bad, orig_key, 128);
	bad[16] = 2;
	ref_sha256(bad, 96, bad + 96);
	key_file_case("version 2 with a valid checksum", bad, 128, 0600, EBADMSG);
	key_file_case("mode 0644", orig_key, 128, 0644, EACCES);
	key_file_case("mode 0640", orig_key, 128, 0640, EACCES);
	key_file_case("127 bytes", orig_key, 127, 0600, EBADMSG);
	memcpy(bad, orig_key, 128);
	bad[128] = 0;
	key_file_case("129 bytes", bad, 129, 0600, EBADMSG);
	key_file_case("empty", orig_key, 0, 0600, EBADMSG);

	/* A symlink at the key file's name is not followed. */
	{
		char target[PATH_MAX];

		snprintf(target, sizeof(target), "%s/real.key", key_dir);
		write_path(target, orig_key, 128, 0600);
		unlink(key_path);
		OK_(symlink(target, key_path));
		kr = keyring();
		FAIL_(vmc_keyring_get(kr, "native", first_id, &k, err, sizeof(err)), EACCES);
		vmc_keyring_free(kr);
		unlink(key_path);
		unlink(target);
	}

	/* The good file again: it works, so the cases above failed for their reason. */
	write_path(key_path, orig_key, 128, 0600);
	kr = keyring();
	OK_(vmc_keyring_get(kr, "native", first_id, &k, err, sizeof(err)));
	vmc_kek_put(k);
	vmc_keyring_free(kr);
}

static int keyring_new_error(const char *type, const char *path, const char *extra,
			     const char *dir)
{
	struct vmc_config *cfg = config(type, path, extra);
	struct vmc_keyring *kr = NULL;
	int r;

	err[0] = '\0';
	r = vmc_keyring_new(cfg, dir, &kr, err, sizeof(err));
	vmc_config_free(cfg);
	if (!r)
		vmc_keyring_free(kr);
	return r;
}

static void copy_plugin(const char *to)
{
	char from[PATH_MAX];
	static uint8_t buf[4 << 20];
	ssize_t n;

	snprintf(from, sizeof(from), "%s/" PLUGIN_FILE, plugin_dir);
	n = read_path(from, buf, sizeof(buf));
	REQUIRE_(n > 0 && (size_t)n < sizeof(buf));
	write_path(to, buf, (size_t)n, 0755);
}

static void test_provider_errors(void)
{
	char pdir[PATH_MAX], pfile[PATH_MAX], bogus[PATH_MAX];
	struct vmc_keyring *kr = keyring();
	struct vmc_config *cfg;
	struct vmc_kek *k = NULL;

	FAIL_(vmc_keyring_get(kr, "nosuch", first_id, &k, err, sizeof(err)), ENOKEY);
	CONTAINS_(err, "nosuch");
	FAIL_(vmc_keyring_create(kr, "nosuch", "x", &k, err, sizeof(err)), ENOKEY);
	CONTAINS_(err, "nosuch");
	vmc_keyring_free(kr);

	/* A provider type without a plugin. */
	FAIL_(keyring_new_error("nosuch", key_path, "", plugin_dir), ENOENT);
	CONTAINS_(err, "vmcryptfs-keyprov-nosuch.so");
	/* Options the native provider does not know; a relative key file. */
	FAIL_(keyring_new_error("native", key_path, "\tcolour = \"blue\"\n", plugin_dir), EINVAL);
	CONTAINS_(err, "colour");
	FAIL_(keyring_new_error("native", "default.key", "", plugin_dir), EINVAL);
	CONTAINS_(err, "key-file");
	/* The plugin directory must be absolute. */
	FAIL_(keyring_new_error("native", key_path, "", "plugins"), EINVAL);

	/* A private copy of the plugin loads; group- or world-writable, it does not. */
	snprintf(pdir, sizeof(pdir), "%s/plugins", tmp);
	snprintf(pfile, sizeof(pfile), "%s/" PLUGIN_FILE, pdir);
	REQUIRE_(mkdir(pdir, 0700) == 0);
	copy_plugin(pfile);
	OK_(keyring_new_error("native", key_path, "", pdir));
	OK_(chmod(pdir, 0775));
	FAIL_(keyring_new_error("native", key_path, "", pdir), EPERM);
	CONTAINS_(err, pdir);
	OK_(chmod(pdir, 0757));
	FAIL_(keyring_new_error("native", key_path, "", pdir), EPERM);
	OK_(chmod(pdir, 0755));
	OK_(chmod(pfile, 0775));
	FAIL_(keyring_new_error("native", key_path, "", pdir), EPERM);
	CONTAINS_(err, pfile);
	OK_(chmod(pfile, 0755));
	OK_(keyring_new_error("native", key_path, "", pdir));

	/* A file of the right name that is not a plugin. */
	snprintf(bogus, sizeof(bogus), "%s/vmcryptfs-keyprov-bogus.so", pdir);
	write_path(bogus, "not an ELF object\n", 18, 0755);
	FAIL_(keyring_new_error("bogus", key_path, "", pdir), ELIBBAD);
	CONTAINS_(err, bogus);

	/* No providers at all: nothing to get. */
	cfg = NULL;
	REQUIRE_(vmc_config_parse("log-level = \"info\"\n", "empty.conf", &cfg, err,
				  sizeof(err)) == 0);
	kr = NULL;
	OK_(vmc_keyring_new(cfg, plugin_dir, &kr, err, sizeof(err)));
	REQUIRE_(kr);
	FAIL_(vmc_keyring_get(kr, "native", first_id, &k, err, sizeof(err)), ENOKEY);
	vmc_keyring_free(kr);
	vmc_config_free(cfg);

	TRUE_(vmc_kp_error_transient(-EHOSTUNREACH));
	TRUE_(vmc_kp_error_transient(-ETIMEDOUT));
	TRUE_(!vmc_kp_error_transient(-ENOKEY));
	TRUE_(!vmc_kp_error_transient(-EBADMSG));
}

static double elapsed(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void test_failure_cache(void)
{
	char aside[PATH_MAX], first_err[sizeof(err)];
	uint8_t wrap[32], check[32];
	struct vmc_keyring *kr;
	struct vmc_kek *k = NULL;
	struct timespec t0, pause = { 2, 100 * 1000 * 1000 };
	int r;

	/* The provider starts without its key file (it reads it when opened). */
	snprintf(aside, sizeof(aside), "%s.aside", key_path);
	OK_(rename(key_path, aside));
	kr = keyring();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	FAIL_(vmc_keyring_get(kr, "native", first_id, &k, err, sizeof(err)), ENOENT);
	snprintf(first_err, sizeof(first_err), "%s", err);
	OK_(rename(aside, key_path));
	/* Restored, but within 2 s the remembered failure is returned. */
	r = vmc_keyring_get(kr, "native", first_id, &k, err, sizeof(err));
	if (elapsed(&t0) < 1.5) {
		FAIL_(r, ENOENT);
		STREQ_(err, first_err);
	} else {
		fprintf(stderr, "note: machine too slow to check the 2 s failure window\n");
	}
	if (!r)
		vmc_kek_put(k);
	nanosleep(&pause, NULL);
	k = NULL;
	OK_(vmc_keyring_get(kr, "native", first_id, &k, err, sizeof(err)));
	REQUIRE_(k);
	expected_keys(orig_key, first_id, wrap, check);
	MEMEQ_(k->kek_wrap_key, wrap, 32);
	vmc_kek_put(k);

	/* A key already obtained keeps working while the provider is broken. */
	OK_(rename(key_path, aside));
	k = NULL;
	OK_(vmc_keyring_get(kr, "native", first_id, &k, err, sizeof(err)));
	vmc_kek_put(k);
	OK_(rename(aside, key_path));
	vmc_keyring_free(kr);
}

/* Several threads asking one keyring for the same and new keys. */
struct kr_thread {
	struct vmc_keyring *kr;
	uint8_t wrap[32];
	int bad;
};

static void *kr_thread_main(void *arg)
{
	struct kr_thread *t = arg;

	for (int i = 0; i < 50; i++) {
		struct vmc_kek *k = NULL;
		char e[256];

		if (i % 10 == 0)
			vmc_keyring_forget(t->kr, "native", first_id);
		if (vmc_keyring_get(t->kr, "native", first_id, &k, e, sizeof(e)) ||
		    memcmp(k->kek_wrap_key, t->wrap, 32))
			t->bad++;
		vmc_kek_put(k);
		k = NULL;
		if (i % 10 == 5) {
			if (vmc_keyring_create(t->kr, "native", "t", &k, e, sizeof(e)))
				t->bad++;
			vmc_kek_put(k);
		}
	}
	return NULL;
}

static void test_threads(void)
{
	struct kr_thread t[4];
	pthread_t th[4];
	uint8_t check[32], file[128];
	struct vmc_keyring *kr = keyring();

	for (int i = 0; i < 4; i++) {
		t[i] = (struct kr_thread){ .kr = kr };
		expected_keys(orig_key, first_id, t[i].wrap, check);
		REQUIRE_(pthread_create(&th[i], NULL, kr_thread_main, &t[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		EQ_(t[i].bad, 0);
	}
	vmc_keyring_free(kr);
	EQ_(read_path(key_path, file, sizeof(file)), 128);
	MEMEQ_(file, orig_key, 128);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Remove the temporary directory however the program ends. */
static void cleanup(void)
{
	nftw(tmp, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv)
{
	char probe[PATH_MAX];

	if (argc < 2)
		SKIP_("usage: %s PLUGIN_DIR", argv[0]);
	snprintf(probe, sizeof(probe), "%s/" PLUGIN_FILE, argv[1]);
	if (access(probe, R_OK))
		SKIP_("%s: %s (build the plugin first)", probe, strerror(errno));
	plugin_dir = realpath(argv[1], NULL); /* the loader wants an absolute path */
	REQUIRE_(plugin_dir);
	REQUIRE_(vmc_crypto_init() == 0);
	REQUIRE_(mkdtemp(tmp));
	atexit(cleanup);
	snprintf(key_dir, sizeof(key_dir), "%s/k", tmp);
	snprintf(key_path, sizeof(key_path), "%s/default.key", key_dir);

	test_create_and_get();
	test_missing_file();
	test_bad_key_files();
	test_provider_errors();
	test_failure_cache();
	test_threads();

	free((char *)plugin_dir);
	return vmc_test_exit("test_keyring");
}
