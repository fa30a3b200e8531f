# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile links planted in a datastore (issue 7): a symlink or a hard link
planted in a VM directory never makes the daemon read or write outside the
backing directory for its own work (policies, key records, headers, rekey,
conversion).

The attacker has write access to the backing store (as anyone with access to
an NFS export has) and plants, in the BACKING directory, or through the mount
where the mount allows it:

* vmcrypt.policy as a symlink to a file outside (a valid policy naming
  another storage policy);
* .vmcrypt.state (the VM key record) and .vmcrypt.datastore as symlinks to
  valid key records outside;
* .vmcrypt.journal and .vmcrypt.conv.tmp as symlinks to files outside, with
  and without a journal that makes a conversion resume into the copy, and
  .vmcrypt.conv.tmp as a hard link of a file outside;
* VM files (a disk, a home file) as symlinks to files outside;
* VM files as hard links of files outside (cleartext, and a copy of an
  encrypted file whose key the host has);
* a VM directory, and a subdirectory of a VM, as symlinks to directories
  outside;
* the temporary names the daemon writes before a rename (.vmcrypt.state.tmp,
  .vmcrypt.journal.tmp) and the datastore's lock directory (.vmcrypt.locks)
  as symlinks to outside; and vmcryptfs-util scan over all of it.

"Outside" is a tree next to the backing directory, on the same filesystem
(hard links need that). Its files have an access time older than their
modification time, so with relatime any read of them updates the access
time: the snapshots below (taken with O_NOATIME) catch reads through
symlinks, not only writes. Hard links are the backing directory's own names
for the inode, so reading them is allowed there: for them content, mode,
owner and times except atime are compared.

For each case the daemon's own work is run: mount (a remount with the links
present), status, open / read / write through the mount, vmcryptfs-ctl
encrypt, rekey, rekey --deep, decrypt (and, for a symlinked VM directory,
the same verbs straight on the control socket, since vmcryptfs-ctl resolves
paths itself), after each of which the outside tree must be unchanged; and
each operation either fails with a clear error (naming the symbolic link or
the hard links) or leaves the link alone, as fs/ and lib/ promise (O_NOFOLLOW
everywhere, EMLINK for conversions of files with several links).
"""
import errno
import os
import stat
from pathlib import Path

import pytest

from vmctest import (CONV_TMP_NAME, DATASTORE_NAME, EXIT_NOTFOUND, EXIT_USAGE, JOURNAL_NAME,
                     POLICY, POLICY_NAME, STATE_NAME, assert_encrypted, ctl_ds, ctl_request,
                     ctl_socket_path, errno_of, header_slots, is_encrypted, read, run, write)
import vmctest

GOLD = 'policy "gold" {\n\tprovider = "native"\n\tdisks = false\n}\n'
OUT_POLICY = b'# planted\npolicy = "gold"\n'
OLD_ATIME = 1_000_000_000 * 10**9      # 2001
OLD_MTIME = 1_500_000_000 * 10**9      # 2017: atime < mtime, a read updates atime


# --- the outside tree --------------------------------------------------------------

def _read_noatime(p):
    fd = os.open(p, os.O_RDONLY | os.O_NOATIME | os.O_NOFOLLOW)
    try:
        out = b""
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return out
            out += b
    finally:
        os.close(fd)


def _entry(p, atime):
    st = os.lstat(p)
    e = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
         "gid": st.st_gid, "size": st.st_size, "mtime": st.st_mtime_ns,
         "xattrs": {n: os.getxattr(p, n, follow_symlinks=False)
                    for n in os.listxattr(p, follow_symlinks=False)}}
    if atime:
        e["atime"] = st.st_atime_ns
    if stat.S_ISREG(st.st_mode):
        e["data"] = _read_noatime(p)
    elif stat.S_ISLNK(st.st_mode):
        e["target"] = os.readlink(p)
    elif stat.S_ISDIR(st.st_mode):
        fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOATIME)
        try:
            e["names"] = sorted(os.listdir(fd))
        finally:
            os.close(fd)
    return e


class Outside:
    """A tree outside the backing directory, on the same filesystem."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir()
        self.no_atime = set()       # hard-linked files: the daemon may read them

    def file(self, rel, data, mode=0o644):
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        write(p, data)
        os.chmod(p, mode)
        os.setxattr(p, "user.outside", b"do not touch")
        return p

    def seal(self):
        """Old atimes, older than the mtimes, on everything (bottom-up)."""
        for dirpath, dirnames, filenames in os.walk(self.root, topdown=False):
            for n in filenames + dirnames:
                os.utime(os.path.join(dirpath, n), ns=(OLD_ATIME, OLD_MTIME),
                         follow_symlinks=False)
        os.utime(self.root, ns=(OLD_ATIME, OLD_MTIME))
        self.before = self.snapshot()
        return self

    def snapshot(self):
        """Every entry's attributes and content, taken without changing
        any access time (O_NOATIME for files and directories)."""
        out = {}

        def walk(p, rel):
            e = out[rel] = _entry(p, rel not in self.no_atime)
            if e["type"] == stat.S_IFDIR:
                for n in e["names"]:
                    walk(os.path.join(p, n), n if rel == "." else os.path.join(rel, n))
        walk(str(self.root), ".")
        return out

    def check(self, after):
        now = self.snapshot()
        diffs = []
        for k in sorted(set(now) | set(self.before)):
            a, b = self.before.get(k), now.get(k)
            if a != b:
                what = ("gone" if b is None else "new" if a is None else
                        ", ".join(f"{f}: {str(a[f])[:60]} -> {str(b.get(f))[:60]}"
                                  for f in a if a[f] != b.get(f)))
                diffs.append(f"outside/{k}: {what}")
        assert not diffs, f"after {after}, the tree outside the backing directory changed:\n  " \
            + "\n  ".join(diffs)


