# SPDX-License-Identifier: GPL-2.0-or-later
"""vmcryptfs-util envelope describe and extract on files the daemon wrote:
encrypted and cleartext files of a VM, headers damaged on purpose (flipped
bits in the magic, the version, the cipher, the checksum and a key slot;
files truncated to 0, 100 and 4095 bytes), and a file left with two key
slots by an interrupted shallow rekey. Every report is checked field by
field, with its exit status."""
import os
import random
import shutil
import stat

import pytest

import utiltest
from utiltest import (EXIT_DAMAGED, EXIT_FAIL, EXIT_NOTFOUND, EXIT_OK, EXIT_USAGE, by_path,
                      corpus_add, flip, make_vm, read, util, write)
from vmctest import HDR, STATE_NAME, vm_key_record

MiB = 1 << 20
VMX = b'displayName = "vm1"\nnvram = "vm1.nvram"\n'
DESCRIPTOR = b"# Disk DescriptorFile\nversion=1\nCID=fffffffe\ncreateType=\"vmfs\"\n"


def vm_files(rng):
    return {
        "vm1.vmx": VMX,
        "vm1.nvram": rng.randbytes(8684),
        "vm1.vmdk": DESCRIPTOR,
        "vm1-flat.vmdk": rng.randbytes(3 * 4096 + 100),
        "tiny.bin": b"hello",
        "vmware.log": b"log line\n" * 20,
    }


def test_describe_and_extract(ds, tmp_path):
    rng = random.Random(5)
    files = vm_files(rng)
    make_vm(ds, "vm1", files)
    ds.unmount()
    vm = ds.b("vm1")
    rec = vm_key_record(vm / STATE_NAME)
    provider, kek = rec["current"]
    paths = [vm / n for n in sorted(files)]

    res = util("envelope", "describe", *paths, config=ds.config)
    got = by_path(res.json["files"])
    assert set(got) == set(files)
    for name in ("vm1.vmx", "vm1.vmdk", "vmware.log"):
        assert got[name]["encrypted"] is False
        assert got[name]["size"] == len(files[name])
    classes = {"vm1.nvram": "home", "vm1-flat.vmdk": "disk", "tiny.bin": "other"}
    for name, cls in classes.items():
        e = got[name]
        assert e["encrypted"] is True and e["intact"] is True and e["usable"] is True, e
        assert e["problems"] == [] and e["error"] is None
        assert (e["version"], e["cipher"], e["cipher_id"], e["data_unit"]) == \
            (1, "AES-256-XTS", 1, 4096)
        assert e["class"] == cls
        assert e["size"] == len(files[name]) and e["backing_size"] == len(files[name]) + HDR
        assert e["vm_id"] == rec["vm_uuid"].hex()
        assert len(e["file_id"]) == 32
        assert e["slots"] == [{"slot": 0, "status": "ok", "provider": provider,
                               "kek_id": kek, "generation": 1}]
    assert len({got[n]["file_id"] for n in classes}) == 3

    # The human form keeps crypto-util's keyID 'ID' line for scripts.
    human = util("envelope", "describe", vm / "vm1.nvram", config=ds.config, json_out=False)
    assert f"provider '{provider}' keyID '{kek}' generation 1" in human.out
    assert "header            intact" in human.out
    human = util("envelope", "describe", vm / "vm1.vmx", json_out=False)
    assert human.out == f"{vm / 'vm1.vmx'}: cleartext (not encrypted), {len(VMX)} bytes\n"

    # --verify opens the slot with the native provider's key.
    res = util("envelope", "describe", "--verify", vm / "vm1-flat.vmdk", config=ds.config)
    e = res.json["files"][0]
    assert e["opens"] is True and e["verify"] == [{"slot": 0, "opens": True}]

    # extract: every file back to its plaintext, with the source's mode.
    os.chmod(vm / "vm1.nvram", 0o640)
    for name, data in files.items():
        out = tmp_path / f"out-{name}"
        res = util("envelope", "extract", vm / name, out, config=ds.config)
        assert read(out) == data, name
        assert res.json["bytes"] == len(data) and res.json["encrypted"] == (name in classes)
        if name in classes:
            assert (res.json["slot"], res.json["provider"], res.json["kek_id"]) == \
                (0, provider, kek)
        else:
            assert "is not encrypted: copying it as is" in res.err
    assert stat.S_IMODE(os.stat(tmp_path / "out-vm1.nvram").st_mode) == 0o640

    # Not over an existing file unless --force; never over the source.
    out = tmp_path / "out-vm1.nvram"
    write(out, b"keep")
    res = util("envelope", "extract", vm / "vm1.nvram", out, config=ds.config, rc=EXIT_FAIL)
    assert "exists (use --force" in res.err and read(out) == b"keep"
    util("envelope", "extract", "--force", vm / "vm1.nvram", out, config=ds.config)
    assert read(out) == files["vm1.nvram"]
    util("envelope", "extract", "--force", vm / "vm1.nvram", vm / "vm1.nvram",
         config=ds.config, rc=EXIT_USAGE)

    # To standard output; parts with --offset/--length, also unaligned and past the end.
    flat = files["vm1-flat.vmdk"]
    res = util("envelope", "extract", vm / "vm1-flat.vmdk", "-", config=ds.config,
               json_out=False, binary=True)
    assert res.out == flat
    for off, length in [(0, 1), (1, 4095), (4095, 2), (5000, 4096 * 2), (12000, 100000),
                        (len(flat) - 7, 7), (len(flat), 10), (len(flat) + 5, 1)]:
        res = util("envelope", "extract", "--offset", off, "--length", length,
                   vm / "vm1-flat.vmdk", "-", config=ds.config, json_out=False, binary=True)
        assert res.out == flat[off:off + length], (off, length)
    res = util("envelope", "extract", "--offset", "1K", vm / "tiny.bin", "-",
               config=ds.config, json_out=False, binary=True)
    assert res.out == b""
    res = util("envelope", "extract", "--offset", "2", vm / "tiny.bin", "-",
               config=ds.config, json_out=False, binary=True)
    assert res.out == b"llo"

    # Errors: a missing file, a bad option value, a directory.
    util("envelope", "describe", vm / "missing", rc=EXIT_NOTFOUND)
    util("envelope", "extract", vm / "missing", tmp_path / "x", rc=EXIT_NOTFOUND)
    util("envelope", "extract", "--offset", "-1", vm / "tiny.bin", rc=EXIT_USAGE)
    res = util("envelope", "describe", vm, rc=EXIT_FAIL)
    assert "not a regular file" in res.json["files"][0]["open_error"]


