/*
 * A kz_server in a fleet role (sim/fleet.h): the outgoing message arena,
 * creation, the receiver's common checks, and the authority's side: joins
 * by client id, sessions held while their edge is away, the world update
 * of each tick (TICK), the full image for one edge (SYNC) and what each
 * edge must tell its clients (DOWN). The edge's side is fleet_edge.c.
 */
#include "sim/fleet_impl.h"

#include <string.h>

#include <kizuna/log.h>

#include "core/assert.h"

#include "net/token_claims.h"
#include "sim/layout.h"

#define KZ__COUNTER_NAME(id, name) name,
const char *const kz__fleet_counter_names[KZ__FLEET_C_COUNT] = {
    KZ__FLEET_COUNTERS(KZ__COUNTER_NAME)};
#undef KZ__COUNTER_NAME

#define NS_PER_MS 1000000ull

/* ---- the out arena ------------------------------------------------------ */

int kz__fleet_room(const kz__fleet *f, size_t bytes)
{
    return f->out_cap - f->out_used >= bytes && f->n_msgs < KZ__FLEET_MAX_MSGS;
}

uint8_t *kz__fleet_cursor(kz__fleet *f) { return f->out + f->out_used; }

/* Opens a message of `type` with room for `need` body bytes at least
 * (and at most KZ_BUS_MESSAGE_MAX): returns where its body starts, or
 * NULL (counted) when this step's arena is full. */
uint8_t *kz__fleet_begin(kz__fleet *f, unsigned subject, uint32_t edge, uint8_t type,
                         size_t need)
{
    KZ_ASSERT(!f->open);
    if (!kz__fleet_room(f, KZ_BUS_HEADER_BYTES + need)) {
        kz_counter_inc(f->c, KZ__FLEET_C_OUT_DROPPED);
        return NULL;
    }
    f->open = 1;
    f->open_at = f->out_used;
    f->open_type = type;
    f->open_subject = subject;
    f->open_edge = edge;
    f->open_count = 0;
    f->out_used += KZ_BUS_HEADER_BYTES;
    return f->out + f->out_used;
}

/* Closes the open message at `end` (one past its body). */
void kz__fleet_end(kz__fleet *f, uint8_t *end)
{
    KZ_ASSERT(f->open);
    uint8_t *hdr = f->out + f->open_at;
    size_t body = (size_t)(end - hdr) - KZ_BUS_HEADER_BYTES;
    KZ_ASSERT(body <= KZ_BUS_MESSAGE_MAX);
    uint64_t *seq = f->open_subject == KZ_BUS_SUBJECT_TICK ? &f->seq_tick
                    : f->open_subject == KZ_BUS_SUBJECT_UP ? &f->seq_up
                                                           : &f->peers[f->open_edge].seq_down;
    kz_bus_header h = {
        .type = f->open_type,
        .sender = (uint16_t)(f->cfg.role == KZ__ROLE_EDGE ? f->cfg.edge : 0),
        .length = (uint32_t)body,
        .world = f->cfg.world,
        .instance = f->cfg.instance,
        .epoch = f->cfg.role == KZ__ROLE_EDGE ? f->auth_epoch : f->cfg.started_ms,
        .seq = ++*seq,
    };
    kz_bus_header_write(&h, hdr);
    f->msgs[f->n_msgs++] = (kz__bus_msg){f->open_subject, f->open_edge, hdr,
                                         (uint32_t)(KZ_BUS_HEADER_BYTES + body)};
    f->out_used = f->open_at + KZ_BUS_HEADER_BYTES + body;
    kz_counter_inc(f->c, KZ__FLEET_C_MSGS_OUT);
    kz_counter_add(f->c, KZ__FLEET_C_BYTES_OUT, KZ_BUS_HEADER_BYTES + body);
    f->open = 0;
}

uint32_t kz__fleet_out(kz_server *s, const kz__bus_msg **msgs)
{
    kz__fleet *f = s->fleet;
    if (!f) {
        *msgs = NULL;
        return 0;
    }
    if (f->cfg.role == KZ__ROLE_EDGE)
        kz__fleet_edge_step(s);  /* closes the open batch */
    *msgs = f->msgs;
    return f->n_msgs;
}

void kz__fleet_out_clear(kz_server *s)
{
    kz__fleet *f = s->fleet;
    if (!f)
        return;
    KZ_ASSERT(!f->open);
    f->out_used = 0;
    f->n_msgs = 0;
}

/* ---- creation ----------------------------------------------------------- */

