/*
 * Bus message codec (sim/bus.h): the header, entity records of TICK and
 * SYNC, and the record heads of DOWN and BATCH. Pure functions over
 * bytes; every reader checks lengths before it reads and ranges after.
 */
#include "sim/bus.h"

#include <math.h>
#include <sodium.h>
#include <string.h>

#include <kizuna/entity.h>
#include <kizuna/utf8.h>

#include "sim/wire.h"

/* ---- small writers and readers ---------------------------------------- */

typedef struct {
    uint8_t *p, *end;
    int bad;
} wr;

static void w_bytes(wr *w, const void *src, size_t n)
{
    if (w->bad || (size_t)(w->end - w->p) < n) {
        w->bad = 1;
        return;
    }
    if (n)
        memcpy(w->p, src, n);
    w->p += n;
}

static void w_u8(wr *w, uint8_t v) { w_bytes(w, &v, 1); }

static void w_u16(wr *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    w_bytes(w, b, 2);
}

static void w_u32(wr *w, uint32_t v)
{
    uint8_t b[4];
    kz_bus_put32(b, v);
    w_bytes(w, b, 4);
}

static void w_u64(wr *w, uint64_t v)
{
    w_u32(w, (uint32_t)v);
    w_u32(w, (uint32_t)(v >> 32));
}

static void w_f32(wr *w, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    w_u32(w, v);
}

typedef struct {
    const uint8_t *p, *end;
    int bad;
} rd;

static int r_bytes(rd *r, void *dst, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return 0;
    }
    if (n)
        memcpy(dst, r->p, n);
    r->p += n;
    return 1;
}

static uint8_t r_u8(rd *r)
{
    uint8_t v = 0;
    (void)r_bytes(r, &v, 1);
    return v;
}

static uint16_t r_u16(rd *r)
{
    uint8_t b[2] = {0, 0};
    (void)r_bytes(r, b, 2);
    return (uint16_t)(b[0] | b[1] << 8);
}

static uint32_t r_u32(rd *r)
{
    uint8_t b[4] = {0, 0, 0, 0};
    (void)r_bytes(r, b, 4);
    return kz_bus_get32(b);
}

static uint64_t r_u64(rd *r)
{
    uint64_t lo = r_u32(r);
    return lo | (uint64_t)r_u32(r) << 32;
}

