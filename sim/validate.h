/*
 * Cheat validation: every client input is checked, and fixed where it can
 * be, before it touches the world. The server calls this module; it owns
 * no world state and never reads the clock (every call takes `now`).
 *
 *   kz_validate_command    one new movement command (sim/wire.h), at
 *                          its arrival: input budget, clock drift, speed,
 *                          acceleration, head height, hand reach, rotation
 *                          codes; fixes the command in place
 *   kz_validate_pose_floats   the same plausibility checks for float input
 *                          paths, plus NaN / infinity refusal
 *   kz_validate_action     token buckets for chat, emotes, voice bytes, grabs
 *   kz_validate_grab       a grab within reach of an object no one else holds
 *   kz_validate_teleport   a teleport only through a portal the server granted
 *   kz_validate_consequence   the ladder: correct -> strike (decaying) -> kick
 *
 * Tuned for the server's input path: one call per command per client, so
 * the honest case is a handful of integer compares and a few floating
 * point operations for the clock (target <= 100 ns). Every limit lives in
 * kz_validate_config (docs/VALIDATION.md lists them with defaults and
 * units).
 *
 * Ownership and threads: the config is a value the caller keeps; a
 * kz_validate_client is fixed-size caller storage (one per connected
 * client, no allocation, no pointers) touched by one thread at a time (the
 * server's simulation thread). The grab check is a pure function.
 *
 * Internal to the library (tests and benches reach it through the static
 * library).
 */
#ifndef KZ_SIM_VALIDATE_H
#define KZ_SIM_VALIDATE_H

#include <kizuna/clock.h>
#include <kizuna/common.h>

#include "sim/wire.h"

/* ---- violation kinds ---------------------------------------------------- */

/* Index of each kind (points[], counts[]); the bit is 1 << index. */
enum {
    KZ_VIOL_KIND_SPEED = 0,    /* wanted velocity above max_speed */
    KZ_VIOL_KIND_ACCEL,        /* velocity change above max_accel */
    KZ_VIOL_KIND_POSE,         /* head height or hand reach implausible, float pose not finite */
    KZ_VIOL_KIND_ROTATION,     /* a rotation code no unit quaternion encodes to */
    KZ_VIOL_KIND_TELEPORT,     /* a teleport the server did not grant */
    KZ_VIOL_KIND_CLOCK,        /* client ticks run ahead of real time (speed hack) */
    KZ_VIOL_KIND_FLOOD,        /* commands beyond the input budget */
    KZ_VIOL_KIND_CHAT,         /* chat messages beyond the rate */
    KZ_VIOL_KIND_EMOTE,        /* emotes beyond the rate */
    KZ_VIOL_KIND_VOICE,        /* voice bytes beyond the rate */
    KZ_VIOL_KIND_GRAB,         /* grabs beyond the rate, out of reach or of a held object */
    KZ_VIOL_KINDS
};

#define KZ_VIOL_SPEED (1u << KZ_VIOL_KIND_SPEED)
#define KZ_VIOL_ACCEL (1u << KZ_VIOL_KIND_ACCEL)
#define KZ_VIOL_POSE (1u << KZ_VIOL_KIND_POSE)
#define KZ_VIOL_ROTATION (1u << KZ_VIOL_KIND_ROTATION)
#define KZ_VIOL_TELEPORT (1u << KZ_VIOL_KIND_TELEPORT)
#define KZ_VIOL_CLOCK (1u << KZ_VIOL_KIND_CLOCK)
#define KZ_VIOL_FLOOD (1u << KZ_VIOL_KIND_FLOOD)
#define KZ_VIOL_CHAT (1u << KZ_VIOL_KIND_CHAT)
#define KZ_VIOL_EMOTE (1u << KZ_VIOL_KIND_EMOTE)
#define KZ_VIOL_VOICE (1u << KZ_VIOL_KIND_VOICE)
#define KZ_VIOL_GRAB (1u << KZ_VIOL_KIND_GRAB)
#define KZ_VIOL_ALL ((1u << KZ_VIOL_KINDS) - 1u)

/* ---- configuration ------------------------------------------------------ */

/* Actions with a rate limit (kz_validate_action). */
#define KZ_VALIDATE_CHAT 0u
#define KZ_VALIDATE_EMOTE 1u
#define KZ_VALIDATE_VOICE 2u     /* amount in bytes */
#define KZ_VALIDATE_GRAB 3u
#define KZ_VALIDATE_ACTIONS 4u

