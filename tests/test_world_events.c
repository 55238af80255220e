/*
 * World events and actions end to end (single-threaded, loopback, no
 * loss): badges arrive with ENTER exactly as the tokens said; chat reaches
 * those who see the sender and no one else; invalid or too fast chat is
 * dropped and counted; voice stays within the voice radius and under the
 * sender's rate cap and sets the speaking flag; grabs need reach and a free
 * object; a speed hack is clamped and the client told; malformed messages
 * are counted drops; a kick reaches the client with its reason and text.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <kizuna/token.h>

#include "sim/wire.h"
#include "support/world.h"

#define TICK_NS (KZ_NS_PER_S / 30)
#define STEP_NS (KZ_NS_PER_S / 120)

static kzt_world w;

static void start(uint32_t n, float spawn_radius)
{
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = spawn_radius;
    cr_assert_eq(kzt_world_start(&w, n, NULL, &sc, 5), KZ_OK);  /* keeps w.spare */
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), n);
}

static void run_ticks(uint32_t ticks)
{
    uint32_t end = kz_server_tick(w.srv) + ticks;
    while (kz_server_tick(w.srv) < end)
        kzt_world_step(&w, STEP_NS);
}

/* Counts events of `type` (from `from`, 0 = anyone) queued on client i,
 * draining the queue; the last matching event is copied to *last. */
static uint32_t drain(uint32_t i, uint32_t type, uint32_t from, kz_client_event *last,
                      uint8_t *data, uint32_t cap)
{
    uint32_t n = 0;
    kz_client_event ev;
    while (kz_client_poll_event(w.clients[i], &ev) == KZ_OK) {
        if (ev.type != type || (from && ev.entity != from))
            continue;
        n++;
        if (last)
            *last = ev;
        if (data && ev.len <= cap)
            memcpy(data, ev.data, ev.len);
    }
    return n;
}

static uint64_t counter(uint32_t id)
{
    return kz_counters_get(kz_server_counters(w.srv), id);
}

static void walk(uint32_t i, float vx, float vz)
{
    kz_avatar_state in;
    kz_avatar_state_rest(&in);
    in.vel[0] = vx;
    in.vel[2] = vz;
    cr_assert_eq(kz_client_send_input(w.clients[i], &in), KZ_OK);
}

static float distance(uint32_t a, uint32_t b)
{
    kz_avatar_state sa, sb;
    cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[a]), &sa), KZ_OK);
    cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[b]), &sb), KZ_OK);
    return hypotf(sa.pos[0] - sb.pos[0], sa.pos[2] - sb.pos[2]);
}

Test(world_events, enter_carries_the_badge_from_the_token)
{
    start(3, 5.0f);
    run_ticks(30);
    for (uint32_t i = 0; i < 3; i++) {
        uint32_t seen = 0;
        kz_client_event ev;
        while (kz_client_poll_event(w.clients[i], &ev) == KZ_OK) {
            if (ev.type != KZ_EV_ENTER)
                continue;
            seen++;
            /* kzt_mint: client id k, name "test-<k>", method "none", human. */
            uint32_t k;
            for (k = 0; k < 3; k++)
                if (kz_client_self_id(w.clients[k]) == ev.entity)
                    break;
            cr_assert_lt(k, 3, "ENTER names a real avatar");
            char want[32];
            snprintf(want, sizeof want, "test-%u", k + 1);
            cr_assert_str_eq(ev.badge.name, want);
            cr_assert_str_eq(ev.badge.method, "none");
            cr_assert_eq(ev.badge.actor_kind, KZ_ACTOR_HUMAN);
            cr_assert_eq(ev.badge.acting_for, 0);
            kz_badge b;
            cr_assert_eq(kz_client_badge(w.clients[i], ev.entity, &b), KZ_OK);
            cr_assert_str_eq(b.name, want);
        }
        cr_assert_eq(seen, 2, "client %u saw both others enter", i);
    }
    kzt_world_stop(&w);
}

Test(world_events, chat_reaches_those_who_see_the_sender)
{
    start(3, 3.0f);
    run_ticks(20);
    for (uint32_t i = 0; i < 3; i++)
        drain(i, 0, 0, NULL, NULL, 0);
    /* Client 2 walks out of view range (55 m leave radius) at 8 m/s. */
    walk(2, 8.0f, 0.0f);
    run_ticks(30 * 10);
    walk(2, 0, 0);
    run_ticks(10);
    cr_assert_gt(distance(0, 2), 60.0f);
    drain(0, 0, 0, NULL, NULL, 0);
    drain(1, 0, 0, NULL, NULL, 0);
    drain(2, 0, 0, NULL, NULL, 0);

    const char *text = "héllo, wörld";
    cr_assert_eq(kz_client_chat(w.clients[0], text, (uint32_t)strlen(text)), KZ_OK);
    run_ticks(10);
    uint32_t sender = kz_client_self_id(w.clients[0]);
    kz_client_event ev;
    uint8_t got[300];
    cr_assert_eq(drain(1, KZ_EV_CHAT, sender, &ev, got, sizeof got), 1, "the neighbour hears it");
    cr_assert_eq(ev.len, strlen(text));
    cr_assert(memcmp(got, text, ev.len) == 0);
    cr_assert_eq(drain(0, KZ_EV_CHAT, sender, NULL, NULL, 0), 1, "the sender gets its echo");
    cr_assert_eq(drain(2, KZ_EV_CHAT, 0, NULL, NULL, 0), 0, "out of view: nothing");
    cr_assert_eq(counter(KZ_WORLD_C_CHAT), 1);
    kzt_world_stop(&w);
}

Test(world_events, bad_and_flooding_chat_is_dropped_and_counted)
{
    start(2, 3.0f);
    run_ticks(10);
    /* The client library refuses invalid UTF-8 and empty or long text. */
    cr_assert_eq(kz_client_chat(w.clients[0], "\xff\xfe", 2), KZ_EINVAL);
    cr_assert_eq(kz_client_chat(w.clients[0], "", 0), KZ_EINVAL);
    char big[300];
    memset(big, 'a', sizeof big);
    cr_assert_eq(kz_client_chat(w.clients[0], big, sizeof big), KZ_EINVAL);
    /* Twenty lines at once: the bucket allows a burst of 2 x 4 per second. */
    for (int k = 0; k < 20; k++)
        cr_assert_eq(kz_client_chat(w.clients[0], "spam", 4), KZ_OK);
    run_ticks(10);
    cr_assert_eq(counter(KZ_WORLD_C_CHAT), 8, "burst of 8 relayed");
    cr_assert_eq(counter(KZ_WORLD_C_DROP_RATE_CHAT), 12, "the rest dropped and counted");
    uint32_t sender = kz_client_self_id(w.clients[0]);
    cr_assert_eq(drain(1, KZ_EV_CHAT, sender, NULL, NULL, 0), 8);
    kzt_world_stop(&w);
}

