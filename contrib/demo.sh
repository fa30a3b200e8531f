#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# vmcryptfs in two minutes, on the embedded default (native key provider, no
# key server, no configuration file): install the dependencies, build and
# install vmcryptfs, mount a demo datastore, create an encrypted VM in it the
# way a hypervisor would, and show what lands in the backing directory: the
# disk and the NVRAM as ciphertext, the log, the .vmx and the disk descriptor
# byte for byte in cleartext. Every claim is checked; the script exits
# non-zero if one does not hold. Run as root.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
demo=${VMC_DEMO_DIR:-/var/tmp/vmcryptfs-demo}
backing=$demo/backing
mnt=$demo/datastore
fails=0

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
check() { # check DESCRIPTION COMMAND...
	local what=$1; shift
	if "$@"; then printf '  [ok]   %s\n' "$what"; else printf '  [FAIL] %s\n' "$what"; fails=$((fails + 1)); fi
}
is_ciphertext() { # the backing file starts with the vmcryptfs header magic
	[ "$(head -c 14 "$1" | xxd -p)" = "89564d435259505446530d0a1a0a" ]
}
not_in() { ! grep -q -a -F "$1" "$2"; }

[ "$(id -u)" -eq 0 ] || { echo "run as root (FUSE mounts, /var/lib/vmcryptfs)"; exit 1; }

say "Installing dependencies (apt) and building"
"$top/contrib/install-deps.sh" >/dev/null
cmake -S "$top" -B "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$top/build" -j "$(nproc)" >/dev/null
cmake --install "$top/build" >/dev/null
echo "installed: $(command -v vmcryptfs) ($(vmcryptfs --version | head -1))"

if [ -e /etc/vmcryptfs/vmcryptfs.conf ]; then
	echo "note: /etc/vmcryptfs/vmcryptfs.conf exists and will be used instead of the embedded default"
fi

say "Mounting a demo datastore: $backing -> $mnt (no configuration: embedded default)"
mountpoint -q "$mnt" 2>/dev/null && fusermount3 -u "$mnt"
rm -rf "$demo"
mkdir -p "$backing" "$mnt"
vmcryptfs "$backing" "$mnt"
findmnt "$mnt"

say "Creating VM 'vm1' through the mount, as a hypervisor would"
vm=$mnt/vm1
mkdir "$vm"
echo 'policy = "vm-encryption"' >"$vm/vmcrypt.policy"
cat >"$vm/vm1.vmx" <<'EOF'
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "vm1"
guestOS = "debian12-64"
memSize = "2048"
nvram = "vm1.nvram"
scsi0:0.fileName = "vm1.vmdk"
EOF
# NVRAM with a recognisable secret (the vTPM state lives here).
python3 -c 'import sys; sys.stdout.buffer.write((b"VTPM-SECRET-0123456789;" * 400)[:8684])' >"$vm/vm1.nvram"
echo "$(date -u +%FT%TZ)| vmx| I005: Log for VMware ESX pid=4242 version=8.0.2" >"$vm/vmware.log"
qemu-img create -q -f vmdk -o subformat=monolithicFlat "$vm/vm1.vmdk" 1G
python3 -c 'import sys; sys.stdout.buffer.write((b"GUEST-DISK-SECRET;" * 300)[:4096])' >"$demo/sector.bin"
qemu-io -f vmdk -c "write -P 0x5a 0 1M" -c "write -P 0xa5 512M 64k" \
	-c "write -s $demo/sector.bin 2M 4096" "$vm/vm1.vmdk" >/dev/null
ls -l "$vm"

say "What the backing directory holds"
ls -la "$backing/vm1"
for f in vm1-flat.vmdk vm1.nvram; do
	printf '  %-14s header: %s\n' "$f" "$(head -c 16 "$backing/vm1/$f" | xxd -p)"
done

say "Checks"
check "vm1-flat.vmdk is ciphertext in the backing store" is_ciphertext "$backing/vm1/vm1-flat.vmdk"
check "vm1.nvram is ciphertext in the backing store" is_ciphertext "$backing/vm1/vm1.nvram"
check "the NVRAM secret does not appear in the backing store" not_in VTPM-SECRET "$backing/vm1/vm1.nvram"
check "the guest's secret is on the disk as seen through the mount" grep -q -a -F GUEST-DISK-SECRET "$vm/vm1-flat.vmdk"
check "the guest's secret does not appear in the backing store" not_in GUEST-DISK-SECRET "$backing/vm1/vm1-flat.vmdk"
check "vmware.log is byte-for-byte cleartext" cmp -s "$backing/vm1/vmware.log" "$vm/vmware.log"
check "vm1.vmx is byte-for-byte cleartext" cmp -s "$backing/vm1/vm1.vmx" "$vm/vm1.vmx"
check "the disk descriptor vm1.vmdk is byte-for-byte cleartext" cmp -s "$backing/vm1/vm1.vmdk" "$vm/vm1.vmdk"
check "the descriptor is readable without keys" grep -q 'createType="monolithicFlat"' "$backing/vm1/vm1.vmdk"
check "the 1 GiB thin disk costs under 4 MiB in the backing store" \
	test "$(du -k "$backing/vm1/vm1-flat.vmdk" | cut -f1)" -lt 4096
check "the key file is on the host, mode 0600" \
	test "$(stat -c %a /var/lib/vmcryptfs/native/default.key)" = 600
check "the guest data reads back through the mount" \
	sh -c "qemu-io -f vmdk -c 'read -P 0xa5 512M 64k' '$vm/vm1.vmdk' | grep -q 'read 65536/65536'"

say "Unmount, remount, read everything again"
sum_before=$(md5sum "$vm/vm1.nvram" "$vm/vm1-flat.vmdk" | cut -d' ' -f1)
fusermount3 -u "$mnt"
vmcryptfs "$backing" "$mnt"
sum_after=$(md5sum "$vm/vm1.nvram" "$vm/vm1-flat.vmdk" | cut -d' ' -f1)
check "NVRAM and disk identical after remount" test "$sum_before" = "$sum_after"
fusermount3 -u "$mnt"

echo
if [ "$fails" -eq 0 ]; then
	echo "All checks passed. The datastore is unmounted; mount it again with:"
	echo "    vmcryptfs $backing $mnt"
else
	echo "$fails check(s) failed."
	exit 1
fi
