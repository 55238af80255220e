/*
 * One server tick: apply inputs, move held objects, take the quantized
 * image of the world, then for every client run interest and send a
 * snapshot delta. This is the hot path of the simulation thread: it reads
 * and writes only tables allocated at creation.
 */
#include "sim/server_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- inputs ------------------------------------------------------------- */

void kz__server_load_state(const kz_server *s, uint32_t i, kz_snap_state *st)
{
    memset(st, 0, sizeof *st);
    st->entity = kz_entity_at(&s->ents, i).id;
    st->kind = s->kind[i];
    st->flags = s->flags[i];
    st->anim = s->anim[i];
    memcpy(st->pos, s->pos[i], sizeof st->pos);
    memcpy(st->vel, s->vel[i], sizeof st->vel);
    st->yaw = s->yaw[i];
    memcpy(st->rel, s->rel[i], sizeof st->rel);
    memcpy(st->rot, s->rot[i], sizeof st->rot);
    st->holder = s->holder[i] ? kz_entity_at(&s->ents, s->holder[i] - 1u).id : 0;
}

static void store_state(kz_server *s, uint32_t i, const kz_snap_state *st)
{
    s->flags[i] = st->flags;
    s->anim[i] = st->anim;
    memcpy(s->pos[i], st->pos, sizeof st->pos);
    memcpy(s->vel[i], st->vel, sizeof st->vel);
    s->yaw[i] = st->yaw;
    memcpy(s->rel[i], st->rel, sizeof st->rel);
    memcpy(s->rot[i], st->rot, sizeof st->rot);
}

static void grid_follow(kz_server *s, uint32_t i)
{
    if (kz_grid_move(&s->grid, i, (float)s->pos[i][0] / KZ_SNAP_POS_UNITS,
                     (float)s->pos[i][2] / KZ_SNAP_POS_UNITS) != KZ_OK)
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);  /* clamped to bounds: unreachable */
}

/* Standing at a portal's entrance grants one use of it for 5 s (granted
 * again on each arrival, not every tick). */
static void grant_portals(kz_server *s, kz__client *cl)
{
    uint32_t near = 0;
    for (uint32_t p = 0; p < KZ_PORTAL_MAX; p++) {
        if (!s->portals[p].on)
            continue;
        double d2 = 0;
        for (int i = 0; i < 3; i++) {
            double d = (double)(s->pos[cl->avatar][i] - s->portals[p].entrance[i]) / KZ_SNAP_POS_UNITS;
            d2 += d * d;
        }
        if (d2 <= (double)s->portals[p].radius * s->portals[p].radius) {
            near |= 1u << p;
            if (!(cl->near_portals & (1u << p)))
                kz_validate_portal_grant(&cl->val, p + 1u, s->now + 5 * KZ_NS_PER_S);
        }
    }
    cl->near_portals = near;
}

/* Tells a client when its avatar enters or leaves a zone (by name). */
static void zone_notices(kz_server *s, uint32_t slot, kz__client *cl)
{
    if (!s->n_zones && !cl->in_zones)
        return;
    uint64_t now_in = kz__zones_at(s, s->pos[cl->avatar]), change = now_in ^ cl->in_zones;
    for (uint32_t z = 0; change && z < s->n_zones; z++)
        if (change & (1ull << z))
            kz__notice(s, slot, (now_in >> z) & 1u ? KZ_NOTICE_ZONE_ENTER : KZ_NOTICE_ZONE_LEAVE,
                       s->zones[z].name);
    cl->in_zones = now_in;
}

/* The zone rule of a move from `before` to `st->pos`: a move that ends
 * where a zone refuses the client is undone (held at the boundary, one
 * sampled record per attempt), wherever it started; only a move that
 * leaves such a zone is accepted. An avatar found standing inside one
 * (which no placement should allow) is evicted. 1 when the move goes on. */
static int zone_rule(kz_server *s, uint32_t slot, kz__client *cl, kz_snap_state *st,
                     const int32_t before[3])
{
    if (kz__may_enter(s, cl, st->pos)) {
        cl->at_boundary = 0;
        return 1;
    }
    if (!kz__may_enter(s, cl, before)) {
        (void)kz__zone_evict(s, slot, cl);
        return 0;
    }
    memcpy(st->pos, before, sizeof st->pos);
    cl->corrected = 1;
    kz_counter_inc(s->c, KZ_WORLD_C_ZONE_REFUSED);
    uint32_t more = 0;
    if (!cl->at_boundary && kz__report_take(s, cl, KZ__REPORT_ZONE, &more)) {
        char what[40];  /* one record per attempt, not per tick of pushing */
        snprintf(what, sizeof what, "held at boundary (and %u more)", more);
        kz__audit(s, KZ_AUDIT_ZONE_REFUSAL, cl, 0, what);
    }
    cl->at_boundary = 1;
    return 1;
}

