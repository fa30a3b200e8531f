// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The control socket of a mount (docs/CONTROL.md). One thread accepts; each
 * connection gets its own thread, which reads one request (size-limited,
 * with a time-out), identifies the caller with SO_PEERCRED, checks the verb's
 * privilege against the caller's roles, runs the verb and writes the JSON
 * lines of the answer. At most CTL_MAX_CONNS connections at once.
 *
 * The socket is created under umask 0177 (mode 0600, root only) unless the
 * configuration names a socket-group (mode 0660). Who may do what is decided
 * by roles, not by the socket mode.
 */
#include "ctl.h"
#include "audit.h"
#include "vmcfs.h"
#include "vmc_ctlproto.h"
#include "vmc_log.h"
#include "vmc_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CTL_MAX_CONNS 32
#define CTL_READ_TIMEOUT_MS 10000

struct ctl_verb {
	const char *name;
	uint32_t priv; /* required privilege, 0 for none */
	int (*fn)(struct ctl_conn *c, json_object *args, json_object *result);
	const char *const *args; /* the argument names it takes; NULL-terminated */
};

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define NO_ARGS ((const char *const[]){ NULL })

/* Each verb with its privilege and its arguments (anything else is refused:
 * a misspelt home_only must not encrypt the disks too). */
static const struct ctl_verb ctl_verbs[] = {
	{ "status", VMC_PRIV_SYSTEM_VIEW, verb_status, ARGS("vm") },
	{ "encrypt", VMC_PRIV_ENCRYPT, verb_encrypt,
	  ARGS("vm", "vms", "all", "policy", "home_only") },
	{ "decrypt", VMC_PRIV_DECRYPT, verb_decrypt, ARGS("vm", "vms", "all", "provider") },
	{ "rekey", VMC_PRIV_RECRYPT, verb_rekey,
	  ARGS("vm", "vms", "all", "provider", "deep", "to_provider") },
	{ "lock", VMC_PRIV_MANAGE_KEYS, verb_lock, ARGS("vm") },
	{ "unlock", VMC_PRIV_REGISTER_VM, verb_unlock, ARGS("vm") },
	{ "provider-list", VMC_PRIV_READ_KEY_SERVERS, verb_provider_list, NO_ARGS },
	{ "provider-test", VMC_PRIV_READ_KEY_SERVERS, verb_provider_test, ARGS("name") },
	{ "provider-create-native", VMC_PRIV_MANAGE_KEY_SERVERS, verb_provider_create_native,
	  ARGS("name") },
	{ "provider-backup", VMC_PRIV_MANAGE_KEYS, verb_provider_backup, ARGS("name", "password") },
	{ "provider-restore", VMC_PRIV_MANAGE_KEY_SERVERS, verb_provider_restore,
	  ARGS("backup", "password", "provider", "force") },
	{ "events", VMC_PRIV_SYSTEM_VIEW, verb_events, ARGS("since", "vm", "follow") },
	{ "encryption-mode", VMC_PRIV_MANAGE_KEYS, verb_encryption_mode, ARGS("mode", "provider") },
	{ "metrics", VMC_PRIV_SYSTEM_VIEW, verb_metrics, NO_ARGS },
};

/* At most this many refusal events name the VMs of one request, one each. */
#define CTL_REFUSAL_VMS_MAX 32

static struct {
	char path[PATH_MAX];
	int listen_fd;
	pthread_t accept_thread;
	bool started;
	atomic_bool stopping;
	pthread_mutex_t lock;   /* conns */
	pthread_cond_t idle;
	int conns;              /* connection threads alive; lock */
} ctl = { .listen_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER,
	  .idle = PTHREAD_COND_INITIALIZER };

const char *vmc_ctl_path(void)
{
	return ctl.path;
}

bool ctl_stopping(void)
{
	return atomic_load(&ctl.stopping);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int ctl_fail(struct ctl_conn *c, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->cc_msg, sizeof(c->cc_msg), fmt, ap);
	va_end(ap);
	return r;
}

