#!/usr/bin/env bash
#
# The per-role NATS users of docs/SCALING.md section 4, against a real
# nats-server (a free loopback port, a temporary JetStream directory) run
# with tests/cli/nats-perms.conf.in: kz-bus-perms connects as each user
# and tries what its role needs and what it must not do; every line of its
# output is compared with the table below it. Then the same users over TLS
# with client certificates from a throwaway CA (openssl): the right
# certificate connects, a missing or foreign one, an untrusted server or a
# wrong server name is refused, and the permissions still apply.
#
#   bash tests/cli/bus_perms.sh path/to/kz-bus-perms path/to/nats-perms.conf.in
#
# Exit 77 (skipped) when nats-server is not installed, unless CI=true;
# without openssl the TLS part alone is skipped (a failure when CI=true).
set -euo pipefail
PERMS=$1
CONF_IN=$2
if ! command -v nats-server >/dev/null; then
    [ "${CI:-}" = true ] && { echo "FAIL: nats-server is not installed (.ci/setup installs it)"; exit 1; }
    echo "SKIP: nats-server is not installed"
    exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzs-perms-XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
passed=0
ok() { passed=$((passed + 1)); }
fail() {
    echo "FAIL: $*"
    for f in nats*.log probe.err wait.out; do
        [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }
    done
    exit 1
}

# Starts nats-server with config $2 on a free loopback port (-p -1: the
# server picks); sets PORT. Its log is $1.
start_nats() {
    local log=$1 conf=$2
    nats-server -c "$conf" -a 127.0.0.1 -p -1 >"$log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    PORT=
    for _ in $(seq 1 100); do
        PORT=$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
        [ -n "$PORT" ] && grep -q "Server is ready" "$log" && break
        kill -0 "$pid" 2>/dev/null || fail "nats-server exited: $(cat "$log")"
        sleep 0.1
    done
    [ -n "$PORT" ] || fail "nats-server not ready within 10 s"
}

# Each user's credentials file, as a Kizuna process reads its own.
for u in plaza-authority plaza-edge-1 plaza-edge-2 minter-direct; do
    printf '%s:pw-%s\n' "$u" "$u" >"$u.cred"
