/*
 * kizuna-bench report tests. The math is checked against known inputs and
 * against a naive reference (a sorted array of the same samples, with the
 * coordinated-omission back-fill done by hand); the JSON document is
 * checked against a list of required paths and types and against the field
 * table of docs/BENCH-REPORT.md, so the documentation cannot drift from
 * the code; CSV, thresholds, comparison and the gnuplot chart are checked
 * on files written to a temporary directory. The server's counters must
 * reach the report under their own names (a correction is not a speed
 * violation, a rate-limited chat line is a drop), and the bots' motion is
 * run through the server's own validator: an honest bot is never
 * corrected.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kizuna/server.h>

#include "bench/report.h"
#include "bench/runner.h"
#include "bench/scenario.h"
#include "sim/validate.h"

#define MS UINT64_C(1000000) /* nanoseconds */

/* ---- helpers ------------------------------------------------------------ */

static char tmp_dir[64];

static void make_tmp(void)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/kzb_report_XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_dir));
}

static void remove_tmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    cr_assert_eq(system(cmd), 0);
}

static const char *tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmp_dir, name);
    return buf;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact p-th percentile of sorted v[0..n), by the histogram's rank
 * rule: the sample of rank ceil(p * n / 100), at least 1. */
static uint64_t exact_pct(const uint64_t *v, size_t n, double p)
{
    size_t rank = (size_t)ceil(p * (double)n / 100.0);
    return v[(rank < 1 ? 1 : rank) - 1];
}

/* Asserts hist_ms (a report figure in ms) is within the histogram's
 * precision of the exact value in ns: exact <= got <= exact (1 + 10^-3). */
static void assert_close_ms(double got_ms, uint64_t exact_ns, const char *what)
{
    double exact_ms = (double)exact_ns / 1e6;
    cr_assert(got_ms >= exact_ms - 1e-9 && got_ms <= exact_ms * 1.001 + 1e-9,
              "%s: got %.6f ms, exact %.6f ms", what, got_ms, exact_ms);
}

/* A report as a 1000-client, 30 Hz, 10 s embedded run would leave it. */
static void fill_report(kzb_report *r)
{
    cr_assert_eq(kzb_report_init(r, 16, NULL), 0);
    r->scenario = "wander";
    r->mode = KZB_MODE_EMBEDDED;
    r->clients_target = 1000;
    r->tick_hz = 30;
    r->seconds = 10;
    r->impair = "loss 1% jitter 5ms";
    r->seed = UINT64_C(18446744073709551615);
    r->connected_end = 1000;
    r->connected_peak = 1000;
    r->measure_seconds = 10.0;
    for (uint32_t i = 0; i < 300; i++)
        cr_assert_eq(kz_hist_record(&r->tick_ns, (1 + i % 5) * MS), 0);
    for (uint32_t i = 1; i <= 1000; i++) {
        cr_assert_eq(kz_hist_record_corrected(&r->snapshot_age_ns, 40 * MS + i * 10000, 33 * MS), 0);
        cr_assert_eq(kz_hist_record(&r->connect_ns, 5 * MS + i * 1000), 0);
        cr_assert_eq(kz_hist_record(&r->input_latency_ns, 20 * MS + i * 20000), 0);
    }
    r->server_cpu_seconds = 3.0;
    r->client_ticks = 300u * 1000u;
    r->bytes_down = UINT64_C(50000000); /* 5000 B/s per client */
    r->bytes_up = UINT64_C(10000000);   /* 1000 B/s per client */
    r->packets_down = 300000;
    r->packets_up = 300000;
    r->bits_per_avatar_update = 38.5;
    r->corrections_server = 12;
    r->corrections_clients = 14;
    r->kicks = 2;
    r->timeouts = 1;
    r->rss_bytes = UINT64_C(512) << 20;
    r->bots = "thin";
    r->bot_threads = 2;
    r->bots_cpu_seconds = 1.2;              /* 4 µs per client-tick */
    r->snapshots_received = 290000;         /* 29 per client-second */
    r->acks_sent = 299000;
    cr_assert_eq(kzb_report_add_violation(r, "speed", 3), 0);
    cr_assert_eq(kzb_report_add_violation(r, "acceleration", 0), 0);
    cr_assert_eq(kzb_report_add_hostile(r, "chat_flood_caught", 10), 0);
    cr_assert_eq(kzb_report_add_drop(r, "inbound_ring_full", 0), 0);
    cr_assert_eq(kzb_report_add_drop(r, "bad_seal", 7), 0);
    for (uint32_t i = 0; i < 10; i++) {
        kzb_report_point p = {.t = 1.0 + i, .connected = 1000, .tick_p50_ms = 1.5 + 0.1 * i,
                              .tick_p99_ms = 3.0 + 0.2 * i, .server_cpu_pct = i == 3 ? -1 : 40,
                              .down_kbps = 40.0 + i, .up_kbps = 8.0, .corrections = i, .drops = 0};
        cr_assert_eq(kzb_report_add_point(r, &p), 0);
    }
}

/* ---- math: percentiles, coordinated omission, rates ---------------------- */

Test(bench_report, percentiles_uniform_1_to_1000_ms)
{
    kzb_report r;
    cr_assert_eq(kzb_report_init(&r, 0, NULL), 0);
    uint64_t v[1000];
    for (uint32_t i = 0; i < 1000; i++) {
        v[i] = (uint64_t)(i + 1) * MS;
        cr_assert_eq(kz_hist_record(&r.tick_ns, v[i]), 0);
    }
    kzb_report_summary s;
    kzb_report_summarize(&r, &s);
    cr_assert_eq(s.tick_ms.samples, 1000);
    assert_close_ms(s.tick_ms.p50, 500 * MS, "p50");
    assert_close_ms(s.tick_ms.p90, 900 * MS, "p90");
    assert_close_ms(s.tick_ms.p99, 990 * MS, "p99");
    assert_close_ms(s.tick_ms.p999, 999 * MS, "p99.9");
    cr_assert_eq(s.tick_ms.max, 1000.0, "the max is exact");
    cr_assert(fabs(s.tick_ms.mean - 500.5) < 500.5 / 2000.0 + 1e-6, "mean %f", s.tick_ms.mean);
    /* Empty histograms are unknown, not zero. */
    cr_assert(isnan(s.snapshot_age_ms.p50) && isnan(s.connect_ms.max) && isnan(s.input_latency_ms.p99));
    kzb_report_fini(&r);
}

Test(bench_report, coordinated_omission_fills_a_stall)
{
    /* 1000 snapshots arrive 1 ms after their tick, every 33 ms; then the
     * client stalls for 1 s. The 29 snapshots that should have been applied
     * during the stall were waiting 967, 934, ..., 43 ms when it ended. */
    const uint64_t interval = 33 * MS, stall = 1000 * MS;
    kzb_report r;
    cr_assert_eq(kzb_report_init(&r, 0, NULL), 0);
    kz_hist naive;
    kz_hist_config cfg;
    kzb_report_hist_config(&cfg);
    cr_assert_eq(kz_hist_init(&naive, &cfg, NULL), 0);

    uint64_t ref[1100];
    size_t n = 0;
    for (uint32_t i = 0; i < 1000; i++) {
        cr_assert_eq(kz_hist_record_corrected(&r.snapshot_age_ns, 1 * MS, interval), 0);
        cr_assert_eq(kz_hist_record(&naive, 1 * MS), 0);
        ref[n++] = 1 * MS;
    }
    cr_assert_eq(kz_hist_record_corrected(&r.snapshot_age_ns, stall, interval), 0);
    cr_assert_eq(kz_hist_record(&naive, stall), 0);
    for (uint64_t v = stall; v >= interval; v -= interval)
        ref[n++] = v;
    cr_assert_eq(n, 1030, "the reference back-fill has 30 stall samples");
    qsort(ref, n, sizeof ref[0], cmp_u64);

    kzb_report_summary s;
    kzb_report_summarize(&r, &s);
    cr_assert_eq(s.snapshot_age_ms.samples, 1030);
    const double levels[] = {50.0, 90.0, 99.0, 99.9};
    const double got[] = {s.snapshot_age_ms.p50, s.snapshot_age_ms.p90, s.snapshot_age_ms.p99,
                          s.snapshot_age_ms.p999};
    for (size_t i = 0; i < 4; i++)
        assert_close_ms(got[i], exact_pct(ref, n, levels[i]), "corrected percentile");
    /* Known answer: rank ceil(0.99 * 1030) = 1020 is the 20th stall sample
     * from the bottom, 43 + 19 * 33 = 670 ms. */
    assert_close_ms(s.snapshot_age_ms.p99, 670 * MS, "corrected p99");
    cr_assert_eq(s.snapshot_age_ms.max, 1000.0);
    /* Without the correction the stall hides behind the 1 ms samples. */
    assert_close_ms((double)kz_hist_percentile(&naive, 99.0) / 1e6, 1 * MS, "uncorrected p99");
    kz_hist_fini(&naive);
    kzb_report_fini(&r);
}

