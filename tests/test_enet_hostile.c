/*
 * A client that passed the gate and then speaks hostile ENet: it completes
 * the handshake and the ENet connect honestly (so it knows its connectID and
 * its datagrams pass the checksum), then sends crafted ENet datagrams: bad
 * channel ids, enormous fragment counts and lengths, lengths larger than
 * the datagram, unknown commands, random command bodies. The server must
 * drop them, keep serving an honest client, and keep ENet's own memory
 * bounded (counted through ENet's allocator callbacks).
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <enet/enet.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kizuna/transport.h>

#include "net/gate.h"
#include "support/loopback.h"

/* ---- ENet memory, counted ------------------------------------------------ */

static _Atomic long long enet_live, enet_peak;

static void *count_malloc(size_t n)
{
    size_t *p = malloc(n + 16);
    if (!p)
        return NULL;
    *p = n;
    long long live = atomic_fetch_add(&enet_live, (long long)n) + (long long)n;
    long long peak = atomic_load(&enet_peak);
    while (live > peak && !atomic_compare_exchange_weak(&enet_peak, &peak, live)) {
    }
    return (char *)p + 16;
}

static void count_free(void *q)
{
    if (!q)
        return;
    size_t *p = (size_t *)((char *)q - 16);
    atomic_fetch_sub(&enet_live, (long long)*p);
    free(p);
}

/* ---- the rogue client ---------------------------------------------------- */

static kz__handshake rogue_hs;

static int rogue_intercept(ENetHost *host, ENetEvent *ev)
{
    (void)ev;
    if (host->receivedDataLength >= 2 && host->receivedData[0] == KZ_GATE_MARK0 &&
        host->receivedData[1] == KZ_GATE_MARK1) {
        kz__handshake_receive(&rogue_hs, host->receivedData, host->receivedDataLength);
        return 1;
    }
    return 0;
}

/* Sends `body` as an ENet datagram of `peer`'s session with a valid
 * checksum: header = peer id with session bits, then the CRC32 computed
 * with the connectID in its place, as ENet does. */
static void send_crafted(ENetHost *h, ENetPeer *peer, const uint8_t *body, size_t n)
{
    uint8_t d[2048];
    uint16_t pid = (uint16_t)(peer->outgoingPeerID |
                              (peer->outgoingSessionID << ENET_PROTOCOL_HEADER_SESSION_SHIFT));
    pid = htons(pid);
    memcpy(d, &pid, 2);
    uint32_t sum = peer->connectID;
    memcpy(d + 2, &sum, 4);
    memcpy(d + 6, body, n);
    ENetBuffer b = {.data = d, .dataLength = 6 + n};
    sum = enet_crc32(&b, 1);
    memcpy(d + 2, &sum, 4);
    enet_socket_send(h->socket, &peer->address, &b, 1);
}

static size_t cmd(uint8_t *o, uint8_t command, uint8_t channel, uint16_t seq)
{
    o[0] = command;
    o[1] = channel;
    uint16_t s = htons(seq);
    memcpy(o + 2, &s, 2);
    return 4;
}

static size_t put16(uint8_t *o, uint16_t v) { v = htons(v); memcpy(o, &v, 2); return 2; }
static size_t put32(uint8_t *o, uint32_t v) { v = htonl(v); memcpy(o, &v, 4); return 4; }

