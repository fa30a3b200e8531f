# SPDX-License-Identifier: GPL-2.0-or-later
"""Thin provisioning through the mount: holes stay holes in the backing file
(st_blocks and du), punch-hole frees whole 4 KiB units, SEEK_DATA/SEEK_HOLE
see 4 KiB granularity, a 64 GiB thin disk costs nothing, and a sparse tar
of a VM directory restores identically into the datastore."""
import errno
import hashlib
import os
import random

import pytest

from vmctest import (FALLOC_FL_KEEP_SIZE, HDR, UNIT, blocks, du_kib, fallocate,
                     fd_open, is_encrypted, punch_hole, read, run, write)

MiB = 1 << 20
GiB = 1 << 30
HDR_BLOCKS = HDR // 512
KINDS = {"encrypted": "vm1/disk-flat.vmdk", "cleartext": "plain/disk-flat.vmdk"}


@pytest.fixture(params=sorted(KINDS))
def disk(ds, request):
    ds.make_vm("vm1")
    ds.make_vm("plain", policy=None)
    rel = KINDS[request.param]
    return ds.m(rel), ds.b(rel), request.param == "encrypted"


def extra_blocks(enc):
    """Backing blocks beyond the data: the header of an encrypted file."""
    return HDR_BLOCKS if enc else 0


def test_truncate_up_is_a_hole(disk):
    path, backing, enc = disk
    with fd_open(path, os.O_RDWR | os.O_CREAT) as fd:
        os.ftruncate(fd, 256 * MiB)
        assert os.fstat(fd).st_size == 256 * MiB
        assert os.pread(fd, 65536, 100 * MiB + 3) == bytes(65536)
        assert os.pread(fd, 100, 256 * MiB - 50) == bytes(50)
    assert os.stat(backing).st_size == 256 * MiB + (HDR if enc else 0)
    assert blocks(backing) <= extra_blocks(enc) + 8, f"{blocks(backing)} blocks allocated"
    assert du_kib(backing) <= 8
    # Writing one unit allocates one unit.
    with fd_open(path, os.O_RDWR) as fd:
        os.pwrite(fd, os.urandom(UNIT), 128 * MiB)
    assert blocks(backing) <= extra_blocks(enc) + 8 + 8
    # The mount reports the data blocks only.
    assert os.stat(path).st_blocks <= 16


def test_write_far_past_eof(disk):
    path, backing, enc = disk
    with fd_open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC) as fd:
        os.pwrite(fd, b"start", 0)
        os.pwrite(fd, b"0123456789", 100 * MiB + 7)
        assert os.fstat(fd).st_size == 100 * MiB + 17
        assert os.pread(fd, 20, 100 * MiB) == bytes(7) + b"0123456789"
        assert os.pread(fd, 1 << 20, 50 * MiB) == bytes(1 << 20)
        assert os.pread(fd, 10, 0) == b"start" + bytes(5)
    # Two data units (first and last), plus the header.
    assert blocks(backing) <= extra_blocks(enc) + 2 * 8 + 8, f"{blocks(backing)} blocks"


def test_punch_hole_frees_whole_units(disk):
    path, backing, enc = disk
    data = bytearray(os.urandom(MiB))
    write(path, data)
    full = blocks(backing)
    assert full >= MiB // 512 + extra_blocks(enc)
    with fd_open(path, os.O_RDWR) as fd:
        punch_hole(fd, 64 * 1024, 512 * 1024)                 # 128 whole units
        data[64 * 1024:576 * 1024] = bytes(512 * 1024)
        after = blocks(backing)
        assert full - after >= 1024 - 8, f"{full} -> {after} blocks"
        # Unaligned: only the whole units inside [1000, 11000) are freed, i.e.
        # unit 1 (4096..8191); units 0 and 2 are rewritten in part.
        punch_hole(fd, 1000, 10000)
        data[1000:11000] = bytes(10000)
        after2 = blocks(backing)
        assert 8 - 8 <= after - after2 <= 8 + 8, f"{after} -> {after2} blocks"
        assert os.pread(fd, MiB, 0) == data
        assert os.lseek(fd, 0, os.SEEK_HOLE) == UNIT
        assert os.lseek(fd, UNIT, os.SEEK_DATA) == 2 * UNIT
        assert os.lseek(fd, 3 * UNIT, os.SEEK_HOLE) == 16 * UNIT
        assert os.lseek(fd, 16 * UNIT, os.SEEK_DATA) == 144 * UNIT
    assert du_kib(backing) <= (MiB - 512 * 1024 - UNIT) // 1024 + 4 + 16
    assert read(path) == data


