/*
 * The server's internal state, shared by server.c (lifecycle, sessions,
 * messages), server_tick.c (the tick: inputs, world step, the world image)
 * and server_rules.c (visibility, zones, placement). Not installed.
 *
 * Three parts with one writer each:
 *   the world      entities (structure-of-arrays over the dense entity
 *                  index of kz_entities; the wire id is the generational
 *                  handle), grid, zones, portals, validation and audit;
 *                  simulation thread only;
 *   the sessions   per transport slot (kz__client): identity, input queue,
 *                  validator state, blocks, samplers; simulation thread
 *                  only;
 *   replication    per slot views and the replicators (sim/replicator.h),
 *                  fed once per tick with an immutable world image
 *                  (sim/frame.h); the replicators run on the I/O threads.
 * Every table is allocated at creation, sized from max_clients,
 * max_objects and max_visible; nothing is allocated per tick.
 */
#ifndef KZ_SIM_SERVER_IMPL_H
#define KZ_SIM_SERVER_IMPL_H

#include <kizuna/entity.h>
#include <kizuna/grid.h>
#include <kizuna/server.h>

#include "sim/frame.h"
#include "sim/interest.h"
#include "sim/replicator.h"
#include "sim/sessions.h"
#include "sim/snapshot.h"
#include "sim/validate.h"
#include "sim/wire.h"
#include "sim/world.h"

/* Admin and block requests per client: sustained rate and burst. Beyond
 * them a request is dropped and reported as KZ_VIOL_FLOOD. */
#define KZ__REQUESTS_PER_SECOND 2.0
#define KZ__REQUESTS_BURST 10.0
/* Role refusals per client before each further one is a KZ_VIOL_FLOOD. */
#define KZ__REFUSALS_PER_SECOND 0.5
#define KZ__REFUSALS_BURST 5.0
/* Client-triggered reports (audit records, log lines, refusal notices),
 * per client and kind: a burst, then one a second carrying the count of
 * those left out in between. */
#define KZ__REPORTS_PER_SECOND 1.0
#define KZ__REPORTS_BURST 4.0

/* Replication: the views, the replicators and their hand-over. */
typedef struct kz__replication {
    kz__repl_world w;             /* limits, ring and views every replicator shares */
    kz__replicator r[KZ__MAX_REPLICATORS];
    uint32_t n;                   /* one per I/O host */
    uint32_t owner_rows;          /* rows of frame.clients: the slots, and on an edge one
                                     per dense index for the owners of the replica's
                                     avatars (sim/fleet_edge.c) */
    int threaded;                 /* the replicators run on the I/O threads */
    kz__stage stage;
    kz__frame frames[KZ__FRAMES];
    void *frame_block;            /* the arrays of both frames */
    uint32_t *last_host;          /* per slot: host of the last frame that replicated it */
    uint32_t *last_tick;          /* per slot: that frame's tick, 0 = none */
    size_t frame_block_size;
    uint64_t tick_start[KZ__TIMED];  /* threaded: when each recent tick began (monotonic ns) */
    uint32_t timed;               /* threaded: newest tick whose whole time is recorded */
    void *views;                  /* the block behind w.views' arrays */
    size_t views_size;
} kz__replication;

struct kz_server {
    kz_server_config cfg;
    kz_validate_config vcfg;      /* limits for every input (from cfg) */
    kz_time_ns now;               /* of the current kz_server_step */
    kz_allocator alloc;
    kz_netserver *net;
    kz_ticker ticker;
    uint32_t tick;
    uint64_t rng;
    int draining;                 /* kz_server_shutdown was called */
    char drain_text[KZ_NOTICE_MAX_BYTES + 1];
    uint32_t n_slots;             /* view slots = max_visible */
    uint32_t history;             /* sent views kept per client */

    kz__world world;              /* the world store */
    kz__sessions sessions;        /* the session table */
    kz__replication rp;           /* views and replicators */

