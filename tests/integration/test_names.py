# SPDX-License-Identifier: GPL-2.0-or-later
"""File names with every legal byte (issue 7, hostile input).

A Linux file name is any sequence of 1..255 bytes other than NUL and '/',
except "." and "..". Every such byte is used here: as a one-byte name (253 of
them), in long names up to the 255-byte limit (one holds every legal byte),
and in names that shells and tools find hard: invalid UTF-8, newline, CR,
escape sequences, '\\', '*', '?', '[', leading '-', spaces, and names that
look like vmcryptfs' reserved prefix without being reserved. The VM
directories themselves have such names too.

In an encrypted VM directory and in a cleartext directory, each name is
created, written, read back, stat'ed, listed (os.listdir on bytes, compared
as raw bytes with what was created and with the backing directory), renamed
(into a subdirectory, then back under another name), hard-linked, used as a
directory and as a symlink, and unlinked. The backing store holds exactly
the same names; files whose class the policy encrypts are ciphertext in the
backing store, the others byte-identical, and a rename never changes that.

Reserved names (docs/FORMAT.md: names beginning with ".vmcrypt." belong to
vmcryptfs; invisible through the mount, cannot be created, renamed or
removed there) give the errnos of test_posix.test_reserved_names, for
reserved names with odd bytes after the prefix too. Names the kernel refuses
("." and "..", 256 bytes) fail with the same errno as on the backing
filesystem itself.
"""
import errno
import fnmatch
import os
import random
import stat

import pytest

from vmctest import (POLICY_NAME, STATE_NAME, assert_cleartext, assert_encrypted, ctl_ds,
                     errno_of, is_encrypted, read)

LEGAL = [b for b in range(1, 256) if b != ord("/")]
SINGLE = [bytes([b]) for b in LEGAL if b != ord(".")]      # "." is the directory itself
ALL = bytes(LEGAL)                                           # 254 bytes, every legal byte

SPECIAL = [
    ALL, ALL[::-1], b"-" + ALL, b"\xff" * 255, b"." * 255, b"a" * 254 + b"\n",
    b"...", b".. ", b". ", b" ", b"  ", b" leading", b"trailing ", b"-", b"--help", b"-rf",
    b"-n.nvram", b"*", b"**", b"?", b"[a]", b"[!x]*", b"\\", b"a\\b", b"\\n", b"\n", b"a\nb\n",
    b"\r\n", b"\t", b"\x1b[31mred\x1b[0m", b"\x7f", b"\x01\x02\x03", b"\xc3\x28", b"\xed\xa0\x80",
    b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\xe2\x80\xae.txt",
    "\u00fcn\u00efc\u00f6d\u00e9".encode(),
    "\u65e5\u672c\u8a9e.nvram".encode(), "\U0001f512.vmdk".encode(), b"~", b"$HOME", b"`id`",
    b"$(id)", b"'", b'"', b"%s%n%x", b"%2f", b"%", b"a%00b", b";", b"|", b"&", b"<>", b"#",
    b"!", b"{a,b}", b"=", b"@",
    # class patterns with odd bytes around them
    b"\xff.log", b"a\nb.LOG", b"core\xff", b"core\n", b"\x01.vmx", b"x\n.nvram",
    b"*-flat.vmdk", b"\n-flat.vmdk", b"disk\xff.qcow2", b"x.zdump\xff", b"core.log",
    # look like vmcryptfs' own names, but are not reserved
    b".vmcrypt", b".vmcryptX", b".vmcrypt-state", b".vmcrypt_state", b"x.vmcrypt.state",
    b" .vmcrypt.state", b"..vmcrypt.state", b".VMCRYPT.state", b".Vmcrypt.", b".vmcrypt\n.state",
    b".vmcrypt\xff", b"vmcrypt.state", b".vmcrypt\\.state", b"vmcrypt.policy.bak",
    b"VMCRYPT.POLICY", b"vmcrypt.policy\n", b" vmcrypt.policy", b"vmcrypt.polic", b"\xffvmcrypt.",
]

RESERVED = [b".vmcrypt.", b".vmcrypt.state", b".vmcrypt.journal", b".vmcrypt.conv.tmp",
            b".vmcrypt.datastore", b".vmcrypt.\xff\n*", b".vmcrypt..", b".vmcrypt.-",
            b".vmcrypt." + b"\x01" * 246]

NAMES = sorted(set(SINGLE) | set(SPECIAL))
VM_DIR = b"VM \xff\n*-dir"       # the encrypted VM directory
PLAIN_DIR = b"plain \xfe\\ dir"  # a cleartext directory (no policy anywhere above)

