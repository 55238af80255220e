/*
 * kizuna-bench result: the storage of a run's result, and the tally that
 * turns the server's counters over the measured window into its named
 * lists, under the names the server gives them.
 *
 * The server counts each violation kind once, where its consequence ladder
 * sees it ("violation_<kind>"), each drop under its reason ("drop_<reason>"),
 * and separately the commands its validation corrected ("corrections"). A
 * correction is not a violation of one kind, and a rate-limited chat line is
 * a drop, not a violation: reading the counters by their names keeps the
 * report saying what the server said. Every kind and reason is listed, zeros
 * included, so a threshold may name one that never happened.
 *
 * Runs once per report on the main thread, after the server has stopped.
 */
#include <stdlib.h>
#include <string.h>

#include <kizuna/server.h>

#include "runner.h"

#define VIOLATION_PREFIX "violation_"
#define DROP_PREFIX "drop_"

/* Histogram ceiling: a snapshot or connect slower than this is out of range. */
#define RESULT_HIST_HIGHEST_NS (120ull * KZ_NS_PER_S)
/* Series slots beyond the measured seconds: the window may run a little long. */
#define RESULT_SERIES_SLACK 8u

int kzb_result_init(kzb_result *r, uint32_t max_seconds)
{
    memset(r, 0, sizeof *r);
    kz_hist_config hc;
    kz_hist_config_default(&hc);
    hc.highest = RESULT_HIST_HIGHEST_NS;
    r->series = calloc(max_seconds + RESULT_SERIES_SLACK, sizeof *r->series);
    if (!r->series || kz_hist_init(&r->tick_ns, &hc, NULL) ||
        kz_hist_init(&r->snapshot_age_ns, &hc, NULL) || kz_hist_init(&r->connect_ns, &hc, NULL) ||
        kz_hist_init(&r->input_latency_ns, &hc, NULL)) {
        kzb_result_fini(r);
        return KZ_ENOMEM;
    }
    return KZ_OK;
}

void kzb_result_fini(kzb_result *r)
{
    /* A histogram whose init never ran or failed has nothing to free. */
    kz_hist *h[4] = {&r->tick_ns, &r->snapshot_age_ns, &r->connect_ns, &r->input_latency_ns};
    for (int i = 0; i < 4; i++)
        if (h[i]->counts != NULL)
            kz_hist_fini(h[i]);
    free(r->series);
    memset(r, 0, sizeof *r);
}

int kzb_named_add(kzb_named *arr, uint32_t *n, const char *name, uint64_t count)
{
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof arr[0].name)
        return KZ_EINVAL;
    for (uint32_t i = 0; i < *n; i++) {
        if (strcmp(arr[i].name, name) == 0) {
            arr[i].count += count;
            return KZ_OK;
        }
    }
    if (*n >= KZB_MAX_NAMED)
        return KZ_EFULL;
    memcpy(arr[*n].name, name, len + 1);
    arr[*n].count = count;
    (*n)++;
    return KZ_OK;
}

/* 1 when `name` starts with `prefix`. */
static int has_prefix(const char *name, const char *prefix)
{
    return strncmp(name, prefix, strlen(prefix)) == 0;
}

int kzb_tally_counters(kzb_result *r, const kz_counters *set, const uint64_t *base)
{
    int first_error = KZ_OK;
    for (uint32_t i = 0; i < set->n_counters; i++) {
        const char *name = kz_counters_name(set, i);
        if (name == NULL)
            continue;
        uint64_t v = kz_counters_get(set, i) - base[i];
        int rc = KZ_OK;
        if (has_prefix(name, VIOLATION_PREFIX))
            rc = kzb_named_add(r->violations, &r->n_violations,
                               name + strlen(VIOLATION_PREFIX), v);
        else if (has_prefix(name, DROP_PREFIX))
            rc = kzb_named_add(r->drops, &r->n_drops, name + strlen(DROP_PREFIX), v);
        if (rc != KZ_OK && first_error == KZ_OK)
            first_error = rc;
    }
    return first_error;
}

int kzb_tally_world(kzb_result *r, const kz_counters *world, const uint64_t *base)
{
    int rc = kzb_tally_counters(r, world, base);
    r->server_corrections = kz_counters_get(world, KZ_WORLD_C_CORRECTIONS) -
                            base[KZ_WORLD_C_CORRECTIONS];
    uint64_t views = kz_counters_get(world, KZ_WORLD_C_VIEW_ENTITIES) -
                     base[KZ_WORLD_C_VIEW_ENTITIES];
    uint64_t bytes = kz_counters_get(world, KZ_WORLD_C_SNAPSHOT_BYTES) -
                     base[KZ_WORLD_C_SNAPSHOT_BYTES];
    r->bits_per_avatar_update = views ? (double)bytes * 8.0 / (double)views : 0;
    return rc;
}