static void apply_inputs(kz_server *s)
{
    for (uint32_t slot = 0; slot < s->max_clients; slot++) {
        kz__client *cl = &s->clients[slot];
        if (!cl->live || cl->kicked)
            continue;  /* a kicked avatar stands still until it is gone */
        kz_wire_command cmd;
        if (cl->q_count) {
            cmd = cl->queue[cl->q_head];
            cl->q_head = (cl->q_head + 1u) % KZ__INPUT_QUEUE;
            cl->q_count--;
            cl->applied_cmd = cmd.tick;
            cl->corrected = cmd.pad[0];  /* checked on arrival (server.c) */
            cl->last = cmd;
            kz_counter_inc(s->c, KZ_WORLD_C_COMMANDS);
        } else if (cl->applied_cmd) {
            /* Late input: keep doing what the client last asked for. */
            cmd = cl->last;
            kz_counter_inc(s->c, KZ_WORLD_C_COMMANDS_REPEATED);
        } else {
            continue;
        }
        kz_snap_state st;
        kz__server_load_state(s, cl->avatar, &st);
        int32_t before[3] = {st.pos[0], st.pos[1], st.pos[2]};
        kz_wire_integrate(&s->codec, &st, &cmd);
        if (!zone_rule(s, slot, cl, &st, before))
            continue;
        if (kz__enters_bubble(s, cl->avatar, before, st.pos)) {
            memcpy(st.pos, before, sizeof st.pos);
            cl->corrected = 1;
            kz_counter_inc(s->c, KZ_WORLD_C_BUBBLE_REFUSED);
        }
        store_state(s, cl->avatar, &st);
        grid_follow(s, cl->avatar);
        grant_portals(s, cl);
        zone_notices(s, slot, cl);
    }
}

/* Held objects follow the holder's right hand. */
static void move_held(kz_server *s)
{
    for (uint32_t i = 0; i < s->cap; i++) {
        if (!s->holder[i] || !s->ents.alive[i])
            continue;
        uint32_t h = s->holder[i] - 1u;
        for (int k = 0; k < 3; k++) {
            int64_t p = (int64_t)s->pos[h][k] +
                        (int64_t)s->rel[h][KZ_POSE_RIGHT_HAND][k] * KZ_SNAP_POS_UNITS / KZ_SNAP_REL_UNITS;
            if (p > s->codec.pos_max)
                p = s->codec.pos_max;
            if (p < -(int64_t)s->codec.pos_max)
                p = -(int64_t)s->codec.pos_max;
            s->pos[i][k] = (int32_t)p;
        }
        s->rot[i][0] = s->rot[h][KZ_POSE_RIGHT_HAND];
        grid_follow(s, i);
    }
}

/* Writes this tick's row of the image ring. Older rows stay: they are the
 * world as each client's baseline tick saw it. */
static void take_images(kz_server *s)
{
    s->image = s->image_ring + (size_t)(s->tick % s->history) * s->cap;
    for (uint32_t i = 0; i < s->cap; i++) {
        if (!s->ents.alive[i])
            continue;
        if (s->speaking_until[i] > s->tick)
            s->flags[i] |= KZ_AVATAR_SPEAKING;
        else
            s->flags[i] &= (uint8_t)~KZ_AVATAR_SPEAKING;
        kz__server_load_state(s, i, &s->image[i]);
    }
}

/* ---- interest and view slots ------------------------------------------- */

static int visible_adapter(void *ctx, uint32_t viewer, uint32_t target)
{
    return kz__may_see(ctx, viewer, target);
}

static void seen_set(kz__client *cl, uint32_t idx, int on)
{
    uint64_t bit = 1ull << (idx % 64u);
    if (on)
        cl->seen[idx / 64u] |= bit;
    else
        cl->seen[idx / 64u] &= ~bit;
}

/* Interest runs for a client every interest_period ticks, the clients
 * staggered so each tick carries an even share. */
static int interest_due(const kz_server *s, uint32_t slot)
{
    return s->cfg.interest_period <= 1 || (s->tick + slot) % s->cfg.interest_period == 0;
}

static void free_slot(kz__client *cl, uint32_t k)
{
    seen_set(cl, cl->slot_ent[k] - 1u, 0);
    cl->slot_ent[k] = 0;
    cl->acc[k] = 0;
}

/* Runs interest for one client and updates its view table: entities that
 * stay keep their slot, those that left free theirs, newcomers take the
 * lowest free slots. Priority accumulates per slot. */
