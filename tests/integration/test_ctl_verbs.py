# SPDX-License-Identifier: GPL-2.0-or-later
"""vmcryptfs-ctl on a real mount, verb by verb (issue 4): status, encrypt
(--home-only, --policy, several VMs, --all), decrypt, shallow rekey (--all,
--provider, --to-provider), deep rekey, lock / unlock, the provider verbs,
events (--since, --vm, --follow), encryption mode, and the conditions under
which a conversion is refused (open files, snapshot delta disks, no space).

Every VM is built with cleartext data first and compared, file by file, with
that plaintext reference: through the mount, after a remount, and in the
backing store (which files are ciphertext, which stay byte-identical)."""
import os
import queue
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

import vmctest
from vmctest import (CONV_TMP_NAME, EXIT_BUSY, EXIT_FAIL, EXIT_NODAEMON, EXIT_NOSPACE,
                     EXIT_NOTFOUND, EXIT_PARTIAL, EXIT_PERM, EXIT_UNHEALTHY, EXIT_USAGE,
                     JOURNAL_NAME, DATASTORE_NAME, HDR, POLICY_NAME, STATE_NAME, assert_cleartext,
                     assert_encrypted, audit_events, ctl, ctl_ds, header_slots, is_encrypted, read,
                     run, tree, vm_key_record, write)

MiB = 1 << 20
VMX = """.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "{name}"
nvram = "{name}.nvram"
scsi0:0.fileName = "{name}.vmdk"
"""
LOG = "2026-01-01T00:00:00.000Z In(05) vmx Log for VMware ESX pid=1 build=1\n" * 50
DESCRIPTOR = """# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="vmfs"

# Extent description
RW 16384 VMFS "{name}-flat.vmdk"

ddb.adapterType = "lsilogic"
"""

# Which names of build_vm() the policies encrypt.
DISKS = ("{n}-flat.vmdk", "data.qcow2")
HOME = ("{n}.nvram", "{n}.vswp")
CLEAR = ("{n}.vmx", "vmware.log", "{n}.vmdk")

SECOND_PROVIDER = """key-provider "native2" {{
\ttype = "native"
\tkey-file = "{keyfile}"
}}
policy "gold" {{
\tprovider = "native2"
\tdisks = true
}}
"""

_QCOW2 = {}


def qcow2_image(tmp):
    """A real qcow2 image with data (made once by qemu-img and qemu-io)."""
    if "img" not in _QCOW2:
        p = Path(tmp) / "ref.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", p, "16M"])
        run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", "-c",
             "write -P 0xa7 5M 300k", p])
        _QCOW2["img"] = read(p)
    return _QCOW2["img"]


def names(n, group):
    return [x.format(n=n) for x in group]


def build_vm(where, name, rng, tmp, disk_mib=8):
    """A powered-off VM with cleartext data in directory @where (a path in
    the mount or in the backing store); returns {file name: plaintext}."""
    where.mkdir(parents=True, exist_ok=True)
    disk = bytearray(rng.randbytes(disk_mib * MiB))
    disk[2 * MiB:3 * MiB] = bytes(MiB)               # a hole-to-be
    files = {
        f"{name}-flat.vmdk": bytes(disk),
        f"{name}.vmdk": DESCRIPTOR.format(name=name).encode(),
        f"{name}.nvram": rng.randbytes(8684),
        f"{name}.vswp": rng.randbytes(2 * MiB + 5),
        "data.qcow2": qcow2_image(tmp),
        "vmware.log": LOG.encode(),
        f"{name}.vmx": VMX.format(name=name).encode(),
    }
    for f, data in files.items():
        write(where / f, data)
    return files


def check_vm(ds, vm, files, encrypted, mounted=True):
    """Each file of @files: ciphertext in the backing store when its name is
    in @encrypted, else byte-identical cleartext; and equal to the reference
    through the mount."""
    for f, data in files.items():
        b = ds.b(vm) / f
        if f in encrypted:
            assert_encrypted(b, data)
        else:
            assert_cleartext(b, plain=data)
        if mounted:
            assert read(ds.m(vm) / f) == data, f"{vm}/{f} differs from its reference"


def vm_status(ds, vm):
    st = ds.ctl("status", ds.m(vm)).json
    assert len(st["vms"]) == 1 and st["vms"][0]["vm"] == vm, st
    return st["vms"][0]


@pytest.fixture
def cds(make_ds, tmp_path):
    """A datastore with an audit log and a second native provider "native2"
    (its own key file) used by the policy "gold"."""
    return ctl_ds(make_ds, tmp_path, extra=SECOND_PROVIDER.format(
        keyfile=tmp_path / "keys2" / "default.key"))


# --- status ----------------------------------------------------------------------

