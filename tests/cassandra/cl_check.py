#!/usr/bin/env python3
"""What Cassandra itself answers at each consistency level: one write per level
through one coordinator (the driver talks to that node only and never retries),
printed as one line per level: "<LEVEL> ok", "<LEVEL> unavailable <dc or ->" (the
coordinator's Unavailable, before any replica is asked) or "<LEVEL> error <what>".

Usage: <venv>/bin/python tests/cassandra/cl_check.py --host 127.0.0.1 --port P
           --keyspace KS [--levels ONE,TWO,...]
The keyspace must have a table kv (k int PRIMARY KEY, v int).
"""
import argparse
import logging
import sys

from cassandra import ConsistencyLevel, Unavailable
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import FallthroughRetryPolicy, WhiteListRoundRobinPolicy

LEVELS = "ONE,TWO,THREE,QUORUM,ALL,LOCAL_ONE,LOCAL_QUORUM,EACH_QUORUM"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--keyspace", required=True)
    ap.add_argument("--levels", default=LEVELS)
    args = ap.parse_args()
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([args.host]),
                               retry_policy=FallthroughRetryPolicy(), request_timeout=10.0)
    cluster = Cluster([args.host], port=args.port, protocol_version=5,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile}, connect_timeout=10,
                      control_connection_timeout=10)
    session = cluster.connect()
    write = session.prepare(f"INSERT INTO {args.keyspace}.kv (k, v) VALUES (?, ?)")
    for i, level in enumerate(args.levels.split(",")):
        write.consistency_level = ConsistencyLevel.name_to_value[level]
        try:
            session.execute(write, (-1 - i, i))
            print(f"{level} ok", flush=True)
        except Unavailable as e:
            print(f"{level} unavailable {str(e)[:200]}", flush=True)
        except Exception as e:  # a timeout is not Cassandra's Unavailable
            print(f"{level} error {type(e).__name__}: {str(e)[:200]}", flush=True)
    cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
