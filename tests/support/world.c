/*
 * Test support: a world on loopback driven by one injected clock (see
 * world.h).
 */
#include "support/world.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#define KZT_PROTOCOL 0x4B5A574F524C4431ull
#define KZT_SERVER_ID 77u

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rng_unit(uint64_t *s)
{
    return (float)((double)(rng_next(s) >> 11) / 9007199254740992.0);
}

int kzt_world_start(kzt_world *w, uint32_t n, const char *impair, const kz_server_config *scfg,
                    uint64_t seed)
{
    kz_proxy_tap_fn tap = w->tap;
    void *tap_ctx = w->tap_ctx;
    uint32_t spare = w->spare, moderators = w->moderators, agents = w->agents;
    uint32_t verified = w->verified;
    kz_log server_log = w->server_log;
    memset(w, 0, sizeof *w);
    w->tap = tap;
    w->tap_ctx = tap_ctx;
    w->spare = spare;
    w->moderators = moderators;
    w->agents = agents;
    w->verified = verified;
    w->server_log = server_log;
    int rc = kzt_keys_make(&w->keys);
    if (rc)
        return rc;
    kz_server_config sc;
    if (scfg)
        sc = *scfg;
    else {
        memset(&sc, 0, sizeof sc);
        kz_server_config_default(&sc);
    }
    /* The caller's threading and allocator survive; the rest of net is ours. */
    uint32_t threaded = sc.net.threaded, io_threads = sc.net.io_threads;
    uint32_t ring_capacity = sc.net.ring_capacity, grace = sc.net.resume_grace_ms;
    kz_allocator alloc = sc.net.alloc;
    kz_clock clock = sc.net.clock;
    kzt_server_config(&sc.net, &w->keys, KZT_PROTOCOL, KZT_SERVER_ID, n + spare);
    sc.net.clock = clock;
    sc.net.threaded = threaded;
    sc.net.io_threads = io_threads;
    sc.net.ring_capacity = ring_capacity;
    sc.net.resume_grace_ms = grace;
    sc.net.alloc = alloc;
    sc.net.log = server_log;
    if (sc.net.log.level == 0)
        sc.net.log.level = KZ_LOG_WARN;
    /* Every bot shares 127.0.0.1: lift the per-address gate budget. */
    sc.net.gate_rate_per_ip = 20000;
    w->srv = kz_server_create(&sc);
    if (!w->srv)
        return KZ_EINVAL;
    uint16_t port = kz_server_port(w->srv);
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.net.server.family = KZ_ADDR_IPV4;
    cc.net.server.ip[0] = 127;
    cc.net.server.ip[3] = 1;
    cc.net.server.port = port;
    cc.net.connect_timeout_ms = 30000;
    if (impair) {
        kz_proxy_config pc;
        memset(&pc, 0, sizeof pc);
        pc.server_port = port;
        pc.max_clients = n + spare;
        pc.seed = seed;
        pc.tap = w->tap;
        pc.tap_ctx = w->tap_ctx;
        if (kz_impair_profile(impair, &pc.up) != KZ_OK)
            return KZ_EINVAL;
        pc.down = pc.up;
        w->proxy = kz_proxy_create(&pc);
        if (!w->proxy)
            return KZ_EINVAL;
        cc.net.server.port = kz_proxy_port(w->proxy);
    }
    w->n = n;
    w->clients = calloc(n, sizeof *w->clients);
    w->bots = calloc(n, sizeof *w->bots);
    w->tokens = calloc(n, sizeof *w->tokens);
    if (!w->clients || !w->bots || !w->tokens)
        return KZ_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        kz_connect_token ct;
        rc = kzt_world_mint_as(w, i + 1u, i < moderators ? "moderator" : NULL,
                               i < verified ? KZ_VERIFY_STRONG : KZ_VERIFY_NONE,
                               i + agents >= n ? KZ_ACTOR_AGENT : KZ_ACTOR_HUMAN, &ct);
        w->tokens[i] = ct;
        if (rc)
            return rc;
        w->clients[i] = kz_client_create(&cc);
        if (!w->clients[i])
            return KZ_ENOMEM;
        rc = kz_client_connect(w->clients[i], &ct, 0);
        if (rc)
            return rc;
        kzt_wander *b = &w->bots[i];
        b->rng = seed * 1000003u + i;
        b->speed = 1.4f;
        b->roam = 40.0f;
        b->turn_ticks = 120;
    }
    w->now = 1;
    return KZ_OK;
}