static size_t authority_layout(kz__fleet *f, uint8_t *base)
{
    size_t off = 0;
    uint32_t cap = f->cap, nc = f->max_clients;
#define ARR(ptr, n) KZ__LAYOUT(off, base, ptr, n, 64u)
    ARR(f->ws, nc);
    for (uint32_t e = 1; e <= KZ_BUS_MAX_EDGES; e++)
        ARR(f->peers[e].by_slot, nc);
    ARR(f->prev, cap);
    ARR(f->prev_rule, cap);
    ARR(f->prev_zone, cap);
    ARR(f->prev_imp, cap);
    ARR(f->prev_owner, cap);
    ARR(f->prev_badge_gen, cap);
    ARR(f->prev_blocked_gen, cap);
    ARR(f->prev_input, cap);
    ARR(f->prev_corr, cap);
    ARR(f->stage, f->stage_cap);
    ARR(f->msgs, KZ__FLEET_MAX_MSGS);
    ARR(f->out, f->out_cap);
#undef ARR
    return off + 64u;
}

static size_t edge_layout(kz__fleet *f, uint8_t *base)
{
    size_t off = 0;
    uint32_t cap = f->cap;
#define ARR(ptr, n) KZ__LAYOUT(off, base, ptr, n, 64u)
    ARR(f->rstate, cap);
    ARR(f->rrule, cap);
    ARR(f->rzone, cap);
    ARR(f->rn_blocked, cap);
    ARR(f->rcorr, cap);
    ARR(f->rgrid, cap);
    ARR(f->rimp, cap);
    ARR(f->rowner, cap);
    ARR(f->rbadge, cap);
    ARR(f->rbadge_gen, cap);
    ARR(f->rblocked_gen, cap);
    ARR(f->rinput, cap);
    ARR(f->rblocked, cap);
    ARR(f->msgs, KZ__FLEET_MAX_MSGS);
    ARR(f->out, f->out_cap);
#undef ARR
    return off + 64u;
}

void kz__fleet_destroy(kz__fleet *f);

void kz__fleet_destroy(kz__fleet *f)
{
    if (!f)
        return;
    kz_allocator a = f->alloc;
    if (f->block)
        kz_free(&a, f->block, f->block_size);
    if (f->counters.cells)
        kz_counters_fini(&f->counters);
    kz_free(&a, f, sizeof *f);
}

/* server.c calls this while creating a fleet server: the fleet state for
 * a world of `cap` entities and `max_clients` slots. NULL on a bad
 * configuration or no memory. */
kz__fleet *kz__fleet_create(const kz__fleet_config *fc, uint32_t cap, uint32_t max_clients,
                            const kz_allocator *a);

kz__fleet *kz__fleet_create(const kz__fleet_config *fc, uint32_t cap, uint32_t max_clients,
                            const kz_allocator *a)
{
    if ((fc->role != KZ__ROLE_AUTHORITY && fc->role != KZ__ROLE_EDGE) || fc->instance == 0 ||
        (fc->role == KZ__ROLE_EDGE && (fc->edge == 0 || fc->edge > KZ_BUS_MAX_EDGES)))
        return NULL;
    kz__fleet *f = kz_calloc(a, sizeof *f, 64);
    if (!f)
        return NULL;
    f->alloc = *a;
    f->cfg = *fc;
    if (!f->cfg.hold_ms)
        f->cfg.hold_ms = 15000;
    if (!f->cfg.out_bytes)
        f->cfg.out_bytes = 16u << 20;
    f->cap = cap;
    f->max_clients = max_clients;
    f->out_cap = f->cfg.out_bytes;
    f->stage_cap = f->cfg.out_bytes / 4u;
    int edge = fc->role == KZ__ROLE_EDGE;
    f->block_size = edge ? edge_layout(f, NULL) : authority_layout(f, NULL);
    f->block = kz_calloc(a, f->block_size, 64);
    if (!f->block ||
        kz_counters_init(&f->counters, KZ__FLEET_C_COUNT, 1, kz__fleet_counter_names, a)) {
        kz__fleet_destroy(f);
        return NULL;
    }
    (void)(edge ? edge_layout(f, f->block) : authority_layout(f, f->block));
    f->c = kz_counters_block(&f->counters, 0);
    return f;
}

const kz_counters *kz__fleet_counters(const kz_server *s)
{
    return s->fleet ? &s->fleet->counters : NULL;
}

unsigned kz__fleet_role(const kz_server *s) { return s->fleet ? s->fleet->cfg.role : 0; }

uint32_t kz__fleet_sessions(const kz_server *s, uint32_t *held)
{
    uint32_t n = 0, h = 0;
    const kz__fleet *f = s->fleet;
    if (f && f->cfg.role == KZ__ROLE_AUTHORITY)
        for (uint32_t w = 0; w < f->max_clients; w++) {
            n += f->ws[w].edge != 0;
            h += f->ws[w].held;
        }
    else
        n = s->sessions.n_live;
    if (held)
        *held = h;
    return n;
}

