// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmcryptfs-ctl: administer a mounted vmcryptfs datastore through its control
 * socket: status, encrypt / decrypt VMs, shallow and deep rekey, lock and
 * unlock, key providers, the audit trail, encryption mode.
 *
 *     vmcryptfs-ctl [-m MOUNTPOINT] [--json] VERB [ARGS]
 *
 * Every verb has --help; every verb prints human-readable text, or with
 * --json the daemon's JSON answer. Exit codes are in ctl_cli.h and the
 * manual page.
 */
#include "ctl_cli.h"
#include "vmc_backup.h"
#include "vmc_ctlproto.h"
#include "vmc_paths.h"
#include "vmc_utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

static struct {
	const char *mountpoint;
	const char *socket;
	bool json;
	bool quiet;
} g;

static char mountpoint[PATH_MAX];

/* A path of up to PATH_MAX bytes in the name encoding. */
#define CTL_REL_MAX (3 * PATH_MAX)

static const char usage_text[] =
	"usage: vmcryptfs-ctl [-m MOUNTPOINT] [-s SOCKET] [--json] VERB [ARGS]\n"
	"\n"
	"Verbs:\n"
	"  status [VMDIR]                      the datastore and its VMs\n"
	"  encrypt VMDIR...|--all [--policy NAME] [--home-only]\n"
	"                                      encrypt VMs that hold cleartext data\n"
	"  decrypt VMDIR...|--all              decrypt VMs\n"
	"  rekey VMDIR...|--all [--deep] [--provider NAME] [--to-provider NAME]\n"
	"                                      new KEK (shallow), or new data keys (--deep)\n"
	"  lock VMDIR                          forget a VM's keys\n"
	"  unlock VMDIR                        fetch a VM's key again\n"
	"  provider list|test NAME|create-native NAME\n"
	"  provider backup NAME --out FILE     password-protected export of a native key\n"
	"  provider restore FILE               import it (on a new host)\n"
	"  events [--follow] [--since TIME] [--vm VMDIR]\n"
	"                                      the audit trail\n"
	"  encryption-mode on|off [--provider NAME]\n"
	"  metrics                             counters in the Prometheus text format\n"
	"\n"
	"Options:\n"
	"  -m, --mount MOUNTPOINT   the datastore (default: the only vmcryptfs mount)\n"
	"  -s, --socket PATH        talk to this control socket directly\n"
	"  -j, --json               machine-readable output\n"
	"  -q, --quiet              no progress bar\n"
	"  -h, --help               this text; VERB --help for a verb\n"
	"  -V, --version\n";

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vmcryptfs-ctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'vmcryptfs-ctl --help'.\n");
	return CTL_EXIT_USAGE;
}

/* --- finding the datastore and VM directories -------------------------------- */

static int pick_mount(const char *hint)
{
	char mounts[64][PATH_MAX], real[PATH_MAX];
	int n;

	if (g.mountpoint) {
		if (!realpath(g.mountpoint, mountpoint)) {
			fprintf(stderr, "vmcryptfs-ctl: %s: %s\n", g.mountpoint, strerror(errno));
			return CTL_EXIT_NODAEMON;
		}
		return 0;
	}
	n = ctl_find_mounts(mounts, 64);
	if (hint && realpath(hint, real))
		for (int i = 0; i < n; i++) {
			size_t l = strlen(mounts[i]);

			if (!strncmp(real, mounts[i], l) && (real[l] == '/' || !real[l])) {
				snprintf(mountpoint, sizeof(mountpoint), "%s", mounts[i]);
				return 0;
			}
		}
	if (n == 1) {
		snprintf(mountpoint, sizeof(mountpoint), "%s", mounts[0]);
		return 0;
	}
	if (g.socket) {
		mountpoint[0] = '\0'; /* -s alone: VM directories relative to the datastore */
		return 0;
	}
	fprintf(stderr, "vmcryptfs-ctl: %s\n", n ? "several vmcryptfs datastores are mounted: "
		"choose one with -m MOUNTPOINT" : "no vmcryptfs datastore is mounted (or use -m)");
	return CTL_EXIT_NODAEMON;
}

/* @rel in the name encoding the protocol carries (vmc_ctlproto.h) into @out. */
static int vm_encode(const char *arg, const char *rel, char *out, size_t len)
{
	char *enc = vmc_name_encode(rel);

	if (!enc || strlen(enc) >= len) {
		fprintf(stderr, "vmcryptfs-ctl: %s: %s\n", arg,
			strerror(enc ? ENAMETOOLONG : ENOMEM));
		free(enc);
		return CTL_EXIT_FAIL;
	}
	memcpy(out, enc, strlen(enc) + 1);
	free(enc);
	return 0;
}

