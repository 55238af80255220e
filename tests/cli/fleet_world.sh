#!/usr/bin/env bash
#
# One world on many processes, end to end: a nats-server of the test's own
# (a free loopback port, a temporary JetStream directory), `kizuna-server
# run --role authority` and three `--role edge` processes on their own UDP
# ports. Edges report `listening` only once they hold the world and
# register as role edge; `token mint --world` names the three edges and
# passes over the authority. Sixty bots (kizuna-bench's 20 on edge 1 with
# client ids 1..20, kz-fleet-bots' 20 on edge 2 with ids 201..220 and 20
# on edge 3 with ids 301..320: the authority keeps one session per client
# id, and every kizuna-bench run numbers its bots from 1) connect and stay connected, the kz-fleet-bots see avatars
# served by every edge (kizuna-bench only reports its snapshots), the
# authority counts 60 sessions, and no bus message is dropped anywhere;
# once the bots leave, the authority's sessions end. An edge whose world
# settings differ from the authority's exits 1 with a clear line; killing
# the authority makes every edge log authority_lost. A SIGTERM stops an
# edge cleanly (exit 0, out of the directory), and the avatars of the
# clients it let go stay held by the authority. Killing (-9) an edge whose
# bots' tokens name every edge moves them to another within 2 s, each with
# its own avatar, unseen by the others (no leave), the authority taking up
# the held avatars. A nats-server restarted under ten bots kicks none.
#
#   bash tests/cli/fleet_world.sh kizuna-server kizuna-bench kz-fleet-bots
#
# Exit 77 (skipped) when nats-server is not installed, unless CI=true.
set -euo pipefail
BIN=$1
BENCH=$2
BOTS=$3
if ! command -v nats-server >/dev/null; then
    [ "${CI:-}" = true ] && { echo "FAIL: nats-server is not installed (.ci/setup installs it)"; exit 1; }
    echo "SKIP: nats-server is not installed"
    exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzs-world-XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
