/*
 * Snapshot codec micro-benchmark: what a crowd costs on the wire, and how
 * long encoding and decoding take. Motion is recorded first (seeded, 30
 * Hz, 300 ticks), quantized with kz_snap_quantize, then encoded:
 *
 *   desktop avatars walk at 1.4 +- 0.2 m/s, facing where they walk, with
 *   smooth turns (turn rate a bounded random walk, |w| <= 0.6 rad/s);
 *   VR avatars do the same and are tracked: the head bobs (2 cm at the
 *   step rate) and looks around (+-0.6 rad), the hands move along sums of
 *   sinusoids at 0.2-0.5 m/s relative to the root and turn with them;
 *   standing VR avatars keep moving head and hands; avatars at rest do
 *   not change at all.
 *
 * Scenes of 200 avatars each: at rest, walking desktop, walking VR,
 * standing VR, and a mixed crowd (60 % desktop, 40 % VR, stopping and
 * starting). For each, bits per avatar update = whole body bits (header,
 * record count, slot gaps, records) / (avatars x ticks encoded), with the
 * baseline 1 tick old and 4 ticks old (~130 ms round trip), with second
 * order (older view 1 tick before the baseline, as a server passes the
 * view acknowledged just before it; and for lag 4 also 4 ticks before it,
 * the baseline's own baseline) and with first order, next to (a)
 * naive floats (pos 3x32 + yaw 32 + anim 16, + 3 poses x 7 floats x 32
 * for VR) and (b) absolute quantized codes in fixed widths (slot, pos 3 x
 * pos_bits, vel 3 x 16, yaw, anim, flags, + 3 x (3 x 13 + 32) for VR),
 * both sent for every avatar every tick. Encode and decode time per
 * entity are medians over runs of the mixed crowd, baseline 1 tick old,
 * first and second order.
 *
 * Server encode per client-tick: what the server's tick pays per visible
 * entity per client. 100 walking avatars (60 desktop, 40 VR) are seen by
 * 500 clients, each with its own slot assignment (100 of 128 slots) and a
 * baseline 1 or 2 ticks old (drawn per client and tick, even odds), so
 * every client's body differs only in its slot gaps and baseline tick.
 * Each tick is encoded for every client without and with the payload
 * cache (kz_snap_cache, 2 ways, keys = entity index, base_world = the
 * world state of the baseline tick), in alternating order, and the two
 * outputs are checked byte for byte; first order, then second order with
 * the older view 1 tick before the baseline (older_world its world
 * states). Figures: ns per visible entity per
 * client-tick, medians over runs of 12 ticks; building the wanted views
 * is not timed.
 *
 *   kz-bench-snapshot            (KZ_BENCH_RUNS=n to change the run count)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/snapshot.h"

#include "kzb_util.h"

#define N_AV 200u
#define TICKS 300u
#define HZ 30u
#define DT (1.0 / HZ)
#define TWO_PI 6.283185307179586

static uint64_t rng = 0x5DEECE66DA3B1F27u;

static uint64_t rng_next(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * UINT64_C(2685821657736338717);
}

static double rng_unit(void)
{
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_range(double lo, double hi)
{
    return lo + (hi - lo) * rng_unit();
}

static void fail(const char *what)
{
    fprintf(stderr, "bench_snapshot: %s\n", what);
    exit(1);
}

/* Quaternion (x, y, z, w) of yaw about +y, then pitch about x, then roll
 * about z. */
static void euler_quat(double yaw, double pitch, double roll, float q[4])
{
    double cy = cos(yaw / 2), sy = sin(yaw / 2);
    double cp = cos(pitch / 2), sp = sin(pitch / 2);
    double cr = cos(roll / 2), sr = sin(roll / 2);
    /* q_yaw * q_pitch */
    double x = cy * sp, y = sy * cp, z = -sy * sp, w = cy * cp;
    /* times q_roll (0, 0, sr, cr) */
    q[0] = (float)(x * cr + y * sr);
    q[1] = (float)(y * cr - x * sr);
    q[2] = (float)(z * cr + w * sr);
    q[3] = (float)(w * cr - z * sr);
}

