"""The steering commands ``run`` obeys, parsed against a fixed schema and never given to a shell.

A ``steer`` message on the control lane holds ``VERB`` or ``VERB ARG`` as text, or the JSON
object ``{"cmd": VERB, "arg": ARG, "run_id": RUN}``; a ``run_id`` (also accepted as a message
header) addresses one run, and other runs ignore the message. Verbs:

==========  =============================================================================
``stop``    the stop signal (``--stop-signal``) to the job's process group, SIGKILL after
            ``--stop-timeout``; acknowledged once the job has exited
``kill``    SIGKILL to the group; acknowledged once the job has exited
``signal``  ``signal NAME`` (``USR1``, ``SIGHUP``, ``15``) to the group
``pause``   SIGSTOP to the group; ``resume``: SIGCONT
``stdin``   ``stdin TEXT``: TEXT and a newline to the job's stdin, byte for byte
``eof``     close the job's stdin
==========  =============================================================================

Messages of any other type are the job's business (it reads them with ``chanctl recv``).
Anything else that claims to be steering is malformed: the wrapper warns once and ignores it.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from .. import protocol as p

MAX_COMMAND_BYTES = 256
MAX_STDIN_BYTES = 64 * 1024
_NO_ARG = frozenset({"stop", "kill", "pause", "resume", "eof"})
VERBS = _NO_ARG | {"signal", "stdin"}


class Malformed(ValueError):
    """A steering message the schema does not allow; the text says why."""


@dataclass(frozen=True)
class Command:
    verb: str
    signum: int | None = None  # for ``signal``
    payload: bytes = b""  # for ``stdin``


def parse(msg: p.Message, run_id: str) -> Command | None:
    """The command in ``msg``; None when the message is not for the wrapper."""
    if msg.type == p.TYPE_FOREIGN:
        raise Malformed("not a chanctl message (expected {'type': 'steer', 'data': ...})")
    if msg.type != p.TYPE_STEER:
        return None
    data = msg.data
    target = (msg.headers or {}).get("run_id")
    if data[:1] == b"{":
        verb, arg, target = _from_json(data, target)
    else:
        raw_verb, sep, raw_arg = data.partition(b" ")
        verb, arg = _word(raw_verb), (raw_arg if sep else None)
    if target is not None and target != run_id:
        raise Malformed(f"addressed to run {target!r}, not this one")
    return _check(verb, arg, len(data))


def _word(raw: bytes) -> str:
    text = raw.rstrip(b"\r\n").decode("ascii", errors="replace")
    if text not in VERBS:
        raise Malformed(f"unknown command {text[:40]!r}; use one of {', '.join(sorted(VERBS))}")
    return text


def _from_json(data: bytes, target: str | None) -> tuple[str, bytes | None, str | None]:
    try:
        doc = p.loads_json(data)
    except ValueError as exc:
        raise Malformed(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cmd"), str):
        raise Malformed('a JSON command needs a string "cmd"')
    arg = doc.get("arg")
    if arg is not None and not isinstance(arg, str):
        raise Malformed('"arg" must be a string')
    run = doc.get("run_id", target)
    if run is not None and not isinstance(run, str):
        raise Malformed('"run_id" must be a string')
    return _word(_utf8(doc["cmd"])), None if arg is None else _utf8(arg), run


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate escape such as "\\ud800"
        raise Malformed("the command is not valid Unicode") from None


def _check(verb: str, arg: bytes | None, size: int) -> Command:
    if verb == "stdin":
        if arg is None:
            raise Malformed("stdin needs the text to send: 'stdin TEXT'")
        if len(arg) > MAX_STDIN_BYTES:
            raise Malformed(f"stdin text is {len(arg)} bytes; at most {MAX_STDIN_BYTES}")
        return Command(verb, payload=arg)
    if size > MAX_COMMAND_BYTES:
        raise Malformed(f"command is {size} bytes; at most {MAX_COMMAND_BYTES}")
    if verb == "signal":
        if not arg:
            raise Malformed("signal needs a signal name or number: 'signal USR1'")
        return Command(verb, signum=_signal_number(arg.decode("ascii", errors="replace")))
    if arg is not None and arg.strip(b"\r\n"):
        raise Malformed(f"{verb} takes no argument")
    return Command(verb)


def _signal_number(text: str) -> int:
    text = text.strip()
    try:
        if text.isdigit():
            return int(signal.Signals(int(text)))
        return int(signal.Signals["SIG" + text.upper().removeprefix("SIG")])
    except (KeyError, ValueError):
        raise Malformed(f"unknown signal {text[:20]!r}") from None
