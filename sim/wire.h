/*
 * World messages: what the server and the client library say to each other
 * inside sealed transport messages (net/transport.h). Each message has a
 * type byte (kz_netmsg.type) and travels on one channel; the layouts are
 * specified in docs/PROTOCOL.md ("World messages") and built here, so the
 * server, the client and the fuzz targets share one encoder and one
 * hardened decoder per message.
 *
 *   type              channel    direction  content
 *   KZ_MSG_WELCOME    EVENT      s -> c     tick rate, tick, own entity, limits
 *   KZ_MSG_SNAPSHOT   SNAPSHOT   s -> c     own state + view delta (sim/snapshot.h)
 *   KZ_MSG_INPUT      INPUT      c -> s     ack + last few commands
 *   KZ_MSG_CHAT       EVENT      both       UTF-8 text (server adds the sender)
 *   KZ_MSG_EMOTE      EVENT      both       emote id (server adds the sender)
 *   KZ_MSG_VOICE      VOICE      both       opaque audio frame (server adds the sender)
 *   KZ_MSG_ACTION     EVENT      c -> s     grab / release an object
 *   KZ_MSG_NOTICE     EVENT      s -> c     kick reason text, zone notices
 *
 * Decoders take bytes from the network: they check every length before
 * reading and return KZ_EPROTO for anything malformed, never trusting a
 * count or a code. Nothing here allocates.
 */
#ifndef KZ_SIM_WIRE_H
#define KZ_SIM_WIRE_H

#include <kizuna/avatar.h>
#include <kizuna/bitpack.h>
#include <kizuna/client.h>

#include "sim/snapshot.h"

#define KZ_MSG_WELCOME 1u
#define KZ_MSG_SNAPSHOT 2u
#define KZ_MSG_INPUT 3u
#define KZ_MSG_CHAT 4u
#define KZ_MSG_EMOTE 5u
#define KZ_MSG_VOICE 6u
#define KZ_MSG_ACTION 7u
#define KZ_MSG_NOTICE 8u
#define KZ_MSG_BLOCK 9u      /* c -> s: code (1 block, 2 unblock) + entity (u32) */
#define KZ_MSG_ADMIN 10u     /* c -> s: role-gated action code + target entity (u32) */
#define KZ_MSG_PREFS 11u     /* c -> s: 1 byte, personal-space bubble on (1) or off (0) */

#define KZ_WORLD_VERSION 1u

/* Little-endian u32, the byte order of every fixed-width world field. */
static inline void kz_wire_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t kz_wire_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Limits a peer cannot exceed (docs/PROTOCOL.md); the chat, voice and
 * notice limits and the notice codes are public (kizuna/client.h). */
#define KZ_INPUT_MAX_COMMANDS 8u        /* commands per INPUT message */
#define KZ_SNAPSHOT_MAX_BYTES 1100u     /* one datagram after seal and ENet headers */

/* ---- welcome ------------------------------------------------------------ */

typedef struct kz_wire_welcome {
    uint32_t version;      /* KZ_WORLD_VERSION */
    uint32_t tick_hz;
    uint32_t tick;         /* server tick when sent */
    uint32_t self;         /* the client's own entity id */
    uint32_t n_slots;      /* view slots (max visible) */
    uint32_t history;      /* views the server keeps: the client keeps as many */
    float bound;           /* world half-extent, meters */
    float max_speed;       /* meters per second */
} kz_wire_welcome;

#define KZ_WELCOME_BYTES 32u

void kz_wire_welcome_write(const kz_wire_welcome *w, uint8_t out[KZ_WELCOME_BYTES]);
/* 0 or KZ_EPROTO (length, version, rate 10..128, slots 1..KZ_SNAP_MAX_SLOTS,
 * history 4..64,
 * bound or speed not finite and positive). */
int kz_wire_welcome_read(const uint8_t *p, size_t len, kz_wire_welcome *out);

/* ---- input -------------------------------------------------------------- */

/* One client tick's intent: the server integrates it exactly as the
 * client's prediction does (kz_wire_integrate). All fields are wire codes,
 * so a decoded command is never NaN. */
