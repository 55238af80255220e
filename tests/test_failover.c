/*
 * Failover (docs/PROTOCOL.md 4a, "Resume elsewhere"; docs/SCALING.md
 * section 5, "An edge is killed"): a client whose server goes silent
 * resumes its session through another address of its token, by itself.
 *
 * Most suites run one world as an authority and three edges in one
 * process (the harness of test_fleet.c: bus messages passed in memory as
 * the server program passes them over NATS, real clients on loopback, an
 * injected clock). An edge is killed by no longer stepping it and no
 * longer passing its bus messages: its socket stays open and answers
 * nothing, as a frozen or unreachable machine's would. The clients are
 * left alone by the test (no reconnect call; inputs only while
 * CONNECTED) and must:
 *   - be CONNECTED again through the next address of their token within
 *     2 s of the kill, with the same own avatar (KZ_EV_RESUMED, no new
 *     CONNECTED), the authority counting one reattached session each;
 *   - cause no LEAVE of their avatar at anyone, and see no LEAVE or ENTER
 *     themselves of avatars that were in view before and after;
 *   - keep moving: inputs sent after the failover move the avatar at the
 *     authority and in the other clients' views;
 * a world that let the avatar go before the client came back gives a new
 * one, which the client takes as a fresh connect (LEAVE for everything
 * it had in view, CONNECTED with the new avatar, no RESUMED);
 * with one address the old behaviour stands (the session is lost at the
 * end of the grace, nothing else tried), a DENY from the next address
 * moves on to the one after at once. Through a relay in front of one
 * edge the client's path breaks while that edge lives: the world refuses
 * the new session (KZ_KICK_REPLACED) until the edge has detached the old
 * one, and the client asks again until it is taken. A last suite uses a
 * single server and a silent socket as the token's second address: a
 * server that answers again while the failover runs gets its session
 * back.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <kizuna/client.h>
#include <kizuna/server.h>

#include "sim/fleet_impl.h"
#include "support/loopback.h"

#define PROTO 0x4B5A464F56455231ull
#define SERVER_ID 93u
#define EDGES 3u
#define STEP_NS 2000000ull   /* 2 ms per pass */
#define STEPS_PER_S 500u
#define SILENCE_MS 1000u     /* resume_silence_ms for fleet worlds (SCALING.md 5) */
#define MAX_CL 16u

typedef struct {
    kzt_keys keys;
    kz_server *auth;
    kz_server *edge[EDGES];
    int edge_alive[EDGES];
    kz_client *cl[MAX_CL];
    uint32_t n;
    kz_time_ns now;
} fleet;

static fleet F;

/* What one client heard since the kill. */
typedef struct {
    uint32_t reconnecting, resumed, connected, disconnected;
    uint32_t enters, leaves;          /* of anyone */
    uint32_t resumed_ms;              /* KZ_EV_RESUMED's code */
    uint32_t resumed_entity;
} heard;

static heard H[MAX_CL];

/* A UDP relay in front of one edge, the address a client's token names
 * for it: it forwards both ways until cut, so the client loses its edge
 * while the edge and the bus go on (as when the client's path to one
 * machine breaks). */
typedef struct {
    int on;
    int front, back;
    uint16_t front_port, edge_port;
    struct sockaddr_in client;
    int has_client;
    int cut;
} relay;

static relay R;

static int udp_open(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001u)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
    socklen_t al = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void relay_pump(void)
{
    uint8_t d[2048];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t n;
    if (!R.on)
        return;
    while ((n = recvfrom(R.front, d, sizeof d, 0, (struct sockaddr *)&from, &fl)) >= 0) {
        fl = sizeof from;
        if (!R.has_client) {
            R.client = from;
            R.has_client = 1;
        }
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001u),
                                 .sin_port = htons(R.edge_port)};
        if (!R.cut)
            (void)sendto(R.back, d, (size_t)n, 0, (struct sockaddr *)&to, sizeof to);
    }
    while ((n = recv(R.back, d, sizeof d, 0)) >= 0)
        if (!R.cut && R.has_client)
            (void)sendto(R.front, d, (size_t)n, 0, (struct sockaddr *)&R.client, sizeof R.client);
}

static kz_server_config world_config(uint32_t max_clients, uint32_t grace_ms)
{
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    kzt_server_config(&sc.net, &F.keys, PROTO, SERVER_ID, max_clients);
    sc.net.gate_rate_per_ip = 20000;
    sc.net.resume_grace_ms = grace_ms;
    sc.net.log.level = KZ_LOG_WARN;
    sc.spawn_radius = 8.0f;   /* everyone within view of everyone */
    return sc;
}