Test(world_events, voice_stays_within_radius_rate_and_sets_speaking)
{
    start(3, 2.0f);
    run_ticks(20);
    /* Client 2 moves to 35 m: in view (50 m) but beyond voice (25 m). */
    walk(2, 7.0f, 0.0f);
    run_ticks(150);
    walk(2, 0, 0);
    run_ticks(15);
    float d = distance(0, 2);
    cr_assert(d > 26.0f && d < 50.0f, "client 2 at %.1f m", d);
    for (uint32_t i = 0; i < 3; i++)
        drain(i, 0, 0, NULL, NULL, 0);
    uint8_t frame[200];
    memset(frame, 0xA5, sizeof frame);
    /* 60 frames of 200 bytes in 2 s = 6 kB/s: under the 8 kB/s cap. */
    for (int k = 0; k < 60; k++) {
        cr_assert_eq(kz_client_voice(w.clients[0], frame, sizeof frame), KZ_OK);
        run_ticks(1);
    }
    uint32_t sender = kz_client_self_id(w.clients[0]);
    kz_avatar_state st;
    cr_assert_eq(kz_server_entity(w.srv, sender, &st), KZ_OK);
    cr_assert(st.flags & KZ_AVATAR_SPEAKING, "the speaker's flag is set while it talks");
    run_ticks(5);
    uint32_t near = drain(1, KZ_EV_VOICE, sender, NULL, NULL, 0);
    cr_assert_geq(near, 55, "the near listener got the frames (%u)", near);
    cr_assert_eq(drain(2, KZ_EV_VOICE, 0, NULL, NULL, 0), 0, "beyond the voice radius: nothing");
    cr_assert_eq(drain(0, KZ_EV_VOICE, sender, NULL, NULL, 0), 0, "no echo of one's own voice");
    run_ticks(30);
    cr_assert_eq(kz_server_entity(w.srv, sender, &st), KZ_OK);
    cr_assert_eq(st.flags & KZ_AVATAR_SPEAKING, 0, "the flag drops after silence");
    /* A flood: 100 frames at once is 20 kB against a bucket of 8 kB. */
    uint64_t drops = counter(KZ_WORLD_C_DROP_RATE_VOICE);
    for (int k = 0; k < 100; k++)
        cr_assert_eq(kz_client_voice(w.clients[0], frame, sizeof frame), KZ_OK);
    run_ticks(5);
    cr_assert_geq(counter(KZ_WORLD_C_DROP_RATE_VOICE) - drops, 55, "the flood is cut at the cap");
    kzt_world_stop(&w);
}

Test(world_events, grabs_need_reach_and_a_free_object)
{
    start(2, 3.0f);
    run_ticks(10);
    uint32_t me = kz_client_self_id(w.clients[0]);
    kz_avatar_state st;
    cr_assert_eq(kz_server_entity(w.srv, me, &st), KZ_OK);
    float near[3] = {st.pos[0] + 0.5f, 0.0f, st.pos[2]};
    float far[3] = {st.pos[0] + 30.0f, 0.0f, st.pos[2]};
    uint32_t cup = 0, rock = 0;
    cr_assert_eq(kz_server_object_add(w.srv, near, NULL, &cup), KZ_OK);
    cr_assert_eq(kz_server_object_add(w.srv, far, NULL, &rock), KZ_OK);
    /* Client 1 may be more than 2 m away: bring it next to the cup first. */
    cr_assert_eq(kz_client_grab(w.clients[0], rock), KZ_OK);
    run_ticks(3);
    cr_assert_eq(counter(KZ_WORLD_C_GRABS), 0, "out of reach: refused");
    cr_assert_eq(counter(KZ_WORLD_C_DROP_REFUSED), 1);
    cr_assert_eq(kz_client_grab(w.clients[0], cup), KZ_OK);
    run_ticks(3);
    cr_assert_eq(counter(KZ_WORLD_C_GRABS), 1);
    cr_assert_eq(kz_server_entity(w.srv, cup, &st), KZ_OK);
    cr_assert_eq(st.holder, me, "the cup is held by client 0");
    /* Held objects follow the holder. */
    walk(0, 2.0f, 0.0f);
    run_ticks(30);
    walk(0, 0, 0);
    run_ticks(3);
    kz_avatar_state holder, obj;
    cr_assert_eq(kz_server_entity(w.srv, me, &holder), KZ_OK);
    cr_assert_eq(kz_server_entity(w.srv, cup, &obj), KZ_OK);
    cr_assert_lt(fabsf(obj.pos[0] - holder.pos[0]), 0.01f, "the cup moved with its holder");
    /* Someone else can neither take it nor release it. */
    cr_assert_eq(kz_client_grab(w.clients[1], cup), KZ_OK);
    cr_assert_eq(kz_client_release(w.clients[1], cup), KZ_OK);
    run_ticks(3);
    cr_assert_eq(counter(KZ_WORLD_C_GRABS), 1);
    cr_assert_eq(counter(KZ_WORLD_C_DROP_REFUSED), 3);
    cr_assert_eq(kz_server_entity(w.srv, cup, &st), KZ_OK);
    cr_assert_eq(st.holder, me);
    /* A grab of something that is not an object (an avatar) is refused. */
    cr_assert_eq(kz_client_grab(w.clients[1], me), KZ_OK);
    run_ticks(3);
    cr_assert_eq(counter(KZ_WORLD_C_DROP_REFUSED), 4);
    cr_assert_eq(kz_client_release(w.clients[0], cup), KZ_OK);
    run_ticks(3);
    cr_assert_eq(kz_server_entity(w.srv, cup, &st), KZ_OK);
    cr_assert_eq(st.holder, 0, "released");
    kzt_world_stop(&w);
}

