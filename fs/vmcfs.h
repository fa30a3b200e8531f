/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The vmcryptfs daemon's private structures and the functions its files share.
 *
 * The daemon is a libfuse low-level filesystem in the shape of libfuse's
 * passthrough_ll example: a FUSE inode number is the address of a struct
 * vmc_inode that holds an O_PATH descriptor of the backing object. On top of
 * that, regular files carry their encryption state: cleartext files are passed
 * through untouched; encrypted files (a header at offset 0, see
 * lib/vmc_format.h) have their data encrypted in 4096-byte units.
 *
 * Files:
 *   main.c      options, start-up, daemonizing, the session loop
 *   ops.c       the FUSE operation table: decode a request, call a worker,
 *               reply exactly once
 *   inode.c     the inode table and header probing
 *   cryptio.c   the encrypted data path: open, read, write, truncate,
 *               fallocate, lseek
 *   vm.c        VM directories: policy files, classification, new headers
 *   rangelock.c byte-range locks on data units
 *
 * Lock order (outer to inner):
 *   vmc_inode.in_lock -> vmc_inode.in_rl (range lock) -> vmcfs.fs_ino_lock
 * fs_ino_lock is a leaf: nothing is called with it held except table work.
 * Internal functions return 0 or -errno; ops.c flips the sign for FUSE.
 */
#ifndef VMCFS_H
#define VMCFS_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "rangelock.h"
#include "vmc_config.h"
#include "vmc_dek.h"
#include "vmc_header.h"
#include "vmc_keyring.h"

/* Encryption state of a regular file's backing object. */
enum vmc_enc {
	VMC_ENC_UNKNOWN = 0, /* not probed yet */
	VMC_ENC_CLEAR,       /* no header: passed through */
	VMC_ENC_CRYPT,       /* header at offset 0, data encrypted */
	VMC_ENC_DAMAGED,     /* starts with the magic but the header is unusable */
};

/*
 * The loaded keys of an encrypted file. Created when the file is first opened
 * (or touched by a path truncate), shared by all its handles, wiped when the
 * last user lets go. Protected by in_lock for creation and replacement;
 * readers and writers use it under the inode's range lock.
 */
struct vmc_fcrypt {
	struct vmc_dek *fc_dek;   /* the file's DEK */
	struct vmc_hdr fc_hdr;    /* header as read or written */
	int fc_rfd;               /* read-only, O_NOATIME: the daemon's own reads */
};

/*
 * One backing object. Lives from the first lookup until the kernel forgets
 * it and no internal reference remains.
 */
struct vmc_inode {
	struct vmc_inode *in_hnext; /* hash chain; protected by fs_ino_lock */
	int in_fd;                  /* O_PATH descriptor; immutable */
	dev_t in_dev;               /* immutable */
	ino_t in_ino;               /* immutable */
	mode_t in_type;             /* S_IFMT bits; immutable */
	uint64_t in_nlookup;        /* kernel lookups; protected by fs_ino_lock */
	uint64_t in_refs;           /* internal references; protected by fs_ino_lock */

	/* Last known name: used to classify a file when it gets its first data. */
	struct vmc_inode *in_parent; /* holds an internal reference; fs_ino_lock */
	char *in_name;               /* protected by fs_ino_lock */

	/* Regular files only. */
	pthread_mutex_t in_lock;      /* serializes size and encryption-state changes */
	_Atomic int in_enc;           /* enum vmc_enc; written under in_lock */
	atomic_bool in_undecided;     /* cleartext and empty: classify at first data */
	struct vmc_fcrypt *in_crypt;  /* in_lock; see struct vmc_fcrypt */
	int in_crypt_users;           /* in_lock: open handles and operations in progress */
	_Atomic uint64_t in_size;     /* logical size while in_crypt is loaded */
	struct vmc_rangelock in_rl;   /* data-unit range lock */
	atomic_int in_opens;          /* open handles (for status and conversions) */
};

/* An open file. */
struct vmc_handle {
	int fh_fd;                /* backing descriptor, read-write when writing */
	bool fh_crypt_ref;        /* holds an in_crypt_users reference */
	struct vmc_lease *fh_lease; /* the VM's lock while open for writing, or NULL */
};

