#!/usr/bin/env bash
# Fails if any C or C++ source casts a pointer to an atomic type, e.g.
# `(_Atomic uint64_t *)&plain` or `(atomic_int *)p`. Accessing a plain
# object through such a pointer is undefined behaviour (the atomic type may
# differ in size, alignment or representation, and the compiler may assume
# the object was never plain). Shared fields are declared _Atomic instead,
# or, in public headers that must stay C++-compatible, left plain and
# touched only with the GCC/Clang __atomic builtins.
#
# Usage: atomic_casts.sh <source-dir>
set -euo pipefail

src=${1:?usage: atomic_casts.sh <source-dir>}
cd "$src"

# A cast: an opening parenthesis, a type naming _Atomic (keyword or
# specifier form) or a stdatomic.h typedef, a star, and the closing
# parenthesis right after it. A parameter list such as
# `(_Atomic uint64_t *p)` names the parameter before ')', so it is not a
# cast.
keyword='\([^()]*\b_Atomic\b[^()]*\*[[:space:]]*\)'
specifier='\([^()]*\b_Atomic[[:space:]]*\([^()]*\)[^()]*\*[[:space:]]*\)'
typedefs='\([[:space:]]*((const|volatile)[[:space:]]+)*atomic_[a-z0-9_]+[[:space:]]*\*[[:space:]]*\)'

dirs=()
for d in core net sim server bench examples tests; do
    [[ -d $d ]] && dirs+=("$d")
done

hits=$(grep -rnE --include='*.c' --include='*.h' --include='*.cpp' \
    -e "$keyword" -e "$specifier" -e "$typedefs" "${dirs[@]}" || true)
if [[ -n $hits ]]; then
    echo "casts to an atomic type (undefined on a plain object):" >&2
    echo "$hits" >&2
    exit 1
fi
echo "no casts to atomic types in ${dirs[*]}"
