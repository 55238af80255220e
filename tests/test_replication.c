/*
 * Replication's promises, end to end on loopback:
 *   - the transport's direct send (kz__netserver_send_now) delivers a
 *     sealed message only to the session it was prepared for: a serial of
 *     an ended session, serial 0, a host that does not serve the session,
 *     a bad slot, channel or length are refused, counted where the
 *     contract says, and nothing reaches the slot's next holder;
 *   - an observer's presence is announced to the owner of every avatar it
 *     sees, whether in view when observing starts, entering later, seen
 *     for a single frame or spawned into view, once per stay in view;
 *   - blocks hold while either side of the pair is being kicked (its
 *     avatar stays in the world until the session is gone), also when the
 *     block and the kick fall between the same two ticks;
 *   - single-threaded mode never waits for or skips a replication frame,
 *     and baseline entries whose states left the image ring are counted
 *     while every client keeps decoding its snapshots;
 *   - threaded mode with two I/O hosts and a visibility hook: every client
 *     keeps receiving snapshots, the hook runs on the I/O threads only,
 *     and a pair it refuses in either direction never appears.
 *   - a new client's welcome reaches it before any snapshot;
 *   - a late client on a tiny budget keeps every avatar in range in view.
 * Single-threaded worlds run on an injected clock, deterministic; the
 * threaded one and the transport run on the real clock with bounded waits
 * used only as timeouts, never as measurements.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <kizuna/entity.h>
#include <kizuna/transport.h>

#include "net/netserver_work.h"
#include "sim/server_impl.h"
#include "support/world.h"

/* ---- the transport's direct send ------------------------------------------ */

#define NET_PROTO 0x4b5a524550540001ull
#define NET_SERVER_ID 14u
#define NET_TYPE 0x5au            /* application message type of the test's sends */
#define NET_WAIT_MS 3000          /* liveness timeout for a connect or a delivery */
#define NET_QUIET_MS 250          /* how long "nothing arrives" is watched */
#define NET_KEPT 8u               /* received messages kept for inspection */

typedef struct {
    uint8_t channel, type;
    uint32_t len;
    uint8_t data[KZ_MAX_MESSAGE_BYTES];
} net_copy;

/* What the application side saw: the newest session's slot, host and
 * serial, and how many sessions opened and ended. */
typedef struct {
    uint32_t slot, host, serial;
    uint32_t connects, disconnects;
} net_app;

typedef struct {
    kzt_keys keys;
    kz_netserver *srv;
    kz_clock clock;
    net_app app;
    uint32_t received;            /* messages the client under watch received */
    net_copy kept[NET_KEPT];
} net_bed;

static net_bed nb;

static void net_start(uint32_t io_threads, uint32_t max_clients)
{
    memset(&nb, 0, sizeof nb);
    cr_assert_eq(kzt_keys_make(&nb.keys), KZ_OK);
    nb.clock = kz_clock_system();
    kz_netserver_config cfg;
    kzt_server_config(&cfg, &nb.keys, NET_PROTO, NET_SERVER_ID, max_clients);
    cfg.io_threads = io_threads;   /* single-threaded: all hosts on this thread */
    cfg.ring_capacity = 256;
    nb.srv = kz_netserver_create(&cfg);
    cr_assert_not_null(nb.srv);
    cr_assert_eq(kz__netserver_hosts(nb.srv), io_threads);
}

static kz_netclient *net_client(uint64_t client_id)
{
    kz_connect_token ct;
    cr_assert_eq(kzt_mint(&nb.keys, NET_PROTO, NET_SERVER_ID, kz_netserver_port(nb.srv),
                          client_id, &ct),
                 KZ_OK);
    kz_netclient_config cc;
    memset(&cc, 0, sizeof cc);
    kz_netclient *c = kz_netclient_create(&cc, &ct);
    cr_assert_not_null(c);
    return c;
}

/* The application's poll: records session starts and ends. */
static void net_poll_app(void)
{
    kz_netmsg m;
    while (kz_netserver_poll(nb.srv, &m) == KZ_OK) {
        if (m.kind == KZ_NETMSG_CONNECT) {
            nb.app.slot = m.slot;
            nb.app.host = kz__netserver_polled_host(nb.srv);
            nb.app.serial = kz__netserver_polled_serial(nb.srv);
            nb.app.connects++;
        } else if (m.kind == KZ_NETMSG_DISCONNECT) {
            nb.app.disconnects++;
        }
    }
}

/* One pass: the server's hosts, optionally the application's poll, and
 * the client under watch (NULL: none), whose messages are kept. */
static void net_pass(kz_netclient *c, int poll_app)
{
    kz_time_ns now = kz_clock_now(&nb.clock);
    kz_netserver_service(nb.srv, now);
    if (poll_app)
        net_poll_app();
    if (c) {
        kz_netclient_update(c, now);
        kz_netmsg m;
        while (kz_netclient_poll(c, &m) == KZ_OK) {
            if (nb.received < NET_KEPT) {
                net_copy *k = &nb.kept[nb.received];
                k->channel = m.channel;
                k->type = m.type;
                k->len = m.len;
                memcpy(k->data, m.data, m.len <= sizeof k->data ? m.len : sizeof k->data);
            }
            nb.received++;
        }
    }
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
}

/* Passes until `done` holds or `ms` of real time passed (a timeout, not a
 * measurement); returns whether it held. */
static int net_until(kz_netclient *c, int poll_app, int ms, int (*done)(kz_netclient *))
{
    kz_time_ns end = kz_clock_now(&nb.clock) + (kz_time_ns)ms * KZ_NS_PER_MS;
    while (kz_clock_now(&nb.clock) < end) {
        net_pass(c, poll_app);
        if (done && done(c))
            return 1;
    }
    return done == NULL;
}

static uint32_t want_connects;

static int session_open(kz_netclient *c)
{
    return kz_netclient_state(c) == KZ_NETCLIENT_CONNECTED && nb.app.connects >= want_connects;
}

static int one_disconnect(kz_netclient *c)
{
    (void)c;
    return nb.app.disconnects >= 1;
}

static uint64_t net_cell(uint32_t host, uint32_t id);