Test(bench_report, rates_per_client)
{
    kzb_report r;
    fill_report(&r);
    kzb_report_summary s;
    kzb_report_summarize(&r, &s);
    /* 300 ticks with 1000 clients each: 1000 clients on average. */
    cr_assert_float_eq(s.clients_mean, 1000.0, 1e-9);
    /* 50 MB over 10 s and 1000 clients: 5000 B/s = 40 kbit/s each. */
    cr_assert_float_eq(s.down_bytes_per_client_s, 5000.0, 1e-9);
    cr_assert_float_eq(s.down_kbps_per_client, 40.0, 1e-9);
    cr_assert_float_eq(s.up_kbps_per_client, 8.0, 1e-9);
    cr_assert_float_eq(s.packets_down_per_s, 30000.0, 1e-9);
    cr_assert_float_eq(s.packets_down_per_client_s, 30.0, 1e-9);
    cr_assert_float_eq(s.rss_bytes_per_client, 512.0 * 1048576.0 / 1000.0, 1e-6);
    cr_assert_float_eq(s.bits_per_avatar_update, 38.5, 1e-12);

    /* An overloaded server ran 150 of its 300 ticks with 800 clients: the
     * mean is taken over the ticks that ran, not the nominal ones. */
    kz_hist_reset(&r.tick_ns);
    cr_assert_eq(kz_hist_record_n(&r.tick_ns, 60 * MS, 150), 0);
    r.client_ticks = 150u * 800u;
    kzb_report_summarize(&r, &s);
    cr_assert_float_eq(s.clients_mean, 800.0, 1e-9);
    cr_assert_float_eq(s.down_kbps_per_client, 50.0, 1e-9);

    /* The runner sums clients over the seconds it sampled; the tick
     * histogram's window may hold fewer ticks than those seconds (churn
     * measured 53 "clients" of 40 that way). The divisor is the same
     * seconds' ticks. */
    r.client_ticks = 40u * 400u;
    r.measured_ticks = 400u;
    kzb_report_summarize(&r, &s);
    cr_assert_float_eq(s.clients_mean, 40.0, 1e-9, "mean %f", s.clients_mean);
    r.measured_ticks = 0;

    /* External mode: no tick times; ticks are tick_hz * window. */
    kz_hist_reset(&r.tick_ns);
    r.client_ticks = 300u * 500u;
    kzb_report_summarize(&r, &s);
    cr_assert_float_eq(s.clients_mean, 500.0, 1e-9);

    /* No client-ticks at all: the clients connected at the end. */
    r.client_ticks = 0;
    r.connected_end = 250;
    kzb_report_summarize(&r, &s);
    cr_assert_float_eq(s.clients_mean, 250.0, 1e-9);
    cr_assert_float_eq(s.down_kbps_per_client, 160.0, 1e-9);
    cr_assert(isnan(s.cpu_us_per_client_tick), "no client-ticks: CPU per client-tick unknown");

    /* No window: every rate is unknown rather than infinite. */
    r.measure_seconds = 0.0;
    kzb_report_summarize(&r, &s);
    cr_assert(isnan(s.down_kbps_per_client) && isnan(s.packets_up_per_s));
    kzb_report_fini(&r);
}

Test(bench_report, cpu_us_per_client_tick)
{
    kzb_report r;
    fill_report(&r);
    kzb_report_summary s;
    kzb_report_summarize(&r, &s);
    /* 3 CPU-seconds over 300,000 client-ticks: 10 µs each. */
    cr_assert_float_eq(s.cpu_us_per_client_tick, 10.0, 1e-9);
    r.server_cpu_seconds = 0.45;
    r.client_ticks = 90000;
    kzb_report_summarize(&r, &s);
    cr_assert_float_eq(s.cpu_us_per_client_tick, 5.0, 1e-9);
    r.server_cpu_seconds = -1.0; /* external server */
    kzb_report_summarize(&r, &s);
    cr_assert(isnan(s.cpu_us_per_client_tick));
    cJSON *doc = kzb_report_to_json(&r);
    cr_assert(cJSON_IsNull(kzb_json_lookup(doc, "server_cpu_us_per_client_tick")));
    cJSON_Delete(doc);
    kzb_report_fini(&r);
}

/* ---- lifecycle ------------------------------------------------------------ */

Test(bench_report, allocates_at_init_only)
{
    kz_counting_alloc ca;
    kz_counting_alloc_init(&ca, NULL);
    kz_allocator a = kz_counting_alloc_allocator(&ca);
    kzb_report r;
    cr_assert_eq(kzb_report_init(&r, 4, &a), 0);
    uint64_t allocs = kz_counting_alloc_allocs(&ca);
    cr_assert_eq(allocs, 5, "four histograms and the series");
    kzb_report_point p = {.t = 1};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(kzb_report_add_point(&r, &p), 0);
    cr_assert_eq(kzb_report_add_point(&r, &p), KZ_EFULL);
    (void)kz_hist_record_corrected(&r.snapshot_age_ns, 500 * MS, 33 * MS);
    cr_assert_eq(kzb_report_add_drop(&r, "x", 1), 0);
    kzb_report_summary s;
    kzb_report_summarize(&r, &s);
    cr_assert_eq(kz_counting_alloc_allocs(&ca), allocs);
    kzb_report_fini(&r);
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0);

    /* Every failing allocation leaves nothing behind. */
    for (int64_t k = 0; k < 5; k++) {
        ca.fail_after = k;
        ca.allocs = 0;
        cr_assert_eq(kzb_report_init(&r, 4, &a), KZ_ENOMEM);
        cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0);
        kzb_report_fini(&r);
    }
}

Test(bench_report, named_counters)
{
    kzb_report r;
    cr_assert_eq(kzb_report_init(&r, 0, NULL), 0);
    cr_assert_eq(kzb_report_add_drop(&r, "inbound_ring_full", 2), 0);
    cr_assert_eq(kzb_report_add_drop(&r, "inbound_ring_full", 3), 0);
    cr_assert_eq(r.n_drops, 1);
    cr_assert_eq(r.drops[0].count, 5);
    cr_assert_eq(kzb_report_add_drop(&r, "", 1), KZ_EINVAL);
    char longname[KZB_REPORT_NAME_LEN + 1];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_assert_eq(kzb_report_add_violation(&r, longname, 1), KZ_EINVAL);
    longname[KZB_REPORT_NAME_LEN - 1] = '\0'; /* the longest that fits */
    cr_assert_eq(kzb_report_add_violation(&r, longname, 1), 0);
    for (uint32_t i = 1; i < KZB_REPORT_MAX_NAMED; i++) {
        char name[16];
        snprintf(name, sizeof name, "v%u", i);
        cr_assert_eq(kzb_report_add_violation(&r, name, i), 0);
    }
    cr_assert_eq(kzb_report_add_violation(&r, "one_too_many", 1), KZ_EFULL);
    cr_assert_eq(kzb_report_add_violation(&r, "v7", 1), 0, "existing names still add up");
    kzb_report_fini(&r);
}

/* ---- text ----------------------------------------------------------------- */

static char *capture_print(const kzb_report *r, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    cr_assert_not_null(f);
    cr_assert_eq(kzb_report_print(f, r), 0);
    fclose(f);
    return buf;
}