#define KZ_VALIDATE_CLOCK_WINDOW_MAX 60.0f  /* s, the longest clock_window accepted */

typedef struct kz_validate_rate {
    float per_second;   /* sustained rate (messages or bytes per second) */
    float burst;        /* bucket size: what may come at once after a quiet spell */
} kz_validate_rate;

/*
 * Every limit, in SI units. Zero means the default (listed), so `{0}` plus
 * the overrides one wants works; kz_validate_config_resolve must then be
 * called once before use (it fills the defaults and precomputes the
 * integer limits the hot path compares against). points[]: 0 is the
 * default, a negative value means "no points" (that kind is corrected,
 * never struck).
 */
typedef struct kz_validate_config {
    uint32_t tick_hz;          /* client commands per second (server tick rate); 30 */
    float max_speed;           /* m/s, |wanted velocity|; 8 */
    float max_accel;           /* m/s^2, |velocity change| per second; 40 */
    float head_min;            /* m, head height above the root (VR); 0.1 */
    float head_max;            /* m; 1.95 */
    float hand_reach;          /* m, hand to head distance; 1.2 */
    float input_rate;          /* commands per second accepted, sustained; 1.25 * tick_hz */
    float input_burst;         /* commands accepted at once above the rate; 3 * tick_hz */
    float clock_tolerance;     /* sustained fraction a client clock may run fast; 0.002 */
    float clock_max_swing;     /* s, largest fall in delay (a queue draining) never
                                * flagged: the lead a client may bank; 1 */
    float clock_slack;         /* s, timestamp and frame-pacing error on top; 0.05 */
    float clock_window;        /* s, arrivals within this of a group's first are one
                                * group: only its least delayed may lower the floor; 0.25 */
    float clock_forgive;       /* s of lead per s: how fast the allowance follows a
                                * client over it (each such command is flagged); 0.5 */
    float grab_reach;          /* m, hand to object; 2 */
    kz_validate_rate rate[KZ_VALIDATE_ACTIONS];
                               /* chat 4/s burst 8; emote 4/s burst 8;
                                * voice 8000 B/s burst 8000; grab 4/s burst 4 */
    float points[KZ_VIOL_KINDS];
                               /* strike points per kind; speed 10, accel none,
                                * pose none, rotation 10, teleport 25, clock 20,
                                * flood 20, chat 2, emote 2, voice none, grab 2 */
    float strike_cooldown;     /* s, a kind is struck at most once per this; 1 */
    float strike_half_life;    /* s, strike score halves in this; 60 */
    float kick_score;          /* score at which the client is kicked; 100 */

    /* Filled by kz_validate_config_resolve; not for the caller. */
    struct {
        uint32_t resolved;           /* KZ__VALIDATE_RESOLVED */
        double speed_units;          /* max_speed in move codes */
        double speed_flag2;          /* (speed_units + 1)^2: above is a violation */
        double dv_units;             /* max velocity change per tick, move codes */
        int32_t head_min, head_max;  /* rel codes */
        double reach_units;          /* hand_reach in rel codes */
        double reach_flag2;          /* (reach_units + 1)^2 */
        double clock_tick_s;         /* 1 / tick_hz */
        double clock_line_per_ns;    /* (1 + clock_tolerance) / 1e9 */
        double clock_budget;         /* clock_max_swing + clock_slack, s */
        double clock_forgive_per_ns; /* clock_forgive / 1e9 */
        uint64_t clock_window_ns;
        uint64_t clock_slice_ns;     /* one tick: the most one command may forgive */
        uint64_t cooldown_ns;
        double half_life_ns;
        double grab_reach2;          /* (grab_reach in rel codes)^2 */
    } d;
} kz_validate_config;

/* Fills `cfg` with every default (already resolved). */
void kz_validate_config_default(kz_validate_config *cfg);

/* Replaces zero fields with defaults and precomputes the derived limits.
 * Returns 0, or KZ_EINVAL for a limit that is not finite, negative (except
 * points), tick_hz above KZ_SNAP_MAX_TICK_HZ, clock_window above
 * KZ_VALIDATE_CLOCK_WINDOW_MAX, head_min > head_max, or a head range
 * outside the wire's +-2 m; then `cfg` is unusable. */
KZ_MUST_CHECK int kz_validate_config_resolve(kz_validate_config *cfg);

