// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmcfault: an LD_PRELOAD library that makes the backing-store I/O of a
 * process (the vmcryptfs daemon in the tests) fail, or ends the process, on
 * chosen system calls on chosen files. Used by tests/integration/test_faults.py
 * and test_crash_random.py.
 *
 * Control: VMCFAULT_CTL names a control file the test writes (atomically,
 * with a rename) while the daemon runs; the library reads it again whenever
 * it changes (one stat(2) per intercepted call). Without VMCFAULT_CTL every
 * call passes straight through. One rule per line ('#' starts a comment):
 *
 *     OPS PATTERN ACTION [skip=N] [count=N]
 *
 *   OPS      comma-separated calls: read write pread pwrite preadv pwritev
 *            fsync fdatasync splice copy_file_range fallocate ftruncate
 *            sync_file_range, or "all" (the 64-bit and v2 variants count as
 *            their base call)
 *   PATTERN  a substring of the file's path as /proc/self/fd/N shows it
 *            (ending with '$': a suffix of it), or "*" for any file
 *   ACTION   an errno, by name (EIO, ENOSPC, EDQUOT, EROFS, EFBIG, ENOMEM)
 *            or number: the call fails with it and does nothing;
 *            "kill": the process ends with SIGKILL before the call;
 *            "kill-after": the call is made, then SIGKILL
 *   skip=N   let the first N matching calls through (default 0)
 *   count=N  act on at most N calls (default: all)
 *
 * The first rule that matches a call decides. Every action taken is appended
 * to VMCFAULT_LOG (default: the control file's name + ".log") as a line
 * "OP PATH ACTION", so a test can prove the fault really happened. Counters
 * start again from zero whenever the control file changes.
 *
 * Built without the project's _FILE_OFFSET_BITS=64 so that both the plain
 * and the "64" names can be defined; on 64-bit Linux they are the same calls.
 */
#undef _FILE_OFFSET_BITS
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define VMCF_EXPORT __attribute__((visibility("default")))

enum op {
	OP_READ,
	OP_WRITE,
	OP_PREAD,
	OP_PWRITE,
	OP_PREADV,
	OP_PWRITEV,
	OP_FSYNC,
	OP_FDATASYNC,
	OP_SPLICE,
	OP_COPY_FILE_RANGE,
	OP_FALLOCATE,
	OP_FTRUNCATE,
	OP_SYNC_FILE_RANGE,
	OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
	"read",	 "write",     "pread",	    "pwrite",	       "preadv",     "pwritev",
	"fsync", "fdatasync", "splice", "copy_file_range", "fallocate", "ftruncate",
	"sync_file_range",
};

#define ACT_KILL (-1)
#define ACT_KILL_AFTER (-2)
#define MAX_RULES 32

struct rule {
	unsigned ops;	  /* bit per enum op */
	char pattern[PATH_MAX];
	int action;	  /* errno > 0, or ACT_KILL / ACT_KILL_AFTER */
	long skip, count; /* count < 0: unlimited */
	atomic_long seen, acted;
};

static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;
static char ctl_path[PATH_MAX];
static char log_path[PATH_MAX + 8];
static struct stat ctl_st;     /* of the control file as last read */
static bool ctl_present;
static struct rule rules[MAX_RULES];
static int nrules;
static atomic_uint ops_wanted; /* union of the rules' ops: a fast "no" */

/* The real calls. */
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_pread64)(int, void *, size_t, off64_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_preadv)(int, const struct iovec *, int, off_t);
static ssize_t (*real_preadv64)(int, const struct iovec *, int, off64_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off64_t);
static ssize_t (*real_preadv2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_preadv64v2)(int, const struct iovec *, int, off64_t, int);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_pwritev64v2)(int, const struct iovec *, int, off64_t, int);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static ssize_t (*real_splice)(int, loff_t *, int, loff_t *, size_t, unsigned int);
static ssize_t (*real_copy_file_range)(int, loff_t *, int, loff_t *, size_t, unsigned int);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_fallocate64)(int, int, off64_t, off64_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);
static int (*real_sync_file_range)(int, off64_t, off64_t, unsigned int);

