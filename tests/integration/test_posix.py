# SPDX-License-Identifier: GPL-2.0-or-later
"""POSIX semantics through the mount, on encrypted and cleartext files alike,
checked against a plaintext reference and with exact errnos; and a seeded
random model test (VMC_SEED) of writes, reads, truncates, fallocate modes
and mmap on one encrypted and one cleartext file."""
import ctypes
import errno
import fcntl
import mmap
import os
import random
import stat
import struct
import threading

import pytest

from vmctest import (config_text, FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE,
                     FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, HDR, STATE_NAME, STATE_SIZE,
                     UNIT, errno_of, fallocate, fd_open, header_ok, is_encrypted, open_errno,
                     punch_hole, read, write)

SIZES = list(range(16)) + [4095, 4096, 4097, 4111, 4112]
KINDS = {"encrypted": "vm1/file.nvram", "cleartext": "vm1/file.log"}


class Target:
    """A file under test: its mount path, backing path and kind."""

    def __init__(self, ds, kind):
        self.ds = ds
        self.kind = kind
        self.enc = kind == "encrypted"
        ds.make_vm("vm1")
        self.path = ds.m(KINDS[kind])
        self.backing = ds.b(KINDS[kind])

    def check_backing(self, model):
        """The backing file matches @model: ciphertext or identical cleartext."""
        st = os.stat(self.backing)
        if self.enc:
            if len(model) == 0:
                assert st.st_size == 0, f"empty encrypted file has {st.st_size} backing bytes"
            else:
                with open(self.backing, "rb") as f:
                    assert header_ok(f.read(18)), "encrypted file lost its header"
                assert st.st_size == len(model) + HDR, \
                    f"backing size {st.st_size} != {len(model)} + {HDR}"
        else:
            assert read(self.backing) == bytes(model), "cleartext backing differs"


@pytest.fixture(params=sorted(KINDS))
def target(ds, request):
    return Target(ds, request.param)


def check_file(t, model, fd=None):
    data = read(t.path) if fd is None else os.pread(fd, len(model) + 8192, 0)
    assert len(data) == len(model), f"size {len(data)} != model {len(model)}"
    if data != model:
        first = next(i for i in range(len(model)) if data[i] != model[i])
        raise AssertionError(f"content differs from the model at offset {first}")
    assert os.stat(t.path).st_size == len(model)
    t.check_backing(model)


# --- sizes around data-unit boundaries ---------------------------------------

def test_sizes_around_unit_boundaries(target):
    rng = random.Random(11)
    for s in SIZES:
        for n in SIZES:
            a, b = rng.randbytes(s), rng.randbytes(n)
            with fd_open(target.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC) as fd:
                assert os.pwrite(fd, a, 0) == s
                assert os.pwrite(fd, b, s) == n
                model = a + b
                assert os.fstat(fd).st_size == len(model)
                assert os.pread(fd, len(model) + 100, 0) == model
                # Overwrite across the boundary between the two writes.
                c = rng.randbytes(n)
                off = max(0, s - n // 2)
                os.pwrite(fd, c, off)
                model = bytearray(model)
                model[off:off + n] = c
                end = max(len(model), off + n)
                model = bytes(model[:end])
            check_file(target, model)
            # Reads of every small length at unaligned offsets.
            with open(target.path, "rb") as f:
                for o in (0, 1, 15, 16, 4095, 4096, 4097):
                    for ln in (1, 15, 16, 17, 4096):
                        f.seek(o)
                        assert f.read(ln) == model[o:o + ln], (s, n, o, ln)


def test_write_lengths_at_offsets(target):
    rng = random.Random(12)
    for off in (0, 1, 15, 16, 4080, 4095, 4096, 4097, 8191, 8192 + 100, 65536 - 3):
        for n in SIZES:
            with fd_open(target.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC) as fd:
                data = rng.randbytes(n)
                os.pwrite(fd, data, off)
                model = (bytes(off) + data) if n else b""
                check_file(target, model, fd)
            check_file(target, model)


def test_append(target):
    write(target.path, b"head")
    with open(target.path, "ab") as f:
        f.write(b"1" * 4095)
        f.write(b"2" * 17)
    with fd_open(target.path, os.O_WRONLY | os.O_APPEND) as fd:
        os.write(fd, b"tail")
        os.pwrite(fd, b"XX", 0)  # O_APPEND: Linux appends even with pwrite
    check_file(target, b"head" + b"1" * 4095 + b"2" * 17 + b"tail" + b"XX")


# --- truncate and fallocate ----------------------------------------------------

def test_truncate_up_and_down(target):
    rng = random.Random(13)
    model = bytearray(rng.randbytes(10000))
    write(target.path, model)
    for size in (9999, 8192, 8193, 4112, 4111, 4097, 4096, 4095, 17, 16, 15, 1, 0, 1, 15, 16,
                 4095, 4096, 4097, 20000, 100, 1 << 20, 5):
        if size % 2:
            os.truncate(target.path, size)          # by path: no open handle
        else:
            with fd_open(target.path, os.O_RDWR) as fd:
                os.ftruncate(fd, size)
        model = model[:size] + bytes(max(0, size - len(model)))
        check_file(target, bytes(model))
        # Write into the tail after each size change.
        tail = rng.randbytes(7)
        with fd_open(target.path, os.O_RDWR) as fd:
            os.pwrite(fd, tail, size)
        model[size:size + 7] = tail
        check_file(target, bytes(model))
    assert errno_of(os.truncate, target.path, -1) == errno.EINVAL


def test_fallocate_modes(target):
    rng = random.Random(14)
    model = bytearray(rng.randbytes(5 * UNIT + 100))
    write(target.path, model)
    with fd_open(target.path, os.O_RDWR) as fd:
        # Punch a hole: whole units, partial units, across the end.
        for off, ln in ((UNIT, UNIT), (100, 50), (2 * UNIT - 10, UNIT + 20),
                        (5 * UNIT, 200)):
            punch_hole(fd, off, ln)
            end = min(off + ln, len(model))
            model[off:end] = bytes(max(0, end - off))
            check_file(target, bytes(model), fd)
        # Zero range, keeping the size and extending it.
        fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 3 * UNIT + 5, 5000)
        model[3 * UNIT + 5:3 * UNIT + 5005] = bytes(5000)
        model = model[:5 * UNIT + 100]
        check_file(target, bytes(model), fd)
        fallocate(fd, FALLOC_FL_ZERO_RANGE, len(model) - 10, 3000)
        model = model[:len(model) - 10] + bytes(3000)
        check_file(target, bytes(model), fd)
        # Allocation: KEEP_SIZE beyond the end does not change the size.
        fallocate(fd, FALLOC_FL_KEEP_SIZE, len(model), 1 << 20)
        check_file(target, bytes(model), fd)
        # Mode 0 beyond the end extends with zeros.
        fallocate(fd, 0, len(model) + 1000, 10000)
        model += bytes(11000)
        check_file(target, bytes(model), fd)
        # Mode 0 inside the file changes nothing visible.
        fallocate(fd, 0, 0, len(model))
        check_file(target, bytes(model), fd)
        # Data written after a KEEP_SIZE allocation beyond the end.
        d = rng.randbytes(3000)
        os.pwrite(fd, d, len(model) + 500)
        model += bytes(500) + d
        check_file(target, bytes(model), fd)
        # Errors, decided by the kernel or the daemon, identical for both kinds.
        assert errno_of(fallocate, fd, FALLOC_FL_PUNCH_HOLE, 0, 100) == errno.EOPNOTSUPP
        assert errno_of(fallocate, fd, 0, 0, 0) == errno.EINVAL
        assert errno_of(fallocate, fd, 0, -1, 10) == errno.EINVAL
        assert errno_of(fallocate, fd, FALLOC_FL_COLLAPSE_RANGE, 0, UNIT) == errno.EOPNOTSUPP
        assert errno_of(fallocate, fd, FALLOC_FL_INSERT_RANGE, 0, UNIT) == errno.EOPNOTSUPP
        check_file(target, bytes(model), fd)
    with fd_open(target.path, os.O_RDONLY) as fd:
        assert errno_of(fallocate, fd, 0, 0, 10) == errno.EBADF


