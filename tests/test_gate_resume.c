/*
 * The gate's resume and replace paths (docs/PROTOCOL.md 4a) under honest
 * and hostile traffic, at the gate's own entry point: a session moved to a
 * proven address by a RESUME; replayed, forged and copied tickets; tickets
 * of ended sessions; resume turned off; malformed RESUMEs; a flood of
 * spoofed RESUMEs; a client restarted with its token file, which replaces
 * its old session. Every step checks every gate counter (each one moved by
 * exactly what the step explains, the others not at all) and the slots
 * field by field.
 */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "net/gate.h"

#define UNIX_NOW 1800000000ull
#define PROTO 0x4b5a000000000001ull
#define SERVER_ID 77
/* Eight slots (8-byte aligned) fill whole 64-byte lines, so in the
 * sanitizer build a read one slot past the table is past the allocation. */
#define MAX_SESSIONS 8u
#define GRACE_MS 15000u
#define TOKEN_LIFE_S 3600u
#define CREATED (UNIX_NOW - 5)
/* A restarted client process asks again some seconds after the crash. */
#define RESTART_DELAY_NS (12 * KZ_NS_PER_S)
#define FLOOD_DATAGRAMS 10000u

typedef struct {
    kz_sign_keypair backend;
    kz_box_keypair server;
    kz_counting_alloc ca;
    kz__gate *gate;
    kz_time_ns now;
} fixture;

static fixture fx;

static const char *const counter_names[KZ_GATE_C_COUNT] = {
#define NAME(id, name) name,
    KZ_GATE_COUNTERS(NAME)
#undef NAME
};

static kz__gate *make_gate(uint32_t resume_grace_ms)
{
    kz__gate_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.verifier.protocol_id = PROTO;
    cfg.verifier.server_id = SERVER_ID;
    memcpy(cfg.verifier.backend_pk, fx.backend.public_key, 32);
    cfg.verifier.server_keys = fx.server;
    cfg.max_sessions = MAX_SESSIONS;
    cfg.n_ports = 1;
    cfg.ports[0] = 40000;
    cfg.resume_grace_ms = resume_grace_ms;
    cfg.alloc = kz_counting_alloc_allocator(&fx.ca);
    kz__gate *g = kz__gate_create(&cfg);
    cr_assert_not_null(g);
    return g;
}

static void setup(void)
{
    memset(&fx, 0, sizeof fx);
    cr_assert_eq(kz_sign_keypair_generate(&fx.backend), KZ_OK);
    cr_assert_eq(kz_box_keypair_generate(&fx.server), KZ_OK);
    kz_counting_alloc_init(&fx.ca, NULL);
    fx.gate = make_gate(GRACE_MS);
    fx.now = 1000 * KZ_NS_PER_S;
}

static void teardown(void)
{
    kz__gate_destroy(fx.gate);
    cr_assert_eq(kz_counting_alloc_live_bytes(&fx.ca), 0, "the gate frees all it took");
}

/* The same gate with resume off (resume_grace_ms = 0). */
static void use_resume_off(void)
{
    kz__gate_destroy(fx.gate);
    fx.gate = make_gate(0);
}

TestSuite(gate_resume, .init = setup, .fini = teardown);

/* ---- counters ------------------------------------------------------------ */

static uint64_t counter(uint32_t id)
{
    return kz_counters_get(kz__gate_counters(fx.gate), id);
}

typedef struct {
    uint64_t v[KZ_GATE_C_COUNT];
} counts;

static counts counts_now(void)
{
    counts c;
    for (uint32_t id = 0; id < KZ_GATE_C_COUNT; id++)
        c.v[id] = counter(id);
    return c;
}

typedef struct {
    uint32_t id;
    uint64_t by;
} moved_by;

/* Every counter moved since `before` by exactly what `m` lists (entries
 * for one counter add up), and every other counter not at all. */
static void expect_counters(const counts *before, const moved_by *m, size_t n, int line)
{
    for (uint32_t id = 0; id < KZ_GATE_C_COUNT; id++) {
        uint64_t want = 0;
        for (size_t i = 0; i < n; i++)
            if (m[i].id == id)
                want += m[i].by;
        uint64_t got = counter(id) - before->v[id];
        cr_assert_eq(got, want, "line %d: %s moved by %llu, expected %llu", line,
                     counter_names[id], (unsigned long long)got, (unsigned long long)want);
    }
}

#define EXPECT_COUNTERS(before, ...)                                                       \
    expect_counters((before), (const moved_by[]){__VA_ARGS__},                            \
                    sizeof((const moved_by[]){__VA_ARGS__}) / sizeof(moved_by), __LINE__)

/* What one received datagram of each kind adds, and each kind of answer. */
#define RX_RESUME {KZ_GATE_C_RX_DATAGRAMS, 1}, {KZ_GATE_C_RX_BYTES, KZ_GATE_RESUME_BYTES}
#define RX_REQUEST {KZ_GATE_C_RX_DATAGRAMS, 1}, {KZ_GATE_C_RX_BYTES, KZ_GATE_REQUEST_BYTES}
#define TX_CHALLENGE {KZ_GATE_C_CHALLENGES, 1}, {KZ_GATE_C_TX_BYTES, KZ_GATE_CHALLENGE_BYTES}
#define TX_DENY {KZ_GATE_C_DENIES, 1}, {KZ_GATE_C_TX_BYTES, KZ_GATE_DENY_BYTES}
/* Answers to a RESUME carry its proof, echoed. */
#define TX_RCHALLENGE {KZ_GATE_C_CHALLENGES, 1}, {KZ_GATE_C_TX_BYTES, KZ_GATE_RESUME_CHALLENGE_BYTES}
#define TX_RDENY {KZ_GATE_C_DENIES, 1}, {KZ_GATE_C_TX_BYTES, KZ_GATE_RESUME_DENY_BYTES}
#define TX_RESUMED {KZ_GATE_C_TX_BYTES, KZ_GATE_RESUMED_BYTES}
#define TX_ACCEPT {KZ_GATE_C_ACCEPTS, 1}, {KZ_GATE_C_TX_BYTES, KZ_GATE_ACCEPT_BYTES}

/* ---- slots --------------------------------------------------------------- */

typedef struct {
    kz__gate_slot s[MAX_SESSIONS];
} image;

static image image_now(void)
{
    image im;
    for (uint32_t i = 0; i < MAX_SESSIONS; i++)
        im.s[i] = *kz__gate_slot_at(fx.gate, i);
    return im;
}

static void expect_addr(const kz_address *got, const kz_address *want, const char *what)
{
    cr_assert_eq(got->family, want->family, "%s: family", what);
    cr_assert_arr_eq(got->ip, want->ip, sizeof want->ip, "%s: ip", what);
    cr_assert_eq(got->port, want->port, "%s: port", what);
}

static void expect_ticket(const kz__ticket *got, const kz__ticket *want, const char *what)
{
    cr_assert_eq(got->slot, want->slot, "%s: ticket slot", what);
    cr_assert_eq(got->path, want->path, "%s: ticket path", what);
    cr_assert_eq(got->session_id, want->session_id, "%s: ticket session id", what);
    cr_assert_arr_eq(got->secret, want->secret, sizeof want->secret, "%s: ticket secret", what);
}

static void expect_info(const kz_token_info *got, const kz_token_info *want, const char *what)
{
    cr_assert_eq(got->protocol_id, want->protocol_id, "%s: protocol id", what);
    cr_assert_eq(got->create_time, want->create_time, "%s: create time", what);
    cr_assert_eq(got->expire_time, want->expire_time, "%s: expire time", what);
    cr_assert_arr_eq(got->nonce, want->nonce, sizeof want->nonce, "%s: token nonce", what);
    cr_assert_eq(got->server_id, want->server_id, "%s: server id", what);
    cr_assert_eq(got->timeout_seconds, want->timeout_seconds, "%s: timeout", what);
    cr_assert_eq(got->client_id, want->client_id, "%s: client id", what);
    cr_assert_eq(got->avatar_id, want->avatar_id, "%s: avatar id", what);
    cr_assert_str_eq(got->name, want->name, "%s: name", what);
}

static void expect_keys(const kz_session_keys *got, const kz_session_keys *want, const char *what)
{
    cr_assert_arr_eq(got->client_to_server, want->client_to_server, KZ_KEY_BYTES, "%s: key c2s",
                     what);
    cr_assert_arr_eq(got->server_to_client, want->server_to_client, KZ_KEY_BYTES, "%s: key s2c",
                     what);
}

