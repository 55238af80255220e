/*
 * kz-example-viewer: a live picture, in a web browser, of what one Kizuna
 * client sees.
 *
 *   kz-example-viewer [--http HOST:PORT] [--seconds S] [--bots N] [--seed N]
 *   kz-example-viewer --connect TOKEN_FILE [--http HOST:PORT] [--seconds S]
 *
 * By default it runs a small world in this process (world.c: a server with
 * a private and a public zone, two objects, N wandering bots) and joins it
 * with one more client, the viewer, which stands still like a camera. With
 * --connect it runs no world and joins a real server with a token file
 * minted by `kizuna-server token mint`.
 *
 * The main thread drives every Kizuna object (the client API is
 * single-threaded) and, once per frame, publishes a copy of the viewer
 * client's view under a mutex. libmicrohttpd's thread serves the page and
 * /state.json from that copy (http.c, json.c). Once listening, the program
 * prints "viewer: http://HOST:PORT/" on stdout. It exits 0 on SIGINT or
 * SIGTERM, or after --seconds with the viewer connected; 1 if the viewer
 * could not connect or its session ended; 2 on a usage error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "viewer.h"

#define KZV_FRAME_NS (2u * KZ_NS_PER_MS)        /* main loop period */
#define KZV_PUBLISH_NS (KZ_NS_PER_S / 60u)      /* how often the view is published */
#define KZV_CONNECT_LIMIT_NS (15u * KZ_NS_PER_S) /* the viewer must be in by then */
#define KZV_DEFAULT_BOTS 12u
/* What the page assumes of a real server's view radius (its default);
 * the protocol does not tell a client. */
#define KZV_REMOTE_VIEW_RADIUS 50.0f

static const char kzv_usage[] =
    "usage: kz-example-viewer [--http HOST:PORT] [--seconds S] [--bots N] [--seed N]\n"
    "       kz-example-viewer --connect TOKEN_FILE [--http HOST:PORT] [--seconds S]\n"
    "\n"
    "Serves a live map of one client's view at http://HOST:PORT/ (the page)\n"
    "and http://HOST:PORT/state.json (the view as JSON).\n"
    "\n"
    "  --http HOST:PORT     where to listen; HOST is an IPv4 address or\n"
    "                       localhost, PORT 0 picks a free port\n"
    "                       (default 127.0.0.1:8080)\n"
    "  --seconds S          exit after S seconds; 0 runs until SIGINT or\n"
    "                       SIGTERM (default 0)\n"
    "  --bots N             wandering clients in the embedded world, 0..255\n"
    "                       (default 12)\n"
    "  --seed N             seed of spawn points and walks (default 1)\n"
    "  --connect FILE       join the server FILE's token names instead of\n"
    "                       running the embedded world\n"
    "  --help               show this help\n";

typedef struct kzv_options {
    char host[64];
    uint16_t port;
    uint32_t seconds;
    uint32_t bots;
    uint64_t seed;
    const char *connect;
    int world_options;   /* --bots or --seed given */
} kzv_options;

static volatile sig_atomic_t kzv_stop;

static void kzv_on_signal(int sig)
{
    kzv_stop = sig;
}

void kzv_wipe(void *p, size_t n)
{
    volatile unsigned char *b = p;
    while (n--)
        *b++ = 0;
}

void kzv_view_copy(kzv_view *dst, const kzv_view *src)
{
    memcpy(dst, src, offsetof(kzv_view, e));
    memcpy(dst->e, src->e, (size_t)src->n * sizeof src->e[0]);
}

const char *kzv_principal_name(const kzv_info *info, uint64_t id)
{
    for (uint32_t i = 0; i < info->n_principals; i++)
        if (info->principals[i].client_id == id)
            return info->principals[i].name;
    return NULL;
}

/* ---- options ------------------------------------------------------------ */

static int kzv_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0' || s[0] == '-' || v > max)
        return -1;
    *out = v;
    return 0;
}