def test_fallocate_on_empty_file(target):
    """The first data may be a fallocate: the file is classified then."""
    with fd_open(target.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC) as fd:
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 65536)   # no data yet
        assert os.fstat(fd).st_size == 0
        assert os.stat(target.backing).st_size == 0
        fallocate(fd, 0, 0, 10000)
        check_file(target, bytes(10000), fd)
        assert is_encrypted(target.backing) == target.enc
    with fd_open(target.path, os.O_RDWR | os.O_TRUNC) as fd:
        fallocate(fd, FALLOC_FL_ZERO_RANGE, 100, 5)
        check_file(target, bytes(105), fd)
        assert is_encrypted(target.backing) == target.enc


def test_seek_data_hole(target):
    with fd_open(target.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC) as fd:
        os.ftruncate(fd, 16 * UNIT)
        os.pwrite(fd, b"a" * 100, 2 * UNIT + 10)      # unit 2 becomes data
        os.pwrite(fd, b"b" * (UNIT + 1), 5 * UNIT)    # units 5 and 6
        os.pwrite(fd, b"c" * 10, 16 * UNIT - 10)      # the final unit
        assert os.lseek(fd, 0, os.SEEK_DATA) == 2 * UNIT
        assert os.lseek(fd, 0, os.SEEK_HOLE) == 0
        assert os.lseek(fd, 2 * UNIT + 50, os.SEEK_DATA) == 2 * UNIT + 50
        assert os.lseek(fd, 2 * UNIT, os.SEEK_HOLE) == 3 * UNIT
        assert os.lseek(fd, 3 * UNIT, os.SEEK_DATA) == 5 * UNIT
        assert os.lseek(fd, 5 * UNIT, os.SEEK_HOLE) == 7 * UNIT
        assert os.lseek(fd, 7 * UNIT, os.SEEK_DATA) == 15 * UNIT
        assert os.lseek(fd, 15 * UNIT, os.SEEK_HOLE) == 16 * UNIT
        assert errno_of(os.lseek, fd, 16 * UNIT, os.SEEK_DATA) == errno.ENXIO
        assert errno_of(os.lseek, fd, 16 * UNIT, os.SEEK_HOLE) == errno.ENXIO
        assert errno_of(os.lseek, fd, 1 << 40, os.SEEK_DATA) == errno.ENXIO
        # Punching unit 5 leaves unit 6 as data.
        punch_hole(fd, 5 * UNIT, UNIT)
        assert os.lseek(fd, 3 * UNIT, os.SEEK_DATA) == 6 * UNIT
        assert os.lseek(fd, 6 * UNIT, os.SEEK_HOLE) == 7 * UNIT
        # A file that ends in a hole: SEEK_HOLE in it is the position itself,
        # and the end of the file is a hole.
        os.ftruncate(fd, 32 * UNIT)
        assert os.lseek(fd, 20 * UNIT, os.SEEK_HOLE) == 20 * UNIT
        assert errno_of(os.lseek, fd, 20 * UNIT, os.SEEK_DATA) == errno.ENXIO


