/*
 * Network impairment simulator. This kernel has no netem, so loss, burst
 * loss, delay, jitter, duplication, reordering, corruption and a bandwidth
 * cap are simulated in process, between a sender and a receiver of
 * datagrams: one instance per direction. Tests drive the transport through
 * it, and the load-test harness puts one in front of every socket it fakes.
 * It is tuned for that: a few thousand datagrams in flight, O(log n) per
 * send and poll, no allocation after create.
 *
 * Model. kz_impair_send() decides the fate of one datagram at time `now`,
 * in this order:
 *   1. Oversize: len > max_datagram is refused (KZ_EOVERFLOW, `oversize`).
 *   2. Burst loss (Gilbert-Elliott): the two-state chain steps once per
 *      datagram (good -> bad with burst_enter_pct, bad -> good with
 *      burst_exit_pct); in the bad state the datagram is lost with
 *      burst_loss_pct (`dropped_burst`).
 *   3. Random loss: lost with loss_pct, independently (`dropped_loss`).
 *   4. Duplication: with dup_pct a second copy is made (`duplicated`).
 *      Each copy then goes on alone through steps 5-8.
 *   5. Queue: a copy that finds queue_limit copies already held is dropped
 *      (`dropped_queue`).
 *   6. Rate: with rate_kbps set, copies cross a bottleneck link one after
 *      another, each occupying it for len * 8 / rate_kbps milliseconds (a
 *      token bucket refilled at the rate, one datagram deep, with a FIFO in
 *      front). A copy that would wait more than rate_queue_ms for the link
 *      is tail-dropped (`dropped_rate`). Its departure is when it has been
 *      fully sent; without a rate the departure is `now`.
 *   7. Delay: delivery = departure + delay_ms + u, u uniform over
 *      [-jitter_ms, +jitter_ms] in whole nanoseconds, drawn per copy; a
 *      negative total is clamped to 0 (so with jitter > delay some copies
 *      arrive with no delay at all). Jitter is independent per copy, so
 *      copies sent less than 2 * jitter apart may swap, as on a real path.
 *      With reorder_pct a copy gets reorder_delay_ms more (`reordered`);
 *      the default, 2 * jitter + 10 ms, makes it arrive after every copy
 *      sent less than 10 ms after it (on a path without a rate limit).
 *   8. Corruption: with corrupt_pct, 1 to 3 distinct random bits of the
 *      queued copy are flipped (`corrupted`); an empty datagram is never
 *      corrupted. The caller's buffer is never written.
 * kz_impair_poll() hands out held copies in order of delivery time, and in
 * order of queueing among equal times, once their time is <= `now`. Loss,
 * duplication and rate drops are silent: send returns 0, as a network
 * would; the statistics tell what happened.
 *
 * Accounting. At any moment
 *     sent + duplicated = delivered + dropped_loss + dropped_burst
 *                         + dropped_queue + dropped_rate + pending
 * (pending: kz_impair_pending). `reordered` and `corrupted` count copies
 * that were queued so; whether a reordered copy really overtook another
 * depends on the traffic.
 *
 * Determinism. Each knob draws from its own pseudo-random stream
 * (splitmix64) seeded from `seed`, so the same seed, configuration, and
 * sequence of calls with the same arguments (data, lengths, `now` values)
 * produce identical results, byte for byte: the streams are integer
 * arithmetic and each decision is one comparison of IEEE doubles. The loss
 * decisions (steps 2 and 3) depend only on the seed and the datagram's
 * index among accepted sends: the same datagrams are lost whatever the
 * delay, duplication, reorder, corruption and rate settings.
 *
 * Memory. create allocates one block of at most
 *     queue_limit * (max_datagram + 44) + 512 bytes
 * (kz_impair_footprint gives the exact figure); nothing allocates or frees
 * afterwards, and a held copy never takes more than its slot. With the
 * defaults (256 slots of 1500 bytes) that is 395,712 bytes on x86-64. One
 * instance can serve many destinations (the tag tells them apart), which
 * is cheaper than one instance each.
 *
 * Time is a kz_time_ns passed by the caller; the module never reads a clock.
 * `now` should not go backwards between calls; if it does nothing breaks,
 * delivery times are simply computed from the value given.
 *
 * Ownership and threading: kz_impair_create returns an object the caller
 * owns and frees with kz_impair_destroy. An instance belongs to one thread
 * at a time; distinct instances share nothing. kz_impair_profile and the
 * config functions are reentrant.
 */