static void pump(void)
{
    const kz__bus_msg *m;
    for (uint32_t e = 0; e < EDGES; e++) {
        uint32_t n = kz__fleet_out(F.edge[e], &m);
        for (uint32_t k = 0; k < n && F.edge_alive[e]; k++) {
            kz_bus_drop d = kz__fleet_receive(F.auth, KZ_BUS_SUBJECT_UP, e + 1u, m[k].data, m[k].len);
            cr_assert_eq(d, KZ_BUS_OK, "edge %u's message dropped: %d", e + 1u, d);
        }
        kz__fleet_out_clear(F.edge[e]);
    }
    uint32_t n = kz__fleet_out(F.auth, &m);
    for (uint32_t k = 0; k < n; k++)
        for (uint32_t e = 0; e < EDGES; e++) {
            if (!F.edge_alive[e])
                continue;
            if (m[k].subject == KZ_BUS_SUBJECT_DOWN && m[k].edge != e + 1u)
                continue;
            kz_bus_drop d = kz__fleet_receive(F.edge[e], m[k].subject, m[k].edge, m[k].data,
                                              m[k].len);
            cr_assert_eq(d, KZ_BUS_OK, "authority's message dropped at edge %u: %d", e + 1u, d);
        }
    kz__fleet_out_clear(F.auth);
}

static void step(void)
{
    F.now += STEP_NS;
    (void)kz_server_step(F.auth, F.now);
    for (uint32_t e = 0; e < EDGES; e++)
        if (F.edge_alive[e])
            (void)kz_server_step(F.edge[e], F.now);
    pump();
    relay_pump();
    for (uint32_t i = 0; i < F.n; i++)
        if (F.cl[i])
            (void)kz_client_update(F.cl[i], F.now);
    relay_pump();
}

static kz_address edge_address(uint32_t e)
{
    kz_address a;
    memset(&a, 0, sizeof a);
    a.family = KZ_ADDR_IPV4;
    a.ip[0] = 127;
    a.ip[3] = 1;
    a.port = kz_server_port(F.edge[e]);
    return a;
}

/* A token for `client_id` naming the edges `edges[0..n)` in this order
 * (EDGES: the relay). */
static kz_connect_token mint(uint64_t client_id, const uint32_t *edges, uint32_t n)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = PROTO;
    t.create_time = (uint64_t)time(NULL) - 1;
    t.expire_time = t.create_time + 600;
    t.server_id = SERVER_ID;
    t.n_addresses = n;
    for (uint32_t k = 0; k < n; k++) {
        t.addresses[k] = edge_address(edges[k] == EDGES ? 0 : edges[k]);
        if (edges[k] == EDGES)
            t.addresses[k].port = R.front_port;
    }
    t.client_id = client_id;
    t.avatar_id = client_id + 1000;
    snprintf(t.name, sizeof t.name, "failover-%llu", (unsigned long long)client_id);
    strcpy(t.claims.method, "none");
    kz_connect_token out;
    size_t len = 0;
    cr_assert_eq(kz_token_mint(&t, F.keys.backend.secret_key, F.keys.server.public_key, &out.keys,
                               out.token, sizeof out.token, &len),
                 KZ_OK);
    out.token_len = (uint16_t)len;
    return out;
}

/* A client connecting with a token of `n` edges (the first is where it
 * connects: the addresses are tried in order). */
static kz_client *client_with(uint64_t client_id, const uint32_t *edges, uint32_t n)
{
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.net.resume_silence_ms = SILENCE_MS;
    cc.net.log.level = KZ_LOG_WARN;
    kz_client *c = kz_client_create(&cc);
    cr_assert_not_null(c);
    kz_connect_token ct = mint(client_id, edges, n);
    cr_assert_eq(kz_client_connect(c, &ct, F.now), KZ_OK);
    return c;
}

/* Client i: a token of `n_addrs` edges starting at edge i % EDGES. */
static kz_client *client_on(uint32_t i, uint32_t n_addrs)
{
    uint32_t edges[EDGES];
    for (uint32_t k = 0; k < n_addrs; k++)
        edges[k] = (i + k) % EDGES;
    return client_with(i + 1u, edges, n_addrs);
}

/* The world: an authority holding a lost edge's avatars for `hold_ms`,
 * three edges with resume grace `grace_ms`. */
