/*
 * Replicators (sim/replicator.h): interest, view upkeep, baseline choice,
 * delta encoding and sending, per client, from one published world image.
 * This is the hot path of the server: it reads the frame and the image
 * ring, writes only its own clients' views and its scratch, and allocates
 * nothing after init.
 */
#include "sim/replicator.h"

#include <string.h>

#include <kizuna/entity.h>

#include "core/assert.h"
#include "sim/layout.h"

#define KZ__NO_SLOT 0xFFFFu
/* Ticks before its state leaves the ring at which a baseline entry left
 * out for the budget goes first. */
#define KZ__AGE_MARGIN 4u
#define KZ__ALIGN 8u

/* ---- layout ------------------------------------------------------------- */

static size_t align_up(size_t n)
{
    return (n + (KZ__ALIGN - 1u)) & ~(size_t)(KZ__ALIGN - 1u);
}

/* Lays out (or measures, when `base` is NULL) one view and its history
 * from `base`; returns the bytes used. */
static size_t view_layout(const kz__repl_world *w, kz__view *v, uint8_t *base)
{
    size_t off = 0, ns = w->n_slots, words = (w->cap + 63u) / 64u;
#define KZ__PLACE(ptr, count) KZ__LAYOUT(off, base, ptr, count, KZ__ALIGN)
    kz__view dummy;
    kz__view *p = base ? v : &dummy;
    KZ__PLACE(p->slot_ent, ns);
    KZ__PLACE(p->since, ns);
    KZ__PLACE(p->taken, ns);
    KZ__PLACE(p->slot_id, ns);
    KZ__PLACE(p->vis, ns);
    KZ__PLACE(p->acc, ns);
    KZ__PLACE(p->score, ns);
    KZ__PLACE(p->seen, words);
    KZ__PLACE(p->entered, words);
    KZ__PLACE(p->hist, w->history);
    for (uint32_t k = 0; k < w->history; k++) {
        kz__sent_view dh;
        kz__sent_view *h = base ? &p->hist[k] : &dh;
        KZ__PLACE(h->slot, ns);
        KZ__PLACE(h->at, ns);
        KZ__PLACE(h->ref, ns);
    }
#undef KZ__PLACE
    return align_up(off);
}

size_t kz__view_footprint(const kz__repl_world *w)
{
    return view_layout(w, NULL, NULL);
}

void kz__views_place(kz__repl_world *w, void *block)
{
    size_t each = kz__view_footprint(w);
    for (uint32_t i = 0; i < w->max_clients; i++)
        (void)view_layout(w, &w->views[i], (uint8_t *)block + (size_t)i * each);
}

static size_t scratch_layout(kz__replicator *r, uint8_t *base)
{
    size_t off = 0, ns = r->w->n_slots, cap = r->w->cap;
#define KZ__ARR(ptr, count) KZ__LAYOUT(off, base, ptr, count, 64u)
    KZ__ARR(r->sel, ns);
    KZ__ARR(r->sel_score, ns);
    KZ__ARR(r->slot_of, cap);
    KZ__ARR(r->kept, ns);
    KZ__ARR(r->want.slot, ns);
    KZ__ARR(r->want.ref, ns);
    KZ__ARR(r->base.slot, ns);
    KZ__ARR(r->base.ref, ns);
    KZ__ARR(r->lost, ns);
    KZ__ARR(r->unknown, ns);
    KZ__ARR(r->older.slot, ns);
    KZ__ARR(r->older.ref, ns);
    KZ__ARR(r->sent.slot, ns);
    KZ__ARR(r->sent.ref, ns);
    KZ__ARR(r->order, ns);
    KZ__ARR(r->prio, ns);
    KZ__ARR(r->order_tmp, ns);
    KZ__ARR(r->change, ns);
    KZ__ARR(r->want_key, ns);
    KZ__ARR(r->want_base, ns);
    KZ__ARR(r->want_older, ns);
#undef KZ__ARR
    return off + 64u;
}

