/*
 * Snapshot codec: one client's view of the world, quantized, and the delta
 * coding of one view against an older one the client acknowledged.
 *
 * Model (after Quake III's snapshots, with a per-client view table). The
 * server gives every entity a client may see a *view slot* (0 .. n_slots-1,
 * stable while the entity stays visible). A view is the list of occupied
 * slots, ascending, with each entity's quantized state. The server keeps
 * the views it sent; the client acknowledges the newest it decoded; the
 * next packet is encoded against the newest acknowledged view (the
 * baseline), or against nothing (full state) when none is left in history.
 * Head and hand poses are predicted to second order when the encoder is
 * also given an *older* view the client holds for certain (one it
 * acknowledged, still in both histories): the body names it, and each
 * pose moves on from the baseline as it moved from the older view to the
 * baseline. Without one, poses are predicted to first order.
 * Because a packet has a byte budget, the encoder may leave changes out;
 * it reports the view the client will actually hold after decoding
 * (`sent`), and that is what the server must store in its history, never
 * the wanted view. Entering and leaving are therefore never lost: until the
 * client acknowledges a view that contains them, every later packet still
 * differs from the baseline and repeats them.
 *
 * Quantization (all integers, so equality and deltas are exact):
 *   root position   1/512 m per unit (max error 0.98 mm), int32 per axis
 *   velocity        1/256 m/s per unit, int16 (|v| < 128 m/s)
 *   yaw             1/65536 turn per unit, uint16
 *   head/hand pos   1/1024 m per unit within +-2 m (|code| <= 2048)
 *   rotations       smallest three, KZ_SNAP_ROT_K bits per component
 *                   (core/quant.h kz_quat_encode codes)
 * The codec never sees floats; kz_snap_quantize / kz_snap_dequantize
 * convert.
 *
 * Internal to the library (tests, fuzz targets and benches reach it through
 * the static library). One thread at a time per object; encode and decode
 * allocate nothing, and are pure functions of their arguments except for
 * the optional payload cache, which encode fills (kz_snap_cache below).
 */
#ifndef KZ_SIM_SNAPSHOT_H
#define KZ_SIM_SNAPSHOT_H

#include <kizuna/alloc.h>
#include <kizuna/avatar.h>
#include <kizuna/bitpack.h>
#include <kizuna/protocol.h>

#define KZ_SNAP_POS_UNITS 512         /* per meter */
#define KZ_SNAP_VEL_UNITS 256         /* per meter per second */
#define KZ_SNAP_REL_UNITS 1024        /* per meter */
#define KZ_SNAP_REL_MAX 2048          /* |relative code| <= this (2 m) */
#define KZ_SNAP_ROT_K 10u             /* bits per smallest-three component */
#define KZ_SNAP_MAX_SLOTS 1024u       /* view slots per client, hard cap */
#define KZ_SNAP_MAX_BOUND 1000000.0f  /* world half-extent cap, meters */
#define KZ_SNAP_MAX_TICK_HZ 1000u     /* tick rate cap */

/* The rotation code of the identity quaternion with k = KZ_SNAP_ROT_K:
 * dropped index 3 (w), the three kept components at the grid's zero
 * (2^k/2 - 1). The rest value of every rot[] field. */
#define KZ_SNAP_ROT_REST                                                     \
    ((3u << (3u * KZ_SNAP_ROT_K)) |                                          \
     (((1u << (KZ_SNAP_ROT_K - 1u)) - 1u) * ((1u << (2u * KZ_SNAP_ROT_K)) |  \
                                            (1u << KZ_SNAP_ROT_K) | 1u)))

/* Quantized state of one entity: 64 bytes, compared with memcmp, so the
 * padding field must stay zero. */
typedef struct kz_snap_state {
    uint32_t entity;     /* wire entity id, never 0 */
    uint8_t kind;        /* KZ_KIND_* */
    uint8_t flags;       /* KZ_AVATAR_* */
    uint16_t anim;
    int32_t pos[3];
    int16_t vel[3];
    uint16_t yaw;
    int16_t rel[KZ_POSE_COUNT][3];
    uint16_t pad;        /* zero */
    uint32_t rot[KZ_POSE_COUNT];   /* kz_quat_encode codes, k = KZ_SNAP_ROT_K */
    uint32_t holder;     /* objects: wire id of the holder, 0 = none */
} kz_snap_state;

