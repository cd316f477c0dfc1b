#!/usr/bin/env bash
# selftest.sh - prove harness.sh against a real systemd: boot a container,
# check that it leaves the host alone, and check sd_notify semantics that
# cqlready relies on (Type=notify + NotifyAccess=main, STATUS=, WATCHDOG=1).
# Always tears the container down (trap). Exit 0 iff every check passed.
# Prints "ok - ..." / "not ok - ..." lines and a final "N passed, N failed".
#
#   tests/systemd/selftest.sh            (as root; needs systemd-container)

set -u
set -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
H=$HERE/harness.sh
NAME=selftest-$$
FIX=/opt/cqlready-sdtest          # where fixtures/ appears inside
PASS=0 FAIL=0

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 1000 )); }
T_START=$(now_ms)

ok()   { PASS=$((PASS + 1)); echo "ok - $*"; }
nok()  { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
check() { local desc=$1; shift; if "$@"; then ok "$desc"; else nok "$desc"; fi; }
note() { echo "# $*"; }

in_c()  { "$H" exec "$NAME" -- "$@"; }
sctl()  { "$H" systemctl "$NAME" "$@"; }
prop()  { sctl show -P "$2" "$1"; }     # prop UNIT PROPERTY
jrnl()  { "$H" journal "$NAME" -o cat "$@"; }

# wait_for SECS CMD... : poll CMD until it succeeds, at most SECS seconds
wait_for() {
    local secs=$1; shift
    local deadline=$(( $(now_ms) + secs * 1000 ))
    until "$@"; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

cleanup() {
    "$H" down "$NAME" || echo "# WARNING: harness down $NAME failed" >&2
    rm -f "$MARKER"
}

[ "$(id -u)" = 0 ] || { echo "selftest.sh: must run as root" >&2; exit 1; }
command -v systemd-nspawn >/dev/null || { echo "selftest.sh: systemd-nspawn missing (apt-get install -y systemd-container)" >&2; exit 1; }

# ---- host state before ----------------------------------------------------
MARKER=/tmp/cqlready-sdtest-marker.$$
MARKER_TEXT="marker $$ $(date +%s%N)"
echo "$MARKER_TEXT" > "$MARKER"
cg_mounts() { findmnt -rn -o TARGET,OPTIONS -t cgroup,cgroup2,tmpfs | grep '^/sys/fs/cgroup'; }
CG_BEFORE=$(cg_mounts)
TMP_COUNT_BEFORE=$(find /tmp -mindepth 1 -maxdepth 1 | wc -l)
ORPHANS_BEFORE=$(find /sys/fs/cgroup -maxdepth 6 -type d -name 'cqlready-sd-*' 2>/dev/null | wc -l)

trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- boot -------------------------------------------------------------------
BINDS=(--bind-ro "$HERE/fixtures:$FIX")
[ -d "$REPO/target" ] && BINDS+=(--bind-ro "$REPO/target")
T0=$(now_ms)
if PID1=$("$H" up "$NAME" --unit-dir "$HERE/fixtures/units" "${BINDS[@]}"); then
    T1=$(now_ms)
    ok "harness up: container PID 1 = $PID1"
    note "boot: harness up took $((T1 - T0)) ms (is-system-running: $(cat /run/cqlready-systemd/$NAME/boot.state 2>/dev/null))"
else
    nok "harness up"
    echo "$((PASS)) passed, $((FAIL)) failed"
    exit 1
fi
check "pid1 subcommand agrees" test "$("$H" pid1 "$NAME")" = "$PID1"
check "container PID 1 is systemd" test "$(cat /proc/$PID1/comm)" = systemd
check "systemd inside is 252" bash -c "'$H' exec '$NAME' -- systemctl --version | head -1 | grep -q '^systemd 252 '"
st=$(sctl is-system-running)
check "is-system-running is running/degraded ($st)" bash -c "[[ '$st' == running || '$st' == degraded ]]"
check "exec passes the exit code through" bash -c "'$H' exec '$NAME' -- sh -c 'exit 7'; [ \$? = 7 ]"
check "exec passes stdout through" test "$(in_c echo hello)" = hello
check "exec runs in the container's pid namespace (systemd is pid 1)" test "$(in_c cat /proc/1/comm)" = systemd

# ---- the container's filesystem ----------------------------------------------
check "container / is a fresh tmpfs" test "$(in_c findmnt -no FSTYPE /)" = tmpfs
check "container /tmp does not show the host's /tmp (marker absent)" in_c test ! -e "$MARKER"
check "container /tmp is nearly empty" test "$(in_c find /tmp -mindepth 1 -maxdepth 1 ! -name '.*-unix' | wc -l)" -le 3
check "container /usr is read-only" bash -c "'$H' exec '$NAME' -- findmnt -no OPTIONS /usr | grep -q '^ro'"
check "container /etc is read-only" bash -c "'$H' exec '$NAME' -- findmnt -no OPTIONS /etc | grep -q '^ro'"
check "container has only a private network (lo)" test "$(in_c ls /sys/class/net)" = lo
check "units from --unit-dir appear in /run/systemd/system" in_c test -f /run/systemd/system/sdtest-ready.service
if [ -d "$REPO/target" ]; then
    check "host build dir $REPO/target is visible inside" in_c test -d "$REPO/target"
    for so in "$REPO"/target/{debug,release}/libcqlready.so; do
        [ -f "$so" ] && check "$so is readable inside" in_c test -r "$so"
    done
fi
if jv=$(in_c java -version 2>&1); then
    ok "java -version runs inside: $(head -1 <<<"$jv")"
else
    nok "java -version runs inside: $jv"
fi
check "python3 runs inside" in_c python3 -c 'import socket'

# ---- Type=notify, NotifyAccess=main, READY=1 from the main PID ---------------
U=sdtest-ready.service
T0=$(now_ms)
sctl start "$U" &
START_PID=$!
saw_activating=0
while kill -0 $START_PID 2>/dev/null; do
    [ "$(prop $U ActiveState)" = activating ] && saw_activating=1
    sleep 0.2
done
wait $START_PID; rc=$?
T1=$(now_ms)
check "systemctl start $U succeeded" test $rc = 0
check "systemctl start blocked until READY=1 (took $((T1 - T0)) ms, script waits 2000)" test $((T1 - T0)) -ge 2000
check "unit was 'activating' while waiting for READY=1" test $saw_activating = 1
MAIN=$(prop $U MainPID)
check "MainPID is set ($MAIN)" test "${MAIN:-0}" -gt 0
check "ActiveState=active" test "$(prop $U ActiveState)" = active
check "SubState=running" test "$(prop $U SubState)" = running
check "StatusText names the main PID ('$(prop $U StatusText)')" test "$(prop $U StatusText)" = "serving, pid $MAIN"
check "journal: READY=1 was sent from the main PID" bash -c "'$H' journal '$NAME' -o cat -u $U | grep -qx 'sent READY=1 from pid $MAIN'"
sctl stop "$U"
check "stop (STOPPING=1 + exit 0) leaves Result=success" test "$(prop $U Result)" = success
check "and ActiveState=inactive" test "$(prop $U ActiveState)" = inactive

# ---- READY=1 from a child is refused with NotifyAccess=main ------------------
U=sdtest-child.service
sctl start --no-block "$U"
refused() { jrnl -u "$U" | grep -q 'but reception only permitted for main PID'; }
if wait_for 10 refused; then
    ok "journal shows the refusal of a child's READY=1"
    note "journal says: $(jrnl -u "$U" | grep 'reception only permitted' | head -1)"
else
    nok "journal shows the refusal of a child's READY=1"; jrnl -u "$U" | sed 's/^/#   /'
fi
check "unit is still activating (READY=1 from the child ignored)" test "$(prop $U ActiveState)" = activating
check "and its StatusText stays unset ('$(prop $U StatusText)')" test -z "$(prop $U StatusText)"
sctl stop "$U"

# ---- WatchdogSec= ---------------------------------------------------------------
U=sdtest-watchdog.service
check "systemctl start $U" sctl start "$U"
MAIN=$(prop $U MainPID)
check "WATCHDOG_USEC=1000000 and WATCHDOG_PID=main PID are passed" \
    bash -c "'$H' journal '$NAME' -o cat -u $U | grep -qx 'WATCHDOG_USEC=1000000 WATCHDOG_PID=$MAIN pid=$MAIN'"
check "still active while it pings (1.2 s of pings for a 1 s watchdog)" test "$(prop $U ActiveState)" = active
T0=$(now_ms)
is_failed() { [ "$(prop $U ActiveState)" = failed ]; }
if wait_for 15 is_failed; then
    T1=$(now_ms)
    ok "unit failed after it stopped pinging ($((T1 - T0)) ms after READY)"
else
    nok "unit failed after it stopped pinging (ActiveState=$(prop $U ActiveState))"
fi
check "Result=watchdog" test "$(prop $U Result)" = watchdog
if jrnl -u "$U" | grep -q 'Watchdog timeout (limit 1s)!'; then
    ok "journal shows the watchdog timeout"
    jrnl -u "$U" | grep -E 'Watchdog timeout|Killing process|SIGABRT|Main process exited|Failed with result' | head -4 | sed 's/^/# journal: /'
else
    nok "journal shows the watchdog timeout"; jrnl -u "$U" | sed 's/^/#   /'
fi
sctl reset-failed "$U"

# ---- systemd-analyze verify ------------------------------------------------------
if out=$(in_c systemd-analyze verify /run/systemd/system/sdtest-ready.service /run/systemd/system/sdtest-child.service /run/systemd/system/sdtest-watchdog.service 2>&1); then
    ok "systemd-analyze verify accepts the self-test units"
else
    nok "systemd-analyze verify accepts the self-test units: $out"
fi
in_c sh -c 'printf "[Service]\nType=notify\nNotifyAccess=main\nExecStart=/nonexistent/cassandra -f\nWatchdogSec=nonsense\n" > /tmp/broken.service'
out=$(in_c systemd-analyze verify /tmp/broken.service 2>&1); rc=$?
check "systemd-analyze verify rejects a broken unit (rc=$rc)" test $rc != 0
sed 's/^/# verify: /' <<<"$out"
# the same on the host, without a container: harness.sh verify
check "harness.sh verify (host, stub for python3) accepts the self-test units" \
    "$H" verify --stub /usr/bin/python3 "$HERE"/fixtures/units/*.service
check "harness.sh verify without the stub reports the missing binary" \
    bash -c "'$H' verify '$HERE/fixtures/units/sdtest-ready.service' 2>&1 | grep -q 'python3 is not executable'"

# ---- teardown and host checks -----------------------------------------------------
# something left running by an exec must die with the container too
"$H" exec "$NAME" -- sleep 300 &
SLEEP_EXEC=$!; disown $SLEEP_EXEC
wait_for 5 in_c pgrep -x sleep >/dev/null
# harness.sh exec ends in an exec of nsenter, whose child is the sleep
SLEEP_PID=$(pgrep -P $SLEEP_EXEC -x sleep || true)
NSPAWN_PID=$(cat "/run/cqlready-systemd/$NAME/nspawn.pid")
trap - EXIT
T0=$(now_ms)
NSLOG=$(mktemp /tmp/cqlready-sdtest-nspawn-log.XXXXXX)
if CQLREADY_SD_LOG_COPY=$NSLOG "$H" down "$NAME"; then ok "harness down ($(( $(now_ms) - T0 )) ms)"; else nok "harness down"; fi
check "down took less than 10 s" test $(( $(now_ms) - T0 )) -lt 10000

check "shutdown was orderly (nspawn: 'Container ... has been shut down')" grep -q "Container .* has been shut down" "$NSLOG"
rm -f "$NSLOG"
check "down is idempotent" "$H" down "$NAME"
check "host /tmp marker intact" test "$(cat "$MARKER" 2>/dev/null)" = "$MARKER_TEXT"
TMP_COUNT_AFTER=$(find /tmp -mindepth 1 -maxdepth 1 | wc -l)
check "host /tmp not emptied ($TMP_COUNT_BEFORE entries before, $TMP_COUNT_AFTER after)" test "$TMP_COUNT_AFTER" -ge $((TMP_COUNT_BEFORE / 2))
check "host cgroup mounts unchanged (still rw)" test "$(cg_mounts)" = "$CG_BEFORE"
check "host /sys/fs/cgroup still writable" bash -c 'd=/sys/fs/cgroup/cqlready-rwtest.$$; mkdir "$d" 2>/dev/null && rmdir "$d" || { [ -n "$(findmnt -no OPTIONS /sys/fs/cgroup | grep "^rw")" ]; }'
check "no cgroups of ours left" test "$(find /sys/fs/cgroup -maxdepth 6 -type d -name 'cqlready-sd-*' 2>/dev/null | wc -l)" -le "$ORPHANS_BEFORE"
no_leftover_procs() {
    local p cmd
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = $$ ] && continue
        cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
        case $cmd in *"--machine=cqlready-$NAME "*) echo "# left: ${p#/proc/} $cmd"; return 1;; esac
    done
    for p in $NSPAWN_PID $PID1 $SLEEP_PID; do
        [ -d /proc/$p ] && [ "$(awk '{print $3}' /proc/$p/stat 2>/dev/null)" != Z ] && { echo "# left: $p $(cat /proc/$p/comm)"; return 1; }
    done
    return 0
}
check "no process of the container left (nspawn $NSPAWN_PID, pid1 $PID1, exec'd sleep ${SLEEP_PID:-?})" no_leftover_procs
check "state dir removed" test ! -e "/run/cqlready-systemd/$NAME"
rm -f "$MARKER"

note "selftest took $(( $(now_ms) - T_START )) ms"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
