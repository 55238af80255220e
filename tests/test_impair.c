/*
 * Impairment simulator: each knob against its target rate, the timing
 * bounds, the memory bound, determinism, and the profile parser with a
 * table of hostile strings.
 *
 * Statistical checks use fixed seeds and tolerances of four standard
 * deviations or more, so they are deterministic yet would catch a knob
 * that is off by a fraction of its value.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/impair.h>

#define MS KZ_NS_PER_MS

static uint64_t mix(uint64_t x)
{
    x += UINT64_C(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

/* Payload bytes that depend on `key` only, so a receiver can rebuild them. */
static void fill(uint8_t *p, size_t len, uint64_t key)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)mix(key * 4096 + i);
}

static kz_impair *make(const kz_impair_config *cfg, uint64_t seed)
{
    kz_impair *im = kz_impair_create(cfg, seed, NULL);
    cr_assert_not_null(im);
    return im;
}

/* Field by field: the struct has padding, which memcmp would read. */
static int config_eq(const kz_impair_config *a, const kz_impair_config *b)
{
    return a->loss_pct == b->loss_pct && a->burst_enter_pct == b->burst_enter_pct &&
           a->burst_exit_pct == b->burst_exit_pct && a->burst_loss_pct == b->burst_loss_pct &&
           a->delay_ms == b->delay_ms && a->jitter_ms == b->jitter_ms &&
           a->dup_pct == b->dup_pct && a->reorder_pct == b->reorder_pct &&
           a->reorder_delay_ms == b->reorder_delay_ms && a->corrupt_pct == b->corrupt_pct &&
           a->rate_kbps == b->rate_kbps && a->rate_queue_ms == b->rate_queue_ms &&
           a->queue_limit == b->queue_limit && a->max_datagram == b->max_datagram;
}

static kz_impair_stats stats_of(const kz_impair *im)
{
    kz_impair_stats s;
    kz_impair_get_stats(im, &s);
    return s;
}

/* sent + duplicated = delivered + drops + pending, always. */
static void assert_conserved(const kz_impair *im)
{
    kz_impair_stats s = stats_of(im);
    uint64_t in = s.sent + s.duplicated;
    uint64_t out = s.delivered + s.dropped_loss + s.dropped_burst + s.dropped_queue +
                   s.dropped_rate + kz_impair_pending(im);
    cr_assert_eq(in, out, "copies in %llu, accounted for %llu", (unsigned long long)in,
                 (unsigned long long)out);
}

/*
 * Drives `im` with sends at send_at[i] (nondecreasing; payload fill(i),
 * length len_of(i), tag i) and takes every copy at exactly its delivery
 * time: the copy must not be available one nanosecond earlier. `on_copy`
 * sees each delivery.
 */
typedef void (*copy_fn)(void *ctx, uint64_t tag, kz_time_ns at, const uint8_t *p, size_t len);

static void drive(kz_impair *im, const kz_time_ns *send_at, size_t n, size_t (*len_of)(size_t),
                  copy_fn on_copy, void *ctx)
{
    static uint8_t buf[KZ_IMPAIR_MAX_DATAGRAM];
    size_t i = 0;
    for (;;) {
        kz_time_ns next_send = i < n ? send_at[i] : UINT64_MAX;
        kz_time_ns due = kz_impair_next_due(im);
        if (due == UINT64_MAX && i >= n)
            break;
        if (due != UINT64_MAX && due <= next_send) {
            size_t len = 0;
            uint64_t tag = 0;
            if (due > 0)
                cr_assert_eq(kz_impair_poll(im, due - 1, buf, sizeof buf, &len, &tag), KZ_EEMPTY,
                             "a copy came out before its time");
            cr_assert_eq(kz_impair_poll(im, due, buf, sizeof buf, &len, &tag), KZ_OK);
            on_copy(ctx, tag, due, buf, len);
        } else {
            size_t len = len_of(i);
            fill(buf, len, i);
            cr_assert_eq(kz_impair_send(im, send_at[i], buf, len, i), KZ_OK);
            i++;
        }
    }
}

static kz_time_ns *every(size_t n, kz_time_ns step)
{
    kz_time_ns *t = malloc(n * sizeof *t);
    cr_assert_not_null(t);
    for (size_t i = 0; i < n; i++)
        t[i] = 1000 + i * step;
    return t;
}

static size_t len_100(size_t i)
{
    (void)i;
    return 100;
}

/* ---- a perfect path ------------------------------------------------------ */

Test(impair, zero_config_delivers_each_datagram_once_in_order_unchanged)
{
    kz_impair_config cfg = {0};
    kz_impair *im = make(&cfg, 1);
    static uint8_t in[1500], out[1500];
    cr_assert_eq(kz_impair_next_due(im), UINT64_MAX);

    /* One at a time: due at the very `now` it was sent. */
    for (uint64_t i = 0; i < 3000; i++) {
        size_t len = (size_t)(i * 37) % 1501, got = 9999;
        kz_time_ns now = 5000 + i * 1000;
        uint64_t tag = 0;
        fill(in, len, i);
        cr_assert_eq(kz_impair_send(im, now, in, len, i), KZ_OK);
        cr_assert_eq(kz_impair_next_due(im), now);
        cr_assert_eq(kz_impair_poll(im, now, out, sizeof out, &got, &tag), KZ_OK);
        cr_assert_eq(got, len);
        cr_assert_eq(tag, i);
        cr_assert_arr_eq(out, in, len, "datagram %llu changed", (unsigned long long)i);
        cr_assert_eq(kz_impair_poll(im, now, out, sizeof out, &got, &tag), KZ_EEMPTY);
        cr_assert_eq(kz_impair_next_due(im), UINT64_MAX);
    }

    /* A burst at one instant keeps its order (equal times: first in, first out). */
    kz_time_ns now = 10 * KZ_NS_PER_S;
    for (uint64_t i = 0; i < 200; i++) {
        fill(in, 64, 10000 + i);
        cr_assert_eq(kz_impair_send(im, now, in, 64, 10000 + i), KZ_OK);
    }
    for (uint64_t i = 0; i < 200; i++) {
        size_t got;
        uint64_t tag;
        cr_assert_eq(kz_impair_poll(im, now, out, sizeof out, &got, &tag), KZ_OK);
        cr_assert_eq(tag, 10000 + i, "position %llu", (unsigned long long)i);
        fill(in, 64, tag);
        cr_assert_arr_eq(out, in, 64);
    }
    kz_impair_stats s = stats_of(im);
    cr_assert_eq(s.sent, 3200);
    cr_assert_eq(s.delivered, 3200);
    cr_assert_eq(s.dropped_loss + s.dropped_burst + s.dropped_queue + s.dropped_rate, 0);
    cr_assert_eq(s.duplicated + s.reordered + s.corrupted + s.oversize, 0);
    kz_impair_destroy(im);
}

