// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of lib/vmc_config.h: the daemon configuration and the per-VM
 * policy file. The embedded default and a full configuration decode to the
 * expected structs; every malformed input is -EINVAL with a message of the
 * promised form "FILE:LINE: ..." naming the file it was given and the line of
 * the mistake; random garbage never crashes the parser; and parsing is safe
 * from several threads at once (libconfuse itself is not).
 */
#include "vmc_config.h"
#include "vmc_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#define CONF_NAME "/etc/vmcryptfs/unit-test.conf"
#define POLICY_PATH "/datastore/vm1/vmcrypt.policy"

static const char full_text[] =
	"# vmcryptfs configuration used by the unit tests\n"
	"log-level = \"info\"\n"
	"key-provider \"native\" {\n"
	"\ttype = \"native\"\n"
	"\tkey-file = \"/srv/keys/default.key\"\n"
	"}\n"
	"key-provider \"corp-kms\" {\n"
	"\ttype = \"kmip\"\n"
	"\tserver = {\"a:5696\", \"b:5696\"}\n"
	"\tca = \"/x\"\n"
	"\tcert = \"/etc/vmcryptfs/client.pem\"\n"
	"}\n"
	"policy \"vm-encryption\" {\n"
	"\tprovider = \"native\"\n"
	"}\n"
	"policy \"home-only\" {\n"
	"\tprovider = \"corp-kms\"\n"
	"\tdisks = false\n"
	"}\n"
	"file-class \"*.iso\" {\n"
	"\tclass = \"cleartext\"\n"
	"}\n";

static int check_full(const struct vmc_config *c)
{
	const struct vmc_provider_conf *p;
	int bad = 0;

	bad += c->log_level != LOG_INFO;
	bad += c->nproviders != 2 || c->npolicies != 2 || c->nrules != 1;
	if (bad)
		return bad;
	p = &c->providers[1];
	bad += strcmp(p->name, "corp-kms") || strcmp(p->type, "kmip") || p->nparams != 4;
	if (bad)
		return bad;
	bad += strcmp(p->params[0].name, "server") || strcmp(p->params[0].value, "a:5696");
	bad += strcmp(p->params[1].name, "server") || strcmp(p->params[1].value, "b:5696");
	bad += strcmp(p->params[2].name, "ca") || strcmp(p->params[2].value, "/x");
	bad += strcmp(p->params[3].name, "cert") ||
	       strcmp(p->params[3].value, "/etc/vmcryptfs/client.pem");
	bad += strcmp(c->policies[1].name, "home-only") || c->policies[1].disks;
	bad += strcmp(c->policies[1].provider, "corp-kms");
	bad += !c->policies[0].disks;
	return bad;
}

static void test_default(void)
{
	struct vmc_config *c = NULL;
	char err[256] = "";

	OK_(vmc_config_parse(vmc_config_default_text, "(embedded default)", &c, err, sizeof(err)));
	REQUIRE_(c);
	STREQ_(c->source, "(embedded default)");
	EQ_(c->log_level, -1);
	EQ_(c->nproviders, 1);
	STREQ_(c->providers[0].name, "native");
	STREQ_(c->providers[0].type, "native");
	EQ_(c->providers[0].nparams, 1);
	STREQ_(c->providers[0].params[0].name, "key-file");
	STREQ_(c->providers[0].params[0].value, "/var/lib/vmcryptfs/native/default.key");
	EQ_(c->npolicies, 1);
	STREQ_(c->policies[0].name, "vm-encryption");
	STREQ_(c->policies[0].provider, "native");
	TRUE_(c->policies[0].disks);
	EQ_(c->nrules, 0);
	TRUE_(vmc_config_provider(c, "native") == &c->providers[0]);
	TRUE_(vmc_config_provider(c, "nosuch") == NULL);
	TRUE_(vmc_config_policy(c, "vm-encryption") == &c->policies[0]);
	TRUE_(vmc_config_policy(c, "nosuch") == NULL);
	vmc_config_free(c);
	vmc_config_free(NULL);

	/* Without a configuration file, loading gives the embedded default. */
	if (access("/etc/vmcryptfs/vmcryptfs.conf", F_OK) == 0) {
		fprintf(stderr, "note: /etc/vmcryptfs/vmcryptfs.conf exists; not loading it\n");
		return;
	}
	c = NULL;
	OK_(vmc_config_load(NULL, &c, err, sizeof(err)));
	REQUIRE_(c);
	STREQ_(c->source, "(embedded default)");
	EQ_(c->nproviders, 1);
	EQ_(c->npolicies, 1);
	vmc_config_free(c);
}

