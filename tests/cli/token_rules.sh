#!/usr/bin/env bash
#
# The server's own addresses and the token rules, end to end:
#   - kizuna-server run with public_address refuses a token that names only
#     an address it does not serve (even one it can be reached at), and
#     takes one that names a served address;
#   - with bind 0.0.0.0 and no public_address it serves its interfaces'
#     addresses (loopback among them) and says so in token_addresses;
#   - a public_address that does not parse stops the start (exit 2);
#   - token show --server checks the addresses as such a server would;
#   - token mint refuses look-alike names (naming the character) and
#     inconsistent identity claims.
#
#   bash tests/cli/token_rules.sh path/to/kizuna-server path/to/kz-connect-probe
set -euo pipefail
BIN=$1
PROBE=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzs-rules-XXXXXX")
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
CHECKS=0

fail() { echo "FAIL: $*"; echo "--- server log"; cat server.log 2>/dev/null || true; exit 1; }
ok() { CHECKS=$((CHECKS + 1)); }

# start ARGS...: runs the server in the background, sets SERVER_PID and port.
start() {
    "$BIN" run --keys keys --port 0 --admin off --log-level info "$@" >server.log 2>&1 &
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

stop() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || fail "server did not stop cleanly"
    SERVER_PID=
}

addresses() { sed -n 's/.*"event":"token_addresses".*"addresses":"\([^"]*\)".*/\1/p' server.log; }

"$BIN" keygen --out keys >/dev/null

# ---- public_address ---------------------------------------------------------
start --bind 127.0.0.1 --public-address 192.0.2.10:40000
[ "$(addresses)" = "192.0.2.10:40000" ] || fail "token_addresses: '$(addresses)'"
ok
# Reachable at 127.0.0.1:port, but the token names no address it serves.
"$BIN" token mint --keys keys --server "127.0.0.1:$port" --client-id 7 --out other.kzc >/dev/null
if "$PROBE" other.kzc 1500 >probe1.out; then fail "a token for another address connected"; fi
ok
# The same server named by its public address (the probe sends to the
# token's first IPv4 address, 127.0.0.1:port).
"$BIN" token mint --keys keys --server "127.0.0.1:$port" --server 192.0.2.10:40000 \
    --client-id 8 --out mine.kzc >/dev/null
"$PROBE" mine.kzc 5000 >probe2.out || fail "a token for the public address did not connect"
ok
stop

# ---- bind 0.0.0.0 without public_address: the interfaces' addresses --------
start
case " $(addresses) " in
    *" 127.0.0.1:* "*) ;;
    *) fail "bind 0.0.0.0 port 0: token_addresses '$(addresses)' lacks 127.0.0.1:*" ;;
esac
ok
"$BIN" token mint --keys keys --server "127.0.0.1:$port" --client-id 9 --out lo.kzc >/dev/null
"$PROBE" lo.kzc 5000 >probe3.out || fail "a loopback token did not connect to 0.0.0.0"
ok
stop

# ---- a public_address that does not parse stops the start ------------------
for bad in "192.0.2.1" "192.0.2.1:0" "192.0.2.1:5," "host.example:5" " , "; do
    status=0
    "$BIN" run --keys keys --port 0 --admin off --public-address "$bad" >out 2>err || status=$?
    [ "$status" -eq 2 ] || fail "public_address '$bad': exit $status"
    grep -q "public-address" err || fail "public_address '$bad': $(cat err)"
    ok
done

# ---- token show --server ------------------------------------------------------
"$BIN" token mint --keys keys --server 192.0.2.10:40000 --client-id 10 --out show.kzc >/dev/null
"$BIN" token show show.kzc --keys keys --server 192.0.2.10:40000 | grep -q "^verdict: *valid$" ||
    fail "token show --server with the token's address"
ok
status=0
"$BIN" token show show.kzc --keys keys --server 192.0.2.10:40001 >out 2>err || status=$?
[ "$status" -eq 1 ] && grep -q "^verdict: *wrong_server$" out || fail "token show, another port"
ok

# ---- token mint: names and claims -------------------------------------------
mint() { "$BIN" token mint --keys keys --server 192.0.2.10:40000 --out x.kzc "$@" >out 2>err; }
for name in $'Aiko\u202eoki' $'Ai\u200bko' $'Aiko\u2067' $'\ufeffAiko' ' Aiko' 'Aiko  Aoki'; do
    status=0
    mint --client-id 11 --name "$name" || status=$?
    [ "$status" -eq 2 ] && grep -q "not a display name" err || fail "name '$name' accepted"
    ok
done
status=0
mint --client-id 11 --name $'Aiko\u202eoki' || status=$?
grep -q "U+202E" err || fail "the refusal does not name the character: $(cat err)"
ok
mint --client-id 11 --name $'Aiko \u7d46' || fail "a plain name refused: $(cat err)"
ok
status=0
mint --client-id 11 --verified oidc:example.com --level none || status=$?
[ "$status" -eq 2 ] && grep -q "needs --level basic or strong" err || fail "method without level"
ok
status=0
mint --client-id 11 --level strong || status=$?
[ "$status" -eq 2 ] && grep -q "needs --verified METHOD" err || fail "level without method"
ok
status=0
mint --client-id 11 --actor agent --acting-for 11 || status=$?
[ "$status" -eq 1 ] && grep -q "cannot act for itself" err || fail "an agent acting for itself"
ok
echo "token_rules: $CHECKS passed, 0 failed"
