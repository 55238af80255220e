/*
 * kizuna-bench runner: an embedded server (or an external one), thousands
 * of real clients (kz_client: the same library and crypto an engine uses)
 * spread over bot threads, a scenario driving them, and the measurements
 * the report prints.
 *
 * Threads: the server's simulation thread (embedded mode; plus the
 * transport's I/O threads), `bot_threads` bot threads each owning a share
 * of the clients, and the main thread, which samples once a second and
 * prints progress. Threads share only counters published with atomics and
 * the per-second samples handed over under a mutex.
 */
#ifndef KZB_RUNNER_H
#define KZB_RUNNER_H

#include <stdint.h>

#include <kizuna/counters.h>
#include <kizuna/hist.h>
#include <kizuna/impair.h>

#include "report.h"

#define KZB_MAX_NAMED KZB_REPORT_MAX_NAMED

/* Bot kinds (--bots). A full bot is a player's client: it decodes every
 * snapshot, predicts and interpolates. A thin bot is a header-only client
 * (kz_client_config.header_only): it opens every snapshot, reads the
 * header, acknowledges the tick and sends the scenario's inputs, and
 * skips the body and prediction, so one core drives many more of them. */
#define KZB_BOTS_FULL 0
#define KZB_BOTS_THIN 1

typedef struct kzb_options {
    uint32_t clients;         /* default 1000 */
    uint32_t hz;              /* default 30 */
    uint32_t seconds;         /* measured seconds; default 20 */
    uint32_t warmup;          /* seconds after everyone connected, not measured; default 3 */
    int scenario;             /* KZB_SC_* */
    const char *impair;       /* kz_impair profile text or NULL */
    const char *connect;      /* IPV4:PORT[,IPV4:PORT...] of external servers (at most
                                 KZ_TOKEN_MAX_ADDRESSES; bot i's token lists them rotated
                                 to start at i mod N, bench/addrs.h), or NULL */
    const char *keys;         /* key directory for --connect */
    uint64_t seed;
    uint64_t protocol_id;
    uint32_t bot_threads;     /* default: 1 */
    uint32_t max_visible;     /* embedded server: default 100 */
    uint32_t io_threads;      /* embedded server: I/O hosts; 0 = one per 4,000 clients */
    uint32_t connect_rate;    /* new clients per second; 0 = 1000 embedded, 40 external */
    const char *audit;        /* embedded server: keep an audit log in this file */
    int quiet;                /* no progress lines */
    int bots;                 /* KZB_BOTS_*; default full */
    /* Run `sh -c window_cmd kzb-window start|end` when the measured window
     * starts and ends, and wait for it (NULL: none). */
    const char *window_cmd;
    /* Called, when set, on the main thread as the measured window starts
     * ("start") and ends ("end"), before window_cmd runs. */
    void (*window_fn)(void *ctx, const char *which);
    void *window_ctx;
    uint64_t first_id;        /* client id of the first bot (then +1 each); 0 = 1 */
} kzb_options;

/* One second of the run, for the progress line and the time series. */
typedef kzb_report_point kzb_point;

typedef struct kzb_named {
    char name[KZB_REPORT_NAME_LEN];
    uint64_t count;
} kzb_named;

typedef struct kzb_result {
    uint32_t clients_target, connected_end, connected_peak;
    double measure_seconds;
    kz_hist tick_ns;          /* measured window; empty in external mode */
    kz_hist snapshot_age_ns;  /* coordinated-omission corrected */
    kz_hist input_latency_ns; /* input sent -> first snapshot that applied it, bot's clock */
    kz_hist connect_ns;
    double server_cpu_seconds;  /* measured window, embedded only (else -1) */
    uint64_t client_ticks;    /* sum over measured ticks of connected clients */
    uint64_t measured_ticks;  /* the ticks that sum runs over */
    uint64_t bytes_down, bytes_up, packets_down, packets_up;  /* measured window, all clients */
    double bits_per_avatar_update;
    uint64_t corrections;              /* corrections the clients were told of */
    uint64_t server_corrections;       /* embedded: commands the server's validation corrected */
    uint64_t kicks, timeouts;
    kzb_named violations[KZB_MAX_NAMED];  /* embedded: the server's, by kind */
    uint32_t n_violations;
    kzb_named drops[KZB_MAX_NAMED];       /* embedded: the server's, by reason */
    uint32_t n_drops;
    kzb_named caught[KZB_MAX_NAMED];   /* hostile: per misbehaviour, bots caught */
    uint32_t n_caught;
    uint64_t honest_punished;          /* hostile: honest bots corrected or kicked */
    double bots_cpu_seconds;           /* measured window, every bot thread */
    uint64_t snapshots;                /* measured window: snapshots the bots took in */
    uint64_t acks;                     /* measured window: input messages (each acknowledges) */
    uint64_t rss_bytes;                /* process */
    uint64_t server_bytes;             /* embedded: Kizuna tables of the server */
    kzb_point *series;
    uint32_t n_series;
} kzb_result;

/* bench/result.c: zeroes `r` and allocates its histograms and room for
 * `max_seconds` (plus a few) points. 0 or KZ_ENOMEM (nothing left
 * allocated). fini frees and zeroes; harmless after a failed init. */
int kzb_result_init(kzb_result *r, uint32_t max_seconds);
void kzb_result_fini(kzb_result *r);

/* Runs the benchmark; prints progress on stderr once a second (unless
 * quiet) through `progress`. 0 on a completed run, else a KZ_E code with a
 * message on stderr. */
typedef void (*kzb_progress_fn)(void *ctx, const kzb_point *p);
int kzb_run(const kzb_options *o, kzb_result *r, kzb_progress_fn progress, void *ctx);

/* ---- bench/result.c: the server's counters under their own names --------- */

/* Adds `count` to the entry `name` of arr[0..*n), creating it (a count of
 * 0 too) when it is new. Returns 0, KZ_EINVAL (empty or too long a name) or
 * KZ_EFULL (KZB_MAX_NAMED entries taken). */
int kzb_named_add(kzb_named *arr, uint32_t *n, const char *name, uint64_t count);

/*
 * Adds what every counter of `set` counted since `base` (its
 * kz_counters_snapshot at the start of the window) to `r`, by name:
 * "violation_<kind>" under violations as <kind>, "drop_<reason>" under
 * drops as <reason>, zeros included; other counters are not tallied.
 * Returns 0, or the first kzb_named_add error (the rest is still tallied).
 */
int kzb_tally_counters(kzb_result *r, const kz_counters *set, const uint64_t *base);

/* The world's counters (kz_server_counters): as kzb_tally_counters, plus
 * the commands the server's validation corrected and the mean encoded bits
 * per avatar update. */
int kzb_tally_world(kzb_result *r, const kz_counters *world, const uint64_t *base);

/* ---- bench/emit.c ------------------------------------------------------- */

/* Copies a finished run into a report initialised with room for r->n_series
 * points: figures, the server's counts by name, hostile outcomes. Returns 0,
 * or non-zero when a list or the series was full (what fitted is in). */
int kzb_report_fill(kzb_report *rep, const kzb_options *o, const kzb_result *r);

/* bench/emit.c: prints the report and writes the files asked for;
 * returns the exit status (0, 1 a file failed, 3 a threshold failed). */
int kzb_report_emit(const kzb_options *o, const kzb_result *r, const char *json, const char *csv,
                    const char *plot, const char *const *thresholds, uint32_t n_thresholds);

#endif /* KZB_RUNNER_H */