static void world_start_holding(uint32_t grace_ms, uint32_t hold_ms)
{
    memset(&F, 0, sizeof F);
    memset(H, 0, sizeof H);
    memset(&R, 0, sizeof R);
    cr_assert_eq(kzt_keys_make(&F.keys), KZ_OK);
    uint32_t max = MAX_CL + 8u;
    kz_server_config sc = world_config(max, grace_ms);
    kz__fleet_config fc = {.role = KZ__ROLE_AUTHORITY, .world = kz_bus_world_hash("harbour"),
                           .instance = 0xB0, .started_ms = 1000, .hold_ms = hold_ms};
    F.auth = kz__fleet_server_create(&sc, &fc);
    cr_assert_not_null(F.auth);
    for (uint32_t e = 0; e < EDGES; e++) {
        sc = world_config(max, grace_ms);
        kz__fleet_config ec = {.role = KZ__ROLE_EDGE, .edge = e + 1u, .world = fc.world,
                               .instance = 0xF0 + e, .started_ms = 2000};
        F.edge[e] = kz__fleet_server_create(&sc, &ec);
        cr_assert_not_null(F.edge[e]);
        F.edge_alive[e] = 1;
        kz__fleet_hello(F.edge[e], 1);
    }
    F.now = 1;
    for (uint32_t k = 0; k < 200 && !(kz__fleet_synced(F.edge[0]) && kz__fleet_synced(F.edge[1]) &&
                                        kz__fleet_synced(F.edge[2]));
         k++)
        step();
    for (uint32_t e = 0; e < EDGES; e++)
        cr_assert(kz__fleet_synced(F.edge[e]), "edge %u never took the world image", e + 1u);
}

static void world_start(uint32_t grace_ms)
{
    world_start_holding(grace_ms, 15000);
}

static void wait_connected(void)
{
    uint32_t connected = 0;
    for (uint32_t k = 0; k < 3000 && connected < F.n; k++) {
        step();
        connected = 0;
        for (uint32_t i = 0; i < F.n; i++)
            connected += kz_client_state(F.cl[i]) == KZ_CLIENT_CONNECTED;
    }
    cr_assert_eq(connected, F.n, "only %u of %u clients connected through the edges", connected,
                 F.n);
}

static void stop(void)
{
    for (uint32_t i = 0; i < MAX_CL; i++)
        kz_client_destroy(F.cl[i]);
    for (uint32_t e = 0; e < EDGES; e++)
        kz_server_destroy(F.edge[e]);
    kz_server_destroy(F.auth);
    if (R.on) {
        close(R.front);
        close(R.back);
    }
}

/* The applications: each CONNECTED client walks (its heading changes
 * every second); a client that is not CONNECTED is left alone. */
static void walk(uint32_t steps)
{
    for (uint32_t k = 0; k < steps; k++) {
        for (uint32_t i = 0; i < F.n; i++) {
            if (!F.cl[i] || kz_client_state(F.cl[i]) != KZ_CLIENT_CONNECTED)
                continue;
            kz_avatar_state in;
            kz_avatar_state_rest(&in);
            float h = (float)i * 0.7f + (float)(F.now / 1000000000ull) * 1.3f;
            in.vel[0] = cosf(h) * 1.2f;
            in.vel[2] = sinf(h) * 1.2f;
            in.yaw = h;
            (void)kz_client_send_input(F.cl[i], &in);
        }
        step();
    }
}

/* Takes every client's events into H; `watch` is an avatar whose LEAVE
 * anywhere is counted in *left_watched (NULL: none). */
static void take_events(const uint32_t *watch, uint32_t n_watch, uint32_t *left_watched)
{
    for (uint32_t i = 0; i < F.n; i++) {
        kz_client_event ev;
        while (F.cl[i] && kz_client_poll_event(F.cl[i], &ev) == KZ_OK) {
            heard *h = &H[i];
            switch (ev.type) {
            case KZ_EV_RECONNECTING: h->reconnecting++; break;
            case KZ_EV_RESUMED:
                h->resumed++;
                h->resumed_ms = ev.code;
                h->resumed_entity = ev.entity;
                break;
            case KZ_EV_CONNECTED: h->connected++; break;
            case KZ_EV_DISCONNECTED: h->disconnected++; break;
            case KZ_EV_ENTER: h->enters++; break;
            case KZ_EV_LEAVE:
                h->leaves++;
                for (uint32_t w = 0; w < n_watch && left_watched; w++)
                    *left_watched += ev.entity == watch[w];
                break;
            default: break;
            }
        }
    }
}

static void forget_events(void)
{
    take_events(NULL, 0, NULL);
    memset(H, 0, sizeof H);
}