static void test_full(void)
{
	char path[] = "/tmp/vmc-unit-config-XXXXXX";
	struct vmc_config *c = NULL;
	char err[256] = "";
	int fd;

	OK_(vmc_config_parse(full_text, CONF_NAME, &c, err, sizeof(err)));
	REQUIRE_(c);
	STREQ_(c->source, CONF_NAME);
	EQ_(check_full(c), 0);
	/* Field by field, for a readable failure. */
	EQ_(c->providers[0].nparams, 1);
	STREQ_(c->providers[0].params[0].value, "/srv/keys/default.key");
	EQ_(c->providers[1].nparams, 4);
	for (size_t i = 0; i < c->providers[1].nparams && i < 4; i++) {
		static const char *const want[4][2] = {
			{ "server", "a:5696" }, { "server", "b:5696" }, { "ca", "/x" },
			{ "cert", "/etc/vmcryptfs/client.pem" },
		};

		STREQ_(c->providers[1].params[i].name, want[i][0]);
		STREQ_(c->providers[1].params[i].value, want[i][1]);
	}
	STREQ_(c->rules[0].pattern, "*.iso");
	EQ_(c->rules[0].cls, VMC_CLASS_CLEARTEXT);
	vmc_config_free(c);

	/* The same text from a file: the file's path names it. */
	fd = mkstemp(path);
	REQUIRE_(fd >= 0);
	REQUIRE_(write(fd, full_text, strlen(full_text)) == (ssize_t)strlen(full_text));
	close(fd);
	c = NULL;
	OK_(vmc_config_load(path, &c, err, sizeof(err)));
	REQUIRE_(c);
	STREQ_(c->source, path);
	EQ_(check_full(c), 0);
	vmc_config_free(c);

	/* A NUL byte means it is not a text file. */
	fd = open(path, O_WRONLY | O_TRUNC);
	REQUIRE_(fd >= 0 && write(fd, "log-level = \"info\"\n\0\n", 21) == 21);
	close(fd);
	c = NULL;
	FAIL_(vmc_config_load(path, &c, err, sizeof(err)), EINVAL);
	CONTAINS_(err, path);
	TRUE_(c == NULL);
	unlink(path);

	/* A missing file. */
	FAIL_(vmc_config_load("/nonexistent/vmcryptfs.conf", &c, err, sizeof(err)), ENOENT);
	CONTAINS_(err, "/nonexistent/vmcryptfs.conf");
	TRUE_(c == NULL);
}

/*
 * The message must start "NAME:LINE:" with LINE in [lo, hi]: the line of the
 * mistake (for a mistake in a section, any line of that section).
 */
static void check_located(const char *what, const char *err, const char *name, int lo, int hi)
{
	size_t n = strlen(name);
	int line = -1;

	vmc_test_checks++;
	if (strncmp(err, name, n) || err[n] != ':' || sscanf(err + n + 1, "%d:", &line) != 1 ||
	    line < lo || line > hi) {
		if (lo == hi)
			VMC_T_FAIL("%s: message should start \"%s:%d:\", it is \"%s\"", what, name,
				   lo, err);
		else
			VMC_T_FAIL("%s: message should start \"%s:LINE:\" with LINE in %d..%d, "
				   "it is \"%s\"", what, name, lo, hi, err);
	}
}

