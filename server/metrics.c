/*
 * The admin endpoint's figures (metrics.h): a publisher-side copy filled
 * by the simulation thread, a shared copy behind a mutex, and a renderer
 * that writes the Prometheus text exposition format (0.0.4) from a private
 * copy of the shared one.
 *
 * Counters are found by name (kz_counters_name), never by enum value, so
 * the gate's internal header is not needed and counters added to any
 * layer appear without a change here: a name beginning with "drop_" is a
 * sample of kizuna_drops_total, one beginning with "violation_" (world
 * counters) a sample of kizuna_violations_total, and any other becomes its
 * own family kizuna_<layer>_<name>_total. A few names have families of
 * their own (ticks, received bytes, packets); see kzs_special.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Counters kept per layer, and bytes of each counter's name. Every current
 * set is far below both; a longer name is cut, a larger set shows its
 * first KZS_MAX_COUNTERS counters. */
#define KZS_MAX_COUNTERS 128u
#define KZS_NAME_MAX 48u

_Static_assert(KZ_WORLD_C_COUNT <= KZS_MAX_COUNTERS, "raise KZS_MAX_COUNTERS");
_Static_assert(KZ_NET_C_COUNT <= KZS_MAX_COUNTERS, "raise KZS_MAX_COUNTERS");

enum { KZS_GATE, KZS_TRANSPORT, KZS_WORLD, KZS_BUS, KZS_LAYERS };
static const char *const kzs_layer_label[KZS_LAYERS] = {"gate", "transport", "world", "bus"};

/*
 * Upper bounds of the tick-duration buckets, in nanoseconds (what the
 * server records) and as the `le` label. Between 0.5 ms and 0.25 s, with
 * the tick periods of the common rates among them (128, 100, 64, 60, 50,
 * 30 and 10 Hz; 60 and 30 Hz rounded up to the nanosecond), so that
 * "ticks that overran the period" is one bucket subtracted from the count.
 */
static const struct {
    uint64_t ns;
    const char *le;
} kzs_tick_bounds[] = {
    {500000, "0.0005"},       {1000000, "0.001"},         {2000000, "0.002"},
    {4000000, "0.004"},       {7812500, "0.0078125"},     {10000000, "0.01"},
    {15625000, "0.015625"},   {16666667, "0.016666667"},  {20000000, "0.02"},
    {33333334, "0.033333334"}, {50000000, "0.05"},        {100000000, "0.1"},
    {250000000, "0.25"},
};
#define KZS_TICK_BOUNDS (sizeof kzs_tick_bounds / sizeof kzs_tick_bounds[0])

/* One layer's counters as last read. */
typedef struct kzs_layer {
    uint32_t n;
    uint64_t value[KZS_MAX_COUNTERS];
    char name[KZS_MAX_COUNTERS][KZS_NAME_MAX];
} kzs_layer;

/* Everything a render shows. Plain data: copied by assignment. */
typedef struct kzs_figures {
    int published;             /* 0 until the first publish */
    uint64_t published_ns;     /* liveness clock at the last publish */
    uint32_t clients, sessions;
    kzs_layer layer[KZS_LAYERS];
    /* Tick durations since the first publish: per bucket (not cumulative;
     * the last cell is above the largest bound), samples and sum. */
    uint64_t tick_bucket[KZS_TICK_BOUNDS + 1];
    uint64_t tick_count, tick_sum_ns;
    int has_audit;
    kz_audit_stats audit;
} kzs_figures;

struct kzs_metrics {
    pthread_mutex_t lock;
    /* Under the lock. */
    kzs_figures shared;
    int readiness;
    int audit_refusing;
    kzs_clock_fn clock;
    void *clock_ctx;
    uint64_t stale_ns;
    /* Publishing thread only. */
    kzs_figures staging;
    const kz_counters *bus[2]; /* a fleet role's bus counters (kzs_metrics_set_bus) */
    kz_hist interval;
    /* Fixed at create. */
    double start_unix;
};

