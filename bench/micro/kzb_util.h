/*
 * Helpers shared by the micro-benchmarks: a monotonic clock, medians, and
 * one output format so every figure is printed with the command that made
 * it. Benchmarks may read the clock; the library never does.
 */
#ifndef KZB_UTIL_H
#define KZB_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic time in nanoseconds. */
uint64_t kzb_now_ns(void);

/* Median of `n` values (sorts a copy; n <= 64). */
double kzb_median(const double *v, size_t n);

/* Remembers argv so kzb_report can print the command. Call first in main. */
void kzb_begin(int argc, char **argv, const char *title);

/*
 * Prints one figure as
 *   <name>: <median> <unit>  (median of N runs, min .. max)
 * `runs` holds the per-run values.
 */
void kzb_report(const char *name, const char *unit, const double *runs, size_t n);

/* Prints the closing lines (the command and the machine's core count). */
void kzb_end(void);

/* Number of repetitions: KZ_BENCH_RUNS from the environment, default 7. */
size_t kzb_runs(void);

/* Keeps the compiler from discarding a computed value. */
void kzb_sink(uint64_t v);

#endif /* KZB_UTIL_H */