/* How many avatars other than its own client i has in view. */
static uint32_t others_in_view(uint32_t i)
{
    kz_client_entity view[MAX_CL * 2];
    uint32_t n = kz_client_view(F.cl[i], view, MAX_CL * 2);
    uint32_t self = kz_client_self_id(F.cl[i]), others = 0;
    for (uint32_t k = 0; k < n && k < MAX_CL * 2; k++)
        others += view[k].id != self;
    return others;
}

static uint64_t fleet_counter(const kz_server *s, uint32_t id)
{
    return kz_counters_get(kz__fleet_counters(s), id);
}

static uint64_t net_counter(uint32_t i, uint32_t id)
{
    return kz_counters_get(kz_netclient_resume_counters(kz_client_net(F.cl[i])), id);
}

/* Where client `observer` shows avatar `id` at its newest server tick. */
static int seen_at(uint32_t observer, uint32_t id, float out[3])
{
    kz_avatar_state st;
    if (kz_client_entity_at(F.cl[observer], id, (double)kz_client_server_tick(F.cl[observer]),
                            &st) != KZ_OK)
        return 0;
    memcpy(out, st.pos, sizeof st.pos);
    return 1;
}

static float dist(const float a[3], const float b[3])
{
    float d2 = 0;
    for (int k = 0; k < 3; k++)
        d2 += (a[k] - b[k]) * (a[k] - b[k]);
    return sqrtf(d2);
}

Test(failover, an_edges_clients_come_back_through_the_next_edge_with_their_avatars)
{
    world_start(15000);
    F.n = 6;  /* clients 0 and 3 on edge 1, 1 and 4 on edge 2, 2 and 5 on edge 3 */
    for (uint32_t i = 0; i < F.n; i++)
        F.cl[i] = client_on(i, EDGES);
    wait_connected();
    walk(STEPS_PER_S);  /* everyone sees everyone */
    for (uint32_t i = 0; i < F.n; i++)
        cr_assert_eq(others_in_view(i), F.n - 1u, "client %u sees %u others before the kill", i,
                     others_in_view(i));
    const uint32_t moved[2] = {0, 3};
    uint32_t self[2] = {kz_client_self_id(F.cl[0]), kz_client_self_id(F.cl[3])};
    cr_assert(self[0] && self[1]);
    forget_events();

    /* Edge 1 dies. */
    F.edge_alive[0] = 0;
    kz_time_ns killed = F.now;
    kz_time_ns back[2] = {0, 0};
    uint32_t left = 0;
    for (uint32_t k = 0; k < 2u * STEPS_PER_S; k++) {
        walk(1);
        take_events(self, 2, &left);
        for (uint32_t m = 0; m < 2; m++)
            if (!back[m] && H[moved[m]].reconnecting &&
                kz_client_state(F.cl[moved[m]]) == KZ_CLIENT_CONNECTED)
                back[m] = F.now;
    }
    for (uint32_t m = 0; m < 2; m++) {
        uint32_t i = moved[m];
        const kz_netclient *nc = kz_client_net(F.cl[i]);
        cr_assert(back[m], "client %u is not CONNECTED 2 s after its edge died (state %u)", i,
                  kz_client_state(F.cl[i]));
        cr_log_info("client %u back %.0f ms after the kill, broken %u ms", i,
                    (double)(back[m] - killed) / 1e6, H[i].resumed_ms);
        cr_assert_eq(H[i].reconnecting, 1u);
        cr_assert_eq(H[i].resumed, 1u, "client %u: KZ_EV_RESUMED x %u", i, H[i].resumed);
        cr_assert_eq(H[i].connected, 0u, "client %u was told of a fresh connect", i);
        cr_assert_eq(H[i].resumed_entity, self[m]);
        cr_assert(H[i].resumed_ms >= SILENCE_MS && H[i].resumed_ms < 2000u,
                  "client %u: broken for %u ms", i, H[i].resumed_ms);
        cr_assert_eq(kz_client_self_id(F.cl[i]), self[m], "client %u got another avatar", i);
        cr_assert_eq(kz_netclient_serial(nc), 2u);
        cr_assert_eq(kz_netclient_server(nc, NULL), 1u, "client %u: not on the 2nd address", i);
        cr_assert_eq(net_counter(i, KZ_NETCLIENT_C_FAILOVERS_STARTED), 1u);
        cr_assert_eq(net_counter(i, KZ_NETCLIENT_C_FAILOVERS_SUCCEEDED), 1u);
        cr_assert_eq(net_counter(i, KZ_NETCLIENT_C_FAILOVER_TRIED), 1u);
        /* Everyone else was in view before and is after: no LEAVE or ENTER. */
        cr_assert_eq(H[i].leaves, 0u, "client %u saw %u LEAVEs", i, H[i].leaves);
        cr_assert_eq(H[i].enters, 0u, "client %u saw %u ENTERs", i, H[i].enters);
    }
    cr_assert_eq(left, 0u, "a moved avatar was seen leaving");
    for (uint32_t i = 0; i < F.n; i++)
        if (i != moved[0] && i != moved[1])
            cr_assert_eq(H[i].reconnecting, 0u, "client %u on a live edge was disturbed", i);
    cr_assert_eq(fleet_counter(F.auth, KZ__FLEET_C_EDGES_LOST), 1u);
    cr_assert_eq(fleet_counter(F.auth, KZ__FLEET_C_SESSIONS_HELD), 2u);
    cr_assert_eq(fleet_counter(F.auth, KZ__FLEET_C_SESSIONS_REATTACHED), 2u);

    /* They keep moving: the authority applies their inputs, and client 1
     * (edge 2, never moved) sees them go. */
    float was[2][3], now_at[2][3];
    kz_avatar_state at_auth[2], later_auth[2];
    walk(STEPS_PER_S / 5u);
    for (uint32_t m = 0; m < 2; m++) {
        cr_assert(seen_at(1, self[m], was[m]), "client 1 does not see avatar %u", self[m]);
        cr_assert_eq(kz_server_entity(F.auth, self[m], &at_auth[m]), KZ_OK);
    }
    walk(STEPS_PER_S);
    take_events(self, 2, &left);
    for (uint32_t m = 0; m < 2; m++) {
        cr_assert(seen_at(1, self[m], now_at[m]));
        cr_assert_eq(kz_server_entity(F.auth, self[m], &later_auth[m]), KZ_OK);
        cr_assert_gt(dist(was[m], now_at[m]), 0.5f, "avatar %u stood still after the failover",
                     self[m]);
        cr_assert_gt(dist(at_auth[m].pos, later_auth[m].pos), 0.5f);
        cr_assert_eq(kz_client_state(F.cl[moved[m]]), KZ_CLIENT_CONNECTED);
        cr_assert_eq(H[moved[m]].leaves + H[moved[m]].enters, 0u);
    }
    cr_assert_eq(left, 0u);
    for (uint32_t i = 0; i < F.n; i++)
        cr_assert_eq(others_in_view(i), F.n - 1u, "client %u sees %u others after the failover", i,
                     others_in_view(i));
    stop();
}