#define RESOLVE(name) (real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name))

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Done at the first intercepted call, which may come before this library's
 * constructors would run (another library's constructor reading a file). */
static void vmcf_init(void)
{
	const char *c = getenv("VMCFAULT_CTL"), *l = getenv("VMCFAULT_LOG");

	RESOLVE(read);
	RESOLVE(write);
	RESOLVE(pread);
	RESOLVE(pread64);
	RESOLVE(pwrite);
	RESOLVE(pwrite64);
	RESOLVE(preadv);
	RESOLVE(preadv64);
	RESOLVE(pwritev);
	RESOLVE(pwritev64);
	RESOLVE(preadv2);
	RESOLVE(preadv64v2);
	RESOLVE(pwritev2);
	RESOLVE(pwritev64v2);
	RESOLVE(fsync);
	RESOLVE(fdatasync);
	RESOLVE(splice);
	RESOLVE(copy_file_range);
	RESOLVE(fallocate);
	RESOLVE(fallocate64);
	RESOLVE(ftruncate);
	RESOLVE(ftruncate64);
	RESOLVE(sync_file_range);
	if (!c || !*c || strlen(c) >= sizeof(ctl_path))
		return;
	snprintf(ctl_path, sizeof(ctl_path), "%s", c);
	if (l && *l)
		snprintf(log_path, sizeof(log_path), "%s", l);
	else
		snprintf(log_path, sizeof(log_path), "%s.log", c);
}

static int parse_action(const char *s)
{
	static const struct {
		const char *name;
		int value;
	} names[] = {
		{ "EIO", EIO },	      { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT },
		{ "EROFS", EROFS },   { "EFBIG", EFBIG },   { "ENOMEM", ENOMEM },
		{ "ENXIO", ENXIO },   { "EBADF", EBADF },   { "kill", ACT_KILL },
		{ "kill-after", ACT_KILL_AFTER },
	};
	char *end;
	long v;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i].name))
			return names[i].value;
	v = strtol(s, &end, 10);
	return (*end || v <= 0 || v > 4095) ? 0 : (int)v;
}

static unsigned parse_ops(char *s)
{
	unsigned ops = 0;
	char *save = NULL;

	for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "all"))
			return (1u << OP_COUNT) - 1;
		for (int i = 0; i < OP_COUNT; i++)
			if (!strcmp(t, op_names[i]))
				ops |= 1u << i;
	}
	return ops;
}

/* Read the control file again if it changed. ctl_lock held. */
static void reload_locked(void)
{
	struct stat st;
	char line[PATH_MAX + 128];
	FILE *f;
	unsigned wanted = 0;

	if (stat(ctl_path, &st)) {
		if (ctl_present) {
			ctl_present = false;
			nrules = 0;
			atomic_store(&ops_wanted, 0);
		}
		return;
	}
	if (ctl_present && st.st_ino == ctl_st.st_ino && st.st_dev == ctl_st.st_dev &&
	    st.st_size == ctl_st.st_size && st.st_mtim.tv_sec == ctl_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == ctl_st.st_mtim.tv_nsec)
		return;
	f = fopen(ctl_path, "re");
	if (!f)
		return;
	ctl_st = st;
	ctl_present = true;
	nrules = 0;
	while (nrules < MAX_RULES && fgets(line, sizeof(line), f)) {
		char *save = NULL, *ops, *pat, *act, *opt;
		struct rule *r = &rules[nrules];
		char *hash = strchr(line, '#');

		if (hash)
			*hash = '\0';
		ops = strtok_r(line, " \t\r\n", &save);
		pat = ops ? strtok_r(NULL, " \t\r\n", &save) : NULL;
		act = pat ? strtok_r(NULL, " \t\r\n", &save) : NULL;
		if (!act)
			continue;
		r->ops = parse_ops(ops);
		r->action = parse_action(act);
		if (!r->ops || !r->action || strlen(pat) >= sizeof(r->pattern))
			continue;
		snprintf(r->pattern, sizeof(r->pattern), "%s", pat);
		r->skip = 0;
		r->count = -1;
		while ((opt = strtok_r(NULL, " \t\r\n", &save))) {
			if (!strncmp(opt, "skip=", 5))
				r->skip = strtol(opt + 5, NULL, 10);
			else if (!strncmp(opt, "count=", 6))
				r->count = strtol(opt + 6, NULL, 10);
		}
		atomic_store(&r->seen, 0);
		atomic_store(&r->acted, 0);
		wanted |= r->ops;
		nrules++;
	}
	fclose(f);
	atomic_store(&ops_wanted, wanted);
}

