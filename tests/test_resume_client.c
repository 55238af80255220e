/*
 * The client's side of resume (docs/PROTOCOL.md, "Resume"), against a
 * scripted gate: a relay in this test stands between a real client and a
 * bare kz_netserver, forwards ENet traffic only from the address the
 * session is at (as the server does), and keeps the client's RESUMEs for
 * the test, which answers them by hand — with CHALLENGEs, forged, foreign,
 * stale and valid RESUMEDs, and DENYs. The relay plays the server's part
 * of a move (the session's address changes when the test says so), so the
 * ENet session really continues from the client's new socket.
 *
 * The client's clock is the system clock plus a skew the test adds to, so
 * silence and the grace pass at once while ENet (which keeps its own
 * clock) runs normally. The TICKET messages are sent by the test through
 * the server transport, sealed like any other message.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <math.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <kizuna/client.h>
#include <kizuna/transport.h>

#include "net/enet_tune.h"
#include "net/gate.h"
#include "net/netclient.h"
#include "net/resume.h"
#include "sim/wire.h"
#include "support/loopback.h"
#include "support/world.h"

#define PROTOCOL 0x4B5A52534D430001ull
#define SERVER_ID 47u
#define GRACE_MS 5000u
#define SLOW_RESEND_MS 600000u   /* only the sends that are due at once happen */
#define PUMP_LIMIT 4000          /* passes before a wait gives up */
#define HZ 30u
#define AVATAR 1001u             /* kzt_mint's avatar for client id 1 */

/* ---- the relay and scripted gate ---------------------------------------- */

typedef struct relay {
    int front;                    /* the gate's address, as the client knows it */
    int back;                     /* towards the server */
    int other;                    /* another address, for forgeries */
    struct sockaddr_in front_addr, server_addr;
    struct sockaddr_in client;    /* the session's address: the only source forwarded */
    int has_client;
    int cut_up, cut_down;         /* the path is broken in that direction */
    uint8_t last[KZ_MTU];         /* the newest RESUME */
    size_t last_len;
    struct sockaddr_in last_from;
    uint32_t resumes;             /* RESUMEs received */
    uint32_t bad_resumes;         /* of them, not exactly KZ_GATE_RESUME_BYTES */
    int capture;                  /* keep the server's datagrams in `captured` */
    uint8_t captured[KZ_MTU];     /* the newest one the server sent the client */
    size_t captured_len;
} relay;

static struct {
    kzt_keys keys;
    kz_netserver *srv;
    relay r;
    kz_connect_token ct;
    uint64_t session_id;          /* from the ACCEPT, opened with the token's keys */
    kz_netclient *nc;
    kz_client *cl;
    uint32_t slot;
    kz_clock clock;
    kz_time_ns skew;
    /* what the server received */
    uint32_t inputs, chats;
    uint32_t newest_cmd;          /* the newest command tick in an input */
    uint32_t data_msgs;
    /* what the bare client received */
    uint32_t client_msgs;
    uint8_t client_last_type;
} t;

static kz_time_ns now_ns(void)
{
    return kz_clock_now(&t.clock) + t.skew;
}

/* Moves the client's clock to `at` (never backwards). */
static void clock_to(kz_time_ns at)
{
    kz_time_ns now = now_ns();
    if (at > now)
        t.skew += at - now;
}

static int udp_socket(uint32_t ip_host_order, struct sockaddr_in *bound)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(ip_host_order);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    socklen_t len = sizeof *bound;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)bound, &len), 0);
    return fd;
}

static int same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

static int is_gate(const uint8_t *d, size_t n, uint8_t type)
{
    return n >= KZ_GATE_HEADER_BYTES && d[0] == KZ_GATE_MARK0 && d[1] == KZ_GATE_MARK1 &&
           d[2] == type;
}

/* The session id of the ACCEPT the server sends, opened as the client
 * does, so the test's tickets name the right session. */
static void learn_session(const uint8_t *d, size_t n)
{
    kz__handshake hs;
    cr_assert_eq(kz__handshake_init(&hs, &t.ct), KZ_OK);
    if (kz__handshake_receive(&hs, d, n) == KZ_OK && hs.state == KZ_HS_ACCEPTED)
        t.session_id = hs.session_id;
    sodium_memzero(&hs, sizeof hs);
}

static void relay_up(relay *r)
{
    uint8_t d[2048];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t n;
    while ((n = recvfrom(r->front, d, sizeof d, 0, (struct sockaddr *)&from, &fl)) >= 0) {
        fl = sizeof from;
        if (is_gate(d, (size_t)n, KZ_GATE_RESUME)) {
            r->resumes++;
            r->bad_resumes += (size_t)n != KZ_GATE_RESUME_BYTES;
            r->last_len = (size_t)n < sizeof r->last ? (size_t)n : sizeof r->last;
            memcpy(r->last, d, r->last_len);
            r->last_from = from;
            continue;
        }
        if (!r->has_client) {
            r->client = from;
            r->has_client = 1;
        }
        if (!same_addr(&from, &r->client) || r->cut_up)
            continue; /* an unproven source, or a broken path */
        sendto(r->back, d, (size_t)n, 0, (struct sockaddr *)&r->server_addr, sizeof r->server_addr);
    }
}

static void relay_down(relay *r)
{
    uint8_t d[2048];
    ssize_t n;
    while ((n = recv(r->back, d, sizeof d, 0)) >= 0) {
        if (is_gate(d, (size_t)n, KZ_GATE_ACCEPT))
            learn_session(d, (size_t)n);
        if (r->capture && (size_t)n <= sizeof r->captured && !is_gate(d, (size_t)n, d[2])) {
            memcpy(r->captured, d, (size_t)n);
            r->captured_len = (size_t)n;
        }
        if (r->has_client && !r->cut_down)
            sendto(r->front, d, (size_t)n, 0, (struct sockaddr *)&r->client, sizeof r->client);
    }
}

static void relay_open(relay *r, uint16_t server_port)
{
    memset(r, 0, sizeof *r);
    struct sockaddr_in ignored;
    r->front = udp_socket(0x7f000001, &r->front_addr);
    r->back = udp_socket(0x7f000001, &ignored);
    r->other = udp_socket(0x7f000001, &ignored);
    r->server_addr.sin_family = AF_INET;
    r->server_addr.sin_addr.s_addr = htonl(0x7f000001);
    r->server_addr.sin_port = htons(server_port);
}

static void relay_close(relay *r)
{
    close(r->front);
    close(r->back);
    close(r->other);
}

/* The server's part of a move: the session is at the newest RESUME's
 * source from now on. */
static void relay_move(relay *r)
{
    r->client = r->last_from;
}

static void gate_send(int sock, const void *d, size_t n)
{
    cr_assert_eq(sendto(sock, d, n, 0, (struct sockaddr *)&t.r.last_from, sizeof t.r.last_from),
                 (ssize_t)n);
}

/* The echo a real gate adds to a CHALLENGE or DENY answering a RESUME:
 * the proof of the newest RESUME the relay kept. */
static const uint8_t *last_proof(void)
{
    cr_assert_eq(t.r.last_len, (size_t)KZ_GATE_RESUME_BYTES, "a RESUME to answer");
    return t.r.last + KZ_GATE_RESUME_FIXED_BYTES - KZ_RESUME_PROOF_BYTES;
}

/* A CHALLENGE with `echo` (NULL: none, the handshake's 28 bytes). */
static void send_challenge_echo(int sock, const uint8_t cookie[KZ_COOKIE_BYTES],
                                const uint8_t *echo)
{
    uint8_t d[KZ_GATE_RESUME_CHALLENGE_BYTES] = {KZ_GATE_MARK0, KZ_GATE_MARK1, KZ_GATE_CHALLENGE,
                                                 KZ_PROTOCOL_VERSION};
    memcpy(d + KZ_GATE_HEADER_BYTES, cookie, KZ_COOKIE_BYTES);
    if (echo)
        memcpy(d + KZ_GATE_CHALLENGE_BYTES, echo, KZ_RESUME_PROOF_BYTES);
    gate_send(sock, d, echo ? KZ_GATE_RESUME_CHALLENGE_BYTES : KZ_GATE_CHALLENGE_BYTES);
}

