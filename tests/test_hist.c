/*
 * Histogram tests. The main check is differential: a million samples from
 * a seeded generator are recorded and also sorted, and every percentile the
 * histogram reports must be >= the exact sample percentile, within the
 * documented precision of it, and equal to what a naive, loop-based model
 * of the bucket layout predicts. Edge cases are table-driven; merge,
 * coordinated-omission correction and the table export are compared with
 * doing the same thing the slow way.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/hist.h>

#define N_SAMPLES 1000000u
#define HIGHEST 60000000u

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

/* Uniform in [0, 1). */
static double rng_unit(void)
{
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t rng_log_uniform(uint64_t hi)
{
    uint64_t v = (uint64_t)exp(rng_unit() * log((double)hi));
    return v < hi ? v : hi;
}

typedef enum { DIST_UNIFORM, DIST_LOG_UNIFORM, DIST_BIMODAL, DIST_HEAVY_TAIL } dist_kind;

static uint64_t dist_sample(dist_kind k)
{
    switch (k) {
    case DIST_UNIFORM:
        return rng_next() % (HIGHEST + 1u);
    case DIST_LOG_UNIFORM:
        return rng_log_uniform(HIGHEST);
    case DIST_BIMODAL:
        /* 70% fast ticks around 800 us, 30% slow ones around 45 ms. */
        if (rng_next() % 10 < 7)
            return 500 + rng_next() % 300 + rng_next() % 300;
        return 30000 + rng_next() % 15000 + rng_next() % 15000;
    case DIST_HEAVY_TAIL: {
        /* Pareto, alpha 1.1, scale 100: a long tail up to the cap. */
        double x = 100.0 / pow(1.0 - rng_unit(), 1.0 / 1.1);
        return x >= (double)HIGHEST ? HIGHEST : (uint64_t)x;
    }
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t *make_sorted(dist_kind k, uint64_t seed, size_t n)
{
    uint64_t *v = malloc(n * sizeof *v);
    cr_assert_not_null(v);
    rng_seed(seed);
    for (size_t i = 0; i < n; i++)
        v[i] = dist_sample(k);
    qsort(v, n, sizeof *v, cmp_u64);
    return v;
}

static uint64_t pow10u(uint32_t d)
{
    uint64_t r = 1;
    while (d--)
        r *= 10;
    return r;
}

/* Exact percentile of sorted samples by the documented rank rule. */
static uint64_t exact_percentile(const uint64_t *sorted, size_t n, double p)
{
    if (p == 0.0)
        return sorted[0];
    double r = ceil(p * (double)n / 100.0);
    size_t rank = r < 1.0 ? 1 : (size_t)r;
    return sorted[(rank > n ? n : rank) - 1];
}

/*
 * Naive model of the bucket layout, written from the header's description
 * with loops only: S is the smallest power of two >= 2 * 10^d; bucket 0
 * covers [0, S * 2^u) in steps of 2^u, and a value above it lives in the
 * first bucket k whose top S * 2^(u+k) exceeds it, in steps of 2^(u+k).
 */
static uint64_t naive_step(uint64_t v, uint64_t lowest, uint32_t digits)
{
    uint64_t s = 1, unit = 1;
    while (s < 2 * pow10u(digits))
        s *= 2;
    while (unit * 2 <= lowest)
        unit *= 2;
    uint64_t step = unit;
    while (v >= s * step)
        step *= 2;
    return step;
}

static uint64_t naive_lowest(uint64_t v, uint64_t lowest, uint32_t digits)
{
    return v - v % naive_step(v, lowest, digits);
}

static uint64_t naive_highest(uint64_t v, uint64_t lowest, uint32_t digits)
{
    return naive_lowest(v, lowest, digits) + naive_step(v, lowest, digits) - 1;
}

static void hist_open(kz_hist *h, uint64_t lowest, uint64_t highest, uint32_t digits)
{
    kz_hist_config cfg = {lowest, highest, digits};
    cr_assert_eq(kz_hist_init(h, &cfg, NULL), 0);
}

static const double k_percentiles[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};
#define N_PERCENTILES (sizeof k_percentiles / sizeof k_percentiles[0])

/* Checks every listed percentile of `h` against the sorted samples. */
static void check_percentiles(const kz_hist *h, const uint64_t *sorted, size_t n,
                              uint64_t lowest, uint32_t digits, const char *what)
{
    for (size_t i = 0; i < N_PERCENTILES; i++) {
        double p = k_percentiles[i];
        uint64_t exact = exact_percentile(sorted, n, p);
        uint64_t got = kz_hist_percentile(h, p);
        uint64_t bound = exact / pow10u(digits) + (lowest - 1);
        cr_assert(got >= exact, "%s d=%u p=%g: %" PRIu64 " < exact %" PRIu64, what, digits, p,
                  got, exact);
        cr_assert(got - exact <= bound, "%s d=%u p=%g: %" PRIu64 " too far above %" PRIu64,
                  what, digits, p, got, exact);
        uint64_t model = naive_highest(exact, lowest, digits);
        model = model < sorted[n - 1] ? model : sorted[n - 1];
        cr_assert_eq(got, model, "%s d=%u p=%g: %" PRIu64 ", model says %" PRIu64, what, digits,
                     p, got, model);
    }
}

static void check_distribution(dist_kind k, uint64_t seed, const char *what)
{
    uint64_t *s = make_sorted(k, seed, N_SAMPLES);
    static const uint32_t digits[] = {2, 3, 4};
    for (size_t d = 0; d < 3; d++) {
        kz_hist h;
        hist_open(&h, 1, HIGHEST, digits[d]);
        /* Record in generation order, not sorted order. */
        rng_seed(seed);
        for (size_t i = 0; i < N_SAMPLES; i++)
            cr_assert_eq(kz_hist_record(&h, dist_sample(k)), 0);
        cr_assert_eq(kz_hist_total(&h), N_SAMPLES);
        cr_assert_eq(kz_hist_min(&h), s[0]);
        cr_assert_eq(kz_hist_max(&h), s[N_SAMPLES - 1]);
        check_percentiles(&h, s, N_SAMPLES, 1, digits[d], what);
        kz_hist_fini(&h);
    }
    free(s);
}

/* ---- percentiles against sorted samples -------------------------------- */

Test(hist_exact, uniform_wide)
{
    check_distribution(DIST_UNIFORM, 11, "uniform");
}

Test(hist_exact, log_uniform)
{
    check_distribution(DIST_LOG_UNIFORM, 22, "log-uniform");
}

Test(hist_exact, bimodal)
{
    check_distribution(DIST_BIMODAL, 33, "bimodal");
}

Test(hist_exact, heavy_tail)
{
    check_distribution(DIST_HEAVY_TAIL, 44, "heavy-tail");
}

/* A lowest discernible value above 1 shifts the whole layout by its
 * magnitude: steps of 512 for lowest 1000. */
Test(hist_exact, lowest_above_one)
{
    uint64_t *s = make_sorted(DIST_LOG_UNIFORM, 55, N_SAMPLES);
    kz_hist h;
    hist_open(&h, 1000, HIGHEST, 3);
    for (size_t i = 0; i < N_SAMPLES; i++)
        cr_assert_eq(kz_hist_record(&h, s[i]), 0);
    check_percentiles(&h, s, N_SAMPLES, 1000, 3, "lowest=1000");
    kz_hist_fini(&h);
    free(s);
}

Test(hist_exact, mean_within_precision)
{
    static const uint32_t digits[] = {2, 3, 4};
    static const dist_kind kinds[] = {DIST_LOG_UNIFORM, DIST_BIMODAL, DIST_HEAVY_TAIL};
    for (size_t k = 0; k < 3; k++) {
        for (size_t d = 0; d < 3; d++) {
            kz_hist h;
            hist_open(&h, 1, HIGHEST, digits[d]);
            rng_seed(66 + k);
            double sum = 0.0;
            for (size_t i = 0; i < N_SAMPLES; i++) {
                uint64_t v = dist_sample(kinds[k]);
                sum += (double)v;
                cr_assert_eq(kz_hist_record(&h, v), 0);
            }
            double exact = sum / N_SAMPLES, got = kz_hist_mean(&h);
            double tol = exact / (2.0 * (double)pow10u(digits[d])) + 0.5;
            cr_assert(fabs(got - exact) <= tol, "kind %zu d=%u: mean %f vs exact %f", k,
                      digits[d], got, exact);
            kz_hist_fini(&h);
        }
    }
}

/* ---- layout --------------------------------------------------------------- */

Test(hist_layout, footprint_and_config)
{
    kz_hist_config cfg = {0};
    cr_assert_eq(kz_hist_footprint(NULL), 139264);
    cr_assert_eq(kz_hist_footprint(&cfg), 139264);
    cfg.digits = 2;
    cr_assert_eq(kz_hist_footprint(&cfg), 2560 * 8);
    cfg.digits = 4;
    cr_assert_eq(kz_hist_footprint(&cfg), 212992 * 8);
    cfg.digits = 1;
    cr_assert_eq(kz_hist_footprint(&cfg), 368 * 8);

    kz_hist h;
    cr_assert_eq(kz_hist_init(&h, NULL, NULL), 0);
    cr_assert_eq(h.cfg.lowest, 1);
    cr_assert_eq(h.cfg.highest, HIGHEST);
    cr_assert_eq(h.cfg.digits, 3);
    cr_assert_eq(h.counts_len, 17408);
    kz_hist_fini(&h);
    kz_hist_fini(&h); /* second fini is harmless */

    static const kz_hist_config bad[] = {
        {1, HIGHEST, 6},                    /* too many digits */
        {1000, 1999, 3},                    /* highest < 2 * lowest */
        {1, UINT64_C(1) << 63, 3},          /* highest too large */
        {UINT64_C(1) << 50, UINT64_C(1) << 62, 5}, /* lowest * 2e5 past 2^62 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(kz_hist_init(&h, &bad[i], NULL), KZ_EINVAL, "bad config %zu", i);
        cr_assert_eq(kz_hist_footprint(&bad[i]), 0);
        kz_hist_fini(&h);
    }
    kz_hist_config edge = {1000, 2000, 5};
    cr_assert_eq(kz_hist_init(&h, &edge, NULL), 0);
    cr_assert_eq(kz_hist_record(&h, 2000), 0);
    cr_assert_eq(kz_hist_percentile(&h, 100), 2000);
    kz_hist_fini(&h);
}

/* Lowest/highest equivalents agree with the naive model at random values
 * and at every power-of-two and sub-bucket edge, for many layouts. */
Test(hist_layout, equivalents_match_model)
{
    static const uint64_t lowests[] = {1, 7, 1000, UINT64_C(1) << 20};
    static const uint64_t highests[] = {HIGHEST, UINT64_C(1) << 40};
    for (uint32_t d = 1; d <= 5; d++) {
        for (size_t li = 0; li < 4; li++) {
            for (size_t hi = 0; hi < 2; hi++) {
                uint64_t lo = lowests[li], top = highests[hi];
                kz_hist h;
                hist_open(&h, lo, top, d);
                for (unsigned k = 0; (UINT64_C(1) << k) <= top; k++) {
                    uint64_t p2 = UINT64_C(1) << k;
                    uint64_t step = naive_step(p2, lo, d);
                    uint64_t probes[] = {p2 - 1, p2, p2 + 1, p2 + step - 1, p2 + step,
                                         p2 + 3 * step - 1, p2 + 3 * step, p2 * 2 - step - 1};
                    for (size_t j = 0; j < sizeof probes / sizeof probes[0]; j++) {
                        uint64_t v = probes[j];
                        if (v > top)
                            continue;
                        cr_assert_eq(kz_hist_lowest_equivalent(&h, v), naive_lowest(v, lo, d),
                                     "d=%u lo=%" PRIu64 " v=%" PRIu64, d, lo, v);
                        cr_assert_eq(kz_hist_highest_equivalent(&h, v), naive_highest(v, lo, d),
                                     "d=%u lo=%" PRIu64 " v=%" PRIu64, d, lo, v);
                    }
                }
                rng_seed(d * 100 + li * 10 + hi);
                for (int i = 0; i < 20000; i++) {
                    uint64_t v = i % 2 ? rng_next() % (top + 1) : rng_log_uniform(top);
                    cr_assert_eq(kz_hist_lowest_equivalent(&h, v), naive_lowest(v, lo, d));
                    cr_assert_eq(kz_hist_highest_equivalent(&h, v), naive_highest(v, lo, d));
                }
                cr_assert_eq(kz_hist_lowest_equivalent(&h, top), naive_lowest(top, lo, d));
                kz_hist_fini(&h);
            }
        }
    }
}

/* Walking the model's buckets from 0 to highest, each bucket gets a cell
 * of its own: one sample at each bucket's lowest value leaves a count of
 * exactly 1 at every one of them, and there are no more buckets than
 * cells. */
Test(hist_layout, every_bucket_has_its_own_cell)
{
    static const kz_hist_config cfgs[] = {
        {1, HIGHEST, 3}, {1, HIGHEST, 1}, {7, 1000000, 2}, {1000, HIGHEST, 4}, {1, 1u << 30, 3},
    };
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        kz_hist h;
        cr_assert_eq(kz_hist_init(&h, &cfgs[c], NULL), 0);
        uint64_t buckets = 0;
        for (uint64_t v = 0; v <= cfgs[c].highest;
             v = naive_highest(v, cfgs[c].lowest, cfgs[c].digits) + 1) {
            cr_assert_eq(kz_hist_record(&h, v), 0);
            buckets++;
        }
        cr_assert_leq(buckets, h.counts_len);
        cr_assert_eq(kz_hist_total(&h), buckets);
        for (uint64_t v = 0; v <= cfgs[c].highest;
             v = naive_highest(v, cfgs[c].lowest, cfgs[c].digits) + 1)
            cr_assert_eq(kz_hist_count_at(&h, v), 1, "cfg %zu v=%" PRIu64, c, v);
        kz_hist_fini(&h);
    }
}

/* ---- small known cases ------------------------------------------------ */

Test(hist_small, empty)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    cr_assert_eq(kz_hist_total(&h), 0);
    cr_assert_eq(kz_hist_percentile(&h, 50), 0);
    cr_assert_eq(kz_hist_min(&h), 0);
    cr_assert_eq(kz_hist_max(&h), 0);
    cr_assert_eq(kz_hist_mean(&h), 0.0);
    kz_hist_fini(&h);
}

Test(hist_small, single_value)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    cr_assert_eq(kz_hist_record(&h, 12345), 0);
    for (size_t i = 0; i < N_PERCENTILES; i++)
        cr_assert_eq(kz_hist_percentile(&h, k_percentiles[i]), 12345);
    cr_assert_eq(kz_hist_min(&h), 12345);
    cr_assert_eq(kz_hist_max(&h), 12345);
    cr_assert_eq(kz_hist_total(&h), 1);
    /* 12345 lies in [8192, 16384), steps of 8: bucket [12344, 12351]. */
    cr_assert_eq(kz_hist_lowest_equivalent(&h, 12345), 12344);
    cr_assert_eq(kz_hist_highest_equivalent(&h, 12345), 12351);
    cr_assert_eq(kz_hist_mean(&h), 12348.0);
    kz_hist_fini(&h);
}

Test(hist_small, all_equal)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(kz_hist_record(&h, 777), 0);
    cr_assert_eq(kz_hist_record_n(&h, 777, 1000), 0);
    cr_assert_eq(kz_hist_total(&h), 2000);
    cr_assert_eq(kz_hist_count_at(&h, 777), 2000);
    for (size_t i = 0; i < N_PERCENTILES; i++)
        cr_assert_eq(kz_hist_percentile(&h, k_percentiles[i]), 777);
    cr_assert_eq(kz_hist_mean(&h), 777.0);
    kz_hist_fini(&h);
}

Test(hist_small, zero_value)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    cr_assert_eq(kz_hist_record(&h, 0), 0);
    cr_assert_eq(kz_hist_count_at(&h, 0), 1);
    cr_assert_eq(kz_hist_count_at(&h, 1), 0);
    cr_assert_eq(kz_hist_percentile(&h, 100), 0);
    cr_assert_eq(kz_hist_min(&h), 0);
    cr_assert_eq(kz_hist_max(&h), 0);
    cr_assert_eq(kz_hist_total(&h), 1);
    kz_hist_fini(&h);
    /* With lowest 1000 (steps of 512), 0 and 511 share the first cell. */
    hist_open(&h, 1000, HIGHEST, 3);
    cr_assert_eq(kz_hist_record(&h, 0), 0);
    cr_assert_eq(kz_hist_record(&h, 511), 0);
    cr_assert_eq(kz_hist_count_at(&h, 0), 2);
    cr_assert_eq(kz_hist_count_at(&h, 512), 0);
    cr_assert_eq(kz_hist_percentile(&h, 0), 511);
    cr_assert_eq(kz_hist_min(&h), 0);
    kz_hist_fini(&h);
}

