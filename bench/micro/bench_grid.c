/*
 * Spatial grid micro-benchmark: the server's per-tick interest workload.
 * 4,000 avatars wander (0 .. 3 m/s, heading drifting, 30 Hz ticks) and
 * every tick each one moves, then each one asks for everything within
 * 50 m. Two worlds: spread over 1 km x 1 km, and a crowd of all 4,000
 * within 30 m (every query then returns everyone). Reported per tick: time
 * spent in kz_grid_move for all avatars, time spent in the 4,000 queries,
 * and queries per second. New positions are computed outside the timed
 * loops. The spread world runs with the default 16 m cells and again with
 * 32 m cells, since query cost depends mostly on cells visited per query.
 *
 *   kz-bench-grid            (KZ_BENCH_RUNS=n to change the run count)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <kizuna/grid.h>

#include "kzb_util.h"

#define N_AVATARS 4000u
#define TICKS 30u
#define DT (1.0f / 30.0f)
#define RADIUS 50.0f

static uint64_t rng = 0x2545F4914F6CDD1Du;

static uint64_t rng_next(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * UINT64_C(2685821657736338717);
}

static float rng_unit(void)
{
    return (float)(rng_next() >> 40) * (1.0f / 16777216.0f);
}

static void fail(const char *what)
{
    fprintf(stderr, "bench_grid: %s\n", what);
    exit(1);
}

typedef struct avatars {
    float x[N_AVATARS], z[N_AVATARS];
    float heading[N_AVATARS], speed[N_AVATARS];
    float cx, cz, reach; /* the area they stay in: a disk */
} avatars;

static void place(avatars *a, float cx, float cz, float reach, int square)
{
    a->cx = cx;
    a->cz = cz;
    a->reach = reach;
    for (uint32_t i = 0; i < N_AVATARS; i++) {
        float u = rng_unit() * 6.2831853f, d = reach * sqrtf(rng_unit());
        a->x[i] = square ? cx + reach * (2.0f * rng_unit() - 1.0f) : cx + d * cosf(u);
        a->z[i] = square ? cz + reach * (2.0f * rng_unit() - 1.0f) : cz + d * sinf(u);
        a->heading[i] = rng_unit() * 6.2831853f;
        a->speed[i] = 3.0f * rng_unit();
    }
}

/* One step of wandering; an avatar that would leave its area turns back. */
static void wander(avatars *a, int square)
{
    for (uint32_t i = 0; i < N_AVATARS; i++) {
        a->heading[i] += 0.3f * (rng_unit() - 0.5f);
        float nx = a->x[i] + a->speed[i] * DT * cosf(a->heading[i]);
        float nz = a->z[i] + a->speed[i] * DT * sinf(a->heading[i]);
        float dx = nx - a->cx, dz = nz - a->cz;
        int out = square ? fabsf(dx) > a->reach || fabsf(dz) > a->reach
                         : dx * dx + dz * dz > a->reach * a->reach;
        if (out) {
            a->heading[i] += 3.1415927f;
            continue;
        }
        a->x[i] = nx;
        a->z[i] = nz;
    }
}

typedef struct figures {
    double move_us[64], query_us[64], qps[64];
    uint64_t found, queries;
} figures;

static void run_world(const char *name, float cell_size, avatars *a, int square, size_t runs)
{
    kz_grid_config cfg = {.cell_size = cell_size, .max_entities = N_AVATARS};
    kz_grid g;
    if (kz_grid_init(&g, &cfg, NULL) != KZ_OK)
        fail("kz_grid_init failed");
    for (uint32_t i = 0; i < N_AVATARS; i++)
        if (kz_grid_insert(&g, i, a->x[i], a->z[i]) != KZ_OK)
            fail("insert failed");
    static uint32_t out[N_AVATARS];
    static figures f;
    f.found = f.queries = 0;
    for (size_t r = 0; r < runs; r++) {
        uint64_t move_ns = 0, query_ns = 0;
        for (uint32_t t = 0; t < TICKS; t++) {
            wander(a, square);
            uint64_t t0 = kzb_now_ns();
            for (uint32_t i = 0; i < N_AVATARS; i++)
                if (kz_grid_move(&g, i, a->x[i], a->z[i]) != KZ_OK)
                    fail("move failed");
            uint64_t t1 = kzb_now_ns();
            uint64_t found = 0;
            for (uint32_t i = 0; i < N_AVATARS; i++) {
                uint32_t total;
                found += kz_grid_query(&g, a->x[i], a->z[i], RADIUS, out, N_AVATARS, &total);
            }
            uint64_t t2 = kzb_now_ns();
            move_ns += t1 - t0;
            query_ns += t2 - t1;
            f.found += found;
            f.queries += N_AVATARS;
        }
        f.move_us[r] = (double)move_ns / TICKS / 1e3;
        f.query_us[r] = (double)query_ns / TICKS / 1e3;
        f.qps[r] = (double)N_AVATARS * TICKS / ((double)query_ns / 1e9) / 1e6;
    }
    char label[96];
    snprintf(label, sizeof label, "%s: move 4,000", name);
    kzb_report(label, "us/tick", f.move_us, runs);
    snprintf(label, sizeof label, "%s: 4,000 queries r=50 m", name);
    kzb_report(label, "us/tick", f.query_us, runs);
    snprintf(label, sizeof label, "%s: queries", name);
    kzb_report(label, "M/s", f.qps, runs);
    printf("%s: %.1f entities found per query on average\n", name,
           (double)f.found / (double)f.queries);
    kz_grid_fini(&g);
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "kz_grid (4,000 avatars, 16 m cells unless named, 30 Hz)");
    size_t runs = kzb_runs();
    static avatars a;
    place(&a, 0.0f, 0.0f, 500.0f, 1);
    run_world("1 km^2", 16.0f, &a, 1, runs);
    /* The same world with cells closer to the query radius, for tuning. */
    place(&a, 0.0f, 0.0f, 500.0f, 1);
    run_world("1 km^2, 32 m cells", 32.0f, &a, 1, runs);
    place(&a, 123.0f, -45.0f, 30.0f, 0);
    run_world("crowd 30 m", 16.0f, &a, 0, runs);
    kz_grid_config cfg = {.max_entities = N_AVATARS};
    printf("footprint: %zu bytes for %u entities\n", kz_grid_footprint(&cfg), N_AVATARS);
    kzb_end();
    return 0;
}
