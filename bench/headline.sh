#!/usr/bin/env bash
# Kizuna's two capacity headlines, wander at 30 Hz with thin bots
# (kizuna-bench --bots thin: header-only clients that open, acknowledge and
# answer every snapshot but do not decode it), each the largest client count
# whose run holds: server tick p99 <= 16.7 ms (half the tick period), every
# client connected, and every client receiving at least 90 % of the ticks'
# snapshots.
#
#   (a) pinned  kizuna-server run pinned to core 0 (taskset -c 0), the bots
#               on core 1 (kizuna-bench --connect ... --bots thin). Besides
#               the tick p99 (from the server's /metrics histogram over the
#               measured window) it reports the server's CPU per client-tick
#               by thread: the simulation thread (the process's main
#               thread), the I/O threads (kz-io-*), any other thread, and
#               the total, read from /proc/PID/task/*/stat (utime + stime)
#               as the window starts and ends (kizuna-bench --window-cmd).
#               Then the same figures at --pinned-at clients (1,000).
#   (b) box     everything on this machine, unpinned: kizuna-bench with its
#               embedded server and thin bots on --box-bot-threads threads.
#
#   bash bench/headline.sh [options] [KIZUNA-BENCH [SECONDS]]
#
#   --bench PATH        kizuna-bench (default build/release/bench/kizuna-bench)
#   --server PATH       kizuna-server (default: ../server/kizuna-server next to
#                       the bench)
#   --seconds S         measured seconds per run (default 10)
#   --warmup S          seconds between connected and measured (default 2)
#   --only pinned|box   one headline only
#   --pinned-at N       the pinned figures at N clients (default 1000; 0: skip)
#   --start N           first N of each search (default 500; doubles until a
#                       run fails, then bisects)
#   --step N            the search's resolution (default 250)
#   --max N             largest N tried (default 16000)
#   --box-bot-threads T bot threads of the box headline (default 2)
#   --box-io-threads T  the embedded server's I/O hosts, each replicating its
#                       clients on its own thread (default: the core count)
#   --full-table        also the older search with full bots on the box:
#                       wander and crowd at 30 and 60 Hz, p99 under half the
#                       tick period
#   --out DIR           runs' reports and server logs (default /tmp/headline)
#
# Each run prints one line on stderr; the headlines, with the commands that
# produced them and the machine's core count and load, go to stdout and to
# DIR/headline.txt. On a machine others use too, run it under a lower nice
# value (`nice -n -10 bash bench/headline.sh`, as root) so that their jobs do
# not take the pinned cores' time; the nice value is printed with the
# figures.
set -uo pipefail

# ---- window snapshots (called back by kizuna-bench --window-cmd) ----------

