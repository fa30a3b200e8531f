#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The vmcryptfs benchmark (issue 6): the raw backing directory, libfuse's
# passthrough_ll, gocryptfs and vmcryptfs with an encrypted VM policy, side by
# side on one backing directory, in one run; medians of per-round ratios;
# writes the table to docs/PERFORMANCE.md. Method: docs/PERFORMANCE.md.
#
#   sudo contrib/bench/run.sh [--quick] [--rounds N] [--build DIR] [--backing DIR] ...
#
# Options (the rest go to bench.py):
#   --build DIR        vmcryptfs build directory (default: $VMC_BENCH_BUILD, else
#                      build-bench at the top of the tree); configured with
#                      -DVMC_BUILD_BENCH=ON and built (incrementally) first
#   --no-build         use the build directory as it is
#   --quick            1 round, smaller sizes: for development (about 3 minutes);
#                      does not write docs/PERFORMANCE.md unless --doc is given
#   --rounds N         rounds (default 3; --quick: 1)
#   --backing DIR      run on a directory of a real filesystem instead of a tmpfs
#                      the script mounts (a temporary subdirectory is used and removed)
#   --tmpfs-size SIZE  size of that tmpfs (default 10G; only what is written uses memory)
#   --systems LIST     subset of raw,pt,gc,vmc (default all four); bars need pt, gc, vmc
#   --writeback        also measure vmcryptfs -o writeback (system "vmcwb")
#   --workloads LIST   subset of seq,rand,tree,convert,scale,rekey,encrypt,cipher,many
#   --many N           VM directories for the mount/status test (default 1000)
#   --doc PATH         where to write the table (default docs/PERFORMANCE.md)
#   --no-doc           do not write the document
#   --results DIR      per-run .md and .json (default BUILD/bench-results)
#   --compare-all      qemu-img compare the converted image on every system, not
#                      only vmcryptfs
#   --perf             record a perf profile of the vmcryptfs daemon (results dir)
#
# Exit status: 0 when the run completed and every self-check held (bars may
# still fail: they are reported, not hidden); 1 on a failed check or error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${VMC_BENCH_BUILD:-$top/build-bench}
backing=
doc=$top/docs/PERFORMANCE.md
doc_set=0
no_doc=0
quick=0
do_build=1
results=
pass=()

while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--build=*) build=${1#*=}; shift ;;
	--no-build) do_build=0; shift ;;
	--backing) backing=$2; shift 2 ;;
	--backing=*) backing=${1#*=}; shift ;;
	--doc) doc=$2; doc_set=1; shift 2 ;;
	--doc=*) doc=${1#*=}; doc_set=1; shift ;;
	--no-doc) no_doc=1; shift ;;
	--results) results=$2; shift 2 ;;
	--quick) quick=1; pass+=("$1"); shift ;;
	-h|--help) sed -n '3,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
	--rounds|--systems|--workloads|--many|--tmpfs-size) pass+=("$1" "$2"); shift 2 ;;
	*) pass+=("$1"); shift ;;
	esac
done
[ "$quick" -eq 1 ] && [ "$doc_set" -eq 0 ] && no_doc=1

if [ "$(id -u)" -ne 0 ]; then
	echo "run.sh: run as root (FUSE mounts, a tmpfs, dropping the page cache)" >&2
	exit 1
fi

