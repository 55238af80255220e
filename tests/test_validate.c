/*
 * Cheat validation (sim/validate.c): each check with table-driven cases,
 * the fixes it makes, the clock drift detector against a seeded network
 * simulator (jitter, reordering, redundant copies, blackouts), the
 * consequence ladder, and that every limit comes from the config.
 *
 * The network simulator mirrors the server's input path: the client sends
 * one INPUT message per tick of its own clock carrying its last three
 * commands; messages arrive after a base delay plus seeded uniform jitter,
 * in arrival order; the server validates each command newer than the
 * newest it has (sim/server.c on_input) at the arrival time.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/quant.h>

#include "sim/validate.h"

#define S(x) ((kz_time_ns)((x) * 1e9))
#define T0 S(1000)   /* a server clock that did not start at zero */

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static kz_validate_config defaults(void)
{
    kz_validate_config c;
    kz_validate_config_default(&c);
    return c;
}

static kz_validate_config with(kz_validate_config c)
{
    cr_assert_eq(kz_validate_config_resolve(&c), KZ_OK);
    return c;
}

/* An honest desktop command at rest. */
static kz_wire_command rest_cmd(uint32_t tick)
{
    kz_wire_command c;
    memset(&c, 0, sizeof c);
    c.tick = tick;
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++)
        c.rot[p] = KZ_SNAP_ROT_REST;
    return c;
}

/* A standing VR user: head 1.6 m up, hands at waist height in front. */
static kz_wire_command vr_cmd(uint32_t tick)
{
    kz_wire_command c = rest_cmd(tick);
    c.flags = KZ_AVATAR_VR;
    c.rel[KZ_POSE_HEAD][1] = (int16_t)(1.6 * KZ_SNAP_REL_UNITS);
    c.rel[KZ_POSE_LEFT_HAND][0] = -300;
    c.rel[KZ_POSE_LEFT_HAND][1] = 1000;
    c.rel[KZ_POSE_LEFT_HAND][2] = 300;
    c.rel[KZ_POSE_RIGHT_HAND][0] = 300;
    c.rel[KZ_POSE_RIGHT_HAND][1] = 1000;
    c.rel[KZ_POSE_RIGHT_HAND][2] = 300;
    return c;
}

static double speed_of(const int16_t m[3])
{
    return sqrt((double)m[0] * m[0] + (double)m[1] * m[1] + (double)m[2] * m[2]) /
           KZ_SNAP_VEL_UNITS;
}

static double dist_codes(const int16_t a[3], const int16_t b[3])
{
    double d2 = 0;
    for (int i = 0; i < 3; i++)
        d2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(d2) / KZ_SNAP_REL_UNITS;
}

/* Validates `cmd` on a fresh client as its first command. */
static uint32_t first(const kz_validate_config *c, kz_wire_command *cmd, kz_validate_result *r)
{
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    return kz_validate_command(c, &cl, cmd, T0, r);
}

/* ---- configuration ------------------------------------------------------ */

Test(validate_config, zero_means_default)
{
    /* kz_validate_config has padding (before its derived doubles), which
     * neither an initializer nor a struct copy need zero: both sides are
     * zeroed whole first and filled in place, so memcmp compares fields. */
    kz_validate_config z;
    memset(&z, 0, sizeof z);
    cr_assert_eq(kz_validate_config_resolve(&z), KZ_OK);
    kz_validate_config d;
    memset(&d, 0, sizeof d);
    kz_validate_config_default(&d);
    cr_assert_eq(memcmp(&z, &d, sizeof z), 0);
    cr_assert_eq(d.tick_hz, 30u);
    cr_assert_float_eq(d.max_speed, 8.0f, 0);
    cr_assert_float_eq(d.clock_tolerance, 0.002f, 0);
    cr_assert_float_eq(d.clock_max_swing, 1.0f, 0);
    cr_assert_float_eq(d.input_rate, 37.5f, 0);
    cr_assert(d.points[KZ_VIOL_KIND_ACCEL] < 0, "acceleration is corrected, not struck");
    /* Resolving twice changes nothing. */
    kz_validate_config again;
    memcpy(&again, &d, sizeof again);  /* every byte, padding included */
    cr_assert_eq(kz_validate_config_resolve(&again), KZ_OK);
    cr_assert_eq(memcmp(&again, &d, sizeof d), 0);
}

Test(validate_config, refuses_bad_limits)
{
    static const struct {
        const char *name;
        size_t off;
        float v;
    } bad[] = {
        {"max_speed NaN", offsetof(kz_validate_config, max_speed), NAN},
        {"max_speed < 0", offsetof(kz_validate_config, max_speed), -1.0f},
        {"max_accel inf", offsetof(kz_validate_config, max_accel), INFINITY},
        {"hand_reach < 0", offsetof(kz_validate_config, hand_reach), -0.5f},
        {"head_min > head_max", offsetof(kz_validate_config, head_min), 1.99f},
        {"head_max beyond wire", offsetof(kz_validate_config, head_max), 2.5f},
        {"head_min beyond wire", offsetof(kz_validate_config, head_min), -2.5f},
        {"clock_max_swing < 0", offsetof(kz_validate_config, clock_max_swing), -1.0f},
        {"clock_forgive infinite", offsetof(kz_validate_config, clock_forgive), INFINITY},
        {"clock_window too long", offsetof(kz_validate_config, clock_window),
         KZ_VALIDATE_CLOCK_WINDOW_MAX + 1.0f},
        {"kick_score NaN", offsetof(kz_validate_config, kick_score), NAN},
        {"points NaN", offsetof(kz_validate_config, points), NAN},
        {"chat rate < 0", offsetof(kz_validate_config, rate), -1.0f},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kz_validate_config c = {0};
        memcpy((char *)&c + bad[i].off, &bad[i].v, sizeof(float));
        cr_expect_eq(kz_validate_config_resolve(&c), KZ_EINVAL, "%s", bad[i].name);
    }
    kz_validate_config c = {.tick_hz = KZ_SNAP_MAX_TICK_HZ + 1};
    cr_expect_eq(kz_validate_config_resolve(&c), KZ_EINVAL);
    /* Negative points are allowed: "never strike this kind". */
    kz_validate_config p = {0};
    p.points[KZ_VIOL_KIND_SPEED] = -1;
    cr_expect_eq(kz_validate_config_resolve(&p), KZ_OK);
}

/* ---- speed and acceleration --------------------------------------------- */

/* No acceleration limit to speak of, so a first command may move at once. */
static kz_validate_config no_accel(kz_validate_config c)
{
    c.max_accel = 1e6f;
    return with(c);
}

Test(validate_speed, table)
{
    kz_validate_config c = no_accel((kz_validate_config){0});   /* 8 m/s */
    static const struct {
        double v[3];    /* m/s */
        int flagged;
    } cases[] = {
        {{0, 0, 0}, 0},
        {{8, 0, 0}, 0},
        {{0, 0, -8}, 0},
        {{4.6188, 4.6188, 4.6188}, 0},   /* |v| = 8.0000 */
        {{8.003, 0, 0}, 0},              /* within the one-code rounding slack */
        {{8.01, 0, 0}, 1},
        {{6, 6, 0}, 1},                  /* 8.49 */
        {{100, 0, 0}, 1},
        {{-127, 127, -127}, 1},          /* the largest codes */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kz_wire_command cmd = rest_cmd(1);
        for (int k = 0; k < 3; k++)
            cmd.move[k] = (int16_t)lrint(cases[i].v[k] * KZ_SNAP_VEL_UNITS);
        kz_wire_command before = cmd;
        kz_validate_result r;
        uint32_t v = first(&c, &cmd, &r);
        cr_expect_eq(!!(v & KZ_VIOL_SPEED), cases[i].flagged, "case %zu", i);
        cr_expect_eq(v, r.violations);
        cr_expect_eq(r.changed, cases[i].flagged, "case %zu", i);
        cr_expect_eq(r.drop, 0);
        if (cases[i].flagged) {
            double s = speed_of(cmd.move);
            cr_expect(s <= 8.0 && s > 7.98, "case %zu: clamped to %f", i, s);
            /* Direction kept: each component scaled by the same factor. */
            for (int k = 0; k < 3; k++)
                cr_expect(fabs((double)cmd.move[k] - before.move[k] * (s / speed_of(before.move))) <= 1.0);
        } else {
            cr_expect_eq(memcmp(&cmd, &before, sizeof cmd), 0, "case %zu untouched", i);
        }
    }
}

Test(validate_speed, speed_hack_clamped_every_tick)
{
    kz_validate_config c = defaults();
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    for (uint32_t t = 1; t <= 300; t++) {
        kz_wire_command cmd = rest_cmd(t);
        cmd.move[0] = 32767;   /* 128 m/s forever */
        uint32_t v = kz_validate_command(&c, &cl, &cmd, T0 + t * S(1.0 / 30), NULL);
        cr_assert(v & KZ_VIOL_SPEED);
        cr_assert(speed_of(cmd.move) <= 8.0);
    }
}

