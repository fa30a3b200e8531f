# SPDX-License-Identifier: GPL-2.0-or-later
"""A VM directory copied in the backing store (a backup, a migration) opens
wherever the same key provider is reachable, and is locked (ENOKEY on its
encrypted files, cleartext files readable) where it is not."""
import errno
import os
import random
import shutil
import time

from vmctest import (ENOKEY, STATE_NAME, assert_encrypted, errno_of, is_encrypted, open_errno,
                     read, run, write)

MiB = 1 << 20


def build_vm(ds, rng):
    """A VM with encrypted and cleartext files; returns {relpath: content}."""
    vm = ds.make_vm("vm1")
    (vm / "vm1.vmx").write_text('displayName = "vm1"\nnvram = "vm1.nvram"\n')
    (vm / "vmware.log").write_text("log\n" * 50)
    write(vm / "vm1.nvram", rng.randbytes(8684))
    run(["qemu-img", "create", "-f", "vmdk", "-o", "subformat=monolithicFlat", "vm1.vmdk",
         "16M"], cwd=vm)
    with open(vm / "vm1-flat.vmdk", "r+b") as f:
        for off in (0, 5 * MiB + 3, 16 * MiB - 100):
            f.seek(off)
            f.write(rng.randbytes(100))
    (vm / "snap").mkdir()
    write(vm / "snap" / "s1.vmsn", rng.randbytes(5000))
    out = {}
    for dirpath, _, files in os.walk(vm):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, vm)] = read(p)
    return out


ENCRYPTED = ("vm1.nvram", "vm1-flat.vmdk", "snap/s1.vmsn")
CLEARTEXT = ("vm1.vmx", "vmware.log", "vm1.vmdk", "vmcrypt.policy")


def copy_vm(src_ds, dst_backing):
    dst_backing.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", src_ds.b("vm1"), dst_backing / "vm1"])
    assert os.path.exists(dst_backing / "vm1" / STATE_NAME)


def test_copy_with_same_key(make_ds, tmp_path):
    rng = random.Random(31)
    ds1 = make_ds("one")
    files = build_vm(ds1, rng)
    for n in ENCRYPTED:
        assert is_encrypted(ds1.b("vm1") / n)
    ds1.unmount()
    copy_vm(ds1, tmp_path / "copy")
    ds2 = make_ds("two", backing=tmp_path / "copy")      # same key directory
    ds1.mount()                                           # both mounted at once
    for n, data in files.items():
        assert read(ds2.m("vm1") / n) == data, n
        assert read(ds1.m("vm1") / n) == data, n
    # The copy is a working VM: new encrypted files, changes to old ones.
    write(ds2.m("vm1/vm1.vswp"), b"swap" * 3000)
    assert_encrypted(ds2.b("vm1/vm1.vswp"), b"swap" * 3000)
    with open(ds2.m("vm1/vm1.nvram"), "r+b") as f:
        f.write(b"changed")
    assert read(ds2.m("vm1/vm1.nvram"))[:7] == b"changed"
    assert read(ds1.m("vm1/vm1.nvram")) == files["vm1.nvram"]
    run(["qemu-img", "compare", "-f", "vmdk", "-F", "vmdk", ds1.m("vm1/vm1.vmdk"),
         ds2.m("vm1/vm1.vmdk")])
    # The copy's key record still names the same KEK: a copy of the copy opens.
    ds2.unmount()
    shutil.rmtree(tmp_path / "copy2", ignore_errors=True)
    run(["cp", "-a", tmp_path / "copy", tmp_path / "copy2"])
    ds3 = make_ds("three", backing=tmp_path / "copy2")
    assert read(ds3.m("vm1/vm1.vswp")) == b"swap" * 3000


def test_copy_with_other_key(make_ds, tmp_path):
    rng = random.Random(32)
    ds1 = make_ds("one")
    files = build_vm(ds1, rng)
    ds1.unmount()
    copy_vm(ds1, tmp_path / "copy")
    ds2 = make_ds("two", backing=tmp_path / "copy", keydir=tmp_path / "other-keys")
    # A new encrypted VM in this datastore makes a new primary key.
    fresh = ds2.make_vm("fresh")
    write(fresh / "f.nvram", b"fresh" * 1000)
    assert os.path.exists(tmp_path / "other-keys" / "default.key")
    assert read(fresh / "f.nvram") == b"fresh" * 1000
    vm = ds2.m("vm1")
    for n in ENCRYPTED:
        assert open_errno(vm / n, os.O_RDONLY) == ENOKEY, n
        assert open_errno(vm / n, os.O_RDWR) == ENOKEY, n
        assert os.stat(vm / n).st_size == len(files[n])   # metadata still visible
    try:
        read(vm / "vm1.nvram")
        raise AssertionError("read of a locked file succeeded")
    except OSError as e:
        assert e.errno == ENOKEY and "Required key not available" in str(e)
    for n in CLEARTEXT:
        assert read(vm / n) == files[n], n
    assert "vm1.nvram" in os.listdir(vm)
    # A new encrypted file of the locked VM cannot be written; no plaintext lands.
    with open(vm / "new.nvram", "wb", buffering=0) as f:
        assert errno_of(f.write, b"plaintext!" * 100) == ENOKEY
    assert os.stat(ds2.b("vm1/new.nvram")).st_size == 0
    # Cleartext files of the locked VM stay writable.
    write(vm / "vmware.log", b"more log\n", "ab")
    # The other VM is unaffected.
    write(fresh / "g.vswp", b"g" * 10000)
    assert read(fresh / "g.vswp") == b"g" * 10000
    assert ds2.log_lines("error") == []


def test_missing_key_file_then_restored(make_ds, tmp_path):
    rng = random.Random(33)
    ds1 = make_ds("one")
    files = build_vm(ds1, rng)
    ds1.unmount()
    keys = tmp_path / "restored-keys"
    ds2 = make_ds("two", backing=ds1.backing, keydir=keys)
    vm = ds2.m("vm1")
    for n in ENCRYPTED:
        assert open_errno(vm / n, os.O_RDONLY) == ENOKEY, n
    for n in CLEARTEXT:
        assert read(vm / n) == files[n]
    assert not keys.exists(), "opening a file must never create a primary key"
    # The key file comes back (restored from backup): the VM unlocks by
    # itself once the keyring's failure cache (2 s) has expired.
    keys.mkdir(mode=0o700)
    shutil.copy2(ds1.keyfile, keys / "default.key")
    os.chmod(keys / "default.key", 0o600)
    deadline = time.monotonic() + 5
    while errno_of(read, vm / "vm1.nvram") == ENOKEY and time.monotonic() < deadline:
        time.sleep(0.2)
    for n in ENCRYPTED:
        assert read(vm / n) == files[n], n
    assert open_errno(vm / "missing", os.O_RDONLY) == errno.ENOENT