fail() {
    echo "FAIL: $*"
    for f in nats.log authority.log edge*.log bench.out bench.err bots*.out metrics.txt mint.out mint.err; do
        [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f" | cut -c1-1500; }
    done
    # A sanitizer's report (a server exiting 66 under TSan, say) whole,
    # wherever it is in the log.
    for f in authority.log edge*.log; do
        [ -f "$f" ] && grep -q -E '^(WARNING: ThreadSanitizer|==[0-9]+==ERROR)|runtime error' "$f" &&
            { echo "--- sanitizer report in $f"; grep -E -A 60 '^(WARNING: ThreadSanitizer|==[0-9]+==ERROR)|runtime error' "$f" | head -n 120; }
    done
    exit 1
}

# Starts a nats-server with JetStream on a free loopback port (-p -1: the
# server picks) and sets NATS_URL.
start_nats() {
    nats-server -js -a 127.0.0.1 -p -1 -sd "$WORK/js" >nats.log 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    local port=
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' nats.log)
        [ -n "$port" ] && grep -q "Server is ready" nats.log && break
        kill -0 "$NATS_PID" 2>/dev/null || fail "nats-server exited: $(cat nats.log)"
        sleep 0.1
    done
    [ -n "$port" ] || fail "nats-server not ready within 10 s"
    NATS_URL="nats://127.0.0.1:$port"
}

# Every process of the world has the same world settings (an edge checks
# the authority's against its own); only the authority spawns, within 5 m
# so that every avatar is in every view (view radius 50 m).
WORLD=(--world w1 --max-clients 64)

# Waits up to 10 s for the "listening" line of the process logging to $1
# (pid $2) and sets VALUE to its field $3.
listening() {
    local log=$1 pid=$2 field=$3
    VALUE=
    for _ in $(seq 1 100); do
        VALUE=$(sed -n "s/.*\"event\":\"listening\".*\"$field\":\([0-9]*\).*/\1/p" "$log")
        [ -n "$VALUE" ] && break
        kill -0 "$pid" 2>/dev/null || fail "$log: exited before listening"
        sleep 0.1
    done
    [ -n "$VALUE" ] || fail "$log: no 'listening' line within 10 s"
}

start_edge() { # number, extra flags...
    local n=$1; shift
    "$BIN" run --role edge --edge "$n" --nats "$NATS_URL" "${WORLD[@]}" --keys keys --port 0 \
        --bind 127.0.0.1 --admin off "$@" >"edge$n.log" 2>&1 &
    EDGE_PID[$n]=$!
    PIDS+=("${EDGE_PID[$n]}")
}

# The last bus_stats line of a log, one "name":value per line.
last_stats() {
    grep '"event":"bus_stats"' "$1" | tail -n 1 | tr ',' '\n'
}
# Fails unless every drop counter of the bus_stats line of $1 is 0.
no_drops() {
    local stats bad
    stats=$(last_stats "$1")
    [ -n "$stats" ] || fail "$1: no bus_stats line"
    bad=$(echo "$stats" | grep -E '"bus_(drop_[a-z_]*|out_dropped|nats_dropped|publish_failed|receive_failed|gap|unsent_disconnected)":' |
        grep -v ':0}*$' || true)
    [ -z "$bad" ] || fail "$1: bus drops: $bad"
}

"$BIN" keygen --out keys >/dev/null

# 0. Settings: a fleet role needs the bus and a world; an edge needs its
#    number and only an edge has one (exit 2, the line names the fix).
refused() { # expected line, flags...
    local want=$1 status=0; shift
    "$BIN" run --keys keys --port 0 --admin off "$@" >refused.out 2>&1 || status=$?
    [ "$status" -eq 2 ] || fail "run $* exited $status"
    grep -qF "$want" refused.out || fail "run $*: $(cat refused.out)"
}
refused "role: authority needs the bus and a world name" --role authority
refused "role: edge needs the bus and a world name" --role edge --edge 1 --world w1
refused "edge: role = edge needs this edge's number 1..64" --role edge --nats nats://127.0.0.1:1 --world w1
refused "edge: 3 is set but role is single" --edge 3
refused "edge: '65' is not a whole number in 0..64" --role edge --edge 65 --nats nats://127.0.0.1:1 --world w1
refused "role: single, authority or edge" --role leader
start_nats
EDGE_PID=()
PORT=()

# 1. The authority: no UDP port, ready at once, in the directory as an
#    authority; the edges: listening (and registered) once they hold the
#    world.
"$BIN" run --role authority --nats "$NATS_URL" "${WORLD[@]}" --spawn-radius 5 \
    --admin 127.0.0.1:0 >authority.log 2>&1 &
AUTH_PID=$!
PIDS+=("$AUTH_PID")
listening authority.log "$AUTH_PID" admin_port
ADMIN=$VALUE
listening authority.log "$AUTH_PID" udp_port
[ "$VALUE" = 0 ] || fail "the authority listens on UDP"
grep -q '"event":"listening".*"role":"authority"' authority.log || fail "authority: no role in listening"
for n in 1 2 3; do start_edge "$n"; done
for n in 1 2 3; do
    listening "edge$n.log" "${EDGE_PID[$n]}" udp_port
    PORT[$n]=$VALUE
    grep -q '"event":"world_synced"' "edge$n.log" || fail "edge $n listening without world_synced"
    # The order in the log: the world first, then listening.
    [ "$(grep -n '"event":"world_synced"' "edge$n.log" | head -n 1 | cut -d: -f1)" -lt \
      "$(grep -n '"event":"listening"' "edge$n.log" | cut -d: -f1)" ] || fail "edge $n listened before it held the world"
done
"$BIN" token mint --keys keys --world w1 --nats "$NATS_URL" --client-id 999 --out mint.kzc \
    >mint.out 2>mint.err || fail "token mint --world w1"
[ "$(grep -c '^picked .* role=edge ' mint.out)" -eq 3 ] || fail "mint did not name three edges"
grep -q 'passed over authority=1' mint.err || fail "mint did not pass over the authority"
for n in 1 2 3; do grep -q "address=127\.0\.0\.1:${PORT[$n]} " mint.out || fail "mint misses edge $n"; done
# The authority's entry offers no address to tokens.
"$BIN" fleet list --nats "$NATS_URL" --world w1 --json >list.json || fail "fleet list"
grep -q '"role":"authority","id":"[0-9a-f]\{16\}","address":"","sessions":0,"max":64' list.json ||
    fail "authority entry: $(cat list.json)"
[ "$(grep -o '"role":"edge"' list.json | wc -l)" -eq 3 ] || fail "edge entries: $(cat list.json)"

# 2. Sixty bots, 20 per edge, for about 12 s.
mkdir tok2 tok3
for n in 2 3; do
    for i in $(seq 1 20); do
        id=$((n * 100 + i))
        "$BIN" token mint --keys keys --server "127.0.0.1:${PORT[$n]}" --client-id "$id" \
            --name "bot-$id" --actor bot --out "tok$n/$id.kzc" >/dev/null || fail "mint bot $id"
    done
done
"$BENCH" --connect "127.0.0.1:${PORT[1]}" --keys keys --clients 20 --warmup 2 --seconds 8 \
    --quiet >bench.out 2>bench.err &
BENCH_PID=$!
PIDS+=("$BENCH_PID")
"$BOTS" --seconds 12 tok2/*.kzc >bots2.out 2>&1 &
BOTS2_PID=$!
PIDS+=("$BOTS2_PID")
"$BOTS" --seconds 12 tok3/*.kzc >bots3.out 2>&1 &
BOTS3_PID=$!
PIDS+=("$BOTS3_PID")

# The authority holds every session within 8 s, with no bus drop.
for _ in $(seq 1 80); do
    curl -s "http://127.0.0.1:$ADMIN/metrics" >metrics.txt || fail "authority /metrics"
    grep -q '^kizuna_clients_connected 60$' metrics.txt && break
    sleep 0.1
done
grep -q '^kizuna_clients_connected 60$' metrics.txt ||
    fail "authority: $(grep '^kizuna_clients_connected' metrics.txt), want 60"
grep -q '^kizuna_bus_msgs_in_total [1-9]' metrics.txt || fail "authority /metrics: no bus messages in"
grep -q '^kizuna_drops_total{layer="bus",reason="malformed"} 0$' metrics.txt || fail "no bus drops in /metrics"
bus_drops=$(grep '^kizuna_drops_total{layer="bus"' metrics.txt | grep -v ' 0$' || true)
[ -z "$bus_drops" ] || fail "authority /metrics: $bus_drops"
# ... and its next bus_stats line says so too.
for _ in $(seq 1 60); do
    last_stats authority.log | grep -q '^"sessions":60$' && break
    sleep 0.1
done
last_stats authority.log | grep -q '^"sessions":60$' || fail "authority bus_stats: sessions not 60"
last_stats authority.log | grep -q '^"held":0$' || fail "authority bus_stats: held sessions"
no_drops authority.log

wait "$BENCH_PID" || fail "kizuna-bench exited $?"
wait "$BOTS2_PID" || fail "kz-fleet-bots on edge 2 exited $? ($(head -n 3 bots2.out))"
wait "$BOTS3_PID" || fail "kz-fleet-bots on edge 3 exited $? ($(head -n 3 bots3.out))"
grep -q '20 target, 20 connected at end, 20 peak' bench.out || fail "bench: $(grep clients bench.out)"
grep -q ' 0 kicks, 0 timeouts$' bench.out || fail "bench: $(grep enforcement bench.out)"
# At 30 Hz each bench bot takes in about 30 snapshots a second.
rate=$(sed -n 's/.* snapshots taken in (\([0-9.]*\) per client-second).*/\1/p' bench.out)
awk -v r="$rate" 'BEGIN { exit !(r >= 20) }' || fail "bench: $rate snapshots per client-second"
for n in 2 3; do
    grep -q '^bots=20 connected=20 stayed=20 disconnects=0 ' "bots$n.out" || fail "edge $n bots: $(head -n 3 "bots$n.out")"
    # Every other avatar of the world, whichever edge serves it: ids 1..20
    # (kizuna-bench, edge 1), 201..220 and 301..320.
    want=$( (seq 1 20; seq 201 220; seq 301 320) | tr '\n' ' ')
    seen=$(sed -n 's/^seen //p' "bots$n.out")
    for id in $want; do
        case " $seen " in *" $id "*) ;; *) fail "edge $n bots never saw bot-$id (seen: $seen)" ;; esac
    done
    min=$(sed -n 's/^min_seen=//p' "bots$n.out")
    [ "$min" -ge 59 ] || fail "edge $n: a bot saw only $min of the 59 others"