/* A VM directory argument as a path relative to the datastore, encoded. */
static int vm_rel(const char *arg, char *out, size_t len)
{
	char real[PATH_MAX], joined[PATH_MAX * 2];
	size_t l = strlen(mountpoint);

	if (!l) {
		/* No mount point known: a path relative to the datastore's root. */
		if (arg[0] == '/' || !strcmp(arg, "..") || !strncmp(arg, "../", 3) ||
		    strstr(arg, "/../")) {
			fprintf(stderr, "vmcryptfs-ctl: %s: with -s and no -m, name VM directories "
				"relative to the datastore\n", arg);
			return CTL_EXIT_USAGE;
		}
		return vm_encode(arg, arg, out, len);
	}
	if (!realpath(arg, real)) {
		snprintf(joined, sizeof(joined), "%s/%s", mountpoint, arg);
		if (arg[0] == '/' || !realpath(joined, real)) {
			fprintf(stderr, "vmcryptfs-ctl: %s: %s\n", arg, strerror(errno));
			return CTL_EXIT_NOTFOUND;
		}
	}
	if (strncmp(real, mountpoint, l) || (real[l] != '/' && real[l])) {
		snprintf(joined, sizeof(joined), "%s/%s", mountpoint, arg);
		if (arg[0] == '/' || !realpath(joined, real) || strncmp(real, mountpoint, l) ||
		    (real[l] != '/' && real[l])) {
			fprintf(stderr, "vmcryptfs-ctl: %s is not inside the datastore %s\n", arg,
				mountpoint);
			return CTL_EXIT_USAGE;
		}
	}
	return vm_encode(arg, real[l] ? real + l + 1 : ".", out, len);
}

/* --- talking to the daemon ---------------------------------------------------- */

static void print_event(void *arg, json_object *line)
{
	json_object *ev, *v, *u;
	const char *name = "?";

	if (!json_object_object_get_ex(line, "event", &ev))
		return;
	if (g.json) {
		puts(json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN));
		fflush(stdout);
		return;
	}
	ctl_display_tree(ev); /* names: no terminal controls */
	if (json_object_object_get_ex(ev, "user", &u) && json_object_object_get_ex(u, "name", &v))
		name = json_object_get_string(v);
#define F(k) (json_object_object_get_ex(ev, k, &v) ? json_object_get_string(v) : "")
	printf("%s  %-10s %-22s %-6s %s%s%s%s%s%s%s\n", F("time"), name, F("op"), F("result"),
	       F("vm"), *F("file") ? " " : "", F("file"), *F("key_to") ? " key " : "",
	       F("key_to"), *F("detail") ? " -- " : "", F("detail"));
#undef F
	fflush(stdout);
}

static int call(const char *verb, json_object *args, json_object **result, bool progress)
{
	char path[PATH_MAX], msg[4096]; /* the daemon's message, encoded: up to 3 x 1 KiB */
	json_object *req = json_object_new_object();
	int err, r;

	if (!g.socket) {
		/* A VM directory argument may have chosen the datastore already. */
		r = mountpoint[0] ? 0 : pick_mount(NULL);
		if (r) {
			json_object_put(args);
			json_object_put(req);
			return r;
		}
		ctl_socket_of(mountpoint, path, sizeof(path));
	} else {
		snprintf(path, sizeof(path), "%s", g.socket);
	}
	json_object_object_add(req, "verb", json_object_new_string(verb));
	json_object_object_add(req, "args", args);
	err = ctl_call(path, req, print_event, NULL, result, msg, sizeof(msg),
		       progress && !g.quiet && !g.json);
	json_object_put(req);
	if (err) {
		if (g.json) {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "ok", json_object_new_boolean(0));
			json_object_object_add(o, "errno", json_object_new_int(err));
			json_object_object_add(o, "error", json_object_new_string(strerror(err)));
			json_object_object_add(o, "message", json_object_new_string(msg));
			puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
			json_object_put(o);
		} else {
			char shown[4 * sizeof(msg)];

			ctl_display(shown, sizeof(shown), msg);
			fprintf(stderr, "vmcryptfs-ctl: %s: %s\n", verb, shown);
		}
		return err == ENOTCONN ? CTL_EXIT_NODAEMON : ctl_exit_code(err);
	}
	return 0;
}

static void print_json(json_object *result)
{
	puts(json_object_to_json_string_ext(result, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_NOSLASHESCAPE));
}

static const char *jget(json_object *o, const char *k)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	return json_object_get_string(v);
}

/* --- verbs -------------------------------------------------------------------- */

static bool want_help(int argc, char **argv, const char *text)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(text, stdout);
			return true;
		}
	return false;
}

