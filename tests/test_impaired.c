/*
 * 64 clients through an impairing relay (20% burst loss, 150 +- 50 ms one
 * way) for 30 seconds, single-threaded mode: every session stays up, the
 * reliable channel delivers every message complete and in order in both
 * directions, and a capture of the whole session never shows the plaintext
 * that was sent.
 */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kizuna/proxy.h>
#include <kizuna/transport.h>

#include "support/loopback.h"

#define CLIENTS 64
#define SEND_SECONDS 30
#define MARKER "KIZUNA-PLAINTEXT-MARKER"

static uint64_t captured, marker_seen;

static void tap(void *ctx, uint32_t dir, const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)dir;
    captured++;
    if (memmem(data, len, MARKER, strlen(MARKER)) || memmem(data, len, "client-", 7))
        marker_seen++;
}

typedef struct {
    kz_netclient *c;
    uint32_t sent, received;       /* client -> server messages, server -> client */
} bot;

static bot bots[CLIENTS];
static uint32_t server_got[CLIENTS + 1], server_sent[CLIENTS + 1];
static uint64_t slot_client[CLIENTS];
static int disorder;

static void server_side(kz_netserver *srv)
{
    kz_netmsg m;
    while (kz_netserver_poll(srv, &m) == KZ_OK) {
        if (m.kind == KZ_NETMSG_CONNECT) {
            slot_client[m.slot] = ((const kz_token_info *)m.data)->client_id;
            continue;
        }
        if (m.kind != KZ_NETMSG_DATA || m.channel != KZ_CHANNEL_EVENT)
            continue;
        uint64_t id = slot_client[m.slot];
        char expect[96];
        snprintf(expect, sizeof expect, MARKER " client-%u seq-%u", (unsigned)id,
                 (unsigned)server_got[id]);
        if (m.len != strlen(expect) || memcmp(m.data, expect, m.len) != 0)
            disorder++;
        server_got[id]++;
        char reply[96];
        int n = snprintf(reply, sizeof reply, MARKER " reply-%u", (unsigned)server_sent[id]);
        if (kz_netserver_send(srv, m.slot, KZ_CHANNEL_EVENT, 2, reply, (uint32_t)n) == KZ_OK)
            server_sent[id]++;
    }
}

static void client_side(bot *b, kz_time_ns now, int sending, kz_time_ns *next_send)
{
    kz_netclient_update(b->c, now);
    kz_netmsg m;
    while (kz_netclient_poll(b->c, &m) == KZ_OK) {
        char expect[96];
        snprintf(expect, sizeof expect, MARKER " reply-%u", (unsigned)b->received);
        if (m.len != strlen(expect) || memcmp(m.data, expect, m.len) != 0)
            disorder++;
        b->received++;
    }
    if (sending && kz_netclient_state(b->c) == KZ_NETCLIENT_CONNECTED && now >= *next_send) {
        char text[96];
        int n = snprintf(text, sizeof text, MARKER " client-%u seq-%u",
                         (unsigned)(b - bots) + 1, (unsigned)b->sent);
        if (kz_netclient_send(b->c, KZ_CHANNEL_EVENT, 1, text, (uint32_t)n) == KZ_OK)
            b->sent++;
        *next_send = now + 200 * KZ_NS_PER_MS;
    }
}

