/*
 * Interest management tests. The main check is differential: seeded random
 * worlds (1 to 3,000 entities; spread, crowded, mixed, and on an integer
 * lattice where distances land exactly on the radii) with random radii,
 * hysteresis, max_visible, crowd caps, keep bonuses, importance and a
 * random veto hook go through a few ticks of movement, and every select is
 * compared with a brute-force reference written from the rules in
 * sim/interest.h: the same ids in the same order, bit-identical scores and
 * identical stats. `prev` is either the viewer's last result or a random
 * set that mixes entities near the radii with absent and out-of-range ids.
 * Targeted tests cover hysteresis, the viewer's own id, absent viewers,
 * the crowd cap, the hook, a known ranking, the ranking kernel's fallback,
 * configuration limits and allocation.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/interest.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
    rng_state = s ? s : 0x9E3779B97F4A7C15u;
}

/* xorshift64* */
static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)((rng_next() >> 32) % n);
}

/* Uniform float in [lo, hi). */
static float rng_range(float lo, float hi)
{
    double u = (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

static uint32_t fbits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* The grid's distance rule, written out again rather than taken from the
 * header, so a change to either shows up here. */
static float ref_d2(float ex, float ez, float qx, float qz)
{
    float dx = ex - qx;
    float dz = ez - qz;
    float dx2 = dx * dx;
    float dz2 = dz * dz;
    return dx2 + dz2;
}

static int ref_within(float ex, float ez, float qx, float qz, float r)
{
    float r2 = r * r;
    return ref_d2(ex, ez, qx, qz) <= r2;
}

/* A world mirrored in a grid and in plain arrays. */
typedef struct world {
    uint32_t n;
    uint8_t *has;
    float *x, *z;
    kz_grid g;
} world;

static void world_init(world *w, uint32_t n, float cell_size)
{
    w->n = n;
    w->has = calloc(n, 1);
    w->x = calloc(n, sizeof(float));
    w->z = calloc(n, sizeof(float));
    cr_assert(w->has && w->x && w->z);
    kz_grid_config gc = {.cell_size = cell_size, .max_entities = n};
    cr_assert_eq(kz_grid_init(&w->g, &gc, NULL), KZ_OK);
}

static void world_fini(world *w)
{
    kz_grid_fini(&w->g);
    free(w->has);
    free(w->x);
    free(w->z);
}

static void world_put(world *w, uint32_t id, float x, float z)
{
    int rc = w->has[id] ? kz_grid_move(&w->g, id, x, z) : kz_grid_insert(&w->g, id, x, z);
    cr_assert_eq(rc, KZ_OK, "put %u at (%g, %g)", id, x, z);
    w->has[id] = 1;
    w->x[id] = x;
    w->z[id] = z;
}

static void world_remove(world *w, uint32_t id)
{
    if (!w->has[id])
        return;
    cr_assert_eq(kz_grid_remove(&w->g, id), KZ_OK);
    w->has[id] = 0;
}

/* A stateless veto: a hash of (salt, viewer, target) against a percentage.
 * Counts its calls so tests can check it runs once per candidate. */
typedef struct veto {
    uint64_t salt;
    uint32_t pct;
    uint32_t calls;
} veto;

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xFF51AFD7ED558CCD);
    h ^= h >> 33;
    h *= UINT64_C(0xC4CEB9FE1A85EC53);
    h ^= h >> 33;
    return h;
}

static int veto_allows(const veto *v, uint32_t viewer, uint32_t target)
{
    uint64_t h = mix64(v->salt ^ (((uint64_t)viewer << 32) | target));
    return h % 100 >= v->pct;
}

static int veto_fn(void *ctx, uint32_t viewer, uint32_t target)
{
    veto *v = ctx;
    v->calls++;
    return veto_allows(v, viewer, target);
}

/* ---- the reference ------------------------------------------------------ */

