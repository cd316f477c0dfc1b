#!/usr/bin/env bash
# The packages on a real system: a Debian bookworm root (root.sh) booted with
# systemd-nspawn (tests/systemd/harness.sh), a STAND-IN for Apache's
# cassandra .deb (standin-deb.sh), and the cqlready .deb of tools/package.sh:
#
#   bash tests/package/proof.sh DEB UPGRADE_DEB
#   bash tests/package/proof.sh --docs    the last run's numbers into bench/results-packages.md
#
#   1. dpkg -i --force-depends without Cassandra: a clear message, a unit that
#      fails at once with one, and a purge that leaves nothing;
#   2. Cassandra from its SysV script, the operator's /etc/default/cassandra
#      with its own JVM_EXTRA_OPTS; `apt install DEB` while it runs starts and
#      restarts nothing;
#   3. systemctl stop (the SysV-started JVM drains), systemctl start returns
#      once CQL answers (READY=1 from the JVM's PID), the operator's options
#      kept; cqlready status as root, as cassandra, refused for nobody;
#   4. `apt install UPGRADE_DEB` while it runs: the JVM survives, status says
#      "restart to load"; systemctl restart (the drain, then the new library);
#   5. `apt remove` while it runs: it keeps running, /etc/init.d/cassandra
#      stops it and starts it again; `apt purge`: nothing of cqlready left,
#      nothing of the operator's changed.
# Each check that fails says what it saw and exits 1. The measured times and
# the packages' sizes go to target/package/proof-results.md; --docs copies
# that file to bench/results-packages.md, which docs/packages.md shows. Needs root,
# systemd-nspawn, mmdebstrap.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
results="$root/target/package/proof-results.md"
if [ "${1:-}" = --docs ]; then
    [ -s "$results" ] || { echo "proof.sh: no $results: run the proof first" >&2; exit 1; }
    out="$root/bench/results-packages.md"
    { printf '# The packages, proven on a booted Debian root\n\n`bash tests/package/proof.sh` (through `cargo test --test package packages_are_built`), then `--docs`:\n\n'; cat "$results"; } >"$out.tmp"
    mv "$out.tmp" "$out"
    echo "proof.sh: wrote $out (docs/packages.md shows it; CQLREADY_WRITE_DOCS=1 cargo test --test docs copies it there)" >&2
    exit 0
