/*
 * Audit log append throughput with group commit, on this machine's disk:
 * one producer appends records as fast as the ring accepts them (retrying
 * on a full ring, as a burst would), the writer hashes, buffers, fdatasyncs
 * once per 256 records or 10 ms and signs a checkpoint per 1024 records.
 * Reports durable records per second (from the first append to the last
 * record synced), fdatasyncs per second, records per fdatasync, and the
 * caller's cost of one kz_audit_append (ns; a copy into the MPSC ring).
 *
 *   kz-bench-audit [records_per_run] [dir]   (default 200,000 in /tmp)
 *   KZ_BENCH_RUNS=N sets the number of runs (default 7); medians printed.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kizuna/audit.h>
#include <kizuna/token.h>

#include "kzb_util.h"

typedef struct {
    double records_per_s, fsyncs_per_s, per_fsync, append_ns, full_retries;
} run_result;

static run_result run_once(const char *dir, uint64_t n, const kz_sign_keypair *key)
{
    char path[512];
    snprintf(path, sizeof path, "%s/kz-bench-audit-%d.log", dir, (int)getpid());
    unlink(path);
    kz_audit_config c;
    memset(&c, 0, sizeof c);
    c.path = path;
    memcpy(c.sign_secret_key, key->secret_key, sizeof c.sign_secret_key);
    kz_audit *a = NULL;
    if (kz_audit_open(&c, &a) != KZ_OK)
        abort();
    kz_audit_record r;
    memset(&r, 0, sizeof r);
    r.type = KZ_AUDIT_CONNECT;
    r.verification_level = KZ_VERIFY_STRONG;
    snprintf(r.detail, sizeof r.detail, "plaza");
    uint64_t full = 0, spent = 0;
    uint64_t t0 = kzb_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        r.client_id = i + 1;
        r.entity = (uint32_t)i;
        uint64_t a0 = kzb_now_ns();
        int rc = kz_audit_append(a, &r);
        spent += kzb_now_ns() - a0;
        if (rc == KZ_EFULL) {
            full++;
            i--;
            sched_yield();
        }
    }
    if (kz_audit_flush(a, 60000) != KZ_OK)
        abort();
    uint64_t t1 = kzb_now_ns();
    kz_audit_stats st;
    kz_audit_stats_get(a, &st);
    if (kz_audit_close(a) != KZ_OK)
        abort();
    unlink(path);
    double secs = (double)(t1 - t0) / 1e9;
    run_result res = {(double)n / secs, (double)st.fsyncs / secs,
                      st.fsyncs ? (double)st.durable / (double)st.fsyncs : 0,
                      (double)spent / (double)(n + full), (double)full};
    return res;
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "audit log: append throughput with group commit");
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000ull;
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    size_t runs = kzb_runs();
    if (runs > 64)
        runs = 64;
    kz_sign_keypair key;
    if (kz_sign_keypair_generate(&key) != KZ_OK)
        abort();
    double rps[64], fps[64], per[64], ns[64], full[64];
    for (size_t i = 0; i < runs; i++) {
        run_result r = run_once(dir, n, &key);
        rps[i] = r.records_per_s;
        fps[i] = r.fsyncs_per_s;
        per[i] = r.per_fsync;
        ns[i] = r.append_ns;
        full[i] = r.full_retries;
    }
    kzb_report("durable records per second", "records/s", rps, runs);
    kzb_report("fdatasync per second", "fsyncs/s", fps, runs);
    kzb_report("records per fdatasync", "records", per, runs);
    kzb_report("kz_audit_append on the caller", "ns", ns, runs);
    kzb_report("appends refused (ring full, retried)", "appends", full, runs);
    kzb_end();
    return 0;
}
