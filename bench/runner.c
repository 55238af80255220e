/*
 * kizuna-bench runner (see runner.h).
 *
 * Phases, published by the main thread through one atomic: CONNECT (bots
 * connect at a steady rate), WARMUP (everyone in, not measured), MEASURE
 * (the window the report describes), STOP. Bot threads and the server
 * thread watch the phase and reset or keep their own measurements; the
 * main thread reads only atomics, counters (which are safe to read from
 * any thread) and the per-second samples the server thread hands over.
 */
#define _GNU_SOURCE
#include "runner.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <kizuna/client.h>
#include <kizuna/proxy.h>
#include <kizuna/server.h>
#include <kizuna/token.h>

#include "addrs.h"
#include "keys.h"
#include "scenario.h"
#include "net/gate.h"
#include "sim/validate.h"
#include "sim/wire.h"

#define PH_CONNECT 0
#define PH_WARMUP 1
#define PH_MEASURE 2
#define PH_STOP 3

#define CONNECT_LIMIT_S 90u

/* ---- time --------------------------------------------------------------- */

static kz_time_ns mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (kz_time_ns)ts.tv_sec * KZ_NS_PER_S + (kz_time_ns)ts.tv_nsec;
}

static uint64_t cpu_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * KZ_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / KZ_NS_PER_S), (long)(ns % KZ_NS_PER_S)};
    nanosleep(&ts, NULL);
}

/* ---- shared state ------------------------------------------------------- */

typedef struct bot {
    kz_client *c;
    kz_netclient *raw;        /* hostile raw speakers (speed hack) */
    kz_wire_welcome welcome;  /* raw bots only */
    kz_snap_codec codec;      /* raw bots only */
    uint32_t raw_tick;
    int forge_fd;             /* forged-datagram senders */
    kzb_bot_plan plan;
    uint64_t id;              /* client id in the token */
    kz_time_ns start_at, connect_began;
    int connected, gone;
    uint32_t last_tick;
    uint64_t corrections, flagged;   /* flagged: the server said it corrected us */
    uint32_t chat_sent, chat_echoed;
    uint32_t misbehaved_tick;        /* hostile bots act once per input tick */
    int64_t best_offset;             /* external mode: fastest (arrival - tick * period) */
    int have_offset;
    uint32_t latency_tick;           /* input tick of the newest input latency recorded */
    /* Counts of the clients this bot destroyed (churn), so the thread's
     * totals stay whole when a client goes. */
    uint64_t retired_snapshots, retired_acks;
} bot;

typedef struct world_ctx world_ctx;

typedef struct bot_thread {
    world_ctx *w;
    pthread_t th;
    uint32_t first, count;
    kz_hist age;              /* snapshot age, ns, this thread's bots */
    kz_hist connect;          /* connect time, ns */
    kz_hist latency;          /* input latency, ns: input sent -> snapshot applying it */
    unsigned churn_seed;
    _Atomic uint64_t cpu_ns;
    _Atomic uint64_t bytes_in, bytes_out, pkts_in, pkts_out;
    _Atomic uint64_t snapshots, acks;
    _Atomic uint32_t connected;
    _Atomic uint64_t corrections, kicks, timeouts;
    int measuring;
} bot_thread;

struct world_ctx {
    const kzb_options *o;
    _Atomic int phase;
    /* keys and tokens */
    kz_sign_keypair backend;
    uint8_t server_pk[KZ_BOX_PUBLIC_KEY_BYTES];
    uint64_t server_id;
    kzb_motion_limits limits; /* the server's max_speed and max_accel */
    kz_address server_addr;   /* where clients send (the first of addrs) */
    kz_address addrs[KZ_TOKEN_MAX_ADDRESSES];  /* the servers tokens name */
    uint32_t n_addrs;
    uint16_t gate_port;
    /* embedded server */
    kz_server *srv;
    kz_audit *audit;
    kz_counting_alloc server_alloc;
    pthread_t server_th;
    _Atomic uint64_t tick_start;   /* time of tick 1, once known */
    kz_hist tick_sec, tick_total;
    pthread_mutex_t lock;
    double sec_p50, sec_p99;       /* under lock */
    uint64_t sec_ticks;            /* under lock: ticks run in the last second */
    _Atomic uint64_t server_thread_cpu;
    /* relay */
    kz_proxy *proxy;
    pthread_t proxy_th;
    /* bots */
    bot *bots;
    uint32_t n;
    _Atomic uint64_t next_id;
    bot_thread *threads;
    uint32_t n_threads;
    kz_time_ns t0;
};

/* ---- tokens ------------------------------------------------------------- */

/* The token of the bot numbered `index` in this run: its addresses are
 * the servers' rotated to start at index mod n_addrs (bench/addrs.h). */
static int mint(world_ctx *w, uint64_t id, uint32_t index, kz_connect_token *out)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = w->o->protocol_id;
    t.create_time = (uint64_t)time(NULL) - 1;
    t.expire_time = t.create_time + 3600;
    t.server_id = w->server_id;
    t.n_addresses = (uint8_t)w->n_addrs;
    kzb_addrs_rotate(w->addrs, w->n_addrs, index, t.addresses);
    t.client_id = id;
    t.avatar_id = id;
    snprintf(t.name, sizeof t.name, "bot-%llu", (unsigned long long)id);
    t.claims.actor_kind = KZ_ACTOR_BOT;
    strcpy(t.claims.method, "none");
    size_t len = 0;
    int rc = kz_token_mint(&t, w->backend.secret_key, w->server_pk, &out->keys, out->token,
                           sizeof out->token, &len);
    out->token_len = (uint16_t)len;
    return rc;
}