Test(impair, zero_length_datagrams_travel)
{
    kz_impair *im = make(NULL, 1);
    cr_assert_eq(kz_impair_send(im, 7, NULL, 0, 42), KZ_OK);
    size_t len = 1;
    uint64_t tag = 0;
    cr_assert_eq(kz_impair_poll(im, 7, NULL, 0, &len, &tag), KZ_OK);
    cr_assert_eq(len, 0);
    cr_assert_eq(tag, 42);
    kz_impair_destroy(im);
}

/* ---- delay and jitter ------------------------------------------------------ */

typedef struct {
    uint64_t min, max, count, zeros;
    double sum;
    const kz_time_ns *send_at;
    kz_time_ns lo, hi;
} delay_log;

static void on_delay(void *ctx, uint64_t tag, kz_time_ns at, const uint8_t *p, size_t len)
{
    delay_log *d = ctx;
    (void)p;
    (void)len;
    uint64_t delay = at - d->send_at[tag];
    cr_assert(delay >= d->lo && delay <= d->hi, "datagram %llu took %llu ns",
              (unsigned long long)tag, (unsigned long long)delay);
    d->min = delay < d->min ? delay : d->min;
    d->max = delay > d->max ? delay : d->max;
    d->zeros += delay == 0;
    d->sum += (double)delay;
    d->count++;
}

Test(impair, delay_stays_within_jitter_bounds_and_uses_the_spread)
{
    kz_impair_config cfg = {0};
    cfg.delay_ms = 50;
    cfg.jitter_ms = 10;
    kz_impair *im = make(&cfg, 3);
    size_t n = 2000;
    kz_time_ns *t = every(n, MS);
    delay_log d = {UINT64_MAX, 0, 0, 0, 0.0, t, 40 * MS, 60 * MS};
    drive(im, t, n, len_100, on_delay, &d);
    cr_assert_eq(d.count, n);
    /* The whole +-10 ms is used, not a sliver of it. */
    cr_assert_lt(d.min, 41 * MS);
    cr_assert_gt(d.max, 59 * MS);
    double mean = d.sum / (double)d.count;
    cr_assert(mean > 49.4 * MS && mean < 50.6 * MS, "mean delay %.0f ns", mean);
    kz_impair_destroy(im);
    free(t);
}

Test(impair, jitter_larger_than_delay_is_clamped_at_zero)
{
    kz_impair_config cfg = {0};
    cfg.delay_ms = 2;
    cfg.jitter_ms = 5;
    kz_impair *im = make(&cfg, 4);
    size_t n = 2000;
    kz_time_ns *t = every(n, MS);
    delay_log d = {UINT64_MAX, 0, 0, 0, 0.0, t, 0, 7 * MS};
    drive(im, t, n, len_100, on_delay, &d);
    cr_assert_eq(d.count, n);
    /* u < -2 ms has probability 3/10: about 600 of 2000. */
    cr_assert(d.zeros > 450 && d.zeros < 750, "%llu undelayed", (unsigned long long)d.zeros);
    cr_assert_gt(d.max, 6 * MS);
    kz_impair_destroy(im);
    free(t);
}

Test(impair, drain_order_is_by_time_then_by_queueing)
{
    kz_impair_config cfg = {0};
    cfg.delay_ms = 10;
    cfg.jitter_ms = 0.003; /* 6,001 possible times for 5,000 copies: many ties */
    cfg.queue_limit = 8192;
    kz_impair *im = make(&cfg, 5);
    uint8_t b[8] = {0};
    for (uint64_t i = 0; i < 5000; i++)
        cr_assert_eq(kz_impair_send(im, KZ_NS_PER_S, b, sizeof b, i), KZ_OK);
    kz_time_ns last_due = 0;
    uint64_t last_tag = 0, ties = 0;
    for (uint64_t i = 0; i < 5000; i++) {
        kz_time_ns due = kz_impair_next_due(im);
        cr_assert(due >= KZ_NS_PER_S + 10 * MS - 3000 && due <= KZ_NS_PER_S + 10 * MS + 3000);
        cr_assert_geq(due, last_due, "delivery times went backwards");
        size_t len;
        uint64_t tag;
        cr_assert_eq(kz_impair_poll(im, UINT64_MAX, b, sizeof b, &len, &tag), KZ_OK);
        if (i > 0 && due == last_due) {
            cr_assert_gt(tag, last_tag, "equal times must keep the sending order");
            ties++;
        }
        last_due = due;
        last_tag = tag;
    }
    cr_assert_gt(ties, 1000);
    kz_impair_destroy(im);
}

/* ---- loss ---------------------------------------------------------------- */

typedef struct {
    double loss_pct;
    double mean_run;
} loss_profile;

/* Sends n datagrams with no delay, polls each at once, and measures the
 * share lost and the mean length of runs of consecutive losses. */
