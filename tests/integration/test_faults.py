# SPDX-License-Identifier: GPL-2.0-or-later
"""Faults of what lies under and beside the daemon (issue 7, "Faults").

A full backing store. The backing directory is a 24 MiB tmpfs (the
conversions want 16 MiB of headroom), filled through the mount with an
encrypted disk and a cleartext file. Every way the daemon allocates backing
space then fails with exactly ENOSPC (after a short write up to a page
boundary, as on any full filesystem): appending and extending writes,
writes into a hole, fallocate, an extending truncate that needs a block (a
final data unit of 1..15 bytes must hold ciphertext), the header of a new
encrypted file, the key record of a new VM, and vmcryptfs-ctl rekey, rekey
--deep and encrypt (exit status 7). Nothing already written and synced
changes (compared with a plaintext reference), no half-written header or key
record is left, vmcryptfs-util scan reports a clean datastore; once files
are deleted the same operations succeed, and everything reads back after a
remount.

I/O errors of the backing store. tests/fault/libvmcfault.so, preloaded into
the daemon, fails chosen calls (pread, pwrite, fsync, fallocate, ftruncate,
and the rest the daemon or libfuse might use) on one backing file with EIO:
reads, writes, fsync, truncate and fallocate of that file fail with EIO at
the application, while the other files of the same VM, other VMs and
cleartext files keep working; once the fault is cleared the file reads back
unchanged. The library's log proves that the faults reached the daemon
(reads are made with the mount's page cache dropped). Faults that hit the
middle of an operation (the second of its writes) must not damage data
written before.

The key server dying. A real pykmip-server on loopback behind a TCP proxy
that the test can cut: killed (SIGKILL) before, or cut in the middle of (the
server executes a request, its answer never arrives), the creation of a new
VM's KEK and of a rekey's new KEK: the operation fails cleanly, leaves no key
record behind (or the old one unchanged), every other VM keeps working, and
the retry succeeds once the server is back with the same database. A rekey
interrupted by a daemon crash point and then faced with a dead server stays
resumable. `rekey --to-provider kms` of a native VM with the server dead
leaves the VM native and readable. (Skipped without pykmip-server.)

Tests marked xfail(strict=True) show bugs; their reasons say which. When a
bug is fixed its test passes, and strict xfail makes that a failure until the
mark is removed.

VMC_SEED reseeds the data.
"""
import errno
import os
import random
import select
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

import vmctest
from faultenv import (Faults, assert_backing_intact, assert_scan_clean, errno_name,
                      pread_nocache, read_nocache, record_problems, same, wait_until,
                      write_synced)
from vmctest import (ENOKEY, EXIT_KEY, EXIT_NOSPACE, EXIT_OK, HDR, POLICY_NAME, STATE_NAME, ctl_ds,
                     errno_of, fallocate, header_slots, is_encrypted, read, vm_key_record)

SEED = int(os.environ.get("VMC_SEED", "7007"))
KiB = 1024
MiB = 1 << 20
TMPFS_SIZE = "24m"   # the conversions want 16 MiB of headroom (fs/convert.c check_space)
FALLOC_KEEP = vmctest.FALLOC_FL_KEEP_SIZE


def expect_errno(want, fn, *args, what=""):
    got = errno_of(fn, *args)
    assert got == want, f"{what}: expected {errno_name(want)}, got " \
        f"{'success' if got == 0 else errno_name(got)}"


def slots_of(ds, rel):
    return [(s["provider"], s["kek_id"]) for s in header_slots(ds.b(rel))]


def record(ds, vm):
    return vm_key_record(ds.b(vm) / STATE_NAME)


def check_refs(ds, refs, what):
    for rel, data in refs.items():
        same(read_nocache(ds.m(rel)), data, f"{what}: {rel}")


# --- A full backing store -----------------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path):
    """A tmpfs of TMPFS_SIZE mounted for the test (requested before make_ds,
    so that it is unmounted after the daemons)."""
    d = tmp_path / "small"
    d.mkdir()
    vmctest.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "vmctest-small",
                 d])
    yield d
    if vmctest.run(["umount", d], check=False).returncode != 0:
        vmctest.run(["umount", "-l", d], check=False)


def free_blocks(path):
    st = os.statvfs(path)
    return st.f_bfree


def fill_encrypted(path, rng):
    """Append to the encrypted file @path until the store is full: returns the
    bytes acknowledged (the file's content) and the errno of the first
    failure of each write size."""
    data = bytearray()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    errs = []
    try:
        for chunk in (256 * KiB, 16 * KiB, 4 * KiB):
            while True:
                b = rng.randbytes(chunk)
                try:
                    n = os.pwrite(fd, b, len(data))
                except OSError as e:
                    errs.append(e.errno)
                    break
                assert n == chunk, f"short write {n} of {chunk} to an encrypted file"
                data += b
        os.fsync(fd)
    finally:
        os.close(fd)
    return bytes(data), errs


def patch(data, off, b):
    """@data with @b written at @off (zero-filled if @off is past the end)."""
    if not b:
        return data
    if off > len(data):
        data += bytes(off - len(data))
    return data[:off] + b + data[off + len(b):]


def write_until_enospc(fd, b, off, what):
    """Write @b at @off as a careful application does (continuing after a
    short write) until a write fails: it must fail with ENOSPC before all of
    @b is written. Returns how much was written."""
    done = 0
    while True:
        try:
            n = os.pwrite(fd, b[done:], off + done)
        except OSError as e:
            assert e.errno == errno.ENOSPC, f"{what}: {errno_name(e.errno)}, not ENOSPC"
            return done
        assert 0 < n, f"{what}: write returned 0"
        done += n
        assert done < len(b), f"{what}: the whole write succeeded on a full store"


def top_up(ds, refs, rng):
    """Append to the cleartext fill.log at the datastore's root (outside any
    VM: no lock to take) until the store is full again."""
    with open(ds.m("fill.log"), "ab") as f:
        written, e = append_until_error(f.fileno(), len(refs["fill.log"]), rng)
        os.fsync(f.fileno())
    assert e == errno.ENOSPC, f"filling a cleartext file stopped with {errno_name(e)}"
    refs["fill.log"] += written
    assert free_blocks(ds.backing) == 0, "the backing store is not full"


def append_until_error(fd, size, rng):
    """Append cleartext to @fd at @size until a write fails; (written, errno).
    (The last write that fits is cut short at the end of the space.)"""
    written = b""
    while True:
        b = rng.randbytes(256 * KiB)
        try:
            n = os.pwrite(fd, b, size + len(written))
        except OSError as e:
            return written, e.errno
        written += b[:n]