static uint64_t kzs_monotonic_ns(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

kzs_metrics *kzs_metrics_create(void)
{
    kzs_metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    /* The server's tick histogram precision (server.h): the defaults with
     * highest = 10 s. With the same layout kz_hist_merge adds cell by cell,
     * so the interval histogram holds exactly what the server recorded. */
    kz_hist_config hc;
    kz_hist_config_default(&hc);
    hc.highest = 10ull * 1000 * 1000 * 1000;
    if (kz_hist_init(&m->interval, &hc, NULL) != KZ_OK) {
        free(m);
        return NULL;
    }
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        kz_hist_fini(&m->interval);
        free(m);
        return NULL;
    }
    m->clock = kzs_monotonic_ns;
    m->stale_ns = KZS_METRICS_STALE_NS;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m->start_unix = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    return m;
}

void kzs_metrics_destroy(kzs_metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->lock);
    kz_hist_fini(&m->interval);
    free(m);
}

/* ---- publish -------------------------------------------------------------- */

/* Appends the counters of `c` (none when NULL) to the layer, each name
 * without `strip` when it starts with it. */
static void kzs_append_layer(kzs_layer *dst, const kz_counters *c, const char *strip)
{
    for (uint32_t i = 0; c != NULL && i < c->n_counters && dst->n < KZS_MAX_COUNTERS; i++) {
        const char *name = kz_counters_name(c, i);
        uint32_t at = dst->n++;
        dst->value[at] = kz_counters_get(c, i);
        if (name != NULL && strip != NULL && strncmp(name, strip, strlen(strip)) == 0)
            name += strlen(strip);
        if (name != NULL)
            snprintf(dst->name[at], KZS_NAME_MAX, "%s", name);
        else
            snprintf(dst->name[at], KZS_NAME_MAX, "counter_%u", i);
    }
}

static void kzs_copy_layer(kzs_layer *dst, const kz_counters *c)
{
    dst->n = 0;
    kzs_append_layer(dst, c, NULL);
}

void kzs_metrics_set_bus(kzs_metrics *m, const kz_counters *library, const kz_counters *program)
{
    m->bus[0] = library;
    m->bus[1] = program;
}

/*
 * Adds an interval histogram to the cumulative tick buckets.
 *
 * The histogram stores each sample in a cell covering [lo, hi] (a range
 * under 1/1000 of its values wide, at the server's 3 digits). Walking the
 * cells from the min's to the max's, a cell's samples go to the first
 * bucket whose bound is >= hi: each of them is <= hi <= that bound, so
 * every cumulative `le` count only contains samples that truly are <= le
 * (never overstated). Only a cell that straddles a bound puts samples
 * that are <= the bound into the next bucket up; they are within 0.1 % of
 * the bound. Samples above the histogram's range (over 10 s, kept in
 * out_of_range) go to +Inf, so _count equals the ticks recorded.
 *
 * The sum takes each cell's samples at the cell's middle (clamped to the
 * exact min and max), so _sum is within 0.05 % of the true one; samples
 * out of range add the range's top, a lower bound.
 */
static void kzs_ticks_add(kzs_figures *f, const kz_hist *h)
{
    uint64_t total = kz_hist_total(h), oor = kz_hist_out_of_range(h);
    if (total > 0) {
        uint64_t min = kz_hist_min(h), max = kz_hist_max(h);
        uint32_t b = 0;
        for (uint64_t v = kz_hist_lowest_equivalent(h, min); v <= max;) {
            uint64_t hi = kz_hist_highest_equivalent(h, v);
            uint64_t n = kz_hist_count_at(h, v);
            if (n > 0) {
                while (b < KZS_TICK_BOUNDS && kzs_tick_bounds[b].ns < hi)
                    b++;
                f->tick_bucket[b] += n;
                uint64_t lo = v < min ? min : v, top = hi > max ? max : hi;
                f->tick_sum_ns += n * (lo + (top - lo) / 2);
            }
            v = hi + 1;
        }
    }
    f->tick_bucket[KZS_TICK_BOUNDS] += oor;
    f->tick_sum_ns += oor * h->cfg.highest;
    f->tick_count += total + oor;
}

