/*
 * Interest management micro-benchmark: the server's per-tick workload.
 * 4,000 avatars wander (0 .. 3 m/s, heading drifting, 30 Hz ticks); every
 * tick each one moves in the grid, then each one runs kz_interest_select
 * with the defaults (enter 50 m, leave 55 m, 100 visible, crowd cap 400)
 * and its own last result as `prev`, with a visibility hook that allows
 * everything (so the indirect call is paid) and per-entity importance.
 * Two worlds:
 *
 *   wander  4,000 avatars over 400 m x 400 m: about 200 within 50 m of
 *           each viewer (more than max_visible, so the partial selection
 *           runs, and under the crowd cap);
 *   crowd   all 4,000 within 30 m: every viewer finds 3,999 within the
 *           leave radius, the crowd cap engages and scales the radii.
 *
 * Reported: median ns per select (timed per tick, divided by 4,000), ms
 * per tick for all 4,000 viewers on one thread, and for comparison the
 * plain grid queries at the leave radius alone. Moves are outside the
 * timed loops.
 *
 *   kz-bench-interest        (KZ_BENCH_RUNS=n to change the run count)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/grid.h>

#include "kzb_util.h"
#include "sim/interest.h"

#define N_AVATARS 4000u
#define TICKS 30u
#define DT (1.0f / 30.0f)

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
    fprintf(stderr, "bench_interest: %s\n", what);
    exit(1);
}

typedef struct avatars {
    float x[N_AVATARS], z[N_AVATARS];
    float heading[N_AVATARS], speed[N_AVATARS];
    float cx, cz, reach; /* the area they stay in: a square or a disk */
    int square;
} avatars;

static void place(avatars *a, float cx, float cz, float reach, int square)
{
    a->cx = cx;
    a->cz = cz;
    a->reach = reach;
    a->square = square;
    for (uint32_t i = 0; i < N_AVATARS; i++) {
        float u = rng_unit() * 6.2831853f, d = reach * sqrtf(rng_unit());
        a->x[i] = square ? cx + reach * (2.0f * rng_unit() - 1.0f) : cx + d * cosf(u);
        a->z[i] = square ? cz + reach * (2.0f * rng_unit() - 1.0f) : cz + d * sinf(u);
        a->heading[i] = rng_unit() * 6.2831853f;
        a->speed[i] = 3.0f * rng_unit();
    }
}

/* One step of wandering; an avatar that would leave its area turns back. */
static void wander(avatars *a)
{
    for (uint32_t i = 0; i < N_AVATARS; i++) {
        a->heading[i] += 0.3f * (rng_unit() - 0.5f);
        float nx = a->x[i] + a->speed[i] * DT * cosf(a->heading[i]);
        float nz = a->z[i] + a->speed[i] * DT * sinf(a->heading[i]);
        float dx = nx - a->cx, dz = nz - a->cz;
        int out = a->square ? fabsf(dx) > a->reach || fabsf(dz) > a->reach
                            : dx * dx + dz * dz > a->reach * a->reach;
        if (out) {
            a->heading[i] += 3.1415927f;
            continue;
        }
        a->x[i] = nx;
        a->z[i] = nz;
    }
}

static int allow_all(void *ctx, uint32_t viewer, uint32_t target)
{
    (void)viewer;
    (void)target;
    return ctx != NULL;
}

/* Each viewer's last result, fed back as prev. */
typedef struct seen {
    uint32_t ids[N_AVATARS][100];
    uint32_t n[N_AVATARS];
} seen;

typedef struct figures {
    double select_ns[64], tick_ms[64], query_ms[64];
    uint64_t found, candidates, visible, selects;
    double scale_sum;
} figures;

static void run_world(const char *name, avatars *a, size_t runs)
{
    kz_grid_config gcfg = {.max_entities = N_AVATARS};
    kz_grid g;
    if (kz_grid_init(&g, &gcfg, NULL) != KZ_OK)
        fail("kz_grid_init failed");
    for (uint32_t i = 0; i < N_AVATARS; i++)
        if (kz_grid_insert(&g, i, a->x[i], a->z[i]) != KZ_OK)
            fail("insert failed");
    kz_interest in;
    if (kz_interest_init(&in, NULL, N_AVATARS, NULL) != KZ_OK)
        fail("kz_interest_init failed");
    static float importance[N_AVATARS];
    for (uint32_t i = 0; i < N_AVATARS; i++)
        importance[i] = 0.5f + rng_unit();
    static seen s;
    memset(s.n, 0, sizeof s.n);
    static uint32_t hits[N_AVATARS];
    static figures f;
    memset(&f, 0, sizeof f);
    float leave = in.cfg.radius + in.cfg.hysteresis;
    int ctx = 1;
    for (size_t r = 0; r < runs; r++) {
        uint64_t select_ns = 0, query_ns = 0, sink = 0;
        for (uint32_t t = 0; t < TICKS; t++) {
            wander(a);
            for (uint32_t i = 0; i < N_AVATARS; i++)
                if (kz_grid_move(&g, i, a->x[i], a->z[i]) != KZ_OK)
                    fail("move failed");
            uint64_t t0 = kzb_now_ns();
            for (uint32_t i = 0; i < N_AVATARS; i++) {
                kz_interest_stats st;
                s.n[i] = kz_interest_select(&in, &g, i, s.ids[i], s.n[i], importance, allow_all,
                                            &ctx, s.ids[i], NULL, &st);
                f.found += st.found;
                f.candidates += st.candidates;
                f.scale_sum += st.scale;
            }
            uint64_t t1 = kzb_now_ns();
            for (uint32_t i = 0; i < N_AVATARS; i++)
                sink += kz_grid_query(&g, a->x[i], a->z[i], leave, hits, N_AVATARS, NULL);
            uint64_t t2 = kzb_now_ns();
            select_ns += t1 - t0;
            query_ns += t2 - t1;
            for (uint32_t i = 0; i < N_AVATARS; i++)
                f.visible += s.n[i];
            f.selects += N_AVATARS;
        }
        kzb_sink(sink);
        f.select_ns[r] = (double)select_ns / TICKS / N_AVATARS;
        f.tick_ms[r] = (double)select_ns / TICKS / 1e6;
        f.query_ms[r] = (double)query_ns / TICKS / 1e6;
    }
    char label[96];
    snprintf(label, sizeof label, "%s: select", name);
    kzb_report(label, "ns", f.select_ns, runs);
    snprintf(label, sizeof label, "%s: 4,000 selects", name);
    kzb_report(label, "ms/tick", f.tick_ms, runs);
    snprintf(label, sizeof label, "%s: 4,000 grid queries alone, r=55 m", name);
    kzb_report(label, "ms/tick", f.query_ms, runs);
    double n = (double)f.selects;
    printf("%s: per select on average %.1f found within 55 m, %.1f candidates, %.1f visible, "
           "radius scale %.3f\n",
           name, (double)f.found / n, (double)f.candidates / n, (double)f.visible / n,
           f.scale_sum / n);
    kz_interest_fini(&in);
    kz_grid_fini(&g);
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv,
              "kz_interest_select (4,000 viewers, defaults: 50 m + 5 m, 100 visible, cap 400; "
              "prev = last result; 16 m cells; one thread)");
    size_t runs = kzb_runs();
    static avatars a;
    place(&a, 0.0f, 0.0f, 200.0f, 1);
    run_world("wander 400 m x 400 m", &a, runs);
    place(&a, 123.0f, -45.0f, 30.0f, 0);
    run_world("crowd 30 m", &a, runs);
    kzb_end();
    return 0;
}
