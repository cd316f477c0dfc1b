#!/usr/bin/env bash
# Release build of the agent library and the command against an old glibc
# baseline, so that they load wherever Cassandra runs (RHEL/CentOS 7 has
# glibc 2.17, RHEL/Rocky 8 has 2.28):
#
#   bash tools/release.sh [TARGET...]       default: x86_64-unknown-linux-gnu.2.17
#
# `cargo zigbuild` links with zig's glibc stubs of the version after the last
# dot. Needs cargo-zigbuild and zig: both on PyPI (pip install cargo-zigbuild
# ziglang); this script makes a venv for them at
# ${CQLREADY_CACHE:-~/.cache/cqlready}/zigbuild-venv when they are not on PATH.
# aarch64-unknown-linux-gnu.2.17 works the same once its Rust standard library
# is installed (rustup target add aarch64-unknown-linux-gnu).
#
# Output: target/zigbuild/<target>/release/{libcqlready.so,cqlready}; one line
# per target on stdout: "<target> <dir>".
set -euo pipefail

# A release build is a stable build; and cargo counts RUSTC_BOOTSTRAP (which
# tests/run.sh gives the test binaries, and so their children) as a change of
# build, so each caller would otherwise make its own.
unset RUSTC_BOOTSTRAP
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CQLREADY_CACHE:-$HOME/.cache/cqlready}"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(x86_64-unknown-linux-gnu.2.17)

if ! command -v cargo-zigbuild >/dev/null || ! { command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1; }; then
    venv="$cache/zigbuild-venv"
    if [[ ! -x "$venv/bin/cargo-zigbuild" ]]; then
        mkdir -p "$cache"
        exec 9>"$cache/zigbuild-venv.lock"
        flock 9
        if [[ ! -x "$venv/bin/cargo-zigbuild" ]]; then
            echo "release.sh: installing cargo-zigbuild and ziglang from PyPI into $venv" >&2
            python3 -m venv "$venv"
            "$venv/bin/pip" install -q cargo-zigbuild ziglang >&2
        fi
    fi
    export PATH="$venv/bin:$PATH"
fi

cd "$root"
for t in "${targets[@]}"; do
    echo "release.sh: cargo zigbuild --release --target $t" >&2
    cargo zigbuild --release --locked --target "$t" --target-dir target/zigbuild >&2
    echo "$t $root/target/zigbuild/${t%%.*}/release"
done
