/*
 * The world server with its transport's I/O threads (two hosts), driven in
 * real time by this thread with `clients` clients for `seconds`: the
 * ThreadSanitizer build's check of the server's thread boundary (sim thread
 * <-> I/O threads through the rings). Every client must stay connected and
 * apply at least 80% of the ticks as snapshots. Then, as a host's reload and
 * stop would: the trusted backend keys are replaced from this thread while
 * the I/O threads run the gate, and the world is shut down and drained;
 * every client must learn why (KZ_KICK_SHUTDOWN) and the world empty.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "stress.h"
#include "support/world.h"

static kz_time_ns mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (kz_time_ns)ts.tv_sec * KZ_NS_PER_S + (kz_time_ns)ts.tv_nsec;
}

static void pump(kzt_world *w, kz_time_ns until)
{
    while (mono() < until) {
        w->now = mono();
        (void)kz_server_step(w->srv, w->now);
        uint32_t tick = kz_server_tick(w->srv);
        for (uint32_t i = 0; i < w->n; i++) {
            (void)kz_client_update(w->clients[i], w->now);
            kzt_world_drive(w, i, tick + i);
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

kzt_result kzt_world_threaded(uint32_t clients, uint32_t seconds)
{
    kzt_result r;
    memset(&r, 0, sizeof r);
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.net.threaded = 1;
    sc.net.io_threads = 2;
    sc.spawn_radius = 30.0f;
    kzt_world w;
    memset(&w, 0, sizeof w);
    if (kzt_world_start(&w, clients, NULL, &sc, 9) != KZ_OK) {
        r.violations = 1;
        snprintf(r.first, sizeof r.first, "world did not start");
        return r;
    }
    kz_time_ns deadline = mono() + 30 * KZ_NS_PER_S;
    uint32_t connected = 0;
    while (connected < clients && mono() < deadline) {
        pump(&w, mono() + 20 * KZ_NS_PER_MS);
        connected = 0;
        for (uint32_t i = 0; i < clients; i++)
            connected += kz_client_state(w.clients[i]) == KZ_CLIENT_CONNECTED;
    }
    uint64_t before = 0, after = 0;
    for (uint32_t i = 0; i < clients; i++)
        before += kz_counters_get(kz_client_counters(w.clients[i]), KZ_CLIENT_C_SNAPSHOTS);
    uint32_t t0 = kz_server_tick(w.srv);
    pump(&w, mono() + (kz_time_ns)seconds * KZ_NS_PER_S);
    uint32_t ticks = kz_server_tick(w.srv) - t0;
    for (uint32_t i = 0; i < clients; i++) {
        uint64_t got = kz_counters_get(kz_client_counters(w.clients[i]), KZ_CLIENT_C_SNAPSHOTS);
        after += got;
        if (kz_client_state(w.clients[i]) != KZ_CLIENT_CONNECTED && !r.violations++)
            snprintf(r.first, sizeof r.first, "client %u not connected (state %u)", i,
                     kz_client_state(w.clients[i]));
    }
    r.delivered = after - before;
    if (r.delivered * 10 < (uint64_t)ticks * clients * 8 && !r.violations++)
        snprintf(r.first, sizeof r.first, "%llu snapshots applied for %u ticks x %u clients",
                 (unsigned long long)r.delivered, ticks, clients);

    /* Reload: replace the trusted keys under the I/O threads' feet. */
    uint8_t trusted[2][KZ_SIGN_PUBLIC_KEY_BYTES];
    memcpy(trusted[0], w.keys.backend.public_key, sizeof trusted[0]);
    memset(trusted[1], 0x5a, sizeof trusted[1]);
    for (uint32_t k = 0; k < 20; k++) {
        if (kz_netserver_trust(kz_server_net(w.srv), trusted, 1 + k % 2) != KZ_OK && !r.violations++)
            snprintf(r.first, sizeof r.first, "trust refused");
        pump(&w, mono() + 10 * KZ_NS_PER_MS);
    }
    /* Stop: every client told, the world empty. */
    kz_server_shutdown(w.srv, NULL);
    deadline = mono() + 10 * KZ_NS_PER_S;
    while (kz_server_clients(w.srv) > 0 && mono() < deadline)
        pump(&w, mono() + 20 * KZ_NS_PER_MS);
    for (uint32_t i = 0; i < clients; i++)
        if (kz_client_reason(w.clients[i]) != KZ_KICK_SHUTDOWN && !r.violations++)
            snprintf(r.first, sizeof r.first, "client %u: state %u reason %u after shutdown", i,
                     kz_client_state(w.clients[i]), kz_client_reason(w.clients[i]));
    if (kz_server_clients(w.srv) != 0 && !r.violations++)
        snprintf(r.first, sizeof r.first, "%u clients left 10 s after shutdown",
                 kz_server_clients(w.srv));
    kzt_world_stop(&w);
    return r;
}
