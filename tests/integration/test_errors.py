# SPDX-License-Identifier: GPL-2.0-or-later
"""Failure modes: damaged and truncated file headers (EIO for that file
only, an error naming it), wrong, missing, damaged or tampered keys
(ENOKEY / EKEYREJECTED), malformed vmcrypt.policy files (EIO for new
encryptable data, file:line in the log, no plaintext in the backing store),
and configurations the daemon must refuse to mount with. In every case the
rest of the datastore keeps working."""
import errno
import hashlib
import os
import random
import re

import pytest

import vmctest

from vmctest import (ENOKEY, HDR, POLICY, assert_encrypted, config_text, errno_of, fallocate,
                     fd_open, open_errno, read, run, write)

EKEYREJECTED = 129


def populate(ds, rng):
    """vm1 (the victim) and vm2 (a bystander), each with encrypted and
    cleartext files; returns {mount-relative path: content}."""
    files = {}
    for vm in ("vm1", "vm2"):
        ds.make_vm(vm)
        for name, n in (("target.nvram", 9000), ("other.nvram", 5000), ("disk-flat.vmdk", 20000),
                        ("vm.vmx", 0), ("vmware.log", 0)):
            data = rng.randbytes(n) if n else f"{vm} {name}\n".encode() * 10
            write(ds.m(f"{vm}/{name}"), data)
            files[f"{vm}/{name}"] = data
    return files


def check_others_work(ds, files, skip=()):
    """Every file but @skip reads back, and new files can be written."""
    for rel, data in files.items():
        if rel not in skip:
            assert read(ds.m(rel)) == data, rel
    write(ds.m("vm2/new.vswp"), b"new" * 1000)
    assert read(ds.m("vm2/new.vswp")) == b"new" * 1000
    write(ds.m("vm1/vmware.log"), b"appended\n", "ab")
    files["vm1/vmware.log"] = files["vm1/vmware.log"] + b"appended\n"


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


# Offsets in the backing file's header (lib/vmc_format.h, docs/FORMAT.md).
# Magic, type and version (0..17), the fixed part under its SHA-256 (18..255:
# incompat flags at 20, file id at 40, the checksum at 224), the reserved
# area that must be zero (256..511 and 2560..4095) and key slot 0, the slot in
# use, with its own checksum (512..1023; 600 is in its key id): a flipped byte
# in any of them must make the file fail with EIO.
FLIP_EIO = [0, 13, 14, 16, 20, 40, 224, 255, 300, 600, 1000, 2600, 4095]
# Key slots 1..3 (1024..2559) are unused in a fresh file: damage there leaves
# the file readable through slot 0, content intact.
FLIP_UNUSED = [1100, 1600, 2100, 2559]


def damaged_setup(ds, offset):
    files = populate(ds, random.Random(41))
    ds.unmount()
    flip(ds.b("vm1/target.nvram"), offset)
    ds.mount()
    return files


@pytest.mark.parametrize("offset", FLIP_EIO)
def test_damaged_header(ds, offset):
    files = damaged_setup(ds, offset)
    ds.expect_error("vm1/target.nvram")
    target = ds.m("vm1/target.nvram")
    assert open_errno(target, os.O_RDONLY) == errno.EIO
    assert open_errno(target, os.O_RDWR) == errno.EIO
    assert errno_of(os.truncate, target, 10) == errno.EIO
    assert any("vm1/target.nvram" in l for l in ds.log_lines("error")), ds.log_tail()
    # The damaged file is still listed, and can be renamed and removed.
    assert "target.nvram" in os.listdir(ds.m("vm1"))
    check_others_work(ds, files, skip={"vm1/target.nvram"})
    # Nothing was written to the damaged file.
    assert os.stat(ds.b("vm1/target.nvram")).st_size == len(files["vm1/target.nvram"]) + HDR
    os.rename(target, ds.m("vm1/quarantine.nvram"))
    os.unlink(ds.m("vm1/quarantine.nvram"))


