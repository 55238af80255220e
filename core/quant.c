/*
 * Quantizers for replicated state: scalar ranges, world positions and
 * smallest-three quaternions. The arithmetic is done in double so that the
 * only error worth stating is the quantization itself plus the final
 * rounding to float; quant.h derives each stated bound.
 */
#include <math.h>

#include <kizuna/quant.h>

#include "assert.h"

/* ---- scalar ------------------------------------------------------------ */

/* Spacing of floats just above |m| (m finite, nonzero): 2^(e - 24) for
 * m = f * 2^e with f in [0.5, 1), never below the subnormal spacing. */
static double kz__float_ulp(double m)
{
    int e;
    (void)frexp(fabs(m), &e);
    return ldexp(1.0, e - 24 < -149 ? -149 : e - 24);
}

int kz_quant_init(kz_quant *q, float min, float max, unsigned bits)
{
    KZ_ASSERT(q != NULL);
    if (!isfinite(min) || !isfinite(max) || !(min < max) || bits < 1 || bits > 32)
        return KZ_EINVAL;
    double range = (double)max - (double)min;
    double m = fmax(fabs((double)min), fabs((double)max));
    q->min = min;
    q->max = max;
    q->bits = bits;
    q->max_code = (uint32_t)(((uint64_t)1 << bits) - 1);
    q->step = range / q->max_code;
    q->scale = q->max_code / range;
    /* Derived in quant.h. */
    q->max_error = q->step / 2 + fmin(q->step / 2, kz__float_ulp(m) / 2) + ldexp(range + m, -48);
    return KZ_OK;
}

int kz_quant_encode(const kz_quant *q, float v, uint32_t *code)
{
    if (!isfinite(v))
        return KZ_ENOTFINITE;
    if (v < q->min || v > q->max)
        return KZ_ERANGE;
    double t = ((double)v - (double)q->min) * q->scale + 0.5;
    /* t >= 0.5 here; the clamp absorbs a last-place overshoot at max. */
    uint64_t c = (uint64_t)t;
    *code = c > q->max_code ? q->max_code : (uint32_t)c;
    return KZ_OK;
}

float kz_quant_decode(const kz_quant *q, uint32_t code)
{
    /* The top code is max itself, not min + max_code * step, so the upper
     * endpoint survives exactly (and corrupt codes above it land there). */
    if (code >= q->max_code)
        return q->max;
    return (float)((double)q->min + (double)code * q->step);
}

/* ---- positions --------------------------------------------------------- */

/* Fewest bits b with (2^b - 1) * step >= range, or 0 if more than 32. */
static unsigned kz__posq_bits(double range, double step)
{
    for (unsigned b = 1; b <= 32; b++) {
        if ((double)(((uint64_t)1 << b) - 1) * step >= range)
            return b;
    }
    return 0;
}

int kz_posq_init(kz_posq *p, const float min[3], const float max[3], float step)
{
    KZ_ASSERT(p != NULL && min != NULL && max != NULL);
    kz_posq tmp;
    if (!isfinite(step) || !(step > 0))
        return KZ_EINVAL;
    tmp.step = step;
    tmp.total_bits = 0;
    for (int i = 0; i < 3; i++) {
        if (!isfinite(min[i]) || !isfinite(max[i]) || !(min[i] < max[i]))
            return KZ_EINVAL;
        unsigned b = kz__posq_bits((double)max[i] - (double)min[i], step);
        if (b == 0)
            return KZ_ERANGE;
        int rc = kz_quant_init(&tmp.axis[i], min[i], max[i], b);
        if (rc != KZ_OK)
            return rc;
        tmp.total_bits += b;
    }
    *p = tmp;
    return KZ_OK;
}

int kz_posq_encode(const kz_posq *p, const float v[3], uint32_t codes[3])
{
    uint32_t c[3];
    /* Non-finite is reported before out-of-range whatever the axis order,
     * so the error names the worse problem. */
    for (int i = 0; i < 3; i++) {
        if (!isfinite(v[i]))
            return KZ_ENOTFINITE;
    }
    for (int i = 0; i < 3; i++) {
        int rc = kz_quant_encode(&p->axis[i], v[i], &c[i]);
        if (rc != KZ_OK)
            return rc;
    }
    codes[0] = c[0];
    codes[1] = c[1];
    codes[2] = c[2];
    return KZ_OK;
}

