/*
 * Log-linear latency histogram in the style of HdrHistogram. The server
 * records tick times and snapshot ages into it and the load-test harness
 * records connect and round-trip times; both then ask for percentiles and
 * print percentile tables. It is tuned for many cheap records (one
 * count-leading-zeros, a shift and an add; no loop, no allocation) and
 * comparatively rare queries, which scan the counts array.
 *
 * Layout. Values are unsigned integers in the caller's units (microseconds
 * everywhere in Kizuna). With d significant digits the histogram keeps
 * S = 2^ceil(log2(2 * 10^d)) sub-buckets per power-of-two bucket, so every
 * bucket is split into at least 10^d equal steps: a value v is stored with
 * an absolute error below v / 10^d, and values below S * 2^u (u =
 * floor(log2(lowest))) are stored in steps of 2^u <= lowest. Bucket k >= 1
 * covers [S/2 * 2^(u+k), S * 2^(u+k)) in steps of 2^(u+k); bucket 0 covers
 * [0, S * 2^u). Adjacent buckets share nothing: only the upper half of each
 * bucket past the first is stored.
 *
 * Memory. One array of uint64_t counts, allocated at init:
 *     counts_len = (B + 1) * S / 2
 * where B is the smallest bucket count with S * 2^(u + B - 1) > highest.
 * For the default configuration (lowest 1, highest 60,000,000, 3 digits):
 * S = 2048, B = 16, counts_len = 17,408, i.e. 139,264 bytes (136 KiB).
 * Same range with 2 digits: 2,560 counts (20 KiB); with 4 digits: 212,992
 * counts (1.6 MiB); with 1 digit: 368 counts (2.9 KiB).
 * kz_hist_footprint() computes the figure for any configuration.
 *
 * Ownership and threading: the caller owns the kz_hist storage (a value
 * type: kz_hist_init / kz_hist_fini). A histogram is not thread-safe: one
 * thread records into it, and nobody reads it concurrently. For aggregates
 * across threads, give each thread its own histogram and have one thread
 * merge them (kz_hist_merge) while the writers are quiet, e.g. at the end of
 * a reporting interval. Only init and fini touch the allocator.
 */
#ifndef KZ_HIST_H
#define KZ_HIST_H

#include <stdio.h>

#include <kizuna/alloc.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KZ_HIST_DEFAULT_LOWEST 1u
#define KZ_HIST_DEFAULT_HIGHEST 60000000u /* 60 s in microseconds */
#define KZ_HIST_DEFAULT_DIGITS 3u
#define KZ_HIST_MAX_DIGITS 5u
#define KZ_HIST_DEFAULT_TICKS 5u /* percentile ticks per half-distance */

/*
 * A zero field means the default, so `kz_hist_config cfg = {0}` plus one
 * override works. Constraints (else init returns KZ_EINVAL):
 * 1 <= digits <= 5; highest >= 2 * lowest; highest < 2^63; and
 * lowest * 2 * 10^digits must stay below about 2^62.
 */
typedef struct kz_hist_config {
    uint64_t lowest;  /* lowest discernible value (>= 1), default 1 */
    uint64_t highest; /* highest trackable value, default 60,000,000 */
    uint32_t digits;  /* significant decimal digits 1..5, default 3 */
} kz_hist_config;

/* Fields are public so that tests and tools can inspect them; only the
 * functions below may change them. */
typedef struct kz_hist {
    uint64_t *counts;       /* counts_len cells, owned */
    uint64_t total;         /* samples in counts */
    uint64_t out_of_range;  /* samples refused because value > highest */
    uint64_t min;           /* exact smallest recorded value; UINT64_MAX if empty */
    uint64_t max;           /* exact largest recorded value; 0 if empty */
    uint64_t sub_bucket_mask; /* (S - 1) << unit_magnitude */
    kz_hist_config cfg;     /* resolved: no zero fields */
    uint32_t counts_len;
    uint32_t bucket_count;  /* B */
    uint32_t half_count;    /* S / 2 */
    uint8_t half_magnitude; /* log2(S / 2) */
    uint8_t unit_magnitude; /* floor(log2(lowest)) */
    kz_allocator alloc;
} kz_hist;

/* Fills `cfg` with the defaults (1, 60,000,000, 3 digits). */
KZ_API void kz_hist_config_default(kz_hist_config *cfg);

/* Bytes of the counts array a histogram with `cfg` (NULL: defaults) would
 * allocate; 0 if the configuration is invalid. */
KZ_API size_t kz_hist_footprint(const kz_hist_config *cfg);

/*
 * Prepares an empty histogram. `cfg` may be NULL for the defaults, `alloc`
 * NULL for the default allocator; both are copied. Allocates the counts
 * array once; nothing else in this module allocates.
 * Returns 0, KZ_EINVAL (bad configuration) or KZ_ENOMEM; on failure `h`
 * needs no fini (calling it is harmless).
 */
KZ_API KZ_MUST_CHECK int kz_hist_init(kz_hist *h, const kz_hist_config *cfg,
                                      const kz_allocator *alloc);
/* Frees the counts array. */
KZ_API void kz_hist_fini(kz_hist *h);

/*
 * Records one sample of `value`. A value above the highest trackable one is
 * not clamped: it is left out of every statistic, added to `out_of_range`
 * (read with kz_hist_out_of_range) and KZ_ERANGE is returned. Since the
 * counter keeps the evidence, callers on hot paths may ignore the result.
 * Returns 0 or KZ_ERANGE.
 */
KZ_API int kz_hist_record(kz_hist *h, uint64_t value);

/* Records `count` samples of `value` (count 0 does nothing and returns 0).
 * Out of range: `count` is added to out_of_range, KZ_ERANGE returned. */
