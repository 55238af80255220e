/*
 * Fuzz harness for the snapshot decoder. Input: one mode byte, then the
 * body. Mode bit 0 set: the body is decoded against a fixed baseline (tick
 * 1000, 14 entities of every kind in a 32-slot view: desktop and VR
 * avatars, objects, one desktop avatar with a head offset); clear: with no
 * baseline. Mode bit 1 set: the body starts after a 3-bit prefix (a
 * server header that does not end on a byte boundary). Mode bit 2 set: a
 * fixed older view (tick 999: most of the baseline's entities a little
 * earlier, some with poses at their limits or another rotation index, one
 * slot held by another entity, one empty) is given for second order.
 *
 * Invariants (abort() on a violation): a decode either fails with
 * KZ_EPROTO or yields a view with ascending slots below n_slots whose
 * states pass kz_snap_state_check; a body that names an older view
 * decodes only with that view; the view re-encodes against the same
 * baseline and older view, and decoding that gives the same view back,
 * with the same badges for entities entering in both; re-encoding twice
 * more with the payload cache (keys = slots, the baseline and older view
 * taken as the world states: the first encode stores, the second copies)
 * gives the same bytes.
 *
 * Seeds in tests/fuzz/corpus/snapshot were made by the encoder (a full
 * state, deltas with updates, leaves, enters and replaces, badges, and
 * second-order deltas against the older view).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/snapshot.h"

#define FZ_SLOTS 32u
#define FZ_BASE_TICK 1000u
#define FZ_OLDER_TICK 999u

typedef struct fz_view {
    kz_snap_view v;
    uint16_t slot[FZ_SLOTS];
    kz_snap_state st[FZ_SLOTS];
    uint8_t change[FZ_SLOTS];
    kz_snap_badge badge[FZ_SLOTS];
} fz_view;

static void fz_fail(const char *what)
{
    fprintf(stderr, "fuzz_snapshot: invariant violated: %s\n", what);
    abort();
}

static void fz_view_init(fz_view *f)
{
    memset(f, 0, sizeof *f);
    f->v.cap = FZ_SLOTS;
    f->v.slot = f->slot;
    f->v.state = f->st;
}

static const kz_snap_codec *fz_codec(void)
{
    static kz_snap_codec c;
    static int ready;
    if (!ready) {
        if (kz_snap_codec_init(&c, 30, FZ_SLOTS, 500.0f) != KZ_OK)
            fz_fail("codec init");
        ready = 1;
    }
    return &c;
}

/* The fixed baseline: deterministic, every kind of entity. */
static const fz_view *fz_base(void)
{
    static fz_view b;
    static int ready;
    if (ready)
        return &b;
    fz_view_init(&b);
    b.v.tick = FZ_BASE_TICK;
    for (uint32_t i = 0; i < 14; i++) {
        kz_snap_state *s = &b.st[i];
        b.slot[i] = (uint16_t)(i < 8 ? i : 2 * i + 1);
        s->entity = 100 + i;
        s->kind = i % 5 == 4 ? KZ_KIND_OBJECT : KZ_KIND_AVATAR;
        for (int k = 0; k < 3; k++) {
            s->pos[k] = (int32_t)(i * 1000 + (uint32_t)k * 77) - 5000;
            s->vel[k] = (int16_t)(i % 3 == 0 ? 0 : (int)(i * 40) - 300 + k);
        }
        s->yaw = (uint16_t)(i * 4000);
        s->anim = (uint16_t)(i % 4 == 1 ? 7 : 0);
        s->flags = i % 3 == 1 ? KZ_AVATAR_VR : 0;
        s->holder = s->kind == KZ_KIND_OBJECT ? 101 : 0;
        for (uint32_t p = 0; p < KZ_POSE_COUNT; p++) {
            int posed = (s->flags & KZ_AVATAR_VR) || (s->kind == KZ_KIND_OBJECT && p == 0);
            s->rot[p] = KZ_SNAP_ROT_REST;
            if (posed) {
                s->rel[p][0] = (int16_t)(p * 200 - 200);
                s->rel[p][1] = (int16_t)(1500 - p * 400);
                s->rot[p] = (2u << 30) | ((400u + i) << 20) | (600u << 10) | (511u + p);
            }
        }
        if (i == 6)
            s->rel[0][1] = 1600;   /* desktop with a head offset */
    }
    b.v.count = 14;
    ready = 1;
    return &b;
}

/* The fixed older view: the baseline a tick earlier, with the cases the
 * second-order rules tell apart. */
