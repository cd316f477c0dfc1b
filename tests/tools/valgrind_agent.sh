#!/usr/bin/env bash
# The agent (debug build, with symbols) inside a JVM under valgrind memcheck
# (issue 7). The JVM runs interpreted (-Xint) with a trivial main that
# sleeps; the agent probes a closed port every 10 ms and serves its status
# socket, which this script queries a few times. HotSpot itself produces
# hundreds of thousands of memcheck reports (stack banging below SP, its
# own allocator), so only reports with an agent frame count.
#
#   bash tests/tools/valgrind_agent.sh [seconds]      # default 20
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-20}
W=$(mktemp -d /tmp/cqlready-vg.XXXXXX)
trap 'rm -rf "$W"' EXIT
cargo build --lib >/dev/null
cat >"$W/Hello.java" <<'JAVA'
public class Hello { public static void main(String[] a) throws Exception { Thread.sleep(Long.parseLong(a[0])); System.exit(3); } }
JAVA
javac -d "$W" "$W/Hello.java"
set +e
valgrind --tool=memcheck --trace-children=no --error-limit=no --smc-check=all-non-file \
    --num-callers=40 --log-file="$W/vg.log" \
    java -Xint -XX:+UseSerialGC -Xmx64m -XX:-UsePerfData \
    "-agentpath:$PWD/target/debug/libcqlready.so=port=1,interval=10ms,socket=$W/s.sock" \
    -cp "$W" Hello "$((SECS * 1000))" >"$W/out" 2>&1 &
VG=$!
for _ in $(seq 1 100); do [ -S "$W/s.sock" ] && break; sleep 1; done
for _ in 1 2 3; do
    curl -s -m 30 --unix-socket "$W/s.sock" http://-/status >/dev/null && echo "status answered"
    curl -s -m 30 --unix-socket "$W/s.sock" http://-/metrics >/dev/null
done
wait $VG
rc=$?
set -e
echo "JVM exit code under valgrind: $rc (expected 3)"
grep "ERROR SUMMARY" "$W/vg.log"
ours=$(python3 - "$W/vg.log" <<'PY'
import re, sys
blocks = re.split(r'\n==\d+== \n', open(sys.argv[1]).read())
hits = [b for b in blocks if 'cqlready' in b and re.search(r'Invalid|uninitialised|Mismatched|overlap|free', b)]
for b in hits[:5]:
    print(b, file=sys.stderr)
print(len(hits))
PY
)
echo "reports with an agent frame: $ours"
cp "$W/vg.log" /tmp/cqlready-valgrind.log && echo "full log: /tmp/cqlready-valgrind.log"
[ "$rc" = 3 ] && [ "$ours" = 0 ]
