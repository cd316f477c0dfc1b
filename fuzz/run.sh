#!/usr/bin/env bash
# The long fuzz run: every target for N inputs (default 100000) under
# libFuzzer, with a memory cap (-rss_limit_mb, -malloc_limit_mb: no
# unbounded allocation), a per-input time limit (-timeout: no hang).
#
#   bash fuzz/run.sh 100000            # all targets, 100k inputs each
#   bash fuzz/run.sh 1000000 yaml      # one target
#   MERGE=1 bash fuzz/run.sh 100000    # also minimise new finds into fuzz/corpus
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP=1 lets the
# stable toolchain build with -Zsanitizer. New inputs go to fuzz/work/<target>
# (not committed); crashes to fuzz/artifacts/<target>/ and the script fails.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${1:-100000}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(options yaml cql_frame http_request attach_reply status_json socket_candidates notify status_connections sim_events)
export RUSTC_BOOTSTRAP=1
nice -n 19 cargo fuzz build -O >/dev/null
status=0
for t in "${TARGETS[@]}"; do
    max_len=8192
    [ "$t" = cql_frame ] && max_len=70000
    mkdir -p "work/$t" "artifacts/$t"
    start=$(date +%s)
    if nice -n 19 cargo fuzz run -O "$t" "work/$t" "corpus/$t" -- \
        -runs="$RUNS" -max_len="$max_len" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 \
        -print_final_stats=1 >"work/$t.log" 2>&1; then
        result=ok
    else
        result=FAILED; status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "work/$t.log" | grep -o '[0-9]*$' || echo '?')
    peak=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "work/$t.log" | grep -o '[0-9]*$' || echo '?')
    echo "$t: $result, $runs inputs in $(( $(date +%s) - start )) s, peak RSS ${peak} MB (log fuzz/work/$t.log)"
    if [ "$result" = FAILED ]; then grep -E 'panicked|ERROR|SUMMARY|Test unit written' "work/$t.log" | head -8; fi
    if [ "${MERGE:-0}" = 1 ]; then
        # Adds to corpus/<t> only the new inputs that add coverage.
        before=$(ls "corpus/$t" | wc -l)
        nice -n 19 cargo fuzz run -O "$t" "corpus/$t" "work/$t" -- -merge=1 -max_len="$max_len" >"work/$t.merge.log" 2>&1 || true
        echo "  corpus/$t: $before -> $(ls "corpus/$t" | wc -l) files"
    fi
done
exit $status
