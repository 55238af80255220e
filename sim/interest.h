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
 * The exact rules, which a brute-force reference reproduces bit for bit.
 * All arithmetic is float, one operation at a time, in this order:
 *
 *   (qx, qz)  the viewer's position in the grid;
 *   enter     = radius;  leave = radius + hysteresis;
 *   found     = entities other than the viewer within `leave` of (qx, qz);
 *   crowd     if found > max_candidates:
 *                 s = sqrtf((float)max_candidates / (float)found);
 *                 enter = enter * s;  leave = leave * s;
 *             else s = 1 (both conversions are exact: both counts < 2^24);
 *   candidate an entity e != viewer in the grid with, by kz_grid_within,
 *             e within `leave` if e is in `prev`, else e within `enter`;
 *   hook      fn(fn_ctx, viewer, e) == 0 vetoes candidate e;
 *   score     dx = ex - qx;  dz = ez - qz;  d2 = dx * dx + dz * dz;
 *             kz_interest_score(d2, importance[e] or 1, e in prev, keep_bonus);
 *   order     score descending, then entity index ascending;
 *   result    the first max_visible.
 *
 * Crowds. When the grid finds more than max_candidates entities within the
 * leave radius (a concert: everyone within 30 m), both radii shrink by the
 * factor s above for this viewer and tick. The leave-radius hits are then
 * filtered again at the scaled radii (the very set the grid would return
 * for them, since the scaled radius is never larger), so the hook calls and
 * the ranking work stay near the cap instead of growing with the crowd.
 * The grid walk itself still costs what the crowd costs. The scale is a
 * uniform-density estimate: a crowd packed tighter than the leave disk
 * still yields more than max_candidates candidates, and that many are then
 * ranked (correctly, just not at the capped cost).
 *
 * Entities are the grid's dense indices. The viewer itself is never in the
 * result. Distances use the grid's float rule (kz_grid_within) and scores
 * use kz_interest_score below, so a reference computes bit-identical
 * rankings.
 *
 * Cost. A select is one grid query at the leave radius plus work linear in
 * its hits, plus the partial sort; `prev` is marked in a byte map and
 * unmarked again, O(n_prev), never cleared wholesale. After a select whose
 * hits were at least a fifth of the grid's id range (a crowd), the next
 * one reads the grid's arrays in id order instead of walking its cell
 * lists, which is then several times cheaper; results never depend on
 * which way the hits were found.
 *
 * Value type on caller storage; scratch arrays are allocated at init only
 * and a select never allocates. One thread at a time per kz_interest (the
 * grid must not change during a select); two threads may select with two
 * kz_interest values over one unchanging grid.
 */
#ifndef KZ_SIM_INTEREST_H
#define KZ_SIM_INTEREST_H

#include <math.h>

#include <kizuna/alloc.h>
#include <kizuna/grid.h>

#define KZ_INTEREST_MAX_VISIBLE 1024u
/* Largest accepted max_candidates: keeps (float)max_candidates exact. */
#define KZ_INTEREST_MAX_CANDIDATES (1u << 24)

/*
 * Zero fields mean the default. Constraints (else KZ_EINVAL): radius and
 * hysteresis finite and > 0 with a finite sum; 1 <= max_visible <=
 * KZ_INTEREST_MAX_VISIBLE; max_visible <= max_candidates <=
 * KZ_INTEREST_MAX_CANDIDATES; keep_bonus finite and >= 1. Since 0 means
 * the default, no hysteresis at all is spelled FLT_MIN (radius + FLT_MIN
 * rounds to radius for any radius above 1e-30 m).
 */
typedef struct kz_interest_config {
    float radius;             /* enter radius, meters; default 50 */
    float hysteresis;         /* leave radius = radius + hysteresis; default 5 */
    uint32_t max_visible;     /* default 100; 1 .. KZ_INTEREST_MAX_VISIBLE */
    uint32_t max_candidates;  /* crowd cap; default 4 * max_visible, >= max_visible */
    float keep_bonus;         /* default 1.5; >= 1 */
} kz_interest_config;

