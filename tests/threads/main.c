/*
 * Plain driver of the multi-thread stress checks, for the ThreadSanitizer
 * build (where Criterion cannot run) and as an extra test everywhere.
 * Prints one line per check and a closing "N passed, N failed" line.
 */
#include <stdio.h>

#include "stress.h"

static int report(const char *name, kzt_result r, int *passed, int *failed)
{
    if (r.violations == 0) {
        printf("PASS %-34s delivered %llu\n", name, (unsigned long long)r.delivered);
        ++*passed;
    } else {
        printf("FAIL %-34s %llu violations, first: %s\n", name,
               (unsigned long long)r.violations, r.first);
        ++*failed;
    }
    return r.violations == 0;
}

int main(void)
{
    int passed = 0, failed = 0;
    report("spsc 10M items, 2 threads", kzt_spsc_stress(10000000ull), &passed, &failed);
    report("mpsc 4 producers x 1M", kzt_mpsc_stress(4, 1000000ull), &passed, &failed);
    report("counters 4 writers x 1M", kzt_counters_stress(4, 1000000ull), &passed, &failed);
    report("transport echo, I/O thread, 20k", kzt_transport_echo(20000), &passed, &failed);
    report("world, 2 I/O threads, 40 clients, 5 s, reload, drain", kzt_world_threaded(40, 5), &passed, &failed);
    report("replicators, 2 threads vs 1, 600 ticks", kzt_replicator_differential(600), &passed, &failed);
    report("audit log, 4 producers x 50k", kzt_audit_append_stress(4, 50000), &passed, &failed);
    report("resume, 2 I/O threads, 16 clients move", kzt_resume_threaded(16), &passed, &failed);
    printf("threads: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
