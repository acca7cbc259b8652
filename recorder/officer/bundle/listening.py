"""The listening file: the tracks of one recording on one clock, in one file to play.

Contact Center and Zoom Phone: stereo, the agent's legs on the left and the caller's on the
right (RTMS names each leg's ``participant_mode`` in its answered events: ``callee`` is the agent
or the called user, ``caller`` the customer). A leg whose role was never named goes on both
sides, and the manifest says so. Meetings, webinars and sessions: mono, the ``mixed`` track when
RTMS sent one, else the recorder's ``mixdown``, else the per-speaker tracks summed.

Mixing reads the whole-call WAVs a block at a time (bounded memory), while they are being
written when the export passes their progress; samples are summed in 32 bits and clipped to 16.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from recorder.catalog.base import Product
from recorder.errors import StorageError
from recorder.officer.bundle.wavio import PLAIN_HEADER_SIZE, TrackProgress, WavWriter

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


def write_listening(
    target: Path,
    layout: Layout,
    mixed: Mixed,
    progress: Mapping[str, TrackProgress] | None = None,
) -> tuple[str, int]:
    """Write the listening file block by block; returns (sha256, size).

    With ``progress`` (track -> its writer's progress) the tracks may still be being written:
    each block waits until its samples are in the track files, so the mix runs beside the
    tracks instead of after them; the sources' channel counts come from their writers then.
    """
    sources = layout.sources
    if progress is not None:
        sources = tuple(_with_channels(src, progress[src.track].channels()) for src in sources)
        layout = Layout(layout.channels, sources, layout.note)
    writer = WavWriter(
        target, sample_rate=mixed.sample_rate, channels=layout.channels, frames=mixed.frames
    )
    fds: list[int] = []
    try:
        for src in sources:
            fds.append(os.open(src.path, os.O_RDONLY))
        reads = [
            _Read(src, fd, mixed.offsets[src.track], progress[src.track] if progress else None)
            for src, fd in zip(sources, fds, strict=True)
        ]
        # One mono source per output channel (the usual call, or one mixed track): samples
        # are placed straight into the writer's buffer, not summed, so no 32-bit accumulator
        # or clipping is needed.
        placed = one_source_per_channel(layout)
        acc = None if placed else np.zeros((BLOCK_FRAMES, layout.channels), dtype=np.int32)
        frame_bytes = 2 * layout.channels
        for block_start in range(0, mixed.frames, BLOCK_FRAMES):
            count = min(BLOCK_FRAMES, mixed.frames - block_start)
            if acc is None:
                out = np.frombuffer(writer.reserve(count * frame_bytes), dtype="<i2")
                block = out.reshape(count, layout.channels)
                if not all(read.covers(block_start, count) for read in reads):
                    block[:] = 0  # silence where a track has not started or has ended
                for read in reads:
                    read.add(block, block_start, count, place=True)
                del block, out
                writer.commit(count * frame_bytes)
            else:
                acc[:count] = 0
                for read in reads:
                    read.add(acc, block_start, count)
                writer.write(np.clip(acc[:count], -32768, 32767).astype("<i2").data.cast("B"))
    except BaseException:
        writer.abort()
        raise
    finally:
        for fd in fds:
            os.close(fd)
    return writer.close()


def _with_channels(src: Source, channels: int) -> Source:
    return Source(
        src.track,
        src.path,
        src.start_ms,
        src.sample_rate,
        channels,
        src.frames,
        src.side,
        src.role,
    )


class _Read:
    """One track's samples for the mix, read by position (``pread``) into one scratch block."""

    def __init__(self, src: Source, fd: int, offset: int, progress: TrackProgress | None) -> None:
        self.src = src
        self.fd = fd
        self.offset = offset
        self.progress = progress
        self.scratch = np.empty(BLOCK_FRAMES * src.channels, dtype="<i2")

    def covers(self, block_start: int, count: int) -> bool:
        return self.offset <= block_start and block_start + count <= self.offset + self.src.frames

    def add(
        self,
        acc: npt.NDArray[np.int32] | npt.NDArray[np.int16],
        block_start: int,
        count: int,
        *,
        place: bool = False,
    ) -> None:
        src, offset = self.src, self.offset
        first = max(block_start, offset)
        last = min(block_start + count, offset + src.frames)
        if last <= first:
            return
        frame_bytes = 2 * src.channels
        end = (last - offset) * frame_bytes
        if self.progress is not None:
            self.progress.wait_for(end)
        want = (last - first) * frame_bytes
        view = self.scratch.data.cast("B")[:want]
        position = PLAIN_HEADER_SIZE + (first - offset) * frame_bytes
        got = 0
        while got < want:
            done = os.preadv(self.fd, [view[got:]], position + got)
            if not done:
                raise StorageError(f"{src.path.name}: ends before frame {last - offset}")
            got += done
        add_samples(acc, src, self.scratch[: want // 2], first - block_start, place=place)


def add_samples(
    acc: npt.NDArray[np.int32] | npt.NDArray[np.int16],
    src: Source,
    samples: npt.NDArray[np.int16],
    row: int,
    *,
    place: bool = False,
) -> None:
    """Mix one source's interleaved samples into ``acc`` from ``row`` on, on its side(s).

    ``place``: the source is alone on its channels (``one_source_per_channel``), so its samples
    are copied in, not added (a third of the memory traffic of a read-add-write)."""
    frames = samples.reshape(-1, src.channels)
    if src.channels == 1:
        mono = frames[:, 0]
    else:
        mono = (frames.astype(np.int32).sum(axis=1) // src.channels).astype(np.int16)
    rows = slice(row, row + len(mono))
    if src.side is Side.LEFT:
        channels = [0]
    elif src.side is Side.RIGHT:
        channels = [1]
    else:
        channels = list(range(acc.shape[1]))
    for channel in channels:
        if place:
            acc[rows, channel] = mono
        else:
            acc[rows, channel] += mono


def one_source_per_channel(layout: Layout) -> bool:
    """Every source mono and on its own side: samples can be placed, not summed."""
    if any(src.channels != 1 or src.side is Side.BOTH for src in layout.sources):
        return False
    sides = [src.side for src in layout.sources]
    return len(sides) == len(set(sides))
