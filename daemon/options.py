"""The daemon's command-line flags, shared by ``python -m chanctl.daemon`` and ``chanctl daemon``.

``chanctl daemon start`` re-executes the daemon as ``python -m chanctl.daemon FLAGS``, so one
``DaemonOptions`` value has to survive the trip through argv unchanged: ``to_argv`` and
``parse_argv`` are inverses, and ``build_settings`` is the only place flags, environment and
defaults meet. The bearer token is deliberately not a flag: argv is world-readable in /proc.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chanctl import paths
from chanctl.errors import UsageError

from .config import (
    DEFAULT_RETENTION_INTERVAL_S,
    DEFAULT_SEGMENT_BYTES,
    FsyncPolicy,
    Limits,
    Settings,
)
from .retention import parse_limit, parse_max_age
from .store.base import Retention
from .storeopts import add_arguments as add_store_arguments
from .storeopts import flag_values as store_flag_values
from .storeopts import resolve as resolve_store

MIN_SEGMENT_BYTES = 1024


@dataclass(frozen=True)
class DaemonOptions:
    """Flags as the user typed them; None means "not given, use the environment or default"."""

    foreground: bool = False
    listen: str | None = None
    no_auth: bool = False
    data_dir: str | None = None
    fsync: str | None = None
    socket: str | None = None
    long_poll_timeout: float | None = None
    store: str | None = None  # None: env CHANCTL_STORE, else local
    header_read_timeout: float | None = None  # hidden: lets tests check the deadline quickly
    max_age: str | None = None  # retention defaults for new channels, as typed (e.g. "7d")
    max_bytes: str | None = None
    max_messages: str | None = None
    segment_bytes: int | None = None  # hidden: tests roll segments after a few records
    retention_interval: float | None = None  # hidden: tests need not wait 10 s per sweep
    replicas: int | None = None  # NATS store only (see storeopts.py)
    nats_creds: str | None = None
    nats_tls_ca: str | None = None
    nats_tls_cert: str | None = None
    nats_tls_key: str | None = None
    nats_namespace: str | None = None
    nats_sync: str | None = None
    limits: tuple[str, ...] = ()  # --limit NAME=VALUE, as typed, in order (later ones win)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port). ``localhost`` means 127.0.0.1.

    Only IP literals are accepted (plus ``localhost``) so that "is this loopback?" never depends
    on DNS, which an attacker may control.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(
            f"invalid --listen address {text!r}: expected HOST:PORT",
            hint="for example --listen 127.0.0.1:4437 (port 0 picks a free port)",
        )
    host = host.removeprefix("[").removesuffix("]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(
            f"invalid --listen host {host!r}: use an IP address such as 127.0.0.1 or ::1",
            hint="host names are refused so that the loopback check cannot be fooled by DNS",
        ) from None
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def build_settings(opts: DaemonOptions) -> Settings:
    """Resolve flags against the environment and platform defaults into one ``Settings``."""
    sock = (
        paths.check_socket_path(Path(opts.socket).expanduser().absolute())
        if opts.socket
        else paths.socket_path()
    )
    data = Path(opts.data_dir).expanduser().absolute() if opts.data_dir else paths.data_dir()
    try:
        fsync = FsyncPolicy.parse(opts.fsync) if opts.fsync else FsyncPolicy()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    limits = Limits()
    if opts.header_read_timeout is not None:
        limits = dataclasses.replace(limits, header_read_timeout_s=opts.header_read_timeout)
    if opts.long_poll_timeout is not None:
        if not 0 < opts.long_poll_timeout <= 3600:
            raise UsageError("--long-poll-timeout must be between 0 and 3600 seconds")
        limits = dataclasses.replace(limits, long_poll_timeout_s=opts.long_poll_timeout)
    limits = apply_limits(limits, opts.limits)
    store, nats = resolve_store(opts)
    return Settings(
        data_dir=data,
        socket_path=sock,
        listen=parse_listen(opts.listen) if opts.listen else None,
        no_auth=opts.no_auth,
        fsync=fsync,
        limits=limits,
        log_file=None if opts.foreground else paths.log_file(),
        pid_file=paths.pid_file(sock),
        store=store,
        nats=nats,
        token_file=paths.token_file() if opts.listen and not opts.no_auth else None,
        segment_bytes=_segment_bytes(opts.segment_bytes),
        default_retention=default_retention(opts),
        retention_interval_s=_retention_interval(opts.retention_interval),
    )


def apply_limits(limits: Limits, items: Sequence[str]) -> Limits:
    """``--limit NAME=VALUE``: set any field of ``Limits`` (caps, deadlines, sizes).

    One generic flag instead of one per knob: operators can tighten a budget, and tests can
    shrink a 10 s deadline to 2 s, without the flag list growing with every limit. Values are
    checked against the field's type and must be positive.
    """
    known = {f.name for f in dataclasses.fields(Limits)}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in known:
            raise UsageError(
                f"invalid --limit {item!r}: expected NAME=VALUE with NAME one of "
                + ", ".join(sorted(known)),
                hint="for example --limit write_deadline_s=2",
            )
        is_int = isinstance(getattr(limits, name), int)
        try:
            value: float = int(text) if is_int else float(text)
        except ValueError:
            value = 0
        if not (value > 0 and math.isfinite(value)):
            what = "a positive integer" if is_int else "a positive number"
            raise UsageError(f"invalid --limit {item!r}: {name} must be {what}")
        change: dict[str, Any] = {name: value}  # an int field got an int, a float one a float
        limits = dataclasses.replace(limits, **change)
    return limits


def _segment_bytes(given: int | None) -> int:
    if given is None:
        return DEFAULT_SEGMENT_BYTES
    if given < MIN_SEGMENT_BYTES:
        raise UsageError(f"--segment-bytes must be at least {MIN_SEGMENT_BYTES}")
    return given


def _retention_interval(given: float | None) -> float:
    if given is None:
        return DEFAULT_RETENTION_INTERVAL_S
    if not 0 < given <= 86400:
        raise UsageError("--retention-interval must be between 0 and 86400 seconds")
    return given


def default_retention(opts: DaemonOptions) -> Retention:
    """``--max-age`` / ``--max-bytes`` / ``--max-messages``: what new channels get when their
    PUT leaves a limit out (the same grammar as the Chanctl-Max-* headers)."""
    try:
        return Retention(
            max_age_s=None if opts.max_age is None else parse_max_age(opts.max_age, "--max-age"),
            max_bytes=None
            if opts.max_bytes is None
            else parse_limit(opts.max_bytes, "--max-bytes"),
            max_messages=None
            if opts.max_messages is None
            else parse_limit(opts.max_messages, "--max-messages"),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m chanctl.daemon",
        description="Run the chanctl daemon in this process (it does not detach).",
    )
    p.add_argument("--foreground", action="store_true", help="log to stderr, not the log file")
    p.add_argument("--listen", metavar="HOST:PORT", help="also serve loopback TCP (token auth)")
    p.add_argument("--no-auth", action="store_true", help="no bearer token on TCP (loopback)")
    p.add_argument("--data-dir", metavar="DIR", help="channel data (env CHANCTL_DATA_DIR)")
    p.add_argument("--fsync", metavar="POLICY", help="always | interval:<ms> | never")
    p.add_argument("--socket", metavar="PATH", help="unix socket path (env CHANCTL_SOCKET)")
    p.add_argument("--long-poll-timeout", metavar="SECONDS", type=float)
    p.add_argument("--max-age", metavar="AGE", help="default retention: 3600, 90m, 7d...")
    p.add_argument("--max-bytes", metavar="BYTES", help="default retention: bytes per channel")
    p.add_argument("--max-messages", metavar="N", help="default retention: messages per channel")
    p.add_argument(
        "--limit",
        dest="limits",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="set a resource limit, e.g. max_live_readers=64 or write_deadline_s=5 "
        "(repeatable; names: " + ", ".join(f.name for f in dataclasses.fields(Limits)) + ")",
    )
    add_store_arguments(p)  # --store (memory: tests only), --replicas, --nats-*
    p.add_argument("--header-read-timeout", type=float, help=argparse.SUPPRESS)
    p.add_argument("--segment-bytes", type=int, help=argparse.SUPPRESS)
    p.add_argument("--retention-interval", type=float, help=argparse.SUPPRESS)
    return p


def parse_argv(argv: Sequence[str] | None = None) -> DaemonOptions:
    ns = _parser().parse_args(argv)
    ns.limits = tuple(ns.limits)
    return DaemonOptions(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(DaemonOptions)})


def to_argv(opts: DaemonOptions) -> list[str]:
    """The flags that make ``parse_argv`` return ``opts`` again (defaults are left out)."""
    argv: list[str] = []
    if opts.foreground:
        argv.append("--foreground")
    for flag, value in (
        ("--listen", opts.listen),
        ("--data-dir", opts.data_dir),
        ("--fsync", opts.fsync),
        ("--socket", opts.socket),
        ("--long-poll-timeout", opts.long_poll_timeout),
        ("--header-read-timeout", opts.header_read_timeout),
        ("--max-age", opts.max_age),
        ("--max-bytes", opts.max_bytes),
        ("--max-messages", opts.max_messages),
        ("--segment-bytes", opts.segment_bytes),
        ("--retention-interval", opts.retention_interval),
        *store_flag_values(opts),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if opts.no_auth:
        argv.append("--no-auth")
    for item in opts.limits:
        argv += ["--limit", item]
    return argv