static loss_profile measure_loss(const kz_impair_config *cfg, uint64_t seed, size_t n)
{
    kz_impair *im = make(cfg, seed);
    uint8_t b[32] = {0};
    uint64_t lost = 0, runs = 0, run = 0;
    for (uint64_t i = 0; i < n; i++) {
        cr_assert_eq(kz_impair_send(im, i, b, sizeof b, i), KZ_OK);
        size_t len;
        uint64_t tag;
        if (kz_impair_poll(im, i, b, sizeof b, &len, &tag) == KZ_OK) {
            cr_assert_eq(tag, i);
            runs += run > 0;
            run = 0;
        } else {
            lost++;
            run++;
        }
    }
    runs += run > 0;
    kz_impair_stats s = stats_of(im);
    cr_assert_eq(s.dropped_loss + s.dropped_burst, lost);
    assert_conserved(im);
    kz_impair_destroy(im);
    loss_profile p = {100.0 * (double)lost / (double)n, runs ? (double)lost / (double)runs : 0};
    return p;
}

Test(impair, random_loss_matches_its_rate)
{
    kz_impair_config cfg = {0};
    cfg.loss_pct = 10;
    /* 100k trials at p = 0.1: sd 95, so +-500 is over five sd. */
    loss_profile p = measure_loss(&cfg, 11, 100000);
    cr_assert(p.loss_pct > 9.5 && p.loss_pct < 10.5, "lost %.3f %%", p.loss_pct);
    /* Independent losses: runs average 1 / (1 - p) = 1.11. */
    cr_assert(p.mean_run > 1.05 && p.mean_run < 1.2, "mean run %.3f", p.mean_run);
    cr_assert_float_eq(kz_impair_expected_loss(&cfg), 10.0, 1e-9);
}

Test(impair, burst_loss_hits_its_long_run_rate_in_clusters)
{
    kz_impair_config burst = {0};
    cr_assert_eq(kz_impair_set_burst(&burst, 10, 5), KZ_OK);
    cr_assert_float_eq(kz_impair_expected_loss(&burst), 10.0, 1e-9);
    loss_profile b = measure_loss(&burst, 12, 200000);
    cr_assert(b.loss_pct > 9.0 && b.loss_pct < 11.0, "burst lost %.3f %%", b.loss_pct);
    cr_assert(b.mean_run > 4.5 && b.mean_run < 5.5, "mean burst run %.3f", b.mean_run);

    kz_impair_config indep = {0};
    indep.loss_pct = 10;
    loss_profile r = measure_loss(&indep, 12, 200000);
    cr_assert_gt(b.mean_run, 3 * r.mean_run, "bursts must cluster: %.2f vs %.2f", b.mean_run,
                 r.mean_run);
}

Test(impair, burst_drops_are_counted_apart_from_random_ones)
{
    kz_impair_config cfg = {0};
    cfg.loss_pct = 5;
    cr_assert_eq(kz_impair_set_burst(&cfg, 5, 4), KZ_OK);
    kz_impair *im = make(&cfg, 13);
    uint8_t b[4] = {0};
    for (uint64_t i = 0; i < 100000; i++)
        cr_assert_eq(kz_impair_send(im, 0, b, sizeof b, i), KZ_OK);
    kz_impair_stats s = stats_of(im);
    /* A datagram lost to both is counted once, as a burst loss. */
    cr_assert(s.dropped_burst > 4000 && s.dropped_burst < 6000, "burst %llu",
              (unsigned long long)s.dropped_burst);
    cr_assert(s.dropped_loss > 4200 && s.dropped_loss < 5300, "random %llu",
              (unsigned long long)s.dropped_loss);
    cr_assert_float_eq(kz_impair_expected_loss(&cfg), 100 * (1 - 0.95 * 0.95), 1e-9);
    kz_impair_destroy(im);
}

/* ---- duplication and reordering --------------------------------------------- */

typedef struct {
    uint8_t *copies;   /* per tag */
    uint64_t highest;  /* highest tag delivered so far */
    uint64_t inversions;
    int any;
} order_log;

static void on_order(void *ctx, uint64_t tag, kz_time_ns at, const uint8_t *p, size_t len)
{
    order_log *o = ctx;
    (void)at;
    uint8_t want[100];
    fill(want, 100, tag);
    cr_assert_eq(len, 100);
    cr_assert_arr_eq(p, want, 100);
    o->copies[tag]++;
    if (o->any && tag < o->highest)
        o->inversions++;
    if (!o->any || tag > o->highest)
        o->highest = tag;
    o->any = 1;
}

static order_log run_order(double dup, double reorder, size_t n, kz_impair_stats *s)
{
    kz_impair_config cfg = {0};
    cfg.dup_pct = dup;
    cfg.reorder_pct = reorder;
    cfg.delay_ms = 10; /* no jitter: only the reorder knob can swap copies */
    cfg.queue_limit = 1024;
    kz_impair *im = make(&cfg, 21);
    kz_time_ns *t = every(n, MS);
    order_log o = {calloc(n, 1), 0, 0, 0};
    cr_assert_not_null(o.copies);
    drive(im, t, n, len_100, on_order, &o);
    *s = stats_of(im);
    assert_conserved(im);
    kz_impair_destroy(im);
    free(t);
    return o;
}

Test(impair, duplication_and_reordering_match_targets_and_lose_nothing)
{
    size_t n = 100000;
    kz_impair_stats s;
    order_log o = run_order(1, 25, n, &s);
    uint64_t twice = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(o.copies[i] >= 1 && o.copies[i] <= 2, "datagram %zu arrived %u times", i,
                  o.copies[i]);
        twice += o.copies[i] == 2;
    }
    cr_assert_eq(twice, s.duplicated);
    cr_assert(s.duplicated > 700 && s.duplicated < 1300, "dup %llu",
              (unsigned long long)s.duplicated);
    double share = (double)s.reordered / (double)(s.sent + s.duplicated);
    cr_assert(share > 0.24 && share < 0.26, "reordered share %.4f", share);
    cr_assert_gt(o.inversions, 1000, "reordered copies must overtake later ones");
    cr_assert_eq(s.delivered, n + s.duplicated);
    free(o.copies);

    /* The control: the same path without reordering keeps the order. */
    order_log c = run_order(1, 0, n, &s);
    cr_assert_eq(c.inversions, 0);
    cr_assert_eq(s.reordered, 0);
    free(c.copies);
}

