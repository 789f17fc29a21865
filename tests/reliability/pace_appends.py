"""Append ``{"n": N, "t": time}`` to a JSON channel on a fixed schedule, from its own process.

Usage: ``python pace_appends.py SOCKET CHANNEL COUNT INTERVAL_S``. R6 runs it as a separate
process so the schedule is kept even while the test process is busy serving a thousand
long-pollers; it prints the wall time taken (a failed append fails its lane's thread, which
the caller sees as a short channel). Standard library only.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
import time


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


def _lane(sock: str, name: str, ns: range, t0: float, interval: float) -> None:
    conn = _Unix(sock)  # one kept-alive connection per lane, like a real producer
    for n in ns:
        time.sleep(max(0.0, t0 + n * interval - time.monotonic()))
        body = json.dumps([{"n": n, "t": time.time()}])
        conn.request("POST", f"/v1/stream/{name}", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 204:
            raise SystemExit(f"append {n} got {resp.status}")


def main(sock: str, name: str, count: int, interval: float, lanes: int = 4) -> None:
    """Append N at ``t0 + N * interval``; ``lanes`` connections take turns, so one slow
    acknowledgement does not push the rest of the schedule back (the channel's order, not N,
    is then the order readers must see)."""
    t0 = time.monotonic()
    threads = [
        threading.Thread(target=_lane, args=(sock, name, range(k, count, lanes), t0, interval))
        for k in range(lanes)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"{time.monotonic() - t0:.3f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
