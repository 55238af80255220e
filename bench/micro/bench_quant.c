/*
 * Quantization throughput on one core: million encode+decode pairs per
 * second for world positions (2 mm in a 2 km x 250 m x 2 km box, 57 bits)
 * and for smallest-three quaternions at k = 10 (32 bits) and k = 15
 * (47 bits). Inputs are 4096 seeded random values; a run repeats passes
 * over them for about 0.2 s.
 *
 *   kz-bench-quant
 *   KZ_BENCH_RUNS=N sets the number of runs (default 7); medians printed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <kizuna/quant.h>

#include "kzb_util.h"

#define ITEMS 4096
#define RUN_NS 200000000ull

static float positions[ITEMS][3];
static float quats[ITEMS][4];
static kz_posq posq;

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * 0x1p-53;
}

static void must(int rc)
{
    if (rc != KZ_OK) {
        fprintf(stderr, "bench_quant: unexpected %s\n", kz_strerror(rc));
        exit(1);
    }
}

static uint64_t pass_posq(void)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < ITEMS; i++) {
        uint32_t c[3];
        float d[3];
        must(kz_posq_encode(&posq, positions[i], c));
        kz_posq_decode(&posq, c, d);
        sum += c[0] + (uint64_t)(d[1] > 0);
    }
    return sum;
}

static uint64_t pass_quat(unsigned k)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < ITEMS; i++) {
        uint64_t code;
        float d[4];
        must(kz_quat_encode(quats[i], k, &code));
        kz_quat_decode(code, k, d);
        sum += code + (uint64_t)(d[0] > 0);
    }
    return sum;
}

static uint64_t pass_quat10(void)
{
    return pass_quat(10);
}

static uint64_t pass_quat15(void)
{
    return pass_quat(15);
}

/* As in bench_bitpack: calibrated passes per ~0.2 s run, median of runs. */
static void measure(const char *name, uint64_t (*pass)(void))
{
    uint64_t passes = 8, t0 = kzb_now_ns();
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
    kzb_report(name, "Mpair/s", v, runs);
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "quantization: encode+decode pairs per second, one core");
    const float lo[3] = {-1000, -50, -1000}, hi[3] = {1000, 200, 1000};
    must(kz_posq_init(&posq, lo, hi, 0.002f));
    uint64_t rng = 0x243f6a8885a308d3ull;
    for (size_t i = 0; i < ITEMS; i++) {
        for (int a = 0; a < 3; a++)
            positions[i][a] = (float)(lo[a] + rng_unit(&rng) * (hi[a] - lo[a]));
        double g[4], n = 0;
        for (int c = 0; c < 4; c++) {
            g[c] = rng_unit(&rng) * 2 - 1;
            n += g[c] * g[c];
        }
        for (int c = 0; c < 4; c++)
            quats[i][c] = (float)(g[c] / sqrt(n));
    }
    printf("position: %u bits (2 mm); quaternion: %u bits (k=10), %u bits (k=15)\n",
           posq.total_bits, KZ_QUAT_BITS(10), KZ_QUAT_BITS(15));
    measure("position encode+decode", pass_posq);
    measure("quaternion k=10 encode+decode", pass_quat10);
    measure("quaternion k=15 encode+decode", pass_quat15);
    kzb_end();
    return 0;
}