def test_full_backing_store(small_tmpfs, make_ds, tmp_path):
    rng = random.Random(SEED)
    ds = ctl_ds(make_ds, tmp_path, backing=small_tmpfs)
    ds.expect_error("vm2: cannot write .vmcrypt.state: No space left on device")
    ds.expect_error("VM vm3: cannot take its lock")
    ds.make_vm("vm1")
    ds.make_vm("vm2")                          # policy only: no key record yet
    (ds.m("vm3")).mkdir()                       # a cleartext VM, for encrypt
    refs = {
        "vm1/vm1-flat.vmdk": rng.randbytes(MiB + 1800),  # final unit not a multiple of 16
        "vm1/vm1.nvram": rng.randbytes(8192 + 496),       # final unit a multiple of 16
        "vm1/vm1.vmx": b'displayName = "vm1"\n',
        "vm1/vmware.log": b"log line\n" * 500,
        "vm3/vm3-flat.vmdk": rng.randbytes(300 * KiB),
        "vm3/vm3.vmx": b'displayName = "vm3"\n',
        "notes.txt": rng.randbytes(10 * KiB),
    }
    for rel, data in refs.items():
        write_synced(ds.m(rel), data)
    # A thin disk: data at both ends, a hole between.
    sparse = bytearray(MiB)
    sparse[:8 * KiB] = rng.randbytes(8 * KiB)
    sparse[-8 * KiB:] = rng.randbytes(8 * KiB)
    with open(ds.m("vm1/thin-flat.vmdk"), "wb") as f:
        f.write(sparse[:8 * KiB])
        f.seek(MiB - 8 * KiB)
        f.write(sparse[-8 * KiB:])
        os.fsync(f.fileno())
    refs["vm1/thin-flat.vmdk"] = bytes(sparse)
    for rel in ("vm1/vm1-flat.vmdk", "vm1/vm1.nvram", "vm1/thin-flat.vmdk"):
        assert is_encrypted(ds.b(rel)), rel
    rec1 = record(ds, "vm1")
    hdrs = {rel: read(ds.b(rel))[:HDR] for rel in refs if is_encrypted(ds.b(rel))}

    # Writing to a VM's files takes the VM's lock, a file in the backing store
    # (fs/lease.c): hold vm1's and vm2's while the store is full.
    refs["vm2/vm2.vmx"] = b'displayName = "vm2"\n'
    write_synced(ds.m("vm2/vm2.vmx"), refs["vm2/vm2.vmx"])
    holders = [os.open(ds.m("vm1/vm1.vmx"), os.O_RDWR), os.open(ds.m("vm2/vm2.vmx"), os.O_RDWR)]

    # Fill the store through the mount: an encrypted disk, then a cleartext
    # file outside the VMs.
    fill, errs = fill_encrypted(ds.m("vm1/fill-flat.vmdk"), rng)
    assert errs == [errno.ENOSPC] * 3, f"filling an encrypted disk stopped with " \
        f"{[errno_name(e) for e in errs]}"
    assert len(fill) > 12 * MiB
    refs["vm1/fill-flat.vmdk"] = fill
    refs["fill.log"] = b""
    top_up(ds, refs, rng)
    check_refs(ds, refs, "full")

    # --- Everything that needs space fails with ENOSPC, and changes nothing
    # else. (The kernel may cut a write at a page boundary: the first part can
    # succeed as a short write, as on any full filesystem; what it reports
    # written must then be there.)
    flat = "vm1/vm1-flat.vmdk"
    with vmctest.fd_open(ds.m(flat), os.O_RDWR) as fd:
        for what, off, n in (("encrypted append", None, 4096),
                             ("encrypted write past the end", 5000, 100),
                             ("encrypted write across the end", -1000, 64 * KiB)):
            size = len(refs[flat])
            off = size if off is None else size + off
            b = rng.randbytes(n)
            done = write_until_enospc(fd, b, off, what)
            refs[flat] = patch(refs[flat], off, b[:done])
            assert os.fstat(fd).st_size == len(refs[flat]), what
        size = len(refs[flat])
        expect_errno(errno.ENOSPC, fallocate, fd, 0, size, MiB, what="fallocate past the end")
        expect_errno(errno.ENOSPC, fallocate, fd, FALLOC_KEEP, size, MiB,
                     what="fallocate KEEP_SIZE past the end")
        assert os.fstat(fd).st_size == size
        os.fsync(fd)
        same(pread_nocache(fd, size + 10, 0), refs[flat], flat)
    thin = "vm1/thin-flat.vmdk"
    with vmctest.fd_open(ds.m(thin), os.O_RDWR) as fd:
        for what, off, n in (("encrypted write into a hole", 512 * KiB, 4096),
                             ("unaligned encrypted write into a hole", 300 * KiB + 7, 10000)):
            b = rng.randbytes(n)
            done = write_until_enospc(fd, b, off, what)
            refs[thin] = patch(refs[thin], off, b[:done])
        expect_errno(errno.ENOSPC, fallocate, fd, 0, 100 * KiB, 200 * KiB,
                     what="fallocate of a hole")
        os.fsync(fd)
    nvram = "vm1/vm1.nvram"
    with vmctest.fd_open(ds.m(nvram), os.O_RDWR) as fd:
        # Growing an encrypted file to a final unit of 1..15 bytes needs a block
        # for its ciphertext; growing to a unit boundary does not (a hole).
        n = len(refs[nvram])
        expect_errno(errno.ENOSPC, os.ftruncate, fd, 5 * 4096 + 5,
                     what="extending truncate to a final unit of 5 bytes")
        assert os.fstat(fd).st_size == n
        os.ftruncate(fd, 6 * 4096)
        assert pread_nocache(fd, 6 * 4096, 0) == refs[nvram] + bytes(6 * 4096 - n)
        os.ftruncate(fd, n)
        assert pread_nocache(fd, n + 10, 0) == refs[nvram]
    with vmctest.fd_open(ds.m("notes.txt"), os.O_RDWR) as fd:
        n = len(refs["notes.txt"])
        expect_errno(errno.ENOSPC, fallocate, fd, 0, n, MiB, what="cleartext fallocate")
        written, e = append_until_error(fd, n, rng)
        assert e == errno.ENOSPC, f"cleartext append: {errno_name(e)}"
        refs["notes.txt"] += written      # (the slack of its last page)
        os.fsync(fd)

    # A new encrypted file of an encrypted VM: no header without its data.
    with vmctest.fd_open(ds.m("vm1/new.vmem"), os.O_RDWR | os.O_CREAT) as fd:
        expect_errno(errno.ENOSPC, os.pwrite, fd, rng.randbytes(5000), 0,
                     what="first data of a new encrypted file")
        expect_errno(errno.ENOSPC, os.ftruncate, fd, 100, what="truncate of a new encrypted file")
        assert os.fstat(fd).st_size == 0
    assert os.stat(ds.b("vm1/new.vmem")).st_size == 0, "a half-written header was left"
    # The first encrypted file of a new VM: no key record either.
    with vmctest.fd_open(ds.m("vm2/vm2.nvram"), os.O_RDWR | os.O_CREAT) as fd:
        expect_errno(errno.ENOSPC, os.pwrite, fd, rng.randbytes(3000), 0,
                     what="first encrypted file of a new VM")
    assert sorted(os.listdir(ds.b("vm2"))) == sorted([POLICY_NAME, "vm2.nvram", "vm2.vmx"]), \
        f"left in vm2: {os.listdir(ds.b('vm2'))}"
    assert os.stat(ds.b("vm2/vm2.nvram")).st_size == 0
    # A VM nobody writes to: opening one of its files for writing needs its
    # lock file, so it may fail, but only with ENOSPC and leaving nothing.
    e = errno_of(lambda: os.close(os.open(ds.m("vm3/vm3-flat.vmdk"), os.O_RDWR)))
    assert e in (0, errno.ENOSPC), f"opening a file of an idle VM: {errno_name(e)}"
    assert sorted(os.listdir(ds.b("vm3"))) == ["vm3-flat.vmdk", "vm3.vmx"], os.listdir(ds.b("vm3"))

    # Control operations that need space: exit 7, nothing changed. (A deep
    # rekey wants the VM's files closed: the locks go, then the store is
    # filled again.)
    r = ds.ctl("rekey", ds.m("vm1"), rc=None)
    assert r.rc == EXIT_NOSPACE, f"rekey on a full store:\n{r!r}"
    assert record(ds, "vm1") == rec1, "rekey: the key record changed"
    for fd in holders:
        os.close(fd)
    time.sleep(0.5)
    top_up(ds, refs, rng)
    r = ds.ctl("rekey", "--deep", ds.m("vm1"), rc=None)
    assert r.rc == EXIT_NOSPACE, f"rekey --deep on a full store:\n{r!r}"
    assert record(ds, "vm1") == rec1, "rekey --deep: the key record changed"
    for rel, h in hdrs.items():
        assert read(ds.b(rel))[:HDR] == h, f"{rel}: header changed"

    check_refs(ds, refs, "after the failures on a full store")
    assert_backing_intact(ds.backing, "full store")
    assert_scan_clean(ds, what="full store")

    # --- Space freed: the datastore works normally.
    os.unlink(ds.m("fill.log"))
    os.unlink(ds.m("vm1/fill-flat.vmdk"))
    del refs["fill.log"], refs["vm1/fill-flat.vmdk"]
    # The backing file goes when the daemon forgets the inode (the kernel's
    # FORGET after the unlink comes asynchronously): allow for that.
    assert wait_until(lambda: free_blocks(small_tmpfs) * os.statvfs(small_tmpfs).f_frsize
                      > 20 * MiB, 20), \
        f"deleting the files did not free their space: {free_blocks(small_tmpfs)} blocks free"
    more = rng.randbytes(200 * KiB + 3)
    with open(ds.m(flat), "r+b") as f:
        f.seek(len(refs[flat]))
        f.write(more)
        os.fsync(f.fileno())
    refs[flat] += more
    with vmctest.fd_open(ds.m(nvram), os.O_RDWR) as fd:
        os.ftruncate(fd, 5 * 4096 + 5)
        refs[nvram] += bytes(5 * 4096 + 5 - len(refs[nvram]))
        fallocate(fd, 0, 0, 8 * 4096)
        refs[nvram] += bytes(8 * 4096 - len(refs[nvram]))
        os.fsync(fd)
    with vmctest.fd_open(ds.m(thin), os.O_RDWR) as fd:
        b = rng.randbytes(4096)
        os.pwrite(fd, b, 512 * KiB)
        refs[thin] = patch(refs[thin], 512 * KiB, b)
    refs["vm1/new.vmem"] = rng.randbytes(5000)
    write_synced(ds.m("vm1/new.vmem"), refs["vm1/new.vmem"])
    refs["vm2/vm2.nvram"] = rng.randbytes(3000)
    write_synced(ds.m("vm2/vm2.nvram"), refs["vm2/vm2.nvram"])
    for rel in ("vm1/new.vmem", "vm2/vm2.nvram"):
        vmctest.assert_encrypted(ds.b(rel), plain=refs[rel])
    assert record(ds, "vm2")["state"] == 0
    r = ds.ctl("rekey", ds.m("vm1")).json["vms"][0]
    rec = record(ds, "vm1")
    assert rec["current"] != rec1["current"] and rec["state"] == 0 and r["to"] == rec["current"][1]
    for rel in ("vm1/vm1-flat.vmdk", nvram, "vm1/thin-flat.vmdk", "vm1/new.vmem"):
        assert slots_of(ds, rel) == [rec["current"]], rel
    r = ds.ctl("encrypt", ds.m("vm3")).json
    assert r["failed"] == 0, r
    assert is_encrypted(ds.b("vm3/vm3-flat.vmdk"))
    check_refs(ds, refs, "after freeing space")
    ds.remount()
    check_refs(ds, refs, "after a remount")
    assert_backing_intact(ds.backing, "end")
    assert_scan_clean(ds, verify=True, what="end")


