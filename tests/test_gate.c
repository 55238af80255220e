/*
 * The gate under honest and hostile traffic: the handshake, every refusal
 * with its counter, bit flips at every position, a spoofed-source flood
 * with a legitimate client in the middle, rate limits, token and client id
 * reuse, expiry, and a bounded, allocation-free steady state.
 */
#include <criterion/criterion.h>
#include <enet/enet.h>
#include <sodium.h>
#include <string.h>

#include "net/gate.h"

#define UNIX_NOW 1800000000ull
#define PROTO 0x4b5a000000000001ull
#define SERVER_ID 77

typedef struct {
    kz_sign_keypair backend;
    kz_box_keypair server;
    kz_counting_alloc ca;
    kz__gate *gate;
    kz_time_ns now;
} fixture;

static fixture fx;

static void setup(void)
{
    memset(&fx, 0, sizeof fx);
    cr_assert_eq(kz_sign_keypair_generate(&fx.backend), KZ_OK);
    cr_assert_eq(kz_box_keypair_generate(&fx.server), KZ_OK);
    kz_counting_alloc_init(&fx.ca, NULL);
    kz__gate_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.verifier.protocol_id = PROTO;
    cfg.verifier.server_id = SERVER_ID;
    memcpy(cfg.verifier.backend_pk, fx.backend.public_key, 32);
    cfg.verifier.server_keys = fx.server;
    cfg.max_sessions = 4;
    cfg.n_ports = 1;
    cfg.ports[0] = 40000;
    cfg.alloc = kz_counting_alloc_allocator(&fx.ca);
    fx.gate = kz__gate_create(&cfg);
    cr_assert_not_null(fx.gate);
    fx.now = 1000 * KZ_NS_PER_S;
}

static void teardown(void)
{
    kz__gate_destroy(fx.gate);
    cr_assert_eq(kz_counting_alloc_live_bytes(&fx.ca), 0, "the gate frees all it took");
}

static uint64_t counter(uint32_t id)
{
    return kz_counters_get(kz__gate_counters(fx.gate), id);
}

static kz_address addr(uint8_t a, uint8_t b, uint16_t port)
{
    kz_address x;
    memset(&x, 0, sizeof x);
    x.family = KZ_ADDR_IPV4;
    x.ip[0] = 127;
    x.ip[1] = a;
    x.ip[2] = b;
    x.ip[3] = 1;
    x.port = port;
    return x;
}

static kz_connect_token token_for(uint64_t client_id, uint64_t server_id, uint64_t expire)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = PROTO;
    t.create_time = UNIX_NOW - 5;
    t.expire_time = expire;
    t.server_id = server_id;
    t.timeout_seconds = 10;
    t.n_addresses = 1;
    cr_assert_eq(kz_address_parse("127.0.0.1:40000", &t.addresses[0]), KZ_OK);
    t.client_id = client_id;
    t.avatar_id = client_id;
    strcpy(t.name, "tester");
    strcpy(t.claims.method, "none");
    kz_connect_token ct;
    size_t len;
    cr_assert_eq(kz_token_mint(&t, fx.backend.secret_key, fx.server.public_key, &ct.keys,
                               ct.token, sizeof ct.token, &len),
                 KZ_OK);
    ct.token_len = (uint16_t)len;
    return ct;
}

