/*
 * The world image of one tick: everything a replicator reads to build the
 * snapshots of that tick, and nothing else. The simulation thread writes
 * it once per tick and publishes it; replicators read it, on other
 * threads, while the simulation goes on with the next tick. Internal.
 *
 * Hand-over (kz__stage). Two frames alternate (tick % KZ__FRAMES), and
 * the quantized entity states live in a ring of image rows (tick %
 * rows), older rows kept as the baselines clients acknowledged:
 *   world   waits until every replicator has finished tick T - 2 (its
 *           `done`), writes frame T % 2 and ring row T % rows, then
 *           stores `published` = T (release);
 *   replica loads `published` (acquire); if newer than its `done`, builds
 *           that tick's snapshots for its own clients, then stores `done`
 *           (release).
 * So a replicator may still work on tick T - 1 while the world writes T,
 * never on anything the world is writing: frame T - 1 is the other frame,
 * and ring row T % rows held tick T - rows, which no replicator reads
 * (sim/replicator.h: a baseline is used only while every state it refers
 * to is newer than tick t - rows + 2). No lock on either side; in the
 * steady state the world never waits, because a replicator finishes a
 * tick long before the next is due. In single-threaded mode the world
 * runs the replicators itself, in host order, right after publishing.
 */
#ifndef KZ_SIM_FRAME_H
#define KZ_SIM_FRAME_H

#include <stdatomic.h>

#include <kizuna/grid.h>

#include "sim/snapshot.h"
#include "sim/wire.h"

#define KZ__FRAMES 2u          /* frames in flight: one read, one written */
/* Image rows for a snapshot history of `h` views: the history twice over
 * and a little, so a state a client was sent and then left out for the
 * budget stays a baseline for about two histories' worth of ticks (a
 * client that acknowledges rarely on a small budget is resent what it has
 * not acknowledged, and falls behind by that much). */
#define KZ__RING_ROWS(h) (2u * (h) + 8u)
#define KZ__MAX_REPLICATORS 16u
#define KZ__TIMED 8u           /* ticks whose finish times the stage keeps */

/* Visibility-rule bits of an entity (kz__frame.rule). A pair of entities
 * with no bit set on either side and the same private zone needs no rule
 * work at all: nothing but the application's hook can hide one from the
 * other. */
#define KZ__RULE_OBSERVER 1u   /* its owner observes: seen by no one */
#define KZ__RULE_BLOCKS 2u     /* its owner has blocked someone */
#define KZ__RULE_ZONED 4u      /* it stands in a private zone */

/* What a replicator needs of one transport slot. */
typedef struct kz__frame_client {
    uint64_t client_id;
    uint32_t serial;       /* the transport session; a new one resets the view */
    uint32_t avatar;       /* dense entity index */
    uint32_t input_tick;   /* newest command applied */
    uint32_t acked;        /* newest snapshot tick the client acknowledged (a claim:
                              the replicator uses it only if it holds that view) */
    uint32_t n_blocked;
    uint32_t blocked_gen;  /* the world's block-list generation copied into `blocked` */
    uint8_t replicate;     /* has an avatar and is not being kicked */
    uint8_t corrected;     /* its newest command was changed */
    uint8_t host;          /* the I/O host serving it, whose replicator sends */
    uint8_t pad;
} kz__frame_client;

typedef struct kz__frame {
    uint32_t tick;
    const kz_snap_state *image;   /* ring row of this tick: cap states, entity 0 = none */
    uint32_t *ids;                /* per dense index: its entity id, 0 = none (the
                                     image's ids, packed for scans) */
    kz_grid grid;                 /* the world's grid at this tick */
    uint8_t *rule;                /* per dense index: KZ__RULE_* */
    uint8_t *zone;                /* per dense index: private zone + 1, 0 = none */
    uint32_t *owner;              /* per dense index: owner's slot + 1, 0 = none */
    float *importance;            /* per dense index */
    kz_snap_badge *badge;         /* per dense index */
    uint32_t *badge_gen;          /* per dense index: the generation copied */
    kz__frame_client *clients;    /* per slot */
    uint64_t (*blocked)[KZ_BLOCK_MAX];  /* per slot: client ids it blocked */
} kz__frame;

/* The hand-over counters between the world and the replicators, and when
 * each replicator finished each of the last KZ__TIMED ticks (monotonic
 * ns; a tick it skipped counts as finished with the newer one that
 * replaced it), so the world can time whole ticks. */
typedef struct kz__stage {
    _Atomic uint32_t published;                  /* newest tick ready, 0 = none */
    _Atomic uint32_t done[KZ__MAX_REPLICATORS];  /* newest tick each finished */
    _Atomic uint64_t finished_ns[KZ__MAX_REPLICATORS][KZ__TIMED];  /* by tick % KZ__TIMED */
    uint32_t n;                                  /* replicators */
} kz__stage;