/* Known bucket edges for the default layout (S = 2048): values below 2048
 * are exact, [2048, 4096) goes in steps of 2, [4096, 8192) in steps of 4. */
Test(hist_small, bucket_edges)
{
    static const struct {
        uint64_t v, lo, hi;
    } edges[] = {
        {0, 0, 0},          {1, 1, 1},          {1023, 1023, 1023}, {1024, 1024, 1024},
        {2047, 2047, 2047}, {2048, 2048, 2049}, {2049, 2048, 2049}, {2050, 2050, 2051},
        {4095, 4094, 4095}, {4096, 4096, 4099}, {4099, 4096, 4099}, {4100, 4100, 4103},
        {8191, 8188, 8191}, {8192, 8192, 8199}, {1048576, 1048576, 1049599},
        {HIGHEST, 59998208, 60030975},
    };
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        cr_assert_eq(kz_hist_lowest_equivalent(&h, edges[i].v), edges[i].lo, "v=%" PRIu64,
                     edges[i].v);
        cr_assert_eq(kz_hist_highest_equivalent(&h, edges[i].v), edges[i].hi, "v=%" PRIu64,
                     edges[i].v);
    }
    /* Two values one step apart at each power of two land in different
     * cells; two in the same step share one. */
    for (unsigned k = 11; (UINT64_C(1) << k) < HIGHEST; k++) {
        uint64_t p2 = UINT64_C(1) << k, step = p2 >> 10;
        kz_hist_reset(&h);
        cr_assert_eq(kz_hist_record(&h, p2), 0);
        cr_assert_eq(kz_hist_record(&h, p2 + step - 1), 0);
        cr_assert_eq(kz_hist_record(&h, p2 + step), 0);
        cr_assert_eq(kz_hist_record(&h, p2 - 1), 0);
        cr_assert_eq(kz_hist_count_at(&h, p2), 2, "k=%u", k);
        cr_assert_eq(kz_hist_count_at(&h, p2 + step), 1, "k=%u", k);
        cr_assert_eq(kz_hist_count_at(&h, p2 - 1), 1, "k=%u", k);
        cr_assert_eq(kz_hist_percentile(&h, 25), p2 - 1);
        cr_assert_eq(kz_hist_percentile(&h, 50), p2 + step - 1);
        cr_assert_eq(kz_hist_percentile(&h, 100), p2 + step);
    }
    kz_hist_fini(&h);
}

