#!/usr/bin/env bash
# Builds (once) a STAND-IN for Apache Cassandra's `cassandra` .deb and prints
# its path. Not Apache's package: the jars are Maven Central's
# (tests/cassandra/fetch.sh), the scripts are this project's stand-ins
# (tests/package/standin/), in the layout Apache's package installs:
#   /usr/sbin/cassandra, /usr/share/cassandra/cassandra.in.sh,
#   /usr/share/cassandra/lib/*.jar, /etc/cassandra/ (conffiles; cassandra-env.sh
#   ends with JVM_OPTS="$JVM_OPTS $JVM_EXTRA_OPTS"), /etc/init.d/cassandra,
#   /etc/security/limits.d/cassandra.conf, /var/lib/cassandra,
#   /var/log/cassandra, the cassandra user (postinst), update-rc.d defaults.
# Unlike Apache's, its postinst does not start Cassandra (the test starts it
# when it needs it) and the heap defaults to 512 MiB.
#
# Cached as ${CQLREADY_CACHE:-~/.cache/cqlready}/package/cassandra_<v>_all.deb,
# rebuilt when its inputs change (their hash is in the file's name), written
# under a temporary name then renamed. Needs dpkg-deb.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${CQLREADY_CACHE:-$HOME/.cache/cqlready}/package"
lib="$(bash "$root/tests/cassandra/fetch.sh" | tail -n1)"
version=$(basename "$(dirname "$lib")"); version=${version#cassandra-}
docker_conf="$root/docker/standins/cassandra"
inputs=("$here/standin-deb.sh" "$here"/standin/* "$docker_conf/cassandra.yaml" "$docker_conf/cassandra-env.sh"
    "$docker_conf/cassandra-rackdc.properties" "$root/tests/cassandra/jvm17.options" "$root/tests/cassandra/logback.xml")
hash=$(cat "${inputs[@]}" | sha256sum | cut -c1-12)
deb="$cache/cassandra_${version}-standin-${hash}_all.deb"
mkdir -p "$cache"
exec 9>"$cache/standin.lock"
flock 9
if [[ -s $deb ]]; then echo "$deb"; exit 0; fi

tree=$(mktemp -d "$cache/.standin.XXXXXX")
trap 'rm -rf "$tree"' EXIT
install -d "$tree/DEBIAN" "$tree/usr/sbin" "$tree/usr/share/cassandra/lib" "$tree/etc/cassandra" \
    "$tree/etc/init.d" "$tree/etc/security/limits.d" "$tree/var/lib/cassandra" "$tree/var/log/cassandra"
cp "$lib"/*.jar "$tree/usr/share/cassandra/lib/"
install -m755 "$here/standin/cassandra" "$tree/usr/sbin/cassandra"
install -m644 "$here/standin/cassandra.in.sh" "$tree/usr/share/cassandra/cassandra.in.sh"
install -m755 "$here/standin/init" "$tree/etc/init.d/cassandra"
{ echo ': "${MAX_HEAP_SIZE:=512M}"  # stand-in: a small heap for tests'; cat "$docker_conf/cassandra-env.sh"; } \
    > "$tree/etc/cassandra/cassandra-env.sh"
cp "$docker_conf/cassandra.yaml" "$docker_conf/cassandra-rackdc.properties" "$tree/etc/cassandra/"
cp "$root/tests/cassandra/jvm17.options" "$tree/etc/cassandra/jvm17-server.options"
cp "$root/tests/cassandra/logback.xml" "$tree/etc/cassandra/logback.xml"
cp "$(dirname "$lib")/conf/hotspot_compiler" "$tree/etc/cassandra/hotspot_compiler"
printf 'cassandra  -  memlock  unlimited\ncassandra  -  nofile   100000\n' > "$tree/etc/security/limits.d/cassandra.conf"
(cd "$tree" && find etc -type f | sed 's|^|/|' | sort) > "$tree/DEBIAN/conffiles"
cat > "$tree/DEBIAN/control" <<CONTROL
Package: cassandra
Version: $version
Architecture: all
Maintainer: cqlready tests <cqlready@example.org>
Depends: adduser, openjdk-17-jre-headless | java17-runtime-headless
Section: database
Priority: optional
Description: STAND-IN for Apache Cassandra's package (cqlready tests)
 Maven Central's Cassandra $version jars in the layout of Apache's .deb,
 with stand-in scripts. Not Apache's package: never publish it.
CONTROL
cat > "$tree/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    getent group cassandra >/dev/null || addgroup --system cassandra
    getent passwd cassandra >/dev/null || adduser --quiet --system --ingroup cassandra \
        --disabled-login --disabled-password --home /var/lib/cassandra --no-create-home \
        --gecos "Cassandra database" cassandra
    [ -n "$2" ] || chown -R cassandra: /var/lib/cassandra /var/log/cassandra
    update-rc.d cassandra defaults >/dev/null
fi
SCRIPT
cat > "$tree/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
[ "$1" = purge ] && update-rc.d cassandra remove >/dev/null || true
SCRIPT
chmod 755 "$tree/DEBIAN/postinst" "$tree/DEBIAN/postrm"
rm -f "$cache"/cassandra_*-standin-*_all.deb
dpkg-deb --root-owner-group -Zgzip -z1 -b "$tree" "$deb.tmp" >&2
mv "$deb.tmp" "$deb"
echo "$deb"