/* ---- the embedded server ------------------------------------------------ */

static void *server_main(void *arg)
{
    world_ctx *w = arg;
    pthread_setname_np(pthread_self(), "kzb-sim");
    kz_time_ns next_sample = mono() + KZ_NS_PER_S;
    while (atomic_load(&w->phase) != PH_STOP) {
        kz_time_ns now = mono();
        (void)kz_server_step(w->srv, now);
        if (!atomic_load(&w->tick_start) && kz_server_tick(w->srv) >= 1)
            atomic_store(&w->tick_start, kz_server_tick_time(w->srv, 1));
        if (now >= next_sample) {
            next_sample += KZ_NS_PER_S;
            kz_hist_reset(&w->tick_sec);
            (void)kz_server_tick_hist_take(w->srv, &w->tick_sec);
            if (atomic_load(&w->phase) == PH_MEASURE)
                (void)kz_hist_merge(&w->tick_total, &w->tick_sec);
            pthread_mutex_lock(&w->lock);
            w->sec_p50 = kz_hist_percentile(&w->tick_sec, 50) / 1e6;
            w->sec_p99 = kz_hist_percentile(&w->tick_sec, 99) / 1e6;
            w->sec_ticks = kz_hist_total(&w->tick_sec);
            pthread_mutex_unlock(&w->lock);
        }
        atomic_store(&w->server_thread_cpu, cpu_ns(CLOCK_THREAD_CPUTIME_ID));
        sleep_ns(500 * KZ_NS_PER_US);
    }
    return NULL;
}

/* The motion limits the server's validator enforces, resolved from its
 * config exactly as the server resolves them (zero = the default). */
static void server_limits(const kz_server_config *sc, kzb_motion_limits *out)
{
    kz_validate_config v;
    kz_validate_config_default(&v);
    v.tick_hz = sc->tick_hz;
    v.max_speed = sc->max_speed;
    if (sc->max_accel != 0)
        v.max_accel = sc->max_accel;
    if (kz_validate_config_resolve(&v) != KZ_OK)
        kz_validate_config_default(&v);  /* kz_server_create refuses such a config */
    out->max_speed = v.max_speed;
    out->max_accel = v.max_accel;
}

/* An external server's limits are not on the wire (the welcome carries no
 * max_accel): the library's defaults, which kizuna-server keeps unless its
 * [validation] section changes them. */
static void default_limits(kzb_motion_limits *out)
{
    kz_validate_config v;
    kz_validate_config_default(&v);
    out->max_speed = v.max_speed;
    out->max_accel = v.max_accel;
}

static int start_server(world_ctx *w)
{
    const kzb_options *o = w->o;
    kz_box_keypair server;
    if (kz_sign_keypair_generate(&w->backend) || kz_box_keypair_generate(&server))
        return KZ_EINVAL;
    memcpy(w->server_pk, server.public_key, sizeof w->server_pk);
    w->server_id = 1;
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    uint32_t max = o->clients + o->clients / 8u + 16u;  /* churn needs slack */
    sc.net.verifier.protocol_id = o->protocol_id;
    sc.net.verifier.server_id = w->server_id;
    memcpy(sc.net.verifier.backend_pk, w->backend.public_key, sizeof sc.net.verifier.backend_pk[0]);
    sc.net.verifier.server_keys = server;
    sc.net.bind_ip = htonl(INADDR_LOOPBACK);
    sc.net.max_clients = max;
    sc.net.threaded = 1;
    sc.net.io_threads = o->io_threads ? o->io_threads : (max + 3999u) / 4000u;
    if (sc.net.io_threads * 4095u < max)
        sc.net.io_threads = (max + 4094u) / 4095u;  /* ENet's peers per host */
    sc.net.gate_rate_per_ip = 1000000;  /* every bot comes from 127.0.0.1 */
    sc.net.log.level = KZ_LOG_WARN;
    kz_counting_alloc_init(&w->server_alloc, NULL);
    sc.net.alloc = kz_counting_alloc_allocator(&w->server_alloc);
    sc.tick_hz = o->hz;
    sc.max_visible = o->max_visible;
    sc.spawn_radius = kzb_scenario_radius(o->scenario, o->clients);
    sc.spawn_seed = (uint32_t)o->seed;
    server_limits(&sc, &w->limits);
    if (o->audit) {
        kz_sign_keypair ak;
        kz_audit_config ac;
        memset(&ac, 0, sizeof ac);
        kz_audit_config_default(&ac);
        ac.path = o->audit;
        if (kz_sign_keypair_generate(&ak) != KZ_OK)
            return KZ_EINVAL;
        memcpy(ac.sign_secret_key, ak.secret_key, sizeof ac.sign_secret_key);
        if (kz_audit_open(&ac, &w->audit) != KZ_OK) {
            fprintf(stderr, "kizuna-bench: cannot open the audit log %s\n", o->audit);
            return KZ_EINVAL;
        }
        sc.audit = w->audit;
    }
    w->srv = kz_server_create(&sc);
    if (!w->srv)
        return KZ_EINVAL;
    w->gate_port = kz_server_port(w->srv);
    kz_hist_config hc;
    kz_hist_config_default(&hc);
    hc.highest = 10ull * KZ_NS_PER_S;
    if (kz_hist_init(&w->tick_sec, &hc, NULL) || kz_hist_init(&w->tick_total, &hc, NULL))
        return KZ_ENOMEM;
    return pthread_create(&w->server_th, NULL, server_main, w) ? KZ_EINVAL : KZ_OK;
}

