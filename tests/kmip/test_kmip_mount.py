# SPDX-License-Identifier: GPL-2.0-or-later
"""VMs encrypted under a KMIP key provider, through real FUSE mounts of the
daemon, with two pykmip-servers sharing one database as the KMS cluster.

Checked with PyKMIP's own client: each new VM's KEK is created on the KMS,
named after the VM, active, and is the key whose id the VM key record
(docs/FORMAT.md section 4) stores and whose bytes give its key check value.
After a daemon restart the KEK is fetched again by id. With one server down
the cluster keeps serving; with both down, VMs whose KEK is in memory keep
working, a VM not yet unlocked gives ENOKEY (a log line names the VM, the
key id and the reason) while its cleartext files read, and once a server is
back the VM opens without a remount. Neither the daemon's debug log nor the
backing store ever holds the KEK or a key derived from it.

Needs root and /dev/fuse (as tests/integration), pykmip-server and openssl.
"""
import errno
import hashlib
import hmac
import os
import struct
import sys
import time
from pathlib import Path

import pytest

import kmipenv

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import vmctest  # noqa: E402
from vmctest import MAGIC, read, write  # noqa: E402

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: E402

UNLOCK_WAIT = 10.0   # the host remembers a failure for 2 s; allow for more


@pytest.fixture(autouse=True)
def _need_root_and_daemon():
    if os.geteuid() != 0:
        pytest.skip("mount tests run as root")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is not available")
    assert vmctest.DAEMON.exists(), f"{vmctest.DAEMON} is not built (VMC_BUILD_DIR?)"


@pytest.fixture
def make_ds(tmp_path, env):
    made = []

    def make(servers, name="ds", options=(), mount=True, **kw):
        text = kmipenv.config_text([s.addr for s in servers], env.certs, **kw)
        d = vmctest.Datastore(tmp_path, name, config=text, options=options)
        made.append(d)
        if mount:
            d.mount()
        return d

    yield make
    problems = []
    for d in reversed(made):
        try:
            d.close()
        except AssertionError as e:
            problems.append(f"[{d.name}] {e}")
    if problems:
        pytest.fail("datastore teardown:\n" + "\n".join(problems), pytrace=False)


def hkdf(ikm, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ikm)


def vm_record(path):
    """docs/FORMAT.md section 4: (vm_uuid, provider, kek id, key check value,
    the provider and KEK id fields as hashed)."""
    r = read(path)
    assert len(r) == 1024 and r[:14] == MAGIC and struct.unpack_from("<HH", r, 14) == (2, 1)
    assert hashlib.sha256(r[:992]).digest() == r[992:]
    cur = r[64:448]
    plen, klen = cur[0], struct.unpack_from("<H", cur, 2)[0]
    return (r[24:40], cur[32:32 + plen].decode(), cur[96:96 + klen].decode(), cur[352:384],
            cur[32:96] + cur[96:352])


def make_vm(ds, name):
    """A VM with an encrypted NVRAM file and disk and a cleartext .vmx."""
    vm = ds.make_vm(name)
    files = {f"{name}/{name}.nvram": os.urandom(8684),
             f"{name}/{name}-flat.vmdk": os.urandom(3 * 4096 + 100),
             f"{name}/{name}.vmx": f'displayName = "{name}"\n'.encode()}
    for rel, data in files.items():
        write(ds.m(rel), data)
    return files


def check_files(ds, files):
    for rel, data in files.items():
        assert read(ds.m(rel)) == data, rel


def open_errno(path):
    return vmctest.errno_of(read, path)


def test_vm_keks_live_on_the_kms(env, make_ds):
    k1, k2 = env.cluster[0], env.cluster[1]
    ds = make_ds([k1, k2], options=["log_level=debug"])
    files = make_vm(ds, "vm1")
    files.update(make_vm(ds, "vm2"))
    for rel, data in files.items():
        if rel.endswith(".vmx"):
            vmctest.assert_cleartext(ds.b(rel), plain=data)
        else:
            vmctest.assert_encrypted(ds.b(rel), plain=data)

    secrets = []
    ids = set()
    with env.client(k2) as kms:
        for name in ("vm1", "vm2"):
            uuid, provider, kek_id, kcv, ref = vm_record(ds.b(name) / ".vmcrypt.state")
            assert provider == "kms"
            label = "vmcryptfs-vm-" + uuid.hex()
            assert kms.locate(label) == [kek_id], "the VM's key is not the one named after it"
            key, (alg, bits) = kms.key(kek_id)
            attrs = kms.attributes(kek_id)
            assert (alg.name, bits, len(key)) == ("AES", 256, 32)
            assert attrs["Name"] == label and attrs["State"].name == "ACTIVE"
            check_key = hkdf(key, b"vmcryptfs/v1/key-check")
            assert hmac.new(check_key, uuid + ref, "sha256").digest() == kcv, \
                "the KMS key does not give the VM's key check value"
            secrets += [key, check_key, hkdf(key, b"vmcryptfs/v1/dek-wrap")]
            ids.add(kek_id)
            assert f"encrypted with key {kek_id} from provider \"kms\"" in ds.log()
    assert len(ids) == 2, "two VMs share a KEK"

    # A restart forgets every KEK: they are fetched again by id.
    ds.remount()
    gets_before = ds.log().count("Get on ")
    check_files(ds, files)
    assert ds.log().count("Get on ") >= gets_before + 2

    # Nothing secret in the debug log or the backing store, in any form.
    ds.unmount()
    haystacks = [ds.log_path] + [p for p in ds.backing.rglob("*") if p.is_file()]
    for path in haystacks:
        data = read(path)
        for s in secrets:
            for form in (s, s.hex().encode(), s.hex().upper().encode()):
                assert form not in data, f"key material in {path}"