void kz_posq_decode(const kz_posq *p, const uint32_t codes[3], float v[3])
{
    for (int i = 0; i < 3; i++)
        v[i] = kz_quant_decode(&p->axis[i], codes[i]);
}

/* ---- quaternions ------------------------------------------------------- */

/* Half-width of the kept components' range. */
#define KZ__QS 0.70710678118654752440

/* Largest grid code for k bits: 2^k - 2, an even number so that the
 * middle code is exactly 0. */
static uint32_t kz__quat_top(unsigned k)
{
    return (uint32_t)(((uint32_t)1 << k) - 2);
}

/* Index of the component of largest magnitude, the lowest on ties. */
static unsigned kz__quat_largest(const double p[4])
{
    unsigned m = 0;
    for (unsigned i = 1; i < 4; i++) {
        if (fabs(p[i]) > fabs(p[m]))
            m = i;
    }
    return m;
}

/* Nearest grid code of c in [-s, s]; c is clamped first, which only
 * matters for a last-place overshoot of s. */
static uint64_t kz__quat_code(double c, uint32_t top)
{
    double half = top / 2;
    double t = c * (half / KZ__QS);
    t = t < -half ? -half : t > half ? half : t;
    return (uint64_t)(t + half + 0.5);
}

int kz_quat_encode(const float q[4], unsigned k, uint64_t *out)
{
    KZ_ASSERT(q != NULL && out != NULL);
    KZ_ASSERT(k >= KZ_QUAT_K_MIN && k <= KZ_QUAT_K_MAX);
    double p[4], n2 = 0;
    for (int i = 0; i < 4; i++) {
        if (!isfinite(q[i]))
            return KZ_ENOTFINITE;
        p[i] = q[i];
        n2 += p[i] * p[i];
    }
    double n = sqrt(n2);
    if (!(fabs(n - 1.0) <= KZ_QUAT_NORM_TOLERANCE))
        return KZ_ERANGE;
    unsigned m = kz__quat_largest(p);
    /* Normalize and canonicalize in one step: dividing by -n when the
     * largest component is negative maps q and -q to the same p. */
    double inv = p[m] < 0 ? -1.0 / n : 1.0 / n;
    uint32_t top = kz__quat_top(k);
    uint64_t code = m;
    for (unsigned i = 0; i < 4; i++) {
        if (i != m)
            code = code << k | kz__quat_code(p[i] * inv, top);
    }
    *out = code;
    return KZ_OK;
}

void kz_quat_decode(uint64_t code, unsigned k, float q[4])
{
    KZ_ASSERT(q != NULL);
    KZ_ASSERT(k >= KZ_QUAT_K_MIN && k <= KZ_QUAT_K_MAX);
    uint32_t top = kz__quat_top(k);
    double step = KZ__QS / (top / 2);
    uint64_t mask = ((uint64_t)1 << k) - 1;
    unsigned m = (unsigned)(code >> (3 * k)) & 3;
    double p[4], sum = 0;
    int shift = 2 * (int)k;
    for (unsigned i = 0; i < 4; i++) {
        if (i == m)
            continue;
        uint64_t c = (code >> shift) & mask;
        /* 2^k - 1 is not a grid code; a hostile peer may send it. */
        c = c > top ? top : c;
        p[i] = ((double)c - top / 2) * step;
        sum += p[i] * p[i];
        shift -= (int)k;
    }
    p[m] = sqrt(fmax(0.0, 1.0 - sum));
    /* n^2 is 1 when sum < 1 and equals sum >= 1 otherwise, so n is never
     * near 0; it differs from 1 only for codes no encoder makes (k >= 4)
     * or when the clamp above was taken. */
    double n = sqrt(p[m] * p[m] + sum);
    for (unsigned i = 0; i < 4; i++)
        q[i] = (float)(p[i] / n);
}

double kz_quat_max_error(unsigned k)
{
    KZ_ASSERT(k >= KZ_QUAT_K_MIN && k <= KZ_QUAT_K_MAX);
    /* Steps refer to the derivation in quant.h. */
    double d = 2 * KZ__QS / kz__quat_top(k);
    double e = 1.5 * d + 0.75 * d * d;
    double el = e / (0.5 + sqrt(fmax(0.0, 0.25 - e)));
    double bound;
    if (e < 0.25) {
        bound = fmax(d / 2, el);
    } else {
        double r = sqrt(0.75 * d * d + 4 * e * e);
        bound = fmin(2.0, 2 * r);
    }
    return bound + ldexp(1.0, -24);
}