/* Every field of a slot. */
static void expect_slot(const kz__gate_slot *got, const kz__gate_slot *want, const char *what)
{
    cr_assert_eq(got->state, want->state, "%s: state", what);
    cr_assert_eq(got->alg, want->alg, "%s: alg", what);
    cr_assert_eq(got->port, want->port, "%s: port", what);
    expect_addr(&got->addr, &want->addr, what);
    cr_assert_eq(got->session_id, want->session_id, "%s: session id", what);
    cr_assert_eq(got->pending_deadline, want->pending_deadline, "%s: pending deadline", what);
    cr_assert_arr_eq(got->token_hash, want->token_hash, 16, "%s: token hash", what);
    cr_assert_eq(got->connect_tag, want->connect_tag, "%s: connect tag", what);
    cr_assert_eq(got->connect_id_set, want->connect_id_set, "%s: connect id set", what);
    cr_assert_arr_eq(got->connect_id, want->connect_id, 4, "%s: connect id", what);
    cr_assert_arr_eq(got->mac.client_to_server.key, want->mac.client_to_server.key,
                     KZ_ENET_MAC_KEY_BYTES, "%s: ENet MAC key c2s", what);
    cr_assert_arr_eq(got->mac.server_to_client.key, want->mac.server_to_client.key,
                     KZ_ENET_MAC_KEY_BYTES, "%s: ENet MAC key s2c", what);
    expect_keys(&got->keys, &want->keys, what);
    expect_info(&got->info, &want->info, what);
    expect_ticket(&got->ticket, &want->ticket, what);
    cr_assert_arr_eq(got->prev_secret, want->prev_secret, 16, "%s: previous secret", what);
    cr_assert_eq(got->ending, want->ending, "%s: ending", what);
    cr_assert_eq(got->replace, want->replace, "%s: replace", what);
    cr_assert_eq(got->silent, want->silent, "%s: silent", what);
    cr_assert_arr_eq(got->admit_cookie, want->admit_cookie, KZ_COOKIE_BYTES, "%s: admit cookie",
                     what);
}

/* Every slot as in `want`, and every held slot found from its address. */
static void expect_image(const image *want, int line)
{
    image got = image_now();
    char what[64];
    for (uint32_t i = 0; i < MAX_SESSIONS; i++) {
        snprintf(what, sizeof what, "line %d, slot %u", line, i);
        expect_slot(&got.s[i], &want->s[i], what);
        if (want->s[i].state != KZ_SLOT_FREE)
            cr_assert_eq(kz__gate_slot_index(fx.gate, &want->s[i].addr), (int32_t)i,
                         "%s: its address maps to it", what);
    }
}

#define EXPECT_UNCHANGED(im) expect_image((im), __LINE__)

/* ---- addresses, tokens, sessions ------------------------------------------ */

static kz_address addr4(uint8_t a, uint8_t b, uint16_t port)
{
    kz_address x;
    memset(&x, 0, sizeof x);
    x.family = KZ_ADDR_IPV4;
    x.ip[0] = 10;
    x.ip[1] = a;
    x.ip[2] = b;
    x.ip[3] = 1;
    x.port = port;
    return x;
}

static kz_address addr6(uint8_t tag, uint16_t port)
{
    kz_address x;
    memset(&x, 0, sizeof x);
    x.family = KZ_ADDR_IPV6;
    x.ip[0] = 0x20;
    x.ip[1] = 0x01;
    x.ip[2] = 0x0d;
    x.ip[3] = 0xb8;
    x.ip[15] = tag;
    x.port = port;
    return x;
}

static kz_connect_token token_at(uint64_t client_id, uint64_t create_time)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = PROTO;
    t.create_time = create_time;
    t.expire_time = UNIX_NOW + TOKEN_LIFE_S;
    t.server_id = SERVER_ID;
    t.timeout_seconds = 10;
    t.n_addresses = 1;
    cr_assert_eq(kz_address_parse("127.0.0.1:40000", &t.addresses[0]), KZ_OK);
    t.client_id = client_id;
    t.avatar_id = client_id;
    strcpy(t.name, "mover");
    strcpy(t.claims.method, "none");
    kz_connect_token ct;
    size_t len;
    cr_assert_eq(kz_token_mint(&t, fx.backend.secret_key, fx.server.public_key, &ct.keys,
                               ct.token, sizeof ct.token, &len),
                 KZ_OK);
    ct.token_len = (uint16_t)len;
    return ct;
}

static kz__gate_action gate_send(const kz_address *from, const uint8_t *d, size_t len,
                                 uint8_t reply[KZ_GATE_REQUEST_BYTES], size_t *rlen)
{
    return kz__gate_datagram(fx.gate, from, d, len, fx.now, UNIX_NOW, reply,
                             KZ_GATE_REQUEST_BYTES, rlen);
}