static int cmd_status(int argc, char **argv)
{
	static const char help[] =
		"usage: vmcryptfs-ctl status [VMDIR]\n"
		"The datastore (backing directory, encryption mode, key providers and their\n"
		"health, control socket) and each VM: policy, encrypted, keys loaded or\n"
		"locked, KEK provider and id, open files, rekey or conversion in progress.\n";
	json_object *args = json_object_new_object(), *res = NULL, *ds, *vms;
	char rel[CTL_REL_MAX];
	int r;

	if (want_help(argc, argv, help)) {
		json_object_put(args);
		return 0;
	}
	if (argc > 2) {
		json_object_put(args);
		return usage_error("status: give at most one VM directory");
	}
	r = pick_mount(argc > 1 ? argv[1] : NULL);
	if (!r && argc > 1 && (r = vm_rel(argv[1], rel, sizeof(rel))) == 0)
		json_object_object_add(args, "vm", json_object_new_string(rel));
	if (r) {
		json_object_put(args);
		return r;
	}
	r = call("status", args, &res, false);
	if (r)
		return r;
	if (g.json) {
		print_json(res);
		json_object_put(res);
		return 0;
	}
	ctl_display_tree(res); /* names: no terminal controls */
	json_object_object_get_ex(res, "datastore", &ds);
	printf("datastore        %s\n", jget(ds, "mountpoint"));
	printf("backing          %s\n", jget(ds, "backing"));
	printf("encryption mode  %s\n", jget(ds, "encryption_mode"));
	printf("control socket   %s\n", jget(ds, "control_socket"));
	printf("configuration    %s\n", jget(ds, "configuration"));
	{
		json_object *provs;

		json_object_object_get_ex(ds, "providers", &provs);
		for (size_t i = 0; i < json_object_array_length(provs); i++) {
			json_object *p = json_object_array_get_idx(provs, i);

			printf("key provider     %s (%s)%s%s%s%s\n", jget(p, "name"), jget(p, "type"),
			       jget(p, "health") ? ": " : "", jget(p, "health") ? jget(p, "health") : "",
			       jget(p, "health_detail") ? " -- " : "",
			       jget(p, "health_detail") ? jget(p, "health_detail") : "");
		}
	}
	json_object_object_get_ex(res, "vms", &vms);
	printf("\n%-24s %-16s %-10s %-28s %-6s %s\n", "VM", "POLICY", "ENCRYPTED", "KEYS", "OPEN",
	       "KEK");
	for (size_t i = 0; i < json_object_array_length(vms); i++) {
		json_object *vm = json_object_array_get_idx(vms, i), *v;
		bool enc = json_object_object_get_ex(vm, "encrypted", &v) && json_object_get_boolean(v);
		int open = json_object_object_get_ex(vm, "open_files", &v) ? json_object_get_int(v) : 0;
		char kek[160] = "-";

		if (enc)
			snprintf(kek, sizeof(kek), "%s/%s", jget(vm, "provider"), jget(vm, "kek_id"));
		printf("%-24s %-16s %-10s %-28s %-6d %s\n", jget(vm, "vm"),
		       jget(vm, "policy") ? jget(vm, "policy") : jget(vm, "policy_error") ? "(broken)" : "-",
		       enc ? "yes" : "no", enc ? jget(vm, "keys") : "-", open, kek);
		if (jget(vm, "policy_error"))
			printf("    policy error: %s\n", jget(vm, "policy_error"));
		if (jget(vm, "lock_reason"))
			printf("    locked: %s\n", jget(vm, "lock_reason"));
		if (jget(vm, "writer") && !(json_object_object_get_ex(vm, "writer_is_this_host", &v) &&
					    json_object_get_boolean(v)))
			printf("    in use on another host: %s\n", jget(vm, "writer"));
		{
			const char *op = jget(vm, "conversion_op");
			bool running = json_object_object_get_ex(vm, "conversion_running", &v) &&
				       json_object_get_boolean(v);
			bool deep = op && !strcmp(op, "rekey-deep");

			if (json_object_object_get_ex(vm, "rekey_in_progress", &v) &&
			    json_object_get_boolean(v) && !running)
				printf("    rekey in progress to %s/%s (re-run: vmcryptfs-ctl rekey %s%s)\n",
				       jget(vm, "next_provider"), jget(vm, "next_kek_id"),
				       deep ? "--deep " : "", jget(vm, "vm"));
			if (running)
				printf("    %s running\n", op ? op : "a conversion is");
			else if (json_object_object_get_ex(vm, "conversion_in_progress", &v) &&
				 json_object_get_boolean(v))
				printf("    an interrupted %s: re-run 'vmcryptfs-ctl %s %s' to finish\n",
				       op ? op : "conversion",
				       deep ? "rekey --deep" : op ? op : "<operation>", jget(vm, "vm"));
		}
	}
	json_object_put(res);
	return 0;
}