/* Identity badge: sent once, with the entity's entering record. Strings
 * are NUL-terminated and at most the token limits long. */
typedef struct kz_snap_badge {
    uint8_t verification_level;   /* KZ_VERIFY_* */
    uint8_t actor_kind;           /* KZ_ACTOR_* */
    uint8_t reserved[6];
    uint64_t acting_for;          /* principal client id, 0 = none */
    char method[KZ_TOKEN_METHOD_MAX + 1];
    char name[KZ_TOKEN_NAME_MAX + 1];
} kz_snap_badge;

/* A view on caller storage: `slot` ascending and unique, each < n_slots of
 * the codec; `state[i]` belongs to `slot[i]`. `cap` is the room in both
 * arrays. */
typedef struct kz_snap_view {
    uint32_t tick;
    uint32_t count;
    uint32_t cap;
    uint16_t *slot;
    kz_snap_state *state;
    /* Instead of `state` (NULL: use `state`): a pointer per entry to its
     * state, so a server can hand the encoder the states where they are
     * (its ring of world images) rather than copies. The encoder reads
     * want, base and older views either way and, given a `sent` with
     * `ref`, reports what the client will hold as pointers into want's
     * and base's states (no copy; valid while those are). Decoding reads
     * base and older either way and writes `out->state`. */
    const kz_snap_state **ref;
} kz_snap_view;

/* What happened to an entry of a decoded (or sent) view. */
#define KZ_SNAP_SAME 0u     /* state equals the baseline's */
#define KZ_SNAP_UPDATE 1u   /* state changed */
#define KZ_SNAP_ENTER 2u    /* new in this slot (full state and badge sent) */

typedef struct kz_snap_codec {
    uint32_t tick_hz;       /* for velocity prediction; both ends agree */
    uint32_t n_slots;       /* 1 .. KZ_SNAP_MAX_SLOTS */
    uint32_t slot_bits;     /* bits to name a slot */
    uint32_t pos_bits;      /* bits of an absolute position code */
    int32_t pos_max;        /* |pos code| <= pos_max, = ceil(bound * 512) */
    float bound;            /* world half-extent, meters */
} kz_snap_codec;

/* Sets up the codec. bound: world half-extent in meters on every axis
 * (positions outside are refused by quantize); 0 < bound <=
 * KZ_SNAP_MAX_BOUND. tick_hz: 1 .. KZ_SNAP_MAX_TICK_HZ. Returns 0 or
 * KZ_EINVAL. pos_bits is the width of pos + pos_max (0 .. 2 pos_max). */
int kz_snap_codec_init(kz_snap_codec *c, uint32_t tick_hz, uint32_t n_slots, float bound);

/* Float state -> codes. Returns 0, KZ_ENOTFINITE (NaN or infinity
 * anywhere, checked first), KZ_ERANGE (position beyond the bound, offset
 * beyond reach, a velocity component with |v| >= 128 m/s) or KZ_EINVAL (a
 * quaternion not unit within 1e-3, a bad kind, entity 0). `out->entity`
 * is set from `entity`. Nothing is written on failure. Every field is
 * quantized as given, whatever the kind (an object's rotation is
 * pose[0].rot); rounding is to nearest, ties away from zero; yaw is
 * wrapped into [0, 2 pi) first, and a yaw that rounds to a full turn is 0.
 * Velocity codes are clamped to +-32767 (-32768 is not a code). */
int kz_snap_quantize(const kz_snap_codec *c, uint32_t entity, const kz_avatar_state *in,
                     kz_snap_state *out);
/* Codes -> floats (any codes: hostile ones are clamped, never trusted). */
void kz_snap_dequantize(const kz_snap_codec *c, const kz_snap_state *in, kz_avatar_state *out);

