/*
 * Fuzz target for the bus between a world's authority and its edges
 * (sim/bus.h, sim/fleet.h). Every input goes to the codec's readers
 * directly and, as one bus message, to a fleet world kept for the whole
 * run: an authority and an edge that took its image (a transport on
 * 127.0.0.1 without clients), on an injected clock.
 *
 * Input: byte 0 chooses, the bytes after it are the message.
 *   bits 0-1  0: the authority's up subject of edge (bits 4-7); 1: the
 *             edge's tick subject; 2: its down subject; 3: all three;
 *   bit 2     fresh header: world, sender, instance, epoch, seq and length
 *             are set to what the receiver takes next, so the body reaches
 *             its decoder whatever the world's state is by then;
 *   bit 3     then one tick: both servers step and their messages are
 *             passed on, so the world moves on;
 *   bits 4-7  the edge number of the up subject.
 * The world's state carries over between inputs (an edge per input would
 * bind a socket each time): a crash found after others may need the
 * inputs before it to reproduce.
 *
 * Invariants:
 * - a header that passes its check states the message's length and is
 *   written back to the same 48 bytes (one encoding);
 * - a tick head, limits block, entity record or record head that reads is
 *   written back to the same bytes; an entity record takes
 *   kz_bus_entity_size bytes; a tick head's range and count hold; a
 *   refused read moves no cursor;
 * - a message dropped is counted once, under its reason; every message is
 *   counted in bus_msgs_in;
 * - the edge's replica holds only states the codec carries, each at the
 *   dense index its id names; the authority's map of sessions to edges is
 *   consistent both ways.
 *
 * With KZ_FUZZ_BUS_SEEDS=<dir> in the environment the harness writes its
 * seed corpus there once set up (tests/fuzz/corpus/bus/README).
 */
#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/entity.h>

#include "net/token_claims.h"
#include "sim/fleet_impl.h"

#define FZ_CLIENTS 8u
#define FZ_TICK_NS (1000000000ull / 30u)
#define FZ_AUTH_INSTANCE 0xA0A0A0ull
#define FZ_EDGE_INSTANCE 0xE1E1E1ull
#define FZ_EPOCH 1000u
#define FZ_PROTO 0x4B5A46555A425553ull
#define FZ_SERVER_ID 5u

#define FZ_WHERE_UP 0u
#define FZ_WHERE_TICK 1u
#define FZ_WHERE_DOWN 2u
#define FZ_WHERE_ALL 3u
#define FZ_FRESH 4u
#define FZ_STEP 8u

static kz_server *auth, *edge;
static kz_time_ns now = 1;
static uint64_t world;
static int ready;

/* What the pump saw, for the seeds. */
static uint8_t seen_tick[KZ_BUS_HEADER_BYTES + 65536], seen_sync[KZ_BUS_HEADER_BYTES + 65536];
static uint32_t seen_tick_len, seen_sync_len;

static const uint32_t drop_counter[KZ_BUS_DROP_COUNT] = {
    [KZ_BUS_OK] = 0,
    [KZ_BUS_DROP_OVERSIZE] = KZ__FLEET_C_DROP_OVERSIZE,
    [KZ_BUS_DROP_MALFORMED] = KZ__FLEET_C_DROP_MALFORMED,
    [KZ_BUS_DROP_VERSION] = KZ__FLEET_C_DROP_VERSION,
    [KZ_BUS_DROP_OTHER_WORLD] = KZ__FLEET_C_DROP_OTHER_WORLD,
    [KZ_BUS_DROP_SENDER] = KZ__FLEET_C_DROP_SENDER,
    [KZ_BUS_DROP_STALE_INSTANCE] = KZ__FLEET_C_DROP_STALE_INSTANCE,
    [KZ_BUS_DROP_REPLAY] = KZ__FLEET_C_DROP_REPLAY,
    [KZ_BUS_DROP_FOREIGN] = KZ__FLEET_C_DROP_FOREIGN,
};

