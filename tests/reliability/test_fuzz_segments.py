"""B1 of reliability.md: fuzzing the local engine's segment format, reader, fsck and recovery.

Two fuzzers feed ``segfuzz.Harness`` (see segfuzz.py for the properties checked on every
input: no exception, under 1 s and max_record + 1 MiB each, only checksummed records served,
recovery cuts a valid prefix that fsck agrees with, and recovering again changes nothing):

- Hypothesis: arbitrary bytes, and valid segments written by the engine's own encoder then
  damaged (bit flips, truncations, splices, inserted length prefixes up to 2^32-1, zero and
  garbage tails, field changes under a fixed-up checksum, which reach the decoders);
- atheris (coverage-guided, libFuzzer) on the same harness, for ``seconds(20, 1500)``, seeded
  with valid segments (tier 2 adds 20x the Hypothesis examples: about 30 minutes in all).

Found by them and fixed: the sparse index skipped a checksummed record of an unknown kind that
the reader then served as DATA (segment.py ``decode_batch``); a checkpoint whose checksum
matched but whose numbers did not fit (``1e999``, a negative size) crashed start-up (tail.py).
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import crc32c
import pytest
from chanctl.daemon.store.base import AppendBatch, ProducerStamp, ProducerState
from chanctl.daemon.store.local.disk import Disk, Failpoints
from chanctl.daemon.store.local.recovery import read_checkpoint_blocking
from chanctl.daemon.store.local.segment import segment_name
from chanctl.daemon.store.local.tail import decode_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import segfuzz
from .segfuzz import INTERESTING_LENGTHS, Harness, build_image, rechecksum, with_length_prefix
from .tiers import scale, seconds

# Tier 1: about 20 s of atheris plus 25 s of Hypothesis; tier 2: 25 min plus about 5.
FUZZ_SECONDS = seconds(20, 1500)
MIN_ATHERIS_RUNS = 1000  # 20 s at a loaded machine's few hundred a second, with margin


def fuzz_settings(fast: int) -> settings:
    return settings(
        max_examples=scale(fast, fast * 20),
        deadline=None,  # the harness enforces 1 s per input itself
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    with segfuzz.harness(trace_memory=False) as h:
        yield h
    print(f"B1 Hypothesis: {h.inputs} segment images checked")


names = st.text(max_size=8)
u63 = st.integers(min_value=0, max_value=(1 << 63) - 1)
batches = st.lists(
    st.builds(
        AppendBatch,
        messages=st.lists(st.binary(max_size=60), min_size=0, max_size=5),
        producer=st.none() | st.builds(ProducerStamp, names, u63, u63),
        stream_seq=st.none() | names,
        close=st.booleans(),
    ),
    max_size=6,
)
producers = st.lists(
    st.tuples(names, st.builds(ProducerState, u63, u63, st.floats(allow_nan=False))), max_size=12
)
images = st.builds(build_image, batches, producers, st.sampled_from([64, 256 * 1024]))


@st.composite
def damage(draw: st.DrawFn, image: bytes, ends: list[int]) -> bytes:
    """One way a disk, a crash or an attacker changes a segment."""
    kind = draw(st.sampled_from(["flip", "cut", "splice", "prefix", "length", "tail", "field"]))
    at = draw(st.integers(0, len(image)))
    boundary = draw(st.sampled_from([0, *ends]))
    if kind == "flip" and image:
        bits = draw(st.lists(st.integers(0, len(image) * 8 - 1), min_size=1, max_size=3))
        out = bytearray(image)
        for bit in bits:
            out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)
    if kind == "cut":
        return image[:at]
    if kind == "splice":
        start = draw(st.integers(0, len(image)))
        end = draw(st.integers(start, len(image)))
        return image[:boundary] + image[start:end] + image[boundary:]
    if kind == "prefix":
        length = draw(st.sampled_from(INTERESTING_LENGTHS) | st.integers(0, (1 << 32) - 1))
        return with_length_prefix(image, draw(st.sampled_from([at, boundary])), length, b"")
    if kind == "length" and boundary < len(image):
        length = draw(st.sampled_from(INTERESTING_LENGTHS))
        return image[:boundary] + struct.pack("<I", length) + image[boundary + 4 :]
    if kind == "field":
        junk = draw(st.binary(min_size=1, max_size=16))
        return rechecksum(image[:at] + junk + image[at + len(junk) :])
    tail = draw(st.binary(max_size=300) | st.builds(bytes, st.integers(1, 8192)))
    return image + tail


@fuzz_settings(1200)
@given(st.binary(max_size=2048), st.booleans())
def test_arbitrary_bytes(harness: Harness, data: bytes, after_header: bool) -> None:
    """Random bytes as a segment, or after a valid STATE header (so DATA parsing is reached)."""
    header = build_image([])[0] if after_header else b""
    harness.check(header + data)


@fuzz_settings(1500)
@given(images, st.data())
def test_damaged_segments(
    harness: Harness, image_ends: tuple[bytes, list[int]], data: st.DataObject
) -> None:
    image, ends = image_ends
    harness.check(image)  # undamaged: everything must be kept and served
    for _ in range(data.draw(st.integers(1, 3))):
        image = data.draw(damage(image, ends))
    harness.check(image)


@fuzz_settings(600)
@given(images, st.data())
def test_tail_damage_keeps_every_intact_record(
    harness: Harness, image_ends: tuple[bytes, list[int]], data: st.DataObject
) -> None:
    """A torn or extended tail (C5) never costs a record that is still whole."""
    image, ends = image_ends
    cut = data.draw(st.integers(0, len(image)))
    length = data.draw(st.sampled_from(INTERESTING_LENGTHS))
    tail = data.draw(
        st.binary(max_size=300)
        | st.builds(bytes, st.integers(1, 8192))
        | st.just(struct.pack("<II", length, 0))
    )
    whole = max((e for e in ends if e <= cut), default=0)
    header_end = segfuzz.walk(image).header_end
    assert header_end is not None
    keep = whole if whole >= header_end else None  # else: the segment is replaced
    harness.check(image[:cut] + tail, must_keep=keep)


def test_claimed_lengths_allocate_nothing() -> None:
    """A length prefix (up to 2^32-1) inserted at every record boundary of every seed, alone,
    before zeros, before garbage or before the rest of the segment: recovery, fsck and the
    reader allocate at most max_record + 1 MiB for it (tracemalloc)."""
    with segfuzz.harness(trace_memory=True) as h:
        for image in segfuzz.seed_images():
            ends = segfuzz.walk(image).ends
            for at in [0, *ends]:
                for length in INTERESTING_LENGTHS:
                    for filler in (b"", b"\0" * 4096, os.urandom(300)):
                        h.check(with_length_prefix(image[:at], at, length, filler))
                        h.check(with_length_prefix(image, at, length, filler))
    print(f"B1 claimed lengths: {h.inputs} images, peak allocation {h.peak} bytes")
    assert h.peak < segfuzz.MEMORY_BOUND


def checkpoint_doc() -> st.SearchStrategy[dict[str, object]]:
    number = st.integers() | st.floats() | st.just(1e999) | st.text(max_size=3) | st.none()
    return st.fixed_dictionaries(
        {
            "format": st.just(1),
            "segment": st.just(segment_name(segfuzz.BASE)),
            "base": number,
            "size": number,
            "probe_crc": number,
            "end_seq": number,
            "index": st.lists(st.lists(number, max_size=3), max_size=3) | number,
            "producers": st.lists(st.lists(number | st.text(), max_size=5), max_size=3) | number,
            "stream_seq": st.none() | st.text(max_size=4) | number,
            "closed": st.booleans() | number,
            "last_time": number,
        }
    )


@pytest.fixture(scope="module")
def chan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ckpt")


@fuzz_settings(400)
@given(checkpoint_doc(), st.integers(0, 4096))
def test_checkpoint_with_a_valid_checksum_never_breaks_start_up(
    chan: Path, doc: dict[str, object], size: int
) -> None:
    """``tail.ckpt`` is only a cache: whatever its checksummed JSON says, reading it gives a
    state or None (replay everything), never an exception that would stop the daemon."""
    body = json.dumps(doc).encode()
    data = struct.pack("<I", crc32c.crc32c(body)) + body
    seg = chan / segment_name(segfuzz.BASE)
    seg.write_bytes(b"\0" * size)
    (chan / "tail.ckpt").write_bytes(data)
    found = decode_checkpoint(data, str(seg))
    assert found is None or isinstance(found[0].size, int)
    tail = read_checkpoint_blocking(Disk(Failpoints("")), str(chan), str(seg), size)
    assert tail is None or 0 <= tail.size <= size


def test_atheris_coverage_guided_run(tmp_path: Path) -> None:
    """libFuzzer mutates inputs toward new coverage of the engine's parsing code."""
    seeds = tmp_path / "seeds"
    corpus = tmp_path / "corpus"
    seeds.mkdir()
    corpus.mkdir()
    for i, image in enumerate(segfuzz.seed_images()):
        (seeds / f"image-{i}").write_bytes(image)
        for mode in (0, 1):  # damage a valid segment; fix the checksums after (segfuzz.py)
            (seeds / f"mode{mode}-{i}").write_bytes(bytes([mode, i, 0, 0]) + image[:64])
    argv = [
        sys.executable,
        segfuzz.__file__,
        f"-max_total_time={int(FUZZ_SECONDS)}",
        "-max_len=65536",
        "-len_control=0",
        "-timeout=5",
        "-rss_limit_mb=1024",
        "-print_final_stats=1",
        str(corpus),
        str(seeds),
    ]
    done = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=FUZZ_SECONDS + 120
    )
    log = done.stderr
    runs = re.search(r"Done (\d+) runs in (\d+) second", log)
    assert done.returncode == 0 and runs is not None, log[-4000:]
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*"))
    execs, took = int(runs.group(1)), max(int(runs.group(2)), 1)
    cov = re.findall(r"cov: (\d+)", log)
    print(f"B1 atheris: {execs} runs in {took} s ({execs // took}/s), coverage {cov[-1:]} edges")
    assert execs > MIN_ATHERIS_RUNS
