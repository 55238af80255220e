/*
 * Multi-thread stress checks of the core primitives, shared by the Criterion
 * suites and by a plain driver (main.c) that the ThreadSanitizer build runs:
 * Criterion's sandbox cannot start under TSan, so the concurrent paths get
 * a runner of their own there. Each function returns the number of
 * violations it saw (0 = pass) and fills a short description of the first.
 */
#ifndef KZ_TESTS_THREADS_STRESS_H
#define KZ_TESTS_THREADS_STRESS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t violations;
    uint64_t delivered;
    char first[160];
} kzt_result;

/* Producer and consumer threads move `items` 24-byte records through a
 * 1024-slot SPSC ring with mixed single and batched calls; checks order,
 * contents, loss and duplication. */
kzt_result kzt_spsc_stress(uint64_t items);

/* `producers` threads push `per_producer` records each into a 4096-slot
 * MPSC ring; the consumer checks per-producer order, loss, duplication. */
kzt_result kzt_mpsc_stress(uint32_t producers, uint64_t per_producer);

/* `writers` threads count into their own blocks while the caller reads the
 * totals; checks monotonic reads and exact final sums. */
kzt_result kzt_counters_stress(uint32_t writers, uint64_t per_writer);


/* A threaded kz_netserver (two I/O threads) and one client on the caller's
 * thread exchange `messages` sealed echoes over loopback; checks that each
 * comes back intact and in order on the reliable channel. */
kzt_result kzt_transport_echo(uint32_t messages);

/* The world server in threaded mode (two I/O hosts) with `clients` clients
 * on loopback for `seconds` of real time; checks that every client stays
 * connected and applies snapshots at >= 80% of the tick rate. */
kzt_result kzt_world_threaded(uint32_t clients, uint32_t seconds);

/* The audit log's writer fed by `producers` threads appending
 * `per_producer` records each (tests/threads/audit_threads.c). */
kzt_result kzt_audit_append_stress(uint32_t producers, uint64_t per_producer);

/* The replicators on one scripted world for `ticks` ticks, run once in
 * host order on the caller's thread and once on two threads fed through
 * the world's hand-over while the next tick is written: every client's
 * snapshots must be bit-identical (tests/threads/replicator_diff.c). */
kzt_result kzt_replicator_differential(uint32_t ticks);

/* Resume with two I/O hosts: every one of `clients` clients changes
 * address once, one is paused 3 s; every session must survive
 * (tests/threads/resume_threaded.c). */
kzt_result kzt_resume_threaded(uint32_t clients);

#endif /* KZ_TESTS_THREADS_STRESS_H */
