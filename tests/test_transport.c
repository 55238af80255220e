/*
 * The secure transport over loopback: handshake and ENet connect, echo on
 * every channel in single-threaded and threaded mode, kicks with a reason,
 * a plain ENet client that never gets a peer, and a client whose packets do
 * not authenticate being cut off.
 */
#include <criterion/criterion.h>
#include <enet/enet.h>
#include <string.h>
#include <time.h>

#include <kizuna/transport.h>

#include "support/loopback.h"

#define PROTO 0x4b5a000000000001ull

typedef struct {
    kzt_keys keys;
    kz_netserver *srv;
    kz_clock clock;
} world;

static world w;

static kz_netserver_config config_for(uint32_t threaded, uint32_t max_clients)
{
    kz_netserver_config cfg;
    kzt_server_config(&cfg, &w.keys, PROTO, 9, max_clients);
    cfg.threaded = threaded;
    cfg.ring_capacity = 256;
    return cfg;
}

static void start(uint32_t threaded, uint32_t max_clients)
{
    memset(&w, 0, sizeof w);
    cr_assert_eq(kzt_keys_make(&w.keys), KZ_OK);
    w.clock = kz_clock_system();
    kz_netserver_config cfg = config_for(threaded, max_clients);
    w.srv = kz_netserver_create(&cfg);
    cr_assert_not_null(w.srv);
}

static kz_connect_token token(uint64_t client_id)
{
    kz_connect_token ct;
    cr_assert_eq(kzt_mint(&w.keys, PROTO, 9, kz_netserver_port(w.srv), client_id, &ct), KZ_OK);
    return ct;
}

/* Runs server (single-threaded mode) and clients for up to `ms`, until
 * `done` says so. */
