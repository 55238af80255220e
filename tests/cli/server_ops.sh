#!/usr/bin/env bash
#
# kizuna-server as a world host runs it, end to end:
#   - start-up refusals: a bad config file (line numbers, exit 2), missing
#     keys, a UDP port in use and an admin port in use (one line, exit 1,
#     nothing left running);
#   - a server from an INI file with a zone ACL, an audit log, the admin
#     endpoint and sd_notify: READY=1, /healthz, /readyz, /metrics checked
#     with promtool;
#   - SIGHUP: the zone's ACL and the trusted backend keys change live; a
#     walker held at the zone's boundary walks in afterwards, a token of a
#     newly trusted backend connects, and nobody is dropped;
#   - SIGTERM: STOPPING=1, clients told "server shutting down", exit 0
#     within the grace period, audit verify passes;
#   - the log: every line is JSON with time, level and event, and holds no
#     key or token bytes.
#
#   bash tests/cli/server_ops.sh kizuna-server kz-world-probe kz-connect-probe kz-notify-listen
set -euo pipefail
BIN=$1
PROBE=$2
RAW=$3
NOTIFY=$4
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzs-ops-XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

fail() {
    echo "FAIL: $*"
    for f in server.log walker.out notify.out; do
        [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
    done
    exit 1
}
checks=0
ok() { checks=$((checks + 1)); }

# wait_for FILE REGEX SECONDS: until a line matches, or fail.
wait_for() {
    local i
    for i in $(seq 1 $(($3 * 10))); do
        grep -q -e "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "no /$2/ in $1 within $3 s"
}

"$BIN" keygen --out keys >/dev/null
"$BIN" keygen --audit --out keys >/dev/null
"$BIN" keygen --out rogue >/dev/null

# ---- start-up refusals ---------------------------------------------------
cat >bad.ini <<'INI'
[network]
port = 0
[world]
tick_hz = 1000
colour = blue
INI
status=0
"$BIN" run --config bad.ini --keys keys >out 2>err || status=$?
[ "$status" -eq 2 ] || fail "bad config: exit $status, want 2"
grep -q "bad.ini:4: tick_hz: '1000' is not a whole number in 10..128" err || fail "bad value: $(cat err)"
grep -q "bad.ini:5: \[world\]: unknown key 'colour'" err || fail "unknown key: $(cat err)"
grep -q "nothing started" err || fail "no summary: $(cat err)"
grep -q '"event":"listening"' err && fail "a bad config started listening"
ok

status=0
"$BIN" config check bad.ini >out 2>err || status=$?
[ "$status" -eq 2 ] && grep -q "bad.ini:4:" err || fail "config check: exit $status: $(cat err)"
ok

status=0
"$BIN" run --keys nowhere --port 0 --admin off >out 2>err || status=$?
[ "$status" -eq 1 ] || fail "missing keys: exit $status, want 1"
[ "$(wc -l <err)" -eq 1 ] && grep -q "nowhere/server.key" err || fail "missing keys: $(cat err)"
ok

# A key file others could change is refused at start-up: one line, exit 1.
# (timeout: a server that wrongly accepts the keys would otherwise run on.)
cp -r keys loose
chmod 666 loose/backend.pub
status=0
timeout 10 "$BIN" run --keys loose --port 0 --admin off >out 2>err || status=$?
[ "$status" -eq 1 ] || fail "writable backend.pub: exit $status, want 1"
[ "$(wc -l <err)" -eq 1 ] &&
    grep -q "loose/backend.pub: refused: key file writable by everyone (mode 0666)" err ||
    fail "writable backend.pub: $(cat err)"
ok

# ---- the server ----------------------------------------------------------
write_config() { # write_config ALLOWED_CLIENTS TRUSTED_KEYS [MAX_SPEED]
    cat >world.ini <<INI
; A test world: one gated zone around (20, 0).
[network]
bind = 127.0.0.1
port = 0
[world]
spawn_radius = 1
[keys]
keys = keys
trusted_backend_keys = $2
[audit]
audit = audit.log
[admin]
admin = 127.0.0.1:0
[validation]
max_speed = ${3:-8}
[server]
log_level = debug
shutdown_grace = 5

[zone.gate]
shape = box
center = 20, 0, 0
half = 3, 5, 3
clients = $1
INI
}
write_config 999 keys/backend.pub
"$BIN" config check world.ini >effective.ini || fail "config check of a good file"
grep -q "^clients = 999" effective.ini || fail "effective config lacks the zone"
ok

"$NOTIFY" "$WORK/notify.sock" 60 >notify.out &
PIDS+=($!)
sleep 0.2
NOTIFY_SOCKET="$WORK/notify.sock" "$BIN" run --config world.ini 2>server.log &
SERVER=$!
PIDS+=($SERVER)
wait_for server.log '"event":"listening"' 10
udp=$(sed -n 's/.*"event":"listening".*"udp_port":\([0-9]*\).*/\1/p' server.log)
admin=$(sed -n 's/.*"event":"listening".*"admin_port":\([0-9]*\).*/\1/p' server.log)
[ -n "$udp" ] && [ -n "$admin" ] || fail "ports not logged"
wait_for notify.out '^READY=1$' 5
ok

# Port in use (UDP, then admin TCP): one line, exit 1.
status=0
"$BIN" run --keys keys --bind 127.0.0.1 --port "$udp" --admin off >out 2>err || status=$?
[ "$status" -eq 1 ] && [ "$(wc -l <err)" -eq 1 ] || fail "UDP port in use: exit $status: $(cat err)"
grep -q "cannot listen on UDP 127.0.0.1:$udp: Address already in use" err || fail "$(cat err)"
status=0
"$BIN" run --keys keys --bind 127.0.0.1 --port 0 --admin "127.0.0.1:$admin" >out 2>err || status=$?
[ "$status" -eq 1 ] && [ "$(wc -l <err)" -eq 1 ] || fail "admin port in use: exit $status: $(cat err)"
grep -q "127.0.0.1:$admin" err && grep -qi "in use" err || fail "admin in use: $(cat err)"
# insecure_key_permissions = warn: the same keys load with a warning, and
# start-up goes on to the next problem (the UDP port in use).
status=0
"$BIN" run --keys loose --insecure-key-permissions warn --bind 127.0.0.1 --port "$udp" \
    --admin off >out 2>err || status=$?
[ "$status" -eq 1 ] && grep -q "loose/backend.pub: warning: key file writable by everyone" err &&
    grep -q "cannot listen on UDP" err || fail "warn: exit $status: $(cat err)"
ok

# Admin endpoints.
base="http://127.0.0.1:$admin"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")" = 200 ] || fail "/healthz"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] || fail "/readyz"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/nope")" = 404 ] || fail "/nope"
curl -s "$base/metrics" >metrics.txt
grep -q '^kizuna_ticks_total [1-9]' metrics.txt || fail "metrics: no ticks"
if command -v promtool >/dev/null; then
    promtool check metrics <metrics.txt || fail "promtool check metrics"
