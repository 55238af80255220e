/*
 * Per-thread counters: sums across blocks, names, reset, and concurrent
 * writers with a concurrent reader (exact totals once writers finish).
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include <kizuna/counters.h>

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

#define WRITERS 4
#define PER_WRITER 1000000

typedef struct {
    kz_counters *c;
    uint32_t thread;
} writer_arg;

static void *writer(void *p)
{
    writer_arg *a = p;
    kz_counter_block b = kz_counters_block(a->c, a->thread);
    for (int i = 0; i < PER_WRITER; i++) {
        kz_counter_inc(b, C_RX);
        if (i % 10 == 0)
            kz_counter_add(b, C_DROP_SIZE, 2);
    }
    return NULL;
}

Test(counters, concurrent_writers_and_reader_give_exact_totals, .timeout = 120)
{
    kz_counters c;
    cr_assert_eq(kz_counters_init(&c, C_COUNT, WRITERS, names, NULL), KZ_OK);
    pthread_t th[WRITERS];
    writer_arg args[WRITERS];
    for (uint32_t i = 0; i < WRITERS; i++) {
        args[i] = (writer_arg){&c, i};
        cr_assert_eq(pthread_create(&th[i], NULL, writer, &args[i]), 0);
    }
    /* A reader racing the writers sees monotonically growing totals. */
    uint64_t prev = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t now = kz_counters_get(&c, C_RX);
        cr_assert_geq(now, prev);
        prev = now;
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(kz_counters_get(&c, C_RX), (uint64_t)WRITERS * PER_WRITER);
    cr_assert_eq(kz_counters_get(&c, C_DROP_SIZE), (uint64_t)WRITERS * PER_WRITER / 10 * 2);
    kz_counters_fini(&c);
}