static float r_f32(rd *r)
{
    uint32_t v = r_u32(r);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

/* ---- header ------------------------------------------------------------- */

uint64_t kz_bus_world_hash(const char *world)
{
    uint8_t h[32];
    crypto_generichash(h, sizeof h, (const uint8_t *)world, strlen(world), NULL, 0);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | h[i];
    return v;
}

void kz_bus_header_write(const kz_bus_header *h, uint8_t out[KZ_BUS_HEADER_BYTES])
{
    wr w = {out, out + KZ_BUS_HEADER_BYTES, 0};
    w_bytes(&w, KZ_BUS_MAGIC, 4);
    w_u8(&w, KZ_BUS_VERSION);
    w_u8(&w, h->type);
    w_u16(&w, h->sender);
    w_u32(&w, h->length);
    w_u32(&w, 0);
    w_u64(&w, h->world);
    w_u64(&w, h->instance);
    w_u64(&w, h->epoch);
    w_u64(&w, h->seq);
}

/* Which subject each type belongs on. */
static unsigned subject_of(uint8_t type)
{
    switch (type) {
    case KZ_BUS_TICK:
    case KZ_BUS_SYNC: return KZ_BUS_SUBJECT_TICK;
    case KZ_BUS_HELLO:
    case KZ_BUS_BATCH:
    case KZ_BUS_BYE: return KZ_BUS_SUBJECT_UP;
    case KZ_BUS_DOWN: return KZ_BUS_SUBJECT_DOWN;
    default: return 0;
    }
}

kz_bus_drop kz_bus_header_check(const uint8_t *msg, size_t len, uint64_t world, unsigned subject,
                                uint32_t subject_edge, kz_bus_header *h)
{
    if (len > (size_t)KZ_BUS_MESSAGE_MAX + KZ_BUS_HEADER_BYTES)
        return KZ_BUS_DROP_OVERSIZE;
    if (len < KZ_BUS_HEADER_BYTES)
        return KZ_BUS_DROP_MALFORMED;
    if (memcmp(msg, KZ_BUS_MAGIC, 4) != 0 || msg[4] != KZ_BUS_VERSION)
        return KZ_BUS_DROP_VERSION;
    rd r = {msg + 5, msg + KZ_BUS_HEADER_BYTES, 0};
    h->type = r_u8(&r);
    h->sender = r_u16(&r);
    h->length = r_u32(&r);
    uint32_t reserved = r_u32(&r);
    h->world = r_u64(&r);
    h->instance = r_u64(&r);
    h->epoch = r_u64(&r);
    h->seq = r_u64(&r);
    if (h->length != len - KZ_BUS_HEADER_BYTES || reserved != 0 || h->seq == 0 ||
        h->instance == 0)
        return KZ_BUS_DROP_MALFORMED;
    if (h->world != world)
        return KZ_BUS_DROP_OTHER_WORLD;
    if (subject == 0 || subject_of(h->type) != subject || h->sender > KZ_BUS_MAX_EDGES)
        return KZ_BUS_DROP_SENDER;
    if (subject == KZ_BUS_SUBJECT_UP ? h->sender != subject_edge || subject_edge == 0
                                     : h->sender != 0)
        return KZ_BUS_DROP_SENDER;
    return KZ_BUS_OK;
}

/* ---- TICK and SYNC ------------------------------------------------------ */

void kz_bus_tick_head_write(const kz_bus_tick_head *t, uint8_t out[KZ_BUS_TICK_HEAD_BYTES])
{
    wr w = {out, out + KZ_BUS_TICK_HEAD_BYTES, 0};
    w_u32(&w, t->tick);
    w_u16(&w, t->part);
    w_u8(&w, t->flags);
    w_u8(&w, t->target);
    w_u32(&w, t->first);
    w_u32(&w, t->end);
    w_u32(&w, t->count);
}

int kz_bus_tick_head_read(const uint8_t **p, const uint8_t *end, kz_bus_tick_head *t)
{
    rd r = {*p, end, 0};
    t->tick = r_u32(&r);
    t->part = r_u16(&r);
    t->flags = r_u8(&r);
    t->target = r_u8(&r);
    t->first = r_u32(&r);
    t->end = r_u32(&r);
    t->count = r_u32(&r);
    if (r.bad || t->target > KZ_BUS_MAX_EDGES || (t->flags & ~(KZ_BUS_TICK_LAST | KZ_BUS_TICK_FULL)) ||
        t->first >= t->end || t->tick == 0 || t->count > t->end - t->first)
        return 0;
    *p = r.p;
    return 1;
}

void kz_bus_limits_write(const kz_bus_limits *l, uint8_t out[KZ_BUS_LIMITS_BYTES])
{
    wr w = {out, out + KZ_BUS_LIMITS_BYTES, 0};
    w_u32(&w, l->tick_hz);
    w_u32(&w, l->cap);
    w_u32(&w, l->max_clients);
    w_u32(&w, l->n_slots);
    w_u32(&w, l->history);
    w_f32(&w, l->bound);
    w_f32(&w, l->max_speed);
    w_f32(&w, l->view_radius);
}

int kz_bus_limits_read(const uint8_t **p, const uint8_t *end, kz_bus_limits *l)
{
    rd r = {*p, end, 0};
    l->tick_hz = r_u32(&r);
    l->cap = r_u32(&r);
    l->max_clients = r_u32(&r);
    l->n_slots = r_u32(&r);
    l->history = r_u32(&r);
    l->bound = r_f32(&r);
    l->max_speed = r_f32(&r);
    l->view_radius = r_f32(&r);
    if (r.bad)
        return 0;
    *p = r.p;
    return 1;
}

static void w_state(wr *w, const kz_snap_state *s)
{
    w_u32(w, s->entity);
    w_u8(w, s->kind);
    w_u8(w, s->flags);
    w_u16(w, s->anim);
    for (int i = 0; i < 3; i++)
        w_u32(w, (uint32_t)s->pos[i]);
    for (int i = 0; i < 3; i++)
        w_u16(w, (uint16_t)s->vel[i]);
    w_u16(w, s->yaw);
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++)
        for (int i = 0; i < 3; i++)
            w_u16(w, (uint16_t)s->rel[k][i]);
    w_u16(w, s->pad);
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++)
        w_u32(w, s->rot[k]);
    w_u32(w, s->holder);
}

