#!/usr/bin/env bash
#
# The viewer end to end, in a real browser:
#
#   bash tests/viewer/viewer_browser.sh path/to/kz-example-viewer [path/to/kizuna-server]
#
# Starts the viewer's embedded world (12 bots) on a free port and checks:
#   1. HTTP: the page, a 404, a 405, and /state.json (fetched with curl)
#      carrying every field the page draws, with avatars that move
#      between two fetches 1 s apart (the server's truth, before any
#      browser is involved).
#   2. The page in headless Chromium, twice, about 1.5 s apart. Each run
#      loads the page, lets it poll for 2 s of virtual time (Chromium holds
#      virtual time while a request is in flight), then takes a screenshot
#      and dumps the DOM. The page reports what it drew: document.title
#      "kizuna viewer: N avatars" and the canvas's data-drawn list of
#      "id:x,y" dot positions. We require N avatars drawn, N matching the
#      list, avatars whose drawn position moved by 3 px or more between
#      the two runs, and a page that kept polling (data-polls: at least 5
#      answers). Motion is compared across two page loads; within one
#      load only the polling is checked.
#   3. The pixels. A byte comparison of two PNGs would prove little (any
#      changing text changes the bytes), so the screenshots are decoded by
#      Chromium itself (compare.html, no image library needed) and their
#      pixels in the avatar dot colors counted: each screenshot must show
#      dots, and enough of those pixels must differ between the two. The
#      viewer stands still, so its map (grid, zones, legend) does not move;
#      only avatars do. Pixels in the legend are left out (its swatches use
#      the same colors); the page anchors the legend to the top because
#      headless Chromium lays the page out 800x457 for the DOM and renders
#      the screenshot at 800x600, so only boxes hung from the top match.
#   4. SIGTERM stops it with exit status 0; a second run with --seconds
#      stops by itself with 0; bad options are refused.
#   5. With kizuna-server given: a real server, a token minted by
#      `kizuna-server token mint`, and the viewer joining it with --connect.
#
# Exits 77 (ctest: skipped) when /usr/bin/chromium is not installed.
# Takes about 10 s. KZ_VIEWER_KEEP=1 keeps the screenshots and DOM dumps
# (they are always kept when a check fails).
set -euo pipefail
abspath() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
BIN=$(abspath "$1")
SERVER_BIN=${2:+$(abspath "$2")}
HERE=$(cd "$(dirname "$0")" && pwd)
CHROMIUM=/usr/bin/chromium
if [ ! -x "$CHROMIUM" ]; then
    echo "SKIP: $CHROMIUM is not installed"
    exit 77
fi
command -v curl >/dev/null || { echo "FAIL: curl is required"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kz-viewer-XXXXXX")
VIEWER_PID=
KZS_PID=
OK=0
cleanup() {
    [ -n "$VIEWER_PID" ] && kill "$VIEWER_PID" 2>/dev/null || true
    [ -n "$KZS_PID" ] && kill "$KZS_PID" 2>/dev/null || true
    if [ "$OK" -eq 1 ] && [ -z "${KZ_VIEWER_KEEP:-}" ]; then
        rm -rf "$WORK"
    else
        echo "artifacts kept in $WORK"
    fi
}
trap cleanup EXIT
cd "$WORK"

fail() {
    echo "FAIL: $*"
    echo "--- viewer stdout"; cat viewer.out 2>/dev/null || true
    echo "--- viewer stderr"; cat viewer.err 2>/dev/null || true
    exit 1
}

CHROME_FLAGS=(--headless --no-sandbox --disable-gpu --disable-background-networking
    --no-first-run --no-default-browser-check --hide-scrollbars --mute-audio)

# Waits for "viewer: http://127.0.0.1:PORT/" in viewer.out; sets URL.
wait_for_url() {
    URL=
    for _ in $(seq 1 100); do
        URL=$(sed -n 's|^viewer: \(http://127\.0\.0\.1:[0-9]*/\)$|\1|p' viewer.out)
        [ -n "$URL" ] && return 0
        kill -0 "$VIEWER_PID" 2>/dev/null || fail "viewer exited before printing its URL"
        sleep 0.1
    done
    fail "no URL line within 10 s"
}

# Waits until state.json says connected with at least $1 entities in view.
wait_for_view() {
    for _ in $(seq 1 150); do
        if curl -fsS "${URL}state.json" >ready.json 2>/dev/null &&
            grep -q '"state":"connected"' ready.json; then
            n=$(sed -n 's/.*"in_view":\([0-9]*\).*/\1/p' ready.json)
            [ "${n:-0}" -ge "$1" ] && return 0
        fi
        sleep 0.1
    done
    fail "the viewer did not see $1 entities within 15 s: $(cat ready.json 2>/dev/null)"
}

# "id x z" lines for every avatar in a state.json (key order is fixed by json.c).
avatar_positions() {
    grep -o '"id":[0-9]*,"kind":"avatar","pos":\[[-0-9.e]*,[-0-9.e]*,[-0-9.e]*\]' "$1" |
        sed 's/"id":\([0-9]*\),"kind":"avatar","pos":\[\([^,]*\),[^,]*,\([^]]*\)\]/\1 \2 \3/'
}

# How many ids in both lists moved at least $3 (same units as the lists).
# Lists are "id x y" lines.
count_moved() {
    awk -v min="$3" 'NR == FNR { x[$1] = $2; y[$1] = $3; next }
        ($1 in x) { dx = $2 - x[$1]; dy = $3 - y[$1]; if (dx * dx + dy * dy >= min * min) n++ }
        END { print n + 0 }' "$1" "$2"
}

# One headless Chromium run on the page: NAME.png and NAME.html (the DOM
# after the page has polled state.json for 2 s of virtual time).
shot() {
    timeout 60 "$CHROMIUM" "${CHROME_FLAGS[@]}" --user-data-dir="$WORK/profile-$1" \
        --window-size=800,600 --virtual-time-budget=2000 --run-all-compositor-stages-before-draw \
        --screenshot="$WORK/$1.png" --dump-dom "$URL" >"$1.html" 2>"$1.chromium.log" ||
        fail "chromium failed on the page ($1): $(tail -5 "$1.chromium.log")"
    [ -s "$1.png" ] || fail "no screenshot $1.png"
}

dom_attr() {
    sed -n "s/.*$2=\"\\([^\"]*\\)\".*/\\1/p" "$1" | head -1
}

# ---- 1. the embedded world over HTTP ------------------------------------
"$BIN" --http 127.0.0.1:0 --seconds 120 --bots 12 --seed 7 >viewer.out 2>viewer.err &
VIEWER_PID=$!
wait_for_url
wait_for_view 8

curl -fsS "$URL" >page.html || fail "GET / failed"
grep -q '<canvas id="map"' page.html || fail "GET / is not the page"
code=$(curl -s -o /dev/null -w '%{http_code}' "${URL}nothing")
[ "$code" = 404 ] || fail "GET /nothing answered $code, not 404"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "${URL}state.json")
[ "$code" = 405 ] || fail "POST /state.json answered $code, not 405"

