# SPDX-License-Identifier: GPL-2.0-or-later
"""Audit events (issue 4): every operation is an event in the JSON-lines audit
log with time, user (uid and name), operation, VM, key provider, key ids, what
changed from and to, and the result (errno and error on failure); never key
material -- the KEKs, wrap keys, data keys and primary keys are derived
independently (as test_independent.py does) and looked for in every form in
the audit trail. The same events go to local syslog and to remote syslog
targets over UDP and TCP in RFC 5424 format (octet counting on TCP), checked
with listeners on loopback; dead remote targets neither slow nor break
operations."""
import base64
import json
import os
import random
import re
import socket
import threading
import time

import pytest

import vmctest
from vmctest import (EXIT_BUSY, STATE_NAME, audit_events, ctl_ds, header_slots, read,
                     vm_key_record, wait_for, write)

MiB = 1 << 20
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
RFC5424 = re.compile(rb"^<(\d{1,3})>1 (\S+) (\S+) vmcryptfs (\d+) audit - (.*)$", re.S)
LOG_AUTHPRIV = 10 << 3
SECOND = """key-provider "native2" {{
\ttype = "native"
\tkey-file = "{keyfile}"
}}
policy "gold" {{
\tprovider = "native2"
}}
"""

# Fields each operation's event must carry (besides time, datastore, user,
# op and result).
REQUIRED = {
    "policy-create": ("vm",),         # "to" (vmcryptfs-ctl) or "file" (the mount)
    "encrypt-new": ("vm", "provider", "key_to", "from", "to"),
    "encryption-mode": ("from", "to"),
    "encrypt": ("vm", "provider", "key_to", "from", "to"),
    "rekey": ("vm", "provider", "key_from", "key_to", "from", "to"),
    "rekey-deep": ("vm", "provider", "key_from", "key_to", "from", "to"),
    "lock": ("vm", "provider", "key_from", "from", "to"),
    "unlock": ("vm", "provider", "key_from", "from", "to"),
    "decrypt": ("vm", "provider", "key_from", "from", "to"),
    "provider-create-native": ("provider", "to"),
    "provider-backup": ("provider",),
    "provider-restore": ("provider", "to"),
    "policy-change": ("vm", "file"),
    "policy-remove": ("vm", "file"),
}


def check_common(ev):
    assert ISO.match(ev.get("time", "")), ev
    assert isinstance(ev.get("user"), dict) and isinstance(ev["user"].get("uid"), int) and \
        isinstance(ev["user"].get("name"), str), ev
    assert ev.get("op") and ev.get("result") in ("ok", "error"), ev
    if ev["result"] == "error":
        assert isinstance(ev.get("errno"), int) and ev["errno"] > 0 and \
            ev.get("error") == os.strerror(ev["errno"]), ev
    else:
        assert "errno" not in ev and "error" not in ev, ev


class DevLog:
    """A local syslog receiver on /dev/log (only when the machine has none)."""

    def __init__(self):
        self.msgs = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("/dev/log")
        self.sock.settimeout(0.2)
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop:
            try:
                self.msgs.append(self.sock.recv(65536))
            except socket.timeout:
                pass
            except OSError:
                return

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()
        os.unlink("/dev/log")


@pytest.fixture
def devlog():
    if os.path.lexists("/dev/log"):
        yield None              # a real syslog: do not take its place
        return
    d = DevLog()
    try:
        yield d
    finally:
        d.close()


