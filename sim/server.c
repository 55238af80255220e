/*
 * kz_server: lifecycle, sessions and the messages clients send. The tick
 * itself (inputs, world step, interest, snapshots) is in server_tick.c.
 *
 * Every message from a client is checked before it touches the world: its
 * length and codes by the sim/wire.h decoders, its rate by a per-sender
 * token bucket. A bad message is dropped and counted, never fatal.
 */
#include "sim/server_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include <kizuna/utf8.h>

#include "net/netserver_work.h"
#include "net/token_claims.h"
#include "sim/fleet_impl.h"
#include "sim/layout.h"

static const char *const kz__world_counter_names[KZ_WORLD_C_COUNT] = {
#define KZ__WORLD_NAME(id, name) name,
    KZ_WORLD_COUNTERS(KZ__WORLD_NAME)
#undef KZ__WORLD_NAME
};

void kz_server_config_default(kz_server_config *cfg)
{
    kz_netserver_config net = cfg->net;
    memset(cfg, 0, sizeof *cfg);
    cfg->net = net;
    cfg->tick_hz = 30;
    cfg->world_bound = 4096.0f;
    cfg->view_radius = 50.0f;
    cfg->view_hysteresis = 5.0f;
    cfg->max_visible = 100;
    cfg->max_objects = 64;
    cfg->snapshot_history = 16;
    cfg->bytes_per_second = 40000;
    cfg->max_speed = 8.0f;
    cfg->grab_reach = 2.0f;
    cfg->voice_radius = 25.0f;
    cfg->voice_bytes_per_second = 8000;
    cfg->chat_per_second = 4;
    cfg->spawn_radius = 100.0f;
    cfg->interest_period = 3;
    cfg->moderator_role = "moderator";
    cfg->personal_space = 1.2f;
    cfg->admin_role = "admin";
}

/* Zero fields take their defaults; returns 0 or KZ_EINVAL. */
static int resolve_config(kz_server_config *cfg)
{
    kz_server_config d = {0};
    kz_server_config_default(&d);
#define KZ__DEF(f) \
    if (cfg->f == 0) \
        cfg->f = d.f;
    KZ__DEF(tick_hz) KZ__DEF(world_bound) KZ__DEF(view_radius) KZ__DEF(max_visible)
    KZ__DEF(max_objects) KZ__DEF(snapshot_history) KZ__DEF(bytes_per_second)
    KZ__DEF(max_speed) KZ__DEF(grab_reach) KZ__DEF(voice_radius)
    KZ__DEF(voice_bytes_per_second) KZ__DEF(chat_per_second) KZ__DEF(spawn_radius)
    KZ__DEF(interest_period) KZ__DEF(moderator_role) KZ__DEF(admin_role)
    KZ__DEF(personal_space)
#undef KZ__DEF
    if (cfg->tick_hz < 10 || cfg->tick_hz > 128 || cfg->net.max_clients == 0)
        return KZ_EINVAL;
    if (cfg->max_visible > KZ_INTEREST_MAX_VISIBLE || cfg->interest_period > 16 ||
        cfg->snapshot_history < 4 ||
        cfg->snapshot_history > 64)
        return KZ_EINVAL;
    if (!(cfg->world_bound > 0 && cfg->world_bound <= KZ_SNAP_MAX_BOUND) ||
        !(cfg->max_speed > 0 && cfg->max_speed < 100.0f) || !(cfg->view_radius > 0) ||
        !(cfg->view_hysteresis >= 0) || !(cfg->spawn_radius <= cfg->world_bound))
        return KZ_EINVAL;
    return KZ_OK;
}

/* ---- allocation --------------------------------------------------------- */

/* Lays out (or measures, when base is NULL) the arrays of both frames
 * (frame.h) in one block; returns its size. */
static size_t frames_layout(kz_server *s, uint8_t *base)
{
    size_t off = 0;
    uint32_t cap = s->world.cap, nc = s->sessions.max_clients, rows = s->rp.owner_rows;
#define KZ__ARR(ptr, count) KZ__LAYOUT(off, base, ptr, count, 64u)
    for (uint32_t k = 0; k < KZ__FRAMES; k++) {
        kz__frame *f = &s->rp.frames[k];
        KZ__ARR(f->ids, cap);
        KZ__ARR(f->rule, cap);
        KZ__ARR(f->zone, cap);
        KZ__ARR(f->owner, cap);
        KZ__ARR(f->importance, cap);
        KZ__ARR(f->badge, cap);
        KZ__ARR(f->badge_gen, cap);
        KZ__ARR(f->clients, rows);
        KZ__ARR(f->blocked, rows);
    }
    KZ__ARR(s->rp.last_host, nc);
    KZ__ARR(s->rp.last_tick, nc);
#undef KZ__ARR
    return off + 64u;
}

static int send_snapshot_now(void *ctx, uint32_t host, uint32_t slot, uint32_t serial,
                             const void *data, uint32_t len)
{
    return kz__netserver_send_now(ctx, host, slot, serial, KZ_CHANNEL_SNAPSHOT, KZ_MSG_SNAPSHOT,
                                  data, len);
}

static void flush_queued(void *ctx, uint32_t host)
{
    kz__netserver_flush_queued(ctx, host);
}

/* The views, the frames' grids and one replicator per I/O host. */
static int init_replication(kz_server *s, const kz_interest_config *ic)
{
    kz__replication *rp = &s->rp;
    kz__repl_world *w = &rp->w;
    w->codec = s->world.codec;
    w->cap = s->world.cap;
    w->max_clients = s->sessions.max_clients;
    w->n_slots = s->n_slots;
    w->history = s->history;
    w->rows = s->world.rows;
    w->tick_hz = s->cfg.tick_hz;
    w->bytes_per_second = s->cfg.bytes_per_second;
    w->interest_period = s->cfg.interest_period;
    w->interest = *ic;
    w->ring = s->world.image_ring;
    w->visible = s->cfg.visible;
    w->visible_ctx = s->cfg.visible_ctx;
    w->send = send_snapshot_now;
    w->flush = flush_queued;
    /* An authority replicates nothing: its edges do. */
    rp->n = s->role == KZ__ROLE_AUTHORITY ? 0u
                                          : s->cfg.net.io_threads ? s->cfg.net.io_threads : 1u;
    rp->stage.n = rp->n;
    rp->owner_rows = s->sessions.max_clients + (s->role == KZ__ROLE_EDGE ? s->world.cap : 0u);
    rp->frame_block_size = frames_layout(s, NULL);
    rp->frame_block = kz_calloc(&s->alloc, rp->frame_block_size, 64);
    if (!rp->frame_block)
        return KZ_ENOMEM;
    (void)frames_layout(s, rp->frame_block);
    w->views = kz_calloc(&s->alloc, (size_t)s->sessions.max_clients * sizeof *w->views, 64);
    rp->views_size = kz__view_footprint(w) * s->sessions.max_clients;
    /* Not zeroed: a view is reset when its slot's first session is
     * replicated (its serial, in w.views, starts at 0), and every other
     * array is written before it is read; the slots never used never
     * touch their pages. */
    rp->views = kz_alloc(&s->alloc, rp->views_size, 64);
    if (!w->views || !rp->views)
        return KZ_ENOMEM;
    kz__views_place(w, rp->views);
    for (uint32_t k = 0; k < KZ__FRAMES; k++)
        if (kz_grid_init(&rp->frames[k].grid, &s->world.grid.cfg, &s->alloc) != KZ_OK)
            return KZ_ENOMEM;
    for (uint32_t h = 0; h < rp->n; h++) {
        int rc = kz__replicator_init(&rp->r[h], w, h, kz_counters_block(&s->counters, 1u + h),
                                     &s->alloc);
        if (rc != KZ_OK)
            return rc;
    }
    return KZ_OK;
}

static void fini_replication(kz_server *s)
{
    kz__replication *rp = &s->rp;
    for (uint32_t h = 0; h < KZ__MAX_REPLICATORS; h++)
        kz__replicator_fini(&rp->r[h]);
    for (uint32_t k = 0; k < KZ__FRAMES; k++)
        if (rp->frames[k].grid.block)
            kz_grid_fini(&rp->frames[k].grid);
    if (rp->frame_block)
        kz_free(&s->alloc, rp->frame_block, rp->frame_block_size);
    rp->frame_block = NULL;
    if (rp->views)
        kz_free(&s->alloc, rp->views, rp->views_size);
    if (rp->w.views)
        kz_free(&s->alloc, rp->w.views, (size_t)s->sessions.max_clients * sizeof *rp->w.views);
    rp->views = NULL;
    rp->w.views = NULL;
}

