/*
 * The rules of presence end to end: a private zone hides those inside from
 * those outside (views, events, chat) and the other way round; a zone's
 * access list holds an avatar it refuses at the boundary; a block is
 * mutual (neither side sees or hears the other) until lifted.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kizuna/audit.h>

#include "support/world.h"

#define STEP_NS (KZ_NS_PER_S / 120)

static kzt_world w;

static void start(uint32_t n)
{
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    memset(&w, 0, sizeof w);
    cr_assert_eq(kzt_world_start(&w, n, NULL, &sc, 8), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), n);
}

static void run_ticks(uint32_t ticks)
{
    uint32_t end = kz_server_tick(w.srv) + ticks;
    while (kz_server_tick(w.srv) < end)
        kzt_world_step(&w, STEP_NS);
}

static void walk(uint32_t i, float vx, float vz)
{
    kz_avatar_state in;
    kz_avatar_state_rest(&in);
    in.vel[0] = vx;
    in.vel[2] = vz;
    cr_assert_eq(kz_client_send_input(w.clients[i], &in), KZ_OK);
}

static int sees(uint32_t i, uint32_t entity)
{
    kz_client_entity view[128];
    uint32_t n = kz_client_view(w.clients[i], view, 128);
    for (uint32_t k = 0; k < n && k < 128; k++)
        if (view[k].id == entity)
            return 1;
    kz_avatar_state st;
    return kz_client_entity_at(w.clients[i], entity, kz_client_server_tick(w.clients[i]), &st) == KZ_OK;
}

/* Counts events on client i that name `entity` (drains the queue). */
static uint32_t events_about(uint32_t i, uint32_t entity, uint32_t type)
{
    uint32_t n = 0;
    kz_client_event ev;
    while (kz_client_poll_event(w.clients[i], &ev) == KZ_OK)
        n += ev.entity == entity && (type == 0 || ev.type == type);
    return n;
}

static float x_of(uint32_t i)
{
    kz_avatar_state st;
    cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[i]), &st), KZ_OK);
    return st.pos[0];
}

Test(world_rules, a_private_zone_hides_both_ways)
{
    start(2);
    kz_zone_def z;
    memset(&z, 0, sizeof z);
    strcpy(z.name, "backstage");
    z.shape = KZ_ZONE_SPHERE;
    z.center[0] = 30.0f;
    z.half[0] = 6.0f;
    z.is_private = 1;
    cr_assert_eq(kz_server_zone_set(w.srv, &z), KZ_OK);
    uint32_t a = kz_client_self_id(w.clients[0]), b = kz_client_self_id(w.clients[1]);
    run_ticks(20);
    cr_assert(sees(1, a) && sees(0, b), "outside the zone they see each other");
    /* A walks into the zone (about 30 m at 6 m/s) and stops inside. */
    float target = 30.0f - x_of(0);
    walk(0, 6.0f, 0.0f);
    run_ticks((uint32_t)(target / 6.0f * 30.0f));
    walk(0, 0, 0);
    run_ticks(30);
    cr_assert_lt(fabsf(x_of(0) - 30.0f), 5.0f, "A is inside (x = %.1f)", x_of(0));
    events_about(1, a, 0);
    events_about(0, b, 0);
    /* From now on B must learn nothing of A and A nothing of B. */
    cr_assert_eq(kz_client_chat(w.clients[0], "secret", 6), KZ_OK);
    cr_assert_eq(kz_client_chat(w.clients[1], "hello?", 6), KZ_OK);
    uint8_t frame[100] = {0};
    cr_assert_eq(kz_client_voice(w.clients[0], frame, sizeof frame), KZ_OK);
    for (int k = 0; k < 60; k++) {
        run_ticks(1);
        cr_assert(!sees(1, a), "outside sees the insider");
        cr_assert(!sees(0, b), "the insider sees outside");
    }
    cr_assert_eq(events_about(1, a, 0), 0, "no event about the insider reaches outside");
    cr_assert_eq(events_about(0, b, 0), 0, "no event about outside reaches the insider");
    /* Walking out restores mutual presence. */
    walk(0, -6.0f, 0.0f);
    run_ticks(60);
    walk(0, 0, 0);
    run_ticks(30);
    cr_assert(sees(1, a) && sees(0, b), "outside again, both see each other");
    kzt_world_stop(&w);
}

Test(world_rules, an_access_list_holds_the_avatar_at_the_boundary)
{
    start(1);
    kz_zone_def z;
    memset(&z, 0, sizeof z);
    strcpy(z.name, "verified-only");
    z.shape = KZ_ZONE_BOX;
    z.center[0] = 20.0f;
    z.half[0] = 5.0f;
    z.half[1] = 10.0f;
    z.half[2] = 50.0f;
    z.min_verification = KZ_VERIFY_STRONG;  /* test tokens carry KZ_VERIFY_NONE */
    cr_assert_eq(kz_server_zone_set(w.srv, &z), KZ_OK);
    walk(0, 5.0f, 0.0f);
    run_ticks(150);
    float x = x_of(0);
    cr_assert_lt(x, 15.0f, "held at the boundary (x = %.2f)", x);
    cr_assert_gt(x, 14.5f, "right at it (x = %.2f)", x);
    cr_assert_gt(kz_counters_get(kz_server_counters(w.srv), KZ_WORLD_C_ZONE_REFUSED), 10);
    uint32_t corrections = 0;
    kz_client_event ev;
    while (kz_client_poll_event(w.clients[0], &ev) == KZ_OK)
        corrections += ev.type == KZ_EV_CORRECTION;
    cr_assert_gt(corrections, 0, "the client is told");
    /* Lifting the rule lets it in. */
    z.min_verification = 0;
    cr_assert_eq(kz_server_zone_set(w.srv, &z), KZ_OK);
    run_ticks(60);
    cr_assert_gt(x_of(0), 15.5f, "admitted once the list allows it");
    cr_assert_eq(kz_server_zone_remove(w.srv, "verified-only"), KZ_OK);
    cr_assert_eq(kz_server_zone_remove(w.srv, "verified-only"), KZ_EINVAL);
    kzt_world_stop(&w);
}

