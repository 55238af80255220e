/*
 * SPSC and MPSC rings: single-thread semantics, wrap-around, batches, and
 * multi-thread stress that checks order, loss and duplication.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include <kizuna/mpsc.h>
#include <kizuna/ring.h>

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

#define STRESS_ITEMS 10000000ull

typedef struct {
    uint64_t seq;
    uint64_t check; /* function of seq: catches torn or stale element bytes */
    uint64_t pad;
} stress_item;

static uint64_t check_of(uint64_t seq)
{
    return seq * 0x9e3779b97f4a7c15ull ^ 0xdeadbeefcafef00dull;
}

static void *spsc_producer(void *arg)
{
    kz_spsc *r = arg;
    stress_item batch[37];
    uint64_t seq = 0;
    while (seq < STRESS_ITEMS) {
        /* Alternate single pushes and batches of varying size. */
        uint32_t want = (uint32_t)(seq % 3 == 0 ? 1 : 1 + seq % 37);
        if (want > STRESS_ITEMS - seq)
            want = (uint32_t)(STRESS_ITEMS - seq);
        for (uint32_t i = 0; i < want; i++)
            batch[i] = (stress_item){seq + i, check_of(seq + i), 0};
        uint32_t done = 0;
        while (done < want)
            done += kz_spsc_push_n(r, batch + done, want - done);
        seq += want;
    }
    return NULL;
}

Test(spsc, two_threads_ten_million_items_in_order_none_lost_or_duplicated, .timeout = 300)
{
    kz_spsc r;
    cr_assert_eq(kz_spsc_init(&r, 1024, sizeof(stress_item), NULL), KZ_OK);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, spsc_producer, &r), 0);
    uint64_t expect = 0, bad = 0;
    stress_item out[64];
    while (expect < STRESS_ITEMS) {
        uint32_t got = kz_spsc_pop_n(&r, out, (uint32_t)(expect % 64) + 1);
        for (uint32_t i = 0; i < got; i++) {
            bad += out[i].seq != expect || out[i].check != check_of(expect);
            expect++;
        }
    }
    pthread_join(th, NULL);
    stress_item extra;
    cr_assert_eq(kz_spsc_pop(&r, &extra), KZ_EEMPTY, "no duplicate after the last item");
    cr_assert_eq(bad, 0, "%llu items out of order or corrupted", (unsigned long long)bad);
    cr_assert_eq(expect, STRESS_ITEMS);
    kz_spsc_fini(&r);
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

#define MPSC_PRODUCERS 4
#define MPSC_PER_PRODUCER 2500000ull

typedef struct {
    kz_mpsc *q;
    uint32_t id;
    uint64_t full_retries;
} mpsc_producer_arg;

typedef struct {
    uint32_t producer;
    uint32_t pad;
    uint64_t seq;
} mpsc_item;

static void *mpsc_producer(void *p)
{
    mpsc_producer_arg *a = p;
    for (uint64_t s = 0; s < MPSC_PER_PRODUCER; s++) {
        mpsc_item it = {a->id, 0, s};
        while (kz_mpsc_push(a->q, &it) == KZ_EFULL)
            a->full_retries++;
    }
    return NULL;
}

Test(mpsc, four_producers_keep_their_order_and_lose_nothing, .timeout = 300)
{
    kz_mpsc q;
    cr_assert_eq(kz_mpsc_init(&q, 4096, sizeof(mpsc_item), NULL), KZ_OK);
    pthread_t th[MPSC_PRODUCERS];
    mpsc_producer_arg args[MPSC_PRODUCERS];
    for (uint32_t i = 0; i < MPSC_PRODUCERS; i++) {
        args[i] = (mpsc_producer_arg){&q, i, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, mpsc_producer, &args[i]), 0);
    }
    uint64_t next[MPSC_PRODUCERS] = {0}, total = 0, bad = 0;
    mpsc_item batch[128];
    while (total < MPSC_PRODUCERS * MPSC_PER_PRODUCER) {
        uint32_t got = kz_mpsc_pop_n(&q, batch, 128);
        for (uint32_t i = 0; i < got; i++) {
            uint32_t p = batch[i].producer;
            if (p >= MPSC_PRODUCERS || batch[i].seq != next[p]) {
                bad++;
                continue;
            }
            next[p]++;
        }
        total += got;
    }
    for (uint32_t i = 0; i < MPSC_PRODUCERS; i++)
        pthread_join(th[i], NULL);
    mpsc_item extra;
    cr_assert_eq(kz_mpsc_pop(&q, &extra), KZ_EEMPTY, "no duplicate after the last item");
    cr_assert_eq(bad, 0, "%llu items out of per-producer order", (unsigned long long)bad);
    for (uint32_t i = 0; i < MPSC_PRODUCERS; i++)
        cr_assert_eq(next[i], MPSC_PER_PRODUCER, "producer %u", i);
    kz_mpsc_fini(&q);
}
