/*
 * Fixed-capacity map: differential test against a plain array over a long
 * random sequence of puts and deletes (deletion must never hide a key), the
 * capacity bound, and no allocation after init.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "net/fixmap.h"

Test(fixmap, matches_a_reference_under_random_puts_and_deletes)
{
    enum { KEYS = 3000, MAX = 1000, OPS = 300000 };
    kz__fixmap m;
    cr_assert_eq(kz__fixmap_init(&m, MAX, NULL), KZ_OK);
    static uint32_t ref_val[KEYS];
    static uint8_t ref_has[KEYS];
    uint32_t count = 0;
    uint64_t s = 7;
    for (int op = 0; op < OPS; op++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        /* Keys in clusters so probe runs overlap and wrap. */
        uint32_t k = (uint32_t)(s >> 33) % KEYS;
        uint64_t key = (uint64_t)k * 0x100000001ull;
        if ((s >> 20) % 3 == 0) {
            cr_assert_eq(kz__fixmap_del(&m, key), ref_has[k]);
            count -= ref_has[k];
            ref_has[k] = 0;
        } else {
            int rc = kz__fixmap_put(&m, key, (uint32_t)op);
            if (!ref_has[k] && count >= MAX) {
                cr_assert_eq(rc, KZ_EFULL);
            } else {
                cr_assert_eq(rc, KZ_OK);
                count += !ref_has[k];
                ref_has[k] = 1;
                ref_val[k] = (uint32_t)op;
            }
        }
        if (op % 1000 == 0)
            for (uint32_t j = 0; j < KEYS; j++) {
                uint32_t v = 0;
                int has = kz__fixmap_get(&m, (uint64_t)j * 0x100000001ull, &v);
                cr_assert_eq(has, ref_has[j], "op %d key %u", op, j);
                if (has)
                    cr_assert_eq(v, ref_val[j]);
            }
    }
    cr_assert_eq(m.count, count);
    kz__fixmap_fini(&m);
}

Test(fixmap, refuses_past_capacity_and_allocates_only_at_init)
{
    kz_counting_alloc ca;
    kz_counting_alloc_init(&ca, NULL);
    kz_allocator a = kz_counting_alloc_allocator(&ca);
    kz__fixmap m;
    cr_assert_eq(kz__fixmap_init(&m, 100, &a), KZ_OK);
    uint64_t allocs = kz_counting_alloc_allocs(&ca);
    for (uint64_t k = 0; k < 100; k++)
        cr_assert_eq(kz__fixmap_put(&m, k, 1), KZ_OK);
    cr_assert_eq(kz__fixmap_put(&m, 1000, 1), KZ_EFULL);
    cr_assert_eq(kz__fixmap_put(&m, 5, 2), KZ_OK, "replacing needs no room");
    cr_assert_eq(kz_counting_alloc_allocs(&ca), allocs);
    kz__fixmap_fini(&m);
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0);
    cr_assert_eq(kz__fixmap_init(&m, 0, &a), KZ_EINVAL);
}