Test(hist_small, highest_and_out_of_range)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    cr_assert_eq(kz_hist_record(&h, HIGHEST), 0);
    cr_assert_eq(kz_hist_percentile(&h, 100), HIGHEST);
    cr_assert_eq(kz_hist_percentile(&h, 0), HIGHEST);
    cr_assert_eq(kz_hist_record(&h, HIGHEST + 1u), KZ_ERANGE);
    cr_assert_eq(kz_hist_out_of_range(&h), 1);
    cr_assert_eq(kz_hist_record(&h, UINT64_MAX), KZ_ERANGE);
    cr_assert_eq(kz_hist_record_n(&h, HIGHEST + 1u, 5), KZ_ERANGE);
    cr_assert_eq(kz_hist_out_of_range(&h), 7);
    cr_assert_eq(kz_hist_count_at(&h, HIGHEST + 1u), 0);
    /* Refused values touch nothing else. */
    cr_assert_eq(kz_hist_total(&h), 1);
    cr_assert_eq(kz_hist_max(&h), HIGHEST);
    cr_assert_eq(kz_hist_record_n(&h, 5, 0), 0);
    cr_assert_eq(kz_hist_record_n(&h, HIGHEST + 1u, 0), 0);
    cr_assert_eq(kz_hist_total(&h), 1);
    cr_assert_eq(kz_hist_min(&h), HIGHEST);
    cr_assert_eq(kz_hist_out_of_range(&h), 7);
    kz_hist_fini(&h);
}