# lib/vmc_class.c: the built-in table, in order (first match wins, ASCII
# case-insensitive, fnmatch(3) without flags beyond FNM_CASEFOLD).
CLASS_TABLE = [
    ("*.log", "clear"), ("*.hlog", "clear"), ("*.vmx", "clear"), ("*.vmxf", "clear"),
    ("*.vmsd", "clear"), ("*.vmx~", "clear"), ("*.vmtx", "clear"), ("*.lck", "clear"),
    ("*-flat.vmdk", "disk"), ("*-delta.vmdk", "disk"), ("*-sesparse.vmdk", "disk"),
    ("*-s[0-9][0-9][0-9].vmdk", "disk"), ("*-f[0-9][0-9][0-9].vmdk", "disk"),
    ("*.vmdk", "vmdk"), ("*.qcow2", "disk"), ("*.qcow", "disk"), ("*.raw", "disk"),
    ("*.img", "disk"), ("*.vhd", "disk"), ("*.vhdx", "disk"), ("*.vdi", "disk"),
    ("*.nvram", "home"), ("*.vswp", "home"), ("*.vmsn", "home"), ("*.vmem", "home"),
    ("*.vmss", "home"), ("*.zdump*", "core"), ("*-zdump.*", "core"), ("core*", "core"),
    ("*.dmp", "core"),
]
_ASCII_LOWER = bytes.maketrans(bytes(range(65, 91)), bytes(range(97, 123)))


def name_class(name):
    s = name.translate(_ASCII_LOWER).decode("latin-1")
    for pat, cls in CLASS_TABLE:
        if fnmatch.fnmatchcase(s, pat):
            return cls
    return "other"


def expect_encrypted(name, in_vm, encryption_mode):
    """Whether a new file @name gets encrypted at its first (random, binary)
    data: in a VM whose policy encrypts disks, every class but cleartext;
    outside VMs, core dumps while the datastore's encryption mode is on."""
    cls = name_class(name)
    if in_vm:
        return cls != "clear"
    return cls == "core" and encryption_mode


def content(i, name):
    rng = random.Random(i)
    return rng.randbytes(rng.choice([1, 15, 16, 100, 4095, 4096, 4097, 9000])) + name


def renamed(name):
    """Another legal name for @name (injective over NAMES)."""
    return b"~" + name if len(name) < 255 else name[:-1] + (b"~" if name[-1:] != b"~" else b"+")


def j(*parts):
    return os.path.join(*[os.fsencode(p) for p in parts])


def listing(d):
    return sorted(os.listdir(os.fsencode(d)))


def test_name_set():
    """What the names cover (and that the test's own bookkeeping is sound)."""
    assert len(SINGLE) == 253 and all(len(n) == 1 for n in SINGLE)
    covered = set(b"".join(NAMES))
    assert covered == set(LEGAL), set(LEGAL) - covered
    assert all(0 < len(n) <= 255 and b"/" not in n and b"\0" not in n and n not in (b".", b"..")
               for n in NAMES)
    assert max(len(n) for n in NAMES) == 255
    assert not any(n.startswith(b".vmcrypt.") for n in NAMES)
    assert all(r.startswith(b".vmcrypt.") and len(r) <= 255 for r in RESERVED)
    ren = [renamed(n) for n in NAMES]
    assert len(set(ren)) == len(NAMES) and all(0 < len(n) <= 255 for n in ren)
    # The classification the test expects matches a few known answers.
    assert name_class(b"a\nb.LOG") == "clear" and name_class(b"core\xff") == "core"
    assert name_class(b"core.log") == "clear" and name_class(b"\x01") == "other"


@pytest.fixture
def dirs(ds):
    """The encrypted VM directory and the cleartext directory, in the mount
    (bytes paths), with the backing counterparts."""
    vm = j(ds.m(), VM_DIR)
    os.mkdir(vm)
    with open(j(vm, POLICY_NAME), "w") as f:
        f.write('policy = "vm-encryption"\n')
    plain = j(ds.m(), PLAIN_DIR)
    os.mkdir(plain)
    return {"vm": (vm, j(ds.b(), VM_DIR), True), "plain": (plain, j(ds.b(), PLAIN_DIR), False)}


