// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Audit events (see audit.h). One writer thread drains a bounded queue.
 * Lock: au_lock protects the queue and the subscriber list; the writer holds
 * no lock while it writes.
 */
#include "audit.h"
#include "vmc_config.h"
#include "vmc_ctlproto.h"
#include "vmc_log.h"
#include "vmc_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define AU_QUEUE_MAX 10000
#define AU_SUBSCRIBERS_MAX 32
#define AU_RETRY_SEC 5

struct au_msg {
	struct au_msg *next;
	int severity;
	char *json;
	char *vm; /* for subscribers' filters; NULL if none */
};

struct au_sub {
	int fd;
	char vm[PATH_MAX]; /* "" for every event */
};

struct au_remote {
	char host[256];
	char port[16];
	bool tcp;
	int fd;           /* -1 when not connected */
	time_t retry_at;  /* no reconnect before this */
};

static struct {
	pthread_mutex_t au_lock;
	pthread_cond_t au_cond;
	struct au_msg *head, *tail; /* au_lock */
	size_t queued;              /* au_lock */
	size_t dropped;             /* au_lock */
	bool stop;                  /* au_lock */
	struct au_sub subs[AU_SUBSCRIBERS_MAX]; /* au_lock */
	int nsubs;                  /* au_lock */
	pthread_t thread;
	bool running;
	char log_path[PATH_MAX];
	int log_fd;
	bool use_syslog;
	struct au_remote remote[VMC_AUDIT_REMOTE_MAX];
	int nremote;
	char datastore[PATH_MAX];
	char hostname[256];
} au = { .au_lock = PTHREAD_MUTEX_INITIALIZER, .au_cond = PTHREAD_COND_INITIALIZER,
	 .log_fd = -1 };

static void iso_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 ts.tv_nsec / 1000000);
}

/* Every string of an event is in the name encoding (vmc_ctlproto.h): names
 * are bytes, an audit line is UTF-8 JSON. */
static void add_str(json_object *o, const char *k, const char *v)
{
	if (v)
		json_object_object_add(o, k, vmc_json_name(v));
}

void vmc_audit(const struct vmc_event *ev)
{
	json_object *o = json_object_new_object(), *user = json_object_new_object();
	struct au_msg *m;
	char t[40], name[256];

	if (!o || !user) {
		json_object_put(o);
		json_object_put(user);
		return;
	}
	iso_time(t, sizeof(t));
	vmc_user_name(ev->uid, name, sizeof(name));
	add_str(o, "time", t);
	add_str(o, "datastore", au.datastore);
	json_object_object_add(user, "uid", json_object_new_int64(ev->uid));
	add_str(user, "name", name);
	json_object_object_add(o, "user", user);
	add_str(o, "op", ev->op);
	add_str(o, "vm", ev->vm);
	add_str(o, "file", ev->file);
	add_str(o, "provider", ev->provider);
	add_str(o, "key_from", ev->key_from);
	add_str(o, "key_to", ev->key_to);
	add_str(o, "from", ev->from);
	add_str(o, "to", ev->to);
	add_str(o, "result", ev->result ? "error" : "ok");
	if (ev->result) {
		json_object_object_add(o, "errno", json_object_new_int(-ev->result));
		add_str(o, "error", strerror(-ev->result));
	}
	add_str(o, "detail", ev->detail);

	m = calloc(1, sizeof(*m));
	if (m) {
		m->severity = ev->result ? LOG_WARNING : LOG_NOTICE;
		m->json = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		m->vm = ev->vm ? strdup(ev->vm) : NULL;
	}
	json_object_put(o);
	if (!m || !m->json) {
		if (m)
			free(m->vm);
		free(m);
		return;
	}
	pthread_mutex_lock(&au.au_lock);
	if (!au.running || au.queued >= AU_QUEUE_MAX) {
		au.dropped++;
		pthread_mutex_unlock(&au.au_lock);
		free(m->json);
		free(m->vm);
		free(m);
		return;
	}
	if (au.tail)
		au.tail->next = m;
	else
		au.head = m;
	au.tail = m;
	au.queued++;
	pthread_cond_signal(&au.au_cond);
	pthread_mutex_unlock(&au.au_lock);
}

