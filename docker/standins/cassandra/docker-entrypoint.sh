#!/bin/bash
# STAND-IN for the official image's docker-entrypoint.sh (docker-library/cassandra),
# written for this project's tests: the same contract, not the same file.
#
#   * first argument starting with '-': run `cassandra -f <args>`;
#   * `cassandra` run as root: hand /var/lib/cassandra, /var/log/cassandra and
#     $CASSANDRA_CONF to the cassandra user, then re-run this script as that
#     user (gosu);
#   * CASSANDRA_CLUSTER_NAME, CASSANDRA_NUM_TOKENS, CASSANDRA_LISTEN_ADDRESS
#     (default: this host's address), CASSANDRA_BROADCAST_ADDRESS,
#     CASSANDRA_RPC_ADDRESS (default 0.0.0.0), CASSANDRA_BROADCAST_RPC_ADDRESS,
#     CASSANDRA_SEEDS (default: the broadcast address), CASSANDRA_ENDPOINT_SNITCH,
#     CASSANDRA_DC / CASSANDRA_RACK written into $CASSANDRA_CONF/cassandra.yaml
#     and cassandra-rackdc.properties, in place as the official script does it
#     (a temporary file from mktemp, so in /tmp, copied back over the file:
#     the conf directory must be writable, /tmp too);
#   * then `exec "$@"`.
set -e

if [ "${1:0:1}" = '-' ]; then
    set -- cassandra -f "$@"
fi

if [ "$1" = cassandra ] && [ "$(id -u)" = 0 ]; then
    find /var/lib/cassandra /var/log/cassandra "$CASSANDRA_CONF" \
        \! -user cassandra -exec chown cassandra '{}' +
    exec gosu cassandra "${BASH_SOURCE[0]}" "$@"
fi

first_address() {
    # The address the official script takes from `hostname --ip-address`.
    local a
    a=$(hostname --ip-address 2>/dev/null || :)
    a=${a%% *}
    echo "${a:-127.0.0.1}"
}

# sed_in_place FILE SED-ARGS...: the official script's _sed-in-place.
sed_in_place() {
    local file=$1 tmp
    shift
    tmp=$(mktemp)
    sed "$@" "$file" > "$tmp"
    cat "$tmp" > "$file"
    rm "$tmp"
}

# set_yaml KEY VALUE: replace the top-level `KEY:` line (commented or not).
set_yaml() {
    sed_in_place "$CASSANDRA_CONF/cassandra.yaml" -r 's/^(# )?('"$1"':).*/\2 '"$2"'/'
}

if [ "$1" = cassandra ]; then
    : "${CASSANDRA_RPC_ADDRESS:=0.0.0.0}"
    : "${CASSANDRA_LISTEN_ADDRESS:=auto}"
    [ "$CASSANDRA_LISTEN_ADDRESS" = auto ] && CASSANDRA_LISTEN_ADDRESS=$(first_address)
    : "${CASSANDRA_BROADCAST_ADDRESS:=$CASSANDRA_LISTEN_ADDRESS}"
    [ "$CASSANDRA_BROADCAST_ADDRESS" = auto ] && CASSANDRA_BROADCAST_ADDRESS=$(first_address)
    : "${CASSANDRA_BROADCAST_RPC_ADDRESS:=$CASSANDRA_BROADCAST_ADDRESS}"
    if [ -n "${CASSANDRA_NAME:-}" ]; then
        : "${CASSANDRA_SEEDS:=$(getent hosts "$CASSANDRA_NAME" | awk '{print $1}')}"
    fi
    : "${CASSANDRA_SEEDS:=$CASSANDRA_BROADCAST_ADDRESS}"
    sed_in_place "$CASSANDRA_CONF/cassandra.yaml" -r 's/(- seeds:).*/\1 "'"$CASSANDRA_SEEDS"'"/'

    for key in broadcast_address broadcast_rpc_address cluster_name endpoint_snitch \
        listen_address num_tokens rpc_address; do
        var="CASSANDRA_${key^^}"
        val="${!var:-}"
        if [ -n "$val" ]; then
            set_yaml "$key" "'$val'"
        fi
    done
    for key in dc rack; do
        var="CASSANDRA_${key^^}"
        val="${!var:-}"
        if [ -n "$val" ]; then
            sed_in_place "$CASSANDRA_CONF/cassandra-rackdc.properties" -r 's/^('"$key"'=).*/\1'"$val"'/'
        fi
    done
fi

exec "$@"
