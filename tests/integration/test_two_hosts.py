# SPDX-License-Identifier: GPL-2.0-or-later
"""Two hosts, one datastore: two daemons mount the same backing directory with
different host ids (-o host_id=), as two hypervisors mount one NFS export.

A VM's files may be open for writing on one host at a time (the VM lock file
.vmcrypt.locks/vm.INODE, FORMAT.md "VM lock file"): the other host gets EBUSY, also
for create, O_TRUNC, truncate(2) and conversions, while reading stays
possible; different VMs are written from both hosts at once; the lock of a
crashed host is taken over after its heartbeat stood still for a lease, at
once by the same host after a restart; a host that lost its lock while it was
stopped gets EIO on writes; a shallow rekey done on one host is seen by the
other without a remount."""
import errno
import os
import signal
import threading
import time

from vmctest import (UNIT, header_slots, open_errno, read, vm_key_record, wait_for,
                     write, errno_of)

LEASE = 2.0
LOCKS = ".vmcrypt.locks"


def two_hosts(make_ds, tmp_path, lease=LEASE, same_host=False):
    backing = tmp_path / "shared"
    backing.mkdir()
    opts = [f"lock_lease={lease}"]
    a = make_ds("hostA", backing=backing, options=opts + ["host_id=hostA"])
    b = make_ds("hostB", backing=backing,
                options=opts + ["host_id=" + ("hostA" if same_host else "hostB")])
    return a, b


def close_dead(fd):
    """Close a descriptor of a crashed daemon's mount (the close fails ENOTCONN)."""
    try:
        os.close(fd)
    except OSError as e:
        assert e.errno == errno.ENOTCONN, e


def lock_path(ds, vm):
    return ds.b(f"{LOCKS}/vm.{os.stat(ds.b(vm)).st_ino}")


def lock_gone(ds, vm):
    return not os.path.exists(lock_path(ds, vm))


def lock_record(ds, vm):
    raw = read(lock_path(ds, vm))
    assert len(raw) == 512, len(raw)
    text = raw.rstrip(b"\0").decode()
    lines = text.splitlines()
    assert lines[0] == "vmcryptfs-lock 1", text
    return dict(line.split(" ", 1) for line in lines[1:])


def test_one_writer_per_vm(make_ds, tmp_path):
    a, b = two_hosts(make_ds, tmp_path)
    a.make_vm("vm1")
    plain = os.urandom(5 * UNIT + 77)
    write(a.m("vm1/vm1.nvram"), plain)
    write(a.m("vm1/vm1-flat.vmdk"), os.urandom(2 * UNIT))
    wait_for(lambda: lock_gone(a, "vm1"), what="the lock to go after close")

    vmdir_before = os.stat(a.b("vm1"))
    fd = os.open(a.m("vm1/vm1.nvram"), os.O_RDWR)
    try:
        rec = lock_record(a, "vm1")
        assert ".vmcrypt.locks" not in os.listdir(a.m()), "the lock directory shows"
        assert rec["host"] == "hostA" and int(rec["lease-ms"]) == int(LEASE * 1000)
        # Everything that writes is refused on the other host, and changes nothing.
        for flags in (os.O_RDWR, os.O_WRONLY, os.O_RDONLY | os.O_TRUNC):
            assert open_errno(b.m("vm1/vm1.nvram"), flags) == errno.EBUSY, flags
        assert open_errno(b.m("vm1/vm1-flat.vmdk"), os.O_RDWR) == errno.EBUSY
        assert open_errno(b.m("vm1/new.vmem"), os.O_RDWR | os.O_CREAT) == errno.EBUSY
        assert not os.path.exists(b.b("vm1/new.vmem")), "a refused create left a file"
        assert errno_of(os.truncate, b.m("vm1/vm1.nvram"), 0) == errno.EBUSY
        r = b.ctl("decrypt", "vm1", rc=5)
        assert "hostA" in r.out + r.err, r
        r = b.ctl("rekey", "--deep", "vm1", rc=5)
        assert "hostA" in r.out + r.err, r
        # Reading is fine, and sees what the writer synced.
        os.pwrite(fd, b"W" * 100, 10)
        os.fsync(fd)
        expect = plain[:10] + b"W" * 100 + plain[110:]
        assert read(b.m("vm1/vm1.nvram")) == expect
        # Status on the other host names the writer.
        st = b.ctl("status", "vm1").json
        vm = st["vms"][0]
        assert vm["writer"].startswith("host hostA") and vm["writer_is_this_host"] is False
        assert a.ctl("status", "vm1").json["vms"][0]["writer_is_this_host"] is True
        # The same host opens as often as it likes.
        fd2 = os.open(a.m("vm1/vm1-flat.vmdk"), os.O_RDWR)
        os.close(fd2)
    finally:
        os.close(fd)
    wait_for(lambda: lock_gone(a, "vm1"), what="the lock to go after the last close")
    # Locking leaves the VM directory alone (backup tools compare its times).
    after = os.stat(a.b("vm1"))
    assert (after.st_mtime_ns, after.st_ctime_ns) == \
        (vmdir_before.st_mtime_ns, vmdir_before.st_ctime_ns)
    assert sorted(os.listdir(a.b("vm1"))) == \
        [".vmcrypt.state", "vm1-flat.vmdk", "vm1.nvram", "vmcrypt.policy"]
    fd = os.open(b.m("vm1/vm1.nvram"), os.O_RDWR)
    os.pwrite(fd, b"B", 0)
    os.close(fd)
    assert read(a.m("vm1/vm1.nvram"))[:1] == b"B"
    assert b.ctl("decrypt", "vm1").rc == 0
    assert read(a.m("vm1/vm1.nvram"))[1:] == expect[1:]
    assert any("is in use by host hostA" in l for l in b.log_lines("warning"))