done

# Once the bots are gone the authority's sessions end (their leaves
# crossed the bus), still without a drop.
for _ in $(seq 1 50); do
    curl -s "http://127.0.0.1:$ADMIN/metrics" >metrics.txt || fail "authority /metrics"
    grep -q '^kizuna_clients_connected 0$' metrics.txt && break
    sleep 0.1
done
grep -q '^kizuna_clients_connected 0$' metrics.txt || fail "authority: sessions left after the bots"
bus_drops=$(grep '^kizuna_drops_total{layer="bus"' metrics.txt | grep -v ' 0$' || true)
[ -z "$bus_drops" ] || fail "authority /metrics after the bots: $bus_drops"
sleep 5.2 # one more bus_stats line on every process, covering the whole run
no_drops authority.log
for n in 1 2 3; do no_drops "edge$n.log"; done

# 2b. Failover: ten bots on edge 2 and ten on edge 3 whose tokens name
#    all three edges, their own first. Edge 2 is killed (-9) mid-run:
#    each of its bots finds the silence, joins through the next address
#    and the authority takes its held avatar up again, so within 2 s of
#    the kill (the silence as the client measured it) every one is back
#    with the same avatar, and no bot of edge 3 saw one of them leave.
#    The bots detect the silence after 1 s (--silence-ms 1000): fleet
#    worlds use 1 s, the library's default 1.5 s leaves too little of 2 s.
fail_tok() { # dir, client id, edges in the token's order...
    local dir=$1 id=$2 servers=() e; shift 2
    for e in "$@"; do servers+=(--server "127.0.0.1:${PORT[$e]}"); done
    "$BIN" token mint --keys keys "${servers[@]}" --client-id "$id" --name "bot-$id" --actor bot \
        --out "$dir/$id.kzc" >/dev/null || fail "mint bot $id"
}
mkdir tok6 tok7
for i in $(seq 1 10); do
    fail_tok tok6 $((500 + i)) 2 1 3
    fail_tok tok7 $((600 + i)) 3 1 2