/* ---- receiving ---------------------------------------------------------- */

static const uint32_t drop_counter[KZ_BUS_DROP_COUNT] = {
    [KZ_BUS_DROP_OVERSIZE] = KZ__FLEET_C_DROP_OVERSIZE,
    [KZ_BUS_DROP_MALFORMED] = KZ__FLEET_C_DROP_MALFORMED,
    [KZ_BUS_DROP_VERSION] = KZ__FLEET_C_DROP_VERSION,
    [KZ_BUS_DROP_OTHER_WORLD] = KZ__FLEET_C_DROP_OTHER_WORLD,
    [KZ_BUS_DROP_SENDER] = KZ__FLEET_C_DROP_SENDER,
    [KZ_BUS_DROP_STALE_INSTANCE] = KZ__FLEET_C_DROP_STALE_INSTANCE,
    [KZ_BUS_DROP_REPLAY] = KZ__FLEET_C_DROP_REPLAY,
    [KZ_BUS_DROP_FOREIGN] = KZ__FLEET_C_DROP_FOREIGN,
};

static kz_bus_drop authority_receive(kz_server *s, const kz_bus_header *h, const uint8_t *body,
                                     size_t len);

kz_bus_drop kz__fleet_receive(kz_server *s, unsigned subject, uint32_t subject_edge,
                              const uint8_t *msg, size_t len)
{
    kz__fleet *f = s->fleet;
    if (!f)
        return KZ_BUS_DROP_SENDER;
    kz_counter_inc(f->c, KZ__FLEET_C_MSGS_IN);
    kz_counter_add(f->c, KZ__FLEET_C_BYTES_IN, len);
    kz_bus_header h;
    kz_bus_drop d = KZ_BUS_DROP_SENDER;
    int mine = f->cfg.role == KZ__ROLE_AUTHORITY ? subject == KZ_BUS_SUBJECT_UP
                                                  : subject != KZ_BUS_SUBJECT_UP &&
                                                        (subject == KZ_BUS_SUBJECT_TICK ||
                                                         subject_edge == f->cfg.edge);
    if (mine)
        d = kz_bus_header_check(msg, len, f->cfg.world, subject, subject_edge, &h);
    if (d == KZ_BUS_OK)
        d = f->cfg.role == KZ__ROLE_AUTHORITY
                ? authority_receive(s, &h, msg + KZ_BUS_HEADER_BYTES, len - KZ_BUS_HEADER_BYTES)
                : kz__fleet_edge_receive(s, &h, msg + KZ_BUS_HEADER_BYTES,
                                         len - KZ_BUS_HEADER_BYTES);
    if (d != KZ_BUS_OK)
        kz_counter_inc(f->c, drop_counter[d]);
    return d;
}

/* ---- authority: sessions by client id ----------------------------------- */

/* A DOWN record for edge `e`, staged until the tick's DOWN is written. */
static void stage(kz__fleet *f, uint32_t e, const kz_bus_rec *r)
{
    size_t need = 1u + KZ_BUS_REC_BYTES + r->len;
    if (f->stage_cap - f->stage_used < need) {
        kz_counter_inc(f->c, KZ__FLEET_C_OUT_DROPPED);
        return;
    }
    uint8_t *p = f->stage + f->stage_used;
    *p++ = (uint8_t)e;
    (void)kz_bus_rec_write(r, 0, &p, f->stage + f->stage_cap);
    f->stage_used = (size_t)(p - f->stage);
}

static void stage_session(kz__fleet *f, uint32_t e, uint32_t eslot, uint32_t eserial,
                          uint32_t avatar_plus_1)
{
    uint8_t b[4];
    kz_bus_put32(b, avatar_plus_1);
    kz_bus_rec r = {.kind = KZ_BUS_D_SESSION, .len = 4, .slot = eslot, .serial = eserial, .body = b};
    stage(f, e, &r);
}

static void stage_kick(kz__fleet *f, uint32_t e, uint32_t eslot, uint32_t eserial, uint32_t reason)
{
    uint8_t b[4];
    kz_bus_put32(b, reason);
    kz_bus_rec r = {.kind = KZ_BUS_D_KICK, .len = 4, .slot = eslot, .serial = eserial, .body = b};
    stage(f, e, &r);
}

void kz__fleet_send(kz_server *s, uint32_t slot, uint8_t channel, uint8_t type,
                    const void *data, uint32_t len)
{
    kz__fleet *f = s->fleet;
    const kz__wslot *w = &f->ws[slot];
    if (!w->edge || len > KZ_MAX_MESSAGE_BYTES) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_SEND);  /* held: nobody to tell */
        return;
    }
    uint8_t b[1 + KZ_MAX_MESSAGE_BYTES];
    b[0] = type;
    memcpy(b + 1, data, len);
    kz_bus_rec r = {.kind = KZ_BUS_D_SEND, .sub = channel, .len = (uint16_t)(1 + len),
                    .slot = w->eslot, .serial = w->eserial, .body = b};
    stage(f, w->edge, &r);
}