int kz__replicator_init(kz__replicator *r, const kz__repl_world *w, uint32_t host,
                        kz_counter_block c, const kz_allocator *a)
{
    memset(r, 0, sizeof *r);
    r->w = w;
    r->host = host;
    r->c = c;
    r->alloc = a ? *a : kz_allocator_default();
    kz_allocator_resolve(&r->alloc);
    int rc = kz_interest_init(&r->interest, &w->interest, w->cap, &r->alloc);
    if (rc != KZ_OK)
        return rc;
    /* Two baselines per entity and tick: most clients acknowledge one of
     * the last two ticks. */
    if (kz_snap_cache_init(&r->cache, w->cap, 2, &r->alloc))
        return KZ_ENOMEM;
    r->block_size = scratch_layout(r, NULL);
    r->block = kz_calloc(&r->alloc, r->block_size, 64);
    if (!r->block)
        return KZ_ENOMEM;
    (void)scratch_layout(r, r->block);
    r->want.cap = r->base.cap = r->older.cap = r->sent.cap = w->n_slots;
    /* An entity id no handle can have (generation and index all ones). */
    r->stand_in.entity = UINT32_MAX;
    r->stand_in.kind = KZ_KIND_AVATAR;
    for (uint32_t i = 0; i < w->cap; i++)
        r->slot_of[i] = KZ__NO_SLOT;
    return KZ_OK;
}

void kz__replicator_fini(kz__replicator *r)
{
    if (r->block)
        kz_free(&r->alloc, r->block, r->block_size);
    r->block = NULL;
    kz_interest_fini(&r->interest);
    kz_snap_cache_fini(&r->cache);
}

/* ---- views -------------------------------------------------------------- */

/* Empties a view for a new session; publishes the session last, so the
 * simulation thread never pairs the new session with the old `seen`. */
static void view_reset(const kz__repl_world *w, kz__view *v, uint32_t serial)
{
    atomic_store_explicit(&v->serial, 0, memory_order_relaxed);
    memset(v->slot_ent, 0, w->n_slots * sizeof *v->slot_ent);
    memset(v->acc, 0, w->n_slots * sizeof *v->acc);
    for (uint32_t k = 0; k < (w->cap + 63u) / 64u; k++) {
        atomic_store_explicit(&v->seen[k], 0, memory_order_relaxed);
        atomic_store_explicit(&v->entered[k], 0, memory_order_relaxed);
    }
    for (uint32_t k = 0; k < w->history; k++)
        v->hist[k].tick = 0, v->hist[k].count = 0;
    v->acked = 0;
    v->acked_before = 0;
    v->n_vis = 0;
    v->priority_first = 0;
    v->observing = 0;
    v->budget = (double)w->bytes_per_second / w->tick_hz;
    atomic_store_explicit(&v->serial, serial, memory_order_release);
}

static void seen_set(kz__view *v, uint32_t idx, int on)
{
    _Atomic uint64_t *word = &v->seen[idx / 64u];
    uint64_t bit = 1ull << (idx % 64u), old = atomic_load_explicit(word, memory_order_relaxed);
    atomic_store_explicit(word, on ? old | bit : old & ~bit, memory_order_relaxed);
}

/* An observer's view tells the world about everything that comes into
 * it: all it holds when observing starts, then every newcomer. */
static void mark_entered(kz__view *v, uint32_t idx)
{
    atomic_fetch_or_explicit(&v->entered[idx / 64u], 1ull << (idx % 64u), memory_order_relaxed);
}

static void follow_observing(const kz__repl_world *w, kz__view *v, int observing)
{
    if (observing && !v->observing)
        for (uint32_t k = 0; k < w->n_slots; k++)
            if (v->slot_ent[k])
                mark_entered(v, v->slot_ent[k] - 1u);
    v->observing = (uint32_t)observing;
}

