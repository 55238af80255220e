/*
 * Impairment simulator throughput: datagrams per second through
 * send + poll in a steady state, for the perfect path (no heap depth) and
 * for the "mobile" and "bad" profiles (60 and 200 ms of delay: a few
 * hundred copies held, so every send and poll walks a deep heap). 200-byte
 * datagrams, one send every 100 us of simulated time, simulated time only.
 *
 *   kz-bench-impair [datagrams_per_run]   (default 2,000,000)
 *   KZ_BENCH_RUNS=N sets the number of runs (default 7); medians printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/impair.h>

#include "kzb_util.h"

static void fail(const char *what)
{
    fprintf(stderr, "bench_impair: %s\n", what);
    exit(1);
}

/* One run; returns millions of datagrams per second. */
static double run(const char *profile, uint64_t n, uint64_t seed)
{
    kz_impair_config cfg;
    if (kz_impair_profile(profile, &cfg) != KZ_OK)
        fail("bad profile");
    cfg.queue_limit = 8192;
    kz_impair *im = kz_impair_create(&cfg, seed, NULL);
    if (im == NULL)
        fail("create failed");
    uint8_t buf[1500];
    memset(buf, 0x42, sizeof buf);
    uint64_t got = 0;
    uint64_t t0 = kzb_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        kz_time_ns now = i * 100 * KZ_NS_PER_US;
        if (kz_impair_send(im, now, buf, 200, i) != KZ_OK)
            fail("send refused");
        size_t len;
        uint64_t tag;
        while (kz_impair_poll(im, now, buf, sizeof buf, &len, &tag) == KZ_OK)
            got += tag;
    }
    uint64_t t1 = kzb_now_ns();
    kzb_sink(got + kz_impair_pending(im));
    kz_impair_destroy(im);
    return (double)n / ((double)(t1 - t0) / 1e9) / 1e6;
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "kz_impair send + poll, 200-byte datagrams");
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
    if (n == 0)
        fail("datagrams_per_run must be > 0");
    size_t runs = kzb_runs();
    const char *profiles[] = {"none", "mobile", "bad"};
    for (size_t p = 0; p < sizeof profiles / sizeof profiles[0]; p++) {
        double v[64];
        for (size_t r = 0; r < runs; r++)
            v[r] = run(profiles[p], n, r + 1);
        char name[64];
        snprintf(name, sizeof name, "send+poll, profile %s", profiles[p]);
        kzb_report(name, "M datagrams/s", v, runs);
    }
    printf("footprint: %zu bytes per instance with queue_limit 8192\n",
           kz_impair_footprint(&(kz_impair_config){.queue_limit = 8192}));
    kzb_end();
    return 0;
}