int kzt_world_mint(const kzt_world *w, uint64_t id, kz_connect_token *out)
{
    return kzt_mint(&w->keys, KZT_PROTOCOL, KZT_SERVER_ID, kz_server_port(w->srv), id, out);
}

int kzt_world_mint_as(const kzt_world *w, uint64_t id, const char *role, uint8_t level,
                      uint8_t actor_kind, kz_connect_token *out)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = KZT_PROTOCOL;
    t.create_time = (uint64_t)time(NULL) - 1;
    t.expire_time = t.create_time + 600;
    t.server_id = KZT_SERVER_ID;
    t.n_addresses = 1;
    t.addresses[0].family = KZ_ADDR_IPV4;
    t.addresses[0].ip[0] = 127;
    t.addresses[0].ip[3] = 1;
    t.addresses[0].port = kz_server_port(w->srv);
    t.client_id = id;
    t.avatar_id = id + 1000;
    snprintf(t.name, sizeof t.name, "test-%llu", (unsigned long long)id);
    /* A level without a method (or the other way round) claims nothing. */
    strcpy(t.claims.method, level == KZ_VERIFY_NONE ? "none" : "ekyc");
    t.claims.verification_level = level;
    t.claims.actor_kind = actor_kind;
    if (actor_kind == KZ_ACTOR_AGENT)
        t.claims.acting_for = id + 1;
    if (role) {
        t.n_roles = 1;
        snprintf(t.roles[0], sizeof t.roles[0], "%s", role);
    }
    size_t len = 0;
    int rc = kz_token_mint(&t, w->keys.backend.secret_key, w->keys.server.public_key, &out->keys,
                           out->token, sizeof out->token, &len);
    out->token_len = (uint16_t)len;
    return rc;
}

/* ---- audit logs ---------------------------------------------------------- */

int kzt_audit_open(kzt_audit *a)
{
    memset(a, 0, sizeof *a);
    int rc = kz_sign_keypair_generate(&a->key);
    if (rc)
        return rc;
    snprintf(a->path, sizeof a->path, "/tmp/kzt-audit-XXXXXX");
    int fd = mkstemp(a->path);
    if (fd < 0)
        return KZ_EIO;
    close(fd);
    unlink(a->path);  /* the log creates it */
    kz_audit_config ac;
    memset(&ac, 0, sizeof ac);
    kz_audit_config_default(&ac);
    ac.path = a->path;
    memcpy(ac.sign_secret_key, a->key.secret_key, sizeof ac.sign_secret_key);
    rc = kz_audit_open(&ac, &a->log);
    sodium_memzero(&ac, sizeof ac);
    return rc;
}

