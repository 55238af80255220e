/*
 * Ring throughput across two threads: messages per second through the SPSC
 * ring with single and batched push/pop, and through the MPSC ring with one
 * and three producers. Messages are 8 and 32 bytes (an index into a packet
 * pool, and a small inline record).
 *
 *   kz-bench-ring [items_per_run]      (default 20,000,000)
 *   KZ_BENCH_RUNS=N sets the number of runs (default 7); medians printed.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/mpsc.h>
#include <kizuna/ring.h>

#include "kzb_util.h"

#define MAX_BATCH 64
#define MAX_ELEM 32

typedef struct {
    kz_spsc *r;
    kz_mpsc *q;
    uint64_t items;
    uint32_t batch;
    uint32_t elem;
} job;

static void *spsc_produce(void *p)
{
    job *j = p;
    uint8_t buf[MAX_BATCH * MAX_ELEM];
    memset(buf, 7, sizeof buf);
    for (uint64_t sent = 0; sent < j->items;) {
        uint32_t want = j->batch;
        if (want > j->items - sent)
            want = (uint32_t)(j->items - sent);
        if (want == 1)
            sent += kz_spsc_push(j->r, buf) == KZ_OK;
        else
            sent += kz_spsc_push_n(j->r, buf, want);
    }
    return NULL;
}

static double run_spsc(uint64_t items, uint32_t batch, uint32_t elem)
{
    kz_spsc r;
    if (kz_spsc_init(&r, 4096, elem, NULL) != KZ_OK)
        abort();
    job j = {&r, NULL, items, batch, elem};
    uint8_t buf[MAX_BATCH * MAX_ELEM];
    pthread_t th;
    uint64_t t0 = kzb_now_ns();
    pthread_create(&th, NULL, spsc_produce, &j);
    uint64_t got = 0, sum = 0;
    while (got < items) {
        if (batch == 1) {
            if (kz_spsc_pop(&r, buf) == KZ_OK) {
                got++;
                sum += buf[0];
            }
        } else {
            uint32_t n = kz_spsc_pop_n(&r, buf, batch);
            got += n;
            sum += n ? buf[0] : 0;
        }
    }
    pthread_join(th, NULL);
    uint64_t t1 = kzb_now_ns();
    kzb_sink(sum);
    kz_spsc_fini(&r);
    return (double)items / ((double)(t1 - t0) / 1e9) / 1e6;
}

static void *mpsc_produce(void *p)
{
    job *j = p;
    uint8_t buf[MAX_ELEM];
    memset(buf, 3, sizeof buf);
    for (uint64_t sent = 0; sent < j->items;)
        sent += kz_mpsc_push(j->q, buf) == KZ_OK;
    return NULL;
}

static double run_mpsc(uint64_t items, uint32_t producers, uint32_t elem)
{
    kz_mpsc q;
    if (kz_mpsc_init(&q, 4096, elem, NULL) != KZ_OK)
        abort();
    job j = {NULL, &q, items / producers, 1, elem};
    pthread_t th[8];
    uint8_t buf[MAX_BATCH * MAX_ELEM];
    uint64_t t0 = kzb_now_ns();
    for (uint32_t i = 0; i < producers; i++)
        pthread_create(&th[i], NULL, mpsc_produce, &j);
    uint64_t got = 0, total = j.items * producers;
    while (got < total)
        got += kz_mpsc_pop_n(&q, buf, MAX_BATCH);
    for (uint32_t i = 0; i < producers; i++)
        pthread_join(th[i], NULL);
    uint64_t t1 = kzb_now_ns();
    kz_mpsc_fini(&q);
    return (double)total / ((double)(t1 - t0) / 1e9) / 1e6;
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "rings: messages per second across threads");
    uint64_t items = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000000ull;
    size_t runs = kzb_runs();
    double v[64];
    static const struct { uint32_t batch, elem; const char *name; } spsc_cases[] = {
        {1, 8, "spsc single 8 B"},
        {32, 8, "spsc batch 32 x 8 B"},
        {64, 8, "spsc batch 64 x 8 B"},
        {1, 32, "spsc single 32 B"},
        {32, 32, "spsc batch 32 x 32 B"},
    };
    for (size_t c = 0; c < sizeof spsc_cases / sizeof spsc_cases[0]; c++) {
        for (size_t i = 0; i < runs; i++)
            v[i] = run_spsc(items, spsc_cases[c].batch, spsc_cases[c].elem);
        kzb_report(spsc_cases[c].name, "M msg/s", v, runs);
    }
    for (uint32_t p = 1; p <= 3; p += 2) {
        char name[64];
        snprintf(name, sizeof name, "mpsc %u producer%s 16 B", p, p > 1 ? "s" : "");
        for (size_t i = 0; i < runs; i++)
            v[i] = run_mpsc(items / 4, p, 16);
        kzb_report(name, "M msg/s", v, runs);
    }
    kzb_end();
    return 0;
}