static int a_session_closed(kz_netclient *c)
{
    (void)c;
    return net_cell(nb.app.host, KZ_NET_C_SESSIONS_CLOSED) >= 1;
}

static uint32_t want_received;

static int got_enough(kz_netclient *c)
{
    (void)c;
    return nb.received >= want_received;
}

static uint64_t net_cell(uint32_t host, uint32_t id)
{
    return kz_counters_block(kz_netserver_counters(nb.srv), host).cells[id];
}

static uint64_t net_total(uint32_t id)
{
    return kz_counters_get(kz_netserver_counters(nb.srv), id);
}

/* Opens a session for `c` and returns once the application polled its
 * CONNECT (the serial is known). */
static void net_open(kz_netclient *c)
{
    want_connects = nb.app.connects + 1u;
    cr_assert(net_until(c, 1, NET_WAIT_MS, session_open), "the session opened");
    cr_assert_neq(nb.app.serial, 0, "a session's serial is never 0");
    cr_assert_eq(nb.app.slot, kz_netclient_slot(c), "the client and the app agree on the slot");
}

static void expect_kept(uint32_t k, uint8_t channel, const void *data, uint32_t len)
{
    cr_assert_lt(k, NET_KEPT);
    cr_assert_eq(nb.kept[k].channel, channel, "message %u on channel %u", k, nb.kept[k].channel);
    cr_assert_eq(nb.kept[k].type, NET_TYPE);
    cr_assert_eq(nb.kept[k].len, len, "message %u is %u bytes, not %u", k, nb.kept[k].len, len);
    cr_assert(memcmp(nb.kept[k].data, data, len) == 0, "message %u arrived intact", k);
}

Test(replication, a_send_for_an_ended_session_never_reaches_the_slots_next_holder, .timeout = 60)
{
    net_start(1, 1);  /* one slot: the next client must take the same one */
    kz_netclient *a = net_client(401);
    net_open(a);
    const uint32_t slot = nb.app.slot, host = nb.app.host, serial_a = nb.app.serial;

    /* The right serial: A gets the sealed message. */
    static const char for_a[] = "snapshot for A";
    cr_assert_eq(kz__netserver_send_now(nb.srv, host, slot, serial_a, KZ_CHANNEL_SNAPSHOT,
                                        NET_TYPE, for_a, sizeof for_a),
                 KZ_OK);
    want_received = 1;
    cr_assert(net_until(a, 1, NET_WAIT_MS, got_enough), "A received its message");
    expect_kept(0, KZ_CHANNEL_SNAPSHOT, for_a, sizeof for_a);

    /* A leaves. Once the host has closed the session, and before the
     * application has seen the DISCONNECT, A's serial is already refused. */
    kz_netclient_destroy(a);
    cr_assert(net_until(NULL, 0, NET_WAIT_MS, a_session_closed), "the host noticed A leave");
    uint64_t drops = net_cell(host, KZ_NET_C_DROP_NO_SESSION), tx = net_total(KZ_NET_C_TX_PACKETS);
    cr_assert_eq(kz__netserver_send_now(nb.srv, host, slot, serial_a, KZ_CHANNEL_SNAPSHOT,
                                        NET_TYPE, for_a, sizeof for_a),
                 KZ_ESTATE);
    cr_assert_eq(net_cell(host, KZ_NET_C_DROP_NO_SESSION), drops + 1u);
    cr_assert(net_until(NULL, 1, NET_WAIT_MS, one_disconnect), "the app saw A's DISCONNECT");

    /* B takes the slot with a new serial. */
    kz_netclient *b = net_client(402);
    nb.received = 0;
    net_open(b);
    cr_assert_eq(nb.app.slot, slot, "B holds A's old slot");
    cr_assert_neq(nb.app.serial, serial_a, "B's session has its own serial");
    const uint32_t serial_b = nb.app.serial;
    const uint32_t host_b = nb.app.host;

    /* A snapshot (and an event) prepared for A's session: refused, counted
     * as drop_no_session, nothing handed to ENet. */
    static const char stale[] = "stale: prepared for A";
    drops = net_cell(host_b, KZ_NET_C_DROP_NO_SESSION);
    tx = net_total(KZ_NET_C_TX_PACKETS);
    cr_assert_eq(kz__netserver_send_now(nb.srv, host_b, slot, serial_a, KZ_CHANNEL_SNAPSHOT,
                                        NET_TYPE, stale, sizeof stale),
                 KZ_ESTATE);
    cr_assert_eq(kz__netserver_send_now(nb.srv, host_b, slot, serial_a, KZ_CHANNEL_EVENT,
                                        NET_TYPE, stale, sizeof stale),
                 KZ_ESTATE);
    cr_assert_eq(net_cell(host_b, KZ_NET_C_DROP_NO_SESSION), drops + 2u);
    cr_assert_eq(net_total(KZ_NET_C_TX_PACKETS), tx, "nothing was handed to ENet");
    (void)net_until(b, 1, NET_QUIET_MS, NULL);
    cr_assert_eq(nb.received, 0, "B received %u messages meant for A", nb.received);

    /* B's own serial: delivered, and it is the only message B ever got. */
    static const char for_b[] = "snapshot for B";
    cr_assert_eq(kz__netserver_send_now(nb.srv, host_b, slot, serial_b, KZ_CHANNEL_SNAPSHOT,
                                        NET_TYPE, for_b, sizeof for_b),
                 KZ_OK);
    want_received = 1;
    cr_assert(net_until(b, 1, NET_WAIT_MS, got_enough), "B received its message");
    (void)net_until(b, 1, NET_QUIET_MS, NULL);
    cr_assert_eq(nb.received, 1, "B received exactly its own message (%u)", nb.received);
    expect_kept(0, KZ_CHANNEL_SNAPSHOT, for_b, sizeof for_b);
    kz_netclient_destroy(b);
    kz_netserver_destroy(nb.srv);
}

/* One refused call: its return code, and whether drop_no_session counts
 * it (on the host named, when that host exists). */
typedef struct {
    const char *what;
    uint32_t host, slot, serial;
    uint8_t channel;
    uint32_t len;
    int rc;
    int counted;
} refusal;

