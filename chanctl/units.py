"""The service files ``chanctl daemon install`` writes: systemd user units or a launchd agent.

Generation is pure (a ``ServiceSpec`` in, file contents out) so every platform's output can be
checked anywhere, and ``chanctl doctor`` can read the installed units back with ``parse_unit`` to
compare them with what the CLI would use now. The socket unit owns the socket (mode 0600 in a
0700 directory, the same path the CLI resolves); the service runs the daemon in the foreground,
so its log goes to the journal, and takes that socket over (``daemon/activation.py``).
"""

from __future__ import annotations

import os
import plistlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SOCKET_UNIT = "chanctl.socket"
SERVICE_UNIT = "chanctl.service"
LAUNCHD_LABEL = "chanctl.daemon"
LAUNCHD_SOCKET_KEY = "Listeners"  # the agent's Sockets key the daemon asks launchd for


@dataclass(frozen=True)
class ServiceSpec:
    """What the service runs: ``python -m chanctl.daemon --foreground FLAGS`` on ``socket``."""

    python: str
    daemon_flags: tuple[str, ...]  # DaemonOptions.to_argv, with absolute --socket and --data-dir
    socket: Path
    data_dir: Path
    env: tuple[tuple[str, str], ...] = ()
    log_file: Path | None = None  # launchd only: where the agent's stderr goes

    @property
    def argv(self) -> list[str]:
        return [self.python, "-m", "chanctl.daemon", "--foreground", *self.daemon_flags]


def systemd_user_dir() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user``: where a user's own units go (systemd.unit(5))."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "systemd" / "user"


def launch_agents_dir() -> Path:
    return Path.home() / "Library" / "LaunchAgents"


def _escape(value: str) -> str:
    """systemd expands ``%`` specifiers in every setting and ``$`` in command lines."""
    return value.replace("%", "%%")


def exec_quote(arg: str) -> str:
    """One ExecStart= word: quoted when it holds blanks or quotes, specifiers escaped."""
    word = _escape(arg).replace("$", "$$")
    if word and not any(c in word for c in " \t\"'\\;"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_socket_unit(spec: ServiceSpec) -> str:
    return (
        "# Written by `chanctl daemon install`; `chanctl daemon uninstall` removes it.\n"
        "[Unit]\n"
        "Description=chanctl daemon socket (durable named channels)\n"
        "\n"
        "[Socket]\n"
        f"ListenStream={_escape(str(spec.socket))}\n"
        "SocketMode=0600\n"
        "DirectoryMode=0700\n"
        "\n"
        "[Install]\n"
        "WantedBy=sockets.target\n"
    )


def systemd_service_unit(spec: ServiceSpec) -> str:
    env = "".join(f"Environment={exec_quote(f'{key}={value}')}\n" for key, value in spec.env)
    return (
        "# Written by `chanctl daemon install`; `chanctl daemon uninstall` removes it.\n"
        "[Unit]\n"
        "Description=chanctl daemon (durable named channels)\n"
        f"Requires={SOCKET_UNIT}\n"
        f"After={SOCKET_UNIT}\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={' '.join(exec_quote(a) for a in spec.argv)}\n"
        f"{env}"
        "WorkingDirectory=/\n"
        "UMask=0077\n"
        "Restart=on-failure\n"
        "RestartSec=1\n"
        # SIGTERM: in-flight appends get 10 s, then the store fsyncs; leave room for both.
        "TimeoutStopSec=30\n"
        "\n"
        "[Install]\n"
        f"Also={SOCKET_UNIT}\n"
    )


def launchd_plist(spec: ServiceSpec) -> bytes:
    """The agent: launchd owns the socket and starts the daemon on the first connection."""
    agent: dict[str, object] = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": spec.argv,
        "EnvironmentVariables": {"CHANCTL_LAUNCHD_SOCKET": LAUNCHD_SOCKET_KEY, **dict(spec.env)},
        "Sockets": {
            LAUNCHD_SOCKET_KEY: {
                "SockPathName": str(spec.socket),
                "SockPathMode": 0o600,  # launchd wants it as an integer (decimal 384)
                "SockType": "stream",
                "SockFamily": "Unix",
            }
        },
        "KeepAlive": {"SuccessfulExit": False},  # like Restart=on-failure
        "WorkingDirectory": "/",
        "Umask": 0o077,
    }
    if spec.log_file is not None:
        agent["StandardErrorPath"] = str(spec.log_file)
        agent["StandardOutPath"] = str(spec.log_file)
    return plistlib.dumps(agent, sort_keys=True)


def service_files(spec: ServiceSpec, platform: str = sys.platform) -> dict[Path, bytes]:
    """Every file ``install`` writes on ``platform``, by absolute path."""
    if platform == "darwin":
        return {launch_agents_dir() / f"{LAUNCHD_LABEL}.plist": launchd_plist(spec)}
    unit_dir = systemd_user_dir()
    return {
        unit_dir / SOCKET_UNIT: systemd_socket_unit(spec).encode(),
        unit_dir / SERVICE_UNIT: systemd_service_unit(spec).encode(),
    }


def installed_files(platform: str = sys.platform) -> list[Path]:
    """The paths ``install`` writes on ``platform`` (whether or not they exist)."""
    if platform == "darwin":
        return [launch_agents_dir() / f"{LAUNCHD_LABEL}.plist"]
    return [systemd_user_dir() / SOCKET_UNIT, systemd_user_dir() / SERVICE_UNIT]


def parse_unit(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> values, in order (enough to read back what ``install`` wrote)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep:
            out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def split_exec(line: str) -> list[str]:
    """Undo ``exec_quote`` for a whole ExecStart= line."""
    import shlex

    return [w.replace("$$", "$").replace("%%", "%") for w in shlex.split(line)]


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    """The value after ``flag`` in ``argv`` (the last one wins, as in argparse)."""
    value = None
    for i, word in enumerate(argv[:-1]):
        if word == flag:
            value = argv[i + 1]
    return value