def test_status(cds, tmp_path):
    ds = cds
    rng = random.Random(1)
    files = build_vm(ds.m("vm1"), "vm1", rng, tmp_path, disk_mib=1)
    ds.make_vm("vm2")                   # a policy, no data yet
    ds.m("notavm").mkdir()              # no policy: not a VM
    ds.ctl("encrypt", ds.m("vm1"))

    st = ds.ctl("status").json
    d = st["datastore"]
    assert d["backing"] == str(ds.backing)
    assert d["mountpoint"] == str(ds.mnt)
    assert d["configuration"] == str(ds.config)
    assert d["encryption_mode"] == "on"
    assert d["control_socket"] == vmctest.ctl_socket_path(ds.mnt)
    assert os.path.exists(d["control_socket"])
    assert (os.stat(d["control_socket"]).st_mode & 0o777) == 0o600
    provs = {p["name"]: p for p in d["providers"]}
    assert set(provs) == {"native", "native2"}
    assert provs["native"]["type"] == "native" and provs["native"]["health"] == "ok"
    vms = {v["vm"]: v for v in st["vms"]}
    assert set(vms) == {"vm1", "vm2"}, vms
    v1, v2 = vms["vm1"], vms["vm2"]
    rec = vm_key_record(ds.b("vm1") / STATE_NAME)
    assert v1["policy"] == "vm-encryption" and v1["encrypted"] is True and v1["disks"] is True
    assert v1["keys"] == "unlocked"
    assert (v1["provider"], v1["kek_id"]) == rec["current"]
    assert v1["rekey_in_progress"] is False and v1["conversion_in_progress"] is False
    assert v1["open_files"] == 0
    assert v2["policy"] == "vm-encryption" and v2["encrypted"] is False
    assert v2["open_files"] == 0 and v2["conversion_in_progress"] is False

    # With VMDIR: that VM only; open files are counted.
    with open(ds.m("vm1") / "vm1.nvram", "rb"), open(ds.m("vm1") / "vmware.log", "rb"):
        v = vm_status(ds, "vm1")
        assert v["open_files"] == 2, v
    assert vm_status(ds, "vm1")["open_files"] == 0

    # Human-readable output says the same.
    out = ds.ctl("status", json_out=False).out
    assert f"backing          {ds.backing}" in out
    assert "encryption mode  on" in out
    assert "key provider     native (native): ok" in out
    line = [l for l in out.splitlines() if l.startswith("vm1 ")]
    assert line and "vm-encryption" in line[0] and " yes " in line[0] and rec["current"][1] in \
        line[0], out
    out = ds.ctl("status", ds.m("vm2"), json_out=False).out
    assert "vm2 " in out and "vm1 " not in out
    # A relative VMDIR names a directory of the datastore.
    assert ds.ctl("status", "vm2", cwd="/").json["vms"][0]["vm"] == "vm2"
    # A VMDIR that does not exist, or is outside the datastore.
    ds.ctl("status", ds.m("nope"), rc=EXIT_NOTFOUND)
    ds.ctl("status", "/etc", rc=EXIT_USAGE)
    assert read(ds.m("vm1") / "vm1-flat.vmdk") == files["vm1-flat.vmdk"]


# --- encrypt -----------------------------------------------------------------------

def test_encrypt_multi_file_vm(cds, tmp_path):
    ds = cds
    rng = random.Random(2)
    files = build_vm(ds.m("vm1"), "vm1", rng, tmp_path)
    check_vm(ds, "vm1", files, encrypted=())              # all cleartext at first
    r = ds.ctl("encrypt", ds.m("vm1")).json
    assert r["failed"] == 0 and len(r["vms"]) == 1, r
    assert r["vms"][0]["vm"] == "vm1" and r["vms"][0]["files"] == 4, r
    enc = names("vm1", DISKS) + names("vm1", HOME)
    check_vm(ds, "vm1", files, enc)
    # The hole stays a hole: the 1 MiB of zeros is not stored.
    with open(ds.b("vm1") / "vm1-flat.vmdk", "rb") as f:
        f.seek(HDR + 2 * MiB)
        assert f.read(MiB) == bytes(MiB)
    assert vmctest.blocks(ds.b("vm1") / "vm1-flat.vmdk") * 512 < 8 * MiB
    # The policy written, the key record made, nothing left behind.
    assert 'policy = "vm-encryption"' in (ds.b("vm1") / POLICY_NAME).read_text()
    assert vm_key_record(ds.b("vm1") / STATE_NAME)["state"] == 0
    assert not (ds.b("vm1") / JOURNAL_NAME).exists()
    assert not (ds.b("vm1") / CONV_TMP_NAME).exists()
    assert sorted(os.listdir(ds.m("vm1"))) == sorted(list(files) + [POLICY_NAME])
    # Every file keys to the VM's KEK.
    kek = vm_key_record(ds.b("vm1") / STATE_NAME)["current"]
    for f in enc:
        assert [(s["provider"], s["kek_id"]) for s in header_slots(ds.b("vm1") / f)] == [kek]
    # A second encrypt has nothing to do.
    assert ds.ctl("encrypt", ds.m("vm1")).json["vms"][0]["files"] == 0
    ds.remount()
    check_vm(ds, "vm1", files, enc)


def test_encrypt_home_only(cds, tmp_path):
    ds = cds
    files = build_vm(ds.m("vm1"), "vm1", random.Random(3), tmp_path, disk_mib=2)
    ds.ctl("encrypt", "--home-only", ds.m("vm1"))
    check_vm(ds, "vm1", files, names("vm1", HOME))
    text = (ds.b("vm1") / POLICY_NAME).read_text()
    assert "disks = false" in text, text
    v = vm_status(ds, "vm1")
    assert v["encrypted"] is True and v["disks"] is False
    ds.remount()
    check_vm(ds, "vm1", files, names("vm1", HOME))