typedef struct ranked {
    uint32_t id;
    float score;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Everything the reference needs for one select. */
typedef struct query {
    uint32_t viewer;
    const uint32_t *prev;
    uint32_t n_prev;
    const float *importance;
    const veto *hook; /* NULL: no hook */
} query;

/* The rules of sim/interest.h by brute force over every id. `scratch`
 * holds w->n entries. */
static uint32_t ref_select(const world *w, const kz_interest_config *c, const query *q,
                           ranked *scratch, uint32_t *out, float *out_score,
                           kz_interest_stats *st)
{
    *st = (kz_interest_stats){0, 0, 0, 1.0f};
    uint32_t v = q->viewer;
    if (v >= w->n || !w->has[v])
        return 0;
    uint8_t *in_prev = calloc(w->n, 1);
    cr_assert(in_prev);
    for (uint32_t i = 0; i < q->n_prev; i++)
        if (q->prev[i] < w->n)
            in_prev[q->prev[i]] = 1;
    float qx = w->x[v], qz = w->z[v];
    float enter = c->radius;
    float leave = c->radius + c->hysteresis;
    for (uint32_t id = 0; id < w->n; id++)
        if (id != v && w->has[id] && ref_within(w->x[id], w->z[id], qx, qz, leave))
            st->found++;
    if (st->found > c->max_candidates) {
        st->scale = sqrtf((float)c->max_candidates / (float)st->found);
        enter = enter * st->scale;
        leave = leave * st->scale;
    }
    uint32_t m = 0;
    for (uint32_t id = 0; id < w->n; id++) {
        if (id == v || !w->has[id])
            continue;
        int kept = in_prev[id];
        if (!ref_within(w->x[id], w->z[id], qx, qz, kept ? leave : enter))
            continue;
        st->candidates++;
        if (q->hook != NULL && !veto_allows(q->hook, v, id)) {
            st->vetoed++;
            continue;
        }
        float imp = q->importance ? q->importance[id] : 1.0f;
        float d2 = ref_d2(w->x[id], w->z[id], qx, qz);
        scratch[m].id = id;
        scratch[m].score = kz_interest_score(d2, imp, kept, c->keep_bonus);
        m++;
    }
    free(in_prev);
    qsort(scratch, m, sizeof *scratch, cmp_ranked);
    uint32_t k = m < c->max_visible ? m : c->max_visible;
    for (uint32_t i = 0; i < k; i++) {
        out[i] = scratch[i].id;
        out_score[i] = scratch[i].score;
    }
    return k;
}

/* Buffers for one comparison. */
typedef struct bufs {
    uint32_t *got, *want;
    float *got_s, *want_s;
    ranked *scratch;
} bufs;

static void bufs_init(bufs *b, uint32_t n)
{
    b->got = malloc(KZ_INTEREST_MAX_VISIBLE * sizeof(uint32_t));
    b->want = malloc(KZ_INTEREST_MAX_VISIBLE * sizeof(uint32_t));
    b->got_s = malloc(KZ_INTEREST_MAX_VISIBLE * sizeof(float));
    b->want_s = malloc(KZ_INTEREST_MAX_VISIBLE * sizeof(float));
    b->scratch = malloc((size_t)n * sizeof(ranked));
    cr_assert(b->got && b->want && b->got_s && b->want_s && b->scratch);
}

static void bufs_fini(bufs *b)
{
    free(b->got);
    free(b->want);
    free(b->got_s);
    free(b->want_s);
    free(b->scratch);
}

/* Runs one select both ways and requires the same ordered ids, the same
 * score bits and the same stats; the hook must run once per candidate.
 * Returns the count. */
static uint32_t check_select(kz_interest *in, const world *w, const query *q, bufs *b,
                             const char *what, kz_interest_stats *stats)
{
    veto hook_copy;
    veto *hook = NULL;
    if (q->hook != NULL) {
        hook_copy = *q->hook;
        hook_copy.calls = 0;
        hook = &hook_copy;
    }
    kz_interest_stats gs, ws;
    memset(&gs, 0xA5, sizeof gs);
    uint32_t got = kz_interest_select(in, &w->g, q->viewer, q->prev, q->n_prev, q->importance,
                                      hook ? veto_fn : NULL, hook, b->got, b->got_s, &gs);
    uint32_t want = ref_select(w, &in->cfg, q, b->scratch, b->want, b->want_s, &ws);
    cr_assert_eq(gs.found, ws.found, "%s: viewer %u found %u, reference %u", what, q->viewer,
                 gs.found, ws.found);
    cr_assert_eq(fbits(gs.scale), fbits(ws.scale), "%s: scale %.9g, reference %.9g", what,
                 gs.scale, ws.scale);
    cr_assert_eq(gs.candidates, ws.candidates, "%s: candidates %u, reference %u", what,
                 gs.candidates, ws.candidates);
    cr_assert_eq(gs.vetoed, ws.vetoed, "%s: vetoed %u, reference %u", what, gs.vetoed,
                 ws.vetoed);
    cr_assert_eq(got, want, "%s: viewer %u sees %u, reference %u", what, q->viewer, got, want);
    for (uint32_t i = 0; i < got; i++) {
        cr_assert_eq(b->got[i], b->want[i], "%s: viewer %u rank %u: id %u, reference %u", what,
                     q->viewer, i, b->got[i], b->want[i]);
        cr_assert_eq(fbits(b->got_s[i]), fbits(b->want_s[i]),
                     "%s: rank %u score %.9g, reference %.9g", what, i, b->got_s[i],
                     b->want_s[i]);
    }
    if (hook != NULL)
        cr_assert_eq(hook->calls, gs.candidates, "%s: hook ran %u times for %u candidates",
                     what, hook->calls, gs.candidates);
    if (stats != NULL)
        *stats = gs;
    return got;
}

/* ---- differential test -------------------------------------------------- */

enum layout { SPREAD, CROWD, MIXED, LATTICE, N_LAYOUTS };

typedef struct world_spec {
    enum layout layout;
    float side;     /* SPREAD, MIXED: square half-width; LATTICE: integer half-width */
    float crowd_r;  /* CROWD, MIXED: disk radius */
} world_spec;

static void random_position(const world_spec *s, float *x, float *z)
{
    int crowd = s->layout == CROWD || (s->layout == MIXED && rng_below(2) == 0);
    if (s->layout == LATTICE) {
        *x = (float)((int32_t)rng_below(2 * (uint32_t)s->side + 1) - (int32_t)s->side);
        *z = (float)((int32_t)rng_below(2 * (uint32_t)s->side + 1) - (int32_t)s->side);
    } else if (crowd) {
        float u = rng_range(0.0f, 6.2831853f), d = s->crowd_r * sqrtf(rng_range(0.0f, 1.0f));
        *x = 300.0f + d * cosf(u);
        *z = -200.0f + d * sinf(u);
    } else {
        *x = rng_range(-s->side, s->side);
        *z = rng_range(-s->side, s->side);
    }
}

static void random_config(const world_spec *s, kz_interest_config *c)
{
    memset(c, 0, sizeof *c);
    if (s->layout == LATTICE) {
        c->radius = (float)(1 + rng_below(40));
        c->hysteresis = (float)(1 + rng_below(10));
    } else {
        c->radius = rng_range(0.5f, 120.0f);
        c->hysteresis = rng_range(0.01f, 20.0f);
    }
    if (rng_below(8) == 0)
        c->hysteresis = FLT_MIN; /* none */
    static const uint32_t visible[] = {1, 2, 7, 16, 17, 50, 100, 100, 250, 1024};
    c->max_visible = visible[rng_below(sizeof visible / sizeof visible[0])];
    switch (rng_below(4)) {
    case 0: c->max_candidates = c->max_visible; break;
    case 1: c->max_candidates = 0; break; /* the default, 4 x */
    default: c->max_candidates = c->max_visible + rng_below(3 * c->max_visible + 1); break;
    }
    c->keep_bonus = rng_below(4) == 0 ? 1.0f : rng_range(1.0f, 3.0f);
    cr_assert_eq(kz_interest_config_resolve(c), KZ_OK);
}

static void random_importance(float *imp, uint32_t n, int kind)
{
    static const float levels[] = {0.5f, 1.0f, 2.0f};
    for (uint32_t i = 0; i < n; i++)
        imp[i] = kind == 1 ? levels[rng_below(3)] : rng_range(0.01f, 10.0f);
}

/* A random prev without duplicates: entities near the viewer's radii
 * (inside, in the hysteresis band, just beyond), plus ids anywhere,
 * including absent ones and ids past max_entities. */
static uint32_t random_prev(const world *w, const kz_interest_config *c, uint32_t viewer,
                            uint32_t *prev, uint8_t *mark)
{
    uint32_t n = 0, limit = w->n + 64;
    float reach = (c->radius + c->hysteresis) * 1.3f;
    uint32_t p = rng_below(101);
    if (viewer < w->n && w->has[viewer])
        for (uint32_t id = 0; id < w->n; id++)
            if (w->has[id] && ref_within(w->x[id], w->z[id], w->x[viewer], w->z[viewer], reach) &&
                rng_below(100) < p) {
                prev[n++] = id;
                mark[id] = 1;
            }
    uint32_t extra = rng_below(40);
    for (uint32_t i = 0; i < extra; i++) {
        uint32_t id = rng_below(limit);
        if (!mark[id]) {
            prev[n++] = id;
            mark[id] = 1;
        }
    }
    for (uint32_t i = 0; i < n; i++)
        mark[prev[i]] = 0;
    /* Any order: shuffle. */
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = rng_below(i), t = prev[i - 1];
        prev[i - 1] = prev[j];
        prev[j] = t;
    }
    return n;
}

