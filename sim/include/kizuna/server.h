/*
 * The authoritative world server: a fixed-rate simulation of avatars and
 * shared objects behind the secure transport (kizuna/transport.h).
 *
 * Every tick (tick_hz, 10..128, default 30) the server
 *   1. drains the transport: connects (an avatar is created from the
 *      token's claims), disconnects, inputs, chat, emotes, voice, actions;
 *   2. applies one input command per client (clamped to the limits; a
 *      clamped command is a correction the client sees);
 *   3. moves held objects with their holders and updates the spatial grid,
 *      and publishes an immutable image of the tick;
 *   4. per client, from that image: interest (grid -> visibility rule and
 *      hook -> ranking -> cut to max_visible), then a snapshot delta
 *      against the newest view the client acknowledged, cut to the packet
 *      and per-second byte budgets by priority (distance, time since last
 *      sent, importance). This per-client stage (replication) runs on the
 *      transport's I/O threads, each for the clients it serves, while the
 *      simulation goes on with the next tick.
 *
 * Threads. The transport either runs its own I/O threads
 * (net.threaded = 1), which also replicate, or is serviced inside
 * kz_server_step on the caller's thread, which then replicates too, host
 * by host (single-threaded mode, deterministic for tests). Every
 * kz_server_* call must come from one thread (the simulation thread). The
 * visibility hook is called from the replicators: in threaded mode from
 * every I/O thread at once, while the simulation thread steps (see
 * kz_server_visible_fn). After creation the steady state allocates
 * nothing: every table is sized from max_clients and max_objects.
 *
 * Time is injected: kz_server_step(now) runs the ticks that are due at
 * `now` (nanoseconds, any monotonic origin).
 */
#ifndef KZ_SERVER_H
#define KZ_SERVER_H

#include <kizuna/audit.h>
#include <kizuna/avatar.h>
#include <kizuna/hist.h>
#include <kizuna/transport.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Visibility hook: 1 if the client whose avatar is `viewer` may see the
 * entity `target` (entity ids as on the wire), 0 if not. Asked both ways,
 * for pairs that pass the world's own rules. In threaded mode it is
 * called from the I/O threads, several at once, about a tick after the
 * state it decides on: it must be safe to call concurrently (read data
 * that does not change, or guard what does) and must not call
 * kz_server_*. */
typedef int (*kz_server_visible_fn)(void *ctx, uint32_t viewer, uint32_t target);

/* Zero fields mean the default. */
typedef struct kz_server_config {
    kz_netserver_config net;          /* transport; net.max_clients is required */
    uint32_t tick_hz;                 /* 10..128; default 30 */
    float world_bound;                /* half-extent in meters; default 4096 */
    float view_radius;                /* enter radius; default 50 m */
    float view_hysteresis;            /* leave radius = view_radius + this; 5 m from
                                         kz_server_config_default; unlike the other
                                         fields 0 means none, not the default */
    uint32_t max_visible;             /* per client; default 100, at most 1024 */
    uint32_t max_objects;             /* shared objects; default 64 */
    uint32_t snapshot_history;        /* views kept per client, 4..64; default 16 */
    uint32_t bytes_per_second;        /* per client downstream budget; default 40000 */
    float max_speed;                  /* meters per second; default 8 */
    float grab_reach;                 /* meters from the root; default 2 */
    float voice_radius;               /* default 25 m */
    uint32_t voice_bytes_per_second;  /* per sender; default 8000 */
    uint32_t chat_per_second;         /* per sender, burst 2x; default 4. Emotes have
                                         their own bucket of the same size. Both, and
                                         voice, are the validator's action rates:
                                         sustained floods climb the ladder */
    uint32_t interest_period;         /* ticks between a client's interest runs, 1..16,
                                         staggered across clients; default 3. In
                                         between, the view keeps its entities (the
                                         visibility hook is still asked every tick) */
    uint32_t spawn_seed;              /* spawn points are random within spawn_radius, only
                                         where the client may be (zone rules); a client
                                         that no spawn point admits is refused
                                         (KZ_KICK_NO_PLACE) */
    float spawn_radius;               /* default 100 m */
    float personal_space;             /* bubble radius for clients that turn it on;
                                         default 1.2 m */
    /* Input validation limits (docs/VALIDATION.md); zero = default. */
    float max_accel;                  /* m/s^2; default 40 */
    float head_min, head_max;         /* m above the root (VR); defaults 0.1, 1.95 */
    float hand_reach;                 /* m from the head; default 1.2 */
    float clock_tolerance;            /* fraction a client clock may run fast; 0 = the
                                         validator's default (docs/VALIDATION.md) */
    float strike_half_life;           /* s; default 60 */
    float kick_score;                 /* strike score that kicks; default 100 */
    const char *moderator_role;       /* token role that may kick, mute and observe;
                                         default "moderator" */
    const char *admin_role;           /* token role with every right; default "admin" */
    kz_audit *audit;                  /* NULL: no audit log. Borrowed: it must outlive the
                                         server. Connects, disconnects, role-gated
                                         actions (refused or done), zone refusals,
                                         blocks, violations and kicks are appended. */
    kz_server_visible_fn visible;     /* NULL: everything within range is visible */
    void *visible_ctx;
} kz_server_config;