uint64_t kz__view_take_entered(const kz__repl_world *w, uint32_t slot, uint32_t serial,
                               uint32_t word)
{
    kz__view *v = &w->views[slot];
    if (atomic_load_explicit(&v->serial, memory_order_acquire) != serial)
        return 0;
    return atomic_exchange_explicit(&v->entered[word], 0, memory_order_relaxed);
}

int kz__view_sees(const kz__repl_world *w, uint32_t slot, uint32_t serial, uint32_t idx)
{
    const kz__view *v = &w->views[slot];
    if (atomic_load_explicit(&v->serial, memory_order_acquire) != serial)
        return 0;
    return (int)((atomic_load_explicit(&v->seen[idx / 64u], memory_order_relaxed) >> (idx % 64u)) & 1u);
}

/* ---- the visibility rule on a frame -------------------------------------- */

static int has_blocked(const kz__frame *f, uint32_t slot, uint64_t client_id)
{
    const kz__frame_client *fc = &f->clients[slot];
    for (uint32_t k = 0; k < fc->n_blocked; k++)
        if (f->blocked[slot][k] == client_id)
            return 1;
    return 0;
}

static int blocked_either(const kz__frame *f, uint32_t a, uint32_t b)
{
    if (!f->owner[a] || !f->owner[b])
        return 0;
    uint32_t sa = f->owner[a] - 1u, sb = f->owner[b] - 1u;
    return has_blocked(f, sa, f->clients[sb].client_id) ||
           has_blocked(f, sb, f->clients[sa].client_id);
}

int kz__frame_may_see(const kz__repl_world *w, const kz__frame *f, uint32_t a, uint32_t b)
{
    uint8_t rules = f->rule[a] | f->rule[b];
    if (rules) {
        /* An observer (a moderator's mode) is not seen, but never
         * unannounced: everyone it sees is told (sim/server.c). */
        if (f->rule[b] & KZ__RULE_OBSERVER)
            return 0;
        if (f->zone[a] != f->zone[b])
            return 0;
        if ((rules & KZ__RULE_BLOCKS) && blocked_either(f, a, b))
            return 0;
    }
    if (w->visible) {
        uint32_t ia = f->ids[a], ib = f->ids[b];
        return w->visible(w->visible_ctx, ia, ib) && w->visible(w->visible_ctx, ib, ia);
    }
    return 1;
}

typedef struct {
    const kz__repl_world *w;
    const kz__frame *f;
} rule_ctx;

static int visible_adapter(void *ctx, uint32_t viewer, uint32_t target)
{
    const rule_ctx *rc = ctx;
    return kz__frame_may_see(rc->w, rc->f, viewer, target);
}

/* ---- interest and view slots ------------------------------------------- */

/* Interest runs for a client every interest_period ticks, the clients
 * staggered so each tick carries an even share. */
static int interest_due(const kz__repl_world *w, uint32_t tick, uint32_t slot)
{
    return w->interest_period <= 1 || (tick + slot) % w->interest_period == 0;
}

static void free_slot(kz__view *v, uint32_t k)
{
    seen_set(v, v->slot_ent[k] - 1u, 0);
    v->slot_ent[k] = 0;
    v->acc[k] = 0;
}

/* Runs interest for one client and updates its view table: entities that
 * stay keep their slot, those that left free theirs, newcomers take the
 * lowest free slots. Priority accumulates per slot. */