def test_audit_events_fields_and_no_key_material(make_ds, tmp_path, devlog):
    keys2 = tmp_path / "keys2" / "default.key"
    ds = ctl_ds(make_ds, tmp_path, extra=SECOND.format(keyfile=keys2), syslog=True)
    rng = random.Random(51)
    # Through the mount: a policy file made, a first encrypted file.
    vm1 = ds.make_vm("vm1")
    write(vm1 / "vm1.nvram", rng.randbytes(9000))
    # The control verbs.
    vm2 = ds.m("vm2")
    vm2.mkdir()
    files = {"vm2-flat.vmdk": rng.randbytes(2 * MiB), "vm2.nvram": rng.randbytes(5000),
             "vm2.vmx": b"config\n"}
    for f, data in files.items():
        write(vm2 / f, data)
    with open(vm2 / "vm2.vmx", "rb"):
        ds.ctl("encrypt", vm2, rc=EXIT_BUSY)           # a failed encrypt
    ds.ctl("encrypt", vm2)
    ds.ctl("rekey", vm2)
    ds.ctl("rekey", "--to-provider", "native2", vm2)
    ds.ctl("rekey", "--deep", vm2)
    ds.ctl("lock", vm2)
    ds.ctl("unlock", vm2)
    ds.ctl("encryption-mode", "off", rc=EXIT_BUSY)    # refused: encrypted VMs remain
    ds.ctl("provider", "create-native", "native2")
    pw = tmp_path / "pw"
    password = "audit-test password 7fd1c2"
    pw.write_text(password + "\n")
    ds.ctl("provider", "backup", "native", "--out", tmp_path / "b", "--password-file", pw)
    ds.ctl("provider", "restore", tmp_path / "b", "--password-file", pw)
    # A policy changed and one removed through the mount.
    (vm1 / "vmcrypt.policy").write_text('policy = "vm-encryption"\n# reviewed\n')
    vm3 = ds.make_vm("vm3")
    os.unlink(vm3 / "vmcrypt.policy")
    # Key material to look for later: every data key of vm1 and vm2 as it is now.
    deks_before_decrypt = collect_deks(ds, tmp_path, ["vm1", "vm2"])
    ds.ctl("decrypt", vm2)

    expected = ["policy-create", "encrypt-new", "encryption-mode", "encrypt", "rekey",
                "rekey-deep", "lock", "unlock", "decrypt", "provider-create-native",
                "provider-backup", "provider-restore", "policy-change", "policy-remove"]
    evs = wait_for(lambda: (lambda e: e if {x["op"] for x in e} >= set(expected) - {
        "policy-change"} and any(x["op"] == "decrypt" for x in e) else None)(
        audit_events(ds.audit_log)), what="the events in the audit log")
    time.sleep(0.3)
    evs = audit_events(ds.audit_log)
    for ev in evs:
        check_common(ev)
        assert ev["user"] == {"uid": 0, "name": "root"}, ev
        assert ev["datastore"] == str(ds.backing), ev
    ops = {}
    for ev in evs:
        ops.setdefault(ev["op"], []).append(ev)
    missing = [op for op in expected if op not in ops]
    problems = []
    for op, evl in ops.items():
        for ev in evl:
            lacking = [k for k in REQUIRED.get(op, ()) if not ev.get(k)]
            if lacking and ev["result"] == "ok":
                problems.append(f"{op}: no {lacking}: {ev}")

    def one(op, **match):
        got = [e for e in ops.get(op, []) if all(e.get(k) == v for k, v in match.items())]
        assert got, f"no {op} event with {match}; {op} events: {ops.get(op)}"
        return got[-1]

    rec = vm_key_record(ds.b("vm1") / STATE_NAME)
    one("policy-create", vm="vm1", result="ok")
    one("encrypt-new", vm="vm1", key_to=rec["current"][1], provider="native", result="ok")
    one("encryption-mode", **{"from": "off", "to": "on", "result": "ok"})
    e = one("encrypt", vm="vm2", result="error")
    assert e["errno"] == 16 and "open" in e.get("detail", ""), e
    e = one("encrypt", vm="vm2", result="ok")
    assert e["from"] == "cleartext" and e["to"] == "vm-encryption" and e["provider"] == "native"
    rk = [x for x in ops["rekey"] if x["vm"] == "vm2" and x["result"] == "ok"]
    assert len(rk) == 2 and rk[0]["key_to"] == rk[1]["key_from"], rk
    assert rk[1]["from"] == "native" and rk[1]["to"] == "native2" and \
        rk[1]["provider"] == "native2", rk[1]
    deep = one("rekey-deep", vm="vm2", result="ok")
    assert deep["key_from"] == rk[1]["key_to"] and deep["key_to"] != deep["key_from"]
    lk = one("lock", vm="vm2", result="ok")
    assert lk["key_from"] == deep["key_to"] and (lk["from"], lk["to"]) == ("unlocked", "locked")
    ul = one("unlock", vm="vm2", result="ok")
    assert (ul["from"], ul["to"]) == ("locked", "unlocked")
    e = one("encryption-mode", result="error")
    assert e["errno"] == 16 and (e["from"], e["to"]) == ("on", "off"), e
    dec = one("decrypt", vm="vm2", result="ok")
    assert dec["key_from"] == deep["key_to"] and dec["provider"] == "native2"
    assert (dec["from"], dec["to"]) == ("encrypted", "cleartext")
    one("provider-create-native", provider="native2", to="existing", result="ok")
    one("provider-backup", provider="native", result="ok")
    one("provider-restore", provider="native", result="ok")
    one("policy-remove", vm="vm3", result="ok")

    # Never key material: KEKs, wrap and check keys, data keys, primary keys,
    # the backup password -- raw, hex, base64 -- in the audit log, in syslog,
    # in the daemon's log, in the events verb's output.
    secrets = secrets_of(ds, tmp_path, evs) + deks_before_decrypt
    places = {"audit log": read(ds.audit_log), "daemon log": read(ds.log_path),
              "events verb": ds.ctl("events").out.encode()}
    if devlog is not None:
        mine = [m for m in devlog.msgs if str(ds.backing).replace("/", "\\/").encode() in m]
        assert len(mine) >= len(evs), f"local syslog got {len(mine)} of {len(evs)} events"
        for ev in evs[:3]:
            assert any(json.dumps(ev, separators=(",", ":")).replace("/", "\\/").encode()
                       in m for m in mine) or any(ev["time"].encode() in m for m in mine)
        assert all(b"audit: {" in m for m in mine)
        places["local syslog"] = b"\n".join(mine)
    for where, hay in places.items():
        assert password.encode() not in hay, f"the backup password is in the {where}"
        for name, s in secrets:
            for form in (s, s.hex().encode(), s.hex().upper().encode(), base64.b64encode(s),
                         base64.b64encode(s).rstrip(b"=")):
                assert form not in hay, f"{name} found in the {where}"
    assert not problems, "events lacking fields:\n" + "\n".join(problems)
    # Last: an edit of a policy file through the mount is a policy change.
    assert not missing, f"operations without an event: {missing}"


