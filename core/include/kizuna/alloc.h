/*
 * Allocator hooks. Every Kizuna object that needs memory takes a
 * kz_allocator in its config; a zeroed allocator means the C library's.
 * Engines route Kizuna's memory into their own heaps this way, and tests
 * use the counting allocator below to prove that a path allocates nothing.
 *
 * Threading: the hooks are called from whichever thread calls the Kizuna
 * function that needs memory; an allocator shared by objects that live on
 * different threads must be thread-safe. The counting allocator is.
 */
#ifndef KZ_ALLOC_H
#define KZ_ALLOC_H

#include <kizuna/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kz_allocator {
    void *ctx;
    /* Returns `size` bytes aligned to `align` (a power of two, at most 4096),
     * or NULL. Never called with size 0. */
    void *(*alloc)(void *ctx, size_t size, size_t align);
    /* Releases a block from alloc(); `size` is the size it was asked for.
     * Never called with NULL. */
    void (*free)(void *ctx, void *ptr, size_t size);
} kz_allocator;

/* The allocator that uses the C library (aligned_alloc/free). */
KZ_API kz_allocator kz_allocator_default(void);

/* Fills a zeroed `a` (both hooks NULL) with the default; keeps one that is
 * set. Asserts if only one of the two hooks is set. */
KZ_API void kz_allocator_resolve(kz_allocator *a);

/* Allocates through `a` (resolved first); NULL on failure or size 0. */
KZ_API void *kz_alloc(const kz_allocator *a, size_t size, size_t align);
/* Like kz_alloc, then zero-fills. */
KZ_API void *kz_calloc(const kz_allocator *a, size_t size, size_t align);
/* Frees through `a`; NULL is ignored. */
KZ_API void kz_free(const kz_allocator *a, void *ptr, size_t size);

/*
 * A counting allocator that wraps another one. Counters are plain integers
 * updated with the GCC/Clang __atomic builtins, so it may be shared across
 * threads; read them through the accessors below while others allocate. A test takes a snapshot of `allocs` before a
 * path and checks it after; `fail_after` makes allocation number
 * fail_after + 1 (and later ones) fail, to test out-of-memory paths.
 */
typedef struct kz_counting_alloc {
    kz_allocator inner;
    uint64_t allocs;     /* successful allocations so far */
    uint64_t frees;
    uint64_t failed;     /* allocations refused by fail_after or inner */
    uint64_t live_bytes; /* bytes allocated and not yet freed */
    uint64_t peak_bytes;
    int64_t fail_after;  /* < 0: never fail on purpose */
} kz_counting_alloc;

/* Initializes `c` over `inner` (NULL: the default allocator). */
KZ_API void kz_counting_alloc_init(kz_counting_alloc *c, const kz_allocator *inner);
/* An allocator whose hooks count into `c`; `c` must outlive its users. */
KZ_API kz_allocator kz_counting_alloc_allocator(kz_counting_alloc *c);
/* Atomic reads of the counters, safe while other threads allocate. */
KZ_API uint64_t kz_counting_alloc_allocs(const kz_counting_alloc *c);
KZ_API uint64_t kz_counting_alloc_live_bytes(const kz_counting_alloc *c);

#ifdef __cplusplus
}
#endif

#endif /* KZ_ALLOC_H */
