// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmcryptfs: mount a directory as a datastore whose VMs are encrypted per VM,
 * by policy. This file is the lifecycle: options, start-up checks, becoming a
 * daemon, the session loop and the orderly shutdown.
 *
 *     vmcryptfs BACKING MOUNTPOINT [-o opt,...] [-f] [-d]
 *     mount -t fuse.vmcryptfs BACKING MOUNTPOINT -o ...
 *
 * Unless -f is given the process forks before anything else: the child does
 * all the work (memory locks are not inherited across fork, so key material
 * must be born in the process that keeps it) and tells the waiting parent
 * whether the mount succeeded, so the command returns only once the mount is
 * usable, or fails with the reason on stderr.
 */
#include "vmcfs.h"
#include "audit.h"
#include "ctl.h"
#include "lease.h"
#include "metrics.h"
#include "vmc_crypto.h"
#include "vmc_fault.h"
#include "vmc_log.h"
#include "vmc_paths.h"
#include "vmc_ctlproto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

struct vmcfs vmcfs;
extern const struct fuse_lowlevel_ops vmc_ll_ops;

struct vmc_opts {
	char *backing;
	char *config;
	char *keyprov_dir;
	char *log_level;
	char *ctl_socket;
	int metrics_port;
	int wait_providers;
	int probe_interval;
	char *host_id;
	double lock_lease;
	int writeback;
	double attr_timeout;
	double entry_timeout;
};

#define VMC_OPT(t, p, v) { t, offsetof(struct vmc_opts, p), v }