/* One crafted datagram of kind `k` (0..7) into `o`; returns its length. */
static size_t craft(uint8_t *o, int k, uint32_t i)
{
    size_t n = 0;
    uint8_t rel = ENET_PROTOCOL_COMMAND_FLAG_ACKNOWLEDGE;
    switch (k) {
    case 0: /* unreliable send on a channel that does not exist */
        n += cmd(o, ENET_PROTOCOL_COMMAND_SEND_UNRELIABLE, 200, 0);
        n += put16(o + n, (uint16_t)i);
        n += put16(o + n, 8);
        memset(o + n, 'x', 8);
        return n + 8;
    case 1: /* a fragment claiming 2^31 fragments of a 2 GiB packet */
        n += cmd(o, ENET_PROTOCOL_COMMAND_SEND_FRAGMENT | rel, 2, (uint16_t)(i + 1));
        n += put16(o + n, (uint16_t)(i + 1));
        n += put16(o + n, 16);
        n += put32(o + n, 0x7fffffffu);
        n += put32(o + n, 0);
        n += put32(o + n, 0x7fffffffu);
        n += put32(o + n, 0);
        memset(o + n, 'f', 16);
        return n + 16;
    case 2: /* a plausible fragment series start: 4 KiB packet, 1000 pieces */
        n += cmd(o, ENET_PROTOCOL_COMMAND_SEND_FRAGMENT | rel, 2, (uint16_t)(i + 1));
        n += put16(o + n, (uint16_t)(i + 1));
        n += put16(o + n, 4);
        n += put32(o + n, 1000);
        n += put32(o + n, 0);
        n += put32(o + n, 4000);
        n += put32(o + n, 0);
        memset(o + n, 'g', 4);
        return n + 4;
    case 3: /* reliable send whose length exceeds the datagram */
        n += cmd(o, ENET_PROTOCOL_COMMAND_SEND_RELIABLE | rel, 2, (uint16_t)(i + 1));
        n += put16(o + n, 0xffff);
        memset(o + n, 'r', 32);
        return n + 32;
    case 4: /* unknown command numbers */
        n += cmd(o, (uint8_t)(13 + i % 3), 0, 0);
        memset(o + n, 'u', 20);
        return n + 20;
    case 5: /* bandwidth and throttle commands full of nonsense */
        n += cmd(o, ENET_PROTOCOL_COMMAND_THROTTLE_CONFIGURE | rel, 0xff, (uint16_t)i);
        n += put32(o + n, 0);
        n += put32(o + n, 0xffffffffu);
        n += put32(o + n, 0xffffffffu);
        return n;
    default: /* random bodies */
        for (size_t j = 0; j < 200; j++)
            o[j] = (uint8_t)((i * 2654435761u) >> (j % 24));
        return 200;
    }
}

/* Connects a raw ENet host through the gate honestly: handshake on its
 * socket, then an ENet connect. Returns the server-side-facing peer. */
static ENetPeer *rogue_connect(kz_netserver *srv, ENetHost *rogue, const kz_connect_token *ct)
{
    kz_clock clock = kz_clock_system();
    cr_assert_eq(kz__handshake_init(&rogue_hs, ct), KZ_OK);
    ENetAddress to = {.host = htonl(0x7f000001), .port = kz_netserver_port(srv)};
    ENetPeer *peer = NULL;
    ENetEvent ev;
    int connected = 0;
    kz_time_ns end = kz_clock_now(&clock) + 5 * KZ_NS_PER_S;
    while (!connected && kz_clock_now(&clock) < end) {
        if (rogue_hs.state != KZ_HS_ACCEPTED) {
            uint8_t req[KZ_GATE_REQUEST_BYTES];
            ENetBuffer b = {.data = req, .dataLength = kz__handshake_request(&rogue_hs, req)};
            enet_socket_send(rogue->socket, &to, &b, 1);
        } else if (!peer) {
            peer = enet_host_connect(rogue, &to, KZ_CHANNEL_COUNT,
                                     kz__connect_tag(&ct->keys, rogue_hs.session_id));
        }
        kz_netserver_service(srv, kz_clock_now(&clock));
        while (enet_host_service(rogue, &ev, 2) > 0)
            connected |= ev.type == ENET_EVENT_TYPE_CONNECT;
    }
    cr_assert(connected, "the rogue got through the gate honestly");
    return peer;
}

/* A well-formed but unsealed unreliable send on the input channel. */
static size_t unsealed_send(uint8_t *o, uint16_t seq)
{
    size_t n = cmd(o, ENET_PROTOCOL_COMMAND_SEND_UNRELIABLE, KZ_CHANNEL_INPUT, 0);
    n += put16(o + n, seq);
    n += put16(o + n, 30);
    memset(o + n, 'c', 30);
    return n + 30;
}