/* The world store and the session table. */
static int init_world(kz_server *s, kz_interest_config *ic_out)
{
    const kz_server_config *cfg = &s->cfg;
    kz__world_limits lim = {
        .cap = cfg->net.max_clients + cfg->max_objects,
        .rows = KZ__RING_ROWS(cfg->snapshot_history),
        .tick_hz = cfg->tick_hz,
        .n_slots = cfg->max_visible,
        .bound = cfg->world_bound,
        .cell_size = cfg->view_radius + cfg->view_hysteresis,
    };
    if (lim.cell_size < 8.0f)
        lim.cell_size = 8.0f;
    kz_interest_config ic = {
        .radius = cfg->view_radius,
        .hysteresis = cfg->view_hysteresis,
        .max_visible = cfg->max_visible,
    };
    if (cfg->view_hysteresis == 0)
        ic.hysteresis = 1e-6f;  /* zero means "default" to the interest module */
    int rc = kz_interest_config_resolve(&ic);
    *ic_out = ic;
    if (rc == KZ_OK)
        rc = kz__world_init(&s->world, &lim, &s->alloc);
    if (rc == KZ_OK)
        rc = kz__sessions_init(&s->sessions, cfg->net.max_clients, lim.cap, &s->alloc);
    if (rc != KZ_OK)
        return rc;
    kz_hist_config hc;
    kz_hist_config_default(&hc);
    hc.highest = 10ull * 1000 * 1000 * 1000;
    if (kz_hist_init(&s->tick_ns, &hc, &s->alloc))
        return KZ_ENOMEM;
    /* One counter block for the simulation thread, one per replicator. */
    uint32_t hosts = cfg->net.io_threads ? cfg->net.io_threads : 1u;
    if (hosts > KZ__MAX_REPLICATORS ||
        kz_counters_init(&s->counters, KZ_WORLD_C_COUNT, 1u + hosts, kz__world_counter_names,
                         &s->alloc))
        return KZ_ENOMEM;
    s->c = kz_counters_block(&s->counters, 0);
    /* From zero, resolved once below: limits derived from the tick rate
     * (the input budget) must follow this world's rate, not the default's. */
    memset(&s->vcfg, 0, sizeof s->vcfg);
    s->vcfg.tick_hz = cfg->tick_hz;
    s->vcfg.max_speed = cfg->max_speed;
    s->vcfg.grab_reach = cfg->grab_reach;
    /* Zero keeps the validator's own default. */
#define KZ__LIMIT(f) \
    if (cfg->f != 0) \
        s->vcfg.f = cfg->f;
    KZ__LIMIT(max_accel) KZ__LIMIT(head_min) KZ__LIMIT(head_max) KZ__LIMIT(hand_reach)
    KZ__LIMIT(clock_tolerance) KZ__LIMIT(strike_half_life) KZ__LIMIT(kick_score)
#undef KZ__LIMIT
    /* The world's action rates are the validator's buckets: chat and
     * emotes burst to two seconds' worth, voice to one second's. */
    const kz_validate_rate chat = {(float)cfg->chat_per_second, 2.0f * (float)cfg->chat_per_second};
    s->vcfg.rate[KZ_VALIDATE_CHAT] = chat;
    s->vcfg.rate[KZ_VALIDATE_EMOTE] = chat;
    s->vcfg.rate[KZ_VALIDATE_VOICE] = (kz_validate_rate){(float)cfg->voice_bytes_per_second,
                                                         (float)cfg->voice_bytes_per_second};
    if (kz_validate_config_resolve(&s->vcfg))
        return KZ_EINVAL;
    return KZ_OK;
}

kz__fleet *kz__fleet_create(const kz__fleet_config *fc, uint32_t cap, uint32_t max_clients,
                            const kz_allocator *a);
void kz__fleet_destroy(kz__fleet *f);

/* A server alone (`fc` NULL) or in a fleet role. */
static kz_server *server_create(const kz_server_config *cfg_in, const kz__fleet_config *fc)
{
    kz_server_config cfg = *cfg_in;
    kz_allocator a = cfg.net.alloc;
    kz_allocator_resolve(&a);
    if (resolve_config(&cfg)) {
        kz_logf(&cfg.net.log, KZ_LOG_ERROR, "server", "invalid server configuration");
        sodium_memzero(&cfg.net.verifier.server_keys, sizeof cfg.net.verifier.server_keys);
        return NULL;
    }
    kz_server *s = kz_calloc(&a, sizeof *s, 64);
    if (!s) {
        sodium_memzero(&cfg.net.verifier.server_keys, sizeof cfg.net.verifier.server_keys);
        return NULL;
    }
    s->cfg = cfg;
    s->alloc = a;
    s->role = fc ? fc->role : KZ__ROLE_SINGLE;
    s->n_slots = cfg.max_visible;
    s->history = cfg.snapshot_history;
    s->rng = 0x9E3779B97F4A7C15ull ^ cfg.spawn_seed;
    kz_interest_config ic;
    int rc = cfg.net.max_clients + cfg.max_objects > KZ_ENTITY_MAX ? KZ_EINVAL
                                                                   : init_world(s, &ic);
    if (rc == KZ_OK)
        rc = init_replication(s, &ic);
    if (rc == KZ_OK && fc &&
        !(s->fleet = kz__fleet_create(fc, s->world.cap, s->sessions.max_clients, &a)))
        rc = KZ_EINVAL;
    if (rc != KZ_OK) {
        kz_logf(&cfg.net.log, KZ_LOG_ERROR, "server", "cannot set up the world tables: %s",
                kz_strerror(rc));
        sodium_memzero(&cfg.net.verifier.server_keys, sizeof cfg.net.verifier.server_keys);
        kz_server_destroy(s);
        return NULL;
    }
    if (s->role == KZ__ROLE_AUTHORITY) {
        /* No transport: its sessions come from its edges. */
        sodium_memzero(&cfg.net.verifier.server_keys, sizeof cfg.net.verifier.server_keys);
        sodium_memzero(&s->cfg.net.verifier.server_keys, sizeof s->cfg.net.verifier.server_keys);
        s->ticker.hz = 0;
        return s;
    }
    s->net = kz_netserver_create(&cfg.net);
    /* The transport keeps what it needs; the world never reads the server's
     * secret key, so no copy of it stays here. */
    sodium_memzero(&cfg.net.verifier.server_keys, sizeof cfg.net.verifier.server_keys);
    sodium_memzero(&s->cfg.net.verifier.server_keys, sizeof s->cfg.net.verifier.server_keys);
    if (!s->net) {
        kz_server_destroy(s);
        return NULL;
    }
    if (s->role == KZ__ROLE_EDGE)
        kz_netserver_set_accepting(s->net, 0);  /* until it holds the world (fleet_edge.c) */
    s->rp.w.send_ctx = s->net;
    s->rp.threaded = cfg.net.threaded != 0;
    if (s->rp.threaded)
        kz__netserver_set_work(s->net, kz__server_replicate_on, s);
    s->ticker.hz = 0;  /* started by the first step */
    return s;
}

kz_server *kz_server_create(const kz_server_config *cfg) { return server_create(cfg, NULL); }

kz_server *kz__fleet_server_create(const kz_server_config *cfg, const kz__fleet_config *fc)
{
    return fc ? server_create(cfg, fc) : NULL;
}

void kz_server_destroy(kz_server *s)
{
    if (!s)
        return;
    if (s->net)
        kz_netserver_destroy(s->net);  /* stops the I/O threads, and so the replicators */
    fini_replication(s);
    kz__fleet_destroy(s->fleet);
    kz__sessions_fini(&s->sessions);
    kz__world_fini(&s->world);
    if (s->counters.cells)
        kz_counters_fini(&s->counters);
    if (s->tick_ns.counts)
        kz_hist_fini(&s->tick_ns);
    sodium_memzero(&s->cfg.net.verifier.server_keys, sizeof s->cfg.net.verifier.server_keys);
    kz_allocator a = s->alloc;
    kz_free(&a, s, sizeof *s);
}

/* ---- sending ------------------------------------------------------------ */

void kz__server_send(kz_server *s, uint32_t slot, uint8_t channel, uint8_t type,
                     const void *data, uint32_t len)
{
    if (s->role == KZ__ROLE_AUTHORITY) {
        kz__fleet_send(s, slot, channel, type, data, len);
        return;
    }
    if (kz_netserver_send(s->net, slot, channel, type, data, len) != KZ_OK)
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_SEND);
}

/* Ends the transport session in `slot`: here, or at its edge. */
static int transport_kick(kz_server *s, uint32_t slot, uint32_t reason)
{
    if (s->role == KZ__ROLE_AUTHORITY)
        return kz__fleet_kick(s, slot, reason);
    return kz_netserver_kick(s->net, slot, reason);
}

int kz__seen(const kz_server *s, uint32_t slot, uint32_t idx)
{
    return kz__view_sees(&s->rp.w, slot, s->sessions.clients[slot].serial, idx);
}

/* ---- sampled reports ---------------------------------------------------- */

/* One event of a sampled stream: 1 when it may be reported (with *more =
 * the events left out since the last reported one), 0 when it is left out
 * and counted. */
static int sample(kz_server *s, kz__sampler *sm, uint32_t *more)
{
    if (!kz_validate_bucket_take(&sm->bucket, KZ__REPORTS_PER_SECOND, KZ__REPORTS_BURST, 1.0,
                                 s->now)) {
        sm->left_out++;
        kz_counter_inc(s->c, KZ_WORLD_C_REPORTS_SAMPLED);
        return 0;
    }
    *more = sm->left_out;
    sm->left_out = 0;
    return 1;
}

int kz__report_take(kz_server *s, kz__client *cl, unsigned kind, uint32_t *more)
{
    return sample(s, &cl->reports[kind], more);
}

/* Audit record type and log word of each report kind, for the closing
 * count of a session's left-out reports. */
static const struct {
    uint32_t audit_type;
    const char *word;
} report_kinds[KZ__REPORT_KINDS] = {
    [KZ__REPORT_ADMIN] = {KZ_AUDIT_ROLE_ACTION, "admin_refusals"},
    [KZ__REPORT_BLOCK] = {KZ_AUDIT_BLOCK, "blocks"},
    [KZ__REPORT_ZONE] = {KZ_AUDIT_ZONE_REFUSAL, "zone_refusals"},
    [KZ__REPORT_TELEPORT] = {KZ_AUDIT_VIOLATION, "teleport_refusals"},
};

