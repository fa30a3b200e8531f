# SPDX-License-Identifier: GPL-2.0-or-later
"""The randomized model test (in the manner of fsx) at CI scale (issue 7).

Many seeds, each a fresh datastore with one encrypted and one cleartext file
in a VM directory, each file driven through a real mount by a long random
sequence of operations and checked byte for byte against an in-memory model
(a bytearray) after every step:

* the operations of test_posix.run_model (reused, not copied): writes at any
  offset and length, reads, truncate up and down (by descriptor and by
  path), punch-hole, zero-range, fallocate, mmap write and read, reopen (with
  and without O_TRUNC), fsync, on two descriptors at once;
* and, interleaved with them: rename of the open file within its VM
  directory (to another name, into a subdirectory of the VM, back, and over
  an existing file), after which every descriptor stays valid and the model
  follows the new name; writes through an O_APPEND descriptor (write(2), and
  pwrite(2), which Linux appends too), O_APPEND descriptors reopened, and
  appends through a fresh open(..., "ab").

After every step: the size and the whole content through a descriptor, the
content by path after a rename, and (except with -o writeback, where only
fsync makes the backing store current) the backing file: ciphertext with a
header and size + 4096 for the encrypted file, byte-identical for the
cleartext one. At the end of a seed: fsync, backing check, remount, and the
content once more.

Scale: VMC_MODEL_SEEDS seeds (default 16) x default and -o writeback, each
seed VMC_MODEL_STEPS (default 1200) run_model steps per file plus the
interleaved operations (about 1300 per file, 2600 per seed-pair and mode).
VMC_SEED=N runs only seed N, exactly as CI ran it. From the command line:

    python3 tests/integration/test_model.py --seed N [--steps S] [--writeback]

mounts its own datastore with the build's daemon (VMC_BUILD_DIR), and on a
failure prints the seed, the file, the step and the last operations.
"""
import argparse
import errno
import os
import random
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import vmctest  # noqa: E402
from test_posix import Target, _length, run_model  # noqa: E402
from vmctest import is_encrypted, read  # noqa: E402

DEFAULT_SEEDS = 16
DEFAULT_STEPS = 1200
APPEND_LIMIT = 192 * 1024   # appends only while the file is smaller than this

# Names a file takes in its VM (vm1). Renames keep the class of the name: a
# file truncated to size 0 is classified afresh, by its name, when its next
# data arrives, so a name of another class would make the model's backing
# checks inexact. (Renames across classes: test_names.py.)
NAMES = {
    "encrypted": ["file.nvram", "renamed.nvram", "sub/file.nvram", "sub/deeper/moved.vswp",
                  "other.vmem"],
    "cleartext": ["file.log", "renamed.log", "sub/file.log", "sub/deeper/moved.vmx",
                  "other.vmsd"],
}


def seeds():
    if os.environ.get("VMC_SEED"):
        return [int(os.environ["VMC_SEED"])]
    return list(range(1, int(os.environ.get("VMC_MODEL_SEEDS", DEFAULT_SEEDS)) + 1))


def steps_default():
    return int(os.environ.get("VMC_MODEL_STEPS", DEFAULT_STEPS))


class ModelFailure(AssertionError):
    pass


class MovingTarget(Target):
    """A test_posix.Target whose name changes (rename), in VM directory vm1."""

    def __init__(self, ds, kind):
        super().__init__(ds, kind)
        self.names = NAMES[kind]
        self.rel = "vm1/" + self.names[0]
        self.path, self.backing = ds.m(self.rel), ds.b(self.rel)

    def move_to(self, rel):
        self.rel = rel
        self.path, self.backing = self.ds.m(rel), self.ds.b(rel)


def check_content(t, fd, model, what):
    st = os.fstat(fd)
    if st.st_size != len(model):
        raise ModelFailure(f"{what}: size {st.st_size} != model {len(model)}")
    got = os.pread(fd, len(model) + 4096, 0)
    if got != model:
        first = next((i for i in range(min(len(got), len(model))) if got[i] != model[i]),
                     min(len(got), len(model)))
        raise ModelFailure(f"{what}: content differs from the model at offset {first} "
                           f"(read {len(got)} bytes, model {len(model)})")