/* The mounted filesystem. One per process. */
struct vmcfs {
	char *fs_backing;              /* backing directory, absolute */
	int fs_backing_fd;             /* O_PATH of the backing directory */
	dev_t fs_backing_dev;
	struct vmc_inode fs_root;
	pthread_mutex_t fs_ino_lock;   /* the inode table and name links */
	struct vmc_inode **fs_buckets; /* fs_ino_lock */
	size_t fs_nbuckets;
	size_t fs_ninodes;             /* fs_ino_lock */

	struct vmc_config *fs_cfg;
	struct vmc_keyring *fs_keyring;
	pthread_mutex_t fs_vm_lock;    /* serializes creation of VM key records */

	double fs_attr_timeout;
	double fs_entry_timeout;
	bool fs_writeback;
	bool fs_is_root;               /* running as root: chown new objects */
	bool fs_debug;
	struct fuse_session *fs_se;    /* for kernel cache invalidations */
	char *fs_mountpoint;
};

extern struct vmcfs vmcfs;

static inline struct vmc_inode *vmc_inode_of(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &vmcfs.fs_root : (struct vmc_inode *)(uintptr_t)ino;
}

/* inode.c */
int vmc_inode_table_init(void);
void vmc_inode_table_fini(void);
/* Find or add the inode for @fd (consumed) described by @st; +1 lookup. */
struct vmc_inode *vmc_inode_get(int fd, const struct stat *st, struct vmc_inode *parent,
				const char *name, bool lookup);
/* Update the remembered parent/name of @in. */
void vmc_inode_set_name(struct vmc_inode *in, struct vmc_inode *parent, const char *name);
/* Drop @n kernel lookups / one internal reference. */
void vmc_inode_forget(struct vmc_inode *in, uint64_t n);
void vmc_inode_unref(struct vmc_inode *in);
void vmc_inode_ref(struct vmc_inode *in);
/* Copy the remembered name; returns the parent with a reference, or NULL. */
struct vmc_inode *vmc_inode_name(struct vmc_inode *in, char *name, size_t len);
/* Look at the first bytes of a regular file and set in_enc. */
int vmc_inode_probe(struct vmc_inode *in);
/* A descriptor with @flags for the object of an O_PATH descriptor. */
int vmc_reopen(struct vmc_inode *in, int flags);
/* Turn a backing stat into what the mount shows. */
int vmc_inode_stat(struct vmc_inode *in, struct stat *st);
bool vmc_name_reserved(const char *name);
/* Open handles on files below directory (dev, ino); 0 when none. */
int vmc_inode_open_under(dev_t dev, ino_t ino);
/* The inode of (dev, ino) if the table has it, with a reference; else NULL. */
struct vmc_inode *vmc_inode_find(dev_t dev, ino_t ino);
/* "dir/sub/name" relative to the backing directory, for messages. */
void vmc_inode_path(struct vmc_inode *in, char *buf, size_t len);
/* The remembered parent directory of @in with a reference, or NULL. */
struct vmc_inode *vmc_inode_parent(struct vmc_inode *in);

/* cryptio.c */
/*
 * Take a user reference for an open of regular file @in through @fd: reads
 * the header, and for an encrypted file unwraps its key (failing with
 * -ENOKEY, -EKEYREJECTED or -EIO, and then taking no reference). in_lock held.
 */
int vmc_crypt_attach(struct vmc_inode *in, int fd);
/* A read-only descriptor of @in for the daemon's own reads, without access
 * time updates where the daemon may ask for that (else a copy of @fd). */
int vmc_quiet_fd(struct vmc_inode *in, int fd);
/* Drop it; the last user wipes the keys. in_lock held. */
void vmc_crypt_detach(struct vmc_inode *in);
int vmc_crypt_read(struct vmc_inode *in, int fd, uint8_t **out, size_t size, off_t off,
		   size_t *outlen);
ssize_t vmc_crypt_write(struct vmc_inode *in, int fd, const uint8_t *buf, size_t len, off_t off);
int vmc_crypt_truncate(struct vmc_inode *in, int fd, uint64_t size); /* in_lock held */
/* Complete the interrupted truncate that header @h records, on @fd (read-write;
 * the caller holds the VM's lock). */
int vmc_crypt_finish_truncate(int fd, const struct vmc_hdr *h);
int vmc_crypt_fallocate(struct vmc_inode *in, int fd, int mode, off_t off, off_t len);
off_t vmc_crypt_lseek(struct vmc_inode *in, int fd, off_t off, int whence);
/* Write a fresh header for an empty file; in_lock held. */
int vmc_crypt_init_header(struct vmc_inode *in, int fd, struct vmc_hdr *hdr, const uint8_t *dek);
void vmc_io_thread_fini(void);

