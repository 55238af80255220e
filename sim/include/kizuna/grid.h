/*
 * Uniform spatial hash grid over the horizontal plane: the first stage of
 * interest management. Every tick the server moves thousands of avatars and
 * then asks, once per avatar, "which entities are within r meters of this
 * point?". The grid is tuned for that: a move that stays in its cell costs
 * two stores, a move across cells relinks one list node, and a query walks
 * only the cells under the query disk's bounding square. Nothing allocates
 * after kz_grid_init.
 *
 * Geometry. Positions are (x, z) in meters; y is up and plays no part. An
 * entity belongs to cell (floor(x / cell_size), floor(z / cell_size)),
 * computed in double and clamped to the int32 range. Cells are hashed into
 * a power-of-two table of buckets (at least twice max_entities), and every
 * bucket heads an intrusive doubly linked list of the entities in the cells
 * hashed to it. Two cells may share a bucket; queries filter by exact cell.
 *
 * Entities are dense indices 0 .. max_entities - 1 (the entity store maps
 * its generational handles to these). Positions must be finite and within
 * +-bound meters on both axes (bound <= 1e6 m, inclusive); others are
 * refused with KZ_ENOTFINITE or KZ_ERANGE and change nothing.
 *
 * Distance rule. An entity at (ex, ez) is within radius r of (qx, qz) when,
 * evaluated in float, one operation at a time, without fused multiply-add:
 *     dx = ex - qx;  dz = ez - qz;  d2 = dx * dx + dz * dz;  d2 <= r * r
 * The comparison is inclusive: an entity exactly r away is found, and an
 * entity at the query point is found with r = 0. kz_grid_within() is this
 * rule; a brute-force reference that uses it agrees with every query.
 *
 * Ownership and threading: the caller owns the kz_grid storage (a value
 * type: kz_grid_init / kz_grid_fini); the grid owns one block from the
 * allocator. One thread writes (insert, move, remove, clear). Queries only
 * read, so any number of threads may query at once, but only while no
 * thread writes: there is no internal locking. Only init and fini touch the
 * allocator.
 */
#ifndef KZ_GRID_H
#define KZ_GRID_H

#include <kizuna/alloc.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KZ_GRID_DEFAULT_CELL_SIZE 16.0f     /* meters */
#define KZ_GRID_DEFAULT_MAX_ENTITIES 4096u
#define KZ_GRID_MAX_ENTITIES (1u << 24)     /* largest accepted max_entities */
#define KZ_GRID_MAX_BOUND 1.0e6f            /* largest accepted |x| or |z|, meters */
#define KZ_GRID_MIN_CELL_SIZE 0.001f        /* keeps every entity cell inside int32 */

/*
 * A zero field means the default, so `kz_grid_config cfg = {0}` plus one
 * override works. Constraints (else init returns KZ_EINVAL): cell_size
 * finite and in [KZ_GRID_MIN_CELL_SIZE, KZ_GRID_MAX_BOUND]; 1 <=
 * max_entities <= KZ_GRID_MAX_ENTITIES; bound finite, > 0 and <=
 * KZ_GRID_MAX_BOUND.
 */
typedef struct kz_grid_config {
    float cell_size;       /* cell edge in meters, default 16 */
    uint32_t max_entities; /* ids are 0 .. max_entities - 1, default 4096 */
    float bound;           /* accepted positions: |x|, |z| <= bound; default 1e6 */
} kz_grid_config;

/* Fields are public so tests and tools can inspect them; only the functions
 * below may change them. All arrays live in one block of `block_size`
 * bytes. */
typedef struct kz_grid {
    uint32_t *head;     /* bucket_count list heads, KZ__GRID_NIL when empty */
    uint32_t *next;     /* per entity; KZ__GRID_ABSENT when not in the grid */
    uint32_t *prev;     /* per entity; KZ__GRID_NIL for a list head */
    uint64_t *cell;     /* per entity: (uint32 cell_x << 32) | uint32 cell_z */
    float *x;           /* per entity position, meters */
    float *z;
    void *block;
    size_t block_size;
    double inv_cell;    /* 1 / cell_size, used for every cell computation */
    int32_t cell_min;   /* cell coordinate of -bound */
    int32_t cell_max;   /* cell coordinate of +bound */
    uint32_t bucket_mask;
    uint32_t count;     /* entities in the grid */
    kz_grid_config cfg; /* resolved: no zero fields */
    kz_allocator alloc;
} kz_grid;

#define KZ__GRID_NIL 0xFFFFFFFFu
#define KZ__GRID_ABSENT 0xFFFFFFFEu

/* Fills `cfg` with the defaults (16 m cells, 4096 entities, +-1e6 m). */
KZ_API void kz_grid_config_default(kz_grid_config *cfg);

