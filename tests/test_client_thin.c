/*
 * Header-only clients (kz_client_config.header_only, the bots of
 * kizuna-bench --bots thin).
 *
 * Against a scripted server (a bare kz_netserver that sends hand-made
 * welcome and snapshot messages) the wire is exact: a header-only client
 * acknowledges a snapshot whose body a full client refuses, counts a
 * truncated header as malformed and an old tick as late, takes its own
 * avatar's state from the header, reports a correction once per command
 * the header flags, and never allocates the view tables. Against a real
 * server its acknowledgements keep the server sending deltas, its avatar
 * goes where its inputs say, and a kick reaches it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <kizuna/client.h>
#include <kizuna/token.h>

#include "sim/snapshot.h"
#include "sim/wire.h"
#include "support/loopback.h"
#include "support/world.h"

#define PROTOCOL 0x4B5A5448494E0001ull
#define SERVER_ID 31u
#define STEP_NS (KZ_NS_PER_S / 120)
#define HZ 30u
#define SLOTS 100u
#define HISTORY 16u
#define BOUND 1024.0f
#define MAX_SPEED 8.0f
#define AVATAR_OF(id) ((uint32_t)(id) + 1000u)  /* as kzt_mint names avatars */
#define THIN_ID 1u
#define FULL_ID 2u

/* ---- a scripted server -------------------------------------------------- */

static struct {
    kzt_keys keys;
    kz_netserver *srv;
    kz_time_ns now;
    uint32_t slot[3];        /* by client id */
    uint32_t last_ack[3];    /* newest ack each client sent */
    uint32_t inputs[3];
    uint32_t newest_cmd[3];          /* newest command tick each client sent */
    kz_time_ns cmd_seen[3][64];      /* by command tick % 64: when first received */
    kz_snap_codec codec;
    kz_client *thin, *full;
    kz_counting_alloc thin_mem, full_mem;
} s;

static uint32_t id_of_slot(uint32_t slot)
{
    for (uint32_t id = 1; id < 3; id++)
        if (s.slot[id] == slot)
            return id;
    return 0;
}

static void serve(void)
{
    (void)kz_netserver_service(s.srv, s.now);
    kz_netmsg m;
    while (kz_netserver_poll(s.srv, &m) == KZ_OK) {
        if (m.kind == KZ_NETMSG_CONNECT) {
            const kz_token_info *t = (const kz_token_info *)m.data;
            cr_assert(t->client_id == THIN_ID || t->client_id == FULL_ID);
            s.slot[t->client_id] = m.slot;
        } else if (m.kind == KZ_NETMSG_DATA && m.type == KZ_MSG_INPUT) {
            kz_wire_input in;
            cr_assert_eq(kz_wire_input_read(m.data, m.len, &in), KZ_OK);
            uint32_t id = id_of_slot(m.slot);
            cr_assert_neq(id, 0u);
            s.last_ack[id] = in.ack;
            s.inputs[id]++;
            for (uint32_t k = 0; k < in.count; k++)
                if (in.cmd[k].tick > s.newest_cmd[id]) {
                    s.newest_cmd[id] = in.cmd[k].tick;
                    s.cmd_seen[id][in.cmd[k].tick % 64u] = s.now;
                }
        }
    }
}

static void step(uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        s.now += STEP_NS;
        serve();
        (void)kz_client_update(s.thin, s.now);
        (void)kz_client_update(s.full, s.now);
        serve();
    }
}

static kz_client *make_client(uint32_t header_only, kz_counting_alloc *mem, uint64_t id)
{
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.header_only = header_only;
    cc.net.server.family = KZ_ADDR_IPV4;
    cc.net.server.ip[0] = 127;
    cc.net.server.ip[3] = 1;
    cc.net.server.port = kz_netserver_port(s.srv);
    cc.net.connect_timeout_ms = 10000;
    kz_counting_alloc_init(mem, NULL);
    cc.net.alloc = kz_counting_alloc_allocator(mem);
    kz_client *c = kz_client_create(&cc);
    cr_assert_not_null(c);
    kz_connect_token ct;
    cr_assert_eq(kzt_mint(&s.keys, PROTOCOL, SERVER_ID, kz_netserver_port(s.srv), id, &ct), KZ_OK);
    cr_assert_eq(kz_client_connect(c, &ct, s.now), KZ_OK);
    return c;
}