/* At the end of a session: one record and one line per kind that left
 * reports out since its last one, so the log's totals are complete. */
static void reports_flush(kz_server *s, kz__client *cl)
{
    for (unsigned k = 0; k < KZ__REPORT_KINDS; k++) {
        uint32_t n = cl->reports[k].left_out;
        if (!n)
            continue;
        cl->reports[k].left_out = 0;
        char what[40];
        snprintf(what, sizeof what, "(and %u more not recorded)", n);
        kz__audit(s, report_kinds[k].audit_type, cl, 0, what);
        kz_logf(&s->cfg.net.log, KZ_LOG_INFO, "server", "client=%llu %s not logged: %u",
                (unsigned long long)cl->client_id, report_kinds[k].word, n);
    }
}

/* ---- sessions ----------------------------------------------------------- */

static uint64_t next_random(kz_server *s)
{
    /* splitmix64: spawn points only, not security. */
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float spawn_coord(kz_server *s)
{
    double u = (double)(next_random(s) >> 11) / 9007199254740992.0;
    return (float)((u * 2.0 - 1.0) * s->cfg.spawn_radius);
}

static void badge_from(kz_snap_badge *b, const kz_token_info *info)
{
    memset(b, 0, sizeof *b);
    b->verification_level = info->claims.verification_level;
    b->actor_kind = info->claims.actor_kind;
    b->acting_for = info->claims.acting_for;
    memcpy(b->method, info->claims.method, sizeof b->method - 1);
    memcpy(b->name, info->name, sizeof b->name - 1);
}


static void client_identity(kz__client *cl, const kz_token_info *info)
{
    cl->acting_for = info->claims.acting_for;
    cl->client_id = info->client_id;
    cl->verification_level = info->claims.verification_level;
    cl->actor_kind = info->claims.actor_kind;
    cl->n_roles = info->n_roles;
    memcpy(cl->roles, info->roles, sizeof cl->roles);
}

#define KZ__SPAWN_TRIES 16u   /* random points tried before the deterministic search */
#define KZ__SPAWN_GRID 32u    /* the search: a (GRID + 1)^2 lattice over the spawn square */

static int spawn_try(const kz_server *s, const kz__client *cl, float x, float z, int32_t out[3])
{
    int32_t p[3] = {(int32_t)lrintf(x * KZ_SNAP_POS_UNITS), 0, (int32_t)lrintf(z * KZ_SNAP_POS_UNITS)};
    if (!kz__may_be_at(s, cl, p))
        return 0;
    memcpy(out, p, sizeof p);
    return 1;
}

/*
 * A spawn point the client may stand at: random points of the spawn
 * square first; then every point of a lattice over it, from a random
 * start so that a crowded world does not pile everyone on one corner;
 * then the nearest allowed point to its centre if that lies within the
 * square. 0 when the spawn square has no place for this client.
 */
static int spawn_point(kz_server *s, const kz__client *cl, int32_t out[3])
{
    for (uint32_t k = 0; k < KZ__SPAWN_TRIES; k++) {
        float x = spawn_coord(s), z = spawn_coord(s);
        if (spawn_try(s, cl, x, z, out))
            return 1;
    }
    const uint32_t side = KZ__SPAWN_GRID + 1u, n = side * side;
    const float r = s->cfg.spawn_radius, step = 2.0f * r / (float)KZ__SPAWN_GRID;
    uint32_t start = (uint32_t)(next_random(s) % n);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t at = (start + k) % n;
        if (spawn_try(s, cl, -r + step * (float)(at % side), -r + step * (float)(at / side), out))
            return 1;
    }
    const int32_t centre[3] = {0, 0, 0};
    int32_t lim = (int32_t)lrintf(r * KZ_SNAP_POS_UNITS);
    return kz__nearest_allowed(s, cl, centre, out) && out[0] >= -lim && out[0] <= lim &&
           out[2] >= -lim && out[2] <= lim;
}

/* Tells the session in `slot`, which has no avatar, that no spawn point
 * admits it, and ends it: 0, or the transport's error (ring full). */
static int send_no_place(kz_server *s, uint32_t slot)
{
    static const char why[] = "no place in this world admits you: every spawn point is in a "
                              "zone you may not enter";
    uint8_t buf[sizeof why];
    buf[0] = KZ_NOTICE_KICK;
    memcpy(buf + 1, why, sizeof why - 1);
    kz__server_send(s, slot, KZ_CHANNEL_EVENT, KZ_MSG_NOTICE, buf, (uint32_t)sizeof why);
    return transport_kick(s, slot, KZ_KICK_NO_PLACE);
}

/* A connection no spawn point admits: told why and let go before it has
 * an avatar. The refusal is audited like a kick (the gate bounds how
 * often a client can connect); its log line is sampled world-wide. */
static void refuse_no_place(kz_server *s, uint32_t slot, kz__client *cl)
{
    cl->kicked = 1;  /* anything it sent before the disconnect is dropped */
    if (send_no_place(s, slot) != KZ_OK) {
        cl->owe_kick = 1;  /* outbound ring full: sent on a later step */
        s->sessions.owed_kicks++;
    }
    kz_counter_inc(s->c, KZ_WORLD_C_SPAWN_REFUSED);
    kz__audit(s, KZ_AUDIT_KICK, cl, KZ_KICK_NO_PLACE, "no place: every spawn point refused");
    uint32_t more = 0;
    if (sample(s, &s->spawn_reports, &more))
        kz_logf(&s->cfg.net.log, KZ_LOG_INFO, "server",
                "refused slot=%u client=%llu reason=no_place (and %u more)", slot,
                (unsigned long long)cl->client_id, more);
}

/* The WELCOME of the session in `slot` (its avatar made). */
static void send_welcome(kz_server *s, uint32_t slot, uint32_t self)
{
    kz_wire_welcome w = {
        .version = KZ_WORLD_VERSION,
        .tick_hz = s->cfg.tick_hz,
        .tick = s->tick,
        .self = self,
        .n_slots = s->n_slots,
        .history = s->history,
        .bound = s->cfg.world_bound,
        .max_speed = s->cfg.max_speed,
    };
    uint8_t buf[KZ_WELCOME_BYTES];
    kz_wire_welcome_write(&w, buf);
    kz__server_send(s, slot, KZ_CHANNEL_EVENT, KZ_MSG_WELCOME, buf, sizeof buf);
}

void kz__server_welcome(kz_server *s, uint32_t slot)
{
    send_welcome(s, slot, kz_entity_at(&s->world.ents, s->sessions.clients[slot].avatar).id);
}

/* The detail of a connect record: the verification method, and at an
 * authority first the edge that admitted the session (docs/AUDIT.md). */
static const char *connect_detail(const kz_server *s, uint32_t slot, const kz_token_info *info,
                                  char out[KZ_AUDIT_DETAIL_MAX])
{
    if (s->role != KZ__ROLE_AUTHORITY)
        return info->claims.method;
    snprintf(out, KZ_AUDIT_DETAIL_MAX, "edge %u: %.48s", (unsigned)(uint8_t)s->fleet->ws[slot].edge,
             info->claims.method);
    return out;
}

/* The detail of a path record at an authority: the edge now serving the
 * session (0: none, held). */
static const char *path_detail(const kz_server *s, uint32_t slot, char out[KZ_AUDIT_DETAIL_MAX])
{
    if (s->role != KZ__ROLE_AUTHORITY)
        return NULL;
    snprintf(out, KZ_AUDIT_DETAIL_MAX, "edge %u", (unsigned)(uint8_t)s->fleet->ws[slot].edge);
    return out;
}

/* An edge's new session: its avatar is the authority's to make. The
 * session is live (what it sends is forwarded) and replicated once the
 * authority names its avatar (sim/fleet_edge.c). */
static void edge_connect(kz_server *s, uint32_t slot, const kz_token_info *info, uint32_t serial,
                         uint32_t host)
{
    kz__client *cl = kz__session_reset(&s->sessions, slot, serial, host);
    client_identity(cl, info);
    uint8_t claims[KZ_BUS_CLAIMS_MAX];
    size_t n = kz__token_claims_write(info, claims, sizeof claims);
    if (!n) {
        (void)kz_netserver_kick(s->net, slot, KZ_KICK_ADMIN);
        return;
    }
    cl->live = 1;
    cl->avatar = KZ__NO_AVATAR;
    s->sessions.n_live++;
    kz__fleet_up(s, KZ_BUS_U_JOIN, 0, slot, serial, 0, claims, (uint32_t)n);
}

