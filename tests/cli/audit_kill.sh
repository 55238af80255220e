#!/usr/bin/env bash
#
# kizuna-server run --audit, end to end: a server writes the audit log
# while a client connects, is killed with SIGKILL, restarts on the same
# file, stops with SIGTERM; `audit verify` must print OK and exit 0. Then a
# flipped byte, a cut tail and the wrong key must each make it exit 1 and
# name the record.
#
#   bash tests/cli/audit_kill.sh path/to/kizuna-server path/to/kz-connect-probe
set -euo pipefail
BIN=$1
PROBE=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzs-audit-XXXXXX")
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

fail() { echo "FAIL: $*"; echo "--- server log"; cat server.log 2>/dev/null || true; exit 1; }

# Starts the server in the background; sets SERVER_PID and port.
start() {
    "$BIN" run --keys keys --port 0 --bind 127.0.0.1 --admin off --audit audit.log --log-level info \
        >server.log 2>&1 &
    SERVER_PID=$!
    port=
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*"event":"listening".*"udp_port":\([0-9]*\).*/\1/p' server.log)
        [ -n "$port" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited before listening"
        sleep 0.1
    done
    fail "no 'listening' line within 10 s"
}

"$BIN" keygen --out keys >/dev/null
"$BIN" keygen --out keys --audit >/dev/null
[ -f keys/audit.key ] && [ -f keys/audit.pub ] || fail "keygen --audit wrote no audit pair"
[ "$(stat -c %a keys/audit.key)" = 600 ] || fail "audit.key mode"
# A second keygen --audit refuses to replace the pair.
if "$BIN" keygen --out keys --audit 2>/dev/null; then fail "keygen --audit replaced keys"; fi
# The audit key is required once --audit is given.
"$BIN" keygen --out noaudit >/dev/null
if "$BIN" run --keys noaudit --port 0 --admin off --audit x.log >/dev/null 2>&1; then
    fail "run --audit started without audit.key"
fi

start
"$BIN" token mint --keys keys --server "127.0.0.1:$port" --client-id 7 --out c.kzc >/dev/null
"$PROBE" c.kzc 5000 >probe.out || fail "probe did not connect: $(cat probe.out)"
sleep 0.3
kill -9 "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=
[ -s audit.log ] || fail "no audit records before the kill"
# Killed: no final checkpoint, so strict verify refuses, --live accepts.
if "$BIN" audit verify audit.log --pubkey keys/audit.pub >v0.out 2>/dev/null; then
    fail "a log without a final checkpoint verified: $(cat v0.out)"
fi
grep -q 'truncated' v0.out || fail "crashed log not reported truncated: $(cat v0.out)"
"$BIN" audit verify audit.log --pubkey keys/audit.pub --live >/dev/null ||
    fail "crashed log does not verify with --live"

start
"$PROBE" c.kzc 5000 >probe2.out || true
kill -TERM "$SERVER_PID"
status=0
wait "$SERVER_PID" || status=$?
SERVER_PID=
[ "$status" -eq 0 ] || fail "server exited with $status after SIGTERM"
grep -q 'recovered after a crash' server.log || fail "restart did not log the recovery"

"$BIN" audit verify audit.log --pubkey keys/audit.pub >v1.out || fail "verify: $(cat v1.out)"
grep -q '^OK ' v1.out || fail "verify did not print OK: $(cat v1.out)"
"$BIN" audit show audit.log >show.out || fail "audit show failed"
[ "$(grep -c 'type=server-start' show.out)" -eq 2 ] || fail "two server starts expected"
grep -q 'type=recovered' show.out || fail "no recovered record"
grep -q 'type=server-stop' show.out || fail "no server stop record"

# One flipped byte in the middle: exit 1, and the record is named.
size=$(stat -c %s audit.log)
cp audit.log bad.log
off=$((size / 2))
orig=$(od -An -tu1 -j "$off" -N1 bad.log | tr -d ' ')
printf "$(printf '\\%03o' $(( (orig + 1) % 256 )))" |
    dd of=bad.log bs=1 seek="$off" conv=notrunc status=none
status=0
"$BIN" audit verify bad.log --pubkey keys/audit.pub >v2.out 2>/dev/null || status=$?
[ "$status" -eq 1 ] || fail "flipped byte: exit $status, want 1"
grep -q '^FAIL bad.log: record [0-9]* (offset [0-9]*.*: altered' v2.out ||
    fail "flipped byte not named: $(cat v2.out)"

# A cut tail and the wrong key.
head -c $((size - 5)) audit.log >cut.log
status=0
"$BIN" audit verify cut.log --pubkey keys/audit.pub >v3.out 2>/dev/null || status=$?
[ "$status" -eq 1 ] && grep -q 'truncated' v3.out || fail "cut tail: $(cat v3.out)"
"$BIN" keygen --out other --audit >/dev/null
status=0
"$BIN" audit verify audit.log --pubkey other/audit.pub >v4.out 2>/dev/null || status=$?
[ "$status" -eq 1 ] && grep -q 'bad checkpoint signature' v4.out || fail "wrong key: $(cat v4.out)"
# Usage errors exit 2.
status=0
"$BIN" audit verify audit.log >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "missing --pubkey: exit $status, want 2"
echo "audit_kill: 1 passed, 0 failed"