static bool path_matches(const char *path, const char *pattern)
{
	size_t lp = strlen(pattern), l = strlen(path);

	if (!path[0])
		return false;
	if (!strcmp(pattern, "*"))
		return true;
	if (lp && pattern[lp - 1] == '$')
		return l >= lp - 1 && !strncmp(path + l - (lp - 1), pattern, lp - 1);
	return strstr(path, pattern) != NULL;
}

static void fd_path(int fd, char *out, size_t len)
{
	char p[64];
	ssize_t n;

	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	n = readlink(p, out, len - 1);
	out[n < 0 ? 0 : n] = '\0';
}

static void log_hit(enum op op, const char *path, int action)
{
	char line[PATH_MAX + 64];
	int fd, n;

	if (action == ACT_KILL)
		n = snprintf(line, sizeof(line), "%s %s kill\n", op_names[op], path);
	else if (action == ACT_KILL_AFTER)
		n = snprintf(line, sizeof(line), "%s %s kill-after\n", op_names[op], path);
	else
		n = snprintf(line, sizeof(line), "%s %s %d\n", op_names[op], path, action);
	fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (real_write(fd, line, (size_t)n) < 0) {
		/* nothing to do: the test sees no line */
	}
	/* The line must survive a SIGKILL that follows at once: it does (the
	 * page cache belongs to the kernel), no fsync needed. */
	close(fd);
}

/*
 * Decide for a call @op on @fd (and @fd2, or -1): 0 to make it, an errno to
 * fail it with, ACT_KILL_AFTER to make it and then die. ACT_KILL never
 * returns.
 */
static int decide(enum op op, int fd, int fd2)
{
	char path[PATH_MAX], path2[PATH_MAX];
	int saved = errno, action = 0;

	pthread_once(&init_once, vmcf_init);
	if (!ctl_path[0])
		return 0;
	pthread_mutex_lock(&ctl_lock);
	reload_locked();
	if (!(atomic_load(&ops_wanted) & (1u << op))) {
		pthread_mutex_unlock(&ctl_lock);
		errno = saved;
		return 0;
	}
	fd_path(fd, path, sizeof(path));
	path2[0] = '\0';
	if (fd2 >= 0)
		fd_path(fd2, path2, sizeof(path2));
	for (int i = 0; i < nrules; i++) {
		struct rule *r = &rules[i];
		const char *hit = NULL;

		if (!(r->ops & (1u << op)))
			continue;
		if (path_matches(path, r->pattern))
			hit = path;
		else if (path_matches(path2, r->pattern))
			hit = path2;
		if (!hit)
			continue;
		if (atomic_fetch_add(&r->seen, 1) < r->skip)
			break;
		if (r->count >= 0 && atomic_load(&r->acted) >= r->count)
			break;
		atomic_fetch_add(&r->acted, 1);
		action = r->action;
		log_hit(op, hit, action);
		break;
	}
	pthread_mutex_unlock(&ctl_lock);
	if (action == ACT_KILL)
		kill(getpid(), SIGKILL);
	errno = saved;
	return action;
}

/* A call that fails: -1 with errno, or ssize_t -1. */
#define FAIL_IF(a)                           \
	do {                                 \
		if ((a) > 0) {               \
			errno = (a);         \
			return -1;           \
		}                            \
	} while (0)

