#!/usr/bin/env bash
# Start one Apache Cassandra 5.0 node in the foreground (like `bin/cassandra -f`),
# with the JVM exec'd in place of this script so its pid is this script's pid.
#
# Usage: tests/cassandra/run.sh [options] [-- extra JVM args...]
#   --base DIR           node dir: data/, logs/, conf/cassandra.yaml  [env CASSANDRA_BASE,
#                        default $CQLREADY_CACHE/nodes/<native-port>]
#   --native-port N      CQL port            [env CASSANDRA_NATIVE_PORT, default 9042]
#   --storage-port N     internode port      [env CASSANDRA_STORAGE_PORT, default 7000]
#   --jmx-port N         local JMX port      [env CASSANDRA_JMX_PORT, default 7199]
#   --address IP         listen/rpc address  [env CASSANDRA_ADDRESS, default 127.0.0.1]
#   --heap SIZE          -Xms/-Xmx           [env CASSANDRA_HEAP, default 1G]
#   --fresh              wipe <base>/data, logs/, tmp/ first  [env CASSANDRA_FRESH=1]
#   --fast               ring_delay 0 + no gossip-settle wait: first boot (empty data) takes
#                        ~6s instead of ~36s (30s RING_DELAY); restarts ~6.5s vs ~8s.
#                        Single-node only.  [env CASSANDRA_FAST=1]
#   --print              print the java command (one arg per line) and exit
# Several nodes, one cluster (like ccm): give each its own --address (127.0.0.N), base dir
# and JMX port, the same ports otherwise, and
#   CASSANDRA_SEEDS=ADDR:PORT,...   seeds (default: this node's own address and storage port)
#   CASSANDRA_CLUSTER_NAME=NAME     one name for all (default cqlready-<native-port>)
#   CASSANDRA_AUTO_BOOTSTRAP=false  join without streaming (a new, empty cluster)
#   CASSANDRA_RING_DELAY_MS=N       with --fast, the ring delay instead of 0: a node that is not
#                                   a seed gives up on its seeds after it ("Unable to gossip
#                                   with any peers"), and a busy seed may take seconds to answer
# JVM_EXTRA_OPTS (word-split) and args after `--` are appended to the JVM flags; that
# is where the cqlready agent goes: JVM_EXTRA_OPTS="-agentpath:/path/libcqlready.so=..."
# CASSANDRA_LIB overrides the jar dir (default: output of fetch.sh, which fetches on first use;
# CASSANDRA_VERSION picks 4.0.x, 4.1.x or 5.0.x). Each version gets its own yaml
# (cassandra-4.0.yaml.in: 4.0's key names; cassandra.yaml.in: 4.1 and 5.0) and the JVM
# options of its Java (jvm11.options, jvm17.options), as bin/cassandra would pick them.
# CASSANDRA_YAML_EXTRA: a file appended to the yaml (client_encryption_options, ...).
# CASSANDRA_AUTHENTICATOR: e.g. PasswordAuthenticator (default AllowAllAuthenticator).
# CASSANDRA_DC=NAME [CASSANDRA_RACK=NAME]: GossipingPropertyFileSnitch in that datacenter.
# JAVA (default: $JAVA_HOME/bin/java or java on PATH) selects the JVM.
# Logs: INFO to stdout and <base>/logs/system.log. Readiness line to watch:
#   "Starting listening for CQL clients on /127.0.0.1:<port> (unencrypted)..."
# SIGTERM: Cassandra's shutdown hook drains and the JVM exits with status 143 (~4-5s).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${CQLREADY_CACHE:-$HOME/.cache/cqlready}"

native_port="${CASSANDRA_NATIVE_PORT:-9042}"
storage_port="${CASSANDRA_STORAGE_PORT:-7000}"
jmx_port="${CASSANDRA_JMX_PORT:-7199}"
address="${CASSANDRA_ADDRESS:-127.0.0.1}"
heap="${CASSANDRA_HEAP:-1G}"
base="${CASSANDRA_BASE:-}"
fresh="${CASSANDRA_FRESH:-0}"
fast="${CASSANDRA_FAST:-0}"
print=0
extra_args=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --base) base="$2"; shift 2 ;;
        --native-port) native_port="$2"; shift 2 ;;
        --storage-port) storage_port="$2"; shift 2 ;;
        --jmx-port) jmx_port="$2"; shift 2 ;;
        --address) address="$2"; shift 2 ;;
        --heap) heap="$2"; shift 2 ;;
        --fresh) fresh=1; shift ;;
        --fast) fast=1; shift ;;
        --print) print=1; shift ;;
        --) shift; extra_args=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

base="${base:-$cache/nodes/$native_port}"
mkdir -p "$base"
base="$(cd "$base" && pwd)"

lib="${CASSANDRA_LIB:-}"
if [[ -z "$lib" ]]; then
    lib="$("$here/fetch.sh" | tail -n1)"
fi
[[ -d "$lib" ]] || { echo "run.sh: no jar dir $lib" >&2; exit 1; }
chome="$(dirname "$lib")"

