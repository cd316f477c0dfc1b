#!/usr/bin/env bash
# docker/systemd/cassandra-podman.service under a real systemd 252 (the nspawn
# container of tests/systemd/harness.sh), with Podman inside it.
#
#   docker/systemd-podman.sh up NAME NATIVE_PORT STORAGE_PORT JMX_PORT
#       boots the container (host network), loads localhost/cqlready-cassandra:5.0
#       into a Podman store of its own (cached per image id), installs the unit
#       adapted to this machine (below) and prints the container's PID 1
#   docker/systemd-podman.sh down NAME
#
# Then: tests/systemd/harness.sh systemctl NAME start cassandra-podman.service
#
# The unit is docker/systemd/cassandra-podman.service with only these changes,
# all machine settings (the nspawn container's /etc and cgroup hierarchies are
# read-only, the machine refuses to raise rlimits):
#   /usr/bin/podman   -> podman with its own --root/--runroot/--network-config-dir,
#                        --runtime crun and --cgroup-manager cgroupfs
#   --cgroups=no-conmon -> --cgroups=disabled (crun; runc cannot run without cgroups)
#   + CONTAINERS_CONF with keyring = false (nspawn denies services a session keyring)
#   + --ulimit nofile=1024:1024 --ulimit nproc=1000:1000, the ports and a 512M heap
#     (JVM_EXTRA_OPTS, MAX_HEAP_SIZE), so that it runs beside other Cassandras.
#     No address settings: the image picks them on its defaults, as the unit
#     leaves them to it.
# One instance at a time per machine (they share the image store): `up` waits.
# Needs: podman, crun, systemd-container (systemd-nspawn), the image (docker/test-image.sh).
set -euo pipefail
# A failing command says which one it was: never exit 1 without a reason.
trap 'echo "systemd-podman.sh: line $LINENO: \`$BASH_COMMAND\` failed (exit $?)" >&2' ERR

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
harness="$root/tests/systemd/harness.sh"
cache="${CQLREADY_CACHE:-$HOME/.cache/cqlready}/systemd-podman"
image=localhost/cqlready-cassandra:5.0

cmd=${1:?usage: systemd-podman.sh up NAME NATIVE STORAGE JMX | down NAME}
name=${2:?name}
units="/run/cqlready-systemd-podman/$name"

case "$cmd" in
    down)
        bash "$harness" down "$name" >/dev/null 2>&1 || :
        rm -rf "$units"
        exit 0
        ;;
    up) ;;
    *) echo "systemd-podman.sh: unknown command $cmd" >&2; exit 2 ;;
esac
native=${3:?native port}; storage=${4:?storage port}; jmx=${5:?jmx port}
command -v crun >/dev/null || { echo "systemd-podman.sh: crun not found (apt-get install crun)" >&2; exit 1; }

# One store per image id, loaded once from `podman save` (flock'd). Each
# step ends in a rename or a marker, so an interrupted run leaves either
# nothing or a whole step: the archive is written beside and renamed into
# place, and `.loaded` is touched only after `podman load` succeeded.
id=$(podman image inspect --format '{{.Id}}' "$image")
store="$cache/${id:0:12}"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [[ ! -f "$store/.loaded" ]]; then
    # Other images' stores, and any half-loaded store of this one.
    find "$cache" -mindepth 1 -maxdepth 1 -type d ! -path "$store" -exec rm -rf {} +
    rm -rf "$store/storage" "$store/image.tar.part"
    mkdir -p "$store"
    if [[ ! -f "$store/image.tar" ]]; then
        echo "systemd-podman.sh: podman save $image" >&2
        podman save --format docker-archive -o "$store/image.tar.part" "$image"
        mv "$store/image.tar.part" "$store/image.tar"
    fi
fi
exec 9>&- # not into the nspawn container, which outlives this script

# The names of the other instances whose systemd container is still up
# (a directory left by one that is gone does not count).
others() {
    local d
    for d in /run/cqlready-systemd-podman/*/; do
        d=${d%/}
        d=${d##*/}
        if [[ $d != "*" && $d != "$name" && -d /run/cqlready-systemd/$d ]]; then
            echo "$d"
        fi
    done
}

# The image store holds Podman's container database too: one instance at a
# time (another's `--replace --name cassandra` would remove ours). Wait for
# the others to go down (15 min at most).
for _ in $(seq 900); do
    up=$(others)
    [[ -z "$up" ]] && break
    sleep 1
done
[[ -z "$up" ]] || { echo "systemd-podman.sh: still up after 15 min: $up" >&2; exit 1; }
mkdir -p "$units"
pod="/usr/bin/podman --root /srv/pod/storage --runroot /run/pod --network-config-dir /run/pod/net --runtime crun --cgroup-manager cgroupfs"
jvm="-Dcassandra.native_transport_port=$native -Dcassandra.storage_port=$storage -Dcassandra.jmx.local.port=$jmx -Dcassandra.ring_delay_ms=0 -Dcassandra.skip_wait_for_gossip_to_settle=0"
sed -e "s|/usr/bin/podman|$pod|g" \
    -e "s|--cgroups=no-conmon|--cgroups=disabled --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 \"--env=JVM_EXTRA_OPTS=$jvm\" --env=MAX_HEAP_SIZE=512M|" \
    -e 's|^Environment=PODMAN_SYSTEMD_UNIT=%n|&\nEnvironment=CONTAINERS_CONF=/srv/pod/containers.conf|' \
    "$here/systemd/cassandra-podman.service" > "$units/cassandra-podman.service"
# nspawn refuses a service the kernel keyring crun would make per container.
printf '[containers]\nkeyring = false\n' > "$store/containers.conf"

pid1=$(bash "$harness" up "$name" --host-network --unit-dir "$units" --bind "$store:/srv/pod")
inside() { bash "$harness" exec "$name" -- "$@"; }
inside mkdir -p /run/pod/net /var/tmp /var/lib/cassandra >&2
(
    flock 8
    if [[ ! -f "$store/.loaded" ]]; then
        echo "systemd-podman.sh: loading the image into $store" >&2
        inside sh -c "$pod load -i /srv/pod/image.tar" >&2
        touch "$store/.loaded"
        rm -f "$store/image.tar"
    fi
) 8>"$cache/.lock"
echo "$pid1"
