#include "fixmap.h"

#include <sodium.h>
#include <string.h>

#include "crypto.h"

int kz__fixmap_init(kz__fixmap *m, uint32_t max_items, const kz_allocator *alloc)
{
    memset(m, 0, sizeof *m);
    if (max_items == 0 || max_items > (1u << 30))
        return KZ_EINVAL;
    if (kz__crypto_init() != KZ_OK)
        return KZ_EIO;
    uint32_t cap = 2;
    while (cap < 2 * max_items)
        cap <<= 1;
    m->alloc = alloc ? *alloc : kz_allocator_default();
    kz_allocator_resolve(&m->alloc);
    m->slots = kz_calloc(&m->alloc, (size_t)cap * sizeof *m->slots, 16);
    if (m->slots == NULL)
        return KZ_ENOMEM;
    m->mask = cap - 1;
    m->max_items = max_items;
    randombytes_buf(m->hash_key, sizeof m->hash_key);
    return KZ_OK;
}

void kz__fixmap_fini(kz__fixmap *m)
{
    kz_free(&m->alloc, m->slots, (size_t)(m->mask + 1) * sizeof *m->slots);
    m->slots = NULL;
}

static uint32_t kz__fixmap_home(const kz__fixmap *m, uint64_t key)
{
    uint8_t in[8], out[crypto_shorthash_BYTES];
    for (int i = 0; i < 8; i++)
        in[i] = (uint8_t)(key >> (8 * i));
    crypto_shorthash(out, in, sizeof in, m->hash_key);
    uint32_t h;
    memcpy(&h, out, sizeof h);
    return h & m->mask;
}

/* Index of `key`'s slot, or of the empty slot where it would go. */
static uint32_t kz__fixmap_find(const kz__fixmap *m, uint64_t key)
{
    uint32_t i = kz__fixmap_home(m, key);
    while (m->slots[i].used && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    return i;
}

int kz__fixmap_get(const kz__fixmap *m, uint64_t key, uint32_t *value)
{
    uint32_t i = kz__fixmap_find(m, key);
    if (!m->slots[i].used)
        return 0;
    *value = m->slots[i].value;
    return 1;
}

int kz__fixmap_put(kz__fixmap *m, uint64_t key, uint32_t value)
{
    uint32_t i = kz__fixmap_find(m, key);
    if (!m->slots[i].used) {
        if (m->count >= m->max_items)
            return KZ_EFULL;
        m->slots[i].used = 1;
        m->slots[i].key = key;
        m->count++;
    }
    m->slots[i].value = value;
    return KZ_OK;
}

int kz__fixmap_del(kz__fixmap *m, uint64_t key)
{
    uint32_t hole = kz__fixmap_find(m, key);
    if (!m->slots[hole].used)
        return 0;
    m->slots[hole].used = 0;
    m->count--;
    /* Backward shift: pull later members of the probe run into the hole
     * when their home position is at or before it, so no lookup ever
     * stops early at the new gap. */
    for (uint32_t j = (hole + 1) & m->mask; m->slots[j].used; j = (j + 1) & m->mask) {
        uint32_t home = kz__fixmap_home(m, m->slots[j].key);
        uint32_t dist_j = (j - home) & m->mask, dist_hole = (j - hole) & m->mask;
        if (dist_j >= dist_hole) {
            m->slots[hole] = m->slots[j];
            m->slots[j].used = 0;
            hole = j;
        }
    }
    return 1;
}
