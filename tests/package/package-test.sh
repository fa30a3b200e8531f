#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The Debian package, as an administrator meets it: build it with cpack,
# `apt-get install ./vmcryptfs_*.deb`, mount a datastore with
# `mount -t fuse.vmcryptfs` using only what the package installed, check the
# systemd unit, then `apt-get remove` and check nothing is left behind.
#
# Usage: package-test.sh SOURCE_DIR WORK_DIR. Exit 77 (skipped) where it
# cannot run: not root, no apt/dpkg, or a vmcryptfs package already installed
# (we never replace an administrator's package).
set -eu

src=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || skip "needs root to install a package"
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || skip "no apt-get/dpkg-deb"
command -v dpkg-shlibdeps >/dev/null || skip "no dpkg-shlibdeps (dpkg-dev)"
[ -e /dev/fuse ] || skip "no /dev/fuse"
if dpkg-query -W -f '${Status}' vmcryptfs 2>/dev/null | grep -q "installed"; then
	skip "a vmcryptfs package is already installed; not replacing it"
fi

# Only the system directories: a `cmake --install` into /usr/local (the demo)
# must not stand in for what the package installed.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive

rm -rf "$work"
mkdir -p "$work"
build=$work/build
mnt=$work/mnt
installed=0
cleanup() {
	set +e
	fusermount3 -u "$mnt" 2>/dev/null
	if [ "$installed" = 1 ]; then
		apt-get remove -y -q vmcryptfs >/dev/null 2>&1
		dpkg --purge vmcryptfs >/dev/null 2>&1
	fi
}
trap cleanup EXIT

echo "== build and package (prefix /usr)"
cmake -S "$src" -B "$build" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DVMC_BUILD_TESTS=OFF >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "cmake"; }
cmake --build "$build" -j "$(nproc)" >"$work/build.log" 2>&1 || { tail -50 "$work/build.log"; fail "build"; }
(cd "$build" && cpack -G DEB) >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; fail "cpack"; }
deb=$(ls "$build"/vmcryptfs_*.deb)
[ -f "$deb" ] || fail "no package in $build"

echo "== package metadata"
dpkg-deb -I "$deb" >"$work/info"
for dep in fuse3 libfuse3-3 libgcrypt20 libssl3 libconfuse2 libjson-c5; do
	grep -Eq "^ Depends:.*\\b$dep\\b" "$work/info" || fail "Depends lacks $dep"
done
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$work/contents"
for f in /usr/bin/vmcryptfs /usr/bin/vmcryptfs-ctl /usr/bin/vmcryptfs-util \
	/usr/share/man/man8/vmcryptfs.8 /usr/share/man/man8/vmcryptfs-ctl.8 \
	/usr/share/man/man8/vmcryptfs-util.8 \
	/usr/share/bash-completion/completions/vmcryptfs-ctl \
	/usr/share/bash-completion/completions/vmcryptfs-util \
	/usr/lib/systemd/system/vmcryptfs@.service \
	/usr/share/doc/vmcryptfs/examples/vmcryptfs.conf.example; do
	grep -qx "$f" "$work/contents" || fail "package lacks $f"
done
grep -q '/vmcryptfs/keyprov/vmcryptfs-keyprov-native.so$' "$work/contents" ||
	fail "package lacks the native provider plugin"
grep -q '/vmcryptfs/keyprov/vmcryptfs-keyprov-kmip.so$' "$work/contents" ||
	fail "package lacks the KMIP provider plugin"

echo "== apt-get install $deb"
installed=1
apt-get install -y -q --no-install-recommends "$deb" >"$work/apt.log" 2>&1 ||
	{ cat "$work/apt.log"; fail "apt-get install"; }
[ "$(command -v vmcryptfs)" = /usr/bin/vmcryptfs ] || fail "vmcryptfs is not /usr/bin/vmcryptfs"
vmcryptfs --version | grep -q "vmcryptfs $(sed -n 's/^project(vmcryptfs VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")" ||
	fail "vmcryptfs --version"
vmcryptfs-ctl --version >/dev/null || fail "vmcryptfs-ctl --version"
vmcryptfs-util --version >/dev/null || fail "vmcryptfs-util --version"
man -w vmcryptfs >/dev/null 2>&1 || [ ! -x /usr/bin/man ] || fail "man vmcryptfs not found"

