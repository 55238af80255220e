/*
 * The edge's side of a fleet world (sim/fleet.h): the replica of the
 * authority's world image, rebuilt from its TICKs and SYNCs; the DOWN
 * records (avatars of new sessions, messages, kicks, chat and voice near
 * a sender); the BATCH of what its clients did; HELLOs and heartbeats.
 *
 * The replica ticks with the authority: when the last part of TICK T is
 * applied the edge publishes frame T to its replicators (server_tick.c),
 * so its snapshots carry the authority's tick numbers and are the
 * snapshots a single process would send.
 */
#include "sim/fleet_impl.h"

#include <math.h>
#include <string.h>

#include <kizuna/log.h>

#define NS_PER_MS 1000000ull

/* ---- the BATCH up -------------------------------------------------------- */

static void close_batch(kz__fleet *f)
{
    if (!f->open)
        return;
    uint8_t *body = f->out + f->open_at + KZ_BUS_HEADER_BYTES;
    kz_bus_put32(body, f->rtick);
    kz_bus_put32(body + 4, f->open_count);
    kz__fleet_end(f, kz__fleet_cursor(f));
}

void kz__fleet_up(kz_server *s, uint8_t kind, uint8_t sub, uint32_t slot, uint32_t serial,
                  uint32_t age_us, const void *body, uint32_t len)
{
    kz__fleet *f = s->fleet;
    size_t need = KZ_BUS_UP_REC_BYTES + len;
    if (f->open && (size_t)(kz__fleet_cursor(f) - (f->out + f->open_at)) + need >
                       KZ_BUS_HEADER_BYTES + KZ_BUS_MESSAGE_MAX)
        close_batch(f);
    if (!f->open) {
        uint8_t *b = kz__fleet_begin(f, KZ_BUS_SUBJECT_UP, f->cfg.edge, KZ_BUS_BATCH,
                                     KZ_BUS_BATCH_HEAD_BYTES + need);
        if (!b)
            return;
        f->out_used += KZ_BUS_BATCH_HEAD_BYTES;
        f->last_batch = s->now;
    }
    uint8_t *p = kz__fleet_cursor(f);
    kz_bus_rec r = {.kind = kind, .sub = sub, .len = (uint16_t)len, .slot = slot,
                    .serial = serial, .age_us = age_us, .body = body};
    if (!kz__fleet_room(f, need) || !kz_bus_rec_write(&r, 1, &p, f->out + f->out_cap)) {
        kz_counter_inc(f->c, KZ__FLEET_C_OUT_DROPPED);
        return;
    }
    f->out_used = (size_t)(p - f->out);
    f->open_count++;
}

static void send_hello(kz_server *s, uint8_t reason)
{
    kz__fleet *f = s->fleet;
    close_batch(f);
    uint8_t *b = kz__fleet_begin(f, KZ_BUS_SUBJECT_UP, f->cfg.edge, KZ_BUS_HELLO, 12);
    if (!b)
        return;
    b[0] = reason;
    b[1] = b[2] = b[3] = 0;
    kz_bus_put32(b + 4, (uint32_t)f->cfg.started_ms);
    kz_bus_put32(b + 8, (uint32_t)(f->cfg.started_ms >> 32));
    kz__fleet_end(f, b + 12);
    f->last_hello = s->now;
    f->last_batch = s->now;
    f->hello_reason = 0;
}

void kz__fleet_hello(kz_server *s, uint8_t reason)
{
    if (s->fleet && s->fleet->cfg.role == KZ__ROLE_EDGE)
        s->fleet->hello_reason = reason;
}

void kz__fleet_bye(kz_server *s)
{
    kz__fleet *f = s->fleet;
    if (!f || f->cfg.role != KZ__ROLE_EDGE || !f->auth_instance)
        return;
    close_batch(f);
    uint8_t *b = kz__fleet_begin(f, KZ_BUS_SUBJECT_UP, f->cfg.edge, KZ_BUS_BYE, 0);
    if (b)
        kz__fleet_end(f, b);
}

int kz__fleet_synced(const kz_server *s) { return s->fleet && s->fleet->synced; }
int kz__fleet_failed(const kz_server *s) { return s->fleet && s->fleet->failed; }

/* Lost the thread of the world (a gap, a new authority): no tick is built
 * until a SYNC. */
static void lose_sync(kz_server *s)
{
    kz__fleet *f = s->fleet;
    f->synced = 0;
    f->building = 0;
    if (!f->hello_reason)
        f->hello_reason = 2;
}

