"""Starting the job: its own process group, pipes for its output and stdin, and a death signal.

The child is started through a tiny exec shim (a few lines of Python run with ``-I -S``), not a
``preexec_fn``: the wrapper runs threads, and forking a threaded process and running Python
code before ``exec`` can deadlock on a lock another thread held. The shim, already a fresh
process, asks the kernel for ``PR_SET_PDEATHSIG`` (so the job gets SIGTERM if the wrapper dies,
even by SIGKILL), checks that the wrapper did not die before it asked, unblocks the signals the
wrapper blocks for itself, restores the dispositions Python changed (SIGPIPE), and ``exec``s the
command; the job keeps the shim's pid. It reports "not found" as 127 and "cannot execute" as
126, like a shell. The death signal reaches the job's leader only, so a *group guard* (below)
covers the rest of the job's process group.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .jobgroup import JobGroup, read_stat

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
F_SETPIPE_SZ = 1031
PIPE_BYTES = 1 << 20  # a 1 MiB pipe gives the reader ~50 ms of slack at 20 MB/s
DEATH_SIGNAL = signal.SIGTERM

_SHIM = r"""
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, int(sys.argv[1]), 0, 0, 0)
if os.getppid() != int(sys.argv[2]):
    os._exit(125)
for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
    signal.signal(s, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_SETMASK, [])
argv = sys.argv[3:]
try:
    os.execvp(argv[0], argv)
except FileNotFoundError:
    os.write(2, b"chanctl run: " + os.fsencode(argv[0]) + b": command not found\n")
    os._exit(127)
except OSError as exc:
    os.write(2, b"chanctl run: " + os.fsencode(argv[0]) + b": " + exc.strerror.encode() + b"\n")
    os._exit(126)
"""


# The group guard: a second tiny process, outside the job's group, that outlives a killed
# wrapper just long enough to end the *whole* group (the death signal reaches the job's leader
# only; a shell script's own children would live on). It sleeps until the wrapper dies, then
# SIGTERMs the group and SIGKILLs what is left after GUARD_GRACE seconds. At a normal end the
# wrapper SIGKILLs it. Like the wrapper (``jobgroup``), it never signals a group id that may
# have been recycled: it takes the processes of the group that started after the job's leader,
# pins each with a pidfd, checks it again and signals it through the pidfd; nobody at all if
# the leader's pid now belongs to a process with another start time. (With the wrapper gone it
# cannot check that they descend from it.)
GUARD_GRACE = 1.5
_GUARD = r"""
import ctypes, os, signal, sys, time
pgid, parent, start = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
grace = float(sys.argv[4])
signal.signal(signal.SIGTERM, lambda *_: None)
ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
signal.pthread_sigmask(signal.SIG_SETMASK, [])
if os.getppid() == parent:
    signal.pause()

def stat(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        fields = raw[raw.rfind(b")") + 2 :].split()
        return fields[0], int(fields[2]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None

def sweep(signum, done):
    holder = stat(pgid)
    if holder is not None and holder[2] != start:
        return 0
    left = 0
    for name in os.listdir("/proc"):
        seen = stat(name) if name.isdigit() else None
        if seen is None or seen[0] == b"Z" or seen[1] != pgid or seen[2] < start:
            continue
        try:
            fd = os.pidfd_open(int(name))
        except OSError:
            continue
        try:
            if stat(name) == seen:
                left += 1
                if signum and (name, seen[2]) not in done:
                    done.add((name, seen[2]))
                    signal.pidfd_send_signal(fd, signum)
        except OSError:
            pass
        finally:
            os.close(fd)
    return left

end = time.monotonic() + grace
termed, killed = set(), set()
while sweep(signal.SIGTERM, termed) and time.monotonic() < end:
    time.sleep(0.05)
for _ in range(3):
    if not sweep(signal.SIGKILL, killed):
        break
    time.sleep(0.05)
"""


def start_guard(pgid: int) -> subprocess.Popen[bytes]:
    """Start the group guard of the job whose process group is ``pgid`` (its unreaped leader)."""
    leader = read_stat(pgid)
    born = str(leader.start if leader is not None else 0)
    argv = [sys.executable, "-I", "-S", "-c", _GUARD, str(pgid), str(os.getpid()), born]
    return subprocess.Popen(
        [*argv, str(GUARD_GRACE)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        process_group=0,  # its own: not part of the job, out of reach of the terminal's ^C
        close_fds=True,
    )


def stop_guard(guard: subprocess.Popen[bytes]) -> None:
    """The run ended normally: the guard has nothing left to do."""
    try:
        guard.kill()
        guard.wait(5)  # reaped here: the supervisor's reaping has ended
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass


@dataclass
class Child:
    """The running job: its pid (also its process group id), the wrapper's pipe ends, and
    its group as the wrapper may signal it (``jobgroup``: never a recycled pid)."""

    proc: subprocess.Popen[bytes]
    stdout: int
    stderr: int
    stdin: int
    group: JobGroup

    @property
    def pid(self) -> int:
        return self.proc.pid


def set_child_subreaper() -> bool:
    """Become the reaper of orphaned descendants (Linux); False where not supported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def spawn(argv: Sequence[str], env: Mapping[str, str], cwd: str | None = None) -> Child:
    """Start ``argv`` in a new process group with piped stdin, stdout and stderr."""
    shim = [sys.executable, "-I", "-S", "-c", _SHIM, str(int(DEATH_SIGNAL)), str(os.getpid())]
    proc = subprocess.Popen(
        [*shim, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        process_group=0,  # its own group: stop and forwarded signals reach all of the job
        close_fds=True,
    )
    group = JobGroup(proc.pid)  # its pidfd, before anything can reap it
    fds: list[int] = []
    for pipe in (proc.stdout, proc.stderr, proc.stdin):
        assert pipe is not None
        fds.append(os.dup(pipe.fileno()))  # ours to close; Popen's file objects go now
        pipe.close()
    for fd in fds:
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size: keep the default 64 KiB
    return Child(proc, fds[0], fds[1], fds[2], group)


def exit_code(status: int) -> int:
    """A wait status as the shell reports it: the exit code, or 128+N when killed by N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def signal_name(status: int) -> str | None:
    """``SIGTERM`` and so on when the wait status says the process was killed by a signal."""
    if not os.WIFSIGNALED(status):
        return None
    try:
        return signal.Signals(os.WTERMSIG(status)).name
    except ValueError:
        return f"SIG{os.WTERMSIG(status)}"