curl -fsS "${URL}state.json" >s1.json || fail "GET /state.json failed"
sleep 1
curl -fsS "${URL}state.json" >s2.json || fail "GET /state.json failed"
for field in '"mode":"embedded"' '"state":"connected"' '"view_radius":30' '"zones_known":true' \
    '"self":{"id":' '"badge":{"verification":"strong","level":2,"method":"ekyc-face","actor":"human"' \
    '"name":"viewer"' '"entities":[{' '"kind":"avatar","pos":[' '"kind":"object","pos":[' \
    '"holder":' '"actor":"agent","acting_for":"' '"acting_for_name":"' '"actor":"bot"' \
    '"verification":"none"' '"yaw":' \
    '{"name":"lounge","shape":"box","center":[16,0,-8],"half":[6,3,5],"private":true' \
    '{"name":"plaza","shape":"sphere","center":[-12,0,10],"half":[7,0,0],"private":false'; do
    grep -qF "$field" s1.json || fail "state.json lacks $field: $(cat s1.json)"
done
avatar_positions s1.json >p1.txt
avatar_positions s2.json >p2.txt
[ "$(wc -l <p1.txt)" -ge 6 ] || fail "fewer than 6 avatars in state.json: $(cat s1.json)"
moved=$(count_moved p1.txt p2.txt 0.3)
[ "$moved" -ge 3 ] || fail "only $moved avatars moved 0.3 m or more in 1 s (state.json)"
echo "state.json: $(wc -l <p1.txt) avatars, $moved moved in 1 s"

# ---- 2. the page in Chromium, twice -------------------------------------
shot first
sleep 1.5
shot second
for s in first second; do
    title=$(sed -n 's:.*<title>\(.*\)</title>.*:\1:p' "$s.html" | head -1)
    n=$(echo "$title" | sed -n 's/^kizuna viewer: \([0-9]*\) avatars$/\1/p')
    [ -n "$n" ] || fail "$s: page title is '$title', not 'kizuna viewer: N avatars'"
    dom_attr "$s.html" data-drawn | tr ' ' '\n' |
        sed -n 's/^\([0-9]*\):\(-*[0-9]*\),\(-*[0-9]*\)$/\1 \2 \3/p' >"$s.dots"
    listed=$(wc -l <"$s.dots")
    [ "$listed" -eq "$n" ] || fail "$s: title says $n avatars, data-drawn lists $listed"
    [ "$n" -ge 6 ] || fail "$s: only $n avatars drawn"
    # 2 s of virtual time at one poll per 100 ms: the page keeps polling.
    polls=$(dom_attr "$s.html" data-polls)
    [ "${polls:-0}" -ge 5 ] || fail "$s: the page drew only '${polls}' answers of state.json"
done
moved=$(count_moved first.dots second.dots 3)
[ "$moved" -ge 3 ] || fail "only $moved drawn avatars moved 3 px or more between the screenshots"
echo "page: $(wc -l <first.dots) and $(wc -l <second.dots) avatars drawn, $moved moved"

