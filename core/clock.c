/*
 * Monotonic clocks and the fixed-step tick scheduler.
 */
#include <time.h>

#include <kizuna/clock.h>

#include "assert.h"

static kz_time_ns kz__system_now(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (kz_time_ns)ts.tv_sec * KZ_NS_PER_S + (kz_time_ns)ts.tv_nsec;
}

kz_clock kz_clock_system(void)
{
    kz_clock c = {NULL, kz__system_now};
    return c;
}

static kz_time_ns kz__manual_now(void *ctx)
{
    return ((const kz_clock_manual *)ctx)->now;
}

kz_clock kz_clock_manual_clock(kz_clock_manual *m)
{
    kz_clock c = {m, kz__manual_now};
    return c;
}

void kz_clock_manual_advance(kz_clock_manual *m, kz_time_ns dt)
{
    m->now += dt;
}

int kz_ticker_init(kz_ticker *t, uint32_t hz, uint32_t max_catchup, kz_time_ns start)
{
    KZ_ASSERT(t != NULL);
    if (hz < KZ_TICKER_MIN_HZ || hz > KZ_TICKER_MAX_HZ || max_catchup == 0)
        return KZ_EINVAL;
    t->start = start;
    t->next = 0;
    t->skipped = 0;
    t->hz = hz;
    t->max_catchup = max_catchup;
    return KZ_OK;
}

kz_time_ns kz_ticker_time_of(const kz_ticker *t, uint64_t n)
{
    /* Whole seconds and the remainder separately, so n * 1e9 cannot
     * overflow for any tick number a process will reach. */
    uint64_t secs = n / t->hz, rem = n % t->hz;
    return t->start + secs * KZ_NS_PER_S + rem * KZ_NS_PER_S / t->hz;
}

kz_time_ns kz_ticker_next_deadline(const kz_ticker *t)
{
    return kz_ticker_time_of(t, t->next);
}

/* Number of the last tick due at `now`, plus one: ticks [0, result) are due. */
static uint64_t kz__ticks_due_by(const kz_ticker *t, kz_time_ns now)
{
    if (now < t->start)
        return 0;
    kz_time_ns elapsed = now - t->start;
    uint64_t secs = elapsed / KZ_NS_PER_S, frac = elapsed % KZ_NS_PER_S;
    /* Tick n is due when n * 1e9 / hz (rounded down per kz_ticker_time_of)
     * <= elapsed; ceil keeps the two computations consistent. */
    uint64_t in_sec = (frac * t->hz + KZ_NS_PER_S - 1) / KZ_NS_PER_S;
    uint64_t n = secs * t->hz + in_sec;
    /* Adjust by at most one tick where the two roundings disagree. */
    while (n > 0 && kz_ticker_time_of(t, n - 1) > now)
        n--;
    while (kz_ticker_time_of(t, n) <= now)
        n++;
    return n;
}

uint32_t kz_ticker_due(kz_ticker *t, kz_time_ns now)
{
    uint64_t due_end = kz__ticks_due_by(t, now);
    if (due_end <= t->next)
        return 0;
    uint64_t due = due_end - t->next;
    if (due > t->max_catchup) {
        t->skipped += due - t->max_catchup;
        due = t->max_catchup;
        /* Run the newest ticks: the schedule resumes on its grid at
         * due_end, as if the dropped ones had been run instantly. */
    }
    t->next = due_end;
    return (uint32_t)due;
}
