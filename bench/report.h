/*
 * kizuna-bench report: what a load-test run measured, turned into the forms
 * people and CI read. The runner fills a kzb_report while it runs (three
 * histograms, totals, named counters, one point per second); when the run
 * ends this module derives the per-client figures and prints a text
 * summary, a JSON document (schema "kizuna-bench/3", docs/BENCH-REPORT.md),
 * a CSV time series and a gnuplot chart. Thresholds ("tick_ms.p99<10") are
 * checked against the JSON document, so every figure the document holds can
 * gate CI, and two documents can be compared side by side.
 *
 * Tuned for one report per process: nothing here is on a hot path except
 * the histogram records, which are the plain kz_hist ones.
 *
 * Ownership and threading: the caller owns the kzb_report storage
 * (kzb_report_init / kzb_report_fini); init allocates the histograms and the
 * time-series array, nothing else in the struct allocates. The struct is
 * not thread-safe: bot and server threads record into histograms of their
 * own (kzb_report_hist_config gives the layout) and one thread merges them
 * in. Output functions allocate freely (cJSON trees, file buffers) and are
 * called from one thread once the run is over. Errors that a user can cause
 * (a bad path, a malformed threshold, gnuplot missing) are explained on
 * stderr, prefixed "kizuna-bench:", and returned as a negative KZ_E code.
 */
#ifndef KZB_REPORT_H
#define KZB_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include <kizuna/hist.h>

/* Version 2 split corrections (server / clients) and moved the hostile
 * scenario's outcomes out of violations. Version 3 added the bots' kind
 * (config.bots) and what the bots did and cost (bots.*); it only adds
 * fields, so a version 2 document can still be compared with one. */
#define KZB_REPORT_SCHEMA "kizuna-bench/3"
#define KZB_REPORT_SCHEMA_PREVIOUS "kizuna-bench/2"

/* Named counters (violation kinds, drop reasons, hostile outcomes):
 * capacity per list, and the longest name including its terminating zero.
 * The server has about 50 drop reasons and violation kinds together. */
#define KZB_REPORT_MAX_NAMED 96u
#define KZB_REPORT_NAME_LEN 48u

/* Layout of the report's histograms. Values are nanoseconds: 1 ns steps at
 * the bottom, 3 significant digits (relative error below 0.1%), up to 10
 * minutes; about 250 KiB per histogram. */
#define KZB_REPORT_HIST_LOWEST_NS 1u
#define KZB_REPORT_HIST_HIGHEST_NS UINT64_C(600000000000)
#define KZB_REPORT_HIST_DIGITS 3u

typedef enum kzb_mode {
    KZB_MODE_EMBEDDED = 0, /* the bench hosts the server in-process */
    KZB_MODE_EXTERNAL = 1  /* --connect to a server elsewhere: no tick times, no CPU */
} kzb_mode;

/* One second of the run: the live progress line and a CSV row. */
typedef struct kzb_report_point {
    double t;                  /* seconds since the bots started */
    uint32_t connected;        /* clients connected at the end of the second */
    double tick_p50_ms, tick_p99_ms; /* server tick time in this second */
    double server_cpu_pct;     /* of one core; negative or NaN: unknown */
    double down_kbps, up_kbps; /* kbit/s (1000 bit/s) per connected client */
    uint64_t corrections;      /* corrections the clients were told of, in this second */
    uint64_t drops;            /* drops the server counted, in this second */
} kzb_report_point;

/* One named counter. Violation kinds and drop reasons are the server's
 * counter names without their "violation_" / "drop_" prefix ("speed",
 * "inbound_ring_full"). */
typedef struct kzb_report_count {
    char name[KZB_REPORT_NAME_LEN];
    uint64_t count;
} kzb_report_count;

/*
 * Everything a run produced. The runner sets the fields directly, except
 * the counted lists and the series, which go through kzb_report_add_*.
 * Unknown doubles are negative (or NaN); they print as "n/a" and null.
 */