Test(validate_accel, table)
{
    kz_validate_config c = defaults();   /* 40 m/s^2 at 30 Hz: 1.333 m/s per tick */
    static const struct {
        double from, to;   /* m/s along x */
        uint32_t gap;      /* ticks between the commands */
        int flagged;
        double expect;     /* resulting x velocity */
    } cases[] = {
        {0, 1.3, 1, 0, 1.3},
        {0, 2.0, 1, 1, 1.3333},
        {0, 8.0, 1, 1, 1.3333},
        {8.0, -8.0, 1, 1, 6.6667},
        {0, 2.0, 2, 0, 2.0},       /* a lost command spreads the change */
        {0, 8.0, 3, 1, 4.0},
        {0, 8.0, 100, 0, 8.0},     /* capped at a second's worth: 40 m/s */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kz_validate_client cl;
        kz_validate_client_init(&cl);
        /* Ramp honestly to `from` first (8 m/s takes 6 ticks). */
        for (uint32_t t = 1; t <= 10; t++) {
            kz_wire_command a = rest_cmd(t);
            a.move[0] = (int16_t)lrint(cases[i].from * KZ_SNAP_VEL_UNITS);
            kz_validate_command(&c, &cl, &a, T0 + t * S(1.0 / 30), NULL);
        }
        kz_wire_command b = rest_cmd(10 + cases[i].gap);
        b.move[0] = (int16_t)lrint(cases[i].to * KZ_SNAP_VEL_UNITS);
        uint32_t v = kz_validate_command(&c, &cl, &b, T0 + (10 + cases[i].gap) * S(1.0 / 30), NULL);
        cr_expect_eq(!!(v & KZ_VIOL_ACCEL), cases[i].flagged, "case %zu", i);
        cr_expect(fabs((double)b.move[0] / KZ_SNAP_VEL_UNITS - cases[i].expect) < 0.01,
                  "case %zu: %f", i, (double)b.move[0] / KZ_SNAP_VEL_UNITS);
    }
}

Test(validate_accel, ramp_reaches_target_within_limit)
{
    kz_validate_config c = defaults();
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    double prev = 0;
    for (uint32_t t = 1; t <= 10; t++) {
        kz_wire_command cmd = rest_cmd(t);
        cmd.move[2] = 8 * KZ_SNAP_VEL_UNITS;
        kz_validate_command(&c, &cl, &cmd, T0 + t * S(1.0 / 30), NULL);
        double now = (double)cmd.move[2] / KZ_SNAP_VEL_UNITS;
        cr_assert(now - prev <= 40.0 / 30 + 1e-9);
        prev = now;
    }
    cr_expect_float_eq(prev, 8.0, 1e-9, "8 m/s reached after 6 ticks");
}

/* ---- poses -------------------------------------------------------------- */

Test(validate_pose, table)
{
    kz_validate_config c = defaults();   /* head 0.1 .. 1.95 m, reach 1.2 m */
    static const struct {
        const char *name;
        int vr;
        int16_t head[3], left[3];
        int flagged;
        int16_t head_y;    /* expected head height code after */
    } cases[] = {
        {"standing", 1, {0, 1638, 0}, {-300, 1000, 300}, 0, 1638},
        {"head below floor", 1, {0, -200, 0}, {-300, -100, 300}, 1, 102},
        {"head at floor", 1, {0, 0, 0}, {0, 0, 300}, 1, 102},
        {"head above limit", 1, {0, 2040, 0}, {0, 1500, 0}, 1, 1997},
        {"lying down", 1, {0, 150, 0}, {500, 100, 0}, 0, 150},
        {"desktop at rest", 0, {0, 0, 0}, {0, 0, 0}, 0, 0},
        {"desktop head below root", 0, {0, -500, 0}, {0, -500, 0}, 0, -500},
        {"hand 3 m from head", 1, {0, 1024, 0}, {2048, -1024, 1024}, 1, 1024},
        {"hand 1.25 m from head", 1, {0, 1638, 0}, {1280, 1638, 0}, 1, 1638},
        {"hand 1.19 m from head", 1, {0, 1638, 0}, {1218, 1638, 0}, 0, 1638},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kz_wire_command cmd = rest_cmd(1);
        cmd.flags = cases[i].vr ? KZ_AVATAR_VR : 0;
        memcpy(cmd.rel[KZ_POSE_HEAD], cases[i].head, sizeof cases[i].head);
        memcpy(cmd.rel[KZ_POSE_LEFT_HAND], cases[i].left, sizeof cases[i].left);
        memcpy(cmd.rel[KZ_POSE_RIGHT_HAND], cases[i].head, sizeof cases[i].head);
        kz_validate_result r;
        uint32_t v = first(&c, &cmd, &r);
        cr_expect_eq(v, cases[i].flagged ? KZ_VIOL_POSE : 0u, "%s: %#x", cases[i].name, v);
        cr_expect_eq(r.changed, cases[i].flagged, "%s", cases[i].name);
        cr_expect_eq(cmd.rel[KZ_POSE_HEAD][1], cases[i].head_y, "%s: head %d", cases[i].name,
                     cmd.rel[KZ_POSE_HEAD][1]);
        double reach = dist_codes(cmd.rel[KZ_POSE_LEFT_HAND], cmd.rel[KZ_POSE_HEAD]);
        cr_expect(reach <= 1.2 + 1e-9, "%s: reach %f", cases[i].name, reach);
        for (unsigned p = 0; p < KZ_POSE_COUNT; p++)
            for (int k = 0; k < 3; k++)
                cr_expect(abs(cmd.rel[p][k]) <= KZ_SNAP_REL_MAX);
    }
}

Test(validate_pose, hand_pulled_toward_head_keeps_direction)
{
    kz_validate_config c = defaults();
    kz_wire_command cmd = vr_cmd(1);
    /* Right hand 3 m from the head, straight out along +x and down. */
    cmd.rel[KZ_POSE_RIGHT_HAND][0] = 2048;
    cmd.rel[KZ_POSE_RIGHT_HAND][1] = (int16_t)(1638 - 2172);
    cmd.rel[KZ_POSE_RIGHT_HAND][2] = 0;
    cr_assert_eq(first(&c, &cmd, NULL), KZ_VIOL_POSE);
    const int16_t *h = cmd.rel[KZ_POSE_HEAD], *r = cmd.rel[KZ_POSE_RIGHT_HAND];
    double d = dist_codes(r, h);
    cr_expect(d <= 1.2 && d > 1.198, "pulled to the reach: %f", d);
    /* Same direction from the head as asked: (2048, -2172) normalized. */
    double ax = 2048 / hypot(2048, 2172), ay = -2172 / hypot(2048, 2172);
    cr_expect(fabs((r[0] - h[0]) / (d * 1024) - ax) < 2e-3);
    cr_expect(fabs((r[1] - h[1]) / (d * 1024) - ay) < 2e-3);
    /* The left hand was fine and stays where it was. */
    kz_wire_command ref = vr_cmd(1);
    cr_expect_eq(memcmp(cmd.rel[KZ_POSE_LEFT_HAND], ref.rel[KZ_POSE_LEFT_HAND], 6), 0);
}

Test(validate_pose, offsets_beyond_wire_clamped)
{
    kz_validate_config c = defaults();
    kz_wire_command cmd = rest_cmd(1);
    cmd.rel[KZ_POSE_HEAD][0] = 30000;   /* not a decoder output; still caught */
    cr_expect_eq(first(&c, &cmd, NULL), KZ_VIOL_POSE);
    cr_expect_eq(cmd.rel[KZ_POSE_HEAD][0], KZ_SNAP_REL_MAX);
}

/* ---- rotations ---------------------------------------------------------- */

static uint32_t encode(const float q[4])
{
    uint64_t code;
    cr_assert_eq(kz_quat_encode(q, KZ_SNAP_ROT_K, &code), KZ_OK);
    return (uint32_t)code;
}

static uint32_t rot_code(uint32_t idx, uint32_t a, uint32_t b, uint32_t c)
{
    return idx << (3 * KZ_SNAP_ROT_K) | a << (2 * KZ_SNAP_ROT_K) | b << KZ_SNAP_ROT_K | c;
}

/* Differential: every code the real encoder makes is accepted. */
Test(validate_rot, every_encoder_code_accepted)
{
    kz_validate_config c = defaults();
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    uint64_t seed = 0x1234567;
    const float h = 0.70710678f;
    const float special[][4] = {
        {0, 0, 0, 1}, {1, 0, 0, 0}, {0.5f, 0.5f, 0.5f, 0.5f}, {-0.5f, 0.5f, -0.5f, 0.5f},
        {h, h, 0, 0}, {0, h, 0, h}, {h, 0, 0, -h}, {0.57735f, 0.57735f, 0.57735f, 0},
    };
    for (uint32_t t = 1; t <= 200000; t++) {
        float q[4];
        if (t <= sizeof special / sizeof special[0]) {
            memcpy(q, special[t - 1], sizeof q);
        } else {
            /* Random rotations, and ones near the ties between components. */
            double n = 0;
            for (int i = 0; i < 4; i++) {
                q[i] = (float)(rng_unit(&seed) * 2 - 1);
                if (t % 3 == 0)
                    q[i] = (q[i] < 0 ? -0.5f : 0.5f) + (float)(rng_unit(&seed) - 0.5) * 0.01f;
                n += (double)q[i] * q[i];
            }
            for (int i = 0; i < 4; i++)
                q[i] = (float)(q[i] / sqrt(n));
        }
        kz_wire_command cmd = rest_cmd(t);
        cmd.rot[t % 3] = encode(q);
        uint32_t want = cmd.rot[t % 3];
        uint32_t v = kz_validate_command(&c, &cl, &cmd, T0 + t * S(1.0 / 30), NULL);
        cr_assert_eq(v & KZ_VIOL_ROTATION, 0u, "code %#x of (%f %f %f %f)", want, q[0], q[1],
                     q[2], q[3]);
        cr_assert_eq(cmd.rot[t % 3], want);
    }
}

