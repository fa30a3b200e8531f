# SPDX-License-Identifier: GPL-2.0-or-later
#
# cpack -G DEB: a Debian package of what `cmake --install` installs. Build it
# with -DCMAKE_INSTALL_PREFIX=/usr so the compiled-in plugin directory is the
# one the package fills.

set(CPACK_PACKAGE_NAME "vmcryptfs")
set(CPACK_PACKAGE_VENDOR "vmcryptfs")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
	"per-VM encrypted datastore for hypervisors that keep VMs as files")
set(CPACK_PACKAGE_DESCRIPTION
	"vmcryptfs is a FUSE filesystem that mounts a directory as a datastore in which
virtual machines are encrypted per VM, by storage policy: VM home files and disks
with AES-256-XTS data keys, logs and descriptors left cleartext, data keys wrapped
by per-VM key-encryption keys from a key provider (the built-in native provider
or a KMIP key server).")
set(CPACK_PACKAGE_CONTACT "vmcryptfs maintainers <vmcryptfs@localhost>")
set(CPACK_RESOURCE_FILE_LICENSE "${PROJECT_SOURCE_DIR}/COPYING")
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR "DEB")

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "admin")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# Library dependencies from dpkg-shlibdeps; fuse3 for fusermount3 and the
# mount.fuse3 helper that `mount -t fuse.vmcryptfs` runs.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "fuse3")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "qemu-utils, python3-pykmip")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