def check_files(mdir, bdir, files, state, in_vm):
    """@files {name: plaintext} are exactly what @mdir lists (plus the policy
    in a VM) and what @bdir holds (plus the key record); content, sizes and
    encryption state (@state {name: encrypted}) are as expected."""
    extra_m = [POLICY_NAME.encode()] if in_vm else []
    extra_b = extra_m + ([STATE_NAME.encode()] if in_vm and any(state.values()) else [])
    want = sorted(list(files) + extra_m)
    got = listing(mdir)
    assert got == want, (f"readdir of {mdir!r}: missing {sorted(set(want) - set(got))[:5]!r}, "
                         f"unexpected {sorted(set(got) - set(want))[:5]!r}")
    assert sorted(e.name for e in os.scandir(mdir)) == want
    got_b = listing(bdir)
    assert got_b == sorted(list(files) + extra_b), \
        f"backing names differ: {sorted(set(got_b) ^ set(list(files) + extra_b))[:5]!r}"
    for e in os.scandir(mdir):
        if e.name in files:
            assert e.is_file(follow_symlinks=False), e.name
    for n, data in files.items():
        mp, bp = j(mdir, n), j(bdir, n)
        st = os.lstat(mp)
        assert stat.S_ISREG(st.st_mode) and st.st_size == len(data), (n, st)
        assert read(mp) == data, f"{n!r} reads back differently"
        if state[n]:
            assert_encrypted(bp, data)
        else:
            assert_cleartext(bp, plain=data)
        assert os.lstat(bp).st_ino == st.st_ino


