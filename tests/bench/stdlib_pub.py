"""Publish one message to chanctl, Redis or NATS JetStream using only the standard library.

    python stdlib_pub.py chanctl SOCKET CHANNEL MESSAGE
    python stdlib_pub.py redis PORT KEY MESSAGE
    python stdlib_pub.py nats PORT SUBJECT MESSAGE

Workload 7 of the benchmark runs this as a whole process, once per publish: it is what a shell
script or a cron job that cannot install a client library pays for one durable append, so
every branch waits for the server's acknowledgement and exits non-zero without one. Only
modules that a bare ``python3`` already has are imported, and each only where it is used.
"""

from __future__ import annotations

import sys

LOOPBACK = "127.0.0.1"
MAX_REPLY_LINES = 100  # a bound on reading a server's greeting and replies


def chanctl(socket_path: str, channel: str, message: str) -> None:
    """POST one chanctl envelope (what ``chanctl pub`` stores) over the unix socket."""
    import http.client
    import json
    import socket
    import time

    conn = http.client.HTTPConnection("localhost", timeout=10)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    conn.sock = sock
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    body = json.dumps({"type": "message", "time": stamp, "data": message}).encode()
    conn.request("POST", f"/v1/stream/{channel}", body, {"Content-Type": "application/json"})
    status = conn.getresponse().status
    if status not in (200, 204):
        sys.exit(f"chanctl answered HTTP {status}")


def redis(port: str, key: str, message: str) -> None:
    """``XADD key * d message`` in RESP, then read the one-line reply (the entry id)."""
    import socket

    parts = [b"XADD", key.encode(), b"*", b"d", message.encode()]
    command = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((LOOPBACK, int(port)), timeout=10) as sock:
        sock.sendall(command)
        reply = sock.makefile("rb").readline()
    if not reply.startswith(b"$"):
        sys.exit(f"redis answered {reply!r}")


def nats(port: str, subject: str, message: str) -> None:
    """A core-NATS publish with a reply inbox; JetStream answers on it with its PubAck."""
    import socket

    payload = message.encode()
    with socket.create_connection((LOOPBACK, int(port)), timeout=10) as sock:
        lines = sock.makefile("rb")
        lines.readline()  # INFO {...}
        sock.sendall(
            b'CONNECT {"verbose":false,"pedantic":false}\r\n'
            b"SUB _INBOX.pub 1\r\n"
            + b"PUB %s _INBOX.pub %d\r\n%s\r\n"
            % (subject.encode(), len(payload), payload)
        )
        for _ in range(MAX_REPLY_LINES):
            line = lines.readline()
            if line.startswith(b"PING"):
                sock.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG"):
                ack = lines.readline()
                if b'"seq"' in ack and b'"error"' not in ack:
                    return
                sys.exit(f"nats answered {ack!r}")
            elif not line or line.startswith(b"-ERR"):
                sys.exit(f"nats answered {line!r}")
    sys.exit("nats sent no acknowledgement")


def main(argv: list[str]) -> None:
    if len(argv) != 4 or argv[0] not in ("chanctl", "redis", "nats"):
        sys.exit(__doc__)
    {"chanctl": chanctl, "redis": redis, "nats": nats}[argv[0]](*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