def test_keep_size_allocation(disk):
    path, backing, enc = disk
    write(path, b"x" * 10000)
    size_b = os.stat(backing).st_size
    before = blocks(backing)
    with fd_open(path, os.O_RDWR) as fd:
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4 * MiB)
        assert os.fstat(fd).st_size == 10000
        # Allocated but unwritten space reads as zeros and stays a hole for
        # SEEK_DATA (ext4 reports unwritten extents as holes).
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 8 * MiB, MiB)
        assert os.fstat(fd).st_size == 10000
        assert os.pread(fd, 20000, 0) == b"x" * 10000
        os.ftruncate(fd, 10 * MiB)
        assert os.pread(fd, MiB, 8 * MiB) == bytes(MiB)
    assert os.stat(backing).st_size == 10 * MiB + (HDR if enc else 0)
    assert size_b == 10000 + (HDR if enc else 0)
    assert blocks(backing) >= before + (5 * MiB) // 512 - 64


def test_seek_granularity(disk):
    path, backing, enc = disk
    with fd_open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC) as fd:
        os.ftruncate(fd, 64 * UNIT)
        for u, off in ((3, 100), (10, 0), (11, 4095), (40, 2048)):
            os.pwrite(fd, b"\xff", u * UNIT + off)
        expect = [(0, os.SEEK_DATA, 3 * UNIT), (3 * UNIT, os.SEEK_HOLE, 4 * UNIT),
                  (3 * UNIT + 1, os.SEEK_DATA, 3 * UNIT + 1),
                  (4 * UNIT, os.SEEK_DATA, 10 * UNIT), (10 * UNIT, os.SEEK_HOLE, 12 * UNIT),
                  (12 * UNIT, os.SEEK_DATA, 40 * UNIT), (40 * UNIT, os.SEEK_HOLE, 41 * UNIT),
                  (41 * UNIT, os.SEEK_HOLE, 41 * UNIT)]
        got = [(o, w, os.lseek(fd, o, w)) for o, w, _ in expect]
        assert got == expect
        # Odd sizes: a final unit of 1..15 bytes and of 16+ bytes.
        for size in (64 * UNIT + 5, 64 * UNIT + 100):
            os.ftruncate(fd, size)
            os.pwrite(fd, b"e", size - 1)
            assert os.lseek(fd, size - 1, os.SEEK_DATA) == size - 1
            assert os.lseek(fd, size - 1, os.SEEK_HOLE) == size
            assert os.lseek(fd, 41 * UNIT, os.SEEK_DATA) == 64 * UNIT
            os.ftruncate(fd, 64 * UNIT)


def test_seek_consistency(disk):
    """Every position is either in data (SEEK_DATA returns it) or in a hole
    (SEEK_HOLE returns it), never both or neither, and SEEK_DATA never skips
    data. Positions inside a hole unit, not only unit starts."""
    path, backing, enc = disk
    with fd_open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC) as fd:
        os.ftruncate(fd, 64 * UNIT)
        for u, off in ((3, 100), (10, 0), (11, 4095), (40, 2048)):
            os.pwrite(fd, b"\xff", u * UNIT + off)
        check_seek_consistent(fd, 64 * UNIT)
        for size in (64 * UNIT + 5, 64 * UNIT + 100):
            os.ftruncate(fd, size)
            check_seek_consistent(fd, size)
            os.pwrite(fd, b"e", size - 1)
            check_seek_consistent(fd, size)
            os.ftruncate(fd, 64 * UNIT)


