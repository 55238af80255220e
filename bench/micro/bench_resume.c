/*
 * Resume latency, real time: a world of two clients behind the impairing
 * relay with 50 ms added each way (100 ms round trip), a 30 Hz server with
 * its I/O thread; one client changes address (kz_client_rebind to a new
 * 127.0.0.x) again and again, and each time the bench measures from the
 * call to the first snapshot the client applies afterwards. The old
 * socket is closed by the rebind, so that snapshot came on the new path.
 * Target (issue): <= 1 round trip + 1 tick at the 99th percentile.
 *
 *   kz-bench-resume [trials]   (default 100)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kizuna/client.h>
#include <kizuna/server.h>

#include "kzb_util.h"
#include "support/world.h"

#define DELAY_MS 50
#define TICK_HZ 30

static void fail(const char *what)
{
    fprintf(stderr, "bench_resume: %s\n", what);
    exit(1);
}

/* Runs the world once at the real time since `t0` (offset so the world's
 * clock, which started at 1, moves on in real time). */
static void pump(kzt_world *w, uint64_t t0)
{
    w->now = 1 + (kzb_now_ns() - t0);
    kz_proxy_pump(w->proxy, w->now);
    (void)kz_server_step(w->srv, w->now);
    kz_proxy_pump(w->proxy, w->now);
    for (uint32_t i = 0; i < w->n; i++)
        (void)kz_client_update(w->clients[i], w->now);
    struct timespec nap = {0, 200000};
    nanosleep(&nap, NULL);
}

static uint64_t snapshots(const kz_client *c)
{
    return kz_counters_get(kz_client_counters(c), KZ_CLIENT_C_SNAPSHOTS);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    uint32_t trials = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 100;
    if (trials == 0 || trials > 1000)
        fail("trials: 1..1000");
    kzb_begin(argc, argv, "resume: address change to the first snapshot on the new path");
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.tick_hz = TICK_HZ;
    sc.spawn_radius = 3.0f;
    sc.net.threaded = 1;
    sc.net.resume_grace_ms = KZ_RESUME_DEFAULT_GRACE_MS;
    kzt_world w;
    memset(&w, 0, sizeof w);
    w.spare = trials + 4; /* the relay keeps one upstream socket per client address */
    char profile[32];
    snprintf(profile, sizeof profile, "delay=%u", DELAY_MS);
    if (kzt_world_start(&w, 2, profile, &sc, 5) != KZ_OK)
        fail("world");
    uint64_t t0 = kzb_now_ns();
    while (kz_client_state(w.clients[0]) != KZ_CLIENT_CONNECTED ||
           kz_client_state(w.clients[1]) != KZ_CLIENT_CONNECTED || snapshots(w.clients[0]) < 30)
        if (kzb_now_ns() - t0 > 30 * KZ_NS_PER_S)
            fail("clients did not connect");
        else
            pump(&w, t0);
    double *ms = calloc(trials, sizeof *ms);
    if (!ms)
        fail("memory");
    for (uint32_t t = 0; t < trials; t++) {
        char ip[24];
        snprintf(ip, sizeof ip, "127.0.%u.%u", 1u + (t + 2) / 250, 1u + (t + 2) % 250);
        uint64_t before = snapshots(w.clients[0]), start = kzb_now_ns();
        if (kz_client_rebind(w.clients[0], ip) != KZ_OK)
            fail("rebind");
        while (snapshots(w.clients[0]) == before) {
            if (kzb_now_ns() - start > 10 * KZ_NS_PER_S)
                fail("no snapshot on the new path within 10 s");
            pump(&w, t0);
        }
        ms[t] = (double)(kzb_now_ns() - start) / 1e6;
        /* Settle on the new path before the next change, for 300 ms plus a
         * pseudo-random part of a tick, so the changes fall at every phase
         * of the server's tick (a whole number of ticks would lock them to
         * one phase). */
        uint64_t settle = 300 * 1000000ull + (uint64_t)((t * 2654435761u) % 1000u) *
                                                 (KZ_NS_PER_S / TICK_HZ) / 1000u;
        for (uint64_t until = kzb_now_ns() + settle; kzb_now_ns() < until;)
            pump(&w, t0);
    }
    if (kz_client_state(w.clients[0]) != KZ_CLIENT_CONNECTED)
        fail("the mover lost its session");
    qsort(ms, trials, sizeof *ms, cmp);
    double rtt = 2.0 * DELAY_MS, tick = 1000.0 / TICK_HZ;
    printf("trials %u, round trip %.0f ms (relay), tick %.1f ms: target <= %.1f ms\n", trials,
           rtt, tick, rtt + tick);
    printf("address change to first snapshot: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n",
           ms[trials / 2], ms[trials * 9 / 10], ms[(trials * 99) / 100], ms[trials - 1]);
    printf("in round trips: p50 %.2f, p99 %.2f\n", ms[trials / 2] / rtt,
           ms[(trials * 99) / 100] / rtt);
    kzb_end();
    free(ms);
    kzt_world_stop(&w);
    return 0;
}