Test(enet_hostile, crafted_enet_from_an_admitted_client_is_dropped_and_memory_stays_bounded,
     .timeout = 60)
{
    ENetCallbacks cb = {count_malloc, count_free, abort};
    cr_assert_eq(enet_initialize_with_callbacks(ENET_VERSION, &cb), 0);
    kzt_keys keys;
    cr_assert_eq(kzt_keys_make(&keys), KZ_OK);
    kz_netserver_config sc;
    kzt_server_config(&sc, &keys, 3, 3, 8);
    sc.max_auth_failures = 1000000; /* keep the rogue admitted for the whole barrage */
    kz_netserver *srv = kz_netserver_create(&sc);
    cr_assert_not_null(srv);
    uint16_t port = kz_netserver_port(srv);
    kz_clock clock = kz_clock_system();

    /* The rogue: honest handshake and ENet connect on a raw ENet host. */
    ENetHost *rogue = enet_host_create(NULL, 1, KZ_CHANNEL_COUNT, 0, 0);
    cr_assert_not_null(rogue);
    rogue->checksum = enet_crc32;
    rogue->intercept = rogue_intercept;
    kz_connect_token rt;
    cr_assert_eq(kzt_mint(&keys, 3, 3, port, 66, &rt), KZ_OK);
    ENetPeer *peer = rogue_connect(srv, rogue, &rt);
    ENetEvent ev;
    kz_time_ns end;

    /* An honest client beside it. */
    kz_connect_token ht;
    cr_assert_eq(kzt_mint(&keys, 3, 3, port, 67, &ht), KZ_OK);
    kz_netclient_config cc;
    memset(&cc, 0, sizeof cc);
    kz_netclient *honest = kz_netclient_create(&cc, &ht);
    cr_assert_not_null(honest);
    end = kz_clock_now(&clock) + 5 * KZ_NS_PER_S;
    while (kz_netclient_state(honest) != KZ_NETCLIENT_CONNECTED && kz_clock_now(&clock) < end) {
        kz_netserver_service(srv, kz_clock_now(&clock));
        kz_netclient_update(honest, kz_clock_now(&clock));
        enet_host_service(rogue, &ev, 1);
    }
    cr_assert_eq(kz_netclient_state(honest), KZ_NETCLIENT_CONNECTED);
    long long before = atomic_load(&enet_live);

    /* Control: one crafted but well-formed unreliable send must get through
     * ENet's checksum and parser to Kizuna's opener (where it fails, being
     * unsealed). This proves the barrage below reaches ENet's parser. */
    const kz_counters *nc = kz_netserver_counters(srv);
    uint64_t bad_before = kz_counters_get(nc, KZ_NET_C_DROP_AUTH) +
                          kz_counters_get(nc, KZ_NET_C_DROP_MALFORMED);
    uint8_t ctl[64];
    send_crafted(rogue, peer, ctl, unsealed_send(ctl, 1));
    end = kz_clock_now(&clock) + 2 * KZ_NS_PER_S;
    while (kz_counters_get(nc, KZ_NET_C_DROP_AUTH) + kz_counters_get(nc, KZ_NET_C_DROP_MALFORMED) ==
               bad_before && kz_clock_now(&clock) < end)
        kz_netserver_service(srv, kz_clock_now(&clock));
    cr_assert_gt(kz_counters_get(nc, KZ_NET_C_DROP_AUTH) + kz_counters_get(nc, KZ_NET_C_DROP_MALFORMED),
                 bad_before, "crafted datagrams pass the checksum and reach the parser");

    /* 20,000 crafted datagrams, the server serviced as they arrive. */
    uint8_t body[512];
    kz_netmsg m;
    int app_data = 0;
    for (uint32_t i = 0; i < 20000; i++) {
        size_t n = craft(body, (int)(i % 7), i);
        send_crafted(rogue, peer, body, n);
        if (i % 50 == 0) {
            kz_netserver_service(srv, kz_clock_now(&clock));
            while (kz_netserver_poll(srv, &m) == KZ_OK)
                app_data += m.kind == KZ_NETMSG_DATA;
            kz_netclient_update(honest, kz_clock_now(&clock));
        }
    }
    for (int i = 0; i < 50; i++) {
        kz_netserver_service(srv, kz_clock_now(&clock));
        while (kz_netserver_poll(srv, &m) == KZ_OK)
            app_data += m.kind == KZ_NETMSG_DATA;
    }
    long long growth = atomic_load(&enet_peak) - before;
    cr_assert_lt(growth, 4ll << 20, "ENet grew by %lld bytes under crafted input", growth);
    cr_assert_eq(app_data, 0, "no crafted datagram reached the application as data");
    cr_assert_eq(kz_netserver_sessions(srv), 2, "both sessions are still up");

    /* The honest client is still served. */
    cr_assert_eq(kz_netclient_send(honest, KZ_CHANNEL_EVENT, 1, "still here", 10), KZ_OK);
    int echoed = 0;
    end = kz_clock_now(&clock) + 5 * KZ_NS_PER_S;
    while (!echoed && kz_clock_now(&clock) < end) {
        kz_time_ns now = kz_clock_now(&clock);
        kz_netclient_update(honest, now);
        kz_netserver_service(srv, now);
        while (kz_netserver_poll(srv, &m) == KZ_OK)
            if (m.kind == KZ_NETMSG_DATA && m.len == 10 && memcmp(m.data, "still here", 10) == 0)
                echoed = kz_netserver_send(srv, m.slot, m.channel, m.type, m.data, m.len) == KZ_OK;
    }
    cr_assert(echoed, "the server still serves the honest client");
    kz_netclient_destroy(honest);
    enet_host_destroy(rogue);
    kz_netserver_destroy(srv);
}

