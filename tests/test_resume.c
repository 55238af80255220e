/*
 * Sessions that survive (docs/PROTOCOL.md, "Resume"), end to end: a real
 * server and real clients on loopback, single-threaded, one injected
 * clock. A client's socket re-bound to a new address mid-walk, a client
 * paused for 5, 14 and 16 seconds against a 15 s grace, a client process
 * restarted with its token file, a kicked session's client trying to
 * resume, and a soak of 64 clients on a bad network changing address.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/client.h>
#include <kizuna/server.h>

#include "net/gate.h"
#include "support/world.h"

#define DT (KZ_NS_PER_S / 60)
#define GRACE_MS 15000u

/* Events one client has seen, by kind; enters and leaves of one watched
 * entity counted apart. */
typedef struct tally {
    uint32_t by_type[16];
    uint32_t enter_watched, leave_watched;
    uint32_t last_disconnect_code;
    uint32_t resumed_ms;
} tally;

static void drain(kz_client *c, tally *t, uint32_t watched)
{
    kz_client_event ev;
    while (kz_client_poll_event(c, &ev) == KZ_OK) {
        if (ev.type < 16)
            t->by_type[ev.type]++;
        if (ev.type == KZ_EV_ENTER && ev.entity == watched)
            t->enter_watched++;
        if (ev.type == KZ_EV_LEAVE && ev.entity == watched)
            t->leave_watched++;
        if (ev.type == KZ_EV_DISCONNECTED)
            t->last_disconnect_code = ev.code;
        if (ev.type == KZ_EV_RESUMED)
            t->resumed_ms = ev.code;
    }
}

/* One step of the world with client `frozen` not run at all (a paused
 * app: its socket keeps what arrives), -1 for none; client 0 walks. */
static void step(kzt_world *w, int frozen, uint32_t tick)
{
    w->now += DT;
    if (w->proxy)
        kz_proxy_pump(w->proxy, w->now);
    (void)kz_server_step(w->srv, w->now);
    if (w->proxy)
        kz_proxy_pump(w->proxy, w->now);
    for (uint32_t i = 0; i < w->n; i++) {
        if ((int)i == frozen)
            continue;
        if (i == 0)
            kzt_world_drive(w, 0, tick);
        (void)kz_client_update(w->clients[i], w->now);
    }
}

static void start(kzt_world *w, uint32_t n, const char *impair, uint32_t spare)
{
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.net.resume_grace_ms = GRACE_MS;
    sc.spawn_radius = 3.0f; /* everyone in everyone's view */
    memset(w, 0, sizeof *w);
    w->spare = spare;
    cr_assert_eq(kzt_world_start(w, n, impair, &sc, 11), KZ_OK);
    uint32_t connected = kzt_world_connect_all(w, DT, 60 * KZ_NS_PER_S);
    cr_assert_eq(connected, n, "%u of %u connected", connected, n);
}

static uint64_t gate_counter(kzt_world *w, uint32_t id)
{
    return kz_counters_get(kz_netserver_gate_counters(kz_server_net(w->srv)), id);
}

static uint64_t net_counter(kzt_world *w, uint32_t id)
{
    return kz_counters_get(kz_netserver_counters(kz_server_net(w->srv)), id);
}

static uint64_t world_counter(kzt_world *w, uint32_t id)
{
    return kz_counters_get(kz_server_counters(w->srv), id);
}

static float distance(const float a[3], const float b[3])
{
    float dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
    return sqrtf(dx * dx + dy * dy + dz * dz);
}

/* Steps `seconds` with client 0 walking, draining everyone's events. */
static uint32_t walk(kzt_world *w, tally *t, uint32_t watched, double seconds, uint32_t tick)
{
    uint32_t steps = (uint32_t)(seconds * 60);
    for (uint32_t s = 0; s < steps; s++) {
        step(w, -1, tick++);
        for (uint32_t i = 0; i < w->n; i++)
            drain(w->clients[i], &t[i], watched);
    }
    return tick;
}