/* The visibility hook: 1 if `viewer` may see `target`, 0 if not. Called
 * once per candidate per select, in no particular order; it must not
 * change the grid. */
typedef int (*kz_visible_fn)(void *ctx, uint32_t viewer, uint32_t target);

typedef struct kz_interest {
    kz_interest_config cfg; /* resolved: no zero fields */
    uint32_t max_entities;
    uint32_t *cand;       /* scratch, max_entities: grid hits at the leave radius */
    uint64_t *key;        /* scratch, max_entities: sort keys, score bits then ~id */
    uint8_t *was;         /* scratch, max_entities: 1 while in `prev`, else 0 */
    uint32_t last_hits;   /* leave-radius hits of the last select: a cost hint */
    kz_allocator alloc;
} kz_interest;

typedef struct kz_interest_stats {
    uint32_t found;        /* grid hits at the (unscaled) leave radius, viewer excluded */
    uint32_t candidates;   /* after radii, before the hook */
    uint32_t vetoed;       /* refused by the hook */
    float scale;           /* radius scale applied, 1 = none */
} kz_interest_stats;

/* Fills the defaults into zero fields and checks the rest: 0 or KZ_EINVAL.
 * On failure `cfg` is left as it was. */
KZ_MUST_CHECK int kz_interest_config_resolve(kz_interest_config *cfg);

/*
 * Prepares `in` for viewers in grids of up to `max_entities` entities
 * (1 .. KZ_GRID_MAX_ENTITIES). `cfg` may be NULL for the defaults, `alloc`
 * NULL for the default allocator; both are copied. Allocates 13 bytes per
 * entity. Returns 0, KZ_EINVAL (bad config, max_entities out of range) or
 * KZ_ENOMEM; on failure `in` needs no fini (calling it is harmless).
 */
KZ_MUST_CHECK int kz_interest_init(kz_interest *in, const kz_interest_config *cfg,
                                   uint32_t max_entities, const kz_allocator *alloc);
/* Frees the scratch arrays; harmless on a zeroed or finished value. */
void kz_interest_fini(kz_interest *in);

/*
 * Selects what `viewer` (an entity in the grid) sees. `prev` lists the
 * entities it saw last tick (any order, no duplicates; ids not in the grid
 * are ignored, also ids >= max_entities). `importance` is a per-entity
 * weight > 0 indexed by entity, NULL for all 1. `fn` may be NULL
 * (everything visible). Writes up to max_visible entity ids to `out`, best
 * first, and their scores to `out_score` (may be NULL); returns the count.
 * `out` may be the very array `prev` points to (prev is read in full
 * before out is written), so a caller can keep one array per viewer.
 * `stats` may be NULL. A viewer not in the grid sees nothing (stats all 0,
 * scale 1). The grid's max_entities must not exceed the one given at init
 * (asserted). Allocates nothing.
 */
uint32_t kz_interest_select(kz_interest *in, const kz_grid *g, uint32_t viewer,
                            const uint32_t *prev, uint32_t n_prev, const float *importance,
                            kz_visible_fn fn, void *fn_ctx, uint32_t *out, float *out_score,
                            kz_interest_stats *stats);

/* Internal, exposed for tests: reorders the distinct keys key[0..n) so
 * that key[0..k) holds the k largest, descending (k <= n). After `depth`
 * quicksort partition levels heapsort takes over; a select passes twice
 * log2(n), a test 0 to exercise the fallback. */
void kz__interest_rank(uint64_t *key, uint32_t n, uint32_t k, uint32_t depth);

/* The ranking score of an entity at squared distance d2 (float rule). */
static inline float kz_interest_score(float d2, float importance, int kept, float keep_bonus)
{
    float d = sqrtf(d2);
    float s = importance / (d > 1.0f ? d : 1.0f);
    return kept ? s * keep_bonus : s;
}

#endif /* KZ_SIM_INTEREST_H */