static void select_view(kz__replicator *r, const kz__frame *f, kz__view *v, uint32_t avatar)
{
    const kz__repl_world *w = r->w;
    rule_ctx ctx = {w, f};
    uint32_t n = kz_interest_select(&r->interest, &f->grid, avatar, v->vis, v->n_vis,
                                    f->importance, visible_adapter, &ctx, r->sel, r->sel_score,
                                    NULL);
    for (uint32_t k = 0; k < w->n_slots; k++)
        if (v->slot_ent[k])
            r->slot_of[v->slot_ent[k] - 1u] = (uint16_t)k;
    /* Mark the survivors (slot_of stays set), collect the newcomers. */
    uint32_t n_new = 0;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t e = r->sel[j];
        uint16_t k = r->slot_of[e];
        if (k != KZ__NO_SLOT) {
            r->kept[k] = 1;
            v->score[k] = r->sel_score[j];
            if (v->slot_id[k] != f->ids[e]) {
                /* The dense index was reused between two interest runs:
                 * another entity, new to this view, in the same slot. */
                v->slot_id[k] = f->ids[e];
                v->acc[k] = 0;
                v->since[k] = v->taken[k] = f->tick;
                if (v->observing)
                    mark_entered(v, e);
            }
        } else {
            r->sel[n_new] = e;
            r->sel_score[n_new] = r->sel_score[j];
            n_new++;
        }
        v->vis[j] = e;
    }
    v->n_vis = n;
    for (uint32_t k = 0; k < w->n_slots; k++) {
        if (!v->slot_ent[k])
            continue;
        r->slot_of[v->slot_ent[k] - 1u] = KZ__NO_SLOT;
        if (r->kept[k])
            r->kept[k] = 0;
        else
            free_slot(v, k);  /* left the view */
    }
    uint32_t k = 0;
    for (uint32_t j = 0; j < n_new; j++) {
        while (v->slot_ent[k])
            k++;
        uint32_t e = r->sel[j];
        v->slot_ent[k] = e + 1u;
        v->slot_id[k] = f->ids[e];
        v->score[k] = r->sel_score[j];
        v->acc[k] = 0;
        v->since[k] = v->taken[k] = f->tick;
        seen_set(v, e, 1);
        if (v->observing)
            mark_entered(v, e);
    }
}

/* Between interest runs: the view keeps its entities, except those that
 * are gone (destroyed, index reused) or that the visibility rule now
 * refuses; the rule is security (blocks, zones), so it is asked every
 * tick. */
static void keep_view(kz__replicator *r, const kz__frame *f, kz__view *v, uint32_t avatar)
{
    const kz__repl_world *w = r->w;
    int changed = 0;
    for (uint32_t k = 0; k < w->n_slots; k++) {
        if (!v->slot_ent[k])
            continue;
        uint32_t e = v->slot_ent[k] - 1u;
        int gone = f->ids[e] != v->slot_id[k];
        if (gone || !kz__frame_may_see(w, f, avatar, e)) {
            free_slot(v, k);
            changed = 1;
        }
    }
    if (!changed)
        return;
    v->n_vis = 0;
    for (uint32_t k = 0; k < w->n_slots; k++)
        if (v->slot_ent[k])
            v->vis[v->n_vis++] = v->slot_ent[k] - 1u;
}

/* The wanted view, in slot order; priority grows by the last score. */
static void update_view(kz__replicator *r, const kz__frame *f, kz__view *v, uint32_t slot,
                        uint32_t avatar)
{
    if (interest_due(r->w, f->tick, slot))
        select_view(r, f, v, avatar);
    else
        keep_view(r, f, v, avatar);
    r->want.count = 0;
    r->want.tick = f->tick;
    for (uint32_t k = 0; k < r->w->n_slots; k++) {
        if (!v->slot_ent[k])
            continue;
        uint32_t e = v->slot_ent[k] - 1u;
        v->acc[k] += v->score[k];
        r->want.slot[r->want.count] = (uint16_t)k;
        r->want.ref[r->want.count] = &f->image[e];
        r->want_key[r->want.count] = e;
        r->want.count++;
    }
}

/* ---- baselines ---------------------------------------------------------- */

static uint32_t row_of(const kz__repl_world *w, uint32_t tick)
{
    return tick % w->rows;
}

/* 1 while the ring row a reference of tick (low bits) `at` points into
 * still holds that tick when read at tick `now`: newer than now - rows +
 * 2, since the world may already be writing the row after `now`'s. A
 * stored reference is never older than rows + history ticks, far below
 * the 16 bits' wrap. */
static int ref_alive(const kz__repl_world *w, uint16_t at, uint32_t now)
{
    return (uint16_t)((uint16_t)now - at) <= w->rows - 2u;
}