if [[ -n "${JAVA:-}" ]]; then java="$JAVA"
elif [[ -n "${JAVA_HOME:-}" ]]; then java="$JAVA_HOME/bin/java"
else java="$(command -v java)"; fi

if [[ "$fresh" == 1 ]]; then
    rm -rf "$base/data" "$base/logs" "$base/tmp"
fi
mkdir -p "$base/data" "$base/logs" "$base/conf" "$base/tmp"

cversion="$(basename "$chome")"; cversion="${cversion#cassandra-}"
template="$here/cassandra.yaml.in"
[[ "$cversion" == 4.0* ]] && template="$here/cassandra-4.0.yaml.in"
java_major="$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
jvm_options="$here/jvm17.options"
[[ "$java_major" == 11 ]] && jvm_options="$here/jvm11.options"

yaml="$base/conf/cassandra.yaml"
sed -e "s|AllowAllAuthenticator|${CASSANDRA_AUTHENTICATOR:-AllowAllAuthenticator}|" -e "s|@CLUSTER_NAME@|${CASSANDRA_CLUSTER_NAME:-cqlready-$native_port}|g" \
    -e "s|@ADDRESS@|$address|g" \
    -e "s|@NATIVE_PORT@|$native_port|g" \
    -e "s|@STORAGE_PORT@|$storage_port|g" \
    -e "s|@SSL_STORAGE_PORT@|$((storage_port + 1))|g" \
    -e "s|@DATA_DIR@|$base/data|g" \
    "$template" > "$yaml"
if [[ -n "${CASSANDRA_YAML_EXTRA:-}" ]]; then
    cat "$CASSANDRA_YAML_EXTRA" >> "$yaml"
fi
if [[ -n "${CASSANDRA_SEEDS:-}" ]]; then
    sed -i "s|- seeds: \".*\"|- seeds: \"$CASSANDRA_SEEDS\"|" "$yaml"
fi
# CASSANDRA_DC (and CASSANDRA_RACK, default rack1): GossipingPropertyFileSnitch
# with this node's datacenter in <base>/conf/cassandra-rackdc.properties.
rackdc=()
if [[ -n "${CASSANDRA_DC:-}" ]]; then
    sed -i "s|^endpoint_snitch: .*|endpoint_snitch: GossipingPropertyFileSnitch|" "$yaml"
    printf 'dc=%s\nrack=%s\n' "$CASSANDRA_DC" "${CASSANDRA_RACK:-rack1}" > "$base/conf/cassandra-rackdc.properties"
    rackdc=("-Dcassandra-rackdc.properties=file://$base/conf/cassandra-rackdc.properties")
fi
if [[ -n "${CASSANDRA_AUTO_BOOTSTRAP:-}" ]]; then
    echo "auto_bootstrap: $CASSANDRA_AUTO_BOOTSTRAP" >> "$yaml"
fi
# logback 1.2 (Cassandra 4.x) names its shutdown hook DelayingShutdownHook.
hook=DefaultShutdownHook
compgen -G "$lib/logback-core-1.2*.jar" >/dev/null && hook=DelayingShutdownHook
sed "s|core.hook.DefaultShutdownHook|core.hook.$hook|" "$here/logback.xml" > "$base/conf/logback.xml"

opts=()
while IFS= read -r line; do
    line="${line%%#*}"; line="${line#"${line%%[![:space:]]*}"}"; line="${line%"${line##*[![:space:]]}"}"
    [[ -n "$line" ]] && opts+=("$line")
done < "$jvm_options"

opts+=("-Xms$heap" "-Xmx$heap")
[[ -f "$chome/conf/hotspot_compiler" ]] && opts+=("-XX:CompileCommand=quiet" "-XX:CompileCommandFile=$chome/conf/hotspot_compiler")
opts+=(
    "-XX:HeapDumpPath=$base/logs"
    "-XX:ErrorFile=$base/logs/hs_err_pid%p.log"
    "-Dcassandra.jmx.local.port=$jmx_port"
    "-Dcassandra.config=file://$yaml"
    "-Dcassandra.storagedir=$base/data"
    "-Dcassandra.logdir=$base/logs"
    "-Dcassandra-foreground=yes"
    "-Djava.io.tmpdir=$base/tmp"
    "-Djna.tmpdir=$base/tmp"
    "-Dcassandra.home=$chome"
    "-Dlogback.configurationFile=file://$base/conf/logback.xml"
)
if [[ "$fast" == 1 ]]; then
    opts+=("-Dcassandra.skip_wait_for_gossip_to_settle=0" "-Dcassandra.ring_delay_ms=${CASSANDRA_RING_DELAY_MS:-0}")
fi
if [[ -n "${JVM_EXTRA_OPTS:-}" ]]; then
    # shellcheck disable=SC2206
    opts+=(${JVM_EXTRA_OPTS})
fi
opts+=("${rackdc[@]}" "${extra_args[@]}")

cmd=("$java" "${opts[@]}" -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon)
if [[ "$print" == 1 ]]; then
    printf '%s\n' "${cmd[@]}"
    exit 0
fi
cd "$base"
exec "${cmd[@]}"