Test(world_events, kick_reaches_the_client_with_reason_and_text)
{
    start(2, 3.0f);
    run_ticks(10);
    drain(0, 0, 0, NULL, NULL, 0);
    uint32_t me = kz_client_self_id(w.clients[0]);
    cr_assert_eq(kz_server_kick(w.srv, me, KZ_KICK_ADMIN, "please read the rules"), KZ_OK);
    for (int k = 0; k < 200 && kz_client_state(w.clients[0]) == KZ_CLIENT_CONNECTED; k++)
        kzt_world_step(&w, STEP_NS);
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_DISCONNECTED);
    cr_assert_eq(kz_client_reason(w.clients[0]), KZ_KICK_ADMIN);
    kz_client_event ev;
    int notice = 0, over = 0;
    while (kz_client_poll_event(w.clients[0], &ev) == KZ_OK) {
        if (ev.type == KZ_EV_NOTICE && ev.code == KZ_NOTICE_KICK) {
            notice = 1;
            cr_assert_eq(ev.len, strlen("please read the rules"));
            cr_assert(memcmp(ev.data, "please read the rules", ev.len) == 0);
        }
        if (ev.type == KZ_EV_DISCONNECTED) {
            over = 1;
            cr_assert_eq(ev.code, KZ_KICK_ADMIN);
            cr_assert_eq(ev.len, strlen("please read the rules"));
        }
    }
    cr_assert(notice && over, "the client saw the notice and the end");
    cr_assert_eq(counter(KZ_WORLD_C_KICKS), 1);
    run_ticks(5);
    cr_assert_eq(kz_server_clients(w.srv), 1, "the kicked avatar is gone");
    kzt_world_stop(&w);
}

/* A clean stop: every client learns why, the world empties, each kick is
 * counted, and a newcomer is refused with the shutting-down reason. */
Test(world_events, shutdown_tells_every_client_and_refuses_newcomers)
{
    memset(&w, 0, sizeof w);
    w.spare = 1;
    start(3, 3.0f);
    run_ticks(10);
    for (uint32_t i = 0; i < 3; i++)
        drain(i, 0, 0, NULL, NULL, 0);
    kz_server_shutdown(w.srv, NULL);
    kz_server_shutdown(w.srv, "ignored: already draining");
    for (int k = 0; k < 400 && kz_server_clients(w.srv) > 0; k++)
        kzt_world_step(&w, STEP_NS);
    cr_assert_eq(kz_server_clients(w.srv), 0, "the world emptied");
    cr_assert_eq(counter(KZ_WORLD_C_KICKS), 3);
    const char *why = "server shutting down";
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_eq(kz_client_state(w.clients[i]), KZ_CLIENT_DISCONNECTED);
        cr_assert_eq(kz_client_reason(w.clients[i]), KZ_KICK_SHUTDOWN);
        kz_client_event ev;
        int told = 0;
        while (kz_client_poll_event(w.clients[i], &ev) == KZ_OK)
            if (ev.type == KZ_EV_DISCONNECTED) {
                told = 1;
                cr_assert_eq(ev.code, KZ_KICK_SHUTDOWN);
                cr_assert_eq(ev.len, strlen(why));
                cr_assert(memcmp(ev.data, why, ev.len) == 0);
            }
        cr_assert(told, "client %u saw why", i);
    }
    /* A newcomer is denied at the gate and never gets an avatar. */
    kz_connect_token ct;
    cr_assert_eq(kzt_world_mint(&w, 90, &ct), KZ_OK);
    kz_netclient_config nc;
    memset(&nc, 0, sizeof nc);
    nc.server.family = KZ_ADDR_IPV4;
    nc.server.ip[0] = 127;
    nc.server.ip[3] = 1;
    nc.server.port = kz_server_port(w.srv);
    nc.connect_timeout_ms = 1000;
    kz_netclient *late = kz_netclient_create(&nc, &ct);
    cr_assert_not_null(late);
    for (int k = 0; k < 200 && kz_netclient_state(late) != KZ_NETCLIENT_FAILED; k++) {
        kzt_world_step(&w, STEP_NS);
        (void)kz_netclient_update(late, w.now);
    }
    cr_assert_eq(kz_netclient_state(late), KZ_NETCLIENT_FAILED);
    cr_assert_eq(kz_netclient_reason(late), KZ_DENY_SHUTTING_DOWN);
    cr_assert_eq(kz_server_clients(w.srv), 0);
    kz_netclient_destroy(late);
    kzt_world_stop(&w);
}

/* The first snapshot places the avatar at its spawn point far from the
 * origin: that is not a correction. Before it, the own state is unknown. */
Test(world_events, spawning_is_not_a_correction)
{
    memset(&w, 0, sizeof w);
    start(2, 60.0f);
    kz_avatar_state rest;
    kz_avatar_state_rest(&rest);
    for (int k = 0; k < 120; k++) { /* commands flow from the start */
        for (uint32_t i = 0; i < 2; i++)
            (void)kz_client_send_input(w.clients[i], &rest);
        kzt_world_step(&w, STEP_NS);
    }
    kz_avatar_state self;
    cr_assert_eq(kz_client_self(w.clients[0], &self), KZ_OK);
    cr_assert_gt(fabsf(self.pos[0]) + fabsf(self.pos[2]), 0.0f, "spawned off the origin");
    for (uint32_t i = 0; i < 2; i++)
        cr_assert_eq(drain(i, KZ_EV_CORRECTION, 0, NULL, NULL, 0), 0, "client %u corrected", i);
    kzt_world_stop(&w);
}

/* A client whose session ended connects again with a fresh token and is
 * a full member of the world again. */
Test(world_events, a_client_can_connect_again_after_its_session_ended)
{
    memset(&w, 0, sizeof w);
    w.spare = 1;
    start(2, 3.0f);
    run_ticks(10);
    kz_client *c = w.clients[0];
    uint32_t first = kz_client_self_id(c);
    cr_assert_eq(kz_server_kick(w.srv, first, KZ_KICK_ADMIN, "come back"), KZ_OK);
    for (int k = 0; k < 400 && kz_client_state(c) != KZ_CLIENT_DISCONNECTED; k++)
        kzt_world_step(&w, STEP_NS);
    cr_assert_eq(kz_client_state(c), KZ_CLIENT_DISCONNECTED);
    kz_connect_token ct;
    cr_assert_eq(kzt_world_mint(&w, 77, &ct), KZ_OK);
    cr_assert_eq(kz_client_connect(c, &ct, w.now), KZ_OK);
    cr_assert_eq(kz_client_connect(c, &ct, w.now), KZ_ESTATE, "already connecting");
    for (int k = 0; k < 2000 && kz_client_state(c) != KZ_CLIENT_CONNECTED; k++)
        kzt_world_step(&w, STEP_NS);
    cr_assert_eq(kz_client_state(c), KZ_CLIENT_CONNECTED);
    cr_assert_neq(kz_client_self_id(c), 0);
    cr_assert_neq(kz_client_self_id(c), first, "a new avatar");
    run_ticks(20);
    kz_avatar_state self;
    cr_assert_eq(kz_client_self(c, &self), KZ_OK, "snapshots apply in the new session");
    kz_client_entity view[8];
    cr_assert_geq(kz_client_view(c, view, 8), 1, "it sees the other client again");
    cr_assert_eq(kz_server_clients(w.srv), 2);
    kzt_world_stop(&w);
}

