/*
 * One world on one process or on several (sim/fleet.h), side by side:
 * N wander bots (tests/support/world.h: straight lines at 1.4 m/s, a new
 * heading every 4 s, home when beyond 40 m; desktop, or VR with head and
 * hands moving every tick) on real kz_clients on loopback, and
 *   (a) the single process: one kz_server, as today;
 *   (b) an authority and E edges in this process, the bus messages
 *       passed in memory exactly as the server program passes them over
 *       NATS (what the edges said goes up to the authority, then the
 *       authority's tick subject to every edge and each down subject to
 *       its edge); client i connects through edge 1 + i % E. One more edge
 *       without clients takes the same tick subject: its CPU is what
 *       keeping the world's replica costs an edge, apart from its clients
 *       (it is not counted in the fleet's figures or bytes; the authority
 *       receives its heartbeats, one empty batch per tick).
 * Same server settings (the defaults: 30 Hz, 50 m view, 100 visible),
 * same bot seed, same measured window: W seconds of world time after
 * every client connected and one second of warm-up. (a) and (b) alternate
 * in each run; every figure is the median over the runs.
 *
 * Each server is stepped on its own on this thread and its CPU is the
 * thread CPU time (CLOCK_THREAD_CPUTIME_ID) around its own calls only:
 * kz_server_step, kz__fleet_receive (an edge replicates its tick there,
 * when the world update is complete) and kz__fleet_out (an edge closes
 * its batch for the authority there), less the clock's own cost per
 * timed interval (measured at start). The bots' time is not counted.
 * Figures:
 *   authority    µs per avatar-tick = its CPU / (avatars x its ticks)
 *   each edge    µs per client-tick = its CPU / (its clients x its ticks)
 *   single       µs per client-tick, the same way
 *   bus bytes per avatar-tick, header included: the tick subject counted
 *                once per receiving edge (what nats-server sends), up
 *                (the serving edges' messages to the authority) and down
 *                (what each serving edge received less the tick
 *                subject); checked against every server's bus counters.
 * There is no NATS and no network between the processes here, so no
 * latency is reported: it would only measure this loop.
 *
 *   kz-bench-fleet [--bots N] [--edges E] [--seconds W] [--vr]
 *                  (defaults 300, 3, 10; KZ_BENCH_RUNS runs, default 3)
 */
#define _POSIX_C_SOURCE 200809L
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kzb_util.h"
#include "sim/fleet_impl.h"
#include "support/world.h"

#define PROTO 0x4B5A46424E434831ull
#define SERVER_ID 93u
#define MAX_EDGES 8u
#define MAX_SERVERS (MAX_EDGES + 2u)   /* the authority, the edges, the replica-only edge */
#define STEP_NS (KZ_NS_PER_S / 120)   /* four passes of the clock per 30 Hz tick */
#define WARM_S 1u
#define CONNECT_LIMIT_NS (120ull * KZ_NS_PER_S)
#define HALF_TICK_US (1e6 / 30.0 / 2.0)   /* the budget of the 16-core estimate */
#define EDGES_16 15.0                     /* 16 cores: 1 authority + 15 edges */

static struct {
    uint32_t bots, edges, seconds, vr;
} opt = {300, 3, 10, 0};