typedef struct kz_server kz_server;

KZ_API void kz_server_config_default(kz_server_config *cfg);

/* Creates the world and the transport. NULL on failure (logged through
 * cfg->net.log). */
KZ_API kz_server *kz_server_create(const kz_server_config *cfg);
KZ_API void kz_server_destroy(kz_server *s);

/* Services the transport (single-threaded mode) and runs every tick due at
 * `now`, at most 4 in a row (a stalled server skips rather than spirals).
 * Returns the number of ticks run. */
KZ_API int kz_server_step(kz_server *s, kz_time_ns now);

/* The transport's first port (clients' gate address). */
KZ_API uint16_t kz_server_port(const kz_server *s);
KZ_API uint32_t kz_server_tick(const kz_server *s);
KZ_API uint32_t kz_server_tick_hz(const kz_server *s);
/* When tick `tick` was due (the `now` scale of kz_server_step), for
 * measuring how old a snapshot is when a client applies it. 0 before the
 * first step. */
KZ_API kz_time_ns kz_server_tick_time(const kz_server *s, uint32_t tick);
/* Connected clients with an avatar. */
KZ_API uint32_t kz_server_clients(const kz_server *s);

/* The current state of entity `id` (avatar or object). 0 or KZ_EINVAL. */
KZ_API int kz_server_entity(const kz_server *s, uint32_t id, kz_avatar_state *out);
/* The avatar entity of transport slot `slot`, 0 if none. */
KZ_API uint32_t kz_server_avatar_of(const kz_server *s, uint32_t slot);

/* Adds a shared object at `pos` with rotation `rot` (NULL = identity);
 * *id receives its entity id. 0, KZ_EFULL, KZ_ERANGE or KZ_ENOTFINITE. */
KZ_API KZ_MUST_CHECK int kz_server_object_add(kz_server *s, const float pos[3], const float rot[4],
                                              uint32_t *id);

/* ---- zones -------------------------------------------------------------- */

#define KZ_ZONE_BOX 1u
#define KZ_ZONE_SPHERE 2u
#define KZ_ZONE_MAX 64u
#define KZ_ZONE_MAX_ALLOWED 8u

/*
 * A named region with an access list. Who may enter: everyone when every
 * rule is zero; otherwise a client must pass every rule that is set
 * (verification level, humans only) and, when roles or client ids are
 * listed, hold one of the roles or be one of the clients. An avatar that
 * may not enter is held at the boundary (its move is refused and it is
 * told through a correction). Avatars inside a private zone are invisible
 * and inaudible from outside it, and see only its inside: visibility is
 * symmetric, so no zone makes an invisible listener.
 *
 * No placement leaves an avatar inside a zone it may not enter: spawn
 * points are chosen among the places the client may be, a summon or a
 * portal whose destination it may not enter is refused, and when a zone
 * appears, is replaced with a stricter list or is locked around someone
 * it no longer admits, that avatar is moved at the next tick to the
 * nearest allowed point outside (0.5 m beyond the edge) and told with a
 * KZ_NOTICE_DENIED notice naming the zone; if no allowed point exists in
 * the world it is kicked with KZ_KICK_NO_PLACE. While inside a zone it
 * may not be in, the only move accepted is one that leaves it.
 */
typedef struct kz_zone_def {
    char name[25];                            /* [a-z0-9_-], unique */
    uint32_t shape;                           /* KZ_ZONE_BOX or KZ_ZONE_SPHERE */
    float center[3];
    float half[3];                            /* box half-extents; sphere: half[0] = radius */
    uint32_t is_private;
    uint32_t min_verification;                /* KZ_VERIFY_*; 0 = any */
    uint32_t humans_only;                     /* agents and bots may not enter */
    char roles[KZ_ZONE_MAX_ALLOWED][17];      /* token roles allowed; empty = any */
    uint64_t clients[KZ_ZONE_MAX_ALLOWED];    /* client ids allowed; 0 = unused */
    uint32_t locked;                          /* only moderators and admins may enter
                                                 (set over the wire by KZ_ADMIN_ZONE_LOCK) */
} kz_zone_def;
/* Zones are numbered 1.. in the order they were added (a removal moves
 * the last zone into the gap); KZ_ADMIN_ZONE_LOCK names them by number. */