static void send_to(uint64_t id, uint8_t channel, uint8_t type, const void *p, uint32_t len)
{
    cr_assert_eq(kz_netserver_send(s.srv, s.slot[id], channel, type, p, len), KZ_OK);
}

static void welcome(uint64_t id)
{
    kz_wire_welcome w = {.version = KZ_WORLD_VERSION, .tick_hz = HZ, .tick = 1,
                         .self = AVATAR_OF(id), .n_slots = SLOTS, .history = HISTORY,
                         .bound = BOUND, .max_speed = MAX_SPEED};
    uint8_t buf[KZ_WELCOME_BYTES];
    kz_wire_welcome_write(&w, buf);
    send_to(id, KZ_CHANNEL_EVENT, KZ_MSG_WELCOME, buf, sizeof buf);
}

/* Both clients connected and welcomed; the live bytes each held before its
 * welcome go to before_*. */
static void scripted_start(uint64_t *before_thin, uint64_t *before_full)
{
    memset(&s, 0, sizeof s);
    s.now = 1;
    cr_assert_eq(kzt_keys_make(&s.keys), KZ_OK);
    kz_netserver_config nc;
    kzt_server_config(&nc, &s.keys, PROTOCOL, SERVER_ID, 4);
    s.srv = kz_netserver_create(&nc);
    cr_assert_not_null(s.srv);
    cr_assert_eq(kz_snap_codec_init(&s.codec, HZ, SLOTS, BOUND), KZ_OK);
    s.slot[THIN_ID] = s.slot[FULL_ID] = UINT32_MAX;
    s.thin = make_client(1, &s.thin_mem, THIN_ID);
    s.full = make_client(0, &s.full_mem, FULL_ID);
    for (int k = 0; k < 2000 && (s.slot[THIN_ID] == UINT32_MAX || s.slot[FULL_ID] == UINT32_MAX); k++)
        step(1);
    cr_assert_neq(s.slot[THIN_ID], UINT32_MAX, "the thin client reached the server");
    cr_assert_neq(s.slot[FULL_ID], UINT32_MAX, "the full client reached the server");
    if (before_thin)
        *before_thin = kz_counting_alloc_live_bytes(&s.thin_mem);
    if (before_full)
        *before_full = kz_counting_alloc_live_bytes(&s.full_mem);
    welcome(THIN_ID);
    welcome(FULL_ID);
    for (int k = 0; k < 200 && (kz_client_state(s.thin) != KZ_CLIENT_CONNECTED ||
                                kz_client_state(s.full) != KZ_CLIENT_CONNECTED); k++)
        step(1);
    cr_assert_eq(kz_client_state(s.thin), KZ_CLIENT_CONNECTED);
    cr_assert_eq(kz_client_state(s.full), KZ_CLIENT_CONNECTED);
}

static void scripted_stop(void)
{
    kz_client_destroy(s.thin);
    kz_client_destroy(s.full);
    kz_netserver_destroy(s.srv);
}

typedef struct scripted_snap {
    uint32_t tick, input_tick;
    uint8_t corrected;
    int32_t pos[3];          /* own root position, wire units */
    int garbage_body;        /* 1: junk bytes follow the body */
} scripted_snap;

/* A snapshot message: the header, then the body the real encoder writes
 * for an empty view at `tick` with no baseline, which a full client
 * decodes; with garbage_body, junk bytes after it, which a full client
 * refuses (a body must end the packet). */
static uint32_t build_snapshot(const scripted_snap *sn, uint64_t id, uint8_t *buf, size_t cap)
{
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, cap);
    kz_wire_snap_head h;
    memset(&h, 0, sizeof h);
    h.input_tick = sn->input_tick;
    h.corrected = sn->corrected;
    h.self.entity = AVATAR_OF(id);
    h.self.kind = KZ_KIND_AVATAR;
    memcpy(h.self.pos, sn->pos, sizeof h.self.pos);
    h.self.vel[0] = 2 * KZ_SNAP_VEL_UNITS;
    cr_assert_eq(kz_wire_snap_head_write(&s.codec, &h, &w), KZ_OK);
    uint16_t slot[1];
    kz_snap_state state[1];
    kz_snap_view want = {.tick = sn->tick, .count = 0, .cap = 1, .slot = slot, .state = state};
    uint16_t sent_slot[SLOTS];
    kz_snap_state sent_state[SLOTS];
    kz_snap_view sent = {.cap = SLOTS, .slot = sent_slot, .state = sent_state};
    kz_snap_encode_args a = {.want = &want, .budget_bits = 8 * cap};
    cr_assert_eq(kz_snap_encode(&s.codec, &a, &w, &sent, NULL, NULL), KZ_OK);
    size_t len = kz_bitwriter_finish(&w);
    cr_assert_gt(len, 0u);
    if (sn->garbage_body) {
        cr_assert_leq(len + 40u, cap);
        memset(buf + len, 0xff, 40);
        len += 40;
    }
    return (uint32_t)len;
}

