/*
 * UTF-8 validation for text that arrives from the network or from tokens
 * (display names, chat). Strict RFC 3629: no overlong forms, no UTF-16
 * surrogates, nothing above U+10FFFF. Display names have a stricter rule
 * of their own (kz_utf8_name_problem), so that two different names cannot
 * look the same through invisible or direction-changing characters.
 *
 * Pure functions: any thread.
 */
#ifndef KZ_UTF8_H
#define KZ_UTF8_H

#include <kizuna/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when s[0..n) is well-formed UTF-8 (NUL bytes allowed), else 0. */
KZ_API int kz_utf8_valid(const uint8_t *s, size_t n);

/* 1 when s[0..n) is well-formed UTF-8 with no control characters (C0, DEL,
 * C1) and no NUL. (A display name must pass kz_utf8_name_problem too.) */
KZ_API int kz_utf8_printable(const uint8_t *s, size_t n);

/* *cp_out when a refusal is not about one code point. */
#define KZ_UTF8_NO_CODE_POINT 0xffffffffu

/*
 * The display-name rule: NULL when s[0..n) may be shown to other people
 * as a name, else a static sentence naming the first problem, with the
 * offending code point in *cp_out (may be NULL; KZ_UTF8_NO_CODE_POINT for
 * "empty" and "not well-formed UTF-8"). A name is non-empty well-formed
 * UTF-8 without: C0, DEL and C1 controls, U+2028 and U+2029; invisible and
 * text-direction characters (U+00AD, U+034F, U+061C, U+115F-U+1160,
 * U+17B4-U+17B5, U+180B-U+180F, U+200B-U+200F, U+202A-U+202E,
 * U+2060-U+206F, U+2800, U+3164, U+FE00-U+FE0F, U+FEFF, U+FFA0,
 * U+FFF0-U+FFFB, U+1BCA0-U+1BCA3, U+1D173-U+1D17A, U+E0000-U+E0FFF);
 * spaces other than U+0020 (U+00A0, U+1680, U+2000-U+200A, U+202F,
 * U+205F, U+3000); private-use characters (U+E000-U+F8FF, planes 15
 * and 16) and noncharacters (U+FDD0-U+FDEF, U+xxFFFE-U+xxFFFF); a
 * combining mark of the generic blocks (U+0300-U+036F, U+1AB0-U+1AFF,
 * U+1DC0-U+1DFF, U+20D0-U+20FF, U+FE20-U+FE2F) as the first character; a
 * space at either end; two spaces in a row. The length limit is the
 * caller's (tokens: KZ_TOKEN_NAME_MAX bytes). Letters of different
 * scripts that look alike (Latin a, Cyrillic a) and unnormalized forms
 * are not caught: a name alone never identifies anyone.
 */
KZ_API const char *kz_utf8_name_problem(const uint8_t *s, size_t n, uint32_t *cp_out);

#ifdef __cplusplus
}
#endif

#endif /* KZ_UTF8_H */
