"""``python -m chanctl.daemon [flags]``: run the daemon in this process, without detaching.

This is what ``chanctl daemon start`` spawns (detached, logging to the state directory) and
what service managers and tests run directly (``--foreground`` logs to stderr).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from chanctl.errors import ChanctlError, ExitCode

from .options import build_settings, parse_argv


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = build_settings(parse_argv(argv))
        from .server import run  # aiohttp is imported only once the flags are known to be good

        return run(settings)
    except ChanctlError as exc:
        print(f"chanctl daemon: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"chanctl daemon: hint: {exc.hint}", file=sys.stderr)
        return int(exc.exit_code) or int(ExitCode.ERROR)
    except Exception:
        # Through logging, so the traceback lands in the log as one escaped record.
        logging.getLogger("chanctl.daemon").exception("the daemon failed")
        return int(ExitCode.ERROR)


if __name__ == "__main__":
    sys.exit(main())