static void fail(const char *what)
{
    fprintf(stderr, "bench_fleet: %s\n", what);
    exit(1);
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* What one timed interval adds by itself: the thread CPU clock is a
 * system call (about 1.7 µs on this VM), and an interval holds about
 * one of them. The median of empty intervals, taken off each server's
 * CPU once per interval. */
static double timer_ns;

static void timer_calibrate(void)
{
    double v[33];
    for (size_t k = 0; k < 33; k++) {
        uint64_t sum = 0;
        for (int i = 0; i < 2000; i++) {
            uint64_t t = cpu_ns();
            sum += cpu_ns() - t;
        }
        v[k] = (double)sum / 2000.0;
    }
    timer_ns = kzb_median(v, 33);
}

/* UDP receive-buffer overflows on this machine (/proc/net/snmp), to show
 * that no mode was spared work by the kernel dropping datagrams. */
static uint64_t udp_rcvbuf_errors(void)
{
    FILE *f = fopen("/proc/net/snmp", "r");
    char names[1024], values[1024];
    uint64_t found = 0;
    while (f && fgets(names, sizeof names, f) && fgets(values, sizeof values, f)) {
        if (strncmp(names, "Udp:", 4) != 0)
            continue;
        char *ns = NULL, *vs = NULL;
        char *n = strtok_r(names, " \n", &ns), *v = strtok_r(values, " \n", &vs);
        for (; n && v; n = strtok_r(NULL, " \n", &ns), v = strtok_r(NULL, " \n", &vs))
            if (strcmp(n, "RcvbufErrors") == 0)
                found = strtoull(v, NULL, 10);
        break;
    }
    if (f)
        fclose(f);
    return found;
}

/* The clients of this loop all send in the same pass, so a server's
 * socket takes N datagrams in one burst, and ENet's 256 KiB receive
 * buffer overflowed at 1,000 clients. The bench raises the buffer of the
 * UDP socket bound to `port` (found among this process's files) to
 * RCVBUF_BYTES (the kernel caps it at net.core.rmem_max), for every
 * server in both modes. */
#define RCVBUF_BYTES (4 << 20)
static void widen_rcvbuf(uint16_t port)
{
    struct rlimit rl;
    int limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur
                                                                           : 65536;
    for (int fd = 0; fd < limit; fd++) {
        struct sockaddr_in a;
        socklen_t len = sizeof a;
        int type = 0;
        socklen_t tlen = sizeof type;
        if (getsockname(fd, (struct sockaddr *)&a, &len) != 0 || a.sin_family != AF_INET ||
            ntohs(a.sin_port) != port ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_DGRAM)
            continue;
        int bytes = RCVBUF_BYTES;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes) != 0)
            fail("SO_RCVBUF");
        return;
    }
    fail("no UDP socket on the server's port");
}

/* One world: server 0 is the single process or the authority, servers
 * 1..edges the serving edges, server edges + 1 the replica-only edge;
 * the bots' clients and wander state live in a kzt_world shell without
 * a server, so kzt_world_drive moves them. */
typedef struct rig {
    kzt_keys keys;
    uint32_t edges;                    /* serving edges; 0: the single process */
    uint32_t servers;                  /* 1, or edges + 2 */
    kz_server *srv[MAX_SERVERS];
    uint64_t cpu[MAX_SERVERS];         /* ns of thread CPU in each server's calls */
    uint64_t intervals[MAX_SERVERS];   /* ... in this many timed intervals */
    uint64_t auth_rx;                  /* the authority's part in kz__fleet_receive */
    uint64_t auth_rx_intervals;
    uint64_t tick_bytes;               /* the authority's tick subject, each message once */
    uint64_t up_bytes[MAX_SERVERS];    /* each edge's messages to the authority */
    uint64_t bus_drops;                /* messages a receiver refused */
    kzt_world bots;
    kz_time_ns now;
} rig;

typedef struct run_result {
    double single_us;                  /* (a): µs per client-tick */
    double auth_us;                    /* (b): authority µs per avatar-tick */
    double auth_rx_us;                 /*      of which receiving the edges' messages */
    double edge_us[MAX_EDGES];         /* (b): each serving edge's µs per client-tick */
    double replica_us;                 /* (b): the replica-only edge, µs per world avatar-tick */
    double sum_us;                     /* (b): authority + serving edges, per avatar-tick */
    double busiest_ms, single_ms;      /* CPU per tick: the fleet's busiest process; (a) */
    double tick_b, up_b, down_b;       /* bus bytes per avatar-tick */
    double applied_hz;                 /* snapshots applied per client-second */
    double payload_kbps;               /* snapshot payload per client, down */
    double visible;                    /* mean entities in a client's view at the end */
    double rcvbuf_errors;
    double ratio;                      /* (b)'s sum_us / (a)'s single_us of the same run */
} run_result;

static kz_server_config world_config(const kzt_keys *k)
{
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    kzt_server_config(&sc.net, k, PROTO, SERVER_ID, opt.bots + 8u);
    sc.net.gate_rate_per_ip = 20000;   /* every bot shares 127.0.0.1 */
    sc.net.log.level = KZ_LOG_WARN;
    return sc;
}