Test(validate_rot, impossible_codes_replaced_by_last_good)
{
    kz_validate_config c = defaults();
    const uint32_t top = (1u << KZ_SNAP_ROT_K) - 2, mid = (1u << (KZ_SNAP_ROT_K - 1)) - 1;
    static const char *names[] = {"field 2^k-1", "all kept at +max", "kept sum of squares > 1",
                                  "kept larger than the dropped one"};
    const uint32_t bad[] = {
        rot_code(3, top + 1, mid, mid),
        rot_code(3, top, top, top),
        rot_code(0, top, top, mid),          /* 0.707^2 * 2 = 1: nothing left */
        rot_code(2, mid + 450, mid, mid + 450),   /* 0.62, 0.62: dropped 0.47 < 0.62 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kz_validate_client cl;
        kz_validate_client_init(&cl);
        const float q[4] = {0, 0.38268343f, 0, 0.92387953f};   /* 45 degrees of yaw */
        kz_wire_command good = rest_cmd(1);
        good.rot[KZ_POSE_HEAD] = encode(q);
        cr_assert_eq(kz_validate_command(&c, &cl, &good, T0, NULL), 0u);
        kz_wire_command cmd = rest_cmd(2);
        cmd.rot[KZ_POSE_HEAD] = bad[i];
        kz_validate_result r;
        uint32_t v = kz_validate_command(&c, &cl, &cmd, T0 + S(1.0 / 30), &r);
        cr_expect_eq(v, KZ_VIOL_ROTATION, "%s", names[i]);
        cr_expect_eq(r.changed, 1);
        cr_expect_eq(cmd.rot[KZ_POSE_HEAD], good.rot[KZ_POSE_HEAD], "%s", names[i]);
        cr_expect_eq(cmd.rot[KZ_POSE_LEFT_HAND], KZ_SNAP_ROT_REST);
    }
    /* Before any good code, the rest rotation stands in. */
    kz_wire_command cmd = rest_cmd(1);
    cmd.rot[KZ_POSE_RIGHT_HAND] = rot_code(1, top, top, top);
    cr_expect_eq(first(&c, &cmd, NULL), KZ_VIOL_ROTATION);
    cr_expect_eq(cmd.rot[KZ_POSE_RIGHT_HAND], KZ_SNAP_ROT_REST);
}

/* ---- float poses -------------------------------------------------------- */

static kz_avatar_state vr_floats(void)
{
    kz_avatar_state s;
    kz_avatar_state_rest(&s);
    s.flags = KZ_AVATAR_VR;
    s.vel[0] = 1.5f;
    s.pose[KZ_POSE_HEAD].pos[1] = 1.6f;
    s.pose[KZ_POSE_LEFT_HAND].pos[1] = 1.0f;
    s.pose[KZ_POSE_LEFT_HAND].pos[0] = -0.3f;
    s.pose[KZ_POSE_RIGHT_HAND].pos[1] = 1.0f;
    s.pose[KZ_POSE_RIGHT_HAND].pos[0] = 0.3f;
    return s;
}

Test(validate_floats, nan_and_inf_refused_everywhere)
{
    kz_validate_config c = defaults();
    const float poison[] = {NAN, -NAN, INFINITY, -INFINITY};
    /* Every float field of the state, one at a time. */
    kz_avatar_state probe = vr_floats();
    float *fields[64];
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        fields[n++] = &probe.pos[i];
        fields[n++] = &probe.vel[i];
    }
    fields[n++] = &probe.yaw;
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++) {
        for (int i = 0; i < 3; i++)
            fields[n++] = &probe.pose[p].pos[i];
        for (int i = 0; i < 4; i++)
            fields[n++] = &probe.pose[p].rot[i];
    }
    cr_assert_eq(n, 28u);
    for (size_t f = 0; f < n; f++) {
        for (size_t k = 0; k < sizeof poison / sizeof poison[0]; k++) {
            kz_avatar_state s = vr_floats();
            *(float *)((char *)&s + ((char *)fields[f] - (char *)&probe)) = poison[k];
            kz_avatar_state before = s;
            uint32_t v = 0;
            cr_expect_eq(kz_validate_pose_floats(&c, &s, &v), KZ_ENOTFINITE, "field %zu", f);
            cr_expect_eq(v, KZ_VIOL_POSE);
            cr_expect_eq(memcmp(&s, &before, sizeof s), 0, "untouched");
        }
    }
}

