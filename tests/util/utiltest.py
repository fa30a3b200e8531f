# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers of the vmcryptfs-util tests: running the tool (and vmcryptfs-ctl),
its exit codes, building VMs through a mount, damaging headers on purpose,
an interrupted shallow rekey, and the fuzz corpus of every file made."""
import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import vmctest  # noqa: E402
from vmctest import BUILD_DIR, PLUGINS, read, run, write  # noqa: E402,F401

UTIL = BUILD_DIR / "cli" / "vmcryptfs-util"
CTL = BUILD_DIR / "cli" / "vmcryptfs-ctl"

# cli/util_cli.h: the exit codes of vmcryptfs-util
EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NONCOMPLIANT = 3
EXIT_NOTFOUND = 4
EXIT_DAMAGED = 5
EXIT_KEY = 6

CORPUS = os.environ.get("VMC_UTIL_CORPUS")


class Result:
    """One run of the tool: rc, out, err (text, or bytes with binary=True)
    and .json (stdout parsed when --json was given)."""

    def __init__(self, argv, p, want_json):
        self.argv, self.rc, self.out, self.err = argv, p.returncode, p.stdout, p.stderr
        self.json = json.loads(p.stdout) if want_json and p.stdout.strip() else None

    def __repr__(self):
        return (f"{' '.join(map(str, self.argv))}: exit {self.rc}\n"
                f"--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}")


def util(*args, config=None, rc=EXIT_OK, json_out=True, binary=False, keyprov=True,
         timeout=300, **kw):
    """vmcryptfs-util [--config C] [--keyprov-dir PLUGINS] [--json] ARGS; the
    exit status must be @rc unless @rc is None."""
    argv = [str(UTIL)]
    if config is not None:
        argv += ["--config", str(config)]
    if keyprov:
        argv += ["--keyprov-dir", str(PLUGINS)]
    if json_out:
        argv.append("--json")
    argv += [str(a) for a in args]
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.run(argv, timeout=timeout, text=not binary, **kw)
    res = Result(argv, p, json_out and not binary)
    if rc is not None:
        assert res.rc == rc, f"expected exit {rc}\n{res!r}"
    assert "runtime error:" not in str(res.err) and "==ERROR" not in str(res.err), repr(res)
    return res


def ctl(mnt, *args, rc=0, **kw):
    """vmcryptfs-ctl -m MNT --json ARGS."""
    argv = [str(CTL), "-m", str(mnt), "--json"] + [str(a) for a in args]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, text=True, timeout=300, **kw)
    if rc is not None:
        assert p.returncode == rc, f"{argv}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


@contextlib.contextmanager
def environ(**env):
    """Set environment variables for the children started inside (the daemon
    is started with subprocess.Popen and inherits them)."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def forget_dead_daemon(ds):
    """The daemon of @ds ended by itself (a test crash point): reap it and
    clean up its dead mount with a lazy unmount. Returns its exit status."""
    proc, ds.proc = ds.proc, None
    rc = proc.wait(timeout=vmctest.EXIT_TIMEOUT)
    run(["fusermount3", "-u", "-z", ds.mnt], check=False)
    vmctest.wait_unmounted(ds.mnt)
    return rc


def interrupted_rekey(ds, vm):
    """Start a shallow rekey of @vm that the daemon's crash point
    rekey-new-slot ends right after the first file got its second slot (the
    datastore must be unmounted; it is left unmounted)."""
    with environ(VMCRYPTFS_FAULT="rekey-new-slot:1"):
        ds.mount()
    ctl(ds.mnt, "rekey", vm, rc=None)
    assert forget_dead_daemon(ds) == 99, ds.log_tail()


def make_vm(ds, name, files, policy=vmctest.POLICY):
    """A VM directory written through the mount: @files maps names to bytes."""
    d = ds.make_vm(name, policy=policy)
    for fname, data in files.items():
        write(d / fname, data)
    return d


def flip(path, offset, mask=0x01):
    """XOR the byte at @offset of @path with @mask."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ mask]))


def corpus_add(path):
    """The first 4096 bytes of @path into the fuzz corpus (when collecting)."""
    if not CORPUS or not os.path.isfile(path) or os.path.islink(path):
        return
    with open(path, "rb") as f:
        data = f.read(vmctest.HDR)
    name = hashlib.sha1(data).hexdigest()[:20]
    with contextlib.suppress(FileExistsError):
        with open(os.path.join(CORPUS, name), "xb") as out:
            out.write(data)


def corpus_add_tree(root):
    for dirpath, _, files in os.walk(root):
        for f in files:
            corpus_add(os.path.join(dirpath, f))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def by_path(files):
    """{file: entry} of describe --json's "files"."""
    return {Path(e["file"]).name: e for e in files}
