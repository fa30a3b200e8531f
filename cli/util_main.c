// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmcryptfs-util: look at a datastore's backing directory without a daemon,
 * in the spirit of ESXi's crypto-util: describe and decrypt encrypted files
 * (envelope), scan a datastore for compliance with its policies, list the
 * key-encryption keys it depends on (keys), and recover or hand over core
 * dumps (coredump).
 *
 *     vmcryptfs-util [--config PATH] [--keyprov-dir DIR] [--json] VERB [ARGS]
 *
 * Read-only on the backing store: no verb writes there (outputs go where
 * the caller says). Key providers are contacted only by the verbs that need
 * keys (extract, export, --verify). Exit codes: util_cli.h and the manual
 * page; every error is one line saying what failed.
 */
#include "util_cli.h"
#include "vmc_crypto.h"
#include "vmc_log.h"
#include "vmc_paths.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

struct util_opts util_g;

static struct vmc_config *util_cfg;
static struct vmc_keyring *util_kr;

static const char usage_text[] =
	"usage: vmcryptfs-util [--config PATH] [--keyprov-dir DIR] [--json] VERB [ARGS]\n"
	"\n"
	"Verbs (each has --help):\n"
	"  envelope describe [--verify] FILE...  is it encrypted, how, under which keys,\n"
	"                                        is the header intact\n"
	"  envelope extract FILE [OUT|-] [--offset N] [--length N] [--force]\n"
	"                                        decrypt a file offline\n"
	"  scan [--verify] DATASTORE             compliance report per VM\n"
	"  keys in-use DATASTORE...              the KEKs the datastores depend on\n"
	"  keys unused --provider NAME DATASTORE...\n"
	"                                        keys of a provider that nothing uses\n"
	"  coredump extract [--password-file F] FILE OUT\n"
	"                                        decrypt a core dump\n"
	"  coredump export FILE --out OUT [--password-file F]\n"
	"                                        re-encrypt a core dump under a password\n"
	"\n"
	"Options:\n"
	"  -c, --config PATH        configuration (default " VMC_DEFAULT_CONFIG ",\n"
	"                           or the embedded default when it does not exist)\n"
	"  -k, --keyprov-dir DIR    key-provider plugins (default " VMC_KEYPROV_DIR ")\n"
	"  -j, --json               machine-readable output\n"
	"  -h, --help               this text\n"
	"  -V, --version\n"
	"\n"
	"Exit status: 0 ok, 1 failure, 2 usage, 3 not compliant (scan), 4 not found,\n"
	"5 damaged header, 6 key unavailable or wrong password.\n";

int util_exit_code(int err)
{
	switch (err < 0 ? -err : err) {
	case 0:
		return UTIL_EXIT_OK;
	case ENOENT:
	case ENOTDIR:
		return UTIL_EXIT_NOTFOUND;
	case EUCLEAN:
	case EPROTONOSUPPORT:
		return UTIL_EXIT_DAMAGED;
	case ENOKEY:
	case EKEYREJECTED:
	case EKEYREVOKED:
	case EKEYEXPIRED:
		return UTIL_EXIT_KEY;
	default:
		return UTIL_EXIT_FAIL;
	}
}

void util_err(const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "vmcryptfs-util: %s\n", line);
}

int util_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vmcryptfs-util: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'vmcryptfs-util --help'.\n");
	return UTIL_EXIT_USAGE;
}

void util_print_json(json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
						       JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

int util_config(const struct vmc_config **out, char *err, size_t errlen)
{
	if (!util_cfg) {
		int r = vmc_config_load(util_g.config, &util_cfg, err, errlen);

		if (r)
			return r;
	}
	*out = util_cfg;
	return 0;
}

int util_keyring(struct vmc_keyring **out, char *err, size_t errlen)
{
	const struct vmc_config *cfg;

	if (!util_kr) {
		int r = util_config(&cfg, err, errlen);

		if (!r)
			r = vmc_keyring_new(cfg, util_g.keyprov_dir, &util_kr, err, errlen);
		if (r)
			return r;
	}
	*out = util_kr;
	return 0;
}

#define PW_MAX 1024

/* Read one line (without its newline) from @fd into @pw. */
static size_t read_line(int fd, char *pw)
{
	size_t n = 0;
	char ch;

	while (n < PW_MAX - 1 && read(fd, &ch, 1) == 1 && ch != '\n')
		pw[n++] = ch;
	if (n && pw[n - 1] == '\r')
		n--;
	pw[n] = '\0';
	return n;
}

static bool ask(const char *prompt, char *pw)
{
	struct termios old, quiet;
	int tty = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);

	if (tty < 0)
		return false;
	if (write(tty, prompt, strlen(prompt)) < 0) {
		/* the prompt is a courtesy */
	}
	tcgetattr(tty, &old);
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	tcsetattr(tty, TCSAFLUSH, &quiet);
	read_line(tty, pw);
	tcsetattr(tty, TCSAFLUSH, &old);
	if (write(tty, "\n", 1) < 0) {
		/* nothing */
	}
	close(tty);
	return true;
}