done
reattached0=$(last_stats authority.log | sed -n 's/^"bus_sessions_reattached":\([0-9]*\)}*$/\1/p')
[ -n "$reattached0" ] || fail "authority bus_stats: no bus_sessions_reattached"
"$BOTS" --seconds 9 --silence-ms 1000 tok6/*.kzc >bots6.out 2>&1 &
BOTS6_PID=$!
PIDS+=("$BOTS6_PID")
"$BOTS" --seconds 8 --silence-ms 1000 tok7/*.kzc >bots7.out 2>&1 &
BOTS7_PID=$!
PIDS+=("$BOTS7_PID")
for _ in $(seq 1 50); do
    curl -s "http://127.0.0.1:$ADMIN/metrics" >metrics.txt || fail "authority /metrics"
    grep -q '^kizuna_clients_connected 20$' metrics.txt && break
    sleep 0.1
done
grep -q '^kizuna_clients_connected 20$' metrics.txt || fail "the failover bots did not join"
sleep 1.5 # every bot sees every other
kill -9 "${EDGE_PID[2]}"
{ wait "${EDGE_PID[2]}"; } 2>/dev/null || true
wait "$BOTS6_PID" || fail "edge 2's bots exited $? after the kill ($(cat bots6.out))"
wait "$BOTS7_PID" || fail "edge 3's bots exited $? ($(cat bots7.out))"
grep -q '^bots=10 connected=10 stayed=10 disconnects=0 ' bots6.out || fail "edge 2's bots: $(cat bots6.out)"
grep -q '^resumed=10 fresh=0 self_changed=0 ' bots6.out || fail "edge 2's bots did not all resume as themselves: $(cat bots6.out)"
[ "$(grep -c '^failover token=' bots6.out)" -eq 10 ] || fail "failover lines: $(cat bots6.out)"
gap=$(sed -n 's/.* failover_max_gap_ms=\([0-9]*\) .*/\1/p' bots6.out)
resume=$(sed -n 's/.* failover_max_resume_ms=\([0-9]*\)$/\1/p' bots6.out)
[ -n "$gap" ] && [ "$gap" -le 2000 ] || fail "edge 2's bots were back after up to $gap ms, want <= 2000"
echo "failover: edge 2's 10 bots back within $gap ms of their last datagram ($resume ms after RECONNECTING)"
grep -q '^bots=10 connected=10 stayed=10 disconnects=0 reconnects=0$' bots7.out || fail "edge 3's bots: $(cat bots7.out)"
seen=$(sed -n 's/^seen //p' bots7.out)
left=$(sed -n 's/^left//p' bots7.out)
for i in $(seq 1 10); do
    case " $seen " in *" $((500 + i)) "*) ;; *) fail "edge 3's bots never saw bot-$((500 + i))" ;; esac
    case " $left " in *" $((500 + i)) "*) fail "edge 3's bots saw bot-$((500 + i)) leave (left:$left)" ;; esac
