/*
 * The viewer's embedded world: a Kizuna server in single-threaded mode on
 * loopback, two zones, two shared objects and a few wandering bots, all in
 * the viewer's process and driven from its main thread. It plays the part
 * a backend and a world host play in production: it makes the keys and
 * mints every client's token (as examples/local-world does).
 *
 * Everyone spawns within 8 m of the origin, clear of the private zone, so
 * the page opens on a crowd that then spreads out. Bots wander with a
 * seeded random walk and turn back towards the origin past 22 m, which
 * keeps them inside the viewer's 30 m view radius.
 */
#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "viewer.h"

#define KZV_PROTOCOL_ID 0x4B495A554E410001ull
#define KZV_SERVER_ID 1u
#define KZV_VIEW_RADIUS 30.0f       /* meters; the page's map fits it */
#define KZV_SPAWN_RADIUS 8.0f       /* spawn square half-side, clear of the private zone */
#define KZV_WANDER_RADIUS 22.0f     /* bots turn back towards the origin beyond it */
#define KZV_PI 3.14159265358979f

/* One wandering client and its walk. */
typedef struct kzv_bot {
    kz_client *client;
    uint64_t rng;
    float heading;          /* radians, (cos, sin) in x, z */
    float turn;             /* radians per second */
    float speed;            /* meters per second */
    kz_time_ns next_change; /* when turn and speed are drawn again */
    kz_time_ns last;        /* previous frame */
} kzv_bot;

struct kzv_world {
    kz_server *server;
    uint32_t n_bots;
    kzv_bot *bots;
};

/* Display names of the bots, in client id order; later ones are numbered. */
static const char *const kzv_names[] = {
    "Aiko", "Bruno", "Chidi", "Dana", "Emil", "Farah", "Goro", "Hana",
    "Ivo",  "Jun",   "Kemal", "Lena", "Mio",  "Nadia", "Oskar", "Pia",
};

