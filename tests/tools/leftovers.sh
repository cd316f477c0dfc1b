#!/usr/bin/env bash
# Lists what the tests left behind and exits 1 if there is anything:
#   - in /tmp, project entries created since MARKER (a file touched when the
#     run started) whose owner is gone: the agent's default socket directory
#     /tmp/cqlready-<jvm pid>, the tests' /tmp/cqlt-<tag>-<test pid>-<n>, the
#     scripts' /tmp/cqlready-*.XXXXXX, HotSpot's .java_pid/.attach_pid files;
#   - processes of this checkout still running: anything whose command line
#     names this checkout (the agent library, the command, a test binary, the
#     fixture's class path) or a test directory whose test binary has ended;
#   - throwaway systemd containers (machines named cqlready-*) still up.
# Entries and processes of a run still going on (their owner alive) are not
# leftovers, so this can run while other test runs share the machine.
#
#   bash tests/tools/leftovers.sh MARKER
set -uo pipefail
marker=${1:?usage: leftovers.sh MARKER}
root=$(cd "$(dirname "$0")/../.." && pwd)
left=()

alive() { [ -n "$1" ] && [ -d "/proc/$1" ]; }

while IFS= read -r -d '' path; do
    name=${path#/tmp/}
    owner=
    case $name in
        cqlready-[0-9]*) owner=${name#cqlready-}; owner=${owner%%[!0-9]*} ;;
        cqlt-*) owner=$(sed -E 's/^cqlt-.*-([0-9]+)-[0-9]+$/\1/' <<<"$name") ;;
        .java_pid* | .attach_pid*) owner=${name#.*_pid} ;;
    esac
    alive "$owner" && continue
    left+=("file   $path")
done < <(find /tmp -maxdepth 1 -newer "$marker" \
    \( -name 'cqlready-*' -o -name 'cqlt-*' -o -name '.java_pid*' -o -name '.attach_pid*' \) -print0 2>/dev/null)

for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [ "$pid" = $$ ] && continue
    cmd=$({ tr "\0" " " <"/proc/$pid/cmdline"; } 2>/dev/null) || continue
    [ -n "$cmd" ] || continue
    case $cmd in *leftovers.sh*) continue ;; esac
    hit=
    if [[ $cmd == *"$root/"* ]]; then
        hit=1
    elif [[ $cmd =~ /tmp/cqlt-[a-z0-9]+-([0-9]+)-[0-9]+ ]]; then
        alive "${BASH_REMATCH[1]}" || hit=1
    fi
    # Only what this run started: younger than the marker.
    if [ -n "$hit" ] && [ "/proc/$pid" -nt "$marker" ]; then
        left+=("proc   $pid ${cmd:0:200}")
    fi
done

if command -v machinectl >/dev/null 2>&1; then
    while read -r m _; do
        case $m in cqlready-*) left+=("machine $m") ;; esac
    done < <(machinectl list --no-legend 2>/dev/null)
fi

if [ ${#left[@]} -gt 0 ]; then
    echo "leftovers: the tests left ${#left[@]} thing(s) behind:" >&2
    printf '  %s\n' "${left[@]}" >&2
    exit 1
fi
echo "leftovers: none (nothing of the project's left in /tmp or running)"
