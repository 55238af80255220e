/*
 * One world on several processes, in one process: an authority and three
 * edges (sim/fleet.h) whose bus messages are passed in memory exactly as
 * the server program passes them over NATS (tick subject to every edge,
 * up to the authority with the edge's number, down to its edge), and
 * real clients on loopback, each connected to one edge:
 *   - every client sees every other avatar, whichever edge serves it, at
 *     the authority's position for the snapshot's tick (exact to the
 *     quantization: the edges' replicas are the authority's image);
 *   - chat reaches the clients near the speaker on every edge;
 *   - one client id has one session in the world: a second connect
 *     through another edge while the first talks is refused;
 *   - an edge that goes silent: the authority holds its sessions, nobody
 *     on the other edges sees them leave, and a client that comes back
 *     through another edge gets its own avatar back (same id, no leave).
 * Injected clock, single-threaded servers; bounded loops only.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kizuna/client.h>
#include <kizuna/server.h>

#include "sim/fleet_impl.h"
#include "support/loopback.h"
#include "support/world.h"

#define PROTO 0x4B5A464C45455431ull
#define SERVER_ID 91u
#define EDGES 3u
#define STEP_NS 2000000ull   /* 2 ms per pass */

typedef struct {
    kzt_keys keys;
    kz_server *auth;
    kz_server *edge[EDGES];
    int edge_alive[EDGES];
    int edge_cut[EDGES];          /* running, but its bus is down (NATS lost) */
    kz_client *cl[64];
    uint32_t n;
    kz_time_ns now;
    kzt_audit audit;             /* the authority's log */
} fleet;

static fleet F;

static kz_server_config world_config(uint32_t max_clients)
{
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    kzt_server_config(&sc.net, &F.keys, PROTO, SERVER_ID, max_clients);
    sc.net.gate_rate_per_ip = 20000;
    sc.net.log.level = KZ_LOG_WARN;
    sc.spawn_radius = 8.0f;   /* everyone within view of everyone */
    return sc;
}

static void pump(void)
{
    const kz__bus_msg *m;
    /* What the edges said goes up first, then what the authority said. */
    for (uint32_t e = 0; e < EDGES; e++) {
        uint32_t n = kz__fleet_out(F.edge[e], &m);
        for (uint32_t k = 0; k < n && F.edge_alive[e] && !F.edge_cut[e]; k++) {
            cr_assert_eq(m[k].subject, KZ_BUS_SUBJECT_UP);
            kz_bus_drop d = kz__fleet_receive(F.auth, KZ_BUS_SUBJECT_UP, e + 1u, m[k].data, m[k].len);
            cr_assert_eq(d, KZ_BUS_OK, "edge %u's message dropped: %d", e + 1u, d);
        }
        kz__fleet_out_clear(F.edge[e]);
    }
    uint32_t n = kz__fleet_out(F.auth, &m);
    for (uint32_t k = 0; k < n; k++)
        for (uint32_t e = 0; e < EDGES; e++) {
            if (!F.edge_alive[e] || F.edge_cut[e])
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
    for (uint32_t i = 0; i < F.n; i++)
        if (F.cl[i])
            (void)kz_client_update(F.cl[i], F.now);
}

static const char *g_role;     /* role of the next minted token (NULL: none) */

static int mint(uint64_t client_id, uint32_t edge, kz_connect_token *out)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = PROTO;
    t.create_time = (uint64_t)time(NULL) - 1;
    t.expire_time = t.create_time + 600;
    t.server_id = SERVER_ID;
    t.n_addresses = 1;
    t.addresses[0].family = KZ_ADDR_IPV4;
    t.addresses[0].ip[0] = 127;
    t.addresses[0].ip[3] = 1;
    t.addresses[0].port = kz_server_port(F.edge[edge]);
    t.client_id = client_id;
    t.avatar_id = client_id + 1000;
    snprintf(t.name, sizeof t.name, "fleet-%llu", (unsigned long long)client_id);
    strcpy(t.claims.method, "none");
    if (g_role) {
        t.n_roles = 1;
        snprintf(t.roles[0], sizeof t.roles[0], "%s", g_role);
    }
    size_t len = 0;
    int rc = kz_token_mint(&t, F.keys.backend.secret_key, F.keys.server.public_key, &out->keys,
                           out->token, sizeof out->token, &len);
    out->token_len = (uint16_t)len;
    return rc;
}