@pytest.mark.parametrize("how", ["ftruncate", "truncate", "fallocate", "zero_range"])
def test_failed_extension_changes_nothing(target, how):
    """Growing a file beyond what the backing filesystem allows fails (EFBIG)
    and leaves size and content as they were, seen through the handle that
    made the call, through a new one, and after further writes."""
    huge = 1 << 62
    model = bytearray(random.Random(18).randbytes(5000))  # a partial final unit
    write(target.path, model)
    with fd_open(target.path, os.O_RDWR) as fd:
        if how == "ftruncate":
            e = errno_of(os.ftruncate, fd, huge)
        elif how == "truncate":
            e = errno_of(os.truncate, target.path, huge)
        elif how == "fallocate":
            e = errno_of(fallocate, fd, 0, huge - UNIT, UNIT)
        else:
            e = errno_of(fallocate, fd, FALLOC_FL_ZERO_RANGE, huge - UNIT, UNIT)
        assert e in (errno.EFBIG, errno.EINVAL, errno.ENOSPC), errno.errorcode.get(e, e)
        assert os.fstat(fd).st_size == len(model)
        assert os.pread(fd, 2 * len(model), 0) == model
        os.pwrite(fd, b"y", 4100)
        model[4100:4101] = b"y"
        assert os.pread(fd, 2 * len(model), 0) == model
    check_file(target, bytes(model))


# --- mmap, O_DIRECT -------------------------------------------------------------

def test_mmap_read_write(target):
    rng = random.Random(15)
    model = bytearray(rng.randbytes(3 * UNIT + 123))
    write(target.path, model)
    with open(target.path, "r+b") as f:
        with mmap.mmap(f.fileno(), 0) as m:
            assert m[:] == model
            for off, ln in ((0, 1), (4095, 2), (UNIT + 7, 3000), (len(model) - 5, 5)):
                d = rng.randbytes(ln)
                m[off:off + ln] = d
                model[off:off + ln] = d
            m.flush()
        check_file(target, bytes(model))
        # Writes through write(2) are visible in a new mapping.
        os.pwrite(f.fileno(), b"Z" * 10, 100)
        model[100:110] = b"Z" * 10
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
            assert m[:] == model
    # The mapping was written back: it survives a remount.
    target.ds.remount()
    check_file(target, bytes(model))


def test_o_direct(target):
    rng = random.Random(16)
    buf = mmap.mmap(-1, 4 * UNIT)               # page aligned
    data = rng.randbytes(4 * UNIT)
    buf[:] = data
    with fd_open(target.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_DIRECT) as fd:
        assert os.pwritev(fd, [buf], 0) == 4 * UNIT
        assert os.pwritev(fd, [buf], 8 * UNIT) == 4 * UNIT
        rb = mmap.mmap(-1, 4 * UNIT)
        assert os.preadv(fd, [rb], 8 * UNIT) == 4 * UNIT
        assert rb[:] == data
        assert os.preadv(fd, [rb], 4 * UNIT) == 4 * UNIT
        assert rb[:] == bytes(4 * UNIT)             # the hole between the writes
    model = data + bytes(4 * UNIT) + data
    check_file(target, model)
    # An unaligned tail read through O_DIRECT, and a buffered view after it.
    with open(target.path, "r+b") as f:
        f.truncate(12 * UNIT - 1000)
    model = model[:12 * UNIT - 1000]
    with fd_open(target.path, os.O_RDONLY | os.O_DIRECT) as fd:
        rb = mmap.mmap(-1, 4 * UNIT)
        assert os.preadv(fd, [rb], 8 * UNIT) == 4 * UNIT - 1000
        assert rb[:4 * UNIT - 1000] == model[8 * UNIT:]
    check_file(target, model)


# --- locks, xattrs, attributes ---------------------------------------------------

def test_locks(target):
    write(target.path, b"x" * 10000)
    with open(target.path, "r+b") as f1, open(target.path, "r+b") as f2:
        fcntl.flock(f1, fcntl.LOCK_EX)
        assert errno_of(fcntl.flock, f2, fcntl.LOCK_EX | fcntl.LOCK_NB) in (errno.EAGAIN,
                                                                           errno.EWOULDBLOCK)
        fcntl.flock(f1, fcntl.LOCK_UN)
        fcntl.flock(f2, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(f1, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(f1, fcntl.LOCK_UN)
        fcntl.flock(f2, fcntl.LOCK_UN)
        # POSIX record locks: a byte range held here conflicts in a child.
        fcntl.lockf(f1, fcntl.LOCK_EX, 100, 50)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                with open(target.path, "r+b") as f:
                    try:
                        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 120)
                        code = 1
                    except OSError as e:
                        code = 0 if e.errno in (errno.EAGAIN, errno.EACCES) else 2
                    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 200)  # no overlap
                    fcntl.lockf(f, fcntl.LOCK_UN, 10, 200)
            except BaseException:
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "record lock did not conflict"
        fcntl.lockf(f1, fcntl.LOCK_UN, 100, 50)
        # Open file description locks conflict between two descriptors.
        lk = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        fcntl.fcntl(f1, fcntl.F_OFD_SETLK, lk)
        assert errno_of(fcntl.fcntl, f2, fcntl.F_OFD_SETLK, lk) in (errno.EAGAIN, errno.EACCES)
        fcntl.fcntl(f1, fcntl.F_OFD_SETLK,
                    struct.pack("hhqqi4x", fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0))
        fcntl.fcntl(f2, fcntl.F_OFD_SETLK, lk)


