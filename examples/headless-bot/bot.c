/*
 * kz-headless-bot: one client with no screen, for smoke tests, demos and
 * load checks against a real server. It connects with a client token file
 * (as `kizuna-server token mint ... --out FILE` writes it), walks between
 * random waypoints around where it spawned, prints one status line a
 * second, and a final line.
 *
 *   kz-headless-bot TOKEN_FILE [--seconds S] [--radius M] [--speed M/S] [--seed N]
 *
 * S (default 10) counts from the moment the bot is in the world. The walk
 * is a pure function of the seed (default: the token's client id) and of
 * where the server spawned the avatar.
 *
 * Exit status: 0 the bot stayed connected for S seconds; 1 the session
 * ended early (kicked, with the server's reason and text; the server
 * stopped; the connection timed out); 2 bad command line or token file
 * (unreadable, malformed, expired); 3 could not connect (refused with a
 * reason, or no answer).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kizuna/kizuna.h>

#define EXIT_LOST 1
#define EXIT_USAGE 2
#define EXIT_NO_CONNECT 3

typedef struct bot_opts {
    const char *token_file;
    double seconds, radius, speed;
    uint64_t seed;
    int have_seed;
} bot_opts;

/* What the bot keeps while it runs. */
typedef struct bot {
    kz_client *client;
    kz_token_info info;        /* the token's public fields, for messages */
    char server[64];           /* the address it connects to */
    uint64_t rng;              /* xorshift64 state, never 0 */
    float home[2], target[2];  /* spawn point and current waypoint (x, z) */
    int have_home;
    uint32_t entered, max_visible;
    char why[256];             /* how the session ended, when it did */
} bot;

static int parse_args(int argc, char **argv, bot_opts *o)
{
    *o = (bot_opts){NULL, 10.0, 10.0, 1.4, 0, 0};
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') {
            if (o->token_file)
                return -1;
            o->token_file = a;
            continue;
        }
        if (!v)
            return -1;
        i++;
        if (strcmp(a, "--seconds") == 0)
            o->seconds = strtod(v, &end);
        else if (strcmp(a, "--radius") == 0)
            o->radius = strtod(v, &end);
        else if (strcmp(a, "--speed") == 0)
            o->speed = strtod(v, &end);
        else if (strcmp(a, "--seed") == 0) {
            o->seed = strtoull(v, &end, 10);
            o->have_seed = 1;
        }
        if (!end || *end != '\0')
            return -1;
    }
    int ok = o->token_file && o->seconds > 0 && o->seconds <= 86400 && o->radius > 0 &&
             o->radius <= 1000 && o->speed > 0 && o->speed <= 8;
    return ok ? 0 : -1;
}

/* Loads the token file and checks what the bot can check itself (the
 * server checks the signature). Prints the problem and returns -1. */
static int load_token(const char *path, kz_connect_token *ct, bot *b)
{
    uint8_t buf[KZ_CONNECT_TOKEN_FILE_MAX_BYTES + 1];
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bot: %s: cannot open the token file\n", path);
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    int rc = n < sizeof buf ? kz_connect_token_decode(buf, n, ct) : KZ_EPROTO;
    if (rc != KZ_OK || kz_token_parse(ct->token, ct->token_len, &b->info) != KZ_OK) {
        fprintf(stderr, "bot: %s: not a client token file (kizuna-server token mint writes "
                "them)\n", path);
        return -1;
    }
    uint64_t now = (uint64_t)time(NULL);
    if (b->info.expire_time <= now) {
        fprintf(stderr, "bot: %s: the token expired %llu s ago; mint a new one\n", path,
                (unsigned long long)(now - b->info.expire_time));
        return -1;
    }
    for (unsigned i = 0; i < b->info.n_addresses; i++)
        if (b->info.addresses[i].family == KZ_ADDR_IPV4) {
            kz_address_format(&b->info.addresses[i], b->server, sizeof b->server);
            return 0;
        }
    fprintf(stderr, "bot: %s: the token names no IPv4 server address\n", path);
    return -1;
}

