/*
 * kz_client: the client library over kz_netclient (see kizuna/client.h).
 *
 * Per update: service the transport, decode what arrived (welcome,
 * snapshots, events), run the input ticks that are due (predict, send),
 * and move the render clock. Snapshots are decoded against the view the
 * server named as baseline, which the client still holds in a ring of the
 * views it decoded (as many as the server keeps). Remote entities are
 * tracked per view slot with a short ring of samples; a sample carries the
 * ticks through which its state is known to hold, so an entity at rest for
 * a while and then moving is not smeared across the rest period.
 *
 * Resume is the transport's (net/netclient.c): this layer only follows it
 * (RECONNECTING while the transport resumes, events on each change) and
 * keeps everything else as it is, since the server keeps the session.
 * A failover is the one case where the transport hands over a new session
 * (kz_netclient_serial): its WELCOME names the avatar the world kept or a
 * new one, and its views start from nothing; see welcome_again.
 */
#include <arpa/inet.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include <kizuna/client.h>
#include <kizuna/quant.h>
#include <kizuna/utf8.h>

#include "core/assert.h"
#include "net/netclient.h"
#include "sim/layout.h"
#include "sim/snapshot.h"
#include "sim/wire.h"

#define KZ__SAMPLES 8u
#define KZ__CMD_RING 64u
#define KZ__EV_DATA 336u   /* >= every event payload (voice frame, chat, notice) */
#define KZ__EXTRAPOLATE_MS 200.0
/* After a failover, how long an entity of the old session's view is kept
 * while the new session's views fill up under their byte budget; one not
 * seen again by then leaves. */
#define KZ__CARRY_MS 1000u

typedef struct kz__sample {
    uint32_t tick;   /* first tick with this state */
    uint32_t end;    /* last tick known to have it */
    kz_snap_state st;
} kz__sample;

typedef struct kz__vslot {
    uint32_t entity;          /* 0 = empty */
    uint32_t n;               /* samples held, newest at (head - 1) */
    uint32_t head;
    uint32_t carried;         /* from the view before a failover, not yet seen again */
    kz__sample s[KZ__SAMPLES];
    kz_badge badge;
} kz__vslot;

/* What the client remembers of a break in the path, for KZ_EV_RESUMED and
 * for standing its own avatar still as the server does. */
typedef struct kz__reconnect {
    kz_time_ns broken_since;  /* the last moment the path was known to work */
} kz__reconnect;

static void reconnect_reset(kz__reconnect *r)
{
    r->broken_since = 0;
}