def test_encrypt_named_policy(cds, tmp_path):
    ds = cds
    files = build_vm(ds.m("vm1"), "vm1", random.Random(4), tmp_path, disk_mib=1)
    ds.ctl("encrypt", "--policy", "no-such-policy", ds.m("vm1"), rc=EXIT_NOTFOUND)
    assert not (ds.b("vm1") / POLICY_NAME).exists()
    ds.ctl("encrypt", "--policy", "gold", ds.m("vm1"))
    assert 'policy = "gold"' in (ds.b("vm1") / POLICY_NAME).read_text()
    rec = vm_key_record(ds.b("vm1") / STATE_NAME)
    assert rec["current"][0] == "native2"
    v = vm_status(ds, "vm1")
    assert (v["policy"], v["provider"]) == ("gold", "native2")
    enc = names("vm1", DISKS) + names("vm1", HOME)
    check_vm(ds, "vm1", files, enc)
    for f in enc:
        assert {s["provider"] for s in header_slots(ds.b("vm1") / f)} == {"native2"}
    # Another policy than the one the VM has: refused, nothing changes.
    ds.ctl("encrypt", "--policy", "vm-encryption", ds.m("vm1"), rc=EXIT_BUSY)
    assert 'policy = "gold"' in (ds.b("vm1") / POLICY_NAME).read_text()


def test_encrypt_several_and_all(cds, tmp_path):
    ds = cds
    rng = random.Random(5)
    ref = {vm: build_vm(ds.m(vm), vm, rng, tmp_path, disk_mib=1)
           for vm in ("vm1", "vm2", "vm3", "vm4")}
    enc = {vm: names(vm, DISKS) + names(vm, HOME) for vm in ref}

    r = ds.ctl("encrypt", ds.m("vm1"), ds.m("vm2")).json
    assert r["failed"] == 0 and [v["vm"] for v in r["vms"]] == ["vm1", "vm2"], r
    for vm in ("vm1", "vm2"):
        check_vm(ds, vm, ref[vm], enc[vm])
    for vm in ("vm3", "vm4"):
        check_vm(ds, vm, ref[vm], ())
    out = ds.ctl("encrypt", ds.m("vm1"), ds.m("vm2"), json_out=False).out
    assert "vm1: encrypted" in out and "vm2: encrypted" in out, out

    # --all, while a file of vm4 is open: overall result "partial" (exit 9),
    # the other VMs done, vm4 untouched.
    with open(ds.m("vm4") / "vm4.vmx", "rb"):
        r = ds.ctl("encrypt", "--all", rc=EXIT_PARTIAL)
    res = {v["vm"]: v for v in r.json["vms"]} if r.json else {}
    assert r.json and r.json["failed"] == 1, r
    assert "error" in res["vm4"] and "open" in res["vm4"]["error"], r
    assert "error" not in res["vm3"], r
    check_vm(ds, "vm3", ref["vm3"], enc["vm3"])
    for f, data in ref["vm4"].items():
        assert_cleartext(ds.b("vm4") / f, plain=data)
    # Again with nothing open: every VM encrypted, exit 0.
    r = ds.ctl("encrypt", "--all").json
    assert r["failed"] == 0 and {v["vm"] for v in r["vms"]} >= set(ref), r
    ds.remount()
    for vm in ref:
        check_vm(ds, vm, ref[vm], enc[vm])
    # Both VMDIRs and --all, or neither: usage errors.
    ds.ctl("encrypt", "--all", ds.m("vm1"), rc=EXIT_USAGE)
    ds.ctl("encrypt", rc=EXIT_USAGE)


# --- decrypt -----------------------------------------------------------------------

def test_decrypt(cds, tmp_path):
    ds = cds
    rng = random.Random(6)
    files = build_vm(ds.m("vm1"), "vm1", rng, tmp_path)
    before = tree(ds.b("vm1"))
    ds.ctl("encrypt", ds.m("vm1"))
    check_vm(ds, "vm1", files, names("vm1", DISKS) + names("vm1", HOME))
    r = ds.ctl("decrypt", ds.m("vm1")).json
    assert r["failed"] == 0 and r["vms"][0]["files"] == 4, r
    after = tree(ds.b("vm1"))
    assert after == before, "the backing store is not back to the byte-identical cleartext: " + \
        str(sorted(set(after) ^ set(before)))
    assert not (ds.b("vm1") / POLICY_NAME).exists()
    assert not (ds.b("vm1") / STATE_NAME).exists()
    assert not os.path.exists(ds.m("vm1") / POLICY_NAME)
    v = vm_status(ds, "vm1")
    assert v["encrypted"] is False and v["policy"] is None
    check_vm(ds, "vm1", files, ())
    # New disk data in the VM stays cleartext now.
    write(ds.m("vm1") / "new-flat.vmdk", b"n" * 10000)
    assert not is_encrypted(ds.b("vm1") / "new-flat.vmdk")
    ds.remount()
    check_vm(ds, "vm1", files, ())
    # Decrypting a cleartext VM: nothing to do.
    assert ds.ctl("decrypt", ds.m("vm1")).json["vms"][0]["files"] == 0


# --- shallow rekey -----------------------------------------------------------------

def data_part(path):
    return read(path)[HDR:]