echo "== mount -t fuse.vmcryptfs with the installed daemon and plugins"
# mount(8) runs mount.fuse3 with a fixed PATH that puts /usr/local/bin first:
# a source install there (contrib/demo.sh makes one) would stand in for the
# package. Hide it in a private mount namespace rather than touch it.
if [ -e /usr/local/bin/vmcryptfs ] || [ -e /usr/local/sbin/vmcryptfs ]; then
	echo "(hiding the vmcryptfs in /usr/local in a private mount namespace)"
	unshare -m --propagation private sh -c '
		for d in /usr/local/bin /usr/local/sbin; do
			[ -d "$d" ] && mount -t tmpfs -o ro,size=4k none "$d"
		done
		exec "$0" "$@"' "$here/mount-check.sh" "$work" || fail "mount checks"
else
	"$here/mount-check.sh" "$work" || fail "mount checks"
fi

echo "== systemd unit"
if command -v systemd-analyze >/dev/null; then
	# verify loads the unit and checks ExecStart= binaries exist.
	systemd-analyze verify /usr/lib/systemd/system/vmcryptfs@.service 2>"$work/verify" || true
	# (man pages are checked by the Documentation= line only where man-db is.)
	if grep -v -e "Command 'man " "$work/verify" | grep -q .; then
		cat "$work/verify"
		fail "systemd-analyze verify"
	fi
else
	echo "(systemd-analyze not installed: unit not verified)"
fi
if [ -d /run/systemd/system ]; then
	# systemd is PID 1: start a datastore at "boot", kill its daemon, see
	# systemd restart it, read its journal, stop it.
	mkdir -p /etc/vmcryptfs
	cat >/etc/vmcryptfs/datastore-pkgtest.env <<EOF
BACKING=$work/backing
MOUNTPOINT=$mnt
OPTIONS=config=$work/vmcryptfs.conf
EOF
	systemctl daemon-reload
	systemctl start vmcryptfs@pkgtest || fail "systemctl start"
	cmp "$work/ref.nvram" "$mnt/vm1/vm1.nvram" || fail "systemd mount reads wrong data"
	pid=$(systemctl show -p MainPID --value vmcryptfs@pkgtest)
	kill -9 "$pid"
	i=0
	until [ "$(systemctl show -p MainPID --value vmcryptfs@pkgtest)" != "$pid" ] &&
		findmnt -n -t fuse.vmcryptfs "$mnt" >/dev/null &&
		[ "$(systemctl is-active vmcryptfs@pkgtest)" = active ]; do
		i=$((i + 1))
		[ $i -lt 60 ] || fail "systemd did not restart the killed daemon"
		sleep 1
	done
	cmp "$work/ref.nvram" "$mnt/vm1/vm1.nvram" || fail "restarted mount reads wrong data"
	journalctl -u vmcryptfs@pkgtest --no-pager | grep -q vmcryptfs || fail "journalctl -u shows nothing"
	systemctl stop vmcryptfs@pkgtest
	rm -f /etc/vmcryptfs/datastore-pkgtest.env
	findmnt -n "$mnt" >/dev/null && fail "systemctl stop left the mount"
else
	echo "(systemd is not PID 1 here: unit start/restart not exercised)"
fi

echo "== apt-get remove"
apt-get remove -y -q vmcryptfs >"$work/remove.log" 2>&1 || { cat "$work/remove.log"; fail "apt-get remove"; }
dpkg --purge vmcryptfs >/dev/null 2>&1 || true
installed=0
left=0
while read -r f; do
	[ -z "$f" ] && continue
	[ -d "$f" ] && continue # shared directories such as /usr/bin stay
	if [ -e "$f" ]; then
		echo "left behind: $f" >&2
		left=1
	fi
done <"$work/contents"
[ "$left" = 0 ] || fail "files left after removal"
for d in $(grep '/vmcryptfs$' "$work/contents"); do
	[ ! -e "$d" ] || fail "directory $d left after removal"
done
# The key material and the datastore are the administrator's: still there,
# and a source build still reads the VM.
[ -f "$work/keys/primary.key" ] || fail "removal touched the provider key"
echo "PASS"