/* A kick text longer than a notice holds is cut on a character boundary,
 * so the client still gets valid UTF-8 and shows it. */
Test(world_events, a_long_kick_text_is_cut_between_characters)
{
    memset(&w, 0, sizeof w);
    start(2, 3.0f);
    run_ticks(10);
    char text[1 + 2 * 100 + 1] = "a";
    for (int i = 0; i < 100; i++)
        memcpy(text + 1 + 2 * i, "\xc3\xa9", 2); /* é: byte 160 is inside one */
    text[sizeof text - 1] = '\0';
    cr_assert_eq(kz_server_kick(w.srv, kz_client_self_id(w.clients[0]), KZ_KICK_ADMIN, text),
                 KZ_OK);
    for (int k = 0; k < 400 && kz_client_state(w.clients[0]) == KZ_CLIENT_CONNECTED; k++)
        kzt_world_step(&w, STEP_NS);
    kz_client_event ev;
    int seen = 0;
    while (kz_client_poll_event(w.clients[0], &ev) == KZ_OK)
        if (ev.type == KZ_EV_DISCONNECTED) {
            seen = 1;
            cr_assert_eq(ev.len, KZ_NOTICE_MAX_BYTES - 1, "cut before the split character");
            cr_assert(memcmp(ev.data, text, ev.len) == 0);
        }
    cr_assert(seen);
    kzt_world_stop(&w);
}

/* More clients than the outbound ring has room for at once: the kicks
 * that do not fit are retried on later steps, and everyone is told. */
Test(world_events, shutdown_tells_everyone_even_when_the_ring_is_full)
{
    memset(&w, 0, sizeof w);
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    sc.net.ring_capacity = 8;  /* a notice and a kick per client: 24 do not fit */
    cr_assert_eq(kzt_world_start(&w, 12, NULL, &sc, 5), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 12);
    run_ticks(5);
    kz_server_shutdown(w.srv, NULL);
    for (int k = 0; k < 2000 && kz_server_clients(w.srv) > 0; k++)
        kzt_world_step(&w, STEP_NS);
    cr_assert_eq(kz_server_clients(w.srv), 0);
    cr_assert_eq(counter(KZ_WORLD_C_KICKS), 12, "each kicked once");
    for (uint32_t i = 0; i < 12; i++)
        cr_assert_eq(kz_client_reason(w.clients[i]), KZ_KICK_SHUTDOWN, "client %u", i);
    kzt_world_stop(&w);
}

/* A client that speaks the protocol by hand through the raw transport. */
static kz_netclient *raw_client(uint64_t id, kz_wire_welcome *welcome)
{
    kz_connect_token ct;
    cr_assert_eq(kzt_world_mint(&w, id, &ct), KZ_OK);
    kz_netclient_config nc;
    memset(&nc, 0, sizeof nc);
    nc.server.family = KZ_ADDR_IPV4;
    nc.server.ip[0] = 127;
    nc.server.ip[3] = 1;
    nc.server.port = kz_server_port(w.srv);
    kz_netclient *c = kz_netclient_create(&nc, &ct);
    cr_assert_not_null(c);
    for (int k = 0; k < 2000 && kz_netclient_state(c) != KZ_NETCLIENT_CONNECTED; k++) {
        kzt_world_step(&w, STEP_NS);
        (void)kz_netclient_update(c, w.now);
    }
    cr_assert_eq(kz_netclient_state(c), KZ_NETCLIENT_CONNECTED);
    int have = 0;
    for (int k = 0; k < 400 && !have; k++) {
        kzt_world_step(&w, STEP_NS);
        (void)kz_netclient_update(c, w.now);
        kz_netmsg m;
        while (kz_netclient_poll(c, &m) == KZ_OK)
            if (m.type == KZ_MSG_WELCOME)
                have = kz_wire_welcome_read(m.data, m.len, welcome) == KZ_OK;
    }
    cr_assert(have, "the raw client got its welcome");
    return c;
}

/* Runs one server tick while servicing the raw client (discarding what it
 * receives). */
static void raw_tick(kz_netclient *c)
{
    uint32_t end = kz_server_tick(w.srv) + 1;
    while (kz_server_tick(w.srv) < end) {
        kzt_world_step(&w, STEP_NS);
        (void)kz_netclient_update(c, w.now);
        kz_netmsg m;
        while (kz_netclient_poll(c, &m) == KZ_OK) {
        }
    }
}

Test(world_events, a_speed_hack_is_clamped_and_corrected)
{
    memset(&w, 0, sizeof w);
    w.spare = 1;
    start(1, 3.0f);
    kz_wire_welcome wl;
    kz_netclient *c = raw_client(50, &wl);
    kz_avatar_state before, after;
    cr_assert_eq(kz_server_entity(w.srv, wl.self, &before), KZ_OK);
    uint32_t t0 = kz_server_tick(w.srv);
    uint64_t corrections = counter(KZ_WORLD_C_CORRECTIONS);
    uint64_t speeding = counter(KZ_WORLD_C_VIOL_SPEED);
    uint64_t teleports = counter(KZ_WORLD_C_VIOL_TELEPORT);
    for (uint32_t t = 1; t <= 60; t++) {
        kz_wire_input in;
        memset(&in, 0, sizeof in);
        in.count = 1;
        in.cmd[0].tick = t;
        in.cmd[0].move[0] = 40 * KZ_SNAP_VEL_UNITS;  /* 40 m/s against a cap of 8 */
        in.cmd[0].rot[0] = in.cmd[0].rot[1] = in.cmd[0].rot[2] = KZ_SNAP_ROT_REST;
        uint8_t buf[KZ_INPUT_MAX_BYTES];
        int len = kz_wire_input_write(&in, buf, sizeof buf);
        cr_assert_gt(len, 0);
        cr_assert_eq(kz_netclient_send(c, KZ_CHANNEL_INPUT, KZ_MSG_INPUT, buf, (uint32_t)len), KZ_OK);
        raw_tick(c);
    }
    for (int k = 0; k < 5; k++)
        raw_tick(c);
    cr_assert_eq(kz_server_entity(w.srv, wl.self, &after), KZ_OK);
    float moved = after.pos[0] - before.pos[0];
    cr_assert_gt(moved, 10.0f, "it moved (%.2f m)", moved);
    /* The server repeats the last (clamped) command while none arrive, so
     * the avatar may move on every tick; each tick's step is rounded to the
     * position unit (1/512 m), at most half a unit more than 8 m/s allows. */
    uint32_t ticks = kz_server_tick(w.srv) - t0;
    float bound = (float)ticks * (8.0f / 30.0f + 0.5f / KZ_SNAP_POS_UNITS);
    cr_assert_leq(moved, bound, "but no faster than 8 m/s (%.3f m in %u ticks)", moved, ticks);
    cr_assert_geq(counter(KZ_WORLD_C_CORRECTIONS) - corrections, 55, "each command was corrected");
    cr_assert_geq(counter(KZ_WORLD_C_VIOL_SPEED) - speeding, 55, "and counted as speeding");
    cr_assert_eq(counter(KZ_WORLD_C_VIOL_TELEPORT), teleports, "by kind: no teleport was counted");
    kz_netclient_destroy(c);
    kzt_world_stop(&w);
}

