// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Logging sink. See vmc_log.h. Lines go to stderr as "IDENT: LEVEL: message"
 * or to syslog with the matching priority.
 */
#include "vmc_log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

static _Atomic int vmc_log_sink_cur = VMC_LOG_STDERR;
static _Atomic int vmc_log_level_cur = LOG_NOTICE;
static const char *vmc_log_ident = "vmcryptfs";

static const char *const vmc_level_names[] = {
	[LOG_EMERG] = "emergency", [LOG_ALERT] = "alert", [LOG_CRIT] = "critical",
	[LOG_ERR] = "error",	   [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",	   [LOG_DEBUG] = "debug",
};

void vmc_log_set_sink(enum vmc_log_sink sink)
{
	if (sink == VMC_LOG_SYSLOG)
		openlog(vmc_log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	vmc_log_sink_cur = sink;
}

void vmc_log_set_level(int level)
{
	vmc_log_level_cur = level;
}

int vmc_log_get_level(void)
{
	return vmc_log_level_cur;
}

void vmc_log_set_ident(const char *ident)
{
	vmc_log_ident = ident;
}

int vmc_log_level_from_name(const char *name)
{
	for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
		if (!strcmp(name, vmc_level_names[i]))
			return i;
	if (!strcmp(name, "err"))
		return LOG_ERR;
	if (!strcmp(name, "warn"))
		return LOG_WARNING;
	return -1;
}

void vmc_vlog(int level, const char *fmt, va_list ap)
{
	char line[2048];
	int saved = errno;
	int n;

	if (level > vmc_log_level_cur)
		return;
	if (level < LOG_EMERG || level > LOG_DEBUG)
		level = LOG_ERR;
	if (vmc_log_sink_cur == VMC_LOG_SYSLOG) {
		errno = saved; /* for %m */
		vsyslog(level, fmt, ap);
		errno = saved;
		return;
	}
	n = snprintf(line, sizeof(line), "%s: %s: ", vmc_log_ident, vmc_level_names[level]);
	errno = saved;
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	while (n > 0 && line[n - 1] == '\n')
		n--;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
	errno = saved;
}

void vmc_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmc_vlog(level, fmt, ap);
	va_end(ap);
}
