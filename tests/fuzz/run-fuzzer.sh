#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# run-fuzzer.sh FUZZER CORPUS SECONDS: run a libFuzzer target for SECONDS on a
# scratch copy of its committed seed corpus (the committed corpus is not
# modified); fail on any crash, leak or sanitizer report.
set -eu
fuzzer=$1 corpus=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$corpus" "$work/corpus"
cd "$work"
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	corpus 2>&1 | tail -25
