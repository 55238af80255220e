/*
 * Fixed-capacity hash map from 64-bit keys to 32-bit values (internal to
 * net/). The gate's tables (address -> session slot, client id -> slot) are
 * built on it: their size is fixed at start from max_clients, so nothing a
 * peer sends can make them grow.
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones, so lookups stay short after any number of removals). Keys are
 * spread with SipHash (crypto_shorthash) under a per-map random key, so a
 * peer that chooses keys (source ports, client ids) cannot aim them at one
 * probe chain. The table holds at most half its slots, which keeps probes
 * short; an insert beyond `max_items` fails with KZ_EFULL.
 */
#ifndef KZ_NET_FIXMAP_H
#define KZ_NET_FIXMAP_H

#include <kizuna/alloc.h>

typedef struct kz__fixmap_entry {
    uint64_t key;
    uint32_t value;
    uint32_t used;
} kz__fixmap_entry;

typedef struct kz__fixmap {
    kz__fixmap_entry *slots;
    uint32_t mask;       /* capacity - 1; capacity = pow2 >= 2 * max_items */
    uint32_t count;
    uint32_t max_items;
    uint8_t hash_key[16];
    kz_allocator alloc;
} kz__fixmap;

/* Returns 0, KZ_EINVAL (max_items 0 or above 2^30) or KZ_ENOMEM. */
int kz__fixmap_init(kz__fixmap *m, uint32_t max_items, const kz_allocator *alloc);
void kz__fixmap_fini(kz__fixmap *m);

/* 1 and *value when `key` is present, else 0. */
int kz__fixmap_get(const kz__fixmap *m, uint64_t key, uint32_t *value);
/* Inserts or replaces. Returns 0 or KZ_EFULL (new key, map at max_items). */
int kz__fixmap_put(kz__fixmap *m, uint64_t key, uint32_t value);
/* Removes `key`; 1 if it was present. */
int kz__fixmap_del(kz__fixmap *m, uint64_t key);

#endif /* KZ_NET_FIXMAP_H */
