# SPDX-License-Identifier: GPL-2.0-or-later
"""vmcryptfs-util keys unused with the kmip key provider, end to end.

A datastore on a real FUSE mount whose VMs get their KEKs from two
pykmip-servers (one database); one VM is deleted through the mount, so its
KEK stays on the KMS with no file using it. keys unused --provider kms must
name exactly that key, with its label; keys in-use (key records and file
headers of the remaining VMs) and PyKMIP's own view of the KMS must add up:
every key vmcryptfs made is either in use or listed as unused.

This module has its own servers and database (a pytest module each), so the
KMS holds the keys of this datastore only. Needs root and /dev/fuse.
"""
import os
import shutil
import sys
from pathlib import Path

import pytest

import kmipenv

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "util"))
import utiltest  # noqa: E402  (puts tests/integration on the path)
import vmctest  # noqa: E402
from utiltest import util  # noqa: E402
from vmctest import STATE_NAME, vm_key_record  # noqa: E402


@pytest.fixture(autouse=True)
def _need_root_and_tools():
    if os.geteuid() != 0:
        pytest.skip("mount tests run as root")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is not available")
    for p in (vmctest.DAEMON, utiltest.UTIL):
        assert p.exists(), f"{p} is not built (VMC_BUILD_DIR?)"


@pytest.fixture
def ds(tmp_path, env):
    text = kmipenv.config_text([s.addr for s in env.cluster], env.certs)
    d = vmctest.Datastore(tmp_path, "ds", config=text)
    d.mount()
    yield d
    d.close()


def kms_keys(env):
    """{uid: name} of every key on the KMS named vmcryptfs-..., by PyKMIP."""
    with env.client() as kms:
        return {uid: next(n for n in names if n.startswith("vmcryptfs-"))
                for uid, (names, state) in kms.objects().items()
                if any(n.startswith("vmcryptfs-") for n in names)}


def test_keys_unused_names_the_deleted_vms_key(env, ds):
    vms = {}
    for name in ("vm1", "vm2", "vm3"):
        utiltest.make_vm(ds, name, {f"{name}.nvram": os.urandom(8684),
                                    f"{name}-flat.vmdk": os.urandom(3 * 4096 + 100),
                                    f"{name}.vmx": f'displayName = "{name}"\n'.encode()})
        rec = vm_key_record(ds.b(name) / STATE_NAME)
        assert rec["current"][0] == "kms"
        vms[name] = (rec["current"][1], "vmcryptfs-vm-" + rec["vm_uuid"].hex())
    assert len({kek for kek, _ in vms.values()}) == 3
    # Deleting the VM through the mount removes its key record too; its KEK
    # stays on the KMS (vmcryptfs never destroys keys).
    shutil.rmtree(ds.m("vm2"))
    ds.unmount()
    assert not ds.b("vm2").exists()
    gone_kek, gone_label = vms.pop("vm2")

    res = util("keys", "unused", "--provider", "kms", ds.backing, config=ds.config)
    j = res.json
    assert j["unused"] == [{"kek_id": gone_kek, "label": gone_label}], res
    assert j["incomplete"] == []

    # What the remaining VMs' key records and file headers use, and what the
    # KMS holds: every key vmcryptfs made is in use or unused, nothing else.
    in_use = util("keys", "in-use", ds.backing, config=ds.config).json
    used = {k["kek_id"]: k for k in in_use["keys"] if k["provider"] == "kms"}
    for name, (kek, _) in vms.items():
        assert kek in used, name
        assert [(v["vm"], v["files"]) for v in used[kek]["vms"]] == [(name, 2)]
    on_kms = kms_keys(env)
    assert set(on_kms) == set(used) | {gone_kek}
    assert on_kms[gone_kek] == gone_label
    assert (j["listed"], j["in_use"]) == (len(on_kms), len(used))

    human = util("keys", "unused", "--provider", "kms", ds.backing, config=ds.config,
                 json_out=False).out.splitlines()
    assert [line.split() for line in human[:-1]] == [[gone_kek, gone_label]]
    assert human[-1] == (f"provider kms: {len(on_kms)} key(s) made by vmcryptfs, "
                         f"{len(used)} in use, 1 unused")


def test_keys_unused_with_the_kms_down(env, ds):
    """No server answers: the tool says so and exits with status 1."""
    utiltest.make_vm(ds, "vm1", {"vm1.nvram": b"n" * 100})
    ds.unmount()
    for s in env.cluster:
        s.kill()
    res = util("keys", "unused", "--provider", "kms", ds.backing, config=ds.config,
               rc=utiltest.EXIT_FAIL)
    assert 'key provider "kms"' in res.err and "Connection refused" in res.err, res
