// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Names in text (lib/vmc_utf8.h, lib/vmc_ctlproto.c, lib/vmc_log.c): UTF-8
 * well-formedness; the name encoding of the daemon's JSON (lossless, UTF-8
 * out, the identity on UTF-8 without '%'); requests that are not UTF-8 or
 * carry arguments a verb does not take are refused without quoting raw
 * bytes; log lines escape control characters, so a name cannot start a line
 * of its own, and carry the sd-daemon priority when stderr is the journal.
 */
#include "vmc_ctlproto.h"
#include "vmc_log.h"
#include "vmc_test.h"
#include "vmc_utf8.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_utf8(void)
{
	static const struct {
		const char *s;
		bool valid;
	} v[] = {
		{ "plain ascii", true },
		{ "\xc3\xa9", true },              /* U+00E9 */
		{ "\xe6\x97\xa5", true },          /* U+65E5 */
		{ "\xf0\x9f\x94\x92", true },      /* U+1F512 */
		{ "\xef\xbf\xbf", true },          /* U+FFFF: a noncharacter, still UTF-8 */
		{ "\xf4\x8f\xbf\xbf", true },      /* U+10FFFF */
		{ "\xc2\x80", true },              /* U+0080 (C1, but UTF-8) */
		{ "\xff", false },
		{ "\xfe\xff", false },
		{ "\x80", false },                 /* a lone continuation byte */
		{ "\xc3\x28", false },
		{ "\xc0\xaf", false },             /* overlong '/' */
		{ "\xc1\xbf", false },
		{ "\xe0\x80\xaf", false },         /* overlong */
		{ "\xf0\x80\x80\xaf", false },     /* overlong */
		{ "\xed\xa0\x80", false },         /* U+D800, a surrogate */
		{ "\xed\xbf\xbf", false },         /* U+DFFF */
		{ "\xf4\x90\x80\x80", false },     /* above U+10FFFF */
		{ "\xf5\x80\x80\x80", false },
		{ "\xf8\x88\x80\x80\x80", false }, /* 5-byte forms are gone */
		{ "\xe6\x97", false },             /* truncated */
		{ "ok\xe6", false },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (vmc_utf8_valid(v[i].s, strlen(v[i].s)) != v[i].valid)
			VMC_T_FAIL("vmc_utf8_valid(vector %zu) is %d", i, !v[i].valid);
	vmc_test_checks++;
}

static void encodes_to(const char *name, const char *want)
{
	char *e = vmc_name_encode(name);

	REQUIRE_(e != NULL);
	STREQ_(e, want);
	free(e);
}

/* The JSON text of vmc_json_name(@name) is UTF-8 and decodes back to @name. */
static void round_trip(const char *name, size_t n)
{
	json_object *o = vmc_json_name(name);
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	json_object *back = json_tokener_parse(text);
	char *s = back ? strdup(json_object_get_string(back)) : NULL;
	size_t len = 0;

	TRUE_(vmc_utf8_valid(text, strlen(text)));
	REQUIRE_(s != NULL);
	OK_(vmc_name_decode(s, &len));
	EQ_(len, n);
	MEMEQ_(s, name, n);
	free(s);
	json_object_put(back);
	json_object_put(o);
}

static void test_name_encoding(void)
{
	char name[256], bad[8];
	size_t len;
	unsigned seed = 1;

	encodes_to("vm1", "vm1");
	encodes_to("VM dir \n*\\-x", "VM dir \n*\\-x"); /* JSON escapes the newline */
	encodes_to("\xc3\xbc" "n\xc3\xaf" "c\xc3\xb6" "de",
		   "\xc3\xbc" "n\xc3\xaf" "c\xc3\xb6" "de");
	encodes_to("50%", "50%25");
	encodes_to("%2f", "%252f");
	encodes_to("vm \xff\xfe", "vm %FF%FE");
	encodes_to("\xed\xa0\x80", "%ED%A0%80");
	encodes_to("\xc3\x28", "%C3(");
	encodes_to("ok\xe6\x97", "ok%E6%97");
	encodes_to("", "");
	TRUE_(vmc_json_name(NULL) == NULL);

	/* Every byte, and random names of odd bytes, come back as they were. */
	for (int b = 1; b < 256; b++)
		name[b - 1] = (char)b;
	name[255] = '\0';
	round_trip(name, 255);
	for (int i = 0; i < 2000; i++) {
		size_t n = 1 + (size_t)(rand_r(&seed) % 40);

		for (size_t k = 0; k < n; k++) {
			int r = rand_r(&seed) % 6;

			name[k] = (char)(r == 0 ? '%' : r == 1 ? 0x80 + rand_r(&seed) % 0x80 :
				  1 + rand_r(&seed) % 255);
		}
		name[n] = '\0';
		round_trip(name, n);
	}

	/* Decoding: %XX in either case; a bare '%' and %00 are refused. */
	snprintf(bad, sizeof(bad), "%%41%%ff");
	OK_(vmc_name_decode(bad, &len));
	EQ_(len, 2);
	MEMEQ_(bad, "A\xff", 2);
	static const char *const refused[] = { "%", "50%", "%4", "%zz", "%g0", "a%00b", "%0" };
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		snprintf(bad, sizeof(bad), "%s", refused[i]);
		FAIL_(vmc_name_decode(bad, &len), EINVAL);
	}
}