def test_xattrs(target):
    write(target.path, b"data" * 1000)
    os.setxattr(target.path, "user.vmc.test", b"value-1")
    os.setxattr(target.path, "user.vmc.empty", b"")
    assert os.getxattr(target.path, "user.vmc.test") == b"value-1"
    assert os.getxattr(target.path, "user.vmc.empty") == b""
    assert {"user.vmc.test", "user.vmc.empty"} <= set(os.listxattr(target.path))
    assert errno_of(os.setxattr, target.path, "user.vmc.test", b"x", os.XATTR_CREATE) == \
        errno.EEXIST
    assert errno_of(os.setxattr, target.path, "user.vmc.none", b"x", os.XATTR_REPLACE) == \
        errno.ENODATA
    os.setxattr(target.path, "user.vmc.test", b"v" * 3000, os.XATTR_REPLACE)
    assert os.getxattr(target.path, "user.vmc.test") == b"v" * 3000
    # The attributes are those of the backing file.
    assert os.getxattr(target.backing, "user.vmc.test") == b"v" * 3000
    os.removexattr(target.path, "user.vmc.test")
    assert errno_of(os.getxattr, target.path, "user.vmc.test") == errno.ENODATA
    assert errno_of(os.removexattr, target.path, "user.vmc.test") == errno.ENODATA
    # Directories carry them too.
    os.setxattr(target.path.parent, "user.vmc.dir", b"d")
    assert os.getxattr(target.path.parent, "user.vmc.dir") == b"d"
    assert read(target.path) == b"data" * 1000


def test_chmod_chown_utimens(target):
    write(target.path, b"q" * 5000)
    os.chmod(target.path, 0o640)
    assert stat.S_IMODE(os.stat(target.path).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(target.backing).st_mode) == 0o640
    os.chown(target.path, 1234, 5678)
    for p in (target.path, target.backing):
        st = os.stat(p)
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.chown(target.path, -1, 99)
    assert (os.stat(target.path).st_uid, os.stat(target.path).st_gid) == (1234, 99)
    os.utime(target.path, ns=(1_000_000_123, 2_000_000_456))
    for p in (target.path, target.backing):
        st = os.stat(p)
        assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
    with open(target.path, "r+b") as f:                  # through a handle
        os.utime(f.fileno(), ns=(3_000_000_000, 4_000_000_007))
        os.fchmod(f.fileno(), 0o600)
    st = os.stat(target.path)
    assert (st.st_atime_ns, st.st_mtime_ns) == (3_000_000_000, 4_000_000_007)
    assert stat.S_IMODE(st.st_mode) == 0o600
    os.utime(target.path)                                 # now
    assert abs(os.stat(target.path).st_mtime - os.stat(target.backing).st_mtime) < 1
    # A symlink's own attributes.
    link = target.path.parent / "link"
    os.symlink(target.path.name, link)
    os.chown(link, 4321, 8765, follow_symlinks=False)
    os.utime(link, ns=(5_000_000_000, 6_000_000_000), follow_symlinks=False)
    st = os.lstat(link)
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == (4321, 8765, 6_000_000_000)
    assert os.stat(target.path).st_uid == 1234
    # The size the mount shows excludes the header.
    assert os.stat(target.path).st_size == 5000
    assert read(target.path) == b"q" * 5000


# --- names -------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def renameat2(old, new, flags):
    if _libc.renameat2(-100, os.fsencode(str(old)), -100, os.fsencode(str(new)), flags):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def test_rename_link_symlink_unlink(target):
    rng = random.Random(17)
    data = rng.randbytes(9000)
    write(target.path, data)
    vm = target.path.parent
    ext = target.path.suffix
    # rename within the directory and across directories (into another VM,
    # out of every VM): the file keeps its content and its state.
    other_vm = target.ds.make_vm("vm2")
    plain_dir = target.ds.m("plain")
    plain_dir.mkdir()
    cur = target.path
    for dst in (vm / f"renamed{ext}", other_vm / f"moved{ext}", plain_dir / f"out{ext}",
                vm / f"back{ext}"):
        os.rename(cur, dst)
        assert errno_of(os.stat, cur) == errno.ENOENT
        assert read(dst) == data
        bdst = target.ds.b(os.path.relpath(dst, target.ds.m()))
        assert is_encrypted(bdst) == target.enc
        cur = dst
    # rename over an existing file replaces it; NOREPLACE and EXCHANGE.
    write(vm / f"victim{ext}", b"old")
    os.rename(cur, vm / f"victim{ext}")
    cur = vm / f"victim{ext}"
    assert read(cur) == data
    write(vm / f"second{ext}", b"second file")
    assert errno_of(renameat2, cur, vm / f"second{ext}", RENAME_NOREPLACE) == errno.EEXIST
    renameat2(cur, vm / f"second{ext}", RENAME_EXCHANGE)
    assert read(vm / f"second{ext}") == data and read(cur) == b"second file"
    # Append through the new names: the daemon still knows each file.
    write(vm / f"second{ext}", b"+more", "ab")
    data += b"+more"
    assert read(vm / f"second{ext}") == data
    cur = vm / f"second{ext}"
    # Hard links share the content; unlinking one name keeps the other.
    os.link(cur, plain_dir / "hard")
    assert os.stat(cur).st_nlink == 2
    assert os.stat(plain_dir / "hard").st_ino == os.stat(cur).st_ino
    assert read(plain_dir / "hard") == data
    write(plain_dir / "hard", b"!", "ab")
    data += b"!"
    assert read(cur) == data
    os.unlink(cur)
    assert read(plain_dir / "hard") == data
    assert os.stat(plain_dir / "hard").st_nlink == 1
    os.rename(plain_dir / "hard", cur)
    # Symlinks: relative and absolute, read through.
    os.symlink(cur.name, vm / "rel-link")
    os.symlink(str(cur), plain_dir / "abs-link")
    assert os.readlink(vm / "rel-link") == cur.name
    assert read(vm / "rel-link") == data and read(plain_dir / "abs-link") == data
    assert stat.S_ISLNK(os.lstat(vm / "rel-link").st_mode)
    assert errno_of(os.readlink, cur) == errno.EINVAL
    os.unlink(vm / "rel-link")
    assert read(cur) == data
    # Errors.
    assert errno_of(os.unlink, vm / "missing") == errno.ENOENT
    assert errno_of(os.rename, vm / "missing", vm / "x") == errno.ENOENT
    assert errno_of(os.link, cur, vm / "vmcrypt.policy") == errno.EEXIST
    assert errno_of(os.symlink, "x", cur) == errno.EEXIST
    assert errno_of(os.unlink, plain_dir) == errno.EISDIR
    assert errno_of(os.rename, plain_dir, cur) == errno.ENOTDIR
    assert errno_of(os.rename, cur, plain_dir) == errno.EISDIR
    assert open_errno(cur / "x", os.O_RDONLY) == errno.ENOTDIR
    assert open_errno(cur, os.O_RDWR | os.O_CREAT | os.O_EXCL) == errno.EEXIST
    assert open_errno(vm, os.O_WRONLY) == errno.EISDIR