/* Sends commands from..to (newest first, as clients do), each walking
 * +x at 1 m/s. */
static void send_walk(kz_netclient *c, uint32_t from, uint32_t to)
{
    kz_wire_input in;
    memset(&in, 0, sizeof in);
    in.count = to - from + 1u;
    cr_assert_leq(in.count, KZ_INPUT_MAX_COMMANDS);
    for (uint32_t k = 0; k < in.count; k++) {
        kz_wire_command *cmd = &in.cmd[k];
        cmd->tick = to - k;
        cmd->move[0] = 1 * KZ_SNAP_VEL_UNITS;  /* within max_accel from rest */
        cmd->rot[0] = cmd->rot[1] = cmd->rot[2] = KZ_SNAP_ROT_REST;
    }
    uint8_t buf[KZ_INPUT_MAX_BYTES];
    int len = kz_wire_input_write(&in, buf, sizeof buf);
    cr_assert_gt(len, 0);
    cr_assert_eq(kz_netclient_send(c, KZ_CHANNEL_INPUT, KZ_MSG_INPUT, buf, (uint32_t)len), KZ_OK);
}

/* A burst of eight commands (a client's stall, then its catch-up) must not
 * leave every later input waiting eight ticks in the queue: the server
 * applies an extra command per tick until the queue is back to its slack,
 * without losing a command, moving the avatar further than the commands
 * say, or calling the client a cheat. */
Test(world_events, a_standing_input_queue_is_caught_up)
{
    memset(&w, 0, sizeof w);
    w.spare = 1;
    start(1, 3.0f);
    kz_wire_welcome wl;
    kz_netclient *c = raw_client(51, &wl);
    kz_avatar_state before, after;
    cr_assert_eq(kz_server_entity(w.srv, wl.self, &before), KZ_OK);
    uint64_t caught = counter(KZ_WORLD_C_COMMANDS_CAUGHT_UP);
    uint64_t corrections = counter(KZ_WORLD_C_CORRECTIONS);
    uint64_t dropped = counter(KZ_WORLD_C_COMMANDS_DROPPED);
    send_walk(c, 1, 8);
    raw_tick(c);
    uint32_t sent = 8;
    for (uint32_t k = 0; k < 40; k++) {
        send_walk(c, sent + 1u, sent + 1u);
        sent++;
        raw_tick(c);
    }
    cr_assert_eq(kz_server_entity(w.srv, wl.self, &after), KZ_OK);
    float moved = after.pos[0] - before.pos[0], step = 1.0f / 30.0f;
    /* 48 commands sent; one arrived each of the last ticks, and at most
     * the slack and the newest wait. Without catching up, 7 more would. */
    cr_assert_geq(moved, (float)(sent - 3u) * step - 0.01f, "moved %.3f m of %u commands", moved, sent);
    cr_assert_leq(moved, (float)sent * step + 0.01f, "no further than the commands say");
    cr_assert_geq(counter(KZ_WORLD_C_COMMANDS_CAUGHT_UP) - caught, 5u);
    cr_assert_eq(counter(KZ_WORLD_C_CORRECTIONS), corrections, "no command was changed");
    cr_assert_eq(counter(KZ_WORLD_C_COMMANDS_DROPPED), dropped);
    kz_netclient_destroy(c);
    kzt_world_stop(&w);
}

/* One server tick as raw_tick, returning the newest input tick the
 * snapshots to `c` said was applied (0 = none came). */
static uint32_t raw_tick_acked(kz_netclient *c, const kz_snap_codec *codec)
{
    uint32_t end = kz_server_tick(w.srv) + 1, acked = 0;
    while (kz_server_tick(w.srv) < end) {
        kzt_world_step(&w, STEP_NS);
        (void)kz_netclient_update(c, w.now);
        kz_netmsg m;
        while (kz_netclient_poll(c, &m) == KZ_OK) {
            if (m.type != KZ_MSG_SNAPSHOT)
                continue;
            kz_bitreader r;
            kz_bitreader_init(&r, m.data, m.len);
            kz_wire_snap_head h;
            cr_assert_eq(kz_wire_snap_head_read(codec, &r, &h), KZ_OK);
            acked = h.input_tick > acked ? h.input_tick : acked;
        }
    }
    return acked;
}

/* One world with one raw client `id`, welcomed, and a codec for its
 * snapshot headers. */
static kz_netclient *walker(uint64_t id, kz_wire_welcome *wl, kz_snap_codec *codec)
{
    memset(&w, 0, sizeof w);
    w.spare = 1;
    start(1, 3.0f);
    kz_netclient *c = raw_client(id, wl);
    cr_assert_eq(kz_snap_codec_init(codec, wl->tick_hz, wl->n_slots, wl->bound), KZ_OK);
    return c;
}

/* Sends command *t + 1 (then *t is it) and runs one tick; returns
 * raw_tick_acked's newest applied input tick. */
static uint32_t walk_tick(kz_netclient *c, const kz_snap_codec *codec, uint32_t *t)
{
    send_walk(c, *t + 1u, *t + 1u);
    (*t)++;
    return raw_tick_acked(c, codec);
}

