// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The data path of encrypted files (docs/FORMAT.md, "Data units").
 *
 * Plaintext offset p lives at backing offset 4096 + p; the logical size is the
 * backing size minus the 4096-byte header, so appends need no metadata write.
 * Data unit i (plaintext bytes [4096 i, 4096 i + 4096)) is AES-256-XTS with
 * tweak i; a final partial unit uses ciphertext stealing (>= 16 bytes) or a
 * keystream (1..15 bytes). Because the encryption of the final unit depends on
 * its length, every change of size re-encodes the old final unit first.
 *
 * Concurrency. Writes and reads lock the data units they touch in the inode's
 * range lock (exclusive / shared), so different regions of a disk proceed in
 * parallel and only partial-unit read-modify-write of the same unit waits.
 * Anything that changes the size or the encryption state also holds in_lock
 * and locks every unit whose length changes. A write that stays inside the
 * current size needs only its range; one that extends the file retries under
 * in_lock. in_crypt's contents only change under in_lock plus an exclusive
 * lock on all units, so any range lock keeps them stable.
 *
 * Buffers are per thread (allocated once, 4 KiB aligned): no allocation per
 * request.
 */
#include "vmcfs.h"
#include "lease.h"
#include "metrics.h"
#include "vmc_crypto.h"
#include "vmc_log.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HDR ((uint64_t)VMC_FMT_HDR_SIZE)
#define UNIT ((uint64_t)VMC_FMT_UNIT_SIZE)
#define USHIFT VMC_FMT_UNIT_SHIFT

/* --- per-thread buffers --------------------------------------------------- */

struct io_tls {
	uint8_t *buf;
	size_t cap;
	uint8_t *unit; /* one data unit of scratch */
};

static pthread_key_t io_key;
static pthread_once_t io_once = PTHREAD_ONCE_INIT;

static void io_tls_free(void *p)
{
	struct io_tls *t = p;

	if (!t)
		return;
	free(t->buf);
	free(t->unit);
	free(t);
}

static void io_key_init(void)
{
	pthread_key_create(&io_key, io_tls_free);
}

void vmc_io_thread_fini(void)
{
	pthread_once(&io_once, io_key_init);
	io_tls_free(pthread_getspecific(io_key));
	pthread_setspecific(io_key, NULL);
}

static struct io_tls *io_tls(void)
{
	struct io_tls *t;

	pthread_once(&io_once, io_key_init);
	t = pthread_getspecific(io_key);
	if (t)
		return t;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	if (posix_memalign((void **)&t->unit, UNIT, UNIT)) {
		free(t);
		return NULL;
	}
	pthread_setspecific(io_key, t);
	return t;
}

/* A buffer of at least @len bytes, valid until the thread's next request. */
static uint8_t *io_buf(size_t len)
{
	struct io_tls *t = io_tls();

	if (!t)
		return NULL;
	if (t->cap < len) {
		size_t cap = (len + UNIT - 1) & ~(UNIT - 1);
		void *p;

		if (posix_memalign(&p, UNIT, cap))
			return NULL;
		free(t->buf);
		t->buf = p;
		t->cap = cap;
	}
	return t->buf;
}

static uint8_t *io_unit(void)
{
	struct io_tls *t = io_tls();

	return t ? t->unit : NULL;
}

/* --- helpers -------------------------------------------------------------- */

/* Length of data unit @u in a file of @size bytes (0 if beyond the end). */
static inline uint64_t unit_len(uint64_t u, uint64_t size)
{
	uint64_t start = u << USHIFT;

	if (size <= start)
		return 0;
	return size - start < UNIT ? size - start : UNIT;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Account @len bytes through the cipher since @t0 ([0] encrypt, [1] decrypt). */
static void cipher_account(int dir, uint64_t len, uint64_t t0)
{
	vmc_metric_add(&vmc_metrics.cipher_bytes[dir], len);
	vmc_metric_add(&vmc_metrics.cipher_ns[dir], mono_ns() - t0);
}

/* pread that retries short reads and zero-fills what lies past the backing EOF. */
static int pread_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	memset(buf + done, 0, len - done);
	return 0;
}