Test(validate_floats, plausibility_table)
{
    kz_validate_config c = defaults();
    static const struct {
        const char *name;
        int field;   /* what to break */
        uint32_t want;
    } cases[] = {
        {"honest", 0, 0},
        {"speed 20 m/s", 1, KZ_VIOL_SPEED},
        {"hand 3 m from head", 2, KZ_VIOL_POSE},
        {"head below floor", 3, KZ_VIOL_POSE},
        {"head above limit", 4, KZ_VIOL_POSE},
        {"quaternion of length 2", 5, KZ_VIOL_POSE},
        {"quaternion of length 0", 6, KZ_VIOL_POSE},
        {"offset beyond 2 m", 7, KZ_VIOL_POSE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kz_avatar_state s = vr_floats();
        switch (cases[i].field) {
        case 1: s.vel[2] = 20.0f; break;
        case 2: s.pose[KZ_POSE_LEFT_HAND].pos[0] = -2.0f; s.pose[KZ_POSE_LEFT_HAND].pos[1] = -0.6f;
                s.pose[KZ_POSE_LEFT_HAND].pos[2] = 1.4f; break;
        case 3: s.pose[KZ_POSE_HEAD].pos[1] = -0.4f; break;
        case 4: s.pose[KZ_POSE_HEAD].pos[1] = 1.99f; break;
        case 5: s.pose[KZ_POSE_HEAD].rot[3] = 2.0f; break;
        case 6: s.pose[KZ_POSE_HEAD].rot[3] = 0.0f; break;
        case 7: s.pose[KZ_POSE_RIGHT_HAND].pos[2] = 5.0f; break;
        default: break;
        }
        uint32_t v = 99;
        cr_expect_eq(kz_validate_pose_floats(&c, &s, &v), KZ_OK, "%s", cases[i].name);
        cr_expect_eq(v, cases[i].want, "%s: %#x", cases[i].name, v);
        /* Whatever came in, what goes out is plausible. */
        double sp = sqrt((double)s.vel[0] * s.vel[0] + (double)s.vel[1] * s.vel[1] +
                         (double)s.vel[2] * s.vel[2]);
        cr_expect(sp <= 8.0 + 1e-5, "%s", cases[i].name);
        float hy = s.pose[KZ_POSE_HEAD].pos[1];
        cr_expect(hy >= 0.1f && hy <= 1.95f, "%s: head %f", cases[i].name, hy);
        for (unsigned p = 0; p < KZ_POSE_COUNT; p++) {
            const float *q = s.pose[p].rot;
            double n = sqrt((double)q[0] * q[0] + (double)q[1] * q[1] + (double)q[2] * q[2] +
                            (double)q[3] * q[3]);
            cr_expect(fabs(n - 1.0) <= 1e-3, "%s: |q| %f", cases[i].name, n);
            for (int k = 0; k < 3; k++)
                cr_expect(fabsf(s.pose[p].pos[k]) <= KZ_AVATAR_REACH);
        }
        for (unsigned p = KZ_POSE_LEFT_HAND; p <= KZ_POSE_RIGHT_HAND; p++) {
            double d2 = 0;
            for (int k = 0; k < 3; k++) {
                double d = (double)s.pose[p].pos[k] - s.pose[KZ_POSE_HEAD].pos[k];
                d2 += d * d;
            }
            cr_expect(sqrt(d2) <= 1.2 + 1e-5, "%s: reach %f", cases[i].name, sqrt(d2));
        }
    }
}

/* ---- clock drift: the path between client and server -------------------- */

/* One INPUT datagram as the server receives it. */
typedef struct net_msg {
    double arrive;     /* server seconds (the datagram's arrival stamp) */
    uint32_t newest;   /* newest tick in the message */
    uint32_t count;    /* commands carried, newest first */
} net_msg;

/* Arrival order; datagrams that arrive together in the order sent (qsort
 * is not stable). */
static int by_arrival(const void *a, const void *b)
{
    const net_msg *x = a, *y = b;
    if (x->arrive != y->arrive)
        return x->arrive < y->arrive ? -1 : 1;
    return (x->newest > y->newest) - (x->newest < y->newest);
}

typedef struct sim_out {
    double first_clock;   /* server seconds of the first CLOCK flag; -1 = never */
    double first_kick;
    uint32_t seen;        /* all violations */
    uint32_t commands;
    uint32_t flagged;     /* commands with any violation */
    uint32_t clock_flags; /* commands flagged CLOCK */
    double free_gain;     /* most client time claimed beyond server time (s, since
                           * the first command) by a command not flagged CLOCK */
    kz_validate_verdict worst;
    uint32_t reason;
} sim_out;

/* The server's input path (sim/server.c on_input): every command newer
 * than the newest seen, oldest first, validated at the arrival time of
 * the datagram that carried it, then fed to the ladder. `m` is in
 * arrival order. */
static sim_out serve(const kz_validate_config *c, const net_msg *m, size_t count)
{
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    sim_out o = {.first_clock = -1, .first_kick = -1, .free_gain = -1e9};
    uint32_t newest = 0, tick0 = 0;
    double t0 = 0;
    for (size_t i = 0; i < count; i++) {
        kz_time_ns now = T0 + S(m[i].arrive);
        for (uint32_t j = m[i].count; j-- > 0;) {
            uint32_t tk = m[i].newest - j;
            if (tk <= newest)
                continue;
            newest = tk;
            if (o.commands == 0) {
                tick0 = tk;
                t0 = m[i].arrive;
            }
            kz_wire_command cmd = rest_cmd(tk);
            uint32_t v = kz_validate_command(c, &cl, &cmd, now, NULL);
            o.commands++;
            o.seen |= v;
            o.flagged += v != 0;
            o.clock_flags += (v & KZ_VIOL_CLOCK) != 0;
            double gain = (double)(tk - tick0) / c->tick_hz - (m[i].arrive - t0);
            if (!(v & KZ_VIOL_CLOCK) && gain > o.free_gain)
                o.free_gain = gain;
            if ((v & KZ_VIOL_CLOCK) && o.first_clock < 0)
                o.first_clock = m[i].arrive;
            uint32_t why;
            kz_validate_verdict verdict = kz_validate_consequence(c, &cl, v, now, &why);
            if (verdict > o.worst)
                o.worst = verdict;
            if (verdict == KZ_VALIDATE_KICK && o.first_kick < 0) {
                o.first_kick = m[i].arrive;
                o.reason = why;
            }
        }
    }
    return o;
}

/* Seconds after which a client (1 + e) fast is flagged on a quiet path:
 * once its lead over the tolerated line passes the budget. A command that
 * waited `jitter` more than the best of its group needs that much more
 * lead, jitter / (e - tolerance) seconds more. */
static double catch_time(const kz_validate_config *c, double e, double jitter)
{
    return ((double)c->clock_max_swing + c->clock_slack + jitter) / (e - c->clock_tolerance);
}

/* ---- a jittery path: reordering, loss, blackouts, stalls ---------------- */

typedef struct sim_plan {
    double seconds;        /* how long the client runs */
    double drift;          /* client clock rate - 1 (0.1 = 10% fast) */
    double fast_from;      /* drift applies from this client second on (0: always) */
    double jitter;         /* delay = base + uniform [0, jitter) seconds */
    double blackout_at;    /* messages sent in [at, at + len) are lost ... */
    double blackout_len;
    int freeze;            /* ... or, if set, the client stalls instead and catches up */
    double drop_at;        /* the base delay drops by drop_len seconds here (a queue drains) */
    double drop_len;
    uint32_t per_tick;     /* commands a client tick produces (a flood: > 1); 0 = 1 */
    uint64_t seed;
} sim_plan;

/*
 * Runs one client through a jittery path into the validator. Client tick
 * k (of its own clock) happens at real time k / (hz (1 + drift)); after
 * the drift onset the real clock maps accordingly. A freeze delays every
 * tick due during it to its end (the client catches up in one frame).
 * Messages arrive after 30 ms plus seeded uniform jitter, reordered.
 */
static sim_out simulate(const kz_validate_config *c, const sim_plan *p)
{
    uint64_t seed = p->seed ? p->seed : 42;
    double hz = c->tick_hz;
    uint32_t per = p->per_tick ? p->per_tick : 1;
    size_t n = (size_t)(p->seconds * hz * (1.0 + fabs(p->drift)) * per) + 8;
    net_msg *m = calloc(n, sizeof *m);
    cr_assert(m);
    size_t count = 0;
    uint32_t tick = 100;
    double t = 0;
    for (;;) {
        double rate = hz * per * (t >= p->fast_from ? 1.0 + p->drift : 1.0);
        t += 1.0 / rate;
        if (t >= p->seconds || count == n)
            break;
        double send = t;
        if (t >= p->blackout_at && t < p->blackout_at + p->blackout_len) {
            if (!p->freeze)
                continue;   /* lost */
            send = p->blackout_at + p->blackout_len;
        }
        tick++;
        double base = 0.030 + (p->drop_len > 0 && send < p->drop_at ? p->drop_len : 0.0);
        m[count].arrive = send + base + p->jitter * rng_unit(&seed);
        m[count].newest = tick;
        m[count].count = 3;
        count++;
    }
    qsort(m, count, sizeof *m, by_arrival);
    sim_out o = serve(c, m, count);
    free(m);
    return o;
}

/* ---- a congested uplink: one FIFO whose queueing delay swings ----------- */

typedef enum path_shape {
    PATH_SQUARE,     /* `hold` s at low, `hold` s at high, and again */
    PATH_SAWTOOTH,   /* fills from low to high over `hold` s, drains at once, `hold` s low */
    PATH_RANDOM      /* a seeded level in [low, high] every 0.25..1.75 `hold` s */
} path_shape;

typedef struct fifo_plan {
    double seconds;     /* how long the client runs */
    double drift;       /* client clock rate - 1 */
    double fast_from;   /* client second the drift starts */
    double low, high;   /* one-way delay of the path, s */
    double hold;        /* s, see path_shape */
    path_shape shape;
    double jitter;      /* extra uniform delay [0, jitter) s; the FIFO keeps order */
    double loss;        /* fraction of datagrams lost */
    double stamp;       /* s, arrival stamps rounded up to this grid (an I/O pass,
                         * a server tick); 0 = exact */
    uint64_t seed;
} fifo_plan;

typedef struct path_state {
    double seg_end;     /* PATH_RANDOM: end of the current level */
    double level;
    uint64_t rng;
} path_state;

/* Delay a datagram sent at `t` would see if nothing were queued ahead of
 * it (send times are non-decreasing). */
static double path_delay(const fifo_plan *p, path_state *st, double t)
{
    double span = p->high - p->low, phase = fmod(t, 2.0 * p->hold);
    switch (p->shape) {
    case PATH_SQUARE:
        return phase < p->hold ? p->low : p->high;
    case PATH_SAWTOOTH:
        return phase < p->hold ? p->low + span * phase / p->hold : p->low;
    case PATH_RANDOM:
        while (t >= st->seg_end) {
            st->level = p->low + span * rng_unit(&st->rng);
            st->seg_end += p->hold * (0.25 + 1.5 * rng_unit(&st->rng));
        }
        return st->level;
    }
    return p->low;
}

/*
 * The honest client of the simulator above sends each tick's datagram
 * (its last three commands) into a FIFO: a datagram leaves no earlier
 * than the one before it, so when the delay falls (another device stops
 * uploading) the queue drains in one burst, and when it rises the
 * datagrams stop coming for a while. Arrivals are stamped on the
 * server's grid, never early.
 */
static sim_out through_fifo(const kz_validate_config *c, const fifo_plan *p)
{
    uint64_t seed = p->seed ? p->seed : 7;
    path_state st = {.rng = seed * 0x9E3779B97F4A7C15ull + 1};
    double hz = c->tick_hz;
    size_t n = (size_t)(p->seconds * hz * (1.0 + fabs(p->drift))) + 8;
    net_msg *m = calloc(n, sizeof *m);
    cr_assert(m);
    size_t count = 0;
    uint32_t tick = 5000;
    double t = 0, last = 0;
    while (count < n) {
        t += 1.0 / (hz * (t >= p->fast_from ? 1.0 + p->drift : 1.0));
        if (t >= p->seconds)
            break;
        tick++;
        double d = path_delay(p, &st, t) + p->jitter * rng_unit(&seed);
        if (rng_unit(&seed) < p->loss)
            continue;
        double at = t + d > last ? t + d : last;
        last = at;
        m[count].arrive = p->stamp > 0 ? ceil(at / p->stamp) * p->stamp : at;
        m[count].newest = tick;
        m[count].count = 3;
        count++;
    }
    sim_out o = serve(c, m, count);
    free(m);
    return o;
}

/* ---- honest clients on congested paths ---------------------------------- */

static void expect_clean(const sim_out *o, const char *what, uint64_t seed)
{
    cr_expect_eq(o->seen, 0u, "%s seed %llu: violations %#x (%u CLOCK, first at %.2f s)", what,
                 (unsigned long long)seed, o->seen, o->clock_flags, o->first_clock);
    cr_expect_eq(o->worst, KZ_VALIDATE_NONE, "%s", what);
}

Test(validate_clock_path, swing_20_to_500_ms_every_3_s_never_flagged)
{
    kz_validate_config c = defaults();
    for (uint64_t seed = 1; seed <= 5; seed++) {
        fifo_plan p = {.seconds = 120, .low = 0.020, .high = 0.500, .hold = 3,
                       .shape = PATH_SQUARE, .jitter = 0.005, .loss = 0.02,
                       .stamp = 0.001, .seed = seed};
        sim_out o = through_fifo(&c, &p);
        expect_clean(&o, "20<->500 ms", seed);
        cr_expect(o.commands > 3500, "%u commands", o.commands);
    }
}

Test(validate_clock_path, swing_20_to_1000_ms_never_flagged)
{
    kz_validate_config c = defaults();
    static const path_shape shapes[] = {PATH_SQUARE, PATH_SAWTOOTH, PATH_RANDOM};
    static const double holds[] = {3, 1, 7};
    /* Exact stamps, I/O-pass stamps, and stamps of the sim tick that read
     * the datagram (the server before it kept arrival times). */
    static const double stamps[] = {0, 0.001, 1.0 / 30};
    for (size_t s = 0; s < 3; s++)
        for (size_t h = 0; h < 3; h++)
            for (size_t g = 0; g < 3; g++) {
                fifo_plan p = {.seconds = 120, .low = 0.020, .high = 1.000, .hold = holds[h],
                               .shape = shapes[s], .jitter = 0.010, .loss = 0.05,
                               .stamp = stamps[g], .seed = 1 + s * 9 + h * 3 + g};
                sim_out o = through_fifo(&c, &p);
                char what[64];
                snprintf(what, sizeof what, "shape %zu hold %.0f stamp %.3f", s, holds[h],
                         stamps[g]);
                expect_clean(&o, what, p.seed);
            }
}

Test(validate_clock_path, constant_300_ms_never_flagged)
{
    kz_validate_config c = defaults();
    for (uint64_t seed = 1; seed <= 3; seed++) {
        fifo_plan p = {.seconds = 120, .low = 0.300, .high = 0.300, .hold = 1,
                       .jitter = 0.010, .loss = 0.02, .stamp = 0.001, .seed = seed};
        sim_out o = through_fifo(&c, &p);
        expect_clean(&o, "constant 300 ms", seed);
    }
}

Test(validate_clock_path, honest_clock_errors_never_flagged_over_ten_minutes)
{
    /* A clock within the tolerance, exact, or slow, on a path swinging a
     * full second: ten minutes, not one flag. */
    kz_validate_config c = defaults();
    const double drifts[] = {0.0015, 0.0, -0.02};
    for (size_t d = 0; d < sizeof drifts / sizeof drifts[0]; d++) {
        fifo_plan p = {.seconds = 600, .drift = drifts[d], .low = 0.020, .high = 1.000,
                       .hold = 3, .shape = PATH_RANDOM, .jitter = 0.010, .loss = 0.02,
                       .stamp = 0.001, .seed = 11 + d};
        sim_out o = through_fifo(&c, &p);
        expect_clean(&o, "drift", (uint64_t)d);
        cr_expect(o.commands > 17000, "%u commands", o.commands);
    }
}

Test(validate_clock_path, honest_jitter_and_stalls_never_flagged)
{
    kz_validate_config c = defaults();
    for (uint64_t seed = 1; seed <= 3; seed++) {
        sim_plan p = {.seconds = 600, .drift = 0.0015, .jitter = 0.080, .seed = seed};
        sim_out o = simulate(&c, &p);
        expect_clean(&o, "80 ms jitter", seed);
    }
    for (int freeze = 0; freeze <= 1; freeze++) {
        for (uint64_t seed = 1; seed <= 5; seed++) {
            /* 2 s lost, or a 2 s stall after which the client sends every
             * tick it owes in one frame. */
            sim_plan p = {.seconds = 60, .drift = 0.0015, .jitter = 0.060, .blackout_at = 20,
                          .blackout_len = 2.0, .freeze = freeze, .seed = seed};
            sim_out o = simulate(&c, &p);
            expect_clean(&o, freeze ? "stall" : "blackout", seed);
        }
    }
    /* A queue of a second that drains at once. */
    for (uint64_t seed = 1; seed <= 5; seed++) {
        sim_plan p = {.seconds = 60, .drift = 0.0015, .jitter = 0.040, .drop_at = 30,
                      .drop_len = 1.0, .seed = seed};
        sim_out o = simulate(&c, &p);
        expect_clean(&o, "1 s drain", seed);
    }
}

Test(validate_clock_path, repeated_stalls_with_catch_up_never_flagged)
{
    kz_validate_config c = defaults();
    /* Stalls every 10 s, each 2 s long, for a minute: catch-up after each,
     * every owed tick at one instant. */
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    uint32_t tick = 1, seen = 0;
    for (int cycle = 0; cycle < 6; cycle++) {
        double base = cycle * 10.0;
        for (int k = 0; k < 8 * 30; k++) {   /* 8 s of normal ticks */
            kz_wire_command cmd = rest_cmd(tick++);
            seen |= kz_validate_command(&c, &cl, &cmd, T0 + S(base + k / 30.0), NULL);
        }
        for (int k = 0; k < 60; k++) {       /* 2 s of ticks, all at the end */
            kz_wire_command cmd = rest_cmd(tick++);
            seen |= kz_validate_command(&c, &cl, &cmd, T0 + S(base + 10.0), NULL);
        }
    }
    cr_expect_eq(seen, 0u, "%#x", seen);
}

/* ---- fast clocks ---------------------------------------------------------- */

Test(validate_clock, fast_clocks_caught_by_their_bound)
{
    kz_validate_config c = defaults();
    static const double fast[] = {0.10, 0.05, 0.03, 0.01};
    for (size_t f = 0; f < sizeof fast / sizeof fast[0]; f++) {
        /* 30 ms of path and 10 ms of jitter. */
        double bound = 0.040 + catch_time(&c, fast[f], 0.010);
        for (uint64_t seed = 1; seed <= 5; seed++) {
            fifo_plan p = {.seconds = bound + 20, .drift = fast[f], .low = 0.030, .high = 0.030,
                           .hold = 1, .jitter = 0.010, .loss = 0.02, .stamp = 0.001,
                           .seed = seed};
            sim_out o = through_fifo(&c, &p);
            cr_expect(o.first_clock >= 0 && o.first_clock <= bound,
                      "%.0f%% fast seed %llu: first flag at %.2f s, bound %.2f s", fast[f] * 100,
                      (unsigned long long)seed, o.first_clock, bound);
            /* Not before it has run a full swing ahead. */
            cr_expect(o.first_clock >= c.clock_max_swing / fast[f], "%.0f%%: flagged at %.2f s",
                      fast[f] * 100, o.first_clock);
            cr_expect_eq(o.worst, KZ_VALIDATE_KICK, "a sustained speed hack ends in a kick");
            cr_expect_eq(o.reason, KZ_VIOL_CLOCK);
            cr_expect(o.first_kick <= o.first_clock + 8.0, "kicked %.2f s after the flag",
                      o.first_kick - o.first_clock);
        }
    }
}

Test(validate_clock, ten_percent_fast_caught_on_swinging_paths)
{
    /* Only a command through the quiet path shows the full lead, so on a
     * swinging path a fast clock is caught at the first one after its
     * lead passes the budget: at most one congested stretch (up to 1.75
     * holds of the random shape, plus its delay) later than on a quiet
     * path. */
    kz_validate_config c = defaults();
    static const double highs[] = {0.5, 1.0};
    static const path_shape shapes[] = {PATH_SQUARE, PATH_SAWTOOTH, PATH_RANDOM};
    for (size_t h = 0; h < 2; h++)
        for (size_t s = 0; s < 3; s++)
            for (uint64_t seed = 1; seed <= 3; seed++) {
                fifo_plan p = {.seconds = 40, .drift = 0.10, .low = 0.020, .high = highs[h],
                               .hold = 3, .shape = shapes[s], .jitter = 0.010, .loss = 0.02,
                               .stamp = 0.001, .seed = seed};
                double bound = catch_time(&c, 0.10, 0.010) + 1.75 * p.hold + p.high;
                sim_out o = through_fifo(&c, &p);
                cr_expect(o.first_clock >= 0 && o.first_clock <= bound,
                          "high %.1f shape %zu seed %llu: first flag at %.2f s", highs[h], s,
                          (unsigned long long)seed, o.first_clock);
                cr_expect_eq(o.worst, KZ_VALIDATE_KICK);
            }
}

Test(validate_clock, ten_percent_fast_after_honest_minute)
{
    kz_validate_config c = defaults();
    double bound = 60 + 0.030 + catch_time(&c, 0.10, 0.060);
    for (uint64_t seed = 1; seed <= 5; seed++) {
        sim_plan p = {.seconds = 90, .drift = 0.10, .fast_from = 60, .jitter = 0.060,
                      .seed = seed};
        sim_out o = simulate(&c, &p);
        cr_expect(o.first_clock >= 60 && o.first_clock <= bound,
                  "seed %llu: onset at 60 s, flagged at %.2f s", (unsigned long long)seed,
                  o.first_clock);
        cr_expect_eq(o.worst, KZ_VALIDATE_KICK);
    }
}

/* ---- cheats that bank time ------------------------------------------------ */

/* A scripted client: each command's tick and the time it is sent; the
 * path is a quiet 30 ms, one command a datagram. */
typedef struct script {
    net_msg *m;
    size_t n, cap;
    uint32_t tick;
} script;

static void script_send(script *s, double send)
{
    cr_assert(s->n < s->cap);
    s->tick++;
    s->m[s->n++] = (net_msg){.arrive = send + 0.030, .newest = s->tick, .count = 1};
}

static script script_new(size_t cap)
{
    script s = {.m = calloc(cap, sizeof(net_msg)), .cap = cap, .tick = 700};
    cr_assert(s.m);
    return s;
}

/* Ticks at `rate` times real time over [from, to), each sent `late` s
 * after it is due but all by `to` (what is held back goes out when the
 * phase ends). Returns the time the next phase starts. */
static double script_run(script *s, double from, double to, double rate, double late)
{
    double t = from;
    for (; t < to; t += 1.0 / (30.0 * rate))
        script_send(s, t + late < to ? t + late : to);
    return t;
}

static sim_out script_serve(script *s, const kz_validate_config *c)
{
    qsort(s->m, s->n, sizeof *s->m, by_arrival);
    sim_out o = serve(c, s->m, s->n);
    free(s->m);
    return o;
}

/* The most client time a command may claim beyond server time (since the
 * first command) without being flagged, whatever strikes were taken. */
static double gain_bound(const kz_validate_config *c, double seconds)
{
    return 2.0 * c->clock_max_swing + c->clock_slack + c->clock_tolerance * seconds + 1e-6;
}

/* Honest for 20 s, stalled for 2 s, then every owed tick sent in one
 * frame (datagrams 0.2 ms apart), then honest again. */
static sim_out stall_catch_up(const kz_validate_config *c)
{
    script s = script_new(2000);
    script_run(&s, 0, 20, 1.0, 0);
    for (int k = 0; k < 60; k++)
        script_send(&s, 22.0 + k * 0.0002);
    script_run(&s, 22.0 + 1.0 / 30, 40, 1.0, 0);
    return script_serve(&s, c);
}

Test(validate_clock_cheat, held_back_delay_cannot_be_spent)
{
    /* Honest for 10 s, then every command held back 1 s for 20 s (a path
     * that looks a second slower), then all released and the clock run
     * 10 % fast: the second it held back lowered its own ceiling, so it
     * is flagged half a second into the spending. */
    kz_validate_config c = defaults();
    script s = script_new(4000);
    double t = script_run(&s, 0, 10, 1.0, 0);
    t = script_run(&s, t, 30, 1.0, 1.0);
    script_run(&s, t, 60, 1.1, 0);
    sim_out o = script_serve(&s, &c);
    cr_expect(o.first_clock >= 30 && o.first_clock <= 31.0, "first flag at %.2f s",
              o.first_clock);
    cr_expect(o.free_gain <= c.clock_slack + c.clock_tolerance * 31 + 0.01,
              "claimed %.3f s ahead unflagged", o.free_gain);
    cr_expect_eq(o.worst, KZ_VALIDATE_KICK);
}

Test(validate_clock_cheat, slow_first_banks_nothing)
{
    /* A minute 10 % slow puts the client 6 s behind; the floor follows it
     * down, so turning 10 % fast is caught as soon as from a standing start. */
    kz_validate_config c = defaults();
    script s = script_new(6000);
    double t = script_run(&s, 0, 60, 0.9, 0);
    script_run(&s, t, 90, 1.1, 0);
    sim_out o = script_serve(&s, &c);
    /* The floor is the least delayed of each clock_window, so at the turn
     * it sits up to a window's fall above the lowest lead. */
    double bound = 60.03 + catch_time(&c, 0.10, 0) + c.clock_window;
    cr_expect(o.first_clock >= 60 && o.first_clock <= bound, "first flag at %.2f s",
              o.first_clock);
    cr_expect_eq(o.worst, KZ_VALIDATE_KICK);
}

Test(validate_clock_cheat, alternating_bursts_gain_at_most_the_swing)
{
    kz_validate_config c = defaults();
    /* 4 s at 20 % fast, 4 s at 20 % slow: on average real time, never
     * more than 0.8 s ahead, the same as a path swinging 0.8 s. */
    script s = script_new(5000);
    double t = 0;
    while (t < 120) {
        t = script_run(&s, t, t + 4, 1.2, 0);
        t = script_run(&s, t, t + 4, 0.8, 0);
    }
    sim_out o = script_serve(&s, &c);
    cr_expect_eq(o.seen, 0u, "%#x", o.seen);
    cr_expect(o.free_gain <= c.clock_max_swing + c.clock_slack + c.clock_tolerance * 120,
              "%.3f s ahead", o.free_gain);
    /* 4 s at 30 % fast, 4 s at 20 % slow: 5 % fast on average, banked in
     * bursts. Caught, kicked, and never further ahead unflagged than the
     * bound. */
    s = script_new(5000);
    t = 0;
    while (t < 120) {
        t = script_run(&s, t, t + 4, 1.3, 0);
        t = script_run(&s, t, t + 4, 0.8, 0);
    }
    o = script_serve(&s, &c);
    cr_expect(o.first_clock >= 0 && o.first_clock <= 30, "first flag at %.2f s", o.first_clock);
    cr_expect_eq(o.worst, KZ_VALIDATE_KICK);
    cr_expect(o.free_gain <= gain_bound(&c, 120), "%.3f s ahead unflagged", o.free_gain);
}

Test(validate_clock_cheat, time_jumps_table)
{
    static const struct {
        uint32_t first, second;   /* ticks skipped at 10 s and at 20 s */
        int flagged;
        int kicked;
    } cases[] = {
        {27, 0, 0, 0},            /* 0.9 s: within the swing a client may bank */
        {27, 27, 1, 0},           /* the budget is spent, not renewed by waiting */
        {45, 0, 1, 0},            /* 1.5 s, a swing too far: a strike, then followed */
        {300, 0, 1, 1},           /* 10 s, beyond what the floor may follow: flagged for good */
        {0x80000005u, 0, 1, 1},   /* past the half range: not a step back */
    };
    kz_validate_config c = defaults();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        script s = script_new(2000);
        double t = script_run(&s, 0, 10, 1.0, 0);
        s.tick += cases[i].first;
        t = script_run(&s, t, 20, 1.0, 0);
        s.tick += cases[i].second;
        script_run(&s, t, 50, 1.0, 0);
        sim_out o = script_serve(&s, &c);
        cr_expect_eq(o.clock_flags != 0, cases[i].flagged, "case %zu: %u flags", i,
                     o.clock_flags);
        cr_expect_eq(o.worst == KZ_VALIDATE_KICK, cases[i].kicked, "case %zu: verdict %d", i,
                     (int)o.worst);
        cr_expect(o.free_gain <= gain_bound(&c, 50), "case %zu: %.3f s ahead unflagged", i,
                  o.free_gain);
    }
}