done
# The authority took up the ten held avatars, and its next bus_stats line
# (the authority writes one every 5 s) shows no drop.
for _ in $(seq 1 60); do
    curl -s "http://127.0.0.1:$ADMIN/metrics" >metrics.txt || fail "authority /metrics"
    grep -q '^kizuna_clients_connected 0$' metrics.txt && break
    sleep 0.1
done
grep -q '^kizuna_clients_connected 0$' metrics.txt || fail "authority: sessions left after the failover bots"
lines=$(grep -c '"event":"bus_stats"' authority.log)
for _ in $(seq 1 60); do
    [ "$(grep -c '"event":"bus_stats"' authority.log)" -gt "$lines" ] && break
    sleep 0.1
done
reattached=$(last_stats authority.log | sed -n 's/^"bus_sessions_reattached":\([0-9]*\)}*$/\1/p')
[ -n "$reattached" ] && [ $((reattached - reattached0)) -ge 10 ] ||
    fail "authority reattached $((${reattached:-0} - reattached0)) sessions, want >= 10"
no_drops authority.log
# Edge 2 again, for the phases below.
start_edge 2
listening edge2.log "${EDGE_PID[2]}" udp_port
PORT[2]=$VALUE

# 2c. nats-server restarts (killed, up again on its port with its store
#    within about 1 s) under ten bots: none is kicked, and all are still
#    connected 10 s later.
mkdir tok8
for i in 1 2 3 4 5; do
    fail_tok tok8 $((700 + i)) 2 1 3
    fail_tok tok8 $((800 + i)) 3 1 2
