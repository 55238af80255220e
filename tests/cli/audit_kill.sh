#!/usr/bin/env bash
#
# kizuna-server run --audit, end to end.
#
# 1. A server writes the audit log while a client connects, is killed with
#    SIGKILL, restarts on the same file and stops with SIGTERM. The chain
#    verifies, but the unclean end is a gap: `audit verify` prints LOSS and
#    a line for it and exits 3 (never a plain OK). A clean run exits 0. A
#    flipped byte, a cut tail and the wrong key each exit 1 and name the
#    record.
# 2. Without privileges, under a file size limit (RLIMIT_FSIZE) that the
#    audit log reaches: writes fail with EFBIG, the server neither dies
#    (SIGXFSZ) nor stops auditing; with audit_on_failure = refuse it denies
#    new clients and /readyz answers 503, and once the limit is raised
#    (prlimit) the writer resumes by itself and both reopen.
# 3. As root, on a 64 KiB tmpfs that is then filled: the same, from a real
#    full file system; with continue, clients are admitted. A server
#    stopped while the disk is still full exits 1 and leaves a log that
#    verify refuses until the next start, which notes the unclean end
#    (exit 3). Without root or mount this part prints SKIP.
#
#   bash tests/cli/audit_kill.sh path/to/kizuna-server path/to/kz-connect-probe
set -euo pipefail
BIN=$1
PROBE=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzs-audit-XXXXXX")
SERVER_PID=
MOUNTED=
cleanup() {
    [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null || true
    [ -n "$MOUNTED" ] && umount "$MOUNTED" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

fail() { echo "FAIL: $*"; echo "--- server log"; cat server.log 2>/dev/null || true; exit 1; }

# start LOG [extra flags...]: starts the server in the background; sets
# SERVER_PID, port and admin (the admin port, when --admin is given). With
# FSIZE_KB set, the server runs under that soft file size limit; its log
# then goes through a pipe, which the limit does not cover.
start() {
    local log=$1
    shift
    if [ -n "${FSIZE_KB:-}" ]; then
        (ulimit -S -f "$FSIZE_KB" && exec "$BIN" run --keys keys --port 0 --bind 127.0.0.1 \
            --admin off --audit "$log" --log-level info --shutdown-grace 1 "$@" \
            > >(cat >server.log) 2>&1) &
    else
        "$BIN" run --keys keys --port 0 --bind 127.0.0.1 --admin off --audit "$log" \
            --log-level info --shutdown-grace 1 "$@" >server.log 2>&1 &
    fi
    SERVER_PID=$!
    port=
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*"event":"listening".*"udp_port":\([0-9]*\).*/\1/p' server.log)
        admin=$(sed -n 's/.*"event":"listening".*"admin_port":\([0-9]*\).*/\1/p' server.log)
        [ -n "$port" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited before listening"
        sleep 0.1
    done
    fail "no 'listening' line within 10 s"
}

# stop [want_status]: SIGTERM, wait, check the exit status (default 0).
stop() {
    local want=${1:-0} status=0
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || status=$?
    SERVER_PID=
    [ "$status" -eq "$want" ] || fail "server exited with $status after SIGTERM, want $want"
}

# verify LOG OUT: runs audit verify, prints its exit status.
verify() {
    local status=0
    "$BIN" audit verify "$1" --pubkey keys/audit.pub >"$2" 2>&1 || status=$?
    echo "$status"
}

tokens=0
# probe: connects a fresh client (its own token); exit status of the probe.
probe() {
    tokens=$((tokens + 1))
    "$BIN" token mint --keys keys --server "127.0.0.1:$port" --client-id "$((100 + tokens))" \
        --out "t$tokens.kzc" >/dev/null
    "$PROBE" "t$tokens.kzc" "${1:-5000}" >"probe$tokens.out" 2>&1
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
# audit_on_failure takes refuse or continue only.
if "$BIN" run --keys keys --port 0 --admin off --audit x.log --audit-on-failure maybe \
    >bad_policy.out 2>&1; then
    fail "audit_on_failure accepted 'maybe'"
fi
grep -q 'refuse or continue' bad_policy.out || fail "policy refusal: $(cat bad_policy.out)"

# ---- 1. crash, restart, verify -----------------------------------------------

# A clean run: OK, exit 0.
start clean.log
stop
[ "$(verify clean.log vc.out)" -eq 0 ] || fail "clean log: $(cat vc.out)"
grep -q '^OK clean.log: ' vc.out || fail "clean log not OK: $(cat vc.out)"

start audit.log
probe || fail "probe did not connect: $(cat probe$tokens.out)"
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

start audit.log
probe || true
stop
grep -q 'recovered after a crash' server.log || fail "restart did not log the recovery"

# The chain is intact, but the crash is a gap: LOSS, a line for it, exit 3.
status=$(verify audit.log v1.out)
[ "$status" -eq 3 ] || fail "verify after a crash: exit $status, want 3: $(cat v1.out)"
grep -q '^LOSS audit.log: .*chain intact, but the log records 1 gap' v1.out ||
    fail "verify did not print LOSS: $(cat v1.out)"
grep -q '^  record [0-9]* (seq [0-9]*): unclean end before ' v1.out ||
    fail "verify did not name the unclean end: $(cat v1.out)"
if grep -q '^OK ' v1.out; then fail "a log with a gap printed OK"; fi
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

# ---- 2. a file size limit, 3. a full file system -------------------------------

metric() { curl -s "http://127.0.0.1:$admin/metrics" | sed -n "s/^$1 \\([0-9]*\\)\$/\\1/p"; }
ready() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz"; }

# wait_metric NAME VALUE: until /metrics shows it (20 s at most).
wait_metric() {
    for _ in $(seq 1 200); do
        [ "$(metric "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    fail "$1 did not become $2 (is $(metric "$1"))"
}

# fill: takes every free byte of the tmpfs (nothing to do under a limit).
fill() {
    [ -n "$MOUNTED" ] || return 0
    dd if=/dev/zero of=fs/filler bs=4096 status=none 2>/dev/null || true
}

# break_writer: with the disk full (or the limit near), makes the server
# write audit records (each reload writes two) until its writer reports
# the failure.
break_writer() {
    fill
    for _ in $(seq 1 100); do
        [ "$(metric kizuna_audit_write_error)" = 1 ] && return 0
        for _ in 1 2 3 4 5; do
            kill -HUP "$SERVER_PID" 2>/dev/null ||
                fail "the server died while its audit log could not be written"
            sleep 0.02
        done
    done
    fail "the writer never failed on a full file system"
}

# 2. The audit log reaches a 16 KiB file size limit; raising it resumes.
FSIZE_KB=16 start limited.log --admin 127.0.0.1:0
[ -n "$admin" ] || fail "no admin port"
probe || fail "probe under the limit: $(cat probe$tokens.out)"
break_writer
kill -0 "$SERVER_PID" 2>/dev/null || fail "the server died at the file size limit"
wait_metric kizuna_audit_refusing_admissions 1
[ "$(ready)" = 503 ] || fail "limit: /readyz while the audit log cannot be written: $(ready)"
if probe 2000; then fail "limit: a client was admitted while the audit log could not be written"; fi
grep -q "reason 5" "probe$tokens.out" ||
    fail "limit: the refusal is not KZ_DENY_UNAVAILABLE: $(cat probe$tokens.out)"
grep -q '"event":"audit_write_failed".*File too large' server.log ||
    fail "limit: no audit_write_failed line"
prlimit --pid "$SERVER_PID" --fsize=unlimited: || fail "prlimit could not raise the limit"
wait_metric kizuna_audit_write_error 0
wait_metric kizuna_audit_refusing_admissions 0
[ "$(ready)" = 200 ] || fail "limit: /readyz did not reopen"
probe || fail "limit: no client admitted once the log was writable: $(cat probe$tokens.out)"
stop
[ "$(verify limited.log vl.out)" -eq 0 ] || fail "limit: $(cat vl.out)"
grep -q 'the writer could not write; no records lost between .*: no space (write: File too large)' vl.out ||
    fail "limit: the outage line: $(cat vl.out)"

mkdir fs
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=64k kzs-audit-full fs 2>/dev/null; then
    echo "SKIP: full file system part (needs root to mount a 64 KiB tmpfs)"
    echo "audit_kill: 2 passed, 0 failed (full-disk part skipped)"
    exit 0
fi
MOUNTED=$WORK/fs

# refuse (the default): the gate closes and /readyz fails while the log
# cannot be written; both reopen by themselves once space is back.
start fs/audit.log --admin 127.0.0.1:0
[ -n "$admin" ] || fail "no admin port"
probe || fail "probe before the disk filled: $(cat probe$tokens.out)"
[ "$(ready)" = 200 ] || fail "/readyz before the disk filled"
break_writer
wait_metric kizuna_audit_refusing_admissions 1
[ "$(ready)" = 503 ] || fail "/readyz while the audit log cannot be written: $(ready)"
curl -s "http://127.0.0.1:$admin/readyz" | grep -q 'audit log unavailable' ||
    fail "/readyz does not say why"
if probe 2000; then fail "a client was admitted while the audit log could not be written"; fi
grep -q '"event":"audit_unavailable".*"admissions":"refused"' server.log ||
    fail "no audit_unavailable line"
grep -q '"event":"audit_write_failed"' server.log || fail "no audit_write_failed line"
failures=$(metric kizuna_audit_write_failures_total)
sleep 1.5
[ "$(metric kizuna_audit_write_failures_total)" -gt "$failures" ] ||
    fail "the writer stopped retrying"
rm -f fs/filler
wait_metric kizuna_audit_write_error 0
wait_metric kizuna_audit_refusing_admissions 0
[ "$(ready)" = 200 ] || fail "/readyz did not reopen"
probe || fail "no client admitted once the log was writable again: $(cat probe$tokens.out)"
grep -q '"event":"audit_available"' server.log || fail "no audit_available line"
grep -q '"event":"audit_write_resumed"' server.log || fail "no audit_write_resumed line"
stop
[ "$(verify fs/audit.log vf1.out)" -eq 0 ] || fail "after the outage: $(cat vf1.out)"
grep -q '^OK fs/audit.log: .*1 write outage, no records lost' vf1.out ||
    fail "the outage is not reported: $(cat vf1.out)"
grep -q 'the writer could not write; no records lost between .*: no space (write: No space left on device)' vf1.out ||
    fail "the outage line: $(cat vf1.out)"

# continue: clients are still admitted while the log cannot be written.
rm -f fs/audit.log
start fs/audit.log --admin 127.0.0.1:0 --audit-on-failure continue
break_writer
probe || fail "continue: a client was refused: $(cat probe$tokens.out)"
[ "$(metric kizuna_audit_refusing_admissions)" = 0 ] || fail "continue: refusing"
[ "$(ready)" = 200 ] || fail "continue: /readyz failed"
grep -q '"event":"audit_unavailable".*"policy":"continue".*"admissions":"open"' server.log ||
    fail "continue: no audit_unavailable line"
rm -f fs/filler
wait_metric kizuna_audit_write_error 0
stop
[ "$(verify fs/audit.log vf2.out)" -eq 0 ] || fail "continue: $(cat vf2.out)"

# Stopped while the disk is still full: exit 1, no final checkpoint, so
# strict verify refuses; the next start notes the unclean end and verify
# then exits 3 with LOSS.
rm -f fs/audit.log
start fs/audit.log --admin 127.0.0.1:0
break_writer
stop 1
grep -q '"event":"audit_gave_up"' server.log || fail "no audit_gave_up line"
[ "$(verify fs/audit.log vf3.out)" -eq 1 ] || fail "a log cut short verified: $(cat vf3.out)"
rm -f fs/filler
start fs/audit.log
stop
status=$(verify fs/audit.log vf4.out)
[ "$status" -eq 3 ] || fail "after a stop on a full disk: exit $status, want 3: $(cat vf4.out)"
grep -q 'unclean end' vf4.out || fail "the unclean end is not named: $(cat vf4.out)"
echo "audit_kill: 3 passed, 0 failed"
