/*
 * Quantization: every stated error bound is checked over millions of
 * seeded random inputs and shown not to be vacuous (the worst observed
 * error comes close to it), endpoints are exact, bad inputs are refused
 * with outputs untouched, q and -q encode alike, and any wire code decodes
 * to a finite value (a unit quaternion for rotations).
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <string.h>

#include <kizuna/quant.h>

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, 1). */
static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * 0x1p-53;
}

/* A float uniformly spread over [lo, hi], endpoints included. */
static float rng_float_in(uint64_t *s, float lo, float hi)
{
    double v = lo + rng_unit(s) * ((double)hi - lo);
    float f = (float)v;
    return f < lo ? lo : f > hi ? hi : f;
}

/* ---- scalar ------------------------------------------------------------ */

static const struct {
    float min, max;
    unsigned bits;
} scalar_cases[] = {
    {0.0f, 1.0f, 8},          {-1.0f, 1.0f, 12},      {-1000.0f, 1000.0f, 16},
    {-1000.0f, 1000.0f, 32},  {0.5f, 0.75f, 20},      {-3e5f, 1e2f, 24},
    {-2.0f, 2.0f, 1},         {1e-3f, 2e-3f, 10},     {-FLT_MAX, FLT_MAX, 32},
    {0.0f, 6.2831855f, 11},
};

#define N_SCALAR_CASES (sizeof scalar_cases / sizeof scalar_cases[0])

Test(quant, scalar_error_bound_holds_and_is_not_vacuous)
{
    const size_t per_case = 250000;
    size_t total = 0;
    uint64_t rng = 0x853c49e6748fea9bull;
    for (size_t c = 0; c < N_SCALAR_CASES; c++) {
        kz_quant q;
        cr_assert_eq(kz_quant_init(&q, scalar_cases[c].min, scalar_cases[c].max,
                                   scalar_cases[c].bits),
                     KZ_OK);
        double worst = 0;
        for (size_t i = 0; i < per_case; i++) {
            float v = rng_float_in(&rng, q.min, q.max);
            uint32_t code;
            cr_assert_eq(kz_quant_encode(&q, v, &code), KZ_OK);
            cr_assert_leq(code, q.max_code);
            float d = kz_quant_decode(&q, code);
            cr_assert(d >= q.min && d <= q.max, "case %zu: %g decoded outside", c, d);
            /* Both are floats, so the difference in double is exact unless
             * it is astronomically large. */
            double err = fabs((double)d - (double)v);
            cr_assert_leq(err, q.max_error, "case %zu: v=%.9g d=%.9g err=%g bound=%g", c, v, d,
                          err, q.max_error);
            worst = err > worst ? err : worst;
        }
        cr_log_info("scalar case %zu: worst %g of stated %g (%.0f%%)", c, worst, q.max_error,
                    100 * worst / q.max_error);
        cr_assert_gt(worst, 0.4 * q.max_error, "case %zu: bound looks vacuous (%g vs %g)", c,
                     worst, q.max_error);
        total += per_case;
    }
    cr_assert_geq(total, 2000000);
}

Test(quant, scalar_bound_is_close_to_half_a_step_when_floats_are_fine)
{
    kz_quant q;
    cr_assert_eq(kz_quant_init(&q, -1.0f, 1.0f, 12), KZ_OK);
    cr_assert_float_eq(q.step, 2.0 / 4095, 1e-15);
    /* Half a step plus at most half the float spacing just above 1. */
    cr_assert_leq(q.max_error, q.step / 2 + 0x1p-24 + 1e-13, "stated bound %g", q.max_error);
    cr_assert_geq(q.max_error, q.step / 2);
}

