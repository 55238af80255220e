/*
 * Gate costs, one core, no sockets: full handshakes per second (request ->
 * challenge -> request with cookie -> token verification -> accept, then
 * the slot is released), and the cost of refusing spoofed requests (the
 * flood case: cheap checks and a cookie reply). Target: >= 5,000 full
 * handshakes per second per core.
 *
 *   kz-bench-gate          KZ_BENCH_RUNS=N sets the runs (default 7)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kzb_util.h"
#include "net/gate.h"

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

static kz__gate *make_gate(void)
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
    kzb_end();
    return 0;
}
