"""A Jepsen-style history of appends and the CHECK of reliability.md section 4.0.

Every appended message carries a unique id ``<producer>:<n>``. Each operation is recorded as
invoked, then ok (with its offset), failed, or indeterminate (timeout, reset, daemon killed).
After the fault the daemon restarts and each channel is read from the start; ``check`` then
asserts P1-P5 (no lost acknowledged write, no duplicate, no phantom, per-producer order, no
holes) and returns the problems found, so a failing test prints every violation at once.
``check_rereads`` is P6 (a read from any acknowledged offset returns the same messages).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Op:
    msg_id: str
    channel: str
    status: str = "invoked"  # invoked | ok | fail | info
    seq: int | None = None  # acknowledged first seq (from Stream-Next-Offset - 1)


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)

    def invoke(self, msg_id: str, channel: str) -> Op:
        op = Op(msg_id, channel)
        self.ops.append(op)
        return op

    def acked(self, channel: str) -> list[Op]:
        return [o for o in self.ops if o.channel == channel and o.status == "ok"]

    def uncertain_ids(self, channel: str) -> set[str]:
        return {
            o.msg_id for o in self.ops if o.channel == channel and o.status in ("info", "invoked")
        }


def producer_of(msg_id: str) -> str:
    return msg_id.rsplit(":", 1)[0]


def number_of(msg_id: str) -> int:
    return int(msg_id.rsplit(":", 1)[1])


def check(
    history: History,
    channel: str,
    log: list[str],
    idempotent: set[str],
    allow_loss: bool = False,
) -> list[str]:
    """Problems found comparing the recovered log ``log`` (ids in offset order) to the history.

    ``allow_loss`` is for a simulated power loss under ``fsync=interval|never``: acknowledged
    messages may then be missing, but only as a suffix of the commit order (P5), never a hole.
    Callers bound how many may be lost with ``lost_acked``.
    """
    problems: list[str] = []
    acked = history.acked(channel)
    acked_ids = {o.msg_id for o in acked}
    uncertain = history.uncertain_ids(channel)
    positions: dict[str, list[int]] = {}
    for pos, mid in enumerate(log):
        positions.setdefault(mid, []).append(pos)
    # P1: no acknowledged write lost.
    if not allow_loss:
        problems += [f"P1 lost acked {m}" for m in sorted(acked_ids - positions.keys())]
    # P2: no duplicates (plain producers may repeat only indeterminate ids).
    for mid, where in positions.items():
        if len(where) > 1 and (producer_of(mid) in idempotent or mid not in uncertain):
            problems.append(f"P2 duplicate {mid} at {where}")
    # P3: no phantom.
    known = acked_ids | uncertain  # once: a union per message is quadratic (R7's hour of ids)
    problems += [f"P3 phantom {m}" for m in positions if m not in known]
    # P4: per-producer send order, and acked offsets match where the message is.
    last: dict[str, int] = {}
    for mid in log:
        p, n = producer_of(mid), number_of(mid)
        if n < last.get(p, -1):
            problems.append(f"P4 order {mid} after {p}:{last[p]}")
        last[p] = max(n, last.get(p, -1))
    for op in acked:
        if op.seq is not None and op.msg_id in positions and op.seq not in positions[op.msg_id]:
            problems.append(f"P4 acked {op.msg_id} at seq {op.seq} found at {positions[op.msg_id]}")
    # P5: no holes: nothing acked is missing before the last acked message that is present.
    order = sorted((o for o in acked if o.seq is not None), key=lambda o: o.seq or 0)
    last_present = max((i for i, o in enumerate(order) if o.msg_id in positions), default=-1)
    problems += [
        f"P5 hole: acked {o.msg_id} lost before a later acked message"
        for o in order[: max(last_present, 0)]  # -1: nothing present, no hole
        if o.msg_id not in positions
    ]
    return problems


def lost_acked(history: History, channel: str, log: list[str]) -> list[str]:
    """Acknowledged ids absent from ``log`` (the loss window of a lazy fsync mode)."""
    present = set(log)
    return sorted(o.msg_id for o in history.acked(channel) if o.msg_id not in present)


def check_rereads(
    channel: str, log: list[str], base: int, rereads: dict[int, list[str]]
) -> list[str]:
    """P6: a read starting at each recorded offset (``rereads[seq]``, messages in order) returns
    exactly the messages the full read ``log`` (which starts at seq ``base``) has from there:
    an offset always names the same bytes, and no read starts mid-record or skips one."""
    problems: list[str] = []
    for seq, got in sorted(rereads.items()):
        want = log[seq - base : seq - base + len(got)]
        if not got or got != want:
            problems.append(
                f"P6 {channel} reread at seq {seq} gave {got[:3]}..., want {want[:3]}..."
            )
    return problems