/* A notice to every client of this edge. */
static void tell_all(kz_server *s, uint8_t code, const char *text)
{
    for (uint32_t slot = 0; slot < s->sessions.max_clients; slot++) {
        const kz__client *cl = &s->sessions.clients[slot];
        if (cl->live && !cl->kicked)
            kz__notice(s, slot, code, text);
    }
}

void kz__fleet_edge_step(kz_server *s)
{
    kz__fleet *f = s->fleet;
    kz_time_ns tick_ns = 1000000000ull / s->cfg.tick_hz;
    /* Until it holds the world it asks (again: a HELLO sent before the
     * authority listened, or its SYNC, may have been lost). */
    if ((f->hello_reason || (!f->synced && !f->failed)) &&
        (f->last_hello == 0 ||
         s->now - f->last_hello >= (kz_time_ns)KZ_BUS_HELLO_MIN_MS * NS_PER_MS))
        send_hello(s, f->hello_reason ? f->hello_reason : 1);
    if (f->synced && f->last_update &&
        s->now - f->last_update > (kz_time_ns)KZ_BUS_AUTHORITY_SILENCE_MS * NS_PER_MS) {
        kz_counter_inc(f->c, KZ__FLEET_C_AUTHORITY_LOST);
        kz_logf(&s->cfg.net.log, KZ_LOG_WARN, "fleet", "no world update for %u ms: waiting",
                KZ_BUS_AUTHORITY_SILENCE_MS);
        f->last_update = 0;
        lose_sync(s);
        tell_all(s, KZ_NOTICE_WORLD_PAUSED, "the world is paused: its server is unreachable");
        f->paused = 1;
    }
    /* A heartbeat: at least one batch per tick, even empty. */
    if (!f->open && f->auth_instance && s->now - f->last_batch >= tick_ns) {
        uint8_t *b = kz__fleet_begin(f, KZ_BUS_SUBJECT_UP, f->cfg.edge, KZ_BUS_BATCH,
                                     KZ_BUS_BATCH_HEAD_BYTES);
        if (b) {
            f->out_used += KZ_BUS_BATCH_HEAD_BYTES;
            f->last_batch = s->now;
        }
    }
    close_batch(f);
}

/* ---- the replica --------------------------------------------------------- */

static void clear_index(kz_server *s, uint32_t i)
{
    kz__fleet *f = s->fleet;
    if (f->rgrid[i] && kz_grid_remove(&s->world.grid, i) != KZ_OK)
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);  /* not in the grid: unreachable */
    f->rgrid[i] = 0;
    memset(&f->rstate[i], 0, sizeof f->rstate[i]);
    f->rowner[i] = 0;
    f->rrule[i] = f->rzone[i] = 0;
    f->rn_blocked[i] = 0;
    f->rinput[i] = 0;
    f->rcorr[i] = 0;
    f->rimp[i] = 1.0f;
}

static void apply_entity(kz_server *s, const kz_bus_entity *e)
{
    kz__fleet *f = s->fleet;
    uint32_t i = e->index;
    if (e->what == KZ_BUS_E_GONE) {
        clear_index(s, i);
        return;
    }
    if (e->what & KZ_BUS_E_STATE) {
        f->rstate[i] = e->state;
        memcpy(s->world.pos[i], e->state.pos, sizeof s->world.pos[i]);
        float x = (float)e->state.pos[0] / KZ_SNAP_POS_UNITS;
        float z = (float)e->state.pos[2] / KZ_SNAP_POS_UNITS;
        if (f->rgrid[i]) {
            if (kz_grid_move(&s->world.grid, i, x, z) != KZ_OK)
                kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);  /* checked in range: unreachable */
        } else
            f->rgrid[i] = kz_grid_insert(&s->world.grid, i, x, z) == KZ_OK;
    }
    if (e->what & KZ_BUS_E_ATTR) {
        f->rrule[i] = e->rule;
        f->rzone[i] = e->zone;
        f->rimp[i] = e->importance;
        f->rowner[i] = e->owner_id;
    }
    if (e->what & KZ_BUS_E_BADGE) {
        f->rbadge[i] = e->badge;
        f->rbadge_gen[i]++;
    }
    if (e->what & KZ_BUS_E_BLOCKED) {
        f->rn_blocked[i] = e->n_blocked;
        memcpy(f->rblocked[i], e->blocked, e->n_blocked * sizeof e->blocked[0]);
        f->rblocked_gen[i]++;
    }
    if (e->what & KZ_BUS_E_INPUT) {
        f->rinput[i] = e->input_tick;
        f->rcorr[i] = e->corrected;
    }
}