static uint32_t ms_between(kz_time_ns from, kz_time_ns to)
{
    kz_time_ns ms = to > from ? (to - from) / KZ_NS_PER_MS : 0;
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

/* Whether the server still takes our inputs: each snapshot names the
 * newest input tick the server applied. Inputs sent and not acknowledged
 * for the transport's resume silence mean the uplink broke (the server's
 * datagrams may still arrive, so the transport cannot see it). */
typedef struct kz__uplink {
    uint32_t acked;            /* newest input tick a snapshot acknowledged */
    kz_time_ns acked_at;       /* when it advanced last */
    kz_time_ns unacked_since;  /* first input sent since then, 0 = none pending */
    uint32_t latency_tick;     /* newest input tick whose latency is known, 0 = none */
    kz_time_ns latency;        /* its send to the first snapshot that applied it */
} kz__uplink;

static void uplink_reset(kz__uplink *u)
{
    u->acked = 0;
    u->acked_at = 0;
    u->unacked_since = 0;
    u->latency_tick = 0;
    u->latency = 0;
}

/* The transport's session the tables belong to, and what a failover
 * (a new session through another server) carries over. */
typedef struct kz__failover {
    uint32_t serial;          /* kz_netclient_serial of the session decoded */
    uint32_t awaiting;        /* a new session's WELCOME is due; its snapshots wait */
    uint32_t old_newest;      /* the old session's newest tick */
    uint32_t carrying;        /* slots still hold entities from before it */
    kz_time_ns carry_until;   /* those not seen again by then leave */
} kz__failover;

static void failover_reset(kz__failover *f, uint32_t serial)
{
    f->serial = serial;
    f->awaiting = 0;
    f->old_newest = 0;
    f->carrying = 0;
    f->carry_until = 0;
}

struct kz_client {
    kz_client_config cfg;
    kz_allocator alloc;
    kz_netclient *net;
    uint32_t state;
    uint32_t reason;
    char kick_text[KZ_NOTICE_MAX_BYTES + 1];

    /* set by the welcome */
    kz_wire_welcome welcome;
    kz_snap_codec codec;
    kz_snap_view *views;      /* ring by tick % history */
    kz_snap_view scratch;
    uint8_t *change;
    kz_snap_badge *badges;
    kz__vslot *slots;
    /* Badges of entities that left recently: an entity can come back in an
     * UPDATE against a baseline older than its leaving, without an ENTER
     * record, and must keep its badge. A ring of n_slots entries. */
    uint32_t *gone_id;
    kz_badge *gone_badge;
    uint32_t gone_next;
    void *block;
    size_t block_size;
    uint32_t newest;          /* newest snapshot tick applied */

    /* prediction */
    kz_ticker ticker;
    int ticking;
    uint32_t cmd_tick;
    kz_wire_command cmds[KZ__CMD_RING];
    kz_time_ns cmd_sent[KZ__CMD_RING];      /* when each command was first sent */
    kz_snap_state predicted[KZ__CMD_RING];  /* after each command */
    kz_snap_state self;
    kz_avatar_state intent;
    int self_known;           /* a snapshot has placed the avatar (its first
                                 placement is the spawn, not a correction) */
    uint32_t flagged_cmd;     /* header-only: newest command reported corrected */

    /* render clock */
    int have_offset;
    double offset_ns;         /* local time - server tick time, smoothed minimum */
    kz_time_ns now;

    /* events */
    kz_client_event *evq;
    uint8_t *evdata;          /* event_capacity * KZ__EV_DATA */
    uint32_t ev_head, ev_count;
    uint8_t polled[KZ__EV_DATA];

    kz__reconnect reconnect;
    kz__uplink uplink;
    kz__failover failover;

    kz_counters counters;
    kz_counter_block c;
};

static const char *const kz__client_counter_names[KZ_CLIENT_C_COUNT] = {
#define KZ__CLIENT_NAME(id, name) name,
    KZ_CLIENT_COUNTERS(KZ__CLIENT_NAME)
#undef KZ__CLIENT_NAME
};

void kz_client_config_default(kz_client_config *cfg)
{
    kz_netclient_config net = cfg->net;
    memset(cfg, 0, sizeof *cfg);
    cfg->net = net;
    cfg->interp_delay_ms = 100;
    cfg->input_redundancy = 4;
    cfg->event_capacity = 64;
}

kz_client *kz_client_create(const kz_client_config *cfg_in)
{
    kz_client_config cfg = *cfg_in;
    kz_client_config d = {0};
    kz_client_config_default(&d);
    if (!cfg.interp_delay_ms)
        cfg.interp_delay_ms = d.interp_delay_ms;
    if (!cfg.input_redundancy)
        cfg.input_redundancy = d.input_redundancy;
    if (!cfg.event_capacity)
        cfg.event_capacity = d.event_capacity;
    if (cfg.input_redundancy > KZ_INPUT_MAX_COMMANDS || cfg.interp_delay_ms > 5000 ||
        cfg.event_capacity > 65536 || cfg.header_only > 1) {
        kz_logf(&cfg.net.log, KZ_LOG_ERROR, "client", "invalid client configuration");
        return NULL;
    }
    kz_allocator a = cfg.net.alloc;
    kz_allocator_resolve(&a);
    kz_client *c = kz_calloc(&a, sizeof *c, 64);
    if (!c)
        return NULL;
    c->cfg = cfg;
    c->alloc = a;
    c->evq = kz_calloc(&a, (size_t)cfg.event_capacity * sizeof *c->evq, 64);
    c->evdata = kz_calloc(&a, (size_t)cfg.event_capacity * KZ__EV_DATA, 64);
    if (!c->evq || !c->evdata ||
        kz_counters_init(&c->counters, KZ_CLIENT_C_COUNT, 1, kz__client_counter_names, &a)) {
        kz_client_destroy(c);
        return NULL;
    }
    c->c = kz_counters_block(&c->counters, 0);
    kz_avatar_state_rest(&c->intent);
    return c;
}

void kz_client_destroy(kz_client *c)
{
    if (!c)
        return;
    if (c->net)
        kz_netclient_destroy(c->net);
    if (c->block)
        kz_free(&c->alloc, c->block, c->block_size);
    if (c->evq)
        kz_free(&c->alloc, c->evq, (size_t)c->cfg.event_capacity * sizeof *c->evq);
    if (c->evdata)
        kz_free(&c->alloc, c->evdata, (size_t)c->cfg.event_capacity * KZ__EV_DATA);
    if (c->counters.cells)
        kz_counters_fini(&c->counters);
    kz_allocator a = c->alloc;
    kz_free(&a, c, sizeof *c);
}

/* Forgets the session's world: its tables (freed), prediction, render
 * clock and kick text. Not the intent, the events, or the reconnect,
 * uplink and failover trackers (each has its own reset). */
static void session_forget(kz_client *c)
{
    if (c->block)
        kz_free(&c->alloc, c->block, c->block_size);
    c->block = NULL;
    c->block_size = 0;
    memset(c->kick_text, 0, sizeof c->kick_text);
    memset(&c->welcome, 0, sizeof c->welcome);
    memset(&c->codec, 0, sizeof c->codec);
    c->views = NULL;
    memset(&c->scratch, 0, sizeof c->scratch);
    c->change = NULL;
    c->badges = NULL;
    c->slots = NULL;
    c->gone_id = NULL;
    c->gone_badge = NULL;
    c->gone_next = 0;
    c->newest = 0;
    memset(&c->ticker, 0, sizeof c->ticker);
    c->ticking = 0;
    c->cmd_tick = 0;
    memset(c->cmds, 0, sizeof c->cmds);
    memset(c->cmd_sent, 0, sizeof c->cmd_sent);
    memset(c->predicted, 0, sizeof c->predicted);
    memset(&c->self, 0, sizeof c->self);
    c->self_known = 0;
    c->flagged_cmd = 0;
    c->have_offset = 0;
    c->offset_ns = 0;
}

int kz_client_connect(kz_client *c, const kz_connect_token *token, kz_time_ns now)
{
    if (c->state == KZ_CLIENT_CONNECTING || c->state == KZ_CLIENT_CONNECTED ||
        c->state == KZ_CLIENT_RECONNECTING)
        return KZ_ESTATE;
    if (c->net)
        kz_netclient_destroy(c->net);
    c->net = NULL;
    /* A new session: the previous one's tables and prediction go (events
     * not yet polled stay), and so does the intent. */
    session_forget(c);
    memset(&c->intent, 0, sizeof c->intent);
    reconnect_reset(&c->reconnect);
    uplink_reset(&c->uplink);
    int rc = kz__netclient_open(&c->cfg.net, token, &c->net);
    if (rc != KZ_OK)
        return rc;
    failover_reset(&c->failover, kz_netclient_serial(c->net));
    c->state = KZ_CLIENT_CONNECTING;
    c->reason = 0;
    c->now = now;
    return KZ_OK;
}

/* ---- events ------------------------------------------------------------- */

static void push_event(kz_client *c, uint32_t type, uint32_t entity, uint32_t code,
                       const void *data, uint32_t len, const kz_badge *badge)
{
    if (c->ev_count == c->cfg.event_capacity) {
        c->ev_head = (c->ev_head + 1u) % c->cfg.event_capacity;
        c->ev_count--;
        kz_counter_inc(c->c, KZ_CLIENT_C_EVENTS_DROPPED);
    }
    uint32_t i = (c->ev_head + c->ev_count) % c->cfg.event_capacity;
    kz_client_event *ev = &c->evq[i];
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->entity = entity;
    ev->code = code;
    if (len > KZ__EV_DATA)
        len = KZ__EV_DATA;
    ev->len = len;
    if (len)
        memcpy(c->evdata + (size_t)i * KZ__EV_DATA, data, len);
    if (badge)
        ev->badge = *badge;
    c->ev_count++;
}

int kz_client_poll_event(kz_client *c, kz_client_event *ev)
{
    if (!c->ev_count)
        return KZ_EEMPTY;
    uint32_t i = c->ev_head;
    *ev = c->evq[i];
    memcpy(c->polled, c->evdata + (size_t)i * KZ__EV_DATA, ev->len);
    ev->data = ev->len ? c->polled : NULL;
    c->ev_head = (c->ev_head + 1u) % c->cfg.event_capacity;
    c->ev_count--;
    return KZ_OK;
}

/* ---- welcome: size the view tables -------------------------------------- */

/* Slots and history views the client keeps: none for a header-only client,
 * which never decodes a body. */
static uint32_t view_slots(const kz_client *c)
{
    return c->cfg.header_only ? 0 : c->welcome.n_slots;
}

static uint32_t view_history(const kz_client *c)
{
    return c->cfg.header_only ? 0 : c->welcome.history;
}

static size_t layout(kz_client *c, uint8_t *base)
{
    size_t off = 0;
    uint32_t ns = view_slots(c), h = view_history(c);
#define KZ__ARR(ptr, count) KZ__LAYOUT(off, base, ptr, count, 64u)
    KZ__ARR(c->views, h);
    KZ__ARR(c->scratch.slot, ns);
    KZ__ARR(c->scratch.state, ns);
    KZ__ARR(c->change, ns);
    KZ__ARR(c->badges, ns);
    KZ__ARR(c->slots, ns);
    KZ__ARR(c->gone_id, ns);
    KZ__ARR(c->gone_badge, ns);
    for (uint32_t k = 0; k < h; k++) {
        kz_snap_view dv;
        kz_snap_view *v = base ? &c->views[k] : &dv;
        KZ__ARR(v->slot, ns);
        KZ__ARR(v->state, ns);
    }
#undef KZ__ARR
    return off + 64u;
}

/* Sizes the tables for welcome `w` and enters the world (CONNECTED). */
static void take_welcome(kz_client *c, const kz_wire_welcome *w0)
{
    kz_wire_welcome w = *w0;
    if (kz_snap_codec_init(&c->codec, w.tick_hz, w.n_slots, w.bound) != KZ_OK) {
        kz_counter_inc(c->c, KZ_CLIENT_C_DROP_MALFORMED);
        return;
    }
    c->welcome = w;
    c->block_size = layout(c, NULL);
    c->block = kz_calloc(&c->alloc, c->block_size, 64);
    if (!c->block) {
        kz_logf(&c->cfg.net.log, KZ_LOG_ERROR, "client", "no memory for the view tables");
        c->state = KZ_CLIENT_FAILED;
        return;
    }
    layout(c, c->block);
    c->scratch.cap = view_slots(c);
    for (uint32_t k = 0; k < view_history(c); k++)
        c->views[k].cap = view_slots(c);
    memset(&c->self, 0, sizeof c->self);
    c->self.entity = w.self;
    c->self.kind = KZ_KIND_AVATAR;
    if (kz_ticker_init(&c->ticker, w.tick_hz, 4, c->now) == KZ_OK)
        c->ticking = 1;
    c->state = KZ_CLIENT_CONNECTED;
    push_event(c, KZ_EV_CONNECTED, w.self, 0, NULL, 0, NULL);
}

/* ---- snapshots ---------------------------------------------------------- */

/* A snapshot acknowledged input tick `input_tick`: when it advanced, the
 * server takes our inputs (a resume of a broken uplink is over). The
 * inputs still pending count from now. */
static void note_ack(kz_client *c, uint32_t input_tick)
{
    kz__uplink *u = &c->uplink;
    if (input_tick <= u->acked)
        return;
    u->acked = input_tick;
    u->acked_at = c->now;
    /* The input latency, when the command is still in the ring: it was
     * sent by this session's uplink at cmd_sent (a command resent after a
     * resume keeps its first time: what the player waited). */
    uint32_t slot = input_tick % KZ__CMD_RING;
    if (c->cmds[slot].tick == input_tick && c->cmd_sent[slot] && c->now >= c->cmd_sent[slot]) {
        u->latency_tick = input_tick;
        u->latency = c->now - c->cmd_sent[slot];
    }
    u->unacked_since = c->cmd_tick > input_tick ? c->now : 0;
    kz__netclient_uplink_ok(c->net);
}

static void badge_copy(kz_badge *out, const kz_snap_badge *in)
{
    memset(out, 0, sizeof *out);
    out->verification_level = in->verification_level;
    out->actor_kind = in->actor_kind;
    out->acting_for = in->acting_for;
    memcpy(out->method, in->method, sizeof out->method - 1);
    memcpy(out->name, in->name, sizeof out->name - 1);
}

static kz__sample *newest_sample(kz__vslot *v)
{
    return v->n ? &v->s[(v->head + KZ__SAMPLES - 1u) % KZ__SAMPLES] : NULL;
}

static void push_sample(kz__vslot *v, uint32_t tick, const kz_snap_state *st)
{
    kz__sample *smp = &v->s[v->head];
    smp->tick = smp->end = tick;
    smp->st = *st;
    v->head = (v->head + 1u) % KZ__SAMPLES;
    if (v->n < KZ__SAMPLES)
        v->n++;
}

static void remember_badge(kz_client *c, uint32_t entity, const kz_badge *b)
{
    c->gone_id[c->gone_next] = entity;
    c->gone_badge[c->gone_next] = *b;
    c->gone_next = (c->gone_next + 1u) % c->welcome.n_slots;
}

static void recall_badge(const kz_client *c, uint32_t entity, kz_badge *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < c->welcome.n_slots; i++)
        if (c->gone_id[i] == entity) {
            *out = c->gone_badge[i];
            return;
        }
}

