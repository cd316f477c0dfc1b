#!/usr/bin/env python3
"""Writes rows a node has not flushed yet, or checks that they are there.

Usage: <venv>/bin/python tests/cassandra/fill.py --port P [--host H] --rows N [--size B] [--rf R] [--check]

Without --check: creates keyspace cqlready_fill (RF=R, default 1) and table rows (id int, payload blob),
then inserts ids 0..N-1, each with B bytes (default 1024) that depend only on the id and do not
compress, 64 at a time (a write that times out is written again, up to 5 times). With --check:
reads every 97th id and the last one back and compares.
Prints one line, "wrote N rows, M MiB, in S s" or "checked K rows: ok"; exits 1 on a mismatch.
"""
import argparse
import logging
import random
import sys
import time

from cassandra.cluster import Cluster
from cassandra.concurrent import execute_concurrent_with_args


def payload(i, size):
    return random.Random(i).randbytes(size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rf", type=int, default=1)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)
    cluster = Cluster([args.host], port=args.port, protocol_version=5, connect_timeout=30,
                      control_connection_timeout=30)
    session = cluster.connect()
    session.default_timeout = 60.0
    t0 = time.monotonic()
    if args.check:
        ids = list(range(0, args.rows, 97)) + [args.rows - 1]
        get = session.prepare("SELECT payload FROM cqlready_fill.rows WHERE id = ?")
        bad = [i for i in ids if (session.execute(get, (i,)).one() or [None])[0] != payload(i, args.size)]
        if bad:
            print(f"checked {len(ids)} rows: {len(bad)} missing or wrong, first ids {bad[:5]}")
            return 1
        print(f"checked {len(ids)} rows: ok")
        return 0
    session.execute("CREATE KEYSPACE IF NOT EXISTS cqlready_fill WITH replication = "
                    f"{{'class': 'SimpleStrategy', 'replication_factor': {args.rf}}}")
    session.execute("CREATE TABLE IF NOT EXISTS cqlready_fill.rows (id int PRIMARY KEY, payload blob)")
    put = session.prepare("INSERT INTO cqlready_fill.rows (id, payload) VALUES (?, ?)")
    for start in range(0, args.rows, 1000):
        batch = [(i, payload(i, args.size)) for i in range(start, min(start + 1000, args.rows))]
        # The inserts are idempotent: the ones a busy node timed out are
        # written again, a few times, before the fill gives up.
        for attempt in range(5):
            results = execute_concurrent_with_args(session, put, batch, concurrency=64,
                                                   raise_on_first_error=False)
            failed = [(row, result) for row, (ok, result) in zip(batch, results) if not ok]
            if not failed:
                break
            batch = [row for row, _ in failed]
        else:
            print(f"write failed: {len(failed)} rows after 5 attempts, the last error: {failed[-1][1]}")
            return 1
    mib = args.rows * args.size / (1024 * 1024)
    print(f"wrote {args.rows} rows, {mib:.1f} MiB, in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
