/*
 * The client tries its token's addresses in order (kz_netclient_server,
 * docs/PROTOCOL.md section 4, "Client behaviour"): it moves on from an
 * address that gives no ACCEPT within its share of the connect time, or at
 * once from one that denies with server full, shutting down or
 * unavailable; each address is tried once and from scratch (a cookie goes
 * back only to the address that gave it); FAILED comes only after the
 * last address. Real sockets on loopback: a "dead" address is a bound UDP
 * socket that never answers (it records what it receives), servers bind
 * 127.0.0.2 and 127.0.0.3 and check that the token names their own
 * address (token step 4).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <kizuna/protocol.h>
#include <kizuna/transport.h>

#include "support/loopback.h"

#define PROTO 0x4b5a000000000016ull
#define SERVER_ID 16u
#define IP_DEAD 0x7f000001u   /* 127.0.0.1: silent sockets */
#define IP_DRAIN 0x7f000002u  /* 127.0.0.2: a server shutting down */
#define IP_LIVE 0x7f000003u   /* 127.0.0.3: a working server */
#define PUMP_MS 15000
#define MAX_SEEN 64
#define COOKIE_AT 8u          /* a REQUEST's cookie field (PROTOCOL.md, REQUEST) */
#define KEPT_BYTES 64u        /* of each datagram: header and cookie field */

/* A UDP socket that answers nothing unless told to, and keeps the first
 * datagrams it received with the pump step each arrived in. */
typedef struct quiet {
    int fd;
    uint32_t ip;
    uint16_t port;
    uint32_t n;
    int first_step, last_step;
    uint8_t seen[MAX_SEEN][KEPT_BYTES];
    size_t seen_len[MAX_SEEN];
    struct sockaddr_in from;   /* the last sender */
} quiet;

static kzt_keys keys;
static kz_clock clk;