def test_rekey_shallow(cds, tmp_path):
    ds = cds
    files = build_vm(ds.m("vm1"), "vm1", random.Random(7), tmp_path, disk_mib=2)
    ds.ctl("encrypt", ds.m("vm1"))
    enc = names("vm1", DISKS) + names("vm1", HOME)
    old = vm_key_record(ds.b("vm1") / STATE_NAME)
    cipher = {f: data_part(ds.b("vm1") / f) for f in enc}
    slots = {f: header_slots(ds.b("vm1") / f) for f in enc}

    r = ds.ctl("rekey", ds.m("vm1")).json
    one = r["vms"][0]
    new = vm_key_record(ds.b("vm1") / STATE_NAME)
    assert new["state"] == 0 and new["next"] is None
    assert new["current"] != old["current"] and new["current"][0] == "native"
    assert new["vm_uuid"] == old["vm_uuid"]
    assert (one["from"], one["to"], one["provider"]) == (old["current"][1], new["current"][1],
                                                          "native"), r
    assert one["files"] == len(enc) and isinstance(one["milliseconds"], int), r
    for f in enc:
        s = header_slots(ds.b("vm1") / f)
        assert [(x["provider"], x["kek_id"]) for x in s] == [new["current"]], (f, s)
        assert s[0]["generation"] > slots[f][0]["generation"]
        assert s[0]["wrapped"] != slots[f][0]["wrapped"]
        assert data_part(ds.b("vm1") / f) == cipher[f], f"{f}: a shallow rekey changed its data"
    check_vm(ds, "vm1", files, enc)
    out = ds.ctl("rekey", ds.m("vm1"), json_out=False).out
    assert "vm1: rekeyed" in out and " ms" in out, out
    ds.remount()
    check_vm(ds, "vm1", files, enc)
    # A cleartext VM has nothing to rekey.
    ds.m("plain").mkdir()
    ds.ctl("rekey", ds.m("plain"), rc=EXIT_NOTFOUND)


def test_rekey_all_and_providers(cds, tmp_path):
    ds = cds
    rng = random.Random(8)
    ref = {vm: build_vm(ds.m(vm), vm, rng, tmp_path, disk_mib=1) for vm in ("vm1", "vm2", "vm3")}
    enc = {vm: names(vm, DISKS) + names(vm, HOME) for vm in ref}
    ds.ctl("encrypt", ds.m("vm1"), ds.m("vm2"))
    ds.ctl("encrypt", "--policy", "gold", ds.m("vm3"))
    rec = lambda vm: vm_key_record(ds.b(vm) / STATE_NAME)["current"]  # noqa: E731
    k0 = {vm: rec(vm) for vm in ref}

    # --all --provider native: vm1 and vm2, not vm3 (native2).
    r = ds.ctl("rekey", "--all", "--provider", "native").json
    assert r["failed"] == 0 and sorted(v["vm"] for v in r["vms"]) == ["vm1", "vm2"], r
    k1 = {vm: rec(vm) for vm in ref}
    assert k1["vm1"] != k0["vm1"] and k1["vm2"] != k0["vm2"] and k1["vm3"] == k0["vm3"]

    # --to-provider: vm1 moves to native2 (as after moving to a new KMS).
    r = ds.ctl("rekey", "--to-provider", "native2", ds.m("vm1")).json
    assert r["vms"][0]["provider"] == "native2", r
    k2 = rec("vm1")
    assert k2[0] == "native2" and k2 != k1["vm1"]
    for f in enc["vm1"]:
        assert [(s["provider"], s["kek_id"]) for s in header_slots(ds.b("vm1") / f)] == [k2]
    assert vm_status(ds, "vm1")["provider"] == "native2"
    ds.ctl("rekey", "--to-provider", "no-such-provider", ds.m("vm1"), rc=EXIT_NOTFOUND)

    # --all without --provider: every encrypted VM.
    r = ds.ctl("rekey", "--all").json
    assert r["failed"] == 0 and sorted(v["vm"] for v in r["vms"]) == ["vm1", "vm2", "vm3"], r
    # --all --provider native2 now: vm1 and vm3.
    r = ds.ctl("rekey", "--all", "--provider", "native2").json
    assert sorted(v["vm"] for v in r["vms"]) == ["vm1", "vm3"], r
    # Moving every VM of a provider to another: --all --provider --to-provider.
    r = ds.ctl("rekey", "--all", "--provider", "native", "--to-provider", "native2").json
    assert [v["vm"] for v in r["vms"]] == ["vm2"] and r["failed"] == 0, r
    assert {rec(vm)[0] for vm in ref} == {"native2"}
    assert ds.ctl("rekey", "--all", "--provider", "native").json["vms"] == []
    ds.remount()
    for vm in ref:
        check_vm(ds, vm, ref[vm], enc[vm])


# --- deep rekey ------------------------------------------------------------------

def test_rekey_deep(cds, tmp_path):
    ds = cds
    files = build_vm(ds.m("vm1"), "vm1", random.Random(9), tmp_path, disk_mib=2)
    ds.ctl("encrypt", ds.m("vm1"))
    enc = names("vm1", DISKS) + names("vm1", HOME)
    old = vm_key_record(ds.b("vm1") / STATE_NAME)
    cipher = {f: data_part(ds.b("vm1") / f) for f in enc}
    slots = {f: header_slots(ds.b("vm1") / f)[0] for f in enc}
    r = ds.ctl("rekey", "--deep", ds.m("vm1")).json
    one = r["vms"][0]
    new = vm_key_record(ds.b("vm1") / STATE_NAME)
    assert new["state"] == 0 and new["current"] != old["current"]
    assert (one["from"], one["to"]) == (old["current"][1], new["current"][1]), r
    assert one["files"] == len(enc), r
    for f in enc:
        s = header_slots(ds.b("vm1") / f)
        assert [(x["provider"], x["kek_id"]) for x in s] == [new["current"]]
        assert s[0]["wrapped"] != slots[f]["wrapped"]
        c = data_part(ds.b("vm1") / f)
        assert len(c) == len(cipher[f])
        # New data key: every non-hole unit has new ciphertext.
        for off in range(0, len(c), 4096):
            if cipher[f][off:off + 4096].strip(b"\0"):
                assert c[off:off + 4096] != cipher[f][off:off + 4096], f"{f}: unit at {off}"
    check_vm(ds, "vm1", files, enc)
    assert not (ds.b("vm1") / JOURNAL_NAME).exists()
    assert not (ds.b("vm1") / CONV_TMP_NAME).exists()
    # The new data keys, independently: unwrap them with the KEK derived
    # from the native primary key (FORMAT.md), and they differ.
    ti = pytest.importorskip("test_independent")
    kek_old = ti.native_kek(ds.keyfile, old["current"][1])
    kek_new = ti.native_kek(ds.keyfile, new["current"][1])
    for f in enc:
        dek, prov, kid = ti.unwrap_dek(ds.b("vm1") / f, kek_new)
        assert (prov, kid) == new["current"]
        assert ti.decrypt_file(ds.b("vm1") / f, dek) == files[f]
        with pytest.raises(Exception):
            ti.unwrap_dek(ds.b("vm1") / f, kek_old)
    ds.remount()
    check_vm(ds, "vm1", files, enc)