enum { MODE_REST, MODE_DESKTOP, MODE_VR, MODE_VR_STAND, MODE_MIXED };

typedef struct walker {
    double x, z, heading, turn, speed, base_speed;
    int vr, walking;
    double look, look_v, phase;
    double hand_a[2][3][2], hand_f[2][3][2], hand_p[2][3][2];   /* amplitude, Hz, phase */
    double rot_a[2][3], rot_f[2][3], rot_p[2][3];
} walker;

static void walker_init(walker *w, int mode)
{
    memset(w, 0, sizeof *w);
    w->x = rng_range(-100, 100);
    w->z = rng_range(-100, 100);
    w->heading = rng_range(0, TWO_PI);
    w->base_speed = rng_range(1.2, 1.6);
    w->vr = mode == MODE_VR || mode == MODE_VR_STAND || (mode == MODE_MIXED && rng_unit() < 0.4);
    w->walking = mode == MODE_DESKTOP || mode == MODE_VR || (mode == MODE_MIXED && rng_unit() < 0.6);
    w->phase = rng_range(0, TWO_PI);
    for (int h = 0; h < 2; h++) {
        for (int i = 0; i < 3; i++) {
            for (int k = 0; k < 2; k++) {
                /* Speed of one term ~ 2 pi f A: 0.05-0.12 m/s per term and
                 * axis, 0.2-0.5 m/s over all of them. */
                w->hand_f[h][i][k] = rng_range(0.3, 0.9);
                w->hand_a[h][i][k] = rng_range(0.015, 0.03);
                w->hand_p[h][i][k] = rng_range(0, TWO_PI);
            }
            w->rot_f[h][i] = rng_range(0.2, 0.5);
            w->rot_a[h][i] = rng_range(0.1, 0.3);
            w->rot_p[h][i] = rng_range(0, TWO_PI);
        }
    }
}

static double sines(const double a[2], const double f[2], const double p[2], double t)
{
    return a[0] * sin(TWO_PI * f[0] * t + p[0]) + a[1] * sin(TWO_PI * f[1] * t + p[1]);
}

