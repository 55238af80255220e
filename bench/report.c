/*
 * kizuna-bench report: derives per-client figures from what the runner
 * recorded and writes them as text, JSON ("kizuna-bench/3", documented in
 * docs/BENCH-REPORT.md), CSV and a gnuplot chart; checks thresholds against
 * the JSON document and compares two documents.
 *
 * Every output reads the same kzb_report_summary, so the text, the JSON
 * and the thresholds cannot disagree about a figure. The JSON document is
 * also the only thing thresholds and comparisons look at: a figure that is
 * in the document can gate CI without code here knowing its name.
 */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/assert.h"

/* A JSON file larger than this is not one of ours. */
#define KZB_JSON_MAX_BYTES (16u << 20)

static void KZ_PRINTF(1, 2) report_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kizuna-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- lifecycle ------------------------------------------------------------ */

void kzb_report_hist_config(kz_hist_config *cfg)
{
    KZ_ASSERT(cfg != NULL);
    cfg->lowest = KZB_REPORT_HIST_LOWEST_NS;
    cfg->highest = KZB_REPORT_HIST_HIGHEST_NS;
    cfg->digits = KZB_REPORT_HIST_DIGITS;
}

int kzb_report_init(kzb_report *r, uint32_t max_points, const kz_allocator *alloc)
{
    KZ_ASSERT(r != NULL);
    memset(r, 0, sizeof *r);
    if (alloc != NULL)
        r->alloc = *alloc;
    kz_allocator_resolve(&r->alloc);
    r->server_cpu_seconds = -1.0;
    r->bits_per_avatar_update = -1.0;
    r->bots_cpu_seconds = -1.0;
    r->bots = "full";

    kz_hist_config cfg;
    kzb_report_hist_config(&cfg);
    int rc = kz_hist_init(&r->tick_ns, &cfg, &r->alloc);
    if (rc == 0)
        rc = kz_hist_init(&r->snapshot_age_ns, &cfg, &r->alloc);
    if (rc == 0)
        rc = kz_hist_init(&r->connect_ns, &cfg, &r->alloc);
    if (rc == 0)
        rc = kz_hist_init(&r->input_latency_ns, &cfg, &r->alloc);
    if (rc == 0 && max_points > 0) {
        r->series = kz_alloc(&r->alloc, (size_t)max_points * sizeof(kzb_report_point),
                             _Alignof(kzb_report_point));
        if (r->series == NULL)
            rc = KZ_ENOMEM;
        else
            r->cap_series = max_points;
    }
    if (rc != 0)
        kzb_report_fini(r);
    return rc;
}

void kzb_report_fini(kzb_report *r)
{
    KZ_ASSERT(r != NULL);
    /* A histogram whose init never ran or failed has no counts to free. */
    if (r->tick_ns.counts != NULL)
        kz_hist_fini(&r->tick_ns);
    if (r->snapshot_age_ns.counts != NULL)
        kz_hist_fini(&r->snapshot_age_ns);
    if (r->connect_ns.counts != NULL)
        kz_hist_fini(&r->connect_ns);
    if (r->input_latency_ns.counts != NULL)
        kz_hist_fini(&r->input_latency_ns);
    kz_free(&r->alloc, r->series, (size_t)r->cap_series * sizeof(kzb_report_point));
    r->series = NULL;
    r->n_series = r->cap_series = 0;
}

int kzb_report_add_point(kzb_report *r, const kzb_report_point *p)
{
    KZ_ASSERT(r != NULL && p != NULL);
    if (r->n_series >= r->cap_series)
        return KZ_EFULL;
    r->series[r->n_series++] = *p;
    return 0;
}

static int add_named(kzb_report_count *list, uint32_t *n, const char *name, uint64_t count)
{
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len >= KZB_REPORT_NAME_LEN)
        return KZ_EINVAL;
    for (uint32_t i = 0; i < *n; i++) {
        if (strcmp(list[i].name, name) == 0) {
            list[i].count += count;
            return 0;
        }
    }
    if (*n >= KZB_REPORT_MAX_NAMED)
        return KZ_EFULL;
    memcpy(list[*n].name, name, len + 1);
    list[*n].count = count;
    (*n)++;
    return 0;
}

int kzb_report_add_violation(kzb_report *r, const char *name, uint64_t count)
{
    KZ_ASSERT(r != NULL);
    return add_named(r->violations, &r->n_violations, name, count);
}

int kzb_report_add_drop(kzb_report *r, const char *name, uint64_t count)
{
    KZ_ASSERT(r != NULL);
    return add_named(r->drops, &r->n_drops, name, count);
}

int kzb_report_add_hostile(kzb_report *r, const char *name, uint64_t count)
{
    KZ_ASSERT(r != NULL);
    return add_named(r->hostile, &r->n_hostile, name, count);
}

/* ---- derived figures ------------------------------------------------------ */

/* num / den, or NaN when den is not a positive number (NaN included). */
static double ratio(double num, double den)
{
    return den > 0.0 && isfinite(den) ? num / den : NAN;
}

static void summarize_hist(const kz_hist *h, kzb_report_pcts *p)
{
    p->samples = kz_hist_total(h);
    p->out_of_range = kz_hist_out_of_range(h);
    if (p->samples == 0) {
        p->p50 = p->p90 = p->p99 = p->p999 = p->max = p->mean = NAN;
        return;
    }
    p->p50 = (double)kz_hist_percentile(h, 50.0) / 1e6;
    p->p90 = (double)kz_hist_percentile(h, 90.0) / 1e6;
    p->p99 = (double)kz_hist_percentile(h, 99.0) / 1e6;
    p->p999 = (double)kz_hist_percentile(h, 99.9) / 1e6;
    p->max = (double)kz_hist_max(h) / 1e6;
    p->mean = kz_hist_mean(h) / 1e6;
}

