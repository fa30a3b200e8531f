#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Set up a Debian 12 machine, build vmcryptfs and run every test (unit tests
# and integration tests on real FUSE mounts). Needs root for mounting.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/contrib/install-deps.sh"
build=${VMC_BUILD_DIR:-$top/build}
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMC_WERROR=ON
cmake --build "$build" -j "$(nproc)"
(cd "$build" && ctest --output-on-failure --timeout 900 "$@")

# The fuzz targets under libFuzzer (clang, ASan+UBSan), each for a bounded
# time on its committed seed corpus. VMC_FUZZ_SECONDS=0 skips this stage.
fuzz_seconds=${VMC_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" -gt 0 ] && command -v clang >/dev/null; then
	fbuild=${VMC_FUZZ_BUILD_DIR:-$top/build-fuzz}
	CC=clang cmake -S "$top" -B "$fbuild" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMC_WERROR=ON \
		-DVMC_FUZZ=ON -DVMC_FUZZ_SECONDS="$fuzz_seconds"
	cmake --build "$fbuild" -j "$(nproc)"
	(cd "$fbuild" && ctest --output-on-failure -L fuzz)
fi

# The unit and integration suites again with a daemon and tools built with
# AddressSanitizer and UndefinedBehaviorSanitizer (gcc; any report in a
# daemon's log fails its test, and UBSan aborts on the first finding), the
# random tests with fewer seeds and kill points; then the concurrency tests
# under ThreadSanitizer. VMC_SANITIZERS=0 skips this stage.
if [ "${VMC_SANITIZERS:-1}" != 0 ]; then
	abuild=${VMC_ASAN_BUILD_DIR:-$top/build-asan}
	cmake -S "$top" -B "$abuild" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMC_WERROR=ON \
		-DVMC_ASAN=ON -DVMC_UBSAN=ON
	cmake --build "$abuild" -j "$(nproc)"
	(cd "$abuild" && VMC_MODEL_SEEDS=3 VMC_CRASH_ROUNDS=8 VMC_CRASH_CYCLES=2 \
		ctest --output-on-failure --timeout 900 -L "unit|integration")
	tbuild=${VMC_TSAN_BUILD_DIR:-$top/build-tsan}
	cmake -S "$top" -B "$tbuild" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMC_WERROR=ON \
		-DVMC_TSAN=ON
	cmake --build "$tbuild" -j "$(nproc)" --target vmcryptfs vmcryptfs-ctl \
		vmcryptfs-keyprov-native vmcryptfs-keyprov-kmip
	(cd "$tbuild" && ctest --output-on-failure -L concurrency)
fi