static int pwrite_full(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, buf + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

/* Read and decrypt unit @u, @len bytes long, into @buf (our own read: no atime). */
static int unit_load(struct vmc_inode *in, int fd, uint64_t u, uint64_t len, uint8_t *buf)
{
	int r;

	(void)fd;
	if (len == 0)
		return 0;
	r = pread_full(in->in_crypt->fc_rfd, buf, len, HDR + (u << USHIFT));
	if (!r)
		r = vmc_dek_decrypt(in->in_crypt->fc_dek, u, buf, len);
	return r;
}

/*
 * Re-encode unit @u from its length in a file of @old_size bytes to
 * @new_len bytes (zero-extended or cut). A unit that was a hole and stays
 * all zeros at >= 16 bytes stays a hole (nothing written).
 */
static int unit_reencode(struct vmc_inode *in, int fd, uint64_t u, uint64_t old_size,
			 uint64_t new_len)
{
	uint64_t old_len = unit_len(u, old_size);
	uint8_t *b = io_unit();
	bool hole;
	int r;

	if (!b)
		return -ENOMEM;
	if (old_len == new_len || new_len == 0)
		return 0;
	r = pread_full(in->in_crypt->fc_rfd, b, old_len, HDR + (u << USHIFT));
	if (r)
		return r;
	hole = old_len == 0 || vmc_unit_is_hole(b, old_len);
	if (hole && new_len >= 16)
		return 0; /* zeros before and after; the backing extension reads as zeros */
	if (!hole) {
		r = vmc_dek_decrypt(in->in_crypt->fc_dek, u, b, old_len);
		if (r)
			return r;
	} else {
		memset(b, 0, old_len);
	}
	if (new_len > old_len)
		memset(b + old_len, 0, new_len - old_len);
	r = vmc_dek_encrypt(in->in_crypt->fc_dek, u, b, new_len);
	if (!r)
		r = pwrite_full(fd, b, new_len, HDR + (u << USHIFT));
	return r;
}

/*
 * Write @len bytes of @src (NULL: zeros) at plaintext offset @off into a file
 * whose size goes from @old_size to @new_size (new_size >= off + len). The
 * caller holds an exclusive range lock on the units touched.
 */
static int units_write(struct vmc_inode *in, int fd, const uint8_t *src, size_t len, uint64_t off,
		       uint64_t old_size, uint64_t new_size)
{
	uint64_t end = off + len, u0 = off >> USHIFT, u1 = (end + UNIT - 1) >> USHIFT;
	uint64_t span = min_u64(u1 << USHIFT, new_size) - (u0 << USHIFT);
	uint8_t *out = io_buf(span);
	struct vmc_dek *dek = in->in_crypt->fc_dek;
	uint8_t *o = out;
	uint64_t t0;
	int r = 0;

	if (!out)
		return -ENOMEM;
	t0 = mono_ns();
	for (uint64_t u = u0; u < u1;) {
		uint64_t ustart = u << USHIFT, lnew = unit_len(u, new_size);
		uint64_t a = off > ustart ? off - ustart : 0;          /* covered: [a, b) */
		uint64_t b = min_u64(end - ustart, lnew);
		const uint8_t *s = src ? src + (ustart + a - off) : NULL;

		if (a == 0 && b == lnew) {
			/* A run of units the write covers whole: encrypted straight from
			 * the request (zeros for a NULL source). */
			uint64_t run = 0, n = 0;

			while (u + n < u1) {
				uint64_t l = unit_len(u + n, new_size);

				if (((u + n) << USHIFT) + l > end)
					break;
				run += l;
				n++;
			}
			if (s) {
				r = vmc_dek_encrypt_to(dek, u, s, o, run);
			} else {
				memset(o, 0, run);
				r = vmc_dek_encrypt(dek, u, o, run);
			}
			if (r)
				goto out;
			o += run;
			u += n;
			continue;
		}
		/* Read-modify-write of a partially covered unit. */
		{
			uint64_t lold = unit_len(u, old_size);

			r = unit_load(in, fd, u, lold, o);
			if (r)
				goto out;
			if (lnew > lold)
				memset(o + lold, 0, lnew - lold);
			if (s)
				memcpy(o + a, s, b - a);
			else
				memset(o + a, 0, b - a);
			r = vmc_dek_encrypt(dek, u, o, lnew);
			if (r)
				goto out;
		}
		o += lnew;
		u++;
	}
	cipher_account(0, span, t0); /* (includes the reads of partial units) */
	r = pwrite_full(fd, out, span, HDR + (u0 << USHIFT));
out:
	return r;
}

/* --- attach / detach ------------------------------------------------------ */

int vmc_quiet_fd(struct vmc_inode *in, int fd)
{
	int q = vmc_reopen(in, O_RDONLY | O_NOATIME);

	if (q < 0)
		q = vmc_reopen(in, O_RDONLY); /* not ours to O_NOATIME (not root) */
	if (q < 0)
		q = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	return q < 0 ? -errno : q;
}

static int trunc_record(int fd, const struct vmc_fmt_trunc *t);
static int trunc_finish(int fd, const struct vmc_fmt_trunc *t);

/*
 * The header records a truncate that a crash interrupted: finish it, holding
 * the VM's lock (another host that holds it may be doing that very truncate:
 * -EBUSY until it is done).
 */
static int trunc_redo(struct vmc_inode *in, const struct vmc_hdr *hdr, const char *where)
{
	struct vmc_lease *lease;
	int r, w;

	r = vmc_inode_lease(in, NULL, &lease);
	if (r)
		return r;
	w = vmc_reopen(in, O_RDWR);
	r = w < 0 ? w : trunc_finish(w, &hdr->raw.trunc);
	if (w >= 0)
		close(w);
	vmc_lease_put(lease);
	if (r)
		vmc_err("%s: cannot finish an interrupted truncate: %s", where, strerror(-r));
	else
		vmc_notice("%s: finished an interrupted truncate to %llu bytes", where,
			   (unsigned long long)hdr->trunc_size);
	return r;
}

int vmc_crypt_attach(struct vmc_inode *in, int fd)
{
	struct vmc_fcrypt *fc = in->in_crypt, *fresh = NULL;
	struct vmc_hdr *hdr = NULL;
	uint8_t *hbuf = NULL, *dek = NULL;
	char err[256], where[512];
	struct vmc_dek *d = NULL;
	struct stat st;
	size_t hlen;
	int r, q;

	if (fstat(fd, &st))
		return -errno;
	/* The daemon's own reads leave the access time alone, as the kernel's
	 * open, write and truncate do. */
	q = vmc_quiet_fd(in, fd);
	if (q < 0)
		return q;
	hbuf = malloc(HDR);
	hdr = malloc(sizeof(*hdr));
	if (!hbuf || !hdr) {
		r = -ENOMEM;
		goto out;
	}
	hlen = st.st_size < (off_t)HDR ? (size_t)st.st_size : HDR;
	r = pread_full(q, hbuf, hlen, 0);
	if (r)
		goto out;
	if (vmc_hdr_probe(hbuf, hlen) == VMC_PROBE_CLEAR) {
		atomic_store(&in->in_undecided, st.st_size == 0);
		atomic_store(&in->in_enc, VMC_ENC_CLEAR);
		in->in_crypt_users++;
		goto out;
	}
	if (fc && atomic_load(&in->in_enc) == VMC_ENC_CRYPT) {
		in->in_crypt_users++; /* keys already loaded by another handle */
		goto out;
	}
	r = vmc_hdr_parse(hdr, hbuf, hlen, err, sizeof(err));
	if (r) {
		vmc_inode_path(in, where, sizeof(where));
		vmc_err("%s: %s", where, err);
		atomic_store(&in->in_enc, VMC_ENC_DAMAGED);
		r = -EIO;
		goto out;
	}
	if (hdr->trunc_pending) {
		vmc_inode_path(in, where, sizeof(where));
		r = trunc_redo(in, hdr, where);
		if (!r && fstat(fd, &st))
			r = -errno;
		if (r)
			goto out;
		memset(&hdr->raw.trunc, 0, sizeof(hdr->raw.trunc));
		hdr->trunc_pending = false;
	}
	dek = vmc_secret_alloc(VMC_FMT_DEK_LEN);
	if (!dek) {
		r = -ENOMEM;
		goto out;
	}
	r = vmc_vm_unwrap(in, hdr, dek);
	if (!r)
		r = vmc_dek_new(&d, dek);
	if (r)
		goto out;
	if (!fc) {
		fc = fresh = calloc(1, sizeof(*fc));
		if (!fc) {
			r = -ENOMEM;
			goto out;
		}
		fc->fc_rfd = q;
		q = -1;
	}
	vmc_dek_free(fc->fc_dek);
	fc->fc_dek = d;
	d = NULL;
	fc->fc_hdr = *hdr;
	in->in_crypt = fc;
	atomic_store(&in->in_size, (uint64_t)st.st_size - HDR);
	atomic_store(&in->in_undecided, false);
	atomic_store(&in->in_enc, VMC_ENC_CRYPT);
	in->in_crypt_users++;
out:
	if (r && fresh) {
		close(fresh->fc_rfd);
		free(fresh);
	}
	if (q >= 0)
		close(q);
	vmc_dek_free(d);
	vmc_secret_free(dek, VMC_FMT_DEK_LEN);
	free(hdr);
	free(hbuf);
	return r;
}

void vmc_crypt_detach(struct vmc_inode *in)
{
	if (--in->in_crypt_users > 0 || !in->in_crypt)
		return;
	vmc_dek_free(in->in_crypt->fc_dek);
	close(in->in_crypt->fc_rfd);
	free(in->in_crypt);
	in->in_crypt = NULL;
}

int vmc_crypt_init_header(struct vmc_inode *in, int fd, struct vmc_hdr *hdr, const uint8_t *dek)
{
	struct vmc_fcrypt *fc = in->in_crypt;
	struct vmc_dek *d;
	int r;

	r = vmc_dek_new(&d, dek);
	if (r)
		return r;
	r = pwrite_full(fd, (const uint8_t *)&hdr->raw, HDR, 0);
	if (r) {
		ftruncate(fd, 0); /* leave an empty file, never a partial header */
		vmc_dek_free(d);
		return r;
	}
	if (!fc) {
		fc = calloc(1, sizeof(*fc));
		if (fc)
			fc->fc_rfd = vmc_quiet_fd(in, fd);
		if (!fc || fc->fc_rfd < 0) {
			r = fc ? fc->fc_rfd : -ENOMEM;
			free(fc);
			ftruncate(fd, 0);
			vmc_dek_free(d);
			return r;
		}
		in->in_crypt = fc;
	} else {
		vmc_dek_free(fc->fc_dek);
	}
	fc->fc_dek = d;
	fc->fc_hdr = *hdr;
	atomic_store(&in->in_size, 0);
	atomic_store(&in->in_undecided, false);
	atomic_store(&in->in_enc, VMC_ENC_CRYPT);
	return 0;
}

/* --- read / write --------------------------------------------------------- */

int vmc_crypt_read(struct vmc_inode *in, int fd, uint8_t **out, size_t size, off_t off,
		   size_t *outlen)
{
	uint64_t u0 = (uint64_t)off >> USHIFT, u1 = ((uint64_t)off + size + UNIT - 1) >> USHIFT;
	uint64_t fsize, start, end;
	struct vmc_rl_req rq;
	uint8_t *buf;
	int r = 0;

	*outlen = 0;
	if (size == 0)
		return 0;
	vmc_rl_lock(&in->in_rl, &rq, u0, u1, false);
	fsize = atomic_load(&in->in_size);
	if ((uint64_t)off >= fsize)
		goto out;
	start = u0 << USHIFT;
	end = min_u64(u1 << USHIFT, fsize);
	buf = io_buf(end - start);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	r = pread_full(fd, buf, end - start, HDR + start);
	if (!r) {
		uint64_t t0 = mono_ns();

		r = vmc_dek_decrypt(in->in_crypt->fc_dek, u0, buf, end - start);
		cipher_account(1, end - start, t0);
	}
	if (r)
		goto out;
	*out = buf + (off - start);
	*outlen = min_u64((uint64_t)off + size, fsize) - (uint64_t)off;
out:
	vmc_rl_unlock(&in->in_rl, &rq);
	return r;
}

/*
 * An extension of a file of @size bytes failed after it may have re-encoded
 * the old final unit at a greater length and extended the backing file: put
 * that unit back at its old length and the file back at @size. If the file
 * cannot be cut, the unit keeps the length the backing size gives it, and
 * that size is the file's. Returns the logical size afterwards.
 */
static uint64_t extend_undo(struct vmc_inode *in, int fd, uint64_t size)
{
	uint64_t t = size >> USHIFT, lold = size & (UNIT - 1), have, now;
	struct stat st;

	if (fstat(fd, &st) || (uint64_t)st.st_size <= HDR + size)
		return size;
	now = (uint64_t)st.st_size - HDR;
	have = now - (t << USHIFT);
	if (have > UNIT)
		have = UNIT;
	if (lold && have != lold && unit_reencode(in, fd, t, (t << USHIFT) + have, lold))
		return now; /* the unit is as the backing size says */
	if (!ftruncate(fd, (off_t)(HDR + size)))
		return size;
	/* Cannot cut: give the unit back the length the backing size gives it. */
	if (lold && have != lold && unit_reencode(in, fd, t, size, have))
		vmc_err("cannot restore the final unit of a file after a failed extension");
	return now;
}

ssize_t vmc_crypt_write(struct vmc_inode *in, int fd, const uint8_t *buf, size_t len, off_t off)
{
	uint64_t end = (uint64_t)off + len, u0 = (uint64_t)off >> USHIFT;
	uint64_t u1 = (end + UNIT - 1) >> USHIFT, size, t;
	struct vmc_rl_req rq;
	int r;

	if (len == 0)
		return 0;
	/* Fast path: the write stays within the current size. */
	vmc_rl_lock(&in->in_rl, &rq, u0, u1, true);
	size = atomic_load(&in->in_size);
	if (atomic_load(&in->in_enc) == VMC_ENC_CRYPT && end <= size) {
		r = units_write(in, fd, buf, len, (uint64_t)off, size, size);
		vmc_rl_unlock(&in->in_rl, &rq);
		return r ? r : (ssize_t)len;
	}
	vmc_rl_unlock(&in->in_rl, &rq);

	/* The write extends the file: serialize with other size changes. */
	pthread_mutex_lock(&in->in_lock);
	if (atomic_load(&in->in_enc) != VMC_ENC_CRYPT) {
		/* Truncated to empty meanwhile: the caller classifies again. */
		pthread_mutex_unlock(&in->in_lock);
		return -EAGAIN;
	}
	size = atomic_load(&in->in_size);
	t = size >> USHIFT; /* the old final unit, partial when size % UNIT */
	vmc_rl_lock(&in->in_rl, &rq, t < u0 ? t : u0, VMC_RL_ALL, true);
	r = 0;
	if (end > size) {
		/*
		 * Reserve the backing space first: on a full disk the write fails
		 * here, before the old final unit is re-encoded, so nothing already
		 * written changes. Filesystems without fallocate skip this.
		 */
		uint64_t from = u0 << USHIFT;

		if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)(HDR + from), (off_t)(end - from)) &&
		    errno != EOPNOTSUPP && errno != ENOSYS)
			r = -errno;
		/* Only what will be written: a hole between stays a hole. */
		if (!r && (size & (UNIT - 1)) && t < u0 &&
		    fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)(HDR + (t << USHIFT)), (off_t)UNIT) &&
		    errno != EOPNOTSUPP && errno != ENOSYS)
			r = -errno;
	}
	if (!r && end > size && (size & (UNIT - 1)) && t < u0)
		r = unit_reencode(in, fd, t, size, UNIT);
	if (!r)
		r = units_write(in, fd, buf, len, (uint64_t)off, size, end > size ? end : size);
	if (!r && end > size)
		atomic_store(&in->in_size, end);
	else if (r && end > size)
		atomic_store(&in->in_size, extend_undo(in, fd, size));
	vmc_rl_unlock(&in->in_rl, &rq);
	pthread_mutex_unlock(&in->in_lock);
	return r ? r : (ssize_t)len;
}

