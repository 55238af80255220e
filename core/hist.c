/*
 * Log-linear histogram. A value's cell is found in O(1): the position of
 * its highest set bit (count-leading-zeros of value | sub_bucket_mask, so
 * that everything in bucket 0 looks as wide as bucket 0) gives the bucket,
 * and the bits just below it, shifted down by the bucket's step, give the
 * sub-bucket. Queries walk the counts array in value order, which is index
 * order. The layout is described in kizuna/hist.h.
 */
#include <math.h>
#include <inttypes.h>
#include <string.h>

#include <kizuna/hist.h>

#include "assert.h"

/* Position of the highest set bit plus one; v != 0. */
static inline unsigned kz__hist_bit_width(uint64_t v)
{
#if defined(__GNUC__) || defined(__clang__)
    return 64u - (unsigned)__builtin_clzll(v);
#else
    unsigned n = 0;
    while (v) {
        v >>= 1;
        n++;
    }
    return n;
#endif
}

/* Resolves zero fields to defaults; returns 0 or KZ_EINVAL. */
static int kz__hist_resolve(kz_hist_config *out, const kz_hist_config *cfg)
{
    kz_hist_config c;
    kz_hist_config_default(&c);
    if (cfg) {
        c.lowest = cfg->lowest ? cfg->lowest : c.lowest;
        c.highest = cfg->highest ? cfg->highest : c.highest;
        c.digits = cfg->digits ? cfg->digits : c.digits;
    }
    if (c.digits > KZ_HIST_MAX_DIGITS || c.highest >= (UINT64_C(1) << 63) ||
        c.highest / 2 < c.lowest)
        return KZ_EINVAL;
    *out = c;
    return KZ_OK;
}

/* Derived layout of a resolved configuration. */
typedef struct kz__hist_layout {
    uint32_t counts_len, bucket_count;
    uint8_t half_magnitude, unit_magnitude;
} kz__hist_layout;

static int kz__hist_layout_of(kz__hist_layout *l, const kz_hist_config *c)
{
    /* 2 * 10^digits steps per bucket at least, so that the upper half of a
     * bucket alone, which is all that buckets past the first store, still
     * resolves 10^digits steps. */
    uint64_t steps = 2;
    for (uint32_t i = 0; i < c->digits; i++)
        steps *= 10;
    unsigned mag = kz__hist_bit_width(steps - 1); /* ceil(log2(steps)) */
    unsigned unit = kz__hist_bit_width(c->lowest) - 1;
    if (unit + mag > 62)
        return KZ_EINVAL;
    /* Buckets double in span until one reaches past `highest`; both
     * operands stay <= 2^63 because highest < 2^63. */
    uint64_t limit = UINT64_C(1) << (unit + mag);
    uint32_t buckets = 1;
    while (limit <= c->highest) {
        limit <<= 1;
        buckets++;
    }
    l->half_magnitude = (uint8_t)(mag - 1);
    l->unit_magnitude = (uint8_t)unit;
    l->bucket_count = buckets;
    l->counts_len = (buckets + 1) << (mag - 1);
    return KZ_OK;
}

void kz_hist_config_default(kz_hist_config *cfg)
{
    KZ_ASSERT(cfg != NULL);
    cfg->lowest = KZ_HIST_DEFAULT_LOWEST;
    cfg->highest = KZ_HIST_DEFAULT_HIGHEST;
    cfg->digits = KZ_HIST_DEFAULT_DIGITS;
}

size_t kz_hist_footprint(const kz_hist_config *cfg)
{
    kz_hist_config c;
    kz__hist_layout l;
    if (kz__hist_resolve(&c, cfg) != KZ_OK || kz__hist_layout_of(&l, &c) != KZ_OK)
        return 0;
    return (size_t)l.counts_len * sizeof(uint64_t);
}

int kz_hist_init(kz_hist *h, const kz_hist_config *cfg, const kz_allocator *alloc)
{
    KZ_ASSERT(h != NULL);
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
    h->alloc = alloc ? *alloc : kz_allocator_default();
    kz_allocator_resolve(&h->alloc);
    kz__hist_layout l;
    if (kz__hist_resolve(&h->cfg, cfg) != KZ_OK || kz__hist_layout_of(&l, &h->cfg) != KZ_OK)
        return KZ_EINVAL;
    h->counts_len = l.counts_len;
    h->bucket_count = l.bucket_count;
    h->half_magnitude = l.half_magnitude;
    h->unit_magnitude = l.unit_magnitude;
    h->half_count = UINT32_C(1) << l.half_magnitude;
    h->sub_bucket_mask = ((UINT64_C(2) << l.half_magnitude) - 1) << l.unit_magnitude;
    h->counts = kz_calloc(&h->alloc, (size_t)h->counts_len * sizeof(uint64_t), 64);
    return h->counts ? KZ_OK : KZ_ENOMEM;
}

