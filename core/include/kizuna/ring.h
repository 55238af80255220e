/*
 * Bounded lock-free single-producer/single-consumer ring of fixed-size
 * elements. It carries messages between an I/O thread and the simulation
 * thread, so it is tuned for one steady producer and one steady consumer
 * moving small records (8-64 bytes) in batches.
 *
 * Ownership and threading: the caller owns the kz_spsc storage (a value
 * type: kz_spsc_init / kz_spsc_fini). Exactly one thread may call the push
 * functions and exactly one thread may call the pop functions at a time;
 * kz_spsc_size may be called from either. Pushes publish with release order
 * and pops acquire, so an element's bytes are visible to the consumer before
 * the element is.
 *
 * Indices are 64-bit counters that never wrap in practice (2^64 elements)
 * and are reduced with a mask, so the ring holds exactly `capacity` items.
 * Each side keeps a private copy of the other side's index and only reloads
 * the shared one when the copy says the ring is full or empty: in the
 * steady state a push or pop touches no cache line the other thread writes.
 */
#ifndef KZ_RING_H
#define KZ_RING_H

#include <kizuna/alloc.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Padding that separates fields written by different threads. Padding
 * rather than alignas keeps the struct safe to place in storage of any
 * alignment (a malloc'd engine object, say) while still never sharing a
 * 64-byte line between the producer's and the consumer's fields. */
#define KZ_CACHE_LINE 64

/* Fields marked "atomic" are plain integers, so the struct is the same in
 * C and C++; the library touches them only with the GCC/Clang __atomic
 * builtins. Callers must not read or write any field. */
typedef struct kz_spsc {
    /* Read-only after init. */
    uint8_t *buf;
    uint64_t mask;
    uint32_t elem_size;
    kz_allocator alloc;
    char pad0_[KZ_CACHE_LINE];
    /* Producer side. */
    uint64_t tail;        /* atomic: next slot to write, published */
    uint64_t head_cache;  /* producer's last view of head */
    char pad1_[KZ_CACHE_LINE];
    /* Consumer side. */
    uint64_t head;        /* atomic: next slot to read, published */
    uint64_t tail_cache;  /* consumer's last view of tail */
    char pad2_[KZ_CACHE_LINE];
} kz_spsc;

/*
 * Prepares `r` to hold `capacity` elements of `elem_size` bytes each.
 * `capacity` must be a power of two >= 2 and elem_size > 0 (asserted).
 * `alloc` may be NULL for the default allocator.
 * Returns 0, or KZ_ENOMEM (then `r` needs no fini).
 */
KZ_API KZ_MUST_CHECK int kz_spsc_init(kz_spsc *r, uint32_t capacity, uint32_t elem_size,
                                      const kz_allocator *alloc);
/* Frees the buffer. No thread may be using the ring. */
KZ_API void kz_spsc_fini(kz_spsc *r);

/* Producer: copies one element in. Returns 0 or KZ_EFULL. */
KZ_API KZ_MUST_CHECK int kz_spsc_push(kz_spsc *r, const void *elem);
/* Producer: copies up to `n` elements in, in order; returns how many fit. */
KZ_API uint32_t kz_spsc_push_n(kz_spsc *r, const void *elems, uint32_t n);

/* Consumer: copies the oldest element out. Returns 0 or KZ_EEMPTY. */
KZ_API KZ_MUST_CHECK int kz_spsc_pop(kz_spsc *r, void *elem);
/* Consumer: copies up to `n` oldest elements out; returns how many. */
KZ_API uint32_t kz_spsc_pop_n(kz_spsc *r, void *elems, uint32_t n);

/* Elements currently queued; exact on either side's own thread, a snapshot
 * from any other. */
KZ_API uint32_t kz_spsc_size(const kz_spsc *r);
KZ_API uint32_t kz_spsc_capacity(const kz_spsc *r);

#ifdef __cplusplus
}
#endif

#endif /* KZ_RING_H */
