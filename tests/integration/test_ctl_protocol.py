# SPDX-License-Identifier: GPL-2.0-or-later
"""Malformed control requests straight on the control socket (issue 4):
garbage, JSON that is not a request, missing or unknown verbs and fields,
wrong argument types, a 1 MiB request, deeply nested JSON, NUL bytes, a
client that sends nothing, a client that hangs up during a long operation,
and 50 connections at once. Each gets an error reply ("ok": false with a
sensible errno and a message) and the daemon keeps working: status answers,
the daemon is alive and its log has no unexpected errors."""
import errno
import json
import os
import socket
import subprocess
import threading
import time
from urllib.parse import quote_from_bytes, unquote, unquote_to_bytes

import pytest

from vmctest import CTL, ctl_ds, ctl_request, ctl_socket_path, read, write

E = errno
BAD_REQUESTS = {
    "garbage": (b"hello, daemon\n", {E.EINVAL}),
    "binary garbage": (bytes(range(1, 256)) + b"\n", {E.EINVAL}),
    "empty line": (b"\n", {E.EINVAL}),
    "a JSON array": (b'["status"]\n', {E.EINVAL}),
    "a JSON string": (b'"status"\n', {E.EINVAL}),
    "a JSON number": (b"42\n", {E.EINVAL}),
    "JSON null": (b"null\n", {E.EINVAL}),
    "truncated JSON": (b'{"verb": "status", "args": {\n', {E.EINVAL}),
    "trailing data": (b'{"verb":"status"} {"verb":"status"}\n', {E.EINVAL}),
    "no verb": (b'{"args": {}}\n', {E.EINVAL}),
    "verb not a string": (b'{"verb": 7}\n', {E.EINVAL}),
    "empty verb": (b'{"verb": ""}\n', {E.EINVAL}),
    "unknown verb": (b'{"verb": "frobnicate"}\n', {E.EOPNOTSUPP}),
    "verb with odd characters": (b'{"verb": "status; rm -rf /"}\n', {E.EINVAL}),
    "very long verb": (b'{"verb": "' + b"a" * 5000 + b'"}\n', {E.EINVAL}),
    "unknown request field": (b'{"verb": "status", "args": {}, "sudo": true}\n', {E.EINVAL}),
    # A misspelt argument must not be ignored (home-only for home_only would
    # encrypt the disks too).
    "unknown argument": (b'{"verb": "status", "args": {"vmm": "vm1"}}\n', {E.EINVAL}),
    "args not an object": (b'{"verb": "status", "args": [1, 2]}\n', {E.EINVAL}),
    "vm not a string": (b'{"verb": "status", "args": {"vm": 5}}\n', {E.EINVAL}),
    "follow not a boolean": (b'{"verb": "events", "args": {"follow": "yes"}}\n', {E.EINVAL}),
    "vms not a list of strings": (b'{"verb": "rekey", "args": {"vms": [1, 2]}}\n', {E.EINVAL}),
    "all not a boolean": (b'{"verb": "decrypt", "args": {"all": 1}}\n', {E.EINVAL}),
    "required argument missing": (b'{"verb": "lock", "args": {}}\n', {E.EINVAL}),
    "no VM named": (b'{"verb": "encrypt", "args": {}}\n', {E.EINVAL}),
    "mode not on/off": (b'{"verb": "encryption-mode", "args": {"mode": "maybe"}}\n', {E.EINVAL}),
    "path escaping the datastore": (b'{"verb": "status", "args": {"vm": "../../etc"}}\n',
                                    {E.EINVAL}),
    "vmcryptfs' own name": (b'{"verb": "status", "args": {"vm": ".vmcrypt.state"}}\n',
                           {E.EINVAL}),
    "absolute path outside": (b'{"verb": "lock", "args": {"vm": "/etc"}}\n',
                              {E.EINVAL, E.ENOENT, E.ENOTDIR}),
    "bad base64 backup": (b'{"verb": "provider-restore", "args": {"backup": "!!!", '
                          b'"password": "x"}}\n', {E.EINVAL}),
    "NUL byte in the request": (b'{"verb": "status"\x00}\n', {E.EINVAL}),
    "NUL escaped in the verb": (b'{"verb": "sta\\u0000tus"}\n', {E.EINVAL, E.EOPNOTSUPP}),
    "invalid UTF-8 in a string": (b'{"verb": "status", "args": {"vm": "\xff\xfe"}}\n',
                                  {E.EINVAL, E.ENOENT}),
    "huge number": (b'{"verb": "status", "args": {"vm": 1e999999}}\n', {E.EINVAL}),
    "1 MiB request": (b'{"verb": "status", "args": {"vm": "' + b"a" * (1 << 20) + b'"}}\n',
                      {E.EMSGSIZE}),
    "1 MiB without a newline": (b"{" * (1 << 20), {E.EMSGSIZE}),
    "deeply nested JSON": (b'{"verb": "status", "args": ' + b'{"a": ' * 20000 + b"1" +
                           b"}" * 20000 + b"}\n", {E.EINVAL, E.EMSGSIZE}),
    "deep arrays": (b'{"verb": "status", "args": {"x": ' + b"[" * 100 + b"]" * 100 + b"}}\n",
                    {E.EINVAL}),
}