#define WRAP(ret, name, op, fd, fd2, params, args)  \
	VMCF_EXPORT ret name params                 \
	{                                           \
		int a_ = decide(op, fd, fd2);       \
		ret r_;                             \
		FAIL_IF(a_);                        \
		r_ = real_##name args;              \
		if (a_ == ACT_KILL_AFTER)           \
			kill(getpid(), SIGKILL);    \
		return r_;                          \
	}

WRAP(ssize_t, read, OP_READ, fd, -1, (int fd, void *buf, size_t n), (fd, buf, n))
WRAP(ssize_t, write, OP_WRITE, fd, -1, (int fd, const void *buf, size_t n), (fd, buf, n))
WRAP(ssize_t, pread, OP_PREAD, fd, -1, (int fd, void *buf, size_t n, off_t off),
     (fd, buf, n, off))
WRAP(ssize_t, pread64, OP_PREAD, fd, -1, (int fd, void *buf, size_t n, off64_t off),
     (fd, buf, n, off))
WRAP(ssize_t, pwrite, OP_PWRITE, fd, -1, (int fd, const void *buf, size_t n, off_t off),
     (fd, buf, n, off))
WRAP(ssize_t, pwrite64, OP_PWRITE, fd, -1, (int fd, const void *buf, size_t n, off64_t off),
     (fd, buf, n, off))
WRAP(ssize_t, preadv, OP_PREADV, fd, -1, (int fd, const struct iovec *iov, int c, off_t off),
     (fd, iov, c, off))
WRAP(ssize_t, preadv64, OP_PREADV, fd, -1,
     (int fd, const struct iovec *iov, int c, off64_t off), (fd, iov, c, off))
WRAP(ssize_t, pwritev, OP_PWRITEV, fd, -1, (int fd, const struct iovec *iov, int c, off_t off),
     (fd, iov, c, off))
WRAP(ssize_t, pwritev64, OP_PWRITEV, fd, -1,
     (int fd, const struct iovec *iov, int c, off64_t off), (fd, iov, c, off))
WRAP(ssize_t, preadv2, OP_PREADV, fd, -1,
     (int fd, const struct iovec *iov, int c, off_t off, int fl), (fd, iov, c, off, fl))
WRAP(ssize_t, preadv64v2, OP_PREADV, fd, -1,
     (int fd, const struct iovec *iov, int c, off64_t off, int fl), (fd, iov, c, off, fl))
WRAP(ssize_t, pwritev2, OP_PWRITEV, fd, -1,
     (int fd, const struct iovec *iov, int c, off_t off, int fl), (fd, iov, c, off, fl))
WRAP(ssize_t, pwritev64v2, OP_PWRITEV, fd, -1,
     (int fd, const struct iovec *iov, int c, off64_t off, int fl), (fd, iov, c, off, fl))
WRAP(int, fsync, OP_FSYNC, fd, -1, (int fd), (fd))
WRAP(int, fdatasync, OP_FDATASYNC, fd, -1, (int fd), (fd))
WRAP(ssize_t, splice, OP_SPLICE, fd_in, fd_out,
     (int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t n, unsigned int fl),
     (fd_in, off_in, fd_out, off_out, n, fl))
WRAP(ssize_t, copy_file_range, OP_COPY_FILE_RANGE, fd_in, fd_out,
     (int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t n, unsigned int fl),
     (fd_in, off_in, fd_out, off_out, n, fl))
WRAP(int, fallocate, OP_FALLOCATE, fd, -1, (int fd, int mode, off_t off, off_t len),
     (fd, mode, off, len))
WRAP(int, fallocate64, OP_FALLOCATE, fd, -1, (int fd, int mode, off64_t off, off64_t len),
     (fd, mode, off, len))
WRAP(int, ftruncate, OP_FTRUNCATE, fd, -1, (int fd, off_t len), (fd, len))
WRAP(int, ftruncate64, OP_FTRUNCATE, fd, -1, (int fd, off64_t len), (fd, len))
WRAP(int, sync_file_range, OP_SYNC_FILE_RANGE, fd, -1,
     (int fd, off64_t off, off64_t n, unsigned int fl), (fd, off, n, fl))