Test(world_rules, blocks_are_mutual_until_lifted)
{
    start(3);
    run_ticks(20);
    uint32_t a = kz_client_self_id(w.clients[0]), b = kz_client_self_id(w.clients[1]);
    uint32_t c = kz_client_self_id(w.clients[2]);
    cr_assert(sees(0, b) && sees(1, a));
    cr_assert_eq(kz_client_block(w.clients[0], b, 1), KZ_OK);
    run_ticks(5);
    events_about(0, b, 0);
    events_about(1, a, 0);
    cr_assert_eq(kz_client_chat(w.clients[1], "can you hear me", 15), KZ_OK);
    cr_assert_eq(kz_client_chat(w.clients[0], "la la la", 8), KZ_OK);
    for (int k = 0; k < 30; k++) {
        run_ticks(1);
        cr_assert(!sees(0, b), "the blocker sees the blocked");
        cr_assert(!sees(1, a), "the blocked sees the blocker");
        cr_assert(sees(2, a) && sees(2, b), "a third party still sees both");
    }
    cr_assert_eq(events_about(0, b, KZ_EV_CHAT), 0, "no chat from the blocked");
    cr_assert_eq(events_about(1, a, KZ_EV_CHAT), 0, "no chat from the blocker");
    cr_assert_eq(events_about(2, b, KZ_EV_CHAT), 1, "others still hear");
    cr_assert_eq(kz_counters_get(kz_server_counters(w.srv), KZ_WORLD_C_BLOCKS), 1);
    (void)c;
    cr_assert_eq(kz_client_block(w.clients[0], b, 0), KZ_OK);
    run_ticks(10);
    cr_assert(sees(0, b) && sees(1, a), "unblocked: presence is back");
    kzt_world_stop(&w);
}

static uint32_t notices(uint32_t i, uint32_t code)
{
    uint32_t n = 0;
    kz_client_event ev;
    while (kz_client_poll_event(w.clients[i], &ev) == KZ_OK)
        n += ev.type == KZ_EV_NOTICE && ev.code == code;
    return n;
}

Test(world_rules, role_gated_actions_need_the_role_and_observers_are_announced)
{
    memset(&w, 0, sizeof w);
    w.moderators = 1;  /* client 0 holds "moderator" */
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    cr_assert_eq(kzt_world_start(&w, 3, NULL, &sc, 8), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 3);
    run_ticks(20);
    uint32_t mod = kz_client_self_id(w.clients[0]), v2 = kz_client_self_id(w.clients[2]);
    const kz_counters *k = kz_server_counters(w.srv);
    for (uint32_t i = 0; i < 3; i++)
        notices(i, 0);

    /* A visitor may not kick. */
    cr_assert_eq(kz_client_admin(w.clients[1], KZ_ADMIN_KICK, v2), KZ_OK);
    run_ticks(5);
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_ADMIN_DENIED), 1);
    cr_assert_eq(notices(1, 5 /* KZ_NOTICE_DENIED */), 1, "the visitor is told");
    cr_assert_eq(kz_client_state(w.clients[2]), KZ_CLIENT_CONNECTED, "and nobody was kicked");

    /* A moderator may mute: the muted client's chat goes nowhere. */
    cr_assert_eq(kz_client_admin(w.clients[0], KZ_ADMIN_MUTE, v2), KZ_OK);
    run_ticks(5);
    cr_assert_eq(notices(2, 6 /* KZ_NOTICE_MUTED */), 1);
    cr_assert_eq(kz_client_chat(w.clients[2], "still here", 10), KZ_OK);
    run_ticks(5);
    cr_assert_eq(events_about(1, v2, KZ_EV_CHAT), 0, "muted chat is not relayed");
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_DROP_MUTED), 1);

    /* Observer mode: the moderator leaves everyone's view, and everyone it
     * sees is told it is watched. */
    cr_assert_eq(kz_client_admin(w.clients[0], KZ_ADMIN_OBSERVE_ON, 0), KZ_OK);
    run_ticks(10);
    cr_assert_geq(notices(1, 4 /* KZ_NOTICE_OBSERVED */), 1, "client 1 is told it is observed");
    cr_assert_geq(notices(2, 4), 1, "client 2 is told it is observed");
    cr_assert(!sees(1, mod) && !sees(2, mod), "the observer is not in anyone's view");
    cr_assert(sees(0, v2), "the observer still sees");

    /* And may kick. */
    cr_assert_eq(kz_client_admin(w.clients[0], KZ_ADMIN_KICK, v2), KZ_OK);
    for (int i = 0; i < 200 && kz_client_state(w.clients[2]) == KZ_CLIENT_CONNECTED; i++)
        kzt_world_step(&w, STEP_NS);
    cr_assert_eq(kz_client_state(w.clients[2]), KZ_CLIENT_DISCONNECTED);
    cr_assert_eq(kz_client_reason(w.clients[2]), KZ_KICK_ADMIN);
    cr_assert_geq(kz_counters_get(k, KZ_WORLD_C_ADMIN_DONE), 3);
    kzt_world_stop(&w);
}

Test(world_rules, an_agent_is_shown_as_an_agent_acting_for_its_principal)
{
    memset(&w, 0, sizeof w);
    w.agents = 1;  /* the last client's token says agent, acting for client 3 */
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    cr_assert_eq(kzt_world_start(&w, 2, NULL, &sc, 8), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 2);
    run_ticks(20);
    uint32_t agent = kz_client_self_id(w.clients[1]);
    kz_badge b;
    cr_assert_eq(kz_client_badge(w.clients[0], agent, &b), KZ_OK);
    cr_assert_eq(b.actor_kind, KZ_ACTOR_AGENT, "shown as an agent");
    cr_assert_eq(b.acting_for, 3, "acting for its principal");
    /* Nothing the agent sends changes that: its inputs carry no identity,
     * and after a while and a reconnect-free session the badge is the same. */
    walk(1, 1.0f, 0.0f);
    run_ticks(60);
    cr_assert_eq(kz_client_badge(w.clients[0], agent, &b), KZ_OK);
    cr_assert_eq(b.actor_kind, KZ_ACTOR_AGENT);
    kzt_world_stop(&w);
}