# --snapshot PID ADMIN_PORT PREFIX start|end: the server's threads' CPU
# (tid, name, utime + stime in clock ticks) and its /metrics.
if [ "${1:-}" = "--snapshot" ]; then
    pid=$2 admin=$3 prefix=$4 which=$5
    for st in /proc/"$pid"/task/*/stat; do
        # The name is in parentheses and may hold spaces: cut around them.
        line=$(cat "$st" 2>/dev/null) || continue
        tid=${line%% (*}
        name=${line#*(}
        name=${name%)*}
        rest=${line##*) }
        # Fields after the name: state is 3, utime 14, stime 15 (proc(5)).
        set -- $rest
        echo "$tid ${name// /_} $((${12} + ${13}))"
    done >"$prefix.$which.cpu"
    curl -s --max-time 5 "http://127.0.0.1:$admin/metrics" >"$prefix.$which.metrics"
    exit 0
fi

BENCH=build/release/bench/kizuna-bench
SERVER=
SECONDS_PER_RUN=10
WARMUP=2
ONLY=
PINNED_AT=1000
START=500
STEP=250
MAX=16000
BOX_THREADS=2
BOX_IO=$(nproc)
FULL_TABLE=0
OUT=${OUT:-/tmp/headline}
HZ=30
LIMIT_MS=16.7
positional=()
while [ $# -gt 0 ]; do
    case $1 in
    --bench) BENCH=$2; shift ;;
    --server) SERVER=$2; shift ;;
    --seconds) SECONDS_PER_RUN=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --pinned-at) PINNED_AT=$2; shift ;;
    --start) START=$2; shift ;;
    --step) STEP=$2; shift ;;
    --max) MAX=$2; shift ;;
    --box-bot-threads) BOX_THREADS=$2; shift ;;
    --box-io-threads) BOX_IO=$2; shift ;;
    --full-table) FULL_TABLE=1 ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "headline.sh: unknown option $1" >&2; exit 2 ;;
    *) positional+=("$1") ;;
    esac
    shift
done
[ ${#positional[@]} -ge 1 ] && BENCH=${positional[0]}
[ ${#positional[@]} -ge 2 ] && SECONDS_PER_RUN=${positional[1]}
[ -z "$SERVER" ] && SERVER=$(dirname "$BENCH")/../server/kizuna-server
case $ONLY in ''|pinned|box) ;; *) echo "headline.sh: --only pinned or box" >&2; exit 2 ;; esac
[ -x "$BENCH" ] || { echo "headline.sh: no kizuna-bench at $BENCH" >&2; exit 2; }
if [ "$ONLY" != box ] && [ ! -x "$SERVER" ]; then
    echo "headline.sh: no kizuna-server at $SERVER (--server PATH)" >&2
    exit 2
fi
if [ "$ONLY" != box ] && [ "$(nproc)" -lt 2 ]; then
    echo "headline.sh: the pinned headline needs two cores" >&2
    exit 2
fi
mkdir -p "$OUT"
SELF=$(readlink -f "$0")
BENCH=$(readlink -f "$BENCH")
SERVER=$(readlink -f "$SERVER" 2>/dev/null || echo "$SERVER")

say() { echo "$*" | tee -a "$OUT/headline.txt"; }

# ---- reading the reports ----------------------------------------------------

# Figures from kizuna-bench's text report FILE.
connected_end() { sed -n 's/^clients .* target, \([0-9]*\) connected at end.*/\1/p' "$1"; }
clients_mean() { sed -n 's/^clients .* peak, \([0-9.n/a]*\) mean.*/\1/p' "$1"; }
tick_p99() { sed -n 's/^server tick .* p99 \([0-9.]*\) .*/\1/p' "$1"; }
server_us() { sed -n 's/^server CPU *\([0-9.n/a]*\) µs.*/\1/p' "$1"; }
bots_us() { sed -n 's/^bots .*: \([0-9.n/a]*\) µs CPU per client-tick.*/\1/p' "$1"; }
bots_cpu_s() { sed -n 's/^bots .* (\([0-9.n/a]*\) CPU-s).*/\1/p' "$1"; }
snaps_per_s() { sed -n 's/.*snapshots taken in (\([0-9.n/a]*\) per client-second).*/\1/p' "$1"; }
window_s() { sed -n 's/^window *\([0-9.]*\) s measured.*/\1/p' "$1"; }

# 1 when a >= b (decimal numbers), else 0.
ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 >= b + 0) ? 1 : 0 }'; }

# Thread CPU over the window from two --snapshot files, in seconds:
# "sim IO OTHER TOTAL". The simulation thread is the process's main thread.
thread_cpu() { # PID START END
    awk -v pid="$1" -v hz="$(getconf CLK_TCK)" '
        FNR == NR { t0[$1] = $3; next }
        { d = $3 - ($1 in t0 ? t0[$1] : 0)
          if ($1 == pid) sim += d; else if ($2 ~ /^kz-io/) io += d; else other += d }
        END { printf "%.3f %.3f %.3f %.3f\n", sim / hz, io / hz, other / hz,
                     (sim + io + other) / hz }' "$2" "$3"
}

