"""How a client rides out a daemon that is briefly away: one policy for both clients.

``Client`` (threads, ``time.sleep``) and ``AsyncClient`` (``asyncio.sleep``) run the same
small loop: send, hand the outcome to ``Reconnect.step``, then either return what it gives
back or sleep as long as it says. The decision itself is ``decide``, a pure function of the
attempt number, the time since the first failure and the outcome, so the two clients cannot
drift apart and the schedule is tested without a daemon or a clock.

The policy: a dropped connection, nothing listening (once this client has reached the daemon;
the first contact may auto-start it instead) or a 503 is retried after 0.05 s, 0.1 s, 0.2 s...
doubling up to 1 s, with no jitter (one client per process talks to one local daemon: there
is no herd to spread out). From the first failure on, a request gets ``reconnect_timeout``
seconds: after that a transport failure becomes ``ConnectionLost`` and a 503 is handed back
for the caller to report. Every other answer is final at once. Retrying is always safe:
appends carry idempotent-producer headers and every other request is read-only or
idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from . import errors as ce
from ._core import retry_later
from .transport import Response

FIRST_DELAY = 0.05  # seconds before the first retry; a restarting daemon is back in ~0.1-0.5 s
MAX_DELAY = 1.0  # the slowest retry rate: a returning daemon is noticed within a second
LOST_HINT = "check `chanctl daemon status`; restart it with `chanctl daemon start`"


@dataclass(frozen=True, slots=True)
class Retry:
    """Send the same request again after ``delay`` seconds."""

    delay: float


def backoff_delay(attempt: int, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> float:
    """The pause before retry ``attempt`` (0-based): ``first`` doubled each time, at most
    ``cap``. The exponent is bounded so a request retried for hours cannot overflow a float."""
    return min(first * 2.0 ** min(attempt, 64), cap)


def decide(
    attempt: int,
    elapsed: float,
    outcome: Response | Exception,
    reconnect_timeout: float,
    url: str,
) -> Response | Retry:
    """What to do after one try of a request.

    ``attempt`` counts the failed tries before this one, ``elapsed`` is the time since the
    first of them (0 for the first), ``outcome`` the answer or the transport failure
    (``transport.Unreachable`` or ``Dropped``). Returns the answer to deliver, or ``Retry``;
    raises ``ConnectionLost`` when the daemon stayed away too long.
    """
    if isinstance(outcome, Response) and not retry_later(outcome):
        return outcome
    if elapsed < reconnect_timeout:
        return Retry(backoff_delay(attempt))
    if isinstance(outcome, Response):
        return outcome  # a 503 after the deadline: the caller reports the daemon's refusal
    raise ce.ConnectionLost(f"lost the daemon at {url}: {outcome}", hint=LOST_HINT)


class Reconnect:
    """The retry state of one request: how many tries failed, and since when.

    ``clock`` is injectable so tests can drive the deadline; the clients use the default.
    """

    def __init__(
        self,
        reconnect_timeout: float,
        url: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reconnect_timeout = reconnect_timeout
        self.url = url
        self._clock = clock
        self._attempt = 0
        self._first_failure: float | None = None

    def step(self, outcome: Response | Exception) -> Response | Retry:
        """Judge one try (see ``decide``); failures start and feed the retry budget."""
        if isinstance(outcome, Response) and not retry_later(outcome):
            return outcome
        now = self._clock()
        if self._first_failure is None:
            self._first_failure = now
        attempt, self._attempt = self._attempt, self._attempt + 1
        elapsed = now - self._first_failure
        return decide(attempt, elapsed, outcome, self.reconnect_timeout, self.url)