def damage(src, dst, how):
    shutil.copyfile(src, dst)
    if how == "magic":
        flip(dst, 3, 0x10)
    elif how == "version":
        flip(dst, 17)
    elif how == "cipher":
        flip(dst, 28, 0x02)
    elif how == "checksum":
        flip(dst, 230)
    elif how == "slot":
        flip(dst, 512 + 100)
    else:
        os.truncate(dst, int(how))
    corpus_add(dst)
    return dst


# How each damage is reported: (usable, error words, problems).
DAMAGE = {
    "magic": ("bad magic or object type", [
        "bad magic", "checksum of the fixed part (bytes 0..223) does not match"]),
    "version": ("newer than this vmcryptfs supports (1), or the header is damaged",
                ["format version 257 (this vmcryptfs reads version 1)",
                 "checksum of the fixed part (bytes 0..223) does not match"]),
    "cipher": ("header checksum mismatch", [
        "checksum of the fixed part (bytes 0..223) does not match", "unknown cipher 3"]),
    "checksum": ("header checksum mismatch",
                 ["checksum of the fixed part (bytes 0..223) does not match"]),
    "slot": ("no usable key slot (slot checksum mismatch)",
             ["key slot 0: slot checksum mismatch", "no usable key slot"]),
    "100": ("header truncated: 100 of 4096 bytes",
            ["truncated: 100 of 4096 header bytes"]),
    "4095": ("header truncated: 4095 of 4096 bytes",
             ["truncated: 4095 of 4096 header bytes"]),
}


