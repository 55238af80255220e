/*
 * The world server's cost and bandwidth with real clients on loopback.
 *
 *   kz-bench-world            (KZ_BENCH_RUNS sets the repetitions, default 7)
 *
 * 1. Server CPU per client-tick by visible count: 151 clients stand in a
 *    15 m circle (everyone within view range), max_visible = 25, 50, 100;
 *    the server's work is everything kz_server_step does (drain inputs,
 *    tick: inputs, interest, snapshot encoding; then seal and ENet send in
 *    the single-threaded transport), timed around each call, divided by
 *    ticks x clients; and the tick alone (the server's tick-time histogram:
 *    inputs, interest, encoding, queueing to the transport) the same way.
 *    The slope per visible avatar is the least-squares fit over the three
 *    points.
 * 2. Downstream bandwidth per client with 100 visible moving avatars at
 *    30 Hz, desktop and VR (head and hands moving every tick): snapshot
 *    payload from the client counters, and the bytes on the wire (UDP
 *    payload: ENet headers, seal overhead and all) from a relay's tap.
 *    The payload counts snapshots the clients applied, so the run fails
 *    if any client refused one (baseline or older view missing, or
 *    malformed); the snapshots applied per client-second are printed.
 *    With the server passing an older view (second-order pose
 *    prediction) the VR figure is what that costs.
 *
 *   kz-bench-world --down     the downstream table only
 *
 * Clients run in the same process and thread; only the server's calls are
 * timed. The clock is simulated (time advances 1/120 s per step), so the
 * figures do not depend on sleeping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kzb_util.h"
#include "support/world.h"

#define STEP_NS (KZ_NS_PER_S / 120)
#define WARM_TICKS 90u
#define MEASURE_TICKS 300u

static void fail(const char *what)
{
    fprintf(stderr, "bench_world: %s\n", what);
    exit(1);
}

typedef struct run_result {
    double ns_per_client_tick;
    double tick_ns_per_client_tick;  /* the tick alone: inputs, interest, encode, queueing */
    double payload_kbps;   /* snapshot payload per client, down */
    double wire_kbps;      /* UDP payload per client, down (relay runs only) */
    double visible;        /* mean entities in view */
    double applied_hz;     /* snapshots applied per client-second */
} run_result;

static uint64_t down_bytes;

static void tap(void *ctx, uint32_t dir, const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)data;
    if (dir == KZ_PROXY_DOWN)
        down_bytes += len;
}

/* Steps the world `ticks` server ticks; returns nanoseconds spent inside
 * kz_server_step. */
static uint64_t run_ticks(kzt_world *w, uint32_t ticks, uint32_t t0)
{
    uint64_t spent = 0;
    uint32_t end = kz_server_tick(w->srv) + ticks;
    while (kz_server_tick(w->srv) < end) {
        w->now += STEP_NS;
        if (w->proxy)
            kz_proxy_pump(w->proxy, w->now);
        uint64_t a = kzb_now_ns();
        (void)kz_server_step(w->srv, w->now);
        spent += kzb_now_ns() - a;
        if (w->proxy)
            kz_proxy_pump(w->proxy, w->now);
        uint32_t tick = kz_server_tick(w->srv);
        for (uint32_t i = 0; i < w->n; i++) {
            (void)kz_client_update(w->clients[i], w->now);
            kzt_world_drive(w, i, tick - t0 + i);
        }
    }
    return spent;
}

static run_result run(uint32_t clients, uint32_t max_visible, int vr, int relay, uint64_t seed)
{
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.max_visible = max_visible;
    sc.spawn_radius = 15.0f;
    sc.bytes_per_second = 1000000;  /* measure what the world needs, not the cap */
    kzt_world w;
    memset(&w, 0, sizeof w);
    w.tap = tap;
    if (kzt_world_start(&w, clients, relay ? "loss=0" : NULL, &sc, seed) != KZ_OK)
        fail("world start");
    for (uint32_t i = 0; i < clients; i++) {
        w.bots[i].vr = (uint32_t)vr;
        w.bots[i].roam = 15.0f;
        w.bots[i].turn_ticks = 90;
    }
    if (kzt_world_connect_all(&w, STEP_NS, 30 * KZ_NS_PER_S) != clients)
        fail("not every client connected");
    uint32_t t0 = kz_server_tick(w.srv);
    (void)run_ticks(&w, WARM_TICKS, t0);
    uint64_t payload0 = 0, down0 = down_bytes, applied0 = 0, refused0 = 0;
    for (uint32_t i = 0; i < clients; i++) {
        const kz_counters *cc = kz_client_counters(w.clients[i]);
        payload0 += kz_counters_get(cc, KZ_CLIENT_C_SNAPSHOT_BYTES);
        applied0 += kz_counters_get(cc, KZ_CLIENT_C_SNAPSHOTS);
        refused0 += kz_counters_get(cc, KZ_CLIENT_C_SNAPSHOTS_NO_BASE) +
                    kz_counters_get(cc, KZ_CLIENT_C_DROP_MALFORMED);
    }
    kz_hist_config hc;
    kz_hist_config_default(&hc);
    hc.highest = 10ull * 1000 * 1000 * 1000;
    kz_hist ticks_h;
    if (kz_hist_init(&ticks_h, &hc, NULL) || kz_server_tick_hist_take(w.srv, &ticks_h) != KZ_OK)
        fail("histogram");
    kz_hist_reset(&ticks_h);
    uint64_t spent = run_ticks(&w, MEASURE_TICKS, t0);
    if (kz_server_tick_hist_take(w.srv, &ticks_h) != KZ_OK)
        fail("histogram");
    double tick_total = kz_hist_mean(&ticks_h) * (double)kz_hist_total(&ticks_h);
    kz_hist_fini(&ticks_h);
    uint64_t payload1 = 0, seen = 0, applied1 = 0, refused1 = 0;
    kz_client_entity view[8];
    for (uint32_t i = 0; i < clients; i++) {
        const kz_counters *cc = kz_client_counters(w.clients[i]);
        payload1 += kz_counters_get(cc, KZ_CLIENT_C_SNAPSHOT_BYTES);
        applied1 += kz_counters_get(cc, KZ_CLIENT_C_SNAPSHOTS);
        refused1 += kz_counters_get(cc, KZ_CLIENT_C_SNAPSHOTS_NO_BASE) +
                    kz_counters_get(cc, KZ_CLIENT_C_DROP_MALFORMED);
        seen += kz_client_view(w.clients[i], view, 0);
    }
    /* The payload counts applied snapshots only: a snapshot a client could
     * not decode would make the figure look smaller, so none may be. */
    if (refused1 != refused0)
        fail("a client refused a snapshot (no baseline or malformed)");
    double seconds = (double)MEASURE_TICKS / kz_server_tick_hz(w.srv);
    run_result r = {
        .ns_per_client_tick = (double)spent / ((double)MEASURE_TICKS * clients),
        .tick_ns_per_client_tick = tick_total / ((double)MEASURE_TICKS * clients),
        .payload_kbps = (double)(payload1 - payload0) * 8.0 / 1000.0 / seconds / clients,
        .wire_kbps = (double)(down_bytes - down0) * 8.0 / 1000.0 / seconds / clients,
        .visible = (double)seen / clients,
        .applied_hz = (double)(applied1 - applied0) / seconds / clients,
    };
    kzt_world_stop(&w);
    return r;
}

