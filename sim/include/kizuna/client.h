/*
 * The client library: what an engine embeds to join a Kizuna world.
 *
 * Caller-driven, no hidden threads: the engine calls kz_client_update(now)
 * once per frame (any rate; the client runs its own fixed input tick at the
 * server's rate inside it), sets the local player's intent with
 * kz_client_send_input whenever it changes, reads the world with
 * kz_client_self / kz_client_view, and drains kz_client_poll_event. Every
 * call on one kz_client must come from one thread; separate clients are
 * independent (a load tester runs thousands in one process).
 *
 * What it does for the engine:
 *   - the secure handshake and sealed transport (kizuna/transport.h);
 *   - prediction of the local avatar: each input tick applies the intent at
 *     once, and when a snapshot says where the server put the avatar after
 *     a given command, replays the newer commands on top (reconciliation);
 *     a disagreement is reported as a CORRECTION event;
 *   - interpolation of remote entities: they are shown at render time =
 *     estimated server time - interp_delay, between the two snapshot
 *     samples around it, so loss and jitter up to the delay are invisible;
 *     past the newest sample an entity keeps its velocity for up to 200 ms
 *     (exact while it goes straight), then holds;
 *   - events for enter (with the identity badge), leave, chat, emote,
 *     voice, correction, notices and the end of the session with a reason;
 *   - resume (docs/PROTOCOL.md, "Resume"), against a server that offers
 *     it: a path that broke (nothing heard for cfg.net.resume_silence_ms,
 *     or kz_client_rebind after the OS reported a network change) is
 *     resumed by the client itself. The session, the avatar, entity ids,
 *     baselines and prediction carry on; the application sees
 *     KZ_EV_RECONNECTING, then KZ_EV_RESUMED or KZ_EV_DISCONNECTED with
 *     a KZ_LOST_* reason;
 *   - failover (docs/PROTOCOL.md 4a, "Resume elsewhere"), with a token
 *     naming several servers of one world: when the session's server
 *     stops answering, the client opens a new session through the
 *     token's other addresses, still RECONNECTING. If the world kept the
 *     avatar (the new WELCOME names the same entity), it ends in
 *     KZ_EV_RESUMED with prediction, input numbering and the view kept
 *     (entities in view before and after get no LEAVE or ENTER; those the
 *     new session has not shown within 1 s leave). Otherwise it is a
 *     fresh connect: KZ_EV_LEAVE for every entity in view, then
 *     KZ_EV_CONNECTED with the new avatar.
 *
 * Ownership: the client owns everything it allocates (through
 * cfg.net.alloc, at create and when the server's welcome arrives: once,
 * or again after a failover that brought a new avatar);
 * pointers it returns are valid until the next call on the same client.
 * Units: meters, seconds, radians; time in nanoseconds (kz_time_ns).
 */
#ifndef KZ_CLIENT_H
#define KZ_CLIENT_H

#include <kizuna/avatar.h>
#include <kizuna/transport.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Zero fields mean the default. */
typedef struct kz_client_config {
    kz_netclient_config net;      /* transport; log and allocator hooks live here,
                                     and resume_silence_ms */
    uint32_t interp_delay_ms;     /* render delay behind the server; default 100 */
    uint32_t input_redundancy;    /* commands per input message, 1..8; default 4 */
    uint32_t event_capacity;      /* queued events before the oldest drop; default 64 */
    /* 1: a load tester's client (kizuna-bench --bots thin), 0 (default): a
     * player's. A header-only client opens every snapshot but reads only
     * its header: it acknowledges the snapshot's tick (the server keeps
     * sending deltas), takes the own avatar's root state from the header
     * as the server gives it (kz_client_self: no prediction or replay,
     * poses at rest), and reports a KZ_EV_CORRECTION with code 0 once per
     * command the header says the server changed (no prediction to measure
     * a distance against). The body is neither decoded nor checked and the
     * view tables are never allocated: kz_client_view, kz_client_entity_at
     * and kz_client_badge see no entity, and no ENTER or LEAVE arrives.
     * Other values are refused. */
    uint32_t header_only;
} kz_client_config;

typedef struct kz_client kz_client;