Test(resume, an_address_change_mid_walk_moves_the_session_unseen, .timeout = 120)
{
    kzt_world w;
    tally t[3];
    memset(t, 0, sizeof t);
    start(&w, 3, NULL, 0);
    kz_client *mover = w.clients[0];
    uint32_t id = kz_client_self_id(mover), tick = 1;
    tick = walk(&w, t, id, 3.0, tick);
    kz_badge badge;
    cr_assert_eq(kz_client_badge(w.clients[1], id, &badge), KZ_OK, "the watcher sees the mover");
    cr_assert_eq(kz_client_badge(w.clients[2], id, &badge), KZ_OK, "the watcher sees the mover");
    tally before[3];
    memcpy(before, t, sizeof t);
    kz_avatar_state server_before, self_prev, self;
    cr_assert_eq(kz_server_entity(w.srv, id, &server_before), KZ_OK);
    cr_assert_eq(kz_client_self(mover, &self_prev), KZ_OK);

    cr_assert_eq(kz_client_rebind(mover, "127.0.0.2"), KZ_OK);
    float max_step = 0;
    uint32_t steps = 0;
    for (; steps < 5 * 60 && t[0].by_type[KZ_EV_RESUMED] == 0; steps++) {
        step(&w, -1, tick++);
        for (uint32_t i = 0; i < 3; i++)
            drain(w.clients[i], &t[i], id);
        cr_assert_eq(kz_client_self(mover, &self), KZ_OK);
        float d = distance(self.pos, self_prev.pos);
        max_step = d > max_step ? d : max_step;
        self_prev = self;
    }
    cr_assert_eq(t[0].by_type[KZ_EV_RECONNECTING], 1, "the application was told: reconnecting");
    cr_assert_eq(t[0].by_type[KZ_EV_RESUMED], 1, "and then: resumed");
    cr_assert_eq(kz_client_state(mover), KZ_CLIENT_CONNECTED);
    tick = walk(&w, t, id, 3.0, tick);
    kz_avatar_state server_after;
    cr_assert_eq(kz_server_entity(w.srv, id, &server_after), KZ_OK);

    cr_assert_eq(t[0].by_type[KZ_EV_DISCONNECTED], 0);
    for (uint32_t i = 1; i < 3; i++) {
        cr_assert_eq(t[i].leave_watched, before[i].leave_watched, "watcher %u saw no leave", i);
        cr_assert_eq(t[i].enter_watched, before[i].enter_watched, "watcher %u saw no enter", i);
        cr_assert_eq(kz_client_badge(w.clients[i], id, &badge), KZ_OK);
    }
    cr_assert_eq(gate_counter(&w, KZ_GATE_C_RESUMES), 1);
    cr_assert_eq(net_counter(&w, KZ_NET_C_SESSIONS_MOVED), 1);
    cr_assert_eq(net_counter(&w, KZ_NET_C_SESSIONS_CLOSED), 0);
    cr_assert_eq(world_counter(&w, KZ_WORLD_C_RESUMED), 1);
    cr_assert_eq(kz_server_clients(w.srv), 3);
    /* Position continuity: the predicted avatar never jumps (1.4 m/s walk,
     * one 1/60 s step is 2.3 cm; a correction would be far larger), and
     * the server's avatar kept walking after the move. */
    cr_assert_lt(max_step, 0.25f, "largest step of the own avatar: %.3f m", max_step);
    cr_assert_gt(distance(server_after.pos, server_before.pos), 2.0f);
    kzt_world_stop(&w);
}

/* Client 0 walks, then its application is paused for `seconds`. */
static void pause_for(uint32_t seconds, int survives)
{
    kzt_world w;
    tally t[2];
    memset(t, 0, sizeof t);
    start(&w, 2, NULL, 0);
    kz_client *paused = w.clients[0];
    uint32_t id = kz_client_self_id(paused), tick = 1;
    tick = walk(&w, t, id, 1.0, tick);
    uint64_t leaves_before = t[1].leave_watched;
    kz_avatar_state held_at, now_at;
    uint32_t steps = seconds * 60;
    for (uint32_t s = 0; s < steps; s++) {
        step(&w, 0, tick++);
        drain(w.clients[1], &t[1], id);
        if (s == 3 * 60)
            cr_assert_eq(kz_server_entity(w.srv, id, &held_at), KZ_OK);
        if (s > 3 * 60 && s + 60 < steps && s % 60 == 0) {
            cr_assert_eq(kz_server_entity(w.srv, id, &now_at), KZ_OK,
                         "the silent avatar is held at %u s", s / 60);
            cr_assert_float_eq(distance(now_at.pos, held_at.pos), 0.0f, 1e-6f,
                               "a detached avatar stands still");
        }
    }
    tick = walk(&w, t, id, 4.0, tick);
    if (survives) {
        cr_assert_eq(kz_client_state(paused), KZ_CLIENT_CONNECTED);
        cr_assert_eq(t[1].leave_watched, leaves_before, "nobody saw the avatar leave");
        cr_assert_eq(t[0].by_type[KZ_EV_DISCONNECTED], 0);
        cr_assert_eq(world_counter(&w, KZ_WORLD_C_DETACHED), 1);
        cr_assert_eq(world_counter(&w, KZ_WORLD_C_RESUMED), 1);
        cr_assert_eq(net_counter(&w, KZ_NET_C_SESSIONS_GRACE_ENDED), 0);
        cr_assert_eq(kz_server_entity(w.srv, id, &now_at), KZ_OK);
        cr_assert_gt(distance(now_at.pos, held_at.pos), 1.0f, "it walks again");
    } else {
        cr_assert_eq(kz_client_state(paused), KZ_CLIENT_DISCONNECTED);
        cr_assert_eq(t[0].by_type[KZ_EV_DISCONNECTED], 1);
        cr_assert_eq(t[1].leave_watched, leaves_before + 1, "past the grace the avatar leaves");
        cr_assert_eq(net_counter(&w, KZ_NET_C_SESSIONS_GRACE_ENDED), 1);
        cr_assert_neq(kz_server_entity(w.srv, id, &now_at), KZ_OK);
    }
    kzt_world_stop(&w);
}