static void servers_create(rig *r)
{
    kz_server_config sc = world_config(&r->keys);
    if (!r->edges) {
        r->srv[0] = kz_server_create(&sc);
        if (!r->srv[0])
            fail("server");
        widen_rcvbuf(kz_server_port(r->srv[0]));
        return;
    }
    kz__fleet_config fc = {.role = KZ__ROLE_AUTHORITY, .world = kz_bus_world_hash("bench"),
                           .instance = 0xA0, .started_ms = 1000, .hold_ms = 15000};
    r->srv[0] = kz__fleet_server_create(&sc, &fc);
    if (!r->srv[0])
        fail("authority");
    for (uint32_t e = 1; e < r->servers; e++) {
        sc = world_config(&r->keys);
        kz__fleet_config ec = {.role = KZ__ROLE_EDGE, .edge = e, .world = fc.world,
                               .instance = 0xE0 + e, .started_ms = 2000};
        r->srv[e] = kz__fleet_server_create(&sc, &ec);
        if (!r->srv[e])
            fail("edge");
        widen_rcvbuf(kz_server_port(r->srv[e]));
        kz__fleet_hello(r->srv[e], 1);
    }
}

/* Charges the thread CPU since `since` to server k: one timed interval. */
static uint64_t charge(rig *r, uint32_t k, uint64_t since)
{
    uint64_t spent = cpu_ns() - since;
    r->cpu[k] += spent;
    r->intervals[k]++;
    return spent;
}

/* The server program's bus, in memory (tests/test_fleet.c's pump): the
 * edges' messages up first, then the authority's to every edge that
 * subscribes to their subject. Each server's calls are timed as its own,
 * in as few intervals as the order allows. */
static void pump(rig *r)
{
    const kz__bus_msg *up[MAX_SERVERS], *m;
    uint32_t n_up[MAX_SERVERS];
    kz_server *auth = r->srv[0];
    for (uint32_t e = 1; e < r->servers; e++) {
        uint64_t t = cpu_ns();
        n_up[e] = kz__fleet_out(r->srv[e], &up[e]);
        (void)charge(r, e, t);
    }
    uint64_t t = cpu_ns();
    for (uint32_t e = 1; e < r->servers; e++)
        for (uint32_t k = 0; k < n_up[e]; k++)
            r->bus_drops += up[e][k].subject != KZ_BUS_SUBJECT_UP ||
                            kz__fleet_receive(auth, KZ_BUS_SUBJECT_UP, e, up[e][k].data,
                                              up[e][k].len);
    uint32_t n = kz__fleet_out(auth, &m);
    r->auth_rx += charge(r, 0, t);
    r->auth_rx_intervals++;
    for (uint32_t e = 1; e < r->servers; e++) {
        for (uint32_t k = 0; k < n_up[e]; k++)
            r->up_bytes[e] += up[e][k].len;
        kz__fleet_out_clear(r->srv[e]);
    }
    for (uint32_t k = 0; k < n; k++)
        r->tick_bytes += m[k].subject == KZ_BUS_SUBJECT_TICK ? m[k].len : 0u;
    for (uint32_t e = 1; e < r->servers; e++) {
        t = cpu_ns();
        for (uint32_t k = 0; k < n; k++)
            if (m[k].subject != KZ_BUS_SUBJECT_DOWN || m[k].edge == e)
                r->bus_drops += kz__fleet_receive(r->srv[e], m[k].subject, m[k].edge, m[k].data,
                                                  m[k].len) != KZ_BUS_OK;
        (void)charge(r, e, t);
    }
    kz__fleet_out_clear(auth);
}

static void servers_step(rig *r)
{
    for (uint32_t k = 0; k < r->servers; k++) {
        uint64_t t = cpu_ns();
        (void)kz_server_step(r->srv[k], r->now);
        (void)charge(r, k, t);
    }
}

/* One pass of the clock: every server, the bus, then the clients
 * (untimed), SLICE at a time with another round of the servers after
 * each slice. ENet reads at most 256 datagrams per service call, and the
 * clients of this loop all send in the same pass: without the extra
 * rounds one server with 1,000 clients falls behind its socket (inputs
 * arrive late, clocks look fast, acknowledgements lag and snapshots go
 * out whole), which a server program's I/O thread, looping without
 * waiting for a clock, does not. Both modes get the same rounds. Bots
 * are driven from `t0` on, by the ticks since then. */
#define SLICE 128u
static void step(rig *r, int drive, uint32_t t0)
{
    r->now += STEP_NS;
    servers_step(r);
    if (r->edges)
        pump(r);
    uint32_t tick = kz_server_tick(r->srv[0]);
    for (uint32_t i = 0; i < r->bots.n; i++) {
        if (i && i % SLICE == 0)
            servers_step(r);
        (void)kz_client_update(r->bots.clients[i], r->now);
        if (drive)
            kzt_world_drive(&r->bots, i, tick - t0);
    }
}

static int edges_synced(const rig *r)
{
    for (uint32_t e = 1; e < r->servers; e++)
        if (!kz__fleet_synced(r->srv[e]))
            return 0;
    return 1;
}