Test(replication, send_now_refuses_bad_arguments_and_foreign_sessions_without_sending,
     .timeout = 60)
{
    enum { HOSTS = 2, SLOTS = 4 };
    net_start(HOSTS, SLOTS);
    kz_netclient *c = net_client(501);
    net_open(c);
    const uint32_t slot = nb.app.slot, host = nb.app.host, serial = nb.app.serial;
    cr_assert_lt(host, HOSTS);
    const uint32_t other = (host + 1u) % HOSTS;
    static uint8_t big[KZ_MAX_MESSAGE_BYTES + 1u];
    for (uint32_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7u + 3u);

    const refusal cases[] = {
        {"serial 0", host, slot, 0, KZ_CHANNEL_SNAPSHOT, 16, KZ_ESTATE, 1},
        {"a guessed next serial", host, slot, serial + 1u, KZ_CHANNEL_SNAPSHOT, 16, KZ_ESTATE, 1},
        {"all-ones serial", host, slot, UINT32_MAX, KZ_CHANNEL_SNAPSHOT, 16, KZ_ESTATE, 1},
        {"a host that does not serve it", other, slot, serial, KZ_CHANNEL_SNAPSHOT, 16, KZ_ESTATE, 1},
        {"an empty slot", host, (slot + 1u) % SLOTS, serial, KZ_CHANNEL_SNAPSHOT, 16, KZ_ESTATE, 1},
        {"host past the last", HOSTS, slot, serial, KZ_CHANNEL_SNAPSHOT, 16, KZ_EINVAL, 0},
        {"host all ones", UINT32_MAX, slot, serial, KZ_CHANNEL_SNAPSHOT, 16, KZ_EINVAL, 0},
        {"slot past the last", host, SLOTS, serial, KZ_CHANNEL_SNAPSHOT, 16, KZ_EINVAL, 0},
        {"slot all ones", host, UINT32_MAX, serial, KZ_CHANNEL_SNAPSHOT, 16, KZ_EINVAL, 0},
        {"channel past the last", host, slot, serial, KZ_CHANNEL_COUNT, 16, KZ_EINVAL, 0},
        {"channel 255", host, slot, serial, 255, 16, KZ_EINVAL, 0},
        {"one byte over the limit", host, slot, serial, KZ_CHANNEL_EVENT, KZ_MAX_MESSAGE_BYTES + 1u,
         KZ_EINVAL, 0},
        {"length all ones", host, slot, serial, KZ_CHANNEL_EVENT, UINT32_MAX, KZ_EINVAL, 0},
    };
    const uint64_t tx = net_total(KZ_NET_C_TX_PACKETS);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const refusal *r = &cases[k];
        uint64_t drops[HOSTS];
        for (uint32_t h = 0; h < HOSTS; h++)
            drops[h] = net_cell(h, KZ_NET_C_DROP_NO_SESSION);
        int rc = kz__netserver_send_now(nb.srv, r->host, r->slot, r->serial, r->channel, NET_TYPE,
                                        big, r->len);
        cr_assert_eq(rc, r->rc, "%s: returned %d, not %d", r->what, rc, r->rc);
        for (uint32_t h = 0; h < HOSTS; h++) {
            uint64_t want = drops[h] + (r->counted && h == r->host ? 1u : 0u);
            cr_assert_eq(net_cell(h, KZ_NET_C_DROP_NO_SESSION), want,
                         "%s: drop_no_session of host %u", r->what, h);
        }
        cr_assert_eq(net_total(KZ_NET_C_TX_PACKETS), tx, "%s: a packet was handed to ENet", r->what);
    }
    nb.received = 0;
    (void)net_until(c, 1, NET_QUIET_MS, NULL);
    cr_assert_eq(nb.received, 0, "a refused send reached the client");

    /* The right host, slot and serial: a small snapshot and a message of
     * the largest length allowed both arrive sealed and intact. */
    static const char small[] = "the real one";
    cr_assert_eq(kz__netserver_send_now(nb.srv, host, slot, serial, KZ_CHANNEL_SNAPSHOT, NET_TYPE,
                                        small, sizeof small),
                 KZ_OK);
    cr_assert_eq(kz__netserver_send_now(nb.srv, host, slot, serial, KZ_CHANNEL_EVENT, NET_TYPE, big,
                                        KZ_MAX_MESSAGE_BYTES),
                 KZ_OK);
    want_received = 2;
    cr_assert(net_until(c, 1, NET_WAIT_MS, got_enough), "both arrived (%u did)", nb.received);
    (void)net_until(c, 1, NET_QUIET_MS, NULL);
    cr_assert_eq(nb.received, 2);
    uint32_t snap = nb.kept[0].channel == KZ_CHANNEL_SNAPSHOT ? 0u : 1u;
    expect_kept(snap, KZ_CHANNEL_SNAPSHOT, small, sizeof small);
    expect_kept(1u - snap, KZ_CHANNEL_EVENT, big, KZ_MAX_MESSAGE_BYTES);
    kz_netclient_destroy(c);
    kz_netserver_destroy(nb.srv);
}

/* ---- worlds on the injected clock ------------------------------------------ */

#define STEP_NS (KZ_NS_PER_S / 120)   /* four steps per 30 Hz tick */
#define CONNECT_NS (20 * KZ_NS_PER_S)
#define VIEW_CAP 128u

static kzt_world w;

static kz_server_config world_config(void)
{
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    return sc;
}

/* Starts `n` clients (keeping w.moderators and w.spare as set). */
static void world_start(uint32_t n, const kz_server_config *sc, uint64_t seed)
{
    cr_assert_eq(kzt_world_start(&w, n, NULL, sc, seed), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, CONNECT_NS), n);
}

static void run_ticks(uint32_t ticks)
{
    uint32_t end = kz_server_tick(w.srv) + ticks;
    while (kz_server_tick(w.srv) < end)
        kzt_world_step(&w, STEP_NS);
}

static void walk(uint32_t i, float vx, float vz)
{
    kz_avatar_state in;
    kz_avatar_state_rest(&in);
    in.vel[0] = vx;
    in.vel[2] = vz;
    cr_assert_eq(kz_client_send_input(w.clients[i], &in), KZ_OK);
}