/* --- size changes --------------------------------------------------------- */

/*
 * Grow from the current size to @size, allocating with fallocate when
 * @alloc (mode 0), else leaving holes. in_lock and the range lock from the old
 * final unit held.
 */
static int grow(struct vmc_inode *in, int fd, uint64_t size, bool alloc, uint64_t alloc_off)
{
	uint64_t old = atomic_load(&in->in_size), t = old >> USHIFT, tn = size >> USHIFT;
	uint64_t nlast = size & (UNIT - 1);
	/* A final unit of 1..15 bytes is never left as a hole (unless the
	 * re-encode of the old final unit writes it). */
	bool tail = nlast && nlast < 16 && (tn != t || !(old & (UNIT - 1)));
	int r = 0;

	/*
	 * Every instant is a whole file, for a crash at any point: reserve the
	 * space first (ENOSPC changes nothing), then re-encode the old final
	 * unit at its new length (one write, which extends the backing file to
	 * that unit's new end), then set the size, then write a short final
	 * unit. A failure undoes what was done.
	 */
	if (alloc) {
		if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)(HDR + alloc_off),
			      (off_t)(size - alloc_off)))
			return -errno;
	} else if (tail && fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)(HDR + (tn << USHIFT)),
				     (off_t)nlast) && errno != EOPNOTSUPP && errno != ENOSYS) {
		return -errno;
	}
	if (old & (UNIT - 1))
		r = unit_reencode(in, fd, t, old, unit_len(t, size));
	if (!r && ftruncate(fd, (off_t)(HDR + (tail ? tn << USHIFT : size))))
		r = -errno;
	if (!r && tail) {
		uint8_t z[16] = { 0 };

		r = vmc_dek_encrypt(in->in_crypt->fc_dek, tn, z, nlast);
		if (!r)
			r = pwrite_full(fd, z, nlast, HDR + (tn << USHIFT));
	}
	if (r) {
		atomic_store(&in->in_size, extend_undo(in, fd, old));
		return r;
	}
	atomic_store(&in->in_size, size);
	return 0;
}