/* ---- coordinated omission ---------------------------------------------- */

Test(hist_corrected, known_answer)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    cr_assert_eq(kz_hist_record_corrected(&h, 100, 10), 0);
    cr_assert_eq(kz_hist_total(&h), 10);
    for (uint64_t v = 10; v <= 100; v += 10)
        cr_assert_eq(kz_hist_count_at(&h, v), 1, "v=%" PRIu64, v);
    cr_assert_eq(kz_hist_count_at(&h, 0), 0);
    cr_assert_eq(kz_hist_min(&h), 10);
    cr_assert_eq(kz_hist_max(&h), 100);
    cr_assert_eq(kz_hist_percentile(&h, 0), 10);
    cr_assert_eq(kz_hist_percentile(&h, 50), 50);
    cr_assert_eq(kz_hist_percentile(&h, 90), 90);
    cr_assert_eq(kz_hist_percentile(&h, 91), 100);
    cr_assert_eq(kz_hist_mean(&h), 55.0);

    kz_hist_reset(&h);
    cr_assert_eq(kz_hist_record_corrected(&h, 25, 10), 0); /* 25, 15 */
    cr_assert_eq(kz_hist_total(&h), 2);
    cr_assert_eq(kz_hist_min(&h), 15);
    cr_assert_eq(kz_hist_record_corrected(&h, 15, 10), 0); /* 15 alone */
    cr_assert_eq(kz_hist_record_corrected(&h, 10, 10), 0); /* 10 alone */
    cr_assert_eq(kz_hist_record_corrected(&h, 7, 0), 0);   /* no interval */
    cr_assert_eq(kz_hist_total(&h), 5);
    cr_assert_eq(kz_hist_count_at(&h, 15), 2);
    cr_assert_eq(kz_hist_count_at(&h, 5), 0);
    cr_assert_eq(kz_hist_record_corrected(&h, HIGHEST + 1u, 10), KZ_ERANGE);
    cr_assert_eq(kz_hist_out_of_range(&h), 1);
    cr_assert_eq(kz_hist_total(&h), 5);
    kz_hist_fini(&h);
}

