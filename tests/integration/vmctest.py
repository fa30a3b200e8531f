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
import os
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

BUILD_DIR = Path(os.environ.get("VMC_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"))
DAEMON = BUILD_DIR / "fs" / "vmcryptfs"
PLUGINS = BUILD_DIR / "plugins"

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

    def mount(self, options=None):
        assert self.proc is None, "already mounted"
        assert DAEMON.exists(), f"{DAEMON} not built (VMC_BUILD_DIR={BUILD_DIR})"
        with open(self.log_path, "ab") as log:
            log.write(f"=== mount #{self.mounts + 1}: {' '.join(self.argv(options))}\n"
                      .encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(options), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
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
