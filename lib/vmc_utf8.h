/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * UTF-8 well-formedness (RFC 3629; the Unicode Standard, table 3-7): no
 * overlong forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
 * File names are bytes; JSON (RFC 8259 section 8.1) and the log need to know
 * which of those bytes form text. Header-only: the log, the control protocol
 * and the tools all use it.
 */
#ifndef VMC_UTF8_H
#define VMC_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The length (1..4) of the well-formed UTF-8 sequence at the start of @s (of
 * @n bytes, n > 0), or 0 if the first byte does not begin one.
 */
static inline size_t vmc_utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		if (s[0] == 0xe0)
			lo = 0xa0; /* overlong */
		else if (s[0] == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		if (s[0] == 0xf0)
			lo = 0x90; /* overlong */
		else if (s[0] == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return 0; /* a continuation byte, C0, C1 or F5..FF */
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* Are the @n bytes at @s well-formed UTF-8? */
static inline bool vmc_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;

	while (n) {
		size_t l = vmc_utf8_seq(p, n);

		if (!l)
			return false;
		p += l;
		n -= l;
	}
	return true;
}

#endif