/* Brings the slot table up to the decoded view: leaves, enters, samples. */
static void apply_view(kz_client *c, const kz_snap_view *v)
{
    uint32_t j = 0;
    for (uint32_t k = 0; k < c->welcome.n_slots; k++) {
        kz__vslot *vs = &c->slots[k];
        const kz_snap_state *st = NULL;
        uint8_t ch = KZ_SNAP_SAME;
        if (j < v->count && v->slot[j] == k) {
            st = &v->state[j];
            ch = c->change[j];
            j++;
        }
        if (vs->entity && (!st || st->entity != vs->entity)) {
            if (vs->carried && !st)
                continue; /* not in the new session's view yet (carry_over) */
            push_event(c, KZ_EV_LEAVE, vs->entity, 0, NULL, 0, NULL);
            remember_badge(c, vs->entity, &vs->badge);
            vs->entity = 0;
            vs->carried = 0;
        }
        if (!st)
            continue;
        if (!vs->entity) {
            vs->entity = st->entity;
            vs->n = vs->head = 0;
            if (ch == KZ_SNAP_ENTER)
                badge_copy(&vs->badge, &c->badges[k]);
            else
                recall_badge(c, st->entity, &vs->badge);
            push_sample(vs, v->tick, st);
            push_event(c, KZ_EV_ENTER, st->entity, 0, NULL, 0, &vs->badge);
            continue;
        }
        kz__sample *last = newest_sample(vs);
        if (memcmp(&last->st, st, sizeof *st) == 0)
            last->end = v->tick;          /* still the same: holds through this tick */
        else if (ch != KZ_SNAP_SAME)
            push_sample(vs, v->tick, st); /* new information */
        /* else: a change the server deferred; the view shows the older
         * baseline state, which is not news. */
    }
}

/* ---- failover: a new session through another server ------------------- */

static void leave_slot(kz_client *c, kz__vslot *vs)
{
    push_event(c, KZ_EV_LEAVE, vs->entity, 0, NULL, 0, NULL);
    remember_badge(c, vs->entity, &vs->badge);
    vs->entity = 0;
    vs->carried = 0;
}

static void swap_slots(kz_client *c, uint32_t a, uint32_t b)
{
    kz__vslot t = c->slots[a];
    c->slots[a] = c->slots[b];
    c->slots[b] = t;
}