@pytest.fixture
def lds(make_ds, tmp_path):
    """A datastore with an audit log and a second policy, "gold" (home files
    only), which only the planted outside policy names."""
    return ctl_ds(make_ds, tmp_path, extra=GOLD)


@pytest.fixture
def outside(tmp_path):
    return Outside(tmp_path / "outside")


def plant_symlink(link, target, relative):
    """Plant @link -> @target, as an absolute or a relative symlink."""
    t = os.path.relpath(target, os.path.dirname(link)) if relative else str(target)
    if relative:
        assert t.startswith("../"), t
    os.symlink(t, link)
    return t


def raw(ds, verb, **args):
    """A request straight on the control socket (no path resolution by
    vmcryptfs-ctl): the final answer."""
    final, _, _ = ctl_request(ctl_socket_path(ds.mnt), {"verb": verb, "args": args}, timeout=120)
    assert final is not None, f"{verb}: no answer"
    return final


def msg(r):
    """The error text of a vmcryptfs-ctl run, lower case."""
    return (r.err + r.out).lower()


def ctl_ops(ds, vm, outside, skip=()):
    """status, encrypt, rekey, rekey --deep, decrypt on @vm (mount path),
    checking the outside tree after each; returns {op: CtlResult}."""
    res = {}
    for op in (("status",), ("encrypt",), ("rekey",), ("rekey", "--deep"), ("decrypt",)):
        name = " ".join(op)
        if name in skip:
            continue
        res[name] = ds.ctl(*op, ds.m(vm), rc=None)
        outside.check(f"vmcryptfs-ctl {name} {vm}")
        assert ds.proc.poll() is None, "the daemon died\n" + ds.log_tail()
    return res


# --- vmcrypt.policy ------------------------------------------------------------------

