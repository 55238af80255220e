/*
 * MPSC ring with per-slot sequence numbers. For the slot at position p
 * (index p & mask) the sequence reads:
 *   p              free, a producer at position p may claim it;
 *   p + 1          published, the consumer at position p may read it;
 *   p + capacity   consumed, free again for the producer one lap later.
 * Producers claim positions by CAS on `tail`; the consumer owns `head`.
 */
#include <string.h>

#include <kizuna/mpsc.h>

#include "assert.h"

/* head, tail and the slot sequences are plain uint64_t (the struct is
 * public and C++-compatible) and are only ever accessed through the
 * GCC/Clang __atomic builtins, which are defined on plain objects; casting
 * them to an _Atomic type would be undefined. A slot's sequence sits at the
 * start of the slot, 8-byte aligned because the stride is a multiple of 8
 * and the slot array is cache-line aligned. */
static uint64_t *kz__slot_seq(const kz_mpsc *q, uint64_t pos)
{
    return (uint64_t *)(void *)(q->slots + (pos & q->mask) * q->stride);
}

static uint8_t *kz__slot_data(const kz_mpsc *q, uint64_t pos)
{
    return q->slots + (pos & q->mask) * q->stride + sizeof(uint64_t);
}

int kz_mpsc_init(kz_mpsc *q, uint32_t capacity, uint32_t elem_size, const kz_allocator *alloc)
{
    KZ_ASSERT(q != NULL);
    KZ_ASSERT(capacity >= 2 && (capacity & (capacity - 1)) == 0);
    KZ_ASSERT(elem_size > 0 && elem_size <= UINT32_MAX - 16);
    memset(q, 0, sizeof *q);
    q->alloc = alloc ? *alloc : kz_allocator_default();
    kz_allocator_resolve(&q->alloc);
    /* Keep every slot's sequence 8-byte aligned. */
    q->stride = (uint32_t)((sizeof(uint64_t) + elem_size + 7u) & ~7u);
    q->slots = kz_alloc(&q->alloc, (size_t)capacity * q->stride, KZ_CACHE_LINE);
    if (q->slots == NULL)
        return KZ_ENOMEM;
    q->mask = capacity - 1;
    q->elem_size = elem_size;
    /* Plain stores are enough: the queue is not shared until init returns,
     * and the memset above zeroed head and tail. */
    for (uint64_t pos = 0; pos < capacity; pos++)
        *kz__slot_seq(q, pos) = pos;
    return KZ_OK;
}

void kz_mpsc_fini(kz_mpsc *q)
{
    kz_free(&q->alloc, q->slots, (size_t)(q->mask + 1) * q->stride);
    q->slots = NULL;
}

int kz_mpsc_push(kz_mpsc *q, const void *elem)
{
    uint64_t pos = __atomic_load_n(&q->tail, __ATOMIC_RELAXED);
    for (;;) {
        uint64_t seq = __atomic_load_n(kz__slot_seq(q, pos), __ATOMIC_ACQUIRE);
        int64_t lag = (int64_t)(seq - pos);
        if (lag == 0) {
            /* Free for this lap: try to claim it. On failure `pos` is
             * reloaded with the position another producer left. */
            if (__atomic_compare_exchange_n(&q->tail, &pos, pos + 1, 1, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
                break;
        } else if (lag < 0) {
            /* Still holds the element from one lap ago: the ring is full. */
            return KZ_EFULL;
        } else {
            /* Another producer claimed it first; catch up. */
            pos = __atomic_load_n(&q->tail, __ATOMIC_RELAXED);
        }
    }
    memcpy(kz__slot_data(q, pos), elem, q->elem_size);
    __atomic_store_n(kz__slot_seq(q, pos), pos + 1, __ATOMIC_RELEASE);
    return KZ_OK;
}

int kz_mpsc_pop(kz_mpsc *q, void *elem)
{
    uint64_t pos = __atomic_load_n(&q->head, __ATOMIC_RELAXED);
    uint64_t seq = __atomic_load_n(kz__slot_seq(q, pos), __ATOMIC_ACQUIRE);
    if (seq != pos + 1)
        return KZ_EEMPTY;
    memcpy(elem, kz__slot_data(q, pos), q->elem_size);
    __atomic_store_n(kz__slot_seq(q, pos), pos + q->mask + 1, __ATOMIC_RELEASE);
    __atomic_store_n(&q->head, pos + 1, __ATOMIC_RELAXED);
    return KZ_OK;
}

uint32_t kz_mpsc_pop_n(kz_mpsc *q, void *elems, uint32_t n)
{
    uint8_t *out = elems;
    uint32_t got = 0;
    while (got < n && kz_mpsc_pop(q, out + (size_t)got * q->elem_size) == KZ_OK)
        got++;
    return got;
}

uint32_t kz_mpsc_size(const kz_mpsc *q)
{
    uint64_t head = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
    uint64_t tail = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE);
    uint64_t n = tail > head ? tail - head : 0;
    return n > q->mask + 1 ? (uint32_t)(q->mask + 1) : (uint32_t)n;
}