Test(failover, with_one_address_the_session_is_lost_at_the_end_of_the_grace)
{
    world_start(3000);
    /* Both on edge 1; client 0's token names it alone, client 1's names
     * edge 2 after it. */
    const uint32_t only[1] = {0}, two[2] = {0, 1}, watcher[1] = {2};
    F.cl[0] = client_with(1, only, 1);
    F.cl[1] = client_with(2, two, 2);
    F.cl[2] = client_with(3, watcher, 1);
    F.n = 3;
    wait_connected();
    walk(STEPS_PER_S / 2u);
    forget_events();
    F.edge_alive[0] = 0;
    kz_time_ns killed = F.now, lost = 0;
    for (uint32_t k = 0; k < 4u * STEPS_PER_S; k++) {
        walk(1);
        take_events(NULL, 0, NULL);
        if (!lost && kz_client_state(F.cl[0]) == KZ_CLIENT_DISCONNECTED)
            lost = F.now;
    }
    cr_assert(lost, "the one-address client is still in state %u", kz_client_state(F.cl[0]));
    cr_assert_eq(kz_client_reason(F.cl[0]), KZ_LOST_RESUME_TIMEOUT);
    /* The grace counts from the last snapshot before the kill. */
    cr_assert(lost - killed >= 2900ull * KZ_NS_PER_MS && lost - killed <= 3100ull * KZ_NS_PER_MS,
              "lost %.0f ms after the kill", (double)(lost - killed) / 1e6);
    cr_assert_eq(H[0].reconnecting, 1u);
    cr_assert_eq(H[0].disconnected, 1u);
    cr_assert_eq(net_counter(0, KZ_NETCLIENT_C_FAILOVERS_STARTED), 0u);
    cr_assert_eq(net_counter(0, KZ_NETCLIENT_C_FAILOVER_TRIED), 0u);
    cr_assert_eq(net_counter(0, KZ_NETCLIENT_C_RESUMES_TIMED_OUT), 1u);
    cr_assert_eq(kz_netclient_serial(kz_client_net(F.cl[0])), 1u);
    /* Under the same conditions, the client with a second address moved. */
    cr_assert_eq(kz_client_state(F.cl[1]), KZ_CLIENT_CONNECTED);
    cr_assert_eq(H[1].resumed, 1u);
    cr_assert_eq(kz_netclient_serial(kz_client_net(F.cl[1])), 2u);
    cr_assert_eq(fleet_counter(F.auth, KZ__FLEET_C_SESSIONS_REATTACHED), 1u);
    stop();
}

