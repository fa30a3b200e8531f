// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * VM lock records (see vmc_lockrec.h and docs/FORMAT.md). The parser takes
 * bytes another host wrote, so it accepts exactly one spelling: the magic
 * line, then the seven fields in order, each "key value\n", then NUL
 * padding to the end of what was read.
 */
#include "vmc_lockrec.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool token_ok(const char *s, size_t max, bool hex_only)
{
	size_t n = strlen(s);

	if (n == 0 || n >= max)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (hex_only ? !isxdigit(c) || isupper(c) :
			       !(isalnum(c) || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

bool vmc_lockrec_host_ok(const char *s)
{
	return token_ok(s, VMC_LOCKREC_HOST_MAX, false);
}

int vmc_lockrec_format(const struct vmc_lockrec *r, uint8_t buf[VMC_LOCKREC_SIZE])
{
	int n;

	if (!vmc_lockrec_host_ok(r->host) || !token_ok(r->hostname, VMC_LOCKREC_NAME_MAX, false) ||
	    strlen(r->instance) != VMC_LOCKREC_INSTANCE_LEN ||
	    !token_ok(r->instance, VMC_LOCKREC_INSTANCE_LEN + 1, true) ||
	    !token_ok(r->boot, VMC_LOCKREC_BOOT_MAX, false))
		return -EINVAL;
	memset(buf, 0, VMC_LOCKREC_SIZE);
	n = snprintf((char *)buf, VMC_LOCKREC_SIZE,
		     VMC_LOCKREC_MAGIC "\nhost %s\nhostname %s\ninstance %s\nboot %s\npid %" PRIu64
				       "\nlease-ms %" PRIu64 "\nbeat %" PRIu64 "\n",
		     r->host, r->hostname, r->instance, r->boot, r->pid, r->lease_ms, r->beat);
	if (n < 0 || n >= VMC_LOCKREC_SIZE)
		return -EINVAL;
	return 0;
}

/* The line at *p (without its '\n') into @line; advances *p. */
static bool next_line(const char **p, const char *end, char *line, size_t len)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t n;

	if (!nl)
		return false;
	n = (size_t)(nl - *p);
	if (n >= len || memchr(*p, '\0', n))
		return false;
	memcpy(line, *p, n);
	line[n] = '\0';
	*p = nl + 1;
	return true;
}

static bool field(const char **p, const char *end, const char *key, char *val, size_t len)
{
	char line[128];
	size_t k = strlen(key);

	if (!next_line(p, end, line, sizeof(line)) || strncmp(line, key, k) || line[k] != ' ')
		return false;
	if (strlen(line + k + 1) >= len)
		return false;
	strcpy(val, line + k + 1);
	return true;
}

static bool number(const char **p, const char *end, const char *key, uint64_t *out)
{
	char val[24], *e;

	if (!field(p, end, key, val, sizeof(val)) || !isdigit((unsigned char)val[0]) ||
	    (val[0] == '0' && val[1]))
		return false;
	errno = 0;
	*out = strtoull(val, &e, 10);
	return !errno && !*e;
}

int vmc_lockrec_parse(struct vmc_lockrec *r, const uint8_t *buf, size_t len, char *err,
		      size_t errlen)
{
	const char *p = (const char *)buf, *end = p + len;
	char magic[32];
	const char *why = NULL;

	memset(r, 0, sizeof(*r));
	if (!next_line(&p, end, magic, sizeof(magic)) || strcmp(magic, VMC_LOCKREC_MAGIC))
		why = "not a vmcryptfs lock record";
	else if (!field(&p, end, "host", r->host, sizeof(r->host)) ||
		 !vmc_lockrec_host_ok(r->host))
		why = "bad host";
	else if (!field(&p, end, "hostname", r->hostname, sizeof(r->hostname)) ||
		 !token_ok(r->hostname, sizeof(r->hostname), false))
		why = "bad hostname";
	else if (!field(&p, end, "instance", r->instance, sizeof(r->instance)) ||
		 strlen(r->instance) != VMC_LOCKREC_INSTANCE_LEN ||
		 !token_ok(r->instance, sizeof(r->instance), true))
		why = "bad instance";
	else if (!field(&p, end, "boot", r->boot, sizeof(r->boot)) ||
		 !token_ok(r->boot, sizeof(r->boot), false))
		why = "bad boot id";
	else if (!number(&p, end, "pid", &r->pid))
		why = "bad pid";
	else if (!number(&p, end, "lease-ms", &r->lease_ms) || !r->lease_ms)
		why = "bad lease";
	else if (!number(&p, end, "beat", &r->beat))
		why = "bad heartbeat";
	for (; !why && p < end; p++)
		if (*p)
			why = "trailing bytes";
	if (why) {
		snprintf(err, errlen, "%s", why);
		return -EUCLEAN;
	}
	return 0;
}