/* ---- per-client state --------------------------------------------------- */

#define KZ_VALIDATE_GRANTS 4u          /* portal grants held at once */

typedef struct kz_validate_bucket {
    double tokens;
    kz_time_ns last;     /* time of the last refill; 0 = full */
} kz_validate_bucket;

/* Fixed size, caller storage, no pointers (may be copied or zeroed and
 * re-initialized). Fields are read-only for the caller except through the
 * functions below; counts[] and score are for logs and metrics. */
typedef struct kz_validate_client {
    /* movement */
    uint32_t started;                 /* a command has been seen */
    uint32_t last_tick;               /* tick of the last command seen */
    int16_t last_vel[3];              /* last accepted move, codes */
    uint16_t pad0;
    uint32_t last_rot[KZ_POSE_COUNT]; /* last accepted rotation codes */
    kz_validate_bucket input;         /* the command budget */
    /* clock: the lead (s) of the client's ticks over the tolerated line */
    int64_t clock_ticks;              /* ticks since the first command */
    kz_time_ns clock_t0;              /* arrival of the first command */
    kz_time_ns clock_prev;            /* arrival of the last command */
    kz_time_ns clock_group_t;         /* arrival of the current group's first */
    double clock_group;               /* highest lead in the current group */
    double clock_floor;               /* lowest group lead before it (the most delayed) */
    /* actions */
    kz_validate_bucket action[KZ_VALIDATE_ACTIONS];
    uint32_t grant_portal[KZ_VALIDATE_GRANTS];       /* 0 = free */
    kz_time_ns grant_expires[KZ_VALIDATE_GRANTS];
    /* consequences */
    double score;                     /* strike score at score_time */
    kz_time_ns score_time;
    kz_time_ns struck[KZ_VIOL_KINDS]; /* last time each kind was struck; 0 = never */
    uint32_t counts[KZ_VIOL_KINDS];   /* violations reported, per kind */
    uint32_t kicked;                  /* the kick's reason (a KZ_VIOL_ bit); 0 = not kicked */
} kz_validate_client;

/* Starts a client: no history, full buckets, rest rotations, score 0. */
void kz_validate_client_init(kz_validate_client *cl);

/* ---- commands ------------------------------------------------------------ */

typedef struct kz_validate_result {
    uint32_t violations;  /* KZ_VIOL_* found (also the return value) */
    uint8_t changed;      /* the command was modified: send a correction */
    uint8_t drop;         /* do not apply it at all (over the input budget) */
    uint8_t pad[2];
} kz_validate_result;

/*
 * Checks one command the client has not sent before (the server skips the
 * redundant copies first), at the arrival time `now` of the datagram that
 * carried it (server monotonic ns, kz_netmsg.received; non-decreasing per
 * client, an earlier one counts as the previous), and fixes it in place:
 *   input budget   over input_rate / input_burst: FLOOD, drop (nothing else
 *                  is checked or remembered)
 *   clock          the lead of the client's ticks over a clock running
 *                  clock_tolerance fast since its first command exceeds
 *                  the lowest lead seen before (its most delayed arrival)
 *                  by more than clock_max_swing + clock_slack: CLOCK
 *                  (flagged, not changed; the server applies one command
 *                  per tick anyway). Arrivals within clock_window of
 *                  each other count by their least delayed. While over,
 *                  the allowance rises by at most clock_forgive s per s,
 *                  never past clock_max_swing above the first lead.
 *   speed          |move| above max_speed (+ one code of rounding): SPEED,
 *                  scaled down to max_speed
 *   acceleration   |move - last accepted move| above max_accel / tick_hz
 *                  per tick elapsed on the client's tick counter: ACCEL,
 *                  the change scaled down
 *   head height    (VR commands only) outside head_min .. head_max: POSE,
 *                  clamped
 *   offsets        |rel| above the wire's 2 m: POSE, clamped
 *   hand reach     a hand farther than hand_reach from the head: POSE,
 *                  pulled back along the line to the head
 *   rotations      a code outside the smallest-three grid, or whose kept
 *                  components could not come from a unit quaternion (the
 *                  dropped one would not be the largest): ROTATION,
 *                  replaced by the last accepted code of that pose
 * Returns the violations (0 for an honest command); `res` (may be NULL)
 * gets them with the changed / drop flags. Feed the violations to
 * kz_validate_consequence. `cfg` must be resolved (asserted).
 */