/* Reads every record of an audit file; counts those of `type` and, for
 * them, checks that the client id is `client` (0 = any). */
static uint32_t audit_count(const char *path, uint32_t type, uint64_t client)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    static uint8_t buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    uint32_t n = 0;
    size_t off = 0;
    while (off < len) {
        kz_audit_entry e;
        cr_assert_eq(kz_audit_decode(buf + off, len - off, &e), KZ_OK, "record at %zu", off);
        if (e.rec.type == type && (!client || e.rec.client_id == client))
            n++;
        off += e.size;
    }
    return n;
}

Test(world_rules, the_audit_log_records_who_did_what_and_verifies)
{
    kz_sign_keypair kp;
    cr_assert_eq(kz_sign_keypair_generate(&kp), KZ_OK);
    char path[] = "/tmp/kz-world-audit-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    unlink(path);
    kz_audit_config ac;
    memset(&ac, 0, sizeof ac);
    kz_audit_config_default(&ac);
    ac.path = path;
    memcpy(ac.sign_secret_key, kp.secret_key, sizeof ac.sign_secret_key);
    kz_audit *audit = NULL;
    int orc = kz_audit_open(&ac, &audit);
    cr_assert_eq(orc, KZ_OK, "audit open: %s", kz_strerror(orc));

    memset(&w, 0, sizeof w);
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    sc.audit = audit;
    cr_assert_eq(kzt_world_start(&w, 2, NULL, &sc, 8), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 2);
    run_ticks(10);
    /* A visitor's admin action, a block, a zone refusal. */
    cr_assert_eq(kz_client_admin(w.clients[1], KZ_ADMIN_KICK, kz_client_self_id(w.clients[0])), KZ_OK);
    cr_assert_eq(kz_client_block(w.clients[0], kz_client_self_id(w.clients[1]), 1), KZ_OK);
    kz_zone_def z;
    memset(&z, 0, sizeof z);
    strcpy(z.name, "staff");
    z.shape = KZ_ZONE_SPHERE;
    z.center[0] = 10.0f;
    z.half[0] = 4.0f;
    strcpy(z.roles[0], "staff");
    cr_assert_eq(kz_server_zone_set(w.srv, &z), KZ_OK);
    walk(1, 5.0f, 0.0f);
    run_ticks(90);
    kzt_world_stop(&w);  /* disconnects are recorded as the server goes */
    cr_assert_eq(kz_audit_close(audit), KZ_OK);

    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(path, kp.public_key, 0, &r), KZ_OK);
    cr_assert_eq(r.verdict, KZ_AUDIT_VALID, "verify: %s", r.why ? r.why : "");
    cr_assert_eq(audit_count(path, KZ_AUDIT_CONNECT, 0), 2, "both connects");
    cr_assert_eq(audit_count(path, KZ_AUDIT_ROLE_ACTION, 2), 1, "the refused action, by client 2");
    cr_assert_eq(audit_count(path, KZ_AUDIT_BLOCK, 1), 1, "the block, by client 1");
    cr_assert_geq(audit_count(path, KZ_AUDIT_ZONE_REFUSAL, 2), 1, "the zone refusal of client 2");
    unlink(path);
}

Test(world_rules, a_personal_space_bubble_keeps_others_out)
{
    start(2);
    run_ticks(10);
    cr_assert_eq(kz_client_personal_space(w.clients[0], 1), KZ_OK);
    run_ticks(5);
    /* Client 1 walks straight at client 0 for long enough to pass it. */
    kz_avatar_state a, b;
    for (int k = 0; k < 120; k++) {
        cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[0]), &a), KZ_OK);
        cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[1]), &b), KZ_OK);
        float dx = a.pos[0] - b.pos[0], dz = a.pos[2] - b.pos[2], d = hypotf(dx, dz);
        if (d > 0.01f)
            walk(1, 2.0f * dx / d, 2.0f * dz / d);
        run_ticks(1);
        cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[1]), &b), KZ_OK);
        float now_d = hypotf(a.pos[0] - b.pos[0], a.pos[2] - b.pos[2]);
        cr_assert(now_d >= 1.2f - 0.01f || now_d >= d - 1e-4f,
                  "client 1 came inside the bubble (%.3f m)", now_d);
    }
    cr_assert_gt(kz_counters_get(kz_server_counters(w.srv), KZ_WORLD_C_BUBBLE_REFUSED), 0);
    /* Off again: it may come close. */
    cr_assert_eq(kz_client_personal_space(w.clients[0], 0), KZ_OK);
    run_ticks(5);
    float closest = 1e9f;
    for (int k = 0; k < 60; k++) {
        cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[0]), &a), KZ_OK);
        cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[1]), &b), KZ_OK);
        float dx = a.pos[0] - b.pos[0], dz = a.pos[2] - b.pos[2], d = hypotf(dx, dz);
        closest = d < closest ? d : closest;
        if (d > 0.4f)
            walk(1, 2.0f * dx / d, 2.0f * dz / d);
        else
            walk(1, 0, 0);
        run_ticks(1);
    }
    cr_assert_lt(closest, 1.0f, "without the bubble it comes closer (%.2f m)", closest);
    kzt_world_stop(&w);
}