static void on_connect(kz_server *s, uint32_t slot, const kz_token_info *info, uint32_t serial,
                       uint32_t host)
{
    kz__client *cl = &s->sessions.clients[slot];
    if (cl->live) {
        kz_logf(&s->cfg.net.log, KZ_LOG_WARN, "server", "no room for the avatar of slot %u", slot);
        (void)transport_kick(s, slot, KZ_KICK_ADMIN);
        return;
    }
    if (s->role == KZ__ROLE_EDGE) {
        edge_connect(s, slot, info, serial, host);
        return;
    }
    (void)kz__session_reset(&s->sessions, slot, serial, host);
    client_identity(cl, info);
    char detail[KZ_AUDIT_DETAIL_MAX];
    int32_t at[3];
    if (!spawn_point(s, cl, at)) {
        refuse_no_place(s, slot, cl);
        return;
    }
    kz_entity e;
    if (kz_entity_create(&s->world.ents, &e) != KZ_OK) {
        kz_logf(&s->cfg.net.log, KZ_LOG_WARN, "server", "no room for the avatar of slot %u", slot);
        (void)transport_kick(s, slot, KZ_KICK_ADMIN);
        return;
    }
    uint32_t i = kz_entity_index(&s->world.ents, e);
    kz__world_rest(&s->world, i);
    s->world.kind[i] = KZ_KIND_AVATAR;
    s->world.owner[i] = slot + 1u;
    badge_from(&s->world.badge[i], info);
    s->world.badge_gen[i]++;
    memcpy(s->world.pos[i], at, sizeof at);
    if (kz_grid_insert(&s->world.grid, i, (float)s->world.pos[i][0] / KZ_SNAP_POS_UNITS,
                       (float)s->world.pos[i][2] / KZ_SNAP_POS_UNITS) != KZ_OK) {
        s->world.owner[i] = 0;
        (void)kz_entity_destroy(&s->world.ents, e);
        (void)transport_kick(s, slot, KZ_KICK_ADMIN);
        return;
    }
    cl->live = 1;
    cl->avatar = i;
    s->sessions.n_live++;
    if (s->draining) {
        /* Admitted by the gate just before it closed: told and let go like
         * everyone else (the kick is audited after the connect). */
        kz__audit(s, KZ_AUDIT_CONNECT, cl, 0, connect_detail(s, slot, info, detail));
        cl->told_shutdown = kz_server_kick(s, e.id, KZ_KICK_SHUTDOWN, s->drain_text) == KZ_OK;
        return;
    }

    send_welcome(s, slot, e.id);
    kz__audit(s, KZ_AUDIT_CONNECT, cl, 0, connect_detail(s, slot, info, detail));
    /* The name is the backend's, but any printable text: quoted so it
     * cannot end its value or add fields to a structured log. */
    char name[2 * sizeof s->world.badge[i].name];
    if (kz_log_enabled(&s->cfg.net.log, KZ_LOG_INFO))
        kz_logf(&s->cfg.net.log, KZ_LOG_INFO, "server",
                "joined slot=%u entity=%u client=%llu name=\"%s\" actor=%u verified=%u", slot,
                e.id, (unsigned long long)info->client_id,
                kz_log_quote(s->world.badge[i].name, name, sizeof name), info->claims.actor_kind,
                info->claims.verification_level);
}

static void on_disconnect(kz_server *s, uint32_t slot)
{
    kz__client *cl = &s->sessions.clients[slot];
    if (cl->owe_kick) {
        cl->owe_kick = 0;
        s->sessions.owed_kicks--;
    }
    if (!cl->live)
        return;
    if (s->role == KZ__ROLE_EDGE) {
        kz__fleet_up(s, KZ_BUS_U_LEAVE, cl->told_shutdown ? 2 : 1, slot, cl->serial, 0, NULL, 0);
        cl->live = 0;
        s->sessions.n_live--;
        return;
    }
    uint32_t i = cl->avatar;
    for (uint32_t o = 0; o < s->world.cap; o++)
        if (s->world.holder[o] == i + 1u)
            s->world.holder[o] = 0;  /* dropped where it is */
    if (kz_grid_remove(&s->world.grid, i) != KZ_OK)
        kz_logf(&s->cfg.net.log, KZ_LOG_ERROR, "server", "avatar %u was not in the grid", i);
    uint32_t id = kz_entity_at(&s->world.ents, i).id;
    reports_flush(s, cl);
    kz__audit(s, KZ_AUDIT_DISCONNECT, cl, 0, NULL);
    (void)kz_entity_destroy(&s->world.ents, kz_entity_at(&s->world.ents, i));
    s->world.owner[i] = 0;
    if (cl->bubble)
        s->sessions.n_bubbles--;
    cl->bubble = 0;
    cl->live = 0;
    s->sessions.n_live--;
    kz_logf(&s->cfg.net.log, KZ_LOG_INFO, "server", "left slot=%u entity=%u", slot, id);
}

/* Path records (detach, resume) a client's session may write: a burst of
 * KZ__PATH_AUDIT_BURST, then one per KZ__PATH_AUDIT_SECONDS. A client that
 * flaps its path (silent 2 s, back, again) would otherwise write two
 * records every few seconds; the records left out are counted in the
 * next one's code. */
#define KZ__PATH_AUDIT_BURST 4u
#define KZ__PATH_AUDIT_SECONDS 10u

/* 1 when this client may write a path record now (refilling its credit). */
static int path_audit_allowed(kz_server *s, kz__client *cl)
{
    uint32_t period = KZ__PATH_AUDIT_SECONDS * s->cfg.tick_hz;
    if (cl->path_credit_tick == 0) {
        cl->path_credit = KZ__PATH_AUDIT_BURST;
        cl->path_credit_tick = s->tick ? s->tick : 1;
    }
    uint32_t earned = (s->tick - cl->path_credit_tick) / period;
    if (earned) {
        uint32_t credit = cl->path_credit + earned;
        cl->path_credit = (uint8_t)(credit > KZ__PATH_AUDIT_BURST ? KZ__PATH_AUDIT_BURST : credit);
        cl->path_credit_tick += earned * period;
    }
    if (cl->path_credit == 0)
        return 0;
    cl->path_credit--;
    return 1;
}

/* The session's path went silent (`detached`) or came back (resume,
 * docs/PROTOCOL.md "Resume": heard again, or moved to a new address). A
 * detached avatar stands still: the commands queued before the silence
 * are dropped and its last one is not repeated, so it holds its place
 * until its client is heard again. Nobody else sees anything: no leave,
 * no enter. Counted always; audited and logged within the client's path
 * record budget (path_audit_allowed), each record's code the number left
 * out before it. */
static void on_path(kz_server *s, uint32_t slot, int detached)
{
    kz__client *cl = &s->sessions.clients[slot];
    if (!cl->live || (detached && cl->detached))
        return;
    cl->detached = (uint8_t)detached;
    if (s->role == KZ__ROLE_EDGE) {
        kz__fleet_up(s, detached ? KZ_BUS_U_DETACH : KZ_BUS_U_ATTACH, 0, slot, cl->serial, 0,
                     NULL, 0);
        return;
    }
    if (detached) {
        cl->q_count = 0;
        cl->q_deep = 0;
        cl->repeat_debt = 0;  /* standing still from here: nothing to take back */
        cl->last.move[0] = cl->last.move[1] = cl->last.move[2] = 0;
    }
    kz_counter_inc(s->c, detached ? KZ_WORLD_C_DETACHED : KZ_WORLD_C_RESUMED);
    if (!path_audit_allowed(s, cl)) {
        cl->path_left_out++;
        return;
    }
    char detail[KZ_AUDIT_DETAIL_MAX];
    kz__audit(s, detached ? KZ_AUDIT_DETACH : KZ_AUDIT_RESUME, cl, cl->path_left_out,
              path_detail(s, slot, detail));
    kz_logf(&s->cfg.net.log, KZ_LOG_INFO, "server", "%s slot=%u entity=%u (and %u more)",
            detached ? "detached" : "resumed", slot, kz_entity_at(&s->world.ents, cl->avatar).id,
            cl->path_left_out);
    cl->path_left_out = 0;
}

/* ---- messages ----------------------------------------------------------- */

static void violation_kick(kz_server *s, kz__client *cl, uint32_t reason);

/* Counts each kind in the violation set `v` and feeds it to the
 * consequence ladder. With `audit_what`, a strike or kick is audited under
 * that label before the kick's own record. Returns the verdict (a KICK has
 * been carried out). */
_Static_assert(KZ_WORLD_C_VIOL_GRAB - KZ_WORLD_C_VIOL_SPEED + 1 == KZ_VIOL_KINDS &&
                   KZ_WORLD_C_VIOL_CLOCK - KZ_WORLD_C_VIOL_SPEED == KZ_VIOL_KIND_CLOCK,
               "violation counters follow the validator's kind order");

static kz_validate_verdict punish(kz_server *s, kz__client *cl, uint32_t v, const char *audit_what)
{
    for (uint32_t k = 0; k < KZ_VIOL_KINDS; k++)
        if (v & (1u << k))
            kz_counter_inc(s->c, KZ_WORLD_C_VIOL_SPEED + k);
    uint32_t reason = 0;
    kz_validate_verdict verdict = kz_validate_consequence(&s->vcfg, &cl->val, v, s->now, &reason);
    if (audit_what != NULL && verdict >= KZ_VALIDATE_STRIKE)
        kz__audit(s, KZ_AUDIT_VIOLATION, cl, v, audit_what);
    if (verdict == KZ_VALIDATE_KICK)
        violation_kick(s, cl, reason);
    return verdict;
}

/* Every new command is checked as it arrives: fixed in place, dropped
 * when over the input budget, and its violations fed to the consequence
 * ladder. `received` is when the transport took its datagram off the
 * socket: the clock check must not see the queueing between the I/O
 * thread and this one (a late drain would make an honest client's
 * commands look bunched). The queue entry's pad[0] remembers that the
 * server changed it. */