#define VIEWERS 24u
#define TICKS 4u

typedef struct totals {
    uint64_t selects, visible, scaled, vetoed, kept_in_band;
} totals;

static void run_world(uint64_t seed, totals *t)
{
    rng_seed(seed);
    world_spec s = {.layout = (enum layout)rng_below(N_LAYOUTS)};
    s.side = s.layout == LATTICE ? (float)(5 + rng_below(60)) : rng_range(20.0f, 1500.0f);
    s.crowd_r = rng_range(1.0f, 40.0f);
    uint32_t n = 1 + rng_below(3000);
    static const float cells[] = {4.0f, 16.0f, 50.0f};
    world w;
    world_init(&w, n, cells[rng_below(3)]);
    uint32_t present = 60 + rng_below(41);
    for (uint32_t id = 0; id < n; id++)
        if (rng_below(100) < present) {
            float x, z;
            random_position(&s, &x, &z);
            world_put(&w, id, x, z);
        }
    kz_interest_config c;
    random_config(&s, &c);
    kz_interest in;
    /* Sometimes more room than the grid needs: ids beyond the grid then
     * index the byte map without being in the grid. */
    uint32_t room = n + (rng_below(2) ? rng_below(100) : 0);
    cr_assert_eq(kz_interest_init(&in, &c, room, NULL), KZ_OK);
    float *imp = malloc((size_t)n * sizeof(float));
    uint32_t *prev = malloc(((size_t)n + 64) * sizeof(uint32_t));
    uint8_t *mark = calloc((size_t)n + 64, 1);
    uint32_t(*last)[KZ_INTEREST_MAX_VISIBLE] = malloc(VIEWERS * sizeof *last);
    uint32_t n_last[VIEWERS] = {0};
    cr_assert(imp && prev && mark && last);
    uint32_t viewers[VIEWERS];
    for (uint32_t i = 0; i < VIEWERS; i++)
        viewers[i] = rng_below(n + (i == 0 ? 8 : 0)); /* viewer 0 may be out of range */
    bufs b;
    bufs_init(&b, n);
    char what[160];
    for (uint32_t tick = 0; tick < TICKS; tick++) {
        /* Movement, departures and arrivals between ticks. */
        for (uint32_t id = 0; id < n && tick > 0; id++) {
            uint32_t r = rng_below(100);
            float x, z;
            if (w.has[id] && r < 60 && s.layout != LATTICE) {
                float dx = rng_range(-3.0f, 3.0f), dz = rng_range(-3.0f, 3.0f);
                world_put(&w, id, w.x[id] + dx, w.z[id] + dz);
            } else if (w.has[id] && r < 62) {
                world_remove(&w, id);
            } else if (r < 64) {
                random_position(&s, &x, &z);
                world_put(&w, id, x, z);
            }
        }
        int imp_kind = (int)rng_below(3);
        if (imp_kind != 0)
            random_importance(imp, n, imp_kind);
        veto hook = {rng_next(), rng_below(3) == 0 ? 0 : rng_below(60), 0};
        int use_hook = rng_below(3) != 0;
        for (uint32_t i = 0; i < VIEWERS; i++) {
            query q = {viewers[i], prev, 0, imp_kind ? imp : NULL, use_hook ? &hook : NULL};
            if (rng_below(3) == 0) {
                q.n_prev = random_prev(&w, &c, q.viewer, prev, mark);
            } else {
                q.prev = last[i];
                q.n_prev = n_last[i];
            }
            snprintf(what, sizeof what,
                     "seed %llu layout %d n %u tick %u r %.9g h %.9g vis %u cap %u bonus %.9g",
                     (unsigned long long)seed, (int)s.layout, n, tick, c.radius, c.hysteresis,
                     c.max_visible, c.max_candidates, c.keep_bonus);
            kz_interest_stats st;
            uint32_t k = check_select(&in, &w, &q, &b, what, &st);
            /* Count kept entities in the hysteresis band, to show the rule
             * was exercised. */
            for (uint32_t j = 0; j < k && st.scale == 1.0f; j++) {
                uint32_t id = b.got[j];
                if (!ref_within(w.x[id], w.z[id], w.x[q.viewer], w.z[q.viewer], c.radius))
                    t->kept_in_band++;
            }
            memcpy(last[i], b.got, k * sizeof(uint32_t));
            n_last[i] = k;
            t->selects++;
            t->visible += k;
            t->scaled += st.scale < 1.0f;
            t->vetoed += st.vetoed;
        }
    }
    bufs_fini(&b);
    free(imp);
    free(prev);
    free(mark);
    free(last);
    kz_interest_fini(&in);
    world_fini(&w);
}

