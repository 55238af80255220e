/*
 * Cost of the time primitives: reading the system clock through the
 * injectable kz_clock, and asking the tick scheduler what is due.
 *
 *   kz-bench-ticker        KZ_BENCH_RUNS=N sets the runs (default 7)
 */
#include <kizuna/clock.h>

#include "kzb_util.h"

#define CALLS 20000000u

static double clock_reads(void)
{
    kz_clock c = kz_clock_system();
    uint64_t t0 = kzb_now_ns(), acc = 0;
    for (uint32_t i = 0; i < CALLS / 4; i++)
        acc += kz_clock_now(&c);
    uint64_t t1 = kzb_now_ns();
    kzb_sink(acc);
    return (double)(t1 - t0) / (CALLS / 4);
}

static double ticker_due(void)
{
    kz_ticker t;
    if (kz_ticker_init(&t, 60, 4, 0) != KZ_OK)
        return 0;
    uint64_t t0 = kzb_now_ns(), ticks = 0;
    /* 1 ms frames: most calls find nothing due, every ~17th finds one. */
    for (uint32_t i = 0; i < CALLS; i++)
        ticks += kz_ticker_due(&t, (kz_time_ns)i * KZ_NS_PER_MS);
    uint64_t t1 = kzb_now_ns();
    kzb_sink(ticks);
    return (double)(t1 - t0) / CALLS;
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "clock and tick scheduler");
    size_t runs = kzb_runs();
    double v[64];
    for (size_t i = 0; i < runs; i++)
        v[i] = clock_reads();
    kzb_report("kz_clock_now (system)", "ns/call", v, runs);
    for (size_t i = 0; i < runs; i++)
        v[i] = ticker_due();
    kzb_report("kz_ticker_due", "ns/call", v, runs);
    kzb_end();
    return 0;
}
