/*
 * Generational entity handles over a free stack of dense indices.
 */
#include <string.h>

#include <kizuna/entity.h>

#include "core/assert.h"

#define KZ__INDEX_MASK ((1u << KZ_ENTITY_INDEX_BITS) - 1u)

int kz_entities_init(kz_entities *e, uint32_t capacity, const kz_allocator *alloc)
{
    KZ_ASSERT(e != NULL);
    memset(e, 0, sizeof *e);
    if (capacity == 0 || capacity > KZ_ENTITY_MAX)
        return KZ_EINVAL;
    e->alloc = alloc ? *alloc : kz_allocator_default();
    kz_allocator_resolve(&e->alloc);
    /* Set first: kz_entities_fini frees with sizes derived from it, also
     * when one of the arrays below could not be allocated. */
    e->capacity = capacity;
    e->generation = kz_calloc(&e->alloc, (size_t)capacity * sizeof *e->generation, 8);
    e->alive = kz_calloc(&e->alloc, capacity, 8);
    e->free_stack = kz_alloc(&e->alloc, (size_t)capacity * sizeof *e->free_stack, 8);
    if (!e->generation || !e->alive || !e->free_stack) {
        kz_entities_fini(e);
        return KZ_ENOMEM;
    }
    /* Pop order hands out index 0 first. */
    for (uint32_t i = 0; i < capacity; i++)
        e->free_stack[i] = capacity - 1 - i;
    e->n_free = capacity;
    return KZ_OK;
}

void kz_entities_fini(kz_entities *e)
{
    kz_free(&e->alloc, e->generation, (size_t)e->capacity * sizeof *e->generation);
    kz_free(&e->alloc, e->alive, e->capacity);
    kz_free(&e->alloc, e->free_stack, (size_t)e->capacity * sizeof *e->free_stack);
    e->generation = NULL;
    e->alive = NULL;
    e->free_stack = NULL;
    e->capacity = 0;
    e->n_free = 0;
    e->count = 0;
}

int kz_entity_create(kz_entities *e, kz_entity *out)
{
    if (e->n_free == 0)
        return KZ_EFULL;
    uint32_t index = e->free_stack[--e->n_free];
    /* Generations run 1..MAX and wrap past 0, which is never used. */
    uint32_t gen = e->generation[index] % KZ_ENTITY_GENERATION_MAX + 1u;
    e->generation[index] = (uint16_t)gen;
    e->alive[index] = 1;
    e->count++;
    out->id = gen << KZ_ENTITY_INDEX_BITS | index;
    return KZ_OK;
}

uint32_t kz_entity_index(const kz_entities *e, kz_entity h)
{
    uint32_t index = h.id & KZ__INDEX_MASK, gen = h.id >> KZ_ENTITY_INDEX_BITS;
    if (gen == 0 || index >= e->capacity || !e->alive[index] || e->generation[index] != gen)
        return UINT32_MAX;
    return index;
}

int kz_entity_alive(const kz_entities *e, kz_entity h)
{
    return kz_entity_index(e, h) != UINT32_MAX;
}

int kz_entity_destroy(kz_entities *e, kz_entity h)
{
    uint32_t index = kz_entity_index(e, h);
    if (index == UINT32_MAX)
        return KZ_EINVAL;
    e->alive[index] = 0;
    e->free_stack[e->n_free++] = index;
    e->count--;
    return KZ_OK;
}

kz_entity kz_entity_at(const kz_entities *e, uint32_t index)
{
    if (index >= e->capacity || !e->alive[index])
        return KZ_ENTITY_NONE;
    kz_entity h = {(uint32_t)e->generation[index] << KZ_ENTITY_INDEX_BITS | index};
    return h;
}