int ctl_send(struct ctl_conn *c, json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(s);
	struct iovec iov[2] = { { (void *)s, len }, { (void *)"\n", 1 } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n = sendmsg(c->cc_fd, &mh, MSG_NOSIGNAL);

	return n == (ssize_t)(len + 1) ? 0 : -EPIPE;
}

void ctl_progress(struct ctl_conn *c, uint64_t done, uint64_t total, const char *item,
		  int items_done, int items_total, bool force)
{
	json_object *o, *p;
	uint64_t now = now_ns();

	if (!force && now - c->cc_last_ns < 200000000ull) /* at most 5 lines a second */
		return;
	c->cc_last_ns = now;
	o = json_object_new_object();
	p = json_object_new_object();
	json_object_object_add(p, "done", json_object_new_int64((int64_t)done));
	json_object_object_add(p, "total", json_object_new_int64((int64_t)total));
	if (item)
		json_object_object_add(p, "item", vmc_json_name(item));
	json_object_object_add(p, "items_done", json_object_new_int(items_done));
	json_object_object_add(p, "items_total", json_object_new_int(items_total));
	if (c->cc_vm_count > 1) { /* overall progress of a call on several VMs */
		json_object_object_add(p, "vm_index", json_object_new_int(c->cc_vm_index));
		json_object_object_add(p, "vm_count", json_object_new_int(c->cc_vm_count));
	}
	json_object_object_add(o, "progress", p);
	ctl_send(c, o);
	json_object_put(o);
}

int ctl_require(struct ctl_conn *c, uint32_t priv, const char *op, const char *vm)
{
	size_t n = vm || !c->cc_vms ? 0 : json_object_array_length(c->cc_vms);
	char detail[128];

	if (c->cc_privs & priv)
		return 0;
	snprintf(detail, sizeof(detail), "missing privilege %s", vmc_priv_name(priv));
	/* The event names the VM refused: @vm, or each the request named. */
	for (size_t i = 0; i < (n ? n : 1) && i < CTL_REFUSAL_VMS_MAX; i++)
		vmc_audit(&(struct vmc_event){
			.op = op, .uid = c->cc_uid, .result = -EACCES, .detail = detail,
			.vm = n ? json_object_get_string(json_object_array_get_idx(c->cc_vms, i)) :
				  vm });
	if (n > CTL_REFUSAL_VMS_MAX) {
		snprintf(detail, sizeof(detail), "missing privilege %s (%zu more VM directories)",
			 vmc_priv_name(priv), n - CTL_REFUSAL_VMS_MAX);
		vmc_audit(&(struct vmc_event){ .op = op, .uid = c->cc_uid, .result = -EACCES,
					       .detail = detail });
	}
	return ctl_fail(c, -EACCES, "permission denied: %s needs %s", op, vmc_priv_name(priv));
}

/* @vm as ctl_open_dir() normalizes it, without looking at the disk. */
static void norm_vm(const char *vm, char *out, size_t len)
{
	size_t o = 0;

	out[0] = '\0';
	while (*vm) {
		size_t l = strcspn(vm, "/");

		if (l && !(l == 1 && vm[0] == '.') && o < len)
			o += (size_t)snprintf(out + o, len - o, "%s%.*s", o ? "/" : "", (int)l, vm);
		vm += l;
		if (*vm)
			vm++;
	}
	if (!out[0])
		snprintf(out, len, ".");
}

/* The VM directories the request names ("vm", "vms"), before the verb reads
 * them: a refusal's event says which VMs it concerned. */
static void note_targets(struct ctl_conn *c, json_object *args)
{
	char norm[PATH_MAX];
	json_object *v;

	c->cc_vms = json_object_new_array();
	if (!c->cc_vms)
		return;
	if (json_object_object_get_ex(args, "vm", &v) && json_object_is_type(v, json_type_string)) {
		norm_vm(json_object_get_string(v), norm, sizeof(norm));
		json_object_array_add(c->cc_vms, json_object_new_string(norm));
	}
	if (json_object_object_get_ex(args, "vms", &v) && json_object_is_type(v, json_type_array))
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			json_object *e = json_object_array_get_idx(v, i);

			if (!json_object_is_type(e, json_type_string))
				continue;
			norm_vm(json_object_get_string(e), norm, sizeof(norm));
			json_object_array_add(c->cc_vms, json_object_new_string(norm));
		}
}

