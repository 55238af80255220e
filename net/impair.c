/*
 * Network impairment simulator (see kizuna/impair.h for the model).
 *
 * Held copies live in a fixed pool of queue_limit slots of max_datagram
 * bytes each, taken from a free-slot stack; a binary min-heap of
 * (delivery time, queueing order, slot) entries orders them, so send and
 * poll cost O(log n) and equal delivery times come out first-in first-out.
 * Pool, heap and stack sit in the same single block as the instance.
 *
 * The profile parser at the end reads numbers itself instead of calling
 * strtod: the grammar is tiny (digits, at most one dot) and a hand reader
 * neither depends on the locale nor accepts "inf", "nan", hex or exponents.
 */
#include <string.h>

#include <kizuna/impair.h>

#include "core/assert.h"

/* ---- random streams ------------------------------------------------------ */

/* One splitmix64 state per knob, so that turning one knob does not shift
 * the random decisions of another. */
enum {
    KZ__S_BURST,
    KZ__S_LOSS,
    KZ__S_DUP,
    KZ__S_JITTER,
    KZ__S_REORDER,
    KZ__S_CORRUPT,
    KZ__S_COUNT
};

static uint64_t kz__sm_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* True with probability p (0..1). p = 0 draws nothing, so a knob that is
 * off leaves its stream where it was. */
static int kz__chance(uint64_t *state, double p)
{
    if (p <= 0.0)
        return 0;
    double u = (double)(kz__sm_next(state) >> 11) * (1.0 / 9007199254740992.0);
    return u < p;
}

/* ---- configuration -------------------------------------------------------- */

/* The knobs in the units the hot path uses. */
typedef struct kz__impair_knobs {
    double p_loss, p_enter, p_exit, p_bad_loss;
    double p_dup, p_reorder, p_corrupt;
    uint64_t delay_ns, jitter_ns, reorder_ns, rate_queue_ns;
    uint32_t rate_kbps;
} kz__impair_knobs;

static int kz__pct_ok(double v)
{
    return v >= 0.0 && v <= 100.0; /* false for NaN */
}

static int kz__ms_ok(double v)
{
    return v >= 0.0 && v <= KZ_IMPAIR_MAX_MS;
}

int kz_impair_config_check(const kz_impair_config *c)
{
    KZ_ASSERT(c != NULL);
    int ok = kz__pct_ok(c->loss_pct) && kz__pct_ok(c->burst_enter_pct) &&
             kz__pct_ok(c->burst_exit_pct) && kz__pct_ok(c->burst_loss_pct) &&
             kz__pct_ok(c->dup_pct) && kz__pct_ok(c->reorder_pct) &&
             kz__pct_ok(c->corrupt_pct) && kz__ms_ok(c->delay_ms) &&
             kz__ms_ok(c->jitter_ms) && kz__ms_ok(c->reorder_delay_ms) &&
             kz__ms_ok(c->rate_queue_ms) && c->rate_kbps <= KZ_IMPAIR_MAX_RATE_KBPS &&
             c->queue_limit <= KZ_IMPAIR_MAX_QUEUE_LIMIT &&
             c->max_datagram <= KZ_IMPAIR_MAX_DATAGRAM;
    return ok ? KZ_OK : KZ_EINVAL;
}

/* Replaces zero fields by their defaults. */
static void kz__impair_resolve(kz_impair_config *c)
{
    if (c->burst_exit_pct == 0.0)
        c->burst_exit_pct = KZ_IMPAIR_DEFAULT_BURST_EXIT_PCT;
    if (c->burst_loss_pct == 0.0)
        c->burst_loss_pct = KZ_IMPAIR_DEFAULT_BURST_LOSS_PCT;
    if (c->reorder_delay_ms == 0.0)
        c->reorder_delay_ms = 2.0 * c->jitter_ms + KZ_IMPAIR_DEFAULT_REORDER_EXTRA_MS;
    if (c->rate_queue_ms == 0.0)
        c->rate_queue_ms = KZ_IMPAIR_DEFAULT_RATE_QUEUE_MS;
    if (c->queue_limit == 0)
        c->queue_limit = KZ_IMPAIR_DEFAULT_QUEUE_LIMIT;
    if (c->max_datagram == 0)
        c->max_datagram = KZ_IMPAIR_DEFAULT_MAX_DATAGRAM;
}