Test(resume, a_client_paused_5_s_comes_back_in_place, .timeout = 120)
{
    pause_for(5, 1);
}

Test(resume, a_client_paused_14_s_comes_back_in_place, .timeout = 120)
{
    pause_for(14, 1);
}

Test(resume, a_client_paused_16_s_has_left, .timeout = 120)
{
    pause_for(16, 0);
}

/* The network itself goes silent for `seconds` (the relay drops every
 * datagram both ways) while both applications keep running. */
static void blackout(uint32_t seconds, int survives)
{
    kzt_world w;
    tally t[2];
    memset(t, 0, sizeof t);
    start(&w, 2, "none", 0);
    uint32_t id = kz_client_self_id(w.clients[0]), tick = 1;
    tick = walk(&w, t, id, 1.0, tick);
    kz_impair_config clear, dead;
    cr_assert_eq(kz_impair_profile("none", &clear), KZ_OK);
    dead = clear;
    dead.loss_pct = 100.0;
    cr_assert_eq(kz_proxy_set_impairment(w.proxy, &dead, &dead), KZ_OK);
    kz_avatar_state held_at, now_at;
    tick = walk(&w, t, id, 3.0, tick);
    cr_assert_eq(kz_server_entity(w.srv, id, &held_at), KZ_OK);
    tick = walk(&w, t, id, seconds - 3.0, tick);
    if (survives) {
        cr_assert_eq(kz_server_entity(w.srv, id, &now_at), KZ_OK);
        cr_assert_float_eq(distance(now_at.pos, held_at.pos), 0.0f, 1e-6f,
                           "a detached avatar stands still");
    }
    cr_assert_eq(kz_proxy_set_impairment(w.proxy, &clear, &clear), KZ_OK);
    tick = walk(&w, t, id, 5.0, tick);
    for (uint32_t i = 0; i < 2; i++) {
        if (survives) {
            cr_assert_eq(kz_client_state(w.clients[i]), KZ_CLIENT_CONNECTED, "client %u", i);
            cr_assert_eq(t[i].by_type[KZ_EV_DISCONNECTED], 0);
            cr_assert_geq(t[i].by_type[KZ_EV_RESUMED], 1, "client %u resumed", i);
        } else {
            cr_assert_eq(kz_client_state(w.clients[i]), KZ_CLIENT_DISCONNECTED, "client %u", i);
            cr_assert_eq(t[i].by_type[KZ_EV_DISCONNECTED], 1);
        }
    }
    if (survives) {
        cr_assert_eq(t[1].leave_watched, 0, "nobody saw the avatar leave");
        cr_assert_eq(world_counter(&w, KZ_WORLD_C_DETACHED), 2);
        cr_assert_eq(world_counter(&w, KZ_WORLD_C_RESUMED), 2);
        cr_assert_eq(kz_server_entity(w.srv, id, &now_at), KZ_OK);
        cr_assert_gt(distance(now_at.pos, held_at.pos), 1.0f, "it walks again");
    } else {
        cr_assert_eq(net_counter(&w, KZ_NET_C_SESSIONS_GRACE_ENDED), 2);
        cr_assert_eq(kz_server_clients(w.srv), 0);
    }
    kzt_world_stop(&w);
}

Test(resume, a_network_silent_5_s_keeps_every_session, .timeout = 120)
{
    blackout(5, 1);
}

Test(resume, a_network_silent_14_s_keeps_every_session, .timeout = 120)
{
    blackout(14, 1);
}

Test(resume, a_network_silent_16_s_ends_every_session, .timeout = 120)
{
    blackout(16, 0);
}

