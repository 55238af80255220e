/*
 * Allocator hooks: the cost of going through kz_alloc/kz_free with the
 * default allocator, and the counting allocator's overhead on top of it.
 * (The program links jemalloc, as the server and bench do, so the default
 * allocator here is jemalloc's malloc.)
 *
 *   kz-bench-alloc         KZ_BENCH_RUNS=N sets the runs (default 7)
 */
#include <kizuna/alloc.h>

#include "kzb_util.h"

#define PAIRS 10000000u

static double alloc_free(const kz_allocator *a)
{
    uint64_t t0 = kzb_now_ns(), acc = 0;
    for (uint32_t i = 0; i < PAIRS; i++) {
        size_t size = 16 + (i & 255);
        void *p = kz_alloc(a, size, 16);
        acc += (uintptr_t)p & 0xff;
        kz_free(a, p, size);
    }
    kzb_sink(acc);
    return (double)(kzb_now_ns() - t0) / PAIRS;
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "allocator hooks");
    size_t runs = kzb_runs();
    double v[64];
    double w[64];
    kz_allocator plain = {0};
    kz_counting_alloc c;
    kz_counting_alloc_init(&c, NULL);
    kz_allocator counting = kz_counting_alloc_allocator(&c);
    /* Warm the heap once, then alternate the two so drift in the machine's
     * state hits both alike. */
    alloc_free(&plain);
    for (size_t i = 0; i < runs; i++) {
        v[i] = alloc_free(&plain);
        w[i] = alloc_free(&counting);
    }
    kzb_report("kz_alloc+kz_free, default", "ns/pair", v, runs);
    kzb_report("kz_alloc+kz_free, counting", "ns/pair", w, runs);
    kzb_end();
    return 0;
}