Test(bench_report, text_summary)
{
    kzb_report r;
    fill_report(&r);
    size_t len;
    char *text = capture_print(&r, &len);
    const char *want[] = {"scenario wander", "embedded server", "thin bots", "1000 target",
                          "server tick", "p99.9", "10.00 µs per client-tick",
                          "down 40.00 kbit/s", "up 8.00 kbit/s", "30000/s",
                          "coordinated omission", "connect time", "38.5 bits per avatar update",
                          "12 commands corrected by the server, 14 corrections told to clients, 2 kicks",
                          "violations       speed 3, acceleration 0",
                          "hostile bots     chat_flood_caught 10",
                          "inbound_ring_full 0, bad_seal 7", "RSS 512.0 MiB, 524.3 KiB per client",
                          "bots             thin, 2 threads: 4.00 µs CPU per client-tick",
                          "one core drives about 8333 at 30 Hz",
                          "290000 snapshots taken in (29.00 per client-second), 299000 acknowledged"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert_not_null(strstr(text, want[i]), "missing \"%s\" in:\n%s", want[i], text);
    free(text);

    /* External mode: unknown figures read n/a, never 0 or nan. */
    kz_hist_reset(&r.tick_ns);
    r.server_cpu_seconds = -1.0;
    r.mode = KZB_MODE_EXTERNAL;
    text = capture_print(&r, &len);
    cr_assert_not_null(strstr(text, "server tick      no samples"), "%s", text);
    cr_assert_not_null(strstr(text, "n/a µs per client-tick"), "%s", text);
    cr_assert_not_null(strstr(text, "n/a commands corrected by the server"), "%s", text);
    r.bots_cpu_seconds = -1.0;
    free(text);
    text = capture_print(&r, &len);
    cr_assert_not_null(strstr(text, "n/a µs CPU per client-tick (n/a CPU-s), one core drives about n/a"),
                       "%s", text);
    cr_assert_null(strstr(text, "nan"), "%s", text);
    free(text);
    kzb_report_fini(&r);
}

Test(bench_report, progress_line)
{
    kzb_report_point p = {.t = 12.0, .connected = 998, .tick_p50_ms = 1.234, .tick_p99_ms = 2.5,
                          .server_cpu_pct = 45.67, .down_kbps = 41.26, .up_kbps = 7.9,
                          .corrections = 3, .drops = 1};
    char *buf = NULL;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    kzb_report_progress_line(f, &p);
    p.server_cpu_pct = -1.0;
    kzb_report_progress_line(f, &p);
    fclose(f);
    cr_assert_str_eq(buf,
                     "[   12.0 s] clients 998  tick p50 1.23 p99 2.50 ms  cpu 45.7%"
                     "  kbit/s per client down 41.3 up 7.9  corrections 3  drops 1\n"
                     "[   12.0 s] clients 998  tick p50 1.23 p99 2.50 ms  cpu n/a"
                     "  kbit/s per client down 41.3 up 7.9  corrections 3  drops 1\n");
    free(buf);
}

/* ---- JSON schema ---------------------------------------------------------- */

typedef enum { T_NUM, T_STR, T_OBJ, T_NUM_OR_NULL, T_STR_OR_NULL } jtype;

static const struct {
    const char *path;
    jtype type;
} required[] = {
    {"schema", T_STR},
    {"config", T_OBJ},
    {"config.scenario", T_STR},
    {"config.mode", T_STR},
    {"config.tick_hz", T_NUM},
    {"config.seconds", T_NUM},
    {"config.impair", T_STR_OR_NULL},
    {"config.seed", T_STR},
    {"config.bots", T_STR},
    {"bots.threads", T_NUM},
    {"bots.cpu_s", T_NUM_OR_NULL},
    {"bots.cpu_us_per_client_tick", T_NUM_OR_NULL},
    {"bots.per_core", T_NUM_OR_NULL},
    {"bots.snapshots", T_NUM},
    {"bots.snapshots_per_client_s", T_NUM_OR_NULL},
    {"bots.acks", T_NUM},
    {"clients.target", T_NUM},
    {"clients.connected_end", T_NUM},
    {"clients.connected_peak", T_NUM},
    {"clients.mean", T_NUM_OR_NULL},
    {"window_s", T_NUM},
    {"tick_ms.p50", T_NUM_OR_NULL},
    {"tick_ms.p90", T_NUM_OR_NULL},
    {"tick_ms.p99", T_NUM_OR_NULL},
    {"tick_ms.p999", T_NUM_OR_NULL},
    {"tick_ms.max", T_NUM_OR_NULL},
    {"tick_ms.samples", T_NUM},
    {"server_cpu_us_per_client_tick", T_NUM_OR_NULL},
    {"bandwidth.down_kbps_per_client", T_NUM_OR_NULL},
    {"bandwidth.up_kbps_per_client", T_NUM_OR_NULL},
    {"bandwidth.down_bytes_per_client_s", T_NUM_OR_NULL},
    {"bandwidth.up_bytes_per_client_s", T_NUM_OR_NULL},
    {"packets.down_per_s", T_NUM_OR_NULL},
    {"packets.up_per_s", T_NUM_OR_NULL},
    {"bits_per_avatar_update", T_NUM_OR_NULL},
    {"snapshot_age_ms.p50", T_NUM_OR_NULL},
    {"snapshot_age_ms.p99", T_NUM_OR_NULL},
    {"input_latency_ms.p50", T_NUM_OR_NULL},
    {"input_latency_ms.p99", T_NUM_OR_NULL},
    {"input_latency_ms.samples", T_NUM},
    {"connect_ms.p50", T_NUM_OR_NULL},
    {"connect_ms.p99", T_NUM_OR_NULL},
    {"corrections.server", T_NUM_OR_NULL},
    {"corrections.clients", T_NUM},
    {"kicks", T_NUM},
    {"violations", T_OBJ},
    {"drops", T_OBJ},
    {"hostile", T_OBJ},
    {"memory.rss_bytes_per_client", T_NUM_OR_NULL},
};

static int type_ok(const cJSON *c, jtype t)
{
    switch (t) {
    case T_NUM: return cJSON_IsNumber(c);
    case T_STR: return cJSON_IsString(c);
    case T_OBJ: return cJSON_IsObject(c);
    case T_NUM_OR_NULL: return cJSON_IsNumber(c) || cJSON_IsNull(c);
    case T_STR_OR_NULL: return cJSON_IsString(c) || cJSON_IsNull(c);
    }
    return 0;
}

static void check_required(const cJSON *doc, int strict_numbers)
{
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        const cJSON *c = kzb_json_lookup(doc, required[i].path);
        cr_assert_not_null(c, "missing %s", required[i].path);
        cr_assert(type_ok(c, required[i].type), "%s has the wrong type", required[i].path);
        /* In a full embedded run nothing is unknown. */
        if (strict_numbers && required[i].type == T_NUM_OR_NULL)
            cr_assert(cJSON_IsNumber(c), "%s is null in a full run", required[i].path);
    }
}

static double num_at(const cJSON *doc, const char *path)
{
    const cJSON *c = kzb_json_lookup(doc, path);
    cr_assert(cJSON_IsNumber(c), "%s is not a number", path);
    return c->valuedouble;
}

Test(bench_report, json_has_every_required_field)
{
    kzb_report r;
    fill_report(&r);
    cJSON *doc = kzb_report_to_json(&r);
    cr_assert_not_null(doc);
    check_required(doc, 1);
    cr_assert_str_eq(kzb_json_lookup(doc, "schema")->valuestring, "kizuna-bench/3");
    cr_assert_str_eq(kzb_json_lookup(doc, "config.seed")->valuestring, "18446744073709551615");
    cr_assert_str_eq(kzb_json_lookup(doc, "config.mode")->valuestring, "embedded");
    cr_assert_eq(num_at(doc, "clients.target"), 1000.0);
    cr_assert_eq(num_at(doc, "violations.speed"), 3.0);
    cr_assert_eq(num_at(doc, "violations.acceleration"), 0.0);
    cr_assert_null(kzb_json_lookup(doc, "violations.chat_flood_caught"), "not a violation");
    cr_assert_eq(num_at(doc, "hostile.chat_flood_caught"), 10.0);
    cr_assert_eq(num_at(doc, "corrections.server"), 12.0);
    cr_assert_eq(num_at(doc, "corrections.clients"), 14.0);
    cr_assert_eq(num_at(doc, "drops.inbound_ring_full"), 0.0);
    cr_assert_eq(num_at(doc, "drops.bad_seal"), 7.0);
    cr_assert_float_eq(num_at(doc, "bandwidth.down_kbps_per_client"), 40.0, 1e-9);
    cr_assert_float_eq(num_at(doc, "server_cpu_us_per_client_tick"), 10.0, 1e-9);
    cr_assert_eq(num_at(doc, "tick_ms.max"), 5.0);
    cr_assert_eq(num_at(doc, "input_latency_ms.samples"), 1000.0);
    cr_assert_float_eq(num_at(doc, "input_latency_ms.p50"), 30.0, 0.1, "20 ms + 10 ms: the middle");
    cJSON_Delete(doc);

    /* External mode with nothing measured: same shape, nulls for unknowns. */
    kzb_report e;
    cr_assert_eq(kzb_report_init(&e, 0, NULL), 0);
    e.mode = KZB_MODE_EXTERNAL;
    doc = kzb_report_to_json(&e);
    check_required(doc, 0);
    cr_assert(cJSON_IsNull(kzb_json_lookup(doc, "tick_ms.p99")));
    cr_assert(cJSON_IsNull(kzb_json_lookup(doc, "config.impair")));
    cr_assert(cJSON_IsNull(kzb_json_lookup(doc, "corrections.server")),
              "an external server's corrections are unknown, not 0");
    cr_assert_str_eq(kzb_json_lookup(doc, "config.mode")->valuestring, "external");
    cJSON_Delete(doc);
    kzb_report_fini(&e);
    kzb_report_fini(&r);
}