def test_damaged_headers(ds, tmp_path):
    rng = random.Random(6)
    plain = rng.randbytes(20000)
    make_vm(ds, "vm1", {"vm1.nvram": plain})
    ds.unmount()
    src = ds.b("vm1/vm1.nvram")
    bad = tmp_path / "bad"
    bad.mkdir()
    for how, (error, problems) in DAMAGE.items():
        f = damage(src, bad / f"{how}.nvram", how)
        res = util("envelope", "describe", f, config=ds.config, rc=EXIT_DAMAGED)
        e = res.json["files"][0]
        assert e["encrypted"] is True and e["intact"] is False and e["usable"] is False, e
        assert error in e["error"], (how, e)
        assert e["problems"] == problems, (how, e)
        human = util("envelope", "describe", f, json_out=False, rc=EXIT_DAMAGED).out
        assert "header DAMAGED" in human and problems[0] in human
        # extract refuses it with the same status and writes nothing
        res = util("envelope", "extract", f, tmp_path / "out", config=ds.config,
                   rc=EXIT_DAMAGED)
        assert not (tmp_path / "out").exists()
    # What can still be read is shown: the slot survives damage to the fixed part.
    e = util("envelope", "describe", bad / "cipher.nvram", rc=EXIT_DAMAGED).json["files"][0]
    assert e["cipher_id"] == 3 and e["slots"][0]["status"] == "ok"
    e = util("envelope", "describe", bad / "slot.nvram", rc=EXIT_DAMAGED).json["files"][0]
    assert e["slots"] == [{"slot": 0, "status": "damaged",
                           "damage": "slot checksum mismatch"}]
    # Truncated to 0 bytes: an empty file, which has no header (FORMAT.md 3.4).
    f = damage(src, bad / "0.nvram", "0")
    e = util("envelope", "describe", f).json["files"][0]
    assert e == {"file": str(f), "encrypted": False, "backing_size": 0, "size": 0}
    # Several files: 5 as soon as one is damaged.
    res = util("envelope", "describe", src, bad / "checksum.nvram", rc=EXIT_DAMAGED)
    assert [e["intact"] for e in res.json["files"]] == [True, False]


def test_interrupted_rekey(make_ds, tmp_path):
    ds = make_ds("ds")
    rng = random.Random(7)
    files = {"a.nvram": rng.randbytes(5000), "b-flat.vmdk": rng.randbytes(70000),
             "c.vmem": rng.randbytes(4096)}
    make_vm(ds, "vm1", files)
    ds.unmount()
    old = vm_key_record(ds.b("vm1") / STATE_NAME)["current"]
    utiltest.interrupted_rekey(ds, "vm1")
    rec = vm_key_record(ds.b("vm1") / STATE_NAME)
    assert rec["state"] == 1 and rec["current"] == old and rec["next"][1] != old[1]
    new = rec["next"]

    res = util("envelope", "describe", "--verify", *[ds.b("vm1") / n for n in sorted(files)],
               config=ds.config)
    two = [e for e in res.json["files"] if len(e["slots"]) == 2]
    assert len(two) == 1, res.json
    e = two[0]
    assert sorted((s["generation"], s["provider"], s["kek_id"]) for s in e["slots"]) == \
        [(1, old[0], old[1]), (2, new[0], new[1])]
    assert e["intact"] is True and e["opens"] is True
    assert [v["opens"] for v in e["verify"]] == [True, True]
    for other in res.json["files"]:
        if other is not e:
            assert [(s["generation"], s["kek_id"]) for s in other["slots"]] == [(1, old[1])]
    human = util("envelope", "describe", e["file"], json_out=False).out
    assert f"keyID '{old[1]}' generation 1" in human and f"keyID '{new[1]}' generation 2" in human
    # It decrypts (with the newest slot first).
    out = tmp_path / "two-slots"
    res = util("envelope", "extract", e["file"], out, config=ds.config)
    assert read(out) == files[os.path.basename(e["file"])]
    assert res.json["kek_id"] == new[1]
