#!/usr/bin/env bash
# The main job: a real Apache Cassandra with the cqlready agent, watched as it
# happens — the JVM start, Cassandra's mode changes, the moment CQL answers,
# READY=1 arriving at a stand-in for systemd (with the sender's PID), then
# `cqlready status`, and STOPPING=1 when the node is stopped.
#
#   bash tests/demo.sh              # real Cassandra 5.0 (jars fetched on first run)
#   bash tests/demo.sh --fixture    # a small CQL-speaking JVM instead: seconds, no download
#   bash tests/demo.sh --systemd    # real Cassandra under a real systemd (docker/systemd/cassandra.service)
#
# Ports: CQL 19042, storage 17000, JMX 17199 (override with DEMO_CQL_PORT etc.).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
mode=cassandra
case "${1:-}" in
    --fixture) mode=fixture ;;
    --systemd) mode=systemd ;;
    ""|--cassandra) ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
esac
if [[ $mode == systemd ]]; then
    exec bash "$here/systemd/cassandra-demo.sh"
fi

cql_port="${DEMO_CQL_PORT:-19042}"
t0=$EPOCHREALTIME
say() { awk -v a="$t0" -v b="$EPOCHREALTIME" -v m="$*" 'BEGIN { printf "[demo   +%.3fs] %s\n", b - a, m }'; }

say "building cqlready (release)"
(cd "$root" && cargo build --release --quiet)
lib="$root/target/release/libcqlready.so"
cli="$root/target/release/cqlready"

work="$(mktemp -d /tmp/cqlready-demo.XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

python3 -u "$here/tools/notify_listener.py" "$work/notify.sock" &
pids+=($!)
for _ in $(seq 100); do [[ -S "$work/notify.sock" ]] && break; sleep 0.05; done
export NOTIFY_SOCKET="$work/notify.sock" WATCHDOG_USEC=10000000

if [[ $mode == fixture ]]; then
    mkdir -p "$work/classes"
    javac --release 8 -d "$work/classes" "$root/tests/fixtures/CqlFixture.java"
    say "starting a JVM with -agentpath:$lib=port=$cql_port (CQL opens in 2 s)"
    mkfifo "$work/stdin"
    java -agentpath:"$lib=port=$cql_port" -cp "$work/classes" CqlFixture <"$work/stdin" &
    jvm=$!
    pids+=("$jvm")
    exec 3>"$work/stdin"
    sleep 2
    say "fixture: listen $cql_port"
    echo "listen $cql_port cql" >&3
else
    say "fetching Cassandra (first run only)"
    bash "$here/cassandra/fetch.sh" >/dev/null
    say "starting Cassandra with JVM_EXTRA_OPTS=-agentpath:$lib (port from its cassandra.yaml)"
    JVM_EXTRA_OPTS="-agentpath:$lib" bash "$here/cassandra/run.sh" --fast --fresh --heap 1G \
        --base "$work/node" --native-port "$cql_port" \
        --storage-port "${DEMO_STORAGE_PORT:-17000}" --jmx-port "${DEMO_JMX_PORT:-17199}" \
        > >(grep --line-buffered -E 'cqlready|Starting listening for CQL|Startup complete|JOINING|NORMAL|Node /.* state jump' \
              | sed -u 's/^/[cassandra] /') 2>&1 &
    jvm=$!
    pids+=("$jvm")
fi

say "JVM pid $jvm; waiting: cqlready wait --pid $jvm"
"$cli" wait --pid "$jvm" --timeout 5m
say "ready. cqlready status --pid $jvm:"
"$cli" status --pid "$jvm" | sed 's/^/    /'
say "cqlready probe --pid $jvm: $("$cli" probe --pid "$jvm")"
say "stopping the JVM (SIGTERM)"
if [[ $mode == fixture ]]; then echo "exit 0" >&3; else kill -TERM "$jvm"; fi
wait "$jvm" 2>/dev/null || true
for _ in $(seq 100); do [[ -e /tmp/cqlready-$jvm ]] || break; sleep 0.05; done
say "JVM exited; its status socket is $( [[ -e /tmp/cqlready-$jvm ]] && echo 'STILL THERE' || echo gone)"
