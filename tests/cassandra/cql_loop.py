#!/usr/bin/env python3
"""A real CQL client in a loop, for readiness timing: every attempt is a fresh
cassandra-driver Cluster (new TCP connection, STARTUP, control connection) that
runs `SELECT release_version FROM system.local`, then shuts down.

Usage: <venv>/bin/python tests/cassandra/cql_loop.py --port P [--host 127.0.0.1]
           [--interval 0.02] [--after-ok 2.0] [--timeout 180] [--pid PID]
           [--tls-ca CA.pem [--tls-cert C.pem --tls-key K.pem]] [--user U --password P]

Prints (stdout, flushed, one line per event; times are time.monotonic(), i.e.
CLOCK_MONOTONIC on Linux, the clock of Rust's Instant):
    started <t>
    attempt <start> <end> ok <release_version>     (end: the answer arrived)
    attempt <start> <end> fail <ExceptionClass>    (end: the driver gave up)
    done <t>
It stops `--after-ok` seconds after the first successful query (so attempts
both before and after a readiness signal are seen), after `--timeout`, or as
soon as process PID has gone (exit 2). Exit 0 once a query succeeded, else 1.
Schema and token metadata are off: a shorter connect gives a finer time grid;
the query itself is the one every readiness script uses.
"""
import argparse
import logging
import os
import ssl
import sys
import time

from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import WhiteListRoundRobinPolicy


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tls_context(args):
    """A client TLS context: the server's certificate must chain to --tls-ca
    (its name is not checked: node certificates rarely name 127.0.0.1)."""
    if not args.tls_ca:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(args.tls_ca)
    if args.tls_cert:
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    return ctx


def attempt(host, port, timeout, ssl_context=None, auth=None):
    """The release_version and the monotonic time the answer arrived (before
    the driver's shutdown, which takes its own time)."""
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]),
                               request_timeout=timeout)
    cluster = Cluster([host], port=port, connect_timeout=timeout,
                      control_connection_timeout=timeout,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                      protocol_version=5, schema_metadata_enabled=False,
                      token_metadata_enabled=False, ssl_context=ssl_context,
                      auth_provider=auth)
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        return row.release_version, time.monotonic()
    finally:
        cluster.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--after-ok", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--tls-ca")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--user")
    ap.add_argument("--password")
    args = ap.parse_args()
    ctx = tls_context(args)
    auth = None
    if args.user:
        from cassandra.auth import PlainTextAuthProvider
        auth = PlainTextAuthProvider(username=args.user, password=args.password)
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)
    t0 = time.monotonic()
    print(f"started {t0:.6f}", flush=True)
    first_ok = None
    while True:
        now = time.monotonic()
        if first_ok is not None and now - first_ok >= args.after_ok:
            break
        if now - t0 >= args.timeout:
            break
        if args.pid and not alive(args.pid):
            print(f"done {time.monotonic():.6f} process {args.pid} gone", flush=True)
            return 2
        start = time.monotonic()
        try:
            version, end = attempt(args.host, args.port, 2.0, ctx, auth)
            print(f"attempt {start:.6f} {end:.6f} ok {version}", flush=True)
            if first_ok is None:
                first_ok = end
        except Exception as e:  # not up yet (NoHostAvailable, OperationTimedOut...)
            end = time.monotonic()
            print(f"attempt {start:.6f} {end:.6f} fail {type(e).__name__}", flush=True)
        time.sleep(args.interval)
    print(f"done {time.monotonic():.6f}", flush=True)
    return 0 if first_ok is not None else 1


if __name__ == "__main__":
    sys.exit(main())
