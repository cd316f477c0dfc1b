#!/usr/bin/env python3
"""Writes the small seed corpora (fuzz/corpus/<target>/seed-*) from the
inputs the crate's unit tests use. Rerun to regenerate; libFuzzer adds its
own finds under the same directories."""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))

def put(target, items):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for i, b in enumerate(items):
        if isinstance(b, str):
            b = b.encode()
        with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
            f.write(b)

put("options", [
    "", "socket=none", "host=::1", "port=auto,", "nope=1", "port=9042",
    "port=auto,host=auto,interval=100ms,check=1s,timeout=1s,failures=3,socket=auto,log=info,"
    "cassandra=auto,ready=normal,group=none,extend=2m",
    "interval=5parsecs", "interval=1500us", "check=1.5s", "timeout=2m", "extend=1h",
    "log=trace", "ready=cql", "group=cassandra", "group=1000", "socket=/run/c/s.sock",
    "port=0", "port=65536", "failures=0", "interval=0.000001s", "port=1,port=2", "noequals",
])

put("yaml", [
    "cluster_name: x\nnative_transport_port: 9142\nrpc_address: 10.1.2.3\n",
    "native_transport_port: '9043'", "rpc_address: 0.0.0.0", "rpc_address: '::'",
    "rpc_address: localhost", "", "native_transport_port: 70000", "native_transport_port: [1]",
    "start_native_transport: false\nrpc_interface: eth0\n",
    "a: &x [1,2]\nb: *x\nnative_transport_port: 9042\n",
    "file:///etc/cassandra/cassandra.yaml", "file:/x%20y/c.yaml", "file://host/c.yaml",
    "http://x/c.yaml", "- 1\n- 2\n", "{native_transport_port: !!str 9042}",
])

def frame(version, stream, opcode, body):
    f = bytes([0x80 | version, 0])
    f += struct.pack(">h", stream) if version >= 3 else struct.pack(">b", stream)
    return f + bytes([opcode]) + struct.pack(">i", len(body)) + body

def s(x):
    x = x.encode()
    return struct.pack(">H", len(x)) + x

supported = struct.pack(">H", 2) + s("CQL_VERSION") + struct.pack(">H", 1) + s("3.4.7") \
    + s("COMPRESSION") + struct.pack(">H", 0)
err = struct.pack(">i", 0x0A) + s("Invalid or unsupported protocol version (5)")
put("cql_frame", [frame(v, 0x2a, 6, supported) for v in (2, 3, 4, 5)]
    + [frame(4, 0x2a, 0, err), frame(5, 0, 0, err), frame(4, 0x2a, 2, b""),
       frame(4, 7, 6, supported), b"HTTP/1.1 400 Bad Request\r\n\r\n", b"\x84\0\0\x2a\x06\x7f\xff\xff\xff"])

put("http_request", [
    "GET /status HTTP/1.1\r\n", "GET /ready?wait=5s HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x00\x01junk\r\n\r\n", "GET /status HTTP/1.1\r\nHost: -\r\n\r\n",
    "POST /ready HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "GET /metrics HTTP/1.0\r\n\r\n",
    "GET /live HTTP/1.1\r\n" + "X-A: b\r\n" * 40 + "\r\n",
])

put("attach_reply", [
    "0\nhello\nworld\n", "-1\n", "0", "", "garbage\n", "0\nreturn code: 0\n",
    "0\n-1\n", "0\nreturn code: 102\nAgent_OnAttach failed\n", "101\n",
])

