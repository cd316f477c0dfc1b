#!/usr/bin/env bash
# harness.sh - boot a throwaway, real systemd (the host's own systemd 252) in a
# systemd-nspawn container over this machine's root, and run commands in it.
#
# The container: `systemd-nspawn -D / --volatile=yes --bind-ro=/etc -b`:
#   * a fresh tmpfs as /, the host's /usr read-only (so /usr/lib/jvm, python3,
#     systemd, ... are all there) and the host's /etc read-only;
#   * /tmp, /var, /run, /root inside are empty tmpfs: nothing it writes reaches
#     the host, and its tmpfiles setup only ever sees its own /tmp;
#   * a private network namespace (only `lo`) unless --host-network;
#   * started from a cgroup of its own in every cgroup hierarchy (cgroup v2
#     unified, or v1/hybrid), created below the caller's cgroups and removed
#     again by `down`, so no process and no cgroup is left behind.
#
# Usage:
#   harness.sh up <name> [options]         boot; prints the container's PID 1
#       --unit-dir DIR        bind DIR read-only onto /run/systemd/system
#       --bind SRC[:DST]      bind read-write (repeatable; DST defaults to SRC)
#       --bind-ro SRC[:DST]   bind read-only  (repeatable)
#       --setenv K=V          environment for the container's systemd (and so
#                             for every service it starts) (repeatable)
#       --target UNIT         boot target (default basic.target: units enabled
#                             in the host's /etc for multi-user.target, e.g. a
#                             postgresql, do not start inside)
#       --host-network        share the host's network namespace
#       --wait running|answer wait until is-system-running says running or
#                             degraded (default), or only until systemd
#                             answers at all
#       --timeout SECS        boot deadline (default 60, env
#                             CQLREADY_SD_BOOT_TIMEOUT)
#       --nspawn-arg ARG      any extra systemd-nspawn argument (repeatable)
#       --directory DIR       boot the root filesystem in DIR instead of the
#                             host's (read-only underneath: what the container
#                             writes goes to a tmpfs overlay, --volatile=overlay)
#   harness.sh exec <name> [-e K=V]... [--] CMD...
#                                          run CMD inside (clean environment,
#                                          PATH=/usr/local/sbin:...:/bin), with
#                                          its stdout/stderr/exit code
#   harness.sh systemctl <name> ARGS...    systemctl --no-pager ARGS inside
#   harness.sh journal <name> [ARGS...]    journalctl --no-pager ARGS inside
#                                          (e.g. -u UNIT, -o cat, --since ...)
#   harness.sh pid1 <name>                 print the container's PID 1
#   harness.sh status [<name>]             print recorded state
#   harness.sh down <name>                 stop, wait, kill leftovers, remove
#                                          cgroups and state (idempotent)
#   harness.sh down-all                    `down` every container this harness
#                                          knows of, and orphaned cgroups
#   harness.sh verify [--stub PATH]... [--stub-unit UNIT]... UNITFILE...
#                                          `systemd-analyze verify` on the host
#                                          (no container), in a scratch root
#                                          holding the host's unit library, the
#                                          unit files, and an executable stub at
#                                          each PATH (e.g. /usr/sbin/cassandra)
#                                          so missing binaries do not fail it,
#                                          and a trivial unit for each UNIT that
#                                          the host lacks (e.g. docker.service)
#
# Environment:
#   CQLREADY_SD_STATE_ROOT    state dirs (default /run/cqlready-systemd)
#   CQLREADY_SD_BOOT_TIMEOUT  boot deadline in seconds (default 60)
#   CQLREADY_SD_STOP_TIMEOUT  orderly shutdown deadline (default 30)
#   CQLREADY_SD_VERBOSE=1     progress messages on stderr
#   CQLREADY_SD_LOG_COPY=FILE `down` copies nspawn's console log (the boot and
#                             shutdown messages) to FILE before removing state
#
# Exit codes: `exec`/`systemctl`/`journal` pass through the inner command's;
# otherwise 0 ok, 1 failure (message on stderr), 2 usage error.
#
# Needs: root, systemd-nspawn (Debian: apt-get install -y systemd-container),
# nsenter (util-linux).