static const struct bad_config {
	const char *what;
	const char *text;
	int lo, hi;      /* acceptable line numbers */
	const char *say; /* the message must also contain this */
} bad_configs[] = {
	{ "unknown option at line 3",
	  "log-level = \"info\"\n"
	  "\n"
	  "colour = \"blue\"\n",
	  3, 3, "colour" },
	{ "policy naming an undefined provider",
	  "key-provider \"native\" {\n"
	  "\ttype = \"native\"\n"
	  "}\n"
	  "policy \"vm-encryption\" {\n"
	  "\tprovider = \"nosuch\"\n"
	  "}\n",
	  4, 6, "nosuch" },
	{ "duplicated provider title",
	  "key-provider \"a\" {\n"
	  "\ttype = \"native\"\n"
	  "}\n"
	  "key-provider \"a\" {\n"
	  "\ttype = \"native\"\n"
	  "}\n",
	  4, 6, "a" },
	{ "bad log-level value",
	  "\n"
	  "log-level = \"loud\"\n",
	  2, 2, "loud" },
	{ "bad file-class class",
	  "file-class \"*.iso\" {\n"
	  "\tclass = \"secret\"\n"
	  "}\n",
	  1, 3, "secret" },
	{ "key-provider without a type",
	  "log-level = \"info\"\n"
	  "key-provider \"a\" {\n"
	  "\tkey-file = \"/x\"\n"
	  "}\n",
	  2, 4, "type" },
	{ "bad provider name",
	  "key-provider \"a b\" {\n"
	  "\ttype = \"native\"\n"
	  "}\n",
	  1, 3, "a b" },
	{ "unterminated string",
	  "key-provider \"a\" {\n"
	  "\ttype = \"native\n"
	  "}\n",
	  2, 2, "" },
	{ "line numbers after comment lines",
	  "# vmcryptfs.conf\n"
	  "# a second comment\n"
	  "log-level = \"loud\"\n",
	  3, 3, "loud" },
};

static void test_malformed(void)
{
	for (size_t i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++) {
		const struct bad_config *b = &bad_configs[i];
		struct vmc_config *c = NULL;
		char err[512] = "";
		int r = vmc_config_parse(b->text, CONF_NAME, &c, err, sizeof(err));

		vmc_test_checks++;
		if (r != -EINVAL)
			VMC_T_FAIL("%s: vmc_config_parse returned %d, expected -EINVAL", b->what,
				   r);
		TRUE_(c == NULL);
		check_located(b->what, err, CONF_NAME, b->lo, b->hi);
		CONTAINS_(err, b->say);
		vmc_config_free(c);
	}
}

static int policy(const struct vmc_config *cfg, const char *text, struct vmc_vm_policy *pol,
		  char *err, size_t errlen)
{
	return vmc_policy_parse(text, POLICY_PATH, cfg, pol, err, errlen);
}

static void test_policy(void)
{
	struct vmc_config *cfg = NULL;
	struct vmc_vm_policy pol;
	char err[512] = "";

	REQUIRE_(vmc_config_parse(full_text, CONF_NAME, &cfg, err, sizeof(err)) == 0);

	OK_(policy(cfg, "policy = \"vm-encryption\"\n", &pol, err, sizeof(err)));
	STREQ_(pol.policy, "vm-encryption");
	TRUE_(!pol.disks_set);
	TRUE_(vmc_policy_encrypts_disks(cfg, &pol));

	OK_(policy(cfg, "policy = \"vm-encryption\"\ndisks = false\n", &pol, err, sizeof(err)));
	TRUE_(pol.disks_set);
	TRUE_(!pol.disks);
	TRUE_(!vmc_policy_encrypts_disks(cfg, &pol));

	OK_(policy(cfg, "policy = \"vm-encryption\"\ndisks = true\n", &pol, err, sizeof(err)));
	TRUE_(pol.disks_set && pol.disks);
	TRUE_(vmc_policy_encrypts_disks(cfg, &pol));

	/* A file cannot turn on disks that its named policy leaves out. */
	OK_(policy(cfg, "policy = \"home-only\"\ndisks = true\n", &pol, err, sizeof(err)));
	TRUE_(!vmc_policy_encrypts_disks(cfg, &pol));

	FAIL_(policy(cfg, "policy = \"gold\"\n", &pol, err, sizeof(err)), EINVAL);
	CONTAINS_(err, POLICY_PATH);
	CONTAINS_(err, "gold");

	FAIL_(policy(cfg, "polcy = \"x\"\n", &pol, err, sizeof(err)), EINVAL);
	check_located("policy file typo", err, POLICY_PATH, 1, 1);
	CONTAINS_(err, "polcy");

	FAIL_(policy(cfg, "policy = \"vm-encryption\"\ndisks = maybe\n", &pol, err, sizeof(err)),
	      EINVAL);
	check_located("policy file bad boolean", err, POLICY_PATH, 2, 2);

	FAIL_(policy(cfg, "", &pol, err, sizeof(err)), EINVAL);
	CONTAINS_(err, POLICY_PATH);
	CONTAINS_(err, "no \"policy\"");
	FAIL_(policy(cfg, "# only a comment\n\n", &pol, err, sizeof(err)), EINVAL);
	CONTAINS_(err, "no \"policy\"");

	{
		char text[200];

		snprintf(text, sizeof(text), "policy = \"%0100d\"\n", 0);
		FAIL_(policy(cfg, text, &pol, err, sizeof(err)), EINVAL);
	}
	vmc_config_free(cfg);
}