static uint64_t kzv_next(uint64_t *state)
{
    /* splitmix64: the bots' walks only, not security. */
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
static float kzv_uniform(uint64_t *state, float lo, float hi)
{
    double u = (double)(kzv_next(state) >> 11) / 9007199254740992.0;
    return lo + (float)u * (hi - lo);
}

static void kzv_bot_name(uint32_t id, char *out, size_t cap)
{
    size_t n = sizeof kzv_names / sizeof kzv_names[0];
    if (id >= 1 && id <= n)
        snprintf(out, cap, "%s", kzv_names[id - 1]);
    else
        snprintf(out, cap, "bot-%u", id);
}

/*
 * Who bot `id` is, in a repeating mix of four, so the page shows every
 * kind of badge: a strongly verified human, an agent acting for that
 * human, an unverified human, and a bot.
 */
static void kzv_bot_claims(uint32_t id, kz_token_info *t)
{
    switch (id % 4u) {
    case 1:
        t->claims.actor_kind = KZ_ACTOR_HUMAN;
        t->claims.verification_level = KZ_VERIFY_STRONG;
        strcpy(t->claims.method, "ekyc-face");
        break;
    case 2:
        t->claims.actor_kind = KZ_ACTOR_AGENT;
        t->claims.acting_for = id - 1u;
        t->claims.verification_level = KZ_VERIFY_BASIC;
        strcpy(t->claims.method, "oidc:example.com");
        break;
    case 3:
        t->claims.actor_kind = KZ_ACTOR_HUMAN;
        t->claims.verification_level = KZ_VERIFY_NONE;
        strcpy(t->claims.method, "none");
        break;
    default:
        t->claims.actor_kind = KZ_ACTOR_BOT;
        t->claims.verification_level = KZ_VERIFY_NONE;
        strcpy(t->claims.method, "none");
        break;
    }
}

/* The token a backend would sign for client `t->client_id`, addressed to
 * the embedded server on loopback. */
static int kzv_mint(const kz_sign_keypair *backend, const kz_box_keypair *server, uint16_t port,
                    kz_token_info *t, kz_connect_token *out)
{
    t->protocol_id = KZV_PROTOCOL_ID;
    t->create_time = (uint64_t)time(NULL) - 1;
    t->expire_time = t->create_time + 24u * 3600u;
    t->server_id = KZV_SERVER_ID;
    t->n_addresses = 1;
    t->addresses[0].family = KZ_ADDR_IPV4;
    t->addresses[0].ip[0] = 127;
    t->addresses[0].ip[3] = 1;
    t->addresses[0].port = port;
    t->avatar_id = t->client_id;
    size_t len = 0;
    int rc = kz_token_mint(t, backend->secret_key, server->public_key, &out->keys, out->token,
                           sizeof out->token, &len);
    out->token_len = (uint16_t)len;
    return rc;
}

static void kzv_badge_from(kz_badge *b, const kz_token_info *t)
{
    memset(b, 0, sizeof *b);
    b->verification_level = t->claims.verification_level;
    b->actor_kind = t->claims.actor_kind;
    b->acting_for = t->claims.acting_for;
    snprintf(b->method, sizeof b->method, "%s", t->claims.method);
    snprintf(b->name, sizeof b->name, "%s", t->name);
}

static void kzv_add_principal(kzv_info *info, uint64_t id, const char *name)
{
    if (info->n_principals == KZV_MAX_PRINCIPALS)
        return;
    kzv_principal *p = &info->principals[info->n_principals++];
    p->client_id = id;
    snprintf(p->name, sizeof p->name, "%s", name);
}

/*
 * The two zones. "lounge" is private and asks for at least basic
 * verification: unverified humans and bots are held at its edge, and
 * whoever is inside vanishes from the viewer's picture (the server sends
 * nothing about them to an outsider). "plaza" is public and open to all.
 */
static int kzv_zones(kz_server *s, kzv_info *info)
{
    kz_zone_def z[2];
    memset(z, 0, sizeof z);
    snprintf(z[0].name, sizeof z[0].name, "lounge");
    z[0].shape = KZ_ZONE_BOX;
    z[0].center[0] = 16.0f, z[0].center[2] = -8.0f;
    z[0].half[0] = 6.0f, z[0].half[1] = 3.0f, z[0].half[2] = 5.0f;
    z[0].is_private = 1;
    z[0].min_verification = KZ_VERIFY_BASIC;
    snprintf(z[1].name, sizeof z[1].name, "plaza");
    z[1].shape = KZ_ZONE_SPHERE;
    z[1].center[0] = -12.0f, z[1].center[2] = 10.0f;
    z[1].half[0] = 7.0f;
    for (uint32_t k = 0; k < 2; k++) {
        int rc = kz_server_zone_set(s, &z[k]);
        if (rc != KZ_OK) {
            fprintf(stderr, "viewer: zone %s: %s\n", z[k].name, kz_strerror(rc));
            return rc;
        }
        info->zones[info->n_zones++] = z[k];
    }
    info->zones_known = 1;
    return KZ_OK;
}

static int kzv_objects(kz_server *s)
{
    static const float where[2][3] = {{5.0f, 0.0f, 6.0f}, {-7.0f, 0.0f, -5.0f}};
    for (uint32_t k = 0; k < 2; k++) {
        uint32_t id = 0;
        int rc = kz_server_object_add(s, where[k], NULL, &id);
        if (rc != KZ_OK) {
            fprintf(stderr, "viewer: object: %s\n", kz_strerror(rc));
            return rc;
        }
    }
    return KZ_OK;
}

static kz_server *kzv_server(const kz_sign_keypair *backend, const kz_box_keypair *keys,
                             uint32_t max_clients, uint64_t seed)
{
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.net.verifier.protocol_id = KZV_PROTOCOL_ID;
    sc.net.verifier.server_id = KZV_SERVER_ID;
    memcpy(sc.net.verifier.backend_pk[0], backend->public_key,
           sizeof sc.net.verifier.backend_pk[0]);
    sc.net.verifier.server_keys = *keys;
    sc.net.bind_ip = htonl(INADDR_LOOPBACK);
    sc.net.max_clients = max_clients;
    sc.net.gate_rate_per_ip = 10000;  /* every client shares one address */
    sc.view_radius = KZV_VIEW_RADIUS;
    sc.spawn_radius = KZV_SPAWN_RADIUS;
    sc.spawn_seed = (uint32_t)seed;
    kz_server *s = kz_server_create(&sc);
    kzv_wipe(&sc.net.verifier.server_keys, sizeof sc.net.verifier.server_keys);
    return s;
}

/* Mints bot `id`'s token, records its name, and starts it connecting. */
static int kzv_bot_start(kzv_world *w, const kz_sign_keypair *backend, const kz_box_keypair *keys,
                         uint32_t id, uint64_t seed, kzv_info *info, kz_time_ns now)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.client_id = id;
    kzv_bot_name(id, t.name, sizeof t.name);
    kzv_bot_claims(id, &t);
    kz_connect_token ct;
    int rc = kzv_mint(backend, keys, kz_server_port(w->server), &t, &ct);
    if (rc != KZ_OK)
        return rc;
    kzv_add_principal(info, id, t.name);
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    kzv_bot *b = &w->bots[id - 1];
    b->rng = seed * 0x100000001B3ull + id;
    b->heading = kzv_uniform(&b->rng, -KZV_PI, KZV_PI);
    b->speed = 1.2f;
    b->next_change = b->last = now;
    b->client = kz_client_create(&cc);
    rc = b->client ? kz_client_connect(b->client, &ct, now) : KZ_ENOMEM;
    kzv_wipe(&ct.keys, sizeof ct.keys);  /* the client keeps its own copy */
    return rc;
}