set -u
set -o pipefail

STATE_ROOT=${CQLREADY_SD_STATE_ROOT:-/run/cqlready-systemd}
CG_PREFIX=cqlready-sd-
MACHINE_PREFIX=cqlready-
INNER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PROG=${0##*/}

die()  { echo "$PROG: $*" >&2; exit 1; }
usage_die() { echo "$PROG: $*" >&2; echo "run '$PROG help' for usage" >&2; exit 2; }
info() { [ "${CQLREADY_SD_VERBOSE:-0}" = 1 ] && echo "$PROG: $*" >&2; return 0; }

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 1000 )); }

check_name() {
    [[ ${1:-} =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$ ]] \
        || usage_die "bad container name '${1:-}' (use [A-Za-z0-9_.-], at most 41 chars)"
}

need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

# --- cgroups ----------------------------------------------------------------

# Print "MOUNTPOINT<TAB>KEY" for each cgroup hierarchy mounted on this host,
# KEY being the controller field of /proc/self/cgroup ("" for cgroup2,
# "cpu,cpuacct", "name=systemd", ...).
cgroup_hierarchies() {
    local line mp fstype opts rest key o
    while IFS= read -r line; do
        # mountinfo: id parent maj:min root mountpoint opts [optional...] - fstype source superopts
        mp=$(awk '{print $5}' <<<"$line")
        rest=${line#* - }
        fstype=${rest%% *}
        case $fstype in
            cgroup2) printf '%s\t%s\n' "$mp" "" ;;
            cgroup)
                opts=$(awk '{print $3}' <<<"$rest")
                key=
                local IFS=,
                for o in $opts; do
                    case $o in
                        rw|ro|relatime|noatime|nosuid|nodev|noexec|clone_children|noprefix|xattr|cpuset_v2_mode|release_agent=*|nsdelegate|memory_recursiveprot|memory_localevents|favordynmods) ;;
                        *) key=${key:+$key,}$o ;;
                    esac
                done
                unset IFS
                [ -n "$key" ] && printf '%s\t%s\n' "$mp" "$key"
                ;;
        esac
    done < <(grep -E ' - cgroup2? ' /proc/self/mountinfo)
}

# Path of process $1 inside the hierarchy whose /proc/PID/cgroup key is $2.
cgroup_of() {
    local pid=$1 key=$2 id ctl path
    while IFS=: read -r id ctl path; do
        if [ -z "$key" ]; then
            [ "$id" = 0 ] && [ -z "$ctl" ] && { echo "$path"; return 0; }
        else
            # compare as sets: the order in mount options and in /proc/PID/cgroup may differ
            [ "$(tr , '\n' <<<"$ctl" | sort | paste -sd,)" = "$(tr , '\n' <<<"$key" | sort | paste -sd,)" ] \
                && { echo "$path"; return 0; }
        fi
    done < "/proc/$pid/cgroup"
    return 1
}

# Create one cgroup per hierarchy for container $1, below the cgroups of this
# shell; write their paths to $2.
cgroups_create() {
    local name=$1 out=$2 mp key rel base dir f
    : > "$out"
    while IFS=$'\t' read -r mp key; do
        rel=$(cgroup_of $$ "$key") || { info "no entry for hierarchy '$key' in /proc/$$/cgroup, skipped"; continue; }
        case $rel in /..*) die "this shell's cgroup in $mp is outside its cgroup namespace ($rel)";; esac
        base=$mp${rel%/}
        dir=$base/$CG_PREFIX$name
        [ -d "$base" ] || { info "$base does not exist, skipped"; continue; }
        mkdir -p "$dir" || die "cannot create cgroup $dir"
        # cgroup v1 cpuset: a new cgroup starts with no cpus/mems and refuses tasks
        if [ -f "$dir/cpuset.cpus" ] && [ -z "$(cat "$dir/cpuset.cpus")" ]; then
            for f in cpuset.cpus cpuset.mems; do
                cat "$base/$f" > "$dir/$f" || die "cannot set $dir/$f"
            done
        fi
        echo "$dir" >> "$out"
    done < <(cgroup_hierarchies)
    [ -s "$out" ] || die "found no cgroup hierarchy under /proc/self/mountinfo"
}