/* Describes how a session ended into b->why. */
static void explain_end(bot *b, uint32_t state, const kz_client_event *ev)
{
    uint32_t r = ev ? ev->code : kz_client_reason(b->client);
    int n = ev ? (int)ev->len : 0;
    const char *text = ev && ev->data ? (const char *)ev->data : "";
    if (state == KZ_CLIENT_FAILED && r == 0)
        snprintf(b->why, sizeof b->why, "no answer from %s within the connect timeout: no "
                 "server there, or it refused the token silently (signed for another server "
                 "or with other keys; `kizuna-server token show FILE --keys DIR` checks)",
                 b->server);
    else if (state == KZ_CLIENT_FAILED)
        snprintf(b->why, sizeof b->why, "refused by %s: %s", b->server,
                 r == KZ_DENY_SERVER_FULL       ? "server full"
                 : r == KZ_DENY_TOKEN_IN_USE    ? "token already in use from another address"
                 : r == KZ_DENY_CLIENT_IN_USE   ? "this client id is already connected"
                 : r == KZ_DENY_SHUTTING_DOWN   ? "server shutting down"
                                                : "unknown reason");
    else if (r == KZ_KICK_ADMIN || r == KZ_KICK_VIOLATION || r == KZ_KICK_SHUTDOWN)
        snprintf(b->why, sizeof b->why, "%s: \"%.*s\"",
                 r == KZ_KICK_ADMIN       ? "kicked by a moderator"
                 : r == KZ_KICK_VIOLATION ? "kicked for breaking the rules"
                                          : "the server shut down",
                 n, text);
    else
        snprintf(b->why, sizeof b->why, "connection lost (reason %u): the server stopped "
                 "answering", (unsigned)r);
}

static float uniform(bot *b)  /* [0, 1) */
{
    b->rng ^= b->rng << 13, b->rng ^= b->rng >> 7, b->rng ^= b->rng << 17;
    return (float)(b->rng >> 40) / (float)(1u << 24);
}

/* Sets the intent toward the current waypoint, picking a new one (a
 * random point within `radius` of home) on arrival. */
static void walk(bot *b, const bot_opts *o)
{
    kz_avatar_state me, intent;
    /* Until the first snapshot the client does not know where the server
     * spawned the avatar, so there is no home to walk around yet. */
    if (kz_counters_get(kz_client_counters(b->client), KZ_CLIENT_C_SNAPSHOTS) == 0 ||
        kz_client_self(b->client, &me) != KZ_OK)
        return;
    if (!b->have_home) {
        b->home[0] = b->target[0] = me.pos[0];
        b->home[1] = b->target[1] = me.pos[2];
        b->have_home = 1;
    }
    float dx = b->target[0] - me.pos[0], dz = b->target[1] - me.pos[2];
    if (dx * dx + dz * dz < 0.25f) {
        float angle = 6.2831853f * uniform(b), r = (float)o->radius * sqrtf(uniform(b));
        b->target[0] = b->home[0] + r * cosf(angle);
        b->target[1] = b->home[1] + r * sinf(angle);
        dx = b->target[0] - me.pos[0], dz = b->target[1] - me.pos[2];
    }
    float heading = atan2f(dz, dx);
    kz_avatar_state_rest(&intent);
    intent.vel[0] = (float)o->speed * cosf(heading);
    intent.vel[2] = (float)o->speed * sinf(heading);
    intent.yaw = heading;
    kz_client_send_input(b->client, &intent);
}