/* The baseline: the newest view the client acknowledged that this
 * replicator still holds. A claim naming a view not held is ignored. */
static const kz__sent_view *baseline(const kz__repl_world *w, kz__view *v, const kz__frame *f,
                                     uint32_t claim)
{
    uint32_t t = f->tick;
    if (claim > v->acked && claim <= t && t - claim < w->history &&
        v->hist[claim % w->history].tick == claim) {
        v->acked_before = v->acked;
        v->acked = claim;
    }
    if (!v->acked || t - v->acked >= w->history)
        return NULL;
    const kz__sent_view *h = &v->hist[v->acked % w->history];
    return h->tick == v->acked ? h : NULL;
}

/* 1 if entry i of a sent view cannot be read at tick `now`: its state
 * left the ring, now or before (kept lost). */
static int entry_lost(const kz__repl_world *w, const kz__sent_view *h, uint32_t i, uint32_t now)
{
    return h->ref[i] == KZ__REF_LOST || !ref_alive(w, h->at[i], now);
}

/* What stands in the baseline for its entry i, whose state is lost. If
 * the view slot has held the same entity since the baseline's tick (so
 * that is the entity the client holds there), a state naming it, marked
 * unknown: the encoder renews it in place and never leaves it. Otherwise
 * the stand-in, whose entity no handle can have: the slot is replaced or
 * left. */
static const kz_snap_state *stand_in_for(kz__replicator *r, const kz__frame *f,
                                         const kz__view *v, const kz__sent_view *h, uint32_t i)
{
    uint32_t k = h->slot[i], e = v->slot_ent[k];
    if (!e || v->taken[k] > h->tick || f->ids[e - 1u] != v->slot_id[k])
        return &r->stand_in;
    kz_snap_state *s = &r->lost[i];
    memset(s, 0, sizeof *s);
    s->entity = v->slot_id[k];
    s->kind = f->image[e - 1u].kind;
    r->unknown[i] = 1;
    r->n_unknown++;
    return s;
}

/* Points the codec's baseline at a sent view's states in the ring, and
 * each lost entry at what stands in for it (stand_in_for); returns how
 * many are lost. */
static uint32_t take_out(kz__replicator *r, const kz__frame *f, const kz__view *v,
                         const kz__sent_view *h, kz_snap_view *out)
{
    const kz__repl_world *w = r->w;
    uint32_t lost = 0;
    out->tick = h->tick;
    out->count = h->count;
    for (uint32_t i = 0; i < h->count; i++) {
        out->slot[i] = h->slot[i];
        r->unknown[i] = 0;
        if (entry_lost(w, h, i, f->tick)) {
            out->ref[i] = stand_in_for(r, f, v, h, i);
            lost++;
        } else {
            out->ref[i] = &w->ring[h->ref[i]];
        }
    }
    return lost;
}

/* The older view of second-order prediction: the acknowledged view before
 * the baseline, if this replicator still holds it, the client does too
 * (decoded within the last `history` ticks) and every state it refers to
 * is still in the ring. It must be exact — both ends predict from it — so
 * unlike a baseline it takes no stand-ins: anything less and the body
 * predicts to first order. */
static const kz_snap_view *older_view(kz__replicator *r, const kz__view *v, uint32_t now)
{
    const kz__repl_world *w = r->w;
    uint32_t t = v->acked_before;
    if (!t || now - t >= w->history)
        return NULL;
    const kz__sent_view *h = &v->hist[t % w->history];
    if (h->tick != t)
        return NULL;
    for (uint32_t i = 0; i < h->count; i++)
        if (entry_lost(w, h, i, now))
            return NULL;
    r->older.tick = h->tick;
    r->older.count = h->count;
    for (uint32_t i = 0; i < h->count; i++) {
        r->older.slot[i] = h->slot[i];
        r->older.ref[i] = &w->ring[h->ref[i]];
    }
    return &r->older;
}