/* Checks a LIMITS block against this edge's own settings. */
static int limits_match(kz_server *s, const kz_bus_limits *l)
{
    return l->tick_hz == s->cfg.tick_hz && l->cap == s->world.cap &&
           l->max_clients == s->sessions.max_clients && l->n_slots == s->n_slots &&
           l->history == s->history && l->bound == s->cfg.world_bound &&
           l->max_speed == s->cfg.max_speed && l->view_radius == s->cfg.view_radius;
}

/* What a TICK or SYNC part says, once checked. */
typedef struct update_msg {
    kz_bus_tick_head th;
    kz_bus_limits lim;
    const uint8_t *records, *end;
    int sync, mine;
} update_msg;

/* Checks a TICK or SYNC part whole, against nothing but itself and the
 * world's shape: head, limits, every record, the ends of the index range
 * (part 0 starts at 0, the last part ends at the cap). Changes nothing. */
static kz_bus_drop update_check(kz_server *s, const kz_bus_header *h, const uint8_t *body,
                                size_t len, update_msg *u)
{
    kz__fleet *f = s->fleet;
    const uint8_t *p = body, *end = body + len;
    kz_bus_tick_head *th = &u->th;
    if (!kz_bus_tick_head_read(&p, end, th) || th->end > s->world.cap)
        return KZ_BUS_DROP_MALFORMED;
    u->sync = h->type == KZ_BUS_SYNC;
    if (u->sync != ((th->flags & KZ_BUS_TICK_FULL) != 0) ||
        (u->sync ? th->target == 0 : th->target != 0))
        return KZ_BUS_DROP_MALFORMED;
    if ((th->part == 0 && th->first != 0) ||
        ((th->flags & KZ_BUS_TICK_LAST) && th->end != s->world.cap))
        return KZ_BUS_DROP_MALFORMED;
    if (u->sync && th->part == 0 && !kz_bus_limits_read(&p, end, &u->lim))
        return KZ_BUS_DROP_MALFORMED;
    u->records = p;
    u->end = end;
    int64_t after = (int64_t)th->first - 1;
    kz_bus_entity e;
    for (uint32_t k = 0; k < th->count; k++) {
        if (!kz_bus_entity_read(&s->world.codec, &p, end, th->first, th->end, after, &e))
            return KZ_BUS_DROP_MALFORMED;
        after = e.index;
    }
    if (p != end)
        return KZ_BUS_DROP_MALFORMED;
    u->mine = !u->sync || th->target == f->cfg.edge;
    return KZ_BUS_OK;
}

/* Applies a checked part where it belongs in the sequence of parts; a
 * part that does not follow the one before (a lost message) makes the
 * edge ask for the world image again. */