int vmc_audit_subscribe(int fd, const char *vm)
{
	int r = -EAGAIN;

	pthread_mutex_lock(&au.au_lock);
	if (au.nsubs < AU_SUBSCRIBERS_MAX) {
		au.subs[au.nsubs].fd = fd;
		snprintf(au.subs[au.nsubs].vm, sizeof(au.subs[0].vm), "%s", vm ? vm : "");
		au.nsubs++;
		r = 0;
	}
	pthread_mutex_unlock(&au.au_lock);
	return r;
}

void vmc_audit_unsubscribe(int fd)
{
	pthread_mutex_lock(&au.au_lock);
	for (int j = 0; j < au.nsubs; j++)
		if (au.subs[j].fd == fd) {
			au.subs[j] = au.subs[--au.nsubs];
			break;
		}
	pthread_mutex_unlock(&au.au_lock);
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int mkdir_parent(const char *path)
{
	char dir[PATH_MAX], *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0750) && errno != EEXIST)
		return -errno;
	return 0;
}

/* Connect remote target @t, with a time-out, unless it failed recently. */
static int remote_connect(struct au_remote *t)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC }, *res = NULL, *ai;
	int fd = -1;

	if (t->fd >= 0)
		return 0;
	if (time(NULL) < t->retry_at)
		return -EAGAIN;
	hints.ai_socktype = t->tcp ? SOCK_STREAM : SOCK_DGRAM;
	if (getaddrinfo(t->host, t->port, &hints, &res))
		goto fail;
	for (ai = res; ai; ai = ai->ai_next) {
		struct pollfd pfd;
		int err = 0;
		socklen_t elen = sizeof(err);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			pfd.fd = fd;
			pfd.events = POLLOUT;
			if (poll(&pfd, 1, 2000) == 1 &&
			    !getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) && !err)
				break;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		goto fail;
	t->fd = fd;
	return 0;
fail:
	t->retry_at = time(NULL) + AU_RETRY_SEC;
	return -EHOSTUNREACH;
}

static void remote_send(struct au_remote *t, const struct au_msg *m)
{
	char hdr[512], ts[40], frame[24];
	struct pollfd pfd;
	size_t hlen, blen = strlen(m->json);
	int pri = LOG_AUTHPRIV | m->severity;

	if (remote_connect(t))
		return;
	iso_time(ts, sizeof(ts));
	/* RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG */
	hlen = (size_t)snprintf(hdr, sizeof(hdr), "<%d>1 %s %s vmcryptfs %d audit - ", pri, ts,
				au.hostname[0] ? au.hostname : "-", (int)getpid());
	if (t->tcp) {
		/* RFC 6587 octet counting: "LEN SP MSG" */
		struct iovec iov[3];
		int n = snprintf(frame, sizeof(frame), "%zu ", hlen + blen);
		ssize_t w;

		iov[0].iov_base = frame;
		iov[0].iov_len = (size_t)n;
		iov[1].iov_base = hdr;
		iov[1].iov_len = hlen;
		iov[2].iov_base = m->json;
		iov[2].iov_len = blen;
		pfd.fd = t->fd;
		pfd.events = POLLOUT;
		w = poll(&pfd, 1, 2000) == 1 ? writev(t->fd, iov, 3) : -1;
		if (w != (ssize_t)((size_t)n + hlen + blen)) {
			close(t->fd); /* a partial frame cannot be resumed: start afresh */
			t->fd = -1;
			t->retry_at = time(NULL) + AU_RETRY_SEC;
		}
	} else {
		char dgram[8192];
		int n = snprintf(dgram, sizeof(dgram), "%s%s", hdr, m->json);

		if (send(t->fd, dgram, (size_t)n < sizeof(dgram) ? (size_t)n : sizeof(dgram) - 1,
			 0) < 0 && errno != EAGAIN) {
			close(t->fd);
			t->fd = -1;
		}
	}
}