#ifndef KZ_IMPAIR_H
#define KZ_IMPAIR_H

#include <kizuna/alloc.h>
#include <kizuna/clock.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults used when a field is zero. */
#define KZ_IMPAIR_DEFAULT_QUEUE_LIMIT 256u
#define KZ_IMPAIR_DEFAULT_MAX_DATAGRAM 1500u
#define KZ_IMPAIR_DEFAULT_BURST_EXIT_PCT 25.0  /* mean bad run of 4 datagrams */
#define KZ_IMPAIR_DEFAULT_BURST_LOSS_PCT 100.0
#define KZ_IMPAIR_DEFAULT_RATE_QUEUE_MS 100.0
/* reorder_delay_ms default: 2 * jitter_ms + this. */
#define KZ_IMPAIR_DEFAULT_REORDER_EXTRA_MS 10.0

/* Limits; a configuration beyond them is refused with KZ_EINVAL. */
#define KZ_IMPAIR_MAX_QUEUE_LIMIT (1u << 20)
#define KZ_IMPAIR_MAX_DATAGRAM 65535u
#define KZ_IMPAIR_MAX_MS 60000.0               /* any *_ms field */
#define KZ_IMPAIR_MAX_RATE_KBPS 100000000u     /* 100 Gbit/s */
#define KZ_IMPAIR_MAX_BURST_LEN 1000.0         /* burst_len in profiles */
#define KZ_IMPAIR_PROFILE_MAX 512u             /* profile text bytes */

/*
 * What the simulated path does. All zero means a perfect path that
 * delivers every datagram unchanged at the `now` it was sent. Percentages
 * are 0..100 (probabilities per datagram or per copy, as the model above
 * says); times are milliseconds and may be fractional (0.5 = 500 us).
 * A zero field marked "default" takes the default named beside it.
 */
typedef struct kz_impair_config {
    double loss_pct;         /* independent loss */
    double burst_enter_pct;  /* good -> bad per datagram; 0: no burst loss */
    double burst_exit_pct;   /* bad -> good per datagram; default 25 */
    double burst_loss_pct;   /* loss in the bad state; default 100 */
    double delay_ms;         /* base one-way delay */
    double jitter_ms;        /* uniform +- around delay_ms */
    double dup_pct;          /* a second copy */
    double reorder_pct;      /* extra delay for this copy */
    double reorder_delay_ms; /* the extra; default 2 * jitter_ms + 10 */
    double corrupt_pct;      /* flip 1..3 bits of this copy */
    uint32_t rate_kbps;      /* bottleneck, 1000 bit/s units; 0: unlimited */
    double rate_queue_ms;    /* longest wait for the link; default 100 */
    uint32_t queue_limit;    /* copies held at once; default 256 */
    uint32_t max_datagram;   /* bytes; default 1500 */
} kz_impair_config;

/* Counters since create. Datagrams are counted per send, copies per copy. */
typedef struct kz_impair_stats {
    uint64_t sent;          /* sends accepted (returned 0) */
    uint64_t delivered;     /* copies handed out by poll */
    uint64_t dropped_loss;  /* datagrams lost to loss_pct */
    uint64_t dropped_burst; /* datagrams lost in the bad state */
    uint64_t dropped_queue; /* copies refused: queue_limit reached */
    uint64_t dropped_rate;  /* copies tail-dropped by the rate limit */
    uint64_t duplicated;    /* second copies made */
    uint64_t reordered;     /* copies queued with the reorder delay */
    uint64_t corrupted;     /* copies queued with flipped bits */
    uint64_t oversize;      /* sends refused with KZ_EOVERFLOW */
} kz_impair_stats;

