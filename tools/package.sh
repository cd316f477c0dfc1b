#!/usr/bin/env bash
# Builds the release packages from the glibc 2.17 build (tools/release.sh):
#
#   bash tools/package.sh [--from DIR] [--version V] [--out DIR]
#
# into target/package/ (or --out):
#   cqlready_<version>_amd64.deb               Debian/Ubuntu, depends on cassandra
#   cqlready-<version>-1.x86_64.rpm            RHEL/Rocky/Fedora, requires cassandra
#   cqlready-<version>-x86_64-linux-gnu.tar.gz the same files and tools/install.sh
#   SHA256SUMS
# <version> is Cargo.toml's. The .deb and .rpm are made by nfpm from
# packaging/nfpm.yaml (docs/packages.md says why nfpm); the shim jar by
# java-shim/build.sh (needs javac). Every output is written under a
# temporary name and renamed into place.
#
# --from DIR  package the libcqlready.so and cqlready in DIR instead of
#             building (e.g. target/zigbuild/x86_64-unknown-linux-gnu/release)
# --version V package under version V instead of Cargo.toml's: the tests use
#             it to make a "newer" package of the same build cheaply. The
#             binaries still report the version they were built as.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
from='' version='' out="$root/target/package"
while [ $# -gt 0 ]; do
    case $1 in
        --from) from=${2:?--from needs a directory}; shift 2 ;;
        --version) version=${2:?--version needs a version}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        *) echo "package.sh: unknown argument $1 (--from DIR, --version V, --out DIR)" >&2; exit 64 ;;
    esac
done
[ -n "$version" ] || version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "package.sh: version \"$version\" is not N.N.N" >&2; exit 64; }
command -v nfpm >/dev/null || { echo "package.sh: nfpm not found (bash tests/setup.sh installs it: go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0)" >&2; exit 1; }
started=$(date +%s)

if [ -z "$from" ]; then
    from=$(bash "$root/tools/release.sh" x86_64-unknown-linux-gnu.2.17 | tail -n1 | cut -d' ' -f2)
fi
for f in libcqlready.so cqlready; do
    [ -f "$from/$f" ] || { echo "package.sh: $from/$f not found" >&2; exit 1; }
done

stage="$out/.stage-$version"
rm -rf "$stage"
mkdir -p "$stage/help"
cp "$from/libcqlready.so" "$from/cqlready" "$stage/"
cp "$(bash "$root/java-shim/build.sh" | tail -n1)" "$stage/cqlready-shim.jar"
# The man-style help texts: `cqlready --help` and each subcommand's.
"$stage/cqlready" --help > "$stage/help/cqlready.txt"
for sub in $("$stage/cqlready" --help | awk '/^Commands:/ {on=1; next} on && /^  [a-z]/ {print $1} on && /^$/ {exit}'); do
    [ "$sub" = help ] || "$stage/cqlready" "$sub" --help > "$stage/help/cqlready-$sub.txt"
done
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
# One changelog entry, in nfpm's (chglog) format: the deb's
# changelog.Debian.gz and the rpm's %changelog.
cat > "$stage/changelog.yml" <<YML
- semver: $version-1
  date: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
  packager: cqlready maintainers <cqlready@example.org>
  changes:
    - note: cqlready $version; the project's CHANGELOG.md says what changed.
YML

deb="cqlready_${version}_amd64.deb"
rpm="cqlready-${version}-1.x86_64.rpm"
tgz="cqlready-${version}-x86_64-linux-gnu.tar.gz"
# nfpm expands variables in some fields only: fill them all in first.
sed -e "s|\${CQLREADY_VERSION}|$version|g" -e "s|\${CQLREADY_STAGE}|$stage|g" \
    -e "s|\${CQLREADY_SRC}|$root/packaging|g" "$root/packaging/nfpm.yaml" > "$stage/nfpm.yaml"
for h in "$stage"/help/*.txt; do
    printf '  - { src: %s, dst: /usr/share/doc/cqlready/help/%s, %s, file_info: { mode: 0644 } }\n' \
        "$h" "${h##*/}" "type: doc, packager: rpm" "$h" "${h##*/}" "packager: deb"
done > "$stage/help.yaml"
sed -i -e "/# @HELP@/r $stage/help.yaml" -e "/# @HELP@/d" "$stage/nfpm.yaml"
nfpm package --config "$stage/nfpm.yaml" --packager deb --target "$stage/$deb" >&2
nfpm package --config "$stage/nfpm.yaml" --packager rpm --target "$stage/$rpm" >&2

tree="$stage/tar/cqlready-${version}-x86_64-linux-gnu"
mkdir -p "$tree"
cp -r "$stage/libcqlready.so" "$stage/cqlready" "$stage/cqlready-shim.jar" "$stage/help" "$tree/"
cp "$root/tools/install.sh" "$root/packaging/cassandra.service" "$root/packaging/cassandra-start" \
    "$root/packaging/cassandra-stop" "$tree/"
cp "$root/packaging/README.host" "$tree/README"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    -C "$stage/tar" -czf "$stage/$tgz" "$(basename "$tree")"

(cd "$stage" && sha256sum "$deb" "$rpm" "$tgz" > SHA256SUMS)
for f in "$deb" "$rpm" "$tgz"; do mv -f "$stage/$f" "$out/$f"; done
mv -f "$stage/SHA256SUMS" "$out/SHA256SUMS"
rm -rf "$stage"
echo "package.sh: $version in $(( $(date +%s) - started ))s:" >&2
for f in "$deb" "$rpm" "$tgz" SHA256SUMS; do echo "$out/$f"; done