static uint32_t id_of(uint32_t i)
{
    uint32_t id = kz_client_self_id(w.clients[i]);
    cr_assert_neq(id, 0, "client %u has an avatar", i);
    return id;
}

/* The server's own record of client c's view (the view its snapshots are
 * built from, as the replicator left it after the last tick): exact in
 * single-threaded mode, read through atomics in threaded mode. */
static int server_sees_c(const kz_client *c, uint32_t target)
{
    uint32_t slot = kz_netclient_slot(kz_client_net(c));
    return kz__seen(w.srv, slot, target & KZ_ENTITY_MAX);
}

static int server_sees(uint32_t viewer, uint32_t target)
{
    return server_sees_c(w.clients[viewer], target);
}

/* What client c shows: the entity is in its view at render time or in the
 * newest snapshot it applied. */
static int client_sees_c(const kz_client *c, uint32_t target)
{
    kz_client_entity view[VIEW_CAP];
    uint32_t n = kz_client_view(c, view, VIEW_CAP);
    for (uint32_t k = 0; k < n && k < VIEW_CAP; k++)
        if (view[k].id == target)
            return 1;
    kz_avatar_state st;
    return kz_client_entity_at(c, target, kz_client_server_tick(c), &st) == KZ_OK;
}

static int client_sees(uint32_t viewer, uint32_t target)
{
    return client_sees_c(w.clients[viewer], target);
}

static uint64_t world_counter(uint32_t id)
{
    return kz_counters_get(kz_server_counters(w.srv), id);
}

/* ---- observers ----------------------------------------------------------- */

#define OBS_CLIENTS 5u      /* 0 observes; 1, 2 near it; 3 enters later; 4 for one frame */
#define OBS_NEWCOMER 5u     /* index of the client that connects while observed */
#define OBS_NAME "test-1"   /* the observer's badge name (client id 1) */

static uint32_t observed[OBS_CLIENTS + 1];   /* KZ_NOTICE_OBSERVED per client */
static kz_client *newcomer;

static void count_notices(uint32_t i, kz_client *c)
{
    kz_client_event ev;
    while (kz_client_poll_event(c, &ev) == KZ_OK) {
        if (ev.type != KZ_EV_NOTICE || ev.code != KZ_NOTICE_OBSERVED)
            continue;
        cr_assert_eq(ev.len, strlen(OBS_NAME), "the notice names the observer");
        cr_assert(memcmp(ev.data, OBS_NAME, ev.len) == 0, "the notice names the observer");
        observed[i]++;
    }
}

/* One step of the world, the newcomer (once it exists) and every client's
 * notices. */
static void obs_step(void)
{
    kzt_world_step(&w, STEP_NS);
    if (newcomer)
        (void)kz_client_update(newcomer, w.now);
    for (uint32_t i = 0; i < OBS_CLIENTS; i++)
        count_notices(i, w.clients[i]);
    if (newcomer)
        count_notices(OBS_NEWCOMER, newcomer);
}

static void obs_ticks(uint32_t ticks)
{
    uint32_t end = kz_server_tick(w.srv) + ticks;
    while (kz_server_tick(w.srv) < end)
        obs_step();
}

/* A private zone of radius 4 m around avatar i: hides it from everyone
 * outside. */
static kz_zone_def hiding_zone(const char *name, uint32_t i)
{
    kz_avatar_state st;
    cr_assert_eq(kz_server_entity(w.srv, id_of(i), &st), KZ_OK);
    kz_zone_def z;
    memset(&z, 0, sizeof z);
    snprintf(z.name, sizeof z.name, "%s", name);
    z.shape = KZ_ZONE_SPHERE;
    memcpy(z.center, st.pos, sizeof z.center);
    z.half[0] = 4.0f;
    z.is_private = 1;
    return z;
}

static kz_client *connect_newcomer(uint64_t client_id)
{
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.net.server.family = KZ_ADDR_IPV4;
    cc.net.server.ip[0] = 127;
    cc.net.server.ip[3] = 1;
    cc.net.server.port = kz_server_port(w.srv);
    kz_client *c = kz_client_create(&cc);
    cr_assert_not_null(c);
    kz_connect_token ct;
    cr_assert_eq(kzt_world_mint(&w, client_id, &ct), KZ_OK);
    cr_assert_eq(kz_client_connect(c, &ct, w.now), KZ_OK);
    return c;
}

