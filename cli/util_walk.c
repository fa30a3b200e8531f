// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The walk of a datastore's backing directory for scan and keys: every
 * directory, each opened relative to its parent with O_NOFOLLOW (a symbolic
 * link is never followed, so a link planted in a VM directory cannot make a
 * scan read elsewhere), entries in name order so that reports are stable.
 *
 * A directory is a VM directory when it holds vmcrypt.policy or
 * .vmcrypt.state (the daemon's rule for listing VMs, fs/vm.c); a file belongs
 * to the nearest VM directory above it, its own first, up to the root. Nested
 * VM directories are their own VMs. Caveat: the walk stops VMC_WALK_DEPTH
 * levels down (reported through the error callback with -ELOOP).
 */
#include "util_cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VMC_WALK_DEPTH 64

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in directory @fd, sorted; "." and ".." left out. */
static int list_names(int fd, char ***out, size_t *count)
{
	int dup = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *dp;

	if (dup < 0)
		return -errno;
	dp = fdopendir(dup);
	if (!dp) {
		close(dup);
		return -errno;
	}
	while ((de = readdir(dp))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			char **nn = realloc(names, (cap ? cap * 2 : 32) * sizeof(*names));

			if (!nn)
				goto nomem;
			names = nn;
			cap = cap ? cap * 2 : 32;
		}
		names[n] = strdup(de->d_name);
		if (!names[n])
			goto nomem;
		n++;
	}
	closedir(dp);
	if (n)
		qsort(names, n, sizeof(*names), cmp_names);
	*out = names;
	*count = n;
	return 0;
nomem:
	closedir(dp);
	while (n)
		free(names[--n]);
	free(names);
	return -ENOMEM;
}

static bool is_vm_dir(int fd)
{
	return !faccessat(fd, VMC_FMT_POLICY_NAME, F_OK, AT_SYMLINK_NOFOLLOW) ||
	       !faccessat(fd, VMC_FMT_STATE_NAME, F_OK, AT_SYMLINK_NOFOLLOW);
}

static int walk_dir(int fd, const char *rel, const char *vm, int depth,
		    const struct util_walk_ops *ops, void *arg)
{
	char **names = NULL, path[PATH_MAX];
	size_t n = 0;
	int r;

	if (is_vm_dir(fd)) {
		vm = rel;
		if (ops->vm && (r = ops->vm(arg, fd, rel)))
			return r;
	}
	r = list_names(fd, &names, &n);
	if (r)
		return ops->error ? ops->error(arg, rel, vm, r) : 0;
	for (size_t i = 0; i < n && !r; i++) {
		const char *name = names[i];
		struct stat st;

		if (strcmp(rel, "."))
			snprintf(path, sizeof(path), "%s/%s", rel, name);
		else
			snprintf(path, sizeof(path), "%s", name);
		if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW))
			continue; /* gone meanwhile */
		if (!strncmp(name, VMC_FMT_RESERVED_PREFIX, strlen(VMC_FMT_RESERVED_PREFIX))) {
			/* vmcryptfs' own: the key records are read by the callbacks. */
			if (strcmp(name, VMC_FMT_STATE_NAME) && strcmp(name, VMC_FMT_DATASTORE_NAME) &&
			    ops->reserved)
				r = ops->reserved(arg, name, path, vm);
			continue;
		}
		if (S_ISREG(st.st_mode)) {
			if (strcmp(name, VMC_FMT_POLICY_NAME) && ops->file)
				r = ops->file(arg, fd, name, path, vm);
		} else if (S_ISDIR(st.st_mode)) {
			int sub;

			if (depth >= VMC_WALK_DEPTH) {
				r = ops->error ? ops->error(arg, path, vm, -ELOOP) : 0;
				continue;
			}
			sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				r = ops->error ? ops->error(arg, path, vm, -errno) : 0;
				continue;
			}
			r = walk_dir(sub, path, vm, depth + 1, ops, arg);
			close(sub);
		}
		/* Symbolic links, devices, sockets: not data of a VM, not followed. */
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return r;
}

int util_walk(int rootfd, const struct util_walk_ops *ops, void *arg)
{
	return walk_dir(rootfd, ".", NULL, 0, ops, arg);
}

int util_open_datastore(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		int e = errno;

		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	return fd;
}
