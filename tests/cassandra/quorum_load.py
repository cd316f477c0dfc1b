#!/usr/bin/env python3
"""QUORUM load on a cluster, for rolling restarts: one cassandra-driver session
with every node as a contact point, writes and reads at consistency QUORUM,
paced to a rate, until a stop file appears (or --duration passes).

Usage: <venv>/bin/python tests/cassandra/quorum_load.py --hosts 127.0.0.1,127.0.0.2,127.0.0.3
           --port P [--rate 120] [--threads 4] [--stop-file F] [--duration S] [--setup]

--setup first creates keyspace cqlready_load (SimpleStrategy, RF=3, or --replication's
CQL map) and its table. --cl picks the level (default QUORUM); --local-dc makes the
driver DC-aware (token-aware over DCAwareRoundRobinPolicy in that datacenter only).
Every write is read back at QUORUM; a read that does not see it counts as failed.
Prints (flushed): "ready", then "progress <secs> <ok> <failed>" each second,
"error <secs> <what>" for the first 20 failures, and at the end
"summary ok=N failed=M seconds=S rate=R". Exit 0 when nothing failed, 1 otherwise.
"""
import argparse
import logging
import os
import sys
import threading
import time

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import (ConstantSpeculativeExecutionPolicy, DCAwareRoundRobinPolicy,
                                TokenAwarePolicy)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=120.0, help="operations per second, in all")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--stop-file", default="")
    ap.add_argument("--duration", type=float, default=3600.0)
    ap.add_argument("--setup", action="store_true")
    ap.add_argument("--cl", default="QUORUM")
    ap.add_argument("--local-dc", default="")
    ap.add_argument("--replication", default="{'class': 'SimpleStrategy', 'replication_factor': 3}")
    args = ap.parse_args()
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)
    policy = {}
    if args.local_dc:
        policy["load_balancing_policy"] = TokenAwarePolicy(
            DCAwareRoundRobinPolicy(local_dc=args.local_dc, used_hosts_per_remote_dc=0))
    # As clients of an always-available cluster are set up: an idempotent
    # request that a coordinator has not answered in 2 s is also sent to the
    # next one (a node just restarted onto a new version can sit on its first
    # requests while it catches up; one run saw 3 of 52,550 time out so).
    policy["speculative_execution_policy"] = ConstantSpeculativeExecutionPolicy(2.0, 2)
    profile = ExecutionProfile(consistency_level=ConsistencyLevel.name_to_value[args.cl],
                               request_timeout=10.0, **policy)
    cluster = Cluster(args.hosts.split(","), port=args.port, protocol_version=5,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile}, connect_timeout=10,
                      control_connection_timeout=10)
    session = cluster.connect()
    if args.setup:
        session.execute("CREATE KEYSPACE IF NOT EXISTS cqlready_load WITH replication = "
                        + args.replication, timeout=60)
        session.execute("CREATE TABLE IF NOT EXISTS cqlready_load.kv (k int PRIMARY KEY, v int)",
                        timeout=60)
    write = session.prepare("INSERT INTO cqlready_load.kv (k, v) VALUES (?, ?)")
    read = session.prepare("SELECT v FROM cqlready_load.kv WHERE k = ?")
    # Both are idempotent, so the driver may retry them on another node, as
    # clients of an always-available cluster are set up to.
    write.is_idempotent = True
    read.is_idempotent = True
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0, "errors": 0}
    t0 = time.monotonic()
    stop = threading.Event()
    print("ready", flush=True)

    def failed(what):
        with lock:
            counts["failed"] += 1
            counts["errors"] += 1
            if counts["errors"] <= 20:
                print(f"error {time.monotonic() - t0:.3f} {what}", flush=True)

    def worker(n):
        period = args.threads / args.rate
        i = 0
        next_at = time.monotonic()
        while not stop.is_set():
            key = n * 1_000_000 + i % 10_000
            i += 1
            try:
                session.execute(write, (key, i))
                row = session.execute(read, (key,)).one()
                if row is None or row.v != i:
                    failed(f"read of key {key} saw {row and row.v}, wrote {i}")
                else:
                    with lock:
                        counts["ok"] += 2
            except Exception as e:  # every failure counts, whatever its kind
                failed(f"{type(e).__name__}: {str(e)[:200]}")
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(args.threads)]
    for t in threads:
        t.start()
    while True:
        time.sleep(1.0)
        now = time.monotonic() - t0
        with lock:
            print(f"progress {now:.1f} {counts['ok']} {counts['failed']}", flush=True)
        if now >= args.duration or (args.stop_file and os.path.exists(args.stop_file)):
            break
    stop.set()
    for t in threads:
        t.join(timeout=15)
    secs = time.monotonic() - t0
    total = counts["ok"] + counts["failed"]
    print(f"summary ok={counts['ok']} failed={counts['failed']} seconds={secs:.1f} "
          f"rate={total / secs:.1f}", flush=True)
    cluster.shutdown()
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