Test(replication, an_observer_is_announced_once_per_stay_to_everyone_it_sees, .timeout = 120)
{
    memset(&w, 0, sizeof w);
    memset(observed, 0, sizeof observed);
    newcomer = NULL;
    w.moderators = 1;   /* client 0 may observe */
    w.spare = 1;        /* room for the newcomer */
    kz_server_config sc = world_config();
    sc.interest_period = 1;   /* a view follows the world every frame */
    world_start(OBS_CLIENTS, &sc, 21);
    const uint32_t obs = id_of(0), near1 = id_of(1), near2 = id_of(2), later = id_of(3),
                   blink = id_of(4);
    run_ticks(20);

    /* 3 and 4 walk about 18 m away (still within the observer's 50 m) and
     * hide in private zones of their own. */
    walk(3, 6.0f, 0.0f);
    walk(4, -6.0f, 0.0f);
    run_ticks(90);
    walk(3, 0, 0);
    walk(4, 0, 0);
    run_ticks(10);
    kz_zone_def hide3 = hiding_zone("hide3", 3), hide4 = hiding_zone("hide4", 4);
    cr_assert_eq(kz_server_zone_set(w.srv, &hide3), KZ_OK);
    cr_assert_eq(kz_server_zone_set(w.srv, &hide4), KZ_OK);
    obs_ticks(5);
    cr_assert(server_sees(0, near1) && server_sees(0, near2), "the observer-to-be sees 1 and 2");
    cr_assert(!server_sees(0, later) && !server_sees(0, blink), "3 and 4 are hidden");
    for (uint32_t i = 0; i < OBS_CLIENTS; i++)
        cr_assert_eq(observed[i], 0, "client %u told before anyone observed", i);

    /* Observing starts: those in view are told. */
    cr_assert_eq(kz_client_admin(w.clients[0], KZ_ADMIN_OBSERVE_ON, 0), KZ_OK);
    obs_ticks(15);
    cr_assert_eq(observed[1], 1, "client 1, in view when observing started (told %u times)",
                 observed[1]);
    cr_assert_eq(observed[2], 1, "client 2, in view when observing started (told %u times)",
                 observed[2]);
    cr_assert_eq(observed[3] + observed[4], 0, "hidden clients are not told");
    cr_assert(!server_sees(1, obs) && !server_sees(2, obs), "nobody sees the observer");

    /* 3 comes into view later and stays. */
    cr_assert_eq(kz_server_zone_remove(w.srv, "hide3"), KZ_OK);
    obs_ticks(15);
    cr_assert(server_sees(0, later), "3 came into view");
    cr_assert_eq(observed[3], 1, "client 3, which came into view later (told %u times)",
                 observed[3]);

    /* 4 is in view for exactly one frame: its zone is lifted for one tick. */
    cr_assert_eq(kz_server_zone_remove(w.srv, "hide4"), KZ_OK);
    obs_ticks(1);
    cr_assert(server_sees(0, blink), "4 is in view in this frame");
    cr_assert_eq(kz_server_zone_set(w.srv, &hide4), KZ_OK);
    obs_ticks(1);
    cr_assert(!server_sees(0, blink), "and out of it in the next");
    obs_ticks(15);
    cr_assert(!server_sees(0, blink), "4 stays hidden");
    cr_assert_eq(observed[4], 1, "client 4, in view for a single frame (told %u times)",
                 observed[4]);

    /* A newcomer spawns into view while observed. */
    newcomer = connect_newcomer(6);
    for (int k = 0; k < 2400 && kz_client_state(newcomer) != KZ_CLIENT_CONNECTED; k++)
        obs_step();
    cr_assert_eq(kz_client_state(newcomer), KZ_CLIENT_CONNECTED);
    obs_ticks(15);
    cr_assert(server_sees_c(w.clients[0], kz_client_self_id(newcomer)),
              "the newcomer spawned in view");
    cr_assert_eq(observed[OBS_NEWCOMER], 1, "the newcomer (told %u times)", observed[OBS_NEWCOMER]);

    /* A long continuous stay, with moves, and a summon next to the
     * observer (a jump within view): nobody is told again. */
    cr_assert_eq(kz_client_admin(w.clients[0], KZ_ADMIN_SUMMON, later), KZ_OK);
    walk(1, 1.0f, 0.5f);
    walk(2, -0.5f, 1.0f);
    for (uint32_t t = 0; t < 120; t++) {
        obs_ticks(1);
        cr_assert(server_sees(0, near1) && server_sees(0, near2) && server_sees(0, later),
                  "the stay in view is continuous (tick %u)", t);
    }
    cr_assert_geq(world_counter(KZ_WORLD_C_ADMIN_DONE), 2, "observe and summon were done");
    cr_assert_eq(observed[0], 0, "the observer is not told about itself");
    for (uint32_t i = 1; i <= OBS_NEWCOMER; i++)
        cr_assert_eq(observed[i], 1, "client %u told %u times for one stay", i, observed[i]);
    kz_client_destroy(newcomer);
    newcomer = NULL;
    kzt_world_stop(&w);
}

/* ---- blocks while a side is being kicked ------------------------------------ */

#define KICK_WINDOW_TICKS 60u    /* ticks the kicked client stays silent */
#define KICK_END_STEPS 4000      /* liveness bound for the session to end */
#define KICK_CLIENT_GRACE 10u    /* ticks before a client's screen follows a new block */

/* One step of the world in which client `silent` is not serviced: its
 * session stays open on the server until the transport gives up or the
 * client speaks again, so its avatar stays in the world meanwhile. */
static void step_without(uint32_t silent)
{
    w.now += STEP_NS;
    (void)kz_server_step(w.srv, w.now);
    for (uint32_t i = 0; i < w.n; i++)
        if (i != silent)
            (void)kz_client_update(w.clients[i], w.now);
}

/* Steps without advancing the clock (so no tick runs) until the server
 * has applied one more block; returns whether it did within the bound. */