Test(bench_report, bots_cost_and_counts)
{
    kzb_report r;
    fill_report(&r);
    kzb_report_summary s;
    kzb_report_summarize(&r, &s);
    /* 1.2 CPU-seconds over 300,000 client-ticks: 4 µs each; at 30 Hz one
     * core (1e6 µs a second) drives 1e6 / (30 * 4) bots. */
    cr_assert_float_eq(s.bots_cpu_us_per_client_tick, 4.0, 1e-9);
    cr_assert_float_eq(s.bots_per_core, 1e6 / 120.0, 1e-6);
    cr_assert_float_eq(s.snapshots_per_client_s, 29.0, 1e-9);
    cJSON *doc = kzb_report_to_json(&r);
    cr_assert_str_eq(kzb_json_lookup(doc, "config.bots")->valuestring, "thin");
    cr_assert_eq(num_at(doc, "bots.threads"), 2.0);
    cr_assert_float_eq(num_at(doc, "bots.cpu_s"), 1.2, 1e-12);
    cr_assert_float_eq(num_at(doc, "bots.cpu_us_per_client_tick"), 4.0, 1e-9);
    cr_assert_float_eq(num_at(doc, "bots.per_core"), 1e6 / 120.0, 1e-6);
    cr_assert_eq(num_at(doc, "bots.snapshots"), 290000.0);
    cr_assert_float_eq(num_at(doc, "bots.snapshots_per_client_s"), 29.0, 1e-9);
    cr_assert_eq(num_at(doc, "bots.acks"), 299000.0);
    cJSON_Delete(doc);

    /* Unknown bot CPU (or no client-ticks): null, never 0 or infinite. */
    r.bots_cpu_seconds = -1.0;
    kzb_report_summarize(&r, &s);
    cr_assert(isnan(s.bots_cpu_us_per_client_tick) && isnan(s.bots_per_core));
    doc = kzb_report_to_json(&r);
    cr_assert(cJSON_IsNull(kzb_json_lookup(doc, "bots.cpu_us_per_client_tick")));
    cr_assert(cJSON_IsNull(kzb_json_lookup(doc, "bots.per_core")));
    cJSON_Delete(doc);
    r.bots_cpu_seconds = 0.0;  /* a run too short for the CPU clock to move */
    kzb_report_summarize(&r, &s);
    cr_assert_float_eq(s.bots_cpu_us_per_client_tick, 0.0, 1e-12);
    cr_assert(isnan(s.bots_per_core), "no cost measured: no bots-per-core figure");
    kzb_report_fini(&r);

    /* A fresh report says its bots are full ones until told otherwise. */
    kzb_report e;
    cr_assert_eq(kzb_report_init(&e, 0, NULL), 0);
    doc = kzb_report_to_json(&e);
    cr_assert_str_eq(kzb_json_lookup(doc, "config.bots")->valuestring, "full");
    cr_assert(cJSON_IsNull(kzb_json_lookup(doc, "bots.cpu_s")));
    cJSON_Delete(doc);
    kzb_report_fini(&e);
}

/* The documented schema: rows "| `path` | type | ..." of the field table in
 * docs/BENCH-REPORT.md. Every documented field must be in the document with
 * its documented type, and every leaf of the document must be documented. */
static const char *doc_type_of(const char *md, const char *path, char *type, size_t cap)
{
    char needle[160];
    snprintf(needle, sizeof needle, "| `%s` | ", path);
    const char *row = strstr(md, needle);
    if (row == NULL)
        return NULL;
    row += strlen(needle);
    /* Markdown escapes the '|' of "number|null" in a table cell. */
    size_t n = 0;
    for (; *row != '\0' && *row != ' ' && n + 1 < cap; row++)
        if (*row != '\\')
            type[n++] = *row;
    type[n] = '\0';
    return type;
}

static int doc_type_ok(const cJSON *c, const char *type)
{
    if (strcmp(type, "number") == 0 || strcmp(type, "integer") == 0)
        return cJSON_IsNumber(c);
    if (strcmp(type, "number|null") == 0 || strcmp(type, "integer|null") == 0)
        return cJSON_IsNumber(c) || cJSON_IsNull(c);
    if (strcmp(type, "string") == 0)
        return cJSON_IsString(c);
    if (strcmp(type, "string|null") == 0)
        return cJSON_IsString(c) || cJSON_IsNull(c);
    if (strcmp(type, "object") == 0)
        return cJSON_IsObject(c);
    return 0;
}

static void check_documented(const char *md, const cJSON *node, char *path, size_t len)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, node) {
        snprintf(path + len, 256 - len, "%s%s", len ? "." : "", c->string);
        char type[32];
        /* Members of the three maps are documented as a pattern. */
        const char *dyn = strncmp(path, "violations.", 11) == 0 ? "violations.<kind>"
                        : strncmp(path, "drops.", 6) == 0       ? "drops.<reason>"
                        : strncmp(path, "hostile.", 8) == 0     ? "hostile.<outcome>"
                                                                : path;
        cr_assert_not_null(doc_type_of(md, dyn, type, sizeof type),
                           "%s is in the JSON but not in docs/BENCH-REPORT.md", dyn);
        cr_assert(doc_type_ok(c, type), "%s: documented as %s", path, type);
        if (cJSON_IsObject(c))
            check_documented(md, c, path, strlen(path));
        path[len] = '\0';
    }
}

Test(bench_report, json_matches_documented_schema)
{
    /* KZ_SOURCE_DIR comes from tests/CMakeLists.txt. */
    char md_path[512];
    snprintf(md_path, sizeof md_path, "%s/docs/BENCH-REPORT.md", KZ_SOURCE_DIR);
    FILE *f = fopen(md_path, "r");
    cr_assert_not_null(f, "cannot open %s", md_path);
    static char md[65536];
    size_t n = fread(md, 1, sizeof md - 1, f);
    fclose(f);
    md[n] = '\0';
    /* Only the "## Fields" section; other tables (CSV columns) differ. */
    char *fields = strstr(md, "\n## Fields\n");
    cr_assert_not_null(fields, "no \"## Fields\" section in %s", md_path);
    char *next = strstr(fields + 1, "\n## ");
    if (next != NULL)
        *next = '\0';

    kzb_report r;
    fill_report(&r);
    cJSON *doc = kzb_report_to_json(&r);
    char path[256] = "";
    check_documented(fields, doc, path, 0);
    /* ...and the other way: every documented row is in the document. */
    int rows = 0;
    for (const char *p = strstr(fields, "| `"); p != NULL; p = strstr(p + 1, "| `")) {
        char dpath[128], type[32];
        size_t k = strcspn(p + 3, "`");
        snprintf(dpath, sizeof dpath, "%.*s", (int)k, p + 3);
        if (strchr(dpath, '<') != NULL || doc_type_of(fields, dpath, type, sizeof type) == NULL)
            continue;
        const cJSON *c = kzb_json_lookup(doc, dpath);
        cr_assert_not_null(c, "documented field %s is not in the JSON", dpath);
        cr_assert(doc_type_ok(c, type), "%s: documented as %s", dpath, type);
        rows++;
    }
    cr_assert_gt(rows, 40, "the field table was not found (%d rows)", rows);
    cJSON_Delete(doc);
    kzb_report_fini(&r);
}