def alive(ds):
    assert ds.proc.poll() is None, "the daemon died\n" + ds.log_tail()
    st = ds.ctl("status").json
    assert st["datastore"]["mountpoint"] == str(ds.mnt)
    return st


@pytest.fixture
def pds(make_ds, tmp_path):
    ds = ctl_ds(make_ds, tmp_path)
    vm = ds.make_vm("vm1")
    write(vm / "vm1.nvram", b"n" * 9000)
    return ds


def test_malformed_requests(pds):
    ds = pds
    sock = ctl_socket_path(ds.mnt)
    # A client that connects and sends nothing: the daemon gives up after its
    # read time-out (about 10 s). Runs alongside the other cases.
    idle = {}

    def idle_client():
        t0 = time.monotonic()
        try:
            idle["final"], _, idle["raw"] = ctl_request(sock, b"", timeout=20)
        except OSError as e:
            idle["exc"] = e
        idle["seconds"] = time.monotonic() - t0
    t = threading.Thread(target=idle_client)
    t.start()

    failures = []
    for name, (payload, errnos) in BAD_REQUESTS.items():
        try:
            final, lines, raw = ctl_request(sock, payload, timeout=15)
        except (OSError, ValueError) as e:
            failures.append(f"{name}: {e!r}")
            continue
        if final is None:
            failures.append(f"{name}: no answer (the daemon closed); got {raw[:200]!r}")
        elif final.get("ok") is not False:
            failures.append(f"{name}: accepted: {final}")
        elif final.get("errno") not in errnos:
            failures.append(f"{name}: errno {final.get('errno')} ({final.get('message')}), "
                            f"expected one of {sorted(errnos)}")
        elif not isinstance(final.get("message"), str) or not final["message"] or \
                final.get("error") != os.strerror(final["errno"]):
            failures.append(f"{name}: no clear message: {final}")
        if ds.proc.poll() is not None:
            failures.append(f"{name}: the daemon died")
            break
    alive(ds)
    t.join(30)
    assert not t.is_alive()
    if "exc" in idle:
        failures.append(f"silent client: {idle['exc']!r}")
    elif not 5 <= idle["seconds"] <= 15:
        failures.append(f"silent client: answered after {idle['seconds']:.1f} s")
    elif idle["final"] is not None and (idle["final"]["ok"] is not False or
                                        idle["final"]["errno"] != E.ETIMEDOUT):
        failures.append(f"silent client: {idle['final']}")
    alive(ds)
    assert not failures, "malformed requests:\n  " + "\n  ".join(failures)
    assert read(ds.m("vm1") / "vm1.nvram") == b"n" * 9000


