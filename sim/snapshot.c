/*
 * Snapshot codec (contract in sim/snapshot.h, bitstream field by field in
 * docs/SNAPSHOT-WIRE.md). Tuned for a server encoding one view of ~100
 * avatars per client per tick at 30 Hz against a baseline 1-6 ticks old:
 * an entity that did not change costs nothing, a walking desktop avatar
 * costs about two dozen bits, and the common path writes every record
 * once, straight into the packet. Only when the records do not fit the
 * budget does the encoder measure each record (by writing it to a scratch
 * buffer) and pick the ones that fit in priority order.
 *
 * Tracked heads and hands move smoothly, so when the caller also names an
 * older view the client holds, their offsets and rotation components are
 * predicted to second order (extrapolated from the older view through the
 * baseline); a walking VR avatar then costs about two thirds of what its
 * first-order deltas did.
 *
 * Most clients acknowledge the same tick or two, so with the payload
 * cache the first client to send an entity's UPDATE against a world
 * baseline encodes it and the others copy its bits, a word at a time;
 * then the encoder's cost per entity is the merge of the views, three
 * 64-byte compares (baseline vs wanted, baseline vs world, wanted vs the
 * entry's copy; a fourth with an older view: older vs its world) and one
 * or two writes, and the loops keep their pointers in locals because
 * every byte store could alias them.
 *
 * All arithmetic on codes is integer and written out so the encoder and
 * the decoder compute identical values; the decoder treats every field as
 * hostile and checks it before it lands in a state.
 */
#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <kizuna/quant.h>
#include <kizuna/utf8.h>

#include "core/assert.h"
#include "sim/snapshot.h"

/* Exp-Golomb orders (see SNAPSHOT-WIRE.md), tuned on kz-bench-snapshot's
 * crowd with a baseline one tick old; deltas against an older baseline
 * add log2(dt) (capped) to the orders marked "scaled". */
#define KZ__SNAP_K_BASE 2u      /* tick - base tick */
#define KZ__SNAP_K_COUNT 0u     /* record count */
#define KZ__SNAP_K_GAP 0u       /* slot gap */
#define KZ__SNAP_K_POS 0u       /* root position residual x, z (scaled) */
#define KZ__SNAP_K_POSY 0u      /* root position residual y (scaled) */
#define KZ__SNAP_K_VEL 0u       /* velocity delta (scaled) */
#define KZ__SNAP_K_YAW 6u       /* yaw delta (scaled) */
#define KZ__SNAP_K_REL 1u       /* head/hand offset delta (scaled) */
#define KZ__SNAP_K_ROT 1u       /* rotation component delta (scaled) */
#define KZ__SNAP_K_OLDER 0u     /* baseline tick - older tick - 1 */
#define KZ__SNAP_K_REL2 0u      /* offset residual, second order (scaled) */
#define KZ__SNAP_K_ROT2 0u      /* rotation component residual, second order (scaled) */
#define KZ__SNAP_DT_SHIFT_MAX 4u

/* Raw field widths. */
#define KZ__SNAP_REL_BITS 13u   /* code + KZ_SNAP_REL_MAX, 0 .. 4096 */
#define KZ__SNAP_ROT_BITS KZ_QUAT_BITS(KZ_SNAP_ROT_K)
#define KZ__SNAP_ROT_COMP_MAX ((1u << KZ_SNAP_ROT_K) - 2u)
#define KZ__SNAP_LEN_BITS 6u    /* badge string lengths */

#define KZ__SNAP_NONE 0xffffu
#define KZ__SNAP_WORDS (KZ_SNAP_MAX_SLOTS / 64u)

/* Largest record (type bits and body) in bits: an enter with a 30-bit
 * position per axis, every optional field, three poses and the largest
 * badge is about 1,150; an update is below 1,100. */
#define KZ__SNAP_RECORD_MAX_BYTES 320u

/* Planned operation per entry of `want`. */
enum {
    KZ__OP_SAME = 0,
    KZ__OP_UPDATE = 1,
    KZ__OP_ENTER = 2,     /* slot empty in the baseline */
    KZ__OP_REPLACE = 3,   /* slot held another entity in the baseline */
    KZ__OP_RENEW = 4,     /* slot held this entity in a state the encoder may not
                             read (kz_snap_encode_args.base_unknown) */
    KZ__OP_TAKEN = 0x80,  /* record chosen (set on UPDATE, ENTER, REPLACE, RENEW) */
};

/* Per-body context: what both ends derive from the header. */
typedef struct kz__snap_ctx {
    const kz_snap_codec *c;
    uint32_t dt;    /* tick - base tick, 0 for full state */
    uint32_t odt;   /* base tick - older tick, 0 for none (first order) */
    unsigned k_pos, k_posy, k_vel, k_yaw, k_rel, k_rot, k_rel2, k_rot2;
} kz__snap_ctx;

static void ctx_init(kz__snap_ctx *x, const kz_snap_codec *c, uint32_t dt, uint32_t odt)
{
    unsigned s = 0;
    while (s < KZ__SNAP_DT_SHIFT_MAX && (dt >> (s + 1)) != 0)
        s++;
    x->c = c;
    x->dt = dt;
    x->k_pos = KZ__SNAP_K_POS + s;
    x->k_posy = KZ__SNAP_K_POSY + s;
    x->k_vel = KZ__SNAP_K_VEL + s;
    x->k_yaw = KZ__SNAP_K_YAW + s;
    x->k_rel = KZ__SNAP_K_REL + s;
    x->k_rot = KZ__SNAP_K_ROT + s;
    x->odt = odt;
    x->k_rel2 = KZ__SNAP_K_REL2 + s;
    x->k_rot2 = KZ__SNAP_K_ROT2 + s;
}

/* ---- codec setup and quantization --------------------------------------- */

static uint32_t bit_length(uint64_t v)
{
    return v == 0 ? 0 : 64u - (uint32_t)__builtin_clzll(v);
}

int kz_snap_codec_init(kz_snap_codec *c, uint32_t tick_hz, uint32_t n_slots, float bound)
{
    KZ_ASSERT(c != NULL);
    if (tick_hz == 0 || tick_hz > KZ_SNAP_MAX_TICK_HZ || n_slots == 0 ||
        n_slots > KZ_SNAP_MAX_SLOTS || !(bound > 0.0f) || !(bound <= KZ_SNAP_MAX_BOUND))
        return KZ_EINVAL;
    memset(c, 0, sizeof *c);
    c->tick_hz = tick_hz;
    c->n_slots = n_slots;
    c->slot_bits = n_slots > 1 ? bit_length(n_slots - 1u) : 1u;
    c->pos_max = (int32_t)ceil((double)bound * KZ_SNAP_POS_UNITS);
    c->pos_bits = bit_length(2u * (uint64_t)c->pos_max);
    c->bound = bound;
    return KZ_OK;
}

static int quant_rot(const float q[4], uint32_t *out)
{
    uint64_t code;
    int rc = kz_quat_encode(q, KZ_SNAP_ROT_K, &code);
    if (rc == KZ_ERANGE)
        return KZ_EINVAL;   /* not unit: the contract calls that misuse */
    if (rc != KZ_OK)
        return rc;
    *out = (uint32_t)code;
    return KZ_OK;
}

/* round(v * units), refusing |v| > limit; `strict` makes the limit open. */
static int quant_scalar(float v, float limit, int strict, double units, int32_t *out)
{
    if (!isfinite(v))
        return KZ_ENOTFINITE;
    if (strict ? !(fabsf(v) < limit) : !(fabsf(v) <= limit))
        return KZ_ERANGE;
    *out = (int32_t)llround((double)v * units);
    return KZ_OK;
}

/* Yaw in [0, 2 pi) to 1/65536 turn, rounded; 2 pi wraps to 0. */
static int quant_yaw(float yaw, uint16_t *out)
{
    if (!isfinite(yaw))
        return KZ_ENOTFINITE;
    const double turn = 6.283185307179586476925;
    double t = fmod((double)yaw, turn);
    if (t < 0)
        t += turn;
    *out = (uint16_t)((uint64_t)llround(t / turn * 65536.0) & 0xffffu);
    return KZ_OK;
}

static int all_finite(const kz_avatar_state *in)
{
    for (int i = 0; i < 3; i++) {
        if (!isfinite(in->pos[i]) || !isfinite(in->vel[i]))
            return 0;
    }
    for (uint32_t p = 0; p < KZ_POSE_COUNT; p++) {
        for (int i = 0; i < 3; i++) {
            if (!isfinite(in->pose[p].pos[i]))
                return 0;
        }
        for (int i = 0; i < 4; i++) {
            if (!isfinite(in->pose[p].rot[i]))
                return 0;
        }
    }
    return isfinite(in->yaw);
}

int kz_snap_quantize(const kz_snap_codec *c, uint32_t entity, const kz_avatar_state *in,
                     kz_snap_state *out)
{
    KZ_ASSERT(c != NULL && in != NULL && out != NULL);
    /* Non-finite values are reported as such before any range check, so
     * the code does not depend on which field is looked at first. */
    if (!all_finite(in))
        return KZ_ENOTFINITE;
    if (entity == 0 || (in->kind != KZ_KIND_AVATAR && in->kind != KZ_KIND_OBJECT))
        return KZ_EINVAL;
    kz_snap_state s;
    memset(&s, 0, sizeof s);
    s.entity = entity;
    s.kind = in->kind;
    s.flags = in->flags;
    s.anim = in->anim;
    s.holder = in->holder;
    int rc = quant_yaw(in->yaw, &s.yaw);
    for (int i = 0; i < 3 && rc == KZ_OK; i++) {
        int32_t p = 0, v = 0;
        rc = quant_scalar(in->pos[i], c->bound, 0, KZ_SNAP_POS_UNITS, &p);
        if (rc == KZ_OK)
            rc = quant_scalar(in->vel[i], 128.0f, 1, KZ_SNAP_VEL_UNITS, &v);
        s.pos[i] = p;
        /* |v| < 128 m/s can still round to 32768; -32768 is not a code. */
        s.vel[i] = (int16_t)(v > 32767 ? 32767 : v < -32767 ? -32767 : v);
    }
    for (uint32_t k = 0; k < KZ_POSE_COUNT && rc == KZ_OK; k++) {
        for (int i = 0; i < 3 && rc == KZ_OK; i++) {
            int32_t r = 0;
            rc = quant_scalar(in->pose[k].pos[i], KZ_AVATAR_REACH, 0, KZ_SNAP_REL_UNITS, &r);
            s.rel[k][i] = (int16_t)r;
        }
        if (rc == KZ_OK)
            rc = quant_rot(in->pose[k].rot, &s.rot[k]);
    }
    if (rc != KZ_OK)
        return rc;
    *out = s;
    return KZ_OK;
}