static void update_apply(kz_server *s, const update_msg *u)
{
    kz__fleet *f = s->fleet;
    const kz_bus_tick_head th = u->th;
    int sync = u->sync;
    const kz_bus_limits lim = u->lim;
    if (!u->mine)
        return;  /* another edge's image */
    const uint8_t *p, *end = u->end;
    const uint8_t *records = u->records;
    int64_t after;
    kz_bus_entity e;

    if (sync) {
        if (th.part == 0) {
            if (!limits_match(s, &lim)) {
                kz_counter_inc(f->c, KZ__FLEET_C_LIMITS_DIFFER);
                kz_logf(&s->cfg.net.log, KZ_LOG_ERROR, "fleet",
                        "the authority's world has other settings (tick_hz %u, cap %u, "
                        "max_clients %u): this edge must run with the authority's",
                        lim.tick_hz, lim.cap, lim.max_clients);
                f->failed = 1;
                return;
            }
            f->building = 1;
            f->building_sync = 1;
            f->part_tick = th.tick;
            f->part_next = 0;
        } else if (!f->building || !f->building_sync || th.tick != f->part_tick ||
                   th.part != f->part_next) {
            lose_sync(s);
            return;
        }
    } else {
        if (!f->synced || (f->building && f->building_sync))
            return;  /* waiting for a SYNC: ticks before it are not needed */
        if (th.part == 0) {
            if (th.tick <= f->rtick)
                return;  /* covered by the SYNC taken */
            if (th.tick != f->rtick + 1u) {
                kz_counter_add(f->c, KZ__FLEET_C_GAP, th.tick - f->rtick - 1u);
                lose_sync(s);
                return;
            }
            f->building = 1;
            f->building_sync = 0;
            f->part_tick = th.tick;
            f->part_next = 0;
        } else if (!f->building || th.tick != f->part_tick || th.part != f->part_next) {
            kz_counter_inc(f->c, KZ__FLEET_C_GAP);
            lose_sync(s);
            return;
        }
    }
    /* Parts cover the world's indices in order, without holes: part 0
     * starts at 0, each starts where the one before ended, the last ends
     * at the cap. */
    if (th.part && th.first != f->part_end) {
        kz_counter_inc(f->c, KZ__FLEET_C_GAP);
        lose_sync(s);
        return;
    }
    f->part_end = th.end;
    if (sync)
        for (uint32_t i = th.first; i < th.end; i++)
            clear_index(s, i);
    p = records;
    after = (int64_t)th.first - 1;
    for (uint32_t k = 0; k < th.count; k++) {
        (void)kz_bus_entity_read(&s->world.codec, &p, end, th.first, th.end, after, &e);
        after = e.index;
        apply_entity(s, &e);
    }
    f->part_next++;
    if (!(th.flags & KZ_BUS_TICK_LAST))
        return;
    f->building = 0;
    if (sync) {
        f->synced = 1;
        if (!s->draining)
            kz_netserver_set_accepting(s->net, 1);
        kz_logf(&s->cfg.net.log, KZ_LOG_INFO, "fleet", "world image taken at tick %u", th.tick);
    }
    f->rtick = th.tick;
    f->last_update = s->now;
    if (f->paused) {
        f->paused = 0;
        tell_all(s, KZ_NOTICE_WORLD_RESUMED, "the world moves again");
    }
    kz_counter_inc(f->c, KZ__FLEET_C_TICKS_APPLIED);
    kz__server_edge_tick(s, th.tick);
}

/* ---- DOWN ---------------------------------------------------------------- */

/* The local session of a record, or NULL when it has ended since. */
static kz__client *local(kz_server *s, const kz_bus_rec *r)
{
    if (r->slot >= s->sessions.max_clients)
        return NULL;
    kz__client *cl = &s->sessions.clients[r->slot];
    return cl->live && cl->serial == r->serial ? cl : NULL;
}

/* Chat, emote or voice near dense index `from`: to each client whose
 * avatar is within `radius` on the ground and who sees `from` (the
 * sender itself when `echo`), as the single process's relay does. */
static void near(kz_server *s, const kz_bus_rec *r)
{
    kz__fleet *f = s->fleet;
    uint8_t type = r->body[0];
    int echo = r->body[1];
    float radius;
    memcpy(&radius, r->body + 2, 4);
    uint32_t from = r->slot;
    const int32_t *at = f->rstate[from].pos;
    for (uint32_t slot = 0; slot < s->sessions.max_clients; slot++) {
        const kz__client *cl = &s->sessions.clients[slot];
        if (!cl->live || cl->kicked || cl->avatar == KZ__NO_AVATAR || !f->rstate[cl->avatar].entity)
            continue;
        const int32_t *me = f->rstate[cl->avatar].pos;
        float dx = (float)(me[0] - at[0]) / KZ_SNAP_POS_UNITS;
        float dz = (float)(me[2] - at[2]) / KZ_SNAP_POS_UNITS;
        if (dx * dx + dz * dz > radius * radius)
            continue;
        if (cl->avatar == from ? !echo : !kz__seen(s, slot, from))
            continue;
        if (kz_netserver_send(s->net, slot, r->sub, type, r->body + 6, r->len - 6u) != KZ_OK)
            kz_counter_inc(s->c, KZ_WORLD_C_DROP_SEND);
    }
}

/* One DOWN record; malformed ones were refused with the whole message. */
static void down_record(kz_server *s, const kz_bus_rec *r)
{
    kz__client *cl = local(s, r);
    switch (r->kind) {
    case KZ_BUS_D_SESSION: {
        uint32_t avatar = kz_bus_get32(r->body);
        if (cl && avatar)
            cl->avatar = avatar - 1u;
        break;
    }
    case KZ_BUS_D_SEND:
        if (cl && kz_netserver_send(s->net, r->slot, r->sub, r->body[0], r->body + 1,
                                    r->len - 1u) != KZ_OK)
            kz_counter_inc(s->c, KZ_WORLD_C_DROP_SEND);
        break;
    case KZ_BUS_D_KICK:
        if (cl && !cl->kicked && kz_netserver_kick(s->net, r->slot, kz_bus_get32(r->body)) == KZ_OK) {
            cl->kicked = 1;
            kz_counter_inc(s->c, KZ_WORLD_C_KICKS);
        }
        break;
    default: near(s, r); break;
    }
}

