"""A minimal HTTP/1.1 client over the daemon's unix socket, on the standard library only.

``chanctl daemon status`` and the readiness poll of ``daemon start`` run this on every call, so
it must not import aiohttp or httpx (tens of milliseconds each); ``http.client`` with a socket
swapped in is enough for one small request.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ChanctlError, DaemonNotRunning, DaemonUnhealthy


class UnixHTTPConnection(http.client.HTTPConnection):
    """``HTTPConnection`` whose transport is a unix socket; the Host header says localhost."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.unix_path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


def request(sock_path: Path, method: str, path: str, timeout: float = 2.0) -> Reply:
    """One request on a fresh connection; connection failures become typed chanctl errors."""
    conn = UnixHTTPConnection(sock_path, timeout)
    try:
        conn.request(method, path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        return Reply(resp.status, resp.read())
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise DaemonNotRunning(
            f"no chanctl daemon is running (nothing listens on {sock_path})",
            hint="start one with `chanctl daemon start`",
        ) from exc
    except PermissionError as exc:
        raise ChanctlError(
            f"permission denied connecting to {sock_path}",
            hint="the socket belongs to another user; use your own (CHANCTL_SOCKET)",
        ) from exc
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise DaemonUnhealthy(
            f"the daemon on {sock_path} did not answer properly ({exc.__class__.__name__}: {exc})",
            hint="check `chanctl daemon status` and the daemon log",
        ) from exc
    finally:
        conn.close()
