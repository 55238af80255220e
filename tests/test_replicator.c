/*
 * Replicators (sim/replicator.h): threaded output equals single-threaded
 * output bit for bit.
 */
#include <criterion/criterion.h>

#include "threads/stress.h"

Test(replicator, two_threads_send_exactly_what_one_thread_sends)
{
    kzt_result r = kzt_replicator_differential(360);
    cr_assert_eq(r.violations, 0, "%llu violations, first: %s",
                 (unsigned long long)r.violations, r.first);
    cr_assert_eq(r.delivered, 96ull * 360ull - 1u);  /* one slot paused a frame to move host */
}