/* ---- corruption ------------------------------------------------------------ */

typedef struct {
    uint64_t changed, by_bits[4], count;
} corrupt_log;

static size_t len_varied(size_t i)
{
    return 1 + i % 200;
}

static void on_corrupt(void *ctx, uint64_t tag, kz_time_ns at, const uint8_t *p, size_t len)
{
    corrupt_log *c = ctx;
    (void)at;
    uint8_t want[200];
    cr_assert_eq(len, len_varied(tag));
    fill(want, len, tag);
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++)
        bits += (unsigned)__builtin_popcount((unsigned)(p[i] ^ want[i]));
    cr_assert_leq(bits, 3, "datagram %llu has %u flipped bits", (unsigned long long)tag, bits);
    c->by_bits[bits]++;
    c->changed += bits > 0;
    c->count++;
}

Test(impair, corruption_flips_one_to_three_bits_of_a_copy)
{
    kz_impair_config cfg = {0};
    cfg.corrupt_pct = 20;
    kz_impair *im = make(&cfg, 31);
    size_t n = 10000;
    kz_time_ns *t = every(n, 1000);
    corrupt_log c = {0, {0}, 0};
    drive(im, t, n, len_varied, on_corrupt, &c);
    kz_impair_stats s = stats_of(im);
    cr_assert_eq(c.count, n);
    cr_assert_eq(c.changed, s.corrupted);
    cr_assert(s.corrupted > 1800 && s.corrupted < 2200, "corrupted %llu",
              (unsigned long long)s.corrupted);
    for (int b = 1; b <= 3; b++)
        cr_assert_gt(c.by_bits[b], 500, "%d-bit corruptions: %llu", b,
                     (unsigned long long)c.by_bits[b]);
    kz_impair_destroy(im);

    /* Off: nothing changes. */
    cfg.corrupt_pct = 0;
    im = make(&cfg, 31);
    memset(&c, 0, sizeof c);
    drive(im, t, n, len_varied, on_corrupt, &c);
    cr_assert_eq(c.changed, 0);
    cr_assert_eq(stats_of(im).corrupted, 0);
    kz_impair_destroy(im);
    free(t);
}

Test(impair, corruption_never_writes_the_senders_buffer_nor_empty_datagrams)
{
    kz_impair_config cfg = {0};
    cfg.corrupt_pct = 100;
    kz_impair *im = make(&cfg, 32);
    uint8_t in[3] = {1, 2, 3}, out[3];
    cr_assert_eq(kz_impair_send(im, 0, in, 1, 1), KZ_OK);
    cr_assert_eq(kz_impair_send(im, 0, in, 0, 2), KZ_OK);
    cr_assert_eq(in[0], 1);
    size_t len;
    uint64_t tag;
    cr_assert_eq(kz_impair_poll(im, 0, out, sizeof out, &len, &tag), KZ_OK);
    cr_assert_eq(len, 1);
    int bits = __builtin_popcount((unsigned)(out[0] ^ 1));
    cr_assert(bits >= 1 && bits <= 3);
    cr_assert_eq(kz_impair_poll(im, 0, out, sizeof out, &len, &tag), KZ_OK);
    cr_assert_eq(len, 0);
    cr_assert_eq(stats_of(im).corrupted, 1);
    kz_impair_destroy(im);
}

/* ---- rate limit ------------------------------------------------------------- */

typedef struct {
    kz_time_ns *at;
    size_t n;
    uint64_t bytes;
    uint64_t worst_wait;
    const kz_time_ns *send_at;
} rate_log;

static size_t len_1000(size_t i)
{
    (void)i;
    return 1000;
}

static void on_rate(void *ctx, uint64_t tag, kz_time_ns at, const uint8_t *p, size_t len)
{
    rate_log *r = ctx;
    (void)p;
    r->at[r->n++] = at;
    r->bytes += len;
    uint64_t wait = at - r->send_at[tag];
    r->worst_wait = wait > r->worst_wait ? wait : r->worst_wait;
}

Test(impair, rate_limit_caps_throughput_and_counts_the_excess)
{
    kz_impair_config cfg = {0};
    cfg.rate_kbps = 800; /* 100,000 bytes per second: 100 datagrams of 1000 */
    kz_impair *im = make(&cfg, 41);
    size_t n = 750; /* 250 per second for 3 s: 2.5 times the rate */
    kz_time_ns *t = every(n, 4 * MS);
    rate_log r = {calloc(n, sizeof(kz_time_ns)), 0, 0, 0, t};
    drive(im, t, n, len_1000, on_rate, &r);

    /* Any one-second window holds at most the rate plus one datagram. */
    uint64_t in_window = 0;
    for (size_t lo = 0, hi = 0; lo < r.n; lo++) {
        while (hi < r.n && r.at[hi] < r.at[lo] + KZ_NS_PER_S)
            in_window += 1000, hi++;
        cr_assert_leq(in_window, 100000 + 1000, "%llu bytes in the second after %llu ns",
                      (unsigned long long)in_window, (unsigned long long)r.at[lo]);
        in_window -= 1000;
    }
    /* ... and the link is kept busy: about 3.1 s worth got through. */
    cr_assert(r.bytes >= 295000 && r.bytes <= 315000, "%llu bytes delivered",
              (unsigned long long)r.bytes);
    /* Nobody waits longer than the default 100 ms queue plus one send. */
    cr_assert_leq(r.worst_wait, 110 * MS);
    kz_impair_stats s = stats_of(im);
    cr_assert_eq(s.delivered + s.dropped_rate, n);
    cr_assert_gt(s.dropped_rate, 400);
    kz_impair_destroy(im);
    free(r.at);
    free(t);
}

Test(impair, rate_limit_below_capacity_only_adds_serialisation_delay)
{
    kz_impair_config cfg = {0};
    cfg.rate_kbps = 8000; /* 1,000,000 bytes per second: 1 ms per 1000-byte datagram */
    kz_impair *im = make(&cfg, 42);
    size_t n = 500;
    kz_time_ns *t = every(n, 2 * MS);
    rate_log r = {calloc(n, sizeof(kz_time_ns)), 0, 0, 0, t};
    drive(im, t, n, len_1000, on_rate, &r);
    cr_assert_eq(r.n, n);
    cr_assert_eq(r.worst_wait, 1 * MS);
    cr_assert_eq(stats_of(im).dropped_rate, 0);
    kz_impair_destroy(im);
    free(r.at);
    free(t);
}

