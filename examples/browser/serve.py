"""Serve the page and pass its reads through to the daemon, on one loopback origin.

    python examples/browser/serve.py 8377       # then open http://127.0.0.1:8377/?channel=demo

Why a pass-through instead of pointing the page at the daemon directly: the daemon's TCP
listener wants a bearer token on every request, which ``EventSource`` cannot send, and it
grants no cross-origin reads (a page on another origin cannot see its answers; see README
"Security"). This server, on the same origin as the page, forwards only *reads of channels*
(``GET``/``HEAD /v1/stream/...``) to the daemon's unix socket (or ``CHANCTL_URL``, adding
``CHANCTL_TOKEN``), byte for byte and streamed as they come, so the page speaks the Durable
Streams protocol exactly as it would to any server. Like ``chanctl daemon start --listen
127.0.0.1:PORT --no-auth``, it lets every local process read; it listens on loopback only and
refuses requests whose ``Host`` is not loopback (DNS rebinding). Standard library only.
"""

from __future__ import annotations

import http.client
import ipaddress
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from chanctl.transport import UnixHTTPConnection, resolve_endpoint

HERE = Path(__file__).resolve().parent
FILES = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript")}
PASSED_BACK = ("content-type", "cache-control", "etag", "stream-", "chanctl-")


def _loopback(host_header: str) -> bool:
    host = host_header.rsplit(":", 1)[0].strip("[]") if host_header else ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        if not _loopback(self.headers.get("Host", "")):
            self.send_error(421, "Host must be loopback")
        elif self.path.startswith("/v1/stream/"):
            self._forward("HEAD" if head else "GET")
        elif self.path.split("?", 1)[0] in FILES:
            name, ctype = FILES[self.path.split("?", 1)[0]]
            body = (HERE / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not head:
                self.wfile.write(body)
        else:
            self.send_error(404)

    def _forward(self, method: str) -> None:
        endpoint = resolve_endpoint()
        conn: http.client.HTTPConnection
        headers = {}
        if endpoint.socket_path:
            conn = UnixHTTPConnection(endpoint.socket_path, timeout=None)
        else:
            conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=None)
            if endpoint.token:
                headers["Authorization"] = f"Bearer {endpoint.token}"
        for name in ("Accept", "If-None-Match"):
            if self.headers.get(name):
                headers[name] = self.headers[name]
        try:
            conn.request(method, self.path, headers=headers)
            resp = conn.getresponse()
            self.send_response(resp.status)
            for name, value in resp.getheaders():
                if name.lower().startswith(PASSED_BACK):
                    self.send_header(name, value)
            self.end_headers()  # HTTP/1.0: the body ends when we close the connection
            while chunk := resp.read1(65536):  # as it comes: SSE events are live
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away (a reload): drop the daemon connection too
        finally:
            conn.close()

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the page's reads are long-lived and many


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8377
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"http://127.0.0.1:{port}/?channel=demo", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