# --- the peers and tools -------------------------------------------------------
missing=()
need() { # need COMMAND-OR-FILE DEBIAN-PACKAGE
	case $1 in
	/*) [ -e "$1" ] || missing+=("$2") ;;
	*) command -v "$1" >/dev/null 2>&1 || missing+=("$2") ;;
	esac
}
need gocryptfs gocryptfs
need fio fio
need qemu-img qemu-utils
need gcc build-essential
need cmake cmake
need pkg-config pkg-config
need openssl openssl
need python3 python3
need fusermount3 fuse3
need tar tar
need /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c libfuse3-dev
need /usr/share/doc/libfuse3-dev/examples/passthrough_helpers.h libfuse3-dev
for p in "${pass[@]}"; do [ "$p" = --perf ] && need perf linux-perf; done
if [ ${#missing[@]} -gt 0 ]; then
	pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
	echo "run.sh: missing: $pkgs" >&2
	echo "install them with:  apt-get install -y $pkgs" >&2
	echo "(the project's own dependencies: contrib/install-deps.sh)" >&2
	exit 1
fi

# --- build ---------------------------------------------------------------------
if [ "$do_build" -eq 1 ]; then
	blog=$(mktemp)
	if ! grep -qs '^VMC_BUILD_BENCH:BOOL=ON' "$build/CMakeCache.txt"; then
		echo "== configuring $build (-DVMC_BUILD_BENCH=ON)"
		cmake -S "$top" -B "$build" -DVMC_BUILD_BENCH=ON >"$blog" 2>&1 ||
			{ tail -30 "$blog" >&2; rm -f "$blog"; echo "run.sh: configuring failed" >&2; exit 1; }
	fi
	echo "== building $build"
	cmake --build "$build" -j "$(nproc)" >"$blog" 2>&1 ||
		{ tail -30 "$blog" >&2; rm -f "$blog"; echo "run.sh: the build failed" >&2; exit 1; }
	rm -f "$blog"
fi
build=$(cd "$build" && pwd)
for f in fs/vmcryptfs cli/vmcryptfs-ctl plugins/vmcryptfs-keyprov-native.so \
	 contrib/bench/vmc-cipher-bench; do
	if [ ! -e "$build/$f" ]; then
		echo "run.sh: $build/$f is missing: configure with" >&2
		echo "    cmake -S $top -B $build -DVMC_BUILD_BENCH=ON && cmake --build $build" >&2
		exit 1
	fi
done
results=${results:-$build/bench-results}

# --- work directory, and cleaning up whatever happens -----------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/vmcbench.XXXXXX")
bdir=
cleanup() {
	local rc=$? mp left
	trap - EXIT INT TERM HUP
	# Unmount everything under our directories, deepest first (bench.py
	# normally did it already).
	for _ in 1 2 3; do
		left=0
		while read -r mp; do
			left=1
			case $(findmnt -n -o FSTYPE --mountpoint "$mp" 2>/dev/null) in
			fuse*) fusermount3 -u "$mp" 2>/dev/null || fusermount3 -u -z "$mp" 2>/dev/null || true ;;
			*) umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true ;;
			esac
		done < <(awk '{print $5}' /proc/self/mountinfo | sed 's/\\040/ /g' |
			 grep -E "^($work|${bdir:-$work})(/|$)" | awk '{print length, $0}' |
			 sort -rn | cut -d' ' -f2-)
		[ "$left" -eq 0 ] && break
		sleep 1
	done
	# Our own daemons still alive (their pids, checked against the command line).
	if [ -f "$work/pids" ]; then
		while read -r pid; do
			if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$work"; then
				kill "$pid" 2>/dev/null || true
			fi
		done <"$work/pids"
	fi
	if grep -qE " ($work|${bdir:-$work})(/| )" /proc/self/mountinfo; then
		echo "run.sh: something is still mounted under $work; left in place" >&2
	else
		rm -rf --one-file-system "$work"
		[ -n "$bdir" ] && rm -rf --one-file-system "$bdir"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [ -n "$backing" ]; then
	[ -d "$backing" ] || { echo "run.sh: --backing $backing is not a directory" >&2; exit 1; }
	bdir=$(mktemp -d "$(cd "$backing" && pwd)/vmcbench.XXXXXX")
	pass+=(--backing "$bdir" --backing-user "$backing")
fi
[ "$no_doc" -eq 1 ] && pass+=(--no-doc)

echo "== vmcryptfs benchmark: build $build, work directory $work"
python3 "$here/bench.py" --top "$top" --build "$build" --workdir "$work" \
	--results "$results" --doc "$doc" "${pass[@]}"