/* World side: 1 when the frame and ring row of `tick` may be written,
 * that is every replicator has finished tick - 2. A replicator whose
 * `done` is above the newest published tick finished a tick from before
 * an edge's tick went back (a new authority), not one of these: it may
 * still be on the tick just published, so it counts as not finished. */
static inline int kz__stage_writable(const kz__stage *st, uint32_t tick)
{
    uint32_t published = atomic_load_explicit(&st->published, memory_order_acquire);
    for (uint32_t h = 0; h < st->n; h++) {
        uint32_t d = atomic_load_explicit(&st->done[h], memory_order_acquire);
        if (d > published || (uint64_t)d + 2u < tick)
            return 0;
    }
    return 1;
}

/* World side: the frame of `tick` is complete. */
static inline void kz__stage_publish(kz__stage *st, uint32_t tick)
{
    atomic_store_explicit(&st->published, tick, memory_order_release);
}

/* Replicator side: the newest published tick if it is newer than what
 * replicator `h` finished (*skipped gets the ticks it jumps over), else 0. */
static inline uint32_t kz__stage_take(const kz__stage *st, uint32_t h, uint32_t *skipped)
{
    uint32_t t = atomic_load_explicit(&st->published, memory_order_acquire);
    uint32_t done = atomic_load_explicit(&st->done[h], memory_order_relaxed);
    *skipped = done && t > (uint64_t)done + 1u ? t - done - 1u : 0;
    return t != done ? t : 0;
}

/* Replicator side: replicator `h` is done with `tick` at `now_ns`. */
static inline void kz__stage_done(kz__stage *st, uint32_t h, uint32_t tick, uint64_t now_ns)
{
    uint32_t done = atomic_load_explicit(&st->done[h], memory_order_relaxed);
    if (tick > done) {
        /* Counted: `t <= tick` would never end at tick UINT32_MAX. */
        uint32_t n = tick - done > KZ__TIMED ? KZ__TIMED : tick - done;
        for (uint32_t k = 0, t = tick - (n - 1u); k < n; k++, t++)
            atomic_store_explicit(&st->finished_ns[h][t % KZ__TIMED], now_ns,
                                  memory_order_relaxed);
    }
    atomic_store_explicit(&st->done[h], tick, memory_order_release);
}

/* World side: the newest tick every replicator has finished. */
static inline uint32_t kz__stage_all_done(const kz__stage *st)
{
    uint32_t low = UINT32_MAX;
    for (uint32_t h = 0; h < st->n; h++) {
        uint32_t d = atomic_load_explicit(&st->done[h], memory_order_acquire);
        low = d < low ? d : low;
    }
    return st->n ? low : 0;
}

/* World side: 1 when the frame and ring row of `tick` may be written.
 * Ticks are consecutive in a single process (kz__stage_writable). An
 * edge's may jump ahead (its first world image, a SYNC after a gap),
 * repeat (a SYNC of the tick it has just applied) or go back (a new
 * authority): a replicator may then be on the newest published tick or
 * the one before it, whose frame `tick` may share, so every replicator
 * must have finished the newest. After that nothing of theirs is read
 * any more but the views' baselines, which carry their own ticks
 * (sim/replicator.h). */
static inline int kz__stage_frame_writable(const kz__stage *st, uint32_t tick)
{
    uint32_t published = atomic_load_explicit(&st->published, memory_order_acquire);
    if (tick == published + 1u)
        return kz__stage_writable(st, tick);
    for (uint32_t h = 0; h < st->n; h++)  /* each finished exactly the newest */
        if (atomic_load_explicit(&st->done[h], memory_order_acquire) != published)
            return 0;
    return 1;
}

/* World side: when the last replicator finished `tick` (which every one
 * has, kz__stage_all_done). */
static inline uint64_t kz__stage_finished(const kz__stage *st, uint32_t tick)
{
    uint64_t last = 0;
    for (uint32_t h = 0; h < st->n; h++) {
        uint64_t at = atomic_load_explicit(&st->finished_ns[h][tick % KZ__TIMED],
                                           memory_order_relaxed);
        last = at > last ? at : last;
    }
    return last;
}

/* World side: 1 when the client in a slot may be replicated by `host` at
 * `tick`, given the host and tick it was last replicated at (`last_tick`
 * 0: never). A slot whose new session another host serves is left out of
 * one frame: the old host may still be building tick - 1 with the slot's
 * view, and the new one must not touch it before that is done (the new
 * host's first frame, tick + 1, is written only after every replicator
 * finished tick - 1). */
static inline int kz__frame_host_settled(uint32_t last_host, uint32_t last_tick, uint32_t host,
                                         uint32_t tick)
{
    return last_tick == 0 || last_host == host || last_tick + 1u < tick;
}

/* sim/grid.c: makes `dst` (initialised with the same configuration as
 * `src`) an exact copy of `src`, in one copy of its block. 0 or
 * KZ_EINVAL (another configuration). */
int kz__grid_copy(kz_grid *dst, const kz_grid *src);

#endif /* KZ_SIM_FRAME_H */