static void status(const bot *b, double t, uint32_t state)
{
    kz_avatar_state me;
    const kz_counters *k = kz_client_counters(b->client);
    if (state != KZ_CLIENT_CONNECTED || kz_client_self(b->client, &me) != KZ_OK) {
        printf("bot: t=%3.0fs connecting to %s\n", t, b->server);
    } else {
        printf("bot: t=%3.0fs connected pos=(%.1f, %.1f) visible=%u snapshots=%llu "
               "corrections=%llu\n", t, me.pos[0], me.pos[2],
               (unsigned)kz_client_view(b->client, NULL, 0),
               (unsigned long long)kz_counters_get(k, KZ_CLIENT_C_SNAPSHOTS),
               (unsigned long long)kz_counters_get(k, KZ_CLIENT_C_CORRECTIONS));
    }
    fflush(stdout);
}

/* The frame loop. Returns the exit status. */
static int run(bot *b, const bot_opts *o)
{
    kz_clock clock = kz_clock_system();
    kz_time_ns start = kz_clock_now(&clock), joined = 0, next_status = start + KZ_NS_PER_S;
    kz_time_ns length = (kz_time_ns)(o->seconds * 1e9);
    for (kz_time_ns now = start;; now = kz_clock_now(&clock)) {
        uint32_t state = kz_client_update(b->client, now);
        kz_client_event ev;
        while (kz_client_poll_event(b->client, &ev) == KZ_OK) {
            b->entered += ev.type == KZ_EV_ENTER;
            if (ev.type == KZ_EV_DISCONNECTED)
                explain_end(b, state, &ev);
        }
        if (state == KZ_CLIENT_FAILED || state == KZ_CLIENT_DISCONNECTED) {
            if (b->why[0] == '\0')
                explain_end(b, state, NULL);
            fprintf(stderr, "bot: %s\n", b->why);
            return state == KZ_CLIENT_FAILED ? EXIT_NO_CONNECT : EXIT_LOST;
        }
        if (state == KZ_CLIENT_CONNECTED) {
            if (joined == 0)
                joined = now;
            if (now - joined >= length)
                return 0;
            walk(b, o);
            uint32_t seen = kz_client_view(b->client, NULL, 0);
            b->max_visible = seen > b->max_visible ? seen : b->max_visible;
        }
        if (now >= next_status) {
            status(b, (double)(now - start) / 1e9, state);
            next_status += KZ_NS_PER_S;
        }
        nanosleep(&(struct timespec){0, 5000000}, NULL);  /* 200 frames a second */
    }
}

int main(int argc, char **argv)
{
    bot_opts o;
    bot b;
    kz_connect_token ct;
    memset(&b, 0, sizeof b);
    if (parse_args(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: %s TOKEN_FILE [--seconds S] [--radius M] [--speed M/S (<= 8)] "
                "[--seed N]\n", argv[0]);
        return EXIT_USAGE;
    }
    if (load_token(o.token_file, &ct, &b) != 0)
        return EXIT_USAGE;
    b.rng = (o.have_seed ? o.seed : b.info.client_id) * 0x9E3779B97F4A7C15ull | 1u;
    printf("bot: %s (client %llu) connecting to %s\n", b.info.name,
           (unsigned long long)b.info.client_id, b.server);

    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    b.client = kz_client_create(&cc);
    kz_clock clock = kz_clock_system();
    int rc = b.client ? kz_client_connect(b.client, &ct, kz_clock_now(&clock)) : KZ_ENOMEM;
    if (rc != KZ_OK) {
        fprintf(stderr, "bot: cannot start connecting: %s\n", kz_strerror(rc));
        kz_client_destroy(b.client);
        return EXIT_NO_CONNECT;
    }
    int status_code = run(&b, &o);
    const kz_counters *k = kz_client_counters(b.client);
    if (status_code == 0)
        printf("bot: ok: stayed connected for %.0f s, %llu snapshots, %u entities entered "
               "view, at most %u visible at once\n", o.seconds,
               (unsigned long long)kz_counters_get(k, KZ_CLIENT_C_SNAPSHOTS),
               (unsigned)b.entered, (unsigned)b.max_visible);
    kz_client_destroy(b.client);
    return status_code;
}