static void test_repair(void)
{
	json_object *o = json_tokener_parse("{\"vm\":\"x\",\"a\":[\"50%\",\"y\"]}");
	const char *text;

	REQUIRE_(o != NULL);
	json_object_object_add(o, "vm", json_object_new_string("raw \xff"));
	vmc_json_repair_utf8(o);
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	/* Only strings that were not UTF-8 change. */
	STREQ_(text, "{\"vm\":\"raw %FF\",\"a\":[\"50%\",\"y\"]}");
	json_object_put(o);
}

static int parse(const char *req, struct vmc_ctl_req *out, char *err, size_t errlen)
{
	return vmc_ctl_parse_request(req, strlen(req), out, err, errlen);
}

static void refused_request(const char *req, const char *why)
{
	struct vmc_ctl_req r;
	char err[512] = "";

	FAIL_(parse(req, &r, err, sizeof(err)), EINVAL);
	CONTAINS_(err, why);
	/* The message never quotes raw bytes: it is UTF-8 without controls. */
	TRUE_(vmc_utf8_valid(err, strlen(err)));
	for (const char *p = err; *p; p++)
		TRUE_((unsigned char)*p >= 0x20 && *p != 0x7f);
}

static void test_requests(void)
{
	struct vmc_ctl_req r;
	char err[512];
	json_object *vms;
	const char *s = NULL;

	refused_request("{\"verb\":\"status\",\"args\":{\"vm\":\"\xff\xfe\"}}\n",
			"argument \"vm\" is not valid UTF-8");
	refused_request("{\"verb\":\"status\",\"args\":{\"vm\":\"a\\u0000b\"}}\n",
			"argument \"vm\" contains a NUL");
	refused_request("{\"verb\":\"rekey\",\"args\":{\"vms\":[\"ok\",\"\xed\xa0\x80\"]}}\n",
			"argument \"vms\" is not valid UTF-8");
	refused_request("{\"verb\":\"status\",\"args\":{\"\xff\":1}}\n",
			"an argument name is not valid UTF-8");
	refused_request("{\"verb\":\"status\",\"\xc0\xaf\":1}\n", "not valid UTF-8");
	refused_request("{\"verb\":\"events\",\"args\":{\"since\":\"\x80\"}}\n",
			"argument \"since\" is not valid UTF-8");
	refused_request("{\"verb\":\"status\",\"args\":{\"vm\":\"50%\"}}\n", "%XX");
	refused_request("{\"verb\":\"lock\",\"args\":{\"vm\":\"a%00\"}}\n", "%XX");
	refused_request("{\"verb\":\"rekey\",\"args\":{\"vms\":[\"%zz\"]}}\n",
			"argument \"vms\"");

	/* "vm" and "vms" arrive encoded and come out as raw names. */
	OK_(parse("{\"verb\":\"status\",\"args\":{\"vm\":\"vm %FF%fe/50%25\"}}", &r, err,
		  sizeof(err)));
	OK_(vmc_ctl_arg_str(r.args, "vm", true, &s, err, sizeof(err)));
	STREQ_(s, "vm \xff\xfe/50%");
	vmc_ctl_req_free(&r);
	OK_(parse("{\"verb\":\"rekey\",\"args\":{\"vms\":[\"a\",\"%E6%97%A5\",7],"
		  "\"to_provider\":\"50%\"}}", &r, err, sizeof(err)));
	REQUIRE_(json_object_object_get_ex(r.args, "vms", &vms));
	STREQ_(json_object_get_string(json_object_array_get_idx(vms, 1)), "\xe6\x97\xa5");
	TRUE_(json_object_is_type(json_object_array_get_idx(vms, 2), json_type_int));
	/* Other arguments are not names: they stay as they are. */
	OK_(vmc_ctl_arg_str(r.args, "to_provider", true, &s, err, sizeof(err)));
	STREQ_(s, "50%");
	vmc_ctl_req_free(&r);
}

