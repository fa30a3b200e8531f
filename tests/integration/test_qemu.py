# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU's own tools on encrypted disks: qemu-io writes patterns at random
offsets and lengths (unaligned, crossing 4 KiB data units) and verifies them
after a remount, with and without O_DIRECT; qemu-img convert of a random
image into the datastore compares identical to its source."""
import os
import random

import pytest

from vmctest import assert_encrypted, read, run

MiB = 1 << 20
DISK = 64 * MiB
LENGTHS = [1, 15, 16, 17, 511, 512, 4095, 4096, 4097, 4111, 4112, 8195, 65536 + 17]


def paint(intervals, start, end, pat):
    """Paint [start, end) with @pat over a sorted list of (start, end, pat)."""
    out = []
    for s, e, p in intervals:
        if e <= start or s >= end:
            out.append((s, e, p))
            continue
        if s < start:
            out.append((s, start, p))
        if e > end:
            out.append((end, e, p))
    out.append((start, end, pat))
    out.sort()
    return out


def random_writes(rng, n, size):
    """(offset, length, pattern) triples: aligned, unaligned and boundary-crossing."""
    ops = []
    for i in range(n):
        k = rng.randrange(size // 4096 - 32)
        kind = rng.random()
        if kind < 0.4:
            off = k * 4096 + rng.randrange(-20, 21)
        elif kind < 0.7:
            off = k * 4096
        else:
            off = rng.randrange(size - 300000)
        off = max(0, off)
        length = rng.choice(LENGTHS) if rng.random() < 0.6 else rng.randrange(1, 300000)
        length = min(length, size - off)
        ops.append((off, length, rng.randrange(1, 256)))
    return ops


def qemu_io(fmt, path, cmds, nocache=False, timeout=300):
    argv = ["qemu-io", "-f", fmt]
    if nocache:
        argv += ["-t", "none"]
    for c in cmds:
        argv += ["-c", c]
    p = run(argv + [path], check=False, timeout=timeout)
    bad = [l for l in (p.stdout + p.stderr).splitlines()
           if "fail" in l.lower() or "error" in l.lower()]
    assert p.returncode == 0 and not bad, \
        f"qemu-io status {p.returncode}:\n" + "\n".join(bad or p.stderr.splitlines()[-20:])
    return p.stdout


def verify_cmds(intervals, size, rng):
    """read -P commands for every painted interval and some untouched gaps."""
    cmds = [f"read -P {p} {s} {e - s}" for s, e, p in intervals]
    pos = 0
    gaps = []
    for s, e, _ in intervals:
        if s > pos:
            gaps.append((pos, s))
        pos = max(pos, e)
    if pos < size:
        gaps.append((pos, size))
    for s, e in rng.sample(gaps, min(40, len(gaps))):
        cmds.append(f"read -P 0 {s} {min(e - s, 4 * MiB)}")
    return cmds


@pytest.mark.parametrize("kind", ["raw", "vmdk"])
def test_qemu_io_patterns(ds, kind):
    seed = int(os.environ.get("VMC_SEED", "4242"))
    rng = random.Random(seed)
    vm = ds.make_vm("vm1")
    if kind == "raw":
        fmt, image, data_file = "raw", vm / "disk.raw", "disk.raw"
        run(["qemu-img", "create", "-f", "raw", image, str(DISK)])
    else:
        fmt, image, data_file = "vmdk", vm / "disk.vmdk", "disk-flat.vmdk"
        run(["qemu-img", "create", "-f", "vmdk", "-o", "subformat=monolithicFlat", image,
             str(DISK)])
    intervals = []
    # Two batches: through the page cache, then with O_DIRECT (cache=none).
    for nocache in (False, True):
        ops = random_writes(rng, 150, DISK)
        for off, length, pat in ops:
            intervals = paint(intervals, off, off + length, pat)
        qemu_io(fmt, image, [f"write -P {p} {o} {n}" for o, n, p in ops], nocache=nocache)
    cmds = verify_cmds(intervals, DISK, rng)
    qemu_io(fmt, image, cmds)  # before the remount: the page cache may answer
    ds.remount()
    qemu_io(fmt, image, cmds)
    qemu_io(fmt, image, cmds, nocache=True)
    # The backing file is ciphertext; none of the patterns appear in it.
    model = bytearray(DISK)
    for s, e, p in intervals:
        model[s:e] = bytes([p]) * (e - s)
    assert_encrypted(ds.b("vm1") / data_file, bytes(model))
    assert read(vm / data_file) == model


@pytest.mark.parametrize("out_fmt,opts", [("vmdk", ["-o", "subformat=monolithicFlat"]),
                                          ("qcow2", [])])
def test_qemu_img_convert(ds, tmp_path, out_fmt, opts):
    src = tmp_path / "source.raw"
    rng = random.Random(7)
    data = bytearray(os.urandom(DISK))
    data[8 * MiB:16 * MiB] = bytes(8 * MiB)           # a zero region: may become a hole
    data[40 * MiB + 5:40 * MiB + 70005] = bytes(70000)  # unaligned zeros
    src.write_bytes(data)
    vm = ds.make_vm("vm1")
    dst = vm / f"conv.{out_fmt}" if out_fmt != "vmdk" else vm / "conv.vmdk"
    run(["qemu-img", "convert", "-f", "raw", "-O", out_fmt, *opts, src, dst], timeout=300)
    run(["qemu-img", "compare", "-f", "raw", "-F", out_fmt, src, dst])
    ds.remount()
    out = run(["qemu-img", "compare", "-f", "raw", "-F", out_fmt, src, dst]).stdout
    assert "identical" in out
    backing = ds.b("vm1") / ("conv-flat.vmdk" if out_fmt == "vmdk" else dst.name)
    plain = read(vm / backing.name)
    if out_fmt == "vmdk":
        assert plain == data
    assert_encrypted(backing, plain)
    # Spot check: random windows of the source are nowhere in the backing file.
    ciph = read(backing)
    for _ in range(50):
        o = rng.randrange(DISK - 64)
        w = bytes(data[o:o + 64])
        if w.strip(b"\0"):
            assert w not in ciph