typedef struct kz_wire_command {
    uint32_t tick;                  /* client tick, increasing by 1 */
    int16_t move[3];                /* wanted velocity, KZ_SNAP_VEL_UNITS per m/s */
    uint16_t yaw;                   /* 1/65536 turn */
    uint16_t anim;
    uint8_t flags;                  /* KZ_AVATAR_VR only; others are the server's */
    uint8_t pad[3];
    int16_t rel[KZ_POSE_COUNT][3];  /* as kz_snap_state */
    uint32_t rot[KZ_POSE_COUNT];
} kz_wire_command;

typedef struct kz_wire_input {
    uint32_t ack;                   /* newest snapshot tick decoded; 0 = none */
    uint32_t count;                 /* 1 .. KZ_INPUT_MAX_COMMANDS */
    kz_wire_command cmd[KZ_INPUT_MAX_COMMANDS];  /* newest first, ticks descending by 1 */
} kz_wire_input;

/* Worst-case encoded size of an INPUT message. */
#define KZ_INPUT_MAX_BYTES 512u

/* Encodes; returns the byte length (> 0) or KZ_EINVAL for a bad count or
 * commands whose ticks do not descend by one. */
int kz_wire_input_write(const kz_wire_input *in, uint8_t *out, size_t cap);
/* 0 or KZ_EPROTO (truncated, trailing bytes, count 0 or too big, a
 * rotation code that is not a smallest-three code, a relative offset
 * beyond reach, flags other than KZ_AVATAR_VR). */
int kz_wire_input_read(const uint8_t *p, size_t len, kz_wire_input *out);

/* Converts an application input (floats) into a command: clamps speed to
 * max_speed, offsets to reach, normalizes quaternions; NaN and infinities
 * become zero / identity. Never fails. */
void kz_wire_command_from(const kz_avatar_state *want, float max_speed, kz_wire_command *out);

/* Steps a quantized avatar by one command: position += move / tick_hz (in
 * exact integer arithmetic, so client prediction and server agree to the
 * unit), clamped to +-pos_max; velocity, yaw, anim, VR flag and poses
 * taken from the command. `st` keeps its entity, kind, holder and the
 * server-owned flags (speaking). */
void kz_wire_integrate(const kz_snap_codec *c, kz_snap_state *st, const kz_wire_command *cmd);

/* Position units one tick of velocity `v` (KZ_SNAP_VEL_UNITS) moves: the
 * step kz_wire_integrate takes, for extrapolation that matches it. */
int32_t kz_wire_step(const kz_snap_codec *c, int16_t v);

/* ---- snapshot header ---------------------------------------------------- */

/* What precedes the view delta: the client's own authoritative state and
 * the newest of its commands the server has applied, for reconciliation. */
typedef struct kz_wire_snap_head {
    uint32_t input_tick;     /* newest applied command tick; 0 = none yet */
    uint8_t corrected;       /* 1: the server changed that command's outcome */
    kz_snap_state self;      /* own root state (poses not sent) */
} kz_wire_snap_head;

int kz_wire_snap_head_write(const kz_snap_codec *c, const kz_wire_snap_head *h,
                            kz_bitwriter *w);
int kz_wire_snap_head_read(const kz_snap_codec *c, kz_bitreader *r, kz_wire_snap_head *h);

/* ---- events ------------------------------------------------------------- */

/* Client -> server chat is the text alone; server -> client prefixes the
 * sender's entity id (4 bytes, little-endian). Same for emote (2-byte id)
 * and voice (frame). */
#define KZ_RELAY_HEADER_BYTES 4u

/* Action codes (KZ_MSG_ACTION: code byte + 4-byte object id). */
#define KZ_ACTION_GRAB 1u
#define KZ_ACTION_RELEASE 2u
#define KZ_ACTION_TELEPORT 3u   /* id = portal id, not an entity */
#define KZ_ACTION_BYTES 5u

/* Block codes (KZ_MSG_BLOCK). */
#define KZ_BLOCK_ADD 1u
#define KZ_BLOCK_REMOVE 2u
#define KZ_BLOCK_BYTES 5u
#define KZ_BLOCK_MAX 32u     /* blocked clients per client */

#define KZ_ADMIN_BYTES 5u


#endif /* KZ_SIM_WIRE_H */