Test(interest, matches_brute_force_over_random_worlds, .timeout = 600)
{
    totals t = {0};
    for (uint64_t seed = 1; seed <= 1000; seed++)
        run_world(seed * UINT64_C(0x9E3779B97F4A7C15), &t);
    /* The worlds must actually exercise each rule, or the test proves
     * little. */
    cr_log_info("selects %llu visible %llu scaled %llu vetoed %llu kept in band %llu",
                (unsigned long long)t.selects, (unsigned long long)t.visible,
                (unsigned long long)t.scaled, (unsigned long long)t.vetoed,
                (unsigned long long)t.kept_in_band);
    cr_assert_gt(t.visible, t.selects, "too few entities seen: %llu",
                 (unsigned long long)t.visible);
    cr_assert_gt(t.scaled, 100, "crowd cap engaged only %llu times", (unsigned long long)t.scaled);
    cr_assert_gt(t.vetoed, 1000, "hook vetoed only %llu", (unsigned long long)t.vetoed);
    cr_assert_gt(t.kept_in_band, 100, "only %llu kept in the hysteresis band",
                 (unsigned long long)t.kept_in_band);
}

/* ---- targeted behaviour ------------------------------------------------- */

/* A small world: viewer 0 at the origin, the rest placed by the test. */
static void small_world(world *w, uint32_t n)
{
    world_init(w, n, 16.0f);
    world_put(w, 0, 0.0f, 0.0f);
}

static uint32_t select_ids(kz_interest *in, const world *w, uint32_t viewer, const uint32_t *prev,
                           uint32_t n_prev, uint32_t *out, kz_interest_stats *st)
{
    return kz_interest_select(in, &w->g, viewer, prev, n_prev, NULL, NULL, NULL, out, NULL, st);
}