/* The per-bucket back-fill equals recording every missing sample one by
 * one, cell for cell. The coarse layout (steps of 512 below 2^17) puts the
 * end of the sequence and the next, unwanted term in one cell. */
static void check_backfill(const kz_hist_config *cfg, uint64_t seed)
{
    kz_hist fast, slow;
    cr_assert_eq(kz_hist_init(&fast, cfg, NULL), 0);
    cr_assert_eq(kz_hist_init(&slow, cfg, NULL), 0);
    rng_seed(seed);
    for (int round = 0; round < 300; round++) {
        uint64_t value = round == 0 ? 1000000 : rng_log_uniform(HIGHEST);
        uint64_t iv = round == 0 ? 1 : value / (1 + rng_next() % 100000) + rng_next() % 3;
        cr_assert_eq(kz_hist_record_corrected(&fast, value, iv), 0);
        cr_assert_eq(kz_hist_record(&slow, value), 0);
        for (uint64_t t = value; iv && t >= 2 * iv; t -= iv)
            cr_assert_eq(kz_hist_record(&slow, t - iv), 0);
        cr_assert_eq(kz_hist_total(&fast), kz_hist_total(&slow), "round %d", round);
    }
    cr_assert_eq(kz_hist_min(&fast), kz_hist_min(&slow));
    cr_assert_eq(kz_hist_max(&fast), kz_hist_max(&slow));
    cr_assert_eq(memcmp(fast.counts, slow.counts, fast.counts_len * sizeof(uint64_t)), 0);
    kz_hist_fini(&fast);
    kz_hist_fini(&slow);
}

Test(hist_corrected, matches_naive_backfill)
{
    kz_hist_config fine = {0}, coarse = {1000, HIGHEST, 2};
    check_backfill(&fine, 77);
    check_backfill(&coarse, 78);
    /* A hand-checked case in the coarse layout: 1000 with interval 100
     * back-fills 900..100; [512, 1023] holds 1000..600, [0, 511] 500..100. */
    kz_hist h;
    cr_assert_eq(kz_hist_init(&h, &coarse, NULL), 0);
    cr_assert_eq(kz_hist_record_corrected(&h, 1000, 100), 0);
    cr_assert_eq(kz_hist_total(&h), 10);
    cr_assert_eq(kz_hist_count_at(&h, 512), 5);
    cr_assert_eq(kz_hist_count_at(&h, 0), 5);
    cr_assert_eq(kz_hist_min(&h), 100);
    kz_hist_fini(&h);
}

/* ---- merge ------------------------------------------------------------ */

static void fill(kz_hist *h, dist_kind k, uint64_t seed, size_t n)
{
    rng_seed(seed);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(kz_hist_record(h, dist_sample(k)), 0);
}

