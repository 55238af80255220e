/*
 * Bounded lock-free multi-producer/single-consumer ring of fixed-size
 * elements, for fan-in such as audit events from every thread to one
 * writer. Producers never block each other for longer than one
 * compare-and-swap; a full ring refuses the push instead of waiting.
 *
 * The design is the per-slot sequence number scheme (D. Vyukov's bounded
 * queue): a slot's sequence tells producers whether it is free for a given
 * lap and tells the consumer whether its element has been published, so a
 * producer that stalls between claiming and publishing delays only the
 * consumer, never other producers.
 *
 * Ownership and threading: the caller owns the kz_mpsc storage
 * (kz_mpsc_init / kz_mpsc_fini). Any number of threads may push
 * concurrently; one thread at a time may pop. Per-producer order is kept:
 * two pushes by one thread are popped in the order they were made.
 */
#ifndef KZ_MPSC_H
#define KZ_MPSC_H

#include <kizuna/ring.h>

#ifdef __cplusplus
extern "C" {
#endif

/* As kz_spsc: fields marked "atomic" (and each slot's sequence) are plain
 * integers touched only with the __atomic builtins. */
typedef struct kz_mpsc {
    uint8_t *slots;       /* capacity slots of `stride` bytes: seq, element */
    uint64_t mask;
    uint32_t elem_size;
    uint32_t stride;
    kz_allocator alloc;
    char pad0_[KZ_CACHE_LINE];
    uint64_t tail;        /* atomic: next position producers claim */
    char pad1_[KZ_CACHE_LINE];
    uint64_t head;        /* atomic: next position the consumer reads */
    char pad2_[KZ_CACHE_LINE];
} kz_mpsc;

/* As kz_spsc_init: capacity a power of two >= 2, elem_size > 0.
 * Returns 0 or KZ_ENOMEM. */
KZ_API KZ_MUST_CHECK int kz_mpsc_init(kz_mpsc *q, uint32_t capacity, uint32_t elem_size,
                                      const kz_allocator *alloc);
KZ_API void kz_mpsc_fini(kz_mpsc *q);

/* Any thread: copies one element in. Returns 0 or KZ_EFULL. */
KZ_API KZ_MUST_CHECK int kz_mpsc_push(kz_mpsc *q, const void *elem);
/* Consumer: copies the oldest published element out. Returns 0 or
 * KZ_EEMPTY (also while the oldest claimed slot is still being written). */
KZ_API KZ_MUST_CHECK int kz_mpsc_pop(kz_mpsc *q, void *elem);
/* Consumer: pops up to `n` elements into `elems`; returns how many. */
KZ_API uint32_t kz_mpsc_pop_n(kz_mpsc *q, void *elems, uint32_t n);
/* Approximate number of claimed elements (snapshot). */
KZ_API uint32_t kz_mpsc_size(const kz_mpsc *q);

#ifdef __cplusplus
}
#endif

#endif /* KZ_MPSC_H */