void kzb_report_summarize(const kzb_report *r, kzb_report_summary *s)
{
    KZ_ASSERT(r != NULL && s != NULL);
    summarize_hist(&r->tick_ns, &s->tick_ms);
    summarize_hist(&r->snapshot_age_ns, &s->snapshot_age_ms);
    summarize_hist(&r->connect_ns, &s->connect_ms);
    summarize_hist(&r->input_latency_ns, &s->input_latency_ms);

    /* The mean number of connected clients weighs every tick alike. The
     * ticks actually run are the better divisor: an overloaded server runs
     * fewer than tick_hz * window, and the nominal count would then make
     * every per-client rate look higher than it was. */
    double window = r->measure_seconds;
    double ticks = r->measured_ticks > 0     ? (double)r->measured_ticks
                   : s->tick_ms.samples > 0 ? (double)s->tick_ms.samples
                                            : (double)r->tick_hz * window;
    double clients = r->client_ticks > 0 ? ratio((double)r->client_ticks, ticks) : NAN;
    if (!(clients > 0.0))
        clients = r->connected_end > 0 ? (double)r->connected_end : NAN;
    s->clients_mean = clients;

    double client_seconds = window > 0.0 ? window * clients : NAN;
    s->down_bytes_per_client_s = ratio((double)r->bytes_down, client_seconds);
    s->up_bytes_per_client_s = ratio((double)r->bytes_up, client_seconds);
    s->down_kbps_per_client = s->down_bytes_per_client_s * 8.0 / 1000.0;
    s->up_kbps_per_client = s->up_bytes_per_client_s * 8.0 / 1000.0;
    s->packets_down_per_s = ratio((double)r->packets_down, window);
    s->packets_up_per_s = ratio((double)r->packets_up, window);
    s->packets_down_per_client_s = ratio((double)r->packets_down, client_seconds);
    s->packets_up_per_client_s = ratio((double)r->packets_up, client_seconds);

    s->cpu_us_per_client_tick = r->server_cpu_seconds >= 0.0
        ? ratio(r->server_cpu_seconds * 1e6, (double)r->client_ticks) : NAN;
    s->bits_per_avatar_update = r->bits_per_avatar_update >= 0.0 &&
                                        isfinite(r->bits_per_avatar_update)
        ? r->bits_per_avatar_update : NAN;
    s->rss_bytes_per_client = r->rss_bytes > 0
        ? ratio((double)r->rss_bytes, (double)r->connected_end) : NAN;

    s->bots_cpu_us_per_client_tick = r->bots_cpu_seconds >= 0.0
        ? ratio(r->bots_cpu_seconds * 1e6, (double)r->client_ticks) : NAN;
    s->bots_per_core = ratio(1e6, (double)r->tick_hz * s->bots_cpu_us_per_client_tick);
    s->snapshots_per_client_s = ratio((double)r->snapshots_received, client_seconds);
}

/* ---- text ----------------------------------------------------------------- */

/* `v` with `prec` decimals, or "n/a" when unknown (NaN, infinite, < 0). */
static const char *fmt_num(char *buf, size_t cap, double v, int prec)
{
    if (!isfinite(v) || v < 0.0)
        snprintf(buf, cap, "n/a");
    else
        snprintf(buf, cap, "%.*f", prec, v);
    return buf;
}

void kzb_report_progress_line(FILE *out, const kzb_report_point *p)
{
    KZ_ASSERT(out != NULL && p != NULL);
    char b50[32], b99[32], bcpu[32], bdown[32], bup[32];
    fmt_num(bcpu, sizeof bcpu, p->server_cpu_pct, 1);
    if (strcmp(bcpu, "n/a") != 0)
        strcat(bcpu, "%");
    fprintf(out,
            "[%7.1f s] clients %" PRIu32 "  tick p50 %s p99 %s ms  cpu %s"
            "  kbit/s per client down %s up %s  corrections %" PRIu64 "  drops %" PRIu64 "\n",
            p->t, p->connected, fmt_num(b50, sizeof b50, p->tick_p50_ms, 2),
            fmt_num(b99, sizeof b99, p->tick_p99_ms, 2), bcpu,
            fmt_num(bdown, sizeof bdown, p->down_kbps, 1), fmt_num(bup, sizeof bup, p->up_kbps, 1),
            p->corrections, p->drops);
}

static void print_pcts(FILE *out, const char *label, const kzb_report_pcts *p, const char *note)
{
    char b[6][32];
    if (p->samples == 0) {
        fprintf(out, "%-16s no samples%s\n", label, note);
        return;
    }
    fprintf(out,
            "%-16s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s ms  (%" PRIu64 " samples%s)\n",
            label, fmt_num(b[0], 32, p->p50, 3), fmt_num(b[1], 32, p->p90, 3),
            fmt_num(b[2], 32, p->p99, 3), fmt_num(b[3], 32, p->p999, 3),
            fmt_num(b[4], 32, p->max, 3), p->samples, note);
    if (p->out_of_range > 0)
        fprintf(out, "%-16s %" PRIu64 " samples above %s s were left out\n", "",
                p->out_of_range, fmt_num(b[5], 32, KZB_REPORT_HIST_HIGHEST_NS / 1e9, 0));
}

