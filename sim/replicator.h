/*
 * Replication: the per-client half of a tick, apart from the world that
 * simulates it. A replicator takes one published world image (sim/frame.h)
 * and, for each of its clients, runs interest, keeps the client's view
 * table and the history of views it was sent, delta-encodes the snapshot
 * against the newest view the client acknowledged, and hands it to its
 * send function. Internal.
 *
 * One replicator per I/O host: it builds the snapshots of the clients
 * that host serves, on that host's thread (threaded mode) or on the
 * simulation thread in host order (single-threaded mode). Its input is
 * narrow on purpose: the frame, the image ring, its clients' views and
 * the world's fixed limits; it never reads the live world, so it may run
 * while the world steps the next tick, and the same code can run where
 * the world is not.
 *
 * Views are stored by reference: a sent view keeps, per entry, the view
 * slot, the index of the state in the image ring (row * cap + dense
 * index) and the low 16 bits of that row's tick: 8 bytes instead of a
 * 66-byte copy. An entry whose state has left the ring (an update left
 * out for the budget for about rows ticks) is never read. When its view
 * slot has held the same entity since the baseline, the client holds
 * that entity there: the baseline names it with a state marked unknown,
 * so it goes out as an enter in its place (a renew) or, when that does
 * not fit, the client keeps what it holds and the sent view keeps the
 * entry as lost (ref KZ__REF_LOST) until a renew fits; it is never left
 * while in view. Otherwise the slot gets a stand-in no entity matches,
 * so that entry goes out as a replacing enter (or a leave). Either way
 * the rest of the baseline still serves.
 *
 * Ownership: a replicator writes only the views of the slots its host
 * serves in the frame it works on, and its own scratch. The simulation
 * thread reads, through atomics, a view's `serial` and `seen` (who hears
 * chat and voice) and takes its `entered` bits (whom an observer must be
 * announced to). When a slot's next session is served by another host,
 * the world leaves the slot out of one frame (kz__frame_host_settled), so
 * the old host has finished with the view before the new one touches it.
 */
#ifndef KZ_SIM_REPLICATOR_H
#define KZ_SIM_REPLICATOR_H

#include <kizuna/counters.h>
#include <kizuna/server.h>

#include "sim/frame.h"
#include "sim/interest.h"

/* A view a client was sent, by reference into the image ring. */
typedef struct kz__sent_view {
    uint32_t tick;         /* 0 = none: never a baseline */
    uint32_t count;
    uint16_t *slot;        /* ascending view slots */
    uint16_t *at;          /* per entry: low 16 bits of the tick of its ring row */
    uint32_t *ref;         /* per entry: ring row * cap + dense index, or
                              KZ__REF_LOST: the client holds the entity in a
                              state the ring no longer has */
} kz__sent_view;

#define KZ__REF_LOST UINT32_MAX

/* One slot's view of the world, kept across ticks. */
typedef struct kz__view {
    _Atomic uint32_t serial;   /* the session this view belongs to; stored (release)
                                  after a reset, so a reader that sees it sees a
                                  cleared `seen` */
    uint32_t acked;            /* newest acknowledged view still held, 0 = none */
    uint32_t acked_before;     /* the acknowledged view before it, 0 = none: the
                                  older view of second-order prediction */
    uint32_t n_vis;
    uint32_t priority_first;   /* the last snapshot left changes out: sort first */
    uint32_t observing;        /* its avatar was an observer in the last frame */
    double budget;             /* bytes this client may still receive */
    uint32_t *slot_ent;        /* view slot -> dense index + 1 (0 = free) */
    uint32_t *since;           /* tick each view slot was taken, moved on while
                                  its entry must go first (mark_urgent) */
    uint32_t *taken;           /* tick each view slot was given its entity */
    uint32_t *slot_id;         /* wire id of the entity in each view slot */
    uint32_t *vis;             /* visible dense indices (interest's prev) */
    float *acc;                /* priority accumulated per view slot */
    float *score;              /* its interest score at the last interest run */
    _Atomic uint64_t *seen;    /* bitmap over dense indices: in view */
    _Atomic uint64_t *entered; /* bitmap over dense indices: came into an observer's
                                  view; taken (exchanged with 0) by the world, which
                                  tells their owners */
    kz__sent_view *hist;       /* views sent, ring by tick % history */
} kz__view;

/* Hands one snapshot to the transport: 0 when taken. */
typedef int (*kz__repl_send_fn)(void *ctx, uint32_t host, uint32_t slot, uint32_t serial,
                                const void *data, uint32_t len);