/* External server: backend key and server public key from --keys. */
static int use_external(world_ctx *w)
{
    const kzb_options *o = w->o;
    char why[160];
    if (kzb_addrs_parse(o->connect, w->addrs, KZ_TOKEN_MAX_ADDRESSES, &w->n_addrs, why,
                        sizeof why) != 0) {
        fprintf(stderr, "kizuna-bench: --connect: %s\n", why);
        return KZ_EINVAL;
    }
    if (o->impair && w->n_addrs > 1) {
        fprintf(stderr, "kizuna-bench: --impair relays to one server: give --connect one address\n");
        return KZ_EINVAL;
    }
    w->server_addr = w->addrs[0];
    if (!o->keys) {
        fprintf(stderr, "kizuna-bench: --connect needs --keys DIR (backend.key, server.pub)\n");
        return KZ_EINVAL;
    }
    if (kzs_keys_load_backend_secret(o->keys, w->backend.secret_key) != 0 ||
        kzs_key_load(o->keys, KZS_KEY_SERVER_PUBLIC, w->server_pk) != 0)
        return KZ_EINVAL;
    w->server_id = kzs_server_id(w->server_pk);
    w->gate_port = w->server_addr.port;
    default_limits(&w->limits);
    return KZ_OK;
}

/* ---- the impairing relay ------------------------------------------------ */

static void *proxy_main(void *arg)
{
    world_ctx *w = arg;
    while (atomic_load(&w->phase) != PH_STOP) {
        kz_proxy_pump(w->proxy, mono());
        sleep_ns(200 * KZ_NS_PER_US);
    }
    return NULL;
}

static int start_proxy(world_ctx *w)
{
    kz_proxy_config pc;
    memset(&pc, 0, sizeof pc);
    pc.server_ip = htonl((uint32_t)w->server_addr.ip[0] << 24 | (uint32_t)w->server_addr.ip[1] << 16 |
                         (uint32_t)w->server_addr.ip[2] << 8 | w->server_addr.ip[3]);
    pc.server_port = w->gate_port;
    pc.max_clients = w->o->clients + w->o->clients / 8u + 16u;
    pc.seed = w->o->seed;
    if (kz_impair_profile(w->o->impair, &pc.up) != KZ_OK) {
        fprintf(stderr, "kizuna-bench: bad --impair '%s'\n", w->o->impair);
        return KZ_EINVAL;
    }
    pc.down = pc.up;
    w->proxy = kz_proxy_create(&pc);
    if (!w->proxy)
        return KZ_EINVAL;
    return pthread_create(&w->proxy_th, NULL, proxy_main, w) ? KZ_EINVAL : KZ_OK;
}

/* ---- bots ----------------------------------------------------------------- */

static kz_client_config client_config(const world_ctx *w)
{
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    /* Without a relay the client tries its token's addresses in order. */
    if (w->proxy) {
        cc.net.server.family = KZ_ADDR_IPV4;
        memset(cc.net.server.ip, 0, sizeof cc.net.server.ip);
        cc.net.server.ip[0] = 127;
        cc.net.server.ip[3] = 1;
        cc.net.server.port = kz_proxy_port(w->proxy);
    }
    cc.net.connect_timeout_ms = 30000;
    cc.net.log.level = KZ_LOG_ERROR;
    cc.header_only = w->o->bots == KZB_BOTS_THIN;
    return cc;
}

static void bot_connect(world_ctx *w, bot *b, kz_time_ns now)
{
    kz_connect_token ct;
    b->id = atomic_fetch_add(&w->next_id, 1);
    if (mint(w, b->id, (uint32_t)(b - w->bots), &ct) != KZ_OK) {
        b->gone = 1;
        return;
    }
    b->connect_began = now;
    b->connected = 0;
    b->last_tick = 0;
    kzb_plan_stand(&b->plan);  /* a new avatar stands; its input ticks count from 0 again */
    if (b->plan.hostile == KZB_HOSTILE_SPEED) {
        kz_client_config cc = client_config(w);
        b->raw = kz_netclient_create(&cc.net, &ct);
        b->gone = b->raw == NULL;
        return;
    }
    if (!b->c) {
        kz_client_config cc = client_config(w);
        b->c = kz_client_create(&cc);
    }
    b->gone = !b->c || kz_client_connect(b->c, &ct, now) != KZ_OK;
}

/* Forged datagrams: a sealed-looking packet with garbage, and a gate
 * request with a random token, each from a socket of our own. */
static void forge(world_ctx *w, bot *b)
{
    if (b->forge_fd <= 0)
        b->forge_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (b->forge_fd < 0)
        return;
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons(w->gate_port);
    to.sin_addr.s_addr = htonl((uint32_t)w->server_addr.ip[0] << 24 | (uint32_t)w->server_addr.ip[1] << 16 |
                               (uint32_t)w->server_addr.ip[2] << 8 | w->server_addr.ip[3]);
    uint8_t junk[200];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(b->plan.rng >> (i % 56)) ^ (uint8_t)i;
    b->plan.rng = b->plan.rng * 6364136223846793005ull + 1442695040888963407ull;
    junk[0] = KZ_GATE_MARK0;
    junk[1] = KZ_GATE_MARK1;
    (void)sendto(b->forge_fd, junk, sizeof junk, 0, (struct sockaddr *)&to, sizeof to);
}

/* Raw speed-hack bot: speaks INPUT by hand, asks for 40 m/s, reads the
 * `corrected` bit of the snapshots it gets. */