/* Write an interrupted-truncate record (@t) into the header, or zeros. */
static int trunc_record(int fd, const struct vmc_fmt_trunc *t)
{
	static const struct vmc_fmt_trunc none;
	int r;

	r = pwrite_full(fd, (const uint8_t *)(t ? t : &none), sizeof(none),
			offsetof(struct vmc_fmt_file_header, trunc));
	if (!r && fdatasync(fd))
		r = -errno;
	return r;
}

/*
 * Complete the truncate @t describes: cut the backing file, put the final
 * unit's new ciphertext in place, sync, then drop the record. Every step can
 * be repeated, so a crash anywhere is finished by the next attach.
 */
static int trunc_finish(int fd, const struct vmc_fmt_trunc *t)
{
	uint64_t size = le64toh(t->new_size);
	int r = 0;

	if (ftruncate(fd, (off_t)(HDR + size)))
		r = -errno;
	if (!r)
		r = pwrite_full(fd, t->bytes, t->len,
				HDR + (size & ~(uint64_t)(UNIT - 1)) + le16toh(t->off));
	if (!r && fdatasync(fd))
		r = -errno;
	if (!r)
		r = trunc_record(fd, NULL);
	return r;
}

int vmc_crypt_finish_truncate(int fd, const struct vmc_hdr *h)
{
	return h->trunc_pending ? trunc_finish(fd, &h->raw.trunc) : 0;
}