/* Whether view `v` (slots ascending) uses slot `k`. */
static int view_uses(const kz_snap_view *v, uint32_t k)
{
    uint32_t lo = 0, hi = v->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2u;
        if (v->slot[mid] < k)
            lo = mid + 1u;
        else
            hi = mid;
    }
    return lo < v->count && v->slot[lo] == k;
}

/* The slot of carried entity `id`, or n_slots. */
static uint32_t carried_at(const kz_client *c, uint32_t id)
{
    for (uint32_t k = 0; k < c->welcome.n_slots; k++)
        if (c->slots[k].carried && c->slots[k].entity == id)
            return k;
    return c->welcome.n_slots;
}

/* Carried slot `k` is wanted by view `v` for another entity: its entity
 * moves to a free slot the view does not use, or leaves if none is left. */
static void make_room(kz_client *c, const kz_snap_view *v, uint32_t k)
{
    for (uint32_t f = 0; f < c->welcome.n_slots; f++)
        if (!c->slots[f].entity && !view_uses(v, f)) {
            swap_slots(c, k, f);
            return;
        }
    leave_slot(c, &c->slots[k]);
}

/* The new session numbers its view slots afresh: each entity of the old
 * view that the new one holds moves to the slot the new one gives it, so
 * apply_view takes it as the entity it was (no LEAVE, no ENTER, its
 * samples kept: it moves on smoothly from where it was last seen).
 * Carried entities the view does not hold yet stay where they are. */
static void carry_over(kz_client *c, const kz_snap_view *v)
{
    uint32_t none = c->welcome.n_slots;
    for (uint32_t j = 0; j < v->count; j++) {
        uint32_t k = v->slot[j], id = v->state[j].entity;
        kz__vslot *dst = &c->slots[k];
        if (dst->entity == id) {
            dst->carried = 0;
            continue;
        }
        uint32_t from = carried_at(c, id);
        if (dst->entity && dst->carried)
            make_room(c, v, k);
        else if (dst->entity && from != none)
            leave_slot(c, dst); /* replaced in the new view, as apply_view would */
        if (from != none) {
            swap_slots(c, k, from);
            c->slots[k].carried = 0;
        }
    }
    uint32_t left = 0;
    for (uint32_t k = 0; k < none; k++)
        left += c->slots[k].carried;
    c->failover.carrying = left != 0;
}

/* The carry's time is over: what the new session has not shown leaves. */
static void carry_expire(kz_client *c)
{
    kz__failover *f = &c->failover;
    if (!f->carrying || c->now < f->carry_until)
        return;
    for (uint32_t k = 0; k < view_slots(c); k++)
        if (c->slots[k].carried)
            leave_slot(c, &c->slots[k]);
    f->carrying = 0;
}

/* The transport now delivers session `serial`: a failover. Until its
 * WELCOME, its snapshots wait; its views start from nothing, so the old
 * session's baselines and acknowledgement go. */
static void new_session(kz_client *c, uint32_t serial)
{
    kz__failover *f = &c->failover;
    f->serial = serial;
    if (!c->block)
        return; /* no WELCOME yet: the new session's is simply the first */
    f->awaiting = 1;
    f->old_newest = c->newest;
    c->newest = 0;
    for (uint32_t k = 0; k < view_history(c); k++) {
        c->views[k].tick = 0;
        c->views[k].count = 0;
    }
}

/* Whether the new session's WELCOME `w` continues the world and avatar
 * the client had: the same own entity, the same settings (so the same
 * tables), and a tick not before the old session's newest (one world's
 * authority numbers the ticks every server of it sends). */
static int same_world(const kz_client *c, const kz_wire_welcome *w)
{
    const kz_wire_welcome *o = &c->welcome;
    return w->self == o->self && w->version == o->version && w->tick_hz == o->tick_hz &&
           w->n_slots == o->n_slots && w->history == o->history && w->bound == o->bound &&
           w->max_speed == o->max_speed && w->tick >= c->failover.old_newest;
}

/* The WELCOME of a new session after a failover. The same avatar in the
 * same world: everything the application sees carries on (prediction,
 * the commands' numbering, the render clock, the entities in view, which
 * are carried while the new views fill up) and it hears KZ_EV_RESUMED.
 * Otherwise (the world let the avatar go before the client came back, and
 * made a new one; or other settings) it is a fresh connect: LEAVE for
 * every entity in view, then CONNECTED with the new own avatar. */
static void welcome_again(kz_client *c, const kz_wire_welcome *w)
{
    kz__failover *f = &c->failover;
    uint32_t ms = ms_between(c->reconnect.broken_since, kz_netclient_last_heard(c->net));
    f->awaiting = 0;
    reconnect_reset(&c->reconnect);
    c->uplink.unacked_since = 0; /* the inputs before the break are not waited for */
    if (same_world(c, w)) {
        c->welcome.tick = w->tick;
        f->carrying = 0;
        for (uint32_t k = 0; k < view_slots(c); k++) {
            c->slots[k].carried = c->slots[k].entity != 0;
            f->carrying |= c->slots[k].carried;
        }
        f->carry_until = c->now + (kz_time_ns)KZ__CARRY_MS * KZ_NS_PER_MS;
        c->state = KZ_CLIENT_CONNECTED;
        push_event(c, KZ_EV_RESUMED, c->self.entity, ms, NULL, 0, NULL);
        return;
    }
    kz_logf(&c->cfg.net.log, KZ_LOG_INFO, "client", "the world gave a new avatar: a fresh start");
    for (uint32_t k = 0; k < view_slots(c); k++)
        if (c->slots[k].entity)
            leave_slot(c, &c->slots[k]);
    session_forget(c);
    uplink_reset(&c->uplink);
    failover_reset(f, f->serial);
    take_welcome(c, w);
}

static void on_welcome(kz_client *c, const uint8_t *p, uint32_t len)
{
    kz_wire_welcome w;
    if ((c->block && !c->failover.awaiting) || kz_wire_welcome_read(p, len, &w) != KZ_OK) {
        kz_counter_inc(c->c, KZ_CLIENT_C_DROP_MALFORMED);
        return;
    }
    if (c->block)
        welcome_again(c, &w);
    else
        take_welcome(c, &w);
}

static double dist_mm(const kz_snap_state *a, const kz_snap_state *b)
{
    double d2 = 0;
    for (int i = 0; i < 3; i++) {
        double d = (double)(a->pos[i] - b->pos[i]) * 1000.0 / KZ_SNAP_POS_UNITS;
        d2 += d * d;
    }
    return sqrt(d2);
}

/* Server says where the own avatar is after command head->input_tick:
 * start from there and replay the newer commands. */