Test(bench_report, json_file_round_trip)
{
    make_tmp();
    char p[128];
    kzb_report r;
    fill_report(&r);
    cr_assert_eq(kzb_report_write_json(&r, tmp_path(p, sizeof p, "run.json")), 0);
    cJSON *doc = kzb_report_load_json(p);
    cr_assert_not_null(doc);
    check_required(doc, 1);
    cJSON *direct = kzb_report_to_json(&r);
    cr_assert(cJSON_Compare(doc, direct, 1), "the file holds the same document");
    cJSON_Delete(direct);
    cJSON_Delete(doc);
    kzb_report_fini(&r);
    remove_tmp();
}

/* ---- CSV ------------------------------------------------------------------ */

Test(bench_report, csv_header_and_one_row_per_second)
{
    make_tmp();
    char p[128];
    kzb_report r;
    fill_report(&r);
    cr_assert_eq(kzb_report_write_csv(&r, tmp_path(p, sizeof p, "series.csv")), 0);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f);
    char line[512];
    int rows = 0;
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "t_s,connected,tick_p50_ms,tick_p99_ms,server_cpu_pct,"
                           "down_kbps_per_client,up_kbps_per_client,corrections,drops\n");
    while (fgets(line, sizeof line, f) != NULL) {
        int commas = 0;
        for (const char *c = line; *c; c++)
            commas += *c == ',';
        cr_assert_eq(commas, 8, "row %d: %s", rows, line);
        if (rows == 0)
            cr_assert_str_eq(line, "1.000,1000,1.5000,3.0000,40.00,40.000,8.000,0,0\n");
        if (rows == 3) /* unknown CPU: an empty cell */
            cr_assert_str_eq(line, "4.000,1000,1.8000,3.6000,,43.000,8.000,3,0\n");
        rows++;
    }
    fclose(f);
    cr_assert_eq(rows, 10);
    cr_assert_eq(kzb_report_write_csv(&r, "/nonexistent-dir/x.csv"), KZ_EIO);
    kzb_report_fini(&r);
    remove_tmp();
}

/* ---- thresholds ----------------------------------------------------------- */

static cJSON *sample_doc(void)
{
    kzb_report r;
    fill_report(&r);
    r.server_cpu_seconds = -1.0; /* null: server_cpu_us_per_client_tick */
    cJSON *doc = kzb_report_to_json(&r);
    kzb_report_fini(&r);
    return doc;
}

Test(bench_report, thresholds_each_operator)
{
    cJSON *doc = sample_doc();
    /* tick_ms.max is 5 exactly; clients.connected_end 1000. */
    static const struct {
        const char *expr;
        int holds;
    } cases[] = {
        {"tick_ms.max<6", 1},  {"tick_ms.max<5", 0},   {"tick_ms.max<=5", 1},
        {"tick_ms.max<=4.9", 0}, {"tick_ms.max>4", 1},  {"tick_ms.max>5", 0},
        {"tick_ms.max>=5", 1}, {"tick_ms.max>=5.01", 0}, {"tick_ms.max==5", 1},
        {"tick_ms.max==4", 0}, {"clients.connected_end>=990", 1},
        {"drops.inbound_ring_full<=0", 1}, {"drops.bad_seal<=0", 0},
        {" violations.speed == 3 ", 1}, {"bandwidth.down_kbps_per_client < 1e2", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kzb_threshold t;
        cr_assert_eq(kzb_threshold_parse(cases[i].expr, &t), 0, "%s", cases[i].expr);
        double actual;
        cr_assert_eq(kzb_threshold_eval(&t, doc, &actual), cases[i].holds, "%s (actual %g)",
                     cases[i].expr, actual);
    }
    kzb_threshold t;
    cr_assert_eq(kzb_threshold_parse("tick_ms.p99 >= 2.5", &t), 0);
    cr_assert_str_eq(t.path, "tick_ms.p99");
    cr_assert_eq(t.op, KZB_CMP_GE);
    cr_assert_eq(t.value, 2.5);
    cJSON_Delete(doc);
}

Test(bench_report, thresholds_unknown_path_and_null, .init = cr_redirect_stderr)
{
    cJSON *doc = sample_doc();
    kzb_threshold t;
    double actual = 0;
    cr_assert_eq(kzb_threshold_parse("tick_ms.p98<10", &t), 0);
    cr_assert_eq(kzb_threshold_eval(&t, doc, &actual), KZ_EINVAL);
    cr_assert(isnan(actual));
    cr_assert_eq(kzb_threshold_parse("drops.no_such_reason<=0", &t), 0);
    cr_assert_eq(kzb_threshold_eval(&t, doc, NULL), KZ_EINVAL);
    cr_assert_eq(kzb_threshold_parse("tick_ms<10", &t), 0);
    cr_assert_eq(kzb_threshold_eval(&t, doc, NULL), KZ_EINVAL, "an object is not a number");
    cr_assert_eq(kzb_threshold_parse("tick_ms.p99.x<10", &t), 0);
    cr_assert_eq(kzb_threshold_eval(&t, doc, NULL), KZ_EINVAL, "a number has no keys");
    cr_assert_eq(kzb_threshold_parse("server_cpu_us_per_client_tick<10", &t), 0);
    cr_assert_eq(kzb_threshold_eval(&t, doc, NULL), KZ_EEMPTY);
    cJSON_Delete(doc);
}

Test(bench_report, thresholds_malformed_rejected, .init = cr_redirect_stderr)
{
    static const char *const bad[] = {
        "tick_ms.p99<", "<10", "tick_ms.p99~3", "tick_ms.p99=10", "tick_ms.p99<<10",
        "tick_ms.p99<10x", "tick_ms.p99<nan", "tick_ms.p99<inf", "tick_ms..p99<1",
        ".tick_ms<1", "tick_ms.<1", "tick ms<1", "", "   ", "tick_ms.p99=<1", "tick_ms.p99!=1",
        "tick_ms.p99<1 2",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kzb_threshold t = {.path = "untouched"};
        cr_assert_eq(kzb_threshold_parse(bad[i], &t), KZ_EINVAL, "accepted \"%s\"", bad[i]);
        cr_assert_str_eq(t.path, "untouched");
    }
    char longexpr[KZB_THRESHOLD_TEXT_LEN + 8];
    memset(longexpr, 'a', sizeof longexpr);
    memcpy(longexpr + sizeof longexpr - 4, "<10", 4);
    kzb_threshold t;
    cr_assert_eq(kzb_threshold_parse(longexpr, &t), KZ_EINVAL);
    fflush(stderr);
    /* The message says what is wrong and how it should look. */
    char buf[256];
    FILE *err = cr_get_redirected_stderr();
    cr_assert_not_null(fgets(buf, sizeof buf, err));
    cr_assert_not_null(strstr(buf, "bad threshold 'tick_ms.p99<'"), "%s", buf);
    cr_assert_not_null(strstr(buf, "no number after the operator"), "%s", buf);
}

Test(bench_report, thresholds_check_prints_pass_fail)
{
    cJSON *doc = sample_doc();
    const char *exprs[] = {"tick_ms.max<=5", "drops.bad_seal<=0", "drops.typo<=0",
                           "server_cpu_us_per_client_tick<10"};
    kzb_threshold t[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(kzb_threshold_parse(exprs[i], &t[i]), 0);
    char *buf = NULL;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(kzb_thresholds_check(f, t, 4, doc), 3);
    fclose(f);
    cr_assert_str_eq(buf,
                     "PASS tick_ms.max<=5 (actual 5)\n"
                     "FAIL drops.bad_seal<=0 (actual 7)\n"
                     "FAIL drops.typo<=0: unknown path (keys under \"drops\": "
                     "inbound_ring_full, bad_seal)\n"
                     "FAIL server_cpu_us_per_client_tick<10: not measured in this run (null)\n");
    free(buf);
    cr_assert_eq(kzb_thresholds_check(stdout, t, 1, doc), 0);
    cJSON_Delete(doc);
}

/* ---- compare -------------------------------------------------------------- */

/* The line of `table` that starts with `metric` followed by a space. */
static const char *table_row(const char *table, const char *metric, char *row, size_t cap)
{
    size_t n = strlen(metric);
    for (const char *p = table; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, metric, n) == 0 && p[n] == ' ') {
            snprintf(row, cap, "%.*s", (int)strcspn(p, "\n"), p);
            return row;
        }
    }
    return NULL;
}

