/*
 * Spatial hash grid (see kizuna/grid.h for the contract). The hot paths are
 * kz_grid_move, which the server calls for every avatar every tick, and the
 * per-cell list walk in queries; both touch only index arrays.
 *
 * Query correctness rests on one property: the cell function is monotone
 * (x <= x' implies cell(x) <= cell(x')), because every step in it (a double
 * multiply by a positive constant, floor, clamp) is. An entity passing the
 * float distance rule lies within r * (1 + 2^-22) + 6e-23 of the query point
 * on each axis (rounding of the subtraction, the squares and the sum can
 * admit slightly more than the exact disk), so widening the scanned square
 * by a relative 1e-5 and an absolute 1e-15 puts every such entity's cell
 * inside the scanned range.
 */
#include <math.h>
#include <string.h>

#include <kizuna/grid.h>

#include "core/assert.h"

/* Query squares wider than max_entities / KZ__GRID_SCAN_RATIO cells scan
 * the id arrays instead: a cell visit (hash, random head load) costs about
 * as much as checking several ids in sequence. */
#define KZ__GRID_SCAN_RATIO 4u

/* Slack of the scanned square, see the file comment. */
#define KZ__GRID_SLACK_REL 1e-5
#define KZ__GRID_SLACK_ABS 1e-15

void kz_grid_config_default(kz_grid_config *cfg)
{
    KZ_ASSERT(cfg != NULL);
    cfg->cell_size = KZ_GRID_DEFAULT_CELL_SIZE;
    cfg->max_entities = KZ_GRID_DEFAULT_MAX_ENTITIES;
    cfg->bound = KZ_GRID_MAX_BOUND;
}

static int kz__grid_resolve(kz_grid_config *out, const kz_grid_config *in)
{
    kz_grid_config_default(out);
    if (in == NULL)
        return KZ_OK;
    if (in->cell_size != 0.0f)
        out->cell_size = in->cell_size;
    if (in->max_entities != 0)
        out->max_entities = in->max_entities;
    if (in->bound != 0.0f)
        out->bound = in->bound;
    /* Written so that NaN fails every test. */
    if (!(out->cell_size >= KZ_GRID_MIN_CELL_SIZE && out->cell_size <= KZ_GRID_MAX_BOUND))
        return KZ_EINVAL;
    if (!(out->bound > 0.0f && out->bound <= KZ_GRID_MAX_BOUND))
        return KZ_EINVAL;
    if (out->max_entities > KZ_GRID_MAX_ENTITIES)
        return KZ_EINVAL;
    return KZ_OK;
}

/* Smallest power of two >= 2 * n (n <= 2^24, so no overflow). */
static uint32_t kz__grid_bucket_count(uint32_t n)
{
    uint32_t b = 2;
    while (b < 2 * n)
        b <<= 1;
    return b;
}

typedef struct kz__grid_layout {
    size_t head, next, prev, cell, x, z, size;
    uint32_t buckets;
} kz__grid_layout;

/* Every array starts on a 64-byte boundary of the block. */
static size_t kz__grid_place(size_t *off, size_t bytes)
{
    size_t at = *off;
    *off += (bytes + 63) & ~(size_t)63;
    return at;
}

static void kz__grid_layout_of(kz__grid_layout *l, const kz_grid_config *cfg)
{
    size_t n = cfg->max_entities, off = 0;
    l->buckets = kz__grid_bucket_count(cfg->max_entities);
    l->head = kz__grid_place(&off, (size_t)l->buckets * sizeof(uint32_t));
    l->next = kz__grid_place(&off, n * sizeof(uint32_t));
    l->prev = kz__grid_place(&off, n * sizeof(uint32_t));
    l->cell = kz__grid_place(&off, n * sizeof(uint64_t));
    l->x = kz__grid_place(&off, n * sizeof(float));
    l->z = kz__grid_place(&off, n * sizeof(float));
    l->size = off;
}

size_t kz_grid_footprint(const kz_grid_config *cfg)
{
    kz_grid_config c;
    if (kz__grid_resolve(&c, cfg) != KZ_OK)
        return 0;
    kz__grid_layout l;
    kz__grid_layout_of(&l, &c);
    return l.size;
}

/* floor(v * inv_cell) clamped to int32. The cast truncates toward zero,
 * so negative non-integers step down by one. */
