/*
 * The world in sync, end to end, in single-threaded mode: a server and
 * 200 clients on loopback through a relay that loses 10% of the datagrams
 * each way, driven by one injected clock for 60 simulated seconds. Every
 * client's view of every avatar it sees is compared with the server's own
 * history at the client's render time.
 *
 * Bots walk straight lines at constant speed and turn every 4 seconds.
 * Away from turns, linear interpolation between snapshot samples is exact
 * even across a lost snapshot, and so is the client's short extrapolation
 * when more snapshots in a row are lost than the interpolation delay
 * covers, so the client must match the server to within the quantization
 * error. Within a few ticks of a turn a lost snapshot cuts the corner (or
 * extrapolation overshoots it); there the error is bounded by how far an
 * avatar moves in the gap, and counted.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/world.h"

#define CLIENTS 200
#define SECONDS 60
#define HZ 30
#define STEP_NS (KZ_NS_PER_S / 240)   /* 4 client updates per tick */
#define HIST 512                      /* server ticks of history kept */
#define QUANT_M (1.0 / 1024 + 1e-4)   /* half a position unit plus float slack */
#define CORNER_TICKS 8

typedef struct {
    uint32_t id;
    float pos[HIST][3];
    uint32_t turned[HIST];   /* tick of the last velocity change at or before */
    float vel_prev[3];
} track;

static track tracks[CLIENTS];

static void record(kzt_world *w, uint32_t tick)
{
    for (uint32_t i = 0; i < CLIENTS; i++) {
        track *t = &tracks[i];
        kz_avatar_state st;
        if (!t->id || kz_server_entity(w->srv, t->id, &st) != KZ_OK)
            continue;
        memcpy(t->pos[tick % HIST], st.pos, sizeof st.pos);
        uint32_t last = t->turned[(tick - 1) % HIST];
        if (memcmp(st.vel, t->vel_prev, sizeof st.vel) != 0)
            last = tick;
        t->turned[tick % HIST] = last;
        memcpy(t->vel_prev, st.vel, sizeof st.vel);
    }
}

static int track_of(uint32_t id)
{
    for (int i = 0; i < CLIENTS; i++)
        if (tracks[i].id == id)
            return i;
    return -1;
}

