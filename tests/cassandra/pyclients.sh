#!/usr/bin/env bash
# Create (idempotently) a Python venv with cqlsh and cassandra-driver from PyPI.
#
#   tests/cassandra/pyclients.sh      # -> prints the venv's bin dir on the last stdout line
#   "$(tests/cassandra/pyclients.sh | tail -1)/cqlsh" 127.0.0.1 9042 -e "SELECT release_version FROM system.local"
#
# Venv: ${CQLREADY_CACHE:-$HOME/.cache/cqlready}/venv (override with CQLREADY_VENV).
# Both packages install from wheels on CPython 3.11 x86_64 (no compiler needed).
# PYTHON selects the interpreter (default python3). Progress goes to stderr.
set -euo pipefail

cache="${CQLREADY_CACHE:-$HOME/.cache/cqlready}"
venv="${CQLREADY_VENV:-$cache/venv}"
python="${PYTHON:-python3}"
# Pinned so every machine gets the same clients; cqlsh 6.2.x is the 5.0-era cqlsh.
pkgs=("cassandra-driver==3.30.1" "cqlsh==6.2.2")
marker="$venv/.cqlready-pyclients"
want="${pkgs[*]}"

if [[ -f "$marker" && "$(cat "$marker")" == "$want" && -x "$venv/bin/cqlsh" ]]; then
    echo "pyclients.sh: $venv already has $want" >&2
    echo "$venv/bin"
    exit 0
fi

# One installer at a time (concurrent test runs share the venv); the marker,
# written last and renamed into place, is what says the venv is whole.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [[ -f "$marker" && "$(cat "$marker")" == "$want" && -x "$venv/bin/cqlsh" ]]; then
    echo "$venv/bin"
    exit 0
fi
rm -f "$marker"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "pyclients.sh: creating venv $venv" >&2
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv" >&2
fi
echo "pyclients.sh: installing $want" >&2
# --only-binary for the driver: without a wheel it would try a long Cython build.
"$venv/bin/pip" install --disable-pip-version-check -q --only-binary cassandra-driver "${pkgs[@]}" >&2
"$venv/bin/python" -c 'import cassandra, cqlshlib; print("pyclients.sh: cassandra-driver", cassandra.__version__)' >&2
echo "$want" > "$marker.tmp.$$"
mv "$marker.tmp.$$" "$marker"
echo "$venv/bin"
