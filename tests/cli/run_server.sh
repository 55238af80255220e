#!/usr/bin/env bash
#
# kizuna-server run, end to end: start it on a free port, wait for
# "listening", connect a real client with a minted token, refuse a client
# whose token another backend signed, stop it with SIGTERM and check that it
# exits 0 having logged the session.
#
#   bash tests/cli/run_server.sh path/to/kizuna-server path/to/kz-connect-probe
set -euo pipefail
BIN=$1
PROBE=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzs-run-XXXXXX")
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

fail() { echo "FAIL: $*"; echo "--- server log"; cat server.log 2>/dev/null || true; exit 1; }

"$BIN" keygen --out keys >/dev/null
"$BIN" keygen --out rogue >/dev/null
"$BIN" run --keys keys --port 0 --bind 127.0.0.1 --admin off --io-threads 2 --log-level info >server.log 2>&1 &
SERVER_PID=$!

port=
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*"event":"listening".*"udp_port":\([0-9]*\).*/\1/p' server.log)
    [ -n "$port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited before listening"
    sleep 0.1
done
[ -n "$port" ] || fail "no 'listening' line within 10 s"

"$BIN" token mint --keys keys --server "127.0.0.1:$port" --client-id 7 --name Probe --out good.kzc >/dev/null
"$PROBE" good.kzc 5000 >probe.out || fail "probe with a valid token did not connect: $(cat probe.out)"
# A second client is served by the second I/O host.
"$BIN" token mint --keys keys --server "127.0.0.1:$port" --client-id 9 --name Second --out second.kzc >/dev/null
"$PROBE" second.kzc 5000 >probe3.out || fail "second probe did not connect: $(cat probe3.out)"
grep -q '^connected slot' probe.out || fail "probe output: $(cat probe.out)"

# Signed by another backend, sealed to another server: must not connect.
"$BIN" token mint --keys rogue --server "127.0.0.1:$port" --client-id 8 --out rogue.kzc >/dev/null
if "$PROBE" rogue.kzc 1500 >probe2.out; then fail "a rogue token connected"; fi

kill -TERM "$SERVER_PID"
status=0
wait "$SERVER_PID" || status=$?
SERVER_PID=
[ "$status" -eq 0 ] || fail "server exited with $status after SIGTERM"
grep -q '"event":"joined".*"slot":[0-9]*,"entity":[0-9]*,"client":7,"name":"Probe"' server.log ||
    fail "join not logged"
grep -q '"event":"left".*"slot":[0-9]*,"entity":[0-9]*' server.log || fail "leave not logged"
grep -q '"event":"stopped"' server.log || fail "no clean stop"
echo "run_server: 1 passed, 0 failed"