static int has_id(const uint32_t *ids, uint32_t n, uint32_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

Test(interest, hysteresis_keeps_the_visible_and_holds_back_the_new, .timeout = 60)
{
    world w;
    small_world(&w, 8);
    world_put(&w, 1, 50.0f, 0.0f);   /* exactly the enter radius */
    world_put(&w, 2, 52.0f, 0.0f);   /* in the band */
    world_put(&w, 3, 0.0f, -55.0f);  /* exactly the leave radius */
    world_put(&w, 4, 55.01f, 0.0f);  /* beyond */
    world_put(&w, 5, 30.0f, 40.0f);  /* d2 = 2500 exactly */
    world_put(&w, 6, -53.0f, 0.0f);  /* in the band, never visible before */
    kz_interest in;
    cr_assert_eq(kz_interest_init(&in, NULL, 8, NULL), KZ_OK); /* 50 m + 5 m */
    uint32_t out[16];
    kz_interest_stats st;
    uint32_t k = select_ids(&in, &w, 0, NULL, 0, out, &st);
    cr_assert_eq(k, 2);
    cr_assert(has_id(out, k, 1) && has_id(out, k, 5), "entities at exactly 50 m enter");
    cr_assert_eq(st.found, 5, "the leave radius found %u", st.found);
    cr_assert_eq(st.candidates, 2);
    static const uint32_t prev[] = {1, 2, 3, 4, 5};
    k = select_ids(&in, &w, 0, prev, 5, out, &st);
    cr_assert_eq(k, 4);
    cr_assert(has_id(out, k, 1) && has_id(out, k, 2) && has_id(out, k, 3) && has_id(out, k, 5));
    cr_assert(!has_id(out, k, 4), "beyond the leave radius even when visible before");
    cr_assert(!has_id(out, k, 6), "new entity in the band entered");
    /* The byte map was cleared: the same call without prev forgets them. */
    k = select_ids(&in, &w, 0, NULL, 0, out, &st);
    cr_assert_eq(k, 2);
    cr_assert(!has_id(out, k, 2) && !has_id(out, k, 3));

    /* Walk entity 7 out and back in, feeding each result back as prev. */
    uint32_t last[16], n_last = 0;
    for (int step = 0; step <= 40; step++) {
        float d = step <= 20 ? 40.0f + (float)step : 80.0f - (float)step; /* 40..60..40 */
        world_put(&w, 7, 0.0f, d);
        k = select_ids(&in, &w, 0, last, n_last, out, &st);
        int seen = has_id(out, k, 7);
        int want = step <= 20 ? d <= 55.0f : d <= 50.0f;
        cr_assert_eq(seen, want, "step %d at %g m: seen %d", step, d, seen);
        memcpy(last, out, k * sizeof *out);
        n_last = k;
    }
    kz_interest_fini(&in);
    world_fini(&w);
}

Test(interest, no_hysteresis_with_flt_min, .timeout = 60)
{
    world w;
    small_world(&w, 4);
    world_put(&w, 1, 50.0f, 0.0f);
    world_put(&w, 2, 50.001f, 0.0f);
    kz_interest in;
    kz_interest_config c = {.hysteresis = FLT_MIN};
    cr_assert_eq(kz_interest_init(&in, &c, 4, NULL), KZ_OK);
    static const uint32_t prev[] = {1, 2};
    uint32_t out[4];
    uint32_t k = select_ids(&in, &w, 0, prev, 2, out, NULL);
    cr_assert_eq(k, 1);
    cr_assert_eq(out[0], 1);
    kz_interest_fini(&in);
    world_fini(&w);
}

Test(interest, viewer_never_sees_itself, .timeout = 60)
{
    world w;
    small_world(&w, 6);
    world_put(&w, 1, 0.0f, 0.0f); /* on top of the viewer */
    world_put(&w, 2, 3.0f, 0.0f);
    kz_interest in;
    cr_assert_eq(kz_interest_init(&in, NULL, 6, NULL), KZ_OK);
    static const uint32_t prev[] = {0, 1, 2};
    uint32_t out[8];
    kz_interest_stats st;
    uint32_t k = select_ids(&in, &w, 0, prev, 3, out, &st);
    cr_assert_eq(k, 2);
    cr_assert(!has_id(out, k, 0));
    cr_assert_eq(st.found, 2, "the viewer counted itself");
    /* And from entity 1's point of view, 0 is just another entity. */
    k = select_ids(&in, &w, 1, prev, 3, out, &st);
    cr_assert_eq(k, 2);
    cr_assert(has_id(out, k, 0) && !has_id(out, k, 1));
    kz_interest_fini(&in);
    world_fini(&w);
}

Test(interest, viewer_not_in_the_grid_sees_nothing, .timeout = 60)
{
    world w;
    small_world(&w, 6);
    world_put(&w, 1, 1.0f, 0.0f);
    world_put(&w, 2, 3.0f, 0.0f);
    kz_interest in;
    cr_assert_eq(kz_interest_init(&in, NULL, 6, NULL), KZ_OK);
    static const uint32_t prev[] = {1, 2};
    static const uint32_t absent[] = {3, 5, 6, 1000, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        uint32_t out[4] = {77, 77, 77, 77};
        kz_interest_stats st;
        memset(&st, 0xA5, sizeof st);
        uint32_t k = select_ids(&in, &w, absent[i], prev, 2, out, &st);
        cr_assert_eq(k, 0, "viewer %u", absent[i]);
        cr_assert_eq(out[0], 77, "output written for viewer %u", absent[i]);
        cr_assert(st.found == 0 && st.candidates == 0 && st.vetoed == 0 && st.scale == 1.0f);
    }
    /* Its prev marks did not linger. */
    uint32_t out[4];
    uint32_t k = select_ids(&in, &w, 0, NULL, 0, out, NULL);
    cr_assert_eq(k, 2);
    kz_interest_fini(&in);
    world_fini(&w);
}

Test(interest, prev_ids_outside_the_grid_are_ignored, .timeout = 60)
{
    world w;
    small_world(&w, 10);
    world_put(&w, 1, 10.0f, 0.0f);
    world_put(&w, 2, 52.0f, 0.0f);
    kz_interest in;
    cr_assert_eq(kz_interest_init(&in, NULL, 10, NULL), KZ_OK);
    static const uint32_t prev[] = {9, 10, 4000000000u, 2, 7, 0xFFFFFFFFu};
    uint32_t out[4];
    uint32_t k = select_ids(&in, &w, 0, prev, 6, out, NULL);
    cr_assert_eq(k, 2);
    cr_assert_eq(out[0], 1);
    cr_assert_eq(out[1], 2);
    kz_interest_fini(&in);
    world_fini(&w);
}

/* out may alias prev: a run with one array per viewer equals a run with
 * separate arrays. */
Test(interest, out_may_be_the_prev_array, .timeout = 60)
{
    rng_seed(11);
    world w;
    world_init(&w, 1500, 16.0f);
    for (uint32_t id = 0; id < 1500; id++)
        world_put(&w, id, rng_range(-150.0f, 150.0f), rng_range(-150.0f, 150.0f));
    kz_interest in;
    cr_assert_eq(kz_interest_init(&in, NULL, 1500, NULL), KZ_OK);
    static uint32_t same[100], prev[100], out[100];
    uint32_t n_same = 0, n_prev = 0;
    for (uint32_t tick = 0; tick < 30; tick++) {
        for (uint32_t id = 0; id < 1500; id++)
            world_put(&w, id, w.x[id] + rng_range(-2.0f, 2.0f), w.z[id] + rng_range(-2.0f, 2.0f));
        n_same = select_ids(&in, &w, 0, same, n_same, same, NULL);
        uint32_t k = select_ids(&in, &w, 0, prev, n_prev, out, NULL);
        cr_assert_eq(n_same, k, "tick %u", tick);
        cr_assert_eq(memcmp(same, out, k * sizeof *out), 0, "tick %u", tick);
        memcpy(prev, out, k * sizeof *out);
        n_prev = k;
    }
    cr_assert_gt(n_same, 10);
    kz_interest_fini(&in);
    world_fini(&w);
}

/* An importance array and the expected order, computed by hand. */
Test(interest, ranks_by_score_then_lower_id, .timeout = 60)
{
    world w;
    small_world(&w, 8);
    world_put(&w, 1, 10.0f, 0.0f);  /* 1 / 10          = 0.1   */
    world_put(&w, 2, 0.0f, 5.0f);   /* 1 / 5           = 0.2   */
    world_put(&w, 3, -20.0f, 0.0f); /* 5 / 20          = 0.25  */
    world_put(&w, 4, 0.3f, 0.4f);   /* 0.5 / max(.5,1) = 0.5   */
    world_put(&w, 5, 0.0f, -12.0f); /* kept: 1 / 12 x 1.5 = 0.125 */
    world_put(&w, 6, 6.0f, 8.0f);   /* 1 / 10, ties with 1 */
    world_put(&w, 7, 0.0f, 12.0f);  /* 1 / 12 = 0.0833 */
    float imp[8] = {1, 1, 1, 5, 0.5f, 1, 1, 1};
    kz_interest in;
    cr_assert_eq(kz_interest_init(&in, NULL, 8, NULL), KZ_OK);
    static const uint32_t prev[] = {5};
    static const uint32_t want[] = {4, 3, 2, 5, 1, 6, 7};
    uint32_t out[8];
    float score[8];
    uint32_t k = kz_interest_select(&in, &w.g, 0, prev, 1, imp, NULL, NULL, out, score, NULL);
    cr_assert_eq(k, 7);
    for (uint32_t i = 0; i < k; i++) {
        cr_assert_eq(out[i], want[i], "rank %u: %u, want %u", i, out[i], want[i]);
        float x = w.x[out[i]], z = w.z[out[i]];
        float expect = kz_interest_score(x * x + z * z, imp[out[i]], out[i] == 5, 1.5f);
        cr_assert_eq(fbits(score[i]), fbits(expect), "rank %u score %.9g", i, score[i]);
    }
    cr_assert_float_eq(score[3], 0.125f, 1e-7f);
    /* The cut keeps the best, best first. */
    kz_interest_fini(&in);
    kz_interest_config c = {.max_visible = 3};
    cr_assert_eq(kz_interest_init(&in, &c, 8, NULL), KZ_OK);
    k = kz_interest_select(&in, &w.g, 0, prev, 1, imp, NULL, NULL, out, NULL, NULL);
    cr_assert_eq(k, 3);
    cr_assert(out[0] == 4 && out[1] == 3 && out[2] == 2);
    kz_interest_fini(&in);
    world_fini(&w);
}

Test(interest, score_is_importance_over_clamped_distance, .timeout = 60)
{
    cr_assert_eq(kz_interest_score(100.0f, 1.0f, 0, 1.5f), 0.1f);
    cr_assert_eq(kz_interest_score(0.0f, 2.0f, 0, 1.5f), 2.0f, "under 1 m counts as 1 m");
    cr_assert_eq(kz_interest_score(0.25f, 2.0f, 1, 1.5f), 3.0f);
    cr_assert_eq(kz_interest_score(400.0f, 3.0f, 1, 2.0f), 0.3f);
}

Test(interest, crowd_cap_scales_the_radii_and_matches_the_reference, .timeout = 120)
{
    rng_seed(42);
    world w;
    world_init(&w, 3000, 16.0f);
    world_spec s = {.layout = CROWD, .crowd_r = 40.0f};
    for (uint32_t id = 0; id < 3000; id++) {
        float x, z;
        random_position(&s, &x, &z);
        world_put(&w, id, x, z);
    }
    kz_interest in;
    cr_assert_eq(kz_interest_init(&in, NULL, 3000, NULL), KZ_OK);
    bufs b;
    bufs_init(&b, 3000);
    uint32_t last[KZ_INTEREST_MAX_VISIBLE], n_last = 0;
    for (uint32_t v = 0; v < 3000; v += 97) {
        query q = {v, last, n_last, NULL, NULL};
        kz_interest_stats st;
        uint32_t k = check_select(&in, &w, &q, &b, "crowd", &st);
        cr_assert_gt(st.found, 400);
        cr_assert_lt(st.candidates, st.found, "the scaled radii did not thin the crowd");
        cr_assert_eq(fbits(st.scale), fbits(sqrtf(400.0f / (float)st.found)));
        cr_assert_lt(st.scale, 1.0f);
        cr_assert_eq(k, 100);
        memcpy(last, b.got, k * sizeof *last);
        n_last = k;
    }
    bufs_fini(&b);
    kz_interest_fini(&in);
    world_fini(&w);
}

/* The cap engages only when found exceeds it. */
Test(interest, crowd_cap_engages_only_above_the_cap, .timeout = 60)
{
    world w;
    small_world(&w, 16);
    kz_interest_config c = {.max_visible = 5, .max_candidates = 10};
    kz_interest in;
    cr_assert_eq(kz_interest_init(&in, &c, 16, NULL), KZ_OK);
    for (uint32_t id = 1; id <= 10; id++)
        world_put(&w, id, (float)id * 5.0f, 0.0f); /* 5 .. 50 m */
    world_put(&w, 11, 100.0f, 0.0f);                /* beyond the leave radius */
    uint32_t out[8];
    kz_interest_stats st;
    uint32_t k = select_ids(&in, &w, 0, NULL, 0, out, &st);
    cr_assert(st.found == 10 && st.scale == 1.0f && st.candidates == 10 && k == 5,
              "at the cap: found %u scale %.9g", st.found, st.scale);
    world_put(&w, 11, 0.0f, 54.0f);
    k = select_ids(&in, &w, 0, NULL, 0, out, &st);
    cr_assert_eq(st.found, 11);
    cr_assert_eq(fbits(st.scale), fbits(sqrtf(10.0f / 11.0f)));
    /* Enter radius 50 x 0.953 = 47.7 m: the entity at 50 m drops out. */
    cr_assert_eq(st.candidates, 9);
    cr_assert_eq(k, 5);
    kz_interest_fini(&in);
    world_fini(&w);
}

static int veto_odd(void *ctx, uint32_t viewer, uint32_t target)
{
    uint32_t *calls = ctx;
    (*calls)++;
    cr_assert_eq(viewer, 0);
    return (target & 1) == 0;
}

Test(interest, hook_vetoes_are_honoured_and_counted, .timeout = 60)
{
    rng_seed(7);
    world w;
    world_init(&w, 500, 16.0f);
    world_put(&w, 0, 0.0f, 0.0f);
    uint32_t odd_near = 0, near = 0;
    for (uint32_t id = 1; id < 500; id++) {
        float x = rng_range(-80.0f, 80.0f), z = rng_range(-80.0f, 80.0f);
        world_put(&w, id, x, z);
        if (ref_within(x, z, 0.0f, 0.0f, 50.0f)) {
            near++;
            odd_near += id & 1;
        }
    }
    cr_assert_gt(odd_near, 20);
    kz_interest_config c = {.max_visible = 1024, .max_candidates = 4000};
    kz_interest in;
    cr_assert_eq(kz_interest_init(&in, &c, 500, NULL), KZ_OK);
    uint32_t out[1024], calls = 0;
    kz_interest_stats st;
    uint32_t k = kz_interest_select(&in, &w.g, 0, NULL, 0, NULL, veto_odd, &calls, out, NULL, &st);
    for (uint32_t i = 0; i < k; i++)
        cr_assert_eq(out[i] & 1, 0, "vetoed entity %u visible", out[i]);
    cr_assert_eq(st.candidates, near);
    cr_assert_eq(st.vetoed, odd_near);
    cr_assert_eq(k, near - odd_near);
    cr_assert_eq(calls, near, "hook ran %u times for %u candidates", calls, near);
    kz_interest_fini(&in);
    world_fini(&w);
}

/* ---- the ranking kernel ------------------------------------------------- */

static int cmp_u64_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x < y) - (x > y);
}

