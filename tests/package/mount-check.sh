#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Part of package-test.sh: with the package installed, mount a datastore with
# `mount -t fuse.vmcryptfs`, write an encrypted VM, check the daemon that runs
# is the packaged one, the backing store holds ciphertext, and a remount reads
# the VM back. Usage: mount-check.sh WORK_DIR.
set -eu
work=$1
mnt=$work/mnt
fail() { echo "FAIL: $*" >&2; exit 1; }
trap 'fusermount3 -u "$mnt" 2>/dev/null || true' EXIT

mkdir -p "$work/backing/vm1" "$mnt" "$work/keys"
cat >"$work/vmcryptfs.conf" <<EOF
key-provider "native" {
	type = "native"
	key-file = "$work/keys/primary.key"
}
policy "vm-encryption" {
	provider = "native"
	disks = true
}
EOF
mount -t fuse.vmcryptfs "$work/backing" "$mnt" -o "config=$work/vmcryptfs.conf" ||
	fail "mount -t fuse.vmcryptfs"
findmnt -n -t fuse.vmcryptfs "$mnt" >/dev/null || fail "not mounted"
pid=$(pgrep -f "^vmcryptfs $work/backing $mnt" | head -1)
[ -n "$pid" ] || fail "no daemon process for the mount"
[ "$(readlink "/proc/$pid/exe")" = /usr/bin/vmcryptfs ] ||
	fail "the daemon is $(readlink "/proc/$pid/exe"), not the packaged /usr/bin/vmcryptfs"
echo 'policy = "vm-encryption"' >"$mnt/vm1/vmcrypt.policy"
head -c 1048576 /dev/urandom >"$work/ref.nvram"
cp "$work/ref.nvram" "$mnt/vm1/vm1.nvram"
echo 'displayName = "vm1"' >"$mnt/vm1/vm1.vmx"
cmp "$work/ref.nvram" "$mnt/vm1/vm1.nvram" || fail "read back through the mount differs"
# Ciphertext beneath, cleartext descriptor.
[ "$(head -c 10 "$work/backing/vm1/vm1.nvram" | tail -c 9)" = VMCRYPTFS ] ||
	fail "backing nvram has no vmcryptfs header"
if cmp -s -n 4096 -i 4096:0 "$work/backing/vm1/vm1.nvram" "$work/ref.nvram"; then
	fail "backing nvram holds plaintext"
fi
cmp "$mnt/vm1/vm1.vmx" "$work/backing/vm1/vm1.vmx" || fail ".vmx is not cleartext"
sock=$(getfattr -n user.vmcryptfs.control --only-values "$mnt" 2>/dev/null || true)
[ -n "$sock" ] || fail "no control socket attribute on the mount root"
vmcryptfs-ctl -m "$mnt" status vm1 | grep -qi encrypted || fail "vmcryptfs-ctl status"
umount "$mnt" || fail "umount"

# Mounted again by the same installed daemon, the VM still reads back.
mount -t fuse.vmcryptfs "$work/backing" "$mnt" -o "config=$work/vmcryptfs.conf" || fail "remount"
cmp "$work/ref.nvram" "$mnt/vm1/vm1.nvram" || fail "read back after remount differs"
umount "$mnt"

