# SPDX-License-Identifier: GPL-2.0-or-later
"""vmcryptfs-util scan on datastores made by the daemon: a compliant one
(exit 0), and one with every kind of violation the scan knows (exit 3): a
cleartext nvram put into the backing directory of an encrypted VM, a broken
policy, a provider the configuration does not define (in a key record and in
headers), damaged and unsupported headers, a cleartext core dump outside VMs
while encryption mode is on; with warnings for an interrupted conversion and
an interrupted rekey; --verify finds keys of another primary key and a slot
that does not open. The scan
never writes and never follows a symbolic link."""
import hashlib
import os
import random
import shutil

import utiltest
from utiltest import (EXIT_KEY, EXIT_NONCOMPLIANT, EXIT_NOTFOUND, EXIT_OK, EXIT_USAGE, flip,
                      make_vm, read, util, write)
from vmctest import (POLICY, POLICY_HOME_ONLY, STATE_NAME, config_text, tree,
                     vm_key_record)

DESCRIPTOR = b"# Disk DescriptorFile\nversion=1\n"


def good_vm(ds, name, rng):
    return make_vm(ds, name, {
        f"{name}.vmx": b'displayName = "x"\n',
        f"{name}.nvram": rng.randbytes(8684),
        f"{name}-flat.vmdk": rng.randbytes(65536),
        f"{name}.vmdk": DESCRIPTOR,
        "vmware.log": b"log\n",
        "core.1234": rng.randbytes(10000),
        "empty.vmem": b"",
    })


def viol(res):
    return sorted((v["kind"], v["vm"], v["file"]) for v in res.json["violations"])


def warn(res):
    return sorted((v["kind"], v["vm"], v["file"]) for v in res.json["warnings"])


def test_scan_compliant(ds):
    rng = random.Random(11)
    good_vm(ds, "vm1", rng)
    make_vm(ds, "tpm", {"tpm.nvram": rng.randbytes(100), "tpm-flat.vmdk": rng.randbytes(9000)},
            policy=POLICY_HOME_ONLY)
    os.makedirs(ds.m("iso"))
    write(ds.m("iso/tools.iso"), rng.randbytes(5000))
    write(ds.m("core.77"), rng.randbytes(3000))   # outside VMs, encryption mode on
    ds.unmount()
    os.symlink("/etc", ds.b("vm1/link"))            # not followed
    before = tree(ds.backing)

    res = util("scan", ds.backing, config=ds.config)
    j = res.json
    assert j["compliant"] is True and j["violations"] == [] and j["warnings"] == []
    assert j["encryption_mode"] is True
    assert j["summary"] == {"vms": 2, "files": 11, "encrypted": 5, "cleartext": 6,
                            "violations": 0, "warnings": 0}
    rec = vm_key_record(ds.b("vm1") / STATE_NAME)
    tpm, vm1 = j["vms"]   # in name order
    assert (vm1["vm"], vm1["policy"], vm1["policy_disks"]) == ("vm1", "vm-encryption", True)
    assert (tpm["vm"], tpm["policy"], tpm["policy_disks"]) == ("tpm", "vm-encryption", False)
    assert vm1["key_record"]["state"] == "steady"
    assert vm1["key_record"]["current"] == {"provider": rec["current"][0],
                                            "kek_id": rec["current"][1]}
    states = {f["path"]: (f["state"], f["class"]) for f in vm1["files"]}
    assert states == {
        "vm1/core.1234": ("encrypted", "coredump"),
        "vm1/empty.vmem": ("empty", "home"),
        "vm1/vm1-flat.vmdk": ("encrypted", "disk"),
        "vm1/vm1.nvram": ("encrypted", "home"),
        "vm1/vm1.vmdk": ("cleartext", "cleartext"),
        "vm1/vm1.vmx": ("cleartext", "cleartext"),
        "vm1/vmware.log": ("cleartext", "cleartext"),
    }
    assert {f["path"]: f["state"] for f in tpm["files"]} == {
        "tpm/tpm-flat.vmdk": "cleartext", "tpm/tpm.nvram": "encrypted"}
    outside = {f["path"]: f for f in j["outside"]["files"]}
    assert set(outside) == {"core.77", "iso/tools.iso"}
    dsrec = vm_key_record(ds.b(".vmcrypt.datastore"))
    assert outside["core.77"]["keys"] == [{"slot": 0, "provider": "native",
                                           "kek_id": dsrec["current"][1], "generation": 1}]
    assert outside["iso/tools.iso"]["state"] == "cleartext"

    human = util("scan", ds.backing, config=ds.config, json_out=False)
    lines = human.out.splitlines()
    assert lines[-1] == ("summary: 2 VMs, 11 files, 5 encrypted, 6 cleartext, 0 violations, "
                         "0 warnings: compliant")
    assert "encryption mode  on" in lines
    assert "  policy        vm-encryption (home files only)" in lines
    # --verify: every key is there and every slot opens.
    assert util("scan", "--verify", ds.backing, config=ds.config).json["compliant"] is True
    assert tree(ds.backing) == before  # nothing written


