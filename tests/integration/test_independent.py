# SPDX-License-Identifier: GPL-2.0-or-later
"""An independent implementation of docs/FORMAT.md reads what the daemon wrote.

Written from the format document alone with Python's `cryptography` package
(OpenSSL underneath), not with vmcryptfs code: it derives the native KEK from
the primary key file, checks the VM key record's key check value, unwraps each
file's DEK from its header and decrypts every data unit, and the result must
equal what the mount shows. With the keys it derived, it also checks that no
KEK and no DEK appears anywhere on disk or in the daemon's debug log, that
every VM has its own KEK and every file its own DEK, and that the daemon keeps
its key memory locked and is not dumpable."""
import hashlib
import os
import pwd
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

import vmctest
from vmctest import ASAN, HDR, MAGIC, POLICY, read, write

crypto = pytest.importorskip("cryptography")
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: E402

UNIT = 4096


def hkdf(ikm, info, salt=None):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def native_primary(keyfile):
    """FORMAT.md section 5: (primary key id, primary key)."""
    k = read(keyfile)
    assert len(k) == 128 and k[:14] == MAGIC and struct.unpack_from("<HH", k, 14) == (3, 1)
    assert hashlib.sha256(k[:96]).digest() == k[96:128]
    return k[24:40], k[40:72]


def native_kek(keyfile, kek_id):
    _, primary = native_primary(keyfile)
    return hkdf(primary, kek_id.encode(), salt=b"vmcryptfs/native/v1")


def field(b, off, size, length):
    s = b[off:off + size]
    assert s[length:] == bytes(size - length), "string field not NUL padded"
    return s[:length].decode()


def vm_record(path):
    """FORMAT.md section 4: (vm_uuid, provider, kek id, key check value)."""
    r = read(path)
    assert len(r) == 1024 and r[:14] == MAGIC and struct.unpack_from("<HH", r, 14) == (2, 1)
    assert hashlib.sha256(r[:992]).digest() == r[992:]
    cur = r[64:448]
    plen, klen = cur[0], struct.unpack_from("<H", cur, 2)[0]
    return (r[24:40], field(cur, 32, 64, plen), field(cur, 96, 256, klen), cur[352:384],
            cur[32:96] + cur[96:352])


def unwrap_dek(backing_file, kek):
    """FORMAT.md 3.1-3.2: the DEK of slot 0 (the only slot of a new file)."""
    h = read(backing_file)[:HDR]
    assert h[:14] == MAGIC and struct.unpack_from("<HH", h, 14) == (1, 1)
    assert hashlib.sha256(h[:224]).digest() == h[224:256]
    slot = h[512:1024]
    assert hashlib.sha256(slot[:480]).digest() == slot[480:512]
    state, wrap, role, plen = slot[0], slot[1], slot[2], slot[3]
    assert (state, wrap, role) == (1, 1, 1)
    klen, wlen = struct.unpack_from("<HH", slot, 4)
    assert wlen == 64
    wrap_key = hkdf(kek, b"vmcryptfs/v1/dek-wrap")
    nonce, wrapped, tag = slot[336:348], slot[352:416], slot[416:432]
    dek = AESGCM(wrap_key).decrypt(nonce, wrapped + tag, h[:256] + slot[:336])
    return dek, field(slot, 16, 64, plen), field(slot, 80, 256, klen)


def xts(dek, tweak, data, decrypt=True):
    c = Cipher(algorithms.AES(dek), modes.XTS(tweak))
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def decrypt_file(backing_file, dek):
    """FORMAT.md 3.3: every data unit, with holes and short final units."""
    data = read(backing_file)[HDR:]
    out = bytearray()
    for i in range(0, len(data), UNIT):
        unit = data[i:i + UNIT]
        n = i // UNIT
        if len(unit) >= 16 and unit == bytes(len(unit)):
            out += unit                                   # a hole
        elif len(unit) >= 16:
            out += xts(dek, n.to_bytes(16, "little"), unit)
        else:
            tweak = (n | (1 << 127)).to_bytes(16, "little")
            ks = xts(dek, tweak, bytes(16), decrypt=False)
            out += bytes(a ^ b for a, b in zip(unit, ks))
    return bytes(out)


@pytest.fixture
def populated(make_ds):
    ds = make_ds("ds", options=["log_level=debug"])
    files = {}
    for vmname in ("vm1", "vm2"):
        vm = ds.make_vm(vmname)
        for name, data in {
            "disk-flat.vmdk": os.urandom(3 * UNIT + 100),
            f"{vmname}.nvram": os.urandom(8684),
            "tiny.bin": b"hello",
            "sixteen.bin": b"0123456789abcdef",
            "same-a.raw": b"S" * (2 * UNIT),
            "same-b.raw": b"S" * (2 * UNIT),
        }.items():
            write(vm / name, data)
            files[f"{vmname}/{name}"] = data
        with open(vm / "sparse.img", "wb") as f:
            f.truncate(40 * UNIT + 7)
            f.seek(20 * UNIT + 5)
            f.write(b"data in the middle")
        files[f"{vmname}/sparse.img"] = read(vm / "sparse.img")
    return ds, files