int kz__fleet_kick(kz_server *s, uint32_t slot, uint32_t reason)
{
    kz__fleet *f = s->fleet;
    kz__wslot *w = &f->ws[slot];
    if (w->edge)
        stage_kick(f, w->edge, w->eslot, w->eserial, reason);
    else if (w->held)
        w->held_since = 0;  /* no edge to tell: it ends at the next step */
    return KZ_OK;
}

void kz__fleet_near(kz_server *s, uint32_t from, float radius, int echo, uint8_t channel,
                    uint8_t type, const uint8_t *data, uint32_t len)
{
    kz__fleet *f = s->fleet;
    if (len > KZ_MAX_MESSAGE_BYTES)
        return;
    uint8_t b[6 + KZ_MAX_MESSAGE_BYTES];
    b[0] = type;
    b[1] = (uint8_t)(echo != 0);
    memcpy(b + 2, &radius, 4);
    memcpy(b + 6, data, len);
    kz_bus_rec r = {.kind = KZ_BUS_D_NEAR, .sub = channel, .len = (uint16_t)(6 + len),
                    .slot = from, .serial = 0, .body = b};
    for (uint32_t e = 1; e <= KZ_BUS_MAX_EDGES; e++)
        if (f->peers[e].instance && !f->peers[e].lost)
            stage(f, e, &r);
}

/* Ends the mapping of world slot `w` (not the session). */
static void unmap(kz__fleet *f, uint32_t w)
{
    kz__wslot *ws = &f->ws[w];
    if (ws->edge && ws->eslot < f->max_clients &&
        f->peers[ws->edge].by_slot[ws->eslot] == w + 1u)
        f->peers[ws->edge].by_slot[ws->eslot] = 0;
    ws->edge = 0;
}

static void map(kz__fleet *f, uint32_t w, uint32_t e, uint32_t eslot, uint32_t eserial)
{
    f->ws[w] = (kz__wslot){.edge = e, .eslot = eslot, .eserial = eserial};
    f->peers[e].by_slot[eslot] = w + 1u;
}

/* The session of world slot `w` keeps its avatar without an edge. */
static void hold(kz_server *s, uint32_t w)
{
    kz__fleet *f = s->fleet;
    uint32_t e = f->ws[w].edge;
    unmap(f, w);
    if (!s->sessions.clients[w].live) {
        f->ws[w] = (kz__wslot){0};
        return;
    }
    f->ws[w].held = 1;
    f->ws[w].held_edge = e;
    f->ws[w].held_instance = e ? f->peers[e].instance : 0;
    f->ws[w].held_since = s->now;
    kz_counter_inc(f->c, KZ__FLEET_C_SESSIONS_HELD);
    kz__server_path(s, w, 1);
}

static void end_session(kz_server *s, uint32_t w)
{
    kz__fleet *f = s->fleet;
    unmap(f, w);
    f->ws[w] = (kz__wslot){0};
    kz__server_disconnect(s, w);
}

/* The world slot of edge `e`'s session (eslot, eserial), or UINT32_MAX. */
static uint32_t owned(const kz__fleet *f, uint32_t e, uint32_t eslot, uint32_t eserial)
{
    if (eslot >= f->max_clients)
        return UINT32_MAX;
    uint32_t w = f->peers[e].by_slot[eslot];
    if (!w || f->ws[w - 1u].edge != e || f->ws[w - 1u].eserial != eserial)
        return UINT32_MAX;
    return w - 1u;
}

static uint32_t find_client(const kz_server *s, uint64_t client_id)
{
    for (uint32_t w = 0; w < s->sessions.max_clients; w++)
        if (s->sessions.clients[w].live && s->sessions.clients[w].client_id == client_id)
            return w;
    return UINT32_MAX;
}

/* A JOIN: admit a new avatar, reattach a held one of the same client id,
 * or refuse. */