/* 0 if `s` is a state the codec can carry (entity != 0, a known kind, pad
 * zero, |pos| <= pos_max, vel != -32768, |rel| <= KZ_SNAP_REL_MAX, every
 * rotation component <= 2^k - 2: what kz_snap_quantize produces and
 * kz_snap_decode accepts), else KZ_EINVAL. */
int kz_snap_state_check(const kz_snap_codec *c, const kz_snap_state *s);
/* KZ_OK when the encoder can carry badge `b` (levels, kinds, method and
 * name as a token allows them), else KZ_EINVAL. */
int kz_snap_badge_check(const kz_snap_badge *b);

/* Looks up the badge of `entity` for its entering record; returns NULL
 * when there is none (an empty badge is sent). */
typedef const kz_snap_badge *(*kz_snap_badge_fn)(void *ctx, uint32_t entity);

/*
 * Payload cache: UPDATE records shared between clients within one tick.
 *
 * On a server most clients acknowledge the same few ticks, and when a
 * client's baseline holds an entity's world state of that tick, the
 * entity's UPDATE payload (the record after its slot gap and type bit) is
 * the same for every such client. The cache keeps, per key (the server's
 * dense entity index), up to `ways` payloads of the current tick, one per
 * baseline tick (and older tick), so the first client encodes the payload
 * and the others copy its bits.
 *
 * The cache never changes a bit on the wire. A payload is used or made
 * only for an entry whose baseline state is memcmp-equal to
 * *base_world[i] (so a baseline holding a deferred, older state never
 * touches the cache) and, when the older view holds the entity (second
 * order), whose older state is memcmp-equal to *older_world[i]; an entry
 * is found only under the same key, baseline tick (so the same dt),
 * base_world pointer, older tick and older_world pointer (tick 0 and NULL
 * for an entity predicted to first order, whatever the body's older view)
 * and a wanted state equal to the copy the entry keeps. So a wrong key
 * (two entities sharing one) costs hits, never bits; what the cache
 * trusts is that the bytes behind the base_world and older_world pointers
 * do not change during the tick (point into the server's ring of world
 * images). Payloads longer than
 * KZ_SNAP_CACHE_BITS are not kept; the entry remembers that instead, so
 * later clients do not try again. When a key's ways are all taken this
 * tick, a newer baseline (smaller dt) replaces the one with the oldest;
 * an older baseline is then not stored.
 *
 * Caller storage, one thread at a time (the server's simulation thread);
 * init allocates n_keys * ways entries of 128 bytes, nothing else
 * allocates. Bound to one codec per tick (the first encode after begin).
 * With second order, clients that share a baseline tick share payloads
 * only if they also share the older tick: a server should pick the older
 * view by a rule that depends on the baseline tick where it can (see
 * kz_snap_encode_args.older).
 */
#define KZ_SNAP_CACHE_BITS 256u     /* longest payload kept */
#define KZ_SNAP_CACHE_MAX_WAYS 8u

typedef struct kz__snap_memo kz__snap_memo;   /* an entry, in snapshot.c */

/* Counters since init, for tests and benches. */
typedef struct kz_snap_cache_stats {
    uint64_t hits;      /* entries found: payload copied (or known too long) */
    uint64_t stores;    /* payloads encoded into a new entry, then copied */
    uint64_t misses;    /* UPDATEs encoded directly: baseline not the world
                         * state, no room, or too long */
} kz_snap_cache_stats;

typedef struct kz_snap_cache {
    kz__snap_memo *memo;        /* n_keys * ways of 128 bytes, a key's ways adjacent */
    uint32_t n_keys, ways;
    uint32_t gen;               /* stamp of the current tick's entries, never 0 */
    uint32_t tick;              /* tick of the last begin */
    uint32_t tick_hz;           /* codec bound this tick (0: none yet) */
    int32_t pos_max;
    kz_allocator alloc;
    kz_snap_cache_stats stats;
} kz_snap_cache;

