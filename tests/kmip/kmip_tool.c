// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Test driver for key-provider plugins: loads one provider of a vmcryptfs
 * configuration file, the way the daemon does (libconfuse parse, dlopen of
 * vmcryptfs-keyprov-<type>.so, the host services of lib/), and runs commands
 * read from standard input against that one instance, so tests can exercise
 * connection reuse, failover and time-outs across calls. It also reaches the
 * plugin's test() operation, which the daemon does not call yet.
 *
 *     kmip_tool [-v] PLUGIN_DIR CONFIG PROVIDER  < commands
 *
 * The first output line is the result of open(); then one line per command:
 *     create LABEL   ok id=ID fp=SHA256(KEK) ms=T
 *     get ID         ok fp=SHA256(KEK) ms=T
 *     test           report: LINE (one per server), then ok ms=T
 *     list [PREFIX]  key: ID<TAB>LABEL (one per key; no TAB when it has no
 *                    label), then ok n=N ms=T
 *     sleep SECONDS
 * A failure is "err ENAME ERRNO ms=T msg=MESSAGE". Key bytes are never
 * printed, only their SHA-256. The plugin logs to stderr (-v: debug level).
 */
#include "vmc_config.h"
#include "vmc_crypto.h"
#include "vmc_log.h"
#include "vmcryptfs_keyprov.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__attribute__((format(printf, 2, 3)))
static void host_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmc_vlog(level, fmt, ap);
	va_end(ap);
}

