/*
 * The world store (sim/world.h): its tables, and the state moves the
 * simulation makes on them.
 */
#include "sim/world.h"

#include <string.h>

#include "sim/layout.h"
#include "sim/wire.h"

/* Lays out (or measures, when base is NULL) one block holding every array;
 * returns its size. Each array starts on a 64-byte boundary. */
static size_t layout(kz__world *w, uint8_t *base)
{
    size_t off = 0;
    uint32_t cap = w->cap;
#define KZ__ARR(ptr, count) KZ__LAYOUT(off, base, ptr, count, 64u)
    KZ__ARR(w->kind, cap);
    KZ__ARR(w->pos, cap);
    KZ__ARR(w->vel, cap);
    KZ__ARR(w->yaw, cap);
    KZ__ARR(w->anim, cap);
    KZ__ARR(w->flags, cap);
    KZ__ARR(w->rel, cap);
    KZ__ARR(w->rot, cap);
    KZ__ARR(w->holder, cap);
    KZ__ARR(w->owner, cap);
    KZ__ARR(w->speaking_until, cap);
    KZ__ARR(w->importance, cap);
    KZ__ARR(w->badge, cap);
    KZ__ARR(w->badge_gen, cap);
    KZ__ARR(w->private_zone, cap);
    KZ__ARR(w->query, cap);
    KZ__ARR(w->image_ring, (size_t)cap * w->rows);
#undef KZ__ARR
    return off + 64u;
}

int kz__world_init(kz__world *w, const kz__world_limits *lim, const kz_allocator *a)
{
    memset(w, 0, sizeof *w);
    w->alloc = a ? *a : kz_allocator_default();
    kz_allocator_resolve(&w->alloc);
    w->cap = lim->cap;
    w->rows = lim->rows;
    if (lim->cap == 0 || lim->cap > KZ_ENTITY_MAX || lim->rows == 0)
        return KZ_EINVAL;
    kz_grid_config gc;
    kz_grid_config_default(&gc);
    gc.max_entities = lim->cap;
    gc.bound = lim->bound;
    gc.cell_size = lim->cell_size;
    /* Each step's own code: out of memory is KZ_ENOMEM, a bad limit
     * KZ_EINVAL. */
    int rc = kz_entities_init(&w->ents, lim->cap, &w->alloc);
    if (rc == KZ_OK)
        rc = kz_grid_init(&w->grid, &gc, &w->alloc);
    if (rc == KZ_OK)
        rc = kz_snap_codec_init(&w->codec, lim->tick_hz, lim->n_slots, lim->bound);
    if (rc != KZ_OK)
        return rc;
    w->block_size = layout(w, NULL);
    w->block = kz_calloc(&w->alloc, w->block_size, 64);
    if (!w->block)
        return KZ_ENOMEM;
    layout(w, w->block);
    w->image = w->image_ring;
    return KZ_OK;
}

void kz__world_fini(kz__world *w)
{
    if (w->block)
        kz_free(&w->alloc, w->block, w->block_size);
    w->block = NULL;
    if (w->grid.block)
        kz_grid_fini(&w->grid);
    kz_entities_fini(&w->ents);
}

void kz__world_rest(kz__world *w, uint32_t i)
{
    kz_avatar_state rest;
    kz_avatar_state_rest(&rest);
    kz_wire_command cmd;
    kz_wire_command_from(&rest, 1.0f, &cmd);
    memset(w->vel[i], 0, sizeof w->vel[i]);
    w->yaw[i] = 0;
    w->anim[i] = 0;
    w->flags[i] = 0;
    memcpy(w->rel[i], cmd.rel, sizeof w->rel[i]);
    memcpy(w->rot[i], cmd.rot, sizeof w->rot[i]);
    w->holder[i] = 0;
    w->owner[i] = 0;
    w->speaking_until[i] = 0;
    w->importance[i] = 1.0f;
}

void kz__world_load_state(const kz__world *w, uint32_t i, kz_snap_state *st)
{
    memset(st, 0, sizeof *st);
    st->entity = kz_entity_at(&w->ents, i).id;
    st->kind = w->kind[i];
    st->flags = w->flags[i];
    st->anim = w->anim[i];
    memcpy(st->pos, w->pos[i], sizeof st->pos);
    memcpy(st->vel, w->vel[i], sizeof st->vel);
    st->yaw = w->yaw[i];
    memcpy(st->rel, w->rel[i], sizeof st->rel);
    memcpy(st->rot, w->rot[i], sizeof st->rot);
    st->holder = w->holder[i] ? kz_entity_at(&w->ents, w->holder[i] - 1u).id : 0;
}

void kz__world_store_state(kz__world *w, uint32_t i, const kz_snap_state *st)
{
    w->flags[i] = st->flags;
    w->anim[i] = st->anim;
    memcpy(w->pos[i], st->pos, sizeof st->pos);
    memcpy(w->vel[i], st->vel, sizeof st->vel);
    w->yaw[i] = st->yaw;
    memcpy(w->rel[i], st->rel, sizeof st->rel);
    memcpy(w->rot[i], st->rot, sizeof st->rot);
}

int kz__world_grid_follow(kz__world *w, uint32_t i)
{
    return kz_grid_move(&w->grid, i, (float)w->pos[i][0] / KZ_SNAP_POS_UNITS,
                        (float)w->pos[i][2] / KZ_SNAP_POS_UNITS);
}

void kz__world_take_images(kz__world *w, uint32_t tick)
{
    w->image = w->image_ring + (size_t)(tick % w->rows) * w->cap;
    for (uint32_t i = 0; i < w->cap; i++) {
        if (!w->ents.alive[i]) {
            w->image[i].entity = 0;  /* no view holds a free index */
            continue;
        }
        if (w->speaking_until[i] > tick)
            w->flags[i] |= KZ_AVATAR_SPEAKING;
        else
            w->flags[i] &= (uint8_t)~KZ_AVATAR_SPEAKING;
        kz__world_load_state(w, i, &w->image[i]);
    }
}
