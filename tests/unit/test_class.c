// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of lib/vmc_class.h: which files of a VM directory are encrypted
 * (PRODUCT.md, "What is encrypted and what is not"). Every pattern of the
 * built-in table is exercised with a realistic VMware/QEMU file name, matching
 * is case-insensitive, rules from the configuration win over the table, and a
 * VMDK is a descriptor (cleartext) exactly when its first bytes say so.
 *
 * The expected classes are written out from the product table, not read back
 * from lib/vmc_class.c.
 */
#include "vmc_class.h"
#include "vmc_config.h"
#include "vmc_format.h"
#include "vmc_test.h"

static const struct {
	const char *name;
	enum vmc_class cls;
} names[] = {
	/* cleartext: the policy file, logs, configuration */
	{ "vmcrypt.policy", VMC_CLASS_CLEARTEXT },
	{ "vmware.log", VMC_CLASS_CLEARTEXT },
	{ "vmware-1.log", VMC_CLASS_CLEARTEXT },
	{ "vm.hlog", VMC_CLASS_CLEARTEXT },
	{ "vm.vmx", VMC_CLASS_CLEARTEXT },
	{ "vm.vmxf", VMC_CLASS_CLEARTEXT },
	{ "vm.vmsd", VMC_CLASS_CLEARTEXT },
	{ "vm.vmx~", VMC_CLASS_CLEARTEXT },
	{ "vm.vmtx", VMC_CLASS_CLEARTEXT },
	{ "vm.vmx.lck", VMC_CLASS_CLEARTEXT },
	/* disk extents and images */
	{ "vm-flat.vmdk", VMC_CLASS_DISK },
	{ "vm-000001-delta.vmdk", VMC_CLASS_DISK },
	{ "vm-000001-sesparse.vmdk", VMC_CLASS_DISK },
	{ "vm-s001.vmdk", VMC_CLASS_DISK },
	{ "vm-s999.vmdk", VMC_CLASS_DISK },
	{ "vm-f012.vmdk", VMC_CLASS_DISK },
	{ "disk.qcow2", VMC_CLASS_DISK },
	{ "disk.qcow", VMC_CLASS_DISK },
	{ "disk.raw", VMC_CLASS_DISK },
	{ "disk.img", VMC_CLASS_DISK },
	{ "disk.vhd", VMC_CLASS_DISK },
	{ "disk.vhdx", VMC_CLASS_DISK },
	{ "disk.vdi", VMC_CLASS_DISK },
	/* a .vmdk that is not an extent: descriptor or monolithic, by content */
	{ "vm.vmdk", VMC_CLASS_VMDK },
	{ "vm-000001.vmdk", VMC_CLASS_VMDK },
	{ "vm-s01.vmdk", VMC_CLASS_VMDK },
	{ "vm-s0001.vmdk", VMC_CLASS_VMDK },
	{ "vm-sabc.vmdk", VMC_CLASS_VMDK },
	/* VM home files with guest state */
	{ "vm.nvram", VMC_CLASS_HOME },
	{ "vm-3f2a.vswp", VMC_CLASS_HOME },
	{ "vm-Snapshot1.vmsn", VMC_CLASS_HOME },
	{ "vm-Snapshot1.vmem", VMC_CLASS_HOME },
	{ "vm.vmss", VMC_CLASS_HOME },
	/* core dumps */
	{ "x.zdump", VMC_CLASS_COREDUMP },
	{ "x.zdump.1", VMC_CLASS_COREDUMP },
	{ "core", VMC_CLASS_COREDUMP },
	{ "core.1234", VMC_CLASS_COREDUMP },
	{ "vmware64.dmp", VMC_CLASS_COREDUMP },
	/* anything else */
	{ "notes.txt", VMC_CLASS_OTHER },
	{ "vm.vmdk.bak", VMC_CLASS_OTHER },
	{ "log", VMC_CLASS_OTHER },
	{ "vmx", VMC_CLASS_OTHER },
	/* case-insensitive */
	{ "DISK-FLAT.VMDK", VMC_CLASS_DISK },
	{ "Vm-S001.VmDk", VMC_CLASS_DISK },
	{ "VM.VMDK", VMC_CLASS_VMDK },
	{ "VMWARE.LOG", VMC_CLASS_CLEARTEXT },
	{ "VM.VMX", VMC_CLASS_CLEARTEXT },
	{ "VM.NVRAM", VMC_CLASS_HOME },
	{ "DISK.QCOW2", VMC_CLASS_DISK },
	{ "CORE.42", VMC_CLASS_COREDUMP },
	{ "X.ZDUMP.1", VMC_CLASS_COREDUMP },
};