static void reconcile(kz_client *c, const kz_wire_snap_head *h)
{
    uint32_t t = h->input_tick;
    kz_snap_state base = h->self;
    base.entity = c->self.entity;
    base.kind = KZ_KIND_AVATAR;
    memcpy(base.rel, c->self.rel, sizeof base.rel);
    memcpy(base.rot, c->self.rot, sizeof base.rot);
    if (t && t <= c->cmd_tick && c->cmd_tick - t < KZ__CMD_RING &&
        c->cmds[t % KZ__CMD_RING].tick == t) {
        const kz_snap_state *mine = &c->predicted[t % KZ__CMD_RING];
        if (c->self_known && (memcmp(mine->pos, base.pos, sizeof base.pos) != 0 || h->corrected)) {
            kz_counter_inc(c->c, KZ_CLIENT_C_CORRECTIONS);
            push_event(c, KZ_EV_CORRECTION, c->self.entity, (uint32_t)lrint(dist_mm(mine, &base)),
                       NULL, 0, NULL);
        }
        memcpy(base.rel, mine->rel, sizeof base.rel);
        memcpy(base.rot, mine->rot, sizeof base.rot);
        c->predicted[t % KZ__CMD_RING] = base;
        for (uint32_t k = t + 1u, n = c->cmd_tick - t; n; k++, n--) {  /* counted: no wrap */
            kz_wire_integrate(&c->codec, &base, &c->cmds[k % KZ__CMD_RING]);
            c->predicted[k % KZ__CMD_RING] = base;
        }
    } else if (t > c->cmd_tick || c->cmd_tick - t >= KZ__CMD_RING) {
        /* Nothing to replay from (or a server ahead of us): take its word. */
    } else {
        for (uint32_t k = t + 1u, n = c->cmd_tick - t; n; k++, n--)
            if (c->cmds[k % KZ__CMD_RING].tick == k)
                kz_wire_integrate(&c->codec, &base, &c->cmds[k % KZ__CMD_RING]);
    }
    c->self = base;
    c->self_known = 1;
}

static void track_clock(kz_client *c, uint32_t tick)
{
    double period = 1e9 / c->welcome.tick_hz;
    double sample = (double)c->now - (double)tick * period;
    if (!c->have_offset || sample < c->offset_ns) {
        c->offset_ns = sample;  /* the fastest delivery seen bounds the offset */
        c->have_offset = 1;
    } else {
        c->offset_ns += (sample - c->offset_ns) * 0.002;  /* drift and route changes */
    }
}

/* Header-only clients: the server's word on the own avatar, taken as it
 * is, and its correction flag, reported once per command (the server keeps
 * the flag on the ticks that repeat a late command without standing in for
 * a new one). */
static void take_header(kz_client *c, const kz_wire_snap_head *h)
{
    if (h->corrected && h->input_tick != c->flagged_cmd) {
        c->flagged_cmd = h->input_tick;
        kz_counter_inc(c->c, KZ_CLIENT_C_CORRECTIONS);
        push_event(c, KZ_EV_CORRECTION, c->self.entity, 0, NULL, 0, NULL);
    }
    kz_snap_state self = h->self;
    self.entity = c->self.entity;
    self.kind = KZ_KIND_AVATAR;
    memset(self.rel, 0, sizeof self.rel);
    for (uint32_t p = 0; p < KZ_POSE_COUNT; p++)
        self.rot[p] = KZ_SNAP_ROT_REST;
    c->self = self;
    c->self_known = 1;
}

static void on_snapshot(kz_client *c, const uint8_t *p, uint32_t len)
{
    if (!c->block || c->failover.awaiting) {
        /* The welcome (reliable) was lost or is late: this one cannot be
         * read yet, and the next after the welcome will be. */
        kz_counter_inc(c->c, KZ_CLIENT_C_SNAPSHOTS_EARLY);
        return;
    }
    kz_bitreader r;
    kz_bitreader_init(&r, p, len);
    kz_wire_snap_head h;
    uint32_t tick, base_tick, older_tick;
    if (kz_wire_snap_head_read(&c->codec, &r, &h) != KZ_OK ||
        kz_snap_peek(&c->codec, &r, &tick, &base_tick) != KZ_OK ||
        kz_snap_peek_older(&c->codec, &r, &older_tick) != KZ_OK) {
        kz_counter_inc(c->c, KZ_CLIENT_C_DROP_MALFORMED);
        return;
    }
    if (tick <= c->newest) {
        kz_counter_inc(c->c, KZ_CLIENT_C_SNAPSHOTS_LATE);
        return;
    }
    note_ack(c, h.input_tick);
    if (c->cfg.header_only) {
        c->newest = tick;  /* acknowledged by the next input message */
        take_header(c, &h);
        track_clock(c, tick);
        kz_counter_inc(c->c, KZ_CLIENT_C_SNAPSHOTS);
        kz_counter_add(c->c, KZ_CLIENT_C_SNAPSHOT_BYTES, len);
        return;
    }
    const kz_snap_view *base = NULL;
    if (base_tick) {
        base = &c->views[base_tick % c->welcome.history];
        if (base->tick != base_tick || base_tick >= tick) {
            kz_counter_inc(c->c, KZ_CLIENT_C_SNAPSHOTS_NO_BASE);
            return;
        }
    }
    /* A second-order body also names an older view (one we acknowledged
     * before the baseline), held the same way. */
    const kz_snap_view *older = NULL;
    if (older_tick) {
        older = &c->views[older_tick % c->welcome.history];
        if (older->tick != older_tick || older_tick >= base_tick) {
            kz_counter_inc(c->c, KZ_CLIENT_C_SNAPSHOTS_NO_BASE);
            return;
        }
    }
    if (kz_snap_decode_older(&c->codec, &r, base, older, &c->scratch, c->change, c->badges) !=
        KZ_OK) {
        kz_counter_inc(c->c, KZ_CLIENT_C_DROP_MALFORMED);
        return;
    }
    kz_snap_view *dst = &c->views[tick % c->welcome.history];
    dst->tick = tick;
    dst->count = c->scratch.count;
    memcpy(dst->slot, c->scratch.slot, dst->count * sizeof *dst->slot);
    memcpy(dst->state, c->scratch.state, dst->count * sizeof *dst->state);
    c->newest = tick;
    if (c->failover.carrying)
        carry_over(c, dst);
    apply_view(c, dst);
    reconcile(c, &h);
    track_clock(c, tick);
    kz_counter_inc(c->c, KZ_CLIENT_C_SNAPSHOTS);
    kz_counter_add(c->c, KZ_CLIENT_C_SNAPSHOT_BYTES, len);
}

/* ---- relayed events ----------------------------------------------------- */