# Every cgroup directory of ours, deepest first: from the state file, plus any
# $CG_PREFIX$name found below the hierarchies (in case state was lost).
cgroups_of_name() {
    local name=$1 state=$2 mp key
    {
        [ -f "$state" ] && cat "$state"
        while IFS=$'\t' read -r mp key; do
            find "$mp" -maxdepth 6 -type d -name "$CG_PREFIX$name" 2>/dev/null
        done < <(cgroup_hierarchies)
    } | sort -u
}

cgroup_pids() {  # all pids in the subtree $1
    [ -d "$1" ] || return 0
    find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null
}

# Kill everything in our cgroup subtrees, then remove them. Returns 1 if a
# cgroup could not be removed within the deadline.
cgroups_destroy() {
    local name=$1 state=$2 deadline cg pids left d rc=0
    local -a cgs
    mapfile -t cgs < <(cgroups_of_name "$name" "$state")
    [ ${#cgs[@]} -gt 0 ] || return 0
    deadline=$(( $(now_ms) + 10000 ))
    while :; do
        left=
        for cg in "${cgs[@]}"; do
            [ -d "$cg" ] || continue
            pids=$(cgroup_pids "$cg")
            if [ -n "$pids" ]; then
                left=1
                [ -f "$cg/cgroup.kill" ] && echo 1 > "$cg/cgroup.kill" 2>/dev/null
                # shellcheck disable=SC2086
                kill -KILL $pids 2>/dev/null
            fi
        done
        [ -z "$left" ] && break
        [ "$(now_ms)" -lt "$deadline" ] || { echo "$PROG: processes still in cgroups of '$name' after SIGKILL" >&2; rc=1; break; }
        sleep 0.1
    done
    for cg in "${cgs[@]}"; do
        [ -d "$cg" ] || continue
        # depth first; retry briefly, a cgroup is busy a moment after its last task died
        local tries=0
        while [ -d "$cg" ]; do
            find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
            [ -d "$cg" ] || break
            tries=$((tries + 1))
            [ $tries -lt 50 ] || { echo "$PROG: cannot remove cgroup $cg" >&2; rc=1; break; }
            sleep 0.1
        done
    done
    return $rc
}

# --- state --------------------------------------------------------------------

sdir() { echo "$STATE_ROOT/$1"; }

# nspawn pid of container $1 if it is alive and really ours, else nothing.
live_nspawn_pid() {
    local d pid
    d=$(sdir "$1")
    [ -f "$d/nspawn.pid" ] || return 1
    pid=$(cat "$d/nspawn.pid")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--machine=$MACHINE_PREFIX$1 " || return 1
    echo "$pid"
}

# The container's PID 1 as seen from the host: the child of nspawn running systemd.
find_pid1() {
    local npid=$1 c
    for c in $(cat /proc/"$npid"/task/*/children 2>/dev/null); do
        [ "$(cat /proc/"$c"/comm 2>/dev/null)" = systemd ] && { echo "$c"; return 0; }
    done
    return 1
}

pid1_of() {
    local d npid p
    d=$(sdir "$1")
    npid=$(live_nspawn_pid "$1") || die "container '$1' is not running (no live nspawn; state: $d)"
    p=$(cat "$d/pid1" 2>/dev/null)
    [ -n "$p" ] && [ -d "/proc/$p" ] || p=$(find_pid1 "$npid") || die "container '$1': cannot find its PID 1 (nspawn pid $npid)"
    echo "$p"
}

log_tail() {
    local f=$1
    [ -f "$f" ] || return 0
    echo "---- systemd-nspawn console log, last lines ($f) ----" >&2
    # strip ANSI colours of the console copy
    tail -n "${2:-40}" "$f" | sed 's/\x1b\[[0-9;]*m//g' >&2
    echo "----" >&2
}

# --- nspawn's scratch directories on the host ---------------------------------
# nspawn creates /run/systemd/nspawn/propagate/<machine> and
# /run/systemd/nspawn-root on the host. Where /run is a tmpfs nobody cares;
# here /run may be on the root disk, so remove them when they are empty and
# no container of ours is left.
cleanup_nspawn_dirs() {
    local machine=$1
    rmdir "/run/systemd/nspawn/propagate/$machine" 2>/dev/null
    if [ -z "$(ls -A "$STATE_ROOT" 2>/dev/null)" ]; then
        local created
        created=$(cat "$STATE_ROOT.created" 2>/dev/null)
        for d in $created; do
            case $d in
                /run/systemd/nspawn) rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn 2>/dev/null ;;
                /run/systemd/nspawn-root) rmdir /run/systemd/nspawn-root 2>/dev/null ;;
            esac
        done
        rm -f "$STATE_ROOT.created"
        rmdir "$STATE_ROOT" 2>/dev/null
    fi
    return 0
}

# --- subcommands --------------------------------------------------------------

cmd_up() {
    need_root
    local name=${1:-}; check_name "$name"; shift
    local unit_dir='' directory='' target=basic.target wait_mode=running timeout=${CQLREADY_SD_BOOT_TIMEOUT:-60} host_net=0
    local -a extra=()
    local src dst spec
    while [ $# -gt 0 ]; do
        case $1 in
            --unit-dir) unit_dir=${2:?--unit-dir needs a directory}; shift 2 ;;
            --unit-dir=*) unit_dir=${1#*=}; shift ;;
            --bind|--bind-ro|--bind=*|--bind-ro=*)
                local opt=${1%%=*}
                if [[ $1 == *=* ]]; then spec=${1#*=}; shift; else spec=${2:?$1 needs SRC[:DST]}; shift 2; fi
                src=${spec%%:*}; dst=${spec#"$src"}; dst=${dst#:}
                [ -e "$src" ] || usage_die "$opt: $src does not exist"
                src=$(realpath "$src")
                extra+=("$opt=$src${dst:+:$dst}")
                ;;
            --setenv) extra+=("--setenv=${2:?--setenv needs K=V}"); shift 2 ;;
            --setenv=*) extra+=("$1"); shift ;;
            --target) target=${2:?}; shift 2 ;;
            --target=*) target=${1#*=}; shift ;;
            --host-network) host_net=1; shift ;;
            --wait) wait_mode=${2:?}; shift 2 ;;
            --wait=*) wait_mode=${1#*=}; shift ;;
            --timeout) timeout=${2:?}; shift 2 ;;
            --timeout=*) timeout=${1#*=}; shift ;;
            --directory) directory=${2:?--directory needs a directory}; shift 2 ;;
            --nspawn-arg) extra+=("${2:?}"); shift 2 ;;
            --nspawn-arg=*) extra+=("${1#*=}"); shift ;;
            *) usage_die "up: unknown option $1" ;;
        esac
    done
    case $wait_mode in running|answer) ;; *) usage_die "--wait must be running or answer";; esac
    [[ $timeout =~ ^[0-9]+$ ]] || usage_die "--timeout must be whole seconds"
    command -v systemd-nspawn >/dev/null || die "systemd-nspawn not found (Debian: apt-get install -y systemd-container)"
    command -v nsenter >/dev/null || die "nsenter not found (util-linux)"
    if [ -n "$unit_dir" ]; then
        [ -d "$unit_dir" ] || usage_die "--unit-dir: $unit_dir is not a directory"
        extra+=("--bind-ro=$(realpath "$unit_dir"):/run/systemd/system")
    fi
    [ $host_net = 1 ] || extra+=(--private-network)

    local d; d=$(sdir "$name")
    if live_nspawn_pid "$name" >/dev/null; then
        die "container '$name' is already up (state $d); run '$PROG down $name' first"
    fi
    # leftovers of an earlier run with this name
    [ -d "$d" ] && cmd_down_quiet "$name"

    # remember which of nspawn's scratch dirs did not exist before us
    if [ ! -d "$STATE_ROOT" ]; then
        mkdir -p "$STATE_ROOT" || die "cannot create $STATE_ROOT"
        local created=
        [ -d /run/systemd/nspawn ] || created="$created /run/systemd/nspawn"
        [ -d /run/systemd/nspawn-root ] || created="$created /run/systemd/nspawn-root"
        echo "$created" > "$STATE_ROOT.created"
    fi
    mkdir -p "$d" || die "cannot create $d"
    echo "$name" > "$d/name"
    local machine=$MACHINE_PREFIX$name
    echo "$machine" > "$d/machine"

    cgroups_create "$name" "$d/cgroups"

    local -a root=(-D / --volatile=yes --bind-ro=/etc)
    [ -n "$directory" ] && root=(-D "$directory" --volatile=overlay)
    local -a nspawn=(systemd-nspawn "${root[@]}"
        --register=no --keep-unit --link-journal=no --console=read-only
        "--machine=$machine" "${extra[@]}"
        -b -- "systemd.unit=$target")
    printf '%q ' "${nspawn[@]}" > "$d/nspawn.cmd"; echo >> "$d/nspawn.cmd"

    local t0; t0=$(now_ms)
    # The launcher moves itself into our cgroups and execs nspawn (same pid).
    # setsid: own session, so the caller's terminal signals do not reach it;
    # all fds go to the log so a caller reading our stdout is not kept open.
    CQLREADY_SD_CGFILE="$d/cgroups" CQLREADY_SD_PIDFILE="$d/nspawn.pid" \
    setsid bash -c '
        while IFS= read -r cg; do
            echo $$ > "$cg/cgroup.procs" || { echo "cannot enter cgroup $cg" >&2; exit 97; }
        done < "$CQLREADY_SD_CGFILE"
        echo $$ > "$CQLREADY_SD_PIDFILE"
        unset CQLREADY_SD_CGFILE CQLREADY_SD_PIDFILE
        exec "$@"' launcher "${nspawn[@]}" \
        < /dev/null > "$d/nspawn.log" 2>&1 &
    local bgpid=$!
    info "launched nspawn (pid $bgpid), log $d/nspawn.log"

    local deadline=$(( t0 + timeout * 1000 )) npid='' pid1='' st='' out
    while :; do
        if [ -z "$npid" ]; then
            npid=$(cat "$d/nspawn.pid" 2>/dev/null)
        fi
        # (if setsid had to fork, $bgpid is gone at once and the pid file counts)
        if ! kill -0 "$bgpid" 2>/dev/null && ! { [ -n "$npid" ] && [ -d "/proc/$npid" ] \
                && [ "$(awk '{print $3}' "/proc/$npid/stat" 2>/dev/null)" != Z ]; }; then
            local rc='?'
            [ -z "$npid" ] || [ "$npid" = "$bgpid" ] && { wait "$bgpid" 2>/dev/null; rc=$?; }
            echo "$PROG: up $name: systemd-nspawn exited (status $rc) before the container was up" >&2
            log_tail "$d/nspawn.log"
            cmd_down_quiet "$name"
            exit 1
        fi
        if [ -n "$npid" ] && [ -z "$pid1" ]; then
            pid1=$(find_pid1 "$npid") && echo "$pid1" > "$d/pid1"
        fi
        if [ -n "$pid1" ]; then
            out=$(timeout 5 nsenter -t "$pid1" -a env -i PATH=$INNER_PATH systemctl is-system-running 2>/dev/null)
            st=${out%%$'\n'*}
            case $wait_mode/$st in
                */running|*/degraded) break ;;
                answer/initializing|answer/starting) break ;;
                # "offline": systemctl cannot reach the manager yet (its
                # socket is made early in the boot, but not at once): poll on.
                */maintenance|*/stopping)
                    echo "$PROG: up $name: container systemd is '$st'" >&2
                    log_tail "$d/nspawn.log"
                    cmd_down_quiet "$name"; exit 1 ;;
            esac
        fi
        if [ "$(now_ms)" -ge "$deadline" ]; then
            echo "$PROG: up $name: not up within ${timeout}s (nspawn pid ${npid:-?}, pid1 ${pid1:-not found}, is-system-running: '${st:-no answer}')" >&2
            log_tail "$d/nspawn.log"
            cmd_down_quiet "$name"
            exit 1
        fi
        sleep 0.05
    done
    local t1; t1=$(now_ms)
    echo "$st" > "$d/boot.state"
    echo "$(( t1 - t0 ))" > "$d/boot.ms"
    info "container '$name' $st after $(( t1 - t0 )) ms, PID 1 = $pid1"
    [ "$st" = degraded ] && info "degraded; failed units: $(nsenter -t "$pid1" -a env -i PATH=$INNER_PATH systemctl --failed --plain --no-legend --no-pager 2>/dev/null | awk '{print $1}' | paste -sd' ')"
    echo "$pid1"
}