/* One REQUEST of handshake `hs` from `from`, its reply fed back. */
static kz__gate_action request_step(kz__handshake *hs, const kz_address *from, size_t *rlen)
{
    uint8_t req[KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t n = kz__handshake_request(hs, req);
    kz__gate_action act = gate_send(from, req, n, reply, rlen);
    if (act == KZ_GATE_REPLY) {
        cr_assert_lt(*rlen, n, "a reply is smaller than the request");
        (void)kz__handshake_receive(hs, reply, *rlen);
    }
    return act;
}

/* A session as its client knows it. */
typedef struct {
    kz_connect_token ct;
    kz_address addr;
    uint32_t slot;
    uint64_t session_id;
    uint8_t ticket[KZ_TICKET_BYTES];
} session;

/* REQUEST -> CHALLENGE -> REQUEST -> ACCEPT from `from`; then, when
 * `connect`, the ENet connect completes. The ticket is the slot's. */
static session admit_token(const kz_connect_token *ct, const kz_address *from, int connect)
{
    session s;
    memset(&s, 0, sizeof s);
    s.ct = *ct;
    s.addr = *from;
    kz__handshake hs;
    size_t rlen;
    cr_assert_eq(kz__handshake_init(&hs, ct), KZ_OK);
    cr_assert_eq(request_step(&hs, from, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_CHALLENGE_BYTES);
    cr_assert_eq(request_step(&hs, from, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_ACCEPT_BYTES);
    cr_assert_eq(hs.state, KZ_HS_ACCEPTED);
    s.slot = hs.slot;
    s.session_id = hs.session_id;
    if (connect)
        cr_assert_eq(kz__gate_mark_connected(fx.gate, from), (int32_t)hs.slot);
    kz__ticket_pack(&kz__gate_slot_at(fx.gate, s.slot)->ticket, s.ticket);
    return s;
}

static session admit(uint64_t client_id, const kz_address *from)
{
    kz_connect_token ct = token_at(client_id, CREATED);
    return admit_token(&ct, from, 1);
}

static kz__ticket unpacked(const uint8_t bytes[KZ_TICKET_BYTES])
{
    kz__ticket t;
    kz__ticket_unpack(bytes, &t);
    return t;
}

/* A cookie for `from`, as a client gets it: a RESUME without one is
 * answered with a CHALLENGE. */
static void cookie_for(const kz_address *from, uint8_t cookie[KZ_COOKIE_BYTES])
{
    uint8_t d[KZ_GATE_RESUME_BYTES], reply[KZ_GATE_REQUEST_BYTES], junk[KZ_TICKET_BYTES] = {0};
    kz_session_keys keys;
    memset(&keys, 0x5a, sizeof keys);
    size_t rlen;
    kz__resume_build(&keys, NULL, junk, d);
    cr_assert_eq(gate_send(from, d, sizeof d, reply, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_RESUME_CHALLENGE_BYTES);
    cr_assert_arr_eq(reply + KZ_GATE_CHALLENGE_BYTES, d + KZ_GATE_RESUME_FIXED_BYTES -
                     KZ_RESUME_PROOF_BYTES, KZ_RESUME_PROOF_BYTES, "the RESUME's proof, echoed");
    cr_assert_eq(reply[2], KZ_GATE_CHALLENGE);
    memcpy(cookie, reply + KZ_GATE_HEADER_BYTES, KZ_COOKIE_BYTES);
}

/* Sends a RESUME of `ticket` made with `keys` from `from` (with a cookie
 * for `from` fetched first when `fetch_cookie`); the action, the reply in
 * `reply`. Every reply is smaller than the RESUME. */
static kz__gate_action resume_from(const kz_session_keys *keys, const uint8_t *ticket,
                                   const kz_address *from, const uint8_t *cookie,
                                   uint8_t reply[KZ_GATE_REQUEST_BYTES], size_t *rlen)
{
    uint8_t d[KZ_GATE_RESUME_BYTES];
    kz__resume_build(keys, cookie, ticket, d);
    kz__gate_action act = gate_send(from, d, sizeof d, reply, rlen);
    if (act == KZ_GATE_REPLY)
        cr_assert_lt(*rlen, sizeof d, "a reply is smaller than the RESUME");
    else
        cr_assert_eq(*rlen, 0, "no reply with a drop");
    return act;
}

static void expect_deny(kz__gate_action act, const uint8_t *reply, size_t rlen, uint8_t reason)
{
    cr_assert_eq(act, KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_RESUME_DENY_BYTES, "a DENY with the RESUME's proof echoed");
    cr_assert_eq(reply[2], KZ_GATE_DENY);
    cr_assert_eq(reply[KZ_GATE_HEADER_BYTES], reason, "deny reason %u, expected %u",
                 reply[KZ_GATE_HEADER_BYTES], reason);
}

/* An ENet datagram for peer 1 (not a connect). */
static kz__gate_action enet_from(const kz_address *from)
{
    uint8_t enet[16] = {0x80, 0x01}, reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    return gate_send(from, enet, sizeof enet, reply, &rlen);
}

/* Moves session `s` to `to` with its ticket: the datagram that moved it in
 * `resume` (for replays), its RESUMED opened into s->ticket. */
static void move_session(session *s, const kz_address *to, uint8_t resume[KZ_GATE_RESUME_BYTES])
{
    uint8_t cookie[KZ_COOKIE_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    cookie_for(to, cookie);
    kz__resume_build(&s->ct.keys, cookie, s->ticket, resume);
    cr_assert_eq(gate_send(to, resume, KZ_GATE_RESUME_BYTES, reply, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_RESUMED_BYTES);
    cr_assert_eq(kz__resumed_open(&s->ct.keys, reply, rlen, s->ticket), KZ_OK);
    cr_assert_eq(kz__gate_moved_slot(fx.gate), (int32_t)s->slot);
    s->addr = *to;
}

/* ---- 1. a move ------------------------------------------------------------ */

Test(gate_resume, a_resume_from_a_new_address_is_challenged_then_moves_the_session)
{
    kz_address a = addr4(1, 0, 5000), b = addr4(1, 1, 6000);
    session s = admit(1, &a);
    image before = image_now();
    const kz__gate_slot *slot = kz__gate_slot_at(fx.gate, s.slot);
    cr_assert_eq(slot->state, KZ_SLOT_CONNECTED);
    cr_assert_eq(slot->ticket.path, 1);
    cr_assert_eq(slot->ticket.slot, s.slot);
    cr_assert_eq(slot->ticket.session_id, s.session_id);

    /* No cookie: a CHALLENGE, smaller than the RESUME, and nothing moves. */
    uint8_t reply[KZ_GATE_REQUEST_BYTES], cookie[KZ_COOKIE_BYTES];
    size_t rlen;
    counts c = counts_now();
    cr_assert_eq(resume_from(&s.ct.keys, s.ticket, &b, NULL, reply, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_RESUME_CHALLENGE_BYTES);
    cr_assert_eq(reply[2], KZ_GATE_CHALLENGE);
    cr_assert_eq(kz__gate_moved_slot(fx.gate), -1);
    EXPECT_COUNTERS(&c, RX_RESUME, TX_RCHALLENGE);
    EXPECT_UNCHANGED(&before);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &b), -1);
    memcpy(cookie, reply + KZ_GATE_HEADER_BYTES, sizeof cookie);

    /* With the cookie and the keys: RESUMED, the session is at b. */
    c = counts_now();
    cr_assert_eq(resume_from(&s.ct.keys, s.ticket, &b, cookie, reply, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_RESUMED_BYTES);
    cr_assert_eq(reply[2], KZ_GATE_RESUMED);
    EXPECT_COUNTERS(&c, RX_RESUME, TX_RESUMED, {KZ_GATE_C_RESUMES, 1});
    cr_assert_eq(kz__gate_moved_slot(fx.gate), (int32_t)s.slot);
    uint8_t next[KZ_TICKET_BYTES];
    kz_session_keys other;
    memset(&other, 0x77, sizeof other);
    cr_assert_eq(kz__resumed_open(&other, reply, rlen, next), KZ_EAUTH,
                 "only the client's keys open the RESUMED");
    cr_assert_eq(kz__resumed_open(&s.ct.keys, reply, rlen, next), KZ_OK);
    kz__ticket old = unpacked(s.ticket), fresh = unpacked(next);
    cr_assert_eq(fresh.slot, s.slot);
    cr_assert_eq(fresh.path, old.path + 1);
    cr_assert_eq(fresh.session_id, s.session_id);
    cr_assert(memcmp(fresh.secret, old.secret, sizeof old.secret) != 0, "a new secret");

    /* The slot: only the address, the ticket and the previous secret moved. */
    image want = before;
    kz__gate_slot *w = &want.s[s.slot];
    w->addr = b;
    w->ticket = fresh;
    memcpy(w->prev_secret, old.secret, sizeof old.secret);
    EXPECT_UNCHANGED(&want);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &b), (int32_t)s.slot);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &a), -1, "the old address maps to nothing");
    cr_assert_eq(kz__gate_sessions(fx.gate), 1);

    /* ENet traffic: from the new address it passes, from the old one not. */
    c = counts_now();
    cr_assert_eq(enet_from(&b), KZ_GATE_PASS);
    cr_assert_eq(kz__gate_moved_slot(fx.gate), -1, "reset by the next datagram");
    cr_assert_eq(enet_from(&a), KZ_GATE_DROP);
    EXPECT_COUNTERS(&c, {KZ_GATE_C_RX_DATAGRAMS, 2}, {KZ_GATE_C_RX_BYTES, 32},
                    {KZ_GATE_C_PASSED, 1}, {KZ_GATE_C_DROP_UNVALIDATED, 1});
}

/* A phone moves from Wi-Fi (IPv4) to LTE (IPv6) and back: each move uses
 * the newest ticket, and each old address is forgotten. */
Test(gate_resume, a_session_moves_across_address_families_with_each_new_ticket)
{
    kz_address path[4] = {addr4(2, 0, 5000), addr6(1, 7000), addr6(2, 7000), addr4(2, 1, 5001)};
    session s = admit(2, &path[0]);
    uint8_t resume[KZ_GATE_RESUME_BYTES];
    for (uint32_t i = 1; i < 4; i++) {
        counts c = counts_now();
        move_session(&s, &path[i], resume);
        EXPECT_COUNTERS(&c, RX_RESUME, TX_RCHALLENGE, RX_RESUME, TX_RESUMED,
                        {KZ_GATE_C_RESUMES, 1});
        const kz__gate_slot *slot = kz__gate_slot_at(fx.gate, s.slot);
        expect_addr(&slot->addr, &path[i], "moved");
        cr_assert_eq(slot->ticket.path, i + 1);
        kz__ticket held = unpacked(s.ticket);
        expect_ticket(&held, &slot->ticket, "the client holds the slot's ticket");
        cr_assert_eq(kz__gate_slot_index(fx.gate, &path[i]), (int32_t)s.slot);
        cr_assert_eq(kz__gate_slot_index(fx.gate, &path[i - 1]), -1);
    }
    /* The same address again with the current ticket: RESUMED, nothing moves. */
    image before = image_now();
    uint8_t cookie[KZ_COOKIE_BYTES], reply[KZ_GATE_REQUEST_BYTES], again[KZ_TICKET_BYTES];
    size_t rlen;
    cookie_for(&path[3], cookie);
    counts c = counts_now();
    cr_assert_eq(resume_from(&s.ct.keys, s.ticket, &path[3], cookie, reply, &rlen),
                 KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_RESUMED_BYTES);
    cr_assert_eq(kz__resumed_open(&s.ct.keys, reply, rlen, again), KZ_OK);
    cr_assert_arr_eq(again, s.ticket, KZ_TICKET_BYTES, "the current ticket, not used up");
    cr_assert_eq(kz__gate_moved_slot(fx.gate), -1);
    EXPECT_COUNTERS(&c, RX_RESUME, TX_RESUMED, {KZ_GATE_C_RESUME_SAME, 1});
    EXPECT_UNCHANGED(&before);
}

/* Moves free the old address's entry: a session moved many more times
 * than there are slots still maps from its address, and the table still
 * takes every other slot's client. */
Test(gate_resume, many_moves_do_not_use_up_the_address_table)
{
    kz_address a = addr4(2, 2, 5000);
    session s = admit(28, &a);
    uint8_t resume[KZ_GATE_RESUME_BYTES];
    for (uint16_t i = 1; i <= 5 * MAX_SESSIONS; i++) {
        kz_address to = i % 2 ? addr6((uint8_t)i, (uint16_t)(7000 + i))
                              : addr4(2, 2, (uint16_t)(5000 + i));
        kz_address from = s.addr;
        move_session(&s, &to, resume);
        cr_assert_eq(kz__gate_slot_index(fx.gate, &to), (int32_t)s.slot, "move %u", i);
        cr_assert_eq(kz__gate_slot_index(fx.gate, &from), -1, "move %u", i);
        cr_assert_eq(enet_from(&to), KZ_GATE_PASS, "move %u", i);
    }
    cr_assert_eq(counter(KZ_GATE_C_RESUMES), 5 * MAX_SESSIONS);
    for (uint8_t i = 1; i < MAX_SESSIONS; i++) {
        kz_address other = addr4(2, (uint8_t)(10 + i), 5000);
        session o = admit(28 + i, &other);
        cr_assert_eq(kz__gate_slot_index(fx.gate, &other), (int32_t)o.slot);
    }
    cr_assert_eq(kz__gate_sessions(fx.gate), MAX_SESSIONS);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &s.addr), (int32_t)s.slot);
}

/* ---- 2. replays ------------------------------------------------------------ */

