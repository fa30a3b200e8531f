# SPDX-License-Identifier: GPL-2.0-or-later
"""Plaintext is never written where encryption is asked for.

A cleartext file with data in a VM whose policy encrypts its class (data that
predates the policy, or an encrypted file whose header was destroyed beyond
recognition) can be read but not opened for writing: EACCES, a warning in
the log, and the backing file unchanged. Files of cleartext classes, disks
under "disks = false", and new files (encrypted at their first data) are not
affected."""
import errno
import os

import vmctest
from vmctest import POLICY, POLICY_HOME_ONLY, read, write


def test_cleartext_data_under_a_policy_is_read_only(ds):
    vm = ds.make_vm("vm1", policy=None)            # no policy yet
    write(vm / "disk-flat.vmdk", b"D" * 10000)
    write(vm / "vm1.nvram", b"N" * 9000)
    write(vm / "vm1.vmx", b'displayName = "vm1"\n')
    assert not vmctest.is_encrypted(ds.b("vm1/disk-flat.vmdk"))
    (vm / vmctest.POLICY_NAME).write_text(POLICY)  # the policy arrives later

    for name in ("disk-flat.vmdk", "vm1.nvram"):
        before = read(ds.b("vm1/" + name))
        assert vmctest.open_errno(vm / name, os.O_WRONLY) == errno.EACCES, name
        assert vmctest.open_errno(vm / name, os.O_RDWR) == errno.EACCES, name
        assert read(vm / name) == before, name          # reading still works
        assert read(ds.b("vm1/" + name)) == before, name
    # Cleartext classes are writable; new files are encrypted.
    write(vm / "vm1.vmx", b'displayName = "vm1-renamed"\n')
    write(vm / "vm1.vswp", b"S" * 5000)
    vmctest.assert_encrypted(ds.b("vm1/vm1.vswp"), b"S" * 5000)
    assert any("refusing to write plaintext" in l for l in ds.log_lines("warning"))


def test_home_only_policy_leaves_cleartext_disks_writable(ds):
    vm = ds.make_vm("vm1", policy=None)
    write(vm / "disk-flat.vmdk", b"D" * 10000)
    write(vm / "vm1.nvram", b"N" * 9000)
    (vm / vmctest.POLICY_NAME).write_text(POLICY_HOME_ONLY)
    with open(vm / "disk-flat.vmdk", "r+b") as f:
        f.write(b"X" * 100)
    assert read(ds.b("vm1/disk-flat.vmdk"))[:100] == b"X" * 100
    assert vmctest.open_errno(vm / "vm1.nvram", os.O_RDWR) == errno.EACCES


def test_destroyed_header_is_never_written_as_plaintext(ds):
    vm = ds.make_vm("vm1")
    plain = os.urandom(20000)
    write(vm / "vm1.nvram", plain)
    ds.unmount()
    path = ds.b("vm1/vm1.nvram")
    with open(path, "r+b") as f:                 # the whole header wiped out
        f.write(b"\0" * vmctest.HDR)
    wrecked = read(path)
    ds.mount()
    # Beyond recognition, the file is no longer an encrypted file ...
    assert os.path.getsize(vm / "vm1.nvram") == len(wrecked)
    # ... but no plaintext can be written into it.
    assert vmctest.open_errno(vm / "vm1.nvram", os.O_WRONLY) == errno.EACCES
    assert read(path) == wrecked


def test_damaged_prefix_with_intact_slot_is_damaged_not_cleartext(ds):
    vm = ds.make_vm("vm1")
    write(vm / "vm1.nvram", os.urandom(9000))
    ds.unmount()
    path = ds.b("vm1/vm1.nvram")
    with open(path, "r+b") as f:                 # all 16 prefix bytes destroyed
        f.write(b"\xff" * 16)
    before = read(path)
    ds.mount()
    ds.expect_error("vm1/vm1.nvram")
    assert vmctest.open_errno(vm / "vm1.nvram", os.O_RDONLY) == errno.EIO
    assert vmctest.open_errno(vm / "vm1.nvram", os.O_RDWR) == errno.EIO
    assert read(path) == before