int ctl_open_dir(struct ctl_conn *c, const char *vm, int *fd, char *norm, size_t normlen)
{
	char buf[PATH_MAX], *save = NULL, *comp;
	size_t off = 0;
	int cur, next;

	if (!vm || strlen(vm) >= sizeof(buf))
		return ctl_fail(c, -EINVAL, "bad VM directory");
	snprintf(buf, sizeof(buf), "%s", vm);
	cur = openat(vmcfs.fs_root.in_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return ctl_fail(c, -errno, "cannot open the datastore: %s", strerror(errno));
	norm[0] = '\0';
	for (comp = strtok_r(buf, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
		if (!strcmp(comp, "."))
			continue;
		if (!strcmp(comp, "..") || vmc_name_reserved(comp)) {
			close(cur);
			return ctl_fail(c, -EINVAL, "%s: not a directory inside the datastore", vm);
		}
		next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			int e = errno;
			struct stat lst;

			/* O_DIRECTORY answers ENOTDIR before O_NOFOLLOW's ELOOP. */
			if (e == ENOTDIR && !fstatat(cur, comp, &lst, AT_SYMLINK_NOFOLLOW) &&
			    S_ISLNK(lst.st_mode))
				e = ELOOP;
			close(cur);
			return ctl_fail(c, -e, "%s: %s", vm, e == ELOOP ? "is a symbolic link" :
							       strerror(e));
		}
		close(cur);
		cur = next;
		off += (size_t)snprintf(norm + off, off < normlen ? normlen - off : 0, "%s%s",
					off ? "/" : "", comp);
	}
	if (!norm[0])
		snprintf(norm, normlen, ".");
	*fd = cur;
	return 0;
}

/* Read one request line (or everything up to EOF), bounded in size and time. */
static int read_request(int fd, char **out, size_t *outlen)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);

	if (!buf)
		return -ENOMEM;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, CTL_READ_TIMEOUT_MS) != 1) {
			free(buf);
			return -ETIMEDOUT;
		}
		if (len + 1 >= cap) {
			char *nb;

			if (cap > VMC_CTL_MAX_REQUEST) {
				free(buf);
				return -EMSGSIZE;
			}
			nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			free(buf);
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (memchr(buf + len - (size_t)n, '\n', (size_t)n))
			break;
		if (len > VMC_CTL_MAX_REQUEST) {
			free(buf);
			return -EMSGSIZE;
		}
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
}

static void reply_final(struct ctl_conn *c, int r, json_object *result)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(r == 0));
	if (r == 0) {
		json_object_object_add(o, "result", json_object_get(result));
	} else {
		json_object_object_add(o, "errno", json_object_new_int(-r));
		json_object_object_add(o, "error", json_object_new_string(strerror(-r)));
		/* Messages quote names: in the name encoding, like every string. */
		json_object_object_add(o, "message",
				       vmc_json_name(c->cc_msg[0] ? c->cc_msg : strerror(-r)));
	}
	ctl_send(c, o);
	json_object_put(o);
}

static void *conn_thread(void *arg)
{
	struct ctl_conn *c = arg;
	struct vmc_ctl_req req = { 0 };
	json_object *result = json_object_new_object();
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	char *buf = NULL;
	size_t len = 0;
	const struct ctl_verb *v = NULL;
	int r;

	if (getsockopt(c->cc_fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen)) {
		r = ctl_fail(c, -EACCES, "cannot identify the caller");
		goto reply;
	}
	c->cc_uid = cred.uid;
	c->cc_gid = cred.gid;
	c->cc_pid = cred.pid;
	c->cc_privs = vmc_privs_of(vmcfs.fs_cfg, cred.uid, cred.gid);
	r = read_request(c->cc_fd, &buf, &len);
	if (r) {
		ctl_fail(c, r, r == -EMSGSIZE ? "request larger than %d bytes" :
				 "cannot read the request", VMC_CTL_MAX_REQUEST);
		goto reply;
	}
	r = vmc_ctl_parse_request(buf, len, &req, c->cc_msg, sizeof(c->cc_msg));
	if (r)
		goto reply;
	for (size_t i = 0; i < sizeof(ctl_verbs) / sizeof(ctl_verbs[0]); i++)
		if (!strcmp(ctl_verbs[i].name, req.verb))
			v = &ctl_verbs[i];
	if (!v) {
		r = ctl_fail(c, -EOPNOTSUPP, "unknown verb \"%s\"", req.verb);
		goto reply;
	}
	vmc_dbg("control: uid %u pid %d: %s", (unsigned)c->cc_uid, (int)c->cc_pid, v->name);
	r = vmc_ctl_check_args(req.args, v->name, v->args, c->cc_msg, sizeof(c->cc_msg));
	if (r)
		goto reply;
	note_targets(c, req.args);
	r = v->priv ? ctl_require(c, v->priv, v->name, NULL) : 0;
	if (!r)
		r = v->fn(c, req.args, result);
reply:
	if (!c->cc_detached)
		reply_final(c, r, result);
	json_object_put(result);
	json_object_put(c->cc_vms);
	vmc_ctl_req_free(&req);
	free(buf);
	if (!c->cc_detached)
		close(c->cc_fd);
	free(c);
	pthread_mutex_lock(&ctl.lock);
	if (--ctl.conns == 0)
		pthread_cond_broadcast(&ctl.idle);
	pthread_mutex_unlock(&ctl.lock);
	return NULL;
}

