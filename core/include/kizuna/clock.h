/*
 * Time in Kizuna: an injectable monotonic clock and a fixed-step tick
 * scheduler.
 *
 * Every update and step function in Kizuna takes `now` as a parameter and no
 * module reads a clock on its own: that is what makes tests and benchmark
 * runs replayable from a seed. The program at the edge (server main loop,
 * engine frame, bench driver) reads a kz_clock and passes the value down.
 * Time is a uint64_t count of nanoseconds from an arbitrary origin.
 *
 * Threading: kz_clock_system is safe from any thread. A kz_clock_manual or
 * a kz_ticker belongs to one thread at a time.
 */
#ifndef KZ_CLOCK_H
#define KZ_CLOCK_H

#include <kizuna/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint64_t kz_time_ns;

#define KZ_NS_PER_US 1000ull
#define KZ_NS_PER_MS 1000000ull
#define KZ_NS_PER_S 1000000000ull

/* A source of monotonic time. `now_ns` must never go backwards. */
typedef struct kz_clock {
    void *ctx;
    kz_time_ns (*now_ns)(void *ctx);
} kz_clock;

/* The operating system's monotonic clock (CLOCK_MONOTONIC). */
KZ_API kz_clock kz_clock_system(void);

/* A clock that moves only when told to, for tests and simulations. */
typedef struct kz_clock_manual {
    kz_time_ns now;
} kz_clock_manual;

/* A kz_clock reading `m`; `m` must outlive it. */
KZ_API kz_clock kz_clock_manual_clock(kz_clock_manual *m);
/* Moves `m` forward by `dt` nanoseconds. */
KZ_API void kz_clock_manual_advance(kz_clock_manual *m, kz_time_ns dt);

/* Reads `c`. */
static inline kz_time_ns kz_clock_now(const kz_clock *c)
{
    return c->now_ns(c->ctx);
}

/*
 * Fixed-step tick scheduler. Tick n is due at start + n * 1e9 / hz
 * nanoseconds, computed from the tick number each time rather than by
 * adding a rounded period, so a 30 Hz or 60 Hz schedule has no drift after
 * any number of hours (the rounding error never exceeds one nanosecond).
 *
 * After a stall (the process was descheduled, a tick ran long) more than
 * `max_catchup` ticks may be due; the scheduler then runs `max_catchup` of
 * them and drops the rest, moving the schedule forward by whole ticks so it
 * stays on its grid. Dropped ticks are counted in `skipped`: a world that
 * falls behind slows down visibly instead of spiralling.
 */
typedef struct kz_ticker {
    kz_time_ns start;      /* time of tick 0 */
    uint64_t next;         /* number of the next tick to run */
    uint64_t skipped;      /* ticks dropped by the catch-up cap */
    uint32_t hz;
    uint32_t max_catchup;
} kz_ticker;

/* Tick rates the scheduler accepts (the world runs at 10-128 Hz; the wider
 * range serves benchmarks and tests). */
#define KZ_TICKER_MIN_HZ 1u
#define KZ_TICKER_MAX_HZ 10000u

/*
 * Starts a schedule at `start` (tick 0 is due at `start`). `hz` must be in
 * [KZ_TICKER_MIN_HZ, KZ_TICKER_MAX_HZ] and max_catchup >= 1, else KZ_EINVAL.
 */
KZ_API KZ_MUST_CHECK int kz_ticker_init(kz_ticker *t, uint32_t hz, uint32_t max_catchup,
                                        kz_time_ns start);

/*
 * Number of ticks to run now (0..max_catchup), and marks them as run: the
 * caller runs that many simulation steps, in order, before calling again.
 * Ticks beyond max_catchup are skipped and counted. A `now` earlier than a
 * previous call's is treated as no time having passed.
 */
KZ_API uint32_t kz_ticker_due(kz_ticker *t, kz_time_ns now);

/* Time at which tick `n` is due. */
KZ_API kz_time_ns kz_ticker_time_of(const kz_ticker *t, uint64_t n);

/* Time at which the next tick is due: how long the caller may sleep. */
KZ_API kz_time_ns kz_ticker_next_deadline(const kz_ticker *t);

#ifdef __cplusplus
}
#endif

#endif /* KZ_CLOCK_H */