/*
 * Shrink from @old to @size (0 < size < old). Cutting the backing file is
 * enough unless the new final unit is partial: then XTS ciphertext stealing
 * changes its last 1..32 ciphertext bytes too, and a crash between the cut
 * and that write would leave them garbage under either length. So the change
 * is recorded in the header first (synced), done, and the record dropped.
 */
static int shrink(struct vmc_inode *in, int fd, uint64_t old, uint64_t size)
{
	uint64_t t = size >> USHIFT, nlen = size & (UNIT - 1), olen = unit_len(t, old);
	uint8_t *b = io_unit(), *c = io_buf(UNIT); /* the old and the new final unit */
	struct vmc_fmt_trunc rec;
	struct stat st;
	size_t a;
	int r;

	if (!b || !c)
		return -ENOMEM;
	if (!nlen)
		goto cut; /* whole units go; the others are untouched */
	r = pread_full(in->in_crypt->fc_rfd, b, olen, HDR + (t << USHIFT));
	if (r)
		return r;
	if (vmc_unit_is_hole(b, olen)) {
		if (nlen >= 16)
			goto cut; /* a hole stays a hole */
		memset(c, 0, nlen);
	} else {
		memcpy(c, b, olen);
		r = vmc_dek_decrypt(in->in_crypt->fc_dek, t, c, olen);
		if (r)
			return r;
	}
	r = vmc_dek_encrypt(in->in_crypt->fc_dek, t, c, nlen);
	if (r)
		return r;
	for (a = 0; a < nlen && b[a] == c[a]; a++)
		;
	if (a == nlen)
		goto cut; /* the same ciphertext at either length */
	/* XTS changes at most the last two blocks (a multiple of 16 changes none). */
	if (nlen - a > VMC_FMT_TRUNC_MAX)
		return -EIO;
	r = vmc_hdr_trunc_fill(&rec, size, (uint16_t)a, c + a, nlen - a);
	if (!r)
		r = trunc_record(fd, &rec);
	if (r) {
		trunc_record(fd, NULL);
		return r;
	}
	r = trunc_finish(fd, &rec);
	if (!r)
		return 0;
	/* Not cut (ENOSPC, EIO): nothing changed but the record, which goes. */
	if (!fstat(fd, &st) && (uint64_t)st.st_size == HDR + old && !trunc_record(fd, NULL))
		return r;
	vmc_err("a truncate could not be finished (%s); the next open of the file completes it",
		strerror(-r));
	atomic_store(&in->in_size, size);
	return r;
cut:
	if (ftruncate(fd, (off_t)(HDR + size)))
		return -errno;
	return 0;
}