/* A DENY with `echo` (NULL: none, the handshake's 5 bytes). */
static void send_deny_echo(int sock, uint8_t reason, const uint8_t *echo)
{
    uint8_t d[KZ_GATE_RESUME_DENY_BYTES] = {KZ_GATE_MARK0, KZ_GATE_MARK1, KZ_GATE_DENY,
                                            KZ_PROTOCOL_VERSION, reason};
    if (echo)
        memcpy(d + KZ_GATE_DENY_BYTES, echo, KZ_RESUME_PROOF_BYTES);
    gate_send(sock, d, echo ? KZ_GATE_RESUME_DENY_BYTES : KZ_GATE_DENY_BYTES);
}

/* The gate's answers to the newest RESUME, as the gate sends them. */
static void send_challenge(const uint8_t cookie[KZ_COOKIE_BYTES])
{
    send_challenge_echo(t.r.front, cookie, last_proof());
}

static void send_deny(int sock, uint8_t reason)
{
    send_deny_echo(sock, reason, last_proof());
}

static void send_resumed(int sock, const kz_session_keys *keys, const kz__ticket *ticket)
{
    uint8_t packed[KZ_TICKET_BYTES], d[KZ_GATE_RESUMED_BYTES];
    kz__ticket_pack(ticket, packed);
    cr_assert_eq(kz__resumed_seal(keys, packed, d), (size_t)KZ_GATE_RESUMED_BYTES);
    gate_send(sock, d, sizeof d);
}

/* ---- the scripted server ------------------------------------------------ */

static void serve(void)
{
    (void)kz_netserver_service(t.srv, now_ns());
    kz_netmsg m;
    while (kz_netserver_poll(t.srv, &m) == KZ_OK) {
        if (m.kind == KZ_NETMSG_CONNECT) {
            t.slot = m.slot;
        } else if (m.kind == KZ_NETMSG_DATA) {
            t.data_msgs++;
            if (m.type == KZ_MSG_CHAT)
                t.chats++;
            kz_wire_input in;
            if (m.type == KZ_MSG_INPUT && kz_wire_input_read(m.data, m.len, &in) == KZ_OK) {
                t.inputs++;
                if (in.cmd[0].tick > t.newest_cmd)
                    t.newest_cmd = in.cmd[0].tick;
            }
        }
    }
}

static void server_send(uint8_t channel, uint8_t type, const void *d, uint32_t len)
{
    cr_assert_eq(kz_netserver_send(t.srv, t.slot, channel, type, d, len), KZ_OK);
}

/* Drains the bare client; a TICKET must never come out. */
static void client_poll(void)
{
    kz_netmsg m;
    while (kz_netclient_poll(t.nc, &m) == KZ_OK) {
        cr_assert_neq(m.type, KZ_MSG_TICKET, "the transport handed a TICKET on");
        t.client_msgs++;
        t.client_last_type = m.type;
    }
}

/* One pass of everything. */
static void pump(void)
{
    serve();
    relay_up(&t.r);
    relay_down(&t.r);
    kz_time_ns now = now_ns();
    if (t.nc) {
        (void)kz_netclient_update(t.nc, now);
        client_poll();
    }
    if (t.cl)
        (void)kz_client_update(t.cl, now);
    relay_up(&t.r);
    relay_down(&t.r);
    serve();
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
}

static void pump_n(int n)
{
    for (int i = 0; i < n; i++)
        pump();
}

static uint32_t net_state(void)
{
    return kz_netclient_state(t.nc ? t.nc : kz_client_net(t.cl));
}

static uint64_t rcount(uint32_t id)
{
    return kz_counters_get(kz_netclient_resume_counters(t.nc ? t.nc : kz_client_net(t.cl)), id);
}

/* Pumps until the relay has seen `n` RESUMEs. */
static void wait_resumes(uint32_t n)
{
    for (int i = 0; i < PUMP_LIMIT && t.r.resumes < n; i++)
        pump();
    cr_assert_geq(t.r.resumes, n, "RESUME %u never arrived", n);
}

static void wait_net_state(uint32_t state)
{
    for (int i = 0; i < PUMP_LIMIT && net_state() != state; i++)
        pump();
    cr_assert_eq(net_state(), state);
}

/* kzt_mint's token with the session timeout `timeout_s` (0: the default). */
static void mint(uint16_t port, uint16_t timeout_s)
{
    kz_token_info ti;
    memset(&ti, 0, sizeof ti);
    ti.protocol_id = PROTOCOL;
    ti.create_time = (uint64_t)time(NULL) - 1;
    ti.expire_time = ti.create_time + 600;
    ti.server_id = SERVER_ID;
    ti.timeout_seconds = timeout_s;
    ti.n_addresses = 1;
    ti.addresses[0].family = KZ_ADDR_IPV4;
    ti.addresses[0].ip[0] = 127;
    ti.addresses[0].ip[3] = 1;
    ti.addresses[0].port = port;
    ti.client_id = 1;
    ti.avatar_id = AVATAR;
    strcpy(ti.name, "test-1");
    strcpy(ti.claims.method, "none");
    size_t len = 0;
    cr_assert_eq(kz_token_mint(&ti, t.keys.backend.secret_key, t.keys.server.public_key,
                               &t.ct.keys, t.ct.token, sizeof t.ct.token, &len),
                 KZ_OK);
    t.ct.token_len = (uint16_t)len;
}

static void setup_common(uint16_t timeout_s)
{
    memset(&t, 0, sizeof t);
    t.clock = kz_clock_system();
    cr_assert_eq(kzt_keys_make(&t.keys), KZ_OK);
    kz_netserver_config nc;
    kzt_server_config(&nc, &t.keys, PROTOCOL, SERVER_ID, 4);
    t.srv = kz_netserver_create(&nc);
    cr_assert_not_null(t.srv);
    relay_open(&t.r, kz_netserver_port(t.srv));
    /* The token names the relay: the client's gate is the relay's front. */
    mint(ntohs(t.r.front_addr.sin_port), timeout_s);
    t.slot = UINT32_MAX;
}

/* A bare client, connected through the relay, with a token of session
 * timeout `timeout_s` (0: the default) and resume_silence_ms `silence_ms`
 * (0: the default). */
static void start_bare_silence(uint32_t resend_ms, uint16_t timeout_s, uint32_t silence_ms)
{
    setup_common(timeout_s);
    kz_netclient_config cc;
    memset(&cc, 0, sizeof cc);
    cc.connect_timeout_ms = 20000;
    cc.resend_ms = resend_ms;
    cc.resume_silence_ms = silence_ms;
    t.nc = kz_netclient_create(&cc, &t.ct);
    cr_assert_not_null(t.nc);
    for (int i = 0; i < PUMP_LIMIT && (net_state() != KZ_NETCLIENT_CONNECTED || t.slot == UINT32_MAX); i++)
        pump();
    cr_assert_eq(net_state(), KZ_NETCLIENT_CONNECTED);
    cr_assert_neq(t.slot, UINT32_MAX);
    cr_assert_neq(t.session_id, 0u, "the relay opened the ACCEPT");
}

static void start_bare_timeout(uint32_t resend_ms, uint16_t timeout_s)
{
    start_bare_silence(resend_ms, timeout_s, 0);
}

static void start_bare(uint32_t resend_ms)
{
    start_bare_timeout(resend_ms, 0);
}

static void stop(void)
{
    if (t.nc)
        kz_netclient_destroy(t.nc);
    if (t.cl)
        kz_client_destroy(t.cl);
    kz_netserver_destroy(t.srv);
    relay_close(&t.r);
}

static kz__ticket ticket_of(uint32_t path)
{
    kz__ticket k;
    memset(&k, 0, sizeof k);
    k.slot = t.slot;
    k.path = path;
    k.session_id = t.session_id;
    for (size_t i = 0; i < sizeof k.secret; i++)
        k.secret[i] = (uint8_t)(path * 31u + i);
    return k;
}

static void send_ticket_msg(uint8_t channel, const kz__ticket *k, uint32_t grace, uint32_t len)
{
    uint8_t packed[KZ_TICKET_BYTES], msg[KZ_TICKET_MSG_BYTES + 1] = {0};
    kz__ticket_pack(k, packed);
    kz__ticket_msg_encode(packed, grace, msg);
    server_send(channel, KZ_MSG_TICKET, msg, len);
}

