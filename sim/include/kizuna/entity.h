/*
 * Entities: generational handles over dense indices.
 *
 * The world keeps its state in structure-of-arrays indexed by a dense
 * entity index (0 .. max_entities-1): positions, poses, badges, grid links.
 * Other code refers to entities by kz_entity handles, which pair the index
 * with a generation: when an entity is destroyed and its index reused, the
 * generation moves on, so a stale handle (kept by a client message, an
 * event, a script) is recognised instead of silently naming the newcomer.
 *
 * Handle layout: id = generation << KZ_ENTITY_INDEX_BITS | index, with
 * generations 1..KZ_ENTITY_GENERATION_MAX (never 0), so id 0 is never a
 * live entity and serves as "none". Handles are process-local; the wire
 * format names entities separately (a server may hand out ranges, so a
 * second server can join a world later).
 *
 * Value type on caller storage; one thread at a time (the simulation
 * thread). No allocation after init.
 */
#ifndef KZ_ENTITY_H
#define KZ_ENTITY_H

#include <kizuna/alloc.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kz_entity {
    uint32_t id;
} kz_entity;

#define KZ_ENTITY_NONE ((kz_entity){0})
#define KZ_ENTITY_INDEX_BITS 20u
#define KZ_ENTITY_MAX ((1u << KZ_ENTITY_INDEX_BITS) - 1u)  /* capacity limit */
#define KZ_ENTITY_GENERATION_MAX ((1u << (32u - KZ_ENTITY_INDEX_BITS)) - 1u)

typedef struct kz_entities {
    uint16_t *generation;   /* per index: current generation (live or last) */
    uint8_t *alive;         /* per index: 1 while live */
    uint32_t *free_stack;   /* indices not in use */
    uint32_t n_free;
    uint32_t capacity;
    uint32_t count;         /* live entities */
    kz_allocator alloc;
} kz_entities;

/* Room for `capacity` entities (1..KZ_ENTITY_MAX). 0, KZ_EINVAL or KZ_ENOMEM. */
KZ_API KZ_MUST_CHECK int kz_entities_init(kz_entities *e, uint32_t capacity,
                                          const kz_allocator *alloc);
KZ_API void kz_entities_fini(kz_entities *e);

/* Creates an entity; lowest free indices first. 0 or KZ_EFULL. */
KZ_API KZ_MUST_CHECK int kz_entity_create(kz_entities *e, kz_entity *out);
/* Destroys a live entity. 0, or KZ_EINVAL for a stale or malformed handle
 * (nothing changes). */
KZ_API int kz_entity_destroy(kz_entities *e, kz_entity h);
/* 1 when `h` names a live entity. */
KZ_API int kz_entity_alive(const kz_entities *e, kz_entity h);
/* Dense index of a live entity, or UINT32_MAX for a stale handle. */
KZ_API uint32_t kz_entity_index(const kz_entities *e, kz_entity h);
/* Handle of the live entity at `index`, or KZ_ENTITY_NONE. */
KZ_API kz_entity kz_entity_at(const kz_entities *e, uint32_t index);

#ifdef __cplusplus
}
#endif

#endif /* KZ_ENTITY_H */
