/*
 * Interest management (see sim/interest.h for the rules). Tuned for the
 * server's tick: 4,000 viewers, each asking once per tick at 30 Hz, with
 * some 100 to 400 entities within the leave radius and a result of about
 * 100. One select is one grid query into a scratch array, a branch-free
 * pass over the hits that applies the radii, a pass over the candidates
 * for the hook and the score, then a partial selection of the best
 * max_visible and a sort of those only.
 *
 * Ranking works on 64-bit keys: the score's bits, mapped so that unsigned
 * order is float order, above the complement of the entity index. The
 * largest key is then the highest score with the lowest index, every key
 * is distinct (indices are), and comparing two candidates is one integer
 * compare. The score is recovered from the key for out_score.
 *
 * The `was` byte map marks `prev` for the duration of one select and is
 * cleared from `prev` again afterwards, so a select costs nothing in
 * proportion to max_entities.
 */
#include <string.h>

#include "sim/interest.h"

#include "core/assert.h"

#define KZ__INTEREST_DEFAULT_RADIUS 50.0f
#define KZ__INTEREST_DEFAULT_HYSTERESIS 5.0f
#define KZ__INTEREST_DEFAULT_MAX_VISIBLE 100u
#define KZ__INTEREST_DEFAULT_CANDIDATES_PER_VISIBLE 4u
#define KZ__INTEREST_DEFAULT_KEEP_BONUS 1.5f

/* A select scans the grid's arrays instead of its cell lists when the last
 * one found at least max_entities / KZ__INTEREST_DENSE_RATIO hits: a list
 * step costs about as much as scanning this many ids. */
#define KZ__INTEREST_DENSE_RATIO 5u

/* Ranges at most this long are finished by insertion sort. */
#define KZ__INTEREST_SMALL 16u

/* ---- configuration ------------------------------------------------------ */

static int kz__interest_positive(float v)
{
    return isfinite(v) && v > 0.0f;
}

int kz_interest_config_resolve(kz_interest_config *cfg)
{
    KZ_ASSERT(cfg != NULL);
    kz_interest_config c = *cfg;
    if (c.radius == 0.0f)
        c.radius = KZ__INTEREST_DEFAULT_RADIUS;
    if (c.hysteresis == 0.0f)
        c.hysteresis = KZ__INTEREST_DEFAULT_HYSTERESIS;
    if (c.max_visible == 0)
        c.max_visible = KZ__INTEREST_DEFAULT_MAX_VISIBLE;
    if (c.max_candidates == 0)
        c.max_candidates = KZ__INTEREST_DEFAULT_CANDIDATES_PER_VISIBLE * c.max_visible;
    if (c.keep_bonus == 0.0f)
        c.keep_bonus = KZ__INTEREST_DEFAULT_KEEP_BONUS;
    if (!kz__interest_positive(c.radius) || !kz__interest_positive(c.hysteresis) ||
        !isfinite(c.radius + c.hysteresis))
        return KZ_EINVAL;
    if (c.max_visible > KZ_INTEREST_MAX_VISIBLE || c.max_candidates < c.max_visible ||
        c.max_candidates > KZ_INTEREST_MAX_CANDIDATES)
        return KZ_EINVAL;
    /* Written so that NaN fails too. */
    if (!(isfinite(c.keep_bonus) && c.keep_bonus >= 1.0f))
        return KZ_EINVAL;
    *cfg = c;
    return KZ_OK;
}

/* ---- lifecycle ---------------------------------------------------------- */

int kz_interest_init(kz_interest *in, const kz_interest_config *cfg, uint32_t max_entities,
                     const kz_allocator *alloc)
{
    KZ_ASSERT(in != NULL);
    memset(in, 0, sizeof *in);
    kz_interest_config c = {0};
    if (cfg != NULL)
        c = *cfg;
    if (kz_interest_config_resolve(&c) != KZ_OK || max_entities == 0 ||
        max_entities > KZ_GRID_MAX_ENTITIES)
        return KZ_EINVAL;
    kz_allocator a = {0};
    if (alloc != NULL)
        a = *alloc;
    kz_allocator_resolve(&a);
    in->cfg = c;
    in->alloc = a;
    in->max_entities = max_entities;
    in->cand = kz_alloc(&a, (size_t)max_entities * sizeof *in->cand, 64);
    in->key = kz_alloc(&a, (size_t)max_entities * sizeof *in->key, 64);
    in->was = kz_calloc(&a, max_entities, 64);
    if (in->cand == NULL || in->key == NULL || in->was == NULL) {
        kz_interest_fini(in);
        return KZ_ENOMEM;
    }
    return KZ_OK;
}

