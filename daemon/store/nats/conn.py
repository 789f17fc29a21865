"""The NATS connection and the few JetStream API calls the engine makes.

nats-py is imported inside these functions only, so that the daemon (and CI's import check of
every module) works without the optional ``chanctl[nats]`` extra until a NATS store is asked for.
Calls the client library lacks (batched direct get, publish with our own retry policy) are made
on the raw request/reply API; their replies are the documented JetStream JSON and headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chanctl.errors import ConfigError

from ...config import NatsSettings
from ..base import StorageFailed
from .records import Record, decode_record

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

log = logging.getLogger("chanctl.store.nats")

ERR_WRONG_LAST_SEQ = 10071
ERR_STREAM_NOT_FOUND = 10059
API = "$JS.API"
# One publish attempt. Short, because a publish sent while its stream elects a new leader gets
# no answer at all; the writer retries (same Nats-Msg-Id, so never twice) up to its deadline.
PUBLISH_ATTEMPT_S = 2.0


class PublishConflict(Exception):
    """The stream's last sequence was not the one we expected: another daemon wrote."""

    def __init__(self, last_seq: int | None) -> None:
        super().__init__(f"wrong last sequence (now {last_seq})")
        self.last_seq = last_seq


def _tls_context(ns: NatsSettings) -> ssl.SSLContext | None:
    if ns.tls_ca is None and ns.tls_cert is None:
        return None
    ctx = ssl.create_default_context(cafile=str(ns.tls_ca) if ns.tls_ca else None)
    if ns.tls_cert is not None:
        ctx.load_cert_chain(str(ns.tls_cert), str(ns.tls_key) if ns.tls_key else None)
    return ctx


def _callbacks(closing: Callable[[], bool]) -> dict[str, Any]:
    """Connection events go to the daemon log (nats-py would print them otherwise)."""

    async def on_error(exc: Exception) -> None:
        log.warning("NATS: %s", exc)

    async def on_disconnect() -> None:
        if not closing():
            log.warning("NATS: disconnected; reconnecting")

    async def on_reconnect() -> None:
        log.info("NATS: reconnected")

    return {"error_cb": on_error, "disconnected_cb": on_disconnect, "reconnected_cb": on_reconnect}


async def connect(ns: NatsSettings, closing: Callable[[], bool] = lambda: False) -> Client:
    """Connect, and prove JetStream answers; a ConfigError that says what to fix otherwise.

    The first connection tries each server a few times and then gives up (nats-py would retry
    forever); once connected the client reconnects without limit, and appends made while NATS
    is unreachable fail with 503 until it is back.
    """
    import nats
    import nats.errors

    try:
        nc = await nats.connect(
            servers=list(ns.servers),
            name="chanctl-daemon",
            connect_timeout=ns.connect_timeout_s,
            max_reconnect_attempts=2,
            reconnect_time_wait=0.25,
            user_credentials=str(ns.creds) if ns.creds else None,
            tls=_tls_context(ns),
            pending_size=64 * 1024 * 1024,
            **_callbacks(closing),
        )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        raise ConfigError(
            f"cannot reach NATS at {', '.join(ns.servers)}: {exc or type(exc).__name__}",
            hint="check that nats-server runs there (and the credentials/TLS options)",
        ) from None
    nc.options["max_reconnect_attempts"] = -1
    await _check_jetstream(nc, ns)
    return nc


async def _check_jetstream(nc: Client, ns: NatsSettings) -> None:
    """Refuse to start without JetStream, but give a cluster that is electing its meta leader
    (a node was just lost or restarted) time to answer: until then every server says "no
    responders", exactly like a server without JetStream, so one answer cannot tell them apart.
    """
    import nats.errors

    deadline = asyncio.get_running_loop().time() + 2 * ns.connect_timeout_s
    while True:
        try:
            reply = await nc.request(f"{API}.INFO", b"", timeout=ns.request_timeout_s)
            doc = json.loads(reply.data)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            doc = {"error": {"description": "no JetStream responder"}}
        if "error" not in doc:
            return
        if asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(0.25)
    await nc.close()
    raise ConfigError(
        f"JetStream is not enabled on NATS at {', '.join(ns.servers)} "
        f"({doc['error'].get('description', 'unavailable')})",
        hint="start nats-server with -js, or a `jetstream { ... }` block in its config",
    )