static const fz_view *fz_older(void)
{
    static fz_view o;
    static int ready;
    if (ready)
        return &o;
    const fz_view *b = fz_base();
    fz_view_init(&o);
    o.v.tick = FZ_OLDER_TICK;
    for (uint32_t i = 0; i < b->v.count; i++) {
        if (i == 3)
            continue;   /* empty in the older view: first order there */
        kz_snap_state s = b->st[i];
        if (i == 5)
            s.entity = 900;   /* another entity: first order there */
        for (uint32_t p = 0; p < KZ_POSE_COUNT; p++) {
            for (int k = 0; k < 3; k++) {
                int32_t v = s.rel[p][k] - (int32_t)(7 * i + p + (uint32_t)k) + 20;
                s.rel[p][k] = (int16_t)(v > KZ_SNAP_REL_MAX ? KZ_SNAP_REL_MAX
                                        : v < -KZ_SNAP_REL_MAX ? -KZ_SNAP_REL_MAX : v);
            }
            if (i == 1 && p == 0)
                s.rel[p][0] = -KZ_SNAP_REL_MAX;   /* extrapolates past the limit */
            if (i == 4 && p == 1)
                s.rot[p] = (1u << 30) | (s.rot[p] & ((1u << 30) - 1u));   /* another index */
            else if (s.rot[p] != KZ_SNAP_ROT_REST)
                s.rot[p] -= (3u << 10) + 1u;   /* components move on */
        }
        o.slot[o.v.count] = b->slot[i];
        o.st[o.v.count++] = s;
    }
    ready = 1;
    return &o;
}

/* The re-encoder's badges are the ones the first decode produced. */
typedef struct fz_badges {
    const fz_view *from;
} fz_badges;

static const kz_snap_badge *fz_badge_cb(void *ctx, uint32_t entity)
{
    const fz_view *f = ((const fz_badges *)ctx)->from;
    for (uint32_t i = 0; i < f->v.count; i++) {
        if (f->st[i].entity == entity && f->change[i] == KZ_SNAP_ENTER)
            return &f->badge[f->slot[i]];
    }
    return NULL;
}

static int fz_decode(const uint8_t *buf, size_t len, size_t skip, const kz_snap_view *base,
                     const kz_snap_view *older, fz_view *out)
{
    kz_bitreader r;
    kz_bitreader_init(&r, len ? buf : NULL, len);
    if (skip > 0) {
        uint64_t pre;
        if (kz_bitreader_read(&r, &pre, (unsigned)skip) != KZ_OK)
            return KZ_EPROTO;
    }
    fz_view_init(out);
    return kz_snap_decode_older(fz_codec(), &r, base, older, &out->v, out->change, out->badge);
}

/* Encodes a's view twice with the payload cache and checks both bodies
 * equal the plain one (buf[0 .. n)). */
static void fz_check_cached(const kz_snap_encode_args *plain, const uint8_t *buf, size_t n)
{
    static kz_snap_cache cache;
    static int ready;
    static uint8_t cbuf[16384];
    if (!ready) {
        if (kz_snap_cache_init(&cache, FZ_SLOTS, 2, NULL) != KZ_OK)
            fz_fail("cache init");
        ready = 1;
    }
    const kz_snap_view *want = plain->want, *base = plain->base, *older = plain->older;
    uint32_t key[FZ_SLOTS];
    const kz_snap_state *world[FZ_SLOTS], *oworld[FZ_SLOTS];
    for (uint32_t i = 0, j = 0, jo = 0; i < want->count; i++) {
        key[i] = want->slot[i];
        while (base != NULL && j < base->count && base->slot[j] < want->slot[i])
            j++;
        while (older != NULL && jo < older->count && older->slot[jo] < want->slot[i])
            jo++;
        int held = base != NULL && j < base->count && base->slot[j] == want->slot[i];
        int old = older != NULL && jo < older->count && older->slot[jo] == want->slot[i];
        world[i] = held ? &base->state[j] : NULL;
        oworld[i] = old ? &older->state[jo] : NULL;
    }
    kz_snap_encode_args a = *plain;
    a.cache = &cache;
    a.key = key;
    a.base_world = world;
    a.older_world = oworld;
    kz_snap_cache_begin(&cache, want->tick);
    for (int round = 0; round < 2; round++) {
        kz_bitwriter w;
        kz_bitwriter_init(&w, cbuf, sizeof cbuf);
        fz_view sent;
        fz_view_init(&sent);
        if (kz_snap_encode(fz_codec(), &a, &w, &sent.v, sent.change, NULL) != KZ_OK)
            fz_fail("cached re-encode failed");
        if (kz_bitwriter_finish(&w) != n || memcmp(cbuf, buf, n) != 0)
            fz_fail("cached re-encode differs from the plain one");
    }
}