static const struct fuse_opt vmc_opt_spec[] = {
	VMC_OPT("config=%s", config, 0),
	VMC_OPT("keyprov_dir=%s", keyprov_dir, 0),
	VMC_OPT("log_level=%s", log_level, 0),
	VMC_OPT("ctl_socket=%s", ctl_socket, 0),
	VMC_OPT("metrics_port=%d", metrics_port, 0),
	VMC_OPT("wait_providers=%d", wait_providers, 0),
	VMC_OPT("probe_interval=%d", probe_interval, 0),
	VMC_OPT("host_id=%s", host_id, 0),
	VMC_OPT("lock_lease=%lf", lock_lease, 0),
	VMC_OPT("writeback", writeback, 1),
	VMC_OPT("nowriteback", writeback, 0),
	VMC_OPT("attr_timeout=%lf", attr_timeout, 0),
	VMC_OPT("entry_timeout=%lf", entry_timeout, 0),
	/* /etc/fstab words that mean nothing to the daemon */
	FUSE_OPT_KEY("_netdev", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nofail", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("noauto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("auto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("user", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("users", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("defaults", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_END,
};

static void usage(const char *prog)
{
	printf("usage: %s BACKING MOUNTPOINT [options]\n\n"
	       "Mount BACKING as a vmcryptfs datastore at MOUNTPOINT: VMs whose directory\n"
	       "holds a vmcrypt.policy file are encrypted per VM, beneath the guest.\n\n"
	       "vmcryptfs options:\n"
	       "    -o config=PATH         configuration file (default %s,\n"
	       "                           or the embedded default when it does not exist)\n"
	       "    -o log_level=LEVEL     error, warning, notice (default), info, debug\n"
	       "    -o writeback           use the kernel writeback cache (only for datastores\n"
	       "                           that no other host mounts)\n"
	       "    -o attr_timeout=SEC    attribute cache time (default 1)\n"
	       "    -o entry_timeout=SEC   name cache time (default 1)\n"
	       "    -o ctl_socket=PATH     control socket for vmcryptfs-ctl (default under %s)\n"
	       "    -o metrics_port=N      Prometheus metrics on http://127.0.0.1:N/metrics\n"
	       "    -o wait_providers=SEC  before mounting, wait up to SEC seconds until every\n"
	       "                           remote key provider answers its health check\n"
	       "    -o probe_interval=SEC  check remote key providers every SEC seconds\n"
	       "                           (default 60; 0: only when used)\n"
	       "    -o host_id=NAME        this host in VM lock files (default /etc/machine-id)\n"
	       "    -o lock_lease=SEC      VM lock lease: another host takes over a lock whose\n"
	       "                           heartbeat stood still this long (default 30; 0: no\n"
	       "                           VM locks, for a datastore only one host mounts)\n"
	       "    -o keyprov_dir=PATH    load key-provider plugins from PATH (testing)\n\n",
	       prog, VMC_DEFAULT_CONFIG, VMC_CTL_DEFAULT_DIR);
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct vmc_opts *o = data;

	if (key == FUSE_OPT_KEY_NONOPT && !o->backing) {
		o->backing = strdup(arg);
		return o->backing ? 0 : -1;
	}
	if (key == FUSE_OPT_KEY_OPT && !strncmp(arg, "x-", 2))
		return 0; /* x-systemd.* and friends */
	if (key == FUSE_OPT_KEY_OPT && !*arg)
		return 0; /* "-o a,,b" or "-o a," from an empty ${OPTIONS} */
	return 1;
}

/* A provider's key file must live on the host, never in the datastore. */
static int check_key_files(const char *backing)
{
	size_t blen = strlen(backing);

	for (size_t i = 0; i < vmcfs.fs_cfg->nproviders; i++) {
		const struct vmc_provider_conf *p = &vmcfs.fs_cfg->providers[i];

		for (size_t j = 0; j < p->nparams; j++) {
			char dir[PATH_MAX], real[PATH_MAX], *slash;

			if (strcmp(p->params[j].name, "key-file"))
				continue;
			snprintf(dir, sizeof(dir), "%s", p->params[j].value);
			/* The file may not exist yet: resolve the nearest existing ancestor. */
			while (!realpath(dir, real)) {
				slash = strrchr(dir, '/');
				if (!slash || slash == dir) {
					strcpy(real, "/");
					break;
				}
				*slash = '\0';
			}
			if (!strncmp(real, backing, blen) && (real[blen] == '/' || !real[blen])) {
				vmc_err("key-provider \"%s\": key-file %s is inside the backing directory "
					"%s; keys must never be stored in the datastore", p->name,
					p->params[j].value, backing);
				return -EINVAL;
			}
		}
	}
	return 0;
}

static void discard_line(void *arg, const char *line)
{
	(void)arg;
	vmc_dbg("provider check: %s", line);
}

/*
 * At boot the key server may come up after us: wait (bounded) until each
 * remote provider answers, so VMs start unlocked. A native provider has
 * nothing to wait for. Mounting goes ahead after the time-out regardless:
 * VMs of an unreachable provider are locked until it answers.
 */
static void wait_providers(int seconds)
{
	time_t deadline = time(NULL) + seconds;

	for (size_t i = 0; i < vmcfs.fs_cfg->nproviders; i++) {
		const char *name = vmcfs.fs_cfg->providers[i].name, *type, *version;
		char err[512];
		uint32_t flags;
		int r;

		if (vmc_keyring_provider_info(vmcfs.fs_keyring, name, &type, &version, &flags) ||
		    !(flags & VMC_KP_F_REMOTE))
			continue;
		for (;;) {
			r = vmc_keyring_test(vmcfs.fs_keyring, name, discard_line, NULL, err,
					     sizeof(err));
			if (!r || r == -EOPNOTSUPP) {
				vmc_notice("key provider \"%s\" is reachable", name);
				break;
			}
			if (time(NULL) >= deadline) {
				vmc_warn("key provider \"%s\" still unreachable after %d s (%s); "
					 "mounting anyway: its VMs stay locked until it answers", name,
					 seconds, err);
				break;
			}
			vmc_info("waiting for key provider \"%s\": %s", name, err);
			sleep(2);
		}
	}
}

/*
 * The health probe: every few seconds each remote provider gets its health
 * check, so a dead key server shows (status, provider_up) before a VM needs
 * a key, and a revived one ends the time its failure is remembered.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool running, stop;
	int interval;
} probe = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void probe_once(void)
{
	for (size_t i = 0; i < vmcfs.fs_cfg->nproviders; i++) {
		const char *name = vmcfs.fs_cfg->providers[i].name, *type, *version;
		char err[512], before[512];
		uint32_t flags;
		bool was_up;
		int r;

		if (vmc_keyring_provider_info(vmcfs.fs_keyring, name, &type, &version, &flags) ||
		    !(flags & VMC_KP_F_REMOTE))
			continue;
		was_up = !vmc_keyring_health(vmcfs.fs_keyring, name, before, sizeof(before));
		r = vmc_keyring_test(vmcfs.fs_keyring, name, discard_line, NULL, err, sizeof(err));
		if (r && r != -EOPNOTSUPP && was_up)
			vmc_warn("key provider \"%s\" does not answer its health check: %s", name,
				 err);
		else if (!r && !was_up)
			vmc_notice("key provider \"%s\" answers again", name);
	}
}

static void *probe_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&probe.lock);
	while (!probe.stop) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += probe.interval;
		pthread_cond_timedwait(&probe.cond, &probe.lock, &ts);
		if (probe.stop)
			break;
		pthread_mutex_unlock(&probe.lock);
		probe_once();
		pthread_mutex_lock(&probe.lock);
	}
	pthread_mutex_unlock(&probe.lock);
	return NULL;
}

static void probe_start(int interval)
{
	bool remote = false;

	for (size_t i = 0; i < vmcfs.fs_cfg->nproviders; i++) {
		const char *type, *version;
		uint32_t flags;

		remote |= !vmc_keyring_provider_info(vmcfs.fs_keyring,
						     vmcfs.fs_cfg->providers[i].name, &type,
						     &version, &flags) && (flags & VMC_KP_F_REMOTE);
	}
	if (interval <= 0 || !remote)
		return;
	probe.interval = interval;
	probe.stop = false;
	probe.running = !pthread_create(&probe.thread, NULL, probe_thread, NULL);
}

static void probe_stop(void)
{
	if (!probe.running)
		return;
	pthread_mutex_lock(&probe.lock);
	probe.stop = true;
	pthread_cond_broadcast(&probe.cond);
	pthread_mutex_unlock(&probe.lock);
	pthread_join(probe.thread, NULL);
	probe.running = false;
}

static int fs_setup(struct vmc_opts *o)
{
	char err[1024], real[PATH_MAX];
	struct stat st;
	int r, level;

	if (!realpath(o->backing, real)) {
		vmc_err("backing directory %s: %s", o->backing, strerror(errno));
		return -errno;
	}
	vmcfs.fs_backing = strdup(real);
	vmcfs.fs_root.in_fd = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (!vmcfs.fs_backing || vmcfs.fs_root.in_fd < 0 || fstat(vmcfs.fs_root.in_fd, &st)) {
		vmc_err("backing directory %s: %s", real, strerror(errno));
		return -EINVAL;
	}
	vmcfs.fs_root.in_dev = st.st_dev;
	vmcfs.fs_root.in_ino = st.st_ino;
	vmcfs.fs_root.in_type = S_IFDIR;
	vmcfs.fs_root.in_nlookup = 2; /* never forgotten */
	vmcfs.fs_backing_dev = st.st_dev;
	pthread_mutex_init(&vmcfs.fs_ino_lock, NULL);
	pthread_mutex_init(&vmcfs.fs_vm_lock, NULL);
	vmcfs.fs_attr_timeout = o->attr_timeout;
	vmcfs.fs_entry_timeout = o->entry_timeout;
	vmcfs.fs_writeback = o->writeback;
	vmcfs.fs_is_root = geteuid() == 0;
	r = vmc_inode_table_init();
	if (r)
		return r;

	r = vmc_crypto_init();
	if (r) {
		vmc_err("cannot initialise the cipher library");
		return r;
	}
	r = vmc_config_load(o->config, &vmcfs.fs_cfg, err, sizeof(err));
	if (r) {
		vmc_err("%s", err);
		return r;
	}
	level = o->log_level ? vmc_log_level_from_name(o->log_level) : vmcfs.fs_cfg->log_level;
	if (o->log_level && level < 0) {
		vmc_err("log_level \"%s\" is not one of error, warning, notice, info, debug",
			o->log_level);
		return -EINVAL;
	}
	if (vmcfs.fs_debug)
		level = LOG_DEBUG;
	if (level >= 0)
		vmc_log_set_level(level);
	r = check_key_files(real);
	if (r)
		return r;
	r = vmc_keyring_new(vmcfs.fs_cfg, o->keyprov_dir, &vmcfs.fs_keyring, err, sizeof(err));
	if (r) {
		vmc_err("%s", err);
		return r;
	}
	if (o->wait_providers > 0)
		wait_providers(o->wait_providers);
	r = vmc_lease_init(vmcfs.fs_root.in_fd, o->host_id, (unsigned)(o->lock_lease * 1000 + 0.5), err, sizeof(err));
	if (r) {
		vmc_err("%s", err);
		return r;
	}
	vmc_info("datastore %s: configuration %s, %zu key provider(s), %zu policy(ies)", real,
		 vmcfs.fs_cfg->source, vmcfs.fs_cfg->nproviders, vmcfs.fs_cfg->npolicies);
	return 0;
}

static void fs_teardown(void)
{
	probe_stop();
	vmc_ctl_stop();
	vmc_lease_fini();
	vmc_audit_stop();
	vmc_keyring_free(vmcfs.fs_keyring);
	vmc_config_free(vmcfs.fs_cfg);
	vmc_inode_table_fini();
	if (vmcfs.fs_root.in_fd > 0)
		close(vmcfs.fs_root.in_fd);
	free(vmcfs.fs_backing);
	free(vmcfs.fs_mountpoint);
}

/* Fork; the parent waits for the child's verdict and exits with it. */
static int daemon_fork(int *notify)
{
	int pfd[2];
	pid_t pid;
	char c = 1;

	if (pipe(pfd)) {
		perror("vmcryptfs: pipe");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		perror("vmcryptfs: fork");
		return -1;
	}
	if (pid > 0) {
		close(pfd[1]);
		if (read(pfd[0], &c, 1) != 1)
			c = 1; /* the child died before it could tell */
		_exit(c ? 1 : 0);
	}
	close(pfd[0]);
	setsid();
	*notify = pfd[1];
	return 0;
}

static void daemon_ready(int notify)
{
	char c = 0;
	int nul;

	if (notify < 0)
		return;
	vmc_log_set_sink(VMC_LOG_SYSLOG);
	if (chdir("/")) {
		/* harmless: every path the daemon uses is absolute */
	}
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul >= 0) {
		dup2(nul, STDIN_FILENO);
		dup2(nul, STDOUT_FILENO);
		dup2(nul, STDERR_FILENO);
		if (nul > STDERR_FILENO)
			close(nul);
	}
	if (write(notify, &c, 1) != 1) {
		/* the parent is gone; nothing to tell */
	}
	close(notify);
}

