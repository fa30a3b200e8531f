# SPDX-License-Identifier: GPL-2.0-or-later
"""The VM of the product brief, end to end: which files of a VM directory are
ciphertext in the backing store and which stay byte-identical cleartext, by
name, by content (VMDK descriptors) and by policy (disks = false), and that
everything reads back identically after a remount."""
import os
import random

import pytest

from vmctest import (HDR, POLICY, POLICY_HOME_ONLY, STATE_NAME, STATE_SIZE, assert_cleartext,
                     assert_encrypted, is_encrypted, read, run, write)

MiB = 1 << 20
VMX = """.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "vm1"
guestOS = "other5xlinux-64"
memSize = "1024"
nvram = "vm1.nvram"
scsi0:0.fileName = "vm1.vmdk"
scsi0:0.present = "TRUE"
"""
LOG = "2024-01-01T00:00:00.000Z In(05) vmx Log for VMware ESX pid=1\n" * 40


def snapshot(root):
    """{relative path: bytes} of every regular file under @root."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = read(p)
    return out


def write_disk_regions(path, rng, size):
    """Random data at a few offsets (aligned, unaligned, at the end) of a disk
    through the mount; returns the expected full plaintext."""
    model = bytearray(size)
    regions = [(0, 65536), (MiB + 123, 10000), (size // 2 - 7, 4113), (size - 4096, 4096),
               (size // 8 + 4000, 200)]
    with open(path, "r+b") as f:
        for off, n in regions:
            data = rng.randbytes(n)
            f.seek(off)
            f.write(data)
            model[off:off + n] = data
    return bytes(model)


def test_product_vm(make_ds):
    ds = make_ds("ds", options=["log_level=debug"])
    rng = random.Random(1)
    vm = ds.make_vm("vm1")
    (vm / "vm1.vmx").write_text(VMX)
    nvram = rng.randbytes(8684)
    write(vm / "vm1.nvram", nvram)
    (vm / "vmware.log").write_text(LOG)
    run(["qemu-img", "create", "-f", "vmdk", "-o", "subformat=monolithicFlat", "vm1.vmdk",
         "64M"], cwd=vm)
    assert sorted(os.listdir(vm)) == sorted(
        ["vmcrypt.policy", "vm1.vmx", "vm1.nvram", "vmware.log", "vm1.vmdk", "vm1-flat.vmdk"])
    disk = write_disk_regions(vm / "vm1-flat.vmdk", rng, 64 * MiB)

    b = ds.b("vm1")
    # Ciphertext: header, +4096, no plaintext.
    assert_encrypted(b / "vm1.nvram", nvram)
    assert_encrypted(b / "vm1-flat.vmdk", disk)
    assert read(vm / "vm1-flat.vmdk") == disk
    assert read(vm / "vm1.nvram") == nvram
    assert os.stat(vm / "vm1-flat.vmdk").st_size == 64 * MiB
    assert os.stat(b / "vm1-flat.vmdk").st_size == 64 * MiB + HDR
    # Cleartext: byte-identical to what the mount shows.
    for name in ("vm1.vmx", "vmware.log", "vm1.vmdk", "vmcrypt.policy"):
        assert_cleartext(b / name, vm / name)
    assert read(vm / "vm1.vmdk").startswith(b"# Disk DescriptorFile")
    assert (vm / "vm1.vmx").read_text() == VMX
    # The VM key record: hidden in the mount, 1024 bytes in the backing store.
    assert os.stat(b / STATE_NAME).st_size == STATE_SIZE
    assert STATE_NAME not in os.listdir(vm)
    # qemu can use the disk through its descriptor.
    info = run(["qemu-img", "info", "--output=json", vm / "vm1.vmdk"]).stdout
    assert '"virtual-size": 67108864' in info

    # Key material never lands in the datastore or the log: the native
    # primary key (bytes 40..71 of the key file) appears in no backing file.
    primary = read(ds.keyfile)[40:72]
    for dirpath, _, fs in os.walk(ds.b()):
        for f in fs:
            assert primary not in read(os.path.join(dirpath, f)), f
    assert primary.hex() not in ds.log()
    before = snapshot(ds.m())
    ds.remount()
    assert snapshot(ds.m()) == before
    assert_encrypted(b / "vm1.nvram", nvram)
    # qemu reads the disk through its descriptor after the remount.
    run(["qemu-img", "compare", "-f", "vmdk", "-F", "raw", vm / "vm1.vmdk",
         vm / "vm1-flat.vmdk"])


@pytest.mark.parametrize("fmt,args,name", [
    ("vmdk", [], "sparse.vmdk"),                                 # monolithicSparse
    ("vmdk", ["-o", "subformat=streamOptimized"], "stream.vmdk"),
    ("qcow2", [], "disk.qcow2"),
    ("raw", [], "disk.raw"),
])
def test_qemu_img_create_encrypted(ds, fmt, args, name):
    vm = ds.make_vm("vm1")
    run(["qemu-img", "create", "-f", fmt, *args, name, "64M"], cwd=vm)
    if fmt != "raw":
        # Put some data in through qemu, so there is plaintext to look for.
        run(["qemu-io", "-f", fmt, "-c", "write -P 0xa5 1M 256k", name], cwd=vm)
    plain = read(vm / name)
    assert_encrypted(ds.b("vm1") / name, plain)
    if fmt == "raw":
        assert os.stat(vm / name).st_size == 64 * MiB
    else:
        if fmt == "qcow2":
            run(["qemu-img", "check", "-f", fmt, vm / name])
        ds.remount()
        run(["qemu-io", "-f", fmt, "-c", "read -P 0xa5 1M 256k", "-c", "read -P 0 0 1M",
             vm / name])
    assert read(vm / name) == plain


def test_home_only_policy(ds):
    rng = random.Random(2)
    vm = ds.make_vm("vm2", POLICY_HOME_ONLY)
    run(["qemu-img", "create", "-f", "vmdk", "-o", "subformat=monolithicFlat", "vm2.vmdk",
         "16M"], cwd=vm)
    run(["qemu-img", "create", "-f", "qcow2", "vm2.qcow2", "16M"], cwd=vm)
    disk = write_disk_regions(vm / "vm2-flat.vmdk", rng, 16 * MiB)
    nvram = rng.randbytes(8684)
    write(vm / "vm2.nvram", nvram)
    vswp = rng.randbytes(100000)
    write(vm / "vm2.vswp", vswp)
    b = ds.b("vm2")
    assert_cleartext(b / "vm2-flat.vmdk", plain=disk)
    assert_cleartext(b / "vm2.vmdk", vm / "vm2.vmdk")
    assert_cleartext(b / "vm2.qcow2", vm / "vm2.qcow2")
    assert_encrypted(b / "vm2.nvram", nvram)
    assert_encrypted(b / "vm2.vswp", vswp)
    ds.remount()
    assert read(vm / "vm2.nvram") == nvram
    assert read(vm / "vm2-flat.vmdk") == disk


def test_directory_without_policy(ds):
    rng = random.Random(3)
    d = ds.m("plain")
    d.mkdir()
    (d / "p.vmx").write_text(VMX)
    run(["qemu-img", "create", "-f", "vmdk", "-o", "subformat=monolithicFlat", "p.vmdk", "8M"],
        cwd=d)
    run(["qemu-img", "create", "-f", "qcow2", "p.qcow2", "8M"], cwd=d)
    files = {"p.nvram": rng.randbytes(8684), "p.vswp": rng.randbytes(5000),
             "other.bin": rng.randbytes(3), "core.1": rng.randbytes(70000)}
    for name, data in files.items():
        write(d / name, data)
    write_disk_regions(d / "p-flat.vmdk", rng, 8 * MiB)
    for name in os.listdir(d):
        assert_cleartext(ds.b("plain") / name, d / name)
    assert not os.path.exists(ds.b("plain") / STATE_NAME)
    # The datastore root is not a VM either.
    write(ds.m("root.nvram"), files["p.nvram"])
    assert_cleartext(ds.b("root.nvram"), plain=files["p.nvram"])


def test_vm_subdirectories(ds):
    rng = random.Random(4)
    vm = ds.make_vm("vm1")
    sub = vm / "snapshots" / "deep"
    sub.mkdir(parents=True)
    vmsn = rng.randbytes(20000)
    write(vm / "snapshots" / "vm1-Snapshot1.vmsn", vmsn)
    raw = rng.randbytes(3 * 4096 + 5)
    write(sub / "disk.raw", raw)
    write(sub / "notes.log", b"cleartext log\n")
    assert_encrypted(ds.b("vm1/snapshots/vm1-Snapshot1.vmsn"), vmsn)
    assert_encrypted(ds.b("vm1/snapshots/deep/disk.raw"), raw)
    assert_cleartext(ds.b("vm1/snapshots/deep/notes.log"), plain=b"cleartext log\n")
    # A nested directory with its own policy file is its own VM.
    inner = ds.make_vm("vm1/inner", POLICY_HOME_ONLY)
    write(inner / "x.raw", raw)
    write(inner / "x.nvram", vmsn)
    assert_cleartext(ds.b("vm1/inner/x.raw"), plain=raw)
    assert_encrypted(ds.b("vm1/inner/x.nvram"), vmsn)
    ds.remount()
    assert read(sub / "disk.raw") == raw
    assert read(vm / "snapshots" / "vm1-Snapshot1.vmsn") == vmsn


ENCRYPTED_NAMES = [
    "vm-flat.vmdk", "vm-delta.vmdk", "vm-000001-delta.vmdk", "vm-sesparse.vmdk",
    "vm-s001.vmdk", "vm-f002.vmdk", "vm.qcow2", "vm.raw", "vm.img", "vm.nvram", "vm.vswp",
    "vm-Snapshot1.vmsn", "vm.vmem", "vm.vmss", "vmware-vmx-1.zdump.000", "core",
    "core.4242", "crash.dmp", "unknown.bin", "README", "VM.NVRAM", "VM-FLAT.VMDK",
    "binary.vmdk",
]
CLEARTEXT_NAMES = ["vmware.log", "vmware-1.log", "vm.vmx", "vm.vmxf", "vm.vmsd", "VM.VMX"]
DISK_NAMES = {"vm-flat.vmdk", "vm-delta.vmdk", "vm-000001-delta.vmdk", "vm-sesparse.vmdk",
              "vm-s001.vmdk", "vm-f002.vmdk", "vm.qcow2", "vm.raw", "vm.img",
              "VM-FLAT.VMDK", "binary.vmdk"}


@pytest.mark.parametrize("policy", [POLICY, POLICY_HOME_ONLY], ids=["disks", "home-only"])
def test_classes(ds, policy):
    """Every name of the classification table, by name and by content."""
    rng = random.Random(5)
    vm = ds.make_vm("vm", policy)
    wrong = []
    for name in ENCRYPTED_NAMES + CLEARTEXT_NAMES:
        data = rng.randbytes(5000)
        write(vm / name, data)
        want = name in ENCRYPTED_NAMES and (policy == POLICY or name not in DISK_NAMES)
        got = is_encrypted(ds.b("vm") / name)
        if got != want:
            wrong.append(f"{name}: {'encrypted' if got else 'cleartext'}, expected "
                         f"{'encrypted' if want else 'cleartext'}")
        assert read(vm / name) == data
    # A text VMDK descriptor stays cleartext, even written in small pieces.
    desc = b'# Disk DescriptorFile\nversion=1\nCID=fffffffe\ncreateType="monolithicFlat"\n'
    with open(vm / "pieces.vmdk", "wb", buffering=0) as f:
        for i in range(0, len(desc), 5):
            f.write(desc[i:i + 5])
    write(vm / "whole.vmdk", desc)
    for name in ("pieces.vmdk", "whole.vmdk", "vmcrypt.policy"):
        if is_encrypted(ds.b("vm") / name):
            wrong.append(f"{name}: encrypted, expected cleartext")
    assert read(vm / "pieces.vmdk") == desc
    assert not wrong, "misclassified:\n  " + "\n  ".join(wrong)


def test_empty_files_and_first_data(ds):
    vm = ds.make_vm("vm1")
    b = ds.b("vm1")
    open(vm / "empty.nvram", "wb").close()
    assert os.stat(b / "empty.nvram").st_size == 0
    assert os.stat(vm / "empty.nvram").st_size == 0
    write(vm / "empty.nvram", b"x")
    assert_encrypted(b / "empty.nvram", b"x")
    assert read(vm / "empty.nvram") == b"x"
    # Truncating an encrypted file to 0 removes its header.
    os.truncate(vm / "empty.nvram", 0)
    assert os.stat(b / "empty.nvram").st_size == 0
    assert read(vm / "empty.nvram") == b""
    # Encryption is decided by the name the file has when data arrives.
    open(vm / "was.log", "wb").close()
    os.rename(vm / "was.log", vm / "now.nvram")
    write(vm / "now.nvram", b"secret data " * 100, "ab")
    assert_encrypted(b / "now.nvram", b"secret data " * 100)
    open(vm / "was.nvram", "wb").close()
    os.rename(vm / "was.nvram", vm / "now.log")
    write(vm / "now.log", b"log line\n", "ab")
    assert_cleartext(b / "now.log", plain=b"log line\n")
    # ... and by where it is: an empty file moved into a VM.
    open(ds.m("outside.vswp"), "wb").close()
    os.rename(ds.m("outside.vswp"), vm / "moved.vswp")
    write(vm / "moved.vswp", b"swap" * 1000, "ab")
    assert_encrypted(b / "moved.vswp", b"swap" * 1000)
    # Once decided, a file keeps its state when renamed.
    os.rename(vm / "now.log", vm / "renamed.nvram")
    assert_cleartext(b / "renamed.nvram", plain=b"log line\n")
    os.rename(vm / "now.nvram", ds.m("out.nvram"))
    assert is_encrypted(ds.b("out.nvram"))
    assert read(ds.m("out.nvram")) == b"secret data " * 100
    # A policy added to a directory applies to files that get data later.
    d = ds.m("later")
    d.mkdir()
    open(d / "late.nvram", "wb").close()
    (d / "vmcrypt.policy").write_text(POLICY)
    write(d / "late.nvram", b"z" * 100, "ab")
    assert_encrypted(ds.b("later/late.nvram"), b"z" * 100)