# Run "$@" inside container $name, in an extra cgroup of ours ("exec", a leaf
# next to nspawn's payload/supervisor) so that `down` also kills anything it
# left running.
inner_run() {
    local name=$1; shift
    local pid1 d
    pid1=$(pid1_of "$name") || exit 1
    d=$(sdir "$name")
    CQLREADY_SD_CGFILE="$d/cgroups" CQLREADY_SD_PID1=$pid1 exec bash -c '
        while IFS= read -r cg; do
            [ -d "$cg" ] || continue
            mkdir -p "$cg/exec" 2>/dev/null || continue
            if [ -f "$cg/exec/cpuset.cpus" ] && [ -z "$(cat "$cg/exec/cpuset.cpus")" ]; then
                cat "$cg/cpuset.cpus" > "$cg/exec/cpuset.cpus"; cat "$cg/cpuset.mems" > "$cg/exec/cpuset.mems"
            fi
            echo $$ > "$cg/exec/cgroup.procs" 2>/dev/null
        done < "$CQLREADY_SD_CGFILE"
        p=$CQLREADY_SD_PID1
        unset CQLREADY_SD_CGFILE CQLREADY_SD_PID1
        exec nsenter -t "$p" -a "$@"' runner "$@"
}

cmd_exec() {
    need_root
    local name=${1:-}; check_name "$name"; shift
    local -a envs=("PATH=$INNER_PATH" HOME=/root LANG=C.UTF-8 SYSTEMD_PAGER=cat SYSTEMD_COLORS=0)
    while [ $# -gt 0 ]; do
        case $1 in
            -e|--env) envs+=("${2:?-e needs K=V}"); shift 2 ;;
            -e*) envs+=("${1#-e}"); shift ;;
            --env=*) envs+=("${1#*=}"); shift ;;
            --) shift; break ;;
            *) break ;;
        esac
    done
    [ $# -gt 0 ] || usage_die "exec: no command"
    inner_run "$name" env -i "${envs[@]}" "$@"
}