/* Sets up a cache for keys 0 .. n_keys-1 with `ways` entries per key
 * (1 .. KZ_SNAP_CACHE_MAX_WAYS; 2 covers baselines 1 and 2 ticks old).
 * a: NULL or zeroed for the C library. Returns 0, KZ_EINVAL (n_keys 0 or
 * above 2^24, ways out of range) or KZ_ENOMEM; on failure `k` is zeroed
 * and fini is harmless. No entry is valid until the first begin. */
KZ_MUST_CHECK int kz_snap_cache_init(kz_snap_cache *k, uint32_t n_keys, uint32_t ways,
                                     const kz_allocator *a);
/* Frees the entries; `k` is zeroed. A zeroed cache may be finished. */
void kz_snap_cache_fini(kz_snap_cache *k);
/* Starts tick `tick` (the want->tick of the encodes that follow): every
 * entry of earlier calls becomes invalid, in O(1). Call once per server
 * tick before the first client's encode. */
void kz_snap_cache_begin(kz_snap_cache *k, uint32_t tick);

typedef struct kz_snap_encode_args {
    /* NULL, count 0, tick 0 or tick == want->tick: full state (tick 0 is
     * never a baseline, so kz_snap_peek can use 0 for "none"). */
    const kz_snap_view *base;
    /*
     * Optional, per entry of `base` (NULL: none): nonzero marks an entry
     * the client holds whose state the encoder may not read (a server
     * that no longer has it); only its entity and kind are read. Such an
     * entry is never delta-coded nor left for the budget: if want holds
     * the same entity and kind in its slot, it goes out as an enter that
     * replaces it (a renew), and when that does not fit the client keeps
     * what it holds (no record; `sent` keeps the base entry, SAME,
     * counted deferred). Another entity in its slot replaces it as usual.
     */
    const uint8_t *base_unknown;
    /*
     * Optional older view for second-order prediction of head and hand
     * poses. NULL, count 0, tick 0, or a full-state body: first order
     * (the body names no older view). Otherwise it must be a view the
     * client holds for certain and that this codec produced (ascending
     * slots < n_slots), strictly before the baseline: base->tick -
     * older->tick (mod 2^32) >= 1, and that plus want->tick - base->tick
     * below 2^32 (KZ_EINVAL otherwise). On a server: the sent view of a
     * tick the client acknowledged before the baseline's, still in the
     * history (the client keeps its decoded views in a ring by tick %
     * history, so one it decoded within the last `history` ticks is
     * still there). Best: the newest such tick (the one the client
     * acknowledged just before the baseline; with an acknowledgement every
     * tick, base->tick - 1).
     */
    const kz_snap_view *older;
    const kz_snap_view *want;   /* what the client should see now; want->tick is the tick */
    /* Indices into `want` in priority order (highest first), `want->count`
     * of them; NULL means slot order. Used only when not every change fits. */
    const uint16_t *priority;
    size_t budget_bits;         /* room for the body in bits */
    kz_snap_badge_fn badge;
    void *badge_ctx;
    /* Optional payload cache (NULL: none; the output is the same either
     * way). With a cache, want->tick must be the tick of the last
     * kz_snap_cache_begin, and both arrays below are required, want->count
     * entries each. */
    kz_snap_cache *cache;
    /* Per want entry: the entity's cache key, < the cache's n_keys. */
    const uint32_t *key;
    /* Per want entry: the entity's world state at base->tick, or NULL if
     * unknown (then the entry is encoded without the cache). Must not
     * change until the next kz_snap_cache_begin. */
    const kz_snap_state *const *base_world;
    /* Per want entry: the entity's world state at older->tick, or NULL if
     * unknown (then an entry the older view holds is encoded without the
     * cache). Required with a cache and an older view in use; the same
     * rules as base_world. */
    const kz_snap_state *const *older_world;
} kz_snap_encode_args;

typedef struct kz_snap_encode_stats {
    uint32_t enters, updates, leaves;   /* records written */
    uint32_t deferred;                  /* changes left out for the budget */
    uint32_t same;                      /* entries equal to the baseline */
} kz_snap_encode_stats;