void kz_interest_fini(kz_interest *in)
{
    KZ_ASSERT(in != NULL);
    size_t n = in->max_entities;
    kz_free(&in->alloc, in->cand, n * sizeof *in->cand);
    kz_free(&in->alloc, in->key, n * sizeof *in->key);
    kz_free(&in->alloc, in->was, n);
    memset(in, 0, sizeof *in);
}

/* ---- keys --------------------------------------------------------------- */

/* Maps float bits to an unsigned value with the same order (negatives
 * reversed below the positives), then appends ~id so that of two equal
 * scores the lower id has the larger key. */
static inline uint64_t kz__interest_key(float score, uint32_t id)
{
    uint32_t b;
    memcpy(&b, &score, sizeof b);
    b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return ((uint64_t)b << 32) | (uint32_t)~id;
}

static inline uint32_t kz__interest_key_id(uint64_t key)
{
    return ~(uint32_t)key;
}

static inline float kz__interest_key_score(uint64_t key)
{
    uint32_t b = (uint32_t)(key >> 32);
    b = (b & 0x80000000u) ? (b & 0x7FFFFFFFu) : ~b;
    float s;
    memcpy(&s, &b, sizeof s);
    return s;
}

/* ---- ranking: descending order of distinct keys ------------------------- */

static void kz__interest_insertion_sort(uint64_t *a, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        uint64_t v = a[i];
        uint32_t j = i;
        for (; j > 0 && a[j - 1] < v; j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
}

/* Min-heap sift, for the heapsort fallback below. */
static void kz__interest_sift(uint64_t *a, uint32_t n, uint32_t i)
{
    uint64_t v = a[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && a[c + 1] < a[c])
            c++;
        if (v <= a[c])
            break;
        a[i] = a[c];
        i = c;
    }
    a[i] = v;
}

/* Descending heapsort: the guaranteed O(n log n) fallback when quicksort
 * partitions keep coming out lopsided. */
static void kz__interest_heapsort(uint64_t *a, uint32_t n)
{
    for (uint32_t i = n / 2; i-- > 0;)
        kz__interest_sift(a, n, i);
    for (uint32_t end = n; end-- > 1;) {
        uint64_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        kz__interest_sift(a, end, 0);
    }
}

static inline void kz__interest_swap(uint64_t *a, uint32_t i, uint32_t j)
{
    uint64_t t = a[i];
    a[i] = a[j];
    a[j] = t;
}

/* Partitions a[0..n), n > KZ__INTEREST_SMALL, around the median of its
 * first, middle and last keys: afterwards a[0..p) > a[p] > a(p..n).
 * The scan is branch-free (every step swaps, and only the bound moves
 * conditionally), since with scores in no order a branch on the
 * comparison mispredicts about half the time. Invariant: a[0..i) > pivot
 * >= a[i..j). */
static uint32_t kz__interest_partition(uint64_t *a, uint32_t n)
{
    uint32_t mid = n / 2, last = n - 1;
    if (a[mid] > a[0])
        kz__interest_swap(a, mid, 0);
    if (a[last] > a[0])
        kz__interest_swap(a, last, 0);
    if (a[last] > a[mid])
        kz__interest_swap(a, last, mid);
    kz__interest_swap(a, mid, last);
    const uint64_t pivot = a[last];
    uint32_t i = 0;
    for (uint32_t j = 0; j < last; j++) {
        uint64_t v = a[j];
        a[j] = a[i];
        a[i] = v;
        i += v > pivot;
    }
    kz__interest_swap(a, i, last);
    return i;
}

static uint32_t kz__interest_depth(uint32_t n)
{
    uint32_t d = 0;
    for (; n > 1; n >>= 1)
        d += 2;
    return d;
}

/* Sorts a[0..n) descending (introsort: `depth` partition levels, then
 * heapsort). */
static void kz__interest_sort(uint64_t *a, uint32_t n, uint32_t depth)
{
    while (n > KZ__INTEREST_SMALL) {
        if (depth-- == 0) {
            kz__interest_heapsort(a, n);
            return;
        }
        uint32_t p = kz__interest_partition(a, n);
        /* Recurse into the smaller side, loop on the larger. */
        if (p < n - p - 1) {
            kz__interest_sort(a, p, depth);
            a += p + 1;
            n -= p + 1;
        } else {
            kz__interest_sort(a + p + 1, n - p - 1, depth);
            n = p;
        }
    }
    kz__interest_insertion_sort(a, n);
}

/* Moves the k largest of a[0..n) (k < n) into a[0..k), in no order
 * (introselect, with the same heapsort fallback). */