uint32_t kz_validate_command(const kz_validate_config *cfg, kz_validate_client *cl,
                             kz_wire_command *cmd, kz_time_ns now, kz_validate_result *res);

/*
 * Float input paths (an application feeding kz_avatar_state): refuses
 * NaN or infinity anywhere (returns KZ_ENOTFINITE with `st` untouched and
 * *violations = KZ_VIOL_POSE); otherwise applies the checks above on
 * floats (speed clamp; quaternions not unit within 1e-3 normalized, or
 * identity when too short to normalize; VR head height clamp; hands pulled
 * within hand_reach of the head; offsets clamped to KZ_AVATAR_REACH) and
 * returns 0 with the violations found in *violations (may be NULL). No
 * state: acceleration and clock need the command path.
 */
KZ_MUST_CHECK int kz_validate_pose_floats(const kz_validate_config *cfg, kz_avatar_state *st,
                                          uint32_t *violations);

/* ---- actions, grabs, teleports ----------------------------------------- */

/* Token bucket: refills at `rate` per second up to `burst`; takes `cost`
 * if that many tokens are there (returns 1), else takes nothing (returns
 * 0). A bucket with last == 0 is full. */
int kz_validate_bucket_take(kz_validate_bucket *b, double rate, double burst, double cost,
                            kz_time_ns now);

/* Rate check of one action (KZ_VALIDATE_CHAT, _EMOTE, _GRAB: amount 1;
 * _VOICE: amount in bytes). Returns 0 (allowed, counted) or the kind's
 * violation bit (KZ_VIOL_CHAT ...): drop the message. */
uint32_t kz_validate_action(const kz_validate_config *cfg, kz_validate_client *cl,
                            unsigned action, uint32_t amount, kz_time_ns now);

/* Whether avatar `self` (wire id) may grab an object: positions as the
 * server stores them (root and object in 1/512 m codes, hand offset in
 * 1/1024 m codes). Returns 0, or KZ_VIOL_GRAB when the object is farther
 * than grab_reach from the hand or another avatar holds it (holder not 0
 * and not self). Pure; rate-limit grabs with kz_validate_action too. */
uint32_t kz_validate_grab(const kz_validate_config *cfg, uint32_t self, const int32_t root[3],
                          const int16_t hand_rel[3], const int32_t obj_pos[3], uint32_t holder);

/* The server grants the client one use of `portal` (not 0) until
 * `expires`. The oldest grant is replaced when all are taken. */
void kz_validate_portal_grant(kz_validate_client *cl, uint32_t portal, kz_time_ns expires);

/* A teleport request through `portal`: 0 if a live grant exists (it is
 * used up), else KZ_VIOL_TELEPORT (refuse the teleport). */
uint32_t kz_validate_teleport(kz_validate_client *cl, uint32_t portal, kz_time_ns now);

/* ---- consequences -------------------------------------------------------- */

typedef enum kz_validate_verdict {
    KZ_VALIDATE_NONE = 0,   /* nothing found */
    KZ_VALIDATE_CORRECT,    /* fixed or refused: the server sends a correction */
    KZ_VALIDATE_STRIKE,     /* corrected, and points added to the strike score */
    KZ_VALIDATE_KICK        /* score reached kick_score: disconnect with *reason */
} kz_validate_verdict;

/*
 * The ladder for one report of `violations` (any KZ_VIOL_ bits, from any
 * check) at `now`: counts each kind in cl->counts; adds points[kind] for
 * each kind not struck in the last strike_cooldown; the score decays with
 * strike_half_life. KICK once the decayed score reaches kick_score (and
 * every call after: the client stays kicked); *reason (may be NULL) gets
 * the kind that gave the most points in the kicking report (a KZ_VIOL_
 * bit, see kz_validate_reason_text), 0 otherwise.
 */
kz_validate_verdict kz_validate_consequence(const kz_validate_config *cfg, kz_validate_client *cl,
                                            uint32_t violations, kz_time_ns now, uint32_t *reason);

/* The strike score decayed to `now` (does not change the state). */
double kz_validate_score(const kz_validate_config *cfg, const kz_validate_client *cl, kz_time_ns now);

/* The text the kicked client sees for a reason (one KZ_VIOL_ bit); never
 * NULL, at most KZ_NOTICE_MAX_BYTES. */
const char *kz_validate_reason_text(uint32_t reason);

#endif /* KZ_SIM_VALIDATE_H */
