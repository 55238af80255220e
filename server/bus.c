/*
 * The per-tick bus over NATS (bus.h): the connection and its options, the
 * subscriptions of each role, the pumps between them and the library's
 * fleet server, and the counters of what NATS itself refused or lost.
 */
#include "bus.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "fleet.h"
#include "sim/fleet.h"

#define KZS_BUS_NAME(id, name) name,
static const char *const kzs_bus_counter_names[KZS_BUS_C_COUNT] = {
    KZS_BUS_COUNTERS(KZS_BUS_NAME)};
#undef KZS_BUS_NAME

/* "kz." + 32 + ".edge." + 2 + ".down", with room. */
#define KZS_BUS_SUBJECT_MAX 64u

/* A failure that is logged at most once per KZS_BUS_LOG_EVERY_NS. */
typedef struct kzs_bus_sampler {
    uint64_t next_ns;
    uint64_t left_out;
} kzs_bus_sampler;

struct kzs_bus {
    natsConnection *nc;
    natsSubscription *sub[2];
    unsigned sub_subject[2];      /* KZ_BUS_SUBJECT_* that each carries */
    int64_t sub_dropped[2];       /* libnats' dropped count last seen */
    uint32_t n_subs;
    unsigned role;
    uint32_t edge;
    char world[KZS_FLEET_WORLD_SIZE];
    kz_log log;
    kz_counters counters;
    kz_counter_block c;           /* the simulation thread's */
    kz_counter_block cb;          /* the NATS callbacks' */
    atomic_uint reconnects;       /* bumped by the callback, read by pump_in */
    atomic_int closing;           /* set by destroy: the callbacks stay quiet */
    atomic_int closed;            /* set by the last callback libnats makes */
    unsigned reconnects_seen;
    kzs_bus_sampler publish_log, receive_log;
};

static uint64_t kzs_bus_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Logs a failure unless one was logged less than a second ago; those in
 * between are counted into the next line. */
static void kzs_bus_report(kzs_bus *b, kzs_bus_sampler *sm, const char *event,
                           const char *subject, natsStatus s)
{
    uint64_t now = kzs_bus_now_ns();
    if (now < sm->next_ns) {
        sm->left_out++;
        return;
    }
    kz_logf(&b->log, KZ_LOG_WARN, "bus", "%s subject=%s error=\"%s\" left_out=%llu", event,
            subject, natsStatus_GetText(s), (unsigned long long)sm->left_out);
    sm->left_out = 0;
    sm->next_ns = now + KZS_BUS_LOG_EVERY_NS;
}

/* ---- subjects ------------------------------------------------------------ */

static void kzs_bus_subject(const kzs_bus *b, unsigned subject, uint32_t edge, char *out)
{
    if (subject == KZ_BUS_SUBJECT_TICK)
        snprintf(out, KZS_BUS_SUBJECT_MAX, "kz.%s.tick", b->world);
    else
        snprintf(out, KZS_BUS_SUBJECT_MAX, "kz.%s.edge.%u.%s", b->world, edge,
                 subject == KZ_BUS_SUBJECT_UP ? "up" : "down");
}

uint32_t kzs_bus_subject_edge(const char *world, const char *subject)
{
    size_t w = strlen(world), n = strlen(subject);
    /* "kz." world ".edge." digits ".up": the fixed parts first. */
    if (n < 3 + w + 6 + 1 + 3 || strncmp(subject, "kz.", 3) != 0 ||
        strncmp(subject + 3, world, w) != 0 || strncmp(subject + 3 + w, ".edge.", 6) != 0 ||
        strcmp(subject + n - 3, ".up") != 0)
        return 0;
    const char *d = subject + 3 + w + 6;
    size_t digits = (size_t)(subject + n - 3 - d);
    if (digits < 1 || digits > 2 || d[0] == '0')
        return 0;
    uint32_t e = 0;
    for (size_t i = 0; i < digits; i++) {
        if (d[i] < '0' || d[i] > '9')
            return 0;
        e = e * 10u + (uint32_t)(d[i] - '0');
    }
    return e <= KZ_BUS_MAX_EDGES ? e : 0;
}

/* ---- the connection ------------------------------------------------------ */