static int apply_block_without_a_tick(uint64_t blocks_before)
{
    uint32_t tick = kz_server_tick(w.srv);
    for (int k = 0; k < 200 && world_counter(KZ_WORLD_C_BLOCKS) == blocks_before; k++) {
        kzt_world_step(&w, 0);
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(kz_server_tick(w.srv), tick, "no tick ran meanwhile");
    return world_counter(KZ_WORLD_C_BLOCKS) > blocks_before;
}

/* Client `blocker` blocks `blocked`; then client `kicked` (one of the two)
 * is kicked and falls silent. With `at_once`, the block is applied and the
 * kick made between the same two ticks, so no frame carried the block
 * before the kick. Until the kicked avatar is gone, neither of the pair
 * ever has the other in view, on the server or on the client, while a
 * third client (2) still sees the kicked avatar. */
static void blocks_hold_while_kicked(uint32_t blocker, uint32_t blocked, uint32_t kicked,
                                     int at_once)
{
    memset(&w, 0, sizeof w);
    kz_server_config sc = world_config();
    world_start(3, &sc, 31);
    const uint32_t a = id_of(blocker), b = id_of(blocked), gone = id_of(kicked);
    const uint32_t kept = kicked == blocker ? blocked : blocker;
    run_ticks(20);
    cr_assert(server_sees(blocker, b) && server_sees(blocked, a), "they saw each other");
    uint64_t blocks = world_counter(KZ_WORLD_C_BLOCKS);
    cr_assert_eq(kz_client_block(w.clients[blocker], b, 1), KZ_OK);
    if (at_once) {
        cr_assert(apply_block_without_a_tick(blocks), "the block was applied");
    } else {
        run_ticks(10);
        cr_assert(!server_sees(blocker, b) && !server_sees(blocked, a), "the block took");
    }

    cr_assert_eq(kz_server_kick(w.srv, gone, KZ_KICK_ADMIN, "bye"), KZ_OK);
    const uint32_t other = kicked == blocker ? b : a;
    /* The server's views follow from the first tick after the block; what
     * a client shows lags by its render delay, well under the grace. */
    const uint32_t block_tick = kz_server_tick(w.srv);
    uint32_t present = 0, third_saw = 0;
    uint32_t end = block_tick + KICK_WINDOW_TICKS;
    while (kz_server_tick(w.srv) < end) {
        step_without(kicked);
        uint32_t since = kz_server_tick(w.srv) - block_tick;
        kz_avatar_state st;
        int in_world = kz_server_entity(w.srv, gone, &st) == KZ_OK;
        present += in_world;
        third_saw += in_world && server_sees(2, gone) && client_sees(2, gone);
        if (since >= 1)
            cr_assert(!server_sees(kept, gone), "the kept side's view holds the kicked one");
        /* The kicked side gets no more snapshots: its view stays as the
         * kick found it, which the block had reached unless `at_once`. */
        if (!at_once)
            cr_assert(!server_sees(kicked, other), "the kicked side's view holds the other");
        if (since >= KICK_CLIENT_GRACE || !at_once)
            cr_assert(!client_sees(kept, gone), "the kept side's client shows the kicked one");
    }
    cr_assert_gt(present, 0, "the kicked avatar stayed in the world for a while");
    cr_assert_gt(third_saw, 0, "a third client still saw it meanwhile (the window was real)");

    /* The kicked client speaks again; its session ends. */
    int k = 0;
    for (; k < KICK_END_STEPS && kz_client_state(w.clients[kicked]) != KZ_CLIENT_DISCONNECTED; k++) {
        kzt_world_step(&w, STEP_NS);
        cr_assert(!server_sees(kept, gone) && !client_sees(kept, gone),
                  "the block held until the end");
    }
    cr_assert_eq(kz_client_state(w.clients[kicked]), KZ_CLIENT_DISCONNECTED);
    run_ticks(5);
    kz_avatar_state st;
    cr_assert_neq(kz_server_entity(w.srv, gone, &st), KZ_OK, "the kicked avatar is gone");
    cr_assert(!client_sees(kept, gone));
    kzt_world_stop(&w);
}

Test(replication, a_block_holds_while_the_blocker_is_being_kicked, .timeout = 120)
{
    blocks_hold_while_kicked(0, 1, 0, 0);
}

Test(replication, a_block_holds_while_the_blocked_is_being_kicked, .timeout = 120)
{
    blocks_hold_while_kicked(0, 1, 1, 0);
}

Test(replication, a_block_applied_just_before_the_blockers_kick_holds, .timeout = 120)
{
    blocks_hold_while_kicked(0, 1, 0, 1);
}

Test(replication, a_block_applied_just_before_the_blockeds_kick_holds, .timeout = 120)
{
    blocks_hold_while_kicked(0, 1, 1, 1);
}

/* ---- a new session's first messages ------------------------------------------ */

#define JOINERS 10u

/*
 * Every client that connects gets its welcome (which tells it the codec
 * and view limits) before any snapshot, so it drops nothing while
 * connecting. A client whose CONNECT the server takes in the same step
 * as a tick is replicated in that tick, and its snapshot goes to ENet at
 * once (kz__netserver_send_now): the replicator first hands ENet what the
 * world queued (the welcome), so the welcome goes first.
 */
Test(replication, no_client_drops_a_message_while_connecting, .timeout = 120)
{
    memset(&w, 0, sizeof w);
    kz_server_config sc = world_config();
    world_start(JOINERS, &sc, 61);
    run_ticks(30);
    for (uint32_t i = 0; i < JOINERS; i++) {
        const kz_counters *cc = kz_client_counters(w.clients[i]);
        cr_assert_gt(kz_counters_get(cc, KZ_CLIENT_C_SNAPSHOTS), 0, "client %u applies snapshots", i);
        cr_assert_eq(kz_counters_get(cc, KZ_CLIENT_C_DROP_MALFORMED), 0,
                     "client %u dropped a message while connecting", i);
    }
    kzt_world_stop(&w);
}

/* ---- counters and expired baseline entries ---------------------------------- */

#define CROWD 40u            /* VR avatars moving within one another's view */
#define CROWD_BYTES 300u     /* bytes per second per client: far below what 39
                                moving VR avatars need (each packet still gets
                                its small floor) */
#define CROWD_WARMUP 90u     /* ticks for every client to hold every other */
#define CROWD_TICKS 240u
#define LATE_EVERY 3u        /* the late client is serviced one tick in this many */

/* Steps one tick with every bot moving; client 0 is serviced (receives,
 * acknowledges, sends) only when `serve_first` is set, so, called with it
 * on one tick in LATE_EVERY, its acknowledgements reach the server late. */
static void crowd_tick(int serve_first)
{
    uint32_t target = kz_server_tick(w.srv) + 1u;
    while (kz_server_tick(w.srv) < target) {
        w.now += STEP_NS;
        (void)kz_server_step(w.srv, w.now);
        for (uint32_t i = serve_first ? 0u : 1u; i < w.n; i++)
            (void)kz_client_update(w.clients[i], w.now);
    }
    for (uint32_t i = serve_first ? 0u : 1u; i < w.n; i++)
        kzt_world_drive(&w, i, target);
}

/* How many of the other avatars client i holds in the newest snapshot it
 * applied. */
static uint32_t held(uint32_t i)
{
    uint32_t n = 0;
    for (uint32_t j = 0; j < w.n; j++) {
        kz_avatar_state st;
        n += j != i && kz_client_entity_at(w.clients[i], kz_client_self_id(w.clients[j]),
                                           kz_client_server_tick(w.clients[i]), &st) == KZ_OK;
    }
    return n;
}

/* A crowd of CROWD moving VR avatars on a tiny byte budget, every client
 * on time until each holds every other avatar. `history`: the server's
 * snapshot history (0: the default). */
static void crowd_start(uint32_t history)
{
    memset(&w, 0, sizeof w);
    kz_server_config sc = world_config();
    sc.snapshot_history = history;
    sc.spawn_radius = 6.0f;
    sc.bytes_per_second = CROWD_BYTES;
    sc.interest_period = 1;
    world_start(CROWD, &sc, 41);
    for (uint32_t i = 0; i < CROWD; i++) {
        w.bots[i].vr = 1;
        w.bots[i].roam = 5.0f;
    }
    for (uint32_t t = 0; t < CROWD_WARMUP; t++)
        crowd_tick(1);
    for (uint32_t i = 0; i < CROWD; i++)
        cr_assert_eq(held(i), CROWD - 1u, "client %u holds every other avatar (%u)", i, held(i));
}

Test(replication, late_acks_on_a_tiny_budget_expire_baseline_entries_and_snapshots_still_decode,
     .timeout = 300)
{
    /* The shortest history keeps the fewest image rows, so states left
     * out for the budget do leave the ring. */
    crowd_start(4);
    const kz_counters *late = kz_client_counters(w.clients[0]);
    uint64_t applied = kz_counters_get(late, KZ_CLIENT_C_SNAPSHOTS);
    uint64_t expired = world_counter(KZ_WORLD_C_BASE_EXPIRED);
    /* From here on (connecting has its own test below). */
    uint64_t malformed[CROWD], no_base[CROWD];
    for (uint32_t i = 0; i < CROWD; i++) {
        malformed[i] = kz_counters_get(kz_client_counters(w.clients[i]), KZ_CLIENT_C_DROP_MALFORMED);
        no_base[i] = kz_counters_get(kz_client_counters(w.clients[i]), KZ_CLIENT_C_SNAPSHOTS_NO_BASE);
    }
    for (uint32_t t = 0; t < CROWD_TICKS; t++)
        crowd_tick(t % LATE_EVERY == 0);
    cr_assert_gt(world_counter(KZ_WORLD_C_BASE_EXPIRED), expired,
                 "baseline entries expired while the late client acknowledged late");
    cr_assert_gt(world_counter(KZ_WORLD_C_DEFERRED), 0, "the budget left updates out");
    cr_assert_geq(kz_counters_get(late, KZ_CLIENT_C_SNAPSHOTS), applied + CROWD_TICKS / LATE_EVERY,
                  "the late client went on applying snapshots");
    for (uint32_t i = 0; i < CROWD; i++) {
        const kz_counters *cc = kz_client_counters(w.clients[i]);
        cr_assert_eq(kz_counters_get(cc, KZ_CLIENT_C_DROP_MALFORMED), malformed[i],
                     "client %u could not decode a message", i);
        cr_assert_eq(kz_counters_get(cc, KZ_CLIENT_C_SNAPSHOTS_NO_BASE), no_base[i],
                     "client %u was sent a delta against a view it does not hold", i);
        cr_assert_eq(kz_client_state(w.clients[i]), KZ_CLIENT_CONNECTED);
    }
    /* Single-threaded: the world runs its replicators itself, in order. */
    cr_assert_eq(world_counter(KZ_WORLD_C_REPL_WAITS), 0);
    cr_assert_eq(world_counter(KZ_WORLD_C_REPL_SKIPPED), 0);
    kzt_world_stop(&w);
}

/*
 * The late client's view keeps every avatar that stays in range: an entry
 * whose baseline state left the image ring is replaced, never dropped from
 * the client's view. The ring keeps about two histories of rows and an
 * entry whose state is about to leave it goes first, so an update, not a
 * replace, refreshes it; a replace or enter that does not fit goes first
 * until acknowledged. (Before: the late client fell to about 15 of the 39
 * avatars while the server's view of it still listed all 39.)
 */
Test(replication, a_late_client_on_a_tiny_budget_keeps_every_avatar_in_range, .timeout = 300)
{
    crowd_start(0);
    uint32_t fewest = CROWD, fewest_at = 0;
    for (uint32_t t = 0; t < CROWD_TICKS; t++) {
        crowd_tick(t % LATE_EVERY == 0);
        if (t % LATE_EVERY != 0)
            continue;
        uint32_t listed = 0;
        for (uint32_t j = 1; j < CROWD; j++)
            listed += server_sees(0, id_of(j));
        cr_assert_eq(listed, CROWD - 1u, "the server's view of the late client lists everyone");
        uint32_t n = held(0);
        if (n < fewest)
            fewest = n, fewest_at = t;
    }
    uint32_t last = held(0);
    cr_assert(fewest == CROWD - 1u && last == CROWD - 1u,
              "the late client held as few as %u of %u avatars (tick %u) and %u at the end",
              fewest, CROWD - 1u, fewest_at, last);
    kzt_world_stop(&w);
}

/* ---- threaded replicators and a visibility hook ------------------------------ */

#define HOOKED_CLIENTS 8u
#define HOOKED_SNAPSHOTS 90u           /* more snapshots every client must apply */
#define HOOKED_TIMEOUT_NS (90 * KZ_NS_PER_S)
#define HOOK_THREADS 8u

static _Atomic uint64_t hook_calls;
static _Atomic uint64_t hook_calls_here;            /* on the simulation thread */
static _Atomic unsigned long hook_threads[HOOK_THREADS];
static pthread_t sim_thread;

/* The application's rule: a pure function of the two ids, asymmetric
 * (viewer v may not see target t when v + 2t is a multiple of 5, over
 * their dense indices), so most refused pairs are refused one way only. */
static int hook_refuses(uint32_t viewer, uint32_t target)
{
    return ((viewer & KZ_ENTITY_MAX) + 2u * (target & KZ_ENTITY_MAX)) % 5u == 0;
}

static int pair_refused(uint32_t a, uint32_t b)
{
    return hook_refuses(a, b) || hook_refuses(b, a);
}

static void note_thread(void)
{
    unsigned long me = (unsigned long)pthread_self();
    for (uint32_t k = 0; k < HOOK_THREADS; k++) {
        unsigned long seen = atomic_load(&hook_threads[k]);
        if (seen == me)
            return;
        if (seen == 0) {
            unsigned long empty = 0;
            if (atomic_compare_exchange_strong(&hook_threads[k], &empty, me) || empty == me)
                return;
        }
    }
}

static int hook(void *ctx, uint32_t viewer, uint32_t target)
{
    (void)ctx;
    atomic_fetch_add(&hook_calls, 1);
    if (pthread_equal(pthread_self(), sim_thread))
        atomic_fetch_add(&hook_calls_here, 1);
    note_thread();
    return !hook_refuses(viewer, target);
}

static kz_time_ns mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (kz_time_ns)ts.tv_sec * KZ_NS_PER_S + (kz_time_ns)ts.tv_nsec;
}