# The tick histogram over the window from two /metrics files: "ticks
# skipped p99_ms within", where p99 is interpolated inside its bucket (as
# Prometheus' histogram_quantile) and within is 1 when at least 99 % of the
# ticks took at most 16.666667 ms (a bucket bound, so this is exact).
tick_window() { # START END
    awk '
        function grab(file, arr,   line, le) {
            while ((getline line < file) > 0) {
                if (line ~ /^kizuna_tick_duration_seconds_bucket\{le="/) {
                    le = line; sub(/^[^"]*"/, "", le); sub(/".*$/, "", le)
                    n = split(line, f, " "); arr["b" le] = f[n]
                    if (!(le in seen)) { seen[le] = 1; order[++nb] = le }
                } else if (line ~ /^kizuna_ticks_total /) { split(line, f, " "); arr["ticks"] = f[2] }
                else if (line ~ /^kizuna_ticks_skipped_total /) { split(line, f, " "); arr["skipped"] = f[2] }
            }
            close(file)
        }
        BEGIN {
            grab(ARGV[1], a); grab(ARGV[2], b)
            total = b["b+Inf"] - a["b+Inf"]
            if (total <= 0) { print "0 0 n/a 0"; exit }
            want = 0.99 * total; prev_le = 0; prev_c = 0; p99 = "n/a"
            for (i = 1; i <= nb; i++) {
                le = order[i]; c = b["b" le] - a["b" le]
                if (le == "0.016666667") within = (c >= want) ? 1 : 0
                if (p99 == "n/a" && c >= want) {
                    if (le == "+Inf") p99 = ">" prev_le * 1000
                    else p99 = sprintf("%.2f", (prev_le + (le - prev_le) * (want - prev_c) / (c - prev_c)) * 1000)
                }
                if (le != "+Inf") { prev_le = le; prev_c = c }
            }
            printf "%d %d %s %d\n", b["ticks"] - a["ticks"], b["skipped"] - a["skipped"], p99, within
        }' "$1" "$2"
}

# ---- (a) pinned --------------------------------------------------------------

KEYS=$OUT/keys
SERVER_CMD=
BOTS_CMD=

# pinned_run N: starts a pinned server sized for N, runs N thin bots against
# it, stops it. Prints "holds|fails N p99 sim_us io_us other_us total_us
# snaps/s bots_core" to stdout and keeps every file under $OUT/pinned-N.*.
pinned_run() {
    local n=$1 p=$OUT/pinned-$1
    local max=$((n + n / 8 + 16))
    local io=$(((max + 4094) / 4095))
    local radius
    radius=$("$BENCH" radius wander "$n")
    rm -f "$p".*
    SERVER_CMD="taskset -c 0 $SERVER run --keys $KEYS --bind 127.0.0.1 --port 0 --admin 127.0.0.1:0 --tick-hz $HZ --max-clients $max --io-threads $io --gate-rate 1000000 --spawn-radius $radius --log-level info --shutdown-grace 0"
    $SERVER_CMD >"$p.server.log" 2>&1 &
    local spid=$! port= admin=
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*"event":"listening".*"udp_port":\([0-9]*\).*/\1/p' "$p.server.log")
        admin=$(sed -n 's/.*"event":"listening".*"admin_port":\([0-9]*\).*/\1/p' "$p.server.log")
        [ -n "$port" ] && break
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ] || [ -z "$admin" ]; then
        echo "pinned N=$n: the server did not start (see $p.server.log)" >&2
        kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
        echo "fails $n n/a n/a n/a n/a n/a n/a n/a"
        return
    fi
    BOTS_CMD="taskset -c 1 $BENCH --connect 127.0.0.1:$port --keys $KEYS --clients $n --bots thin --scenario wander --hz $HZ --seconds $SECONDS_PER_RUN --warmup $WARMUP --connect-rate 2000 --quiet --json $p.json"
    $BOTS_CMD --window-cmd "bash '$SELF' --snapshot $spid $admin '$p' \"\$1\"" >"$p.txt" 2>&1
    kill -TERM "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    local ticks skipped p99 within sim io other total
    if [ -s "$p.start.metrics" ] && [ -s "$p.end.metrics" ]; then
        read -r ticks skipped p99 within < <(tick_window "$p.start.metrics" "$p.end.metrics")
        read -r sim io other total < <(thread_cpu "$spid" "$p.start.cpu" "$p.end.cpu")
    else
        ticks=0 skipped=0 p99=n/a within=0 sim=0 io=0 other=0 total=0
    fi
    local mean conn snaps bcpu win
    mean=$(clients_mean "$p.txt") conn=$(connected_end "$p.txt")
    snaps=$(snaps_per_s "$p.txt") bcpu=$(bots_cpu_s "$p.txt") win=$(window_s "$p.txt")
    # Client-ticks the server ran: the mean connected times the ticks it ran.
    local per
    per=$(awk -v m="${mean:-0}" -v t="$ticks" -v s="$sim" -v i="$io" -v o="$other" -v a="$total" \
              -v b="${bcpu:-0}" -v w="${win:-0}" 'BEGIN {
        ct = m * t
        if (ct <= 0) { print "n/a n/a n/a n/a n/a"; exit }
        printf "%.2f %.2f %.2f %.2f %.0f%%\n", s * 1e6 / ct, i * 1e6 / ct, o * 1e6 / ct,
               a * 1e6 / ct, (w > 0 ? 100 * b / w : 0) }')
    local ok=0
    [ "$within" = 1 ] && [ "${conn:-0}" -ge "$n" ] &&
        [ "$(ge "${snaps:-0}" "$(awk -v h=$HZ 'BEGIN { print 0.9 * h }')")" = 1 ] && ok=1
    echo "$([ $ok = 1 ] && echo holds || echo fails) $n $p99 $per ${snaps:-n/a} $skipped"
}

# ---- (b) box -----------------------------------------------------------------

BOX_CMD=

# box_run N: "holds|fails N p99 server_us bots_us snaps/s".
box_run() {
    local n=$1 p=$OUT/box-$1
    BOX_CMD="$BENCH --clients $n --bots thin --bot-threads $BOX_THREADS --io-threads $BOX_IO --scenario wander --hz $HZ --seconds $SECONDS_PER_RUN --warmup $WARMUP --quiet --json $p.json"
    $BOX_CMD --threshold "tick_ms.p99<=$LIMIT_MS" --threshold "clients.connected_end>=$n" \
        --threshold "bots.snapshots_per_client_s>=$(awk -v h=$HZ 'BEGIN { print 0.9 * h }')" \
        >"$p.txt" 2>&1
    local rc=$?
    echo "$([ $rc -eq 0 ] && echo holds || echo fails) $n $(tick_p99 "$p.txt") $(server_us "$p.txt") $(bots_us "$p.txt") $(snaps_per_s "$p.txt")"
}

# ---- the search ----------------------------------------------------------------

# try KIND N: one run; its line goes to $OUT/KIND.runs and stderr. Not in
# a subshell, so that the run's command lines stay set for the summary.
try() {
    local line
    "${1}_run" "$2" >"$OUT/.last"
    line=$(cat "$OUT/.last")
    echo "$line" >>"$OUT/$1.runs"
    echo "$1: $line" >&2
    [ "${line%% *}" = holds ]
}

# search KIND: sets BEST to the largest N (a multiple of STEP from START)
# whose run holds, 0 if none.
BEST=0
search() {
    local kind=$1 good=0 bad=0 n=$START
    : >"$OUT/$kind.runs"
    while [ "$n" -le "$MAX" ]; do
        if try "$kind" "$n"; then good=$n; n=$((n * 2)); else bad=$n; break; fi
    done
    if [ "$bad" -ne 0 ]; then
        while [ $((bad - good)) -gt "$STEP" ]; do
            local mid=$(((good + bad) / 2 / STEP * STEP))
            [ "$mid" -le "$good" ] && mid=$((good + STEP))
            if try "$kind" "$mid"; then good=$mid; else bad=$mid; fi
        done
    fi
    BEST=$good
}

: >"$OUT/headline.txt"
say "Kizuna capacity headlines: wander @ $HZ Hz, thin bots, $SECONDS_PER_RUN measured seconds per run after $WARMUP s warm-up"
say "machine: $(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)), $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), load average at start $(cut -d' ' -f1-3 /proc/loadavg), nice $(nice)"
say "a run holds: server tick p99 <= $LIMIT_MS ms, every client connected, >= 90 % of the ticks' snapshots received"

if [ "$ONLY" != box ]; then
    rm -rf "$KEYS"
    "$SERVER" keygen --out "$KEYS" >/dev/null || { echo "headline.sh: keygen failed" >&2; exit 1; }
    search pinned
    best=$BEST
    at_line=
    if [ "$PINNED_AT" -gt 0 ]; then
        at_line=$(grep -E "^[a-z]+ $PINNED_AT " "$OUT/pinned.runs" | tail -1)
        if [ -z "$at_line" ]; then
            try pinned "$PINNED_AT"
            at_line=$(cat "$OUT/.last")
        fi
    fi
    say ""
    say "(a) pinned: server on core 0, bots on core 1"
    say "    server: $(echo "$SERVER_CMD" | sed -e 's/--max-clients [0-9]*/--max-clients N+N\/8+16/' \
        -e 's/--io-threads [0-9]*/--io-threads ceil(max\/4095)/' \
        -e 's/--spawn-radius [0-9.]*/--spawn-radius $(kizuna-bench radius wander N)/')"
    say "    bots:   $(echo "$BOTS_CMD" | sed -e 's/--connect [0-9.:]*/--connect 127.0.0.1:PORT/' \
        -e 's/--clients [0-9]*/--clients N/' -e 's/pinned-[0-9]*\.json/pinned-N.json/') --window-cmd ..."
    say "            (the window command reads /proc/PID/task/*/stat and /metrics as the window starts and ends)"
    say "    per client-tick, server threads (µs): sim = main thread, io = kz-io-*, other = the rest"
    say "$(printf '    %6s %9s %7s %7s %7s %7s %9s %10s %8s %s' N 'p99 ms' sim io other total 'snaps/s' 'bots core1' skipped verdict)"
    sort -n -k2 "$OUT/pinned.runs" | while read -r v n p99 sim io other total bcore snaps skipped; do
        say "$(printf '    %6s %9s %7s %7s %7s %7s %9s %10s %8s %s' "$n" "$p99" "$sim" "$io" "$other" "$total" "$snaps" "$bcore" "$skipped" "$v")"
    done
    say "    largest N: $best clients (target >= 3000)"
    if [ -n "$at_line" ]; then
        read -r v n p99 sim io other total bcore snaps skipped <<<"$at_line"
        say "    at $PINNED_AT clients: sim $sim µs, I/O $io µs, other $other µs, total $total µs per client-tick (targets: sim <= 4, total <= 10); tick p99 $p99 ms; bots used $bcore of core 1"
    fi
    say "    a bots-core share near 100 % means the bots, not the server, set the limit"
fi

if [ "$ONLY" != pinned ]; then
    search box
    best=$BEST
    say ""
    say "(b) box: embedded server and thin bots on all $(nproc) cores"
    say "    $(echo "$BOX_CMD" | sed -e 's/--clients [0-9]*/--clients N/' -e 's/box-[0-9]*\.json/box-N.json/')"
    say "$(printf '    %6s %9s %12s %10s %9s %s' N 'p99 ms' 'server µs/ct' 'bots µs/ct' 'snaps/s' verdict)"
    sort -n -k2 "$OUT/box.runs" | while read -r v n p99 sus bus snaps; do
        say "$(printf '    %6s %9s %12s %10s %9s %s' "$n" "$p99" "$sus" "$bus" "$snaps" "$v")"
    done
    say "    largest N: $best clients (target >= 2000)"
fi

# ---- the older table: full bots, two scenarios, two rates ---------------------

full_run() { # SCENARIO HZ N -> 0 if it holds
    local sc=$1 hz=$2 n=$3 half
    half=$(awk -v hz="$hz" 'BEGIN { printf "%.3f", 500.0 / hz }')
    "$BENCH" --clients "$n" --hz "$hz" --scenario "$sc" --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" \
        --quiet --json "$OUT/$sc-$hz-$n.json" \
        --threshold "tick_ms.p99<$half" --threshold "clients.connected_end>=$n" \
        >"$OUT/$sc-$hz-$n.txt" 2>&1
    local rc=$?
    echo "full $sc $hz Hz N=$n: tick p99 $(tick_p99 "$OUT/$sc-$hz-$n.txt") ms (limit $half), server $(server_us "$OUT/$sc-$hz-$n.txt") µs/client-tick -> $([ $rc -eq 0 ] && echo holds || echo fails)" >&2
    return $rc
}

full_search() { # SCENARIO HZ -> the largest N that holds (0 if none), in steps of 125
    local sc=$1 hz=$2 good=0 bad=0 n=250
    while [ $n -le "$MAX" ]; do
        if full_run "$sc" "$hz" "$n"; then good=$n; n=$((n * 2)); else bad=$n; break; fi
    done
    [ $bad -eq 0 ] && { echo "$good"; return; }
    while [ $((bad - good)) -gt 125 ]; do
        local mid=$(((good + bad) / 2 / 125 * 125))
        [ $mid -le $good ] && mid=$((good + 125))
        if full_run "$sc" "$hz" "$mid"; then good=$mid; else bad=$mid; fi
    done
    echo "$good"
}

if [ "$FULL_TABLE" = 1 ]; then
    say ""
    say "full bots on the box (embedded server; p99 under half the tick period):"
    say "    $BENCH --clients N --hz HZ --scenario SC --seconds $SECONDS_PER_RUN --warmup $WARMUP"
    say "$(printf '    %-8s %4s %8s' scenario Hz 'max N')"
    for sc in wander crowd; do
        for hz in 30 60; do
            say "$(printf '    %-8s %4s %8s' "$sc" "$hz" "$(full_search "$sc" "$hz")")"
        done
    done
fi
say ""
say "runs: $OUT ($(nproc) cores)"