Test(gate_resume, a_replayed_resume_gets_the_current_ticket_and_elsewhere_nothing)
{
    kz_address a = addr4(3, 0, 5000), b = addr4(3, 1, 6000), third = addr4(3, 2, 7000);
    session s = admit(3, &a);
    uint8_t first_ticket[KZ_TICKET_BYTES], resume[KZ_GATE_RESUME_BYTES];
    memcpy(first_ticket, s.ticket, sizeof first_ticket);
    move_session(&s, &b, resume);
    image moved = image_now();

    /* The same datagram again from b (its RESUMED was lost): RESUMED again
     * with the current ticket; nothing moves. */
    uint8_t reply[KZ_GATE_REQUEST_BYTES], again[KZ_TICKET_BYTES];
    size_t rlen;
    counts c = counts_now();
    cr_assert_eq(gate_send(&b, resume, sizeof resume, reply, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_RESUMED_BYTES);
    cr_assert_eq(kz__resumed_open(&s.ct.keys, reply, rlen, again), KZ_OK);
    cr_assert_arr_eq(again, s.ticket, KZ_TICKET_BYTES, "the current ticket");
    cr_assert_eq(kz__gate_moved_slot(fx.gate), -1);
    EXPECT_COUNTERS(&c, RX_RESUME, TX_RESUMED, {KZ_GATE_C_RESUME_RESENT, 1});
    EXPECT_UNCHANGED(&moved);

    /* The previous ticket from a third address, with a cookie for it and
     * the keys: the client changed address again before the RESUMED that
     * handed over the current ticket reached it. The session moves. */
    uint8_t cookie[KZ_COOKIE_BYTES];
    cookie_for(&third, cookie);
    c = counts_now();
    kz__gate_action act = resume_from(&s.ct.keys, first_ticket, &third, cookie, reply, &rlen);
    cr_assert_eq(act, KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_RESUMED_BYTES);
    cr_assert_eq(kz__resumed_open(&s.ct.keys, reply, rlen, s.ticket), KZ_OK);
    cr_assert_eq(kz__gate_moved_slot(fx.gate), (int32_t)s.slot);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &third), (int32_t)s.slot);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &b), -1);
    EXPECT_COUNTERS(&c, RX_RESUME, TX_RESUMED, {KZ_GATE_C_RESUMES, 1});
    s.addr = third;
    image twice = image_now();

    /* Now the first ticket is two paths old: refused from anywhere, the
     * session's own address included, and nothing moves. */
    const kz_address *from[2] = {&a, &third};
    for (int i = 0; i < 2; i++) {
        cookie_for(from[i], cookie);
        c = counts_now();
        act = resume_from(&s.ct.keys, first_ticket, from[i], cookie, reply, &rlen);
        expect_deny(act, reply, rlen, KZ_DENY_NO_SESSION);
        EXPECT_COUNTERS(&c, RX_RESUME, TX_RDENY, {KZ_GATE_C_RESUME_TICKET, 1});
        EXPECT_UNCHANGED(&twice);
    }
    (void)moved;
}

/* ---- 3. forged tickets ------------------------------------------------------ */

typedef struct {
    const char *what;
    kz__ticket t;
    const kz_session_keys *keys;
} forgery;

Test(gate_resume, forged_tickets_are_refused_and_counted_without_a_state_change)
{
    kz_address a = addr4(4, 0, 5000), from = addr4(4, 9, 9000);
    session s = admit(4, &a);
    /* A free slot above the two held ones, and a pending slot. */
    kz_connect_token pending_ct = token_at(5, CREATED);
    kz_address pa = addr4(4, 1, 5000);
    session p = admit_token(&pending_ct, &pa, 0);
    cr_assert_eq(kz__gate_slot_at(fx.gate, p.slot)->state, KZ_SLOT_PENDING);
    uint32_t free_slot = MAX_SESSIONS - 1;
    cr_assert_eq(kz__gate_slot_at(fx.gate, free_slot)->state, KZ_SLOT_FREE);

    kz__ticket real = unpacked(s.ticket);
    forgery f[16];
    size_t n = 0;
    const kz_session_keys *keys = &s.ct.keys;
#define FORGE(name, edit)                                                                   \
    do {                                                                                   \
        f[n].what = (name);                                                                 \
        f[n].t = real;                                                                      \
        f[n].keys = keys;                                                                   \
        kz__ticket *t = &f[n].t;                                                            \
        edit;                                                                               \
        n++;                                                                                \
    } while (0)
    FORGE("secret, first bit", t->secret[0] ^= 1);
    FORGE("secret, last bit", t->secret[15] ^= 0x80);
    FORGE("secret, zero", memset(t->secret, 0, 16));
    FORGE("path + 1", t->path++);
    FORGE("path 0 (no previous path) from elsewhere", t->path = 0);
    FORGE("path 0xffffffff", t->path = UINT32_MAX);
    FORGE("session id", t->session_id ^= 1);
    FORGE("slot = max_sessions", t->slot = MAX_SESSIONS);
    FORGE("slot 0x10000", t->slot = 0x10000);
    FORGE("slot 0xffffffff", t->slot = UINT32_MAX);
    FORGE("free slot, real rest", t->slot = free_slot);
    FORGE("free slot, zero rest",
          (t->slot = free_slot, t->path = 0, t->session_id = 0, memset(t->secret, 0, 16)));
    /* A pending session's exact ticket, with its own keys. */
    keys = &p.ct.keys;
    FORGE("pending slot", *t = unpacked(p.ticket));
#undef FORGE

    uint8_t cookie[KZ_COOKIE_BYTES], reply[KZ_GATE_REQUEST_BYTES], bytes[KZ_TICKET_BYTES];
    size_t rlen;
    cookie_for(&from, cookie);
    image before = image_now();
    for (size_t i = 0; i < n; i++) {
        kz__ticket_pack(&f[i].t, bytes);
        counts c = counts_now();
        kz__gate_action act = resume_from(f[i].keys, bytes, &from, cookie, reply, &rlen);
        cr_assert_eq(act, KZ_GATE_REPLY, "%s", f[i].what);
        cr_assert_eq(rlen, KZ_GATE_RESUME_DENY_BYTES, "%s", f[i].what);
        cr_assert_eq(reply[KZ_GATE_HEADER_BYTES], KZ_DENY_NO_SESSION, "%s", f[i].what);
        cr_assert_eq(kz__gate_moved_slot(fx.gate), -1, "%s", f[i].what);
        EXPECT_COUNTERS(&c, RX_RESUME, TX_RDENY, {KZ_GATE_C_RESUME_TICKET, 1});
        EXPECT_UNCHANGED(&before);
        cr_assert_eq(kz__gate_slot_index(fx.gate, &from), -1, "%s", f[i].what);
    }
}

/* After a move, the previous path's ticket is honoured only with its own
 * secret (its RESUMED was lost). */
Test(gate_resume, forged_tickets_of_the_previous_path_are_refused_at_the_new_address)
{
    kz_address a = addr4(4, 2, 5000), b = addr4(4, 3, 6000);
    session s = admit(27, &a);
    uint8_t first[KZ_TICKET_BYTES], resume[KZ_GATE_RESUME_BYTES];
    memcpy(first, s.ticket, sizeof first);
    move_session(&s, &b, resume);
    kz__ticket prev = unpacked(first), cur = unpacked(s.ticket);
    kz__ticket forged[5] = {prev, prev, prev, prev, cur};
    forged[0].secret[0] ^= 1;                           /* previous path, wrong secret */
    memcpy(forged[1].secret, cur.secret, 16);            /* previous path, current secret */
    memset(forged[2].secret, 0, 16);                     /* previous path, zero secret */
    forged[3].path = 0;                                  /* a path before the previous one */
    memcpy(forged[4].secret, prev.secret, 16);           /* current path, previous secret */
    uint8_t cookie[KZ_COOKIE_BYTES], reply[KZ_GATE_REQUEST_BYTES], bytes[KZ_TICKET_BYTES];
    size_t rlen;
    cookie_for(&b, cookie);
    image before = image_now();
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        kz__ticket_pack(&forged[i], bytes);
        counts c = counts_now();
        kz__gate_action act = resume_from(&s.ct.keys, bytes, &b, cookie, reply, &rlen);
        expect_deny(act, reply, rlen, KZ_DENY_NO_SESSION);
        EXPECT_COUNTERS(&c, RX_RESUME, TX_RDENY, {KZ_GATE_C_RESUME_TICKET, 1});
        EXPECT_UNCHANGED(&before);
    }
}

/* ---- 4. a copied ticket without the keys ------------------------------------ */

