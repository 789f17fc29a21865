"""A stand-in for a language model: the same prompt always gives the same tokens.

Offline and deterministic, so the example runs anywhere and a test can compare what a reader
assembled with the exact answer. ``delay`` paces the tokens like a model would.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator

WORDS = (
    "channels keep long running work addressable by name so a reader can leave and come "
    "back at any offset while the writer goes on appending tokens to disk durably and "
    "every message has its place in the log"
).split()


def generate(prompt: str, tokens: int = 120, delay: float = 0.0) -> Iterator[str]:
    """Yield ``tokens`` tokens (words with their leading space) answering ``prompt``."""
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    for i in range(tokens):
        if delay:
            time.sleep(delay)
        word = rng.choice(WORDS)
        yield word.capitalize() if i == 0 else " " + word


def answer(prompt: str, tokens: int = 120) -> str:
    """The whole answer at once: what a reader must end up with."""
    return "".join(generate(prompt, tokens))
