/*
 * UTF-8 validation for text that arrives from the network or from tokens
 * (display names, chat). Strict RFC 3629: no overlong forms, no UTF-16
 * surrogates, nothing above U+10FFFF.
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
 * C1) and no NUL: what a name shown to other people may contain. */
KZ_API int kz_utf8_printable(const uint8_t *s, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* KZ_UTF8_H */