Test(hist_merge, same_config_equals_recording_both)
{
    kz_hist a, b, both;
    hist_open(&a, 0, 0, 0);
    hist_open(&b, 0, 0, 0);
    hist_open(&both, 0, 0, 0);
    fill(&a, DIST_BIMODAL, 1, 300000);
    fill(&b, DIST_HEAVY_TAIL, 2, 300000);
    fill(&both, DIST_BIMODAL, 1, 300000);
    fill(&both, DIST_HEAVY_TAIL, 2, 300000);
    cr_assert_eq(kz_hist_record(&b, HIGHEST * 2u), KZ_ERANGE);
    cr_assert_eq(kz_hist_record(&both, HIGHEST * 2u), KZ_ERANGE);

    cr_assert_eq(kz_hist_merge(&a, &b), 0);
    cr_assert_eq(kz_hist_total(&a), kz_hist_total(&both));
    cr_assert_eq(kz_hist_min(&a), kz_hist_min(&both));
    cr_assert_eq(kz_hist_max(&a), kz_hist_max(&both));
    cr_assert_eq(kz_hist_out_of_range(&a), 1);
    cr_assert_eq(memcmp(a.counts, both.counts, a.counts_len * sizeof(uint64_t)), 0);
    for (double p = 0; p <= 100.0; p += 0.5)
        cr_assert_eq(kz_hist_percentile(&a, p), kz_hist_percentile(&both, p), "p=%g", p);
    cr_assert_eq(kz_hist_mean(&a), kz_hist_mean(&both));

    /* Merging an empty histogram changes nothing; merging into an empty
     * one copies. */
    kz_hist empty;
    hist_open(&empty, 0, 0, 0);
    cr_assert_eq(kz_hist_merge(&a, &empty), 0);
    cr_assert_eq(kz_hist_total(&a), kz_hist_total(&both));
    cr_assert_eq(kz_hist_merge(&empty, &b), 0);
    cr_assert_eq(memcmp(empty.counts, b.counts, b.counts_len * sizeof(uint64_t)), 0);
    cr_assert_eq(kz_hist_min(&empty), kz_hist_min(&b));
    kz_hist_fini(&empty);
    kz_hist_fini(&a);
    kz_hist_fini(&b);
    kz_hist_fini(&both);
}

/* Merging across layouts keeps the >= exact guarantee; the error is at
 * most the two precisions compounded. */
static void check_cross_merge(const kz_hist_config *src_cfg, const kz_hist_config *dst_cfg)
{
    const size_t n = 400000;
    uint64_t *s = malloc(2 * n * sizeof *s);
    cr_assert_not_null(s);
    kz_hist src, dst;
    cr_assert_eq(kz_hist_init(&src, src_cfg, NULL), 0);
    cr_assert_eq(kz_hist_init(&dst, dst_cfg, NULL), 0);
    rng_seed(88);
    for (size_t i = 0; i < 2 * n; i++) {
        s[i] = dist_sample(i % 2 ? DIST_LOG_UNIFORM : DIST_BIMODAL);
        cr_assert_eq(kz_hist_record(i < n ? &src : &dst, s[i]), 0);
    }
    qsort(s, 2 * n, sizeof *s, cmp_u64);
    cr_assert_eq(kz_hist_merge(&dst, &src), 0);
    cr_assert_eq(kz_hist_total(&dst), 2 * n);
    cr_assert_eq(kz_hist_min(&dst), s[0]);
    cr_assert_eq(kz_hist_max(&dst), s[2 * n - 1]);
    double e1 = 1.0 / (double)pow10u(src.cfg.digits), e2 = 1.0 / (double)pow10u(dst.cfg.digits);
    for (double p = 0; p <= 100.0; p += 0.25) {
        uint64_t exact = exact_percentile(s, 2 * n, p), got = kz_hist_percentile(&dst, p);
        double bound = (double)exact * (e1 + e2 + e1 * e2) +
                       (double)(src.cfg.lowest + dst.cfg.lowest);
        cr_assert(got >= exact, "p=%g: %" PRIu64 " < %" PRIu64, p, got, exact);
        cr_assert((double)(got - exact) <= bound, "p=%g: %" PRIu64 " vs %" PRIu64, p, got,
                  exact);
    }
    kz_hist_fini(&src);
    kz_hist_fini(&dst);
    free(s);
}

Test(hist_merge, differing_configs)
{
    kz_hist_config fine = {1, HIGHEST, 4}, coarse = {1, HIGHEST, 2};
    kz_hist_config shifted = {1000, HIGHEST, 3}, wide = {1, UINT64_C(1) << 40, 3};
    check_cross_merge(&fine, &coarse);
    check_cross_merge(&coarse, &fine);
    check_cross_merge(&shifted, &fine);
    check_cross_merge(&fine, &shifted);
    /* Same cells, different highest: still the exact cell-wise path. */
    check_cross_merge(&wide, &(kz_hist_config){0});
}

Test(hist_merge, values_that_do_not_fit)
{
    kz_hist_config wide = {1, UINT64_C(1) << 40, 3};
    kz_hist src, dst;
    cr_assert_eq(kz_hist_init(&src, &wide, NULL), 0);
    hist_open(&dst, 0, 0, 0);
    rng_seed(99);
    uint64_t fits = 0, big = 0, top_fit = 0;
    for (int i = 0; i < 100000; i++) {
        /* Either well under 60 s or well above, so that bucket edges never
         * straddle the limit. */
        uint64_t v = rng_next() % 3 ? rng_log_uniform(50000000)
                                    : 100000000 + rng_next() % 1000000000;
        cr_assert_eq(kz_hist_record(&src, v), 0);
        if (v <= HIGHEST) {
            fits++;
            top_fit = v > top_fit ? v : top_fit;
        } else {
            big++;
        }
    }
    cr_assert_eq(kz_hist_record(&src, UINT64_C(1) << 41), KZ_ERANGE);
    cr_assert_eq(kz_hist_merge(&dst, &src), KZ_ERANGE);
    cr_assert_eq(kz_hist_total(&dst), fits);
    cr_assert_eq(kz_hist_out_of_range(&dst), big + 1);
    cr_assert_eq(kz_hist_min(&dst), kz_hist_min(&src));
    cr_assert_geq(kz_hist_max(&dst), top_fit);
    cr_assert_leq(kz_hist_max(&dst), top_fit + top_fit / 1000);
    cr_assert_leq(kz_hist_percentile(&dst, 100), HIGHEST);
    kz_hist_fini(&src);
    kz_hist_fini(&dst);
}