Test(validate_clock_cheat, tick_below_the_last_is_a_jump_not_a_delay)
{
    /* The server passes only newer ticks; called directly with an older
     * one, the validator counts it forward modulo 2^32 rather than as a
     * command a long way late that would lower the floor. */
    kz_validate_config c = defaults();
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    uint32_t seen = 0;
    for (uint32_t k = 0; k < 60; k++) {
        kz_wire_command cmd = rest_cmd(1000 + k);
        seen |= kz_validate_command(&c, &cl, &cmd, T0 + k * S(1.0 / 30), NULL);
    }
    cr_expect_eq(seen, 0u);
    kz_wire_command back = rest_cmd(500);
    cr_expect_eq(kz_validate_command(&c, &cl, &back, T0 + S(2.0), NULL) & KZ_VIOL_CLOCK,
                 KZ_VIOL_CLOCK);
    cr_expect(cl.clock_floor >= -0.1, "the floor was not lowered: %f", cl.clock_floor);
}

Test(validate_clock_cheat, strikes_buy_a_bounded_lead)
{
    /* A cheat that takes a strike now and then to move its allowance up:
     * 1.5 s of ticks skipped every 20 s, slower than the score decays to
     * a kick. The floor follows it at most to the first lead plus the
     * swing, and from then on every command is flagged: kicked. */
    kz_validate_config c = defaults();
    script s = script_new(12000);
    double t = 0;
    while (t < 300) {
        t = script_run(&s, t, t + 20, 1.0, 0);
        s.tick += 45;
    }
    sim_out o = script_serve(&s, &c);
    cr_expect_eq(o.worst, KZ_VALIDATE_KICK);
    cr_expect(o.first_kick > 0 && o.first_kick < 80, "kicked at %.2f s", o.first_kick);
    cr_expect(o.free_gain <= gain_bound(&c, 300), "%.3f s ahead unflagged", o.free_gain);
}