elif [ "${CI:-}" = true ]; then
    fail "promtool is missing (Debian package prometheus)"
else
    echo "server_ops: promtool not installed, metrics format not checked"
fi
ok

# A walker (client 7) heads for the zone's center; the ACL admits only 999.
"$BIN" token mint --keys keys --server "127.0.0.1:$udp" --client-id 7 --name Walker \
    --out walker.kzc >/dev/null
"$PROBE" walker.kzc --walk-to 20,0 --seconds 60 >walker.out &
WALKER=$!
PIDS+=($WALKER)
wait_for walker.out '^connected' 10
sleep 9
grep -q '^reached' walker.out && fail "the walker entered a zone its ACL refuses"
x=$(grep '^pos' walker.out | tail -n 1 | sed 's/pos x=\([-0-9.]*\).*/\1/')
awk -v x="$x" 'BEGIN { exit !(x > 15 && x < 17.2) }' || fail "walker not held at the boundary (x=$x)"
ok

# A token of the rogue backend (sealed to this server) is refused while
# that backend is not trusted.
cp keys/server.pub rogue/server.pub
# Its display name tries to add a field to the JSON log.
"$BIN" token mint --keys rogue --server "127.0.0.1:$udp" --client-id 8 --name 'Eve" role="admin' \
    --out rogue.kzc >/dev/null
"$RAW" rogue.kzc 1500 >rogue1.out && fail "an untrusted backend's token connected"
ok

# SIGHUP: the ACL now admits 7, and the rogue backend is trusted too.
write_config "7, 999" "keys/backend.pub, rogue/backend.pub" 7
kill -HUP "$SERVER"
wait_for server.log '"event":"reloaded".*"zones":1,"backend_keys":2' 5
wait_for walker.out '^reached' 10
"$RAW" rogue.kzc 5000 >rogue2.out || fail "the newly trusted backend's token was refused"
grep -q '"event":"reload_ignored".*"setting":"max_speed"' server.log ||
    fail "a changed restart-only setting was not named"
wait_for server.log '"client":8,"name":"Eve\\" role=\\"admin"' 5
grep '"client":8' server.log | grep -q '"role"' && fail "a display name added a field to the log"
grep -q '^disconnected' walker.out && fail "the reload dropped the walker"
ok