/* For the record cache: each wanted entity's world image at the baseline
 * tick and at the older tick (ring rows of those ticks), so clients whose
 * views hold exactly those states share one encoded update. */
static void point_at_world(kz__replicator *r, const kz_snap_view *base,
                           const kz_snap_view *older)
{
    const kz__repl_world *w = r->w;
    const kz_snap_state *row = base ? w->ring + (size_t)row_of(w, base->tick) * w->cap : NULL;
    const kz_snap_state *orow = older ? w->ring + (size_t)row_of(w, older->tick) * w->cap : NULL;
    for (uint32_t i = 0; i < r->want.count; i++) {
        r->want_base[i] = row ? &row[r->want_key[i]] : NULL;
        r->want_older[i] = orow ? &orow[r->want_key[i]] : NULL;
    }
}

/* Whether sent entry i is a lost baseline entry the client keeps (a
 * renew left out for the budget): the encoder reports it as the base
 * entry's own pointer. `j` walks the baseline along the sent view. */
static int kept_lost(const kz__replicator *r, uint32_t i, uint32_t *j)
{
    const kz_snap_view *b = &r->base;
    while (*j < b->count && b->slot[*j] < r->sent.slot[i])
        (*j)++;
    return *j < b->count && b->slot[*j] == r->sent.slot[i] && r->unknown[*j] &&
           r->sent.ref[i] == b->ref[*j];
}

/* Stores what the client will hold by reference. The encoder reports it
 * as pointers into the ring (this tick's row for what went out or did not
 * change, an older row for an update left out for the budget), so each
 * entry's ring index is the pointer's offset and its row's tick follows
 * from the row: every row a baseline refers to is alive (take_out). A
 * lost entry the client keeps stays lost. */
static void keep_sent(kz__replicator *r, const kz__frame *f, kz__view *v)
{
    const kz__repl_world *w = r->w;
    kz__sent_view *h = &v->hist[f->tick % w->history];
    const uint32_t now_row = row_of(w, f->tick);
    const size_t row_start = (size_t)now_row * w->cap, ring_size = (size_t)w->rows * w->cap;
    for (uint32_t i = 0, j = 0; i < r->sent.count; i++) {
        if (r->n_unknown && kept_lost(r, i, &j)) {
            h->slot[i] = r->sent.slot[i];
            h->at[i] = (uint16_t)f->tick;
            h->ref[i] = KZ__REF_LOST;
            continue;
        }
        size_t ref = (size_t)(r->sent.ref[i] - w->ring);
        KZ_ASSERT(ref < ring_size);  /* never the stand-in: see take_out */
        uint32_t age = 0;  /* mostly this tick's row: no division */
        if (ref - row_start >= w->cap)
            age = (now_row + w->rows - (uint32_t)(ref / w->cap)) % w->rows;
        h->slot[i] = r->sent.slot[i];
        h->at[i] = (uint16_t)(f->tick - age);
        h->ref[i] = (uint32_t)ref;
    }
    h->count = r->sent.count;
    h->tick = f->tick;
}

/* ---- snapshots ---------------------------------------------------------- */

/* Entries that go first until acknowledged, like a new one (their slot's
 * `since` moves to now): one the client does not hold in its baseline (an
 * enter, or a replace of a state that left the ring), and one whose
 * baseline state is about to leave the ring, so that an update, not a
 * costlier replace, brings it up to date. */
static void mark_urgent(kz__replicator *r, kz__view *v, const kz__sent_view *h,
                        const kz_snap_view *base, uint32_t now)
{
    const uint32_t old = r->w->rows - 2u - KZ__AGE_MARGIN;
    uint32_t j = 0;
    for (uint32_t i = 0; i < r->want.count; i++) {
        uint16_t slot = r->want.slot[i];
        while (j < base->count && base->slot[j] < slot)
            j++;
        int held = j < base->count && base->slot[j] == slot && !r->unknown[j] &&
                   base->ref[j]->entity == r->want.ref[i]->entity;
        int aging = held && (uint16_t)((uint16_t)now - h->at[j]) >= old;
        if ((!held || aging) && v->since[slot] <= v->acked)
            v->since[slot] = now;
    }
}

