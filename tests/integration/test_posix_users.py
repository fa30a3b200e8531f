# SPDX-License-Identifier: GPL-2.0-or-later
"""POSIX behaviour for real non-root users (issue 7): permission checks,
ownership and times through a mount with -o allow_other,default_permissions
behave as on the backing filesystem.

The users are numeric ids (no passwd entries; a forked child takes them with
setgroups / setresgid / setresuid):

    A  uid 61001, gid 61001, also in group G (61100)
    B  uid 61002, gid 61002, also in group G
    C  uid 61003, gid 61003, in no other group

The same tree of files and directories (owners, groups, modes, setgid and
sticky directories, scripts) is built three times: in a plain directory on
the backing filesystem (the reference), in a cleartext directory of the
mount, and in an encrypted VM directory of the mount (every file there is
ciphertext in the backing store; the users are granted the roles that allow
its plaintext, so only POSIX rules decide). The same operation sequence runs
as A, B and C in each, and the results are compared operation by operation:
the exact errno (EACCES, EPERM, ...) or the result (what was read, listed,
created with which owner, group and mode, which times changed).

Also: a mount without allow_other refuses other users (EACCES) whatever the
modes; and the operations backup tools use: tar -c of a VM through the mount,
tar -x into a fresh VM directory, compared entry by entry (content, type,
mode, owner, group, mtime to the nanosecond, symlinks, hard links, extended
attributes, holes), with the restored files encrypted again.
"""
import ctypes
import errno
import mmap
import os
import pickle
import select
import signal
import stat
import subprocess
import time
import traceback

import pytest

import vmctest
from vmctest import (POLICY, POLICY_NAME, assert_cleartext, assert_encrypted, config_text,
                     is_encrypted, mount_entry, punch_hole, read, run, write)

G = 61100
USERS = {"A": (61001, 61001, [61001, G]), "B": (61002, 61002, [61002, G]),
         "C": (61003, 61003, [61003])}
A, B, C = (USERS[u][0] for u in "ABC")
GRANTS = 'grant { user = "root" roles = { "Administrator" } }\n' + "".join(
    f'grant {{ user = "{uid}" roles = {{ "Administrator" }} }}\n' for uid in (A, B, C))
SCRIPT = b"#!/bin/sh\nexit 7\n"
T1, T2, T3 = 1_000_000_001_000_000_123, 1_100_000_002_000_000_456, 1_200_000_003_000_000_789

_libc = ctypes.CDLL(None, use_errno=True)
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
AT_FDCWD = -100


class _ts(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path, times):
    """utimensat(2); @times None or two (sec, nsec) pairs (nsec may be
    UTIME_NOW / UTIME_OMIT)."""
    arr = None if times is None else (_ts * 2)(_ts(*times[0]), _ts(*times[1]))
    if _libc.utimensat(AT_FDCWD, os.fsencode(path), arr, 0):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)