/* Connection callbacks run on libnats' threads: counters and flags only
 * (and a log line: these are rare). */
static void kzs_bus_on_disconnected(natsConnection *nc, void *closure)
{
    kzs_bus *b = closure;
    (void)nc;
    if (atomic_load(&b->closing))
        return; /* our own close, not a loss */
    kz_counter_inc(b->cb, KZS_BUS_C_DISCONNECTS);
    kz_logf(&b->log, KZ_LOG_WARN, "bus", "bus_disconnected why=\"NATS is away; reconnecting\"");
}

static void kzs_bus_on_reconnected(natsConnection *nc, void *closure)
{
    kzs_bus *b = closure;
    (void)nc;
    kz_counter_inc(b->cb, KZS_BUS_C_RECONNECTS);
    atomic_fetch_add(&b->reconnects, 1u);
    kz_logf(&b->log, KZ_LOG_INFO, "bus", "bus_reconnected");
}

/* The last callback of a connection: after it none touches the bus. */
static void kzs_bus_on_closed(natsConnection *nc, void *closure)
{
    kzs_bus *b = closure;
    (void)nc;
    atomic_store(&b->closed, 1);
}

static void kzs_bus_on_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
                             void *closure)
{
    kzs_bus *b = closure;
    (void)nc;
    (void)sub;
    (void)err;
    kz_counter_inc(b->cb, KZS_BUS_C_NATS_ERRORS);
}

/* The directory's options (fleet.h) and the per-tick ones. */
static natsOptions *kzs_bus_options(kzs_bus *b, const kzs_bus_config *cfg, char *why,
                                    size_t why_len)
{
    natsOptions *o = kzs_fleet_options(cfg->nats, cfg->credentials, 1, why, why_len);
    if (o == NULL)
        return NULL;
    natsStatus s = natsOptions_SetSendAsap(o, true);
    if (s == NATS_OK)
        s = natsOptions_SetWriteDeadline(o, KZS_BUS_WRITE_DEADLINE_MS);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(o, KZS_BUS_RECONNECT_BUF);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(o, kzs_bus_on_disconnected, b);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(o, kzs_bus_on_reconnected, b);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(o, kzs_bus_on_error, b);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(o, kzs_bus_on_closed, b);
    if (s != NATS_OK) {
        kzs_fleet_why(why, why_len, "bus options", s);
        natsOptions_Destroy(o);
        return NULL;
    }
    return o;
}

static natsStatus kzs_bus_subscribe(kzs_bus *b, unsigned subject, uint32_t edge)
{
    char name[KZS_BUS_SUBJECT_MAX];
    if (subject == KZ_BUS_SUBJECT_UP)
        snprintf(name, sizeof name, "kz.%s.edge.*.up", b->world);
    else
        kzs_bus_subject(b, subject, edge, name);
    natsSubscription *sub = NULL;
    natsStatus s = natsConnection_SubscribeSync(&sub, b->nc, name);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(sub, KZS_BUS_PENDING_MSGS, KZS_BUS_PENDING_BYTES);
    if (s != NATS_OK) {
        natsSubscription_Destroy(sub);
        return s;
    }
    b->sub[b->n_subs] = sub;
    b->sub_subject[b->n_subs++] = subject;
    return NATS_OK;
}