static void *accept_thread(void *arg)
{
	(void)arg;
	while (!atomic_load(&ctl.stopping)) {
		int fd = accept4(ctl.listen_fd, NULL, NULL, SOCK_CLOEXEC);
		struct ctl_conn *c;
		pthread_t th;
		bool full;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (!atomic_load(&ctl.stopping))
				vmc_warn("control socket: accept: %s", strerror(errno));
			break;
		}
		pthread_mutex_lock(&ctl.lock);
		full = ctl.conns >= CTL_MAX_CONNS;
		if (!full)
			ctl.conns++;
		pthread_mutex_unlock(&ctl.lock);
		c = full ? NULL : calloc(1, sizeof(*c));
		if (!c) {
			static const char busy[] = "{\"ok\":false,\"errno\":16,\"error\":\"Device or "
						   "resource busy\",\"message\":\"too many control "
						   "connections\"}\n";
			if (write(fd, busy, sizeof(busy) - 1) < 0) {
				/* the client will see the connection close */
			}
			close(fd);
			if (!full) {
				pthread_mutex_lock(&ctl.lock);
				ctl.conns--;
				pthread_mutex_unlock(&ctl.lock);
			}
			continue;
		}
		c->cc_fd = fd;
		if (pthread_create(&th, NULL, conn_thread, c)) {
			close(fd);
			free(c);
			pthread_mutex_lock(&ctl.lock);
			ctl.conns--;
			pthread_mutex_unlock(&ctl.lock);
			continue;
		}
		pthread_detach(th);
	}
	return NULL;
}

/* Is something already listening at @path? */
static bool socket_alive(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool alive;

	if (fd < 0)
		return false;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return alive;
}

int vmc_ctl_start(const char *mountpoint, const char *path_opt)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *group = vmcfs.fs_cfg->ctl_group;
	char real[PATH_MAX];
	mode_t old;

	if (path_opt)
		snprintf(ctl.path, sizeof(ctl.path), "%s", path_opt);
	else if (vmcfs.fs_cfg->ctl_socket)
		snprintf(ctl.path, sizeof(ctl.path), "%s", vmcfs.fs_cfg->ctl_socket);
	else
		vmc_ctl_default_socket(realpath(mountpoint, real) ? real : mountpoint, ctl.path,
				       sizeof(ctl.path));
	if (strlen(ctl.path) >= sizeof(sa.sun_path)) {
		vmc_err("control socket path %s is too long", ctl.path);
		return -ENAMETOOLONG;
	}
	if (!path_opt && !vmcfs.fs_cfg->ctl_socket && mkdir(VMC_CTL_DEFAULT_DIR, 0755) &&
	    errno != EEXIST) {
		vmc_err("cannot create %s: %s", VMC_CTL_DEFAULT_DIR, strerror(errno));
		return -errno;
	}
	if (socket_alive(ctl.path)) {
		vmc_err("control socket %s is in use by another vmcryptfs", ctl.path);
		return -EADDRINUSE;
	}
	unlink(ctl.path); /* a stale socket of a daemon that died */
	ctl.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl.listen_fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", ctl.path);
	old = umask(0177);
	if (bind(ctl.listen_fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = errno;

		umask(old);
		vmc_err("control socket %s: %s", ctl.path, strerror(e));
		close(ctl.listen_fd);
		ctl.listen_fd = -1;
		return -e;
	}
	umask(old);
	if (group) {
		struct group gr, *res = NULL;
		char tmp[4096];
		char *end;
		gid_t gid = (gid_t)strtoul(group, &end, 10);

		if (*end && (getgrnam_r(group, &gr, tmp, sizeof(tmp), &res) || !res)) {
			vmc_err("control socket-group \"%s\" does not exist", group);
			return -EINVAL;
		}
		if (*end)
			gid = gr.gr_gid;
		if (chown(ctl.path, (uid_t)-1, gid) || chmod(ctl.path, 0660)) {
			vmc_err("control socket %s: %s", ctl.path, strerror(errno));
			return -errno;
		}
	}
	if (listen(ctl.listen_fd, 16))
		return -errno;
	atomic_store(&ctl.stopping, false);
	if (pthread_create(&ctl.accept_thread, NULL, accept_thread, NULL))
		return -EAGAIN;
	ctl.started = true;
	vmc_info("control socket %s", ctl.path);
	return 0;
}

void vmc_ctl_stop(void)
{
	struct timespec deadline;

	if (!ctl.started)
		return;
	atomic_store(&ctl.stopping, true);
	shutdown(ctl.listen_fd, SHUT_RDWR);
	pthread_join(ctl.accept_thread, NULL);
	close(ctl.listen_fd);
	unlink(ctl.path);
	/* Long operations stop at their next step (they resume when re-run). */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 30;
	pthread_mutex_lock(&ctl.lock);
	while (ctl.conns > 0)
		if (pthread_cond_timedwait(&ctl.idle, &ctl.lock, &deadline))
			break;
	pthread_mutex_unlock(&ctl.lock);
	ctl.started = false;
}