/* Priority of a view slot: what it accumulated, and far above everything an
 * entity whose entering the client has not yet acknowledged, so an enter
 * that went out once is repeated until acknowledged instead of flickering
 * out when the budget is short. */
static float slot_priority(const kz__view *v, uint32_t slot)
{
    return v->since[slot] > v->acked ? v->acc[slot] + 1e30f : v->acc[slot];
}

/* Indices into `want`, highest priority first, ties in slot order: a
 * bottom-up merge sort, O(n log n) over <= max_visible entries. */
static void priority_order(kz__replicator *r, const kz__view *v)
{
    uint32_t n = r->want.count;
    for (uint32_t i = 0; i < n; i++) {
        r->order[i] = (uint16_t)i;
        r->prio[i] = slot_priority(v, r->want.slot[i]);
    }
    uint16_t *src = r->order, *dst = r->order_tmp;
    for (uint32_t width = 1; width < n; width *= 2) {
        for (uint32_t lo = 0; lo < n; lo += 2 * width) {
            uint32_t mid = lo + width < n ? lo + width : n;
            uint32_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            uint32_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi)
                dst[o++] = r->prio[src[b]] > r->prio[src[a]] ? src[b++] : src[a++];
            while (a < mid)
                dst[o++] = src[a++];
            while (b < hi)
                dst[o++] = src[b++];
        }
        uint16_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != r->order)
        memcpy(r->order, src, n * sizeof *r->order);
}

/* The priority order of a client whose changes do not all fit: entries it
 * must have first are marked urgent (when there is a baseline), then all
 * are sorted. Only over-budget clients pay for either. */
static void urgent_first(kz__replicator *r, kz__view *v, const kz__sent_view *h,
                         const kz_snap_view *base, uint32_t now)
{
    if (base != NULL)
        mark_urgent(r, v, h, base, now);
    priority_order(r, v);
}

static const kz_snap_badge *badge_of(void *ctx, uint32_t entity)
{
    /* The codec asks only for entities of the wanted view, which come
     * from this frame: their index is below the frame's capacity. */
    const kz__frame *f = ctx;
    uint32_t i = entity & KZ_ENTITY_MAX;
    return f->ids[i] == entity ? &f->badge[i] : NULL;
}

/* This tick's byte room for the client: its budget refills by the
 * per-tick share, capped at four ticks' worth; a packet always has room
 * for a small update. */
static double take_room(const kz__repl_world *w, kz__view *v)
{
    double per_tick = (double)w->bytes_per_second / w->tick_hz;
    v->budget += per_tick;
    if (v->budget > 4.0 * per_tick)
        v->budget = 4.0 * per_tick;
    double room = v->budget < 160.0 ? 160.0 : v->budget;
    return room > KZ_SNAPSHOT_MAX_BYTES ? KZ_SNAPSHOT_MAX_BYTES : room;
}

static void count_sent(kz__replicator *r, const kz_snap_encode_stats *st, size_t bytes,
                       int full)
{
    kz_counter_inc(r->c, KZ_WORLD_C_SNAPSHOTS);
    kz_counter_add(r->c, KZ_WORLD_C_SNAPSHOT_BYTES, bytes);
    kz_counter_add(r->c, KZ_WORLD_C_ENTERS, st->enters);
    kz_counter_add(r->c, KZ_WORLD_C_LEAVES, st->leaves);
    kz_counter_add(r->c, KZ_WORLD_C_DEFERRED, st->deferred);
    kz_counter_add(r->c, KZ_WORLD_C_UPDATES, st->updates);
    kz_counter_add(r->c, KZ_WORLD_C_VIEW_ENTITIES, r->want.count);
    if (full)
        kz_counter_inc(r->c, KZ_WORLD_C_SNAPSHOT_FULL);
}