static void on_relay(kz_client *c, uint8_t type, const uint8_t *p, uint32_t len)
{
    if (len < KZ_RELAY_HEADER_BYTES) {
        kz_counter_inc(c->c, KZ_CLIENT_C_DROP_MALFORMED);
        return;
    }
    uint32_t from = kz_wire_get32(p);
    const uint8_t *body = p + KZ_RELAY_HEADER_BYTES;
    uint32_t n = len - KZ_RELAY_HEADER_BYTES;
    if (type == KZ_MSG_CHAT && n <= KZ_CHAT_MAX_BYTES && kz_utf8_valid(body, n))
        push_event(c, KZ_EV_CHAT, from, 0, body, n, NULL);
    else if (type == KZ_MSG_EMOTE && n == 2)
        push_event(c, KZ_EV_EMOTE, from, (uint32_t)(body[0] | body[1] << 8), NULL, 0, NULL);
    else if (type == KZ_MSG_VOICE && n <= KZ_VOICE_MAX_FRAME_BYTES)
        push_event(c, KZ_EV_VOICE, from, 0, body, n, NULL);
    else
        kz_counter_inc(c->c, KZ_CLIENT_C_DROP_MALFORMED);
}

static void on_notice(kz_client *c, const uint8_t *p, uint32_t len)
{
    if (len < 1 || len > 1 + KZ_NOTICE_MAX_BYTES || !kz_utf8_valid(p + 1, len - 1)) {
        kz_counter_inc(c->c, KZ_CLIENT_C_DROP_MALFORMED);
        return;
    }
    if (p[0] == KZ_NOTICE_KICK) {
        memcpy(c->kick_text, p + 1, len - 1);
        c->kick_text[len - 1] = 0;
    }
    push_event(c, KZ_EV_NOTICE, 0, p[0], p + 1, len - 1, NULL);
}

static void drain(kz_client *c)
{
    kz_netmsg m;
    while (kz_netclient_poll(c->net, &m) == KZ_OK) {
        if (m.kind != KZ_NETMSG_DATA)
            continue;
        if (kz_netclient_serial(c->net) != c->failover.serial)
            new_session(c, kz_netclient_serial(c->net));
        switch (m.type) {
        case KZ_MSG_WELCOME: on_welcome(c, m.data, m.len); break;
        case KZ_MSG_SNAPSHOT: on_snapshot(c, m.data, m.len); break;
        case KZ_MSG_CHAT:
        case KZ_MSG_EMOTE:
        case KZ_MSG_VOICE: on_relay(c, m.type, m.data, m.len); break;
        case KZ_MSG_NOTICE: on_notice(c, m.data, m.len); break;
        default: kz_counter_inc(c->c, KZ_CLIENT_C_DROP_MALFORMED); break;
        }
    }
}

/* ---- input ticks -------------------------------------------------------- */

/* Whether the server stands the avatar still by now: the path has been
 * broken for KZ_DETACH_SILENCE_MS, so the server has heard nothing for at
 * least that long and has detached the session (docs/PROTOCOL.md,
 * "Resume"). */
static int detached(const kz_client *c)
{
    return c->state == KZ_CLIENT_RECONNECTING &&
           c->now - c->reconnect.broken_since >= (kz_time_ns)KZ_DETACH_SILENCE_MS * KZ_NS_PER_MS &&
           c->now > c->reconnect.broken_since;
}

/* One input tick. While detached the command stands still (no movement,
 * the intent's pose and heading kept), both in the own prediction and in
 * what is sent: the server moves the avatar by none of the commands of
 * that time, so the avatar does not snap back once the session resumes. */
static void input_tick(kz_client *c)
{
    uint32_t t = ++c->cmd_tick;
    kz_wire_command *cmd = &c->cmds[t % KZ__CMD_RING];
    kz_wire_command_from(&c->intent, c->welcome.max_speed, cmd);
    cmd->tick = t;
    c->cmd_sent[t % KZ__CMD_RING] = c->now;
    if (detached(c)) {
        memset(cmd->move, 0, sizeof cmd->move);
        kz_counter_inc(c->c, KZ_CLIENT_C_INPUTS_DETACHED);
    }
    if (c->uplink.unacked_since == 0)
        c->uplink.unacked_since = c->now;
    if (!c->cfg.header_only) {  /* a header-only client does not predict */
        kz_wire_integrate(&c->codec, &c->self, cmd);
        c->predicted[t % KZ__CMD_RING] = c->self;
    }

    kz_wire_input in = {.ack = c->newest};
    uint32_t n = c->cfg.input_redundancy;
    if (n > t)
        n = t;
    for (uint32_t k = 0; k < n; k++)
        in.cmd[k] = c->cmds[(t - k) % KZ__CMD_RING];
    in.count = n;
    uint8_t buf[KZ_INPUT_MAX_BYTES];
    int len = kz_wire_input_write(&in, buf, sizeof buf);
    if (len > 0 && kz_netclient_send(c->net, KZ_CHANNEL_INPUT, KZ_MSG_INPUT, buf, (uint32_t)len) == KZ_OK)
        kz_counter_inc(c->c, KZ_CLIENT_C_INPUTS_SENT);
}

/* In the world: connected, or resuming a session the server keeps. */
static int in_world(const kz_client *c)
{
    return c->state == KZ_CLIENT_CONNECTED || c->state == KZ_CLIENT_RECONNECTING;
}

/* The input ticks due at c->now; returns how many ran. While the client
 * reconnects they keep running: the intent is still applied and sent,
 * and the server takes the commands once the session has moved. */
static uint32_t input_ticks(kz_client *c)
{
    if (!in_world(c) || !c->ticking)
        return 0;
    uint32_t due = kz_ticker_due(&c->ticker, c->now);
    for (uint32_t k = 0; k < due; k++)
        input_tick(c);
    return due;
}

/* Follows the transport's resume: RECONNECTING while it resumes, back to
 * CONNECTED when it is back. Before the welcome the client stays
 * CONNECTING throughout: there is no session in the world to tell about
 * yet. */
static void follow_resume(kz_client *c)
{
    uint32_t ns = kz_netclient_state(c->net);
    if (ns == KZ_NETCLIENT_RESUMING && c->state == KZ_CLIENT_CONNECTED) {
        c->state = KZ_CLIENT_RECONNECTING;
        c->reconnect.broken_since = kz_netclient_last_heard(c->net);
        push_event(c, KZ_EV_RECONNECTING, c->self.entity, 0, NULL, 0, NULL);
    } else if (ns == KZ_NETCLIENT_CONNECTED && c->state == KZ_CLIENT_RECONNECTING &&
               !c->failover.awaiting) {
        c->state = KZ_CLIENT_CONNECTED;
        uint32_t ms = ms_between(c->reconnect.broken_since, kz_netclient_last_heard(c->net));
        reconnect_reset(&c->reconnect);
        c->uplink.unacked_since = 0; /* the inputs before the break are not waited for */
        push_event(c, KZ_EV_RESUMED, c->self.entity, ms, NULL, 0, NULL);
    }
}