/* Wraps an angle into [-pi, pi]. */
static float kzv_wrap(float a)
{
    while (a > KZV_PI)
        a -= 2.0f * KZV_PI;
    while (a < -KZV_PI)
        a += 2.0f * KZV_PI;
    return a;
}

/* Every 0.7 to 2 s a bot picks a new turn rate and pace. */
static void kzv_bot_redraw(kzv_bot *b, kz_time_ns now)
{
    b->turn = kzv_uniform(&b->rng, -0.9f, 0.9f);
    b->speed = kzv_uniform(&b->rng, 0.9f, 1.8f);
    b->next_change = now + (kz_time_ns)(kzv_uniform(&b->rng, 0.7f, 2.0f) * 1e9f);
}

/* New heading after dt seconds: the random walk, or past the wander
 * radius a turn of at most 1.5 rad/s towards the origin. */
static void kzv_bot_steer(kzv_bot *b, const kz_avatar_state *me, float dt)
{
    float x = me->pos[0], z = me->pos[2];
    if (sqrtf(x * x + z * z) <= KZV_WANDER_RADIUS) {
        b->heading = kzv_wrap(b->heading + b->turn * dt);
        return;
    }
    float d = kzv_wrap(atan2f(-z, -x) - b->heading), max = 1.5f * dt;
    b->heading = kzv_wrap(b->heading + (d > max ? max : d < -max ? -max : d));
}

/* One frame of a bot, as an engine would run it: update, drain events,
 * then say where it wants to go. */
static void kzv_bot_step(kzv_bot *b, kz_time_ns now)
{
    kz_client *c = b->client;
    kz_client_update(c, now);
    kz_client_event ev;
    while (kz_client_poll_event(c, &ev) == KZ_OK) {
        /* Bots react to nothing; draining keeps their queues from overflowing. */
    }
    float dt = (float)(now - b->last) / 1e9f;
    b->last = now;
    kz_avatar_state me;
    if (kz_client_state(c) != KZ_CLIENT_CONNECTED || kz_client_self(c, &me) != KZ_OK)
        return;
    if (now >= b->next_change)
        kzv_bot_redraw(b, now);
    kzv_bot_steer(b, &me, dt);
    kz_avatar_state in;
    kz_avatar_state_rest(&in);
    in.vel[0] = b->speed * cosf(b->heading);
    in.vel[2] = b->speed * sinf(b->heading);
    in.yaw = b->heading;
    kz_client_send_input(c, &in);
}