int vmc_crypt_truncate(struct vmc_inode *in, int fd, uint64_t size)
{
	uint64_t old = atomic_load(&in->in_size), t;
	struct vmc_rl_req rq;
	int r = 0;

	if (size == old) {
		struct stat st;

		/* Nothing moves, but a truncate still marks the file changed
		 * (mtime, ctime), as the backing filesystem's does. */
		if (!fstat(fd, &st) && ftruncate(fd, st.st_size))
			return -errno;
		return 0;
	}
	if (size > (uint64_t)INT64_MAX - HDR)
		return -EFBIG;
	if (size == 0) {
		/* Empty files carry no header: the next data is classified afresh. */
		vmc_rl_lock(&in->in_rl, &rq, 0, VMC_RL_ALL, true);
		if (ftruncate(fd, 0))
			r = -errno;
		if (!r) {
			atomic_store(&in->in_size, 0);
			atomic_store(&in->in_undecided, true);
			atomic_store(&in->in_enc, VMC_ENC_CLEAR);
		}
		vmc_rl_unlock(&in->in_rl, &rq);
		return r;
	}
	t = (size < old ? size : old) >> USHIFT;
	vmc_rl_lock(&in->in_rl, &rq, t, VMC_RL_ALL, true);
	if (size > old) {
		r = grow(in, fd, size, false, 0);
	} else {
		r = shrink(in, fd, old, size);
		if (!r)
			atomic_store(&in->in_size, size);
	}
	vmc_rl_unlock(&in->in_rl, &rq);
	return r;
}