void kz_hist_fini(kz_hist *h)
{
    KZ_ASSERT(h != NULL);
    kz_free(&h->alloc, h->counts, (size_t)h->counts_len * sizeof(uint64_t));
    h->counts = NULL;
}

/* Cell of `v` (v <= highest). Bucket 0's values all OR to the same width
 * with the mask, which puts them in bucket 0; past it, each doubling of
 * the value moves one bucket up. The sub-bucket of a bucket k >= 1 is in
 * [S/2, S), and cells of bucket k start at (k + 1) * S/2. */
static inline uint32_t kz__hist_index(const kz_hist *h, uint64_t v)
{
    unsigned width = kz__hist_bit_width(v | h->sub_bucket_mask);
    unsigned bucket = width - h->unit_magnitude - h->half_magnitude - 1;
    uint32_t sub = (uint32_t)(v >> (bucket + h->unit_magnitude));
    return ((bucket + 1) << h->half_magnitude) + sub - h->half_count;
}

/* Bucket number of cell `i` (its step is 2^(bucket + unit)). */
static inline unsigned kz__hist_bucket_of(const kz_hist *h, uint32_t i)
{
    uint32_t hi = i >> h->half_magnitude;
    return hi ? hi - 1 : 0;
}

static inline uint64_t kz__hist_lowest_at(const kz_hist *h, uint32_t i)
{
    uint32_t hi = i >> h->half_magnitude;
    /* Cells below S/2 are the lower half of bucket 0; the rest carry the
     * sub-bucket's offset within the upper half. */
    uint64_t sub = hi ? (i & (h->half_count - 1)) + h->half_count : i;
    return sub << (kz__hist_bucket_of(h, i) + h->unit_magnitude);
}

static inline uint64_t kz__hist_step_at(const kz_hist *h, uint32_t i)
{
    return UINT64_C(1) << (kz__hist_bucket_of(h, i) + h->unit_magnitude);
}

static inline uint64_t kz__hist_highest_at(const kz_hist *h, uint32_t i)
{
    return kz__hist_lowest_at(h, i) + kz__hist_step_at(h, i) - 1;
}

/* Adds `n` samples to cell `i` without touching min/max. */
static inline void kz__hist_add(kz_hist *h, uint32_t i, uint64_t n)
{
    h->counts[i] += n;
    h->total += n;
}

static inline void kz__hist_note(kz_hist *h, uint64_t lo, uint64_t hi)
{
    if (lo < h->min)
        h->min = lo;
    if (hi > h->max)
        h->max = hi;
}

int kz_hist_record(kz_hist *h, uint64_t value)
{
    if (KZ_UNLIKELY(value > h->cfg.highest)) {
        h->out_of_range++;
        return KZ_ERANGE;
    }
    kz__hist_add(h, kz__hist_index(h, value), 1);
    kz__hist_note(h, value, value);
    return KZ_OK;
}

int kz_hist_record_n(kz_hist *h, uint64_t value, uint64_t count)
{
    if (KZ_UNLIKELY(value > h->cfg.highest)) {
        h->out_of_range += count;
        return count ? KZ_ERANGE : KZ_OK;
    }
    if (count == 0)
        return KZ_OK;
    kz__hist_add(h, kz__hist_index(h, value), count);
    kz__hist_note(h, value, value);
    return KZ_OK;
}

int kz_hist_record_corrected(kz_hist *h, uint64_t value, uint64_t expected_interval)
{
    int rc = kz_hist_record(h, value);
    uint64_t iv = expected_interval;
    if (rc != KZ_OK || iv == 0 || value <= iv)
        return rc;
    /* The missing samples are t_k = value - k*iv for k = 1..m, with
     * m = value/iv - 1 the last k leaving t_k >= iv. Walk them from the top
     * one bucket at a time: every t_k in [lowest(cell of t), t] lands in
     * that cell, and there are (t - lowest) / iv + 1 of them. */
    uint64_t left = value / iv - 1;
    uint64_t t = value - iv;
    while (left > 0) {
        uint32_t i = kz__hist_index(h, t);
        uint64_t n = (t - kz__hist_lowest_at(h, i)) / iv + 1;
        if (n > left)
            n = left;
        kz__hist_add(h, i, n);
        left -= n;
        t -= n * iv;
    }
    /* The smallest back-filled sample is value - m*iv, in [iv, 2*iv). */
    kz__hist_note(h, value - (value / iv - 1) * iv, value);
    return KZ_OK;
}