def test_mkdir_rmdir_readdir(ds):
    vm = ds.make_vm("vm1")
    write(vm / "a.nvram", b"n" * 100)
    write(vm / "b.log", b"log")
    (vm / "sub").mkdir()
    assert sorted(os.listdir(vm)) == ["a.nvram", "b.log", "sub", "vmcrypt.policy"]
    assert sorted(e.name for e in os.scandir(vm)) == sorted(os.listdir(vm))
    assert sorted(os.listdir(ds.b("vm1"))) == sorted(os.listdir(vm) + [STATE_NAME])
    assert errno_of(os.mkdir, vm / "sub") == errno.EEXIST
    assert errno_of(os.rmdir, vm) == errno.ENOTEMPTY
    assert os.path.exists(ds.b("vm1") / STATE_NAME), "a failed rmdir removed the key record"
    assert errno_of(os.rmdir, vm / "a.nvram") == errno.ENOTDIR
    assert errno_of(os.rmdir, vm / "nope") == errno.ENOENT
    write(vm / "sub" / "f.raw", b"r" * 10)
    assert errno_of(os.rmdir, vm / "sub") == errno.ENOTEMPTY
    os.mkdir(vm / "sub2", 0o750)
    assert stat.S_IMODE(os.stat(vm / "sub2").st_mode) == 0o750
    os.rename(vm / "sub", vm / "sub2")          # over an empty directory
    assert read(vm / "sub2" / "f.raw") == b"r" * 10
    os.mkdir(vm / "sub")
    assert errno_of(os.rename, vm / "sub", vm / "sub2") in (errno.ENOTEMPTY, errno.EEXIST)
    # A large directory lists completely (several readdir calls).
    # (a VM directory, so the hidden key record is among the entries skipped)
    many = ds.make_vm("many")
    write(many / "x.nvram", b"x" * 100)
    names = {f"file-{i:04d}-{'x' * 40}" for i in range(1500)} | {"vmcrypt.policy", "x.nvram"}
    for n in names - {"vmcrypt.policy", "x.nvram"}:
        open(many / n, "wb").close()
    assert os.path.exists(ds.b("many") / STATE_NAME)
    listed = os.listdir(many)
    assert len(listed) == len(names) and set(listed) == names
    # rmdir of a VM directory whose only remaining entry is the hidden state.
    for n in ("a.nvram", "b.log", "vmcrypt.policy", "sub2/f.raw"):
        os.unlink(vm / n)
    os.rmdir(vm / "sub2")
    os.rmdir(vm / "sub")
    assert os.listdir(vm) == []
    assert os.listdir(ds.b("vm1")) == [STATE_NAME]
    os.rmdir(vm)
    assert not os.path.exists(ds.b("vm1"))
    assert errno_of(os.stat, vm) == errno.ENOENT


def test_new_objects_belong_to_the_caller(make_ds):
    """Files, directories, symlinks and nodes made through the mount are owned
    by the calling process's uid/gid, not by the daemon (root). Other users
    reach a FUSE mount only with -o allow_other."""
    # uid 1234 creates an encrypted file: that needs Cryptographer.Access.
    ds = make_ds("ds", options=["allow_other"], mount=False)
    ds.config.write_text(config_text(ds.keyfile,
                                     'grant { user = "root" roles = { "Administrator" } }\n'
                                     'grant { user = "1234" roles = { "Administrator" } }\n'))
    ds.mount()
    shared = ds.make_vm("vm1")
    os.chmod(shared, 0o777)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            # Relative names from inside the VM: the temporary tree above
            # the mount is not searchable by other users.
            os.chdir(shared)
            os.setgroups([])
            os.setgid(2345)
            os.setuid(1234)
            write("user.nvram", b"u" * 5000)
            os.mkdir("userdir")
            os.symlink("user.nvram", "userlink")
            os.mkfifo("userfifo")
            with open("user.nvram", "rb") as f:
                code = 0 if f.read() == b"u" * 5000 else 4
            # Permission checks are the kernel's (default_permissions).
            code = code or (0 if open_errno("vmcrypt.policy", os.O_WRONLY) == errno.EACCES
                            else 5)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for n in ("user.nvram", "userdir", "userlink", "userfifo"):
        for p in (shared / n, ds.b("vm1") / n):
            st = os.lstat(p)
            assert (st.st_uid, st.st_gid) == (1234, 2345), (p, st.st_uid, st.st_gid)
    assert is_encrypted(ds.b("vm1/user.nvram"))
    assert stat.S_ISFIFO(os.lstat(shared / "userfifo").st_mode)