def test_scan_violations(make_ds, tmp_path):
    rng = random.Random(12)
    other_key = tmp_path / "keys" / "other.key"
    extra = ('key-provider "other" {\n\ttype = "native"\n'
             f'\tkey-file = "{other_key}"\n}}\n'
             'policy "other-pol" {\n\tprovider = "other"\n\tdisks = true\n}\n')
    ds = make_ds("ds", config=config_text(tmp_path / "keys" / "default.key", extra))
    good_vm(ds, "good", rng)
    make_vm(ds, "leaky", {"leaky-flat.vmdk": rng.randbytes(20000), "leaky.vmx": b"x\n"})
    make_vm(ds, "broken", {"broken.vmx": b"x\n"})
    make_vm(ds, "foreign", {"foreign.nvram": rng.randbytes(3000)},
            policy='policy = "other-pol"\n')
    make_vm(ds, "dmg", {"a.nvram": rng.randbytes(5000), "b.nvram": rng.randbytes(5000),
                        "c.nvram": rng.randbytes(5000)})
    make_vm(ds, "conv", {"conv.nvram": rng.randbytes(100)})
    ds.unmount()
    b = ds.b
    write(b("leaky/leaky.nvram"), rng.randbytes(8684))       # cleartext, behind the daemon
    write(b("broken/vmcrypt.policy"), b'policy = "vm-encryption"\ndisks = maybe\n')
    write(b("core.999"), rng.randbytes(4000))                  # a cleartext core dump
    flip(b("dmg/a.nvram"), 230)                                # checksum
    flip(b("dmg/b.nvram"), 17)                                 # version
    os.truncate(b("dmg/c.nvram"), 100)
    write(b("conv/.vmcrypt.journal"), b"vmcryptfs-journal 1\nop encrypt\n")
    for f in ("dmg/a.nvram", "dmg/b.nvram", "dmg/c.nvram", "broken/vmcrypt.policy"):
        utiltest.corpus_add(b(f))
    # Scanned with a configuration that lacks provider "other" and its policy.
    cfg = tmp_path / "scan.conf"
    cfg.write_text(config_text(tmp_path / "keys" / "default.key"))

    res = util("scan", ds.backing, config=cfg, rc=EXIT_NONCOMPLIANT)
    assert res.json["compliant"] is False
    assert viol(res) == sorted([
        ("cleartext-coredump", None, "core.999"),
        ("cleartext-file", "leaky", "leaky/leaky.nvram"),
        ("cleartext-home", "leaky", "leaky/leaky.nvram"),
        ("policy-error", "broken", None),
        ("policy-error", "foreign", None),
        ("unknown-provider", "foreign", "foreign/.vmcrypt.state"),
        ("unknown-provider", "foreign", "foreign/foreign.nvram"),
        ("damaged-header", "dmg", "dmg/a.nvram"),
        ("unsupported-header", "dmg", "dmg/b.nvram"),
        ("damaged-header", "dmg", "dmg/c.nvram"),
    ])
    assert warn(res) == [("conversion-in-progress", "conv", "conv/.vmcrypt.journal")]
    msgs = {(v["kind"], v["file"] or v["vm"]): v["message"] for v in res.json["violations"]}
    assert msgs[("policy-error", "broken")].startswith("broken/vmcrypt.policy:2:")
    assert "policy \"other-pol\"" in msgs[("policy-error", "foreign")]
    assert "provider \"other\"" in msgs[("unknown-provider", "foreign/foreign.nvram")]
    assert msgs[("cleartext-home", "leaky/leaky.nvram")].endswith(
        "whose disk leaky/leaky-flat.vmdk is encrypted")
    assert "header checksum mismatch" in msgs[("damaged-header", "dmg/a.nvram")]
    assert "truncated: 100 of 4096" in msgs[("damaged-header", "dmg/c.nvram")]
    vms = {v["vm"]: v for v in res.json["vms"]}
    assert vms["broken"]["policy"] is None
    assert vms["broken"]["policy_error"].startswith("broken/vmcrypt.policy:2:")
    assert {f["path"]: f["state"] for f in vms["dmg"]["files"]} == {
        "dmg/a.nvram": "damaged", "dmg/b.nvram": "unsupported", "dmg/c.nvram": "damaged"}
    assert res.json["summary"]["violations"] == 10 and res.json["summary"]["warnings"] == 1

    human = util("scan", ds.backing, config=cfg, json_out=False, rc=EXIT_NONCOMPLIANT).out
    assert human.splitlines()[-1].endswith("10 violations, 1 warnings: NOT COMPLIANT")
    assert ("  VIOLATION   cleartext-file: leaky/leaky.nvram: cleartext, but the VM's policy "
            "\"vm-encryption\" encrypts home files: encrypt the VM with vmcryptfs-ctl encrypt"
            in human)
    # With the full configuration, "foreign" is fine.
    res = util("scan", ds.backing, config=ds.config, rc=EXIT_NONCOMPLIANT)
    assert not [v for v in res.json["violations"] if v["vm"] == "foreign"]


