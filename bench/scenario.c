/*
 * kizuna-bench scenarios (see scenario.h).
 */
#include "scenario.h"

#include <math.h>
#include <string.h>

#define TWO_PI 6.2831853f

static const char *const kzb_scenario_names[KZB_SC_COUNT] = {
    "wander", "crowd", "commute", "churn", "vr", "hostile",
};

static const char *const kzb_hostile_names[KZB_HOSTILE_COUNT] = {
    "honest", "speed_hack", "chat_flood", "voice_flood", "forged_packets",
};

int kzb_scenario_parse(const char *name)
{
    for (int i = 0; i < KZB_SC_COUNT; i++)
        if (strcmp(name, kzb_scenario_names[i]) == 0)
            return i;
    return -1;
}

const char *kzb_scenario_name(int scenario)
{
    return scenario >= 0 && scenario < KZB_SC_COUNT ? kzb_scenario_names[scenario] : "?";
}

const char *kzb_hostile_name(uint32_t kind)
{
    return kind < KZB_HOSTILE_COUNT ? kzb_hostile_names[kind] : "?";
}

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float unit(uint64_t *s)
{
    return (float)((double)(next(s) >> 11) / 9007199254740992.0);
}

float kzb_scenario_radius(int scenario, uint32_t n)
{
    if (scenario == KZB_SC_CROWD)
        return 30.0f;
    /* About 100 others within 50 m: n avatars on pi R^2 with the density
     * of 100 per pi 50^2, and never less than the view radius. */
    float r = 50.0f * sqrtf((float)n / 100.0f);
    return r < 50.0f ? 50.0f : r;
}

static void hotspot(uint32_t k, float radius, float out[2])
{
    float a = TWO_PI * (float)k / 6.0f;
    out[0] = 0.7f * radius * cosf(a);
    out[1] = 0.7f * radius * sinf(a);
}

void kzb_plan_init(kzb_bot_plan *p, int scenario, uint32_t i, uint32_t n, uint64_t seed,
                   const kzb_motion_limits *limits)
{
    memset(p, 0, sizeof *p);
    p->rng = seed * 0x100000001B3ull + i + 1;
    p->speed = scenario == KZB_SC_CROWD ? 0.6f : 1.4f;
    p->phase = (float)(i % 997u) * 0.37f;
    p->limits = *limits;
    if (scenario == KZB_SC_HOSTILE && i % 10 == 9)
        p->hostile = 1u + (i / 10u) % (KZB_HOSTILE_COUNT - 1u);
    if (scenario == KZB_SC_COMMUTE)
        hotspot((uint32_t)(next(&p->rng) % 6u), kzb_scenario_radius(scenario, n), p->target);
}

void kzb_plan_stand(kzb_bot_plan *p)
{
    p->vel[0] = p->vel[1] = 0.0f;
    p->stepped = 0;
    p->next_decision = 0;
    p->linger_until = 0;
}

/* VR head and hands: small continuous motion, a different phase per bot. */
static void vr_poses(kz_avatar_state *in, uint32_t tick, uint32_t hz, float phase)
{
    float t = (float)tick / (float)hz + phase;
    in->flags = KZ_AVATAR_VR;
    in->pose[KZ_POSE_HEAD].pos[0] = 0.03f * sinf(t * 0.9f);
    in->pose[KZ_POSE_HEAD].pos[1] = 1.6f + 0.02f * sinf(t * 3.1f);
    in->pose[KZ_POSE_HEAD].pos[2] = 0.03f * cosf(t * 0.7f);
    float look = 0.6f * sinf(t * 0.5f);
    in->pose[KZ_POSE_HEAD].rot[1] = sinf(look / 2);
    in->pose[KZ_POSE_HEAD].rot[3] = cosf(look / 2);
    for (int h = 0; h < 2; h++) {
        kz_pose *p = &in->pose[KZ_POSE_LEFT_HAND + (uint32_t)h];
        float swing = sinf(t * (1.3f + 0.2f * (float)h));
        p->pos[0] = (h ? 0.3f : -0.3f) + 0.05f * swing;
        p->pos[1] = 1.0f + 0.15f * sinf(t * 0.8f + (float)h);
        p->pos[2] = 0.2f * swing;
        p->rot[0] = sinf(0.2f * swing);
        p->rot[1] = 0;
        p->rot[2] = 0;
        p->rot[3] = cosf(0.2f * swing);
    }
}

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The same angle in [-pi, pi]. */
static float wrap_angle(float a)
{
    return atan2f(sinf(a), cosf(a));
}

/* Scales the change from `from` to `to` (2-vectors) down to at most `max`. */
static void bound_change(const float from[2], float to[2], float max)
{
    float dx = to[0] - from[0], dz = to[1] - from[1];
    float d = sqrtf(dx * dx + dz * dz);
    if (d <= max)
        return;
    to[0] = from[0] + dx * max / d;
    to[1] = from[1] + dz * max / d;
}