Test(world_rules, teleports_only_through_a_granted_portal)
{
    start(1);
    run_ticks(10);
    const float entrance[3] = {x_of(0) + 6.0f, 0, 0}, exit_[3] = {200.0f, 0, 150.0f};
    cr_assert_eq(kz_server_portal_set(w.srv, 1, entrance, 1.5f, exit_), KZ_OK);
    cr_assert_eq(kz_server_portal_set(w.srv, 0, entrance, 1.5f, exit_), KZ_EINVAL);
    const kz_counters *k = kz_server_counters(w.srv);
    /* Far from the entrance: refused, and nothing moves. */
    float before = x_of(0);
    cr_assert_eq(kz_client_teleport(w.clients[0], 1), KZ_OK);
    cr_assert_eq(kz_client_teleport(w.clients[0], 7), KZ_OK);  /* no such portal */
    run_ticks(5);
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_TELEPORT_REFUSED), 2);
    cr_assert_lt(fabsf(x_of(0) - before), 0.01f);
    /* Walk onto the entrance (z may be off by the spawn: aim at it). */
    kz_avatar_state st;
    for (int t = 0; t < 150; t++) {
        cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[0]), &st), KZ_OK);
        float dx = entrance[0] - st.pos[0], dz = entrance[2] - st.pos[2], d = hypotf(dx, dz);
        if (d < 0.5f) {
            walk(0, 0, 0);
            break;
        }
        walk(0, 3.0f * dx / d, 3.0f * dz / d);
        run_ticks(1);
    }
    run_ticks(5);
    cr_assert_eq(kz_client_teleport(w.clients[0], 1), KZ_OK);
    run_ticks(5);
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_TELEPORTS), 1, "granted at the entrance");
    cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[0]), &st), KZ_OK);
    cr_assert_lt(fabsf(st.pos[0] - 200.0f) + fabsf(st.pos[2] - 150.0f), 0.5f, "arrived at the exit");
    /* The grant was used up: asking again from the exit is refused. */
    cr_assert_eq(kz_client_teleport(w.clients[0], 1), KZ_OK);
    run_ticks(5);
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_TELEPORT_REFUSED), 3);
    run_ticks(30);
    kz_avatar_state me;
    cr_assert_eq(kz_client_self(w.clients[0], &me), KZ_OK);
    cr_assert_lt(fabsf(me.pos[0] - 200.0f), 0.5f, "the client's own prediction followed the jump");
    kzt_world_stop(&w);
}

Test(world_rules, moderators_summon_and_only_admins_lock_zones)
{
    memset(&w, 0, sizeof w);
    w.moderators = 1;
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    cr_assert_eq(kzt_world_start(&w, 2, NULL, &sc, 8), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 2);
    const kz_counters *k = kz_server_counters(w.srv);
    kz_zone_def z;
    memset(&z, 0, sizeof z);
    strcpy(z.name, "stage");
    z.shape = KZ_ZONE_SPHERE;
    z.center[0] = 20.0f;
    z.half[0] = 4.0f;
    cr_assert_eq(kz_server_zone_set(w.srv, &z), KZ_OK);
    run_ticks(10);
    /* The visitor walks away; the moderator summons it back. */
    walk(1, 0, 6.0f);
    run_ticks(60);
    walk(1, 0, 0);
    run_ticks(5);
    uint32_t visitor = kz_client_self_id(w.clients[1]);
    cr_assert_eq(kz_client_admin(w.clients[0], KZ_ADMIN_SUMMON, visitor), KZ_OK);
    run_ticks(5);
    kz_avatar_state a, b;
    cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[0]), &a), KZ_OK);
    cr_assert_eq(kz_server_entity(w.srv, visitor, &b), KZ_OK);
    cr_assert_lt(hypotf(a.pos[0] - b.pos[0], a.pos[2] - b.pos[2]), 1.5f, "summoned next to the moderator");
    /* Locking a zone needs the admin role: the moderator is refused. */
    cr_assert_eq(kz_client_admin(w.clients[0], KZ_ADMIN_ZONE_LOCK, 1), KZ_OK);
    cr_assert_eq(kz_client_admin(w.clients[1], KZ_ADMIN_ZONE_LOCK, 1), KZ_OK);
    run_ticks(5);
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_ADMIN_DENIED), 2);
    kzt_world_stop(&w);

    /* A server whose admin role is "moderator": now the lock works and
     * keeps the visitor out. */
    memset(&w, 0, sizeof w);
    w.moderators = 1;
    sc.admin_role = "moderator";
    cr_assert_eq(kzt_world_start(&w, 2, NULL, &sc, 8), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 2);
    k = kz_server_counters(w.srv);
    cr_assert_eq(kz_server_zone_set(w.srv, &z), KZ_OK);
    cr_assert_eq(kz_client_admin(w.clients[0], KZ_ADMIN_ZONE_LOCK, 1), KZ_OK);
    run_ticks(5);
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_ADMIN_DENIED), 0);
    walk(1, 6.0f, 0.0f);
    run_ticks(150);
    kz_avatar_state v;
    cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[1]), &v), KZ_OK);
    float dc = sqrtf((v.pos[0] - 20.0f) * (v.pos[0] - 20.0f) + v.pos[1] * v.pos[1] + v.pos[2] * v.pos[2]);
    cr_assert_gt(dc, 3.99f, "held out of the locked zone (%.2f m from its centre)", dc);
    cr_assert_gt(v.pos[0], 14.0f, "having walked up to it (x = %.2f)", v.pos[0]);
    cr_assert_gt(kz_counters_get(k, KZ_WORLD_C_ZONE_REFUSED), 0);
    kzt_world_stop(&w);
}

Test(world_rules, zone_entries_and_exits_are_noticed_by_name)
{
    start(1);
    kz_zone_def z;
    memset(&z, 0, sizeof z);
    strcpy(z.name, "plaza");
    z.shape = KZ_ZONE_BOX;
    z.center[0] = x_of(0) + 5.0f;
    z.half[0] = 2.0f;
    z.half[1] = 5.0f;
    z.half[2] = 50.0f;
    cr_assert_eq(kz_server_zone_set(w.srv, &z), KZ_OK);
    run_ticks(5);
    notices(0, 0);
    walk(0, 4.0f, 0.0f);
    run_ticks(90);  /* about 12 m: through the 4 m box and out */
    walk(0, 0, 0);
    run_ticks(5);
    kz_client_event ev;
    int entered = 0, left = 0;
    while (kz_client_poll_event(w.clients[0], &ev) == KZ_OK) {
        if (ev.type != KZ_EV_NOTICE)
            continue;
        int named = ev.len == 5 && memcmp(ev.data, "plaza", 5) == 0;
        if (ev.code == 2 /* KZ_NOTICE_ZONE_ENTER */ && named)
            entered++;
        if (ev.code == 3 /* KZ_NOTICE_ZONE_LEAVE */ && named)
            left += entered > 0;
    }
    cr_assert_eq(entered, 1, "one entry notice");
    cr_assert_eq(left, 1, "one exit notice, after the entry");
    kzt_world_stop(&w);
}