/* Before a replicator sends: hands the transport what the world queued for
 * its host, so that reaches clients first (a welcome before the first
 * snapshot). */
typedef void (*kz__repl_flush_fn)(void *ctx, uint32_t host);

/* What every replicator shares, fixed at creation (read-only after). */
typedef struct kz__repl_world {
    kz_snap_codec codec;
    uint32_t cap;              /* entity capacity (dense indices) */
    uint32_t max_clients;
    uint32_t n_slots;          /* view slots per client (max_visible) */
    uint32_t history;          /* sent views kept per client */
    uint32_t rows;             /* image ring rows: KZ__RING_ROWS(history) */
    uint32_t tick_hz;
    uint32_t bytes_per_second;
    uint32_t interest_period;
    kz_interest_config interest;
    const kz_snap_state *ring; /* rows * cap quantized states */
    kz__view *views;           /* per slot */
    kz_server_visible_fn visible;
    void *visible_ctx;
    kz__repl_send_fn send;
    kz__repl_flush_fn flush;   /* NULL: nothing to flush */
    void *send_ctx;
} kz__repl_world;

/* One replicator's scratch: nothing in it outlives a client's turn
 * except the record cache, which lives for one tick. */
typedef struct kz__replicator {
    uint32_t host;
    const kz__repl_world *w;
    kz_counter_block c;        /* world counters, this replicator's block */
    kz_interest interest;
    uint32_t *sel;             /* interest output */
    float *sel_score;
    uint16_t *slot_of;         /* per dense index: view slot while updating a view */
    uint8_t *kept;             /* per view slot, while updating a view */
    /* The codec's views, all by pointer (kz_snap_view.ref) into the frame's
     * image and the ring: nothing is copied per entry. */
    kz_snap_view want;         /* what the client should see now */
    kz_snap_view base;         /* its baseline */
    kz_snap_view older;        /* the view before the baseline (second order) */
    kz_snap_view sent;         /* what it will hold after decoding */
    kz_snap_state stand_in;    /* a baseline entry whose state left the ring */
    kz_snap_state *lost;       /* per base entry: its unknown state (entity, kind) */
    uint8_t *unknown;          /* per base entry: 1 = lost, the client holds it */
    uint32_t n_unknown;        /* entries marked in `unknown` this turn */
    uint16_t *order;           /* priority order of `want` */
    float *prio;               /* per want entry: its priority, for the sort */
    uint16_t *order_tmp;
    uint8_t *change;
    uint32_t *want_key;        /* per want entry: dense index (cache key) */
    const kz_snap_state **want_base;  /* per want entry: world state at the baseline tick */
    const kz_snap_state **want_older; /* per want entry: world state at the older tick */
    kz_snap_cache cache;       /* encoded updates shared by its clients this tick */
    void *block;
    size_t block_size;
    kz_allocator alloc;
} kz__replicator;

/* Bytes of one client's view for these limits (for memory accounting). */
size_t kz__view_footprint(const kz__repl_world *w);
/* Lays out every slot's view over one zeroed block of
 * kz__view_footprint(w) * max_clients bytes. */
void kz__views_place(kz__repl_world *w, void *block);

/* Sets up a replicator for `host`, counting into `c`; `a` NULL for the C
 * library. 0, KZ_ENOMEM or KZ_EINVAL. fini is safe after a failed init. */
KZ_MUST_CHECK int kz__replicator_init(kz__replicator *r, const kz__repl_world *w, uint32_t host,
                                      kz_counter_block c, const kz_allocator *a);
void kz__replicator_fini(kz__replicator *r);

/* Builds and sends the snapshots of `f` for every client whose host is
 * this replicator's. */
void kz__replicator_run(kz__replicator *r, const kz__frame *f);

/* Simulation thread: 1 if the client in `slot` (session `serial`) has
 * dense index `idx` in view. */
int kz__view_sees(const kz__repl_world *w, uint32_t slot, uint32_t serial, uint32_t idx);
/* Simulation thread: takes (and clears) word `word` of the `entered`
 * bitmap of the client in `slot`: avatars that came into its view while
 * it observed. 0 if the view is not yet that session's. */
uint64_t kz__view_take_entered(const kz__repl_world *w, uint32_t slot, uint32_t serial,
                               uint32_t word);

/* The visibility rule on a frame: 1 if dense indices `a` and `b` may see
 * each other (sim/server_rules.c states the rule). */
int kz__frame_may_see(const kz__repl_world *w, const kz__frame *f, uint32_t a, uint32_t b);

#endif /* KZ_SIM_REPLICATOR_H */
