"""The main thread of ``run``: signals in, the job's exit out.

The wrapper blocks the signals it handles before it starts any thread or the job (threads
inherit the mask, and the exec shim clears it for the job), then takes them one at a time with
``sigtimedwait``. That makes forwarding exact: each TERM, INT, HUP, USR1, USR2 or WINCH the
wrapper receives is sent to the job's process group once, from one place, with no handler
racing a thread. SIGCHLD drives reaping: as ``PR_SET_CHILD_SUBREAPER`` the wrapper also inherits
the job's orphans and reaps every one of them, so none lingers as a zombie (W5).

The run is over when the job has exited, its pipes are closed (nothing can write output any
more) and its process group is empty.
"""

from __future__ import annotations

import os
import signal
import time

from .job import Job
from .pump import Pump
from .spawn import Child

FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
HANDLED = frozenset({*FORWARDED, signal.SIGCHLD})
AFTER_EXIT_POLL_S = 0.02  # waiting for the pipes and the group to empty: a short bounded poll


def block_signals() -> None:
    """Call before any thread or child exists: from now on signals wait for ``supervise``."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)


def supervise(child: Child, job: Job, pump: Pump) -> int:
    """Forward signals, reap, enforce the stop deadline; return the job's wait status."""
    status: int | None = None
    interrupts = 0
    while True:
        now = time.monotonic()
        job.kill_if_due(now)
        if status is not None and pump.done.is_set() and not child.group.alive():
            return status
        info = signal.sigtimedwait(HANDLED, _timeout(status, job, now))
        if info is None:
            continue
        if info.si_signo == signal.SIGCHLD:
            status = _reap(child, status)
            continue
        if info.si_signo == signal.SIGINT:
            interrupts += 1
        # A second Ctrl-C means "now": SIGKILL, as cli.md promises; anything else is passed on.
        job.forward(signal.SIGKILL if interrupts >= 2 else info.si_signo)


def _timeout(status: int | None, job: Job, now: float) -> float:
    if status is not None:
        return AFTER_EXIT_POLL_S
    if job.kill_at is not None:
        return max(0.0, job.kill_at - now)
    return 1.0


def _reap(child: Child, status: int | None) -> int | None:
    """Collect every child that has exited (the job, and any orphan we inherited)."""
    while True:
        try:
            with child.group.reaping():  # never between a group signal's check and its send
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == child.pid:
            status = wait_status
            child.proc.returncode = os.waitstatus_to_exitcode(wait_status)  # Popen: it is done
