#!/usr/bin/env bash
# The library's unit tests, the fuzz regression tests and the command's
# tests (tests/cli.rs runs the `cqlready` binary) built with
# AddressSanitizer, which on Linux includes LeakSanitizer: any heap error or
# leak fails the run. Rust ships the sanitizer runtimes; RUSTC_BOOTSTRAP=1
# lets the stable toolchain take -Zsanitizer. Its own target directory, so
# the normal build is untouched.
#
#   bash tests/tools/asan.sh            # build and run
#   bash tests/tools/asan.sh --build    # build only (tests/run.sh, ahead of time)
set -euo pipefail
cd "$(dirname "$0")/../.."
# The JVMs that tests/cli.rs starts load the normal agent: an ASan-built
# cdylib needs the ASan runtime loaded first, which a JVM does not have.
# Built before RUSTC_BOOTSTRAP is set, which cargo counts as a change of
# build (the normal build would be made again, here and after).
build_only=()
[ "${1:-}" = --build ] && build_only=(--no-run)
[ ${#build_only[@]} -eq 1 ] || cargo build --lib
export CQLREADY_LIB="$PWD/target/debug/libcqlready.so"
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
cargo test --target x86_64-unknown-linux-gnu --target-dir target/asan "${build_only[@]}" \
    --lib --test fuzz_regressions --test fuzz_corpus --test cli