int kzt_audit_count(const kzt_audit *a, uint32_t type, uint64_t client, const char *detail)
{
    kz_audit_verify_result r;
    if (kz_audit_verify(a->path, a->key.public_key, 0, &r) != KZ_OK || r.verdict != KZ_AUDIT_VALID)
        return -1;
    FILE *f = fopen(a->path, "rb");
    if (!f)
        return -1;
    static uint8_t buf[8u << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    int n = 0;
    for (size_t off = 0; off < len;) {
        kz_audit_entry e;
        if (kz_audit_decode(buf + off, len - off, &e) != KZ_OK)
            return -1;
        off += e.size;
        if (e.rec.type != type || (client && e.rec.client_id != client))
            continue;
        n += !detail || strstr(e.rec.detail, detail) != NULL;
    }
    return n;
}

int kzt_audit_close_count(kzt_audit *a, uint32_t type, uint64_t client, const char *detail)
{
    if (a->log && kz_audit_close(a->log) != KZ_OK)
        return -1;
    a->log = NULL;
    int n = kzt_audit_count(a, type, client, detail);
    unlink(a->path);
    return n;
}

void kzt_world_step(kzt_world *w, kz_time_ns dt)
{
    w->now += dt;
    if (w->proxy)
        kz_proxy_pump(w->proxy, w->now);
    (void)kz_server_step(w->srv, w->now);
    if (w->proxy)
        kz_proxy_pump(w->proxy, w->now);
    for (uint32_t i = 0; i < w->n; i++)
        (void)kz_client_update(w->clients[i], w->now);
}

uint32_t kzt_world_connect_all(kzt_world *w, kz_time_ns dt, kz_time_ns limit)
{
    kz_time_ns end = w->now + limit;
    uint32_t connected = 0;
    while (w->now < end) {
        kzt_world_step(w, dt);
        connected = 0;
        for (uint32_t i = 0; i < w->n; i++)
            connected += kz_client_state(w->clients[i]) == KZ_CLIENT_CONNECTED;
        if (connected == w->n)
            break;
    }
    return connected;
}

/* Head and hands of a VR user standing or walking: the head bobs a few
 * centimeters and looks around, the hands swing and reach, each at its own
 * slow rate, so every pose changes every tick by millimeters. */
static void vr_poses(kz_avatar_state *in, uint32_t tick, uint32_t phase)
{
    float t = (float)tick / 30.0f + (float)phase;
    in->flags = KZ_AVATAR_VR;
    in->pose[KZ_POSE_HEAD].pos[0] = 0.03f * sinf(t * 0.9f);
    in->pose[KZ_POSE_HEAD].pos[1] = 1.6f + 0.02f * sinf(t * 3.1f);
    in->pose[KZ_POSE_HEAD].pos[2] = 0.03f * cosf(t * 0.7f);
    float look = 0.6f * sinf(t * 0.5f);  /* radians about y */
    in->pose[KZ_POSE_HEAD].rot[1] = sinf(look / 2);
    in->pose[KZ_POSE_HEAD].rot[3] = cosf(look / 2);
    for (int h = 0; h < 2; h++) {
        kz_pose *p = &in->pose[KZ_POSE_LEFT_HAND + (uint32_t)h];
        float side = h ? 0.3f : -0.3f, swing = sinf(t * (1.3f + 0.2f * (float)h));
        p->pos[0] = side + 0.05f * swing;
        p->pos[1] = 1.0f + 0.15f * sinf(t * 0.8f + (float)h);
        p->pos[2] = 0.2f * swing;
        float roll = 0.4f * swing;
        p->rot[0] = sinf(roll / 2);
        p->rot[1] = 0;
        p->rot[2] = 0;
        p->rot[3] = cosf(roll / 2);
    }
}

void kzt_world_drive(kzt_world *w, uint32_t i, uint32_t tick)
{
    kzt_wander *b = &w->bots[i];
    kz_client *c = w->clients[i];
    uint32_t state = kz_client_state(c);
    if (state != KZ_CLIENT_CONNECTED && state != KZ_CLIENT_RECONNECTING)
        return;
    int turn = tick >= b->until;
    if (!turn && !b->vr)
        return;  /* the intent stays as it is */
    if (turn) {
        b->until = tick + b->turn_ticks;
        kz_avatar_state self;
        if (kz_client_self(c, &self) != KZ_OK)
            return;
        if (self.pos[0] * self.pos[0] + self.pos[2] * self.pos[2] > b->roam * b->roam)
            b->heading = atan2f(-self.pos[2], -self.pos[0]);  /* head home */
        else
            b->heading = rng_unit(&b->rng) * 6.2831853f;
    }
    kz_avatar_state in;
    kz_avatar_state_rest(&in);
    in.vel[0] = cosf(b->heading) * b->speed;
    in.vel[2] = sinf(b->heading) * b->speed;
    in.yaw = b->heading;
    if (b->vr)
        vr_poses(&in, tick, i);
    (void)kz_client_send_input(c, &in);
}

void kzt_world_stop(kzt_world *w)
{
    for (uint32_t i = 0; w->clients && i < w->n; i++)
        kz_client_destroy(w->clients[i]);
    free(w->clients);
    free(w->bots);
    free(w->tokens);
    if (w->proxy)
        kz_proxy_destroy(w->proxy);
    kz_server_destroy(w->srv);
    memset(w, 0, sizeof *w);
}
