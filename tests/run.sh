#!/usr/bin/env bash
# Every test: formatting, lints, unit tests, the integration tests that load
# the agent into real JVMs (java on PATH, Temurin 25 when present), a real
# Cassandra and a real systemd; then the same pure-Rust tests under
# AddressSanitizer and a few seconds of libFuzzer per fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# The integration tests load target/debug/libcqlready.so into JVMs; `cargo test`
# alone does not always leave the cdylib there, so build it first.
cargo build
cargo test --all-targets
bash tests/tools/asan.sh
if cargo fuzz --version >/dev/null 2>&1; then
    bash fuzz/ci.sh 5
else
    echo "fuzz: SKIPPED, cargo-fuzz is not installed (cargo install cargo-fuzz; .ci/run does)" >&2
fi