def test_scan_verify_and_rekey(make_ds, tmp_path):
    rng = random.Random(13)
    ds = make_ds("ds")
    good_vm(ds, "vm1", rng)
    ds.unmount()
    # A VM made on another host (another native primary key), copied in.
    other = make_ds("other", keydir=tmp_path / "keys2")
    make_vm(other, "alien", {"alien.nvram": rng.randbytes(500)})
    other.unmount()
    shutil.copytree(other.b("alien"), ds.b("alien"))
    res = util("scan", ds.backing, config=ds.config)
    assert res.json["compliant"] is True
    res = util("scan", "--verify", ds.backing, config=ds.config, rc=EXIT_NONCOMPLIANT)
    assert viol(res) == [("key-missing", "alien", "alien/.vmcrypt.state"),
                         ("key-missing", "alien", "alien/alien.nvram")]
    assert "made by native primary key" in res.json["violations"][0]["message"]
    shutil.rmtree(ds.b("alien"))

    # A slot whose wrapped key was altered (and its checksum made to match):
    # the header parses, but the slot does not open with its key.
    victim = ds.b("vm1/vm1.nvram")
    orig = read(victim)
    data = bytearray(orig)
    data[512 + 360] ^= 1
    data[512 + 480:1024] = hashlib.sha256(bytes(data[512:512 + 480])).digest()
    write(victim, bytes(data))
    utiltest.corpus_add(victim)
    res = util("scan", "--verify", ds.backing, config=ds.config, rc=EXIT_NONCOMPLIANT)
    assert viol(res) == [("slot-rejected", "vm1", "vm1/vm1.nvram")]
    assert util("scan", ds.backing, config=ds.config).json["compliant"] is True
    res = util("envelope", "describe", "--verify", victim, config=ds.config, rc=EXIT_KEY)
    v = res.json["files"][0]["verify"]
    assert v[0]["opens"] is False and "does not open slot 0" in v[0]["error"]
    res = util("envelope", "extract", victim, tmp_path / "x", config=ds.config, rc=EXIT_KEY)
    assert "wrong key or tampered header" in res.err and not (tmp_path / "x").exists()
    write(victim, orig)

    # An interrupted shallow rekey: a warning, still compliant; --verify opens both keys.
    utiltest.interrupted_rekey(ds, "vm1")
    res = util("scan", "--verify", ds.backing, config=ds.config)
    assert warn(res) == [("rekey-in-progress", "vm1", "vm1/.vmcrypt.state")]
    rec = vm_key_record(ds.b("vm1") / STATE_NAME)
    vm1 = res.json["vms"][0]
    assert vm1["key_record"]["state"] == "rekey"
    assert vm1["key_record"]["next"]["kek_id"] == rec["next"][1]
    assert sorted(len(f.get("keys", [])) for f in vm1["files"]) == [0, 0, 0, 0, 1, 1, 2]


def test_scan_usage(ds, tmp_path):
    ds.unmount()
    util("scan", tmp_path / "nope", config=ds.config, rc=EXIT_NOTFOUND)
    util("scan", config=ds.config, rc=EXIT_USAGE)
    res = util("scan", "--help", json_out=False)
    assert res.out.startswith("usage: vmcryptfs-util scan")
    # A configuration that does not load: one line naming the file and line.
    bad = tmp_path / "bad.conf"
    bad.write_text('key-provider "password" {\n\ttype = "native"\n}\n')
    res = util("scan", ds.backing, config=bad, rc=1)
    assert "the name is reserved" in res.err and res.err.count("\n") == 1
    assert util("scan", ds.backing, config=ds.config).rc == EXIT_OK