/* ---- memory ---------------------------------------------------------------- */

Test(impair, queue_limit_bounds_memory_and_nothing_allocates_after_create)
{
    kz_counting_alloc ca;
    kz_counting_alloc_init(&ca, NULL);
    kz_allocator a = kz_counting_alloc_allocator(&ca);
    kz_impair_config cfg = {0};
    cfg.queue_limit = 64;
    cfg.delay_ms = 100;
    cfg.jitter_ms = 30;
    cfg.dup_pct = 10;
    cfg.corrupt_pct = 10;
    cfg.reorder_pct = 10;
    kz_impair *im = kz_impair_create(&cfg, 51, &a);
    cr_assert_not_null(im);
    uint64_t allocs = kz_counting_alloc_allocs(&ca);
    uint64_t live = kz_counting_alloc_live_bytes(&ca);
    cr_assert_eq(allocs, 1);
    cr_assert_eq(live, kz_impair_footprint(&cfg));

    uint8_t b[1500];
    memset(b, 0x5a, sizeof b);
    for (uint64_t i = 0; i < 10000; i++)
        cr_assert_eq(kz_impair_send(im, 0, b, sizeof b, i), KZ_OK);
    kz_impair_stats s = stats_of(im);
    cr_assert_eq(kz_impair_pending(im), 64);
    cr_assert_eq(s.dropped_queue, 10000 + s.duplicated - 64);
    assert_conserved(im);
    size_t len;
    uint64_t tag;
    for (int i = 0; i < 64; i++)
        cr_assert_eq(kz_impair_poll(im, KZ_NS_PER_S, b, sizeof b, &len, &tag), KZ_OK);
    cr_assert_eq(kz_impair_poll(im, KZ_NS_PER_S, b, sizeof b, &len, &tag), KZ_EEMPTY);

    /* A long mixed run, every knob on, with a live config change. */
    kz_impair_config mob;
    cr_assert_eq(kz_impair_profile("mobile,dup=5,corrupt=5,rate=500,queue=64", &mob), KZ_OK);
    cr_assert_eq(kz_impair_set_config(im, &mob), KZ_OK);
    for (uint64_t i = 0; i < 20000; i++) {
        kz_time_ns now = 2 * KZ_NS_PER_S + i * 500 * KZ_NS_PER_US;
        cr_assert_eq(kz_impair_send(im, now, b, 1 + i % 1500, i), KZ_OK);
        while (kz_impair_poll(im, now, b, sizeof b, &len, &tag) == KZ_OK)
            ;
    }
    assert_conserved(im);
    cr_assert_eq(kz_counting_alloc_allocs(&ca), allocs, "send/poll allocated");
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), live);
    kz_impair_destroy(im);
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0);
    cr_assert_eq(ca.frees, allocs);
}

Test(impair, create_fails_cleanly_without_memory_or_with_a_bad_config)
{
    kz_counting_alloc ca;
    kz_counting_alloc_init(&ca, NULL);
    kz_allocator a = kz_counting_alloc_allocator(&ca);
    ca.fail_after = 0;
    cr_assert_null(kz_impair_create(NULL, 1, &a));
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0);
    ca.fail_after = -1;
    kz_impair_config cfg = {0};
    cfg.loss_pct = 100.5;
    cr_assert_eq(kz_impair_config_check(&cfg), KZ_EINVAL);
    cr_assert_null(kz_impair_create(&cfg, 1, &a));
    cfg.loss_pct = 0;
    cfg.queue_limit = KZ_IMPAIR_MAX_QUEUE_LIMIT + 1;
    cr_assert_null(kz_impair_create(&cfg, 1, &a));
    cr_assert_eq(kz_impair_footprint(&cfg), 0);
    cfg.queue_limit = 0;
    cfg.delay_ms = -1;
    cr_assert_null(kz_impair_create(&cfg, 1, &a));
    cr_assert_eq(kz_counting_alloc_allocs(&ca), 0);
}

Test(impair, footprint_matches_the_documented_bound)
{
    size_t f = kz_impair_footprint(NULL);
    size_t per_slot = KZ_IMPAIR_DEFAULT_MAX_DATAGRAM + 44;
    cr_assert_geq(f, KZ_IMPAIR_DEFAULT_QUEUE_LIMIT * (size_t)KZ_IMPAIR_DEFAULT_MAX_DATAGRAM);
    cr_assert_leq(f, KZ_IMPAIR_DEFAULT_QUEUE_LIMIT * per_slot + 512);
    kz_impair_config cfg = {0};
    cfg.queue_limit = 4096;
    cfg.max_datagram = 1200;
    cr_assert_leq(kz_impair_footprint(&cfg), 4096 * (size_t)(1200 + 44) + 512);
}

/* ---- sizes --------------------------------------------------------------------- */