typedef struct kzb_report {
    /* configuration, echoed in every output */
    const char *scenario;      /* borrowed; must outlive the output calls */
    kzb_mode mode;
    uint32_t clients_target;
    uint32_t tick_hz;
    uint32_t seconds;          /* measured seconds asked for */
    const char *impair;        /* borrowed impairment profile text; NULL: none */
    uint64_t seed;
    const char *bots;          /* borrowed: "full" or "thin"; init sets "full" */
    uint32_t bot_threads;

    /* results of the measured window */
    uint32_t connected_end, connected_peak;
    double measure_seconds;    /* the window's actual length */
    kz_hist tick_ns;           /* server tick durations; empty in external mode */
    kz_hist snapshot_age_ns;   /* server tick -> client apply, CO-corrected by the runner */
    kz_hist input_latency_ns;  /* a bot's input sent -> first snapshot that applied it */
    kz_hist connect_ns;        /* connect request -> connected, per client */
    double server_cpu_seconds; /* user + system CPU of the server; < 0: unknown */
    uint64_t client_ticks;     /* sum over measured ticks of connected clients */
    uint64_t measured_ticks;   /* the ticks client_ticks sums over; 0 = unknown */
    uint64_t bytes_down, bytes_up;     /* UDP payload bytes, all clients */
    uint64_t packets_down, packets_up; /* datagrams, all clients */
    double bits_per_avatar_update;     /* < 0: unknown */
    /* Commands the server's validation corrected (its "corrections"
     * counter); known in embedded mode only. */
    uint64_t corrections_server;
    /* Corrections the clients were told of (KZ_EV_CORRECTION): the server
     * moved a client's predicted avatar. */
    uint64_t corrections_clients;
    uint64_t kicks, timeouts;
    uint64_t rss_bytes;        /* resident set of the server process; 0: unknown */
    /* The bots over the window: CPU of every bot thread (< 0: unknown),
     * snapshots they took in (decoded, or header read for thin bots), and
     * input messages they sent, each acknowledging the newest snapshot. */
    double bots_cpu_seconds;
    uint64_t snapshots_received, acks_sent;

    /* filled by kzb_report_add_violation / _add_drop / _add_hostile / _add_point */
    kzb_report_count violations[KZB_REPORT_MAX_NAMED]; /* the server's, by kind */
    uint32_t n_violations;
    kzb_report_count drops[KZB_REPORT_MAX_NAMED];      /* the server's, by reason */
    uint32_t n_drops;
    kzb_report_count hostile[KZB_REPORT_MAX_NAMED];    /* hostile scenario outcomes */
    uint32_t n_hostile;
    kzb_report_point *series;  /* cap_series slots, owned */
    uint32_t n_series, cap_series;

    kz_allocator alloc;
} kzb_report;

/* Figures derived from a report, in the units of the JSON document. NaN
 * stands for "cannot be known" (no samples, no clients, external mode). */
typedef struct kzb_report_pcts {
    double p50, p90, p99, p999, max, mean; /* milliseconds */
    uint64_t samples, out_of_range;
} kzb_report_pcts;

typedef struct kzb_report_summary {
    double clients_mean;          /* client_ticks / ticks, see kzb_report_summarize */
    kzb_report_pcts tick_ms, snapshot_age_ms, connect_ms, input_latency_ms;
    double cpu_us_per_client_tick;
    double down_kbps_per_client, up_kbps_per_client;
    double down_bytes_per_client_s, up_bytes_per_client_s;
    double packets_down_per_s, packets_up_per_s;
    double packets_down_per_client_s, packets_up_per_client_s;
    double bits_per_avatar_update;
    double rss_bytes_per_client;
    double bots_cpu_us_per_client_tick;   /* bots' CPU for one client's tick */
    double bots_per_core;                 /* 1e6 / (tick_hz * the figure above) */
    double snapshots_per_client_s;
} kzb_report_summary;

/* The histogram configuration the report uses, for per-thread histograms
 * that are merged into it cell by cell. */
void kzb_report_hist_config(kz_hist_config *cfg);

/*
 * Zeroes `r`, sets unknown doubles to -1, and allocates the three
 * histograms and room for `max_points` per-second points (0 is allowed: no
 * series). `alloc` may be NULL for the default allocator. Returns 0 or
 * KZ_ENOMEM; on failure nothing is left allocated (fini is harmless).
 */
KZ_MUST_CHECK int kzb_report_init(kzb_report *r, uint32_t max_points, const kz_allocator *alloc);
void kzb_report_fini(kzb_report *r);

/* Appends one second. Returns 0, or KZ_EFULL when max_points are taken. */
KZ_MUST_CHECK int kzb_report_add_point(kzb_report *r, const kzb_report_point *p);

/*
 * Adds `count` to the violation kind / drop reason / hostile outcome
 * `name`, creating it if needed (count 0 creates it: list every known kind
 * and reason so that thresholds can name it even when it stayed at zero).
 * Names are copied. Returns 0, KZ_EINVAL (empty or longer than
 * KZB_REPORT_NAME_LEN - 1) or KZ_EFULL.
 */
KZ_MUST_CHECK int kzb_report_add_violation(kzb_report *r, const char *name, uint64_t count);
KZ_MUST_CHECK int kzb_report_add_drop(kzb_report *r, const char *name, uint64_t count);
KZ_MUST_CHECK int kzb_report_add_hostile(kzb_report *r, const char *name, uint64_t count);

/*
 * Derives the per-client figures.
 *   ticks      = measured_ticks, else samples in tick_ns, else
 *                tick_hz * measure_seconds
 *   clients    = client_ticks / ticks, or connected_end if that is 0
 *   kbit/s per client  = bytes * 8 / 1000 / measure_seconds / clients
 *   CPU per client-tick = server_cpu_seconds * 1e6 / client_ticks  (µs)
 *   bots' CPU per client-tick = bots_cpu_seconds * 1e6 / client_ticks (µs)
 *   bots per core      = 1e6 / (tick_hz * bots' CPU per client-tick)
 *   RSS per client     = rss_bytes / connected_end
 */