/* ---- placement: no avatar inside a zone that refuses it ----------------- */

static kz_avatar_state server_state(uint32_t i)
{
    kz_avatar_state st;
    cr_assert_eq(kz_server_entity(w.srv, kz_client_self_id(w.clients[i]), &st), KZ_OK);
    return st;
}

/* Whether a server-side position lies in a box zone (as the server tests
 * it: inclusive bounds). */
static int in_box(const kz_zone_def *z, const float p[3])
{
    for (int k = 0; k < 3; k++)
        if (p[k] < z->center[k] - z->half[k] || p[k] > z->center[k] + z->half[k])
            return 0;
    return 1;
}

/* A "members" zone: private, strong verification, humans only. */
static kz_zone_def members_box(float cx, float hx, float hz)
{
    kz_zone_def z;
    memset(&z, 0, sizeof z);
    strcpy(z.name, "members");
    z.shape = KZ_ZONE_BOX;
    z.center[0] = cx;
    z.half[0] = hx;
    z.half[1] = 5.0f;
    z.half[2] = hz;
    z.is_private = 1;
    z.min_verification = KZ_VERIFY_STRONG;
    z.humans_only = 1;
    return z;
}

/* Starts `n` clients (the first `verified` strongly verified) with the
 * zone set before anyone connects; returns how many connected. */
static uint32_t start_zoned(uint32_t n, uint32_t verified, float spawn_radius, const kz_zone_def *z,
                            uint32_t seed)
{
    memset(&w, 0, sizeof w);
    w.verified = verified;
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = spawn_radius;
    sc.spawn_seed = seed;
    cr_assert_eq(kzt_world_start(&w, n, NULL, &sc, 8), KZ_OK);
    cr_assert_eq(kz_server_zone_set(w.srv, z), KZ_OK);
    return kzt_world_connect_all(&w, STEP_NS, 10 * KZ_NS_PER_S);
}

Test(world_rules, spawning_never_puts_an_outsider_in_a_zone_over_half_the_spawn_area)
{
    /* The zone covers x in [0, 10] of the 10 m spawn square. */
    kz_zone_def z = members_box(5.0f, 5.0f, 10.5f);
    const uint32_t n = 16, members = 4;
    cr_assert_eq(start_zoned(n, members, 10.0f, &z, 3), n, "everyone finds a place");
    uint32_t members_inside = 0;
    for (int t = 0; t < 30; t++) {
        run_ticks(1);
        for (uint32_t i = members; i < n; i++) {
            kz_avatar_state st = server_state(i);
            cr_assert(!in_box(&z, st.pos), "outsider %u inside at (%.2f, %.2f)", i, st.pos[0],
                      st.pos[2]);
            for (uint32_t m = 0; m < members; m++) {
                kz_avatar_state ms = server_state(m);
                if (in_box(&z, ms.pos))
                    cr_assert(!sees(i, kz_client_self_id(w.clients[m])),
                              "outsider %u sees member %u inside", i, m);
            }
        }
    }
    for (uint32_t m = 0; m < members; m++) {
        kz_avatar_state st = server_state(m);
        members_inside += in_box(&z, st.pos);
    }
    cr_assert_eq(kz_counters_get(kz_server_counters(w.srv), KZ_WORLD_C_SPAWN_REFUSED), 0);
    /* Members may spawn anywhere: with this seed some land inside. */
    cr_assert_gt(members_inside, 0, "a member spawned inside its zone");
    kzt_world_stop(&w);
}

/* Drives every client until each is connected or over; returns how many
 * ended with `reason`. */
static uint32_t settle(uint32_t n, uint32_t reason)
{
    for (int k = 0; k < 2000; k++) {
        uint32_t pending = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t st = kz_client_state(w.clients[i]);
            pending += st != KZ_CLIENT_CONNECTED && st != KZ_CLIENT_DISCONNECTED;
        }
        if (!pending)
            break;
        kzt_world_step(&w, STEP_NS);
    }
    uint32_t count = 0;
    for (uint32_t i = 0; i < n; i++)
        count += kz_client_state(w.clients[i]) == KZ_CLIENT_DISCONNECTED &&
                 kz_client_reason(w.clients[i]) == reason;
    return count;
}

/* The kick text client i saw, or "". */
static void kick_text(uint32_t i, char *out, size_t cap)
{
    out[0] = 0;
    kz_client_event ev;
    while (kz_client_poll_event(w.clients[i], &ev) == KZ_OK)
        if (ev.type == KZ_EV_NOTICE && ev.code == KZ_NOTICE_KICK && ev.len < cap) {
            memcpy(out, ev.data, ev.len);
            out[ev.len] = 0;
        }
}

