/*
 * One server tick on the simulation thread: apply inputs, move held
 * objects, then write and publish the world image of the tick
 * (sim/frame.h). The per-client work (interest, views, encoding, sending)
 * is the replicators' (sim/replicator.c): on the I/O threads in threaded
 * mode, right here in host order otherwise. Reads and writes only tables
 * allocated at creation.
 */
#include "sim/server_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "net/netserver_work.h"
#include "sim/fleet_impl.h"

/* ---- inputs ------------------------------------------------------------- */

static void grid_follow(kz_server *s, uint32_t i)
{
    if (kz__world_grid_follow(&s->world, i) != KZ_OK)
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);  /* clamped to bounds: unreachable */
}

/* Standing at a portal's entrance grants one use of it for 5 s (granted
 * again on each arrival, not every tick). */
static void grant_portals(kz_server *s, kz__client *cl)
{
    uint32_t near = 0;
    for (uint32_t p = 0; p < KZ_PORTAL_MAX; p++) {
        if (!s->world.portals[p].on)
            continue;
        double d2 = 0;
        for (int i = 0; i < 3; i++) {
            double d = (double)(s->world.pos[cl->avatar][i] - s->world.portals[p].entrance[i]) / KZ_SNAP_POS_UNITS;
            d2 += d * d;
        }
        if (d2 <= (double)s->world.portals[p].radius * s->world.portals[p].radius) {
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
    if (!s->world.n_zones && !cl->in_zones)
        return;
    uint64_t now_in = kz__zones_at(s, s->world.pos[cl->avatar]), change = now_in ^ cl->in_zones;
    for (uint32_t z = 0; change && z < s->world.n_zones; z++)
        if (change & (1ull << z))
            kz__notice(s, slot, (now_in >> z) & 1u ? KZ_NOTICE_ZONE_ENTER : KZ_NOTICE_ZONE_LEAVE,
                       s->world.zones[z].name);
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

/* Drops the queued commands a repeat already stood in for
 * (repeat_command); returns how many. */
static uint32_t drop_covered(kz_server *s, kz__client *cl)
{
    uint32_t n = 0;
    while (cl->q_count && cl->queue[cl->q_head].tick <= cl->applied_cmd) {
        cl->q_head = (cl->q_head + 1u) % KZ__INPUT_QUEUE;
        cl->q_count--;
        n++;
    }
    kz_counter_add(s->c, KZ_WORLD_C_COMMANDS_COVERED, n);
    return n;
}

/* Takes the oldest queued command of `cl` into *cmd as the newest applied
 * one. 1, or 0 when the queue is empty. */
static int take_command(kz_server *s, kz__client *cl, kz_wire_command *cmd)
{
    if (!cl->q_count)
        return 0;
    *cmd = cl->queue[cl->q_head];
    cl->q_head = (cl->q_head + 1u) % KZ__INPUT_QUEUE;
    cl->q_count--;
    cl->applied_cmd = cmd->tick;
    cl->corrected = cmd->pad[0];  /* checked on arrival (server.c) */
    cl->last = *cmd;
    kz_counter_inc(s->c, KZ_WORLD_C_COMMANDS);
    return 1;
}

/* Moves the avatar of the client in `slot` by one command, under the
 * zone rules and personal space. */
static void apply_command(kz_server *s, uint32_t slot, kz__client *cl, const kz_wire_command *cmd)
{
    kz_snap_state st;
    kz__world_load_state(&s->world, cl->avatar, &st);
    int32_t before[3] = {st.pos[0], st.pos[1], st.pos[2]};
    kz_wire_integrate(&s->world.codec, &st, cmd);
    if (!zone_rule(s, slot, cl, &st, before))
        return;
    if (kz__enters_bubble(s, cl->avatar, before, st.pos)) {
        memcpy(st.pos, before, sizeof st.pos);
        cl->corrected = 1;
        kz_counter_inc(s->c, KZ_WORLD_C_BUBBLE_REFUSED);
    }
    kz__world_store_state(&s->world, cl->avatar, &st);
    grid_follow(s, cl->avatar);
    grant_portals(s, cl);
    zone_notices(s, slot, cl);
}

/* 1 when the queue has stayed deeper than the slack long enough that this
 * tick also takes the next command (sessions.h). The client predicted
 * both, so its avatar ends where it expects. Moves stay at one per tick
 * over time: a command taken this way while repeats owe moves (see
 * repeat_command) is dropped, not applied, so a client that goes quiet
 * and then sends what it skipped gains no distance. */
static int catch_up(kz__client *cl)
{
    if (cl->q_count <= KZ__INPUT_SLACK) {
        cl->q_deep = 0;
        return 0;
    }
    return ++cl->q_deep >= KZ__INPUT_DEEP_TICKS;
}

/* No command is here for this tick: the client's last one is done again
 * and stands in for its next command (sessions.h, KZ__INPUT_COVER), so a
 * command that was only late does not move the avatar a second time and
 * the client's prediction, which made that move once, still agrees. Not
 * when a late command it stood in for has just arrived (`caught`): the
 * client is here, one behind, and standing in again would keep it behind
 * for good (its clock does not speed up to catch up). */
static void repeat_command(kz_server *s, uint32_t slot, kz__client *cl, int caught)
{
    cl->q_deep = 0;
    if (!caught && cl->applied_cmd != UINT32_MAX &&
        (int64_t)cl->applied_cmd - (int64_t)cl->newest_cmd < (int64_t)KZ__INPUT_COVER) {
        cl->applied_cmd++;
        cl->corrected = 0;  /* a new command tick, unchanged (else the flag stays) */
    } else if (cl->repeat_debt < KZ__INPUT_QUEUE) {
        cl->repeat_debt++;  /* a move no command tick pays for */
    }
    kz_counter_inc(s->c, KZ_WORLD_C_COMMANDS_REPEATED);
    apply_command(s, slot, cl, &cl->last);
}

static void apply_inputs(kz_server *s)
{
    for (uint32_t slot = 0; slot < s->sessions.max_clients; slot++) {
        kz__client *cl = &s->sessions.clients[slot];
        if (!cl->live || cl->kicked || cl->detached)
            continue;  /* a kicked or detached avatar stands still */
        kz_wire_command cmd;
        uint32_t caught = drop_covered(s, cl);
        if (take_command(s, cl, &cmd)) {
            apply_command(s, slot, cl, &cmd);
            uint8_t corrected = cl->corrected;  /* the first's changes are told too */
            if (catch_up(cl) && !cl->kicked && take_command(s, cl, &cmd)) {
                cl->corrected |= corrected;
                if (cl->repeat_debt) {
                    cl->repeat_debt--;  /* an earlier repeat made this move */
                    kz_counter_inc(s->c, KZ_WORLD_C_COMMANDS_COVERED);
                } else {
                    kz_counter_inc(s->c, KZ_WORLD_C_COMMANDS_CAUGHT_UP);
                    apply_command(s, slot, cl, &cmd);
                }
            }
        } else if (cl->applied_cmd) {
            repeat_command(s, slot, cl, caught != 0);
        }
    }
}

/* Held objects follow the holder's right hand. */
static void move_held(kz_server *s)
{
    for (uint32_t i = 0; i < s->world.cap; i++) {
        if (!s->world.holder[i] || !s->world.ents.alive[i])
            continue;
        uint32_t h = s->world.holder[i] - 1u;
        for (int k = 0; k < 3; k++) {
            int64_t p = (int64_t)s->world.pos[h][k] +
                        (int64_t)s->world.rel[h][KZ_POSE_RIGHT_HAND][k] * KZ_SNAP_POS_UNITS / KZ_SNAP_REL_UNITS;
            if (p > s->world.codec.pos_max)
                p = s->world.codec.pos_max;
            if (p < -(int64_t)s->world.codec.pos_max)
                p = -(int64_t)s->world.codec.pos_max;
            s->world.pos[i][k] = (int32_t)p;
        }
        s->world.rot[i][0] = s->world.rot[h][KZ_POSE_RIGHT_HAND];
        grid_follow(s, i);
    }
}

/* ---- the world image --------------------------------------------------- */


/* The visibility-rule bits of every entity (frame.h). */
static void frame_rules(kz_server *s, kz__frame *f)
{
    memcpy(f->zone, s->world.private_zone, s->world.cap * sizeof *f->zone);
    memcpy(f->owner, s->world.owner, s->world.cap * sizeof *f->owner);
    memcpy(f->importance, s->world.importance, s->world.cap * sizeof *f->importance);
    for (uint32_t i = 0; i < s->world.cap; i++) {
        f->ids[i] = f->image[i].entity;
        uint8_t rule = s->world.private_zone[i] ? KZ__RULE_ZONED : 0;
        if (s->world.owner[i]) {
            const kz__client *cl = &s->sessions.clients[s->world.owner[i] - 1u];
            rule |= cl->observer ? KZ__RULE_OBSERVER : 0;
            rule |= cl->n_blocked ? KZ__RULE_BLOCKS : 0;
        }
        f->rule[i] = rule;
        if (f->badge_gen[i] != s->world.badge_gen[i]) {
            f->badge[i] = s->world.badge[i];
            f->badge_gen[i] = s->world.badge_gen[i];
        }
    }
}

/* What every live slot's replicator needs. Identity and blocks are
 * filled for every live slot, kicked ones included: their avatars stay in
 * others' views until they are gone, and blocks must hold meanwhile. */
static void frame_client(kz_server *s, kz__frame *f, uint32_t slot)
{
    const kz__client *cl = &s->sessions.clients[slot];
    kz__frame_client *fc = &f->clients[slot];
    if (fc->serial != cl->serial || fc->blocked_gen != cl->blocked_gen) {
        memcpy(f->blocked[slot], cl->blocked, cl->n_blocked * sizeof cl->blocked[0]);
        fc->blocked_gen = cl->blocked_gen;
    }
    fc->n_blocked = cl->n_blocked;
    fc->client_id = cl->client_id;
    fc->serial = cl->serial;
    fc->avatar = cl->avatar;
    fc->input_tick = cl->applied_cmd;
    fc->acked = cl->acked;
    fc->corrected = cl->corrected;
    fc->host = (uint8_t)cl->host;
    fc->replicate = !cl->kicked;
    if (s->role == KZ__ROLE_EDGE) {
        /* An edge's session: its avatar, newest command and correction are
         * the authority's, from the replica; no avatar yet, no snapshot. */
        const kz__fleet *fl = s->fleet;
        int has = cl->avatar != KZ__NO_AVATAR && fl->rstate[cl->avatar].entity != 0;
        fc->avatar = has ? cl->avatar : 0;
        fc->input_tick = has ? fl->rinput[cl->avatar] : 0;
        fc->corrected = has ? fl->rcorr[cl->avatar] : 0;
        fc->replicate = fc->replicate && has;
    }
}

static void frame_clients(kz_server *s, kz__frame *f)
{
    kz__replication *rp = &s->rp;
    for (uint32_t slot = 0; slot < s->sessions.max_clients; slot++) {
        const kz__client *cl = &s->sessions.clients[slot];
        kz__frame_client *fc = &f->clients[slot];
        if (!cl->live) {
            fc->replicate = 0;
            continue;
        }
        frame_client(s, f, slot);
        if (!fc->replicate)
            continue;
        if (!kz__frame_host_settled(rp->last_host[slot], rp->last_tick[slot], cl->host, s->tick)) {
            fc->replicate = 0;  /* one frame's pause while the old host finishes */
            kz_counter_inc(s->c, KZ_WORLD_C_HOST_MOVES);
            continue;
        }
        rp->last_host[slot] = cl->host;
        rp->last_tick[slot] = s->tick;
    }
}

/* Threaded mode: the frame and ring row of `tick` may be written only once
 * every replicator has finished tick - 2 (frame.h). A replicator is
 * normally long done; waiting is counted. */
static void wait_for_replicators(kz_server *s, uint32_t tick)
{
    if (!s->rp.threaded || kz__stage_frame_writable(&s->rp.stage, tick))
        return;
    kz_counter_inc(s->c, KZ_WORLD_C_REPL_WAITS);
    const struct timespec pause = {0, 20000};
    while (!kz__stage_frame_writable(&s->rp.stage, tick))
        nanosleep(&pause, NULL);
}

static void publish_frame(kz_server *s)
{
    wait_for_replicators(s, s->tick);
    kz__frame *f = &s->rp.frames[s->tick % KZ__FRAMES];
    f->tick = s->tick;
    if (s->role == KZ__ROLE_EDGE) {
        kz__fleet_fill_frame(s, f);  /* the replica of the authority's image */
    } else {
        kz__world_take_images(&s->world, s->tick);
        f->image = s->world.image;
        (void)kz__grid_copy(&f->grid, &s->world.grid);  /* both made from one configuration */
        frame_rules(s, f);
    }
    frame_clients(s, f);
    kz__stage_publish(&s->rp.stage, s->tick);
    if (s->net)
        kz__netserver_wake(s->net);
}

static uint64_t monotonic_ns(void)
{
    /* Measurement only: the simulation never reads the clock. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Single-threaded mode: every replicator, in host order, on this thread. */
static void replicate_here(kz_server *s)
{
    const kz__frame *f = &s->rp.frames[s->tick % KZ__FRAMES];
    for (uint32_t h = 0; h < s->rp.n; h++) {
        kz__replicator_run(&s->rp.r[h], f);
        kz__stage_done(&s->rp.stage, h, s->tick, 0);
    }
}

void kz__server_time_ticks(kz_server *s)
{
    kz__replication *rp = &s->rp;
    uint32_t upto = kz__stage_all_done(&rp->stage);
    if (upto <= rp->timed)
        return;
    uint32_t n = upto - rp->timed > KZ__TIMED ? KZ__TIMED : upto - rp->timed;
    /* Counted, not `t <= upto`: a tick of UINT32_MAX (an edge follows the
     * authority's numbers) must not loop forever. */
    for (uint32_t k = 0, t = upto - (n - 1u); k < n; k++, t++) {
        uint64_t end = kz__stage_finished(&rp->stage, t), start = rp->tick_start[t % KZ__TIMED];
        (void)kz_hist_record(&s->tick_ns, end > start ? end - start : 0);
    }
    rp->timed = upto;
}

void kz__server_replicate_on(void *ctx, uint32_t host)
{
    kz_server *s = ctx;
    uint32_t skipped, t;
    if (host >= s->rp.n || (t = kz__stage_take(&s->rp.stage, host, &skipped)) == 0)
        return;
    if (skipped)
        kz_counter_add(s->rp.r[host].c, KZ_WORLD_C_REPL_SKIPPED, skipped);
    kz__replicator_run(&s->rp.r[host], &s->rp.frames[t % KZ__FRAMES]);
    kz__stage_done(&s->rp.stage, host, t, monotonic_ns());
}

/* ---- the tick ----------------------------------------------------------- */

void kz__server_tick(kz_server *s)
{
    uint64_t t0 = monotonic_ns();
    s->tick++;
    kz__zones_enforce(s);
    apply_inputs(s);
    move_held(s);
    kz__update_private_zones(s);
    kz__announce_observers(s);
    s->rp.tick_start[s->tick % KZ__TIMED] = t0;
    publish_frame(s);
    kz_counter_inc(s->c, KZ_WORLD_C_TICKS);
    if (s->role == KZ__ROLE_AUTHORITY) {
        kz__fleet_after_tick(s);  /* the world update and what each edge must do */
        (void)kz_hist_record(&s->tick_ns, monotonic_ns() - t0);
        return;
    }
    if (s->rp.threaded) {
        kz__server_time_ticks(s);  /* recorded once its replicators finish */
        return;
    }
    replicate_here(s);
    (void)kz_hist_record(&s->tick_ns, monotonic_ns() - t0);
}

void kz__server_edge_tick(kz_server *s, uint32_t tick)
{
    uint64_t t0 = monotonic_ns();
    s->tick = tick;
    kz__fleet_edge_observers(s);
    s->rp.tick_start[s->tick % KZ__TIMED] = t0;
    publish_frame(s);
    kz_counter_inc(s->c, KZ_WORLD_C_TICKS);
    if (s->rp.threaded) {
        kz__server_time_ticks(s);
        return;
    }
    replicate_here(s);
    (void)kz_hist_record(&s->tick_ns, monotonic_ns() - t0);
}
