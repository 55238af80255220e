#!/usr/bin/env bash
# The headline search: the largest client count at which a scenario holds
# its tick rate with tick p99 under half the tick budget, every client
# connected, on this machine with the bots on the same machine.
#
#   bash bench/headline.sh [kizuna-bench] [seconds]
#
# For wander and crowd at 30 and 60 Hz: doubles N from 250 until a run
# fails, then bisects to a 125-client step. Prints one line per run and a
# table at the end; each run's JSON is kept in $OUT (default /tmp/headline).
set -uo pipefail
BIN=${1:-build/release/bench/kizuna-bench}
SECONDS_PER_RUN=${2:-10}
OUT=${OUT:-/tmp/headline}
mkdir -p "$OUT"

run() { # run SCENARIO HZ N -> 0 if it holds
  local sc=$1 hz=$2 n=$3
  local half
  half=$(awk -v hz="$hz" 'BEGIN { printf "%.3f", 500.0 / hz }')
  "$BIN" --clients "$n" --hz "$hz" --scenario "$sc" --seconds "$SECONDS_PER_RUN" --warmup 2 \
    --quiet --json "$OUT/$sc-$hz-$n.json" \
    --threshold "tick_ms.p99<$half" --threshold "clients.connected_end>=$n" \
    >"$OUT/$sc-$hz-$n.txt" 2>&1
  local rc=$?
  local p99 cpu
  p99=$(sed -n 's/^server tick .* p99 \([0-9.]*\) .*/\1/p' "$OUT/$sc-$hz-$n.txt")
  cpu=$(sed -n 's/^server CPU *\([0-9.]*\) µs.*/\1/p' "$OUT/$sc-$hz-$n.txt")
  echo "$sc $hz Hz N=$n: tick p99 ${p99:-?} ms (limit $half), server ${cpu:-?} µs/client-tick -> $([ $rc -eq 0 ] && echo holds || echo fails)" >&2
  return $rc
}

search() { # search SCENARIO HZ -> prints the largest N that holds (0 if none)
  local sc=$1 hz=$2 good=0 bad=0 n=250
  while [ $n -le 16000 ]; do
    if run "$sc" "$hz" "$n"; then good=$n; n=$((n * 2)); else bad=$n; break; fi
  done
  [ $bad -eq 0 ] && { echo "$good"; return; }
  while [ $((bad - good)) -gt 125 ]; do
    local mid=$(((good + bad) / 2 / 125 * 125))
    [ $mid -le $good ] && mid=$((good + 125))
    if run "$sc" "$hz" "$mid"; then good=$mid; else bad=$mid; fi
  done
  echo "$good"
}

printf "%-8s %4s %8s\n" scenario Hz "max N" >"$OUT/table.txt"
for sc in wander crowd; do
  for hz in 30 60; do
    printf "%-8s %4s %8s\n" "$sc" "$hz" "$(search "$sc" "$hz")" >>"$OUT/table.txt"
  done
done
cat "$OUT/table.txt"
echo "runs: $OUT ($(nproc) cores)"