Test(world_rules, a_whole_world_strong_zone_refuses_the_unverified_and_admits_members)
{
    kz_zone_def z = members_box(0.0f, 4096.0f, 4096.0f);
    z.half[1] = 4096.0f;
    const uint32_t n = 4, members = 2;
    start_zoned(n, members, 20.0f, &z, 1);
    cr_assert_eq(settle(n, KZ_KICK_NO_PLACE), n - members, "every outsider refused");
    for (uint32_t m = 0; m < members; m++) {
        cr_assert_eq(kz_client_state(w.clients[m]), KZ_CLIENT_CONNECTED, "member %u admitted", m);
        kz_avatar_state st = server_state(m);
        cr_assert(in_box(&z, st.pos));
    }
    char text[KZ_NOTICE_MAX_BYTES + 1];
    kick_text(n - 1, text, sizeof text);
    cr_assert(strstr(text, "no place in this world admits you") != NULL, "told why: \"%s\"", text);
    cr_assert_eq(kz_server_clients(w.srv), members);
    cr_assert_eq(kz_counters_get(kz_server_counters(w.srv), KZ_WORLD_C_SPAWN_REFUSED), n - members);
    run_ticks(30);
    cr_assert_eq(kz_server_clients(w.srv), members, "no avatar was ever made for them");
    kzt_world_stop(&w);
}

Test(world_rules, a_zone_over_the_whole_spawn_area_refuses_outsiders_at_connect)
{
    /* Larger than the spawn square, smaller than the world. */
    kz_zone_def z = members_box(0.0f, 30.0f, 30.0f);
    start_zoned(3, 1, 20.0f, &z, 2);
    cr_assert_eq(settle(3, KZ_KICK_NO_PLACE), 2);
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_CONNECTED);
    kzt_world_stop(&w);
}

/* The notices of `code` client i got whose text contains `part`. */
static uint32_t notices_with(uint32_t i, uint32_t code, const char *part)
{
    uint32_t n = 0;
    kz_client_event ev;
    while (kz_client_poll_event(w.clients[i], &ev) == KZ_OK) {
        char text[KZ_NOTICE_MAX_BYTES + 1];
        if (ev.type != KZ_EV_NOTICE || ev.code != code || ev.len >= sizeof text)
            continue;
        memcpy(text, ev.data, ev.len);
        text[ev.len] = 0;
        n += strstr(text, part) != NULL;
    }
    return n;
}

static float dist_xz(const float a[3], const float b[3])
{
    return hypotf(a[0] - b[0], a[2] - b[2]);
}

Test(world_rules, a_stricter_zone_moves_everyone_it_now_refuses_to_the_nearest_point_outside)
{
    memset(&w, 0, sizeof w);
    w.verified = 1;  /* client 0 */
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    cr_assert_eq(kzt_world_start(&w, 3, NULL, &sc, 8), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 3);
    kz_zone_def z;
    memset(&z, 0, sizeof z);
    strcpy(z.name, "hall");
    z.shape = KZ_ZONE_SPHERE;
    z.half[0] = 10.0f;
    z.is_private = 1;
    cr_assert_eq(kz_server_zone_set(w.srv, &z), KZ_OK);
    run_ticks(10);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_lt(dist_xz(server_state(i).pos, z.center), 10.0f, "client %u in the hall", i);
    cr_assert(sees(1, kz_client_self_id(w.clients[0])), "all inside: they see each other");
    for (uint32_t i = 0; i < 3; i++)
        notices(i, 0);

    /* The list tightens (as a reload would): strong verification only. */
    z.min_verification = KZ_VERIFY_STRONG;
    cr_assert_eq(kz_server_zone_set(w.srv, &z), KZ_OK);
    run_ticks(1);
    const kz_counters *k = kz_server_counters(w.srv);
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_ZONE_MOVED_OUT), 2);
    cr_assert_lt(dist_xz(server_state(0).pos, z.center), 10.0f, "the member stays");
    for (uint32_t i = 1; i < 3; i++) {
        float d = dist_xz(server_state(i).pos, z.center);
        cr_assert(d > 10.0f && d < 10.0f + 0.5f + 0.05f, "client %u just outside (%.3f m)", i, d);
    }
    run_ticks(5);
    for (uint32_t i = 1; i < 3; i++)
        cr_assert_eq(notices_with(i, KZ_NOTICE_DENIED, "hall"), 1, "client %u told", i);
    /* They cannot walk back in, and the member inside is hidden from them. */
    for (int t = 0; t < 60; t++) {
        for (uint32_t i = 1; i < 3; i++) {
            kz_avatar_state st = server_state(i);
            float d = dist_xz(st.pos, z.center);
            walk(i, -3.0f * st.pos[0] / d, -3.0f * st.pos[2] / d);
        }
        run_ticks(1);
        for (uint32_t i = 1; i < 3; i++)
            cr_assert_gt(dist_xz(server_state(i).pos, z.center), 10.0f, "client %u back in", i);
    }
    cr_assert(!sees(1, kz_client_self_id(w.clients[0])), "the outsider does not see the member");
    cr_assert(!sees(0, kz_client_self_id(w.clients[1])), "nor the member the outsider");

    /* Stricter still: a zone over the whole world that admits no one but
     * the member leaves the others no place: they are kicked and told. */
    kz_zone_def all = members_box(0.0f, 4096.0f, 4096.0f);
    all.half[1] = 4096.0f;
    cr_assert_eq(kz_server_zone_set(w.srv, &all), KZ_OK);
    for (int t = 0; t < 400 && kz_client_state(w.clients[2]) == KZ_CLIENT_CONNECTED; t++)
        kzt_world_step(&w, STEP_NS);
    cr_assert_eq(settle(3, KZ_KICK_NO_PLACE), 2);
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_CONNECTED);
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_KICKS), 2);
    kzt_world_stop(&w);
}

