/*
 * Gate costs, one core, no sockets: full handshakes per second (request ->
 * challenge -> request with cookie -> token verification -> accept, then
 * the slot is released), and the cost of refusing spoofed requests (the
 * flood case: cheap checks and a cookie reply). Target: >= 5,000 full
 * handshakes per second per core. Resume (docs/PROTOCOL.md "Resume"):
 * spoofed RESUMEs refused (no cookie: challenged), RESUMEs with a cookie
 * but a forged ticket (denied), and proven moves of one session between
 * two addresses (cookie, ticket, proof, move, RESUMED sealed and opened).
 *
 *   kz-bench-gate          KZ_BENCH_RUNS=N sets the runs (default 7)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kzb_util.h"
#include "net/gate.h"
#include "net/resume.h"

#define TOKENS 64

static kz_sign_keypair backend;
static kz_box_keypair server;
static kz_connect_token tokens[TOKENS];

static void mint_all(void)
{
    if (kz_sign_keypair_generate(&backend) || kz_box_keypair_generate(&server))
        abort();
    for (int i = 0; i < TOKENS; i++) {
        kz_token_info t;
        memset(&t, 0, sizeof t);
        t.protocol_id = 1;
        t.create_time = (uint64_t)time(NULL) - 1;
        t.expire_time = t.create_time + 3600;
        t.server_id = 1;
        t.n_addresses = 1;
        t.addresses[0].family = KZ_ADDR_IPV4;
        t.addresses[0].port = 4000;
        t.client_id = (uint64_t)i + 1;
        t.avatar_id = (uint64_t)i + 1;
        strcpy(t.name, "bench");
        strcpy(t.claims.method, "none");
        size_t len;
        if (kz_token_mint(&t, backend.secret_key, server.public_key, &tokens[i].keys,
                          tokens[i].token, sizeof tokens[i].token, &len))
            abort();
        tokens[i].token_len = (uint16_t)len;
    }
}

static kz__gate *make_gate_grace(uint32_t grace_ms);

static kz__gate *make_gate(void)
{
    return make_gate_grace(0);
}

static kz__gate *make_gate_grace(uint32_t grace_ms)
{
    kz__gate_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.verifier.protocol_id = 1;
    cfg.verifier.server_id = 1;
    memcpy(cfg.verifier.backend_pk, backend.public_key, 32);
    cfg.verifier.server_keys = server;
    cfg.max_sessions = TOKENS;
    cfg.n_ports = 1;
    cfg.ports[0] = 4000;
    cfg.challenge_rate = 1000000; /* measuring cost, not the limiter */
    cfg.resume_grace_ms = grace_ms;
    kz__gate *g = kz__gate_create(&cfg);
    if (!g)
        abort();
    return g;
}