@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_policy_symlink(lds, outside, relative):
    ds = lds
    ds.expect_error("symbolic link")
    pol = outside.file("policy", OUT_POLICY)
    outside.seal()
    # vmA: a VM whose only policy is the planted link (cleartext files).
    vma = ds.b("vmA")
    vma.mkdir()
    write(vma / "a.nvram", b"A" * 9000)
    write(vma / "vmware.log", b"log\n")
    target = plant_symlink(vma / POLICY_NAME, pol, relative)
    # vmB: an encrypted VM whose policy file is replaced by the link.
    vmb = ds.make_vm("vmB")
    write(vmb / "b.nvram", b"B" * 9000)
    assert is_encrypted(ds.b("vmB/b.nvram"))
    os.unlink(ds.b("vmB") / POLICY_NAME)
    plant_symlink(ds.b("vmB") / POLICY_NAME, pol, relative)
    # vmC: the link made through the mount.
    ds.m("vmC").mkdir()
    write(ds.m("vmC/c.nvram"), b"C" * 9000)         # no policy yet: cleartext
    os.symlink(target if relative else str(pol), ds.m("vmC") / POLICY_NAME)
    assert os.path.islink(ds.b("vmC") / POLICY_NAME)
    outside.check("planting")
    ds.remount()
    outside.check("mount")

    for vm in ("vmA", "vmB", "vmC"):
        st = os.lstat(ds.m(vm) / POLICY_NAME)
        assert stat.S_ISLNK(st.st_mode), f"{vm}: the policy link does not show as a link"
        v = ds.ctl("status", ds.m(vm)).json["vms"][0]
        assert v["policy"] is None and "symbolic link" in v.get("policy_error", ""), v
    assert ds.ctl("status").json["vms"], "status lists nothing"
    assert all(v.get("policy") != "gold" for v in ds.ctl("status").json["vms"])
    outside.check("status")

    # Reading never depends on the policy; nothing that might have to be
    # encrypted is written under an unusable policy; cleartext classes are.
    assert read(ds.m("vmA/a.nvram")) == b"A" * 9000
    assert read(ds.m("vmB/b.nvram")) == b"B" * 9000
    for vm in ("vmA", "vmB", "vmC"):
        assert errno_of(write, ds.m(vm) / "new.nvram", b"n" * 5000) == errno.EIO, vm
        assert not os.path.lexists(ds.b(vm) / "new.nvram")
        write(ds.m(vm) / "more.log", b"ok\n", "ab")
    assert errno_of(write, ds.m("vmA/a.nvram"), b"more", "ab") == errno.EIO
    assert errno_of(write, ds.m("vmB/b-flat.vmdk"), b"d" * 5000) == errno.EIO
    outside.check("open, read and write through the mount")

    for vm in ("vmA", "vmB", "vmC"):
        res = ctl_ops(ds, vm, outside, skip=("decrypt",))
        assert res["encrypt"].rc != 0 and "symbolic link" in msg(res["encrypt"]), res["encrypt"]
        if vm == "vmB":
            # An encrypted VM: rekeys need no policy and work.
            assert res["rekey"].rc == 0, res["rekey"]
            assert res["rekey --deep"].rc == 0, res["rekey --deep"]
            assert read(ds.m("vmB/b.nvram")) == b"B" * 9000
        else:
            assert res["rekey"].rc == EXIT_NOTFOUND, res["rekey"]
            assert res["rekey --deep"].rc == EXIT_NOTFOUND, res["rekey --deep"]
        # Nothing was encrypted under the outside policy.
        assert not is_encrypted(ds.b(vm) / "more.log")
    assert not is_encrypted(ds.b("vmA/a.nvram")) and not is_encrypted(ds.b("vmC/c.nvram"))
    ds.remount()
    outside.check("remount")
    for vm in ("vmA", "vmB", "vmC"):
        r = ds.ctl("decrypt", ds.m(vm), rc=None)
        outside.check(f"decrypt {vm}")
        # decrypt removes the VM's policy name (the link itself, never its
        # target) or refuses; either way no policy file appears.
        link = ds.b(vm) / POLICY_NAME
        if r.rc == 0:
            assert not os.path.lexists(link), f"{vm}: decrypt left {os.readlink(link)}"
        else:
            assert os.path.islink(link)
    assert read(ds.m("vmB/b.nvram")) == b"B" * 9000
    assert not is_encrypted(ds.b("vmB/b.nvram"))
    assert read(pol) == OUT_POLICY


# --- key records ---------------------------------------------------------------------

