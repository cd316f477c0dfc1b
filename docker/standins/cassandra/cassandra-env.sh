# STAND-IN for Apache Cassandra's conf/cassandra-env.sh (written for this
# project's tests), sourced by bin/cassandra. Like the real file it
#   * sizes the heap from the machine unless MAX_HEAP_SIZE is set
#     (max(min(RAM/2, 1 GiB), min(RAM/4, 8 GiB)));
#   * reads the JVM flags from jvm-server.options and jvm<major>-server.options
#     for the major version of $JAVA (jvm11- for 4.1 on 11, jvm17- for 5.0);
#   * sets the local JMX port (7199; a later -Dcassandra.jmx.local.port in
#     JVM_EXTRA_OPTS wins, as with the real file), and
#   * ends with the line that appends $JVM_EXTRA_OPTS.

if [ -z "${MAX_HEAP_SIZE:-}" ]; then
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
    half=$(( mem_mb / 2 )); [ "$half" -gt 1024 ] && half=1024
    quarter=$(( mem_mb / 4 )); [ "$quarter" -gt 8192 ] && quarter=8192
    if [ "$half" -gt "$quarter" ]; then MAX_HEAP_SIZE="${half}M"; else MAX_HEAP_SIZE="${quarter}M"; fi
fi

java_major=$("${JAVA:-java}" -version 2>&1 | sed -n 's/.*version "\(1\.\)\{0,1\}\([0-9]*\).*/\2/p' | head -n1)
for options in "$CASSANDRA_CONF/jvm-server.options" "$CASSANDRA_CONF/jvm${java_major}-server.options"; do
    [ -f "$options" ] || continue
    while IFS= read -r line; do
        case "$line" in '#'* | '') continue ;; esac
        JVM_OPTS="${JVM_OPTS:-} $line"
    done < "$options"
done

JVM_OPTS="$JVM_OPTS -Xms$MAX_HEAP_SIZE -Xmx$MAX_HEAP_SIZE"
JVM_OPTS="$JVM_OPTS -XX:CompileCommandFile=$CASSANDRA_CONF/hotspot_compiler"
JVM_OPTS="$JVM_OPTS -XX:HeapDumpPath=$CASSANDRA_HOME/logs -XX:ErrorFile=$CASSANDRA_HOME/logs/hs_err_%p.log"

JMX_PORT="7199"
JVM_OPTS="$JVM_OPTS -Dcassandra.jmx.local.port=$JMX_PORT"
JVM_OPTS="$JVM_OPTS -Dcom.sun.management.jmxremote.authenticate=false"

JVM_OPTS="$JVM_OPTS $JVM_EXTRA_OPTS"
