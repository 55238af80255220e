/*
 * kizuna-bench: from a finished run (kzb_result) to the report — text on
 * stdout, and the JSON, CSV and plot files asked for — and the threshold
 * verdict. Returns the program's exit status: 0, 1 (a file could not be
 * written) or 3 (a threshold failed).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "report.h"
#include "runner.h"
#include "scenario.h"

/* Every violation kind and drop reason the server counts is in the result
 * already, zeros included (bench/result.c), so a threshold on one that never
 * happened finds its path. */
int kzb_report_fill(kzb_report *rep, const kzb_options *o, const kzb_result *r)
{
    rep->scenario = kzb_scenario_name(o->scenario);
    rep->mode = o->connect ? KZB_MODE_EXTERNAL : KZB_MODE_EMBEDDED;
    rep->clients_target = r->clients_target;
    rep->tick_hz = o->hz;
    rep->seconds = o->seconds;
    rep->impair = o->impair;
    rep->seed = o->seed;
    rep->bots = o->bots == KZB_BOTS_THIN ? "thin" : "full";
    rep->bot_threads = o->bot_threads;
    rep->connected_end = r->connected_end;
    rep->connected_peak = r->connected_peak;
    rep->measure_seconds = r->measure_seconds;
    if (kz_hist_merge(&rep->tick_ns, &r->tick_ns) || kz_hist_merge(&rep->snapshot_age_ns, &r->snapshot_age_ns) ||
        kz_hist_merge(&rep->connect_ns, &r->connect_ns) ||
        kz_hist_merge(&rep->input_latency_ns, &r->input_latency_ns))
        fprintf(stderr, "kizuna-bench: some samples were beyond the histograms' range\n");
    rep->server_cpu_seconds = r->server_cpu_seconds;
    rep->client_ticks = r->client_ticks;
    rep->measured_ticks = r->measured_ticks;
    rep->bytes_down = r->bytes_down;
    rep->bytes_up = r->bytes_up;
    rep->packets_down = r->packets_down;
    rep->packets_up = r->packets_up;
    rep->bits_per_avatar_update = o->connect ? -1 : r->bits_per_avatar_update;
    rep->corrections_server = r->server_corrections;
    rep->corrections_clients = r->corrections;
    rep->kicks = r->kicks;
    rep->timeouts = r->timeouts;
    rep->rss_bytes = r->rss_bytes;
    rep->bots_cpu_seconds = r->bots_cpu_seconds;
    rep->snapshots_received = r->snapshots;
    rep->acks_sent = r->acks;
    int rc = 0;
    for (uint32_t i = 0; i < r->n_violations; i++)
        rc |= kzb_report_add_violation(rep, r->violations[i].name, r->violations[i].count);
    for (uint32_t i = 0; i < r->n_caught; i++)
        rc |= kzb_report_add_hostile(rep, r->caught[i].name, r->caught[i].count);
    if (o->scenario == KZB_SC_HOSTILE)
        rc |= kzb_report_add_hostile(rep, "honest_bots_kicked", r->honest_punished);
    for (uint32_t i = 0; i < r->n_drops; i++)
        rc |= kzb_report_add_drop(rep, r->drops[i].name, r->drops[i].count);
    for (uint32_t i = 0; i < r->n_series; i++)
        rc |= kzb_report_add_point(rep, &r->series[i]);
    return rc;
}

int kzb_report_emit(const kzb_options *o, const kzb_result *r, const char *json, const char *csv,
                    const char *plot, const char *const *thresholds, uint32_t n_thresholds)
{
    kzb_report rep;
    if (kzb_report_init(&rep, r->n_series + 1u, NULL) != 0)
        return 1;
    int status = 0;
    if (kzb_report_fill(&rep, o, r) != 0)
        fprintf(stderr, "kizuna-bench: the report could not hold every counter\n");
    if (kzb_report_print(stdout, &rep) != 0)
        status = 1;
    if (!o->connect)
        printf("server memory (Kizuna tables): %.1f KiB per client\n",
               (double)r->server_bytes / 1024.0 / (r->clients_target ? r->clients_target : 1));
    if (json && kzb_report_write_json(&rep, json) != 0)
        status = 1;
    /* A plot needs the series as CSV: a temporary one when --csv was not given. */
    char tmp_csv[64] = "";
    const char *series = csv;
    if (plot && !csv) {
        snprintf(tmp_csv, sizeof tmp_csv, "/tmp/kizuna-bench-%d.csv", (int)getpid());
        series = tmp_csv;
    }
    if (series && kzb_report_write_csv(&rep, series) != 0)
        status = 1;
    if (plot && kzb_report_plot(plot, series) != 0)
        status = 1;
    if (tmp_csv[0])
        remove(tmp_csv);
    if (n_thresholds) {
        cJSON *doc = kzb_report_to_json(&rep);
        kzb_threshold th[32];
        uint32_t n = 0;
        for (uint32_t i = 0; i < n_thresholds && n < 32; i++)
            if (kzb_threshold_parse(thresholds[i], &th[n]) == 0)
                n++;
        uint32_t failed = doc ? kzb_thresholds_check(stdout, th, n, doc) : n;
        cJSON_Delete(doc);
        if (failed && status == 0)
            status = 3;
    }
    kzb_report_fini(&rep);
    return status;
}
