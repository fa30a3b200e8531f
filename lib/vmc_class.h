/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * File classification: which files of a VM are encrypted and which stay
 * cleartext (PRODUCT.md's table), decided by name, overridable by rules in
 * the configuration, and for VMDK files by content: a text descriptor stays
 * cleartext so disks can be managed without keys; a binary VMDK is disk data.
 */
#ifndef VMC_CLASS_H
#define VMC_CLASS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vmc_class {
	VMC_CLASS_CLEARTEXT, /* logs, .vmx/.vmxf/.vmsd, descriptors, the policy file */
	VMC_CLASS_DISK,      /* disk data */
	VMC_CLASS_HOME,      /* VM home files with guest state: nvram, vswp, ... */
	VMC_CLASS_COREDUMP,  /* core dumps */
	VMC_CLASS_OTHER,     /* anything else in a VM directory: treated as home */
	VMC_CLASS_VMDK,      /* *.vmdk that is not an extent: decided by content */
};

struct vmc_config;

/* Class of a file named @name (a single path component). */
enum vmc_class vmc_class_of_name(const struct vmc_config *cfg, const char *name);
/* Parse a class name from the configuration; -1 if unknown. */
int vmc_class_from_name(const char *s);
const char *vmc_class_name(enum vmc_class c);
/*
 * Whether the first bytes written to a VMDK (at offset 0) are a text
 * descriptor. A prefix of the signature counts, so a descriptor written in
 * small pieces is still recognised.
 */
bool vmc_vmdk_is_descriptor(const void *buf, size_t len);
/*
 * Resolve VMC_CLASS_VMDK by the file's first bytes (@first may be NULL when
 * unknown: a binary VMDK, i.e. disk data); other classes are returned as is.
 */
enum vmc_class vmc_class_resolve(enum vmc_class c, const void *first, size_t len);
/* The class byte recorded in a file header for an encrypted class. */
uint8_t vmc_class_fmt(enum vmc_class c);

#endif