static int32_t clamp32(int64_t v, int64_t lim)
{
    return (int32_t)(v > lim ? lim : v < -lim ? -lim : v);
}

void kz_snap_dequantize(const kz_snap_codec *c, const kz_snap_state *in, kz_avatar_state *out)
{
    KZ_ASSERT(c != NULL && in != NULL && out != NULL);
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 3; i++) {
        out->pos[i] = (float)((double)clamp32(in->pos[i], c->pos_max) / KZ_SNAP_POS_UNITS);
        out->vel[i] = (float)((double)clamp32(in->vel[i], 32767) / KZ_SNAP_VEL_UNITS);
    }
    out->yaw = (float)((double)in->yaw * (6.283185307179586476925 / 65536.0));
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        for (int i = 0; i < 3; i++)
            out->pose[k].pos[i] =
                (float)((double)clamp32(in->rel[k][i], KZ_SNAP_REL_MAX) / KZ_SNAP_REL_UNITS);
        kz_quat_decode(in->rot[k], KZ_SNAP_ROT_K, out->pose[k].rot);
    }
    out->anim = in->anim;
    out->flags = in->flags;
    out->kind = in->kind;
    out->holder = in->holder;
}

/* ---- state checks --------------------------------------------------------- */

static int rot_valid(uint32_t code)
{
    const uint32_t m = (1u << KZ_SNAP_ROT_K) - 1u;
    for (unsigned j = 0; j < 3; j++) {
        if (((code >> (KZ_SNAP_ROT_K * j)) & m) > KZ__SNAP_ROT_COMP_MAX)
            return 0;
    }
    return 1;
}

int kz_snap_state_check(const kz_snap_codec *c, const kz_snap_state *s)
{
    KZ_ASSERT(c != NULL && s != NULL);
    if (s->entity == 0 || (s->kind != KZ_KIND_AVATAR && s->kind != KZ_KIND_OBJECT) ||
        s->pad != 0)
        return KZ_EINVAL;
    for (int i = 0; i < 3; i++) {
        if (s->pos[i] > c->pos_max || s->pos[i] < -c->pos_max || s->vel[i] == INT16_MIN)
            return KZ_EINVAL;
    }
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        for (int i = 0; i < 3; i++) {
            if (s->rel[k][i] > KZ_SNAP_REL_MAX || s->rel[k][i] < -KZ_SNAP_REL_MAX)
                return KZ_EINVAL;
        }
        if (!rot_valid(s->rot[k]))
            return KZ_EINVAL;
    }
    return KZ_OK;
}

_Static_assert(sizeof(kz_snap_state) == 64, "kz_snap_state is compared as 8 words");

/* memcmp(a, b, sizeof *a) == 0, inlined: the encoder compares a few
 * states per entry per client, and the call was a visible share of it. */
#if defined(__SSE2__)
static inline int state_eq(const kz_snap_state *a, const kz_snap_state *b)
{
    const __m128i *p = (const __m128i *)(const void *)a, *q = (const __m128i *)(const void *)b;
    __m128i d0 = _mm_xor_si128(_mm_loadu_si128(p + 0), _mm_loadu_si128(q + 0));
    __m128i d1 = _mm_xor_si128(_mm_loadu_si128(p + 1), _mm_loadu_si128(q + 1));
    __m128i d2 = _mm_xor_si128(_mm_loadu_si128(p + 2), _mm_loadu_si128(q + 2));
    __m128i d3 = _mm_xor_si128(_mm_loadu_si128(p + 3), _mm_loadu_si128(q + 3));
    __m128i d = _mm_or_si128(_mm_or_si128(d0, d1), _mm_or_si128(d2, d3));
    return _mm_movemask_epi8(_mm_cmpeq_epi8(d, _mm_setzero_si128())) == 0xffff;
}
#else
static inline uint64_t word_at(const void *p, size_t o)
{
    uint64_t v;
    memcpy(&v, (const unsigned char *)p + o, 8);
    return v;
}

static inline int state_eq(const kz_snap_state *a, const kz_snap_state *b)
{
    uint64_t d = 0;
    for (size_t o = 0; o < sizeof *a; o += 8)
        d |= word_at(a, o) ^ word_at(b, o);
    return d == 0;
}
#endif

static int poses_rest(const kz_snap_state *s)
{
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        if (s->rel[k][0] != 0 || s->rel[k][1] != 0 || s->rel[k][2] != 0 ||
            s->rot[k] != KZ_SNAP_ROT_REST)
            return 0;
    }
    return 1;
}

static int badge_empty(const kz_snap_badge *b)
{
    return b->verification_level == 0 && b->actor_kind == 0 && b->acting_for == 0 &&
           b->method[0] == '\0' && b->name[0] == '\0';
}

static int method_valid(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    }
    return 1;
}

static int badge_valid(const kz_snap_badge *b)
{
    size_t ml = strnlen(b->method, sizeof b->method);
    size_t nl = strnlen(b->name, sizeof b->name);
    return b->verification_level <= KZ_VERIFY_MAX && b->actor_kind <= KZ_ACTOR_MAX &&
           ml <= KZ_TOKEN_METHOD_MAX && nl <= KZ_TOKEN_NAME_MAX &&
           method_valid((const uint8_t *)b->method, ml) &&
           kz_utf8_printable((const uint8_t *)b->name, nl);
}

int kz_snap_badge_check(const kz_snap_badge *b) { return badge_valid(b) ? KZ_OK : KZ_EINVAL; }

/* ---- prediction ------------------------------------------------------------ */

/* n / d rounded to nearest, ties away from zero; d > 0. */
static int64_t div_round(int64_t n, int64_t d)
{
    return n >= 0 ? (n + d / 2) / d : -((-n + d / 2) / d);
}

static int64_t clamp64(int64_t v, int64_t lim)
{
    return v > lim ? lim : v < -lim ? -lim : v;
}

/*
 * Dead reckoning of one root axis: base.pos + round(2 vel dt / tick_hz)
 * (vel in 1/256 m/s, dt in ticks, result in 1/512 m), clamped to the
 * position range. |2 vel dt| < 2^49, so int64 never overflows.
 */
static int64_t predict(const kz__snap_ctx *x, int32_t pos, int16_t vel)
{
    int64_t n = 2 * (int64_t)vel * (int64_t)x->dt;
    uint64_t m = (uint64_t)(n >= 0 ? n : -n) + x->c->tick_hz / 2u;
    /* div_round(n, tick_hz); a standing or level axis (vel 0) and the
     * common small dt take the short ways to the same quotient. */
    uint64_t q = vel == 0 ? 0
                 : m <= UINT32_MAX ? (uint32_t)m / x->c->tick_hz
                                   : m / x->c->tick_hz;
    return clamp64((int64_t)pos + (n >= 0 ? (int64_t)q : -(int64_t)q), x->c->pos_max);
}

/*
 * Turn prediction: when the yaw changes by t (1/65536 turn), velocity and
 * head/hand offsets (world axes) are predicted to turn with it, to first
 * order: a rotation about +y by t maps (x, z) to (x + t' z, z - t' x)
 * with t' = t * 2 pi / 65536 radians. In integers, with K = 6434 =
 * round(2 pi / 65536 * 2^26):
 *     x' = x + round(t z K / 2^26),  z' = z - round(t x K / 2^26)
 * (ties away from zero), each clamped to lim. Turns beyond +-4096 (22.5
 * degrees) predict no change. |t z K| < 2^40.
 */
#define KZ__SNAP_TURN_K 6434
#define KZ__SNAP_TURN_MAX 4096

static void turn(int32_t t, int32_t xin, int32_t zin, int32_t lim, int64_t out[2])
{
    out[0] = xin;
    out[1] = zin;
    if (t > KZ__SNAP_TURN_MAX || t < -KZ__SNAP_TURN_MAX)
        return;
    out[0] = clamp64(xin + div_round((int64_t)t * zin * KZ__SNAP_TURN_K, (int64_t)1 << 26), lim);
    out[1] = clamp64(zin - div_round((int64_t)t * xin * KZ__SNAP_TURN_K, (int64_t)1 << 26), lim);
}

/* Velocity of `b` predicted after a turn by t (y is not turned). */
static void predict_vel(const kz_snap_state *b, int32_t t, int64_t vel[3])
{
    int64_t xz[2];
    turn(t, b->vel[0], b->vel[2], 32767, xz);
    vel[0] = xz[0];
    vel[1] = b->vel[1];
    vel[2] = xz[1];
}

static uint32_t rot_comp(uint32_t code, unsigned j)
{
    /* j = 0 is the first kept component, in bits [2k, 3k). */
    return (code >> (KZ_SNAP_ROT_K * (2u - j))) & ((1u << KZ_SNAP_ROT_K) - 1u);
}

static uint32_t rot_index(uint32_t code)
{
    return code >> (3u * KZ_SNAP_ROT_K);
}

/* Predicted head and hand offsets and rotation codes. */
typedef struct kz__snap_pred {
    int64_t rel[KZ_POSE_COUNT][3];
    uint32_t rot[KZ_POSE_COUNT];
} kz__snap_pred;

/*
 * Second order: the value moves on as it moved from the older view (at
 * baseline tick - odt) to the baseline, over dt more ticks:
 *     pred = clamp(b + round((b - o) x dt / odt), lo, hi)
 * (ties away from zero). b and o are 16-bit values (offsets, or
 * components below 2^10), so |b - o| < 2^17, and dt < 2^32: the product
 * stays below 2^49.
 */
static int64_t extrapolate(const kz__snap_ctx *x, int64_t b, int64_t o, int64_t lo, int64_t hi)
{
    int64_t n = (b - o) * (int64_t)x->dt;
    /* The older view is usually one tick before the baseline: no division. */
    int64_t v = b + (x->odt == 1 ? n : div_round(n, (int64_t)x->odt));
    return v < lo ? lo : v > hi ? hi : v;
}

/*
 * Poses of `b` predicted for the new state. With no older state (o NULL):
 * offsets turned by the yaw delta t, rotations unchanged (first order).
 * With one (same entity and kind in the older view's slot): every offset
 * component extrapolated; every rotation whose dropped index is the same
 * in o and b has its three components extrapolated (within 0 .. 2^k - 2)
 * under b's index; another rotation is predicted unchanged.
 */
