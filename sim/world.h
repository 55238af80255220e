/*
 * The world store: every entity's state, the spatial grid, the zones and
 * portals, and the ring of quantized images the replicators read. Written
 * by the simulation thread only. Internal.
 *
 * Storage is structure-of-arrays over the dense entity index of
 * kz_entities; the wire id of an entity is its generational handle. Once
 * per tick the world writes a quantized image of every entity (kz_snap_state,
 * 64 bytes, entity 0 for a free index) into the ring row of that tick: the
 * replicators encode from those rows, and older rows are the baselines
 * clients acknowledged (sim/frame.h). Every array lives in one block
 * allocated by kz__world_init; nothing is allocated afterwards.
 */
#ifndef KZ_SIM_WORLD_H
#define KZ_SIM_WORLD_H

#include <kizuna/entity.h>
#include <kizuna/grid.h>
#include <kizuna/server.h>

#include "sim/snapshot.h"

/* What the world is sized and bounded by. */
typedef struct kz__world_limits {
    uint32_t cap;              /* entities: clients + objects */
    uint32_t rows;             /* image ring rows */
    uint32_t tick_hz;
    uint32_t n_slots;          /* view slots per client (the codec's) */
    float bound;               /* half-extent, meters */
    float cell_size;           /* grid cell edge, meters */
} kz__world_limits;

typedef struct kz__portal {
    uint32_t on;
    int32_t entrance[3], exit[3];
    float radius;
} kz__portal;

typedef struct kz__world {
    kz_entities ents;
    kz_grid grid;
    kz_snap_codec codec;
    uint32_t cap;
    uint32_t rows;
    /* per dense index */
    uint8_t *kind;
    int32_t (*pos)[3];
    int16_t (*vel)[3];
    uint16_t *yaw;
    uint16_t *anim;
    uint8_t *flags;
    int16_t (*rel)[KZ_POSE_COUNT][3];
    uint32_t (*rot)[KZ_POSE_COUNT];
    uint32_t *holder;             /* objects: dense index + 1 of the holder, 0 = none */
    uint32_t *owner;              /* avatars: transport slot + 1, 0 = none */
    uint32_t *speaking_until;     /* tick at which the speaking flag drops */
    float *importance;
    kz_snap_badge *badge;
    uint32_t *badge_gen;          /* bumped whenever the badge is set */
    uint8_t *private_zone;        /* private zone index + 1, 0 = none */
    uint32_t *query;              /* grid query results (chat and voice audiences) */
    /* the image ring */
    kz_snap_state *image;         /* this tick's row */
    kz_snap_state *image_ring;    /* rows * cap, row = tick % rows */
    /* zones and portals */
    kz_zone_def zones[KZ_ZONE_MAX];
    uint32_t n_zones;
    kz__portal portals[KZ_PORTAL_MAX];
    uint32_t zones_gen;           /* bumped by every zone set or lock */
    uint32_t zones_enforced;      /* zones_gen the last enforcement pass saw */
    void *block;
    size_t block_size;
    kz_allocator alloc;
} kz__world;

/* 0, KZ_EINVAL (a limit the entity table, grid or codec refuses) or
 * KZ_ENOMEM. kz__world_fini is safe after a failed init. */
KZ_MUST_CHECK int kz__world_init(kz__world *w, const kz__world_limits *lim,
                                 const kz_allocator *a);
void kz__world_fini(kz__world *w);

/* Puts dense index `i` at rest: no motion, the rest pose, no holder,
 * owner, speech, importance 1. */
void kz__world_rest(kz__world *w, uint32_t i);
/* The quantized state of dense index `i`. */
void kz__world_load_state(const kz__world *w, uint32_t i, kz_snap_state *st);
/* Writes the moving parts of `st` back to index `i` (not its identity). */
void kz__world_store_state(kz__world *w, uint32_t i, const kz_snap_state *st);
/* Moves index `i` in the grid to its position (clamped to the bound). 0
 * or the grid's code. */
int kz__world_grid_follow(kz__world *w, uint32_t i);
/* Writes the ring row of `tick`, updating the speaking flags first. */
void kz__world_take_images(kz__world *w, uint32_t tick);

#endif /* KZ_SIM_WORLD_H */