def test_full_store_failed_encrypt_leaves_vm_unchanged(small_tmpfs, make_ds, tmp_path):
    """`encrypt` of a cleartext VM on a full store fails with exit status 7
    ("checked first") and leaves the VM as it was: no policy file, no key
    record; with space freed, its files stay writable and encrypt works.
    (test_io_error_writing_the_policy_file is the same with the policy
    file's own write failing.)"""
    rng = random.Random(SEED + 6)
    ds = ctl_ds(make_ds, tmp_path, backing=small_tmpfs)
    ds.m("vm3").mkdir()
    refs = {"vm3/vm3-flat.vmdk": rng.randbytes(300 * KiB), "vm3/vm3.vmx": b"x = 1\n"}
    for rel, data in refs.items():
        write_synced(ds.m(rel), data)
    time.sleep(0.5)             # (the VM's lock file goes once its files are closed)
    top_up(ds, {"fill.log": b""}, rng)
    r = ds.ctl("encrypt", ds.m("vm3"), rc=None)
    assert r.rc == EXIT_NOSPACE, f"encrypt on a full store:\n{r!r}"
    left = sorted(os.listdir(ds.b("vm3")))
    policy = read(ds.b("vm3") / POLICY_NAME) if POLICY_NAME in left else None
    assert left == ["vm3-flat.vmdk", "vm3.vmx"], f"left in vm3: {left}, policy file {policy!r}"
    os.unlink(ds.m("fill.log"))
    assert wait_until(lambda: free_blocks(small_tmpfs) * os.statvfs(small_tmpfs).f_frsize
                      > 20 * MiB, 20), "deleting fill.log did not free its space"
    with open(ds.m("vm3/vm3-flat.vmdk"), "r+b") as f:
        f.write(b"still writable")
    refs["vm3/vm3-flat.vmdk"] = patch(refs["vm3/vm3-flat.vmdk"], 0, b"still writable")
    assert ds.ctl("encrypt", ds.m("vm3")).json["failed"] == 0
    check_refs(ds, refs, "after encrypt")
    assert_scan_clean(ds, what="end")