done
"$BOTS" --seconds 13 --silence-ms 1000 tok8/*.kzc >bots8.out 2>&1 &
BOTS8_PID=$!
PIDS+=("$BOTS8_PID")
for _ in $(seq 1 50); do
    curl -s "http://127.0.0.1:$ADMIN/metrics" >metrics.txt || fail "authority /metrics"
    grep -q '^kizuna_clients_connected 10$' metrics.txt && break
    sleep 0.1
done
grep -q '^kizuna_clients_connected 10$' metrics.txt || fail "the bots of 2c did not join"
nats_port=${NATS_URL##*:}
kill -9 "$NATS_PID"
{ wait "$NATS_PID"; } 2>/dev/null || true
sleep 0.5
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$WORK/js" >nats2.log 2>&1 &
NATS_PID=$!
PIDS+=("$NATS_PID")
for _ in $(seq 1 30); do grep -q "Server is ready" nats2.log && break; sleep 0.1; done
grep -q "Server is ready" nats2.log || fail "nats-server did not start again on port $nats_port"
wait "$BOTS8_PID" || fail "bots exited $? across the nats-server restart ($(cat bots8.out))"
grep -q '^bots=10 connected=10 stayed=10 disconnects=0 ' bots8.out || fail "bots across the restart: $(cat bots8.out)"

# 3. SIGTERM on an edge with clients: it leaves the directory, lets them
#    go (kick reason 3, shutdown), exits 0, and the authority holds their
#    avatars for a JOIN elsewhere (resume_grace).
curl -s "http://127.0.0.1:$ADMIN/metrics" >metrics.txt || fail "authority /metrics"
held0=$(sed -n 's/^kizuna_bus_sessions_held_total \([0-9]*\)$/\1/p' metrics.txt)
[ -n "$held0" ] || fail "authority /metrics: no kizuna_bus_sessions_held_total"
mkdir tok5
for i in 1 2 3 4 5; do
    id=$((400 + i))
    "$BIN" token mint --keys keys --server "127.0.0.1:${PORT[3]}" --client-id "$id" \
        --name "bot-$id" --actor bot --out "tok5/$id.kzc" >/dev/null || fail "mint bot $id"
done
"$BOTS" --seconds 8 tok5/*.kzc >bots5.out 2>&1 &
BOTS5_PID=$!
PIDS+=("$BOTS5_PID")
for _ in $(seq 1 50); do
    curl -s "http://127.0.0.1:$ADMIN/metrics" >metrics.txt || fail "authority /metrics"
    grep -q '^kizuna_clients_connected 5$' metrics.txt && break
    sleep 0.1
done
grep -q '^kizuna_clients_connected 5$' metrics.txt || fail "the five bots of edge 3 did not join"
kill -TERM "${EDGE_PID[3]}"
wait "${EDGE_PID[3]}" || fail "edge 3 exited $? after SIGTERM with clients"
grep -q '"event":"draining","module":"run","clients":5' edge3.log || fail "edge 3: no draining line"
grep -q '"event":"fleet_left"' edge3.log || fail "edge 3 did not leave the directory"
grep -q '"event":"stopped","module":"run","exit":0' edge3.log || fail "edge 3: no clean stop"
status=0
wait "$BOTS5_PID" || status=$?
[ "$status" -eq 1 ] && grep -q '^bots=5 connected=5 stayed=0 disconnects=5 ' bots5.out ||
    fail "edge 3's bots were not let go: $(cat bots5.out)"
[ "$(grep -c '^lost token=.* reason=3$' bots5.out)" -eq 5 ] || fail "kick reasons: $(cat bots5.out)"
for _ in $(seq 1 20); do
    curl -s "http://127.0.0.1:$ADMIN/metrics" >metrics.txt || fail "authority /metrics"
    grep -q "^kizuna_bus_sessions_held_total $((held0 + 5))\$" metrics.txt && break
    sleep 0.1
done
grep -q "^kizuna_bus_sessions_held_total $((held0 + 5))\$" metrics.txt || fail "the authority did not hold 5 avatars"
grep -q '^kizuna_clients_connected 5$' metrics.txt || fail "held avatars were dropped"

# 4. An edge with another tick rate stops: exit 1, a line that says why,
#    never listening.
start_edge 4 --tick-hz 20
status=0
for _ in $(seq 1 100); do kill -0 "${EDGE_PID[4]}" 2>/dev/null || break; sleep 0.1; done
wait "${EDGE_PID[4]}" || status=$?
[ "$status" -eq 1 ] || fail "an edge at 20 Hz under a 30 Hz authority exited $status"
grep -q '"event":"fleet_failed".*"edge":4,"tick_hz":20' edge4.log || fail "edge 4: no fleet_failed line"
grep -q "the authority's world has other settings (tick_hz 30" edge4.log || fail "edge 4: the settings are not named"
grep -q '"event":"listening"' edge4.log && fail "edge 4 listened"

# 5. The authority is killed: every edge logs authority_lost within 2 s.
{ kill -9 "$AUTH_PID" && wait "$AUTH_PID"; } 2>/dev/null || true
for n in 1 2; do
    for _ in $(seq 1 20); do grep -q '"event":"authority_lost"' "edge$n.log" && break; sleep 0.1; done
    grep -q '"event":"authority_lost"' "edge$n.log" || fail "edge $n did not log authority_lost"
    kill -0 "${EDGE_PID[$n]}" 2>/dev/null || fail "edge $n died with the authority"
done

# 6. SIGTERM stops an edge without an authority cleanly too.
for n in 1 2; do kill -TERM "${EDGE_PID[$n]}"; done
for n in 1 2; do
    wait "${EDGE_PID[$n]}" || fail "edge $n exited $? after SIGTERM"
    grep -q '"event":"fleet_left"' "edge$n.log" || fail "edge $n did not leave the directory"
    grep -q '"event":"stopped","module":"run","exit":0' "edge$n.log" || fail "edge $n: no clean stop"
done
echo "ok: fleet world (authority, 3 edges, 60 bots)"
