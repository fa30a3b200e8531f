// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A key-provider plugin for the vmcryptfs-util tests only (never installed):
 * type "testlist", keys kept as files in a directory (parameter key-dir),
 * one file per key named by its id holding the 32 key bytes, and the key's
 * label in "<id>.label". It implements the optional operation list_keys
 * (the last member of struct vmc_kp_ops), so that 'vmcryptfs-util keys
 * unused' is tested end to end without a KMS (tests/kmip/ covers the kmip
 * provider's). Not a secure provider: the keys are plain files.
 */
#include "vmcryptfs_keyprov.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tl {
	const struct vmc_kp_host *host;
	char dir[1024];
};

static int tl_open(const struct vmc_kp_host *host, const char *name,
		   const struct vmc_kp_param *params, size_t nparams, void **inst, char *err)
{
	struct tl *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->host = host;
	for (size_t i = 0; i < nparams; i++)
		if (!strcmp(params[i].name, "key-dir"))
			snprintf(t->dir, sizeof(t->dir), "%s", params[i].value);
	if (!t->dir[0]) {
		snprintf(err, VMC_KP_ERR_MAX, "provider %s: key-dir is required", name);
		free(t);
		return -EINVAL;
	}
	*inst = t;
	return 0;
}

static void tl_close(void *inst)
{
	free(inst);
}

static int write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, buf, len) != (ssize_t)len)
		r = -EIO;
	if (fsync(fd))
		r = -errno;
	close(fd);
	return r;
}

static int tl_create_key(void *inst, const char *label, char *id, uint8_t *kek, char *err)
{
	struct tl *t = inst;
	char path[1200];
	uint8_t rnd[16];
	int r = t->host->random(rnd, sizeof(rnd));

	if (!r)
		r = t->host->random(kek, VMC_KP_KEK_LEN);
	if (r)
		return r;
	strcpy(id, "tl-");
	for (int i = 0; i < 16; i++)
		sprintf(id + 3 + 2 * i, "%02x", rnd[i]);
	snprintf(path, sizeof(path), "%s/%s", t->dir, id);
	r = write_file(path, kek, VMC_KP_KEK_LEN);
	if (!r && label) {
		snprintf(path, sizeof(path), "%s/%s.label", t->dir, id);
		r = write_file(path, label, strlen(label));
	}
	if (r)
		snprintf(err, VMC_KP_ERR_MAX, "cannot store key %s: %s", id, strerror(-r));
	return r;
}

static int tl_get_key(void *inst, const char *id, uint8_t *kek, char *err)
{
	struct tl *t = inst;
	char path[1200];
	int fd;
	ssize_t n;

	if (strchr(id, '/') || id[0] == '.') {
		snprintf(err, VMC_KP_ERR_MAX, "bad key id");
		return -ENOKEY;
	}
	snprintf(path, sizeof(path), "%s/%s", t->dir, id);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, VMC_KP_ERR_MAX, "no key %s", id);
		return -ENOKEY;
	}
	n = read(fd, kek, VMC_KP_KEK_LEN);
	close(fd);
	if (n != VMC_KP_KEK_LEN) {
		snprintf(err, VMC_KP_ERR_MAX, "key %s is damaged", id);
		return -EBADMSG;
	}
	return 0;
}

static int tl_list_keys(void *inst, const char *prefix,
			int (*cb)(void *arg, const char *id, const char *label), void *arg,
			char *err)
{
	struct tl *t = inst;
	struct dirent *de;
	DIR *d = opendir(t->dir);
	int r = 0;

	if (!d) {
		snprintf(err, VMC_KP_ERR_MAX, "%s: %s", t->dir, strerror(errno));
		return -EIO;
	}
	while (!r && (de = readdir(d))) {
		char path[1200], label[256] = "";
		size_t len = strlen(de->d_name);
		int fd;

		if (de->d_name[0] == '.' || (len > 6 && !strcmp(de->d_name + len - 6, ".label")))
			continue;
		snprintf(path, sizeof(path), "%s/%s.label", t->dir, de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = read(fd, label, sizeof(label) - 1);
			label[n > 0 ? n : 0] = '\0';
			close(fd);
		}
		if (strncmp(label, prefix, strlen(prefix)))
			continue;
		r = cb(arg, de->d_name, fd >= 0 ? label : NULL);
	}
	closedir(d);
	return r;
}

static const struct vmc_kp_ops tl_ops = {
	.abi_version = VMC_KP_ABI_VERSION,
	.struct_size = sizeof(struct vmc_kp_ops),
	.type = "testlist",
	.version = "test",
	.flags = 0,
	.open = tl_open,
	.close = tl_close,
	.create_key = tl_create_key,
	.get_key = tl_get_key,
	.list_keys = tl_list_keys,
};

__attribute__((visibility("default"))) const struct vmc_kp_ops *vmcryptfs_keyprov_entry_v1(void);

const struct vmc_kp_ops *vmcryptfs_keyprov_entry_v1(void)
{
	return &tl_ops;
}
