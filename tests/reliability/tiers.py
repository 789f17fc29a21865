"""Two tiers for the reliability suite (reliability.md section 5.3).

Tier 1 runs in every CI run and must stay within about 8 minutes on 2 cores; tier 2 runs the
same tests at full scale (the soak for an hour), behind one command:

    bash tests/reliability/long.sh

A test sizes itself with ``scale(fast, long)`` so both tiers exercise the same code path; only
the counts differ. ``CHANCTL_LONG=1`` selects tier 2.
"""

from __future__ import annotations

import os

LONG = os.environ.get("CHANCTL_LONG") == "1"


def scale(fast: int, long: int) -> int:
    """The count for this tier: ``fast`` in CI, ``long`` under ``CHANCTL_LONG=1``."""
    return long if LONG else fast


def seconds(fast: float, long: float) -> float:
    """A duration for this tier (fuzzing time, soak length)."""
    return long if LONG else fast