# A bad file on SIGHUP changes nothing, and its problems are JSON lines too
# (the key loader's included: the jq check below sees every line).
write_config "7, 999" "keys/backend.pub, rogue/nope.pub" 7
kill -HUP "$SERVER"
wait_for server.log '"event":"config_error".*rogue/nope.pub: cannot open' 5
wait_for server.log '"event":"reload_failed"' 5
echo "tick_hz = fast" >>world.ini
kill -HUP "$SERVER"
wait_for server.log '"event":"config_error".*tick_hz' 5
[ "$(grep -c '"event":"reload_failed"' server.log)" -eq 2 ] || fail "a bad reload was applied"
kill -0 "$SERVER" || fail "a bad reload stopped the server"
"$BIN" token mint --keys rogue --server "127.0.0.1:$udp" --client-id 9 --out rogue9.kzc >/dev/null
"$RAW" rogue9.kzc 5000 >rogue3.out || fail "a failed reload dropped a trusted key"
ok

# The attack the key-file checks stop: backend.pub, left writable by
# others, is overwritten with an unknown backend's key, the config is made
# to trust only it, and the server gets SIGHUP. The reload is refused (a
# JSON line names the file and the problem) and the keys stay as they were:
# the intruder's admin token is refused, a trusted backend's connects.
"$BIN" keygen --out evil >/dev/null
cp keys/server.pub evil/server.pub
"$BIN" token mint --keys evil --server "127.0.0.1:$udp" --client-id 10 \
    --roles admin,moderator --out evil.kzc >/dev/null
cp keys/backend.pub backend.pub.orig
chmod 666 keys/backend.pub
cat evil/backend.pub >keys/backend.pub
write_config "7, 999" "keys/backend.pub" 7
kill -HUP "$SERVER"
wait_for server.log \
    '"event":"config_error".*keys/backend.pub: refused: key file writable by everyone (mode 0666)' 5
for _ in $(seq 1 50); do
    [ "$(grep -c '"event":"reload_failed"' server.log)" -ge 3 ] && break
    sleep 0.1
done
[ "$(grep -c '"event":"reload_failed"' server.log)" -eq 3 ] &&
    [ "$(grep -c '"event":"reloaded"' server.log)" -eq 1 ] ||
    fail "a reload with a backend.pub others may write was applied"
"$RAW" evil.kzc 1500 >evil.out && fail "a token of the planted backend.pub connected"
"$BIN" token mint --keys rogue --server "127.0.0.1:$udp" --client-id 11 --out rogue11.kzc >/dev/null
"$RAW" rogue11.kzc 5000 >rogue4.out || fail "a refused reload dropped a trusted key"
cp backend.pub.orig keys/backend.pub
chmod 644 keys/backend.pub
ok

# SIGTERM: drain, tell, checkpoint, exit 0 within the grace period.
# Figures are published four times a second: wait for the rogue probe's
# leaving to show.
counted=0
for _ in $(seq 1 30); do
    curl -s "$base/metrics" | grep -q '^kizuna_clients_connected 1$' && { counted=1; break; }
    sleep 0.1
done
[ $counted -eq 1 ] || fail "walker not counted"
t0=$(date +%s)
kill -TERM "$SERVER"
status=0
wait "$SERVER" || status=$?
t1=$(date +%s)
[ "$status" -eq 0 ] || fail "exit $status after SIGTERM"
[ $((t1 - t0)) -le 8 ] || fail "took $((t1 - t0)) s to stop (grace 5)"
wait_for walker.out '^disconnected reason=3 text="server shutting down"' 5
wait_for notify.out '^STOPPING=1$' 2
grep -q '"event":"draining"' server.log && grep -q '"event":"stopped","module":"run","exit":0' server.log ||
    fail "drain not logged"
"$BIN" audit verify audit.log --pubkey keys/audit.pub >verify.out || fail "audit verify: $(cat verify.out)"
ok

# The log: JSON lines only, no secrets.
if command -v jq >/dev/null; then
    jq -e 'has("time") and has("level") and has("event")' server.log >/dev/null ||
        fail "a log line is not JSON with time, level and event"
elif [ "${CI:-}" = true ]; then
    fail "jq is missing"
fi
for f in keys/*.key keys/*.pub rogue/*.key; do
    hex=$(sed -n 2p "$f")
    grep -q "$hex" server.log && fail "the log holds the key of $f"
    grep -q "${hex:0:16}" server.log && fail "the log holds part of the key of $f"
done
tok=$(od -An -tx1 -v walker.kzc | tr -d ' \n' | cut -c 13-60)
grep -q "$tok" server.log && fail "the log holds token bytes"
ok

echo "server_ops: $checks passed, 0 failed"