@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_key_record_symlinks(lds, outside, relative):
    """.vmcrypt.state and .vmcrypt.datastore as links to valid key records
    outside (copies of real ones, whose keys the host has)."""
    ds = lds
    ds.expect_error("symbolic link")
    donor = ds.make_vm("donor")
    write(donor / "d.nvram", b"D" * 5000)
    rec = outside.file("state", read(ds.b("donor") / STATE_NAME), 0o600)
    dsrec = outside.file("datastore", read(ds.b() / DATASTORE_NAME), 0o600)
    donor_kek = vmctest.vm_key_record(rec)["current"]
    outside.seal()
    # vmD: a VM with a policy, whose key record is the link.
    vmd = ds.b("vmD")
    vmd.mkdir()
    write(vmd / POLICY_NAME, POLICY.encode())
    write(vmd / "old.nvram", b"O" * 5000)           # cleartext, to be encrypted
    plant_symlink(vmd / STATE_NAME, rec, relative)
    # The datastore's record: a link too.
    os.unlink(ds.b() / DATASTORE_NAME)
    plant_symlink(ds.b() / DATASTORE_NAME, dsrec, relative)
    ds.remount()
    outside.check("mount")

    v = ds.ctl("status", ds.m("vmD")).json["vms"][0]
    assert v["encrypted"] is False and "symbolic link" in v.get("key_record_error", ""), v
    assert ds.ctl("status").json["datastore"]["encryption_mode"] == "off"
    outside.check("status")

    # A new file that must be encrypted cannot get a key: EIO, nothing written.
    assert errno_of(write, ds.m("vmD/new.nvram"), b"n" * 5000) == errno.EIO
    assert os.stat(ds.b("vmD/new.nvram")).st_size == 0
    assert read(ds.m("vmD/old.nvram")) == b"O" * 5000
    # A core dump outside VMs while the datastore record is a link: refused.
    ds.m("plain").mkdir()
    assert errno_of(write, ds.m("plain/core.1"), b"c" * 5000) == errno.EIO
    assert not is_encrypted(ds.b("plain/core.1"))
    outside.check("writes through the mount")
    r = ds.ctl("encryption-mode", "on", rc=None)
    assert r.rc != 0, r
    outside.check("encryption-mode on")

    # vmE: a VM whose first encrypted file creates its key record, with a
    # temporary name planted as a link (the record is written to a private
    # .vmcrypt.state.tmp.PID.RANDOM with O_EXCL | O_NOFOLLOW, then linked;
    # the plain .tmp name of older versions is left alone).
    vme = ds.b("vmE")
    vme.mkdir()
    write(vme / POLICY_NAME, POLICY.encode())
    plant_symlink(vme / (STATE_NAME + ".tmp"), rec, relative)
    write(ds.m("vmE/e.nvram"), b"E" * 5000)
    assert is_encrypted(ds.b("vmE/e.nvram")) and read(ds.m("vmE/e.nvram")) == b"E" * 5000
    assert stat.S_ISREG(os.lstat(vme / STATE_NAME).st_mode)
    assert os.path.islink(vme / (STATE_NAME + ".tmp"))
    assert not [n for n in os.listdir(vme) if n.startswith(STATE_NAME + ".tmp.")]
    assert vmctest.vm_key_record(vme / STATE_NAME)["current"] != donor_kek
    outside.check("the first encrypted file of vmE")

    res = ctl_ops(ds, "vmD", outside, skip=("decrypt",))
    assert res["encrypt"].rc != 0, res["encrypt"]
    assert res["rekey"].rc != 0 and "symbolic link" in msg(res["rekey"]), res["rekey"]
    assert res["rekey --deep"].rc != 0 and "symbolic link" in msg(res["rekey --deep"]), \
        res["rekey --deep"]
    assert not is_encrypted(ds.b("vmD/old.nvram"))
    # The donor VM is untouched, and no file anywhere uses the donor's key
    # through vmD.
    assert read(ds.m("donor/d.nvram")) == b"D" * 5000
    for f in ("old.nvram", "new.nvram"):
        assert not is_encrypted(ds.b("vmD") / f)
    assert donor_kek == vmctest.vm_key_record(ds.b("donor") / STATE_NAME)["current"]
    r = ds.ctl("decrypt", ds.m("vmD"), rc=None)
    outside.check("decrypt vmD")
    if r.rc != 0:
        assert os.path.islink(ds.b("vmD") / STATE_NAME)
    ds.remount()
    outside.check("remount")


# --- conversion journal and copy -------------------------------------------------------

def journal_text(op, name, backing_file, done):
    st = os.stat(backing_file)
    return (f"vmcryptfs-journal 1\nop {op}\nfile {name}\nino {st.st_ino}\nsize {st.st_size}\n"
            f"mtime {st.st_mtime_ns}\ndone {done}\n").encode()