Test(failover, a_deny_from_the_next_address_moves_on_to_the_one_after_at_once)
{
    world_start(15000);
    for (uint32_t i = 0; i < EDGES; i++)
        F.cl[i] = client_on(i, EDGES);  /* client 0: edges 1, 2, 3 in this order */
    F.n = EDGES;
    wait_connected();
    walk(STEPS_PER_S / 2u);
    uint32_t self = kz_client_self_id(F.cl[0]);
    forget_events();
    /* Edge 2 takes no one new; edge 1 dies. */
    kz_netserver_set_refusal(kz_server_net(F.edge[1]), KZ_DENY_SHUTTING_DOWN);
    F.edge_alive[0] = 0;
    kz_time_ns killed = F.now, back = 0;
    for (uint32_t k = 0; k < 2u * STEPS_PER_S && !back; k++) {
        walk(1);
        take_events(NULL, 0, NULL);
        if (H[0].reconnecting && kz_client_state(F.cl[0]) == KZ_CLIENT_CONNECTED)
            back = F.now;
    }
    /* Edge 2's share would have been 2.5 s; the DENY moved on at once. */
    cr_assert(back, "client 0 is not back 2 s after the kill (state %u)", kz_client_state(F.cl[0]));
    cr_log_info("back %.0f ms after the kill", (double)(back - killed) / 1e6);
    const kz_netclient *nc = kz_client_net(F.cl[0]);
    cr_assert_eq(kz_netclient_server(nc, NULL), 2u, "not on the token's 3rd address");
    cr_assert_eq(net_counter(0, KZ_NETCLIENT_C_FAILOVER_ON_DENY), 1u);
    cr_assert_eq(net_counter(0, KZ_NETCLIENT_C_FAILOVER_ON_SILENCE), 0u);
    cr_assert_eq(net_counter(0, KZ_NETCLIENT_C_FAILOVER_TRIED), 2u);
    cr_assert_eq(kz_client_self_id(F.cl[0]), self);
    cr_assert_eq(H[0].resumed, 1u);
    cr_assert_eq(fleet_counter(F.auth, KZ__FLEET_C_SESSIONS_REATTACHED), 1u);
    stop();
}

Test(failover, a_world_that_still_holds_the_old_path_is_asked_again_until_it_lets_go)
{
    world_start(15000);
    R.on = 1;
    R.front = udp_open(&R.front_port);
    uint16_t ignored;
    R.back = udp_open(&ignored);
    R.edge_port = kz_server_port(F.edge[0]);
    /* Client 0 reaches edge 1 through the relay, then names edge 2;
     * client 1 watches from edge 3. */
    const uint32_t via_relay[2] = {EDGES, 1}, watcher[1] = {2};
    F.cl[0] = client_with(1, via_relay, 2);
    F.cl[1] = client_with(2, watcher, 1);
    F.n = 2;
    wait_connected();
    walk(STEPS_PER_S / 2u);
    cr_assert_eq(others_in_view(1), 1u);
    uint32_t self = kz_client_self_id(F.cl[0]);
    forget_events();
    /* The client's path to edge 1 breaks; edge 1 and the bus go on. Edge
     * 1 holds the session as live until KZ_DETACH_SILENCE_MS, so the
     * authority refuses the first JOINs through edge 2 (the new session
     * is kicked KZ_KICK_REPLACED) until edge 1 has detached it. */
    R.cut = 1;
    kz_time_ns cut = F.now, back = 0;
    uint32_t left = 0;
    for (uint32_t k = 0; k < 3u * STEPS_PER_S && !back; k++) {
        walk(1);
        take_events(&self, 1, &left);
        if (H[0].reconnecting && kz_client_state(F.cl[0]) == KZ_CLIENT_CONNECTED)
            back = F.now;
    }
    cr_assert(back, "client 0 is not back 3 s after its path broke (state %u)",
              kz_client_state(F.cl[0]));
    cr_log_info("back %.0f ms after the cut, %llu REPLACED", (double)(back - cut) / 1e6,
                (unsigned long long)net_counter(0, KZ_NETCLIENT_C_FAILOVER_REPLACED));
    cr_assert_geq(back - cut, (kz_time_ns)KZ_DETACH_SILENCE_MS * KZ_NS_PER_MS);
    cr_assert_geq(net_counter(0, KZ_NETCLIENT_C_FAILOVER_REPLACED), 1u);
    cr_assert_geq(fleet_counter(F.auth, KZ__FLEET_C_JOINS_IN_USE), 1u);
    cr_assert_eq(fleet_counter(F.auth, KZ__FLEET_C_SESSIONS_REATTACHED), 1u);
    cr_assert_eq(net_counter(0, KZ_NETCLIENT_C_FAILOVER_ON_END), 0u);
    cr_assert_eq(kz_netclient_server(kz_client_net(F.cl[0]), NULL), 1u);
    cr_assert_eq(kz_client_self_id(F.cl[0]), self);
    cr_assert_eq(H[0].resumed, 1u);
    cr_assert_eq(H[0].connected + H[0].leaves + H[0].enters, 0u);
    walk(STEPS_PER_S / 2u);
    take_events(&self, 1, &left);
    cr_assert_eq(left, 0u, "the watcher saw the avatar leave");
    cr_assert_eq(kz_client_state(F.cl[0]), KZ_CLIENT_CONNECTED);
    stop();
}