/* Zero plaintext [off, end) inside the file; @zero_range keeps allocation. */
static int zero_span(struct vmc_inode *in, int fd, uint64_t off, uint64_t end, bool zero_range)
{
	uint64_t size = atomic_load(&in->in_size), a, b;
	int r;

	if (end > size)
		end = size;
	if (off >= end)
		return 0;
	/* Whole units inside the span (the final unit counts when it is >= 16 bytes
	 * and the span reaches the end of the file). */
	a = (off + UNIT - 1) >> USHIFT;
	b = end >> USHIFT;
	if (end == size && (size & (UNIT - 1)) >= 16)
		b = (size + UNIT - 1) >> USHIFT;
	if (a >= b) {
		return units_write(in, fd, NULL, end - off, off, size, size);
	}
	if (off < (a << USHIFT)) {
		r = units_write(in, fd, NULL, (a << USHIFT) - off, off, size, size);
		if (r)
			return r;
	}
	{
		uint64_t s = a << USHIFT, e = min_u64(b << USHIFT, size);
		int mode = zero_range ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

		if (fallocate(fd, mode, (off_t)(HDR + s), (off_t)(e - s))) {
			if (!zero_range || errno != EOPNOTSUPP)
				return -errno;
			if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(HDR + s),
				      (off_t)(e - s)))
				return -errno;
		}
	}
	if ((b << USHIFT) < end)
		return units_write(in, fd, NULL, end - (b << USHIFT), b << USHIFT, size, size);
	return 0;
}