Test(impaired, sessions_survive_burst_loss_and_jitter, .timeout = 180)
{
    kzt_keys keys;
    cr_assert_eq(kzt_keys_make(&keys), KZ_OK);
    kz_netserver_config sc;
    kzt_server_config(&sc, &keys, 5, 5, CLIENTS);
    kz_netserver *srv = kz_netserver_create(&sc);
    cr_assert_not_null(srv);

    kz_proxy_config pc;
    memset(&pc, 0, sizeof pc);
    pc.server_port = kz_netserver_port(srv);
    pc.max_clients = CLIENTS;
    const char *profile = getenv("KZ_TEST_PROFILE") ? getenv("KZ_TEST_PROFILE") : "burst=20,burst_len=4,delay=150,jitter=50,queue=8192";
    cr_assert_eq(kz_impair_profile(profile, &pc.up), KZ_OK);
    pc.down = pc.up;
    if (getenv("KZ_TEST_UP_ONLY"))
        memset(&pc.down, 0, sizeof pc.down);
    if (getenv("KZ_TEST_DOWN_ONLY"))
        memset(&pc.up, 0, sizeof pc.up);
    pc.seed = 2026;
    pc.tap = tap;
    kz_proxy *proxy = kz_proxy_create(&pc);
    cr_assert_not_null(proxy);

    kz_netclient_config cc;
    memset(&cc, 0, sizeof cc);
    cc.server.family = KZ_ADDR_IPV4;
    cc.server.ip[0] = 127;
    cc.server.ip[3] = 1;
    cc.server.port = kz_proxy_port(proxy);
    cc.connect_timeout_ms = 20000;
    for (int i = 0; i < CLIENTS; i++) {
        kz_connect_token ct;
        cr_assert_eq(kzt_mint(&keys, 5, 5, kz_netserver_port(srv), (uint64_t)i + 1, &ct), KZ_OK);
        bots[i].c = kz_netclient_create(&cc, &ct);
        cr_assert_not_null(bots[i].c);
    }
    kz_clock clock = kz_clock_system();
    kz_time_ns start = kz_clock_now(&clock), next[CLIENTS] = {0};
    kz_time_ns stop_sending = start + (SEND_SECONDS + 5) * KZ_NS_PER_S;
    kz_time_ns end = stop_sending + 20 * KZ_NS_PER_S;
    for (kz_time_ns now = start; now < end; now = kz_clock_now(&clock)) {
        kz_proxy_pump(proxy, now);
        kz_netserver_service(srv, now);
        server_side(srv);
        for (int i = 0; i < CLIENTS; i++)
            client_side(&bots[i], now, now < stop_sending, &next[i]);
        kz_proxy_pump(proxy, now);
        /* Done early once everything sent has arrived both ways. */
        int settled = now >= stop_sending;
        for (int i = 0; settled && i < CLIENTS; i++)
            settled = server_got[i + 1] == bots[i].sent && bots[i].received == server_sent[i + 1];
        if (settled)
            break;
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
    kz_impair_stats up, down;
    kz_proxy_stats(proxy, &up, &down);
    if (getenv("KZ_TEST_VERBOSE")) {
        const kz_counters *nc = kz_netserver_counters(srv), *gc = kz_netserver_gate_counters(srv);
        for (uint32_t i = 0; i < nc->n_counters; i++)
            fprintf(stderr, "net %s=%llu\n", kz_counters_name(nc, i), (unsigned long long)kz_counters_get(nc, i));
        for (uint32_t i = 0; i < gc->n_counters; i++)
            if (kz_counters_get(gc, i))
                fprintf(stderr, "gate %s=%llu\n", kz_counters_name(gc, i), (unsigned long long)kz_counters_get(gc, i));
        for (int i = 0; i < CLIENTS; i++)
            if (server_got[i + 1] != bots[i].sent || bots[i].received != server_sent[i + 1])
                fprintf(stderr, "client %d state %u sent %u got %u | replies %u received %u\n", i,
                        kz_netclient_state(bots[i].c), bots[i].sent, server_got[i + 1], server_sent[i + 1], bots[i].received);
    }
    uint64_t min_sent = UINT64_MAX;
    for (int i = 0; i < CLIENTS; i++) {
        cr_assert_eq(kz_netclient_state(bots[i].c), KZ_NETCLIENT_CONNECTED, "client %d: state %u reason %u sent %u got %u", i, kz_netclient_state(bots[i].c), kz_netclient_reason(bots[i].c), bots[i].sent, server_got[i + 1]);
        cr_assert_eq(server_got[i + 1], bots[i].sent, "client %d: all reliable messages in", i);
        cr_assert_eq(bots[i].received, server_sent[i + 1], "client %d: all replies back (%u of %u)", i, bots[i].received, server_sent[i + 1]);
        min_sent = bots[i].sent < min_sent ? bots[i].sent : min_sent;
    }
    cr_assert_geq(min_sent, SEND_SECONDS * 4, "every client kept sending for 30 s");
    cr_assert_eq(disorder, 0, "reliable messages arrive complete and in order");
    cr_assert_eq(kz_netserver_sessions(srv), CLIENTS);
    uint64_t lost = up.dropped_burst + up.dropped_loss, total = up.sent;
    cr_assert_gt(lost * 100, total * 10, "the relay really lost packets (%llu of %llu)",
                 (unsigned long long)lost, (unsigned long long)total);
    cr_assert_gt(captured, 10000);
    cr_assert_eq(marker_seen, 0, "plaintext visible in the capture");
    for (int i = 0; i < CLIENTS; i++)
        kz_netclient_destroy(bots[i].c);
    kz_proxy_destroy(proxy);
    kz_netserver_destroy(srv);
}
