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
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kizuna/transport.h>

#include "net/enet_mac.h"
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
static ENetHost *rogue_host;
static kz__enet_mac_pair rogue_mac; /* derived from its keys once accepted */

/* The rogue holds its token's keys, so it can MAC its datagrams as a real
 * client does (enet_mac.h); an outsider cannot. */
static enet_uint32 rogue_checksum(const ENetBuffer *b, size_t n)
{
    if (kz__enet_checksum_is_receive(rogue_host, b, n))
        return kz__enet_mac_buffers(&rogue_mac.server_to_client, b, n);
    return kz__enet_mac_buffers(&rogue_mac.client_to_server, b, n);
}

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

#define SUM_MAC 0   /* the session's MAC: what the key holder sends */
#define SUM_CRC 1   /* ENet's CRC32 with the connectID: what an observer can forge */

/* Sends `body` as an ENet datagram of `peer`'s session: header = peer id
 * with session bits, then the checksum field computed with the connectID
 * in its place, as ENet does, by the rule `how`. */
static void send_summed(ENetHost *h, ENetPeer *peer, const uint8_t *body, size_t n, int how)
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
    sum = how == SUM_CRC ? enet_crc32(&b, 1) : kz__enet_mac_buffers(&rogue_mac.client_to_server, &b, 1);
    memcpy(d + 2, &sum, 4);
    enet_socket_send(h->socket, &peer->address, &b, 1);
}