void kz_impair_config_default(kz_impair_config *cfg)
{
    KZ_ASSERT(cfg != NULL);
    memset(cfg, 0, sizeof *cfg);
    kz__impair_resolve(cfg);
}

static uint64_t kz__ms_to_ns(double ms)
{
    return (uint64_t)(ms * 1e6 + 0.5); /* ms is checked to 0..60,000 */
}

/* `c` must be resolved and valid. */
static void kz__impair_knobs_from(kz__impair_knobs *k, const kz_impair_config *c)
{
    k->p_loss = c->loss_pct / 100.0;
    k->p_enter = c->burst_enter_pct / 100.0;
    k->p_exit = c->burst_exit_pct / 100.0;
    k->p_bad_loss = c->burst_loss_pct / 100.0;
    k->p_dup = c->dup_pct / 100.0;
    k->p_reorder = c->reorder_pct / 100.0;
    k->p_corrupt = c->corrupt_pct / 100.0;
    k->delay_ns = kz__ms_to_ns(c->delay_ms);
    k->jitter_ns = kz__ms_to_ns(c->jitter_ms);
    k->reorder_ns = kz__ms_to_ns(c->reorder_delay_ms);
    k->rate_queue_ns = kz__ms_to_ns(c->rate_queue_ms);
    k->rate_kbps = c->rate_kbps;
}

double kz_impair_expected_loss(const kz_impair_config *cfg)
{
    KZ_ASSERT(cfg != NULL);
    if (kz_impair_config_check(cfg) != KZ_OK)
        return -1.0;
    kz_impair_config c = *cfg;
    kz__impair_resolve(&c);
    double bad = 0.0;
    if (c.burst_enter_pct > 0.0)
        bad = c.burst_enter_pct / (c.burst_enter_pct + c.burst_exit_pct);
    double kept = (1.0 - c.loss_pct / 100.0) * (1.0 - bad * c.burst_loss_pct / 100.0);
    return 100.0 * (1.0 - kept);
}

int kz_impair_set_burst(kz_impair_config *cfg, double loss_pct, double mean_len)
{
    KZ_ASSERT(cfg != NULL);
    if (!(loss_pct >= 0.0 && loss_pct < 100.0) ||
        !(mean_len >= 1.0 && mean_len <= KZ_IMPAIR_MAX_BURST_LEN))
        return KZ_EINVAL;
    if (loss_pct == 0.0) {
        cfg->burst_enter_pct = cfg->burst_exit_pct = cfg->burst_loss_pct = 0.0;
        return KZ_OK;
    }
    /* Stationary share of bad-state datagrams: enter / (enter + exit). */
    double exit_pct = 100.0 / mean_len;
    double enter_pct = exit_pct * loss_pct / (100.0 - loss_pct);
    if (enter_pct > 100.0)
        return KZ_EINVAL;
    cfg->burst_enter_pct = enter_pct;
    cfg->burst_exit_pct = exit_pct;
    cfg->burst_loss_pct = 100.0;
    return KZ_OK;
}

/* ---- the instance ---------------------------------------------------------- */

typedef struct kz__impair_entry {
    kz_time_ns due;
    uint64_t order; /* queueing order: the tie-break among equal times */
    uint32_t slot;
} kz__impair_entry;

typedef struct kz__impair_slot {
    uint64_t tag;
    uint32_t len;
} kz__impair_slot;

struct kz_impair {
    kz_allocator alloc;
    size_t block_size;
    kz_impair_config cfg; /* resolved */
    kz__impair_knobs k;
    uint64_t rng[KZ__S_COUNT];
    int bad;              /* Gilbert-Elliott state */
    kz_time_ns link_free; /* when the rate-limited link is next idle */
    uint64_t next_order;
    kz__impair_entry *heap;
    uint32_t heap_len;
    kz__impair_slot *slots;
    uint32_t *free_slots; /* stack */
    uint32_t free_len;
    uint8_t *data;        /* slot i at data + i * max_datagram */
    kz_impair_stats stats;
};

#define KZ__ALIGN_UP(n, a) (((n) + (a) - 1) & ~(size_t)((a) - 1))