static int check_command(kz_server *s, kz__client *cl, kz_wire_command *cmd, kz_time_ns received)
{
    kz_validate_result res;
    uint32_t v = kz_validate_command(&s->vcfg, &cl->val, cmd, received, &res);
    cmd->pad[0] = res.changed;
    if (v) {
        kz_counter_inc(s->c, KZ_WORLD_C_CORRECTIONS);
        /* Plain corrections (an honest turn too sharp for max_accel) are
         * counted, not audited; strikes and kicks are. */
        if (punish(s, cl, v, "input") == KZ_VALIDATE_KICK)
            return 0;
    }
    return !res.drop;
}

static void on_input(kz_server *s, kz__client *cl, const uint8_t *p, uint32_t len,
                     kz_time_ns received)
{
    kz_wire_input in;
    if (kz_wire_input_read(p, len, &in) != KZ_OK) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_MALFORMED);
        return;
    }
    kz_counter_inc(s->c, KZ_WORLD_C_INPUTS);
    /* An ack names a view we sent and still hold, newer than the last. */
    if (in.ack > cl->acked && in.ack <= s->tick)
        cl->acked = in.ack;
    /* Oldest first, skipping what we already have (redundant copies). */
    for (uint32_t k = in.count; k-- > 0;) {
        const kz_wire_command *cmd = &in.cmd[k];
        if (cmd->tick <= cl->newest_cmd)
            continue;
        kz_wire_command checked = *cmd;
        cl->newest_cmd = cmd->tick;
        int keep = check_command(s, cl, &checked, received);
        if (cl->kicked)
            return;  /* the rest of the message is not looked at */
        if (!keep)
            continue;
        cmd = &checked;
        if (cl->q_count == KZ__INPUT_QUEUE) {
            cl->q_head = (cl->q_head + 1u) % KZ__INPUT_QUEUE;
            cl->q_count--;
            kz_counter_inc(s->c, KZ_WORLD_C_COMMANDS_DROPPED);
        }
        cl->queue[(cl->q_head + cl->q_count) % KZ__INPUT_QUEUE] = *cmd;
        cl->q_count++;
    }
}

/* Who hears `from` (dense index) within `radius`: clients whose avatar is
 * that close and who have `from` in view, plus `from` itself when `echo`
 * (chat and emotes come back as confirmation; one's own voice does not). */
static void relay(kz_server *s, uint32_t from, float radius, int echo, uint8_t channel,
                  uint8_t type, const uint8_t *payload, uint32_t len)
{
    uint8_t buf[KZ_RELAY_HEADER_BYTES + KZ_CHAT_MAX_BYTES + KZ_VOICE_MAX_FRAME_BYTES];
    kz_wire_put32(buf, kz_entity_at(&s->world.ents, from).id);
    memcpy(buf + KZ_RELAY_HEADER_BYTES, payload, len);
    if (s->role == KZ__ROLE_AUTHORITY) {
        /* Who sees whom is known where the views are: at the edges. */
        kz__fleet_near(s, from, radius, echo, channel, type, buf, KZ_RELAY_HEADER_BYTES + len);
        return;
    }
    float x = (float)s->world.pos[from][0] / KZ_SNAP_POS_UNITS;
    float z = (float)s->world.pos[from][2] / KZ_SNAP_POS_UNITS;
    uint32_t n = kz_grid_query(&s->world.grid, x, z, radius, s->world.query, s->world.cap, NULL);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t e = s->world.query[k];
        if (!s->world.owner[e])
            continue;
        uint32_t slot = s->world.owner[e] - 1u;
        if (s->sessions.clients[slot].kicked || (e == from ? !echo : !kz__seen(s, slot, from)))
            continue;
        kz__server_send(s, slot, channel, type, buf, KZ_RELAY_HEADER_BYTES + len);
    }
}

/* The validator's rate check of one chat line, emote or voice frame: 1
 * when it may go on; else it is dropped, counted under `drop_counter`,
 * and the violation goes up the ladder (a sustained flood is struck and
 * kicked like any other cheat). */
static int rate_ok(kz_server *s, kz__client *cl, unsigned action, uint32_t amount,
                   uint32_t drop_counter)
{
    uint32_t v = kz_validate_action(&s->vcfg, &cl->val, action, amount, s->now);
    if (!v)
        return 1;
    kz_counter_inc(s->c, drop_counter);
    punish(s, cl, v, "rate");
    return 0;
}

static void on_chat(kz_server *s, kz__client *cl, const uint8_t *p, uint32_t len)
{
    if (cl->muted) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_MUTED);
        return;
    }
    if (len == 0 || len > KZ_CHAT_MAX_BYTES || !kz_utf8_valid(p, len)) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_MALFORMED);
        return;
    }
    if (!rate_ok(s, cl, KZ_VALIDATE_CHAT, 1, KZ_WORLD_C_DROP_RATE_CHAT))
        return;
    kz_counter_inc(s->c, KZ_WORLD_C_CHAT);
    relay(s, cl->avatar, s->cfg.view_radius + s->cfg.view_hysteresis, 1, KZ_CHANNEL_EVENT,
          KZ_MSG_CHAT, p, len);
}

static void on_emote(kz_server *s, kz__client *cl, const uint8_t *p, uint32_t len)
{
    if (len != 2) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_MALFORMED);
        return;
    }
    if (!rate_ok(s, cl, KZ_VALIDATE_EMOTE, 1, KZ_WORLD_C_DROP_RATE_EMOTE))
        return;
    s->world.anim[cl->avatar] = (uint16_t)(p[0] | p[1] << 8);
    relay(s, cl->avatar, s->cfg.view_radius + s->cfg.view_hysteresis, 1, KZ_CHANNEL_EVENT,
          KZ_MSG_EMOTE, p, len);
}

static void on_voice(kz_server *s, kz__client *cl, const uint8_t *p, uint32_t len)
{
    if (cl->muted) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_MUTED);
        return;
    }
    if (len == 0 || len > KZ_VOICE_MAX_FRAME_BYTES) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_MALFORMED);
        return;
    }
    if (!rate_ok(s, cl, KZ_VALIDATE_VOICE, len, KZ_WORLD_C_DROP_RATE_VOICE))
        return;
    kz_counter_inc(s->c, KZ_WORLD_C_VOICE);
    s->world.speaking_until[cl->avatar] = s->tick + s->cfg.tick_hz / 3u + 1u;
    relay(s, cl->avatar, s->cfg.voice_radius, 0, KZ_CHANNEL_VOICE, KZ_MSG_VOICE, p, len);
}

/* A teleport whose exit lies in a zone that refuses the client: refused
 * (the grant is spent), counted and told; not a violation, since the
 * client cannot know the zone's list. */
static void refuse_exit(kz_server *s, kz__client *cl)
{
    kz_counter_inc(s->c, KZ_WORLD_C_TELEPORT_REFUSED);
    kz_counter_inc(s->c, KZ_WORLD_C_PLACE_REFUSED);
    uint32_t more = 0;
    if (!kz__report_take(s, cl, KZ__REPORT_ZONE, &more))
        return;
    char what[48];
    snprintf(what, sizeof what, "portal exit refused (and %u more)", more);
    kz__audit(s, KZ_AUDIT_ZONE_REFUSAL, cl, 0, what);
    kz__notice(s, s->world.owner[cl->avatar] - 1u, KZ_NOTICE_DENIED,
               "the portal's exit is in a zone you may not enter");
}

/* A teleport only through a portal the server granted (the avatar stood
 * at its entrance within the last 5 s); anything else is a violation. */
static void on_teleport(kz_server *s, kz__client *cl, uint32_t portal)
{
    uint32_t v = KZ_VIOL_TELEPORT;
    if (portal >= 1 && portal <= KZ_PORTAL_MAX && s->world.portals[portal - 1u].on)
        v = kz_validate_teleport(&cl->val, portal, s->now);
    if (v) {
        kz_counter_inc(s->c, KZ_WORLD_C_TELEPORT_REFUSED);
        uint32_t more = 0;
        if (kz__report_take(s, cl, KZ__REPORT_TELEPORT, &more)) {
            char what[40];
            snprintf(what, sizeof what, "teleport (and %u more)", more);
            kz__audit(s, KZ_AUDIT_VIOLATION, cl, v, what);
        }
        punish(s, cl, v, NULL);
        return;
    }
    if (!kz__may_be_at(s, cl, s->world.portals[portal - 1u].exit)) {
        refuse_exit(s, cl);
        return;
    }
    memcpy(s->world.pos[cl->avatar], s->world.portals[portal - 1u].exit, sizeof s->world.pos[cl->avatar]);
    if (kz_grid_move(&s->world.grid, cl->avatar, (float)s->world.pos[cl->avatar][0] / KZ_SNAP_POS_UNITS,
                     (float)s->world.pos[cl->avatar][2] / KZ_SNAP_POS_UNITS) != KZ_OK)
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);
    cl->corrected = 1;  /* the client's prediction jumps with it */
    kz_counter_inc(s->c, KZ_WORLD_C_TELEPORTS);
}

int kz_server_portal_set(kz_server *s, uint32_t id, const float entrance[3], float radius,
                         const float exit[3])
{
    if (id < 1 || id > KZ_PORTAL_MAX || !(radius > 0 && radius < 1000.0f))
        return KZ_EINVAL;
    int32_t in[3], out[3];
    for (int i = 0; i < 3; i++) {
        if (!(entrance[i] >= -s->cfg.world_bound && entrance[i] <= s->cfg.world_bound) ||
            !(exit[i] >= -s->cfg.world_bound && exit[i] <= s->cfg.world_bound))
            return KZ_EINVAL;
        in[i] = (int32_t)lrintf(entrance[i] * KZ_SNAP_POS_UNITS);
        out[i] = (int32_t)lrintf(exit[i] * KZ_SNAP_POS_UNITS);
    }
    memcpy(s->world.portals[id - 1u].entrance, in, sizeof in);
    memcpy(s->world.portals[id - 1u].exit, out, sizeof out);
    s->world.portals[id - 1u].radius = radius;
    s->world.portals[id - 1u].on = 1;
    return KZ_OK;
}

