/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Check macros for the C unit tests, in the spirit of cryptsetup's
 * tests/api_test.h. Each macro evaluates its arguments once, prints the
 * expression text, file and line when the check fails, counts the failure and
 * carries on, so one run reports every broken check. A test program ends with
 * "return vmc_test_exit("test_name");": 0 when all checks passed, 1 otherwise;
 * 77 (via SKIP_) tells ctest the test could not run here.
 *
 * Header-only: every helper is static, so each test program gets its own
 * counters. Not thread-safe on purpose: threads in a test collect their own
 * results and the main thread checks them.
 */
#ifndef VMC_TEST_H
#define VMC_TEST_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VMC_TEST_SKIP 77

static int vmc_test_checks __attribute__((unused));
static int vmc_test_failures __attribute__((unused));

static inline void vmc_test_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static inline void vmc_test_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	vmc_test_failures++;
}

#define VMC_T_FAIL(...) vmc_test_fail(__FILE__, __LINE__, __VA_ARGS__)

/* expr == 0 (the library's success value). */
#define OK_(expr)                                                                     \
	do {                                                                          \
		long long _r = (long long)(expr);                                     \
		vmc_test_checks++;                                                    \
		if (_r != 0)                                                          \
			VMC_T_FAIL("%s: expected 0, got %lld (%s)", #expr, _r,        \
				   _r < 0 ? strerror((int)-_r) : "positive");          \
	} while (0)

/* expr == -expected_errno; expected_errno is given positive (EINVAL). */
#define FAIL_(expr, expected_errno)                                                   \
	do {                                                                          \
		long long _r = (long long)(expr), _e = -(long long)(expected_errno);  \
		vmc_test_checks++;                                                    \
		if (_r != _e)                                                         \
			VMC_T_FAIL("%s: expected -%s (%s), got %lld (%s)", #expr,     \
				   #expected_errno, strerror((int)-_e), _r,           \
				   _r < 0 ? strerror((int)-_r) : "no error");          \
	} while (0)

#define EQ_(a, b)                                                                     \
	do {                                                                          \
		unsigned long long _a = (unsigned long long)(a);                      \
		unsigned long long _b = (unsigned long long)(b);                      \
		vmc_test_checks++;                                                    \
		if (_a != _b)                                                         \
			VMC_T_FAIL("%s == %s: %llu (0x%llx) != %llu (0x%llx)", #a,    \
				   #b, _a, _a, _b, _b);                               \
	} while (0)

#define NOTEQ_(a, b)                                                                  \
	do {                                                                          \
		unsigned long long _a = (unsigned long long)(a);                      \
		unsigned long long _b = (unsigned long long)(b);                      \
		vmc_test_checks++;                                                    \
		if (_a == _b)                                                         \
			VMC_T_FAIL("%s != %s: both are %llu (0x%llx)", #a, #b, _a,    \
				   _a);                                               \
	} while (0)

#define TRUE_(x)                                                                      \
	do {                                                                          \
		vmc_test_checks++;                                                    \
		if (!(x))                                                             \
			VMC_T_FAIL("%s is false", #x);                                \
	} while (0)

/* Byte strings: on a mismatch, report the first differing offset. */
#define MEMEQ_(a, b, len)                                                             \
	do {                                                                          \
		const uint8_t *_x = (const uint8_t *)(a), *_y = (const uint8_t *)(b); \
		size_t _n = (len), _i;                                                \
		vmc_test_checks++;                                                    \
		for (_i = 0; _i < _n && _x[_i] == _y[_i]; _i++)                       \
			;                                                             \
		if (_i < _n)                                                          \
			VMC_T_FAIL("%s == %s (%zu bytes): first difference at %zu: "  \
				   "%02x != %02x", #a, #b, _n, _i, _x[_i], _y[_i]);    \
	} while (0)

#define MEMNE_(a, b, len)                                                             \
	do {                                                                          \
		vmc_test_checks++;                                                    \
		if (!memcmp((a), (b), (len)))                                         \
			VMC_T_FAIL("%s != %s (%zu bytes): they are equal", #a, #b,    \
				   (size_t)(len));                                    \
	} while (0)

#define STREQ_(a, b)                                                                  \
	do {                                                                          \
		const char *_x = (a), *_y = (b);                                      \
		vmc_test_checks++;                                                    \
		if (!_x || !_y || strcmp(_x, _y))                                     \
			VMC_T_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b,              \
				   _x ? _x : "(null)", _y ? _y : "(null)");           \
	} while (0)

/* Substring: error messages must name what they are about. */
#define CONTAINS_(haystack, needle)                                                   \
	do {                                                                          \
		const char *_h = (haystack), *_s = (needle);                          \
		vmc_test_checks++;                                                    \
		if (!_h || !strstr(_h, _s))                                           \
			VMC_T_FAIL("%s contains \"%s\": it is \"%s\"", #haystack, _s, \
				   _h ? _h : "(null)");                               \
	} while (0)

#define SKIP_(...)                                                                    \
	do {                                                                          \
		fprintf(stderr, "SKIP: " __VA_ARGS__);                                \
		fputc('\n', stderr);                                                  \
		exit(VMC_TEST_SKIP);                                                  \
	} while (0)

/* Setup that must work for the test to mean anything. */
#define REQUIRE_(x)                                                                   \
	do {                                                                          \
		if (!(x)) {                                                           \
			fprintf(stderr, "FATAL %s:%d: %s is false\n", __FILE__,       \
				__LINE__, #x);                                        \
			exit(1);                                                      \
		}                                                                     \
	} while (0)

static inline int vmc_test_exit(const char *name)
{
	fprintf(stderr, "%s: %d checks, %d failed\n", name, vmc_test_checks,
		vmc_test_failures);
	return vmc_test_failures ? 1 : 0;
}

/* Decode hex (whitespace ignored) into out; returns the byte count or exits. */
static inline size_t vmc_test_unhex(const char *hex, uint8_t *out, size_t max)
{
	size_t n = 0;
	int hi = -1;

	for (; *hex; hex++) {
		int v;

		if (*hex == ' ' || *hex == '\n' || *hex == '\t')
			continue;
		if (*hex >= '0' && *hex <= '9')
			v = *hex - '0';
		else if (*hex >= 'a' && *hex <= 'f')
			v = *hex - 'a' + 10;
		else if (*hex >= 'A' && *hex <= 'F')
			v = *hex - 'A' + 10;
		else
			REQUIRE_(!"hex digit");
		if (hi < 0) {
			hi = v;
			continue;
		}
		REQUIRE_(n < max);
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	REQUIRE_(hi < 0);
	return n;
}

static inline void vmc_test_hex(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

#endif
