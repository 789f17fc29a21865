"""Talking back to a channel's producer, and waiting for what it does (``send``, ``recv`` and
``wait`` of ``Client`` and ``AsyncClient``).

Steering messages go to the channel's control lane; the producer (``chanctl run``) answers
each one it handles with an ``ack`` message on the output lane that names the steering
message's offset. ``send(wait=True)`` notes where the output lane ends *before* it appends, so
the answer cannot slip past it, then follows the output lane until the matching ack arrives.
What an answer or a met condition is, is decided by ``AckWatch`` and ``Waiter``, which do no
I/O; each client only reads and feeds them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import errors as ce
from . import protocol as p
from ._sync_read import TailOptions
from .reading import Batch

if TYPE_CHECKING:
    from .aclient import AsyncClient
    from .client import Client


@dataclass(frozen=True)
class Ack:
    """A producer's answer to one steering message."""

    steer: str  # the steering message's offset on the control lane
    cmd: str
    ok: bool
    detail: str = ""

    @classmethod
    def from_message(cls, msg: p.Message) -> Ack | None:
        """Parse an ``ack`` message; None for anything else (or a malformed one)."""
        if msg.type != p.TYPE_ACK or msg.text is None:
            return None
        try:
            doc = p.loads_json(msg.text)
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("steer"), str):
            return None
        return cls(
            doc["steer"], str(doc.get("cmd", "")), doc.get("ok") is True, str(doc.get("detail", ""))
        )

    def to_data(self) -> str:
        return json.dumps(
            {"steer": self.steer, "cmd": self.cmd, "ok": self.ok, "detail": self.detail},
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class Sent:
    """What ``Client.send`` appended, and the producer's answer when it waited for one."""

    channel: str
    offset: str  # of the steering message, on the control lane
    ack: Ack | None = None


@dataclass(frozen=True)
class Waited:
    """Why ``Client.wait`` returned: the message that met the condition (None when the
    condition was the channel closing) and the wrapped job's exit status, if known."""

    message: p.Message | None
    exit_status: int | None


def send(
    client: Client,
    channel: str,
    message: str | bytes,
    type_: str,
    headers: dict[str, str] | None,
    wait: bool,
    timeout: float | None,
) -> Sent:
    start = client.output_end(channel) if wait else None
    published = client.publish_many(
        channel, [message], type=type_, headers=headers, lane=p.LANE_CONTROL
    )
    offset = published.last_offset or ""
    if start is None:
        return Sent(channel, offset)
    return Sent(channel, offset, wait_ack(client, channel, offset, start, timeout))


async def send_async(
    client: AsyncClient,
    channel: str,
    message: str | bytes,
    type_: str,
    headers: dict[str, str] | None,
    wait: bool,
    timeout: float | None,
) -> Sent:
    """``send`` for ``AsyncClient``: the same steps, awaited."""
    start = await client.output_end(channel) if wait else None
    published = await client.publish_many(
        channel, [message], type=type_, headers=headers, lane=p.LANE_CONTROL
    )
    offset = published.last_offset or ""
    if start is None:
        return Sent(channel, offset)
    return Sent(channel, offset, await wait_ack_async(client, channel, offset, start, timeout))


class AckWatch:
    """Picks the answer to one steering message out of the output lane; both clients feed it
    the ``ack`` messages they read, so what counts as an answer is decided once."""

    def __init__(self, channel: str, offset: str) -> None:
        self.channel = channel
        self.offset = offset

    def answer(self, msg: p.Message) -> Ack | None:
        """The ack of our message, or None for any other; raises SteeringRefused for a no."""
        ack = Ack.from_message(msg)
        if ack is None or ack.steer != self.offset:
            return None
        if not ack.ok:
            raise ce.SteeringRefused(
                f"the producer of {self.channel!r} refused {ack.cmd or 'the message'}: "
                f"{ack.detail or 'no reason given'}"
            )
        return ack

    def unanswered(self) -> ce.NotAcknowledged:
        """The error for a channel that closed before the answer came."""
        return ce.NotAcknowledged(
            f"channel {self.channel!r} was closed before its producer acknowledged {self.offset}",
            hint="the run ended first; `chanctl tail` shows how",
        )


def wait_ack(client: Client, channel: str, offset: str, start: str, timeout: float | None) -> Ack:
    """Follow the output lane from ``start`` until the ack of ``offset`` arrives."""
    watch = AckWatch(channel, offset)
    for msg in client.tail(channel, start=start, types=[p.TYPE_ACK], timeout=timeout):
        if (ack := watch.answer(msg)) is not None:
            return ack
    raise watch.unanswered()


async def wait_ack_async(
    client: AsyncClient, channel: str, offset: str, start: str, timeout: float | None
) -> Ack:
    watch = AckWatch(channel, offset)
    async for msg in client.tail(channel, start=start, types=[p.TYPE_ACK], timeout=timeout):
        if (ack := watch.answer(msg)) is not None:
            return ack
    raise watch.unanswered()


def recv_options(
    channel: str,
    follow: bool,
    cursor: str | None,
    start: str | int | None,
    types: Iterable[str] | None,
    timeout: float | None,
) -> TailOptions:
    """What ``recv`` reads: the control lane from ``start`` or ``cursor``, else from the
    producer position (cursor ``producer`` of the control lane, read but never moved);
    ``follow`` also waits for the control lane to appear."""
    return TailOptions.build(
        channel,
        last=None,
        start=p.OFFSET_START if start is None else start,
        follow=follow,
        wait=follow,
        cursor=cursor,
        types=types,
        timeout=timeout,
        lane=p.LANE_CONTROL,
        start_at_cursor=p.PRODUCER_CURSOR if start is None and cursor is None else None,
    )


class Condition:
    """``wait --for``: ``closed``, ``exit``, ``match=REGEX`` or ``type=T``."""

    def __init__(self, spec: str) -> None:
        kind, _, arg = spec.partition("=")
        if kind in ("closed", "exit") and not arg:
            self.kind, self.pattern, self.type = kind, None, ""
        elif kind == "match" and arg:
            try:
                self.kind, self.pattern, self.type = kind, re.compile(arg), ""
            except re.error as exc:
                raise ce.InvalidArgument(f"invalid --for match pattern {arg!r}: {exc}") from None
        elif kind == "type" and arg:
            self.kind, self.pattern, self.type = kind, None, arg
        else:
            raise ce.InvalidArgument(
                f"invalid condition {spec!r}: use closed, exit, match=REGEX or type=T"
            )

    def matches(self, msg: p.Message) -> bool:
        if self.kind == "type":
            return msg.type == self.type
        if self.pattern is not None:
            text = msg.text if msg.text is not None else msg.data.decode(errors="replace")
            return self.pattern.search(text) is not None
        return False


class Waiter:
    """``wait`` without I/O: fed a channel's answers from its start, says when ``cond`` holds.

    ``exit`` means the exit of the latest run: an ``exit`` counts unless a later ``start``
    shows that another run began on the channel since. History counts, so a condition already
    met is reported with the answer that catches up to the end.
    """

    def __init__(self, channel: str, cond: Condition) -> None:
        self.channel = channel
        self.cond = cond
        self._last_exit: p.Message | None = None

    def feed(self, batch: Batch) -> Waited | None:
        found, self._last_exit = _scan(batch, self.cond, self._last_exit)
        if found is not None:
            return Waited(found, found.exit_status())
        if self._last_exit is not None and batch.up_to_date:
            return Waited(self._last_exit, self._last_exit.exit_status())
        return None

    def closed(self, exit_status: Callable[[], int | None]) -> Waited:
        """The channel closed before ``feed`` said yes: met for ``closed`` (``exit_status``
        is asked only then), ConditionNotMet for anything else."""
        if self.cond.kind == "closed":
            return Waited(None, exit_status())
        raise ce.ConditionNotMet(
            f"channel {self.channel!r} was closed before it saw {self.cond.kind}",
            hint="`chanctl replay` shows what it holds",
        )


def wait_for(client: Client, channel: str, cond: Condition, timeout: float | None) -> Waited:
    """History first (a condition already met returns at once), then live messages."""
    waiter = Waiter(channel, cond)
    tail = client.tail(channel, start=p.OFFSET_START, timeout=timeout)
    for batch in tail.batches():
        if (done := waiter.feed(batch)) is not None:
            return done
    return waiter.closed(tail.exit_status)


async def wait_for_async(
    client: AsyncClient, channel: str, cond: Condition, timeout: float | None
) -> Waited:
    waiter = Waiter(channel, cond)
    tail = client.tail(channel, start=p.OFFSET_START, timeout=timeout)
    async for batch in tail.batches():
        if (done := waiter.feed(batch)) is not None:
            return done
    return waiter.closed(tail.exit_status)


def _scan(
    batch: Batch, cond: Condition, last_exit: p.Message | None
) -> tuple[p.Message | None, p.Message | None]:
    """(a message meeting a match/type condition, the pending exit of the latest run)."""
    for msg in batch.messages():
        if cond.kind == "exit":
            if msg.type == p.TYPE_START:
                last_exit = None
            elif msg.type == p.TYPE_EXIT:
                last_exit = msg
        elif cond.matches(msg):
            return msg, last_exit
    return None, last_exit
