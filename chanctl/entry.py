"""The ``chanctl`` console script: a fast path for `pub`, the full Typer CLI for the rest.

`chanctl pub NAME MSG` runs inside shell loops, and importing typer (with pydantic, in typer
0.29) costs more than the whole 8x-`python -c pass` budget of such a call. So the common `pub`
forms are parsed by ``commands._pub_run.parse_fast`` and run without importing typer at all;
anything it does not recognise (``--help``, unknown flags, global flags) goes to ``chanctl.cli``,
which ends in the same ``run_pub``.
"""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["pub"]:
        from .commands._pub_run import parse_fast

        args = parse_fast(argv[1:])
        if args is not None:
            _run_pub_fast(args)
    if argv[:1] == ["send"]:  # the same for `send` (README "Steering and wrapping jobs")
        from .commands._send_run import parse_fast as parse_send

        send_args = parse_send(argv[1:])
        if send_args is not None:
            _run_pub_fast(send_args)
    from .cli import main as cli_main

    cli_main()


def _run_pub_fast(args: object) -> None:
    from .commands._common import report, streaming_output
    from .commands._pub_run import PubArgs, run_pub
    from .errors import ChanctlError

    try:
        with streaming_output():
            if isinstance(args, PubArgs):
                run_pub(args)
            else:
                from .commands._send_run import SendArgs, run_send

                assert isinstance(args, SendArgs)
                run_send(args)
    except ChanctlError as exc:
        report(exc)
    except Exception as exc:  # a bug: same wording as chanctl.cli
        report(
            ChanctlError(
                f"unexpected {exc.__class__.__name__}: {exc}",
                hint="this is a bug in chanctl; rerun with --debug and report the traceback",
            )
        )
    sys.exit(0)


if __name__ == "__main__":  # `python -m chanctl.entry ...` is exactly the console script
    main()
