#!/usr/bin/env bash
# Run Cassandra's nodetool (org.apache.cassandra.tools.NodeTool) from the same jars as run.sh.
#
# Usage: tests/cassandra/nodetool.sh [-p JMX_PORT] [-h HOST] <command> [args...]
#   e.g. nodetool.sh -p 7199 statusbinary | disablebinary | enablebinary | drain | status | info
# The JMX port defaults to $CASSANDRA_JMX_PORT, else 7199; the host to 127.0.0.1.
# All arguments are passed to NodeTool as given (a -p/-h of your own wins).
# CASSANDRA_LIB / CQLREADY_CACHE / CASSANDRA_VERSION as for run.sh; JAVA selects the JVM.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lib="${CASSANDRA_LIB:-}"
if [[ -z "$lib" ]]; then
    lib="$("$here/fetch.sh" 2>/dev/null | tail -n1)"
fi
if [[ -n "${JAVA:-}" ]]; then java="$JAVA"
elif [[ -n "${JAVA_HOME:-}" ]]; then java="$JAVA_HOME/bin/java"
else java="$(command -v java)"; fi

defaults=()
have_p=0; have_h=0
for a in "$@"; do
    case "$a" in
        -p|--port|-p*|--port=*) have_p=1 ;;
        -h|--host|--host=*) have_h=1 ;;
    esac
done
[[ $have_p == 0 ]] && defaults+=(-p "${CASSANDRA_JMX_PORT:-7199}")
[[ $have_h == 0 ]] && defaults+=(-h 127.0.0.1)

# Same module flags as bin/nodetool (jvm17-clients.options): sun.rmi.registry etc.
exec "$java" -Xms64m -Xmx128m -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED \
    --add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED \
    --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-exports=java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED \
    --add-opens=java.base/java.lang=ALL-UNNAMED \
    --add-opens=java.base/java.nio=ALL-UNNAMED \
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED \
    -Djava.net.preferIPv4Stack=true \
    -Dcassandra.storagedir=/tmp \
    -Dlogback.configurationFile="file://$here/logback-tools.xml" \
    -cp "$lib/*" org.apache.cassandra.tools.NodeTool "${defaults[@]}" "$@"
