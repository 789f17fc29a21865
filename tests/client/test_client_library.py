"""The public library (`chanctl.Client`, `chanctl.AsyncClient`) against a real daemon: every
method once, typed errors, and exactly-once appends when the connection drops after the daemon
accepted a batch but before its answer arrived (a real proxy cuts it, no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from daemonkit import DaemonProcess, TestEnv

import chanctl
from chanctl.errors import ChanctlError, ChannelClosed, ChannelNotFound, InvalidArgument, TimedOut
from chanctl.protocol import format_offset


@pytest.fixture
def client(daemon: DaemonProcess, tenv: TestEnv) -> Iterator[chanctl.Client]:
    with chanctl.Client(f"unix://{tenv.socket}", autostart=False) as c:
        yield c


def test_publish_read_manage(client: chanctl.Client) -> None:
    first = client.publish("lib", "hello", type="stdout", headers={"k": "v"})
    assert (first.count, first.last_seq, first.last_offset) == (1, 0, format_offset(0))
    many = client.publish_many("lib", (str(i) for i in range(1000)))
    assert many.count == 1000 and many.last_seq == 1000
    msgs = list(client.replay("lib"))
    assert [m.seq for m in msgs] == list(range(1001))
    assert (msgs[0].type, msgs[0].headers, msgs[0].data) == ("stdout", {"k": "v"}, b"hello")
    assert [m.text for m in client.replay("lib", start=999)] == ["998", "999"]
    assert client.info("lib").messages == 1001
    assert [i.name for i in client.list()] == ["lib"]
    client.close("lib")
    assert [m.text for m in client.tail("lib", last=2)] == ["998", "999"]
    with pytest.raises(ChannelClosed):
        client.publish("lib", "late")
    client.delete("lib")
    with pytest.raises(ChannelNotFound):
        client.info("lib")


def test_cursors_and_errors(client: chanctl.Client) -> None:
    client.publish_many("cur", ["a", "b", "c"])
    assert client.get_cursor("cur", "me") is None
    client.set_cursor("cur", "me", format_offset(2))
    assert client.cursors("cur") == {"me": format_offset(2)}
    assert [m.text for m in client.tail("cur", cursor="me", follow=False)] == ["c"]
    client.delete_cursor("cur", "me")
    with pytest.raises(InvalidArgument):
        client.publish("bad name", "x")
    with pytest.raises(ValueError):  # InvalidArgument is also a ValueError
        client.set_cursor("cur", "me", "garbage")
    with pytest.raises(TimedOut):
        list(client.tail("cur", start="now", timeout=0.3))
    assert isinstance(TimedOut("x"), ChanctlError)


def test_async_client_round_trip(daemon: DaemonProcess, tenv: TestEnv) -> None:
    async def main() -> list[str]:
        async with chanctl.AsyncClient(f"unix://{tenv.socket}", autostart=False) as c:

            async def lines() -> AsyncIterator[str]:
                for i in range(5):
                    yield f"line {i}"
                    await asyncio.sleep(0)

            assert (await c.publish_many("aio", lines())).count == 5
            await c.publish("aio", b"\xff")
            await c.set_cursor("aio", "x", format_offset(4))
            assert await c.get_cursor("aio", "x") == format_offset(4)
            assert (await c.info("aio")).messages == 6
            await c.close("aio")
            return [m.text or m.data_b64 or "" async for m in c.tail("aio", last=3)]

    assert asyncio.run(main()) == ["line 3", "line 4", "/w=="]


class DropFirstAnswer:
    """A unix-socket proxy to the daemon that swallows the first successful append answer and
    cuts that connection, as if the daemon had crashed right after writing the batch."""

    def __init__(self, upstream: Path, path: Path) -> None:
        self.upstream, self.path = upstream, path
        self.dropped = threading.Event()
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX)
            up.connect(str(self.upstream))
            threading.Thread(target=self._pipe, args=(conn, up, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, conn, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while data := src.recv(65536):
                if answers and data.startswith(b"HTTP/1.1 200") and not self.dropped.is_set():
                    self.dropped.set()
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):  # shutdown, not just close: it wakes the other pipe's recv
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.server.close()


def test_retry_after_a_dropped_answer_never_duplicates(
    daemon: DaemonProcess, tenv: TestEnv
) -> None:
    proxy = DropFirstAnswer(tenv.socket, tenv.root / "proxy.sock")
    try:
        with chanctl.Client(f"unix://{proxy.path}", autostart=False) as c:
            c.create("once")
            c.publish_many("once", ["a", "b", "c"])
            assert proxy.dropped.is_set()
            c.publish("once", "d")
    finally:
        proxy.close()
    with chanctl.Client(f"unix://{tenv.socket}") as c:
        assert [m.text for m in c.replay("once")] == ["a", "b", "c", "d"]


def test_import_chanctl_is_cheap() -> None:
    import subprocess
    import sys

    code = (
        "import sys, chanctl; print(sorted(m for m in ('aiohttp', 'http.client', 'typer', "
        "'rich') if m in sys.modules)); chanctl.Client; print('aiohttp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "False"]