static void predict_poses(const kz__snap_ctx *x, const kz_snap_state *b, const kz_snap_state *o,
                          int32_t t, kz__snap_pred *p)
{
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        p->rot[k] = b->rot[k];
        if (o == NULL) {
            int64_t xz[2];
            turn(t, b->rel[k][0], b->rel[k][2], KZ_SNAP_REL_MAX, xz);
            p->rel[k][0] = xz[0];
            p->rel[k][1] = b->rel[k][1];
            p->rel[k][2] = xz[1];
            continue;
        }
        for (int i = 0; i < 3; i++)
            p->rel[k][i] =
                extrapolate(x, b->rel[k][i], o->rel[k][i], -KZ_SNAP_REL_MAX, KZ_SNAP_REL_MAX);
        if (rot_index(o->rot[k]) != rot_index(b->rot[k]))
            continue;
        uint32_t code = b->rot[k] & ~((1u << (3u * KZ_SNAP_ROT_K)) - 1u);
        for (unsigned j = 0; j < 3; j++)
            code |= (uint32_t)extrapolate(x, rot_comp(b->rot[k], j), rot_comp(o->rot[k], j), 0,
                                          KZ__SNAP_ROT_COMP_MAX)
                    << (KZ_SNAP_ROT_K * (2u - j));
        p->rot[k] = code;
    }
}

/* Yaw difference a - b as a signed 16-bit value, -32768 .. 32767. */
static int32_t yaw_delta(uint16_t a, uint16_t b)
{
    int32_t d = (int32_t)(uint16_t)(a - b);
    return d >= 32768 ? d - 65536 : d;
}

/* ---- writing ---------------------------------------------------------------- */

/* Field writes; the writer's error is sticky and checked by the caller. */
static inline void put(kz_bitwriter *w, uint64_t v, unsigned n)
{
    if (kz_bitwriter_write(w, v, n) != KZ_OK)
        return;
}

static inline unsigned ueg_len(uint64_t v, unsigned k)
{
    unsigned n = bit_length(v + ((uint64_t)1 << k)) - 1u;
    return 2u * n - k + 1u;
}

static inline unsigned seg_len(int64_t v, unsigned k)
{
    return ueg_len(kz_zigzag_encode(v), k);
}

/* Order-k exp-Golomb: x = v + 2^k has n + 1 bits; n - k one bits, a zero
 * bit, then the low n bits of x. v < 2^33 - 2^k. */
static inline void put_ueg(kz_bitwriter *w, uint64_t v, unsigned k)
{
    uint64_t x = v + ((uint64_t)1 << k);
    unsigned n = bit_length(x) - 1u;
    unsigned p = n - k;
    if (p + 1u + n <= 64u) {
        /* One write, with no branch on the value's size (small residuals
         * of 0 and +-1 make such a branch unpredictable). */
        uint64_t low = x & (((uint64_t)1 << n) - 1u);
        put(w, (((uint64_t)1 << p) - 1u) | low << (p + 1u), p + 1u + n);
        return;
    }
    put(w, ((uint64_t)1 << p) - 1u, p + 1u);
    put(w, x, n);
}

static void put_seg(kz_bitwriter *w, int64_t v, unsigned k)
{
    put_ueg(w, kz_zigzag_encode(v), k);
}

/* A rotation in the per-field form against its prediction p, with
 * component deltas of order k when the index stayed. */
static void put_rot_delta(kz_bitwriter *w, unsigned k, uint32_t p, uint32_t s)
{
    if (s == p) {
        put(w, 0, 1);
        return;
    }
    put(w, 1, 1);
    int64_t d[3];
    unsigned cost = KZ__SNAP_ROT_BITS + 1u;
    if (rot_index(s) == rot_index(p)) {
        cost = 0;
        for (unsigned j = 0; j < 3; j++) {
            d[j] = (int64_t)rot_comp(s, j) - (int64_t)rot_comp(p, j);
            cost += seg_len(d[j], k);
        }
    }
    /* Either form decodes to the same code; take the shorter. */
    if (cost <= KZ__SNAP_ROT_BITS) {
        put(w, 0, 1);
        for (unsigned j = 0; j < 3; j++)
            put_seg(w, d[j], k);
    } else {
        put(w, 1, 1);
        put(w, s, KZ__SNAP_ROT_BITS);
    }
}

/* A group of three signed deltas: x and z, then y behind its own bit. */
static void put_triple(kz_bitwriter *w, const int64_t d[3], unsigned k_xz, unsigned k_y)
{
    if ((d[0] | d[1] | d[2]) == 0) {
        put(w, 0, 1);
        return;
    }
    put(w, 1, 1);
    put_seg(w, d[0], k_xz);
    put_seg(w, d[2], k_xz);
    put(w, d[1] != 0, 1);
    if (d[1] != 0)
        put_seg(w, d[1], k_y);
}

/* Poses against their prediction (o: the older state or NULL): "0"
 * as predicted; "10" every offset residual and every rotation as
 * same-index component deltas, no per-field bits; "11" per pose an
 * offset bit (then residuals) and a rotation code. Takes the shorter. */
static void put_poses(kz_bitwriter *w, const kz__snap_ctx *x, const kz_snap_state *b,
                      const kz_snap_state *o, const kz_snap_state *s, int32_t dy)
{
    kz__snap_pred pred, *p = &pred;
    predict_poses(x, b, o, dy, p);
    const unsigned k_rel = o ? x->k_rel2 : x->k_rel, k_rot = o ? x->k_rot2 : x->k_rot;
    int64_t d[KZ_POSE_COUNT][3];
    int64_t dr[KZ_POSE_COUNT][3];
    int changed = memcmp(s->rot, p->rot, sizeof s->rot) != 0, same_index = 1;
    unsigned all = 2, each = 2;
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        unsigned rel = 0, delta = 0;
        int moved = 0;
        for (int i = 0; i < 3; i++) {
            d[k][i] = (int64_t)s->rel[k][i] - p->rel[k][i];
            moved |= d[k][i] != 0;
            rel += seg_len(d[k][i], k_rel);
        }
        for (unsigned j = 0; j < 3; j++) {
            dr[k][j] = (int64_t)rot_comp(s->rot[k], j) - (int64_t)rot_comp(p->rot[k], j);
            delta += seg_len(dr[k][j], k_rot);
        }
        changed |= moved;
        all += rel + delta;
        each += 1 + (moved ? rel : 0) + 1;
        if (s->rot[k] == p->rot[k])
            continue;
        same_index &= rot_index(s->rot[k]) == rot_index(p->rot[k]);
        each += 1 + (delta < KZ__SNAP_ROT_BITS ? delta : KZ__SNAP_ROT_BITS);
    }
    if (!changed) {
        put(w, 0, 1);
        return;
    }
    int short_form = same_index && all <= each;
    put(w, 1, 1);
    put(w, !short_form, 1);
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        int rel = d[k][0] != 0 || d[k][1] != 0 || d[k][2] != 0;
        if (!short_form)
            put(w, rel, 1);
        for (int i = 0; i < 3 && (rel || short_form); i++)
            put_seg(w, d[k][i], k_rel);
        if (!short_form) {
            put_rot_delta(w, k_rot, p->rot[k], s->rot[k]);
            continue;
        }
        for (unsigned j = 0; j < 3; j++)
            put_seg(w, dr[k][j], k_rot);
    }
}

/* An UPDATE body of b to s; o is b's entity in the older view, or NULL. */
static void put_update(kz_bitwriter *w, const kz__snap_ctx *x, const kz_snap_state *b,
                       const kz_snap_state *o, const kz_snap_state *s)
{
    int64_t d[3], v[3];
    for (int i = 0; i < 3; i++)
        d[i] = (int64_t)s->pos[i] - predict(x, b->pos[i], b->vel[i]);
    put_triple(w, d, x->k_pos, x->k_posy);
    int32_t dy = yaw_delta(s->yaw, b->yaw);
    put(w, dy != 0, 1);
    if (dy != 0)
        put_seg(w, dy, x->k_yaw);
    /* The velocity's turn here; the poses' only if poses are sent. */
    predict_vel(b, dy, v);
    for (int i = 0; i < 3; i++)
        d[i] = (int64_t)s->vel[i] - v[i];
    put_triple(w, d, x->k_vel, x->k_vel);

    int base_rest = !(b->flags & KZ_AVATAR_VR) && poses_rest(b);
    int need_x = !(s->flags & KZ_AVATAR_VR) && base_rest && !poses_rest(s);
    int misc = s->anim != b->anim || s->flags != b->flags || s->holder != b->holder || need_x;
    put(w, misc, 1);
    if (misc) {
        put(w, s->anim != b->anim, 1);
        if (s->anim != b->anim)
            put(w, s->anim, 16);
        put(w, s->flags != b->flags, 1);
        if (s->flags != b->flags)
            put(w, s->flags, 8);
        put(w, s->holder != b->holder, 1);
        if (s->holder != b->holder)
            put(w, s->holder, 32);
        if (!(s->flags & KZ_AVATAR_VR) && base_rest)
            put(w, need_x, 1);
    }
    if (!(s->flags & KZ_AVATAR_VR) && base_rest && !need_x)
        return;
    put_poses(w, x, b, o, s, dy);
}

static void put_badge(kz_bitwriter *w, const kz_snap_badge *b)
{
    if (b == NULL || badge_empty(b)) {
        put(w, 0, 1);
        return;
    }
    put(w, 1, 1);
    put(w, b->verification_level, 2);
    put(w, b->actor_kind, 2);
    put(w, b->acting_for != 0, 1);
    if (b->acting_for != 0)
        put(w, b->acting_for, 64);
    size_t ml = strlen(b->method), nl = strlen(b->name);
    put(w, ml, KZ__SNAP_LEN_BITS);
    for (size_t i = 0; i < ml; i++)
        put(w, (uint8_t)b->method[i], 8);
    put(w, nl, KZ__SNAP_LEN_BITS);
    for (size_t i = 0; i < nl; i++)
        put(w, (uint8_t)b->name[i], 8);
}