/* Inputs unacknowledged for the transport's resume silence while
 * snapshots still arrive: the uplink broke, which only we can see. The
 * break counts from the last acknowledgement. */
static void watch_uplink(kz_client *c)
{
    kz__uplink *u = &c->uplink;
    kz_time_ns silence = (kz_time_ns)kz__netclient_silence_ms(c->net) * KZ_NS_PER_MS;
    if (c->state != KZ_CLIENT_CONNECTED || u->unacked_since == 0 ||
        c->now < u->unacked_since || c->now - u->unacked_since < silence)
        return;
    kz_time_ns since = u->acked_at ? u->acked_at : u->unacked_since;
    if (!kz__netclient_resume_uplink(c->net, since))
        return;
    follow_resume(c);
    c->reconnect.broken_since = since;
}

uint32_t kz_client_update(kz_client *c, kz_time_ns now)
{
    if (!c->net || c->state == KZ_CLIENT_IDLE || c->state == KZ_CLIENT_DISCONNECTED ||
        c->state == KZ_CLIENT_FAILED)
        return c->state;
    if (now > c->now)
        c->now = now;
    /* A header-only client queues its inputs before the one transport pass
     * that sends them and receives: a load tester's bots spend most of
     * their time in receive calls that find nothing, and a second pass
     * per input tick is one more of those. Its acks are then one update
     * older, which costs the server nothing but a slightly older baseline. */
    if (c->cfg.header_only)
        (void)input_ticks(c);
    (void)kz_netclient_update(c->net, c->now);
    drain(c);
    carry_expire(c);
    uint32_t ns = kz_netclient_state(c->net);
    if (ns == KZ_NETCLIENT_DISCONNECTED || ns == KZ_NETCLIENT_FAILED) {
        c->reason = kz_netclient_reason(c->net);
        c->state = ns == KZ_NETCLIENT_FAILED && c->state == KZ_CLIENT_CONNECTING
                       ? KZ_CLIENT_FAILED
                       : KZ_CLIENT_DISCONNECTED;
        push_event(c, KZ_EV_DISCONNECTED, c->self.entity, c->reason, c->kick_text,
                   (uint32_t)strlen(c->kick_text), NULL);
        return c->state;
    }
    follow_resume(c);
    watch_uplink(c);
    if (!c->cfg.header_only && input_ticks(c) > 0) {
        (void)kz_netclient_update(c->net, c->now);  /* flush the input now */
        follow_resume(c);
    }
    return c->state;
}

int kz_client_rebind(kz_client *c, const char *local_ip)
{
    kz_address at;
    memset(&at, 0, sizeof at);
    if (local_ip) {
        if (inet_pton(AF_INET, local_ip, at.ip) != 1)
            return KZ_EINVAL;
        at.family = KZ_ADDR_IPV4;
    }
    if (!in_world(c))
        return KZ_ESTATE;
    int rc = kz_netclient_rebind(c->net, local_ip ? &at : NULL);
    if (rc == KZ_OK)
        follow_resume(c);
    return rc;
}

uint32_t kz_client_state(const kz_client *c) { return c->state; }
uint32_t kz_client_reason(const kz_client *c) { return c->reason; }
uint32_t kz_client_self_id(const kz_client *c) { return c->block ? c->welcome.self : 0; }
uint32_t kz_client_server_tick(const kz_client *c) { return c->newest; }

int kz_client_input_latency(const kz_client *c, uint32_t *tick, kz_time_ns *latency)
{
    KZ_ASSERT(c != NULL && tick != NULL && latency != NULL);
    *tick = c->uplink.latency_tick;
    *latency = c->uplink.latency;
    return c->uplink.latency_tick ? KZ_OK : KZ_EEMPTY;
}
const kz_counters *kz_client_counters(const kz_client *c) { return &c->counters; }
const kz_netclient *kz_client_net(const kz_client *c) { return c->net; }

int kz_client_send_input(kz_client *c, const kz_avatar_state *intent)
{
    if (!in_world(c))
        return KZ_ESTATE;
    c->intent = *intent;
    return KZ_OK;
}

/* ---- actions ------------------------------------------------------------ */

/* Also while reconnecting: the transport queues the message, and ENet
 * delivers the reliable ones once the session has moved. */
static int send_event(kz_client *c, uint8_t channel, uint8_t type, const void *p, uint32_t len)
{
    if (!in_world(c))
        return KZ_ESTATE;
    return kz_netclient_send(c->net, channel, type, p, len);
}

int kz_client_chat(kz_client *c, const char *text, uint32_t len)
{
    if (!text || len == 0 || len > KZ_CHAT_MAX_BYTES || !kz_utf8_valid((const uint8_t *)text, len))
        return KZ_EINVAL;
    return send_event(c, KZ_CHANNEL_EVENT, KZ_MSG_CHAT, text, len);
}

int kz_client_emote(kz_client *c, uint16_t emote)
{
    uint8_t b[2] = {(uint8_t)emote, (uint8_t)(emote >> 8)};
    return send_event(c, KZ_CHANNEL_EVENT, KZ_MSG_EMOTE, b, 2);
}

int kz_client_voice(kz_client *c, const void *frame, uint32_t len)
{
    if (!frame || len == 0 || len > KZ_VOICE_MAX_FRAME_BYTES)
        return KZ_EINVAL;
    return send_event(c, KZ_CHANNEL_VOICE, KZ_MSG_VOICE, frame, len);
}

static int action(kz_client *c, uint8_t code, uint32_t object)
{
    uint8_t b[KZ_ACTION_BYTES] = {code};
    kz_wire_put32(b + 1, object);
    return send_event(c, KZ_CHANNEL_EVENT, KZ_MSG_ACTION, b, sizeof b);
}

int kz_client_grab(kz_client *c, uint32_t object) { return action(c, KZ_ACTION_GRAB, object); }
int kz_client_release(kz_client *c, uint32_t object) { return action(c, KZ_ACTION_RELEASE, object); }

int kz_client_admin(kz_client *c, uint32_t action, uint32_t target)
{
    uint8_t b[KZ_ADMIN_BYTES] = {(uint8_t)action};
    kz_wire_put32(b + 1, target);
    return send_event(c, KZ_CHANNEL_EVENT, KZ_MSG_ADMIN, b, sizeof b);
}

int kz_client_teleport(kz_client *c, uint32_t portal) { return action(c, KZ_ACTION_TELEPORT, portal); }

int kz_client_personal_space(kz_client *c, uint32_t on)
{
    uint8_t b = on ? 1 : 0;
    return send_event(c, KZ_CHANNEL_EVENT, KZ_MSG_PREFS, &b, 1);
}

