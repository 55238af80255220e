#!/usr/bin/env bash
#
# The fleet directory on NATS JetStream, end to end: a nats-server of the
# test's own (a free loopback port, a temporary JetStream directory),
# `kizuna-server run --nats URL --world w1` registers and `fleet list`
# shows its entry with the right fields; hostile values put straight into
# the bucket (oversized, not JSON, wrong types, naming another world, a
# malformed key) are skipped and counted, never shown; another world's
# entry shows only without --world; a kill -9 takes the entry away within
# 3 s; a SIGTERM deletes it at once; credentials come from a file and
# never from the URL; a dead URL fails cleanly; `token mint --world`
# names the world's members with room, the most free first.
#
#   bash tests/cli/fleet_dir.sh path/to/kizuna-server path/to/kz-fleet-put
#
# Exit 77 (skipped) when nats-server is not installed, unless CI=true.
set -euo pipefail
BIN=$1
PUT=$2
if ! command -v nats-server >/dev/null; then
    [ "${CI:-}" = true ] && { echo "FAIL: nats-server is not installed (.ci/setup installs it)"; exit 1; }
    echo "SKIP: nats-server is not installed"
    exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzs-fleet-XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
passed=0
ok() { passed=$((passed + 1)); }
fail() {
    echo "FAIL: $*"
    for f in nats.log server*.log list.out list.err mint.out mint.err; do
        [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }
    done
    exit 1
}

# Starts a nats-server with JetStream on a free loopback port (-p -1: the
# server picks) and sets NATS_PID and NATS_URL. Extra arguments follow.
start_nats() {
    local log=$1; shift
    nats-server -js -a 127.0.0.1 -p -1 -sd "$WORK/js-$log" "$@" >"$log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    local port=
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
        [ -n "$port" ] && grep -q "Server is ready" "$log" && break
        kill -0 "$NATS_PID" 2>/dev/null || fail "nats-server exited: $(cat "$log")"
        sleep 0.1
    done
    [ -n "$port" ] || fail "nats-server not ready within 10 s"
    NATS_URL="nats://127.0.0.1:$port"
}

