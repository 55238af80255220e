#include "kzb_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char kzb_cmd[1024];
volatile uint64_t kzb_sink_value;

uint64_t kzb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int kzb_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double kzb_median(const double *v, size_t n)
{
    double s[64];
    if (n == 0 || n > 64)
        return 0.0;
    memcpy(s, v, n * sizeof *v);
    qsort(s, n, sizeof *s, kzb_cmp);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
}

void kzb_begin(int argc, char **argv, const char *title)
{
    size_t used = 0;
    for (int i = 0; i < argc && used < sizeof kzb_cmd - 1; i++) {
        int w = snprintf(kzb_cmd + used, sizeof kzb_cmd - used, "%s%s", i ? " " : "", argv[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    printf("== %s ==\n", title);
}

void kzb_report(const char *name, const char *unit, const double *runs, size_t n)
{
    double lo = runs[0], hi = runs[0];
    for (size_t i = 1; i < n; i++) {
        lo = runs[i] < lo ? runs[i] : lo;
        hi = runs[i] > hi ? runs[i] : hi;
    }
    printf("%-40s %12.3f %-8s (median of %zu runs, %.3f .. %.3f)\n", name,
           kzb_median(runs, n), unit, n, lo, hi);
    fflush(stdout);
}

void kzb_end(void)
{
    printf("command: %s   (cores: %ld)\n\n", kzb_cmd, sysconf(_SC_NPROCESSORS_ONLN));
}

size_t kzb_runs(void)
{
    const char *e = getenv("KZ_BENCH_RUNS");
    long n = e ? strtol(e, NULL, 10) : 7;
    return n < 1 ? 1 : n > 64 ? 64 : (size_t)n;
}

void kzb_sink(uint64_t v)
{
    kzb_sink_value += v;
}
