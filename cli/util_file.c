// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * One backing file as vmcryptfs-util sees it: opened read-only, its header
 * examined by the core library (vmc_hdr_examine), described, its data key
 * unwrapped from a slot, and its contents streamed out decrypted.
 *
 * Streaming works in fixed chunks of whole data units (CHUNK), so memory
 * does not grow with the file. Holes of the backing file (SEEK_DATA) are
 * zeros without being read or decrypted, which is exactly how the daemon
 * reads them (a stored unit of 16 bytes or more that is all zeros is a
 * hole; a final unit of 1..15 bytes is always ciphertext).
 */
#include "util_cli.h"
#include "vmc_crypto.h"
#include "vmc_pwkek.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HDR ((uint64_t)VMC_FMT_HDR_SIZE)
#define UNIT ((uint64_t)VMC_FMT_UNIT_SIZE)
#define CHUNK (1u << 20) /* 256 data units */

int util_file_open(struct util_file *f, int dirfd, const char *name, const char *display,
		   bool nofollow, char *err, size_t errlen)
{
	uint8_t *buf;
	ssize_t n;
	int r;

	memset(f, 0, sizeof(*f));
	f->fd = -1;
	snprintf(f->path, sizeof(f->path), "%s", display ? display : name);
	f->fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
				       (nofollow ? O_NOFOLLOW : 0));
	if (f->fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", f->path,
			 r == -ELOOP && nofollow ? "a symbolic link (not followed)" : strerror(-r));
		return r;
	}
	if (fstat(f->fd, &f->st)) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", f->path, strerror(-r));
		goto fail;
	}
	if (!S_ISREG(f->st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", f->path);
		r = -EINVAL;
		goto fail;
	}
	buf = calloc(1, HDR);
	if (!buf) {
		r = -ENOMEM;
		goto fail;
	}
	n = pread(f->fd, buf, HDR, 0);
	if (n < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: cannot read: %s", f->path, strerror(-r));
		free(buf);
		goto fail;
	}
	util_file_examine(f, buf, (size_t)n);
	free(buf);
	return 0;
fail:
	close(f->fd);
	f->fd = -1;
	return r;
}

void util_file_examine(struct util_file *f, const uint8_t *buf, size_t n)
{
	f->nfirst = n < sizeof(f->first) ? n : sizeof(f->first);
	memcpy(f->first, buf, f->nfirst);
	f->size = (uint64_t)f->st.st_size;
	f->encrypted = false;
	if (n > 0 && vmc_hdr_probe(buf, n) == VMC_PROBE_ENCRYPTED) {
		f->encrypted = true;
		f->verdict = vmc_hdr_examine(&f->hdr, buf, n, &f->rep);
		f->size = f->size > HDR ? f->size - HDR : 0;
		/* An interrupted truncate: read as the daemon will finish it. */
		if (!f->verdict && f->hdr.trunc_pending)
			f->size = f->hdr.trunc_size;
	}
}