/* Field by field: kz_snap_badge ends in padding, which memcmp would read. */
static int badge_equal(const kz_snap_badge *a, const kz_snap_badge *b)
{
    return a->verification_level == b->verification_level && a->actor_kind == b->actor_kind &&
           memcmp(a->reserved, b->reserved, sizeof a->reserved) == 0 &&
           a->acting_for == b->acting_for &&
           memcmp(a->method, b->method, sizeof a->method) == 0 &&
           memcmp(a->name, b->name, sizeof a->name) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const kz_snap_codec *c = fz_codec();
    const kz_snap_view *base = (data[0] & 1) ? &fz_base()->v : NULL;
    const kz_snap_view *older = (data[0] & 4) ? &fz_older()->v : NULL;
    size_t skip = (data[0] & 2) ? 3 : 0;
    static fz_view out, again;
    static uint8_t buf[16384];

    int rc = fz_decode(data + 1, size - 1, skip, base, older, &out);
    if (rc != KZ_OK) {
        if (rc != KZ_EPROTO)
            fz_fail("decode failed with something other than KZ_EPROTO");
        return 0;
    }
    for (uint32_t i = 0; i < out.v.count; i++) {
        if (out.slot[i] >= c->n_slots || (i > 0 && out.slot[i] <= out.slot[i - 1]))
            fz_fail("decoded slots not ascending or out of range");
        if (kz_snap_state_check(c, &out.st[i]) != KZ_OK)
            fz_fail("decoded state fails the state check");
        if (out.change[i] > KZ_SNAP_ENTER)
            fz_fail("bad change code");
    }

    /* Re-encode against the same baseline (as the body named it). */
    uint32_t tick = 0, base_tick = 0, older_tick = 0;
    kz_bitreader r;
    kz_bitreader_init(&r, data + 1, size - 1);
    if (skip > 0) {
        uint64_t pre;
        if (kz_bitreader_read(&r, &pre, (unsigned)skip) != KZ_OK)
            fz_fail("prefix vanished");
    }
    if (kz_snap_peek(c, &r, &tick, &base_tick) != KZ_OK || tick != out.v.tick ||
        kz_snap_peek_older(c, &r, &older_tick) != KZ_OK)
        fz_fail("peek disagrees with decode");
    if (older_tick != 0 && (older == NULL || older_tick != FZ_OLDER_TICK))
        fz_fail("decoded a body naming an older view without it");
    const kz_snap_view *rebase = base_tick != 0 ? base : NULL;
    const kz_snap_view *reolder = older_tick != 0 ? older : NULL;
    if (older_tick != 0 && fz_decode(data + 1, size - 1, skip, base, NULL, &again) != KZ_EPROTO)
        fz_fail("a body naming an older view decoded without it");
    fz_badges bctx = {&out};
    kz_snap_encode_args a = {.base = rebase, .older = reolder, .want = &out.v,
                             .budget_bits = SIZE_MAX, .badge = fz_badge_cb, .badge_ctx = &bctx};
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    fz_view sent;
    fz_view_init(&sent);
    if (kz_snap_encode(c, &a, &w, &sent.v, sent.change, NULL) != KZ_OK)
        fz_fail("re-encoding a decoded view failed");
    size_t n = kz_bitwriter_finish(&w);
    if (sent.v.count != out.v.count ||
        memcmp(sent.st, out.st, out.v.count * sizeof *out.st) != 0)
        fz_fail("unlimited budget did not send the whole view");
    fz_check_cached(&a, buf, n);
    if (fz_decode(buf, n, 0, rebase, reolder, &again) != KZ_OK)
        fz_fail("re-encoded body does not decode");
    if (again.v.tick != out.v.tick || again.v.count != out.v.count ||
        memcmp(again.slot, out.slot, out.v.count * sizeof *out.slot) != 0 ||
        memcmp(again.st, out.st, out.v.count * sizeof *out.st) != 0)
        fz_fail("round trip changed the view");
    for (uint32_t i = 0; i < out.v.count; i++) {
        uint16_t s = out.slot[i];
        /* A hostile body may put one entity in two slots; the badge
         * lookup by entity cannot tell those apart. */
        int unique = 1;
        for (uint32_t j = 0; j < out.v.count; j++)
            unique &= j == i || out.st[j].entity != out.st[i].entity;
        if (unique && out.change[i] == KZ_SNAP_ENTER && again.change[i] == KZ_SNAP_ENTER &&
            !badge_equal(&out.badge[s], &again.badge[s]))
            fz_fail("round trip changed a badge");
    }
    return 0;
}
