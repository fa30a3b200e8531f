/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One logging function for the whole project, with printf checking and
 * syslog(3) levels. The sink is stderr (foreground, tools) or syslog (daemon)
 * and can be switched at any time; logging is safe from any thread because each
 * line is formatted into a local buffer and written with a single write(2).
 * Never pass key material to these functions.
 *
 * Messages are escaped with vmc_log_escape() before they reach either sink,
 * so names (of VMs, files, anything a user chose) cannot forge log lines.
 * On stderr a line reads "IDENT: LEVEL: message"; when stderr is the systemd
 * journal's stream (JOURNAL_STREAM, systemd.exec(5)) it starts with the
 * sd-daemon(3) priority "<N>", N the syslog level, for journalctl -p.
 */
#ifndef VMC_LOG_H
#define VMC_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <syslog.h>

enum vmc_log_sink {
	VMC_LOG_STDERR,
	VMC_LOG_SYSLOG,
};

void vmc_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vmc_vlog(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void vmc_log_set_sink(enum vmc_log_sink sink);
void vmc_log_set_level(int level);
int vmc_log_get_level(void);
void vmc_log_set_ident(const char *ident);
/* Parse "error", "warning", "notice", "info", "debug"; -1 if unknown. */
int vmc_log_level_from_name(const char *name);
/*
 * Copy the @inlen bytes at @in to @out (always NUL-terminated, truncated to
 * whole characters to fit @outlen) with "\xHH" for each byte of a control
 * character (C0, DEL, C1) and for each byte that is not part of well-formed
 * UTF-8: text safe for a log line or a terminal. Returns the length written.
 */
size_t vmc_log_escape(char *out, size_t outlen, const char *in, size_t inlen);

#define vmc_err(...) vmc_log(LOG_ERR, __VA_ARGS__)
#define vmc_warn(...) vmc_log(LOG_WARNING, __VA_ARGS__)
#define vmc_notice(...) vmc_log(LOG_NOTICE, __VA_ARGS__)
#define vmc_info(...) vmc_log(LOG_INFO, __VA_ARGS__)
#define vmc_dbg(...)                                           \
	do {                                                   \
		if (vmc_log_get_level() >= LOG_DEBUG)          \
			vmc_log(LOG_DEBUG, __VA_ARGS__);       \
	} while (0)

#endif