Test(world_rules, a_lock_moves_visitors_out_and_summons_and_portals_into_it_are_refused)
{
    memset(&w, 0, sizeof w);
    w.moderators = 1;
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    sc.admin_role = "moderator";  /* client 0 may lock */
    cr_assert_eq(kzt_world_start(&w, 2, NULL, &sc, 8), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 2);
    const kz_counters *k = kz_server_counters(w.srv);
    kz_zone_def z;
    memset(&z, 0, sizeof z);
    strcpy(z.name, "backroom");
    z.shape = KZ_ZONE_SPHERE;
    z.half[0] = 8.0f;
    cr_assert_eq(kz_server_zone_set(w.srv, &z), KZ_OK);
    run_ticks(5);
    cr_assert_lt(dist_xz(server_state(1).pos, z.center), 8.0f, "the visitor is inside");
    notices(1, 0);
    cr_assert_eq(kz_client_admin(w.clients[0], KZ_ADMIN_ZONE_LOCK, 1), KZ_OK);
    run_ticks(5);
    cr_assert_gt(dist_xz(server_state(1).pos, z.center), 8.0f, "moved out by the lock");
    cr_assert_lt(dist_xz(server_state(0).pos, z.center), 8.0f, "the moderator stays");
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_ZONE_MOVED_OUT), 1);
    cr_assert_eq(notices_with(1, KZ_NOTICE_DENIED, "backroom"), 1, "and told");

    /* The moderator inside summons the visitor: refused, counted, told. */
    float before[3];
    memcpy(before, server_state(1).pos, sizeof before);
    notices(0, 0);
    cr_assert_eq(kz_client_admin(w.clients[0], KZ_ADMIN_SUMMON, kz_client_self_id(w.clients[1])),
                 KZ_OK);
    run_ticks(5);
    cr_assert_lt(dist_xz(server_state(1).pos, before), 0.01f, "the visitor did not move");
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_PLACE_REFUSED), 1);
    cr_assert_eq(notices(0, KZ_NOTICE_DENIED), 1, "the moderator is told");

    /* A portal whose exit is in the locked room: refused for the visitor. */
    kz_avatar_state v = server_state(1);
    const float entrance[3] = {v.pos[0], 0, v.pos[2]}, exit_[3] = {1.0f, 0, 1.0f};
    cr_assert_eq(kz_server_portal_set(w.srv, 1, entrance, 2.0f, exit_), KZ_OK);
    run_ticks(3);  /* standing at the entrance grants one use */
    notices(1, 0);
    cr_assert_eq(kz_client_teleport(w.clients[1], 1), KZ_OK);
    run_ticks(5);
    cr_assert_gt(dist_xz(server_state(1).pos, z.center), 8.0f, "still outside");
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_TELEPORTS), 0);
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_PLACE_REFUSED), 2);
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_VIOL_TELEPORT), 0, "not a cheat");
    cr_assert_eq(notices_with(1, KZ_NOTICE_DENIED, "portal"), 1, "the visitor is told");
    /* Unlocked, the same summon works. */
    cr_assert_eq(kz_client_admin(w.clients[0], KZ_ADMIN_ZONE_UNLOCK, 1), KZ_OK);
    cr_assert_eq(kz_client_admin(w.clients[0], KZ_ADMIN_SUMMON, kz_client_self_id(w.clients[1])),
                 KZ_OK);
    run_ticks(5);
    cr_assert_lt(dist_xz(server_state(1).pos, server_state(0).pos), 1.5f, "summoned");
    kzt_world_stop(&w);
}

/* ---- client-triggered reports are sampled; floods climb the ladder ------ */

/* Lines of the server's log: how many contain `want`, and how many of
 * those also carry a count of lines left out. */
static struct {
    const char *want;
    uint32_t lines, with_count, all;
} logged;

static void count_sink(void *ctx, int32_t level, const char *module, const char *msg)
{
    (void)ctx;
    (void)level;
    (void)module;
    logged.all++;
    if (!strstr(msg, logged.want))
        return;
    logged.lines++;
    logged.with_count += strstr(msg, "(and 0 more)") == NULL && strstr(msg, "more)") != NULL;
}

/* Two clients, client 1 (id 2) a visitor; an audit log and the counting
 * log sink. */
static void start_audited(kzt_audit *a, const char *want)
{
    memset(&logged, 0, sizeof logged);
    logged.want = want;
    cr_assert_eq(kzt_audit_open(a), KZ_OK);
    memset(&w, 0, sizeof w);
    w.server_log.sink = count_sink;
    w.server_log.level = KZ_LOG_INFO;
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    sc.audit = a->log;
    cr_assert_eq(kzt_world_start(&w, 2, NULL, &sc, 8), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 2);
    run_ticks(5);
}

/* Calls send(k) once per step, up to `max` times, while client 1 is
 * connected; returns how many were sent. */
static uint32_t flood_until_gone(uint32_t max, void (*send)(uint32_t k))
{
    uint32_t k = 0;
    for (; k < max && kz_client_state(w.clients[1]) == KZ_CLIENT_CONNECTED; k++) {
        send(k);
        kzt_world_step(&w, STEP_NS);
    }
    for (int t = 0; t < 400 && kz_client_state(w.clients[1]) == KZ_CLIENT_CONNECTED; t++)
        kzt_world_step(&w, STEP_NS);
    return k;
}

static void send_refused_kick(uint32_t k)
{
    (void)k;
    cr_assert_eq(kz_client_admin(w.clients[1], KZ_ADMIN_KICK, kz_client_self_id(w.clients[0])),
                 KZ_OK);
}