def test_outage_locks_and_unlocks(env, make_ds):
    k1, k2 = env.cluster[0], env.cluster[1]
    ds = make_ds([k1, k2], options=["log_level=info"])
    vm1, vm3 = make_vm(ds, "vm1"), make_vm(ds, "vm3")
    ds.remount()   # no KEK in memory

    # Server 1 down: the cluster keeps serving through server 2.
    k1.kill()
    check_files(ds, vm1)
    vm4 = make_vm(ds, "vm4")     # a new VM gets its KEK through server 2
    check_files(ds, vm4)
    _, _, kek4, _, _ = vm_record(ds.b("vm4") / ".vmcrypt.state")
    with env.client(k2) as kms:
        assert len(kms.key(kek4)[0]) == 32
    assert f"now using server {k2.addr}" in ds.log()

    # Both down: vm1 (KEK in memory) keeps working, open files and new ones.
    nvram = ds.m("vm1/vm1.nvram")
    fd = os.open(nvram, os.O_RDWR)
    try:
        k2.kill()
        assert os.pread(fd, 100, 0) == vm1["vm1/vm1.nvram"][:100]
        os.pwrite(fd, b"written during the outage", 4096)
        check_files(ds, {"vm1/vm1-flat.vmdk": vm1["vm1/vm1-flat.vmdk"]})
        write(ds.m("vm1/new.vmem"), b"m" * 5000)
        assert read(ds.m("vm1/new.vmem")) == b"m" * 5000
        vmctest.assert_encrypted(ds.b("vm1/new.vmem"), plain=b"m" * 5000)
    finally:
        os.close(fd)

    # vm3 was not unlocked in this mount: locked, fast, but its cleartext reads.
    _, _, kek3, _, _ = vm_record(ds.b("vm3") / ".vmcrypt.state")
    start = time.monotonic()
    assert open_errno(ds.m("vm3/vm3.nvram")) == errno.ENOKEY
    assert time.monotonic() - start < 5
    assert open_errno(ds.m("vm3/vm3-flat.vmdk")) == errno.ENOKEY
    assert read(ds.m("vm3/vm3.vmx")) == vm3["vm3/vm3.vmx"]
    locked = [line for line in ds.log().splitlines() if "vm3" in line and "locked" in line]
    assert locked, ds.log_tail()
    assert any(kek3 in line and "Connection refused" in line for line in locked), locked

    # A server comes back: the VM opens, no remount.
    k1.start()
    deadline = time.monotonic() + UNLOCK_WAIT
    while open_errno(ds.m("vm3/vm3.nvram")) == errno.ENOKEY:
        assert time.monotonic() < deadline, "vm3 still locked with a server back\n" \
            + ds.log_tail()
        time.sleep(0.25)
    check_files(ds, vm3)
    nv = bytearray(vm1["vm1/vm1.nvram"])
    nv[4096:4096 + 25] = b"written during the outage"
    check_files(ds, {"vm1/vm1.nvram": bytes(nv)})


def test_untrusted_kms(env, make_ds):
    """The wrong CA: the datastore mounts (no network at start), a new VM
    cannot get a key and says why, cleartext files are unaffected."""
    ds = make_ds([env.cluster[0]], ca="ca2")
    ds.expect_error("cannot create its key")
    vm = ds.make_vm("vm1")
    write(vm / "vm1.vmx", b"config\n")
    start = time.monotonic()
    e = vmctest.errno_of(write, vm / "vm1.nvram", b"n" * 100)
    assert e != 0
    assert time.monotonic() - start < 5
    assert "TLS verification of the server certificate failed" in ds.log()
    assert read(vm / "vm1.vmx") == b"config\n"
    assert not (ds.b("vm1") / ".vmcrypt.state").exists()


def test_bad_configuration_stops_the_mount(env, make_ds):
    """A key that does not belong to the certificate: the daemon refuses to
    mount and says which files, without waiting for any server."""
    ds = make_ds([env.cluster[0]], mount=False, key=env.certs.key("server"))
    start = time.monotonic()
    p = ds.mount_fails()
    assert time.monotonic() - start < 5
    assert f'key "{env.certs.key("server")}" does not belong to certificate' in p.stderr, \
        p.stderr
    assert 'key-provider "kms"' in p.stderr