# ---- 3. the pixels ------------------------------------------------------
cmp -s first.png second.png && fail "the two screenshots are identical"
legend=$(dom_attr first.html data-legend)
echo "$legend" | grep -Eq '^[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+$' || fail "no data-legend box: '$legend'"
cp "$HERE/compare.html" .
timeout 60 "$CHROMIUM" "${CHROME_FLAGS[@]}" --user-data-dir="$WORK/profile-compare" \
    --allow-file-access-from-files --virtual-time-budget=5000 --dump-dom \
    "file://$WORK/compare.html?a=first.png&b=second.png&skip=$legend" >compare.out 2>compare.log ||
    fail "chromium failed on compare.html"
result=$(sed -n 's:.*<title>\(.*\)</title>.*:\1:p' compare.out | head -1)
set -- $(echo "$result" |
    sed -n 's/^compare: \([0-9]*x[0-9]*\) a=\([0-9]*\) b=\([0-9]*\) moved=\([0-9]*\)$/\1 \2 \3 \4/p')
[ $# -eq 4 ] || fail "pixel comparison: '$result'"
[ "$1" = 800x600 ] || fail "screenshots are $1, not 800x600"
# A dot is about 110 px; 150 needs more than one dot painted, and more
# than one dot's worth of pixels changed.
[ "$2" -ge 150 ] && [ "$3" -ge 150 ] || fail "too few avatar pixels: $result"
[ "$4" -ge 150 ] || fail "avatar pixels did not move: $result"
echo "pixels: $result"

# ---- 4. stopping --------------------------------------------------------
kill -TERM "$VIEWER_PID"
status=0
wait "$VIEWER_PID" || status=$?
VIEWER_PID=
[ "$status" -eq 0 ] || fail "viewer exited with $status after SIGTERM"
grep -q '^viewer: stopping; 12 of 12 bots connected' viewer.out || fail "no clean stop line"

status=0
timeout 30 "$BIN" --http 127.0.0.1:0 --seconds 3 --bots 2 --seed 3 >short.out 2>short.err || status=$?
[ "$status" -eq 0 ] || fail "--seconds 3 run exited with $status: $(cat short.err)"
grep -q '^viewer: http://127\.0\.0\.1:[0-9]*/$' short.out || fail "--seconds run printed no URL"
status=0
"$BIN" --bots many >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "--bots many exited with $status, not 2"
status=0
"$BIN" --connect "$WORK/missing.kzc" --http 127.0.0.1:0 >/dev/null 2>&1 || status=$?
[ "$status" -eq 1 ] || fail "--connect with a missing file exited with $status, not 1"
echo "stopping: SIGTERM and --seconds exit 0, bad options refused"

# ---- 5. --connect to a real server --------------------------------------
if [ -n "$SERVER_BIN" ]; then
    "$SERVER_BIN" keygen --out keys >/dev/null
    # No admin HTTP port where the server has one: it would collide with
    # other tests running at the same time.
    extra=()
    "$SERVER_BIN" run --help 2>&1 | grep -q -- '--admin ' && extra=(--admin off)
    "$SERVER_BIN" run --keys keys --port 0 --bind 127.0.0.1 "${extra[@]}" >server.log 2>&1 &
    KZS_PID=$!
    port=
    for _ in $(seq 1 100); do
        # The listening line, as plain text or as a JSON log record.
        port=$(sed -n -e 's/.*listening on udp port \([0-9]*\).*/\1/p' \
            -e 's/.*"event":"listening".*"udp_port":\([0-9]*\).*/\1/p' server.log | head -1)
        [ -n "$port" ] && break
        kill -0 "$KZS_PID" 2>/dev/null || fail "kizuna-server exited: $(cat server.log)"
        sleep 0.1
    done
    [ -n "$port" ] || fail "kizuna-server did not listen within 10 s"
    "$SERVER_BIN" token mint --keys keys --server "127.0.0.1:$port" --client-id 42 \
        --name Watcher --verified ekyc-face --out viewer.kzc >/dev/null
    "$BIN" --connect viewer.kzc --http 127.0.0.1:0 --seconds 30 >viewer.out 2>viewer.err &
    VIEWER_PID=$!
    wait_for_url
    wait_for_view 0
    curl -fsS "${URL}state.json" >c.json || fail "GET /state.json failed (--connect)"
    for field in '"mode":"connect"' '"state":"connected"' '"zones_known":false' '"zones":[]' \
        '"actor":"human"' '"name":"Watcher"' '"verification":"strong"'; do
        grep -qF "$field" c.json || fail "--connect state.json lacks $field: $(cat c.json)"
    done
    kill -TERM "$VIEWER_PID"
    status=0
    wait "$VIEWER_PID" || status=$?
    VIEWER_PID=
    [ "$status" -eq 0 ] || fail "--connect viewer exited with $status after SIGTERM"
    kill -TERM "$KZS_PID"
    wait "$KZS_PID" || true
    KZS_PID=
    echo "connect: joined kizuna-server with a minted token"
fi

OK=1
echo "viewer_browser: passed"