/* Every depth from 0 (heapsort at once) up, over sizes around the
 * insertion-sort threshold, sorted, reversed and random inputs. */
Test(interest, ranking_kernel_matches_qsort_at_every_depth, .timeout = 120)
{
    static uint64_t a[600], ref[600];
    static const uint32_t sizes[] = {0, 1, 2, 3, 15, 16, 17, 18, 33, 100, 257, 600};
    rng_seed(99);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        uint32_t n = sizes[si];
        for (int shape = 0; shape < 4; shape++) {
            for (uint32_t i = 0; i < n; i++) {
                /* 0: random; 1: ascending; 2: descending; 3: few distinct
                 * scores, so the ids decide. */
                uint64_t hi = shape == 3 ? rng_below(4) : rng_next() >> 32;
                if (shape == 1)
                    hi = i;
                else if (shape == 2)
                    hi = n - i;
                a[i] = (hi << 32) | (uint32_t)~i;
            }
            memcpy(ref, a, n * sizeof *a);
            qsort(ref, n, sizeof *ref, cmp_u64_desc);
            uint32_t ks[] = {0, n > 0 ? 1 : 0, n / 3, n > 0 ? n - 1 : 0, n};
            for (uint32_t depth = 0; depth <= 24; depth += (depth < 4 ? 1 : 10)) {
                for (size_t ki = 0; ki < 5; ki++) {
                    uint32_t k = ks[ki];
                    static uint64_t b[600];
                    memcpy(b, a, n * sizeof *a);
                    kz__interest_rank(b, n, k, depth);
                    for (uint32_t i = 0; i < k; i++)
                        cr_assert_eq(b[i], ref[i], "n %u shape %d depth %u k %u at %u", n, shape,
                                     depth, k, i);
                }
            }
        }
    }
}

