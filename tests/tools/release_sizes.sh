#!/usr/bin/env bash
# The sizes of the release artefacts the packages ship, in docs/numbers.md
# ("a stripped `libcqlready.so` of N bytes and a `cqlready` of M bytes"),
# measured from tools/release.sh's build (glibc 2.17; tests/package.rs and
# tests/release.rs make the same build earlier in tests/run.sh, so here it is
# usually up to date already). Writes them into docs/numbers.md, or with
# --check (tests/run.sh) fails when the file's numbers are not this build's.
#
#   bash tests/tools/release_sizes.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$(bash tools/release.sh | tail -n1 | cut -d' ' -f2)
size() { stat -c %s "$dir/$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
lib=$(size libcqlready.so)
cli=$(size cqlready)
want="a stripped \`libcqlready.so\` of $lib bytes and a \`cqlready\` of $cli bytes"
pattern='a stripped `libcqlready.so` of [0-9,]* bytes and a `cqlready` of [0-9,]* bytes'
have=$(grep -o "$pattern" docs/numbers.md || true)
[ -n "$have" ] || { echo "release_sizes.sh: docs/numbers.md has no line like: $pattern" >&2; exit 1; }
if [ "${1:-}" = --check ]; then
    if [ "$have" != "$want" ]; then
        echo "release_sizes.sh: docs/numbers.md says \"$have\"; this build: \"$want\"" >&2
        echo "release_sizes.sh: run bash tests/tools/release_sizes.sh to update it" >&2
        exit 1
    fi
    echo "release_sizes.sh: docs/numbers.md's sizes are this build's ($lib and $cli bytes)"
else
    sed -i "s/$pattern/$want/" docs/numbers.md
    echo "release_sizes.sh: docs/numbers.md now says: $want"
fi