/* Offsets of the arrays inside the block; 0 on overflow. */
typedef struct kz__impair_layout {
    size_t heap, slots, free_slots, data, total;
} kz__impair_layout;

static int kz__impair_layout_of(kz__impair_layout *l, uint32_t queue, uint32_t max_dgram)
{
    size_t q = queue;
    /* Per slot: the bytes, a heap entry, a slot record, a stack cell. */
    size_t per_slot = (size_t)max_dgram + sizeof(kz__impair_entry) + sizeof(kz__impair_slot) +
                      sizeof(uint32_t);
    if ((SIZE_MAX - 4096) / q < per_slot)
        return KZ_EINVAL; /* only possible where size_t is 32 bits */
    l->heap = KZ__ALIGN_UP(sizeof(struct kz_impair), 64);
    l->slots = KZ__ALIGN_UP(l->heap + q * sizeof(kz__impair_entry), 64);
    l->free_slots = KZ__ALIGN_UP(l->slots + q * sizeof(kz__impair_slot), 64);
    l->data = KZ__ALIGN_UP(l->free_slots + q * sizeof(uint32_t), 64);
    l->total = l->data + q * (size_t)max_dgram;
    return KZ_OK;
}

size_t kz_impair_footprint(const kz_impair_config *cfg)
{
    kz_impair_config c;
    if (cfg)
        c = *cfg;
    else
        memset(&c, 0, sizeof c);
    if (kz_impair_config_check(&c) != KZ_OK)
        return 0;
    kz__impair_resolve(&c);
    kz__impair_layout l;
    if (kz__impair_layout_of(&l, c.queue_limit, c.max_datagram) != KZ_OK)
        return 0;
    return l.total;
}

kz_impair *kz_impair_create(const kz_impair_config *cfg, uint64_t seed,
                            const kz_allocator *alloc)
{
    kz_impair_config c;
    if (cfg)
        c = *cfg;
    else
        memset(&c, 0, sizeof c);
    if (kz_impair_config_check(&c) != KZ_OK)
        return NULL;
    kz__impair_resolve(&c);
    kz__impair_layout l;
    if (kz__impair_layout_of(&l, c.queue_limit, c.max_datagram) != KZ_OK)
        return NULL;

    kz_allocator a = alloc ? *alloc : kz_allocator_default();
    kz_allocator_resolve(&a);
    uint8_t *block = kz_alloc(&a, l.total, 64);
    if (block == NULL)
        return NULL;
    kz_impair *im = (kz_impair *)block;
    memset(im, 0, sizeof *im);
    im->alloc = a;
    im->block_size = l.total;
    im->cfg = c;
    kz__impair_knobs_from(&im->k, &c);
    /* Stream seeds are successive outputs of a splitmix64 started at
     * `seed`: unrelated starting points on the generator's cycle. */
    uint64_t s = seed;
    for (int i = 0; i < KZ__S_COUNT; i++)
        im->rng[i] = kz__sm_next(&s);
    im->heap = (kz__impair_entry *)(block + l.heap);
    im->slots = (kz__impair_slot *)(block + l.slots);
    im->free_slots = (uint32_t *)(block + l.free_slots);
    im->data = block + l.data;
    /* Lowest slot on top, so a light load reuses a few warm slots. */
    for (uint32_t i = 0; i < c.queue_limit; i++)
        im->free_slots[i] = c.queue_limit - 1 - i;
    im->free_len = c.queue_limit;
    return im;
}

void kz_impair_destroy(kz_impair *im)
{
    if (im == NULL)
        return;
    kz_allocator a = im->alloc;
    kz_free(&a, im, im->block_size);
}

int kz_impair_set_config(kz_impair *im, const kz_impair_config *cfg)
{
    KZ_ASSERT(im != NULL && cfg != NULL);
    if (kz_impair_config_check(cfg) != KZ_OK)
        return KZ_EINVAL;
    kz_impair_config c = *cfg;
    kz__impair_resolve(&c);
    if (c.queue_limit != im->cfg.queue_limit || c.max_datagram != im->cfg.max_datagram)
        return KZ_EINVAL;
    im->cfg = c;
    kz__impair_knobs_from(&im->k, &c);
    if (im->k.p_enter == 0.0)
        im->bad = 0; /* burst loss switched off: start good if it returns */
    return KZ_OK;
}