def primary_keys(tmp_path):
    """{primary key id (hex): key file} for the test's native providers."""
    out = {}
    for kf in (tmp_path / "keys" / "default.key", tmp_path / "keys2" / "default.key"):
        if kf.exists():
            out[read(kf)[24:40].hex()] = kf
    return out


def kek_of(tmp_path, kek_id):
    ti = pytest.importorskip("test_independent")
    kf = primary_keys(tmp_path)[kek_id.split(".")[1]]
    return ti.native_kek(kf, kek_id)


def collect_deks(ds, tmp_path, vms):
    ti = pytest.importorskip("test_independent")
    out = []
    for vm in vms:
        for p in ds.b(vm).iterdir():
            if p.is_file() and vmctest.is_encrypted(p):
                s = header_slots(p)[0]
                dek, _, _ = ti.unwrap_dek(p, kek_of(tmp_path, s["kek_id"]))
                out += [(f"data key of {p.name}", dek), (f"K1 of {p.name}", dek[:32]),
                        (f"K2 of {p.name}", dek[32:])]
    return out


def secrets_of(ds, tmp_path, evs):
    ti = pytest.importorskip("test_independent")
    ids = set()
    for ev in evs:
        for k in ("key_from", "key_to"):
            if ev.get(k, "").startswith("nkp1."):
                ids.add(ev[k])
    recs = [p for p in ds.backing.rglob(".vmcrypt.*")
            if p.name in (STATE_NAME, vmctest.DATASTORE_NAME) and p.is_file()]
    assert recs
    for rec in recs:
        r = vm_key_record(rec)
        for ref in (r["current"], r["next"]):
            if ref:
                ids.add(ref[1])
    assert ids
    out = []
    for kid in ids:
        kek = kek_of(tmp_path, kid)
        out += [(f"KEK {kid}", kek), (f"wrap key of {kid}", ti.hkdf(kek, b"vmcryptfs/v1/dek-wrap")),
                (f"check key of {kid}", ti.hkdf(kek, b"vmcryptfs/v1/key-check"))]
    for pid, kf in primary_keys(tmp_path).items():
        out.append((f"primary key {pid}", read(kf)[40:72]))
    return out


