/*
 * Snapshot codec tests. Quantization is checked against its stated error
 * bounds and error codes. The codec's main check is a simulation: seeded
 * worlds of up to 220 entities (desktop and VR avatars, objects) move,
 * enter and leave a 150-slot view for 200+ ticks while the "network"
 * drops packets and acknowledgements, so baselines lag 0-20 ticks or fall
 * back to full state, and budgets range from unlimited to a few bits.
 * Every decoded view must equal the encoder's `sent` exactly (states,
 * change codes, badges), equal `want` when the budget is unlimited, and
 * the client must converge to `want` once the network is good again.
 * Hostile bodies (every truncation, bit flips, wrong baselines, hand-made
 * bodies with bad slots, counts, badges) must be refused or decode to a
 * view that re-encodes to itself. A hand-assembled known-answer body pins
 * the bitstream documented in docs/SNAPSHOT-WIRE.md.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/quant.h>

#include "sim/snapshot.h"

#define PI 3.14159265358979323846

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
    rng_state = s ? s : 0x9E3779B97F4A7C15u;
}

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

static int rng_chance(double p)
{
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0) < p;
}

static float rng_range(float lo, float hi)
{
    double u = (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

static int32_t rng_span(int32_t lo, int32_t hi)
{
    return lo + (int32_t)rng_below((uint32_t)(hi - lo + 1));
}

static kz_snap_codec make_codec(uint32_t n_slots)
{
    kz_snap_codec c;
    cr_assert_eq(kz_snap_codec_init(&c, 30, n_slots, 1000.0f), KZ_OK);
    return c;
}

static void random_quat(float q[4])
{
    double n;
    double v[4];
    do {
        n = 0;
        for (int i = 0; i < 4; i++) {
            v[i] = rng_range(-1.0f, 1.0f);
            n += v[i] * v[i];
        }
    } while (n < 0.01 || n > 1.0);
    n = sqrt(n);
    for (int i = 0; i < 4; i++)
        q[i] = (float)(v[i] / n);
}

/* A view with its own storage. */
typedef struct vbox {
    kz_snap_view v;
    uint16_t slot[KZ_SNAP_MAX_SLOTS];
    kz_snap_state st[KZ_SNAP_MAX_SLOTS];
    uint8_t change[KZ_SNAP_MAX_SLOTS];
} vbox;

static void vbox_init(vbox *b)
{
    memset(&b->v, 0, sizeof b->v);
    b->v.cap = KZ_SNAP_MAX_SLOTS;
    b->v.slot = b->slot;
    b->v.state = b->st;
}

static void vbox_copy(vbox *dst, const kz_snap_view *src)
{
    vbox_init(dst);
    dst->v.tick = src->tick;
    dst->v.count = src->count;
    memcpy(dst->slot, src->slot, src->count * sizeof *src->slot);
    memcpy(dst->st, src->state, src->count * sizeof *src->state);
}

static int views_equal(const kz_snap_view *a, const kz_snap_view *b)
{
    return a->tick == b->tick && a->count == b->count &&
           memcmp(a->slot, b->slot, a->count * sizeof *a->slot) == 0 &&
           memcmp(a->state, b->state, a->count * sizeof *a->state) == 0;
}

static uint32_t random_rot(void)
{
    uint32_t c = rng_below(4);
    for (int j = 0; j < 3; j++)
        c = c << KZ_SNAP_ROT_K | rng_below((1u << KZ_SNAP_ROT_K) - 1u);
    return c;
}

/* A valid random state. */
static void random_state(const kz_snap_codec *c, uint32_t entity, kz_snap_state *s)
{
    memset(s, 0, sizeof *s);
    s->entity = entity;
    s->kind = rng_chance(0.15) ? KZ_KIND_OBJECT : KZ_KIND_AVATAR;
    for (int i = 0; i < 3; i++) {
        s->pos[i] = rng_span(-c->pos_max, c->pos_max);
        s->vel[i] = (int16_t)(rng_chance(0.5) ? 0 : rng_span(-32767, 32767));
    }
    s->yaw = (uint16_t)rng_below(65536);
    s->anim = (uint16_t)(rng_chance(0.5) ? 0 : rng_below(65536));
    s->flags = (uint8_t)rng_below(256);
    s->holder = rng_chance(0.5) ? 0 : (uint32_t)rng_next();
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        int rest = rng_chance(0.3);
        for (int i = 0; i < 3; i++)
            s->rel[k][i] = (int16_t)(rest ? 0 : rng_span(-KZ_SNAP_REL_MAX, KZ_SNAP_REL_MAX));
        s->rot[k] = rest ? KZ_SNAP_ROT_REST : random_rot();
    }
}

/* Badges: a deterministic one per entity, none for multiples of 7. */
typedef struct badge_book {
    kz_snap_badge b;
} badge_book;

static void make_badge(uint32_t entity, kz_snap_badge *b)
{
    memset(b, 0, sizeof *b);
    b->verification_level = (uint8_t)(entity % 3);
    b->actor_kind = (uint8_t)((entity / 3) % 3);
    b->acting_for = b->actor_kind == KZ_ACTOR_AGENT ? 1000u + entity : 0;
    snprintf(b->method, sizeof b->method, "oidc:idp%u", entity % 5);
    /* A name with a multi-byte character in it. */
    snprintf(b->name, sizeof b->name, "Zo\xc3\xab-%u", entity);
}

static const kz_snap_badge *badge_cb(void *ctx, uint32_t entity)
{
    badge_book *book = ctx;
    if (entity % 7 == 0)
        return NULL;
    make_badge(entity, &book->b);
    return &book->b;
}

/* Encodes want against base into buf; returns the body length in bytes
 * (or a negative error). */
static long encode_into(const kz_snap_codec *c, const kz_snap_view *base, const kz_snap_view *want,
                        size_t budget, const uint16_t *prio, uint8_t *buf, size_t cap,
                        vbox *sent, kz_snap_encode_stats *st)
{
    static badge_book book;
    kz_snap_encode_args a = {.base = base, .want = want, .priority = prio,
                             .budget_bits = budget, .badge = badge_cb, .badge_ctx = &book};
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, cap);
    vbox_init(sent);
    int rc = kz_snap_encode(c, &a, &w, &sent->v, sent->change, st);
    if (rc != KZ_OK)
        return rc;
    cr_assert_eq(kz_bitwriter_error(&w), KZ_OK);
    return (long)kz_bitwriter_finish(&w);
}

static int decode_from(const kz_snap_codec *c, const uint8_t *buf, size_t len,
                       const kz_snap_view *base, vbox *out, kz_snap_badge *badges)
{
    kz_bitreader r;
    kz_bitreader_init(&r, len ? buf : NULL, len);
    vbox_init(out);
    return kz_snap_decode(c, &r, base, &out->v, out->change, badges);
}

/* The same with an older view (second order). */
static long encode_older(const kz_snap_codec *c, const kz_snap_view *base,
                         const kz_snap_view *older, const kz_snap_view *want, size_t budget,
                         const uint16_t *prio, uint8_t *buf, size_t cap, vbox *sent,
                         kz_snap_encode_stats *st)
{
    static badge_book book;
    kz_snap_encode_args a = {.base = base, .older = older, .want = want, .priority = prio,
                             .budget_bits = budget, .badge = badge_cb, .badge_ctx = &book};
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, cap);
    vbox_init(sent);
    int rc = kz_snap_encode(c, &a, &w, &sent->v, sent->change, st);
    if (rc != KZ_OK)
        return rc;
    cr_assert_eq(kz_bitwriter_error(&w), KZ_OK);
    return (long)kz_bitwriter_finish(&w);
}

static int decode_older(const kz_snap_codec *c, const uint8_t *buf, size_t len,
                        const kz_snap_view *base, const kz_snap_view *older, vbox *out,
                        kz_snap_badge *badges)
{
    kz_bitreader r;
    kz_bitreader_init(&r, len ? buf : NULL, len);
    vbox_init(out);
    return kz_snap_decode_older(c, &r, base, older, &out->v, out->change, badges);
}

/* A view by pointer (kz_snap_view.ref) over another view's states. */
typedef struct pbox {
    kz_snap_view v;
    const kz_snap_state *ref[KZ_SNAP_MAX_SLOTS];
} pbox;

static const kz_snap_view *by_pointer(pbox *p, const kz_snap_view *src)
{
    if (src == NULL)
        return NULL;
    memset(&p->v, 0, sizeof p->v);
    p->v.tick = src->tick;
    p->v.count = src->count;
    p->v.cap = src->cap;
    p->v.slot = src->slot;
    p->v.ref = p->ref;
    for (uint32_t i = 0; i < src->count; i++)
        p->ref[i] = &src->state[i];
    return &p->v;
}

/* The encoder given every view by pointer, and asked for `sent` by
 * pointer, writes the same bits and reports the same view (as pointers to
 * the same states) as given copies. */
static void check_by_pointer(const kz_snap_codec *c, const kz_snap_view *base,
                             const kz_snap_view *older, const kz_snap_view *want, size_t budget,
                             const uint16_t *prio, const uint8_t *bits, long n,
                             const vbox *sent, const kz_snap_encode_stats *st)
{
    static pbox pb, po, pw;
    static uint16_t sslot[KZ_SNAP_MAX_SLOTS];
    static const kz_snap_state *sref[KZ_SNAP_MAX_SLOTS];
    static uint8_t change[KZ_SNAP_MAX_SLOTS], buf[KZ_SNAP_MAX_SLOTS * 64];
    static badge_book book;
    kz_snap_encode_args a = {.base = by_pointer(&pb, base), .older = by_pointer(&po, older),
                             .want = by_pointer(&pw, want), .priority = prio,
                             .budget_bits = budget, .badge = badge_cb, .badge_ctx = &book};
    kz_snap_view out = {.cap = KZ_SNAP_MAX_SLOTS, .slot = sslot, .ref = sref};
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    kz_snap_encode_stats pst;
    int rc = kz_snap_encode(c, &a, &w, &out, change, &pst);
    if (n < 0) {
        cr_assert_eq(rc, (int)n);
        return;
    }
    cr_assert_eq(rc, KZ_OK);
    cr_assert_eq((long)kz_bitwriter_finish(&w), n);
    cr_assert(memcmp(buf, bits, (size_t)n) == 0, "by pointer: other bits");
    cr_assert(memcmp(&pst, st, sizeof pst) == 0);
    cr_assert_eq(out.tick, sent->v.tick);
    cr_assert_eq(out.count, sent->v.count);
    for (uint32_t i = 0; i < out.count; i++) {
        cr_assert_eq(out.slot[i], sent->v.slot[i]);
        cr_assert(memcmp(out.ref[i], &sent->v.state[i], sizeof sent->v.state[i]) == 0);
        cr_assert_eq(change[i], sent->change[i]);
    }
}

/* ---- codec setup, quantization ------------------------------------------ */

Test(snapshot, codec_init_limits)
{
    kz_snap_codec c;
    cr_expect_eq(kz_snap_codec_init(&c, 0, 10, 100.0f), KZ_EINVAL);
    cr_expect_eq(kz_snap_codec_init(&c, KZ_SNAP_MAX_TICK_HZ + 1, 10, 100.0f), KZ_EINVAL);
    cr_expect_eq(kz_snap_codec_init(&c, 30, 0, 100.0f), KZ_EINVAL);
    cr_expect_eq(kz_snap_codec_init(&c, 30, KZ_SNAP_MAX_SLOTS + 1, 100.0f), KZ_EINVAL);
    cr_expect_eq(kz_snap_codec_init(&c, 30, 10, 0.0f), KZ_EINVAL);
    cr_expect_eq(kz_snap_codec_init(&c, 30, 10, -1.0f), KZ_EINVAL);
    cr_expect_eq(kz_snap_codec_init(&c, 30, 10, NAN), KZ_EINVAL);
    cr_expect_eq(kz_snap_codec_init(&c, 30, 10, KZ_SNAP_MAX_BOUND * 2), KZ_EINVAL);
    cr_assert_eq(kz_snap_codec_init(&c, 30, 150, 1000.0f), KZ_OK);
    cr_expect_eq(c.pos_max, 512000);
    cr_expect_eq(c.pos_bits, 20u);   /* 0 .. 1,024,000 */
    cr_expect_eq(c.slot_bits, 8u);
    cr_assert_eq(kz_snap_codec_init(&c, 30, KZ_SNAP_MAX_SLOTS, KZ_SNAP_MAX_BOUND), KZ_OK);
    cr_expect_eq(c.pos_max, 512000000);
    cr_expect_eq(c.pos_bits, 30u);
}

Test(snapshot, rest_rotation_code_is_identity)
{
    const float id[4] = {0, 0, 0, 1};
    uint64_t code;
    cr_assert_eq(kz_quat_encode(id, KZ_SNAP_ROT_K, &code), KZ_OK);
    cr_expect_eq(code, (uint64_t)KZ_SNAP_ROT_REST);

    kz_snap_codec c = make_codec(16);
    kz_avatar_state a;
    kz_snap_state s;
    kz_avatar_state_rest(&a);
    cr_assert_eq(kz_snap_quantize(&c, 5, &a, &s), KZ_OK);
    cr_expect_eq(s.kind, KZ_KIND_AVATAR);
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        cr_expect_eq(s.rot[k], KZ_SNAP_ROT_REST);
        cr_expect(s.rel[k][0] == 0 && s.rel[k][1] == 0 && s.rel[k][2] == 0);
    }
}

static double yaw_err(double a, double b)
{
    double d = fmod(fabs(a - b), 2 * PI);
    return d > PI ? 2 * PI - d : d;
}

Test(snapshot, quantize_error_bounds)
{
    kz_snap_codec c = make_codec(16);
    double rot_bound = kz_quat_max_error(KZ_SNAP_ROT_K);
    rng_seed(11);
    for (int n = 0; n < 20000; n++) {
        kz_avatar_state a, b;
        kz_avatar_state_rest(&a);
        a.kind = rng_chance(0.2) ? KZ_KIND_OBJECT : KZ_KIND_AVATAR;
        for (int i = 0; i < 3; i++) {
            a.pos[i] = rng_range(-1000.0f, 1000.0f);
            a.vel[i] = rng_range(-127.99f, 127.99f);
        }
        a.yaw = rng_range(-100.0f, 100.0f);
        a.anim = (uint16_t)rng_below(65536);
        a.flags = (uint8_t)rng_below(256);
        a.holder = (uint32_t)rng_next();
        for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
            for (int i = 0; i < 3; i++)
                a.pose[k].pos[i] = rng_range(-2.0f, 2.0f);
            random_quat(a.pose[k].rot);
        }
        kz_snap_state s;
        cr_assert_eq(kz_snap_quantize(&c, 9, &a, &s), KZ_OK);
        cr_assert_eq(kz_snap_state_check(&c, &s), KZ_OK);
        kz_snap_dequantize(&c, &s, &b);
        for (int i = 0; i < 3; i++) {
            cr_assert_leq(fabs((double)b.pos[i] - a.pos[i]),
                          1.0 / 1024 + 2.0 * FLT_EPSILON * fabs(a.pos[i]));
            cr_assert_leq(fabs((double)b.vel[i] - a.vel[i]), 1.0 / 512 + 1e-6);
        }
        cr_assert_leq(yaw_err(b.yaw, a.yaw), PI / 65536 + 1e-5);
        cr_assert(b.yaw >= 0.0f && b.yaw < (float)(2 * PI));
        for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
            double e1 = 0, e2 = 0;
            for (int i = 0; i < 3; i++)
                cr_assert_leq(fabs((double)b.pose[k].pos[i] - a.pose[k].pos[i]),
                              1.0 / 2048 + 1e-6);
            for (int i = 0; i < 4; i++) {
                e1 = fmax(e1, fabs((double)b.pose[k].rot[i] - a.pose[k].rot[i]));
                e2 = fmax(e2, fabs((double)b.pose[k].rot[i] + a.pose[k].rot[i]));
            }
            cr_assert_leq(fmin(e1, e2), rot_bound);
        }
        cr_assert(b.anim == a.anim && b.flags == a.flags && b.kind == a.kind &&
                  b.holder == a.holder);
    }
}