/* One pass on the real clock: the server's due ticks, then every client. */
static void real_pass(void)
{
    kz_time_ns now = mono();
    w.now = now;
    (void)kz_server_step(w.srv, now);
    uint32_t tick = kz_server_tick(w.srv);
    for (uint32_t i = 0; i < w.n; i++) {
        (void)kz_client_update(w.clients[i], now);
        kzt_world_drive(&w, i, tick + i);
    }
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

static uint64_t applied_by(uint32_t i)
{
    return kz_counters_get(kz_client_counters(w.clients[i]), KZ_CLIENT_C_SNAPSHOTS);
}

/* No client has in view, on the server or on screen, an avatar of a pair
 * the hook refuses; every allowed pair that shows up is recorded. */
static void check_refusals(const uint32_t *ids, uint8_t allowed_seen[][HOOKED_CLIENTS])
{
    for (uint32_t i = 0; i < HOOKED_CLIENTS; i++)
        for (uint32_t j = 0; j < HOOKED_CLIENTS; j++) {
            if (i == j)
                continue;
            int seen = client_sees(i, ids[j]) || server_sees(i, ids[j]);
            if (pair_refused(ids[i], ids[j]))
                cr_assert(!seen, "client %u (avatar %u) sees %u, which the hook refuses", i,
                          ids[i], ids[j]);
            else
                allowed_seen[i][j] |= (uint8_t)seen;
        }
}

Test(replication, threaded_replicators_keep_every_client_fed_and_the_hook_holds, .timeout = 300)
{
    memset(&w, 0, sizeof w);
    atomic_store(&hook_calls, 0);
    atomic_store(&hook_calls_here, 0);
    for (uint32_t k = 0; k < HOOK_THREADS; k++)
        atomic_store(&hook_threads[k], 0);
    sim_thread = pthread_self();
    kz_server_config sc = world_config();
    sc.net.threaded = 1;
    sc.net.io_threads = 2;
    sc.visible = hook;
    sc.visible_ctx = NULL;
    cr_assert_eq(kzt_world_start(&w, HOOKED_CLIENTS, NULL, &sc, 51), KZ_OK);
    kz_time_ns deadline = mono() + HOOKED_TIMEOUT_NS;
    uint32_t connected = 0;
    while (connected < HOOKED_CLIENTS && mono() < deadline) {
        real_pass();
        connected = 0;
        for (uint32_t i = 0; i < HOOKED_CLIENTS; i++)
            connected += kz_client_state(w.clients[i]) == KZ_CLIENT_CONNECTED &&
                         kz_client_self_id(w.clients[i]) != 0;
    }
    cr_assert_eq(connected, HOOKED_CLIENTS, "all connected (%u did)", connected);
    uint32_t ids[HOOKED_CLIENTS];
    for (uint32_t i = 0; i < HOOKED_CLIENTS; i++)
        ids[i] = id_of(i);
    uint32_t refused = 0, one_way = 0;
    for (uint32_t i = 0; i < HOOKED_CLIENTS; i++)
        for (uint32_t j = i + 1u; j < HOOKED_CLIENTS; j++) {
            refused += pair_refused(ids[i], ids[j]);
            one_way += hook_refuses(ids[i], ids[j]) != hook_refuses(ids[j], ids[i]);
        }
    cr_assert_gt(refused, 0, "the hook refuses some pairs");
    cr_assert_gt(one_way, 0, "some only one way");
    cr_assert_lt(refused, HOOKED_CLIENTS * (HOOKED_CLIENTS - 1u) / 2u, "and allows others");

    uint64_t start[HOOKED_CLIENTS];
    for (uint32_t i = 0; i < HOOKED_CLIENTS; i++)
        start[i] = applied_by(i);
    uint8_t allowed_seen[HOOKED_CLIENTS][HOOKED_CLIENTS];
    memset(allowed_seen, 0, sizeof allowed_seen);
    int fed = 0;
    while (!fed && mono() < deadline) {
        real_pass();
        check_refusals(ids, allowed_seen);
        fed = 1;
        for (uint32_t i = 0; i < HOOKED_CLIENTS; i++)
            fed &= applied_by(i) >= start[i] + HOOKED_SNAPSHOTS;
    }
    for (uint32_t i = 0; i < HOOKED_CLIENTS; i++) {
        cr_assert_eq(kz_client_state(w.clients[i]), KZ_CLIENT_CONNECTED, "client %u connected", i);
        cr_assert_geq(applied_by(i), start[i] + HOOKED_SNAPSHOTS,
                      "client %u kept receiving snapshots (%llu more)", i,
                      (unsigned long long)(applied_by(i) - start[i]));
        cr_assert_eq(kz_counters_get(kz_client_counters(w.clients[i]), KZ_CLIENT_C_DROP_MALFORMED),
                     0);
        for (uint32_t j = 0; j < HOOKED_CLIENTS; j++)
            if (i != j && !pair_refused(ids[i], ids[j]))
                cr_assert(allowed_seen[i][j], "client %u never saw %u, which the hook allows", i,
                          j);
    }
    /* The hook ran on the replicators' threads, both hosts', never here. */
    cr_assert_gt(atomic_load(&hook_calls), 0);
    cr_assert_eq(atomic_load(&hook_calls_here), 0, "the simulation thread called the hook");
    uint32_t threads = 0;
    for (uint32_t k = 0; k < HOOK_THREADS; k++)
        threads += atomic_load(&hook_threads[k]) != 0;
    cr_assert_eq(threads, 2, "the hook ran on %u threads, not the two I/O hosts'", threads);
    cr_assert_gt(kz_counters_block(kz_netserver_counters(kz_server_net(w.srv)), 0)
                     .cells[KZ_NET_C_SESSIONS_OPENED],
                 0, "host 0 served sessions");
    cr_assert_gt(kz_counters_block(kz_netserver_counters(kz_server_net(w.srv)), 1)
                     .cells[KZ_NET_C_SESSIONS_OPENED],
                 0, "host 1 served sessions");
    kzt_world_stop(&w);
}