/* Whether the client holds ticket `k`. */
static int holds(const kz__ticket *k)
{
    uint8_t want[KZ_TICKET_BYTES], got[KZ_TICKET_BYTES];
    uint32_t grace;
    kz__ticket_pack(k, want);
    const kz_netclient *nc = t.nc ? t.nc : kz_client_net(t.cl);
    return kz__netclient_ticket(nc, got, &grace) && memcmp(want, got, sizeof want) == 0 &&
           grace == GRACE_MS;
}

static void give_ticket(const kz__ticket *k)
{
    send_ticket_msg(KZ_CHANNEL_EVENT, k, GRACE_MS, KZ_TICKET_MSG_BYTES);
    for (int i = 0; i < PUMP_LIMIT && !holds(k); i++)
        pump();
    cr_assert(holds(k), "the client took the ticket");
}

/* The newest RESUME: exactly KZ_GATE_RESUME_BYTES, well formed, with
 * `cookie` (NULL: none), ticket `k`, and a proof only the token's keys
 * make. */
static void check_resume(const uint8_t *cookie, const kz__ticket *k)
{
    const uint8_t *d = t.r.last;
    cr_assert_eq(t.r.bad_resumes, 0u);
    cr_assert_eq(t.r.last_len, (size_t)KZ_GATE_RESUME_BYTES);
    cr_assert_eq(d[3], KZ_PROTOCOL_VERSION);
    kz__resume p;
    cr_assert_eq(kz__resume_parse(d, t.r.last_len, &p), KZ_OK);
    uint8_t zero[KZ_COOKIE_BYTES] = {0}, packed[KZ_TICKET_BYTES];
    cr_assert_eq(memcmp(p.cookie, cookie ? cookie : zero, KZ_COOKIE_BYTES), 0, "cookie");
    kz__ticket_pack(k, packed);
    cr_assert_eq(memcmp(p.ticket, packed, sizeof packed), 0, "the ticket it was given");
    cr_assert(kz__resume_proof_ok(&t.ct.keys, d), "proof under the token's keys");
    kz_session_keys other;
    randombytes_buf(&other, sizeof other);
    cr_assert_not(kz__resume_proof_ok(&other, d));
}

static void cookie_of(uint8_t seed, uint8_t out[KZ_COOKIE_BYTES])
{
    for (uint32_t i = 0; i < KZ_COOKIE_BYTES; i++)
        out[i] = (uint8_t)(seed + i * 7u);
}

/* ---- the transport ------------------------------------------------------ */

Test(resume_client, the_transport_takes_the_ticket_and_never_hands_it_on)
{
    start_bare(0);
    cr_assert_eq(kz_netclient_rebind(t.nc, NULL), KZ_ESTATE, "no ticket: no resume");
    cr_assert_eq(net_state(), KZ_NETCLIENT_CONNECTED);

    kz__ticket k = ticket_of(1), foreign = ticket_of(1);
    foreign.session_id ^= 1;
    send_ticket_msg(KZ_CHANNEL_EVENT, &k, GRACE_MS, KZ_TICKET_MSG_BYTES - 1); /* short */
    send_ticket_msg(KZ_CHANNEL_EVENT, &k, GRACE_MS, KZ_TICKET_MSG_BYTES + 1); /* long */
    send_ticket_msg(KZ_CHANNEL_EVENT, &k, KZ_RESUME_GRACE_MIN_MS - 1, KZ_TICKET_MSG_BYTES);
    send_ticket_msg(KZ_CHANNEL_EVENT, &k, KZ_RESUME_GRACE_MAX_MS + 1, KZ_TICKET_MSG_BYTES);
    send_ticket_msg(KZ_CHANNEL_INPUT, &k, GRACE_MS, KZ_TICKET_MSG_BYTES);     /* wrong channel */
    send_ticket_msg(KZ_CHANNEL_EVENT, &foreign, GRACE_MS, KZ_TICKET_MSG_BYTES);
    for (int i = 0; i < PUMP_LIMIT && rcount(KZ_NETCLIENT_C_DROP_TICKET) < 6; i++)
        pump();
    cr_assert_eq(rcount(KZ_NETCLIENT_C_DROP_TICKET), 6u, "every bad TICKET dropped and counted");
    uint8_t buf[KZ_TICKET_BYTES];
    uint32_t grace;
    cr_assert_eq(kz__netclient_ticket(t.nc, buf, &grace), 0, "no bad TICKET was taken");
    cr_assert_eq(kz_netclient_rebind(t.nc, NULL), KZ_ESTATE);

    uint32_t before = t.client_msgs;
    give_ticket(&k);
    server_send(KZ_CHANNEL_EVENT, 3, "hi", 2);
    for (int i = 0; i < PUMP_LIMIT && t.client_msgs == before; i++)
        pump();
    cr_assert_eq(t.client_msgs, before + 1, "only the message after the TICKET came out");
    cr_assert_eq(t.client_last_type, 3);
    cr_assert_eq(rcount(KZ_NETCLIENT_C_TICKETS), 1u);
    cr_assert_geq(kz__netclient_enet_timeout(t.nc), GRACE_MS + 5000u,
                  "ENet's timeout outlives the grace");
    /* A grace longer than the token's 30 s session timeout raises ENet's. */
    const uint32_t long_grace = 60000;
    send_ticket_msg(KZ_CHANNEL_EVENT, &k, long_grace, KZ_TICKET_MSG_BYTES);
    for (int i = 0; i < PUMP_LIMIT && (kz__netclient_ticket(t.nc, buf, &grace), grace != long_grace);
         i++)
        pump();
    cr_assert_eq(grace, long_grace);
    cr_assert_geq(kz__netclient_enet_timeout(t.nc), long_grace + 5000u);
    stop();
}