/* Bytes of the single block a grid with `cfg` (NULL: defaults) allocates;
 * 0 if the configuration is invalid. 24 bytes per entity plus 4 per bucket
 * (2 to 4 buckets per entity), each array rounded up to 64 bytes: the
 * default 4096 entities take 131,072 bytes. */
KZ_API size_t kz_grid_footprint(const kz_grid_config *cfg);

/*
 * Prepares an empty grid. `cfg` may be NULL for the defaults, `alloc` NULL
 * for the default allocator; both are copied. Allocates one block; nothing
 * else in this module allocates. Returns 0, KZ_EINVAL (bad configuration)
 * or KZ_ENOMEM; on failure `g` needs no fini (calling it is harmless).
 */
KZ_API KZ_MUST_CHECK int kz_grid_init(kz_grid *g, const kz_grid_config *cfg,
                                      const kz_allocator *alloc);
/* Frees the block. No thread may be querying. */
KZ_API void kz_grid_fini(kz_grid *g);

/* Removes every entity; keeps the memory. */
KZ_API void kz_grid_clear(kz_grid *g);

/*
 * Inserts entity `id` at (x, z). Misuse is reported, not asserted, since
 * the grid sits behind the entity store and a stale index must not take the
 * server down: an id >= max_entities or already in the grid gives
 * KZ_EINVAL. Then a NaN or infinite coordinate gives KZ_ENOTFINITE, and
 * one beyond +-bound KZ_ERANGE, in that order. A failed call changes
 * nothing.
 */
KZ_API KZ_MUST_CHECK int kz_grid_insert(kz_grid *g, uint32_t id, float x, float z);

/*
 * Moves entity `id` to (x, z): O(1) with no list work when it stays in its
 * cell (or in a cell of the same bucket), an unlink and a link otherwise.
 * Errors as for insert, with KZ_EINVAL for an id not in the grid; a failed
 * move leaves the entity where it was.
 */
KZ_API KZ_MUST_CHECK int kz_grid_move(kz_grid *g, uint32_t id, float x, float z);

/* Removes entity `id`. KZ_EINVAL if it is out of range or not in the grid
 * (nothing changes then). */
KZ_API KZ_MUST_CHECK int kz_grid_remove(kz_grid *g, uint32_t id);

/* 1 if `id` is in the grid, else 0 (also for an id out of range). */
KZ_API int kz_grid_contains(const kz_grid *g, uint32_t id);

/* Stored position of `id` into *x, *z. KZ_EINVAL if absent (outputs
 * untouched). */
KZ_API KZ_MUST_CHECK int kz_grid_position(const kz_grid *g, uint32_t id, float *x, float *z);

/* Entities in the grid. */
KZ_API uint32_t kz_grid_count(const kz_grid *g);

/*
 * Finds the entities within `radius` of (x, z) by the distance rule above.
 * Writes the first `cap` of them to `out` (which may be NULL when cap is 0),
 * returns how many it wrote, and stores in *total (if not NULL) how many it
 * found, which exceeds the return value when the output was truncated.
 * The query point may lie outside the bounds. A NaN or infinite query
 * point, or a radius that is NaN or negative, finds nothing. An infinite
 * radius, or one whose square overflows float, finds every entity.
 *
 * Order, deterministic for a given history of calls: when the bounding
 * square of the disk, clipped to the bounds, spans at most
 * max_entities / 4 cells, cells are visited row by row (z ascending, then x
 * ascending) and the entities of a cell in bucket list order (most recently
 * linked first); otherwise the grid scans all ids in ascending order.
 */
KZ_API uint32_t kz_grid_query(const kz_grid *g, float x, float z, float radius,
                              uint32_t *out, uint32_t cap, uint32_t *total);

/* Called once per entity found; `dist2` is its d2 from the distance rule.
 * Return 0 to go on, nonzero to stop the query. */
typedef int (*kz_grid_visit_fn)(void *ctx, uint32_t id, float dist2);

/* Like kz_grid_query, calling `fn` for each entity found, in the same
 * order. Returns the number of calls made. The callback must not modify
 * the grid. */
KZ_API uint32_t kz_grid_query_fn(const kz_grid *g, float x, float z, float radius,
                                 kz_grid_visit_fn fn, void *ctx);

/* The distance rule, for callers that filter or re-check candidates: 1 if
 * (ex, ez) is within `radius` (>= 0) of (qx, qz). Separate statements keep
 * any compiler from fusing the multiply-adds. */
static inline int kz_grid_within(float ex, float ez, float qx, float qz, float radius)
{
    float dx = ex - qx;
    float dz = ez - qz;
    float dx2 = dx * dx;
    float dz2 = dz * dz;
    float d2 = dx2 + dz2;
    float r2 = radius * radius;
    return d2 <= r2;
}

#ifdef __cplusplus
}
#endif

#endif /* KZ_GRID_H */
