/*
 * SPSC ring. Two indices, each written by one side only; the release store
 * of an index publishes the element bytes copied before it, and the acquire
 * load on the other side makes them visible. Batch operations copy at most
 * two contiguous runs (before and after the wrap point) with memcpy.
 */
#include <string.h>

#include <kizuna/ring.h>

#include "assert.h"

/* The public struct declares the indices as plain integers so the header
 * stays usable from C++ and bindings. Only this file touches them, always
 * through the GCC/Clang __atomic builtins, which are defined on plain
 * objects; casting a plain object to an _Atomic type would be undefined. */

int kz_spsc_init(kz_spsc *r, uint32_t capacity, uint32_t elem_size, const kz_allocator *alloc)
{
    KZ_ASSERT(r != NULL);
    KZ_ASSERT(capacity >= 2 && (capacity & (capacity - 1)) == 0);
    KZ_ASSERT(elem_size > 0);
    memset(r, 0, sizeof *r);
    r->alloc = alloc ? *alloc : kz_allocator_default();
    kz_allocator_resolve(&r->alloc);
    r->buf = kz_alloc(&r->alloc, (size_t)capacity * elem_size, KZ_CACHE_LINE);
    if (r->buf == NULL)
        return KZ_ENOMEM;
    r->mask = capacity - 1;
    r->elem_size = elem_size;
    /* The memset above zeroed head and tail; init happens before the ring
     * is shared with another thread. */
    return KZ_OK;
}

void kz_spsc_fini(kz_spsc *r)
{
    kz_free(&r->alloc, r->buf, (size_t)(r->mask + 1) * r->elem_size);
    r->buf = NULL;
}

/* Copies `n` elements between the ring slot at index `at` and `flat`,
 * splitting the copy at the end of the buffer. */
static void kz__spsc_copy_in(kz_spsc *r, uint64_t at, const uint8_t *flat, uint32_t n)
{
    uint64_t cap = r->mask + 1, slot = at & r->mask;
    uint64_t first = n < cap - slot ? n : cap - slot;
    memcpy(r->buf + slot * r->elem_size, flat, first * r->elem_size);
    memcpy(r->buf, flat + first * r->elem_size, (n - first) * r->elem_size);
}

static void kz__spsc_copy_out(const kz_spsc *r, uint64_t at, uint8_t *flat, uint32_t n)
{
    uint64_t cap = r->mask + 1, slot = at & r->mask;
    uint64_t first = n < cap - slot ? n : cap - slot;
    memcpy(flat, r->buf + slot * r->elem_size, first * r->elem_size);
    memcpy(flat + first * r->elem_size, r->buf, (n - first) * r->elem_size);
}

/* Free slots as the producer sees them, refreshing its copy of head only
 * when the cached view cannot satisfy `want`. */
static uint64_t kz__spsc_room(kz_spsc *r, uint64_t tail, uint32_t want)
{
    uint64_t cap = r->mask + 1;
    uint64_t room = cap - (tail - r->head_cache);
    if (room < want) {
        r->head_cache = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
        room = cap - (tail - r->head_cache);
    }
    return room;
}

static uint64_t kz__spsc_avail(kz_spsc *r, uint64_t head, uint32_t want)
{
    uint64_t avail = r->tail_cache - head;
    if (avail < want) {
        r->tail_cache = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
        avail = r->tail_cache - head;
    }
    return avail;
}

int kz_spsc_push(kz_spsc *r, const void *elem)
{
    return kz_spsc_push_n(r, elem, 1) == 1 ? KZ_OK : KZ_EFULL;
}

uint32_t kz_spsc_push_n(kz_spsc *r, const void *elems, uint32_t n)
{
    uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);
    uint64_t room = kz__spsc_room(r, tail, n);
    if (n > room)
        n = (uint32_t)room;
    if (n == 0)
        return 0;
    kz__spsc_copy_in(r, tail, elems, n);
    __atomic_store_n(&r->tail, tail + n, __ATOMIC_RELEASE);
    return n;
}

int kz_spsc_pop(kz_spsc *r, void *elem)
{
    return kz_spsc_pop_n(r, elem, 1) == 1 ? KZ_OK : KZ_EEMPTY;
}

uint32_t kz_spsc_pop_n(kz_spsc *r, void *elems, uint32_t n)
{
    uint64_t head = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
    uint64_t avail = kz__spsc_avail(r, head, n);
    if (n > avail)
        n = (uint32_t)avail;
    if (n == 0)
        return 0;
    kz__spsc_copy_out(r, head, elems, n);
    __atomic_store_n(&r->head, head + n, __ATOMIC_RELEASE);
    return n;
}

uint32_t kz_spsc_size(const kz_spsc *r)
{
    uint64_t head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    /* From a third thread the two loads are not one snapshot: clamp. */
    uint64_t n = tail - head;
    return n > r->mask + 1 ? (uint32_t)(r->mask + 1) : (uint32_t)n;
}

uint32_t kz_spsc_capacity(const kz_spsc *r)
{
    return (uint32_t)(r->mask + 1);
}