Test(snapshot, yaw_wraps)
{
    kz_snap_codec c = make_codec(16);
    kz_avatar_state a;
    kz_snap_state s;
    kz_avatar_state_rest(&a);
    const struct {
        float yaw;
        uint16_t code;
    } cases[] = {
        {0.0f, 0},
        {(float)PI, 32768},
        {(float)(-PI / 2), 49152},
        {(float)(2 * PI), 0},
        {(float)(4 * PI + PI / 2), 16384},
        {-1e-9f, 0},            /* rounds up to a full turn, which is 0 */
        {(float)(2 * PI) - 1e-6f, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        a.yaw = cases[i].yaw;
        cr_assert_eq(kz_snap_quantize(&c, 1, &a, &s), KZ_OK);
        cr_expect_eq(s.yaw, cases[i].code, "yaw %g -> %u, want %u", (double)cases[i].yaw, s.yaw,
                     cases[i].code);
    }
}

Test(snapshot, quantize_refuses_bad_input_and_writes_nothing)
{
    kz_snap_codec c = make_codec(16);
    kz_avatar_state good;
    kz_avatar_state_rest(&good);
    good.pos[0] = 999.0f;
    kz_snap_state s, sentinel;
    memset(&sentinel, 0xa5, sizeof sentinel);
#define EXPECT_RC(field_set, want)                                       \
    do {                                                                 \
        kz_avatar_state a = good;                                        \
        field_set;                                                       \
        s = sentinel;                                                    \
        cr_expect_eq(kz_snap_quantize(&c, 3, &a, &s), want, #field_set); \
        cr_expect(memcmp(&s, &sentinel, sizeof s) == 0, #field_set);     \
    } while (0)
    EXPECT_RC(a.pos[1] = NAN, KZ_ENOTFINITE);
    EXPECT_RC(a.vel[2] = INFINITY, KZ_ENOTFINITE);
    EXPECT_RC(a.yaw = -INFINITY, KZ_ENOTFINITE);
    EXPECT_RC(a.pose[2].pos[0] = NAN, KZ_ENOTFINITE);
    EXPECT_RC(a.pose[1].rot[3] = NAN, KZ_ENOTFINITE);
    EXPECT_RC(a.pos[0] = 1000.01f, KZ_ERANGE);
    EXPECT_RC(a.pos[2] = -1001.0f, KZ_ERANGE);
    EXPECT_RC(a.vel[0] = 128.0f, KZ_ERANGE);
    EXPECT_RC(a.vel[1] = -128.0f, KZ_ERANGE);
    EXPECT_RC(a.pose[0].pos[1] = 2.001f, KZ_ERANGE);
    EXPECT_RC(a.pose[1].rot[3] = 0.9f, KZ_EINVAL);
    EXPECT_RC(a.kind = 0, KZ_EINVAL);
    EXPECT_RC(a.kind = 3, KZ_EINVAL);
#undef EXPECT_RC
    s = sentinel;
    cr_expect_eq(kz_snap_quantize(&c, 0, &good, &s), KZ_EINVAL);
    /* The edges are inside. */
    kz_avatar_state a = good;
    a.pos[0] = 1000.0f;
    a.pos[1] = -1000.0f;
    a.vel[0] = 127.999f;
    a.vel[1] = -127.999f;
    a.pose[0].pos[2] = -2.0f;
    cr_assert_eq(kz_snap_quantize(&c, 3, &a, &s), KZ_OK);
    cr_expect_eq(s.pos[0], 512000);
    cr_expect_eq(s.pos[1], -512000);
    cr_expect_eq(s.vel[0], 32767);
    cr_expect_eq(s.vel[1], -32767);
    cr_expect_eq(s.rel[0][2], -2048);
}

Test(snapshot, dequantize_clamps_hostile_codes)
{
    kz_snap_codec c = make_codec(16);
    rng_seed(12);
    for (int n = 0; n < 5000; n++) {
        kz_snap_state s;
        uint8_t *p = (uint8_t *)&s;
        for (size_t i = 0; i < sizeof s; i++)
            p[i] = (uint8_t)rng_next();
        kz_avatar_state a;
        kz_snap_dequantize(&c, &s, &a);
        for (int i = 0; i < 3; i++) {
            cr_assert(isfinite(a.pos[i]) && fabsf(a.pos[i]) <= 1000.0f);
            cr_assert(isfinite(a.vel[i]) && fabsf(a.vel[i]) < 128.0f);
        }
        cr_assert(a.yaw >= 0.0f && a.yaw < 6.2832f);
        for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
            double n2 = 0;
            for (int i = 0; i < 3; i++)
                cr_assert(fabsf(a.pose[k].pos[i]) <= 2.0f);
            for (int i = 0; i < 4; i++) {
                cr_assert(isfinite(a.pose[k].rot[i]));
                n2 += (double)a.pose[k].rot[i] * a.pose[k].rot[i];
            }
            cr_assert(fabs(n2 - 1.0) < 1e-5);
        }
    }
}

Test(snapshot, state_check)
{
    kz_snap_codec c = make_codec(16);
    kz_snap_state s;
    rng_seed(13);
    random_state(&c, 4, &s);
    cr_assert_eq(kz_snap_state_check(&c, &s), KZ_OK);
    kz_snap_state t = s;
    t.entity = 0;
    cr_expect_eq(kz_snap_state_check(&c, &t), KZ_EINVAL);
    t = s;
    t.kind = 0;
    cr_expect_eq(kz_snap_state_check(&c, &t), KZ_EINVAL);
    t = s;
    t.pad = 1;
    cr_expect_eq(kz_snap_state_check(&c, &t), KZ_EINVAL);
    t = s;
    t.pos[1] = c.pos_max + 1;
    cr_expect_eq(kz_snap_state_check(&c, &t), KZ_EINVAL);
    t = s;
    t.vel[2] = INT16_MIN;
    cr_expect_eq(kz_snap_state_check(&c, &t), KZ_EINVAL);
    t = s;
    t.rel[1][0] = -2049;
    cr_expect_eq(kz_snap_state_check(&c, &t), KZ_EINVAL);
    t = s;
    t.rot[2] |= 1023u << 10;   /* 2^k - 1 is not a grid code */
    cr_expect_eq(kz_snap_state_check(&c, &t), KZ_EINVAL);
}

/* ---- known answer -------------------------------------------------------- */

/* An independent writer of the documented primitives. */
static void tw(kz_bitwriter *w, uint64_t v, unsigned n)
{
    cr_assert_eq(kz_bitwriter_write(w, v, n), KZ_OK);
}

static void tw_ueg(kz_bitwriter *w, uint64_t v, unsigned k)
{
    uint64_t x = v + ((uint64_t)1 << k);
    unsigned n = 0;
    while ((x >> (n + 1)) != 0)
        n++;
    for (unsigned i = k; i < n; i++)
        tw(w, 1, 1);
    tw(w, 0, 1);
    for (unsigned i = 0; i < n; i++)
        tw(w, (x >> i) & 1, 1);
}

static void tw_seg(kz_bitwriter *w, int64_t v, unsigned k)
{
    tw_ueg(w, v >= 0 ? (uint64_t)v * 2 : (uint64_t)(-v) * 2 - 1, k);
}

Test(snapshot, known_answer_bodies)
{
    kz_snap_codec c = make_codec(150);
    /* Tick 1000, full state, one desktop avatar entering slot 2 with no
     * badge (entity 7 % 7 == 0). */
    vbox want, sent, out;
    vbox_init(&want);
    want.v.tick = 1000;
    want.v.count = 1;
    want.slot[0] = 2;
    kz_snap_state *s = &want.st[0];
    memset(s, 0, sizeof *s);
    s->entity = 7;
    s->kind = KZ_KIND_AVATAR;
    s->pos[0] = 512;      /* 1 m */
    s->pos[1] = 0;
    s->pos[2] = -1024;    /* -2 m */
    s->yaw = 16384;
    s->flags = 0;
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++)
        s->rot[k] = KZ_SNAP_ROT_REST;
    uint8_t got[256], ref[256];
    long n = encode_into(&c, NULL, &want.v, 100000, NULL, got, sizeof got, &sent, NULL);
    cr_assert_gt(n, 0);

    kz_bitwriter w;
    kz_bitwriter_init(&w, ref, sizeof ref);
    tw(&w, 1000, 32);         /* tick */
    tw_ueg(&w, 0, 2);         /* full state */
    tw_ueg(&w, 1, 0);         /* one record */
    tw_ueg(&w, 2, 0);         /* slot 2 (gap 2 from -1) */
    /* empty slot in the baseline: an enter, no type bits */
    tw(&w, 7, 32);            /* entity */
    tw(&w, 0, 1);             /* avatar */
    tw(&w, 512 + 512000, 20);
    tw(&w, 0 + 512000, 20);
    tw(&w, (uint64_t)(-1024 + 512000), 20);
    tw(&w, 0, 1);             /* not moving */
    tw(&w, 16384, 16);        /* yaw */
    tw(&w, 0, 1);             /* no anim */
    tw(&w, 0, 8);             /* flags */
    tw(&w, 0, 1);             /* no holder */
    tw(&w, 0, 1);             /* not VR and poses at rest: none */
    tw(&w, 0, 1);             /* no badge */
    size_t rn = kz_bitwriter_finish(&w);
    cr_assert_eq((size_t)n, rn);
    cr_assert(memcmp(got, ref, rn) == 0);

    /* Tick 1001 against it: the avatar turned by +100 units and its
     * head came up (not VR: the X bit of the misc group). */
    vbox base;
    vbox_copy(&base, &sent.v);
    want.v.tick = 1001;
    s->yaw = 16484;
    s->rel[0][1] = 1600;
    n = encode_into(&c, &base.v, &want.v, 100000, NULL, got, sizeof got, &sent, NULL);
    cr_assert_gt(n, 0);
    kz_bitwriter_init(&w, ref, sizeof ref);
    tw(&w, 1001, 32);
    tw_ueg(&w, 1, 2);         /* baseline 1000 */
    tw(&w, 0, 1);             /* no older view: first order */
    tw_ueg(&w, 1, 0);         /* one record */
    tw_ueg(&w, 2, 0);         /* slot 2 */
    tw(&w, 0, 1);             /* occupied slot: 0 = update */
    tw(&w, 0, 1);             /* position as predicted (velocity 0) */
    tw(&w, 1, 1);             /* yaw changed */
    tw_seg(&w, 100, 6);
    tw(&w, 0, 1);             /* velocity as predicted (turned zero) */
    tw(&w, 1, 1);             /* misc group */
    tw(&w, 0, 1);             /* anim same */
    tw(&w, 0, 1);             /* flags same */
    tw(&w, 0, 1);             /* holder same */
    tw(&w, 1, 1);             /* X: poses follow */
    tw(&w, 1, 1);             /* poses changed */
    tw(&w, 1, 1);             /* per-field form (shorter here) */
    tw(&w, 1, 1);             /* head offset changed */
    tw_seg(&w, 0, 1);
    tw_seg(&w, 1600, 1);
    tw_seg(&w, 0, 1);
    tw(&w, 0, 1);             /* head rotation same */
    tw(&w, 0, 1);             /* left hand offset same */
    tw(&w, 0, 1);             /* left hand rotation same */
    tw(&w, 0, 1);
    tw(&w, 0, 1);
    rn = kz_bitwriter_finish(&w);
    cr_assert_eq((size_t)n, rn);
    cr_assert(memcmp(got, ref, rn) == 0);
    cr_assert_eq(decode_from(&c, got, (size_t)n, &base.v, &out, NULL), KZ_OK);
    cr_assert(views_equal(&out.v, &want.v));
}

Test(snapshot, at_rest_costs_nothing)
{
    kz_snap_codec c = make_codec(150);
    vbox want, sent, out;
    vbox_init(&want);
    want.v.tick = 50;
    rng_seed(14);
    for (uint32_t i = 0; i < 150; i++) {
        want.slot[i] = (uint16_t)i;
        random_state(&c, 100 + i, &want.st[i]);
    }
    want.v.count = 150;
    uint8_t buf[32768];
    long n = encode_into(&c, NULL, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, NULL);
    cr_assert_gt(n, 0);
    vbox base;
    vbox_copy(&base, &sent.v);
    want.v.tick = 51;
    kz_snap_encode_stats st;
    n = encode_into(&c, &base.v, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, &st);
    /* 32 tick bits, 3 for "one tick back", 1 for "no older view", 1 for
     * "no records". */
    cr_assert_eq(n, 5);
    cr_expect_eq(st.same, 150u);
    cr_expect_eq(st.updates + st.enters + st.leaves + st.deferred, 0u);
    cr_assert_eq(decode_from(&c, buf, (size_t)n, &base.v, &out, NULL), KZ_OK);
    cr_assert(views_equal(&out.v, &want.v));
}

/* ---- simulation ------------------------------------------------------------ */

#define SIM_SLOTS 150u
#define SIM_ENTITIES 220u
#define SIM_HIST 32u

typedef struct sim_ent {
    kz_snap_state s;
    int visible;
    uint16_t slot;
    int smooth;                          /* poses move at a steady rate */
    int16_t pv[KZ_POSE_COUNT][4];        /* per tick: offset x, y, z, first component */
} sim_ent;

typedef struct sim {
    kz_snap_codec c;
    sim_ent ent[SIM_ENTITIES + 1];
    int32_t slot_owner[SIM_SLOTS];    /* entity or 0 */
    vbox server_hist[SIM_HIST];
    vbox client_hist[SIM_HIST];
    vbox want, sent, out;
    kz_snap_badge badges[SIM_SLOTS];
    /* Entities whose badge the client has received (it keeps them by
     * entity: an update may be against a baseline older than a view in
     * which the entity had left). */
    uint8_t client_has_badge[SIM_ENTITIES + 1];
    uint32_t acked;                    /* newest tick the server knows acked, 0 none */
    uint32_t acked_prev;               /* the acked tick before it, 0 none */
    int second_order;                  /* the server passes an older view */
    uint32_t n_second;                 /* bodies that named one */
    uint32_t pending_ack[8], pending_at[8];
    uint32_t client_tick;              /* newest tick decoded */
    uint8_t buf[65536];
} sim;

static void clamp_pos(const kz_snap_codec *c, int32_t *p)
{
    if (*p > c->pos_max)
        *p = c->pos_max;
    if (*p < -c->pos_max)
        *p = -c->pos_max;
}

static int16_t clamp_i16(int32_t v, int32_t lim)
{
    return (int16_t)(v > lim ? lim : v < -lim ? -lim : v);
}

static uint32_t nudge_rot(uint32_t code, int32_t amount)
{
    uint32_t out = code & ~((1u << 30) - 1u);
    for (unsigned j = 0; j < 3; j++) {
        int32_t v = (int32_t)((code >> (10 * j)) & 1023u) + rng_span(-amount, amount);
        v = v < 0 ? 0 : v > 1022 ? 1022 : v;
        out |= (uint32_t)v << (10 * j);
    }
    return out;
}

static void sim_spawn(sim *m, uint32_t id)
{
    kz_snap_state *s = &m->ent[id].s;
    random_state(&m->c, id, s);
    m->ent[id].smooth = rng_chance(0.5);
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++)
        for (int i = 0; i < 4; i++)
            m->ent[id].pv[k][i] = (int16_t)rng_span(-25, 25);
    /* Mostly a crowd within 200 m, with plain desktop avatars. */
    for (int i = 0; i < 3; i++)
        s->pos[i] = rng_span(-100000, 100000);
    s->flags = rng_chance(0.3) ? KZ_AVATAR_VR : 0;
    s->holder = s->kind == KZ_KIND_OBJECT && rng_chance(0.3) ? rng_below(50) + 1 : 0;
    if (s->kind == KZ_KIND_AVATAR)
        s->holder = 0;
    if (!(s->flags & KZ_AVATAR_VR) && rng_chance(0.7)) {
        memset(s->rel, 0, sizeof s->rel);
        for (uint32_t k = 0; k < KZ_POSE_COUNT; k++)
            s->rot[k] = KZ_SNAP_ROT_REST;
    }
}

