/*
 * Error names, version, and the process-wide assert hook.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <kizuna/common.h>

#include "assert.h"

const char *kz_strerror(int code)
{
    switch (code) {
    case KZ_OK:
        return "success";
#define KZ__ERRNO_CASE(name, value, text) \
    case KZ_##name:                       \
        return text;
        KZ_ERRNO_MAP(KZ__ERRNO_CASE)
#undef KZ__ERRNO_CASE
    default:
        return "unknown error";
    }
}

#define KZ__STR2(x) #x
#define KZ__STR(x) KZ__STR2(x)

const char *kz_version(void)
{
    return KZ__STR(KZ_VERSION_MAJOR) "." KZ__STR(KZ_VERSION_MINOR) "." KZ__STR(
        KZ_VERSION_PATCH);
}

uint32_t kz_version_number(void)
{
    return KZ_VERSION_NUMBER;
}

/* Atomic so that a hook installed at start-up is seen by every thread
 * without a data race report; set once, read rarely. */
static _Atomic(kz_assert_fn) kz__assert_hook;

void kz_set_assert_hook(kz_assert_fn hook)
{
    atomic_store(&kz__assert_hook, hook);
}

void kz__assert_fail(const char *expr, const char *file, int line)
{
    kz_assert_fn hook = atomic_load(&kz__assert_hook);
    if (hook)
        hook(expr, file, line);
    fprintf(stderr, "kizuna: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