# --- remote syslog --------------------------------------------------------------

class Listener:
    """Loopback syslog receivers: UDP datagrams and TCP octet-counted frames."""

    def __init__(self):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.2)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(4)
        self.tcp.settimeout(0.2)
        self.udp_msgs, self.tcp_bytes, self.tcp_conns = [], bytearray(), 0
        self.stop = False
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._udp, self._tcp)]
        for t in self.threads:
            t.start()

    @property
    def udp_url(self):
        return f"udp://127.0.0.1:{self.udp.getsockname()[1]}"

    @property
    def tcp_url(self):
        return f"tcp://127.0.0.1:{self.tcp.getsockname()[1]}"

    def _udp(self):
        while not self.stop:
            try:
                self.udp_msgs.append(self.udp.recv(65536))
            except socket.timeout:
                pass

    def _tcp(self):
        while not self.stop:
            try:
                c, _ = self.tcp.accept()
            except socket.timeout:
                continue
            self.tcp_conns += 1
            c.settimeout(0.2)
            while not self.stop:
                try:
                    d = c.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    break
                self.tcp_bytes += d
            c.close()

    def tcp_msgs(self):
        """Split the TCP stream into RFC 6587 octet-counted frames."""
        out, b = [], bytes(self.tcp_bytes)
        while b:
            m = re.match(rb"^(\d+) ", b)
            assert m, f"TCP stream is not octet-counted at {b[:60]!r}"
            n = int(m.group(1))
            frame = b[m.end():m.end() + n]
            if len(frame) < n:
                break                   # the rest is still coming
            out.append(frame)
            b = b[m.end() + n:]
        return out

    def close(self):
        self.stop = True
        for t in self.threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def parse_5424(msg, pid):
    m = RFC5424.match(msg)
    assert m, f"not an RFC 5424 message: {msg[:120]!r}"
    pri, ts, host, procid, body = m.groups()
    assert ISO.match(ts.decode()) or re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", ts.decode()), ts
    assert host.decode() == socket.gethostname(), host
    assert int(procid) == pid, (procid, pid)
    return int(pri), body


def test_remote_syslog_udp_and_tcp(make_ds, tmp_path, listener):
    ds = ctl_ds(make_ds, tmp_path, remotes=[listener.udp_url, listener.tcp_url])
    vm = ds.m("vm1")
    vm.mkdir()
    write(vm / "vm1-flat.vmdk", os.urandom(MiB))
    ds.ctl("encrypt", vm)
    ds.ctl("rekey", vm)
    ds.ctl("encryption-mode", "off", rc=EXIT_BUSY)    # an error event too
    lines = wait_for(lambda: (lambda l: l if len(l) >= 6 else None)(
        [x for x in read(ds.audit_log).splitlines() if x.strip()]), what="the audit log")
    n = len(lines)
    wait_for(lambda: len(listener.udp_msgs) >= n and len(listener.tcp_msgs()) >= n, timeout=10,
             what=f"{n} events at both remote syslog listeners")
    time.sleep(0.3)
    udp, tcp = listener.udp_msgs, listener.tcp_msgs()
    assert len(udp) == n and len(tcp) == n, (len(udp), len(tcp), n)
    for proto, msgs in (("udp", udp), ("tcp", tcp)):
        for msg, line in zip(msgs, lines):
            pri, body = parse_5424(msg, ds.proc.pid)
            ev = json.loads(line)
            assert body == line, f"{proto}: the message is not the audit log's JSON line"
            assert pri == LOG_AUTHPRIV | (4 if ev["result"] == "error" else 5), (proto, pri, ev)
    assert listener.tcp_conns == 1, "one TCP connection for every event"