int kz_client_block(kz_client *c, uint32_t entity, uint32_t on)
{
    uint8_t b[KZ_BLOCK_BYTES] = {on ? KZ_BLOCK_ADD : KZ_BLOCK_REMOVE};
    kz_wire_put32(b + 1, entity);
    return send_event(c, KZ_CHANNEL_EVENT, KZ_MSG_BLOCK, b, sizeof b);
}

/* ---- reading the world -------------------------------------------------- */

int kz_client_self(const kz_client *c, kz_avatar_state *out)
{
    if (!c->block || !c->self_known)
        return KZ_ESTATE;
    kz_snap_dequantize(&c->codec, &c->self, out);
    return KZ_OK;
}

double kz_client_render_tick(const kz_client *c)
{
    if (!c->have_offset)
        return 0.0;
    double period = 1e9 / c->welcome.tick_hz;
    double t = ((double)c->now - c->offset_ns - c->cfg.interp_delay_ms * 1e6) / period;
    return t > 0 ? t : 0;
}

static void lerp_state(const kz_client *c, const kz_snap_state *a, const kz_snap_state *b,
                       double f, kz_avatar_state *out)
{
    kz_avatar_state sa, sb;
    kz_snap_dequantize(&c->codec, a, &sa);
    if (f <= 0 || !b) {
        *out = sa;
        return;
    }
    kz_snap_dequantize(&c->codec, b, &sb);
    *out = sa;
    float g = (float)f;
    for (int i = 0; i < 3; i++) {
        out->pos[i] = sa.pos[i] + (sb.pos[i] - sa.pos[i]) * g;
        out->vel[i] = sa.vel[i] + (sb.vel[i] - sa.vel[i]) * g;
    }
    float dy = remainderf(sb.yaw - sa.yaw, 6.2831853f);
    out->yaw = sa.yaw + dy * g;
    for (uint32_t p = 0; p < KZ_POSE_COUNT; p++) {
        float dot = 0, q[4];
        for (int i = 0; i < 3; i++)
            out->pose[p].pos[i] = sa.pose[p].pos[i] + (sb.pose[p].pos[i] - sa.pose[p].pos[i]) * g;
        for (int i = 0; i < 4; i++)
            dot += sa.pose[p].rot[i] * sb.pose[p].rot[i];
        float sgn = dot < 0 ? -1.0f : 1.0f, n = 0;
        for (int i = 0; i < 4; i++) {
            q[i] = sa.pose[p].rot[i] + (sgn * sb.pose[p].rot[i] - sa.pose[p].rot[i]) * g;
            n += q[i] * q[i];
        }
        n = n > 0 ? 1.0f / sqrtf(n) : 0;
        for (int i = 0; i < 4; i++)
            out->pose[p].rot[i] = n > 0 ? q[i] * n : (i == 3 ? 1.0f : 0.0f);
    }
}

/* Beyond the newest sample (snapshots lost or late past the render delay):
 * carry the entity on at its velocity with the server's own integer step,
 * which is exact while it keeps going straight, for at most
 * KZ__EXTRAPOLATE_MS; then hold. */
static void extrapolate(const kz_client *c, const kz__sample *last, double tick, kz_avatar_state *out)
{
    double max_ticks = KZ__EXTRAPOLATE_MS * c->welcome.tick_hz / 1000.0;
    double d = tick - (double)last->end;
    if (d > max_ticks)
        d = max_ticks;
    int32_t whole = (int32_t)d;
    double frac = d - whole;
    kz_snap_state x = last->st;
    int32_t step[3];
    for (int i = 0; i < 3; i++) {
        step[i] = kz_wire_step(&c->codec, x.vel[i]);
        int64_t p = (int64_t)x.pos[i] + (int64_t)step[i] * whole;
        if (p > c->codec.pos_max)
            p = c->codec.pos_max;
        if (p < -(int64_t)c->codec.pos_max)
            p = -(int64_t)c->codec.pos_max;
        x.pos[i] = (int32_t)p;
    }
    lerp_state(c, &x, NULL, 0, out);
    for (int i = 0; i < 3; i++)
        out->pos[i] += (float)(frac * step[i] / KZ_SNAP_POS_UNITS);
}

/* The slot's state at `tick`: exact within a sample's hold range, linear
 * between one sample's last tick and the next sample's first, extrapolated
 * briefly after the newest, held before the oldest. */
static void sample_at(const kz_client *c, const kz__vslot *v, double tick, kz_avatar_state *out)
{
    const kz__sample *prev = NULL, *next = NULL;
    for (uint32_t i = 0; i < v->n; i++) {
        const kz__sample *s = &v->s[(v->head + KZ__SAMPLES - v->n + i) % KZ__SAMPLES];
        if ((double)s->tick <= tick)
            prev = s;
        else if (!next)
            next = s;
    }
    if (!prev) {
        lerp_state(c, &next->st, NULL, 0, out);
        return;
    }
    if (tick <= (double)prev->end) {
        lerp_state(c, &prev->st, NULL, 0, out);
        return;
    }
    if (!next) {
        extrapolate(c, prev, tick, out);
        return;
    }
    double f = (tick - prev->end) / (double)(next->tick - prev->end);
    lerp_state(c, &prev->st, &next->st, f, out);
}

static const kz__vslot *find_slot(const kz_client *c, uint32_t id)
{
    if (!c->block || id == 0)
        return NULL;
    for (uint32_t k = 0; k < view_slots(c); k++)
        if (c->slots[k].entity == id)
            return &c->slots[k];
    return NULL;
}

/* Tick of the oldest sample the slot holds. */
static uint32_t first_tick(const kz__vslot *v)
{
    return v->s[(v->head + KZ__SAMPLES - v->n) % KZ__SAMPLES].tick;
}

int kz_client_entity_at(const kz_client *c, uint32_t id, double tick, kz_avatar_state *out)
{
    const kz__vslot *v = find_slot(c, id);
    if (!v || !v->n)
        return KZ_EINVAL;
    if (tick < (double)first_tick(v))
        return KZ_ERANGE;
    sample_at(c, v, tick, out);
    return KZ_OK;
}

int kz_client_badge(const kz_client *c, uint32_t id, kz_badge *out)
{
    const kz__vslot *v = find_slot(c, id);
    if (!v)
        return KZ_EINVAL;
    *out = v->badge;
    return KZ_OK;
}

uint32_t kz_client_view(const kz_client *c, kz_client_entity *out, uint32_t cap)
{
    if (!c->block)
        return 0;
    double t = kz_client_render_tick(c);
    uint32_t n = 0;
    for (uint32_t k = 0; k < view_slots(c); k++) {
        const kz__vslot *v = &c->slots[k];
        if (!v->entity || !v->n || t < (double)first_tick(v))
            continue;  /* not yet in view at render time */
        if (n < cap) {
            out[n].id = v->entity;
            out[n].reserved = 0;
            sample_at(c, v, t, &out[n].state);
        }
        n++;
    }
    return n;
}
