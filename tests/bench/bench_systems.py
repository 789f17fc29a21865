"""What is compared with what: the five server set-ups and the eight workloads.

chanctl acknowledges an append only once it is fsynced. Redis and NATS can do that too
(``appendfsync always``, ``sync_interval: always``), but most deployments run their defaults,
which acknowledge first and sync later; a fair table shows both, and compares chanctl only with
the peers that make the same promise (``durable``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType

from bench_common import Result, Run

Workload = Callable[[Run], Awaitable[Result]]


@dataclass(frozen=True)
class System:
    """One column of the table: a server set-up and the bench module that drives it."""

    key: str
    heading: str
    family: str  # chanctl, redis or nats: the bench_<family> module
    durable: bool  # fsyncs before acknowledging


SYSTEMS = (
    System("chanctl", "chanctl", "chanctl", True),
    System("redis-always", "Redis always", "redis", True),
    System("redis-everysec", "Redis everysec", "redis", False),
    System("nats-always", "NATS always", "nats", True),
    System("nats-default", "NATS default", "nats", False),
)
BY_KEY = {s.key: s for s in SYSTEMS}

# (key, what it measures): the numbering is the and the table's.
WORKLOADS = (
    ("serial", "1. acknowledged appends, one client, one at a time"),
    ("concurrent", "2. acknowledged appends, 16 concurrent clients"),
    ("stream", "3. streamed / pipelined appends, one client"),
    ("latency", "4. live latency append -> reader at a fixed rate"),
    ("catchup", "5. catch-up read of a long channel"),
    ("fanout", "6. fan-out to many live readers"),
    ("shell", "7. whole-process cost of publishing from the shell"),
    ("rss", "8. server memory: idle, many channels, many idle readers"),
)
WORKLOAD_KEYS = tuple(key for key, _ in WORKLOADS)


def module_for(family: str) -> ModuleType:
    """Import a family's module lazily, so a chanctl-only run needs neither redis-py nor
    nats-py installed."""
    if family == "chanctl":
        import bench_chanctl

        return bench_chanctl
    if family == "redis":
        import bench_redis

        return bench_redis
    import bench_nats

    return bench_nats


def workload_fn(system: System, workload: str) -> Workload:
    """The coroutine function that runs ``workload`` against ``system``.

    Workload 7 lives in one module for all systems (it drives command-line tools, not client
    libraries); the others live in each family's module under the workload's name.
    """
    if workload == "shell":
        import bench_shell

        fn: Workload = getattr(bench_shell, system.family)
        return fn
    fn = getattr(module_for(system.family), workload)
    return fn
