"""``--store`` and the NATS flags: which engine keeps the channels, and how to reach NATS.

Kept out of ``options.py`` so that module stays about the daemon itself. Everything here only
validates text: nothing connects, so ``chanctl daemon start`` reports a typo before it spawns
anything (whether NATS answers is checked by the daemon when it starts, with its own error).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
from pathlib import Path
from typing import Protocol

from chanctl.errors import UsageError

from .config import NatsSettings

ENV_STORE = "CHANCTL_STORE"
LOCAL_STORES = ("local", "memory")  # memory: tests of non-storage behaviour only
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SYNC_RE = re.compile(r"always|\d+(ms|s|m|h)")
_SERVER_RE = re.compile(r"(nats|tls)://[^\s,/]+:\d{1,5}")


class StoreFlags(Protocol):
    """The fields of DaemonOptions read here (read-only: it is a frozen dataclass)."""

    @property
    def store(self) -> str | None: ...
    @property
    def replicas(self) -> int | None: ...
    @property
    def nats_creds(self) -> str | None: ...
    @property
    def nats_tls_ca(self) -> str | None: ...
    @property
    def nats_tls_cert(self) -> str | None: ...
    @property
    def nats_tls_key(self) -> str | None: ...
    @property
    def nats_namespace(self) -> str | None: ...
    @property
    def nats_sync(self) -> str | None: ...


NATS_FLAGS = (
    ("--nats-creds", "nats_creds", "FILE", "NATS credentials file (JWT + NKey)"),
    ("--nats-tls-ca", "nats_tls_ca", "FILE", "CA certificate(s) to verify NATS servers"),
    ("--nats-tls-cert", "nats_tls_cert", "FILE", "client certificate for NATS (mutual TLS)"),
    ("--nats-tls-key", "nats_tls_key", "FILE", "its private key"),
    ("--nats-namespace", "nats_namespace", "NAME", "prefix of streams/buckets (chanctl)"),
    ("--nats-sync", "nats_sync", "POLICY", "the servers' sync_interval: always, 2m, ..."),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        metavar="STORE",
        help="local (default) or nats://HOST:PORT[,HOST:PORT...] (env CHANCTL_STORE)",
    )
    p.add_argument("--replicas", type=int, metavar="N", help="NATS: copies of each new channel")
    for flag, dest, metavar, text in NATS_FLAGS:
        p.add_argument(flag, dest=dest, metavar=metavar, help=text)


def flag_values(opts: StoreFlags) -> list[tuple[str, object]]:
    """(flag, value) pairs for ``to_argv`` (None values are left out by the caller)."""
    out: list[tuple[str, object]] = [("--store", opts.store), ("--replicas", opts.replicas)]
    out += [(flag, getattr(opts, dest)) for flag, dest, _, _ in NATS_FLAGS]
    return out


def resolve(opts: StoreFlags) -> tuple[str, NatsSettings | None]:
    """("local" | "memory" | "nats", NATS settings when the store is NATS)."""
    text = (opts.store or os.environ.get(ENV_STORE) or "local").strip()
    if text in LOCAL_STORES:
        given = [flag for flag, value in flag_values(opts)[1:] if value is not None]
        if given:
            raise UsageError(f"{given[0]} only applies to a NATS store (--store nats://...)")
        return text, None
    servers = tuple(s.strip() for s in text.split(","))
    bad = [s for s in servers if not _SERVER_RE.fullmatch(s)]
    if bad:
        raise UsageError(
            f"invalid --store {text!r}: use 'local' or nats://HOST:PORT[,HOST:PORT...]",
            hint="tls://HOST:PORT also works; list several servers of one cluster with commas",
        )
    if importlib.util.find_spec("nats") is None:
        raise UsageError(
            "the NATS store needs nats-py, which is not installed",
            hint="pip install 'chanctl[nats]'",
        )
    return "nats", _nats_settings(opts, servers)


def _nats_settings(opts: StoreFlags, servers: tuple[str, ...]) -> NatsSettings:
    replicas = 1 if opts.replicas is None else opts.replicas
    if not 1 <= replicas <= 5:
        raise UsageError("--replicas must be between 1 and 5 (JetStream's limit)")
    namespace = opts.nats_namespace or "chanctl"
    if not _NAMESPACE_RE.fullmatch(namespace):
        raise UsageError("--nats-namespace: 1 to 32 of A-Z a-z 0-9 _ -")
    sync = opts.nats_sync.strip().lower() if opts.nats_sync else None
    if sync is not None and not _SYNC_RE.fullmatch(sync):
        raise UsageError("--nats-sync: the servers' sync_interval, e.g. always, 2m or 500ms")
    return NatsSettings(
        servers=servers,
        replicas=replicas,
        creds=_file(opts.nats_creds, "--nats-creds"),
        tls_ca=_file(opts.nats_tls_ca, "--nats-tls-ca"),
        tls_cert=_file(opts.nats_tls_cert, "--nats-tls-cert"),
        tls_key=_file(opts.nats_tls_key, "--nats-tls-key"),
        namespace=namespace,
        server_sync=sync,
    )


def _file(value: str | None, flag: str) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser().absolute()
    if not path.is_file():
        raise UsageError(f"{flag}: {path} is not a readable file")
    return path
