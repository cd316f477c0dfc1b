#!/usr/bin/env python3
"""Wait until a Cassandra node answers CQL (SELECT release_version FROM system.local).

Usage: <venv>/bin/python tests/cassandra/wait_cql.py [--host 127.0.0.1] [--port 9042]
                                                   [--timeout 180] [--interval 0.2] [--pid PID]
Exit 0 and print "<release_version> <seconds>" once a query succeeds; exit 1 on timeout,
exit 2 as soon as process PID (the node's JVM, when given) has gone.
Needs cassandra-driver (see pyclients.sh). Each probe is a fresh connection, so a
port that accepts TCP but does not answer CQL yet does not count.
"""
import argparse
import logging
import os
import sys
import time

from cassandra.cluster import Cluster, NoHostAvailable  # noqa: F401
from cassandra.policies import WhiteListRoundRobinPolicy
from cassandra.cluster import ExecutionProfile, EXEC_PROFILE_DEFAULT


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def probe(host, port, timeout):
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]),
                               request_timeout=timeout)
    cluster = Cluster([host], port=port, connect_timeout=timeout,
                      control_connection_timeout=timeout,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                      protocol_version=5)
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        return row.release_version
    finally:
        cluster.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9042)
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--pid", type=int, default=0, help="give up when this process is gone")
    args = ap.parse_args()
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)
    start = time.monotonic()
    last = None
    while time.monotonic() - start < args.timeout:
        try:
            version = probe(args.host, args.port, 2.0)
            print(f"{version} {time.monotonic() - start:.2f}")
            return 0
        except Exception as e:  # not up yet
            last = e
            if args.pid and not alive(args.pid):
                print(f"wait_cql: process {args.pid} exited before CQL answered", file=sys.stderr)
                return 2
            time.sleep(args.interval)
    print(f"wait_cql: no CQL answer on {args.host}:{args.port} after {args.timeout}s: {last}",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
