#!/usr/bin/env bash
#
# End-to-end test of the kizuna-server command line: keygen, token mint,
# token show, and the refusals (usage errors exit 2, runtime failures exit 1,
# each with a message on stderr). Run by ctest as cli_server:
#
#   bash tests/cli/cli_server.sh path/to/kizuna-server
#
# Everything happens in a temporary directory that is removed on exit. The
# first failed expectation stops the script with the command, its exit
# status, its output and its errors.
set -euo pipefail

BIN=${1:?usage: cli_server.sh path/to/kizuna-server}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzs-cli-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
umask 022

PAST=1000000000   # 2001-09-09T01:46:40Z
CHECKS=0

# ---- helpers ---------------------------------------------------------------

# run ARGS...: runs the program; sets RC, leaves stdout in out, stderr in err.
run() {
    LAST="kizuna-server $*"
    set +e
    "$BIN" "$@" >out 2>err
    RC=$?
    set -e
}

fail() {
    echo "FAIL: $*"
    echo "  command: ${LAST:-}"
    echo "  exit status: ${RC:-}"
    echo "  --- stdout"; sed 's/^/  | /' out 2>/dev/null || true
    echo "  --- stderr"; sed 's/^/  | /' err 2>/dev/null || true
    exit 1
}

# expect STATUS ARGS...: runs and requires that exit status.
expect() {
    local want=$1
    shift
    run "$@"
    CHECKS=$((CHECKS + 1))
    [ "$RC" -eq "$want" ] || fail "expected exit status $want"
}

has_out() { grep -q -e "$1" out || fail "stdout lacks /$1/"; }
has_err() { grep -q -e "$1" err || fail "stderr lacks /$1/"; }
no_file() { [ ! -e "$1" ] || fail "$1 should not exist"; }
mode_is() {
    local got
    got=$(stat -c %a "$1")
    [ "$got" = "$2" ] || fail "$1 has mode $got, expected $2"
}

# flip_hex FILE: changes one hex digit of the key line (line 2) to another
# hex digit, so the file stays well-formed and only the check line can tell.
flip_hex() {
    local line c n
    line=$(sed -n 2p "$1")
    c=${line:10:1}
    if [ "$c" = 0 ]; then n=1; else n=0; fi
    sed -i "2s/^\(.\{10\}\)./\1$n/" "$1"
}