/* One tick of motion, then the float state. */
static void walker_step(walker *w, int mode, uint32_t tick, kz_avatar_state *s)
{
    double t = tick * DT;
    if (mode == MODE_MIXED) {
        if (w->walking && rng_unit() < 1.0 / 150)
            w->walking = 0;
        else if (!w->walking && rng_unit() < 1.0 / 120)
            w->walking = 1;
    }
    /* Speed eases in and out (about half a second). */
    double target = w->walking ? w->base_speed : 0.0;
    w->speed += (target - w->speed) * 0.1;
    if (!w->walking && w->speed < 0.02)
        w->speed = 0;
    if (w->speed > 0) {
        w->turn += rng_range(-0.05, 0.05);
        w->turn = w->turn > 0.6 ? 0.6 : w->turn < -0.6 ? -0.6 : w->turn * 0.995;
        w->heading += w->turn * DT;
        w->x += w->speed * cos(w->heading) * DT;
        w->z += w->speed * sin(w->heading) * DT;
    }
    kz_avatar_state_rest(s);
    s->pos[0] = (float)w->x;
    s->pos[2] = (float)w->z;
    s->vel[0] = (float)(w->speed * cos(w->heading));
    s->vel[2] = (float)(w->speed * sin(w->heading));
    /* Yaw about +y, counter-clockwise from above: facing (cos, sin) in
     * (x, z) is yaw = -heading. */
    s->yaw = (float)-w->heading;
    if (!w->vr)
        return;
    s->flags = KZ_AVATAR_VR;
    w->look_v += rng_range(-0.03, 0.03);
    w->look_v = w->look_v > 0.4 ? 0.4 : w->look_v < -0.4 ? -0.4 : w->look_v;
    w->look += w->look_v * DT;
    if (fabs(w->look) > 0.6)
        w->look_v = -w->look_v;
    double yaw = -w->heading;
    double cy = cos(yaw), sy = sin(yaw);
    double bob = w->speed > 0 ? 0.02 * sin(TWO_PI * 1.8 * t + w->phase) * w->speed / 1.4 : 0.0;
    double fwd[3] = {cy, 0, -sy};   /* forward of yaw in (x, z) */
    /* Forward is (cos h, sin h) = (cos yaw, -sin yaw); right is its
     * clockwise perpendicular. */
    double right[3] = {sy, 0, cy};
    s->pose[KZ_POSE_HEAD].pos[0] = (float)(0.05 * fwd[0]);
    s->pose[KZ_POSE_HEAD].pos[1] = (float)(1.65 + bob);
    s->pose[KZ_POSE_HEAD].pos[2] = (float)(0.05 * fwd[2]);
    euler_quat(yaw + w->look, 0.15 * sin(0.3 * t + w->phase), 0, s->pose[KZ_POSE_HEAD].rot);
    for (int h = 0; h < 2; h++) {
        double side = h == 0 ? -0.22 : 0.22;
        double lx = side + sines(w->hand_a[h][0], w->hand_f[h][0], w->hand_p[h][0], t);
        double ly = 1.05 + sines(w->hand_a[h][1], w->hand_f[h][1], w->hand_p[h][1], t);
        double lf = 0.25 + sines(w->hand_a[h][2], w->hand_f[h][2], w->hand_p[h][2], t);
        kz_pose *p = &s->pose[KZ_POSE_LEFT_HAND + (uint32_t)h];
        p->pos[0] = (float)(lx * right[0] + lf * fwd[0]);
        p->pos[1] = (float)ly;
        p->pos[2] = (float)(lx * right[2] + lf * fwd[2]);
        double a[3];
        for (int i = 0; i < 3; i++)
            a[i] = w->rot_a[h][i] * sin(TWO_PI * w->rot_f[h][i] * t + w->rot_p[h][i]);
        euler_quat(yaw + a[0], a[1] - 0.3, a[2] + (h ? -0.4 : 0.4), p->rot);
    }
}

typedef struct scene {
    const char *name;
    int mode;
    kz_snap_state *st;   /* [TICKS][N_AV] */
    uint16_t slot[N_AV];
    double vr_share;
} scene;

static void record(const kz_snap_codec *c, scene *sc)
{
    static walker w[N_AV];
    sc->st = malloc(sizeof(kz_snap_state) * TICKS * N_AV);
    if (sc->st == NULL)
        fail("out of memory");
    uint32_t vr = 0;
    for (uint32_t i = 0; i < N_AV; i++) {
        walker_init(&w[i], sc->mode);
        vr += (uint32_t)w[i].vr;
        sc->slot[i] = (uint16_t)i;
    }
    sc->vr_share = (double)vr / N_AV;
    for (uint32_t t = 0; t < TICKS; t++) {
        for (uint32_t i = 0; i < N_AV; i++) {
            kz_avatar_state a;
            walker_step(&w[i], sc->mode, t, &a);
            if (kz_snap_quantize(c, 1000 + i, &a, &sc->st[t * N_AV + i]) != KZ_OK)
                fail("quantize failed");
        }
    }
}

static kz_snap_view view_at(scene *sc, uint32_t t)
{
    kz_snap_view v = {.tick = 1000 + t, .count = N_AV, .cap = N_AV, .slot = sc->slot,
                      .state = &sc->st[t * N_AV]};
    return v;
}

/* Bits per avatar update over the recording with the baseline `lag`
 * ticks old and, for second order, the older view `older` ticks before
 * the baseline (0: first order); the decoded view is checked against the
 * recording. */