/* ---- reset and allocation --------------------------------------------- */

Test(hist_reset, clears_counts_keeps_config)
{
    kz_hist h, fresh;
    kz_hist_config cfg = {5, 1000000, 2};
    cr_assert_eq(kz_hist_init(&h, &cfg, NULL), 0);
    cr_assert_eq(kz_hist_init(&fresh, &cfg, NULL), 0);
    uint64_t *mem = h.counts;
    fill(&h, DIST_BIMODAL, 3, 10000);
    cr_assert_eq(kz_hist_record(&h, 2000000), KZ_ERANGE);
    kz_hist_reset(&h);
    cr_assert_eq(h.counts, mem);
    cr_assert_eq(h.cfg.lowest, 5);
    cr_assert_eq(h.cfg.highest, 1000000);
    cr_assert_eq(h.cfg.digits, 2);
    cr_assert_eq(kz_hist_total(&h), 0);
    cr_assert_eq(kz_hist_out_of_range(&h), 0);
    cr_assert_eq(kz_hist_min(&h), 0);
    cr_assert_eq(kz_hist_max(&h), 0);
    cr_assert_eq(kz_hist_percentile(&h, 99), 0);
    for (uint32_t i = 0; i < h.counts_len; i++)
        cr_assert_eq(h.counts[i], 0);
    /* After reset it behaves like a new histogram, min included. */
    cr_assert_eq(kz_hist_record(&h, 900), 0);
    cr_assert_eq(kz_hist_record(&fresh, 900), 0);
    cr_assert_eq(kz_hist_min(&h), 900);
    cr_assert_eq(memcmp(h.counts, fresh.counts, h.counts_len * sizeof(uint64_t)), 0);
    kz_hist_fini(&h);
    kz_hist_fini(&fresh);
}

static int count_tick(void *ctx, const kz_hist_tick *t)
{
    (void)t;
    ++*(size_t *)ctx;
    return 0;
}

Test(hist_alloc, nothing_allocates_after_init)
{
    kz_counting_alloc ca;
    kz_counting_alloc_init(&ca, NULL);
    kz_allocator a = kz_counting_alloc_allocator(&ca);
    kz_hist h, other;
    kz_hist_config fine = {1, HIGHEST, 4};
    cr_assert_eq(kz_hist_init(&h, NULL, &a), 0);
    cr_assert_eq(kz_hist_init(&other, &fine, &a), 0);
    cr_assert_eq(kz_counting_alloc_allocs(&ca), 2);
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 139264 + 212992 * 8);
    uint64_t before = kz_counting_alloc_allocs(&ca);

    fill(&h, DIST_LOG_UNIFORM, 4, 100000);
    fill(&other, DIST_HEAVY_TAIL, 5, 100000);
    cr_assert_eq(kz_hist_record_n(&h, 42, 10), 0);
    cr_assert_eq(kz_hist_record_corrected(&h, 5000000, 3), 0);
    cr_assert_eq(kz_hist_record(&h, HIGHEST + 1u), KZ_ERANGE);
    uint64_t sink = kz_hist_percentile(&h, 99.9) + kz_hist_min(&h) + kz_hist_max(&h);
    sink += (uint64_t)kz_hist_mean(&h);
    cr_assert_eq(kz_hist_merge(&h, &other), 0);
    cr_assert_eq(kz_hist_merge(&other, &h), 0);
    size_t ticks = 0;
    cr_assert_eq(kz_hist_foreach_percentile(&h, 5, count_tick, &ticks), 0);
    kz_hist_reset(&h);
    cr_assert_gt(sink + ticks, 0);
    cr_assert_eq(kz_counting_alloc_allocs(&ca), before);

    kz_hist_fini(&h);
    kz_hist_fini(&other);
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0);
    cr_assert_eq(ca.frees, 2);

    /* Out of memory: init fails cleanly and fini is harmless. */
    ca.fail_after = (int64_t)kz_counting_alloc_allocs(&ca);
    cr_assert_eq(kz_hist_init(&h, NULL, &a), KZ_ENOMEM);
    kz_hist_fini(&h);
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0);
}

/* ---- table export ------------------------------------------------------ */

typedef struct row {
    double p, inverse;
    uint64_t value, count;
} row;

/* Parses the table in `buf`: data lines are those not starting with '#'. */
static size_t parse_rows(char *buf, row *rows, size_t cap, size_t *comments)
{
    size_t n = 0;
    *comments = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') {
            ++*comments;
            continue;
        }
        char inv[32];
        cr_assert_lt(n, cap);
        int got = sscanf(line, "%lf %" SCNu64 " %" SCNu64 " %31s", &rows[n].p, &rows[n].value,
                         &rows[n].count, inv);
        cr_assert_eq(got, 4, "bad row: %s", line);
        rows[n].inverse = strcmp(inv, "inf") == 0 ? INFINITY : strtod(inv, NULL);
        n++;
    }
    return n;
}

static char *print_to_string(const kz_hist *h, uint32_t ticks)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(kz_hist_print(h, f, ticks), 0);
    fclose(f);
    return buf;
}

static void check_monotone(const row *rows, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        cr_assert_gt(rows[i].p, rows[i - 1].p, "row %zu", i);
        cr_assert_geq(rows[i].value, rows[i - 1].value, "row %zu", i);
        cr_assert_geq(rows[i].count, rows[i - 1].count, "row %zu", i);
        cr_assert_geq(rows[i].inverse, rows[i - 1].inverse, "row %zu", i);
    }
}