# Starts `run` with the directory; sets SERVER_PID and UDP_PORT.
start_server() {
    local log=$1; shift
    "$BIN" run --keys keys --port 0 --bind 127.0.0.1 --admin off "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    UDP_PORT=
    for _ in $(seq 1 100); do
        UDP_PORT=$(sed -n 's/.*"event":"listening".*"udp_port":\([0-9]*\).*/\1/p' "$log")
        [ -n "$UDP_PORT" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited before listening"
        sleep 0.1
    done
    [ -n "$UDP_PORT" ] || fail "no 'listening' line within 10 s"
}

# Polls `fleet list ARGS` every 0.1 s for up to $1 tenths of a second
# until its output does (want=1) or does not (want=0) match $2.
poll_list() {
    local tenths=$1 pattern=$2 want=$3; shift 3
    for _ in $(seq 1 "$tenths"); do
        "$BIN" fleet list --nats "$NATS_URL" "$@" >list.out 2>list.err || fail "fleet list failed"
        if grep -Eq "$pattern" list.out; then [ "$want" = 1 ] && return 0
        else [ "$want" = 0 ] && return 0; fi
        sleep 0.1
    done
    return 1
}

"$BIN" keygen --out keys >/dev/null
start_nats nats.log
VERSION=$("$BIN" --version | awk '{print $2}')

# 1. A member registers: its entry is listed within 2 s, with every field.
start_server server1.log --nats "$NATS_URL" --world w1
poll_list 20 '^w1 single [0-9a-f]{16} ' 1 --world w1 || fail "no entry for w1 within 2 s"
[ "$(wc -l <list.out)" -eq 1 ] || fail "one member, $(wc -l <list.out) entries"
read -r world role id address load version <list.out
[ "$world $role" = "w1 single" ] || fail "world and role: $world $role"
[ "$address" = "127.0.0.1:$UDP_PORT" ] || fail "address $address, want 127.0.0.1:$UDP_PORT"
[ "$load" = "0/1024" ] || fail "load $load, want 0/1024"
[ "$version" = "$VERSION" ] || fail "version $version, want $VERSION"
grep -q "\"event\":\"fleet_joined\".*\"key\":\"w1.single.$id\"" server1.log || fail "no fleet_joined line"
"$BIN" fleet list --nats "$NATS_URL" --world w1 --json >json.out || fail "fleet list --json"
grep -q "{\"entries\":\[{\"world\":\"w1\",\"role\":\"single\",\"id\":\"$id\",\"address\":\"127.0.0.1:$UDP_PORT\",\"sessions\":0,\"max\":1024,\"version\":\"$VERSION\"}\]" json.out ||
    fail "json: $(cat json.out)"
# The heartbeat keeps it: still there after more than the time to live.
sleep 3
"$BIN" fleet list --nats "$NATS_URL" --world w1 >list.out || fail "fleet list"
grep -q "^w1 single $id " list.out || fail "a live member's entry expired: the heartbeat stopped"
ok

# 2. Hostile values straight into the bucket: skipped and counted.
good() { # world role id: a valid value
    printf '{"v":1,"world":"%s","role":"%s","id":"%s","address":"127.0.0.1:1","sessions":0,"max":1,"version":"x"}' "$1" "$2" "$3"
}
head -c 2000 /dev/zero | tr '\0' ' ' >oversize.val   # under the bucket's 4 KiB, over the reader's 1 KiB
good w1 edge aaaaaaaaaaaaaaa1 >>oversize.val
printf '{"v":1,"world":' >badjson.val
printf '{"v":1,"world":"w1","role":"edge","id":"aaaaaaaaaaaaaaa3","address":"127.0.0.1:1","sessions":"0","max":1,"version":"x"}' >badfield.val
good w2 edge aaaaaaaaaaaaaaa4 >mismatch.val
good w1 edge aaaaaaaaaaaaaaa5 >badkey.val
good w2 single bbbbbbbbbbbbbbb1 >otherworld.val
"$PUT" "$NATS_URL" w1.edge.aaaaaaaaaaaaaaa1 oversize.val w1.edge.aaaaaaaaaaaaaaa2 badjson.val \
    w1.edge.aaaaaaaaaaaaaaa3 badfield.val w1.edge.aaaaaaaaaaaaaaa4 mismatch.val \
    w1.edge.notanid badkey.val w2.single.bbbbbbbbbbbbbbb1 otherworld.val || fail "kz-fleet-put refused"
"$BIN" fleet list --nats "$NATS_URL" --world w1 >list.out 2>list.err || fail "fleet list with hostile entries"
[ "$(wc -l <list.out)" -eq 1 ] && grep -q "^w1 single $id " list.out || fail "hostile entries shown: $(cat list.out)"
grep -q 'skipped 5 entries (bad_key=1 oversize=1 bad_json=1 bad_field=1 mismatch=1)' list.err ||
    fail "skips not counted: $(cat list.err)"
"$BIN" fleet list --nats "$NATS_URL" --world w1 --json >json.out 2>/dev/null || fail "fleet list --json"
grep -q '"skipped":{"bad_key":1,"oversize":1,"bad_json":1,"bad_field":1,"mismatch":1,"truncated":0}' json.out ||
    fail "json skips: $(cat json.out)"
# Without --world: the other world's good entry too, the w1 skips the same.
"$BIN" fleet list --nats "$NATS_URL" >list.out 2>list.err || fail "fleet list (all worlds)"
grep -q '^w2 single bbbbbbbbbbbbbbb1 127.0.0.1:1 0/1 x$' list.out || fail "other world not listed: $(cat list.out)"
[ "$(wc -l <list.out)" -eq 2 ] || fail "all worlds: $(cat list.out)"
# Over the bucket's own limit: the bus refuses it.
head -c 8000 /dev/zero | tr '\0' ' ' >huge.val
if "$PUT" "$NATS_URL" w1.edge.aaaaaaaaaaaaaaa6 huge.val 2>put.err; then fail "the bucket stored 8000 bytes"; fi
ok

# 3. kill -9: the entry is gone within 3 s (polled every 0.1 s; 0.5 s of
#    margin for a loaded machine's scheduling).
kill -9 "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
poll_list 35 "$id" 0 --world w1 || fail "entry of a killed member still listed after 3.5 s"
ok

# 4. SIGTERM: the member deletes its entry as it starts to drain.
start_server server2.log --nats "$NATS_URL" --world w1 --shutdown-grace 0
poll_list 20 '^w1 single ' 1 --world w1 || fail "second member not listed"
read -r _ _ id2 _ <list.out
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || fail "server exited non-zero after SIGTERM"
"$BIN" fleet list --nats "$NATS_URL" --world w1 >list.out || fail "fleet list after SIGTERM"
grep -q "$id2" list.out && fail "a stopped member is still listed"
grep -q "\"event\":\"fleet_left\".*\"key\":\"w1.single.$id2\",\"deleted\":1" server2.log || fail "no fleet_left line"
ok

# 5. Settings: a user in the URL is refused; --nats without --world is
#    refused; the environment works like the flags.
if "$BIN" run --keys keys --port 0 --admin off --nats "nats://u:p@127.0.0.1:1" --world w1 2>bad.err; then
    fail "a URL with a password was accepted"; fi
grep -q 'no user or password in the URL' bad.err || fail "url refusal: $(cat bad.err)"
grep -q 'u:p' bad.err && fail "the refusal repeats the password"
if "$BIN" run --keys keys --port 0 --admin off --nats "$NATS_URL" 2>bad.err; then
    fail "--nats without --world was accepted"; fi
grep -q 'world: a fleet member needs a world name' bad.err || fail "world refusal: $(cat bad.err)"
KIZUNA_NATS=$NATS_URL "$BIN" fleet list --world w1 >/dev/null || fail "KIZUNA_NATS not used"
ok

# 6. Credentials from a file, against a nats-server that wants a user.
start_nats nats-auth.log --user fleetuser --pass s3cret-pw
AUTH_URL=$NATS_URL
printf 'fleetuser:s3cret-pw\n' >creds.txt
chmod 600 creds.txt
if "$BIN" fleet list --nats "$AUTH_URL" 2>auth.err; then fail "no credentials, yet listed"; fi
"$BIN" fleet list --nats "$AUTH_URL" --nats-credentials creds.txt || fail "credentials file refused"
start_server server3.log --nats "$AUTH_URL" --world w3 --nats-credentials creds.txt
NATS_URL=$AUTH_URL
poll_list 20 '^w3 single ' 1 --world w3 --nats-credentials creds.txt || fail "member with credentials not listed"
grep -q 's3cret-pw' server3.log && fail "the password reached the log"
chmod 644 creds.txt
if "$BIN" fleet list --nats "$AUTH_URL" --nats-credentials creds.txt 2>auth.err; then
    fail "a credentials file others can read was used"; fi
grep -q 'readable or writable by others (mode 0644)' auth.err || fail "mode refusal: $(cat auth.err)"
ok

# 7. A dead URL: a clear error and exit 1, for the list and for run.
kill "$NATS_PID"
wait "$NATS_PID" 2>/dev/null || true
status=0
"$BIN" fleet list --nats "nats://127.0.0.1:1" >list.out 2>list.err || status=$?
[ "$status" -eq 1 ] || fail "fleet list against a dead URL exited $status"
grep -q 'cannot reach NATS at nats://127.0.0.1:1' list.err || fail "dead URL message: $(cat list.err)"
status=0
"$BIN" run --keys keys --port 0 --bind 127.0.0.1 --admin off --nats "nats://127.0.0.1:1" --world w1 \
    >server4.log 2>&1 || status=$?
[ "$status" -eq 1 ] || fail "run against a dead URL exited $status"
grep -q 'run: fleet directory: cannot reach NATS' server4.log || fail "run's message: $(cat server4.log)"
ok

# 8. token mint --world W --nats URL: the token names the world's members
#    that take clients and have room, the most free first; an authority, a
#    full member and a bad entry are passed over and counted; a world
#    without room, a dead URL and --server with --world are refused, and
#    no file is left behind.
start_nats nats-mint.log
start_server server5.log --nats "$NATS_URL" --world w1
PORT_A=$UDP_PORT
poll_list 20 " 127\.0\.0\.1:$PORT_A " 1 --world w1 || fail "first w1 member not listed"
export KIZUNA_MAX_CLIENTS=2048   # more room: ranks first
start_server server6.log --nats "$NATS_URL" --world w1
unset KIZUNA_MAX_CLIENTS
PORT_B=$UDP_PORT
poll_list 20 " 127\.0\.0\.1:$PORT_B 0/2048 " 1 --world w1 || fail "second w1 member not listed"
read -r _ _ ID_B _ < <(grep " 127\.0\.0\.1:$PORT_B " list.out)
member() { # key-role id address sessions max
    printf '{"v":1,"world":"%s","role":"%s","id":"%s","address":"%s","sessions":%s,"max":%s,"version":"x"}' \
        "${1%%.*}" "$2" "$3" "$4" "$5" "$6"
}
member w1 authority cccccccccccccccc 127.0.0.1:1 0 1000000 >authority.val
member w1 edge ccccccccccccccc2 127.0.0.1:2 5 5 >full.val
member w5 edge ccccccccccccccc5 127.0.0.1:5 7 7 >full5.val
"$PUT" "$NATS_URL" w1.authority.cccccccccccccccc authority.val w1.edge.ccccccccccccccc2 full.val \
    w1.edge.ccccccccccccccc3 oversize.val w5.edge.ccccccccccccccc5 full5.val || fail "kz-fleet-put refused"
"$BIN" token mint --keys keys --world w1 --nats "$NATS_URL" --client-id 9 --out mint.kzc \
    >mint.out 2>mint.err || fail "token mint --world w1: $(cat mint.err)"
"$BIN" token show mint.kzc --keys keys >show.out || fail "minted token does not verify: $(cat show.out)"
grep -q "^addresses:   127\.0\.0\.1:$PORT_B 127\.0\.0\.1:$PORT_A$" show.out ||
    fail "token addresses: $(grep addresses show.out), want $PORT_B then $PORT_A"
grep -q "^picked rank=1 world=w1 role=single id=$ID_B address=127\.0\.0\.1:$PORT_B sessions=0 max=2048$" mint.out ||
    fail "picked lines: $(cat mint.out)"
grep -q "^picked rank=2 world=w1 role=single id=[0-9a-f]\{16\} address=127\.0\.0\.1:$PORT_A sessions=0 max=1024$" mint.out ||
    fail "picked lines: $(cat mint.out)"
[ "$(grep -c '^picked ' mint.out)" -eq 2 ] || fail "picked lines: $(cat mint.out)"
grep -q '^minted client_id=9 ' mint.out || fail "no minted line: $(cat mint.out)"
grep -q 'token mint: skipped 1 bad directory entry (oversize=1)' mint.err || fail "skips: $(cat mint.err)"
grep -q 'token mint: world w1: passed over authority=1 full=1$' mint.err || fail "passed over: $(cat mint.err)"
# No member with room, and no member at all: one line, exit 1, no file.
status=0
"$BIN" token mint --keys keys --world w5 --nats "$NATS_URL" --client-id 9 --out none.kzc \
    >mint.out 2>mint.err || status=$?
[ "$status" -eq 1 ] || fail "a world whose only member is full: exit $status"
[ "$(cat mint.err)" = "kizuna-server: token mint: refused: world w5 has no member with room for a client (full=1)" ] ||
    fail "full world: $(cat mint.err)"
status=0
"$BIN" token mint --keys keys --world w7 --nats "$NATS_URL" --client-id 9 --out none.kzc \
    >mint.out 2>mint.err || status=$?
[ "$status" -eq 1 ] || fail "a world without members: exit $status"
[ "$(cat mint.err)" = "kizuna-server: token mint: refused: world w7 has no member with room for a client (no member registered)" ] ||
    fail "empty world: $(cat mint.err)"
status=0
"$BIN" token mint --keys keys --world w1 --nats "nats://127.0.0.1:1" --client-id 9 --out none.kzc \
    >mint.out 2>mint.err || status=$?
[ "$status" -eq 1 ] || fail "mint against a dead URL: exit $status"
[ "$(wc -l <mint.err)" -eq 1 ] && grep -q 'token mint: cannot reach NATS at nats://127.0.0.1:1' mint.err ||
    fail "dead URL: $(cat mint.err)"
status=0
"$BIN" token mint --keys keys --world w1 --nats "$NATS_URL" --server 127.0.0.1:4000 --client-id 9 \
    --out none.kzc >mint.out 2>mint.err || status=$?
[ "$status" -eq 2 ] || fail "--server with --world: exit $status"
head -n 1 mint.err | grep -q 'token mint: give --server or --world with --nats, not both' ||
    fail "both: $(cat mint.err)"
[ -e none.kzc ] && fail "a refused mint left a file"
ok

echo "fleet_dir: $passed passed, 0 failed"