static void send_snapshot(uint64_t id, const scripted_snap *sn)
{
    uint8_t buf[256];
    uint32_t len = build_snapshot(sn, id, buf, sizeof buf);
    send_to(id, KZ_CHANNEL_SNAPSHOT, KZ_MSG_SNAPSHOT, buf, len);
}

static uint64_t counter(const kz_client *c, uint32_t id)
{
    return kz_counters_get(kz_client_counters(c), id);
}

/* Drains c's events; returns how many were corrections, checking each
 * carries code 0 when `code_zero`. */
static uint32_t corrections_polled(kz_client *c, int code_zero)
{
    uint32_t n = 0;
    kz_client_event ev;
    while (kz_client_poll_event(c, &ev) == KZ_OK) {
        if (ev.type != KZ_EV_CORRECTION)
            continue;
        n++;
        if (code_zero)
            cr_assert_eq(ev.code, 0u, "a header-only correction has no distance");
    }
    return n;
}

/* ---- configuration ------------------------------------------------------ */

Test(client_thin, config_default_is_full_and_other_values_are_refused)
{
    kz_client_config cc;
    memset(&cc, 0xab, sizeof cc);
    kz_client_config_default(&cc);
    cr_assert_eq(cc.header_only, 0u, "the default client decodes everything");
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.header_only = 2;
    cr_assert_null(kz_client_create(&cc), "header_only 2 is refused");
    cc.header_only = UINT32_MAX;
    cr_assert_null(kz_client_create(&cc));
    cc.header_only = 1;
    kz_client *c = kz_client_create(&cc);
    cr_assert_not_null(c);
    kz_client_destroy(c);
}

/* ---- the scripted server ------------------------------------------------ */

Test(client_thin, acknowledges_a_snapshot_whose_body_it_does_not_read)
{
    scripted_start(NULL, NULL);
    scripted_snap sn = {.tick = 5, .input_tick = 0, .pos = {1000, 0, -2000}, .garbage_body = 1};
    send_snapshot(THIN_ID, &sn);
    send_snapshot(FULL_ID, &sn);
    step(12);  /* 100 ms: both have received it and sent inputs since */
    cr_assert_eq(counter(s.thin, KZ_CLIENT_C_SNAPSHOTS), 1u);
    cr_assert_eq(counter(s.thin, KZ_CLIENT_C_DROP_MALFORMED), 0u);
    cr_assert_gt(counter(s.thin, KZ_CLIENT_C_SNAPSHOT_BYTES), 0u);
    cr_assert_eq(kz_client_server_tick(s.thin), 5u);
    cr_assert_eq(s.last_ack[THIN_ID], 5u, "the thin client's inputs acknowledge tick 5");
    /* The same bytes are refused by a client that decodes the body. */
    cr_assert_eq(counter(s.full, KZ_CLIENT_C_SNAPSHOTS), 0u);
    cr_assert_eq(counter(s.full, KZ_CLIENT_C_DROP_MALFORMED), 1u);
    cr_assert_eq(s.last_ack[FULL_ID], 0u);
    cr_assert_gt(s.inputs[FULL_ID], 0u);

    /* Its own avatar is where the header says, poses at rest. */
    kz_avatar_state me;
    cr_assert_eq(kz_client_self(s.thin, &me), KZ_OK);
    cr_assert_float_eq(me.pos[0], 1000.0f / KZ_SNAP_POS_UNITS, 1e-4);
    cr_assert_float_eq(me.pos[2], -2000.0f / KZ_SNAP_POS_UNITS, 1e-4);
    cr_assert_float_eq(me.vel[0], 2.0f, 1e-3);
    for (uint32_t p = 0; p < KZ_POSE_COUNT; p++)
        cr_assert_float_eq(me.pose[p].rot[3], 1.0f, 1e-3, "pose %u at rest", p);
    cr_assert_eq(corrections_polled(s.thin, 1), 0u, "its placement is no correction");

    /* Inputs keep coming but predict nothing: still where the server said. */
    kz_avatar_state in;
    kz_avatar_state_rest(&in);
    in.vel[0] = 3.0f;
    cr_assert_eq(kz_client_send_input(s.thin, &in), KZ_OK);
    step(24);
    cr_assert_eq(kz_client_self(s.thin, &me), KZ_OK);
    cr_assert_float_eq(me.pos[0], 1000.0f / KZ_SNAP_POS_UNITS, 1e-4);
    scripted_stop();
}