static void raw_update(world_ctx *w, bot_thread *t, bot *b, kz_time_ns now)
{
    (void)t;
    (void)w;
    (void)kz_netclient_update(b->raw, now);
    kz_netmsg m;
    while (kz_netclient_poll(b->raw, &m) == KZ_OK) {
        if (m.type == KZ_MSG_WELCOME && kz_wire_welcome_read(m.data, m.len, &b->welcome) == KZ_OK)
            (void)kz_snap_codec_init(&b->codec, b->welcome.tick_hz, b->welcome.n_slots, b->welcome.bound);
        if (m.type == KZ_MSG_SNAPSHOT && b->welcome.tick_hz) {
            kz_bitreader r;
            kz_bitreader_init(&r, m.data, m.len);
            kz_wire_snap_head h;
            if (kz_wire_snap_head_read(&b->codec, &r, &h) == KZ_OK && h.corrected)
                b->flagged++;
        }
    }
    if (!b->welcome.tick_hz || kz_netclient_state(b->raw) != KZ_NETCLIENT_CONNECTED)
        return;
    uint32_t due = (uint32_t)((now - b->connect_began) * b->welcome.tick_hz / KZ_NS_PER_S);
    while (b->raw_tick < due) {
        kz_wire_input in;
        memset(&in, 0, sizeof in);
        in.count = 1;
        in.cmd[0].tick = ++b->raw_tick;
        in.cmd[0].move[0] = 40 * KZ_SNAP_VEL_UNITS;
        in.cmd[0].rot[0] = in.cmd[0].rot[1] = in.cmd[0].rot[2] = KZ_SNAP_ROT_REST;
        uint8_t buf[KZ_INPUT_MAX_BYTES];
        int len = kz_wire_input_write(&in, buf, sizeof buf);
        if (len > 0 && kz_netclient_send(b->raw, KZ_CHANNEL_INPUT, KZ_MSG_INPUT, buf, (uint32_t)len) != KZ_OK)
            break;  /* queue full: the next update tries again */
    }
}

static kz_time_ns tick_time(const world_ctx *w, uint32_t tick)
{
    uint64_t start = atomic_load(&w->tick_start);
    if (!start)
        return 0;
    return start + (kz_time_ns)((double)(tick - 1u) * 1e9 / w->o->hz);
}

static void on_events(bot_thread *t, bot *b)
{
    kz_client_event ev;
    while (kz_client_poll_event(b->c, &ev) == KZ_OK) {
        if (ev.type == KZ_EV_CORRECTION) {
            b->corrections++;
            atomic_fetch_add(&t->corrections, 1);
        } else if (ev.type == KZ_EV_CHAT && ev.entity == kz_client_self_id(b->c)) {
            b->chat_echoed++;
        } else if (ev.type == KZ_EV_DISCONNECTED) {
            if (ev.code)
                atomic_fetch_add(&t->kicks, 1);
            else
                atomic_fetch_add(&t->timeouts, 1);
        }
    }
}

static void misbehave(world_ctx *w, bot *b, uint32_t tick)
{
    static const uint8_t frame[300];
    switch (b->plan.hostile) {
    case KZB_HOSTILE_CHAT:  /* a line every tick (30/s at 30 Hz) against a budget of 4 */
        if (kz_client_chat(b->c, "spam spam spam", 14) == KZ_OK)
            b->chat_sent++;
        break;
    case KZB_HOSTILE_VOICE:  /* 4 x 300 bytes every tick: 36 kB/s at 30 Hz, 4.5x the budget */
        for (int k = 0; k < 4; k++)
            (void)kz_client_voice(b->c, frame, sizeof frame);
        break;
    case KZB_HOSTILE_FORGE:
        if (tick % 2u == 0)
            forge(w, b);
        break;
    default:
        break;
    }
}

static void bot_update(world_ctx *w, bot_thread *t, bot *b, kz_time_ns now)
{
    if (b->gone || now < b->start_at)
        return;
    if (!b->c && !b->raw) {
        bot_connect(w, b, now);
        if (b->gone)
            return;
    }
    if (b->raw) {
        raw_update(w, t, b, now);
        if (!b->connected && kz_netclient_state(b->raw) == KZ_NETCLIENT_CONNECTED) {
            b->connected = 1;
            atomic_fetch_add(&t->connected, 1);
        }
        return;
    }
    uint32_t st = kz_client_update(b->c, now);
    on_events(t, b);
    if (st == KZ_CLIENT_CONNECTED && !b->connected) {
        b->connected = 1;
        atomic_fetch_add(&t->connected, 1);
        (void)kz_hist_record(&t->connect, now - b->connect_began);
    }
    if (st >= KZ_CLIENT_DISCONNECTED) {
        if (b->connected)
            atomic_fetch_sub(&t->connected, 1);
        b->connected = 0;
        b->gone = 1;
        return;
    }
    if (!b->connected)
        return;
    uint32_t newest = kz_client_server_tick(b->c);
    if (newest != b->last_tick) {
        b->last_tick = newest;
        kz_time_ns due = tick_time(w, newest);
        if (!w->srv) {
            /* External server: its clock is unknown, so the age is measured
             * from the fastest delivery this bot has seen (docs/BENCH-REPORT.md). */
            int64_t off = (int64_t)now - (int64_t)((double)newest * 1e9 / w->o->hz);
            if (!b->have_offset || off < b->best_offset) {
                b->best_offset = off;
                b->have_offset = 1;
            }
            due = (kz_time_ns)((int64_t)((double)newest * 1e9 / w->o->hz) + b->best_offset);
        }
        if (t->measuring && due && now >= due)
            (void)kz_hist_record_corrected(&t->age, now - due, KZ_NS_PER_S / w->o->hz);
    }
    /* Input latency needs no server clock: both ends are this bot's. */
    uint32_t input_tick;
    kz_time_ns latency;
    if (kz_client_input_latency(b->c, &input_tick, &latency) == KZ_OK &&
        input_tick != b->latency_tick) {
        b->latency_tick = input_tick;
        if (t->measuring)
            (void)kz_hist_record(&t->latency, latency);
    }
    uint32_t tick = (uint32_t)((now - b->connect_began) * w->o->hz / KZ_NS_PER_S);
    kz_avatar_state self, intent;
    if (kz_client_self(b->c, &self) == KZ_OK &&
        kzb_plan_step(&b->plan, w->o->scenario, w->o->clients, tick, w->o->hz, &self, &intent))
        (void)kz_client_send_input(b->c, &intent);
    if (b->plan.hostile && tick != b->misbehaved_tick) {
        b->misbehaved_tick = tick;
        misbehave(w, b, tick);
    }
}