def ns(t):
    return (t // 10**9, t % 10**9)


# --- running code as another user --------------------------------------------------

def as_user(user, cwd, fn, umask=0o022, timeout=120):
    """Run @fn() in a forked child that chdir'ed to @cwd (as root, so the
    private temporary directories above need no search permission) and then
    became @user; returns what @fn returned (pickled through a pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            os.chdir(cwd)
            if user is not None:
                uid, gid, groups = USERS[user]
                os.setgroups(groups)
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
            os.umask(umask)
            out = ("ok", fn())
        except BaseException:  # noqa: B902 - reported to the parent
            out = ("exc", traceback.format_exc())
        try:
            data = pickle.dumps(out)
            while data:
                data = data[os.write(w, data):]
        except BaseException:  # noqa: B902
            code = 3
        os._exit(code)
    os.close(w)
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            raise AssertionError(f"as {user} in {cwd}: no answer after {timeout} s")
        b = os.read(r, 1 << 16)
        if not b:
            break
        data += b
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, f"as {user}: child failed"
    kind, val = pickle.loads(data)
    if kind == "exc":
        raise AssertionError(f"as {user} in {cwd}:\n{val}")
    return val


def attempt(fn, *args, **kw):
    """("ok", result) or the errno name of the OSError @fn raised."""
    try:
        return ("ok", fn(*args, **kw))
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)


def compare(ref, *others):
    """@ref and each of @others are lists of (label, result): equal, item by
    item, with a readable report of the differences."""
    report = []
    for name, got in others:
        assert [l for l, _ in got] == [l for l, _ in ref], f"{name}: different operations"
        diffs = [f"{l}: reference {a!r}, {name} {b!r}" for (l, a), (_, b) in zip(ref, got)
                 if a != b]
        if diffs:
            report.append(f"{name} differs from the backing filesystem in {len(diffs)} of "
                          f"{len(ref)} operations:\n  " + "\n  ".join(diffs[:40]))
    assert not report, "\n".join(report)


# --- the tree ------------------------------------------------------------------------

FILES = {   # name: (uid, gid, mode, content)
    "f600": (A, G, 0o600, None), "f640": (A, G, 0o640, None), "f660": (A, G, 0o660, None),
    "f604": (A, G, 0o604, None), "f606": (A, G, 0o606, None), "f000": (A, G, 0o000, None),
    "f400": (A, G, 0o400, None), "f200": (A, G, 0o200, None), "f060": (A, G, 0o060, None),
    "f006": (A, G, 0o006, None), "fB640": (B, G, 0o640, None), "fC644": (A, C, 0o644, None),
    "x755": (A, G, 0o755, SCRIPT), "x750": (A, G, 0o750, SCRIPT), "x700": (A, G, 0o700, SCRIPT),
    "x644": (A, G, 0o644, SCRIPT), "x711": (A, G, 0o711, SCRIPT), "x070": (A, G, 0o070, SCRIPT),
    "suid": (A, G, 0o4775, SCRIPT), "sgid": (A, G, 0o2775, SCRIPT),
}
DIRS = {    # name: (uid, gid, mode)
    "d755": (A, G, 0o755), "d711": (A, G, 0o711), "d744": (A, G, 0o744), "d770": (A, G, 0o770),
    "d730": (A, G, 0o730), "d700": (A, G, 0o700), "d777": (0, 0, 0o777),
    "sticky": (0, 0, 0o1777), "setgid": (A, G, 0o2777),
}


def content(name):
    return (f"content of {name}\n" * 300).encode()


def build(base):
    """The tree, made by root in @base (identical in every place)."""
    for name, (uid, gid, mode, data) in FILES.items():
        p = os.path.join(base, name)
        write(p, data if data is not None else content(name))
        os.chown(p, uid, gid)
        os.chmod(p, mode)
    for name, (uid, gid, mode) in DIRS.items():
        d = os.path.join(base, name)
        os.mkdir(d)
        write(os.path.join(d, "f"), content(name + "/f"))
        os.chown(os.path.join(d, "f"), A, G)
        os.chmod(os.path.join(d, "f"), 0o644)
        os.chown(d, uid, gid)
        os.chmod(d, mode)
    for who, uid in (("a", A), ("b", B)):
        p = os.path.join(base, "sticky", f"f{who}")
        write(p, content(p))
        os.chown(p, uid, uid)
        os.chmod(p, 0o666)


def places(ds, tmp_path):
    """The reference directory and the two directories of the mount (cleartext
    and an encrypted VM), each with the tree built and 0755 itself."""
    ref = tmp_path / "reference"
    ref.mkdir()
    plain = ds.m("plain")
    plain.mkdir()
    vm = ds.make_vm("vm")
    out = [("reference", ref), ("cleartext dir", plain), ("VM dir", vm)]
    for _, d in out:
        os.chmod(d, 0o755)
        build(d)
    for f in FILES:
        assert is_encrypted(ds.b("vm") / f), f
        assert not is_encrypted(ds.b("plain") / f), f
    return out


@pytest.fixture
def uds(make_ds):
    """A datastore mounted with allow_other,default_permissions whose
    grants give A, B and C the plaintext of encrypted files."""
    ds = make_ds("ds", options=["allow_other", "default_permissions"], mount=False)
    ds.config.write_text(config_text(ds.keyfile, GRANTS))
    ds.mount()
    return ds


def test_mount_options(uds, make_ds):
    """default_permissions is always on (the kernel checks access), and
    allow_other is passed to the kernel when asked for."""
    e = mount_entry(uds.mnt)
    opts = e["super"].split(",")
    assert "default_permissions" in opts and "allow_other" in opts, e
    other = make_ds("noallow")
    opts = mount_entry(other.mnt)["super"].split(",")
    assert "default_permissions" in opts and "allow_other" not in opts, opts


# --- permission checks -----------------------------------------------------------------

def _exec(path):
    try:
        return subprocess.run([path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=30).returncode
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)


def _read16(p):
    with open(p, "rb") as f:
        return f.read(16)


def _open(p, flags):
    os.close(os.open(p, flags))


def _new(p, mode=0o666):
    os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    st = os.lstat(p)
    return (st.st_uid, st.st_gid, oct(st.st_mode))


def _mkdir(p, mode=0o777):
    os.mkdir(p, mode)
    st = os.lstat(p)
    return (st.st_uid, st.st_gid, oct(st.st_mode))


def _owner_mode(p):
    st = os.lstat(p)
    return (st.st_uid, st.st_gid, oct(st.st_mode))


def _write_at(p, data, off=0):
    fd = os.open(p, os.O_WRONLY)
    try:
        os.pwrite(fd, data, off)
    finally:
        os.close(fd)
    return _owner_mode(p)


def access_ops(u):
    """The operation sequence of user @u, run in the tree's directory."""
    res = []

    def op(label, fn, *args, **kw):
        res.append((f"{u}: {label}", attempt(fn, *args, **kw)))

    for f in FILES:
        op(f"read {f}", _read16, f)
        op(f"open O_WRONLY {f}", _open, f, os.O_WRONLY)
        op(f"open O_RDWR {f}", _open, f, os.O_RDWR)
        op(f"open O_NOATIME {f}", _open, f, os.O_RDONLY | os.O_NOATIME)
        for m, mn in ((os.R_OK, "R"), (os.W_OK, "W"), (os.X_OK, "X")):
            op(f"access {mn} {f}", os.access, f, m)
        if f.startswith("x"):
            op(f"exec {f}", _exec, "./" + f)
    for d in DIRS:
        op(f"listdir {d}", lambda d=d: sorted(os.listdir(d)))
        op(f"stat {d}/f", lambda d=d: _owner_mode(f"{d}/f"))
        op(f"read {d}/f", _read16, f"{d}/f")
        op(f"chdir-less search {d}", os.access, f"{d}/f", os.F_OK)
        op(f"create {d}/n{u}", _new, f"{d}/n{u}")
        op(f"mkdir {d}/m{u}", _mkdir, f"{d}/m{u}")
        op(f"rename {d}/n{u}", os.rename, f"{d}/n{u}", f"{d}/r{u}")
        op(f"symlink {d}/s{u}", os.symlink, "f", f"{d}/s{u}")
        op(f"readlink {d}/s{u}", os.readlink, f"{d}/s{u}")
        op(f"unlink {d}/s{u}", os.unlink, f"{d}/s{u}")
        op(f"unlink {d}/r{u}", os.unlink, f"{d}/r{u}")
        op(f"rmdir {d}/m{u}", os.rmdir, f"{d}/m{u}")
    # chmod / chown rules: only the owner changes the mode; nobody but root
    # gives a file away; the owner may change the group to one of theirs.
    op("chmod f640 0644", os.chmod, "f640", 0o644)
    op("chmod f640 back", os.chmod, "f640", 0o640)
    op("chmod fC644 g+s (group not ours)", lambda: (os.chmod("fC644", 0o2644),
                                                    _owner_mode("fC644"))[1])
    op("chmod f604 g+s", lambda: (os.chmod("f604", 0o2604), _owner_mode("f604"))[1])
    op("chmod f604 back", os.chmod, "f604", 0o604)
    op("chown f600 to self", os.chown, "f600", USERS[u][0], -1)
    op("chown f600 to B", os.chown, "f600", B, -1)
    op("chown f600 unchanged", os.chown, "f600", -1, -1)
    op("chgrp f660 G", os.chown, "f660", -1, G)
    op("chgrp f660 own group", lambda: (os.chown("f660", -1, USERS[u][1]),
                                        _owner_mode("f660"))[1])
    op("chgrp f660 back to G", os.chown, "f660", -1, G)
    op("chgrp f660 C's group", os.chown, "f660", -1, C)
    op("symlink in d777", os.symlink, "../f600", f"d777/ls{u}")
    op("lchown own symlink", os.chown, f"d777/ls{u}", USERS[u][0], G, follow_symlinks=False)
    op("stat own symlink", _owner_mode, f"d777/ls{u}")
    op("lchown symlink of A", os.chown, "d777/lsA", USERS[u][0], -1, follow_symlinks=False)
    # times: explicit times need the owner; "now" needs write access
    op("utime now f660", os.utime, "f660")
    op("utime now f640", os.utime, "f640")
    op("utime explicit f660", os.utime, "f660", ns=(T1, T2))
    op("utimensat NOW,NOW f660", utimensat, "f660", ((0, UTIME_NOW), (0, UTIME_NOW)))
    op("utimensat OMIT,NOW f660", utimensat, "f660", ((0, UTIME_OMIT), (0, UTIME_NOW)))
    op("utimensat T,OMIT f660", utimensat, "f660", (ns(T1), (0, UTIME_OMIT)))
    op("utimensat OMIT,OMIT f600", utimensat, "f600", ((0, UTIME_OMIT), (0, UTIME_OMIT)))
    # size changes
    op("truncate f660", os.truncate, "f660", 100)
    op("truncate f640", os.truncate, "f640", 100)
    op("truncate f606 grow", os.truncate, "f606", 20000)
    # writes by others clear set-user-id and set-group-id bits
    op("write suid", _write_at, "suid", b"#!/bin/sh\nexit 8\n")
    op("write sgid", _write_at, "sgid", b"#!/bin/sh\nexit 9\n")
    op("exec suid after the write", _exec, "./suid")
    # hard links to files one cannot read and write (protected_hardlinks)
    op("link f600", os.link, "f600", f"d777/h{u}")
    op("unlink link", os.unlink, f"d777/h{u}")
    op("link f660", os.link, "f660", f"d777/h{u}")
    op("stat link", _owner_mode, f"d777/h{u}")
    op("unlink link again", os.unlink, f"d777/h{u}")
    # the sticky directory: only the owner of a file (or of the directory)
    # removes or renames it
    for who in "ab":
        op(f"rename sticky/f{who}", os.rename, f"sticky/f{who}", f"sticky/g{who}")
        op(f"rename back sticky/g{who}", os.rename, f"sticky/g{who}", f"sticky/f{who}")
        op(f"write sticky/f{who}", _write_at, f"sticky/f{who}", b"x")
        if who != u.lower():
            op(f"unlink sticky/f{who} (not ours)", os.unlink, f"sticky/f{who}")
    op("listdir sticky", lambda: sorted(os.listdir("sticky")))
    return res


def test_permission_checks(uds, tmp_path):
    ds = uds
    results = {}
    for name, d in places(ds, tmp_path):
        seq = []
        for u in "ABC":
            seq += as_user(u, d, lambda u=u: access_ops(u))
        # and the final state of the tree, as root sees it
        seq.append(("final tree", as_user(None, d, lambda: sorted(
            (p, _owner_mode(p)) for p in
            [os.path.join(r, n) for r, ds_, fs in os.walk(".") for n in ds_ + fs]
            if p != "./" + POLICY_NAME))))
        results[name] = seq
    ref = results.pop("reference")
    n_errs = sum(1 for _, r in ref if isinstance(r, str))
    assert n_errs > 100 and len(ref) - n_errs > 100, "the sequence tests too little"
    compare(ref, *results.items())
    # The VM's files stayed encrypted, whatever was done to them.
    for f in FILES:
        if os.path.exists(ds.b("vm") / f) and os.path.getsize(ds.b("vm") / f):
            assert is_encrypted(ds.b("vm") / f), f


# --- ownership of new objects ------------------------------------------------------------

def ownership_ops(u, umask):
    res = []

    def op(label, fn, *args):
        res.append((f"{u} umask {oct(umask)}: {label}", attempt(fn, *args)))

    t = f"{u}{umask:o}"
    for d in ("d777", "setgid", "sticky"):
        op(f"create {d}/c{t} 0666", _new, f"{d}/c{t}", 0o666)
        op(f"create {d}/e{t} 0777", _new, f"{d}/e{t}", 0o777)
        op(f"mkdir {d}/m{t} 0777", _mkdir, f"{d}/m{t}", 0o777)
        op(f"mkdir {d}/m{t}/n 0755", _mkdir, f"{d}/m{t}/n", 0o755)
        op(f"create {d}/m{t}/f", _new, f"{d}/m{t}/f", 0o640)
        op(f"mkfifo {d}/p{t}", lambda p=f"{d}/p{t}": (os.mkfifo(p, 0o666), _owner_mode(p))[1])
        op(f"symlink {d}/l{t}", lambda p=f"{d}/l{t}": (os.symlink("target", p),
                                                        _owner_mode(p))[1])
    return res


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o077])
def test_ownership_of_new_objects(uds, tmp_path, umask):
    """New files, directories, fifos and symlinks belong to the caller's uid
    and gid; in a setgid directory they take its group, and directories
    inherit the setgid bit; the umask applies once (the kernel's)."""
    ds = uds
    results = {}
    for name, d in places(ds, tmp_path):
        seq = []
        for u in "ABC":
            seq += as_user(u, d, lambda u=u: ownership_ops(u, umask), umask=umask)
        results[name] = seq
    ref = results.pop("reference")
    # the reference itself says what the rules are
    got = dict(ref)
    assert got[f"A umask {oct(umask)}: create d777/cA{umask:o} 0666"][1][:2] == (A, A)
    assert got[f"C umask {oct(umask)}: create setgid/cC{umask:o} 0666"][1][:2] == (C, G)
    assert got[f"B umask {oct(umask)}: mkdir setgid/mB{umask:o} 0777"][1][2].startswith("0o42")
    compare(ref, *results.items())


