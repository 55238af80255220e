/*
 * Interest management, the per-client question "which entities should this
 * client see now?", asked once per client per tick by the simulation
 * thread. Stages, in order:
 *
 *   1. candidates  the spatial grid's entities near the viewer: an entity
 *                  the viewer already sees stays a candidate out to the
 *                  leave radius, a new one must come within the enter
 *                  radius (hysteresis, so nothing flickers at the edge);
 *   2. visibility  a hook (zones, blocks, reciprocal presence: the trust and
 *                  safety rules) may veto any candidate;
 *   3. ranking     score = importance / max(distance, 1 m), times
 *                  keep_bonus for entities already visible (hysteresis in
 *                  rank, so two near-equal entities do not swap every
 *                  tick); ties by lower entity index;
 *   4. cut         the best max_visible, best first.
 *
 * Crowds. When the grid finds more than max_candidates entities within the
 * leave radius (a concert: everyone within 30 m), both radii are scaled by
 * sqrt(max_candidates / found) for this viewer and tick and the grid is
 * asked again, so the cost stays bounded by the cap instead of growing with
 * the crowd. The scale is reported; the rules above then apply unchanged
 * with the scaled radii, which keeps the result exactly reproducible by a
 * brute-force reference.
 *
 * Entities are the grid's dense indices. The viewer itself is never in the
 * result. Distances use the grid's float rule (kz_grid_within) and scores
 * use kz_interest_score below, so a reference computes bit-identical
 * rankings.
 *
 * Value type on caller storage; scratch arrays are allocated at init only.
 * One thread at a time (the grid must not change during a select).
 */
#ifndef KZ_SIM_INTEREST_H
#define KZ_SIM_INTEREST_H

#include <math.h>

#include <kizuna/alloc.h>
#include <kizuna/grid.h>

#define KZ_INTEREST_MAX_VISIBLE 1024u

/* Zero fields mean the default. */
typedef struct kz_interest_config {
    float radius;             /* enter radius, meters; default 50 */
    float hysteresis;         /* leave radius = radius + hysteresis; default 5 */
    uint32_t max_visible;     /* default 100; 1 .. KZ_INTEREST_MAX_VISIBLE */
    uint32_t max_candidates;  /* crowd cap; default 4 * max_visible, >= max_visible */
    float keep_bonus;         /* default 1.5; >= 1 */
} kz_interest_config;

/* The visibility hook: 1 if `viewer` may see `target`, 0 if not. */
typedef int (*kz_visible_fn)(void *ctx, uint32_t viewer, uint32_t target);

typedef struct kz_interest {
    kz_interest_config cfg;
    uint32_t max_entities;
    uint32_t *cand;       /* scratch: candidate ids */
    float *score;         /* scratch: their scores */
    uint8_t *was;         /* scratch: per entity, 1 while in `prev` */
    kz_allocator alloc;
} kz_interest;

typedef struct kz_interest_stats {
    uint32_t found;        /* grid hits at the (unscaled) leave radius */
    uint32_t candidates;   /* after radii, before the hook */
    uint32_t vetoed;       /* refused by the hook */
    float scale;           /* radius scale applied, 1 = none */
} kz_interest_stats;

/* Fills the defaults into zero fields and checks the rest: 0 or KZ_EINVAL. */
int kz_interest_config_resolve(kz_interest_config *cfg);

/* 0, KZ_EINVAL (bad config, max_entities 0) or KZ_ENOMEM. */
int kz_interest_init(kz_interest *in, const kz_interest_config *cfg, uint32_t max_entities,
                     const kz_allocator *alloc);
void kz_interest_fini(kz_interest *in);

/*
 * Selects what `viewer` (an entity in the grid) sees. `prev` lists the
 * entities it saw last tick (any order, no duplicates; ids not in the grid
 * are ignored). `importance` is a per-entity weight > 0, NULL for all 1.
 * `fn` may be NULL (everything visible). Writes up to max_visible entity
 * ids to `out`, best first, and their scores to `out_score` (may be NULL);
 * returns the count. `stats` may be NULL. A viewer not in the grid sees
 * nothing.
 */
uint32_t kz_interest_select(kz_interest *in, const kz_grid *g, uint32_t viewer,
                            const uint32_t *prev, uint32_t n_prev, const float *importance,
                            kz_visible_fn fn, void *fn_ctx, uint32_t *out, float *out_score,
                            kz_interest_stats *stats);

/* The ranking score of an entity at squared distance d2 (float rule). */
static inline float kz_interest_score(float d2, float importance, int kept, float keep_bonus)
{
    float d = sqrtf(d2);
    float s = importance / (d > 1.0f ? d : 1.0f);
    return kept ? s * keep_bonus : s;
}

#endif /* KZ_SIM_INTEREST_H */