@pytest.mark.parametrize("offset", FLIP_UNUSED)
def test_damaged_unused_slot(ds, offset):
    files = damaged_setup(ds, offset)
    for rel, data in files.items():
        assert read(ds.m(rel)) == data, rel
    with open(ds.m("vm1/target.nvram"), "r+b") as f:
        f.write(b"writable")
    check_others_work(ds, files, skip={"vm1/target.nvram"})


@pytest.mark.parametrize("size", [100, 4095])
def test_truncated_header(ds, size):
    files = populate(ds, random.Random(42))
    ds.unmount()
    os.truncate(ds.b("vm1/target.nvram"), size)
    assert read(ds.b("vm1/target.nvram")).startswith(b"\x89VMCRYPTFS")
    ds.mount()
    ds.expect_error("vm1/target.nvram")
    target = ds.m("vm1/target.nvram")
    assert open_errno(target, os.O_RDONLY) == errno.EIO
    assert open_errno(target, os.O_WRONLY) == errno.EIO
    assert any("vm1/target.nvram" in l for l in ds.log_lines("error")), ds.log_tail()
    assert os.stat(target).st_size == 0
    check_others_work(ds, files, skip={"vm1/target.nvram"})
    assert os.stat(ds.b("vm1/target.nvram")).st_size == size
    os.unlink(target)


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove"])
def test_damaged_vm_key_record(ds, damage):
    """The VM key record (.vmcrypt.state) only matters for new files: existing
    encrypted files open from their own headers. A damaged record refuses new
    encrypted data (EIO, error naming the VM) and writes no plaintext; a
    removed one is recreated."""
    files = populate(ds, random.Random(49))
    ds.unmount()
    state = ds.b("vm1/.vmcrypt.state")
    if damage == "flip":
        flip(state, 100)
    elif damage == "truncate":
        os.truncate(state, 500)
    else:
        os.unlink(state)
    ds.mount()
    for rel, data in files.items():
        assert read(ds.m(rel)) == data, rel
    with open(ds.m("vm1/new.nvram"), "wb", buffering=0) as f:
        e = errno_of(f.write, SECRET)
    if damage == "remove":
        assert e == 0
        assert_encrypted(ds.b("vm1/new.nvram"), SECRET)
        assert os.path.getsize(state) == 1024
    else:
        ds.expect_error("VM vm1")
        assert e == errno.EIO
        assert os.stat(ds.b("vm1/new.nvram")).st_size == 0
        assert any("vm1" in l for l in ds.log_lines("error")), ds.log_tail()
    check_others_work(ds, files)


def remount_with_key(ds, keyfile):
    ds.unmount()
    ds.config.write_text(config_text(keyfile))
    ds.mount()


def test_wrong_key(ds, tmp_path):
    files = populate(ds, random.Random(43))
    remount_with_key(ds, tmp_path / "fresh-keys" / "default.key")
    # A new VM makes a new primary key in the fresh key directory.
    fresh = ds.make_vm("fresh")
    write(fresh / "f.nvram", b"f" * 5000)
    assert (tmp_path / "fresh-keys" / "default.key").exists()
    for rel, data in files.items():
        if rel.endswith((".nvram", ".vmdk")):
            assert open_errno(ds.m(rel), os.O_RDONLY) == ENOKEY, rel
        else:
            assert read(ds.m(rel)) == data
    assert read(fresh / "f.nvram") == b"f" * 5000
    assert ds.log_lines("error") == []
    # The right key again: everything opens.
    remount_with_key(ds, ds.keyfile)
    for rel, data in files.items():
        assert read(ds.m(rel)) == data