DATA = {"a.nvram": bytes(range(256)) * 64 + b"tail", "disk-flat.vmdk": b"\x5a" * 3 * 4096 + b"x"}


def _vm_with_data(ds, vm, encrypted):
    """VM @vm with two files (cleartext, or encrypted through the mount)."""
    if encrypted:
        ds.make_vm(vm)
    else:
        ds.m(vm).mkdir()
    for n, d in DATA.items():
        write(ds.m(vm) / n, d)
    for n in DATA:
        assert is_encrypted(ds.b(vm) / n) == encrypted


def _check_vm(ds, vm, encrypted):
    for n, d in DATA.items():
        assert read(ds.m(vm) / n) == d, f"{vm}/{n} lost its data"
        assert is_encrypted(ds.b(vm) / n) == encrypted, f"{vm}/{n}"
        if encrypted:
            assert_encrypted(ds.b(vm) / n, d)
    for n in (JOURNAL_NAME, CONV_TMP_NAME, JOURNAL_NAME + ".tmp"):
        assert not os.path.lexists(ds.b(vm) / n), f"{vm}/{n} left behind"


OPS = {"encrypt": (("encrypt",), False, True), "rekey-deep": (("rekey", "--deep"), True, True),
       "decrypt": (("decrypt",), True, False)}


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_journal_and_copy_symlinks(lds, outside, op, resume, relative):
    """.vmcrypt.journal and .vmcrypt.conv.tmp planted as symlinks to files
    outside: the conversion neither reads nor writes through them (with
    @resume, a planted journal makes it resume into the planted copy)."""
    ds = lds
    argv, before, after = OPS[op]
    _vm_with_data(ds, "vm", before)
    oj = outside.file("journal", journal_text("decrypt" if op != "decrypt" else "encrypt",
                                              "a.nvram", ds.b("vm/a.nvram"), 4096))
    ot = outside.file("copy", b"\x89VMCRYPTFS outside copy " * 400)
    outside.seal()
    vm = ds.b("vm")
    if resume:
        # A real journal (a regular file) saying the conversion of a.nvram
        # got 8 KiB into its copy; the copy is the link.
        write(vm / JOURNAL_NAME, journal_text(op, "a.nvram", vm / "a.nvram", 8192))
    else:
        plant_symlink(vm / JOURNAL_NAME, oj, relative)
    plant_symlink(vm / CONV_TMP_NAME, ot, relative)
    plant_symlink(vm / (JOURNAL_NAME + ".tmp"), oj, relative)
    ds.remount()
    outside.check("mount")
    v = ds.ctl("status", ds.m("vm")).json["vms"][0]
    outside.check("status")
    r = ds.ctl(*argv, ds.m("vm"), rc=None)
    outside.check(f"vmcryptfs-ctl {' '.join(argv)}")
    assert r.rc == 0, r
    _check_vm(ds, "vm", after)
    assert v["vm"] == "vm"


@pytest.mark.parametrize("op", [
    "encrypt", "rekey-deep",
    "decrypt"])
def test_copy_hard_link_on_resume(lds, outside, op):
    """.vmcrypt.conv.tmp planted as a hard link of a file outside, with a
    journal that makes the conversion resume into it."""
    ds = lds
    argv, before, after = OPS[op]
    _vm_with_data(ds, "vm", before)
    # The VM's only file is the one being converted (another file converted
    # first would remove the planted copy on the way).
    os.unlink(ds.m("vm/disk-flat.vmdk"))
    secret = b"outside data, not the VM's " * 1000
    ot = outside.file("victim", secret, 0o600)
    vm = ds.b("vm")
    write(vm / JOURNAL_NAME, journal_text(op, "a.nvram", vm / "a.nvram", 8192))
    os.link(ot, vm / CONV_TMP_NAME)
    outside.no_atime.add("victim")      # reachable by a name in the backing store
    outside.seal()
    ds.remount()
    r = ds.ctl(*argv, ds.m("vm"), rc=None)
    try:
        outside.check(f"vmcryptfs-ctl {' '.join(argv)}")
    finally:
        leaked = DATA["a.nvram"][8192:8192 + 64] in _read_noatime(ot)
    assert not leaked, "the VM's plaintext was written outside the backing directory"
    assert r.rc == 0 or "link" in msg(r), r
    assert read(ds.m("vm/a.nvram")) == DATA["a.nvram"]
    assert is_encrypted(ds.b("vm/a.nvram")) == (after if r.rc == 0 else before)