static void r_state(rd *r, kz_snap_state *s)
{
    memset(s, 0, sizeof *s);
    s->entity = r_u32(r);
    s->kind = r_u8(r);
    s->flags = r_u8(r);
    s->anim = r_u16(r);
    for (int i = 0; i < 3; i++)
        s->pos[i] = (int32_t)r_u32(r);
    for (int i = 0; i < 3; i++)
        s->vel[i] = (int16_t)r_u16(r);
    s->yaw = r_u16(r);
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++)
        for (int i = 0; i < 3; i++)
            s->rel[k][i] = (int16_t)r_u16(r);
    s->pad = r_u16(r);
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++)
        s->rot[k] = r_u32(r);
    s->holder = r_u32(r);
}

#define STATE_BYTES (4u + 4u + 12u + 6u + 2u + 6u * KZ_POSE_COUNT + 2u + 4u * KZ_POSE_COUNT + 4u)

static size_t str_size(const char *s, size_t max) { return 1u + strnlen(s, max); }

size_t kz_bus_entity_size(const kz_bus_entity *e)
{
    size_t n = 8;  /* index, what, 3 reserved */
    if (e->what & KZ_BUS_E_STATE)
        n += STATE_BYTES;
    if (e->what & KZ_BUS_E_ATTR)
        n += 16;
    if (e->what & KZ_BUS_E_BADGE)
        n += 10 + str_size(e->badge.method, KZ_TOKEN_METHOD_MAX) +
             str_size(e->badge.name, KZ_TOKEN_NAME_MAX);
    if (e->what & KZ_BUS_E_BLOCKED)
        n += 1u + 8u * e->n_blocked;
    if (e->what & KZ_BUS_E_INPUT)
        n += 5;
    return n;
}

static void w_str(wr *w, const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    w_u8(w, (uint8_t)n);
    w_bytes(w, s, n);
}

int kz_bus_entity_write(const kz_bus_entity *e, uint8_t **p, uint8_t *end)
{
    wr w = {*p, end, 0};
    w_u32(&w, e->index);
    w_u8(&w, e->what);
    w_u8(&w, 0);
    w_u16(&w, 0);
    if (e->what & KZ_BUS_E_STATE)
        w_state(&w, &e->state);
    if (e->what & KZ_BUS_E_ATTR) {
        w_u8(&w, e->rule);
        w_u8(&w, e->zone);
        w_u16(&w, 0);
        w_f32(&w, e->importance);
        w_u64(&w, e->owner_id);
    }
    if (e->what & KZ_BUS_E_BADGE) {
        w_u8(&w, e->badge.verification_level);
        w_u8(&w, e->badge.actor_kind);
        w_u64(&w, e->badge.acting_for);
        w_str(&w, e->badge.method, KZ_TOKEN_METHOD_MAX);
        w_str(&w, e->badge.name, KZ_TOKEN_NAME_MAX);
    }
    if (e->what & KZ_BUS_E_BLOCKED) {
        w_u8(&w, e->n_blocked);
        for (uint32_t k = 0; k < e->n_blocked && k < 32; k++)
            w_u64(&w, e->blocked[k]);
    }
    if (e->what & KZ_BUS_E_INPUT) {
        w_u32(&w, e->input_tick);
        w_u8(&w, e->corrected);
    }
    if (w.bad)
        return 0;
    *p = w.p;
    return 1;
}