def test_missing_key_file(ds, tmp_path):
    files = populate(ds, random.Random(44))
    remount_with_key(ds, tmp_path / "nowhere" / "default.key")
    for rel, data in files.items():
        if rel.endswith((".nvram", ".vmdk")):
            assert open_errno(ds.m(rel), os.O_RDONLY) == ENOKEY, rel
        else:
            assert read(ds.m(rel)) == data
    # New encrypted data of an existing VM cannot be written (its KEK is not
    # available), and nothing lands in the backing store.
    with open(ds.m("vm1/new.nvram"), "wb", buffering=0) as f:
        assert errno_of(f.write, b"plain" * 100) == ENOKEY
    assert os.stat(ds.b("vm1/new.nvram")).st_size == 0
    assert not (tmp_path / "nowhere").exists()
    write(ds.m("vm1/vmware.log"), b"still writable\n", "ab")


def test_damaged_key_file(ds):
    files = populate(ds, random.Random(45))
    ds.unmount()
    key = bytearray(read(ds.keyfile))
    key[50] ^= 1
    write(ds.keyfile, key)
    os.chmod(ds.keyfile, 0o600)
    ds.mount()
    ds.expect_error("damaged")
    for rel, data in files.items():
        if rel.endswith((".nvram", ".vmdk")):
            assert open_errno(ds.m(rel), os.O_RDONLY) == ENOKEY, rel
        else:
            assert read(ds.m(rel)) == data
    assert any("damaged" in l for l in ds.log_lines("error")), ds.log_tail()
    assert read(ds.keyfile) == key, "a damaged key file must never be overwritten"


def test_tampered_key_is_rejected(ds):
    """A primary key with the right id but other key bytes (checksum valid)
    gives wrong KEKs: the GCM tag of the key slot detects it."""
    files = populate(ds, random.Random(46))
    ds.unmount()
    key = bytearray(read(ds.keyfile))
    assert len(key) == 128
    key[40:72] = os.urandom(32)
    key[96:128] = hashlib.sha256(bytes(key[:96])).digest()
    write(ds.keyfile, key)
    ds.mount()
    ds.expect_error("does not")
    for rel, data in files.items():
        if rel.endswith((".nvram", ".vmdk")):
            assert open_errno(ds.m(rel), os.O_RDONLY) in (EKEYREJECTED, ENOKEY), rel
        else:
            assert read(ds.m(rel)) == data
    assert open_errno(ds.m("vm1/target.nvram"), os.O_RDONLY) == EKEYREJECTED
    # New data for these VMs is refused too: their key record does not match.
    with open(ds.m("vm2/new.nvram"), "wb", buffering=0) as f:
        assert errno_of(f.write, b"x" * 100) in (EKEYREJECTED, errno.EIO)
    assert os.stat(ds.b("vm2/new.nvram")).st_size == 0


# --- malformed policy files -----------------------------------------------------------

# text, and what the log must name: the policy file and the line at fault
# (only the file when the problem has no line).
BAD_POLICIES = {
    "misspelled-key": ('polcy = "vm-encryption"\n', r"vm1/vmcrypt\.policy:1\b"),
    "unknown-policy": ('policy = "no-such-policy"\n', r"vm1/vmcrypt\.policy:1\b"),
    "bad-bool": ('policy = "vm-encryption"\ndisks = maybe\n', r"vm1/vmcrypt\.policy:2\b"),
    "stray-brace": ('\npolicy = "vm-encryption"\n}\n', r"vm1/vmcrypt\.policy:3\b"),
    "after-comment": ('# VM policy\npolcy = "vm-encryption"\n', r"vm1/vmcrypt\.policy:2\b"),
    "unterminated": ('policy = "vm-encryption\n', r"vm1/vmcrypt\.policy:\d+"),
    "empty": ("", r"vm1/vmcrypt\.policy\b"),
    "binary": ('policy = "vm-encryption"\n\0\0\0', r"vm1/vmcrypt\.policy\b"),
    "symlink": (None, r"vm1/vmcrypt\.policy\b"),
}