static void test_builtin_table(void)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		enum vmc_class c = vmc_class_of_name(NULL, names[i].name);

		vmc_test_checks++;
		if (c != names[i].cls)
			VMC_T_FAIL("vmc_class_of_name(\"%s\"): %s, expected %s", names[i].name,
				   vmc_class_name(c), vmc_class_name(names[i].cls));
	}
}

static void test_config_rules(void)
{
	static const char text[] =
		"key-provider \"native\" {\n"
		"\ttype = \"native\"\n"
		"}\n"
		"file-class \"*.iso\" {\n"
		"\tclass = \"cleartext\"\n"
		"}\n"
		"file-class \"*.txt\" {\n"
		"\tclass = \"home\"\n"
		"}\n"
		"file-class \"*.log\" {\n"
		"\tclass = \"home\"\n"
		"}\n"
		"file-class \"scratch-*.vmdk\" {\n"
		"\tclass = \"cleartext\"\n"
		"}\n";
	struct vmc_config *cfg = NULL;
	char err[256] = "";

	OK_(vmc_config_parse(text, "rules.conf", &cfg, err, sizeof(err)));
	REQUIRE_(cfg);
	EQ_(cfg->nrules, 4);
	EQ_(vmc_class_of_name(cfg, "tools.iso"), VMC_CLASS_CLEARTEXT);
	EQ_(vmc_class_of_name(cfg, "TOOLS.ISO"), VMC_CLASS_CLEARTEXT);
	EQ_(vmc_class_of_name(cfg, "notes.txt"), VMC_CLASS_HOME);
	/* A rule overrides the built-in table... */
	EQ_(vmc_class_of_name(cfg, "vmware.log"), VMC_CLASS_HOME);
	EQ_(vmc_class_of_name(cfg, "scratch-flat.vmdk"), VMC_CLASS_CLEARTEXT);
	/* ...and the table still decides everything the rules do not name. */
	EQ_(vmc_class_of_name(cfg, "vm-flat.vmdk"), VMC_CLASS_DISK);
	EQ_(vmc_class_of_name(cfg, "vm.nvram"), VMC_CLASS_HOME);
	EQ_(vmc_class_of_name(cfg, "vm.vmx"), VMC_CLASS_CLEARTEXT);
	EQ_(vmc_class_of_name(cfg, "readme.md"), VMC_CLASS_OTHER);
	vmc_config_free(cfg);

	/* The policy file and vmcryptfs' own files cannot be reclassified. */
	cfg = NULL;
	FAIL_(vmc_config_parse("file-class \"vmcrypt.policy\" {\n\tclass = \"home\"\n}\n",
			       "rules.conf", &cfg, err, sizeof(err)), EINVAL);
	CONTAINS_(err, "rules.conf");
	FAIL_(vmc_config_parse("file-class \".vmcrypt.state\" {\n\tclass = \"disk\"\n}\n",
			       "rules.conf", &cfg, err, sizeof(err)), EINVAL);
	/*
	 * Nor by a wildcard: whatever the rules say, the policy file stays
	 * cleartext (PRODUCT.md: the daemon and tools without keys read it).
	 */
	{
		static const char *const wild[] = {
			"file-class \"*\" {\n\tclass = \"disk\"\n}\n",
			"file-class \"*.policy\" {\n\tclass = \"home\"\n}\n",
			"file-class \"vmcrypt.*\" {\n\tclass = \"home\"\n}\n",
		};

		for (size_t i = 0; i < sizeof(wild) / sizeof(wild[0]); i++) {
			enum vmc_class c;

			cfg = NULL;
			if (vmc_config_parse(wild[i], "rules.conf", &cfg, err, sizeof(err)))
				continue; /* refusing the rule is fine too */
			c = vmc_class_of_name(cfg, VMC_FMT_POLICY_NAME);
			vmc_test_checks++;
			if (c != VMC_CLASS_CLEARTEXT)
				VMC_T_FAIL("rule %zu reclassifies " VMC_FMT_POLICY_NAME " as %s",
					   i, vmc_class_name(c));
			vmc_config_free(cfg);
		}
	}
	cfg = NULL;
	/* "vmdk" is not a class a rule may give. */
	FAIL_(vmc_config_parse("file-class \"*.x\" {\n\tclass = \"vmdk\"\n}\n", "rules.conf",
			       &cfg, err, sizeof(err)), EINVAL);
	TRUE_(cfg == NULL);
}