kzs_bus *kzs_bus_create(const kzs_bus_config *cfg, char *why, size_t why_len)
{
    kzs_bus *b = calloc(1, sizeof *b);
    if (b == NULL || kz_counters_init(&b->counters, KZS_BUS_C_COUNT, 2, kzs_bus_counter_names,
                                      NULL) != KZ_OK) {
        free(b);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    b->c = kz_counters_block(&b->counters, 0);
    b->cb = kz_counters_block(&b->counters, 1);
    b->role = cfg->role;
    b->edge = cfg->edge;
    b->log = cfg->log;
    snprintf(b->world, sizeof b->world, "%s", cfg->world);
    /* libnats' threads start with every signal blocked: signals reach the
     * program's own threads only (as the directory's do). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    natsOptions *o = kzs_bus_options(b, cfg, why, why_len);
    natsStatus s = o ? natsConnection_Connect(&b->nc, o) : NATS_ERR;
    natsOptions_Destroy(o);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (o == NULL) {
        kzs_bus_destroy(b, 0);
        return NULL;
    }
    if (s != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what, "cannot reach NATS at %s", cfg->nats);
        kzs_fleet_why(why, why_len, what, s);
    } else if (cfg->role == KZ__ROLE_AUTHORITY) {
        s = kzs_bus_subscribe(b, KZ_BUS_SUBJECT_UP, 0);
    } else {
        s = kzs_bus_subscribe(b, KZ_BUS_SUBJECT_TICK, 0);
        if (s == NATS_OK)
            s = kzs_bus_subscribe(b, KZ_BUS_SUBJECT_DOWN, cfg->edge);
    }
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(b->nc, KZS_FLEET_TIMEOUT_MS); /* subscribed for sure */
    if (s != NATS_OK) {
        if (b->nc != NULL)
            kzs_fleet_why(why, why_len, "cannot subscribe to the world's subjects", s);
        kzs_bus_destroy(b, 0);
        return NULL;
    }
    return b;
}

void kzs_bus_destroy(kzs_bus *b, int last)
{
    if (b == NULL)
        return;
    for (uint32_t i = 0; i < b->n_subs; i++)
        natsSubscription_Destroy(b->sub[i]);
    int quiet = 1;
    if (b->nc != NULL) {
        /* libnats calls the connection's callbacks from its own thread,
         * after the close: the bus is freed only once the last has run. */
        atomic_store(&b->closing, 1);
        natsConnection_Close(b->nc);
        const struct timespec pause = {0, 10000000};
        for (int i = 0; i < 200 && !atomic_load(&b->closed); i++)
            nanosleep(&pause, NULL);
        quiet = atomic_load(&b->closed);
        natsConnection_Destroy(b->nc);
    }
    if (last)
        nats_CloseAndWait(KZS_FLEET_TIMEOUT_MS);
    if (!quiet)
        return; /* a callback may still come: the bus stays (the process is stopping) */
    if (b->counters.cells)
        kz_counters_fini(&b->counters);
    free(b);
}

int kzs_bus_flush(kzs_bus *b, int timeout_ms)
{
    return natsConnection_FlushTimeout(b->nc, timeout_ms) == NATS_OK ? 0 : -1;
}

int kzs_bus_connected(kzs_bus *b)
{
    return natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED;
}

const kz_counters *kzs_bus_counters(const kzs_bus *b) { return &b->counters; }

/* ---- pumps --------------------------------------------------------------- */

/* libnats dropped messages of subscription i (it held too many). */
static void kzs_bus_dropped(kzs_bus *b, uint32_t i)
{
    int64_t dropped = 0;
    if (natsSubscription_GetDropped(b->sub[i], &dropped) == NATS_OK &&
        dropped > b->sub_dropped[i]) {
        kz_counter_add(b->c, KZS_BUS_C_NATS_DROPPED, (uint64_t)(dropped - b->sub_dropped[i]));
        b->sub_dropped[i] = dropped;
    }
}

/* One message from subscription i to the library. */
static void kzs_bus_deliver(kzs_bus *b, kz_server *s, uint32_t i, natsMsg *m)
{
    unsigned subject = b->sub_subject[i];
    uint32_t edge = b->edge;
    if (subject == KZ_BUS_SUBJECT_UP) {
        edge = kzs_bus_subject_edge(b->world, natsMsg_GetSubject(m));
        if (edge == 0) {
            kz_counter_inc(b->c, KZS_BUS_C_DROP_SUBJECT);
            return;
        }
    }
    int len = natsMsg_GetDataLength(m);
    /* Checked and counted by the library whatever it is. */
    (void)kz__fleet_receive(s, subject, subject == KZ_BUS_SUBJECT_TICK ? 0 : edge,
                            (const uint8_t *)natsMsg_GetData(m), len > 0 ? (size_t)len : 0);
}

uint32_t kzs_bus_pump_in(kzs_bus *b, kz_server *s)
{
    unsigned reconnects = atomic_load(&b->reconnects);
    if (reconnects != b->reconnects_seen) {
        b->reconnects_seen = reconnects;
        if (b->role == KZ__ROLE_EDGE)
            kz__fleet_hello(s, 3);  /* what was sent meanwhile is lost: a new image */
    }
    uint32_t taken = 0;
    for (uint32_t i = 0; i < b->n_subs; i++) {
        for (uint32_t k = 0; k < KZS_BUS_PUMP_MAX; k++) {
            natsMsg *m = NULL;
            natsStatus st = natsSubscription_NextMsg(&m, b->sub[i], 0);
            if (st == NATS_TIMEOUT)
                break;
            if (st == NATS_SLOW_CONSUMER) {  /* said once per episode; messages follow */
                kzs_bus_dropped(b, i);
                continue;
            }
            if (st != NATS_OK) {
                kz_counter_inc(b->c, KZS_BUS_C_RECEIVE_FAILED);
                kzs_bus_report(b, &b->receive_log, "bus_receive_failed",
                               natsSubscription_GetSubject(b->sub[i]), st);
                break;
            }
            kzs_bus_deliver(b, s, i, m);
            natsMsg_Destroy(m);
            taken++;
        }
    }
    return taken;
}

int kzs_bus_wait(kzs_bus *b, kz_server *s, int timeout_ms)
{
    natsMsg *m = NULL;
    natsStatus st = b->n_subs ? natsSubscription_NextMsg(&m, b->sub[0], timeout_ms) : NATS_ERR;
    if (st == NATS_OK) {
        kzs_bus_deliver(b, s, 0, m);
        natsMsg_Destroy(m);
        return 1;
    }
    if (st != NATS_TIMEOUT && st != NATS_SLOW_CONSUMER) {
        struct timespec pause = {0, (long)timeout_ms * 1000000L};
        nanosleep(&pause, NULL);
    }
    return 0;
}

uint32_t kzs_bus_pump_out(kzs_bus *b, kz_server *s)
{
    const kz__bus_msg *msgs;
    uint32_t n = kz__fleet_out(s, &msgs), sent = 0;
    if (n == 0)
        return 0;
    if (b->role == KZ__ROLE_AUTHORITY && !kzs_bus_connected(b)) {
        kz_counter_add(b->c, KZS_BUS_C_UNSENT, n);
        kz__fleet_out_clear(s);
        return 0;
    }
    char subject[KZS_BUS_SUBJECT_MAX];
    for (uint32_t i = 0; i < n; i++) {
        kzs_bus_subject(b, msgs[i].subject, msgs[i].edge, subject);
        natsStatus st = natsConnection_Publish(b->nc, subject, msgs[i].data, (int)msgs[i].len);
        if (st == NATS_OK) {
            sent++;
            continue;
        }
        kz_counter_inc(b->c, KZS_BUS_C_PUBLISH_FAILED);
        kzs_bus_report(b, &b->publish_log, "bus_publish_failed", subject, st);
    }
    kz__fleet_out_clear(s);
    return sent;
}

/* ---- stats --------------------------------------------------------------- */

static size_t kzs_bus_put(char *out, size_t cap, size_t len, const char *name, uint64_t v)
{
    if (len >= cap)
        return len;
    int w = snprintf(out + len, cap - len, " %s=%llu", name, (unsigned long long)v);
    return w < 0 ? cap : len + (size_t)w;
}

char *kzs_bus_stats(kzs_bus *b, const kz_server *s, char *out, size_t cap)
{
    uint32_t held = 0, sessions = kz__fleet_sessions(s, &held);
    int w = snprintf(out, cap, "bus_stats role=%s edge=%u sessions=%u held=%u synced=%d "
                     "connected=%d", b->role == KZ__ROLE_AUTHORITY ? "authority" : "edge",
                     b->edge, sessions, held, b->role == KZ__ROLE_EDGE ? kz__fleet_synced(s) : 1,
                     kzs_bus_connected(b));
    size_t len = w < 0 ? cap : (size_t)w;
    const kz_counters *lib = kz__fleet_counters(s);
    for (uint32_t i = 0; lib && i < lib->n_counters; i++)
        len = kzs_bus_put(out, cap, len, kz_counters_name(lib, i), kz_counters_get(lib, i));
    for (uint32_t i = 0; i < KZS_BUS_C_COUNT; i++)
        len = kzs_bus_put(out, cap, len, kzs_bus_counter_names[i],
                          kz_counters_get(&b->counters, i));
    return out;
}