# flip_byte FILE OFFSET: xors one byte of a binary file with 1.
flip_byte() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\$(printf '%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

hexdump_of() { od -An -v -tx1 "$@" | tr -d ' \n'; }

MINT_BASE=(token mint --keys keys --server 127.0.0.1:40000 --out bad.kzc)

# ---- help and version --------------------------------------------------------

expect 0 --help
has_out "usage: kizuna-server COMMAND"
has_out "keygen"
expect 0 --version
has_out "^kizuna-server [0-9]*\.[0-9]*\.[0-9]*$"
expect 0 keygen --help
has_out "usage: kizuna-server keygen"
expect 0 token --help
expect 0 token mint --help
has_out "--acting-for"
expect 0 token show --help
has_out "usage: kizuna-server token show"

# ---- keygen ----------------------------------------------------------------

expect 0 keygen --out keys
has_out "server id 0x[0-9a-f]\{16\}"
mode_is keys 700
mode_is keys/backend.key 600
mode_is keys/server.key 600
mode_is keys/backend.pub 644
mode_is keys/server.pub 644
[ "$(head -n1 keys/backend.key)" = "kizuna backend-secret-key v1" ] || fail "backend.key header"
[ "$(sed -n 2p keys/backend.key | tr -d '\n' | wc -c)" -eq 128 ] || fail "backend.key length"
[ "$(sed -n 2p keys/server.pub | tr -d '\n' | wc -c)" -eq 64 ] || fail "server.pub length"
[ "$(ls keys | wc -l)" -eq 4 ] || fail "keys/ holds more than the four files"

before=$(cat keys/server.pub keys/backend.key | cksum)
expect 1 keygen --out keys
has_err "keys/backend.key: already exists"
[ "$(cat keys/server.pub keys/backend.key | cksum)" = "$before" ] || fail "refusal changed the keys"

# --force replaces every file, keeps the modes, and leaves no temporary.
cp -r keys keys.old
(umask 077 && "$BIN" keygen --out keys --force >out 2>err) || fail "keygen --force"
CHECKS=$((CHECKS + 1))
for f in backend.key backend.pub server.key server.pub; do
    cmp -s keys/$f keys.old/$f && fail "--force did not replace $f"
done
mode_is keys/backend.key 600
mode_is keys/backend.pub 644
mode_is keys/server.pub 644
[ "$(ls -A keys | wc -l)" -eq 4 ] || fail "temporary files left in keys/"
rm -rf keys.old

# A fresh directory under a strict umask still gets 0644 public files.
(umask 077 && "$BIN" keygen --out keys.strict >out 2>err) || fail "keygen under umask 077"
mode_is keys.strict/server.pub 644
mode_is keys.strict/server.key 600

expect 2 keygen
has_err "--out DIR is required"
expect 2 keygen --out k2 --bogus
has_err "unknown option '--bogus'"
expect 1 keygen --out no/such/parent/dir
has_err "no/such/parent/dir: cannot create directory"

# ---- token mint and show -----------------------------------------------------

expect 0 token mint --keys keys --server 127.0.0.1:40000 --server '[::1]:40001' \
    --client-id 42 --avatar-id 7 --name "Alice Example" --roles visitor,builder \
    --zones lobby,stage --verified ekyc-face --actor agent --acting-for 17 --ttl 600 \
    --timeout 15 --protocol-id 0x4b495a554e410001 --out alice.kzc
has_out "^minted client_id=42 avatar_id=7 name=\"Alice Example\" roles=visitor,builder"
has_out "zones=lobby,stage level=strong method=ekyc-face actor=agent acting_for=17"
has_out "expires=[0-9]\{4\}-[0-9][0-9]-[0-9][0-9]T[0-9:]\{8\}Z file=alice.kzc$"
mode_is alice.kzc 600

expect 0 token show alice.kzc
has_out "^name: *Alice Example$"
has_out "^roles: *visitor,builder$"
has_out "^zones: *lobby,stage$"
has_out "^level: *strong$"
has_out "^method: *ekyc-face$"
has_out "^actor: *agent$"
has_out "^acting_for: *17$"
has_out "^addresses: *127.0.0.1:40000 \[::1\]:40001$"
has_out "^timeout: *15 s$"
grep -q "^verdict:" out && fail "show without --keys must not give a verdict"
# The session keys are the file's last 64 bytes; they must never be printed.
keys_hex=$(tail -c 64 alice.kzc | hexdump_of)
grep -q "${keys_hex:0:16}" out && fail "show printed the session keys"
grep -q "${keys_hex:64:16}" out && fail "show printed the session keys"

expect 0 token show alice.kzc --keys keys
has_out "^verdict: *valid$"

# Defaults: avatar id = client id, name client-<id>, role visitor, no claims.
expect 0 token mint --keys keys --server localhost:5000 --client-id 9 --out plain.kzc
has_out "avatar_id=9 name=\"client-9\" roles=visitor zones=- level=none method=none actor=human"
expect 0 token show plain.kzc --keys keys
has_out "^verdict: *valid$"
has_out "^timeout: *10 s$"
has_out "^protocol_id: *0x4b495a554e410001$"
# --verified none means level none; --level overrides --verified's strong.
expect 0 token mint --keys keys --server localhost:5000 --client-id 9 --verified oidc:example.com \
    --level basic --actor bot --out basic.kzc
has_out "level=basic method=oidc:example.com actor=bot"
# A re-mint replaces the file atomically.
expect 0 token mint --keys keys --server localhost:5000 --client-id 10 --out plain.kzc
expect 0 token show plain.kzc
has_out "^client_id: *10$"

# Pinned time: expired now, valid at the time it was made.
expect 0 token mint --keys keys --server localhost:5000 --client-id 5 --ttl 1 --now $PAST \
    --out old.kzc
has_out "expires=2001-09-09T01:46:41Z"
expect 1 token show old.kzc --keys keys
has_out "^verdict: *expired$"
has_err "old.kzc: refused by the keys in keys: expired"
expect 0 token show old.kzc --keys keys --now $PAST
has_out "^verdict: *valid$"
# A protocol id the token does not carry.
expect 1 token show alice.kzc --keys keys --protocol-id 7
has_out "^verdict: *bad_protocol$"

# Another key directory: the server id (derived from server.pub) differs.
expect 0 keygen --out keys2
expect 1 token show alice.kzc --keys keys2
has_out "^verdict: *wrong_server$"
# Right server keys, another backend's public key: the signature fails.
mkdir -m 700 mixed
cp keys/server.key keys/server.pub mixed/
cp keys2/backend.pub mixed/
expect 1 token show alice.kzc --keys mixed
has_out "^verdict: *bad_signature$"
# A server pair that does not belong together is refused before any check.
cp keys2/server.key mixed/server.key
expect 1 token show alice.kzc --keys mixed
has_err "server.key and server.pub are not one key pair"

# ---- refused inputs ------------------------------------------------------------

expect 2
has_err "no command given"
expect 2 frobnicate
has_err "unknown command 'frobnicate'"
has_err "usage: kizuna-server COMMAND"
expect 2 --frob
has_err "unknown option '--frob'"
expect 2 token
expect 2 token burn
has_err "unknown sub-command 'burn'"
expect 2 run
has_err "keys: no keys directory"
has_err "nothing started"
expect 0 version
has_out "kizuna-server 0."

expect 2 "${MINT_BASE[@]}"
has_err "are required"
expect 2 "${MINT_BASE[@]}" --client-id 1 --bogus
has_err "unknown option '--bogus'"
expect 2 "${MINT_BASE[@]}" --client-id 1 --ttl
has_err "option '--ttl' needs a value"
expect 2 "${MINT_BASE[@]}" --client-id 1 stray
has_err "unexpected argument 'stray'"
expect 1 "${MINT_BASE[@]}" --client-id 0
has_err "client id is zero"
expect 2 "${MINT_BASE[@]}" --client-id -3
has_err "client-id '-3': not a whole number"
expect 2 "${MINT_BASE[@]}" --client-id 12abc
has_err "client-id '12abc'"
expect 2 "${MINT_BASE[@]}" --client-id 18446744073709551616
has_err "client-id"
expect 1 "${MINT_BASE[@]}" --client-id 1 --actor agent
has_err "an agent must name the principal it acts for"
expect 1 "${MINT_BASE[@]}" --client-id 1 --acting-for 4
has_err "a human does not act for another principal"
expect 2 "${MINT_BASE[@]}" --client-id 1 --actor robot
has_err "actor 'robot'"
expect 1 "${MINT_BASE[@]}" --client-id 1 --roles "Bad Role"
has_err "role name not \[a-z0-9_-\]"
expect 2 "${MINT_BASE[@]}" --client-id 1 --roles "a,,b"
has_err "empty name in the list"
expect 2 "${MINT_BASE[@]}" --client-id 1 --roles a,b,c,d,e,f,g,h,i
has_err "too many names"
expect 1 "${MINT_BASE[@]}" --client-id 1 --zones "Lobby"
has_err "zone name"
expect 2 "${MINT_BASE[@]}" --client-id 1 --name "$(printf 'x%.0s' {1..33})"
has_err "name '.*': too long"
expect 2 token mint --keys keys --server nope --client-id 1 --out bad.kzc
has_err "server 'nope': not HOST:PORT"
expect 2 token mint --keys keys --server 127.0.0.1:0 --client-id 1 --out bad.kzc
expect 2 "${MINT_BASE[@]}" --client-id 1 --ttl 999999999
has_err "ttl '999999999': not a whole number from 1 to 604800"
expect 2 "${MINT_BASE[@]}" --client-id 1 --ttl 0
expect 2 "${MINT_BASE[@]}" --client-id 1 --level strong
has_err "level strong needs --verified METHOD"
expect 2 "${MINT_BASE[@]}" --client-id 1 --level extreme
expect 2 "${MINT_BASE[@]}" --client-id 1 --now 99999999999999
no_file bad.kzc

# A write that fails at the rename (FILE is a directory) leaves no temporary.
mkdir outdir
expect 1 token mint --keys keys --server 127.0.0.1:1 --client-id 1 --out outdir
has_err "outdir: cannot write: Is a directory"
[ -z "$(ls -A . | grep '^\.outdir\.')" ] || fail "temporary file left after a failed write"

# Missing or damaged keys.
expect 1 token mint --keys nowhere --server 127.0.0.1:1 --client-id 1 --out bad.kzc
has_err "nowhere/server.pub: cannot open: No such file or directory"
expect 1 token show alice.kzc --keys nowhere
has_err "nowhere/backend.pub: cannot open"

cp -r keys broken
flip_hex broken/backend.key
expect 1 token mint --keys broken --server 127.0.0.1:1 --client-id 1 --out bad.kzc
has_err "broken/backend.key: check value does not match the key"
cp keys/backend.key broken/
flip_hex broken/server.pub
expect 1 token mint --keys broken --server 127.0.0.1:1 --client-id 1 --out bad.kzc
has_err "broken/server.pub: check value does not match"
head -c 50 keys/server.pub >broken/server.pub
expect 1 token mint --keys broken --server 127.0.0.1:1 --client-id 1 --out bad.kzc
has_err "broken/server.pub: no complete key line (truncated file)"
cp keys/backend.pub broken/server.pub
expect 1 token mint --keys broken --server 127.0.0.1:1 --client-id 1 --out bad.kzc
has_err "broken/server.pub: first line is not this kind of key file's header"
: >broken/server.pub
expect 1 token mint --keys broken --server 127.0.0.1:1 --client-id 1 --out bad.kzc
has_err "broken/server.pub: no complete first line"
sed '2y/abcdef/ABCDEF/' keys/server.pub >broken/server.pub
expect 1 token mint --keys broken --server 127.0.0.1:1 --client-id 1 --out bad.kzc
has_err "broken/server.pub: key line has a character other than 0-9 and a-f"
no_file bad.kzc

# A secret key others may read is refused, and so is a public key others
# may change (docs/OPERATIONS.md, "Who may change or read a key file").
cp -r keys loose
chmod 644 loose/backend.key
expect 1 token mint --keys loose --server 127.0.0.1:1 --client-id 1 --out loose.kzc
has_err "loose/backend.key: refused: secret key readable by everyone (mode 0644)"
chmod 600 loose/backend.key
chmod 666 loose/server.pub
expect 1 token mint --keys loose --server 127.0.0.1:1 --client-id 1 --out loose.kzc
has_err "loose/server.pub: refused: key file writable by everyone (mode 0666)"
no_file loose.kzc

# Damaged token files.
expect 1 token show missing.kzc
has_err "missing.kzc: cannot open: No such file or directory"
head -c 100 alice.kzc >short.kzc
expect 1 token show short.kzc
has_err "short.kzc: not a client token file"
cp alice.kzc magic.kzc
flip_byte magic.kzc 0
expect 1 token show magic.kzc
has_err "magic.kzc: not a client token file"
cp alice.kzc long.kzc
printf 'x' >>long.kzc
expect 1 token show long.kzc
has_err "long.kzc: not a client token file"
expect 1 token show keys/server.pub
has_err "not a client token file"
# A changed signature byte still parses but does not verify.
cp alice.kzc sig.kzc
flip_byte sig.kzc $(( $(stat -c %s alice.kzc) - 64 - 10 ))
expect 0 token show sig.kzc
expect 1 token show sig.kzc --keys keys
has_out "^verdict: *bad_signature$"
# A changed signed field (the name's first byte) fails the signature too.
cp alice.kzc name.kzc
off=$(grep -obUa "Alice Example" alice.kzc | head -n1 | cut -d: -f1)
flip_byte name.kzc "$off"
expect 0 token show name.kzc
has_out "^name: *@lice Example$"
expect 1 token show name.kzc --keys keys
has_out "^verdict: *bad_signature$"
expect 2 token show
has_err "give exactly one FILE"
expect 2 token show a.kzc b.kzc

echo "cli_server: all $CHECKS checks passed"