Test(resume_client, a_rebind_resumes_through_a_challenge_and_only_a_valid_resumed)
{
    start_bare(SLOW_RESEND_MS);
    kz__ticket t1 = ticket_of(1), t2 = ticket_of(2);
    give_ticket(&t1);
    struct sockaddr_in old = t.r.client;

    cr_assert_eq(kz_netclient_rebind(t.nc, NULL), KZ_OK);
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING, "resuming at once");
    cr_assert_eq(rcount(KZ_NETCLIENT_C_REBINDS), 1u);
    cr_assert_eq(rcount(KZ_NETCLIENT_C_RESUMES_STARTED), 1u);
    wait_resumes(1);
    cr_assert_not(same_addr(&t.r.last_from, &old), "the RESUME comes from the new socket");
    check_resume(NULL, &t1);

    /* A challenge is answered at once (the resend interval is 10 min). */
    uint8_t a[KZ_COOKIE_BYTES];
    cookie_of(1, a);
    send_challenge(a);
    wait_resumes(2);
    check_resume(a, &t1);
    /* The same cookie again is no news; new ones are not answered at once
     * again before the next timed send: forged challenges cannot make the
     * client send faster than twice per resend interval. */
    send_challenge(a);
    pump_n(50);
    cr_assert_eq(t.r.resumes, 2u);
    uint8_t flood[KZ_COOKIE_BYTES];
    for (uint8_t i = 0; i < 40; i++) {
        cookie_of((uint8_t)(100 + i), flood);
        send_challenge(flood);
    }
    pump_n(100);
    cr_assert_eq(t.r.resumes, 2u, "no answer to a flood of challenges");

    /* Forged: sealed under other keys. */
    kz_session_keys other;
    randombytes_buf(&other, sizeof other);
    send_resumed(t.r.front, &other, &t2);
    for (int i = 0; i < PUMP_LIMIT && rcount(KZ_NETCLIENT_C_DROP_RESUMED_AUTH) == 0; i++)
        pump();
    cr_assert_eq(rcount(KZ_NETCLIENT_C_DROP_RESUMED_AUTH), 1u);
    /* Genuine, but from another address than the gate's. */
    send_resumed(t.r.other, &t.ct.keys, &t2);
    for (int i = 0; i < PUMP_LIMIT && rcount(KZ_NETCLIENT_C_DROP_GATE_SOURCE) == 0; i++)
        pump();
    cr_assert_eq(rcount(KZ_NETCLIENT_C_DROP_GATE_SOURCE), 1u);
    /* Genuine, from the gate, but not an answer: the ticket we hold (the
     * session cannot already be at the new socket), an older path, and
     * another session's. */
    kz__ticket t0 = ticket_of(0), alien = ticket_of(3);
    alien.session_id ^= 2;
    send_resumed(t.r.front, &t.ct.keys, &t1);
    send_resumed(t.r.front, &t.ct.keys, &t0);
    send_resumed(t.r.front, &t.ct.keys, &alien);
    for (int i = 0; i < PUMP_LIMIT && (rcount(KZ_NETCLIENT_C_DROP_RESUMED_STALE) < 2 ||
                                       rcount(KZ_NETCLIENT_C_DROP_RESUMED_UNASKED) < 1);
         i++)
        pump();
    cr_assert_eq(rcount(KZ_NETCLIENT_C_DROP_RESUMED_STALE), 2u, "older path, other session");
    cr_assert_eq(rcount(KZ_NETCLIENT_C_DROP_RESUMED_UNASKED), 1u, "the ticket we hold");
    cr_assert_eq(rcount(KZ_NETCLIENT_C_TICKETS_CONFIRMED), 0u);
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING, "nothing forged ended the attempt");
    cr_assert(holds(&t1));

    /* The server moves the session and answers. */
    relay_move(&t.r);
    send_resumed(t.r.front, &t.ct.keys, &t2);
    wait_net_state(KZ_NETCLIENT_CONNECTED);
    cr_assert_eq(rcount(KZ_NETCLIENT_C_RESUMES_SUCCEEDED), 1u);
    cr_assert(holds(&t2), "the next ticket replaced the used one");

    /* The same ENet session carries on from the new socket both ways. */
    uint32_t got = t.client_msgs, sent = t.data_msgs;
    server_send(KZ_CHANNEL_EVENT, 3, "back", 4);
    cr_assert_eq(kz_netclient_send(t.nc, KZ_CHANNEL_EVENT, 3, "here", 4), KZ_OK);
    for (int i = 0; i < PUMP_LIMIT && (t.client_msgs == got || t.data_msgs == sent); i++)
        pump();
    cr_assert_eq(t.client_msgs, got + 1);
    cr_assert_eq(t.data_msgs, sent + 1);

    /* The next resume presents the new ticket, with no cookie; a replay of
     * the RESUMED that answered the last one is refused. */
    uint32_t n = t.r.resumes;
    cr_assert_eq(kz_netclient_rebind(t.nc, NULL), KZ_OK);
    wait_resumes(n + 1);
    check_resume(NULL, &t2);
    send_resumed(t.r.front, &t.ct.keys, &t2);
    for (int i = 0; i < PUMP_LIMIT && rcount(KZ_NETCLIENT_C_DROP_RESUMED_UNASKED) < 2; i++)
        pump();
    cr_assert_eq(rcount(KZ_NETCLIENT_C_DROP_RESUMED_UNASKED), 2u);
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING);
    stop();
}

Test(resume_client, deny_no_session_after_a_cookie_loses_the_session)
{
    start_bare(SLOW_RESEND_MS);
    kz__ticket t1 = ticket_of(1);
    give_ticket(&t1);
    cr_assert_eq(kz_netclient_rebind(t.nc, NULL), KZ_OK);
    wait_resumes(1);

    /* Before any cookie went out, a DENY cannot be the gate's answer. */
    send_deny(t.r.front, KZ_DENY_NO_SESSION);
    for (int i = 0; i < PUMP_LIMIT && rcount(KZ_NETCLIENT_C_DROP_DENY_UNPROVEN) == 0; i++)
        pump();
    cr_assert_eq(rcount(KZ_NETCLIENT_C_DROP_DENY_UNPROVEN), 1u);
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING);

    uint8_t a[KZ_COOKIE_BYTES];
    cookie_of(9, a);
    send_challenge(a);
    wait_resumes(2);
    check_resume(a, &t1);
    /* Another reason, another address: ignored, counted. */
    send_deny(t.r.front, KZ_DENY_SERVER_FULL);
    send_deny(t.r.other, KZ_DENY_NO_SESSION);
    for (int i = 0; i < PUMP_LIMIT && (rcount(KZ_NETCLIENT_C_DROP_DENY_REASON) == 0 ||
                                       rcount(KZ_NETCLIENT_C_DROP_GATE_SOURCE) == 0);
         i++)
        pump();
    cr_assert_eq(rcount(KZ_NETCLIENT_C_DROP_DENY_REASON), 1u);
    cr_assert_eq(rcount(KZ_NETCLIENT_C_DROP_GATE_SOURCE), 1u);
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING);

    send_deny(t.r.front, KZ_DENY_NO_SESSION);
    wait_net_state(KZ_NETCLIENT_DISCONNECTED);
    cr_assert_eq(kz_netclient_reason(t.nc), KZ_LOST_RESUME_REFUSED);
    cr_assert_eq(rcount(KZ_NETCLIENT_C_RESUMES_REFUSED), 1u);
    cr_assert_eq(kz_netclient_send(t.nc, KZ_CHANNEL_EVENT, 3, "x", 1), KZ_ESTATE);
    cr_assert_eq(kz_netclient_rebind(t.nc, NULL), KZ_ESTATE);
    uint8_t buf[KZ_TICKET_BYTES];
    uint32_t grace;
    cr_assert_eq(kz__netclient_ticket(t.nc, buf, &grace), 0, "the ticket is forgotten");
    stop();
}

Test(resume_client, silence_starts_a_resume_and_the_grace_ends_it)
{
    start_bare(0);
    kz__ticket t1 = ticket_of(1);
    give_ticket(&t1);
    struct sockaddr_in at = t.r.client;
    t.r.cut_up = t.r.cut_down = 1;
    pump_n(5); /* what was on the way arrives */
    kz_time_ns heard = kz_netclient_last_heard(t.nc);
    cr_assert_neq(heard, 0u);

    clock_to(heard + (KZ_NETCLIENT_DEFAULT_SILENCE_MS - 200) * KZ_NS_PER_MS);
    pump();
    cr_assert_eq(net_state(), KZ_NETCLIENT_CONNECTED, "not silent long enough yet");
    clock_to(heard + KZ_NETCLIENT_DEFAULT_SILENCE_MS * KZ_NS_PER_MS);
    pump();
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING);
    wait_resumes(1);
    cr_assert(same_addr(&t.r.last_from, &at), "no rebind: the same socket");
    check_resume(NULL, &t1);

    /* Resent every resend_ms (250 by default) while nothing answers. */
    for (uint32_t k = 2; k <= 5; k++) {
        t.skew += 260 * KZ_NS_PER_MS;
        wait_resumes(k);
        check_resume(NULL, &t1);
    }

    clock_to(heard + (GRACE_MS - 100) * KZ_NS_PER_MS);
    pump();
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING, "within the grace");
    clock_to(heard + GRACE_MS * KZ_NS_PER_MS);
    pump();
    cr_assert_eq(net_state(), KZ_NETCLIENT_DISCONNECTED);
    cr_assert_eq(kz_netclient_reason(t.nc), KZ_LOST_RESUME_TIMEOUT);
    cr_assert_eq(rcount(KZ_NETCLIENT_C_RESUMES_TIMED_OUT), 1u);
    uint32_t n = t.r.resumes;
    t.skew += 1000 * KZ_NS_PER_MS;
    pump_n(20);
    cr_assert_eq(t.r.resumes, n, "a lost session sends nothing more");
    stop();
}

/* Silence until the client resumes (the server's datagrams are cut). */
static void go_silent(void)
{
    t.r.cut_down = 1;
    pump_n(5); /* what was on the way arrives */
    clock_to(kz_netclient_last_heard(t.nc) + KZ_NETCLIENT_DEFAULT_SILENCE_MS * KZ_NS_PER_MS);
    pump();
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING);
}

/* Lets the server's datagrams through again and makes it send one. */
static void heal(void)
{
    t.r.cut_down = 0;
    server_send(KZ_CHANNEL_EVENT, 3, "ping", 4);
    wait_net_state(KZ_NETCLIENT_CONNECTED);
}

