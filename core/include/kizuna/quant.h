/*
 * Quantization of the state Kizuna replicates: scalars in a known range,
 * positions in world bounds, and rotations as "smallest three" quaternions.
 * Each quantizer states the largest error it can make, so game code can
 * pick bit widths from tolerances instead of by eye. Tuned for encoding a
 * few thousand entities per tick: no allocation, no tables, a handful of
 * floating-point operations per value, all in double.
 *
 * Ownership and threading: kz_quant and kz_posq are small immutable value
 * types once initialised; any number of threads may encode and decode with
 * the same one. The quaternion functions are pure.
 *
 * Trust: encoders check their inputs at run time (NaN, infinities and
 * values out of range are refused with the output untouched), because
 * those values come from game simulation. Decoders accept any code, since
 * codes come from the wire: a code above the largest valid one is clamped,
 * and every code decodes to a finite value in range. Bit widths and k are
 * the caller's choice: out of range widths for init are KZ_EINVAL, for the
 * quaternion functions KZ_ASSERT.
 *
 * Codes are plain unsigned integers; write them with kz_bitwriter_write
 * using q.bits (or KZ_QUAT_BITS(k)) bits.
 */
#ifndef KZ_QUANT_H
#define KZ_QUANT_H

#include <kizuna/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- scalar ------------------------------------------------------------ */

/*
 * Uniform quantizer of [min, max] onto codes 0 .. 2^bits - 1; code c stands
 * for min + c * step, step = (max - min) / (2^bits - 1). min and max are
 * exactly representable: they encode to 0 and max_code and decode back
 * exactly.
 *
 * Stated error: for every float v in [min, max],
 *     |decode(encode(v)) - v| <= max_error, where
 *     max_error = step/2 + min(step/2, ulp(M)/2) + 2^-48 * (max - min + M),
 *     M = max(|min|, |max|), ulp(M) = the float spacing just above M.
 * Derivation: let r be the exact value of the chosen code; rounding to the
 * nearest code gives |r - v| <= step/2. decode returns r rounded to a
 * float, fl(r). Since v is itself a float, the float nearest to r is no
 * farther from r than v is, so |fl(r) - r| <= |r - v| <= step/2; and as
 * |r| <= M, also |fl(r) - r| <= ulp(M)/2. Adding the two distances gives
 * the first two terms: with few bits the step dominates and the bound is
 * step/2 plus a float half-ulp; with many bits over a wide range (32 bits
 * over [-1000, 1000]) floats near 1000 are coarser than the step and the
 * bound approaches one step. The last term covers the double arithmetic
 * of encode (which may pick the other code when v is within a few double
 * ulps of a midpoint) and decode (a product and a sum): about ten
 * roundings of relative size 2^-53 on quantities no larger than the range
 * or M, bounded with a factor of 32 to spare. It is below 1e-14 of the
 * range and exists only so that the bound is a bound.
 */
typedef struct kz_quant {
    float min, max;
    uint32_t bits;       /* 1..32 */
    uint32_t max_code;   /* 2^bits - 1 */
    double step;         /* value spacing of consecutive codes */
    double max_error;    /* stated bound, see above */
    double scale;        /* max_code / (max - min), used by encode */
} kz_quant;

/*
 * Sets up `q` for [min, max] with `bits` bits. Returns 0, or KZ_EINVAL if
 * min or max is not finite, min >= max, or bits is outside 1..32 (then q
 * is untouched).
 */
KZ_API KZ_MUST_CHECK int kz_quant_init(kz_quant *q, float min, float max, unsigned bits);

/*
 * Rounds `v` to the nearest code (ties away from min). Returns 0,
 * KZ_ENOTFINITE for NaN or an infinity, KZ_ERANGE outside [min, max]; on
 * failure *code is untouched.
 */
KZ_API KZ_MUST_CHECK int kz_quant_encode(const kz_quant *q, float v, uint32_t *code);

/* The value of `code`. Codes above max_code (only possible from a
 * corrupt or hostile peer when bits < 32) decode as max. */
KZ_API float kz_quant_decode(const kz_quant *q, uint32_t code);

/* ---- positions --------------------------------------------------------- */

/*
 * Positions in an axis-aligned world box, one kz_quant per axis. Each axis
 * gets the fewest bits b with (2^b - 1) * step >= max - min, i.e.
 * b = ceil(log2(range / step + 1)), so its actual spacing axis[i].step is
 * at most the requested step and axis[i].max_error is at most
 * step / 2 plus the float and double terms of kz_quant (see above).
 */
typedef struct kz_posq {
    kz_quant axis[3];
    float step;          /* requested spacing */
    uint32_t total_bits; /* sum of the three axes' bits */
} kz_posq;

/*
 * Sets up `p` for the box [min, max] (per axis) with at most `step`
 * between codes. Returns 0; KZ_EINVAL if a bound or the step is not finite,
 * step <= 0, or min[i] >= max[i]; KZ_ERANGE if an axis would need more
 * than 32 bits. On failure p is untouched.
 */
KZ_API KZ_MUST_CHECK int kz_posq_init(kz_posq *p, const float min[3], const float max[3],
                                      float step);