static void kz__interest_top(uint64_t *a, uint32_t n, uint32_t k, uint32_t depth)
{
    while (n > KZ__INTEREST_SMALL) {
        if (depth-- == 0) {
            kz__interest_heapsort(a, n);
            return;
        }
        uint32_t p = kz__interest_partition(a, n);
        if (p == k || p + 1 == k)
            return;
        if (k < p) {
            n = p;
        } else {
            a += p + 1;
            n -= p + 1;
            k -= p + 1;
        }
    }
    kz__interest_insertion_sort(a, n);
}

void kz__interest_rank(uint64_t *key, uint32_t n, uint32_t k, uint32_t depth)
{
    KZ_ASSERT(k <= n);
    if (k < n)
        kz__interest_top(key, n, k, depth);
    kz__interest_sort(key, k, depth);
}

/* ---- select ------------------------------------------------------------- */

/* The per-select inputs of the candidate passes. */
typedef struct kz__interest_pass {
    float qx, qz;
    float enter2, leave2;
    const float *importance;
    kz_visible_fn fn;
    void *fn_ctx;
    uint32_t viewer;
} kz__interest_pass;

/* Packing of a candidate between the passes: d2's bits, the kept flag and
 * the id (ids are below KZ_GRID_MAX_ENTITIES, far below bit 31). */
#define KZ__INTEREST_KEPT 0x80000000u

/* The grid's hits within `leave` of (qx, qz), packed as d2's bits above
 * the id into in->key, in id order, by a scan of the grid's arrays instead
 * of its cell lists: the same set as kz_grid_query (same rule, same r2),
 * found faster when the disk holds a large share of the grid, since the
 * list walk chases one dependent load per entity while the scan streams.
 * Absent ids are skipped before their positions are read (the grid never
 * writes those). */
static uint32_t kz__interest_scan(kz_interest *in, const kz_grid *g, float qx, float qz,
                                  float leave)
{
    const uint32_t *next = g->next;
    const float *px = g->x, *pz = g->z;
    const float r2 = leave * leave;
    const uint32_t max = g->cfg.max_entities;
    uint64_t *key = in->key;
    uint32_t n = 0;
    for (uint32_t id = 0; id < max; id++) {
        if (next[id] == KZ__GRID_ABSENT)
            continue;
        float dx = px[id] - qx;
        float dz = pz[id] - qz;
        float dx2 = dx * dx;
        float dz2 = dz * dz;
        float d2 = dx2 + dz2;
        uint32_t bits;
        memcpy(&bits, &d2, sizeof bits);
        key[n] = ((uint64_t)bits << 32) | id;
        n += d2 <= r2;
    }
    return n;
}

/* Stage 1 after a scan: the n packed hits in in->key filtered in place by
 * the radii, each tagged with its kept flag. Branch-free like the filter
 * below. Returns how many candidates. */
static uint32_t kz__interest_filter_packed(kz_interest *in, uint32_t n,
                                           const kz__interest_pass *p)
{
    const uint8_t *was = in->was;
    uint64_t *key = in->key;
    const float r2_of[2] = {p->enter2, p->leave2};
    const uint32_t viewer = p->viewer;
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t packed = key[i];
        uint32_t id = (uint32_t)packed, bits = (uint32_t)(packed >> 32);
        float d2;
        memcpy(&d2, &bits, sizeof d2);
        uint32_t kept = was[id];
        key[m] = packed | (kept << 31);
        m += (uint32_t)(d2 <= r2_of[kept]) & (uint32_t)(id != viewer);
    }
    return m;
}

/* Stage 1 over the n grid hits in in->cand: the candidates, packed into
 * in->key. Branch-free, since which hits pass the radii is unpredictable
 * (in a crowd about one in five): every hit is written at the end of the
 * output and the end advances only for a candidate. Returns how many. */
static uint32_t kz__interest_filter(kz_interest *in, const kz_grid *g, uint32_t n,
                                    const kz__interest_pass *p)
{
    const uint32_t *cand = in->cand;
    const uint8_t *was = in->was;
    const float *px = g->x, *pz = g->z;
    uint64_t *key = in->key;
    const float qx = p->qx, qz = p->qz;
    /* Indexed by the byte map's 0 or 1: a load, where a conditional would
     * compile to a branch that mispredicts (about half the hits are kept). */
    const float r2_of[2] = {p->enter2, p->leave2};
    const uint32_t viewer = p->viewer;
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = cand[i];
        /* The grid's distance rule, one rounding per statement. */
        float dx = px[id] - qx;
        float dz = pz[id] - qz;
        float dx2 = dx * dx;
        float dz2 = dz * dz;
        float d2 = dx2 + dz2;
        uint32_t kept = was[id];
        uint32_t bits;
        memcpy(&bits, &d2, sizeof bits);
        key[m] = ((uint64_t)bits << 32) | (kept << 31) | id;
        m += (uint32_t)(d2 <= r2_of[kept]) & (uint32_t)(id != viewer);
    }
    return m;
}