static inline int32_t kz__grid_coord(const kz_grid *g, double v)
{
    double t = v * g->inv_cell;
    if (!(t > -2147483648.0))
        return INT32_MIN;
    if (t >= 2147483647.0)
        return INT32_MAX;
    int64_t i = (int64_t)t;
    if ((double)i > t)
        i--;
    return (int32_t)i;
}

static inline uint64_t kz__grid_key(int32_t cx, int32_t cz)
{
    return ((uint64_t)(uint32_t)cx << 32) | (uint32_t)cz;
}

/* splitmix64's finalizer: adjacent cells land in unrelated buckets. */
static inline uint32_t kz__grid_bucket(const kz_grid *g, uint64_t key)
{
    key ^= key >> 30;
    key *= UINT64_C(0xBF58476D1CE4E5B9);
    key ^= key >> 27;
    key *= UINT64_C(0x94D049BB133111EB);
    key ^= key >> 31;
    return (uint32_t)key & g->bucket_mask;
}

int kz_grid_init(kz_grid *g, const kz_grid_config *cfg, const kz_allocator *alloc)
{
    KZ_ASSERT(g != NULL);
    memset(g, 0, sizeof *g);
    g->alloc = alloc ? *alloc : kz_allocator_default();
    kz_allocator_resolve(&g->alloc);
    if (kz__grid_resolve(&g->cfg, cfg) != KZ_OK)
        return KZ_EINVAL;
    kz__grid_layout l;
    kz__grid_layout_of(&l, &g->cfg);
    uint8_t *b = kz_alloc(&g->alloc, l.size, 64);
    if (b == NULL)
        return KZ_ENOMEM;
    g->block = b;
    g->block_size = l.size;
    g->head = (uint32_t *)(void *)(b + l.head);
    g->next = (uint32_t *)(void *)(b + l.next);
    g->prev = (uint32_t *)(void *)(b + l.prev);
    g->cell = (uint64_t *)(void *)(b + l.cell);
    g->x = (float *)(void *)(b + l.x);
    g->z = (float *)(void *)(b + l.z);
    g->bucket_mask = l.buckets - 1;
    g->inv_cell = 1.0 / (double)g->cfg.cell_size;
    g->cell_min = kz__grid_coord(g, -(double)g->cfg.bound);
    g->cell_max = kz__grid_coord(g, (double)g->cfg.bound);
    kz_grid_clear(g);
    return KZ_OK;
}

void kz_grid_fini(kz_grid *g)
{
    KZ_ASSERT(g != NULL);
    kz_free(&g->alloc, g->block, g->block_size);
    g->block = NULL;
    g->head = g->next = g->prev = NULL;
    g->cell = NULL;
    g->x = g->z = NULL;
    g->count = 0;
}

void kz_grid_clear(kz_grid *g)
{
    KZ_ASSERT(g != NULL && g->block != NULL);
    /* 0xFF bytes make every head NIL; ABSENT needs a loop. */
    memset(g->head, 0xFF, ((size_t)g->bucket_mask + 1) * sizeof(uint32_t));
    for (uint32_t i = 0; i < g->cfg.max_entities; i++)
        g->next[i] = KZ__GRID_ABSENT;
    g->count = 0;
}

/* KZ_ENOTFINITE before KZ_ERANGE, as documented. */
static inline int kz__grid_check_pos(const kz_grid *g, float x, float z)
{
    if (!isfinite(x) || !isfinite(z))
        return KZ_ENOTFINITE;
    if (fabsf(x) > g->cfg.bound || fabsf(z) > g->cfg.bound)
        return KZ_ERANGE;
    return KZ_OK;
}

static inline int kz__grid_present(const kz_grid *g, uint32_t id)
{
    return id < g->cfg.max_entities && g->next[id] != KZ__GRID_ABSENT;
}

static inline uint64_t kz__grid_key_of(const kz_grid *g, float x, float z)
{
    return kz__grid_key(kz__grid_coord(g, x), kz__grid_coord(g, z));
}

static inline void kz__grid_link(kz_grid *g, uint32_t id, uint32_t bucket)
{
    uint32_t h = g->head[bucket];
    g->next[id] = h;
    g->prev[id] = KZ__GRID_NIL;
    if (h != KZ__GRID_NIL)
        g->prev[h] = id;
    g->head[bucket] = id;
}

