"""The listening mix of a recording as a random-access WAV: the export bundle's
``listening.wav`` (``bundle/listening.py``: calls in stereo, agent left and caller right;
meetings in mono), byte for byte, made on demand from the tracks' ``TrackMedia`` and never
written anywhere.

A range of the mix reads the same frame range of every track in it (each decrypting only the
chunks it needs) and mixes it with the bundle's own code (``listening.add_samples``): placed
when every output channel has one mono source, else summed in 32 bits and clipped. The layout
needs each track's role (``callee``/``caller``...): RTMS names them in its events, which the
caller reads from the recording's records (the export does it with its ``RecordsSplitter``); a
track with no known role goes on both sides, as in the bundle.

Rule: as for tracks, no decrypt without the caller's audit event for this recording.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Final

import numpy as np

from recorder.catalog.base import AuditEvent, RecordingDetail
from recorder.crypto.keyring import SegmentKeyOpener
from recorder.crypto.random_access import MAX_READ
from recorder.errors import LocalProtocolError
from recorder.officer.bundle import listening
from recorder.officer.bundle.wavio import wav_header
from recorder.officer.media import (
    BLOCK_BYTES,
    CONTENT_TYPE,
    WAV_HEADER_SIZE,
    SealedObjects,
    TrackMedia,
    iter_blocks,
    open_track_media,
)

_NOT_READ: Final = Path("/dev/null")  # a layout's sources name a file; the mix reads TrackMedia


class ListeningMedia:
    """The listening mix as a random-access byte source. Use ``aclose``."""

    def __init__(
        self,
        layout: listening.Layout,
        mixed: listening.Mixed,
        tracks: Mapping[str, TrackMedia],
        *,
        recording_id: str,
    ) -> None:
        self.recording_id = recording_id
        self.layout = layout
        self.mixed = mixed
        self.channels = layout.channels
        self.sample_rate = mixed.sample_rate
        self._tracks = dict(tracks)
        self._frame = 2 * layout.channels
        self._header = wav_header(
            sample_rate=mixed.sample_rate, channels=layout.channels, frames=mixed.frames
        )
        self._placed = listening.one_source_per_channel(layout)  # the bundle's own rule
        self.length = WAV_HEADER_SIZE + mixed.frames * self._frame

    @property
    def content_type(self) -> str:
        return CONTENT_TYPE

    @property
    def duration_s(self) -> float:
        return self.mixed.frames / self.sample_rate

    async def read(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` of the mix (at most ``MAX_READ`` at once)."""
        if not 0 <= start <= stop <= self.length:
            raise LocalProtocolError(
                f"{self.recording_id}/listening: read [{start}, {stop}) outside 0..{self.length}"
            )
        if stop - start > MAX_READ:
            raise LocalProtocolError(
                f"{self.recording_id}/listening: one read is at most {MAX_READ}"
            )
        parts: list[bytes] = []
        if start < WAV_HEADER_SIZE:
            parts.append(self._header[start : min(stop, WAV_HEADER_SIZE)])
        first_byte = max(start, WAV_HEADER_SIZE) - WAV_HEADER_SIZE
        end_byte = stop - WAV_HEADER_SIZE
        if end_byte > first_byte:
            first = first_byte // self._frame
            last = -(-end_byte // self._frame)
            block = await self._mix(first, last - first)
            skip = first_byte - first * self._frame
            parts.append(block[skip : skip + end_byte - first_byte])
        return b"".join(parts)

    def iter_range(self, start: int, stop: int, block: int = BLOCK_BYTES) -> AsyncIterator[bytes]:
        return iter_blocks(self.read, start, stop, block)

    async def _mix(self, block_start: int, count: int) -> bytes:
        dtype = np.dtype("<i2") if self._placed else np.dtype(np.int32)
        acc = np.zeros((count, self.channels), dtype=dtype)
        for src in self.layout.sources:
            offset = self.mixed.offsets[src.track]
            first = max(block_start, offset)
            last = min(block_start + count, offset + src.frames)
            if last <= first:
                continue
            frame = 2 * src.channels
            raw = await self._tracks[src.track].read(
                WAV_HEADER_SIZE + (first - offset) * frame,
                WAV_HEADER_SIZE + (last - offset) * frame,
            )
            # The bundle's own mixing, fed exactly the frames it reads.
            listening.add_samples(acc, src, np.frombuffer(raw, dtype="<i2"), first - block_start)
        if self._placed:
            return acc.tobytes()
        return np.clip(acc, -32768, 32767).astype("<i2").tobytes()

    async def aclose(self) -> None:
        for media in self._tracks.values():
            await media.aclose()


async def open_listening_media(
    objects: SealedObjects,
    keyring: SegmentKeyOpener,
    detail: RecordingDetail,
    audit: AuditEvent,
    roles: Mapping[str, str],
) -> ListeningMedia | None:
    """The listening mix, or ``None`` when there is none (no tracks, or tracks at different
    sample rates: the bundle has no listening file then either). ``roles``: track -> role."""
    tracks: dict[str, TrackMedia] = {}
    try:
        for track in sorted({s.track for s in detail.segments}):
            tracks[track] = await open_track_media(objects, keyring, detail, track, audit)
        sources = [
            listening.Source(
                track,
                _NOT_READ,
                media.plan.start_ms,
                media.sample_rate,
                media.channels,
                media.plan.total_samples,
                listening.Side.MONO,
            )
            for track, media in tracks.items()
        ]
        layout = listening.choose_layout(detail.recording.product, sources, roles)
        mixed = listening.plan_mix(layout) if layout is not None else None
        if layout is None or mixed is None:
            for media in tracks.values():
                await media.aclose()
            return None
    except BaseException:
        for media in tracks.values():
            await media.aclose()
        raise
    return ListeningMedia(layout, mixed, tracks, recording_id=detail.recording.recording_id)