void util_file_close(struct util_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

bool util_file_damaged(const struct util_file *f)
{
	return f->encrypted && (f->verdict || f->rep.nproblems);
}

static void hex(const uint8_t *in, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", in[i]);
}

json_object *util_file_json(const struct util_file *f)
{
	json_object *o = json_object_new_object(), *slots, *probs;
	const struct vmc_fmt_file_fixed *fx = &f->hdr.raw.fixed;
	char id[33], when[64];
	struct tm tm;
	time_t t;

	json_object_object_add(o, "file", json_object_new_string(f->path));
	json_object_object_add(o, "encrypted", json_object_new_boolean(f->encrypted));
	json_object_object_add(o, "backing_size", json_object_new_int64((int64_t)f->st.st_size));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)f->size));
	if (f->encrypted && !f->verdict)
		json_object_object_add(o, "truncate_pending",
				       json_object_new_boolean(f->hdr.trunc_pending));
	if (!f->encrypted)
		return o;
	json_object_object_add(o, "intact", json_object_new_boolean(!util_file_damaged(f)));
	json_object_object_add(o, "usable", json_object_new_boolean(f->verdict == 0));
	json_object_object_add(o, "error", f->verdict ? json_object_new_string(f->rep.verdict_msg)
						       : NULL);
	probs = json_object_new_array();
	for (unsigned int i = 0; i < f->rep.nproblems; i++)
		json_object_array_add(probs, json_object_new_string(f->rep.problems[i]));
	json_object_object_add(o, "problems", probs);
	if (f->rep.truncated && f->st.st_size < (off_t)offsetof(struct vmc_fmt_file_fixed, reserved))
		return o; /* too little to describe */
	json_object_object_add(o, "version", json_object_new_int(f->hdr.version));
	json_object_object_add(o, "cipher", json_object_new_string(
		fx->cipher == VMC_FMT_CIPHER_AES256_XTS ? "AES-256-XTS" : "unknown"));
	json_object_object_add(o, "cipher_id", json_object_new_int(fx->cipher));
	json_object_object_add(o, "data_unit", json_object_new_int64(
		fx->unit_shift < 31 ? (int64_t)1 << fx->unit_shift : 0));
	json_object_object_add(o, "class", json_object_new_string(vmc_class_fmt_name(fx->file_class)));
	hex(fx->file_id, 16, id);
	json_object_object_add(o, "file_id", json_object_new_string(id));
	hex(fx->vm_uuid, 16, id);
	json_object_object_add(o, "vm_id", json_object_new_string(id));
	json_object_object_add(o, "created", json_object_new_uint64(f->hdr.created));
	t = (time_t)f->hdr.created;
	/* Any value may be there: gmtime_r fails for years it cannot represent. */
	if (f->hdr.created <= INT64_MAX && gmtime_r(&t, &tm) &&
	    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm))
		json_object_object_add(o, "created_utc", json_object_new_string(when));
	slots = json_object_new_array();
	for (int i = 0; i < VMC_FMT_NSLOTS; i++) {
		const struct vmc_hdr_slot *s = &f->hdr.slots[i];
		json_object *so;

		if (s->status == VMC_SLOT_EMPTY)
			continue;
		so = json_object_new_object();
		json_object_object_add(so, "slot", json_object_new_int(i));
		json_object_object_add(so, "status", json_object_new_string(
			s->status == VMC_SLOT_OK ? "ok" : "damaged"));
		if (s->status == VMC_SLOT_OK) {
			json_object_object_add(so, "provider", json_object_new_string(s->provider));
			json_object_object_add(so, "kek_id", json_object_new_string(s->kek_id));
			json_object_object_add(so, "generation",
					       json_object_new_int64((int64_t)s->generation));
		} else {
			json_object_object_add(so, "damage", json_object_new_string(s->damage));
		}
		json_object_array_add(slots, so);
	}
	json_object_object_add(o, "slots", slots);
	return o;
}

int util_slot_open(const struct util_file *f, int slot, const char *password, uint8_t *dek,
		   char *err, size_t errlen)
{
	const struct vmc_hdr_slot *s = &f->hdr.slots[slot];
	struct vmc_keyring *kr;
	struct vmc_kek *k = NULL;
	int r;

	if (f->verdict || s->status != VMC_SLOT_OK) {
		snprintf(err, errlen, "slot %d is not usable", slot);
		return -EUCLEAN;
	}
	if (!strcmp(s->provider, VMC_PWKEK_PROVIDER)) {
		if (!password) {
			snprintf(err, errlen, "sealed under a password: give --password-file FILE");
			return -ENOKEY;
		}
		r = vmc_pwkek_derive(s->kek_id, password, strlen(password), &k, err, errlen);
	} else {
		r = util_keyring(&kr, err, errlen);
		if (!r)
			r = vmc_keyring_get(kr, s->provider, s->kek_id, &k, err, errlen);
	}
	if (r)
		return r;
	r = vmc_hdr_unseal(&f->hdr, slot, k->kek_wrap_key, dek);
	vmc_kek_put(k);
	if (r == -EKEYREJECTED) {
		if (!strcmp(s->provider, VMC_PWKEK_PROVIDER))
			snprintf(err, errlen, "wrong password (or the header was tampered with)");
		else
			snprintf(err, errlen, "key %s of provider \"%s\" does not open slot %d "
				 "(wrong key or tampered header)", s->kek_id, s->provider, slot);
	} else if (r) {
		snprintf(err, errlen, "cannot unseal slot %d: %s", slot, strerror(-r));
	}
	return r;
}