static void quiet_open(quiet *q, uint32_t ip)
{
    memset(q, 0, sizeof *q);
    q->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    cr_assert_geq(q->fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(ip)};
    cr_assert_eq(bind(q->fd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
    socklen_t al = sizeof a;
    cr_assert_eq(getsockname(q->fd, (struct sockaddr *)&a, &al), 0);
    q->ip = ip;
    q->port = ntohs(a.sin_port);
    q->first_step = q->last_step = -1;
}

/* Takes what arrived; returns how many datagrams. */
static uint32_t quiet_drain(quiet *q, int step)
{
    uint8_t buf[2048];
    uint32_t got = 0;
    for (;;) {
        socklen_t fl = sizeof q->from;
        ssize_t n = recvfrom(q->fd, buf, sizeof buf, 0, (struct sockaddr *)&q->from, &fl);
        if (n < 0)
            return got;
        if (q->n < MAX_SEEN) {
            size_t keep = (size_t)n < sizeof q->seen[0] ? (size_t)n : sizeof q->seen[0];
            memcpy(q->seen[q->n], buf, keep);
            q->seen_len[q->n] = (size_t)n;
        }
        q->n++;
        got++;
        if (q->first_step < 0)
            q->first_step = step;
        q->last_step = step;
    }
}

static void quiet_send(quiet *q, const void *d, size_t n)
{
    cr_assert_eq(sendto(q->fd, d, n, 0, (const struct sockaddr *)&q->from, sizeof q->from),
                 (ssize_t)n);
}

static void quiet_close(quiet *q)
{
    if (q->fd >= 0)
        close(q->fd);
    q->fd = -1;
}

/* Every datagram `q` kept is a REQUEST whose cookie field is all zero. */
static void assert_requests_without_cookie(const quiet *q, const char *who)
{
    static const uint8_t zero[KZ_COOKIE_BYTES];
    cr_assert_gt(q->n, 0u, "%s received nothing", who);
    for (uint32_t i = 0; i < q->n && i < MAX_SEEN; i++) {
        cr_assert_eq(q->seen_len[i], KZ_GATE_REQUEST_BYTES, "%s: datagram %u is a REQUEST", who, i);
        cr_assert_eq(q->seen[i][2], KZ_GATE_REQUEST);
        cr_assert_arr_eq(q->seen[i] + COOKIE_AT, zero, KZ_COOKIE_BYTES,
                         "%s: REQUEST %u carries no cookie", who, i);
    }
}

static kz_address v4(uint32_t ip, uint16_t port)
{
    kz_address a;
    memset(&a, 0, sizeof a);
    a.family = KZ_ADDR_IPV4;
    uint32_t be = htonl(ip);
    memcpy(a.ip, &be, 4);
    a.port = port;
    return a;
}

/* A token for client 1 naming `addrs` in this order. */
static kz_connect_token mint(const kz_address *addrs, uint32_t n)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = PROTO;
    t.create_time = (uint64_t)time(NULL) - 1;
    t.expire_time = t.create_time + 600;
    t.server_id = SERVER_ID;
    t.n_addresses = n;
    memcpy(t.addresses, addrs, n * sizeof *addrs);
    t.client_id = 1;
    t.avatar_id = 1001;
    strcpy(t.name, "order");
    strcpy(t.claims.method, "none");
    kz_connect_token ct;
    size_t len = 0;
    cr_assert_eq(kz_token_mint(&t, keys.backend.secret_key, keys.server.public_key, &ct.keys,
                               ct.token, sizeof ct.token, &len),
                 KZ_OK);
    ct.token_len = (uint16_t)len;
    return ct;
}

/* A server bound to `ip` that takes only tokens naming that IP (any port:
 * the port is picked at start), so token step 4 is in play. */
static kz_netserver *server_on(uint32_t ip)
{
    kz_netserver_config cfg;
    kzt_server_config(&cfg, &keys, PROTO, SERVER_ID, 4);
    cfg.bind_ip = htonl(ip);
    cfg.ring_capacity = 256;
    cfg.verifier.n_addresses = 1;
    cfg.verifier.addresses[0] = v4(ip, 0);
    kz_netserver *s = kz_netserver_create(&cfg);
    cr_assert_not_null(s);
    return s;
}

static kz_netclient *client_with(const kz_connect_token *ct, uint32_t connect_timeout_ms)
{
    kz_netclient_config cc;
    memset(&cc, 0, sizeof cc);
    cc.connect_timeout_ms = connect_timeout_ms;
    kz_netclient *c = kz_netclient_create(&cc, ct);
    cr_assert_not_null(c);
    return c;
}

static uint64_t rcount(const kz_netclient *c, uint32_t id)
{
    return kz_counters_get(kz_netclient_resume_counters(c), id);
}

/* A gate counter by name (the gate's ids are internal). */
static uint64_t gate_count(const kz_netserver *s, const char *name)
{
    const kz_counters *k = kz_netserver_gate_counters(s);
    for (uint32_t i = 0; i < k->n_counters; i++)
        if (strcmp(kz_counters_name(k, i), name) == 0)
            return kz_counters_get(k, i);
    cr_assert_fail("no gate counter %s", name);
    return 0;
}

static void nap(void)
{
    struct timespec ts = {0, 500000};
    nanosleep(&ts, NULL);
}

static void setup(void)
{
    cr_assert_eq(kzt_keys_make(&keys), KZ_OK);
    clk = kz_clock_system();
}

TestSuite(connect_order, .init = setup);

/* A dead address, then a server shutting down, then a working one: the
 * client ends on the third, having tried each once and in order. */
Test(connect_order, dead_then_draining_then_live)
{
    quiet dead;
    quiet_open(&dead, IP_DEAD);
    kz_netserver *drain = server_on(IP_DRAIN), *live = server_on(IP_LIVE);
    kz_netserver_set_accepting(drain, 0);
    kz_address addrs[3] = {v4(IP_DEAD, dead.port), v4(IP_DRAIN, kz_netserver_port(drain)),
                           v4(IP_LIVE, kz_netserver_port(live))};
    kz_connect_token ct = mint(addrs, 3);
    kz_netclient *c = client_with(&ct, 5000); /* shares 2.5 s, 1.25 s, the rest */
    uint32_t pos = 0, dead_after_move = 0;
    uint32_t moved_at_drain = 0;
    for (int step = 0; step < PUMP_MS * 2 && kz_netclient_state(c) == KZ_NETCLIENT_HANDSHAKE; step++) {
        kz_time_ns now = kz_clock_now(&clk);
        kz_netserver_service(drain, now);
        kz_netserver_service(live, now);
        cr_assert_eq(kz_netclient_update(c, now), KZ_OK);
        uint32_t p = kz_netclient_server(c, NULL);
        cr_assert_geq(p, pos, "the client never goes back to an earlier address");
        cr_assert_leq(p, pos + 1, "the client skips no address");
        if (p == 2 && pos == 1)
            moved_at_drain = (uint32_t)gate_count(drain, "drop_server_shutting_down");
        pos = p;
        uint32_t got = quiet_drain(&dead, step);
        if (pos != 0)
            dead_after_move += got;
        nap();
    }
    for (int i = 0; i < 400 && kz_netclient_state(c) == KZ_NETCLIENT_CONNECTING; i++) {
        kz_time_ns now = kz_clock_now(&clk);
        kz_netserver_service(live, now);
        kz_netserver_service(drain, now);
        (void)kz_netclient_update(c, now);
        nap();
    }
    cr_assert_eq(kz_netclient_state(c), KZ_NETCLIENT_CONNECTED, "state %u reason %u",
                 kz_netclient_state(c), kz_netclient_reason(c));
    kz_address on;
    cr_assert_eq(kz_netclient_server(c, &on), 2u);
    cr_assert_eq(on.family, addrs[2].family);
    cr_assert_arr_eq(on.ip, addrs[2].ip, sizeof on.ip);
    cr_assert_eq(on.port, addrs[2].port);
    assert_requests_without_cookie(&dead, "the dead address");
    cr_assert_eq(dead_after_move, 0u, "nothing goes to the dead address once left");
    cr_assert_geq(moved_at_drain, 1u, "the draining server denied before the client moved on");
    cr_assert_eq(rcount(c, KZ_NETCLIENT_C_ADDRESSES_TRIED), 3u);
    cr_assert_eq(rcount(c, KZ_NETCLIENT_C_MOVED_ON_SILENCE), 1u);
    cr_assert_eq(rcount(c, KZ_NETCLIENT_C_MOVED_ON_DENY), 1u);
    cr_assert_eq(gate_count(live, "drop_token_wrong_server"), 0u, "the token names the server");
    cr_assert_eq(kz_netserver_sessions(drain), 0u);
    kz_netclient_destroy(c);
    kz_netserver_destroy(live);
    kz_netserver_destroy(drain);
    quiet_close(&dead);
}

/* Every address silent: FAILED after the last one's share, reason 0 (no
 * address denied), each tried once in the token's order. */
Test(connect_order, every_address_dead_fails_after_trying_each)
{
    quiet q[3];
    kz_address addrs[3];
    for (int i = 0; i < 3; i++) {
        quiet_open(&q[i], IP_DEAD);
        addrs[i] = v4(IP_DEAD, q[i].port);
    }
    kz_connect_token ct = mint(addrs, 3);
    kz_netclient *c = client_with(&ct, 2000); /* raised to 3 s: 1 s each */
    int step = 0;
    for (; step < PUMP_MS * 2 && kz_netclient_state(c) == KZ_NETCLIENT_HANDSHAKE; step++) {
        cr_assert_eq(kz_netclient_update(c, kz_clock_now(&clk)), KZ_OK);
        for (int i = 0; i < 3; i++)
            (void)quiet_drain(&q[i], step);
        nap();
    }
    for (int i = 0; i < 3; i++)
        (void)quiet_drain(&q[i], step);
    cr_assert_eq(kz_netclient_state(c), KZ_NETCLIENT_FAILED);
    cr_assert_eq(kz_netclient_reason(c), 0u, "no address denied");
    for (int i = 0; i < 3; i++)
        assert_requests_without_cookie(&q[i], "a dead address");
    cr_assert_lt(q[0].last_step, q[1].first_step, "address 1 is left before address 2 is tried");
    cr_assert_lt(q[1].last_step, q[2].first_step, "address 2 is left before address 3 is tried");
    cr_assert_eq(kz_netclient_server(c, NULL), 2u, "it ended on the last address");
    cr_assert_eq(rcount(c, KZ_NETCLIENT_C_ADDRESSES_TRIED), 3u);
    cr_assert_eq(rcount(c, KZ_NETCLIENT_C_MOVED_ON_SILENCE), 2u);
    cr_assert_eq(rcount(c, KZ_NETCLIENT_C_MOVED_ON_DENY), 0u);
    kz_netclient_destroy(c);
    for (int i = 0; i < 3; i++)
        quiet_close(&q[i]);
}

/* The shares, on the application's clock (no real time involved): the
 * first address gets half the connect time, the others split the rest,
 * every one at least KZ_NETCLIENT_MIN_ADDRESS_MS, the connect raised to
 * n x that when shorter; one address keeps the whole timeout. */
static void check_shares(uint32_t n, uint32_t timeout_ms, const uint32_t *switch_ms,
                         uint32_t fail_ms)
{
    quiet q[KZ_TOKEN_MAX_ADDRESSES];
    kz_address addrs[KZ_TOKEN_MAX_ADDRESSES];
    for (uint32_t i = 0; i < n; i++) {
        quiet_open(&q[i], IP_DEAD);
        addrs[i] = v4(IP_DEAD, q[i].port);
    }
    kz_connect_token ct = mint(addrs, n);
    kz_netclient *c = client_with(&ct, timeout_ms);
    const kz_time_ns t0 = 1000 * KZ_NS_PER_S;
    uint32_t at = 0;
    for (uint32_t ms = 0; ms <= fail_ms + 10; ms += 5) {
        cr_assert_eq(kz_netclient_update(c, t0 + (kz_time_ns)ms * KZ_NS_PER_MS), KZ_OK);
        uint32_t p = kz_netclient_server(c, NULL);
        if (p != at) {
            cr_assert_eq(p, at + 1);
            cr_assert_eq(ms, switch_ms[at], "address %u left at %u ms, not %u", at, ms,
                         switch_ms[at]);
            at = p;
        }
        if (kz_netclient_state(c) == KZ_NETCLIENT_FAILED) {
            cr_assert_eq(ms, fail_ms, "failed at %u ms, not %u", ms, fail_ms);
            break;
        }
    }
    cr_assert_eq(kz_netclient_state(c), KZ_NETCLIENT_FAILED);
    cr_assert_eq(at, n - 1);
    kz_netclient_destroy(c);
    for (uint32_t i = 0; i < n; i++)
        quiet_close(&q[i]);
}

Test(connect_order, shares_of_the_connect_time)
{
    const uint32_t three[] = {2500, 3750};
    check_shares(3, 5000, three, 5000);
    const uint32_t four_short[] = {1000, 2000, 3000};
    check_shares(4, 2000, four_short, 4000);
    const uint32_t two[] = {3000};
    check_shares(2, 6000, two, 6000);
    check_shares(1, 500, NULL, 500);
}

/* Gate replies from an address the client is not talking to (here a
 * forger on another port, after learning the client's port) are dropped
 * and counted: its DENY does not move the client on, its cookie is never
 * sent anywhere. */
Test(connect_order, forged_replies_from_elsewhere_are_ignored)
{
    quiet first, forger;
    quiet_open(&first, IP_DEAD);
    quiet_open(&forger, IP_DEAD);
    kz_netserver *live = server_on(IP_LIVE);
    kz_address addrs[2] = {v4(IP_DEAD, first.port), v4(IP_LIVE, kz_netserver_port(live))};
    kz_connect_token ct = mint(addrs, 2);
    kz_netclient *c = client_with(&ct, 5000); /* shares 2.5 s, the rest */
    int forged = 0, checked = 0;
    for (int step = 0; step < PUMP_MS * 2 && kz_netclient_state(c) == KZ_NETCLIENT_HANDSHAKE; step++) {
        kz_time_ns now = kz_clock_now(&clk);
        kz_netserver_service(live, now);
        cr_assert_eq(kz_netclient_update(c, now), KZ_OK);
        if (quiet_drain(&first, step) && !forged) {
            /* The client's source, as the first address saw it. */
            forger.from = first.from;
            uint8_t deny[KZ_GATE_DENY_BYTES] = {KZ_GATE_MARK0, KZ_GATE_MARK1, KZ_GATE_DENY,
                                                KZ_PROTOCOL_VERSION, KZ_DENY_SERVER_FULL};
            uint8_t chal[KZ_GATE_CHALLENGE_BYTES] = {KZ_GATE_MARK0, KZ_GATE_MARK1,
                                                     KZ_GATE_CHALLENGE, KZ_PROTOCOL_VERSION};
            memset(chal + KZ_GATE_HEADER_BYTES, 0xA5, KZ_COOKIE_BYTES);
            quiet_send(&forger, chal, sizeof chal);
            quiet_send(&forger, deny, sizeof deny);
            forged = 1;
        }
        if (forged && !checked && rcount(c, KZ_NETCLIENT_C_DROP_GATE_SOURCE) >= 2) {
            /* The update that took both forgeries has passed. */
            cr_assert_eq(kz_netclient_server(c, NULL), 0u, "still on the first address");
            cr_assert_eq(rcount(c, KZ_NETCLIENT_C_MOVED_ON_DENY), 0u);
            checked = 1;
        }
        (void)quiet_drain(&forger, step);
        nap();
    }
    for (int i = 0; i < 400 && kz_netclient_state(c) == KZ_NETCLIENT_CONNECTING; i++) {
        kz_time_ns now = kz_clock_now(&clk);
        kz_netserver_service(live, now);
        (void)kz_netclient_update(c, now);
        nap();
    }
    cr_assert(forged && checked);
    cr_assert_eq(kz_netclient_state(c), KZ_NETCLIENT_CONNECTED);
    cr_assert_eq(kz_netclient_server(c, NULL), 1u);
    cr_assert_eq(rcount(c, KZ_NETCLIENT_C_DROP_GATE_SOURCE), 2u, "both forgeries dropped");
    cr_assert_eq(rcount(c, KZ_NETCLIENT_C_MOVED_ON_DENY), 0u, "the forged DENY moved nothing");
    cr_assert_eq(rcount(c, KZ_NETCLIENT_C_MOVED_ON_SILENCE), 1u, "the first address's share ran out");
    cr_assert_eq(kz_netclient_reason(c), 0u, "the forged DENY is not the reason of anything");
    assert_requests_without_cookie(&first, "the first address");
    cr_assert_eq(forger.n, 0u, "nothing is sent to the forger");
    kz_netclient_destroy(c);
    kz_netserver_destroy(live);
    quiet_close(&first);
    quiet_close(&forger);
}

/* Address 1 challenges (a cookie), takes the REQUEST with it, then denies
 * with server full; address 2 is silent and records what it gets: never
 * that cookie, only REQUESTs with none. After both, FAILED with the last
 * DENY heard as reason. */
Test(connect_order, a_cookie_goes_only_to_its_address)
{
    quiet one, two;
    quiet_open(&one, IP_DEAD);
    quiet_open(&two, IP_DEAD);
    kz_address addrs[2] = {v4(IP_DEAD, one.port), v4(IP_DEAD, two.port)};
    kz_connect_token ct = mint(addrs, 2);
    kz_netclient *c = client_with(&ct, 2000);
    uint8_t cookie[KZ_COOKIE_BYTES];
    memset(cookie, 0x5A, sizeof cookie);
    uint32_t seen_one = 0, with_cookie = 0;
    int step = 0;
    for (; step < PUMP_MS * 2 && kz_netclient_state(c) == KZ_NETCLIENT_HANDSHAKE; step++) {
        cr_assert_eq(kz_netclient_update(c, kz_clock_now(&clk)), KZ_OK);
        (void)quiet_drain(&one, step);
        for (; seen_one < one.n && seen_one < MAX_SEEN; seen_one++) {
            const uint8_t *r = one.seen[seen_one];
            if (memcmp(r + COOKIE_AT, cookie, sizeof cookie) == 0) {
                with_cookie++;
                uint8_t deny[KZ_GATE_DENY_BYTES] = {KZ_GATE_MARK0, KZ_GATE_MARK1, KZ_GATE_DENY,
                                                    KZ_PROTOCOL_VERSION, KZ_DENY_SERVER_FULL};
                quiet_send(&one, deny, sizeof deny);
            } else {
                uint8_t chal[KZ_GATE_CHALLENGE_BYTES] = {KZ_GATE_MARK0, KZ_GATE_MARK1,
                                                         KZ_GATE_CHALLENGE, KZ_PROTOCOL_VERSION};
                memcpy(chal + KZ_GATE_HEADER_BYTES, cookie, sizeof cookie);
                quiet_send(&one, chal, sizeof chal);
            }
        }
        (void)quiet_drain(&two, step);
        nap();
    }
    (void)quiet_drain(&two, step);
    cr_assert_geq(with_cookie, 1u, "address 1 got its cookie back");
    cr_assert_eq(kz_netclient_state(c), KZ_NETCLIENT_FAILED);
    cr_assert_eq(kz_netclient_reason(c), KZ_DENY_SERVER_FULL, "the last DENY heard");
    assert_requests_without_cookie(&two, "address 2");
    cr_assert_lt(one.last_step, two.first_step, "address 1 is left before address 2 is tried");
    cr_assert_eq(rcount(c, KZ_NETCLIENT_C_MOVED_ON_DENY), 1u);
    cr_assert_eq(rcount(c, KZ_NETCLIENT_C_MOVED_ON_SILENCE), 0u);
    kz_netclient_destroy(c);
    quiet_close(&one);
    quiet_close(&two);
}