Test(resume_client, an_authenticated_datagram_ends_the_resume)
{
    start_bare(SLOW_RESEND_MS);
    kz__ticket t1 = ticket_of(1), t2 = ticket_of(2);
    give_ticket(&t1);

    /* No cookie went out: the ticket cannot have been used, nothing more
     * is asked. */
    go_silent();
    wait_resumes(1);
    heal();
    cr_assert_eq(rcount(KZ_NETCLIENT_C_RESUMES_HEALED), 1u);
    t.skew += 600 * KZ_NS_PER_MS;
    pump_n(20);
    cr_assert_eq(t.r.resumes, 1u, "healed without a cookie: no more RESUMEs");

    /* A cookie went out: the server may have moved the session and its
     * RESUMED may be lost, so the client asks again from where it is until
     * a RESUMED names the ticket. */
    go_silent();
    wait_resumes(2);
    uint8_t a[KZ_COOKIE_BYTES];
    cookie_of(3, a);
    send_challenge(a);
    wait_resumes(3);
    check_resume(a, &t1);
    heal();
    cr_assert_eq(rcount(KZ_NETCLIENT_C_RESUMES_HEALED), 2u);
    wait_resumes(4);
    check_resume(a, &t1);
    cr_assert_eq(net_state(), KZ_NETCLIENT_CONNECTED);
    send_resumed(t.r.front, &t.ct.keys, &t2);
    for (int i = 0; i < PUMP_LIMIT && !holds(&t2); i++)
        pump();
    cr_assert(holds(&t2));
    t.skew += 600 * KZ_NS_PER_MS;
    pump_n(20);
    cr_assert_eq(t.r.resumes, 4u, "the ticket is confirmed: no more RESUMEs");
    cr_assert_eq(net_state(), KZ_NETCLIENT_CONNECTED);
    stop();
}

Test(resume_client, a_rebind_to_an_address_that_is_not_ours_changes_nothing)
{
    start_bare(0);
    kz__ticket t1 = ticket_of(1);
    give_ticket(&t1);
    kz_address bad;
    memset(&bad, 0, sizeof bad);
    bad.family = KZ_ADDR_IPV4;
    bad.ip[0] = 192; /* TEST-NET-1: no interface of this host has it */
    bad.ip[2] = 2;
    bad.ip[3] = 1;
    cr_assert_eq(kz_netclient_rebind(t.nc, &bad), KZ_EIO);
    cr_assert_eq(rcount(KZ_NETCLIENT_C_REBIND_FAILED), 1u);
    bad.family = KZ_ADDR_IPV6;
    cr_assert_eq(kz_netclient_rebind(t.nc, &bad), KZ_EINVAL);
    cr_assert_eq(net_state(), KZ_NETCLIENT_CONNECTED);
    cr_assert_eq(rcount(KZ_NETCLIENT_C_RESUMES_STARTED), 0u);
    /* The old socket still works. */
    uint32_t got = t.client_msgs;
    server_send(KZ_CHANNEL_EVENT, 3, "still", 5);
    for (int i = 0; i < PUMP_LIMIT && t.client_msgs == got; i++)
        pump();
    cr_assert_eq(t.client_msgs, got + 1);
    stop();
}

/* An application that stops calling the client (a phone app paused) for
 * longer than ENet's timeout: ENet ends the peer in the first update
 * after, before any datagram is read. With a ticket held and the grace
 * passed, that is the server's end of the session and is told as a
 * resume timeout, not as a bare 0. Takes ENet's own time: about 6 s. */
Test(resume_client, an_enet_timeout_past_the_grace_is_told_as_a_resume_timeout, .timeout = 60)
{
    const uint32_t grace = KZ_RESUME_GRACE_MIN_MS;
    start_bare_timeout(0, KZ_SESSION_TIMEOUT_MIN_S);
    kz__ticket t1 = ticket_of(1);
    send_ticket_msg(KZ_CHANNEL_EVENT, &t1, grace, KZ_TICKET_MSG_BYTES);
    uint8_t buf[KZ_TICKET_BYTES];
    uint32_t got = 0;
    for (int i = 0; i < PUMP_LIMIT && !kz__netclient_ticket(t.nc, buf, &got); i++)
        pump();
    cr_assert_eq(got, grace);
    uint32_t enet_ms = kz__netclient_enet_timeout(t.nc);
    cr_assert_eq(enet_ms, grace + 5000u, "the grace's margin is longer than the token's 2 s");

    t.r.cut_up = t.r.cut_down = 1;
    pump_n(5);
    cr_assert_eq(kz_netclient_send(t.nc, KZ_CHANNEL_EVENT, 3, "unanswered", 10), KZ_OK);
    (void)kz_netclient_update(t.nc, now_ns()); /* sent: ENet waits for its acknowledgement */
    struct timespec ts = {(time_t)(enet_ms / 1000u + 1u), 0};
    nanosleep(&ts, NULL);
    (void)kz_netclient_update(t.nc, now_ns());
    cr_assert_eq(net_state(), KZ_NETCLIENT_DISCONNECTED);
    cr_assert_eq(kz_netclient_reason(t.nc), KZ_LOST_RESUME_TIMEOUT);
    cr_assert_eq(rcount(KZ_NETCLIENT_C_RESUMES_TIMED_OUT), 1u);
    stop();
}

/* Pumps until resume counter `id` reaches `n`. */
static void wait_rcount(uint32_t id, uint64_t n)
{
    for (int i = 0; i < PUMP_LIMIT && rcount(id) < n; i++)
        pump();
    cr_assert_eq(rcount(id), n, "counter %u: %llu, not %llu", id, (unsigned long long)rcount(id),
                 (unsigned long long)n);
}

/* The cookie of the newest RESUME. */
static int last_cookie_is(const uint8_t cookie[KZ_COOKIE_BYTES])
{
    kz__resume p;
    cr_assert_eq(kz__resume_parse(t.r.last, t.r.last_len, &p), KZ_OK);
    return memcmp(p.cookie, cookie, KZ_COOKIE_BYTES) == 0;
}

Test(resume_client, only_a_challenge_or_deny_echoing_a_recent_resume_is_taken)
{
    start_bare(0); /* resend every 250 ms */
    kz__ticket t1 = ticket_of(1);
    give_ticket(&t1);
    cr_assert_eq(kz_netclient_rebind(t.nc, NULL), KZ_OK);
    wait_resumes(1);
    uint8_t first_proof[KZ_RESUME_PROOF_BYTES], wrong[KZ_RESUME_PROOF_BYTES];
    memcpy(first_proof, last_proof(), sizeof first_proof);
    randombytes_buf(wrong, sizeof wrong);

    /* Forged challenges from the gate's own address: the handshake's size
     * (no echo) and an echo that is no proof of ours. Neither cookie is
     * taken. */
    uint8_t forged[KZ_COOKIE_BYTES], real[KZ_COOKIE_BYTES];
    cookie_of(200, forged);
    cookie_of(7, real);
    send_challenge_echo(t.r.front, forged, NULL);
    send_challenge_echo(t.r.front, forged, wrong);
    wait_rcount(KZ_NETCLIENT_C_DROP_GATE_NO_ECHO, 1);
    wait_rcount(KZ_NETCLIENT_C_DROP_GATE_BAD_ECHO, 1);
    pump_n(20);
    cr_assert_eq(t.r.resumes, 1u, "no forged challenge was answered");

    /* The real one echoes the RESUME it answers. */
    send_challenge(real);
    wait_resumes(2);
    check_resume(real, &t1);

    /* Forged DENYs "no session" now that a cookie went out: without an
     * echo and with a wrong one. The session stays. */
    send_deny_echo(t.r.front, KZ_DENY_NO_SESSION, NULL);
    send_deny_echo(t.r.front, KZ_DENY_NO_SESSION, wrong);
    wait_rcount(KZ_NETCLIENT_C_DROP_GATE_NO_ECHO, 2);
    wait_rcount(KZ_NETCLIENT_C_DROP_GATE_BAD_ECHO, 2);
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING);
    /* Odd sizes are malformed, not answers. */
    uint8_t odd[KZ_GATE_RESUME_DENY_BYTES + 1] = {KZ_GATE_MARK0, KZ_GATE_MARK1, KZ_GATE_DENY,
                                                  KZ_PROTOCOL_VERSION, KZ_DENY_NO_SESSION};
    gate_send(t.r.front, odd, sizeof odd);
    wait_rcount(KZ_NETCLIENT_C_DROP_GATE_MALFORMED, 1);
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING);

    /* The timed resends carry the real cookie, never the forged one. */
    for (uint32_t k = 3; k <= 6; k++) {
        t.skew += 260 * KZ_NS_PER_MS;
        wait_resumes(k);
        check_resume(real, &t1);
    }
    /* A proof older than the last few kept is no longer an answer. */
    send_challenge_echo(t.r.front, forged, first_proof);
    wait_rcount(KZ_NETCLIENT_C_DROP_GATE_BAD_ECHO, 3);
    t.skew += 260 * KZ_NS_PER_MS;
    wait_resumes(7);
    cr_assert(last_cookie_is(real), "the forged cookie was not taken");
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING);

    /* The gate's real DENY, echoing a RESUME with the cookie, ends it. */
    send_deny(t.r.front, KZ_DENY_NO_SESSION);
    wait_net_state(KZ_NETCLIENT_DISCONNECTED);
    cr_assert_eq(kz_netclient_reason(t.nc), KZ_LOST_RESUME_REFUSED);
    stop();
}