Test(client_thin, a_truncated_header_is_malformed_and_an_old_tick_late)
{
    scripted_start(NULL, NULL);
    scripted_snap sn = {.tick = 9, .pos = {0, 0, 0}};
    send_snapshot(THIN_ID, &sn);
    step(4);
    cr_assert_eq(kz_client_server_tick(s.thin), 9u);
    /* Hostile: the first bytes of a header only, and nothing at all. */
    uint8_t buf[256];
    uint32_t len = build_snapshot(&sn, THIN_ID, buf, sizeof buf);
    uint32_t cuts[] = {1, 4, 9, len / 2};
    for (uint32_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++)
        send_to(THIN_ID, KZ_CHANNEL_SNAPSHOT, KZ_MSG_SNAPSHOT, buf, cuts[k]);
    step(4);
    cr_assert_eq(counter(s.thin, KZ_CLIENT_C_DROP_MALFORMED), 4u);
    /* An older tick after a newer one: late, and the ack does not go back. */
    scripted_snap old = {.tick = 7, .pos = {5000, 0, 0}};
    send_snapshot(THIN_ID, &old);
    step(12);
    cr_assert_eq(counter(s.thin, KZ_CLIENT_C_SNAPSHOTS_LATE), 1u);
    cr_assert_eq(counter(s.thin, KZ_CLIENT_C_SNAPSHOTS), 1u);
    cr_assert_eq(kz_client_server_tick(s.thin), 9u);
    cr_assert_eq(s.last_ack[THIN_ID], 9u);
    kz_avatar_state me;
    cr_assert_eq(kz_client_self(s.thin, &me), KZ_OK);
    cr_assert_float_eq(me.pos[0], 0.0f, 1e-6, "a late header does not move the avatar");
    cr_assert_eq(kz_client_state(s.thin), KZ_CLIENT_CONNECTED);
    scripted_stop();
}

Test(client_thin, reports_a_correction_once_per_flagged_command)
{
    scripted_start(NULL, NULL);
    /* The server keeps the flag on the ticks that repeat a late command:
     * three headers flag command 7, one command 8, then none. */
    const struct { uint32_t tick, input_tick; uint8_t corrected; } seq[] = {
        {10, 6, 0}, {11, 7, 1}, {12, 7, 1}, {13, 7, 1}, {14, 8, 1}, {15, 9, 0}, {16, 10, 0},
    };
    for (uint32_t k = 0; k < sizeof seq / sizeof seq[0]; k++) {
        scripted_snap sn = {.tick = seq[k].tick, .input_tick = seq[k].input_tick,
                            .corrected = seq[k].corrected, .pos = {(int32_t)k * 100, 0, 0}};
        send_snapshot(THIN_ID, &sn);
        step(1);
    }
    step(4);
    cr_assert_eq(counter(s.thin, KZ_CLIENT_C_SNAPSHOTS), 7u);
    cr_assert_eq(counter(s.thin, KZ_CLIENT_C_CORRECTIONS), 2u, "commands 7 and 8");
    cr_assert_eq(corrections_polled(s.thin, 1), 2u);
    kz_avatar_state me;
    cr_assert_eq(kz_client_self(s.thin, &me), KZ_OK);
    cr_assert_float_eq(me.pos[0], 600.0f / KZ_SNAP_POS_UNITS, 1e-4, "the newest header's place");
    scripted_stop();
}

/* The input latency runs from the input's sending (in the client update
 * of some step, at most one step before the server first saw it) to the
 * update that took in a snapshot acknowledging it; older or never-sent
 * input ticks leave it alone. */