/* Shared by encrypt, decrypt and rekey: VMDIR... or --all. */
static int vm_list_args(int argc, char **argv, int first, json_object *args)
{
	json_object *arr = json_object_new_array();
	char rel[CTL_REL_MAX];

	for (int i = first; i < argc; i++) {
		int r = vm_rel(argv[i], rel, sizeof(rel));

		if (r) {
			json_object_put(arr);
			return r;
		}
		json_object_array_add(arr, json_object_new_string(rel));
	}
	json_object_object_add(args, "vms", arr);
	return 0;
}

static int print_vm_results(json_object *res, const char *what)
{
	json_object *vms, *v;
	int failed = 0;

	if (g.json) {
		print_json(res);
	} else {
		ctl_display_tree(res);
		json_object_object_get_ex(res, "vms", &vms);
		for (size_t i = 0; i < json_object_array_length(vms); i++) {
			json_object *vm = json_object_array_get_idx(vms, i);

			if (jget(vm, "error")) {
				printf("%s: FAILED: %s\n", jget(vm, "vm"), jget(vm, "error"));
				continue;
			}
			printf("%s: %s", jget(vm, "vm"), what);
			if (json_object_object_get_ex(vm, "files", &v))
				printf(", %d file(s)", json_object_get_int(v));
			if (jget(vm, "to"))
				printf(", key %s -> %s", jget(vm, "from"), jget(vm, "to"));
			if (json_object_object_get_ex(vm, "milliseconds", &v))
				printf(", %lld ms", (long long)json_object_get_int64(v));
			putchar('\n');
		}
	}
	if (json_object_object_get_ex(res, "failed", &v))
		failed = json_object_get_int(v);
	json_object_put(res);
	return failed ? CTL_EXIT_PARTIAL : 0;
}

static int cmd_convert(int argc, char **argv, const char *verb)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "policy", required_argument, NULL, 'p' },
		{ "home-only", no_argument, NULL, 'H' },
		{ "deep", no_argument, NULL, 'd' },
		{ "provider", required_argument, NULL, 'P' },
		{ "to-provider", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char help_encrypt[] =
		"usage: vmcryptfs-ctl encrypt VMDIR...|--all [--policy NAME] [--home-only]\n"
		"Apply a storage policy to VMs that hold cleartext data: writes vmcrypt.policy\n"
		"(policy NAME, default vm-encryption; --home-only leaves disks cleartext) and\n"
		"converts every file the policy encrypts. The VMs must be powered off (no open\n"
		"files) and without snapshot delta disks; free space for a copy of the largest\n"
		"file is needed. Crash-safe: interrupted, it resumes when run again.\n"
		"--all: every top-level directory of the datastore.\n";
	static const char help_decrypt[] =
		"usage: vmcryptfs-ctl decrypt VMDIR...|--all\n"
		"Convert every encrypted file of the VMs to cleartext, then remove their\n"
		"vmcrypt.policy and key record. Same conditions and crash safety as encrypt.\n";
	static const char help_rekey[] =
		"usage: vmcryptfs-ctl rekey VMDIR...|--all [--provider NAME] [--to-provider NAME]\n"
		"                          [--deep]\n"
		"Shallow (default): a new KEK from the VM's provider (or --to-provider) re-wraps\n"
		"the VM's data keys; constant time in the amount of data, allowed while files are\n"
		"open and with snapshots. --deep: new data keys too, all data re-encrypted; the\n"
		"VM must be powered off, without snapshots. --all [--provider NAME]: every\n"
		"encrypted VM (of that provider). Interrupted, either finishes when run again.\n";
	const char *help = !strcmp(verb, "encrypt") ? help_encrypt :
			   !strcmp(verb, "decrypt") ? help_decrypt : help_rekey;
	/* The options each verb takes (the daemon refuses arguments it does not). */
	const char *takes = !strcmp(verb, "encrypt") ? "apHh" : !strcmp(verb, "decrypt") ? "ah" :
										"adPth";
	json_object *args = json_object_new_object(), *res = NULL;
	bool all = false, provider = false;
	int c, r, li;

	optind = 0; /* 0: GNU getopt re-initialises (the global parse used "+") */
	while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
		if (c != '?' && !strchr(takes, c)) {
			json_object_put(args);
			return usage_error("%s: --%s is not an option of %s", verb, opts[li].name,
					   verb);
		}
		switch (c) {
		case 'a':
			all = true;
			break;
		case 'p':
			json_object_object_add(args, "policy", json_object_new_string(optarg));
			break;
		case 'H':
			json_object_object_add(args, "home_only", json_object_new_boolean(1));
			break;
		case 'd':
			json_object_object_add(args, "deep", json_object_new_boolean(1));
			break;
		case 'P':
			json_object_object_add(args, "provider", json_object_new_string(optarg));
			provider = true;
			break;
		case 't':
			json_object_object_add(args, "to_provider", json_object_new_string(optarg));
			break;
		case 'h':
			fputs(help, stdout);
			json_object_put(args);
			return 0;
		default:
			json_object_put(args);
			return CTL_EXIT_USAGE;
		}
	}
	if (all == (optind < argc)) {
		json_object_put(args);
		return usage_error("%s: give VM directories or --all, not both or neither", verb);
	}
	if (provider && !all) {
		json_object_put(args);
		return usage_error("%s: --provider chooses VMs with --all", verb);
	}
	r = pick_mount(optind < argc ? argv[optind] : NULL);
	if (!r) {
		if (all)
			json_object_object_add(args, "all", json_object_new_boolean(1));
		else
			r = vm_list_args(argc, argv, optind, args);
	}
	if (r) {
		json_object_put(args);
		return r;
	}
	r = call(verb, args, &res, true);
	if (r)
		return r;
	return print_vm_results(res, !strcmp(verb, "encrypt") ? "encrypted" :
				     !strcmp(verb, "decrypt") ? "decrypted" : "rekeyed");
}