/* Sends the captured server datagram to the client from the server's
 * address (the relay's front), as a replaying attacker would. */
static void replay_captured(void)
{
    cr_assert_gt(t.r.captured_len, 0u);
    gate_send(t.r.front, t.r.captured, t.r.captured_len);
}

Test(resume_client, a_replayed_server_datagram_does_not_keep_a_dead_path_alive)
{
    start_bare(0);
    kz__ticket t1 = ticket_of(1);
    give_ticket(&t1);
    /* Capture a datagram carrying a sealed message: it passes ENet's MAC
     * check whenever it is replayed. */
    t.r.capture = 1;
    uint32_t got = t.client_msgs;
    server_send(KZ_CHANNEL_EVENT, 3, "real", 4);
    for (int i = 0; i < PUMP_LIMIT && t.client_msgs == got; i++)
        pump();
    cr_assert_eq(t.client_msgs, got + 1);
    t.r.capture = 0;
    pump_n(5);
    t.r.last_from = t.r.client; /* where replays go */
    t.r.cut_up = t.r.cut_down = 1;
    pump_n(5);
    kz_time_ns heard = kz_netclient_last_heard(t.nc);
    uint64_t mac_ok_before = kz_counters_get(kz_netclient_counters(t.nc), KZ_NET_C_DROP_ENET_MAC);

    /* The replay, once a second, while the client's clock runs on. */
    for (uint32_t ms = 250; ms <= KZ_NETCLIENT_DEFAULT_SILENCE_MS; ms += 250) {
        if (ms % 1000u == 0)
            replay_captured();
        clock_to(heard + ms * KZ_NS_PER_MS);
        pump_n(3);
    }
    cr_assert_eq(kz_counters_get(kz_netclient_counters(t.nc), KZ_NET_C_DROP_ENET_MAC),
                 mac_ok_before, "the replays passed the MAC check");
    cr_assert_eq(kz_netclient_last_heard(t.nc), heard, "a replay is not news");
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING, "silence is seen through the replays");
    cr_assert_eq(t.client_msgs, got + 1, "nothing replayed came out");

    /* A RESUMED naming the ticket we hold (a copy, for all we know) before
     * any cookie went out: dropped, nothing changes. */
    send_resumed(t.r.front, &t.ct.keys, &t1);
    wait_rcount(KZ_NETCLIENT_C_DROP_RESUMED_UNASKED, 1);
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING);
    /* After a cookie went out, it confirms the ticket and nothing more:
     * the path is not known to work. */
    uint8_t a[KZ_COOKIE_BYTES];
    cookie_of(11, a);
    send_challenge(a);
    for (int i = 0; i < PUMP_LIMIT && !last_cookie_is(a); i++)
        pump();
    cr_assert(last_cookie_is(a));
    send_resumed(t.r.front, &t.ct.keys, &t1);
    wait_rcount(KZ_NETCLIENT_C_TICKETS_CONFIRMED, 1);
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING);
    cr_assert_eq(kz_netclient_last_heard(t.nc), heard);

    for (uint32_t ms = 2000; ms < GRACE_MS; ms += 250) {
        if (ms % 1000u == 0)
            replay_captured();
        clock_to(heard + ms * KZ_NS_PER_MS);
        pump_n(3);
        cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING, "at %u ms", ms);
    }
    clock_to(heard + GRACE_MS * KZ_NS_PER_MS);
    replay_captured();
    pump_n(3);
    cr_assert_eq(net_state(), KZ_NETCLIENT_DISCONNECTED, "the grace ends it");
    cr_assert_eq(kz_netclient_reason(t.nc), KZ_LOST_RESUME_TIMEOUT);
    stop();
}

Test(resume_client, resume_silence_is_clamped_to_the_grace_and_the_resend_interval)
{
    /* Asked for 10 s against a 5 s grace: half the grace is used. */
    start_bare_silence(0, 0, 10000);
    cr_assert_eq(kz__netclient_silence_ms(t.nc), 10000u, "as asked until the grace is known");
    kz__ticket t1 = ticket_of(1);
    give_ticket(&t1);
    cr_assert_eq(kz__netclient_silence_ms(t.nc), GRACE_MS / 2u);
    t.r.cut_down = 1;
    pump_n(5);
    kz_time_ns heard = kz_netclient_last_heard(t.nc);
    clock_to(heard + (GRACE_MS / 2u - 100u) * KZ_NS_PER_MS);
    pump();
    cr_assert_eq(net_state(), KZ_NETCLIENT_CONNECTED);
    clock_to(heard + (GRACE_MS / 2u) * KZ_NS_PER_MS);
    pump();
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING, "resumes at half the grace");
    stop();

    /* Asked for 100 ms with a 250 ms resend: two resends are used. */
    start_bare_silence(250, 0, 100);
    t1 = ticket_of(1);
    give_ticket(&t1);
    cr_assert_eq(kz__netclient_silence_ms(t.nc), 500u);
    t.r.cut_down = 1;
    pump_n(5);
    heard = kz_netclient_last_heard(t.nc);
    clock_to(heard + 400 * KZ_NS_PER_MS);
    pump();
    cr_assert_eq(net_state(), KZ_NETCLIENT_CONNECTED, "one lost datagram is not a break");
    clock_to(heard + 500 * KZ_NS_PER_MS);
    pump();
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING);
    stop();
}

Test(resume_client, the_servers_end_of_grace_while_resuming_is_a_resume_timeout)
{
    start_bare(SLOW_RESEND_MS);
    kz__ticket t1 = ticket_of(1);
    give_ticket(&t1);
    /* The uplink breaks; the server, idle, sends nothing: the client
     * resumes on silence while the server stops hearing it. */
    t.r.cut_up = 1;
    pump_n(5);
    clock_to(kz_netclient_last_heard(t.nc) + KZ_NETCLIENT_DEFAULT_SILENCE_MS * KZ_NS_PER_MS);
    pump();
    cr_assert_eq(net_state(), KZ_NETCLIENT_RESUMING);
    /* The server's grace ends: its DISCONNECT carries reason 0. */
    cr_assert_eq(kz_netserver_kick(t.srv, t.slot, 0), KZ_OK);
    wait_net_state(KZ_NETCLIENT_DISCONNECTED);
    cr_assert_eq(kz_netclient_reason(t.nc), KZ_LOST_RESUME_TIMEOUT);
    cr_assert_eq(rcount(KZ_NETCLIENT_C_RESUMES_TIMED_OUT), 1u);
    stop();
}