Test(gate_resume, a_copied_ticket_without_the_keys_gets_nothing)
{
    kz_address a = addr4(5, 0, 5000), thief = addr4(5, 9, 9000), b = addr4(5, 1, 6000);
    session s = admit(6, &a);
    kz_session_keys stolen_not;
    randombytes_buf(&stolen_not, sizeof stolen_not);
    uint8_t cookie[KZ_COOKIE_BYTES], reply[KZ_GATE_REQUEST_BYTES], d[KZ_GATE_RESUME_BYTES];
    size_t rlen;
    cookie_for(&thief, cookie);
    image before = image_now();

    /* Proof made with other keys. */
    counts c = counts_now();
    cr_assert_eq(resume_from(&stolen_not, s.ticket, &thief, cookie, reply, &rlen), KZ_GATE_DROP);
    EXPECT_COUNTERS(&c, RX_RESUME, {KZ_GATE_C_RESUME_PROOF, 1});
    EXPECT_UNCHANGED(&before);

    /* Proof all zero, and proof bits flipped one at a time. */
    kz__resume_build(&s.ct.keys, cookie, s.ticket, d);
    c = counts_now();
    for (size_t bit = 0; bit < 8 * KZ_RESUME_PROOF_BYTES; bit++) {
        d[64 + bit / 8] ^= (uint8_t)(1u << bit % 8);
        cr_assert_eq(gate_send(&thief, d, sizeof d, reply, &rlen), KZ_GATE_DROP, "bit %zu", bit);
        cr_assert_eq(rlen, 0);
        d[64 + bit / 8] ^= (uint8_t)(1u << bit % 8);
    }
    memset(d + 64, 0, KZ_RESUME_PROOF_BYTES);
    cr_assert_eq(gate_send(&thief, d, sizeof d, reply, &rlen), KZ_GATE_DROP);
    EXPECT_COUNTERS(&c, {KZ_GATE_C_RX_DATAGRAMS, 129}, {KZ_GATE_C_RX_BYTES, 129 * 128},
                    {KZ_GATE_C_RESUME_PROOF, 129});
    EXPECT_UNCHANGED(&before);

    /* The real client's RESUME (made at b with b's cookie), captured and
     * sent from the thief's address: no cookie for it there; with the
     * thief's cookie put in, the proof no longer fits. */
    uint8_t cookie_b[KZ_COOKIE_BYTES];
    cookie_for(&b, cookie_b);
    kz__resume_build(&s.ct.keys, cookie_b, s.ticket, d);
    c = counts_now();
    cr_assert_eq(gate_send(&thief, d, sizeof d, reply, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_RESUME_CHALLENGE_BYTES);
    memcpy(d + 8, cookie, KZ_COOKIE_BYTES);
    cr_assert_eq(gate_send(&thief, d, sizeof d, reply, &rlen), KZ_GATE_DROP);
    EXPECT_COUNTERS(&c, RX_RESUME, TX_RCHALLENGE, {KZ_GATE_C_BAD_COOKIE, 1}, RX_RESUME,
                    {KZ_GATE_C_RESUME_PROOF, 1});

    /* Not even from the client's own address (an on-path thief with its
     * cookie) can the copy make the session detach or move. */
    uint8_t cookie_a[KZ_COOKIE_BYTES];
    cookie_for(&a, cookie_a);
    c = counts_now();
    cr_assert_eq(resume_from(&stolen_not, s.ticket, &a, cookie_a, reply, &rlen), KZ_GATE_DROP);
    EXPECT_COUNTERS(&c, RX_RESUME, {KZ_GATE_C_RESUME_PROOF, 1});
    EXPECT_UNCHANGED(&before);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &a), (int32_t)s.slot);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &thief), -1);
    cr_assert_eq(enet_from(&a), KZ_GATE_PASS, "the real client's traffic still passes");
    cr_assert_eq(enet_from(&thief), KZ_GATE_DROP);
}

/* ---- 5. ended sessions -------------------------------------------------------- */