/* Client states. */
#define KZ_CLIENT_IDLE 0u          /* created, not connecting */
#define KZ_CLIENT_CONNECTING 1u    /* handshake, waiting for the welcome */
#define KZ_CLIENT_CONNECTED 2u     /* in the world */
#define KZ_CLIENT_DISCONNECTED 3u  /* ended by the server (see reason) or timed out */
#define KZ_CLIENT_FAILED 4u        /* could not connect */
/* In the world, but the path to the server broke and the client is
 * resuming the session: inputs and actions are still taken (and sent; the
 * server takes them once the session has moved), remote entities hold
 * where they were last seen (after 200 ms of extrapolation), the own
 * avatar is still predicted. Ends in CONNECTED (KZ_EV_RESUMED) or
 * DISCONNECTED (KZ_EV_DISCONNECTED, reason KZ_LOST_*). */
#define KZ_CLIENT_RECONNECTING 5u

/* Who owns an avatar, as the backend verified it (from the signed token;
 * nothing a client sends can change it). */
typedef struct kz_badge {
    uint8_t verification_level;   /* KZ_VERIFY_* */
    uint8_t actor_kind;           /* KZ_ACTOR_HUMAN, _AGENT, _BOT */
    uint8_t reserved[6];
    uint64_t acting_for;          /* principal client id for agents, 0 = none */
    char method[49];              /* verification method, NUL-terminated */
    char name[33];                /* display name, UTF-8, NUL-terminated */
    uint8_t reserved2[6];
} kz_badge;

/* Event types. */
#define KZ_EV_CONNECTED 1u     /* entity = own avatar */
#define KZ_EV_ENTER 2u         /* entity came into view; badge filled */
#define KZ_EV_LEAVE 3u         /* entity left the view */
#define KZ_EV_CHAT 4u          /* entity said data[0..len) (UTF-8) */
#define KZ_EV_EMOTE 5u         /* entity played emote `code` */
#define KZ_EV_VOICE 6u         /* audio frame from entity */
#define KZ_EV_CORRECTION 7u    /* the server moved the own avatar; code = distance in mm */
#define KZ_EV_NOTICE 8u        /* server notice `code` (KZ_NOTICE_*), text in data */
#define KZ_EV_DISCONNECTED 9u  /* session over; code = reason, data = text if any */
#define KZ_EV_RECONNECTING 10u /* the path broke, resuming; entity = own avatar */
#define KZ_EV_RESUMED 11u      /* the session is back (also through another server
                                  that kept the avatar); entity = own avatar, code =
                                  milliseconds between the last datagram heard
                                  before the break and the first after it */

/* Notice codes of KZ_EV_NOTICE (text in data). */
#define KZ_NOTICE_KICK 1u
#define KZ_NOTICE_ZONE_ENTER 2u  /* text: the zone's name */
#define KZ_NOTICE_ZONE_LEAVE 3u
#define KZ_NOTICE_OBSERVED 4u    /* an observer watches you (text: who) */
#define KZ_NOTICE_DENIED 5u      /* your role-gated action was refused */
#define KZ_NOTICE_MUTED 6u
#define KZ_NOTICE_WORLD_PAUSED 7u   /* the world's server is unreachable from yours: the
                                       world stands still, your session is kept */
#define KZ_NOTICE_WORLD_RESUMED 8u  /* the world moves again */

/* Limits the server enforces: longer chat, voice frames or notices are
 * refused: kz_client_chat and kz_client_voice return KZ_EINVAL for them. */
#define KZ_CHAT_MAX_BYTES 256u          /* UTF-8 text */
#define KZ_VOICE_MAX_FRAME_BYTES 320u   /* one Opus frame (20 ms at 128 kb/s) */
#define KZ_NOTICE_MAX_BYTES 160u

typedef struct kz_client_event {
    uint32_t type;        /* KZ_EV_* */
    uint32_t entity;      /* subject entity id, 0 if none */
    uint32_t code;
    uint32_t len;         /* bytes at data */
    const uint8_t *data;  /* valid until the next call on the client */
    kz_badge badge;       /* KZ_EV_ENTER only */
} kz_client_event;