static void sim_move(sim *m, sim_ent *e)
{
    kz_snap_state *s = &e->s;
    if (rng_chance(0.35))
        return;   /* at rest */
    const kz_snap_codec *c = &m->c;
    for (int i = 0; i < 3; i++) {
        if (rng_chance(0.3))
            s->vel[i] = clamp_i16(s->vel[i] + rng_span(-40, 40), 32767);
        s->pos[i] += (int32_t)(2 * s->vel[i] / 30) + rng_span(-3, 3);
        clamp_pos(c, &s->pos[i]);
    }
    if (rng_chance(0.6))
        s->yaw = (uint16_t)(s->yaw + rng_span(-400, 400));
    if (rng_chance(0.03))
        s->anim = (uint16_t)rng_below(65536);
    if (rng_chance(0.02))
        s->flags ^= KZ_AVATAR_VR;
    if (rng_chance(0.01))
        s->flags ^= KZ_AVATAR_SPEAKING;
    if (rng_chance(0.01))
        for (int i = 0; i < 3; i++)
            s->pos[i] = rng_span(-c->pos_max, c->pos_max);   /* teleport */
    if (s->kind == KZ_KIND_OBJECT && rng_chance(0.05))
        s->holder = rng_chance(0.5) ? 0 : rng_below(300) + 1;
    int vr = (s->flags & KZ_AVATAR_VR) || s->kind == KZ_KIND_OBJECT;
    for (uint32_t k = 0; k < KZ_POSE_COUNT && vr && e->smooth; k++) {
        /* Steady motion, turning back at the limits (so predictions run
         * into the clamps there). */
        for (int i = 0; i < 3; i++) {
            int32_t v = s->rel[k][i] + e->pv[k][i];
            if (v > KZ_SNAP_REL_MAX || v < -KZ_SNAP_REL_MAX)
                e->pv[k][i] = (int16_t)-e->pv[k][i];
            s->rel[k][i] = clamp_i16(v, KZ_SNAP_REL_MAX);
        }
        int32_t c0 = (int32_t)((s->rot[k] >> 20) & 1023u) + e->pv[k][3];
        if (c0 > 1022 || c0 < 0)
            e->pv[k][3] = (int16_t)-e->pv[k][3];
        c0 = c0 < 0 ? 0 : c0 > 1022 ? 1022 : c0;
        s->rot[k] = (s->rot[k] & ~(1023u << 20)) | (uint32_t)c0 << 20;
    }
    for (uint32_t k = 0; k < KZ_POSE_COUNT && vr && !e->smooth; k++) {
        if (rng_chance(0.7))
            for (int i = 0; i < 3; i++)
                s->rel[k][i] = clamp_i16(s->rel[k][i] + rng_span(-30, 30), KZ_SNAP_REL_MAX);
        if (rng_chance(0.7))
            s->rot[k] = nudge_rot(s->rot[k], 12);
        if (rng_chance(0.02))
            s->rot[k] = random_rot();
    }
    if (!(s->flags & KZ_AVATAR_VR) && rng_chance(0.02)) {
        /* Desktop avatars: poses back to rest, or a head offset. */
        memset(s->rel, 0, sizeof s->rel);
        for (uint32_t k = 0; k < KZ_POSE_COUNT; k++)
            s->rot[k] = KZ_SNAP_ROT_REST;
        if (rng_chance(0.5))
            s->rel[0][1] = 1600;
    }
}

static void sim_churn(sim *m, double leave_p, double enter_p)
{
    for (uint32_t id = 1; id <= SIM_ENTITIES; id++) {
        sim_ent *e = &m->ent[id];
        if (e->visible && rng_chance(leave_p)) {
            e->visible = 0;
            m->slot_owner[e->slot] = 0;
        }
    }
    for (uint32_t id = 1; id <= SIM_ENTITIES; id++) {
        sim_ent *e = &m->ent[id];
        if (e->visible || !rng_chance(enter_p))
            continue;
        uint32_t start = rng_below(SIM_SLOTS);
        for (uint32_t k = 0; k < SIM_SLOTS; k++) {
            uint32_t s = (start + k) % SIM_SLOTS;
            if (m->slot_owner[s] == 0) {
                m->slot_owner[s] = (int32_t)id;
                e->visible = 1;
                e->slot = (uint16_t)s;
                if (rng_chance(0.3))
                    sim_spawn(m, id);
                break;
            }
        }
    }
}

static void sim_build_want(sim *m, uint32_t tick)
{
    vbox_init(&m->want);
    m->want.v.tick = tick;
    for (uint32_t s = 0; s < SIM_SLOTS; s++) {
        if (m->slot_owner[s] == 0)
            continue;
        m->want.slot[m->want.v.count] = (uint16_t)s;
        m->want.st[m->want.v.count] = m->ent[m->slot_owner[s]].s;
        m->want.v.count++;
    }
}

static const vbox *find_hist(const vbox *hist, uint32_t tick)
{
    const vbox *h = &hist[tick % SIM_HIST];
    return tick != 0 && h->v.tick == tick && h->v.slot == h->slot ? h : NULL;
}

/* Field by field: kz_snap_badge ends in padding, which a struct copy need
 * not keep. The strings compare whole, as the decoder zero-fills them. */
static int badge_equal(const kz_snap_badge *a, const kz_snap_badge *b)
{
    return a->verification_level == b->verification_level && a->actor_kind == b->actor_kind &&
           memcmp(a->reserved, b->reserved, sizeof a->reserved) == 0 &&
           a->acting_for == b->acting_for &&
           memcmp(a->method, b->method, sizeof a->method) == 0 &&
           memcmp(a->name, b->name, sizeof a->name) == 0;
}

/* Every decoded slot entering must carry the entity's badge. */
static void check_badges(sim *m, const vbox *out)
{
    for (uint32_t i = 0; i < out->v.count; i++) {
        uint16_t slot = out->slot[i];
        if (out->change[i] != KZ_SNAP_ENTER) {
            cr_assert(m->client_has_badge[out->st[i].entity], "no badge for %u",
                      out->st[i].entity);
            continue;
        }
        uint32_t id = out->st[i].entity;
        kz_snap_badge ref;
        if (id % 7 == 0)
            memset(&ref, 0, sizeof ref);
        else
            make_badge(id, &ref);
        cr_assert(badge_equal(&ref, &m->badges[slot]), "badge of %u", id);
        m->client_has_badge[id] = 1;
    }
}

/* One tick of the protocol. Returns 1 if a packet went out. */
static int sim_tick(sim *m, uint32_t tick, double loss, int unlimited, int lag_max)
{
    /* Acks that arrive now. */
    for (int i = 0; i < 8; i++) {
        if (m->pending_ack[i] != 0 && m->pending_at[i] == tick) {
            uint32_t t = m->pending_ack[i];
            if (m->acked == 0 || (int32_t)(t - m->acked) > 0) {
                m->acked_prev = m->acked;
                m->acked = t;
            }
            m->pending_ack[i] = 0;
        }
    }
    sim_build_want(m, tick);
    const vbox *base = NULL;
    if (m->acked != 0 && tick - m->acked < SIM_HIST && !rng_chance(0.03))
        base = find_hist(m->server_hist, m->acked);
    /* The older view: the acknowledged tick before the baseline's, which
     * the client still holds while it is within the history. */
    const vbox *older = NULL;
    if (m->second_order && base != NULL && m->acked_prev != 0 &&
        tick - m->acked_prev < SIM_HIST && !rng_chance(0.05))
        older = find_hist(m->server_hist, m->acked_prev);
    size_t budget = unlimited ? SIZE_MAX
                    : rng_chance(0.3) ? rng_below(64)
                    : rng_chance(0.5) ? rng_below(3000) : 3000 + rng_below(30000);
    uint16_t prio[SIM_SLOTS];
    const uint16_t *pp = NULL;
    if (rng_chance(0.7)) {
        for (uint32_t i = 0; i < m->want.v.count; i++)
            prio[i] = (uint16_t)i;
        for (uint32_t i = m->want.v.count; i > 1; i--) {
            uint32_t j = rng_below(i);
            uint16_t t = prio[i - 1];
            prio[i - 1] = prio[j];
            prio[j] = t;
        }
        pp = prio;
    }
    kz_snap_encode_stats st;
    long n = encode_older(&m->c, base ? &base->v : NULL, older ? &older->v : NULL, &m->want.v,
                          budget, pp, m->buf, sizeof m->buf, &m->sent, &st);
    check_by_pointer(&m->c, base ? &base->v : NULL, older ? &older->v : NULL, &m->want.v, budget,
                     pp, m->buf, n, &m->sent, &st);
    if (n == KZ_EOVERFLOW) {
        cr_assert(!unlimited);
        return 0;
    }
    cr_assert_gt(n, 0, "encode failed: %ld", n);
    cr_assert_leq((size_t)n * 8 - 7, budget);
    cr_assert_eq(m->sent.v.tick, tick);
    if (unlimited)
        cr_assert(views_equal(&m->sent.v, &m->want.v), "unlimited budget must send want");
    cr_assert_eq(st.same + st.updates + st.enters + st.deferred, m->want.v.count);
    vbox_copy(&m->server_hist[tick % SIM_HIST], &m->sent.v);

    if (rng_chance(loss))
        return 1;
    /* The client: peek, find its copy of the baseline, decode. */
    kz_bitreader r;
    kz_bitreader_init(&r, m->buf, (size_t)n);
    uint32_t t, bt, ot;
    cr_assert_eq(kz_snap_peek(&m->c, &r, &t, &bt), KZ_OK);
    cr_assert_eq(kz_snap_peek_older(&m->c, &r, &ot), KZ_OK);
    cr_assert_eq(t, tick);
    /* An empty baseline is sent as full state; an empty older view, or
     * one with a full state, is not named. */
    cr_assert_eq(bt, base && base->v.count > 0 ? base->v.tick : 0u);
    cr_assert_eq(ot, bt && older && older->v.count > 0 ? older->v.tick : 0u);
    m->n_second += ot != 0;
    const vbox *cbase = bt ? find_hist(m->client_hist, bt) : NULL;
    const vbox *colder = ot ? find_hist(m->client_hist, ot) : NULL;
    cr_assert(bt == 0 || cbase != NULL, "client lost baseline %u", bt);
    cr_assert(ot == 0 || colder != NULL, "client lost older view %u", ot);
    if (cbase != NULL && rng_chance(0.1)) {
        /* The wrong baseline is refused. */
        vbox wrong;
        vbox_copy(&wrong, &cbase->v);
        wrong.v.tick++;
        cr_assert_eq(decode_older(&m->c, m->buf, (size_t)n, &wrong.v, colder ? &colder->v : NULL,
                                  &m->out, NULL), KZ_EPROTO);
        if (bt != 0)
            cr_assert_eq(decode_from(&m->c, m->buf, (size_t)n, NULL, &m->out, NULL), KZ_EPROTO);
    }
    if (colder != NULL && rng_chance(0.1)) {
        /* So are a wrong older view and none. */
        vbox wrong;
        vbox_copy(&wrong, &colder->v);
        wrong.v.tick--;
        cr_assert_eq(decode_older(&m->c, m->buf, (size_t)n, &cbase->v, &wrong.v, &m->out, NULL),
                     KZ_EPROTO);
        cr_assert_eq(decode_from(&m->c, m->buf, (size_t)n, &cbase->v, &m->out, NULL), KZ_EPROTO);
    }
    /* A body that names no older view ignores one given. */
    const vbox *stray = ot == 0 && rng_chance(0.2) ? find_hist(m->client_hist, m->client_tick)
                                                  : colder;
    cr_assert_eq(decode_older(&m->c, m->buf, (size_t)n, cbase ? &cbase->v : NULL,
                              stray ? &stray->v : NULL, &m->out, m->badges), KZ_OK);
    cr_assert(views_equal(&m->out.v, &m->sent.v), "decoded view differs from sent at %u", tick);
    cr_assert(memcmp(m->out.change, m->sent.change, m->out.v.count) == 0);
    for (uint32_t i = 0; i < m->out.v.count; i++)
        cr_assert_eq(kz_snap_state_check(&m->c, &m->out.st[i]), KZ_OK);
    check_badges(m, &m->out);
    vbox_copy(&m->client_hist[tick % SIM_HIST], &m->out.v);
    m->client_tick = tick;
    /* The ack travels back, maybe. */
    if (!rng_chance(loss)) {
        for (int i = 0; i < 8; i++) {
            if (m->pending_ack[i] == 0) {
                m->pending_ack[i] = tick;
                m->pending_at[i] = tick + 1 + rng_below((uint32_t)lag_max + 1);
                if (m->pending_at[i] == 0)
                    m->pending_at[i] = 1;
                break;
            }
        }
    }
    return 1;
}

static void run_sim(uint64_t seed, uint32_t start_tick, int second_order)
{
    sim *m = calloc(1, sizeof *m);
    cr_assert(m != NULL);
    rng_seed(seed);
    m->c = make_codec(SIM_SLOTS);
    m->second_order = second_order;
    for (uint32_t id = 1; id <= SIM_ENTITIES; id++)
        sim_spawn(m, id);
    uint32_t tick = start_tick;
    for (int n = 0; n < 220; n++, tick++) {
        if (tick == 0)
            tick = 1;
        /* Phases: calm, a loss burst (baselines fall out of history),
         * heavy churn. */
        double loss = n >= 60 && n < 90 ? 0.9 : 0.2;
        double churn = n >= 120 && n < 150 ? 0.2 : 0.03;
        sim_churn(m, churn, churn * 1.5);
        for (uint32_t id = 1; id <= SIM_ENTITIES; id++)
            sim_move(m, &m->ent[id]);
        sim_tick(m, tick, loss, rng_chance(0.2), 5);
    }
    /* A good network: the client must converge to what it should see,
     * entering and leaving included. */
    for (int n = 0; n < 40; n++, tick++) {
        if (tick == 0)
            tick = 1;
        sim_tick(m, tick, 0.0, n > 10, 0);
    }
    cr_assert(views_equal(&m->out.v, &m->want.v), "client did not converge");
    /* Second order was exercised (about half the bodies name an older
     * view: lossy phases leave the client one acknowledged view only). */
    if (second_order)
        cr_assert_gt(m->n_second, 60u, "bodies with an older view: %u", m->n_second);
    else
        cr_assert_eq(m->n_second, 0u);
    free(m);
}

Test(snapshot, simulation_seed1)
{
    run_sim(1, 1, 0);
}

Test(snapshot, simulation_seed2)
{
    run_sim(2, 1000, 0);
}

Test(snapshot, simulation_seed3_tick_wrap)
{
    run_sim(3, 0xffffff80u, 0);
}

Test(snapshot, simulation_seed4)
{
    run_sim(4, 77, 0);
}

/* The same protocol with the server passing the acknowledged view before
 * the baseline: every body decodes to exactly the view sent, through
 * losses, budgets, churn, poses running into their limits and tick wrap. */
Test(snapshot, simulation_second_order_seed1)
{
    run_sim(1, 1, 1);
}

Test(snapshot, simulation_second_order_seed2)
{
    run_sim(2, 1000, 1);
}

Test(snapshot, simulation_second_order_seed3_tick_wrap)
{
    run_sim(3, 0xffffff80u, 1);
}