/* Churn: 2% of this thread's bots leave and come back as new clients. */
static void churn(world_ctx *w, bot_thread *t, kz_time_ns now)
{
    uint32_t k = t->count / 50u + 1u;
    for (uint32_t j = 0; j < k; j++) {
        bot *b = &w->bots[t->first + (uint32_t)rand_r(&t->churn_seed) % t->count];
        if (!b->c || !b->connected)
            continue;
        const kz_counters *cs = kz_client_counters(b->c);
        b->retired_snapshots += kz_counters_get(cs, KZ_CLIENT_C_SNAPSHOTS);
        b->retired_acks += kz_counters_get(cs, KZ_CLIENT_C_INPUTS_SENT);
        kz_client_destroy(b->c);
        b->c = NULL;
        b->connected = 0;
        atomic_fetch_sub(&t->connected, 1);
        b->start_at = now;
    }
}

/* Snapshots taken in and input messages sent (each carries the ack of
 * the newest snapshot) by this thread's clients, the destroyed ones too. */
static void publish_client_counts(world_ctx *w, bot_thread *t)
{
    uint64_t snaps = 0, acks = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        const bot *b = &w->bots[t->first + i];
        snaps += b->retired_snapshots;
        acks += b->retired_acks;
        if (b->c) {
            const kz_counters *cs = kz_client_counters(b->c);
            snaps += kz_counters_get(cs, KZ_CLIENT_C_SNAPSHOTS);
            acks += kz_counters_get(cs, KZ_CLIENT_C_INPUTS_SENT);
        }
    }
    atomic_store(&t->snapshots, snaps);
    atomic_store(&t->acks, acks);
}

static void publish_traffic(world_ctx *w, bot_thread *t)
{
    uint64_t in = 0, out = 0, pin = 0, pout = 0;
    publish_client_counts(w, t);
    for (uint32_t i = 0; i < t->count; i++) {
        bot *b = &w->bots[t->first + i];
        const kz_netclient *nc = b->c ? kz_client_net(b->c) : b->raw;
        if (!nc)
            continue;
        kz_net_traffic tr;
        kz_netclient_traffic(nc, &tr);
        in += tr.bytes_in;
        out += tr.bytes_out;
        pin += tr.packets_in;
        pout += tr.packets_out;
    }
    /* Clients come and go (churn): keep the totals monotonic. */
    if (in > atomic_load(&t->bytes_in))
        atomic_store(&t->bytes_in, in);
    if (out > atomic_load(&t->bytes_out))
        atomic_store(&t->bytes_out, out);
    if (pin > atomic_load(&t->pkts_in))
        atomic_store(&t->pkts_in, pin);
    if (pout > atomic_load(&t->pkts_out))
        atomic_store(&t->pkts_out, pout);
}

static void *bot_main(void *arg)
{
    bot_thread *t = arg;
    pthread_setname_np(pthread_self(), "kzb-bots");
    world_ctx *w = t->w;
    kz_time_ns next_publish = mono(), next_churn = mono() + KZ_NS_PER_S;
    int phase;
    while ((phase = atomic_load(&w->phase)) != PH_STOP) {
        if (phase == PH_MEASURE && !t->measuring) {
            kz_hist_reset(&t->age);
            kz_hist_reset(&t->latency);
            t->measuring = 1;
        }
        kz_time_ns now = mono();
        for (uint32_t i = 0; i < t->count; i++)
            bot_update(w, t, &w->bots[t->first + i], now);
        if (now >= next_publish) {
            publish_traffic(w, t);
            next_publish = now + 200 * KZ_NS_PER_MS;
        }
        if (w->o->scenario == KZB_SC_CHURN && phase >= PH_WARMUP && now >= next_churn) {
            churn(w, t, now);
            next_churn += KZ_NS_PER_S;
        }
        atomic_store(&t->cpu_ns, cpu_ns(CLOCK_THREAD_CPUTIME_ID));
        /* Two passes per tick: enough to send every input tick and apply
         * every snapshot within half a tick, without spending the machine
         * on receive calls that find nothing (the server shares it). */
        kz_time_ns pass_end = mono(), next_pass = now + KZ_NS_PER_S / (2u * w->o->hz);
        sleep_ns(next_pass > pass_end + KZ_NS_PER_MS ? next_pass - pass_end : KZ_NS_PER_MS);
    }
    publish_traffic(w, t);
    return NULL;
}