/* Leaves next[id] for the caller to set (ABSENT, or the new link). */
static inline void kz__grid_unlink(kz_grid *g, uint32_t id, uint32_t bucket)
{
    uint32_t n = g->next[id], p = g->prev[id];
    if (p == KZ__GRID_NIL)
        g->head[bucket] = n;
    else
        g->next[p] = n;
    if (n != KZ__GRID_NIL)
        g->prev[n] = p;
}

int kz_grid_insert(kz_grid *g, uint32_t id, float x, float z)
{
    KZ_ASSERT(g != NULL);
    if (id >= g->cfg.max_entities || g->next[id] != KZ__GRID_ABSENT)
        return KZ_EINVAL;
    int rc = kz__grid_check_pos(g, x, z);
    if (rc != KZ_OK)
        return rc;
    uint64_t key = kz__grid_key_of(g, x, z);
    g->cell[id] = key;
    g->x[id] = x;
    g->z[id] = z;
    kz__grid_link(g, id, kz__grid_bucket(g, key));
    g->count++;
    return KZ_OK;
}

int kz_grid_move(kz_grid *g, uint32_t id, float x, float z)
{
    KZ_ASSERT(g != NULL);
    if (!kz__grid_present(g, id))
        return KZ_EINVAL;
    int rc = kz__grid_check_pos(g, x, z);
    if (rc != KZ_OK)
        return rc;
    g->x[id] = x;
    g->z[id] = z;
    uint64_t key = kz__grid_key_of(g, x, z);
    uint64_t old = g->cell[id];
    if (key == old)
        return KZ_OK;
    g->cell[id] = key;
    uint32_t from = kz__grid_bucket(g, old), to = kz__grid_bucket(g, key);
    /* A new cell in the same bucket keeps its place in the list. */
    if (from != to) {
        kz__grid_unlink(g, id, from);
        kz__grid_link(g, id, to);
    }
    return KZ_OK;
}

int kz_grid_remove(kz_grid *g, uint32_t id)
{
    KZ_ASSERT(g != NULL);
    if (!kz__grid_present(g, id))
        return KZ_EINVAL;
    kz__grid_unlink(g, id, kz__grid_bucket(g, g->cell[id]));
    g->next[id] = KZ__GRID_ABSENT;
    g->count--;
    return KZ_OK;
}

int kz_grid_contains(const kz_grid *g, uint32_t id)
{
    KZ_ASSERT(g != NULL);
    return kz__grid_present(g, id);
}

int kz_grid_position(const kz_grid *g, uint32_t id, float *x, float *z)
{
    KZ_ASSERT(g != NULL && x != NULL && z != NULL);
    if (!kz__grid_present(g, id))
        return KZ_EINVAL;
    *x = g->x[id];
    *z = g->z[id];
    return KZ_OK;
}

uint32_t kz_grid_count(const kz_grid *g)
{
    KZ_ASSERT(g != NULL);
    return g->count;
}

/* ---- queries ------------------------------------------------------------ */

/* Where results go: a callback when fn is set, else the id array. */
typedef struct kz__grid_sink {
    kz_grid_visit_fn fn;
    void *ctx;
    uint32_t *out;
    uint32_t cap;
    uint32_t found;
    int stopped;
} kz__grid_sink;

static inline void kz__grid_emit(kz__grid_sink *s, uint32_t id, float d2)
{
    if (s->fn != NULL) {
        s->found++;
        s->stopped = s->fn(s->ctx, id, d2) != 0;
        return;
    }
    if (s->found < s->cap)
        s->out[s->found] = id;
    s->found++;
}

/* The distance rule of the header, returning d2 for the callback. */
static inline int kz__grid_hit(float ex, float ez, float qx, float qz, float r2, float *d2)
{
    float dx = ex - qx;
    float dz = ez - qz;
    float dx2 = dx * dx;
    float dz2 = dz * dz;
    *d2 = dx2 + dz2;
    return *d2 <= r2;
}

static void kz__grid_scan_ids(const kz_grid *g, float qx, float qz, float r2, kz__grid_sink *s)
{
    for (uint32_t id = 0; id < g->cfg.max_entities && !s->stopped; id++) {
        float d2;
        if (g->next[id] != KZ__GRID_ABSENT && kz__grid_hit(g->x[id], g->z[id], qx, qz, r2, &d2))
            kz__grid_emit(s, id, d2);
    }
}

/* The list walk is the innermost loop of every query. It keeps the sink's
 * fields in locals: stores to out[] could alias them, which would make the
 * compiler reload them for every entity. */