Test(snapshot, simulation_second_order_seed4)
{
    run_sim(5, 77, 1);
}

/* ---- budget ----------------------------------------------------------------- */

static void fill_moving(const kz_snap_codec *c, vbox *v, uint32_t tick, uint32_t n, uint64_t seed)
{
    rng_seed(seed);
    vbox_init(v);
    v->v.tick = tick;
    for (uint32_t i = 0; i < n; i++) {
        v->slot[i] = (uint16_t)(i * 2);
        random_state(c, 1 + i, &v->st[i]);
    }
    v->v.count = n;
}

Test(snapshot, budget_priority_and_overflow)
{
    kz_snap_codec c = make_codec(150);
    vbox base, want, sent, out;
    uint8_t buf[16384];
    fill_moving(&c, &want, 10, 40, 21);
    long n = encode_into(&c, NULL, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, NULL);
    cr_assert_gt(n, 0);
    vbox_copy(&base, &sent.v);
    /* Every entity turns by the same amount (at zero velocity, so every
     * update costs the same); one leaves (slot 78 dropped). */
    for (uint32_t i = 0; i < 40; i++) {
        memset(want.st[i].vel, 0, sizeof want.st[i].vel);
        want.st[i].flags = KZ_AVATAR_VR;
    }
    n = encode_into(&c, NULL, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, NULL);
    vbox_copy(&base, &sent.v);
    want.v.tick = 11;
    for (uint32_t i = 0; i < 40; i++)
        want.st[i].yaw = (uint16_t)(want.st[i].yaw + 1000);
    want.v.count = 39;

    /* Header (32 + 3) + count + the leave: anything smaller overflows and
     * leaves the writer untouched. */
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    kz_bitwriter before = w;
    kz_snap_encode_args a = {.base = &base.v, .want = &want.v, .budget_bits = 36};
    vbox_init(&sent);
    cr_assert_eq(kz_snap_encode(&c, &a, &w, &sent.v, sent.change, NULL), KZ_EOVERFLOW);
    /* Field by field: kz_bitwriter ends in padding. */
    cr_assert(w.buf == before.buf && w.cap == before.cap && w.limit == before.limit &&
              w.bits == before.bits && w.acc == before.acc && w.err == before.err);

    /* Room for the leave and exactly one update: the first in priority. */
    uint16_t prio[39];
    for (uint32_t i = 0; i < 39; i++)
        prio[i] = (uint16_t)(38 - i);
    /* The size of the body with the leave and entry 38's update alone. */
    vbox only;
    vbox_copy(&only, &base.v);
    only.v.tick = 11;
    only.st[38] = want.st[38];
    only.v.count = 39;
    kz_snap_encode_args oa = {.base = &base.v, .want = &only.v, .budget_bits = SIZE_MAX};
    kz_bitwriter ow;
    kz_bitwriter_init(&ow, buf, sizeof buf);
    vbox_init(&sent);
    cr_assert_eq(kz_snap_encode(&c, &oa, &ow, &sent.v, NULL, NULL), KZ_OK);
    size_t first_fits = kz_bitwriter_bits(&ow);
    kz_snap_encode_stats st;
    for (size_t budget = 40; budget < 200; budget++) {
        n = encode_into(&c, &base.v, &want.v, budget, prio, buf, sizeof buf, &sent, &st);
        if (n < 0) {
            cr_assert_eq(n, KZ_EOVERFLOW);
            continue;
        }
        cr_assert_leq((size_t)n * 8 - 7, budget);
        cr_assert_eq(st.leaves, 1u);
        /* The first in priority is taken whenever it fits alone; others
         * (cheaper: a smaller gap) may be taken at budgets where it does
         * not. */
        if (budget >= first_fits)
            cr_assert_eq(sent.change[38], KZ_SNAP_UPDATE, "budget %zu", budget);
        else
            cr_assert_eq(sent.change[38], KZ_SNAP_SAME, "budget %zu", budget);
        cr_assert_eq(decode_from(&c, buf, (size_t)n, &base.v, &out, NULL), KZ_OK);
        cr_assert(views_equal(&out.v, &sent.v));
    }
    /* The exact size of the full body is enough, one bit less is not. */
    n = encode_into(&c, &base.v, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, &st);
    kz_bitwriter_init(&w, buf, sizeof buf);
    vbox_init(&sent);
    a.budget_bits = SIZE_MAX;
    cr_assert_eq(kz_snap_encode(&c, &a, &w, &sent.v, NULL, NULL), KZ_OK);
    size_t full_bits = kz_bitwriter_bits(&w);
    n = encode_into(&c, &base.v, &want.v, full_bits, NULL, buf, sizeof buf, &sent, &st);
    cr_assert_eq(st.deferred, 0u);
    n = encode_into(&c, &base.v, &want.v, full_bits - 1, NULL, buf, sizeof buf, &sent, &st);
    cr_assert_gt(st.deferred, 0u);
}

/* Encodes want against a server baseline with unknown entries into buf;
 * returns the body length in bytes (or a negative error). */
static long encode_unknown(const kz_snap_codec *c, const kz_snap_view *base,
                           const uint8_t *unknown, const kz_snap_view *want, size_t budget,
                           uint8_t *buf, size_t cap, vbox *sent, kz_snap_encode_stats *st)
{
    static badge_book book;
    kz_snap_encode_args a = {.base = base, .base_unknown = unknown, .want = want,
                             .budget_bits = budget, .badge = badge_cb, .badge_ctx = &book};
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, cap);
    vbox_init(sent);
    int rc = kz_snap_encode(c, &a, &w, &sent->v, sent->change, st);
    if (rc != KZ_OK)
        return rc;
    return (long)kz_bitwriter_finish(&w);
}

/* A baseline entry whose state the server no longer has (base_unknown) is
 * renewed by an enter in place, and is kept, never left, when the renew
 * does not fit; one whose slot now holds another entity is replaced as
 * usual (its leave goes out even when the enter does not fit). */
Test(snapshot, unknown_baseline_entries_are_renewed_or_kept_never_left)
{
    kz_snap_codec c = make_codec(150);
    vbox held, server, want, sent, out;
    uint8_t buf[16384], unknown[KZ_SNAP_MAX_SLOTS] = {0};
    /* The client holds 10 entities (slots 0, 2, .. 18) as of tick 10. */
    fill_moving(&c, &held, 10, 10, 31);
    /* Tick 11: every one has moved, and slot 16 holds another entity. */
    fill_moving(&c, &want, 11, 10, 32);
    want.st[8].entity = 100;
    /* The server lost the states of entries 3, 6 and 8 (slots 6, 12, 16):
     * only entity and kind are left. Entry 4, after 3, is known. */
    vbox_copy(&server, &held.v);
    const uint32_t lost[3] = {3, 6, 8};
    for (uint32_t k = 0; k < 3; k++) {
        kz_snap_state *s = &server.st[lost[k]];
        kz_snap_state keep = {.entity = s->entity, .kind = s->kind};
        *s = keep;
        unknown[lost[k]] = 1;
    }
    /* Entries 3 and 6 are the entities the client holds, of their kind
     * (the two seeds draw kinds independently). */
    want.st[3].kind = held.st[3].kind;
    want.st[6].kind = held.st[6].kind;

    /* Room for everything: the client ends with want exactly. */
    kz_snap_encode_stats st;
    long n = encode_unknown(&c, &server.v, unknown, &want.v, SIZE_MAX, buf, sizeof buf, &sent,
                            &st);
    cr_assert_gt(n, 0);
    cr_assert_eq(decode_from(&c, buf, (size_t)n, &held.v, &out, NULL), KZ_OK);
    cr_assert(views_equal(&out.v, &want.v), "the renews bring the client to want");
    for (uint32_t k = 0; k < 3; k++)
        cr_assert_eq(out.change[lost[k]], KZ_SNAP_ENTER, "entry %u", lost[k]);
    cr_assert_eq(st.enters, 3u);
    cr_assert_eq(st.leaves, 0u);

    /* The smallest budget that encodes: only leaves fit. The renewed
     * entries stay as the client holds them; the replaced one leaves. */
    for (size_t budget = 0;; budget++) {
        n = encode_unknown(&c, &server.v, unknown, &want.v, budget, buf, sizeof buf, &sent, &st);
        if (n >= 0)
            break;
        cr_assert_eq(n, KZ_EOVERFLOW);
        cr_assert_lt(budget, 200u);
    }
    cr_assert_eq(st.leaves, 1u);
    cr_assert_eq(st.enters + st.updates, 0u);
    cr_assert_eq(decode_from(&c, buf, (size_t)n, &held.v, &out, NULL), KZ_OK);
    cr_assert_eq(out.v.count, 9u);
    cr_assert_eq(sent.v.count, 9u);
    for (uint32_t i = 0, j = 0; i < 10; i++) {
        if (i == 8)
            continue;   /* slot 16 left */
        cr_assert_eq(out.slot[j], held.slot[i]);
        cr_assert_eq(sent.slot[j], held.slot[i]);
        cr_assert(memcmp(&out.st[j], &held.st[i], sizeof held.st[i]) == 0,
                  "entry %u is kept as the client holds it", i);
        cr_assert_eq(out.change[j], KZ_SNAP_SAME);
        cr_assert_eq(sent.change[j], KZ_SNAP_SAME);
        /* What the server stores for it: its own baseline entry. */
        cr_assert(memcmp(&sent.st[j], &server.st[i], sizeof server.st[i]) == 0, "entry %u", i);
        j++;
    }
}

Test(snapshot, replace_in_same_slot)
{
    kz_snap_codec c = make_codec(8);
    vbox base, want, sent, out;
    uint8_t buf[4096];
    fill_moving(&c, &want, 5, 3, 31);
    long n = encode_into(&c, NULL, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, NULL);
    vbox_copy(&base, &sent.v);
    want.v.tick = 6;
    want.st[1].entity = 99;   /* another entity takes slot 2 */
    kz_snap_encode_stats st;
    n = encode_into(&c, &base.v, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, &st);
    cr_assert_gt(n, 0);
    cr_expect_eq(st.enters, 1u);
    cr_expect_eq(st.leaves, 0u);
    kz_snap_badge badges[8];
    cr_assert_eq(decode_from(&c, buf, (size_t)n, &base.v, &out, badges), KZ_OK);
    cr_assert(views_equal(&out.v, &want.v));
    cr_expect_eq(out.change[1], KZ_SNAP_ENTER);
    cr_expect_str_eq(badges[2].method, "oidc:idp4");
    /* Without room for the enter the old entity still leaves. */
    for (size_t budget = 36; budget < 120; budget++) {
        n = encode_into(&c, &base.v, &want.v, budget, NULL, buf, sizeof buf, &sent, &st);
        if (n < 0)
            continue;
        cr_assert_eq(decode_from(&c, buf, (size_t)n, &base.v, &out, NULL), KZ_OK);
        cr_assert(views_equal(&out.v, &sent.v));
        for (uint32_t i = 0; i < out.v.count; i++)
            cr_assert(out.slot[i] != 2 || out.st[i].entity == 99);
    }
}

Test(snapshot, encode_refuses_misuse)
{
    kz_snap_codec c = make_codec(8);
    vbox want, sent;
    uint8_t buf[4096];
    fill_moving(&c, &want, 5, 3, 41);
    want.slot[2] = want.slot[1];   /* not ascending */
    cr_expect_eq(encode_into(&c, NULL, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, NULL),
                 KZ_EINVAL);
    fill_moving(&c, &want, 5, 3, 41);
    want.slot[2] = 8;              /* beyond n_slots */
    cr_expect_eq(encode_into(&c, NULL, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, NULL),
                 KZ_EINVAL);
    fill_moving(&c, &want, 5, 3, 41);
    want.st[0].vel[0] = INT16_MIN; /* not a code */
    cr_expect_eq(encode_into(&c, NULL, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, NULL),
                 KZ_EINVAL);
    fill_moving(&c, &want, 5, 3, 41);
    want.st[1].pad = 1;            /* padding must stay zero */
    cr_expect_eq(encode_into(&c, NULL, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, NULL),
                 KZ_EINVAL);
    fill_moving(&c, &want, 5, 3, 41);
    vbox small;
    vbox_init(&small);
    small.v.cap = 2;               /* sent too small */
    kz_snap_encode_args a = {.want = &want.v, .budget_bits = SIZE_MAX};
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    cr_expect_eq(kz_snap_encode(&c, &a, &w, &small.v, NULL, NULL), KZ_EINVAL);
    cr_expect_eq(kz_bitwriter_bits(&w), 0u);

    /* Older views: not before the baseline, so far back that the pair
     * would name the body's own tick, or not ascending. */
    vbox base, older;
    fill_moving(&c, &base, 5, 3, 41);
    fill_moving(&c, &want, 6, 3, 41);
    fill_moving(&c, &older, 5, 3, 41);   /* the baseline's own tick */
    cr_expect_eq(encode_older(&c, &base.v, &older.v, &want.v, SIZE_MAX, NULL, buf, sizeof buf,
                              &sent, NULL), KZ_EINVAL);
    older.v.tick = 6;                    /* newer than the baseline */
    cr_expect_eq(encode_older(&c, &base.v, &older.v, &want.v, SIZE_MAX, NULL, buf, sizeof buf,
                              &sent, NULL), KZ_EINVAL);
    older.v.tick = 4;
    older.slot[2] = older.slot[1];       /* not ascending */
    cr_expect_eq(encode_older(&c, &base.v, &older.v, &want.v, SIZE_MAX, NULL, buf, sizeof buf,
                              &sent, NULL), KZ_EINVAL);
    older.slot[2] = 8;                   /* beyond n_slots */
    cr_expect_eq(encode_older(&c, &base.v, &older.v, &want.v, SIZE_MAX, NULL, buf, sizeof buf,
                              &sent, NULL), KZ_EINVAL);
    /* Fine when it is before the baseline; tick 0, an empty older view
     * and a full-state body name none (first order, 1 bit "no older" in
     * a delta, nothing in a full state). */
    fill_moving(&c, &older, 4, 3, 41);
    cr_expect_gt(encode_older(&c, &base.v, &older.v, &want.v, SIZE_MAX, NULL, buf, sizeof buf,
                              &sent, NULL), 0);
    uint8_t plain[4096];
    long n1 = encode_into(&c, &base.v, &want.v, SIZE_MAX, NULL, plain, sizeof plain, &sent, NULL);
    older.v.tick = 0;
    cr_expect_eq(encode_older(&c, &base.v, &older.v, &want.v, SIZE_MAX, NULL, buf, sizeof buf,
                              &sent, NULL), n1);
    cr_expect(memcmp(buf, plain, (size_t)n1) == 0);
    older.v.tick = 4;
    older.v.count = 0;
    cr_expect_eq(encode_older(&c, &base.v, &older.v, &want.v, SIZE_MAX, NULL, buf, sizeof buf,
                              &sent, NULL), n1);
    cr_expect(memcmp(buf, plain, (size_t)n1) == 0);
    older.v.count = 3;
    n1 = encode_into(&c, NULL, &want.v, SIZE_MAX, NULL, plain, sizeof plain, &sent, NULL);
    cr_expect_eq(encode_older(&c, NULL, &older.v, &want.v, SIZE_MAX, NULL, buf, sizeof buf,
                              &sent, NULL), n1);
    cr_expect(memcmp(buf, plain, (size_t)n1) == 0);
}

static const kz_snap_badge *bad_badge_cb(void *ctx, uint32_t entity)
{
    (void)entity;
    return ctx;
}

