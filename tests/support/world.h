/*
 * Test support: a whole world in one process on loopback — a kz_server in
 * single-threaded mode, N kz_clients, and optionally an impairing relay
 * between them — driven by one injected clock. Used by the end-to-end
 * world suites and the world benchmarks.
 */
#ifndef KZ_TESTS_SUPPORT_WORLD_H
#define KZ_TESTS_SUPPORT_WORLD_H

#include <kizuna/client.h>
#include <kizuna/proxy.h>
#include <kizuna/server.h>

#include "support/loopback.h"

/* A bot that walks straight lines at `speed`, turning to a new random
 * heading every `turn_ticks` input ticks and back toward the origin when
 * it strays beyond `roam` meters. */
typedef struct kzt_wander {
    uint64_t rng;
    float speed, roam;
    uint32_t turn_ticks, until;
    float heading;
    uint32_t vr;             /* non-zero: moves head and hands too */
} kzt_wander;

typedef struct kzt_world {
    kzt_keys keys;
    kz_server *srv;
    kz_proxy *proxy;         /* NULL without impairment */
    kz_client **clients;
    kz_connect_token *tokens;  /* client i's token file (a restarted client reuses it) */
    kzt_wander *bots;
    uint32_t n;
    kz_time_ns now;
    kz_proxy_tap_fn tap;     /* set before start: the relay's tap (kept by start) */
    void *tap_ctx;
    uint32_t spare;          /* set before start: server slots beyond the n clients */
    uint32_t moderators;     /* set before start: clients 0..moderators-1 hold "moderator" */
    uint32_t agents;         /* set before start: the last `agents` clients are AI agents */
    uint32_t verified;       /* set before start: clients 0..verified-1 were verified
                                strongly (KZ_VERIFY_STRONG, method "ekyc") */
    kz_log server_log;       /* set before start: the server's log (zero: stderr, warnings) */
} kzt_world;

/* Mints a token for client id `id` to this world's server (for extra,
 * hand-driven clients in spare slots). */
int kzt_world_mint(const kzt_world *w, uint64_t id, kz_connect_token *out);
/* The same with a role (NULL: none), a verification level (KZ_VERIFY_*;
 * any level but none names the method "ekyc") and an actor kind. */
int kzt_world_mint_as(const kzt_world *w, uint64_t id, const char *role, uint8_t level,
                      uint8_t actor_kind, kz_connect_token *out);

/* An audit log in a fresh temporary file with a fresh signing key. */
typedef struct kzt_audit {
    char path[64];
    kz_sign_keypair key;
    kz_audit *log;
} kzt_audit;
/* 0 or a KZ_E code. */
int kzt_audit_open(kzt_audit *a);
/* Closes the log, verifies the whole file against the key and counts the
 * records of `type` by client `client` (0 = any) whose detail contains
 * `detail` (NULL = any). Returns the count, or -1 when the file does not
 * verify or cannot be read. Removes the file. */
int kzt_audit_close_count(kzt_audit *a, uint32_t type, uint64_t client, const char *detail);
/* Like kzt_audit_close_count on a log already closed, without removing it. */
int kzt_audit_count(const kzt_audit *a, uint32_t type, uint64_t client, const char *detail);

/* Starts a world of `n` clients; `impair` is a kz_impair profile applied
 * both ways (NULL = direct). `scfg` may be NULL for defaults (its net
 * part is filled in here but for threaded, io_threads, ring_capacity,
 * alloc and clock). The clients start connecting at once. 0 or a KZ_E
 * code. */
int kzt_world_start(kzt_world *w, uint32_t n, const char *impair, const kz_server_config *scfg,
                    uint64_t seed);
/* Advances the clock by dt and runs relay, server and every client once. */
void kzt_world_step(kzt_world *w, kz_time_ns dt);
/* Steps until every client is CONNECTED or `limit` of clock passes; returns
 * the number connected. */
uint32_t kzt_world_connect_all(kzt_world *w, kz_time_ns dt, kz_time_ns limit);
/* Gives bot i's intent to its client for this tick (call once per step). */
void kzt_world_drive(kzt_world *w, uint32_t i, uint32_t tick);
void kzt_world_stop(kzt_world *w);

#endif /* KZ_TESTS_SUPPORT_WORLD_H */
