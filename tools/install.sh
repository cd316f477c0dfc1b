#!/usr/bin/env bash
# Installs cqlready without a package manager, the way the packages lay it
# out, and never writes into a file a running JVM may have mapped:
#
#   sudo bash tools/install.sh [--prefix /usr] [--from DIR]
#
# DIR holds libcqlready.so and cqlready (and, optionally, cqlready-shim.jar):
# the unpacked release tarball's directory (the default when this script is
# run from it), or target/release of a build. It installs
#   PREFIX/lib/cqlready/<version>/libcqlready.so   (new version: new directory)
#   PREFIX/lib/cqlready/libcqlready.so             (a link to it, replaced by rename)
#   PREFIX/lib/cqlready/cqlready-shim.jar, PREFIX/bin/cqlready (and the
#   tarball's cassandra-start and cassandra-stop, which its cassandra.service runs)
# each written beside its destination under a temporary name, then renamed
# over it: a JVM that loaded the old library keeps its mapping intact
# (copying over a loaded .so, even with the same bytes, kills that JVM with
# SIGSEGV). <version> is what `DIR/cqlready --version` prints.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix=/usr
from=$here
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --from) from=${2:?--from needs a directory}; shift 2 ;;
        *) echo "install.sh: unknown argument $1 (--prefix DIR, --from DIR)" >&2; exit 64 ;;
    esac
done
for f in libcqlready.so cqlready; do
    [ -f "$from/$f" ] || { echo "install.sh: $from/$f not found (--from: a release directory or target/release)" >&2; exit 1; }
done
version=$("$from/cqlready" --version | awk '{print $2}')
[[ $version =~ ^[0-9A-Za-z.+~-]+$ ]] || { echo "install.sh: cannot read the version from $from/cqlready --version" >&2; exit 1; }

# put SRC DST MODE: copy to DST's directory under a temporary name, then rename.
put() {
    local tmp
    mkdir -p "$(dirname "$2")"
    tmp=$(mktemp "$(dirname "$2")/.$(basename "$2").XXXXXX")
    cp "$1" "$tmp" && chmod "$3" "$tmp" && mv -f "$tmp" "$2" || { rm -f "$tmp"; return 1; }
}
# link TARGET NAME: a symlink made under a temporary name, then renamed.
link() {
    local tmp
    tmp="$(dirname "$2")/.$(basename "$2").$$"
    ln -sfn "$1" "$tmp" && mv -Tf "$tmp" "$2" || { rm -f "$tmp"; return 1; }
}

dir=$prefix/lib/cqlready
put "$from/libcqlready.so" "$dir/$version/libcqlready.so" 0644
link "$version/libcqlready.so" "$dir/libcqlready.so"
[ -f "$from/cqlready-shim.jar" ] && put "$from/cqlready-shim.jar" "$dir/cqlready-shim.jar" 0644
for script in cassandra-start cassandra-stop; do   # the tarball's, for its cassandra.service
    [ -f "$from/$script" ] && put "$from/$script" "$dir/$script" 0755
done
put "$from/cqlready" "$prefix/bin/cqlready" 0755
echo "install.sh: cqlready $version in $dir/$version (linked from $dir/libcqlready.so) and $prefix/bin/cqlready"