Test(resume, a_restarted_client_with_its_token_file_is_answered_at_once, .timeout = 120)
{
    kzt_world w;
    tally t[2];
    memset(t, 0, sizeof t);
    start(&w, 2, NULL, 1);
    uint32_t old_id = kz_client_self_id(w.clients[0]), tick = 1;
    tick = walk(&w, t, old_id, 1.0, tick);
    /* The old process is gone without a word (never run again); a new one
     * starts with the same token file. */
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.net.server.family = KZ_ADDR_IPV4;
    cc.net.server.ip[0] = 127;
    cc.net.server.ip[3] = 1;
    cc.net.server.port = kz_server_port(w.srv);
    kz_client *fresh = kz_client_create(&cc); /* default 5 s connect timeout */
    cr_assert_not_null(fresh);
    cr_assert_eq(kz_client_connect(fresh, &w.tokens[0], w.now), KZ_OK);
    tally tf;
    memset(&tf, 0, sizeof tf);
    kz_time_ns began = w.now;
    while (kz_client_state(fresh) != KZ_CLIENT_CONNECTED && w.now - began < 10 * KZ_NS_PER_S) {
        step(&w, 0, tick++);
        (void)kz_client_update(fresh, w.now);
        drain(w.clients[1], &t[1], old_id);
        drain(fresh, &tf, 0);
    }
    cr_assert_eq(kz_client_state(fresh), KZ_CLIENT_CONNECTED, "connected again");
    /* The old session is replaced once it has been silent for
     * KZ_DETACH_SILENCE_MS (a live one never is); the walk before the
     * restart took 1 s of it. */
    cr_assert_lt(w.now - began, 3 * KZ_NS_PER_S, "within %.2f s, inside the 5 s timeout",
                 (double)(w.now - began) / 1e9);
    cr_assert_eq(gate_counter(&w, KZ_GATE_C_REPLACED), 1);
    cr_assert_eq(net_counter(&w, KZ_NET_C_SESSIONS_REPLACED), 1);
    cr_assert_eq(kz_server_clients(w.srv), 2, "one session per client, no leftover");
    for (int i = 0; i < 120; i++) {
        step(&w, 0, tick++);
        (void)kz_client_update(fresh, w.now);
        drain(w.clients[1], &t[1], old_id);
    }
    cr_assert_eq(t[1].leave_watched, 1, "the replaced avatar left");
    cr_assert_neq(kz_client_self_id(fresh), 0);
    kz_badge badge;
    cr_assert_eq(kz_client_badge(w.clients[1], kz_client_self_id(fresh), &badge), KZ_OK,
                 "the new session's avatar is seen");
    kz_client_destroy(fresh);
    kzt_world_stop(&w);
}

Test(resume, a_kicked_session_cannot_be_resumed, .timeout = 120)
{
    kzt_world w;
    tally t[2];
    memset(t, 0, sizeof t);
    start(&w, 2, NULL, 0);
    kz_client *kicked = w.clients[0];
    uint32_t id = kz_client_self_id(kicked), tick = 1;
    tick = walk(&w, t, id, 0.5, tick);
    cr_assert_eq(kz_server_kick(w.srv, id, KZ_KICK_ADMIN, "test"), KZ_OK);
    /* The client changes address before the kick reaches it: its RESUME
     * names a session that is ending. */
    cr_assert_eq(kz_client_rebind(kicked, "127.0.0.3"), KZ_OK);
    tick = walk(&w, t, id, 3.0, tick);
    cr_assert_eq(kz_client_state(kicked), KZ_CLIENT_DISCONNECTED);
    cr_assert_eq(kz_client_reason(kicked), KZ_LOST_RESUME_REFUSED, "told at once: no session");
    cr_assert_eq(gate_counter(&w, KZ_GATE_C_RESUMES), 0, "nothing moved");
    cr_assert_eq(gate_counter(&w, KZ_GATE_C_RESUME_TICKET), 1);
    /* The kicked avatar stands still until its session is gone: the kick's
     * DISCONNECT cannot reach the old address, so the grace ends it. */
    tick = walk(&w, t, id, GRACE_MS / 1000.0, tick);
    cr_assert_eq(t[1].leave_watched, 1, "leaves seen %u, state %u, reason %u",
                 t[1].leave_watched, kz_client_state(kicked), kz_client_reason(kicked));
    kzt_world_stop(&w);
}

/* A client whose path flaps (silent 2.5 s, back for 1 s, ten times over)
 * changes its path 20 times; the audit log gets a bounded number of path
 * records (a burst of 4, then one per 10 s), each counting what it left
 * out, and the log verifies. */
