# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers of the vmcryptfs integration tests: a mounted datastore, the
on-disk constants the tests check the backing store against, and the system
calls Python lacks (fallocate(2) modes).

A Datastore is a temporary tree (backing directory, mount point, config, log)
plus a vmcryptfs daemon running in the foreground with its stderr in a log
file. Teardown always unmounts, waits for the daemon and fails the test when
the daemon exited non-zero, logged an error the test did not declare with
expect_error(), or a sanitizer complained.

Caveat: a test that leaves a file open on the mount makes the plain unmount
fail with EBUSY; teardown then unmounts lazily and, if the daemon does not
exit, kills it (our own child, by pid) and reports that as a failure.
"""
import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import re
import signal
import socket as socket_mod
import struct
import subprocess
import time
from pathlib import Path

BUILD_DIR = Path(os.environ.get("VMC_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"))
DAEMON = BUILD_DIR / "fs" / "vmcryptfs"
PLUGINS = BUILD_DIR / "plugins"


def _built_with(option):
    try:
        return f"{option}:BOOL=ON" in (BUILD_DIR / "CMakeCache.txt").read_text()
    except OSError:
        return False


# AddressSanitizer turns mlock() into a no-op (it reserves terabytes of shadow
# memory), so locked-memory checks only apply to other builds.
ASAN = _built_with("VMC_ASAN")

# lib/vmc_format.h
MAGIC = b"\x89VMCRYPTFS\r\n\x1a\n"
HDR = 4096
UNIT = 4096
STATE_NAME = ".vmcrypt.state"
STATE_SIZE = 1024
POLICY_NAME = "vmcrypt.policy"
POLICY = 'policy = "vm-encryption"\n'
POLICY_HOME_ONLY = 'policy = "vm-encryption"\ndisks = false\n'

# linux/falloc.h
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20

MOUNT_TIMEOUT = 10.0
EXIT_TIMEOUT = 10.0

_SANITIZER = re.compile(r"==\d+==ERROR|runtime error:|LeakSanitizer|ThreadSanitizer")

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_libc.fallocate.restype = ctypes.c_int


def fallocate(fd, mode, offset, length):
    """fallocate(2) with any mode; raises OSError with the errno."""
    if _libc.fallocate(fd, mode, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def punch_hole(fd, offset, length):
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)


def config_text(keyfile, extra=""):
    """The test configuration: one native provider, one policy."""
    return (
        'key-provider "native" {\n'
        '\ttype = "native"\n'
        f'\tkey-file = "{keyfile}"\n'
        "}\n"
        'policy "vm-encryption" {\n'
        '\tprovider = "native"\n'
        "\tdisks = true\n"
        "}\n" + extra
    )


def run(cmd, check=True, timeout=120, **kw):
    """Run a command, capturing its output; on failure show everything."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    p = subprocess.run([str(c) for c in cmd], timeout=timeout, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(
            f"command failed with status {p.returncode}: {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{p.stdout}\n--- stderr ---\n{p.stderr}")
    return p