static const struct vmc_kp_host host = {
	.abi_version = VMC_KP_ABI_VERSION,
	.struct_size = sizeof(struct vmc_kp_host),
	.log = host_log,
	.secret_alloc = vmc_secret_alloc,
	.secret_free = vmc_secret_free,
	.random = vmc_random,
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static const char *errno_name(int e)
{
	switch (e) {
	case ENOKEY: return "ENOKEY";
	case EKEYREVOKED: return "EKEYREVOKED";
	case EACCES: return "EACCES";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ETIMEDOUT: return "ETIMEDOUT";
	case ENETUNREACH: return "ENETUNREACH";
	case ECONNRESET: return "ECONNRESET";
	case EPROTO: return "EPROTO";
	case EINVAL: return "EINVAL";
	case ENOENT: return "ENOENT";
	case EBADMSG: return "EBADMSG";
	case ENOMEM: return "ENOMEM";
	case EIO: return "EIO";
	case E2BIG: return "E2BIG";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	default: return "EOTHER";
	}
}

/* One result line: "ok WHAT ms=T" or "err ENAME ERRNO ms=T msg=ERR". */
static void result(int r, double t0, const char *what, const char *err)
{
	if (r)
		printf("err %s %d ms=%.3f msg=%s\n", errno_name(-r), -r, now_ms() - t0, err);
	else
		printf("ok %s ms=%.3f\n", what, now_ms() - t0);
	fflush(stdout);
}

static void fingerprint(const uint8_t *kek, char out[65])
{
	uint8_t sum[32];

	vmc_sha256(kek, VMC_KP_KEK_LEN, sum);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", sum[i]);
}

static void report_line(void *arg, const char *line)
{
	(void)arg;
	printf("report: %s\n", line);
	fflush(stdout);
}

static int list_line(void *arg, const char *id, const char *label)
{
	(*(long *)arg)++;
	if (label)
		printf("key: %s\t%s\n", id, label);
	else
		printf("key: %s\n", id);
	return 0;
}

int main(int argc, char **argv)
{
	const struct vmc_kp_ops *ops;
	const struct vmc_provider_conf *pc;
	struct vmc_config *cfg = NULL;
	char err[512], path[PATH_MAX], line[1024];
	vmc_kp_entry_fn entry;
	void *dl, *inst = NULL;
	uint8_t *kek;
	double t0;
	int r, a = 1;

	vmc_log_set_ident("kmip_tool");
	if (argc > 1 && !strcmp(argv[1], "-v")) {
		vmc_log_set_level(LOG_DEBUG);
		a++;
	} else {
		vmc_log_set_level(LOG_INFO);
	}
	if (argc - a != 3) {
		fprintf(stderr, "usage: %s [-v] PLUGIN_DIR CONFIG PROVIDER < commands\n", argv[0]);
		return 2;
	}
	if (vmc_crypto_init())
		return 1;
	if (vmc_config_load(argv[a + 1], &cfg, err, sizeof(err))) {
		printf("err EINVAL %d ms=0 msg=%s\n", EINVAL, err);
		return 1;
	}
	pc = vmc_config_provider(cfg, argv[a + 2]);
	if (!pc) {
		printf("err EINVAL %d ms=0 msg=no provider %s\n", EINVAL, argv[a + 2]);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/vmcryptfs-keyprov-%s.so", argv[a], pc->type);
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	entry = dl ? (vmc_kp_entry_fn)dlsym(dl, VMC_KP_ENTRY_SYMBOL) : NULL;
	ops = entry ? entry() : NULL;
	if (!ops || ops->abi_version != VMC_KP_ABI_VERSION) {
		printf("err EINVAL %d ms=0 msg=cannot load %s: %s\n", EINVAL, path,
		       dl ? "no entry" : dlerror());
		return 1;
	}
	kek = vmc_secret_alloc(VMC_KP_KEK_LEN);
	if (!kek)
		return 1;

	t0 = now_ms();
	err[0] = '\0';
	r = ops->open(&host, pc->name, pc->params, pc->nparams, &inst, err);
	result(r, t0, "open", err);
	if (r)
		goto out;

	while (fgets(line, sizeof(line), stdin)) {
		char *arg, id[VMC_KP_ID_MAX], fp[65], out[VMC_KP_ID_MAX + 80];

		line[strcspn(line, "\r\n")] = '\0';
		arg = strchr(line, ' ');
		if (arg)
			*arg++ = '\0';
		err[0] = '\0';
		t0 = now_ms();
		if (!strcmp(line, "create") && arg) {
			memset(id, 0, sizeof(id));
			r = ops->create_key(inst, arg, id, kek, err);
			if (!r)
				fingerprint(kek, fp);
			snprintf(out, sizeof(out), "id=%s fp=%s", id, r ? "" : fp);
			result(r, t0, out, err);
		} else if (!strcmp(line, "get") && arg) {
			r = ops->get_key(inst, arg, kek, err);
			if (!r)
				fingerprint(kek, fp);
			snprintf(out, sizeof(out), "fp=%s", r ? "" : fp);
			result(r, t0, out, err);
		} else if (!strcmp(line, "test")) {
			r = ops->test ? ops->test(inst, report_line, NULL, err) : -ENOSYS;
			result(r, t0, "test", err);
		} else if (!strcmp(line, "list")) {
			size_t need = offsetof(struct vmc_kp_ops, list_keys) + sizeof(void *);
			long n = 0;

			if (ops->struct_size < need || !ops->list_keys)
				r = -EOPNOTSUPP;
			else
				r = ops->list_keys(inst, arg ? arg : "", list_line, &n, err);
			snprintf(out, sizeof(out), "n=%ld", n);
			result(r, t0, out, err);
		} else if (!strcmp(line, "sleep") && arg) {
			usleep((useconds_t)(atof(arg) * 1e6));
			result(0, t0, "slept", err);
		} else if (!strcmp(line, "quit")) {
			break;
		} else if (line[0]) {
			printf("err EINVAL %d ms=0 msg=unknown command %s\n", EINVAL, line);
			fflush(stdout);
		}
		vmc_wipe(kek, VMC_KP_KEK_LEN);
	}
	ops->close(inst);
out:
	vmc_secret_free(kek, VMC_KP_KEK_LEN);
	vmc_config_free(cfg);
	dlclose(dl);
	return r && !inst ? 1 : 0;
}