Test(world_rules, a_stream_of_refused_admin_requests_is_sampled_and_ends_in_a_kick)
{
    kzt_audit a;
    start_audited(&a, "denied admin action");
    uint32_t sent = flood_until_gone(1000, send_refused_kick);
    run_ticks(10);
    const kz_counters *k = kz_server_counters(w.srv);
    cr_assert_eq(kz_client_state(w.clients[1]), KZ_CLIENT_DISCONNECTED, "kicked (%u sent)", sent);
    cr_assert_eq(kz_client_reason(w.clients[1]), KZ_KICK_VIOLATION);
    cr_assert_eq(kz_client_state(w.clients[0]), KZ_CLIENT_CONNECTED, "the target never was");
    /* Sustained FLOOD strikes (20 points, one a second) reach 100 in 5 s. */
    cr_assert_lt(sent, 1000, "kicked before the stream ended");
    cr_assert_gt(sent, 100, "not on the first refusals (%u)", sent);
    cr_assert_gt(kz_counters_get(k, KZ_WORLD_C_VIOL_FLOOD), 0);
    uint64_t handled = kz_counters_get(k, KZ_WORLD_C_ADMIN_DENIED) +
                       kz_counters_get(k, KZ_WORLD_C_DROP_RATE_REQUEST) +
                       kz_counters_get(k, KZ_WORLD_C_DROP_KICKED);
    /* Requests still in flight when the kick arrived are never delivered. */
    cr_assert(handled <= sent && handled + 8 >= sent, "each request counted once (%llu of %u)",
              (unsigned long long)handled, sent);
    cr_assert_eq(kz_counters_get(k, KZ_WORLD_C_KICKS), 1);
    /* A few seconds of refusals: the burst, then one a second, plus the
     * closing count. */
    double seconds = (double)sent * STEP_NS / KZ_NS_PER_S;
    uint32_t bound = 4u + (uint32_t)seconds + 2u;
    cr_assert_leq(logged.lines, bound, "%u log lines for %u refusals", logged.lines, sent);
    cr_assert_gt(logged.with_count, 0, "a sampled line says how many were left out");
    kzt_world_stop(&w);
    int records = kzt_audit_close_count(&a, KZ_AUDIT_ROLE_ACTION, 2, NULL);
    cr_assert_geq(records, 1, "refusals are recorded (or the log does not verify)");
    cr_assert_leq((uint32_t)records, bound, "%d audit records for %u refusals", records, sent);
    cr_assert_lt(logged.all, 60u, "the whole log stays small (%u lines)", logged.all);
    fprintf(stderr, "refused admin flood: sent=%u handled=%llu lines=%u records=%d\n", sent,
            (unsigned long long)handled, logged.lines, records);
}

static void send_block_toggle(uint32_t k)
{
    cr_assert_eq(kz_client_block(w.clients[1], kz_client_self_id(w.clients[0]), (k & 1u) == 0),
                 KZ_OK);
}

Test(world_rules, block_toggling_is_rate_limited_sampled_and_ends_in_a_kick)
{
    kzt_audit a;
    start_audited(&a, "blocks");
    uint32_t sent = flood_until_gone(1000, send_block_toggle);
    run_ticks(10);
    const kz_counters *k = kz_server_counters(w.srv);
    cr_assert_eq(kz_client_state(w.clients[1]), KZ_CLIENT_DISCONNECTED, "kicked (%u sent)", sent);
    cr_assert_eq(kz_client_reason(w.clients[1]), KZ_KICK_VIOLATION);
    cr_assert_gt(kz_counters_get(k, KZ_WORLD_C_DROP_RATE_REQUEST), sent / 2, "most toggles dropped");
    double seconds = (double)sent * STEP_NS / KZ_NS_PER_S;
    /* Blocks handled: the burst of 10 and 2 a second; half of them adds. */
    cr_assert_leq(kz_counters_get(k, KZ_WORLD_C_BLOCKS), 10u + 2u * (uint32_t)seconds + 2u);
    kzt_world_stop(&w);
    int records = kzt_audit_close_count(&a, KZ_AUDIT_BLOCK, 2, NULL);
    cr_assert_geq(records, 1);
    cr_assert_leq((uint32_t)records, 4u + (uint32_t)seconds + 2u, "%d block records", records);
}

/* More people without a place than the outbound ring holds kicks for at
 * once: the kicks it refuses are sent on later steps, and everyone is
 * told, each kicked once. The same for connections refused at spawn. */
Test(world_rules, no_place_kicks_refused_by_a_full_ring_are_sent_later)
{
    memset(&w, 0, sizeof w);
    w.spare = 12;
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 3.0f;
    sc.net.ring_capacity = 8;  /* a notice and a kick per client: 24 do not fit */
    cr_assert_eq(kzt_world_start(&w, 12, NULL, &sc, 5), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 12);
    run_ticks(5);
    kz_zone_def all = members_box(0.0f, 4096.0f, 4096.0f);
    all.half[1] = 4096.0f;
    cr_assert_eq(kz_server_zone_set(w.srv, &all), KZ_OK);
    for (int k = 0; k < 2000 && kz_server_clients(w.srv) > 0; k++)
        kzt_world_step(&w, STEP_NS);
    cr_assert_eq(kz_server_clients(w.srv), 0);
    cr_assert_eq(kz_counters_get(kz_server_counters(w.srv), KZ_WORLD_C_KICKS), 12, "each once");
    for (uint32_t i = 0; i < 12; i++)
        cr_assert_eq(kz_client_reason(w.clients[i]), KZ_KICK_NO_PLACE, "client %u", i);

    /* Twelve newcomers at once into a world with no place for them. */
    kz_client *late[12];
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.net.server.family = KZ_ADDR_IPV4;
    cc.net.server.ip[0] = 127;
    cc.net.server.ip[3] = 1;
    cc.net.server.port = kz_server_port(w.srv);
    for (uint32_t i = 0; i < 12; i++) {
        kz_connect_token ct;
        cr_assert_eq(kzt_world_mint(&w, 100 + i, &ct), KZ_OK);
        late[i] = kz_client_create(&cc);
        cr_assert_not_null(late[i]);
        cr_assert_eq(kz_client_connect(late[i], &ct, w.now), KZ_OK);
    }
    uint32_t refused = 0;
    for (int k = 0; k < 4000 && refused < 12; k++) {
        kzt_world_step(&w, STEP_NS);
        refused = 0;
        for (uint32_t i = 0; i < 12; i++) {
            (void)kz_client_update(late[i], w.now);
            refused += kz_client_state(late[i]) == KZ_CLIENT_DISCONNECTED &&
                       kz_client_reason(late[i]) == KZ_KICK_NO_PLACE;
        }
    }
    cr_assert_eq(refused, 12, "every newcomer told (%u)", refused);
    cr_assert_eq(kz_counters_get(kz_server_counters(w.srv), KZ_WORLD_C_SPAWN_REFUSED), 12);
    cr_assert_eq(kz_server_clients(w.srv), 0);
    for (uint32_t i = 0; i < 12; i++)
        kz_client_destroy(late[i]);
    kzt_world_stop(&w);
}
