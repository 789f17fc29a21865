"""``chanctl daemon install|uninstall|logs`` and ``chanctl doctor``: the daemon as a service.

The commands live on ``daemon_app`` beside start/stop/status; this module only parses flags and
prints, the work is in ``install``, ``daemonlog`` and ``doctor`` (imported inside each command,
so the CLI's start-up cost does not grow).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .daemon_cli import (
    DataDirOpt,
    FsyncOpt,
    LimitOpt,
    ListenOpt,
    LongPollOpt,
    MaxAgeOpt,
    MaxBytesOpt,
    MaxMessagesOpt,
    NatsCaOpt,
    NatsCertOpt,
    NatsCredsOpt,
    NatsKeyOpt,
    NatsNamespaceOpt,
    NatsSyncOpt,
    NoAuthOpt,
    QuietOpt,
    ReplicasOpt,
    SocketOpt,
    StoreOpt,
    _say,
    _socket,
    daemon_app,
    daemon_options,
    pinned_argv,
)
from .errors import UsageError

NoEnableOpt = Annotated[
    bool, typer.Option("--no-enable", help="Write the files only; do not start the service.")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the files; write nothing.")]


@daemon_app.command("install")
def daemon_install(
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
    no_enable: NoEnableOpt = False,
    dry_run: DryRunOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the daemon as a systemd user service (launchd agent on macOS), socket-activated."""
    opts = daemon_options(locals())  # first: locals() is exactly the command's parameters
    from . import install, paths, units
    from .daemon.options import build_settings

    settings = build_settings(opts)  # every flag validated before anything is written
    assert settings.socket_path is not None
    config_home = os.environ.get("XDG_CONFIG_HOME", "")
    spec = units.ServiceSpec(
        python=sys.executable,
        daemon_flags=tuple(pinned_argv(opts, settings)),
        socket=settings.socket_path,
        data_dir=settings.data_dir,
        env=(("XDG_CONFIG_HOME", config_home),) if os.path.isabs(config_home) else (),
        log_file=paths.log_file(),
    )
    files = units.service_files(spec)
    if dry_run or not (quiet or install.is_current(files)):  # what is about to be written
        for path, data in files.items():
            sys.stdout.write(f"# {path}\n{data.decode()}\n")
        sys.stdout.flush()
    if dry_run:
        return
    report = install.install(spec, enable=not no_enable)
    where = next(iter(files)).parent
    names = " and ".join(p.name for p in files)
    said = {
        "new": f"installed {names} in {where}",
        "updated": f"already installed; updated {names} in {where}",
        "unchanged": f"already installed, unchanged ({where})",
    }
    _say(f"chanctl: {said[report.state]}", quiet)
    if report.stopped_pid:
        _say(f"chanctl: stopped the daemon started by hand (pid {report.stopped_pid})", quiet)
    if report.ran:
        _say(f"chanctl: enabled: the daemon starts on the first connection to {spec.socket}", quiet)
    if report.todo:
        steps = "".join(f"  {cmd}\n" for cmd in report.todo)
        sys.stderr.write(
            f"chanctl: note: {report.note}; the service is not enabled. To enable it, run:\n{steps}"
        )


@daemon_app.command("uninstall")
def daemon_uninstall(quiet: QuietOpt = False) -> None:
    """Stop and remove the service files; channel data is kept."""
    from . import install, paths

    data = install.installed_data_dir() or str(paths.data_dir())
    report = install.uninstall()
    if report.state == "absent":
        _say(f"chanctl: not installed; nothing removed (channel data in {data} untouched)", quiet)
        return
    if report.ran:
        _say("chanctl: stopped and disabled the service", quiet)
    _say(f"chanctl: removed {', '.join(str(p) for p in report.files)}", quiet)
    _say(f"chanctl: channel data kept in {data}", quiet)
    if report.todo:
        steps = "".join(f"  {cmd}\n" for cmd in report.todo)
        sys.stderr.write(
            f"chanctl: note: {report.note}; if a service manager still runs the daemon, run:\n"
            f"{steps}"
        )


def _lines(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        raise UsageError(f"invalid -n {text!r}: a number of lines, or all")
    return int(text)


@daemon_app.command("logs")
def daemon_logs(
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines (Ctrl-C stops).")
    ] = False,
    lines: Annotated[
        str, typer.Option("-n", "--lines", metavar="N|all", help="Start with the last N lines.")
    ] = "10",
    socket: SocketOpt = None,
) -> None:
    """Print the daemon's log (its file, or the systemd journal)."""
    from . import daemonlog

    count = _lines(lines)
    source = daemonlog.locate(_socket(socket))
    if source.file is None:
        argv = daemonlog.journal_argv(count, follow)
        _say(f"chanctl: {source.why}: {' '.join(argv)}", False)
        raise typer.Exit(daemonlog.show_journal(count, follow))
    raise typer.Exit(daemonlog.print_file(source.file, count, follow, sys.stdout.buffer))


def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    socket: Annotated[
        Path | None,
        typer.Option("--socket", metavar="PATH", help="Daemon socket (env CHANCTL_SOCKET)."),
    ] = None,
) -> None:
    """Check the installation and say what to fix (exit 1 when a check fails)."""
    from . import doctor as doc

    checks = doc.run_checks(_socket(socket))
    if json_out:
        import json

        sys.stdout.write(json.dumps(doc.as_json(checks), indent=2) + "\n")
    else:
        from .render import color_enabled

        tty = sys.stdout.isatty()
        sys.stdout.write(doc.render(checks, tty=tty, color=tty and color_enabled(sys.stdout)))
    raise typer.Exit(doc.exit_status(checks))
