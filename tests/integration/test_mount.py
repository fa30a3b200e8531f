# SPDX-License-Identifier: GPL-2.0-or-later
"""How the daemon is started and stopped: mount -t fuse.vmcryptfs, an fstab
line (mount -T), background mode returning only once mounted, SIGTERM,
--version/--help, clear errors for a missing backing directory or mount
point, and the embedded default configuration when there is no config file."""
import os
import re
import signal
import time
from pathlib import Path

import pytest

from vmctest import (DAEMON, PLUGINS, assert_cleartext, assert_encrypted, mount_entry,
                     pids_with_arg, read, run, wait_pids_gone, wait_unmounted, write)

DEFAULT_CONFIG = "/etc/vmcryptfs/vmcryptfs.conf"
DEFAULT_KEY = "/var/lib/vmcryptfs/native/default.key"


@pytest.fixture
def daemon_path():
    """An environment in which mount.fuse3 finds the `vmcryptfs` built here.

    mount(8) drops PATH from the helper's environment, so mount.fuse3's shell
    searches the default path, which starts at /usr/local/sbin: the daemon
    under test goes there for the test, and whatever was there comes back."""
    sbin = Path("/usr/local/sbin")
    sbin.mkdir(parents=True, exist_ok=True)
    link = sbin / "vmcryptfs"
    saved = sbin / f".vmcryptfs.saved-by-test.{os.getpid()}"
    had = os.path.lexists(link)
    if had:
        os.rename(link, saved)
    os.symlink(DAEMON, link)
    try:
        yield dict(os.environ)
    finally:
        os.unlink(link)
        if had:
            os.rename(saved, link)


def assert_our_daemon(backing):
    """The daemon serving @backing is the one built here, not an installed one."""
    pids = pids_with_arg(backing)
    assert pids, f"no daemon process serves {backing}"
    for pid in pids:
        exe = os.readlink(f"/proc/{pid}/exe")
        assert Path(exe) == DAEMON.resolve(), f"mount started {exe}, not {DAEMON}"


class Background:
    """Mounts made by background daemons: torn down whatever happens."""

    def __init__(self):
        self.mounts = []   # (mountpoint, backing)

    def started(self, mountpoint, backing):
        self.mounts.append((str(mountpoint), str(backing)))

    def daemon_pids(self, backing):
        return pids_with_arg(backing)

    def stop(self, mountpoint, backing, how=("umount",)):
        pids = self.daemon_pids(backing)
        assert pids, f"no daemon process serves {backing}"
        run([*how, mountpoint])
        wait_unmounted(mountpoint)
        wait_pids_gone(pids)
        self.mounts.remove((str(mountpoint), str(backing)))

    def cleanup(self):
        for mp, backing in self.mounts:
            pids = self.daemon_pids(backing)
            if mount_entry(mp):
                run(["umount", "-l", mp], check=False)
            try:
                wait_pids_gone(pids, timeout=5)
            except AssertionError:
                for p in pids:
                    os.kill(p, signal.SIGKILL)


@pytest.fixture
def bg():
    b = Background()
    yield b
    b.cleanup()


def use_datastore(ds):
    """Write a small VM through the mount and check the backing store."""
    vm = ds.make_vm("vm1")
    write(vm / "vm1.nvram", b"nvram-secret" * 500)
    write(vm / "vmware.log", b"log\n")
    assert_encrypted(ds.b("vm1/vm1.nvram"), b"nvram-secret" * 500)
    assert_cleartext(ds.b("vm1/vmware.log"), vm / "vmware.log")


def test_mount_t_fuse_vmcryptfs(make_ds, daemon_path, bg):
    ds = make_ds("ds", mount=False)
    opts = f"config={ds.config},keyprov_dir={PLUGINS}"
    p = run(["mount", "-t", "fuse.vmcryptfs", ds.backing, ds.mnt, "-o", opts], env=daemon_path,
            check=False, timeout=30)
    bg.started(ds.mnt, ds.backing)
    assert p.returncode == 0, f"mount failed:\n{p.stdout}\n{p.stderr}"
    e = mount_entry(ds.mnt)               # mounted when mount(8) returns
    assert e and e["fstype"] == "fuse.vmcryptfs", e
    assert_our_daemon(ds.backing)
    assert e["source"] == str(ds.backing)
    use_datastore(ds)
    bg.stop(ds.mnt, ds.backing, how=("umount",))
    assert read(ds.b("vm1/vmware.log")) == b"log\n"


def test_fstab_line(make_ds, daemon_path, bg, tmp_path):
    ds = make_ds("ds", mount=False)
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# test fstab\n"
        f"{ds.backing} {ds.mnt} fuse.vmcryptfs "
        f"config={ds.config},keyprov_dir={PLUGINS},_netdev,nofail,x-systemd.automount,"
        "x-systemd.requires=network-online.target 0 0\n")
    p = run(["mount", "-T", fstab, ds.mnt], env=daemon_path, check=False, timeout=30)
    bg.started(ds.mnt, ds.backing)
    assert p.returncode == 0, f"mount -T failed:\n{p.stdout}\n{p.stderr}"
    e = mount_entry(ds.mnt)
    assert e and e["fstype"] == "fuse.vmcryptfs", e
    assert_our_daemon(ds.backing)
    use_datastore(ds)
    bg.stop(ds.mnt, ds.backing, how=("umount",))