Test(snapshot, bad_badges_refused_both_ways)
{
    kz_snap_codec c = make_codec(8);
    vbox want, sent, out;
    uint8_t buf[4096];
    fill_moving(&c, &want, 5, 1, 51);
    kz_snap_badge b;
    make_badge(3, &b);
    b.name[1] = '\n';
    kz_snap_encode_args a = {.want = &want.v, .budget_bits = SIZE_MAX, .badge = bad_badge_cb,
                             .badge_ctx = &b};
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    vbox_init(&sent);
    cr_expect_eq(kz_snap_encode(&c, &a, &w, &sent.v, NULL, NULL), KZ_EINVAL);
    cr_expect_eq(kz_bitwriter_bits(&w), 0u);

    /* Hand-made bodies: one enter of entity 5 at slot 0 with a badge. */
    const char *names[] = {"ok", "a\nb", "\xc3(", "\xe2\x82"};
    const int good[] = {1, 0, 0, 0};
    for (int t = 0; t < 4; t++) {
        kz_bitwriter_init(&w, buf, sizeof buf);
        tw(&w, 9, 32);
        tw_ueg(&w, 0, 2);
        tw_ueg(&w, 1, 0);
        tw_ueg(&w, 0, 0);
        tw(&w, 5, 32);
        tw(&w, 0, 1);
        for (int i = 0; i < 3; i++)
            tw(&w, (uint64_t)c.pos_max, c.pos_bits);
        tw(&w, 0, 1);
        tw(&w, 0, 16);
        tw(&w, 0, 1);
        tw(&w, 0, 8);
        tw(&w, 0, 1);
        tw(&w, 0, 1);
        tw(&w, 1, 1);          /* badge */
        tw(&w, 2, 2);
        tw(&w, 0, 2);
        tw(&w, 0, 1);
        tw(&w, 4, 6);
        for (const char *p = "none"; *p; p++)
            tw(&w, (uint8_t)*p, 8);
        size_t nl = strlen(names[t]);
        tw(&w, nl, 6);
        for (size_t i = 0; i < nl; i++)
            tw(&w, (uint8_t)names[t][i], 8);
        size_t n = kz_bitwriter_finish(&w);
        kz_snap_badge badges[8];
        int rc = decode_from(&c, buf, n, NULL, &out, badges);
        cr_expect_eq(rc, good[t] ? KZ_OK : KZ_EPROTO, "name case %d", t);
        if (rc == KZ_OK) {
            cr_expect_str_eq(badges[0].name, "ok");
            cr_expect_str_eq(badges[0].method, "none");
            cr_expect_eq(badges[0].verification_level, 2);
        }
    }
}

/* ---- hostile bodies ------------------------------------------------------- */

/* A decoded view that claims success must be well formed and must survive
 * re-encoding against the same baseline. */
static void check_consistent(const kz_snap_codec *c, const vbox *base, const vbox *out)
{
    static vbox sent, again;
    static uint8_t buf[65536];
    for (uint32_t i = 0; i < out->v.count; i++) {
        cr_assert_lt(out->slot[i], c->n_slots);
        cr_assert(i == 0 || out->slot[i] > out->slot[i - 1]);
        cr_assert_eq(kz_snap_state_check(c, &out->st[i]), KZ_OK);
    }
    long n = encode_into(c, base && base->v.count ? &base->v : NULL, &out->v, SIZE_MAX, NULL,
                         buf, sizeof buf, &sent, NULL);
    cr_assert_gt(n, 0);
    cr_assert_eq(decode_from(c, buf, (size_t)n, base && base->v.count ? &base->v : NULL, &again,
                             NULL), KZ_OK);
    cr_assert(views_equal(&again.v, &out->v));
}

Test(snapshot, truncations_and_bit_flips)
{
    kz_snap_codec c = make_codec(150);
    static vbox base, want, sent, out;
    static uint8_t buf[32768], mut[32768];
    fill_moving(&c, &want, 100, 60, 61);
    long n = encode_into(&c, NULL, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, NULL);
    vbox_copy(&base, &sent.v);
    /* The next tick: moves, a leave, an enter, VR changes. */
    want.v.tick = 103;
    rng_seed(62);
    for (uint32_t i = 0; i < 60; i++) {
        want.st[i].pos[0] += rng_span(-500, 500);
        want.st[i].yaw = (uint16_t)(want.st[i].yaw + rng_span(-500, 500));
        want.st[i].rel[1][2] = (int16_t)rng_span(-2048, 2048);
        want.st[i].rot[2] = nudge_rot(want.st[i].rot[2], 20);
    }
    want.slot[10] = 21;
    want.st[10].entity = 500;
    n = encode_into(&c, &base.v, &want.v, SIZE_MAX, NULL, buf, sizeof buf, &sent, NULL);
    cr_assert_gt(n, 0);
    cr_assert_eq(decode_from(&c, buf, (size_t)n, &base.v, &out, NULL), KZ_OK);
    cr_assert(views_equal(&out.v, &want.v));
    /* Every strict prefix is refused, and so is a trailing byte. */
    for (long len = 0; len < n; len++)
        cr_assert_eq(decode_from(&c, buf, (size_t)len, &base.v, &out, NULL), KZ_EPROTO,
                     "prefix %ld of %ld", len, n);
    buf[n] = 0;
    cr_assert_eq(decode_from(&c, buf, (size_t)n + 1, &base.v, &out, NULL), KZ_EPROTO);
    /* Bit flips: refused, or a consistent view. */
    rng_seed(63);
    int accepted = 0;
    for (int t = 0; t < 3000; t++) {
        memcpy(mut, buf, (size_t)n);
        for (int f = 1 + (int)rng_below(3); f > 0; f--)
            mut[rng_below((uint32_t)n)] ^= (uint8_t)(1u << rng_below(8));
        int rc = decode_from(&c, mut, (size_t)n, &base.v, &out, NULL);
        if (rc == KZ_OK) {
            accepted++;
            check_consistent(&c, &base, &out);
        } else {
            cr_assert_eq(rc, KZ_EPROTO);
        }
    }
    cr_log_info("bit flips: %d of 3000 decoded", accepted);
}

Test(snapshot, hand_made_bad_bodies)
{
    kz_snap_codec c = make_codec(10);
    vbox out;
    uint8_t buf[256];
    kz_bitwriter w;
    size_t n;
    /* A slot beyond n_slots. */
    kz_bitwriter_init(&w, buf, sizeof buf);
    tw(&w, 9, 32);
    tw_ueg(&w, 0, 2);
    tw_ueg(&w, 1, 0);
    tw_ueg(&w, 10, 0);
    n = kz_bitwriter_finish(&w);
    cr_expect_eq(decode_from(&c, buf, n, NULL, &out, NULL), KZ_EPROTO);
    /* More records than slots. */
    kz_bitwriter_init(&w, buf, sizeof buf);
    tw(&w, 9, 32);
    tw_ueg(&w, 0, 2);
    tw_ueg(&w, 11, 0);
    n = kz_bitwriter_finish(&w);
    cr_expect_eq(decode_from(&c, buf, n, NULL, &out, NULL), KZ_EPROTO);
    /* An enter of entity 0. */
    kz_bitwriter_init(&w, buf, sizeof buf);
    tw(&w, 9, 32);
    tw_ueg(&w, 0, 2);
    tw_ueg(&w, 1, 0);
    tw_ueg(&w, 3, 0);
    tw(&w, 0, 32);
    for (int i = 0; i < 4; i++)
        tw(&w, 0, 32);
    n = kz_bitwriter_finish(&w);
    cr_expect_eq(decode_from(&c, buf, n, NULL, &out, NULL), KZ_EPROTO);
    /* A baseline named but not given; a baseline field naming tick 0. */
    kz_bitwriter_init(&w, buf, sizeof buf);
    tw(&w, 9, 32);
    tw_ueg(&w, 2, 2);
    tw_ueg(&w, 0, 0);
    n = kz_bitwriter_finish(&w);
    cr_expect_eq(decode_from(&c, buf, n, NULL, &out, NULL), KZ_EPROTO);
    kz_bitwriter_init(&w, buf, sizeof buf);
    tw(&w, 9, 32);
    tw_ueg(&w, 9, 2);
    tw_ueg(&w, 0, 0);
    n = kz_bitwriter_finish(&w);
    kz_bitreader r;
    kz_bitreader_init(&r, buf, n);
    uint32_t t, bt;
    cr_expect_eq(kz_snap_peek(&c, &r, &t, &bt), KZ_EPROTO);
    /* An exp-Golomb prefix that never ends. */
    memset(buf, 0xff, 64);
    cr_expect_eq(decode_from(&c, buf, 64, NULL, &out, NULL), KZ_EPROTO);
    /* An empty full-state body is fine; nonzero padding is not. */
    kz_bitwriter_init(&w, buf, sizeof buf);
    tw(&w, 9, 32);
    tw_ueg(&w, 0, 2);
    tw_ueg(&w, 0, 0);
    n = kz_bitwriter_finish(&w);
    cr_expect_eq(decode_from(&c, buf, n, NULL, &out, NULL), KZ_OK);
    cr_expect_eq(out.v.count, 0u);
    buf[n - 1] |= 0x80;
    cr_expect_eq(decode_from(&c, buf, n, NULL, &out, NULL), KZ_EPROTO);
}

/* ---- second order ------------------------------------------------------------ */

/* A one-entity view. */
static void one_entity(vbox *v, uint32_t tick, uint16_t slot, const kz_snap_state *s)
{
    vbox_init(v);
    v->v.tick = tick;
    v->v.count = 1;
    v->slot[0] = slot;
    v->st[0] = *s;
}

/* A header: tick, dt, the older field (odt 0: "none"), a record count. */
static size_t head_body(uint8_t *buf, size_t cap, uint32_t tick, uint32_t dt, uint64_t odt,
                        uint32_t count)
{
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, cap);
    tw(&w, tick, 32);
    tw_ueg(&w, dt, 2);
    if (dt != 0) {
        tw(&w, odt != 0, 1);
        if (odt != 0)
            tw_ueg(&w, odt - 1, 0);
    }
    tw_ueg(&w, count, 0);
    return kz_bitwriter_finish(&w);
}

Test(snapshot, second_order_hostile_headers)
{
    kz_snap_codec c = make_codec(10);
    kz_snap_state s;
    rng_seed(71);
    random_state(&c, 5, &s);
    vbox base, older, wrong, out;
    one_entity(&base, 100, 2, &s);
    one_entity(&older, 99, 2, &s);
    one_entity(&wrong, 98, 2, &s);
    uint8_t buf[64];
    uint32_t ot;
    kz_bitreader r;
    /* Tick 101 against 100, older 99, no records: decodes with exactly
     * that older view; without it, or with another, it is refused. */
    size_t n = head_body(buf, sizeof buf, 101, 1, 1, 0);
    kz_bitreader_init(&r, buf, n);
    cr_assert_eq(kz_snap_peek_older(&c, &r, &ot), KZ_OK);
    cr_assert_eq(ot, 99u);
    cr_assert_eq(decode_older(&c, buf, n, &base.v, &older.v, &out, NULL), KZ_OK);
    cr_assert(out.v.count == 1 && out.change[0] == KZ_SNAP_SAME);
    cr_assert_eq(decode_older(&c, buf, n, &base.v, NULL, &out, NULL), KZ_EPROTO);
    cr_assert_eq(decode_from(&c, buf, n, &base.v, &out, NULL), KZ_EPROTO);
    cr_assert_eq(decode_older(&c, buf, n, &base.v, &wrong.v, &out, NULL), KZ_EPROTO);
    /* A body that names none ignores an older view given. */
    n = head_body(buf, sizeof buf, 101, 1, 0, 0);
    cr_assert_eq(decode_older(&c, buf, n, &base.v, &wrong.v, &out, NULL), KZ_OK);
    kz_bitreader_init(&r, buf, n);
    cr_assert_eq(kz_snap_peek_older(&c, &r, &ot), KZ_OK);
    cr_assert_eq(ot, 0u);
    /* An older view at tick 0. */
    n = head_body(buf, sizeof buf, 101, 1, 100, 0);
    kz_bitreader_init(&r, buf, n);
    cr_assert_eq(kz_snap_peek_older(&c, &r, &ot), KZ_EPROTO);
    uint32_t t, bt;
    cr_assert_eq(kz_snap_peek(&c, &r, &t, &bt), KZ_EPROTO);
    cr_assert_eq(decode_older(&c, buf, n, &base.v, &older.v, &out, NULL), KZ_EPROTO);
    /* dt + odt = 2^32: the older view would be the body's own tick. */
    n = head_body(buf, sizeof buf, 101, 1, 0xffffffffull, 0);
    kz_bitreader_init(&r, buf, n);
    cr_assert_eq(kz_snap_peek_older(&c, &r, &ot), KZ_EPROTO);
    cr_assert_eq(decode_older(&c, buf, n, &base.v, &older.v, &out, NULL), KZ_EPROTO);
    /* ... and beyond 32 bits. */
    n = head_body(buf, sizeof buf, 101, 1, 0x100000005ull, 0);
    kz_bitreader_init(&r, buf, n);
    cr_assert_eq(kz_snap_peek_older(&c, &r, &ot), KZ_EPROTO);
    /* Ticks wrap: 5 - 3 - 4 is 2^32 - 2, a tick like any other. */
    n = head_body(buf, sizeof buf, 5, 3, 4, 0);
    kz_bitreader_init(&r, buf, n);
    cr_assert_eq(kz_snap_peek_older(&c, &r, &ot), KZ_OK);
    cr_assert_eq(ot, 0xfffffffeu);
    /* Truncated inside the older field (the body ends on a byte boundary
     * within its exp-Golomb prefix), and a prefix there that never ends. */
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    tw(&w, 101, 32);
    tw_ueg(&w, 1, 2);
    tw(&w, 1, 1);
    tw(&w, 0xf, 4);
    n = kz_bitwriter_finish(&w);
    cr_assert_eq(n, 5u);
    cr_assert_eq(decode_older(&c, buf, n, &base.v, &older.v, &out, NULL), KZ_EPROTO);
    kz_bitreader_init(&r, buf, n);
    cr_assert_eq(kz_snap_peek_older(&c, &r, &ot), KZ_EPROTO);
    kz_bitwriter_init(&w, buf, sizeof buf);
    tw(&w, 101, 32);
    tw_ueg(&w, 1, 2);
    tw(&w, 1, 1);
    for (int i = 0; i < 40; i++)
        tw(&w, 1, 1);
    n = kz_bitwriter_finish(&w);
    cr_assert_eq(decode_older(&c, buf, n, &base.v, &older.v, &out, NULL), KZ_EPROTO);
    /* A full-state body has no older field: the bit after dt 0 is the
     * count. */
    n = head_body(buf, sizeof buf, 101, 0, 0, 0);
    cr_assert_eq(decode_older(&c, buf, n, NULL, &older.v, &out, NULL), KZ_OK);
    cr_assert_eq(out.v.count, 0u);
}

/* A standing VR avatar whose head and hands move at a steady rate. */
static void steady_state(kz_snap_state *s, int32_t t)
{
    memset(s, 0, sizeof *s);
    s->entity = 9;
    s->kind = KZ_KIND_AVATAR;
    s->flags = KZ_AVATAR_VR;
    s->pos[0] = 3000;
    s->yaw = 1234;
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        s->rel[k][0] = (int16_t)(100 * (int32_t)k + 6 * t);
        s->rel[k][1] = (int16_t)(1200 - 4 * t);
        s->rel[k][2] = (int16_t)(-300 + 2 * t * (int32_t)k);
        s->rot[k] = (2u << 30) | (uint32_t)(500 + 4 * t) << 20 | (uint32_t)(300 - 2 * t) << 10 |
                    (uint32_t)(600 + 6 * (int32_t)k);
    }
}