cmd_systemctl() {
    need_root
    local name=${1:-}; check_name "$name"; shift
    cmd_exec "$name" -- systemctl --no-pager "$@"
}

cmd_journal() {
    need_root
    local name=${1:-}; check_name "$name"; shift
    cmd_exec "$name" -- journalctl --no-pager "$@"
}

cmd_pid1() {
    local name=${1:-}; check_name "$name"
    pid1_of "$name"
}

cmd_status() {
    local n d
    if [ $# -gt 0 ]; then set -- "$1"; else
        set --
        for d in "$STATE_ROOT"/*/; do [ -d "$d" ] && { d=${d%/}; set -- "$@" "${d##*/}"; }; done
    fi
    for n in "$@"; do
        d=$(sdir "$n")
        [ -d "$d" ] || { echo "$n: no state"; continue; }
        local npid alive=down
        npid=$(cat "$d/nspawn.pid" 2>/dev/null)
        live_nspawn_pid "$n" >/dev/null && alive=up
        echo "$n: $alive nspawn_pid=${npid:-?} pid1=$(cat "$d/pid1" 2>/dev/null) boot_ms=$(cat "$d/boot.ms" 2>/dev/null) state_dir=$d"
        sed 's/^/  cgroup /' "$d/cgroups" 2>/dev/null
    done
}

