/*
 * Spatial grid tests. The main check is differential: seeded random worlds
 * (a 2 km x 2 km spread plus a dense crowd, several cell sizes and table
 * sizes, small tables so that cells collide in buckets) go through long
 * sequences of moves, removes and reinserts, and after every batch many
 * queries are compared with a brute-force scan of a plain reference model.
 * The id sets must be equal exactly. Targeted tests cover float rounding at
 * cell edges, the documented order, truncation, the callback form, bad
 * positions and ids, configuration limits and allocation.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/grid.h>

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

/* The documented distance rule, written out again rather than taken from
 * the header, so a change to either shows up here. */
static int ref_within(float ex, float ez, float qx, float qz, float r)
{
    float dx = ex - qx;
    float dz = ez - qz;
    float dx2 = dx * dx;
    float dz2 = dz * dz;
    float d2 = dx2 + dz2;
    float r2 = r * r;
    return d2 <= r2;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The reference: which ids are present, and where. */
typedef struct ref_world {
    uint32_t n;
    uint8_t *has;
    float *x, *z;
} ref_world;

static void ref_init(ref_world *w, uint32_t n)
{
    w->n = n;
    w->has = calloc(n, 1);
    w->x = calloc(n, sizeof(float));
    w->z = calloc(n, sizeof(float));
    cr_assert(w->has && w->x && w->z);
}

static void ref_fini(ref_world *w)
{
    free(w->has);
    free(w->x);
    free(w->z);
}

/* Brute force; ids come out ascending. */
static uint32_t ref_query(const ref_world *w, float qx, float qz, float r, uint32_t *out)
{
    uint32_t n = 0;
    if (!isfinite(qx) || !isfinite(qz) || !(r >= 0.0f))
        return 0;
    for (uint32_t i = 0; i < w->n; i++)
        if (w->has[i] && ref_within(w->x[i], w->z[i], qx, qz, r))
            out[n++] = i;
    return n;
}

typedef struct collect {
    uint32_t *ids;
    float *d2;
    uint32_t n;
    uint32_t stop_after; /* 0: never stop */
} collect;

static int collect_visit(void *ctx, uint32_t id, float dist2)
{
    collect *c = ctx;
    c->ids[c->n] = id;
    c->d2[c->n] = dist2;
    c->n++;
    return c->stop_after != 0 && c->n >= c->stop_after;
}

typedef struct query_bufs {
    uint32_t *got, *want, *seq;
    float *d2;
} query_bufs;

static void bufs_init(query_bufs *b, uint32_t n)
{
    b->got = malloc(n * sizeof(uint32_t));
    b->want = malloc(n * sizeof(uint32_t));
    b->seq = malloc(n * sizeof(uint32_t));
    b->d2 = malloc(n * sizeof(float));
    cr_assert(b->got && b->want && b->seq && b->d2);
}

static void bufs_fini(query_bufs *b)
{
    free(b->got);
    free(b->want);
    free(b->seq);
    free(b->d2);
}

/* Runs one query both ways and checks it against brute force: the same id
 * set, no duplicates, total equal to the count, the callback seeing the same
 * ids in the same order with the documented d2. */
static void check_query(const kz_grid *g, const ref_world *w, query_bufs *b, float qx, float qz,
                        float r, const char *what)
{
    uint32_t total = 0xDEADBEEF;
    uint32_t got = kz_grid_query(g, qx, qz, r, b->got, w->n, &total);
    uint32_t want = ref_query(w, qx, qz, r, b->want);
    cr_assert_eq(total, got, "%s: total %u vs written %u", what, total, got);
    cr_assert_eq(got, want, "%s: q=(%.9g, %.9g) r=%.9g: grid found %u, brute force %u", what,
                 (double)qx, (double)qz, (double)r, got, want);

    collect c = {b->seq, b->d2, 0, 0};
    cr_assert_eq(kz_grid_query_fn(g, qx, qz, r, collect_visit, &c), got, "%s", what);
    cr_assert_eq(c.n, got);
    for (uint32_t i = 0; i < got; i++) {
        cr_assert_eq(b->seq[i], b->got[i], "%s: callback order differs at %u", what, i);
        float dx = w->x[b->seq[i]] - qx, dz = w->z[b->seq[i]] - qz;
        float dx2 = dx * dx, dz2 = dz * dz;
        cr_assert_eq(c.d2[i], dx2 + dz2, "%s: dist2 of id %u", what, b->seq[i]);
    }

    qsort(b->got, got, sizeof(uint32_t), cmp_u32);
    for (uint32_t i = 0; i < got; i++) {
        if (i > 0)
            cr_assert_neq(b->got[i], b->got[i - 1], "%s: id %u reported twice", what, b->got[i]);
        cr_assert_eq(b->got[i], b->want[i], "%s: q=(%.9g, %.9g) r=%.9g: id sets differ at %u",
                     what, (double)qx, (double)qz, (double)r, i);
    }
}

/* ---- differential test ---------------------------------------------------- */

typedef struct world_spec {
    uint64_t seed;
    float cell_size;
    uint32_t max_entities;
    uint32_t spread;     /* entities uniform over +-half on both axes */
    uint32_t crowd;      /* entities within 30 m of the crowd center */
    float half;          /* half the world's edge, meters */
    uint32_t rounds;
    uint32_t ops_per_round;
    uint32_t queries_per_round;
} world_spec;

static float crowd_cx, crowd_cz;

static void crowd_point(float *x, float *z)
{
    /* Uniform in the 30 m disk. */
    float a = rng_range(0.0f, 6.2831853f), d = 30.0f * sqrtf(rng_range(0.0f, 1.0f));
    *x = crowd_cx + d * cosf(a);
    *z = crowd_cz + d * sinf(a);
}

/* A coordinate exactly on a cell boundary, sometimes nudged by one ulp. */
static float boundary_coord(float cs, float half)
{
    int32_t k = (int32_t)rng_below((uint32_t)(2.0f * half / cs) + 1) - (int32_t)(half / cs);
    float v = (float)k * cs;
    switch (rng_below(4)) {
    case 0: return nextafterf(v, -INFINITY);
    case 1: return nextafterf(v, INFINITY);
    default: return v;
    }
}

/* A new position for an entity now at (*x, *z), of many kinds. */
static void random_position(const world_spec *s, float *x, float *z)
{
    switch (rng_below(10)) {
    case 0: case 1: case 2: /* wander a little, often across a cell edge */
        *x += rng_range(-3.0f, 3.0f);
        *z += rng_range(-3.0f, 3.0f);
        if (fabsf(*x) > s->half) *x = copysignf(s->half, *x);
        if (fabsf(*z) > s->half) *z = copysignf(s->half, *z);
        break;
    case 3: /* exactly on (or next to) cell boundaries */
        *x = boundary_coord(s->cell_size, s->half);
        *z = rng_below(2) ? boundary_coord(s->cell_size, s->half) : *z;
        break;
    case 4:
        crowd_point(x, z);
        break;
    case 5: /* zeroes of both signs and tiny coordinates around them */
        *x = rng_below(2) ? -0.0f : 1e-30f * rng_range(-1.0f, 1.0f);
        *z = rng_below(2) ? 0.0f : -1e-38f;
        break;
    default:
        *x = rng_range(-s->half, s->half);
        *z = rng_range(-s->half, s->half);
        break;
    }
}

static float random_radius(const world_spec *s, const ref_world *w, float qx, float qz)
{
    static const float fixed[] = {0.0f, 1e-30f, 1e-6f, 1.0f, 50.0f, 500.0f, 1e20f, INFINITY};
    switch (rng_below(12)) {
    case 0: case 1: case 2: case 3:
        return fixed[rng_below(sizeof fixed / sizeof fixed[0])];
    case 4: /* larger than the world */
        return 3.0f * s->half;
    case 5: { /* exactly the distance of some entity: the inclusive edge */
        uint32_t id = rng_below(w->n);
        if (!w->has[id])
            return 50.0f;
        float dx = w->x[id] - qx, dz = w->z[id] - qz;
        return sqrtf(dx * dx + dz * dz);
    }
    case 6:
        return rng_range(0.0f, 5.0f);
    default:
        return rng_range(0.0f, 300.0f);
    }
}

static void random_query_point(const world_spec *s, const ref_world *w, float *qx, float *qz)
{
    static const float far[] = {1.5f, -1.5f, 1e6f, -1e6f, 1e7f, -3e38f};
    switch (rng_below(8)) {
    case 0:
        crowd_point(qx, qz);
        break;
    case 1: /* outside the populated square, or far outside the bounds */
        *qx = far[rng_below(6)];
        *qx = fabsf(*qx) < 2.0f ? *qx * s->half : *qx;
        *qz = rng_range(-s->half, s->half);
        break;
    case 2:
        *qx = boundary_coord(s->cell_size, s->half);
        *qz = boundary_coord(s->cell_size, s->half);
        break;
    case 3: { /* at an entity */
        uint32_t id = rng_below(w->n);
        *qx = w->has[id] ? w->x[id] : 0.0f;
        *qz = w->has[id] ? w->z[id] : 0.0f;
        break;
    }
    default:
        *qx = rng_range(-1.2f * s->half, 1.2f * s->half);
        *qz = rng_range(-1.2f * s->half, 1.2f * s->half);
        break;
    }
}

static void ref_set(ref_world *w, uint32_t id, float x, float z)
{
    w->has[id] = 1;
    w->x[id] = x;
    w->z[id] = z;
}

/* One random write, applied to both and checked against the reference's
 * prediction of the result. */
static void random_op(kz_grid *g, ref_world *w, const world_spec *s)
{
    uint32_t id = rng_below(w->n);
    uint32_t roll = rng_below(100);
    if (!w->has[id]) {
        float x = rng_range(-s->half, s->half), z = rng_range(-s->half, s->half);
        random_position(s, &x, &z);
        cr_assert_eq(kz_grid_insert(g, id, x, z), KZ_OK, "insert %u", id);
        ref_set(w, id, x, z);
    } else if (roll < 8) {
        cr_assert_eq(kz_grid_remove(g, id), KZ_OK, "remove %u", id);
        w->has[id] = 0;
    } else if (roll < 10) {
        cr_assert_eq(kz_grid_insert(g, id, 0.0f, 0.0f), KZ_EINVAL, "double insert %u", id);
    } else if (roll < 12) {
        float bad = rng_below(2) ? NAN : -INFINITY;
        cr_assert_eq(kz_grid_move(g, id, w->x[id], bad), KZ_ENOTFINITE);
        cr_assert_eq(kz_grid_move(g, id, 2.0f * KZ_GRID_MAX_BOUND, w->z[id]), KZ_ERANGE);
    } else {
        float x = w->x[id], z = w->z[id];
        random_position(s, &x, &z);
        cr_assert_eq(kz_grid_move(g, id, x, z), KZ_OK, "move %u to (%g, %g)", id, (double)x,
                     (double)z);
        ref_set(w, id, x, z);
    }
}

static void run_world(const world_spec *s)
{
    rng_seed(s->seed);
    crowd_cx = rng_range(-0.8f * s->half, 0.8f * s->half);
    crowd_cz = rng_range(-0.8f * s->half, 0.8f * s->half);
    kz_grid_config cfg = {.cell_size = s->cell_size, .max_entities = s->max_entities};
    kz_grid g;
    cr_assert_eq(kz_grid_init(&g, &cfg, NULL), KZ_OK);
    ref_world w;
    ref_init(&w, s->max_entities);
    query_bufs b;
    bufs_init(&b, s->max_entities);

    /* Ids are scattered over the range so gaps are exercised too. */
    uint32_t placed = 0;
    while (placed < s->spread + s->crowd) {
        uint32_t id = rng_below(w.n);
        if (w.has[id])
            continue;
        float x, z;
        if (placed < s->crowd) {
            crowd_point(&x, &z);
        } else {
            x = rng_range(-s->half, s->half);
            z = rng_range(-s->half, s->half);
        }
        cr_assert_eq(kz_grid_insert(&g, id, x, z), KZ_OK);
        ref_set(&w, id, x, z);
        placed++;
    }
    cr_assert_eq(kz_grid_count(&g), placed);

    for (uint32_t round = 0; round < s->rounds; round++) {
        for (uint32_t q = 0; q < s->queries_per_round; q++) {
            float qx, qz;
            random_query_point(s, &w, &qx, &qz);
            check_query(&g, &w, &b, qx, qz, random_radius(s, &w, qx, qz), "random world");
        }
        for (uint32_t op = 0; op < s->ops_per_round; op++)
            random_op(&g, &w, s);
        uint32_t live = 0;
        for (uint32_t i = 0; i < w.n; i++) {
            live += w.has[i];
            cr_assert_eq(kz_grid_contains(&g, i), w.has[i]);
        }
        cr_assert_eq(kz_grid_count(&g), live);
    }
    bufs_fini(&b);
    ref_fini(&w);
    kz_grid_fini(&g);
}

Test(grid, matches_brute_force_in_a_2km_world_with_a_crowd, .timeout = 300)
{
    /* 5,000 spread over 2 km x 2 km plus 1,000 within 30 m, 16 m cells. */
    static const uint64_t seeds[] = {1, 0xC0FFEE, 20240611, 77};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        world_spec s = {seeds[i], 16.0f, 6500, 5000, 1000, 1000.0f, 25, 3000, 60};
        run_world(&s);
    }
}

