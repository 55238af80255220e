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
 *
 * Honest bots move like people: they speed up, slow down and turn
 * gradually, always well inside the server's max_speed and max_accel, so
 * an honest run draws no corrections and every correction in a report
 * points at the server or at a hostile bot. Each bot changes its motion
 * once per input tick, never more.
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

/* Human walking: speeding up and slowing down (m/s^2) and turning (rad/s).
 * The server allows far more (40 m/s^2 by default); these keep bots honest
 * under any sane configuration, and KZB_ACCEL_SHARE below covers the rest. */
#define KZB_WALK_ACCEL 1.5f
#define KZB_TURN_RATE 2.0f
/* A bot's velocity changes by at most this share of the server's max_accel
 * per input tick, and its speed stays below this share of max_speed: the
 * slack covers a bot pass whose two changes land in one input command and
 * the client's rounding of velocities to wire codes. */
#define KZB_ACCEL_SHARE 0.4f
#define KZB_SPEED_SHARE 0.9f
/* Closer than this to its target (m), a bot has arrived and stands. */
#define KZB_ARRIVE_M 0.5f

/* The server's motion limits the bots keep inside (embedded mode: the
 * server's resolved validation config; external mode: the library's
 * defaults, as kizuna-server uses unless configured otherwise). */
typedef struct kzb_motion_limits {
    float max_speed;       /* m/s, > 0 */
    float max_accel;       /* m/s^2, > 0 */
} kzb_motion_limits;

typedef struct kzb_bot_plan {
    uint64_t rng;
    float target[2];       /* where it walks (x, z) */
    float speed;           /* walking speed it aims for, m/s */
    uint32_t next_decision;
    uint32_t linger_until;
    uint32_t hostile;      /* KZB_HOSTILE_* */
    float phase;           /* of the VR motion, seconds */
    kzb_motion_limits limits;
    float vel[2];          /* velocity sent last (x, z), m/s */
    float heading;         /* direction of travel, radians from +x toward +z */
    uint32_t stepped;      /* 1 + the last input tick it stepped; 0: never */
} kzb_bot_plan;

/* Parses a scenario name; -1 if unknown. */
int kzb_scenario_parse(const char *name);
const char *kzb_scenario_name(int scenario);
const char *kzb_hostile_name(uint32_t kind);

/* Radius of the disk avatars spawn and roam in, for n clients. */
float kzb_scenario_radius(int scenario, uint32_t n);

/* Sets up bot `i`'s plan (deterministic from seed and i), standing still,
 * moving within `limits`. */
void kzb_plan_init(kzb_bot_plan *p, int scenario, uint32_t i, uint32_t n, uint64_t seed,
                   const kzb_motion_limits *limits);

/* The bot's avatar is new (it connected or reconnected): it stands still,
 * as the server's validator assumes of a new avatar, and decides afresh
 * from input tick 0. The target (and hostile role) are kept. */
void kzb_plan_stand(kzb_bot_plan *p);

/* Decides the intent for the bot's input tick `tick`, given where it is.
 * The first call for a tick steps the motion once; later calls for the
 * same tick change nothing. Returns 1 when `intent` was written (send it),
 * 0 when the intent stays as it was. */
int kzb_plan_step(kzb_bot_plan *p, int scenario, uint32_t n, uint32_t tick, uint32_t hz,
                  const kz_avatar_state *self, kz_avatar_state *intent);

#endif /* KZB_SCENARIO_H */