static void test_vmdk_descriptor(void)
{
	static const char desc[] = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\n";
	static const uint8_t sparse[] = { 'K', 'D', 'M', 'V', 1, 0, 0, 0 };

	TRUE_(vmc_vmdk_is_descriptor(desc, strlen(desc)));
	TRUE_(vmc_vmdk_is_descriptor("# Disk DescriptorFile\nversion=1", 31));
	TRUE_(vmc_vmdk_is_descriptor("# Disk DescriptorFile", 21));
	/* A descriptor written in small pieces: its first bytes alone. */
	TRUE_(vmc_vmdk_is_descriptor("# Dis", 5));
	TRUE_(vmc_vmdk_is_descriptor("#", 1));
	TRUE_(!vmc_vmdk_is_descriptor("KDMV", 4));
	TRUE_(!vmc_vmdk_is_descriptor(sparse, sizeof(sparse)));
	TRUE_(!vmc_vmdk_is_descriptor("COWD", 4));
	TRUE_(!vmc_vmdk_is_descriptor("", 0));
	TRUE_(!vmc_vmdk_is_descriptor("# Disk Descriptorfile", 21));
	TRUE_(!vmc_vmdk_is_descriptor("#!Dis", 5));
	TRUE_(!vmc_vmdk_is_descriptor("\0\0\0\0", 4));
}

static void test_class_values(void)
{
	EQ_(vmc_class_fmt(VMC_CLASS_DISK), VMC_FMT_CLASS_DISK);
	EQ_(vmc_class_fmt(VMC_CLASS_VMDK), VMC_FMT_CLASS_DISK);
	EQ_(vmc_class_fmt(VMC_CLASS_HOME), VMC_FMT_CLASS_HOME);
	EQ_(vmc_class_fmt(VMC_CLASS_COREDUMP), VMC_FMT_CLASS_COREDUMP);
	EQ_(vmc_class_fmt(VMC_CLASS_OTHER), VMC_FMT_CLASS_OTHER);

	EQ_(vmc_class_from_name("cleartext"), VMC_CLASS_CLEARTEXT);
	EQ_(vmc_class_from_name("disk"), VMC_CLASS_DISK);
	EQ_(vmc_class_from_name("HOME"), VMC_CLASS_HOME);
	EQ_(vmc_class_from_name("coredump"), VMC_CLASS_COREDUMP);
	EQ_(vmc_class_from_name("other"), VMC_CLASS_OTHER);
	EQ_(vmc_class_from_name("secret"), -1);
	EQ_(vmc_class_from_name(""), -1);
	STREQ_(vmc_class_name(VMC_CLASS_DISK), "disk");
	STREQ_(vmc_class_name(VMC_CLASS_CLEARTEXT), "cleartext");
	STREQ_(vmc_class_name((enum vmc_class)99), "unknown");
}

int main(void)
{
	test_builtin_table();
	test_config_rules();
	test_vmdk_descriptor();
	test_class_values();
	return vmc_test_exit("test_class");
}