static void pump(kz_netclient **cs, int n, int ms, int (*done)(kz_netclient **, int))
{
    kz_time_ns end = kz_clock_now(&w.clock) + (kz_time_ns)ms * KZ_NS_PER_MS;
    while (kz_clock_now(&w.clock) < end) {
        kz_time_ns now = kz_clock_now(&w.clock);
        kz_netserver_service(w.srv, now);
        for (int i = 0; i < n; i++)
            kz_netclient_update(cs[i], now);
        if (done && done(cs, n))
            return;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

static int all_connected(kz_netclient **cs, int n)
{
    for (int i = 0; i < n; i++)
        if (kz_netclient_state(cs[i]) != KZ_NETCLIENT_CONNECTED)
            return 0;
    return 1;
}

static kz_netclient *client_for(const kz_connect_token *ct)
{
    kz_netclient_config cc;
    memset(&cc, 0, sizeof cc);
    kz_netclient *c = kz_netclient_create(&cc, ct);
    cr_assert_not_null(c);
    return c;
}

/* Echoes every data message back to its sender on the same channel. */
static int echo_pending(void)
{
    kz_netmsg m;
    int n = 0;
    while (kz_netserver_poll(w.srv, &m) == KZ_OK)
        if (m.kind == KZ_NETMSG_DATA) {
            cr_assert_eq(kz_netserver_send(w.srv, m.slot, m.channel, m.type, m.data, m.len), KZ_OK);
            n++;
        }
    return n;
}

static void echo_round_trip(uint32_t threaded)
{
    start(threaded, 8);
    kz_connect_token ct = token(1);
    kz_netclient *c = client_for(&ct);
    pump(&c, 1, 3000, all_connected);
    cr_assert_eq(kz_netclient_state(c), KZ_NETCLIENT_CONNECTED);
    kz_netmsg m;
    kz_time_ns deadline = kz_clock_now(&w.clock) + 2 * KZ_NS_PER_S;
    int got_connect = 0;
    while (!got_connect && kz_clock_now(&w.clock) < deadline) {
        kz_netserver_service(w.srv, kz_clock_now(&w.clock));
        if (kz_netserver_poll(w.srv, &m) == KZ_OK && m.kind == KZ_NETMSG_CONNECT) {
            const kz_token_info *info = (const kz_token_info *)m.data;
            cr_assert_eq(m.len, sizeof *info);
            cr_assert_eq(info->client_id, 1);
            cr_assert_eq(info->avatar_id, 1001);
            got_connect = 1;
        }
    }
    cr_assert(got_connect, "the server saw the session open");
    for (uint8_t ch = 0; ch < KZ_CHANNEL_COUNT; ch++) {
        char text[64];
        snprintf(text, sizeof text, "hello on channel %u", ch);
        /* Types 20 and up: the client transport keeps KZ_MSG_TICKET (12) for itself. */
        cr_assert_eq(kz_netclient_send(c, ch, (uint8_t)(20 + ch), text, (uint32_t)strlen(text)), KZ_OK);
    }
    int echoed = 0, back = 0;
    deadline = kz_clock_now(&w.clock) + 3 * KZ_NS_PER_S;
    while (back < (int)KZ_CHANNEL_COUNT && kz_clock_now(&w.clock) < deadline) {
        kz_time_ns now = kz_clock_now(&w.clock);
        kz_netserver_service(w.srv, now);
        echoed += echo_pending();
        kz_netclient_update(c, now);
        while (kz_netclient_poll(c, &m) == KZ_OK) {
            char expect[64];
            snprintf(expect, sizeof expect, "hello on channel %u", m.channel);
            cr_assert_eq(m.type, 20 + m.channel);
            cr_assert_eq(m.len, strlen(expect));
            cr_assert_arr_eq(m.data, expect, m.len);
            back++;
        }
    }
    cr_assert_eq(back, KZ_CHANNEL_COUNT, "every channel echoed (%d sent back by server)", echoed);
    cr_assert_eq(kz_netserver_sessions(w.srv) >= 1, 1);

    cr_assert_eq(kz_netserver_kick(w.srv, kz_netclient_slot(c), 42), KZ_OK);
    deadline = kz_clock_now(&w.clock) + 3 * KZ_NS_PER_S;
    while (kz_netclient_state(c) == KZ_NETCLIENT_CONNECTED && kz_clock_now(&w.clock) < deadline) {
        kz_time_ns now = kz_clock_now(&w.clock);
        kz_netserver_service(w.srv, now);
        kz_netclient_update(c, now);
    }
    cr_assert_eq(kz_netclient_state(c), KZ_NETCLIENT_DISCONNECTED);
    cr_assert_eq(kz_netclient_reason(c), 42, "the client sees the kick reason");
    kz_netclient_destroy(c);
    kz_netserver_destroy(w.srv);
}

Test(transport, echo_on_every_channel_single_threaded, .timeout = 30)
{
    echo_round_trip(0);
}

Test(transport, echo_on_every_channel_with_io_thread, .timeout = 30)
{
    echo_round_trip(1);
}

Test(transport, plain_enet_client_never_gets_a_peer, .timeout = 30)
{
    start(0, 8);
    cr_assert_eq(enet_initialize(), 0);
    ENetHost *raw = enet_host_create(NULL, 1, 4, 0, 0);
    cr_assert_not_null(raw);
    ENetAddress to = {.host = htonl(0x7f000001), .port = kz_netserver_port(w.srv)};
    ENetPeer *p = enet_host_connect(raw, &to, 4, 0);
    cr_assert_not_null(p);
    ENetEvent ev;
    int connected = 0;
    kz_time_ns end = kz_clock_now(&w.clock) + 1500 * KZ_NS_PER_MS;
    while (kz_clock_now(&w.clock) < end) {
        kz_netserver_service(w.srv, kz_clock_now(&w.clock));
        while (enet_host_service(raw, &ev, 1) > 0)
            connected |= ev.type == ENET_EVENT_TYPE_CONNECT;
    }
    cr_assert_eq(connected, 0);
    cr_assert_eq(kz_netserver_sessions(w.srv), 0);
    const kz_counters *gc = kz_netserver_gate_counters(w.srv);
    uint64_t unvalidated = 0;
    for (uint32_t i = 0; i < gc->n_counters; i++)
        if (strcmp(kz_counters_name(gc, i), "drop_unvalidated_source") == 0)
            unvalidated = kz_counters_get(gc, i);
    cr_assert_geq(unvalidated, 1, "its connects were dropped by the gate");
    enet_host_destroy(raw);
    kz_netserver_destroy(w.srv);
}

Test(transport, a_client_without_the_token_keys_is_refused_at_the_gate, .timeout = 30)
{
    start(0, 8);
    kz_connect_token ct = token(2);
    /* A copied token with keys that are not its own: what an eavesdropper
     * who lifted the token off the wire would hold. */
    ct.keys.client_to_server[0] ^= 1;
    kz_netclient *c = client_for(&ct);
    pump(&c, 1, 1500, all_connected);
    cr_assert_neq(kz_netclient_state(c), KZ_NETCLIENT_CONNECTED);
    const kz_counters *gc = kz_netserver_gate_counters(w.srv);
    uint64_t proof = 0;
    for (uint32_t i = 0; i < gc->n_counters; i++)
        if (strcmp(kz_counters_name(gc, i), "drop_request_proof") == 0)
            proof = kz_counters_get(gc, i);
    cr_assert_geq(proof, 1, "refused for its proof of key possession");
    cr_assert_eq(kz_netserver_sessions(w.srv), 0);
    kz_netclient_destroy(c);
    kz_netserver_destroy(w.srv);
}

Test(transport, several_io_hosts_share_one_gate, .timeout = 60)
{
    memset(&w, 0, sizeof w);
    cr_assert_eq(kzt_keys_make(&w.keys), KZ_OK);
    w.clock = kz_clock_system();
    kz_netserver_config cfg = config_for(1, 16);
    cfg.io_threads = 2;
    w.srv = kz_netserver_create(&cfg);
    cr_assert_not_null(w.srv);
    cr_assert_neq(kz_netserver_port_of(w.srv, 0), kz_netserver_port_of(w.srv, 1));
    enum { N = 8 };
    kz_netclient *cs[N];
    for (int i = 0; i < N; i++) {
        kz_connect_token ct = token(100 + (uint64_t)i);
        cs[i] = client_for(&ct);
    }
    /* Threaded: the server runs itself; drive clients and echo. */
    int echoed_back[N] = {0}, sent[N] = {0};
    kz_time_ns end = kz_clock_now(&w.clock) + 10 * KZ_NS_PER_S;
    int done = 0;
    while (!done && kz_clock_now(&w.clock) < end) {
        kz_time_ns now = kz_clock_now(&w.clock);
        echo_pending();
        done = 1;
        for (int i = 0; i < N; i++) {
            kz_netclient_update(cs[i], now);
            if (kz_netclient_state(cs[i]) == KZ_NETCLIENT_CONNECTED && !sent[i])
                sent[i] = kz_netclient_send(cs[i], KZ_CHANNEL_EVENT, 5, "multi", 5) == KZ_OK;
            kz_netmsg m;
            while (kz_netclient_poll(cs[i], &m) == KZ_OK)
                echoed_back[i] += m.len == 5 && memcmp(m.data, "multi", 5) == 0;
            done &= echoed_back[i] == 1;
        }
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(echoed_back[i], 1, "client %d echoed through its host", i);
    /* Both hosts served sessions (the gate hands ports out in turn). */
    const kz_counters *nc = kz_netserver_counters(w.srv);
    for (uint32_t h = 0; h < 2; h++)
        cr_assert_geq(kz_counters_block(nc, h).cells[KZ_NET_C_SESSIONS_OPENED], N / 2 - 1,
                      "host %u served its share", h);
    cr_assert_eq(kz_netserver_sessions(w.srv), N);
    for (int i = 0; i < N; i++)
        kz_netclient_destroy(cs[i]);
    kz_netserver_destroy(w.srv);
}

Test(transport, a_slot_is_never_reused_before_the_app_saw_its_disconnect, .timeout = 30)
{
    start(0, 2);
    kz_connect_token ta = token(201), tb = token(202);
    kz_netclient *a = client_for(&ta);
    pump(&a, 1, 3000, all_connected);
    cr_assert_eq(kz_netclient_state(a), KZ_NETCLIENT_CONNECTED);
    kz_netmsg m;
    uint32_t slot_a = UINT32_MAX;
    while (slot_a == UINT32_MAX) {
        kz_netserver_service(w.srv, kz_clock_now(&w.clock));
        while (kz_netserver_poll(w.srv, &m) == KZ_OK)
            if (m.kind == KZ_NETMSG_CONNECT)
                slot_a = m.slot;
    }
    /* A leaves; the server notices, but the app has not polled yet. */
    kz_netclient_destroy(a);
    kz_time_ns end = kz_clock_now(&w.clock) + 2 * KZ_NS_PER_S;
    while (kz_clock_now(&w.clock) < end)
        kz_netserver_service(w.srv, kz_clock_now(&w.clock));
    /* The app, not yet aware, queues a message for A's slot. */
    cr_assert_eq(kz_netserver_send(w.srv, slot_a, KZ_CHANNEL_EVENT, 9, "for A only", 10), KZ_OK);
    /* B connects meanwhile: it must not get A's slot. */
    kz_netclient *b = client_for(&tb);
    pump(&b, 1, 3000, all_connected);
    cr_assert_eq(kz_netclient_state(b), KZ_NETCLIENT_CONNECTED);
    cr_assert_neq(kz_netclient_slot(b), slot_a, "A's slot is still reserved");
    int saw_disconnect = 0;
    end = kz_clock_now(&w.clock) + 2 * KZ_NS_PER_S;
    while (kz_clock_now(&w.clock) < end) {
        kz_time_ns now = kz_clock_now(&w.clock);
        kz_netserver_service(w.srv, now);
        while (kz_netserver_poll(w.srv, &m) == KZ_OK)
            saw_disconnect |= m.kind == KZ_NETMSG_DISCONNECT && m.slot == slot_a;
        kz_netclient_update(b, now);
        while (kz_netclient_poll(b, &m) == KZ_OK)
            cr_assert_fail("B received a message meant for A");
    }
    cr_assert(saw_disconnect);
    cr_assert_eq(kz_netserver_sessions(w.srv), 1, "A's slot is free once the app saw it go");
    kz_netclient_destroy(b);
    kz_netserver_destroy(w.srv);
}

/* The token's idle timeout applies to the session: a client that falls
 * silent is dropped by the server after about that long (2 s here), not
 * after the 30 s a token without one gets. */
Test(transport, a_silent_session_ends_after_the_tokens_timeout, .timeout = 30)
{
    start(0, 2);
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = PROTO;
    t.create_time = (uint64_t)time(NULL) - 1;
    t.expire_time = t.create_time + 600;
    t.server_id = 9;
    t.timeout_seconds = 2;
    t.n_addresses = 1;
    t.addresses[0].family = KZ_ADDR_IPV4;
    t.addresses[0].ip[0] = 127;
    t.addresses[0].ip[3] = 1;
    t.addresses[0].port = kz_netserver_port(w.srv);
    t.client_id = t.avatar_id = 301;
    strcpy(t.name, "quiet");
    strcpy(t.claims.method, "none");
    kz_connect_token ct;
    size_t len;
    cr_assert_eq(kz_token_mint(&t, w.keys.backend.secret_key, w.keys.server.public_key, &ct.keys,
                               ct.token, sizeof ct.token, &len),
                 KZ_OK);
    ct.token_len = (uint16_t)len;
    kz_netclient *c = client_for(&ct);
    pump(&c, 1, 3000, all_connected);
    cr_assert_eq(kz_netclient_state(c), KZ_NETCLIENT_CONNECTED);
    /* The client stops servicing its host; the server keeps going. */
    kz_time_ns silent = kz_clock_now(&w.clock), ended = 0;
    kz_netmsg m;
    while (!ended && kz_clock_now(&w.clock) < silent + 15 * KZ_NS_PER_S) {
        kz_netserver_service(w.srv, kz_clock_now(&w.clock));
        while (kz_netserver_poll(w.srv, &m) == KZ_OK)
            if (m.kind == KZ_NETMSG_DISCONNECT)
                ended = kz_clock_now(&w.clock);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    cr_assert(ended, "the silent session never ended");
    double after = (double)(ended - silent) / 1e9;
    cr_assert(after >= 1.5 && after < 10.0, "ended %.1f s after the client fell silent", after);
    kz_netclient_destroy(c);
    kz_netserver_destroy(w.srv);
}