/* "HOST:PORT", split at the last colon; HOST an IPv4 address or localhost
 * (what http.c can bind). */
static int kzv_parse_http(const char *arg, kzv_options *o)
{
    const char *colon = strrchr(arg, ':');
    uint64_t port = 0;
    struct in_addr ip;
    if (!colon || colon == arg || (size_t)(colon - arg) >= sizeof o->host ||
        kzv_parse_u64(colon + 1, 65535, &port) != 0)
        return -1;
    memcpy(o->host, arg, (size_t)(colon - arg));
    o->host[colon - arg] = '\0';
    o->port = (uint16_t)port;
    return strcmp(o->host, "localhost") == 0 || inet_pton(AF_INET, o->host, &ip) == 1 ? 0 : -1;
}

static int kzv_option(int opt, const char *arg, kzv_options *o)
{
    uint64_t v = 0;
    switch (opt) {
    case 'H':
        return kzv_parse_http(arg, o);
    case 's':
        if (kzv_parse_u64(arg, 10u * 365u * 86400u, &v) != 0)
            return -1;
        o->seconds = (uint32_t)v;
        return 0;
    case 'b':
        if (kzv_parse_u64(arg, KZV_MAX_PRINCIPALS - 1u, &v) != 0)
            return -1;
        o->bots = (uint32_t)v;
        o->world_options = 1;
        return 0;
    case 'S':
        o->world_options = 1;
        return kzv_parse_u64(arg, UINT64_MAX, &o->seed);
    case 'c':
        o->connect = arg;
        return 0;
    default:
        return -1;
    }
}