snap = {
    "version": "0.1.0", "pid": 4242, "state": "ready",
    "state_since_unix_ms": 1795643844888, "started_unix_ms": 1795643813661,
    "cql": {"host": "127.0.0.1", "port": 9042, "source": "yaml", "host_source": "default", "protocol_version": 5},
    "cassandra": {"mode": "NORMAL", "native_transport": True, "joined": True, "bootstrap": False, "load_bytes": 104857.0, "error": None},
    "time_to_ready_ms": 31227.4,
    "last_check": {"ok": True, "latency_ms": 0.41, "error": None, "at_unix_ms": 1795643900112},
    "checks": {"total": 412, "ok": 97, "failed": 315, "consecutive_failures": 0},
    "notify": {"socket": "/run/systemd/notify", "ready_sent": True, "stopping_sent": False,
               "watchdog_usec": None, "watchdog_pings": 0, "last_status": "CQL ready on 127.0.0.1:9042 after 31.2 s", "errors": 0},
    "socket": "/run/cassandra/cqlready.sock",
}
body = json.dumps(snap)
put("status_json", [body,
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nnot ready", "HTTP/1.1 200 OK\r\n",
    b"\x00garbage", "{}", '{"state":"bogus"}'])

def cand(nspid, cmd, env):
    return struct.pack("<I", nspid) + cmd + b"\xff" + env
put("socket_candidates", [
    cand(7, b"java\0-Xmx1g\0-agentpath:/opt/libcqlready.so=port=9042,socket=/run/c/s.sock\0Main\0",
         b"PATH=/bin\0RUNTIME_DIRECTORY=/run/cassandra\0"),
    cand(1, b"java\0", b"JAVA_TOOL_OPTIONS=-Xss1m -agentpath:/x/libcqlready.so=socket=/s/a.sock\0"),
    cand(1, b"java\0-agentpath:/other.so=socket=/q.sock\0", b""),
    cand(9, b"java\0-agentpath:/l/libcqlready.so\0-agentpath:/l/libcqlready.so=socket=none\0", b""),
])

put("notify", ["CQL ready on 127.0.0.1:9042 after 31.2 s", "x\nREADY=1\n", "a\rb\0c\x7f\u0085d",
               "\u00e9" * 300, "Waiting for CQL: connect: Connection refused"])

# status_connections: a table-size byte, then (op, arg) pairs; op % 9 is
# 0 connect (arg picks the request), 1 partial write (op // 9 picks 1-32
# bytes), 2 half-close, 3 reset, 4 read, 5 clock += arg * 20 ms, 6 state
# (arg % 4: starting, ready, degraded, stopping), 7 turn, 8 a fresh request.
def script(cap, *ops):
    return bytes([cap]) + bytes(b for op in ops for b in op)
CONNECT, WRITE_ALL, HALF, RESET, READ, CLOCK, STATE, TURN, FRESH = ((0,), (1 + 9 * 27,), (2,), (3,), (4,), (5,), (6,), (7,), (8,))
def op(kind, arg):
    return (kind[0], arg)
put("status_connections", [
    script(3, op(CONNECT, 0), op(WRITE_ALL, 0), op(TURN, 0), op(READ, 0), op(FRESH, 0)),
    script(1, op(CONNECT, 1), op(WRITE_ALL, 0), op(TURN, 0), op(CONNECT, 7), op(TURN, 0),
           op(FRESH, 0), op(READ, 0), op(READ, 1)),
    script(2, op(CONNECT, 1), op(CONNECT, 2), op(WRITE_ALL, 0), op(WRITE_ALL, 1), op(TURN, 0),
           op(STATE, 1), op(TURN, 0), op(READ, 0), op(READ, 1)),
    script(0, op(CONNECT, 0), op((1,), 0), op(TURN, 0), op(CLOCK, 110), op(TURN, 0), op(READ, 0)),
    script(3, op(CONNECT, 1), op(WRITE_ALL, 0), op(HALF, 0), op(TURN, 0), op(CONNECT, 6),
           op(WRITE_ALL, 1), op(RESET, 0), op(TURN, 0), op(CLOCK, 200), op(TURN, 0), op(READ, 0)),
    script(2, *([op(CONNECT, i) for i in range(8)] + [op(WRITE_ALL, i) for i in range(8)]
                + [op(TURN, 0), op(FRESH, 0)] + [op(READ, i) for i in range(8)])),
    script(1, op(CONNECT, 3), op(HALF, 0), op(TURN, 0), op(CONNECT, 4), op(WRITE_ALL, 1),
           op(TURN, 0), op(STATE, 3), op(FRESH, 0), op(TURN, 0)),
])