Test(client_thin, input_latency_runs_from_sending_to_the_acknowledging_snapshot)
{
    scripted_start(NULL, NULL);
    uint32_t tick = 99;
    kz_time_ns lat = 99;
    cr_assert_eq(kz_client_input_latency(s.thin, &tick, &lat), KZ_EEMPTY);
    cr_assert_eq(tick, 0u);
    cr_assert_eq(lat, 0u);
    step(40);  /* inputs flow at 30 Hz */
    uint32_t t = s.newest_cmd[THIN_ID] - 2u;
    cr_assert_gt(t, 2u, "the thin client has sent inputs");
    kz_time_ns seen = s.cmd_seen[THIN_ID][t % 64u];
    cr_assert_gt(seen, 0u);
    scripted_snap sn = {.tick = 20, .input_tick = t, .pos = {0, 0, 0}};
    send_snapshot(THIN_ID, &sn);
    step(1);
    cr_assert_eq(counter(s.thin, KZ_CLIENT_C_SNAPSHOTS), 1u);
    cr_assert_eq(kz_client_input_latency(s.thin, &tick, &lat), KZ_OK);
    cr_assert_eq(tick, t);
    cr_assert_geq(lat, s.now - seen, "sent no later than first received");
    cr_assert_leq(lat, s.now - seen + STEP_NS, "sent in the update just before");
    kz_time_ns first = lat;

    /* An older acknowledgement changes nothing. */
    sn.tick = 21;
    sn.input_tick = t - 1u;
    send_snapshot(THIN_ID, &sn);
    step(1);
    cr_assert_eq(kz_client_input_latency(s.thin, &tick, &lat), KZ_OK);
    cr_assert_eq(tick, t);
    cr_assert_eq(lat, first);

    /* A server acknowledging an input never sent gives no measure. */
    sn.tick = 22;
    sn.input_tick = s.newest_cmd[THIN_ID] + 40u;
    send_snapshot(THIN_ID, &sn);
    step(1);
    cr_assert_eq(kz_client_input_latency(s.thin, &tick, &lat), KZ_OK);
    cr_assert_eq(tick, t);
    cr_assert_eq(lat, first);
    scripted_stop();
}

Test(client_thin, keeps_no_view_tables_and_shows_no_entities)
{
    uint64_t thin0 = 0, full0 = 0;
    scripted_start(&thin0, &full0);
    uint64_t thin_grew = kz_counting_alloc_live_bytes(&s.thin_mem) - thin0;
    uint64_t full_grew = kz_counting_alloc_live_bytes(&s.full_mem) - full0;
    /* A full client holds HISTORY views of SLOTS states, and per-slot samples. */
    cr_assert_geq(full_grew, (uint64_t)HISTORY * SLOTS * sizeof(kz_snap_state),
                  "full client tables: %llu bytes", (unsigned long long)full_grew);
    cr_assert_leq(thin_grew, 256u, "thin client tables: %llu bytes", (unsigned long long)thin_grew);

    scripted_snap sn = {.tick = 3, .pos = {100, 0, 100}};
    send_snapshot(THIN_ID, &sn);
    send_snapshot(FULL_ID, &sn);
    step(12);
    cr_assert_eq(counter(s.thin, KZ_CLIENT_C_SNAPSHOTS), 1u);
    cr_assert_eq(counter(s.full, KZ_CLIENT_C_SNAPSHOTS), 1u, "the empty body decodes");
    kz_client_entity e[4];
    cr_assert_eq(kz_client_view(s.thin, e, 4), 0u);
    kz_avatar_state st;
    cr_assert_eq(kz_client_entity_at(s.thin, AVATAR_OF(FULL_ID), 3.0, &st), KZ_EINVAL);
    kz_badge b;
    cr_assert_eq(kz_client_badge(s.thin, AVATAR_OF(FULL_ID), &b), KZ_EINVAL);
    cr_assert_eq(kz_client_self_id(s.thin), AVATAR_OF(THIN_ID));
    scripted_stop();
}

/* ---- a real server ------------------------------------------------------ */

static kzt_world w;

static void world_steps(kz_client *thin, uint32_t ticks)
{
    uint32_t end = kz_server_tick(w.srv) + ticks;
    while (kz_server_tick(w.srv) < end) {
        kzt_world_step(&w, STEP_NS);
        (void)kz_client_update(thin, w.now);
    }
}