Test(failover, a_world_that_let_the_avatar_go_gives_a_fresh_start)
{
    /* The authority holds a lost edge's avatars for 300 ms only: they are
     * gone (at 0.8 s) before the client tries elsewhere (at 1.4 s). */
    world_start_holding(15000, 300);
    F.n = EDGES;  /* one client per edge; client 0 on edge 1, then 2, 3 */
    for (uint32_t i = 0; i < F.n; i++)
        F.cl[i] = client_on(i, EDGES);
    wait_connected();
    walk(STEPS_PER_S);
    cr_assert_eq(others_in_view(0), F.n - 1u);
    uint32_t old_self = kz_client_self_id(F.cl[0]);
    forget_events();
    F.edge_alive[0] = 0;
    uint32_t left = 0;
    for (uint32_t k = 0; k < 2u * STEPS_PER_S; k++) {
        walk(1);
        take_events(&old_self, 1, &left);
    }
    cr_assert_eq(fleet_counter(F.auth, KZ__FLEET_C_HELD_ENDED), 1u);
    cr_assert_eq(fleet_counter(F.auth, KZ__FLEET_C_SESSIONS_REATTACHED), 0u);
    cr_assert_eq(kz_client_state(F.cl[0]), KZ_CLIENT_CONNECTED);
    uint32_t new_self = kz_client_self_id(F.cl[0]);
    cr_assert(new_self && new_self != old_self, "self %u, was %u", new_self, old_self);
    cr_assert_eq(H[0].reconnecting, 1u);
    cr_assert_eq(H[0].resumed, 0u, "a new avatar was told as a resume");
    cr_assert_eq(H[0].connected, 1u);
    cr_assert_eq(H[0].leaves, F.n - 1u, "LEAVE for each of the %u in view, got %u", F.n - 1u,
                 H[0].leaves);
    /* The others saw the old avatar go (the world ended it). */
    cr_assert_eq(left, F.n - 1u);
    /* A fresh start: the new avatar walks, the others come into view. */
    kz_avatar_state a, b;
    cr_assert_eq(kz_server_entity(F.auth, new_self, &a), KZ_OK);
    walk(STEPS_PER_S);
    take_events(NULL, 0, NULL);
    cr_assert_eq(kz_server_entity(F.auth, new_self, &b), KZ_OK);
    cr_assert_gt(dist(a.pos, b.pos), 0.5f, "the new avatar does not move");
    cr_assert_eq(others_in_view(0), F.n - 1u);
    cr_assert_eq(H[0].enters, F.n - 1u);
    cr_assert_eq(kz_client_state(F.cl[0]), KZ_CLIENT_CONNECTED);
    stop();
}

/* ---- a single server that comes back ------------------------------------ */

/* What a bound UDP socket that answers nothing (udp_open) received: the
 * REQUESTs among it. */
static uint32_t quiet_requests(int fd)
{
    uint8_t buf[2048];
    uint32_t n = 0;
    ssize_t got;
    while ((got = recv(fd, buf, sizeof buf, 0)) >= 0)
        n += got == KZ_GATE_REQUEST_BYTES && buf[2] == KZ_GATE_REQUEST;
    return n;
}