/* Two commands late (a delay spike): the ticks that found no command
 * repeated the last one and stood in for them, so when they arrive they
 * are not applied again: the avatar moved once per tick, and the newest
 * command the snapshots name is the one just sent, not two behind it for
 * the rest of the session. */
Test(world_events, a_late_command_is_not_applied_a_second_time)
{
    kz_wire_welcome wl;
    kz_snap_codec codec;
    kz_netclient *c = walker(52, &wl, &codec);
    kz_avatar_state before, after;
    cr_assert_eq(kz_server_entity(w.srv, wl.self, &before), KZ_OK);
    uint64_t covered = counter(KZ_WORLD_C_COMMANDS_COVERED);
    uint64_t repeated = counter(KZ_WORLD_C_COMMANDS_REPEATED);
    uint32_t t = 0, ticks = 0;
    for (; t < 10; ticks++)
        cr_assert_geq(walk_tick(c, &codec, &t) + 1u, t, "applied at once");
    raw_tick_acked(c, &codec);  /* commands 11 and 12 are late */
    raw_tick_acked(c, &codec);
    ticks += 2;
    cr_assert_eq(counter(KZ_WORLD_C_COMMANDS_REPEATED) - repeated, 2u);
    send_walk(c, 11, 13);
    t = 13;
    raw_tick_acked(c, &codec);
    ticks++;
    uint32_t acked = 0;
    for (; t < 30; ticks++) {
        acked = walk_tick(c, &codec, &t);
    }
    cr_assert_eq(counter(KZ_WORLD_C_COMMANDS_COVERED) - covered, 2u, "11 and 12");
    cr_assert_geq(acked + 1u, t, "the newest command applied is the one just sent (%u of %u)",
                  acked, t);
    cr_assert_eq(kz_server_entity(w.srv, wl.self, &after), KZ_OK);
    float moved = after.pos[0] - before.pos[0], step = 1.0f / 30.0f;
    cr_assert_float_eq(moved, (float)ticks * step, 0.02f, "one step per tick (%.3f m, %u ticks)",
                       moved, ticks);
    kz_netclient_destroy(c);
    kzt_world_stop(&w);
}

/* A client quiet for many ticks (an application in the background) gets
 * at most KZ__INPUT_COVER of its next commands taken by the repeats: its
 * inputs count again right after, not once its clock has caught up with
 * every tick it was away. */
Test(world_events, a_quiet_client_gets_its_inputs_back_after_a_few_commands)
{
    kz_wire_welcome wl;
    kz_snap_codec codec;
    kz_netclient *c = walker(53, &wl, &codec);
    uint64_t covered = counter(KZ_WORLD_C_COMMANDS_COVERED);
    uint32_t t = 0, acked = 0;
    for (; t < 5;) {
        walk_tick(c, &codec, &t);
    }
    for (int k = 0; k < 30; k++)
        raw_tick_acked(c, &codec);  /* a second away */
    for (uint32_t k = 0; k < 8; k++) {
        acked = walk_tick(c, &codec, &t);
    }
    cr_assert_eq(counter(KZ_WORLD_C_COMMANDS_COVERED) - covered, 4u, "KZ__INPUT_COVER of them, not %llu",
                 (unsigned long long)(counter(KZ_WORLD_C_COMMANDS_COVERED) - covered));
    cr_assert_eq(acked, t, "its newest command counts again (%u of %u)", acked, t);
    kz_netclient_destroy(c);
    kzt_world_stop(&w);
}

/* A client that goes quiet while the server repeats its last move, then
 * sends every command it skipped (late, so no clock violation) and goes on
 * one per tick, gains no distance: the repeats past the cover owe their
 * moves, and the catch-up that drains its queue drops as many commands
 * instead of applying them. At most one move per tick, over the whole. */
Test(world_events, going_quiet_then_sending_the_skipped_commands_gains_no_speed)
{
    kz_wire_welcome wl;
    kz_snap_codec codec;
    kz_netclient *c = walker(54, &wl, &codec);
    kz_avatar_state before, after;
    cr_assert_eq(kz_server_entity(w.srv, wl.self, &before), KZ_OK);
    uint32_t t = 0, ticks = 0;
    for (int cycle = 0; cycle < 3; cycle++) {
        for (int k = 0; k < 10; k++, ticks++) {
            walk_tick(c, &codec, &t);
        }
        for (int k = 0; k < 20; k++, ticks++)
            raw_tick_acked(c, &codec);  /* quiet: the server repeats */
        for (int k = 0; k < 20; k += 5) {  /* the skipped 20, five at a time */
            send_walk(c, t + 1u, t + 5u);
            t += 5;
        }
        for (int k = 0; k < 30; k++, ticks++) {
            walk_tick(c, &codec, &t);
        }
    }
    cr_assert_eq(kz_server_entity(w.srv, wl.self, &after), KZ_OK);
    float moved = after.pos[0] - before.pos[0], step = 1.0f / 30.0f;
    cr_assert_leq(moved, (float)ticks * step + 0.02f,
                  "%.3f m in %u ticks: more than one 1 m/s step per tick", moved, ticks);
    cr_assert_gt(counter(KZ_WORLD_C_COMMANDS_COVERED), 0u);
    kz_netclient_destroy(c);
    kzt_world_stop(&w);
}

Test(world_events, malformed_messages_are_counted_drops_not_fatal)
{
    memset(&w, 0, sizeof w);
    w.spare = 1;
    start(1, 3.0f);
    kz_wire_welcome wl;
    kz_netclient *c = raw_client(51, &wl);
    const uint8_t junk[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    const uint8_t bad_utf8[] = {0xC3, 0x28};
    const uint8_t bad_action[KZ_ACTION_BYTES] = {9, 1, 0, 0, 0};
    cr_assert_eq(kz_netclient_send(c, KZ_CHANNEL_INPUT, KZ_MSG_INPUT, junk, sizeof junk), KZ_OK);
    cr_assert_eq(kz_netclient_send(c, KZ_CHANNEL_EVENT, 99, junk, sizeof junk), KZ_OK);
    cr_assert_eq(kz_netclient_send(c, KZ_CHANNEL_EVENT, KZ_MSG_CHAT, bad_utf8, sizeof bad_utf8), KZ_OK);
    cr_assert_eq(kz_netclient_send(c, KZ_CHANNEL_EVENT, KZ_MSG_EMOTE, junk, 3), KZ_OK);
    cr_assert_eq(kz_netclient_send(c, KZ_CHANNEL_EVENT, KZ_MSG_ACTION, bad_action, sizeof bad_action), KZ_OK);
    cr_assert_eq(kz_netclient_send(c, KZ_CHANNEL_VOICE, KZ_MSG_VOICE, junk, 0), KZ_OK);
    for (int k = 0; k < 10; k++)
        raw_tick(c);
    cr_assert_eq(counter(KZ_WORLD_C_DROP_MALFORMED), 6, "each bad message is one counted drop");
    cr_assert_eq(kz_netclient_state(c), KZ_NETCLIENT_CONNECTED, "the session goes on");
    cr_assert_eq(kz_server_clients(w.srv), 2);
    kz_netclient_destroy(c);
    kzt_world_stop(&w);
}

/* ---- floods climb the ladder; a kick ends all processing ---------------- */

static void start_strict(uint32_t n, float kick_score)
{
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    sc.kick_score = kick_score;
    cr_assert_eq(kzt_world_start(&w, n, NULL, &sc, 5), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), n);
}