def test_reserved_names(ds):
    vm = ds.make_vm("vm1")
    write(vm / "a.nvram", b"secret" * 100)       # creates the VM key record
    state = ds.b("vm1") / STATE_NAME
    before = read(state)
    assert len(before) == STATE_SIZE
    for d in (vm, ds.m()):
        hidden = d / STATE_NAME
        assert STATE_NAME not in os.listdir(d)
        assert errno_of(os.stat, hidden) == errno.ENOENT
        assert errno_of(os.lstat, d / ".vmcrypt.other") == errno.ENOENT
        assert open_errno(hidden, os.O_RDONLY) == errno.ENOENT
        assert errno_of(os.unlink, hidden) == errno.ENOENT
        assert errno_of(os.rmdir, hidden) == errno.ENOENT
        assert errno_of(os.rename, hidden, d / "x") == errno.ENOENT
        assert open_errno(hidden, os.O_RDWR | os.O_CREAT) == errno.EPERM
        assert open_errno(d / ".vmcrypt.new", os.O_WRONLY | os.O_CREAT) == errno.EPERM
        assert errno_of(os.mkdir, d / ".vmcrypt.dir") == errno.EPERM
        assert errno_of(os.mkfifo, d / ".vmcrypt.fifo") == errno.EPERM
        assert errno_of(os.symlink, "a.nvram", d / ".vmcrypt.link") == errno.EPERM
        assert errno_of(os.link, vm / "a.nvram", d / ".vmcrypt.hard") == errno.EPERM
        assert errno_of(os.rename, vm / "a.nvram", d / ".vmcrypt.state") == errno.EPERM
        assert errno_of(os.setxattr, hidden, "user.x", b"1") == errno.ENOENT
    # Names that only look similar are ordinary files.
    write(vm / ".vmcrypt", b"1")
    write(vm / "x.vmcrypt.state", b"2")
    write(vm / ".vmcryptX", b"3")
    assert {".vmcrypt", "x.vmcrypt.state", ".vmcryptX"} <= set(os.listdir(vm))
    assert read(state) == before
    assert read(vm / "a.nvram") == b"secret" * 100
    # A hidden name planted in the backing store stays hidden.
    write(ds.b(".vmcrypt.planted"), b"p")
    assert ".vmcrypt.planted" not in os.listdir(ds.m())
    assert errno_of(os.stat, ds.m(".vmcrypt.planted")) == errno.ENOENT


def test_statfs_fsync(target):
    sm, sb = os.statvfs(target.ds.m()), os.statvfs(target.ds.b())
    assert (sm.f_bsize, sm.f_frsize, sm.f_blocks, sm.f_files) == \
        (sb.f_bsize, sb.f_frsize, sb.f_blocks, sb.f_files)
    assert sm.f_namemax == sb.f_namemax
    assert abs(sm.f_bavail - sb.f_bavail) < sb.f_blocks // 100 + 1000
    with fd_open(target.path, os.O_RDWR | os.O_CREAT) as fd:
        os.write(fd, b"sync me" * 1000)
        os.fsync(fd)
        os.fdatasync(fd)
    with fd_open(target.path.parent, os.O_RDONLY | os.O_DIRECTORY) as dfd:
        os.fsync(dfd)
    with fd_open(target.path, os.O_RDWR | os.O_SYNC) as fd:
        os.pwrite(fd, b"S" * 10, 5)
    with fd_open(target.path, os.O_RDWR | os.O_DSYNC) as fd:
        os.pwrite(fd, b"D" * 10, 50)
    model = bytearray(b"sync me" * 1000)
    model[5:15] = b"S" * 10
    model[50:60] = b"D" * 10
    check_file(target, bytes(model))


def test_errnos(target):
    vm = target.path.parent
    assert open_errno(vm / "missing.nvram", os.O_RDONLY) == errno.ENOENT
    write(target.path, b"abc")
    with fd_open(target.path, os.O_WRONLY) as fd:
        assert errno_of(os.read, fd, 10) == errno.EBADF
    with fd_open(target.path, os.O_RDONLY) as fd:
        assert errno_of(os.write, fd, b"x") == errno.EBADF
        assert errno_of(os.ftruncate, fd, 0) == errno.EINVAL
    assert errno_of(os.truncate, vm, 0) == errno.EISDIR
    assert errno_of(os.listdir, target.path) == errno.ENOTDIR
    assert errno_of(os.mkdir, target.path / "d") == errno.ENOTDIR
    os.chmod(target.path, 0o400)
    # root bypasses permission bits; default_permissions keeps that behaviour
    with open(target.path, "rb") as f:
        assert f.read() == b"abc"
    assert read(target.path) == b"abc"


# --- concurrency -------------------------------------------------------------------------

