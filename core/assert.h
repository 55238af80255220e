/*
 * Internal assertion macro. KZ_ASSERT guards against caller misuse only;
 * it stays on in release builds because a broken contract in a network
 * engine is better stopped than exploited.
 */
#ifndef KZ_CORE_ASSERT_H
#define KZ_CORE_ASSERT_H

#include <kizuna/common.h>

#if defined(__GNUC__) || defined(__clang__)
#  define KZ_NORETURN __attribute__((noreturn))
#  define KZ_LIKELY(x) __builtin_expect(!!(x), 1)
#  define KZ_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#  define KZ_NORETURN
#  define KZ_LIKELY(x) (x)
#  define KZ_UNLIKELY(x) (x)
#endif

KZ_NORETURN void kz__assert_fail(const char *expr, const char *file, int line);

#define KZ_ASSERT(expr) \
    (KZ_LIKELY(expr) ? (void)0 : kz__assert_fail(#expr, __FILE__, __LINE__))

#endif /* KZ_CORE_ASSERT_H */