Test(enet_hostile, unsealed_packets_close_the_session_after_the_failure_budget, .timeout = 30)
{
    kzt_keys keys;
    cr_assert_eq(kzt_keys_make(&keys), KZ_OK);
    kz_netserver_config sc;
    kzt_server_config(&sc, &keys, 3, 3, 4); /* default budget: 16 failures */
    kz_netserver *srv = kz_netserver_create(&sc);
    cr_assert_not_null(srv);
    ENetHost *rogue = enet_host_create(NULL, 1, KZ_CHANNEL_COUNT, 0, 0);
    cr_assert_not_null(rogue);
    rogue->checksum = enet_crc32;
    rogue->intercept = rogue_intercept;
    kz_connect_token rt;
    cr_assert_eq(kzt_mint(&keys, 3, 3, kz_netserver_port(srv), 70, &rt), KZ_OK);
    ENetPeer *peer = rogue_connect(srv, rogue, &rt);
    uint8_t pkt[64];
    for (uint16_t i = 0; i < 20; i++)
        send_crafted(rogue, peer, pkt, unsealed_send(pkt, (uint16_t)(i + 1)));
    kz_clock clock = kz_clock_system();
    kz_time_ns end = kz_clock_now(&clock) + 3 * KZ_NS_PER_S;
    const kz_counters *nc = kz_netserver_counters(srv);
    kz_netmsg m;
    int data = 0, gone = 0;
    while (!gone && kz_clock_now(&clock) < end) {
        kz_netserver_service(srv, kz_clock_now(&clock));
        while (kz_netserver_poll(srv, &m) == KZ_OK) {
            data += m.kind == KZ_NETMSG_DATA;
            gone |= m.kind == KZ_NETMSG_DISCONNECT;
        }
    }
    kz_netserver_service(srv, kz_clock_now(&clock));
    cr_assert(gone, "the session was closed");
    cr_assert_eq(data, 0, "nothing unsealed reached the application");
    cr_assert_geq(kz_counters_get(nc, KZ_NET_C_DROP_AUTH) + kz_counters_get(nc, KZ_NET_C_DROP_MALFORMED), 16);
    cr_assert_eq(kz_counters_get(nc, KZ_NET_C_CLOSED_AUTH), 1);
    cr_assert_eq(kz_netserver_sessions(srv), 0);
    enet_host_destroy(rogue);
    kz_netserver_destroy(srv);
}