def test_concurrent_writers_share_units(target):
    """Threads write interleaved, unaligned stripes: neighbours share data units."""
    stripe = 1000
    nthreads, rounds = 4, 60
    size = stripe * nthreads * rounds
    write(target.path, bytes(size))
    model = bytearray(size)
    rngs = [random.Random(100 + i) for i in range(nthreads)]
    plan = []
    for t in range(nthreads):
        ops = []
        for r in range(rounds):
            off = (r * nthreads + t) * stripe
            ops.append((off, rngs[t].randbytes(stripe)))
        rngs[t].shuffle(ops)
        plan.append(ops)
        for off, d in ops:
            model[off:off + stripe] = d
    errors = []

    def worker(ops):
        try:
            with fd_open(target.path, os.O_RDWR) as fd:
                for off, d in ops:
                    assert os.pwrite(fd, d, off) == len(d)
                    assert os.pread(fd, len(d), off) == d
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(p,)) for p in plan]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    check_file(target, bytes(model))


def test_concurrent_size_changes(target):
    """A writer in the final data unit, a thread changing the size around it
    and readers, all at once: no torn or garbled data ever shows."""
    base = 16 * UNIT
    head = random.Random(19).randbytes(base)
    write(target.path, head + b"\xff" * 5)   # never zero, like every write below
    stop = threading.Event()
    errors = []
    last = [0]

    def writer():
        with fd_open(target.path, os.O_RDWR) as fd:
            for i in range(1, 3000):
                os.pwrite(fd, bytes([i % 255 + 1]) * 5, base)
                last[0] = i % 255 + 1
                if stop.is_set():
                    break

    def sizer():
        with fd_open(target.path, os.O_RDWR) as fd:
            sizes = [base + 5, base + 100, base + UNIT + 7, base + 16, base + 15]
            i = 0
            while not stop.is_set():
                os.ftruncate(fd, sizes[i % len(sizes)])
                i += 1
            os.ftruncate(fd, base + 100)

    def reader():
        with fd_open(target.path, os.O_RDONLY) as fd:
            while not stop.is_set():
                tail = os.pread(fd, 2 * UNIT, base)
                # (reads are not atomic with writes: the five bytes may mix
                # two writes, but are never zero, and the rest stays zero)
                if len(tail) < 5 or 0 in tail[:5] or tail[5:].strip(b"\0"):
                    raise AssertionError(f"garbled final unit: {tail[:40]!r}")
                if os.pread(fd, base, 0) != head:
                    raise AssertionError("data before the final unit changed")

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: B902 - reported below
                errors.append(e)
                stop.set()
        return run

    threads = [threading.Thread(target=guard(f)) for f in (writer, sizer, reader, reader)]
    for th in threads:
        th.start()
    threads[0].join()
    stop.set()
    for th in threads[1:]:
        th.join()
    assert not errors, errors
    model = head + bytes([last[0]]) * 5 + bytes(95)
    check_file(target, model)