/* Stages 2 and 3 over the m packed candidates: the hook, then the score,
 * rewritten in place as sort keys. Returns how many the hook allowed. */
static uint32_t kz__interest_score_all(kz_interest *in, uint32_t m, const kz__interest_pass *p)
{
    uint64_t *key = in->key;
    const float bonus = in->cfg.keep_bonus;
    const float *importance = p->importance;
    uint32_t out = 0;
    for (uint32_t i = 0; i < m; i++) {
        uint64_t packed = key[i];
        uint32_t low = (uint32_t)packed, bits = (uint32_t)(packed >> 32);
        uint32_t id = low & ~KZ__INTEREST_KEPT;
        if (p->fn != NULL && p->fn(p->fn_ctx, p->viewer, id) == 0)
            continue;
        float d2;
        memcpy(&d2, &bits, sizeof d2);
        float imp = importance != NULL ? importance[id] : 1.0f;
        int kept = (low & KZ__INTEREST_KEPT) != 0;
        key[out++] = kz__interest_key(kz_interest_score(d2, imp, kept, bonus), id);
    }
    return out;
}

/* Marks (1) or unmarks (0) the entities of `prev`; ids beyond the map are
 * not in any grid this value serves, so they are skipped. */
static void kz__interest_mark(kz_interest *in, const uint32_t *prev, uint32_t n_prev, uint8_t v)
{
    uint8_t *was = in->was;
    const uint32_t max = in->max_entities;
    for (uint32_t i = 0; i < n_prev; i++)
        if (prev[i] < max)
            was[prev[i]] = v;
}

/* Stage 4: the best max_visible of the m keys, best first, into the
 * caller's arrays. */
static uint32_t kz__interest_cut(kz_interest *in, uint32_t m, uint32_t *out, float *out_score)
{
    const uint64_t *key = in->key;
    uint32_t k = m < in->cfg.max_visible ? m : in->cfg.max_visible;
    kz__interest_rank(in->key, m, k, kz__interest_depth(m));
    for (uint32_t i = 0; i < k; i++)
        out[i] = kz__interest_key_id(key[i]);
    if (out_score != NULL)
        for (uint32_t i = 0; i < k; i++)
            out_score[i] = kz__interest_key_score(key[i]);
    return k;
}

uint32_t kz_interest_select(kz_interest *in, const kz_grid *g, uint32_t viewer,
                            const uint32_t *prev, uint32_t n_prev, const float *importance,
                            kz_visible_fn fn, void *fn_ctx, uint32_t *out, float *out_score,
                            kz_interest_stats *stats)
{
    KZ_ASSERT(in != NULL && in->cand != NULL && g != NULL && out != NULL);
    KZ_ASSERT(prev != NULL || n_prev == 0);
    /* The scratch arrays hold every hit and index every entity. */
    KZ_ASSERT(g->cfg.max_entities <= in->max_entities);
    kz__interest_pass p = {0};
    kz_interest_stats st = {0, 0, 0, 1.0f};
    uint32_t count = 0;
    if (kz_grid_position(g, viewer, &p.qx, &p.qz) != KZ_OK)
        goto done;
    float enter = in->cfg.radius;
    float leave = in->cfg.radius + in->cfg.hysteresis;
    /* Scan when the last select found a crowd; the result does not depend
     * on the choice. */
    int dense = (uint64_t)in->last_hits * KZ__INTEREST_DENSE_RATIO >= g->cfg.max_entities;
    uint32_t n = dense ? kz__interest_scan(in, g, p.qx, p.qz, leave)
                       : kz_grid_query(g, p.qx, p.qz, leave, in->cand, in->max_entities, NULL);
    in->last_hits = n;
    /* The viewer is always among the hits: its own d2 is exactly 0. */
    st.found = n - 1;
    if (st.found > in->cfg.max_candidates) {
        st.scale = sqrtf((float)in->cfg.max_candidates / (float)st.found);
        enter = enter * st.scale;
        leave = leave * st.scale;
    }
    p.enter2 = enter * enter;
    p.leave2 = leave * leave;
    p.importance = importance;
    p.fn = fn;
    p.fn_ctx = fn_ctx;
    p.viewer = viewer;
    kz__interest_mark(in, prev, n_prev, 1);
    st.candidates = dense ? kz__interest_filter_packed(in, n, &p)
                          : kz__interest_filter(in, g, n, &p);
    kz__interest_mark(in, prev, n_prev, 0);
    uint32_t m = kz__interest_score_all(in, st.candidates, &p);
    st.vetoed = st.candidates - m;
    count = kz__interest_cut(in, m, out, out_score);
done:
    if (stats != NULL)
        *stats = st;
    return count;
}
