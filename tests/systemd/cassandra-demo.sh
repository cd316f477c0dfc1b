#!/usr/bin/env bash
# Real Apache Cassandra under a real systemd 252, with the shipped
# docker/systemd/cassandra.service and snapshotd.service (the example
# dependent). Shows, and checks (exit 1 on any failure):
#   - `systemctl start snapshotd` blocks until Cassandra serves CQL;
#   - cassandra.service is active/running, its MainPID is the JVM, its
#     StatusText the agent's; no notification refused under NotifyAccess=main;
#   - snapshotd found CQL up on its first try;
#   - `systemctl stop cassandra` is clean and removes the status socket.
# Used by `bash tests/demo.sh --systemd` and by tests/systemd.rs.
#   CQLREADY_BUILD=release|debug (default release)
#   CQLREADY_DEMO_TLS=1: the node requires TLS on its CQL port (client_encryption_options
#   enabled, not optional); the agent finds that in the yaml, snapshotd probes with --tls.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${CQLREADY_BUILD:-release}"
harness="$here/harness.sh"
t0=$EPOCHREALTIME
say() { awk -v a="$t0" -v b="$EPOCHREALTIME" -v m="$*" 'BEGIN { printf "[systemd-demo +%.3fs] %s\n", b - a, m }'; }
failures=0
check() { # check "what" command...
    local what="$1"; shift
    if "$@"; then say "ok: $what"; else say "FAILED: $what"; failures=$((failures + 1)); fi
}

if [[ $build == release ]]; then (cd "$root" && cargo build --release --quiet); fi
bin="$root/target/$build"
[[ -f $bin/libcqlready.so && -x $bin/cqlready ]] || { echo "no $bin/libcqlready.so or cqlready: cargo build first" >&2; exit 2; }
say "fetching Cassandra (first run only)"
lib="$(bash "$root/tests/cassandra/fetch.sh" | tail -n1)"
chome="$(dirname "$lib")"

name="cassandra-demo-$$"
work="$(mktemp -d /tmp/cqlready-sd-demo.XXXXXX)"
cleanup() { bash "$harness" down "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

units="$work/units"
mkdir -p "$units/cassandra.service.d" "$units/snapshotd.service.d" "$work/opt"
cp "$root"/docker/systemd/*.service "$units/"
cp "$bin/libcqlready.so" "$bin/cqlready" "$work/opt/"
tls="${CQLREADY_DEMO_TLS:-0}"
tls_env="" probe_tls="" subject="CQL"
if [[ $tls == 1 ]]; then
    say "TLS-only CQL: certificates and keystores (openssl, keytool)"
    mkdir -p "$work/opt/tls"
    bash "$root/tests/cassandra/keystores.sh" "$work/opt/tls" >/dev/null
    chmod -R a+rX "$work/opt/tls"
    printf 'client_encryption_options:\n  enabled: true\n  optional: false\n  keystore: /opt/cqlready/tls/keystore.p12\n  keystore_password: cassandra\n' \
        > "$work/opt/tls/tls.yaml"
    tls_env="CASSANDRA_YAML_EXTRA=/opt/cqlready/tls/tls.yaml"
    probe_tls="--tls --tls-ca /opt/cqlready/tls/ca.pem"
    subject="CQL over TLS"
fi
sed "s|@ENV@|$tls_env|" "$here/real-cassandra.conf" > "$units/cassandra.service.d/50-demo.conf"
cat > "$units/snapshotd.service.d/50-demo.conf" <<'EOF'
[Service]
Type=oneshot
RemainAfterExit=yes
User=root
ExecStart=
ExecStart=/opt/cqlready/cqlready probe --port 9042 --timeout 2s @PROBE_TLS@
Restart=no
StandardOutput=append:/run/snapshotd.log
EOF

sed -i "s|@PROBE_TLS@|$probe_tls|" "$units/snapshotd.service.d/50-demo.conf"

say "booting systemd in a throwaway container"
bash "$harness" up "$name" --unit-dir "$units" --bind-ro "$work/opt:/opt/cqlready" \
    --bind-ro "$chome:/opt/cassandra" --bind-ro "$root:/opt/cqlready-src" >/dev/null
sd() { bash "$harness" systemctl "$name" "$@"; }
inside() { bash "$harness" exec "$name" -- "$@"; }

say "systemctl start snapshotd.service  (Requires=/After=cassandra.service; blocks until CQL answers)"
start=$EPOCHREALTIME
sd start snapshotd.service || true
say "systemctl start returned after $(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }')"
bash "$harness" journal "$name" -u cassandra.service -o cat \
    | grep -vE 'Node configuration|JVM Arguments' \
    | grep -E 'cqlready|Starting listening for CQL|Startup complete|Started|state jump' | sed 's/^/    [journal] /' || true

show() { sd show -P "$1" "$2"; }
main_pid="$(show MainPID cassandra.service)"
check "cassandra.service is active/running" test "$(show ActiveState cassandra.service)/$(show SubState cassandra.service)" = active/running
check "its MainPID ($main_pid) is the JVM" test "$(inside cat "/proc/$main_pid/comm")" = java
status_text="$(show StatusText cassandra.service)"
say "StatusText=$status_text"
check "StatusText is the agent's" grep -q "^$subject ready on 127.0.0.1:9042 after" <<<"$status_text"
check "snapshotd ran once CQL answered, first try" test "$(show Result snapshotd.service)/$(show ActiveState snapshotd.service)" = success/active
check "snapshotd's probe saw CQL" inside grep -q "^ready: $subject" /run/snapshotd.log
check "no notification refused under NotifyAccess=main" bash -c "! bash '$harness' journal '$name' | grep -q 'reception only permitted'"
say "cqlready status --socket /run/cassandra/cqlready.sock (inside):"
inside /opt/cqlready/cqlready status --socket /run/cassandra/cqlready.sock | sed 's/^/    /'
check "status shows Cassandra NORMAL" bash -c "bash '$harness' exec '$name' -- /opt/cqlready/cqlready status --json --socket /run/cassandra/cqlready.sock | grep -q '\"mode\": \"NORMAL\"'"

say "systemctl stop cassandra.service"
sd stop cassandra.service
check "stop is clean (Result=success)" test "$(show Result cassandra.service)" = success
check "the status socket is gone" bash -c "! bash '$harness' exec '$name' -- test -e /run/cassandra/cqlready.sock"

say "$([[ $failures == 0 ]] && echo "all checks passed" || echo "$failures checks FAILED")"
exit $(( failures > 0 ))
