#!/usr/bin/env bash
# A CI-sized fuzz run: every target for N seconds (default 5) under libFuzzer.
# The stable-only alternative, and what tests/run.sh runs, is the corpus
# replay test: `cargo test --test fuzz_corpus`.
#
#   bash fuzz/ci.sh [SECS]     # build, then fuzz each target SECS seconds
#   bash fuzz/ci.sh --build    # build only (tests/run.sh, ahead of time)
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
if [ "${1:-}" = --build ]; then
    exec cargo fuzz build -O
fi
SECS=${1:-5}
cargo fuzz build -O >/dev/null 2>&1
for t in $(cargo fuzz list); do
    mkdir -p "work/$t"
    max_len=8192; [ "$t" = cql_frame ] && max_len=70000
    cargo fuzz run -O "$t" "work/$t" "corpus/$t" -- -max_total_time="$SECS" -max_len="$max_len" \
        -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 -print_final_stats=1 >"work/$t.log" 2>&1 \
        || { echo "$t: FAILED"; tail -30 "work/$t.log"; exit 1; }
    echo "$t: ok, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "work/$t.log" | grep -o '[0-9]*$' || echo '?') inputs"
done