Test(quant, scalar_endpoints_are_exact)
{
    for (size_t c = 0; c < N_SCALAR_CASES; c++) {
        kz_quant q;
        uint32_t code = 12345;
        cr_assert_eq(kz_quant_init(&q, scalar_cases[c].min, scalar_cases[c].max,
                                   scalar_cases[c].bits),
                     KZ_OK);
        cr_assert_eq(q.max_code, (uint32_t)((1ull << scalar_cases[c].bits) - 1));
        cr_assert_eq(kz_quant_encode(&q, q.min, &code), KZ_OK);
        cr_assert_eq(code, 0, "case %zu", c);
        cr_assert_eq(kz_quant_encode(&q, q.max, &code), KZ_OK);
        cr_assert_eq(code, q.max_code, "case %zu", c);
        cr_assert(kz_quant_decode(&q, 0) == q.min, "case %zu", c);
        cr_assert(kz_quant_decode(&q, q.max_code) == q.max, "case %zu", c);
        /* Codes from the wire above the top code clamp to max. */
        if (q.bits < 32) {
            cr_assert(kz_quant_decode(&q, q.max_code + 1) == q.max);
            cr_assert(kz_quant_decode(&q, UINT32_MAX) == q.max);
        }
    }
}

Test(quant, scalar_decode_of_every_code_is_monotonic_and_in_range)
{
    kz_quant q;
    cr_assert_eq(kz_quant_init(&q, -7.5f, 3.25f, 16), KZ_OK);
    float prev = -INFINITY;
    for (uint32_t c = 0; c <= q.max_code; c++) {
        float d = kz_quant_decode(&q, c);
        cr_assert(d > prev && d >= q.min && d <= q.max, "code %u", c);
        uint32_t back;
        cr_assert_eq(kz_quant_encode(&q, d, &back), KZ_OK);
        cr_assert_eq(back, c, "decoded value of code %u re-encodes to %u", c, back);
        prev = d;
    }
}