int util_file_unlock(const struct util_file *f, const char *password, struct vmc_dek **dek,
		     int *slot, char *err, size_t errlen)
{
	int order[VMC_FMT_NSLOTS], n = 0, r = -ENOKEY, first_r = 0;
	char msg[512];
	uint8_t *key;

	if (f->verdict) {
		snprintf(err, errlen, "%s: %s", f->path, f->rep.verdict_msg);
		return f->verdict;
	}
	for (int i = 0; i < VMC_FMT_NSLOTS; i++)
		if (f->hdr.slots[i].status == VMC_SLOT_OK)
			order[n++] = i;
	/* Newest generation first (FORMAT.md 3.2). */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && f->hdr.slots[order[j]].generation >
					 f->hdr.slots[order[j - 1]].generation; j--) {
			int t = order[j];

			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	key = vmc_secret_alloc(VMC_FMT_DEK_LEN);
	if (!key)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		r = util_slot_open(f, order[i], password, key, msg, sizeof(msg));
		if (!r) {
			r = vmc_dek_new(dek, key);
			*slot = order[i];
			break;
		}
		if (!first_r) {
			first_r = r;
			snprintf(err, errlen, "%s: %s", f->path, msg);
		}
	}
	vmc_secret_free(key, VMC_FMT_DEK_LEN);
	return r ? (first_r ? first_r : r) : 0;
}

