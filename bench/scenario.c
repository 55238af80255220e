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

void kzb_plan_init(kzb_bot_plan *p, int scenario, uint32_t i, uint32_t n, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    p->rng = seed * 0x100000001B3ull + i + 1;
    p->speed = scenario == KZB_SC_CROWD ? 0.6f : 1.4f;
    p->phase = (float)(i % 997u) * 0.37f;
    if (scenario == KZB_SC_HOSTILE && i % 10 == 9)
        p->hostile = 1u + (i / 10u) % (KZB_HOSTILE_COUNT - 1u);
    if (scenario == KZB_SC_COMMUTE)
        hotspot((uint32_t)(next(&p->rng) % 6u), kzb_scenario_radius(scenario, n), p->target);
    (void)n;
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

/* Heading toward target from self. */
static void walk_to(const kz_avatar_state *self, const float target[2], float speed,
                    kz_avatar_state *in)
{
    float dx = target[0] - self->pos[0], dz = target[1] - self->pos[2];
    float d = sqrtf(dx * dx + dz * dz);
    if (d < 0.5f)
        return;
    in->vel[0] = speed * dx / d;
    in->vel[2] = speed * dz / d;
    in->yaw = atan2f(dz, dx);
}

int kzb_plan_step(kzb_bot_plan *p, int scenario, uint32_t n, uint32_t tick, uint32_t hz,
                  const kz_avatar_state *self, kz_avatar_state *intent)
{
    int vr = scenario == KZB_SC_VR;
    if (tick < p->next_decision && !vr)
        return 0;
    float radius = kzb_scenario_radius(scenario, n);
    kz_avatar_state_rest(intent);
    if (scenario == KZB_SC_COMMUTE) {
        float dx = p->target[0] - self->pos[0], dz = p->target[1] - self->pos[2];
        if (dx * dx + dz * dz < 25.0f) {
            if (!p->linger_until)
                p->linger_until = tick + 5u * hz;
            if (tick >= p->linger_until) {
                p->linger_until = 0;
                hotspot((uint32_t)(next(&p->rng) % 6u), radius, p->target);
            }
        } else {
            walk_to(self, p->target, p->speed, intent);
        }
        p->next_decision = tick + hz / 2u;
        return 1;
    }
    /* wander, crowd, churn, vr, hostile: random straight walks, home when out. */
    if (tick >= p->next_decision) {
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
    walk_to(self, p->target, p->speed, intent);
    if (vr)
        vr_poses(intent, tick, hz, p->phase);
    return 1;
}