typedef struct kz_impair kz_impair;

/* Fills `cfg` with the defaults written out: no impairment, queue_limit
 * 256, max_datagram 1500, and the other defaults of the fields above. */
KZ_API void kz_impair_config_default(kz_impair_config *cfg);

/* 0 if `cfg` is acceptable to create, else KZ_EINVAL: a percentage outside
 * 0..100 or not finite, a time outside 0..KZ_IMPAIR_MAX_MS, a limit above
 * its KZ_IMPAIR_MAX_*. */
KZ_API KZ_MUST_CHECK int kz_impair_config_check(const kz_impair_config *cfg);

/* Bytes create would allocate for `cfg` (NULL: all defaults); 0 if the
 * configuration is invalid. */
KZ_API size_t kz_impair_footprint(const kz_impair_config *cfg);

/*
 * Long-run fraction of datagrams lost to steps 2 and 3, in percent:
 * 100 * (1 - (1 - loss) * (1 - pi_bad * burst_loss)), where
 * pi_bad = enter / (enter + exit) is the share of datagrams sent in the bad
 * state. Queue and rate drops are not included (they depend on traffic).
 * Returns -1 for an invalid configuration.
 */
KZ_API double kz_impair_expected_loss(const kz_impair_config *cfg);

/*
 * Sets the burst fields of `cfg` so that the burst model alone loses
 * `loss_pct` of all datagrams in the long run, in runs of consecutive
 * losses that average `mean_len` datagrams: burst_loss_pct = 100,
 * burst_exit_pct = 100 / mean_len, burst_enter_pct =
 * exit * loss / (100 - loss). loss_pct 0 turns burst loss off.
 * Returns 0, or KZ_EINVAL (cfg untouched) unless 0 <= loss_pct < 100,
 * 1 <= mean_len <= KZ_IMPAIR_MAX_BURST_LEN and the resulting enter chance
 * is at most 100 (loss_pct <= 100 - 100 / mean_len).
 */
KZ_API KZ_MUST_CHECK int kz_impair_set_burst(kz_impair_config *cfg, double loss_pct,
                                             double mean_len);

/*
 * Parses an impairment description into `out`. The text is a comma list:
 * an optional profile name first, then key=value overrides, applied left
 * to right (a later key wins). Blanks around items, keys and values are
 * ignored. Profiles:
 *   none    a perfect path (all zero).
 *   lan     delay 0.5 ms, jitter 0.2 ms.
 *   wifi    delay 5 ms, jitter 3 ms, loss 1 %, burst loss 0.5 % in runs of
 *           3 (about 1.5 % lost in all), dup 0.1 %.
 *   mobile  delay 60 ms, jitter 25 ms, loss 2 %, burst loss 1 % in runs of
 *           4 (about 3 % lost in all), reorder 1 %.
 *   bad     delay 200 ms, jitter 50 ms, burst loss 30 % in runs of 8 (the
 *           long-run loss is 30 %, all of it in bursts).
 * Keys (percentages 0..100, times in ms, both plain decimals such as 1,
 * 0.25 or .5 with at most 15 digits, no sign or exponent; counts and rates
 * are whole numbers; keys and names are lower case):
 *   loss=P           loss_pct
 *   burst=P          long-run burst loss, see kz_impair_set_burst
 *   burst_len=N      mean run of consecutive burst losses (>= 1; default:
 *                    the profile's, else 4)
 *   burst_enter=P    burst_enter_pct  (raw Gilbert-Elliott; may not be
 *   burst_exit=P     burst_exit_pct    mixed with burst= or burst_len=)
 *   burst_loss=P     burst_loss_pct
 *   delay=MS         delay_ms
 *   jitter=MS        jitter_ms
 *   dup=P            dup_pct
 *   reorder=P        reorder_pct
 *   reorder_delay=MS reorder_delay_ms
 *   corrupt=P        corrupt_pct
 *   rate=KBPS        rate_kbps
 *   rate_queue=MS    rate_queue_ms
 *   queue=N          queue_limit
 *   max_datagram=N   max_datagram
 * Examples: "wifi", "mobile,rate=2000", "loss=1.5,delay=80,jitter=20",
 * "burst=10,burst_len=6".
 * Numbers are read without the C locale, so a program's setlocale() does
 * not change them. Returns 0, or KZ_EINVAL for anything else (empty text,
 * unknown name or key, a profile name after the first item, an empty item,
 * a malformed or out-of-range number, text longer than
 * KZ_IMPAIR_PROFILE_MAX bytes); `out` is written only on success.
 */