# Stop container $1 and remove everything of it. Never fails hard: reports
# problems on stderr and returns 1.
cmd_down_quiet() {
    local name=$1 d npid pid1 rc=0 machine
    d=$(sdir "$name")
    machine=$(cat "$d/machine" 2>/dev/null || echo "$MACHINE_PREFIX$name")
    # First kill what `exec` left running. Such processes live in the
    # container's pid namespace but are not descendants of its PID 1, so the
    # container's systemd-shutdown would wait ~10s for them to vanish. Kill the
    # ones inside the container's pid namespace first and let their nsenter
    # parents reap them (an orphaned zombie is reparented to the host's init,
    # which may reap late), then whatever else is left in the exec cgroups.
    exec_procs() {
        local cg
        while IFS= read -r cg; do
            [ -d "$cg/exec" ] && cat "$cg/exec/cgroup.procs" 2>/dev/null
        done < <(cat "$d/cgroups" 2>/dev/null) | sort -u
    }
    local p deadline2 pidns='' inner
    pid1=$(cat "$d/pid1" 2>/dev/null)
    [ -n "$pid1" ] && pidns=$(readlink "/proc/$pid1/ns/pid" 2>/dev/null)
    deadline2=$(( $(now_ms) + 5000 ))
    if [ -n "$pidns" ]; then
        while :; do
            inner=
            for p in $(exec_procs); do
                [ "$(readlink "/proc/$p/ns/pid" 2>/dev/null)" = "$pidns" ] && inner="$inner $p"
            done
            [ -z "$inner" ] && break
            # shellcheck disable=SC2086
            kill -KILL $inner 2>/dev/null
            [ "$(now_ms)" -lt "$deadline2" ] || break
            # wait until reaped, not only dead (zombies leave cgroup.procs at once)
            for p in $inner; do
                while [ -d "/proc/$p" ] && [ "$(now_ms)" -lt "$deadline2" ]; do sleep 0.02; done
            done
        done
    fi
    while :; do
        inner=$(exec_procs)
        [ -z "$inner" ] && break
        # shellcheck disable=SC2086
        kill -KILL $inner 2>/dev/null
        [ "$(now_ms)" -lt "$deadline2" ] || break
        sleep 0.05
    done
    if npid=$(live_nspawn_pid "$name"); then
        local stop_to=${CQLREADY_SD_STOP_TIMEOUT:-30} deadline
        deadline=$(( $(now_ms) + stop_to * 1000 ))
        # nspawn turns SIGTERM into an orderly poweroff of the booted systemd
        # (SIGRTMIN+3 to its PID 1) and exits when the container is gone.
        kill -TERM "$npid" 2>/dev/null
        while [ -d "/proc/$npid" ] && [ "$(now_ms)" -lt "$deadline" ]; do
            # not our child (launched by an earlier invocation): reap is by init
            [ "$(awk '{print $3}' "/proc/$npid/stat" 2>/dev/null)" = Z ] && break
            sleep 0.05
        done
        if [ -d "/proc/$npid" ] && [ "$(awk '{print $3}' "/proc/$npid/stat" 2>/dev/null)" != Z ]; then
            echo "$PROG: down $name: nspawn (pid $npid) still running after ${stop_to}s, killing" >&2
            kill -KILL "$npid" 2>/dev/null
        fi
    fi
    cgroups_destroy "$name" "$d/cgroups" || rc=1
    if [ -n "${CQLREADY_SD_LOG_COPY:-}" ] && [ -f "$d/nspawn.log" ]; then
        sed 's/\x1b\[[0-9;]*m//g' "$d/nspawn.log" > "$CQLREADY_SD_LOG_COPY"
    fi
    if [ $rc = 0 ]; then
        rm -rf "$d"
    else
        echo "$PROG: down $name: state kept in $d" >&2
    fi
    cleanup_nspawn_dirs "$machine"
    return $rc
}