def test_full_store_failed_truncate_keeps_final_unit(small_tmpfs, make_ds, tmp_path):
    """An extending truncate that fails for lack of space leaves the data
    before it unchanged, also when the old final data unit is not a multiple
    of 16 bytes long (it was encrypted with ciphertext stealing)."""
    rng = random.Random(SEED + 1)
    ds = ctl_ds(make_ds, tmp_path, backing=small_tmpfs)
    ds.make_vm("vm1")
    ref = rng.randbytes(3 * 4096 + 1800)
    write_synced(ds.m("vm1/vm1-flat.vmdk"), ref)
    with vmctest.fd_open(ds.m("vm1/vm1-flat.vmdk"), os.O_RDWR) as fd:   # (holds the VM's lock)
        top_up(ds, {"fill.log": b""}, rng)
        expect_errno(errno.ENOSPC, os.ftruncate, fd, 6 * 4096 + 5, what="extending truncate")
        assert os.fstat(fd).st_size == len(ref)
        same(pread_nocache(fd, len(ref), 0), ref, "after a failed extending truncate")
    ds.remount()
    same(read(ds.m("vm1/vm1-flat.vmdk")), ref, "after a remount")


# --- I/O errors of the backing store ----------------------------------------------------

# Every call the fault library can fail (tests/fault/vmcfault.c): the daemon
# itself uses pread/pwrite/fsync/fdatasync/fallocate/ftruncate on backing
# files; libfuse answers cleartext reads with pread (or splice when the
# kernel and libfuse splice); the rest for completeness.
ALL_IO = "read,write,pread,pwrite,preadv,pwritev,fsync,fdatasync,splice,copy_file_range," \
         "fallocate,ftruncate,sync_file_range"


def make_io_vms(ds, rng):
    ds.make_vm("vm1")
    ds.make_vm("vm2")
    refs = {
        "vm1/vm1-flat.vmdk": rng.randbytes(300 * KiB + 1800),
        "vm1/vm1.nvram": rng.randbytes(8684),
        "vm1/vm1.log": rng.randbytes(50 * KiB + 11),
        "vm1/vm1.vmx": b'displayName = "vm1"\n',
        "vm2/vm2-flat.vmdk": rng.randbytes(200 * KiB + 5),
        "notes.txt": rng.randbytes(20 * KiB),
    }
    for rel, data in refs.items():
        write_synced(ds.m(rel), data)
    return refs


def check_after_failed_size_change(fd, data, grow, what):
    """After a failed operation on @fd whose content was @data: the data is
    intact, and the size is the old one, or, for an operation that would
    have grown the file to @grow, at most that with zeros past the old end
    (when the backing store fails the very call that sets the size, the file
    may keep what was done before it: never damaged data). The file is cut
    back to its old size."""
    n = len(data)
    size = os.fstat(fd).st_size
    assert n <= size <= max(n, grow), f"{what}: size {size}, was {n}"
    got = pread_nocache(fd, size + 100, 0)
    same(got[:n], data, what)
    assert got[n:] == bytes(size - n), f"{what}: not zeros past the old end"
    if size != n:
        os.ftruncate(fd, n)
        same(pread_nocache(fd, n + 100, 0), data, f"{what}, cut back")


