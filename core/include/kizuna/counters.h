/*
 * Counters: enum-indexed arrays of uint64_t, one block per thread, merged
 * by readers.
 *
 * Each module declares its counters as an enum plus a table of names; a
 * kz_counters set holds one block of those counters for every thread that
 * updates them. A thread increments only its own block, with a relaxed load
 * and store of its own cache lines (no read-modify-write instruction, no
 * line shared with another writer), so counting a dropped packet on the
 * hot path costs about as much as incrementing a local variable. A reader
 * (the admin HTTP thread, a test, the bench report) sums the blocks with
 * relaxed loads; totals are exact once the writers are quiet and never
 * torn while they run.
 *
 * Threading: block i may be written by one thread at a time; kz_counters_get
 * and kz_counters_snapshot may run on any thread concurrently with writers.
 */
#ifndef KZ_COUNTERS_H
#define KZ_COUNTERS_H

#include <kizuna/alloc.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kz_counters {
    uint64_t *cells;          /* n_threads blocks of `stride` cells */
    const char *const *names; /* n_counters names, borrowed, static */
    uint32_t n_counters;
    uint32_t n_threads;
    uint32_t stride;          /* cells per block, rounded up to a cache line */
    kz_allocator alloc;
} kz_counters;

/* One thread's block: what a hot path holds on to. */
typedef struct kz_counter_block {
    uint64_t *cells;
} kz_counter_block;

/*
 * Prepares a set of `n_counters` counters for `n_threads` writer threads.
 * `names` (may be NULL) must stay valid for the set's lifetime. Returns 0,
 * KZ_EINVAL (zero counts), or KZ_ENOMEM.
 */
KZ_API KZ_MUST_CHECK int kz_counters_init(kz_counters *c, uint32_t n_counters,
                                          uint32_t n_threads, const char *const *names,
                                          const kz_allocator *alloc);
KZ_API void kz_counters_fini(kz_counters *c);

/* Block of writer thread `thread` (< n_threads, asserted). */
KZ_API kz_counter_block kz_counters_block(const kz_counters *c, uint32_t thread);

/* Adds `n` to counter `id` of a block. Only the block's thread may call
 * it; `id` < n_counters is the caller's contract (unchecked: hot path). */
static inline void kz_counter_add(kz_counter_block b, uint32_t id, uint64_t n)
{
    /* The cells are plain uint64_t so the header compiles as C and as C++
     * (which has no _Atomic before C++23). The GCC/Clang builtins are
     * defined on plain objects, unlike a cast to an _Atomic type. */
    __atomic_store_n(&b.cells[id], __atomic_load_n(&b.cells[id], __ATOMIC_RELAXED) + n,
                     __ATOMIC_RELAXED);
}

static inline void kz_counter_inc(kz_counter_block b, uint32_t id)
{
    kz_counter_add(b, id, 1);
}

/* Sum of counter `id` over every block. */
KZ_API uint64_t kz_counters_get(const kz_counters *c, uint32_t id);
/* Sums of every counter into out[0..n_counters). */
KZ_API void kz_counters_snapshot(const kz_counters *c, uint64_t *out);
/* Name of counter `id`, or NULL when the set has no names. */
KZ_API const char *kz_counters_name(const kz_counters *c, uint32_t id);
/* Zeroes every block. Writers must be quiet (e.g. between benchmark runs). */
KZ_API void kz_counters_reset(kz_counters *c);

#ifdef __cplusplus
}
#endif

#endif /* KZ_COUNTERS_H */