def setid_ops(u):
    res = []
    for d in ("d777", "setgid"):
        for mode in (0o2775, 0o4755, 0o6755, 0o2770):
            p = f"{d}/{u or 'root'}{mode:o}"
            res.append((f"{u or 'root'}: create {p} {oct(mode)}", attempt(_new, p, mode)))
    return res


def test_create_keeps_setid_bits(uds, tmp_path):
    """open(O_CREAT) with S_ISUID / S_ISGID in the mode keeps them (as on the
    backing filesystem), for users and for root."""
    ds = uds
    results = {}
    for name, d in places(ds, tmp_path):
        seq = []
        for u in ("A", "C", None):
            seq += as_user(u, d, lambda u=u: setid_ops(u), umask=0o022)
        results[name] = seq
    ref = results.pop("reference")
    assert dict(ref)["A: create d777/A2775 0o2775"] == ("ok", (A, A, "0o102755"))
    compare(ref, *results.items())


# --- times ---------------------------------------------------------------------------------

def _times(p):
    st = os.lstat(p)
    return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns


def _mmap_write(p):
    with open(p, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[10:20] = b"0123456789"
        m.flush()


def _fallocate(p, mode, off, ln):
    fd = os.open(p, os.O_RDWR)
    try:
        vmctest.fallocate(fd, mode, off, ln)
    finally:
        os.close(fd)


def _punch(p):
    fd = os.open(p, os.O_RDWR)
    try:
        punch_hole(fd, 4096, 4096)
    finally:
        os.close(fd)


def _ftruncate(p, size):
    fd = os.open(p, os.O_RDWR)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _append(p):
    with open(p, "ab") as f:
        f.write(b"appended")


def _rename_back(p):
    os.rename(p, p + ".moved")
    os.rename(p + ".moved", p)


# (label, function of the path, is a directory operation, the operation itself
# reads or sets the access time)
TIME_OPS = [
    ("read", lambda p: open(p, "rb").read(), False, True),
    ("read 1 byte", lambda p: open(p, "rb").read(1), False, True),
    ("stat", os.stat, False, False),
    ("open O_RDONLY, close", lambda p: os.close(os.open(p, os.O_RDONLY)), False, False),
    ("open O_WRONLY, close", lambda p: os.close(os.open(p, os.O_WRONLY)), False, False),
    ("write 10 bytes", lambda p: _write_at(p, b"x" * 10, 5), False, False),
    ("write unit-aligned", lambda p: _write_at(p, b"y" * 4096, 4096), False, False),
    ("append", _append, False, False),
    ("mmap write", _mmap_write, False, False),
    ("ftruncate down", lambda p: _ftruncate(p, 5000), False, False),
    ("ftruncate up", lambda p: _ftruncate(p, 50000), False, False),
    ("truncate by path", lambda p: os.truncate(p, 3000), False, False),
    ("open O_TRUNC", lambda p: os.close(os.open(p, os.O_WRONLY | os.O_TRUNC)), False, False),
    ("fallocate keep size",
     lambda p: _fallocate(p, vmctest.FALLOC_FL_KEEP_SIZE, 0, 65536), False, False),
    ("fallocate extend", lambda p: _fallocate(p, 0, 0, 65536), False, False),
    ("punch hole", _punch, False, False),
    ("fsync", lambda p: (lambda fd: (os.fsync(fd), os.close(fd)))(os.open(p, os.O_RDWR)),
     False, False),
    ("utime now", lambda p: os.utime(p), False, True),
    ("utimensat NOW,OMIT", lambda p: utimensat(p, ((0, UTIME_NOW), (0, UTIME_OMIT))), False,
     True),
    ("utimensat OMIT,NOW", lambda p: utimensat(p, ((0, UTIME_OMIT), (0, UTIME_NOW))), False,
     False),
    ("utimensat OMIT,OMIT", lambda p: utimensat(p, ((0, UTIME_OMIT), (0, UTIME_OMIT))), False,
     False),
    ("utimensat T3,OMIT", lambda p: utimensat(p, (ns(T3), (0, UTIME_OMIT))), False, True),
    ("utimensat OMIT,T3", lambda p: utimensat(p, ((0, UTIME_OMIT), ns(T3))), False, False),
    ("chmod", lambda p: os.chmod(p, 0o640), False, False),
    ("chown to self", lambda p: os.chown(p, A, -1), False, False),
    ("setxattr", lambda p: os.setxattr(p, "user.t", b"v"), False, False),
    ("rename and back", _rename_back, False, False),
    ("link and unlink", lambda p: (os.link(p, p + ".l"), os.unlink(p + ".l")), False, False),
    # directory times (the operation's argument is the directory)
    ("listdir", lambda d: os.listdir(d), True, True),
    ("create in dir", lambda d: _new(os.path.join(d, "new")), True, False),
    ("unlink in dir", lambda d: os.unlink(os.path.join(d, "f")), True, False),
    ("mkdir in dir", lambda d: os.mkdir(os.path.join(d, "sub")), True, False),
    ("rename in dir", lambda d: os.rename(os.path.join(d, "f"), os.path.join(d, "g")), True,
     False),
    ("rename out of dir", lambda d: os.rename(os.path.join(d, "f"), d + "-moved"), True, False),
    ("chmod dir", lambda d: os.chmod(d, 0o750), True, False),
]
TRUNCATE_SAME = [("ftruncate same size", lambda p: _ftruncate(p, os.stat(p).st_size), False,
                  False)]


def _changed(before, after):
    return "".join(k for k, a, b in zip("amc", before, after) if a != b)


def times_ops(bfd, ops):
    """For each operation of @ops, on a fresh file (or directory) with old
    times (atime < mtime, so relatime refreshes atime on a read): which of
    atime, mtime and ctime changed, as stat shows them through the tree
    ("view") and as the backing filesystem holds them ("backing": read
    through @bfd, an O_PATH descriptor of the same directory in the backing
    store, past the kernel's attribute cache), and the times left at, or set
    to, the values the test chose. Runs as A (the owner)."""
    res = []
    for i, (label, fn, is_dir, _) in enumerate(ops):
        d = f"t{i}"
        os.mkdir(d)
        p = os.path.join(d, "f")
        _new(p, 0o644)
        _write_at(p, bytes(range(256)) * 64)         # 16 KiB of data
        target = d if is_dir else p
        os.utime(target, ns=(T1, T2))

        def backing():
            st = os.stat(target, dir_fd=bfd, follow_symlinks=False)
            return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        before, bbefore = _times(target), backing()
        time.sleep(0.03)                            # past the timestamp granularity
        r = attempt(fn, target)
        after, bafter = _times(target), backing()
        res.append((label, {"result": r if isinstance(r, str) else "ok",
                            "view": _changed(before, after), "backing": _changed(bbefore, bafter),
                            "atime": after[0] if after[0] in (T1, T2, T3) else "other",
                            "mtime": after[1] if after[1] in (T1, T2, T3) else "other"}))
    return res


def run_times(ds, tmp_path, ops):
    """times_ops in the reference directory, a cleartext directory of the
    mount and a VM directory; {place: [(label, result)]}."""
    results = {}
    for name, d, b in (("reference", tmp_path / "reference", tmp_path / "reference"),
                       ("cleartext dir", ds.m("plain"), ds.b("plain")),
                       ("VM dir", ds.make_vm("vm"), ds.b("vm"))):
        d.mkdir(exist_ok=True)
        os.chown(d, A, A)
        bfd = os.open(b, os.O_PATH | os.O_DIRECTORY)
        try:
            results[name] = as_user("A", d, lambda: times_ops(bfd, ops))
        finally:
            os.close(bfd)
    for i, (label, _, is_dir, _) in enumerate(ops):
        p = ds.b("vm") / f"t{i}" / "f"
        if not is_dir and os.path.exists(p) and os.path.getsize(p):
            assert is_encrypted(p), label
    return results


def _without_atime(results, ops):
    """The results, keeping the access time only for the operations that
    read or set it themselves."""
    reads = {label for label, _, _, a in ops if a}
    out = {}
    for place, seq in results.items():
        out[place] = []
        for label, r in seq:
            r = dict(r)
            if label not in reads:
                r["view"], r["backing"] = (r["view"].replace("a", ""),
                                           r["backing"].replace("a", ""))
                del r["atime"]
            out[place].append((label, r))
    return out


def test_times(uds, tmp_path):
    """Which of mtime and ctime each operation changes, and the access time
    of the operations that read or set it, as on the backing filesystem;
    explicit times exactly."""
    results = _without_atime(run_times(uds, tmp_path, TIME_OPS), TIME_OPS)
    ref = results.pop("reference")
    got = dict(ref)
    # the reference itself shows the rules this test is about
    assert got["write 10 bytes"]["view"] == "mc" and got["write 10 bytes"]["mtime"] == "other"
    assert got["rename and back"]["view"] == "c", got["rename and back"]
    assert got["read"]["view"] == "a" and got["stat"]["view"] == ""
    assert got["utimensat OMIT,T3"]["mtime"] == T3 and got["utimensat OMIT,T3"]["view"] == "mc"
    assert got["utimensat T3,OMIT"]["atime"] == T3 and got["utimensat T3,OMIT"]["view"] == "ac"
    assert got["utimensat OMIT,OMIT"]["view"] == "" and got["utimensat OMIT,OMIT"]["mtime"] == T2
    assert got["create in dir"]["view"] == "mc" and got["chmod dir"]["view"] == "c"
    compare(ref, *results.items())


def test_times_atime_untouched_by_writes(uds, tmp_path):
    """Operations that do not read a file leave its access time alone, as
    on the backing filesystem: seen through the mount and in the backing
    store."""
    results = run_times(uds, tmp_path, TIME_OPS)
    ref = results.pop("reference")
    compare(ref, *results.items())


def test_times_truncate_to_the_same_size(uds, tmp_path):
    results = _without_atime(run_times(uds, tmp_path, TRUNCATE_SAME), TRUNCATE_SAME)
    ref = results.pop("reference")
    assert dict(ref)["ftruncate same size"]["view"] == "mc"
    compare(ref, *results.items())


# --- allow_other -------------------------------------------------------------------------

def test_other_users_without_allow_other(make_ds, tmp_path):
    """Without allow_other only the mounting user (root) reaches the mount:
    every other user gets EACCES, even on files that are world-readable."""
    ds = make_ds("ds", mount=False)
    ds.config.write_text(config_text(ds.keyfile, GRANTS))
    ds.mount()
    vm = ds.make_vm("vm")
    write(vm / "open.nvram", b"o" * 5000)
    write(ds.m("pub.log"), b"public\n")
    for p in (ds.m(), vm, vm / "open.nvram", ds.m("pub.log")):
        os.chmod(p, 0o777 if os.path.isdir(p) else 0o666)

    def ops():
        return [attempt(os.stat, "."), attempt(os.listdir, "."), attempt(_read16, "open.nvram"),
                attempt(os.stat, "open.nvram"), attempt(_new, "x.log"),
                attempt(os.open, "../pub.log", os.O_RDONLY), attempt(os.access, ".", os.F_OK)]
    for u in "ABC":
        got = as_user(u, vm, ops)
        assert got[:-1] == ["EACCES"] * 6, (u, got)
        assert got[-1] == ("ok", False), (u, got)
    # root (the user who mounted) works as before
    assert read(vm / "open.nvram") == b"o" * 5000
    assert as_user(None, vm, lambda: _read16("open.nvram")) == b"o" * 16
    assert not os.path.exists(ds.b("vm/x.log"))


# --- backup tools: tar -----------------------------------------------------------------

def _tree_entries(root):
    """{relative path: attributes} of everything under @root (not following
    symlinks), content included, for comparing a restore with its source."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames + ([] if dirpath != str(root) else ["."]):
            p = os.path.join(dirpath, n) if n != "." else str(root)
            st = os.lstat(p)
            e = {"type": stat.S_IFMT(st.st_mode), "mode": oct(stat.S_IMODE(st.st_mode)),
                 "uid": st.st_uid, "gid": st.st_gid, "mtime": st.st_mtime_ns}
            if stat.S_ISREG(st.st_mode):
                e["size"] = st.st_size
                e["data"] = read(p)
                e["nlink"] = st.st_nlink
                e["xattrs"] = {k: os.getxattr(p, k) for k in os.listxattr(p)
                               if k.startswith("user.")}
            elif stat.S_ISLNK(st.st_mode):
                e["target"] = os.readlink(p)
            out[os.path.relpath(p, root)] = e
    return out


def test_tar_backup_and_restore(uds, tmp_path):
    """tar -c of a VM through the mount, tar -x into a fresh VM directory:
    the restore equals the source (content, type, mode, owner, group, mtime,
    symlinks, hard links, extended attributes), holes stay holes, and the
    restored files are encrypted again under the new VM."""
    ds = uds
    src = ds.make_vm("src")
    disk = src / "disk-flat.vmdk"
    with open(disk, "wb") as f:
        f.truncate(8 << 20)
        f.seek(1 << 20)
        f.write(b"D" * 65536)
        f.seek(6 << 20)
        f.write(b"E" * 4097)
    write(src / "a.nvram", os.urandom(8684))
    os.setxattr(src / "a.nvram", "user.backup", b"keep me")
    write(src / "vmware.log", b"log line\n" * 100)
    write(src / "x.vmx", b'displayName = "src"\n')
    write(src / "empty.vswp", b"")
    (src / "snap").mkdir()
    write(src / "snap" / "s.vmsn", os.urandom(5000))
    os.link(src / "a.nvram", src / "hard.nvram")
    os.symlink("a.nvram", src / "link")
    owners = {"a.nvram": (A, G, 0o640), "vmware.log": (B, B, 0o644), "x.vmx": (B, G, 0o600),
              "empty.vswp": (C, C, 0o604), "snap": (A, G, 0o2750), "snap/s.vmsn": (A, G, 0o440),
              "disk-flat.vmdk": (A, G, 0o660), ".": (A, G, 0o755)}
    for rel, (uid, gid, mode) in owners.items():
        os.chown(src / rel, uid, gid)
        os.chmod(src / rel, mode)
    os.chown(src / "link", C, C, follow_symlinks=False)
    for i, rel in enumerate(["disk-flat.vmdk", "a.nvram", "vmware.log", "x.vmx", "empty.vswp",
                             "snap/s.vmsn", POLICY_NAME, "link", "snap", "."]):
        os.utime(src / rel, ns=(T1 + i, T2 + 1000 * i + 7), follow_symlinks=False)
    before = _tree_entries(src)
    assert before["hard.nvram"]["nlink"] == 2 and before["link"]["target"] == "a.nvram"
    assert os.stat(ds.b("src/disk-flat.vmdk")).st_blocks * 512 < 1 << 20

    archive = tmp_path / "backup.tar"
    run(["tar", "--create", "--format=posix", "--xattrs", "--sparse", "--numeric-owner",
         "-f", archive, "-C", src, "."])
    dst = ds.m("restored")
    dst.mkdir()
    write(dst / POLICY_NAME, POLICY.encode())        # the new VM is encrypted from its first file
    run(["tar", "--extract", "--xattrs", "--xattrs-include=user.*", "--numeric-owner",
         "--same-owner", "--same-permissions", "-f", archive, "-C", dst])
    after = _tree_entries(dst)
    # tar restores the directory itself too; the source had the same
    diffs = [f"{k}: {before.get(k)!r:.200} != {after.get(k)!r:.200}"
             for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    assert not diffs, "restore differs from its source:\n  " + "\n  ".join(diffs)
    assert os.stat(dst / "hard.nvram").st_ino == os.stat(dst / "a.nvram").st_ino
    # In the backing store: ciphertext for the encrypted classes, holes kept.
    for rel in ("disk-flat.vmdk", "a.nvram", "snap/s.vmsn"):
        assert_encrypted(ds.b("restored") / rel, before[rel]["data"])
    for rel in ("vmware.log", "x.vmx"):
        assert_cleartext(ds.b("restored") / rel, plain=before[rel]["data"])
    assert os.stat(ds.b("restored/disk-flat.vmdk")).st_blocks * 512 < 1 << 20, \
        "the restored thin disk is not sparse"
    # The archive holds plaintext (a backup through the mount), not ciphertext.
    listing = run(["tar", "--list", "-v", "--numeric-owner", "-f", archive]).stdout
    assert "./a.nvram" in listing and f"{A}/{G}" in listing
    assert run(["tar", "--extract", "-O", "-f", archive, "./x.vmx"]).stdout == \
        'displayName = "src"\n'