Test(gate_resume, the_ticket_of_an_ended_session_is_refused)
{
    kz_address a = addr4(6, 0, 5000), b = addr4(6, 1, 6000);
    session s = admit(7, &a);
    kz__gate_end(fx.gate, s.slot);
    image ended = image_now();
    cr_assert_eq(ended.s[s.slot].ending, 1);
    cr_assert_eq(ended.s[s.slot].state, KZ_SLOT_CONNECTED, "ending, not yet released");
    uint8_t cookie[KZ_COOKIE_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    const kz_address *from[2] = {&b, &a}; /* elsewhere, and its own address */
    for (int i = 0; i < 2; i++) {
        cookie_for(from[i], cookie);
        counts c = counts_now();
        kz__gate_action act = resume_from(&s.ct.keys, s.ticket, from[i], cookie, reply, &rlen);
        expect_deny(act, reply, rlen, KZ_DENY_NO_SESSION);
        EXPECT_COUNTERS(&c, RX_RESUME, TX_RDENY, {KZ_GATE_C_RESUME_TICKET, 1});
        EXPECT_UNCHANGED(&ended);
    }
    /* Released, and its slot given to another client: the old ticket names
     * the slot but not the session. */
    kz__gate_release(fx.gate, s.slot);
    kz_address other_addr = addr4(6, 2, 5000);
    session other = admit(8, &other_addr);
    cr_assert_eq(other.slot, s.slot, "the freed slot is handed out again");
    image reused = image_now();
    cookie_for(&b, cookie);
    counts c = counts_now();
    kz__gate_action act = resume_from(&s.ct.keys, s.ticket, &b, cookie, reply, &rlen);
    expect_deny(act, reply, rlen, KZ_DENY_NO_SESSION);
    EXPECT_COUNTERS(&c, RX_RESUME, TX_RDENY, {KZ_GATE_C_RESUME_TICKET, 1});
    EXPECT_UNCHANGED(&reused);
}

/* ---- 6. resume off -------------------------------------------------------- */

Test(gate_resume, with_resume_off_every_resume_is_denied_after_the_cookie)
{
    use_resume_off();
    kz_address a = addr4(7, 0, 5000), b = addr4(7, 1, 6000);
    session s = admit(9, &a);
    image before = image_now();
    uint8_t cookie[KZ_COOKIE_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    counts c = counts_now();
    cr_assert_eq(resume_from(&s.ct.keys, s.ticket, &b, NULL, reply, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_RESUME_CHALLENGE_BYTES, "the cookie comes first");
    EXPECT_COUNTERS(&c, RX_RESUME, TX_RCHALLENGE);
    memcpy(cookie, reply + KZ_GATE_HEADER_BYTES, sizeof cookie);
    c = counts_now();
    kz__gate_action act = resume_from(&s.ct.keys, s.ticket, &b, cookie, reply, &rlen);
    expect_deny(act, reply, rlen, KZ_DENY_NO_SESSION);
    EXPECT_COUNTERS(&c, RX_RESUME, TX_RDENY, {KZ_GATE_C_RESUME_OFF, 1});
    EXPECT_UNCHANGED(&before);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &b), -1);
}

/* ---- 7. an address that holds another session ------------------------------ */

Test(gate_resume, a_resume_from_an_address_holding_another_session_is_dropped)
{
    kz_address a = addr4(8, 0, 5000), b = addr4(8, 1, 5000), pa = addr4(8, 2, 5000);
    session s = admit(10, &a);
    session t = admit(11, &b);
    kz_connect_token pending_ct = token_at(12, CREATED);
    session p = admit_token(&pending_ct, &pa, 0);
    image before = image_now();
    uint8_t cookie[KZ_COOKIE_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    const kz_address *taken[2] = {&t.addr, &p.addr}; /* connected, pending */
    for (int i = 0; i < 2; i++) {
        cookie_for(taken[i], cookie);
        counts c = counts_now();
        cr_assert_eq(resume_from(&s.ct.keys, s.ticket, taken[i], cookie, reply, &rlen),
                     KZ_GATE_DROP);
        cr_assert_eq(kz__gate_moved_slot(fx.gate), -1);
        EXPECT_COUNTERS(&c, RX_RESUME, {KZ_GATE_C_DROP_ADDR_IN_USE, 1});
        EXPECT_UNCHANGED(&before);
    }
}

/* ---- 8. malformed RESUMEs ------------------------------------------------------ */

Test(gate_resume, malformed_resumes_are_dropped_by_their_reason_without_a_reply)
{
    kz_address a = addr4(9, 0, 5000), b = addr4(9, 1, 6000);
    session s = admit(13, &a);
    uint8_t cookie[KZ_COOKIE_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    uint8_t d[KZ_GATE_REQUEST_BYTES + 1];
    size_t rlen;
    cookie_for(&b, cookie);
    /* A RESUME that would move the session, in a buffer of zeros. */
    memset(d, 0, sizeof d);
    kz__resume_build(&s.ct.keys, cookie, s.ticket, d);
    image before = image_now();

    static const struct {
        size_t len;
        uint32_t counter;
    } sizes[] = {
        {0, KZ_GATE_C_DROP_UNVALIDATED}, /* too short to carry the gate mark */
        {1, KZ_GATE_C_DROP_UNVALIDATED},
        {2, KZ_GATE_C_DROP_SIZE},
        {3, KZ_GATE_C_DROP_SIZE},
        {4, KZ_GATE_C_DROP_SIZE},
        {KZ_GATE_RESUME_BYTES - 1, KZ_GATE_C_DROP_SIZE},
        {KZ_GATE_RESUME_BYTES + 1, KZ_GATE_C_DROP_SIZE},
        {KZ_GATE_REQUEST_BYTES, KZ_GATE_C_DROP_SIZE},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        counts c = counts_now();
        cr_assert_eq(gate_send(&b, d, sizes[i].len, reply, &rlen), KZ_GATE_DROP, "size %zu",
                     sizes[i].len);
        cr_assert_eq(rlen, 0);
        EXPECT_COUNTERS(&c, {KZ_GATE_C_RX_DATAGRAMS, 1}, {KZ_GATE_C_RX_BYTES, sizes[i].len},
                        {sizes[i].counter, 1});
    }
    static const uint8_t versions[] = {0, KZ_PROTOCOL_VERSION - 1, KZ_PROTOCOL_VERSION + 1, 0xff};
    for (size_t i = 0; i < sizeof versions; i++) {
        d[3] = versions[i];
        counts c = counts_now();
        cr_assert_eq(gate_send(&b, d, KZ_GATE_RESUME_BYTES, reply, &rlen), KZ_GATE_DROP,
                     "version %u", versions[i]);
        cr_assert_eq(rlen, 0);
        EXPECT_COUNTERS(&c, RX_RESUME, {KZ_GATE_C_DROP_VERSION, 1});
    }
    d[3] = KZ_PROTOCOL_VERSION;
    /* Each reserved byte (4..7) and each padding byte (80..127) non-zero. */
    for (size_t at = KZ_GATE_HEADER_BYTES; at < KZ_GATE_RESUME_BYTES; at++) {
        if (at == 8)
            at = KZ_GATE_RESUME_FIXED_BYTES; /* skip cookie, ticket and proof */
        for (unsigned v = 1; v < 256; v <<= 1) {
            d[at] = (uint8_t)v;
            counts c = counts_now();
            cr_assert_eq(gate_send(&b, d, KZ_GATE_RESUME_BYTES, reply, &rlen), KZ_GATE_DROP,
                         "byte %zu = %u", at, v);
            cr_assert_eq(rlen, 0);
            EXPECT_COUNTERS(&c, RX_RESUME, {KZ_GATE_C_DROP_REQUEST_FORMAT, 1});
        }
        d[at] = 0;
    }
    EXPECT_UNCHANGED(&before);
    /* The same datagram, well formed, still moves the session: the drops
     * above were for the bytes changed, not for something else. */
    counts c = counts_now();
    cr_assert_eq(gate_send(&b, d, KZ_GATE_RESUME_BYTES, reply, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_RESUMED_BYTES);
    EXPECT_COUNTERS(&c, RX_RESUME, TX_RESUMED, {KZ_GATE_C_RESUMES, 1});
}

/* ---- 9. a spoofed flood ---------------------------------------------------- */

static uint64_t mix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void random_bytes(uint64_t *state, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)mix(state);
}

/* A random source: IPv4 or IPv6, any port; one in nine at the real
 * client's own IP (a spoofer aiming at it) on a random port. */
static kz_address spoofed_source(uint64_t *state, const kz_address *victim)
{
    kz_address x;
    memset(&x, 0, sizeof x);
    uint64_t r = mix(state);
    if (r % 9 == 0) {
        x = *victim;
    } else if (r % 9 < 3) {
        x.family = KZ_ADDR_IPV6;
        random_bytes(state, x.ip, 16);
    } else {
        x.family = KZ_ADDR_IPV4;
        random_bytes(state, x.ip, 4);
    }
    x.port = (uint16_t)(mix(state) >> 7);
    return x;
}

Test(gate_resume, a_flood_of_spoofed_resumes_earns_only_small_challenges, .timeout = 300)
{
    kz_address a = addr4(10, 0, 5000), b = addr4(10, 1, 6000), a2 = addr4(10, 2, 5000);
    kz_address pa = addr4(10, 3, 5000);
    session s = admit(14, &a);
    session s2 = admit(15, &a2);
    kz_connect_token pending_ct = token_at(16, CREATED);
    (void)admit_token(&pending_ct, &pa, 0);
    /* The real client's valid RESUME toward b, which a spoofer captured. */
    uint8_t cookie_b[KZ_COOKIE_BYTES], captured[KZ_GATE_RESUME_BYTES];
    cookie_for(&b, cookie_b);
    kz__resume_build(&s.ct.keys, cookie_b, s.ticket, captured);
    image before = image_now();
    counts c = counts_now();
    uint64_t allocs = kz_counting_alloc_allocs(&fx.ca), state = 0x6b697a756e61ull;
    uint64_t bad_cookies = 0, current_bucket = fx.now / (KZ_COOKIE_PERIOD_SECONDS * KZ_NS_PER_S);
    const session *victims[2] = {&s, &s2};

    for (uint32_t i = 0; i < FLOOD_DATAGRAMS; i++) {
        kz_address from = spoofed_source(&state, &a);
        const session *v = victims[i % 2];
        uint8_t d[KZ_GATE_RESUME_BYTES], ticket[KZ_TICKET_BYTES], cookie[KZ_COOKIE_BYTES];
        random_bytes(&state, ticket, sizeof ticket);
        random_bytes(&state, cookie, sizeof cookie);
        switch (i % 6) {
        case 0: /* random ticket, no cookie */
            kz__resume_build(&v->ct.keys, NULL, ticket, d);
            break;
        case 1: /* random ticket and cookie, random proof */
            kz__resume_build(&v->ct.keys, cookie, ticket, d);
            random_bytes(&state, d + 64, KZ_RESUME_PROOF_BYTES);
            break;
        case 2: /* a copied real ticket, no cookie, random proof */
            kz__resume_build(&v->ct.keys, NULL, v->ticket, d);
            random_bytes(&state, d + 64, KZ_RESUME_PROOF_BYTES);
            break;
        case 3: /* a real ticket, a cookie of the current bucket with a guessed MAC */
            for (int k = 0; k < 8; k++)
                cookie[k] = (uint8_t)(current_bucket >> (8 * k));
            kz__resume_build(&v->ct.keys, cookie, v->ticket, d);
            break;
        case 4: /* a forged ticket naming a real slot and session */
            memcpy(ticket, v->ticket, 16);
            kz__resume_build(&v->ct.keys, NULL, ticket, d);
            break;
        default: /* the captured valid RESUME, from elsewhere */
            memcpy(d, captured, sizeof d);
            break;
        }
        static const uint8_t zero[KZ_COOKIE_BYTES];
        bad_cookies += memcmp(d + 8, zero, KZ_COOKIE_BYTES) != 0;
        uint8_t reply[KZ_GATE_REQUEST_BYTES];
        size_t rlen;
        kz__gate_action act = gate_send(&from, d, sizeof d, reply, &rlen);
        cr_assert_eq(act, KZ_GATE_REPLY, "datagram %u", i);
        cr_assert_eq(rlen, KZ_GATE_RESUME_CHALLENGE_BYTES, "datagram %u: only a challenge", i);
        cr_assert_eq(reply[2], KZ_GATE_CHALLENGE, "datagram %u", i);
        cr_assert_eq(kz__gate_moved_slot(fx.gate), -1, "datagram %u", i);
        fx.now += 100 * KZ_NS_PER_US; /* 10,000 a second: one second, one cookie bucket */
    }
    cr_assert_eq(fx.now / (KZ_COOKIE_PERIOD_SECONDS * KZ_NS_PER_S), current_bucket,
                 "the flood stayed in one cookie bucket");
    EXPECT_COUNTERS(&c, {KZ_GATE_C_RX_DATAGRAMS, FLOOD_DATAGRAMS},
                    {KZ_GATE_C_RX_BYTES, (uint64_t)FLOOD_DATAGRAMS * KZ_GATE_RESUME_BYTES},
                    {KZ_GATE_C_CHALLENGES, FLOOD_DATAGRAMS},
                    {KZ_GATE_C_TX_BYTES, (uint64_t)FLOOD_DATAGRAMS * KZ_GATE_RESUME_CHALLENGE_BYTES},
                    {KZ_GATE_C_BAD_COOKIE, bad_cookies});
    cr_assert_eq(bad_cookies, FLOOD_DATAGRAMS / 2, "three kinds in six carry a cookie");
    cr_assert_lt(counter(KZ_GATE_C_TX_BYTES) - c.v[KZ_GATE_C_TX_BYTES],
                 (counter(KZ_GATE_C_RX_BYTES) - c.v[KZ_GATE_C_RX_BYTES]) * 2 / 5,
                 "bytes out are under two fifths of bytes in (44 for 128)");
    EXPECT_UNCHANGED(&before);
    cr_assert_eq(kz_counting_alloc_allocs(&fx.ca), allocs, "nothing allocated");

    /* The real client, from the address it proved, moves at once. */
    uint8_t reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    cr_assert_eq(gate_send(&b, captured, sizeof captured, reply, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_RESUMED_BYTES);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &b), (int32_t)s.slot);
}

/* ---- 10. replace: a client restarted with its token file ---------------------- */

/* A restarted process's REQUESTs from `from`: the CHALLENGE, then the
 * proven one, whose reply is returned in hs and rlen. */
static kz__gate_action restart_request(kz__handshake *hs, const kz_connect_token *ct,
                                       const kz_address *from, size_t *rlen)
{
    cr_assert_eq(kz__handshake_init(hs, ct), KZ_OK);
    counts c = counts_now();
    cr_assert_eq(request_step(hs, from, rlen), KZ_GATE_REPLY);
    cr_assert_eq(*rlen, KZ_GATE_CHALLENGE_BYTES);
    EXPECT_COUNTERS(&c, RX_REQUEST, TX_CHALLENGE);
    return request_step(hs, from, rlen);
}

/* The whole replace: the old session (token `old_ct`, connected) is marked
 * at the first verified REQUEST of `new_ct` from another address, stays
 * marked at a retry, and once released the next REQUEST is admitted. */
static void replace_flow(const kz_connect_token *old_ct, const kz_connect_token *new_ct,
                         uint8_t net)
{
    kz_address a = addr4(net, 0, 5000), fresh = addr4(net, 1, 5002), c3 = addr4(net, 2, 5000);
    session old = admit_token(old_ct, &a, 1);
    fx.now += RESTART_DELAY_NS;

    /* While the old session still talks, nothing is marked: the new
     * process is told to ask again. */
    kz__handshake hs;
    size_t rlen;
    image before = image_now();
    counts c = counts_now();
    cr_assert_eq(restart_request(&hs, new_ct, &fresh, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(hs.deny_reason, KZ_DENY_REPLACING);
    EXPECT_COUNTERS(&c, RX_REQUEST, TX_CHALLENGE, RX_REQUEST, TX_DENY, {KZ_GATE_C_VERIFIES, 1},
                    {KZ_GATE_C_REPLACE_WAITS, 1});
    EXPECT_UNCHANGED(&before);
    cr_assert_eq(kz__gate_replacing(fx.gate), 0);

    /* The old process is gone: its host finds the session silent. */
    kz__gate_set_silent(fx.gate, old.slot, 1);
    before = image_now();
    c = counts_now();
    kz__gate_action act = request_step(&hs, &fresh, &rlen);
    cr_assert_eq(act, KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_DENY_BYTES);
    cr_assert_eq(hs.deny_reason, KZ_DENY_REPLACING);
    cr_assert_eq(hs.state, KZ_HS_REQUESTING);
    EXPECT_COUNTERS(&c, RX_REQUEST, TX_DENY, {KZ_GATE_C_VERIFIES, 1},
                    {KZ_GATE_C_REPLACED, 1}, {KZ_GATE_C_REPLACE_WAITS, 1});
    cr_assert_eq(kz__gate_replacing(fx.gate), 1);
    image marked = before;
    marked.s[old.slot].replace = 1;
    marked.s[old.slot].ending = 1;
    EXPECT_UNCHANGED(&marked);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &fresh), -1, "nothing claimed yet");
    cr_assert_eq(enet_from(&a), KZ_GATE_PASS, "the old session lives until its host ends it");

    /* Asking again before the old session is gone: the same answer, one
     * replacement. */
    c = counts_now();
    cr_assert_eq(request_step(&hs, &fresh, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_DENY_BYTES);
    cr_assert_eq(hs.deny_reason, KZ_DENY_REPLACING);
    EXPECT_COUNTERS(&c, RX_REQUEST, TX_DENY, {KZ_GATE_C_VERIFIES, 1},
                    {KZ_GATE_C_REPLACE_WAITS, 1});
    EXPECT_UNCHANGED(&marked);

    /* The old session's ticket is refused from now on. */
    uint8_t cookie[KZ_COOKIE_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    cookie_for(&c3, cookie);
    c = counts_now();
    act = resume_from(&old.ct.keys, old.ticket, &c3, cookie, reply, &rlen);
    expect_deny(act, reply, rlen, KZ_DENY_NO_SESSION);
    EXPECT_COUNTERS(&c, RX_RESUME, TX_RDENY, {KZ_GATE_C_RESUME_TICKET, 1});
    EXPECT_UNCHANGED(&marked);

    /* The host ended it; the next REQUEST gets a new session. */
    kz__gate_release(fx.gate, old.slot);
    c = counts_now();
    cr_assert_eq(request_step(&hs, &fresh, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_ACCEPT_BYTES);
    cr_assert_eq(hs.state, KZ_HS_ACCEPTED);
    EXPECT_COUNTERS(&c, RX_REQUEST, TX_ACCEPT, {KZ_GATE_C_VERIFIES, 1});
    cr_assert_neq(hs.session_id, old.session_id, "a new session id");
    const kz__gate_slot *n = kz__gate_slot_at(fx.gate, hs.slot);
    cr_assert_eq(n->state, KZ_SLOT_PENDING);
    cr_assert_eq(n->session_id, hs.session_id);
    expect_addr(&n->addr, &fresh, "the new session");
    cr_assert_eq(n->info.client_id, before.s[old.slot].info.client_id, "the same client");
    expect_keys(&n->keys, &new_ct->keys, "the new session");
    cr_assert_eq(n->ticket.slot, hs.slot);
    cr_assert_eq(n->ticket.path, 1);
    cr_assert_eq(n->ticket.session_id, hs.session_id);
    cr_assert_eq(n->replace, 0);
    cr_assert_eq(n->ending, 0);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &fresh), (int32_t)hs.slot);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &a), -1);
    cr_assert_eq(kz__gate_sessions(fx.gate), 1);
    cr_assert_eq(kz__gate_mark_connected(fx.gate, &fresh), (int32_t)hs.slot);
}

Test(gate_resume, a_restart_with_the_same_token_replaces_the_session)
{
    kz_connect_token ct = token_at(20, CREATED);
    replace_flow(&ct, &ct, 20);
}

Test(gate_resume, a_restart_with_a_newer_token_replaces_the_session)
{
    kz_connect_token old_ct = token_at(21, CREATED);
    kz_connect_token new_ct = token_at(21, CREATED + 3);
    replace_flow(&old_ct, &new_ct, 21);
}

Test(gate_resume, an_older_token_of_the_client_is_refused_and_marks_nothing)
{
    kz_address a = addr4(22, 0, 5000), b = addr4(22, 1, 5000);
    kz_connect_token current = token_at(22, CREATED);
    kz_connect_token older = token_at(22, CREATED - 100);
    session s = admit_token(&current, &a, 1);
    image before = image_now();
    fx.now += RESTART_DELAY_NS;
    kz__handshake hs;
    size_t rlen;
    counts c = counts_now();
    cr_assert_eq(restart_request(&hs, &older, &b, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_DENY_BYTES);
    cr_assert_eq(hs.deny_reason, KZ_DENY_CLIENT_IN_USE);
    EXPECT_COUNTERS(&c, RX_REQUEST, TX_CHALLENGE, RX_REQUEST, TX_DENY, {KZ_GATE_C_VERIFIES, 1},
                    {KZ_GATE_C_DROP_CLIENT_IN_USE, 1});
    EXPECT_UNCHANGED(&before);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &b), -1);
    /* The session still resumes. */
    uint8_t resume[KZ_GATE_RESUME_BYTES];
    move_session(&s, &b, resume);
}

