"""Following a channel live: a headers-only ordered consumer per open channel.

It delivers every record stored in the channel's stream after a given sequence, ours and
other daemons' alike, without payloads (a record's state is all in its header). Our own
records are normally settled by their publish acknowledgement first and skipped here; other
daemons' records advance the durable state and wake waiting readers, which then fetch the
payload. nats-py re-creates an ordered consumer from the last sequence it delivered when the
connection or the stream leader changes, so following survives a node failure.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .channel import Chan
from .records import decode_record

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

log = logging.getLogger("chanctl.store.nats")


async def follow(js: JetStreamContext, chan: Chan, after: int) -> object:
    """Start delivering the records after stream sequence ``after`` to ``chan.observe``;
    returns the subscription (``unsubscribe`` it to stop)."""
    from nats.js.api import ConsumerConfig, DeliverPolicy

    async def on_record(msg: Msg) -> None:
        try:
            rec = decode_record(msg.metadata.sequence.stream, msg.headers, None)
        except ValueError as exc:
            log.warning("channel %r: skipping a foreign message: %s", chan.state.name, exc)
            return
        chan.observe(rec)

    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=after + 1,
        inactive_threshold=300.0,
    )
    return await js.subscribe(
        chan.where.subject,
        stream=chan.where.stream,
        cb=on_record,
        ordered_consumer=True,
        headers_only=True,
        config=config,
        idle_heartbeat=5.0,
    )
