#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Install everything vmcryptfs needs to build, run and test (Debian 12).
set -eu
export DEBIAN_FRONTEND=noninteractive
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
	build-essential cmake pkg-config dpkg-dev \
	libfuse3-dev fuse3 libgcrypt20-dev libssl-dev libconfuse-dev libjson-c-dev \
	qemu-utils fio tar attr util-linux xxd \
	python3 python3-pytest python3-cryptography python3-pykmip openssl \
	valgrind clang gdb bash-completion