def test_different_vms_on_both_hosts_at_once(make_ds, tmp_path):
    a, b = two_hosts(make_ds, tmp_path)
    a.make_vm("vm1")
    b.make_vm("vm2")
    data = {"vm1": os.urandom(2 << 20), "vm2": os.urandom(2 << 20)}
    errors = []

    def writer(ds, vm):
        try:
            fd = os.open(ds.m(f"{vm}/{vm}-flat.vmdk"), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                for off in range(0, len(data[vm]), 64 << 10):
                    os.pwrite(fd, data[vm][off:off + (64 << 10)], off)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            errors.append(f"{vm}: {e}")

    threads = [threading.Thread(target=writer, args=(a, "vm1")),
               threading.Thread(target=writer, args=(b, "vm2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # Each host reads what the other wrote.
    assert read(b.m("vm1/vm1-flat.vmdk")) == data["vm1"]
    assert read(a.m("vm2/vm2-flat.vmdk")) == data["vm2"]


def test_lock_of_a_crashed_host_is_taken_over_after_the_lease(make_ds, tmp_path):
    a, b = two_hosts(make_ds, tmp_path)
    a.make_vm("vm1")
    plain = os.urandom(3 * UNIT)
    fd = os.open(a.m("vm1/vm1.nvram"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, plain)
    os.fsync(fd)
    a.crash()   # the host dies with the VM open: its lock stays behind
    close_dead(fd)
    assert not lock_gone(a, "vm1")
    t0 = time.monotonic()
    assert open_errno(b.m("vm1/vm1.nvram"), os.O_RDWR) == errno.EBUSY
    # Taken over once the heartbeat stood still for a lease, not before.
    got = None
    while got is None and time.monotonic() - t0 < 10 * LEASE:
        try:
            got = os.open(b.m("vm1/vm1.nvram"), os.O_RDWR)
        except OSError as e:
            assert e.errno == errno.EBUSY, e
            time.sleep(0.2)
    assert got is not None, "the stale lock was never taken over"
    assert time.monotonic() - t0 >= LEASE * 0.9, "taken over before the lease ran out"
    try:
        assert os.pread(got, len(plain) + 1, 0) == plain
        assert lock_record(b, "vm1")["host"] == "hostB"
        # Host A comes back: now it is the one that waits.
        a.mount()
        assert open_errno(a.m("vm1/vm1.nvram"), os.O_RDWR) == errno.EBUSY
    finally:
        os.close(got)
    wait_for(lambda: lock_gone(b, "vm1"), what="hostB's lock to go")
    fd = os.open(a.m("vm1/vm1.nvram"), os.O_RDWR)
    os.close(fd)
    assert any("took over the lock of host hostA" in l for l in b.log_lines("notice"))


def test_same_host_restart_takes_its_lock_back_at_once(make_ds, tmp_path):
    backing = tmp_path / "shared"
    backing.mkdir()
    a = make_ds("hostA", backing=backing, options=["lock_lease=60", "host_id=hostA"])
    a.make_vm("vm1")
    fd = os.open(a.m("vm1/vm1.nvram"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"x" * 5000)
    os.fsync(fd)
    a.crash()
    close_dead(fd)
    assert not lock_gone(a, "vm1")
    a.mount()
    t0 = time.monotonic()
    fd = os.open(a.m("vm1/vm1.nvram"), os.O_RDWR)   # the old daemon's pid is gone
    assert time.monotonic() - t0 < 30, "waited for the lease although the holder is dead"
    os.close(fd)
    assert any("its daemon (pid" in l for l in a.log_lines("notice"))


def test_a_host_that_lost_its_lock_gets_eio(make_ds, tmp_path):
    a, b = two_hosts(make_ds, tmp_path)
    a.make_vm("vm1")
    fd = os.open(a.m("vm1/vm1.nvram"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"a" * 8192)
    os.fsync(fd)
    os.kill(a.proc.pid, signal.SIGSTOP)   # host A hangs longer than a lease
    try:
        t0 = time.monotonic()
        got = None
        while got is None and time.monotonic() - t0 < 10 * LEASE:
            try:
                got = os.open(b.m("vm1/vm1.nvram"), os.O_RDWR)
            except OSError as e:
                assert e.errno == errno.EBUSY, e
                time.sleep(0.2)
        assert got is not None, "hostB never took over the lock of the hung host"
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    a.expect_error("lost its lock")
    # Host A notices at its next heartbeat; from then on its writes fail.
    wait_for(lambda: any("lost its lock" in l for l in a.log_lines("error")), timeout=10,
             what="hostA to notice it lost the lock")
    assert errno_of(os.pwrite, fd, b"late", 0) == errno.EIO
    os.close(fd)
    os.pwrite(got, b"b" * 10, 0)
    os.close(got)
    assert read(b.m("vm1/vm1.nvram")) == b"b" * 10 + b"a" * 8182
    # The lock hostB holds was not removed by hostA's close.
    wait_for(lambda: lock_gone(b, "vm1"), what="hostB's lock to go")


def test_shallow_rekey_on_one_host_is_seen_by_the_other(make_ds, tmp_path):
    a, b = two_hosts(make_ds, tmp_path)
    a.make_vm("vm1")
    files = {"vm1.nvram": os.urandom(3 * UNIT + 5), "vm1-flat.vmdk": os.urandom(8 * UNIT)}
    for name, data in files.items():
        write(a.m(f"vm1/{name}"), data)
    for name, data in files.items():
        assert read(b.m(f"vm1/{name}")) == data   # B has used the old key
    old = vm_key_record(a.b("vm1/.vmcrypt.state"))["current"]
    wait_for(lambda: lock_gone(a, "vm1"), what="hostA's lock to go")

    # B runs the VM (holds its lock) while A rekeys it: a shallow rekey only
    # rewrites key slots, so it needs no lock and the VM keeps running.
    fd = os.open(b.m("vm1/vm1-flat.vmdk"), os.O_RDWR)
    try:
        r = a.ctl("rekey", "vm1")
        assert r.rc == 0, r
        new = vm_key_record(a.b("vm1/.vmcrypt.state"))["current"]
        assert new != old
        os.pwrite(fd, b"during", UNIT)
        os.fsync(fd)
    finally:
        os.close(fd)
    files["vm1-flat.vmdk"] = files["vm1-flat.vmdk"][:UNIT] + b"during" + \
        files["vm1-flat.vmdk"][UNIT + 6:]
    for name in files:
        assert [(s["provider"], s["kek_id"]) for s in header_slots(a.b(f"vm1/{name}"))] == \
            [new], name
    # Without a remount, B reads the rekeyed files and wraps new ones under the new KEK.
    for name, data in files.items():
        assert read(b.m(f"vm1/{name}")) == data
    wait_for(lambda: lock_gone(b, "vm1"), what="hostB's lock to go")
    extra = os.urandom(UNIT)
    write(b.m("vm1/vm1.vmem"), extra)
    assert [(s["provider"], s["kek_id"]) for s in header_slots(a.b("vm1/vm1.vmem"))] == [new]
    assert read(a.m("vm1/vm1.vmem")) == extra