Test(bench_report, compare_prints_ratios, .init = cr_redirect_stderr)
{
    make_tmp();
    char pa[128], pb[128], pc[128];
    kzb_report r;
    fill_report(&r);
    cr_assert_eq(kzb_report_write_json(&r, tmp_path(pa, sizeof pa, "a.json")), 0);
    r.bytes_down *= 2;                 /* down kbit/s doubles */
    r.server_cpu_seconds = 1.5;        /* CPU per client-tick halves */
    r.n_drops = 0;
    cr_assert_eq(kzb_report_add_drop(&r, "only_in_b", 4), 0);
    cr_assert_eq(kzb_report_write_json(&r, tmp_path(pb, sizeof pb, "b.json")), 0);

    char *buf = NULL;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(kzb_compare(f, pa, pb), 0);
    fclose(f);
    char row[256];
    cr_assert_not_null(table_row(buf, "bandwidth.down_kbps_per_client", row, sizeof row), "%s", buf);
    cr_assert_not_null(strstr(row, " 40 "), "%s", row);
    cr_assert_not_null(strstr(row, " 80 "), "%s", row);
    cr_assert_not_null(strstr(row, " 2.000"), "%s", row);
    cr_assert_not_null(table_row(buf, "server_cpu_us_per_client_tick", row, sizeof row));
    cr_assert_not_null(strstr(row, " 0.500"), "%s", row);
    cr_assert_not_null(table_row(buf, "clients.target", row, sizeof row));
    cr_assert_not_null(strstr(row, " 1.000"), "%s", row);
    cr_assert_not_null(table_row(buf, "drops.bad_seal", row, sizeof row), "A-only leaf");
    cr_assert_not_null(strstr(row, " 7 "), "%s", row);
    cr_assert_not_null(table_row(buf, "drops.only_in_b", row, sizeof row), "B-only leaf");
    cr_assert_not_null(strstr(row, " - "), "%s", row);
    cr_assert_not_null(table_row(buf, "drops.inbound_ring_full", row, sizeof row));
    cr_assert_not_null(strstr(row, "-"), "0 in A: no ratio: %s", row);
    cr_assert_null(table_row(buf, "config.scenario", row, sizeof row), "strings are not listed");
    free(buf);

    /* A missing file, a non-JSON file, another schema: non-zero. */
    FILE *null_out = fopen("/dev/null", "w");
    cr_assert_neq(kzb_compare(null_out, pa, tmp_path(pc, sizeof pc, "missing.json")), 0);
    f = fopen(tmp_path(pc, sizeof pc, "junk.json"), "w");
    fputs("{ not json", f);
    fclose(f);
    cr_assert_neq(kzb_compare(null_out, pc, pb), 0);
    f = fopen(tmp_path(pc, sizeof pc, "other.json"), "w");
    fputs("{\"schema\": \"kizuna-bench/0\", \"tick_ms\": {\"p99\": 1}}", f);
    fclose(f);
    cr_assert_neq(kzb_compare(null_out, pa, pc), 0);
    /* Version 2 documents lack only the bots' fields: they compare, and
     * what only the newer one has is listed without a ratio. */
    f = fopen(tmp_path(pc, sizeof pc, "v2.json"), "w");
    fputs("{\"schema\": \"kizuna-bench/2\", \"tick_ms\": {\"p99\": 2}}", f);
    fclose(f);
    buf = NULL;
    f = open_memstream(&buf, &len);
    cr_assert_eq(kzb_compare(f, pc, pa), 0);
    fclose(f);
    cr_assert_not_null(table_row(buf, "tick_ms.p99", row, sizeof row), "%s", buf);
    cr_assert_not_null(table_row(buf, "bots.acks", row, sizeof row), "%s", buf);
    cr_assert_not_null(strstr(row, " - "), "%s", row);
    free(buf);
    /* Version 1 documents meant other things by violations and corrections. */
    f = fopen(tmp_path(pc, sizeof pc, "v1.json"), "w");
    fputs("{\"schema\": \"kizuna-bench/1\", \"corrections\": 3}", f);
    fclose(f);
    cr_assert_neq(kzb_compare(null_out, pa, pc), 0);
    fclose(null_out);
    kzb_report_fini(&r);
    remove_tmp();
}

/* ---- plot ----------------------------------------------------------------- */

