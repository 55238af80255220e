/*
 * Counters and logging on the hot path. Per-thread counter blocks against
 * one shared atomic counter, with two threads counting at once (the case
 * the per-thread design exists for), and the cost of a log line whose level
 * is disabled (what every debug line on a packet path costs in production).
 *
 *   kz-bench-counters      KZ_BENCH_RUNS=N sets the runs (default 7)
 */
#include <pthread.h>
#include <stdatomic.h>

#include <kizuna/counters.h>
#include <kizuna/log.h>

#include "kzb_util.h"

#define INCS 50000000u
#define THREADS 2

static kz_counters set;
static _Atomic uint64_t shared_counter;

static void *count_block(void *p)
{
    kz_counter_block b = kz_counters_block(&set, (uint32_t)(uintptr_t)p);
    for (uint32_t i = 0; i < INCS; i++)
        kz_counter_inc(b, i & 3);
    return NULL;
}

static void *count_shared(void *p)
{
    (void)p;
    for (uint32_t i = 0; i < INCS; i++)
        atomic_fetch_add_explicit(&shared_counter, 1, memory_order_relaxed);
    return NULL;
}

static double run_threads(void *(*fn)(void *))
{
    pthread_t th[THREADS];
    uint64_t t0 = kzb_now_ns();
    for (uintptr_t i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, fn, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    return (double)(kzb_now_ns() - t0) / INCS; /* ns per increment per thread */
}

static double disabled_log(void)
{
    kz_log log = {0}; /* warnings and errors only */
    uint64_t t0 = kzb_now_ns();
    for (uint32_t i = 0; i < INCS; i++)
        kz_logf(&log, KZ_LOG_DEBUG, "gate", "drop reason=%s seq=%u", "replay", i);
    return (double)(kzb_now_ns() - t0) / INCS;
}

static void null_sink(void *ctx, int32_t level, const char *module, const char *msg)
{
    kzb_sink((uint64_t)(uintptr_t)msg + (uint64_t)level + (uint64_t)(uintptr_t)module +
             (uint64_t)(uintptr_t)ctx);
}

static double enabled_log(void)
{
    kz_log log = {null_sink, NULL, KZ_LOG_DEBUG};
    uint32_t n = INCS / 20;
    uint64_t t0 = kzb_now_ns();
    for (uint32_t i = 0; i < n; i++)
        kz_logf(&log, KZ_LOG_DEBUG, "gate", "drop reason=%s seq=%u", "replay", i);
    return (double)(kzb_now_ns() - t0) / n;
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "counters and log on the hot path");
    if (kz_counters_init(&set, 4, THREADS, NULL, NULL) != KZ_OK)
        return 1;
    size_t runs = kzb_runs();
    double v[64];
    for (size_t i = 0; i < runs; i++)
        v[i] = run_threads(count_block);
    kzb_report("per-thread block inc, 2 threads", "ns/inc", v, runs);
    for (size_t i = 0; i < runs; i++)
        v[i] = run_threads(count_shared);
    kzb_report("shared atomic fetch_add, 2 threads", "ns/inc", v, runs);
    for (size_t i = 0; i < runs; i++)
        v[i] = disabled_log();
    kzb_report("kz_logf, level disabled", "ns/call", v, runs);
    for (size_t i = 0; i < runs; i++)
        v[i] = enabled_log();
    kzb_report("kz_logf, enabled, null sink", "ns/call", v, runs);
    kz_counters_fini(&set);
    kzb_end();
    return 0;
}
