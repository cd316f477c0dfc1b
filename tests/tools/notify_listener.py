#!/usr/bin/env python3
"""A stand-in for systemd's notify socket: prints every datagram with the
sender's PID (SO_PASSCRED) and the time since ORIGIN (microseconds since the
epoch, as tests/demo.sh's clock; default: when the listener started).

    python3 tests/tools/notify_listener.py /tmp/notify.sock [--origin USEC]
"""
import os
import socket
import struct
import sys
import time


def main():
    if len(sys.argv) not in (2, 4) or (len(sys.argv) == 4 and sys.argv[2] != "--origin"):
        sys.exit("usage: notify_listener.py SOCKET_PATH [--origin USEC]")
    path = sys.argv[1]
    t0 = int(sys.argv[3]) / 1e6 if len(sys.argv) == 4 else time.time()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(path)
    print(f"[{'notify':<9} +{time.time() - t0:7.3f}s] listening on {path}", flush=True)
    creds_size = struct.calcsize("iII")
    while True:
        data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(creds_size))
        pid = "?"
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:creds_size])[0]
        text = data.decode("utf-8", "replace").strip().replace("\n", " | ")
        print(f"[{'notify':<9} +{time.time() - t0:7.3f}s] from pid {pid}: {text}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
