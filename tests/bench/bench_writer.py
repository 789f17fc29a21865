"""A paced writer in a process of its own, for the fan-out workload.

    python bench_writer.py chanctl|redis|nats ADDRESS CHANNEL RATE COUNT

With 100 live readers in the bench process, a writer sharing that process (and its GIL or
event loop) is starved by the readers' parsing, and the append rate it reaches says more about
the bench than about the server. In its own process the writer sends at the target rate unless
the server itself slows its acknowledgements. ADDRESS is the daemon's unix socket for chanctl
and a loopback port for the peers. It prints one JSON document: for each message, the
``perf_counter_ns`` just before the append and just after its acknowledgement; Linux's
monotonic clock is shared by all processes, so readers elsewhere can subtract them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_common, even under PYTHONSAFEPATH

from bench_common import Deadline, filler, paced_sends  # noqa: E402

Sent = dict[int, tuple[int, int]]
LOOPBACK = "127.0.0.1"
WRITER_GRACE_S = 30.0  # past the paced duration, how long the parent waits for the writer


def paced(rate: int, count: int, send: Callable[[int], None]) -> Sent:
    """Call ``send(i)`` at start + i/rate (never earlier), each acknowledged before the next;
    bounded at twice the planned duration plus 5 s, so a slow server lowers the count."""
    sent: Sent = {}
    start = time.perf_counter()
    stop = Deadline(2 * count / rate + 5)
    for i in range(count):
        if stop.expired():
            break
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        before = time.perf_counter_ns()
        send(i)
        sent[i] = (before, time.perf_counter_ns())
    return sent


def payload(i: int) -> str:
    return filler(f"L{i}:", 100)


def chanctl_writer(address: str, channel: str, rate: int, count: int) -> Sent:
    """``chanctl.Client.publish``, one awaited append at a time."""
    import chanctl

    with chanctl.Client(f"unix://{address}", autostart=False) as client:

        def send(i: int) -> None:
            client.publish(channel, payload(i))

        return paced(rate, count, send)


def redis_writer(address: str, key: str, rate: int, count: int) -> Sent:
    """redis-py's synchronous client (hiredis), one XADD at a time."""
    import redis

    with redis.Redis(host=LOOPBACK, port=int(address), single_connection_client=True) as r:

        def send(i: int) -> None:
            r.xadd(key, {b"d": payload(i).encode()})

        return paced(rate, count, send)


def nats_writer(address: str, subject: str, rate: int, count: int) -> Sent:
    """nats-py is asyncio only: the same pacing, awaited inside an event loop."""
    return asyncio.run(_nats_paced(address, subject, rate, count))


async def _nats_paced(address: str, subject: str, rate: int, count: int) -> Sent:
    import nats

    nc = await nats.connect(f"nats://{LOOPBACK}:{address}", allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=30)

        async def send(i: int) -> None:
            await js.publish(subject, payload(i).encode())

        return await paced_sends(rate, count, send)
    finally:
        await nc.close()


WRITERS = {"chanctl": chanctl_writer, "redis": redis_writer, "nats": nats_writer}


async def run_writer(family: str, address: str, channel: str, rate: int, seconds: float) -> Sent:
    """Run this script for ``family`` and return its sends (called by the workloads)."""
    count = int(rate * seconds)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        family,
        address,
        channel,
        str(rate),
        str(count),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(), timeout=2 * seconds + 5 + WRITER_GRACE_S
        )
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{family} writer exited {proc.returncode}: {err.decode()[-300:]}")
    return {int(i): (before, after) for i, before, after in json.loads(out)}


def main(argv: list[str]) -> int:
    if len(argv) != 5 or argv[0] not in WRITERS:
        print(__doc__, file=sys.stderr)
        return 2
    family, address, channel, rate, count = argv
    sent = WRITERS[family](address, channel, int(rate), int(count))
    json.dump([[i, before, after] for i, (before, after) in sent.items()], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