static void put_enter(kz_bitwriter *w, const kz__snap_ctx *x, const kz_snap_state *s,
                      const kz_snap_badge *badge)
{
    const kz_snap_codec *c = x->c;
    put(w, s->entity, 32);
    put(w, s->kind == KZ_KIND_OBJECT, 1);
    for (int i = 0; i < 3; i++)
        put(w, (uint64_t)((int64_t)s->pos[i] + c->pos_max), c->pos_bits);
    int moving = s->vel[0] != 0 || s->vel[1] != 0 || s->vel[2] != 0;
    put(w, moving, 1);
    for (int i = 0; i < 3 && moving; i++)
        put(w, (uint16_t)s->vel[i], 16);
    put(w, s->yaw, 16);
    put(w, s->anim != 0, 1);
    if (s->anim != 0)
        put(w, s->anim, 16);
    put(w, s->flags, 8);
    put(w, s->holder != 0, 1);
    if (s->holder != 0)
        put(w, s->holder, 32);
    int poses = (s->flags & KZ_AVATAR_VR) || !poses_rest(s);
    if (!(s->flags & KZ_AVATAR_VR))
        put(w, poses, 1);
    for (uint32_t k = 0; k < KZ_POSE_COUNT && poses; k++) {
        int rel = s->rel[k][0] != 0 || s->rel[k][1] != 0 || s->rel[k][2] != 0;
        put(w, rel, 1);
        for (int i = 0; i < 3 && rel; i++)
            put(w, (uint64_t)(s->rel[k][i] + KZ_SNAP_REL_MAX), KZ__SNAP_REL_BITS);
        put(w, s->rot[k] != KZ_SNAP_ROT_REST, 1);
        if (s->rot[k] != KZ_SNAP_ROT_REST)
            put(w, s->rot[k], KZ__SNAP_ROT_BITS);
    }
    put_badge(w, badge);
}

/* ---- encoding ------------------------------------------------------------ */

/* A cached UPDATE payload: 128 bytes, the header and the bits in the
 * first cache line, the wanted state it was encoded from in the second. */
struct kz__snap_memo {
    uint32_t gen;          /* the cache's gen when made; 0 = never */
    uint32_t base_tick;
    uint32_t nbits;        /* payload bits, or KZ__MEMO_LONG */
    uint32_t older_tick;   /* tick of the older state, 0 = first order */
    const kz_snap_state *world;   /* the base_world it was made against */
    const kz_snap_state *older;   /* the older_world, NULL = first order */
    uint8_t bits[KZ_SNAP_CACHE_BITS / 8u];   /* LSB-first, as the stream */
    kz_snap_state state;
};

#define KZ__MEMO_LONG UINT32_MAX   /* payload longer than the entry holds */

_Static_assert(KZ_SNAP_CACHE_BITS % 64u == 0, "payload bits are stored as whole words");
_Static_assert(sizeof(struct kz__snap_memo) == 128, "a memo is two cache lines");

typedef struct kz__snap_enc {
    kz__snap_ctx x;
    const kz_snap_encode_args *a;
    const kz_snap_view *base;   /* NULL for full state */
    uint32_t bn;                /* base entries considered */
    const kz_snap_view *older;  /* NULL for first order */
    uint16_t bidx[KZ_SNAP_MAX_SLOTS];   /* per want entry: base index or NONE */
    uint16_t oidx[KZ_SNAP_MAX_SLOTS];   /* per UPDATE entry: older index or NONE */
    uint8_t op[KZ_SNAP_MAX_SLOTS];      /* per want entry: KZ__OP_* */
    /* Per UPDATE entry: the cached payload to copy, or NULL to encode. */
    const kz__snap_memo *memo[KZ_SNAP_MAX_SLOTS];
    uint32_t n_leave, n_change;
} kz__snap_enc;

/* ---- payload cache -------------------------------------------------------- */

int kz_snap_cache_init(kz_snap_cache *k, uint32_t n_keys, uint32_t ways, const kz_allocator *a)
{
    KZ_ASSERT(k != NULL);
    memset(k, 0, sizeof *k);
    if (n_keys == 0 || n_keys > (1u << 24) || ways == 0 || ways > KZ_SNAP_CACHE_MAX_WAYS)
        return KZ_EINVAL;
    if (a != NULL)
        k->alloc = *a;
    kz_allocator_resolve(&k->alloc);
    /* Zeroed: gen 0 is no generation, so every entry starts invalid, and
     * the bits past a payload's end are defined when read as words. */
    k->memo = kz_calloc(&k->alloc, (size_t)n_keys * ways * sizeof *k->memo, 64);
    if (k->memo == NULL) {
        memset(k, 0, sizeof *k);
        return KZ_ENOMEM;
    }
    k->n_keys = n_keys;
    k->ways = ways;
    return KZ_OK;
}

void kz_snap_cache_fini(kz_snap_cache *k)
{
    KZ_ASSERT(k != NULL);
    if (k->memo != NULL)
        kz_free(&k->alloc, k->memo, (size_t)k->n_keys * k->ways * sizeof *k->memo);
    memset(k, 0, sizeof *k);
}

void kz_snap_cache_begin(kz_snap_cache *k, uint32_t tick)
{
    KZ_ASSERT(k != NULL && k->memo != NULL);
    /* A new stamp invalidates every entry at once. When the stamp wraps
     * (after 2^32 - 1 ticks) the old stamps are cleared so none of them
     * can come back to life. */
    if (++k->gen == 0) {
        for (size_t i = 0; i < (size_t)k->n_keys * k->ways; i++)
            k->memo[i].gen = 0;
        k->gen = 1;
    }
    k->tick = tick;
    k->tick_hz = 0;
    k->pos_max = 0;
}

/* The entry a payload against baseline tick bt goes to: one not made this
 * tick, else the one with the oldest baseline if it is at least as old as
 * bt (a newer baseline is more likely shared), else none. */
static kz__snap_memo *memo_victim(const kz_snap_cache *k, kz__snap_memo *set, uint32_t bt)
{
    kz__snap_memo *v = NULL;
    uint32_t oldest = k->tick - bt;
    for (uint32_t w = 0; w < k->ways; w++) {
        if (set[w].gen != k->gen)
            return &set[w];
        if (k->tick - set[w].base_tick >= oldest) {
            oldest = k->tick - set[w].base_tick;
            v = &set[w];
        }
    }
    return v;
}

/* What an UPDATE payload is made from, besides the wanted state: the
 * baseline tick and world state, and for second order the older tick
 * and world state (0 and NULL for first order). */
typedef struct kz__snap_memo_key {
    uint32_t bt, ot;
    const kz_snap_state *bw, *ow;
} kz__snap_memo_key;

static void put_update(kz_bitwriter *w, const kz__snap_ctx *x, const kz_snap_state *b,
                       const kz_snap_state *o, const kz_snap_state *s);

/* The entry of `set` made this tick (gen) from key mk whose wanted state
 * is s, or NULL. */
static inline const kz__snap_memo *memo_hit(const kz__snap_memo *set, uint32_t ways, uint32_t gen,
                                            const kz__snap_memo_key *mk, const kz_snap_state *s)
{
    for (uint32_t w = 0; w < ways; w++) {
        const kz__snap_memo *m = &set[w];
        if (m->gen == gen && m->base_tick == mk->bt && m->world == mk->bw &&
            m->older_tick == mk->ot && m->older == mk->ow && state_eq(&m->state, s))
            return m;
    }
    return NULL;
}

/*
 * On a miss: encodes the UPDATE of b (which equals the world state mk->bw)
 * to s (checked valid), with the older state o (equal to mk->ow, or NULL),
 * into an entry of `set` and returns the entry, or NULL when no entry is
 * free for it or the payload is too long (then the caller encodes it
 * directly).
 */
static const kz__snap_memo *memo_make(const kz__snap_enc *e, uint32_t i, kz__snap_memo *set,
                                      const kz__snap_memo_key *mk, const kz_snap_state *b,
                                      const kz_snap_state *o, const kz_snap_state *s)
{
    kz_snap_cache *k = e->a->cache;
    kz__snap_memo *m = memo_victim(k, set, mk->bt);
    /* An entry made this tick may already be in use by an earlier entry
     * of this body, if two of its entities were given one key (a caller's
     * bug, but it must not change the bytes). Rare: look. */
    for (uint32_t j = 0; m != NULL && m->gen == k->gen && j < i; j++) {
        if (e->memo[j] == m)
            m = NULL;
    }
    if (m == NULL) {
        k->stats.misses++;
        return NULL;
    }
    kz_bitwriter pw;
    kz_bitwriter_init(&pw, m->bits, sizeof m->bits);
    put_update(&pw, &e->x, b, o, s);
    m->gen = k->gen;
    m->base_tick = mk->bt;
    m->world = mk->bw;
    m->older_tick = mk->ot;
    m->older = mk->ow;
    m->state = *s;
    if (kz_bitwriter_error(&pw) != KZ_OK) {
        m->nbits = KZ__MEMO_LONG;
        k->stats.misses++;
        return NULL;
    }
    m->nbits = (uint32_t)kz_bitwriter_bits(&pw);
    size_t bytes = kz_bitwriter_finish(&pw);   /* stores the last partial word */
    KZ_ASSERT(bytes <= sizeof m->bits);
    k->stats.stores++;
    return m;
}

/* Entries are at random places (keys come in each client's slot order):
 * fetching them a few entries ahead hides most of the wait. */
#define KZ__MEMO_AHEAD 6u

static inline void memo_prefetch(const kz__snap_memo *set, uint32_t ways)
{
    /* The first two ways (the usual configuration). */
    __builtin_prefetch(set);
    __builtin_prefetch(&set->state);
    if (ways > 1) {
        __builtin_prefetch(set + 1);
        __builtin_prefetch(&set[1].state);
    }
}

/* Appends n stored bits (LSB-first bytes) a word at a time. */
static void put_bits(kz_bitwriter *w, const uint8_t *p, uint32_t n)
{
    for (; n >= 64; n -= 64, p += 8)
        put(w, kz__bp_load_le64(p), 64);
    if (n > 0)
        put(w, kz__bp_load_le64(p), n);
}

static const kz_snap_badge *badge_of(const kz__snap_enc *e, uint32_t entity)
{
    return e->a->badge ? e->a->badge(e->a->badge_ctx, entity) : NULL;
}

static int view_shape_ok(const kz_snap_view *v)
{
    return v->count <= v->cap &&
           (v->count == 0 || (v->slot != NULL && (v->state != NULL || v->ref != NULL)));
}

/* Entry i's state of a view, held by value or by pointer. */
static inline const kz_snap_state *view_state(const kz_snap_view *v, uint32_t i)
{
    return v->ref != NULL ? v->ref[i] : &v->state[i];
}

static int view_ok(const kz_snap_codec *c, const kz_snap_view *v)
{
    if (!view_shape_ok(v))
        return 0;
    for (uint32_t i = 0; i < v->count; i++) {
        if (v->slot[i] >= c->n_slots || (i > 0 && v->slot[i] <= v->slot[i - 1]))
            return 0;
    }
    return 1;
}