/* Body bits of want against base (and older). */
static size_t body_bits(const kz_snap_codec *c, const kz_snap_view *base,
                        const kz_snap_view *older, const kz_snap_view *want, vbox *sent)
{
    uint8_t buf[1024];
    kz_snap_encode_args a = {.base = base, .older = older, .want = want, .budget_bits = SIZE_MAX};
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    vbox_init(sent);
    cr_assert_eq(kz_snap_encode(c, &a, &w, &sent->v, sent->change, NULL), KZ_OK);
    size_t bits = kz_bitwriter_bits(&w), n = kz_bitwriter_finish(&w);
    vbox out;
    cr_assert_eq(decode_older(c, buf, n, base, older, &out, NULL), KZ_OK);
    cr_assert(views_equal(&out.v, want), "decodes to the wanted view");
    return bits;
}

/* Steady motion is predicted exactly, whatever the distances: the poses
 * cost one bit ("as predicted"), the record 7 (gap, type, position, yaw,
 * velocity, misc, poses); first order pays for every moving component. */
Test(snapshot, second_order_predicts_steady_poses_exactly)
{
    kz_snap_codec c = make_codec(16);
    static const uint32_t dts[][2] = {{1, 1}, {2, 1}, {1, 2}, {3, 2}, {4, 4}, {6, 3}};
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        uint32_t dt = dts[i][0], odt = dts[i][1];
        kz_snap_state so, sb, sw;
        steady_state(&so, 0);
        steady_state(&sb, (int32_t)odt);
        steady_state(&sw, (int32_t)(odt + dt));
        vbox older, base, want, sent;
        one_entity(&older, 200, 0, &so);
        one_entity(&base, 200 + odt, 0, &sb);
        one_entity(&want, 200 + odt + dt, 0, &sw);
        /* tick, dt (ueg(2)), the older bit and odt - 1 (ueg(0)), count 1. */
        size_t head = 32 + (dt < 4 ? 3 : 5) + 1 + (odt == 1 ? 1 : odt < 4 ? 3 : 5) + 3;
        size_t second = body_bits(&c, &base.v, &older.v, &want.v, &sent);
        cr_assert_eq(second, head + 7, "dt %u odt %u: %zu bits", dt, odt, second);
        size_t first = body_bits(&c, &base.v, NULL, &want.v, &sent);
        cr_assert_gt(first, second + 40, "dt %u odt %u: first order %zu bits", dt, odt, first);
    }
}

/* Predictions run into the limits: offsets past +-2048 and components
 * past 0 or 1022 are clamped there, and a value that stays at the limit
 * costs nothing. */
Test(snapshot, second_order_predictions_clamp_at_the_limits)
{
    kz_snap_codec c = make_codec(16);
    kz_snap_state so, sb, sw;
    steady_state(&so, 0);
    so.rel[0][0] = 2040;
    so.rel[1][1] = -2040;
    so.rot[2] = (1u << 30) | 1019u << 20 | 3u << 10 | 511u;
    sb = so;
    sb.rel[0][0] = 2046;
    sb.rel[1][1] = -2046;
    sb.rot[2] = (1u << 30) | 1022u << 20 | 1u << 10 | 511u;
    sw = sb;
    sw.rel[0][0] = 2048;
    sw.rel[1][1] = -2048;
    sw.rot[2] = (1u << 30) | 1022u << 20 | 0u << 10 | 511u;
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        if (k != 2)
            so.rot[k] = sb.rot[k] = sw.rot[k];
    }
    vbox older, base, want, sent;
    one_entity(&older, 10, 0, &so);
    one_entity(&base, 11, 0, &sb);
    one_entity(&want, 12, 0, &sw);
    cr_assert_eq(body_bits(&c, &base.v, &older.v, &want.v, &sent), 32u + 3 + 1 + 1 + 3 + 7);
    /* Past the limit the other way: the prediction is clamped, the value
     * comes back, the residual says so exactly. */
    sw.rel[0][0] = 2030;
    sw.rot[2] = (1u << 30) | 1000u << 20 | 0u << 10 | 511u;
    one_entity(&want, 12, 0, &sw);
    (void)body_bits(&c, &base.v, &older.v, &want.v, &sent);
}

/* Per entity, the older view counts only when its slot holds the same
 * entity and kind; otherwise the record is the first-order one, bit for
 * bit (only the header differs). A rotation whose dropped index changed
 * between the older view and the baseline is predicted unchanged. */
static void bits_at(const uint8_t *buf, size_t from, size_t n, uint8_t *out)
{
    memset(out, 0, (n + 7) / 8);
    for (size_t i = 0; i < n; i++)
        if ((buf[(from + i) / 8] >> ((from + i) % 8)) & 1u)
            out[i / 8] |= (uint8_t)(1u << (i % 8));
}

Test(snapshot, second_order_only_for_the_same_entity)
{
    kz_snap_codec c = make_codec(16);
    kz_snap_state so, sb, sw;
    steady_state(&so, 0);
    steady_state(&sb, 1);
    steady_state(&sw, 2);
    sw.rel[1][2] += 3;
    vbox base, want, older, sent;
    one_entity(&base, 51, 7, &sb);
    one_entity(&want, 52, 7, &sw);
    uint8_t first[256], second[256];
    long n1 = encode_into(&c, &base.v, &want.v, SIZE_MAX, NULL, first, sizeof first, &sent, NULL);
    cr_assert_gt(n1, 0);
    /* 32 + 3 + 1 header bits first order, 32 + 3 + 1 + 1 with an older
     * view one tick back; the count and the record follow. */
    kz_snap_state others[4] = {so, so, so, so};
    others[0].entity = 10;                  /* another entity */
    others[1].kind = KZ_KIND_OBJECT;        /* another kind */
    for (int v = 0; v < 4; v++) {
        if (v < 2)
            one_entity(&older, 50, 7, &others[v]);
        else if (v == 2)
            one_entity(&older, 50, 6, &so);     /* another slot */
        else
            one_entity(&older, 50, 8, &so);
        long n2 = encode_older(&c, &base.v, &older.v, &want.v, SIZE_MAX, NULL, second,
                               sizeof second, &sent, NULL);
        cr_assert_eq(n2, n1, "case %d", v);
        size_t rest = (size_t)n1 * 8 - 37;
        uint8_t a[256], b[256];
        bits_at(first, 36, rest, a);
        bits_at(second, 37, rest, b);
        cr_assert(memcmp(a, b, (rest + 7) / 8) == 0, "case %d: the record is first order", v);
        vbox out;
        cr_assert_eq(decode_older(&c, second, (size_t)n2, &base.v, &older.v, &out, NULL), KZ_OK);
        cr_assert(views_equal(&out.v, &want.v));
    }
    /* Same entity: second order, and much shorter. */
    one_entity(&older, 50, 7, &so);
    long n3 = encode_older(&c, &base.v, &older.v, &want.v, SIZE_MAX, NULL, second, sizeof second,
                           &sent, NULL);
    cr_assert_lt(n3, n1 - 3);
    /* A rotation whose index changed: that one is first order, the rest
     * second; still exact. */
    so.rot[0] = (3u << 30) | (so.rot[0] & ((1u << 30) - 1u));
    one_entity(&older, 50, 7, &so);
    (void)body_bits(&c, &base.v, &older.v, &want.v, &sent);
}

/* ---- payload cache ------------------------------------------------------------ */

/* A small view with its own storage (the cache tests keep many). */
#define CS_SLOTS 64u

typedef struct cbox {
    kz_snap_view v;
    uint16_t slot[CS_SLOTS];
    kz_snap_state st[CS_SLOTS];
    uint8_t change[CS_SLOTS];
} cbox;

static void cbox_init(cbox *b, uint32_t tick)
{
    memset(&b->v, 0, sizeof b->v);
    b->v.tick = tick;
    b->v.cap = CS_SLOTS;
    b->v.slot = b->slot;
    b->v.state = b->st;
}

static void cbox_add(cbox *b, uint16_t slot, const kz_snap_state *s)
{
    cr_assert_lt(b->v.count, CS_SLOTS);
    b->slot[b->v.count] = slot;
    b->st[b->v.count] = *s;
    b->v.count++;
}

static kz_snap_cache_stats stats_delta(kz_snap_cache_stats a, kz_snap_cache_stats b)
{
    kz_snap_cache_stats d = {b.hits - a.hits, b.stores - a.stores, b.misses - a.misses};
    return d;
}

/*
 * Encodes want against base twice, without and with the cache (same
 * arguments otherwise), and checks that the results agree exactly: return
 * code, body bits and bytes, the writer's position, sent view, change codes
 * and stats. Puts the sent view in *sent (may be NULL) and returns what
 * the cache counted.
 */
static kz_snap_cache_stats enc_both2(const kz_snap_codec *c, kz_snap_cache *k,
                                     const kz_snap_view *base, const kz_snap_view *older,
                                     const kz_snap_view *want, const uint32_t *key,
                                     const kz_snap_state *const *bw,
                                     const kz_snap_state *const *ow, size_t budget,
                                     const uint16_t *prio, int *rc_out, cbox *sent)
{
    static badge_book book;
    static uint8_t buf[2][8192];
    static cbox sb[2];
    kz_snap_encode_stats st[2];
    kz_bitwriter w[2];
    int rc[2];
    kz_snap_cache_stats before = k->stats;
    for (int v = 0; v < 2; v++) {
        kz_snap_encode_args a = {.base = base, .older = older, .want = want, .priority = prio,
                                 .budget_bits = budget, .badge = badge_cb, .badge_ctx = &book,
                                 .cache = v ? k : NULL, .key = key, .base_world = bw,
                                 .older_world = ow};
        /* Different junk in each buffer: equal bytes are written bytes. */
        memset(buf[v], v ? 0xa5 : 0x5a, sizeof buf[v]);
        kz_bitwriter_init(&w[v], buf[v], sizeof buf[v]);
        /* A server header that does not end on a byte boundary. */
        cr_assert_eq(kz_bitwriter_write(&w[v], 0x15, 5), KZ_OK);
        cbox_init(&sb[v], 0);
        memset(sb[v].change, 0xee, sizeof sb[v].change);
        rc[v] = kz_snap_encode(c, &a, &w[v], &sb[v].v, sb[v].change, &st[v]);
    }
    cr_assert_eq(rc[0], rc[1], "cached encode returned %d, plain %d", rc[1], rc[0]);
    *rc_out = rc[0];
    cr_assert_eq(kz_bitwriter_bits(&w[0]), kz_bitwriter_bits(&w[1]));
    if (rc[0] != KZ_OK) {
        cr_assert_eq(kz_bitwriter_bits(&w[1]), 5u, "a refused encode wrote something");
        return stats_delta(before, k->stats);
    }
    size_t n0 = kz_bitwriter_finish(&w[0]), n1 = kz_bitwriter_finish(&w[1]);
    cr_assert_eq(n0, n1);
    cr_assert(memcmp(buf[0], buf[1], n0) == 0, "cached body differs from the plain one");
    cr_assert(views_equal(&sb[0].v, &sb[1].v), "cached sent view differs");
    cr_assert(memcmp(sb[0].change, sb[1].change, sb[0].v.count) == 0);
    cr_assert(memcmp(&st[0], &st[1], sizeof st[0]) == 0);
    if (sent != NULL) {
        cbox_init(sent, sb[0].v.tick);
        sent->v.count = sb[0].v.count;
        memcpy(sent->slot, sb[0].slot, sizeof sent->slot);
        memcpy(sent->st, sb[0].st, sizeof sent->st);
        memcpy(sent->change, sb[0].change, sizeof sent->change);
    }
    return stats_delta(before, k->stats);
}

/* The same, first order. */
static kz_snap_cache_stats enc_both(const kz_snap_codec *c, kz_snap_cache *k,
                                    const kz_snap_view *base, const kz_snap_view *want,
                                    const uint32_t *key, const kz_snap_state *const *bw,
                                    size_t budget, const uint16_t *prio, int *rc_out,
                                    cbox *sent)
{
    return enc_both2(c, k, base, NULL, want, key, bw, NULL, budget, prio, rc_out, sent);
}

/* Encodes with the cache only (for misuse the plain encoder does not
 * see); checks that a refusal wrote nothing. */
static int enc_cached(const kz_snap_codec *c, kz_snap_cache *k, const kz_snap_view *base,
                      const kz_snap_view *want, const uint32_t *key,
                      const kz_snap_state *const *bw)
{
    uint8_t buf[1024];
    cbox sent;
    kz_snap_encode_args a = {.base = base, .want = want, .budget_bits = SIZE_MAX,
                             .cache = k, .key = key, .base_world = bw};
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    cbox_init(&sent, 0);
    int rc = kz_snap_encode(c, &a, &w, &sent.v, NULL, NULL);
    if (rc != KZ_OK)
        cr_assert_eq(kz_bitwriter_bits(&w), 0u, "a refused encode wrote something");
    return rc;
}

/*
 * Many clients, one world. Entities move (some rest, some jump so their
 * payloads outgrow an entry); every client sees its own subset in its own
 * slots, which churn; each tick every client encodes against the view it
 * acknowledged, mostly 1 or 2 ticks old, sometimes older or none, and a
 * quarter of the encodes have a small budget so changes are deferred and
 * later baselines hold states that are not the world's of their tick.
 * base_world is sometimes NULL, sometimes out of the world history. With
 * second order, most encodes also pass an older view (mostly the tick
 * before the baseline, sometimes further back; its states may be deferred
 * ones too, its slots may hold other entities) and older_world, sometimes
 * NULL. The cached encode must agree with the plain one every time.
 */
#define CS_ENT 40u
#define CS_CLIENTS 24u
#define CS_HIST 8u

typedef struct cs_client {
    uint16_t slot_of[CS_ENT];   /* slot, or KZ__NONE */
    cbox hist[CS_HIST];         /* sent views by tick % CS_HIST */
} cs_client;

typedef struct cs_world {
    kz_snap_codec c;
    kz_snap_state now[CS_ENT];
    kz_snap_state past[CS_HIST][CS_ENT];   /* world by tick % CS_HIST */
    uint32_t past_tick[CS_HIST];
    cs_client cl[CS_CLIENTS];
    cbox want;
    uint32_t key[CS_SLOTS];
    const kz_snap_state *bw[CS_SLOTS];
    const kz_snap_state *ow[CS_SLOTS];
} cs_world;

#define CS_NONE 0xffffu

static void cs_move(cs_world *m, kz_snap_state *s)
{
    if (rng_chance(0.3))
        return;
    if (rng_chance(0.03)) {
        uint32_t id = s->entity;
        random_state(&m->c, id, s);   /* a jump: a long payload */
        return;
    }
    for (int i = 0; i < 3; i++) {
        s->pos[i] += (int32_t)(2 * s->vel[i] / 30) + rng_span(-2, 2);
        clamp_pos(&m->c, &s->pos[i]);
        if (rng_chance(0.2))
            s->vel[i] = clamp_i16(s->vel[i] + rng_span(-30, 30), 32767);
    }
    if (rng_chance(0.5))
        s->yaw = (uint16_t)(s->yaw + rng_span(-300, 300));
    for (uint32_t k = 0; k < KZ_POSE_COUNT && (s->flags & KZ_AVATAR_VR); k++) {
        for (int i = 0; i < 3; i++)
            s->rel[k][i] = clamp_i16(s->rel[k][i] + rng_span(-20, 20), KZ_SNAP_REL_MAX);
        s->rot[k] = nudge_rot(s->rot[k], 8);
    }
}

static void cs_churn(cs_client *cl)
{
    uint8_t used[CS_SLOTS] = {0};
    for (uint32_t e = 0; e < CS_ENT; e++) {
        if (cl->slot_of[e] != CS_NONE && rng_chance(0.02))
            cl->slot_of[e] = CS_NONE;
        if (cl->slot_of[e] != CS_NONE)
            used[cl->slot_of[e]] = 1;
    }
    for (uint32_t e = 0; e < CS_ENT; e++) {
        if (cl->slot_of[e] != CS_NONE || !rng_chance(0.05))
            continue;
        uint32_t s = rng_below(CS_SLOTS);
        while (used[s])
            s = (s + 1) % CS_SLOTS;
        used[s] = 1;
        cl->slot_of[e] = (uint16_t)s;
    }
}