Test(impair, oversize_is_refused_and_a_small_buffer_leaves_the_datagram_queued)
{
    kz_impair_config cfg = {0};
    cfg.max_datagram = 100;
    kz_impair *im = make(&cfg, 61);
    uint8_t in[101], out[100];
    fill(in, sizeof in, 9);
    cr_assert_eq(kz_impair_send(im, 0, in, 101, 1), KZ_EOVERFLOW);
    kz_impair_stats s = stats_of(im);
    cr_assert_eq(s.oversize, 1);
    cr_assert_eq(s.sent, 0);
    cr_assert_eq(kz_impair_pending(im), 0);

    cr_assert_eq(kz_impair_send(im, 0, in, 100, 2), KZ_OK);
    size_t len = 0;
    uint64_t tag = 77;
    memset(out, 0xaa, sizeof out);
    cr_assert_eq(kz_impair_poll(im, 0, out, 99, &len, &tag), KZ_EOVERFLOW);
    cr_assert_eq(len, 100, "the size needed is reported");
    cr_assert_eq(tag, 77, "tag untouched on failure");
    cr_assert_eq(out[0], 0xaa, "buffer untouched on failure");
    cr_assert_eq(kz_impair_pending(im), 1);
    len = 0;
    cr_assert_eq(kz_impair_poll(im, 0, NULL, 0, &len, NULL), KZ_EOVERFLOW);
    cr_assert_eq(len, 100);
    cr_assert_eq(kz_impair_poll(im, 0, out, sizeof out, &len, &tag), KZ_OK);
    cr_assert_eq(tag, 2);
    cr_assert_arr_eq(out, in, 100);
    cr_assert_eq(stats_of(im).delivered, 1);
    kz_impair_destroy(im);

    /* The default limit is 1500 bytes. */
    static uint8_t big[1501];
    im = make(NULL, 62);
    cr_assert_eq(kz_impair_send(im, 0, big, 1500, 0), KZ_OK);
    cr_assert_eq(kz_impair_send(im, 0, big, 1501, 0), KZ_EOVERFLOW);
    kz_impair_destroy(im);
}

/* ---- determinism ----------------------------------------------------------------- */

typedef struct {
    uint64_t hash;
    kz_impair_stats stats;
} run_result;

static void hash_bytes(uint64_t *h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ b[i]) * UINT64_C(0x100000001b3);
}

/* A fixed irregular schedule of sends and polls; hashes everything that
 * comes out (time, tag, length, bytes). */
static run_result run_schedule(const kz_impair_config *cfg, uint64_t seed)
{
    kz_impair *im = make(cfg, seed);
    static uint8_t buf[1500];
    run_result r = {UINT64_C(0xcbf29ce484222325), {0}};
    uint64_t x = 99; /* the schedule's own generator, not the seed */
    kz_time_ns now = 0;
    for (uint64_t i = 0; i < 20000; i++) {
        x = mix(x);
        now += x % (3 * MS);
        size_t len = (size_t)(x >> 20) % 1500;
        fill(buf, len, i);
        cr_assert_eq(kz_impair_send(im, now, buf, len, i), KZ_OK);
        if (x & 1) {
            size_t got;
            uint64_t tag;
            while (kz_impair_poll(im, now, buf, sizeof buf, &got, &tag) == KZ_OK) {
                hash_bytes(&r.hash, &now, sizeof now);
                hash_bytes(&r.hash, &tag, sizeof tag);
                hash_bytes(&r.hash, &got, sizeof got);
                hash_bytes(&r.hash, buf, got);
            }
        }
        if (i % 997 == 0)
            assert_conserved(im);
    }
    r.stats = stats_of(im);
    assert_conserved(im);
    kz_impair_destroy(im);
    return r;
}

static kz_impair_config everything_on(void)
{
    kz_impair_config cfg = {0};
    cfg.loss_pct = 5;
    cr_assert_eq(kz_impair_set_burst(&cfg, 5, 4), KZ_OK);
    cfg.delay_ms = 20;
    cfg.jitter_ms = 15;
    cfg.dup_pct = 5;
    cfg.reorder_pct = 10;
    cfg.corrupt_pct = 5;
    cfg.rate_kbps = 3000;
    cfg.queue_limit = 128;
    return cfg;
}

Test(impair, same_seed_same_output_different_seed_different_output)
{
    kz_impair_config cfg = everything_on();
    run_result a = run_schedule(&cfg, 7), b = run_schedule(&cfg, 7), c = run_schedule(&cfg, 8);
    cr_assert_eq(a.hash, b.hash);
    cr_assert_arr_eq(&a.stats, &b.stats, sizeof a.stats);
    cr_assert_neq(a.hash, c.hash);
    /* The schedule exercised every knob. */
    kz_impair_stats s = a.stats;
    cr_assert(s.dropped_loss && s.dropped_burst && s.duplicated && s.reordered && s.corrupted &&
              s.dropped_rate && s.delivered);
}

static void on_seen(void *ctx, uint64_t tag, kz_time_ns at, const uint8_t *p, size_t len)
{
    (void)at;
    (void)p;
    (void)len;
    ((uint8_t *)ctx)[tag] = 1;
}

Test(impair, loss_pattern_does_not_depend_on_the_other_knobs)
{
    size_t n = 20000;
    kz_time_ns *t = every(n, MS);
    kz_impair_config plain = {0};
    plain.loss_pct = 10;
    cr_assert_eq(kz_impair_set_burst(&plain, 5, 4), KZ_OK);
    kz_impair_config busy = plain;
    busy.delay_ms = 30;
    busy.jitter_ms = 20;
    busy.dup_pct = 10;
    busy.reorder_pct = 20;
    busy.corrupt_pct = 10;
    busy.queue_limit = 4096;
    uint8_t *seen_plain = calloc(n, 1), *seen_busy = calloc(n, 1);
    kz_impair *a = make(&plain, 71), *b = make(&busy, 71);
    drive(a, t, n, len_100, on_seen, seen_plain);
    drive(b, t, n, len_100, on_seen, seen_busy);
    cr_assert_arr_eq(seen_plain, seen_busy, n, "the same datagrams must be lost");
    cr_assert_gt(stats_of(b).duplicated, 0);
    cr_assert_eq(stats_of(a).dropped_loss, stats_of(b).dropped_loss);
    kz_impair_destroy(a);
    kz_impair_destroy(b);
    free(seen_plain);
    free(seen_busy);
    free(t);
}

/* ---- live reconfiguration ----------------------------------------------------------- */