static void select_view(kz_server *s, kz__client *cl)
{
    uint32_t n = kz_interest_select(&s->interest, &s->grid, cl->avatar, cl->vis, cl->n_vis,
                                    s->importance, visible_adapter, s,
                                    s->sel, s->sel_score, NULL);
    for (uint32_t k = 0; k < s->n_slots; k++)
        if (cl->slot_ent[k])
            s->slot_of[cl->slot_ent[k] - 1u] = (uint16_t)k;
    /* Mark the survivors (slot_of stays set), collect the newcomers. */
    uint32_t n_new = 0;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t e = s->sel[j];
        uint16_t k = s->slot_of[e];
        if (k != KZ__NO_SLOT) {
            s->kept[k] = 1;
            cl->score[k] = s->sel_score[j];
        } else {
            s->sel[n_new] = e;
            s->sel_score[n_new] = s->sel_score[j];
            n_new++;
        }
        cl->vis[j] = e;
    }
    cl->n_vis = n;
    for (uint32_t k = 0; k < s->n_slots; k++) {
        if (!cl->slot_ent[k])
            continue;
        s->slot_of[cl->slot_ent[k] - 1u] = KZ__NO_SLOT;
        if (s->kept[k])
            s->kept[k] = 0;
        else
            free_slot(cl, k);  /* left the view */
    }
    uint32_t k = 0;
    for (uint32_t j = 0; j < n_new; j++) {
        while (cl->slot_ent[k])
            k++;
        uint32_t e = s->sel[j];
        cl->slot_ent[k] = e + 1u;
        cl->slot_id[k] = kz_entity_at(&s->ents, e).id;
        cl->score[k] = s->sel_score[j];
        cl->acc[k] = 0;
        cl->since[k] = s->tick;
        seen_set(cl, e, 1);
        if (cl->observer)
            kz__announce_observer(s, cl, e);
    }
}

/* Between interest runs: the view keeps its entities, except those that
 * are gone (destroyed, index reused) or that the visibility hook now
 * refuses; the hook is security (blocks, zones), so it is asked every
 * tick. */
static void keep_view(kz_server *s, kz__client *cl)
{
    int changed = 0;
    for (uint32_t k = 0; k < s->n_slots; k++) {
        if (!cl->slot_ent[k])
            continue;
        uint32_t e = cl->slot_ent[k] - 1u;
        int gone = kz_entity_at(&s->ents, e).id != cl->slot_id[k];
        if (gone || !kz__may_see(s, cl->avatar, e)) {
            free_slot(cl, k);
            changed = 1;
        }
    }
    if (!changed)
        return;
    cl->n_vis = 0;
    for (uint32_t k = 0; k < s->n_slots; k++)
        if (cl->slot_ent[k])
            cl->vis[cl->n_vis++] = cl->slot_ent[k] - 1u;
}

static void update_view(kz_server *s, kz__client *cl, uint32_t slot)
{
    if (interest_due(s, slot))
        select_view(s, cl);
    else
        keep_view(s, cl);
    /* The wanted view, in slot order; priority grows by the last score. */
    s->want.count = 0;
    s->want.tick = s->tick;
    for (uint32_t k = 0; k < s->n_slots; k++) {
        if (!cl->slot_ent[k])
            continue;
        uint32_t e = cl->slot_ent[k] - 1u;
        cl->acc[k] += cl->score[k];
        s->want.slot[s->want.count] = (uint16_t)k;
        s->want.state[s->want.count] = s->image[e];
        s->want_key[s->want.count] = e;
        s->want.count++;
    }
}

/* For the record cache: each wanted entity's world image at the baseline
 * tick (the ring row of that tick), so clients whose baseline holds exactly
 * that state share one encoded update. */
static void point_at_world(kz_server *s, const kz_snap_view *base)
{
    const kz_snap_state *row =
        base ? s->image_ring + (size_t)(base->tick % s->history) * s->cap : NULL;
    for (uint32_t i = 0; i < s->want.count; i++)
        s->want_base[i] = row ? &row[s->want_key[i]] : NULL;
}

/* ---- snapshots ---------------------------------------------------------- */

/* Priority of a view slot: what it accumulated, and far above everything an
 * entity whose entering the client has not yet acknowledged, so an enter
 * that went out once is repeated until acknowledged instead of flickering
 * out when the budget is short. */
static float slot_priority(const kz__client *cl, uint32_t slot)
{
    return cl->since[slot] > cl->acked ? cl->acc[slot] + 1e30f : cl->acc[slot];
}

/* Indices into `want`, highest priority first (insertion sort: only used
 * on ticks whose changes do not all fit, over <= max_visible). */
static void priority_order(kz_server *s, const kz__client *cl)
{
    for (uint32_t i = 0; i < s->want.count; i++) {
        uint16_t v = (uint16_t)i;
        float a = slot_priority(cl, s->want.slot[i]);
        uint32_t j = i;
        while (j > 0 && slot_priority(cl, s->want.slot[s->order[j - 1]]) < a) {
            s->order[j] = s->order[j - 1];
            j--;
        }
        s->order[j] = v;
    }
}

