"""The listening file: the tracks of one recording on one clock, in one file to play.

Contact Center and Zoom Phone: stereo, the agent's legs on the left and the caller's on the
right (RTMS names each leg's ``participant_mode`` in its answered events: ``callee`` is the agent
or the called user, ``caller`` the customer). A leg whose role was never named goes on both
sides, and the manifest says so. Meetings, webinars and sessions: mono, the ``mixed`` track when
RTMS sent one, else the recorder's ``mixdown``, else the per-speaker tracks summed.

Mixing reads the whole-call WAVs already written, a block at a time (bounded memory); samples
are summed in 32 bits and clipped to 16.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

from recorder.catalog.base import Product
from recorder.officer.bundle.wavio import PLAIN_HEADER_SIZE, WavWriter

#: Frames mixed per step: 1 s at 48 kHz, a few hundred KiB of accumulator.
BLOCK_FRAMES: Final = 48_000

_CALL_PRODUCTS: Final = (Product.CONTACT_CENTER, Product.PHONE)
AGENT_ROLES: Final = frozenset({"callee", "agent", "host"})
CALLER_ROLES: Final = frozenset({"caller", "customer", "consumer"})


class Side(enum.StrEnum):
    LEFT = "left"
    RIGHT = "right"
    BOTH = "both"
    MONO = "mono"


@dataclass(frozen=True, slots=True)
class Source:
    """One whole-call track WAV and where it goes in the listening file."""

    track: str
    path: Path
    start_ms: int
    sample_rate: int
    channels: int
    frames: int
    side: Side
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    channels: int
    sources: tuple[Source, ...]
    note: str


def choose_layout(
    product: Product, tracks: Sequence[Source], roles: Mapping[str, str]
) -> Layout | None:
    """Which tracks make up the listening file, on which side. ``roles``: track -> role."""
    if not tracks:
        return None
    if product in _CALL_PRODUCTS:
        placed: list[Source] = []
        unknown: list[str] = []
        for src in tracks:
            role = roles.get(src.track)
            if role in AGENT_ROLES:
                side = Side.LEFT
            elif role in CALLER_ROLES:
                side = Side.RIGHT
            else:
                side = Side.BOTH
                unknown.append(src.track)
            placed.append(_with(src, side, role))
        note = "stereo: agent left, caller right"
        if unknown:
            note += f"; no role known for {', '.join(unknown)} (on both sides)"
        return Layout(2, tuple(placed), note)
    by_name = {src.track: src for src in tracks}
    for name in ("mixed", "mixdown"):
        if name in by_name:
            return Layout(1, (_with(by_name[name], Side.MONO, None),), f"mono: the {name} track")
    speakers = tuple(_with(src, Side.MONO, None) for src in tracks)
    return Layout(1, speakers, "mono: the speakers' tracks summed on the RTMS clock")


def _with(src: Source, side: Side, role: str | None) -> Source:
    return Source(
        src.track, src.path, src.start_ms, src.sample_rate, src.channels, src.frames, side, role
    )


@dataclass(frozen=True, slots=True)
class Mixed:
    start_ms: int
    sample_rate: int
    frames: int
    #: Where each track starts in the listening file (frames).
    offsets: Mapping[str, int]


def plan_mix(layout: Layout) -> Mixed | None:
    """``None`` when the tracks' sample rates differ (no listening file then)."""
    rates = {src.sample_rate for src in layout.sources}
    if len(rates) != 1:
        return None
    [rate] = rates
    start_ms = min(src.start_ms for src in layout.sources)
    offsets = {
        src.track: ((src.start_ms - start_ms) * rate + 500) // 1000 for src in layout.sources
    }
    frames = max(offsets[src.track] + src.frames for src in layout.sources)
    return Mixed(start_ms, rate, frames, offsets)


def write_listening(target: Path, layout: Layout, mixed: Mixed) -> tuple[str, int]:
    """Write the listening file block by block; returns (sha256, size)."""
    writer = WavWriter(
        target, sample_rate=mixed.sample_rate, channels=layout.channels, frames=mixed.frames
    )
    files: list[tuple[Source, BinaryIO]] = []
    try:
        for src in layout.sources:
            track_file = src.path.open("rb")
            track_file.seek(PLAIN_HEADER_SIZE)
            files.append((src, track_file))
        # One mono source per output channel (the usual call, or one mixed track): samples
        # are placed, not summed, so no 32-bit accumulator or clipping is needed.
        placed = _one_source_per_channel(layout)
        dtype = np.dtype("<i2") if placed else np.dtype(np.int32)
        acc = np.zeros((BLOCK_FRAMES, layout.channels), dtype=dtype)
        for block_start in range(0, mixed.frames, BLOCK_FRAMES):
            count = min(BLOCK_FRAMES, mixed.frames - block_start)
            acc[:count] = 0
            for src, handle in files:
                _add(acc, src, handle, mixed.offsets[src.track], block_start, count)
            if placed:
                writer.write(acc[:count].tobytes())
            else:
                writer.write(np.clip(acc[:count], -32768, 32767).astype("<i2").tobytes())
    except BaseException:
        writer.abort()
        raise
    finally:
        for _, handle in files:
            handle.close()
    return writer.close()


def _one_source_per_channel(layout: Layout) -> bool:
    if any(src.channels != 1 or src.side is Side.BOTH for src in layout.sources):
        return False
    sides = [src.side for src in layout.sources]
    return len(sides) == len(set(sides))


def _add(
    acc: npt.NDArray[np.int32] | npt.NDArray[np.int16],
    src: Source,
    handle: BinaryIO,
    offset: int,
    block_start: int,
    count: int,
) -> None:
    first = max(block_start, offset)
    last = min(block_start + count, offset + src.frames)
    if last <= first:
        return
    # Tracks are read strictly forward: the handle sits at frame ``first - offset`` already.
    raw = handle.read((last - first) * 2 * src.channels)
    samples = np.frombuffer(raw, dtype="<i2").reshape(-1, src.channels)
    if src.channels == 1:
        mono = samples[:, 0]
    else:
        mono = (samples.astype(np.int32).sum(axis=1) // src.channels).astype(np.int16)
    rows = slice(first - block_start, first - block_start + len(mono))
    if src.side is Side.LEFT:
        acc[rows, 0] += mono
    elif src.side is Side.RIGHT:
        acc[rows, 1] += mono
    else:
        for channel in range(acc.shape[1]):
            acc[rows, channel] += mono