/* Client i connects through edge 1 + i % E (or the single process). */
static void clients_create(rig *r, uint64_t seed)
{
    uint32_t n = opt.bots;
    r->bots.n = n;
    r->bots.clients = calloc(n, sizeof *r->bots.clients);
    r->bots.bots = calloc(n, sizeof *r->bots.bots);
    if (!r->bots.clients || !r->bots.bots)
        fail("memory");
    for (uint32_t i = 0; i < n; i++) {
        kz_server *via = r->srv[r->edges ? 1u + i % r->edges : 0u];
        kz_client_config cc;
        memset(&cc, 0, sizeof cc);
        kz_client_config_default(&cc);
        cc.net.server.family = KZ_ADDR_IPV4;
        cc.net.server.ip[0] = 127;
        cc.net.server.ip[3] = 1;
        cc.net.server.port = kz_server_port(via);
        cc.net.connect_timeout_ms = 60000;
        kz_connect_token ct;
        if (kzt_mint(&r->keys, PROTO, SERVER_ID, kz_server_port(via), i + 1u, &ct) != KZ_OK)
            fail("mint");
        r->bots.clients[i] = kz_client_create(&cc);
        if (!r->bots.clients[i] || kz_client_connect(r->bots.clients[i], &ct, 0) != KZ_OK)
            fail("client");
        /* kzt_world_start's wander bots, from the same seed in both modes. */
        kzt_wander *b = &r->bots.bots[i];
        b->rng = seed * 1000003u + i;
        b->speed = 1.4f;
        b->roam = 40.0f;
        b->turn_ticks = 120;
        b->vr = opt.vr;
    }
}

static uint32_t connected(const rig *r)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < r->bots.n; i++)
        c += kz_client_state(r->bots.clients[i]) == KZ_CLIENT_CONNECTED;
    return c;
}

static void rig_start(rig *r, uint32_t edges, uint64_t seed)
{
    memset(r, 0, sizeof *r);
    r->edges = edges;
    r->servers = edges ? edges + 2u : 1u;
    if (kzt_keys_make(&r->keys) != KZ_OK)
        fail("keys");
    servers_create(r);
    r->now = 1;
    for (uint32_t k = 0; k < 400 && !edges_synced(r); k++)
        step(r, 0, 0);
    if (!edges_synced(r))
        fail("an edge never took the world image (no SYNC applied in 400 passes)");
    clients_create(r, seed);
    kz_time_ns end = r->now + CONNECT_LIMIT_NS;
    uint32_t c = 0;
    while (r->now < end && (c = connected(r)) < r->bots.n)
        step(r, 0, 0);
    if (c < r->bots.n) {
        fprintf(stderr, "bench_fleet: %s: only %u of %u clients connected in %llu s\n",
                edges ? "fleet" : "single", c, r->bots.n,
                (unsigned long long)(CONNECT_LIMIT_NS / KZ_NS_PER_S));
        exit(1);
    }
}

static void rig_stop(rig *r)
{
    for (uint32_t i = 0; i < r->bots.n; i++)
        kz_client_destroy(r->bots.clients[i]);
    free(r->bots.clients);
    free(r->bots.bots);
    for (uint32_t k = 0; k < r->servers; k++)
        kz_server_destroy(r->srv[k]);
}

static uint64_t world_ticks(const kz_server *s)
{
    return kz_counters_get(kz_server_counters(s), KZ_WORLD_C_TICKS);
}

static uint64_t fleet_counter(const kz_server *s, uint32_t id)
{
    return kz_counters_get(kz__fleet_counters(s), id);
}

static uint64_t client_sum(const rig *r, uint32_t id)
{
    uint64_t s = 0;
    for (uint32_t i = 0; i < r->bots.n; i++)
        s += kz_counters_get(kz_client_counters(r->bots.clients[i]), id);
    return s;
}

/* Snapshots the clients could not apply (no baseline, malformed): a
 * refused snapshot would hide work, so none may be. */
static uint64_t client_refused(const rig *r)
{
    return client_sum(r, KZ_CLIENT_C_SNAPSHOTS_NO_BASE) + client_sum(r, KZ_CLIENT_C_DROP_MALFORMED);
}

/* Every drop and loss counter of the fleet's servers, printed when one is
 * not zero; returns their sum. */