static void join(kz_server *s, uint32_t e, const kz_bus_rec *r)
{
    kz__fleet *f = s->fleet;
    kz_token_info info;
    if (r->slot >= f->max_clients || kz__token_claims_read(r->body, r->len, &info) != KZ_OK) {
        kz_counter_inc(f->c, KZ__FLEET_C_DROP_MALFORMED);
        return;
    }
    uint32_t old = f->peers[e].by_slot[r->slot];
    if (old)
        end_session(s, old - 1u);  /* the edge reused its slot: that session is over */
    uint32_t w = find_client(s, info.client_id);
    if (w != UINT32_MAX) {
        kz__wslot *ws = &f->ws[w];
        kz__client *cl = &s->sessions.clients[w];
        if (!(ws->held || cl->detached) || cl->kicked) {
            kz_counter_inc(f->c, KZ__FLEET_C_JOINS_IN_USE);
            stage_kick(f, e, r->slot, r->serial, KZ_KICK_REPLACED);
            return;
        }
        if (ws->edge)  /* detached on a live edge: that edge lets it go */
            stage_kick(f, ws->edge, ws->eslot, ws->eserial, KZ_KICK_REPLACED);
        if (ws->held && ws->held_edge && ws->held_edge != e && f->peers[ws->held_edge].instance ==
                                                                  ws->held_instance)
            /* Its old edge may come back: it must let the old session go. */
            stage_kick(f, ws->held_edge, ws->eslot, ws->eserial, KZ_KICK_REPLACED);
        unmap(f, w);
        map(f, w, e, r->slot, r->serial);
        kz_counter_inc(f->c, KZ__FLEET_C_SESSIONS_REATTACHED);
        kz__server_welcome(s, w);
        stage_session(f, e, r->slot, r->serial, cl->avatar + 1u);
        if (cl->detached)
            kz__server_path(s, w, 0);
        return;
    }
    for (w = 0; w < s->sessions.max_clients; w++)
        if (!s->sessions.clients[w].live && !f->ws[w].edge && !f->ws[w].held)
            break;
    if (w == s->sessions.max_clients) {
        stage_kick(f, e, r->slot, r->serial, KZ_KICK_NO_PLACE);
        return;
    }
    map(f, w, e, r->slot, r->serial);
    kz__server_connect(s, w, &info, ++f->next_serial, 0);
    if (s->sessions.clients[w].live)
        stage_session(f, e, r->slot, r->serial, s->sessions.clients[w].avatar + 1u);
}

/* One record of a BATCH from edge `e`. */
static void up_record(kz_server *s, uint32_t e, const kz_bus_rec *r)
{
    kz__fleet *f = s->fleet;
    if (r->kind == KZ_BUS_U_JOIN) {
        join(s, e, r);
        return;
    }
    if (r->kind < KZ_BUS_U_LEAVE || r->kind > KZ_BUS_U_OBSERVED) {
        kz_counter_inc(f->c, KZ__FLEET_C_DROP_MALFORMED);
        return;
    }
    uint32_t w = owned(f, e, r->slot, r->serial);
    if (w == UINT32_MAX) {
        kz_counter_inc(f->c, KZ__FLEET_C_DROP_FOREIGN);
        return;
    }
    switch (r->kind) {
    case KZ_BUS_U_LEAVE:
        if (r->sub == 2)
            hold(s, w);
        else
            end_session(s, w);
        break;
    case KZ_BUS_U_DETACH: kz__server_path(s, w, 1); break;
    case KZ_BUS_U_OBSERVED: {
        /* Only a session the authority knows observes may announce. */
        uint32_t target = r->len == 4 ? kz_bus_get32(r->body) : UINT32_MAX;
        if (target >= s->world.cap || !s->sessions.clients[w].observer) {
            kz_counter_inc(f->c, KZ__FLEET_C_DROP_MALFORMED);
            break;
        }
        kz__announce_observer(s, &s->sessions.clients[w], target);
        break;
    }
    case KZ_BUS_U_ATTACH: kz__server_path(s, w, 0); break;
    default: {
        /* The edge's arrival age, at most a second: an edge cannot make a
         * client's commands look older than that to the clock checks. */
        kz_time_ns age = (kz_time_ns)(r->age_us < 1000000u ? r->age_us : 1000000u) * 1000u;
        kz_netmsg m = {.slot = w, .kind = KZ_NETMSG_DATA, .type = r->sub, .len = r->len,
                       .data = r->body, .received = s->now > age ? s->now - age : s->now};
        kz__server_data(s, &m);
        break;
    }
    }
}

/* An edge's sessions are all held (it went silent, said BYE, or a new
 * instance of it started). A silent edge is remembered (`lost`): if the
 * same instance speaks again within the hold (a NATS outage, a paused
 * process) its held sessions are its own again (peer_back). */
static void edge_gone(kz_server *s, uint32_t e, int forget)
{
    kz__fleet *f = s->fleet;
    for (uint32_t w = 0; w < f->max_clients; w++)
        if (f->ws[w].edge == e)
            hold(s, w);
    f->peers[e].lost = 1;
    f->peers[e].need_sync = 0;
    if (forget)
        f->peers[e].instance = 0;
}

/* A lost edge speaks again: the sessions it held when it went silent,
 * not taken by another edge since, are attached to it again. */