static double bits_per_update(const kz_snap_codec *c, scene *sc, uint32_t lag, uint32_t older)
{
    static uint8_t buf[65536];
    static uint16_t sslot[N_AV], dslot[N_AV];
    static kz_snap_state sst[N_AV], dst[N_AV];
    uint64_t bits = 0, updates = 0;
    for (uint32_t t = lag + older; t < TICKS; t++) {
        kz_snap_view base = view_at(sc, t - lag), want = view_at(sc, t);
        kz_snap_view old = view_at(sc, t - lag - older);
        kz_snap_view sent = {.cap = N_AV, .slot = sslot, .state = sst};
        kz_snap_encode_args a = {.base = &base, .older = older ? &old : NULL, .want = &want,
                                 .budget_bits = SIZE_MAX};
        kz_bitwriter w;
        kz_bitwriter_init(&w, buf, sizeof buf);
        if (kz_snap_encode(c, &a, &w, &sent, NULL, NULL) != KZ_OK)
            fail("encode failed");
        bits += kz_bitwriter_bits(&w);
        updates += N_AV;
        size_t n = kz_bitwriter_finish(&w);
        kz_bitreader r;
        kz_bitreader_init(&r, buf, n);
        kz_snap_view out = {.cap = N_AV, .slot = dslot, .state = dst};
        if (kz_snap_decode_older(c, &r, &base, older ? &old : NULL, &out, NULL, NULL) != KZ_OK ||
            out.count != N_AV ||
            memcmp(dst, want.state, sizeof dst) != 0)
            fail("decoded view differs from the recording");
    }
    return (double)bits / (double)updates;
}

static void timing(const kz_snap_codec *c, scene *sc, size_t runs, int second_order)
{
    static uint8_t buf[TICKS][4096];
    static size_t len[TICKS];
    static uint16_t sslot[N_AV];
    static kz_snap_state sst[N_AV];
    double enc[64], dec[64];
    for (size_t r = 0; r < runs; r++) {
        uint64_t t0 = kzb_now_ns();
        for (uint32_t t = 2; t < TICKS; t++) {
            kz_snap_view base = view_at(sc, t - 1), want = view_at(sc, t), old = view_at(sc, t - 2);
            kz_snap_view sent = {.cap = N_AV, .slot = sslot, .state = sst};
            kz_snap_encode_args a = {.base = &base, .older = second_order ? &old : NULL,
                                     .want = &want, .budget_bits = SIZE_MAX};
            kz_bitwriter w;
            kz_bitwriter_init(&w, buf[t], sizeof buf[t]);
            if (kz_snap_encode(c, &a, &w, &sent, NULL, NULL) != KZ_OK)
                fail("encode failed");
            len[t] = kz_bitwriter_finish(&w);
        }
        uint64_t t1 = kzb_now_ns();
        uint64_t sink = 0;
        for (uint32_t t = 2; t < TICKS; t++) {
            kz_snap_view base = view_at(sc, t - 1), old = view_at(sc, t - 2);
            kz_snap_view out = {.cap = N_AV, .slot = sslot, .state = sst};
            kz_bitreader rd;
            kz_bitreader_init(&rd, buf[t], len[t]);
            if (kz_snap_decode_older(c, &rd, &base, second_order ? &old : NULL, &out, NULL, NULL) !=
                KZ_OK)
                fail("decode failed");
            sink += out.count;
        }
        uint64_t t2 = kzb_now_ns();
        kzb_sink(sink);
        double per = (double)(TICKS - 2) * N_AV;
        enc[r] = (double)(t1 - t0) / per;
        dec[r] = (double)(t2 - t1) / per;
    }
    kzb_report(second_order ? "mixed crowd, baseline 1 tick, second order: encode per entity"
                            : "mixed crowd, baseline 1 tick, first order: encode per entity",
               "ns", enc, runs);
    kzb_report(second_order ? "mixed crowd, baseline 1 tick, second order: decode per entity"
                            : "mixed crowd, baseline 1 tick, first order: decode per entity",
               "ns", dec, runs);
}

/* ---- server encode per client-tick -------------------------------------- */

#define SRV_ENT 100u
#define SRV_CLIENTS 500u
#define SRV_SLOTS 128u
#define SRV_TICKS 40u      /* recorded */
#define SRV_RUN_TICKS 12u  /* encoded per run */
#define SRV_HIST 4u        /* wanted views kept per client: ticks t .. t-3 */
#define SRV_START 3u       /* first tick encoded: ticks 0 .. 2 are the history */
#define SRV_BUF 2048u