cmd_down() {
    need_root
    local name=${1:-}; check_name "$name"
    cmd_down_quiet "$name"
}

cmd_down_all() {
    need_root
    local n d rc=0 mp key cg
    for d in "$STATE_ROOT"/*/; do
        [ -d "$d" ] || continue
        d=${d%/}; n=${d##*/}
        cmd_down_quiet "$n" || rc=1
    done
    # orphaned cgroups (state lost)
    while IFS=$'\t' read -r mp key; do
        while IFS= read -r cg; do
            n=${cg##*/}; n=${n#"$CG_PREFIX"}
            check_name "$n" 2>/dev/null || continue
            cmd_down_quiet "$n" || rc=1
        done < <(find "$mp" -maxdepth 6 -type d -name "$CG_PREFIX*" 2>/dev/null)
    done < <(cgroup_hierarchies)
    return $rc
}

cmd_verify() {
    local -a stubs=() units=() stub_units=()
    while [ $# -gt 0 ]; do
        case $1 in
            --stub) stubs+=("${2:?--stub needs a path}"); shift 2 ;;
            --stub=*) stubs+=("${1#*=}"); shift ;;
            --stub-unit) stub_units+=("${2:?--stub-unit needs a unit name}"); shift 2 ;;
            --stub-unit=*) stub_units+=("${1#*=}"); shift ;;
            -*) usage_die "verify: unknown option $1" ;;
            *) units+=("$1"); shift ;;
        esac
    done
    [ ${#units[@]} -gt 0 ] || usage_die "verify: no unit file"
    command -v systemd-analyze >/dev/null || die "systemd-analyze not found"
    local root u st rc
    root=$(mktemp -d "${TMPDIR:-/tmp}/cqlready-verify.XXXXXX") || die "mktemp failed"
    mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system"
    cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
    for st in "${stubs[@]}"; do
        case $st in /*) ;; *) rm -rf "$root"; usage_die "verify: --stub needs an absolute path";; esac
        mkdir -p "$root$(dirname "$st")"
        printf '#!/bin/sh\nexit 0\n' > "$root$st"; chmod 755 "$root$st"
    done
    for st in "${stub_units[@]}"; do
        [[ $st =~ ^[A-Za-z0-9:_.@-]+\.(service|socket|target|mount|timer|path)$ ]] \
            || { rm -rf "$root"; usage_die "verify: --stub-unit needs a unit name like docker.service"; }
        [ -e "$root/usr/lib/systemd/system/$st" ] && continue
        case $st in
            *.service) printf '[Unit]\nDescription=stub for verify\n[Service]\nExecStart=/bin/true\n' ;;
            *) printf '[Unit]\nDescription=stub for verify\n' ;;
        esac > "$root/usr/lib/systemd/system/$st"
    done
    local -a inroot=()
    for u in "${units[@]}"; do
        [ -f "$u" ] || { rm -rf "$root"; usage_die "verify: $u is not a file"; }
        cp "$u" "$root/etc/systemd/system/"
        inroot+=("/etc/systemd/system/${u##*/}")
    done
    systemd-analyze verify --man=no --root="$root" "${inroot[@]}"
    rc=$?
    rm -rf "$root"
    return $rc
}

main() {
    local sub=${1:-help}; shift || true
    case $sub in
        up) cmd_up "$@" ;;
        exec) cmd_exec "$@" ;;
        systemctl) cmd_systemctl "$@" ;;
        journal|journalctl) cmd_journal "$@" ;;
        pid1) cmd_pid1 "$@" ;;
        status) cmd_status "$@" ;;
        down) cmd_down "$@" ;;
        down-all) cmd_down_all ;;
        verify) cmd_verify "$@" ;;
        help|-h|--help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" ;;
        *) usage_die "unknown subcommand '$sub'" ;;
    esac
}

main "$@"
