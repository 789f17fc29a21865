"""``chanctl doctor``: check the installation, one line per check, each failure with its fix.

Every check looks at the real thing (the socket file, the daemon's own answer on it, the data
directory's modes and free space, the installed service files, the token file, the NATS servers)
and never changes anything: fixing is left to the command it prints. ``fail`` means chanctl
cannot work as it is, or is less private than it should be; ``warn`` means it works with a cost
the user should know about (less durability, little disk left).
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, _uds, daemonctl, install, paths, units
from .errors import ChanctlError

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MIN_FREE_BYTES = 1 << 30  # below 1 GiB or 5 % free: warn
MIN_FREE_FRACTION = 0.05
CRITICAL_FREE_BYTES = 64 << 20  # one segment: below this, appends may fail soon
WALK_LIMIT = 2000  # entries of the data directory whose modes are checked


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str | None = None


@dataclass
class Context:
    """What the checks share: the paths the CLI uses and what the daemon said about itself."""

    sock: Path
    health: dict[str, Any] | None = None
    holder: dict[str, Any] = field(default_factory=dict)
    unreachable: str | None = None
    service_argv: list[str] | None = None

    @property
    def data_dir(self) -> Path:
        given = self.holder.get("data_dir") or (self.health or {}).get("data_dir")
        if not given and self.service_argv:
            given = units.flag_value(self.service_argv, "--data-dir")
        return Path(given) if isinstance(given, str) else paths.data_dir()

    @property
    def start_hint(self) -> str:
        if self.service_argv is not None and sys.platform != "darwin":
            return f"systemctl --user enable --now {units.SOCKET_UNIT}"
        return "chanctl daemon start"


def run_checks(sock: Path) -> list[Check]:
    ctx = Context(sock, service_argv=install.installed_argv())
    try:
        reply = _uds.request(sock, "GET", daemonctl.HEALTH_PATH, timeout=3.0)
        body = reply.json()
        if reply.status == 200 and isinstance(body, dict):
            ctx.health = body
        else:
            ctx.unreachable = f"it answered {daemonctl.HEALTH_PATH} with HTTP {reply.status}"
    except ChanctlError as exc:
        ctx.unreachable = exc.message
    ctx.holder = daemonctl.read_holder(sock) if daemonctl.is_running(sock) else {}
    return [check(ctx) for check in CHECKS]


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def check_socket(ctx: Context) -> Check:
    sock = ctx.sock
    try:
        st = os.lstat(sock)
    except FileNotFoundError:
        if ctx.service_argv is not None:
            return Check(
                "socket",
                FAIL,
                f"{sock} does not exist, though the service is installed",
                f"systemctl --user enable --now {units.SOCKET_UNIT}",
            )
        return Check(
            "socket", WARN, f"{sock} does not exist (no daemon is running)", ctx.start_hint
        )
    problems, fixes = [], []
    if not stat.S_ISSOCK(st.st_mode):
        return Check("socket", FAIL, f"{sock} is not a socket", f"move {sock} away")
    if st.st_uid != os.getuid():
        problems.append(f"owned by uid {st.st_uid}, not us")
        fixes.append(f"remove {sock} and restart the daemon")
    if stat.S_IMODE(st.st_mode) != 0o600:
        problems.append(f"mode {_mode(st)}, not 0600")
        fixes.append(f"chmod 600 {sock}")
    parent = os.lstat(sock.parent)
    if stat.S_IMODE(parent.st_mode) != 0o700 or parent.st_uid != os.getuid():
        problems.append(f"its directory is {_mode(parent)} (uid {parent.st_uid}), not 0700 ours")
        fixes.append(f"chmod 700 {sock.parent}")
    if problems:
        return Check("socket", FAIL, f"{sock}: " + "; ".join(problems), "; ".join(fixes))
    return Check("socket", OK, f"{sock} (0600, ours, in a 0700 directory)")


def check_reachable(ctx: Context) -> Check:
    if ctx.health is not None:
        pid = ctx.holder.get("pid") or ctx.health.get("pid")
        by = ctx.holder.get("service_manager")
        return Check("daemon", OK, f"answers (pid {pid}{f', run by {by}' if by else ''})")
    return Check("daemon", FAIL, f"not reachable: {ctx.unreachable}", ctx.start_hint)


def check_version(ctx: Context) -> Check:
    if ctx.health is None:
        return Check("version", SKIP, "daemon not reachable")
    theirs = ctx.health.get("version")
    if theirs == __version__:
        return Check("version", OK, f"daemon and CLI are both {__version__}")
    restart = (
        f"systemctl --user restart {units.SERVICE_UNIT}"
        if ctx.holder.get("service_manager") == "systemd"
        else "chanctl daemon stop && chanctl daemon start"
    )
    return Check("version", FAIL, f"daemon is {theirs}, this CLI is {__version__}", restart)


def _loose_entries(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Entries under ``root`` that others may read or that are not ours (bounded walk)."""
    seen = 0
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            seen += 1
            if seen > WALK_LIMIT:
                return
            path = Path(folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if st.st_mode & 0o077 or st.st_uid != os.getuid():
                yield path, st


def check_data_dir(ctx: Context) -> Check:
    data = ctx.data_dir
    try:
        st = os.lstat(data)
    except FileNotFoundError:
        return Check("data dir", WARN, f"{data} does not exist yet (created on first start)")
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return Check(
            "data dir",
            FAIL,
            f"{data} is not a directory of ours",
            "point --data-dir / CHANCTL_DATA_DIR at a directory of your own",
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        return Check(
            "data dir", FAIL, f"{data} has mode {_mode(st)}, not 0700", f"chmod 700 {data}"
        )
    for path, est in _loose_entries(data):
        return Check(
            "data dir",
            FAIL,
            f"{path} has mode {_mode(est)} (uid {est.st_uid})",
            f"chmod -R go-rwx {data}",
        )
    return Check("data dir", OK, f"{data} (0700, nothing readable by others)")


def check_disk(ctx: Context) -> Check:
    where = ctx.data_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    vfs = os.statvfs(where)
    free = vfs.f_bavail * vfs.f_frsize
    total = vfs.f_blocks * vfs.f_frsize or 1
    text = f"{_size(free)} free of {_size(total)} ({100 * free / total:.0f}%) on {where}"
    fix = f"free space on the filesystem of {where}, or move the data dir"
    if free < CRITICAL_FREE_BYTES:
        return Check("disk", FAIL, text + ": appends may soon fail", fix)
    if free < MIN_FREE_BYTES or free / total < MIN_FREE_FRACTION:
        return Check("disk", WARN, text, fix)
    return Check("disk", OK, text)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def check_fsync(ctx: Context) -> Check:
    policy = (ctx.health or {}).get("fsync") or ctx.holder.get("fsync")
    if policy is None and ctx.service_argv:
        policy = units.flag_value(ctx.service_argv, "--fsync") or "always"
    if not isinstance(policy, str):
        return Check("fsync", SKIP, "daemon not reachable")
    if policy == "always":
        return Check("fsync", OK, "always: an append is acknowledged once it is on disk")
    if policy.startswith("nats:"):
        return _nats_durability(policy)
    if policy.startswith("interval"):
        window = f"in the last {policy.partition(':')[2] or '?'} ms"
    else:
        window = "not yet flushed by the kernel (up to ~30 s)"
    why = (
        f"{policy}: appends acknowledged {window} are lost on a power loss or kernel crash "
        "(a daemon crash loses nothing)"
    )
    return Check("fsync", WARN, why, "restart the daemon with --fsync always (the default)")


def _nats_durability(policy: str) -> Check:
    """``nats:R<n>,sync_interval=<s>``: replicas, or the server's own sync, make it durable."""
    replicas, _, sync = policy.removeprefix("nats:").partition(",sync_interval=")
    if replicas != "R1":
        return Check("fsync", OK, f"{policy}: acknowledged once a majority of servers has it")
    if sync == "always":
        return Check("fsync", OK, f"{policy}: the server syncs each append before acknowledging")
    return Check(
        "fsync",
        WARN,
        f"{policy}: one NATS server acknowledges before it syncs to disk; an OS crash or power "
        "loss on it can lose recent appends",
        "sync_interval: always on the server (and --nats-sync always), or --replicas 3",
    )


def check_service(ctx: Context) -> Check:
    argv = ctx.service_argv
    if argv is None:
        return Check("service", OK, "not installed (the CLI starts the daemon on demand)")
    reinstall = "chanctl daemon install (again, with the options you want)"
    if not argv or not os.access(argv[0], os.X_OK):
        return Check(
            "service",
            FAIL,
            f"the installed service runs {argv[:1]}, which cannot be executed",
            reinstall,
        )
    if sys.platform == "darwin":
        listen = units.flag_value(argv, "--socket")
    else:
        text = (
            (units.systemd_user_dir() / units.SOCKET_UNIT).read_text(errors="replace")
            if (units.systemd_user_dir() / units.SOCKET_UNIT).exists()
            else ""
        )
        found = units.parse_unit(text).get("Socket.ListenStream", [])
        listen = found[-1].replace("%%", "%") if found else None
    if listen != str(ctx.sock):
        return Check(
            "service", FAIL, f"the installed socket is {listen}, the CLI uses {ctx.sock}", reinstall
        )
    if units.flag_value(argv, "--socket") != listen:
        return Check(
            "service", FAIL, "the service and socket units name different sockets", reinstall
        )
    where = units.installed_files()[0].parent
    if ctx.holder and not ctx.holder.get("service_manager"):
        return Check(
            "service",
            WARN,
            f"installed in {where}, but the running daemon (pid {ctx.holder.get('pid')}) was "
            "started by hand: it stops with your session, and is not restarted on failure",
            f"chanctl daemon stop && systemctl --user enable --now {units.SOCKET_UNIT}"
            if sys.platform != "darwin"
            else "chanctl daemon stop && chanctl daemon install",
        )
    return Check("service", OK, f"installed in {where}, socket {listen}")


def check_tcp(ctx: Context) -> Check:
    listen = ctx.holder.get("listen")
    token = paths.token_file()
    try:
        st = os.lstat(token)
    except FileNotFoundError:
        if listen and ctx.holder.get("auth") == "token":
            return Check(
                "tcp",
                FAIL,
                f"listening on {listen} but {token} is missing",
                "restart the daemon (it creates a new token)",
            )
        if listen:
            return Check("tcp", OK, f"{listen} without a token (loopback, --no-auth)")
        return Check("tcp", OK, "off (unix socket only)")
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
        return Check(
            "tcp",
            FAIL,
            f"{token} is not a regular file of ours",
            f"rm {token} (a new token is created on the next start)",
        )
    if stat.S_IMODE(st.st_mode) != 0o600:
        return Check(
            "tcp",
            FAIL,
            f"token file {token} has mode {_mode(st)}, not 0600 (the daemon refuses it)",
            f"chmod 600 {token}, or rm it if it may have "
            "leaked (a new one is made on the next start)",
        )
    return Check("tcp", OK, f"{listen or 'off'}; token file {token} is 0600")


def _nats_servers(ctx: Context) -> list[str]:
    given = ctx.holder.get("nats_servers")
    if isinstance(given, list):
        return [str(s) for s in given]
    text = os.environ.get("CHANCTL_STORE", "")
    if ctx.service_argv:
        text = units.flag_value(ctx.service_argv, "--store") or text
    return [s.strip() for s in text.split(",")] if text.startswith(("nats://", "tls://")) else []


def nats_answers(server: str, timeout: float = 2.0) -> str | None:
    """None if a NATS server greets us at ``server`` (``nats://HOST:PORT``), else why not."""
    hostport = server.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout) as conn:
            greeting = conn.recv(4)
    except (OSError, ValueError) as exc:
        return str(exc) or exc.__class__.__name__
    return None if greeting == b"INFO" else "it does not speak NATS"


def check_nats(ctx: Context) -> Check:
    servers = _nats_servers(ctx)
    if not servers:
        return Check("nats", OK, "not used (local-disk store)")
    down = [(s, why) for s in servers if (why := nats_answers(s)) is not None]
    if len(down) == len(servers):
        listing = "; ".join(f"{s}: {why}" for s, why in down)
        return Check(
            "nats",
            FAIL,
            f"no NATS server answers ({listing})",
            "start nats-server, or fix --store in the daemon's options",
        )
    if down:
        return Check(
            "nats",
            WARN,
            f"{len(down)} of {len(servers)} servers do not answer: "
            + ", ".join(s for s, _ in down),
            "check those servers",
        )
    return Check("nats", OK, f"{', '.join(servers)} answer")


CHECKS: tuple[Callable[[Context], Check], ...] = (
    check_socket,
    check_reachable,
    check_version,
    check_data_dir,
    check_disk,
    check_fsync,
    check_service,
    check_tcp,
    check_nats,
)


def exit_status(checks: list[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0


def as_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": exit_status(checks) == 0, "checks": [asdict(c) for c in checks]}


def render(checks: list[Check], tty: bool, color: bool) -> str:
    """``✓ name  detail`` on a terminal, ``ok    name  detail`` otherwise; fixes below fails."""
    marks = (
        {OK: "✓", WARN: "!", FAIL: "✗", SKIP: "-"}
        if tty
        else {OK: "ok", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}
    )
    colors = {OK: "\x1b[32m", WARN: "\x1b[33m", FAIL: "\x1b[31m", SKIP: "\x1b[2m"}
    width = max(len(c.name) for c in checks)
    out = []
    for c in checks:
        mark = marks[c.status].ljust(1 if tty else 4)
        if color:
            mark = f"{colors[c.status]}{mark}\x1b[0m"
        out.append(f"{mark} {c.name.ljust(width)}  {c.detail}\n")
        if c.fix and c.status in (FAIL, WARN):
            out.append(f"{' ' * (2 if tty else 5)}{' ' * width}  fix: {c.fix}\n")
    return "".join(out)