typedef struct srv_client {
    uint16_t slot[SRV_ENT];    /* ascending */
    uint32_t key[SRV_ENT];     /* entity index of each slot */
    kz_snap_state hist[SRV_HIST][SRV_ENT];
    const kz_snap_state *bw[SRV_ENT];
    const kz_snap_state *ow[SRV_ENT];
    uint32_t lag;
} srv_client;

typedef struct srv_out {
    uint8_t buf[SRV_BUF];
    size_t len;
} srv_out;

static void srv_record(const kz_snap_codec *c, kz_snap_state *world)
{
    static walker w[SRV_ENT];
    for (uint32_t i = 0; i < SRV_ENT; i++)
        walker_init(&w[i], i < 60 ? MODE_DESKTOP : MODE_VR);
    for (uint32_t t = 0; t < SRV_TICKS; t++) {
        for (uint32_t i = 0; i < SRV_ENT; i++) {
            kz_avatar_state a;
            walker_step(&w[i], i < 60 ? MODE_DESKTOP : MODE_VR, t, &a);
            if (kz_snap_quantize(c, 5000 + i, &a, &world[t * SRV_ENT + i]) != KZ_OK)
                fail("quantize failed");
        }
    }
}

/* Each client sees every entity, in a slot of its own. */
static void srv_assign(srv_client *cl)
{
    uint16_t perm[SRV_SLOTS];
    uint32_t owner[SRV_SLOTS];
    for (uint32_t k = 0; k < SRV_SLOTS; k++) {
        perm[k] = (uint16_t)k;
        owner[k] = UINT32_MAX;
    }
    for (uint32_t k = SRV_SLOTS; k > 1; k--) {
        uint32_t j = (uint32_t)(rng_next() % k);
        uint16_t t = perm[k - 1];
        perm[k - 1] = perm[j];
        perm[j] = t;
    }
    for (uint32_t i = 0; i < SRV_ENT; i++)
        owner[perm[i]] = i;
    uint32_t n = 0;
    for (uint32_t k = 0; k < SRV_SLOTS; k++) {
        if (owner[k] != UINT32_MAX) {
            cl->slot[n] = (uint16_t)k;
            cl->key[n] = owner[k];
            n++;
        }
    }
}

/* The server's work outside the encoder, as it does it just before each
 * client's encode (so the wanted view is in cache, the baseline is not):
 * the wanted view of tick t and the world states of the baseline tick and
 * of the tick before it (the older view's). */
static void srv_prepare(srv_client *cl, const kz_snap_state *world, uint32_t t)
{
    kz_snap_state *want = cl->hist[t % SRV_HIST];
    for (uint32_t i = 0; i < SRV_ENT; i++)
        want[i] = world[t * SRV_ENT + cl->key[i]];
    for (uint32_t i = 0; i < SRV_ENT; i++) {
        cl->bw[i] = &world[(t - cl->lag) * SRV_ENT + cl->key[i]];
        cl->ow[i] = &world[(t - cl->lag - 1u) * SRV_ENT + cl->key[i]];
    }
}

/* Encodes tick t for every client; returns the encoders' time (the
 * preparation is not timed; reading the clock twice per client adds
 * well under 1 ns per entity). */