Test(impair, set_config_changes_the_path_but_not_the_memory)
{
    kz_impair *im = make(NULL, 81);
    uint8_t b[16] = {0};
    size_t len;
    uint64_t tag;
    cr_assert_eq(kz_impair_send(im, 0, b, sizeof b, 1), KZ_OK);
    cr_assert_eq(kz_impair_poll(im, 0, b, sizeof b, &len, &tag), KZ_OK);

    kz_impair_config cfg = {0};
    cfg.loss_pct = 100;
    cr_assert_eq(kz_impair_set_config(im, &cfg), KZ_OK);
    for (uint64_t i = 0; i < 100; i++)
        cr_assert_eq(kz_impair_send(im, 1, b, sizeof b, i), KZ_OK);
    cr_assert_eq(kz_impair_poll(im, 1, b, sizeof b, &len, &tag), KZ_EEMPTY);
    cr_assert_eq(stats_of(im).dropped_loss, 100);

    kz_impair_config bigger = {0};
    bigger.queue_limit = 512;
    cr_assert_eq(kz_impair_set_config(im, &bigger), KZ_EINVAL);
    kz_impair_config invalid = {0};
    invalid.jitter_ms = 1e9;
    cr_assert_eq(kz_impair_set_config(im, &invalid), KZ_EINVAL);
    kz_impair_config now;
    kz_impair_get_config(im, &now);
    cr_assert_float_eq(now.loss_pct, 100.0, 0.0, "a refused change leaves the old one");
    cr_assert_eq(now.queue_limit, KZ_IMPAIR_DEFAULT_QUEUE_LIMIT);
    cr_assert_eq(now.max_datagram, KZ_IMPAIR_DEFAULT_MAX_DATAGRAM);
    kz_impair_destroy(im);
}

/* ---- profiles ---------------------------------------------------------------------- */

Test(impair_profile, every_named_profile_parses_and_creates)
{
    const char *names[] = {"none", "lan", "wifi", "mobile", "bad"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        kz_impair_config cfg;
        cr_assert_eq(kz_impair_profile(names[i], &cfg), KZ_OK, "%s", names[i]);
        cr_assert_eq(kz_impair_config_check(&cfg), KZ_OK);
        kz_impair *im = kz_impair_create(&cfg, 1, NULL);
        cr_assert_not_null(im, "%s", names[i]);
        kz_impair_destroy(im);
    }
    kz_impair_config c;
    cr_assert_eq(kz_impair_profile("none", &c), KZ_OK);
    kz_impair_config zero = {0};
    cr_assert(config_eq(&c, &zero));
    cr_assert_eq(kz_impair_profile("lan", &c), KZ_OK);
    cr_assert_float_eq(c.delay_ms, 0.5, 1e-12);
    cr_assert_float_eq(c.jitter_ms, 0.2, 1e-12);
    cr_assert_float_eq(kz_impair_expected_loss(&c), 0.0, 0.0);
    cr_assert_eq(kz_impair_profile("wifi", &c), KZ_OK);
    cr_assert_float_eq(c.delay_ms, 5.0, 1e-12);
    cr_assert_float_eq(c.dup_pct, 0.1, 1e-12);
    cr_assert_float_eq(c.burst_exit_pct, 100.0 / 3, 1e-9);
    cr_assert_float_eq(kz_impair_expected_loss(&c), 100 * (1 - 0.99 * 0.995), 1e-9);
    cr_assert_eq(kz_impair_profile("mobile", &c), KZ_OK);
    cr_assert_float_eq(c.delay_ms, 60.0, 1e-12);
    cr_assert_float_eq(c.jitter_ms, 25.0, 1e-12);
    cr_assert_float_eq(c.reorder_pct, 1.0, 1e-12);
    cr_assert_float_eq(kz_impair_expected_loss(&c), 100 * (1 - 0.98 * 0.99), 1e-9);
    cr_assert_eq(kz_impair_profile("bad", &c), KZ_OK);
    cr_assert_float_eq(c.delay_ms, 200.0, 1e-12);
    cr_assert_float_eq(c.jitter_ms, 50.0, 1e-12);
    cr_assert_float_eq(c.loss_pct, 0.0, 0.0);
    cr_assert_float_eq(kz_impair_expected_loss(&c), 30.0, 1e-9);
}

Test(impair_profile, bad_loses_about_thirty_percent_in_bursts)
{
    kz_impair_config c;
    cr_assert_eq(kz_impair_profile("bad", &c), KZ_OK);
    c.delay_ms = c.jitter_ms = 0; /* only the loss is measured here */
    loss_profile p = measure_loss(&c, 91, 200000);
    cr_assert(p.loss_pct > 28.0 && p.loss_pct < 32.0, "bad lost %.2f %%", p.loss_pct);
    cr_assert(p.mean_run > 7.0 && p.mean_run < 9.0, "mean run %.2f", p.mean_run);
}

Test(impair_profile, custom_lists_set_the_named_fields)
{
    kz_impair_config c;
    cr_assert_eq(kz_impair_profile("loss=1.5,burst=3,delay=80,jitter=20,dup=0.5,reorder=2,"
                                   "corrupt=0.1,rate=2000,queue=4096",
                                   &c),
                 KZ_OK);
    cr_assert_float_eq(c.loss_pct, 1.5, 1e-12);
    cr_assert_float_eq(c.delay_ms, 80.0, 1e-12);
    cr_assert_float_eq(c.jitter_ms, 20.0, 1e-12);
    cr_assert_float_eq(c.dup_pct, 0.5, 1e-12);
    cr_assert_float_eq(c.reorder_pct, 2.0, 1e-12);
    cr_assert_float_eq(c.corrupt_pct, 0.1, 1e-12);
    cr_assert_eq(c.rate_kbps, 2000);
    cr_assert_eq(c.queue_limit, 4096);
    cr_assert_eq(c.max_datagram, 0, "unset fields stay zero (default)");
    /* burst=3 alone: runs of the default 4, 3 % long-run. */
    cr_assert_float_eq(c.burst_exit_pct, 25.0, 1e-12);
    cr_assert_float_eq(c.burst_loss_pct, 100.0, 1e-12);
    kz_impair_config only_burst = c;
    only_burst.loss_pct = 0;
    cr_assert_float_eq(kz_impair_expected_loss(&only_burst), 3.0, 1e-9);

    cr_assert_eq(kz_impair_profile("burst=10,burst_len=6", &c), KZ_OK);
    cr_assert_float_eq(c.burst_exit_pct, 100.0 / 6, 1e-9);
    cr_assert_float_eq(kz_impair_expected_loss(&c), 10.0, 1e-9);

    cr_assert_eq(kz_impair_profile("reorder_delay=.5,rate_queue=250,max_datagram=1200,"
                                   "burst_enter=2,burst_exit=40,burst_loss=50",
                                   &c),
                 KZ_OK);
    cr_assert_float_eq(c.reorder_delay_ms, 0.5, 1e-12);
    cr_assert_float_eq(c.rate_queue_ms, 250.0, 1e-12);
    cr_assert_eq(c.max_datagram, 1200);
    cr_assert_float_eq(c.burst_enter_pct, 2.0, 1e-12);
    cr_assert_float_eq(c.burst_exit_pct, 40.0, 1e-12);
    cr_assert_float_eq(c.burst_loss_pct, 50.0, 1e-12);
}