/* 1 when a DOWN record's body has the shape of its kind. */
static int down_record_ok(const kz_server *s, const kz_bus_rec *r)
{
    switch (r->kind) {
    case KZ_BUS_D_SESSION:
        return r->len == 4 && kz_bus_get32(r->body) <= s->world.cap;
    case KZ_BUS_D_SEND:
        return r->len >= 1 && r->len - 1u <= KZ_MAX_MESSAGE_BYTES && r->sub < KZ_CHANNEL_COUNT &&
               r->sub != KZ_CHANNEL_SNAPSHOT;
    case KZ_BUS_D_KICK:
        return r->len == 4 && kz_bus_get32(r->body) <= 255u;
    case KZ_BUS_D_NEAR: {
        if (r->len < 6 || r->len - 6u > KZ_MAX_MESSAGE_BYTES || r->slot >= s->world.cap ||
            r->serial != 0 || r->body[1] > 1 || r->sub >= KZ_CHANNEL_COUNT ||
            r->sub == KZ_CHANNEL_SNAPSHOT)
            return 0;
        float radius;
        memcpy(&radius, r->body + 2, 4);
        return isfinite(radius) && radius >= 0 && radius <= 1e5f;
    }
    default: return 0;
    }
}

/* Checks a DOWN whole; changes nothing. */
static kz_bus_drop down_check(const kz_server *s, const uint8_t *body, size_t len)
{
    if (len < KZ_BUS_DOWN_HEAD_BYTES || body[8] > 1 || body[9] || body[10] || body[11])
        return KZ_BUS_DROP_MALFORMED;
    uint32_t count = kz_bus_get32(body + 4);
    const uint8_t *q = body + KZ_BUS_DOWN_HEAD_BYTES, *end = body + len;
    kz_bus_rec r;
    for (uint32_t k = 0; k < count; k++)
        if (!kz_bus_rec_read(&q, end, 0, &r) || !down_record_ok(s, &r))
            return KZ_BUS_DROP_MALFORMED;
    return q == end ? KZ_BUS_OK : KZ_BUS_DROP_MALFORMED;
}

static void down_apply(kz_server *s, const uint8_t *body, size_t len)
{
    uint32_t count = kz_bus_get32(body + 4);
    const uint8_t *q = body + KZ_BUS_DOWN_HEAD_BYTES, *end = body + len;
    kz_bus_rec r;
    for (uint32_t k = 0; k < count; k++) {
        (void)kz_bus_rec_read(&q, end, 0, &r);
        down_record(s, &r);
    }
}

/* ---- receiving ----------------------------------------------------------- */

/* The authority's instance and sequence (steps 5-7): a new instance is
 * followed only with a later epoch (a restarted or new authority). */
static kz_bus_drop authority_order(kz_server *s, const kz_bus_header *h, int on_tick)
{
    kz__fleet *f = s->fleet;
    if (h->instance != f->auth_instance) {
        if (f->auth_instance && h->epoch <= f->auth_epoch)
            return KZ_BUS_DROP_STALE_INSTANCE;
        if (f->auth_instance) {
            /* A new authority has a new world: the sessions of the old
             * one cannot continue in it. */
            kz_logf(&s->cfg.net.log, KZ_LOG_WARN, "fleet",
                    "a new authority (epoch %llu): ending this edge's sessions",
                    (unsigned long long)h->epoch);
            for (uint32_t slot = 0; slot < s->sessions.max_clients; slot++) {
                kz__client *cl = &s->sessions.clients[slot];
                if (cl->live && !cl->kicked &&
                    kz_netserver_kick(s->net, slot, KZ_KICK_SHUTDOWN) == KZ_OK)
                    cl->kicked = 1;
            }
        }
        f->auth_instance = h->instance;
        f->auth_epoch = h->epoch;
        f->auth_seq_tick = f->auth_seq_down = 0;
        if (f->auth_instance_seen)
            f->hello_reason = 3;  /* a new authority: it does not know this edge */
        f->auth_instance_seen = 1;
        f->synced = 0;
        f->building = 0;
    }
    uint64_t *seq = on_tick ? &f->auth_seq_tick : &f->auth_seq_down;
    if (h->seq <= *seq)
        return KZ_BUS_DROP_REPLAY;
    if (*seq && h->seq > *seq + 1u) {
        kz_counter_add(f->c, KZ__FLEET_C_GAP, h->seq - *seq - 1u);
        if (on_tick)
            lose_sync(s);
    }
    return KZ_BUS_OK;
}

