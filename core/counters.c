/*
 * Per-thread counter blocks merged by readers. The cells are plain uint64_t
 * in the public struct and are read and written only through the GCC/Clang
 * __atomic builtins, as kz_counter_add does in the header.
 */
#include <string.h>

#include <kizuna/counters.h>
#include <kizuna/ring.h>

#include "assert.h"

#define KZ__CELLS_PER_LINE (KZ_CACHE_LINE / sizeof(uint64_t))

int kz_counters_init(kz_counters *c, uint32_t n_counters, uint32_t n_threads,
                     const char *const *names, const kz_allocator *alloc)
{
    KZ_ASSERT(c != NULL);
    memset(c, 0, sizeof *c);
    if (n_counters == 0 || n_threads == 0 || n_counters > (1u << 20) || n_threads > 4096)
        return KZ_EINVAL;
    c->alloc = alloc ? *alloc : kz_allocator_default();
    kz_allocator_resolve(&c->alloc);
    /* Whole cache lines per block: two threads never write one line. */
    c->stride = (uint32_t)((n_counters + KZ__CELLS_PER_LINE - 1) / KZ__CELLS_PER_LINE *
                           KZ__CELLS_PER_LINE);
    c->cells = kz_calloc(&c->alloc, (size_t)c->stride * n_threads * sizeof(uint64_t),
                         KZ_CACHE_LINE);
    if (c->cells == NULL)
        return KZ_ENOMEM;
    c->names = names;
    c->n_counters = n_counters;
    c->n_threads = n_threads;
    return KZ_OK;
}

void kz_counters_fini(kz_counters *c)
{
    kz_free(&c->alloc, c->cells, (size_t)c->stride * c->n_threads * sizeof(uint64_t));
    c->cells = NULL;
}

kz_counter_block kz_counters_block(const kz_counters *c, uint32_t thread)
{
    KZ_ASSERT(thread < c->n_threads);
    kz_counter_block b = {c->cells + (size_t)thread * c->stride};
    return b;
}

uint64_t kz_counters_get(const kz_counters *c, uint32_t id)
{
    KZ_ASSERT(id < c->n_counters);
    uint64_t sum = 0;
    for (uint32_t t = 0; t < c->n_threads; t++) {
        sum += __atomic_load_n(&c->cells[(size_t)t * c->stride + id], __ATOMIC_RELAXED);
    }
    return sum;
}

void kz_counters_snapshot(const kz_counters *c, uint64_t *out)
{
    for (uint32_t id = 0; id < c->n_counters; id++)
        out[id] = kz_counters_get(c, id);
}

const char *kz_counters_name(const kz_counters *c, uint32_t id)
{
    KZ_ASSERT(id < c->n_counters);
    return c->names ? c->names[id] : NULL;
}

void kz_counters_reset(kz_counters *c)
{
    for (size_t i = 0; i < (size_t)c->stride * c->n_threads; i++)
        __atomic_store_n(&c->cells[i], 0, __ATOMIC_RELAXED);
}