/*
 * Encodes the point `v` (x, y, z). Returns 0, KZ_ENOTFINITE if a coordinate
 * is NaN or infinite, KZ_ERANGE if one is outside the box; on failure no
 * element of codes is written.
 */
KZ_API KZ_MUST_CHECK int kz_posq_encode(const kz_posq *p, const float v[3], uint32_t codes[3]);

/* Decodes three codes (clamped as kz_quant_decode) into `v`. */
KZ_API void kz_posq_decode(const kz_posq *p, const uint32_t codes[3], float v[3]);

/* ---- rotations: smallest three ----------------------------------------- */

/*
 * A unit quaternion (x, y, z, w) in 2 + 3k bits. The component of largest
 * magnitude is dropped (ties: the lowest index) and the quaternion negated
 * if that component is negative, which changes nothing (q and -q are the
 * same rotation) but makes it positive so the decoder can rebuild it as
 * sqrt(1 - a^2 - b^2 - c^2). The other three lie in [-1/sqrt2, 1/sqrt2]
 * and are quantized to k bits each on a symmetric grid with 2^k - 1 levels
 * (codes 0 .. 2^k - 2, code 2^k/2 - 1 is exactly 0, so the identity
 * rotation and axis-aligned rotations survive exactly).
 *
 * Code layout (bit 0 = least significant):
 *   bits [3k, 3k+2)  index of the dropped component, 0=x 1=y 2=z 3=w
 *   bits [2k, 3k)    first remaining component (lowest index)
 *   bits [k, 2k)     second remaining component
 *   bits [0, k)      third remaining component
 * so the index is in the top 2 bits of the KZ_QUAT_BITS(k)-bit field.
 *
 * Stated error (kz_quat_max_error): let p be the input normalized to unit
 * length and sign-canonicalized as above (computed in double), and d the
 * decoded quaternion. Let s = 1/sqrt2, D = sqrt2 / (2^k - 2) the grid
 * spacing, and m the dropped index, so p_m >= 1/2 (the largest of four
 * components of a unit vector) and sum_{i != m} p_i^2 = 1 - p_m^2 <= 3/4.
 *  1. Each kept component: |e_i - p_i| <= D/2 (nearest grid point; |p_i|
 *     <= s so no clamping).
 *  2. Sum of squares: S = sum e_i^2 vs S0 = sum p_i^2:
 *     |S - S0| <= sum (2|p_i| D/2 + D^2/4) <= D * sum|p_i| + 3D^2/4
 *     <= 1.5 D + 0.75 D^2 =: E, using sum|p_i| <= sqrt(3 * 3/4) = 3/2.
 *  3. Rebuilt component L = sqrt(max(0, 1 - S)) vs p_m = sqrt(1 - S0) with
 *     1 - S0 = p_m^2 >= 1/4:  |L - p_m| = |S - S0| / (L + p_m)
 *     <= E / (1/2 + sqrt(max(0, 1/4 - E))) =: EL.
 *  4. If E < 1/4 (k >= 4), 1 - S > 0, so L^2 + S = 1 exactly and the
 *     renormalization is a no-op up to rounding: the error is
 *     max(D/2, EL), EL being about 1.5 D (reached near (1/2,1/2,1/2,1/2)
 *     with all three errors pushing the same way).
 *     For k < 4 clamping can happen; then the vector u before
 *     renormalization has |u - p| <= R = sqrt(3 D^2 / 4 + (2E)^2) (the
 *     looser bound 2E on the rebuilt component also covers the clamp),
 *     and renormalizing at most doubles that: min(2, 2R) per component.
 *  5. Plus 2^-24 for rounding the output to float (2^-25) and the double
 *     arithmetic (far below that).
 * For k = 10 that is 2.08e-3, for k = 15 6.5e-5, for k = 20 2.1e-6.
 * Random rotations come within 75-90% of it; near (1/2,1/2,1/2,1/2), 98%.
 *
 * kz_quat_encode: k in 2..20 (asserted). Returns 0; KZ_ENOTFINITE if a
 * component is NaN or infinite; KZ_ERANGE if |q| differs from 1 by more
 * than KZ_QUAT_NORM_TOLERANCE (the input is normalized before encoding,
 * so a slightly denormalized quaternion from integration is fine). On
 * failure *out is untouched.
 */
#define KZ_QUAT_K_MIN 2
#define KZ_QUAT_K_MAX 20
#define KZ_QUAT_BITS(k) (2u + 3u * (unsigned)(k))
#define KZ_QUAT_NORM_TOLERANCE 1e-3

KZ_API KZ_MUST_CHECK int kz_quat_encode(const float q[4], unsigned k, uint64_t *out);

/*
 * Decodes a code of KZ_QUAT_BITS(k) bits (higher bits ignored) into a unit
 * quaternion with q[index] >= 0. Any code, including ones no encoder
 * produces (a field equal to 2^k - 1 is clamped to 2^k - 2; kept
 * components whose squares sum past 1), yields a finite unit quaternion.
 */
KZ_API void kz_quat_decode(uint64_t code, unsigned k, float q[4]);

/* The stated per-component error bound for k bits (derivation above). */
KZ_API double kz_quat_max_error(unsigned k);

#ifdef __cplusplus
}
#endif

#endif /* KZ_QUANT_H */