/* ---- input budget ------------------------------------------------------- */

Test(validate_flood, sustained_flood_dropped_and_kicked)
{
    kz_validate_config c = defaults();
    /* Three commands per tick, for 20 s. */
    sim_plan p = {.seconds = 20, .per_tick = 3, .jitter = 0.010};
    sim_out o = simulate(&c, &p);
    cr_expect(o.seen & KZ_VIOL_FLOOD);
    cr_expect_eq(o.worst, KZ_VALIDATE_KICK);
    cr_expect(o.first_kick > 0 && o.first_kick < 10, "kicked at %f", o.first_kick);
}

Test(validate_flood, budget_table)
{
    static const struct {
        float rate, burst;
        uint32_t n;          /* commands sent at one instant */
        uint32_t accepted;
    } cases[] = {
        {0, 0, 90, 90},      /* default burst: 3 s at 30 Hz */
        {0, 0, 91, 90},
        {0, 8, 20, 8},
        {100, 1, 5, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kz_validate_config c = with((kz_validate_config){.input_rate = cases[i].rate,
                                                         .input_burst = cases[i].burst});
        kz_validate_client cl;
        kz_validate_client_init(&cl);
        uint32_t ok = 0;
        for (uint32_t k = 1; k <= cases[i].n; k++) {
            kz_wire_command cmd = rest_cmd(k);
            kz_validate_result r;
            uint32_t v = kz_validate_command(&c, &cl, &cmd, T0, &r);
            cr_expect_eq(!!(v & KZ_VIOL_FLOOD), r.drop);
            ok += !r.drop;
        }
        cr_expect_eq(ok, cases[i].accepted, "case %zu: %u", i, ok);
    }
    /* The bucket refills at input_rate. */
    kz_validate_config c = with((kz_validate_config){.input_rate = 10, .input_burst = 2});
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    uint32_t ok = 0;
    for (uint32_t k = 1; k <= 100; k++) {
        kz_wire_command cmd = rest_cmd(k);
        kz_validate_result r;
        kz_validate_command(&c, &cl, &cmd, T0 + k * S(0.01), &r);
        ok += !r.drop;   /* (a hundred ticks a second also trips the clock) */
    }
    cr_expect(ok >= 11 && ok <= 13, "2 + 10/s over 1 s: %u", ok);
}

/* ---- consequences -------------------------------------------------------- */

Test(validate_ladder, single_violation_is_a_strike_not_a_kick)
{
    kz_validate_config c = defaults();
    static const uint32_t kinds[] = {KZ_VIOL_SPEED, KZ_VIOL_ROTATION, KZ_VIOL_TELEPORT,
                                     KZ_VIOL_CLOCK, KZ_VIOL_FLOOD, KZ_VIOL_CHAT, KZ_VIOL_GRAB,
                                     KZ_VIOL_ALL};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        kz_validate_client cl;
        kz_validate_client_init(&cl);
        uint32_t why = 7;
        cr_expect_eq(kz_validate_consequence(&c, &cl, kinds[i], T0, &why), KZ_VALIDATE_STRIKE,
                     "kind %#x", kinds[i]);
        cr_expect_eq(why, 0u);
    }
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    cr_expect_eq(kz_validate_consequence(&c, &cl, 0, T0, NULL), KZ_VALIDATE_NONE);
    /* Kinds without points are corrected only, however often. */
    for (int k = 0; k < 10000; k++) {
        cr_assert_eq(kz_validate_consequence(&c, &cl, KZ_VIOL_ACCEL | KZ_VIOL_POSE | KZ_VIOL_VOICE,
                                             T0 + (kz_time_ns)k * S(0.01), NULL),
                     KZ_VALIDATE_CORRECT);
    }
    cr_expect_eq(cl.counts[KZ_VIOL_KIND_ACCEL], 10000u);
    cr_expect_eq(cl.counts[KZ_VIOL_KIND_POSE], 10000u);
    cr_expect(kz_validate_score(&c, &cl, T0 + S(100)) == 0.0);
}

