// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Name-based classification table (PRODUCT.md "What is encrypted and what is
 * not"). Matching is on the last path component, case-insensitive, because
 * VM files copied from other platforms often have upper-case extensions.
 * Configuration rules come first, in order; the first match wins.
 */
#include "vmc_class.h"
#include "vmc_config.h"
#include "vmc_format.h"

#include <fnmatch.h>
#include <string.h>
#include <strings.h>

struct class_pattern {
	const char *pattern;
	enum vmc_class cls;
};

static const struct class_pattern builtin[] = {
	/* logs */
	{ "*.log", VMC_CLASS_CLEARTEXT },
	{ "*.hlog", VMC_CLASS_CLEARTEXT },
	/* configuration */
	{ "*.vmx", VMC_CLASS_CLEARTEXT },
	{ "*.vmxf", VMC_CLASS_CLEARTEXT },
	{ "*.vmsd", VMC_CLASS_CLEARTEXT },
	{ "*.vmx~", VMC_CLASS_CLEARTEXT },
	{ "*.vmtx", VMC_CLASS_CLEARTEXT },
	{ "*.lck", VMC_CLASS_CLEARTEXT },
	/* disk extents and images */
	{ "*-flat.vmdk", VMC_CLASS_DISK },
	{ "*-delta.vmdk", VMC_CLASS_DISK },
	{ "*-sesparse.vmdk", VMC_CLASS_DISK },
	{ "*-s[0-9][0-9][0-9].vmdk", VMC_CLASS_DISK },
	{ "*-f[0-9][0-9][0-9].vmdk", VMC_CLASS_DISK },
	{ "*.vmdk", VMC_CLASS_VMDK },
	{ "*.qcow2", VMC_CLASS_DISK },
	{ "*.qcow", VMC_CLASS_DISK },
	{ "*.raw", VMC_CLASS_DISK },
	{ "*.img", VMC_CLASS_DISK },
	{ "*.vhd", VMC_CLASS_DISK },
	{ "*.vhdx", VMC_CLASS_DISK },
	{ "*.vdi", VMC_CLASS_DISK },
	/* VM home files with guest state */
	{ "*.nvram", VMC_CLASS_HOME },
	{ "*.vswp", VMC_CLASS_HOME },
	{ "*.vmsn", VMC_CLASS_HOME },
	{ "*.vmem", VMC_CLASS_HOME },
	{ "*.vmss", VMC_CLASS_HOME },
	/* core dumps */
	{ "*.zdump*", VMC_CLASS_COREDUMP },
	{ "*-zdump.*", VMC_CLASS_COREDUMP }, /* ESXi: vmx-zdump.000 */
	{ "core*", VMC_CLASS_COREDUMP },
	{ "*.dmp", VMC_CLASS_COREDUMP },
};

static const char *const class_names[] = {
	[VMC_CLASS_CLEARTEXT] = "cleartext", [VMC_CLASS_DISK] = "disk",
	[VMC_CLASS_HOME] = "home",	     [VMC_CLASS_COREDUMP] = "coredump",
	[VMC_CLASS_OTHER] = "other",	     [VMC_CLASS_VMDK] = "vmdk",
};

enum vmc_class vmc_class_of_name(const struct vmc_config *cfg, const char *name)
{
	/* The policy file and vmcryptfs' own files are never reclassified. */
	if (!strcmp(name, VMC_FMT_POLICY_NAME) ||
	    !strncmp(name, VMC_FMT_RESERVED_PREFIX, strlen(VMC_FMT_RESERVED_PREFIX)))
		return VMC_CLASS_CLEARTEXT;
	if (cfg)
		for (size_t i = 0; i < cfg->nrules; i++)
			if (!fnmatch(cfg->rules[i].pattern, name, FNM_CASEFOLD))
				return cfg->rules[i].cls;
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		if (!fnmatch(builtin[i].pattern, name, FNM_CASEFOLD))
			return builtin[i].cls;
	return VMC_CLASS_OTHER;
}

int vmc_class_from_name(const char *s)
{
	for (size_t i = 0; i < sizeof(class_names) / sizeof(class_names[0]); i++)
		if (!strcasecmp(s, class_names[i]))
			return (int)i;
	return -1;
}

const char *vmc_class_name(enum vmc_class c)
{
	if ((size_t)c < sizeof(class_names) / sizeof(class_names[0]))
		return class_names[c];
	return "unknown";
}

bool vmc_vmdk_is_descriptor(const void *buf, size_t len)
{
	static const char sig[] = "# Disk DescriptorFile";
	size_t n = len < sizeof(sig) - 1 ? len : sizeof(sig) - 1;

	return n > 0 && !memcmp(buf, sig, n);
}

enum vmc_class vmc_class_resolve(enum vmc_class c, const void *first, size_t len)
{
	if (c != VMC_CLASS_VMDK)
		return c;
	return first && vmc_vmdk_is_descriptor(first, len) ? VMC_CLASS_CLEARTEXT : VMC_CLASS_DISK;
}

uint8_t vmc_class_fmt(enum vmc_class c)
{
	switch (c) {
	case VMC_CLASS_DISK:
	case VMC_CLASS_VMDK:
		return VMC_FMT_CLASS_DISK;
	case VMC_CLASS_HOME:
		return VMC_FMT_CLASS_HOME;
	case VMC_CLASS_COREDUMP:
		return VMC_FMT_CLASS_COREDUMP;
	default:
		return VMC_FMT_CLASS_OTHER;
	}
}