static void on_action(kz_server *s, kz__client *cl, const uint8_t *p, uint32_t len)
{
    if (len != KZ_ACTION_BYTES || p[0] < KZ_ACTION_GRAB || p[0] > KZ_ACTION_TELEPORT) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_MALFORMED);
        return;
    }
    if (p[0] == KZ_ACTION_TELEPORT) {
        on_teleport(s, cl, kz_wire_get32(p + 1));
        return;
    }
    kz_entity h = {kz_wire_get32(p + 1)};
    uint32_t o = kz_entity_index(&s->world.ents, h);
    uint32_t me = cl->avatar;
    if (o == UINT32_MAX || s->world.kind[o] != KZ_KIND_OBJECT) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);
        return;
    }
    /* Grabs per second are limited like chat (a grab-spam stream is a
     * violation on the ladder). */
    if (p[0] == KZ_ACTION_GRAB) {
        uint32_t v = kz_validate_action(&s->vcfg, &cl->val, KZ_VALIDATE_GRAB, 1, s->now);
        if (v) {
            kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);
            punish(s, cl, v, NULL);
            return;
        }
    }
    if (p[0] == KZ_ACTION_RELEASE) {
        if (s->world.holder[o] == me + 1u)
            s->world.holder[o] = 0;
        else
            kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);
        return;
    }
    /* Grab: only a free object, only within reach of the root. */
    double d2 = 0;
    for (int k = 0; k < 3; k++) {
        double d = (double)(s->world.pos[o][k] - s->world.pos[me][k]) / KZ_SNAP_POS_UNITS;
        d2 += d * d;
    }
    if (s->world.holder[o] != 0 || d2 > (double)s->cfg.grab_reach * s->cfg.grab_reach) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);
        return;
    }
    s->world.holder[o] = me + 1u;
    kz_counter_inc(s->c, KZ_WORLD_C_GRABS);
}

/* Admin and block requests share a per-client budget: beyond it a
 * request is dropped, counted, and reported to the ladder as a flood (a
 * sustained one is kicked). 1 when the request may be handled. */
static int request_ok(kz_server *s, kz__client *cl)
{
    if (kz_validate_bucket_take(&cl->requests, KZ__REQUESTS_PER_SECOND, KZ__REQUESTS_BURST, 1.0,
                                s->now))
        return 1;
    kz_counter_inc(s->c, KZ_WORLD_C_DROP_RATE_REQUEST);
    punish(s, cl, KZ_VIOL_FLOOD, "requests");
    return 0;
}

/* Mutual blocks: the list holds client ids, so a block outlives the
 * blocked avatar's reconnects within this session of the blocker. Adding
 * and removing share the request budget; new blocks are audited through
 * the client's sampler. */
static void on_block(kz_server *s, kz__client *cl, const uint8_t *p, uint32_t len)
{
    if (len != KZ_BLOCK_BYTES || (p[0] != KZ_BLOCK_ADD && p[0] != KZ_BLOCK_REMOVE)) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_MALFORMED);
        return;
    }
    if (!request_ok(s, cl))
        return;
    uint32_t t = kz_entity_index(&s->world.ents, (kz_entity){kz_wire_get32(p + 1)});
    if (t == UINT32_MAX || !s->world.owner[t] || t == cl->avatar) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);
        return;
    }
    uint64_t id = s->sessions.clients[s->world.owner[t] - 1u].client_id;
    for (uint32_t k = 0; k < cl->n_blocked; k++)
        if (cl->blocked[k] == id) {
            if (p[0] == KZ_BLOCK_REMOVE) {
                cl->blocked[k] = cl->blocked[--cl->n_blocked];
                cl->blocked_gen++;
            }
            return;
        }
    if (p[0] == KZ_BLOCK_REMOVE)
        return;
    if (cl->n_blocked == KZ_BLOCK_MAX) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);
        return;
    }
    cl->blocked[cl->n_blocked++] = id;
    cl->blocked_gen++;
    kz_counter_inc(s->c, KZ_WORLD_C_BLOCKS);
    uint32_t more = 0;
    if (!kz__report_take(s, cl, KZ__REPORT_BLOCK, &more))
        return;
    char who[KZ_AUDIT_DETAIL_MAX];
    snprintf(who, sizeof who, "blocked client %llu (and %u more)", (unsigned long long)id, more);
    kz__audit(s, KZ_AUDIT_BLOCK, cl, 0, who);
}

void kz__notice(kz_server *s, uint32_t slot, uint8_t code, const char *text)
{
    uint8_t buf[1 + KZ_NOTICE_MAX_BYTES];
    size_t n = text ? strnlen(text, KZ_NOTICE_MAX_BYTES) : 0;
    buf[0] = code;
    memcpy(buf + 1, text ? text : "", n);
    kz__server_send(s, slot, KZ_CHANNEL_EVENT, KZ_MSG_NOTICE, buf, (uint32_t)(1 + n));
}

void kz__audit(kz_server *s, uint32_t type, const kz__client *cl, uint32_t code, const char *detail)
{
    if (!s->cfg.audit)
        return;
    kz_audit_record r;
    memset(&r, 0, sizeof r);
    r.type = (uint8_t)type;
    r.code = code;
    if (cl) {
        r.client_id = cl->client_id;
        /* A connection refused before it had an avatar names none. */
        r.entity = cl->live ? kz_entity_at(&s->world.ents, cl->avatar).id : 0;
        r.verification_level = cl->verification_level;
        r.actor_kind = cl->actor_kind;
        r.acting_for = cl->acting_for;
    }
    if (detail)
        snprintf(r.detail, sizeof r.detail, "%s", detail);
    (void)kz_audit_append(s->cfg.audit, &r);
}

void kz__announce_observer(kz_server *s, const kz__client *observer, uint32_t target)
{
    if (!s->world.owner[target] || target == observer->avatar)
        return;
    kz__notice(s, s->world.owner[target] - 1u, KZ_NOTICE_OBSERVED, s->world.badge[observer->avatar].name);
}

void kz__announce_observers(kz_server *s)
{
    uint32_t words = s->sessions.words;
    for (uint32_t slot = 0; slot < s->sessions.max_clients; slot++) {
        const kz__client *cl = &s->sessions.clients[slot];
        if (!cl->live || !cl->observer)
            continue;
        for (uint32_t k = 0; k < words; k++)
            for (uint64_t fresh = kz__view_take_entered(&s->rp.w, slot, cl->serial, k); fresh;
                 fresh &= fresh - 1u)
                kz__announce_observer(s, cl, k * 64u + (uint32_t)__builtin_ctzll(fresh));
    }
}

static int holds_role(const kz__client *cl, const char *role)
{
    for (uint32_t r = 0; r < cl->n_roles; r++)
        if (strcmp(cl->roles[r], role) == 0)
            return 1;
    return 0;
}

/* An admin action from a client without the role: counted; beyond the
 * refusal budget a flood on the ladder; audited, logged and told through
 * the client's sampler, so a stream of refusals costs a few records. */
static void refuse_admin(kz_server *s, uint32_t slot, kz__client *cl, uint8_t action,
                         int zone_action)
{
    kz_counter_inc(s->c, KZ_WORLD_C_ADMIN_DENIED);
    if (!kz_validate_bucket_take(&cl->refusals, KZ__REFUSALS_PER_SECOND, KZ__REFUSALS_BURST, 1.0,
                                 s->now))
        punish(s, cl, KZ_VIOL_FLOOD, "refusals");
    uint32_t more = 0;
    if (cl->kicked || !kz__report_take(s, cl, KZ__REPORT_ADMIN, &more))
        return;
    char what[KZ_AUDIT_DETAIL_MAX];
    snprintf(what, sizeof what, "refused: no moderator role (and %u more)", more);
    kz__audit(s, KZ_AUDIT_ROLE_ACTION, cl, action, what);
    kz__notice(s, slot, KZ_NOTICE_DENIED,
               zone_action ? "this action needs the admin role" : "this action needs the moderator role");
    kz_logf(&s->cfg.net.log, KZ_LOG_WARN, "server",
            "denied admin action %u from client=%llu (and %u more)", action,
            (unsigned long long)cl->client_id, more);
}

/* A summon moves the target one meter along x from the moderator, unless
 * the target may not stand there (a zone refuses it): then nothing moves
 * and the moderator is told. 1 when moved. */
static int summon(kz_server *s, uint32_t slot, kz__client *mod, uint32_t t, kz__client *target)
{
    int32_t to[3];
    memcpy(to, s->world.pos[mod->avatar], sizeof to);
    to[0] += KZ_SNAP_POS_UNITS;
    if (!kz__may_be_at(s, target, to)) {
        kz_counter_inc(s->c, KZ_WORLD_C_PLACE_REFUSED);
        kz__notice(s, slot, KZ_NOTICE_DENIED, "the target may not enter the zone you are in");
        kz__audit(s, KZ_AUDIT_ROLE_ACTION, mod, KZ_ADMIN_SUMMON, "refused: target may not be there");
        return 0;
    }
    memcpy(s->world.pos[t], to, sizeof to);
    if (kz_grid_move(&s->world.grid, t, (float)to[0] / KZ_SNAP_POS_UNITS,
                     (float)to[2] / KZ_SNAP_POS_UNITS) != KZ_OK)
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);
    target->corrected = 1;  /* the target's own prediction is corrected */
    return 1;
}