static int cmd_lock(int argc, char **argv, const char *verb)
{
	static const char help_lock[] =
		"usage: vmcryptfs-ctl lock VMDIR\n"
		"Forget the VM's keys from memory; its encrypted files refuse to open (ENOKEY)\n"
		"until 'vmcryptfs-ctl unlock'. The VM must be powered off.\n";
	static const char help_unlock[] =
		"usage: vmcryptfs-ctl unlock VMDIR\n"
		"Fetch the VM's key again from its provider (after a lock, or once the key\n"
		"server is back).\n";
	json_object *args = json_object_new_object(), *res = NULL;
	char rel[CTL_REL_MAX];
	int r;

	if (want_help(argc, argv, !strcmp(verb, "lock") ? help_lock : help_unlock)) {
		json_object_put(args);
		return 0;
	}
	if (argc != 2) {
		json_object_put(args);
		return usage_error("%s: give one VM directory", verb);
	}
	r = pick_mount(argv[1]);
	if (!r)
		r = vm_rel(argv[1], rel, sizeof(rel));
	if (r) {
		json_object_put(args);
		return r;
	}
	json_object_object_add(args, "vm", json_object_new_string(rel));
	r = call(verb, args, &res, false);
	if (r)
		return r;
	if (g.json) {
		print_json(res);
	} else {
		ctl_display_tree(res);
		printf("%s: %s\n", jget(res, "vm"), jget(res, "keys"));
	}
	json_object_put(res);
	return 0;
}

