/*
 * kizuna-bench scenarios: what each bot wants to do, one decision per bot
 * input tick. A scenario sets the world's shape (how far apart avatars
 * spawn) and each bot's intent (velocity, yaw, VR poses); hostile bots
 * are marked with the misbehaviour they try.
 *
 *   wander   uniform random walk over a disk sized so that each avatar has
 *            about 100 others within 50 m
 *   crowd    everyone within 30 m (a concert): interest's worst case
 *   commute  flows between six hotspots on a ring
 *   churn    wander, and 2% of the bots leave and rejoin every second
 *   vr       wander with tracked head and hands moving every tick
 *   hostile  wander; one bot in ten misbehaves (speed hack, chat and voice
 *            floods, forged datagrams), the rest are honest
 */
#ifndef KZB_SCENARIO_H
#define KZB_SCENARIO_H

#include <stdint.h>

#include <kizuna/avatar.h>

#define KZB_SC_WANDER 0
#define KZB_SC_CROWD 1
#define KZB_SC_COMMUTE 2
#define KZB_SC_CHURN 3
#define KZB_SC_VR 4
#define KZB_SC_HOSTILE 5
#define KZB_SC_COUNT 6

/* Misbehaviours of hostile bots. */
#define KZB_HOSTILE_NONE 0
#define KZB_HOSTILE_SPEED 1    /* asks for 40 m/s */
#define KZB_HOSTILE_CHAT 2     /* a chat line every tick */
#define KZB_HOSTILE_VOICE 3    /* 4.5x the voice byte budget */
#define KZB_HOSTILE_FORGE 4    /* datagrams sealed with a wrong key / garbage */
#define KZB_HOSTILE_COUNT 5

typedef struct kzb_bot_plan {
    uint64_t rng;
    float target[2];       /* where it walks (x, z) */
    float speed;
    uint32_t next_decision;
    uint32_t linger_until;
    uint32_t hostile;      /* KZB_HOSTILE_* */
    float phase;           /* of the VR motion, seconds */
} kzb_bot_plan;

/* Parses a scenario name; -1 if unknown. */
int kzb_scenario_parse(const char *name);
const char *kzb_scenario_name(int scenario);
const char *kzb_hostile_name(uint32_t kind);

/* Radius of the disk avatars spawn and roam in, for n clients. */
float kzb_scenario_radius(int scenario, uint32_t n);

/* Sets up bot `i`'s plan (deterministic from seed and i). */
void kzb_plan_init(kzb_bot_plan *p, int scenario, uint32_t i, uint32_t n, uint64_t seed);

/* Decides the intent for the bot's input tick `tick`, given where it is.
 * Returns 1 when the intent changed (send it), 0 when it stays. */
int kzb_plan_step(kzb_bot_plan *p, int scenario, uint32_t n, uint32_t tick, uint32_t hz,
                  const kz_avatar_state *self, kz_avatar_state *intent);

#endif /* KZB_SCENARIO_H */
