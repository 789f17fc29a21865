# ruff: noqa: TID253  (a benchmark of the daemon-side engine imports it by design)
"""Engine-level figures for the local store (no HTTP): group commit and catch-up reads.

    /work/venv/bin/python bench/store_bench.py [--dir DIR] [--messages 1000000]

Prints appends/s with 16 concurrent single-message submitters under fsync=always, bulk append
throughput, and catch-up read throughput of the whole channel through ``read_raw`` (the HTTP
fast path) and ``read`` (one Message object per message), warm and after a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from chanctl.daemon.config import FsyncPolicy, Settings
from chanctl.daemon.store.base import AppendBatch, ChannelConfig
from chanctl.daemon.store.local import LocalStore

MSG = b"x" * 100
CHUNK = 1 << 20  # Limits.read_chunk_bytes


def make(data_dir: Path, fsync: str = "always") -> LocalStore:
    return LocalStore(Settings(data_dir=data_dir, socket_path=None, fsync=FsyncPolicy.parse(fsync)))


async def concurrent_appends(data_dir: Path, fsync: str, writers: int, seconds: float) -> float:
    store = make(data_dir, fsync)
    await store.start()
    await store.create(f"conc-{fsync}", ChannelConfig("text/plain", 0.0), AppendBatch([]))
    count = 0
    deadline = time.perf_counter() + seconds

    async def writer() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await store.submit(f"conc-{fsync}", AppendBatch([MSG]))
            count += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - t0
    await store.stop()
    return count / elapsed


async def bulk_write(data_dir: Path, n: int, per_batch: int) -> float:
    store = make(data_dir)
    await store.start()
    await store.create("big", ChannelConfig("text/plain", 0.0), AppendBatch([]))
    batch = AppendBatch([MSG] * per_batch)
    t0 = time.perf_counter()
    pending = []
    for _ in range(n // per_batch):
        pending.append(store.submit("big", batch))
        if len(pending) >= 8:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - t0
    await store.stop()
    return n / elapsed


async def catch_up(data_dir: Path, raw: bool) -> tuple[float, float]:
    """(msgs/s on a freshly opened store, msgs/s again with warm indexes)."""
    store = make(data_dir)
    await store.start()
    rates = []
    for _ in range(2):
        seq, total = 0, 0
        t0 = time.perf_counter()
        while True:
            if raw:
                got = await store.read_raw("big", seq, CHUNK)
                total += len(got.lengths)
            else:
                r = await store.read("big", seq, CHUNK)
                got = r
                total += len(r.messages)
            seq = got.next_seq
            if got.up_to_date:
                break
        rates.append(total / (time.perf_counter() - t0))
    await store.stop()
    return rates[0], rates[1]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--messages", type=int, default=1_000_000)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        for fsync in ("always", "interval:200", "never"):
            rate = await concurrent_appends(root, fsync, 16, 3.0)
            print(f"16 concurrent 1-message submitters, fsync={fsync}: {rate:,.0f} appends/s")
        rate = await bulk_write(root, args.messages, 1000)
        print(f"bulk write, batches of 1000 x 100 B (fsync=always): {rate:,.0f} msgs/s")
        cold, warm = await catch_up(root, raw=True)
        print(
            f"catch-up read_raw of {args.messages:,} msgs: {cold:,.0f} msgs/s fresh open, "
            f"{warm:,.0f} msgs/s warm"
        )
        cold, warm = await catch_up(root, raw=False)
        print(f"catch-up read (Message objects): {cold:,.0f} msgs/s fresh, {warm:,.0f} warm")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
