/*
 * Bit packing throughput on one core: million fields per second written
 * and read for mixed widths 1..32 (the shape of a snapshot), for a fixed
 * 10-bit width (the inlined constant-width case), and million varints per
 * second (values of every magnitude, 1..10 bytes, ~5 on average). Each
 * pass packs a 4096-item "packet" into an L1-resident buffer; a run
 * repeats passes for about 0.2 s.
 *
 *   kz-bench-bitpack
 *   KZ_BENCH_RUNS=N sets the number of runs (default 7); medians printed.
 */
#include <stdio.h>
#include <stdlib.h>

#include <kizuna/bitpack.h>

#include "kzb_util.h"

#define ITEMS 4096
#define RUN_NS 200000000ull

static uint8_t widths[ITEMS];
static uint64_t values[ITEMS];
static uint64_t varints[ITEMS];
static uint8_t buf[ITEMS * 10];
static size_t mixed_len, fixed_len, varint_len;

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static void must(int rc)
{
    if (rc != KZ_OK) {
        fprintf(stderr, "bench_bitpack: unexpected %s\n", kz_strerror(rc));
        exit(1);
    }
}

static uint64_t write_mixed(void)
{
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    for (size_t i = 0; i < ITEMS; i++)
        must(kz_bitwriter_write(&w, values[i], widths[i]));
    return kz_bitwriter_finish(&w);
}

static uint64_t read_mixed(void)
{
    kz_bitreader r;
    uint64_t sum = 0, v = 0;
    kz_bitreader_init(&r, buf, mixed_len);
    for (size_t i = 0; i < ITEMS; i++) {
        must(kz_bitreader_read(&r, &v, widths[i]));
        sum += v;
    }
    return sum;
}

static uint64_t write_fixed(void)
{
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    for (size_t i = 0; i < ITEMS; i++)
        must(kz_bitwriter_write(&w, values[i], 10));
    return kz_bitwriter_finish(&w);
}

static uint64_t read_fixed(void)
{
    kz_bitreader r;
    uint64_t sum = 0, v = 0;
    kz_bitreader_init(&r, buf, fixed_len);
    for (size_t i = 0; i < ITEMS; i++) {
        must(kz_bitreader_read(&r, &v, 10));
        sum += v;
    }
    return sum;
}

static uint64_t write_varints(void)
{
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    for (size_t i = 0; i < ITEMS; i++)
        must(kz_bitwriter_write_varint(&w, varints[i]));
    return kz_bitwriter_finish(&w);
}

static uint64_t read_varints(void)
{
    kz_bitreader r;
    uint64_t sum = 0, v = 0;
    kz_bitreader_init(&r, buf, varint_len);
    for (size_t i = 0; i < ITEMS; i++) {
        must(kz_bitreader_read_varint(&r, &v));
        sum += v;
    }
    return sum;
}

/* Runs `pass` for about RUN_NS, kzb_runs() times; reports million items
 * per second. The pass count per run is calibrated once. */
static void measure(const char *name, const char *unit, uint64_t (*pass)(void))
{
    uint64_t passes = 16, t0 = kzb_now_ns();
    for (uint64_t i = 0; i < passes; i++)
        kzb_sink(pass());
    uint64_t dt = kzb_now_ns() - t0;
    passes = dt ? passes * RUN_NS / dt : passes;
    passes = passes ? passes : 1;
    double v[64];
    size_t runs = kzb_runs();
    for (size_t r = 0; r < runs; r++) {
        t0 = kzb_now_ns();
        for (uint64_t i = 0; i < passes; i++)
            kzb_sink(pass());
        dt = kzb_now_ns() - t0;
        v[r] = (double)(passes * ITEMS) / ((double)dt / 1e9) / 1e6;
    }
    kzb_report(name, unit, v, runs);
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "bit packing: items per second, one core");
    uint64_t rng = 0x9e3779b97f4a7c15ull, bits = 0, vbytes = 0;
    for (size_t i = 0; i < ITEMS; i++) {
        widths[i] = (uint8_t)(1 + rng_next(&rng) % 32);
        values[i] = rng_next(&rng);
        varints[i] = rng_next(&rng) >> (rng_next(&rng) % 64);
        bits += widths[i];
        vbytes += kz_varint_size(varints[i]);
    }
    printf("packet: %d items; mixed fields %.1f bits on average, varints %.2f bytes\n", ITEMS,
           (double)bits / ITEMS, (double)vbytes / ITEMS);
    mixed_len = (size_t)write_mixed();
    measure("write mixed 1..32-bit fields", "Mfield/s", write_mixed);
    measure("read mixed 1..32-bit fields", "Mfield/s", read_mixed);
    fixed_len = (size_t)write_fixed();
    measure("write 10-bit fields", "Mfield/s", write_fixed);
    measure("read 10-bit fields", "Mfield/s", read_fixed);
    varint_len = (size_t)write_varints();
    measure("write varints (1..10 bytes)", "Mvarint/s", write_varints);
    measure("read varints (1..10 bytes)", "Mvarint/s", read_varints);
    kzb_end();
    return 0;
}