/* A password: the first line of @file, or asked twice on the terminal. */
static char *read_password(const char *file, bool confirm)
{
	char *pw = calloc(1, 1024), *again = NULL;
	size_t n = 0;

	if (!pw)
		return NULL;
	mlock(pw, 1024);
	if (file) {
		int fd = !strcmp(file, "-") ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
		char ch;

		if (fd < 0) {
			fprintf(stderr, "vmcryptfs-ctl: %s: %s\n", file, strerror(errno));
			free(pw);
			return NULL;
		}
		while (n < 1023 && read(fd, &ch, 1) == 1 && ch != '\n')
			pw[n++] = ch;
		if (fd != STDIN_FILENO)
			close(fd);
		pw[n] = '\0';
		return pw;
	}
	for (int round = 0; round < (confirm ? 2 : 1); round++) {
		struct termios old, quiet;
		int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
		char *dst = round ? (again = calloc(1, 1024)) : pw;
		char ch;

		if (tty < 0 || !dst) {
			fprintf(stderr, "vmcryptfs-ctl: no terminal to ask for a password: use "
				"--password-file\n");
			free(pw);
			free(again);
			return NULL;
		}
		if (write(tty, round ? "Again: " : "Password: ", round ? 7 : 10) < 0) {
			/* the prompt is a courtesy */
		}
		tcgetattr(tty, &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(tty, TCSAFLUSH, &quiet);
		n = 0;
		while (n < 1023 && read(tty, &ch, 1) == 1 && ch != '\n')
			dst[n++] = ch;
		dst[n] = '\0';
		tcsetattr(tty, TCSAFLUSH, &old);
		if (write(tty, "\n", 1) < 0) {
			/* nothing */
		}
		close(tty);
	}
	if (again && strcmp(pw, again)) {
		fprintf(stderr, "vmcryptfs-ctl: the passwords differ\n");
		explicit_bzero(pw, 1024);
		explicit_bzero(again, 1024);
		free(pw);
		free(again);
		return NULL;
	}
	if (again) {
		explicit_bzero(again, 1024);
		free(again);
	}
	return pw;
}

/* The protocol carries text: a password must be UTF-8 (false: said why). */
static bool password_is_text(const char *pw)
{
	if (vmc_utf8_valid(pw, strlen(pw)))
		return true;
	fprintf(stderr, "vmcryptfs-ctl: the password is not valid UTF-8 text\n");
	return false;
}

static void free_password(char *pw)
{
	if (pw) {
		explicit_bzero(pw, 1024);
		free(pw);
	}
}

static int cmd_provider(int argc, char **argv)
{
	static const char help[] =
		"usage: vmcryptfs-ctl provider list\n"
		"       vmcryptfs-ctl provider test NAME\n"
		"       vmcryptfs-ctl provider create-native NAME\n"
		"       vmcryptfs-ctl provider backup NAME --out FILE [--password-file FILE|-]\n"
		"       vmcryptfs-ctl provider restore FILE [--provider NAME] [--force]\n"
		"                                           [--password-file FILE|-]\n"
		"list: configured providers, their type, servers and health. test: contact the\n"
		"provider and report each server or key file. create-native: make the primary\n"
		"key of a native provider now (so it can be backed up before first use).\n"
		"backup: export a native provider's primary key encrypted under a password\n"
		"(Argon2id, AES-256-GCM). restore: import such a backup (for instance on a new\n"
		"host); every VM of that provider opens again.\n";
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "password-file", required_argument, NULL, 'w' },
		{ "provider", required_argument, NULL, 'P' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *out = NULL, *pwfile = NULL, *as = NULL, *sub;
	json_object *args = json_object_new_object(), *res = NULL;
	bool force = false;
	char *pw = NULL;
	int c, r = 0;

	optind = 0; /* 0: GNU getopt re-initialises (the global parse used "+") */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'w':
			pwfile = optarg;
			break;
		case 'P':
			as = optarg;
			break;
		case 'f':
			force = true;
			break;
		case 'h':
			fputs(help, stdout);
			json_object_put(args);
			return 0;
		default:
			json_object_put(args);
			return CTL_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		json_object_put(args);
		return usage_error("provider: say list, test, create-native, backup or restore");
	}
	sub = argv[optind];
	if (optind + (strcmp(sub, "list") ? 2 : 1) < argc) {
		json_object_put(args);
		return usage_error("provider %s: unexpected argument \"%s\"", sub,
				   argv[optind + (strcmp(sub, "list") ? 2 : 1)]);
	}
	if (!strcmp(sub, "list")) {
		r = call("provider-list", args, &res, false);
	} else if ((!strcmp(sub, "test") || !strcmp(sub, "create-native")) && optind + 1 < argc) {
		json_object_object_add(args, "name", json_object_new_string(argv[optind + 1]));
		r = call(!strcmp(sub, "test") ? "provider-test" : "provider-create-native", args,
			 &res, false);
	} else if (!strcmp(sub, "backup") && optind + 1 < argc) {
		if (!out) {
			json_object_put(args);
			return usage_error("provider backup: --out FILE is required");
		}
		pw = read_password(pwfile, !pwfile);
		if (!pw || !password_is_text(pw)) {
			free_password(pw);
			json_object_put(args);
			return CTL_EXIT_FAIL;
		}
		json_object_object_add(args, "name", json_object_new_string(argv[optind + 1]));
		json_object_object_add(args, "password", json_object_new_string(pw));
		r = call("provider-backup", args, &res, false);
		if (!r) {
			uint8_t blob[VMC_BACKUP_SIZE + 4];
			long n = vmc_base64_decode(jget(res, "backup"), blob, sizeof(blob));
			int fd = open(out, O_WRONLY | O_CREAT | (force ? O_TRUNC : O_EXCL) | O_CLOEXEC,
				      0600);

			if (n <= 0 || fd < 0 || write(fd, blob, (size_t)n) != n || fsync(fd)) {
				fprintf(stderr, "vmcryptfs-ctl: cannot write %s: %s\n", out,
					fd < 0 && errno == EEXIST ? "it exists (use --force)" :
								     strerror(errno));
				r = CTL_EXIT_FAIL;
			}
			if (fd >= 0)
				close(fd);
			json_object_object_del(res, "backup");
			json_object_object_add(res, "file", vmc_json_name(out));
		}
	} else if (!strcmp(sub, "restore") && optind + 1 < argc) {
		uint8_t blob[VMC_BACKUP_SIZE + 1];
		int fd = open(argv[optind + 1], O_RDONLY | O_CLOEXEC);

		pw = NULL;
		ssize_t n = fd >= 0 ? read(fd, blob, sizeof(blob)) : -1;
		char *b64;

		if (fd >= 0)
			close(fd);
		if (n != VMC_BACKUP_SIZE) {
			fprintf(stderr, "vmcryptfs-ctl: %s: %s\n", argv[optind + 1],
				n < 0 ? strerror(errno) : "not a vmcryptfs key backup");
			json_object_put(args);
			return n < 0 ? CTL_EXIT_NOTFOUND : CTL_EXIT_FAIL;
		}
		pw = read_password(pwfile, false);
		b64 = vmc_base64_encode(blob, (size_t)n);
		if (!pw || !b64 || !password_is_text(pw)) {
			free_password(pw);
			free(b64);
			json_object_put(args);
			return CTL_EXIT_FAIL;
		}
		json_object_object_add(args, "backup", json_object_new_string(b64));
		json_object_object_add(args, "password", json_object_new_string(pw));
		if (as)
			json_object_object_add(args, "provider", json_object_new_string(as));
		if (force)
			json_object_object_add(args, "force", json_object_new_boolean(1));
		free(b64);
		r = call("provider-restore", args, &res, false);
	} else {
		json_object_put(args);
		return usage_error("provider: unknown or incomplete subcommand \"%s\"", sub);
	}
	free_password(pw);
	if (r)
		return r;
	if (!g.json)
		ctl_display_tree(res); /* names: no terminal controls */
	if (g.json) {
		print_json(res);
	} else if (!strcmp(sub, "list")) {
		json_object *provs;

		json_object_object_get_ex(res, "providers", &provs);
		for (size_t i = 0; i < json_object_array_length(provs); i++) {
			json_object *p = json_object_array_get_idx(provs, i), *v;

			printf("%-16s %-8s %s", jget(p, "name"), jget(p, "type"), jget(p, "health"));
			if (json_object_object_get_ex(p, "server", &v))
				printf("  servers: %s", json_object_to_json_string(v));
			if (json_object_object_get_ex(p, "key-file", &v))
				printf("  key file: %s",
				       json_object_get_string(json_object_array_get_idx(v, 0)));
			putchar('\n');
		}
	} else if (!strcmp(sub, "test")) {
		json_object *lines, *v;

		json_object_object_get_ex(res, "lines", &lines);
		for (size_t i = 0; i < json_object_array_length(lines); i++)
			printf("%s\n", json_object_get_string(json_object_array_get_idx(lines, i)));
		if (json_object_object_get_ex(res, "healthy", &v) && !json_object_get_boolean(v)) {
			printf("provider %s is NOT usable: %s\n", jget(res, "provider"),
			       jget(res, "error") ? jget(res, "error") : "");
			r = CTL_EXIT_UNHEALTHY;
		} else {
			printf("provider %s is usable\n", jget(res, "provider"));
		}
	} else if (!strcmp(sub, "create-native")) {
		json_object *v;

		json_object_object_get_ex(res, "created", &v);
		printf("%s primary key %s of provider %s (%s)\n",
		       json_object_get_boolean(v) ? "created" : "existing",
		       jget(res, "primary_key_id"), jget(res, "provider"), jget(res, "key_file"));
	} else if (!strcmp(sub, "backup")) {
		printf("backup of provider %s written to %s (keep the password safe)\n",
		       jget(res, "provider"), out);
	} else {
		printf("provider %s: primary key %s restored (%s)\n", jget(res, "provider"),
		       jget(res, "primary_key_id"), jget(res, "restored"));
	}
	json_object_put(res);
	return r;
}

