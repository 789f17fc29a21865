"""What every channel command shares: global flags, the client, and the exit paths.

Kept free of typer so the `pub` fast path (``chanctl.entry``) can use it without paying for
typer's import.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

from ..errors import ChanctlError, ExitCode

if TYPE_CHECKING:
    from ..client import Client
    from ..daemonctl import DaemonStatus


class Globals:
    """Flags given before the verb (`chanctl --url U -q tail x`), set by the root callback."""

    url: str | None = None
    quiet: bool = False
    verbose: bool = False
    debug: bool = False


def make_client(url: str | None = None, quiet: bool = False) -> Client:
    """A Client for ``--url`` (or the global one / env / default) that reports auto-start."""
    from ..client import Client

    quiet = quiet or Globals.quiet

    def announce(st: DaemonStatus) -> None:
        if not quiet:
            sys.stderr.write(f"chanctl: started daemon (pid {st.pid}, socket {st.socket})\n")

    return Client(url or Globals.url, on_autostart=announce)


def report(exc: ChanctlError, debug: bool = False) -> NoReturn:
    """Print ``error:``/``hint:`` and exit with the error's code (the fast path's copy of
    ``chanctl.cli._report``; both print the same two lines)."""
    if debug or Globals.debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write(f"error: {exc.message}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")
    sys.exit(int(exc.exit_code))


@contextlib.contextmanager
def streaming_output() -> Iterator[None]:
    """Exit 130 on Ctrl-C (not Click's "Aborted!" and 1), and quietly when the reader of our
    stdout went away (`chanctl tail x | head -1`)."""
    try:
        yield
    except KeyboardInterrupt:
        sys.exit(int(ExitCode.INTERRUPTED))
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(int(ExitCode.OK))


def usage(message: str, hint: str | None = None) -> NoReturn:
    from ..errors import UsageError

    raise UsageError(message, hint=hint)


def complete_channels(incomplete: str) -> list[str]:
    """Shell completion of channel names: never starts the daemon, gives up after ~200 ms,
    and completes nothing (rather than printing an error) when the daemon is down."""
    try:
        from ..client import Client

        client = Client(Globals.url, autostart=False, timeout=0.2, reconnect_timeout=0.0)
        names = [c.name for c in client.list()]
    except Exception:
        return []
    return [n for n in names if n.startswith(incomplete)]