/* The kick notice text client i saw ("" if none). */
static void kick_notice(uint32_t i, char *out, size_t cap)
{
    kz_client_event ev;
    uint8_t data[KZ_NOTICE_MAX_BYTES + 1];
    out[0] = 0;
    if (drain(i, KZ_EV_DISCONNECTED, 0, &ev, data, sizeof data) && ev.len < cap) {
        memcpy(out, data, ev.len);
        out[ev.len] = 0;
    }
}

/* Chat points are 2 a second (one strike per second); with a kick score
 * of 10 a sustained flood is kicked after about five seconds. */
Test(world_events, a_sustained_chat_flood_is_struck_and_kicked)
{
    memset(&w, 0, sizeof w);
    start_strict(2, 10.0f);
    run_ticks(5);
    uint32_t sent = 0;
    for (; sent < 2400 && kz_client_state(w.clients[0]) == KZ_CLIENT_CONNECTED; sent++) {
        cr_assert_eq(kz_client_chat(w.clients[0], "spam", 4), KZ_OK);
        kzt_world_step(&w, STEP_NS);
    }
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_DISCONNECTED, "kicked (%u sent)", sent);
    cr_assert_eq(kz_client_reason(w.clients[0]), KZ_KICK_VIOLATION);
    char text[KZ_NOTICE_MAX_BYTES + 1];
    kick_notice(0, text, sizeof text);
    cr_assert(strstr(text, "chat flood") != NULL, "told why: \"%s\"", text);
    cr_assert_gt(counter(KZ_WORLD_C_VIOL_CHAT), 0, "violation_chat_rate moved");
    cr_assert_eq(counter(KZ_WORLD_C_VIOL_CHAT), counter(KZ_WORLD_C_DROP_RATE_CHAT),
                 "each dropped line is one violation");
    double seconds = (double)sent * STEP_NS / KZ_NS_PER_S;
    cr_assert_leq(counter(KZ_WORLD_C_CHAT), 8u + 4u * (uint32_t)seconds + 4u, "only the rate relayed");
    cr_assert_gt(seconds, 3.0, "not kicked on the burst (%.1f s)", seconds);
    cr_assert_eq(counter(KZ_WORLD_C_KICKS), 1);
    kzt_world_stop(&w);
}

Test(world_events, emote_and_voice_floods_are_violations_on_the_ladder)
{
    memset(&w, 0, sizeof w);
    start_strict(2, 0.0f);  /* default ladder: emotes strike, voice is dropped only */
    run_ticks(5);
    uint8_t frame[300];
    memset(frame, 0x5A, sizeof frame);
    for (int k = 0; k < 120; k++) {
        cr_assert_eq(kz_client_emote(w.clients[0], 7), KZ_OK);
        cr_assert_eq(kz_client_voice(w.clients[1], frame, sizeof frame), KZ_OK);
        kzt_world_step(&w, STEP_NS);
    }
    run_ticks(3);
    cr_assert_gt(counter(KZ_WORLD_C_DROP_RATE_EMOTE), 0);
    cr_assert_eq(counter(KZ_WORLD_C_VIOL_EMOTE), counter(KZ_WORLD_C_DROP_RATE_EMOTE));
    cr_assert_eq(counter(KZ_WORLD_C_DROP_RATE_CHAT), 0, "emotes have their own bucket");
    cr_assert_gt(counter(KZ_WORLD_C_DROP_RATE_VOICE), 0);
    cr_assert_eq(counter(KZ_WORLD_C_VIOL_VOICE), counter(KZ_WORLD_C_DROP_RATE_VOICE));
    /* A second of flooding is a strike or two, not a kick. */
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_CONNECTED);
    cr_assert_eq(kz_client_state(w.clients[1]), KZ_CLIENT_CONNECTED);
    kzt_world_stop(&w);
}

/* One INPUT message with eight new commands, each 40 m/s against 8 m/s,
 * and a chat line behind it: the first command's strike reaches the kick
 * score, and nothing after it is looked at, so the kick, its record and
 * its violation are counted once. */
Test(world_events, a_kick_stops_processing_the_rest_of_the_drain)
{
    memset(&w, 0, sizeof w);
    w.spare = 1;
    kzt_audit a;
    cr_assert_eq(kzt_audit_open(&a), KZ_OK);
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    sc.kick_score = 5.0f;  /* one speed strike (10 points) kicks */
    sc.audit = a.log;
    cr_assert_eq(kzt_world_start(&w, 1, NULL, &sc, 5), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 1);
    kz_wire_welcome wl;
    kz_netclient *c = raw_client(52, &wl);
    uint64_t chat = counter(KZ_WORLD_C_CHAT);
    kz_wire_input in;
    memset(&in, 0, sizeof in);
    in.count = KZ_INPUT_MAX_COMMANDS;
    for (uint32_t k = 0; k < in.count; k++) {
        kz_wire_command *cmd = &in.cmd[k];
        cmd->tick = in.count - k;  /* newest first */
        cmd->move[0] = 40 * KZ_SNAP_VEL_UNITS;
        for (uint32_t p = 0; p < KZ_POSE_COUNT; p++)
            cmd->rot[p] = KZ_SNAP_ROT_REST;
    }
    uint8_t buf[KZ_INPUT_MAX_BYTES];
    int len = kz_wire_input_write(&in, buf, sizeof buf);
    cr_assert_gt(len, 0);
    cr_assert_eq(kz_netclient_send(c, KZ_CHANNEL_INPUT, KZ_MSG_INPUT, buf, (uint32_t)len), KZ_OK);
    cr_assert_eq(kz_netclient_send(c, KZ_CHANNEL_EVENT, KZ_MSG_CHAT, "after", 5), KZ_OK);
    for (int k = 0; k < 200 && kz_netclient_state(c) == KZ_NETCLIENT_CONNECTED; k++) {
        kzt_world_step(&w, STEP_NS);
        (void)kz_netclient_update(c, w.now);
        kz_netmsg m;
        while (kz_netclient_poll(c, &m) == KZ_OK) {
        }
    }
    cr_assert_neq(kz_netclient_state(c), KZ_NETCLIENT_CONNECTED, "kicked");
    cr_assert_eq(kz_netclient_reason(c), KZ_KICK_VIOLATION);
    cr_assert_eq(counter(KZ_WORLD_C_KICKS), 1, "one kick");
    cr_assert_eq(counter(KZ_WORLD_C_VIOL_SPEED), 1, "only the first command was checked");
    cr_assert_eq(counter(KZ_WORLD_C_CORRECTIONS), 1);
    cr_assert_eq(counter(KZ_WORLD_C_CHAT), chat, "the chat line behind it was not relayed");
    cr_assert_geq(counter(KZ_WORLD_C_DROP_KICKED), 1, "but counted as dropped");
    kz_netclient_destroy(c);
    kzt_world_stop(&w);
    cr_assert_eq(kz_audit_close(a.log), KZ_OK);
    a.log = NULL;
    cr_assert_eq(kzt_audit_count(&a, KZ_AUDIT_KICK, 52, NULL), 1, "one kick record");
    cr_assert_eq(kzt_audit_close_count(&a, KZ_AUDIT_VIOLATION, 52, NULL), 1, "one strike record");
}