static uint64_t fleet_trouble(const rig *r)
{
    static const uint32_t bad[] = {
        KZ__FLEET_C_DROP_OVERSIZE, KZ__FLEET_C_DROP_MALFORMED, KZ__FLEET_C_DROP_VERSION,
        KZ__FLEET_C_DROP_OTHER_WORLD, KZ__FLEET_C_DROP_SENDER, KZ__FLEET_C_DROP_STALE_INSTANCE,
        KZ__FLEET_C_DROP_REPLAY, KZ__FLEET_C_DROP_FOREIGN, KZ__FLEET_C_GAP,
        KZ__FLEET_C_OUT_DROPPED, KZ__FLEET_C_EDGES_LOST, KZ__FLEET_C_SESSIONS_HELD,
        KZ__FLEET_C_LIMITS_DIFFER, KZ__FLEET_C_AUTHORITY_LOST};
    uint64_t total = 0;
    for (uint32_t k = 0; r->edges && k < r->servers; k++)
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            uint64_t v = fleet_counter(r->srv[k], bad[b]);
            if (v)
                fprintf(stderr, "bench_fleet: %s %u: %s = %llu\n", k ? "edge" : "authority", k,
                        kz__fleet_counter_names[bad[b]], (unsigned long long)v);
            total += v;
        }
    return total;
}

/* Counters at the start and the end of the measured window. */
typedef struct mark {
    uint64_t ticks[MAX_SERVERS], bytes_in[MAX_SERVERS], up_bytes[MAX_SERVERS];
    uint64_t bytes_out, tick_bytes;
    uint64_t applied, payload, refused, rcvbuf;
} mark;

static mark mark_take(const rig *r)
{
    mark m;
    memset(&m, 0, sizeof m);
    for (uint32_t k = 0; k < r->servers; k++) {
        m.ticks[k] = world_ticks(r->srv[k]);
        m.bytes_in[k] = r->edges ? fleet_counter(r->srv[k], KZ__FLEET_C_BYTES_IN) : 0;
        m.up_bytes[k] = r->up_bytes[k];
    }
    m.bytes_out = r->edges ? fleet_counter(r->srv[0], KZ__FLEET_C_BYTES_OUT) : 0;
    m.tick_bytes = r->tick_bytes;
    m.applied = client_sum(r, KZ_CLIENT_C_SNAPSHOTS);
    m.payload = client_sum(r, KZ_CLIENT_C_SNAPSHOT_BYTES);
    m.refused = client_refused(r);
    m.rcvbuf = udp_rcvbuf_errors();
    return m;
}

/* Bus bytes per avatar-tick of the serving edges, checked against the
 * counters: the authority received every edge's messages, every edge the
 * whole tick subject, and the edges' down subjects add up to what the
 * authority published besides the tick subject. */
static void bus_figures(const rig *r, const mark *a, const mark *b, double avatar_ticks,
                        run_result *out)
{
    uint64_t tick = b->tick_bytes - a->tick_bytes;
    uint64_t up = 0, up_all = 0, down = 0, down_all = 0;
    int ok = 1;
    for (uint32_t e = 1; e < r->servers; e++) {
        uint64_t sent = b->up_bytes[e] - a->up_bytes[e];
        uint64_t in = b->bytes_in[e] - a->bytes_in[e];
        ok &= in >= tick;
        up_all += sent;
        down_all += in - tick;
        up += e <= r->edges ? sent : 0u;
        down += e <= r->edges ? in - tick : 0u;
    }
    if (!ok || up_all != b->bytes_in[0] - a->bytes_in[0] ||
        down_all != (b->bytes_out - a->bytes_out) - tick)
        fail("the servers' bus_bytes_in differ from what was published");
    out->tick_b = (double)tick * r->edges / avatar_ticks;
    out->up_b = (double)up / avatar_ticks;
    out->down_b = (double)down / avatar_ticks;
}

/* Server k's CPU in ns, less what its timing itself cost. */
static double net_cpu(const rig *r, uint32_t k)
{
    return (double)r->cpu[k] - timer_ns * (double)r->intervals[k];
}

