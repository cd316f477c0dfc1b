#!/usr/bin/env bash
# The long simulation run: COUNT timelines (default 1000000) from seed FIRST
# (default 0x5eed0000) through the monitor's pure core, release build, then
# the 10,000 of every `cargo test` (debug build); both rows go to
# bench/results-sim.md with the machine they ran on.
#
#   bash tools/sim.sh 1000000                # a million timelines
#   bash tools/sim.sh 200000 0x1234          # from another first seed
#   CQLREADY_SIM_SEED=0x5eed0e41 cargo test --test sim   # replay one timeline
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-1000000}
FIRST=${2:-${CQLREADY_SIM_FIRST:-0x5eed0000}}
OUT=bench/results-sim.md
load=$(cut -d' ' -f1-3 /proc/loadavg)
run() { # profile flag, count, first seed
    local log
    log=$(CQLREADY_SIM_COUNT=$2 CQLREADY_SIM_FIRST=$3 cargo test $1 --test sim -- --nocapture 2>&1) || {
        echo "$log" | grep -v '^   ' | tail -60
        echo "tools/sim.sh: the simulation failed (its first failing timeline is above)" >&2
        exit 1
    }
    echo "$log" | grep '^sim: ' >&2
    echo "$log" | sed -n 's/^sim-row: //p'
}
long=$(run --release "$COUNT" "$FIRST")
short=$(run "" 10000 0x5eed0000)
{
    echo "# The monitor's simulation: timelines per second"
    echo
    echo "Written by \`bash tools/sim.sh $COUNT $FIRST\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown),"
    echo "$(nproc) CPUs, load average $load at the start (the machine was shared: CPU seconds are the"
    echo "measure; wall seconds grow with the load). Every timeline is judged by the model of systemd"
    echo "(docs/timelines.md); \"failed\" counts timelines that broke a rule."
    echo
    echo "| build | timelines | first seed | checks simulated | failed | wall s | CPU s | timelines per CPU second |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "$long"
    echo "$short"
} > "$OUT"
cat "$OUT"
