# SPDX-License-Identifier: GPL-2.0-or-later
"""Metrics in the Prometheus text format, scraped from `vmcryptfs-ctl metrics`
and from the loopback HTTP endpoint (-o metrics_port=N), parsed by a strict
parser of the text exposition format 0.0.4, and checked against what the test
did through the mount."""
import errno
import http.client
import os
import re
import socket
import subprocess

import pytest

import vmctest
from vmctest import CTL, UNIT, read, write

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL},?)*)\}})? (\S+)(?: -?\d+)?$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse(text):
    """Parse text format 0.0.4 strictly: every family has one HELP and one
    TYPE before its samples, a family's samples are consecutive, no sample
    repeats. Returns {family: {"type", "help", "samples": {labels: value}}}."""
    assert text.endswith("\n"), "exposition does not end with a newline"
    families, current, closed = {}, None, set()
    for n, line in enumerate(text.splitlines(), 1):
        where = f"line {n}: {line!r}"
        assert line, f"{where}: empty line"
        if line.startswith("# "):
            kind, name, rest = (line[2:].split(" ", 2) + [""])[:3]
            if kind not in ("HELP", "TYPE"):
                continue  # a comment
            assert re.fullmatch(NAME, name), where
            if current != name:
                assert name not in families, f"{where}: family {name} declared twice"
                if current:
                    closed.add(current)
                current = name
                families[name] = {"type": None, "help": None, "samples": {}}
            fam = families[name]
            key = kind.lower()
            assert fam[key] is None, f"{where}: second {kind} for {name}"
            assert not fam["samples"], f"{where}: {kind} after samples of {name}"
            if kind == "TYPE":
                assert rest in TYPES, f"{where}: unknown type"
            fam[key] = rest
            continue
        m = SAMPLE.match(line)
        assert m, f"{where}: not a sample line"
        name, labels_text, value = m.group(1), m.group(2) or "", m.group(m.lastindex)
        assert name == current, f"{where}: sample of {name} outside its family ({current})"
        assert families[name]["type"], f"{where}: sample before TYPE"
        labels = tuple(sorted(re.findall(LABEL, labels_text)))
        assert len({k for k, _ in labels}) == len(labels), f"{where}: repeated label"
        assert labels not in families[name]["samples"], f"{where}: repeated sample"
        v = float(value)
        if families[name]["type"] == "counter":
            assert v >= 0, f"{where}: negative counter"
        families[name]["samples"][labels] = v
    for name, fam in families.items():
        assert fam["help"] is not None and fam["type"] is not None, f"{name}: no HELP/TYPE"
    return families


def value(fams, family, **labels):
    samples = fams[family]["samples"]
    hits = [v for ls, v in samples.items() if all((k, str(w)) in ls for k, w in labels.items())]
    assert len(hits) == 1, f"{family}{labels}: {len(hits)} samples in {samples}"
    return hits[0]


