"""``chanctl daemon start|stop|status``: thin Typer commands over ``chanctl.daemonctl``.

Kept apart from ``chanctl.cli`` (which mounts this group and converts errors) so the daemon
commands can grow without crowding the channel verbs. Like the rest of the CLI, this module
imports only typer and the standard library at module level: the daemon package is imported
only by ``start`` (to validate flags and, with ``--foreground``, to run it).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from .daemon.config import Settings
    from .daemon.options import DaemonOptions

daemon_app = typer.Typer(
    help="Start, stop and inspect the chanctl daemon; install it as a service.",
    no_args_is_help=True,
    epilog="Examples: chanctl daemon start; chanctl daemon status --json; chanctl daemon stop; "
    "chanctl daemon install; chanctl daemon logs -f",
)

SocketOpt = Annotated[
    Path | None,
    typer.Option("--socket", metavar="PATH", help="Daemon socket (env CHANCTL_SOCKET)."),
]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing on success.")]
ForegroundOpt = Annotated[
    bool, typer.Option("--foreground", help="Run in this terminal and log to stderr.")
]
ListenOpt = Annotated[
    str | None,
    typer.Option("--listen", metavar="HOST:PORT", help="Also serve TCP (loopback; bearer token)."),
]
NoAuthOpt = Annotated[
    bool, typer.Option("--no-auth", help="No token on the TCP listener (loopback only).")
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", metavar="DIR", help="Channel data (env CHANCTL_DATA_DIR)."),
]
FsyncOpt = Annotated[
    str | None,
    typer.Option("--fsync", metavar="POLICY", help="always (default), interval:<ms>, never."),
]
LongPollOpt = Annotated[
    float | None,
    typer.Option("--long-poll-timeout", metavar="SECONDS", help="Default 30."),
]
MaxAgeOpt = Annotated[
    str | None,
    typer.Option(
        "--max-age", metavar="AGE", help="Default retention of new channels: 3600, 90m, 7d..."
    ),
]
MaxBytesOpt = Annotated[
    str | None,
    typer.Option("--max-bytes", metavar="BYTES", help="Default retention: bytes per channel."),
]
MaxMessagesOpt = Annotated[
    str | None,
    typer.Option("--max-messages", metavar="N", help="Default retention: messages per channel."),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="STORE",
        help="local (default) or nats://HOST:PORT[,HOST:PORT...] (env CHANCTL_STORE).",
    ),
]
ReplicasOpt = Annotated[
    int | None, typer.Option("--replicas", metavar="N", help="NATS: copies of each new channel.")
]

NatsCredsOpt = Annotated[
    str | None, typer.Option("--nats-creds", metavar="FILE", help="NATS credentials file.")
]
NatsCaOpt = Annotated[
    str | None, typer.Option("--nats-tls-ca", metavar="FILE", help="CA for the NATS servers.")
]
NatsCertOpt = Annotated[
    str | None, typer.Option("--nats-tls-cert", metavar="FILE", help="Client cert for NATS.")
]
NatsKeyOpt = Annotated[
    str | None, typer.Option("--nats-tls-key", metavar="FILE", help="Its private key.")
]
NatsNamespaceOpt = Annotated[
    str | None,
    typer.Option("--nats-namespace", metavar="NAME", help="Prefix of NATS streams (chanctl)."),
]
NatsSyncOpt = Annotated[
    str | None,
    typer.Option("--nats-sync", metavar="POLICY", help="The NATS servers' sync_interval."),
]
LimitOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--limit",
        metavar="NAME=VALUE",
        help="Change one resource limit (repeatable), e.g. max_live_readers=256.",
    ),
]
WaitOpt = Annotated[
    float, typer.Option("--wait", metavar="SECONDS", help="How long to wait until it answers.")
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", metavar="SECONDS", help="How long to wait for it to exit.")
]


def _socket(opt: Path | None) -> Path:
    from . import paths

    return paths.check_socket_path(opt.expanduser().absolute()) if opt else paths.socket_path()


def _say(text: str, quiet: bool) -> None:
    """A status line on stderr, unless -q was given here or globally (``chanctl -q ...``)."""
    from .commands._common import Globals

    if not (quiet or Globals.quiet):
        sys.stderr.write(text + "\n")


def daemon_options(flags: dict[str, Any]) -> DaemonOptions:
    """The daemon's options from a command's own parameters (its ``locals()``): `daemon start`
    and `daemon install` take the same daemon flags, named as the ``DaemonOptions`` fields
    (``limit`` gathers ``--limit``), so the mapping is written once."""
    from .daemon.options import DaemonOptions

    names = {f.name for f in dataclasses.fields(DaemonOptions)}
    given = {k: v for k, v in flags.items() if k in names}
    for key in ("data_dir", "socket"):
        given[key] = str(flags[key]) if flags.get(key) else None
    return DaemonOptions(**given, limits=tuple(flags.get("limit") or ()))


def pinned_argv(opts: DaemonOptions, settings: Settings) -> list[str]:
    """The daemon's flags with its socket and data directory absolute and its store named: a
    detached daemon or a service runs from / and must not depend on our cwd or environment."""
    import os

    from .daemon.options import to_argv

    return to_argv(
        dataclasses.replace(
            opts,
            socket=str(settings.socket_path),
            data_dir=str(settings.data_dir),
            store=opts.store or os.environ.get("CHANCTL_STORE"),
        )
    )


@daemon_app.command("start")
def daemon_start(
    foreground: ForegroundOpt = False,
    listen: ListenOpt = None,
    no_auth: NoAuthOpt = False,
    data_dir: DataDirOpt = None,
    fsync: FsyncOpt = None,
    socket: SocketOpt = None,
    long_poll_timeout: LongPollOpt = None,
    max_age: MaxAgeOpt = None,
    max_bytes: MaxBytesOpt = None,
    max_messages: MaxMessagesOpt = None,
    store: StoreOpt = None,
    replicas: ReplicasOpt = None,
    nats_creds: NatsCredsOpt = None,
    nats_tls_ca: NatsCaOpt = None,
    nats_tls_cert: NatsCertOpt = None,
    nats_tls_key: NatsKeyOpt = None,
    nats_namespace: NatsNamespaceOpt = None,
    nats_sync: NatsSyncOpt = None,
    limit: LimitOpt = None,
    wait: WaitOpt = 15.0,
    quiet: QuietOpt = False,
) -> None:
    """Start the daemon in the background (or with --foreground)."""
    opts = daemon_options(locals())  # first: locals() is exactly the command's parameters

    from . import daemonctl, paths
    from .daemon.options import build_settings

    settings = build_settings(opts)  # validates every flag before anything is spawned
    assert settings.socket_path is not None
    if foreground:
        from .daemon.server import run

        raise typer.Exit(run(settings))
    argv = pinned_argv(opts, settings)
    st = daemonctl.start_detached(argv, settings.socket_path, paths.log_file(), wait)
    _say(f"chanctl: started daemon (pid {st.pid}, socket {st.socket})", quiet)


@daemon_app.command("stop")
def daemon_stop(
    socket: SocketOpt = None, timeout: TimeoutOpt = 15.0, quiet: QuietOpt = False
) -> None:
    """Stop the daemon and wait until pending appends are on disk."""
    from . import daemonctl

    sock = _socket(socket)
    result = daemonctl.stop(sock, timeout)
    if result.was_running:
        _say(f"chanctl: stopped daemon (pid {result.pid})", quiet)
    else:
        _say(f"chanctl: no daemon was running on {sock}", quiet)


@daemon_app.command("status")
def daemon_status(
    socket: SocketOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Show the daemon's pid, socket and settings (exit 3: not running)."""
    from . import daemonctl

    st = daemonctl.status(_socket(socket))
    if json_out:
        import json

        sys.stdout.write(json.dumps(st.to_dict(), indent=2, sort_keys=True) + "\n")
        return
    sys.stdout.write(render_status(st.to_dict()))


def render_status(d: dict[str, Any]) -> str:
    """The human form of ``daemon status``: a headline, then one aligned row per setting."""
    tcp = "off"
    if d.get("listen"):
        tcp = f"{d['listen']} (auth: {d.get('auth') or 'token'})"
    uptime = "?"
    if isinstance(d.get("started_at"), int | float):
        uptime = _duration(time.time() - float(d["started_at"]))
    rows = [
        ("socket", d.get("socket")),
        ("data dir", d.get("data_dir")),
        ("fsync", d.get("fsync")),
        ("store", d.get("store")),
        ("tcp", tcp),
        ("log", d.get("log_file") or "stderr (foreground)"),
        ("uptime", uptime),
    ]
    head = f"chanctl daemon is running (pid {d.get('pid')}, version {d.get('version')})\n"
    return head + "".join(f"  {k:<9} {v if v is not None else '?'}\n" for k, v in rows)


def _duration(seconds: float) -> str:
    s = int(max(seconds, 0))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] * bool(d) + [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m) + [f"{s}s"]
    return "".join(parts)