kz_bus_drop kz__fleet_edge_receive(kz_server *s, const kz_bus_header *h, const uint8_t *body,
                                   size_t len)
{
    kz__fleet *f = s->fleet;
    int on_tick = h->type != KZ_BUS_DOWN;
    /* Everything that can refuse the message comes first: a refused
     * message changes nothing (no new authority followed, no sequence
     * step, no gap). */
    if (h->instance != f->auth_instance && f->auth_instance && h->epoch <= f->auth_epoch)
        return KZ_BUS_DROP_STALE_INSTANCE;
    if (h->instance == f->auth_instance &&
        h->seq <= (on_tick ? f->auth_seq_tick : f->auth_seq_down))
        return KZ_BUS_DROP_REPLAY;
    update_msg u;
    kz_bus_drop d = on_tick ? update_check(s, h, body, len, &u) : down_check(s, body, len);
    if (d != KZ_BUS_OK)
        return d;
    d = authority_order(s, h, on_tick);
    if (d != KZ_BUS_OK)
        return d;
    if (on_tick)
        f->auth_seq_tick = h->seq;
    else
        f->auth_seq_down = h->seq;
    if (on_tick)
        update_apply(s, &u);
    else
        down_apply(s, body, len);
    return KZ_BUS_OK;
}

/* ---- observers -------------------------------------------------------------- */

void kz__fleet_edge_observers(kz_server *s)
{
    kz__fleet *f = s->fleet;
    uint32_t words = s->sessions.words;
    for (uint32_t slot = 0; slot < s->sessions.max_clients; slot++) {
        kz__client *cl = &s->sessions.clients[slot];
        if (!cl->live || cl->avatar == KZ__NO_AVATAR)
            continue;
        int observing = (f->rrule[cl->avatar] & KZ__RULE_OBSERVER) != 0;
        /* The bits of the last frame it observed in are taken too. */
        if (observing || cl->observer)
            for (uint32_t k = 0; k < words; k++)
                for (uint64_t fresh = kz__view_take_entered(&s->rp.w, slot, cl->serial, k); fresh;
                     fresh &= fresh - 1u) {
                    uint8_t b[4];
                    kz_bus_put32(b, k * 64u + (uint32_t)__builtin_ctzll(fresh));
                    kz__fleet_up(s, KZ_BUS_U_OBSERVED, 0, slot, cl->serial, 0, b, 4);
                }
        cl->observer = (uint8_t)observing;
    }
}

/* ---- the frame ------------------------------------------------------------ */

void kz__fleet_fill_frame(kz_server *s, kz__frame *fr)
{
    kz__fleet *f = s->fleet;
    uint32_t cap = s->world.cap, nc = s->sessions.max_clients;
    s->world.image = s->world.image_ring + (size_t)(fr->tick % s->world.rows) * cap;
    memcpy(s->world.image, f->rstate, (size_t)cap * sizeof *f->rstate);
    fr->image = s->world.image;
    (void)kz__grid_copy(&fr->grid, &s->world.grid);
    memcpy(fr->zone, f->rzone, cap * sizeof *fr->zone);
    memcpy(fr->importance, f->rimp, cap * sizeof *fr->importance);
    memcpy(fr->rule, f->rrule, cap * sizeof *fr->rule);
    for (uint32_t i = 0; i < cap; i++) {
        fr->ids[i] = f->rstate[i].entity;
        if (fr->badge_gen[i] != f->rbadge_gen[i]) {
            fr->badge[i] = f->rbadge[i];
            fr->badge_gen[i] = f->rbadge_gen[i];
        }
        /* Owners are rows past the local slots, one per dense index: the
         * visibility rule reads their client ids and block lists. */
        if (!f->rowner[i] || !f->rstate[i].entity) {
            fr->owner[i] = 0;
            continue;
        }
        fr->owner[i] = nc + i + 1u;
        kz__frame_client *oc = &fr->clients[nc + i];
        if (oc->client_id != f->rowner[i] || oc->blocked_gen != f->rblocked_gen[i]) {
            memcpy(fr->blocked[nc + i], f->rblocked[i], f->rn_blocked[i] * sizeof(uint64_t));
            oc->blocked_gen = f->rblocked_gen[i];
        }
        oc->client_id = f->rowner[i];
        oc->n_blocked = f->rn_blocked[i];
        oc->replicate = 0;
    }
}