/* ---- sampling ------------------------------------------------------------ */

typedef struct totals {
    uint64_t bots_cpu, process_cpu, main_cpu;
    uint64_t bytes_in, bytes_out, pkts_in, pkts_out;
    uint64_t snapshots, acks;
    uint64_t corrections, drops;
    uint32_t connected;
} totals;

/* Sum of every drop counter the server exposes (world, transport, gate). */
static uint64_t server_drops(const world_ctx *w)
{
    if (!w->srv)
        return 0;
    uint64_t sum = 0;
    const kz_counters *sets[3] = {kz_server_counters(w->srv), kz_netserver_counters(kz_server_net(w->srv)),
                                  kz_netserver_gate_counters(kz_server_net(w->srv))};
    for (int k = 0; k < 3; k++)
        for (uint32_t i = 0; i < sets[k]->n_counters; i++)
            if (strncmp(kz_counters_name(sets[k], i), "drop", 4) == 0)
                sum += kz_counters_get(sets[k], i);
    return sum;
}

static totals take_totals(world_ctx *w)
{
    totals s;
    memset(&s, 0, sizeof s);
    for (uint32_t k = 0; k < w->n_threads; k++) {
        bot_thread *t = &w->threads[k];
        s.bots_cpu += atomic_load(&t->cpu_ns);
        s.bytes_in += atomic_load(&t->bytes_in);
        s.bytes_out += atomic_load(&t->bytes_out);
        s.pkts_in += atomic_load(&t->pkts_in);
        s.pkts_out += atomic_load(&t->pkts_out);
        s.snapshots += atomic_load(&t->snapshots);
        s.acks += atomic_load(&t->acks);
        s.corrections += atomic_load(&t->corrections);
        s.connected += atomic_load(&t->connected);
    }
    s.process_cpu = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    s.main_cpu = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    s.drops = server_drops(w);
    return s;
}

static double server_cpu_between(const world_ctx *w, const totals *a, const totals *b)
{
    if (!w->srv)
        return -1;
    /* Everything this process did that is not a bot or the main thread:
     * the simulation thread, the I/O threads (and the relay, if any). */
    double d = (double)(b->process_cpu - a->process_cpu) - (double)(b->bots_cpu - a->bots_cpu) -
               (double)(b->main_cpu - a->main_cpu);
    return d > 0 ? d / 1e9 : 0;
}

static kzb_point point_between(const world_ctx *w, const totals *a, const totals *b, double t)
{
    kzb_point p;
    memset(&p, 0, sizeof p);
    p.t = t;
    p.connected = b->connected;
    pthread_mutex_lock((pthread_mutex_t *)&w->lock);
    p.tick_p50_ms = w->sec_p50;
    p.tick_p99_ms = w->sec_p99;
    pthread_mutex_unlock((pthread_mutex_t *)&w->lock);
    double cpu = server_cpu_between(w, a, b);
    p.server_cpu_pct = cpu < 0 ? -1 : cpu * 100.0;
    double n = b->connected ? b->connected : 1;
    p.down_kbps = (double)(b->bytes_in - a->bytes_in) * 8 / 1000 / n;
    p.up_kbps = (double)(b->bytes_out - a->bytes_out) * 8 / 1000 / n;
    p.corrections = b->corrections - a->corrections;
    p.drops = b->drops - a->drops;
    return p;
}

/* Server ticks run in the last second: the embedded server's own count
 * (fewer than hz when it falls behind and skips), else the nominal rate.
 * Client-ticks summed from it match the ticks the report divides by. */
static uint64_t ticks_in_second(world_ctx *w)
{
    if (!w->srv)
        return w->o->hz;
    pthread_mutex_lock(&w->lock);
    uint64_t n = w->sec_ticks;
    pthread_mutex_unlock(&w->lock);
    return n;
}

/* ---- results ------------------------------------------------------------- */

/* The server's counters over the window, under their own names. */
static void collect_counters(world_ctx *w, kzb_result *r, const uint64_t *world0,
                             const uint64_t *net0, const uint64_t *gate0)
{
    kz_netserver *net = kz_server_net(w->srv);
    int rc = kzb_tally_world(r, kz_server_counters(w->srv), world0);
    if (kzb_tally_counters(r, kz_netserver_counters(net), net0) != KZ_OK ||
        kzb_tally_counters(r, kz_netserver_gate_counters(net), gate0) != KZ_OK || rc != KZ_OK)
        fprintf(stderr, "kizuna-bench: the report cannot hold every counter of the server\n");
}

/* Hostile runs: per misbehaviour, how many bots the server visibly caught,
 * and whether any honest bot was kicked. */
