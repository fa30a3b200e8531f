# SPDX-License-Identifier: GPL-2.0-or-later
"""Native key provider backup and restore onto a fresh key directory (issue
4): a VM encrypted on one host, its native primary key backed up under a
password, the datastore mounted on a "new host" whose native key file does
not exist: the VM's encrypted files refuse to open (ENOKEY) while cleartext
files work; a restore with the wrong password fails and writes nothing; with
the right password the VM opens again with identical content, without a
remount."""
import os
import random
import time

from vmctest import (ENOKEY, EXIT_FAIL, EXIT_KEY, STATE_NAME, assert_encrypted, ctl_ds, open_errno, read,
                     vm_key_record, write)

MiB = 1 << 20


def test_backup_restore_onto_fresh_key_directory(make_ds, tmp_path):
    rng = random.Random(41)
    ds = ctl_ds(make_ds, tmp_path)
    vm = ds.m("vm1")
    vm.mkdir()
    files = {"vm1-flat.vmdk": rng.randbytes(4 * MiB), "vm1.nvram": rng.randbytes(8684),
             "vm1.vmx": b'displayName = "vm1"\n', "vmware.log": b"log\n" * 100}
    for f, data in files.items():
        write(vm / f, data)
    ds.ctl("encrypt", vm)
    enc = ("vm1-flat.vmdk", "vm1.nvram")
    for f in enc:
        assert_encrypted(ds.b("vm1") / f, files[f])
    primary = read(ds.keyfile)
    pw = tmp_path / "password"
    pw.write_text("backup password 1\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("backup password 2\n")
    backup = tmp_path / "native.vmcbackup"
    ds.ctl("provider", "backup", "native", "--out", backup, "--password-file", pw)
    blob = read(backup)
    assert primary[40:72] not in blob and primary[40:72].hex().encode() not in blob
    ds.unmount()

    # The new host: same backing directory, a native key file in an empty directory.
    fresh = tmp_path / "fresh-keys"
    fresh.mkdir(mode=0o700)
    host2 = ctl_ds(make_ds, tmp_path, name="host2", backing=ds.backing, keydir=fresh)
    for f in enc:
        assert open_errno(host2.m("vm1") / f, os.O_RDONLY) == ENOKEY, f
    for f in ("vm1.vmx", "vmware.log"):
        assert read(host2.m("vm1") / f) == files[f]
    v = host2.ctl("status", host2.m("vm1")).json["vms"][0]
    assert v["keys"] != "unlocked", v
    r = host2.ctl("unlock", host2.m("vm1"), rc=EXIT_KEY)     # the key is not to be had
    assert r.json["errno"] == ENOKEY, r
    assert not os.listdir(fresh), "the daemon made a key file on the new host by itself"

    r = host2.ctl("provider", "restore", backup, "--password-file", wrong, rc=EXIT_FAIL)
    assert r.json["ok"] is False, r
    assert not os.listdir(fresh), f"a failed restore wrote {os.listdir(fresh)}"
    for f in enc:
        assert open_errno(host2.m("vm1") / f, os.O_RDONLY) == ENOKEY, f

    r = host2.ctl("provider", "restore", backup, "--password-file", pw).json
    assert r["provider"] == "native" and r["restored"] == str(host2.keyfile), r
    assert read(host2.keyfile) == primary
    assert (os.stat(host2.keyfile).st_mode & 0o777) == 0o600
    assert (fresh / "default.key.id").read_text().strip() == r["primary_key_id"] == \
        primary[24:40].hex()
    # The VM opens again, no remount. (The daemon remembers a provider's
    # failure for a short while -- KR_RETRY_NS, 2 s -- so allow a few seconds.)
    t0 = time.monotonic()
    while [f for f in enc if open_errno(host2.m("vm1") / f, os.O_RDONLY)]:
        assert time.monotonic() - t0 < 5, "the VM does not open after the restore (no remount)"
        time.sleep(0.1)
    print(f"\nthe VM opened {time.monotonic() - t0:.2f} s after the restore")
    for f, data in files.items():
        assert read(host2.m("vm1") / f) == data, f
    assert host2.ctl("status", host2.m("vm1")).json["vms"][0]["keys"] == "unlocked"
    # And it keeps working: a rekey under the restored primary key, a remount.
    host2.ctl("rekey", host2.m("vm1"))
    assert vm_key_record(host2.b("vm1") / STATE_NAME)["current"][1].startswith(
        "nkp1." + primary[24:40].hex())
    host2.remount()
    for f, data in files.items():
        assert read(host2.m("vm1") / f) == data, f


def test_restore_over_the_key_in_use(make_ds, tmp_path):
    """`provider restore --force` replaces the primary key of a provider in
    use: from then on the daemon must make new keys under the restored
    primary key (the one on disk), or what it writes meanwhile is lost at the
    next mount."""
    extra = ('key-provider "native2" {\n\ttype = "native"\n'
             f'\tkey-file = "{tmp_path}/keys2/default.key"\n}}\n')
    ds = ctl_ds(make_ds, tmp_path, extra=extra)
    pw = tmp_path / "password"
    pw.write_text("pw\n")
    ds.ctl("provider", "create-native", "native")
    p0 = ds.ctl("provider", "create-native", "native2").json["primary_key_id"]
    ds.ctl("provider", "backup", "native2", "--out", tmp_path / "p0", "--password-file", pw)
    r = ds.ctl("provider", "restore", tmp_path / "p0", "--provider", "native", "--force",
               "--password-file", pw).json
    assert r["primary_key_id"] == p0 and read(ds.keyfile)[24:40].hex() == p0
    # A VM encrypted after the restore, without a remount.
    vm = ds.make_vm("vm2")
    data = os.urandom(70000)
    write(vm / "vm2.nvram", data)
    kek_id = vm_key_record(ds.b("vm2") / STATE_NAME)["current"][1]
    assert kek_id.startswith(f"nkp1.{p0}."), \
        f"after the restore, the new VM's KEK {kek_id} is not made by the restored primary key {p0}"
    ds.remount()
    assert read(ds.m("vm2") / "vm2.nvram") == data