@pytest.mark.parametrize("where", ["vm", "plain"])
def test_every_byte_in_names(ds, dirs, where):
    mdir, bdir, in_vm = dirs[where]
    # Encryption mode: on in both cases, so core dumps outside VMs are
    # encrypted (a file of the VM turns it on).
    seed = j(dirs["vm"][0], b"seed.nvram")
    with open(seed, "wb") as f:
        f.write(b"turns the datastore's encryption mode on" * 10)
    os.unlink(seed)
    files, state = {}, {}
    for i, n in enumerate(NAMES):
        data = content(i, n)
        fd = os.open(j(mdir, n), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            assert os.write(fd, data) == len(data)
        finally:
            os.close(fd)
        files[n] = data
        state[n] = expect_encrypted(n, in_vm, True)
    assert any(state.values()) and (not in_vm or not all(state.values()))
    check_files(mdir, bdir, files, state, in_vm)

    # Rename each into a subdirectory (same name), then back under another
    # name: the file keeps its data and its encryption state, whatever the
    # class of the new name.
    sub = j(mdir, b"sub \xff")
    os.mkdir(sub)
    for n in NAMES:
        os.rename(j(mdir, n), j(sub, n))
    assert listing(sub) == NAMES
    assert listing(j(bdir, b"sub \xff")) == NAMES
    for n in NAMES:
        assert errno_of(os.lstat, j(mdir, n)) == errno.ENOENT, n
        os.rename(j(sub, n), j(mdir, renamed(n)))
    os.rmdir(sub)
    files = {renamed(n): d for n, d in files.items()}
    state = {renamed(n): s for n, s in state.items()}
    check_files(mdir, bdir, files, state, in_vm)

    # Hard links and symlinks with such names; symlink targets of every byte.
    some = NAMES[::17] + [ALL, b"\xff" * 255]
    for n in some:
        os.link(j(mdir, renamed(n)), j(mdir, b"L" + n[:254]))
        assert os.stat(j(mdir, b"L" + n[:254])).st_nlink == 2
        assert read(j(mdir, b"L" + n[:254])) == files[renamed(n)]
        os.unlink(j(mdir, b"L" + n[:254]))
    for target in (ALL, ALL[::-1] * 8, b"\n\xff../" * 300):
        os.symlink(target, j(mdir, b"S\n\xff"))
        assert os.readlink(j(mdir, b"S\n\xff")) == target
        assert os.readlink(j(bdir, b"S\n\xff")) == target
        os.unlink(j(mdir, b"S\n\xff"))

    # Directories with such names, and files inside them under the same name.
    for n in NAMES[::7] + [ALL, b"\xff" * 255, b"." * 255, b"-", b"\n"]:
        d = j(mdir, b"D" + n[:254])
        os.mkdir(d)
        with open(j(d, n), "wb") as f:
            f.write(n * 3)
        assert listing(d) == [n] and listing(j(bdir, b"D" + n[:254])) == [n]
        assert read(j(d, n)) == n * 3
        os.unlink(j(d, n))
        os.rmdir(d)

    # Unlink everything: nothing is left, in the mount or the backing store.
    for n in files:
        os.unlink(j(mdir, n))
        assert errno_of(os.lstat, j(mdir, n)) == errno.ENOENT
    assert listing(mdir) == ([POLICY_NAME.encode()] if in_vm else [])
    assert listing(bdir) == (sorted([POLICY_NAME.encode(), STATE_NAME.encode()]) if in_vm else [])


def kernel_errnos(d):
    """What the kernel says to names it refuses, in directory @d."""
    long = b"n" * 256
    return [
        ("create 256 bytes", errno_of(os.open, j(d, long), os.O_WRONLY | os.O_CREAT, 0o644)),
        ("mkdir 256 bytes", errno_of(os.mkdir, j(d, long))),
        ("stat 256 bytes", errno_of(os.lstat, j(d, long))),
        ("symlink 256 bytes", errno_of(os.symlink, "x", j(d, long))),
        ("rename to 256 bytes", errno_of(os.rename, j(d, b"f"), j(d, long))),
        ("create .", errno_of(os.open, j(d, b"."), os.O_WRONLY | os.O_CREAT, 0o644)),
        ("create ..", errno_of(os.open, j(d, b".."), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)),
        ("mkdir .", errno_of(os.mkdir, j(d, b"."))),
        ("mkdir ..", errno_of(os.mkdir, j(d, b".."))),
        ("rename to .", errno_of(os.rename, j(d, b"f"), j(d, b"."))),
        ("unlink ..", errno_of(os.unlink, j(d, b".."))),
        ("rmdir .", errno_of(os.rmdir, j(d, b"."))),
        ("symlink 4096-byte target", errno_of(os.symlink, b"t" * 4096, j(d, b"s"))),
    ]


def test_refused_names_as_on_the_backing_filesystem(ds, dirs, tmp_path):
    ref = tmp_path / "reference"
    ref.mkdir()
    for d in (ref, dirs["vm"][0], dirs["plain"][0]):
        with open(j(d, b"f"), "wb") as f:
            f.write(b"data")
    want = kernel_errnos(ref)
    assert all(e for _, e in want), want
    for where in ("vm", "plain"):
        got = kernel_errnos(dirs[where][0])
        assert got == want, [(a, errno.errorcode.get(x), errno.errorcode.get(y))
                             for (a, x), (_, y) in zip(want, got) if x != y]
        assert read(j(dirs[where][0], b"f")) == b"data"


@pytest.mark.parametrize("where", ["vm", "plain"])
def test_reserved_names(ds, dirs, where):
    mdir, bdir, in_vm = dirs[where]
    f = j(mdir, b"file.nvram")
    with open(f, "wb") as fh:
        fh.write(b"v" * 5000)
    before = sorted(os.listdir(bdir))
    for r in RESERVED:
        p = j(mdir, r)
        got = {
            "stat": errno_of(os.lstat, p),
            "open": errno_of(os.open, p, os.O_RDONLY),
            "create": errno_of(os.open, p, os.O_RDWR | os.O_CREAT, 0o644),
            "create excl": errno_of(os.open, p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644),
            "mkdir": errno_of(os.mkdir, p),
            "mkfifo": errno_of(os.mkfifo, p),
            "symlink": errno_of(os.symlink, b"file.nvram", p),
            "link": errno_of(os.link, f, p),
            "rename to": errno_of(os.rename, f, p),
            "unlink": errno_of(os.unlink, p),
            "rmdir": errno_of(os.rmdir, p),
            "rename from": errno_of(os.rename, p, j(mdir, b"x")),
            "setxattr": errno_of(os.setxattr, p, "user.x", b"1"),
        }
        want = {"stat": errno.ENOENT, "open": errno.ENOENT, "create": errno.EPERM,
                "create excl": errno.EPERM, "mkdir": errno.EPERM, "mkfifo": errno.EPERM,
                "symlink": errno.EPERM, "link": errno.EPERM, "rename to": errno.EPERM,
                "unlink": errno.ENOENT, "rmdir": errno.ENOENT, "rename from": errno.ENOENT,
                "setxattr": errno.ENOENT}
        assert got == want, (r, {k: errno.errorcode.get(v, v) for k, v in got.items()
                                 if v != want[k]})
    # Nothing was created or removed in the backing store; the file is intact.
    assert sorted(os.listdir(bdir)) == before
    assert read(f) == b"v" * 5000
    # Reserved names planted in the backing store stay invisible; the
    # look-alikes planted there are ordinary entries.
    lookalikes = [n for n in SPECIAL if b"vmcrypt" in n.lower()]
    for r in RESERVED[5:]:
        with open(j(bdir, r), "wb") as fh:
            fh.write(b"planted")
    for n in lookalikes:
        with open(j(bdir, n), "wb") as fh:
            fh.write(b"look-alike " + n)
    want_list = sorted(set(os.listdir(bdir)) - {n for n in os.listdir(bdir)
                                                 if n.startswith(b".vmcrypt.")})
    assert listing(mdir) == want_list
    for r in RESERVED:
        assert errno_of(os.lstat, j(mdir, r)) == errno.ENOENT
    for n in lookalikes:
        assert read(j(mdir, n)) == b"look-alike " + n
        os.unlink(j(mdir, n))
    assert read(j(bdir, RESERVED[5])) == b"planted"
    if in_vm:       # the VM's real key record was not touched by any of it
        assert stat.S_ISREG(os.lstat(j(bdir, STATE_NAME.encode())).st_mode)


# --- the control tool, the log and JSON with such names -------------------------------------

def test_conversions_with_every_byte(make_ds, tmp_path):
    """vmcryptfs-ctl encrypt, rekey, rekey --deep and decrypt of a VM whose
    files carry every byte in their names (the conversion journal escapes
    them): every file converted, names and contents intact."""
    ds = ctl_ds(make_ds, tmp_path)
    vmname = b"VM dir \n*\\-x"          # valid UTF-8: its name appears in JSON answers
    vm = j(ds.m(), vmname)
    os.mkdir(vm)
    # (the special names: they hold every legal byte, and each conversion
    # syncs every file it converts, so not all 300-odd names again)
    names = sorted(set(SPECIAL))
    assert set(b"".join(names)) == set(LEGAL)
    files = {n: content(i, n) for i, n in enumerate(names)}
    for n, d in files.items():
        with open(j(vm, n), "wb") as f:
            f.write(d)
    mvm = os.fsdecode(vm)
    enc = {n for n in names if expect_encrypted(n, True, True)}
    r = ds.ctl("encrypt", mvm).json["vms"][0]
    assert r["files"] == len(enc), r
    for n, d in files.items():
        assert is_encrypted(j(ds.b(), vmname, n)) == (n in enc), n
    assert ds.ctl("rekey", mvm).json["vms"][0]["files"] == len(enc)
    assert ds.ctl("rekey", "--deep", mvm).json["vms"][0]["files"] == len(enc)
    for n in enc:
        assert_encrypted(j(ds.b(), vmname, n), files[n])
    assert ds.ctl("decrypt", mvm).json["vms"][0]["files"] == len(enc)
    assert listing(vm) == sorted(files)
    for n, d in files.items():
        assert read(j(vm, n)) == d, n
        assert_cleartext(j(ds.b(), vmname, n), plain=d)


FORGED = b"vmcryptfs: error: forged by a directory name"


def test_names_cannot_forge_log_lines(make_ds, tmp_path):
    ds = ctl_ds(make_ds, tmp_path)
    ds.expect_error("forged by a directory name")
    vm = j(ds.m(), b"vm\n" + FORGED)
    os.mkdir(vm)
    with open(j(vm, POLICY_NAME), "w") as f:
        f.write('policy = "vm-encryption"\n')
    with open(j(vm, b"a.nvram"), "wb") as f:   # the VM's first encrypted file: logged
        f.write(b"x" * 5000)
    assert is_encrypted(j(ds.b(), b"vm\n" + FORGED, b"a.nvram"))
    forged = FORGED.decode()
    lines = ds.log().splitlines()
    assert not [l for l in lines if l.startswith(forged)], \
        "a directory name forged a line of the daemon's log:\n" + ds.log_tail(8)


def test_json_with_names_that_are_not_utf8(make_ds, tmp_path):
    import json
    import subprocess
    from vmctest import CTL
    ds = ctl_ds(make_ds, tmp_path)
    vm = j(ds.m(), b"vm \xff\xfe")
    os.mkdir(vm)
    with open(j(vm, POLICY_NAME), "w") as f:
        f.write('policy = "vm-encryption"\n')
    with open(j(vm, b"a.nvram"), "wb") as f:
        f.write(b"x" * 5000)
    p = subprocess.run([str(CTL), "-m", str(ds.mnt), "--json", "status"], capture_output=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)          # bytes: must be UTF-8 JSON
    assert len(st["vms"]) == 1, st
    with open(ds.audit_log, "rb") as f:
        for line in f:
            json.loads(line)