static void send_crafted(ENetHost *h, ENetPeer *peer, const uint8_t *body, size_t n)
{
    send_summed(h, peer, body, n, SUM_MAC);
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
            kz__enet_mac_pair_derive(&rogue_mac, &ct->keys, rogue_hs.session_id);
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
    kz_netserver *srv = kz_netserver_create(&sc);
    cr_assert_not_null(srv);
    uint16_t port = kz_netserver_port(srv);
    kz_clock clock = kz_clock_system();

    /* The rogue: honest handshake and ENet connect on a raw ENet host. */
    ENetHost *rogue = enet_host_create(NULL, 1, KZ_CHANNEL_COUNT, 0, 0);
    cr_assert_not_null(rogue);
    rogue_host = rogue;
    rogue->checksum = rogue_checksum;
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

/* A server with one connected rogue (the key holder, its ENet peer). */
typedef struct rogue_fixture {
    kzt_keys keys;
    kz_netserver *srv;
    ENetHost *rogue;
    ENetPeer *peer;
    kz_clock clock;
} rogue_fixture;

static void rogue_fixture_open(rogue_fixture *f, uint64_t client_id)
{
    cr_assert_eq(kzt_keys_make(&f->keys), KZ_OK);
    kz_netserver_config sc;
    kzt_server_config(&sc, &f->keys, 3, 3, 4);
    f->srv = kz_netserver_create(&sc);
    cr_assert_not_null(f->srv);
    f->rogue = enet_host_create(NULL, 1, KZ_CHANNEL_COUNT, 0, 0);
    cr_assert_not_null(f->rogue);
    rogue_host = f->rogue;
    f->rogue->checksum = rogue_checksum;
    f->rogue->intercept = rogue_intercept;
    kz_connect_token rt;
    cr_assert_eq(kzt_mint(&f->keys, 3, 3, kz_netserver_port(f->srv), client_id, &rt), KZ_OK);
    f->peer = rogue_connect(f->srv, f->rogue, &rt);
    f->clock = kz_clock_system();
}

static void rogue_fixture_close(rogue_fixture *f)
{
    enet_host_destroy(f->rogue);
    kz_netserver_destroy(f->srv);
}

/* Services the server for `ms` and the rogue's host (so acknowledgements
 * flow); counts DATA and DISCONNECT messages the application would see. */
static void run_server(rogue_fixture *f, int ms, int *data, int *gone)
{
    kz_time_ns end = kz_clock_now(&f->clock) + (kz_time_ns)ms * KZ_NS_PER_MS;
    kz_netmsg m;
    ENetEvent ev;
    while (kz_clock_now(&f->clock) < end) {
        kz_netserver_service(f->srv, kz_clock_now(&f->clock));
        while (kz_netserver_poll(f->srv, &m) == KZ_OK) {
            *data += m.kind == KZ_NETMSG_DATA;
            *gone |= m.kind == KZ_NETMSG_DISCONNECT;
        }
        while (enet_host_service(f->rogue, &ev, 1) > 0)
            *gone |= ev.type == ENET_EVENT_TYPE_DISCONNECT;
    }
}

Test(enet_hostile, unsealed_packets_are_dropped_and_never_close_the_session, .timeout = 30)
{
    rogue_fixture f;
    rogue_fixture_open(&f, 70);
    uint8_t pkt[64];
    for (uint16_t i = 0; i < 200; i++)
        send_crafted(f.rogue, f.peer, pkt, unsealed_send(pkt, (uint16_t)(i + 1)));
    int data = 0, gone = 0;
    run_server(&f, 1500, &data, &gone);
    const kz_counters *nc = kz_netserver_counters(f.srv);
    cr_assert(!gone, "failed opens must not end the session (no close-after-N rule)");
    cr_assert_eq(data, 0, "nothing unsealed reached the application");
    cr_assert_geq(kz_counters_get(nc, KZ_NET_C_DROP_AUTH) + kz_counters_get(nc, KZ_NET_C_DROP_MALFORMED),
                  150, "they reached the opener and were counted there");
    cr_assert_eq(kz_netserver_sessions(f.srv), 1);
    rogue_fixture_close(&f);
}

/* An on-path observer knows the session's peer id, session bits and
 * connectID (all in clear). With ENet's CRC32 that was enough to forge a
 * DISCONNECT; with the keyed MAC it is dropped before ENet reads it. */
Test(enet_hostile, spoofed_disconnect_from_an_observer_ends_nothing, .timeout = 30)
{
    rogue_fixture f;
    rogue_fixture_open(&f, 71);
    const kz_counters *nc = kz_netserver_counters(f.srv);
    uint8_t body[8];
    /* Unacknowledged: ENet ends the peer at once when it takes one. */
    size_t n = cmd(body, ENET_PROTOCOL_COMMAND_DISCONNECT, 0xFF, 0);
    n += put32(body + n, 0);
    send_summed(f.rogue, f.peer, body, n, SUM_CRC);
    /* Blind guesses of the tag, from the victim's own address. */
    uint8_t d[16];
    for (uint32_t i = 0; i < 2000; i++) {
        uint16_t pid = htons((uint16_t)(f.peer->outgoingPeerID |
                                        (f.peer->outgoingSessionID << ENET_PROTOCOL_HEADER_SESSION_SHIFT)));
        memcpy(d, &pid, 2);
        uint32_t guess = i * 2654435761u;
        memcpy(d + 2, &guess, 4);
        memcpy(d + 6, body, n);
        ENetBuffer b = {.data = d, .dataLength = 6 + n};
        enet_socket_send(f.rogue->socket, &f.peer->address, &b, 1);
        if (i % 50 == 0) /* paced, so the socket buffer does not lose them */
            kz_netserver_service(f.srv, kz_clock_now(&f.clock));
    }
    int data = 0, gone = 0;
    run_server(&f, 1500, &data, &gone);
    cr_assert(!gone, "a forged DISCONNECT must not end the session");
    cr_assert_eq(kz_netserver_sessions(f.srv), 1);
    cr_assert_geq(kz_counters_get(nc, KZ_NET_C_DROP_ENET_MAC), 1900,
                  "forgeries are counted as bad MACs (%llu)",
                  (unsigned long long)kz_counters_get(nc, KZ_NET_C_DROP_ENET_MAC));
    /* Control: the same DISCONNECT under the session's MAC does end it, so
     * the forgery above was a real DISCONNECT that the MAC alone stopped. */
    send_summed(f.rogue, f.peer, body, n, SUM_MAC);
    run_server(&f, 1500, &data, &gone);
    cr_assert(gone, "the key holder's own DISCONNECT is honoured");
    rogue_fixture_close(&f);
}

/* Reliable commands injected with CRC32 (sequence numbers far ahead, a
 * throttle that would choke the peer) are dropped; the ordered stream keeps
 * working afterwards. */
Test(enet_hostile, injected_reliable_and_throttle_commands_are_dropped, .timeout = 30)
{
    rogue_fixture f;
    rogue_fixture_open(&f, 72);
    const kz_counters *nc = kz_netserver_counters(f.srv);
    uint8_t body[64];
    for (uint32_t i = 0; i < 200; i++) {
        size_t n = cmd(body, ENET_PROTOCOL_COMMAND_SEND_RELIABLE | ENET_PROTOCOL_COMMAND_FLAG_ACKNOWLEDGE,
                       KZ_CHANNEL_EVENT, (uint16_t)(30000 + i));
        n += put16(body + n, 4);
        memcpy(body + n, "evil", 4);
        send_summed(f.rogue, f.peer, body, n + 4, SUM_CRC);
        n = cmd(body, ENET_PROTOCOL_COMMAND_THROTTLE_CONFIGURE | ENET_PROTOCOL_COMMAND_FLAG_ACKNOWLEDGE,
                0xFF, (uint16_t)(31000 + i));
        n += put32(body + n, 1);
        n += put32(body + n, 0);
        n += put32(body + n, 32);
        send_summed(f.rogue, f.peer, body, n, SUM_CRC);
    }
    int data = 0, gone = 0;
    run_server(&f, 1000, &data, &gone);
    cr_assert(!gone);
    cr_assert_geq(kz_counters_get(nc, KZ_NET_C_DROP_ENET_MAC), 400);
    cr_assert_eq(f.peer->state, ENET_PEER_STATE_CONNECTED);
    rogue_fixture_close(&f);
}

/* The MAC itself, on hostile inputs: a bit flipped anywhere, the other
 * direction's key, another session's key, the connectID changed, a
 * truncated datagram: each fails; the genuine one passes and the field is
 * left as it came. */
Test(enet_hostile, mac_check_rejects_every_altered_datagram)
{
    kz_session_keys k1, k2;
    randombytes_buf(&k1, sizeof k1);
    randombytes_buf(&k2, sizeof k2);
    kz__enet_mac_pair p1, p2, p1b;
    kz__enet_mac_pair_derive(&p1, &k1, 7);
    kz__enet_mac_pair_derive(&p2, &k2, 7);
    kz__enet_mac_pair_derive(&p1b, &k1, 8);
    cr_assert_neq(memcmp(&p1.client_to_server, &p1.server_to_client, sizeof p1.client_to_server), 0);
    cr_assert_neq(memcmp(&p1.client_to_server, &p1b.client_to_server, sizeof p1.client_to_server), 0,
                  "a new session of the same token gets new MAC keys");
    uint8_t d[100];
    for (size_t i = 0; i < sizeof d; i++)
        d[i] = (uint8_t)(i * 7 + 3);
    d[0] = 0x80 | 0x10; /* sent time present, session 1, peer 0 */
    d[1] = 0x00;
    uint32_t connect_id = 0xA1B2C3D4u;
    kz__enet_header h;
    cr_assert(kz__enet_header_parse(d, sizeof d, &h));
    cr_assert_eq(h.checksum_at, 4u);
    memcpy(d + h.checksum_at, &connect_id, 4);
    ENetBuffer b = {.data = d, .dataLength = sizeof d};
    uint32_t tag = kz__enet_mac_buffers(&p1.client_to_server, &b, 1), got;
    memcpy(d + h.checksum_at, &tag, 4);
    uint8_t orig[100];
    memcpy(orig, d, sizeof d);
    cr_assert(kz__enet_mac_check(&p1.client_to_server, d, sizeof d, &h, connect_id, &got));
    cr_assert_eq(got, tag);
    cr_assert_arr_eq(d, orig, sizeof d, "the datagram is left as it came");
    cr_assert(!kz__enet_mac_check(&p1.server_to_client, d, sizeof d, &h, connect_id, &got));
    cr_assert(!kz__enet_mac_check(&p2.client_to_server, d, sizeof d, &h, connect_id, &got));
    cr_assert(!kz__enet_mac_check(&p1b.client_to_server, d, sizeof d, &h, connect_id, &got));
    cr_assert(!kz__enet_mac_check(&p1.client_to_server, d, sizeof d, &h, connect_id ^ 1, &got));
    cr_assert(!kz__enet_mac_check(&p1.client_to_server, d, sizeof d - 1, &h, connect_id, &got));
    for (size_t i = 0; i < sizeof d; i++)
        for (int bit = 0; bit < 8; bit++) {
            d[i] ^= (uint8_t)(1u << bit);
            kz__enet_header h2;
            if (kz__enet_header_parse(d, sizeof d, &h2))
                cr_assert(!kz__enet_mac_check(&p1.client_to_server, d, sizeof d, &h2, connect_id, &got),
                          "bit %d of byte %zu flipped still verifies", bit, i);
            d[i] ^= (uint8_t)(1u << bit);
        }
    uint8_t tiny[5] = {0x80, 0, 0, 0, 0};
    cr_assert(!kz__enet_header_parse(tiny, sizeof tiny, &h), "sent time but no room for the field");
    cr_assert(!kz__enet_header_parse(tiny, 1, &h));
}