static int cmd_events(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "since", required_argument, NULL, 's' },
		{ "vm", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char help[] =
		"usage: vmcryptfs-ctl events [--follow] [--since TIME] [--vm VMDIR]\n"
		"The audit trail: every cryptographic operation, policy change, lock, unlock\n"
		"and refusal. TIME is an ISO 8601 UTC prefix (2026-11-22, 2026-11-22T10:00).\n"
		"--follow keeps printing new events.\n";
	json_object *args = json_object_new_object(), *res = NULL;
	char rel[CTL_REL_MAX];
	int c, r = 0;

	optind = 0; /* 0: GNU getopt re-initialises (the global parse used "+") */
	while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			json_object_object_add(args, "follow", json_object_new_boolean(1));
			break;
		case 's':
			json_object_object_add(args, "since", json_object_new_string(optarg));
			break;
		case 'v':
			r = pick_mount(optarg);
			if (!r)
				r = vm_rel(optarg, rel, sizeof(rel));
			if (!r)
				json_object_object_add(args, "vm", json_object_new_string(rel));
			break;
		case 'h':
			fputs(help, stdout);
			json_object_put(args);
			return 0;
		default:
			r = CTL_EXIT_USAGE;
		}
		if (r) {
			json_object_put(args);
			return r;
		}
	}
	if (optind < argc) {
		json_object_put(args);
		return usage_error("events: unexpected argument \"%s\"", argv[optind]);
	}
	r = call("events", args, &res, false);
	json_object_put(res);
	return r;
}

