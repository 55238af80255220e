#!/usr/bin/env bash
#
# A drain does not wait for clients that never arrived: a client completes
# the gate handshake and never connects (its slot is granted, pending),
# then the server gets SIGTERM with a long grace period. The server must
# stop because nobody is left, not because the grace ran out: the log has
# "stopped" with exit 0 and no "drain_cut".
#
#   bash tests/cli/drain_pending.sh path/to/kizuna-server path/to/kz-gate-probe
set -euo pipefail
BIN=$1
PROBE=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzs-drain-XXXXXX")
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

fail() { echo "FAIL: $*"; echo "--- server log"; cat server.log 2>/dev/null || true; exit 1; }

"$BIN" keygen --out keys >/dev/null
"$BIN" run --keys keys --port 0 --bind 127.0.0.1 --admin off --shutdown-grace 60 \
    --log-level info >server.log 2>&1 &
SERVER_PID=$!
port=
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*"event":"listening".*"udp_port":\([0-9]*\).*/\1/p' server.log)
    [ -n "$port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited before listening"
    sleep 0.1
done
[ -n "$port" ] || fail "no 'listening' line within 10 s"

"$BIN" token mint --keys keys --server "127.0.0.1:$port" --client-id 5 --out ghost.kzc >/dev/null
"$PROBE" ghost.kzc "127.0.0.1:$port" >probe.out || fail "handshake: $(cat probe.out)"
grep -q '^accepted slot ' probe.out || fail "probe: $(cat probe.out)"

kill -TERM "$SERVER_PID"
# Bounded wait far below the 60 s grace; the verdict is read from the log.
for _ in $(seq 1 200); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$SERVER_PID" 2>/dev/null && fail "still draining 20 s after SIGTERM with nobody connected"
status=0
wait "$SERVER_PID" || status=$?
SERVER_PID=
[ "$status" -eq 0 ] || fail "exit $status"
grep -q '"event":"drain_cut"' server.log && fail "the drain was cut by the grace period"
grep -q '"event":"stopped","module":"run","exit":0' server.log || fail "no clean stop logged"
echo "drain_pending: ok"
