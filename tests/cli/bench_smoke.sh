#!/usr/bin/env bash
#
# kizuna-bench smoke: every scenario for a few seconds with thresholds loose
# enough to hold on a busy 2-core machine and tight enough to fail when the
# server stops sending (no snapshots: no downstream bandwidth, no snapshot
# ages), plus the JSON's required fields, the CSV, a plot, `compare`, and
# the exit status of a failed threshold. Honest bots move like people: the
# server finds no speed or acceleration violation in any honest scenario.
#
#   bash tests/cli/bench_smoke.sh path/to/kizuna-bench
set -euo pipefail
BIN=$1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzb-smoke-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

common=(--clients 40 --seconds 3 --warmup 1 --quiet)
alive=(--threshold 'clients.connected_end>=36' --threshold 'bandwidth.down_kbps_per_client>1'
       --threshold 'snapshot_age_ms.p50<2000' --threshold 'tick_ms.max<1000')
honest=(--threshold 'violations.speed<=0' --threshold 'violations.acceleration<=0'
        --threshold 'clients.mean<=40')
for sc in wander crowd commute churn vr; do
    "$BIN" "${common[@]}" --scenario "$sc" --json "$WORK/$sc.json" "${alive[@]}" "${honest[@]}" \
        >"$WORK/$sc.out" 2>&1 ||
        { cat "$WORK/$sc.out"; fail "scenario $sc"; }
done
# hostile: every kind of misbehaviour caught, no honest bot kicked, and
# the speed hack reported as speed violations by the server.
"$BIN" --clients 60 --seconds 4 --warmup 1 --quiet --scenario hostile --json "$WORK/hostile.json" \
    "${alive[@]}" \
    --threshold 'hostile.speed_hack_caught>=1' --threshold 'hostile.chat_flood_caught>=1' \
    --threshold 'hostile.voice_flood_caught>=1' --threshold 'hostile.forged_packets_caught>=1' \
    --threshold 'hostile.honest_bots_kicked<=0' --threshold 'violations.speed>=1' \
    --threshold 'drops.rate_limited_chat>=1' --threshold 'corrections.server>=1' \
    >"$WORK/hostile.out" 2>&1 ||
    { cat "$WORK/hostile.out"; fail "scenario hostile"; }

# Thin bots (header-only clients): the report names them, they take in and
# acknowledge the snapshots, and --window-cmd runs as the window starts and
# ends. `radius` gives an external server the scenario's spawn radius.
"$BIN" "${common[@]}" --bots thin --json "$WORK/thin.json" "${alive[@]}" "${honest[@]}" \
    --window-cmd "echo \$1 >>'$WORK/window'" \
    --threshold 'bots.snapshots_per_client_s>=20' --threshold 'bots.acks>=1' \
    >"$WORK/thin.out" 2>&1 || { cat "$WORK/thin.out"; fail "thin bots"; }
grep -Eq '"bots":[[:space:]]*"thin"' "$WORK/thin.json" || fail "the report does not name thin bots"
[ "$(tr '\n' ' ' <"$WORK/window")" = "start end " ] || fail "window command ran: $(cat "$WORK/window")"
[ "$("$BIN" radius wander 400)" = "100.0" ] || fail "radius wander 400: $("$BIN" radius wander 400)"
status=0
"$BIN" --bots half "${common[@]}" >"$WORK/b.out" 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "--bots half gave status $status"

# Required JSON fields (docs/BENCH-REPORT.md), checked as thresholds that
# must find their path.
"$BIN" "${common[@]}" --json "$WORK/a.json" --csv "$WORK/a.csv" --plot "$WORK/a.png" \
    --threshold 'clients.target==40' --threshold 'clients.connected_end>=0' \
    --threshold 'tick_ms.p50>=0' --threshold 'tick_ms.p90>=0' --threshold 'tick_ms.p99>=0' \
    --threshold 'tick_ms.p999>=0' --threshold 'tick_ms.max>=0' \
    --threshold 'server_cpu_us_per_client_tick>=0' \
    --threshold 'bandwidth.down_kbps_per_client>=0' --threshold 'bandwidth.up_kbps_per_client>=0' \
    --threshold 'bits_per_avatar_update>=0' --threshold 'snapshot_age_ms.p50>=0' \
    --threshold 'snapshot_age_ms.p99>=0' --threshold 'drops.malformed_packet>=0' \
    --threshold 'violations.speed>=0' --threshold 'corrections.server>=0' \
    --threshold 'corrections.clients>=0' >"$WORK/a.out" 2>&1 || { cat "$WORK/a.out"; fail "required fields"; }
[ "$(wc -l <"$WORK/a.csv")" -ge 3 ] || fail "csv has too few rows"
[ -s "$WORK/a.png" ] || fail "no plot"
"$BIN" compare "$WORK/a.json" "$WORK/wander.json" >"$WORK/cmp.out" || fail "compare"
grep -q 'tick_ms.p99' "$WORK/cmp.out" || fail "compare output: $(head -5 "$WORK/cmp.out")"

# A threshold that cannot hold must fail the run with status 3.
status=0
"$BIN" "${common[@]}" --threshold 'tick_ms.p50<0' >"$WORK/t.out" 2>&1 || status=$?
[ "$status" -eq 3 ] || fail "an impossible threshold gave status $status"
# A malformed threshold is refused before the run (status 2).
status=0
"$BIN" "${common[@]}" --threshold 'tick_ms.p50~3' >"$WORK/t2.out" 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "a malformed threshold gave status $status"
echo "bench_smoke: 6 scenarios, thin bots, report files and thresholds ok"
