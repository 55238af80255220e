/*
 * The session table: per transport slot, what the simulation keeps about
 * the session in it (identity from the token, input queue, validator
 * state, blocks, samplers). Simulation thread only. Internal.
 *
 * A session's view of the world (what it sees, what it was sent) is not
 * here: it belongs to the replicator of its host (sim/replicator.h).
 */
#ifndef KZ_SIM_SESSIONS_H
#define KZ_SIM_SESSIONS_H

#include <kizuna/alloc.h>
#include <kizuna/token.h>

#include "sim/validate.h"
#include "sim/wire.h"

#define KZ__INPUT_QUEUE 16u        /* commands buffered per client (power of two) */
/* A client's queue may keep this many commands after a tick's own is
 * taken, against jitter. Deeper for KZ__INPUT_DEEP_TICKS ticks in a row
 * (a burst after a stall, a clock a little fast), it is caught up: one
 * extra command per tick until it is back, so inputs do not wait in a
 * standing queue (latency) for the rest of the session. */
#define KZ__INPUT_SLACK 2u
#define KZ__INPUT_DEEP_TICKS 8u
/* A tick that finds the queue empty repeats the client's last command and
 * stands in for its next one (which is then not applied again when it
 * arrives late), for at most this many commands past the newest received:
 * a client that went quiet longer is not left with its next inputs
 * already spent. A repeat past that owes its move: the next catch-up
 * drops a command instead of applying it. */
#define KZ__INPUT_COVER 4u

/* The kinds of client-triggered reports, each sampled on its own. */
enum {
    KZ__REPORT_ADMIN = 0,   /* role-gated action refused for lack of the role */
    KZ__REPORT_BLOCK,       /* block added */
    KZ__REPORT_ZONE,        /* held at a zone's boundary, portal exit refused */
    KZ__REPORT_TELEPORT,    /* teleport without a grant */
    KZ__REPORT_KINDS
};

/* One sampled stream of reports: a token bucket and the number of events
 * left out since the last one reported. */
typedef struct kz__sampler {
    kz_validate_bucket bucket;
    uint32_t left_out;
} kz__sampler;

/* One session's state on the simulation thread. Plain values only (no
 * pointers), so a new session starts from client_reset's zero. */
typedef struct kz__client {
    uint8_t live;                 /* has an avatar */
    uint8_t corrected;            /* the newest applied command was changed */
    uint8_t told_shutdown;        /* its shutdown kick is queued */
    uint8_t kicked;               /* a kick is queued (or owed): nothing it sends is
                                     processed and nothing is sent to it but the kick */
    uint8_t owe_kick;             /* a no-place kick the full outbound ring refused */
    uint8_t detached;             /* its path went silent (resume): it stands still */
    uint8_t path_credit;          /* path records it may still write (server.c) */
    uint32_t path_credit_tick;    /* when the credit was last refilled, 0 = never */
    uint32_t path_left_out;       /* path changes not audited since the last record */
    uint32_t avatar;              /* dense entity index */
    uint32_t serial;              /* the transport session (netserver_work.h) */
    uint32_t host;                /* the I/O host serving it */
    /* inputs */
    kz_wire_command queue[KZ__INPUT_QUEUE];
    uint32_t q_head, q_count;
    uint32_t q_deep;              /* ticks in a row the queue kept more than the slack */
    uint32_t repeat_debt;         /* repeats that stood in for no command: moves a
                                     catch-up takes back (server_tick.c) */
    uint32_t newest_cmd;          /* newest command tick received */
    uint32_t applied_cmd;         /* newest command tick applied */
    kz_wire_command last;         /* repeated while the queue is empty */
    /* snapshots: the replicator checks this claim against the views it holds */
    uint32_t acked;               /* newest snapshot tick the client acknowledged, 0 = none */
    /* identity, from the token */
    uint64_t client_id;
    uint64_t acting_for;
    uint8_t verification_level, actor_kind;
    uint8_t n_roles;
    char roles[KZ_TOKEN_MAX_ROLES][KZ_TOKEN_ROLE_MAX + 1];
    /* mutual blocks: client ids this client blocked */
    uint64_t blocked[KZ_BLOCK_MAX];
    uint32_t n_blocked;
    uint32_t blocked_gen;         /* bumped by every change of `blocked` */
    uint8_t muted, observer;
    uint8_t at_boundary;          /* pushing against a zone it may not enter */
    uint8_t bubble;               /* personal-space bubble on */
    uint32_t near_portals;        /* bit per portal the avatar stands at */
    uint64_t in_zones;            /* bit per zone the avatar is in (for notices) */
    kz_validate_client val;       /* cheat checks: rates, clock, strikes */
    kz_validate_bucket requests;  /* admin and block requests */
    kz_validate_bucket refusals;  /* role refusals */
    kz__sampler reports[KZ__REPORT_KINDS];
} kz__client;

typedef struct kz__sessions {
    kz__client *clients;          /* per slot */
    uint32_t max_clients;
    uint32_t words;               /* 64-bit words of an entity bitmap */
    uint32_t n_live;              /* slots with an avatar */
    uint32_t n_bubbles;           /* clients with their bubble on */
    uint32_t owed_kicks;          /* clients with owe_kick set */
    kz_allocator alloc;
} kz__sessions;

/* Room for `max_clients` slots over `cap` entities. 0 or KZ_ENOMEM;
 * kz__sessions_fini is safe after a failed init. */
KZ_MUST_CHECK int kz__sessions_init(kz__sessions *t, uint32_t max_clients, uint32_t cap,
                                    const kz_allocator *a);
void kz__sessions_fini(kz__sessions *t);

/* Starts the slot's state for the session `serial` served by I/O host
 * `host` from nothing (no avatar, empty queue, fresh validator, no
 * blocks) and returns it. */
kz__client *kz__session_reset(kz__sessions *t, uint32_t slot, uint32_t serial, uint32_t host);

#endif /* KZ_SIM_SESSIONS_H */
