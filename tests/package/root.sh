#!/usr/bin/env bash
# A Debian bookworm root filesystem that boots with systemd, for the package
# proof (tests/package/proof.sh): prints its directory. Made once with
# mmdebstrap (docker/standins/rootfs.sh, cached tarball), unpacked into
# ${CQLREADY_CACHE:-~/.cache/cqlready}/package/root-<tarball's hash> under a
# temporary name, then renamed: a half-unpacked root is never used. The
# proof boots it with --volatile=overlay, so it stays as made.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
packages=systemd,systemd-sysv,dbus,openjdk-17-jre-headless,procps,adduser,sysvinit-utils
tar=$(bash "$here/../../docker/standins/rootfs.sh" bookworm-systemd "$packages" | tail -n1)
cache="${CQLREADY_CACHE:-$HOME/.cache/cqlready}/package"
# The name changes with the tarball and with this script.
dir="$cache/root-$(cat "$tar.packages" "${BASH_SOURCE[0]}" 2>/dev/null | cksum | cut -d" " -f1)-$(stat -c %s-%Y "$tar")"
mkdir -p "$cache"
exec 9>"$cache/root.lock"
flock 9
if [[ ! -d $dir ]]; then
    tmp=$(mktemp -d "$cache/.root.XXXXXX")
    tar -C "$tmp" -xf "$tar"
    # rootfs.sh leaves documentation out of its images; here the packages'
    # own files must install whole.
    rm -f "$tmp/etc/dpkg/dpkg.cfg.d/99mmdebstrap"
    echo cqlready-package > "$tmp/etc/hostname"
    # Cassandra resolves listen_address: localhost.
    printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n127.0.1.1 cqlready-package\n' > "$tmp/etc/hosts"
    chmod 755 "$tmp"
    for old in "$cache"/root-*; do [[ -d $old ]] && rm -rf "$old"; done
    mv "$tmp" "$dir"
fi
echo "$dir"
