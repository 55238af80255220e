/*
 * Error names, version, allocator hooks and the counting allocator.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/alloc.h>
#include <kizuna/common.h>

Test(common, every_error_code_has_a_distinct_name)
{
    const char *seen[32] = {0};
    for (int code = -1; code >= KZ_ESTATE; code--) {
        const char *s = kz_strerror(code);
        cr_assert_str_neq(s, "unknown error", "code %d", code);
        for (int j = -1; j > code; j--)
            cr_assert_str_neq(s, seen[-j], "codes %d and %d share a name", code, j);
        seen[-code] = s;
    }
    cr_assert_str_eq(kz_strerror(KZ_OK), "success");
    cr_assert_str_eq(kz_strerror(-1000), "unknown error");
    cr_assert_str_eq(kz_strerror(7), "unknown error");
}

Test(common, version_string_matches_number)
{
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", KZ_VERSION_MAJOR, KZ_VERSION_MINOR,
             KZ_VERSION_PATCH);
    cr_assert_str_eq(kz_version(), expect);
    cr_assert_eq(kz_version_number(), KZ_VERSION_NUMBER);
}

static void test_hook(const char *expr, const char *file, int line)
{
    (void)expr;
    (void)file;
    (void)line;
    exit(0); /* a hook must not return; leaving the process proves it ran */
}

Test(common, assert_hook_runs_on_misuse, .exit_code = 0)
{
    kz_set_assert_hook(test_hook);
    /* Only one hook of the pair set: caller misuse. */
    kz_allocator half = {NULL, NULL, NULL};
    half.free = (void (*)(void *, void *, size_t))1;
    kz_allocator_resolve(&half);
    cr_assert_fail("the assert hook did not stop the call");
}

Test(common, default_assert_aborts, .signal = SIGABRT)
{
    kz_allocator half = {NULL, NULL, (void (*)(void *, void *, size_t))1};
    kz_allocator_resolve(&half);
}

Test(alloc, default_alloc_honours_alignment)
{
    kz_allocator a = {0};
    for (size_t align = 1; align <= 4096; align <<= 1) {
        void *p = kz_alloc(&a, 24, align);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % align, 0, "align %zu", align);
        memset(p, 1, 24);
        kz_free(&a, p, 24);
    }
    cr_assert_null(kz_alloc(&a, 0, 8), "size 0 gives NULL");
    kz_free(&a, NULL, 0); /* ignored */
}

Test(alloc, counting_allocator_counts_and_fails_on_request)
{
    kz_counting_alloc c;
    kz_counting_alloc_init(&c, NULL);
    kz_allocator a = kz_counting_alloc_allocator(&c);
    void *p = kz_calloc(&a, 100, 16);
    void *q = kz_alloc(&a, 50, 8);
    cr_assert(p && q);
    cr_assert_eq(((uint8_t *)p)[99], 0, "calloc zero-fills");
    cr_assert_eq(kz_counting_alloc_allocs(&c), 2);
    cr_assert_eq(kz_counting_alloc_live_bytes(&c), 150);
    kz_free(&a, p, 100);
    cr_assert_eq(c.live_bytes, 50);
    cr_assert_eq(c.peak_bytes, 150);
    c.fail_after = 2;
    cr_assert_null(kz_alloc(&a, 10, 8));
    cr_assert_eq(c.failed, 1);
    kz_free(&a, q, 50);
    cr_assert_eq(c.frees, 2);
    cr_assert_eq(c.live_bytes, 0);
}