/*
 * Merges base and want by slot, deciding each entry's operation (marked
 * taken: the first attempt sends everything), and checks on the way what
 * view_ok would (both views ascending, slots below n_slots) so the views
 * are walked once; with an older view (checked by the caller), finds each
 * UPDATE's older state. With a cache, UPDATE payloads are looked up (or
 * encoded and stored) here. Everything the loop reads is in locals: the
 * byte stores to op[] could otherwise alias any field behind a pointer.
 */
static int plan(kz__snap_enc *e)
{
    const kz_snap_view *want = e->a->want;
    const uint32_t wn = want->count, bn = e->bn, n_slots = e->x.c->n_slots;
    const uint16_t *const wslot = want->slot, *const bslot = bn ? e->base->slot : NULL;
    const kz_snap_state *const wst = want->state, *const bst = bn ? e->base->state : NULL;
    const kz_snap_state *const *const wref = want->ref;
    const kz_snap_state *const *const bref = bn ? e->base->ref : NULL;
    const uint8_t *const bunknown = bn ? e->a->base_unknown : NULL;
    kz_snap_cache *const k = e->a->cache;
    const uint32_t *const key = e->a->key;
    const kz_snap_state *const *const world = e->a->base_world;
    const kz_snap_state *const *const oworld = e->a->older_world;
    kz__snap_memo *const memo_all = k ? k->memo : NULL;
    const uint32_t n_keys = k ? k->n_keys : 0, ways = k ? k->ways : 0, gen = k ? k->gen : 0;
    const uint32_t bt = bn ? e->base->tick : 0;
    const uint32_t on = e->older ? e->older->count : 0, ot = e->older ? e->older->tick : 0;
    const uint16_t *const oslot = on ? e->older->slot : NULL;
    const kz_snap_state *const ost = on ? e->older->state : NULL;
    const kz_snap_state *const *const oref = on ? e->older->ref : NULL;
    uint8_t *const opv = e->op;
    uint16_t *const bidx = e->bidx, *const oidx = e->oidx;
    const kz__snap_memo **const memo = e->memo;
    uint32_t j = 0, jo = 0, n_leave = 0, n_change = 0;
    uint64_t hits = 0;
    int64_t prev = -1, bprev = -1;
    int rc = KZ_OK;
    for (uint32_t i = 0; i < wn; i++) {
        uint32_t slot = wslot[i];
        if (slot >= n_slots || (int64_t)slot <= prev || (k && key[i] >= n_keys)) {
            rc = KZ_EINVAL;
            break;
        }
        if (k != NULL && i + KZ__MEMO_AHEAD < wn && key[i + KZ__MEMO_AHEAD] < n_keys)
            memo_prefetch(&memo_all[(size_t)key[i + KZ__MEMO_AHEAD] * ways], ways);
        prev = slot;
        for (; j < bn && bslot[j] < slot; j++) {
            if ((int64_t)bslot[j] <= bprev) {
                rc = KZ_EINVAL;
                break;
            }
            bprev = bslot[j];
            n_leave++;
        }
        if (rc != KZ_OK)
            break;
        const kz_snap_state *s = wref ? wref[i] : &wst[i];
        uint8_t op = KZ__OP_ENTER;
        bidx[i] = KZ__SNAP_NONE;
        memo[i] = NULL;
        if (j < bn && bslot[j] == slot) {
            /* Every base slot before it was below slot, so it ascends. */
            const kz_snap_state *b = bref ? bref[j] : &bst[j];
            bprev = slot;
            bidx[i] = (uint16_t)j++;
            op = KZ__OP_REPLACE;
            if (bunknown != NULL && bunknown[bidx[i]]) {
                /* No delta from a state we cannot read: a full enter in
                 * place of what the client holds, never a leave. */
                if (b->entity == s->entity && b->kind == s->kind)
                    op = KZ__OP_RENEW;
            } else if (b->entity == s->entity && b->kind == s->kind) {
                if (state_eq(b, s)) {
                    opv[i] = KZ__OP_SAME;
                    continue;
                }
                op = KZ__OP_UPDATE;
            }
            /* The older state, for second order: the same entity in the
             * same slot of the older view. */
            const kz_snap_state *o = NULL;
            oidx[i] = KZ__SNAP_NONE;
            if (op == KZ__OP_UPDATE && on != 0) {
                for (; jo < on && oslot[jo] < slot; jo++)
                    ;
                const kz_snap_state *oj = jo < on ? (oref ? oref[jo] : &ost[jo]) : NULL;
                if (oj != NULL && oslot[jo] == slot && oj->entity == b->entity &&
                    oj->kind == b->kind) {
                    o = oj;
                    oidx[i] = (uint16_t)jo;
                }
            }
            /* Only a baseline holding the world state (and an older state,
             * if any, holding the world state of its tick) may use or make
             * a cache entry: the payload then depends on nothing but
             * (world state, base tick, older world state, older tick, s),
             * all of which a hit matches. */
            const kz_snap_state *bw = op == KZ__OP_UPDATE && k != NULL ? world[i] : NULL;
            kz__snap_memo_key mk = {bt, 0, bw, NULL};
            if (o != NULL && bw != NULL) {
                mk.ot = ot;
                mk.ow = oworld[i];
                if (mk.ow == NULL || !state_eq(mk.ow, o))
                    bw = NULL;
            }
            if (bw != NULL && state_eq(bw, b)) {
                kz__snap_memo *set = &memo_all[(size_t)key[i] * ways];
                const kz__snap_memo *m = memo_hit(set, ways, gen, &mk, s);
                opv[i] = KZ__OP_UPDATE | KZ__OP_TAKEN;
                n_change++;
                if (m != NULL) {
                    /* Made from this s, which passed the state check. */
                    hits++;
                    memo[i] = m->nbits == KZ__MEMO_LONG ? NULL : m;
                    continue;
                }
                if (kz_snap_state_check(e->x.c, s) != KZ_OK) {
                    rc = KZ_EINVAL;
                    break;
                }
                memo[i] = memo_make(e, i, set, &mk, b, o, s);
                continue;
            }
            if (op == KZ__OP_UPDATE && k != NULL)
                k->stats.misses++;
        }
        opv[i] = op | KZ__OP_TAKEN;
        n_change++;
        if (kz_snap_state_check(e->x.c, s) != KZ_OK) {
            rc = KZ_EINVAL;
            break;
        }
        if (op != KZ__OP_UPDATE) {
            const kz_snap_badge *bd = badge_of(e, s->entity);
            if (bd != NULL && !badge_valid(bd)) {
                rc = KZ_EINVAL;
                break;
            }
        }
    }
    for (; j < bn && rc == KZ_OK; j++) {
        if (bslot[j] >= n_slots || (int64_t)bslot[j] <= bprev)
            rc = KZ_EINVAL;
        bprev = bslot[j];
        n_leave++;
    }
    if (k != NULL)
        k->stats.hits += hits;
    e->n_leave = n_leave;
    e->n_change = n_change;
    return rc;
}

/* Checks an encode's use of the cache and binds the cache to the codec
 * for this tick (payloads depend on tick_hz and pos_max). */
static int cache_bind(kz_snap_cache *k, const kz_snap_codec *c, const kz_snap_encode_args *a,
                      int second_order)
{
    if (k->memo == NULL || k->gen == 0 || a->want->tick != k->tick ||
        (a->want->count > 0 &&
         (a->key == NULL || a->base_world == NULL || (second_order && a->older_world == NULL))))
        return KZ_EINVAL;
    if (k->tick_hz == 0) {
        k->tick_hz = c->tick_hz;
        k->pos_max = c->pos_max;
    }
    return k->tick_hz == c->tick_hz && k->pos_max == c->pos_max ? KZ_OK : KZ_EINVAL;
}

/* Type bits and body of the record for want entry i (chosen or not: an
 * unchosen replace is a leave). */
static void put_record(kz_bitwriter *w, const kz__snap_enc *e, uint32_t i)
{
    const kz_snap_state *s = view_state(e->a->want, i);
    switch (e->op[i]) {
    case KZ__OP_UPDATE | KZ__OP_TAKEN:
        put(w, 0, 1);
        if (e->memo[i] != NULL)
            put_bits(w, e->memo[i]->bits, e->memo[i]->nbits);
        else
            put_update(w, &e->x, view_state(e->base, e->bidx[i]),
                       e->oidx[i] == KZ__SNAP_NONE ? NULL : view_state(e->older, e->oidx[i]), s);
        break;
    case KZ__OP_REPLACE | KZ__OP_TAKEN:
    case KZ__OP_RENEW | KZ__OP_TAKEN:
        put(w, 3, 2);   /* 1 then 1: enter */
        put_enter(w, &e->x, s, badge_of(e, s->entity));
        break;
    case KZ__OP_ENTER | KZ__OP_TAKEN:
        put_enter(w, &e->x, s, badge_of(e, s->entity));
        break;
    case KZ__OP_REPLACE:
        put(w, 1, 2);   /* 1 then 0: leave */
        break;
    default:
        KZ_ASSERT(0);
    }
}

static int has_record(uint8_t op)
{
    return (op & KZ__OP_TAKEN) != 0 || op == KZ__OP_REPLACE;
}

#define KZ__OP_UPDATE_TAKEN (KZ__OP_UPDATE | KZ__OP_TAKEN)

/* A chosen UPDATE whose payload comes from the cache. */
static inline int cached(const kz__snap_enc *e, uint32_t i)
{
    return e->op[i] == KZ__OP_UPDATE_TAKEN && e->memo[i] != NULL;
}

/* A whole UPDATE record from the cache: the slot gap (ueg(0): g ones, a
 * zero, the low g bits of gap + 1), the type bit 0, then the payload,
 * written as 64-bit fields (one for a walking desktop avatar, two for a
 * VR one). */
static inline void put_memo_record(kz_bitwriter *w, uint32_t gap, const kz__snap_memo *m)
{
    uint64_t x = (uint64_t)gap + 1u;
    unsigned g = bit_length(x) - 1u;
    uint64_t low = ((uint64_t)1 << g) - 1u;
    uint64_t acc = low | ((x & low) << (g + 1u));
    const unsigned have = 2u * g + 2u;   /* bits in acc, 2 .. 22 */
    const uint8_t *p = m->bits;
    int32_t n = (int32_t)m->nbits;       /* payload bits not loaded yet */
    while ((int32_t)have + n > 64) {
        /* More than 64 bits to go, so this word's low 64 - have bits are
         * payload; its high `have` bits carry over (payload, or past the
         * end once n < 64, and then cut off by the last write). */
        uint64_t v = kz__bp_load_le64(p);
        p += 8;
        put(w, acc | v << have, 64);
        acc = v >> (64u - have);
        n -= 64;
    }
    if (n > 0)
        acc |= kz__bp_load_le64(p) << have;
    put(w, acc, (unsigned)((int32_t)have + n));
}

