"""``AsyncClient.send``/``recv``/``wait`` against a real daemon and a real `chanctl run`: the
same answers and typed errors as ``Client``'s (README "Steering and wrapping jobs"), a follow of
the control lane that resumes across a daemon restart without loss or duplicates, and the
README's async example run as printed."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from daemonkit import DaemonProcess, StartDaemon, TestEnv, readme_python_blocks, run_python

import chanctl
from chanctl._async_read import AsyncTail
from chanctl.errors import (
    ChannelNotFound,
    ConditionNotMet,
    InvalidArgument,
    NotAcknowledged,
    SteeringRefused,
    TimedOut,
)

WAIT_S = 30.0  # generous: CI shares 2 cores; every wait below returns as soon as it can


def aclient(tenv: TestEnv) -> chanctl.AsyncClient:
    return chanctl.AsyncClient(f"unix://{tenv.socket}", autostart=False, reconnect_timeout=20)


def start_run(tenv: TestEnv, name: str, *cmd: str) -> subprocess.Popen[bytes]:
    """`chanctl run NAME -q -- CMD` in the background, as a user's shell starts it."""
    argv = [sys.executable, "-m", "chanctl.entry", "run", name, "-q", "--", *cmd]
    return subprocess.Popen(
        argv,
        env=tenv.env,
        cwd=tenv.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def collect(tail: AsyncTail, into: list[str]) -> None:
    async for msg in tail:
        into.append(msg.text or "")


async def until(check: list[str], n: int) -> None:
    """Until ``check`` holds ``n`` items (a deadline, never a bare sleep)."""
    async with asyncio.timeout(WAIT_S):
        while len(check) < n:
            await asyncio.sleep(0.01)


async def test_send_recv_wait_with_a_real_run(daemon: DaemonProcess, tenv: TestEnv) -> None:
    run = start_run(tenv, "aj", "sh", "-c", "cat; exit 3")
    try:
        async with aclient(tenv) as c:
            seen: list[str] = []
            follower = asyncio.create_task(collect(c.recv("aj", follow=True, start="start"), seen))
            sent = await c.send("aj", "stdin hello", wait=True, timeout=WAIT_S)
            assert sent.ack is not None and (sent.ack.steer, sent.ack.cmd) == (sent.offset, "stdin")
            echoed = await c.wait("aj", for_="match=^hello$", timeout=WAIT_S)
            assert echoed.message is not None and echoed.message.type == "stdout"
            with pytest.raises(SteeringRefused, match="refused"):
                await c.send("aj", "frobnicate", wait=True, timeout=WAIT_S)
            note = await c.send("aj", "for the job", type="note", headers={"k": "v"})
            assert note.ack is None and note.offset > sent.offset
            await until(seen, 3)  # the control lane, followed live
            assert seen == ["stdin hello", "frobnicate", "for the job"]
            await c.send("aj", "eof", wait=True, timeout=WAIT_S)
            waited = await c.wait("aj", timeout=WAIT_S)  # for_="exit": of the latest run
            assert waited.exit_status == 3 and waited.message is not None
            assert run.wait(WAIT_S) == 3
            follower.cancel()
            # The run closed the channel: nobody is left to answer.
            with pytest.raises(NotAcknowledged):
                await c.send("aj", "stop", wait=True, timeout=WAIT_S)
            assert (await c.wait("aj", for_="closed")).exit_status == 3
            with pytest.raises(ConditionNotMet, match="closed before"):
                await c.wait("aj", for_="type=never")
            assert (await c.producer("aj"))["state"] == "exited"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(WAIT_S)


async def test_recv_and_wait_without_a_run(daemon: DaemonProcess, tenv: TestEnv) -> None:
    async with aclient(tenv) as c:
        with pytest.raises(ChannelNotFound):  # as Client.recv: nothing was ever sent
            [m async for m in c.recv("nothing-sent-yet")]
        first = await c.send("ax", "stop")
        await c.send("ax", "one", type="note")
        # No run read them: both wait at the producer position, which recv does not move.
        assert [m.text async for m in c.recv("ax")] == ["stop", "one"]
        assert [m.offset async for m in c.recv("ax")][0] == first.offset
        assert [m.text async for m in c.recv("ax", types=["note"])] == ["one"]
        assert [m.text async for m in c.recv("ax", cursor="mine")] == ["stop", "one"]
        assert [m.text async for m in c.recv("ax", cursor="mine")] == [], "the cursor moved"
        assert await c.get_cursor("ax", "producer", lane="control") is None
        assert await c.output_end("ax") == "-1", "steering does not create the output lane"
        with pytest.raises(TimedOut):
            await c.wait("ax", for_="exit", timeout=0.3)
        with pytest.raises(InvalidArgument):
            await c.wait("ax", for_="bogus")


async def test_recv_follow_resumes_across_a_daemon_restart(
    start_daemon: StartDaemon, tenv: TestEnv
) -> None:
    first = start_daemon(store="local")
    async with aclient(tenv) as c:
        seen: list[str] = []
        follower = asyncio.create_task(collect(c.recv("ar", follow=True), seen))
        await c.send("ar", "one", type="note")
        await until(seen, 1)
        # In threads, so the follower runs on: its long-poll ends with the shutdown, and it
        # keeps retrying while nothing listens and the next daemon starts.
        await asyncio.to_thread(first.stop)
        await asyncio.to_thread(start_daemon, store="local")
        await c.send("ar", "two", type="note")  # the sender reconnects too
        await until(seen, 2)
        await c.send("ar", "three", type="note")
        await until(seen, 3)
        assert seen == ["one", "two", "three"], "resumed from its offset: nothing lost or doubled"
        assert not follower.done()
        follower.cancel()


def test_readme_async_example_runs(daemon: DaemonProcess, tenv: TestEnv) -> None:
    blocks = readme_python_blocks("Python library")
    example = next((b for b in blocks if "AsyncClient" in b), None)
    assert example, "no AsyncClient example in the README's library section"
    run = run_python(tenv, example)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["['signal USR1']", "0"]
