/*
 * SPSC and MPSC rings: single-thread semantics, wrap-around, batches, and
 * multi-thread stress that checks order, loss and duplication.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <kizuna/mpsc.h>
#include <kizuna/ring.h>

#include "threads/stress.h"

/* ---- SPSC, one thread -------------------------------------------------- */

Test(spsc, fills_to_exact_capacity_then_refuses)
{
    kz_spsc r;
    cr_assert_eq(kz_spsc_init(&r, 8, sizeof(uint32_t), NULL), KZ_OK);
    for (uint32_t i = 0; i < 8; i++)
        cr_assert_eq(kz_spsc_push(&r, &i), KZ_OK, "push %u", i);
    uint32_t extra = 99;
    cr_assert_eq(kz_spsc_push(&r, &extra), KZ_EFULL);
    cr_assert_eq(kz_spsc_size(&r), 8);
    for (uint32_t i = 0; i < 8; i++) {
        uint32_t v = 0;
        cr_assert_eq(kz_spsc_pop(&r, &v), KZ_OK);
        cr_assert_eq(v, i);
    }
    uint32_t v = 1234;
    cr_assert_eq(kz_spsc_pop(&r, &v), KZ_EEMPTY);
    cr_assert_eq(v, 1234, "a failed pop must leave the output untouched");
    kz_spsc_fini(&r);
}

Test(spsc, wraps_around_many_laps_with_odd_batches)
{
    kz_spsc r;
    cr_assert_eq(kz_spsc_init(&r, 16, sizeof(uint64_t), NULL), KZ_OK);
    uint64_t next_in = 0, next_out = 0, buf[16];
    /* Batch sizes that do not divide the capacity, so copies straddle the
     * end of the buffer in every position. */
    for (int round = 0; round < 5000; round++) {
        uint32_t want = (uint32_t)(round % 7) + 1;
        for (uint32_t i = 0; i < want; i++)
            buf[i] = next_in + i;
        uint32_t pushed = kz_spsc_push_n(&r, buf, want);
        next_in += pushed;
        uint32_t got = kz_spsc_pop_n(&r, buf, (uint32_t)(round % 5) + 1);
        for (uint32_t i = 0; i < got; i++)
            cr_assert_eq(buf[i], next_out + i, "round %d item %u", round, i);
        next_out += got;
        cr_assert_eq(kz_spsc_size(&r), next_in - next_out);
    }
    cr_assert_gt(next_out, 16 * 100, "the test must wrap many times");
    kz_spsc_fini(&r);
}

Test(spsc, batch_push_is_partial_when_nearly_full)
{
    kz_spsc r;
    cr_assert_eq(kz_spsc_init(&r, 4, sizeof(uint16_t), NULL), KZ_OK);
    uint16_t in[6] = {1, 2, 3, 4, 5, 6}, out[6] = {0};
    cr_assert_eq(kz_spsc_push_n(&r, in, 6), 4);
    cr_assert_eq(kz_spsc_push_n(&r, in, 1), 0);
    cr_assert_eq(kz_spsc_pop_n(&r, out, 6), 4);
    cr_assert_arr_eq(out, in, 4 * sizeof(uint16_t));
    cr_assert_eq(kz_spsc_pop_n(&r, out, 6), 0);
    kz_spsc_fini(&r);
}

Test(spsc, init_reports_out_of_memory_and_frees_what_it_took)
{
    kz_counting_alloc ca;
    kz_counting_alloc_init(&ca, NULL);
    kz_allocator a = kz_counting_alloc_allocator(&ca);
    kz_spsc r;
    ca.fail_after = 0;
    cr_assert_eq(kz_spsc_init(&r, 64, 8, &a), KZ_ENOMEM);
    ca.fail_after = -1;
    cr_assert_eq(kz_spsc_init(&r, 64, 8, &a), KZ_OK);
    cr_assert_eq(ca.allocs, 1);
    kz_spsc_fini(&r);
    cr_assert_eq(ca.frees, 1);
    cr_assert_eq(ca.live_bytes, 0);
}

/* ---- SPSC, two threads ------------------------------------------------- */

Test(spsc, two_threads_ten_million_items_in_order_none_lost_or_duplicated, .timeout = 300)
{
    kzt_result r = kzt_spsc_stress(10000000ull);
    cr_assert_eq(r.violations, 0, "%llu violations, first: %s",
                 (unsigned long long)r.violations, r.first);
    cr_assert_eq(r.delivered, 10000000ull);
}

/* ---- MPSC -------------------------------------------------------------- */

Test(mpsc, single_thread_fifo_full_and_empty)
{
    kz_mpsc q;
    cr_assert_eq(kz_mpsc_init(&q, 4, 3, NULL), KZ_OK); /* odd element size */
    uint8_t e[3];
    for (uint8_t i = 0; i < 4; i++) {
        memset(e, i, sizeof e);
        cr_assert_eq(kz_mpsc_push(&q, e), KZ_OK);
    }
    cr_assert_eq(kz_mpsc_push(&q, e), KZ_EFULL);
    cr_assert_eq(kz_mpsc_size(&q), 4);
    for (uint8_t lap = 0; lap < 10; lap++) {
        for (uint8_t i = 0; i < 4; i++) {
            cr_assert_eq(kz_mpsc_pop(&q, e), KZ_OK);
            cr_assert(e[0] == e[2] && e[0] == (uint8_t)(lap * 4 + i));
            memset(e, (uint8_t)((lap + 1) * 4 + i), sizeof e);
            cr_assert_eq(kz_mpsc_push(&q, e), KZ_OK);
        }
    }
    uint8_t batch[4][3];
    cr_assert_eq(kz_mpsc_pop_n(&q, batch, 8), 4);
    cr_assert_eq(kz_mpsc_pop(&q, e), KZ_EEMPTY);
    kz_mpsc_fini(&q);
}

Test(mpsc, four_producers_keep_their_order_and_lose_nothing, .timeout = 300)
{
    kzt_result r = kzt_mpsc_stress(4, 2500000ull);
    cr_assert_eq(r.violations, 0, "%llu violations, first: %s",
                 (unsigned long long)r.violations, r.first);
    cr_assert_eq(r.delivered, 10000000ull);
}
