/*
 * Threaded mode on loopback: the server's transport runs its I/O thread,
 * the test thread is the simulation thread and drives 500 clients in real
 * time for 20 seconds. Every client must stay connected and apply
 * snapshots at the tick rate (90% of the ticks, allowing for scheduling
 * on a shared 2-core machine).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "support/world.h"

#define CLIENTS 500
#define SECONDS 20
#define HZ 30

static kz_time_ns mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (kz_time_ns)ts.tv_sec * KZ_NS_PER_S + (kz_time_ns)ts.tv_nsec;
}

/* Runs the world on the real clock until `until` (clock reading). */
static void run_until(kzt_world *w, kz_time_ns until, uint32_t start_tick)
{
    for (;;) {
        kz_time_ns now = mono();
        if (now >= until)
            return;
        w->now = now;
        (void)kz_server_step(w->srv, now);
        uint32_t tick = kz_server_tick(w->srv);
        for (uint32_t i = 0; i < w->n; i++) {
            (void)kz_client_update(w->clients[i], now);
            kzt_world_drive(w, i, tick - start_tick + i);
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

Test(world_threaded, five_hundred_clients_stay_in_sync, .timeout = 300)
{
    kzt_world w;
    memset(&w, 0, sizeof w);
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.tick_hz = HZ;
    sc.spawn_radius = 200.0f;
    sc.net.threaded = 1;
    cr_assert_eq(kzt_world_start(&w, CLIENTS, NULL, &sc, 7), KZ_OK);
    /* Connect on the real clock. */
    kz_time_ns deadline = mono() + 60 * KZ_NS_PER_S;
    uint32_t connected = 0;
    while (connected < CLIENTS && mono() < deadline) {
        run_until(&w, mono() + 20 * KZ_NS_PER_MS, 0);
        connected = 0;
        for (uint32_t i = 0; i < CLIENTS; i++)
            connected += kz_client_state(w.clients[i]) == KZ_CLIENT_CONNECTED;
    }
    cr_assert_eq(connected, CLIENTS, "all 500 connect (%u did)", connected);

    uint64_t before[CLIENTS];
    for (uint32_t i = 0; i < CLIENTS; i++)
        before[i] = kz_counters_get(kz_client_counters(w.clients[i]), KZ_CLIENT_C_SNAPSHOTS);
    uint32_t t0 = kz_server_tick(w.srv);
    run_until(&w, mono() + SECONDS * KZ_NS_PER_S, t0);
    uint32_t ticks = kz_server_tick(w.srv) - t0;
    cr_assert_geq(ticks, SECONDS * HZ * 9 / 10, "the server kept its tick rate (%u ticks)", ticks);
    uint64_t worst = UINT64_MAX;
    for (uint32_t i = 0; i < CLIENTS; i++) {
        cr_assert_eq(kz_client_state(w.clients[i]), KZ_CLIENT_CONNECTED, "client %u connected", i);
        uint64_t got = kz_counters_get(kz_client_counters(w.clients[i]), KZ_CLIENT_C_SNAPSHOTS) - before[i];
        worst = got < worst ? got : worst;
        cr_assert_geq(got * 10, (uint64_t)ticks * 9, "client %u applied %llu snapshots of %u ticks", i,
                      (unsigned long long)got, ticks);
    }
    const kz_hist *h = kz_server_tick_hist(w.srv);
    fprintf(stderr, "threaded: %u ticks, worst client %llu snapshots, tick p50 %.2f ms p99 %.2f ms\n",
            ticks, (unsigned long long)worst, kz_hist_percentile(h, 50) / 1e6,
            kz_hist_percentile(h, 99) / 1e6);
    kzt_world_stop(&w);
}