# --- lock / unlock ---------------------------------------------------------------

def test_lock_unlock(cds, tmp_path):
    ds = cds
    files = build_vm(ds.m("vm1"), "vm1", random.Random(10), tmp_path, disk_mib=1)
    build_vm(ds.m("vm2"), "vm2", random.Random(11), tmp_path, disk_mib=1)
    ds.ctl("encrypt", ds.m("vm1"), ds.m("vm2"))
    # Refused while a file of the VM is open.
    with open(ds.m("vm1") / "vm1.nvram", "rb"):
        r = ds.ctl("lock", ds.m("vm1"), rc=EXIT_BUSY)
        assert r.json["ok"] is False and r.json["errno"] == 16, r
    r = ds.ctl("lock", ds.m("vm1")).json
    assert r["keys"] == "locked by an administrator", r
    assert vm_status(ds, "vm1")["keys"] == "locked by an administrator"
    for f in names("vm1", DISKS) + names("vm1", HOME):
        assert vmctest.open_errno(ds.m("vm1") / f, os.O_RDONLY) == vmctest.ENOKEY, f
    # Cleartext files of the locked VM and the other VM keep working.
    assert read(ds.m("vm1") / "vm1.vmx") == files["vm1.vmx"]
    assert read(ds.m("vm2") / "vm2.nvram")
    # Data keys come back with unlock, no remount.
    r = ds.ctl("unlock", ds.m("vm1"), json_out=False)
    assert "vm1: unlocked" in r.out, r
    assert vm_status(ds, "vm1")["keys"] == "unlocked"
    check_vm(ds, "vm1", files, names("vm1", DISKS) + names("vm1", HOME))
    # Lock of a VM that is not encrypted: not found; usage: one VMDIR.
    ds.m("plain").mkdir()
    r = ds.ctl("lock", ds.m("plain"), rc=EXIT_NOTFOUND)
    assert r.json == {"ok": False, "errno": 2, "error": os.strerror(2),
                      "message": r.json["message"]}, r
    ds.ctl("lock", rc=EXIT_USAGE)
    ds.ctl("lock", ds.m("vm1"), ds.m("vm2"), rc=EXIT_USAGE)


# --- providers ---------------------------------------------------------------------

def test_provider_verbs(make_ds, tmp_path):
    extra = SECOND_PROVIDER.format(keyfile=tmp_path / "keys2" / "default.key") + \
        f'key-provider "broken" {{\n\ttype = "native"\n\tkey-file = "{tmp_path}/bad/x.key"\n}}\n'
    (tmp_path / "bad").mkdir(mode=0o700)
    write(tmp_path / "bad" / "x.key", b"not a primary key " * 8)    # damaged: 144 bytes
    os.chmod(tmp_path / "bad" / "x.key", 0o600)
    ds = ctl_ds(make_ds, tmp_path, extra=extra)
    ds.make_vm("vm1")
    write(ds.m("vm1") / "a.nvram", b"a" * 5000)         # makes the native primary key
    lst = {p["name"]: p for p in ds.ctl("provider", "list").json["providers"]}
    assert set(lst) == {"native", "native2", "broken"}
    assert lst["native"]["type"] == "native" and lst["native"]["health"] == "ok"
    assert lst["native"]["key-file"] == [str(ds.keyfile)]
    assert lst["native"]["policies"] == ["vm-encryption"] and lst["native2"]["policies"] == ["gold"]
    out = ds.ctl("provider", "list", json_out=False).out
    assert "native" in out and str(ds.keyfile) in out

    r = ds.ctl("provider", "test", "native").json
    assert r["healthy"] is True and r["provider"] == "native" and r["lines"], r
    assert "is usable" in ds.ctl("provider", "test", "native", json_out=False).out
    ds.ctl("provider", "test", "no-such", rc=EXIT_NOTFOUND)
    r = ds.ctl("provider", "test", "broken", json_out=False, rc=EXIT_UNHEALTHY)
    assert "NOT usable" in r.out, r

    # create-native: the primary key of native2, made now; then "existing".
    k2 = tmp_path / "keys2" / "default.key"
    assert not k2.exists()
    r = ds.ctl("provider", "create-native", "native2").json
    assert r["created"] is True and r["key_file"] == str(k2) and len(r["primary_key_id"]) == 32, r
    assert k2.exists() and (os.stat(k2).st_mode & 0o777) == 0o600
    assert (tmp_path / "keys2" / "default.key.id").read_text().strip() == r["primary_key_id"]
    r2 = ds.ctl("provider", "create-native", "native2").json
    assert r2["created"] is False and r2["primary_key_id"] == r["primary_key_id"], r2
    ds.ctl("provider", "create-native", "no-such", rc=EXIT_NOTFOUND)

    # backup / restore (restore onto a fresh host: test_ctl_backup.py).
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery staple\n")
    out = tmp_path / "native.backup"
    r = ds.ctl("provider", "backup", "native", "--out", out, "--password-file", pw).json
    assert r["provider"] == "native" and r["file"] == str(out), r
    assert "backup" not in r
    assert (os.stat(out).st_mode & 0o777) == 0o600 and os.path.getsize(out) > 64
    key = read(ds.keyfile)
    assert key[40:72] not in read(out), "the backup holds the primary key in cleartext"
    ds.ctl("provider", "backup", "native", "--out", out, "--password-file", pw, rc=EXIT_FAIL)
    ds.ctl("provider", "backup", "native", "--password-file", pw, rc=EXIT_USAGE)
    r = ds.ctl("provider", "restore", out, "--password-file", pw).json
    assert r["restored"] == "already in place" and r["provider"] == "native", r
    # Over another primary key: refused without --force.
    ds.ctl("provider", "restore", out, "--provider", "native2", "--password-file", pw,
           rc=EXIT_BUSY)
    assert read(k2)[24:40].hex() == r2["primary_key_id"]
    garbage = tmp_path / "garbage"
    write(garbage, b"x" * 100)
    ds.ctl("provider", "restore", garbage, "--password-file", pw, rc=EXIT_FAIL)
    ds.ctl("provider", "restore", tmp_path / "missing", "--password-file", pw, rc=EXIT_NOTFOUND)
    ds.ctl("provider", rc=EXIT_USAGE)
    ds.ctl("provider", "frobnicate", rc=EXIT_USAGE)
    ds.expect_error("x.key")            # the broken provider's key file, as the log names it


