"""``run_job``: everything ``chanctl run`` does, in order (README "Steering and wrapping jobs").

1. Attach as the channel's producer (refused while another run is alive, unless takeover) and
   get this run's producer epoch; make sure both lanes exist and the channel is open.
2. Block the handled signals, become a subreaper, start the job in its own process group,
   and its group guard (which ends the group should the wrapper be killed).
3. Start the threads: pump (pipes -> spool), publisher (spool -> daemon), steering (control
   lane -> job), heartbeat. The main thread supervises: signals, reaping, stop deadlines.
4. When the job is gone: stop obeying steering, append ``exit`` and the answers to ``stop``,
   close the channel, wait for the publisher to deliver everything, detach.

Exit status: the job's code, 128+N when a signal N killed it, 125 when chanctl failed before
the job started or could not deliver its output, 126/127 from the exec shim.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import _core as core
from .. import errors as ce
from .. import paths
from .. import protocol as p
from ..client import Client
from ..transport import Transport
from .cilog import LogGroup, in_ci, log_group
from .control import Steering
from .job import Job
from .publisher import Publisher
from .pump import Pump
from .session import Session
from .spawn import (
    Child,
    exit_code,
    set_child_subreaper,
    signal_name,
    spawn,
    start_guard,
    stop_guard,
)
from .spool import Spool
from .supervisor import block_signals, supervise

ClientFactory = Callable[[float], Client]  # reconnect_timeout -> a client of the daemon


@dataclass(frozen=True)
class RunOptions:
    channel: str
    argv: list[str]
    takeover: bool = False
    close: bool = True
    quiet: bool = False
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 10.0
    heartbeat: float = 4.0  # the daemon reports the run lost after 3 missed beats
    flush_timeout: float = 60.0  # how long to wait for an absent daemon once the job is done


def warn(text: str) -> None:
    sys.stderr.write(f"chanctl run: {text}\n")
    sys.stderr.flush()


def run_job(opts: RunOptions, make_client: ClientFactory) -> int:
    """Run the job under the channel; return the exit status ``chanctl run`` exits with."""
    run = _Run(opts, make_client)
    child = run.start()
    status = supervise(child, run.job, run.pump)
    return run.finish(status)


class _Run:
    def __init__(self, opts: RunOptions, make_client: ClientFactory) -> None:
        self.opts = opts
        self.run_id = os.urandom(8).hex()
        self.ctl = make_client(math.inf)  # steering reads: wait out any daemon restart
        self.session = Session(make_client(2.0), opts.channel, self.run_id, opts.heartbeat, warn)
        _prepare_lanes(self.ctl, opts.channel)
        self.epoch = self.session.attach(opts.takeover)
        saved = self.ctl.get_cursor(opts.channel, p.PRODUCER_CURSOR, lane=p.LANE_CONTROL)
        self.start_offset = saved or p.format_offset(0)
        self.spool = Spool(paths.state_dir() / "spool")
        self.publisher = Publisher(make_client(2.0), opts.channel, self.epoch, self.spool)
        self.publisher.close_channel = opts.close
        self.group: LogGroup | None = None

    def start(self) -> Child:
        opts = self.opts
        block_signals()  # before any thread or child exists: both inherit the mask
        set_child_subreaper()
        env = {
            **os.environ,
            "CHANCTL_CHANNEL": opts.channel,
            "CHANCTL_URL": self.ctl.endpoint.url,
            "CHANCTL_RUN_ID": self.run_id,
            "CHANCTL_CONTROL_FROM": self.start_offset,  # where `chanctl recv` starts for it
        }
        self._announce_ci()
        child = spawn(opts.argv, env)
        self.guard = start_guard(child.pid)  # ends the whole group if the wrapper is killed
        self.began = time.monotonic()
        self.publisher.post(p.TYPE_START, self._start_data(child.pid))
        post_ack = lambda ack: self.publisher.post(p.TYPE_ACK, ack.to_data())  # noqa: E731
        self.job = Job(child, post_ack, opts.stop_signal, opts.stop_timeout)
        self.steering = Steering(
            self.ctl, opts.channel, self.start_offset, self.run_id, self.job, warn
        )
        self.pump = Pump(child, self.spool, echo=not opts.quiet)
        for thread in (self.publisher, self.pump, self.steering, self.session):
            thread.start()
        return child

    def _announce_ci(self) -> None:
        """In CI, say where the live log is (the job log is only complete at the end) and
        fold the job's echoed output into one group."""
        if self.opts.quiet or not in_ci(os.environ):
            return
        warn(f"streaming to channel {self.opts.channel!r}: chanctl tail {self.opts.channel}")
        self.group = log_group(os.environ, self.opts.channel, self.opts.argv)
        if self.group is not None:
            _write_out(self.group.begin())

    def _start_data(self, pid: int) -> str:
        doc = {
            "argv": self.opts.argv,
            "pid": pid,
            "host": socket.gethostname(),
            "cwd": os.getcwd(),
            "run_id": self.run_id,
            "epoch": self.epoch,
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))

    def finish(self, status: int) -> int:
        self.steering.close()  # from now on steering waits for the next run
        if self.group is not None:  # the pump is done: nothing of the job's follows
            _write_out((b"\n" if self.pump.line_open else b"") + self.group.end())
        stop_guard(self.guard)  # the job's group is empty
        code = exit_code(status)
        headers = {"duration_s": f"{time.monotonic() - self.began:.3f}", "run_id": self.run_id}
        killed_by = signal_name(status)
        if killed_by:
            headers["signal"] = killed_by
        self.publisher.post(p.TYPE_EXIT, str(code), headers)
        self.job.finished(f"exited {code}" + (f" ({killed_by})" if killed_by else ""))
        self.spool.close()
        delivered = self.publisher.finish(self.opts.flush_timeout)
        self.session.detach(code)
        return self._verdict(code, delivered)

    def _verdict(self, code: int, delivered: bool) -> int:
        spool = self.spool
        if spool.dropped_records:
            warn(
                f"dropped {spool.dropped_records} output chunks ({spool.dropped_bytes} bytes): "
                "the spool was full while the daemon was away"
            )
        if self.publisher.fenced or self.session.fenced:
            warn("fenced by a newer run (--takeover): later output of this run was not recorded")
            return code
        if not delivered:
            error = self.publisher.error
            warn(f"the channel is missing output: {error.message if error else 'unknown'}")
            return int(ce.ExitCode.RUN_FAILED)
        return code


def _write_out(data: bytes) -> None:
    """Straight to fd 1, the descriptor the pump echoes the job's stdout to."""
    sys.stdout.flush()
    try:
        os.write(1, data)
    except OSError:
        pass  # nobody reads our stdout: the markers are only for a reader


def _prepare_lanes(client: Client, channel: str) -> None:
    """Create both lanes if needed (the control lane now, so the steering long-poll starts at
    once); refuse a closed channel."""
    transport = Transport(client.endpoint)
    try:
        head = client.send_via(transport, core.head_request(channel))
        if head.status == 404:
            head = client.send_via(transport, core.create_request(channel))
        core.check(head, channel, "create")
        if p.is_true(head.header(p.H_CLOSED)):
            raise ce.RunFailed(
                f"channel {channel!r} is closed: a run cannot append to it",
                hint=f"delete it first (`chanctl rm -f {channel}`), or use another name",
            )
        lane = client.send_via(transport, core.create_request(channel, p.LANE_CONTROL))
        core.check(lane, channel, "create the control lane of")
    finally:
        transport.close()