/* One entity as the client shows it. */
typedef struct kz_client_entity {
    uint32_t id;
    uint32_t reserved;
    kz_avatar_state state;
} kz_client_entity;

KZ_API void kz_client_config_default(kz_client_config *cfg);
/* NULL on bad configuration or no memory (logged). */
KZ_API kz_client *kz_client_create(const kz_client_config *cfg);
/* Sends the ENet disconnect from the current socket (the session ends at
 * once when it arrives), wipes the keys, frees everything. While
 * RECONNECTING after a kz_client_rebind the server drops datagrams from
 * the new address until a RESUME has moved the session, so the
 * disconnect is lost and the session ends with the server's grace (a new
 * kz_client_connect with the same token replaces it sooner). NULL is
 * ignored. */
KZ_API void kz_client_destroy(kz_client *c);

/* Starts connecting with `token` (copied). A client whose session ended
 * (DISCONNECTED or FAILED) may connect again: the old session's tables are
 * freed, unpolled events stay. 0, KZ_ESTATE (already connecting or
 * connected), or why the transport could not start (logged): KZ_ENOMEM,
 * KZ_EPROTO (the token does not parse), KZ_EINVAL (no IPv4 address in
 * the token), KZ_EIO (no socket). */
KZ_API KZ_MUST_CHECK int kz_client_connect(kz_client *c, const kz_connect_token *token,
                                           kz_time_ns now);
/* Runs the handshake, the transport, the input ticks due at `now`, and
 * decodes what arrived. Call every frame. Returns the state. */
KZ_API uint32_t kz_client_update(kz_client *c, kz_time_ns now);
KZ_API uint32_t kz_client_state(const kz_client *c);

/* The local player's intent from now on: vel (wanted velocity, clamped to
 * the server's max speed), yaw, anim, the KZ_AVATAR_VR flag and the
 * head/hand poses; pos, kind and holder are ignored (the server decides
 * where the avatar is). Copied. 0 or KZ_ESTATE (not connected or reconnecting). */
KZ_API int kz_client_send_input(kz_client *c, const kz_avatar_state *intent);

/* Next event (0) or KZ_EEMPTY. */
KZ_API KZ_MUST_CHECK int kz_client_poll_event(kz_client *c, kz_client_event *ev);

/* Actions. 0, KZ_ESTATE (not connected or reconnecting), KZ_EINVAL (empty, too long, not
 * UTF-8), or the transport's error when it cannot queue the message
 * (KZ_ENOMEM, KZ_EEXPIRED when the session's nonces ran out, KZ_EIO). */
KZ_API int kz_client_chat(kz_client *c, const char *text, uint32_t len);
KZ_API int kz_client_emote(kz_client *c, uint16_t emote);
KZ_API int kz_client_voice(kz_client *c, const void *frame, uint32_t len);
KZ_API int kz_client_grab(kz_client *c, uint32_t object);
KZ_API int kz_client_release(kz_client *c, uint32_t object);
/* Blocks (on = 1) or unblocks the owner of avatar `entity`. Blocks are
 * mutual and enforced by the server: neither side receives the other's
 * state, chat or voice while either has blocked the other. */
KZ_API int kz_client_block(kz_client *c, uint32_t entity, uint32_t on);
/* Asks for a role-gated action (KZ_ADMIN_* in kizuna/server.h) on
 * `target`. The server checks the token's roles; a refusal arrives as a
 * KZ_EV_NOTICE with code KZ_NOTICE_DENIED. */
KZ_API int kz_client_admin(kz_client *c, uint32_t action, uint32_t target);
/* Turns the personal-space bubble on (1) or off (0): the server keeps other
 * avatars from coming closer than its personal_space radius. */
KZ_API int kz_client_personal_space(kz_client *c, uint32_t on);
/* Asks to go through portal `portal` (kz_server_portal_set): granted only
 * while standing at its entrance; the client's avatar then jumps (a
 * KZ_EV_CORRECTION). */
KZ_API int kz_client_teleport(kz_client *c, uint32_t portal);

/* The own avatar's entity id (0 before the welcome) and predicted state:
 * 0, or KZ_ESTATE until the first snapshot has placed the avatar at its
 * spawn point (that placement is not reported as a correction). */
