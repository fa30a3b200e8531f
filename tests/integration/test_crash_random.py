# SPDX-License-Identifier: GPL-2.0-or-later
"""Crash consistency: kill -9 of the daemon at random moments (issue 7).

(a) Heavy writes. Writer processes (this file run as a script) write at
random offsets and lengths into three encrypted files of two VMs (one of
them shared by two writers, each owning interleaved 40961-byte chunks, so
they meet inside data units) and one cleartext file, through the mount,
with an fsync (or fdatasync) every few writes. Each writer logs in a side
file outside the mount, before every write, what it writes (the data is
derived from the seed, the writer and the write's number), and after every
completed fsync which writes that fsync acknowledged (the log itself is
fsync'd then). The daemon dies by SIGKILL at a random moment: after a random
delay, or at the N-th (random) write-like system call on the backing store
(tests/fault/libvmcfault.so; before or after the call), half of the rounds
with the kernel's writeback cache (two rounds in five). Writes only: a
crash inside a truncate is below. Then, for every file: every write
acknowledged by an fsync is intact unless a later write changed the same
bytes; a byte range written after the last acknowledgement holds the
acknowledged content or that of one of the unacknowledged writes (taken
whole within each 4 KiB page: a page is written at once), or zeros past the
acknowledged end; the size lies between the acknowledged size and the
largest size written. Every vmcryptfs object in the backing store is intact
(header magic and checksums, key slots, key records) and vmcryptfs-util scan
exits 0 before the remount; every file reads whole after it.

(b) Control operations. A VM of a few MiB (a thin disk with a hole, more
disks, home files, 30 small files, cleartext descriptor, .vmx and log) goes
through encrypt, shallow rekey, rekey --deep and decrypt, over and over; each
run is killed after a random delay (drawn within the time an uninterrupted
run took), the dead mount cleaned up and mounted again. Right after the
crash: no damaged object, and a scan that finds no damage (cleartext files
in a VM being encrypted or decrypted are the only violations allowed); after
the remount every file reads equal to the plaintext reference; re-running
the same verb finishes it; then the VM is in the verb's final state (which
files are encrypted, one key slot per header under the record's current
KEK, record steady, no journal or copy left, no plaintext unit in any
encrypted backing file, new data keys after a deep rekey, byte-identical
cleartext after decrypt) and vmcryptfs-util scan --verify exits 0.

Not covered here (test_ctl_crash.py has them): the daemon's own crash points
at fixed places. Below, four crash points inside truncate, placed with the
fault library at the exact system call so they are deterministic: one
growing, and one after each step of a shrink to the middle of a data unit
(the truncate record of docs/FORMAT.md 3.6: record, cut, final bytes).

VMC_SEED=N reproduces a run's random choices (kill delays, syscall counts,
data); the interleaving of the writers is the scheduler's. VMC_CRASH_ROUNDS
and VMC_CRASH_CYCLES change the number of kill points of (a) and of (b)
(4 per cycle); the defaults give 30 + 24 = 54 random kill points (and the
four fixed ones of the truncate test) in about a minute on two shared cores,
two at worst.
"""
import json
import os
import random
import sys
import time

# --- The writer (this file run as a script) ---------------------------------------------

KiB = 1024


def op_data(seed, wid, seq, n):
    """The bytes of write number @seq of writer @wid."""
    return random.Random(f"{seed}/{wid}/{seq}").randbytes(n)