Test(quant, scalar_rejects_bad_inputs_and_leaves_output)
{
    kz_quant q;
    cr_assert_eq(kz_quant_init(&q, -1.0f, 2.0f, 10), KZ_OK);
    static const struct {
        float v;
        int rc;
    } bad[] = {
        {NAN, KZ_ENOTFINITE}, {-NAN, KZ_ENOTFINITE}, {INFINITY, KZ_ENOTFINITE},
        {-INFINITY, KZ_ENOTFINITE}, {2.0000002f, KZ_ERANGE}, {-1.0000001f, KZ_ERANGE},
        {1e30f, KZ_ERANGE}, {-FLT_MAX, KZ_ERANGE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t code = 0xdeadbeef;
        cr_assert_eq(kz_quant_encode(&q, bad[i].v, &code), bad[i].rc, "case %zu", i);
        cr_assert_eq(code, 0xdeadbeef, "case %zu touched the output", i);
    }
}

Test(quant, scalar_init_rejects_bad_parameters)
{
    static const struct {
        float min, max;
        unsigned bits;
    } bad[] = {
        {NAN, 1, 8}, {0, NAN, 8}, {-INFINITY, 1, 8}, {0, INFINITY, 8}, {1, 1, 8}, {2, 1, 8},
        {0, 1, 0},   {0, 1, 33},  {-0.0f, 0.0f, 8},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kz_quant q;
        memset(&q, 0x5a, sizeof q);
        kz_quant before = q;
        cr_assert_eq(kz_quant_init(&q, bad[i].min, bad[i].max, bad[i].bits), KZ_EINVAL,
                     "case %zu", i);
        cr_assert_eq(memcmp(&q, &before, sizeof q), 0, "case %zu touched q", i);
    }
}

/* ---- positions --------------------------------------------------------- */

Test(quant, posq_bits_per_axis)
{
    static const struct {
        float range, step;
        uint32_t bits;
    } cases[] = {
        {1, 1, 1},      {3, 1, 2},        {4, 1, 3},         {1024, 0.002f, 19},
        {2000, 0.002f, 20}, {250, 0.002f, 17}, {4, 0.001f, 12}, {4294967.0f, 0.001f, 32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float lo[3] = {-cases[i].range / 2, 0, 10};
        float hi[3] = {cases[i].range / 2, cases[i].range, 10 + cases[i].range};
        kz_posq p;
        cr_assert_eq(kz_posq_init(&p, lo, hi, cases[i].step), KZ_OK, "case %zu", i);
        for (int a = 0; a < 3; a++) {
            cr_assert_eq(p.axis[a].bits, cases[i].bits, "case %zu axis %d: %u bits", i, a,
                         p.axis[a].bits);
            cr_assert_leq(p.axis[a].step, cases[i].step, "case %zu axis %d", i, a);
        }
        cr_assert_eq(p.total_bits, 3 * cases[i].bits);
    }
}

Test(quant, posq_init_rejects_bad_parameters)
{
    float lo[3] = {-1, -1, -1}, hi[3] = {1, 1, 1};
    kz_posq p;
    memset(&p, 0x5a, sizeof p);
    kz_posq before = p;
    cr_assert_eq(kz_posq_init(&p, lo, hi, 0), KZ_EINVAL);
    cr_assert_eq(kz_posq_init(&p, lo, hi, -0.1f), KZ_EINVAL);
    cr_assert_eq(kz_posq_init(&p, lo, hi, NAN), KZ_EINVAL);
    cr_assert_eq(kz_posq_init(&p, lo, hi, INFINITY), KZ_EINVAL);
    float flat[3] = {1, -1, 1};
    cr_assert_eq(kz_posq_init(&p, lo, flat, 0.01f), KZ_EINVAL);
    float nan_hi[3] = {1, 1, NAN};
    cr_assert_eq(kz_posq_init(&p, lo, nan_hi, 0.01f), KZ_EINVAL);
    /* 2e6 m at 0.1 mm needs 35 bits. */
    float big_lo[3] = {-1, -1e6f, -1}, big_hi[3] = {1, 1e6f, 1};
    cr_assert_eq(kz_posq_init(&p, big_lo, big_hi, 1e-4f), KZ_ERANGE);
    cr_assert_eq(memcmp(&p, &before, sizeof p), 0, "a failed init touched p");
}

Test(quant, posq_error_bound_over_a_million_positions)
{
    const float lo[3] = {-1000.0f, -50.0f, -1000.0f}, hi[3] = {1000.0f, 200.0f, 1000.0f};
    kz_posq p;
    cr_assert_eq(kz_posq_init(&p, lo, hi, 0.002f), KZ_OK);
    cr_assert_eq(p.axis[0].bits, 20);
    cr_assert_eq(p.axis[1].bits, 17);
    for (int a = 0; a < 3; a++) {
        /* The stated bound is the requested half-step plus float slack. */
        cr_assert_leq(p.axis[a].max_error, 0.001 + 0x1p-24 * 1000 * 2, "axis %d", a);
    }
    uint64_t rng = 0xda3e39cb94b95bdbull;
    double worst[3] = {0, 0, 0};
    for (size_t i = 0; i < 1000000; i++) {
        float v[3], d[3];
        uint32_t c[3];
        for (int a = 0; a < 3; a++)
            v[a] = rng_float_in(&rng, lo[a], hi[a]);
        cr_assert_eq(kz_posq_encode(&p, v, c), KZ_OK);
        kz_posq_decode(&p, c, d);
        for (int a = 0; a < 3; a++) {
            double err = fabs((double)d[a] - v[a]);
            cr_assert_leq(err, p.axis[a].max_error, "axis %d: v=%.9g d=%.9g", a, v[a], d[a]);
            worst[a] = err > worst[a] ? err : worst[a];
        }
    }
    for (int a = 0; a < 3; a++) {
        cr_log_info("posq axis %d: worst %g of stated %g", a, worst[a], p.axis[a].max_error);
        cr_assert_gt(worst[a], 0.4 * p.axis[a].max_error, "axis %d: bound vacuous", a);
    }
}

Test(quant, posq_endpoints_and_rejections)
{
    const float lo[3] = {-10, 0, 5}, hi[3] = {10, 3, 6};
    kz_posq p;
    cr_assert_eq(kz_posq_init(&p, lo, hi, 0.01f), KZ_OK);
    uint32_t c[3];
    float d[3];
    cr_assert_eq(kz_posq_encode(&p, lo, c), KZ_OK);
    cr_assert(c[0] == 0 && c[1] == 0 && c[2] == 0);
    kz_posq_decode(&p, c, d);
    cr_assert(d[0] == lo[0] && d[1] == lo[1] && d[2] == lo[2]);
    cr_assert_eq(kz_posq_encode(&p, hi, c), KZ_OK);
    for (int a = 0; a < 3; a++)
        cr_assert_eq(c[a], p.axis[a].max_code);
    kz_posq_decode(&p, c, d);
    cr_assert(d[0] == hi[0] && d[1] == hi[1] && d[2] == hi[2]);

    static const struct {
        float v[3];
        int rc;
    } bad[] = {
        {{NAN, 1, 5.5f}, KZ_ENOTFINITE},
        {{0, INFINITY, 5.5f}, KZ_ENOTFINITE},
        {{0, 1, -INFINITY}, KZ_ENOTFINITE},
        /* Non-finite wins over out-of-range whatever the order. */
        {{100, 1, NAN}, KZ_ENOTFINITE},
        {{10.001f, 1, 5.5f}, KZ_ERANGE},
        {{0, -0.001f, 5.5f}, KZ_ERANGE},
        {{0, 1, 6.0001f}, KZ_ERANGE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t out[3] = {7, 8, 9};
        cr_assert_eq(kz_posq_encode(&p, bad[i].v, out), bad[i].rc, "case %zu", i);
        cr_assert(out[0] == 7 && out[1] == 8 && out[2] == 9, "case %zu touched codes", i);
    }
    /* Corrupt codes clamp into the box. */
    uint32_t wild[3] = {UINT32_MAX, UINT32_MAX, UINT32_MAX};
    kz_posq_decode(&p, wild, d);
    cr_assert(d[0] == hi[0] && d[1] == hi[1] && d[2] == hi[2]);
}

/* ---- quaternions ------------------------------------------------------- */

/* A uniformly random unit quaternion as floats: four normal deviates
 * (Box-Muller), normalized. */
static void random_quat(uint64_t *rng, float q[4])
{
    double g[4], n = 0;
    for (int i = 0; i < 4; i += 2) {
        double u = rng_unit(rng), v = rng_unit(rng);
        double r = sqrt(-2 * log(1 - u));
        g[i] = r * cos(6.283185307179586 * v);
        g[i + 1] = r * sin(6.283185307179586 * v);
    }
    for (int i = 0; i < 4; i++)
        n += g[i] * g[i];
    n = sqrt(n);
    for (int i = 0; i < 4; i++)
        q[i] = (float)(g[i] / n);
}

/* The reference the bound is stated against: the input normalized in
 * double, negated if its largest-magnitude component (lowest index on
 * ties) is negative. Returns that index. */
static int canonical(const float q[4], double p[4])
{
    double n = 0;
    int m = 0;
    for (int i = 0; i < 4; i++)
        n += (double)q[i] * q[i];
    n = sqrt(n);
    for (int i = 0; i < 4; i++) {
        p[i] = q[i] / n;
        if (fabs(p[i]) > fabs(p[m]))
            m = i;
    }
    if (p[m] < 0) {
        for (int i = 0; i < 4; i++)
            p[i] = -p[i];
    }
    return m;
}

static double quat_norm(const float q[4])
{
    double n = 0;
    for (int i = 0; i < 4; i++)
        n += (double)q[i] * q[i];
    return sqrt(n);
}

/* Encodes, decodes and checks one quaternion; returns the largest
 * component error. Also checks that -q gives the same code. */
static double check_quat(const float q[4], unsigned k)
{
    uint64_t code, neg_code;
    float d[4], nq[4] = {-q[0], -q[1], -q[2], -q[3]};
    double p[4], worst = 0;
    cr_assert_eq(kz_quat_encode(q, k, &code), KZ_OK);
    cr_assert_eq(kz_quat_encode(nq, k, &neg_code), KZ_OK);
    cr_assert_eq(code, neg_code, "q and -q encode differently (k=%u)", k);
    cr_assert_eq(code >> KZ_QUAT_BITS(k), 0, "code wider than 2+3k bits");
    int m = canonical(q, p);
    cr_assert_eq((int)(code >> (3 * k)), m, "index field is not the largest component");
    kz_quat_decode(code, k, d);
    for (int i = 0; i < 4; i++) {
        double err = fabs((double)d[i] - p[i]);
        worst = err > worst ? err : worst;
    }
    cr_assert_leq(worst, kz_quat_max_error(k),
                  "k=%u q=(%.9g %.9g %.9g %.9g) d=(%.9g %.9g %.9g %.9g) err %g > %g", k, q[0],
                  q[1], q[2], q[3], d[0], d[1], d[2], d[3], worst, kz_quat_max_error(k));
    cr_assert_leq(fabs(quat_norm(d) - 1), 1e-6);
    return worst;
}

static const unsigned quat_ks[] = {2, 3, 4, 6, 8, 10, 12, 15, 18, 20};
#define N_QUAT_KS (sizeof quat_ks / sizeof quat_ks[0])

Test(quant, quat_error_bound_over_random_unit_quaternions)
{
    const size_t per_k = 150000;
    size_t total = 0;
    uint64_t rng = 0x6a09e667f3bcc909ull;
    for (size_t j = 0; j < N_QUAT_KS; j++) {
        unsigned k = quat_ks[j];
        double worst = 0;
        for (size_t i = 0; i < per_k; i++) {
            float q[4];
            random_quat(&rng, q);
            double e = check_quat(q, k);
            worst = e > worst ? e : worst;
        }
        total += per_k;
        cr_log_info("quat k=%u: worst %g of stated %g (%.0f%%)", k, worst, kz_quat_max_error(k),
                    100 * worst / kz_quat_max_error(k));
    }
    cr_assert_geq(total, 1000000);
}

Test(quant, quat_error_bound_near_the_worst_case)
{
    /* The rebuilt component errs most when all four components are near
     * 1/2 and the three quantization errors push the same way. Sample that
     * neighbourhood densely, with every sign pattern. */
    uint64_t rng = 0xbb67ae8584caa73bull;
    for (size_t j = 0; j < N_QUAT_KS; j++) {
        unsigned k = quat_ks[j];
        /* Spread over a few grid cells, so the quantization errors take
         * every value in each cell. */
        double spread = 3 * sqrt(2.0) / ((1u << k) - 2), worst = 0;
        for (size_t i = 0; i < 40000; i++) {
            double g[4], n = 0;
            float q[4];
            for (int c = 0; c < 4; c++) {
                double sign = (rng_next(&rng) >> 40) & 1 ? 1 : -1;
                g[c] = (0.5 + (rng_unit(&rng) - 0.5) * spread) * sign;
                n += g[c] * g[c];
            }
            for (int c = 0; c < 4; c++)
                q[c] = (float)(g[c] / sqrt(n));
            double e = check_quat(q, k);
            worst = e > worst ? e : worst;
        }
        double ratio = worst / kz_quat_max_error(k);
        cr_log_info("quat k=%u near (1/2,1/2,1/2,1/2): worst %g of stated %g (%.0f%%)", k, worst,
                    kz_quat_max_error(k), 100 * ratio);
        /* For k >= 4 the bound is the derived tight one: show it is
         * approached, so it is not vacuous. */
        if (k >= 4)
            cr_assert_gt(ratio, 0.4, "k=%u: stated bound looks vacuous (%.2f)", k, ratio);
    }
}

Test(quant, quat_exact_cases)
{
    /* Axis-aligned rotations and the identity survive exactly: the grid
     * has an exact zero. */
    static const float cases[][4] = {
        {0, 0, 0, 1}, {0, 0, 0, -1}, {1, 0, 0, 0}, {0, -1, 0, 0}, {0, 0, 1, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (unsigned k = KZ_QUAT_K_MIN; k <= KZ_QUAT_K_MAX; k++) {
            uint64_t code;
            float d[4];
            double p[4];
            cr_assert_eq(kz_quat_encode(cases[c], k, &code), KZ_OK);
            int m = canonical(cases[c], p);
            uint64_t mid = (1u << (k - 1)) - 1;
            uint64_t want = (uint64_t)m << (3 * k) | mid << (2 * k) | mid << k | mid;
            cr_assert_eq(code, want, "case %zu k=%u: code %llx", c, k, (unsigned long long)code);
            kz_quat_decode(code, k, d);
            for (int i = 0; i < 4; i++)
                cr_assert(d[i] == (float)p[i], "case %zu k=%u component %d", c, k, i);
        }
    }
}

Test(quant, quat_known_layout)
{
    /* (x, y, z, w) = (0.6, -0.8, 0, 0): y is largest and negative, so the
     * quaternion is negated to (-0.6, 0.8, 0, 0); index 1 in the top bits,
     * then x, z, w. With k = 4 the grid is 15 levels, -s + i * s / 7. */
    const float q[4] = {0.6f, -0.8f, 0, 0};
    uint64_t code;
    cr_assert_eq(kz_quat_encode(q, 4, &code), KZ_OK);
    /* -0.6 / (s / 7) = -5.94 -> -6 -> code 1; zeros -> code 7. */
    uint64_t want = 1ull << 12 | 1ull << 8 | 7ull << 4 | 7ull;
    cr_assert_eq(code, want, "code %llx", (unsigned long long)code);
}

Test(quant, quat_rejects_bad_input_and_leaves_output)
{
    static const struct {
        float q[4];
        int rc;
    } bad[] = {
        {{NAN, 0, 0, 1}, KZ_ENOTFINITE},
        {{0, NAN, 0, 1}, KZ_ENOTFINITE},
        {{0, 0, INFINITY, 1}, KZ_ENOTFINITE},
        {{0, 0, 0, -INFINITY}, KZ_ENOTFINITE},
        {{0, 0, 0, 0}, KZ_ERANGE},
        {{0, 0, 0, 1.0011f}, KZ_ERANGE},
        {{0, 0, 0, 0.9988f}, KZ_ERANGE},
        {{0.5f, 0.5f, 0.5f, 0.51f}, KZ_ERANGE},
        {{FLT_MAX, FLT_MAX, 0, 0}, KZ_ERANGE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t out = 0x1234;
        cr_assert_eq(kz_quat_encode(bad[i].q, 10, &out), bad[i].rc, "case %zu", i);
        cr_assert_eq(out, 0x1234, "case %zu touched the output", i);
    }
    /* Within the tolerance: accepted and normalized. */
    const float near[4] = {0, 0, 0, 1.0009f};
    uint64_t out;
    cr_assert_eq(kz_quat_encode(near, 10, &out), KZ_OK);
}

Test(quant, quat_decode_of_any_code_is_a_unit_quaternion)
{
    uint64_t rng = 0x3c6ef372fe94f82bull;
    for (unsigned k = KZ_QUAT_K_MIN; k <= KZ_QUAT_K_MAX; k++) {
        for (size_t i = 0; i < 100000; i++) {
            uint64_t code = rng_next(&rng);
            /* Also bias toward the invalid top field value 2^k - 1. */
            if (i % 4 == 0)
                code |= ((1ull << k) - 1) << (k * (i / 4 % 3));
            float d[4];
            kz_quat_decode(code, k, d);
            for (int c = 0; c < 4; c++)
                cr_assert(isfinite(d[c]), "k=%u code %llx", k, (unsigned long long)code);
            cr_assert_leq(fabs(quat_norm(d) - 1), 1e-6, "k=%u code %llx", k,
                          (unsigned long long)code);
            unsigned m = (unsigned)(code >> (3 * k)) & 3;
            cr_assert_geq(d[m], 0, "dropped component must come back non-negative");
        }
    }
    /* Every code of the smallest widths, exhaustively. */
    for (unsigned k = 2; k <= 4; k++) {
        for (uint64_t code = 0; code < (1ull << KZ_QUAT_BITS(k)); code++) {
            float d[4];
            kz_quat_decode(code, k, d);
            cr_assert_leq(fabs(quat_norm(d) - 1), 1e-6, "k=%u code %llx", k,
                          (unsigned long long)code);
        }
    }
}

Test(quant, quat_bound_values_are_sane)
{
    /* Conservative but not absurd: between the half grid step and two
     * grid steps for every k where the tight derivation applies. */
    for (unsigned k = 4; k <= KZ_QUAT_K_MAX; k++) {
        double step = sqrt(2.0) / ((1u << k) - 2);
        double b = kz_quat_max_error(k);
        cr_assert(b >= 0.5 * step && b <= 2 * step, "k=%u bound %g step %g", k, b, step);
    }
    cr_assert_lt(kz_quat_max_error(10), 2.2e-3);
    cr_assert_lt(kz_quat_max_error(15), 7e-5);
}

Test(quant, quat_k_out_of_range_is_caller_misuse, .signal = SIGABRT)
{
    const float q[4] = {0, 0, 0, 1};
    uint64_t out;
    int rc = kz_quat_encode(q, 21, &out);
    cr_assert_fail("returned %d instead of asserting", rc);
}

Test(quant, quat_k_below_range_is_caller_misuse, .signal = SIGABRT)
{
    float d[4];
    kz_quat_decode(0, 1, d);
    cr_assert_fail("decoded with k=1");
}