Test(resume_client, a_clock_stepping_back_is_no_silence)
{
    start_bare(0);
    kz__ticket t1 = ticket_of(1);
    give_ticket(&t1);
    kz_time_ns heard = kz_netclient_last_heard(t.nc);
    /* The application's clock steps back by a minute: nothing reads it as
     * an age, and a DISCONNECT with reason 0 then is told as it is. */
    t.skew = 0;
    kz_time_ns back = heard - 60 * KZ_NS_PER_S;
    cr_assert_eq(kz_netclient_update(t.nc, back), KZ_OK);
    cr_assert_eq(net_state(), KZ_NETCLIENT_CONNECTED);
    cr_assert_eq(kz_netserver_kick(t.srv, t.slot, 0), KZ_OK);
    for (int i = 0; i < PUMP_LIMIT && net_state() != KZ_NETCLIENT_DISCONNECTED; i++) {
        serve();
        relay_up(&t.r);
        relay_down(&t.r);
        (void)kz_netclient_update(t.nc, back);
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(net_state(), KZ_NETCLIENT_DISCONNECTED);
    cr_assert_eq(kz_netclient_reason(t.nc), 0u, "not a resume timeout");
    cr_assert_eq(rcount(KZ_NETCLIENT_C_RESUMES_TIMED_OUT), 0u);
    stop();
}

/* ---- the world's client ------------------------------------------------- */

static void welcome(void)
{
    kz_wire_welcome w = {.version = KZ_WORLD_VERSION, .tick_hz = HZ, .tick = 1, .self = AVATAR,
                         .n_slots = 16, .history = 8, .bound = 512.0f, .max_speed = 5.0f};
    uint8_t buf[KZ_WELCOME_BYTES];
    kz_wire_welcome_write(&w, buf);
    server_send(KZ_CHANNEL_EVENT, KZ_MSG_WELCOME, buf, sizeof buf);
}

/* The next event of the world's client, which must be of `type`. */
static kz_client_event expect_event(uint32_t type)
{
    kz_client_event ev;
    int rc = kz_client_poll_event(t.cl, &ev);
    for (int i = 0; i < PUMP_LIMIT && rc == KZ_EEMPTY; i++) {
        pump();
        rc = kz_client_poll_event(t.cl, &ev);
    }
    cr_assert_eq(rc, KZ_OK, "no event %u", type);
    cr_assert_eq(ev.type, type, "event %u where %u was due", ev.type, type);
    return ev;
}

static void start_world_client(void)
{
    setup_common(0);
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.net.connect_timeout_ms = 20000;
    cc.net.resend_ms = SLOW_RESEND_MS;
    t.cl = kz_client_create(&cc);
    cr_assert_not_null(t.cl);
    cr_assert_eq(kz_client_rebind(t.cl, NULL), KZ_ESTATE, "idle");
    cr_assert_eq(kz_client_connect(t.cl, &t.ct, now_ns()), KZ_OK);
    cr_assert_eq(kz_client_rebind(t.cl, NULL), KZ_ESTATE, "connecting");
    for (int i = 0; i < PUMP_LIMIT && t.slot == UINT32_MAX; i++)
        pump();
    cr_assert_neq(t.slot, UINT32_MAX);
    cr_assert_eq(kz_client_rebind(t.cl, NULL), KZ_ESTATE, "no welcome yet");
    kz__ticket t1 = ticket_of(1);
    give_ticket(&t1);
    welcome();
    kz_client_event ev = expect_event(KZ_EV_CONNECTED);
    cr_assert_eq(ev.entity, AVATAR);
    cr_assert_eq(kz_client_state(t.cl), KZ_CLIENT_CONNECTED);
}

/* Pumps until the server has taken `n` more input messages. */
static void wait_inputs(uint32_t n)
{
    uint32_t want = t.inputs + n;
    for (int i = 0; i < PUMP_LIMIT && t.inputs < want; i++)
        pump();
    cr_assert_geq(t.inputs, want);
}

Test(resume_client, the_world_client_reconnects_and_carries_on)
{
    start_world_client();
    kz__ticket t1 = ticket_of(1), t2 = ticket_of(2);
    wait_inputs(3);
    uint32_t cmd_before = t.newest_cmd;

    cr_assert_eq(kz_client_rebind(t.cl, "127.0.0.256"), KZ_EINVAL);
    cr_assert_eq(kz_client_rebind(t.cl, "::1"), KZ_EINVAL);
    cr_assert_eq(kz_client_state(t.cl), KZ_CLIENT_CONNECTED);
    cr_assert_eq(kz_client_rebind(t.cl, "127.0.0.2"), KZ_OK);
    cr_assert_eq(kz_client_state(t.cl), KZ_CLIENT_RECONNECTING);
    kz_client_event ev = expect_event(KZ_EV_RECONNECTING);
    cr_assert_eq(ev.entity, AVATAR);
    wait_resumes(1);
    cr_assert_eq(t.r.last_from.sin_addr.s_addr, htonl(0x7f000002), "from the new address");
    check_resume(NULL, &t1);

    /* Still in the world: intent and chat are taken, input ticks run. */
    kz_avatar_state intent;
    kz_avatar_state_rest(&intent);
    intent.vel[0] = 1.0f;
    cr_assert_eq(kz_client_send_input(t.cl, &intent), KZ_OK);
    cr_assert_eq(kz_client_chat(t.cl, "hello", 5), KZ_OK);
    uint64_t sent = kz_counters_get(kz_client_counters(t.cl), KZ_CLIENT_C_INPUTS_SENT);
    for (int i = 0; i < PUMP_LIMIT &&
                    kz_counters_get(kz_client_counters(t.cl), KZ_CLIENT_C_INPUTS_SENT) < sent + 3;
         i++)
        pump();
    cr_assert_geq(kz_counters_get(kz_client_counters(t.cl), KZ_CLIENT_C_INPUTS_SENT), sent + 3);
    cr_assert_eq(t.chats, 0u, "the server does not hear the new address before the move");
    uint32_t inputs = t.inputs;

    t.skew += 700 * KZ_NS_PER_MS;
    uint8_t a[KZ_COOKIE_BYTES];
    cookie_of(5, a);
    send_challenge(a);
    wait_resumes(2);
    check_resume(a, &t1);
    relay_move(&t.r);
    send_resumed(t.r.front, &t.ct.keys, &t2);
    ev = expect_event(KZ_EV_RESUMED);
    cr_assert_eq(ev.entity, AVATAR);
    cr_assert_geq(ev.code, 700u, "code: the milliseconds without a datagram (%u)", ev.code);
    cr_assert_eq(kz_client_state(t.cl), KZ_CLIENT_CONNECTED);
    cr_assert(holds(&t2));

    /* The session carried on: the chat queued while reconnecting arrives,
     * inputs flow again with command ticks that kept counting, the own
     * avatar is the same, and nothing else happened. */
    for (int i = 0; i < PUMP_LIMIT && (t.chats == 0 || t.inputs < inputs + 3); i++)
        pump();
    cr_assert_eq(t.chats, 1u);
    cr_assert_geq(t.inputs, inputs + 3);
    cr_assert_gt(t.newest_cmd, cmd_before + 3);
    cr_assert_eq(kz_client_self_id(t.cl), AVATAR);
    cr_assert_eq(kz_client_poll_event(t.cl, &ev), KZ_EEMPTY, "no other event (%u)", ev.type);

    /* A refused resume ends it with the reason. */
    uint32_t n = t.r.resumes;
    cr_assert_eq(kz_client_rebind(t.cl, NULL), KZ_OK);
    expect_event(KZ_EV_RECONNECTING);
    wait_resumes(n + 1);
    check_resume(NULL, &t2);
    send_challenge(a);
    wait_resumes(n + 2);
    send_deny(t.r.front, KZ_DENY_NO_SESSION);
    ev = expect_event(KZ_EV_DISCONNECTED);
    cr_assert_eq(ev.code, KZ_LOST_RESUME_REFUSED);
    cr_assert_eq(kz_client_state(t.cl), KZ_CLIENT_DISCONNECTED);
    cr_assert_eq(kz_client_reason(t.cl), KZ_LOST_RESUME_REFUSED);
    cr_assert_eq(kz_client_rebind(t.cl, NULL), KZ_ESTATE);
    cr_assert_eq(kz_client_send_input(t.cl, &intent), KZ_ESTATE);
    stop();
}

Test(resume_client, the_world_client_reports_a_resume_that_timed_out)
{
    start_world_client();
    t.r.cut_down = t.r.cut_up = 1;
    pump_n(5); /* what was on the way arrives */
    kz_time_ns heard = kz_netclient_last_heard(kz_client_net(t.cl));
    clock_to(heard + KZ_NETCLIENT_DEFAULT_SILENCE_MS * KZ_NS_PER_MS);
    expect_event(KZ_EV_RECONNECTING);
    cr_assert_eq(kz_client_state(t.cl), KZ_CLIENT_RECONNECTING);
    clock_to(heard + GRACE_MS * KZ_NS_PER_MS);
    kz_client_event ev = expect_event(KZ_EV_DISCONNECTED);
    cr_assert_eq(ev.code, KZ_LOST_RESUME_TIMEOUT);
    cr_assert_eq(kz_client_reason(t.cl), KZ_LOST_RESUME_TIMEOUT);
    cr_assert_eq(kz_client_state(t.cl), KZ_CLIENT_DISCONNECTED);
    stop();
}

/* ---- the world's client against a real server --------------------------- */

#define WDT (KZ_NS_PER_S / 60)
#define WORLD_GRACE_MS 15000u
#define WALK_SPEED 1.5f          /* m/s along x */

/* What one world client saw, step by step. */
typedef struct wtrack {
    uint32_t resumed, reconnecting, disconnected, disconnect_code;
    float max_jump_after_resume;  /* largest move of the own avatar in one step,
                                     beyond the walk's own, after KZ_EV_RESUMED */
    float last[3];
    int have_last;
} wtrack;

static void wstart(kzt_world *w)
{
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.net.resume_grace_ms = WORLD_GRACE_MS;
    memset(w, 0, sizeof *w);
    cr_assert_eq(kzt_world_start(w, 1, "none", &sc, 5), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(w, WDT, 60 * KZ_NS_PER_S), 1u);
}

static float dist3(const float a[3], const float b[3])
{
    float dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
    return sqrtf(dx * dx + dy * dy + dz * dz);
}

/* Steps the world `seconds` with the client walking straight on. */
static void wwalk(kzt_world *w, wtrack *k, double seconds)
{
    kz_client *cl = w->clients[0];
    kz_avatar_state intent;
    kz_avatar_state_rest(&intent);
    intent.vel[0] = WALK_SPEED;
    for (uint32_t s = 0; s < (uint32_t)(seconds * 60); s++) {
        (void)kz_client_send_input(cl, &intent);
        kzt_world_step(w, WDT);
        kz_client_event ev;
        while (kz_client_poll_event(cl, &ev) == KZ_OK) {
            k->resumed += ev.type == KZ_EV_RESUMED;
            k->reconnecting += ev.type == KZ_EV_RECONNECTING;
            if (ev.type == KZ_EV_DISCONNECTED) {
                k->disconnected++;
                k->disconnect_code = ev.code;
            }
        }
        kz_avatar_state self;
        if (kz_client_self(cl, &self) != KZ_OK)
            continue;
        if (k->have_last && k->resumed) {
            float jump = dist3(self.pos, k->last) - WALK_SPEED / 60.0f;
            if (jump > k->max_jump_after_resume)
                k->max_jump_after_resume = jump;
        }
        memcpy(k->last, self.pos, sizeof k->last);
        k->have_last = 1;
    }
}

static void set_paths(kzt_world *w, int up_dead, int down_dead)
{
    kz_impair_config clear, dead;
    cr_assert_eq(kz_impair_profile("none", &clear), KZ_OK);
    dead = clear;
    dead.loss_pct = 100.0;
    cr_assert_eq(kz_proxy_set_impairment(w->proxy, up_dead ? &dead : &clear,
                                         down_dead ? &dead : &clear),
                 KZ_OK);
}

static uint64_t wrcount(kzt_world *w, uint32_t id)
{
    return kz_counters_get(kz_netclient_resume_counters(kz_client_net(w->clients[0])), id);
}

/* The server stands a silent avatar still after KZ_DETACH_SILENCE_MS; the
 * client's own prediction must do the same, or the avatar it shows walks
 * on for the whole break and snaps back when the session resumes. */
Test(resume_client, after_a_5_s_blackout_while_walking_the_own_avatar_does_not_snap_back,
     .timeout = 120)
{
    kzt_world w;
    wtrack k;
    memset(&k, 0, sizeof k);
    wstart(&w);
    wwalk(&w, &k, 1.0);
    set_paths(&w, 1, 1);
    wwalk(&w, &k, 5.0);
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_RECONNECTING);
    cr_assert_gt(kz_counters_get(kz_client_counters(w.clients[0]), KZ_CLIENT_C_INPUTS_DETACHED),
                 0u, "commands stood still once the server had detached");
    kz_avatar_state mine, server;
    cr_assert_eq(kz_client_self(w.clients[0], &mine), KZ_OK);
    cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[0]), &server), KZ_OK);
    float apart = dist3(mine.pos, server.pos);
    cr_assert_lt(apart, 0.5f, "the prediction stands where the server holds the avatar "
                              "(%.2f m apart; walking on would be %.1f m)",
                 apart, (5.0 - KZ_DETACH_SILENCE_MS / 1000.0) * WALK_SPEED);
    set_paths(&w, 0, 0);
    wwalk(&w, &k, 3.0);
    cr_assert_eq(k.resumed, 1u);
    cr_assert_eq(k.disconnected, 0u);
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_CONNECTED);
    cr_assert_lt(k.max_jump_after_resume, 0.5f, "the correction on resume is small (%.2f m)",
                 k.max_jump_after_resume);
    kzt_world_stop(&w);
}