static void print_named(FILE *out, const char *label, const kzb_report_count *list, uint32_t n)
{
    fprintf(out, "%-16s", label);
    if (n == 0)
        fputs(" none", out);
    for (uint32_t i = 0; i < n; i++)
        fprintf(out, "%s %s %" PRIu64, i > 0 ? "," : "", list[i].name, list[i].count);
    fputc('\n', out);
}

static const char *bots_name(const kzb_report *r)
{
    return r->bots != NULL ? r->bots : "?";
}

static void print_header(FILE *out, const kzb_report *r, const kzb_report_summary *s)
{
    char b[32];
    fprintf(out, "kizuna-bench: scenario %s, %s server, %s bots, %" PRIu32 " Hz, %" PRIu32
            " s asked, impairment %s, seed %" PRIu64 "\n",
            r->scenario != NULL ? r->scenario : "?",
            r->mode == KZB_MODE_EXTERNAL ? "external" : "embedded", bots_name(r), r->tick_hz,
            r->seconds,
            r->impair != NULL && r->impair[0] != '\0' ? r->impair : "none", r->seed);
    fprintf(out, "%-16s %s s measured\n", "window", fmt_num(b, sizeof b, r->measure_seconds, 1));
    fprintf(out, "%-16s %" PRIu32 " target, %" PRIu32 " connected at end, %" PRIu32
            " peak, %s mean\n", "clients", r->clients_target, r->connected_end,
            r->connected_peak, fmt_num(b, sizeof b, s->clients_mean, 1));
}

static void print_rates(FILE *out, const kzb_report *r, const kzb_report_summary *s)
{
    char b[6][32];
    fprintf(out, "%-16s %s µs per client-tick (%s CPU-s over %" PRIu64 " client-ticks)\n",
            "server CPU", fmt_num(b[0], 32, s->cpu_us_per_client_tick, 2),
            fmt_num(b[1], 32, r->server_cpu_seconds, 2), r->client_ticks);
    fprintf(out, "%-16s down %s kbit/s (%s B/s), up %s kbit/s (%s B/s) per client\n",
            "bandwidth", fmt_num(b[0], 32, s->down_kbps_per_client, 2),
            fmt_num(b[1], 32, s->down_bytes_per_client_s, 0),
            fmt_num(b[2], 32, s->up_kbps_per_client, 2),
            fmt_num(b[3], 32, s->up_bytes_per_client_s, 0));
    fprintf(out, "%-16s down %s/s (%s per client), up %s/s (%s per client)\n", "packets",
            fmt_num(b[0], 32, s->packets_down_per_s, 0),
            fmt_num(b[1], 32, s->packets_down_per_client_s, 2),
            fmt_num(b[2], 32, s->packets_up_per_s, 0),
            fmt_num(b[3], 32, s->packets_up_per_client_s, 2));
    fprintf(out, "%-16s %s bits per avatar update\n", "avatar updates",
            fmt_num(b[0], 32, s->bits_per_avatar_update, 1));
}

/* What the bots did and cost: how many of them one core drives. */
static void print_bots(FILE *out, const kzb_report *r, const kzb_report_summary *s)
{
    char b[4][32];
    fprintf(out, "%-16s %s, %" PRIu32 " thread%s: %s µs CPU per client-tick (%s CPU-s), one core"
            " drives about %s at %" PRIu32 " Hz\n", "bots", bots_name(r), r->bot_threads,
            r->bot_threads == 1 ? "" : "s", fmt_num(b[0], 32, s->bots_cpu_us_per_client_tick, 2),
            fmt_num(b[1], 32, r->bots_cpu_seconds, 2), fmt_num(b[2], 32, s->bots_per_core, 0),
            r->tick_hz);
    fprintf(out, "%-16s %" PRIu64 " snapshots taken in (%s per client-second), %" PRIu64
            " acknowledged in input messages\n", "", r->snapshots_received,
            fmt_num(b[3], 32, s->snapshots_per_client_s, 2), r->acks_sent);
}

/* Corrections, kicks, and the server's counts by kind: what the server
 * enforced and refused. The server's own counts are unknown against an
 * external server. */
static void print_enforcement(FILE *out, const kzb_report *r)
{
    char b[32];
    if (r->mode == KZB_MODE_EXTERNAL)
        snprintf(b, sizeof b, "n/a");
    else
        snprintf(b, sizeof b, "%" PRIu64, r->corrections_server);
    fprintf(out, "%-16s %s commands corrected by the server, %" PRIu64
            " corrections told to clients, %" PRIu64 " kicks, %" PRIu64 " timeouts\n",
            "enforcement", b, r->corrections_clients, r->kicks, r->timeouts);
    print_named(out, "violations", r->violations, r->n_violations);
    print_named(out, "drops", r->drops, r->n_drops);
    if (r->n_hostile > 0)
        print_named(out, "hostile bots", r->hostile, r->n_hostile);
}

int kzb_report_print(FILE *out, const kzb_report *r)
{
    KZ_ASSERT(out != NULL && r != NULL);
    kzb_report_summary s;
    kzb_report_summarize(r, &s);
    char b[2][32];

    print_header(out, r, &s);
    print_pcts(out, "server tick", &s.tick_ms, "");
    print_rates(out, r, &s);
    print_bots(out, r, &s);
    print_pcts(out, "snapshot age", &s.snapshot_age_ms, ", corrected for coordinated omission");
    print_pcts(out, "input latency", &s.input_latency_ms, ", input sent to the snapshot applying it");
    print_pcts(out, "connect time", &s.connect_ms, "");
    print_enforcement(out, r);
    fprintf(out, "%-16s RSS %s MiB, %s KiB per client\n", "memory",
            fmt_num(b[0], 32, r->rss_bytes > 0 ? (double)r->rss_bytes / 1048576.0 : NAN, 1),
            fmt_num(b[1], 32, s.rss_bytes_per_client / 1024.0, 1));
    return ferror(out) ? KZ_EIO : 0;
}