Test(impair_profile, a_profile_takes_overrides)
{
    kz_impair_config wifi, c;
    cr_assert_eq(kz_impair_profile("wifi", &wifi), KZ_OK);
    cr_assert_eq(kz_impair_profile("wifi,loss=5", &c), KZ_OK);
    kz_impair_config want = wifi;
    want.loss_pct = 5;
    cr_assert(config_eq(&c, &want));

    cr_assert_eq(kz_impair_profile("  mobile , rate = 2000 ,\tdelay=70 ", &c), KZ_OK);
    cr_assert_eq(c.rate_kbps, 2000);
    cr_assert_float_eq(c.delay_ms, 70.0, 1e-12);
    cr_assert_float_eq(c.jitter_ms, 25.0, 1e-12);

    /* Longer bursts at the same long-run burst loss. */
    cr_assert_eq(kz_impair_profile("mobile,burst_len=8", &c), KZ_OK);
    cr_assert_float_eq(c.burst_exit_pct, 12.5, 1e-9);
    c.loss_pct = 0;
    cr_assert_float_eq(kz_impair_expected_loss(&c), 1.0, 1e-9);

    /* A later key wins. */
    cr_assert_eq(kz_impair_profile("loss=1,loss=2", &c), KZ_OK);
    cr_assert_float_eq(c.loss_pct, 2.0, 0.0);
}

Test(impair_profile, bad_strings_are_refused_and_leave_the_output_alone)
{
    static char too_long[KZ_IMPAIR_PROFILE_MAX + 64];
    memset(too_long, ' ', sizeof too_long - 1);
    memcpy(too_long, "loss=1", 6);
    too_long[sizeof too_long - 1] = '\0';
    const char *bad[] = {
        "", " ", ",", "wifi,,", "wifi,", ",wifi", "nosuch", "Wifi", "loss", "loss=", "=5",
        "loss=abc", "loss=101", "loss=100.0001", "delay=-5", "delay=60001", "delay=+5",
        "loss=1e3", "loss=inf", "loss=nan", "loss=0x10", "loss=1.2.3", "loss=.", "loss=1,wifi",
        "wifi,lan", "loss==1", "loss=1=2", "LOSS=1", "rate=1.5", "queue=2000000",
        "max_datagram=70000", "rate=4294967296", "rate=100000001", "burst=100", "burst=90",
        "burst_len=0.5", "burst_len=1001", "burst=5,burst_enter=3", "burst_exit=5,burst_len=3",
        "jitter=1 0", "loss=1234567890123456", "loss=0.0000000000000001", "dup=50%",
        "corrupt=-0", "reorder=1;", "wifi loss=5", too_long,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kz_impair_config c;
        memset(&c, 0, sizeof c);
        c.loss_pct = 42;
        cr_assert_eq(kz_impair_profile(bad[i], &c), KZ_EINVAL, "accepted \"%.40s\"", bad[i]);
        cr_assert_float_eq(c.loss_pct, 42.0, 0.0, "\"%.40s\" wrote the output", bad[i]);
    }
    kz_impair_config c;
    cr_assert_eq(kz_impair_profile(NULL, &c), KZ_EINVAL);

    /* The limit is exact: KZ_IMPAIR_PROFILE_MAX bytes pass, one more does not. */
    too_long[KZ_IMPAIR_PROFILE_MAX] = '\0';
    cr_assert_eq(kz_impair_profile(too_long, &c), KZ_OK);
    too_long[KZ_IMPAIR_PROFILE_MAX] = ' ';
    too_long[KZ_IMPAIR_PROFILE_MAX + 1] = '\0';
    cr_assert_eq(kz_impair_profile(too_long, &c), KZ_EINVAL);
}

Test(impair_profile, random_text_never_crashes_and_what_passes_is_valid)
{
    static const char *pieces[] = {"loss", "burst", "burst_len", "burst_enter", "delay",
                                   "jitter", "dup", "reorder", "corrupt", "rate", "queue",
                                   "max_datagram", "wifi", "bad", "=", ",", ".", "0", "1",
                                   "5", "99", "100", "101", " ", "-", "x", "e"};
    size_t npieces = sizeof pieces / sizeof pieces[0];
    uint64_t x = 1, accepted = 0;
    char text[128];
    for (int round = 0; round < 50000; round++) {
        size_t n = 0;
        x = mix(x);
        int parts = (int)(x % 12);
        for (int p = 0; p < parts; p++) {
            x = mix(x);
            const char *piece = pieces[x % npieces];
            size_t l = strlen(piece);
            if (n + l >= sizeof text)
                break;
            memcpy(text + n, piece, l);
            n += l;
        }
        text[n] = '\0';
        kz_impair_config c;
        int rc = kz_impair_profile(text, &c);
        cr_assert(rc == KZ_OK || rc == KZ_EINVAL, "\"%s\" -> %d", text, rc);
        if (rc == KZ_OK) {
            cr_assert_eq(kz_impair_config_check(&c), KZ_OK, "\"%s\"", text);
            accepted++;
        }
    }
    cr_assert_gt(accepted, 100, "the generator should also hit valid texts");
}
