/*
 * Generational entity handles: lifecycle, stale handles after reuse,
 * generation wrap-around, capacity, malformed handles, no allocation after
 * init, and a random differential run against a plain reference.
 */
#include <criterion/criterion.h>

#include <kizuna/entity.h>

Test(entity, create_destroy_and_stale_handles)
{
    kz_entities e;
    cr_assert_eq(kz_entities_init(&e, 4, NULL), KZ_OK);
    kz_entity a, b;
    cr_assert_eq(kz_entity_create(&e, &a), KZ_OK);
    cr_assert_neq(a.id, 0, "a live handle is never the null handle");
    cr_assert_eq(kz_entity_index(&e, a), 0);
    cr_assert_eq(kz_entity_destroy(&e, a), KZ_OK);
    cr_assert(!kz_entity_alive(&e, a));
    cr_assert_eq(kz_entity_destroy(&e, a), KZ_EINVAL, "double destroy");
    cr_assert_eq(kz_entity_create(&e, &b), KZ_OK);
    cr_assert_eq(kz_entity_index(&e, b), 0, "the index is reused");
    cr_assert_neq(a.id, b.id, "with a new generation");
    cr_assert(!kz_entity_alive(&e, a), "the old handle stays stale");
    cr_assert_eq(kz_entity_index(&e, a), UINT32_MAX);
    cr_assert_eq(kz_entity_at(&e, 0).id, b.id);
    cr_assert_eq(kz_entity_at(&e, 1).id, 0);
    cr_assert_eq(kz_entity_at(&e, 99).id, 0);
    cr_assert(!kz_entity_alive(&e, KZ_ENTITY_NONE));
    kz_entity bogus = {(1u << KZ_ENTITY_INDEX_BITS) | 3000u};
    cr_assert_eq(kz_entity_destroy(&e, bogus), KZ_EINVAL, "index out of range");
    kz_entities_fini(&e);
}

Test(entity, capacity_and_bad_sizes)
{
    kz_entities e;
    cr_assert_eq(kz_entities_init(&e, 0, NULL), KZ_EINVAL);
    cr_assert_eq(kz_entities_init(&e, KZ_ENTITY_MAX + 1, NULL), KZ_EINVAL);
    cr_assert_eq(kz_entities_init(&e, 3, NULL), KZ_OK);
    kz_entity h[4];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(kz_entity_create(&e, &h[i]), KZ_OK);
    cr_assert_eq(kz_entity_create(&e, &h[3]), KZ_EFULL);
    cr_assert_eq(e.count, 3);
    kz_entities_fini(&e);
}

Test(entity, generations_wrap_without_reaching_zero)
{
    kz_entities e;
    cr_assert_eq(kz_entities_init(&e, 1, NULL), KZ_OK);
    kz_entity first, h;
    cr_assert_eq(kz_entity_create(&e, &first), KZ_OK);
    cr_assert_eq(kz_entity_destroy(&e, first), KZ_OK);
    for (uint32_t i = 0; i < 3 * KZ_ENTITY_GENERATION_MAX; i++) {
        cr_assert_eq(kz_entity_create(&e, &h), KZ_OK);
        cr_assert_neq(h.id >> KZ_ENTITY_INDEX_BITS, 0, "generation 0 is never used");
        cr_assert_eq(kz_entity_destroy(&e, h), KZ_OK);
    }
    kz_entities_fini(&e);
}

Test(entity, random_lifecycles_match_a_reference_without_allocating)
{
    enum { CAP = 500, OPS = 200000 };
    kz_counting_alloc ca;
    kz_counting_alloc_init(&ca, NULL);
    kz_allocator a = kz_counting_alloc_allocator(&ca);
    kz_entities e;
    cr_assert_eq(kz_entities_init(&e, CAP, &a), KZ_OK);
    uint64_t allocs = kz_counting_alloc_allocs(&ca);
    static kz_entity live[CAP], dead[OPS];
    uint32_t n_live = 0, n_dead = 0;
    uint64_t s = 3;
    for (int op = 0; op < OPS; op++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        if ((s >> 40) % 2 == 0 && n_live < CAP) {
            kz_entity h;
            cr_assert_eq(kz_entity_create(&e, &h), KZ_OK);
            for (uint32_t i = 0; i < n_live; i++)
                cr_assert_neq(kz_entity_index(&e, live[i]), kz_entity_index(&e, h));
            live[n_live++] = h;
        } else if (n_live > 0) {
            uint32_t k = (uint32_t)((s >> 20) % n_live);
            cr_assert_eq(kz_entity_destroy(&e, live[k]), KZ_OK);
            dead[n_dead++] = live[k];
            live[k] = live[--n_live];
        }
    }
    cr_assert_eq(e.count, n_live);
    for (uint32_t i = 0; i < n_live; i++)
        cr_assert(kz_entity_alive(&e, live[i]));
    for (uint32_t i = 0; i < n_dead; i++)
        cr_assert(!kz_entity_alive(&e, dead[i]), "a destroyed handle stays dead");
    cr_assert_eq(kz_counting_alloc_allocs(&ca), allocs);
    kz_entities_fini(&e);
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0);
}