static void run_cache_sim(uint64_t seed, uint32_t ways, int collide, uint32_t start_tick,
                          int second_order)
{
    cs_world *m = calloc(1, sizeof *m);
    cr_assert(m != NULL);
    rng_seed(seed);
    m->c = make_codec(CS_SLOTS);
    for (uint32_t e = 0; e < CS_ENT; e++) {
        random_state(&m->c, 100 + e, &m->now[e]);
        for (int i = 0; i < 3; i++)
            m->now[e].pos[i] = rng_span(-50000, 50000);
        if (rng_chance(0.5)) {   /* a plain desktop avatar */
            m->now[e].kind = KZ_KIND_AVATAR;
            m->now[e].flags = 0;
            m->now[e].holder = 0;
            memset(m->now[e].rel, 0, sizeof m->now[e].rel);
            for (uint32_t k = 0; k < KZ_POSE_COUNT; k++)
                m->now[e].rot[k] = KZ_SNAP_ROT_REST;
        }
    }
    for (uint32_t n = 0; n < CS_CLIENTS; n++) {
        for (uint32_t e = 0; e < CS_ENT; e++)
            m->cl[n].slot_of[e] = CS_NONE;
        cs_churn(&m->cl[n]);
    }
    kz_snap_cache k;
    /* Colliding keys: 40 entities share 7 keys, only hits that are right
     * for both may happen. */
    uint32_t n_keys = collide ? 7 : CS_ENT;
    cr_assert_eq(kz_snap_cache_init(&k, n_keys, ways, NULL), KZ_OK);
    uint64_t deferred_bases = 0, limited = 0, encodes = 0, with_older = 0;
    uint32_t tick = start_tick;
    for (uint32_t step = 0; step < 120; step++, tick++) {
        if (tick == 0)
            tick = 1;
        for (uint32_t e = 0; e < CS_ENT; e++)
            cs_move(m, &m->now[e]);
        memcpy(m->past[tick % CS_HIST], m->now, sizeof m->now);
        m->past_tick[tick % CS_HIST] = tick;
        kz_snap_cache_begin(&k, tick);
        for (uint32_t n = 0; n < CS_CLIENTS; n++) {
            cs_client *cl = &m->cl[n];
            if (rng_chance(0.05))
                cs_churn(cl);
            /* The baseline: mostly 1 or 2 ticks old. */
            double u = rng_range(0.0f, 1.0f);
            uint32_t lag = u < 0.55 ? 1 : u < 0.85 ? 2 : u < 0.97 ? 3 + rng_below(5) : 0;
            const cbox *base = NULL;
            if (lag != 0 && tick - lag != 0) {
                const cbox *h = &cl->hist[(tick - lag) % CS_HIST];
                if (h->v.tick == tick - lag && h->v.slot == h->slot)
                    base = h;
            }
            cbox_init(&m->want, tick);
            for (uint32_t s = 0; s < CS_SLOTS; s++) {
                for (uint32_t e = 0; e < CS_ENT; e++) {
                    if (cl->slot_of[e] != s)
                        continue;
                    m->key[m->want.v.count] = collide ? e % 7 : e;
                    cbox_add(&m->want, (uint16_t)s, &m->now[e]);
                }
            }
            /* base_world: the world state of each entity at the base tick. */
            uint32_t bt = base ? base->v.tick : 0;
            for (uint32_t i = 0; i < m->want.v.count; i++) {
                uint32_t e = m->want.st[i].entity - 100;
                int known = bt != 0 && m->past_tick[bt % CS_HIST] == bt && !rng_chance(0.03);
                m->bw[i] = known ? &m->past[bt % CS_HIST][e] : NULL;
            }
            /* The older view and older_world. */
            const cbox *older = NULL;
            if (second_order && base != NULL && rng_chance(0.9)) {
                uint32_t ot = bt - (rng_chance(0.8) ? 1 : 2 + rng_below(3));
                const cbox *h = &cl->hist[ot % CS_HIST];
                if (ot != 0 && tick - ot < CS_HIST && h->v.tick == ot && h->v.slot == h->slot)
                    older = h;
            }
            uint32_t ot = older ? older->v.tick : 0;
            with_older += older != NULL;
            for (uint32_t i = 0; i < m->want.v.count; i++) {
                uint32_t e = m->want.st[i].entity - 100;
                int known = ot != 0 && m->past_tick[ot % CS_HIST] == ot && !rng_chance(0.03);
                m->ow[i] = known ? &m->past[ot % CS_HIST][e] : NULL;
            }
            for (uint32_t i = 0; base && i < base->v.count; i++) {
                uint32_t e = base->st[i].entity - 100;
                if (e < CS_ENT && m->past_tick[bt % CS_HIST] == bt &&
                    memcmp(&base->st[i], &m->past[bt % CS_HIST][e], sizeof base->st[i]) != 0)
                    deferred_bases++;
            }
            size_t budget = SIZE_MAX;
            uint16_t prio[CS_SLOTS];
            const uint16_t *pp = NULL;
            if (rng_chance(0.25)) {
                budget = rng_below(3000);
                limited++;
                if (rng_chance(0.5)) {
                    for (uint32_t i = 0; i < m->want.v.count; i++)
                        prio[i] = (uint16_t)(m->want.v.count - 1 - i);
                    pp = prio;
                }
            }
            int rc;
            cbox *sent = &cl->hist[tick % CS_HIST];
            enc_both2(&m->c, &k, base ? &base->v : NULL, older ? &older->v : NULL, &m->want.v,
                      m->key, m->bw, m->ow, budget, pp, &rc, sent);
            cr_assert(rc == KZ_OK || (rc == KZ_EOVERFLOW && budget != SIZE_MAX), "rc %d", rc);
            if (rc != KZ_OK)
                sent->v.tick = 0;   /* never a baseline */
            encodes++;
        }
    }
    /* The run exercised what it claims to. */
    /* (Second order splits a baseline's payloads by older tick too.) */
    uint64_t want_hits = collide ? encodes / 4 : second_order ? encodes / 2 : encodes;
    cr_assert_gt(k.stats.hits, want_hits, "too few hits: %llu",
                 (unsigned long long)k.stats.hits);
    cr_assert_gt(k.stats.stores, 0u);
    cr_assert_gt(k.stats.misses, 0u);
    cr_assert_gt(deferred_bases, 100u, "baselines with deferred states: %llu",
                 (unsigned long long)deferred_bases);
    cr_assert_gt(limited, 100u);
    if (second_order)
        cr_assert_gt(with_older, encodes / 2);
    else
        cr_assert_eq(with_older, 0u);
    kz_snap_cache_fini(&k);
    free(m);
}

Test(snapshot_cache, matches_plain_encoder_2_ways)
{
    run_cache_sim(11, 2, 0, 1, 0);
}

Test(snapshot_cache, matches_plain_encoder_1_way)
{
    run_cache_sim(12, 1, 0, 5000, 0);
}

Test(snapshot_cache, matches_plain_encoder_4_ways_tick_wrap)
{
    run_cache_sim(13, 4, 0, 0xffffffc0u, 0);
}

Test(snapshot_cache, matches_plain_encoder_colliding_keys)
{
    run_cache_sim(14, 1, 1, 77, 0);
    run_cache_sim(15, 2, 1, 900, 0);
}

/* Second order: the payload also depends on the older state and tick. */
Test(snapshot_cache, matches_plain_encoder_second_order)
{
    run_cache_sim(16, 2, 0, 1, 1);
    run_cache_sim(17, 1, 0, 0xffffffc0u, 1);
    run_cache_sim(18, 4, 0, 3000, 1);
}

Test(snapshot_cache, matches_plain_encoder_second_order_colliding_keys)
{
    run_cache_sim(19, 2, 1, 77, 1);
}

/* ---- payload cache: deterministic cases ---- */

/* A walking desktop avatar: world states for ticks 100 .. 104. */
static void walk_states(kz_snap_state w[5], uint32_t entity)
{
    memset(w, 0, 5 * sizeof *w);
    for (int t = 0; t < 5; t++) {
        w[t].entity = entity;
        w[t].kind = KZ_KIND_AVATAR;
        w[t].pos[0] = 1000 + 24 * t + (t == 3 ? 1 : 0);
        w[t].pos[2] = -500 + 10 * t;
        w[t].vel[0] = 360;
        w[t].vel[2] = 150;
        w[t].yaw = (uint16_t)(1000 + 37 * t);
        for (uint32_t k = 0; k < KZ_POSE_COUNT; k++)
            w[t].rot[k] = KZ_SNAP_ROT_REST;
    }
}

static void one_view(cbox *b, uint32_t tick, const kz_snap_state *s)
{
    cbox_init(b, tick);
    cbox_add(b, 3, s);
}

Test(snapshot_cache, shares_payloads_only_for_world_baselines)
{
    kz_snap_codec c = make_codec(CS_SLOTS);
    kz_snap_state w[5];
    walk_states(w, 42);
    kz_snap_cache k;
    cr_assert_eq(kz_snap_cache_init(&k, 10, 2, NULL), KZ_OK);
    kz_snap_cache_begin(&k, 104);
    cbox want, base, deferred;
    one_view(&want, 104, &w[4]);
    one_view(&base, 103, &w[3]);
    /* A baseline of tick 103 that still holds tick 101's state (the
     * update of tick 102 was deferred). */
    one_view(&deferred, 103, &w[1]);
    const uint32_t key[1] = {7};
    const kz_snap_state *bw[1] = {&w[3]};
    int rc;
    kz_snap_cache_stats d;
    /* First client: encodes and stores. */
    d = enc_both(&c, &k, &base.v, &want.v, key, bw, SIZE_MAX, NULL, &rc, NULL);
    cr_assert_eq(rc, KZ_OK);
    cr_assert(d.stores == 1 && d.hits == 0 && d.misses == 0);
    /* The same baseline again: copied. */
    d = enc_both(&c, &k, &base.v, &want.v, key, bw, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.stores == 0 && d.hits == 1 && d.misses == 0);
    /* A deferred baseline with the true base_world: not the world state,
     * so it neither uses nor replaces the entry. */
    d = enc_both(&c, &k, &deferred.v, &want.v, key, bw, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.stores == 0 && d.hits == 0 && d.misses == 1);
    /* No base_world: no cache. */
    const kz_snap_state *none[1] = {NULL};
    d = enc_both(&c, &k, &base.v, &want.v, key, none, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.stores == 0 && d.hits == 0 && d.misses == 1);
    /* A caller that passes the deferred state itself as base_world gets
     * an entry of its own (right for it) and never the world's. */
    const kz_snap_state *lie[1] = {&deferred.st[0]};
    d = enc_both(&c, &k, &deferred.v, &want.v, key, lie, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.hits == 0 && d.stores == 1);
    /* A different wanted state under the same key and baseline (a
     * caller's bug): no hit, and still the right bytes. */
    kz_snap_state other = w[4];
    other.pos[1] += 5;
    cbox want2;
    one_view(&want2, 104, &other);
    d = enc_both(&c, &k, &base.v, &want2.v, key, bw, SIZE_MAX, NULL, &rc, NULL);
    cr_assert_eq(d.hits, 0u);
    /* Nothing changed: SAME costs nothing and touches no entry. */
    cbox same;
    one_view(&same, 103, &w[4]);
    d = enc_both(&c, &k, &same.v, &want.v, key, bw, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.hits == 0 && d.stores == 0 && d.misses == 0);
    kz_snap_cache_fini(&k);
}

/* A walking VR avatar: walk_states with head and hands moving steadily. */
static void walk_vr_states(kz_snap_state w[5], uint32_t entity)
{
    walk_states(w, entity);
    for (int t = 0; t < 5; t++) {
        w[t].flags = KZ_AVATAR_VR;
        for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
            w[t].rel[k][0] = (int16_t)(200 * (int32_t)k + 9 * t + (t == 4));
            w[t].rel[k][1] = (int16_t)(1000 + 3 * t);
            w[t].rot[k] = (1u << 30) | (uint32_t)(400 + 5 * t) << 20 | 300u << 10 | 200u;
        }
    }
}

/* With second order the payload depends on the older state and tick as
 * well: shared only when both match, an entity the older view does not
 * hold is keyed as first order, and an older state that is not the world
 * state of its tick never touches the cache. */
Test(snapshot_cache, second_order_shares_payloads_only_for_the_same_older_state)
{
    kz_snap_codec c = make_codec(CS_SLOTS);
    kz_snap_state w[5];
    walk_vr_states(w, 42);
    kz_snap_cache k;
    cr_assert_eq(kz_snap_cache_init(&k, 10, 4, NULL), KZ_OK);
    kz_snap_cache_begin(&k, 104);
    cbox want, base, old2, old1, old_deferred, old_other;
    one_view(&want, 104, &w[4]);
    one_view(&base, 103, &w[3]);
    one_view(&old2, 102, &w[2]);
    one_view(&old1, 101, &w[1]);
    one_view(&old_deferred, 102, &w[1]);   /* tick 102 still holding 101's state */
    kz_snap_state stranger = w[2];
    stranger.entity = 77;
    one_view(&old_other, 102, &stranger);
    const uint32_t key[1] = {7};
    const kz_snap_state *bw[1] = {&w[3]}, *ow2[1] = {&w[2]}, *ow1[1] = {&w[1]};
    int rc;
    kz_snap_cache_stats d;
    /* Older view 102: stored, then copied. */
    d = enc_both2(&c, &k, &base.v, &old2.v, &want.v, key, bw, ow2, SIZE_MAX, NULL, &rc, NULL);
    cr_assert_eq(rc, KZ_OK);
    cr_assert(d.stores == 1 && d.hits == 0 && d.misses == 0);
    d = enc_both2(&c, &k, &base.v, &old2.v, &want.v, key, bw, ow2, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.stores == 0 && d.hits == 1 && d.misses == 0);
    /* Older view 101: another payload, its own entry. */
    d = enc_both2(&c, &k, &base.v, &old1.v, &want.v, key, bw, ow1, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.stores == 1 && d.hits == 0 && d.misses == 0);
    /* No older view at all, and an older view whose slot holds another
     * entity: the same first-order payload, one entry for both. */
    d = enc_both2(&c, &k, &base.v, NULL, &want.v, key, bw, NULL, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.stores == 1 && d.hits == 0 && d.misses == 0);
    const kz_snap_state *ow_other[1] = {&stranger};
    d = enc_both2(&c, &k, &base.v, &old_other.v, &want.v, key, bw, ow_other, SIZE_MAX, NULL, &rc,
                  NULL);
    cr_assert(d.stores == 0 && d.hits == 1 && d.misses == 0);
    /* An older view holding a deferred state, with the true older_world:
     * not the world state, so no cache. */
    d = enc_both2(&c, &k, &base.v, &old_deferred.v, &want.v, key, bw, ow2, SIZE_MAX, NULL, &rc,
                  NULL);
    cr_assert(d.stores == 0 && d.hits == 0 && d.misses == 1);
    /* No older_world for the entry: no cache either. */
    const kz_snap_state *none[1] = {NULL};
    d = enc_both2(&c, &k, &base.v, &old2.v, &want.v, key, bw, none, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.stores == 0 && d.hits == 0 && d.misses == 1);
    /* The entries made above are still found. */
    d = enc_both2(&c, &k, &base.v, &old1.v, &want.v, key, bw, ow1, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.stores == 0 && d.hits == 1 && d.misses == 0);
    kz_snap_cache_fini(&k);
}