    kz_counters counters;         /* block 0: this thread; 1..: the replicators */
    kz_counter_block c;
    kz_hist tick_ns;
    kz__sampler spawn_reports;    /* log lines of connections refused for lack of a place */
    struct kz__fleet *fleet;      /* NULL: the single process; else the authority or an
                                     edge of a world on many processes (sim/fleet.h) */
    unsigned role;                /* KZ__ROLE_* (sim/fleet.h) */
};

/* server_tick.c */
void kz__server_tick(kz_server *s);
/* Threaded mode: records in the tick histogram the whole time of every
 * tick all replicators have finished since the last call (from the tick's
 * start to the last replicator's end). */
void kz__server_time_ticks(kz_server *s);
/* Threaded mode: the work of I/O host `host` (netserver_work.h): builds
 * the snapshots of the newest published tick for its clients. */
void kz__server_replicate_on(void *ctx, uint32_t host);
/* server.c: helpers the tick uses */
/* Draining: kicks every live client not yet told (kz_server_shutdown). */
void kz__server_tell_shutdown(kz_server *s);
void kz__server_send(kz_server *s, uint32_t slot, uint8_t channel, uint8_t type,
                     const void *data, uint32_t len);
/* 1 if the client in `slot` has dense index `idx` in its view (as its
 * replicator last left it). */
int kz__seen(const kz_server *s, uint32_t slot, uint32_t idx);

/* server_rules.c: zone entry, private zone membership. (The visibility
 * rule itself runs in the replicators on the world image:
 * kz__frame_may_see.) */
int kz__may_enter(const kz_server *s, const kz__client *cl, const int32_t pos[3]);
/* 1 if moving avatar `i` from `from` to `to` would bring it inside the
 * personal-space bubble of another avatar whose owner turned it on (moving
 * away from one, or within one already, is allowed). */
int kz__enters_bubble(kz_server *s, uint32_t i, const int32_t from[3], const int32_t to[3]);
/* Bit z set when `pos` is inside zone z. */
uint64_t kz__zones_at(const kz_server *s, const int32_t pos[3]);
/* server.c: a notice to the client in `slot`. */
void kz__notice(kz_server *s, uint32_t slot, uint8_t code, const char *text);
/* server.c: 1 when a client-triggered event of report kind `kind`
 * (KZ__REPORT_*) may be reported now (audit record, log line, notice);
 * *more gets the number left out since the last one reported. 0 when it
 * is left out (counted in reports_sampled_out). */
int kz__report_take(kz_server *s, kz__client *cl, unsigned kind, uint32_t *more);

/* server_rules.c: placement. 1 when the client may stand at `pos`: inside
 * the world and in no zone that refuses it. */
int kz__may_be_at(const kz_server *s, const kz__client *cl, const int32_t pos[3]);
/* The nearest point (same height) the client may stand at, found among
 * the exact exits of the zones that refuse it at `from` and then by a
 * widening search; 1 with *out set, 0 when the world has none. */
int kz__nearest_allowed(const kz_server *s, const kz__client *cl, const int32_t from[3],
                        int32_t out[3]);
/* Moves the avatar of `cl` (in `slot`), which stands where it may not,
 * to the nearest allowed point and tells it; kicks it (KZ_KICK_NO_PLACE)
 * when there is none. 1 when moved, 0 when kicked. */
int kz__zone_evict(kz_server *s, uint32_t slot, kz__client *cl);
/* Once per change of the zones (zones_gen): every live avatar inside a
 * zone it may no longer enter is evicted. Called at the start of a tick. */
void kz__zones_enforce(kz_server *s);
void kz__update_private_zones(kz_server *s);
/* server.c: appends an audit record about client `cl` (may be NULL) when
 * the server has an audit log; a full ring is counted by the log. */
void kz__audit(kz_server *s, uint32_t type, const kz__client *cl, uint32_t code, const char *detail);
/* server.c: tells the owner of `target` that `observer` now sees it. */
void kz__announce_observer(kz_server *s, const kz__client *observer, uint32_t target);
/* server.c: tells the owner of every avatar that came into an observer's
 * view (the replicators' `entered` bits) that it is watched. Once per
 * tick. */
void kz__announce_observers(kz_server *s);

#endif /* KZ_SIM_SERVER_IMPL_H */