def io_check(fd, path, data, rng, what):
    """Read (uncached), rewrite part of, fsync @fd: everything works and the
    content is @data with the rewrite; returns the new content."""
    same(pread_nocache(fd, len(data) + 100, 0), data, f"{what}: read")
    b = rng.randbytes(min(777, len(data) // 2))
    off = rng.randrange(0, len(data) - len(b))
    assert os.pwrite(fd, b, off) == len(b)
    os.fsync(fd)
    data = data[:off] + b + data[off + len(b):]
    same(pread_nocache(fd, len(data) + 100, 0), data, f"{what}: read after a write")
    return data


@pytest.mark.parametrize("target", ["vm1/vm1-flat.vmdk", "vm1/vm1.log"])
def test_io_errors_affect_one_file(make_ds, tmp_path, target):
    """Every I/O call on @target's backing file fails with EIO: the
    application sees EIO on that file only."""
    rng = random.Random(SEED + 2)
    faults = Faults(tmp_path / "faults")
    ds = ctl_ds(make_ds, tmp_path, mount=False)
    ds.mount(env=faults.env())
    refs = make_io_vms(ds, rng)
    encrypted = is_encrypted(ds.b(target))
    assert encrypted == target.endswith(".vmdk")
    fds = {rel: os.open(ds.m(rel), os.O_RDWR) for rel in refs}
    try:
        faults.set(f"{ALL_IO} /{target} EIO")
        fd = fds[target]
        n = len(refs[target])
        # Reads (whole units and a partial one), writes (aligned, unaligned,
        # extending), fsync, fdatasync, truncate, fallocate: all EIO.
        expect_errno(errno.EIO, pread_nocache, fd, 4096, 0, what="read")
        expect_errno(errno.EIO, pread_nocache, fd, 100, n - 50, what="read of the end")
        expect_errno(errno.EIO, os.pwrite, fd, rng.randbytes(4096), 8192, what="aligned write")
        expect_errno(errno.EIO, os.pwrite, fd, rng.randbytes(1000), 5000, what="unaligned write")
        expect_errno(errno.EIO, os.pwrite, fd, rng.randbytes(3000), n + 10000,
                     what="extending write")
        expect_errno(errno.EIO, os.fsync, fd, what="fsync")
        expect_errno(errno.EIO, os.fdatasync, fd, what="fdatasync")
        expect_errno(errno.EIO, os.ftruncate, fd, n + 8192, what="extending truncate")
        expect_errno(errno.EIO, os.ftruncate, fd, n - 1000, what="shrinking truncate")
        expect_errno(errno.EIO, fallocate, fd, 0, 0, n + 4096, what="fallocate")
        # Opening it anew reads its first bytes (is it encrypted?): EIO too.
        expect_errno(errno.EIO, read_nocache, ds.m(target), what="open and read")
        hits = faults.hits()
        assert hits and all(h[1] == str(ds.b(target)) and h[2] == str(errno.EIO) for h in hits), \
            f"faults injected elsewhere: {hits}"
        # Everything else works meanwhile: the rest of the VM, the other VM,
        # cleartext files, a new file.
        for rel in refs:
            if rel != target:
                refs[rel] = io_check(fds[rel], ds.m(rel), refs[rel], rng, f"{rel} during "
                                     f"the faults on {target}")
        refs["vm1/new.vmem"] = rng.randbytes(6000)
        write_synced(ds.m("vm1/new.vmem"), refs["vm1/new.vmem"])
        assert is_encrypted(ds.b("vm1/new.vmem"))
        assert ds.ctl("status").rc == EXIT_OK

        # Fault cleared: the file is as it was before the faults and works.
        faults.clear()
        refs[target] = io_check(fd, ds.m(target), refs[target], rng,
                                f"{target} after the faults")

        # Each call on its own: its failure reaches the application as EIO,
        # and leaves the file as it was.
        n = len(refs[target])
        for op, call, args in (
                ("pread", pread_nocache, (fd, 4096, 4096)),
                ("pwrite", os.pwrite, (fd, rng.randbytes(4096), 4096)),
                ("fsync", os.fsync, (fd,)),
                ("fdatasync", os.fdatasync, (fd,)),
                ("ftruncate", os.ftruncate, (fd, n + 3 * 4096)),
                # (to a unit boundary: a cut inside a unit is
                # test_io_error_in_shrinking_truncate_keeps_data)
                ("ftruncate", os.ftruncate, (fd, (n // 4096 - 2) * 4096)),
                ("fallocate", fallocate, (fd, 0, 0, n + 4096))):
            faults.reset_hits()
            faults.set(f"{op} /{target} EIO")
            expect_errno(errno.EIO, call, *args, what=f"{target}: {op} failing")
            faults.clear()
            assert {h[0] for h in faults.hits()} == {op}, faults.hits()
            grow = n + 3 * 4096 if op == "ftruncate" and args[1] > n else \
                n + 4096 if op == "fallocate" else n
            check_after_failed_size_change(fd, refs[target], grow, f"{target} after {op} failed")
    finally:
        faults.clear()
        for fd in fds.values():
            os.close(fd)
    check_refs(ds, refs, "before the remount")
    ds.remount()
    check_refs(ds, refs, "after the remount")
    assert_backing_intact(ds.backing, "end")
    assert_scan_clean(ds, verify=True, what="end")


def test_io_errors_on_new_files(make_ds, tmp_path):
    """EIO on writing the header of a new encrypted file, or the key record of
    a new VM: the write fails with EIO, leaves an empty file and no record
    (nor its temporary), and works once the fault is gone. EIO on syncing
    the VM directory after the record's rename: the file write fails, the
    record that is in place is whole and used by the retry."""
    rng = random.Random(SEED + 3)
    faults = Faults(tmp_path / "faults")
    ds = ctl_ds(make_ds, tmp_path, mount=False)
    ds.mount(env=faults.env())
    refs = make_io_vms(ds, rng)
    ds.expect_error("cannot write .vmcrypt.state")

    faults.set("pwrite /vm1/new.nvram EIO")
    with vmctest.fd_open(ds.m("vm1/new.nvram"), os.O_RDWR | os.O_CREAT) as fd:
        expect_errno(errno.EIO, os.pwrite, fd, rng.randbytes(5000), 0, what="first data")
        assert os.stat(ds.b("vm1/new.nvram")).st_size == 0, "a partial header was left"
        faults.clear()
        refs["vm1/new.nvram"] = rng.randbytes(5000)
        assert os.pwrite(fd, refs["vm1/new.nvram"], 0) == 5000
    assert is_encrypted(ds.b("vm1/new.nvram"))

    ds.make_vm("vm3")
    faults.set(f"pwrite /vm3/{STATE_NAME}.tmp EIO")
    expect_errno(errno.EIO, vmctest.write, ds.m("vm3/vm3.nvram"), rng.randbytes(100),
                 what="first file of a new VM, record write failing")
    assert sorted(os.listdir(ds.b("vm3"))) == sorted([POLICY_NAME, "vm3.nvram"]), os.listdir(ds.b("vm3"))
    faults.set(f"fsync /vm3/{STATE_NAME}.tmp EIO")
    expect_errno(errno.EIO, vmctest.write, ds.m("vm3/vm3.nvram"), rng.randbytes(100),
                 what="first file of a new VM, record sync failing")
    assert sorted(os.listdir(ds.b("vm3"))) == sorted([POLICY_NAME, "vm3.nvram"]), os.listdir(ds.b("vm3"))
    assert os.stat(ds.b("vm3/vm3.nvram")).st_size == 0
    # The directory sync after the rename fails (the record is in place).
    faults.set("fsync /vm3$ EIO")
    e = errno_of(vmctest.write, ds.m("vm3/vm3.nvram"), rng.randbytes(100))
    faults.clear()
    assert e == errno.EIO, errno_name(e)
    assert record_ok(ds, "vm3")
    refs["vm3/vm3.nvram"] = rng.randbytes(4000)
    write_synced(ds.m("vm3/vm3.nvram"), refs["vm3/vm3.nvram"])
    assert slots_of(ds, "vm3/vm3.nvram") == [record(ds, "vm3")["current"]]
    check_refs(ds, refs, "end")
    ds.remount()
    check_refs(ds, refs, "after a remount")
    assert_backing_intact(ds.backing, "end")
    assert_scan_clean(ds, verify=True, what="end")


def record_ok(ds, vm):
    p = record_problems(read(ds.b(vm) / STATE_NAME))
    assert not p, p
    return True


def test_io_error_in_extending_write_keeps_data(make_ds, tmp_path):
    """The second backing write of an extending write (after the old final
    unit was re-encoded) fails: the data before the write is unchanged, now
    and after the file is extended again."""
    rng = random.Random(SEED + 4)
    faults = Faults(tmp_path / "faults")
    ds = ctl_ds(make_ds, tmp_path, mount=False)
    ds.mount(env=faults.env())
    ds.make_vm("vm1")
    ref = rng.randbytes(3 * 4096 + 1800)
    write_synced(ds.m("vm1/vm1-flat.vmdk"), ref)
    with vmctest.fd_open(ds.m("vm1/vm1-flat.vmdk"), os.O_RDWR) as fd:
        faults.set("pwrite /vm1/vm1-flat.vmdk EIO skip=1 count=1")
        expect_errno(errno.EIO, os.pwrite, fd, rng.randbytes(3000), 5 * 4096 + 10,
                     what="extending write")
        faults.clear()
        assert len(faults.hits()) == 1
        same(pread_nocache(fd, len(ref), 0), ref, "right after the failed write")
        os.pwrite(fd, b"r" * 100, 7 * 4096)
        os.fsync(fd)
        same(pread_nocache(fd, len(ref), 0), ref, "after the next extension")


def test_io_error_in_extending_truncate_keeps_data(make_ds, tmp_path):
    """The second backing write of an extending truncate fails: the data
    before it is unchanged."""
    rng = random.Random(SEED + 5)
    faults = Faults(tmp_path / "faults")
    ds = ctl_ds(make_ds, tmp_path, mount=False)
    ds.mount(env=faults.env())
    ds.make_vm("vm1")
    ref = rng.randbytes(3 * 4096 + 1800)
    write_synced(ds.m("vm1/vm1-flat.vmdk"), ref)
    with vmctest.fd_open(ds.m("vm1/vm1-flat.vmdk"), os.O_RDWR) as fd:
        faults.set("pwrite /vm1/vm1-flat.vmdk EIO skip=1 count=1")
        expect_errno(errno.EIO, os.ftruncate, fd, 6 * 4096 + 5, what="extending truncate")
        faults.clear()
        assert len(faults.hits()) == 1
        check_after_failed_size_change(fd, ref, 6 * 4096 + 5, "after the failed truncate")


def test_io_error_in_shrinking_truncate_keeps_data(make_ds, tmp_path):
    """The backing ftruncate of a truncate to the middle of a data unit
    fails: the application sees EIO and the file is unchanged."""
    rng = random.Random(SEED + 7)
    faults = Faults(tmp_path / "faults")
    ds = ctl_ds(make_ds, tmp_path, mount=False)
    ds.mount(env=faults.env())
    ds.make_vm("vm1")
    ref = rng.randbytes(6 * 4096 + 100)
    write_synced(ds.m("vm1/vm1-flat.vmdk"), ref)
    with vmctest.fd_open(ds.m("vm1/vm1-flat.vmdk"), os.O_RDWR) as fd:
        faults.set("ftruncate /vm1/vm1-flat.vmdk EIO")
        expect_errno(errno.EIO, os.ftruncate, fd, 3 * 4096 + 1800, what="shrinking truncate")
        faults.clear()
        assert len(faults.hits()) == 1
        assert os.fstat(fd).st_size == len(ref)
        same(pread_nocache(fd, len(ref), 0), ref, "after the failed truncate")


# --- The key server dying ---------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kmip"))
import kmipenv  # noqa: E402

KMS_TIMEOUT = 3        # the provider's time-out (seconds) in these tests
UNLOCK_WAIT = 20.0     # the host remembers a failure for 2 s; allow for a loaded machine


class KmsProxy:
    """A TCP proxy on a fixed loopback port in front of a pykmip-server,
    which a test can take down (nothing listens: connections are refused,
    as when the server is dead) and bring up again in front of a restarted
    server, whatever its port. cut_after(n): the n-th KMIP request (a TLS
    application-data record from the client, KMIP over TLS 1.2) from now on
    reaches the server, which executes it, but its answer is dropped, the
    connection closed and the proxy goes down: the server "died" in the
    middle of the operation."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.target = None
        self.lsock = None
        self.thread = None
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.socks = []
        self.requests = 0
        self.cut_at = None
        self.cut = threading.Event()

    def __repr__(self):
        return f"<KmsProxy port {self.port} -> {self.target}>"

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def up(self, target_port):
        assert self.lsock is None
        self.target = target_port
        self.stop_ev = threading.Event()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:
            try:
                s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        s.listen(16)
        s.settimeout(0.2)
        self.lsock = s
        self.thread = threading.Thread(target=self._serve, args=(s, self.stop_ev), daemon=True)
        self.thread.start()
        return self

    def down(self):
        self.stop_ev.set()
        if self.lsock is not None:
            self.lsock.close()
            self.lsock = None
        with self.lock:
            socks, self.socks = self.socks, []
        for c in socks:
            try:
                c.close()
            except OSError:
                pass
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
        self.thread = None

    close = down

    def cut_after(self, n):
        with self.lock:
            self.cut_at = self.requests + n
        self.cut.clear()

    def _serve(self, lsock, stop):
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c, stop), daemon=True).start()

    @staticmethod
    def _records(buf, data):
        buf += data
        out = []
        while len(buf) >= 5:
            n = 5 + int.from_bytes(buf[3:5], "big")
            if len(buf) < n:
                break
            out.append(buf[:n])
            buf = buf[n:]
        return out, buf

    def _conn(self, c, stop):
        try:
            up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:
            c.close()
            return
        with self.lock:
            self.socks += [c, up]
        from_client, from_server = b"", b""
        dropping = False   # the request that dies was sent: drop its answer
        try:
            while not stop.is_set():
                r, _, _ = select.select([c, up], [], [], 0.1)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is c:
                        recs, from_client = self._records(from_client, data)
                        for rec in recs:
                            up.sendall(rec)
                            if rec[0] == 23:
                                with self.lock:
                                    self.requests += 1
                                    if self.cut_at is not None and self.requests >= self.cut_at:
                                        dropping = True
                    else:
                        recs, from_server = self._records(from_server, data)
                        for rec in recs:
                            if dropping and rec[0] == 23:
                                # The server did the work; its answer is lost.
                                with self.lock:
                                    self.cut_at = None
                                self.cut.set()
                                threading.Thread(target=self.down, daemon=True).start()
                                return
                            c.sendall(rec)
        except OSError:
            pass
        finally:
            for s in (c, up):
                try:
                    s.close()
                except OSError:
                    pass


@pytest.fixture(scope="module")
def kms_certs(tmp_path_factory):
    if not kmipenv.have_pykmip():
        pytest.skip("needs /usr/bin/pykmip-server (python3-pykmip) and openssl")
    return kmipenv.Certs(tmp_path_factory.mktemp("pki"))


class Kms:
    """One pykmip-server (its database kept across restarts) behind a
    KmsProxy; kill() is SIGKILL to the server with the proxy down, start()
    brings both back."""

    def __init__(self, d, certs):
        self.certs = certs
        self.server = kmipenv.KmipServer(d, "kms", certs, Path(d) / "kms.db")
        self.proxy = KmsProxy()
        self.dir = Path(d)

    def start(self):
        self.server.start()
        self.proxy.up(self.server.port)
        return self

    def kill(self):
        self.proxy.down()
        self.server.kill()

    def close(self):
        self.proxy.down()
        self.server.kill()     # (its data does not matter any more)

    def back(self, ds):
        """start(), then wait until @ds's daemon reaches the server and has
        forgotten the failures it remembers (2 s, vmcryptfs(8) ERRORS)."""
        self.start()
        assert wait_until(lambda: ds.ctl("provider", "test", "kms", rc=None).rc == EXIT_OK,
                          UNLOCK_WAIT, 0.25), "the daemon does not reach the restarted server"
        time.sleep(2.2)

    def client(self):
        return kmipenv.Client(self.server, self.certs, self.dir)


@pytest.fixture
def kms(tmp_path, kms_certs):
    k = Kms(tmp_path / "kms", kms_certs)
    try:
        yield k.start()
    finally:
        k.close()


def kms_config(kms, keyfile):
    """A native provider with policy vm-encryption (vmctest.config_text) and
    the kmip provider "kms" (through the proxy) with policy kms-policy."""
    return (vmctest.config_text(keyfile, 'policy "kms-policy" {\n\tprovider = "kms"\n'
                                         '\tdisks = true\n}\n')
            + kmipenv.config_text([kms.proxy.addr], kms.certs, provider="kms", policy=False,
                                  extra=f'\ttimeout = "{KMS_TIMEOUT}"'))


KMS_POLICY = 'policy = "kms-policy"\n'


def kms_ds(make_ds, tmp_path, kms):
    ds = make_ds("ds", mount=False, config=kms_config(kms, tmp_path / "keys" / "default.key"))
    ds.mount()
    return ds


def make_kms_vms(ds, rng):
    """kv1 (kms), nat (native), and a cleartext file: their references."""
    ds.make_vm("kv1", policy=KMS_POLICY)
    ds.make_vm("nat")
    refs = {
        "kv1/kv1-flat.vmdk": rng.randbytes(64 * KiB + 100),
        "kv1/kv1.nvram": rng.randbytes(8684),
        "kv1/kv1.vmx": b'displayName = "kv1"\n',
        "nat/nat-flat.vmdk": rng.randbytes(32 * KiB + 7),
        "nat/nat.nvram": rng.randbytes(5000),
        "notes.txt": b"cleartext\n" * 10,
    }
    for rel, data in refs.items():
        write_synced(ds.m(rel), data)
    assert record(ds, "kv1")["current"][0] == "kms"
    assert record(ds, "nat")["current"][0] == "native"
    return refs


def others_work(ds, refs, rng, what, skip=()):
    """Every file of @refs (but @skip) reads back, and a rewrite of part of it
    works; a new encrypted file in kv1 (its KEK is in memory) too."""
    for rel in refs:
        if rel.split("/")[0] in skip:
            continue
        with vmctest.fd_open(ds.m(rel), os.O_RDWR) as fd:
            refs[rel] = io_check(fd, ds.m(rel), refs[rel], rng, f"{what}: {rel}")


def new_vm_clean(ds, vm, what):
    """A new VM whose KEK could not be made: nothing but its policy and the
    (empty) file the test wrote."""
    left = sorted(os.listdir(ds.b(vm)))
    assert left == sorted([POLICY_NAME, f"{vm}.nvram", f"{vm}.vmx"]), f"{what}: left {left}"
    assert os.stat(ds.b(vm) / f"{vm}.nvram").st_size == 0, f"{what}: a partial file was left"


def retry_write(path, data, timeout=UNLOCK_WAIT):
    """Write @path until it works (the daemon remembers a provider failure
    for 2 s); the last errno if it never does."""
    e = wait_until(lambda: errno_of(write_synced, path, data) == 0, timeout, 0.25)
    return 0 if e else errno_of(write_synced, path, data)


def test_kms_dies_during_vm_creation(kms, make_ds, tmp_path):
    """The KEK of a new VM cannot be made: the server is dead, or dies after
    executing the Create, the Activate or the Get (their answers lost). The
    write fails with ENOKEY, no key record is left behind, the VM's
    cleartext files and every other VM keep working, and once the server is
    back (same database) the same write succeeds."""
    rng = random.Random(SEED + 10)
    ds = kms_ds(make_ds, tmp_path, kms)
    refs = make_kms_vms(ds, rng)
    log = []
    for case in ("dead", 1, 2, 3):
        vm = f"new{case}"
        ds.make_vm(vm, policy=KMS_POLICY)
        write_synced(ds.m(f"{vm}/{vm}.vmx"), b"config\n")
        ds.expect_error(f"VM {vm}: cannot create its key")
        data = rng.randbytes(6000)
        if case == "dead":
            kms.kill()
        else:
            kms.proxy.cut_after(case)
        e = errno_of(write_synced, ds.m(f"{vm}/{vm}.nvram"), data)
        if case != "dead":
            assert kms.proxy.cut.is_set(), f"request {case} of the creation was never made"
            kms.server.kill()          # it died with the connection
        log.append(f"{case}: {errno_name(e)}")
        # vmcryptfs(8) ERRORS: no key to be had is ENOKEY.
        assert e == ENOKEY, f"{case}: writing the first file of a new VM failed with " \
            f"{errno_name(e) if e else 'success'}, not ENOKEY"
        new_vm_clean(ds, vm, f"server {case}")
        write_synced(ds.m(f"{vm}/{vm}.vmx"), b"config 2\n")
        others_work(ds, refs, rng, f"server {case}")
        kms.start()
        e = retry_write(ds.m(f"{vm}/{vm}.nvram"), data)
        assert e == 0, f"{case}: the retry failed with {errno_name(e)}\n{ds.log_tail()}"
        rec = record(ds, vm)
        assert rec["state"] == 0 and rec["current"][0] == "kms", rec
        assert slots_of(ds, f"{vm}/{vm}.nvram") == [rec["current"]]
        with kms.client() as c:
            assert len(c.key(rec["current"][1])[0]) == 32
        refs[f"{vm}/{vm}.nvram"] = data
        refs[f"{vm}/{vm}.vmx"] = b"config 2\n"
    print("\nwrite errors: " + ", ".join(log))
    ds.remount()
    check_refs(ds, refs, "after a remount")
    assert_backing_intact(ds.backing, "end")
    assert_scan_clean(ds, verify=True, what="end")


def rekey_rc(ds, vm, *args):
    return ds.ctl("rekey", *args, ds.m(vm), rc=None)


def test_kms_dies_during_rekey(kms, make_ds, tmp_path):
    """A shallow rekey whose new KEK cannot be made (server dead, or dying
    after Create / Activate): it fails, the key record and every header are
    unchanged, the VM keeps working on its KEK in memory; after a remount
    with the server still dead the VM is locked, and once the server is back
    it opens with its old key and the rekey succeeds."""
    rng = random.Random(SEED + 11)
    ds = kms_ds(make_ds, tmp_path, kms)
    refs = make_kms_vms(ds, rng)
    rec0 = record(ds, "kv1")
    enc = ["kv1/kv1-flat.vmdk", "kv1/kv1.nvram"]
    for case in ("dead", 1, 2):
        if case == "dead":
            kms.kill()
        else:
            kms.proxy.cut_after(case)
        r = rekey_rc(ds, "kv1")
        if case != "dead":
            assert kms.proxy.cut.is_set(), f"request {case} of the rekey was never made"
            kms.server.kill()
        assert r.rc != EXIT_OK and r.json and r.json.get("ok") is False, f"{case}: {r!r}"
        assert "kms" in r.json.get("message", ""), r
        assert record(ds, "kv1") == rec0, f"{case}: the key record changed"
        for rel in enc:
            assert slots_of(ds, rel) == [rec0["current"]], f"{case}: {rel}"
        others_work(ds, refs, rng, f"rekey failed ({case})")
        kms.back(ds)
    # Remount with the server dead: kv1 is locked, the rest works.
    kms.kill()
    ds.remount()
    for rel in enc:
        assert errno_of(read, ds.m(rel)) == ENOKEY, rel
    others_work(ds, refs, rng, "server dead after a remount", skip=("kv1",))
    same(read(ds.m("kv1/kv1.vmx")), refs["kv1/kv1.vmx"], "cleartext of a locked VM")
    kms.start()
    assert wait_until(lambda: errno_of(read, ds.m(enc[0])) == 0, UNLOCK_WAIT, 0.25), \
        "kv1 still locked with the server back"
    others_work(ds, refs, rng, "server back")
    r = ds.ctl("rekey", ds.m("kv1")).json["vms"][0]
    rec = record(ds, "kv1")
    assert rec["state"] == 0 and rec["current"] != rec0["current"] and r["to"] == rec["current"][1]
    for rel in enc:
        assert slots_of(ds, rel) == [rec["current"]], rel
    ds.remount()
    check_refs(ds, refs, "after the rekey and a remount")
    assert_backing_intact(ds.backing, "end")
    assert_scan_clean(ds, verify=True, what="end")


def test_kms_dies_after_a_crash_in_rekey(kms, make_ds, tmp_path):
    """The daemon dies in the middle of a shallow rekey (crash point: one file
    re-wrapped under the new KEK, the record names it as next), and the key
    server is dead when it comes back: the VM is locked, re-running the rekey
    fails and changes nothing; with the server back the files open and the
    re-run finishes with the KEK the interrupted run chose."""
    rng = random.Random(SEED + 12)
    ds = kms_ds(make_ds, tmp_path, kms)
    refs = make_kms_vms(ds, rng)
    for i in range(4):
        refs[f"kv1/f{i}.vmem"] = rng.randbytes(3000 + i)
        write_synced(ds.m(f"kv1/f{i}.vmem"), refs[f"kv1/f{i}.vmem"])
    enc = [rel for rel in refs if rel.startswith("kv1/") and not rel.endswith(".vmx")]
    old = record(ds, "kv1")["current"]
    ds.unmount()
    ds.mount(env={"VMCRYPTFS_FAULT": "rekey-new-slot:2"})
    rekey_rc(ds, "kv1")
    assert ds.crash() == 99, "the crash point was not reached"
    rec = record(ds, "kv1")
    assert rec["state"] == 1 and rec["current"] == old and rec["next"][0] == "kms", rec
    nxt = rec["next"]
    for rel in enc:
        keks = slots_of(ds, rel)
        assert keks and set(keks) <= {old, nxt}, (rel, keks)
    kms.kill()
    ds.mount()
    for rel in enc:
        assert errno_of(read, ds.m(rel)) == ENOKEY, rel
    r = rekey_rc(ds, "kv1")
    assert r.rc != EXIT_OK, r
    assert record(ds, "kv1") == rec, "a failed re-run changed the key record"
    others_work(ds, refs, rng, "server dead, rekey half done", skip=("kv1",))
    kms.start()
    assert wait_until(lambda: errno_of(read, ds.m(enc[0])) == 0, UNLOCK_WAIT, 0.25), \
        "kv1 still locked with the server back"
    check_refs(ds, {rel: refs[rel] for rel in enc}, "server back, rekey half done")
    ds.ctl("rekey", ds.m("kv1"))
    rec2 = record(ds, "kv1")
    assert rec2["state"] == 0 and rec2["current"] == nxt and rec2["next"] is None, rec2
    for rel in enc:
        assert slots_of(ds, rel) == [nxt], rel
    ds.remount()
    check_refs(ds, refs, "end")
    assert_backing_intact(ds.backing, "end")
    assert_scan_clean(ds, verify=True, what="end")


def test_kms_dead_rekey_to_kms(kms, make_ds, tmp_path):
    """`rekey --to-provider kms` of a native VM with the key server dead (or
    dying after its Create): it fails, the VM stays native and readable, also
    after a remount; with the server back the same command moves it."""
    rng = random.Random(SEED + 13)
    ds = kms_ds(make_ds, tmp_path, kms)
    refs = make_kms_vms(ds, rng)
    rec0 = record(ds, "nat")
    enc = ["nat/nat-flat.vmdk", "nat/nat.nvram"]
    for case in ("dead", 1):
        if case == "dead":
            kms.kill()
        else:
            kms.proxy.cut_after(case)
        r = rekey_rc(ds, "nat", "--to-provider", "kms")
        if case != "dead":
            assert kms.proxy.cut.is_set()
            kms.server.kill()
        assert r.rc != EXIT_OK, r
        assert record(ds, "nat") == rec0, f"{case}: the key record changed"
        for rel in enc:
            assert slots_of(ds, rel) == [rec0["current"]], rel
        ds.remount()
        others_work(ds, refs, rng, f"--to-provider failed ({case})", skip=("kv1",))
        kms.back(ds)
    r = rekey_rc(ds, "nat", "--to-provider", "kms")
    assert r.rc == EXIT_OK, f"rekey --to-provider kms with the server back:\n{r!r}"
    rec = record(ds, "nat")
    assert rec["state"] == 0 and rec["current"][0] == "kms", rec
    for rel in enc:
        assert slots_of(ds, rel) == [rec["current"]], rel
    ds.remount()
    check_refs(ds, refs, "end")
    assert_backing_intact(ds.backing, "end")
    assert_scan_clean(ds, verify=True, what="end")


def test_kms_dead_rekey_exit_code(kms, make_ds, tmp_path):
    """With the key server dead, rekey and rekey --to-provider exit with
    status 6 (a key is not available: its provider cannot be reached)."""
    rng = random.Random(SEED + 14)
    ds = kms_ds(make_ds, tmp_path, kms)
    refs = make_kms_vms(ds, rng)
    kms.kill()
    r = rekey_rc(ds, "kv1")
    r2 = rekey_rc(ds, "nat", "--to-provider", "kms")
    assert (r.rc, r2.rc) == (EXIT_KEY, EXIT_KEY), f"{r!r}\n{r2!r}"
    assert r.json["errno"] == r2.json["errno"] == ENOKEY, f"{r!r}\n{r2!r}"
    check_refs(ds, refs, "end")


def test_io_error_writing_the_policy_file(make_ds, tmp_path):
    """`encrypt` whose write of the new policy file fails: the command
    fails, the VM is left as it was (no policy file, no key record), its
    files stay writable, and re-running encrypt works."""
    rng = random.Random(SEED + 8)
    faults = Faults(tmp_path / "faults")
    ds = ctl_ds(make_ds, tmp_path, mount=False)
    ds.mount(env=faults.env())
    ds.m("vm3").mkdir()
    refs = {"vm3/vm3-flat.vmdk": rng.randbytes(300 * KiB), "vm3/vm3.vmx": b"x = 1\n"}
    for rel, data in refs.items():
        write_synced(ds.m(rel), data)
    # (the policy file is written under a private name, then linked)
    faults.set(f"write,pwrite,fsync /vm3/.{POLICY_NAME} EIO")
    r = ds.ctl("encrypt", ds.m("vm3"), rc=None)
    faults.clear()
    assert r.rc != EXIT_OK, r
    assert faults.hits(), "the policy file was not written"
    left = sorted(os.listdir(ds.b("vm3")))
    policy = read(ds.b("vm3") / POLICY_NAME) if POLICY_NAME in left else None
    assert left == ["vm3-flat.vmdk", "vm3.vmx"], f"left in vm3: {left}, policy file {policy!r}"
    with open(ds.m("vm3/vm3-flat.vmdk"), "r+b") as f:
        f.write(b"still writable")
    refs["vm3/vm3-flat.vmdk"] = patch(refs["vm3/vm3-flat.vmdk"], 0, b"still writable")
    assert ds.ctl("encrypt", ds.m("vm3")).json["failed"] == 0
    assert is_encrypted(ds.b("vm3/vm3-flat.vmdk"))
    check_refs(ds, refs, "after encrypt")
    assert_scan_clean(ds, what="end")