def scrape_ctl(ds):
    p = subprocess.run([str(CTL), "-m", str(ds.mnt), "metrics"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return parse(p.stdout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        c.close()


FAMILIES = {
    "vmcryptfs_read_bytes_total": "counter",
    "vmcryptfs_written_bytes_total": "counter",
    "vmcryptfs_reads_total": "counter",
    "vmcryptfs_writes_total": "counter",
    "vmcryptfs_cipher_bytes_total": "counter",
    "vmcryptfs_cipher_seconds_total": "counter",
    "vmcryptfs_errors_total": "counter",
    "vmcryptfs_vms_encrypted": "gauge",
    "vmcryptfs_vms_locked": "gauge",
    "vmcryptfs_rekeys_in_progress": "gauge",
    "vmcryptfs_conversions_in_progress": "gauge",
    "vmcryptfs_rekeys_total": "counter",
    "vmcryptfs_conversions_total": "counter",
    "vmcryptfs_provider_up": "gauge",
    "vmcryptfs_provider_requests_total": "counter",
    "vmcryptfs_provider_failures_total": "counter",
    "vmcryptfs_provider_seconds_total": "counter",
    "vmcryptfs_provider_last_seconds": "gauge",
}


def test_parser_rejects_what_it_must():
    """The parser above is the check: it must refuse malformed expositions."""
    good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n"
    assert parse(good)["a_total"]["samples"] == {(("x", "1"),): 3.0}
    bad = [
        "a_total 1\n",                                                    # no HELP/TYPE
        good + "# HELP a_total again\n",                                  # declared twice
        good.replace(' 3\n', ' 3\na_total{x="1"} 4\n'),                   # repeated sample
        good + "# HELP b B.\n# TYPE b gauge\nb 1\na_total{x=\"2\"} 1\n",  # interleaved
        good.replace("counter", "count"),                                 # unknown type
        good.replace(" 3\n", " -3\n"),                                    # negative counter
        good.replace(" 3\n", " three\n"),                                 # not a number
        good.rstrip("\n"),                                                # no final newline
    ]
    for text in bad:
        with pytest.raises((AssertionError, ValueError)):
            parse(text)


def test_metrics_follow_the_traffic(make_ds, tmp_path):
    port = free_port()
    ds = make_ds(options=[f"metrics_port={port}"])
    vm = ds.make_vm("vm1")
    plain = os.urandom(3 * UNIT + 123)
    log = b"2026-11-22T12:00:00 vmx| started\n" * 10

    fams = scrape_ctl(ds)
    for family, kind in FAMILIES.items():
        assert family in fams, f"{family} missing"
        assert fams[family]["type"] == kind, family
    ds_label = str(ds.backing)
    assert value(fams, "vmcryptfs_vms_encrypted", datastore=ds_label) == 0
    assert value(fams, "vmcryptfs_provider_up", provider="native") == 1

    write(vm / "vm1.nvram", plain)
    write(vm / "vmware.log", log)
    fams = scrape_ctl(ds)
    assert value(fams, "vmcryptfs_written_bytes_total", file="encrypted") == len(plain)
    assert value(fams, "vmcryptfs_written_bytes_total", file="cleartext") == \
        len(log) + len(vmctest.POLICY)
    assert value(fams, "vmcryptfs_writes_total", file="encrypted") >= 1
    assert value(fams, "vmcryptfs_cipher_bytes_total", op="encrypt") >= len(plain)
    assert value(fams, "vmcryptfs_vms_encrypted") == 1
    assert value(fams, "vmcryptfs_vms_locked") == 0
    assert value(fams, "vmcryptfs_provider_requests_total", provider="native") >= 1
    assert value(fams, "vmcryptfs_provider_failures_total", provider="native",
                 reason="unreachable") == 0

    # Counters live in the daemon: after a remount reads come from the
    # backing store, not the page cache, and are counted exactly.
    ds.unmount()
    ds.mount()
    assert read(ds.m("vm1/vm1.nvram")) == plain
    assert read(ds.m("vm1/vmware.log")) == log
    fams = scrape_ctl(ds)
    assert value(fams, "vmcryptfs_read_bytes_total", file="encrypted") == len(plain)
    assert value(fams, "vmcryptfs_read_bytes_total", file="cleartext") == len(log)
    assert value(fams, "vmcryptfs_cipher_bytes_total", op="decrypt") >= len(plain)
    assert value(fams, "vmcryptfs_cipher_seconds_total", op="decrypt") > 0
    assert value(fams, "vmcryptfs_errors_total", kind="enokey") == 0

    # A locked VM: counted as locked, and opening its files fails ENOKEY,
    # counted by kind.
    ds.ctl("lock", "vm1")
    assert vmctest.open_errno(ds.m("vm1/vm1.nvram"), os.O_RDONLY) == errno.ENOKEY
    fams = scrape_ctl(ds)
    assert value(fams, "vmcryptfs_vms_locked") == 1
    assert value(fams, "vmcryptfs_errors_total", kind="enokey") >= 1
    ds.ctl("unlock", "vm1")
    assert read(ds.m("vm1/vm1.nvram")) == plain

    # A rekey and a conversion are counted when they finish.
    ds.ctl("rekey", "vm1")
    plain2 = os.urandom(UNIT)
    vm2 = ds.make_vm("vm2", policy=None)
    write(vm2 / "vm2.nvram", plain2)
    ds.ctl("encrypt", "vm2")
    fams = scrape_ctl(ds)
    assert value(fams, "vmcryptfs_rekeys_total") == 1
    assert value(fams, "vmcryptfs_conversions_total") == 1
    assert value(fams, "vmcryptfs_rekeys_in_progress") == 0
    assert value(fams, "vmcryptfs_conversions_in_progress") == 0
    assert value(fams, "vmcryptfs_vms_encrypted") == 2
    assert read(vm2 / "vm2.nvram") == plain2

    # The same exposition over HTTP on loopback, and nothing else there.
    status, ctype, body = http_get(port, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    fams_http = parse(body)
    assert set(fams_http) == set(fams)
    assert value(fams_http, "vmcryptfs_conversions_total") == 1
    assert http_get(port, "/")[0] == 404
    assert http_get(port, "/metrics/../keys")[0] == 404
    listen = [l.split()[1] for l in open("/proc/net/tcp").read().splitlines()[1:]
              if l.split()[3] == "0A" and int(l.split()[1].split(":")[1], 16) == port]
    assert listen == [f"0100007F:{port:04X}"], f"metrics port listens on {listen}"


def test_metrics_port_in_use_is_a_clear_error(make_ds):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        ds = make_ds(mount=False)
        p = ds.mount_fails(options=[f"metrics_port={port}"])
        assert f"{port}" in p.stderr and "in use" in p.stderr.lower(), p.stderr
