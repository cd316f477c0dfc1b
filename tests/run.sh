#!/usr/bin/env bash
# Every test: formatting, lints, unit tests, and the integration tests that
# load the agent into real JVMs (java on PATH, Temurin 25 when present).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# The integration tests load target/debug/libcqlready.so into JVMs; `cargo test`
# alone does not always leave the cdylib there, so build it first.
cargo build
cargo test --all-targets