/* Only the client's datagrams are lost: the server's snapshots still
 * arrive, so the transport hears the server all along, but they stop
 * acknowledging the client's inputs. The world's client resumes. */
Test(resume_client, an_uplink_only_break_is_seen_and_resumed, .timeout = 120)
{
    kzt_world w;
    wtrack k;
    memset(&k, 0, sizeof k);
    wstart(&w);
    wwalk(&w, &k, 1.0);
    set_paths(&w, 1, 0);
    wwalk(&w, &k, 3.0);
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_RECONNECTING,
                 "inputs unacknowledged for the resume silence");
    cr_assert_eq(k.reconnecting, 1u);
    cr_assert_eq(wrcount(&w, KZ_NETCLIENT_C_UPLINK_STALLS), 1u);
    cr_assert_eq(wrcount(&w, KZ_NETCLIENT_C_RESUMES_STARTED), 1u);
    /* The server's datagrams keep coming: they do not end this resume. */
    wwalk(&w, &k, 1.0);
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_RECONNECTING);
    cr_assert_eq(wrcount(&w, KZ_NETCLIENT_C_RESUMES_HEALED), 0u);
    kz_avatar_state held, now_at;
    uint32_t id = kz_client_self_id(w.clients[0]);
    cr_assert_eq(kz_server_entity(w.srv, id, &held), KZ_OK);
    set_paths(&w, 0, 0);
    wwalk(&w, &k, 3.0);
    cr_assert_eq(k.resumed, 1u, "resumed once the inputs were acknowledged again");
    cr_assert_eq(k.disconnected, 0u);
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_CONNECTED);
    cr_assert_eq(kz_server_entity(w.srv, id, &now_at), KZ_OK);
    cr_assert_gt(dist3(now_at.pos, held.pos), 1.0f, "the server takes the walk again");
    cr_assert_lt(k.max_jump_after_resume, 0.5f, "(%.2f m)", k.max_jump_after_resume);
    kzt_world_stop(&w);
}

/* An uplink broken past the grace: the server ends the session (its
 * DISCONNECT, reason 0, still reaches the client) and the client tells it
 * as the resume timeout it is. */
Test(resume_client, an_uplink_broken_past_the_grace_ends_as_a_resume_timeout, .timeout = 120)
{
    kzt_world w;
    wtrack k;
    memset(&k, 0, sizeof k);
    wstart(&w);
    wwalk(&w, &k, 1.0);
    set_paths(&w, 1, 0);
    wwalk(&w, &k, WORLD_GRACE_MS / 1000.0 + 2.0);
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_DISCONNECTED);
    cr_assert_eq(k.disconnected, 1u);
    cr_assert_eq(k.disconnect_code, KZ_LOST_RESUME_TIMEOUT);
    cr_assert_eq(kz_client_reason(w.clients[0]), KZ_LOST_RESUME_TIMEOUT);
    kzt_world_stop(&w);
}
