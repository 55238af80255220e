#!/usr/bin/env bash
# Keeps docs/API.md from falling behind the public headers.
#
#   tests/cli/api_doc.sh SOURCE_DIR
#
# 1. Every function a public header exports (a declaration that starts
#    with KZ_API in core/, net/ or sim/include/kizuna/*.h) must be named in
#    docs/API.md, either as `name(` or as `name` in backticks.
# 2. Every `kz_name(` that docs/API.md shows must still be declared in a
#    public header (exported or static inline), so a removed or renamed
#    function cannot linger in the reference.
# Prints one line per problem and a summary; exits 1 if there was any.
set -uo pipefail

root=${1:?usage: api_doc.sh SOURCE_DIR}
doc=$root/docs/API.md
shopt -s nullglob
headers=("$root"/core/include/kizuna/*.h "$root"/net/include/kizuna/*.h
         "$root"/sim/include/kizuna/*.h)
if [ ! -f "$doc" ] || [ ${#headers[@]} -eq 0 ]; then
  echo "api_doc: no $doc or no public headers under $root"
  exit 1
fi

# "header name" for each KZ_API declaration. A declaration may run over
# several lines; the function's name is the identifier before the first
# parenthesis. Preprocessor lines (the macro's own #define) are skipped.
exported() {
  local h
  for h in "${headers[@]}"; do
    awk -v header="${h#"$root"/}" '
      /^[ \t]*#/ { next }
      /^[ \t]*KZ_API[ \t]/ {
        decl = $0
        while (decl !~ /\(/ && (getline more) > 0)
          decl = decl " " more
        if (match(decl, /[A-Za-z_][A-Za-z0-9_]*[ \t]*\(/)) {
          name = substr(decl, RSTART, RLENGTH)
          sub(/[ \t]*\($/, "", name)
          print header, name
        }
      }' "$h"
  done
}

# Every identifier a header declares as a function (exported or inline)
# or as a callback type (typedef ... (*kz_name_fn)(...)).
declared() {
  {
    grep -hoE '\b(kz_[a-z0-9_]+)[[:space:]]*\(' "${headers[@]}" | sed -E 's/[[:space:]]*\($//'
    grep -hoE '\(\*[[:space:]]*kz_[a-z0-9_]+\)' "${headers[@]}" | sed -E 's/^\(\*[[:space:]]*//; s/\)$//'
  } | sort -u
}

missing=0
total=0
while read -r header name; do
  total=$((total + 1))
  if ! grep -qE "(^|[^A-Za-z0-9_])${name}\(" "$doc" && ! grep -qF "\`${name}\`" "$doc"; then
    echo "api_doc: not in docs/API.md: ${name} (${header})"
    missing=$((missing + 1))
  fi
done < <(exported)

# A sanity floor: if the extraction broke, say so instead of passing.
if [ "$total" -lt 100 ]; then
  echo "api_doc: found only $total KZ_API functions in the headers; the extraction is broken"
  exit 1
fi

known=$(declared)
stale=0
while read -r name; do
  if ! grep -qxF "$name" <<<"$known"; then
    echo "api_doc: docs/API.md shows ${name}( but no public header declares it"
    stale=$((stale + 1))
  fi
done < <(grep -oE '(^|[^A-Za-z0-9_])kz_[a-z0-9_]+\(' "$doc" | sed -E 's/^[^k]//; s/\($//' | sort -u)

echo "api_doc: $total exported functions, $missing not documented, $stale stale names in docs/API.md"
[ "$missing" -eq 0 ] && [ "$stale" -eq 0 ]
