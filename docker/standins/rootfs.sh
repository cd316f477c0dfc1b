#!/usr/bin/env bash
# Build (once) a Debian bookworm root filesystem tarball for a stand-in base
# image, from Debian's packages only (mmdebstrap), and print its path.
#
#   docker/standins/rootfs.sh NAME PACKAGE[,PACKAGE...]
#
# Cached as ${CQLREADY_CACHE:-~/.cache/cqlready}/standins/NAME.tar, rebuilt only
# when the package list changes (recorded beside it in NAME.packages); flock'd
# so concurrent runs build it once. Needs root and mmdebstrap
# (apt-get install mmdebstrap). Man pages, docs and locales are left out.
set -euo pipefail

name=${1:?usage: rootfs.sh NAME PACKAGES}
packages=${2:?usage: rootfs.sh NAME PACKAGES}
mirror=${CQLREADY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
dir="${CQLREADY_CACHE:-$HOME/.cache/cqlready}/standins"
tar="$dir/$name.tar"
mkdir -p "$dir"
exec 9>"$dir/$name.lock"
flock 9
if [[ -s "$tar" && "$(cat "$dir/$name.packages" 2>/dev/null)" == "$packages" ]]; then
    echo "$tar"
    exit 0
fi
command -v mmdebstrap >/dev/null || { echo "rootfs.sh: mmdebstrap not found (apt-get install mmdebstrap)" >&2; exit 1; }
echo "rootfs.sh: building $tar (bookworm + $packages)" >&2
start=$(date +%s)
rm -f "$tar.tmp"
# The man directories stay (update-alternatives links into them); their files go.
mmdebstrap --variant=minbase --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/man/*/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --essential-hook='mkdir -p "$1/usr/share/man/man1"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    --format=tar bookworm "$tar.tmp" "$mirror" >&2
# The package list first, then the tarball: a run interrupted in between
# leaves no tarball, or one whose list says what it holds.
rm -f "$tar"
echo "$packages" > "$dir/$name.packages.tmp"
mv "$dir/$name.packages.tmp" "$dir/$name.packages"
mv "$tar.tmp" "$tar"
echo "rootfs.sh: $tar in $(( $(date +%s) - start ))s, $(du -h "$tar" | cut -f1)" >&2
echo "$tar"