def test_independent_reader_decrypts_everything(populated):
    ds, files = populated
    keks = {}
    for vmname in ("vm1", "vm2"):
        uuid, provider, kek_id, kcv, ref = vm_record(ds.b(vmname) / ".vmcrypt.state")
        assert provider == "native" and kek_id.startswith("nkp1.") and len(kek_id) == 70
        kek = native_kek(ds.keyfile, kek_id)
        check_key = hkdf(kek, b"vmcryptfs/v1/key-check")
        import hmac
        assert hmac.new(check_key, uuid + ref, "sha256").digest() == kcv
        keks[vmname] = (kek_id, kek)
    assert keks["vm1"][0] != keks["vm2"][0], "two VMs share a KEK"

    deks = set()
    for rel, plain in files.items():
        vmname = rel.split("/")[0]
        dek, provider, kek_id = unwrap_dek(ds.b(rel), keks[vmname][1])
        assert (provider, kek_id) == ("native", keks[vmname][0])
        assert decrypt_file(ds.b(rel), dek) == plain == read(ds.m(rel)), rel
        deks.add(dek)
    assert len(deks) == len(files), "two files share a data key"

    # Identical plaintext never gives identical ciphertext: not across files,
    # not across units of one file.
    a, b = read(ds.b("vm1/same-a.raw"))[HDR:], read(ds.b("vm1/same-b.raw"))[HDR:]
    assert a != b and a[:UNIT] != a[UNIT:]


def test_no_key_material_on_disk_or_in_logs(populated):
    ds, files = populated
    secrets = []
    for vmname in ("vm1", "vm2"):
        _, _, kek_id, _, _ = vm_record(ds.b(vmname) / ".vmcrypt.state")
        kek = native_kek(ds.keyfile, kek_id)
        secrets += [kek, hkdf(kek, b"vmcryptfs/v1/dek-wrap"), hkdf(kek, b"vmcryptfs/v1/key-check")]
    for rel in files:
        vmname = rel.split("/")[0]
        dek, _, _ = unwrap_dek(ds.b(rel), native_kek(ds.keyfile, vm_record(
            ds.b(vmname) / ".vmcrypt.state")[2]))
        secrets += [dek, dek[:32], dek[32:]]
    _, primary = native_primary(ds.keyfile)
    ds.unmount()
    haystacks = [p for p in ds.backing.rglob("*") if p.is_file()]
    haystacks += [p for p in ds.keydir.rglob("*") if p.is_file()]
    haystacks += [ds.log_path]
    for path in haystacks:
        data = read(path)
        for s in secrets:
            for form in (s, s.hex().encode(), s.hex().upper().encode()):
                assert form not in data, f"key material found in {path}"
        if path != ds.keyfile:
            assert primary not in data and primary.hex().encode() not in data, path
    ds.mount()


def status_of(pid):
    return dict(l.split(":", 1) for l in Path(f"/proc/{pid}/status").read_text().splitlines())


@pytest.mark.skipif(ASAN, reason="AddressSanitizer makes mlock() a no-op")
def test_daemon_locks_key_memory(ds):
    vm = ds.make_vm("vm1")
    write(vm / "a.nvram", b"x" * 5000)
    locked_kib = int(status_of(ds.proc.pid)["VmLck"].split()[0])
    assert locked_kib >= 1024, f"VmLck {locked_kib} kB: the secure memory pool is not locked"


def test_daemon_is_not_dumpable(ds):
    """Ask the running daemon itself: prctl(PR_GET_DUMPABLE) through gdb."""
    if not shutil.which("gdb"):
        pytest.skip("gdb is not installed")
    write(ds.make_vm("vm1") / "a.nvram", b"x" * 5000)
    p = subprocess.run(["gdb", "-p", str(ds.proc.pid), "-batch", "-nx",
                        "-ex", "print (int) prctl(3, 0L, 0L, 0L, 0L)"],
                       capture_output=True, text=True, timeout=60)
    values = [l for l in p.stdout.splitlines() if l.startswith("$1 = ")]
    assert values, f"gdb could not call prctl:\n{p.stdout}\n{p.stderr}"
    assert values[0] == "$1 = 0", f"the daemon is dumpable: {values[0]}"


def test_daemon_is_not_dumpable_unprivileged():
    """Run the daemon as an unprivileged user: /proc/PID of a non-dumpable
    process belongs to root, not to the process's user."""
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    if os.stat("/dev/fuse").st_mode & 0o006 != 0o006:
        pytest.skip("/dev/fuse is not usable by unprivileged users on this machine")
    top = Path(tempfile.mkdtemp(prefix="vmc-nodump-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        for d in ("backing", "mnt", "keys"):
            (top / d).mkdir(mode=0o700)
            os.chown(top / d, nobody.pw_uid, nobody.pw_gid)
        cfg = top / "vmcryptfs.conf"
        cfg.write_text(vmctest.config_text(top / "keys" / "default.key"))
        os.chmod(cfg, 0o644)
        argv = [str(vmctest.DAEMON), str(top / "backing"), str(top / "mnt"), "-f",
                "-o", f"config={cfg},keyprov_dir={vmctest.PLUGINS}"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, user=nobody.pw_uid,
                                group=nobody.pw_gid, extra_groups=[])
        try:
            vmctest.wait_mounted(top / "mnt", proc=proc, what=lambda: "daemon as nobody")
            st = os.stat(f"/proc/{proc.pid}/status")
            assert int(status_of(proc.pid)["Uid"].split()[0]) == nobody.pw_uid
            assert st.st_uid == 0, "the daemon's /proc entries belong to its user: dumpable"
        finally:
            subprocess.run(["fusermount3", "-u", str(top / "mnt")], check=False)
            proc.wait(timeout=10)
    finally:
        shutil.rmtree(top, ignore_errors=True)