Test(failover, a_server_that_answers_again_during_the_failover_keeps_its_session)
{
    memset(&F, 0, sizeof F);
    memset(H, 0, sizeof H);
    memset(&R, 0, sizeof R);
    cr_assert_eq(kzt_keys_make(&F.keys), KZ_OK);
    kz_server_config sc = world_config(4, 15000);
    kz_server *srv = kz_server_create(&sc);
    cr_assert_not_null(srv);
    uint16_t quiet_port;
    int quiet = udp_open(&quiet_port);
    /* The token: the server, then the silent socket. */
    F.edge[0] = srv;  /* edge_address(0) names it */
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = PROTO;
    t.create_time = (uint64_t)time(NULL) - 1;
    t.expire_time = t.create_time + 600;
    t.server_id = SERVER_ID;
    t.n_addresses = 2;
    t.addresses[0] = edge_address(0);
    t.addresses[1] = edge_address(0);
    t.addresses[1].port = quiet_port;
    t.client_id = 1;
    t.avatar_id = 1001;
    strcpy(t.name, "comes-back");
    strcpy(t.claims.method, "none");
    kz_connect_token ct;
    size_t len = 0;
    cr_assert_eq(kz_token_mint(&t, F.keys.backend.secret_key, F.keys.server.public_key, &ct.keys,
                               ct.token, sizeof ct.token, &len),
                 KZ_OK);
    ct.token_len = (uint16_t)len;
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.net.resume_silence_ms = 500;
    cc.net.log.level = KZ_LOG_WARN;
    kz_client *c = kz_client_create(&cc);
    cr_assert_not_null(c);
    cr_assert_eq(kz_client_connect(c, &ct, 1), KZ_OK);
    F.now = 1;
    for (uint32_t k = 0; k < 3000 && kz_client_state(c) != KZ_CLIENT_CONNECTED; k++) {
        F.now += STEP_NS;
        (void)kz_server_step(srv, F.now);
        (void)kz_client_update(c, F.now);
    }
    cr_assert_eq(kz_client_state(c), KZ_CLIENT_CONNECTED);
    uint32_t self = kz_client_self_id(c);
    for (uint32_t k = 0; k < STEPS_PER_S / 2u; k++) {
        F.now += STEP_NS;
        (void)kz_server_step(srv, F.now);
        (void)kz_client_update(c, F.now);
    }
    cr_assert_eq(quiet_requests(quiet), 0u);
    /* The server stalls for 1.2 s: the client resumes at 0.5 s, and from
     * 0.9 s also asks the silent second address. */
    for (uint32_t k = 0; k < 6u * STEPS_PER_S / 5u; k++) {
        F.now += STEP_NS;
        (void)kz_client_update(c, F.now);
    }
    cr_assert_eq(kz_client_state(c), KZ_CLIENT_RECONNECTING);
    const kz_netclient *nc = kz_client_net(c);
    const kz_counters *rc = kz_netclient_resume_counters(nc);
    cr_assert_eq(kz_counters_get(rc, KZ_NETCLIENT_C_FAILOVERS_STARTED), 1u);
    cr_assert_gt(quiet_requests(quiet), 0u, "the failover sent no REQUEST to the second address");
    /* It answers again: the session is back where it was. */
    for (uint32_t k = 0; k < STEPS_PER_S && kz_client_state(c) != KZ_CLIENT_CONNECTED; k++) {
        F.now += STEP_NS;
        (void)kz_server_step(srv, F.now);
        (void)kz_client_update(c, F.now);
    }
    cr_assert_eq(kz_client_state(c), KZ_CLIENT_CONNECTED);
    cr_assert_eq(kz_counters_get(rc, KZ_NETCLIENT_C_FAILOVERS_CANCELLED), 1u);
    cr_assert_eq(kz_netclient_serial(nc), 1u);
    cr_assert_eq(kz_netclient_server(nc, NULL), 0u);
    cr_assert_eq(kz_client_self_id(c), self);
    /* Nothing more goes to the second address. */
    (void)quiet_requests(quiet);
    for (uint32_t k = 0; k < STEPS_PER_S; k++) {
        F.now += STEP_NS;
        (void)kz_server_step(srv, F.now);
        (void)kz_client_update(c, F.now);
    }
    cr_assert_eq(quiet_requests(quiet), 0u);
    cr_assert_eq(kz_client_state(c), KZ_CLIENT_CONNECTED);
    kz_client_destroy(c);
    close(quiet);
    kz_server_destroy(srv);
}