# --- VM files as links -------------------------------------------------------------------

@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_vm_file_symlinks(lds, outside, relative):
    """A VM's disk and home file are symlinks to files outside (planted in
    the backing store, and made through the mount): every verb skips them."""
    ds = lds
    disk = outside.file("disk.img", bytes(range(256)) * 4096)
    home = outside.file("home.nvram", b"N" * 8684)
    disk2 = outside.file("disk2.img", b"\x33" * 65536)
    outside.seal()
    _vm_with_data(ds, "vm", False)
    t1 = plant_symlink(ds.b("vm/big-flat.vmdk"), disk, relative)
    t2 = plant_symlink(ds.b("vm/x.nvram"), home, relative)
    t3 = os.path.relpath(disk2, ds.m("vm")) if relative else str(disk2)
    os.symlink(t3, ds.m("vm/viamount-flat.vmdk"))       # through the mount
    links = {"big-flat.vmdk": t1, "x.nvram": t2, "viamount-flat.vmdk": t3}
    outside.check("planting")
    ds.remount()
    outside.check("mount")
    res = ctl_ops(ds, "vm", outside, skip=("decrypt",))
    assert res["encrypt"].rc == 0 and res["encrypt"].json["vms"][0]["files"] == len(DATA), \
        res["encrypt"]
    assert res["rekey"].rc == 0 and res["rekey"].json["vms"][0]["files"] == len(DATA), \
        res["rekey"]
    assert res["rekey --deep"].rc == 0, res["rekey --deep"]
    _check_vm(ds, "vm", True)
    # New files of the VM are encrypted as usual; the links stay links.
    write(ds.m("vm/new.nvram"), b"n" * 5000)
    assert is_encrypted(ds.b("vm/new.nvram"))
    for n, t in links.items():
        assert os.readlink(ds.b("vm") / n) == t and os.readlink(ds.m("vm") / n) == t, n
    ds.remount()
    outside.check("remount")
    r = ds.ctl("decrypt", ds.m("vm"))
    outside.check("decrypt")
    assert r.json["vms"][0]["files"] == len(DATA) + 1, r
    for n, t in links.items():
        assert os.readlink(ds.b("vm") / n) == t, n
    for n, d in DATA.items():
        assert read(ds.b("vm") / n) == d


def test_vm_file_hard_links(lds, outside):
    """VM files that are hard links of cleartext files outside: conversions
    refuse them (EMLINK, naming the hard links), rekeys leave them alone,
    the outside file never changes."""
    ds = lds
    secret = outside.file("secret.bin", bytes(range(255, -1, -1)) * 256, 0o600)
    outside.no_atime.add("secret.bin")
    outside.seal()
    _vm_with_data(ds, "vm", True)         # an encrypted VM
    os.link(secret, ds.b("vm/big-flat.vmdk"))
    os.link(secret, ds.b("vm/h.nvram"))
    ds.remount()
    outside.check("mount")
    # Through the mount the hard link is an ordinary (cleartext) file of the
    # backing store: readable; the daemon writes no header into it.
    assert read(ds.m("vm/h.nvram")) == read(secret)
    outside.check("read through the mount")
    res = ctl_ops(ds, "vm", outside, skip=("decrypt",))
    assert res["encrypt"].rc != 0 and "hard link" in msg(res["encrypt"]), res["encrypt"]
    assert res["rekey"].rc == 0, res["rekey"]
    assert res["rekey --deep"].rc == 0, res["rekey --deep"]
    _check_vm(ds, "vm", True)
    r = ds.ctl("decrypt", ds.m("vm"), rc=None)
    outside.check("decrypt")
    assert r.rc == 0, r
    _check_vm(ds, "vm", False)
    r = ds.ctl("encrypt", ds.m("vm"), rc=None)
    outside.check("encrypt again")
    assert r.rc != 0 and "hard link" in msg(r), r
    assert os.stat(secret).st_nlink == 3


