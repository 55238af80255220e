#include "stress.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <kizuna/transport.h>

static kzt_result fail(const char *why)
{
    kzt_result r = {1, 0, {0}};
    snprintf(r.first, sizeof r.first, "%s", why);
    return r;
}

static int mint(const kz_sign_keypair *b, const kz_box_keypair *s, uint16_t port,
                kz_connect_token *ct)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = 7;
    t.create_time = (uint64_t)time(NULL) - 1;
    t.expire_time = t.create_time + 300;
    t.server_id = 7;
    t.n_addresses = 1;
    t.addresses[0].family = KZ_ADDR_IPV4;
    t.addresses[0].ip[0] = 127;
    t.addresses[0].ip[3] = 1;
    t.addresses[0].port = port;
    t.client_id = 1;
    t.avatar_id = 1;
    strcpy(t.name, "stress");
    strcpy(t.claims.method, "none");
    size_t len;
    int rc = kz_token_mint(&t, b->secret_key, s->public_key, &ct->keys, ct->token,
                           sizeof ct->token, &len);
    ct->token_len = (uint16_t)len;
    return rc;
}

/* The application side of the server: echo whatever arrives. */
static uint32_t echo_all(kz_netserver *srv)
{
    kz_netmsg m;
    uint32_t n = 0;
    while (kz_netserver_poll(srv, &m) == KZ_OK)
        if (m.kind == KZ_NETMSG_DATA &&
            kz_netserver_send(srv, m.slot, m.channel, m.type, m.data, m.len) == KZ_OK)
            n++;
    return n;
}

kzt_result kzt_transport_echo(uint32_t messages)
{
    kz_sign_keypair backend;
    kz_box_keypair server;
    if (kz_sign_keypair_generate(&backend) || kz_box_keypair_generate(&server))
        return fail("keys");
    kz_netserver_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.verifier.protocol_id = 7;
    cfg.verifier.server_id = 7;
    memcpy(cfg.verifier.backend_pk, backend.public_key, 32);
    cfg.verifier.server_keys = server;
    cfg.bind_ip = htonl(0x7f000001);
    cfg.max_clients = 4;
    cfg.threaded = 1;
    cfg.io_threads = 2; /* two hosts share the gate: TSan sees its lock */
    kz_netserver *srv = kz_netserver_create(&cfg);
    if (!srv)
        return fail("server");
    kz_connect_token ct;
    kz_netclient_config cc;
    memset(&cc, 0, sizeof cc);
    kz_netclient *c = NULL;
    if (mint(&backend, &server, kz_netserver_port(srv), &ct) || !(c = kz_netclient_create(&cc, &ct))) {
        kz_netserver_destroy(srv);
        return fail("client");
    }
    kz_clock clock = kz_clock_system();
    kz_time_ns deadline = kz_clock_now(&clock) + 60 * KZ_NS_PER_S;
    kzt_result res = {0, 0, {0}};
    uint32_t sent = 0;
    while (res.delivered < messages && kz_clock_now(&clock) < deadline) {
        kz_netclient_update(c, kz_clock_now(&clock));
        if (kz_netclient_state(c) == KZ_NETCLIENT_CONNECTED && sent < messages &&
            sent - res.delivered < 64) {
            uint32_t v = sent;
            if (kz_netclient_send(c, KZ_CHANNEL_EVENT, 1, &v, sizeof v) == KZ_OK)
                sent++;
        }
        echo_all(srv);
        kz_netmsg m;
        while (kz_netclient_poll(c, &m) == KZ_OK) {
            uint32_t v;
            memcpy(&v, m.data, sizeof v);
            if (m.len != sizeof v || v != res.delivered) {
                res.violations++;
                snprintf(res.first, sizeof res.first, "echo %u came back as %u", (unsigned)res.delivered, v);
            }
            res.delivered++;
        }
    }
    if (res.delivered != messages && res.violations == 0) {
        res.violations = 1;
        snprintf(res.first, sizeof res.first, "only %llu of %u echoes in 60 s",
                 (unsigned long long)res.delivered, messages);
    }
    kz_netclient_destroy(c);
    kz_netserver_destroy(srv);
    return res;
}
