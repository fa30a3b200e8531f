// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmcryptfs-ctl's side of the control protocol (lib/vmc_ctlproto.h): find
 * the mount and its socket, send one request, read the JSON lines of the
 * answer, draw progress on a terminal, map the result to an exit code.
 */
#include "ctl_cli.h"
#include "vmc_ctlproto.h"
#include "vmc_log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* Exit codes: documented in vmcryptfs-ctl(8). */
int ctl_exit_code(int err)
{
	switch (err) {
	case 0:
		return CTL_EXIT_OK;
	case EACCES:
	case EPERM:
		return CTL_EXIT_PERM;
	case ENOENT:
		return CTL_EXIT_NOTFOUND;
	case EBUSY:
	case EEXIST:
		return CTL_EXIT_BUSY;
	case ENOKEY:
	case EKEYREJECTED:
	case EKEYREVOKED:
		return CTL_EXIT_KEY;
	case ENOSPC:
		return CTL_EXIT_NOSPACE;
	default:
		return CTL_EXIT_FAIL;
	}
}

size_t ctl_display(char *out, size_t outlen, const char *s)
{
	char *raw = strdup(s);
	size_t n;

	if (!raw) {
		snprintf(out, outlen, "?");
		return strlen(out);
	}
	if (vmc_name_decode(raw, &n)) /* not in the name encoding after all */
		n = strlen(strcpy(raw, s));
	n = vmc_log_escape(out, outlen, raw, n);
	free(raw);
	return n;
}

void ctl_display_tree(json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_string: {
		size_t cap = 4 * (size_t)json_object_get_string_len(o) + 1;
		char *buf = malloc(cap);

		if (buf) {
			ctl_display(buf, cap, json_object_get_string(o));
			json_object_set_string(o, buf);
			free(buf);
		}
		return;
	}
	case json_type_object: {
		json_object_object_foreach(o, key, val) {
			(void)key;
			ctl_display_tree(val);
		}
		return;
	}
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(o); i++)
			ctl_display_tree(json_object_array_get_idx(o, i));
		return;
	default:
		return;
	}
}

/* Unescape the "\040" sequences of /proc/self/mountinfo in place. */
static void unoctal(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] && s[3]) {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

int ctl_find_mounts(char mounts[][PATH_MAX], int max)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int n = 0;

	if (!f)
		return 0;
	while (getline(&line, &cap, f) > 0 && n < max) {
		char mp[PATH_MAX], type[128];
		char *sep = strstr(line, " - ");

		if (!sep || sscanf(sep + 3, "%127s", type) != 1 || strcmp(type, "fuse.vmcryptfs"))
			continue;
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		unoctal(mp);
		snprintf(mounts[n++], PATH_MAX, "%s", mp);
	}
	free(line);
	fclose(f);
	return n;
}

int ctl_socket_of(const char *mountpoint, char *path, size_t len)
{
	ssize_t n = getxattr(mountpoint, VMC_CTL_XATTR, path, len - 1);

	if (n > 0) {
		path[n] = '\0';
		return 0;
	}
	vmc_ctl_default_socket(mountpoint, path, len);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void human_bytes(double b, char *buf, size_t len)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;

	while (b >= 1024 && i < 4) {
		b /= 1024;
		i++;
	}
	snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

struct progress {
	bool tty;
	bool drawn;
	int vm_index;
	double t0;
	uint64_t d0;
};

static void draw(struct progress *p, json_object *pr)
{
	json_object *v;
	uint64_t done = 0, total = 0;
	const char *item = "";
	char bd[32], bt[32], rate[32], left[32] = "", vmtag[32] = "", shown[31];
	double el, bps;
	int pct, width = 24, fill;

	if (json_object_object_get_ex(pr, "done", &v))
		done = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(pr, "total", &v))
		total = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(pr, "item", &v))
		item = json_object_get_string(v);
	if (!p->tty)
		return;
	if (json_object_object_get_ex(pr, "vm_count", &v)) {
		json_object *iv;
		int idx = json_object_object_get_ex(pr, "vm_index", &iv) ? json_object_get_int(iv) : 0;

		snprintf(vmtag, sizeof(vmtag), "(vm %d/%d) ", idx, json_object_get_int(v));
		if (idx != p->vm_index) { /* a new VM: its own rate */
			p->vm_index = idx;
			p->drawn = false;
		}
	}
	if (!p->drawn) {
		p->t0 = now_s();
		p->d0 = done;
	}
	el = now_s() - p->t0;
	bps = el > 0.2 ? (double)(done - p->d0) / el : 0;
	pct = total ? (int)(done * 100 / total) : 0;
	fill = pct * width / 100;
	human_bytes((double)done, bd, sizeof(bd));
	human_bytes((double)total, bt, sizeof(bt));
	human_bytes(bps, rate, sizeof(rate));
	/* A file name: no terminal controls, cut at a whole character. */
	ctl_display(shown, sizeof(shown), item);
	if (bps > 0 && total > done) {
		long s = (long)((double)(total - done) / bps);

		snprintf(left, sizeof(left), "%ld:%02ld left", s / 60, s % 60);
	}
	fprintf(stderr, "\r%s[%.*s%*s] %3d%%  %s / %s  %s/s  %-12s %s\033[K", vmtag,
		fill, "########################", width - fill, "", pct, bd, bt, rate, left, shown);
	p->drawn = true;
}

int ctl_call(const char *socket_path, json_object *req, ctl_line_fn on_line, void *arg,
	     json_object **result, char *msg, size_t msglen, bool show_progress)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct progress pg = { .tty = show_progress && isatty(STDERR_FILENO) };
	const char *text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	char *line = NULL;
	size_t cap = 0;
	int fd, err = ENOTCONN; /* until the daemon answers */
	FILE *f;

	*result = NULL;
	snprintf(msg, msglen, "no answer from the daemon");
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", socket_path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		char *enc;

		err = errno;
		enc = vmc_name_encode(socket_path); /* @msg is encoded, as the daemon's */
		snprintf(msg, msglen, "cannot connect to %s: %s", enc ? enc : "the socket",
			 strerror(err));
		free(enc);
		close(fd);
		return err == EACCES ? EACCES : ENOTCONN;
	}
	if (send(fd, text, strlen(text), MSG_NOSIGNAL) < 0 || send(fd, "\n", 1, MSG_NOSIGNAL) < 0) {
		err = errno;
		close(fd);
		return err;
	}
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return ENOMEM;
	}
	while (getline(&line, &cap, f) > 0) {
		json_object *o = json_tokener_parse(line), *v;

		if (!o)
			continue;
		if (json_object_object_get_ex(o, "progress", &v)) {
			draw(&pg, v);
		} else if (json_object_object_get_ex(o, "ok", &v)) {
			if (json_object_get_boolean(v)) {
				err = 0;
				if (json_object_object_get_ex(o, "result", &v))
					*result = json_object_get(v);
				msg[0] = '\0';
			} else {
				json_object *e, *m;

				err = json_object_object_get_ex(o, "errno", &e) ? json_object_get_int(e) :
										  EIO;
				if (json_object_object_get_ex(o, "message", &m))
					snprintf(msg, msglen, "%s", json_object_get_string(m));
			}
			json_object_put(o);
			break;
		} else if (on_line) {
			on_line(arg, o);
		}
		json_object_put(o);
	}
	if (pg.drawn)
		fputc('\n', stderr);
	free(line);
	fclose(f);
	return err;
}