void kzs_metrics_publish(kzs_metrics *m, kz_server *srv, kz_audit *audit)
{
    kzs_figures *f = &m->staging;
    kz_netserver *net = kz_server_net(srv); /* NULL: an authority, no transport */
    kzs_copy_layer(&f->layer[KZS_GATE], net ? kz_netserver_gate_counters(net) : NULL);
    kzs_copy_layer(&f->layer[KZS_TRANSPORT], net ? kz_netserver_counters(net) : NULL);
    kzs_copy_layer(&f->layer[KZS_WORLD], kz_server_counters(srv));
    /* The bus counters' names all start with "bus_": the layer says it. */
    f->layer[KZS_BUS].n = 0;
    kzs_append_layer(&f->layer[KZS_BUS], m->bus[0], "bus_");
    kzs_append_layer(&f->layer[KZS_BUS], m->bus[1], "bus_");
    f->clients = kz_server_clients(srv);
    f->sessions = net ? kz_netserver_sessions(net) : 0;
    kz_hist_reset(&m->interval);
    /* A KZ_ERANGE here means samples did not fit; kz_hist_merge then keeps
     * them in out_of_range, which kzs_ticks_add counts under +Inf. */
    (void)kz_server_tick_hist_take(srv, &m->interval);
    kzs_ticks_add(f, &m->interval);
    f->has_audit = audit != NULL;
    if (audit != NULL)
        kz_audit_stats_get(audit, &f->audit);
    pthread_mutex_lock(&m->lock);
    f->published = 1;
    f->published_ns = m->clock(m->clock_ctx);
    m->shared = *f;
    pthread_mutex_unlock(&m->lock);
}

/* ---- state ---------------------------------------------------------------- */

void kzs_metrics_set_ready(kzs_metrics *m, int ready)
{
    pthread_mutex_lock(&m->lock);
    if (ready)
        m->readiness = KZS_READY;
    else if (m->readiness != KZS_READY_NOT_YET)
        m->readiness = KZS_READY_DRAINING;
    pthread_mutex_unlock(&m->lock);
}

void kzs_metrics_set_audit_refusing(kzs_metrics *m, int refusing)
{
    pthread_mutex_lock(&m->lock);
    m->audit_refusing = refusing != 0;
    pthread_mutex_unlock(&m->lock);
}

int kzs_metrics_readiness(kzs_metrics *m)
{
    pthread_mutex_lock(&m->lock);
    int r = m->readiness;
    if (r == KZS_READY && m->audit_refusing)
        r = KZS_READY_AUDIT;
    pthread_mutex_unlock(&m->lock);
    return r;
}

int kzs_metrics_health(kzs_metrics *m, char *why, size_t n)
{
    pthread_mutex_lock(&m->lock);
    int published = m->shared.published;
    uint64_t at = m->shared.published_ns, now = m->clock(m->clock_ctx), stale = m->stale_ns;
    pthread_mutex_unlock(&m->lock);
    if (!published) {
        snprintf(why, n, "starting: the simulation thread has not published any figures yet");
        return 0;
    }
    /* A clock that went backwards counts as fresh: the publish just ran. */
    if (now <= at || now - at <= stale)
        return 1;
    snprintf(why, n, "stalled: the simulation thread last published %.1f s ago (limit %.1f s)",
             (double)(now - at) / 1e9, (double)stale / 1e9);
    return 0;
}

void kzs_metrics_set_clock(kzs_metrics *m, kzs_clock_fn fn, void *ctx)
{
    pthread_mutex_lock(&m->lock);
    m->clock = fn != NULL ? fn : kzs_monotonic_ns;
    m->clock_ctx = fn != NULL ? ctx : NULL;
    pthread_mutex_unlock(&m->lock);
}

