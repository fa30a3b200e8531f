// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * VM key record: encode/decode and atomic file I/O (docs/FORMAT.md,
 * "VM key record").
 */
#include "vmc_vmstate.h"
#include "vmc_crypto.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static bool field_ok(const char *s, size_t size, size_t len)
{
	if (len == 0 || len >= size)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return vmc_fmt_is_zero(s + len, size - len);
}

static int kekref_parse(const struct vmc_fmt_kekref *in, struct vmc_kekref *out)
{
	size_t plen = in->provider_len, klen = le16toh(in->kek_id_len);

	memset(out, 0, sizeof(*out));
	if (vmc_fmt_is_zero(in, sizeof(*in)))
		return 0;
	if (in->reserved0 || !vmc_fmt_is_zero(in->reserved1, sizeof(in->reserved1)) ||
	    !field_ok(in->provider, sizeof(in->provider), plen) ||
	    !field_ok(in->kek_id, sizeof(in->kek_id), klen))
		return -EUCLEAN;
	memcpy(out->provider, in->provider, plen);
	memcpy(out->kek_id, in->kek_id, klen);
	memcpy(out->key_check, in->key_check, sizeof(out->key_check));
	out->set = true;
	return 0;
}

static void kekref_encode(const struct vmc_kekref *in, struct vmc_fmt_kekref *out)
{
	memset(out, 0, sizeof(*out));
	if (!in->set)
		return;
	out->provider_len = (uint8_t)strlen(in->provider);
	out->kek_id_len = htole16((uint16_t)strlen(in->kek_id));
	memcpy(out->provider, in->provider, out->provider_len);
	memcpy(out->kek_id, in->kek_id, le16toh(out->kek_id_len));
	memcpy(out->key_check, in->key_check, sizeof(out->key_check));
}