/* ---- configuration and lifecycle ---------------------------------------- */

Test(interest, config_defaults, .timeout = 60)
{
    kz_interest_config c = {0};
    cr_assert_eq(kz_interest_config_resolve(&c), KZ_OK);
    cr_assert_eq(c.radius, 50.0f);
    cr_assert_eq(c.hysteresis, 5.0f);
    cr_assert_eq(c.max_visible, 100);
    cr_assert_eq(c.max_candidates, 400);
    cr_assert_eq(c.keep_bonus, 1.5f);
    kz_interest_config d = {.max_visible = 10};
    cr_assert_eq(kz_interest_config_resolve(&d), KZ_OK);
    cr_assert_eq(d.max_candidates, 40, "the cap defaults to 4 x max_visible");
    kz_interest_config e = {.radius = 20.0f, .hysteresis = 2.0f, .max_visible = 5,
                            .max_candidates = 6, .keep_bonus = 1.0f};
    kz_interest_config e2 = e;
    cr_assert_eq(kz_interest_config_resolve(&e2), KZ_OK);
    cr_assert_eq(memcmp(&e, &e2, sizeof e), 0, "set fields changed");
    /* Edges that are valid. */
    static const kz_interest_config ok[] = {
        {.max_visible = KZ_INTEREST_MAX_VISIBLE},
        {.max_visible = 1, .max_candidates = 1},
        {.max_candidates = KZ_INTEREST_MAX_CANDIDATES},
        {.hysteresis = FLT_MIN},
        {.radius = FLT_MIN},
        {.keep_bonus = 1.0f},
        {.radius = 1e30f, .hysteresis = 1e30f},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        kz_interest_config x = ok[i];
        cr_assert_eq(kz_interest_config_resolve(&x), KZ_OK, "valid case %zu refused", i);
    }
}

