# SPDX-License-Identifier: GPL-2.0-or-later
"""Roles and privileges with real users and groups (issue 4). The test
creates (and always deletes) three users and two groups:

    A  in group vmcops-*   granted NoCryptoAdmin (System.View only)
    B  a user grant        custom role "EncryptOnly": Encrypt, EncryptNew, System.View
    C  a user grant        custom role "PolicyKeeper": ManageEncryptionPolicy, Decrypt,
                           System.View
    all three in vmcsock-* (the control socket-group), root granted Administrator

The datastore is mounted with allow_other under a 0755 directory of /tmp. The
control verbs and file accesses run as those users. Checked: A lists VMs and
uses cleartext files but gets EACCES on an encrypted disk's plaintext and exit 3
on decrypt; B encrypts but may not decrypt; creating vmcrypt.policy needs
EncryptNew, changing it ManageEncryptionPolicy, removing it Decrypt; every
refusal is an audit event (result error, errno 13, the user's uid and name).
And root is not special: without a grant, it is refused too."""
import json
import os
import pwd
import grp
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import vmctest
from vmctest import (EXIT_OK, EXIT_PERM, assert_encrypted, audit_events, ctl, is_encrypted,
                     read, run, wait_for, write)

ACCESS = r"""
import json, os, sys
op, path = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else b""
try:
    if op == "read":
        with open(path, "rb") as f:
            f.read()
    elif op == "append":
        with open(path, "ab") as f:
            f.write(data)
    elif op == "rewrite":
        with open(path, "r+b") as f:
            f.write(data)
    elif op == "create":
        with open(path, "xb") as f:
            f.write(data)
    elif op == "unlink":
        os.unlink(path)
    elif op == "rename":
        os.rename(path, sys.argv[3])
    print(0)
except OSError as e:
    print(e.errno)
"""


class Users:
    def __init__(self):
        sfx = secrets.token_hex(3)
        self.ops = f"vmcops-{sfx}"
        self.sock = f"vmcsock-{sfx}"
        self.a, self.b, self.c = f"vmca{sfx}", f"vmcb{sfx}", f"vmcc{sfx}"
        self.made_users, self.made_groups = [], []

    def create(self):
        for g in (self.ops, self.sock):
            run(["groupadd", g])
            self.made_groups.append(g)
        for u, groups in ((self.a, f"{self.ops},{self.sock}"), (self.b, self.sock),
                          (self.c, self.sock)):
            run(["useradd", "-M", "-N", "-d", "/nonexistent", "-s", "/usr/sbin/nologin",
                 "-G", groups, u])
            self.made_users.append(u)

    def delete(self):
        for u in self.made_users:
            subprocess.run(["userdel", u], capture_output=True)
        for g in self.made_groups:
            subprocess.run(["groupdel", g], capture_output=True)

    def creds(self, name):
        pw = pwd.getpwnam(name)
        return dict(user=pw.pw_uid, group=pw.pw_gid,
                    extra_groups=os.getgrouplist(name, pw.pw_gid))

    def uid(self, name):
        return pwd.getpwnam(name).pw_uid