def writer_main(args):
    """Write at random into one file until an error (the daemon died) or
    the stop file appears; log every write before it is made and every
    fsync after it completed. Log lines:
        W seq offset length     a write is about to be made
        S seq                   an fsync returned: writes <= seq are durable
        E seq errno|short N     the write or fsync numbered seq failed (a short
                                write is followed by the errno of an fsync)
    """
    a = json.loads(args)
    rng = random.Random(f"{a['seed']}/{a['wid']}/ops")
    logfd = os.open(a["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)

    def log(line):
        os.write(logfd, (line + "\n").encode())

    seq = 0
    log("S 0")
    os.fsync(logfd)
    try:
        fd = os.open(a["path"], os.O_RDWR)
        size = os.fstat(fd).st_size
    except OSError as e:     # the daemon died before this writer started
        log(f"E 0 {e.errno}")
        return 0
    next_sync = rng.randint(2, 10)
    chunk, slot, nslots, top = a["chunk"], a["slot"], a["nslots"], a["max_size"]
    deadline = time.monotonic() + 60
    try:
        while True:
            seq += 1
            r = rng.random()
            n = rng.randint(1, 512) if r < 0.45 else \
                rng.randint(512, 32 * KiB) if r < 0.85 else rng.randint(32 * KiB, 256 * KiB)
            if nslots > 1:
                k = rng.randrange(slot, top // chunk, nslots)
                off = k * chunk + rng.randrange(chunk)
                n = min(n, (k + 1) * chunk - off)
            else:
                off = rng.randrange(0, min(top, size + 64 * KiB))
                n = min(n, top - off)
            log(f"W {seq} {off} {n}")
            w = os.pwrite(fd, op_data(a["seed"], a["wid"], seq, n), off)
            if w != n:
                # A write cut short by the daemon's death (the kernel
                # splits a write into requests): what follows must fail.
                log(f"E {seq} short {w}")
                os.fsync(fd)
                log(f"E {seq} short-write-but-the-daemon-answers")
                break
            size = max(size, off + n)
            if seq >= next_sync:
                (os.fdatasync if rng.random() < 0.3 else os.fsync)(fd)
                log(f"S {seq}")
                os.fsync(logfd)
                next_sync = seq + rng.randint(2, 10)
            if seq % 32 == 0 and (os.path.exists(a["stop"]) or time.monotonic() > deadline):
                break
    except OSError as e:
        log(f"E {seq} {e.errno}")
    os.fsync(logfd)
    return 0


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "writer":
    sys.exit(writer_main(sys.argv[2]))

# --- The tests ------------------------------------------------------------------------

import bisect  # noqa: E402
import errno  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

import vmctest  # noqa: E402
from faultenv import (Faults, assert_backing_intact, assert_scan_clean,  # noqa: E402
                      UTIL, errno_name, pread_nocache, same, util_scan, wait_until,
                      write_synced)
from vmctest import (CONV_TMP_NAME, HDR, JOURNAL_NAME, POLICY_NAME, STATE_NAME, ctl_ds,  # noqa: E402
                     file_units_leak, header_slots, is_encrypted, read, unit_hashes,
                     vm_key_record, write)

SEED = int(os.environ.get("VMC_SEED", "20261122"))
ROUNDS = int(os.environ.get("VMC_CRASH_ROUNDS", "30"))
CYCLES = int(os.environ.get("VMC_CRASH_CYCLES", "6"))
MiB = 1 << 20
PAGE = 4096
CHUNK = 40961          # writers sharing a file own alternate chunks of this size
WRITER_START = 60.0    # seconds for the writers to start on a loaded machine

# (file, writers, initial size, growth allowed); the .log is cleartext.
WRITE_FILES = (
    ("vm1/vm1-flat.vmdk", 2, 3 * MiB + 1000, 512 * KiB),
    ("vm1/vm1.nvram", 1, 64 * KiB + 1800, 256 * KiB),
    ("vm2/data.qcow2", 1, MiB + 77, 256 * KiB),
    ("vm1/vmware.log", 1, 256 * KiB + 5, 256 * KiB),
)


class Writer:
    def __init__(self, tmp, rel, wid, slot, nslots, path, max_size, seed, rnd):
        self.rel, self.wid = rel, wid
        self.log = tmp / f"w{wid}.r{rnd}.log"
        self.stop = tmp / "stop"
        self.args = {"path": str(path), "log": str(self.log), "wid": f"{wid}.{rnd}",
                     "seed": seed, "slot": slot, "nslots": nslots, "chunk": CHUNK,
                     "max_size": max_size, "stop": str(self.stop)}
        self.proc = subprocess.Popen([sys.executable, __file__, "writer", json.dumps(self.args)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)

    def lines(self):
        try:
            return self.log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def started(self):
        return self.proc.poll() is not None or any(l[:1] in "WE" for l in self.lines())

    def parse(self):
        """(ops, acked): ops = [(seq, off, len)] in order; acked = the last
        seq an fsync acknowledged; and the error line, if any."""
        ops, acked, err = [], None, None
        for line in self.lines():
            f = line.split()
            if f[0] == "W":
                ops.append((int(f[1]), int(f[2]), int(f[3])))
            elif f[0] == "S":
                acked = int(f[1])
            elif f[0] == "E":
                err = f[2:]     # the last one
        assert acked is not None, f"writer {self.wid}: no base acknowledgement"
        return ops, acked, err

    def data(self, seq, n):
        return op_data(self.args["seed"], self.args["wid"], seq, n)


def check_file(rel, base, writers, actual):
    """Check @actual (the file's content after the crash) against the
    writers' logs; returns (acked image, statistics)."""
    image = bytearray(base)
    chains = []
    for w in writers:
        ops, acked, _ = w.parse()
        chain = []
        for seq, off, n in ops:
            if seq <= acked:
                if off > len(image):
                    image += bytes(off - len(image))
                image[off:off + n] = w.data(seq, n)
            else:
                chain.append((w, seq, off, n))
        chains.append(chain)
    acked_size = len(image)
    top = max([acked_size] + [off + n for c in chains for _, _, off, n in c])
    stats = {"unacked": sum(len(c) for c in chains), "changed_pages": 0}
    assert acked_size <= len(actual) <= top, \
        f"{rel}: size {len(actual)} outside [{acked_size}, {top}] (acknowledged, largest written)"
    # Pieces: cut at page boundaries and at the edges of unacknowledged writes.
    cuts = set(range(0, len(actual) + PAGE, PAGE))
    cuts |= {acked_size}
    for c in chains:
        for _, _, off, n in c:
            cuts |= {off, off + n}
    cuts = sorted(x for x in cuts if x <= len(actual))
    padded = bytes(image) + bytes(max(0, len(actual) - acked_size))
    datas = {}

    def wdata(w, seq, n):
        k = (w.wid, seq)
        if k not in datas:
            datas[k] = w.data(seq, n)
        return datas[k]

    for pa in range(0, len(actual), PAGE):
        pb = min(pa + PAGE, len(actual))
        if actual[pa:pb] == padded[pa:pb]:
            continue
        stats["changed_pages"] += 1
        for i in range(bisect.bisect_left(cuts, pa), len(cuts) - 1):
            a, b = cuts[i], cuts[i + 1]
            if a >= pb:
                break
            if actual[a:b] == padded[a:b]:
                continue
            # The candidates: the piece after each unacknowledged write of
            # each writer, in that writer's order, over the acknowledged image.
            ok = False
            for c in chains:
                v = bytearray(padded[a:b])
                for w, seq, off, n in c:
                    lo, hi = max(a, off), min(b, off + n)
                    if lo < hi:
                        v[lo - a:hi - a] = wdata(w, seq, n)[lo - off:hi - off]
                        if actual[a:b] == v:
                            ok = True
                            break
                if ok:
                    break
            if not ok:
                acked_here = padded[a:b] if a < acked_size else b"(past the acknowledged end)"
                raise AssertionError(
                    f"{rel}: bytes [{a}, {b}) hold {bytes(actual[a:b][:16]).hex()}..., neither "
                    f"the acknowledged {bytes(acked_here[:16]).hex()}... nor any unacknowledged "
                    f"write (acknowledged size {acked_size}, file size {len(actual)})")
    return stats


def read_mount(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return pread_nocache(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)


def sync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_kill_during_writes(make_ds, tmp_path):
    rng = random.Random(SEED)
    faults = Faults(tmp_path / "faults")
    logs = tmp_path / "writer-logs"
    logs.mkdir()
    ds = ctl_ds(make_ds, tmp_path, mount=False)
    # (The daemon's log must have no error line in any round: the fixture
    # checks it at the end.)
    ds.mount(env=faults.env())
    ds.make_vm("vm1")
    ds.make_vm("vm2")
    base = {}
    for rel, _, size, _ in WRITE_FILES:
        base[rel] = rng.randbytes(size)
        write_synced(ds.m(rel), base[rel])
    for rel, _, _, _ in WRITE_FILES:
        assert is_encrypted(ds.b(rel)) == (not rel.endswith(".log")), rel
    max_size = {rel: size + grow for rel, _, size, grow in WRITE_FILES}
    report, totals = [], {"unacked": 0, "changed_pages": 0, "ops": 0}
    t_start = time.monotonic()
    writeback = False   # the first mount is without it
    for rnd in range(ROUNDS):
        mode = rng.choice(("delay", "syscall"))
        what = f"round {rnd} (VMC_SEED={SEED})"
        if mode == "syscall":
            action = rng.choice(("kill", "kill-after"))
            nth = rng.randint(20, 1500)
            faults.set(f"pwrite,fsync,fdatasync,fallocate,ftruncate {ds.backing}/ {action} "
                       f"skip={nth}")
            how = f"{action} at write-like call {nth + 1}"
        wid = 0
        writers = []
        for rel, n, _, _ in WRITE_FILES:
            for slot in range(n):
                writers.append(Writer(logs, rel, wid, slot, n, ds.m(rel), max_size[rel], SEED,
                                      rnd))
                wid += 1
        pid = ds.proc.pid
        # (Also when the daemon died first: then they fail on the dead mount,
        # which must stay there until they have tried.)
        assert wait_until(lambda: all(w.started() for w in writers), WRITER_START, 0.02), \
            f"{what}: the writers did not start"
        if mode == "delay":
            delay = rng.uniform(0.02, 1.2)
            time.sleep(delay)
            how = f"SIGKILL after {delay:.3f} s"
            os.kill(pid, signal.SIGKILL)
        elif not wait_until(lambda: ds.proc.poll() is not None, 6.0, 0.02):
            how += " not reached in 6 s: SIGKILL"
            os.kill(pid, signal.SIGKILL)
        rc = ds.crash()
        assert rc in (-signal.SIGKILL, 99), f"{what}: daemon status {rc}"
        faults.clear()
        for w in writers:
            try:
                out, _ = w.proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                raise AssertionError(f"{what}: writer {w.wid} did not stop")
            assert w.proc.returncode == 0, f"{what}: writer {w.wid} failed:\n{out.decode()}"
            _, _, err = w.parse()
            # Requests in flight die with ECONNABORTED, later ones ENOTCONN;
            # with the writeback cache, a write can also report the failed
            # writeback of earlier dirty pages (EIO, the kernel's errseq).
            ok = (errno.ENOTCONN, errno.ECONNABORTED) + ((errno.EIO,) if writeback else ())
            assert err and err[0] in tuple(str(e) for e in ok), \
                f"{what}: writer {w.wid} ({w.rel}) ended with {err} ({how}); its log ends " \
                f"{w.lines()[-4:]}\n{ds.log_tail(20)}"
        # The backing store as the crash left it.
        assert_backing_intact(ds.backing, what)
        assert_scan_clean(ds, what=f"{what}, right after the crash")
        writeback = rng.random() < 0.4
        ds.mount(options=["writeback"] if writeback else [], env=faults.env())
        stats = {"unacked": 0, "changed_pages": 0}
        ops = 0
        for rel, _, _, _ in WRITE_FILES:
            mine = [w for w in writers if w.rel == rel]
            actual = read_mount(ds.m(rel))
            s = check_file(rel, base[rel], mine, actual)
            for k in stats:
                stats[k] += s[k]
            ops += sum(len(w.parse()[0]) for w in mine)
            base[rel] = actual
            sync_file(ds.m(rel))
        for k in stats:
            totals[k] += stats[k]
        totals["ops"] += ops
        report.append(f"round {rnd}: {how}, {ops} writes, {stats['unacked']} not acknowledged, "
                      f"{stats['changed_pages']} pages changed since the last acknowledgement; "
                      f"next round {'with' if writeback else 'without'} writeback")
        for w in writers:
            w.log.unlink()
    ds.unmount()
    ds.mount()
    for rel, _, _, _ in WRITE_FILES:
        same(read(ds.m(rel)), base[rel], f"{rel} after the last remount")
    assert_scan_clean(ds, verify=True, what="end")
    print(f"\n{ROUNDS} kill points in {time.monotonic() - t_start:.0f} s, "
          f"{totals['ops']} writes (VMC_SEED={SEED}):\n  " + "\n  ".join(report))
    # The kills fell among writes in flight, not only between acknowledged ones.
    assert totals["unacked"] > ROUNDS, totals


# --- (b) Control operations ----------------------------------------------------------

DESCRIPTOR = b'# Disk DescriptorFile\nversion=1\ncreateType="vmfs"\nRW 8192 VMFS "vm1-flat.vmdk"\n'
VERBS = (("encrypt",), ("rekey",), ("rekey", "--deep"), ("decrypt",))


def ctl_reference(rng):
    flat = rng.randbytes(2 * MiB) + bytes(512 * KiB) + rng.randbytes(300 * KiB + 77)
    files = {
        "vm1-flat.vmdk": flat,
        "data.qcow2": rng.randbytes(MiB),
        "vm1.nvram": rng.randbytes(8684),
        "vm1.vswp": rng.randbytes(256 * KiB + 5),
        "vm1.vmdk": DESCRIPTOR,
        "vm1.vmx": b'displayName = "vm1"\nnvram = "vm1.nvram"\n',
        "vmware.log": b"2026-11-22T00:00:00Z In(05) vmx started\n" * 50,
    }
    for i in range(30):
        files[f"s{i:02d}.vmem"] = rng.randbytes(rng.randint(1, 6000))
    enc = [f for f in files if f not in ("vm1.vmdk", "vm1.vmx", "vmware.log")]
    return files, enc


def verb_name(args):
    return " ".join(args)


def run_killed(ds, args, delay):
    """Start `vmcryptfs-ctl ARGS vm1`, SIGKILL the daemon @delay seconds
    later; (ctl exit status, whether it had finished before the kill)."""
    argv = [str(vmctest.CTL), "-m", str(ds.mnt), "--json", "-q"] + list(args) + [str(ds.m("vm1"))]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    time.sleep(delay)
    finished = p.poll() is not None
    os.kill(ds.proc.pid, signal.SIGKILL)
    p.communicate(timeout=120)
    ds.crash()
    return p.returncode, finished and p.returncode == 0


def timed_ctl(ds, *args):
    t = time.monotonic()
    r = ds.ctl(*args, ds.m("vm1"))
    assert r.json.get("failed", 0) == 0, r
    return time.monotonic() - t


def vm_files_equal(ds, files, what):
    for f, data in files.items():
        same(read(ds.m("vm1") / f), data, f"{what}: vm1/{f}")


def final_state(ds, verb, files, enc, hashes, before, what):
    """The VM is in @verb's final state."""
    left = [n for n in os.listdir(ds.b("vm1"))
            if n.startswith(JOURNAL_NAME) or n.startswith(CONV_TMP_NAME)]
    assert not left, f"{what}: left behind {left}"
    if verb == "decrypt":
        for f, data in files.items():
            same(read(ds.b("vm1") / f), data, f"{what}: backing vm1/{f} (cleartext)")
        assert not (ds.b("vm1") / POLICY_NAME).exists() and not (ds.b("vm1") / STATE_NAME).exists()
        return
    rec = vm_key_record(ds.b("vm1") / STATE_NAME)
    assert rec["state"] == 0 and rec["next"] is None, f"{what}: {rec}"
    for f in files:
        assert is_encrypted(ds.b("vm1") / f) == (f in enc), f"{what}: {f}"
    for f in enc:
        keks = [(s["provider"], s["kek_id"]) for s in header_slots(ds.b("vm1") / f)]
        assert keks == [rec["current"]], f"{what}: {f} has slots {keks}, record {rec['current']}"
        leaks = file_units_leak(ds.b("vm1") / f, hashes)
        assert not leaks, f"{what}: {f}: plaintext units at {leaks[:4]}"
    if verb.startswith("rekey"):
        assert rec["current"] != before["kek"], f"{what}: the KEK did not change"
    if verb == "rekey --deep":
        for f in enc:
            if len(files[f]) < 16:
                continue      # (a keystream of 1..15 bytes may repeat by chance)
            unit0 = read(ds.b("vm1") / f)[4096:8192]
            assert unit0 != before["units"][f], f"{what}: {f}: same ciphertext, same data key"


def snapshot(ds, enc):
    """What a rekey must change: the record's KEK and each file's first unit."""
    if not (ds.b("vm1") / STATE_NAME).exists():
        return {"kek": None, "units": {}}
    return {"kek": vm_key_record(ds.b("vm1") / STATE_NAME)["current"],
            "units": {f: read(ds.b("vm1") / f)[4096:8192] for f in enc}}


def test_kill_during_ctl_operations(make_ds, tmp_path):
    rng = random.Random(SEED + 1)
    files, enc = ctl_reference(rng)
    hashes = set()
    for f in enc:
        hashes |= unit_hashes(files[f])
    ds = ctl_ds(make_ds, tmp_path, mount=False)
    ds.b("vm1").mkdir()
    for f, data in files.items():
        write(ds.b("vm1") / f, data)
    ds.mount()
    t_start = time.monotonic()
    # One uninterrupted run of each verb: the time within which kills fall.
    took = {}
    for args in VERBS:
        before = snapshot(ds, enc)
        took[verb_name(args)] = timed_ctl(ds, *args)
        final_state(ds, verb_name(args), files, enc, hashes, before, f"{verb_name(args)} (whole)")
    log = ["uninterrupted: " + ", ".join(f"{v} {t:.2f} s" for v, t in took.items())]
    interrupted = {v: 0 for v in took}
    kills = 0
    for cycle in range(CYCLES):
        for args in VERBS:
            verb = verb_name(args)
            what = f"cycle {cycle}, {verb} (VMC_SEED={SEED})"
            before = snapshot(ds, enc)
            delay = rng.uniform(0, took[verb])
            rc, finished = run_killed(ds, args, delay)
            kills += 1
            if finished:
                took[verb] *= 0.8       # the machine got faster: aim earlier
            else:
                interrupted[verb] += 1
            journal = (ds.b("vm1") / JOURNAL_NAME).exists()
            rec = vm_key_record(ds.b("vm1") / STATE_NAME) if (ds.b("vm1") / STATE_NAME).exists() \
                else None
            log.append(f"{what}: killed after {delay:.3f} s: "
                       f"{'finished before' if finished else f'interrupted (ctl exit {rc})'}, "
                       f"journal {'present' if journal else 'absent'}, record "
                       f"{'absent' if rec is None else 'state ' + str(rec['state'])}")
            # Right after the crash: nothing damaged.
            assert_backing_intact(ds.backing, f"{what}, after the crash")
            src, rep, p = util_scan(ds)
            kinds = {v["kind"] for v in (rep or {}).get("violations", [])}
            allowed = {"cleartext-file", "cleartext-home"} if verb in ("encrypt", "decrypt") \
                else set()
            assert rep is not None and src in (0, 3) and not (kinds - allowed) and \
                (src == 0) == (not kinds), f"{what}: scan after the crash: exit {src}, " \
                f"{rep and rep.get('violations')}\n{p.stderr}"
            ds.mount()
            st = ds.ctl("status", ds.m("vm1")).json["vms"][0]
            assert st["conversion_in_progress"] == journal, (what, st)
            assert st.get("rekey_in_progress", False) == (rec is not None and rec["state"] == 1), \
                (what, st)
            vm_files_equal(ds, files, f"{what}, after the remount")
            # The same verb again finishes the job.
            r = ds.ctl(*args, ds.m("vm1"), rc=None)
            assert r.rc == 0 and r.json.get("failed", 0) == 0, f"{what}: the re-run:\n{r!r}"
            final_state(ds, verb, files, enc, hashes, before, f"{what}, re-run")
            vm_files_equal(ds, files, f"{what}, re-run")
            assert_backing_intact(ds.backing, f"{what}, re-run")
            assert_scan_clean(ds, verify=verb != "decrypt", what=f"{what}, re-run")
    ds.remount()
    vm_files_equal(ds, files, "end")
    print(f"\n{kills} kill points in {time.monotonic() - t_start:.0f} s (VMC_SEED={SEED}):\n  "
          + "\n  ".join(log))
    # The kills fell inside the operations (each verb, given a few tries).
    if CYCLES >= 3:
        assert all(interrupted.values()), f"some verb was never interrupted: {interrupted}"
    else:
        assert any(interrupted.values()), f"no operation was interrupted: {interrupted}"


# --- Crash points inside truncate -------------------------------------------------------

# A shrink to the middle of a data unit writes a record of itself into the
# header (pwrite), cuts the backing file (ftruncate), writes the final unit's
# new ciphertext (pwrite) and zeroes the record (pwrite): a crash after each
# step is finished at the next open.
SHRINK_KILLS = {
    "shrink-after-record": ("pwrite /vm1/vm1-flat.vmdk kill-after", "pwrite"),
    "shrink-after-cut": ("ftruncate /vm1/vm1-flat.vmdk kill-after", "ftruncate"),
    "shrink-after-bytes": ("pwrite /vm1/vm1-flat.vmdk kill-after skip=1", "pwrite"),
    # ... and finished by vmcryptfs-ctl decrypt, before anything opens it.
    "shrink-then-decrypt": ("ftruncate /vm1/vm1-flat.vmdk kill-after", "ftruncate"),
}


@pytest.mark.parametrize("kind", ["grow", *SHRINK_KILLS])
def test_crash_inside_truncate(make_ds, tmp_path, kind):
    """The daemon dies between the two backing calls of a truncate (the
    fault library kills it right after the first): the data before the
    truncation point, written and synced before, is intact after the
    remount, and the size is the old or the new one."""
    rng = random.Random(SEED + 2)
    faults = Faults(tmp_path / "faults")
    ds = ctl_ds(make_ds, tmp_path, mount=False)
    ds.mount(env=faults.env())
    ds.make_vm("vm1")
    ref = rng.randbytes(6 * 4096 + 1800)
    write_synced(ds.m("vm1/vm1-flat.vmdk"), ref)
    if kind == "grow":
        new = 9 * 4096 + 100
        faults.set("ftruncate /vm1/vm1-flat.vmdk kill-after")
        keep = ref
    else:
        new = 3 * 4096 + 1000
        faults.set(SHRINK_KILLS[kind][0])
        keep = ref[:new]
    fd = os.open(ds.m("vm1/vm1-flat.vmdk"), os.O_RDWR)
    e = vmctest.errno_of(os.ftruncate, fd, new)
    vmctest.errno_of(os.close, fd)      # (ENOTCONN: its flush finds the daemon dead)
    assert e in (errno.ENOTCONN, errno.ECONNABORTED), errno_name(e)
    assert ds.crash() == -signal.SIGKILL
    faults.clear()
    assert [h[0] for h in faults.hits()] == (["ftruncate"] if kind == "grow" else
                                             [SHRINK_KILLS[kind][1]])
    if kind != "grow":
        # Offline, vmcryptfs-util reads the file as the daemon will finish it.
        rc, rep, p = util_scan(ds)
        assert rc == 0, p.stdout + p.stderr
        base = [str(UTIL), "--config", str(ds.config), "--keyprov-dir", str(vmctest.PLUGINS)]
        d = json.loads(subprocess.run(base + ["--json", "envelope", "describe",
                                              str(ds.b("vm1/vm1-flat.vmdk"))],
                                      check=True, capture_output=True, text=True).stdout)
        d = d[0] if isinstance(d, list) else d.get("files", [d])[0]
        assert d["size"] == new and d["truncate_pending"], d
        out = subprocess.run(base + ["envelope", "extract", str(ds.b("vm1/vm1-flat.vmdk")), "-"],
                             check=True, capture_output=True).stdout
        same(out, keep, f"{kind}: vmcryptfs-util envelope extract")
    ds.mount()
    if kind == "shrink-then-decrypt":
        assert ds.ctl("decrypt", ds.m("vm1")).json["failed"] == 0
        assert not is_encrypted(ds.b("vm1/vm1-flat.vmdk"))
        same(read(ds.b("vm1/vm1-flat.vmdk")), keep, "decrypted after the interrupted truncate")
    got = read(ds.m("vm1/vm1-flat.vmdk"))
    if kind == "grow":
        assert len(got) in (len(ref), new), len(got)
    else:
        # The record was synced before anything changed: the truncate is finished.
        assert len(got) == new, f"{kind}: size {len(got)}, expected {new}"
        assert "finished an interrupted truncate" in ds.log(), kind
        if kind != "shrink-then-decrypt":
            assert ds.b("vm1/vm1-flat.vmdk").stat().st_size == HDR + new
            assert read(ds.b("vm1/vm1-flat.vmdk"))[256:512] == bytes(256), "record not cleared"
    same(got[:len(keep)], keep, f"{kind}: the data before the truncation point")
    if len(got) > len(ref):
        assert got[len(ref):] == bytes(len(got) - len(ref)), f"{kind}: the extension is not zeros"