static int have_gnuplot(void)
{
    return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

Test(bench_report, plot_png_and_svg)
{
    if (!have_gnuplot())
        cr_skip_test("gnuplot is not installed");
    make_tmp();
    char csv[128], png[128], svg[128];
    kzb_report r;
    fill_report(&r);
    cr_assert_eq(kzb_report_write_csv(&r, tmp_path(csv, sizeof csv, "series.csv")), 0);
    cr_assert_eq(kzb_report_plot(tmp_path(png, sizeof png, "chart.png"), csv), 0);
    FILE *f = fopen(png, "rb");
    cr_assert_not_null(f);
    unsigned char sig[8] = {0};
    cr_assert_eq(fread(sig, 1, 8, f), 8);
    fclose(f);
    cr_assert_eq(memcmp(sig, "\x89PNG\r\n\x1a\n", 8), 0, "not a PNG file");
    struct stat st;
    cr_assert_eq(stat(png, &st), 0);
    cr_assert_gt(st.st_size, 1000);

    cr_assert_eq(kzb_report_plot(tmp_path(svg, sizeof svg, "chart.SVG"), csv), 0);
    cr_assert_eq(stat(svg, &st), 0);
    cr_assert_gt(st.st_size, 1000);
    kzb_report_fini(&r);
    remove_tmp();
}

Test(bench_report, plot_errors, .init = cr_redirect_stderr)
{
    make_tmp();
    char csv[128], out[128];
    kzb_report r;
    fill_report(&r);
    cr_assert_eq(kzb_report_write_csv(&r, tmp_path(csv, sizeof csv, "series.csv")), 0);
    cr_assert_eq(kzb_report_plot(tmp_path(out, sizeof out, "chart.jpg"), csv), KZ_EINVAL);
    cr_assert_eq(kzb_report_plot(tmp_path(out, sizeof out, "chart"), csv), KZ_EINVAL);
    cr_assert_eq(kzb_report_plot(tmp_path(out, sizeof out, "chart.png"),
                                 tmp_path(csv, sizeof csv, "missing.csv")), KZ_EIO);
    /* gnuplot missing: a clear error, not a shell's "not found". */
    tmp_path(csv, sizeof csv, "series.csv");
    char *saved_path = strdup(getenv("PATH") != NULL ? getenv("PATH") : "/usr/bin:/bin");
    cr_assert_eq(setenv("PATH", tmp_dir, 1), 0);
    cr_assert_eq(kzb_report_plot(tmp_path(out, sizeof out, "chart.png"), csv), KZ_EIO);
    cr_assert_eq(setenv("PATH", saved_path, 1), 0);
    free(saved_path);
    fflush(stderr);
    char buf[256] = "";
    FILE *err = cr_get_redirected_stderr();
    int found = 0;
    while (fgets(buf, sizeof buf, err) != NULL)
        found |= strstr(buf, "needs gnuplot, which is not on PATH") != NULL;
    cr_assert(found, "no message about gnuplot");
    kzb_report_fini(&r);
    remove_tmp();
}

/* ---- the server's counters, by name --------------------------------------- */

#define WORLD_NAME(id, name) name,
static const char *const world_names[] = {KZ_WORLD_COUNTERS(WORLD_NAME)};
#undef WORLD_NAME

/* A world counter set as kz_server_counters would hand it over. */
static void world_counters(kz_counters *c)
{
    cr_assert_eq(kz_counters_init(c, KZ_WORLD_C_COUNT, 1, world_names, NULL), 0);
}

static kzb_options run_options(int scenario)
{
    kzb_options o = {.clients = 200, .hz = 30, .seconds = 10, .scenario = scenario, .seed = 1};
    return o;
}

/* The JSON document of a finished run. */
static cJSON *result_doc(const kzb_options *o, const kzb_result *res)
{
    kzb_report rep;
    cr_assert_eq(kzb_report_init(&rep, res->n_series + 1u, NULL), 0);
    cr_assert_eq(kzb_report_fill(&rep, o, res), 0);
    cJSON *doc = kzb_report_to_json(&rep);
    cr_assert_not_null(doc);
    kzb_report_fini(&rep);
    return doc;
}

Test(bench_tally, each_violation_kind_is_reported_under_its_own_name)
{
    kz_counters wc;
    world_counters(&wc);
    kz_counter_block b = kz_counters_block(&wc, 0);
    /* An honest crowd turning too sharply: acceleration corrections only.
     * One chat violation; chat and voice lines refused by the rate limit. */
    kz_counter_add(b, KZ_WORLD_C_CORRECTIONS, 7);
    kz_counter_add(b, KZ_WORLD_C_VIOL_ACCEL, 5);
    kz_counter_add(b, KZ_WORLD_C_VIOL_CLOCK, 2);
    kz_counter_add(b, KZ_WORLD_C_VIOL_CHAT, 1);
    kz_counter_add(b, KZ_WORLD_C_DROP_RATE_CHAT, 3);
    kz_counter_add(b, KZ_WORLD_C_DROP_RATE_VOICE, 4);
    uint64_t base[KZ_WORLD_C_COUNT] = {0};
    kzb_result res;
    cr_assert_eq(kzb_result_init(&res, 4), 0);
    cr_assert_eq(kzb_tally_world(&res, &wc, base), 0);
    kzb_options o = run_options(KZB_SC_WANDER);
    cJSON *doc = result_doc(&o, &res);

    cr_assert_eq(num_at(doc, "violations.acceleration"), 5.0);
    cr_assert_eq(num_at(doc, "violations.speed"), 0.0, "a correction is not a speed violation");
    cr_assert_eq(num_at(doc, "violations.clock"), 2.0);
    cr_assert_eq(num_at(doc, "violations.chat_rate"), 1.0, "the violation, not the drops");
    cr_assert_eq(num_at(doc, "violations.voice_rate"), 0.0);
    cr_assert_eq(num_at(doc, "corrections.server"), 7.0);
    cr_assert_eq(num_at(doc, "drops.rate_limited_chat"), 3.0);
    cr_assert_eq(num_at(doc, "drops.rate_limited_voice"), 4.0);
    /* Every kind the server counts is listed, zeros included, and nothing
     * else is: the report invents no kinds. */
    uint32_t kinds = 0;
    for (uint32_t i = 0; i < KZ_WORLD_C_COUNT; i++) {
        if (strncmp(world_names[i], "violation_", 10) != 0)
            continue;
        char path[96];
        snprintf(path, sizeof path, "violations.%s", world_names[i] + 10);
        cr_assert(cJSON_IsNumber(kzb_json_lookup(doc, path)), "%s is missing", path);
        kinds++;
    }
    cr_assert_eq(kinds, KZ_VIOL_KINDS);
    cr_assert_eq(cJSON_GetArraySize(kzb_json_lookup(doc, "violations")), (int)kinds);
    cJSON_Delete(doc);
    kzb_result_fini(&res);
    kz_counters_fini(&wc);
}

Test(bench_tally, counts_only_the_window_and_merges_reasons_across_sets)
{
    kz_counters wc;
    world_counters(&wc);
    kz_counter_block b = kz_counters_block(&wc, 0);
    kz_counter_add(b, KZ_WORLD_C_CORRECTIONS, 100);  /* during connect and warm-up */
    kz_counter_add(b, KZ_WORLD_C_VIOL_SPEED, 40);
    uint64_t base[KZ_WORLD_C_COUNT];
    kz_counters_snapshot(&wc, base);
    kz_counter_add(b, KZ_WORLD_C_CORRECTIONS, 3);
    kz_counter_add(b, KZ_WORLD_C_VIOL_SPEED, 2);

    /* Another set (the transport's) with a reason of the same name. */
    static const char *const net_names[] = {"sessions", "drop_malformed_message", "drop_replay"};
    kz_counters nc;
    cr_assert_eq(kz_counters_init(&nc, 3, 1, net_names, NULL), 0);
    kz_counter_add(kz_counters_block(&nc, 0), 0, 9);
    kz_counter_add(kz_counters_block(&nc, 0), 1, 2);
    uint64_t net_base[3] = {0};
    kz_counter_add(b, KZ_WORLD_C_DROP_MALFORMED, 1);

    kzb_result res;
    cr_assert_eq(kzb_result_init(&res, 4), 0);
    cr_assert_eq(kzb_tally_world(&res, &wc, base), 0);
    cr_assert_eq(kzb_tally_counters(&res, &nc, net_base), 0);
    kzb_options o = run_options(KZB_SC_CROWD);
    cJSON *doc = result_doc(&o, &res);
    cr_assert_eq(num_at(doc, "corrections.server"), 3.0);
    cr_assert_eq(num_at(doc, "violations.speed"), 2.0);
    cr_assert_eq(num_at(doc, "drops.malformed_message"), 3.0, "both sets, one entry");
    cr_assert_eq(num_at(doc, "drops.replay"), 0.0, "zeros are listed");
    cr_assert_null(kzb_json_lookup(doc, "drops.sessions"), "not a drop");
    cr_assert_null(kzb_json_lookup(doc, "violations.sessions"), "not a violation");
    cJSON_Delete(doc);
    kzb_result_fini(&res);
    kz_counters_fini(&nc);
    kz_counters_fini(&wc);
}

Test(bench_tally, hostile_outcomes_are_not_violations)
{
    kzb_result res;
    cr_assert_eq(kzb_result_init(&res, 4), 0);
    cr_assert_eq(kzb_named_add(res.caught, &res.n_caught, "speed_hack_bots", 5), 0);
    cr_assert_eq(kzb_named_add(res.caught, &res.n_caught, "speed_hack_caught", 5), 0);
    res.honest_punished = 1;
    kzb_options o = run_options(KZB_SC_HOSTILE);
    cJSON *doc = result_doc(&o, &res);
    cr_assert_eq(num_at(doc, "hostile.speed_hack_caught"), 5.0);
    cr_assert_eq(num_at(doc, "hostile.honest_bots_kicked"), 1.0);
    cr_assert_eq(cJSON_GetArraySize(kzb_json_lookup(doc, "violations")), 0,
                 "no server counters here, and no outcomes either");
    cJSON_Delete(doc);

    /* Outside the hostile scenario the object is there, and empty. */
    kzb_result plain;
    cr_assert_eq(kzb_result_init(&plain, 4), 0);
    o = run_options(KZB_SC_WANDER);
    doc = result_doc(&o, &plain);
    cr_assert(cJSON_IsObject(kzb_json_lookup(doc, "hostile")));
    cr_assert_eq(cJSON_GetArraySize(kzb_json_lookup(doc, "hostile")), 0);
    cJSON_Delete(doc);
    kzb_result_fini(&plain);
    kzb_result_fini(&res);
}

Test(bench_tally, names_too_long_or_too_many_are_refused)
{
    kzb_result res;
    cr_assert_eq(kzb_result_init(&res, 0), 0);
    char longname[KZB_REPORT_NAME_LEN + 1];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_assert_eq(kzb_named_add(res.drops, &res.n_drops, longname, 1), KZ_EINVAL);
    cr_assert_eq(kzb_named_add(res.drops, &res.n_drops, "", 1), KZ_EINVAL);
    for (uint32_t i = 0; i < KZB_MAX_NAMED; i++) {
        char name[16];
        snprintf(name, sizeof name, "r%u", i);
        cr_assert_eq(kzb_named_add(res.drops, &res.n_drops, name, i), 0);
    }
    cr_assert_eq(kzb_named_add(res.drops, &res.n_drops, "one_more", 1), KZ_EFULL);
    cr_assert_eq(kzb_named_add(res.drops, &res.n_drops, "r3", 1), 0, "existing names still add");
    cr_assert_eq(res.drops[3].count, 4);
    kzb_result_fini(&res);
}

/* ---- bots: honest motion passes the server's validation -------------------- */

#define BOT_CLIENTS 200u
#define BOT_SECONDS 90u

typedef struct bot_sim {
    kzb_bot_plan plan;
    kz_validate_config vcfg;
    kz_validate_client val;
    kz_avatar_state self, intent;
    uint32_t hz, bot_tick;
    uint64_t rng;
    uint32_t violations;   /* commands the validator flagged */
    uint32_t first_bad;    /* tick of the first, 0: none */
    uint32_t kinds;        /* KZ_VIOL_* bits of every flagged command */
    double walked;         /* meters */
    double closest;        /* nearest approach to a target, meters */
} bot_sim;

static uint32_t sim_rand(bot_sim *b)
{
    b->rng = b->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(b->rng >> 33);
}

/* The server's validator with `limits` at `hz`, every other limit at its
 * default for that rate. */
static void sim_init(bot_sim *b, int scenario, uint32_t i, uint64_t seed, uint32_t hz,
                     const kzb_motion_limits *limits)
{
    memset(b, 0, sizeof *b);
    kzb_plan_init(&b->plan, scenario, i, BOT_CLIENTS, seed, limits);
    memset(&b->vcfg, 0, sizeof b->vcfg);
    b->vcfg.tick_hz = hz;
    b->vcfg.max_speed = limits->max_speed;
    b->vcfg.max_accel = limits->max_accel;
    cr_assert_eq(kz_validate_config_resolve(&b->vcfg), KZ_OK);
    kz_validate_client_init(&b->val);
    kz_avatar_state_rest(&b->self);
    kz_avatar_state_rest(&b->intent);
    float r = kzb_scenario_radius(scenario, BOT_CLIENTS);
    b->self.pos[0] = r * 0.3f * (float)((int)(i % 5u) - 2);
    b->self.pos[2] = r * 0.2f;
    b->hz = hz;
    b->rng = seed * 977u + i;
    b->closest = 1e9;
}

/* One client input tick. The bot thread's passes do not line up with the
 * client's input ticks: before a command the bot may have stepped not at
 * all (a stalled thread), once, or twice (two passes straddling the
 * command). The client sends whatever intent is newest; the server checks
 * it and integrates the move it accepted. */
static void sim_tick(bot_sim *b, int scenario, uint32_t t, kz_time_ns t0)
{
    uint32_t passes = sim_rand(b) % 4u;  /* 0: stalled, 1-2: one step, 3: two */
    uint32_t steps = passes == 0 ? 0 : passes == 3 ? 2 : 1;
    for (uint32_t k = 0; k < steps; k++) {
        kzb_plan_step(&b->plan, scenario, BOT_CLIENTS, b->bot_tick, b->hz, &b->self, &b->intent);
        cr_assert_eq(kzb_plan_step(&b->plan, scenario, BOT_CLIENTS, b->bot_tick, b->hz, &b->self,
                                   &b->intent), 0, "a second pass in the same tick changes nothing");
        b->bot_tick++;
    }
    kz_wire_command cmd;
    kz_wire_command_from(&b->intent, b->vcfg.max_speed, &cmd);
    cmd.tick = t;
    kz_time_ns now = t0 + (kz_time_ns)t * KZ_NS_PER_S / b->hz;
    uint32_t v = kz_validate_command(&b->vcfg, &b->val, &cmd, now, NULL);
    if (v != 0) {
        b->kinds |= v;
        if (b->violations++ == 0)
            b->first_bad = t;
    }
    float dx = (float)cmd.move[0] / KZ_SNAP_VEL_UNITS / (float)b->hz;
    float dz = (float)cmd.move[2] / KZ_SNAP_VEL_UNITS / (float)b->hz;
    b->self.pos[0] += dx;
    b->self.pos[2] += dz;
    b->walked += sqrt((double)dx * dx + (double)dz * dz);
    double tx = b->plan.target[0] - b->self.pos[0], tz = b->plan.target[1] - b->self.pos[2];
    double d = sqrt(tx * tx + tz * tz);
    if (d < b->closest)
        b->closest = d;
}

static void sim_run(bot_sim *b, int scenario, uint32_t seconds)
{
    const kz_time_ns t0 = 1000 * KZ_NS_PER_S;
    for (uint32_t t = 1; t <= seconds * b->hz; t++)
        sim_tick(b, scenario, t, t0);
}

static const kzb_motion_limits server_defaults = {8.0f, 40.0f};

Test(bench_bots, honest_bots_never_trip_the_server_validator)
{
    const uint32_t rates[] = {30, 60};
    for (int sc = 0; sc < KZB_SC_COUNT; sc++) {
        for (size_t h = 0; h < 2; h++) {
            for (uint32_t i = 0; i < 10; i++) {
                bot_sim b;
                sim_init(&b, sc, i, 1 + i / 5u, rates[h], &server_defaults);
                if (b.plan.hostile != KZB_HOSTILE_NONE)
                    continue;  /* hostile bots misbehave on purpose */
                sim_run(&b, sc, BOT_SECONDS);
                cr_assert_eq(b.violations, 0,
                             "%s bot %u at %u Hz: %u commands corrected (kinds 0x%x), "
                             "first at tick %u", kzb_scenario_name(sc), i, rates[h],
                             b.violations, b.kinds, b.first_bad);
                /* ...and they do walk: a bot standing still passes trivially. */
                cr_assert_gt(b.walked, 30.0, "%s bot %u walked only %.1f m",
                             kzb_scenario_name(sc), i, b.walked);
                /* Commuters reach their hotspot (wanderers change their mind
                 * every 2-6 s, mostly before they arrive). */
                if (sc == KZB_SC_COMMUTE)
                    cr_assert_lt(b.closest, 5.0, "commute bot %u never reached a hotspot", i);
            }
        }
    }
}

Test(bench_bots, bots_keep_inside_a_stricter_server)
{
    /* A server far stricter than people walk: 2 m/s^2, 1 m/s. */
    const kzb_motion_limits strict = {1.0f, 2.0f};
    for (uint32_t i = 0; i < 10; i++) {
        bot_sim b;
        sim_init(&b, KZB_SC_WANDER, i, 7, 30, &strict);
        sim_run(&b, KZB_SC_WANDER, 60);
        cr_assert_eq(b.violations, 0, "bot %u: %u commands corrected (kinds 0x%x), first at "
                     "tick %u", i, b.violations, b.kinds, b.first_bad);
        cr_assert_gt(b.walked, 10.0, "bot %u walked only %.1f m", i, b.walked);
    }
}

Test(bench_bots, bots_turn_and_speed_up_like_people)
{
    const uint32_t hz = 30;
    const float dt = 1.0f / (float)hz, eps = 1e-4f;
    for (uint32_t i = 0; i < 10; i++) {
        kzb_bot_plan p;
        kzb_plan_init(&p, KZB_SC_WANDER, i, BOT_CLIENTS, 3, &server_defaults);
        kz_avatar_state self, in;
        kz_avatar_state_rest(&self);
        float prev_v[2] = {0, 0}, prev_yaw = 0;
        uint32_t turns = 0;
        for (uint32_t t = 0; t < 60u * hz; t++) {
            cr_assert_eq(kzb_plan_step(&p, KZB_SC_WANDER, BOT_CLIENTS, t, hz, &self, &in), 1);
            float sp0 = sqrtf(prev_v[0] * prev_v[0] + prev_v[1] * prev_v[1]);
            float sp1 = sqrtf(in.vel[0] * in.vel[0] + in.vel[2] * in.vel[2]);
            cr_assert_leq(fabsf(sp1 - sp0), KZB_WALK_ACCEL * dt + eps, "bot %u tick %u: speed jump",
                          i, t);
            cr_assert_leq(sp1, 1.4f + eps);
            /* Turning while walking is bounded; a standing bot may face anywhere. */
            if (sp0 > KZB_WALK_ACCEL * dt) {
                float turn = fabsf(atan2f(sinf(in.yaw - prev_yaw), cosf(in.yaw - prev_yaw)));
                cr_assert_leq(turn, KZB_TURN_RATE * dt + eps, "bot %u tick %u: turned %f rad", i, t,
                              turn);
                turns += turn > 0.01f;
            }
            self.pos[0] += in.vel[0] * dt;
            self.pos[2] += in.vel[2] * dt;
            prev_v[0] = in.vel[0];
            prev_v[1] = in.vel[2];
            prev_yaw = in.yaw;
        }
        cr_assert_gt(turns, 0, "bot %u walked only straight lines", i);
    }
}

Test(bench_bots, a_reconnected_bot_starts_standing)
{
    bot_sim b;
    sim_init(&b, KZB_SC_WANDER, 0, 5, 30, &server_defaults);
    sim_run(&b, KZB_SC_WANDER, 10);
    cr_assert_eq(b.violations, 0);
    cr_assert_gt(fabsf(b.plan.vel[0]) + fabsf(b.plan.vel[1]), 0.5f, "the bot is walking");
    /* A new session: the server's validator starts over from standing. */
    kzb_plan_stand(&b.plan);
    kz_validate_client_init(&b.val);
    sim_run(&b, KZB_SC_WANDER, 5);
    cr_assert_eq(b.violations, 0, "kinds 0x%x, first at tick %u", b.kinds, b.first_bad);
}