void kzb_report_summarize(const kzb_report *r, kzb_report_summary *s);

/* One progress line (newline-terminated), for stderr once a second. */
void kzb_report_progress_line(FILE *out, const kzb_report_point *p);

/* The text summary. Returns 0, or KZ_EIO if writing failed. */
KZ_MUST_CHECK int kzb_report_print(FILE *out, const kzb_report *r);

/* The "kizuna-bench/3" document (docs/BENCH-REPORT.md); the caller frees it
 * with cJSON_Delete. NULL only when cJSON ran out of memory. */
cJSON *kzb_report_to_json(const kzb_report *r);

/* Writes the JSON document / the per-second CSV (a header and one row per
 * point) to `path`. Return 0, KZ_ENOMEM or KZ_EIO. */
KZ_MUST_CHECK int kzb_report_write_json(const kzb_report *r, const char *path);
KZ_MUST_CHECK int kzb_report_write_csv(const kzb_report *r, const char *path);

/*
 * Draws the CSV written by kzb_report_write_csv with gnuplot: server tick
 * p50/p99 (ms) over time in the top panel, down/up kbit/s per client in the
 * bottom one. The format follows `out_path`'s extension: ".png" (pngcairo
 * if gnuplot has it, else png) or ".svg". Returns 0; KZ_EINVAL for another
 * extension or a path gnuplot cannot quote; KZ_EIO when gnuplot is not on
 * PATH, the CSV cannot be read, or gnuplot fails or writes nothing.
 */
KZ_MUST_CHECK int kzb_report_plot(const char *out_path, const char *csv_path);

/* ---- thresholds ----------------------------------------------------------- */

#define KZB_THRESHOLD_PATH_LEN 128u
#define KZB_THRESHOLD_TEXT_LEN 192u

typedef enum kzb_cmp { KZB_CMP_LT, KZB_CMP_LE, KZB_CMP_GT, KZB_CMP_GE, KZB_CMP_EQ } kzb_cmp;

typedef struct kzb_threshold {
    char path[KZB_THRESHOLD_PATH_LEN]; /* dotted path into the JSON document */
    kzb_cmp op;
    double value;
    char text[KZB_THRESHOLD_TEXT_LEN]; /* the expression as given */
} kzb_threshold;

/*
 * Parses "PATH OP NUMBER" (spaces allowed around the operator), OP one of
 * <, <=, >, >=, ==; PATH is dot-separated keys of [A-Za-z0-9_-]. Whether
 * the path exists is only known against a document (kzb_threshold_eval).
 * Returns 0, or KZ_EINVAL with the reason on stderr; `t` is untouched then.
 */
KZ_MUST_CHECK int kzb_threshold_parse(const char *expr, kzb_threshold *t);

/*
 * Looks up t->path in `doc` and compares. Returns 1 when the threshold
 * holds, 0 when it does not, KZ_EINVAL when the path names no number in
 * the document (unknown key, or an object), KZ_EEMPTY when it names a null
 * (not measured in this run). `actual` (may be NULL) gets the value, NaN
 * when there is none.
 */
int kzb_threshold_eval(const kzb_threshold *t, const cJSON *doc, double *actual);

/*
 * Evaluates `n` thresholds and prints one line each to `out`:
 *   PASS tick_ms.p99<10 (actual 4.21)
 *   FAIL drops.inbound_ring_full<=0 (actual 17)
 *   FAIL tick_ms.p9<10: unknown path (keys under "tick_ms": p50, p90, ...)
 * Returns how many failed; one that cannot be evaluated counts as failed.
 */
uint32_t kzb_thresholds_check(FILE *out, const kzb_threshold *t, uint32_t n, const cJSON *doc);

/* The item at a dotted path ("bandwidth.down_kbps_per_client"), or NULL. */
const cJSON *kzb_json_lookup(const cJSON *doc, const char *path);

/* ---- files and comparison ------------------------------------------------- */

/* Reads and parses a kizuna-bench/3 (or /2) document. Returns NULL with the
 * reason on stderr (missing file, not JSON, other schema). Free with
 * cJSON_Delete. */
cJSON *kzb_report_load_json(const char *path);

/*
 * Prints every numeric leaf of the two documents side by side, A's order
 * first, then leaves only B has, with the ratio B/A ("-" when A is 0 or a
 * side lacks the value). Returns 0, or KZ_EINVAL when a file is missing or
 * is neither a kizuna-bench/3 nor a /2 document (reason on stderr), KZ_EIO
 * if writing failed.
 */
KZ_MUST_CHECK int kzb_compare(FILE *out, const char *path_a, const char *path_b);

#endif /* KZB_REPORT_H */