static kz_client *client_on(uint64_t client_id, uint32_t edge)
{
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.net.server.family = KZ_ADDR_IPV4;
    cc.net.server.ip[0] = 127;
    cc.net.server.ip[3] = 1;
    cc.net.server.port = kz_server_port(F.edge[edge]);
    cc.net.connect_timeout_ms = 30000;
    kz_client *c = kz_client_create(&cc);
    cr_assert_not_null(c);
    kz_connect_token ct;
    cr_assert_eq(mint(client_id, edge, &ct), KZ_OK);
    cr_assert_eq(kz_client_connect(c, &ct, 0), KZ_OK);
    return c;
}

static int moderator_first;     /* set before start: client 0 holds "moderator" */

static void start(uint32_t n)
{
    memset(&F, 0, sizeof F);
    cr_assert_eq(kzt_keys_make(&F.keys), KZ_OK);
    uint32_t max = n + 8u;
    kz_server_config sc = world_config(max);
    cr_assert_eq(kzt_audit_open(&F.audit), KZ_OK);
    sc.audit = F.audit.log;
    kz__fleet_config fc = {.role = KZ__ROLE_AUTHORITY, .world = kz_bus_world_hash("plaza"),
                           .instance = 0xA0, .started_ms = 1000, .hold_ms = 15000};
    F.auth = kz__fleet_server_create(&sc, &fc);
    cr_assert_not_null(F.auth);
    for (uint32_t e = 0; e < EDGES; e++) {
        sc = world_config(max);  /* an edge writes no audit log: the authority does */
        kz__fleet_config ec = {.role = KZ__ROLE_EDGE, .edge = e + 1u, .world = fc.world,
                               .instance = 0xE0 + e, .started_ms = 2000};
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
    F.n = n;
    for (uint32_t i = 0; i < n; i++) {
        g_role = i == 0 && moderator_first ? "moderator" : NULL;
        F.cl[i] = client_on(i + 1u, i % EDGES);
    }
    g_role = NULL;
    uint32_t connected = 0;
    for (uint32_t k = 0; k < 3000 && connected < n; k++) {
        step();
        connected = 0;
        for (uint32_t i = 0; i < n; i++)
            connected += kz_client_state(F.cl[i]) == KZ_CLIENT_CONNECTED;
    }
    cr_assert_eq(connected, n, "only %u of %u clients connected through the edges", connected, n);
}

static void stop(void)
{
    for (uint32_t i = 0; i < 64; i++)
        kz_client_destroy(F.cl[i]);
    for (uint32_t e = 0; e < EDGES; e++)
        kz_server_destroy(F.edge[e]);
    kz_server_destroy(F.auth);
    if (F.audit.log)
        (void)kzt_audit_close_count(&F.audit, KZ_AUDIT_CONNECT, 0, NULL);
}

static void walk(uint32_t ticks)
{
    for (uint32_t k = 0; k < ticks; k++) {
        for (uint32_t i = 0; i < F.n; i++) {
            if (!F.cl[i] || kz_client_state(F.cl[i]) != KZ_CLIENT_CONNECTED)
                continue;
            kz_avatar_state in;
            kz_avatar_state_rest(&in);
            float h = (float)i * 0.7f + (float)(k / 30u) * 1.3f;
            in.vel[0] = cosf(h) * 1.2f;
            in.vel[2] = sinf(h) * 1.2f;
            in.yaw = h;
            (void)kz_client_send_input(F.cl[i], &in);
        }
        step();
    }
}

static uint32_t notices(kz_client *c, uint32_t code);

static uint64_t counter(const kz_server *s, uint32_t id)
{
    return kz_counters_get(kz__fleet_counters(s), id);
}

/* Every client's view holds every other avatar, and each one's state at
 * the client's newest server tick is the authority's image of that tick. */
Test(fleet, clients_see_avatars_on_every_edge_at_the_authoritys_positions)
{
    start(12);
    walk(1000);  /* 2 s */
    for (uint32_t i = 0; i < F.n; i++) {
        kz_client_entity view[64];
        uint32_t n = kz_client_view(F.cl[i], view, 64);
        uint32_t self = kz_client_self_id(F.cl[i]);
        uint32_t others = 0;
        for (uint32_t k = 0; k < n; k++)
            others += view[k].id != self;
        cr_assert_eq(others, F.n - 1u, "client %u sees %u of the %u others", i, others, F.n - 1u);
        uint32_t t = kz_client_server_tick(F.cl[i]);
        cr_assert(t + F.auth->world.rows > F.auth->tick, "client %u is far behind", i);
        const kz_snap_state *row = F.auth->world.image_ring +
                                   (size_t)(t % F.auth->world.rows) * F.auth->world.cap;
        for (uint32_t k = 0; k < n; k++) {
            if (view[k].id == self)
                continue;
            uint32_t idx = view[k].id & KZ_ENTITY_MAX;
            cr_assert_eq(row[idx].entity, view[k].id);
            kz_avatar_state at;
            cr_assert_eq(kz_client_entity_at(F.cl[i], view[k].id, (double)t, &at), KZ_OK);
            kz_avatar_state want;
            kz_snap_dequantize(&F.auth->world.codec, &row[idx], &want);
            for (int a = 0; a < 3; a++)
                cr_assert(fabsf(at.pos[a] - want.pos[a]) < 1e-3f,
                          "client %u: entity %u axis %d at tick %u: %f, authority %f", i,
                          view[k].id, a, t, (double)at.pos[a], (double)want.pos[a]);
        }
    }
    cr_assert_eq(counter(F.auth, KZ__FLEET_C_DROP_MALFORMED), 0);
    cr_assert_eq(counter(F.edge[0], KZ__FLEET_C_GAP), 0);
    stop();
}

static int heard_chat(kz_client *c, const char *text)
{
    kz_client_event ev;
    int heard = 0;
    while (kz_client_poll_event(c, &ev) == KZ_OK)
        heard |= ev.type == KZ_EV_CHAT && ev.len == strlen(text) && !memcmp(ev.data, text, ev.len);
    return heard;
}

Test(fleet, chat_reaches_the_clients_near_the_speaker_on_every_edge)
{
    start(6);
    walk(30);
    for (uint32_t i = 0; i < F.n; i++)
        (void)heard_chat(F.cl[i], "");  /* drain */
    cr_assert_eq(kz_client_chat(F.cl[0], "hello plaza", 11), KZ_OK);
    int heard[6] = {0};
    for (uint32_t k = 0; k < 200; k++) {
        step();
        for (uint32_t i = 0; i < F.n; i++)
            heard[i] |= heard_chat(F.cl[i], "hello plaza");
    }
    for (uint32_t i = 0; i < F.n; i++)
        cr_assert(heard[i], "client %u (edge %u) did not hear the chat", i, i % EDGES + 1u);
    stop();
}

Test(fleet, one_client_id_has_one_session_in_the_world)
{
    start(3);
    walk(10);
    /* Client 1 talks through edge 1; the same id through edge 2 is refused. */
    F.cl[F.n] = client_on(1, 1);
    F.n++;
    uint32_t state = 0;
    for (uint32_t k = 0; k < 2000; k++) {
        walk(1);
        state = kz_client_state(F.cl[F.n - 1u]);
        if (state == KZ_CLIENT_DISCONNECTED || state == KZ_CLIENT_FAILED)
            break;
    }
    cr_assert(state == KZ_CLIENT_DISCONNECTED || state == KZ_CLIENT_FAILED,
              "a second session of one client id stayed (state %u)", state);
    cr_assert_eq(kz_client_state(F.cl[0]), KZ_CLIENT_CONNECTED, "the first session was hurt");
    cr_assert_eq(counter(F.auth, KZ__FLEET_C_JOINS_IN_USE), 1);
    stop();
}

static int saw_leave(kz_client *c, uint32_t id)
{
    kz_client_event ev;
    int left = 0;
    while (kz_client_poll_event(c, &ev) == KZ_OK)
        left |= ev.type == KZ_EV_LEAVE && ev.entity == id;
    return left;
}

Test(fleet, a_silent_edges_sessions_are_held_and_come_back_through_another_edge)
{
    start(6);
    walk(30);
    uint32_t lost = kz_client_self_id(F.cl[0]);  /* client 1, on edge 1 */
    for (uint32_t i = 0; i < F.n; i++)
        (void)saw_leave(F.cl[i], lost);
    /* Edge 1 dies: nothing more from or to it. */
    F.edge_alive[0] = 0;
    kz_client_destroy(F.cl[0]);
    kz_client_destroy(F.cl[3]);
    F.cl[0] = F.cl[3] = NULL;
    int left = 0;
    for (uint32_t k = 0; k < 600; k++) {  /* 1.2 s */
        walk(1);
        for (uint32_t i = 0; i < F.n; i++)
            if (F.cl[i])
                left |= saw_leave(F.cl[i], lost);
    }
    cr_assert_eq(counter(F.auth, KZ__FLEET_C_EDGES_LOST), 1);
    cr_assert_eq(counter(F.auth, KZ__FLEET_C_SESSIONS_HELD), 2);
    cr_assert_eq(left, 0, "a client on another edge saw the held avatar leave");
    /* Client 1 comes back through edge 2: the same avatar. */
    F.cl[0] = client_on(1, 1);
    uint32_t k = 0;
    for (; k < 3000 && kz_client_state(F.cl[0]) != KZ_CLIENT_CONNECTED; k++)
        walk(1);
    cr_assert_eq(kz_client_state(F.cl[0]), KZ_CLIENT_CONNECTED);
    walk(20);
    cr_assert_eq(kz_client_self_id(F.cl[0]), lost, "a new avatar instead of the held one");
    cr_assert_eq(counter(F.auth, KZ__FLEET_C_SESSIONS_REATTACHED), 1);
    for (uint32_t i = 0; i < F.n; i++)
        if (F.cl[i])
            left |= saw_leave(F.cl[i], lost);
    cr_assert_eq(left, 0);
    /* The audit log names the edge of every join and of the move, and
     * verifies. */
    kz_server_destroy(F.auth);
    F.auth = NULL;
    cr_assert_eq(kz_audit_close(F.audit.log), KZ_OK);
    F.audit.log = NULL;
    cr_assert_eq(kzt_audit_count(&F.audit, KZ_AUDIT_CONNECT, 0, "edge 1: none"), 2);
    cr_assert_eq(kzt_audit_count(&F.audit, KZ_AUDIT_CONNECT, 0, "edge 2: none"), 2);
    cr_assert_eq(kzt_audit_count(&F.audit, KZ_AUDIT_DETACH, 1, "edge 0"), 1);
    cr_assert_eq(kzt_audit_count(&F.audit, KZ_AUDIT_RESUME, 1, "edge 2"), 1);
    unlink(F.audit.path);
    stop();
}

/* The bus of edge 1 is down for 3 s (a NATS outage), the edge and its
 * clients run on: the authority holds its sessions meanwhile, and when
 * the bus is back the same edge's sessions are its own again: nobody is
 * kicked or seen to leave, and its clients walk on. */
Test(fleet, an_edge_back_from_a_bus_outage_keeps_its_clients)
{
    start(6);
    walk(30);
    uint32_t id0 = kz_client_self_id(F.cl[0]);
    for (uint32_t i = 0; i < F.n; i++)
        (void)saw_leave(F.cl[i], id0);
    F.edge_cut[0] = 1;
    uint32_t paused = 0, resumed = 0;
    for (uint32_t k = 0; k < 1500; k++) {  /* 3 s */
        walk(1);
        paused += notices(F.cl[0], KZ_NOTICE_WORLD_PAUSED);
    }
    cr_assert_eq(paused, 1, "the cut edge's client was told %u times that the world paused", paused);
    cr_assert_eq(counter(F.auth, KZ__FLEET_C_SESSIONS_HELD), 2);
    F.edge_cut[0] = 0;
    for (uint32_t k = 0; k < 1000; k++) {
        walk(1);
        resumed += notices(F.cl[0], KZ_NOTICE_WORLD_RESUMED);
    }
    cr_assert_eq(resumed, 1, "the world's return was told %u times", resumed);
    cr_assert_eq(counter(F.auth, KZ__FLEET_C_SESSIONS_REATTACHED), 2);
    int left = 0;
    for (uint32_t i = 0; i < F.n; i++) {
        cr_assert_eq(kz_client_state(F.cl[i]), KZ_CLIENT_CONNECTED, "client %u lost", i);
        left |= saw_leave(F.cl[i], id0);
    }
    cr_assert_eq(left, 0, "an avatar of the cut edge was seen to leave");
    kz_avatar_state a, b;
    cr_assert_eq(kz_client_self(F.cl[0], &a), KZ_OK);
    walk(200);
    cr_assert_eq(kz_client_self(F.cl[0], &b), KZ_OK);
    cr_assert(fabsf(a.pos[0] - b.pos[0]) + fabsf(a.pos[2] - b.pos[2]) > 0.1f,
              "the edge's client no longer moves after the outage");
    stop();
}

static int in_view(kz_client *c, uint32_t id)
{
    kz_client_entity view[64];
    uint32_t n = kz_client_view(c, view, 64);
    for (uint32_t k = 0; k < n; k++)
        if (view[k].id == id)
            return 1;
    return 0;
}

static uint32_t notices(kz_client *c, uint32_t code)
{
    kz_client_event ev;
    uint32_t n = 0;
    while (kz_client_poll_event(c, &ev) == KZ_OK)
        n += ev.type == KZ_EV_NOTICE && ev.code == code;
    return n;
}

/* The rules the replicators apply hold across edges: a block between
 * clients of two other edges, an observer on one edge announced to the
 * watched on the others and seen by none, a moderator's kick of a client
 * served elsewhere. */
Test(fleet, blocks_observers_and_kicks_work_across_edges)
{
    moderator_first = 1;
    start(6);
    moderator_first = 0;
    walk(100);
    uint32_t mod = kz_client_self_id(F.cl[0]);     /* edge 1 */
    uint32_t b = kz_client_self_id(F.cl[1]);       /* edge 2 */
    uint32_t c = kz_client_self_id(F.cl[2]);       /* edge 3 */
    uint32_t v = kz_client_self_id(F.cl[5]);       /* edge 3 */
    cr_assert(in_view(F.cl[1], c) && in_view(F.cl[2], b));
    /* b blocks c: neither sees the other; the moderator still sees both. */
    cr_assert_eq(kz_client_block(F.cl[1], c, 1), KZ_OK);
    walk(100);
    cr_assert(!in_view(F.cl[1], c), "the blocker still sees the blocked client");
    cr_assert(!in_view(F.cl[2], b), "the blocked client still sees the blocker");
    cr_assert(in_view(F.cl[0], b) && in_view(F.cl[0], c), "a block hid others too");
    /* Observer mode on edge 1: nobody sees the moderator, everyone it
     * sees is told, on every edge. */
    for (uint32_t i = 0; i < F.n; i++)
        (void)notices(F.cl[i], 0);
    cr_assert_eq(kz_client_admin(F.cl[0], KZ_ADMIN_OBSERVE_ON, 0), KZ_OK);
    uint32_t told[6] = {0};
    for (uint32_t k = 0; k < 100; k++) {
        walk(1);
        for (uint32_t i = 1; i < F.n; i++)
            told[i] += notices(F.cl[i], 4 /* KZ_NOTICE_OBSERVED */);
    }
    for (uint32_t i = 1; i < F.n; i++) {
        cr_assert_geq(told[i], 1, "client %u (edge %u) was not told it is observed", i,
                      i % EDGES + 1u);
        cr_assert(!in_view(F.cl[i], mod), "client %u still sees the observer", i);
    }
    cr_assert(in_view(F.cl[0], v), "the observer no longer sees");
    /* The moderator kicks a client served by edge 3. */
    cr_assert_eq(kz_client_admin(F.cl[0], KZ_ADMIN_KICK, v), KZ_OK);
    for (uint32_t k = 0; k < 500 && kz_client_state(F.cl[5]) == KZ_CLIENT_CONNECTED; k++)
        walk(1);
    cr_assert_eq(kz_client_state(F.cl[5]), KZ_CLIENT_DISCONNECTED);
    cr_assert_eq(kz_client_reason(F.cl[5]), KZ_KICK_ADMIN);
    walk(200);
    cr_assert(!in_view(F.cl[1], v), "the kicked avatar is still in the world");
    stop();
}

/* A private zone set at the authority hides its inside from the outside
 * and the other way round, for clients of every edge: the replicas carry
 * each avatar's zone. */
Test(fleet, a_private_zone_hides_across_edges)
{
    start(6);
    walk(50);
    kz_zone_def z;
    memset(&z, 0, sizeof z);
    snprintf(z.name, sizeof z.name, "backstage");
    z.shape = KZ_ZONE_SPHERE;
    z.half[0] = 20.0f;
    z.is_private = 1;
    z.clients[0] = 1;  /* edge 1 */
    z.clients[1] = 2;  /* edge 2 */
    cr_assert_eq(kz_server_zone_set(F.auth, &z), KZ_OK);
    for (uint32_t k = 0; k < 300; k++)
        step();  /* no input: the outsiders are moved out and stay */
    uint32_t id[6];
    for (uint32_t i = 0; i < 6; i++)
        id[i] = kz_client_self_id(F.cl[i]);
    cr_assert(in_view(F.cl[0], id[1]) && in_view(F.cl[1], id[0]), "insiders do not see each other");
    for (uint32_t out = 2; out < 6; out++)
        for (uint32_t in = 0; in < 2; in++) {
            cr_assert(!in_view(F.cl[out], id[in]), "outsider %u (edge %u) sees insider %u", out,
                      out % EDGES + 1u, in);
            cr_assert(!in_view(F.cl[in], id[out]), "insider %u sees outsider %u", in, out);
        }
    cr_assert(in_view(F.cl[2], id[3]) && in_view(F.cl[3], id[4]), "outsiders lost each other");
    stop();
}