/* Adds (or replaces, by name) a zone. 0, KZ_EINVAL (bad shape, name or
 * size) or KZ_EFULL. Takes effect on the next tick, which first moves out
 * every avatar inside a zone it may no longer enter (see above). */
KZ_API KZ_MUST_CHECK int kz_server_zone_set(kz_server *s, const kz_zone_def *z);
/* Removes a zone by name: 0 or KZ_EINVAL (no such zone). */
KZ_API int kz_server_zone_remove(kz_server *s, const char *name);

/* ---- portals ------------------------------------------------------------ */

#define KZ_PORTAL_MAX 16u

/* A portal (id 1..KZ_PORTAL_MAX): an avatar that stands within `radius`
 * of `entrance` is granted one use for 5 s; a client asking to teleport
 * (kz_client_teleport) through a portal it was granted is moved to `exit`.
 * Any other teleport request is refused and is a violation. 0 or
 * KZ_EINVAL (bad id, radius, coordinates outside the world). */
KZ_API KZ_MUST_CHECK int kz_server_portal_set(kz_server *s, uint32_t id, const float entrance[3],
                                              float radius, const float exit[3]);

/* Ends the session of the client whose avatar is `avatar`, telling it
 * `reason` (KZ_KICK_* code) and `text` (UTF-8, may be NULL). Once the kick
 * is queued (0) the kick is counted and audited once, and nothing more
 * the client sends is processed (each message counted in drop_after_kick);
 * it gets no more snapshots or relays. KZ_EINVAL (no such avatar) or the
 * transport's error (outbound ring full: nothing changed, call again). */
KZ_API int kz_server_kick(kz_server *s, uint32_t avatar, uint32_t reason, const char *text);

/*
 * Starts a clean stop: the gate takes no one new (KZ_DENY_SHUTTING_DOWN),
 * and every client is told `text` (NULL: "server shutting down") with
 * KZ_KICK_SHUTDOWN, then disconnected once its reliable messages are
 * delivered. Each kick is audited. Keep calling kz_server_step until
 * kz_server_clients() is 0 or your grace period ends. Idempotent.
 */
KZ_API void kz_server_shutdown(kz_server *s, const char *text);

/* Role-gated actions a client may ask for (KZ_MSG_ADMIN); a client whose
 * token lacks the role is refused, told, and the refusal counted. Admin
 * and block requests share a per-client budget; requests beyond it, and
 * role refusals beyond a smaller one, are dropped and reported to the
 * consequence ladder as KZ_VIOL_FLOOD. The audit records, log lines and
 * notices a client's refusals cause are sampled per client (a few, then
 * one a second carrying "(and N more)"). */
#define KZ_ADMIN_KICK 1u          /* moderator: end the target's session */
#define KZ_ADMIN_MUTE 2u          /* moderator: drop the target's chat and voice */
#define KZ_ADMIN_UNMUTE 3u
#define KZ_ADMIN_OBSERVE_ON 4u    /* moderator: become an observer (target ignored) */
#define KZ_ADMIN_OBSERVE_OFF 5u
#define KZ_ADMIN_SUMMON 6u        /* moderator: move the target next to oneself */
#define KZ_ADMIN_ZONE_LOCK 7u     /* admin: target = zone number (1..): only moderators
                                     and admins may enter it until unlocked */
#define KZ_ADMIN_ZONE_UNLOCK 8u

/* Kick reason codes (the client sees them with the text). */
#define KZ_KICK_ADMIN 1u
#define KZ_KICK_VIOLATION 2u
#define KZ_KICK_SHUTDOWN 3u
#define KZ_KICK_NO_PLACE 4u       /* no place in the world admits the client (zone rules):
                                     at connect, or when a zone tightened around it */
#define KZ_KICK_REPLACED 5u       /* a newer connect of the same client (its token
                                     file, after a restart) replaced the session */

/* Counters of the world (names via kz_counters_name). The violation_*
 * counters count each kind of cheat the validator found (docs/VALIDATION.md),
 * in the validator's kind order, one per kind in a command or action. */