static uint64_t get64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static void put64(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

/* ---- the world ------------------------------------------------------------ */

/* Delivers one message, checking that a drop is counted once under its
 * reason. */
static kz_bus_drop deliver(kz_server *s, unsigned subject, uint32_t e, const uint8_t *msg,
                           size_t len)
{
    const kz_counters *c = kz__fleet_counters(s);
    uint64_t before[KZ__FLEET_C_COUNT], after[KZ__FLEET_C_COUNT];
    kz_counters_snapshot(c, before);
    kz_bus_drop d = kz__fleet_receive(s, subject, e, msg, len);
    kz_counters_snapshot(c, after);
    if ((unsigned)d >= KZ_BUS_DROP_COUNT || after[KZ__FLEET_C_MSGS_IN] != before[KZ__FLEET_C_MSGS_IN] + 1)
        abort();
    if (d != KZ_BUS_OK && after[drop_counter[d]] != before[drop_counter[d]] + 1)
        abort();
    return d;
}

static void pump(void)
{
    const kz__bus_msg *m;
    uint32_t n = kz__fleet_out(edge, &m);
    for (uint32_t k = 0; k < n; k++)
        (void)deliver(auth, KZ_BUS_SUBJECT_UP, 1, m[k].data, m[k].len);
    kz__fleet_out_clear(edge);
    n = kz__fleet_out(auth, &m);
    for (uint32_t k = 0; k < n; k++) {
        if (m[k].subject == KZ_BUS_SUBJECT_TICK) {
            uint8_t type = m[k].data[5];
            uint32_t count = kz_bus_get32(m[k].data + KZ_BUS_HEADER_BYTES + 16);
            if (type == KZ_BUS_TICK && count && m[k].len <= sizeof seen_tick) {
                memcpy(seen_tick, m[k].data, m[k].len);
                seen_tick_len = m[k].len;
            } else if (type == KZ_BUS_SYNC && m[k].len <= sizeof seen_sync) {
                memcpy(seen_sync, m[k].data, m[k].len);
                seen_sync_len = m[k].len;
            }
            (void)deliver(edge, KZ_BUS_SUBJECT_TICK, 0, m[k].data, m[k].len);
        } else if (m[k].subject == KZ_BUS_SUBJECT_DOWN && m[k].edge == 1) {
            (void)deliver(edge, KZ_BUS_SUBJECT_DOWN, 1, m[k].data, m[k].len);
        }
    }
    kz__fleet_out_clear(auth);
}

static void tick(void)
{
    now += FZ_TICK_NS;
    (void)kz_server_step(auth, now);
    (void)kz_server_step(edge, now);
    pump();
}

/* Log lines are formatted (that code runs too) and not printed. */
static void quiet(void *ctx, int32_t level, const char *module, const char *msg)
{
    (void)ctx;
    (void)level;
    (void)module;
    (void)msg;
}

static void config(kz_server_config *sc, const kz_sign_keypair *backend, const kz_box_keypair *keys)
{
    memset(sc, 0, sizeof *sc);
    kz_server_config_default(sc);
    sc->net.max_clients = FZ_CLIENTS;
    sc->net.log.sink = quiet;
    sc->net.log.level = KZ_LOG_INFO;
    sc->spawn_radius = 8.0f;
    if (!backend)
        return;
    sc->net.verifier.protocol_id = FZ_PROTO;
    sc->net.verifier.server_id = FZ_SERVER_ID;
    memcpy(sc->net.verifier.backend_pk[0], backend->public_key, KZ_SIGN_PUBLIC_KEY_BYTES);
    sc->net.verifier.server_keys = *keys;
    sc->net.bind_ip = htonl(0x7f000001);
}

static void write_seeds(const char *dir);

static void setup(void)
{
    if (sodium_init() < 0)
        abort();
    world = kz_bus_world_hash("fuzz");
    kz_sign_keypair backend;
    kz_box_keypair keys;
    if (kz_sign_keypair_generate(&backend) != KZ_OK || kz_box_keypair_generate(&keys) != KZ_OK)
        abort();
    kz_server_config sc;
    config(&sc, NULL, NULL);
    kz__fleet_config fc = {.role = KZ__ROLE_AUTHORITY, .world = world,
                           .instance = FZ_AUTH_INSTANCE, .started_ms = FZ_EPOCH,
                           .out_bytes = 1u << 20};
    auth = kz__fleet_server_create(&sc, &fc);
    config(&sc, &backend, &keys);
    kz__fleet_config ec = {.role = KZ__ROLE_EDGE, .edge = 1, .world = world,
                           .instance = FZ_EDGE_INSTANCE, .started_ms = 2000,
                           .out_bytes = 1u << 20};
    edge = kz__fleet_server_create(&sc, &ec);
    if (!auth || !edge)
        abort();
    for (int k = 0; k < 3; k++) {
        float pos[3] = {2.0f * (float)k, 0.0f, 3.0f};
        uint32_t id;
        if (kz_server_object_add(auth, pos, NULL, &id) != KZ_OK)
            abort();
    }
    kz__fleet_hello(edge, 1);
    for (int k = 0; k < 100 && !kz__fleet_synced(edge); k++)
        tick();
    if (!kz__fleet_synced(edge))
        abort();
    /* A new object, so that a TICK carries a record. */
    float pos[3] = {-4.0f, 0.0f, 1.0f};
    uint32_t id;
    if (kz_server_object_add(auth, pos, NULL, &id) != KZ_OK)
        abort();
    for (int k = 0; k < 3; k++)
        tick();
    const char *dir = getenv("KZ_FUZZ_BUS_SEEDS");
    if (dir)
        write_seeds(dir);
    ready = 1;
}

/* ---- invariants ------------------------------------------------------------ */

static void check_world(void)
{
    const kz__fleet *f = edge->fleet;
    for (uint32_t i = 0; i < edge->world.cap; i++) {
        const kz_snap_state *st = &f->rstate[i];
        if (st->entity && (kz_snap_state_check(&edge->world.codec, st) != KZ_OK ||
                           (st->entity & KZ_ENTITY_MAX) != i))
            abort();
    }
    const kz__fleet *a = auth->fleet;
    for (uint32_t w = 0; w < a->max_clients; w++) {
        const kz__wslot *ws = &a->ws[w];
        if (ws->edge && (ws->edge > KZ_BUS_MAX_EDGES || ws->eslot >= a->max_clients ||
                         a->peers[ws->edge].by_slot[ws->eslot] != w + 1u))
            abort();
    }
    for (uint32_t e = 1; e <= KZ_BUS_MAX_EDGES; e++)
        for (uint32_t slot = 0; slot < a->max_clients; slot++) {
            uint32_t v = a->peers[e].by_slot[slot];
            if (v && (v > a->max_clients || a->ws[v - 1u].edge != e || a->ws[v - 1u].eslot != slot))
                abort();
        }
}

static void check_header(const uint8_t *m, size_t len)
{
    if (len < 24)
        return;
    uint64_t w = get64(m + 16);  /* its own world: every later check is reached */
    uint32_t sender = (uint32_t)m[6] | (uint32_t)m[7] << 8;
    static const unsigned subjects[] = {KZ_BUS_SUBJECT_TICK, KZ_BUS_SUBJECT_UP,
                                        KZ_BUS_SUBJECT_DOWN};
    for (size_t k = 0; k < 3; k++) {
        kz_bus_header h;
        if (kz_bus_header_check(m, len, w, subjects[k], sender, &h) != KZ_BUS_OK)
            continue;
        uint8_t again[KZ_BUS_HEADER_BYTES];
        kz_bus_header_write(&h, again);
        if (h.length != len - KZ_BUS_HEADER_BYTES || h.seq == 0 || h.instance == 0 ||
            memcmp(again, m, sizeof again) != 0)
            abort();
    }
}

static void check_entities(const uint8_t *p, const uint8_t *end, uint32_t first, uint32_t range_end)
{
    int64_t after = (int64_t)first - 1;
    for (int k = 0; k < 64; k++) {
        const uint8_t *at = p;
        kz_bus_entity e;
        if (!kz_bus_entity_read(&edge->world.codec, &p, end, first, range_end, after, &e)) {
            if (p != at)
                abort();
            return;
        }
        size_t n = (size_t)(p - at);
        uint8_t again[2048];
        uint8_t *q = again;
        if (e.index < first || e.index >= range_end || (int64_t)e.index <= after ||
            n != kz_bus_entity_size(&e) || !kz_bus_entity_write(&e, &q, again + sizeof again) ||
            (size_t)(q - again) != n || memcmp(again, at, n) != 0)
            abort();
        after = e.index;
    }
}

static void check_body(const uint8_t *body, const uint8_t *end)
{
    const uint8_t *p = body;
    kz_bus_tick_head th;
    uint32_t first = 0, range_end = edge->world.cap;
    if (kz_bus_tick_head_read(&p, end, &th)) {
        uint8_t again[KZ_BUS_TICK_HEAD_BYTES];
        kz_bus_tick_head_write(&th, again);
        if (p != body + KZ_BUS_TICK_HEAD_BYTES || memcmp(again, body, sizeof again) != 0 ||
            th.tick == 0 || th.first >= th.end || th.count > th.end - th.first ||
            th.target > KZ_BUS_MAX_EDGES || (th.flags & ~(KZ_BUS_TICK_LAST | KZ_BUS_TICK_FULL)))
            abort();
        first = th.first;
        range_end = th.end;
        kz_bus_limits l;
        const uint8_t *lp = p;
        if ((th.flags & KZ_BUS_TICK_FULL) && kz_bus_limits_read(&lp, end, &l)) {
            uint8_t lb[KZ_BUS_LIMITS_BYTES];
            kz_bus_limits_write(&l, lb);
            if (lp != p + KZ_BUS_LIMITS_BYTES || memcmp(lb, p, sizeof lb) != 0)
                abort();
            p = lp;
        }
    } else if (p != body) {
        abort();
    }
    check_entities(p, end, first, range_end);
    /* The same bytes as DOWN and BATCH records, after their heads. */
    for (int up = 0; up < 2; up++) {
        size_t head = up ? KZ_BUS_BATCH_HEAD_BYTES : KZ_BUS_DOWN_HEAD_BYTES;
        if ((size_t)(end - body) < head)
            continue;
        p = body + head;
        for (int k = 0; k < 64; k++) {
            const uint8_t *at = p;
            kz_bus_rec r;
            if (!kz_bus_rec_read(&p, end, up, &r)) {
                if (p != at)
                    abort();
                break;
            }
            size_t rh = up ? KZ_BUS_UP_REC_BYTES : KZ_BUS_REC_BYTES;
            static uint8_t again[KZ_BUS_UP_REC_BYTES + 65535u];
            uint8_t *q = again;
            if (r.body != at + rh || p != r.body + r.len ||
                !kz_bus_rec_write(&r, up, &q, again + sizeof again) ||
                (size_t)(q - again) != (size_t)(p - at) || memcmp(again, at, (size_t)(p - at)) != 0)
                abort();
        }
    }
}

/* ---- one input ------------------------------------------------------------- */

/* Sets m's header to what the receiver at `where` takes next. */
static void freshen(uint8_t *m, size_t len, unsigned where, uint32_t e)
{
    if (len < KZ_BUS_HEADER_BYTES)
        return;
    kz_bus_header h = {.type = m[5], .length = (uint32_t)(len - KZ_BUS_HEADER_BYTES),
                       .world = world};
    if (where == FZ_WHERE_UP) {
        const kz__peer *p = &auth->fleet->peers[e <= KZ_BUS_MAX_EDGES ? e : 0];
        uint64_t inst = get64(m + 24);
        h.sender = (uint16_t)e;
        h.instance = p->instance ? p->instance : inst ? inst : FZ_EDGE_INSTANCE;
        h.epoch = FZ_EPOCH;
        h.seq = p->seq + 1u;
    } else {
        const kz__fleet *f = edge->fleet;
        h.instance = f->auth_instance ? f->auth_instance : FZ_AUTH_INSTANCE;
        h.epoch = f->auth_instance ? f->auth_epoch : FZ_EPOCH;
        h.seq = (where == FZ_WHERE_DOWN ? f->auth_seq_down : f->auth_seq_tick) + 1u;
    }
    kz_bus_header_write(&h, m);
}

static void offer(unsigned where, uint32_t e, int fresh, const uint8_t *msg, size_t len)
{
    uint8_t *m = malloc(len ? len : 1);
    if (!m)
        abort();
    if (len)
        memcpy(m, msg, len);
    if (fresh)
        freshen(m, len, where, e);
    if (where == FZ_WHERE_UP)
        (void)deliver(auth, KZ_BUS_SUBJECT_UP, e, m, len);
    else if (where == FZ_WHERE_TICK)
        (void)deliver(edge, KZ_BUS_SUBJECT_TICK, 0, m, len);
    else
        (void)deliver(edge, KZ_BUS_SUBJECT_DOWN, 1, m, len);
    free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        setup();
    if (size < 1)
        return 0;
    uint8_t how = data[0];
    const uint8_t *msg = data + 1;
    size_t len = size - 1;
    check_header(msg, len);
    check_body(len >= KZ_BUS_HEADER_BYTES ? msg + KZ_BUS_HEADER_BYTES : msg, msg + len);
    unsigned where = how & 3u;
    uint32_t e = how >> 4;
    int fresh = (how & FZ_FRESH) != 0;
    if (where == FZ_WHERE_ALL) {
        offer(FZ_WHERE_UP, e, fresh, msg, len);
        offer(FZ_WHERE_TICK, 0, fresh, msg, len);
        offer(FZ_WHERE_DOWN, 1, fresh, msg, len);
    } else {
        offer(where, e, fresh, msg, len);
    }
    if (how & FZ_STEP)
        tick();
    check_world();
    return 0;
}

/* ---- seeds ------------------------------------------------------------------ */

static void seed_file(const char *dir, const char *name, uint8_t how, const uint8_t *msg,
                      size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (fwrite(&how, 1, 1, f) != 1 || fwrite(msg, 1, len, f) != len)
        abort();
    fclose(f);
}

/* A message of `type` from `sender` with the body given (seq 1: the
 * fresh-header bit makes it current). */
static size_t seed_msg(uint8_t *out, uint8_t type, uint16_t sender, uint64_t instance,
                       const uint8_t *body, size_t n)
{
    kz_bus_header h = {.type = type, .sender = sender, .length = (uint32_t)n, .world = world,
                       .instance = instance, .epoch = FZ_EPOCH, .seq = 1};
    kz_bus_header_write(&h, out);
    memcpy(out + KZ_BUS_HEADER_BYTES, body, n);
    return KZ_BUS_HEADER_BYTES + n;
}

static void write_seeds(const char *dir)
{
    static uint8_t out[KZ_BUS_HEADER_BYTES + 8192];
    uint8_t body[8192];
    if (!seen_tick_len || !seen_sync_len)
        abort();
    seed_file(dir, "tick_with_object", FZ_WHERE_TICK | FZ_FRESH, seen_tick, seen_tick_len);
    seed_file(dir, "tick_then_step", FZ_WHERE_TICK | FZ_FRESH | FZ_STEP, seen_tick,
              seen_tick_len);
    seed_file(dir, "sync", FZ_WHERE_TICK | FZ_FRESH, seen_sync, seen_sync_len);

    /* DOWN: a session's avatar, a message, a kick and chat near an avatar. */
    uint8_t *p = body + KZ_BUS_DOWN_HEAD_BYTES;
    uint8_t b4[4], send[4] = {4, 'h', 'e', 'y'}, near[10] = {4, 1, 0, 0, 0x20, 0x41, 'y', 'o', 0, 0};
    kz_bus_put32(b4, 4);
    kz_bus_rec recs[4] = {
        {.kind = KZ_BUS_D_SESSION, .len = 4, .slot = 0, .serial = 1, .body = b4},
        {.kind = KZ_BUS_D_SEND, .sub = 2, .len = sizeof send, .slot = 0, .serial = 1,
         .body = send},
        {.kind = KZ_BUS_D_KICK, .len = 4, .slot = 0, .serial = 1, .body = b4},
        {.kind = KZ_BUS_D_NEAR, .sub = 2, .len = 8, .slot = 3, .serial = 0, .body = near},
    };
    for (int k = 0; k < 4; k++)
        if (!kz_bus_rec_write(&recs[k], 0, &p, body + sizeof body))
            abort();
    kz_bus_put32(body, 1);
    kz_bus_put32(body + 4, 4);
    memset(body + 8, 0, 4);
    body[8] = 1;
    size_t n = seed_msg(out, KZ_BUS_DOWN, 0, FZ_AUTH_INSTANCE, body, (size_t)(p - body));
    seed_file(dir, "down_records", FZ_WHERE_DOWN | FZ_FRESH, out, n);

    /* HELLO from edge 2, and a BATCH of edge 1 with every record kind. */
    uint8_t hello[12] = {1, 0, 0, 0};
    put64(hello + 4, 3000);
    n = seed_msg(out, KZ_BUS_HELLO, 2, 0xE2E2E2, hello, sizeof hello);
    seed_file(dir, "hello_edge2", FZ_WHERE_UP | FZ_FRESH | (2u << 4), out, n);
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = FZ_PROTO;
    t.create_time = 1700000000;
    t.expire_time = t.create_time + 600;
    t.server_id = FZ_SERVER_ID;
    t.n_addresses = 1;
    t.addresses[0].family = KZ_ADDR_IPV4;
    t.addresses[0].ip[0] = 127;
    t.addresses[0].ip[3] = 1;
    t.addresses[0].port = 40000;
    t.client_id = 77;
    t.avatar_id = 1077;
    strcpy(t.name, "fuzz-77");
    strcpy(t.claims.method, "none");
    uint8_t claims[KZ_BUS_CLAIMS_MAX];
    size_t cn = kz__token_claims_write(&t, claims, sizeof claims);
    if (!cn)
        abort();
    static const uint8_t chat[2] = {'h', 'i'};
    kz_bus_rec up[5] = {
        {.kind = KZ_BUS_U_JOIN, .len = (uint16_t)cn, .slot = 0, .serial = 1, .body = claims},
        {.kind = KZ_BUS_U_MSG, .sub = 4, .len = 2, .slot = 0, .serial = 1, .age_us = 500,
         .body = chat},
        {.kind = KZ_BUS_U_DETACH, .slot = 0, .serial = 1},
        {.kind = KZ_BUS_U_ATTACH, .slot = 0, .serial = 1},
        {.kind = KZ_BUS_U_LEAVE, .sub = 2, .slot = 0, .serial = 1},
    };
    p = body + KZ_BUS_BATCH_HEAD_BYTES;
    for (int k = 0; k < 5; k++)
        if (!kz_bus_rec_write(&up[k], 1, &p, body + sizeof body))
            abort();
    kz_bus_put32(body, 1);
    kz_bus_put32(body + 4, 5);
    n = seed_msg(out, KZ_BUS_BATCH, 1, FZ_EDGE_INSTANCE, body, (size_t)(p - body));
    seed_file(dir, "batch_every_kind", FZ_WHERE_UP | FZ_FRESH | (1u << 4), out, n);
    /* The JOIN alone, then a tick. */
    p = body + KZ_BUS_BATCH_HEAD_BYTES;
    if (!kz_bus_rec_write(&up[0], 1, &p, body + sizeof body))
        abort();
    kz_bus_put32(body + 4, 1);
    n = seed_msg(out, KZ_BUS_BATCH, 1, FZ_EDGE_INSTANCE, body, (size_t)(p - body));
    seed_file(dir, "batch_join_then_step", FZ_WHERE_UP | FZ_FRESH | FZ_STEP | (1u << 4), out, n);
}
