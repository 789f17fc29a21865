"""The ``chanctl`` command line: parse, call the library, render; errors converted here once.

Start-up time is a feature (agents call chanctl in loops, and every shell Tab re-runs it), so
this module imports only typer and the standard library at module level. Anything heavier
(http.client, the daemon package, aiohttp, rich) is imported inside the command that needs it.
``tests/test_cli_startup.py`` keeps it that way.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from . import __version__, service_cli
from .commands import register as register_channel_commands
from .commands._common import Globals
from .daemon_cli import daemon_app
from .errors import ChanctlError, ExitCode, UsageError

COMPLETION_SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_CHANCTL_COMPLETE"

app = typer.Typer(
    name="chanctl",
    help="Durable, named channels for long-running processes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,  # locals can hold tokens
    # Plain help: rendering it with rich costs ~80 ms of imports on every `--help` and Tab.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(daemon_app, name="daemon")  # start, stop, status (chanctl/daemon_cli.py)
register_channel_commands(app)  # pub, tail, replay, ls, info, close, rm (chanctl/commands/)
app.command("doctor")(service_cli.doctor)  # and daemon install, uninstall, logs


class _Flags:
    """Global flags set by the root callback and read by the error handler in ``main``."""

    debug = False


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"chanctl {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when something fails.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option("--url", metavar="URL", help="Daemon address (env CHANCTL_URL)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Less output on stderr.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="More output.")] = False,
) -> None:
    _Flags.debug = debug
    Globals.url, Globals.quiet, Globals.verbose, Globals.debug = url, quiet, verbose, debug


@app.command("completions", hidden=True)
def completions(shell: Annotated[str, typer.Argument(help="bash, zsh or fish.")]) -> None:
    """Print the shell completion script (a shim that calls back into chanctl on Tab)."""
    if shell not in COMPLETION_SHELLS:
        raise UsageError(
            f"unsupported shell {shell!r}", hint=f"use one of {', '.join(COMPLETION_SHELLS)}"
        )
    from typer._completion_shared import get_completion_script

    script = get_completion_script(prog_name="chanctl", complete_var=COMPLETE_VAR, shell=shell)
    sys.stdout.write(script + "\n")


def _report(exc: ChanctlError) -> NoReturn:
    """The single place where a chanctl error becomes text on stderr and an exit code."""
    if _Flags.debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write(f"error: {exc.message}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")
    sys.exit(int(exc.exit_code))


def main() -> None:
    """Console-script entry point (``chanctl``)."""
    try:
        app(prog_name="chanctl")
    except ChanctlError as exc:
        _report(exc)
    except Exception as exc:  # a bug: say so briefly, the traceback is one flag away
        if _Flags.debug:
            raise
        bug = ChanctlError(
            f"unexpected {exc.__class__.__name__}: {exc}",
            hint="this is a bug in chanctl; rerun with --debug and report the traceback",
        )
        _report(bug)
    sys.exit(int(ExitCode.OK))


if __name__ == "__main__":
    main()
