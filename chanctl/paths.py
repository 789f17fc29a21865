"""Where chanctl keeps its files, and the checks that make those places safe to use.

* socket, pid and lock files: ``$XDG_RUNTIME_DIR/chanctl``, else ``/tmp/chanctl-<uid>``
  (``CHANCTL_SOCKET`` overrides the socket path; pid and lock files sit beside it);
* channel data: ``~/.local/share/chanctl`` (``CHANCTL_DATA_DIR`` overrides);
* daemon log: ``~/.local/state/chanctl/daemon.log`` (follows ``XDG_STATE_HOME``);
* TCP bearer token: ``~/.config/chanctl/token`` (follows ``XDG_CONFIG_HOME``).

Resolving a path never touches the disk (``chanctl daemon status`` must not create directories);
``ensure_private_dir`` is what creates and checks them, and only the daemon calls it for the
runtime and data directories. platformdirs is imported inside the functions that need it so the
CLI pays for it only when it actually resolves a path.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from .errors import ConfigError, UnsafePath

APP_NAME = "chanctl"
SOCKET_NAME = "chanctl.sock"
LOG_NAME = "daemon.log"
TOKEN_NAME = "token"
DATA_LOCK_NAME = "daemon.lock"
# sun_path is 108 bytes on Linux and 104 on macOS, including the NUL; 100 leaves room on both.
MAX_SOCKET_PATH_BYTES = 100

ENV_SOCKET = "CHANCTL_SOCKET"
ENV_URL = "CHANCTL_URL"
ENV_DATA_DIR = "CHANCTL_DATA_DIR"


def _fallback_runtime_base() -> Path:
    # Not $TMPDIR: on macOS it is a long /var/folders/... path that overflows sun_path.
    return Path(f"/tmp/{APP_NAME}-{os.getuid()}")


def _usable_xdg_runtime_dir() -> Path | None:
    """``$XDG_RUNTIME_DIR`` if it is set and is a real directory we own; None otherwise.

    Containers, ``su`` sessions and cron often leave it unset or pointing at a missing
    ``/run/user/<uid>``; a directory owned by someone else would let them read our socket.
    """
    raw = os.environ.get("XDG_RUNTIME_DIR", "")
    if not raw or not os.path.isabs(raw):
        return None
    try:
        st = os.lstat(raw)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return None
    return Path(raw)


def runtime_dir() -> Path:
    """The private directory for the socket, lock and pid files (not created here)."""
    if sys.platform == "darwin":
        import platformdirs

        return Path(platformdirs.user_runtime_dir(APP_NAME))
    xdg = _usable_xdg_runtime_dir()
    if xdg is None:
        return _fallback_runtime_base()
    return xdg / APP_NAME


def socket_path() -> Path:
    """The daemon's unix socket: ``$CHANCTL_SOCKET``, a ``unix://`` ``$CHANCTL_URL``, or default."""
    raw = os.environ.get(ENV_SOCKET, "")
    url = os.environ.get(ENV_URL, "")
    if not raw and url.startswith("unix://"):
        raw = url.removeprefix("unix://")
    path = Path(raw).expanduser().absolute() if raw else runtime_dir() / SOCKET_NAME
    return check_socket_path(path)


def check_socket_path(path: Path) -> Path:
    """Refuse socket paths the kernel would truncate or reject (sun_path is ~104-108 bytes)."""
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH_BYTES:
        raise ConfigError(
            f"socket path is {size} bytes long, more than the {MAX_SOCKET_PATH_BYTES} a unix "
            f"socket allows: {path}",
            hint=f"set {ENV_SOCKET} (or --socket) to a shorter path, "
            f"e.g. {_fallback_runtime_base() / SOCKET_NAME}",
        )
    return path


def lock_file(sock: Path) -> Path:
    """The flock file beside the socket: one daemon per socket path."""
    return sock.with_suffix(".lock")


def pid_file(sock: Path) -> Path:
    """The pid file beside the socket, read by ``chanctl daemon stop``."""
    return sock.with_suffix(".pid")


def web_request_file(sock: Path) -> Path:
    """Beside the socket: the web view's TCP listener was asked for (``chanctl web``), so the
    daemon on ``sock`` opens it again at start-up."""
    return sock.with_suffix(".web.json")


def data_dir() -> Path:
    """Channel data: ``$CHANCTL_DATA_DIR`` or the platform's user data directory."""
    raw = os.environ.get(ENV_DATA_DIR, "")
    if raw:
        return Path(raw).expanduser().absolute()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def data_lock_file(data: Path) -> Path:
    """The flock file inside the data directory: one daemon per data directory."""
    return data / DATA_LOCK_NAME


def state_dir() -> Path:
    """Logs and other state that is not user data (``$XDG_STATE_HOME/chanctl``)."""
    import platformdirs

    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def log_file() -> Path:
    return state_dir() / LOG_NAME


def config_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def token_file() -> Path:
    """The bearer token a TCP listener requires; 0600, created by the daemon on first use."""
    return config_dir() / TOKEN_NAME


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make sure only we can use it (mode 0700).

    A directory we own is tightened to 0700 whatever the umask was. A symlink, a non-directory
    or a directory owned by another user is refused rather than repaired: in a shared place like
    /tmp another user may have planted it to read or hijack our socket.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise UnsafePath(
            f"cannot create directory {path}: {exc.strerror}",
            hint="check the permissions of its parent directory",
        ) from exc
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(
            f"{path} is not a directory (it is a symlink or a file)",
            hint="remove it, or point chanctl at another location",
        )
    if st.st_mode & stat.S_ISVTX:
        raise UnsafePath(
            f"{path} is a shared directory (sticky bit set, like /tmp); refusing to use it as is",
            hint="point chanctl at a directory of its own, e.g. a new subdirectory",
        )
    if st.st_uid != os.getuid():
        raise UnsafePath(
            f"{path} is owned by uid {st.st_uid}, not by us (uid {os.getuid()})",
            hint="remove it, or point chanctl at another location",
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path
