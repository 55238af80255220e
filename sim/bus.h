/*
 * The bus between a world's authority and its edges (docs/SCALING.md,
 * "Messages"): a 48-byte header and the bodies of each message type, as
 * pure functions over bytes. No NATS here: the server program moves the
 * bytes (server/bus.c), the library encodes, checks and applies them
 * (sim/fleet.c). Internal.
 *
 * Every integer is little-endian. Every decoder treats its input as
 * hostile: lengths are checked before anything is read, every count and
 * code is range-checked, trailing bytes are refused.
 */
#ifndef KZ_SIM_BUS_H
#define KZ_SIM_BUS_H

#include <stddef.h>
#include <stdint.h>

#include <kizuna/token.h>

#include "sim/snapshot.h"

#define KZ_BUS_MAGIC "KZB1"
#define KZ_BUS_VERSION 1u
#define KZ_BUS_HEADER_BYTES 48u
#define KZ_BUS_MAX_EDGES 64u
/* Largest body of one bus message. Every writer splits before it (TICK
 * and SYNC into parts, DOWN and BATCH into more messages), so the payload
 * stays under nats-server's default max_payload (1 MiB). */
#define KZ_BUS_MESSAGE_MAX (512u * 1024u)

/* Message types. */
#define KZ_BUS_TICK 1u    /* authority -> kz.W.tick: the world update of one tick */
#define KZ_BUS_HELLO 2u   /* edge -> kz.W.edge.E.up: here I am, send me a SYNC */
#define KZ_BUS_BATCH 3u   /* edge -> up: joins, leaves, paths, client messages */
#define KZ_BUS_BYE 4u     /* edge -> up: leaving */
#define KZ_BUS_DOWN 5u    /* authority -> kz.W.edge.E.down: what edge E must do */
#define KZ_BUS_SYNC 6u    /* authority -> kz.W.tick: the whole world image for one edge
                             (answering its HELLO); on the tick subject so that it keeps
                             its place among the ticks */

/* Subjects, as the receiver knows them (it subscribed to them). */
#define KZ_BUS_SUBJECT_TICK 1u
#define KZ_BUS_SUBJECT_UP 2u
#define KZ_BUS_SUBJECT_DOWN 3u

/* Why a message was dropped (a receiver counts each under its name). */
typedef enum kz_bus_drop {
    KZ_BUS_OK = 0,
    KZ_BUS_DROP_OVERSIZE,      /* body larger than KZ_BUS_MESSAGE_MAX */
    KZ_BUS_DROP_MALFORMED,     /* short, bad length, reserved bits, bad body */
    KZ_BUS_DROP_VERSION,       /* magic or version */
    KZ_BUS_DROP_OTHER_WORLD,   /* another world's hash */
    KZ_BUS_DROP_SENDER,        /* sender, type and subject disagree */
    KZ_BUS_DROP_STALE_INSTANCE,/* an old or unknown instance of the sender */
    KZ_BUS_DROP_REPLAY,        /* sequence at or below the last accepted */
    KZ_BUS_DROP_FOREIGN,       /* a record about a session its edge does not own */
    KZ_BUS_DROP_COUNT
} kz_bus_drop;

typedef struct kz_bus_header {
    uint8_t type;
    uint16_t sender;       /* 0 = authority, 1..KZ_BUS_MAX_EDGES = edge number */
    uint32_t length;       /* body bytes */
    uint64_t world;        /* kz_bus_world_hash of the world's name */
    uint64_t instance;     /* the sender's instance id (new at every start) */
    uint64_t epoch;        /* the authority's start (Unix ms); an edge writes the one it follows */
    uint64_t seq;          /* per sender instance and subject, from 1 */
} kz_bus_header;

/* First 8 bytes of BLAKE2b-256 of the world's name, as u64. */
uint64_t kz_bus_world_hash(const char *world);

void kz_bus_header_write(const kz_bus_header *h, uint8_t out[KZ_BUS_HEADER_BYTES]);
/* Steps 1-4 of the receiver's checks (docs/SCALING.md): size, magic,
 * version, length, reserved, world, and sender/type against the subject
 * the message came on (`subject_edge`: the E of an up or down subject).
 * KZ_BUS_OK with *h filled, else the drop reason. */
kz_bus_drop kz_bus_header_check(const uint8_t *msg, size_t len, uint64_t world, unsigned subject,
                                uint32_t subject_edge, kz_bus_header *h);

/* ---- TICK and SYNC: entity records ------------------------------------ */

#define KZ_BUS_TICK_LAST 1u     /* flags: last part of the tick */
#define KZ_BUS_TICK_FULL 2u     /* flags: no baseline (SYNC): the range is replaced */
#define KZ_BUS_TICK_HEAD_BYTES 20u
#define KZ_BUS_LIMITS_BYTES 32u

