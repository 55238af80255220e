/*
 * Clocks and the fixed-step tick scheduler: exact tick times, no drift over
 * hours of simulated time, the catch-up cap, and a clock that stalls or
 * steps backwards.
 */
#include <criterion/criterion.h>

#include <kizuna/clock.h>

Test(clock, manual_clock_moves_only_when_told)
{
    kz_clock_manual m = {5};
    kz_clock c = kz_clock_manual_clock(&m);
    cr_assert_eq(kz_clock_now(&c), 5);
    kz_clock_manual_advance(&m, 10);
    cr_assert_eq(kz_clock_now(&c), 15);
}

Test(clock, system_clock_is_monotonic)
{
    kz_clock c = kz_clock_system();
    kz_time_ns prev = kz_clock_now(&c);
    for (int i = 0; i < 100000; i++) {
        kz_time_ns now = kz_clock_now(&c);
        cr_assert_geq(now, prev);
        prev = now;
    }
}

Test(ticker, rejects_bad_rates)
{
    kz_ticker t;
    cr_assert_eq(kz_ticker_init(&t, 0, 4, 0), KZ_EINVAL);
    cr_assert_eq(kz_ticker_init(&t, KZ_TICKER_MAX_HZ + 1, 4, 0), KZ_EINVAL);
    cr_assert_eq(kz_ticker_init(&t, 30, 0, 0), KZ_EINVAL);
}

Test(ticker, tick_times_follow_the_grid)
{
    kz_ticker t;
    cr_assert_eq(kz_ticker_init(&t, 30, 4, 1000), KZ_OK);
    cr_assert_eq(kz_ticker_time_of(&t, 0), 1000);
    cr_assert_eq(kz_ticker_time_of(&t, 1), 1000 + 33333333);
    cr_assert_eq(kz_ticker_time_of(&t, 3), 1000 + KZ_NS_PER_S / 10);
    cr_assert_eq(kz_ticker_time_of(&t, 30), 1000 + KZ_NS_PER_S);
    cr_assert_eq(kz_ticker_due(&t, 999), 0, "nothing before start");
    cr_assert_eq(kz_ticker_due(&t, 1000), 1, "tick 0 is due at start");
    cr_assert_eq(kz_ticker_due(&t, 1000), 0, "and only once");
    cr_assert_eq(kz_ticker_due(&t, 1000 + 33333332), 0);
    cr_assert_eq(kz_ticker_due(&t, 1000 + 33333333), 1);
    cr_assert_eq(kz_ticker_next_deadline(&t), 1000 + 66666666);
}

/* Steps a ticker with an irregular frame clock for `hours` of simulated time
 * and checks that the count of ticks equals what the rate predicts, exactly:
 * the schedule cannot drift whatever the frame times. */
static void run_hours(uint32_t hz, uint64_t hours)
{
    kz_ticker t;
    cr_assert_eq(kz_ticker_init(&t, hz, 1000000, 0), KZ_OK);
    uint64_t ticks = 0, seed = 42;
    kz_time_ns now = 0, end = hours * 3600 * KZ_NS_PER_S;
    while (now < end) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        now += 1 + (seed >> 33) % (40 * KZ_NS_PER_MS); /* frames of 0-40 ms */
        if (now > end)
            now = end;
        uint32_t due = kz_ticker_due(&t, now);
        /* Every tick it says is due must really be due, and the next one
         * must not be. */
        cr_assert_leq(kz_ticker_time_of(&t, t.next - 1), now);
        cr_assert_gt(kz_ticker_next_deadline(&t), now);
        ticks += due;
    }
    cr_assert_eq(ticks, hours * 3600 * hz + 1, "%u Hz over %llu h", hz, (unsigned long long)hours);
    cr_assert_eq(t.skipped, 0);
}

Test(ticker, no_drift_over_hours_at_common_rates, .timeout = 120)
{
    run_hours(30, 6);
    run_hours(60, 3);
    run_hours(128, 2);
    run_hours(90, 1); /* 1e9 / 90 is not a whole number of nanoseconds */
}

Test(ticker, caps_catch_up_after_a_stall_and_stays_on_grid)
{
    kz_ticker t;
    cr_assert_eq(kz_ticker_init(&t, 60, 5, 0), KZ_OK);
    cr_assert_eq(kz_ticker_due(&t, 0), 1);
    /* A 10 s stall: 600 ticks due, 5 run, 595 skipped. */
    kz_time_ns now = 10 * KZ_NS_PER_S;
    cr_assert_eq(kz_ticker_due(&t, now), 5);
    cr_assert_eq(t.skipped, 595);
    cr_assert_eq(t.next, 601);
    /* The schedule continues on the same grid afterwards. */
    cr_assert_eq(kz_ticker_next_deadline(&t), kz_ticker_time_of(&t, 601));
    cr_assert_eq(kz_ticker_due(&t, kz_ticker_time_of(&t, 601)), 1);
}

Test(ticker, backwards_time_runs_nothing)
{
    kz_ticker t;
    cr_assert_eq(kz_ticker_init(&t, 30, 4, 0), KZ_OK);
    cr_assert_eq(kz_ticker_due(&t, KZ_NS_PER_S / 10), 4);
    cr_assert_eq(kz_ticker_due(&t, 0), 0);
    cr_assert_eq(kz_ticker_due(&t, KZ_NS_PER_S / 10), 0);
}

Test(ticker, huge_tick_numbers_do_not_overflow)
{
    kz_ticker t;
    cr_assert_eq(kz_ticker_init(&t, 128, 4, 0), KZ_OK);
    /* About 1000 years of ticks at 128 Hz. */
    uint64_t n = 128ull * 3600 * 24 * 365 * 1000;
    cr_assert_eq(kz_ticker_time_of(&t, n), 3600ull * 24 * 365 * 1000 * KZ_NS_PER_S);
}