void kzs_metrics_set_stale_after(kzs_metrics *m, uint64_t ns)
{
    pthread_mutex_lock(&m->lock);
    m->stale_ns = ns != 0 ? ns : KZS_METRICS_STALE_NS;
    pthread_mutex_unlock(&m->lock);
}

/* ---- render: output buffer ------------------------------------------------ */

typedef struct kzs_out {
    char *p;
    size_t len, cap;
    int oom;
} kzs_out;

static void kzs_put(kzs_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void kzs_put(kzs_out *o, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !o->oom; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 > o->len + (size_t)n + 1 ? o->cap * 2 : o->len + (size_t)n + 1;
        char *p = realloc(o->p, cap);
        if (p == NULL) {
            o->oom = 1;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
}

/* A label value with the escapes the format requires (\\, \" and \n). */
static void kzs_put_label(kzs_out *o, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"')
            kzs_put(o, "\\%c", *s);
        else if (*s == '\n')
            kzs_put(o, "\\n");
        else
            kzs_put(o, "%c", *s);
    }
}

static void kzs_family(kzs_out *o, const char *name, const char *type, const char *help)
{
    kzs_put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void kzs_sample(kzs_out *o, const char *name, uint64_t v)
{
    kzs_put(o, "%s %llu\n", name, (unsigned long long)v);
}

/* A family of one unlabelled sample. */
static void kzs_scalar(kzs_out *o, const char *name, const char *type, const char *help,
                       uint64_t v)
{
    kzs_family(o, name, type, help);
    kzs_sample(o, name, v);
}

/* A metric name from a counter name: characters outside [a-zA-Z0-9_]
 * become '_' (today's names have none). */
static void kzs_metric_name(char *out, size_t n, const char *prefix, const char *name,
                            const char *suffix)
{
    snprintf(out, n, "%s%s%s", prefix, name, suffix);
    for (char *c = out + strlen(prefix); *c != '\0'; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            *c = '_';
}

/* ---- render: families ----------------------------------------------------- */

/* Counters shown under a family of their own instead of the generic one. */
static const struct {
    int layer;
    const char *name;
} kzs_special[] = {
    {KZS_WORLD, "ticks"},       {KZS_WORLD, "ticks_skipped"},
    {KZS_GATE, "rx_datagrams"}, {KZS_GATE, "rx_bytes"},
    {KZS_GATE, "tx_bytes"},     {KZS_TRANSPORT, "rx_packets"},
    {KZS_TRANSPORT, "tx_packets"}, {KZS_TRANSPORT, "rx_bytes"},
    {KZS_TRANSPORT, "tx_bytes"},
};

static int kzs_is_special(int layer, const char *name)
{
    for (size_t i = 0; i < sizeof kzs_special / sizeof kzs_special[0]; i++)
        if (kzs_special[i].layer == layer && strcmp(kzs_special[i].name, name) == 0)
            return 1;
    return 0;
}

static int kzs_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Value of counter `name` of a layer; 0 when the layer has no such counter
 * (or nothing was published yet). */
static uint64_t kzs_value(const kzs_figures *f, int layer, const char *name)
{
    const kzs_layer *l = &f->layer[layer];
    for (uint32_t i = 0; i < l->n; i++)
        if (strcmp(l->name[i], name) == 0)
            return l->value[i];
    return 0;
}

/* Help text of the generic families, by layer and counter name. */
static const struct {
    int layer;
    const char *name, *help;
} kzs_help[] = {
    {KZS_GATE, "passed_to_enet", "Datagrams from admitted addresses handed to ENet."},
    {KZS_GATE, "cookie_invalid_rechallenged",
     "Handshake requests with an expired or wrong cookie, answered with a new challenge."},
    {KZS_GATE, "challenges_sent", "Handshake challenges (address cookies) sent."},
    {KZS_GATE, "accepts_sent", "Handshake accepts sent (a session slot granted or confirmed)."},
    {KZS_GATE, "denies_sent", "Handshake denials sent."},
    {KZS_GATE, "token_verifications", "Connect tokens checked (signature and sealed keys)."},
    {KZS_GATE, "pending_expired", "Granted slots freed because no ENet connect followed in time."},
    {KZS_GATE, "pending_cancelled_draining",
     "Granted slots freed when the server stopped accepting (drain or audit outage), before any ENet connect."},
    {KZS_TRANSPORT, "sessions_opened", "Sessions opened (ENet connect completed for a slot)."},
    {KZS_TRANSPORT, "sessions_closed", "Sessions ended, for any reason."},
    {KZS_TRANSPORT, "enet_connect_refused", "ENet connects refused by the transport."},
    {KZS_TRANSPORT, "nonce_exhausted", "Sessions ended because their send nonces ran out."},
    {KZS_WORLD, "input_messages", "Input messages received from clients."},
    {KZS_WORLD, "commands_applied", "Client commands applied in a tick."},
    {KZS_WORLD, "commands_repeated", "Ticks where a client's late input was replaced by its last command."},
    {KZS_WORLD, "commands_covered_by_repeat", "Late commands not applied because the tick they were for already repeated the one before."},
    {KZS_WORLD, "commands_caught_up", "Commands applied as a second in one tick to shorten a client's input queue that stayed deep."},
    {KZS_WORLD, "commands_dropped_overflow", "Queued client commands dropped because the queue was full."},
    {KZS_WORLD, "corrections", "Client commands changed by validation (the client is corrected)."},
    {KZS_WORLD, "snapshots_sent", "Snapshots sent to clients."},
    {KZS_WORLD, "snapshot_bytes", "Bytes of snapshot payload sent to clients (before sealing)."},
    {KZS_WORLD, "snapshots_full_state", "Snapshots sent without a baseline (full state)."},
    {KZS_WORLD, "view_entity_ticks", "Entities in clients' views, summed over every snapshot."},
    {KZS_WORLD, "entity_updates_sent", "Entity updates written into snapshots."},
    {KZS_WORLD, "updates_deferred_budget", "Entity updates deferred by the packet or byte budget."},
    {KZS_WORLD, "entity_enters", "Entities entering a client's view."},
    {KZS_WORLD, "entity_leaves", "Entities leaving a client's view."},
    {KZS_WORLD, "chat_relayed", "Chat messages relayed."},
    {KZS_WORLD, "voice_frames_relayed", "Voice frames relayed."},
    {KZS_WORLD, "grabs", "Objects grabbed."},
    {KZS_WORLD, "zone_entries_refused", "Moves refused at the boundary of a zone the avatar may not enter."},
    {KZS_WORLD, "personal_space_refusals", "Moves refused at another avatar's personal space."},
    {KZS_WORLD, "teleports", "Teleports done through portals."},
    {KZS_WORLD, "teleports_refused", "Teleport requests refused."},
    {KZS_WORLD, "blocks", "Avatars blocked by clients."},
    {KZS_WORLD, "admin_actions", "Role-gated actions done."},
    {KZS_WORLD, "admin_actions_denied", "Role-gated actions refused for lack of the role."},
    {KZS_WORLD, "kicks", "Clients kicked."},
    {KZS_BUS, "msgs_in", "Bus messages received from NATS (before their checks)."},
    {KZS_BUS, "bytes_in", "Bytes of the bus messages received."},
    {KZS_BUS, "msgs_out", "Bus messages written for NATS."},
    {KZS_BUS, "bytes_out", "Bytes of the bus messages written."},
    {KZS_BUS, "gap", "Bus messages missing in a sender's sequence."},
    {KZS_BUS, "out_dropped", "Bus messages or records not written: a step's room was full."},
    {KZS_BUS, "syncs", "World images sent to edges (authority)."},
    {KZS_BUS, "hellos", "Edges that announced themselves (authority)."},
    {KZS_BUS, "edges_lost", "Edges that went silent; their sessions were held (authority)."},
    {KZS_BUS, "sessions_held", "Sessions whose edge went away, their avatars kept (authority)."},
    {KZS_BUS, "sessions_reattached", "Held sessions taken up again by a join (authority)."},
    {KZS_BUS, "held_ended", "Held sessions ended when nobody came back for them (authority)."},
    {KZS_BUS, "joins_in_use", "Joins refused: the client id was in a live session (authority)."},
    {KZS_BUS, "limits_differ", "World images refused: the authority's settings differ (edge)."},
    {KZS_BUS, "authority_lost", "Times the authority's world updates stopped (edge)."},
    {KZS_BUS, "ticks_applied", "Complete world updates applied to the replica (edge)."},
    {KZS_BUS, "publish_failed", "Publishes NATS refused (reconnect buffer full, payload too large)."},
    {KZS_BUS, "unsent_disconnected", "Bus messages not published while NATS was away (authority)."},
    {KZS_BUS, "receive_failed", "Failed reads of a bus subscription."},
    {KZS_BUS, "nats_dropped", "Bus messages NATS dropped: a subscription held too many."},
    {KZS_BUS, "nats_disconnects", "Times the bus connection to NATS was lost."},
    {KZS_BUS, "nats_reconnects", "Times the bus connection to NATS came back."},
    {KZS_BUS, "nats_errors", "Asynchronous errors NATS reported on the bus connection."},
};

static const char *kzs_help_of(int layer, const char *name)
{
    for (size_t i = 0; i < sizeof kzs_help / sizeof kzs_help[0]; i++)
        if (kzs_help[i].layer == layer && strcmp(kzs_help[i].name, name) == 0)
            return kzs_help[i].help;
    return NULL;
}

static void kzs_render_fixed(kzs_out *o, const kzs_metrics *m, const kzs_figures *f)
{
    kzs_family(o, "kizuna_build_info", "gauge", "Kizuna library version this server runs (value 1).");
    kzs_put(o, "kizuna_build_info{version=\"");
    kzs_put_label(o, kz_version());
    kzs_put(o, "\"} 1\n");
    kzs_family(o, "kizuna_process_start_time_seconds", "gauge",
               "Start time of the server process, in seconds since the Unix epoch.");
    kzs_put(o, "kizuna_process_start_time_seconds %.3f\n", m->start_unix);
    kzs_scalar(o, "kizuna_clients_connected", "gauge",
               "Connected clients with an avatar in the world.",
               f->clients);
    kzs_scalar(o, "kizuna_transport_sessions", "gauge",
               "Transport sessions pending (handshake done, ENet connecting) or connected.",
               f->sessions);
    kzs_scalar(o, "kizuna_ticks_total", "counter",
               "Simulation ticks run.",
               kzs_value(f, KZS_WORLD, "ticks"));
    kzs_scalar(o, "kizuna_ticks_skipped_total", "counter",
               "Ticks skipped because the simulation thread fell behind.",
               kzs_value(f, KZS_WORLD, "ticks_skipped"));
}

static void kzs_render_ticks(kzs_out *o, const kzs_figures *f)
{
    const char *name = "kizuna_tick_duration_seconds";
    kzs_family(o, name, "histogram", "Simulation thread time per tick.");
    uint64_t cum = 0;
    for (size_t b = 0; b < KZS_TICK_BOUNDS; b++) {
        cum += f->tick_bucket[b];
        kzs_put(o, "%s_bucket{le=\"%s\"} %llu\n", name, kzs_tick_bounds[b].le,
                (unsigned long long)cum);
    }
    kzs_put(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)f->tick_count);
    kzs_put(o, "%s_sum %llu.%09llu\n", name, (unsigned long long)(f->tick_sum_ns / 1000000000u),
            (unsigned long long)(f->tick_sum_ns % 1000000000u));
    kzs_put(o, "%s_count %llu\n", name, (unsigned long long)f->tick_count);
}

static void kzs_render_traffic(kzs_out *o, const kzs_figures *f)
{
    kzs_scalar(o, "kizuna_udp_received_datagrams_total", "counter",
               "UDP datagrams received on the server's ports, before any check.",
               kzs_value(f, KZS_GATE, "rx_datagrams"));
    kzs_scalar(o, "kizuna_udp_received_bytes_total", "counter",
               "UDP payload bytes received on the server's ports, before any check "
               "(ENet headers and seals included, IP and UDP headers not).",
               kzs_value(f, KZS_GATE, "rx_bytes"));
    kzs_scalar(o, "kizuna_gate_reply_bytes_total", "counter",
               "UDP payload bytes of handshake replies (challenge, accept, deny) sent by the gate.",
               kzs_value(f, KZS_GATE, "tx_bytes"));
    kzs_family(o, "kizuna_transport_packets_total", "counter",
               "ENet packets (one sealed message each) received from or queued to sessions.");
    kzs_put(o, "kizuna_transport_packets_total{direction=\"in\"} %llu\n",
            (unsigned long long)kzs_value(f, KZS_TRANSPORT, "rx_packets"));
    kzs_put(o, "kizuna_transport_packets_total{direction=\"out\"} %llu\n",
            (unsigned long long)kzs_value(f, KZS_TRANSPORT, "tx_packets"));
    kzs_family(o, "kizuna_transport_bytes_total", "counter",
               "Bytes of those packets (sealed: message, type, nonce and tag; ENet and UDP "
               "headers not included).");
    kzs_put(o, "kizuna_transport_bytes_total{direction=\"in\"} %llu\n",
            (unsigned long long)kzs_value(f, KZS_TRANSPORT, "rx_bytes"));
    kzs_put(o, "kizuna_transport_bytes_total{direction=\"out\"} %llu\n",
            (unsigned long long)kzs_value(f, KZS_TRANSPORT, "tx_bytes"));
}

/* One family over every layer's counters named `prefix`<rest>, with the
 * rest as label `label` (and the layer as label "layer" when `by_layer`).
 * Nothing at all when no counter has the prefix. */
static void kzs_render_prefixed(kzs_out *o, const kzs_figures *f, const char *family,
                                const char *help, const char *prefix, const char *label,
                                int by_layer, int only_layer)
{
    int any = 0;
    for (int l = 0; l < KZS_LAYERS; l++) {
        if (only_layer >= 0 && l != only_layer)
            continue;
        for (uint32_t i = 0; i < f->layer[l].n; i++) {
            const char *name = f->layer[l].name[i];
            if (!kzs_has_prefix(name, prefix))
                continue;
            if (!any)
                kzs_family(o, family, "counter", help);
            any = 1;
            kzs_put(o, "%s{", family);
            if (by_layer)
                kzs_put(o, "layer=\"%s\",", kzs_layer_label[l]);
            kzs_put(o, "%s=\"", label);
            kzs_put_label(o, name + strlen(prefix));
            kzs_put(o, "\"} %llu\n", (unsigned long long)f->layer[l].value[i]);
        }
    }
}

static void kzs_render_generic(kzs_out *o, const kzs_figures *f)
{
    for (int l = 0; l < KZS_LAYERS; l++) {
        for (uint32_t i = 0; i < f->layer[l].n; i++) {
            const char *name = f->layer[l].name[i];
            if (kzs_is_special(l, name) || kzs_has_prefix(name, "drop_") ||
                (l == KZS_WORLD && kzs_has_prefix(name, "violation_")))
                continue;
            char metric[KZS_NAME_MAX + 32], prefix[24], help[KZS_NAME_MAX + 48];
            snprintf(prefix, sizeof prefix, "kizuna_%s_", kzs_layer_label[l]);
            kzs_metric_name(metric, sizeof metric, prefix, name, "_total");
            const char *h = kzs_help_of(l, name);
            if (h == NULL) {
                snprintf(help, sizeof help, "The %s counter %s.", kzs_layer_label[l], name);
                h = help;
            }
            kzs_family(o, metric, "counter", h);
            kzs_sample(o, metric, f->layer[l].value[i]);
        }
    }
}

static void kzs_render_audit(kzs_out *o, const kzs_figures *f, int refusing)
{
    if (!f->has_audit)
        return;
    const kz_audit_stats *a = &f->audit;
    kzs_scalar(o, "kizuna_audit_records_appended_total", "counter",
               "Audit records accepted for writing since the log was opened.",
               a->appended);
    kzs_scalar(o, "kizuna_audit_records_dropped_total", "counter",
               "Audit records lost (queue full, or unwritten when the log was closed).",
               a->dropped);
    kzs_scalar(o, "kizuna_audit_records_lost_unnoted", "gauge",
               "Lost audit records not yet noted in the log by a lost record (it is written "
               "once the writer can write).",
               a->dropped - a->lost_noted);
    kzs_scalar(o, "kizuna_audit_records_queued", "gauge",
               "Audit records waiting in the writer's queue.", a->queued);
    kzs_scalar(o, "kizuna_audit_records_durable_total", "counter",
               "Appended audit records written and synced to disk.",
               a->durable);
    kzs_scalar(o, "kizuna_audit_lag_records", "gauge",
               "Appended audit records not yet durable.",
               a->lag);
    kzs_scalar(o, "kizuna_audit_checkpoints_total", "counter",
               "Signed audit checkpoints written since the log was opened.",
               a->checkpoints);
    kzs_scalar(o, "kizuna_audit_fsyncs_total", "counter",
               "fdatasync calls of the audit writer.",
               a->fsyncs);
    kzs_scalar(o, "kizuna_audit_write_error", "gauge",
               "1 while the audit writer cannot write (it retries; new records wait in its "
               "queue), else 0.",
               a->error != 0);
    kzs_scalar(o, "kizuna_audit_write_failures_total", "counter",
               "Failed attempts of the audit writer to write, sync or cut its file.",
               a->write_failures);
    kzs_scalar(o, "kizuna_audit_outages_total", "counter",
               "Times the audit writer went from writing to failing.", a->outages);
    kzs_scalar(o, "kizuna_audit_refusing_admissions", "gauge",
               "1 while new clients are refused because the audit log cannot be written "
               "(audit_on_failure = refuse), else 0.",
               (uint64_t)refusing);
}

char *kzs_metrics_render(kzs_metrics *m, size_t *len)
{
    kzs_figures *f = malloc(sizeof *f);
    kzs_out o = {malloc(16384), 0, 16384, 0};
    if (f == NULL || o.p == NULL) {
        free(f);
        free(o.p);
        return NULL;
    }
    pthread_mutex_lock(&m->lock);
    *f = m->shared;
    int audit_refusing = m->audit_refusing;
    pthread_mutex_unlock(&m->lock);
    o.p[0] = '\0';
    kzs_render_fixed(&o, m, f);
    kzs_render_ticks(&o, f);
    kzs_render_traffic(&o, f);
    kzs_render_prefixed(&o, f, "kizuna_drops_total",
                        "Packets, messages and requests dropped, by layer and reason.", "drop_",
                        "reason", 1, -1);
    kzs_render_prefixed(&o, f, "kizuna_violations_total",
                        "Rule violations by clients, by kind.", "violation_", "kind", 0, KZS_WORLD);
    kzs_render_generic(&o, f);
    kzs_render_audit(&o, f, audit_refusing);
    free(f);
    if (o.oom) {
        free(o.p);
        return NULL;
    }
    if (len != NULL)
        *len = o.len;
    return o.p;
}