def test_many_connections_at_once(pds):
    ds = pds
    sock = ctl_socket_path(ds.mnt)
    conns = []
    try:
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock)             # blocking: waits while the backlog is full
            s.settimeout(20)
            conns.append(s)
        time.sleep(0.3)
        for s in conns:
            try:
                s.sendall(b'{"verb": "status"}\n')
            except OSError:
                pass                    # already answered "busy" and closed
        answers = []
        for s in conns:
            buf = b""
            while True:
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
            lines = [l for l in buf.split(b"\n") if l.strip()]
            answers.append(__import__("json").loads(lines[-1]) if lines else None)
    finally:
        for s in conns:
            s.close()
    assert all(a is not None for a in answers), "a connection got no answer"
    ok = [a for a in answers if a["ok"]]
    busy = [a for a in answers if not a["ok"]]
    assert all(a["errno"] == E.EBUSY and "too many" in a["message"] for a in busy), busy
    assert ok and len(ok) + len(busy) == 50
    alive(ds)
    # And 50 callers one after the other, in parallel threads.
    results = []

    def caller():
        final = ctl_request(sock, {"verb": "status", "args": {}}, timeout=30)[0]
        results.append(final)
    threads = [threading.Thread(target=caller) for _ in range(50)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert len(results) == 50 and all(r and ("ok" in r) for r in results)
    assert all(r["ok"] or r["errno"] == E.EBUSY for r in results), results
    alive(ds)


def test_client_hangs_up_during_an_operation(pds):
    ds = pds
    vm = ds.m("vm2")
    vm.mkdir()
    data = os.urandom(64 << 20)
    write(vm / "vm2-flat.vmdk", data)
    sock = ctl_socket_path(ds.mnt)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    s.sendall(b'{"verb": "encrypt", "args": {"vms": ["vm2"]}}\n')
    s.close()                            # gone before the answer
    # The operation finishes anyway (or can be re-run), and the daemon lives.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        v = ds.ctl("status", vm).json["vms"][0]
        if v["encrypted"] and not v["conversion_in_progress"] and \
                ds.ctl("encrypt", vm, rc=None).rc == 0:
            break
        time.sleep(0.2)
    r = ds.ctl("encrypt", vm).json
    assert r["failed"] == 0
    assert read(vm / "vm2-flat.vmdk") == data
    alive(ds)


# Every verb and the arguments it takes (fs/ctl.c); anything else is refused.
VERB_ARGS = {
    "status": {"vm"}, "encrypt": {"vm", "vms", "all", "policy", "home_only"},
    "decrypt": {"vm", "vms", "all", "provider"},
    "rekey": {"vm", "vms", "all", "provider", "deep", "to_provider"},
    "lock": {"vm"}, "unlock": {"vm"}, "provider-list": set(), "provider-test": {"name"},
    "provider-create-native": {"name"}, "provider-backup": {"name", "password"},
    "provider-restore": {"backup", "password", "provider", "force"},
    "events": {"since", "vm", "follow"}, "encryption-mode": {"mode", "provider"},
    "metrics": set(),
}


def test_unknown_arguments_are_refused(pds):
    """A misspelt or foreign argument is an error, never ignored: each verb
    refuses every argument name it does not take (before it does anything),
    with EINVAL and a message naming it; vmcryptfs-ctl refuses the options a
    verb does not take with a usage error."""
    ds = pds
    sock = ctl_socket_path(ds.mnt)
    ds.m("vm9").mkdir()
    write(ds.m("vm9") / "vm9-flat.vmdk", b"d" * 8192)
    failures = []
    for verb, takes in VERB_ARGS.items():
        others = {a for t in VERB_ARGS.values() for a in t} - takes
        for bad in sorted(others) + ["home-only", "vmm", "Vm", "vm ", "", "\u00e9", "x" * 300]:
            args = {"vms": ["vm9"]} if "vms" in takes else {}
            args[bad] = True
            final, _, _ = ctl_request(sock, {"verb": verb, "args": args}, timeout=15)
            if not final or final.get("ok") is not False or final.get("errno") != E.EINVAL:
                failures.append(f"{verb} {bad!r}: {final}")
            elif f'unknown argument "{bad[:64]}" for {verb}' not in final["message"]:
                failures.append(f"{verb} {bad!r}: message {final['message']!r}")
    assert not failures, "\n  ".join(["arguments not refused:"] + failures)
    # Nothing was done: vm9 is still cleartext, with no policy written.
    assert sorted(os.listdir(ds.b("vm9"))) == ["vm9-flat.vmdk"]
    assert read(ds.b("vm9") / "vm9-flat.vmdk") == b"d" * 8192
    # The arguments each verb takes are still accepted.
    final, _, _ = ctl_request(sock, {"verb": "status", "args": {"vm": "vm1"}})
    assert final["ok"], final
    final, _, _ = ctl_request(sock, {"verb": "events", "args": {"vm": "vm1", "since": "2"}})
    assert final["ok"], final
    # The tool: options of another verb, extra arguments.
    vm9 = ds.m("vm9")
    for argv in (["encrypt", "--deep", vm9], ["encrypt", "--to-provider", "x", vm9],
                 ["decrypt", "--home-only", vm9], ["decrypt", "--policy", "p", vm9],
                 ["rekey", "--home-only", vm9], ["rekey", "--provider", "native", vm9],
                 ["status", ds.m("vm1"), ds.m("vm9")], ["metrics", "x"], ["events", "x"],
                 ["encryption-mode", "on", "--bogus", "x"], ["encryption-mode", "on", "x"],
                 ["provider", "list", "x"], ["provider", "test", "native", "x"]):
        r = ds.ctl(*argv, rc=None)
        assert r.rc == 2, r
    assert sorted(os.listdir(ds.b("vm9"))) == ["vm9-flat.vmdk"]


def ctl_bytes(ds, *args):
    """vmcryptfs-ctl with bytes arguments; (rc, stdout bytes, stderr bytes)."""
    p = subprocess.run([os.fsencode(str(CTL)), b"-m", os.fsencode(str(ds.mnt))] +
                       [a if isinstance(a, bytes) else os.fsencode(str(a)) for a in args],
                       capture_output=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


ODD = b"vm \xff\xfe %41%25 \x1b[31mred\x1b[0m \xc2\x9b2J \n"


def odd_vm(ds, encrypted=True):
    """A VM directory whose name is not UTF-8 and holds '%', an escape
    sequence, a C1 control and a newline; encrypted through the mount."""
    vm = os.path.join(os.fsencode(str(ds.mnt)), ODD)
    os.mkdir(vm)
    if encrypted:
        with open(os.path.join(vm, b"vmcrypt.policy"), "w") as f:
            f.write('policy = "vm-encryption"\n')
    with open(os.path.join(vm, b"odd.nvram"), "wb") as f:
        f.write(b"n" * 5000)
    return vm


def test_names_that_are_not_utf8(pds):
    """Names reach JSON in the name encoding (vmcryptfs-ctl(8) NAMES): valid
    UTF-8 JSON that decodes back to the exact bytes; vmcryptfs-ctl addresses
    such a VM by its path; the text output never sends a name's control
    characters to the terminal; requests that are not UTF-8 are refused
    without echoing their bytes."""
    ds = pds
    vm = odd_vm(ds)
    rc, out, err = ctl_bytes(ds, "--json", "status")
    assert rc == 0, err
    st = json.loads(out.decode("utf-8"))
    names = {unquote_to_bytes(v["vm"]) for v in st["vms"]}
    assert names == {b"vm1", ODD}, names
    rc, out, err = ctl_bytes(ds, "--json", "status", vm)
    assert rc == 0, err
    one = json.loads(out.decode("utf-8"))["vms"]
    assert [unquote_to_bytes(v["vm"]) for v in one] == [ODD] and one[0]["encrypted"]
    # lock / unlock by path; events of that VM only.
    for verb in ("lock", "unlock"):
        rc, out, err = ctl_bytes(ds, "--json", verb, vm)
        assert rc == 0, err
        assert unquote_to_bytes(json.loads(out.decode("utf-8"))["vm"]) == ODD
    rc, out, err = ctl_bytes(ds, "--json", "events", "--vm", vm)
    assert rc == 0, err
    evs = [json.loads(line) for line in out.decode("utf-8").splitlines()]
    assert {e["op"] for e in evs} >= {"lock", "unlock", "policy-create", "encrypt-new"}, evs
    assert all(unquote_to_bytes(e["vm"]) == ODD for e in evs)
    # The text output: no control character of the name reaches the terminal.
    for argv in (["status"], ["status", vm], ["lock", vm], ["unlock", vm], ["events"]):
        rc, out, err = ctl_bytes(ds, *argv)
        assert rc == 0, (argv, err)
        text = out.decode("utf-8")
        assert not [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f]
        assert "vm \\xff\\xfe %41%25 \\x1b[31mred" in text, text
    # The errors of the tool show names the same way.
    rc, out, err = ctl_bytes(ds, "rekey", "--deep", os.path.join(vm, b"odd.nvram"))
    assert rc != 0 and b"\x1b" not in err, err
    # Raw requests: invalid UTF-8 is refused, encoded names are decoded.
    sock = ctl_socket_path(ds.mnt)
    final, _, raw = ctl_request(sock, b'{"verb":"status","args":{"vm":"' + ODD[:6] + b'"}}\n')
    assert final and final["errno"] == E.EINVAL and b"\xff" not in raw, raw
    assert 'argument "vm" is not valid UTF-8' in final["message"], final
    enc = quote_from_bytes(ODD, safe="")
    final, _, _ = ctl_request(sock, {"verb": "status", "args": {"vm": enc}})
    assert final["ok"] and unquote_to_bytes(final["result"]["vms"][0]["vm"]) == ODD, final
    final, _, _ = ctl_request(sock, {"verb": "status", "args": {"vm": "vm 100%"}})
    assert final["errno"] == E.EINVAL and "%XX" in unquote(final["message"]), final
    final, _, raw = ctl_request(sock, {"verb": "status", "args": {"vm": enc + "%2Fnone"}})
    assert final["errno"] == E.ENOENT and b"\xff" not in raw, raw
    assert unquote_to_bytes(final["message"]).startswith(ODD + b"/none"), final
    alive(ds)


def test_conversions_of_a_vm_whose_name_is_not_utf8(pds):
    ds = pds
    vm = odd_vm(ds, encrypted=False)
    for argv in (["encrypt"], ["rekey"], ["rekey", "--deep"], ["decrypt"]):
        rc, out, err = ctl_bytes(ds, "--json", *argv, vm)
        assert rc == 0, (argv, err)
        r = json.loads(out.decode("utf-8"))
        assert [unquote_to_bytes(v["vm"]) for v in r["vms"]] == [ODD], r
    assert read(os.path.join(vm, b"odd.nvram")) == b"n" * 5000