/* What an entity record carries (kz_bus_entity.what). */
#define KZ_BUS_E_STATE 1u       /* its quantized state */
#define KZ_BUS_E_ATTR 2u        /* visibility attributes and owner */
#define KZ_BUS_E_BADGE 4u       /* identity badge */
#define KZ_BUS_E_BLOCKED 8u     /* its owner's block list */
#define KZ_BUS_E_INPUT 16u      /* its owner's newest applied command */
#define KZ_BUS_E_GONE 32u       /* the index is free now (alone) */
#define KZ_BUS_E_ALL 31u

typedef struct kz_bus_tick_head {
    uint32_t tick;
    uint16_t part;
    uint8_t flags;
    uint8_t target;        /* SYNC: the edge it is for; TICK: 0 */
    uint32_t first, end;   /* dense index range covered: first < end */
    uint32_t count;        /* entity records */
} kz_bus_tick_head;

/* The world's fixed shape, in part 0 of every SYNC: an edge serves a
 * world only with exactly these settings. */
typedef struct kz_bus_limits {
    uint32_t tick_hz, cap, max_clients, n_slots, history;
    float bound, max_speed, view_radius;
} kz_bus_limits;

typedef struct kz_bus_entity {
    uint32_t index;
    uint8_t what;
    kz_snap_state state;
    uint8_t rule, zone;
    float importance;
    uint64_t owner_id;     /* client id of the avatar's owner, 0 = none */
    kz_snap_badge badge;
    uint8_t n_blocked;
    uint64_t blocked[32];
    uint32_t input_tick;
    uint8_t corrected;
} kz_bus_entity;

/* Bytes kz_bus_entity_write will take for `e` (its `what`). */
size_t kz_bus_entity_size(const kz_bus_entity *e);
/* Appends; 0 when it does not fit in [*p, end). */
int kz_bus_entity_write(const kz_bus_entity *e, uint8_t **p, uint8_t *end);
/* Reads one record, checking every field (state: kz_snap_state_check with
 * `codec`; index in [first, end), above `after` (ascending); strings
 * UTF-8 and NUL-free; counts in range). 0 on any fault. */
int kz_bus_entity_read(const kz_snap_codec *codec, const uint8_t **p, const uint8_t *end,
                       uint32_t first, uint32_t range_end, int64_t after, kz_bus_entity *e);

void kz_bus_tick_head_write(const kz_bus_tick_head *t, uint8_t out[KZ_BUS_TICK_HEAD_BYTES]);
int kz_bus_tick_head_read(const uint8_t **p, const uint8_t *end, kz_bus_tick_head *t);
void kz_bus_limits_write(const kz_bus_limits *l, uint8_t out[KZ_BUS_LIMITS_BYTES]);
int kz_bus_limits_read(const uint8_t **p, const uint8_t *end, kz_bus_limits *l);

/* ---- DOWN: records for one edge --------------------------------------- */

#define KZ_BUS_DOWN_HEAD_BYTES 12u   /* u32 tick, u32 count, u8 flags, 3 reserved */
#define KZ_BUS_REC_BYTES 12u         /* u8 kind, u8 sub, u16 len, u32 slot, u32 serial */

#define KZ_BUS_D_SESSION 1u   /* slot, serial -> body u32 avatar dense index + 1 (0: refused) */
#define KZ_BUS_D_SEND 2u      /* sub = channel; body: u8 type, payload */
#define KZ_BUS_D_KICK 3u      /* body: u32 reason */
#define KZ_BUS_D_NEAR 4u      /* slot = sender's dense index; sub = channel; body: u8 type,
                                 u8 echo, f32 radius, payload */

/* ---- BATCH: records from one edge ------------------------------------- */

#define KZ_BUS_BATCH_HEAD_BYTES 8u   /* u32 seen tick, u32 count */
#define KZ_BUS_UP_REC_BYTES 16u      /* the record head and u32 age_us */

#define KZ_BUS_U_JOIN 1u      /* body: the token's claims (kz_bus_claims_write) */
#define KZ_BUS_U_LEAVE 2u     /* sub: 1 closed or timed out, 2 moved away (held) */
#define KZ_BUS_U_DETACH 3u
#define KZ_BUS_U_ATTACH 4u
#define KZ_BUS_U_MSG 5u       /* sub = client message type; body: the message */
#define KZ_BUS_U_OBSERVED 6u  /* body: u32 dense index that came into the view of this
                                 session while it observes */

typedef struct kz_bus_rec {
    uint8_t kind, sub;
    uint16_t len;
    uint32_t slot, serial;
    uint32_t age_us;      /* up records only */
    const uint8_t *body;
} kz_bus_rec;

/* Writes a record head (`up`: with age_us) and body; 0 when it does not fit. */
int kz_bus_rec_write(const kz_bus_rec *r, int up, uint8_t **p, uint8_t *end);
/* Reads one record head and its body bounds; the body is not checked here. */
int kz_bus_rec_read(const uint8_t **p, const uint8_t *end, int up, kz_bus_rec *r);

/* The JOIN body is the token's claims: net/token_claims.h. */
#define KZ_BUS_CLAIMS_MAX 1024u

static inline void kz_bus_put32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
}

static inline uint32_t kz_bus_get32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

#endif /* KZ_SIM_BUS_H */