char *util_password_read(const char *file, bool confirm)
{
	char *pw = vmc_secret_alloc(PW_MAX), *again;

	if (!pw) {
		util_err("out of secure memory");
		return NULL;
	}
	if (file) {
		int fd = !strcmp(file, "-") ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			util_err("%s: %s", file, strerror(errno));
			vmc_secret_free(pw, PW_MAX);
			return NULL;
		}
		read_line(fd, pw);
		if (fd != STDIN_FILENO)
			close(fd);
	} else if (!ask("Password: ", pw)) {
		util_err("no terminal to ask for a password: use --password-file FILE");
		vmc_secret_free(pw, PW_MAX);
		return NULL;
	} else if (confirm) {
		again = vmc_secret_alloc(PW_MAX);
		if (!again || !ask("Again: ", again) || strcmp(pw, again)) {
			util_err("the passwords differ");
			vmc_secret_free(again, PW_MAX);
			vmc_secret_free(pw, PW_MAX);
			return NULL;
		}
		vmc_secret_free(again, PW_MAX);
	}
	if (!pw[0]) {
		util_err("an empty password is not allowed");
		vmc_secret_free(pw, PW_MAX);
		return NULL;
	}
	return pw;
}

void util_password_free(char *pw)
{
	vmc_secret_free(pw, PW_MAX);
}

int util_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	if (!s[0] || s[0] == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'T': case 't': shift += 10; /* fall through */
	case 'G': case 'g': shift += 10; /* fall through */
	case 'M': case 'm': shift += 10; /* fall through */
	case 'K': case 'k': shift += 10;
		end++;
		break;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

/*
 * Take the global options out of @argv wherever they are (before or after
 * the verb), so that each verb sees only its own. Returns 0 or an exit code.
 */
static int global_options(int *argc, char **argv, bool *help, bool *version)
{
	int o = 1;

	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i], *val = NULL;
		const char **dst = NULL;

		if (!strcmp(a, "--")) {
			while (i < *argc)
				argv[o++] = argv[i++];
			break;
		}
		if (!strcmp(a, "--json") || !strcmp(a, "-j")) {
			util_g.json = true;
			continue;
		}
		if (o == 1 && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
			*help = true; /* before the verb; after it, the verb's own help */
			continue;
		}
		if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
			*version = true;
			continue;
		}
		if (!strncmp(a, "--config", 8) && (a[8] == '\0' || a[8] == '='))
			dst = &util_g.config, val = a[8] ? a + 9 : NULL;
		else if (!strcmp(a, "-c"))
			dst = &util_g.config;
		else if (!strncmp(a, "--keyprov-dir", 13) && (a[13] == '\0' || a[13] == '='))
			dst = &util_g.keyprov_dir, val = a[13] ? a + 14 : NULL;
		else if (!strcmp(a, "-k"))
			dst = &util_g.keyprov_dir;
		if (!dst) {
			argv[o++] = argv[i];
			continue;
		}
		if (!val) {
			if (i + 1 >= *argc)
				return util_usage_error("%s needs an argument", a);
			val = argv[++i];
		}
		*dst = val;
	}
	argv[o] = NULL;
	*argc = o;
	return 0;
}

int main(int argc, char **argv)
{
	bool help = false, version = false;
	const char *verb;
	int r;

	vmc_log_set_ident("vmcryptfs-util");
	vmc_log_set_level(LOG_WARNING); /* plugins log through the host: warnings and up */
	r = global_options(&argc, argv, &help, &version);
	if (r)
		return r;
	if (version) {
		printf("vmcryptfs-util %s\n", VMC_VERSION);
		return 0;
	}
	if (help || argc < 2 || !strcmp(argv[1], "help")) {
		if (!help && argc < 2)
			return util_usage_error("no verb given");
		fputs(usage_text, stdout);
		return 0;
	}
	if (util_g.keyprov_dir && util_g.keyprov_dir[0] != '/')
		return util_usage_error("--keyprov-dir must be an absolute path");
	if (vmc_crypto_init()) {
		util_err("cannot initialise libgcrypt");
		return UTIL_EXIT_FAIL;
	}
	verb = argv[1];
	argc--;
	argv++;
	if (!strcmp(verb, "envelope"))
		r = util_cmd_envelope(argc, argv);
	else if (!strcmp(verb, "scan"))
		r = util_cmd_scan(argc, argv);
	else if (!strcmp(verb, "keys"))
		r = util_cmd_keys(argc, argv);
	else if (!strcmp(verb, "coredump"))
		r = util_cmd_coredump(argc, argv);
	else
		r = util_usage_error("unknown verb \"%s\"", verb);
	vmc_keyring_free(util_kr);
	vmc_config_free(util_cfg);
	return r;
}
