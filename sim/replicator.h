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
 * slot and the index of the state in the image ring (row * cap + dense
 * index), 6 bytes instead of a 66-byte copy. A view whose oldest
 * reference is about to leave the ring is no longer a baseline (the
 * client then gets full state for the entries it lacks), so a reference
 * never outlives its row.
 *
 * Ownership: a replicator writes only the views of the slots its host
 * serves in the frame it works on, and its own scratch. The simulation
 * thread reads two things of a view: `serial` and `seen` (atomics), to
 * decide who hears chat and voice and whom an observer must be announced
 * to. A slot moves to another host only across sessions, and a session
 * ends at least one frame before the slot's next one starts, which the
 * hand-over orders (sim/frame.h).
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
    uint32_t oldest;       /* tick of the oldest state referred to */
    uint16_t *slot;        /* ascending view slots */
    uint32_t *ref;         /* per entry: ring row * cap + dense index */
} kz__sent_view;

/* One slot's view of the world, kept across ticks. */
typedef struct kz__view {
    _Atomic uint32_t serial;   /* the session this view belongs to; stored (release)
                                  after a reset, so a reader that sees it sees a
                                  cleared `seen` */
    uint32_t acked;            /* newest acknowledged view still held, 0 = none */
    uint32_t n_vis;
    uint32_t priority_first;   /* the last snapshot left changes out: sort first */
    double budget;             /* bytes this client may still receive */
    uint32_t *slot_ent;        /* view slot -> dense index + 1 (0 = free) */
    uint32_t *since;           /* tick each view slot was taken */
    uint32_t *slot_id;         /* wire id of the entity in each view slot */
    uint32_t *vis;             /* visible dense indices (interest's prev) */
    float *acc;                /* priority accumulated per view slot */
    float *score;              /* its interest score at the last interest run */
    _Atomic uint64_t *seen;    /* bitmap over dense indices: in view */
    kz__sent_view *hist;       /* views sent, ring by tick % history */
} kz__view;

/* Hands one snapshot to the transport: 0 when taken. */
typedef int (*kz__repl_send_fn)(void *ctx, uint32_t host, uint32_t slot, uint32_t serial,
                                const void *data, uint32_t len);

/* What every replicator shares, fixed at creation (read-only after). */
typedef struct kz__repl_world {
    kz_snap_codec codec;
    uint32_t cap;              /* entity capacity (dense indices) */
    uint32_t max_clients;
    uint32_t n_slots;          /* view slots per client (max_visible) */
    uint32_t history;          /* sent views kept per client */
    uint32_t rows;             /* image ring rows: history + KZ__RING_SLACK */
    uint32_t tick_hz;
    uint32_t bytes_per_second;
    uint32_t interest_period;
    kz_interest_config interest;
    const kz_snap_state *ring; /* rows * cap quantized states */
    kz__view *views;           /* per slot */
    kz_server_visible_fn visible;
    void *visible_ctx;
    kz__repl_send_fn send;
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
    kz_snap_view want;         /* what the client should see now */
    kz_snap_view base;         /* its baseline, taken out of the ring */
    kz_snap_view sent;         /* what it will hold after decoding */
    uint16_t *order;           /* priority order of `want` */
    float *prio;               /* per want entry: its priority, for the sort */
    uint16_t *order_tmp;
    uint8_t *change;
    uint32_t *want_key;        /* per want entry: dense index (cache key) */
    const kz_snap_state **want_base;  /* per want entry: world state at the baseline tick */
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
/* Simulation thread: the word `word` of the `seen` bitmap of the client in
 * `slot`, 0 if the view is not yet that session's. */
uint64_t kz__view_seen_word(const kz__repl_world *w, uint32_t slot, uint32_t serial,
                            uint32_t word);

/* The visibility rule on a frame: 1 if dense indices `a` and `b` may see
 * each other (sim/server_rules.c states the rule). */
int kz__frame_may_see(const kz__repl_world *w, const kz__frame *f, uint32_t a, uint32_t b);

#endif /* KZ_SIM_REPLICATOR_H */