/* vm.c */
/*
 * Decide what an empty file @in becomes when data first arrives: 0 with
 * *encrypt false for cleartext, or true with a new header sealed in @hdr and
 * its DEK in @dek (VMC_FMT_DEK_LEN bytes of secret memory). @first/@firstlen
 * are the first bytes to be written at offset 0 (NULL when the first data
 * is not at offset 0). Fails with -EIO when the VM's policy is unusable.
 */
int vmc_vm_classify_new(struct vmc_inode *in, const void *first, size_t firstlen, uid_t uid,
			bool *encrypt, struct vmc_hdr *hdr, uint8_t *dek);
/*
 * The KEK for new files of the directory @dirfd under its key record
 * @record (VMC_FMT_STATE_NAME, or VMC_FMT_DATASTORE_NAME at the root): the
 * current one, or the next one during a shallow rekey. With @create a
 * missing record is made with a new KEK from @provider (and the datastore's
 * encryption mode turned on). -ENOENT when there is no record.
 */
int vmc_vm_kek(int dirfd, const char *where, const char *record, const char *provider,
	       bool create, uid_t uid, struct vmc_kek **out, uint8_t vm_uuid[16]);
/* Read and parse the policy file of directory @dirfd (@dir names it). */
int vmc_vm_policy_at(int dirfd, const char *dir, struct vmc_vm_policy *pol, char *err,
		     size_t errlen);
/* A conversion owns the VM directory (dev, ino): opens below it get EBUSY. */
int vmc_vm_busy_set(dev_t dev, ino_t ino, bool on);
bool vmc_vm_busy(struct vmc_inode *in);
/* Is the VM directory (dev, ino) itself being converted? */
bool vmc_vm_busy_id(dev_t dev, ino_t ino);
/* Call @cb for every directory holding a policy file or a VM key record. */
int vmc_vm_foreach(int (*cb)(void *arg, int dirfd, const char *rel), void *arg);
/*
 * Check that writing cleartext into the non-empty cleartext file @in (open
 * as @fd) is allowed: -EIO when the file's VM has an unusable policy and the
 * file could have to be encrypted, -EACCES when the VM's policy encrypts
 * files of its class (plaintext is never written where encryption is asked
 * for; such files are converted by vmcryptfs-ctl).
 */
int vmc_vm_check_clear_write(struct vmc_inode *in, int fd);
/*
 * Would data written to a new file @name in directory @dir be encrypted?
 * -EIO (logged) when the VM's policy is unusable. A VMDK is undecided
 * (false) until its first bytes arrive.
 */
int vmc_vm_would_encrypt(struct vmc_inode *dir, const char *name, bool *encrypt);
/*
 * A reference on the cross-host lock of the VM that directory @dir belongs
 * to: the nearest directory with a policy file, else @dir itself (*out NULL
 * at the datastore root, or when locking is off). -EBUSY, logged with the
 * holder, when another host writes to the VM.
 */
struct vmc_lease;
struct vmc_vmstate;
int vmc_vm_lease(struct vmc_inode *dir, struct vmc_lease **out);
/* The VM lock for writing to @in (in directory @dir, or its remembered one). */
int vmc_inode_lease(struct vmc_inode *in, struct vmc_inode *dir, struct vmc_lease **out);
/*
 * A key provider's failure as the application (or vmcryptfs-ctl) sees it:
 * no key to be had (a dead key server, a missing key file) is ENOKEY, as for
 * the files of a locked VM; a wrong key, a revoked one or no memory stay.
 */
int vmc_key_errno(int r);
/*
 * Write @st (read earlier, then changed) as @record of @vmfd, unless the
 * record on disk changed since: -EAGAIN with a reason in @err (another
 * operation got there first; re-run). Takes fs_vm_lock.
 */
int vmc_vm_record_update(int vmfd, const char *record, struct vmc_vmstate *st, char *err,
			 size_t errlen);
/* Unwrap the DEK of header @hdr into @dek (secret memory). */
int vmc_vm_unwrap(struct vmc_inode *in, const struct vmc_hdr *hdr, uint8_t *dek);

#endif