/* A length-prefixed UTF-8 string without NULs into dst[max + 1]. */
static int r_str(rd *r, char *dst, size_t max)
{
    uint8_t n = r_u8(r);
    if (r->bad || n > max || !r_bytes(r, dst, n))
        return 0;
    dst[n] = '\0';
    return memchr(dst, '\0', n) == NULL && kz_utf8_valid((const uint8_t *)dst, n);
}

int kz_bus_entity_read(const kz_snap_codec *codec, const uint8_t **p, const uint8_t *end,
                       uint32_t first, uint32_t range_end, int64_t after, kz_bus_entity *e)
{
    rd r = {*p, end, 0};
    memset(e, 0, sizeof *e);
    e->index = r_u32(&r);
    e->what = r_u8(&r);
    uint8_t res0 = r_u8(&r);
    uint16_t res1 = r_u16(&r);
    if (r.bad || res0 || res1 || e->index < first || e->index >= range_end ||
        (int64_t)e->index <= after)
        return 0;
    if (e->what == KZ_BUS_E_GONE) {
        *p = r.p;
        return 1;
    }
    if (e->what == 0 || (e->what & ~KZ_BUS_E_ALL))
        return 0;
    if (e->what & KZ_BUS_E_STATE) {
        r_state(&r, &e->state);
        if (r.bad || kz_snap_state_check(codec, &e->state) != KZ_OK)
            return 0;
        /* The id's index bits name this dense index: ids are never
         * shuffled between indices. */
        if ((e->state.entity & KZ_ENTITY_MAX) != e->index)
            return 0;
    }
    if (e->what & KZ_BUS_E_ATTR) {
        e->rule = r_u8(&r);
        e->zone = r_u8(&r);
        uint16_t res = r_u16(&r);
        e->importance = r_f32(&r);
        e->owner_id = r_u64(&r);
        if (r.bad || res || (e->rule & ~7u) || !isfinite(e->importance) || e->importance < 0 ||
            e->importance > 1e6f)
            return 0;
    }
    if (e->what & KZ_BUS_E_BADGE) {
        e->badge.verification_level = r_u8(&r);
        e->badge.actor_kind = r_u8(&r);
        e->badge.acting_for = r_u64(&r);
        if (!r_str(&r, e->badge.method, KZ_TOKEN_METHOD_MAX) ||
            !r_str(&r, e->badge.name, KZ_TOKEN_NAME_MAX) || kz_snap_badge_check(&e->badge) != KZ_OK)
            return 0;
    }
    if (e->what & KZ_BUS_E_BLOCKED) {
        e->n_blocked = r_u8(&r);
        if (e->n_blocked > 32)
            return 0;
        for (uint32_t k = 0; k < e->n_blocked; k++)
            e->blocked[k] = r_u64(&r);
    }
    if (e->what & KZ_BUS_E_INPUT) {
        e->input_tick = r_u32(&r);
        e->corrected = r_u8(&r);
        if (e->corrected > 1)
            return 0;
    }
    if (r.bad)
        return 0;
    *p = r.p;
    return 1;
}

/* ---- DOWN and BATCH records --------------------------------------------- */

int kz_bus_rec_write(const kz_bus_rec *rec, int up, uint8_t **p, uint8_t *end)
{
    wr w = {*p, end, 0};
    w_u8(&w, rec->kind);
    w_u8(&w, rec->sub);
    w_u16(&w, rec->len);
    w_u32(&w, rec->slot);
    w_u32(&w, rec->serial);
    if (up)
        w_u32(&w, rec->age_us);
    w_bytes(&w, rec->body, rec->len);
    if (w.bad)
        return 0;
    *p = w.p;
    return 1;
}

int kz_bus_rec_read(const uint8_t **p, const uint8_t *end, int up, kz_bus_rec *rec)
{
    rd r = {*p, end, 0};
    rec->kind = r_u8(&r);
    rec->sub = r_u8(&r);
    rec->len = r_u16(&r);
    rec->slot = r_u32(&r);
    rec->serial = r_u32(&r);
    rec->age_us = up ? r_u32(&r) : 0;
    if (r.bad || (size_t)(r.end - r.p) < rec->len)
        return 0;
    rec->body = r.p;
    *p = r.p + rec->len;
    return 1;
}
