"""C3 and C8 of reliability.md: simulated power loss (CrashFS, §5.1 L2), engine level.

A concurrent workload runs on a LocalStore whose Disk records every mutation; crash states are
then built from trace prefixes (unsynced writes dropped, kept as a prefix or a random subset,
torn at 512 B / 4 KiB, zero- or garbage-extended; un-fsynced directory entries undone) and each
distinct one is recovered by the real engine and CHECKed. Guards against acks issued before the
fsync of the data or of the directory entry of a new channel or segment, against recovery
serving torn or garbage bytes, against holes in the survivors of a lazy fsync mode, and against
a metadata replacement that leaves neither the old nor the new version.

Reproduce a failure with the seed it prints: ``CHANCTL_CRASHFS_SEED=<seed> pytest -s ...``
(the workload is concurrent, so the trace may still differ; the failing state's directory is
kept under pytest's tmp_path and its path printed).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from .crashfs import DIR_VARIANTS, FILE_VARIANTS, CrashModel, tree_key, write_tree
from .crashload import Run, Verdict, check_state, history_key, record, record_c8
from .tiers import scale

_SEED = int(os.environ.get("CHANCTL_CRASHFS_SEED") or random.randrange(1 << 30))


@dataclass
class Stats:
    generated: int = 0
    checked: int = 0  # distinct (state, client history) pairs recovered and CHECKed
    damaged: int = 0  # states that lost or changed something the process had written
    torn: int = 0
    extended: int = 0
    dirs_undone: int = 0  # states where some directory lost un-fsynced entries
    messages: int = 0  # messages recovered, over all states
    with_loss: int = 0  # lazy mode: states that lost acknowledged messages
    max_loss: int = 0
    max_window_s: float = 0.0
    max_sync_lag_s: float = 0.0  # longest time from an ack to the fsync covering it


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """Where the workload and the crash states live: tmpfs when there is one, so the fsyncs
    recovery performs on each state cost nothing."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else str(tmp_path)
    path = Path(tempfile.mkdtemp(prefix="chanctl-crashfs-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def explore(
    run: Run,
    points: list[int],
    variants: list[tuple[str, str]] | int,
    seed: int,
    scratch: Path,
    keep: Path,
) -> Stats:
    """Materialize ``variants`` crash states at each point, recover and CHECK each distinct one;
    fails on the first state with problems, naming the seed and the state."""
    model = CrashModel(run.disk.trace)
    rng = random.Random(seed)
    seen: set[bytes] = set()
    st = Stats()
    for point in points:
        model.advance(point)
        seen_by_clients = repr(history_key(run, point)).encode()
        combos = variants if isinstance(variants, list) else _combos(variants, rng)
        for files, dirs in combos:
            state_seed = rng.randrange(1 << 32)
            tree, damage = model.materialize(random.Random(state_seed), files, dirs)
            st.generated += 1
            key = tree_key(tree) + seen_by_clients
            if key in seen:
                continue
            seen.add(key)
            dest = scratch / f"state-{st.checked}"
            write_tree(str(dest), tree)
            try:
                verdict = await check_state(run, point, dest)
            except Exception as exc:  # recovery refusing a crash state is a failure too
                verdict = Verdict([f"recovery raised {exc!r}"])
            if verdict.problems:
                shutil.copytree(dest, keep / dest.name)
                pytest.fail(
                    f"CHANCTL_CRASHFS_SEED={_SEED} (round seed {seed}) fsync={run.fsync}"
                    f" crash before op {point}/{len(run.disk.trace)} files={files}"
                    f" dirs={dirs} state_seed={state_seed} (state kept at {keep / dest.name}):"
                    f" {verdict.problems[:8]}"
                )
            shutil.rmtree(dest)
            st.checked += 1
            st.damaged += damage.any
            st.torn += damage.torn > 0
            st.extended += damage.extended > 0
            st.dirs_undone += damage.dirs_changed > 0
            st.messages += verdict.messages
            st.with_loss += bool(verdict.lost)
            st.max_loss = max(st.max_loss, len(verdict.lost))
            st.max_window_s = max(st.max_window_s, verdict.window_s)
    return st


def _combos(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """Per crash point: everything unsynced lost, everything kept, then random variants."""
    files, dirs = (*FILE_VARIANTS, "mixed"), (*DIR_VARIANTS, "mixed")
    out = [("durable", "durable"), ("all", "all")]
    return out + [(rng.choice(files), rng.choice(dirs)) for _ in range(count - 2)]


async def sweep(
    fsync: str, rounds: int, variants: int, seed: int, scratch: Path, keep: Path
) -> Stats:
    """``rounds`` recorded workloads (40 messages per producer), each crashed at every trace
    op with ``variants`` states per point; the totals, printed for ``pytest -s``."""
    total = Stats()
    ops = acked = 0
    for r in range(rounds):
        run = await record(scratch / f"work-{r}", fsync, 40, seed + r)
        points = list(range(len(run.disk.trace) + 1))  # a crash before each op, and after all
        st = await explore(run, points, variants, seed + r, scratch, keep)
        ops += len(run.disk.trace)
        st.max_sync_lag_s = _sync_lag(run)
        acked += sum(s.acked is not None for s in run.sent)
        for f in fields(Stats):
            a, b = getattr(total, f.name), getattr(st, f.name)
            setattr(total, f.name, max(a, b) if f.name.startswith("max") else a + b)
    _report(f"fsync={fsync}", rounds, ops, acked, total)
    return total


def _sync_lag(run: Run) -> float:
    """How long acked data stayed in the page cache only (the lazy modes' loss window, in
    time), from the trace; every acked message must be covered by some fsync by the end."""
    lag = 0.0
    for s in run.sent:
        if s.acked is None:
            continue
        synced = run.durable_at.get(s.msg_id)
        assert synced is not None, f"seed={_SEED}: acked {s.msg_id} was never fsynced"
        if run.fsync == "always":  # the fsync is in the trace before the ack reached the loop
            assert synced < s.acked, f"seed={_SEED}: {s.msg_id} acked before its fsync"
        lag = max(lag, run.disk.times[synced] - s.t_ack)
    return lag


def _report(label: str, rounds: int, ops: int, acked: int, st: Stats) -> None:
    print(
        f"\nCrashFS {label} seed={_SEED}: {rounds} workloads, {ops} traced ops, {acked} acked"
        f" messages; {st.checked} distinct states checked of {st.generated} generated;"
        f" {st.damaged} lost or changed unsynced data ({st.torn} torn, {st.extended} extended,"
        f" {st.dirs_undone} with directory entries undone); {st.messages} messages recovered;"
        f" {st.with_loss} states lost acked messages, max {st.max_loss},"
        f" oldest lost ack {st.max_window_s * 1000:.0f} ms before the crash;"
        f" longest ack-to-fsync lag {st.max_sync_lag_s * 1000:.0f} ms"
    )


def _assert_coverage(st: Stats, want: int) -> None:
    """The run was not vacuous: enough distinct states, and they really lost data."""
    assert st.checked >= want, f"seed={_SEED}: only {st.checked} distinct states"
    assert st.damaged >= st.checked // 4, f"seed={_SEED}: {st}"
    assert min(st.torn, st.extended, st.dirs_undone) > 0, f"seed={_SEED}: {st}"


async def test_power_loss_fsync_always(scratch: Path, tmp_path: Path) -> None:
    """C3, fsync=always: P1-P7 in every crash state (no acked message lost, ever)."""
    st = await sweep("always", scale(1, 64), scale(10, 20), _SEED, scratch, tmp_path)
    _assert_coverage(st, scale(400, 50_000))
    assert st.with_loss == 0


async def test_power_loss_fsync_interval(scratch: Path, tmp_path: Path) -> None:
    """C3, fsync=interval: P2-P7 in every state; acked messages lost only if no fsync covered
    them before the crash, and only as a suffix of the commit order (P5, no holes)."""
    seed = _SEED + 1000
    st = await sweep("interval:50", scale(1, 18), scale(6, 20), seed, scratch, tmp_path)
    _assert_coverage(st, scale(600, 50_000))
    assert st.with_loss > 0, f"seed={_SEED}: no state lost anything: the check was vacuous"
    # The window is T plus an fsync; the slack is for a loaded machine's late timers.
    assert st.max_window_s <= 0.05 + 1.0, f"seed={_SEED}: lost an ack {st.max_window_s:.3f}s old"
    assert st.max_sync_lag_s <= 0.05 + 1.0, f"seed={_SEED}: fsync lagged {st.max_sync_lag_s}s"


async def test_create_roll_and_meta_survive_dropped_directory_entries(
    scratch: Path, tmp_path: Path
) -> None:
    """C8: at every crash point, with un-fsynced directory entries undone in every way, an
    acked create and its acked record exist, and segment rolls and the meta.json replacement
    leave the old or the new version, never a missing or torn one."""
    run = await record_c8(scratch / "work")
    points = list(range(len(run.disk.trace) + 1))
    dir_only = [(f, d) for d in DIR_VARIANTS for f in ("durable", "all", "mixed")]
    variants = dir_only * scale(3, 30)
    st = await explore(run, points, variants, _SEED + 2, scratch, tmp_path)
    acked = sum(s.acked is not None for s in run.sent)
    _report("C8 create/roll/meta", 1, len(run.disk.trace), acked, st)
    assert st.dirs_undone > 0 and st.checked >= len(points), f"seed={_SEED}: {st}"