def make_bad_policy(ds, kind):
    pol = ds.m("vm1/vmcrypt.policy")
    text, where = BAD_POLICIES[kind]
    if text is None:
        # A symlink planted as the policy file is not followed.
        write(ds.m("good.policy"), POLICY.encode())
        os.unlink(pol)
        os.symlink("../good.policy", pol)
    else:
        write(pol, text.encode())
    return where


def refused_writes(ds):
    return [l for l in ds.log_lines("error") if "refusing to write" in l]


SECRET = b"TOP-SECRET-PLAINTEXT " * 300


@pytest.mark.parametrize("kind", sorted(BAD_POLICIES))
def test_malformed_policy(ds, kind):
    files = populate(ds, random.Random(47))
    make_bad_policy(ds, kind)
    ds.expect_error("refusing to write")
    vm = ds.m("vm1")
    # New encryptable files: created empty, but no data goes in.
    # The refusal may come at open (the file could have to be encrypted) or at
    # the first data; either way EIO, and nothing is written.
    for name in ("new.nvram", "new-flat.vmdk", "unknown.bin", "new.qcow2", "bin.vmdk"):
        try:
            f = open(vm / name, "wb", buffering=0)
        except OSError as e:
            assert e.errno == errno.EIO, name
        else:
            with f:
                assert errno_of(f.write, SECRET) == errno.EIO, name
        if os.path.exists(ds.b("vm1") / name):
            assert os.stat(ds.b("vm1") / name).st_size == 0, name
            assert errno_of(os.truncate, vm / name, 1 << 20) == errno.EIO, name
            e = vmctest.open_errno(vm / name, os.O_RDWR)
            if e == 0:
                with fd_open(vm / name, os.O_RDWR) as fd:
                    assert errno_of(fallocate, fd, 0, 0, 1 << 20) == errno.EIO, name
            else:
                assert e == errno.EIO, name
            assert os.stat(ds.b("vm1") / name).st_size == 0, name
    p = run(["qemu-img", "create", "-f", "qcow2", "q.qcow2", "1M"], cwd=vm, check=False)
    assert p.returncode != 0
    assert refused_writes(ds), ds.log_tail()
    # No plaintext anywhere in the VM's backing directory.
    for dirpath, _, fs in os.walk(ds.b("vm1")):
        for f in fs:
            assert SECRET[:32] not in read(os.path.join(dirpath, f)), f
    # Cleartext files of this VM, existing encrypted files, and every other
    # VM keep working.
    write(vm / "vmware-2.log", b"new log\n")
    write(vm / "vm.vmx", b'displayName = "changed"\n')
    files["vm1/vm.vmx"] = b'displayName = "changed"\n'
    with open(vm / "target.nvram", "r+b") as f:
        f.write(b"still works")
    files["vm1/target.nvram"] = b"still works" + files["vm1/target.nvram"][11:]
    check_others_work(ds, files)
    # Fixing the policy file is enough: no restart.
    if os.path.islink(vm / "vmcrypt.policy"):
        os.unlink(vm / "vmcrypt.policy")
    write(vm / "vmcrypt.policy", POLICY.encode())
    write(vm / "new.nvram", SECRET)
    assert_encrypted(ds.b("vm1/new.nvram"), SECRET)


@pytest.mark.parametrize("kind", sorted(BAD_POLICIES))
def test_malformed_policy_log_names_file_and_line(ds, kind):
    populate(ds, random.Random(48))
    where = make_bad_policy(ds, kind)
    ds.expect_error("refusing to write")
    try:  # refused at create (the file would be encrypted) or at the first write
        f = open(ds.m("vm1/new.nvram"), "wb", buffering=0)
    except OSError as e:
        assert e.errno == errno.EIO
    else:
        with f:
            assert errno_of(f.write, SECRET) == errno.EIO
    errs = refused_writes(ds)
    assert errs, ds.log_tail()
    assert all(re.search(where, l) for l in errs), \
        f"expected {where!r} in every refusal:\n" + "\n".join(errs)
    assert all("vm1/new.nvram" in l for l in errs), "\n".join(errs)


