# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers shared by test_faults.py and test_crash_random.py: the
fault-injecting preload library (tests/fault/vmcfault.c) steered through a
control file, integrity checks of every vmcryptfs object in a backing
directory made from docs/FORMAT.md alone (magic, type, version, SHA-256
checksums of the header's fixed part, of each key slot and of key records),
vmcryptfs-util scan, and reads that bypass the kernel's page cache of the
mount (so that they reach the daemon).
"""
import errno
import hashlib
import os
import struct
import subprocess
import time
from pathlib import Path

import vmctest
from vmctest import BUILD_DIR, HDR, MAGIC, PLUGINS

FAULT_LIB = BUILD_DIR / "tests" / "fault" / "libvmcfault.so"
UTIL = BUILD_DIR / "cli" / "vmcryptfs-util"

# cli/util_cli.h
UTIL_OK = 0
UTIL_NONCOMPLIANT = 3

# Violations of `vmcryptfs-util scan` that mean damage (never allowed).
DAMAGE_KINDS = {"damaged-header", "unsupported-header", "unreadable", "damaged-record",
                "unknown-provider", "key-missing", "slot-rejected", "key-check-mismatch",
                "policy-error"}


class Faults:
    """The control file of libvmcfault.so for one daemon: set(rule, ...)
    replaces the rules atomically (the library re-reads the file at the next
    intercepted call), clear() removes them, hits() lists the actions the
    library took ("OP PATH ACTION" lines) since the last reset_hits()."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ctl = self.dir / "vmcfault.ctl"
        self.log = self.dir / "vmcfault.log"
        self.set()

    def env(self):
        assert FAULT_LIB.exists(), (f"{FAULT_LIB} is not built (tests/fault; "
                                    f"VMC_BUILD_DIR={BUILD_DIR})")
        asan = os.environ.get("ASAN_OPTIONS", "")
        # A sanitizer build wants its runtime first in the link order.
        asan = (asan + ":" if asan else "") + "verify_asan_link_order=0"
        return {"LD_PRELOAD": str(FAULT_LIB), "VMCFAULT_CTL": str(self.ctl),
                "VMCFAULT_LOG": str(self.log), "ASAN_OPTIONS": asan}

    def set(self, *rules):
        tmp = self.dir / "vmcfault.ctl.tmp"
        tmp.write_text("".join(r + "\n" for r in rules))
        os.rename(tmp, self.ctl)

    def clear(self):
        self.set()

    def hits(self):
        try:
            return [l.split(" ") for l in self.log.read_text().splitlines() if l]
        except FileNotFoundError:
            return []

    def reset_hits(self):
        try:
            self.log.unlink()
        except FileNotFoundError:
            pass


def drop_cache(path):
    """Drop the kernel's cached pages of @path (a file on the mount), so that
    the next read goes to the daemon."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def pread_nocache(fd, length, offset):
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    out = b""
    while len(out) < length:
        b = os.pread(fd, length - len(out), offset + len(out))
        if not b:
            break
        out += b
    return out


def read_nocache(path):
    """The whole of @path as the daemon serves it now."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return pread_nocache(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)


def write_synced(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def first_difference(a, b):
    """Offset of the first byte where @a and @b differ (or the shorter length)."""
    n = min(len(a), len(b))
    step = 4096
    for off in range(0, n, step):
        if a[off:off + step] != b[off:off + step]:
            for i in range(off, min(off + step, n)):
                if a[i] != b[i]:
                    return i
    return n


def same(got, want, what):
    """Assert equality of two byte strings, saying where they differ."""
    if got != want:
        off = first_difference(got, want)
        raise AssertionError(f"{what}: differs from the reference at byte {off} "
                             f"(sizes {len(got)} and {len(want)}): got "
                             f"{got[off:off + 16].hex()} want {want[off:off + 16].hex()}")


# --- integrity of the backing store (docs/FORMAT.md) -------------------------------

def header_problems(data):
    """What is wrong with an encrypted file's header (the first bytes
    @data of the backing file): [] when intact. Checked without keys: prefix,
    header size, cipher and unit, checksum of the fixed part, reserved bytes,
    each key slot's checksum and fields, at least one active slot."""
    p = []
    if len(data) < HDR:
        return [f"truncated header: {len(data)} bytes"]
    h = data[:HDR]
    if h[:14] != MAGIC:
        p.append(f"bad magic {h[:14].hex()}")
    typ, ver, hsize = struct.unpack_from("<HHH", h, 14)
    if (typ, ver, hsize) != (1, 1, HDR):
        p.append(f"type/version/header size {typ}/{ver}/{hsize}")
    if h[28] != 1 or h[29] != 12 or h[31] != 4:
        p.append(f"cipher/unit shift/slot count {h[28]}/{h[29]}/{h[31]}")
    if hashlib.sha256(h[:224]).digest() != h[224:256]:
        p.append("checksum of the fixed part does not match")
    if h[72:224].count(0) != 152 or h[256:512].count(0) != 256 or h[2560:].count(0) != 1536:
        p.append("non-zero reserved bytes")
    active = 0
    for i in range(4):
        s = h[512 + 512 * i:1024 + 512 * i]
        if s.count(0) == 512:
            continue
        if hashlib.sha256(s[:480]).digest() != s[480:]:
            p.append(f"slot {i}: checksum does not match")
            continue
        plen, klen, wlen = s[3], struct.unpack_from("<H", s, 4)[0], struct.unpack_from("<H", s, 6)[0]
        if s[0] != 1 or s[1] != 1 or s[2] != 1 or not 1 <= plen <= 63 or not 1 <= klen <= 255 \
                or wlen != 64:
            p.append(f"slot {i}: bad fields {s[:8].hex()}")
            continue
        active += 1
    if not active:
        p.append("no usable key slot")
    return p


def record_problems(data):
    """What is wrong with a VM or datastore key record (FORMAT.md 4)."""
    p = []
    if len(data) != 1024:
        return [f"{len(data)} bytes, expected 1024"]
    if data[:14] != MAGIC or struct.unpack_from("<HH", data, 14) != (2, 1):
        p.append("bad prefix")
    if hashlib.sha256(data[:992]).digest() != data[992:]:
        p.append("checksum does not match")
    if data[56] not in (0, 1):
        p.append(f"state {data[56]}")
    if data[64:448].count(0) == 384:
        p.append("no current KEK")
    if (data[56] == 1) == (data[448:832].count(0) == 384):
        p.append("next KEK set iff state is rekey: not so")
    return p


def backing_integrity(backing):
    """Every vmcryptfs object under the backing directory @backing is intact:
    {relative path: [problems]} for those that are not (an empty dict is a
    clean store). Encrypted files are recognised by their first bytes (the
    magic, or two bytes off it as FORMAT.md 1 says); a 1..4095-byte file that
    starts with the magic is a truncated header; key records by name (their
    temporary copies, which nothing reads, are not checked)."""
    bad = {}
    for dirpath, _, files in os.walk(backing):
        for f in files:
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, backing)
            with open(path, "rb") as fh:
                head = fh.read(HDR)
            if f in (vmctest.STATE_NAME, vmctest.DATASTORE_NAME):
                p = record_problems(vmctest.read(path))
            elif f.startswith(vmctest.STATE_NAME + ".tmp") or \
                    f.startswith(vmctest.DATASTORE_NAME + ".tmp"):
                # A record being replaced when the daemon died: never read,
                # removed by the next write of the record (FORMAT.md 4).
                p = []
            elif head[:14] == MAGIC and struct.unpack_from("<H", head, 14)[0] in (2, 3, 4):
                p = []      # another vmcryptfs object (FORMAT.md 1)
            elif len(head) >= 16 and sum(a != b for a, b in zip(head[:16], MAGIC + b"\x01\x00")) <= 2:
                p = header_problems(head)
            else:
                p = []
            if p:
                bad[rel] = p
    return bad


def assert_backing_intact(backing, what=""):
    bad = backing_integrity(backing)
    assert not bad, f"{what}: damaged vmcryptfs objects in the backing store: {bad}"


def util_scan(ds, verify=False, timeout=300):
    """`vmcryptfs-util --json scan [--verify] BACKING` with the datastore's
    configuration and plugins: (exit status, parsed report, CompletedProcess)."""
    import json
    argv = [str(UTIL), "--config", str(ds.config), "--keyprov-dir", str(PLUGINS), "--json",
            "scan"] + (["--verify"] if verify else []) + [str(ds.backing)]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    rep = None
    if p.stdout.strip():
        try:
            rep = json.loads(p.stdout)
        except ValueError:
            pass
    return p.returncode, rep, p


def assert_scan_clean(ds, verify=False, what=""):
    """The scan exits 0 and reports the datastore compliant."""
    rc, rep, p = util_scan(ds, verify)
    assert rc == UTIL_OK and rep and rep.get("compliant") is True, (
        f"{what}: vmcryptfs-util scan{' --verify' if verify else ''} exit {rc}\n"
        f"violations: {rep and rep.get('violations')}\n--- stderr ---\n{p.stderr}")
    return rep


def errno_name(e):
    return errno.errorcode.get(e, str(e))


def wait_until(pred, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)