# --- events ------------------------------------------------------------------------

class Follower:
    """`vmcryptfs-ctl events --follow` in the background; its lines in a queue."""

    def __init__(self, ds, *args):
        self.proc = subprocess.Popen([str(vmctest.CTL), "-m", str(ds.mnt), "--json", "events",
                                      "--follow", *map(str, args)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.t.start()

    def _pump(self):
        for line in self.proc.stdout:
            self.q.put(line)
        self.q.put(None)

    def next_event(self, pred, timeout=10.0):
        import json
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            ev = json.loads(line)
            if pred(ev):
                return ev

    def drain(self, quiet=0.5):
        n = 0
        while True:
            try:
                self.q.get(timeout=quiet)
                n += 1
            except queue.Empty:
                return n

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def test_events(cds, tmp_path):
    import json
    ds = cds
    for vm in ("vm1", "vm2"):
        build_vm(ds.m(vm), vm, random.Random(12), tmp_path, disk_mib=1)
    ds.ctl("encrypt", ds.m("vm1"))
    time.sleep(0.05)
    ds.ctl("encrypt", ds.m("vm2"))
    vmctest.wait_for(lambda: any(e["op"] == "encrypt" and e.get("vm") == "vm2"
                                 for e in audit_events(ds.audit_log)), what="the audit log")
    every = audit_events(ds.audit_log)

    r = ds.ctl("events")
    got = [json.loads(l) for l in r.out.splitlines() if l.strip()]
    assert got == every, "events differs from the audit log"
    r = ds.ctl("events", "--vm", ds.m("vm1"))
    got = [json.loads(l) for l in r.out.splitlines() if l.strip()]
    assert got and all(e["vm"] == "vm1" for e in got), got
    assert got == [e for e in every if e.get("vm") == "vm1"]
    since = next(e["time"] for e in every if e["op"] == "encrypt" and e["vm"] == "vm2")
    got = [json.loads(l) for l in ds.ctl("events", "--since", since).out.splitlines()]
    assert got == [e for e in every if e["time"] >= since] and got, got
    assert ds.ctl("events", "--since", "2999-01-01").out.strip() == ""
    r = ds.ctl("events", "--vm", ds.m("vm1"), json_out=False)
    assert "encrypt" in r.out and "root" in r.out, r
    ds.ctl("events", "--vm", ds.m("nope"), rc=EXIT_NOTFOUND)

    # --follow: an operation's event arrives while following.
    fol = Follower(ds, "--vm", ds.m("vm1"))
    fol_all = Follower(ds)
    try:
        fol.drain()
        fol_all.drain()
        t0 = time.monotonic()
        r = ds.ctl("rekey", ds.m("vm1")).json["vms"][0]
        ev = fol.next_event(lambda e: e["op"] == "rekey")
        assert ev is not None, "no rekey event arrived at events --follow"
        assert ev["vm"] == "vm1" and ev["key_to"] == r["to"] and ev["result"] == "ok", ev
        assert time.monotonic() - t0 < 10
        ds.ctl("rekey", ds.m("vm2"))
        ev = fol_all.next_event(lambda e: e["op"] == "rekey" and e["vm"] == "vm2")
        assert ev is not None, "no vm2 event at the unfiltered follower"
        # The vm1 follower does not see vm2's events.
        assert fol.next_event(lambda e: e.get("vm") == "vm2", timeout=1.0) is None
        assert fol.proc.poll() is None and fol_all.proc.poll() is None
    finally:
        fol.stop()
        fol_all.stop()
    # Followers that hung up do not disturb the daemon.
    ds.ctl("rekey", ds.m("vm1"))
    ds.ctl("status")


# --- encryption mode ----------------------------------------------------------------

def test_encryption_mode(cds, tmp_path):
    ds = cds
    assert ds.ctl("status").json["datastore"]["encryption_mode"] == "off"
    write(ds.m("core.0001"), b"core dump before encryption mode " * 100)
    assert_cleartext(ds.b("core.0001"), plain=read(ds.m("core.0001")))
    files = build_vm(ds.m("vm1"), "vm1", random.Random(13), tmp_path, disk_mib=1)
    ds.ctl("encrypt", ds.m("vm1"))
    st = ds.ctl("status").json["datastore"]
    assert st["encryption_mode"] == "on" and st["datastore_provider"] == "native", st
    assert (ds.b() / DATASTORE_NAME).exists()
    core = os.urandom(100000) + b"secret core contents" * 1000
    write(ds.m("core.1234"), core)
    assert_encrypted(ds.b("core.1234"), core)
    assert read(ds.m("core.1234")) == core
    # Not while encrypted VMs remain.
    r = ds.ctl("encryption-mode", "off", rc=EXIT_BUSY)
    assert "remain" in r.json["message"], r
    assert ds.ctl("status").json["datastore"]["encryption_mode"] == "on"
    ds.ctl("decrypt", ds.m("vm1"))
    r = ds.ctl("encryption-mode", "off", json_out=False)
    assert "encryption mode off" in r.out, r
    assert ds.ctl("status").json["datastore"]["encryption_mode"] == "off"
    write(ds.m("core.5678"), core)
    assert_cleartext(ds.b("core.5678"), plain=core)
    assert read(ds.m("core.1234")) == core             # the encrypted one still opens
    # On again by hand.
    ds.ctl("encryption-mode", "on")
    assert ds.ctl("status").json["datastore"]["encryption_mode"] == "on"
    write(ds.m("core.9"), core)
    assert_encrypted(ds.b("core.9"), core)
    ds.ctl("encryption-mode", "sideways", rc=EXIT_USAGE)
    ds.remount()
    assert read(ds.m("core.1234")) == core and read(ds.m("core.9")) == core
    check_vm(ds, "vm1", files, ())


# --- conditions --------------------------------------------------------------------

@pytest.fixture
def two_vms(cds, tmp_path):
    """vm1 encrypted, vm2 cleartext, both with data."""
    ds = cds
    rng = random.Random(14)
    ref = {vm: build_vm(ds.m(vm), vm, rng, tmp_path, disk_mib=1) for vm in ("vm1", "vm2")}
    ds.ctl("encrypt", ds.m("vm1"))
    return ds, ref


def assert_status_unchanged(ds, vm, op):
    """What status says about @vm after a refused @op: as before it."""
    v = vm_status(ds, vm)
    if op == "encrypt":
        # The VM still runs as before: its cleartext disk takes writes.
        disk = ds.m(vm) / f"{vm}-flat.vmdk"
        head = read(disk)[:4096]
        e = vmctest.errno_of(lambda: write(disk, head, "r+b"))
        assert e == 0, f"after a refused encrypt, the VM's disk refuses writes: {os.strerror(e)}"
        assert v["encrypted"] is False and v["policy"] is None, \
            f"after a refused encrypt, status says: policy {v['policy']}, encrypted {v['encrypted']}"
    else:
        assert v["encrypted"] is True and v["rekey_in_progress"] is False, \
            f"after a refused {op}, status says: rekey in progress {v['rekey_in_progress']}"


def assert_unchanged(before, after, what):
    """The backing store (tree()) is as it was: name the differences."""
    new = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (new or gone or changed), (f"{what} changed the backing store: new {new}, "
                                          f"removed {gone}, changed {changed}")


CONVERSIONS = {
    "encrypt": ("vm2", ["encrypt"]),
    "decrypt": ("vm1", ["decrypt"]),
    "rekey-deep": ("vm1", ["rekey", "--deep"]),
}


@pytest.mark.parametrize("op", sorted(CONVERSIONS))
def test_refused_while_a_file_is_open(two_vms, op):
    ds, ref = two_vms
    vm, args = CONVERSIONS[op]
    before = tree(ds.b())
    with open(ds.m(vm) / f"{vm}.vmx", "rb"):
        r = ds.ctl(*args, ds.m(vm), rc=EXIT_BUSY)
        assert r.json["errno"] == 16 and "open" in r.json["message"], r
    assert_status_unchanged(ds, vm, op)
    assert_unchanged(before, tree(ds.b()), f"a refused {op} (a file open)")
    for f, data in ref[vm].items():
        assert read(ds.m(vm) / f) == data


@pytest.mark.parametrize("delta", ["{vm}-000001.vmdk", "{vm}-delta.vmdk"])
@pytest.mark.parametrize("op", sorted(CONVERSIONS))
def test_refused_with_snapshot_delta_disks(two_vms, op, delta):
    ds, ref = two_vms
    vm, args = CONVERSIONS[op]
    d = delta.format(vm=vm)
    write(ds.m(vm) / d, b"KDMV" + os.urandom(70000))     # a snapshot's delta disk
    before = tree(ds.b())
    r = ds.ctl(*args, ds.m(vm), rc=None)
    assert r.rc == EXIT_BUSY, f"{op} with the snapshot disk {d}: expected exit 5\n{r!r}"
    assert "snapshot" in r.json["message"], r
    assert_status_unchanged(ds, vm, op)
    assert_unchanged(before, tree(ds.b()), f"a refused {op} (snapshot disk {d})")


def test_no_space(make_ds, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", small])
    ds = None
    try:
        backing = small / "backing"
        backing.mkdir()
        ref = build_vm(backing / "vm1", "vm1", random.Random(15), tmp_path, disk_mib=28)
        before = tree(backing)
        ds = ctl_ds(make_ds, tmp_path, backing=backing)
        r = ds.ctl("encrypt", ds.m("vm1"), rc=None)
        assert r.rc == EXIT_NOSPACE, r
        assert r.json["errno"] == 28 and "free" in r.json["message"], r
        assert_status_unchanged(ds, "vm1", "encrypt")
        assert_unchanged(before, tree(backing), "a refused encrypt (no space)")
        for f, data in ref.items():
            assert read(ds.m("vm1") / f) == data
    finally:
        if ds is not None and ds.mounted:
            ds.unmount()
        run(["umount", small], check=False)


# --- the command line itself ---------------------------------------------------

def test_help_usage_and_no_daemon(cds, tmp_path):
    ds = cds
    top = ds.ctl("--help", json_out=False).out
    for verb in ("status", "encrypt", "decrypt", "rekey", "lock", "unlock", "provider", "events",
                 "encryption-mode"):
        assert verb in top
        r = ds.ctl(verb, "--help", json_out=False)
        assert r.out.startswith("usage: vmcryptfs-ctl " + verb), r
    ds.ctl("frobnicate", rc=EXIT_USAGE)
    ds.ctl(rc=EXIT_USAGE)
    r = ctl(None, "provider", "list", rc=EXIT_NODAEMON, socket=tmp_path / "nothing.sock")
    assert r.json and r.json["ok"] is False, r
    # The socket is root's (mode 0600) without a socket-group: others cannot connect.
    sock = ds.ctl("status").json["datastore"]["control_socket"]
    ctl(None, "provider", "list", rc=EXIT_PERM, socket=sock, user=65534, group=65534,
        extra_groups=[])


def test_socket_option_with_several_datastores(cds, make_ds, tmp_path):
    """-s SOCKET talks to that daemon, whatever else is mounted."""
    ds = cds
    other = ctl_ds(make_ds, tmp_path, name="other")
    sock = ds.ctl("status").json["datastore"]["control_socket"]
    assert other.ctl("status").json["datastore"]["control_socket"] != sock
    r = ctl(None, "provider", "list", socket=sock)
    assert r.json["providers"]
    r = ctl(None, "status", socket=sock, rc=None)
    assert r.rc == 0 and r.json["datastore"]["mountpoint"] == str(ds.mnt), r


def test_progress_bar_on_a_terminal(cds, tmp_path):
    """A long operation draws a progress bar (percent, bytes, rate, time left)
    on a terminal, and none when stderr is not one or with --json."""
    import pty
    ds = cds
    for vm in ("vm1", "vm2"):
        ds.m(vm).mkdir()
    write(ds.m("vm1") / "vm1-flat.vmdk", os.urandom(128 * MiB))
    write(ds.m("vm1") / "vm1-s001.vmdk", os.urandom(128 * MiB))
    write(ds.m("vm2") / "vm2.nvram", os.urandom(9000))
    master, slave = pty.openpty()
    try:
        p = subprocess.run([str(vmctest.CTL), "-m", str(ds.mnt), "encrypt", str(ds.m("vm1")),
                            str(ds.m("vm2"))], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=slave, timeout=120)
        os.close(slave)
        slave = -1
        bar = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            bar += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0, p
    text = bar.decode(errors="replace")
    assert "%" in text and "MiB" in text and "/s" in text, f"no progress bar: {text!r}"
    assert "left" in text, f"the bar does not say the time left: {text!r}"
    assert "100%" in text, f"the bar does not reach 100%: {text!r}"
    assert "(vm 1/2)" in text and "(vm 2/2)" in text, f"no overall progress: {text!r}"
    # Not a terminal, or --json: no bar.
    ds.ctl("decrypt", ds.m("vm1"), json_out=False)
    r = ds.ctl("decrypt", ds.m("vm2"))
    assert "%" not in r.err and r.json["failed"] == 0


def test_control_socket_option_and_config(make_ds, tmp_path):
    """-o ctl_socket=PATH and control { socket = PATH } place the socket;
    status shows it; vmcryptfs-ctl -m finds it; mode 0600 without a group."""
    sock = tmp_path / "c.sock"
    ds = ctl_ds(make_ds, tmp_path, options=[f"ctl_socket={sock}"])
    st = ds.ctl("status").json["datastore"]
    assert st["control_socket"] == str(sock) and sock.is_socket()
    assert (os.stat(sock).st_mode & 0o777) == 0o600
    assert ctl(None, "provider", "list", socket=sock).json["providers"]
    ds.unmount()
    assert not sock.exists(), "the socket outlives its daemon"
    sock2 = tmp_path / "d.sock"
    ds2 = ctl_ds(make_ds, tmp_path, name="ds2", extra=f'control {{\n\tsocket = "{sock2}"\n}}\n')
    assert ds2.ctl("status").json["datastore"]["control_socket"] == str(sock2)
    # A second daemon cannot take a socket in use.
    ds3 = ctl_ds(make_ds, tmp_path, name="ds3", options=[f"ctl_socket={sock2}"], mount=False)
    p = ds3.mount_fails()
    assert "in use" in p.stderr, p.stderr
    ds3.expect_error("in use")
