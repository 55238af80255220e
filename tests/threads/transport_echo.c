#include "stress.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <kizuna/transport.h>

#include "support/loopback.h"

static kzt_result fail(const char *why)
{
    kzt_result r = {1, 0, {0}};
    snprintf(r.first, sizeof r.first, "%s", why);
    return r;
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
    kzt_keys keys;
    if (kzt_keys_make(&keys))
        return fail("keys");
    kz_netserver_config cfg;
    kzt_server_config(&cfg, &keys, 7, 7, 4);
    cfg.threaded = 1;
    cfg.io_threads = 2; /* two hosts share the gate: TSan sees its lock */
    kz_netserver *srv = kz_netserver_create(&cfg);
    if (!srv)
        return fail("server");
    kz_connect_token ct;
    kz_netclient_config cc;
    memset(&cc, 0, sizeof cc);
    kz_netclient *c = NULL;
    if (kzt_mint(&keys, 7, 7, kz_netserver_port(srv), 1, &ct) || !(c = kz_netclient_create(&cc, &ct))) {
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