static void cpu_figures(const rig *r, const mark *a, const mark *b, run_result *out)
{
    double n = r->bots.n, ticks0 = (double)(b->ticks[0] - a->ticks[0]);
    double cpu0 = net_cpu(r, 0);
    if (!r->edges) {
        out->single_us = cpu0 / 1e3 / (n * ticks0);
        out->single_ms = cpu0 / 1e6 / ticks0;
        return;
    }
    out->auth_us = cpu0 / 1e3 / (n * ticks0);
    out->auth_rx_us = ((double)r->auth_rx - timer_ns * (double)r->auth_rx_intervals) / 1e3 /
                      (n * ticks0);
    double busiest = cpu0 / 1e6 / ticks0, sum = cpu0;
    for (uint32_t e = 1; e <= r->edges; e++) {
        double ticks = (double)(b->ticks[e] - a->ticks[e]), cpu = net_cpu(r, e);
        uint32_t clients = kz__fleet_sessions(r->srv[e], NULL);
        if (ticks <= 0 || clients == 0)
            fail("an edge ticked no tick or serves no client in the window");
        out->edge_us[e - 1] = cpu / 1e3 / (clients * ticks);
        busiest = cpu / 1e6 / ticks > busiest ? cpu / 1e6 / ticks : busiest;
        sum += cpu;
    }
    uint32_t replica = r->edges + 1u;
    double replica_ticks = (double)(b->ticks[replica] - a->ticks[replica]);
    if (replica_ticks <= 0)
        fail("the replica-only edge ticked no tick in the window");
    out->replica_us = net_cpu(r, replica) / 1e3 / (n * replica_ticks);
    out->busiest_ms = busiest;
    out->sum_us = sum / 1e3 / (n * ticks0);
}

/* With KZB_FLEET_DEBUG set: every non-zero world counter of each server. */
static void debug_counters(const rig *r)
{
    if (!getenv("KZB_FLEET_DEBUG"))
        return;
    for (uint32_t k = 0; k < r->servers; k++) {
        const kz_counters *c = kz_server_counters(r->srv[k]);
        fprintf(stderr, "server %u:", k);
        for (uint32_t id = 0; id < KZ_WORLD_C_COUNT; id++)
            if (kz_counters_get(c, id))
                fprintf(stderr, " %s=%llu", kz_counters_name(c, id),
                        (unsigned long long)kz_counters_get(c, id));
        fprintf(stderr, "\n");
    }
}

static void check_window(const rig *r, const mark *a, const mark *b)
{
    const char *mode = r->edges ? "fleet" : "single";
    if (b->refused != a->refused)
        fprintf(stderr, "bench_fleet: %s: clients refused %llu snapshots (no baseline or "
                        "malformed)\n",
                mode, (unsigned long long)(b->refused - a->refused));
    if (r->bus_drops || fleet_trouble(r))
        fprintf(stderr, "bench_fleet: %llu bus messages refused in the window\n",
                (unsigned long long)r->bus_drops);
    if (connected(r) != r->bots.n)
        fprintf(stderr, "bench_fleet: %s: %u of %u clients still connected at the end\n", mode,
                connected(r), r->bots.n);
}

static run_result run(uint32_t edges, uint64_t seed)
{
    rig *r = calloc(1, sizeof *r);
    if (!r)
        fail("memory");
    rig_start(r, edges, seed);
    uint32_t t0 = kz_server_tick(r->srv[0]);
    uint32_t hz = kz_server_tick_hz(r->srv[0]);
    while (kz_server_tick(r->srv[0]) < t0 + WARM_S * hz)
        step(r, 1, t0);
    memset(r->cpu, 0, sizeof r->cpu);
    memset(r->intervals, 0, sizeof r->intervals);
    r->auth_rx = r->auth_rx_intervals = 0;
    r->bus_drops = 0;
    mark a = mark_take(r);
    while (kz_server_tick(r->srv[0]) < t0 + (WARM_S + opt.seconds) * hz)
        step(r, 1, t0);
    mark b = mark_take(r);
    debug_counters(r);
    check_window(r, &a, &b);
    run_result out;
    memset(&out, 0, sizeof out);
    double ticks0 = (double)(b.ticks[0] - a.ticks[0]), seconds = ticks0 / hz;
    cpu_figures(r, &a, &b, &out);
    if (edges)
        bus_figures(r, &a, &b, r->bots.n * ticks0, &out);
    out.applied_hz = (double)(b.applied - a.applied) / seconds / r->bots.n;
    out.payload_kbps = (double)(b.payload - a.payload) * 8.0 / 1e3 / seconds / r->bots.n;
    out.rcvbuf_errors = (double)(b.rcvbuf - a.rcvbuf);
    kz_client_entity none[1];
    for (uint32_t i = 0; i < r->bots.n; i++)
        out.visible += (double)kz_client_view(r->bots.clients[i], none, 0) / r->bots.n;
    rig_stop(r);
    free(r);
    return out;
}