static void peer_back(kz_server *s, uint32_t e)
{
    kz__fleet *f = s->fleet;
    kz__peer *p = &f->peers[e];
    p->lost = 0;
    kz_logf(&s->cfg.net.log, KZ_LOG_INFO, "fleet", "edge %u is back", e);
    for (uint32_t w = 0; w < f->max_clients; w++) {
        kz__wslot *ws = &f->ws[w];
        if (!ws->held || ws->held_edge != e || ws->held_instance != p->instance ||
            p->by_slot[ws->eslot])
            continue;
        map(f, w, e, ws->eslot, ws->eserial);
        kz_counter_inc(f->c, KZ__FLEET_C_SESSIONS_REATTACHED);
        kz__server_path(s, w, 0);
    }
}

static kz_bus_drop hello(kz_server *s, const kz_bus_header *h, const uint8_t *body, size_t len)
{
    kz__fleet *f = s->fleet;
    kz__peer *p = &f->peers[h->sender];
    if (len != 12 || body[0] < 1 || body[0] > 4 || body[1] || body[2] || body[3])
        return KZ_BUS_DROP_MALFORMED;
    uint64_t started = (uint64_t)kz_bus_get32(body + 4) | (uint64_t)kz_bus_get32(body + 8) << 32;
    if (p->instance && h->instance == p->instance) {
        if (h->seq <= p->seq)
            return KZ_BUS_DROP_REPLAY;
    } else if (p->instance) {
        if (started < p->started)
            return KZ_BUS_DROP_STALE_INSTANCE;
        edge_gone(s, h->sender, 1);  /* a restarted edge: the old one's sessions are held */
    }
    int back = p->lost && p->instance == h->instance;
    p->instance = h->instance;
    p->started = started;
    p->seq = h->seq;
    p->heard = s->now;
    p->heard_now = 1;
    p->need_sync = 1;
    p->lost = 0;
    if (back)
        peer_back(s, h->sender);
    kz_counter_inc(f->c, KZ__FLEET_C_HELLOS);
    kz_logf(&s->cfg.net.log, KZ_LOG_INFO, "fleet", "edge %u hello reason=%u", h->sender, body[0]);
    return KZ_BUS_OK;
}

static kz_bus_drop authority_receive(kz_server *s, const kz_bus_header *h, const uint8_t *body,
                                     size_t len)
{
    kz__fleet *f = s->fleet;
    if (h->type == KZ_BUS_HELLO)
        return hello(s, h, body, len);
    kz__peer *p = &f->peers[h->sender];
    if (!p->instance || h->instance != p->instance || h->epoch != f->cfg.started_ms)
        return KZ_BUS_DROP_STALE_INSTANCE;
    if (h->seq <= p->seq)
        return KZ_BUS_DROP_REPLAY;
    if (h->type == KZ_BUS_BYE) {
        if (len)
            return KZ_BUS_DROP_MALFORMED;
        p->seq = h->seq;
        edge_gone(s, h->sender, 1);
        return KZ_BUS_OK;
    }
    /* BATCH: the head, then every record's bounds, before anything applies. */
    if (len < KZ_BUS_BATCH_HEAD_BYTES)
        return KZ_BUS_DROP_MALFORMED;
    uint32_t count = kz_bus_get32(body + 4);
    const uint8_t *q = body + KZ_BUS_BATCH_HEAD_BYTES, *end = body + len;
    kz_bus_rec r;
    for (uint32_t k = 0; k < count; k++)
        if (!kz_bus_rec_read(&q, end, 1, &r))
            return KZ_BUS_DROP_MALFORMED;
    if (q != end)
        return KZ_BUS_DROP_MALFORMED;
    if (h->seq > p->seq + 1u)
        kz_counter_add(f->c, KZ__FLEET_C_GAP, h->seq - p->seq - 1u);
    p->seq = h->seq;
    p->heard = s->now;
    p->heard_now = 1;
    if (p->lost)
        peer_back(s, h->sender);
    q = body + KZ_BUS_BATCH_HEAD_BYTES;
    for (uint32_t k = 0; k < count; k++) {
        (void)kz_bus_rec_read(&q, end, 1, &r);
        up_record(s, h->sender, &r);
    }
    return KZ_BUS_OK;
}

/* ---- authority: the world update ---------------------------------------- */

/* The current values of dense index `i`, every part (`what` = all that
 * apply). 0 when the index is free. */