/* One request from `from`, its reply fed to the handshake. */
static kz__gate_action step(kz__handshake *hs, const kz_address *from, size_t *reply_len)
{
    uint8_t req[KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t n = kz__handshake_request(hs, req), rlen = 0;
    kz__gate_action act = kz__gate_datagram(fx.gate, from, req, n, fx.now, UNIX_NOW, reply,
                                            sizeof reply, &rlen);
    if (act == KZ_GATE_REPLY) {
        cr_assert_lt(rlen, n, "a reply must be smaller than the request");
        kz__handshake_receive(hs, reply, rlen);
    }
    if (reply_len)
        *reply_len = rlen;
    return act;
}

static void connect_client(kz__handshake *hs, const kz_connect_token *ct, const kz_address *from)
{
    cr_assert_eq(kz__handshake_init(hs, ct), KZ_OK);
    size_t rlen;
    cr_assert_eq(step(hs, from, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_CHALLENGE_BYTES);
    cr_assert(hs->has_cookie);
    cr_assert_eq(step(hs, from, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_ACCEPT_BYTES);
    cr_assert_eq(hs->state, KZ_HS_ACCEPTED);
}

TestSuite(gate, .init = setup, .fini = teardown);

Test(gate, handshake_challenge_then_accept_then_enet_passes)
{
    kz_connect_token ct = token_for(1, SERVER_ID, UNIX_NOW + 60);
    kz_address a = addr(0, 0, 5000);
    kz__handshake hs;
    uint8_t enet[16] = {0x80, 0x01}; /* an ENet datagram for peer 1 (not a connect) */
    size_t rlen;
    cr_assert_eq(kz__gate_datagram(fx.gate, &a, enet, sizeof enet, fx.now, UNIX_NOW,
                                   (uint8_t[KZ_GATE_REQUEST_BYTES]){0}, KZ_GATE_REQUEST_BYTES,
                                   &rlen),
                 KZ_GATE_DROP, "ENet before the handshake is dropped");
    cr_assert_eq(rlen, 0);
    connect_client(&hs, &ct, &a);
    const kz__gate_slot *s = kz__gate_slot_at(fx.gate, hs.slot);
    cr_assert_eq(s->state, KZ_SLOT_PENDING);
    cr_assert_eq(s->session_id, hs.session_id);
    cr_assert_eq(s->alg, hs.alg);
    cr_assert_eq(hs.port, 40000);
    cr_assert_eq(s->info.client_id, 1);
    cr_assert_arr_eq(&s->keys, &ct.keys, sizeof ct.keys, "server holds the client's keys");
    cr_assert_eq(kz__gate_datagram(fx.gate, &a, enet, sizeof enet, fx.now, UNIX_NOW,
                                   (uint8_t[KZ_GATE_REQUEST_BYTES]){0}, KZ_GATE_REQUEST_BYTES,
                                   &rlen),
                 KZ_GATE_PASS);
    cr_assert_eq(kz__gate_mark_connected(fx.gate, &a), (int32_t)hs.slot);
    cr_assert_eq(counter(KZ_GATE_C_CHALLENGES), 1);
    cr_assert_eq(counter(KZ_GATE_C_ACCEPTS), 1);
    cr_assert_eq(counter(KZ_GATE_C_VERIFIES), 1);
    cr_assert_eq(counter(KZ_GATE_C_DROP_UNVALIDATED), 1);
}

Test(gate, lost_accept_is_resent_without_new_verification)
{
    kz_connect_token ct = token_for(2, SERVER_ID, UNIX_NOW + 60);
    kz_address a = addr(0, 1, 5000);
    kz__handshake hs;
    connect_client(&hs, &ct, &a);
    uint64_t session = hs.session_id;
    hs.state = KZ_HS_REQUESTING; /* as if the accept was lost */
    cr_assert_eq(step(&hs, &a, NULL), KZ_GATE_REPLY);
    cr_assert_eq(hs.state, KZ_HS_ACCEPTED);
    cr_assert_eq(hs.session_id, session);
    cr_assert_eq(counter(KZ_GATE_C_VERIFIES), 1);
    cr_assert_eq(kz__gate_sessions(fx.gate), 1);
}

Test(gate, each_token_refusal_is_counted)
{
    struct {
        kz_connect_token ct;
        uint32_t counter;
    } cases[] = {
        {token_for(3, SERVER_ID, UNIX_NOW), KZ_GATE_C_DROP_TOKEN_EXPIRED},
        {token_for(3, SERVER_ID + 1, UNIX_NOW + 60), KZ_GATE_C_DROP_TOKEN_SERVER},
    };
    for (size_t i = 0; i < 2; i++) {
        kz_address a = addr(1, (uint8_t)i, 5000);
        kz__handshake hs;
        cr_assert_eq(kz__handshake_init(&hs, &cases[i].ct), KZ_OK);
        cr_assert_eq(step(&hs, &a, NULL), KZ_GATE_DROP, "case %zu", i);
        cr_assert_eq(counter(cases[i].counter), 1, "case %zu", i);
    }
    /* Signed by a rogue backend: caught after the cookie, at the signature. */
    kz_sign_keypair real = fx.backend;
    cr_assert_eq(kz_sign_keypair_generate(&fx.backend), KZ_OK);
    kz_connect_token rogue = token_for(4, SERVER_ID, UNIX_NOW + 60);
    fx.backend = real;
    kz_address a = addr(1, 9, 5000);
    kz__handshake hs;
    cr_assert_eq(kz__handshake_init(&hs, &rogue), KZ_OK);
    cr_assert_eq(step(&hs, &a, NULL), KZ_GATE_REPLY, "challenge first");
    cr_assert_eq(step(&hs, &a, NULL), KZ_GATE_DROP);
    cr_assert_eq(counter(KZ_GATE_C_DROP_TOKEN_SIGNATURE), 1);
    cr_assert_eq(kz__gate_sessions(fx.gate), 0);
}

Test(gate, token_from_a_second_address_and_client_id_twice_are_refused)
{
    kz_connect_token ct = token_for(5, SERVER_ID, UNIX_NOW + 60);
    kz_address first = addr(2, 0, 5000), second = addr(2, 1, 5000), third = addr(2, 2, 5000);
    kz__handshake hs, thief, twin;
    connect_client(&hs, &ct, &first);
    cr_assert_eq(kz__gate_mark_connected(fx.gate, &first), (int32_t)hs.slot);

    cr_assert_eq(kz__handshake_init(&thief, &ct), KZ_OK);
    step(&thief, &second, NULL);
    cr_assert_eq(step(&thief, &second, NULL), KZ_GATE_REPLY);
    cr_assert_eq(thief.state, KZ_HS_REQUESTING);
    cr_assert_eq(thief.deny_reason, KZ_DENY_TOKEN_IN_USE);
    cr_assert_eq(counter(KZ_GATE_C_DROP_TOKEN_REUSE), 1);

    kz_connect_token same_client = token_for(5, SERVER_ID, UNIX_NOW + 60);
    cr_assert_eq(kz__handshake_init(&twin, &same_client), KZ_OK);
    step(&twin, &third, NULL);
    step(&twin, &third, NULL);
    cr_assert_eq(twin.state, KZ_HS_REQUESTING);
    cr_assert_eq(twin.deny_reason, KZ_DENY_CLIENT_IN_USE);
    cr_assert_eq(counter(KZ_GATE_C_DROP_CLIENT_IN_USE), 1);

    /* The first session is untouched. */
    const kz__gate_slot *s = kz__gate_slot_at(fx.gate, hs.slot);
    cr_assert_eq(s->state, KZ_SLOT_CONNECTED);
    cr_assert_eq(s->session_id, hs.session_id);
    cr_assert_eq(kz__gate_sessions(fx.gate), 1);
}

Test(gate, every_flipped_byte_of_a_request_is_refused_without_allocating, .timeout = 120)
{
    kz_connect_token ct = token_for(6, SERVER_ID, UNIX_NOW + 60);
    kz_address a = addr(3, 0, 5000);
    kz__handshake hs;
    cr_assert_eq(kz__handshake_init(&hs, &ct), KZ_OK);
    step(&hs, &a, NULL); /* get a cookie so flips reach the signature check */
    uint8_t req[KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t n = kz__handshake_request(&hs, req), rlen;
    uint64_t allocs = kz_counting_alloc_allocs(&fx.ca);
    for (size_t i = 0; i < n; i++) {
        req[i] ^= 0x04;
        kz__gate_action act = kz__gate_datagram(fx.gate, &a, req, n, fx.now, UNIX_NOW, reply,
                                                sizeof reply, &rlen);
        if (act == KZ_GATE_REPLY)
            cr_assert(reply[2] == KZ_GATE_CHALLENGE, "byte %zu: only a re-challenge, got type %u", i, reply[2]);
        req[i] ^= 0x04;
        fx.now += KZ_NS_PER_S / 10; /* keep the rate limiter out of the way */
        if (i % 40 == 39) {
            /* Fetch a fresh cookie (the old one ages out after 10-20 s). */
            hs.has_cookie = 0;
            cr_assert_eq(step(&hs, &a, NULL), KZ_GATE_REPLY);
            n = kz__handshake_request(&hs, req);
        }
    }
    cr_assert_eq(kz__gate_sessions(fx.gate), 0, "no flipped request got a session");
    cr_assert_eq(counter(KZ_GATE_C_ACCEPTS), 0);
    cr_assert_eq(kz_counting_alloc_allocs(&fx.ca), allocs, "the gate allocates nothing");
}

Test(gate, sizes_and_types_are_checked_first)
{
    kz_address a = addr(4, 0, 5000);
    uint8_t buf[KZ_MTU + 2], reply[KZ_GATE_REQUEST_BYTES];
    memset(buf, 0, sizeof buf);
    buf[0] = KZ_GATE_MARK0;
    buf[1] = KZ_GATE_MARK1;
    buf[2] = KZ_GATE_REQUEST;
    buf[3] = KZ_PROTOCOL_VERSION;
    static const size_t sizes[] = {2, 3, KZ_GATE_REQUEST_BYTES - 1, KZ_GATE_REQUEST_BYTES + 1,
                                   KZ_MTU + 1};
    size_t rlen;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        cr_assert_eq(kz__gate_datagram(fx.gate, &a, buf, sizes[i], fx.now, UNIX_NOW, reply,
                                       sizeof reply, &rlen),
                     KZ_GATE_DROP, "size %zu", sizes[i]);
    cr_assert_eq(counter(KZ_GATE_C_DROP_SIZE), 5);
    cr_assert_eq(kz__gate_datagram(fx.gate, &a, buf, 0, fx.now, UNIX_NOW, reply, sizeof reply,
                                   &rlen),
                 KZ_GATE_DROP, "empty datagram");
    for (uint8_t t = 0; t < 8; t++) {
        if (t == KZ_GATE_REQUEST || t == KZ_GATE_RESUME)
            continue; /* a RESUME of a REQUEST's size is a drop_size */
        buf[2] = t;
        cr_assert_eq(kz__gate_datagram(fx.gate, &a, buf, KZ_GATE_REQUEST_BYTES, fx.now, UNIX_NOW,
                                       reply, sizeof reply, &rlen),
                     KZ_GATE_DROP);
    }
    cr_assert_eq(counter(KZ_GATE_C_DROP_TYPE), 6);
    buf[2] = KZ_GATE_REQUEST;
    buf[3] = KZ_PROTOCOL_VERSION + 1;
    cr_assert_eq(kz__gate_datagram(fx.gate, &a, buf, KZ_GATE_REQUEST_BYTES, fx.now, UNIX_NOW,
                                   reply, sizeof reply, &rlen),
                 KZ_GATE_DROP);
    cr_assert_eq(counter(KZ_GATE_C_DROP_VERSION), 1);
    buf[3] = KZ_PROTOCOL_VERSION;
    cr_assert_eq(kz__gate_datagram(fx.gate, &a, buf, KZ_GATE_REQUEST_BYTES, fx.now, UNIX_NOW,
                                   reply, sizeof reply, &rlen),
                 KZ_GATE_DROP, "all-zero fields");
    cr_assert_eq(counter(KZ_GATE_C_DROP_REQUEST_FORMAT), 1);
}

Test(gate, spoofed_flood_costs_more_than_it_earns_and_a_real_client_still_connects,
     .timeout = 300)
{
    kz_connect_token honest = token_for(7, SERVER_ID, UNIX_NOW + 60);
    kz_connect_token flood_token = token_for(8, SERVER_ID, UNIX_NOW + 60);
    kz__handshake flooder, hs;
    cr_assert_eq(kz__handshake_init(&flooder, &flood_token), KZ_OK);
    cr_assert_eq(kz__handshake_init(&hs, &honest), KZ_OK);
    uint8_t req[KZ_GATE_REQUEST_BYTES], junk[600], reply[KZ_GATE_REQUEST_BYTES];
    size_t n = kz__handshake_request(&flooder, req), rlen;
    uint64_t allocs = kz_counting_alloc_allocs(&fx.ca), seed = 99;
    kz_address honest_addr = addr(200, 200, 6000);
    for (uint32_t i = 0; i < 100000; i++) {
        /* 4096 spoofed sources, random ports; 3 of 4 datagrams are valid-
         * looking requests (the expensive kind), the rest ENet-ish junk. */
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        kz_address from = addr((uint8_t)(seed >> 40), (uint8_t)((seed >> 48) & 0x0f),
                               (uint16_t)(1024 + (seed >> 20) % 60000));
        if (i % 4 == 3) {
            for (size_t j = 0; j < sizeof junk; j++)
                junk[j] = (uint8_t)(seed >> (j % 56));
            kz__gate_datagram(fx.gate, &from, junk, sizeof junk, fx.now, UNIX_NOW, reply,
                              sizeof reply, &rlen);
        } else {
            kz__gate_datagram(fx.gate, &from, req, n, fx.now, UNIX_NOW, reply, sizeof reply,
                              &rlen);
        }
        if (i % 1000 == 500 && hs.state != KZ_HS_ACCEPTED)
            step(&hs, &honest_addr, NULL);
        fx.now += 10 * KZ_NS_PER_US; /* 100k datagrams per second */
    }
    cr_assert_eq(hs.state, KZ_HS_ACCEPTED, "the honest client connected during the flood");
    cr_assert_eq(kz__gate_sessions(fx.gate), 1, "only the honest client holds a slot");
    cr_assert_eq(counter(KZ_GATE_C_VERIFIES), 1, "no public-key work for spoofed sources");
    cr_assert_leq(counter(KZ_GATE_C_TX_BYTES), counter(KZ_GATE_C_RX_BYTES),
                  "bytes out must not exceed bytes in");
    cr_assert_lt(counter(KZ_GATE_C_TX_BYTES) * 20, counter(KZ_GATE_C_RX_BYTES));
    cr_assert_eq(kz_counting_alloc_allocs(&fx.ca), allocs, "no state beyond the fixed tables");
    cr_assert_geq(counter(KZ_GATE_C_DROP_UNVALIDATED), 25000);
}

/* A token whose signature is wrong: it passes the cheap checks, so each
 * proven request with it costs the gate a signature check. */
static kz_connect_token forged_signature_token(uint64_t client_id)
{
    kz_connect_token ct = token_for(client_id, SERVER_ID, UNIX_NOW + 60);
    ct.token[ct.token_len - 1] ^= 0x55;
    return ct;
}

/* Sends a proven request (challenge first) from `from`; the action of the
 * proven one. */
static kz__gate_action proven_request(const kz_connect_token *ct, const kz_address *from,
                                      kz_time_ns now)
{
    kz__handshake hs;
    cr_assert_eq(kz__handshake_init(&hs, ct), KZ_OK);
    kz_time_ns saved = fx.now;
    fx.now = now;
    cr_assert_eq(step(&hs, from, NULL), KZ_GATE_REPLY, "challenges are never limited");
    cr_assert(hs.has_cookie);
    kz__gate_action act = step(&hs, from, NULL);
    fx.now = saved;
    return act;
}

Test(gate, per_source_verification_budget)
{
    kz_connect_token bad = forged_signature_token(9);
    kz_address noisy = addr(5, 0, 1);
    for (int i = 0; i < 400; i++) {
        noisy.port = (uint16_t)(1 + i); /* changing ports does not help */
        cr_assert_eq(proven_request(&bad, &noisy, fx.now), KZ_GATE_DROP);
    }
    cr_assert_eq(counter(KZ_GATE_C_VERIFIES), 2 * KZ_GATE_DEFAULT_RATE,
                 "the burst of 2 x rate, then no more signature checks");
    cr_assert_eq(counter(KZ_GATE_C_DROP_RATE), 400 - 2 * KZ_GATE_DEFAULT_RATE);
    cr_assert_eq(counter(KZ_GATE_C_CHALLENGES), 400, "every request got its challenge");
    kz_address quiet = addr(5, 1, 1);
    cr_assert_eq(proven_request(&bad, &quiet, fx.now), KZ_GATE_DROP);
    cr_assert_eq(counter(KZ_GATE_C_VERIFIES), 2 * KZ_GATE_DEFAULT_RATE + 1,
                 "another source is unaffected");
    fx.now += KZ_NS_PER_S;
    uint64_t before = counter(KZ_GATE_C_VERIFIES);
    for (int i = 0; i < 200; i++) {
        noisy.port = (uint16_t)(1000 + i);
        (void)proven_request(&bad, &noisy, fx.now);
    }
    cr_assert_eq(counter(KZ_GATE_C_VERIFIES) - before, KZ_GATE_DEFAULT_RATE,
                 "one second refills one rate's worth");
}

/* A spoofer floods requests without a cookie from a victim's IP (every
 * port): it gets challenges sent to the victim and nothing else. The
 * victim, asking in the middle of the flood, is admitted at once. */
Test(gate, spoofed_requests_cannot_lock_an_address_out)
{
    kz_connect_token spoof = token_for(50, SERVER_ID, UNIX_NOW + 60);
    kz__handshake sh;
    cr_assert_eq(kz__handshake_init(&sh, &spoof), KZ_OK);
    uint8_t req[KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t n = kz__handshake_request(&sh, req), rlen;
    kz_address victim = addr(9, 9, 4242), spoofed = victim;
    for (uint32_t i = 0; i < 5000; i++) {
        spoofed.port = (uint16_t)(1024 + i % 60000);
        cr_assert_eq(kz__gate_datagram(fx.gate, &spoofed, req, n, fx.now, UNIX_NOW, reply,
                                       sizeof reply, &rlen),
                     KZ_GATE_REPLY);
        cr_assert_lt(rlen, n, "each challenge is smaller than the request");
        fx.now += 100 * KZ_NS_PER_US; /* 10,000 spoofed datagrams a second */
    }
    kz_connect_token mine = token_for(51, SERVER_ID, UNIX_NOW + 60);
    kz__handshake hs;
    connect_client(&hs, &mine, &victim);
    cr_assert_eq(hs.state, KZ_HS_ACCEPTED, "the victim is admitted during the flood");
    cr_assert_eq(counter(KZ_GATE_C_DROP_RATE), 0);
    cr_assert_eq(counter(KZ_GATE_C_VERIFIES), 1, "no signature work for the spoofer");
}

Test(gate, pending_slots_expire_and_full_server_denies)
{
    kz_address addrs[5];
    kz__handshake hs[5];
    for (int i = 0; i < 4; i++) {
        kz_connect_token ct = token_for(10 + (uint64_t)i, SERVER_ID, UNIX_NOW + 60);
        addrs[i] = addr(6, (uint8_t)i, 7000);
        connect_client(&hs[i], &ct, &addrs[i]);
    }
    kz_connect_token extra = token_for(20, SERVER_ID, UNIX_NOW + 60);
    addrs[4] = addr(6, 9, 7000);
    cr_assert_eq(kz__handshake_init(&hs[4], &extra), KZ_OK);
    step(&hs[4], &addrs[4], NULL);
    step(&hs[4], &addrs[4], NULL);
    cr_assert_eq(hs[4].deny_reason, KZ_DENY_SERVER_FULL);
    cr_assert_eq(counter(KZ_GATE_C_DROP_FULL), 1);

    cr_assert_eq(kz__gate_mark_connected(fx.gate, &addrs[0]), (int32_t)hs[0].slot);
    fx.now += 31 * KZ_NS_PER_S;
    kz__gate_expire(fx.gate, fx.now);
    cr_assert_eq(counter(KZ_GATE_C_PENDING_EXPIRED), 3);
    cr_assert_eq(kz__gate_sessions(fx.gate), 1, "the connected one stays");
    uint8_t enet[8] = {0}, reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    cr_assert_eq(kz__gate_datagram(fx.gate, &addrs[1], enet, 8, fx.now, UNIX_NOW, reply,
                                   sizeof reply, &rlen),
                 KZ_GATE_DROP, "an expired slot no longer passes ENet traffic");
    cr_assert_eq(kz__gate_mark_connected(fx.gate, &addrs[1]), -1);
    kz__gate_release(fx.gate, hs[0].slot);
    cr_assert_eq(kz__gate_sessions(fx.gate), 0);
}

Test(gate, handshake_ignores_forged_and_malformed_replies)
{
    kz_connect_token ct = token_for(30, SERVER_ID, UNIX_NOW + 60);
    kz__handshake hs;
    cr_assert_eq(kz__handshake_init(&hs, &ct), KZ_OK);
    uint8_t fake[KZ_GATE_ACCEPT_BYTES];
    randombytes_buf(fake, sizeof fake);
    fake[0] = KZ_GATE_MARK0;
    fake[1] = KZ_GATE_MARK1;
    fake[2] = KZ_GATE_ACCEPT;
    fake[3] = KZ_PROTOCOL_VERSION;
    cr_assert_eq(kz__handshake_receive(&hs, fake, sizeof fake), KZ_EAGAIN);
    cr_assert_eq(hs.state, KZ_HS_REQUESTING);
    cr_assert_eq(kz__handshake_receive(&hs, fake, 3), KZ_EAGAIN);
    cr_assert_eq(kz__handshake_receive(&hs, fake, sizeof fake - 1), KZ_EAGAIN);
    fake[2] = KZ_GATE_CHALLENGE;
    cr_assert_eq(kz__handshake_receive(&hs, fake, sizeof fake), KZ_EAGAIN, "wrong size");
    cr_assert(!hs.has_cookie);
}

/* An ENet CONNECT datagram as ENet 1.3 lays it out (sent-time flag on,
 * checksum present): peer id ENET_PROTOCOL_MAXIMUM_PEER_ID, then the
 * command with its connectID (opaque) and data word (big-endian). With
 * `mac`, the checksum field carries the datagram's MAC under that key, as
 * the client's ENet sends it; without, a plain ENet CRC32. */
static size_t enet_connect(uint8_t *d, uint32_t connect_id, uint32_t data, const kz__enet_mac *mac)
{
    memset(d, 0, 64);
    uint16_t field = ENET_PROTOCOL_MAXIMUM_PEER_ID | ENET_PROTOCOL_HEADER_FLAG_SENT_TIME;
    d[0] = (uint8_t)(field >> 8);
    d[1] = (uint8_t)field;
    size_t at = sizeof(ENetProtocolHeader) + sizeof(enet_uint32);
    ENetProtocolConnect *c = (ENetProtocolConnect *)(d + at);
    c->header.command = ENET_PROTOCOL_COMMAND_CONNECT | ENET_PROTOCOL_COMMAND_FLAG_ACKNOWLEDGE;
    c->connectID = connect_id;
    c->data = ENET_HOST_TO_NET_32(data);
    size_t n = at + sizeof(ENetProtocolConnect);
    ENetBuffer b = {.data = d, .dataLength = n};
    uint32_t sum = mac ? kz__enet_mac_buffers(mac, &b, 1) : enet_crc32(&b, 1);
    memcpy(d + at - sizeof sum, &sum, sizeof sum);
    return n;
}

Test(gate, enet_connects_need_the_slot_mac_tag_and_keep_one_connect_id)
{
    kz_connect_token ct = token_for(40, SERVER_ID, UNIX_NOW + 60);
    kz_address a = addr(7, 0, 5000);
    kz__handshake hs;
    connect_client(&hs, &ct, &a);
    uint32_t tag = kz__connect_tag(&ct.keys, hs.session_id);
    kz__enet_mac_pair mac;
    kz__enet_mac_pair_derive(&mac, &ct.keys, hs.session_id);
    uint8_t d[64], reply[KZ_GATE_REQUEST_BYTES];
    size_t n, rlen;
#define SEND(len) kz__gate_datagram(fx.gate, &a, d, (len), fx.now, UNIX_NOW, reply, sizeof reply, &rlen)
    n = enet_connect(d, 0x11111111, tag, NULL);
    cr_assert_eq(SEND(n), KZ_GATE_DROP, "right tag, CRC32 instead of the MAC: an observer");
    n = enet_connect(d, 0x11111111, tag, &mac.server_to_client);
    cr_assert_eq(SEND(n), KZ_GATE_DROP, "a MAC under the other direction's key");
    cr_assert_eq(counter(KZ_GATE_C_DROP_ENET_CONNECT_MAC), 2);
    n = enet_connect(d, 0x11111111, tag ^ 1, &mac.client_to_server);
    cr_assert_eq(SEND(n), KZ_GATE_DROP, "wrong tag");
    n = enet_connect(d, 0x11111111, tag, &mac.client_to_server);
    cr_assert_eq(SEND(n - 1), KZ_GATE_DROP, "truncated connect");
    cr_assert_eq(SEND(n), KZ_GATE_PASS, "the key holder's connect");
    cr_assert_eq(SEND(n), KZ_GATE_PASS, "its retransmission");
    n = enet_connect(d, 0x22222222, tag, &mac.client_to_server);
    cr_assert_eq(SEND(n), KZ_GATE_DROP, "a second connectID would open a second peer");
    cr_assert_eq(kz__gate_mark_connected(fx.gate, &a), (int32_t)hs.slot);
    n = enet_connect(d, 0x11111111, tag, &mac.client_to_server);
    cr_assert_eq(SEND(n), KZ_GATE_DROP, "no connect once connected");
    cr_assert_eq(counter(KZ_GATE_C_DROP_ENET_CONNECT), 4);
#undef SEND
}

Test(gate, clocks_of_several_io_threads_cannot_refill_the_rate_limit)
{
    kz_connect_token bad = forged_signature_token(41);
    kz_address a = addr(8, 0, 1);
    /* Two threads whose clocks differ by a millisecond take turns. */
    for (int i = 0; i < 400; i++) {
        a.port = (uint16_t)(1 + i);
        (void)proven_request(&bad, &a, fx.now - (i % 2 ? KZ_NS_PER_MS : 0));
    }
    cr_assert_leq(counter(KZ_GATE_C_VERIFIES), 2 * KZ_GATE_DEFAULT_RATE + 1, "got %llu verifications",
                  (unsigned long long)counter(KZ_GATE_C_VERIFIES));
}

/* Key rotation: tokens signed by a key the gate no longer trusts are
 * refused as bad signatures; a set of keys accepts any of them. */
Test(gate, trusted_backend_keys_can_be_replaced_live)
{
    kz_sign_keypair old_backend = fx.backend, new_backend;
    cr_assert_eq(kz_sign_keypair_generate(&new_backend), KZ_OK);
    uint8_t both[2][KZ_SIGN_PUBLIC_KEY_BYTES];
    memcpy(both[0], old_backend.public_key, 32);
    memcpy(both[1], new_backend.public_key, 32);
    cr_assert_eq(kz__gate_trust(fx.gate, both, 0), KZ_EINVAL);
    cr_assert_eq(kz__gate_trust(fx.gate, both, KZ_TOKEN_MAX_BACKEND_KEYS + 1), KZ_EINVAL);

    /* A token of the new backend before the gate trusts it. */
    fx.backend = new_backend;
    kz_connect_token early = token_for(1, SERVER_ID, UNIX_NOW + 60);
    kz__handshake hs;
    kz_address a = addr(0, 1, 5000);
    cr_assert_eq(kz__handshake_init(&hs, &early), KZ_OK);
    cr_assert_eq(step(&hs, &a, NULL), KZ_GATE_REPLY);  /* challenge */
    cr_assert_eq(step(&hs, &a, NULL), KZ_GATE_DROP);
    cr_assert_eq(counter(KZ_GATE_C_DROP_TOKEN_SIGNATURE), 1);

    /* Both trusted: tokens of either backend connect. */
    cr_assert_eq(kz__gate_trust(fx.gate, both, 2), KZ_OK);
    kz_connect_token by_new = token_for(2, SERVER_ID, UNIX_NOW + 60);
    fx.backend = old_backend;
    kz_connect_token by_old = token_for(3, SERVER_ID, UNIX_NOW + 60);
    kz__handshake h2, h3;
    kz_address b = addr(0, 2, 5000), c = addr(0, 3, 5000);
    connect_client(&h2, &by_new, &b);
    connect_client(&h3, &by_old, &c);

    /* Only the new one: the old backend's next token is refused, and the
     * sessions already admitted keep their slots. */
    cr_assert_eq(kz__gate_trust(fx.gate, both + 1, 1), KZ_OK);
    kz_connect_token late = token_for(4, SERVER_ID, UNIX_NOW + 60);
    kz_address d = addr(0, 4, 5000);
    cr_assert_eq(kz__handshake_init(&hs, &late), KZ_OK);
    cr_assert_eq(step(&hs, &d, NULL), KZ_GATE_REPLY);
    cr_assert_eq(step(&hs, &d, NULL), KZ_GATE_DROP);
    cr_assert_eq(counter(KZ_GATE_C_DROP_TOKEN_SIGNATURE), 2);
    cr_assert_eq(kz__gate_slot_at(fx.gate, h3.slot)->state, KZ_SLOT_PENDING);
    cr_assert_eq(kz__gate_sessions(fx.gate), 2);
}

/* A draining server denies new sessions with a reason the client sees,
 * cancels the slots it granted that never connected (they are not
 * clients: a drain must not wait up to pending_timeout for them), keeps
 * connected ones, and accepts again when told to. */
Test(gate, a_draining_gate_denies_new_sessions_with_a_reason)
{
    kz_connect_token first = token_for(1, SERVER_ID, UNIX_NOW + 60);
    kz_connect_token third = token_for(3, SERVER_ID, UNIX_NOW + 60);
    kz__handshake h1, h3;
    kz_address a = addr(0, 1, 5000), c = addr(0, 3, 5000);
    connect_client(&h1, &first, &a);
    connect_client(&h3, &third, &c);
    cr_assert_eq(kz__gate_mark_connected(fx.gate, &c), (int32_t)h3.slot);
    cr_assert_eq(kz__gate_sessions(fx.gate), 2);

    kz__gate_set_accepting(fx.gate, 0);
    cr_assert_eq(kz__gate_sessions(fx.gate), 1, "the pending slot is cancelled at once");
    cr_assert_eq(kz__gate_slot_at(fx.gate, h3.slot)->state, KZ_SLOT_CONNECTED);
    cr_assert_eq(counter(KZ_GATE_C_PENDING_CANCELLED), 1);
    kz_connect_token second = token_for(2, SERVER_ID, UNIX_NOW + 60);
    kz__handshake h2;
    kz_address b = addr(0, 2, 5000);
    size_t rlen;
    cr_assert_eq(kz__handshake_init(&h2, &second), KZ_OK);
    cr_assert_eq(step(&h2, &b, NULL), KZ_GATE_REPLY);  /* challenge */
    cr_assert_eq(step(&h2, &b, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_DENY_BYTES);
    cr_assert_eq(h2.deny_reason, KZ_DENY_SHUTTING_DOWN);
    cr_assert_eq(counter(KZ_GATE_C_DROP_DRAINING), 1);

    /* The cancelled client asking again learns why. */
    h1.state = KZ_HS_REQUESTING;
    cr_assert_eq(step(&h1, &a, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_DENY_BYTES);
    cr_assert_eq(h1.deny_reason, KZ_DENY_SHUTTING_DOWN);
    cr_assert_eq(kz__gate_mark_connected(fx.gate, &a), -1, "its late ENet connect is refused");

    kz__gate_set_accepting(fx.gate, 1);
    cr_assert_eq(step(&h2, &b, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_ACCEPT_BYTES);
    cr_assert_eq(kz__gate_sessions(fx.gate), 2);
}

/* Two I/O threads verify at once (the signature check runs without the
 * gate's lock): the same token from two addresses, or two tokens of one
 * client, both pass the first table checks; the second to finish is
 * refused, as if they had come one after the other. */
Test(gate, verifications_finished_out_of_order_still_admit_one_session)
{
    kz_connect_token ct = token_for(60, SERVER_ID, UNIX_NOW + 60);
    kz_connect_token same_client = token_for(60, SERVER_ID, UNIX_NOW + 61);
    const kz_connect_token *tokens[3] = {&ct, &ct, &same_client};
    kz_address from[3] = {addr(10, 0, 1000), addr(10, 1, 1000), addr(10, 2, 1000)};
    kz__handshake hs[3];
    uint8_t req[3][KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    kz__gate_job jobs[3];
    size_t rlen;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(kz__handshake_init(&hs[i], tokens[i]), KZ_OK);
        cr_assert_eq(step(&hs[i], &from[i], NULL), KZ_GATE_REPLY); /* challenge */
        size_t n = kz__handshake_request(&hs[i], req[i]);
        cr_assert_eq(kz__gate_datagram_begin(fx.gate, &from[i], req[i], n, fx.now, UNIX_NOW,
                                             reply, sizeof reply, &rlen, &jobs[i]),
                     KZ_GATE_VERIFY, "request %d goes to verification", i);
    }
    for (int i = 0; i < 3; i++)
        kz__gate_job_run(&jobs[i], UNIX_NOW);
    cr_assert_eq(kz__gate_job_finish(fx.gate, &jobs[0], fx.now, UNIX_NOW, reply, sizeof reply,
                                     &rlen),
                 KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_ACCEPT_BYTES);
    cr_assert_eq(kz__gate_job_finish(fx.gate, &jobs[1], fx.now, UNIX_NOW, reply, sizeof reply,
                                     &rlen),
                 KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_DENY_BYTES);
    cr_assert_eq(reply[KZ_GATE_HEADER_BYTES], KZ_DENY_TOKEN_IN_USE);
    cr_assert_eq(kz__gate_job_finish(fx.gate, &jobs[2], fx.now, UNIX_NOW, reply, sizeof reply,
                                     &rlen),
                 KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_DENY_BYTES);
    cr_assert_eq(reply[KZ_GATE_HEADER_BYTES], KZ_DENY_CLIENT_IN_USE);
    cr_assert_eq(kz__gate_sessions(fx.gate), 1);
    uint8_t zero[sizeof jobs[0]];
    memset(zero, 0, sizeof zero);
    cr_assert_arr_eq(&jobs[2], zero, sizeof zero, "a finished job holds no keys");
}

/* A server that can take no one for now (its audit log is down) says so
 * with its own reason, counted apart from a drain, and accepts again. */
Test(gate, an_unavailable_gate_denies_with_its_own_reason_and_reopens)
{
    kz_connect_token ct = token_for(70, SERVER_ID, UNIX_NOW + 60);
    kz__handshake hs;
    kz_address a = addr(11, 0, 5000);
    size_t rlen;
    kz__gate_refuse(fx.gate, KZ_DENY_UNAVAILABLE);
    cr_assert_eq(kz__handshake_init(&hs, &ct), KZ_OK);
    cr_assert_eq(step(&hs, &a, NULL), KZ_GATE_REPLY); /* challenge */
    cr_assert_eq(step(&hs, &a, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_DENY_BYTES);
    cr_assert_eq(hs.deny_reason, KZ_DENY_UNAVAILABLE);
    cr_assert_eq(counter(KZ_GATE_C_DROP_UNAVAILABLE), 1);
    cr_assert_eq(counter(KZ_GATE_C_DROP_DRAINING), 0);
    kz__gate_refuse(fx.gate, 0);
    hs.state = KZ_HS_REQUESTING;
    hs.deny_reason = 0;
    cr_assert_eq(step(&hs, &a, &rlen), KZ_GATE_REPLY);
    cr_assert_eq(rlen, KZ_GATE_ACCEPT_BYTES);
    cr_assert_eq(hs.state, KZ_HS_ACCEPTED);
}