/* Role-gated actions: a moderator (or admin) may kick, mute and observe.
 * Anything else is refused, told and counted. */
static void on_admin(kz_server *s, uint32_t slot, kz__client *cl, const uint8_t *p, uint32_t len)
{
    if (len != KZ_ADMIN_BYTES || p[0] < KZ_ADMIN_KICK || p[0] > KZ_ADMIN_ZONE_UNLOCK) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_MALFORMED);
        return;
    }
    if (!request_ok(s, cl))
        return;
    int is_admin = holds_role(cl, s->cfg.admin_role);
    int zone_action = p[0] == KZ_ADMIN_ZONE_LOCK || p[0] == KZ_ADMIN_ZONE_UNLOCK;
    if ((zone_action && !is_admin) || (!is_admin && !holds_role(cl, s->cfg.moderator_role))) {
        refuse_admin(s, slot, cl, p[0], zone_action);
        return;
    }
    uint32_t t = kz_entity_index(&s->world.ents, (kz_entity){kz_wire_get32(p + 1)});
    int needs_target = p[0] <= KZ_ADMIN_UNMUTE || p[0] == KZ_ADMIN_SUMMON;
    if (zone_action) {
        uint32_t z = kz_wire_get32(p + 1);
        if (z < 1 || z > s->world.n_zones) {
            kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);
            return;
        }
        s->world.zones[z - 1u].locked = p[0] == KZ_ADMIN_ZONE_LOCK;
        s->world.zones_gen++;  /* a lock moves out everyone it now refuses */
    }
    if (needs_target && (t == UINT32_MAX || !s->world.owner[t])) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);
        return;
    }
    kz__client *target = needs_target ? &s->sessions.clients[s->world.owner[t] - 1u] : NULL;
    switch (p[0]) {
    case KZ_ADMIN_KICK:
        (void)kz_server_kick(s, kz_wire_get32(p + 1), KZ_KICK_ADMIN, "removed by a moderator");
        break;
    case KZ_ADMIN_MUTE:
        target->muted = 1;
        kz__notice(s, s->world.owner[t] - 1u, KZ_NOTICE_MUTED, "muted by a moderator");
        break;
    case KZ_ADMIN_UNMUTE:
        target->muted = 0;
        break;
    case KZ_ADMIN_OBSERVE_ON:
        /* Everyone it sees learns it is watched, and everyone it comes
         * to see: its replicator marks them from the next frame on, and
         * the next tick tells them (kz__announce_observers). */
        cl->observer = 1;
        break;
    case KZ_ADMIN_OBSERVE_OFF:
        cl->observer = 0;
        break;
    case KZ_ADMIN_SUMMON:
        if (!summon(s, slot, cl, t, target))
            return;
        break;
    default:
        break;  /* zone lock and unlock were applied above */
    }
    kz_counter_inc(s->c, KZ_WORLD_C_ADMIN_DONE);
    char what[40];
    snprintf(what, sizeof what, "done on entity %u", kz_wire_get32(p + 1));
    kz__audit(s, KZ_AUDIT_ROLE_ACTION, cl, p[0], what);
    kz_logf(&s->cfg.net.log, KZ_LOG_INFO, "server", "admin action %u by client=%llu", p[0],
            (unsigned long long)cl->client_id);
}

/* Preferences: byte 0 = 1 turns the personal-space bubble on, 0 off. */
static void on_prefs(kz_server *s, kz__client *cl, const uint8_t *p, uint32_t len)
{
    if (len != 1 || p[0] > 1) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_MALFORMED);
        return;
    }
    if (p[0] != cl->bubble)
        s->sessions.n_bubbles += p[0] ? 1 : (uint32_t)-1;
    cl->bubble = p[0];
}

/* An edge forwards what its clients send to the authority, which checks
 * and applies it; of an INPUT it keeps the acknowledgement, which its
 * replicator needs. Only the types a client may send go up. */
static void edge_forward(kz_server *s, kz__client *cl, const kz_netmsg *m)
{
    switch (m->type) {
    case KZ_MSG_INPUT: {
        kz_wire_input in;
        if (kz_wire_input_read(m->data, m->len, &in) != KZ_OK) {
            kz_counter_inc(s->c, KZ_WORLD_C_DROP_MALFORMED);
            return;
        }
        kz_counter_inc(s->c, KZ_WORLD_C_INPUTS);
        if (in.ack > cl->acked && in.ack <= s->tick)
            cl->acked = in.ack;
        break;
    }
    case KZ_MSG_CHAT: case KZ_MSG_EMOTE: case KZ_MSG_VOICE: case KZ_MSG_ACTION:
    case KZ_MSG_BLOCK: case KZ_MSG_ADMIN: case KZ_MSG_PREFS:
        break;
    default: kz_counter_inc(s->c, KZ_WORLD_C_DROP_MALFORMED); return;
    }
    if (m->len > KZ_MAX_MESSAGE_BYTES) {
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_MALFORMED);
        return;
    }
    kz_time_ns age = m->received && s->now > m->received ? s->now - m->received : 0;
    uint64_t age_us = age / 1000u;
    kz__fleet_up(s, KZ_BUS_U_MSG, m->type, m->slot, cl->serial,
                 age_us > UINT32_MAX ? UINT32_MAX : (uint32_t)age_us, m->data, m->len);
}

static void on_data(kz_server *s, const kz_netmsg *m)
{
    kz__client *cl = &s->sessions.clients[m->slot];
    if (!cl->live || cl->kicked) {
        /* Kicked (or refused at connect): it is leaving, and nothing it
         * still sends may count, strike or be logged again. */
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_KICKED);
        return;
    }
    if (s->role == KZ__ROLE_EDGE) {
        edge_forward(s, cl, m);
        return;
    }
    switch (m->type) {
    case KZ_MSG_INPUT:
        /* The transport stamps every DATA message; a zero stamp would be a
         * transport defect, and the sim's time is then the best known. */
        on_input(s, cl, m->data, m->len, m->received ? m->received : s->now);
        break;
    case KZ_MSG_CHAT: on_chat(s, cl, m->data, m->len); break;
    case KZ_MSG_EMOTE: on_emote(s, cl, m->data, m->len); break;
    case KZ_MSG_VOICE: on_voice(s, cl, m->data, m->len); break;
    case KZ_MSG_ACTION: on_action(s, cl, m->data, m->len); break;
    case KZ_MSG_BLOCK: on_block(s, cl, m->data, m->len); break;
    case KZ_MSG_ADMIN: on_admin(s, m->slot, cl, m->data, m->len); break;
    case KZ_MSG_PREFS: on_prefs(s, cl, m->data, m->len); break;
    default: kz_counter_inc(s->c, KZ_WORLD_C_DROP_MALFORMED); break;
    }
}

static void drain(kz_server *s)
{
    kz_netmsg m;
    while (kz_netserver_poll(s->net, &m) == KZ_OK) {
        if (m.slot >= s->sessions.max_clients)
            continue;
        if (m.kind == KZ_NETMSG_CONNECT)
            on_connect(s, m.slot, (const kz_token_info *)m.data,
                       kz__netserver_polled_serial(s->net), kz__netserver_polled_host(s->net));
        else if (m.kind == KZ_NETMSG_DISCONNECT)
            on_disconnect(s, m.slot);
        else if (m.kind == KZ_NETMSG_DETACH || m.kind == KZ_NETMSG_RESUME)
            on_path(s, m.slot, m.kind == KZ_NETMSG_DETACH);
        else
            on_data(s, &m);
    }
}

/* ---- the fleet's entry points (sim/fleet_impl.h) -------------------------- */

void kz__server_connect(kz_server *s, uint32_t slot, const kz_token_info *info, uint32_t serial,
                        uint32_t host)
{
    on_connect(s, slot, info, serial, host);
}

void kz__server_disconnect(kz_server *s, uint32_t slot) { on_disconnect(s, slot); }
void kz__server_path(kz_server *s, uint32_t slot, int detached) { on_path(s, slot, detached); }
void kz__server_data(kz_server *s, const kz_netmsg *m) { on_data(s, m); }

/* ---- stepping ----------------------------------------------------------- */

/* Sends the no-place kicks a full outbound ring refused: to sessions
 * refused at connect (no avatar) and to avatars a zone change left with
 * no place. Stops at the first refusal (the ring is still full). */
static void pay_owed_kicks(kz_server *s)
{
    for (uint32_t slot = 0; slot < s->sessions.max_clients && s->sessions.owed_kicks; slot++) {
        kz__client *cl = &s->sessions.clients[slot];
        if (!cl->owe_kick)
            continue;
        int rc = cl->live ? kz_server_kick(s, kz_entity_at(&s->world.ents, cl->avatar).id,
                                           KZ_KICK_NO_PLACE, "no place in this world admits you")
                          : send_no_place(s, slot);
        if (rc != KZ_OK)
            return;
        if (cl->owe_kick) { /* kz_server_kick clears it for avatars */
            cl->owe_kick = 0;
            s->sessions.owed_kicks--;
        }
    }
}

/* An edge's step: its clients' traffic and the fleet's timers; it ticks
 * when the authority's world update is complete (kz__fleet_receive). */