static uint64_t srv_encode_all(const kz_snap_codec *c, srv_client *cls, const kz_snap_state *world,
                               srv_out *out, uint32_t t, kz_snap_cache *cache, int second_order)
{
    static uint16_t sslot[SRV_ENT];
    static kz_snap_state sst[SRV_ENT];
    uint64_t ns = 0;
    for (uint32_t n = 0; n < SRV_CLIENTS; n++) {
        srv_client *cl = &cls[n];
        srv_prepare(cl, world, t);
        uint64_t t0 = kzb_now_ns();
        if (cache != NULL && n == 0)
            kz_snap_cache_begin(cache, 1000 + t);
        kz_snap_view base = {.tick = 1000 + t - cl->lag, .count = SRV_ENT, .cap = SRV_ENT,
                             .slot = cl->slot, .state = cl->hist[(t - cl->lag) % SRV_HIST]};
        kz_snap_view old = {.tick = 1000 + t - cl->lag - 1, .count = SRV_ENT, .cap = SRV_ENT,
                            .slot = cl->slot, .state = cl->hist[(t - cl->lag - 1) % SRV_HIST]};
        kz_snap_view want = {.tick = 1000 + t, .count = SRV_ENT, .cap = SRV_ENT,
                             .slot = cl->slot, .state = cl->hist[t % SRV_HIST]};
        kz_snap_view sent = {.cap = SRV_ENT, .slot = sslot, .state = sst};
        kz_snap_encode_args a = {.base = &base, .older = second_order ? &old : NULL, .want = &want,
                                 .budget_bits = SIZE_MAX, .cache = cache, .key = cl->key,
                                 .base_world = cl->bw, .older_world = cl->ow};
        kz_bitwriter w;
        kz_bitwriter_init(&w, out[n].buf, sizeof out[n].buf);
        if (kz_snap_encode(c, &a, &w, &sent, NULL, NULL) != KZ_OK)
            fail("server encode failed");
        out[n].len = kz_bitwriter_finish(&w);
        ns += kzb_now_ns() - t0;
    }
    return ns;
}

