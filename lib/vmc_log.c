// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Logging sink. See vmc_log.h. Lines go to stderr as "IDENT: LEVEL: message"
 * (with the sd-daemon(3) "<N>" priority prefix in front when stderr is the
 * systemd journal's stream) or to syslog with the matching priority.
 *
 * Messages quote names that anyone who can create a directory chooses, so
 * each message is escaped (vmc_log_escape) before it is written: a name can
 * never start a line of its own or send escape sequences to a terminal.
 */
#include "vmc_log.h"
#include "vmc_utf8.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static _Atomic int vmc_log_sink_cur = VMC_LOG_STDERR;
static _Atomic int vmc_log_level_cur = LOG_NOTICE;
/* Is stderr the journal's stream (1), not (0), not checked yet (-1)? */
static _Atomic int vmc_log_journal = -1;
static const char *vmc_log_ident = "vmcryptfs";

static const char *const vmc_level_names[] = {
	[LOG_EMERG] = "emergency", [LOG_ALERT] = "alert", [LOG_CRIT] = "critical",
	[LOG_ERR] = "error",	   [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",	   [LOG_DEBUG] = "debug",
};

/*
 * systemd sets JOURNAL_STREAM=DEV:INO for a service whose stderr it connects
 * to the journal (systemd.exec(5)); stderr is that stream only if fd 2 is
 * still that file (it may have been redirected since).
 */
static int stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	uintmax_t dev, ino;
	struct stat st;
	char tail;

	if (!e || sscanf(e, "%" SCNuMAX ":%" SCNuMAX "%c", &dev, &ino, &tail) != 2 ||
	    fstat(STDERR_FILENO, &st))
		return 0;
	return (uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
}

void vmc_log_set_sink(enum vmc_log_sink sink)
{
	if (sink == VMC_LOG_SYSLOG)
		openlog(vmc_log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	vmc_log_journal = stderr_is_journal();
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

size_t vmc_log_escape(char *out, size_t outlen, const char *in, size_t inlen)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t o = 0, i = 0;

	if (!outlen)
		return 0;
	while (i < inlen) {
		size_t l = vmc_utf8_seq(p + i, inlen - i), esc;

		/* Escaped: C0 controls and DEL; C1 controls (U+0080..U+009F, which a
		 * terminal acts on too: both bytes); bytes that are not UTF-8. */
		esc = p[i] < 0x20 || p[i] == 0x7f || !l ? 1 :
		      l == 2 && p[i] == 0xc2 && p[i + 1] <= 0x9f ? 2 : 0;
		if (!esc) {
			if (o + l >= outlen)
				break;
			memcpy(out + o, p + i, l);
			o += l;
			i += l;
			continue;
		}
		if (o + 4 * esc >= outlen)
			break;
		for (size_t k = 0; k < esc; k++, i++, o += 4)
			snprintf(out + o, 5, "\\x%02x", p[i]);
	}
	out[o] = '\0';
	return o;
}

void vmc_vlog(int level, const char *fmt, va_list ap)
{
	/* Escaping makes a message at most 4 times longer; it is truncated. */
	char msg[2048], line[4096];
	int saved = errno, journal;
	size_t len, n;
	int r;

	if (level > vmc_log_level_cur)
		return;
	if (level < LOG_EMERG || level > LOG_DEBUG)
		level = LOG_ERR;
	errno = saved; /* for %m */
	r = vsnprintf(msg, sizeof(msg), fmt, ap);
	len = r < 0 ? 0 : (size_t)r < sizeof(msg) ? (size_t)r : sizeof(msg) - 1;
	while (len > 0 && msg[len - 1] == '\n')
		len--;
	if (vmc_log_sink_cur == VMC_LOG_SYSLOG) {
		vmc_log_escape(line, sizeof(line), msg, len);
		syslog(level, "%s", line);
		errno = saved;
		return;
	}
	journal = vmc_log_journal;
	if (journal < 0) {
		journal = stderr_is_journal();
		vmc_log_journal = journal;
	}
	/* Under systemd, "<N>" gives the journal the line's priority (sd-daemon(3)). */
	r = journal ? snprintf(line, sizeof(line), "<%d>%s: %s: ", level, vmc_log_ident,
			       vmc_level_names[level]) :
		      snprintf(line, sizeof(line), "%s: %s: ", vmc_log_ident,
			       vmc_level_names[level]);
	n = r < 0 ? 0 : (size_t)r < sizeof(line) / 2 ? (size_t)r : sizeof(line) / 2;
	n += vmc_log_escape(line + n, sizeof(line) - n - 1, msg, len);
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
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
