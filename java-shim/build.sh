#!/usr/bin/env bash
# Builds target/java-shim/cqlready-shim.jar with plain javac and jar (no Maven):
# Java 8 bytecode, Premain-Class and Agent-Class, the version shared with the crate.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="$root/target/java-shim"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
rm -rf "$out/classes"
mkdir -p "$out/classes"
javac --release 8 -Xlint:-options -d "$out/classes" "$here/src/cqlready/Shim.java"
cat > "$out/MANIFEST.MF" <<MF
Premain-Class: cqlready.Shim
Agent-Class: cqlready.Shim
Implementation-Title: cqlready
Implementation-Version: $version
MF
jar --create --file "$out/cqlready-shim.jar" --manifest "$out/MANIFEST.MF" -C "$out/classes" .
echo "$out/cqlready-shim.jar"
