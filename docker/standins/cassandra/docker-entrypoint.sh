#!/bin/bash
# STAND-IN for the official image's docker-entrypoint.sh (docker-library/cassandra),
# written for this project's tests: the same contract, not the same file.
#
#   * first argument starting with '-': run `cassandra -f <args>`;
#   * `cassandra` run as root: hand /var/lib/cassandra, /var/log/cassandra and
#     $CASSANDRA_CONF to the cassandra user, then re-run this script as that
#     user (gosu);
#   * CASSANDRA_CLUSTER_NAME, CASSANDRA_NUM_TOKENS, CASSANDRA_LISTEN_ADDRESS
#     (default, and `auto`: the first non-loopback IPv4 address of `ip address`,
#     as the official script scrapes it), CASSANDRA_BROADCAST_ADDRESS (default:
#     the listen address), CASSANDRA_RPC_ADDRESS (default 0.0.0.0),
#     CASSANDRA_BROADCAST_RPC_ADDRESS (default: the broadcast address),
#     CASSANDRA_SEEDS (default: the broadcast address; "cassandra" when
#     CASSANDRA_NAME is set), CASSANDRA_ENDPOINT_SNITCH, CASSANDRA_DC /
#     CASSANDRA_RACK written into $CASSANDRA_CONF/cassandra.yaml and
#     cassandra-rackdc.properties, in place as the official script does it:
#     a `KEY:` line, commented (`# KEY:`) or not, gets the value, so the
#     yaml must have the official file's lines (`# broadcast_rpc_address:
#     1.2.3.4`); through a temporary file from mktemp (in /tmp) copied back
#     over the file (the conf directory must be writable, /tmp too);
#   * then `exec "$@"`.
#
# On its defaults (no CASSANDRA_* set) it therefore behaves as the official
# image does: rpc_address 0.0.0.0 with broadcast_rpc_address, listen_address
# and seeds the container's (with --network=host: the host's) first address.
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
    # The official script's choice: the first `inet` address whose interface
    # is not `lo` (iproute2's `ip address`, installed in both images).
    ip address | awk '$1 == "inet" && $NF != "lo" { sub(/\/.*$/, "", $2); print $2; exit }'
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
    # Unset (not empty) takes the default, as in the official script.
    : "${CASSANDRA_RPC_ADDRESS=0.0.0.0}"
    : "${CASSANDRA_LISTEN_ADDRESS=auto}"
    [ "$CASSANDRA_LISTEN_ADDRESS" = auto ] && CASSANDRA_LISTEN_ADDRESS=$(first_address)
    : "${CASSANDRA_BROADCAST_ADDRESS=$CASSANDRA_LISTEN_ADDRESS}"
    [ "$CASSANDRA_BROADCAST_ADDRESS" = auto ] && CASSANDRA_BROADCAST_ADDRESS=$(first_address)
    : "${CASSANDRA_BROADCAST_RPC_ADDRESS:=$CASSANDRA_BROADCAST_ADDRESS}"
    if [ -n "${CASSANDRA_NAME:-}" ]; then
        : "${CASSANDRA_SEEDS:=cassandra}"
    fi
    : "${CASSANDRA_SEEDS:=$CASSANDRA_BROADCAST_ADDRESS}"
    sed_in_place "$CASSANDRA_CONF/cassandra.yaml" -r 's/(- seeds:).*/\1 "'"$CASSANDRA_SEEDS"'"/'

    for key in broadcast_address broadcast_rpc_address cluster_name endpoint_snitch \
        listen_address num_tokens rpc_address; do
        var="CASSANDRA_${key^^}"
        val="${!var:-}"
        if [ -n "$val" ]; then
            set_yaml "$key" "$val"
        fi
    done
    for key in dc rack; do
        var="CASSANDRA_${key^^}"
        val="${!var:-}"
        if [ -n "$val" ]; then
            sed_in_place "$CASSANDRA_CONF/cassandra-rackdc.properties" -r 's/^('"$key"'=).*/\1 '"$val"'/'
        fi
    done
fi

exec "$@"
