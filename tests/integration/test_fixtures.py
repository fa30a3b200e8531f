# SPDX-License-Identifier: GPL-2.0-or-later
"""Format compatibility: the committed datastore in tests/fixtures/v1, written
by format version 1 (tests/fixtures/make-v1.sh), must keep opening and read
back exactly, and reading it must not change a byte of the backing store.
A future format version adds tests/fixtures/v2 and a test beside this one."""
import hashlib
import os
import shutil
from pathlib import Path

import vmctest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def sums(root):
    """SHA-256 of every regular file under @root, by relative path."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out["./" + str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_v1_datastore_reads_back(make_ds, tmp_path):
    src = FIXTURES / "v1"
    backing = tmp_path / "v1-backing"
    shutil.copytree(src / "backing", backing)
    keydir = tmp_path / "v1-keys"
    keydir.mkdir(mode=0o700)
    shutil.copyfile(src / "native.key", keydir / "default.key")
    os.chmod(keydir / "default.key", 0o600)   # git does not keep 0600
    before = sums(backing)

    ds = make_ds("v1", backing=backing, keydir=keydir)
    expected = {}
    for line in (src / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        expected[name] = digest
    assert expected, "empty SHA256SUMS"
    assert sums(ds.mnt) == expected

    # What the fixture is made of: each kind of file is what it should be.
    b = ds.b("vm1")
    for name in ("vm1-flat.vmdk", "vm1.nvram", "tiny.bin", "sixteen.bin", "cts.bin",
                 "sparse.img", "snapshots/vm1-000001-delta.vmdk"):
        assert vmctest.is_encrypted(b / name), name
    for name in ("vm1.vmx", "vmware.log", "vm1.vmdk", "vmcrypt.policy", "empty.bin"):
        assert not vmctest.is_encrypted(b / name), name
    assert os.path.getsize(b / "tiny.bin") == vmctest.HDR + 5

    ds.unmount()
    assert sums(backing) == before, "reading the v1 datastore changed the backing store"