/* Least squares over (visible, ns) for the whole step and the tick. */
static void cpu_fit(const uint32_t visible[3], const double med[3], const double med_tick[3])
{
    double mx = 0, my = 0, sxx = 0, sxy = 0;
    for (int v = 0; v < 3; v++)
        mx += visible[v] / 3.0, my += med[v] / 3.0;
    for (int v = 0; v < 3; v++) {
        sxx += (visible[v] - mx) * (visible[v] - mx);
        sxy += (visible[v] - mx) * (med[v] - my);
    }
    double slope = sxy / sxx;
    kzb_report("slope per visible avatar (fit of the medians)", "ns", &slope, 1);
    double fixed = my - slope * mx;
    kzb_report("fixed cost per client-tick (intercept)", "ns", &fixed, 1);
    double ty = 0, txy = 0;
    for (int v = 0; v < 3; v++)
        ty += med_tick[v] / 3.0;
    for (int v = 0; v < 3; v++)
        txy += (visible[v] - mx) * (med_tick[v] - ty);
    double tslope = txy / sxx;
    kzb_report("  tick alone: slope per visible avatar", "ns", &tslope, 1);
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "world server: CPU per client-tick and downstream bandwidth");
    size_t runs = kzb_runs();
    if (runs > 64)
        runs = 64;
    /* --profile V: one long run at V visible, for perf; no report. */
    if (argc == 3 && strcmp(argv[1], "--profile") == 0) {
        run_result r = run(151, (uint32_t)atoi(argv[2]), 0, 0, 5);
        printf("%.0f ns per client-tick\n", r.ns_per_client_tick);
        return 0;
    }
    /* --down: the downstream table only. */
    int down_only = argc == 2 && strcmp(argv[1], "--down") == 0;
    const uint32_t visible[3] = {25, 50, 100};
    double med[3], med_tick[3];
    for (int v = 0; v < 3 && !down_only; v++) {
        double ns[64], tick_ns[64], vis[64];
        for (size_t k = 0; k < runs; k++) {
            run_result r = run(151, visible[v], 0, 0, 11 + k);
            ns[k] = r.ns_per_client_tick;
            tick_ns[k] = r.tick_ns_per_client_tick;
            vis[k] = r.visible;
        }
        char name[96];
        snprintf(name, sizeof name, "server CPU per client-tick, %u visible (mean seen %.0f)",
                 visible[v], kzb_median(vis, runs));
        kzb_report(name, "ns", ns, runs);
        snprintf(name, sizeof name, "  of which the tick (inputs, interest, encode), %u visible", visible[v]);
        kzb_report(name, "ns", tick_ns, runs);
        med[v] = kzb_median(ns, runs);
        med_tick[v] = kzb_median(tick_ns, runs);
    }
    if (!down_only)
        cpu_fit(visible, med, med_tick);


    for (int vr = 0; vr <= 1; vr++) {
        double pay[64], wire[64], hz[64];
        for (size_t k = 0; k < runs; k++) {
            run_result r = run(101, 100, vr, 1, 21 + k);
            pay[k] = r.payload_kbps;
            wire[k] = r.wire_kbps;
            hz[k] = r.applied_hz;
        }
        printf("%s: %.1f snapshots applied per client-second (median)\n", vr ? "VR" : "desktop",
               kzb_median(hz, runs));
        kzb_report(vr ? "down per client, 100 moving VR avatars: snapshot payload"
                      : "down per client, 100 moving desktop avatars: snapshot payload",
                   "kbit/s", pay, runs);
        kzb_report(vr ? "down per client, 100 moving VR avatars: on the wire (UDP payload)"
                      : "down per client, 100 moving desktop avatars: on the wire (UDP payload)",
                   "kbit/s", wire, runs);
    }
    kzb_end();
    return 0;
}