@pytest.mark.parametrize("kind", ["misspelled-key", "unknown-policy"])
def test_malformed_policy_descriptor_stays_writable(ds, kind):
    """A text VMDK descriptor is a cleartext-class file: a broken policy must
    not stop it from being written (PRODUCT.md: descriptors stay cleartext)."""
    populate(ds, random.Random(49))
    make_bad_policy(ds, kind)
    ds.expect_error("refusing to write")
    desc = b'# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\n'
    write(ds.m("vm1/desc.vmdk"), desc)
    assert read(ds.b("vm1/desc.vmdk")) == desc


# --- configurations the daemon refuses ------------------------------------------------

def test_key_file_inside_backing(make_ds, tmp_path):
    ds = make_ds("ds", mount=False)
    for keyfile in (ds.b("keys/default.key"), ds.b("default.key")):
        ds.config.write_text(config_text(keyfile))
        for fg in (True, False):
            p = ds.mount_fails(foreground=fg)
            assert p.returncode == 1
            assert "inside the backing directory" in p.stderr, p.stderr
            assert str(keyfile) in p.stderr
    # Through a symlink from outside into the backing directory.
    os.symlink(ds.backing, tmp_path / "sneaky")
    ds.config.write_text(config_text(tmp_path / "sneaky" / "k" / "default.key"))
    p = ds.mount_fails()
    assert "inside the backing directory" in p.stderr, p.stderr
    assert not any(n.endswith(".key") for _, _, fs in os.walk(ds.backing) for n in fs)


CFG_OK = config_text("/tmp/vmc-never-created/default.key")   # 8 lines
# text, and what the message must say: the file, the line and the culprit.
BAD_CONFIGS = {
    "unknown-option-first": ("bogus-option = 1\n" + CFG_OK,
                             r"/vmcryptfs\.conf:1: .*bogus-option"),
    "unknown-option-last": (CFG_OK + "bogus-option = 1\n",
                            r"/vmcryptfs\.conf:9: .*bogus-option"),
    "unknown-in-policy": (CFG_OK.replace("\tdisks = true\n", "\tdisks = true\n\tcolour = 1\n"),
                          r"/vmcryptfs\.conf:8: .*colour"),
    "stray-brace": (CFG_OK + "}\n", r"/vmcryptfs\.conf:9: "),
    "after-comment": ("# site configuration\nbogus-option = 1\n" + CFG_OK,
                      r"/vmcryptfs\.conf:2: .*bogus-option"),
    "bad-log-level": ('log-level = "loud"\n' + CFG_OK, r"/vmcryptfs\.conf:1: .*loud"),
    "undefined-provider": (CFG_OK + 'policy "p2" {\n\tprovider = "kms"\n}\n',
                           r"/vmcryptfs\.conf\b.*\"kms\""),
    "native-unknown-param": (CFG_OK.replace("\ttype = \"native\"\n",
                                            "\ttype = \"native\"\n\tpassword = \"x\"\n"),
                             r"password"),
    "relative-key-file": (config_text("keys/default.key"), r"absolute"),
    "no-such-provider-type": (CFG_OK.replace('type = "native"', 'type = "nonesuch"'),
                              r"nonesuch"),
}


@pytest.mark.parametrize("kind", sorted(BAD_CONFIGS))
def test_bad_config_refused(make_ds, kind):
    text, pattern = BAD_CONFIGS[kind]
    ds = make_ds("ds", mount=False, config=text)
    p = ds.mount_fails()
    assert p.returncode == 1
    assert "vmcryptfs: error: " in p.stderr
    assert re.search(pattern, p.stderr), f"{pattern!r} not in:\n{p.stderr}"


def test_missing_config_file(make_ds, tmp_path):
    ds = make_ds("ds", mount=False)
    ds.config.unlink()
    p = ds.mount_fails()
    assert str(ds.config) in p.stderr and "No such file" in p.stderr, p.stderr