/* Bits of the body header before the record count. */
static size_t head_bits(const kz__snap_ctx *x)
{
    size_t n = 32u + ueg_len(x->dt, KZ__SNAP_K_BASE);
    if (x->dt != 0)
        n += 1u + (x->odt != 0 ? ueg_len(x->odt - 1u, KZ__SNAP_K_OLDER) : 0u);
    return n;
}

/* Writes the header and the records: every leave, and the want entries
 * marked taken, in slot order. */
static void put_body(kz_bitwriter *w, const kz__snap_enc *e, uint32_t n_records)
{
    const kz_snap_view *want = e->a->want, *base = e->base;
    put(w, want->tick, 32);
    put_ueg(w, e->x.dt, KZ__SNAP_K_BASE);
    if (e->x.dt != 0) {
        put(w, e->x.odt != 0, 1);
        if (e->x.odt != 0)
            put_ueg(w, e->x.odt - 1u, KZ__SNAP_K_OLDER);
    }
    put_ueg(w, n_records, KZ__SNAP_K_COUNT);
    int64_t prev = -1;
    uint32_t j = 0;
    if (e->n_leave == 0) {
        /* No leaves (nor replaces left out): only want entries have
         * records, the usual tick. Locals, because the writer's byte
         * stores could alias anything behind a pointer. */
        const uint32_t wn = want->count;
        const uint16_t *const wslot = want->slot;
        const uint8_t *const opv = e->op;
        const kz__snap_memo *const *const memo = e->memo;
        /* A private copy of the writer that no other code sees, so it
         * can live in registers; synced around the out-of-line records. */
        kz_bitwriter lw = *w;
        for (uint32_t i = 0; i < wn; i++) {
            if (i + KZ__MEMO_AHEAD < wn && opv[i + KZ__MEMO_AHEAD] == KZ__OP_UPDATE_TAKEN &&
                memo[i + KZ__MEMO_AHEAD] != NULL)
                __builtin_prefetch(memo[i + KZ__MEMO_AHEAD]);
            uint8_t op = opv[i];
            if (!has_record(op))
                continue;
            uint32_t slot = wslot[i];
            if (op == KZ__OP_UPDATE_TAKEN && memo[i] != NULL) {
                put_memo_record(&lw, slot - (uint32_t)(prev + 1), memo[i]);
            } else {
                put_ueg(&lw, (uint64_t)(slot - prev - 1), KZ__SNAP_K_GAP);
                *w = lw;
                put_record(w, e, i);
                lw = *w;
            }
            prev = slot;
        }
        *w = lw;
        return;
    }
    for (uint32_t i = 0; i <= want->count; i++) {
        uint32_t slot = i < want->count ? want->slot[i] : UINT32_MAX;
        for (; j < e->bn && base->slot[j] <= slot; j++) {
            if (base->slot[j] == slot)
                continue;
            put_ueg(w, (uint64_t)(base->slot[j] - prev - 1), KZ__SNAP_K_GAP);
            put(w, 1, 2);   /* leave */
            prev = base->slot[j];
        }
        if (i == want->count || !has_record(e->op[i]))
            continue;
        if (cached(e, i))
            put_memo_record(w, slot - (uint32_t)(prev + 1), e->memo[i]);
        else {
            put_ueg(w, (uint64_t)(slot - prev - 1), KZ__SNAP_K_GAP);
            put_record(w, e, i);
        }
        prev = slot;
    }
}

/* Fills `sent` and `change` from the plan and the taken marks. */
static void fill_sent(const kz__snap_enc *e, int all, kz_snap_view *sent, uint8_t *change,
                      kz_snap_encode_stats *st)
{
    const kz_snap_view *want = e->a->want;
    /* Locals: the stores below could alias any field behind a pointer. */
    const uint32_t wn = want->count;
    const uint16_t *const wslot = want->slot;
    uint16_t *const sslot = sent->slot;
    kz_snap_state *const sst = sent->state;
    const kz_snap_state **const sref = sent->ref;
    kz_snap_encode_stats c = {.leaves = e->n_leave};
    uint32_t n = 0;
    sent->tick = want->tick;
    if (all) {
        /* Everything went out: the client will hold want. */
        memcpy(sslot, wslot, wn * sizeof *wslot);
        if (sref != NULL)
            for (uint32_t i = 0; i < wn; i++)
                sref[i] = view_state(want, i);
        else if (want->ref != NULL)
            for (uint32_t i = 0; i < wn; i++)
                sst[i] = *want->ref[i];
        else
            memcpy(sst, want->state, wn * sizeof *sst);
        for (uint32_t i = 0; i < wn; i++) {
            uint8_t op = e->op[i] & (uint8_t)~KZ__OP_TAKEN;
            c.updates += op == KZ__OP_UPDATE;
            c.enters += op == KZ__OP_ENTER || op == KZ__OP_REPLACE || op == KZ__OP_RENEW;
            if (change != NULL)
                change[i] = op == KZ__OP_SAME ? KZ_SNAP_SAME
                            : op == KZ__OP_UPDATE ? KZ_SNAP_UPDATE : KZ_SNAP_ENTER;
        }
        c.same = wn - c.updates - c.enters;
        sent->count = wn;
        *st = c;
        return;
    }
    for (uint32_t i = 0; i < wn; i++) {
        uint8_t op = e->op[i], taken = op & KZ__OP_TAKEN;
        const kz_snap_state *s = view_state(want, i);
        uint8_t ch = KZ_SNAP_SAME;
        op &= (uint8_t)~KZ__OP_TAKEN;
        if (op == KZ__OP_SAME) {
            c.same++;
        } else if (!taken) {
            c.deferred++;
            if (op == KZ__OP_REPLACE)
                c.leaves++;
            if (op != KZ__OP_UPDATE && op != KZ__OP_RENEW)
                continue;   /* the client does not hold it */
            s = view_state(e->base, e->bidx[i]);   /* what it keeps */
        } else if (op == KZ__OP_UPDATE) {
            c.updates++;
            ch = KZ_SNAP_UPDATE;
        } else {
            c.enters++;
            ch = KZ_SNAP_ENTER;
        }
        sslot[n] = wslot[i];
        if (sref != NULL)
            sref[n] = s;
        else
            sst[n] = *s;
        if (change != NULL)
            change[n] = ch;
        n++;
    }
    sent->count = n;
    *st = c;
}

/* ---- budget selection ------------------------------------------------------ */

/* Largest set slot below s, or -1. */
static int64_t sel_prev(const uint64_t *b, uint32_t s)
{
    int64_t wi = (int64_t)(s >> 6);
    uint64_t m = b[wi] & (((uint64_t)1 << (s & 63)) - 1u);
    while (m == 0) {
        if (--wi < 0)
            return -1;
        m = b[wi];
    }
    return wi * 64 + 63 - __builtin_clzll(m);
}

/* Smallest set slot above s (s may be -1), or -1. */
static int64_t sel_next(const uint64_t *b, int64_t s)
{
    uint64_t from = (uint64_t)(s + 1);
    uint32_t wi = (uint32_t)(from >> 6);
    if (wi >= KZ__SNAP_WORDS)
        return -1;
    uint64_t m = b[wi] & ~(((uint64_t)1 << (from & 63)) - 1u);
    while (m == 0) {
        if (++wi >= KZ__SNAP_WORDS)
            return -1;
        m = b[wi];
    }
    return (int64_t)wi * 64 + __builtin_ctzll(m);
}

/* Bits of want entry i's record (type bits and body) as it would be
 * written now, measured by writing it to scratch. */
static size_t record_bits(const kz__snap_enc *e, uint32_t i)
{
    uint8_t scratch[KZ__SNAP_RECORD_MAX_BYTES];
    kz_bitwriter w;
    kz_bitwriter_init(&w, scratch, sizeof scratch);
    put_record(&w, e, i);
    KZ_ASSERT(kz_bitwriter_error(&w) == KZ_OK);
    return kz_bitwriter_bits(&w);
}

/*
 * Chooses records for a budget too small for all of them. Leaves (and
 * the leave half of every replace) come first; then changes in priority
 * order, each taken if the exact body size with it still fits. The size
 * is kept exactly: header, count, every gap (inserting a slot changes the
 * gap of its successor) and every record. Returns the count of records or
 * KZ_EOVERFLOW.
 */
static int64_t choose(kz__snap_enc *e, size_t budget)
{
    const kz_snap_view *want = e->a->want, *base = e->base;
    uint64_t sel[KZ__SNAP_WORDS];
    memset(sel, 0, sizeof sel);
    uint32_t j = 0, n = 0;
    size_t rec = 0;
    /* Replaces: their leave half is mandatory. */
    for (uint32_t i = 0; i < want->count; i++) {
        if (e->op[i] == KZ__OP_REPLACE) {
            sel[want->slot[i] >> 6] |= (uint64_t)1 << (want->slot[i] & 63);
            rec += 2;
            n++;
        }
    }
    /* Leaves: base slots with no want entry (found by merging). */
    j = 0;
    for (uint32_t i = 0; i <= want->count; i++) {
        uint32_t slot = i < want->count ? want->slot[i] : UINT32_MAX;
        for (; j < e->bn && base->slot[j] <= slot; j++) {
            if (base->slot[j] != slot) {
                sel[base->slot[j] >> 6] |= (uint64_t)1 << (base->slot[j] & 63);
                rec += 2;
                n++;
            }
        }
    }
    size_t gaps = 0;
    for (int64_t s = sel_next(sel, -1), p = -1; s >= 0; p = s, s = sel_next(sel, s))
        gaps += ueg_len((uint64_t)(s - p - 1), KZ__SNAP_K_GAP);
    size_t head = head_bits(&e->x);
    size_t total = head + ueg_len(n, KZ__SNAP_K_COUNT) + gaps + rec;
    if (total > budget)
        return KZ_EOVERFLOW;
    for (uint32_t r = 0; r < want->count; r++) {
        uint32_t i = e->a->priority ? e->a->priority[r] : r;
        KZ_ASSERT(i < want->count);
        uint8_t op = e->op[i];
        if (op == KZ__OP_SAME || (op & KZ__OP_TAKEN))
            continue;
        uint32_t s = want->slot[i];
        size_t add;
        e->op[i] |= KZ__OP_TAKEN;
        if (op == KZ__OP_REPLACE) {
            add = record_bits(e, i) - 2u;   /* the leave it replaces */
        } else {
            int64_t p = sel_prev(sel, s), q = sel_next(sel, s);
            add = ueg_len((uint64_t)(s - p - 1), KZ__SNAP_K_GAP) + record_bits(e, i) +
                  ueg_len(n + 1u, KZ__SNAP_K_COUNT) - ueg_len(n, KZ__SNAP_K_COUNT);
            if (q >= 0)
                add = add + ueg_len((uint64_t)(q - s - 1), KZ__SNAP_K_GAP) -
                      ueg_len((uint64_t)(q - p - 1), KZ__SNAP_K_GAP);
        }
        if (total + add > budget) {
            e->op[i] = op;
            continue;
        }
        total += add;
        if (op != KZ__OP_REPLACE) {
            sel[s >> 6] |= (uint64_t)1 << (s & 63);
            n++;
        }
    }
    return n;
}

