"""Failure reports for crash tests, as etcd's robustness suite keeps them.

A crash test that fails has usually destroyed its evidence by the time pytest prints: the daemon
restarted, the data directory was rewritten by recovery, the seed scrolled away. ``Report``
copies what is needed to study (and replay by hand) one failed round into a directory whose
path goes into the assertion message: the data directory as it is now, the daemon log, the
client-side history as JSON, the seed, the failpoint spec and the daemon flags.
"""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .daemonproc import DaemonProc
from .history import History


@dataclass
class Report:
    dest: Path  # where the report directory goes (created only on failure)
    daemon: DaemonProc
    seed: int
    history: History | None = None
    failpoints: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def save(self, problems: list[str]) -> Path:
        """Write the report directory and return its path."""
        dest = self.dest
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        d = self.daemon
        if d.data_dir.is_dir():
            shutil.copytree(d.data_dir, dest / "data", symlinks=True, ignore=_sockets)
        if d.log.exists():
            shutil.copy(d.log, dest / "daemon.log")
        if self.history is not None:
            ops = [asdict(op) for op in self.history.ops]
            (dest / "history.json").write_text(json.dumps(ops, indent=0))
        info = {
            "seed": self.seed,
            "failpoints": self.failpoints,
            "fsync": d.fsync,
            "extra_args": list(d.extra_args),
            "notes": self.notes,
            "problems": problems,
        }
        (dest / "report.json").write_text(json.dumps(info, indent=2, default=str))
        return dest

    def expect(self, problems: list[str]) -> None:
        """Fail with the report path when ``problems`` is not empty."""
        if problems:
            path = self.save(problems)
            raise AssertionError(
                f"seed {self.seed} {self.failpoints}: {len(problems)} problem(s), report saved "
                f"in {path}: {problems[:20]}"
            )

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Save the report when anything in the block fails (a daemon that would not start, a
        failed assert), and point the error message at it."""
        try:
            yield
        except Exception as exc:
            if not self.dest.exists():
                self.save([repr(exc)])
            exc.add_note(f"crash report (seed {self.seed}) saved in {self.dest}")
            raise


def _sockets(directory: str, names: list[str]) -> list[str]:
    """copytree cannot copy sockets; the report does not need them."""
    return [n for n in names if stat.S_ISSOCK(Path(directory, n).lstat().st_mode)]