static void write_one(struct au_msg *m)
{
	size_t len = strlen(m->json);
	char *line = malloc(len + 2);

	if (!line)
		return;
	memcpy(line, m->json, len);
	line[len++] = '\n';
	if (au.log_path[0]) {
		if (au.log_fd < 0 && !mkdir_parent(au.log_path))
			au.log_fd = open(au.log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (au.log_fd < 0 || write_all(au.log_fd, line, len) || fdatasync(au.log_fd))
			vmc_warn("audit log %s: cannot write: %s", au.log_path, strerror(errno));
	}
	if (au.use_syslog)
		syslog(LOG_AUTHPRIV | m->severity, "audit: %s", m->json);
	for (int i = 0; i < au.nremote; i++)
		remote_send(&au.remote[i], m);

	/* Followers: {"event": ...} lines, filtered by VM. Holding au_lock keeps
	 * a follower's fd valid while we write (unsubscribe waits for it). */
	pthread_mutex_lock(&au.au_lock);
	for (int i = 0; i < au.nsubs; i++) {
		char *wrapped;
		int n;

		if (au.subs[i].vm[0] && (!m->vm || strcmp(au.subs[i].vm, m->vm)))
			continue;
		n = asprintf(&wrapped, "{\"event\":%s}\n", m->json);
		if (n < 0)
			continue;
		/* Never block under au_lock: a follower that does not read is cut. */
		if (send(au.subs[i].fd, wrapped, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n)
			shutdown(au.subs[i].fd, SHUT_RDWR); /* its thread unsubscribes */
		free(wrapped);
	}
	pthread_mutex_unlock(&au.au_lock);
	free(line);
}

static void *au_thread(void *arg)
{
	(void)arg;
	for (;;) {
		struct au_msg *m;
		size_t dropped;

		pthread_mutex_lock(&au.au_lock);
		while (!au.head && !au.stop)
			pthread_cond_wait(&au.au_cond, &au.au_lock);
		m = au.head;
		if (m) {
			au.head = m->next;
			if (!au.head)
				au.tail = NULL;
			au.queued--;
		}
		dropped = au.dropped;
		au.dropped = 0;
		pthread_mutex_unlock(&au.au_lock);
		if (dropped)
			vmc_warn("audit: %zu events dropped (queue full)", dropped);
		if (!m)
			break; /* stopping, and the queue is empty */
		write_one(m);
		free(m->json);
		free(m->vm);
		free(m);
	}
	return NULL;
}

static int parse_remote(const char *url, struct au_remote *t)
{
	const char *hp = url + 6, *colon;

	t->tcp = !strncmp(url, "tcp://", 6);
	t->fd = -1;
	if (hp[0] == '[') { /* [v6]:port */
		const char *end = strchr(hp, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		snprintf(t->host, sizeof(t->host), "%.*s", (int)(end - hp - 1), hp + 1);
		colon = end + 1;
	} else {
		colon = strrchr(hp, ':');
		if (!colon)
			return -EINVAL;
		snprintf(t->host, sizeof(t->host), "%.*s", (int)(colon - hp), hp);
	}
	snprintf(t->port, sizeof(t->port), "%s", colon + 1);
	return t->host[0] && t->port[0] ? 0 : -EINVAL;
}

int vmc_audit_start(const struct vmc_config *cfg, const char *datastore)
{
	snprintf(au.log_path, sizeof(au.log_path), "%s", cfg->audit_log ? cfg->audit_log : "");
	snprintf(au.datastore, sizeof(au.datastore), "%s", datastore);
	au.use_syslog = cfg->audit_syslog;
	gethostname(au.hostname, sizeof(au.hostname) - 1);
	for (size_t i = 0; i < cfg->naudit_remote; i++) {
		if (parse_remote(cfg->audit_remote[i], &au.remote[au.nremote])) {
			vmc_err("audit: remote target \"%s\" is not udp://HOST:PORT or tcp://HOST:PORT",
				cfg->audit_remote[i]);
			return -EINVAL;
		}
		au.nremote++;
	}
	au.stop = false;
	if (pthread_create(&au.thread, NULL, au_thread, NULL))
		return -EAGAIN;
	pthread_mutex_lock(&au.au_lock);
	au.running = true;
	pthread_mutex_unlock(&au.au_lock);
	return 0;
}

void vmc_audit_stop(void)
{
	if (!au.running)
		return;
	pthread_mutex_lock(&au.au_lock);
	au.running = false;
	au.stop = true;
	pthread_cond_signal(&au.au_cond);
	pthread_mutex_unlock(&au.au_lock);
	pthread_join(au.thread, NULL);
	for (int i = 0; i < au.nremote; i++)
		if (au.remote[i].fd >= 0)
			close(au.remote[i].fd);
	for (int i = 0; i < au.nsubs; i++)
		shutdown(au.subs[i].fd, SHUT_RDWR);
	if (au.log_fd >= 0)
		close(au.log_fd);
	au.log_fd = -1;
	au.nremote = 0;
	au.nsubs = 0;
}
