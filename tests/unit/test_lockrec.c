// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The VM lock record (lib/vmc_lockrec.c, FORMAT.md 4.2): a record written by
 * format parses back to the same fields; the exact text of FORMAT.md's
 * example parses; every deviation from the one spelling is refused.
 */
#include "vmc_lockrec.h"
#include "vmc_test.h"

static const char example[] = "vmcryptfs-lock 1\n"
			      "host hostA\n"
			      "hostname esx01\n"
			      "instance 634dc000ee1d1dd9daf3113137620911\n"
			      "boot 8eb0d6ad-da58-439b-97a8-7fac0563026a\n"
			      "pid 563\n"
			      "lease-ms 30000\n"
			      "beat 17\n";

static int parse_text(const char *text, size_t len, struct vmc_lockrec *r)
{
	uint8_t buf[VMC_LOCKREC_SIZE + 64] = { 0 };
	char err[64];

	memcpy(buf, text, len);
	return vmc_lockrec_parse(r, buf, VMC_LOCKREC_SIZE > len ? VMC_LOCKREC_SIZE : len, err,
				 sizeof(err));
}

/* @example with the first occurrence of @from replaced by @to must not parse. */
static void refused(const char *from, const char *to)
{
	char text[1024];
	const char *p = strstr(example, from);
	struct vmc_lockrec r;
	int n;

	TRUE_(p != NULL);
	if (!p)
		return;
	n = snprintf(text, sizeof(text), "%.*s%s%s", (int)(p - example), example, to,
		     p + strlen(from));
	if (parse_text(text, (size_t)n, &r) != -EUCLEAN)
		VMC_T_FAIL("accepted with \"%s\" -> \"%s\"", from, to);
}

int main(void)
{
	struct vmc_lockrec r, back;
	uint8_t buf[VMC_LOCKREC_SIZE];
	char err[64];

	/* FORMAT.md's example, padded with NULs to 512 bytes. */
	OK_(parse_text(example, strlen(example), &r));
	STREQ_(r.host, "hostA");
	STREQ_(r.hostname, "esx01");
	STREQ_(r.instance, "634dc000ee1d1dd9daf3113137620911");
	STREQ_(r.boot, "8eb0d6ad-da58-439b-97a8-7fac0563026a");
	EQ_(r.pid, 563);
	EQ_(r.lease_ms, 30000);
	EQ_(r.beat, 17);

	/* format -> parse is the identity, and format writes that very text. */
	OK_(vmc_lockrec_format(&r, buf));
	MEMEQ_(buf, example, strlen(example));
	TRUE_(buf[strlen(example)] == 0 && buf[VMC_LOCKREC_SIZE - 1] == 0);
	OK_(vmc_lockrec_parse(&back, buf, sizeof(buf), err, sizeof(err)));
	MEMEQ_(&back, &r, sizeof(r));
	r.beat = UINT64_MAX;
	r.pid = 4194304;
	OK_(vmc_lockrec_format(&r, buf));
	OK_(vmc_lockrec_parse(&back, buf, sizeof(buf), err, sizeof(err)));
	EQ_(back.beat, UINT64_MAX);
	/* Without padding, as a short read would give it. */
	OK_(vmc_lockrec_parse(&back, (const uint8_t *)example, strlen(example), err, sizeof(err)));

	/* format refuses fields it could not parse back. */
	back = r;
	strcpy(back.host, "bad host");
	FAIL_(vmc_lockrec_format(&back, buf), EINVAL);
	back = r;
	back.host[0] = '\0';
	FAIL_(vmc_lockrec_format(&back, buf), EINVAL);
	back = r;
	back.instance[5] = 'A';
	FAIL_(vmc_lockrec_format(&back, buf), EINVAL);
	back = r;
	back.instance[31] = '\0';
	FAIL_(vmc_lockrec_format(&back, buf), EINVAL);

	/* One spelling only. */
	refused("vmcryptfs-lock 1\n", "vmcryptfs-lock 2\n");
	refused("host hostA", "host host/A");
	refused("host hostA", "host ");
	refused("host hostA", "host  hostA");
	refused("host hostA\n", "");
	refused("hostname esx01\n", "");
	refused("hostname esx01\n", "hostname esx01\nhostname esx02\n");
	refused("instance 634d", "instance 634D");
	refused("instance 634dc000ee1d1dd9daf3113137620911", "instance 634dc000ee1d1dd9daf311313762091");
	refused("pid 563", "pid 0563");
	refused("pid 563", "pid -563");
	refused("pid 563", "pid 563x");
	refused("pid 563", "pid 99999999999999999999999");
	refused("lease-ms 30000", "lease-ms 0");
	refused("beat 17\n", "beat 17");
	refused("beat 17\n", "beat 17\nextra\n");
	refused("\nboot", "\r\nboot");
	refused("esx01", "esx\00101");
	{
		/* A torn record: any prefix short of the last newline is refused. */
		int bad = 0;

		for (size_t n = 0; n < strlen(example); n++) {
			struct vmc_lockrec t;

			if (!vmc_lockrec_parse(&t, (const uint8_t *)example, n, err, sizeof(err)))
				bad++;
		}
		EQ_(bad, 0);
	}
	/* Host ids for -o host_id=. */
	TRUE_(vmc_lockrec_host_ok("esx-01.example_com"));
	TRUE_(!vmc_lockrec_host_ok(""));
	TRUE_(!vmc_lockrec_host_ok("a b"));
	TRUE_(!vmc_lockrec_host_ok("0123456789012345678901234567890123456789012345678901234567890123"));
	return vmc_test_exit("test_lockrec");
}