Test(world, two_hundred_clients_agree_with_the_server_under_loss, .timeout = 900)
{
    kzt_world w;
    memset(&w, 0, sizeof w);
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.tick_hz = HZ;
    sc.spawn_radius = 30.0f;
    cr_assert_eq(kzt_world_start(&w, CLIENTS, "loss=10", &sc, 42), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 30 * KZ_NS_PER_S), CLIENTS,
                 "every client connects through 10%% loss");
    for (uint32_t i = 0; i < CLIENTS; i++) {
        uint32_t id = kz_client_self_id(w.clients[i]);
        kz_avatar_state st;
        cr_assert_eq(kz_server_entity(w.srv, id, &st), KZ_OK, "client %u's avatar exists", i);
        tracks[i].id = id;
    }

    uint64_t exact = 0, corner = 0, early = 0, checks_per_client[CLIENTS] = {0};
    double worst_exact = 0, worst_corner = 0;
    uint32_t start_tick = kz_server_tick(w.srv), last_tick = start_tick;
    uint32_t end_tick = start_tick + SECONDS * HZ;
    while (kz_server_tick(w.srv) < end_tick) {
        kzt_world_step(&w, STEP_NS);
        uint32_t tick = kz_server_tick(w.srv);
        if (tick == last_tick)
            continue;
        last_tick = tick;
        record(&w, tick);
        for (uint32_t i = 0; i < CLIENTS; i++)
            kzt_world_drive(&w, i, tick - start_tick + i);
        /* Check every client every 10 ticks, once history and render time
         * have settled. */
        if (getenv("KZ_TEST_VERBOSE") && tick % 30 == 0) {
            const kz_counters *k = kz_server_counters(w.srv);
            for (uint32_t j = 0; j < k->n_counters; j++)
                fprintf(stderr, "%s=%llu ", kz_counters_name(k, j), (unsigned long long)kz_counters_get(k, j));
            fprintf(stderr, "\n");
        }
        if (tick < start_tick + 3 * HZ || tick % 10 != 0)
            continue;
        for (uint32_t i = 0; i < CLIENTS; i++) {
            kz_client *c = w.clients[i];
            cr_assert_eq(kz_client_state(c), KZ_CLIENT_CONNECTED, "client %u stays connected", i);
            double rt = kz_client_render_tick(c);
            uint32_t r = (uint32_t)floor(rt);
            cr_assert(r + HIST / 2 > tick && r <= tick, "client %u renders at tick %u (server %u)",
                      i, r, tick);
            kz_client_entity view[128];
            uint32_t n = kz_client_view(c, view, 128);
            cr_assert_leq(n, 100, "at most max_visible entities in view");
            for (uint32_t k = 0; k < n; k++) {
                int t = track_of(view[k].id);
                cr_assert_geq(t, 0, "client %u sees unknown entity %u", i, view[k].id);
                cr_assert_neq(view[k].id, tracks[i].id, "no client sees itself as remote");
                kz_avatar_state at;
                int rc = kz_client_entity_at(c, view[k].id, (double)r, &at);
                if (rc == KZ_ERANGE) {
                    early++;  /* entered between r and the render time */
                    continue;
                }
                cr_assert_eq(rc, KZ_OK);
                const float *truth = tracks[t].pos[r % HIST];
                double e2 = 0;
                for (int a = 0; a < 3; a++)
                    e2 += ((double)at.pos[a] - truth[a]) * ((double)at.pos[a] - truth[a]);
                double err = sqrt(e2);
                /* Turns after `tick` cannot have reached the client yet. */
                uint32_t hi = r + CORNER_TICKS < tick ? r + CORNER_TICKS : tick;
                uint32_t turned = tracks[t].turned[hi % HIST];
                if (turned + CORNER_TICKS < r) {
                    if (err > QUANT_M && getenv("KZ_TEST_VERBOSE")) {
                        fprintf(stderr, "client %u entity %u r=%u rt=%.3f newest=%u tick=%u turned=%u\n", i,
                                view[k].id, r, rt, kz_client_server_tick(c), tick, turned);
                        for (int d = -6; d <= 4; d++) {
                            kz_avatar_state x;
                            (void)kz_client_entity_at(c, view[k].id, (double)(r + d), &x);
                            const float *tr = tracks[t].pos[(r + d) % HIST];
                            fprintf(stderr, "  %u: client %.4f %.4f server %.4f %.4f\n", r + d, x.pos[0], x.pos[2], tr[0], tr[2]);
                        }
                    }
                    cr_assert_leq(err, QUANT_M,
                                  "client %u: entity %u at tick %u off by %.4f m on a straight line",
                                  i, view[k].id, r, err);
                    exact++;
                    worst_exact = err > worst_exact ? err : worst_exact;
                } else {
                    cr_assert_leq(err, 0.5, "client %u: entity %u at tick %u off by %.3f m near a turn",
                                  i, view[k].id, r, err);
                    corner++;
                    worst_corner = err > worst_corner ? err : worst_corner;
                }
                checks_per_client[i]++;
            }
        }
    }
    const kz_counters *sc_counters = kz_server_counters(w.srv);
    uint64_t snaps = kz_counters_get(sc_counters, KZ_WORLD_C_SNAPSHOTS);
    fprintf(stderr, "world: %llu straight-line checks (worst %.5f m), %llu near turns (worst %.3f m), "
            "%llu skipped (entered after the render tick), %llu snapshots, %llu full-state\n",
            (unsigned long long)exact, worst_exact, (unsigned long long)corner, worst_corner,
            (unsigned long long)early,
            (unsigned long long)snaps,
            (unsigned long long)kz_counters_get(sc_counters, KZ_WORLD_C_SNAPSHOT_FULL));
    for (uint32_t i = 0; i < CLIENTS; i++)
        cr_assert_gt(checks_per_client[i], 100, "client %u saw avatars to check", i);
    cr_assert_gt(exact, 4 * corner, "most checks fall on straight lines");
    kz_impair_stats up, down;
    kz_proxy_stats(w.proxy, &up, &down);
    cr_assert_gt((up.dropped_loss + down.dropped_loss) * 100, (up.sent + down.sent) * 8,
                 "the relay really lost about 10%%");
    kzt_world_stop(&w);
}