done
printf 'minter:pw-minter-9d2c\n' >minter.cred   # bcrypt-hashed in the config
printf 'plaza-edge-1:pw-plaza-edge-2\n' >wrong.cred
printf 'nobody:pw-nobody\n' >nobody.cred
chmod 600 ./*.cred
inbox() { printf '_INBOX_%s' "${1//-/_}"; }
peer() { printf -- '--peer\n%s.cred\n--peer-inbox\n%s\n' "$1" "$(inbox "$1")"; }

# check USER [OPTION]... with lines `ACTION VERDICT...` on stdin: runs
# kz-bus-perms as USER (its own reply prefix) with those actions against
# $URL and compares its whole output with `connect ok` and those lines.
check() {
    local user=$1 want
    shift
    want=$(cat)
    local actions=()
    while read -r action _; do actions+=("$action"); done <<<"$want"
    "$PERMS" --inbox "$(inbox "$user")" "$@" "$URL" "$user.cred" "${actions[@]}" \
        >probe.out 2>probe.err || true
    printf 'connect ok\n%s\n' "$want" >probe.want
    diff -u probe.want probe.out >probe.diff || fail "$user:
$(cat probe.diff)"
}

# refused WHAT [OPTION]... CREDENTIALS: the connection is refused.
refused() {
    local what=$1
    shift
    local status=0
    "$PERMS" "$@" pub:kz.plaza.tick >probe.out 2>probe.err || status=$?
    [ "$status" -eq 1 ] && head -n 1 probe.out | grep -q '^connect refused ' ||
        fail "$what: not refused (exit $status): $(cat probe.out)"
}

sed "s|@STORE_DIR@|$WORK/js|" "$CONF_IN" >perms.conf
start_nats nats.log perms.conf
URL="nats://127.0.0.1:$PORT"

# 1. Only known users with their own password connect; no password in output.
refused "a wrong password" "$URL" wrong.cred
grep -q 'Authorization Violation' probe.out || fail "wrong password: $(cat probe.out)"
grep -q 'pw-plaza' probe.out probe.err && fail "a password was printed"
refused "an unknown user" "$URL" nobody.cred
ok

# 2. The authority: publishes the tick and every edge's down subject, reads
#    every edge's up subject (a message from edge 2 arrives), creates the
#    directory's bucket and writes its own entry; the lease bucket and its
#    world's key. Nothing of the edges' roles, another world, or a stream's
#    deletion.
mapfile -t PEER_EDGE2 < <(peer plaza-edge-2)
check plaza-authority "${PEER_EDGE2[@]}" <<'EOF'
kv-create ok
kv-status ok
kv-put:plaza.authority.aaaaaaaaaaaaaaa1 ok
kv-del:plaza.authority.aaaaaaaaaaaaaaa1 ok
kv-put:plaza.authority.aaaaaaaaaaaaaaa1 ok
pub:kz.plaza.tick ok
pub:kz.plaza.edge.1.down ok
pub:kz.plaza.edge.2.down ok
recv:kz.plaza.edge.*.up=kz.plaza.edge.2.up ok
pub:kz.plaza.edge.1.up denied kz.plaza.edge.1.up
sub:kz.plaza.tick denied kz.plaza.tick
sub:kz.plaza.edge.1.down denied kz.plaza.edge.1.down
sub:_INBOX_plaza_edge_1.> denied _INBOX_plaza_edge_1.>
kv-put:plaza.edge.aaaaaaaaaaaaaaa2 denied $KV.kizuna_fleet.plaza.edge.aaaaaaaaaaaaaaa2
kv-get:plaza.authority.aaaaaaaaaaaaaaa1 denied $JS.API.DIRECT.GET.KV_kizuna_fleet.$KV.kizuna_fleet.plaza.authority.aaaaaaaaaaaaaaa1
stream-delete:KV_kizuna_fleet denied $JS.API.STREAM.DELETE.KV_kizuna_fleet
stream-purge:KV_kizuna_fleet denied $JS.API.STREAM.PURGE.KV_kizuna_fleet
pub:kz.other.tick denied kz.other.tick
sub:kz.other.edge.*.up denied kz.other.edge.*.up
kv-put:other.authority.aaaaaaaaaaaaaaa1 denied $KV.kizuna_fleet.other.authority.aaaaaaaaaaaaaaa1
EOF
check plaza-authority --bucket kizuna_lease <<'EOF'
kv-create ok
kv-claim:plaza ok
kv-put:plaza ok
kv-get:plaza ok kz-bus-perms
kv-put:other denied $KV.kizuna_lease.other
stream-delete:KV_kizuna_lease denied $JS.API.STREAM.DELETE.KV_kizuna_lease
EOF
ok

# 3. Edge 1: publishes its own up subject only, reads the tick and its own
#    down subject (the authority's messages arrive), writes edge entries of
#    its world. Not another edge's subjects, not the authority's, not
#    another member's replies, not the authority's entry, the lease, the
#    bucket's creation or deletion, nor anything of another world.
mapfile -t PEER_AUTH < <(peer plaza-authority)
check plaza-edge-1 "${PEER_AUTH[@]}" <<'EOF'
kv-status ok
kv-put:plaza.edge.00000000000000e1 ok
kv-del:plaza.edge.00000000000000e1 ok
kv-put:plaza.edge.00000000000000e1 ok
pub:kz.plaza.edge.1.up ok
recv:kz.plaza.tick=kz.plaza.tick ok
recv:kz.plaza.edge.1.down=kz.plaza.edge.1.down ok
pub:kz.plaza.edge.2.up denied kz.plaza.edge.2.up
pub:kz.plaza.tick denied kz.plaza.tick
pub:kz.plaza.edge.1.down denied kz.plaza.edge.1.down
sub:kz.plaza.edge.2.down denied kz.plaza.edge.2.down
sub:kz.plaza.edge.*.up denied kz.plaza.edge.*.up
sub:kz.plaza.edge.1.up denied kz.plaza.edge.1.up
sub:kz.> denied kz.>
sub:_INBOX_plaza_authority.> denied _INBOX_plaza_authority.>
sub:_INBOX.> denied _INBOX.>
kv-put:plaza.authority.x denied $KV.kizuna_fleet.plaza.authority.x
kv-get:plaza.edge.00000000000000e1 denied $JS.API.DIRECT.GET.KV_kizuna_fleet.$KV.kizuna_fleet.plaza.edge.00000000000000e1
kv-create denied $JS.API.STREAM.CREATE.KV_kizuna_fleet
stream-delete:KV_kizuna_fleet denied $JS.API.STREAM.DELETE.KV_kizuna_fleet
stream-purge:KV_kizuna_fleet denied $JS.API.STREAM.PURGE.KV_kizuna_fleet
pub:kz.other.edge.1.up denied kz.other.edge.1.up
sub:kz.other.tick denied kz.other.tick
kv-put:other.edge.00000000000000e1 denied $KV.kizuna_fleet.other.edge.00000000000000e1
EOF
check plaza-edge-1 --bucket kizuna_lease <<'EOF'
kv-put:plaza denied $JS.API.STREAM.INFO.KV_kizuna_lease
EOF
# Edge 2 likewise, with its own number; the authority's message to it arrives.
check plaza-edge-2 "${PEER_AUTH[@]}" <<'EOF'
kv-put:plaza.edge.00000000000000e2 ok
pub:kz.plaza.edge.2.up ok
recv:kz.plaza.edge.2.down=kz.plaza.edge.2.down ok
pub:kz.plaza.edge.1.up denied kz.plaza.edge.1.up
sub:kz.plaza.edge.1.down denied kz.plaza.edge.1.down
EOF
# Without its own reply prefix a member cannot use JetStream at all: the
# default _INBOX. is nobody's (the server program must set the prefix).
"$PERMS" "$URL" plaza-edge-1.cred kv-put:plaza.edge.00000000000000e1 >probe.out 2>probe.err || true
grep -q '^kv-put:plaza.edge.00000000000000e1 denied _INBOX\.[A-Za-z0-9]*\.\*$' probe.out ||
    fail "default inbox: $(cat probe.out)"
ok

# 4. The minter (bcrypt password) reads and lists the directory, as
#    `fleet list` and `token mint --world` do, and writes nothing, publishes
#    no kz.* subject, subscribes to none, deletes nothing.
check minter <<'EOF'
kv-status ok
kv-list ok 3 plaza.authority.aaaaaaaaaaaaaaa1 plaza.edge.00000000000000e1 plaza.edge.00000000000000e2
kv-list:plaza.edge.* ok 2 plaza.edge.00000000000000e1 plaza.edge.00000000000000e2
kv-get:plaza.edge.00000000000000e1 ok kz-bus-perms
kv-get:plaza.edge.00000000000000ff ok absent
kv-put:plaza.edge.00000000000000e9 denied $KV.kizuna_fleet.plaza.edge.00000000000000e9
kv-del:plaza.edge.00000000000000e1 denied $KV.kizuna_fleet.plaza.edge.00000000000000e1
kv-create denied $JS.API.STREAM.CREATE.KV_kizuna_fleet
stream-delete:KV_kizuna_fleet denied $JS.API.STREAM.DELETE.KV_kizuna_fleet
pub:kz.plaza.tick denied kz.plaza.tick
pub:kz.plaza.edge.1.up denied kz.plaza.edge.1.up
pub:kz.plaza.edge.1.down denied kz.plaza.edge.1.down
sub:kz.> denied kz.>
EOF
# A directory large enough for JetStream's flow control (3 MB): the list
# needs the minter's $JS.FC.KV_kizuna_fleet.> permission and gets it all.
check plaza-authority <<'EOF'
kv-fill:plaza.authority:3000 ok 3000
EOF
check minter <<'EOF'
kv-list ok 3003 keys
EOF
# The direct-get reader: the same keys without a consumer; it cannot
# create one, nor write.
check minter-direct <<'EOF'
kv-scan ok 3003 keys
kv-scan:plaza.edge.* ok 2 plaza.edge.00000000000000e1 plaza.edge.00000000000000e2
kv-get:plaza.edge.00000000000000e2 ok kz-bus-perms
consumer:kz.plaza.tick denied $JS.API.CONSUMER.CREATE.KV_kizuna_fleet
kv-list denied $JS.API.STREAM.NAMES
kv-put:plaza.edge.00000000000000e9 denied $KV.kizuna_fleet.plaza.edge.00000000000000e9
pub:kz.plaza.tick denied kz.plaza.tick
EOF
ok

# 5. The weakness section 4 names: whoever may create a consumer on the
#    bucket's stream chooses where JetStream delivers it, and no publish
#    permission is checked there. The watcher-reading minter makes the
#    bucket's bytes (which any edge may write) arrive on kz.plaza.tick at
#    edge 1. This assertion flips when the readers move to direct gets and
#    the minter loses $JS.API.CONSUMER.CREATE (then update section 4).
"$PERMS" --inbox "$(inbox plaza-edge-1)" "$URL" plaza-edge-1.cred wait:kz.plaza.tick:5000 \
    >wait.out 2>&1 &
WAIT_PID=$!
PIDS+=("$WAIT_PID")
for _ in $(seq 1 50); do grep -q listening wait.out && break; sleep 0.1; done
grep -q '^wait:kz.plaza.tick:5000 listening$' wait.out || fail "edge 1 not listening: $(cat wait.out)"
check minter <<'EOF'
consumer:kz.plaza.tick ok
EOF
wait "$WAIT_PID" || true
grep -q '^wait:kz.plaza.tick:5000 ok [0-9]* bytes$' wait.out ||
    fail "the consumer's delivery did not reach kz.plaza.tick (section 4 says it does): $(cat wait.out)"
ok

# 6. TLS with client certificates, from a throwaway CA.
if ! command -v openssl >/dev/null; then
    [ "${CI:-}" = true ] && fail "openssl is not installed"
    echo "SKIP: the TLS part (openssl is not installed)"
    echo "bus_perms: $passed passed, 0 failed"
    exit 0
fi
# cert NAME CA SUBJECT-CN EXTENSIONS: NAME.key and NAME.crt signed by CA
# (CA empty: self-signed, a CA).
cert() {
    local name=$1 ca=$2 cn=$3 ext=$4
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
        -keyout "$name.key" -out "$name.csr" 2>/dev/null
    printf '%s\n' "$ext" >"$name.ext"
    if [ -z "$ca" ]; then
        openssl x509 -req -in "$name.csr" -signkey "$name.key" -days 1 -extfile "$name.ext" \
            -out "$name.crt" 2>/dev/null
    else
        openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 1 \
            -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    fi
    chmod 600 "$name.key"
}
CA_EXT='basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign'
cert ca "" "kizuna test CA" "$CA_EXT"
cert rogue-ca "" "another CA" "$CA_EXT"
cert server ca nats.plaza.internal 'subjectAltName=DNS:nats.plaza.internal
extendedKeyUsage=serverAuth'
cert edge-1 ca plaza-edge-1 'extendedKeyUsage=clientAuth'
cert rogue-edge rogue-ca plaza-edge-1 'extendedKeyUsage=clientAuth'
sed "s|@STORE_DIR@|$WORK/js-tls|" "$CONF_IN" >tls.conf
cat >>tls.conf <<EOF
tls {
  cert_file: "$WORK/server.crt"
  key_file: "$WORK/server.key"
  ca_file: "$WORK/ca.crt"
  verify: true
  timeout: 2
}
EOF
start_nats nats-tls.log tls.conf
URL="tls://127.0.0.1:$PORT"
TLS=(--ca ca.crt --cert edge-1.crt --key edge-1.key --hostname nats.plaza.internal)
# The right CA, certificate and name: connected, and the permissions hold.
check plaza-edge-1 "${TLS[@]}" "${PEER_AUTH[@]}" <<'EOF'
pub:kz.plaza.edge.1.up ok
recv:kz.plaza.tick=kz.plaza.tick ok
pub:kz.plaza.tick denied kz.plaza.tick
sub:kz.plaza.edge.2.down denied kz.plaza.edge.2.down
EOF
refused "no client certificate" --ca ca.crt --hostname nats.plaza.internal "$URL" plaza-edge-1.cred
refused "a certificate of another CA" --ca ca.crt --cert rogue-edge.crt --key rogue-edge.key \
    --hostname nats.plaza.internal "$URL" plaza-edge-1.cred
refused "a server the client's CA did not sign" --ca rogue-ca.crt --cert edge-1.crt --key edge-1.key \
    --hostname nats.plaza.internal "$URL" plaza-edge-1.cred
refused "a server certificate for another name" --ca ca.crt --cert edge-1.crt --key edge-1.key \
    --hostname other.plaza.internal "$URL" plaza-edge-1.cred
refused "plain text to a TLS listener" "nats://127.0.0.1:$PORT" plaza-edge-1.cred
refused "a certificate without the password" "${TLS[@]}" "$URL" wrong.cred
ok
# The name checked is the URL's host unless natsOptions_SetExpectedHostname
# names another: a URL with the address and no expected name is refused.
refused "the URL's address is not the certificate's name" --ca ca.crt --cert edge-1.crt \
    --key edge-1.key "$URL" plaza-edge-1.cred
grep -q 'IP address mismatch' probe.out || fail "address refusal: $(cat probe.out)"
ok
# What libnats 3.4.1 does on its own (section 4, "TLS"): besides the CA
# file it was given it trusts the system's CA store (OpenSSL's default
# paths, here SSL_CERT_FILE), so a server certificate from any CA there
# is accepted if it carries the expected name.
SSL_CERT_FILE=ca.crt "$PERMS" --ca rogue-ca.crt "${TLS[@]:2}" "$URL" plaza-edge-1.cred \
    pub:kz.plaza.edge.1.up >probe.out 2>&1 || true
head -n 1 probe.out | grep -qx 'connect ok' ||
    fail "the system CA store is no longer trusted besides the CA file (update section 4): $(cat probe.out)"
ok

echo "bus_perms: $passed passed, 0 failed"
