/*
 * Shared definitions of every Kizuna public header: the export macro, the
 * must-check attribute, the error codes and the version.
 *
 * Conventions (see docs/API.md): a function returns 0 on success and a
 * negative KZ_E* code on failure; kz_strerror() names a code. A call that
 * fails fires no callback and leaves its outputs untouched unless its
 * comment says otherwise. Nothing here keeps mutable global state except the
 * assert hook, which a program sets once before it starts any thread.
 */
#ifndef KZ_COMMON_H
#define KZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define KZ_API __attribute__((visibility("default")))
#  define KZ_MUST_CHECK __attribute__((warn_unused_result))
#  define KZ_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#  define KZ_API
#  define KZ_MUST_CHECK
#  define KZ_PRINTF(fmt, args)
#endif

#define KZ_VERSION_MAJOR 0
#define KZ_VERSION_MINOR 2
#define KZ_VERSION_PATCH 0
/* Encoded as major * 10000 + minor * 100 + patch. */
#define KZ_VERSION_NUMBER \
    (KZ_VERSION_MAJOR * 10000 + KZ_VERSION_MINOR * 100 + KZ_VERSION_PATCH)

/*
 * Error codes. Values are part of the ABI: append, never renumber.
 * X-macro so the enum and kz_strerror() cannot drift apart.
 */
#define KZ_ERRNO_MAP(X)                                                      \
    X(EINVAL,     -1, "invalid argument")                                    \
    X(ENOMEM,     -2, "out of memory")                                       \
    X(EFULL,      -3, "no room left (ring, table or buffer full)")           \
    X(EEMPTY,     -4, "nothing to take")                                     \
    X(EOVERFLOW,  -5, "read or write past the end of a buffer")              \
    X(ERANGE,     -6, "value outside the representable range")              \
    X(ENOTFINITE, -7, "value is NaN or infinite")                            \
    X(EPROTO,     -8, "malformed message")                                   \
    X(EAUTH,      -9, "authentication failed")                               \
    X(EEXPIRED,  -10, "expired")                                             \
    X(EREPLAY,   -11, "replayed or too old")                                 \
    X(EDENIED,   -12, "not permitted")                                       \
    X(EIO,       -13, "input/output error")                                  \
    X(EAGAIN,    -14, "try again later")                                     \
    X(ESTATE,    -15, "not allowed in the current state")

enum {
    KZ_OK = 0,
#define KZ__ERRNO_ENUM(name, value, text) KZ_##name = (value),
    KZ_ERRNO_MAP(KZ__ERRNO_ENUM)
#undef KZ__ERRNO_ENUM
};

/* A static string naming `code`; never NULL, "unknown error" for others. */
KZ_API const char *kz_strerror(int code);

/* The library's version as "major.minor.patch"; static storage. */
KZ_API const char *kz_version(void);

/* KZ_VERSION_NUMBER of the library actually linked (may differ from the
 * header's when a shared library was upgraded). */
KZ_API uint32_t kz_version_number(void);

/*
 * Assert hook for caller misuse (a NULL where an object is required, a
 * capacity that is not a power of two, ...). The default prints the failed
 * expression to stderr and aborts. An engine may install its own, e.g. to
 * route the message to its crash reporter; the hook must not return.
 * Set it once at start-up, before any other thread calls into Kizuna.
 * Bytes from the network never reach an assert: they are checked at run time.
 */
typedef void (*kz_assert_fn)(const char *expr, const char *file, int line);
KZ_API void kz_set_assert_hook(kz_assert_fn hook);

#ifdef __cplusplus
}
#endif

#endif /* KZ_COMMON_H */