/*
 * Writes the snapshot body (tick, baseline tick, then records) to `w`
 * and fills `sent` (cap >= want->count; the codec's n_slots always
 * suffices; tick = want->tick) with the view the client will hold after
 * decoding it, and `change` (room for sent->cap entries, may be NULL)
 * with the KZ_SNAP_* of each sent entry. Entries memcmp-equal to the
 * baseline's cost nothing. An entry whose slot held a different entity
 * (or kind) in the baseline is sent as an enter that replaces it, and so
 * is one whose baseline entry is marked unknown (base_unknown). If
 * everything fits in min(budget_bits, room left in w) it is all written;
 * otherwise leaves come first and always (a replace left out still sends
 * the leave of the old entity), then changes are taken in priority order
 * while the exact body size still fits. Left out: an update or a renew
 * keeps the baseline state in `sent` (SAME), an enter is absent from
 * `sent`. The body must end the packet (the decoder reads to the end of
 * the buffer); kz_bitwriter_finish pads it.
 * Returns 0; KZ_EOVERFLOW if even the header and the leaves do not fit
 * (w is left as it was); KZ_EINVAL for misuse (views not ascending or
 * slots >= n_slots, cap too small, a changed want state failing
 * kz_snap_state_check, an invalid badge from the badge callback; with a
 * cache: key or base_world NULL, older_world NULL with an older view in
 * use, a key >= n_keys, want->tick not the cache's tick, another codec
 * than the one bound this tick; an older view not before the baseline or
 * not ascending), with
 * nothing written (the cache may have gained entries). Priority indices must be < want->count (asserted);
 * duplicates are ignored.
 */
int kz_snap_encode(const kz_snap_codec *c, const kz_snap_encode_args *a, kz_bitwriter *w,
                   kz_snap_view *sent, uint8_t *change, kz_snap_encode_stats *stats);

/* Reads the tick and baseline tick of a body (0 = full state) without
 * consuming it, so the caller can find the baseline in its history.
 * Returns 0 or KZ_EPROTO (truncated header, a baseline or older view at
 * tick 0, an older view as new as the tick). */
int kz_snap_peek(const kz_snap_codec *c, const kz_bitreader *r, uint32_t *tick,
                 uint32_t *base_tick);
/* The same for the older view the body names (0 = none: first order),
 * which the caller passes to kz_snap_decode_older. */
int kz_snap_peek_older(const kz_snap_codec *c, const kz_bitreader *r, uint32_t *older_tick);

/*
 * Decodes a body (from the reader's position to the end of its buffer;
 * the server may put its own header before it) against `base` (which must have the tick the body names;
 * NULL or empty for full state) into `out` (cap >= n_slots) and `change`
 * (room for n_slots). Badges of entering entities go to `badge[slot]`
 * (room for n_slots, may be NULL). Hostile input is expected: any
 * inconsistency (slot out of range or out of order, update of an empty
 * slot, enter with entity 0, code out of range, trailing garbage, wrong
 * baseline, a badge string too long or not printable) returns KZ_EPROTO
 * and leaves `out`, `change` and `badge` unspecified; the caller drops the
 * packet and counts it. Work is bounded by the body length (at most
 * n_slots records, each at least one bit). `base` must be a view this
 * codec produced (ascending slots < n_slots; asserted). Every decoded
 * state passes kz_snap_state_check.
 */
int kz_snap_decode(const kz_snap_codec *c, kz_bitreader *r, const kz_snap_view *base, kz_snap_view *out, uint8_t *change,
                   kz_snap_badge *badge);
/* The same with the older view the body names (kz_snap_peek_older; NULL
 * when it names none): a body that names an older view is refused
 * (KZ_EPROTO) unless `older` has that tick, and `older` is ignored when
 * the body names none. kz_snap_decode is this with older NULL. `older`
 * must be a view this codec produced (asserted). */
int kz_snap_decode_older(const kz_snap_codec *c, kz_bitreader *r, const kz_snap_view *base,
                         const kz_snap_view *older, kz_snap_view *out, uint8_t *change,
                         kz_snap_badge *badge);

#endif /* KZ_SIM_SNAPSHOT_H */