static int edge_step(kz_server *s, kz_time_ns now)
{
    (void)kz_netserver_service(s->net, now);
    drain(s);
    if (s->draining)
        kz__server_tell_shutdown(s);
    kz__fleet_step(s);
    if (s->rp.threaded)
        kz__server_time_ticks(s);
    return 0;
}

int kz_server_step(kz_server *s, kz_time_ns now)
{
    s->now = now;
    if (s->role == KZ__ROLE_EDGE)
        return edge_step(s, now);
    if (s->ticker.hz == 0 && kz_ticker_init(&s->ticker, s->cfg.tick_hz, 4, now) != KZ_OK)
        return KZ_EINVAL;
    if (s->net) {
        (void)kz_netserver_service(s->net, now);
        drain(s);
    } else {
        kz__fleet_step(s);
    }
    if (s->sessions.owed_kicks)
        pay_owed_kicks(s);
    if (s->draining)
        kz__server_tell_shutdown(s);
    uint64_t skipped = s->ticker.skipped;
    uint32_t due = kz_ticker_due(&s->ticker, now);
    if (s->ticker.skipped != skipped)
        kz_counter_add(s->c, KZ_WORLD_C_TICKS_SKIPPED, s->ticker.skipped - skipped);
    for (uint32_t k = 0; k < due; k++)
        kz__server_tick(s);
    if (s->rp.threaded)
        kz__server_time_ticks(s);
    if (due && s->net)
        (void)kz_netserver_service(s->net, now);
    return (int)due;
}

/* ---- queries and admin -------------------------------------------------- */

uint16_t kz_server_port(const kz_server *s) { return s->net ? kz_netserver_port(s->net) : 0; }
uint32_t kz_server_tick(const kz_server *s) { return s->tick; }
uint32_t kz_server_tick_hz(const kz_server *s) { return s->cfg.tick_hz; }

kz_time_ns kz_server_tick_time(const kz_server *s, uint32_t tick)
{
    /* Tick n (counting from 1) is the ticker's tick n - 1. */
    if (s->ticker.hz == 0 || tick == 0)
        return 0;
    return kz_ticker_time_of(&s->ticker, tick - 1u);
}
uint32_t kz_server_clients(const kz_server *s) { return s->sessions.n_live; }
const kz_counters *kz_server_counters(const kz_server *s) { return &s->counters; }
kz_netserver *kz_server_net(kz_server *s) { return s->net; }
const kz_hist *kz_server_tick_hist(const kz_server *s) { return &s->tick_ns; }

int kz_server_tick_hist_take(kz_server *s, kz_hist *into)
{
    int rc = kz_hist_merge(into, &s->tick_ns);
    kz_hist_reset(&s->tick_ns);
    return rc;
}

uint32_t kz_server_avatar_of(const kz_server *s, uint32_t slot)
{
    if (slot >= s->sessions.max_clients || !s->sessions.clients[slot].live)
        return 0;
    return kz_entity_at(&s->world.ents, s->sessions.clients[slot].avatar).id;
}

int kz_server_entity(const kz_server *s, uint32_t id, kz_avatar_state *out)
{
    uint32_t i = kz_entity_index(&s->world.ents, (kz_entity){id});
    if (i == UINT32_MAX)
        return KZ_EINVAL;
    kz_snap_state st;
    kz__world_load_state(&s->world, i, &st);
    kz_snap_dequantize(&s->world.codec, &st, out);
    return KZ_OK;
}

int kz_server_object_add(kz_server *s, const float pos[3], const float rot[4], uint32_t *id)
{
    kz_avatar_state st;
    kz_avatar_state_rest(&st);
    memcpy(st.pos, pos, sizeof st.pos);
    if (rot)
        memcpy(st.pose[0].rot, rot, sizeof st.pose[0].rot);
    st.kind = KZ_KIND_OBJECT;
    kz_snap_state q;
    int rc = kz_snap_quantize(&s->world.codec, 1, &st, &q);
    if (rc)
        return rc;
    kz_entity e;
    if (kz_entity_create(&s->world.ents, &e) != KZ_OK)
        return KZ_EFULL;
    uint32_t i = kz_entity_index(&s->world.ents, e);
    kz__world_rest(&s->world, i);
    s->world.kind[i] = KZ_KIND_OBJECT;
    memcpy(s->world.pos[i], q.pos, sizeof q.pos);
    memcpy(s->world.rot[i], q.rot, sizeof q.rot);
    memset(&s->world.badge[i], 0, sizeof s->world.badge[i]);
    s->world.badge_gen[i]++;
    if (kz_grid_insert(&s->world.grid, i, pos[0], pos[2]) != KZ_OK) {
        (void)kz_entity_destroy(&s->world.ents, e);
        return KZ_ERANGE;
    }
    *id = e.id;
    return KZ_OK;
}

int kz_server_kick(kz_server *s, uint32_t avatar, uint32_t reason, const char *text)
{
    uint32_t i = kz_entity_index(&s->world.ents, (kz_entity){avatar});
    if (i == UINT32_MAX || !s->world.owner[i])
        return KZ_EINVAL;
    uint32_t slot = s->world.owner[i] - 1u;
    kz__client *cl = &s->sessions.clients[slot];
    if (cl->kicked && !cl->owe_kick)
        return KZ_OK;  /* already on its way out: counted and audited once */
    uint8_t buf[1 + KZ_NOTICE_MAX_BYTES];
    size_t n = text ? strnlen(text, KZ_NOTICE_MAX_BYTES) : 0;
    /* A longer text is cut on a character boundary: the client refuses a
     * notice that is not valid UTF-8. */
    if (n == KZ_NOTICE_MAX_BYTES) /* text[n] exists: the string goes on */
        while (n > 0 && ((uint8_t)text[n] & 0xC0u) == 0x80u)
            n--;
    buf[0] = KZ_NOTICE_KICK;
    memcpy(buf + 1, text ? text : "", n);
    kz__server_send(s, slot, KZ_CHANNEL_EVENT, KZ_MSG_NOTICE, buf, (uint32_t)(1 + n));
    int rc = transport_kick(s, slot, reason);
    if (rc == KZ_OK) { /* counted and audited once it is on its way */
        cl->kicked = 1;
        cl->q_count = 0;  /* nothing more of it is applied */
        cl->q_deep = 0;
        cl->repeat_debt = 0;
        if (cl->owe_kick) {
            cl->owe_kick = 0;
            s->sessions.owed_kicks--;
        }
        kz_counter_inc(s->c, KZ_WORLD_C_KICKS);
        kz__audit(s, KZ_AUDIT_KICK, cl, reason, text);
    }
    return rc;
}

void kz_server_shutdown(kz_server *s, const char *text)
{
    if (s->draining)
        return;
    s->draining = 1;
    snprintf(s->drain_text, sizeof s->drain_text, "%s", text ? text : "server shutting down");
    if (s->net)
        kz_netserver_set_accepting(s->net, 0);
    kz_logf(&s->cfg.net.log, KZ_LOG_INFO, "server", "shutdown clients=%u", s->sessions.n_live);
    kz__server_tell_shutdown(s);
}

/* An edge that stops lets its clients go with the notice; the authority
 * holds their avatars (LEAVE "moved"), so they may come back through
 * another edge of their token. */
static void edge_tell_shutdown(kz_server *s)
{
    for (uint32_t slot = 0; slot < s->cfg.net.max_clients; slot++) {
        kz__client *cl = &s->sessions.clients[slot];
        if (!cl->live || cl->told_shutdown || cl->kicked)
            continue;
        uint8_t buf[1 + KZ_NOTICE_MAX_BYTES];
        size_t n = strnlen(s->drain_text, KZ_NOTICE_MAX_BYTES);
        buf[0] = KZ_NOTICE_KICK;
        memcpy(buf + 1, s->drain_text, n);
        kz__server_send(s, slot, KZ_CHANNEL_EVENT, KZ_MSG_NOTICE, buf, (uint32_t)(1 + n));
        if (kz_netserver_kick(s->net, slot, KZ_KICK_SHUTDOWN) != KZ_OK)
            return;
        cl->told_shutdown = 1;
        cl->kicked = 1;
    }
}

void kz__server_tell_shutdown(kz_server *s)
{
    if (s->role == KZ__ROLE_EDGE) {
        edge_tell_shutdown(s);
        return;
    }
    for (uint32_t slot = 0; slot < s->cfg.net.max_clients; slot++) {
        kz__client *cl = &s->sessions.clients[slot];
        if (!cl->live || cl->told_shutdown)
            continue;
        /* A full outbound ring refuses the kick: this client is told on a
         * later step, once the I/O thread has sent what is queued. */
        if (kz_server_kick(s, kz_entity_at(&s->world.ents, cl->avatar).id, KZ_KICK_SHUTDOWN,
                           s->drain_text) != KZ_OK)
            return;
        cl->told_shutdown = 1;
    }
}

static void violation_kick(kz_server *s, kz__client *cl, uint32_t reason)
{
    if (cl->kicked)
        return;  /* the ladder stays at KICK; the kick itself happens once */
    char text[96];
    snprintf(text, sizeof text, "removed for cheating: %s", kz_validate_reason_text(reason));
    kz_logf(&s->cfg.net.log, KZ_LOG_WARN, "server", "kick client=%llu reason=\"%s\"",
            (unsigned long long)cl->client_id, kz_validate_reason_text(reason));
    (void)kz_server_kick(s, kz_entity_at(&s->world.ents, cl->avatar).id, KZ_KICK_VIOLATION, text);
}