KZ_API int kz_hist_record_n(kz_hist *h, uint64_t value, uint64_t count);

/*
 * Records `value` with coordinated-omission correction, for callers that
 * measure at a fixed `expected_interval`: a stall of `value` means the
 * samples that should have been taken during it were never issued, so this
 * also records value - interval, value - 2*interval, ... down to the last
 * one that is still >= interval. With interval 10 and value 100 it records
 * 100, 90, ..., 10. interval 0, or value <= interval, records value alone.
 * The back-filled samples are added per bucket, so the cost is bounded by
 * the number of buckets they span, not by value / interval.
 * Out of range: only the one sample is counted in out_of_range, nothing is
 * back-filled, and KZ_ERANGE is returned.
 */
KZ_API int kz_hist_record_corrected(kz_hist *h, uint64_t value, uint64_t expected_interval);

/*
 * Adds every sample of `src` into `dst` (distinct histograms, asserted).
 * When the layouts agree (same lowest and digits, and src's values all fit
 * under dst's highest) counts are added cell by cell and the result equals
 * recording both sample sets into one histogram. Otherwise every non-empty
 * src bucket is re-recorded into dst at its highest equivalent value
 * (clamped to src's exact max): that value is >= each sample it stands for,
 * so dst's percentiles stay >= the exact ones, with the two precisions
 * compounding. Samples whose re-recorded value is above dst's highest are
 * added to dst's out_of_range and KZ_ERANGE is returned after the rest is
 * merged. src's own out_of_range is added to dst's in both cases.
 * dst's min and max stay exact unless samples were refused.
 * Returns 0 or KZ_ERANGE.
 */
KZ_API int kz_hist_merge(kz_hist *dst, const kz_hist *src);

/* Zeroes every count, min/max and out_of_range; keeps config and memory. */
KZ_API void kz_hist_reset(kz_hist *h);

/*
 * The value at percentile `p` (0 <= p <= 100, asserted; NaN asserts too).
 * The sample of rank r = ceil(p * total / 100), at least 1, is located and
 * the highest value equivalent to its bucket is returned, clamped to the
 * exact max. Precision guarantee: with `exact` the r-th smallest recorded
 * value (p = 0 gives the min, p = 100 the max),
 *     exact <= result <= exact + exact / 10^digits + (lowest - 1),
 * and p = 100 returns the exact max. Returns 0 for an empty histogram.
 * Cost: one scan over the counts between the min's and the max's bucket.
 */
KZ_API uint64_t kz_hist_percentile(const kz_hist *h, double p);

/* Samples recorded (out-of-range ones excluded). */
KZ_API uint64_t kz_hist_total(const kz_hist *h);
/* Samples refused because they were above the highest trackable value. */
KZ_API uint64_t kz_hist_out_of_range(const kz_hist *h);
/* Exact smallest / largest recorded value; 0 when empty. */
KZ_API uint64_t kz_hist_min(const kz_hist *h);
KZ_API uint64_t kz_hist_max(const kz_hist *h);
/*
 * Mean of the recorded samples, each taken at the middle of its bucket; 0
 * when empty. Within exact_mean / (2 * 10^digits) + lowest / 2 of the exact
 * mean. Scans the counts.
 */
KZ_API double kz_hist_mean(const kz_hist *h);

/* Samples in the bucket that holds `value`; 0 above highest. */
KZ_API uint64_t kz_hist_count_at(const kz_hist *h, uint64_t value);
/* Smallest and largest value sharing `value`'s bucket (value <= highest,
 * asserted). Two values are recorded alike iff these agree. */
KZ_API uint64_t kz_hist_lowest_equivalent(const kz_hist *h, uint64_t value);
KZ_API uint64_t kz_hist_highest_equivalent(const kz_hist *h, uint64_t value);

/* One row of a percentile table. */
typedef struct kz_hist_tick {
    double percentile; /* the tick's level, 0..100 */
    uint64_t value;    /* kz_hist_percentile(h, percentile) */
    uint64_t count;    /* samples in buckets up to value's bucket */
    double inverse;    /* 1 / (1 - percentile / 100); INFINITY at 100 */
} kz_hist_tick;

/* Receives one tick; a nonzero return stops the iteration. */
typedef int (*kz_hist_tick_fn)(void *ctx, const kz_hist_tick *tick);

/*
 * Calls `fn` for percentile ticks that get denser towards the tail: the
 * distance to 100 is halved again and again (0, 50, 75, 87.5, ...) and each
 * half-distance is cut into `ticks_per_half` equal steps (0: default 5; with
 * 5 the levels are 0, 10, 20, 30, 40, 50, 55, ..., 70, 75, 77.5, ...).
 * Ticks continue while a level's rank is below the total, then one final
 * tick at 100 reports the max. Nothing is called for an empty histogram.
 * Returns 0, or the first nonzero value `fn` returned.
 */
KZ_API int kz_hist_foreach_percentile(const kz_hist *h, uint32_t ticks_per_half,
                                      kz_hist_tick_fn fn, void *ctx);

/*
 * Writes a human-readable percentile table to `out`: a '#' header line, one
 * line per tick of kz_hist_foreach_percentile ("percentile value count
 * 1/(1-p)", percentile in percent, "inf" in the last column at 100), then
 * '#' summary lines (total, mean, min, max, out_of_range). Values are
 * printed in the recorded units. Returns 0, or KZ_EIO if a write failed.
 */
KZ_API KZ_MUST_CHECK int kz_hist_print(const kz_hist *h, FILE *out, uint32_t ticks_per_half);

#ifdef __cplusplus
}
#endif

#endif /* KZ_HIST_H */