Test(interest, config_rejects_every_invalid_value, .timeout = 60)
{
    static const kz_interest_config bad[] = {
        {.radius = -1.0f},
        {.radius = -FLT_MIN},
        {.radius = NAN},
        {.radius = INFINITY},
        {.radius = -INFINITY},
        {.hysteresis = -1.0f},
        {.hysteresis = NAN},
        {.hysteresis = INFINITY},
        {.radius = FLT_MAX, .hysteresis = FLT_MAX}, /* leave radius overflows */
        {.max_visible = KZ_INTEREST_MAX_VISIBLE + 1},
        {.max_visible = 0xFFFFFFFFu},
        {.max_visible = 10, .max_candidates = 9},
        {.max_candidates = 99}, /* below the default max_visible */
        {.max_candidates = KZ_INTEREST_MAX_CANDIDATES + 1},
        {.keep_bonus = 0.5f},
        {.keep_bonus = 0.99999994f},
        {.keep_bonus = -2.0f},
        {.keep_bonus = NAN},
        {.keep_bonus = INFINITY},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kz_interest_config c = bad[i];
        cr_assert_eq(kz_interest_config_resolve(&c), KZ_EINVAL, "invalid case %zu accepted", i);
        cr_assert_eq(memcmp(&c, &bad[i], sizeof c), 0, "case %zu: config changed on failure", i);
        kz_interest in;
        cr_assert_eq(kz_interest_init(&in, &bad[i], 16, NULL), KZ_EINVAL, "init took case %zu", i);
        kz_interest_fini(&in);
    }
}

Test(interest, init_limits_and_out_of_memory, .timeout = 60)
{
    kz_interest in;
    cr_assert_eq(kz_interest_init(&in, NULL, 0, NULL), KZ_EINVAL);
    kz_interest_fini(&in);
    cr_assert_eq(kz_interest_init(&in, NULL, KZ_GRID_MAX_ENTITIES + 1, NULL), KZ_EINVAL);
    cr_assert_eq(kz_interest_init(&in, NULL, 1, NULL), KZ_OK);
    cr_assert_eq(in.cfg.max_visible, 100, "NULL config means the defaults");
    kz_interest_fini(&in);
    kz_interest_fini(&in); /* twice is harmless */
    for (int64_t fail = 0; fail < 3; fail++) {
        kz_counting_alloc ca;
        kz_counting_alloc_init(&ca, NULL);
        ca.fail_after = fail;
        kz_allocator a = kz_counting_alloc_allocator(&ca);
        cr_assert_eq(kz_interest_init(&in, NULL, 4096, &a), KZ_ENOMEM, "fail_after %lld",
                     (long long)fail);
        cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0, "leak after a failed init");
        kz_interest_fini(&in);
    }
}

static int allow_all(void *ctx, uint32_t viewer, uint32_t target)
{
    (void)ctx;
    (void)viewer;
    (void)target;
    return 1;
}

Test(interest, select_allocates_nothing, .timeout = 60)
{
    rng_seed(5);
    world w;
    world_init(&w, 2000, 16.0f);
    for (uint32_t id = 0; id < 2000; id++)
        world_put(&w, id, rng_range(-100.0f, 100.0f), rng_range(-100.0f, 100.0f));
    kz_counting_alloc ca;
    kz_counting_alloc_init(&ca, NULL);
    kz_allocator a = kz_counting_alloc_allocator(&ca);
    kz_interest in;
    cr_assert_eq(kz_interest_init(&in, NULL, 2000, &a), KZ_OK);
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 2000u * 13u);
    uint64_t before = kz_counting_alloc_allocs(&ca);
    uint32_t out[100], last[100], n_last = 0;
    for (uint32_t v = 0; v < 2000; v++) {
        uint32_t k = kz_interest_select(&in, &w.g, v, last, n_last, NULL, allow_all, NULL, out,
                                        NULL, NULL);
        memcpy(last, out, k * sizeof *out);
        n_last = k;
    }
    cr_assert_eq(kz_counting_alloc_allocs(&ca), before);
    kz_interest_fini(&in);
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0);
    world_fini(&w);
}