def check_seek_consistent(fd, size):
    content = os.pread(fd, size, 0)
    bad = []
    for p in sorted({q for u in range(size // UNIT + 1)
                     for q in (u * UNIT - 1, u * UNIT, u * UNIT + 5, u * UNIT + 2048)
                     if 0 <= q < size}):
        try:
            d = os.lseek(fd, p, os.SEEK_DATA)
        except OSError as e:
            assert e.errno == errno.ENXIO
            d = size
        h = os.lseek(fd, p, os.SEEK_HOLE)
        if (d == p) == (h == p) or h > size or d < p or h < p:
            bad.append(f"pos {p}: SEEK_DATA -> {d}, SEEK_HOLE -> {h}")
        elif content[p:d].strip(b"\0"):
            bad.append(f"pos {p}: SEEK_DATA -> {d} skips data")
    assert not bad, "inconsistent SEEK_DATA/SEEK_HOLE:\n  " + "\n  ".join(bad[:20])


def test_thin_64g_disk(ds):
    vm = ds.make_vm("vm1")
    path = vm / "thin-flat.vmdk"
    with fd_open(path, os.O_RDWR | os.O_CREAT) as fd:
        os.ftruncate(fd, 64 * GiB)
    backing = ds.b("vm1/thin-flat.vmdk")
    assert is_encrypted(backing)
    assert os.stat(path).st_size == 64 * GiB
    assert os.stat(backing).st_size == 64 * GiB + HDR
    assert blocks(backing) <= 16, f"64 GiB thin disk uses {blocks(backing)} blocks"
    assert du_kib(ds.b("vm1")) <= 64
    data = os.urandom(MiB)
    with fd_open(path, os.O_RDWR) as fd:
        assert os.pread(fd, 4096, 63 * GiB + 12345) == bytes(4096)
        os.pwrite(fd, data, 40 * GiB + 7)
        assert os.pread(fd, MiB, 40 * GiB + 7) == data
        assert os.lseek(fd, 0, os.SEEK_DATA) == 40 * GiB
        assert os.lseek(fd, 40 * GiB, os.SEEK_HOLE) == 40 * GiB + MiB + UNIT
        assert os.pread(fd, 10, 64 * GiB - 10) == bytes(10)
    assert blocks(backing) <= 16 + (MiB + UNIT) // 512
    # The same through qemu-img: a 64 GiB monolithicFlat disk.
    run(["qemu-img", "create", "-f", "vmdk", "-o", "subformat=monolithicFlat", "big.vmdk",
         "64G"], cwd=vm)
    assert blocks(ds.b("vm1/big-flat.vmdk")) <= 16
    assert os.stat(vm / "big-flat.vmdk").st_size == 64 * GiB
    run(["qemu-io", "-f", "vmdk", "-c", "write -P 0x5a 60G 64k", "-c", "read -P 0x5a 60G 64k",
         "-c", "read -P 0 1G 64k", vm / "big.vmdk"])
    ds.remount()
    run(["qemu-io", "-f", "vmdk", "-c", "read -P 0x5a 60G 64k", vm / "big.vmdk"])
    with open(path, "rb") as f:
        f.seek(40 * GiB + 7)
        assert f.read(MiB) == data


@pytest.mark.parametrize("args", [["cp"], ["cp", "--sparse=always"], ["cp", "-a"]])
def test_cp_keeps_holes(ds, args):
    vm = ds.make_vm("vm1")
    ds.make_vm("vm2")
    src = vm / "d-flat.vmdk"
    data = os.urandom(MiB)
    with open(src, "wb") as f:
        f.truncate(64 * MiB)
        f.seek(40 * MiB + 5)
        f.write(data)
    dst = ds.m("vm2/copy-flat.vmdk")
    run([*args, src, dst])
    assert sha(src) == sha(dst)
    assert is_encrypted(ds.b("vm2/copy-flat.vmdk"))
    assert blocks(ds.b("vm2/copy-flat.vmdk")) <= HDR_BLOCKS + (MiB + 2 * UNIT) // 512 + 16


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def test_tar_sparse_vm(ds, tmp_path):
    rng = random.Random(21)
    vm = ds.make_vm("vm1")
    (vm / "vm1.vmx").write_text('displayName = "vm1"\n')
    write(vm / "vm1.nvram", rng.randbytes(8684))
    (vm / "vmware.log").write_text("log line\n" * 100)
    run(["qemu-img", "create", "-f", "vmdk", "-o", "subformat=monolithicFlat", "vm1.vmdk",
         "256M"], cwd=vm)
    with fd_open(vm / "vm1-flat.vmdk", os.O_RDWR) as fd:
        for off in (0, 3 * MiB + 5, 100 * MiB, 256 * MiB - 9000):
            os.pwrite(fd, rng.randbytes(9000), off)
    (vm / "snap").mkdir()
    write(vm / "snap" / "vm1.vmsn", rng.randbytes(50000))
    archive = ds.m("vm1.tar")
    run(["tar", "-cSf", archive, "--sparse", "-C", ds.m(), "vm1"], timeout=120)
    # The holes are not in the archive: tar saw them through SEEK_HOLE.
    assert os.stat(archive).st_size < 4 * MiB, f"archive is {os.stat(archive).st_size} bytes"
    restore = ds.m("restore")
    restore.mkdir()
    ds.make_vm("restore/vm1")                       # the VM directory and its policy first
    run(["tar", "-xSf", archive, "-C", restore], timeout=120)
    names = []
    for dirpath, _, files in os.walk(vm):
        for f in files:
            names.append(os.path.relpath(os.path.join(dirpath, f), vm))
    assert sorted(names) == sorted(
        os.path.relpath(os.path.join(d, f), restore / "vm1")
        for d, _, fs in os.walk(restore / "vm1") for f in fs)
    for n in names:
        assert sha(vm / n) == sha(restore / "vm1" / n), n
        assert os.stat(vm / n).st_size == os.stat(restore / "vm1" / n).st_size
    rb = ds.b("restore/vm1")
    for n in ("vm1-flat.vmdk", "vm1.nvram", "snap/vm1.vmsn"):
        assert is_encrypted(rb / n), f"restored {n} is not encrypted"
    for n in ("vm1.vmx", "vmware.log", "vm1.vmdk"):
        assert not is_encrypted(rb / n)
        assert read(rb / n) == read(vm / n)
    # The restored disk is as thin as the original.
    assert blocks(rb / "vm1-flat.vmdk") <= blocks(ds.b("vm1/vm1-flat.vmdk")) + 64
    assert blocks(rb / "vm1-flat.vmdk") < 2 * MiB // 512
