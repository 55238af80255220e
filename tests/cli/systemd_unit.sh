#!/usr/bin/env bash
#
# examples/systemd/kizuna-server.service: systemd accepts it (every
# directive known, the ExecStart program executable) and its sandbox keeps
# systemd's own exposure score at or below 2.0 ("OK"; the option counts in tenths), both checked
# offline with systemd-analyze. Also: the example world.ini checks out, and
# docs/OPERATIONS.md documents every setting `run --help` lists.
#
#   bash tests/cli/systemd_unit.sh path/to/kizuna-server
set -euo pipefail
BIN=$1
SRC=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v systemd-analyze >/dev/null; then
    [ "${CI:-}" = true ] && { echo "FAIL: systemd-analyze missing (package systemd)"; exit 1; }
    echo "systemd_unit: systemd-analyze not installed, skipped"
    exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kzs-unit-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
sed "s|/usr/local/bin/kizuna-server|$BIN|" "$SRC/examples/systemd/kizuna-server.service" \
    >"$WORK/kizuna-server.service"
systemd-analyze verify "$WORK/kizuna-server.service"
systemd-analyze security --offline=yes --threshold=20 "$WORK/kizuna-server.service" >"$WORK/security.txt" ||
    { tail -n 20 "$WORK/security.txt"; echo "FAIL: exposure above 2.0"; exit 1; }
grep "Overall exposure level" "$WORK/security.txt"
"$BIN" config check "$SRC/examples/systemd/world.ini" >/dev/null
# Every setting the program knows has its row in the operations guide.
missing=0
for flag in $("$BIN" run --help | sed -n 's/^  --\([a-z0-9-]*\) .*/\1/p'); do
    key=${flag//-/_}
    grep -q "^| \`$key\` |" "$SRC/docs/OPERATIONS.md" || { echo "undocumented setting: $key"; missing=1; }
done
[ $missing -eq 0 ] || { echo "FAIL: docs/OPERATIONS.md lacks settings"; exit 1; }
echo "systemd_unit: 4 passed, 0 failed"