#define KZ_WORLD_COUNTERS(X)                              \
    X(TICKS, "ticks")                                     \
    X(TICKS_SKIPPED, "ticks_skipped")                     \
    X(INPUTS, "input_messages")                           \
    X(COMMANDS, "commands_applied")                       \
    X(COMMANDS_REPEATED, "commands_repeated")             \
    X(COMMANDS_DROPPED, "commands_dropped_overflow")      \
    X(COMMANDS_CAUGHT_UP, "commands_caught_up")           \
    X(COMMANDS_COVERED, "commands_covered_by_repeat")     \
    X(CORRECTIONS, "corrections")                         \
    X(SNAPSHOTS, "snapshots_sent")                        \
    X(SNAPSHOT_BYTES, "snapshot_bytes")                   \
    X(SNAPSHOT_FULL, "snapshots_full_state")              \
    X(VIEW_ENTITIES, "view_entity_ticks")                 \
    X(UPDATES, "entity_updates_sent")                     \
    X(DEFERRED, "updates_deferred_budget")                \
    X(ENTERS, "entity_enters")                            \
    X(LEAVES, "entity_leaves")                            \
    X(CHAT, "chat_relayed")                               \
    X(VOICE, "voice_frames_relayed")                      \
    X(GRABS, "grabs")                                     \
    X(DROP_MALFORMED, "drop_malformed_message")           \
    X(ZONE_REFUSED, "zone_entries_refused")               \
    X(ZONE_MOVED_OUT, "zone_moved_out")                   \
    X(SPAWN_REFUSED, "spawns_refused_no_place")           \
    X(PLACE_REFUSED, "placements_refused_zone")           \
    X(BUBBLE_REFUSED, "personal_space_refusals")          \
    X(TELEPORTS, "teleports")                             \
    X(TELEPORT_REFUSED, "teleports_refused")              \
    X(BLOCKS, "blocks")                                   \
    X(ADMIN_DONE, "admin_actions")                        \
    X(ADMIN_DENIED, "admin_actions_denied")               \
    X(REPORTS_SAMPLED, "reports_sampled_out")             \
    X(DROP_MUTED, "drop_muted")                           \
    X(DROP_RATE_CHAT, "drop_rate_limited_chat")           \
    X(DROP_RATE_VOICE, "drop_rate_limited_voice")         \
    X(DROP_RATE_EMOTE, "drop_rate_limited_emote")         \
    X(DROP_RATE_REQUEST, "drop_rate_limited_request")     \
    X(DROP_REFUSED, "drop_action_refused")                \
    X(DROP_SEND, "drop_send_failed")                      \
    X(DROP_KICKED, "drop_after_kick")                     \
    X(KICKS, "kicks")                                     \
    X(VIOL_SPEED, "violation_speed")                      \
    X(VIOL_ACCEL, "violation_acceleration")               \
    X(VIOL_POSE, "violation_pose")                        \
    X(VIOL_ROTATION, "violation_rotation")                \
    X(VIOL_TELEPORT, "violation_teleport")                \
    X(VIOL_CLOCK, "violation_clock")                      \
    X(VIOL_FLOOD, "violation_input_flood")                \
    X(VIOL_CHAT, "violation_chat_rate")                   \
    X(VIOL_EMOTE, "violation_emote_rate")                 \
    X(VIOL_VOICE, "violation_voice_rate")                 \
    X(VIOL_GRAB, "violation_grab")                        \
    X(REPL_WAITS, "ticks_waited_for_replication")         \
    X(REPL_SKIPPED, "frames_skipped_replication")         \
    X(BASE_EXPIRED, "baseline_entries_expired")           \
    X(HOST_MOVES, "sessions_moved_host")                  \
    X(DETACHED, "sessions_detached")                      \
    X(RESUMED, "sessions_resumed")

enum {
#define KZ__WORLD_ENUM(id, name) KZ_WORLD_C_##id,
    KZ_WORLD_COUNTERS(KZ__WORLD_ENUM)
#undef KZ__WORLD_ENUM
    KZ_WORLD_C_COUNT
};

KZ_API const kz_counters *kz_server_counters(const kz_server *s);
/* The transport underneath (for its counters and sessions). */
KZ_API kz_netserver *kz_server_net(kz_server *s);
/* Tick time histogram, nanoseconds per tick: from the start of a tick
 * until its last snapshot is handed to the transport. Single-threaded
 * mode: the tick's work on the caller's thread. Threaded mode: the
 * simulation thread's part and then the replicators' on the I/O threads
 * (a tick is recorded at a later kz_server_step, once every replicator
 * has finished it; one a replicator skipped counts until the newer tick
 * that replaced it went out). */
KZ_API const kz_hist *kz_server_tick_hist(const kz_server *s);
/* Adds the tick-time histogram into `into` (same precision: the defaults
 * with highest = 10 s) and clears it, for per-interval percentiles. 0 or
 * the KZ_E code of kz_hist_merge. Simulation thread. */
KZ_API int kz_server_tick_hist_take(kz_server *s, kz_hist *into);

#ifdef __cplusplus
}
#endif

#endif /* KZ_SERVER_H */