/* ---- JSON ----------------------------------------------------------------- */

/* Adds a number, or null when unknown; sets *bad if cJSON ran out of memory. */
static void json_num(cJSON *o, const char *key, double v, int *bad)
{
    cJSON *item = isfinite(v) ? cJSON_AddNumberToObject(o, key, v)
                              : cJSON_AddNullToObject(o, key);
    if (item == NULL)
        *bad = 1;
}

static cJSON *json_obj(cJSON *parent, const char *key, int *bad)
{
    cJSON *o = cJSON_AddObjectToObject(parent, key);
    if (o == NULL)
        *bad = 1;
    return o;
}

static void json_pcts(cJSON *doc, const char *key, const kzb_report_pcts *p, int *bad)
{
    cJSON *o = json_obj(doc, key, bad);
    json_num(o, "p50", p->p50, bad);
    json_num(o, "p90", p->p90, bad);
    json_num(o, "p99", p->p99, bad);
    json_num(o, "p999", p->p999, bad);
    json_num(o, "max", p->max, bad);
    json_num(o, "mean", p->mean, bad);
    json_num(o, "samples", (double)p->samples, bad);
    json_num(o, "out_of_range", (double)p->out_of_range, bad);
}

static void json_named(cJSON *doc, const char *key, const kzb_report_count *list, uint32_t n,
                       int *bad)
{
    cJSON *o = json_obj(doc, key, bad);
    for (uint32_t i = 0; i < n; i++)
        json_num(o, list[i].name, (double)list[i].count, bad);
}

static void json_config(cJSON *doc, const kzb_report *r, int *bad)
{
    cJSON *c = json_obj(doc, "config", bad);
    if (cJSON_AddStringToObject(c, "scenario", r->scenario != NULL ? r->scenario : "") == NULL ||
        cJSON_AddStringToObject(c, "mode", r->mode == KZB_MODE_EXTERNAL ? "external"
                                                                         : "embedded") == NULL ||
        cJSON_AddStringToObject(c, "bots", bots_name(r)) == NULL)
        *bad = 1;
    json_num(c, "tick_hz", (double)r->tick_hz, bad);
    json_num(c, "seconds", (double)r->seconds, bad);
    if (r->impair != NULL && r->impair[0] != '\0') {
        if (cJSON_AddStringToObject(c, "impair", r->impair) == NULL)
            *bad = 1;
    } else if (cJSON_AddNullToObject(c, "impair") == NULL) {
        *bad = 1;
    }
    /* A 64-bit seed does not survive a JSON double; it goes as a string. */
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, r->seed);
    if (cJSON_AddStringToObject(c, "seed", seed) == NULL)
        *bad = 1;
}

static void json_traffic(cJSON *doc, const kzb_report *r, const kzb_report_summary *s, int *bad)
{
    cJSON *bw = json_obj(doc, "bandwidth", bad);
    json_num(bw, "down_kbps_per_client", s->down_kbps_per_client, bad);
    json_num(bw, "up_kbps_per_client", s->up_kbps_per_client, bad);
    json_num(bw, "down_bytes_per_client_s", s->down_bytes_per_client_s, bad);
    json_num(bw, "up_bytes_per_client_s", s->up_bytes_per_client_s, bad);
    json_num(bw, "down_bytes", (double)r->bytes_down, bad);
    json_num(bw, "up_bytes", (double)r->bytes_up, bad);

    cJSON *pk = json_obj(doc, "packets", bad);
    json_num(pk, "down_per_s", s->packets_down_per_s, bad);
    json_num(pk, "up_per_s", s->packets_up_per_s, bad);
    json_num(pk, "down_per_client_s", s->packets_down_per_client_s, bad);
    json_num(pk, "up_per_client_s", s->packets_up_per_client_s, bad);
    json_num(pk, "down", (double)r->packets_down, bad);
    json_num(pk, "up", (double)r->packets_up, bad);
}

static void json_bots(cJSON *doc, const kzb_report *r, const kzb_report_summary *s, int *bad)
{
    cJSON *b = json_obj(doc, "bots", bad);
    json_num(b, "threads", (double)r->bot_threads, bad);
    json_num(b, "cpu_s", r->bots_cpu_seconds >= 0.0 ? r->bots_cpu_seconds : NAN, bad);
    json_num(b, "cpu_us_per_client_tick", s->bots_cpu_us_per_client_tick, bad);
    json_num(b, "per_core", s->bots_per_core, bad);
    json_num(b, "snapshots", (double)r->snapshots_received, bad);
    json_num(b, "snapshots_per_client_s", s->snapshots_per_client_s, bad);
    json_num(b, "acks", (double)r->acks_sent, bad);
}

static void json_enforcement(cJSON *doc, const kzb_report *r, int *bad)
{
    cJSON *c = json_obj(doc, "corrections", bad);
    json_num(c, "server", r->mode == KZB_MODE_EXTERNAL ? NAN : (double)r->corrections_server,
             bad);
    json_num(c, "clients", (double)r->corrections_clients, bad);
    json_num(doc, "kicks", (double)r->kicks, bad);
    json_num(doc, "timeouts", (double)r->timeouts, bad);
    json_named(doc, "violations", r->violations, r->n_violations, bad);
    json_named(doc, "drops", r->drops, r->n_drops, bad);
    json_named(doc, "hostile", r->hostile, r->n_hostile, bad);
}

