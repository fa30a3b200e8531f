#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The bash completions of vmcryptfs-ctl and vmcryptfs-util: what they offer
# for verbs, options, VM directories and provider names, and that every option
# they offer is one the program's own --help lists (so they cannot drift).
# Usage: completion-test.sh SOURCE_DIR BUILD_DIR. Exit 77 without bash-completion.
set -u

src=$1
build=$2
bc=/usr/share/bash-completion/bash_completion
[ -r "$bc" ] || { echo "SKIP: bash-completion is not installed"; exit 77; }
# shellcheck disable=SC1090
source "$bc"
source "$src/contrib/bash-completion/vmcryptfs-ctl"
source "$src/contrib/bash-completion/vmcryptfs-util"
export PATH="$build/cli:$PATH"

failures=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

# complete FUNC WORD... : COMPREPLY for the command line WORD... (the last
# word is the one being completed), sorted, one line.
complete_line() {
	local fn=$1
	shift
	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	COMP_LINE="$*"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	"$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
	printf '%s\n' "${COMPREPLY[@]}" | sort -u | tr '\n' ' ' | sed 's/ $//'
}

expect() { # expect WANT FUNC WORD...
	local want=$1 got
	shift
	got=$(complete_line "$@")
	if [ "$got" != "$want" ]; then
		echo "FAIL: '${*:2}' completes to '$got', want '$want'"
		failures=$((failures + 1))
	fi
}

expect_has() { # expect_has WORD FUNC WORD...
	local want=$1 got
	shift
	got=" $(complete_line "$@") "
	if [[ $got != *" $want "* ]]; then
		echo "FAIL: '${*:2}' completes to '$got', which lacks '$want'"
		failures=$((failures + 1))
	fi
}

# --- vmcryptfs-ctl ---------------------------------------------------------
C=_vmcryptfs_ctl
expect "decrypt encrypt encryption-mode events help lock metrics provider rekey status unlock" \
	$C vmcryptfs-ctl ""
expect "rekey" $C vmcryptfs-ctl re
expect "encrypt encryption-mode" $C vmcryptfs-ctl -m /x enc
expect "backup create-native list restore test" $C vmcryptfs-ctl provider ""
expect "--all --deep --help --json --provider --to-provider" $C vmcryptfs-ctl rekey --
expect "--follow --help --json --since --vm" $C vmcryptfs-ctl events --
# VM directories, relative to the mount point named with -m.
mkdir -p mnt/vm-a mnt/vm-b mnt/other
expect "vm-a vm-b" $C vmcryptfs-ctl -m "$work/mnt" rekey vm
expect_has "other" $C vmcryptfs-ctl -m "$work/mnt" status o

# Every option offered for a verb is in that verb's --help.
for verb in status encrypt decrypt rekey lock unlock events encryption-mode; do
	help=$(vmcryptfs-ctl "$verb" --help 2>&1)
	for opt in $(complete_line $C vmcryptfs-ctl "$verb" --); do
		[ "$opt" = --help ] && continue
		[ "$opt" = --json ] && help+=$(vmcryptfs-ctl --help 2>&1)
		if [[ $help != *"$opt"* ]]; then
			echo "FAIL: completion offers '$opt' for 'vmcryptfs-ctl $verb', its --help does not list it"
			failures=$((failures + 1))
		fi
	done
done
help=$(vmcryptfs-ctl provider --help 2>&1)
for opt in $(complete_line $C vmcryptfs-ctl provider backup --); do
	[ "$opt" = --json ] || [ "$opt" = --help ] && continue
	if [[ $help != *"$opt"* ]]; then
		echo "FAIL: completion offers '$opt' for 'vmcryptfs-ctl provider', its --help does not list it"
		failures=$((failures + 1))
	fi
done

# --- vmcryptfs-util --------------------------------------------------------
U=_vmcryptfs_util
expect "coredump envelope help keys scan" $U vmcryptfs-util ""
expect "describe extract" $U vmcryptfs-util envelope ""
expect "in-use unused" $U vmcryptfs-util --json keys ""
expect "--help --provider" $U vmcryptfs-util keys unused --
# Provider names come from the configuration given with -c.
cat >conf <<EOF
key-provider "native" { type = "native" key-file = "/nonexistent" }
key-provider "kmip-a" {
	type = "kmip"
}
EOF
expect "kmip-a" $U vmcryptfs-util -c "$work/conf" keys unused --provider km
expect "kmip-a native" $U vmcryptfs-util -c "$work/conf" keys unused --provider ""

check_util_help() { # verb sub
	local help opt
	help=$(vmcryptfs-util "$@" --help 2>&1)
	for opt in $(complete_line $U vmcryptfs-util "$@" --); do
		[ "$opt" = --help ] && continue
		if [[ $help != *"$opt"* ]]; then
			echo "FAIL: completion offers '$opt' for 'vmcryptfs-util $*', its --help does not list it"
			failures=$((failures + 1))
		fi
	done
}
check_util_help envelope describe
check_util_help envelope extract
check_util_help scan
check_util_help keys unused
check_util_help coredump extract
check_util_help coredump export

if [ "$failures" -ne 0 ]; then
	echo "$failures failure(s)"
	exit 1
fi
echo PASS
