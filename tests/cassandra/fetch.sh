#!/usr/bin/env bash
# Fetch Apache Cassandra (cassandra-all + runtime deps) from Maven Central.
#
#   tests/cassandra/fetch.sh            # uses the version pinned in pom.xml
#   CASSANDRA_VERSION=5.0.8 tests/cassandra/fetch.sh
#
# Result: ${CQLREADY_CACHE:-$HOME/.cache/cqlready}/cassandra-<version>/lib/*.jar
# plus conf/hotspot_compiler (extracted from cassandra-all.jar).
# Idempotent: a marker file (.complete) makes later runs a no-op.
# Progress goes to stderr; the LAST line of stdout is the lib dir.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${CQLREADY_CACHE:-$HOME/.cache/cqlready}"
pinned="$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$here/pom.xml" | head -n1)"
version="${CASSANDRA_VERSION:-$pinned}"
home="$cache/cassandra-$version"
lib="$home/lib"
marker="$home/.complete"

if [[ -f "$marker" && -f "$lib/cassandra-all-$version.jar" ]]; then
    echo "fetch.sh: cassandra $version already present ($(ls "$lib" | wc -l) jars)" >&2
    echo "$lib"
    exit 0
fi

# Serialise concurrent fetches (parallel test runs); re-check once we hold the lock.
mkdir -p "$home"
exec 9>"$home/.lock"
flock 9
if [[ -f "$marker" && -f "$lib/cassandra-all-$version.jar" ]]; then
    echo "$lib"
    exit 0
fi

command -v mvn >/dev/null || { echo "fetch.sh: mvn not found (apt-get install maven)" >&2; exit 1; }

echo "fetch.sh: fetching cassandra-all $version and runtime deps into $lib" >&2
start=$(date +%s)
tmp="$home/lib.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
# -B: batch mode (no progress bars); keep one "Downloaded" line per artifact as progress.
mvn -B -Dstyle.color=never -f "$here/pom.xml" \
    -Dcassandra.version="$version" \
    dependency:copy-dependencies \
    -DincludeScope=runtime \
    -DoutputDirectory="$tmp" 2>&1 \
    | sed 's/\x1b\[[0-9;]*m//g' | grep -E 'Downloaded from|BUILD|ERROR' >&2 || true

if [[ ! -f "$tmp/cassandra-all-$version.jar" ]]; then
    echo "fetch.sh: mvn did not produce cassandra-all-$version.jar (see errors above)" >&2
    exit 1
fi

rm -rf "$lib"
mv "$tmp" "$lib"
trap - EXIT
mkdir -p "$home/conf"
# Cassandra's JIT hints (conf/hotspot_compiler in the tarball) ship inside the jar too.
python3 - "$lib/cassandra-all-$version.jar" "$home/conf/hotspot_compiler" <<'PY' || echo "fetch.sh: no hotspot_compiler in the jar (optional)" >&2
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("META-INF/hotspot_compiler"))
PY
echo "$version" > "$marker"
echo "fetch.sh: done in $(( $(date +%s) - start ))s: $(ls "$lib" | wc -l) jars, $(du -sh "$lib" | cut -f1)" >&2
echo "$lib"