def _unescape_mountinfo(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mount_entry(mountpoint):
    """The /proc/self/mountinfo entry (fields) for @mountpoint, or None."""
    mp = os.path.realpath(mountpoint)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if _unescape_mountinfo(fields[4]) == mp:
                sep = fields.index("-")
                return {"fstype": fields[sep + 1], "source": _unescape_mountinfo(fields[sep + 2]),
                        "options": fields[5], "super": fields[sep + 3]}
    return None


def wait_mounted(mountpoint, fstype="fuse.vmcryptfs", timeout=MOUNT_TIMEOUT, proc=None,
                 what=lambda: ""):
    """Wait until @mountpoint is in /proc/self/mountinfo; fail early if the
    daemon @proc exits, showing what() (the daemon log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        e = mount_entry(mountpoint)
        if e and e["fstype"] == fstype:
            return e
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"daemon exited with status {proc.returncode} before "
                                 f"mounting {mountpoint}\n{what()}")
        time.sleep(0.02)
    raise AssertionError(f"{mountpoint} not mounted after {timeout} s\n{what()}")


def wait_unmounted(mountpoint, timeout=EXIT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not mount_entry(mountpoint):
            return
        time.sleep(0.02)
    raise AssertionError(f"{mountpoint} still mounted after {timeout} s")


def pids_with_arg(arg):
    """Pids of processes whose command line has the argument @arg exactly."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if os.fsencode(str(arg)) in argv:
            pids.append(int(d))
    return pids


def wait_pids_gone(pids, timeout=EXIT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in pids if os.path.exists(f"/proc/{p}")]:
            return
        time.sleep(0.02)
    raise AssertionError(f"processes {pids} still running after {timeout} s")


class Datastore:
    """A backing directory, its mount point and a vmcryptfs daemon.

    Paths: ds.backing, ds.mnt, ds.keyfile, ds.config, ds.log_path.
    ds.m("vm1/x") and ds.b("vm1/x") give a path in the mount / backing store.
    Several Datastores of one test share the key directory unless told
    otherwise, so a VM copied between backing directories opens in both.
    """

    def __init__(self, root, name="ds", backing=None, keydir=None, config=None,
                 options=(), use_config=True):
        self.name = name
        self.dir = Path(root) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.backing = Path(backing) if backing else self.dir / "backing"
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mnt = self.dir / "mnt"
        self.mnt.mkdir(exist_ok=True)
        self.keydir = Path(keydir) if keydir else Path(root) / "keys"
        self.keyfile = self.keydir / "default.key"
        self.config = self.dir / "vmcryptfs.conf"
        self.config.write_text(config if config is not None else config_text(self.keyfile))
        self.log_path = self.dir / "daemon.log"
        self.options = list(options)
        self.use_config = use_config   # False: no config= (the default file or embedded text)
        self.proc = None
        self.expected = []
        self.mounts = 0

    # --- paths -------------------------------------------------------------
    def m(self, rel=""):
        return self.mnt / rel if rel else self.mnt

    def b(self, rel=""):
        return self.backing / rel if rel else self.backing

    # --- lifecycle ---------------------------------------------------------
    def argv(self, options=None, foreground=True):
        opts = [f"config={self.config}"] if self.use_config else []
        opts.append(f"keyprov_dir={PLUGINS}")
        opts += self.options if options is None else list(options)
        argv = [str(DAEMON), str(self.backing), str(self.mnt)]
        if foreground:
            argv.append("-f")
        return argv + ["-o", ",".join(opts)]

    def mount(self, options=None, env=None):
        """Start the daemon; @env: extra environment variables for it (for
        instance VMCRYPTFS_FAULT, the test crash points of lib/vmc_fault.h)."""
        assert self.proc is None, "already mounted"
        assert DAEMON.exists(), f"{DAEMON} not built (VMC_BUILD_DIR={BUILD_DIR})"
        with open(self.log_path, "ab") as log:
            log.write(f"=== mount #{self.mounts + 1}: {' '.join(self.argv(options))}\n"
                      .encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(options), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log,
                                         env=dict(os.environ, **env) if env else None)
        self.mounts += 1
        try:
            wait_mounted(self.mnt, proc=self.proc, what=self.log_tail)
        except AssertionError:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            raise
        return self

    def mount_fails(self, options=None, foreground=True, timeout=MOUNT_TIMEOUT):
        """Run the daemon expecting it to refuse to mount; returns the
        CompletedProcess (stderr has the message)."""
        assert self.proc is None, "already mounted"
        p = run(self.argv(options, foreground), check=False, timeout=timeout,
                stdin=subprocess.DEVNULL)
        assert not _SANITIZER.search(p.stderr), f"sanitizer report:\n{p.stderr}"
        if mount_entry(self.mnt):
            run(["fusermount3", "-u", "-z", self.mnt], check=False)
            raise AssertionError(f"daemon mounted {self.mnt} but should have refused:\n"
                                 f"{p.stderr}")
        assert p.returncode != 0, f"daemon exited 0 without mounting:\n{p.stderr}"
        return p

    @property
    def mounted(self):
        return self.proc is not None

    def unmount(self, check=True):
        """Unmount and wait for the daemon; returns its exit status, which
        must be 0 unless @check is false."""
        assert self.proc is not None, "not mounted"
        proc, self.proc = self.proc, None
        lazy = False
        for _ in range(50):
            if run(["fusermount3", "-u", self.mnt], check=False).returncode == 0:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        else:
            run(["fusermount3", "-u", "-z", self.mnt], check=False)
            lazy = True
        try:
            rc = proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"daemon did not exit after unmounting {self.mnt}"
                                 f"{' lazily (mount busy)' if lazy else ''}; killed\n"
                                 + self.log_tail())
        if mount_entry(self.mnt):
            run(["fusermount3", "-u", "-z", self.mnt], check=False)
        if lazy:
            raise AssertionError(f"{self.mnt} was busy at unmount (a file left open?)")
        if check:
            assert rc == 0, f"daemon exited with status {rc}\n{self.log_tail()}"
        return rc

    def remount(self, options=None):
        self.unmount()
        return self.mount(options)

    def close(self):
        """Teardown: unmount if needed (exit status 0), then check the log."""
        if self.proc is not None:
            self.unmount()
        self.check_log()

    def crash(self):
        """kill -9 the daemon (unless it died already, at a test crash point),
        clean up its dead mount (lazy unmount) and forget it: the next mount()
        starts a new daemon on the same backing directory. Returns the
        daemon's exit status."""
        assert self.proc is not None, "not mounted"
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=EXIT_TIMEOUT)
        run(["fusermount3", "-u", "-z", self.mnt], check=False)
        wait_unmounted(self.mnt)
        with open(self.log_path, "ab") as log:
            log.write(f"=== daemon ended with status {proc.returncode} (killed by the test)\n"
                      .encode())
        return proc.returncode

    def ctl(self, *args, **kw):
        """vmcryptfs-ctl on this mount (see ctl())."""
        return ctl(self.mnt, *args, **kw)

    # --- the log -----------------------------------------------------------
    def expect_error(self, substring):
        """Declare that an "error:" log line containing @substring is expected."""
        self.expected.append(substring)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60):
        lines = self.log().splitlines()
        return "--- daemon log (" + str(self.log_path) + ") ---\n" + "\n".join(lines[-n:])

    def unexpected_errors(self):
        bad = []
        for line in self.log().splitlines():
            if _SANITIZER.search(line):
                bad.append(line)
            elif "error:" in line and not any(s in line for s in self.expected):
                bad.append(line)
        return bad

    def check_log(self):
        bad = self.unexpected_errors()
        assert not bad, ("daemon log has unexpected errors:\n  " + "\n  ".join(bad) + "\n"
                         + self.log_tail())

    def log_lines(self, level):
        return [l for l in self.log().splitlines() if f": {level}: " in l]

    # --- building VMs ------------------------------------------------------
    def make_vm(self, rel, policy=POLICY):
        d = self.m(rel)
        d.mkdir(parents=True, exist_ok=True)
        if policy is not None:
            (d / POLICY_NAME).write_text(policy)
        return d


