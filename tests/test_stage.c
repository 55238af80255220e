/*
 * The hand-over counters between the world and its replicators
 * (sim/frame.h) at the ends of the tick range. An edge follows the
 * authority's tick numbers, which a bus message sets: a tick of
 * UINT32_MAX, or one that goes back, must neither loop forever nor leave
 * the world waiting for a replicator that already finished, and a tick
 * that repeats or goes back must not be written while a replicator reads
 * its frame.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "sim/frame.h"

static kz__stage stage_of(uint32_t replicators)
{
    kz__stage st;
    memset(&st, 0, sizeof st);
    st.n = replicators;
    return st;
}

Test(stage, done_at_the_last_tick_returns_and_stamps_the_newest_ticks)
{
    kz__stage st = stage_of(2);
    kz__stage_done(&st, 0, 5, 100);
    kz__stage_done(&st, 1, 5, 100);
    kz__stage_done(&st, 0, UINT32_MAX, 777);
    kz__stage_done(&st, 1, UINT32_MAX, 778);
    cr_assert_eq(kz__stage_all_done(&st), UINT32_MAX);
    cr_assert_eq(kz__stage_finished(&st, UINT32_MAX), 778);
    cr_assert_eq(kz__stage_finished(&st, UINT32_MAX - 7u), 778, "the last KZ__TIMED ticks");
}

Test(stage, done_of_a_short_step_stamps_only_the_ticks_between)
{
    kz__stage st = stage_of(1);
    kz__stage_done(&st, 0, 10, 100);
    kz__stage_done(&st, 0, 12, 200);
    cr_assert_eq(kz__stage_finished(&st, 10), 100);
    cr_assert_eq(kz__stage_finished(&st, 11), 200);
    cr_assert_eq(kz__stage_finished(&st, 12), 200);
}

Test(stage, the_world_may_write_at_the_top_of_the_range)
{
    kz__stage st = stage_of(1);
    kz__stage_publish(&st, UINT32_MAX - 1u);
    kz__stage_done(&st, 0, UINT32_MAX - 1u, 1);
    cr_assert(kz__stage_writable(&st, UINT32_MAX), "done + 2 must not wrap to 0");
    kz__stage_done(&st, 0, UINT32_MAX - 3u, 1);
    cr_assert(!kz__stage_writable(&st, UINT32_MAX), "tick - 2 not finished yet");
}

Test(stage, a_tick_that_goes_back_is_writable_and_taken)
{
    kz__stage st = stage_of(1);
    kz__stage_publish(&st, 1000);
    kz__stage_done(&st, 0, 1000, 1);
    cr_assert(kz__stage_writable(&st, 3));
    kz__stage_publish(&st, 3);
    uint32_t skipped = 99;
    cr_assert_eq(kz__stage_take(&st, 0, &skipped), 3);
    cr_assert_eq(skipped, 0);
}

Test(stage, take_counts_the_ticks_jumped_over_without_wrapping)
{
    kz__stage st = stage_of(1);
    kz__stage_done(&st, 0, 10, 1);
    kz__stage_publish(&st, 15);
    uint32_t skipped = 0;
    cr_assert_eq(kz__stage_take(&st, 0, &skipped), 15);
    cr_assert_eq(skipped, 4);
    kz__stage_done(&st, 0, UINT32_MAX, 1);
    kz__stage_publish(&st, UINT32_MAX);
    cr_assert_eq(kz__stage_take(&st, 0, &skipped), 0, "nothing newer than what it finished");
    cr_assert_eq(skipped, 0);
}

/* Replicator 0 finished tick 9 and is on 10 (published); replicator 1
 * finished 10. */
static kz__stage one_busy_on_ten(void)
{
    kz__stage st = stage_of(2);
    kz__stage_done(&st, 0, 9, 1);
    kz__stage_done(&st, 1, 10, 1);
    kz__stage_publish(&st, 10);
    return st;
}

Test(stage, the_next_tick_needs_only_tick_minus_two_finished)
{
    kz__stage st = one_busy_on_ten();
    cr_assert(kz__stage_frame_writable(&st, 11), "frame 11 %% 2 is not the one being read");
}

Test(stage, a_repeated_tick_waits_until_every_replicator_finished_it)
{
    kz__stage st = one_busy_on_ten();
    cr_assert(!kz__stage_frame_writable(&st, 10), "frame 10 is being read");
    kz__stage_done(&st, 0, 10, 2);
    cr_assert(kz__stage_frame_writable(&st, 10));
}

Test(stage, a_tick_back_or_far_ahead_waits_for_the_newest_to_be_finished)
{
    kz__stage st = one_busy_on_ten();
    cr_assert(!kz__stage_frame_writable(&st, 9), "frame 9 %% 2 may be the one before");
    cr_assert(!kz__stage_frame_writable(&st, 2), "a new authority's tick");
    cr_assert(!kz__stage_frame_writable(&st, 12), "frame 12 %% 2 is being read");
    cr_assert(!kz__stage_frame_writable(&st, 500), "a jump ahead");
    kz__stage_done(&st, 0, 10, 2);
    cr_assert(kz__stage_frame_writable(&st, 9));
    cr_assert(kz__stage_frame_writable(&st, 2));
    cr_assert(kz__stage_frame_writable(&st, 12));
    cr_assert(kz__stage_frame_writable(&st, 500));
}

Test(stage, the_first_tick_of_an_empty_stage_is_writable)
{
    kz__stage st = stage_of(2);
    cr_assert(kz__stage_frame_writable(&st, 1));
    cr_assert(kz__stage_frame_writable(&st, 4000), "an edge's first world image");
}

/* An edge's tick went back from 10 to 5 (a new authority): replicator 0
 * finished 10 and is now on 5; replicator 1 finished 5. Its `done` of 10
 * is from before, so neither 6 nor 7 (7 shares frame 5 % 2) may be
 * written until it finishes 5. */
Test(stage, after_a_tick_back_a_replicator_done_with_an_older_world_is_not_finished)
{
    kz__stage st = stage_of(2);
    kz__stage_done(&st, 0, 10, 1);
    kz__stage_done(&st, 1, 10, 1);
    kz__stage_publish(&st, 10);
    cr_assert(kz__stage_frame_writable(&st, 5), "every replicator finished the newest");
    kz__stage_publish(&st, 5);
    kz__stage_done(&st, 1, 5, 2);
    cr_assert(!kz__stage_frame_writable(&st, 6));
    cr_assert(!kz__stage_frame_writable(&st, 7), "frame 7 %% 2 is the one being read");
    kz__stage_done(&st, 0, 5, 2);
    cr_assert(kz__stage_frame_writable(&st, 6));
    cr_assert(kz__stage_frame_writable(&st, 7), "a jump: every replicator is on 5");
}