def test_concurrent_truncate_to_zero(target):
    """Truncation to 0 (which drops an encrypted file's header) racing with
    writers and readers on other descriptors: every block reads back either
    as zeros or as what was written there, and the file ends up consistent."""
    nblocks = 16
    pattern = [bytes([b + 1]) * UNIT for b in range(nblocks)]
    write(target.path, b"".join(pattern))
    stop = threading.Event()
    errors = []

    def writer():
        with fd_open(target.path, os.O_RDWR) as fd:
            for i in range(1500):
                b = i % nblocks
                os.pwrite(fd, pattern[b], b * UNIT)
            for b in range(nblocks):
                os.pwrite(fd, pattern[b], b * UNIT)

    def truncater():
        with fd_open(target.path, os.O_RDWR) as fd:
            while not stop.is_set():
                os.ftruncate(fd, 0)

    def reader():
        with fd_open(target.path, os.O_RDONLY) as fd:
            while not stop.is_set():
                data = os.pread(fd, nblocks * UNIT, 0)
                # Linux does not make buffered reads atomic with writes: a
                # block may show part old (zeros), part new. Never anything
                # else (a garbled decryption would).
                for b in range(len(data) // UNIT):
                    blk = data[b * UNIT:(b + 1) * UNIT]
                    if not set(blk) <= {0, b + 1}:
                        raise AssertionError(f"block {b} of {len(data) // UNIT} garbled: "
                                             f"{sorted(set(blk))[:10]}")

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: B902 - reported below
                errors.append(e)
                stop.set()
        return run

    threads = [threading.Thread(target=guard(f)) for f in (writer, truncater, reader)]
    for th in threads:
        th.start()
    threads[0].join()
    stop.set()
    for th in threads[1:]:
        th.join()
    assert not errors, errors
    # The truncater may have run after the writer's last pass: write it once more.
    with fd_open(target.path, os.O_RDWR) as fd:
        for b in range(nblocks):
            os.pwrite(fd, pattern[b], b * UNIT)
    check_file(target, b"".join(pattern))
    assert is_encrypted(target.backing) == target.enc


# --- the randomized model test -----------------------------------------------------------

def _boundaryish(rng, limit):
    if rng.random() < 0.5:
        u = rng.randrange(max(1, limit // UNIT + 1))
        return max(0, u * UNIT + rng.choice([-17, -16, -15, -1, 0, 1, 15, 16, 17]))
    return rng.randrange(max(1, limit))


def _length(rng):
    r = rng.random()
    if r < 0.4:
        return rng.randrange(16)
    if r < 0.7:
        return rng.choice([4095, 4096, 4097, 4111, 4112, 8191, 8192, 8193])
    return rng.randrange(20000)


def run_model(t, rng, steps, fds, model, history, check_backing=True):
    """@steps random operations through the open descriptors @fds (replaced
    in place when reopened), checking @model after each one."""
    maxsize = 96 * 1024
    for step in range(steps):
        size = len(model)
        i = rng.randrange(len(fds))
        fd = fds[i]
        r = rng.random()
        if r < 0.30:
            off, ln = _boundaryish(rng, min(size + 8192, maxsize)), _length(rng)
            data = rng.randbytes(ln)
            history.append(f"pwrite fd#{i} off={off} len={ln}")
            assert os.pwrite(fd, data, off) == ln
            if ln:
                if off > size:
                    model += bytes(off - size)
                model[off:off + ln] = data
        elif r < 0.40:
            off, ln = _boundaryish(rng, size + 100), _length(rng)
            history.append(f"pread off={off} len={ln}")
            assert os.pread(fd, ln, off) == bytes(model[off:off + ln])
        elif r < 0.52:
            ns = 0 if rng.random() < 0.08 else _boundaryish(rng, maxsize)
            history.append(f"ftruncate {ns}")
            if rng.random() < 0.5:
                os.ftruncate(fd, ns)
            else:
                os.truncate(t.path, ns)
            del model[ns:]
            model += bytes(ns - len(model))
        elif r < 0.62:
            off, ln = _boundaryish(rng, size + 100), max(1, _length(rng))
            history.append(f"punch off={off} len={ln}")
            punch_hole(fd, off, ln)
            end = min(off + ln, size)
            if end > off:
                model[off:end] = bytes(end - off)
        elif r < 0.72:
            off, ln = _boundaryish(rng, min(size + 8192, maxsize)), max(1, _length(rng))
            keep = rng.random() < 0.5
            history.append(f"zero_range off={off} len={ln} keep={keep}")
            fallocate(fd, FALLOC_FL_ZERO_RANGE | (FALLOC_FL_KEEP_SIZE if keep else 0), off, ln)
            end = off + ln if not keep else min(off + ln, size)
            if end > len(model):
                model += bytes(end - len(model))
            if end > off:
                model[off:end] = bytes(end - off)
        elif r < 0.79:
            off, ln = _boundaryish(rng, min(size + 8192, maxsize)), max(1, _length(rng))
            keep = rng.random() < 0.5
            history.append(f"fallocate off={off} len={ln} keep={keep}")
            fallocate(fd, FALLOC_FL_KEEP_SIZE if keep else 0, off, ln)
            if not keep and off + ln > size:
                model += bytes(off + ln - size)
        elif r < 0.88:
            if size == 0:
                continue
            off = rng.randrange(size)
            ln = min(size - off, _length(rng) or 1)
            data = rng.randbytes(ln)
            history.append(f"mmap-write off={off} len={ln}")
            with mmap.mmap(fd, size) as m:
                m[off:off + ln] = data
                if rng.random() < 0.5:
                    assert m[:] == model[:off] + data + model[off + ln:]
                m.flush()
            model[off:off + ln] = data
        elif r < 0.92:
            if size == 0:
                continue
            history.append("mmap-read")
            with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
                assert m[:] == model
        elif r < 0.97:
            trunc = rng.random() < 0.2
            history.append(f"reopen fd#{i} trunc={trunc}")
            os.close(fd)
            fds[i] = fd = -1
            fds[i] = fd = os.open(t.path, os.O_RDWR | (os.O_TRUNC if trunc else 0))
            if trunc:
                del model[:]
        else:
            history.append("fsync")
            os.fsync(fd)
        # After every step: size, whole content (through every descriptor in
        # turn) and the backing file.
        fd = fds[step % len(fds)]
        assert os.fstat(fd).st_size == len(model), "size differs from the model"
        got = os.pread(fd, len(model) + 4096, 0)
        if got != model:
            first = next((i for i in range(min(len(got), len(model))) if got[i] != model[i]),
                         min(len(got), len(model)))
            raise AssertionError(f"content differs from the model at offset {first} "
                                 f"(read {len(got)} bytes, model {len(model)})")
        if check_backing:
            t.check_backing(model)


@pytest.mark.parametrize("mode", ["default", "writeback"])
def test_random_model(make_ds, mode):
    """A few thousand random operations on an encrypted and a cleartext file,
    through two descriptors at once, against a bytearray model; VMC_SEED
    reseeds it, VMC_MODEL_STEPS changes its length. With -o writeback the
    backing store is compared only after fsync."""
    seed = int(os.environ.get("VMC_SEED", "20240601"))
    steps = int(os.environ.get("VMC_MODEL_STEPS", "2500"))
    wb = mode == "writeback"
    ds = make_ds("ds", options=["writeback"] if wb else [])
    ds.make_vm("vm1")
    targets = [Target(ds, "encrypted"), Target(ds, "cleartext")]
    models = []
    for i, t in enumerate(targets):
        rng = random.Random(seed * 2 + i)
        history = []
        model = bytearray()
        fds = [os.open(t.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC), os.open(t.path, os.O_RDWR)]
        try:
            run_model(t, rng, steps, fds, model, history, check_backing=not wb)
            os.fsync(fds[0])
            t.check_backing(model)
        except BaseException as e:
            raise AssertionError(
                f"{t.kind} model ({mode}) failed at step {len(history)} with VMC_SEED={seed}: "
                f"{e!r}\nlast operations:\n  " + "\n  ".join(history[-15:])) from e
        finally:
            for fd in fds:
                if fd >= 0:
                    os.close(fd)
        models.append(bytes(model))
        assert is_encrypted(t.backing) == (t.enc and len(model) > 0)
    ds.remount()
    for t, model in zip(targets, models):
        assert read(t.path) == model, f"{t.kind} file differs after remount (VMC_SEED={seed})"
        t.check_backing(model)
