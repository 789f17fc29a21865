"""The reconnect policy both clients share (``chanctl._reconnect``), without a daemon: which
outcomes are retried, the back-off schedule, and when a request gives up and with what. The
clock is injected, so every case is exact; tests/client/test_async_steering.py and the CLI's
restart tests prove the same policy against real daemons."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chanctl._reconnect import MAX_DELAY, Reconnect, Retry, backoff_delay, decide
from chanctl.errors import ConnectionLost
from chanctl.transport import Dropped, Response, Unreachable

URL = "unix:///run/x/chanctl.sock"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def answer(status: int) -> Response:
    return Response(status, {"Retry-After": "1"} if status == 503 else {}, b"")


def test_the_schedule_doubles_from_50_ms_to_1_s_for_every_retried_outcome() -> None:
    for outcome in (Dropped("reset"), Unreachable("refused"), answer(503)):
        retries = Reconnect(60.0, URL, Clock())
        delays = [retries.step(outcome) for _ in range(8)]
        assert delays == [Retry(d) for d in (0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0)]


def test_every_other_answer_is_final_at_once_and_spends_no_budget() -> None:
    clock = Clock()
    retries = Reconnect(5.0, URL, clock)
    for status in (200, 204, 304, 404, 409, 410, 413, 500, 502, 504):
        resp = answer(status)
        assert retries.step(resp) is resp
        clock.now += 100.0  # final answers never start the reconnect deadline
    assert retries.step(Dropped("reset")) == Retry(0.05), "the first failure starts afresh"


def test_a_transport_failure_gives_up_with_connection_lost_at_the_deadline() -> None:
    clock = Clock()
    retries = Reconnect(2.0, URL, clock)
    clock.now += 50.0  # the budget runs from the first failure, not from the request
    assert retries.step(Unreachable("refused")) == Retry(0.05)
    clock.now += 1.999
    assert retries.step(Dropped("reset")) == Retry(0.1)
    clock.now += 0.001
    with pytest.raises(ConnectionLost) as lost:
        retries.step(Dropped("connection reset by peer"))
    assert lost.value.message == f"lost the daemon at {URL}: connection reset by peer"
    assert lost.value.hint is not None and "chanctl daemon status" in lost.value.hint


def test_a_503_after_the_deadline_is_handed_back_for_the_caller_to_report() -> None:
    clock = Clock()
    retries = Reconnect(1.0, URL, clock)
    refused = answer(503)
    assert retries.step(refused) == Retry(0.05)
    clock.now += 1.0
    assert retries.step(refused) is refused
    # A transport failure after a run of 503s shares their deadline.
    with pytest.raises(ConnectionLost):
        retries.step(Dropped("gone"))


def test_a_zero_budget_gives_up_on_the_first_failure() -> None:
    with pytest.raises(ConnectionLost):
        Reconnect(0.0, URL, Clock()).step(Unreachable("no socket"))
    refused = answer(503)
    assert Reconnect(0.0, URL, Clock()).step(refused) is refused


def test_backoff_never_overflows_and_custom_caps_hold() -> None:
    assert backoff_delay(10**9) == MAX_DELAY
    assert [backoff_delay(n, cap=0.5) for n in range(5)] == [0.05, 0.1, 0.2, 0.4, 0.5]


@given(
    attempts=st.lists(
        st.tuples(st.floats(0, 3, allow_nan=False), st.sampled_from([0, 503])), max_size=40
    ),
    budget=st.floats(0, 30, allow_nan=False),
)
def test_decide_retries_exactly_within_the_budget(
    attempts: list[tuple[float, int]], budget: float
) -> None:
    """For any run of failures: a pause in [50 ms, 1 s] that never shrinks while time is
    left, and an end (ConnectionLost or the 503) exactly once the budget is spent."""
    elapsed, last = 0.0, 0.0
    for attempt, (pause, status) in enumerate(attempts):
        outcome: Response | Exception = answer(503) if status else Dropped("x")
        if elapsed >= budget:
            if status:
                assert decide(attempt, elapsed, outcome, budget, URL) is outcome
            else:
                with pytest.raises(ConnectionLost):
                    decide(attempt, elapsed, outcome, budget, URL)
            return
        step = decide(attempt, elapsed, outcome, budget, URL)
        assert isinstance(step, Retry) and 0.05 <= step.delay <= MAX_DELAY
        assert step.delay >= last
        last = step.delay
        elapsed += pause + step.delay
