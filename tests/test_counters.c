/*
 * Per-thread counters: sums across blocks, names, reset, and concurrent
 * writers with a concurrent reader (exact totals once writers finish).
 */
#include <criterion/criterion.h>

#include <kizuna/counters.h>

#include "threads/stress.h"

enum { C_RX, C_DROP_SIZE, C_DROP_REPLAY, C_COUNT };
static const char *const names[C_COUNT] = {"rx", "drop_size", "drop_replay"};

Test(counters, sums_blocks_and_names_counters)
{
    kz_counters c;
    cr_assert_eq(kz_counters_init(&c, C_COUNT, 3, names, NULL), KZ_OK);
    kz_counter_add(kz_counters_block(&c, 0), C_RX, 5);
    kz_counter_inc(kz_counters_block(&c, 1), C_RX);
    kz_counter_inc(kz_counters_block(&c, 2), C_DROP_REPLAY);
    cr_assert_eq(kz_counters_get(&c, C_RX), 6);
    cr_assert_eq(kz_counters_get(&c, C_DROP_SIZE), 0);
    uint64_t snap[C_COUNT];
    kz_counters_snapshot(&c, snap);
    cr_assert(snap[0] == 6 && snap[1] == 0 && snap[2] == 1);
    cr_assert_str_eq(kz_counters_name(&c, C_DROP_REPLAY), "drop_replay");
    kz_counters_reset(&c);
    cr_assert_eq(kz_counters_get(&c, C_RX), 0);
    kz_counters_fini(&c);
}

Test(counters, blocks_do_not_share_cache_lines)
{
    kz_counters c;
    cr_assert_eq(kz_counters_init(&c, 3, 2, NULL, NULL), KZ_OK);
    uintptr_t a = (uintptr_t)kz_counters_block(&c, 0).cells;
    uintptr_t b = (uintptr_t)kz_counters_block(&c, 1).cells;
    cr_assert_geq(b - a, 64);
    cr_assert_eq(a % 64, 0);
    cr_assert_eq(b % 64, 0);
    cr_assert_null(kz_counters_name(&c, 0));
    kz_counters_fini(&c);
}

Test(counters, rejects_empty_sets)
{
    kz_counters c;
    cr_assert_eq(kz_counters_init(&c, 0, 1, NULL, NULL), KZ_EINVAL);
    cr_assert_eq(kz_counters_init(&c, 1, 0, NULL, NULL), KZ_EINVAL);
}

Test(counters, concurrent_writers_and_reader_give_exact_totals, .timeout = 120)
{
    kzt_result r = kzt_counters_stress(4, 1000000ull);
    cr_assert_eq(r.violations, 0, "%llu violations, first: %s",
                 (unsigned long long)r.violations, r.first);
    cr_assert_eq(r.delivered, 4000000ull);
}
