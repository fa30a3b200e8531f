# SPDX-License-Identifier: GPL-2.0-or-later
"""Core dumps with the datastore's encryption mode on: written through the
mount inside a VM (wrapped under the VM's key) and outside any VM (under the
datastore record's key), described and extracted offline; exported under a
password and opened again with the password alone (no configuration, no key
provider); a wrong password writes nothing. The export is also opened
independently of vmcryptfs, from docs/FORMAT.md 3.5 alone: Argon2id from the
reference implementation (libargon2), HKDF, AES-GCM and AES-XTS from
python3-cryptography."""
import ctypes
import ctypes.util
import random
import re
import struct

import pytest

from utiltest import (EXIT_FAIL, EXIT_KEY, EXIT_OK, make_vm, read, util, write)
from vmctest import STATE_NAME, vm_key_record

MiB = 1 << 20
PASSWORD = "correct horse battery staple"


def sparse_core(path, rng):
    """A core dump with data, a hole, and data again; returns its plaintext."""
    head, tail = rng.randbytes(10000), rng.randbytes(5000)
    with open(path, "wb") as f:
        f.write(head)
        f.seek(MiB)
        f.write(tail)
    return head + bytes(MiB - len(head)) + tail


def test_coredumps(ds, tmp_path):
    rng = random.Random(31)
    make_vm(ds, "vm1", {"vm1.nvram": rng.randbytes(300)})
    in_vm = sparse_core(ds.m("vm1/core.1234"), rng)
    outside = sparse_core(ds.m("core.5678"), rng)
    ds.unmount()
    vmkey = vm_key_record(ds.b("vm1") / STATE_NAME)["current"]
    dskey = vm_key_record(ds.b(".vmcrypt.datastore"))["current"]
    assert vmkey != dskey

    res = util("envelope", "describe", ds.b("vm1/core.1234"), ds.b("core.5678"))
    a, b = res.json["files"]
    assert (a["class"], a["slots"][0]["kek_id"]) == ("coredump", vmkey[1])
    assert (b["class"], b["slots"][0]["kek_id"]) == ("coredump", dskey[1])
    for src, plain in ((ds.b("vm1/core.1234"), in_vm), (ds.b("core.5678"), outside)):
        out = tmp_path / (src.name + ".plain")
        util("coredump", "extract", src, out, config=ds.config)
        assert read(out) == plain

    # Export under a password for someone without our key providers.
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD + "\n")
    export = tmp_path / "core.1234.vmc"
    res = util("coredump", "export", ds.b("vm1/core.1234"), "--out", export,
               "--password-file", pwfile, config=ds.config)
    kek_id = res.json["kek_id"]
    assert re.fullmatch(r"argon2id:t=3:m=65536:p=1:s=[0-9a-f]{32}", kek_id)
    d = util("envelope", "describe", export).json["files"][0]
    assert d["intact"] is True and d["class"] == "coredump" and d["size"] == len(in_vm)
    assert d["slots"] == [{"slot": 0, "status": "ok", "provider": "password",
                           "kek_id": kek_id, "generation": 1}]
    assert d["vm_id"] == a["vm_id"] and d["file_id"] != a["file_id"]
    assert len(read(export)) == 4096 + len(in_vm)

    # Opened with the password alone: no configuration, no plugin directory.
    nothing = ["--config", tmp_path / "no.conf", "--keyprov-dir", tmp_path / "no-plugins"]
    plain = tmp_path / "from-export"
    util(*nothing, "coredump", "extract", "--password-file", pwfile, export, plain,
         keyprov=False)
    assert read(plain) == in_vm
    res = util(*nothing, "coredump", "extract", "--password-file", "-", export, "-",
               keyprov=False, json_out=False, binary=True, stdin=None,
               input=PASSWORD.encode() + b"\n")
    assert res.out == in_vm
    res = util(*nothing, "envelope", "describe", "--verify", "--password-file", pwfile, export,
               keyprov=False)
    assert res.json["files"][0]["verify"] == [{"slot": 0, "opens": True}]

    # A wrong password: exit 6, a clear message, nothing written.
    bad = tmp_path / "bad-pw"
    bad.write_text("Correct horse battery staple\n")
    wrong = tmp_path / "wrong"
    res = util(*nothing, "coredump", "extract", "--password-file", bad, export, wrong,
               keyprov=False, json_out=False, rc=EXIT_KEY)
    assert "wrong password" in res.err and not wrong.exists()
    # No password at all, and no terminal to ask on.
    res = util(*nothing, "coredump", "extract", export, wrong, keyprov=False, rc=EXIT_FAIL,
               start_new_session=True)
    assert "no terminal" in res.err and not wrong.exists()
    # Only core dumps are exported, and only encrypted ones.
    res = util("coredump", "export", ds.b("vm1/vm1.nvram"), "--out", tmp_path / "x",
               "--password-file", pwfile, config=ds.config, rc=EXIT_FAIL)
    assert "not a core dump (class home)" in res.err and not (tmp_path / "x").exists()
    write(tmp_path / "core.clear", b"x" * 100)
    util("coredump", "export", tmp_path / "core.clear", "--out", tmp_path / "x",
         "--password-file", pwfile, config=ds.config, rc=EXIT_FAIL)
    util("coredump", "export", ds.b("core.5678"), "--out", export, "--password-file", pwfile,
         config=ds.config, rc=EXIT_FAIL)            # exists: not over it without --force
    assert independent_open(export, PASSWORD) == in_vm


def argon2id(password, salt, t, m, p):
    """Argon2id from the reference implementation (libargon2), 32 bytes."""
    name = ctypes.util.find_library("argon2")
    if not name:
        pytest.skip("libargon2 (the Argon2 reference implementation) is not installed")
    lib = ctypes.CDLL(name)
    out = ctypes.create_string_buffer(32)
    pw = password.encode()
    r = lib.argon2id_hash_raw(ctypes.c_uint32(t), ctypes.c_uint32(m), ctypes.c_uint32(p),
                              pw, ctypes.c_size_t(len(pw)), salt, ctypes.c_size_t(len(salt)),
                              out, ctypes.c_size_t(32))
    assert r == 0, f"argon2id_hash_raw: {r}"
    return out.raw


def independent_open(path, password):
    """Decrypt a password-sealed file following docs/FORMAT.md only."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    data = read(path)
    hdr, body = data[:4096], data[4096:]
    slot = hdr[512:1024]
    plen, klen = slot[3], struct.unpack_from("<H", slot, 4)[0]
    assert slot[16:16 + plen] == b"password"
    kek_id = slot[80:80 + klen].decode()
    m = re.fullmatch(r"argon2id:t=(\d+):m=(\d+):p=(\d+):s=([0-9a-f]{32})", kek_id)
    t, mem, par, salt = int(m[1]), int(m[2]), int(m[3]), bytes.fromhex(m[4])
    kek = argon2id(password, salt, t, mem, par)
    wrap = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"vmcryptfs/v1/dek-wrap").derive(kek)
    dek = AESGCM(wrap).decrypt(slot[336:348], slot[352:416] + slot[416:432],
                               hdr[:256] + slot[:336])
    out = bytearray()
    for i in range(0, len(body), 4096):
        unit = body[i:i + 4096]
        if unit == bytes(len(unit)):
            out += unit                          # a hole
            continue
        assert len(unit) >= 16
        dec = Cipher(algorithms.AES(dek), modes.XTS((i // 4096).to_bytes(16, "little"))) \
            .decryptor()
        out += dec.update(unit) + dec.finalize()
    return bytes(out)
