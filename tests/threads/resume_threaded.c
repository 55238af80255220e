/*
 * Resume under the real threads: the world server with two I/O hosts and
 * resume on, `clients` clients driven in real time by this thread. Every
 * client changes address once (kz_client_rebind to its own 127.0.x.y):
 * the RESUME is handled by whichever host's socket it reaches (the gate is
 * shared under its lock) and the session moves on the host that serves
 * it, at once or at the client's first datagram there. One client is also
 * paused for 3 s (its session detached on its host, the simulation told
 * through the ring, then attached again). The ThreadSanitizer build's
 * check of the resume paths across threads; every session must survive.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "net/gate.h"
#include "stress.h"
#include "support/world.h"

static kz_time_ns mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (kz_time_ns)ts.tv_sec * KZ_NS_PER_S + (kz_time_ns)ts.tv_nsec;
}

/* Runs the world until `until`; client `paused` is not run. */
static void pump(kzt_world *w, kz_time_ns until, int paused)
{
    while (mono() < until) {
        w->now = mono();
        (void)kz_server_step(w->srv, w->now);
        uint32_t tick = kz_server_tick(w->srv);
        for (uint32_t i = 0; i < w->n; i++) {
            if ((int)i == paused)
                continue;
            (void)kz_client_update(w->clients[i], w->now);
            kzt_world_drive(w, i, tick + i);
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static uint32_t count_state(const kzt_world *w, uint32_t state)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->n; i++)
        n += kz_client_state(w->clients[i]) == state;
    return n;
}

kzt_result kzt_resume_threaded(uint32_t clients)
{
    kzt_result r;
    memset(&r, 0, sizeof r);
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.net.threaded = 1;
    sc.net.io_threads = 2;
    sc.net.resume_grace_ms = KZ_RESUME_DEFAULT_GRACE_MS;
    sc.spawn_radius = 30.0f;
    kzt_world w;
    memset(&w, 0, sizeof w);
    if (kzt_world_start(&w, clients, NULL, &sc, 13) != KZ_OK) {
        r.violations = 1;
        snprintf(r.first, sizeof r.first, "world did not start");
        return r;
    }
    kz_time_ns deadline = mono() + 30 * KZ_NS_PER_S;
    while (count_state(&w, KZ_CLIENT_CONNECTED) < clients && mono() < deadline)
        pump(&w, mono() + 20 * KZ_NS_PER_MS, -1);
    for (uint32_t i = 0; i < clients; i++) {
        char ip[24];
        snprintf(ip, sizeof ip, "127.0.%u.%u", 2u + i / 200, 2u + i % 200);
        if (kz_client_rebind(w.clients[i], ip) != KZ_OK && !r.violations++)
            snprintf(r.first, sizeof r.first, "client %u: rebind to %s refused", i, ip);
        pump(&w, mono() + 50 * KZ_NS_PER_MS, -1);
    }
    pump(&w, mono() + 3 * KZ_NS_PER_S, 0); /* client 0 paused: detached */
    pump(&w, mono() + 3 * KZ_NS_PER_S, -1);
    r.delivered = kz_counters_get(kz_netserver_gate_counters(kz_server_net(w.srv)),
                                  KZ_GATE_C_RESUMES);
    for (uint32_t i = 0; i < clients; i++)
        if (kz_client_state(w.clients[i]) != KZ_CLIENT_CONNECTED && !r.violations++)
            snprintf(r.first, sizeof r.first, "client %u: state %u reason %u", i,
                     kz_client_state(w.clients[i]), kz_client_reason(w.clients[i]));
    if (kz_server_clients(w.srv) != clients && !r.violations++)
        snprintf(r.first, sizeof r.first, "%u avatars for %u clients", kz_server_clients(w.srv),
                 clients);
    if (r.delivered < clients && !r.violations++)
        snprintf(r.first, sizeof r.first, "%llu moves for %u address changes",
                 (unsigned long long)r.delivered, clients);
    if (kz_counters_get(kz_server_counters(w.srv), KZ_WORLD_C_DETACHED) < 1 && !r.violations++)
        snprintf(r.first, sizeof r.first, "the paused client was never detached");
    kzt_world_stop(&w);
    return r;
}