cJSON *kzb_report_to_json(const kzb_report *r)
{
    KZ_ASSERT(r != NULL);
    kzb_report_summary s;
    kzb_report_summarize(r, &s);
    int bad = 0;
    cJSON *doc = cJSON_CreateObject();
    if (doc == NULL)
        return NULL;
    if (cJSON_AddStringToObject(doc, "schema", KZB_REPORT_SCHEMA) == NULL)
        bad = 1;
    json_config(doc, r, &bad);

    cJSON *cl = json_obj(doc, "clients", &bad);
    json_num(cl, "target", (double)r->clients_target, &bad);
    json_num(cl, "connected_end", (double)r->connected_end, &bad);
    json_num(cl, "connected_peak", (double)r->connected_peak, &bad);
    json_num(cl, "mean", s.clients_mean, &bad);

    json_num(doc, "window_s", r->measure_seconds, &bad);
    json_pcts(doc, "tick_ms", &s.tick_ms, &bad);
    json_num(doc, "server_cpu_s", r->server_cpu_seconds >= 0.0 ? r->server_cpu_seconds : NAN,
             &bad);
    json_num(doc, "client_ticks", (double)r->client_ticks, &bad);
    json_num(doc, "server_cpu_us_per_client_tick", s.cpu_us_per_client_tick, &bad);
    json_traffic(doc, r, &s, &bad);
    json_bots(doc, r, &s, &bad);
    json_pcts(doc, "snapshot_age_ms", &s.snapshot_age_ms, &bad);
    json_pcts(doc, "input_latency_ms", &s.input_latency_ms, &bad);
    json_pcts(doc, "connect_ms", &s.connect_ms, &bad);
    json_num(doc, "bits_per_avatar_update", s.bits_per_avatar_update, &bad);
    json_enforcement(doc, r, &bad);

    cJSON *mem = json_obj(doc, "memory", &bad);
    json_num(mem, "rss_bytes", r->rss_bytes > 0 ? (double)r->rss_bytes : NAN, &bad);
    json_num(mem, "rss_bytes_per_client", s.rss_bytes_per_client, &bad);

    if (bad) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

/* Opens `path` for writing, explaining a failure. */
static FILE *open_out(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        report_error("cannot write %s: %s", path, strerror(errno));
    return f;
}

/* Closes a file written by open_out; KZ_EIO if any write failed. */
static int close_out(FILE *f, const char *path)
{
    int failed = ferror(f);
    if (fclose(f) != 0 || failed) {
        report_error("writing %s failed", path);
        return KZ_EIO;
    }
    return 0;
}

int kzb_report_write_json(const kzb_report *r, const char *path)
{
    KZ_ASSERT(r != NULL && path != NULL);
    cJSON *doc = kzb_report_to_json(r);
    char *text = doc != NULL ? cJSON_Print(doc) : NULL;
    cJSON_Delete(doc);
    if (text == NULL)
        return KZ_ENOMEM;
    FILE *f = open_out(path);
    int rc = KZ_EIO;
    if (f != NULL) {
        fputs(text, f);
        fputc('\n', f);
        rc = close_out(f, path);
    }
    cJSON_free(text);
    return rc;
}

/* ---- CSV ------------------------------------------------------------------ */

#define KZB_CSV_HEADER                                                          \
    "t_s,connected,tick_p50_ms,tick_p99_ms,server_cpu_pct,down_kbps_per_client," \
    "up_kbps_per_client,corrections,drops\n"

/* One CSV cell: empty when unknown, so plots show a gap instead of a zero. */
static void csv_cell(FILE *f, double v, int prec)
{
    if (isfinite(v) && v >= 0.0)
        fprintf(f, "%.*f", prec, v);
    fputc(',', f);
}

int kzb_report_write_csv(const kzb_report *r, const char *path)
{
    KZ_ASSERT(r != NULL && path != NULL);
    FILE *f = open_out(path);
    if (f == NULL)
        return KZ_EIO;
    fputs(KZB_CSV_HEADER, f);
    for (uint32_t i = 0; i < r->n_series; i++) {
        const kzb_report_point *p = &r->series[i];
        fprintf(f, "%.3f,%" PRIu32 ",", p->t, p->connected);
        csv_cell(f, p->tick_p50_ms, 4);
        csv_cell(f, p->tick_p99_ms, 4);
        csv_cell(f, p->server_cpu_pct, 2);
        csv_cell(f, p->down_kbps, 3);
        csv_cell(f, p->up_kbps, 3);
        fprintf(f, "%" PRIu64 ",%" PRIu64 "\n", p->corrections, p->drops);
    }
    return close_out(f, path);
}

/* ---- plot ----------------------------------------------------------------- */

/* 1 if an executable `prog` is in one of PATH's directories. */
static int in_path(const char *prog)
{
    const char *path = getenv("PATH");
    if (path == NULL || path[0] == '\0')
        path = "/usr/local/bin:/usr/bin:/bin";
    char buf[4096];
    while (*path != '\0') {
        size_t n = strcspn(path, ":");
        /* An empty entry means the current directory. */
        int len = n == 0 ? snprintf(buf, sizeof buf, "./%s", prog)
                         : snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, prog);
        if (len > 0 && (size_t)len < sizeof buf && access(buf, X_OK) == 0)
            return 1;
        path += n;
        if (*path == ':')
            path++;
    }
    return 0;
}