/* Cells mean the same values in both and every src sample fits under
 * dst's highest (so its cells exist in dst, whatever the two lengths). */
static int kz__hist_same_cells(const kz_hist *dst, const kz_hist *src)
{
    return dst->unit_magnitude == src->unit_magnitude &&
           dst->half_magnitude == src->half_magnitude && src->max <= dst->cfg.highest;
}

/* Re-records src bucket by bucket at a value >= each of its samples. */
static int kz__hist_merge_values(kz_hist *dst, const kz_hist *src)
{
    uint64_t refused = 0, lo = UINT64_MAX, hi = 0;
    for (uint32_t i = 0; i < src->counts_len; i++) {
        uint64_t n = src->counts[i];
        if (n == 0)
            continue;
        /* Clamping to the exact extremes keeps them exact in dst, and
         * keeps a src max that fits from being pushed out of range by its
         * bucket's upper edge. */
        uint64_t v = kz__hist_highest_at(src, i);
        v = v < src->max ? v : src->max;
        if (v > dst->cfg.highest) {
            refused += n;
            continue;
        }
        kz__hist_add(dst, kz__hist_index(dst, v), n);
        uint64_t low = kz__hist_lowest_at(src, i);
        low = low > src->min ? low : src->min;
        lo = low < lo ? low : lo;
        hi = v > hi ? v : hi;
    }
    if (hi >= lo)
        kz__hist_note(dst, lo, hi);
    dst->out_of_range += refused;
    return refused ? KZ_ERANGE : KZ_OK;
}