def test_fstab_options_on_command_line(make_ds):
    """The fstab words reach the daemon when mount.fuse passes them on."""
    ds = make_ds("ds", mount=False,
                 options=["_netdev", "nofail", "noauto", "auto", "defaults",
                          "x-systemd.automount", "x-systemd.device-timeout=10"])
    ds.mount()
    use_datastore(ds)


def test_background_mode(make_ds, bg):
    ds = make_ds("ds", mount=False)
    t0 = time.monotonic()
    p = run(ds.argv(foreground=False), check=False, timeout=30)
    bg.started(ds.mnt, ds.backing)
    assert p.returncode == 0, p.stderr
    # Mounted by the time the command returns: no waiting.
    e = mount_entry(ds.mnt)
    assert e and e["fstype"] == "fuse.vmcryptfs", "background daemon returned before mounting"
    assert time.monotonic() - t0 < 10
    use_datastore(ds)
    bg.stop(ds.mnt, ds.backing, how=("fusermount3", "-u"))


def test_background_failure_is_reported(make_ds, tmp_path):
    ds = make_ds("ds", mount=False)
    ds.backing.rmdir()
    p = run(ds.argv(foreground=False), check=False, timeout=30)
    assert p.returncode == 1
    assert re.search(r"backing directory .*: No such file or directory", p.stderr), p.stderr
    assert not mount_entry(ds.mnt)


def test_sigterm_unmounts(make_ds):
    ds = make_ds("ds")
    use_datastore(ds)
    proc, ds.proc = ds.proc, None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    wait_unmounted(ds.mnt)
    ds.mount()
    assert read(ds.m("vm1/vm1.nvram")) == b"nvram-secret" * 500


def test_version_and_help():
    p = run([DAEMON, "--version"])
    assert re.search(r"vmcryptfs \d+\.\d+\.\d+", p.stdout + p.stderr), p.stdout
    p = run([DAEMON, "--help"])
    out = p.stdout + p.stderr
    assert "usage:" in out and "config=PATH" in out and "keyprov_dir" in out, out
    assert run([DAEMON, "-h"]).returncode == 0
    assert run([DAEMON, "-V"]).returncode == 0


def test_usage_errors(make_ds, tmp_path):
    p = run([DAEMON], check=False)
    assert p.returncode == 1 and "usage:" in p.stderr
    p = run([DAEMON, tmp_path], check=False)
    assert p.returncode == 1 and "usage:" in p.stderr
    ds = make_ds("ds", mount=False)
    # A missing backing directory: one clear line, status 1, foreground too.
    p = run(ds.argv(foreground=True)[:1] + [tmp_path / "no-such-dir"] + ds.argv()[2:],
            check=False, timeout=30)
    assert p.returncode == 1
    assert re.search(r"vmcryptfs: error: backing directory .*no-such-dir: "
                     r"No such file or directory", p.stderr), p.stderr
    # A backing "directory" that is a file.
    write(tmp_path / "a-file", b"x")
    p = run([DAEMON, tmp_path / "a-file", ds.mnt, "-f", "-o", f"config={ds.config},"
             f"keyprov_dir={PLUGINS}"], check=False, timeout=30)
    assert p.returncode == 1 and "a-file" in p.stderr, p.stderr
    # A missing mount point.
    p = run([DAEMON, ds.backing, tmp_path / "no-mnt", "-f", "-o", f"config={ds.config},"
             f"keyprov_dir={PLUGINS}"], check=False, timeout=30)
    assert p.returncode == 1 and "no-mnt" in p.stderr, p.stderr
    # Bad option values.
    for opt in ("log_level=loud", "attr_timeout=-1"):
        p = run([DAEMON, ds.backing, ds.mnt, "-f", "-o", f"config={ds.config},"
                 f"keyprov_dir={PLUGINS},{opt}"], check=False, timeout=30)
        assert p.returncode == 1, opt
        assert not mount_entry(ds.mnt)


def test_no_config_file_uses_embedded_default(make_ds):
    if os.path.exists(DEFAULT_CONFIG):
        pytest.skip(f"{DEFAULT_CONFIG} exists; the embedded default cannot be tested")
    key_existed = os.path.exists(DEFAULT_KEY)
    # No config= option at all: the embedded default (native provider with
    # its key in /var/lib/vmcryptfs, policy "vm-encryption").
    ds = make_ds("ds", mount=False, options=["log_level=info"], use_config=False)
    assert not any(a.startswith("config=") for a in ds.argv()[-1].split(","))
    ds.mount()
    assert "(embedded default)" in ds.log(), ds.log_tail()
    vm = ds.make_vm("vm1")
    write(vm / "vm1.nvram", b"default-config" * 300)
    assert_encrypted(ds.b("vm1/vm1.nvram"), b"default-config" * 300)
    assert os.path.exists(DEFAULT_KEY)
    st = os.stat(DEFAULT_KEY)
    assert st.st_mode & 0o077 == 0 and st.st_size == 128
    if not key_existed:
        assert "created primary key " + DEFAULT_KEY in ds.log()
    ds.remount()
    assert read(vm / "vm1.nvram") == b"default-config" * 300
