#!/usr/bin/env bash
#
# The C# binding (examples/csharp) compiled and run end to end under Mono:
#
#   bash tests/csharp/csharp_smoke.sh BUILD_DIR
#   bash tests/csharp/csharp_smoke.sh LIBKIZUNA KZ_MINIMAL_SERVER KZ_MINIMAL_CLIENT
#
# Arguments are a build directory, searched for the three files, or the
# files themselves (libkizuna.so*, kz-minimal-server, kz-minimal-client),
# in any order and mixed; ctest passes the files.
#
#   1. Compiles examples/csharp/Kizuna.cs with smoke.cs into smoke.exe,
#      and, as a Unity project would, Kizuna.cs with UNITY_5_3_OR_NEWER and
#      KizunaBehaviour.cs against UnityStub.cs (a stand-in UnityEngine),
#      so the example component keeps compiling. Every compile is
#      `mcs -warnaserror`.
#   2. Starts kz-minimal-server on 127.0.0.1 (a free port), which writes
#      three client token files (player-1, player-2, player-3) once it
#      listens, and kz-minimal-client with player-3's token.
#   3. Runs smoke.exe under mono with the library given here first in the
#      search path (a link libkizuna.so in the work directory, which is
#      LD_LIBRARY_PATH): players A (player-1) and B (player-2). smoke.cs
#      lists its checks; each prints one line.
#   4. Checks the C client's side: it exits 0 (it stayed in the world and
#      saw entities), it saw player-1 enter with its badge, and it printed
#      A's chat line byte for byte (C# encodes, C prints the raw UTF-8).
#   5. SIGTERM stops the server with exit status 0.
#
# Exits 77 (ctest: skipped) when mcs or mono is missing, unless CI=true:
# then it fails naming the Debian packages (mono-mcs, mono-runtime). Also
# 77 for a library built with ASan or TSan, which mono cannot load (their
# runtime must be the first library in the process). Takes about 12 s;
# KZ_CSHARP_KEEP=1 keeps the work directory (it is always kept on failure).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../../examples/csharp" && pwd)

usage() {
    echo "usage: $0 BUILD_DIR | LIBKIZUNA KZ_MINIMAL_SERVER KZ_MINIMAL_CLIENT" >&2
    exit 2
}