def extra_op(t, rng, fds, app, model, history, check_backing):
    """One of the operations run_model does not have: rename of the open
    file, or an O_APPEND write. @app is a one-element list holding the
    O_APPEND descriptor (replaced when reopened)."""
    r = rng.random()
    if r < 0.35:
        # rename within the VM, possibly over an existing file
        old_rel, old_path, old_backing = t.rel, t.path, t.backing
        new_rel = "vm1/" + rng.choice([n for n in t.names if "vm1/" + n != t.rel])
        over = rng.random() < 0.3
        if over:
            decoy = rng.randbytes(rng.randrange(1, 6000))
            history.append(f"create decoy {new_rel} len={len(decoy)}")
            vmctest.write(t.ds.m(new_rel), decoy)
        history.append(f"rename {old_rel} -> {new_rel}{' (over an existing file)' if over else ''}")
        os.rename(old_path, t.ds.m(new_rel))
        t.move_to(new_rel)
        if os.path.lexists(old_path):
            raise ModelFailure(f"{old_rel} still exists after the rename")
        if os.path.lexists(old_backing):
            raise ModelFailure(f"backing {old_rel} still exists after the rename")
        # The new name shows the model (not the decoy), by path.
        got = read(t.path)
        if got != model:
            raise ModelFailure(f"{new_rel} (by path, after the rename) differs from the model "
                               f"(read {len(got)} bytes, model {len(model)})")
        if os.stat(t.path).st_ino != os.fstat(fds[0]).st_ino:
            raise ModelFailure(f"{new_rel} is not the open file after the rename")
    elif r < 0.70:
        if len(model) >= APPEND_LIMIT:
            history.append(f"ftruncate (append fd) {len(model) // 3}")
            os.ftruncate(app[0], len(model) // 3)
            del model[len(model) // 3:]
        else:
            data = rng.randbytes(_length(rng))
            history.append(f"append write len={len(data)}")
            if os.write(app[0], data) != len(data):
                raise ModelFailure("short append write")
            model += data
    elif r < 0.80:
        if len(model) < APPEND_LIMIT:
            data = rng.randbytes(_length(rng))
            off = rng.randrange(len(model) + 1)
            history.append(f"append pwrite off={off} (ignored: O_APPEND) len={len(data)}")
            if os.pwrite(app[0], data, off) != len(data):
                raise ModelFailure("short append pwrite")
            model += data
    elif r < 0.90:
        flags = rng.choice([os.O_WRONLY, os.O_RDWR])
        history.append(f"reopen append fd {'O_WRONLY' if flags == os.O_WRONLY else 'O_RDWR'}")
        os.close(app[0])
        app[0] = -1
        app[0] = os.open(t.path, flags | os.O_APPEND)
    else:
        if len(model) < APPEND_LIMIT:
            data = rng.randbytes(_length(rng))
            history.append(f"open 'ab' and write len={len(data)}")
            with open(t.path, "ab") as f:
                f.write(data)
            model += data
    check_content(t, fds[rng.randrange(len(fds))], model, "after " + history[-1])
    if check_backing:
        t.check_backing(model)


def run_seed(ds, seed, steps, writeback, log=None):
    """One seed on the mounted datastore @ds: an encrypted and a cleartext
    file, @steps run_model steps each plus interleaved renames and O_APPEND
    writes; remount and check at the end. Returns the number of operations.
    Raises ModelFailure (with the seed, the file, and the last operations)."""
    ds.make_vm("vm1")
    (ds.m("vm1") / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    mode = "writeback" if writeback else "default"
    targets = [MovingTarget(ds, "encrypted"), MovingTarget(ds, "cleartext")]
    models = []
    total = 0
    for i, t in enumerate(targets):
        rng = random.Random(seed * 2 + i + 0x5eed0000)
        history = []
        model = bytearray()
        fds = [os.open(t.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC), os.open(t.path, os.O_RDWR)]
        app = [os.open(t.path, os.O_WRONLY | os.O_APPEND)]
        done = 0
        try:
            while done < steps:
                k = min(steps - done, rng.randint(1, 24))
                run_model(t, rng, k, fds, model, history, check_backing=not writeback)
                done += k
                extra_op(t, rng, fds, app, model, history, check_backing=not writeback)
            os.fsync(fds[0])
            history.append("final fsync and backing check")
            t.check_backing(model)
            check_content(t, fds[1], model, "at the end")
        except BaseException as e:
            raise ModelFailure(
                f"{t.kind} model ({mode}) failed with seed {seed} (VMC_SEED={seed}, "
                f"`python3 tests/integration/test_model.py --seed {seed} --steps {steps}"
                f"{' --writeback' if writeback else ''}`) after {len(history)} operations, "
                f"file {t.rel}: {e!r}\nlast operations:\n  "
                + "\n  ".join(history[-25:])) from e
        finally:
            for fd in fds + app:
                if fd >= 0:
                    os.close(fd)
        total += len(history)
        models.append(bytes(model))
        if is_encrypted(t.backing) != (t.enc and len(model) > 0):
            raise ModelFailure(f"{t.kind} file {t.rel} (seed {seed}, {mode}): encrypted in the "
                               f"backing store: {is_encrypted(t.backing)}")
    ds.remount()
    for t, model in zip(targets, models):
        if read(t.path) != model:
            raise ModelFailure(f"{t.kind} file {t.rel} differs after remount (seed {seed}, {mode})")
        t.check_backing(model)
    # Only the final names are left in the VM (renames left no stray files
    # and no decoys beyond the ones renamed over).
    finals = {t.rel.split("/", 1)[1] for t in targets}
    for kind in NAMES:
        for n in NAMES[kind]:
            if n not in finals and os.path.lexists(ds.m("vm1/" + n)):
                raise ModelFailure(f"vm1/{n} exists but is not a current name (seed {seed})")
    if log:
        log(f"seed {seed} ({mode}): {total} operations, final sizes "
            f"{[len(m) for m in models]}")
    return total


@pytest.mark.parametrize("seed", seeds())
@pytest.mark.parametrize("mode", ["default", "writeback"])
def test_model(make_ds, mode, seed):
    wb = mode == "writeback"
    ds = make_ds("ds", options=["writeback"] if wb else [])
    ops = run_seed(ds, seed, steps_default(), wb)
    # Each seed-pair really ran thousands of checked operations.
    assert ops >= 2 * steps_default(), ops


def test_rename_keeps_descriptors_and_state(ds):
    """The pieces the model relies on, checked directly once: a file renamed
    while open keeps working through its old descriptors and O_APPEND
    descriptors append at the real end after another descriptor truncated."""
    ds.make_vm("vm1")
    (ds.m("vm1") / "sub").mkdir()
    for name, enc in (("a.nvram", True), ("a.log", False)):
        p = ds.m("vm1") / name
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        afd = os.open(p, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"x" * 5000)
            os.rename(p, ds.m("vm1/sub") / name)
            assert vmctest.errno_of(os.stat, p) == errno.ENOENT
            os.write(afd, b"y" * 10)
            os.ftruncate(fd, 100)
            os.write(afd, b"z" * 3)
            os.pwrite(afd, b"w", 0)            # O_APPEND: appended anyway
            want = b"x" * 100 + b"zzzw"
            assert os.pread(fd, 10000, 0) == want
            os.rename(ds.m("vm1/sub") / name, p)
            assert read(p) == want
            assert is_encrypted(ds.b("vm1") / name) == enc
        finally:
            os.close(fd)
            os.close(afd)


# --- command line ------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="vmcryptfs randomized model test, one seed")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--steps", type=int, default=steps_default(),
                    help=f"run_model steps per file (default {steps_default()})")
    ap.add_argument("--writeback", action="store_true", help="mount with -o writeback")
    ap.add_argument("--keep", action="store_true", help="keep the temporary tree")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("the model test needs root (FUSE mounts)", file=sys.stderr)
        return 2
    if not vmctest.DAEMON.exists():
        print(f"{vmctest.DAEMON} is not built; set VMC_BUILD_DIR", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="vmc-model-")
    ds = vmctest.Datastore(tmp, "ds", options=["writeback"] if args.writeback else [])
    rc = 0
    try:
        ds.mount()
        run_seed(ds, args.seed, args.steps, args.writeback, log=print)
    except ModelFailure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        rc = 1
    finally:
        if ds.mounted:
            try:
                ds.unmount(check=False)
            except AssertionError as e:
                print(e, file=sys.stderr)
                rc = 1
        bad = ds.unexpected_errors()
        if bad:
            print("daemon log has errors:\n  " + "\n  ".join(bad), file=sys.stderr)
            rc = 1
        if args.keep or rc:
            print(f"temporary tree kept: {tmp} (daemon log {ds.log_path})", file=sys.stderr)
        else:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    if rc == 0:
        print(f"seed {args.seed}: ok")
    return rc


if __name__ == "__main__":
    sys.exit(main())