int kz_snap_encode(const kz_snap_codec *c, const kz_snap_encode_args *a, kz_bitwriter *w,
                   kz_snap_view *sent, uint8_t *change, kz_snap_encode_stats *stats)
{
    KZ_ASSERT(c != NULL && a != NULL && a->want != NULL && w != NULL && sent != NULL);
    kz__snap_enc e;
    const kz_snap_view *want = a->want, *base = a->base;
    if (!view_shape_ok(want) || (base && !view_shape_ok(base)) || sent->cap < want->count ||
        (want->count > 0 && (sent->slot == NULL || (sent->state == NULL && sent->ref == NULL))))
        return KZ_EINVAL;
    /* Tick 0 is never a baseline, and a baseline as new as the view
     * cannot be named (0 means full state): both send full state. */
    int full = base == NULL || base->count == 0 || base->tick == 0 || base->tick == want->tick;
    /* plan checks the slots of want and of a baseline it uses. */
    if (full && base != NULL && !view_ok(c, base))
        return KZ_EINVAL;
    uint32_t dt = full ? 0 : want->tick - base->tick, odt = 0;
    const kz_snap_view *older = a->older;
    if (full || older == NULL || older->count == 0 || older->tick == 0) {
        older = NULL;   /* first order */
    } else {
        /* Strictly before the baseline, and the pair names no tick 0. */
        odt = base->tick - older->tick;
        if (!view_ok(c, older) || odt == 0 || (uint64_t)dt + odt > UINT32_MAX)
            return KZ_EINVAL;
    }
    if (a->cache != NULL && cache_bind(a->cache, c, a, older != NULL) != KZ_OK)
        return KZ_EINVAL;
    e.a = a;
    e.base = full ? NULL : base;
    e.bn = full ? 0 : base->count;
    e.older = older;
    ctx_init(&e.x, c, dt, odt);
    int rc = plan(&e);
    if (rc != KZ_OK)
        return rc;

    kz_bitwriter start = *w;
    size_t budget = a->budget_bits;
    if (budget > kz_bitwriter_bits_left(w))
        budget = kz_bitwriter_bits_left(w);
    put_body(w, &e, e.n_leave + e.n_change);
    int all = 1;
    if (kz_bitwriter_error(w) != KZ_OK || kz_bitwriter_bits(w) - kz_bitwriter_bits(&start) > budget) {
        all = 0;
        *w = start;
        for (uint32_t i = 0; i < want->count; i++)
            e.op[i] &= (uint8_t)~KZ__OP_TAKEN;
        int64_t n = choose(&e, budget);
        if (n < 0)
            return (int)n;
        put_body(w, &e, (uint32_t)n);
        KZ_ASSERT(kz_bitwriter_error(w) == KZ_OK &&
                  kz_bitwriter_bits(w) - kz_bitwriter_bits(&start) <= budget);
    }
    kz_snap_encode_stats st;
    fill_sent(&e, all, sent, change, &st);
    if (stats != NULL)
        *stats = st;
    return KZ_OK;
}

/* ---- reading -------------------------------------------------------------- */

/* Field reads for the decoder: any failure (truncation) is a protocol
 * error, and the reader's sticky error makes later reads fail too. */
static inline uint64_t get(kz_bitreader *r, unsigned n, int *bad)
{
    uint64_t v = 0;
    if (kz_bitreader_read(r, &v, n) != KZ_OK)
        *bad = 1;
    return v;
}

static uint64_t get_ueg(kz_bitreader *r, unsigned k, int *bad)
{
    size_t left = kz_bitreader_bits_left(r);
    unsigned wnd = left < 64 ? (unsigned)left : 64u;
    kz_bitreader peek = *r;
    uint64_t bits = 0;
    if (wnd == 0 || kz_bitreader_read(&peek, &bits, wnd) != KZ_OK) {
        *bad = 1;
        return 0;
    }
    /* Count the leading one bits; the window ends in zeros above it
     * unless it is 64 bits of ones. */
    unsigned p = ~bits != 0 ? (unsigned)__builtin_ctzll(~bits) : 64u;
    if (p >= wnd || p + k > 32u) {
        *bad = 1;   /* no terminating zero in reach, or a value past 2^33 */
        return 0;
    }
    unsigned n = p + k, total = p + 1u + n;
    uint64_t low;
    if (total <= wnd) {
        /* The whole code is in the window (the usual case): one read
         * consumes it, and no branch depends on the value's size. */
        (void)get(r, total, bad);
        low = (bits >> (p + 1u)) & (((uint64_t)1 << n) - 1u);
    } else {
        (void)get(r, p + 1u, bad);
        low = n > 0 ? get(r, n, bad) : 0;
    }
    return (((uint64_t)1 << n) | low) - ((uint64_t)1 << k);
}

static int64_t get_seg(kz_bitreader *r, unsigned k, int *bad)
{
    return kz_zigzag_decode(get_ueg(r, k, bad));
}

/* Adds a decoded delta to a base value and checks the range [lo, hi]. */
static int64_t add_checked(int64_t base, int64_t d, int64_t lo, int64_t hi, int *bad)
{
    int64_t v = base + d;
    if (v < lo || v > hi) {
        *bad = 1;
        return base;
    }
    return v;
}

/* Rotation components of p plus three deltas of order k, index kept. */
static uint32_t get_rot_comps(kz_bitreader *r, unsigned k, uint32_t p, int *bad)
{
    uint32_t s = p & ~((1u << (3u * KZ_SNAP_ROT_K)) - 1u);
    for (unsigned j = 0; j < 3; j++) {
        int64_t v = add_checked(rot_comp(p, j), get_seg(r, k, bad), 0, KZ__SNAP_ROT_COMP_MAX, bad);
        s |= (uint32_t)v << (KZ_SNAP_ROT_K * (2u - j));
    }
    return s;
}

/* A rotation in the per-field form against its prediction p. */
static uint32_t get_rot_delta(kz_bitreader *r, unsigned k, uint32_t p, int *bad)
{
    if (get(r, 1, bad) == 0)
        return p;
    if (get(r, 1, bad) != 0) {
        uint32_t s = (uint32_t)get(r, KZ__SNAP_ROT_BITS, bad);
        if (!rot_valid(s))
            *bad = 1;
        return s;
    }
    return get_rot_comps(r, k, p, bad);
}

/* Reads a three-delta group into d (zero when the group bit is clear). */
static void get_triple(kz_bitreader *r, int64_t d[3], unsigned k_xz, unsigned k_y, int *bad)
{
    d[0] = d[1] = d[2] = 0;
    if (get(r, 1, bad) == 0)
        return;
    d[0] = get_seg(r, k_xz, bad);
    d[2] = get_seg(r, k_xz, bad);
    if (get(r, 1, bad) != 0)
        d[1] = get_seg(r, k_y, bad);
}

/* Poses of s against their prediction from b (and o, or NULL). */
static void get_poses(kz_bitreader *r, const kz__snap_ctx *x, const kz_snap_state *b,
                      const kz_snap_state *o, kz_snap_state *s, int32_t dy, int *bad)
{
    kz__snap_pred p;
    predict_poses(x, b, o, dy, &p);
    const unsigned k_rel = o ? x->k_rel2 : x->k_rel, k_rot = o ? x->k_rot2 : x->k_rot;
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        for (int i = 0; i < 3; i++)
            s->rel[k][i] = (int16_t)p.rel[k][i];
        s->rot[k] = p.rot[k];
    }
    if (get(r, 1, bad) == 0)
        return;
    int short_form = get(r, 1, bad) == 0;
    for (uint32_t k = 0; k < KZ_POSE_COUNT && !*bad; k++) {
        if (short_form || get(r, 1, bad) != 0) {
            for (int i = 0; i < 3; i++)
                s->rel[k][i] = (int16_t)add_checked(p.rel[k][i], get_seg(r, k_rel, bad),
                                                    -KZ_SNAP_REL_MAX, KZ_SNAP_REL_MAX, bad);
        }
        s->rot[k] = short_form ? get_rot_comps(r, k_rot, p.rot[k], bad)
                               : get_rot_delta(r, k_rot, p.rot[k], bad);
    }
}

/* An UPDATE body of b (o: b's entity in the older view, or NULL). */
static void get_update(kz_bitreader *r, const kz__snap_ctx *x, const kz_snap_state *b,
                       const kz_snap_state *o, kz_snap_state *s, int *bad)
{
    const int64_t pm = x->c->pos_max;
    int64_t d[3], v[3];
    *s = *b;
    get_triple(r, d, x->k_pos, x->k_posy, bad);
    for (int i = 0; i < 3; i++)
        s->pos[i] = (int32_t)add_checked(predict(x, b->pos[i], b->vel[i]), d[i], -pm, pm, bad);
    int32_t dy = 0;
    if (get(r, 1, bad) != 0) {
        int64_t y = get_seg(r, x->k_yaw, bad);
        if (y < -32768 || y > 32767)
            *bad = 1;
        else
            dy = (int32_t)y;
        s->yaw = (uint16_t)(b->yaw + (uint16_t)(dy & 0xffff));
    }
    predict_vel(b, dy, v);
    get_triple(r, d, x->k_vel, x->k_vel, bad);
    for (int i = 0; i < 3; i++)
        s->vel[i] = (int16_t)add_checked(v[i], d[i], -32767, 32767, bad);
    int base_rest = !(b->flags & KZ_AVATAR_VR) && poses_rest(b);
    int extra = 0;
    if (get(r, 1, bad) != 0) {
        if (get(r, 1, bad) != 0)
            s->anim = (uint16_t)get(r, 16, bad);
        if (get(r, 1, bad) != 0)
            s->flags = (uint8_t)get(r, 8, bad);
        if (get(r, 1, bad) != 0)
            s->holder = (uint32_t)get(r, 32, bad);
        if (!(s->flags & KZ_AVATAR_VR) && base_rest)
            extra = (int)get(r, 1, bad);
    }
    /* Poses absent: s keeps b's, all at rest. */
    if (!(s->flags & KZ_AVATAR_VR) && base_rest && !extra)
        return;
    get_poses(r, x, b, o, s, dy, bad);
}