static const kz_snap_badge *badge_of(void *ctx, uint32_t entity)
{
    kz_server *s = ctx;
    uint32_t i = kz_entity_index(&s->ents, (kz_entity){entity});
    return i == UINT32_MAX ? NULL : &s->badge[i];
}

static const kz_snap_view *baseline(const kz_server *s, const kz__client *cl)
{
    if (!cl->acked || s->tick - cl->acked >= s->history)
        return NULL;
    const kz_snap_view *v = &cl->hist[cl->acked % s->history];
    return v->tick == cl->acked ? v : NULL;
}

static void send_snapshot(kz_server *s, uint32_t slot)
{
    kz__client *cl = &s->clients[slot];
    update_view(s, cl, slot);

    double per_tick = (double)s->cfg.bytes_per_second / s->cfg.tick_hz;
    cl->budget += per_tick;
    if (cl->budget > 4.0 * per_tick)
        cl->budget = 4.0 * per_tick;
    double room = cl->budget < 160.0 ? 160.0 : cl->budget;
    if (room > KZ_SNAPSHOT_MAX_BYTES)
        room = KZ_SNAPSHOT_MAX_BYTES;

    uint8_t buf[KZ_SNAPSHOT_MAX_BYTES];
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, (size_t)room);
    kz_wire_snap_head head = {
        .input_tick = cl->applied_cmd,
        .corrected = cl->corrected,
    };
    head.self = s->image[cl->avatar];
    if (kz_wire_snap_head_write(&s->codec, &head, &w) != KZ_OK)
        return;
    const kz_bitwriter after_head = w;

    const kz_snap_view *base = baseline(s, cl);
    kz_snap_view *sent = &cl->hist[s->tick % s->history];
    point_at_world(s, base);
    kz_snap_encode_args a = {
        .base = base,
        .want = &s->want,
        .priority = NULL,
        .budget_bits = kz_bitwriter_bits_left(&w),
        .badge = badge_of,
        .badge_ctx = s,
        .cache = &s->cache,
        .key = s->want_key,
        .base_world = s->want_base,
    };
    kz_snap_encode_stats st;
    int rc = kz_snap_encode(&s->codec, &a, &w, sent, s->change, &st);
    if (rc == KZ_OK && st.deferred) {
        priority_order(s, cl);
        w = after_head;
        a.priority = s->order;
        rc = kz_snap_encode(&s->codec, &a, &w, sent, s->change, &st);
    }
    if (rc != KZ_OK) {
        sent->tick = 0;  /* never a baseline */
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_SEND);
        return;
    }
    size_t bytes = kz_bitwriter_finish(&w);
    for (uint32_t i = 0; i < sent->count; i++)
        if (s->change[i] != KZ_SNAP_SAME)
            cl->acc[sent->slot[i]] = 0;
    cl->budget -= (double)bytes;
    kz_counter_inc(s->c, KZ_WORLD_C_SNAPSHOTS);
    kz_counter_add(s->c, KZ_WORLD_C_SNAPSHOT_BYTES, bytes);
    kz_counter_add(s->c, KZ_WORLD_C_ENTERS, st.enters);
    kz_counter_add(s->c, KZ_WORLD_C_LEAVES, st.leaves);
    kz_counter_add(s->c, KZ_WORLD_C_DEFERRED, st.deferred);
    kz_counter_add(s->c, KZ_WORLD_C_UPDATES, st.updates);
    kz_counter_add(s->c, KZ_WORLD_C_VIEW_ENTITIES, s->want.count);
    if (!base)
        kz_counter_inc(s->c, KZ_WORLD_C_SNAPSHOT_FULL);
    kz__server_send(s, slot, KZ_CHANNEL_SNAPSHOT, KZ_MSG_SNAPSHOT, buf, (uint32_t)bytes);
}

/* ---- the tick ----------------------------------------------------------- */

static uint64_t monotonic_ns(void)
{
    /* Measurement only: the simulation never reads the clock. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void kz__server_tick(kz_server *s)
{
    uint64_t t0 = monotonic_ns();
    s->tick++;
    kz__zones_enforce(s);
    apply_inputs(s);
    move_held(s);
    kz__update_private_zones(s);
    take_images(s);
    kz_snap_cache_begin(&s->cache, s->tick);
    for (uint32_t slot = 0; slot < s->max_clients; slot++)
        if (s->clients[slot].live && !s->clients[slot].kicked)
            send_snapshot(s, slot);
    kz_counter_inc(s->c, KZ_WORLD_C_TICKS);
    (void)kz_hist_record(&s->tick_ns, monotonic_ns() - t0);
}