static int current(const kz_server *s, uint32_t i, kz_bus_entity *e)
{
    const kz_snap_state *st = &s->world.image[i];
    if (!st->entity)
        return 0;
    memset(e, 0, offsetof(kz_bus_entity, badge));
    e->index = i;
    e->state = *st;
    e->what = KZ_BUS_E_STATE | KZ_BUS_E_ATTR | KZ_BUS_E_BADGE;
    e->zone = s->world.private_zone[i];
    e->rule = e->zone ? KZ__RULE_ZONED : 0;
    e->importance = s->world.importance[i];
    e->badge = s->world.badge[i];
    e->n_blocked = 0;
    e->input_tick = 0;
    e->corrected = 0;
    if (s->world.owner[i]) {
        const kz__client *cl = &s->sessions.clients[s->world.owner[i] - 1u];
        e->rule |= (cl->observer ? KZ__RULE_OBSERVER : 0) | (cl->n_blocked ? KZ__RULE_BLOCKS : 0);
        e->owner_id = cl->client_id;
        e->what |= KZ_BUS_E_BLOCKED | KZ_BUS_E_INPUT;
        e->n_blocked = (uint8_t)cl->n_blocked;
        memcpy(e->blocked, cl->blocked, cl->n_blocked * sizeof cl->blocked[0]);
        e->input_tick = cl->applied_cmd;
        e->corrected = cl->corrected;
    }
    return 1;
}

/* Leaves in e->what only what changed since the last TICK, and makes the
 * current values the next baseline. */
static void diff(kz__fleet *f, const kz_server *s, uint32_t i, kz_bus_entity *e)
{
    int fresh = f->prev[i].entity != e->state.entity;
    uint32_t blocked_gen = 0;
    if (s->world.owner[i])
        blocked_gen = s->sessions.clients[s->world.owner[i] - 1u].blocked_gen;
    uint8_t what = 0;
    if (fresh || memcmp(&f->prev[i], &e->state, sizeof e->state) != 0)
        what |= KZ_BUS_E_STATE;
    if (fresh || f->prev_rule[i] != e->rule || f->prev_zone[i] != e->zone ||
        f->prev_imp[i] != e->importance || f->prev_owner[i] != e->owner_id)
        what |= KZ_BUS_E_ATTR;
    if (fresh || f->prev_badge_gen[i] != s->world.badge_gen[i])
        what |= KZ_BUS_E_BADGE;
    if ((e->what & KZ_BUS_E_BLOCKED) &&
        (fresh || f->prev_owner[i] != e->owner_id || f->prev_blocked_gen[i] != blocked_gen))
        what |= KZ_BUS_E_BLOCKED;
    if ((e->what & KZ_BUS_E_INPUT) &&
        (fresh || f->prev_input[i] != e->input_tick || f->prev_corr[i] != e->corrected))
        what |= KZ_BUS_E_INPUT;
    e->what = what;
    f->prev[i] = e->state;
    f->prev_rule[i] = e->rule;
    f->prev_zone[i] = e->zone;
    f->prev_imp[i] = e->importance;
    f->prev_owner[i] = e->owner_id;
    f->prev_badge_gen[i] = s->world.badge_gen[i];
    f->prev_blocked_gen[i] = blocked_gen;
    f->prev_input[i] = e->input_tick;
    f->prev_corr[i] = e->corrected;
}

/* Writes a TICK (target 0) or a SYNC for edge `target` in parts. */
static void write_update(kz_server *s, uint32_t target)
{
    kz__fleet *f = s->fleet;
    int full = target != 0;
    uint8_t type = full ? KZ_BUS_SYNC : KZ_BUS_TICK;
    kz_bus_tick_head th = {.tick = s->tick, .flags = full ? KZ_BUS_TICK_FULL : 0,
                           .target = (uint8_t)target};
    uint8_t *body = kz__fleet_begin(f, KZ_BUS_SUBJECT_TICK, 0, type, 256);
    if (!body)
        return;
    uint8_t *p = body + KZ_BUS_TICK_HEAD_BYTES;
    if (full) {
        kz_bus_limits l = {s->cfg.tick_hz, s->world.cap, s->sessions.max_clients, s->n_slots,
                           s->history, s->cfg.world_bound, s->cfg.max_speed, s->cfg.view_radius};
        kz_bus_limits_write(&l, p);
        p += KZ_BUS_LIMITS_BYTES;
    }
    uint8_t *limit = f->out + f->out_cap;
    for (uint32_t i = 0; i <= s->world.cap; i++) {
        kz_bus_entity e;
        int have = 0;
        if (i < s->world.cap) {
            have = current(s, i, &e);
            if (!full) {
                if (have)
                    diff(f, s, i, &e);
                else if (f->prev[i].entity) {
                    memset(&f->prev[i], 0, sizeof f->prev[i]);
                    e.index = i;
                    e.what = KZ_BUS_E_GONE;
                    have = 1;
                }
                have = have && e.what;
            }
        }
        size_t need = have ? kz_bus_entity_size(&e) : 0;
        int last = i == s->world.cap;
        if (last || (size_t)(p - body) + need > KZ_BUS_MESSAGE_MAX ||
            (size_t)(limit - p) < need) {
            th.end = last ? s->world.cap : i;
            th.flags = (uint8_t)((full ? KZ_BUS_TICK_FULL : 0) | (last ? KZ_BUS_TICK_LAST : 0));
            th.count = f->open_count;
            kz_bus_tick_head_write(&th, body);
            kz__fleet_end(f, p);
            if (last)
                return;
            th.part++;
            th.first = i;
            body = kz__fleet_begin(f, KZ_BUS_SUBJECT_TICK, 0, type, need + 64);
            if (!body)
                return;
            p = body + KZ_BUS_TICK_HEAD_BYTES;
        }
        if (have && kz_bus_entity_write(&e, &p, limit))
            f->open_count++;
    }
}