int vmc_crypt_fallocate(struct vmc_inode *in, int fd, int mode, off_t off, off_t len)
{
	uint64_t start = (uint64_t)off, end = (uint64_t)off + (uint64_t)len, size;
	bool keep = mode & FALLOC_FL_KEEP_SIZE;
	struct vmc_rl_req rq;
	int r = 0;

	if (off < 0 || len <= 0)
		return -EINVAL;
	if (end > (uint64_t)INT64_MAX - HDR)
		return -EFBIG;
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP; /* collapse/insert would move data across tweaks */
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !keep)
		return -EINVAL;

	pthread_mutex_lock(&in->in_lock);
	if (atomic_load(&in->in_enc) != VMC_ENC_CRYPT) {
		pthread_mutex_unlock(&in->in_lock);
		return -EAGAIN;
	}
	size = atomic_load(&in->in_size);
	vmc_rl_lock(&in->in_rl, &rq, (start < size ? start : size) >> USHIFT, VMC_RL_ALL, true);
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		if (!keep && end > size)
			r = grow(in, fd, end, false, 0);
		if (!r)
			r = zero_span(in, fd, start, end, mode & FALLOC_FL_ZERO_RANGE);
	} else if (keep || end <= size) {
		/* Allocate backing blocks; unwritten blocks read as holes. */
		if (fallocate(fd, keep ? FALLOC_FL_KEEP_SIZE : 0, (off_t)(HDR + start), len))
			r = -errno;
	} else {
		r = grow(in, fd, end, true, start);
	}
	vmc_rl_unlock(&in->in_rl, &rq);
	pthread_mutex_unlock(&in->in_lock);
	return r;
}

off_t vmc_crypt_lseek(struct vmc_inode *in, int fd, off_t off, int whence)
{
	uint64_t size = atomic_load(&in->in_size);
	off_t r;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	if (off < 0)
		return -ENXIO;
	if ((uint64_t)off >= size)
		return -ENXIO;
	r = lseek(fd, (off_t)HDR + off, whence);
	if (r < 0)
		return -errno;
	r -= (off_t)HDR;
	if (whence == SEEK_DATA) {
		r &= ~(off_t)(UNIT - 1); /* a data unit is data from its start */
		if (r < off)
			r = off;
		if ((uint64_t)r >= size)
			return -ENXIO;
	} else if (r > off) {
		/* A hole found further on starts at a unit boundary (or at EOF). */
		r = (r + (off_t)UNIT - 1) & ~(off_t)(UNIT - 1);
		if ((uint64_t)r > size)
			r = (off_t)size;
	} /* else @off itself is in a hole */
	return r;
}