@pytest.fixture
def stolen(lds, outside):
    """An encrypted VM "vm" and a hard link, vm/stolen.nvram, of a file
    outside that is a copy of an encrypted file of another VM ("donor"),
    whose key this host has."""
    ds = lds
    donor = ds.make_vm("donor")
    write(donor / "d.nvram", b"D" * 9000)
    o = outside.file("copy.nvram", read(ds.b("donor/d.nvram")), 0o600)
    outside.no_atime.add("copy.nvram")
    outside.seal()
    _vm_with_data(ds, "vm", True)
    os.link(o, ds.b("vm/stolen.nvram"))
    ds.remount()
    outside.check("mount")
    return o


def test_encrypted_hard_link_shallow_rekey(lds, outside, stolen):
    ds = lds
    before = header_slots(stolen)
    r = ds.ctl("rekey", ds.m("vm"), rc=None)
    try:
        outside.check("vmcryptfs-ctl rekey")
    finally:
        assert header_slots(stolen) == before, "key slots written outside"
    assert r.rc != 0 and "hard link" in msg(r), r


def test_encrypted_hard_link_other_verbs(lds, outside, stolen):
    ds = lds
    # status, reading it through the mount (it is an encrypted file the host
    # has the key of: readable, as a hard link made through the mount would be)
    assert ds.ctl("status", ds.m("vm")).json["vms"][0]["encrypted"] is True
    assert read(ds.m("vm/stolen.nvram")) == b"D" * 9000
    outside.check("status and read")
    r = ds.ctl("rekey", "--deep", ds.m("vm"), rc=None)
    outside.check("rekey --deep")
    assert r.rc != 0 and "hard link" in msg(r), r
    r = ds.ctl("decrypt", ds.m("vm"), rc=None)
    outside.check("decrypt")
    assert r.rc != 0 and "hard link" in msg(r), r
    r = ds.ctl("encrypt", ds.m("vm"), rc=None)        # all encrypted already: nothing to do
    outside.check("encrypt")
    assert r.rc == 0, r
    _check_vm(ds, "vm", True)


# --- directories as links ----------------------------------------------------------------

def _outside_vm(outside, ds):
    """A complete VM outside: policy, key record, an encrypted and a
    cleartext file (copies of a real VM of the datastore)."""
    donor = ds.make_vm("donor")
    write(donor / "d.nvram", b"D" * 9000)
    outside.file("vmdir/" + POLICY_NAME, OUT_POLICY)
    outside.file("vmdir/" + STATE_NAME, read(ds.b("donor") / STATE_NAME), 0o600)
    outside.file("vmdir/enc.nvram", read(ds.b("donor/d.nvram")), 0o600)
    outside.file("vmdir/clear.nvram", b"C" * 9000)
    outside.file("vmdir/disk-flat.vmdk", b"\x77" * 65536)
    return outside.root / "vmdir"


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_vm_directory_symlink(lds, outside, relative):
    ds = lds
    ovm = _outside_vm(outside, ds)
    outside.seal()
    plant_symlink(ds.b("vmlink"), ovm, relative)
    # A subdirectory of a real VM as a link, too.
    _vm_with_data(ds, "vm", False)
    plant_symlink(ds.b("vm/sub"), ovm, relative)
    ds.remount()
    outside.check("mount")

    # Straight on the control socket: every verb refuses the link by name.
    for vm in ("vmlink", "vmlink/", "./vmlink", "vmlink/sub", "vm/sub"):
        for verb, args in (("status", {}), ("encrypt", {}), ("decrypt", {}), ("rekey", {}),
                           ("rekey", {"deep": True}), ("lock", {}), ("unlock", {})):
            a = dict(args, vm=vm)
            f = raw(ds, verb, **a)
            outside.check(f"{verb} {a} on the control socket")
            assert f["ok"] is False, (verb, a, f)
            # (O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR;
            # test_vm_directory_symlink_message checks the wording)
            assert f["errno"] in (errno.ELOOP, errno.ENOTDIR), (verb, a, f)
            assert vm.rstrip("/") in f["message"], (verb, a, f)
    # vmcryptfs-ctl resolves the path: outside the datastore.
    for verb in (("status",), ("encrypt",), ("rekey",), ("rekey", "--deep"), ("decrypt",)):
        r = ds.ctl(*verb, ds.m("vmlink"), rc=EXIT_USAGE)
        assert "not inside the datastore" in r.err, r
        outside.check(f"vmcryptfs-ctl {' '.join(verb)} MNT/vmlink")
    # --all never follows it; the VM with a linked subdirectory converts
    # without descending into it.
    st = ds.ctl("status").json
    assert {v["vm"] for v in st["vms"]} == {"donor"}, st["vms"]
    outside.check("status")
    for argv in (("encrypt", "--all"), ("rekey", "--all"), ("rekey", "--deep", "--all")):
        r = ds.ctl(*argv, rc=None)
        outside.check(" ".join(argv))
        assert r.rc == 0, r
    assert "vmlink" not in {v["vm"] for v in ds.ctl("status").json["vms"]}
    _check_vm(ds, "vm", True)
    r = ds.ctl("decrypt", "--all", rc=None)
    outside.check("decrypt --all")
    assert r.rc == 0, r
    _check_vm(ds, "vm", False)
    assert os.path.islink(ds.b("vmlink")) and os.path.islink(ds.b("vm/sub"))
    ds.remount()
    outside.check("remount")