/* 0 to run, 1 after --help, 2 on a usage error (reported). */
static int kzv_parse_options(int argc, char **argv, kzv_options *o)
{
    static const struct option longs[] = {
        {"http", required_argument, NULL, 'H'},  {"seconds", required_argument, NULL, 's'},
        {"bots", required_argument, NULL, 'b'},  {"seed", required_argument, NULL, 'S'},
        {"connect", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    strcpy(o->host, "127.0.0.1");
    o->port = 8080;
    o->bots = KZV_DEFAULT_BOTS;
    o->seed = 1;
    int opt, idx = 0;
    while ((opt = getopt_long(argc, argv, "h", longs, &idx)) != -1) {
        if (opt == 'h') {
            fputs(kzv_usage, stdout);
            return 1;
        }
        if (opt == '?' || kzv_option(opt, optarg, o) != 0) {
            if (opt != '?')
                fprintf(stderr, "viewer: bad value for --%s: %s\n", longs[idx].name, optarg);
            fputs(kzv_usage, stderr);
            return 2;
        }
    }
    if (optind < argc || (o->connect && o->world_options)) {
        fprintf(stderr, "viewer: %s\n", optind < argc ? "unexpected argument"
                                                      : "--bots and --seed are for the embedded "
                                                        "world, not --connect");
        fputs(kzv_usage, stderr);
        return 2;
    }
    return 0;
}

/* ---- the viewer client -------------------------------------------------- */

/* Reads a client token file and describes its owner in info. */
static int kzv_read_token(const char *path, kz_connect_token *ct, kzv_info *info)
{
    static uint8_t buf[KZ_CONNECT_TOKEN_FILE_MAX_BYTES + 1];
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "viewer: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    kz_token_info t;
    if (kz_connect_token_decode(buf, n, ct) != KZ_OK ||
        kz_token_parse(ct->token, ct->token_len, &t) != KZ_OK) {
        kzv_wipe(buf, sizeof buf);
        fprintf(stderr, "viewer: %s is not a client token file\n", path);
        return -1;
    }
    kzv_wipe(buf, sizeof buf);  /* the file holds the session keys */
    info->mode = "connect";
    info->view_radius = KZV_REMOTE_VIEW_RADIUS;
    info->self_badge.verification_level = t.claims.verification_level;
    info->self_badge.actor_kind = t.claims.actor_kind;
    info->self_badge.acting_for = t.claims.acting_for;
    snprintf(info->self_badge.method, sizeof info->self_badge.method, "%s", t.claims.method);
    snprintf(info->self_badge.name, sizeof info->self_badge.name, "%s", t.name);
    info->self_badge_known = 1;
    return 0;
}

/* Fills `v` (main thread's scratch) from the client; ents is scratch for
 * kz_client_view with room for KZV_MAX_ENTITIES. */
static void kzv_capture(const kz_client *c, kzv_view *v, kz_client_entity *ents)
{
    v->frame++;
    v->state = kz_client_state(c);
    v->reason = kz_client_reason(c);
    v->server_tick = kz_client_server_tick(c);
    v->self_id = kz_client_self_id(c);
    v->have_self = v->self_id != 0 && kz_client_self(c, &v->self) == KZ_OK;
    v->in_view = kz_client_view(c, ents, KZV_MAX_ENTITIES);
    v->n = v->in_view < KZV_MAX_ENTITIES ? v->in_view : KZV_MAX_ENTITIES;
    for (uint32_t i = 0; i < v->n; i++) {
        kzv_entity *e = &v->e[i];
        const kz_avatar_state *s = &ents[i].state;
        e->id = ents[i].id;
        e->kind = s->kind;
        e->holder = s->holder;
        memcpy(e->pos, s->pos, sizeof e->pos);
        e->yaw = s->yaw;
        e->has_badge =
            s->kind == KZ_KIND_AVATAR && kz_client_badge(c, e->id, &e->badge) == KZ_OK;
    }
}

static void kzv_publish(kzv_shared *sh, const kzv_view *v)
{
    pthread_mutex_lock(&sh->lock);
    kzv_view_copy(&sh->view, v);
    pthread_mutex_unlock(&sh->lock);
}

/* ---- main --------------------------------------------------------------- */

/* Everything main owns, released by kzv_run_free. */
typedef struct kzv_run {
    kzv_options opt;
    kzv_shared *shared;
    kzv_view *scratch;
    kz_client_entity *ents;
    kzv_world *world;
    kz_client *client;
    kzv_http *http;
} kzv_run;

static void kzv_run_free(kzv_run *r)
{
    kzv_http_stop(r->http);  /* first: the HTTP thread reads r->shared */
    if (r->client)
        kz_client_destroy(r->client);
    kzv_world_destroy(r->world);
    if (r->shared)
        pthread_mutex_destroy(&r->shared->lock);
    free(r->shared);
    free(r->scratch);
    free(r->ents);
}

static void kzv_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = kzv_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Sets up the world (or reads the token), the viewer client and the HTTP
 * server, and prints the URL. 0 or -1 (reported). */
static int kzv_start(kzv_run *r, kz_time_ns now)
{
    r->shared = calloc(1, sizeof *r->shared);
    r->scratch = calloc(1, sizeof *r->scratch);
    r->ents = calloc(KZV_MAX_ENTITIES, sizeof *r->ents);
    if (!r->shared || !r->scratch || !r->ents || pthread_mutex_init(&r->shared->lock, NULL)) {
        fprintf(stderr, "viewer: out of memory\n");
        free(r->shared);
        r->shared = NULL;
        return -1;
    }
    kz_connect_token ct;
    if (r->opt.connect) {
        if (kzv_read_token(r->opt.connect, &ct, &r->shared->info) != 0)
            return -1;
    } else {
        kzv_world_config wc = {.bots = r->opt.bots, .seed = r->opt.seed};
        r->world = kzv_world_create(&wc, &r->shared->info, &ct, now);
        if (!r->world)
            return -1;
    }
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    r->client = kz_client_create(&cc);
    int rc = r->client ? kz_client_connect(r->client, &ct, now) : KZ_ENOMEM;
    kzv_wipe(&ct.keys, sizeof ct.keys);  /* the client keeps its own copy */
    if (rc != KZ_OK) {
        fprintf(stderr, "viewer: cannot start the viewer client: %s\n", kz_strerror(rc));
        return -1;
    }
    uint16_t port = 0;
    r->http = kzv_http_start(r->opt.host, r->opt.port, r->shared, &port);
    if (!r->http)
        return -1;
    printf("viewer: http://%s:%u/\n",
           strcmp(r->opt.host, "localhost") == 0 ? "127.0.0.1" : r->opt.host, (unsigned)port);
    fflush(stdout);
    return 0;
}

static void kzv_drain_events(kz_client *c)
{
    kz_client_event ev;
    while (kz_client_poll_event(c, &ev) == KZ_OK) {
        if (ev.type == KZ_EV_NOTICE && ev.len > 0)
            fprintf(stderr, "viewer: notice %u: %.*s\n", ev.code, (int)ev.len,
                    (const char *)ev.data);
    }
}

static int kzv_ended(const kzv_run *r, uint32_t state, kz_time_ns since_start)
{
    if (state == KZ_CLIENT_DISCONNECTED || state == KZ_CLIENT_FAILED) {
        fprintf(stderr, "viewer: the viewer's session %s (reason %u)\n",
                state == KZ_CLIENT_FAILED ? "could not start" : "ended",
                kz_client_reason(r->client));
        return 1;
    }
    if (state != KZ_CLIENT_CONNECTED && since_start > KZV_CONNECT_LIMIT_NS) {
        fprintf(stderr, "viewer: not connected after %llu s\n",
                (unsigned long long)(KZV_CONNECT_LIMIT_NS / KZ_NS_PER_S));
        return 1;
    }
    return 0;
}

/* The frame loop. 0 when stopped by a signal, or by --seconds with the
 * viewer connected; 1 when the viewer's session failed or ended, or had
 * not started when --seconds ran out. */
static int kzv_loop(kzv_run *r, const kz_clock *clock, kz_time_ns start)
{
    kz_time_ns end = start + (kz_time_ns)r->opt.seconds * KZ_NS_PER_S;
    kz_time_ns next_publish = start;
    for (;;) {
        kz_time_ns now = kz_clock_now(clock);
        if (kzv_stop)
            return 0;
        if (r->opt.seconds && now >= end) {
            if (kz_client_state(r->client) == KZ_CLIENT_CONNECTED)
                return 0;
            fprintf(stderr, "viewer: --seconds ran out before the viewer connected\n");
            return 1;
        }
        if (r->world)
            kzv_world_step(r->world, now);
        uint32_t state = kz_client_update(r->client, now);
        kzv_drain_events(r->client);
        if (now >= next_publish) {
            kzv_capture(r->client, r->scratch, r->ents);
            kzv_publish(r->shared, r->scratch);
            next_publish = now + KZV_PUBLISH_NS;
        }
        if (kzv_ended(r, state, now - start))
            return 1;
        struct timespec pause = {0, (long)KZV_FRAME_NS};
        nanosleep(&pause, NULL);
    }
}

int main(int argc, char **argv)
{
    kzv_run r;
    memset(&r, 0, sizeof r);
    int parsed = kzv_parse_options(argc, argv, &r.opt);
    if (parsed)
        return parsed == 1 ? 0 : 2;
    kzv_signals();
    kz_clock clock = kz_clock_system();
    kz_time_ns start = kz_clock_now(&clock);
    if (kzv_start(&r, start) != 0) {
        kzv_run_free(&r);
        return 1;
    }
    int rc = kzv_loop(&r, &clock, start);
    if (r.world)
        printf("viewer: stopping; %u of %u bots connected, %llu views published\n",
               kzv_world_bots_connected(r.world), r.opt.bots,
               (unsigned long long)r.scratch->frame);
    kzv_run_free(&r);
    return rc;
}