Test(validate_ladder, repeated_violations_kick_with_reason)
{
    kz_validate_config c = defaults();   /* speed 10 points, once a second, kick at 100 */
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    double kicked_at = -1;
    for (int k = 0; k < 30 * 30; k++) {
        kz_time_ns now = T0 + (kz_time_ns)k * S(1.0 / 30);
        uint32_t why = 0;
        kz_validate_verdict v = kz_validate_consequence(&c, &cl, KZ_VIOL_SPEED, now, &why);
        if (v == KZ_VALIDATE_KICK) {
            kicked_at = k / 30.0;
            cr_expect_eq(why, KZ_VIOL_SPEED);
            break;
        }
        cr_assert(v == KZ_VALIDATE_STRIKE || v == KZ_VALIDATE_CORRECT);
    }
    /* Ten strikes, a second apart, less the decay: about 10.4 s. */
    cr_expect(kicked_at > 9 && kicked_at < 12, "kicked at %f s", kicked_at);
    /* A kicked client stays kicked, and the client sees why. */
    uint32_t why = 0;
    cr_expect_eq(kz_validate_consequence(&c, &cl, 0, T0 + S(100), &why), KZ_VALIDATE_KICK);
    cr_expect_eq(why, KZ_VIOL_SPEED);
    cr_expect_str_eq(kz_validate_reason_text(why), "kicked: moving faster than this world allows");
}

Test(validate_ladder, strikes_decay_to_zero)
{
    kz_validate_config c = defaults();   /* half-life 60 s */
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    for (int k = 0; k < 9; k++)
        cr_assert_eq(kz_validate_consequence(&c, &cl, KZ_VIOL_SPEED, T0 + k * S(1), NULL),
                     KZ_VALIDATE_STRIKE);
    double s0 = kz_validate_score(&c, &cl, T0 + S(8));
    cr_expect(s0 > 85 && s0 < 90, "%f", s0);
    cr_expect_float_eq(kz_validate_score(&c, &cl, T0 + S(68)), s0 / 2, 1e-9);
    cr_expect(kz_validate_score(&c, &cl, T0 + S(8 + 60 * 40)) < 1e-9);
    /* After the decay, the same nine strikes again do not kick. */
    for (int k = 0; k < 9; k++)
        cr_expect_eq(kz_validate_consequence(&c, &cl, KZ_VIOL_SPEED, T0 + S(3000 + k), NULL),
                     KZ_VALIDATE_STRIKE);
    /* Within the cooldown a kind is struck once. */
    double before = kz_validate_score(&c, &cl, T0 + S(3008.5));
    cr_expect_eq(kz_validate_consequence(&c, &cl, KZ_VIOL_SPEED, T0 + S(3008.5), NULL),
                 KZ_VALIDATE_CORRECT);
    cr_expect_float_eq(kz_validate_score(&c, &cl, T0 + S(3008.5)), before, 1e-9);
}

Test(validate_ladder, reason_texts)
{
    for (unsigned k = 0; k < KZ_VIOL_KINDS; k++) {
        const char *t = kz_validate_reason_text(1u << k);
        cr_assert(t && strlen(t) > 0 && strlen(t) <= KZ_NOTICE_MAX_BYTES);
        for (unsigned j = 0; j < k; j++)
            cr_expect_str_neq(t, kz_validate_reason_text(1u << j));
    }
    cr_expect_str_eq(kz_validate_reason_text(0), "kicked by the server");
}

/* ---- actions, grabs, teleports ----------------------------------------- */