fi
deb=$(realpath "${1:?usage: proof.sh DEB UPGRADE_DEB, or proof.sh --docs}")
up_deb=$(realpath "${2:?usage: proof.sh DEB UPGRADE_DEB, or proof.sh --docs}")
H="$root/tests/systemd/harness.sh"
name=pkg-$$
now() { local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 1000 )); }
t_start=$(now)
say() { printf '[proof %6.1fs] %s\n' "$(( $(now) - t_start ))e-3" "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
inside() { bash "$H" exec "$name" -e DEBIAN_FRONTEND=noninteractive -- "$@"; }
# expect WHAT TEXT OUTPUT: OUTPUT contains TEXT, or fail naming WHAT.
expect() { [[ $3 == *"$2"* ]] || fail "$1: expected \"$2\" in: $3"; }
unexpect() { [[ $3 != *"$2"* ]] || fail "$1: did not expect \"$2\" in: $3"; }
jvm_pid() { inside systemctl show -p MainPID --value cassandra; }
alive() { inside kill -0 "$1" 2>/dev/null; }
# until_ok WHAT SECONDS CMD...: polls CMD every 0.2 s until it succeeds.
until_ok() {
    local what=$1 secs=$2 deadline=$(( $(now) + $2 * 1000 )); shift 2
    until "$@" >/dev/null 2>&1; do
        [ "$(now)" -lt "$deadline" ] || fail "$what: not within ${secs}s"
        sleep 0.2
    done
}
cql() { inside /pkgs/cqlready-probe probe --port 9042 --timeout 1s; }
mapped() { inside grep -o '/usr/lib/cqlready/.*libcqlready.so.*' "/proc/$1/maps" | sort -u; }

work=$(mktemp -d /tmp/cqlready-proof.XXXXXX)
cleanup() { bash "$H" down "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
cp "$deb" "$work/cqlready.deb"
cp "$up_deb" "$work/cqlready-upgrade.deb"
cp "$(bash "$here/standin-deb.sh" | tail -n1)" "$work/cassandra.deb"
# A probe from outside the packages, for the moments no cqlready is installed.
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/cqlready > "$work/cqlready-probe"
chmod 755 "$work/cqlready-probe"
rootfs=$(bash "$here/root.sh" | tail -n1)
say "root $rootfs; booting it"
bash "$H" up "$name" --directory "$rootfs" --bind-ro "$work:/pkgs" --target multi-user.target >/dev/null
t_booted=$(now)

# --- 1. no Cassandra -----------------------------------------------------------
out=$(inside dpkg -i --force-depends /pkgs/cqlready.deb 2>&1) || fail "dpkg -i --force-depends: $out"
expect "install without Cassandra" "Apache Cassandra's package (cassandra) is not installed" "$out"
out=$(inside systemctl start cassandra 2>&1) && fail "cassandra.service started without Cassandra"
expect "systemctl start without Cassandra" "Assertion failed" "$out"
expect "the failed assertion" "no" "$(inside systemctl show -p AssertResult --value cassandra)"
inside dpkg -P cqlready >/dev/null 2>&1 || fail "dpkg -P after the forced install"
left=$(inside find / -xdev -name '*cqlready*' -not -path '/pkgs/*' 2>/dev/null || true)
[ -z "$left" ] || fail "left after purging the forced install: $left"
say "1. without Cassandra: a clear message at install and at start, nothing left after purge"

# --- 2. Apache's package, started by its SysV script ---------------------------
inside apt-get install -y -qq /pkgs/cassandra.deb >/dev/null 2>&1 || fail "apt-get install the stand-in cassandra"
inside sh -c 'printf "# the operator'"'"'s\nJVM_EXTRA_OPTS=\"-Dcqlready.operator=kept\"\n" > /etc/default/cassandra'
operator_files() { inside sh -c 'find /etc/cassandra /etc/default/cassandra /etc/security/limits.d -type f | sort | xargs sha256sum'; }
before=$(operator_files)
inside systemctl start cassandra || fail "SysV start"
until_ok "CQL from the SysV-started Cassandra" 180 cql
sysv_pid=$(inside cat /run/cassandra/cassandra.pid)
say "2. Cassandra from /etc/init.d/cassandra serves CQL (pid $sysv_pid)"
t_install=$(now)
out=$(inside apt-get install -y /pkgs/cqlready.deb 2>&1) || fail "apt-get install cqlready: $out"
t_installed=$(now)
alive "$sysv_pid" || fail "the install stopped Cassandra (pid $sysv_pid)"
expect "install while running" "keeps running as it is" "$out"
frag=$(inside systemctl show -p FragmentPath --value cassandra)
expect "cassandra.service after install" "/lib/systemd/system/cassandra.service" "$frag"
expect "boot enablement follows the SysV script's" "enabled" "$(inside systemctl is-enabled cassandra 2>&1 || true)"
say "   apt install took $(( t_installed - t_install )) ms, restarted nothing"

# --- 3. the native unit ----------------------------------------------------------
t=$(now)
inside systemctl stop cassandra || fail "systemctl stop (taking over the SysV-started JVM)"
alive "$sysv_pid" && fail "the SysV-started JVM survived systemctl stop"
t_stop_sysv=$(( $(now) - t ))
unexpect "the takeover's stop" "SIGKILL" "$(inside journalctl -u cassandra -o cat --no-pager)"
# A watcher inside: the moment CQL first answers, in ms since the epoch.
inside sh -c 'nohup sh -c "until /pkgs/cqlready-probe probe --port 9042 --timeout 1s >/dev/null 2>&1; do sleep 0.1; done; date +%s%3N > /run/cql-first" >/dev/null 2>&1 &'
t_start_call=$(now)
inside systemctl start cassandra || fail "systemctl start cassandra: $(inside journalctl -u cassandra -o cat --no-pager | tail -20)"
t_started=$(now)
until_ok "the watcher's first CQL answer" 10 inside test -s /run/cql-first
t_cql=$(inside cat /run/cql-first)
pid=$(jvm_pid)
expect "the main PID is the JVM" "java" "$(inside cat "/proc/$pid/comm")"
expect "READY=1 came from the JVM with CQL" "CQL ready on" "$(inside systemctl show -p StatusText --value cassandra)"
# active only once CQL answers: the watcher (0.1 s period) saw CQL before start returned
[ "$t_cql" -le $(( t_started + 150 )) ] || fail "systemctl start returned at $t_started, CQL first answered at $t_cql"
cmd=$(inside cat "/proc/$pid/cmdline" | tr '\0' ' ')
expect "the operator's JVM_EXTRA_OPTS kept" "-Dcqlready.operator=kept" "$cmd"
expect "the agent added" "-agentpath:/usr/lib/cqlready/libcqlready.so" "$cmd"
S=/run/cassandra/cqlready.sock
out=$(inside cqlready status --socket $S) || fail "cqlready status as root: $out"
expect "status as root" "ready since" "$out"
unexpect "status right after install" "restart to load" "$out"
out=$(inside runuser -u cassandra -- cqlready status --socket $S) || fail "cqlready status as cassandra: $out"
expect "status as cassandra" "ready since" "$out"
if out=$(inside runuser -u nobody -- cqlready status --socket $S 2>&1); then fail "status as nobody answered: $out"; fi
expect "status as nobody refused" "ermission" "$out"
say "3. systemctl start returned $(( t_started - t_start_call )) ms after it was called, CQL first answered at $(( t_cql - t_start_call )) ms"

# --- 4. upgrade while it runs ------------------------------------------------------
new_version=$(dpkg-deb -f "$up_deb" Version); new_version=${new_version%-*}
out=$(inside apt-get install -y /pkgs/cqlready-upgrade.deb 2>&1) || fail "apt-get install the upgrade: $out"
alive "$pid" || fail "the upgrade killed the running JVM (pid $pid)"
cql >/dev/null || fail "CQL stopped answering after the upgrade"
expect "the old library stays mapped" "(deleted)" "$(mapped "$pid")"
out=$(inside cqlready status --socket $S)
expect "status after the upgrade" "restart to load $new_version" "$out"
t=$(now)
inside systemctl restart cassandra || fail "systemctl restart after the upgrade"
t_restart=$(( $(now) - t ))
alive "$pid" && fail "the old JVM survived the restart"
stop_log=$(inside journalctl -u cassandra -o cat --no-pager _PID="$pid")
expect "the drain on stop" "DRAINING" "$stop_log"
pid=$(jvm_pid)
expect "the new JVM maps the new library" "/usr/lib/cqlready/$new_version/libcqlready.so" "$(mapped "$pid")"
unexpect "status after the restart" "restart to load" "$(inside cqlready status --socket $S)"
say "4. upgraded to $new_version under a running JVM; restart (drain + start) took $t_restart ms"

# --- 5. removal while it runs, then purge ----------------------------------------
out=$(inside apt-get remove -y cqlready 2>&1) || fail "apt-get remove: $out"
expect "remove while running" "keeps running" "$out"
alive "$pid" || fail "the removal stopped Cassandra"
cql >/dev/null || fail "CQL stopped answering after the removal"
expect "cassandra.service given back" "generator" "$(inside systemctl show -p FragmentPath --value cassandra)"
inside test -L /etc/systemd/system/multi-user.target.wants/cassandra.service && fail "the package's boot link is left after removal"
expect "boot enablement given back to the SysV script" "enabled" "$(inside systemctl is-enabled cassandra 2>&1 || true)"
inside systemctl stop cassandra || fail "the SysV stop after removal"
alive "$pid" && fail "/etc/init.d/cassandra did not stop the JVM (pid $pid) after removal"
inside systemctl start cassandra || fail "the SysV start after removal"
until_ok "CQL from the SysV start after removal" 180 cql
sysv_pid=$(inside cat /run/cassandra/cassandra.pid)
unexpect "no agent after removal" "cqlready" "$(inside cat "/proc/$sysv_pid/cmdline" | tr '\0' ' ')"
inside systemctl stop cassandra || fail "the SysV stop"
inside apt-get purge -y cqlready >/dev/null 2>&1 || fail "apt-get purge"
left=$(inside find / -xdev -name '*cqlready*' -not -path '/pkgs/*' 2>/dev/null || true)
[ -z "$left" ] || fail "left after purge: $left"
[ "$(operator_files)" = "$before" ] || fail "the operator's files changed: $(diff <(echo "$before") <(operator_files))"
say "5. removed while running (it kept serving), SysV stop and start again, purged: nothing left, nothing of the operator's changed"

t_end=$(now)
mkdir -p "$(dirname "$results")"
size() { stat -c %s "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
{
    echo "| what (\`bash tests/package/proof.sh\`, $(date -u +%Y-%m-%d), load average $(cut -d' ' -f1 /proc/loadavg) on $(nproc) cores) | time |"
    echo "|---|---|"
    echo "| \`apt install ./cqlready_*.deb\` while Cassandra runs (starts nothing) | $(( t_installed - t_install )) ms |"
    echo "| \`systemctl stop cassandra\` of the SysV-started JVM (its drain) | $(( t_stop_sysv )) ms |"
    echo "| \`systemctl start cassandra\`: returned / CQL first answered (0.1 s watcher), after the call | $(( t_started - t_start_call )) ms / $(( t_cql - t_start_call )) ms |"
    echo "| from \`apt install\` to a started Cassandra under cassandra.service | $(( t_started - t_install )) ms |"
    echo "| \`systemctl restart cassandra\` after the upgrade (drain, then start to CQL) | $t_restart ms |"
    echo "| the whole proof: root, boot, five stages (booted after $(( t_booted - t_start )) ms) | $(( (t_end - t_start) / 1000 )) s |"
    echo
    echo "| package | bytes |"
    echo "|---|---|"
    for f in "$deb" "$(dirname "$deb")"/cqlready-*.rpm "$(dirname "$deb")"/cqlready-*.tar.gz; do
        [ -f "$f" ] && echo "| \`$(basename "$f")\` | $(size "$f") |"
    done
} > "$results.tmp"
mv "$results.tmp" "$results"
say "results: $results"
