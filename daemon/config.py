"""Daemon settings: one frozen object built from flags, environment and defaults.

Every knob the daemon has is a field here, so the server, the HTTP layer and the storage engine
read the same values and tests can build a daemon with tight limits in one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .store.base import Retention

MiB = 1024 * 1024
DEFAULT_SEGMENT_BYTES = 64 * MiB
DEFAULT_RETENTION_INTERVAL_S = 10.0


@dataclass(frozen=True)
class FsyncPolicy:
    """When appends reach the disk: ``always`` (default), ``interval:<ms>`` or ``never``."""

    mode: str = "always"
    interval_ms: int = 0

    @classmethod
    def parse(cls, text: str) -> FsyncPolicy:
        text = text.strip().lower()
        if text in ("always", "never"):
            return cls(mode=text)
        if text.startswith("interval:"):
            raw = text.split(":", 1)[1].removesuffix("ms")
            if raw.isdigit() and 0 < int(raw) <= 60_000:
                return cls(mode="interval", interval_ms=int(raw))
        raise ValueError(
            f"invalid fsync policy {text!r}: use 'always', 'never' or 'interval:<ms>' "
            "(1 to 60000 ms)"
        )

    def __str__(self) -> str:
        return f"interval:{self.interval_ms}" if self.mode == "interval" else self.mode


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 * MiB  # one append request (413 beyond)
    max_message_bytes: int = 1 * MiB  # one message
    max_header_line: int = 8190
    max_headers: int = 128
    max_live_readers: int = 1024
    max_live_readers_per_peer: int = 128  # per TCP peer address (the unix socket has one user)
    idle_keepalive_s: float = 75.0
    read_chunk_bytes: int = 1 * MiB  # catch-up reads return at most this much per response
    long_poll_timeout_s: float = 30.0
    sse_max_age_s: float = 60.0
    write_deadline_s: float = 10.0
    header_read_timeout_s: float = 10.0  # slowloris: a request head must arrive within this
    body_read_timeout_s: float = 30.0  # ... and its body within this of the head (408 beyond)
    shutdown_grace_s: float = 10.0  # SIGTERM: how long in-flight requests get to finish


@dataclass(frozen=True)
class NatsSettings:
    """Where the NATS JetStream engine keeps channels (``--store nats://host:4222,...``).

    ``namespace`` prefixes every stream, subject and KV bucket the daemon creates, so several
    independent chanctl installations (or test runs) can share one NATS cluster. ``server_sync``
    is what the operator states the servers' ``sync_interval`` is: a client cannot ask NATS for
    it, and it decides whether an acknowledged append survives an OS crash on R1.
    """

    servers: tuple[str, ...]
    replicas: int = 1
    creds: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    namespace: str = "chanctl"
    server_sync: str | None = None
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 5.0  # one JetStream API call or publish acknowledgement
    publish_deadline_s: float = 20.0  # retrying one record across a leader election


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    socket_path: Path | None
    listen: tuple[str, int] | None = None  # loopback TCP, opt-in
    token: str | None = None  # bearer token required on TCP unless no_auth
    no_auth: bool = False
    fsync: FsyncPolicy = field(default_factory=FsyncPolicy)
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    limits: Limits = field(default_factory=Limits)
    log_file: Path | None = None  # None: log to stderr (--foreground)
    pid_file: Path | None = None
    store: str = "local"  # "memory" is for tests of non-storage behaviour only: not durable; "nats"
    nats: NatsSettings | None = None  # set when store == "nats"
    token_file: Path | None = None  # where the TCP bearer token lives (0600); read at start
    default_retention: Retention = field(default_factory=Retention)  # of channels created now
    retention_interval_s: float = DEFAULT_RETENTION_INTERVAL_S  # how often the sweep enforces it
