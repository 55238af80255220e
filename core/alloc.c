/*
 * Default and counting allocators. The counting allocator is small enough to
 * ship in the library: engines use it too, to watch Kizuna's footprint.
 */
#include <stdlib.h>
#include <string.h>

#include <kizuna/alloc.h>

#include "assert.h"

static void *kz__default_alloc(void *ctx, size_t size, size_t align)
{
    (void)ctx;
    if (align < sizeof(void *))
        align = sizeof(void *);
    /* aligned_alloc wants size to be a multiple of align. */
    size_t rounded = (size + align - 1) & ~(align - 1);
    if (rounded < size)
        return NULL;
    return aligned_alloc(align, rounded);
}

static void kz__default_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    (void)size;
    free(ptr);
}

kz_allocator kz_allocator_default(void)
{
    kz_allocator a = {NULL, kz__default_alloc, kz__default_free};
    return a;
}

void kz_allocator_resolve(kz_allocator *a)
{
    KZ_ASSERT(a != NULL);
    KZ_ASSERT((a->alloc == NULL) == (a->free == NULL));
    if (a->alloc == NULL)
        *a = kz_allocator_default();
}

void *kz_alloc(const kz_allocator *a, size_t size, size_t align)
{
    KZ_ASSERT(align != 0 && (align & (align - 1)) == 0 && align <= 4096);
    if (size == 0)
        return NULL;
    kz_allocator r = *a;
    kz_allocator_resolve(&r);
    return r.alloc(r.ctx, size, align);
}

void *kz_calloc(const kz_allocator *a, size_t size, size_t align)
{
    void *p = kz_alloc(a, size, align);
    if (p)
        memset(p, 0, size);
    return p;
}

void kz_free(const kz_allocator *a, void *ptr, size_t size)
{
    if (ptr == NULL)
        return;
    kz_allocator r = *a;
    kz_allocator_resolve(&r);
    r.free(r.ctx, ptr, size);
}

/* The counters are plain uint64_t in the public struct (so it stays a
 * simple value type for every language binding and for C++) and are only
 * ever touched through the GCC/Clang __atomic builtins, which are defined
 * on plain objects; casting them to an _Atomic type would be undefined.
 * Every access is sequentially consistent, as the counters are few and
 * off the hot paths. */
#define KZ__SC __ATOMIC_SEQ_CST

void kz_counting_alloc_init(kz_counting_alloc *c, const kz_allocator *inner)
{
    KZ_ASSERT(c != NULL);
    memset(c, 0, sizeof *c);
    c->inner = inner ? *inner : kz_allocator_default();
    kz_allocator_resolve(&c->inner);
    c->fail_after = -1;
}

static void *kz__counting_alloc(void *ctx, size_t size, size_t align)
{
    kz_counting_alloc *c = ctx;
    uint64_t n = __atomic_load_n(&c->allocs, KZ__SC);
    if (c->fail_after >= 0 && n >= (uint64_t)c->fail_after) {
        __atomic_fetch_add(&c->failed, 1, KZ__SC);
        return NULL;
    }
    void *p = c->inner.alloc(c->inner.ctx, size, align);
    if (p == NULL) {
        __atomic_fetch_add(&c->failed, 1, KZ__SC);
        return NULL;
    }
    __atomic_fetch_add(&c->allocs, 1, KZ__SC);
    uint64_t live = __atomic_fetch_add(&c->live_bytes, size, KZ__SC) + size;
    uint64_t peak = __atomic_load_n(&c->peak_bytes, KZ__SC);
    while (live > peak &&
           !__atomic_compare_exchange_n(&c->peak_bytes, &peak, live, 1, KZ__SC, KZ__SC)) {
    }
    return p;
}

static void kz__counting_free(void *ctx, void *ptr, size_t size)
{
    kz_counting_alloc *c = ctx;
    __atomic_fetch_add(&c->frees, 1, KZ__SC);
    __atomic_fetch_sub(&c->live_bytes, size, KZ__SC);
    c->inner.free(c->inner.ctx, ptr, size);
}

kz_allocator kz_counting_alloc_allocator(kz_counting_alloc *c)
{
    kz_allocator a = {c, kz__counting_alloc, kz__counting_free};
    return a;
}

uint64_t kz_counting_alloc_allocs(const kz_counting_alloc *c)
{
    return __atomic_load_n(&c->allocs, KZ__SC);
}

uint64_t kz_counting_alloc_live_bytes(const kz_counting_alloc *c)
{
    return __atomic_load_n(&c->live_bytes, KZ__SC);
}