KZ_API uint32_t kz_client_self_id(const kz_client *c);
KZ_API int kz_client_self(const kz_client *c, kz_avatar_state *out);

/* Remote entities in view at the current render time, interpolated;
 * writes up to `cap`, returns how many there are. An entity that entered
 * the view after the render time is left out until render time reaches its
 * entry (it was not there yet). */
KZ_API uint32_t kz_client_view(const kz_client *c, kz_client_entity *out, uint32_t cap);
/* One entity at server tick `tick` (fractional), interpolated from the
 * samples the client holds (extrapolated up to 200 ms past the newest). 0, KZ_EINVAL (not
 * in view) or KZ_ERANGE (`tick` precedes the oldest sample held). */
KZ_API int kz_client_entity_at(const kz_client *c, uint32_t id, double tick, kz_avatar_state *out);
/* The badge of an entity in view. 0 or KZ_EINVAL. */
KZ_API int kz_client_badge(const kz_client *c, uint32_t id, kz_badge *out);
/* Current render time in server ticks (fractional), and the newest server
 * tick received. */
KZ_API double kz_client_render_tick(const kz_client *c);
KZ_API uint32_t kz_client_server_tick(const kz_client *c);
/* Input latency: the time from sending the input of command tick *tick
 * to taking in the first snapshot built after the server applied it, on
 * the clock given to kz_client_update (so it includes the wait for the
 * server's next tick and the update calls' own spacing). The newest such
 * input is reported; a caller sampling it records a value when *tick
 * changes. KZ_OK, or KZ_EEMPTY before the first (both outputs 0). */
KZ_API int kz_client_input_latency(const kz_client *c, uint32_t *tick, kz_time_ns *latency);
/* Why the session ended: a KZ_KICK_* (DISCONNECTED), a KZ_DENY_* (FAILED),
 * KZ_LOST_RESUME_REFUSED (resuming, the server no longer held the
 * session), KZ_LOST_RESUME_TIMEOUT (resuming, nothing heard from the
 * server for its grace), or 0 (timeout, no answer) — 0 while it runs. */
KZ_API uint32_t kz_client_reason(const kz_client *c);

/* Call when the OS reports a network change (a new Wi-Fi or mobile
 * network, a new local address): the client moves its socket to
 * `local_ip` ("a.b.c.d", any port; NULL = any address) and resumes the
 * session from there at once (KZ_EV_RECONNECTING, then KZ_EV_RESUMED or
 * KZ_EV_DISCONNECTED). 0; KZ_EINVAL (`local_ip` is not a dotted IPv4
 * address); KZ_ESTATE (not CONNECTED or RECONNECTING, or the server does
 * not offer resume: nothing changed); KZ_EIO (no socket on that address:
 * nothing changed). */
KZ_API int kz_client_rebind(kz_client *c, const char *local_ip);

/* Client counters. */
#define KZ_CLIENT_COUNTERS(X)                       \
    X(SNAPSHOTS, "snapshots_applied")               \
    X(SNAPSHOT_BYTES, "snapshot_bytes")             \
    X(SNAPSHOTS_LATE, "snapshots_late")             \
    X(SNAPSHOTS_NO_BASE, "snapshots_baseline_missing") \
    X(DROP_MALFORMED, "drop_malformed_message")     \
    X(CORRECTIONS, "corrections")                   \
    X(INPUTS_SENT, "input_messages_sent")           \
    X(EVENTS_DROPPED, "events_dropped_queue_full")  \
    X(SNAPSHOTS_EARLY, "snapshots_before_welcome")  \
    X(INPUTS_DETACHED, "inputs_standing_still_detached")

enum {
#define KZ__CLIENT_ENUM(id, name) KZ_CLIENT_C_##id,
    KZ_CLIENT_COUNTERS(KZ__CLIENT_ENUM)
#undef KZ__CLIENT_ENUM
    KZ_CLIENT_C_COUNT
};

KZ_API const kz_counters *kz_client_counters(const kz_client *c);
KZ_API const kz_netclient *kz_client_net(const kz_client *c);

#ifdef __cplusplus
}
#endif

#endif /* KZ_CLIENT_H */