/* The speed a bot walking toward a target `d` meters away aims for, after
 * turning by `turn` radians still to go: slower into a sharp turn (standing
 * to turn around), and braking at half its acceleration to stop on
 * arrival. */
static float wanted_speed(const kzb_bot_plan *p, float d, float turn)
{
    if (d <= KZB_ARRIVE_M)
        return 0.0f;
    float want = p->speed * fmaxf(cosf(turn), 0.0f);
    return fminf(want, sqrtf(KZB_WALK_ACCEL * (d - KZB_ARRIVE_M)));
}

/* One input tick of walking toward the target (or stopping, when `stop`):
 * the heading turns by at most KZB_TURN_RATE and the speed changes by at
 * most KZB_WALK_ACCEL, then the velocity change is bounded by the server's
 * max_accel and the speed by its max_speed (both with slack). A standing
 * bot turns on the spot. Writes vel and yaw into `in`. */
static void steer(kzb_bot_plan *p, const kz_avatar_state *self, int stop, uint32_t hz,
                  kz_avatar_state *in)
{
    float dt = 1.0f / (float)hz;
    float dx = p->target[0] - self->pos[0], dz = p->target[1] - self->pos[2];
    float d = stop ? 0.0f : sqrtf(dx * dx + dz * dz);
    float cur = sqrtf(p->vel[0] * p->vel[0] + p->vel[1] * p->vel[1]);
    float turn = 0.0f;
    if (d > KZB_ARRIVE_M) {
        float bearing = atan2f(dz, dx);
        float max_turn = KZB_TURN_RATE * dt;
        if (cur < KZB_WALK_ACCEL * dt)
            p->heading = bearing;
        else
            p->heading = wrap_angle(p->heading + clampf(wrap_angle(bearing - p->heading),
                                                        -max_turn, max_turn));
        turn = wrap_angle(bearing - p->heading);
    }
    float want = fminf(wanted_speed(p, d, turn), KZB_SPEED_SHARE * p->limits.max_speed);
    float step = KZB_WALK_ACCEL * dt;
    float speed = cur + clampf(want - cur, -step, step);
    float v[2] = {speed * cosf(p->heading), speed * sinf(p->heading)};
    bound_change(p->vel, v, KZB_ACCEL_SHARE * p->limits.max_accel * dt);
    p->vel[0] = v[0];
    p->vel[1] = v[1];
    in->vel[0] = v[0];
    in->vel[2] = v[1];
    in->yaw = p->heading;
}

/* Commute: walk to a hotspot, linger 5 s within 5 m of it, pick another.
 * Returns 1 while lingering (the bot stops). */
static int commute_decide(kzb_bot_plan *p, const kz_avatar_state *self, uint32_t tick,
                          uint32_t hz, float radius)
{
    float dx = p->target[0] - self->pos[0], dz = p->target[1] - self->pos[2];
    if (dx * dx + dz * dz >= 25.0f)
        return 0;
    if (!p->linger_until)
        p->linger_until = tick + 5u * hz;
    if (tick < p->linger_until)
        return 1;
    p->linger_until = 0;
    hotspot((uint32_t)(next(&p->rng) % 6u), radius, p->target);
    return 0;
}

/* Wander and the scenarios built on it: a random target within the disk
 * every 2-6 s, home to the centre when outside it. */
static void wander_decide(kzb_bot_plan *p, const kz_avatar_state *self, uint32_t tick,
                          uint32_t hz, float radius)
{
    if (tick < p->next_decision)
        return;
    float home = self->pos[0] * self->pos[0] + self->pos[2] * self->pos[2];
    if (home > radius * radius) {
        p->target[0] = 0;
        p->target[1] = 0;
    } else {
        float a = unit(&p->rng) * TWO_PI, d = unit(&p->rng) * radius;
        p->target[0] = d * cosf(a);
        p->target[1] = d * sinf(a);
    }
    p->next_decision = tick + (uint32_t)((2.0f + 4.0f * unit(&p->rng)) * (float)hz);
}

int kzb_plan_step(kzb_bot_plan *p, int scenario, uint32_t n, uint32_t tick, uint32_t hz,
                  const kz_avatar_state *self, kz_avatar_state *intent)
{
    if (p->stepped == tick + 1u)
        return 0;
    p->stepped = tick + 1u;
    float radius = kzb_scenario_radius(scenario, n);
    int stop = 0;
    if (scenario == KZB_SC_COMMUTE)
        stop = commute_decide(p, self, tick, hz, radius);
    else
        wander_decide(p, self, tick, hz, radius);
    kz_avatar_state_rest(intent);
    steer(p, self, stop, hz, intent);
    if (scenario == KZB_SC_VR)
        vr_poses(intent, tick, hz, p->phase);
    return 1;
}