def test_dead_remote_targets(make_ds, tmp_path, listener):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()                       # nothing listens there now
    remotes = [f"tcp://127.0.0.1:{dead_port}", "tcp://192.0.2.1:6514", listener.udp_url]
    ds = ctl_ds(make_ds, tmp_path, remotes=remotes)
    vm = ds.m("vm1")
    vm.mkdir()
    write(vm / "vm1.nvram", os.urandom(20000))
    times = []
    for args in (("encrypt", vm), ("rekey", vm), ("lock", vm), ("unlock", vm), ("rekey", vm),
                 ("rekey", vm), ("status",), ("rekey", vm)):
        t0 = time.monotonic()
        ds.ctl(*args)
        times.append(time.monotonic() - t0)
    # Were an operation to wait for a dead target (a 2 s connect time-out
    # each), these 8 would take 16 s or more.
    assert sum(times) < 8 and max(times) < 4, f"operations slowed by dead syslog targets: {times}"
    assert read(vm / "vm1.nvram")
    evs = wait_for(lambda: (lambda e: e if sum(x["op"] == "rekey" for x in e) >= 4 else None)(
        audit_events(ds.audit_log)), timeout=15, what="every event in the audit log")
    wait_for(lambda: len(listener.udp_msgs) >= len(evs), timeout=15,
             what="the live UDP target to get every event")
    assert ds.proc.poll() is None


def test_audit_log_stays_json_with_odd_names(make_ds, tmp_path):
    """File and directory names are bytes: a VM whose name is not UTF-8, or
    holds quotes, newlines or control characters, still gives one valid JSON
    line (UTF-8, RFC 8259) per event, and the events verb still works."""
    ds = ctl_ds(make_ds, tmp_path)
    names = [b"vm-quote\"-back\\slash", b"vm-new\nline-tab\t", b"vm-\xff\xfe-latin1-\xe9"]
    for n in names:
        d = os.path.join(os.fsencode(ds.mnt), n)
        os.mkdir(d)
        with open(os.path.join(d, b"vmcrypt.policy"), "w") as f:
            f.write('policy = "vm-encryption"\n')
        with open(os.path.join(d, b"x.nvram"), "wb") as f:
            f.write(b"z" * 5000)
    wait_for(lambda: sum(1 for l in read(ds.audit_log).splitlines() if b"encrypt-new" in l)
             >= len(names), what="the events")
    raw = read(ds.audit_log).splitlines()
    bad = []
    for line in raw:
        try:
            json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            bad.append(f"{line[:120]!r}: {e}")
    assert not bad, "audit log lines that are not valid JSON:\n" + "\n".join(bad)
    r = ds.ctl("events", rc=None)
    assert r.rc == 0, r


def test_at_most_three_remote_targets(make_ds, tmp_path):
    ds = ctl_ds(make_ds, tmp_path, mount=False,
                remotes=[f"udp://127.0.0.1:{p}" for p in (5001, 5002, 5003, 5004)])
    p = ds.mount_fails()
    assert "at most 3" in p.stderr, p.stderr
    ds.expect_error("at most 3")
    ds2 = ctl_ds(make_ds, tmp_path, name="ds2", mount=False, remotes=["http://127.0.0.1:1"])
    p = ds2.mount_fails()
    assert "udp://HOST:PORT" in p.stderr, p.stderr
    ds2.expect_error("udp://HOST:PORT")