def test_offline_scan_never_follows(lds, outside):
    """vmcryptfs-util scan on a backing store full of planted links (its
    walk opens with O_NOFOLLOW, docs/vmcryptfs-util.8) changes nothing
    outside and reads nothing through a symlink."""
    ds = lds
    ovm = _outside_vm(outside, ds)
    pol = outside.file("policy", OUT_POLICY)
    outside.seal()
    os.symlink(ovm, ds.b("vmlink"))
    _vm_with_data(ds, "vm", True)
    os.symlink(ovm / "enc.nvram", ds.b("vm/x.nvram"))
    os.symlink(ovm, ds.b("vm/sub"))
    ds.m("vmP").mkdir()
    os.symlink(pol, ds.b("vmP") / POLICY_NAME)
    ds.unmount()
    util = vmctest.BUILD_DIR / "cli" / "vmcryptfs-util"
    p = run([util, "--config", ds.config, "--keyprov-dir", vmctest.PLUGINS, "--json", "scan",
             ds.backing], check=False)
    outside.check("vmcryptfs-util scan")
    assert p.returncode in (0, 3), p.stderr
    assert "gold" not in p.stdout
    ds.mount()


def test_vm_directory_symlink_message(lds, outside):
    """The refusal names the reason: the VM directory is a symbolic link."""
    ds = lds
    outside.file("vmdir/a.nvram", b"a" * 100)
    outside.seal()
    os.symlink(outside.root / "vmdir", ds.b("vmlink"))
    f = raw(ds, "status", vm="vmlink")
    outside.check("status")
    assert f["ok"] is False and "symbolic link" in f["message"], f


def test_lock_directory_symlink(lds, outside):
    """.vmcrypt.locks, the datastore's directory of VM lock files (reserved;
    docs/FORMAT.md "VM lock file", in the making when this was written),
    planted as a symlink to a directory outside: writing VM files and every
    conversion never create, write or read anything through it. (Whether
    they succeed or refuse with an error is not the point here.)"""
    ds = lds
    ds.expect_error("lock")           # a refusal may be logged as an error
    outside.file("locks/vm.1", b"a planted lock record\n")
    outside.seal()
    os.symlink(outside.root / "locks", ds.b(".vmcrypt.locks"))
    ds.remount()
    outside.check("mount")
    vm = ds.m("vm")
    vm.mkdir()
    try:
        write(vm / POLICY_NAME, POLICY.encode())
    except OSError as e:
        assert e.errno == errno.EIO, e    # VM writes cannot be locked: refused
    for n, d in DATA.items():
        try:
            write(vm / n, d)
        except OSError as e:
            assert e.errno == errno.EIO, e
    outside.check("writes through the mount")
    for argv in (("encrypt",), ("rekey",), ("rekey", "--deep"), ("decrypt",)):
        r = ds.ctl(*argv, ds.m("vm"), rc=None)
        outside.check(f"vmcryptfs-ctl {' '.join(argv)}")
        assert r.rc == 0 or (r.err + r.out).strip(), r
    assert os.path.islink(ds.b(".vmcrypt.locks"))
