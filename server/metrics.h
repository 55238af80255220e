/*
 * The figures kizuna-server shows on its admin endpoint (server/admin.h):
 * a copy of the world's, the transport's and the gate's counters, the
 * clients and sessions, a cumulative tick-time histogram and the audit
 * log's statistics, rendered in the Prometheus text exposition format
 * (version 0.0.4), plus the liveness and readiness state behind /healthz
 * and /readyz.
 *
 * Workload: the simulation thread publishes about four times a second;
 * scrapers render a few times a minute. Publishing never allocates and
 * holds the lock only for one copy of the figures; rendering copies them
 * out under the lock and formats without it.
 *
 * Ownership and threading: the caller owns the kzs_metrics (create /
 * destroy). kzs_metrics_publish must be called from one thread only, the
 * simulation thread that owns the kz_server (kz_server_tick_hist_take and
 * the world counters are simulation-thread state). Every other function
 * may be called from any thread at any time, concurrently with publish;
 * destroy only once the admin endpoint is stopped and publishing is over.
 */
#ifndef KZS_METRICS_H
#define KZS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <kizuna/audit.h>
#include <kizuna/server.h>

/* /healthz fails when the last publish is older than this. */
#define KZS_METRICS_STALE_NS (5ull * 1000 * 1000 * 1000)

/* Readiness, as kzs_metrics_readiness reports it. */
#define KZS_READY_NOT_YET 0  /* never set ready: starting */
#define KZS_READY 1          /* listening and not draining */
#define KZS_READY_DRAINING 2 /* was ready, now is not: shutting down */
#define KZS_READY_AUDIT 3    /* ready, but refusing new clients while the audit log
                                cannot be written (audit_on_failure = refuse) */

typedef struct kzs_metrics kzs_metrics;

/* Monotonic clock in nanoseconds for liveness; called from the publishing
 * thread and from the HTTP thread, so it must be thread-safe. */
typedef uint64_t (*kzs_clock_fn)(void *ctx);

/* An empty set of figures (nothing published, not ready). NULL on no
 * memory. Records the start time shown as kizuna_process_start_time_seconds,
 * so create it when the program starts. */
kzs_metrics *kzs_metrics_create(void);
/* Frees everything. NULL is ignored. */
void kzs_metrics_destroy(kzs_metrics *m);

/*
 * Simulation thread, about 4 times a second and once at the end: copies
 * every figure (world, transport and gate counters, clients and sessions,
 * the tick-time histogram of the interval since the last publish, taken
 * with kz_server_tick_hist_take, and the audit statistics when `audit` is
 * not NULL) into the shared copy under the lock, and records the clock's
 * time as the last publish (liveness).
 *
 * It must be the only caller of kz_server_tick_hist_take on `srv`: the
 * histogram it shows is the sum of what it took, so its _count equals the
 * ticks counter only if nothing else takes ticks away.
 */
void kzs_metrics_publish(kzs_metrics *m, kz_server *srv, kz_audit *audit);

/*
 * Simulation thread, before the first publish: a server in a fleet role
 * also shows its bus counters (`library`: kz__fleet_counters; `program`:
 * the NATS side, server/bus.h), either may be NULL, as the layer "bus":
 * kizuna_bus_<name>_total, and kizuna_drops_total{layer="bus",reason=..}
 * for the drop_ ones (names without their "bus_" prefix). Both sets must
 * outlive the publishing.
 */
void kzs_metrics_set_bus(kzs_metrics *m, const kz_counters *library, const kz_counters *program);

/* Any thread: `ready` non-zero when the server listens and is not
 * draining. Clearing it after it was set reports "draining". */
void kzs_metrics_set_ready(kzs_metrics *m, int ready);
/* Any thread: non-zero while new clients are refused because the audit
 * log cannot be written; shown as kizuna_audit_refusing_admissions and,
 * while otherwise ready, as KZS_READY_AUDIT. */
void kzs_metrics_set_audit_refusing(kzs_metrics *m, int refusing);
/* Any thread: KZS_READY_NOT_YET, KZS_READY, KZS_READY_DRAINING or
 * KZS_READY_AUDIT. */
int kzs_metrics_readiness(kzs_metrics *m);

/*
 * Any thread: 1 when the last publish is at most the stale threshold old
 * (KZS_METRICS_STALE_NS unless set), else 0 with one line of text (no
 * newline) saying why in why[0..n).
 */
int kzs_metrics_health(kzs_metrics *m, char *why, size_t n);

/* Replaces the liveness clock (default CLOCK_MONOTONIC); NULL restores the
 * default. For tests, and for hosts that keep their own monotonic time. */
void kzs_metrics_set_clock(kzs_metrics *m, kzs_clock_fn fn, void *ctx);
/* Replaces the stale threshold of kzs_metrics_health (0: the default). */
void kzs_metrics_set_stale_after(kzs_metrics *m, uint64_t ns);

/*
 * Any thread: the Prometheus text exposition format (version 0.0.4) of the
 * last published figures, in a malloc'd NUL-terminated buffer the caller
 * frees; *len (may be NULL) receives its length without the NUL. NULL on
 * no memory.
 */
char *kzs_metrics_render(kzs_metrics *m, size_t *len);

#endif /* KZS_METRICS_H */