Test(client_thin, a_real_server_sends_deltas_moves_and_kicks_a_thin_client)
{
    memset(&w, 0, sizeof w);
    w.spare = 1;
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 5.0f;
    cr_assert_eq(kzt_world_start(&w, 1, NULL, &sc, 11), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 1u);

    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.header_only = 1;
    cc.net.server.family = KZ_ADDR_IPV4;
    cc.net.server.ip[0] = 127;
    cc.net.server.ip[3] = 1;
    cc.net.server.port = kz_server_port(w.srv);
    kz_client *thin = kz_client_create(&cc);
    cr_assert_not_null(thin);
    kz_connect_token ct;
    cr_assert_eq(kzt_world_mint(&w, 77, &ct), KZ_OK);
    cr_assert_eq(kz_client_connect(thin, &ct, w.now), KZ_OK);
    for (int k = 0; k < 4000 && kz_client_state(thin) != KZ_CLIENT_CONNECTED; k++) {
        kzt_world_step(&w, STEP_NS);
        (void)kz_client_update(thin, w.now);
    }
    cr_assert_eq(kz_client_state(thin), KZ_CLIENT_CONNECTED);
    world_steps(thin, 10);
    const kz_counters *wc = kz_server_counters(w.srv);
    uint64_t full0 = kz_counters_get(wc, KZ_WORLD_C_SNAPSHOT_FULL);
    uint64_t sent0 = kz_counters_get(wc, KZ_WORLD_C_SNAPSHOTS);

    /* Walk +x at 1 m/s for 90 ticks (3 m), then stand: starting and
     * stopping within one tick stays inside the server's max_accel. */
    kz_avatar_state in;
    kz_avatar_state_rest(&in);
    in.vel[0] = 1.0f;
    cr_assert_eq(kz_client_send_input(thin, &in), KZ_OK);
    kz_avatar_state start;
    cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(thin), &start), KZ_OK);
    world_steps(thin, 90);
    in.vel[0] = 0.0f;
    cr_assert_eq(kz_client_send_input(thin, &in), KZ_OK);
    world_steps(thin, 30);

    /* Acknowledged: about 240 more snapshots went out, two clients, and
     * every one was a delta against an acknowledged view. */
    uint64_t sent = kz_counters_get(wc, KZ_WORLD_C_SNAPSHOTS) - sent0;
    cr_assert_geq(sent, 200u, "%llu snapshots", (unsigned long long)sent);
    cr_assert_eq(kz_counters_get(wc, KZ_WORLD_C_SNAPSHOT_FULL), full0,
                 "no full-state snapshot once both acknowledge");
    cr_assert_geq(kz_counters_get(kz_client_counters(thin), KZ_CLIENT_C_SNAPSHOTS), 100u);
    uint32_t lag = kz_server_tick(w.srv) - kz_client_server_tick(thin);
    cr_assert_leq(lag, 2u, "the thin client is %u ticks behind", lag);

    /* The server moved it as its inputs asked, and it knows where it is. */
    kz_avatar_state at, me;
    cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(thin), &at), KZ_OK);
    cr_assert_float_eq(at.pos[0] - start.pos[0], 3.0f, 0.2f, "walked %.2f m",
                       (double)(at.pos[0] - start.pos[0]));
    cr_assert_eq(kz_client_self(thin, &me), KZ_OK);
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(me.pos[i], at.pos[i], 0.01f, "axis %d", i);
    cr_assert_eq(kz_counters_get(wc, KZ_WORLD_C_CORRECTIONS), 0u, "an honest walk");
    cr_assert_eq(counter(thin, KZ_CLIENT_C_CORRECTIONS), 0u, "an honest walk is not corrected");

    /* A kick reaches it with its reason. */
    cr_assert_eq(kz_server_kick(w.srv, kz_client_self_id(thin), KZ_KICK_ADMIN, "bye"), KZ_OK);
    for (int k = 0; k < 2000 && kz_client_state(thin) == KZ_CLIENT_CONNECTED; k++) {
        kzt_world_step(&w, STEP_NS);
        (void)kz_client_update(thin, w.now);
    }
    cr_assert_eq(kz_client_state(thin), KZ_CLIENT_DISCONNECTED);
    cr_assert_eq(kz_client_reason(thin), KZ_KICK_ADMIN);
    kz_client_destroy(thin);
    kzt_world_stop(&w);
}