Test(validate_actions, buckets_table)
{
    kz_validate_config c = defaults();
    static const struct {
        unsigned action;
        uint32_t amount, burst_ok;   /* how many at once pass */
        uint32_t viol;
        double per_second;
    } cases[] = {
        {KZ_VALIDATE_CHAT, 1, 8, KZ_VIOL_CHAT, 4},
        {KZ_VALIDATE_EMOTE, 1, 8, KZ_VIOL_EMOTE, 4},
        {KZ_VALIDATE_VOICE, 320, 25, KZ_VIOL_VOICE, 25},
        {KZ_VALIDATE_GRAB, 1, 4, KZ_VIOL_GRAB, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kz_validate_client cl;
        kz_validate_client_init(&cl);
        uint32_t ok = 0;
        for (int k = 0; k < 100; k++) {
            uint32_t v = kz_validate_action(&c, &cl, cases[i].action, cases[i].amount, T0);
            cr_expect(v == 0 || v == cases[i].viol);
            ok += v == 0;
        }
        cr_expect_eq(ok, cases[i].burst_ok, "case %zu: %u", i, ok);
        /* Then the sustained rate over 10 s. */
        ok = 0;
        for (int k = 1; k <= 1000; k++)
            ok += kz_validate_action(&c, &cl, cases[i].action, cases[i].amount,
                                     T0 + k * S(0.01)) == 0;
        cr_expect(fabs(ok - cases[i].per_second * 10) <= 1, "case %zu: %u in 10 s", i, ok);
    }
}

Test(validate_actions, grab_table)
{
    kz_validate_config c = defaults();   /* 2 m from the hand */
    const int32_t root[3] = {512 * 10, 0, 512 * 10};
    const int16_t hand[3] = {512, 1024, 0};   /* 0.5 m right, 1 m up */
    static const struct {
        const char *name;
        double obj[3];      /* meters */
        uint32_t holder;
        uint32_t want;
    } cases[] = {
        {"at the hand", {10.5, 1, 10}, 0, 0},
        {"1.9 m away", {10.5, 1, 11.9}, 0, 0},
        {"2.1 m away", {10.5, 1, 12.1}, 0, KZ_VIOL_GRAB},
        {"across the room", {30, 0, 10}, 0, KZ_VIOL_GRAB},
        {"held by another", {10.5, 1, 10}, 77, KZ_VIOL_GRAB},
        {"held by self", {10.5, 1, 10}, 5, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t obj[3];
        for (int k = 0; k < 3; k++)
            obj[k] = (int32_t)lrint(cases[i].obj[k] * KZ_SNAP_POS_UNITS);
        cr_expect_eq(kz_validate_grab(&c, 5, root, hand, obj, cases[i].holder), cases[i].want,
                     "%s", cases[i].name);
    }
}

Test(validate_actions, teleport_only_through_granted_portals)
{
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    cr_expect_eq(kz_validate_teleport(&cl, 3, T0), KZ_VIOL_TELEPORT, "no grant");
    kz_validate_portal_grant(&cl, 3, T0 + S(5));
    cr_expect_eq(kz_validate_teleport(&cl, 4, T0), KZ_VIOL_TELEPORT, "another portal");
    cr_expect_eq(kz_validate_teleport(&cl, 0, T0), KZ_VIOL_TELEPORT);
    cr_expect_eq(kz_validate_teleport(&cl, 3, T0 + S(1)), 0u);
    cr_expect_eq(kz_validate_teleport(&cl, 3, T0 + S(2)), KZ_VIOL_TELEPORT, "used up");
    kz_validate_portal_grant(&cl, 9, T0 + S(5));
    cr_expect_eq(kz_validate_teleport(&cl, 9, T0 + S(6)), KZ_VIOL_TELEPORT, "expired");
    /* Five grants in four places: the one expiring first goes. */
    for (uint32_t p = 1; p <= 5; p++)
        kz_validate_portal_grant(&cl, p, T0 + S(10 + p));
    cr_expect_eq(kz_validate_teleport(&cl, 1, T0), KZ_VIOL_TELEPORT);
    for (uint32_t p = 2; p <= 5; p++)
        cr_expect_eq(kz_validate_teleport(&cl, p, T0), 0u, "portal %u", p);
}

/* ---- every limit from the config ---------------------------------------- */

Test(validate_config, behaviour_follows_limits)
{
    /* Speed: 5 m/s passes at 8, is clamped to 2 at 2. */
    kz_wire_command cmd = rest_cmd(1);
    cmd.move[0] = 5 * KZ_SNAP_VEL_UNITS;
    kz_validate_config c8 = no_accel((kz_validate_config){0});
    kz_validate_config c2 = no_accel((kz_validate_config){.max_speed = 2});
    kz_wire_command a = cmd, b = cmd;
    cr_expect_eq(first(&c8, &a, NULL), 0u);
    cr_expect_eq(first(&c2, &b, NULL), KZ_VIOL_SPEED);
    cr_expect(fabs(speed_of(b.move) - 2.0) < 0.01);

    /* Acceleration: 0 -> 3 m/s in a tick passes at 100 m/s^2. */
    kz_validate_config fast = with((kz_validate_config){.max_accel = 100});
    kz_validate_client cl;
    kz_validate_client_init(&cl);
    kz_wire_command r0 = rest_cmd(1), r1 = rest_cmd(2);
    r1.move[0] = 3 * KZ_SNAP_VEL_UNITS;
    kz_validate_command(&fast, &cl, &r0, T0, NULL);
    cr_expect_eq(kz_validate_command(&fast, &cl, &r1, T0 + S(1.0 / 30), NULL), 0u);
    /* ... and at 60 Hz the per-tick change halves. */
    kz_validate_config hz60 = with((kz_validate_config){.max_accel = 100, .tick_hz = 60});
    kz_validate_client_init(&cl);
    r1.move[0] = 3 * KZ_SNAP_VEL_UNITS;
    kz_validate_command(&hz60, &cl, &r0, T0, NULL);
    cr_expect_eq(kz_validate_command(&hz60, &cl, &r1, T0 + S(1.0 / 60), NULL), KZ_VIOL_ACCEL);
    cr_expect(fabs(r1.move[0] / 256.0 - 100.0 / 60) < 0.01);

    /* Head range and reach. */
    kz_wire_command tall = vr_cmd(1);
    tall.rel[KZ_POSE_HEAD][1] = (int16_t)(1.9 * 1024);
    kz_wire_command t1 = tall, t2 = tall;
    cr_expect_eq(first(&c8, &t1, NULL), 0u);
    kz_validate_config low = with((kz_validate_config){.head_max = 1.7f});
    cr_expect_eq(first(&low, &t2, NULL), KZ_VIOL_POSE);
    cr_expect_eq(t2.rel[KZ_POSE_HEAD][1], (int16_t)lrint(1.7 * 1024));
    kz_validate_config short_arms = with((kz_validate_config){.hand_reach = 0.5f});
    kz_wire_command arms = vr_cmd(1);   /* hands 0.73 m from the head */
    cr_expect_eq(first(&short_arms, &arms, NULL), KZ_VIOL_POSE);
    cr_expect(dist_codes(arms.rel[KZ_POSE_LEFT_HAND], arms.rel[KZ_POSE_HEAD]) <= 0.5);

    /* Clock tolerance: 10% fast is caught by default, passes at 15%. */
    kz_validate_config dflt = defaults();
    kz_validate_config lax = with((kz_validate_config){.clock_tolerance = 0.15f});
    sim_plan p = {.seconds = 30, .drift = 0.10, .jitter = 0.060};
    cr_expect(simulate(&dflt, &p).seen & KZ_VIOL_CLOCK);
    cr_expect_eq(simulate(&lax, &p).seen & KZ_VIOL_CLOCK, 0u);
    /* Swing and slack: 4% fast for 20 s stays within the default budget,
     * is caught with a 0.2 s swing, and passes again with 1 s of slack. */
    sim_plan p4 = {.seconds = 20, .drift = 0.04, .jitter = 0.020};
    cr_expect_eq(simulate(&dflt, &p4).seen & KZ_VIOL_CLOCK, 0u);
    kz_validate_config tight = with((kz_validate_config){.clock_max_swing = 0.2f});
    cr_expect(simulate(&tight, &p4).seen & KZ_VIOL_CLOCK);
    kz_validate_config slack = with((kz_validate_config){.clock_max_swing = 0.2f,
                                                         .clock_slack = 1.0f});
    cr_expect_eq(simulate(&slack, &p4).seen & KZ_VIOL_CLOCK, 0u);
    /* Window: a 2 s stall caught up in one frame (datagrams 0.2 ms apart)
     * is one group by default; it is not when every arrival stands alone. */
    kz_validate_config narrow = with((kz_validate_config){.clock_window = 1e-6f});
    cr_expect_eq(stall_catch_up(&dflt).seen & KZ_VIOL_CLOCK, 0u);
    cr_expect(stall_catch_up(&narrow).seen & KZ_VIOL_CLOCK);
    /* Forgiveness: after 1.5 s of ticks skipped, the floor catches up in
     * about a second by default, in about ten at a tenth of the rate. */
    const float forgive[] = {0, 0.05f};
    uint32_t flags[2];
    for (int i = 0; i < 2; i++) {
        kz_validate_config f = with((kz_validate_config){.clock_forgive = forgive[i]});
        script s = script_new(1000);
        double t = script_run(&s, 0, 5, 1.0, 0);
        s.tick += 45;
        script_run(&s, t, 25, 1.0, 0);
        flags[i] = script_serve(&s, &f).clock_flags;
    }
    cr_expect(flags[0] >= 20 && flags[0] <= 35, "%u flags", flags[0]);
    cr_expect(flags[1] >= 200 && flags[1] <= 350, "%u flags", flags[1]);

    /* Points, cooldown and kick score. */
    kz_validate_config harsh = with((kz_validate_config){.kick_score = 10});
    kz_validate_client_init(&cl);
    uint32_t why;
    cr_expect_eq(kz_validate_consequence(&harsh, &cl, KZ_VIOL_SPEED, T0, &why), KZ_VALIDATE_KICK);
    cr_expect_eq(why, KZ_VIOL_SPEED);
    kz_validate_config none = defaults();
    none.points[KZ_VIOL_KIND_SPEED] = -1;
    none = with(none);
    kz_validate_client_init(&cl);
    for (int k = 0; k < 1000; k++)
        cr_assert_eq(kz_validate_consequence(&none, &cl, KZ_VIOL_SPEED, T0 + k * S(1), NULL),
                     KZ_VALIDATE_CORRECT);
    kz_validate_config pose_pts = defaults();
    pose_pts.points[KZ_VIOL_KIND_POSE] = 60;
    pose_pts.strike_cooldown = 0.001f;
    pose_pts = with(pose_pts);
    kz_validate_client_init(&cl);
    cr_expect_eq(kz_validate_consequence(&pose_pts, &cl, KZ_VIOL_POSE, T0, NULL),
                 KZ_VALIDATE_STRIKE);
    cr_expect_eq(kz_validate_consequence(&pose_pts, &cl, KZ_VIOL_POSE, T0 + S(0.01), &why),
                 KZ_VALIDATE_KICK);
    cr_expect_eq(why, KZ_VIOL_POSE);
    kz_validate_config slow_decay = with((kz_validate_config){.strike_half_life = 1});
    kz_validate_client_init(&cl);
    kz_validate_consequence(&slow_decay, &cl, KZ_VIOL_SPEED, T0, NULL);
    cr_expect_float_eq(kz_validate_score(&slow_decay, &cl, T0 + S(1)), 5.0, 1e-9);

    /* Rates and grab reach. */
    kz_validate_config chatty = with((kz_validate_config){
        .rate = {[KZ_VALIDATE_CHAT] = {.per_second = 1, .burst = 1}}, .grab_reach = 0.5f});
    kz_validate_client_init(&cl);
    cr_expect_eq(kz_validate_action(&chatty, &cl, KZ_VALIDATE_CHAT, 1, T0), 0u);
    cr_expect_eq(kz_validate_action(&chatty, &cl, KZ_VALIDATE_CHAT, 1, T0), KZ_VIOL_CHAT);
    cr_expect_eq(kz_validate_action(&chatty, &cl, KZ_VALIDATE_CHAT, 1, T0 + S(1)), 0u);
    const int32_t root[3] = {0, 0, 0}, obj[3] = {512, 0, 0};
    const int16_t hand[3] = {0, 0, 0};
    cr_expect_eq(kz_validate_grab(&c8, 1, root, hand, obj, 0), 0u);
    cr_expect_eq(kz_validate_grab(&chatty, 1, root, hand, obj, 0), KZ_VIOL_GRAB);
}