Test(resume, a_flapping_path_writes_a_bounded_number_of_audit_records, .timeout = 120)
{
    kzt_audit a;
    cr_assert_eq(kzt_audit_open(&a), KZ_OK);
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.net.resume_grace_ms = GRACE_MS;
    sc.spawn_radius = 3.0f;
    sc.audit = a.log;
    kzt_world w;
    memset(&w, 0, sizeof w);
    cr_assert_eq(kzt_world_start(&w, 2, NULL, &sc, 3), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, DT, 20 * KZ_NS_PER_S), 2);
    uint32_t tick = 1;
    for (int flap = 0; flap < 10; flap++) {
        for (int s = 0; s < 150; s++) /* 2.5 s silent */
            step(&w, 0, tick++);
        for (int s = 0; s < 60; s++)
            step(&w, -1, tick++);
    }
    uint64_t changes = world_counter(&w, KZ_WORLD_C_DETACHED) + world_counter(&w, KZ_WORLD_C_RESUMED);
    cr_assert_eq(world_counter(&w, KZ_WORLD_C_DETACHED), 10, "every silence counted");
    cr_assert_eq(changes, 20);
    uint64_t id = 1; /* client 0's client id */
    kzt_world_stop(&w);
    cr_assert_eq(kz_audit_close(a.log), KZ_OK);
    a.log = NULL;
    int detach = kzt_audit_count(&a, KZ_AUDIT_DETACH, id, NULL);
    int resume = kzt_audit_close_count(&a, KZ_AUDIT_RESUME, id, NULL);
    cr_assert_geq(detach, 1, "the log verifies and holds path records");
    cr_assert_geq(resume, 1);
    /* 35 s of flapping: 4 + 3 refills at most. */
    cr_assert_leq(detach + resume, 7, "%d path records for 20 changes", detach + resume);
}

/* 64 clients through a bad network (200 ± 50 ms, 30 % bursts of loss),
 * each changing address once in the minute, at its own moment: every
 * session survives, nobody leaves. */
Test(resume, soak_64_clients_on_a_bad_network_changing_address, .timeout = 600)
{
    enum { N = 64 };
    kzt_world w;
    static tally t[N];
    memset(t, 0, sizeof t);
    /* Connect on a clean relay, then the network turns bad: what is tested
     * is that sessions survive, not how fast ENet connects through 30 %
     * bursts of loss. */
    start(&w, N, "none", N);
    kz_impair_config bad;
    cr_assert_eq(kz_impair_profile("bad", &bad), KZ_OK);
    cr_assert_eq(kz_proxy_set_impairment(w.proxy, &bad, &bad), KZ_OK);
    uint32_t tick = 1;
    const uint32_t minute = 60 * 60;
    for (uint32_t s = 0; s < minute; s++) {
        uint32_t who = s * N / minute;
        if (s == who * minute / N + 30) { /* client `who`'s moment */
            char ip[24];
            snprintf(ip, sizeof ip, "127.0.%u.%u", 1u + who / 200, 2u + who % 200);
            cr_assert_eq(kz_client_rebind(w.clients[who], ip), KZ_OK, "client %u", who);
        }
        step(&w, -1, tick++);
        for (uint32_t i = 0; i < N; i++)
            drain(w.clients[i], &t[i], 0);
    }
    /* The network clears; a client caught resuming from a burst of loss
     * finishes, and then every session must be there. */
    kz_impair_config clear;
    cr_assert_eq(kz_impair_profile("none", &clear), KZ_OK);
    cr_assert_eq(kz_proxy_set_impairment(w.proxy, &clear, &clear), KZ_OK);
    tick = walk(&w, t, 0, 5.0, tick);
    uint32_t connected = 0, lost = 0, resumed = 0;
    for (uint32_t i = 0; i < N; i++) {
        connected += kz_client_state(w.clients[i]) == KZ_CLIENT_CONNECTED;
        lost += t[i].by_type[KZ_EV_DISCONNECTED];
        resumed += t[i].by_type[KZ_EV_RESUMED] > 0;
    }
    cr_assert_eq(lost, 0, "no session was lost");
    cr_assert_eq(connected, N);
    cr_assert_eq(resumed, N, "every client came back after its address change");
    cr_assert_eq(kz_server_clients(w.srv), N);
    cr_assert_geq(gate_counter(&w, KZ_GATE_C_RESUMES), N);
    cr_assert_eq(net_counter(&w, KZ_NET_C_SESSIONS_CLOSED), 0);
    kzt_world_stop(&w);
}