Test(snapshot_cache, ways_and_eviction)
{
    kz_snap_codec c = make_codec(CS_SLOTS);
    kz_snap_state w[5];
    walk_states(w, 42);
    cbox want, b1, b2, b3;
    one_view(&want, 104, &w[4]);
    one_view(&b1, 103, &w[3]);
    one_view(&b2, 102, &w[2]);
    one_view(&b3, 101, &w[1]);
    const uint32_t key[1] = {0};
    const kz_snap_state *bw1[1] = {&w[3]}, *bw2[1] = {&w[2]}, *bw3[1] = {&w[1]};
    int rc;
    kz_snap_cache_stats d;
    kz_snap_cache k;

    /* One way: a newer baseline replaces an older one, never the reverse. */
    cr_assert_eq(kz_snap_cache_init(&k, 1, 1, NULL), KZ_OK);
    kz_snap_cache_begin(&k, 104);
    d = enc_both(&c, &k, &b2.v, &want.v, key, bw2, SIZE_MAX, NULL, &rc, NULL);
    cr_assert_eq(d.stores, 1u);
    d = enc_both(&c, &k, &b1.v, &want.v, key, bw1, SIZE_MAX, NULL, &rc, NULL);
    cr_assert_eq(d.stores, 1u, "dt 1 must replace dt 2");
    d = enc_both(&c, &k, &b2.v, &want.v, key, bw2, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.stores == 0 && d.misses == 1 && d.hits == 0, "dt 2 must not evict dt 1");
    d = enc_both(&c, &k, &b1.v, &want.v, key, bw1, SIZE_MAX, NULL, &rc, NULL);
    cr_assert_eq(d.hits, 1u);
    kz_snap_cache_fini(&k);

    /* Two ways: dt 1 and 2 both stay; dt 3 finds no room. */
    cr_assert_eq(kz_snap_cache_init(&k, 1, 2, NULL), KZ_OK);
    kz_snap_cache_begin(&k, 104);
    d = enc_both(&c, &k, &b2.v, &want.v, key, bw2, SIZE_MAX, NULL, &rc, NULL);
    d = enc_both(&c, &k, &b1.v, &want.v, key, bw1, SIZE_MAX, NULL, &rc, NULL);
    cr_assert_eq(k.stats.stores, 2u);
    d = enc_both(&c, &k, &b3.v, &want.v, key, bw3, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.stores == 0 && d.misses == 1);
    for (int r = 0; r < 3; r++) {
        d = enc_both(&c, &k, &b1.v, &want.v, key, bw1, SIZE_MAX, NULL, &rc, NULL);
        cr_assert_eq(d.hits, 1u);
        d = enc_both(&c, &k, &b2.v, &want.v, key, bw2, SIZE_MAX, NULL, &rc, NULL);
        cr_assert_eq(d.hits, 1u);
    }
    /* Keys are separate sets: key 0's entries do not serve another key. */
    kz_snap_cache_fini(&k);
    cr_assert_eq(kz_snap_cache_init(&k, 2, 1, NULL), KZ_OK);
    kz_snap_cache_begin(&k, 104);
    const uint32_t key1[1] = {1};
    d = enc_both(&c, &k, &b1.v, &want.v, key, bw1, SIZE_MAX, NULL, &rc, NULL);
    cr_assert_eq(d.stores, 1u);
    d = enc_both(&c, &k, &b1.v, &want.v, key1, bw1, SIZE_MAX, NULL, &rc, NULL);
    cr_assert_eq(d.stores, 1u);
    d = enc_both(&c, &k, &b1.v, &want.v, key, bw1, SIZE_MAX, NULL, &rc, NULL);
    cr_assert_eq(d.hits, 1u);
    kz_snap_cache_fini(&k);
}

Test(snapshot_cache, begin_invalidates_earlier_ticks)
{
    kz_snap_codec c = make_codec(CS_SLOTS);
    kz_snap_state w[5];
    walk_states(w, 42);
    cbox want, base;
    one_view(&want, 104, &w[4]);
    one_view(&base, 103, &w[3]);
    const uint32_t key[1] = {0};
    const kz_snap_state *bw[1] = {&w[3]};
    int rc;
    kz_snap_cache_stats d;
    kz_snap_cache k;
    cr_assert_eq(kz_snap_cache_init(&k, 1, 2, NULL), KZ_OK);
    /* Before the first begin the cache has no tick: refused. */
    cr_assert_eq(enc_cached(&c, &k, &base.v, &want.v, key, bw), KZ_EINVAL);
    kz_snap_cache_begin(&k, 104);
    d = enc_both(&c, &k, &base.v, &want.v, key, bw, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(rc == KZ_OK && d.stores == 1);
    /* The next tick: the same states, base and view renamed, must not
     * find tick 104's entry (its dt and payload would be the same here,
     * but the stamp says it is stale). */
    kz_snap_cache_begin(&k, 105);
    one_view(&want, 105, &w[4]);
    one_view(&base, 104, &w[3]);
    d = enc_both(&c, &k, &base.v, &want.v, key, bw, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(rc == KZ_OK && d.stores == 1 && d.hits == 0);
    /* Beginning the same tick again also starts afresh. */
    kz_snap_cache_begin(&k, 105);
    d = enc_both(&c, &k, &base.v, &want.v, key, bw, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.stores == 1 && d.hits == 0);
    /* A view of another tick than the cache's: refused. */
    one_view(&want, 106, &w[4]);
    cr_assert_eq(enc_cached(&c, &k, &base.v, &want.v, key, bw), KZ_EINVAL);
    kz_snap_cache_fini(&k);
    /* The stamp wrapping around: an entry of stamp 1, made 2^32 - 1
     * begins ago, must not come back when the stamp is 1 again. */
    one_view(&want, 105, &w[4]);
    cr_assert_eq(kz_snap_cache_init(&k, 1, 2, NULL), KZ_OK);
    kz_snap_cache_begin(&k, 105);
    cr_assert_eq(k.gen, 1u);
    d = enc_both(&c, &k, &base.v, &want.v, key, bw, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(rc == KZ_OK && d.stores == 1);
    k.gen = UINT32_MAX;   /* as if begun 2^32 - 2 more times */
    kz_snap_cache_begin(&k, 105);
    cr_assert_eq(k.gen, 1u);
    d = enc_both(&c, &k, &base.v, &want.v, key, bw, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(rc == KZ_OK && d.stores == 1 && d.hits == 0, "an entry outlived the wrap");
    kz_snap_cache_fini(&k);
}

Test(snapshot_cache, refuses_misuse)
{
    kz_snap_codec c = make_codec(CS_SLOTS), c2;
    cr_assert_eq(kz_snap_codec_init(&c2, 60, CS_SLOTS, 1000.0f), KZ_OK);
    kz_snap_cache k;
    cr_assert_eq(kz_snap_cache_init(&k, 0, 2, NULL), KZ_EINVAL);
    cr_assert_eq(kz_snap_cache_init(&k, 4, 0, NULL), KZ_EINVAL);
    cr_assert_eq(kz_snap_cache_init(&k, 4, KZ_SNAP_CACHE_MAX_WAYS + 1, NULL), KZ_EINVAL);
    cr_assert_eq(kz_snap_cache_init(&k, (1u << 24) + 1, 1, NULL), KZ_EINVAL);
    kz_snap_cache_fini(&k);   /* zeroed by the failed init: harmless */
    kz_snap_state w[5], v[5];
    walk_states(w, 42);
    walk_states(v, 43);
    cbox want, base;
    cbox_init(&want, 104);
    cbox_add(&want, 3, &w[4]);
    cbox_add(&want, 9, &v[4]);
    cbox_init(&base, 103);
    cbox_add(&base, 3, &w[3]);
    cbox_add(&base, 9, &v[3]);
    const kz_snap_state *bw[2] = {&w[3], &v[3]};
    cr_assert_eq(kz_snap_cache_init(&k, 4, 2, NULL), KZ_OK);
    kz_snap_cache_begin(&k, 104);
    /* A key out of range, on any entry (even one that is SAME), is
     * KZ_EINVAL with nothing written (enc_cached checks the writer). */
    const uint32_t bad[2] = {0, 4};
    cr_assert_eq(enc_cached(&c, &k, &base.v, &want.v, bad, bw), KZ_EINVAL);
    cbox same;
    cbox_init(&same, 103);
    cbox_add(&same, 3, &w[3]);
    cbox_add(&same, 9, &v[4]);
    cr_assert_eq(enc_cached(&c, &k, &same.v, &want.v, bad, bw), KZ_EINVAL);
    const uint32_t huge[2] = {UINT32_MAX, 0};
    cr_assert_eq(enc_cached(&c, &k, &base.v, &want.v, huge, bw), KZ_EINVAL);
    /* In range: fine. */
    const uint32_t good[2] = {3, 0};
    cr_assert_eq(enc_cached(&c, &k, &base.v, &want.v, good, bw), KZ_OK);
    /* Missing arrays. */
    static badge_book book;
    uint8_t buf[512];
    cbox sent;
    const uint32_t key[2] = {0, 1};
    kz_snap_encode_args a = {.base = &base.v, .want = &want.v, .budget_bits = SIZE_MAX,
                             .badge = badge_cb, .badge_ctx = &book, .cache = &k,
                             .key = NULL, .base_world = bw};
    kz_bitwriter wr;
    kz_bitwriter_init(&wr, buf, sizeof buf);
    cbox_init(&sent, 0);
    cr_assert_eq(kz_snap_encode(&c, &a, &wr, &sent.v, NULL, NULL), KZ_EINVAL);
    a.key = key;
    a.base_world = NULL;
    cr_assert_eq(kz_snap_encode(&c, &a, &wr, &sent.v, NULL, NULL), KZ_EINVAL);
    cr_assert_eq(kz_bitwriter_bits(&wr), 0u);
    /* Fine with both; then another codec in the same tick is refused. */
    a.base_world = bw;
    cr_assert_eq(kz_snap_encode(&c, &a, &wr, &sent.v, NULL, NULL), KZ_OK);
    kz_bitwriter_init(&wr, buf, sizeof buf);
    cr_assert_eq(kz_snap_encode(&c2, &a, &wr, &sent.v, NULL, NULL), KZ_EINVAL);
    cr_assert_eq(kz_bitwriter_bits(&wr), 0u);
    /* After begin, the other codec may bind. */
    kz_snap_cache_begin(&k, 104);
    cr_assert_eq(kz_snap_encode(&c2, &a, &wr, &sent.v, NULL, NULL), KZ_OK);
    /* An older view in use needs older_world; one not in use (a full
     * state) does not. */
    cbox older;
    cbox_init(&older, 102);
    cbox_add(&older, 3, &w[2]);
    a.older = &older.v;
    kz_bitwriter_init(&wr, buf, sizeof buf);
    cr_assert_eq(kz_snap_encode(&c2, &a, &wr, &sent.v, NULL, NULL), KZ_EINVAL);
    cr_assert_eq(kz_bitwriter_bits(&wr), 0u);
    const kz_snap_state *ow[2] = {&w[2], NULL};
    a.older_world = ow;
    cr_assert_eq(kz_snap_encode(&c2, &a, &wr, &sent.v, NULL, NULL), KZ_OK);
    a.base = NULL;
    a.older_world = NULL;
    kz_bitwriter_init(&wr, buf, sizeof buf);
    cr_assert_eq(kz_snap_encode(&c2, &a, &wr, &sent.v, NULL, NULL), KZ_OK);
    kz_snap_cache_fini(&k);
    kz_snap_cache_fini(&k);   /* twice: harmless */
}

Test(snapshot_cache, long_payloads_are_not_kept)
{
    kz_snap_codec c = make_codec(CS_SLOTS);
    rng_seed(99);
    kz_snap_state b, s;
    /* A VR avatar that changes everything by a lot: well over 320 bits. */
    random_state(&c, 42, &b);
    b.kind = KZ_KIND_AVATAR;
    b.flags = KZ_AVATAR_VR;
    s = b;
    for (int i = 0; i < 3; i++)
        s.pos[i] = b.pos[i] > 0 ? b.pos[i] - 90000 : b.pos[i] + 90000;
    s.anim ^= 0x5555;
    s.holder ^= 0x12345678;
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        s.rot[k] = random_rot();
        for (int i = 0; i < 3; i++)
            s.rel[k][i] = (int16_t)(b.rel[k][i] > 0 ? b.rel[k][i] - 1500 : b.rel[k][i] + 1500);
    }
    cbox want, base;
    one_view(&want, 104, &s);
    one_view(&base, 103, &b);
    const uint32_t key[1] = {0};
    const kz_snap_state *bw[1] = {&b};
    kz_snap_cache k;
    cr_assert_eq(kz_snap_cache_init(&k, 1, 2, NULL), KZ_OK);
    kz_snap_cache_begin(&k, 104);
    int rc;
    cbox sent;
    kz_snap_cache_stats d =
        enc_both(&c, &k, &base.v, &want.v, key, bw, SIZE_MAX, NULL, &rc, &sent);
    cr_assert_eq(rc, KZ_OK);
    cr_assert(d.stores == 0 && d.misses == 1, "a long payload was stored");
    /* The entry remembers "too long": the next client neither stores nor
     * tries again, and gets the same bytes. */
    d = enc_both(&c, &k, &base.v, &want.v, key, bw, SIZE_MAX, NULL, &rc, NULL);
    cr_assert(d.stores == 0 && d.hits == 1);
    /* Its body really is longer than an entry. */
    uint8_t buf[1024];
    kz_snap_encode_args a = {.base = &base.v, .want = &want.v, .budget_bits = SIZE_MAX};
    kz_bitwriter wr;
    kz_bitwriter_init(&wr, buf, sizeof buf);
    cr_assert_eq(kz_snap_encode(&c, &a, &wr, &sent.v, NULL, NULL), KZ_OK);
    cr_assert_gt(kz_bitwriter_bits(&wr), 36u + KZ_SNAP_CACHE_BITS);
    kz_snap_cache_fini(&k);
}

Test(snapshot_cache, encode_allocates_nothing)
{
    kz_counting_alloc ca;
    kz_counting_alloc_init(&ca, NULL);
    kz_allocator al = kz_counting_alloc_allocator(&ca);
    kz_snap_codec c = make_codec(CS_SLOTS);
    kz_snap_cache k;
    cr_assert_eq(kz_snap_cache_init(&k, 64, 2, &al), KZ_OK);
    cr_assert_eq(kz_counting_alloc_allocs(&ca), 1u);
    uint64_t allocs = kz_counting_alloc_allocs(&ca);
    kz_snap_state w[5];
    cbox want, base;
    uint32_t key[CS_SLOTS];
    const kz_snap_state *bw[CS_SLOTS];
    static kz_snap_state ws[CS_SLOTS][5];
    for (uint32_t t = 0; t < 3; t++) {
        kz_snap_cache_begin(&k, 104);
        cbox_init(&want, 104);
        cbox_init(&base, 103);
        for (uint32_t i = 0; i < 40; i++) {
            walk_states(w, 1 + i);
            memcpy(ws[i], w, sizeof w);
            cbox_add(&want, (uint16_t)i, &ws[i][4]);
            cbox_add(&base, (uint16_t)i, &ws[i][3]);
            key[i] = i;
            bw[i] = &ws[i][3];
        }
        int rc;
        for (int n = 0; n < 5; n++) {
            enc_both(&c, &k, &base.v, &want.v, key, bw, SIZE_MAX, NULL, &rc, NULL);
            cr_assert_eq(rc, KZ_OK);
            enc_both(&c, &k, &base.v, &want.v, key, bw, 200, NULL, &rc, NULL);
        }
    }
    cr_assert_eq(kz_counting_alloc_allocs(&ca), allocs, "encode allocated");
    cr_assert_gt(k.stats.hits, 0u);
    kz_snap_cache_fini(&k);
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0u);
    /* Out of memory: init fails cleanly. */
    ca.fail_after = (int64_t)kz_counting_alloc_allocs(&ca);
    cr_assert_eq(kz_snap_cache_init(&k, 64, 2, &al), KZ_ENOMEM);
    kz_snap_cache_fini(&k);
}