static void usage(void)
{
    fprintf(stderr, "usage: kz-bench-fleet [--bots N] [--edges E] [--seconds W] [--vr]\n"
                    "  N 3..4000 (300), E 1..%u (3), W 1..600 (10); KZ_BENCH_RUNS (3)\n",
            MAX_EDGES);
    exit(2);
}

static uint32_t arg_u32(int argc, char **argv, int *i, uint32_t lo, uint32_t hi)
{
    if (*i + 1 >= argc)
        usage();
    char *end;
    unsigned long v = strtoul(argv[++*i], &end, 10);
    if (*end || v < lo || v > hi)
        usage();
    return (uint32_t)v;
}

static void parse(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bots") == 0)
            opt.bots = arg_u32(argc, argv, &i, 3, 4000);
        else if (strcmp(argv[i], "--edges") == 0)
            opt.edges = arg_u32(argc, argv, &i, 1, MAX_EDGES);
        else if (strcmp(argv[i], "--seconds") == 0)
            opt.seconds = arg_u32(argc, argv, &i, 1, 600);
        else if (strcmp(argv[i], "--vr") == 0)
            opt.vr = 1;
        else
            usage();
    }
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The runs' values of one double field of run_result, and their median. */
static double field(const run_result *v, size_t n, size_t offset, double *out)
{
    for (size_t k = 0; k < n; k++)
        memcpy(&out[k], (const char *)&v[k] + offset, sizeof(double));
    return kzb_median(out, n);
}

#define REPORT(name, unit, res, n, member)                                       \
    do {                                                                         \
        double vals_[64];                                                        \
        (void)field(res, n, offsetof(run_result, member), vals_);                \
        kzb_report(name, unit, vals_, n);                                        \
    } while (0)
#define MEDIAN(res, n, member, scratch) field(res, n, offsetof(run_result, member), scratch)

/* The slowest serving edge's median µs per client-tick. */
static double edge_us_max(const run_result *b, size_t runs)
{
    double v[64], worst = 0;
    for (uint32_t e = 0; e < opt.edges; e++) {
        for (size_t k = 0; k < runs; k++)
            v[k] = b[k].edge_us[e];
        double m = kzb_median(v, runs);
        worst = m > worst ? m : worst;
    }
    return worst;
}

/* What the medians mean for capacity: per tick, the single process's
 * whole work against the fleet's busiest process (a core each) and
 * against the fleet's total shared over this machine's cores. */
static void capacity_here(const run_result *a, const run_result *b, size_t runs)
{
    double v[64];
    double single_ms = MEDIAN(a, runs, single_ms, v), busiest_ms = MEDIAN(b, runs, busiest_ms, v);
    double single_us = MEDIAN(a, runs, single_us, v), sum_us = MEDIAN(b, runs, sum_us, v);
    double auth_us = MEDIAN(b, runs, auth_us, v);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double sum_ms = sum_us * opt.bots / 1e3;
    double per_core = sum_ms / (double)cores > busiest_ms ? sum_ms / (double)cores : busiest_ms;
    printf("authority target <= 2 us per avatar-tick: %s (%.3f us)\n",
           auth_us <= 2.0 ? "met" : "missed", auth_us);
    printf("per tick at %u clients: single process %.2f ms of CPU; fleet: busiest process "
           "%.2f ms, all its processes %.2f ms\n",
           opt.bots, single_ms, busiest_ms, sum_ms);
    printf("a core per process: the fleet's tick is %.2fx the single process's (busiest / "
           "single)\n",
           busiest_ms / single_ms);
    printf("all on %ld cores: the fleet needs %.2f ms per core per tick, the single process "
           "%.2f ms on its one simulation core (%.2f ms per core if its work split evenly)\n",
           cores, per_core, single_ms, single_ms / (double)cores);
    printf("fleet CPU / single CPU per client-tick: %.2f (ratio of the medians)\n",
           sum_us / single_us);
}

/* The 16-core estimate: 1 authority + 15 edges, each given half of the
 * 33.3 ms tick. The authority holds HALF_TICK_US / its µs per
 * avatar-tick; an edge pays per own client (its figure less the replica,
 * spread over its clients here) and per world avatar (the replica-only
 * edge's figure). */