static void test_args(void)
{
	static const char *const status[] = { "vm", NULL }, *const none[] = { NULL };
	static const char *const encrypt[] = { "vm", "vms", "all", "policy", "home_only", NULL };
	struct vmc_ctl_req r;
	char err[512];

	OK_(parse("{\"verb\":\"status\",\"args\":{\"vmm\":\"vm1\"}}", &r, err, sizeof(err)));
	FAIL_(vmc_ctl_check_args(r.args, "status", status, err, sizeof(err)), EINVAL);
	STREQ_(err, "unknown argument \"vmm\" for status (it takes vm)");
	vmc_ctl_req_free(&r);
	OK_(parse("{\"verb\":\"encrypt\",\"args\":{\"vms\":[\"a\"],\"home-only\":true}}", &r, err,
		  sizeof(err)));
	FAIL_(vmc_ctl_check_args(r.args, "encrypt", encrypt, err, sizeof(err)), EINVAL);
	STREQ_(err, "unknown argument \"home-only\" for encrypt (it takes vm, vms, all, policy, "
		    "home_only)");
	FAIL_(vmc_ctl_check_args(r.args, "metrics", none, err, sizeof(err)), EINVAL);
	CONTAINS_(err, "it takes no arguments");
	vmc_ctl_req_free(&r);
	OK_(parse("{\"verb\":\"encrypt\",\"args\":{\"vms\":[\"a\"],\"home_only\":true}}", &r, err,
		  sizeof(err)));
	OK_(vmc_ctl_check_args(r.args, "encrypt", encrypt, err, sizeof(err)));
	vmc_ctl_req_free(&r);
	OK_(parse("{\"verb\":\"metrics\"}", &r, err, sizeof(err)));
	OK_(vmc_ctl_check_args(r.args, "metrics", none, err, sizeof(err)));
	vmc_ctl_req_free(&r);
}

static void escapes_to(const char *in, size_t outlen, const char *want)
{
	char out[256];

	EQ_(vmc_log_escape(out, outlen, in, strlen(in)), strlen(want));
	STREQ_(out, want);
}

static void test_log_escape(void)
{
	escapes_to("plain", 256, "plain");
	escapes_to("x\nvmcryptfs: error: fake", 256, "x\\x0avmcryptfs: error: fake");
	escapes_to("\r\t\x01\x7f", 256, "\\x0d\\x09\\x01\\x7f");
	escapes_to("\x1b[31mred", 256, "\\x1b[31mred");
	escapes_to("\xc2\x9b" "2J", 256, "\\xc2\\x9b2J"); /* C1 CSI */
	escapes_to("\xc3\xa9 \xe6\x97\xa5", 256, "\xc3\xa9 \xe6\x97\xa5");
	escapes_to("vm \xff\xfe", 256, "vm \\xff\\xfe");
	escapes_to("\xed\xa0\x80", 256, "\\xed\\xa0\\x80");
	/* Truncated at a whole character or escape, always terminated. */
	escapes_to("ab\ncd", 6, "ab");
	escapes_to("ab\ncd", 7, "ab\\x0a");
	escapes_to("a\xe6\x97\xa5", 4, "a");
	escapes_to("abc", 1, "");
}

/* What vmc_log(LOG_ERR, "%s", @msg) writes to stderr, with JOURNAL_STREAM
 * naming stderr (@journal), something else, or unset. */
static void log_line(const char *msg, int journal, char *out, size_t outlen)
{
	char path[] = "/tmp/vmc-test-log-XXXXXX", env[64];
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	struct stat st;
	ssize_t n;

	REQUIRE_(fd >= 0 && saved >= 0);
	unlink(path);
	dup2(fd, STDERR_FILENO);
	fstat(fd, &st);
	snprintf(env, sizeof(env), "%ju:%ju", (uintmax_t)st.st_dev,
		 (uintmax_t)st.st_ino + (journal > 0 ? 0 : 1));
	if (journal >= 0)
		setenv("JOURNAL_STREAM", env, 1);
	else
		unsetenv("JOURNAL_STREAM");
	vmc_log_set_sink(VMC_LOG_STDERR); /* checks JOURNAL_STREAM again */
	vmc_log(LOG_ERR, "%s", msg);
	vmc_log(LOG_DEBUG, "not at the default level");
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, out, outlen - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
}

static void test_log_lines(void)
{
	char line[512];

	log_line("dir x\nvmcryptfs: error: forged\n", -1, line, sizeof(line));
	STREQ_(line, "vmcryptfs: error: dir x\\x0avmcryptfs: error: forged\n");
	log_line("a\xff\x1b", 1, line, sizeof(line));
	STREQ_(line, "<3>vmcryptfs: error: a\\xff\\x1b\n");
	log_line("not the journal", 0, line, sizeof(line));
	STREQ_(line, "vmcryptfs: error: not the journal\n");
	unsetenv("JOURNAL_STREAM");
	vmc_log_set_sink(VMC_LOG_STDERR);
}

int main(void)
{
	test_utf8();
	test_name_encoding();
	test_repair();
	test_requests();
	test_args();
	test_log_escape();
	test_log_lines();
	return vmc_test_exit("test_ctlproto");
}