int kz_hist_merge(kz_hist *dst, const kz_hist *src)
{
    KZ_ASSERT(dst != NULL && src != NULL && dst != src);
    dst->out_of_range += src->out_of_range;
    if (src->total == 0)
        return KZ_OK;
    if (!kz__hist_same_cells(dst, src))
        return kz__hist_merge_values(dst, src);
    uint32_t last = kz__hist_index(src, src->max);
    for (uint32_t i = kz__hist_index(src, src->min); i <= last; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    kz__hist_note(dst, src->min, src->max);
    return KZ_OK;
}

void kz_hist_reset(kz_hist *h)
{
    memset(h->counts, 0, (size_t)h->counts_len * sizeof(uint64_t));
    h->total = 0;
    h->out_of_range = 0;
    h->min = UINT64_MAX;
    h->max = 0;
}

/* Rank (1-based) of the sample at percentile p: ceil(p * total / 100),
 * kept within [1, total]. */
static uint64_t kz__hist_rank(uint64_t total, double p)
{
    double r = ceil(p * (double)total / 100.0);
    if (r < 1.0)
        return 1;
    if (r >= (double)total)
        return total;
    return (uint64_t)r;
}

/* A forward cursor over cumulative counts, so that a run of increasing
 * ranks (a percentile table) costs one pass in all. */
typedef struct kz__hist_cursor {
    uint32_t next; /* next cell to add */
    uint64_t cum;  /* samples in cells [0, next) */
} kz__hist_cursor;

static void kz__hist_cursor_start(const kz_hist *h, kz__hist_cursor *c)
{
    c->next = kz__hist_index(h, h->min);
    c->cum = 0;
}

/* Advances to the cell holding the sample of `rank` (<= total) and returns
 * the value reported for it. */
static uint64_t kz__hist_cursor_seek(const kz_hist *h, kz__hist_cursor *c, uint64_t rank)
{
    while (c->cum < rank)
        c->cum += h->counts[c->next++];
    uint64_t v = kz__hist_highest_at(h, c->next - 1);
    return v < h->max ? v : h->max;
}

uint64_t kz_hist_percentile(const kz_hist *h, double p)
{
    KZ_ASSERT(h != NULL);
    KZ_ASSERT(p >= 0.0 && p <= 100.0);
    if (h->total == 0)
        return 0;
    kz__hist_cursor c;
    kz__hist_cursor_start(h, &c);
    return kz__hist_cursor_seek(h, &c, kz__hist_rank(h->total, p));
}

uint64_t kz_hist_total(const kz_hist *h)
{
    return h->total;
}

uint64_t kz_hist_out_of_range(const kz_hist *h)
{
    return h->out_of_range;
}

uint64_t kz_hist_min(const kz_hist *h)
{
    return h->total ? h->min : 0;
}

uint64_t kz_hist_max(const kz_hist *h)
{
    return h->total ? h->max : 0;
}

double kz_hist_mean(const kz_hist *h)
{
    if (h->total == 0)
        return 0.0;
    uint32_t first = kz__hist_index(h, h->min), last = kz__hist_index(h, h->max);
    double sum = 0.0;
    for (uint32_t i = first; i <= last; i++) {
        if (h->counts[i])
            sum += (double)h->counts[i] *
                   (double)(kz__hist_lowest_at(h, i) + kz__hist_step_at(h, i) / 2);
    }
    return sum / (double)h->total;
}

uint64_t kz_hist_count_at(const kz_hist *h, uint64_t value)
{
    if (value > h->cfg.highest)
        return 0;
    return h->counts[kz__hist_index(h, value)];
}

uint64_t kz_hist_lowest_equivalent(const kz_hist *h, uint64_t value)
{
    KZ_ASSERT(value <= h->cfg.highest);
    return kz__hist_lowest_at(h, kz__hist_index(h, value));
}

uint64_t kz_hist_highest_equivalent(const kz_hist *h, uint64_t value)
{
    KZ_ASSERT(value <= h->cfg.highest);
    return kz__hist_highest_at(h, kz__hist_index(h, value));
}

/* Level of tick j (0..ticks-1) in half-distance k: the half-distance spans
 * [100 - 100/2^k, 100 - 100/2^(k+1)). Computed afresh from (k, j) rather
 * than by summing steps, so rounding never drifts. */
static double kz__hist_level(unsigned k, uint32_t j, uint32_t ticks)
{
    double span = ldexp(100.0, -(int)k);
    return 100.0 - span + (double)j * (span / 2.0) / (double)ticks;
}

static int kz__hist_emit(const kz_hist *h, kz__hist_cursor *c, double p, uint64_t rank,
                         kz_hist_tick_fn fn, void *ctx)
{
    kz_hist_tick t;
    t.percentile = p;
    t.value = kz__hist_cursor_seek(h, c, rank);
    t.count = c->cum;
    t.inverse = p < 100.0 ? 1.0 / (1.0 - p / 100.0) : INFINITY;
    return fn(ctx, &t);
}

int kz_hist_foreach_percentile(const kz_hist *h, uint32_t ticks_per_half, kz_hist_tick_fn fn,
                               void *ctx)
{
    KZ_ASSERT(h != NULL && fn != NULL);
    uint32_t ticks = ticks_per_half ? ticks_per_half : KZ_HIST_DEFAULT_TICKS;
    if (h->total == 0)
        return 0;
    kz__hist_cursor c;
    kz__hist_cursor_start(h, &c);
    /* 100/2^k falls below double resolution around 100 well before k = 64;
     * the rank test ends the loop far earlier for any real total. */
    for (unsigned k = 0; k < 64; k++) {
        for (uint32_t j = 0; j < ticks; j++) {
            double p = kz__hist_level(k, j, ticks);
            uint64_t rank = kz__hist_rank(h->total, p);
            if (rank >= h->total || p >= 100.0)
                goto last;
            int rc = kz__hist_emit(h, &c, p, rank, fn, ctx);
            if (rc)
                return rc;
        }
    }
last:
    return kz__hist_emit(h, &c, 100.0, h->total, fn, ctx);
}

static int kz__hist_print_row(void *ctx, const kz_hist_tick *t)
{
    FILE *out = ctx;
    int w;
    if (t->percentile < 100.0)
        w = fprintf(out, "%14.6f %14" PRIu64 " %14" PRIu64 " %14.2f\n", t->percentile,
                    t->value, t->count, t->inverse);
    else
        w = fprintf(out, "%14.6f %14" PRIu64 " %14" PRIu64 " %14s\n", t->percentile, t->value,
                    t->count, "inf");
    return w < 0 ? KZ_EIO : 0;
}

int kz_hist_print(const kz_hist *h, FILE *out, uint32_t ticks_per_half)
{
    KZ_ASSERT(h != NULL && out != NULL);
    if (fprintf(out, "# %12s %14s %14s %14s\n", "percentile", "value", "count", "1/(1-p)") < 0)
        return KZ_EIO;
    int rc = kz_hist_foreach_percentile(h, ticks_per_half, kz__hist_print_row, out);
    if (rc)
        return rc;
    if (fprintf(out, "# total=%" PRIu64 " mean=%.3f min=%" PRIu64 " max=%" PRIu64
                     " out_of_range=%" PRIu64 "\n",
                kz_hist_total(h), kz_hist_mean(h), kz_hist_min(h), kz_hist_max(h),
                kz_hist_out_of_range(h)) < 0)
        return KZ_EIO;
    return fflush(out) == 0 ? KZ_OK : KZ_EIO;
}
