# SPDX-License-Identifier: GPL-2.0-or-later
"""vmcryptfs-util keys in-use and keys unused on datastores made by the
daemon: the KEKs of VM key records, of the datastore record and of every
usable header slot, counted per file and VM (an interrupted shallow rekey
leaves a file depending on two keys); keys unused through a key provider
that can list its keys (the test plugin "testlist", tests/util/testkp.c),
and refused for a native provider."""
import random

import utiltest
from utiltest import EXIT_FAIL, EXIT_NOTFOUND, ctl, make_vm, util, write
from vmctest import STATE_NAME, vm_key_record

DS_RECORD = ".vmcrypt.datastore"


def keys_of(res):
    """{(provider, kek_id): (files, {vm: (files, [records])})}"""
    out = {}
    for k in res.json["keys"]:
        out[(k["provider"], k["kek_id"])] = (
            k["files"], {v["vm"]: (v["files"], v["records"]) for v in k["vms"]})
    return out


def test_keys_in_use(make_ds, tmp_path):
    rng = random.Random(21)
    ds = make_ds("ds")
    make_vm(ds, "vm1", {"a.nvram": rng.randbytes(100), "b-flat.vmdk": rng.randbytes(9000),
                        "c.vmem": rng.randbytes(10), "d.vmx": b"x\n"})
    make_vm(ds, "vm2", {"a.nvram": rng.randbytes(100), "b.vswp": rng.randbytes(5000)})
    write(ds.m("core.5"), rng.randbytes(700))
    ds.unmount()
    k1 = vm_key_record(ds.b("vm1") / STATE_NAME)["current"]
    k2 = vm_key_record(ds.b("vm2") / STATE_NAME)["current"]
    kd = vm_key_record(ds.b(DS_RECORD))["current"]
    res = util("keys", "in-use", ds.backing, config=ds.config)
    assert keys_of(res) == {
        k1: (3, {"vm1": (3, ["VM key"])}),
        k2: (2, {"vm2": (2, ["VM key"])}),
        kd: (1, {None: (1, ["datastore key"])}),
    }
    assert res.json["incomplete"] == []
    human = util("keys", "in-use", ds.backing, config=ds.config, json_out=False).out
    assert human.splitlines()[0].split() == ["PROVIDER", "KEK", "ID", "FILES", "USED", "BY"]
    assert f"native {k1[1]} 3 vm1 (3 files, VM key)" in [" ".join(l.split())
                                                         for l in human.splitlines()]
    assert "(outside VMs) (1 file, datastore key)" in human

    # Interrupted rekey of vm1: one file depends on both keys, the record names both.
    utiltest.interrupted_rekey(ds, "vm1")
    new = vm_key_record(ds.b("vm1") / STATE_NAME)["next"]
    utiltest.flip(ds.b("vm2/b.vswp"), 230)    # its keys are unknown now
    res = util("keys", "in-use", ds.backing, config=ds.config)
    got = keys_of(res)
    assert got[k1] == (3, {"vm1": (3, ["VM key"])})
    assert got[new] == (1, {"vm1": (1, ["next VM key"])})
    assert got[k2] == (1, {"vm2": (1, ["VM key"])})
    assert [(i["file"], i["datastore"]) for i in res.json["incomplete"]] == \
        [("vm2/b.vswp", str(ds.backing))]
    assert "vm2/b.vswp: keys unknown" in res.err

    # Several datastores: uses are told apart by datastore.
    other = make_ds("other")
    make_vm(other, "vm9", {"x.nvram": b"1" * 50})
    other.unmount()
    k9 = vm_key_record(other.b("vm9") / STATE_NAME)["current"]
    res = util("keys", "in-use", ds.backing, other.backing, config=ds.config)
    assert keys_of(res)[k9] == (1, {"vm9": (1, ["VM key"])})
    assert [v["datastore"] for v in res.json["keys"][0]["vms"]] != []
    human = util("keys", "in-use", ds.backing, other.backing, config=ds.config,
                 json_out=False).out
    assert f"{other.backing}:vm9 (1 file, VM key)" in human
    util("keys", "in-use", tmp_path / "nope", config=ds.config, rc=EXIT_NOTFOUND)


def test_keys_unused(make_ds, tmp_path):
    rng = random.Random(22)
    keydir = tmp_path / "tlkeys"
    keydir.mkdir(mode=0o700)
    cfg = ('key-provider "tl" {\n\ttype = "testlist"\n'
           f'\tkey-dir = "{keydir}"\n}}\n'
           'policy "vm-encryption" {\n\tprovider = "tl"\n\tdisks = true\n}\n')
    ds = make_ds("ds", config=cfg)
    make_vm(ds, "vm1", {"a.nvram": rng.randbytes(100)})
    make_vm(ds, "vm2", {"a.nvram": rng.randbytes(100)})
    old = vm_key_record(ds.b("vm1") / STATE_NAME)["current"]
    ctl(ds.mnt, "rekey", "vm1")                     # a finished shallow rekey
    ds.unmount()
    new = vm_key_record(ds.b("vm1") / STATE_NAME)["current"]
    assert new != old and old[0] == "tl"
    # Keys on the provider that no datastore uses: one made by vmcryptfs (its
    # label says so), one made by someone else (not ours to list).
    write(keydir / "tl-stale", b"s" * 32)
    write(keydir / "tl-stale.label", b"vmcryptfs-vm-00000000000000000000000000000000")
    write(keydir / "tl-foreign", b"f" * 32)
    write(keydir / "tl-foreign.label", b"backup-app-key")

    res = util("keys", "unused", "--provider", "tl", ds.backing, config=ds.config)
    j = res.json
    assert sorted(k["kek_id"] for k in j["unused"]) == sorted([old[1], "tl-stale"])
    labels = {k["kek_id"]: k["label"] for k in j["unused"]}
    assert labels["tl-stale"] == "vmcryptfs-vm-00000000000000000000000000000000"
    assert labels[old[1]].startswith("vmcryptfs-vm-")
    # vm1 (new key), vm2, the datastore key: in use; the old vm1 key and the stale one: not.
    assert (j["listed"], j["in_use"]) == (5, 3)
    human = util("keys", "unused", "--provider", "tl", ds.backing, config=ds.config,
                 json_out=False).out
    assert human.splitlines()[-1] == \
        "provider tl: 5 key(s) made by vmcryptfs, 3 in use, 2 unused"
    util("keys", "unused", "--provider", "nope", ds.backing, config=ds.config,
         rc=EXIT_NOTFOUND)


def test_keys_unused_native(ds):
    make_vm(ds, "vm1", {"a.nvram": b"x" * 100})
    ds.unmount()
    res = util("keys", "unused", "--provider", "native", ds.backing, config=ds.config,
               rc=EXIT_FAIL)
    assert "not supported for native providers" in res.err