/* Garbage of every kind is refused with a message, never a crash. */
static void test_garbage(void)
{
	static const char *const fixed[] = {
		"\x01\x02{{{\"\n}}}=;;",
		"policy = {\"a\", \"b\"}\n",
		"policy = \"vm-encryption\" policy = \"vm-encryption\" {\n",
		"policy",
		"=",
		"\"",
		"{",
		"}",
		"/*",
		"policy = \"${HOME}\"\n",
		"\xff\xfe\xfd\x80\x81",
		"key-provider \"native\" { type = \"native\" }\n",
	};
	struct vmc_config *cfg = NULL;
	struct vmc_vm_policy pol;
	char err[512], text[257];
	unsigned int seed = 1;
	int wrong = 0, silent = 0, cfg_wrong = 0;

	REQUIRE_(vmc_config_parse(vmc_config_default_text, "default", &cfg, err, sizeof(err)) == 0);
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		err[0] = '\0';
		FAIL_(policy(cfg, fixed[i], &pol, err, sizeof(err)), EINVAL);
		TRUE_(err[0] != '\0');
	}
	for (int i = 0; i < 2000; i++) {
		size_t len = (size_t)(rand_r(&seed) % 256) + 1;
		struct vmc_config *c = NULL;

		for (size_t j = 0; j < len; j++) {
			/* Mostly the parser's own alphabet, with control bytes. */
			static const char alphabet[] =
				"{}=\"\\\n\t ,#/*abpolicydisksfalse01\x01\x7f";
			int v = rand_r(&seed);

			text[j] = v & 1 ? alphabet[(v >> 1) % (sizeof(alphabet) - 1)]
					: (char)((v >> 1) % 255 + 1);
		}
		text[len] = '\0';
		err[0] = '\0';
		wrong += policy(cfg, text, &pol, err, sizeof(err)) != -EINVAL;
		silent += err[0] == '\0';
		err[0] = '\0';
		if (vmc_config_parse(text, CONF_NAME, &c, err, sizeof(err)) == 0)
			vmc_config_free(c); /* may be valid: empty-ish text */
		else
			cfg_wrong += err[0] == '\0';
	}
	EQ_(wrong, 0);
	EQ_(silent, 0);
	EQ_(cfg_wrong, 0);
	vmc_config_free(cfg);
}

/* 4 threads x 200 parses of every kind, each checking its own results. */
static void *parse_thread(void *arg)
{
	int *bad = arg;

	for (int i = 0; i < 200; i++) {
		struct vmc_config *c = NULL;
		struct vmc_vm_policy pol;
		char err[512];

		switch (i % 4) {
		case 0:
			if (vmc_config_parse(full_text, CONF_NAME, &c, err, sizeof(err)) ||
			    check_full(c))
				(*bad)++;
			vmc_config_free(c);
			break;
		case 1:
			if (vmc_config_parse(bad_configs[0].text, CONF_NAME, &c, err,
					     sizeof(err)) != -EINVAL || !strstr(err, "colour") || c)
				(*bad)++;
			break;
		case 2:
			if (vmc_config_parse(vmc_config_default_text, "d", &c, err, sizeof(err)))
				(*bad)++;
			else if (policy(c, "policy = \"vm-encryption\"\ndisks = false\n", &pol, err,
					sizeof(err)) || strcmp(pol.policy, "vm-encryption") ||
				 !pol.disks_set || pol.disks)
				(*bad)++;
			vmc_config_free(c);
			break;
		case 3:
			if (vmc_config_parse(vmc_config_default_text, "d", &c, err, sizeof(err)))
				(*bad)++;
			else if (policy(c, "polcy = \"x\"\n", &pol, err, sizeof(err)) != -EINVAL ||
				 !strstr(err, "polcy"))
				(*bad)++;
			vmc_config_free(c);
			break;
		}
	}
	return NULL;
}

static void test_threads(void)
{
	pthread_t th[4];
	int bad[4] = { 0 };

	for (int i = 0; i < 4; i++)
		REQUIRE_(pthread_create(&th[i], NULL, parse_thread, &bad[i]) == 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		EQ_(bad[i], 0);
	}
}

int main(void)
{
	test_default();
	test_full();
	test_malformed();
	test_policy();
	test_garbage();
	test_threads();
	return vmc_test_exit("test_config");
}