static void collect_hostile(world_ctx *w, kzb_result *r, const uint64_t *gate0, const uint64_t *net0)
{
    uint64_t caught[KZB_HOSTILE_COUNT] = {0}, tried[KZB_HOSTILE_COUNT] = {0};
    const kz_counters *wc = kz_server_counters(w->srv);
    uint64_t voice_drops = kz_counters_get(wc, KZ_WORLD_C_DROP_RATE_VOICE);
    const kz_counters *gc = kz_netserver_gate_counters(kz_server_net(w->srv));
    const kz_counters *nc = kz_netserver_counters(kz_server_net(w->srv));
    uint64_t forged = 0;
    for (uint32_t i = 0; i < gc->n_counters; i++)
        if (strncmp(kz_counters_name(gc, i), "drop", 4) == 0)
            forged += kz_counters_get(gc, i) - gate0[i];
    for (uint32_t i = 0; i < nc->n_counters; i++)
        if (strncmp(kz_counters_name(nc, i), "drop", 4) == 0)
            forged += kz_counters_get(nc, i) - net0[i];
    for (uint32_t i = 0; i < w->n; i++) {
        bot *b = &w->bots[i];
        uint32_t h = b->plan.hostile;
        if (h == KZB_HOSTILE_NONE) {
            r->honest_punished += b->gone && b->c && kz_client_reason(b->c) != 0;
            continue;
        }
        tried[h]++;
        if (h == KZB_HOSTILE_SPEED)
            caught[h] += b->flagged > 0;
        else if (h == KZB_HOSTILE_CHAT)
            caught[h] += b->chat_sent > b->chat_echoed + 8u;
        else if (h == KZB_HOSTILE_VOICE)
            caught[h] += voice_drops > 0;
        else if (h == KZB_HOSTILE_FORGE)
            caught[h] += forged > 0;
    }
    for (uint32_t h = 1; h < KZB_HOSTILE_COUNT; h++) {
        char name[48];
        snprintf(name, sizeof name, "%s_bots", kzb_hostile_name(h));
        (void)kzb_named_add(r->caught, &r->n_caught, name, tried[h]);
        snprintf(name, sizeof name, "%s_caught", kzb_hostile_name(h));
        (void)kzb_named_add(r->caught, &r->n_caught, name, caught[h]);
    }
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ---- the run ------------------------------------------------------------- */

/* --window-cmd: runs `sh -c CMD kzb-window WHICH` and waits for it. A
 * command that cannot start or fails is reported and the run goes on. */
static void window_cmd(const kzb_options *o, const char *which)
{
    if (o->window_fn)
        o->window_fn(o->window_ctx, which);
    if (!o->window_cmd)
        return;
    extern char **environ;
    char *argv[] = {"sh", "-c", (char *)o->window_cmd, "kzb-window", (char *)which, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
    int status = 0;
    if (rc != 0) {
        fprintf(stderr, "kizuna-bench: --window-cmd: cannot start /bin/sh: %s\n", strerror(rc));
        return;
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "kizuna-bench: --window-cmd (%s) failed with status %d\n", which,
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static void raise_fd_limit(uint32_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need + 256u) {
        rl.rlim_cur = need + 256u > rl.rlim_max ? rl.rlim_max : need + 256u;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int setup(world_ctx *w, const kzb_options *o)
{
    memset(w, 0, sizeof *w);
    w->o = o;
    pthread_mutex_init(&w->lock, NULL);
    raise_fd_limit(o->clients * 2u);
    int rc = o->connect ? use_external(w) : start_server(w);
    if (rc)
        return rc;
    if (!o->connect) {
        w->server_addr.family = KZ_ADDR_IPV4;
        w->server_addr.ip[0] = 127;
        w->server_addr.ip[3] = 1;
        w->server_addr.port = w->gate_port;
        w->addrs[0] = w->server_addr;
        w->n_addrs = 1;
    }
    if (o->impair && (rc = start_proxy(w)))
        return rc;
    w->n = o->clients;
    w->bots = calloc(w->n, sizeof *w->bots);
    w->n_threads = o->bot_threads ? o->bot_threads : 1;
    w->threads = calloc(w->n_threads, sizeof *w->threads);
    if (!w->bots || !w->threads)
        return KZ_ENOMEM;
    atomic_store(&w->next_id, o->first_id ? o->first_id : 1);
    /* External servers keep their per-address gate budget (100/s, two
     * gate steps per connect): connect at 40 a second there. */
    double rate = o->connect_rate ? o->connect_rate : o->connect ? 40.0 : 1000.0;
    w->t0 = mono();
    for (uint32_t i = 0; i < w->n; i++) {
        kzb_plan_init(&w->bots[i].plan, o->scenario, i, w->n, o->seed, &w->limits);
        w->bots[i].start_at = w->t0 + (kz_time_ns)((double)i / rate * 1e9);
    }
    kz_hist_config hc;
    kz_hist_config_default(&hc);
    hc.highest = 120ull * KZ_NS_PER_S;
    for (uint32_t k = 0; k < w->n_threads; k++) {
        bot_thread *t = &w->threads[k];
        t->w = w;
        t->churn_seed = (unsigned)(o->seed + k);
        t->first = (uint32_t)((uint64_t)w->n * k / w->n_threads);
        t->count = (uint32_t)((uint64_t)w->n * (k + 1) / w->n_threads) - t->first;
        if (kz_hist_init(&t->age, &hc, NULL) || kz_hist_init(&t->connect, &hc, NULL) ||
            kz_hist_init(&t->latency, &hc, NULL))
            return KZ_ENOMEM;
    }
    for (uint32_t k = 0; k < w->n_threads; k++)
        if (pthread_create(&w->threads[k].th, NULL, bot_main, &w->threads[k]))
            return KZ_EINVAL;
    return KZ_OK;
}

static void teardown(world_ctx *w)
{
    atomic_store(&w->phase, PH_STOP);
    for (uint32_t k = 0; w->threads && k < w->n_threads; k++)
        if (w->threads[k].th)
            pthread_join(w->threads[k].th, NULL);
    if (w->server_th)
        pthread_join(w->server_th, NULL);
    if (w->proxy_th)
        pthread_join(w->proxy_th, NULL);
    for (uint32_t i = 0; w->bots && i < w->n; i++) {
        kz_client_destroy(w->bots[i].c);
        if (w->bots[i].raw)
            kz_netclient_destroy(w->bots[i].raw);
        if (w->bots[i].forge_fd > 0)
            close(w->bots[i].forge_fd);
    }
    for (uint32_t k = 0; w->threads && k < w->n_threads; k++) {
        kz_hist_fini(&w->threads[k].age);
        kz_hist_fini(&w->threads[k].connect);
        kz_hist_fini(&w->threads[k].latency);
    }
    free(w->bots);
    free(w->threads);
    if (w->proxy)
        kz_proxy_destroy(w->proxy);
    if (w->srv) {
        kz_server_destroy(w->srv);
        kz_hist_fini(&w->tick_sec);
        kz_hist_fini(&w->tick_total);
    }
    if (w->audit && kz_audit_close(w->audit) != KZ_OK)
        fprintf(stderr, "kizuna-bench: the audit log did not close cleanly\n");
    pthread_mutex_destroy(&w->lock);
}

int kzb_run(const kzb_options *o, kzb_result *r, kzb_progress_fn progress, void *ctx)
{
    world_ctx *w = calloc(1, sizeof *w);
    if (!w)
        return KZ_ENOMEM;
    int rc = setup(w, o);
    if (rc) {
        teardown(w);
        free(w);
        return rc;
    }
    r->clients_target = o->clients;
    totals prev = take_totals(w), start = prev;
    uint64_t world0[KZ_WORLD_C_COUNT] = {0}, net0[KZ_NET_C_COUNT] = {0}, gate0[KZ_GATE_C_COUNT] = {0};
    kz_time_ns phase_end = 0, next = mono() + KZ_NS_PER_S;
    for (;;) {
        sleep_ns(next - mono() < KZ_NS_PER_S ? next - mono() : KZ_NS_PER_S);
        kz_time_ns now = mono();
        next += KZ_NS_PER_S;
        totals cur = take_totals(w);
        kzb_point p = point_between(w, &prev, &cur, (double)(now - w->t0) / 1e9);
        prev = cur;
        if (cur.connected > r->connected_peak)
            r->connected_peak = cur.connected;
        int phase = atomic_load(&w->phase);
        if (phase == PH_MEASURE && r->n_series < o->seconds + 8u) {
            r->series[r->n_series++] = p;
            /* Numerator and divisor from the same seconds: the sampled
             * series and the tick histogram's window need not line up. */
            uint64_t t = ticks_in_second(w);
            r->client_ticks += (uint64_t)p.connected * t;
            r->measured_ticks += t;
        }
        if (progress && !o->quiet)
            progress(ctx, &p);
        if (phase == PH_CONNECT &&
            (cur.connected >= o->clients || now - w->t0 > CONNECT_LIMIT_S * KZ_NS_PER_S)) {
            atomic_store(&w->phase, PH_WARMUP);
            phase_end = now + (kz_time_ns)o->warmup * KZ_NS_PER_S;
        } else if (phase == PH_WARMUP && now >= phase_end) {
            window_cmd(o, "start");
            start = cur;
            if (w->srv) {
                kz_counters_snapshot(kz_server_counters(w->srv), world0);
                kz_counters_snapshot(kz_netserver_counters(kz_server_net(w->srv)), net0);
                kz_counters_snapshot(kz_netserver_gate_counters(kz_server_net(w->srv)), gate0);
            }
            atomic_store(&w->phase, PH_MEASURE);
            phase_end = now + (kz_time_ns)o->seconds * KZ_NS_PER_S;
        } else if (phase == PH_MEASURE && now >= phase_end) {
            r->measure_seconds = (double)(now - (phase_end - (kz_time_ns)o->seconds * KZ_NS_PER_S)) / 1e9;
            r->connected_end = cur.connected;
            r->server_cpu_seconds = server_cpu_between(w, &start, &cur);
            r->bytes_down = cur.bytes_in - start.bytes_in;
            r->bytes_up = cur.bytes_out - start.bytes_out;
            r->packets_down = cur.pkts_in - start.pkts_in;
            r->packets_up = cur.pkts_out - start.pkts_out;
            r->corrections = cur.corrections - start.corrections;
            r->bots_cpu_seconds = (double)(cur.bots_cpu - start.bots_cpu) / 1e9;
            r->snapshots = cur.snapshots - start.snapshots;
            r->acks = cur.acks - start.acks;
            window_cmd(o, "end");
            break;
        }
    }
    atomic_store(&w->phase, PH_STOP);
    if (w->server_th) {
        pthread_join(w->server_th, NULL);
        w->server_th = 0;
        (void)kz_hist_merge(&r->tick_ns, &w->tick_total);
        collect_counters(w, r, world0, net0, gate0);
        if (o->scenario == KZB_SC_HOSTILE)
            collect_hostile(w, r, gate0, net0);
        r->server_bytes = kz_counting_alloc_live_bytes(&w->server_alloc);
    }
    for (uint32_t k = 0; k < w->n_threads; k++) {
        pthread_join(w->threads[k].th, NULL);
        w->threads[k].th = 0;
        (void)kz_hist_merge(&r->snapshot_age_ns, &w->threads[k].age);
        (void)kz_hist_merge(&r->connect_ns, &w->threads[k].connect);
        (void)kz_hist_merge(&r->input_latency_ns, &w->threads[k].latency);
        r->kicks += atomic_load(&w->threads[k].kicks);
        r->timeouts += atomic_load(&w->threads[k].timeouts);
    }
    r->rss_bytes = rss_bytes();
    teardown(w);
    free(w);
    return KZ_OK;
}