/* ---- the delivery heap ---------------------------------------------------- */

static int kz__entry_before(const kz__impair_entry *a, const kz__impair_entry *b)
{
    return a->due < b->due || (a->due == b->due && a->order < b->order);
}

static void kz__heap_push(kz_impair *im, kz__impair_entry e)
{
    uint32_t i = im->heap_len++;
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!kz__entry_before(&e, &im->heap[parent]))
            break;
        im->heap[i] = im->heap[parent];
        i = parent;
    }
    im->heap[i] = e;
}

static void kz__heap_pop(kz_impair *im)
{
    kz__impair_entry last = im->heap[--im->heap_len];
    uint32_t n = im->heap_len, i = 0;
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && kz__entry_before(&im->heap[child + 1], &im->heap[child]))
            child++;
        if (!kz__entry_before(&im->heap[child], &last))
            break;
        im->heap[i] = im->heap[child];
        i = child;
    }
    if (n > 0)
        im->heap[i] = last;
}

/* ---- send ------------------------------------------------------------------ */

static kz_time_ns kz__add_sat(kz_time_ns a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Step 6: the time the copy has crossed the link, or 0 with *dropped set
 * when it would wait longer than rate_queue_ms. */
static kz_time_ns kz__impair_link(kz_impair *im, kz_time_ns now, size_t len, int *dropped)
{
    *dropped = 0;
    if (im->k.rate_kbps == 0)
        return now;
    kz_time_ns start = im->link_free > now ? im->link_free : now;
    if (start - now > im->k.rate_queue_ns) {
        *dropped = 1;
        return 0;
    }
    /* len * 8 bits at rate_kbps * 1000 bit/s, in ns, rounded up. */
    uint64_t bits_e6 = (uint64_t)len * 8u * 1000000u;
    uint64_t tx = (bits_e6 + im->k.rate_kbps - 1) / im->k.rate_kbps;
    im->link_free = kz__add_sat(start, tx);
    return im->link_free;
}

/* Step 7: delay + uniform jitter, clamped at 0, plus the reorder extra. */
static uint64_t kz__impair_delay(kz_impair *im)
{
    uint64_t d = im->k.delay_ns;
    if (im->k.jitter_ns > 0) {
        uint64_t span = 2 * im->k.jitter_ns + 1;
        /* The modulo bias is below span / 2^64 < 2^-27: invisible. */
        uint64_t pick = kz__sm_next(&im->rng[KZ__S_JITTER]) % span;
        d = d + pick >= im->k.jitter_ns ? d + pick - im->k.jitter_ns : 0;
    }
    if (kz__chance(&im->rng[KZ__S_REORDER], im->k.p_reorder)) {
        d += im->k.reorder_ns;
        im->stats.reordered++;
    }
    return d;
}

/* Step 8: flips 1..3 distinct bits of `p`. */
static void kz__impair_corrupt(kz_impair *im, uint8_t *p, uint32_t len)
{
    uint64_t *rng = &im->rng[KZ__S_CORRUPT];
    uint64_t bits = (uint64_t)len * 8u;
    uint64_t want = 1 + kz__sm_next(rng) % 3, picked[3];
    if (want > bits)
        want = bits;
    for (uint64_t n = 0; n < want;) {
        uint64_t b = kz__sm_next(rng) % bits, seen = 0;
        for (uint64_t j = 0; j < n; j++)
            seen |= picked[j] == b;
        if (seen)
            continue; /* a second flip would undo the first */
        picked[n++] = b;
        p[b / 8] ^= (uint8_t)(1u << (b % 8));
    }
    im->stats.corrupted++;
}

/* Steps 5-8 for one copy. */
static void kz__impair_enqueue(kz_impair *im, kz_time_ns now, const void *data, size_t len,
                               uint64_t tag)
{
    if (im->free_len == 0) {
        im->stats.dropped_queue++;
        return;
    }
    int dropped;
    kz_time_ns departed = kz__impair_link(im, now, len, &dropped);
    if (dropped) {
        im->stats.dropped_rate++;
        return;
    }
    uint32_t slot = im->free_slots[--im->free_len];
    uint8_t *dst = im->data + (size_t)slot * im->cfg.max_datagram;
    if (len > 0)
        memcpy(dst, data, len);
    im->slots[slot].tag = tag;
    im->slots[slot].len = (uint32_t)len;
    kz__impair_entry e = {kz__add_sat(departed, kz__impair_delay(im)), im->next_order++, slot};
    if (len > 0 && kz__chance(&im->rng[KZ__S_CORRUPT], im->k.p_corrupt))
        kz__impair_corrupt(im, dst, (uint32_t)len);
    kz__heap_push(im, e);
}

/* Steps 2 and 3. Both streams are consulted for every datagram, whatever
 * the other one decided, so each loss pattern depends on the datagram's
 * index only. */
static int kz__impair_lost(kz_impair *im)
{
    int burst_lost = 0;
    if (im->k.p_enter > 0.0) {
        uint64_t *rng = &im->rng[KZ__S_BURST];
        im->bad = im->bad ? !kz__chance(rng, im->k.p_exit) : kz__chance(rng, im->k.p_enter);
        burst_lost = im->bad && kz__chance(rng, im->k.p_bad_loss);
    }
    int random_lost = kz__chance(&im->rng[KZ__S_LOSS], im->k.p_loss);
    if (burst_lost)
        im->stats.dropped_burst++;
    else if (random_lost)
        im->stats.dropped_loss++;
    return burst_lost || random_lost;
}

int kz_impair_send(kz_impair *im, kz_time_ns now, const void *data, size_t len, uint64_t tag)
{
    KZ_ASSERT(im != NULL && (data != NULL || len == 0));
    if (len > im->cfg.max_datagram) {
        im->stats.oversize++;
        return KZ_EOVERFLOW;
    }
    im->stats.sent++;
    if (kz__impair_lost(im))
        return KZ_OK;
    int copies = 1;
    if (kz__chance(&im->rng[KZ__S_DUP], im->k.p_dup)) {
        im->stats.duplicated++;
        copies = 2;
    }
    for (int i = 0; i < copies; i++)
        kz__impair_enqueue(im, now, data, len, tag);
    return KZ_OK;
}

/* ---- poll and queries ------------------------------------------------------- */

int kz_impair_poll(kz_impair *im, kz_time_ns now, void *out, size_t cap, size_t *len,
                   uint64_t *tag)
{
    KZ_ASSERT(im != NULL && len != NULL && (out != NULL || cap == 0));
    if (im->heap_len == 0 || im->heap[0].due > now)
        return KZ_EEMPTY;
    uint32_t slot = im->heap[0].slot;
    uint32_t n = im->slots[slot].len;
    *len = n;
    if (n > cap)
        return KZ_EOVERFLOW;
    if (n > 0)
        memcpy(out, im->data + (size_t)slot * im->cfg.max_datagram, n);
    if (tag)
        *tag = im->slots[slot].tag;
    kz__heap_pop(im);
    im->free_slots[im->free_len++] = slot;
    im->stats.delivered++;
    return KZ_OK;
}

kz_time_ns kz_impair_next_due(const kz_impair *im)
{
    KZ_ASSERT(im != NULL);
    return im->heap_len ? im->heap[0].due : UINT64_MAX;
}

uint32_t kz_impair_pending(const kz_impair *im)
{
    KZ_ASSERT(im != NULL);
    return im->heap_len;
}

void kz_impair_get_stats(const kz_impair *im, kz_impair_stats *out)
{
    KZ_ASSERT(im != NULL && out != NULL);
    *out = im->stats;
}

void kz_impair_get_config(const kz_impair *im, kz_impair_config *out)
{
    KZ_ASSERT(im != NULL && out != NULL);
    *out = im->cfg;
}

/* ---- profiles ----------------------------------------------------------------- */

/* The named profiles, as the header lists them. */
static int kz__impair_named(const char *name, kz_impair_config *c)
{
    memset(c, 0, sizeof *c);
    if (strcmp(name, "none") == 0)
        return KZ_OK;
    if (strcmp(name, "lan") == 0) {
        c->delay_ms = 0.5;
        c->jitter_ms = 0.2;
        return KZ_OK;
    }
    if (strcmp(name, "wifi") == 0) {
        c->delay_ms = 5.0;
        c->jitter_ms = 3.0;
        c->loss_pct = 1.0;
        c->dup_pct = 0.1;
        return kz_impair_set_burst(c, 0.5, 3.0);
    }
    if (strcmp(name, "mobile") == 0) {
        c->delay_ms = 60.0;
        c->jitter_ms = 25.0;
        c->loss_pct = 2.0;
        c->reorder_pct = 1.0;
        return kz_impair_set_burst(c, 1.0, 4.0);
    }
    if (strcmp(name, "bad") == 0) {
        c->delay_ms = 200.0;
        c->jitter_ms = 50.0;
        return kz_impair_set_burst(c, 30.0, 8.0);
    }
    return KZ_EINVAL;
}

/* Digits with at most one dot, at least one digit, at most 15 digits (so
 * the mantissa is an exact double and one division rounds it). Writes the
 * value and whether a dot was seen. */
static int kz__parse_decimal(const char *s, double *out, int *has_dot)
{
    uint64_t mant = 0;
    int digits = 0, frac = 0, dot = 0;
    for (; *s; s++) {
        if (*s == '.') {
            if (dot++)
                return KZ_EINVAL;
        } else if (*s >= '0' && *s <= '9') {
            if (++digits > 15)
                return KZ_EINVAL;
            mant = mant * 10 + (uint64_t)(*s - '0');
            frac += dot;
        } else {
            return KZ_EINVAL;
        }
    }
    if (digits == 0)
        return KZ_EINVAL;
    double scale = 1.0;
    for (int i = 0; i < frac; i++)
        scale *= 10.0; /* 10^frac, frac <= 15: exact */
    *out = (double)mant / scale;
    *has_dot = dot;
    return KZ_OK;
}

enum { KZ__K_PCT, KZ__K_MS, KZ__K_U32, KZ__K_RAW_BURST, KZ__K_BURST, KZ__K_BURST_LEN };

typedef struct kz__impair_key {
    const char *name;
    int kind;
    size_t offset; /* into kz_impair_config, for the plain kinds */
    uint32_t max;  /* KZ__K_U32 */
} kz__impair_key;

#define KZ__F(field) offsetof(kz_impair_config, field)

static const kz__impair_key kz__impair_keys[] = {
    {"loss", KZ__K_PCT, KZ__F(loss_pct), 0},
    {"burst", KZ__K_BURST, 0, 0},
    {"burst_len", KZ__K_BURST_LEN, 0, 0},
    {"burst_enter", KZ__K_RAW_BURST, KZ__F(burst_enter_pct), 0},
    {"burst_exit", KZ__K_RAW_BURST, KZ__F(burst_exit_pct), 0},
    {"burst_loss", KZ__K_RAW_BURST, KZ__F(burst_loss_pct), 0},
    {"delay", KZ__K_MS, KZ__F(delay_ms), 0},
    {"jitter", KZ__K_MS, KZ__F(jitter_ms), 0},
    {"dup", KZ__K_PCT, KZ__F(dup_pct), 0},
    {"reorder", KZ__K_PCT, KZ__F(reorder_pct), 0},
    {"reorder_delay", KZ__K_MS, KZ__F(reorder_delay_ms), 0},
    {"corrupt", KZ__K_PCT, KZ__F(corrupt_pct), 0},
    {"rate", KZ__K_U32, KZ__F(rate_kbps), KZ_IMPAIR_MAX_RATE_KBPS},
    {"rate_queue", KZ__K_MS, KZ__F(rate_queue_ms), 0},
    {"queue", KZ__K_U32, KZ__F(queue_limit), KZ_IMPAIR_MAX_QUEUE_LIMIT},
    {"max_datagram", KZ__K_U32, KZ__F(max_datagram), KZ_IMPAIR_MAX_DATAGRAM},
};

/* What the items said about bursts, resolved once all are read. */
typedef struct kz__impair_burst_req {
    int have_burst, have_len, have_raw;
    double burst, len;
} kz__impair_burst_req;

static int kz__impair_apply_key(kz_impair_config *c, kz__impair_burst_req *b, const char *key,
                                const char *value)
{
    const kz__impair_key *k = NULL;
    for (size_t i = 0; i < sizeof kz__impair_keys / sizeof kz__impair_keys[0]; i++)
        if (strcmp(kz__impair_keys[i].name, key) == 0)
            k = &kz__impair_keys[i];
    double v;
    int has_dot;
    if (k == NULL || kz__parse_decimal(value, &v, &has_dot) != KZ_OK)
        return KZ_EINVAL;
    /* Ranges of the plain kinds are checked by kz_impair_config_check at
     * the end; only what cannot be stored is refused here. */
    switch (k->kind) {
    case KZ__K_PCT:
    case KZ__K_MS:
        *(double *)(void *)((char *)c + k->offset) = v;
        return KZ_OK;
    case KZ__K_RAW_BURST:
        b->have_raw = 1;
        *(double *)(void *)((char *)c + k->offset) = v;
        return KZ_OK;
    case KZ__K_U32:
        if (has_dot || v > (double)k->max)
            return KZ_EINVAL;
        *(uint32_t *)(void *)((char *)c + k->offset) = (uint32_t)v;
        return KZ_OK;
    case KZ__K_BURST:
        b->have_burst = 1;
        b->burst = v;
        return KZ_OK;
    default: /* KZ__K_BURST_LEN */
        b->have_len = 1;
        b->len = v;
        return KZ_OK;
    }
}

/* burst= and burst_len= set the raw fields through kz_impair_set_burst;
 * whichever of the two is missing comes from the profile's values. */
static int kz__impair_apply_burst(kz_impair_config *c, const kz__impair_burst_req *b)
{
    if (!b->have_burst && !b->have_len)
        return KZ_OK;
    if (b->have_raw)
        return KZ_EINVAL;
    double target = 0.0, len = 100.0 / KZ_IMPAIR_DEFAULT_BURST_EXIT_PCT;
    if (c->burst_enter_pct > 0.0) {
        kz_impair_config only_burst = *c;
        only_burst.loss_pct = 0.0;
        target = kz_impair_expected_loss(&only_burst);
        len = 100.0 / (c->burst_exit_pct > 0.0 ? c->burst_exit_pct
                                                : KZ_IMPAIR_DEFAULT_BURST_EXIT_PCT);
    }
    if (b->have_burst)
        target = b->burst;
    if (b->have_len)
        len = b->len;
    return kz_impair_set_burst(c, target, len);
}

static char *kz__trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* One comma-separated item (NUL-terminated, writable). */
static int kz__impair_item(kz_impair_config *c, kz__impair_burst_req *b, char *item, int first)
{
    item = kz__trim(item);
    char *eq = strchr(item, '=');
    if (eq == NULL)
        return first && *item ? kz__impair_named(item, c) : KZ_EINVAL;
    *eq = '\0';
    return kz__impair_apply_key(c, b, kz__trim(item), kz__trim(eq + 1));
}

int kz_impair_profile(const char *text, kz_impair_config *out)
{
    KZ_ASSERT(out != NULL);
    if (text == NULL)
        return KZ_EINVAL;
    char buf[KZ_IMPAIR_PROFILE_MAX + 1];
    size_t n = 0;
    /* Bounded length: never read past the terminator of a short string,
     * nor further than one byte past the limit of a long one. */
    while (n <= KZ_IMPAIR_PROFILE_MAX && text[n] != '\0')
        n++;
    if (n == 0 || n > KZ_IMPAIR_PROFILE_MAX)
        return KZ_EINVAL;
    memcpy(buf, text, n);
    buf[n] = '\0';

    kz_impair_config c;
    memset(&c, 0, sizeof c);
    kz__impair_burst_req b = {0, 0, 0, 0.0, 0.0};
    char *item = buf;
    for (int first = 1;; first = 0) {
        char *comma = strchr(item, ',');
        if (comma)
            *comma = '\0';
        if (kz__impair_item(&c, &b, item, first) != KZ_OK)
            return KZ_EINVAL;
        if (comma == NULL)
            break;
        item = comma + 1;
    }
    if (kz__impair_apply_burst(&c, &b) != KZ_OK || kz_impair_config_check(&c) != KZ_OK)
        return KZ_EINVAL;
    *out = c;
    return KZ_OK;
}