KZ_API KZ_MUST_CHECK int kz_impair_profile(const char *text, kz_impair_config *out);

/*
 * Creates a simulator. `cfg` NULL means no impairment with default limits;
 * `alloc` NULL the default allocator; both are copied. `seed` picks the
 * random sequences (any value, 0 included). Allocates everything the
 * instance will ever use. Returns NULL if the configuration is invalid
 * (kz_impair_config_check tells) or memory ran out.
 */
KZ_API KZ_MUST_CHECK kz_impair *kz_impair_create(const kz_impair_config *cfg, uint64_t seed,
                                                 const kz_allocator *alloc);
/* Frees `im` and every datagram it still holds. NULL is ignored. */
KZ_API void kz_impair_destroy(kz_impair *im);

/*
 * Replaces the impairment of a live instance, e.g. when a load test moves
 * to its next phase. Held datagrams keep their delivery times; the burst
 * state and the link's backlog carry over. queue_limit and max_datagram,
 * after defaults, must equal the instance's (they sized its memory).
 * Returns 0, or KZ_EINVAL with nothing changed.
 */
KZ_API KZ_MUST_CHECK int kz_impair_set_config(kz_impair *im, const kz_impair_config *cfg);

/*
 * Offers one datagram of `len` bytes (data may be NULL when len is 0) sent
 * at `now`, with an opaque `tag` that travels with every copy (a destination
 * index, an address handle). Copies the bytes; the caller keeps `data`.
 * Returns 0 whether 0, 1 or 2 copies were queued, or KZ_EOVERFLOW (counted
 * in `oversize`, nothing else changes) if len > max_datagram.
 */
KZ_API KZ_MUST_CHECK int kz_impair_send(kz_impair *im, kz_time_ns now, const void *data,
                                        size_t len, uint64_t tag);

/*
 * Takes the next copy due at or before `now`: the earliest delivery time
 * first, ties in queueing order. Copies its bytes to `out` (`cap` bytes of
 * room), its length to `*len` and its tag to `*tag` (tag may be NULL).
 * Returns 0; KZ_EEMPTY if nothing is due (outputs untouched); KZ_EOVERFLOW
 * if the copy is longer than `cap`: then only `*len` is written, with the
 * size needed, and the copy stays queued (out may be NULL with cap 0 to ask
 * for the size).
 */
KZ_API KZ_MUST_CHECK int kz_impair_poll(kz_impair *im, kz_time_ns now, void *out, size_t cap,
                                        size_t *len, uint64_t *tag);

/* Delivery time of the next copy, due or not; UINT64_MAX when none is
 * held. A caller may sleep until then. */
KZ_API kz_time_ns kz_impair_next_due(const kz_impair *im);

/* Copies held (queued and not yet polled). */
KZ_API uint32_t kz_impair_pending(const kz_impair *im);

/* Copies the counters into `out`. */
KZ_API void kz_impair_get_stats(const kz_impair *im, kz_impair_stats *out);

/* The configuration in force, defaults filled in. */
KZ_API void kz_impair_get_config(const kz_impair *im, kz_impair_config *out);

#ifdef __cplusplus
}
#endif

#endif /* KZ_IMPAIR_H */