Test(gate_resume, a_copied_token_without_its_keys_replaces_nothing)
{
    kz_address a = addr4(23, 0, 5000), b = addr4(23, 1, 5000);
    kz_connect_token ct = token_at(23, CREATED);
    session s = admit_token(&ct, &a, 1);
    image before = image_now();
    kz_connect_token copy = ct;
    randombytes_buf(&copy.keys, sizeof copy.keys); /* the token, not its keys */
    kz__handshake hs;
    size_t rlen;
    counts c = counts_now();
    cr_assert_eq(restart_request(&hs, &copy, &b, &rlen), KZ_GATE_DROP);
    EXPECT_COUNTERS(&c, RX_REQUEST, TX_CHALLENGE, RX_REQUEST, {KZ_GATE_C_VERIFIES, 1},
                    {KZ_GATE_C_DROP_PROOF, 1});
    EXPECT_UNCHANGED(&before);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &b), -1);
    cr_assert_eq(kz__gate_slot_index(fx.gate, &a), (int32_t)s.slot);
}

Test(gate_resume, with_resume_off_a_second_connect_is_refused_as_before)
{
    use_resume_off();
    kz_address a = addr4(24, 0, 5000), b = addr4(24, 1, 5000), c3 = addr4(24, 2, 5000);
    kz_connect_token ct = token_at(24, CREATED);
    kz_connect_token newer = token_at(24, CREATED + 3);
    (void)admit_token(&ct, &a, 1);
    image before = image_now();
    fx.now += RESTART_DELAY_NS;
    kz__handshake hs;
    size_t rlen;
    counts c = counts_now();
    cr_assert_eq(restart_request(&hs, &ct, &b, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(hs.deny_reason, KZ_DENY_TOKEN_IN_USE);
    EXPECT_COUNTERS(&c, RX_REQUEST, TX_CHALLENGE, RX_REQUEST, TX_DENY,
                    {KZ_GATE_C_DROP_TOKEN_REUSE, 1});
    EXPECT_UNCHANGED(&before);
    c = counts_now();
    cr_assert_eq(restart_request(&hs, &newer, &c3, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(hs.deny_reason, KZ_DENY_CLIENT_IN_USE);
    EXPECT_COUNTERS(&c, RX_REQUEST, TX_CHALLENGE, RX_REQUEST, TX_DENY, {KZ_GATE_C_VERIFIES, 1},
                    {KZ_GATE_C_DROP_CLIENT_IN_USE, 1});
    EXPECT_UNCHANGED(&before);
}

/* ---- 11. a pending slot of the same client -------------------------------- */

static void pending_is_freed(const kz_connect_token *first, const kz_connect_token *again,
                             uint8_t net)
{
    kz_address a = addr4(net, 0, 5000), b = addr4(net, 1, 5000);
    session p = admit_token(first, &a, 0);
    cr_assert_eq(kz__gate_slot_at(fx.gate, p.slot)->state, KZ_SLOT_PENDING);
    fx.now += RESTART_DELAY_NS; /* still within the pending timeout */
    kz__handshake hs;
    size_t rlen;
    counts c = counts_now();
    cr_assert_eq(restart_request(&hs, again, &b, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_ACCEPT_BYTES, "admitted at once");
    cr_assert_eq(hs.state, KZ_HS_ACCEPTED);
    EXPECT_COUNTERS(&c, RX_REQUEST, TX_CHALLENGE, RX_REQUEST, TX_ACCEPT, {KZ_GATE_C_VERIFIES, 1});
    cr_assert_neq(hs.session_id, p.session_id);
    cr_assert_eq(kz__gate_sessions(fx.gate), 1, "the pending slot was freed");
    cr_assert_eq(kz__gate_slot_index(fx.gate, &a), -1);
    cr_assert_eq(kz__gate_mark_connected(fx.gate, &a), -1, "its late connect is refused");
    const kz__gate_slot *n = kz__gate_slot_at(fx.gate, hs.slot);
    cr_assert_eq(n->state, KZ_SLOT_PENDING);
    cr_assert_eq(n->session_id, hs.session_id);
    expect_addr(&n->addr, &b, "the new session");
    expect_keys(&n->keys, &again->keys, "the new session");
    cr_assert_eq(n->replace, 0);
    cr_assert_eq(n->ending, 0);
    cr_assert_eq(kz__gate_mark_connected(fx.gate, &b), (int32_t)hs.slot);
}

Test(gate_resume, a_pending_slot_of_the_client_is_freed_by_the_same_token)
{
    kz_connect_token ct = token_at(25, CREATED);
    pending_is_freed(&ct, &ct, 25);
}

Test(gate_resume, a_pending_slot_of_the_client_is_freed_by_a_newer_token)
{
    kz_connect_token first = token_at(26, CREATED);
    kz_connect_token newer = token_at(26, CREATED + 3);
    pending_is_freed(&first, &newer, 26);
}

static void admit_keeping_request(kz__handshake *hs, const kz_connect_token *ct,
                                  const kz_address *from, uint8_t req[KZ_GATE_REQUEST_BYTES])
{
    uint8_t reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    cr_assert_eq(kz__handshake_init(hs, ct), KZ_OK);
    cr_assert_eq(request_step(hs, from, &rlen), KZ_GATE_REPLY); /* challenge */
    size_t n = kz__handshake_request(hs, req);
    cr_assert_eq(gate_send(from, req, n, reply, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_ACCEPT_BYTES);
    cr_assert_eq(kz__handshake_receive(hs, reply, rlen), KZ_OK);
    cr_assert_eq(kz__gate_mark_connected(fx.gate, from), (int32_t)hs->slot);
}

/* With resume on, the client's own REQUEST, replayed (or duplicated by
 * the network) from its address after the session connected, within the
 * cookie's life (10-20 s), would pass verification (same cookie, token and
 * proof): it must not replace the live session, since nothing without the
 * keys may end a session (PROTOCOL.md 4a). The gate knows it by the
 * admitting cookie. */
Test(gate_resume, a_replayed_request_does_not_replace_the_live_session)
{
    kz_connect_token ct = token_at(40, CREATED);
    kz_address a = addr4(40, 0, 5000);
    kz__handshake hs;
    uint8_t req[KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    admit_keeping_request(&hs, &ct, &a, req);
    image before = image_now();
    fx.now += 2 * KZ_NS_PER_S; /* the same cookie bucket */
    kz__gate_action act = gate_send(&a, req, sizeof req, reply, &rlen);
    cr_assert(act != KZ_GATE_REPLY || reply[2] != KZ_GATE_DENY ||
                  reply[KZ_GATE_HEADER_BYTES] != KZ_DENY_REPLACING,
              "a replayed REQUEST was answered DENY replacing");
    cr_assert_eq(counter(KZ_GATE_C_REPLACED), 0, "the live session was replaced by a replay");
    EXPECT_UNCHANGED(&before);
}

/* The same after a move: the original REQUEST, replayed from the
 * address the session left, replaces nothing. */
Test(gate_resume, a_request_replayed_from_the_old_address_does_not_replace)
{
    kz_connect_token ct = token_at(41, CREATED);
    kz_address a = addr4(41, 0, 5000), b = addr4(41, 1, 6000);
    kz__handshake hs;
    uint8_t req[KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES], resume[KZ_GATE_RESUME_BYTES];
    size_t rlen;
    admit_keeping_request(&hs, &ct, &a, req);
    session s;
    memset(&s, 0, sizeof s);
    s.ct = ct;
    s.addr = a;
    s.slot = hs.slot;
    s.session_id = hs.session_id;
    kz__ticket_pack(&kz__gate_slot_at(fx.gate, s.slot)->ticket, s.ticket);
    fx.now += 3 * KZ_NS_PER_S;
    move_session(&s, &b, resume);
    image before = image_now();
    (void)gate_send(&a, req, sizeof req, reply, &rlen);
    cr_assert_eq(counter(KZ_GATE_C_REPLACED), 0, "the moved session was replaced by a replay");
    EXPECT_UNCHANGED(&before);
}

/* (Needs the keys.) A session that never moved has no previous path: a
 * ticket of path 0 with an all-zero secret (the unset previous secret)
 * from its address is refused as resume_refused_ticket, not answered as a
 * lost RESUMED. */
Test(gate_resume, a_path_zero_ticket_is_not_a_previous_path)
{
    kz_address a = addr4(42, 0, 5000);
    session s = admit(42, &a);
    kz__ticket t = unpacked(s.ticket);
    t.path = 0;
    memset(t.secret, 0, sizeof t.secret);
    uint8_t bytes[KZ_TICKET_BYTES], cookie[KZ_COOKIE_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    kz__ticket_pack(&t, bytes);
    cookie_for(&a, cookie);
    image before = image_now();
    counts c = counts_now();
    kz__gate_action act = resume_from(&s.ct.keys, bytes, &a, cookie, reply, &rlen);
    expect_deny(act, reply, rlen, KZ_DENY_NO_SESSION);
    EXPECT_COUNTERS(&c, RX_RESUME, TX_RDENY, {KZ_GATE_C_RESUME_TICKET, 1});
    EXPECT_UNCHANGED(&before);
}

/* With resume on, a token's holder comes back from a new address after its
 * old session ended (a restart after the grace): the proof binds the
 * token, so no "token in use". With resume off the old rule holds. */
static void comeback_after_the_end(int resume_on, uint8_t net)
{
    if (!resume_on)
        use_resume_off();
    kz_address a = addr4(net, 0, 5000), b = addr4(net, 1, 6000);
    kz_connect_token ct = token_at(net, CREATED);
    session s = admit_token(&ct, &a, 1);
    kz__gate_end(fx.gate, s.slot);
    kz__gate_release(fx.gate, s.slot);
    fx.now += RESTART_DELAY_NS;
    kz__handshake hs;
    size_t rlen;
    cr_assert_eq(restart_request(&hs, &ct, &b, &rlen), KZ_GATE_REPLY);
    if (resume_on) {
        cr_assert_eq(hs.state, KZ_HS_ACCEPTED, "admitted from the new address");
        cr_assert_neq(hs.session_id, s.session_id, "a new session");
        cr_assert_eq(counter(KZ_GATE_C_DROP_TOKEN_REUSE), 0);
    } else {
        cr_assert_eq(hs.deny_reason, KZ_DENY_TOKEN_IN_USE);
        cr_assert_eq(counter(KZ_GATE_C_DROP_TOKEN_REUSE), 1);
    }
}

Test(gate_resume, a_token_holder_comes_back_from_anywhere_after_its_session_ended)
{
    comeback_after_the_end(1, 50);
}

Test(gate_resume, with_resume_off_a_used_token_stays_bound_to_its_address)
{
    comeback_after_the_end(0, 51);
}

/* An older token of the client never frees the pending slot of a newer
 * one (a stale or stolen older token file cannot cancel a connect). */
Test(gate_resume, an_older_token_does_not_free_a_newer_pending_slot)
{
    kz_address a = addr4(52, 0, 5000), b = addr4(52, 1, 6000);
    kz_connect_token newer = token_at(52, CREATED + 5), older = token_at(52, CREATED);
    session p = admit_token(&newer, &a, 0);
    image before = image_now();
    fx.now += RESTART_DELAY_NS;
    kz__handshake hs;
    size_t rlen;
    cr_assert_eq(restart_request(&hs, &older, &b, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(hs.deny_reason, KZ_DENY_CLIENT_IN_USE);
    EXPECT_UNCHANGED(&before);
    cr_assert_eq(kz__gate_slot_at(fx.gate, p.slot)->state, KZ_SLOT_PENDING);
}

/* A move made by another thread while a verification ran outside the lock
 * is not reported as the finishing job's (its host would otherwise point
 * the moved session's peer at the requester's address). */
Test(gate_resume, a_move_during_a_verification_is_not_the_jobs)
{
    kz_address a = addr4(53, 0, 5000), b = addr4(53, 1, 6000), r = addr4(53, 2, 7000);
    session s = admit(53, &a);
    kz_connect_token other = token_at(54, CREATED);
    kz__handshake hs;
    size_t rlen;
    uint8_t req[KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    cr_assert_eq(kz__handshake_init(&hs, &other), KZ_OK);
    cr_assert_eq(request_step(&hs, &r, &rlen), KZ_GATE_REPLY); /* challenge */
    size_t n = kz__handshake_request(&hs, req);
    kz__gate_job job;
    cr_assert_eq(kz__gate_datagram_begin(fx.gate, &r, req, n, fx.now, UNIX_NOW, reply,
                                         sizeof reply, &rlen, &job),
                 KZ_GATE_VERIFY);
    uint8_t resume[KZ_GATE_RESUME_BYTES];
    move_session(&s, &b, resume);
    cr_assert_eq(kz__gate_moved_slot(fx.gate), (int32_t)s.slot);
    kz__gate_job_run(&job, UNIX_NOW);
    cr_assert_eq(kz__gate_job_finish(fx.gate, &job, fx.now, UNIX_NOW, reply, sizeof reply, &rlen),
                 KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_ACCEPT_BYTES);
    cr_assert_eq(kz__gate_moved_slot(fx.gate), -1);
}