static void get_badge(kz_bitreader *r, kz_snap_badge *b, int *bad)
{
    kz_snap_badge tmp;
    kz_snap_badge *o = b ? b : &tmp;
    memset(o, 0, sizeof *o);
    if (get(r, 1, bad) == 0)
        return;
    o->verification_level = (uint8_t)get(r, 2, bad);
    o->actor_kind = (uint8_t)get(r, 2, bad);
    if (get(r, 1, bad) != 0) {
        o->acting_for = get(r, 64, bad);
        if (o->acting_for == 0)
            *bad = 1;
    }
    size_t ml = (size_t)get(r, KZ__SNAP_LEN_BITS, bad);
    if (ml > KZ_TOKEN_METHOD_MAX || o->verification_level > KZ_VERIFY_MAX ||
        o->actor_kind > KZ_ACTOR_MAX) {
        *bad = 1;
        return;
    }
    for (size_t i = 0; i < ml; i++)
        o->method[i] = (char)get(r, 8, bad);
    size_t nl = (size_t)get(r, KZ__SNAP_LEN_BITS, bad);
    if (nl > KZ_TOKEN_NAME_MAX) {
        *bad = 1;
        return;
    }
    for (size_t i = 0; i < nl; i++)
        o->name[i] = (char)get(r, 8, bad);
    if (!method_valid((const uint8_t *)o->method, ml) ||
        !kz_utf8_printable((const uint8_t *)o->name, nl))
        *bad = 1;
}

static void get_enter(kz_bitreader *r, const kz__snap_ctx *x, kz_snap_state *s,
                      kz_snap_badge *badge, int *bad)
{
    const kz_snap_codec *c = x->c;
    memset(s, 0, sizeof *s);
    s->entity = (uint32_t)get(r, 32, bad);
    s->kind = get(r, 1, bad) ? KZ_KIND_OBJECT : KZ_KIND_AVATAR;
    if (s->entity == 0)
        *bad = 1;
    for (int i = 0; i < 3; i++) {
        uint64_t v = get(r, c->pos_bits, bad);
        if (v > 2u * (uint64_t)c->pos_max)
            *bad = 1;
        s->pos[i] = (int32_t)((int64_t)(v & 0xffffffffu) - c->pos_max);
    }
    if (get(r, 1, bad) != 0) {
        for (int i = 0; i < 3; i++) {
            uint16_t v = (uint16_t)get(r, 16, bad);
            if (v == 0x8000u)
                *bad = 1;
            s->vel[i] = (int16_t)(v >= 0x8000u ? (int32_t)v - 65536 : (int32_t)v);
        }
    }
    s->yaw = (uint16_t)get(r, 16, bad);
    if (get(r, 1, bad) != 0)
        s->anim = (uint16_t)get(r, 16, bad);
    s->flags = (uint8_t)get(r, 8, bad);
    if (get(r, 1, bad) != 0) {
        s->holder = (uint32_t)get(r, 32, bad);
        if (s->holder == 0)
            *bad = 1;
    }
    int poses = (s->flags & KZ_AVATAR_VR) || get(r, 1, bad) != 0;
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        s->rot[k] = KZ_SNAP_ROT_REST;
        if (!poses)
            continue;
        if (get(r, 1, bad) != 0) {
            for (int i = 0; i < 3; i++) {
                uint64_t v = get(r, KZ__SNAP_REL_BITS, bad);
                if (v > 2u * KZ_SNAP_REL_MAX)
                    *bad = 1;
                s->rel[k][i] = (int16_t)((int32_t)(v & 0x1fff) - KZ_SNAP_REL_MAX);
            }
        }
        if (get(r, 1, bad) != 0) {
            s->rot[k] = (uint32_t)get(r, KZ__SNAP_ROT_BITS, bad);
            if (!rot_valid(s->rot[k]))
                *bad = 1;
        }
    }
    get_badge(r, badge, bad);
}

/* The body header before the record count. */
typedef struct kz__snap_head {
    uint32_t tick, dt, odt;
} kz__snap_head;

/* Reads the header: the tick, dt, and with dt != 0 the older field.
 * Refuses (KZ_EPROTO) a truncated header, a baseline or older view at
 * tick 0, and an older view as new as the body's tick (dt + odt must
 * stay below 2^32). */
static int get_head(kz_bitreader *r, kz__snap_head *h)
{
    int bad = 0;
    h->tick = (uint32_t)get(r, 32, &bad);
    uint64_t dt = get_ueg(r, KZ__SNAP_K_BASE, &bad), odt = 0;
    if (!bad && dt != 0 && get(r, 1, &bad) != 0)
        odt = get_ueg(r, KZ__SNAP_K_OLDER, &bad) + 1u;
    if (bad || dt > UINT32_MAX || dt + odt > UINT32_MAX ||
        (dt != 0 && h->tick - (uint32_t)dt == 0) ||
        (odt != 0 && h->tick - (uint32_t)(dt + odt) == 0))
        return KZ_EPROTO;
    h->dt = (uint32_t)dt;
    h->odt = (uint32_t)odt;
    return KZ_OK;
}

int kz_snap_peek(const kz_snap_codec *c, const kz_bitreader *r, uint32_t *tick,
                 uint32_t *base_tick)
{
    KZ_ASSERT(c != NULL && r != NULL && tick != NULL && base_tick != NULL);
    kz_bitreader p = *r;
    kz__snap_head h;
    if (get_head(&p, &h) != KZ_OK)
        return KZ_EPROTO;
    *tick = h.tick;
    *base_tick = h.dt ? h.tick - h.dt : 0;
    return KZ_OK;
}

int kz_snap_peek_older(const kz_snap_codec *c, const kz_bitreader *r, uint32_t *older_tick)
{
    KZ_ASSERT(c != NULL && r != NULL && older_tick != NULL);
    kz_bitreader p = *r;
    kz__snap_head h;
    if (get_head(&p, &h) != KZ_OK)
        return KZ_EPROTO;
    *older_tick = h.odt ? h.tick - h.dt - h.odt : 0;
    return KZ_OK;
}

/* Appends a state to the decoded view. */
static void emit(kz_snap_view *out, uint8_t *change, uint16_t slot, const kz_snap_state *s,
                 uint8_t ch)
{
    KZ_ASSERT(out->count < out->cap);
    out->slot[out->count] = slot;
    out->state[out->count] = *s;
    if (change != NULL)
        change[out->count] = ch;
    out->count++;
}

int kz_snap_decode(const kz_snap_codec *c, kz_bitreader *r, const kz_snap_view *base,
                   kz_snap_view *out, uint8_t *change, kz_snap_badge *badge)
{
    return kz_snap_decode_older(c, r, base, NULL, out, change, badge);
}

int kz_snap_decode_older(const kz_snap_codec *c, kz_bitreader *r, const kz_snap_view *base,
                         const kz_snap_view *older, kz_snap_view *out, uint8_t *change,
                         kz_snap_badge *badge)
{
    KZ_ASSERT(c != NULL && r != NULL && out != NULL);
    KZ_ASSERT(out->cap >= c->n_slots && out->slot != NULL && out->state != NULL);
    kz__snap_head h;
    if (get_head(r, &h) != KZ_OK)
        return KZ_EPROTO;
    int bad = 0;
    if (h.dt != 0) {
        /* The body names a baseline: it must be the one we were given. */
        if (base == NULL || base->tick != h.tick - h.dt)
            return KZ_EPROTO;
        KZ_ASSERT(view_ok(c, base));
    } else {
        base = NULL;
    }
    if (h.odt != 0) {
        /* ... and so for the older view. */
        if (older == NULL || older->tick != h.tick - h.dt - h.odt)
            return KZ_EPROTO;
        KZ_ASSERT(view_ok(c, older));
    } else {
        older = NULL;
    }
    const uint32_t tick = h.tick, bn = base ? base->count : 0, on = older ? older->count : 0;
    kz__snap_ctx x;
    ctx_init(&x, c, h.dt, h.odt);
    uint64_t count = get_ueg(r, KZ__SNAP_K_COUNT, &bad);
    if (bad || count > c->n_slots)
        return KZ_EPROTO;
    out->tick = tick;
    out->count = 0;
    int64_t prev = -1;
    uint32_t j = 0, jo = 0;
    for (uint64_t n = 0; n < count && !bad; n++) {
        uint64_t gap = get_ueg(r, KZ__SNAP_K_GAP, &bad);
        if (bad || gap >= c->n_slots || (uint64_t)(prev + 1) + gap >= c->n_slots)
            return KZ_EPROTO;
        uint16_t slot = (uint16_t)((uint64_t)(prev + 1) + gap);
        for (; j < bn && base->slot[j] < slot; j++)
            emit(out, change, base->slot[j], view_state(base, j), KZ_SNAP_SAME);
        kz_snap_state s;
        kz_snap_badge *bd = badge ? &badge[slot] : NULL;
        if (j < bn && base->slot[j] == slot) {
            const kz_snap_state *b = view_state(base, j++);
            if (get(r, 1, &bad) == 0) {
                /* The older state: the same entity in the same slot. */
                const kz_snap_state *o = NULL;
                for (; jo < on && older->slot[jo] < slot; jo++)
                    ;
                if (jo < on && older->slot[jo] == slot &&
                    view_state(older, jo)->entity == b->entity &&
                    view_state(older, jo)->kind == b->kind)
                    o = view_state(older, jo);
                get_update(r, &x, b, o, &s, &bad);
                emit(out, change, slot, &s, KZ_SNAP_UPDATE);
            } else if (get(r, 1, &bad) != 0) {
                get_enter(r, &x, &s, bd, &bad);
                emit(out, change, slot, &s, KZ_SNAP_ENTER);
            }
        } else {
            get_enter(r, &x, &s, bd, &bad);
            emit(out, change, slot, &s, KZ_SNAP_ENTER);
        }
        prev = slot;
    }
    if (bad)
        return KZ_EPROTO;
    for (; j < bn; j++)
        emit(out, change, base->slot[j], view_state(base, j), KZ_SNAP_SAME);
    /* What is left is the zero padding of the last byte, nothing more. */
    size_t left = kz_bitreader_bits_left(r);
    if (left >= 8 || (left > 0 && get(r, (unsigned)left, &bad) != 0))
        return KZ_EPROTO;
    return bad ? KZ_EPROTO : KZ_OK;
}
