# SPDX-License-Identifier: GPL-2.0-or-later
"""envelope extract of a 1 GiB disk written through the mount (random data
with a 256 MiB hole in the middle): the plaintext comes back with the same
SHA-256, streamed to a pipe while the tool's peak resident memory stays
under 64 MiB, and into a file that keeps the hole; parts of it with
--offset/--length across the boundaries between data and hole."""
import hashlib
import os
import random
import subprocess

from utiltest import PLUGINS, UTIL, util

MiB = 1 << 20
SIZE = 1024 * MiB
HOLE = (512 * MiB, 768 * MiB)   # never written
RSS_LIMIT_KIB = 64 * 1024


def write_disk(path, seed):
    """Random data except in HOLE; returns the SHA-256 of the whole plaintext
    and a function giving any range of it."""
    rng = random.Random(seed)
    chunks = {}
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for off in range(0, SIZE, 4 * MiB):
            if HOLE[0] <= off < HOLE[1]:
                h.update(bytes(4 * MiB))
                continue
            data = rng.randbytes(4 * MiB)
            if off in (0, 29 * 4 * MiB, HOLE[0] - 4 * MiB, HOLE[1], SIZE - 4 * MiB):
                chunks[off] = data
            f.seek(off)
            f.write(data)
            h.update(data)
        f.truncate(SIZE)

    def part(off, n):
        out = b""
        for o in range(off - off % (4 * MiB), off + n, 4 * MiB):
            out += chunks[o] if o in chunks else bytes(4 * MiB)
        start = off % (4 * MiB)
        return out[start:start + n]
    return h.hexdigest(), part


def test_extract_1gib(ds, tmp_path):
    vm = ds.make_vm("big")
    digest, part = write_disk(vm / "big-flat.vmdk", 41)
    ds.unmount()
    src = ds.b("big/big-flat.vmdk")
    assert os.path.getsize(src) == SIZE + 4096

    # To a pipe, hashed as it streams; the peak RSS of that one child.
    argv = [str(UTIL), "--config", str(ds.config), "--keyprov-dir", str(PLUGINS),
            "envelope", "extract", str(src), "-"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h, n = hashlib.sha256(), 0
    while True:
        b = p.stdout.read(4 * MiB)
        if not b:
            break
        h.update(b)
        n += len(b)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.returncode == 0, err
    assert n == SIZE and h.hexdigest() == digest
    assert usage.ru_maxrss < RSS_LIMIT_KIB, f"peak RSS {usage.ru_maxrss} KiB"

    # To a file: same bytes, and the hole stays a hole.
    out = tmp_path / "big.raw"
    res = util("envelope", "extract", src, out, config=ds.config)
    assert res.json["bytes"] == SIZE
    h = hashlib.sha256()
    with open(out, "rb") as f:
        while b := f.read(16 * MiB):
            h.update(b)
    assert h.hexdigest() == digest
    assert os.stat(out).st_blocks * 512 <= SIZE - (HOLE[1] - HOLE[0]) + MiB  # + metadata
    os.unlink(out)

    # Parts across the data/hole boundaries and at the end.
    for off, length in [(0, 10), (HOLE[0] - 5000, 10000), (HOLE[1] - 1, 4097),
                        (SIZE - 12345, 99999), (29 * 4 * MiB + 777, 4096)]:
        res = util("envelope", "extract", "--offset", off, "--length", length, src, "-",
                   config=ds.config, json_out=False, binary=True)
        assert res.out == part(off, min(length, SIZE - off)), (off, length)