class Api:
    """JetStream calls with errors turned into the store's own (503 for anything transient)."""

    def __init__(self, nc: Client, ns: NatsSettings) -> None:
        self.nc = nc
        self.ns = ns
        self.timeout = ns.request_timeout_s

    async def request(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One JetStream API call; the reply's ``error`` is raised as ApiError."""
        import nats.errors

        data = b"" if body is None else json.dumps(body).encode()
        try:
            reply = await self.nc.request(subject, data, timeout=self.timeout)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise unavailable(exc) from None
        doc: dict[str, Any] = json.loads(reply.data)
        err = doc.get("error")
        if err:
            raise ApiError(int(err.get("err_code", 0)), str(err.get("description", err)))
        return doc

    async def add_stream(self, name: str, subject: str) -> None:
        cfg = {
            "name": name,
            "subjects": [subject],
            "storage": "file",
            "retention": "limits",
            "discard": "old",
            "num_replicas": self.ns.replicas,
            "allow_direct": True,
            "duplicate_window": 120 * 10**9,
        }
        await self.request(f"{API}.STREAM.CREATE.{name}", cfg)

    async def delete_stream(self, name: str) -> None:
        try:
            await self.request(f"{API}.STREAM.DELETE.{name}")
        except ApiError as exc:
            if exc.code != ERR_STREAM_NOT_FOUND:
                raise

    async def bounds(self, name: str) -> tuple[int, int] | None:
        """(first, last) stream sequence, or None if the stream does not exist."""
        try:
            doc = await self.request(f"{API}.STREAM.INFO.{name}")
        except ApiError as exc:
            if exc.code == ERR_STREAM_NOT_FOUND:
                return None
            raise
        state = doc["state"]
        return int(state["first_seq"]), int(state["last_seq"])

    async def purge_below(self, name: str, sseq: int) -> None:
        """Remove every record with a stream sequence below ``sseq``."""
        await self.request(f"{API}.STREAM.PURGE.{name}", {"seq": sseq})

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> int:
        """Publish one record; its stream sequence. PublishConflict on a lost race."""
        import nats.errors

        try:
            reply = await self.nc.request(subject, payload, PUBLISH_ATTEMPT_S, headers=headers)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise unavailable(exc) from None
        doc = json.loads(reply.data)
        err = doc.get("error")
        if err:
            if err.get("err_code") == ERR_WRONG_LAST_SEQ:
                raise PublishConflict(_trailing_int(str(err.get("description", ""))))
            raise ApiError(int(err.get("err_code", 0)), str(err.get("description", err)))
        return int(doc["seq"])

    async def fetch(self, stream: str, sseq: int, batch: int, max_bytes: int) -> list[Record]:
        """Records from ``sseq`` on (at most ``batch``), by one batched direct get.

        Direct gets may be answered by any replica, so a follower that lags can return fewer
        records than exist (or none); callers that know a record exists fall back on ``leader``.
        """
        msgs = await self._direct_batch(
            stream, {"seq": sseq, "batch": batch, "max_bytes": max_bytes}
        )
        return [_to_record(m) for m in msgs]

    async def last_of(self, stream: str, subject: str) -> Record | None:
        """The newest record of a channel's stream (by direct get), or None."""
        msgs = await self._direct_batch(stream, {"last_by_subj": subject})
        return _to_record(msgs[0]) if msgs else None

    async def leader_get(self, stream: str, sseq: int) -> Record | None:
        """One record through the stream leader (always current); None if it does not exist."""
        import base64

        try:
            doc = await self.request(f"{API}.STREAM.MSG.GET.{stream}", {"seq": sseq})
        except ApiError as exc:
            if exc.code in (10037, ERR_STREAM_NOT_FOUND):  # no message found
                return None
            raise
        msg = doc["message"]
        headers = _parse_headers(base64.b64decode(msg.get("hdrs") or b""))
        data = base64.b64decode(msg.get("data") or b"")
        return decode_record(int(msg["seq"]), headers, data)

    async def _direct_batch(self, stream: str, body: dict[str, Any]) -> list[Msg]:
        import nats.errors

        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        out: list[Msg] = []
        try:
            await self.nc.publish(
                f"{API}.DIRECT.GET.{stream}", json.dumps(body).encode(), reply=inbox
            )
            while True:
                msg = await sub.next_msg(timeout=self.timeout)
                if msg.headers and msg.headers.get("Status"):
                    return out  # 204 end of batch, 404 nothing there, 408 and others: stop
                out.append(msg)
                if "batch" not in body:
                    return out  # a single get has no end-of-batch marker
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            if out:
                return out
            raise unavailable(exc) from None
        finally:
            await sub.unsubscribe()


class ApiError(StorageFailed):
    """JetStream refused a request (anything but the conditions the engine handles)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"NATS JetStream error {code}: {description}")
        self.code = code


def unavailable(exc: BaseException) -> StorageFailed:
    what = str(exc) or type(exc).__name__
    return StorageFailed(f"NATS is unavailable ({what}); retry once it is back")


def _to_record(msg: Msg) -> Record:
    headers = msg.headers or {}
    return decode_record(int(headers["Nats-Sequence"]), headers, msg.data)


def _parse_headers(raw: bytes) -> dict[str, str]:
    """``NATS/1.0\\r\\nKey: value\\r\\n...`` as stored by STREAM.MSG.GET (base64-decoded)."""
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _trailing_int(text: str) -> int | None:
    tail = text.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else None