/* 1..1000 with one tick per half-distance: levels 100 - 100/2^k for
 * k = 0..9 (rank below 1000), then the final 100: 11 rows. */
Test(hist_table, known_rows)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    for (uint64_t v = 1; v <= 1000; v++)
        cr_assert_eq(kz_hist_record(&h, v), 0);
    char *buf = print_to_string(&h, 1);
    row rows[64];
    size_t comments;
    size_t n = parse_rows(buf, rows, 64, &comments);
    cr_assert_eq(n, 11);
    cr_assert_eq(comments, 2);
    check_monotone(rows, n);
    for (size_t k = 0; k < 10; k++) {
        double p = 100.0 - 100.0 / (double)(1u << k);
        cr_assert_float_eq(rows[k].p, p, 1e-5, "row %zu", k);
        uint64_t want = (uint64_t)ceil(p * 10.0);
        want = want ? want : 1;
        cr_assert_eq(rows[k].value, want, "row %zu", k);
        cr_assert_eq(rows[k].count, want, "row %zu", k);
        cr_assert_float_eq(rows[k].inverse, (double)(1u << k), 1e-2, "row %zu", k);
    }
    cr_assert_eq(rows[10].p, 100.0);
    cr_assert_eq(rows[10].value, 1000);
    cr_assert_eq(rows[10].count, 1000);
    cr_assert(isinf(rows[10].inverse));
    free(buf);
    kz_hist_fini(&h);
}

typedef struct tick_log {
    const kz_hist *h;
    size_t n;
    double last_p;
} tick_log;

static int check_tick(void *ctx, const kz_hist_tick *t)
{
    tick_log *log = ctx;
    cr_assert_eq(t->value, kz_hist_percentile(log->h, t->percentile), "p=%g", t->percentile);
    if (log->n)
        cr_assert_gt(t->percentile, log->last_p);
    log->last_p = t->percentile;
    log->n++;
    return 0;
}

static int stop_after_three(void *ctx, const kz_hist_tick *t)
{
    (void)t;
    return ++*(int *)ctx == 3 ? 7 : 0;
}

Test(hist_table, rows_match_iterator)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    fill(&h, DIST_HEAVY_TAIL, 6, N_SAMPLES);
    tick_log log = {&h, 0, 0};
    cr_assert_eq(kz_hist_foreach_percentile(&h, 0, check_tick, &log), 0);
    /* Five ticks per half-distance until the rank reaches 10^6 takes about
     * 5 * log2(10^6) = 100 rows. */
    cr_assert_geq(log.n, 90);
    cr_assert_leq(log.n, 110);
    cr_assert_eq(log.last_p, 100.0);

    char *buf = print_to_string(&h, 0);
    static row rows[512];
    size_t comments;
    size_t n = parse_rows(buf, rows, 512, &comments);
    cr_assert_eq(n, log.n);
    check_monotone(rows, n);
    cr_assert_eq(rows[0].p, 0.0);
    cr_assert_eq(rows[1].p, 10.0);
    cr_assert_eq(rows[5].p, 50.0);
    cr_assert_eq(rows[6].p, 55.0);
    cr_assert_eq(rows[10].p, 75.0);
    cr_assert_eq(rows[11].p, 77.5);
    cr_assert_eq(rows[n - 1].value, kz_hist_max(&h));
    cr_assert_eq(rows[n - 1].count, N_SAMPLES);
    free(buf);

    int calls = 0;
    cr_assert_eq(kz_hist_foreach_percentile(&h, 5, stop_after_three, &calls), 7);
    cr_assert_eq(calls, 3);
    kz_hist_fini(&h);
}

Test(hist_table, empty_and_single)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    row rows[8];
    size_t comments;
    char *buf = print_to_string(&h, 3);
    cr_assert_eq(parse_rows(buf, rows, 8, &comments), 0);
    cr_assert_eq(comments, 2);
    free(buf);
    cr_assert_eq(kz_hist_record(&h, 31), 0);
    buf = print_to_string(&h, 3);
    cr_assert_eq(parse_rows(buf, rows, 8, &comments), 1);
    cr_assert_eq(rows[0].p, 100.0);
    cr_assert_eq(rows[0].value, 31);
    free(buf);
    kz_hist_fini(&h);
}

Test(hist_table, write_error_reported)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    fill(&h, DIST_LOG_UNIFORM, 7, 10000);
    char small[64];
    FILE *f = fmemopen(small, sizeof small, "w");
    cr_assert_not_null(f);
    setvbuf(f, NULL, _IONBF, 0);
    cr_assert_eq(kz_hist_print(&h, f, 5), KZ_EIO);
    fclose(f);
    kz_hist_fini(&h);
}

/* ---- caller misuse asserts ------------------------------------------- */

Test(hist_misuse, percentile_above_100, .signal = SIGABRT)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    (void)kz_hist_percentile(&h, 100.5);
}

Test(hist_misuse, percentile_nan, .signal = SIGABRT)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    (void)kz_hist_percentile(&h, NAN);
}

Test(hist_misuse, merge_into_itself, .signal = SIGABRT)
{
    kz_hist h;
    hist_open(&h, 0, 0, 0);
    (void)kz_hist_merge(&h, &h);
}