/* Lower-case extension of `path` ("png"), or "" when it has none. */
static void path_ext(const char *path, char *ext, size_t cap)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    ext[0] = '\0';
    if (dot == NULL || (slash != NULL && dot < slash))
        return;
    size_t i = 0;
    for (dot++; *dot != '\0' && i + 1 < cap; dot++)
        ext[i++] = (char)(*dot >= 'A' && *dot <= 'Z' ? *dot - 'A' + 'a' : *dot);
    ext[i] = '\0';
}

/* Writes `s` as a gnuplot single-quoted string, in which only '' is special.
 * Control characters would end the command line; the caller rejects them. */
static void gp_quote(FILE *gp, const char *s)
{
    fputc('\'', gp);
    for (; *s != '\0'; s++) {
        if (*s == '\'')
            fputc('\'', gp);
        fputc(*s, gp);
    }
    fputc('\'', gp);
}

static int has_control(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static void gp_script(FILE *gp, const char *out_path, const char *csv_path, int svg)
{
    if (svg)
        fputs("set terminal svg size 1200,900 dynamic noenhanced\n", gp);
    else
        fputs("if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
              "  set terminal pngcairo size 1200,900 noenhanced\n"
              "} else {\n"
              "  set terminal png size 1200,900 noenhanced\n"
              "}\n", gp);
    fputs("set output ", gp);
    gp_quote(gp, out_path);
    /* The CSV's first line names the columns; columnheader consumes it. */
    fputs("\nset datafile separator ','\n"
          "set key autotitle columnheader outside right top\n"
          "set grid\n"
          "set yrange [0:*]\n"
          "set lmargin 10\n" /* fixed margins keep both panels' time axes aligned */
          "set rmargin 16\n"
          "set xlabel 'time since the bots started (s)'\n"
          "set multiplot layout 2,1 title 'kizuna-bench'\n"
          "set ylabel 'server tick (ms)'\n"
          "plot ", gp);
    gp_quote(gp, csv_path);
    fputs(" using 1:3 with lines lw 2 title 'tick p50', '' using 1:4 with lines lw 2"
          " title 'tick p99'\n"
          "set ylabel 'kbit/s per client'\n"
          "plot ", gp);
    gp_quote(gp, csv_path);
    fputs(" using 1:6 with lines lw 2 title 'down', '' using 1:7 with lines lw 2 title 'up'\n"
          "unset multiplot\n"
          "set output\n", gp);
}

/* Runs gnuplot on the script; returns its exit status, or -1. */
static int gp_run(const char *out_path, const char *csv_path, int svg)
{
    /* If gnuplot dies before reading the script, the write must fail with
     * EPIPE instead of killing the bench with SIGPIPE. */
    struct sigaction ign, old;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old);
    int status = -1;
    FILE *gp = popen("gnuplot", "w");
    if (gp != NULL) {
        gp_script(gp, out_path, csv_path, svg);
        status = pclose(gp);
    }
    sigaction(SIGPIPE, &old, NULL);
    if (status == -1 || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

int kzb_report_plot(const char *out_path, const char *csv_path)
{
    KZ_ASSERT(out_path != NULL && csv_path != NULL);
    char ext[8];
    path_ext(out_path, ext, sizeof ext);
    int svg = strcmp(ext, "svg") == 0;
    if (!svg && strcmp(ext, "png") != 0) {
        report_error("--plot %s: the file name must end in .png or .svg", out_path);
        return KZ_EINVAL;
    }
    if (has_control(out_path) || has_control(csv_path)) {
        report_error("--plot: file names with control characters are not supported");
        return KZ_EINVAL;
    }
    if (access(csv_path, R_OK) != 0) {
        report_error("--plot: cannot read the time series %s: %s", csv_path, strerror(errno));
        return KZ_EIO;
    }
    if (!in_path("gnuplot")) {
        report_error("--plot needs gnuplot, which is not on PATH (Debian: apt-get install "
                     "gnuplot-nox)");
        return KZ_EIO;
    }
    /* A stale chart from an earlier run must not pass for this one. */
    remove(out_path);
    int status = gp_run(out_path, csv_path, svg);
    struct stat st;
    if (status != 0 || stat(out_path, &st) != 0 || st.st_size == 0) {
        report_error("--plot: gnuplot failed (exit status %d) and did not write %s", status,
                     out_path);
        return KZ_EIO;
    }
    return 0;
}

/* ---- thresholds ----------------------------------------------------------- */

static const char *const kzb_cmp_text[] = {"<", "<=", ">", ">=", "=="};

static int is_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

/* 1 if s[0..n) is keys of is_key_char joined by single dots. */
static int valid_path(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.' ? s[i + 1] == '.' : !is_key_char(s[i]))
            return 0;
    }
    return 1;
}

static int bad_threshold(const char *expr, const char *why)
{
    report_error("bad threshold '%s': %s (expected PATH OP NUMBER, OP one of <, <=, >, >=, ==,"
                 " e.g. 'tick_ms.p99<10')", expr, why);
    return KZ_EINVAL;
}

/* Reads the operator at `s`; returns its length (0: none). */
static size_t parse_op(const char *s, kzb_cmp *op)
{
    int eq = s[1] == '=';
    switch (s[0]) {
    case '<':
        *op = eq ? KZB_CMP_LE : KZB_CMP_LT;
        return eq ? 2 : 1;
    case '>':
        *op = eq ? KZB_CMP_GE : KZB_CMP_GT;
        return eq ? 2 : 1;
    case '=':
        *op = KZB_CMP_EQ;
        return eq ? 2 : 0;
    default:
        return 0;
    }
}

int kzb_threshold_parse(const char *expr, kzb_threshold *t)
{
    KZ_ASSERT(expr != NULL && t != NULL);
    if (strlen(expr) >= KZB_THRESHOLD_TEXT_LEN)
        return bad_threshold(expr, "too long");
    const char *op_at = strpbrk(expr, "<>=");
    if (op_at == NULL)
        return bad_threshold(expr, "no comparison operator");

    const char *p = expr;
    while (*p == ' ')
        p++;
    size_t n = (size_t)(op_at - p);
    while (n > 0 && p[n - 1] == ' ')
        n--;
    if (n == 0)
        return bad_threshold(expr, "no path before the operator");
    if (n >= KZB_THRESHOLD_PATH_LEN || !valid_path(p, n))
        return bad_threshold(expr, "the path must be dot-separated keys of letters, digits, _ and -");

    kzb_cmp op;
    size_t op_len = parse_op(op_at, &op);
    if (op_len == 0)
        return bad_threshold(expr, "'=' is not an operator, use '=='");
    const char *num = op_at + op_len;
    while (*num == ' ')
        num++;
    if (*num == '\0')
        return bad_threshold(expr, "no number after the operator");
    char *end;
    double v = strtod(num, &end);
    while (end != num && *end == ' ')
        end++;
    if (end == num || *end != '\0' || !isfinite(v))
        return bad_threshold(expr, "the right-hand side is not a finite number");

    memcpy(t->path, p, n);
    t->path[n] = '\0';
    t->op = op;
    t->value = v;
    snprintf(t->text, sizeof t->text, "%s", expr);
    return 0;
}

const cJSON *kzb_json_lookup(const cJSON *doc, const char *path)
{
    KZ_ASSERT(path != NULL);
    const cJSON *cur = doc;
    char key[KZB_THRESHOLD_PATH_LEN];
    for (;;) {
        size_t n = strcspn(path, ".");
        if (cur == NULL || !cJSON_IsObject(cur) || n == 0 || n >= sizeof key)
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        cur = cJSON_GetObjectItemCaseSensitive(cur, key);
        if (path[n] == '\0')
            return cur;
        path += n + 1;
    }
}

int kzb_threshold_eval(const kzb_threshold *t, const cJSON *doc, double *actual)
{
    KZ_ASSERT(t != NULL);
    const cJSON *item = kzb_json_lookup(doc, t->path);
    if (actual != NULL)
        *actual = NAN;
    if (item == NULL || !(cJSON_IsNumber(item) || cJSON_IsNull(item)))
        return KZ_EINVAL;
    if (cJSON_IsNull(item))
        return KZ_EEMPTY;
    double v = cJSON_GetNumberValue(item);
    if (actual != NULL)
        *actual = v;
    switch (t->op) {
    case KZB_CMP_LT: return v < t->value;
    case KZB_CMP_LE: return v <= t->value;
    case KZB_CMP_GT: return v > t->value;
    case KZB_CMP_GE: return v >= t->value;
    case KZB_CMP_EQ: return v == t->value;
    }
    return KZ_EINVAL;
}

/* For an unknown path: the keys of the deepest object on it, to show
 * what could have been meant. */
static void print_known_keys(FILE *out, const cJSON *doc, const char *path)
{
    char prefix[KZB_THRESHOLD_PATH_LEN];
    snprintf(prefix, sizeof prefix, "%s", path);
    const cJSON *obj = NULL;
    char *dot;
    while (obj == NULL && (dot = strrchr(prefix, '.')) != NULL) {
        *dot = '\0';
        const cJSON *c = kzb_json_lookup(doc, prefix);
        if (cJSON_IsObject(c))
            obj = c;
    }
    if (obj == NULL) {
        obj = doc;
        prefix[0] = '\0';
    }
    fprintf(out, " (keys %s%s%s:", prefix[0] ? "under \"" : "at the top", prefix,
            prefix[0] ? "\"" : "");
    const cJSON *c;
    int first = 1;
    cJSON_ArrayForEach(c, obj) {
        fprintf(out, "%s %s", first ? "" : ",", c->string);
        first = 0;
    }
    fputs(first ? " none)" : ")", out);
}

uint32_t kzb_thresholds_check(FILE *out, const kzb_threshold *t, uint32_t n, const cJSON *doc)
{
    KZ_ASSERT(out != NULL && (t != NULL || n == 0));
    uint32_t failed = 0;
    for (uint32_t i = 0; i < n; i++) {
        double actual;
        int rc = kzb_threshold_eval(&t[i], doc, &actual);
        fprintf(out, "%s %s%s%.10g", rc == 1 ? "PASS" : "FAIL", t[i].path,
                kzb_cmp_text[t[i].op], t[i].value);
        if (rc >= 0) {
            fprintf(out, " (actual %.10g)\n", actual);
        } else if (rc == KZ_EEMPTY) {
            fputs(": not measured in this run (null)\n", out);
        } else {
            const cJSON *item = kzb_json_lookup(doc, t[i].path);
            fputs(item != NULL ? ": not a number" : ": unknown path", out);
            if (item == NULL)
                print_known_keys(out, doc, t[i].path);
            fputc('\n', out);
        }
        failed += rc != 1;
    }
    return failed;
}

/* ---- files and comparison ------------------------------------------------- */

/* Reads a whole file into a zero-terminated heap buffer (free()). */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        report_error("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    int failed = buf == NULL;
    while (!failed) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1 || ferror(f))
            break;
        char *grown = cap < KZB_JSON_MAX_BYTES ? realloc(buf, cap * 2) : NULL;
        failed = grown == NULL;
        if (!failed) {
            buf = grown;
            cap *= 2;
        }
    }
    failed = failed || ferror(f);
    fclose(f);
    if (failed) {
        report_error("cannot read %s (larger than %u bytes, or a read error)", path,
                     KZB_JSON_MAX_BYTES);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

cJSON *kzb_report_load_json(const char *path)
{
    KZ_ASSERT(path != NULL);
    size_t len = 0;
    char *text = read_file(path, &len);
    if (text == NULL)
        return NULL;
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (doc == NULL) {
        report_error("%s is not JSON (error near byte %zu)", path,
                     end != NULL && end >= text ? (size_t)(end - text) : (size_t)0);
        free(text);
        return NULL;
    }
    free(text);
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(doc, "schema");
    /* Version 3 only added fields to version 2: both compare leaf by leaf. */
    if (!cJSON_IsString(schema) || (strcmp(schema->valuestring, KZB_REPORT_SCHEMA) != 0 &&
                                    strcmp(schema->valuestring, KZB_REPORT_SCHEMA_PREVIOUS) != 0)) {
        report_error("%s is not a %s or %s document (its \"schema\" is %s%s%s)", path,
                     KZB_REPORT_SCHEMA, KZB_REPORT_SCHEMA_PREVIOUS,
                     cJSON_IsString(schema) ? "\"" : "",
                     cJSON_IsString(schema) ? schema->valuestring : "missing",
                     cJSON_IsString(schema) ? "\"" : "");
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

typedef struct cmp_ctx {
    FILE *out;
    const cJSON *a, *b;
    int width;     /* of the metric column */
    int b_only;    /* second pass: print only leaves A lacks */
    int measure;   /* first pass: only measure the width */
} cmp_ctx;

static int is_leaf(const cJSON *c)
{
    return c != NULL && (cJSON_IsNumber(c) || cJSON_IsNull(c));
}

static const char *cmp_cell(char *buf, size_t cap, const cJSON *c)
{
    /* Counts print whole (a byte total must not turn into 1.04e+08). */
    if (cJSON_IsNumber(c) && c->valuedouble == floor(c->valuedouble) &&
        fabs(c->valuedouble) < 1e14)
        snprintf(buf, cap, "%.0f", c->valuedouble);
    else if (cJSON_IsNumber(c))
        snprintf(buf, cap, "%.6g", c->valuedouble);
    else
        snprintf(buf, cap, "-");
    return buf;
}

static void cmp_row(cmp_ctx *x, const char *path)
{
    const cJSON *a = kzb_json_lookup(x->a, path), *b = kzb_json_lookup(x->b, path);
    if (x->measure) {
        int n = (int)strlen(path);
        x->width = n > x->width ? n : x->width;
        return;
    }
    if (x->b_only && is_leaf(a))
        return;
    char ca[32], cb[32], cr[32] = "-";
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b) && a->valuedouble != 0.0)
        snprintf(cr, sizeof cr, "%.3f", b->valuedouble / a->valuedouble);
    fprintf(x->out, "%-*s %14s %14s %9s\n", x->width, path, cmp_cell(ca, sizeof ca, a),
            cmp_cell(cb, sizeof cb, b), cr);
}

/* Calls cmp_row for every number or null under `node`, in document order.
 * `path` holds `len` characters of the node's own path. */
static void cmp_walk(cmp_ctx *x, const cJSON *node, char *path, size_t len, size_t cap)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, node) {
        if (c->string == NULL)
            continue;
        int n = snprintf(path + len, cap - len, "%s%s", len > 0 ? "." : "", c->string);
        if (n < 0 || (size_t)n >= cap - len)
            continue;
        if (is_leaf(c))
            cmp_row(x, path);
        else if (cJSON_IsObject(c))
            cmp_walk(x, c, path, len + (size_t)n, cap);
        path[len] = '\0';
    }
}

