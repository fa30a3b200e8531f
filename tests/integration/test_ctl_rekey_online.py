# SPDX-License-Identifier: GPL-2.0-or-later
"""Shallow rekey of a running VM (issue 4): while a writer thread holds the
VM's disk open and keeps writing known patterns at many offsets (and qemu-io
writes into a qcow2 disk of the same VM), the VM is rekeyed several times, with
snapshot delta disks present. The rekeys succeed, no write fails, and at the
end every pattern reads back -- through the open descriptors, after closing,
and after a remount. Every header then names only the new KEK.

Also the time of a shallow rekey of a VM with a 64 MiB disk and of one with a
4 GiB thin disk holding 1 GiB of data (from the "milliseconds" of the answer):
printed and written to Testing/Temporary/ctl-rekey-times.txt in the build
directory; recorded, not asserted."""
import os
import random
import struct
import subprocess
import threading
import time

import vmctest
from vmctest import (STATE_NAME, assert_encrypted, ctl_ds, header_slots, is_encrypted, read,
                     run, vm_key_record, write)

MiB = 1 << 20
GiB = 1 << 30
DISK = 64 * MiB


def pattern(off, gen, n=4096):
    return (struct.pack("<QQ", off, gen) * (n // 16 + 1))[:n]


def test_rekey_while_writing_with_snapshots(make_ds, tmp_path):
    ds = ctl_ds(make_ds, tmp_path)
    vm = ds.make_vm("vm1")
    rng = random.Random(61)
    disk = vm / "vm1-flat.vmdk"
    with open(disk, "wb") as f:
        f.truncate(DISK)
        f.write(rng.randbytes(MiB))
    # Snapshots: a delta disk and a sparse extent, with data, and the descriptor.
    snaps = {"vm1-000001-delta.vmdk": b"COWD" + rng.randbytes(300000),
             "vm1-000002.vmdk": b"KDMV" + rng.randbytes(200000)}
    for f, data in snaps.items():
        write(vm / f, data)
    write(vm / "vm1-000001.vmdk", b"# Disk DescriptorFile\nparentCID=1\n")
    run(["qemu-img", "create", "-q", "-f", "qcow2", vm / "data.qcow2", "32M"])
    for f in ("vm1-flat.vmdk", "data.qcow2", *snaps):
        assert is_encrypted(ds.b("vm1") / f), f

    # The writer: pwrite of known patterns over the whole disk, aligned and
    # unaligned, as fast as it can, until told to stop.
    expected = {}
    stats = {"writes": 0, "errors": []}
    stop = threading.Event()
    fd = os.open(disk, os.O_RDWR)
    stride = 257 * 4096                 # aligned 4 KiB writes, and unaligned 700-byte
    offsets = [i * stride for i in range(DISK // stride)] + \
              [i * stride + 128 * 4096 + 1234 for i in range(DISK // stride)]   # ones between

    def writer():
        gen = 0
        while not stop.is_set():
            gen += 1
            for off in offsets:
                n = 4096 if off % 4096 == 0 else 700
                data = pattern(off, gen, n)
                try:
                    if os.pwrite(fd, data, off) != n:
                        stats["errors"].append(f"short write at {off}")
                except OSError as e:
                    stats["errors"].append(f"pwrite at {off}: {e}")
                    return
                expected[off] = data
                stats["writes"] += 1
                if stop.is_set():
                    break
            if gen % 5 == 0:
                os.fdatasync(fd)

    # qemu-io keeps the qcow2 disk open and writes to it between sleeps.
    cmds = []
    for i in range(40):
        cmds += ["-c", f"write -P {i + 1} {i * 512}k 64k", "-c", "sleep 50"]
    cmds += ["-c", "flush"]
    for i in range(40):
        cmds += ["-c", f"read -P {i + 1} {i * 512}k 64k"]
    qio = subprocess.Popen(["qemu-io", "-f", "qcow2", *cmds, str(vm / "data.qcow2")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t = threading.Thread(target=writer)
    t.start()
    keks = [vm_key_record(ds.b("vm1") / STATE_NAME)["current"]]
    try:
        time.sleep(0.3)
        for _ in range(5):
            writes_before = stats["writes"]
            r = ds.ctl("rekey", ds.m("vm1")).json["vms"][0]
            keks.append(vm_key_record(ds.b("vm1") / STATE_NAME)["current"])
            assert r["to"] == keks[-1][1] and r["from"] == keks[-2][1]
            assert vmctest.wait_for(lambda: stats["writes"] > writes_before + 50 or
                                    stats["errors"], what="writes going on")
            assert not stats["errors"], stats["errors"][:5]
            # The status shows the open files meanwhile.
            assert ds.ctl("status", ds.m("vm1")).json["vms"][0]["open_files"] >= 1
    except BaseException:
        stop.set()
        t.join(30)
        os.close(fd)
        qio.kill()
        qio.wait()
        raise
    stop.set()
    t.join(30)
    out, err = qio.communicate(timeout=120)
    assert qio.returncode == 0 and "Pattern verification failed" not in out + err, out + err
    assert not stats["errors"], stats["errors"][:5]
    assert stats["writes"] > 200, stats
    assert len(set(keks)) == len(keks), "a rekey did not change the KEK"
    # Every pattern reads back, through the descriptor still open, then anew.
    try:
        for off, data in expected.items():
            assert os.pread(fd, len(data), off) == data, f"pattern at {off} (open descriptor)"
    finally:
        os.close(fd)
    plain = read(disk)
    for off, data in expected.items():
        assert plain[off:off + len(data)] == data, f"pattern at {off}"
    for f, data in snaps.items():
        assert read(vm / f) == data, f
    for f in ("vm1-flat.vmdk", "data.qcow2", *snaps):
        slots = header_slots(ds.b("vm1") / f)
        assert [(s["provider"], s["kek_id"]) for s in slots] == [keks[-1]], (f, slots)
    ds.remount()
    assert read(ds.m("vm1/vm1-flat.vmdk")) == plain
    for f, data in snaps.items():
        assert read(ds.m("vm1") / f) == data, f
    run(["qemu-io", "-f", "qcow2", "-r", *[x for i in range(40) for x in
                                            ("-c", f"read -P {i + 1} {i * 512}k 64k")],
         ds.m("vm1/data.qcow2")])
    print(f"\n{stats['writes']} writes during 5 rekeys, none failed")


def test_rekey_time_64mib_vs_4gib_thin(make_ds, tmp_path):
    ds = ctl_ds(make_ds, tmp_path)
    small = ds.make_vm("small")
    write(small / "small-flat.vmdk", os.urandom(64 * MiB))
    big = ds.make_vm("big")
    chunk = os.urandom(4 * MiB)
    with open(big / "big-flat.vmdk", "wb") as f:
        f.truncate(4 * GiB)
        for i in range(256):                     # 1 GiB written, spread over 4 GiB
            f.seek(i * 16 * MiB)
            f.write(struct.pack("<Q", i) + chunk[8:])
    alloc = vmctest.blocks(ds.b("big/big-flat.vmdk")) * 512
    assert GiB <= alloc < GiB + 64 * MiB, f"the thin disk occupies {alloc} bytes"
    assert_encrypted(ds.b("small/small-flat.vmdk"), logical_size=64 * MiB)
    os.sync()                           # time the rekey, not the flush of the writes
    times = {"small": [], "big": []}
    for _ in range(3):
        for vm in ("small", "big"):
            r = ds.ctl("rekey", ds.m(vm)).json["vms"][0]
            times[vm].append(r["milliseconds"])
    with open(big / "big-flat.vmdk", "rb") as f:
        f.seek(255 * 16 * MiB)
        assert f.read(8) == struct.pack("<Q", 255)
    line = (f"shallow rekey: VM with a 64 MiB disk {times['small']} ms; VM with a 4 GiB thin "
            f"disk holding 1 GiB {times['big']} ms")
    print("\n" + line)
    out = vmctest.BUILD_DIR / "Testing" / "Temporary"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ctl-rekey-times.txt", "a") as f:
        f.write(time.strftime("%Y-%m-%dT%H:%M:%SZ ", time.gmtime()) + line + "\n")