static void capacity_16(const run_result *b, size_t runs)
{
    double v[64];
    double auth_us = MEDIAN(b, runs, auth_us, v), replica_us = MEDIAN(b, runs, replica_us, v);
    double per_client = edge_us_max(b, runs) - replica_us * opt.edges;
    double auth_cap = HALF_TICK_US / auth_us;
    double edges_cap = EDGES_16 * HALF_TICK_US / (per_client + EDGES_16 * replica_us);
    double n16 = auth_cap < edges_cap ? auth_cap : edges_cap;
    double tick_b = MEDIAN(b, runs, tick_b, v) / opt.edges;
    double up_b = MEDIAN(b, runs, up_b, v), down_b = MEDIAN(b, runs, down_b, v);
    printf("16 cores (1 authority + 15 edges, half of the 33.3 ms tick each): the authority "
           "holds %.0f avatars at %.3f us per avatar-tick\n",
           auth_cap, auth_us);
    printf("  15 edges at %.2f us per own client-tick + %.3f us per world avatar-tick (replica) "
           "hold %.0f clients\n",
           per_client, replica_us, edges_cap);
    double mbit = n16 * 30.0 * 8.0 / 1e6;
    printf("  at %.0f avatars nats-server sends %.0f Mbit/s (per avatar-tick: the tick subject's "
           "%.1f B to each of 15 edges, up %.1f B, down %.1f B) and receives %.0f Mbit/s\n",
           n16, mbit * (EDGES_16 * tick_b + up_b + down_b), tick_b, up_b, down_b,
           mbit * (tick_b + up_b + down_b));
}

static void report(const run_result *a, const run_result *b, size_t runs)
{
    printf("%u %s bots, %u edges, %u s at 30 Hz measured after %u s of warm-up\n", opt.bots,
           opt.vr ? "VR" : "desktop", opt.edges, opt.seconds, WARM_S);
    REPORT("(a) single process: CPU per client-tick", "us", a, runs, single_us);
    REPORT("(b) authority: CPU per avatar-tick", "us", b, runs, auth_us);
    REPORT("      of which receiving the edges' messages", "us", b, runs, auth_rx_us);
    for (uint32_t e = 0; e < opt.edges; e++) {
        char name[64];
        snprintf(name, sizeof name, "(b) edge %u: CPU per client-tick", e + 1u);
        double v[64];
        for (size_t k = 0; k < runs; k++)
            v[k] = b[k].edge_us[e];
        kzb_report(name, "us", v, runs);
    }
    REPORT("(b) edge without clients: CPU per avatar-tick", "us", b, runs, replica_us);
    REPORT("(b) authority + edges: CPU per avatar-tick", "us", b, runs, sum_us);
    REPORT("(b) / (a) CPU per client-tick, run by run", "x", b, runs, ratio);
    REPORT("bus: tick subject x edges, per avatar-tick", "B", b, runs, tick_b);
    REPORT("bus: up, per avatar-tick", "B", b, runs, up_b);
    REPORT("bus: down, per avatar-tick", "B", b, runs, down_b);
    REPORT("(a) snapshots applied per client-second", "Hz", a, runs, applied_hz);
    REPORT("(b) snapshots applied per client-second", "Hz", b, runs, applied_hz);
    REPORT("(a) snapshot payload per client, down", "kbit/s", a, runs, payload_kbps);
    REPORT("(b) snapshot payload per client, down", "kbit/s", b, runs, payload_kbps);
    REPORT("(a) entities in a client's view at the end", "", a, runs, visible);
    REPORT("(b) entities in a client's view at the end", "", b, runs, visible);
    REPORT("(a) UDP receive-buffer overflows (machine)", "", a, runs, rcvbuf_errors);
    REPORT("(b) UDP receive-buffer overflows (machine)", "", b, runs, rcvbuf_errors);
    capacity_here(a, b, runs);
    capacity_16(b, runs);
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    raise_fd_limit();
    kzb_begin(argc, argv, "one world: single process vs an authority and its edges (in-process bus)");
    timer_calibrate();
    printf("thread CPU clock: %.0f ns per timed interval, taken off every figure\n", timer_ns);
    size_t runs = getenv("KZ_BENCH_RUNS") ? kzb_runs() : 3;
    run_result a[64], b[64];
    for (size_t k = 0; k < runs; k++) {
        a[k] = run(0, 31 + k);
        b[k] = run(opt.edges, 31 + k);
        b[k].ratio = b[k].sum_us / a[k].single_us;
        printf("run %zu: single %.3f us per client-tick; authority %.3f us per avatar-tick, "
               "edge 1 %.3f us per client-tick\n",
               k + 1, a[k].single_us, b[k].auth_us, b[k].edge_us[0]);
        fflush(stdout);
    }
    report(a, b, runs);
    kzb_end();
    return 0;
}