/* The viewer is a strongly verified human who stands still: a camera. */
static int kzv_viewer_token(kzv_world *w, const kz_sign_keypair *backend,
                            const kz_box_keypair *keys, uint32_t id, kzv_info *info,
                            kz_connect_token *out)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.client_id = id;
    snprintf(t.name, sizeof t.name, "viewer");
    t.claims.actor_kind = KZ_ACTOR_HUMAN;
    t.claims.verification_level = KZ_VERIFY_STRONG;
    strcpy(t.claims.method, "ekyc-face");
    int rc = kzv_mint(backend, keys, kz_server_port(w->server), &t, out);
    if (rc != KZ_OK)
        return rc;
    kzv_badge_from(&info->self_badge, &t);
    info->self_badge_known = 1;
    kzv_add_principal(info, id, t.name);
    return KZ_OK;
}

kzv_world *kzv_world_create(const kzv_world_config *cfg, kzv_info *info,
                            kz_connect_token *viewer_token, kz_time_ns now)
{
    kz_sign_keypair backend;
    kz_box_keypair keys;
    if (kz_sign_keypair_generate(&backend) != KZ_OK || kz_box_keypair_generate(&keys) != KZ_OK) {
        fprintf(stderr, "viewer: cannot generate keys\n");
        return NULL;
    }
    kzv_world *w = calloc(1, sizeof *w);
    if (!w)
        goto fail;
    w->n_bots = cfg->bots;
    w->bots = calloc(cfg->bots, sizeof *w->bots);
    w->server = kzv_server(&backend, &keys, cfg->bots + 1u, cfg->seed);
    if ((cfg->bots && !w->bots) || !w->server) {
        fprintf(stderr, "viewer: cannot start the embedded server\n");
        goto fail;
    }
    info->mode = "embedded";
    info->view_radius = KZV_VIEW_RADIUS;
    if (kzv_zones(w->server, info) != KZ_OK || kzv_objects(w->server) != KZ_OK)
        goto fail;
    for (uint32_t id = 1; id <= cfg->bots; id++) {
        int rc = kzv_bot_start(w, &backend, &keys, id, cfg->seed, info, now);
        if (rc != KZ_OK) {
            fprintf(stderr, "viewer: bot %u: %s\n", id, kz_strerror(rc));
            goto fail;
        }
    }
    if (kzv_viewer_token(w, &backend, &keys, cfg->bots + 1u, info, viewer_token) != KZ_OK) {
        fprintf(stderr, "viewer: cannot mint the viewer's token\n");
        goto fail;
    }
    kzv_wipe(&backend, sizeof backend);
    kzv_wipe(&keys, sizeof keys);  /* the server keeps its own copy */
    return w;
fail:
    kzv_wipe(&backend, sizeof backend);
    kzv_wipe(&keys, sizeof keys);
    kzv_world_destroy(w);
    return NULL;
}

void kzv_world_step(kzv_world *w, kz_time_ns now)
{
    kz_server_step(w->server, now);
    for (uint32_t i = 0; i < w->n_bots; i++)
        kzv_bot_step(&w->bots[i], now);
}

uint32_t kzv_world_bots_connected(const kzv_world *w)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->n_bots; i++)
        n += kz_client_state(w->bots[i].client) == KZ_CLIENT_CONNECTED;
    return n;
}

void kzv_world_destroy(kzv_world *w)
{
    if (!w)
        return;
    for (uint32_t i = 0; w->bots && i < w->n_bots; i++)
        if (w->bots[i].client)
            kz_client_destroy(w->bots[i].client);
    free(w->bots);
    if (w->server)
        kz_server_destroy(w->server);
    free(w);
}