static void cmp_describe(FILE *out, const char *label, const char *path, const cJSON *doc)
{
    const cJSON *sc = kzb_json_lookup(doc, "config.scenario");
    const cJSON *mode = kzb_json_lookup(doc, "config.mode");
    const cJSON *target = kzb_json_lookup(doc, "clients.target");
    fprintf(out, "%s: %s (scenario %s, %s, %.0f clients)\n", label, path,
            cJSON_IsString(sc) ? sc->valuestring : "?",
            cJSON_IsString(mode) ? mode->valuestring : "?",
            cJSON_IsNumber(target) ? target->valuedouble : 0.0);
}

int kzb_compare(FILE *out, const char *path_a, const char *path_b)
{
    KZ_ASSERT(out != NULL && path_a != NULL && path_b != NULL);
    cJSON *a = kzb_report_load_json(path_a);
    cJSON *b = a != NULL ? kzb_report_load_json(path_b) : NULL;
    if (a == NULL || b == NULL) {
        cJSON_Delete(a);
        return KZ_EINVAL;
    }
    cmp_ctx x = {.out = out, .a = a, .b = b, .width = 6, .measure = 1};
    char path[256] = "";
    cmp_walk(&x, a, path, 0, sizeof path);
    cmp_walk(&x, b, path, 0, sizeof path);
    x.measure = 0;

    cmp_describe(out, "A", path_a, a);
    cmp_describe(out, "B", path_b, b);
    fprintf(out, "%-*s %14s %14s %9s\n", x.width, "metric", "A", "B", "B/A");
    cmp_walk(&x, a, path, 0, sizeof path);
    x.b_only = 1;
    cmp_walk(&x, b, path, 0, sizeof path);
    cJSON_Delete(a);
    cJSON_Delete(b);
    return ferror(out) ? KZ_EIO : 0;
}