/* One DOWN (or more, past the size limit) per live edge: its staged
 * records. Sent every tick, even empty: the edge's heartbeat. */
static void write_downs(kz_server *s)
{
    kz__fleet *f = s->fleet;
    for (uint32_t e = 1; e <= KZ_BUS_MAX_EDGES; e++) {
        if (!f->peers[e].instance || f->peers[e].lost)
            continue;
        uint8_t *body = kz__fleet_begin(f, KZ_BUS_SUBJECT_DOWN, e, KZ_BUS_DOWN, 4096);
        if (!body)
            return;
        uint8_t *p = body + KZ_BUS_DOWN_HEAD_BYTES;
        const uint8_t *q = f->stage, *end = f->stage + f->stage_used;
        while (q < end) {
            uint8_t to = *q++;
            const uint8_t *at = q;
            kz_bus_rec r;
            (void)kz_bus_rec_read(&q, end, 0, &r);
            if (to != e)
                continue;
            size_t n = (size_t)(q - at);
            if ((size_t)(p - body) + n > KZ_BUS_MESSAGE_MAX || !kz__fleet_room(f, 0) ||
                (size_t)(f->out + f->out_cap - p) < n) {
                kz_bus_put32(body, s->tick);
                kz_bus_put32(body + 4, f->open_count);
                memset(body + 8, 0, 4);
                kz__fleet_end(f, p);
                body = kz__fleet_begin(f, KZ_BUS_SUBJECT_DOWN, e, KZ_BUS_DOWN, n + 64);
                if (!body)
                    return;
                p = body + KZ_BUS_DOWN_HEAD_BYTES;
            }
            memcpy(p, at, n);
            p += n;
            f->open_count++;
        }
        kz_bus_put32(body, s->tick);
        kz_bus_put32(body + 4, f->open_count);
        body[8] = 1;  /* the last DOWN of the tick */
        memset(body + 9, 0, 3);
        kz__fleet_end(f, p);
    }
    f->stage_used = 0;
}

void kz__fleet_after_tick(kz_server *s)
{
    kz__fleet *f = s->fleet;
    write_update(s, 0);
    for (uint32_t e = 1; e <= KZ_BUS_MAX_EDGES; e++)
        if (f->peers[e].instance && f->peers[e].need_sync) {
            f->peers[e].need_sync = 0;
            kz_counter_inc(f->c, KZ__FLEET_C_SYNCS);
            write_update(s, e);
        }
    write_downs(s);
}

static void authority_step(kz_server *s)
{
    kz__fleet *f = s->fleet;
    kz_time_ns silence = (kz_time_ns)KZ_BUS_EDGE_SILENCE_MS * NS_PER_MS;
    for (uint32_t e = 1; e <= KZ_BUS_MAX_EDGES; e++)
        if (f->peers[e].heard_now) {
            f->peers[e].heard = s->now;  /* a stalled loop must not make a talking edge silent */
            f->peers[e].heard_now = 0;
        }
    for (uint32_t e = 1; e <= KZ_BUS_MAX_EDGES; e++)
        if (f->peers[e].instance && !f->peers[e].lost && s->now - f->peers[e].heard > silence) {
            kz_counter_inc(f->c, KZ__FLEET_C_EDGES_LOST);
            kz_logf(&s->cfg.net.log, KZ_LOG_WARN, "fleet",
                    "edge %u silent for %u ms: its sessions are held", e, KZ_BUS_EDGE_SILENCE_MS);
            edge_gone(s, e, 0);
        }
    kz_time_ns hold = (kz_time_ns)f->cfg.hold_ms * NS_PER_MS;
    for (uint32_t w = 0; w < f->max_clients; w++)
        if (f->ws[w].held && s->now - f->ws[w].held_since > hold) {
            kz_counter_inc(f->c, KZ__FLEET_C_HELD_ENDED);
            end_session(s, w);
        }
}

void kz__fleet_step(kz_server *s)
{
    if (s->fleet->cfg.role == KZ__ROLE_AUTHORITY)
        authority_step(s);
    else
        kz__fleet_edge_step(s);
}
