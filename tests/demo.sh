#!/usr/bin/env bash
# The main job: a real Apache Cassandra with the cqlready agent, watched as it
# happens. One timeline from the demo's start, one line per thing that
# matters: the agent's log lines, Cassandra's mode changes and the moment it
# listens for CQL clients, each notification arriving at a stand-in for
# systemd's notify socket with the sender's PID, `cqlready status`, and the
# stop (a real SIGTERM) with its STOPPING=1.
#
#   bash tests/demo.sh              # real Cassandra 5.0 (jars fetched on first run)
#   bash tests/demo.sh --fixture    # a small CQL-speaking JVM instead of Cassandra
#   bash tests/demo.sh --systemd    # real Cassandra under a real systemd (docker/systemd/cassandra.service)
#   bash tests/demo.sh --record     # the real-Cassandra demo, its story also written to
#                                   # bench/results-demo.md (shown in docs/testing.md)
#
# Ports: CQL 19042, storage 17000, JMX 17199 (override with DEMO_CQL_PORT etc.).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
mode=cassandra
case "${1:-}" in
    --fixture) mode=fixture ;;
    --systemd) mode=systemd ;;
    --record)
        out="$root/bench/results-demo.md"
        log=$(mktemp)
        trap 'rm -f "$log"' EXIT
        bash "$0" | tee "$log"
        {
            echo "# The demo: a real Cassandra with the agent"
            echo
            echo "\`bash tests/demo.sh --record\`, $(date -u '+%Y-%m-%d %H:%M UTC'), git $(git -C "$root" rev-parse --short HEAD); the story after the build:"
            echo
            echo '```'
            sed -n '/^\[notify /,$p' "$log"
            echo '```'
        } >"$out.tmp"
        mv "$out.tmp" "$out"
        echo "demo.sh: wrote $out" >&2
        exit 0 ;;
    "" | --cassandra) ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
esac
if [[ $mode == systemd ]]; then
    exec bash "$here/systemd/cassandra-demo.sh"
fi

cql_port="${DEMO_CQL_PORT:-19042}"
# One clock for every line: microseconds since the demo started.
t0=${EPOCHREALTIME/./}
line() { # line SOURCE TEXT...
    local d=$((${EPOCHREALTIME/./} - t0))
    printf '[%-9s +%3d.%03ds] %s\n' "$1" $((d / 1000000)) $((d / 1000 % 1000)) "${*:2}"
}
say() { line demo "$@"; }

# What of Cassandra's output tells the story: the agent's own lines (they
# start with "cqlready: "), the operation mode as StorageService sets it,
# the gossip state jumping to NORMAL, CQL listening, startup complete, and
# the shutdown. The rest (flushes, compactions, the configuration dump) is
# in the node's logs/system.log.
story() { # story SOURCE: filter stdin, print the lines that tell the story
    local source=$1 l msg
    while IFS= read -r l; do
        if [[ $l == cqlready:* ]]; then
            line "$source" "$l"
            continue
        fi
        [[ $l =~ ' - '(.*)$ ]] || continue
        msg=${BASH_REMATCH[1]}
        case $msg in
            STARTING:* | JOINING:* | NORMAL:* | LEAVING:* | DRAINING:* | DRAINED* | \
                *"state jump to NORMAL"* | *"listening for CQL clients"* | \
                "Startup complete"* | *"Announcing shutdown"* | "Shutdown complete"*)
                line "$source" "${msg:0:160}" ;;
        esac
    done
}

# Progress while fetching: every tenth file Maven downloads, and its summary.
fetch_progress() {
    local n=0 l
    while IFS= read -r l; do
        case $l in
            *"Downloaded from"*) n=$((n + 1)); ((n % 10)) || line fetch "$n files downloaded" ;;
            fetch.sh:*) line fetch "$l" ;;
        esac
    done
}

say "building cqlready (cargo build --release; about a minute the first time, then a second)"
(cd "$root" && cargo build --release 2>&1) | while IFS= read -r l; do
    case $l in *Compiling* | *Finished* | *error* | *warning*) line cargo "${l#"${l%%[![:space:]]*}"}" ;; esac
done
[[ ${PIPESTATUS[0]} -eq 0 ]] || { say "the build failed"; exit 1; }
target="${CARGO_TARGET_DIR:-$root/target}"
lib="$target/release/libcqlready.so"
cli="$target/release/cqlready"

work="$(mktemp -d /tmp/cqlready-demo.XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# $! is the listener itself (not a pipe's last stage), so cleanup ends it.
python3 -u "$here/tools/notify_listener.py" "$work/notify.sock" --origin "$t0" \
    > >(tee "$work/notify.log") &
pids+=($!)
for _ in $(seq 100); do [[ -S "$work/notify.sock" ]] && break; sleep 0.05; done
export NOTIFY_SOCKET="$work/notify.sock" WATCHDOG_USEC=10000000

if [[ $mode == fixture ]]; then
    say "compiling the CQL-speaking fixture (javac)"
    mkdir -p "$work/classes"
    javac --release 8 -Xlint:-options -d "$work/classes" "$root/tests/fixtures/CqlFixture.java"
    say "starting a JVM with -agentpath:$lib=port=$cql_port; its CQL port opens 2 s later"
    mkfifo "$work/stdin"
    java -agentpath:"$lib=port=$cql_port" -cp "$work/classes" CqlFixture <"$work/stdin" \
        > >(story jvm) 2>&1 &
    jvm=$!
    pids+=("$jvm")
    exec 3>"$work/stdin"
    sleep 2 # the story's pause, not a synchronisation
    say "the fixture opens CQL on port $cql_port"
    echo "listen $cql_port cql" >&3
else
    say "fetching Cassandra 5.0.9 from Maven Central (first run only: about 70 MB)"
    bash "$here/cassandra/fetch.sh" 2> >(fetch_progress) >/dev/null
    say "starting Cassandra with JVM_EXTRA_OPTS=-agentpath:$lib (the agent finds the port in cassandra.yaml)"
    JVM_EXTRA_OPTS="-agentpath:$lib" bash "$here/cassandra/run.sh" --fast --fresh --heap 1G \
        --base "$work/node" --native-port "$cql_port" \
        --storage-port "${DEMO_STORAGE_PORT:-17000}" --jmx-port "${DEMO_JMX_PORT:-17199}" \
        > >(story cassandra) 2>&1 &
    jvm=$!
    pids+=("$jvm")
fi

say "JVM pid $jvm; cqlready wait --pid $jvm blocks until the agent says ready"
"$cli" wait --pid "$jvm" --timeout 5m >/dev/null
say "ready. cqlready status --pid $jvm:"
"$cli" status --pid "$jvm" | sed 's/^/        /'
say "cqlready probe --pid $jvm: $("$cli" probe --pid "$jvm")"
say "stopping the JVM: kill -TERM $jvm"
kill -TERM "$jvm"
code=0
wait "$jvm" 2>/dev/null || code=$?
# The listener prints STOPPING=1 a moment after the JVM sent it.
for _ in $(seq 100); do grep -q STOPPING=1 "$work/notify.log" && break; sleep 0.05; done
grep -q STOPPING=1 "$work/notify.log" || say "no STOPPING=1 arrived"
say "JVM exited with $code (128 + SIGTERM); its status socket is $([[ -e /tmp/cqlready-$jvm ]] && echo 'STILL THERE' || echo gone)"