static void server_encode(size_t runs, int second_order)
{
    kz_snap_codec c;
    if (kz_snap_codec_init(&c, HZ, SRV_SLOTS, 1000.0f) != KZ_OK)
        fail("codec init failed");
    kz_snap_state *world = malloc(sizeof(kz_snap_state) * SRV_TICKS * SRV_ENT);
    srv_client *cls = calloc(SRV_CLIENTS, sizeof *cls);
    srv_out *plain = malloc(sizeof(srv_out) * SRV_CLIENTS);
    srv_out *cached = malloc(sizeof(srv_out) * SRV_CLIENTS);
    kz_snap_cache cache;
    if (world == NULL || cls == NULL || plain == NULL || cached == NULL ||
        kz_snap_cache_init(&cache, SRV_ENT, 2, NULL) != KZ_OK)
        fail("out of memory");
    srv_record(&c, world);
    for (uint32_t n = 0; n < SRV_CLIENTS; n++)
        srv_assign(&cls[n]);
    double unc[64], cac[64];
    uint64_t bytes = 0, bodies = 0;
    uint32_t t = SRV_START;
    for (size_t r = 0; r < runs; r++) {
        uint64_t ns_plain = 0, ns_cached = 0;
        for (uint32_t k = 0; k < SRV_RUN_TICKS; k++, t++) {
            if (t == SRV_TICKS)
                t = SRV_START;
            for (uint32_t n = 0; n < SRV_CLIENTS; n++) {
                if (t == SRV_START) {   /* the history of ticks 0 .. SRV_START - 1 */
                    for (uint32_t h = 0; h < SRV_START; h++)
                        for (uint32_t i = 0; i < SRV_ENT; i++)
                            cls[n].hist[h][i] = world[h * SRV_ENT + cls[n].key[i]];
                }
                cls[n].lag = 1u + (uint32_t)(rng_next() >> 63);
            }
            if (t & 1) {
                ns_plain += srv_encode_all(&c, cls, world, plain, t, NULL, second_order);
                ns_cached += srv_encode_all(&c, cls, world, cached, t, &cache, second_order);
            } else {
                ns_cached += srv_encode_all(&c, cls, world, cached, t, &cache, second_order);
                ns_plain += srv_encode_all(&c, cls, world, plain, t, NULL, second_order);
            }
            for (uint32_t n = 0; n < SRV_CLIENTS; n++) {
                if (plain[n].len != cached[n].len ||
                    memcmp(plain[n].buf, cached[n].buf, plain[n].len) != 0)
                    fail("cached encode differs from the plain one");
                bytes += plain[n].len;
                bodies++;
            }
        }
        double per = (double)SRV_RUN_TICKS * SRV_CLIENTS * SRV_ENT;
        unc[r] = (double)ns_plain / per;
        cac[r] = (double)ns_cached / per;
    }
    kz_snap_cache_stats st = cache.stats;
    const char *order = second_order ? "second order" : "first order";
    printf("server encode, %s: %u moving avatars (60 desktop, 40 VR) x %u clients, baseline 1-2 "
           "ticks%s, %.0f bytes per body; cache: %.1f %% of updates copied\n",
           order, SRV_ENT, SRV_CLIENTS, second_order ? ", older view 1 tick before it" : "",
           (double)bytes / (double)bodies,
           100.0 * (double)st.hits / (double)(st.hits + st.stores + st.misses));
    char name[128];
    snprintf(name, sizeof name, "server encode per visible entity per client-tick, %s, no cache",
             order);
    kzb_report(name, "ns", unc, runs);
    snprintf(name, sizeof name, "server encode per visible entity per client-tick, %s, cache",
             order);
    kzb_report(name, "ns", cac, runs);
    kz_snap_cache_fini(&cache);
    free(world);
    free(cls);
    free(plain);
    free(cached);
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "snapshot codec (200 avatars, 30 Hz, 300 recorded ticks, 1 km world)");
    size_t runs = kzb_runs();
    kz_snap_codec c;
    if (kz_snap_codec_init(&c, HZ, N_AV, 1000.0f) != KZ_OK)
        fail("codec init failed");
    scene scenes[] = {
        {"at rest", MODE_REST, NULL, {0}, 0},
        {"moving desktop", MODE_DESKTOP, NULL, {0}, 0},
        {"moving VR (walking)", MODE_VR, NULL, {0}, 0},
        {"moving VR (standing, tracked)", MODE_VR_STAND, NULL, {0}, 0},
        {"mixed crowd", MODE_MIXED, NULL, {0}, 0},
    };
    const double naive_desktop = 3 * 32 + 32 + 16, naive_vr = naive_desktop + 3 * 7 * 32;
    const double abs_desktop = c.slot_bits + 3.0 * c.pos_bits + 3 * 16 + 16 + 16 + 8;
    const double abs_vr = abs_desktop + 3 * (3 * 13 + 32);
    printf("%-32s %9s %9s %9s %9s %9s %12s %12s\n", "bits per avatar update", "lag 1", "lag 4",
           "lag 4 o4", "1st lag 1", "1st lag 4", "naive float", "abs. quant.");
    for (size_t i = 0; i < sizeof scenes / sizeof scenes[0]; i++) {
        scene *sc = &scenes[i];
        record(&c, sc);
        double b1 = bits_per_update(&c, sc, 1, 1), b4 = bits_per_update(&c, sc, 4, 1);
        double b44 = bits_per_update(&c, sc, 4, 4);
        double f1 = bits_per_update(&c, sc, 1, 0), f4 = bits_per_update(&c, sc, 4, 0);
        double vr = sc->vr_share;
        printf("%-32s %9.2f %9.2f %9.2f %9.2f %9.2f %12.1f %12.1f\n", sc->name, b1, b4, b44, f1, f4,
               naive_desktop + vr * (naive_vr - naive_desktop),
               abs_desktop + vr * (abs_vr - abs_desktop));
    }
    printf("lag 1, lag 4: second order, older view 1 tick before the baseline; lag 4 o4: "
           "4 ticks before it; 1st: first order (no older view)\n");
    printf("targets: at rest <= 2, moving desktop <= 32, moving VR <= 96 (lag 1)\n");
    timing(&c, &scenes[4], runs, 0);
    timing(&c, &scenes[4], runs, 1);
    server_encode(runs, 0);
    server_encode(runs, 1);
    for (size_t i = 0; i < sizeof scenes / sizeof scenes[0]; i++)
        free(scenes[i].st);
    kzb_end();
    return 0;
}
