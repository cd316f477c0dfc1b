#!/bin/sh
# The image's entrypoint: adds the cqlready agent to JVM_EXTRA_OPTS, then hands
# over to the official image's docker-entrypoint.sh (which ends in
# `exec cassandra -f`; cassandra-env.sh appends $JVM_EXTRA_OPTS to JVM_OPTS).
#
# Appending here, rather than baking the agent into ENV JVM_EXTRA_OPTS, keeps
# the agent when a user sets JVM_EXTRA_OPTS for their own flags
# (`docker run -e JVM_EXTRA_OPTS=-Dcassandra.ring_delay_ms=0 ...`).
#
#   CQLREADY_OPTIONS   extra agent options, comma-separated, e.g. check=2s,log=warn;
#                      socket= there replaces the default socket path
#   CQLREADY=off       do not load the agent
#
# Run as root (the default; the official entrypoint then steps down to the
# cassandra user with gosu), it hands the socket directory to cassandra when a
# volume mounted there is not: a host directory bind-mounted by a systemd unit,
# as the official entrypoint does for /var/lib/cassandra.
#
# If JVM_EXTRA_OPTS already loads the agent (a user who wrote the whole
# -agentpath themselves, to this library or a copy of it, or the -javaagent
# shim cqlready-shim.jar), it is left exactly as given: one agent, the user's.
# Running this script twice (a derived image's entrypoint calling it again)
# adds nothing.
set -eu

lib=/usr/lib/cqlready/libcqlready.so
socket=/var/run/cqlready/cqlready.sock

# Also with CQLREADY=off: `cqlready attach` may load the agent later, and a
# fresh Podman volume there is root's (no copy-up through the /var/run link).
dir=${socket%/*}
if [ "$(id -u)" = 0 ] && [ -d "$dir" ]; then
    find "$dir" -maxdepth 0 \! -user cassandra -exec chown cassandra:cassandra '{}' + 2>/dev/null || :
fi

if [ "${CQLREADY:-on}" != off ]; then
    # The user's own agent: this library, a copy of it elsewhere, or the
    # -javaagent shim. The JVM splits JVM_OPTS on whitespace; so does this.
    own=
    set -f
    for word in ${JVM_EXTRA_OPTS:-}; do
        case "$word" in
            -agentpath:$lib | -agentpath:$lib=* | -agentpath:*/libcqlready.so | -agentpath:*/libcqlready.so=*) own=1 ;;
            -javaagent:*/cqlready-shim*.jar | -javaagent:*/cqlready-shim*.jar=*) own=1 ;;
        esac
    done
    set +f
    if [ -z "$own" ]; then
        opts=${CQLREADY_OPTIONS:-}
        case ",$opts" in
            *,socket=*) ;;
            *) opts="socket=$socket${opts:+,$opts}" ;;
        esac
        JVM_EXTRA_OPTS="${JVM_EXTRA_OPTS:+$JVM_EXTRA_OPTS }-agentpath:$lib=$opts"
        export JVM_EXTRA_OPTS
    fi
fi

exec docker-entrypoint.sh "$@"