static void replicate_client(kz__replicator *r, const kz__frame *f, uint32_t slot)
{
    const kz__repl_world *w = r->w;
    const kz__frame_client *fc = &f->clients[slot];
    kz__view *v = &w->views[slot];
    if (atomic_load_explicit(&v->serial, memory_order_relaxed) != fc->serial)
        view_reset(w, v, fc->serial);
    follow_observing(w, v, (f->rule[fc->avatar] & KZ__RULE_OBSERVER) != 0);
    update_view(r, f, v, slot, fc->avatar);

    uint8_t buf[KZ_SNAPSHOT_MAX_BYTES];
    kz_bitwriter bw;
    kz_bitwriter_init(&bw, buf, (size_t)take_room(w, v));
    kz_wire_snap_head head = {.input_tick = fc->input_tick, .corrected = fc->corrected};
    head.self = f->image[fc->avatar];
    if (kz_wire_snap_head_write(&w->codec, &head, &bw) != KZ_OK)
        return;
    const kz_bitwriter after_head = bw;

    const kz__sent_view *base_ref = baseline(w, v, f, fc->acked);
    const kz_snap_view *base = NULL, *older = NULL;
    r->n_unknown = 0;
    if (base_ref) {
        uint32_t lost = take_out(r, f, v, base_ref, &r->base);
        if (lost)
            kz_counter_add(r->c, KZ_WORLD_C_BASE_EXPIRED, lost);
        base = &r->base;
        older = older_view(r, v, f->tick);
    }
    point_at_world(r, base, older);
    kz_snap_encode_args a = {
        .base = base,
        .base_unknown = r->n_unknown ? r->unknown : NULL,
        .older = older,
        .want = &r->want,
        .priority = NULL,
        .budget_bits = kz_bitwriter_bits_left(&bw),
        .badge = badge_of,
        .badge_ctx = (void *)f,
        .cache = &r->cache,
        .key = r->want_key,
        .base_world = r->want_base,
        .older_world = r->want_older,
    };
    /* A client that was over its budget last tick likely is again: order
     * by priority first rather than encode twice. */
    if (v->priority_first) {
        urgent_first(r, v, base_ref, base, f->tick);
        a.priority = r->order;
    }
    kz_snap_encode_stats st;
    int rc = kz_snap_encode(&w->codec, &a, &bw, &r->sent, r->change, &st);
    if (rc == KZ_OK && st.deferred && !a.priority) {
        urgent_first(r, v, base_ref, base, f->tick);
        bw = after_head;
        a.priority = r->order;
        rc = kz_snap_encode(&w->codec, &a, &bw, &r->sent, r->change, &st);
    }
    kz__sent_view *h = &v->hist[f->tick % w->history];
    if (rc != KZ_OK) {
        h->tick = 0;  /* never a baseline */
        kz_counter_inc(r->c, KZ_WORLD_C_DROP_SEND);
        return;
    }
    v->priority_first = st.deferred > 0;
    keep_sent(r, f, v);
    size_t bytes = kz_bitwriter_finish(&bw);
    for (uint32_t i = 0; i < r->sent.count; i++)
        if (r->change[i] != KZ_SNAP_SAME)
            v->acc[r->sent.slot[i]] = 0;
    v->budget -= (double)bytes;
    count_sent(r, &st, bytes, base == NULL);
    if (w->send(w->send_ctx, r->host, slot, fc->serial, buf, (uint32_t)bytes) != KZ_OK)
        kz_counter_inc(r->c, KZ_WORLD_C_DROP_SEND);
}

void kz__replicator_run(kz__replicator *r, const kz__frame *f)
{
    if (r->w->flush)
        r->w->flush(r->w->send_ctx, r->host);
    kz_snap_cache_begin(&r->cache, f->tick);
    for (uint32_t slot = 0; slot < r->w->max_clients; slot++) {
        const kz__frame_client *fc = &f->clients[slot];
        if (fc->replicate && fc->host == r->host)
            replicate_client(r, f, slot);
    }
}