static int cmd_metrics(int argc, char **argv)
{
	static const char help[] =
		"usage: vmcryptfs-ctl metrics\n"
		"The datastore's counters in the Prometheus text format: bytes and operations\n"
		"read and written, cipher throughput, errors by kind, encrypted and locked VMs,\n"
		"key-provider calls, failures and round-trip times, rekeys and conversions.\n";
	json_object *res = NULL;
	int r;

	if (want_help(argc, argv, help))
		return 0;
	if (argc > 1)
		return usage_error("metrics: unexpected argument \"%s\"", argv[1]);
	r = call("metrics", json_object_new_object(), &res, false);
	if (r)
		return r;
	if (g.json) {
		print_json(res);
	} else {
		char *text = strdup(jget(res, "text") ? jget(res, "text") : "");
		size_t n;

		if (text && !vmc_name_decode(text, &n)) /* a document: decoded, as it is */
			fwrite(text, 1, n, stdout);
		free(text);
	}
	json_object_put(res);
	return 0;
}

static int cmd_mode(int argc, char **argv)
{
	static const char help[] =
		"usage: vmcryptfs-ctl encryption-mode on|off [--provider NAME]\n"
		"The datastore's encryption mode: on once a VM is encrypted; while on, core dumps\n"
		"written into the datastore outside VMs are encrypted under the datastore's key.\n"
		"It cannot be turned off while encrypted VMs remain.\n";
	json_object *args = json_object_new_object(), *res = NULL;
	int r;

	if (want_help(argc, argv, help)) {
		json_object_put(args);
		return 0;
	}
	if (argc < 2 || (strcmp(argv[1], "on") && strcmp(argv[1], "off"))) {
		json_object_put(args);
		return usage_error("encryption-mode: say on or off");
	}
	if (argc != 2 && (argc != 4 || strcmp(argv[2], "--provider"))) {
		json_object_put(args);
		return usage_error("encryption-mode: the only option is --provider NAME");
	}
	json_object_object_add(args, "mode", json_object_new_string(argv[1]));
	if (argc == 4)
		json_object_object_add(args, "provider", json_object_new_string(argv[3]));
	r = call("encryption-mode", args, &res, false);
	if (r)
		return r;
	if (g.json) {
		print_json(res);
	} else {
		ctl_display_tree(res);
		printf("encryption mode %s\n", jget(res, "encryption_mode"));
	}
	json_object_put(res);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mount", required_argument, NULL, 'm' },
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *verb;
	int c;

	/* Global options come before the verb. */
	while ((c = getopt_long(argc, argv, "+m:s:jqhV", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			g.mountpoint = optarg;
			break;
		case 's':
			g.socket = optarg;
			break;
		case 'j':
			g.json = true;
			break;
		case 'q':
			g.quiet = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			printf("vmcryptfs-ctl %s\n", VMC_VERSION);
			return 0;
		default:
			return CTL_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return usage_error("no verb given");
	verb = argv[optind];
	argc -= optind;
	argv += optind;
	/* Verbs also take --json after the verb. */
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--json") || !strcmp(argv[i], "-j")) {
			g.json = true;
			memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof(*argv));
			argc--;
			i--;
		}
	if (!strcmp(verb, "status"))
		return cmd_status(argc, argv);
	if (!strcmp(verb, "encrypt") || !strcmp(verb, "decrypt") || !strcmp(verb, "rekey"))
		return cmd_convert(argc, argv, verb);
	if (!strcmp(verb, "lock") || !strcmp(verb, "unlock"))
		return cmd_lock(argc, argv, verb);
	if (!strcmp(verb, "provider"))
		return cmd_provider(argc, argv);
	if (!strcmp(verb, "events"))
		return cmd_events(argc, argv);
	if (!strcmp(verb, "encryption-mode"))
		return cmd_mode(argc, argv);
	if (!strcmp(verb, "metrics"))
		return cmd_metrics(argc, argv);
	if (!strcmp(verb, "help")) {
		fputs(usage_text, stdout);
		return 0;
	}
	return usage_error("unknown verb \"%s\"", verb);
}