int vmc_vmstate_parse(struct vmc_vmstate *s, const void *buf, size_t len, char *err,
		      size_t errlen)
{
	const struct vmc_fmt_vmstate *v = buf;
	uint8_t sum[VMC_SHA256_LEN];

	memset(s, 0, sizeof(*s));
	if (len < sizeof(v->prefix) || memcmp(v->prefix.magic, VMC_FMT_MAGIC, VMC_FMT_MAGIC_LEN) ||
	    le16toh(v->prefix.type) != VMC_FMT_TYPE_VMSTATE) {
		snprintf(err, errlen, "not a vmcryptfs VM key record");
		return -EUCLEAN;
	}
	if (le16toh(v->prefix.version) > VMC_FMT_VERSION) {
		snprintf(err, errlen, "VM key record version %u is newer than supported (%u)",
			 le16toh(v->prefix.version), VMC_FMT_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (len != sizeof(*v)) {
		snprintf(err, errlen, "VM key record has %zu bytes, expected %zu", len, sizeof(*v));
		return -EUCLEAN;
	}
	vmc_sha256(v, offsetof(struct vmc_fmt_vmstate, checksum), sum);
	if (memcmp(sum, v->checksum, sizeof(sum))) {
		snprintf(err, errlen, "VM key record checksum mismatch (damaged)");
		return -EUCLEAN;
	}
	if (le32toh(v->incompat_flags)) {
		snprintf(err, errlen, "VM key record requires unsupported features 0x%x",
			 le32toh(v->incompat_flags));
		return -EPROTONOSUPPORT;
	}
	if (v->state > VMC_FMT_VMSTATE_REKEY || !vmc_fmt_is_zero(v->reserved1, sizeof(v->reserved1)) ||
	    !vmc_fmt_is_zero(v->reserved2, sizeof(v->reserved2)) || v->reserved0) {
		snprintf(err, errlen, "VM key record has unknown state or non-zero reserved bytes");
		return -EUCLEAN;
	}
	if (kekref_parse(&v->current, &s->current) || kekref_parse(&v->next, &s->next) ||
	    !s->current.set) {
		snprintf(err, errlen, "VM key record has a bad key reference");
		return -EUCLEAN;
	}
	if ((v->state == VMC_FMT_VMSTATE_REKEY) != s->next.set) {
		snprintf(err, errlen, "VM key record: the next key is %s but the state is %s",
			 s->next.set ? "set" : "not set",
			 v->state == VMC_FMT_VMSTATE_REKEY ? "rekey" : "steady");
		return -EUCLEAN;
	}
	memcpy(s->vm_uuid, v->vm_uuid, sizeof(s->vm_uuid));
	s->seq = le64toh(v->seq);
	s->created = le64toh(v->created);
	s->state = v->state;
	return 0;
}

void vmc_vmstate_encode(const struct vmc_vmstate *s, struct vmc_fmt_vmstate *v)
{
	memset(v, 0, sizeof(*v));
	memcpy(v->prefix.magic, VMC_FMT_MAGIC, VMC_FMT_MAGIC_LEN);
	v->prefix.type = htole16(VMC_FMT_TYPE_VMSTATE);
	v->prefix.version = htole16(VMC_FMT_VERSION);
	memcpy(v->vm_uuid, s->vm_uuid, sizeof(v->vm_uuid));
	v->seq = htole64(s->seq);
	v->created = htole64(s->created);
	v->state = s->state;
	kekref_encode(&s->current, &v->current);
	kekref_encode(&s->next, &v->next);
	vmc_sha256(v, offsetof(struct vmc_fmt_vmstate, checksum), v->checksum);
}

int vmc_vmstate_key_check(const uint8_t check_key[32], const uint8_t vm_uuid[16],
			  const char *provider, const char *kek_id, uint8_t out[32])
{
	uint8_t msg[16 + VMC_FMT_PROVIDER_MAX + VMC_FMT_KEKID_MAX] = { 0 };
	size_t plen = strlen(provider), klen = strlen(kek_id);

	if (plen >= VMC_FMT_PROVIDER_MAX || klen >= VMC_FMT_KEKID_MAX)
		return -EINVAL;
	memcpy(msg, vm_uuid, 16);
	memcpy(msg + 16, provider, plen);
	memcpy(msg + 16 + VMC_FMT_PROVIDER_MAX, kek_id, klen);
	return vmc_hmac_sha256(check_key, 32, msg, sizeof(msg), out);
}

int vmc_vmstate_read(int dirfd, const char *name, struct vmc_vmstate *s, char *err,
		     size_t errlen)
{
	struct vmc_fmt_vmstate buf;
	struct stat st;
	ssize_t n;
	int fd, r;

	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		if (r != -ENOENT)
			snprintf(err, errlen, "cannot open %s: %s", name, strerror(errno));
		return r;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", name);
		close(fd);
		return -EUCLEAN;
	}
	n = pread(fd, &buf, sizeof(buf), 0);
	r = n < 0 ? -errno : 0;
	close(fd);
	if (r) {
		snprintf(err, errlen, "cannot read %s: %s", name, strerror(-r));
		return r;
	}
	if (st.st_size != (off_t)sizeof(buf)) {
		snprintf(err, errlen, "%s has %lld bytes, expected %zu", name,
			 (long long)st.st_size, sizeof(buf));
		return -EUCLEAN;
	}
	return vmc_vmstate_parse(s, &buf, (size_t)n, err, errlen);
}

/*
 * Write @s as @name in @dirfd through a private temporary file (several
 * daemons may share the directory), then rename it over @name, or with
 * @exclusive link it to @name, failing with -EEXIST if @name exists.
 */
static int vmstate_put(int dirfd, const char *name, struct vmc_vmstate *s, bool exclusive)
{
	struct vmc_fmt_vmstate buf;
	uint32_t rnd = 0;
	char tmp[160];
	int fd, r = 0;

	if (vmc_random(&rnd, sizeof(rnd)))
		return -EIO;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%08x", name, (long)getpid(), rnd) >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	s->seq++;
	vmc_vmstate_encode(s, &buf);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	{
		ssize_t n = pwrite(fd, &buf, sizeof(buf), 0);

		if (n < 0)
			r = -errno;
		else if (n != (ssize_t)sizeof(buf))
			r = -EIO;
	}
	if (!r && fsync(fd))
		r = -errno;
	close(fd);
	if (!r && exclusive) {
		if (linkat(dirfd, tmp, dirfd, name, 0))
			r = -errno;
		unlinkat(dirfd, tmp, 0);
	} else if (!r && renameat(dirfd, tmp, dirfd, name)) {
		r = -errno;
	}
	if (!r) {
		/* dirfd may be an O_PATH descriptor, which cannot be synced. */
		int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd < 0 || fsync(dfd))
			r = -errno;
		if (dfd >= 0)
			close(dfd);
	}
	if (r)
		unlinkat(dirfd, tmp, 0);
	return r;
}

int vmc_vmstate_write(int dirfd, const char *name, struct vmc_vmstate *s)
{
	return vmstate_put(dirfd, name, s, false);
}

int vmc_vmstate_create(int dirfd, const char *name, struct vmc_vmstate *s)
{
	return vmstate_put(dirfd, name, s, true);
}
