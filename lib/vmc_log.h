/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One logging function for the whole project, with printf checking and
 * syslog(3) levels. The sink is stderr (foreground, tools) or syslog (daemon)
 * and can be switched at any time; logging is safe from any thread because each
 * line is formatted into a local buffer and written with a single write(2).
 * Never pass key material to these functions.
 */
#ifndef VMC_LOG_H
#define VMC_LOG_H

#include <stdarg.h>
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
