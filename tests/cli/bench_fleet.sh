#!/usr/bin/env bash
#
# kizuna-bench fleet end to end: the same 30 bots against one kizuna-server
# and against nats-server with an authority and two edges, all started by
# kizuna-bench itself. Every bot is connected in both runs, the rotated
# token addresses put 15 bots on each edge, every process measured used CPU
# in the window, NATS carried bytes for every avatar-tick, both runs
# measured input-to-snapshot latency, and nothing kizuna-bench started is
# left running, nor its temporary directory. Before that, without NATS:
# bad --connect lists and fleet options are usage errors (exit 2), and a
# missing kizuna-server is named.
#
#   bash tests/cli/bench_fleet.sh path/to/kizuna-bench path/to/kizuna-server
#
# Exit 77 (skipped) when nats-server is not installed, unless CI=true.
set -euo pipefail
BENCH=$1
SERVER=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzb-fleet-test-XXXXXX")
BENCH_PID=
cleanup() {
    [ -n "$BENCH_PID" ] && kill -9 "$BENCH_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    for f in fleet.out fleet.err out.json; do
        [ -f "$WORK/$f" ] && { echo "--- $f"; tail -n 40 "$WORK/$f" | cut -c1-400; }
    done
    exit 1
}

usage_error() { # what the message names, arguments...
    local want=$1 status=0; shift
    "$BENCH" "$@" >"$WORK/usage.out" 2>&1 || status=$?
    [ "$status" -eq 2 ] || fail "kizuna-bench $* exited $status, want 2"
    grep -qF -- "$want" "$WORK/usage.out" || fail "kizuna-bench $*: $(head -n 2 "$WORK/usage.out")"
}
usage_error "listed twice" --connect 127.0.0.1:4000,127.0.0.1:4000 --keys "$WORK" --clients 1
usage_error "empty address" --connect 127.0.0.1:4000, --keys "$WORK" --clients 1
usage_error "not IPV4:PORT" --connect 127.0.0.1:0 --keys "$WORK" --clients 1
usage_error "more than 8 addresses" --keys "$WORK" --clients 1 \
    --connect "$(seq -s, -f '127.0.0.1:%g' 4001 4009)"
usage_error "bad value '0'" --first-id 0 --clients 1
usage_error "bad value '0'" fleet --edges 0
usage_error "bad value '9'" fleet --edges 9
usage_error "bad value 'hostile'" fleet --scenario hostile
usage_error "unexpected argument" fleet extra
usage_error "no kizuna-server at $WORK/none" fleet --server-bin "$WORK/none"

if ! command -v nats-server >/dev/null; then
    [ "${CI:-}" = true ] && { echo "FAIL: nats-server is not installed (.ci/setup installs it)"; exit 1; }
    echo "SKIP: nats-server is not installed"
    exit 77
fi

# Its temporary directory under $WORK: every process it starts names it
# on its command line (keys, JetStream store), which finds leftovers.
TMPDIR=$WORK "$BENCH" fleet --edges 2 --clients 30 --seconds 3 --warmup 1 --quiet \
    --server-bin "$SERVER" --json "$WORK/out.json" >"$WORK/fleet.out" 2>"$WORK/fleet.err" &
BENCH_PID=$!
status=0
wait "$BENCH_PID" || status=$?
BENCH_PID=
[ "$status" -eq 0 ] || fail "kizuna-bench fleet exited $status"
left=$(pgrep -a -f "$WORK/kzb-fleet-" || true)
[ -z "$left" ] || fail "processes left behind: $left"
[ -z "$(find "$WORK" -mindepth 1 -maxdepth 1 -name 'kzb-fleet-*')" ] || fail "temporary directory left behind"

J=$WORK/out.json
q() { jq -e "$1" "$J" >/dev/null || fail "out.json: $1 ($(jq -c "${2:-.}" "$J"))"; }
q '.schema == "kizuna-bench-fleet/1"' .schema
q '.config.edges == 2 and .config.clients == 30' .config
q '.single.clients_connected_end == 30' .single.clients_connected_end
q '.fleet.clients_connected_end == 30' .fleet.clients_connected_end
q '[.single.processes[].name] == ["kizuna-server"]' '[.single.processes[].name]'
q '[.fleet.processes[].name] == ["nats-server", "authority", "edge 1", "edge 2"]' \
    '[.fleet.processes[].name]'
q '[.single.processes[], .fleet.processes[] | .cpu_seconds > 0] | all' \
    '[.single.processes[], .fleet.processes[] | .cpu_seconds]'
q '.single.cpu_seconds.bench > 0 and .fleet.cpu_seconds.bench > 0' '[.single.cpu_seconds, .fleet.cpu_seconds]'
# Bot i's token starts at edge (i mod 2) + 1: 15 bots on each.
q '[.fleet.processes[] | select(.name | startswith("edge")) | .clients] == [15, 15]' \
    '[.fleet.processes[] | .clients]'
q '.fleet.nats.bytes_per_avatar_tick > 0 and .fleet.nats.in_msgs > 0' .fleet.nats
q '.fleet.bus.bytes_out > 0' .fleet.bus
q '.fleet_over_single_cpu.servers > 0' .fleet_over_single_cpu
q '.single.input_latency_ms.p99 > 0 and .fleet.input_latency_ms.p99 > 0' \
    '[.single.input_latency_ms, .fleet.input_latency_ms]'
q '.latency_added_by_bus_ms.p50 != null' .latency_added_by_bus_ms
grep -q 'latency added by the bus' "$WORK/fleet.out" || fail "no latency line"
grep -q 'bytes per avatar-tick' "$WORK/fleet.out" || fail "no bytes per avatar-tick line"
echo "bench_fleet: single and fleet runs, 30 of 30 bots each, 15 per edge, nothing left behind"