@pytest.fixture
def users():
    for tool in ("useradd", "groupadd", "userdel", "groupdel"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not available")
    u = Users()
    try:
        u.create()
        yield u
    finally:
        u.delete()


@pytest.fixture
def top():
    d = Path(tempfile.mkdtemp(prefix="vmc-priv-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def config(top, u, root_grant=True):
    return vmctest.ctl_config_text(top / "keys" / "default.key", top / "audit.jsonl", f"""
role "EncryptOnly" {{
\tprivileges = {{"Cryptographer.Encrypt", "Cryptographer.EncryptNew", "System.View"}}
}}
role "PolicyKeeper" {{
\tprivileges = {{"Cryptographer.ManageEncryptionPolicy", "Cryptographer.Decrypt", "System.View"}}
}}
{'grant { user = "root" roles = {"Administrator"} }' if root_grant else ''}
grant {{
\tgroup = "{u.ops}"
\troles = {{"NoCryptoAdmin"}}
}}
grant {{
\tuser = "{u.b}"
\troles = {{"EncryptOnly"}}
}}
grant {{
\tuser = "{u.c}"
\troles = {{"PolicyKeeper"}}
}}
control {{
\tsocket-group = "{u.sock}"
}}
""")


def test_privileges_of_real_users(users, top):
    u = users
    ds = vmctest.Datastore(top, "ds", config=config(top, u), keydir=top / "keys",
                           options=["allow_other"])
    ds.backing.chmod(0o777)
    ds.mount()
    refusals = []                        # (user, op, what) expected in the audit log
    ctl_refusals = []                    # (user, verb, VM) refused on the control socket

    def as_user(name, op, path, *extra):
        p = subprocess.run([sys.executable, "-c", ACCESS, op, str(path), *map(str, extra)],
                           capture_output=True, text=True, timeout=60, **u.creds(name))
        assert p.returncode == 0, p.stderr
        return int(p.stdout.strip())

    def uctl(name, *args, rc=EXIT_OK):
        return ctl(ds.mnt, *args, rc=rc, **u.creds(name))

    try:
        # root prepares: vm1 encrypted, vm2 cleartext; everything world-writable
        # so that only privileges (not modes) decide.
        disk = os.urandom(1 << 20)
        ref = {}
        for vm in ("vm1", "vm2"):
            d = ds.m(vm)
            d.mkdir()
            d.chmod(0o777)
            for f, data in {f"{vm}-flat.vmdk": disk, f"{vm}.nvram": os.urandom(9000),
                            f"{vm}.vmx": b'displayName = "x"\n', "vmware.log": b"log\n"}.items():
                write(d / f, data)
                (d / f).chmod(0o666)
                ref[f"{vm}/{f}"] = data
        ds.ctl("encrypt", ds.m("vm1"))
        ds.ctl("status")
        sock = ds.ctl("status").json["datastore"]["control_socket"]
        st = os.stat(sock)
        assert (st.st_mode & 0o777) == 0o660 and st.st_gid == grp.getgrnam(u.sock).gr_gid

        # --- A: NoCryptoAdmin ----------------------------------------------------
        r = uctl(u.a, "status")
        assert {v["vm"] for v in r.json["vms"]} == {"vm1"}
        assert "health" not in r.json["datastore"]["providers"][0]   # no ReadKeyServersInfo
        assert as_user(u.a, "read", ds.m("vm1/vm1.vmx")) == 0
        assert as_user(u.a, "append", ds.m("vm1/vm1.vmx"), 'powerState = "on"\n') == 0
        assert as_user(u.a, "read", ds.m("vm1/vmware.log")) == 0
        assert as_user(u.a, "append", ds.m("vm1/vmware.log"), "powered on by A\n") == 0
        assert read(ds.m("vm1/vm1.vmx")).endswith(b'powerState = "on"\n')
        assert as_user(u.a, "read", ds.m("vm2/vm2-flat.vmdk")) == 0     # cleartext VM
        for f in ("vm1-flat.vmdk", "vm1.nvram"):
            assert as_user(u.a, "read", ds.m("vm1") / f) == 13, f
            refusals.append((u.a, "open", f"vm1/{f}"))
        assert as_user(u.a, "rewrite", ds.m("vm1/vm1-flat.vmdk"), "x") == 13
        refusals.append((u.a, "open", "vm1/vm1-flat.vmdk"))
        # A new disk in the encrypted VM would be plaintext A could write: refused.
        assert as_user(u.a, "create", ds.m("vm1/new-flat.vmdk"), "y" * 5000) == 13
        refusals.append((u.a, "create", "vm1/new-flat.vmdk"))
        for verb in (["decrypt", ds.m("vm1")], ["encrypt", ds.m("vm2")], ["rekey", ds.m("vm1")],
                     ["lock", ds.m("vm1")], ["provider", "list"]):
            r = uctl(u.a, *verb, rc=EXIT_PERM)
            assert r.json["errno"] == 13 and "permission denied" in r.json["message"], r
            refusals.append((u.a, {"provider": "provider-list"}.get(verb[0], verb[0]), None))
            if verb[0] != "provider":
                ctl_refusals.append((u.a, verb[0], Path(verb[1]).name))
        d = ds.m("newA")
        d.mkdir()
        d.chmod(0o777)
        assert as_user(u.a, "create", d / "vmcrypt.policy", 'policy = "vm-encryption"\n') == 13
        refusals.append((u.a, "policy-create", "newA/vmcrypt.policy"))
        assert not (ds.b("newA") / "vmcrypt.policy").exists()

        # --- B: may encrypt, may not decrypt ------------------------------------
        r = uctl(u.b, "encrypt", ds.m("vm2")).json
        assert r["failed"] == 0
        assert_encrypted(ds.b("vm2/vm2-flat.vmdk"), disk)
        assert read(ds.m("vm2/vm2-flat.vmdk")) == disk                    # root still reads
        r = uctl(u.b, "decrypt", ds.m("vm2"), rc=EXIT_PERM)
        refusals.append((u.b, "decrypt", None))
        ctl_refusals.append((u.b, "decrypt", "vm2"))
        assert is_encrypted(ds.b("vm2/vm2-flat.vmdk"))
        assert as_user(u.b, "read", ds.m("vm2/vm2-flat.vmdk")) == 13      # no Cryptographer.Access
        refusals.append((u.b, "open", "vm2/vm2-flat.vmdk"))
        d = ds.m("newB")
        d.mkdir()
        d.chmod(0o777)
        assert as_user(u.b, "create", d / "vmcrypt.policy", 'policy = "vm-encryption"\n') == 0
        assert (ds.b("newB") / "vmcrypt.policy").read_text() == 'policy = "vm-encryption"\n'
        (ds.b("newB") / "vmcrypt.policy").chmod(0o666)
        assert as_user(u.b, "rewrite", d / "vmcrypt.policy", "#") == 13   # a change
        refusals.append((u.b, "policy-change", "newB/vmcrypt.policy"))
        assert as_user(u.b, "unlink", d / "vmcrypt.policy") == 13         # a removal
        refusals.append((u.b, "policy-remove", "newB/vmcrypt.policy"))
        assert as_user(u.b, "rename", d / "vmcrypt.policy", d / "old.policy") == 13
        refusals.append((u.b, "policy-remove", "newB/vmcrypt.policy"))
        assert (ds.b("newB") / "vmcrypt.policy").read_text() == 'policy = "vm-encryption"\n'

        # --- C: may change and remove a policy, may not create one ------------
        d = ds.m("newC")
        d.mkdir()
        d.chmod(0o777)
        assert as_user(u.c, "create", d / "vmcrypt.policy", 'policy = "vm-encryption"\n') == 13
        refusals.append((u.c, "policy-create", "newC/vmcrypt.policy"))
        assert as_user(u.c, "append", ds.m("newB/vmcrypt.policy"), "disks = false\n") == 0
        assert "disks = false" in (ds.b("newB") / "vmcrypt.policy").read_text()
        assert as_user(u.c, "unlink", ds.m("newB/vmcrypt.policy")) == 0
        assert not (ds.b("newB") / "vmcrypt.policy").exists()
        r = uctl(u.c, "encrypt", ds.m("newB"), rc=EXIT_PERM)
        refusals.append((u.c, "encrypt", None))
        ctl_refusals.append((u.c, "encrypt", "newB"))
        r = uctl(u.c, "decrypt", ds.m("vm2")).json                       # Decrypt: allowed
        assert r["failed"] == 0
        assert read(ds.b("vm2/vm2-flat.vmdk")) == disk

        # Everything root made is intact.
        for rel, data in ref.items():
            if rel != "vm1/vm1.vmx" and rel != "vm1/vmware.log":
                assert read(ds.m(rel)) == data, rel

        # --- every refusal is an audit event ------------------------------------
        def matches(ev, who, op, path):
            return (ev["result"] == "error" and ev.get("errno") == 13 and ev["op"] == op and
                    ev["user"] == {"uid": u.uid(who), "name": who} and
                    (path is None or ev.get("file", "").endswith(path)))
        def unmatched():
            e = audit_events(top / "audit.jsonl")
            return [r for r in refusals if not any(matches(x, *r) for x in e)]
        try:
            wait_for(lambda: not unmatched(), timeout=5, interval=0.2)
        except AssertionError:
            raise AssertionError("refusals without an audit event (user, op, file):\n  " +
                                 "\n  ".join(map(str, unmatched())) + "\nrefusal events:\n  " +
                                 "\n  ".join(json.dumps(e) for e in audit_events(
                                     top / "audit.jsonl") if e["result"] == "error")) from None
        evs = audit_events(top / "audit.jsonl")
        for ev in evs:
            if ev["result"] == "error":
                assert ev["errno"] == 13 and ev.get("error") == os.strerror(13), ev
                assert "privilege" in ev.get("detail", ""), ev
        # Nobody was refused something that was allowed.
        allowed_uids = {0}
        assert not [e for e in evs if e["result"] == "error" and e["user"]["uid"] in allowed_uids]
        # A refused verb's event says which VM it was refused on.
        novm = [(who, op, vm) for who, op, vm in ctl_refusals
                if not any(e["op"] == op and e["user"]["uid"] == u.uid(who) and
                           e["result"] == "error" and e.get("vm") == vm for e in evs)]
        assert not novm, f"refusals on the control socket whose event does not name the VM: {novm}"
    finally:
        if ds.mounted:
            ds.unmount()
        ds.check_log()


def test_root_is_not_special_without_a_grant(users, top):
    u = users
    ds = vmctest.Datastore(top, "ds", keydir=top / "keys", options=["allow_other"],
                           config=vmctest.ctl_config_text(top / "keys" / "default.key",
                                                          top / "audit.jsonl"))
    try:
        # No grant at all: root is Administrator.
        ds.mount()
        vm = ds.make_vm("vm1")
        data = os.urandom(50000)
        write(vm / "vm1.nvram", data)
        ds.ctl("status")
        ds.unmount()
        # Grants that do not name root: root gets nothing.
        ds.config.write_text(config(top, u, root_grant=False))
        ds.mount()
        r = ds.ctl("status", rc=EXIT_PERM)
        assert r.json["errno"] == 13, r
        assert vmctest.open_errno(ds.m("vm1/vm1.nvram"), os.O_RDONLY) == 13
        ds.ctl("decrypt", ds.m("vm1"), rc=EXIT_PERM)
        assert as_root_events(top, "status")
        ds.unmount()
        ds.config.write_text(config(top, u, root_grant=True))
        ds.mount()
        assert read(ds.m("vm1/vm1.nvram")) == data
    finally:
        if ds.mounted:
            ds.unmount()
        ds.check_log()


def as_root_events(top, op):
    return wait_for(lambda: [e for e in audit_events(top / "audit.jsonl")
                             if e["op"] == op and e["user"]["uid"] == 0 and
                             e["result"] == "error" and e["errno"] == 13],
                    what=f"root's refused {op} in the audit log")