# --- checks on backing files ---------------------------------------------------

def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def header_ok(data):
    """The first bytes of @data are an encrypted-file header prefix."""
    return (len(data) >= 18 and data[:14] == MAGIC
            and struct.unpack_from("<HH", data, 14) == (1, 1))


def plaintext_windows(plain, n=64, width=32):
    """Up to @n distinct @width-byte windows of @plain that are not all zero."""
    if len(plain) < width:
        # Shorter plaintext could match ciphertext by chance: only from 16 bytes.
        return [plain] if len(plain) >= 16 and plain.strip(b"\0") else []
    step = max(1, (len(plain) - width) // n)
    out = []
    for off in range(0, len(plain) - width + 1, step):
        w = plain[off:off + width]
        if w.strip(b"\0"):
            out.append(w)
    return out


def assert_encrypted(backing_path, plain=None, logical_size=None):
    """@backing_path is ciphertext: header, size = logical + 4096, and none of
    the plaintext @plain appears in it."""
    data = read(backing_path)
    size = len(plain) if plain is not None else logical_size
    assert header_ok(data), f"{backing_path}: no vmcryptfs header: {data[:20]!r}"
    if size is not None:
        assert len(data) == size + HDR, \
            f"{backing_path}: backing size {len(data)} != logical {size} + {HDR}"
    if plain is not None:
        for w in plaintext_windows(plain):
            assert w not in data, f"{backing_path}: plaintext {w!r} found in the backing file"
    return data


def assert_cleartext(backing_path, mount_path=None, plain=None):
    """@backing_path is byte-identical to what the mount shows (or @plain)."""
    data = read(backing_path)
    assert not data.startswith(MAGIC), f"{backing_path}: unexpectedly has a header"
    if mount_path is not None:
        assert data == read(mount_path), f"{backing_path} differs from {mount_path}"
    if plain is not None:
        assert data == plain, f"{backing_path} differs from the plaintext"
    return data


def is_encrypted(backing_path):
    with open(backing_path, "rb") as f:
        return header_ok(f.read(18))


def blocks(path):
    """Allocated 512-byte blocks of @path (not following symlinks)."""
    return os.lstat(path).st_blocks


def du_kib(path):
    """What du(1) says @path occupies, in KiB."""
    out = run(["du", "-k", "--", path]).stdout
    return int(out.split()[0])


def errno_of(fn, *args, **kw):
    """Call @fn and return the errno it failed with (0 if it did not fail)."""
    try:
        fn(*args, **kw)
    except OSError as e:
        return e.errno
    return 0


def open_errno(path, flags, mode=0o644):
    """The errno open(2) fails with, or 0 (closing the descriptor) if it opens."""
    try:
        fd = os.open(path, flags, mode)
    except OSError as e:
        return e.errno
    os.close(fd)
    return 0


@contextlib.contextmanager
def fd_open(path, flags, mode=0o644):
    fd = os.open(path, flags, mode)
    try:
        yield fd
    finally:
        os.close(fd)


ENOKEY = errno.ENOKEY


# --- vmcryptfs-ctl and the control socket ----------------------------------------

CTL = BUILD_DIR / "cli" / "vmcryptfs-ctl"

# cli/ctl_cli.h: the exit codes of vmcryptfs-ctl
EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_PERM = 3
EXIT_NOTFOUND = 4
EXIT_BUSY = 5
EXIT_KEY = 6
EXIT_NOSPACE = 7
EXIT_NODAEMON = 8
EXIT_PARTIAL = 9
EXIT_UNHEALTHY = 10

# lib/vmc_format.h: vmcryptfs' own names in the backing store
JOURNAL_NAME = ".vmcrypt.journal"
CONV_TMP_NAME = ".vmcrypt.conv.tmp"
DATASTORE_NAME = ".vmcrypt.datastore"
LOCK_DIR = ".vmcrypt.locks"


def ctl_config_text(keyfile, audit_log, extra="", syslog=False, remotes=()):
    """config_text() plus an audit section (JSON-lines log @audit_log, local
    syslog and remote targets as given) and @extra."""
    remote = ""
    if remotes:
        remote = "\tremote = {" + ", ".join(f'"{r}"' for r in remotes) + "}\n"
    return config_text(keyfile, "audit {\n"
                       f'\tlog = "{audit_log}"\n'
                       f"\tsyslog = {'true' if syslog else 'false'}\n"
                       + remote + "}\n" + extra)


class CtlResult:
    """What one vmcryptfs-ctl run gave: rc, out, err, and .json (the parsed
    stdout when --json was given and it parsed, else None)."""

    def __init__(self, argv, p, want_json):
        self.argv, self.rc, self.out, self.err = argv, p.returncode, p.stdout, p.stderr
        self.json = None
        if want_json and p.stdout.strip():
            try:
                self.json = json.loads(p.stdout)
            except ValueError:
                pass

    def __repr__(self):
        return (f"vmcryptfs-ctl {' '.join(map(str, self.argv[1:]))}: exit {self.rc}\n"
                f"--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}")


def ctl(mnt, *args, json_out=True, rc=0, timeout=300, socket=None, **kw):
    """Run `vmcryptfs-ctl -m MNT [--json] ARGS` (or -s SOCKET); the exit
    status must be @rc unless @rc is None. Extra keyword arguments go to
    subprocess (user=, group=, extra_groups=, env=...)."""
    argv = [str(CTL)] + (["-s", str(socket)] if socket else ["-m", str(mnt)])
    argv += (["--json"] if json_out else []) + [str(a) for a in args]
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.run(argv, timeout=timeout, text=True, **kw)
    res = CtlResult(argv, p, json_out)
    if rc is not None:
        assert res.rc == rc, f"expected exit {rc}\n{res!r}"
    return res


def ctl_request(sock_path, payload, timeout=20.0, on_line=None):
    """Send one raw request (bytes, str, or an object turned into JSON and a
    newline) to the control socket @sock_path and read JSON lines until one
    has "ok" or the daemon closes. Returns (final object or None, [every
    parsed line], raw bytes). @on_line(obj) sees each line as it arrives."""
    if isinstance(payload, (dict, list)):
        payload = (json.dumps(payload) + "\n").encode()
    elif isinstance(payload, str):
        payload = payload.encode()
    s = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
    s.connect(str(sock_path))           # blocking: waits while the listen backlog is full
    s.settimeout(timeout)
    raw = b""
    lines = []
    final = None
    try:
        try:
            if payload:
                s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon refused the rest: its answer is still readable
        buf = b""
        while final is None:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            raw += chunk
            buf += chunk
            while b"\n" in buf and final is None:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                obj = json.loads(line)
                lines.append(obj)
                if on_line:
                    on_line(obj)
                if isinstance(obj, dict) and "ok" in obj:
                    final = obj
    finally:
        s.close()
    return final, lines, raw


def ctl_socket_path(mnt):
    """The control socket of the mount @mnt, as vmcryptfs-ctl finds it."""
    return os.getxattr(str(mnt), "user.vmcryptfs.control").decode()


def audit_events(path):
    """The events of a JSON-lines audit log (missing file: none)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll @pred until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _str_field(b, off, size, length):
    return b[off:off + min(length, size)].decode(errors="replace")


def header_slots(backing_path):
    """The active key slots of an encrypted file's header (FORMAT.md 3.2):
    [{"index", "generation", "provider", "kek_id", "nonce", "wrapped", "tag"}]."""
    with open(backing_path, "rb") as f:
        h = f.read(HDR)
    assert header_ok(h), f"{backing_path}: no vmcryptfs header"
    out = []
    for i in range(4):
        s = h[512 + 512 * i:1024 + 512 * i]
        if s == bytes(512):
            continue
        plen = s[3]
        klen = struct.unpack_from("<H", s, 4)[0]
        out.append({"index": i, "state": s[0], "generation": struct.unpack_from("<Q", s, 8)[0],
                    "provider": _str_field(s, 16, 64, plen),
                    "kek_id": _str_field(s, 80, 256, klen),
                    "nonce": s[336:348], "wrapped": s[352:416], "tag": s[416:432]})
    return out


def vm_key_record(path):
    """The VM key record (FORMAT.md 4): {"state", "vm_uuid", "seq", "current":
    (provider, kek id), "next": (provider, kek id) or None}."""
    r = read(path)
    assert len(r) == 1024 and r[:14] == MAGIC and struct.unpack_from("<HH", r, 14) == (2, 1), \
        f"{path}: not a VM key record"

    def ref(off):
        b = r[off:off + 384]
        if b == bytes(384):
            return None
        return (_str_field(b, 32, 64, b[0]), _str_field(b, 96, 256,
                                                         struct.unpack_from("<H", b, 2)[0]))
    return {"state": r[56], "vm_uuid": r[24:40], "seq": struct.unpack_from("<Q", r, 40)[0],
            "current": ref(64), "next": ref(448)}


def unit_hashes(data, unit=UNIT):
    """Digests of the non-zero @unit-sized aligned pieces of @data."""
    out = set()
    for off in range(0, len(data) - unit + 1, unit):
        u = data[off:off + unit]
        if u.count(0) != unit:
            out.add(hashlib.blake2b(u, digest_size=16).digest())
    return out


def file_units_leak(path, hashes, unit=UNIT):
    """Offsets of @path's @unit-aligned pieces whose digest is in @hashes
    (plaintext units found in a backing file)."""
    found = []
    with open(path, "rb") as f:
        off = 0
        while True:
            block = f.read(64 * unit)
            if not block:
                break
            for i in range(0, len(block) - unit + 1, unit):
                if hashlib.blake2b(block[i:i + unit], digest_size=16).digest() in hashes:
                    found.append(off + i)
            off += len(block)
    return found


def ctl_ds(make_ds, root, name="ds", extra="", remotes=(), syslog=False, keydir=None,
           mount=True, **kw):
    """A datastore (from the make_ds fixture) whose configuration has an audit
    log of its own (ds.audit_log) and @extra sections; keys in @keydir (default
    ROOT/keys, shared by the test's datastores)."""
    keydir = Path(keydir) if keydir else Path(root) / "keys"
    audit = Path(root) / name / "audit.jsonl"
    cfg = ctl_config_text(keydir / "default.key", audit, extra, syslog, remotes)
    ds = make_ds(name, config=cfg, keydir=keydir, mount=False, **kw)
    ds.audit_log = audit
    if mount:
        ds.mount()
    return ds


def tree(root):
    """{relative path: bytes} of every regular file under @root (the backing
    store: vmcryptfs' own hidden files included, but not its runtime lock
    directory, whose files come and go with opens)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != LOCK_DIR]
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = read(p)
    return out