static double handshakes_per_second(uint32_t n)
{
    kz__gate *g = make_gate();
    uint8_t req[KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    uint64_t unix_now = (uint64_t)time(NULL), t0 = kzb_now_ns();
    for (uint32_t i = 0; i < n; i++) {
        /* Tokens cycle; each always comes from its own address (a token
         * reused from another address would be refused, as it should). */
        kz__handshake hs;
        if (kz__handshake_init(&hs, &tokens[i % TOKENS]) != KZ_OK)
            abort();
        kz_address from = {KZ_ADDR_IPV4, {127, 0, (uint8_t)(i % TOKENS), 1}, 5000};
        kz_time_ns now = KZ_NS_PER_S + (kz_time_ns)i * 1000;
        for (int round = 0; round < 2; round++) {
            size_t len = kz__handshake_request(&hs, req);
            if (kz__gate_datagram(g, &from, req, len, now, unix_now, reply, sizeof reply,
                                  &rlen) != KZ_GATE_REPLY)
                abort();
            kz__handshake_receive(&hs, reply, rlen);
        }
        if (hs.state != KZ_HS_ACCEPTED)
            abort();
        kz__gate_release(g, hs.slot);
    }
    double secs = (double)(kzb_now_ns() - t0) / 1e9;
    kz__gate_destroy(g);
    return n / secs;
}

static double spoofed_per_second(uint32_t n)
{
    kz__gate *g = make_gate();
    kz__handshake hs;
    if (kz__handshake_init(&hs, &tokens[0]) != KZ_OK)
        abort();
    uint8_t req[KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t len = kz__handshake_request(&hs, req), rlen;
    uint64_t unix_now = (uint64_t)time(NULL), t0 = kzb_now_ns();
    for (uint32_t i = 0; i < n; i++) {
        kz_address from = {KZ_ADDR_IPV4, {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i},
                           (uint16_t)(1024 + i % 60000)};
        kz__gate_datagram(g, &from, req, len, KZ_NS_PER_S, unix_now, reply, sizeof reply, &rlen);
    }
    double secs = (double)(kzb_now_ns() - t0) / 1e9;
    kz__gate_destroy(g);
    return n / secs;
}

/* A gate with resume on and one connected session of tokens[0] at `a`;
 * its ticket in `ticket`. */
static kz__gate *resume_fixture(const kz_address *a, uint8_t ticket[KZ_TICKET_BYTES])
{
    kz__gate *g = make_gate_grace(15000);
    uint8_t req[KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    kz__handshake hs;
    if (kz__handshake_init(&hs, &tokens[0]) != KZ_OK)
        abort();
    for (int round = 0; round < 2; round++) {
        size_t len = kz__handshake_request(&hs, req);
        if (kz__gate_datagram(g, a, req, len, KZ_NS_PER_S, (uint64_t)time(NULL), reply,
                              sizeof reply, &rlen) != KZ_GATE_REPLY)
            abort();
        kz__handshake_receive(&hs, reply, rlen);
    }
    if (hs.state != KZ_HS_ACCEPTED || kz__gate_mark_connected(g, a) != (int32_t)hs.slot)
        abort();
    kz__ticket_pack(&kz__gate_slot_at(g, hs.slot)->ticket, ticket);
    return g;
}

/* The cookie the gate gives `a` (from a RESUME without one). */
static void cookie_for(kz__gate *g, const kz_address *a, const uint8_t ticket[KZ_TICKET_BYTES],
                       uint8_t cookie[KZ_COOKIE_BYTES])
{
    uint8_t d[KZ_GATE_RESUME_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    kz__resume_build(&tokens[0].keys, NULL, ticket, d);
    if (kz__gate_datagram(g, a, d, sizeof d, KZ_NS_PER_S, 0, reply, sizeof reply, &rlen) !=
            KZ_GATE_REPLY ||
        rlen != KZ_GATE_RESUME_CHALLENGE_BYTES)
        abort();
    memcpy(cookie, reply + KZ_GATE_HEADER_BYTES, KZ_COOKIE_BYTES);
}

/* Proven moves of one session back and forth between two addresses. */
static double moves_per_second(uint32_t n)
{
    kz_address at[2] = {{KZ_ADDR_IPV4, {127, 0, 0, 1}, 5000}, {KZ_ADDR_IPV4, {127, 0, 0, 2}, 6000}};
    uint8_t ticket[KZ_TICKET_BYTES], cookie[2][KZ_COOKIE_BYTES];
    kz__gate *g = resume_fixture(&at[0], ticket);
    cookie_for(g, &at[0], ticket, cookie[0]);
    cookie_for(g, &at[1], ticket, cookie[1]);
    uint8_t d[KZ_GATE_RESUME_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    uint64_t t0 = kzb_now_ns();
    for (uint32_t i = 0; i < n; i++) {
        uint32_t to = (i + 1) % 2;
        kz__resume_build(&tokens[0].keys, cookie[to], ticket, d);
        if (kz__gate_datagram(g, &at[to], d, sizeof d, KZ_NS_PER_S, 0, reply, sizeof reply,
                              &rlen) != KZ_GATE_REPLY ||
            kz__gate_moved_slot(g) < 0 ||
            kz__resumed_open(&tokens[0].keys, reply, rlen, ticket) != KZ_OK)
            abort();
    }
    double secs = (double)(kzb_now_ns() - t0) / 1e9;
    kz__gate_destroy(g);
    return n / secs;
}

/* RESUMEs from spoofed addresses: without a cookie (`with_cookie` 0: a
 * challenge each), or with a valid cookie and a forged ticket (1: a DENY
 * each; a spoofer cannot have such a cookie, so this is the cost of a
 * proven address presenting garbage). */
static double refused_resumes_per_second(uint32_t n, int with_cookie)
{
    kz_address home = {KZ_ADDR_IPV4, {127, 0, 0, 1}, 5000};
    uint8_t ticket[KZ_TICKET_BYTES], cookie[KZ_COOKIE_BYTES];
    kz__gate *g = resume_fixture(&home, ticket);
    kz_address from = {KZ_ADDR_IPV4, {10, 1, 2, 3}, 7000};
    cookie_for(g, &from, ticket, cookie);
    ticket[20] ^= 1; /* a secret nobody was given */
    uint8_t d[KZ_GATE_RESUME_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen;
    kz__resume_build(&tokens[0].keys, with_cookie ? cookie : NULL, ticket, d);
    uint64_t t0 = kzb_now_ns();
    for (uint32_t i = 0; i < n; i++) {
        if (!with_cookie) {
            from.ip[1] = (uint8_t)(i >> 16);
            from.ip[2] = (uint8_t)(i >> 8);
            from.ip[3] = (uint8_t)i;
            from.port = (uint16_t)(1024 + i % 60000);
        }
        kz__gate_datagram(g, &from, d, sizeof d, KZ_NS_PER_S, 0, reply, sizeof reply, &rlen);
    }
    double secs = (double)(kzb_now_ns() - t0) / 1e9;
    kz__gate_destroy(g);
    return n / secs;
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "gate: handshakes and spoofed requests, one core");
    mint_all();
    size_t runs = kzb_runs();
    double v[64];
    for (size_t i = 0; i < runs; i++)
        v[i] = handshakes_per_second(2000);
    kzb_report("full handshakes", "per s", v, runs);
    for (size_t i = 0; i < runs; i++)
        v[i] = spoofed_per_second(200000);
    kzb_report("spoofed requests refused (challenged)", "per s", v, runs);
    for (size_t i = 0; i < runs; i++)
        v[i] = refused_resumes_per_second(200000, 0);
    kzb_report("spoofed resumes refused (challenged)", "per s", v, runs);
    for (size_t i = 0; i < runs; i++)
        v[i] = refused_resumes_per_second(200000, 1);
    kzb_report("resumes with a forged ticket refused (denied)", "per s", v, runs);
    for (size_t i = 0; i < runs; i++)
        v[i] = moves_per_second(50000);
    kzb_report("proven resumes (session moved, RESUMED opened)", "per s", v, runs);
    kzb_end();
    return 0;
}
