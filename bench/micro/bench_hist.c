/*
 * Histogram micro-benchmark: how many samples per second kz_hist_record
 * takes (log-uniform values over 1 us .. 60 s, the default configuration),
 * how many percentile queries per second a filled histogram answers, and
 * how fast two per-thread histograms merge.
 *
 *   kz-bench-hist            (KZ_BENCH_RUNS=n to change the run count)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <kizuna/hist.h>

#include "kzb_util.h"

#define N_VALUES (1u << 20)
#define N_QUERIES 20000u
#define N_MERGES 2000u

static uint64_t rng = 0x2545F4914F6CDD1Du;

static uint64_t rng_next(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * UINT64_C(2685821657736338717);
}

static uint64_t log_uniform(uint64_t hi)
{
    double u = (double)(rng_next() >> 11) / 9007199254740992.0;
    uint64_t v = (uint64_t)exp(u * log((double)hi));
    return v < hi ? v : hi;
}

static void fail(const char *what)
{
    fprintf(stderr, "bench_hist: %s\n", what);
    exit(1);
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "kz_hist (1..60e6, 3 digits)");
    size_t runs = kzb_runs();
    uint64_t *values = malloc(N_VALUES * sizeof *values);
    double *percents = malloc(N_QUERIES * sizeof *percents);
    if (!values || !percents)
        fail("out of memory");
    for (size_t i = 0; i < N_VALUES; i++)
        values[i] = log_uniform(60000000);
    /* Queries mix the body and the tail, as a report does. */
    for (size_t i = 0; i < N_QUERIES; i++) {
        double tail = 100.0 / (double)(1u << (rng_next() % 20));
        percents[i] = 100.0 - tail * (double)(rng_next() % 1000) / 1000.0;
    }

    kz_hist h, other;
    if (kz_hist_init(&h, NULL, NULL) != 0 || kz_hist_init(&other, NULL, NULL) != 0)
        fail("kz_hist_init failed");
    for (size_t i = 0; i < N_VALUES; i++)
        (void)kz_hist_record(&other, values[N_VALUES - 1 - i]);

    double rec[64], pct[64], mrg[64];
    for (size_t r = 0; r < runs; r++) {
        kz_hist_reset(&h);
        uint64_t t0 = kzb_now_ns();
        for (size_t i = 0; i < N_VALUES; i++)
            (void)kz_hist_record(&h, values[i]);
        uint64_t t1 = kzb_now_ns();
        rec[r] = (double)N_VALUES / ((double)(t1 - t0) / 1e9) / 1e6;

        uint64_t sink = 0;
        t0 = kzb_now_ns();
        for (size_t i = 0; i < N_QUERIES; i++)
            sink += kz_hist_percentile(&h, percents[i]);
        t1 = kzb_now_ns();
        kzb_sink(sink);
        pct[r] = (double)N_QUERIES / ((double)(t1 - t0) / 1e9) / 1e3;

        t0 = kzb_now_ns();
        for (size_t i = 0; i < N_MERGES; i++)
            if (kz_hist_merge(&h, &other) != 0)
                fail("merge failed");
        t1 = kzb_now_ns();
        mrg[r] = (double)N_MERGES / ((double)(t1 - t0) / 1e9) / 1e3;
    }
    kzb_sink(kz_hist_total(&h));
    kzb_report("record (log-uniform values)", "M/s", rec, runs);
    kzb_report("percentile query (1M samples)", "k/s", pct, runs);
    kzb_report("merge (same config, full range)", "k/s", mrg, runs);
    printf("footprint: %zu bytes of counts per histogram\n", kz_hist_footprint(NULL));
    kzb_end();
    kz_hist_fini(&h);
    kz_hist_fini(&other);
    free(values);
    free(percents);
    return 0;
}