/* Write @len bytes, or with @sparse skip them when they are zero (a hole). */
static int out_write(int out, bool sparse, const uint8_t *buf, size_t len, char *err,
		     size_t errlen)
{
	static const uint8_t zero[4096];

	while (len) {
		size_t n = len < sizeof(zero) ? len : sizeof(zero);
		ssize_t w;

		if (sparse && !memcmp(buf, zero, n)) {
			if (lseek(out, (off_t)n, SEEK_CUR) < 0)
				goto fail;
			buf += n;
			len -= n;
			continue;
		}
		/* Write whole runs of non-zero data at once. */
		n = len;
		if (sparse)
			for (n = 0; n < len; n += sizeof(zero)) {
				size_t m = len - n < sizeof(zero) ? len - n : sizeof(zero);

				if (n && !memcmp(buf + n, zero, m))
					break;
			}
		if (n > len)
			n = len;
		w = write(out, buf, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		buf += w;
		len -= (size_t)w;
	}
	return 0;
fail:
	snprintf(err, errlen, "cannot write the output: %s", strerror(errno));
	return -errno;
}

/* @len zero bytes to @out. */
static int out_zeros(int out, bool sparse, uint64_t len, uint8_t *buf, char *err,
		     size_t errlen)
{
	if (sparse) {
		if (lseek(out, (off_t)len, SEEK_CUR) < 0) {
			snprintf(err, errlen, "cannot seek in the output: %s", strerror(errno));
			return -errno;
		}
		return 0;
	}
	memset(buf, 0, CHUNK);
	while (len) {
		size_t n = len < CHUNK ? (size_t)len : CHUNK;
		int r = out_write(out, false, buf, n, err, errlen);

		if (r)
			return r;
		len -= n;
	}
	return 0;
}

int util_file_stream(const struct util_file *f, struct vmc_dek *dek, int out, uint64_t off,
		     uint64_t len, uint64_t *written, char *err, size_t errlen)
{
	uint64_t end, pos, base = dek ? HDR : 0, start;
	struct stat ost;
	bool sparse;
	uint8_t *buf;
	int r = 0;

	*written = 0;
	if (off >= f->size)
		return 0;
	end = len > f->size - off ? f->size : off + len;
	/* Holes in a regular output file (not one opened for appending, where
	 * seeking would not move the writes). */
	sparse = !fstat(out, &ost) && S_ISREG(ost.st_mode) && lseek(out, 0, SEEK_CUR) >= 0 &&
		 !(fcntl(out, F_GETFL) & O_APPEND);
	start = lseek(out, 0, SEEK_CUR) >= 0 ? (uint64_t)lseek(out, 0, SEEK_CUR) : 0;
	buf = malloc(CHUNK);
	if (!buf)
		return -ENOMEM;
	/* Encrypted data is read in whole units; cleartext from @off on. */
	pos = dek ? off / UNIT * UNIT : off;
	while (pos < end && !r) {
		uint64_t stop, n, skip, hole_end;
		off_t data = lseek(f->fd, (off_t)(base + pos), SEEK_DATA);
		ssize_t got;

		/* A hole up to @data, or to the end of the file (ENXIO); a file
		 * system without SEEK_DATA has no holes to skip. */
		if (data < 0)
			hole_end = errno == ENXIO ? f->size : pos;
		else
			hole_end = (uint64_t)data - base;
		if (dek && hole_end > pos) {
			/* Whole units only, and never a final unit of 1..15 bytes. */
			hole_end = hole_end / UNIT * UNIT;
			if (hole_end >= f->size && f->size % UNIT && f->size % UNIT < 16)
				hole_end = f->size / UNIT * UNIT;
		}
		if (hole_end > pos) {
			stop = hole_end < end ? hole_end : end;
			skip = pos < off ? off - pos : 0;
			if (stop > pos + skip)
				r = out_zeros(out, sparse, stop - pos - skip, buf, err, errlen);
			pos = hole_end;
			continue;
		}
		n = end - pos;
		if (dek && end % UNIT && end != f->size)
			n = (end + UNIT - 1) / UNIT * UNIT - pos; /* whole units */
		if (n > CHUNK)
			n = CHUNK;
		if (pos + n > f->size)
			n = f->size - pos;
		got = pread(f->fd, buf, (size_t)n, (off_t)(base + pos));
		if (got < 0 || (uint64_t)got != n) {
			r = got < 0 ? -errno : -EIO;
			snprintf(err, errlen, "%s: cannot read at offset %llu: %s", f->path,
				 (unsigned long long)(base + pos),
				 got < 0 ? strerror(errno) : "the file is shorter than its size");
			break;
		}
		if (dek && f->hdr.trunc_pending) {
			/* The final unit's new ciphertext, from the record. */
			uint64_t at = f->size / UNIT * UNIT + f->hdr.trunc_off;

			if (at >= pos && at + f->hdr.trunc_len <= pos + n)
				memcpy(buf + (at - pos), f->hdr.raw.trunc.bytes, f->hdr.trunc_len);
		}
		if (dek) {
			r = vmc_dek_decrypt(dek, pos / UNIT, buf, (size_t)n);
			if (r) {
				snprintf(err, errlen, "%s: cannot decrypt: %s", f->path, strerror(-r));
				break;
			}
		}
		skip = pos < off ? off - pos : 0;
		stop = pos + n < end ? pos + n : end;
		if (stop > pos + skip)
			r = out_write(out, sparse, buf + skip, (size_t)(stop - pos - skip), err,
				      errlen);
		pos += n;
	}
	free(buf);
	if (!r && sparse) {
		/* Trailing holes: the size comes from truncating up. */
		if (ftruncate(out, (off_t)(start + end - off))) {
			snprintf(err, errlen, "cannot size the output: %s", strerror(errno));
			r = -errno;
		}
	}
	if (!r)
		*written = end - off;
	return r;
}
