"""One module per CLI verb: parse the flags, make one ``Client`` call, render the result.

``register(app)`` adds them all to the Typer app in ``chanctl.cli``.
"""

from __future__ import annotations

from typing import Any


def register(app: Any) -> None:
    """Add pub, tail, replay, ls, info, close and rm to ``app`` (a ``typer.Typer``)."""
    from . import channels, pub, replay, tail, web

    app.command("pub")(pub.pub)
    app.command("tail")(tail.tail)
    app.command("replay")(replay.replay)
    app.command("ls")(channels.ls)
    app.command("info")(channels.info)
    app.command("close")(channels.close)
    app.command("rm")(channels.rm)
    from . import run, steer, wait  # README "Steering and wrapping jobs"

    app.command("send")(steer.send)
    app.command("recv")(steer.recv)
    app.command("wait")(wait.wait)
    app.command("run")(run.run)
    app.command("web")(web.web)  # the live web view (daemon/http/web.py)
    from . import fsck  # verify channels: on the running daemon, or a stopped one's files

    app.command("fsck")(fsck.fsck)