static void harden(void)
{
	struct rlimit no_core = { 0, 0 };

	/* Not dumpable: no core dumps, no ptrace by others, /proc/PID owned by root. */
	prctl(PR_SET_DUMPABLE, 0);
	setrlimit(RLIMIT_CORE, &no_core);
	/* Modes arrive with the caller's umask already applied by the kernel. */
	umask(0);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct vmc_opts opts = { .attr_timeout = 1.0, .entry_timeout = 1.0, .lock_lease = 30.0,
				 .probe_interval = 60 };
	struct fuse_cmdline_opts cmd;
	struct fuse_session *se = NULL;
	struct fuse_loop_config *lc = NULL;
	char fsname[PATH_MAX + 16];
	int notify = -1, ret = 1;

	vmc_log_set_ident("vmcryptfs");
	vmc_fault_init();
	if (fuse_opt_parse(&args, &opts, vmc_opt_spec, opt_proc) == -1)
		return 1;
	if (fuse_parse_cmdline(&args, &cmd) != 0)
		return 1;
	if (cmd.show_help) {
		usage(argv[0]);
		fuse_cmdline_help();
		fuse_lowlevel_help();
		ret = 0;
		goto out_args;
	}
	if (cmd.show_version) {
		printf("vmcryptfs %s (libfuse %s)\n", VMC_VERSION, fuse_pkgversion());
		ret = 0;
		goto out_args;
	}
	if (!opts.backing || !cmd.mountpoint) {
		fprintf(stderr, "usage: %s BACKING MOUNTPOINT [-o options]  (see %s --help)\n",
			argv[0], argv[0]);
		goto out_args;
	}
	if (opts.attr_timeout < 0 || opts.entry_timeout < 0 || opts.lock_lease < 0 ||
	    opts.lock_lease > 3600) {
		fprintf(stderr, "vmcryptfs: timeouts must not be negative (lock_lease at most 3600)\n");
		goto out_args;
	}
	vmcfs.fs_debug = cmd.debug;
	/* Always: the kernel checks permissions against the attributes we report. */
	snprintf(fsname, sizeof(fsname), "-ofsname=%s,subtype=vmcryptfs,default_permissions",
		 opts.backing);
	if (fuse_opt_insert_arg(&args, 1, fsname))
		goto out_args;

	if (!cmd.foreground && daemon_fork(&notify))
		goto out_args;
	harden();

	if (fs_setup(&opts))
		goto out_fs;
	se = fuse_session_new(&args, &vmc_ll_ops, sizeof(vmc_ll_ops), NULL);
	if (!se)
		goto out_fs;
	if (fuse_set_signal_handlers(se))
		goto out_session;
	if (fuse_session_mount(se, cmd.mountpoint)) {
		vmc_err("cannot mount at %s", cmd.mountpoint);
		goto out_signals;
	}
	vmcfs.fs_se = se;
	vmcfs.fs_mountpoint = realpath(cmd.mountpoint, NULL);
	if (vmc_audit_start(vmcfs.fs_cfg, vmcfs.fs_backing) ||
	    vmc_ctl_start(vmcfs.fs_mountpoint ? vmcfs.fs_mountpoint : cmd.mountpoint,
			  opts.ctl_socket)) {
		vmc_err("cannot start the control socket or the audit log; unmounting");
		goto out_unmount;
	}
	if (opts.metrics_port && vmc_metrics_http_start(opts.metrics_port))
		goto out_unmount;
	probe_start(opts.probe_interval);
	daemon_ready(notify); /* from here on, a daemon logs to syslog */
	notify = -1;
	vmc_notice("mounted %s at %s", vmcfs.fs_backing, cmd.mountpoint);

	if (cmd.singlethread) {
		ret = fuse_session_loop(se);
	} else {
		lc = fuse_loop_cfg_create();
		if (!lc)
			goto out_unmount;
		fuse_loop_cfg_set_clone_fd(lc, (unsigned int)cmd.clone_fd);
		if (cmd.max_idle_threads != UINT_MAX) /* UINT_MAX: not given */
			fuse_loop_cfg_set_idle_threads(lc, cmd.max_idle_threads);
		if (cmd.max_threads && cmd.max_threads <= 100000) /* UINT_MAX: not given */
			fuse_loop_cfg_set_max_threads(lc, cmd.max_threads);
		ret = fuse_session_loop_mt(se, lc);
		fuse_loop_cfg_destroy(lc);
	}
	ret = ret < 0 ? 1 : 0;
	vmc_notice("unmounting %s", cmd.mountpoint);
out_unmount:
	/* Control operations may notify the kernel through the session: stop
	 * them (they resume when re-run) before the session goes away. */
	vmc_metrics_http_stop();
	vmc_ctl_stop();
	vmcfs.fs_se = NULL;
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_fs:
	fs_teardown();
	if (notify >= 0) {
		char c = 1;

		if (write(notify, &c, 1) != 1) {
			/* the parent reports a failure anyway */
		}
		close(notify);
	}
out_args:
	free(cmd.mountpoint);
	free(opts.backing);
	free(opts.config);
	free(opts.keyprov_dir);
	free(opts.log_level);
	free(opts.ctl_socket);
	free(opts.host_id);
	fuse_opt_free_args(&args);
	return ret;
}