# ---- arguments ----------------------------------------------------------
LIB='' SERVER='' CLIENT=''
take() {  # take FILE: classify it by name
    case "$(basename "$1")" in
    libkizuna.so*) LIB=$(readlink -f "$1") ;;
    kz-minimal-server) SERVER=$(readlink -f "$1") ;;
    kz-minimal-client) CLIENT=$(readlink -f "$1") ;;
    *) echo "$0: $1: not libkizuna.so*, kz-minimal-server or kz-minimal-client" >&2; usage ;;
    esac
}
[ $# -ge 1 ] || usage
for arg in "$@"; do
    if [ -d "$arg" ]; then
        [ -e "$arg/libkizuna.so" ] && take "$arg/libkizuna.so"
        for prog in kz-minimal-server kz-minimal-client; do
            found=$(find "$arg" -maxdepth 3 -type f -name "$prog" -perm -u+x | head -1)
            [ -n "$found" ] && take "$found"
        done
    elif [ -f "$arg" ]; then
        take "$arg"
    else
        echo "$0: $arg: no such file or directory" >&2
        usage
    fi
done
for need in LIB SERVER CLIENT; do
    if [ -z "${!need}" ] || [ ! -f "${!need}" ]; then
        echo "$0: no ${need,,} found in the arguments (libkizuna.so, kz-minimal-server, kz-minimal-client)" >&2
        usage
    fi
done

# ---- tools --------------------------------------------------------------
missing=()
for tool in mcs mono; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    msg="${missing[*]} not found; install the Debian packages mono-mcs and mono-runtime"
    msg+=" (apt-get install --no-install-recommends mono-mcs mono-runtime)"
    if [ "${CI:-}" = true ]; then
        echo "FAIL: $msg"
        exit 1
    fi
    echo "SKIP: $msg"
    exit 77
fi
if ldd "$LIB" 2>/dev/null | grep -Eq 'lib(a|t)san\.so'; then
    echo "SKIP: $LIB is built with a sanitizer; mono cannot load it"
    exit 77
fi

# The version in the library's file name (libkizuna.so.0.1.0), "-" if none.
VERSION=$(basename "$LIB" | sed -n 's/^libkizuna\.so\.\([0-9]*\.[0-9]*\.[0-9]*\)$/\1/p')
VERSION=${VERSION:--}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kz-csharp-XXXXXX")
SERVER_PID=
CLIENT_PID=
OK=0
cleanup() {
    if [ -n "$CLIENT_PID" ]; then kill "$CLIENT_PID" 2>/dev/null || true; fi
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    if [ "$OK" -eq 1 ] && [ -z "${KZ_CSHARP_KEEP:-}" ]; then
        rm -rf "$WORK"
    else
        echo "work directory kept: $WORK"
    fi
}
trap cleanup EXIT
# A timeout's SIGTERM (ctest's, or a user's ^C) still runs the cleanup.
trap 'exit 1' TERM INT
cd "$WORK"

fail() {
    echo "FAIL: $*"
    for f in server.out server.err client.out client.err; do
        [ -s "$f" ] && { echo "--- $f"; cat "$f"; }
    done
    exit 1
}

# ---- 1. compile ---------------------------------------------------------
# -codepage:utf8: sources are UTF-8 whatever the locale.
MCS=(mcs -nologo -codepage:utf8 -warn:4 -warnaserror)
"${MCS[@]}" -unsafe -debug -target:exe -out:smoke.exe "$SRC/Kizuna.cs" "$HERE/smoke.cs" ||
    fail "Kizuna.cs with smoke.cs does not compile"
"${MCS[@]}" -target:library -out:UnityEngine.dll "$HERE/UnityStub.cs" ||
    fail "UnityStub.cs does not compile"
mkdir unity
"${MCS[@]}" -unsafe -define:UNITY_5_3_OR_NEWER -target:library -r:UnityEngine.dll \
    -out:unity/Kizuna.dll "$SRC/Kizuna.cs" || fail "Kizuna.cs does not compile as in Unity"
"${MCS[@]}" -target:library -r:UnityEngine.dll -r:unity/Kizuna.dll \
    -out:unity/KizunaBehaviour.dll "$SRC/KizunaBehaviour.cs" ||
    fail "KizunaBehaviour.cs does not compile against Kizuna.cs and the UnityEngine stand-in"
echo "compiled: smoke.exe (Kizuna.cs + smoke.cs); Kizuna.dll and KizunaBehaviour.dll as in Unity"

# ---- 2. the world -------------------------------------------------------
# --seconds bounds the server's life if this script is killed; it is
# stopped with SIGTERM long before.
"$SERVER" --port 0 --seconds 120 a.kzc b.kzc c.kzc >server.out 2>server.err &
SERVER_PID=$!
for _ in $(seq 1 100); do
    [ -f c.kzc ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "kz-minimal-server exited before writing the token files"
    sleep 0.1
done
[ -f c.kzc ] || fail "kz-minimal-server wrote no token files within 10 s"
# Connected for 8 s: A must see it enter and it must hear A's chat, both
# within about 2 s of smoke.exe starting.
"$CLIENT" c.kzc --seconds 8 >client.out 2>client.err &
CLIENT_PID=$!

# ---- 3. the C# clients --------------------------------------------------
# A multi-byte chat line: 3-byte kana, a 4-byte emoji (a surrogate pair in
# C#), 2-byte Latin. The C client's output is grepped for the same bytes.
CHAT='こんにちは 🌸 Kizuna ñ'
printf '%s\n' "$CHAT" >chat.txt
ln -s "$LIB" libkizuna.so
status=0
LD_LIBRARY_PATH="$WORK${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" timeout 60 \
    mono --debug smoke.exe "$LIB" "$VERSION" chat.txt a.kzc player-1 b.kzc player-2 player-3 ||
    status=$?
[ "$status" -eq 0 ] || fail "smoke.exe exited with $status (failed checks above)"

# ---- 4. the C client's side ---------------------------------------------
status=0
wait "$CLIENT_PID" || status=$?
CLIENT_PID=
[ "$status" -eq 0 ] || fail "kz-minimal-client exited with $status"
grep -Eq '^  enter #[0-9]+: player-1, human, verified none \(none\)$' client.out ||
    fail "the C client did not see player-1 (the C# client A) enter with its badge"
grep -Eq '^  enter #[0-9]+: player-2, ' client.out ||
    fail "the C client did not see player-2 (the C# client B) enter"
grep -qF "says: $CHAT" client.out || fail "the C client did not print A's chat line"
echo "ok   the C client saw player-1 and player-2 enter and printed A's chat line"

# ---- 5. stop ------------------------------------------------------------
kill -TERM "$SERVER_PID"
status=0
wait "$SERVER_PID" || status=$?
SERVER_PID=
[ "$status" -eq 0 ] || fail "kz-minimal-server exited with $status after SIGTERM"
grep -q 'at most 3 player(s) at once' server.out || fail "the server never held all 3 players"
echo "ok   the server held 3 players and stopped cleanly on SIGTERM"

OK=1
echo "csharp_smoke: passed"