Test(grid, matches_brute_force_with_other_cell_sizes, .timeout = 300)
{
    world_spec specs[] = {
        {11, 5.0f, 6500, 5000, 1000, 1000.0f, 10, 3000, 60},
        {12, 64.0f, 6500, 5000, 1000, 1000.0f, 10, 3000, 60},
        {13, 0.75f, 6500, 5000, 1000, 1000.0f, 10, 3000, 60},
        {14, 250.0f, 6500, 5000, 1000, 1000.0f, 10, 3000, 60},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        run_world(&specs[i]);
}

Test(grid, matches_brute_force_with_small_tables_full_of_collisions, .timeout = 120)
{
    /* 64 entities share 128 buckets and 8 to 16 cells per query are
     * allowed, so many visited cells land in one bucket and many moves
     * change cell without changing bucket. */
    world_spec specs[] = {
        {21, 2.0f, 64, 40, 20, 40.0f, 200, 100, 40},
        {22, 16.0f, 64, 60, 0, 1000.0f, 200, 100, 40},
        {23, 1.0f, 300, 200, 50, 60.0f, 100, 300, 40},
        {24, 16.0f, 3, 2, 1, 30.0f, 100, 10, 20}, /* every query scans ids */
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        run_world(&specs[i]);
}

/* ---- float rounding at cell edges --------------------------------------- */

/*
 * The float rule can admit an entity slightly beyond the exact disk (the
 * subtraction ex - qx rounds). When such an entity sits just across a cell
 * edge from q + r, a grid that scans exactly the cells of [q - r, q + r]
 * misses it. This test searches a lattice of query points and entity
 * positions near one cell edge for those cases, and checks that each is
 * found; it also checks that the search found enough of them to matter.
 */
static uint32_t edge_cases(float side)
{
    const float cs = 65536.0f;
    kz_grid_config cfg = {.cell_size = cs, .max_entities = 4096};
    uint32_t cases = 0;
    for (int k = 0; k < 64; k++) {
        /* |q| in [2^18, 2^19): its ulp is half that of q - e. */
        float qx = side * (-500000.0f - (float)k / 32.0f);
        for (int j = -16; j <= 16; j++) {
            float ex = side * (cs + (float)j / 128.0f);
            if (side < 0.0f)
                ex = nextafterf(ex, -INFINITY); /* just below -cs: the cell under it */
            float r = fabsf(ex - qx);
            double exact = fabs((double)ex - (double)qx);
            double reach = side > 0.0f ? (double)qx + (double)r : (double)qx - (double)r;
            int crosses = side > 0.0f ? floor(reach / cs) < floor((double)ex / cs)
                                      : floor(reach / cs) > floor((double)ex / cs);
            if (!(exact > (double)r) || !crosses)
                continue;
            cr_assert(ref_within(ex, 0.0f, qx, 0.0f, r), "the float rule admits it");
            kz_grid g;
            cr_assert_eq(kz_grid_init(&g, &cfg, NULL), KZ_OK);
            cr_assert_eq(kz_grid_insert(&g, 7, ex, 0.0f), KZ_OK);
            uint32_t out[4], total = 0;
            uint32_t n = kz_grid_query(&g, qx, 0.0f, r, out, 4, &total);
            cr_assert_eq(n, 1, "q=%.9g r=%.9g e=%.9g: missed across the cell edge",
                         (double)qx, (double)r, (double)ex);
            cr_assert_eq(out[0], 7);
            kz_grid_fini(&g);
            cases++;
        }
    }
    return cases;
}

Test(grid, finds_entities_the_float_rule_admits_across_a_cell_edge, .timeout = 120)
{
    cr_assert_geq(edge_cases(1.0f), 10, "too few rounding cases on the + side");
    cr_assert_geq(edge_cases(-1.0f), 10, "too few rounding cases on the - side");
}

/* ---- contract details --------------------------------------------------- */

Test(grid, distance_is_inclusive_and_matches_the_header_rule, .timeout = 120)
{
    kz_grid g;
    cr_assert_eq(kz_grid_init(&g, NULL, NULL), KZ_OK);
    cr_assert_eq(kz_grid_insert(&g, 0, 3.0f, 4.0f), KZ_OK);   /* exactly 5 m away */
    cr_assert_eq(kz_grid_insert(&g, 1, -3.0f, -4.0f), KZ_OK); /* 5 m the other way */
    cr_assert_eq(kz_grid_insert(&g, 2, 0.0f, 0.0f), KZ_OK);   /* at the query point */
    uint32_t out[4], total;
    cr_assert_eq(kz_grid_query(&g, 0.0f, 0.0f, 5.0f, out, 4, &total), 3);
    cr_assert_eq(kz_grid_query(&g, 0.0f, 0.0f, nextafterf(5.0f, 0.0f), out, 4, &total), 1);
    cr_assert_eq(out[0], 2);
    cr_assert_eq(kz_grid_query(&g, 0.0f, 0.0f, 0.0f, out, 4, &total), 1, "r = 0 finds the point");
    cr_assert_eq(kz_grid_query(&g, 0.0f, 0.0f, -0.0f, out, 4, &total), 1);
    cr_assert_eq(kz_grid_query(&g, 1e-24f, 0.0f, 0.0f, out, 4, &total), 1,
                 "d2 underflows to 0, so the rule admits it");
    cr_assert_eq(kz_grid_query(&g, 1e-20f, 0.0f, 0.0f, out, 4, &total), 0, "d2 is subnormal, not 0");

    rng_seed(5);
    for (int i = 0; i < 100000; i++) {
        float ex = rng_range(-100, 100), ez = rng_range(-100, 100);
        float qx = rng_range(-100, 100), qz = rng_range(-100, 100), r = rng_range(0, 150);
        cr_assert_eq(kz_grid_within(ex, ez, qx, qz, r), ref_within(ex, ez, qx, qz, r));
    }
    kz_grid_fini(&g);
}

Test(grid, queries_that_find_nothing_or_everything, .timeout = 120)
{
    kz_grid g;
    kz_grid_config cfg = {.max_entities = 100};
    cr_assert_eq(kz_grid_init(&g, &cfg, NULL), KZ_OK);
    uint32_t out[100], total = 123;
    cr_assert_eq(kz_grid_query(&g, 0, 0, INFINITY, out, 100, &total), 0, "empty grid");
    cr_assert_eq(total, 0);
    cr_assert_eq(kz_grid_insert(&g, 10, -1e6f, 1e6f), KZ_OK);
    cr_assert_eq(kz_grid_insert(&g, 20, 1e6f, -1e6f), KZ_OK);
    cr_assert_eq(kz_grid_insert(&g, 30, 0.5f, 0.5f), KZ_OK);
    static const struct { float x, z, r; uint32_t n; } cases[] = {
        {NAN, 0, 10, 0}, {0, NAN, 10, 0}, {INFINITY, 0, INFINITY, 0}, {0, -INFINITY, 1e9f, 0},
        {0, 0, NAN, 0}, {0, 0, -1.0f, 0}, {0, 0, -INFINITY, 0},
        {0, 0, INFINITY, 3}, {0, 0, 1e20f, 3}, {3e38f, -3e38f, 1e20f, 3},
        {3e38f, 0, 1e30f, 3}, {0, 0, 2.9e6f, 3}, {0, 0, 1.0f, 1}, {5e6f, 5e6f, 1000.0f, 0},
        {-1e6f, 1e6f, 0.0f, 1}, {-2e6f, 1e6f, 1e6f, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        total = 999;
        uint32_t n = kz_grid_query(&g, cases[i].x, cases[i].z, cases[i].r, out, 100, &total);
        cr_assert_eq(n, cases[i].n, "case %zu", i);
        cr_assert_eq(total, cases[i].n, "case %zu", i);
    }
    kz_grid_fini(&g);
}

Test(grid, truncation_reports_the_total_and_writes_a_prefix, .timeout = 120)
{
    kz_grid g;
    cr_assert_eq(kz_grid_init(&g, NULL, NULL), KZ_OK);
    for (uint32_t i = 0; i < 100; i++)
        cr_assert_eq(kz_grid_insert(&g, i * 3, (float)(i % 10), (float)(i / 10)), KZ_OK);
    uint32_t all[100], part[11], total = 0;
    cr_assert_eq(kz_grid_query(&g, 4.5f, 4.5f, 20.0f, all, 100, &total), 100);
    cr_assert_eq(total, 100);
    for (uint32_t cap = 0; cap <= 10; cap++) {
        for (uint32_t i = 0; i < 11; i++)
            part[i] = 0xAAAAAAAA;
        total = 0;
        cr_assert_eq(kz_grid_query(&g, 4.5f, 4.5f, 20.0f, part, cap, &total), cap);
        cr_assert_eq(total, 100, "the total counts past the cap");
        for (uint32_t i = 0; i < cap; i++)
            cr_assert_eq(part[i], all[i], "the output is the first cap results");
        cr_assert_eq(part[cap], 0xAAAAAAAA, "nothing written past the cap");
    }
    total = 0;
    cr_assert_eq(kz_grid_query(&g, 4.5f, 4.5f, 20.0f, NULL, 0, &total), 0);
    cr_assert_eq(total, 100);
    cr_assert_eq(kz_grid_query(&g, 4.5f, 4.5f, 20.0f, part, 5, NULL), 5, "total may be NULL");
    /* The callback form stops when asked. */
    float d2[100];
    uint32_t seq[100];
    collect c = {seq, d2, 0, 7};
    cr_assert_eq(kz_grid_query_fn(&g, 4.5f, 4.5f, 20.0f, collect_visit, &c), 7);
    for (uint32_t i = 0; i < 7; i++)
        cr_assert_eq(seq[i], all[i]);
    kz_grid_fini(&g);
}

Test(grid, order_is_row_by_row_then_list_order_or_by_id, .timeout = 120)
{
    kz_grid g;
    kz_grid_config cfg = {.cell_size = 16.0f, .max_entities = 1024};
    cr_assert_eq(kz_grid_init(&g, &cfg, NULL), KZ_OK);
    cr_assert_eq(kz_grid_insert(&g, 1, 20.0f, 40.0f), KZ_OK);  /* cell (1, 2) */
    cr_assert_eq(kz_grid_insert(&g, 2, 40.0f, 20.0f), KZ_OK);  /* cell (2, 1) */
    cr_assert_eq(kz_grid_insert(&g, 3, -5.0f, 20.0f), KZ_OK);  /* cell (-1, 1) */
    cr_assert_eq(kz_grid_insert(&g, 4, 41.0f, 21.0f), KZ_OK);  /* cell (2, 1), linked last */
    cr_assert_eq(kz_grid_insert(&g, 0, 16.0f, -0.5f), KZ_OK);  /* cell (1, -1) */
    uint32_t out[8], total;
    const uint32_t rows[] = {0, 3, 4, 2, 1};
    cr_assert_eq(kz_grid_query(&g, 16.0f, 20.0f, 40.0f, out, 8, &total), 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(out[i], rows[i], "position %d: %u", i, out[i]);
    /* A move inside a cell keeps the list order; a move out and back
     * relinks at the front. */
    cr_assert_eq(kz_grid_move(&g, 2, 47.0f, 31.0f), KZ_OK);
    cr_assert_eq(kz_grid_query(&g, 16.0f, 20.0f, 40.0f, out, 8, &total), 5);
    cr_assert_eq(out[2], 4);
    cr_assert_eq(kz_grid_move(&g, 4, 100.0f, 100.0f), KZ_OK);
    cr_assert_eq(kz_grid_move(&g, 4, 41.0f, 21.0f), KZ_OK);
    cr_assert_eq(kz_grid_move(&g, 2, 100.0f, 100.0f), KZ_OK);
    cr_assert_eq(kz_grid_move(&g, 2, 40.0f, 20.0f), KZ_OK);
    cr_assert_eq(kz_grid_query(&g, 16.0f, 20.0f, 40.0f, out, 8, &total), 5);
    cr_assert_eq(out[2], 2);
    cr_assert_eq(out[3], 4);
    /* A square wider than max_entities / 4 cells scans ids in order. */
    const uint32_t ids[] = {0, 1, 2, 3, 4};
    cr_assert_eq(kz_grid_query(&g, 16.0f, 20.0f, 5000.0f, out, 8, &total), 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(out[i], ids[i]);
    kz_grid_fini(&g);
}

Test(grid, same_history_gives_the_same_order, .timeout = 120)
{
    kz_grid a, b;
    kz_grid_config cfg = {.max_entities = 2000};
    cr_assert_eq(kz_grid_init(&a, &cfg, NULL), KZ_OK);
    cr_assert_eq(kz_grid_init(&b, &cfg, NULL), KZ_OK);
    for (int pass = 0; pass < 2; pass++) {
        kz_grid *g = pass ? &b : &a;
        rng_seed(99);
        for (uint32_t i = 0; i < 2000; i++)
            cr_assert_eq(kz_grid_insert(g, i, rng_range(-100, 100), rng_range(-100, 100)), KZ_OK);
        for (int i = 0; i < 20000; i++)
            cr_assert_eq(kz_grid_move(g, rng_below(2000), rng_range(-100, 100),
                                      rng_range(-100, 100)), KZ_OK);
    }
    static uint32_t oa[2000], ob[2000];
    uint32_t ta, tb;
    for (int q = 0; q < 50; q++) {
        float x = (float)(q * 4 - 100), r = (float)(q * 2);
        uint32_t na = kz_grid_query(&a, x, -x, r, oa, 2000, &ta);
        uint32_t nb = kz_grid_query(&b, x, -x, r, ob, 2000, &tb);
        cr_assert_eq(na, nb);
        cr_assert_eq(memcmp(oa, ob, na * sizeof(uint32_t)), 0, "query %d", q);
    }
    kz_grid_fini(&a);
    kz_grid_fini(&b);
}

static int32_t cell_x(const kz_grid *g, uint32_t id)
{
    return (int32_t)(uint32_t)(g->cell[id] >> 32);
}

static int32_t cell_z(const kz_grid *g, uint32_t id)
{
    return (int32_t)(uint32_t)g->cell[id];
}

Test(grid, cells_are_floor_of_position_over_cell_size, .timeout = 60)
{
    kz_grid g;
    kz_grid_config cfg = {.cell_size = 16.0f};
    cr_assert_eq(kz_grid_init(&g, &cfg, NULL), KZ_OK);
    static const struct { float v; int32_t cell; } cases[] = {
        {0.0f, 0}, {-0.0f, 0}, {1e-30f, 0}, {-1e-30f, -1}, {-0.5f, -1}, {15.999999f, 0},
        {16.0f, 1}, {-16.0f, -1}, {-16.000002f, -2}, {-15.999999f, -1}, {31.99f, 1},
        {-1e6f, -62500}, {1e6f, 62500}, {999999.9375f, 62499}, {-999999.9375f, -62500},
    };
    for (uint32_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(kz_grid_insert(&g, i, cases[i].v, -cases[i].v), KZ_OK);
        cr_assert_eq(cell_x(&g, i), cases[i].cell, "x = %.9g", (double)cases[i].v);
        cr_assert_eq(kz_grid_move(&g, i, 0.0f, cases[i].v), KZ_OK);
        cr_assert_eq(cell_x(&g, i), 0);
        cr_assert_eq(cell_z(&g, i), cases[i].cell, "z = %.9g", (double)cases[i].v);
    }
    kz_grid_fini(&g);
}

Test(grid, neighbouring_cells_spread_over_the_buckets, .timeout = 60)
{
    /* A 32 x 32 block of cells, one entity each, in 2,048 buckets: a weak
     * hash (or none) piles them into few lists, which queries then walk. */
    kz_grid g;
    kz_grid_config cfg = {.cell_size = 16.0f, .max_entities = 1024};
    cr_assert_eq(kz_grid_init(&g, &cfg, NULL), KZ_OK);
    cr_assert_eq(g.bucket_mask + 1, 2048);
    for (uint32_t i = 0; i < 1024; i++)
        cr_assert_eq(kz_grid_insert(&g, i, (float)(i % 32) * 16.0f - 256.0f,
                                    (float)(i / 32) * 16.0f - 256.0f), KZ_OK);
    uint32_t used = 0, longest = 0;
    for (uint32_t b = 0; b < 2048; b++) {
        uint32_t len = 0;
        for (uint32_t id = g.head[b]; id != KZ__GRID_NIL; id = g.next[id])
            len++;
        used += len > 0;
        longest = len > longest ? len : longest;
    }
    /* A random function fills 2048 * (1 - e^-0.5) = 806 buckets on average,
     * longest list about 5. */
    cr_assert_geq(used, 700, "only %u buckets used", used);
    cr_assert_leq(longest, 8, "a list of %u", longest);
    kz_grid_fini(&g);
}

/* ---- bad input ------------------------------------------------------------ */

Test(grid, bad_positions_are_refused_and_change_nothing, .timeout = 120)
{
    kz_grid g;
    cr_assert_eq(kz_grid_init(&g, NULL, NULL), KZ_OK);
    cr_assert_eq(kz_grid_insert(&g, 5, 1.0f, 2.0f), KZ_OK);
    static const struct { float x, z; int rc; } bad[] = {
        {NAN, 0, KZ_ENOTFINITE}, {0, NAN, KZ_ENOTFINITE}, {INFINITY, 0, KZ_ENOTFINITE},
        {0, -INFINITY, KZ_ENOTFINITE}, {2e6f, NAN, KZ_ENOTFINITE}, {-NAN, 3e38f, KZ_ENOTFINITE},
        {1.0000001e6f, 0, KZ_ERANGE}, {0, -1.0000001e6f, KZ_ERANGE}, {3e38f, 0, KZ_ERANGE},
        {-FLT_MAX, -FLT_MAX, KZ_ERANGE},
    };
    uint32_t out[4], total;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(kz_grid_insert(&g, 6, bad[i].x, bad[i].z), bad[i].rc, "insert case %zu", i);
        cr_assert_eq(kz_grid_contains(&g, 6), 0);
        cr_assert_eq(kz_grid_move(&g, 5, bad[i].x, bad[i].z), bad[i].rc, "move case %zu", i);
        float x = 0, z = 0;
        cr_assert_eq(kz_grid_position(&g, 5, &x, &z), KZ_OK);
        cr_assert(x == 1.0f && z == 2.0f, "a failed move leaves the entity in place");
        cr_assert_eq(kz_grid_count(&g), 1);
        cr_assert_eq(kz_grid_query(&g, 1.0f, 2.0f, 0.0f, out, 4, &total), 1);
        cr_assert_eq(out[0], 5);
    }
    /* The bound is inclusive. */
    cr_assert_eq(kz_grid_move(&g, 5, 1e6f, -1e6f), KZ_OK);
    cr_assert_eq(kz_grid_query(&g, 1e6f, -1e6f, 0.0f, out, 4, &total), 1);
    cr_assert_eq(kz_grid_insert(&g, 6, -1e6f, 1e6f), KZ_OK);
    kz_grid_fini(&g);

    kz_grid_config cfg = {.bound = 100.0f};
    cr_assert_eq(kz_grid_init(&g, &cfg, NULL), KZ_OK);
    cr_assert_eq(kz_grid_insert(&g, 0, 100.0f, -100.0f), KZ_OK);
    cr_assert_eq(kz_grid_insert(&g, 1, nextafterf(100.0f, 200.0f), 0.0f), KZ_ERANGE);
    cr_assert_eq(kz_grid_move(&g, 0, 0.0f, -100.5f), KZ_ERANGE);
    kz_grid_fini(&g);
}

Test(grid, id_misuse_is_reported, .timeout = 120)
{
    kz_grid g;
    kz_grid_config cfg = {.max_entities = 10};
    cr_assert_eq(kz_grid_init(&g, &cfg, NULL), KZ_OK);
    cr_assert_eq(kz_grid_insert(&g, 9, 1.0f, 1.0f), KZ_OK, "the last id fits");
    cr_assert_eq(kz_grid_insert(&g, 10, 1.0f, 1.0f), KZ_EINVAL, "one past max_entities");
    cr_assert_eq(kz_grid_insert(&g, UINT32_MAX, 1.0f, 1.0f), KZ_EINVAL);
    cr_assert_eq(kz_grid_move(&g, 10, 1.0f, 1.0f), KZ_EINVAL);
    cr_assert_eq(kz_grid_remove(&g, 10), KZ_EINVAL);
    cr_assert_eq(kz_grid_contains(&g, 10), 0);
    cr_assert_eq(kz_grid_insert(&g, 9, 5.0f, 5.0f), KZ_EINVAL, "already present");
    float x, z;
    cr_assert_eq(kz_grid_position(&g, 9, &x, &z), KZ_OK);
    cr_assert(x == 1.0f && z == 1.0f, "a refused insert keeps the old position");
    cr_assert_eq(kz_grid_move(&g, 3, 1.0f, 1.0f), KZ_EINVAL, "not present");
    cr_assert_eq(kz_grid_remove(&g, 3), KZ_EINVAL);
    cr_assert_eq(kz_grid_position(&g, 3, &x, &z), KZ_EINVAL);
    cr_assert_eq(kz_grid_remove(&g, 9), KZ_OK);
    cr_assert_eq(kz_grid_remove(&g, 9), KZ_EINVAL, "removed twice");
    cr_assert_eq(kz_grid_count(&g), 0);
    /* Every id at once, then a clear. */
    for (uint32_t i = 0; i < 10; i++)
        cr_assert_eq(kz_grid_insert(&g, i, 0.25f, 0.25f), KZ_OK);
    uint32_t out[10], total;
    cr_assert_eq(kz_grid_query(&g, 0, 0, 1, out, 10, &total), 10);
    kz_grid_clear(&g);
    cr_assert_eq(kz_grid_count(&g), 0);
    cr_assert_eq(kz_grid_query(&g, 0, 0, 1, out, 10, &total), 0);
    cr_assert_eq(kz_grid_insert(&g, 4, 0.25f, 0.25f), KZ_OK, "ids are free after a clear");
    kz_grid_fini(&g);

    cfg.max_entities = 1;
    cr_assert_eq(kz_grid_init(&g, &cfg, NULL), KZ_OK);
    cr_assert_eq(kz_grid_insert(&g, 0, -3.0f, 7.0f), KZ_OK);
    cr_assert_eq(kz_grid_insert(&g, 1, -3.0f, 7.0f), KZ_EINVAL);
    cr_assert_eq(kz_grid_query(&g, -3.0f, 7.0f, 0.0f, out, 10, &total), 1);
    cr_assert_eq(kz_grid_move(&g, 0, 500.0f, -500.0f), KZ_OK);
    cr_assert_eq(kz_grid_query(&g, 500.0f, -500.0f, 1.0f, out, 10, &total), 1);
    kz_grid_fini(&g);
}

Test(grid, configuration_limits, .timeout = 120)
{
    static const kz_grid_config bad[] = {
        {.cell_size = NAN}, {.cell_size = -1.0f}, {.cell_size = INFINITY},
        {.cell_size = 0.0009f}, {.cell_size = 1.5e6f},
        {.bound = -1.0f}, {.bound = NAN}, {.bound = INFINITY}, {.bound = 1.0000001e6f},
        {.max_entities = KZ_GRID_MAX_ENTITIES + 1}, {.max_entities = UINT32_MAX},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kz_grid g;
        cr_assert_eq(kz_grid_init(&g, &bad[i], NULL), KZ_EINVAL, "case %zu", i);
        kz_grid_fini(&g); /* harmless after a failed init */
        cr_assert_eq(kz_grid_footprint(&bad[i]), 0, "case %zu", i);
    }
    kz_grid_config def;
    kz_grid_config_default(&def);
    cr_assert(def.cell_size == 16.0f && def.max_entities == 4096 && def.bound == 1e6f);
    cr_assert_eq(kz_grid_footprint(NULL), 131072, "the figure in the header");
    cr_assert_eq(kz_grid_footprint(&def), 131072);
    kz_grid_config one = {.max_entities = 1}, most = {.max_entities = KZ_GRID_MAX_ENTITIES};
    cr_assert_eq(kz_grid_footprint(&one), 6 * 64, "six arrays of one cache line");
    cr_assert_eq(kz_grid_footprint(&most), (size_t)KZ_GRID_MAX_ENTITIES * (24 + 8));
    kz_grid_config limits = {.cell_size = KZ_GRID_MIN_CELL_SIZE, .bound = KZ_GRID_MAX_BOUND};
    kz_grid g;
    cr_assert_eq(kz_grid_init(&g, &limits, NULL), KZ_OK);
    cr_assert_eq(g.bucket_mask + 1, 8192);
    cr_assert_eq(kz_grid_insert(&g, 0, 1e6f, -1e6f), KZ_OK, "cells stay inside int32");
    cr_assert_eq(kz_grid_insert(&g, 1, 999999.9375f, -999999.9375f), KZ_OK);
    uint32_t out[2], total;
    cr_assert_eq(kz_grid_query(&g, 1e6f, -1e6f, 0.1f, out, 2, &total), 2);
    kz_grid_fini(&g);
}

/* ---- allocation ----------------------------------------------------------- */

Test(grid, allocates_only_at_init, .timeout = 120)
{
    kz_counting_alloc ca;
    kz_counting_alloc_init(&ca, NULL);
    kz_allocator a = kz_counting_alloc_allocator(&ca);
    kz_grid_config cfg = {.max_entities = 5000};
    kz_grid g;
    cr_assert_eq(kz_grid_init(&g, &cfg, &a), KZ_OK);
    uint64_t allocs = kz_counting_alloc_allocs(&ca);
    cr_assert_eq(allocs, 1, "one block");
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), kz_grid_footprint(&cfg));
    rng_seed(3);
    static uint32_t out[5000];
    uint32_t total;
    for (uint32_t i = 0; i < 5000; i++)
        cr_assert_eq(kz_grid_insert(&g, i, rng_range(-500, 500), rng_range(-500, 500)), KZ_OK);
    for (int t = 0; t < 20; t++) {
        for (uint32_t i = 0; i < 5000; i++) {
            float x, z;
            cr_assert_eq(kz_grid_position(&g, i, &x, &z), KZ_OK);
            x = fminf(fmaxf(x + rng_range(-20, 20), -500), 500);
            cr_assert_eq(kz_grid_move(&g, i, x, z), KZ_OK);
        }
        for (uint32_t i = 0; i < 500; i++)
            (void)kz_grid_query(&g, g.x[i * 10], g.z[i * 10], t == 0 ? 1e9f : 50.0f, out, 5000,
                                &total);
        for (uint32_t i = 0; i < 100; i++)
            cr_assert_eq(kz_grid_remove(&g, i * 7), KZ_OK);
        for (uint32_t i = 0; i < 100; i++)
            cr_assert_eq(kz_grid_insert(&g, i * 7, 0.0f, 0.0f), KZ_OK);
    }
    kz_grid_clear(&g);
    cr_assert_eq(kz_counting_alloc_allocs(&ca), allocs, "no allocation after init");
    kz_grid_fini(&g);
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0);

    ca.fail_after = 0;
    cr_assert_eq(kz_grid_init(&g, &cfg, &a), KZ_ENOMEM);
    kz_grid_fini(&g);
}