/* ---- commands are validated at their arrival time ----------------------- */

/* The transport's clock in a threaded world, moved by the test thread and
 * read by the I/O thread. */
static _Atomic kz_time_ns io_now;

static kz_time_ns io_clock(void *ctx)
{
    (void)ctx;
    return atomic_load(&io_now);
}

static uint64_t rx_packets(void)
{
    return kz_counters_get(kz_netserver_counters(kz_server_net(w.srv)), KZ_NET_C_RX_PACKETS);
}

/* Waits (bounded) until the I/O thread has taken a datagram more than
 * `before` off the socket, so it stamps it with the clock as it is now. */
static void wait_rx(uint64_t before)
{
    const struct timespec pause = {0, 200000};
    for (int k = 0; k < 10000 && rx_packets() <= before; k++)
        nanosleep(&pause, NULL);
}

/* One input tick of the world with the I/O clock following it. With
 * `sim` 0 the simulation thread is stalled: only the client runs. */
static void threaded_step(int sim)
{
    const kz_time_ns dt = KZ_NS_PER_S / 30;
    uint64_t before = rx_packets();
    atomic_store(&io_now, w.now + dt);
    if (sim) {
        kzt_world_step(&w, dt);
    } else {
        w.now += dt;
        (void)kz_client_update(w.clients[0], w.now);
    }
    if (kz_client_state(w.clients[0]) == KZ_CLIENT_CONNECTED)
        wait_rx(before);  /* handshakes pass the gate, not the counter */
}

/* A simulation thread stalled for 4 s finds 120 commands waiting. Stamped
 * when the sim read them, they would look like one burst beyond the input
 * budget (90) and an honest client would be struck for flooding; stamped
 * at arrival they are 33 ms apart, as sent. */
Test(world_events, commands_are_checked_at_their_arrival_not_when_the_sim_reads_them)
{
    memset(&w, 0, sizeof w);
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    sc.net.threaded = 1;
    sc.net.clock = (kz_clock){NULL, io_clock};
    atomic_store(&io_now, 1);
    cr_assert_eq(kzt_world_start(&w, 1, NULL, &sc, 5), KZ_OK);
    /* The handshake runs on the I/O thread in real time: give it time. */
    const struct timespec ms = {0, 1000000};
    for (int k = 0; k < 3000 && kz_client_state(w.clients[0]) != KZ_CLIENT_CONNECTED; k++) {
        threaded_step(1);
        nanosleep(&ms, NULL);
    }
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_CONNECTED);
    for (int k = 0; k < 60; k++) {
        walk(0, 1.0f, 0.0f);
        threaded_step(1);
    }
    uint64_t applied = counter(KZ_WORLD_C_INPUTS);
    cr_assert_gt(applied, 30, "inputs flow");
    for (int k = 0; k < 120; k++)
        threaded_step(0);
    for (int k = 0; k < 30; k++)
        threaded_step(1);
    cr_assert_gt(counter(KZ_WORLD_C_INPUTS) - applied, 120, "the stalled inputs were read");
    cr_assert_eq(counter(KZ_WORLD_C_VIOL_FLOOD), 0, "no flood seen in an honest client");
    cr_assert_eq(counter(KZ_WORLD_C_VIOL_CLOCK), 0, "nor a fast clock");
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_CONNECTED);
    kzt_world_stop(&w);
}

/* The input budget follows the world's tick rate: an honest client sends
 * one command per tick, at 60 and 128 Hz as at 30, and is never flagged
 * for flooding (a budget sized for 30 Hz kicked everyone at 60). */
Test(world_events, honest_clients_are_within_the_input_budget_at_any_tick_rate, .timeout = 120)
{
    static const uint32_t rates[] = {60, 128};
    for (size_t r = 0; r < 2; r++) {
        memset(&w, 0, sizeof w);
        kz_server_config sc;
        memset(&sc, 0, sizeof sc);
        kz_server_config_default(&sc);
        sc.tick_hz = rates[r];
        cr_assert_eq(kzt_world_start(&w, 2, NULL, &sc, 5), KZ_OK);
        cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 2);
        kz_time_ns step = KZ_NS_PER_S / (4 * rates[r]);
        uint32_t end = kz_server_tick(w.srv) + 10 * rates[r];
        while (kz_server_tick(w.srv) < end) {
            walk(0, 1.0f, 0.0f);
            walk(1, 0.0f, -1.0f);
            kzt_world_step(&w, step);
        }
        cr_assert_eq(counter(KZ_WORLD_C_VIOL_FLOOD), 0, "%u Hz: honest clients flagged as floods",
                     rates[r]);
        cr_assert_eq(kz_server_clients(w.srv), 2, "%u Hz: nobody kicked", rates[r]);
        cr_assert_gt(counter(KZ_WORLD_C_INPUTS), 10 * rates[r], "%u Hz: inputs flowed", rates[r]);
        kzt_world_stop(&w);
    }
}