static void kz__grid_scan_cell(const kz_grid *g, int32_t cx, int32_t cz, float qx, float qz,
                               float r2, kz__grid_sink *s)
{
    const uint64_t key = kz__grid_key(cx, cz);
    const uint64_t *cell = g->cell;
    const uint32_t *next = g->next;
    const float *px = g->x, *pz = g->z;
    uint32_t *out = s->out;
    uint32_t found = s->found, cap = s->cap;
    for (uint32_t id = g->head[kz__grid_bucket(g, key)]; id != KZ__GRID_NIL; id = next[id]) {
        float d2;
        if (cell[id] != key || !kz__grid_hit(px[id], pz[id], qx, qz, r2, &d2))
            continue;
        if (s->fn != NULL) {
            s->found = found + 1;
            if (s->fn(s->ctx, id, d2) != 0) {
                s->stopped = 1;
                return;
            }
        } else if (found < cap) {
            out[found] = id;
        }
        found++;
    }
    s->found = found;
}

/* Cell range [*lo, *hi] of q +- reach, clipped to the bounds' cells.
 * Returns the number of cells on the axis (0 if the range misses). */
static uint64_t kz__grid_span(const kz_grid *g, float q, double reach, int32_t *lo, int32_t *hi)
{
    int32_t a = kz__grid_coord(g, (double)q - reach);
    int32_t b = kz__grid_coord(g, (double)q + reach);
    *lo = a > g->cell_min ? a : g->cell_min;
    *hi = b < g->cell_max ? b : g->cell_max;
    return *lo <= *hi ? (uint64_t)((int64_t)*hi - *lo) + 1 : 0;
}

static void kz__grid_run(const kz_grid *g, float qx, float qz, float radius, kz__grid_sink *s)
{
    /* NaN fails both tests, so it finds nothing as documented. */
    if (!isfinite(qx) || !isfinite(qz) || !(radius >= 0.0f) || g->count == 0)
        return;
    float r2 = radius * radius;
    if (isinf(r2)) {
        kz__grid_scan_ids(g, qx, qz, r2, s);
        return;
    }
    double reach = (double)radius * (1.0 + KZ__GRID_SLACK_REL) + KZ__GRID_SLACK_ABS;
    int32_t x0, x1, z0, z1;
    uint64_t wx = kz__grid_span(g, qx, reach, &x0, &x1);
    uint64_t wz = kz__grid_span(g, qz, reach, &z0, &z1);
    if (wx == 0 || wz == 0)
        return;
    /* Each side is below 2^32, so test them before the product. */
    uint64_t limit = g->cfg.max_entities / KZ__GRID_SCAN_RATIO;
    if (wx > limit || wz > limit || wx * wz > limit) {
        kz__grid_scan_ids(g, qx, qz, r2, s);
        return;
    }
    for (int64_t cz = z0; cz <= z1; cz++)
        for (int64_t cx = x0; cx <= x1; cx++) {
            kz__grid_scan_cell(g, (int32_t)cx, (int32_t)cz, qx, qz, r2, s);
            if (s->stopped)
                return;
        }
}

uint32_t kz_grid_query(const kz_grid *g, float x, float z, float radius, uint32_t *out,
                       uint32_t cap, uint32_t *total)
{
    KZ_ASSERT(g != NULL && (out != NULL || cap == 0));
    kz__grid_sink s = {NULL, NULL, out, cap, 0, 0};
    kz__grid_run(g, x, z, radius, &s);
    if (total != NULL)
        *total = s.found;
    return s.found < cap ? s.found : cap;
}

uint32_t kz_grid_query_fn(const kz_grid *g, float x, float z, float radius,
                          kz_grid_visit_fn fn, void *ctx)
{
    KZ_ASSERT(g != NULL && fn != NULL);
    kz__grid_sink s = {fn, ctx, NULL, 0, 0, 0};
    kz__grid_run(g, x, z, radius, &s);
    return s.found;
}

/* ---- copies for the world image (sim/frame.h) ---------------------------- */

int kz__grid_copy(kz_grid *dst, const kz_grid *src)
{
    if (dst->block_size != src->block_size || dst->cfg.max_entities != src->cfg.max_entities)
        return KZ_EINVAL;
    /* Same configuration, so the same layout: the block is all there is. */
    memcpy(dst->block, src->block, src->block_size);
    dst->count = src->count;
    return KZ_OK;
}
