"""One video track (camera ``video`` or screen share ``deskshare``) of one recording.

Fed RTMS access units in arrival order, it keeps the MP4 evidence honest:

* Nothing is written before a keyframe: a picture that cannot be decoded without frames the
  recorder never got is left out, and that time is a gap (``awaiting_keyframe``).
* Segments start on a keyframe. After ``segment_ms`` the next keyframe seals the segment and
  opens the next one, so every segment plays on its own.
* A resolution change (a keyframe whose SPS differs) seals the segment too: MP4 holds one
  size per init segment. It is recorded with cause ``resolution_change``.
* Timestamps that jump further than ``gap_factor`` frame intervals open a gap, named by the
  pending cause (an interruption, our own backpressure) or ``lost_packets``; a frame that is
  not H.264 is a ``decode_error`` gap until the next keyframe; a frame not after the previous
  one (a replay, a reordered frame) is counted and left out.

It drives a ``SinkFactory`` synchronously (open, write, close are blocking): the trio shell
(``recorder.video.capture``) runs it in a worker thread.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from recorder.audio.timeline import is_plausible_timestamp_ms
from recorder.errors import VideoError
from recorder.rtms.events import GapCause
from recorder.sink import SealedSegment, SegmentIdentity, SinkFactory
from recorder.video.fmp4 import Fmp4Writer
from recorder.video.h264 import inspect

AWAITING_KEYFRAME: Final = "awaiting_keyframe"
RESOLUTION_CHANGE: Final = "resolution_change"
FORMAT: Final = "fmp4-h264"
#: Tracks (and the catalog's record kinds) that hold MP4 video, not JSON lines.
VIDEO_RECORD_KINDS: Final = frozenset({"video", "deskshare"})

SealedVideo = tuple[SealedSegment, "VideoSegmentEntry"]


@dataclass(frozen=True, slots=True)
class VideoGap:
    """``start_ms`` .. ``end_ms`` (RTMS ms) of a track hold no picture, and why."""

    start_ms: int
    end_ms: int
    cause: str
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "cause": self.cause,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class VideoSegmentEntry:
    """One sealed MP4 segment: pts 0 is ``origin_ms``."""

    recording_id: str
    track: str
    segment_index: int
    origin_ms: int
    start_ms: int
    end_ms: int
    frames: int
    keyframes: int
    width: int
    height: int
    gaps: tuple[VideoGap, ...]
    sha256: str
    plaintext_size: int
    stored_size: int
    key_id: str
    interrupted: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": "video",
            "format": FORMAT,
            "recording_id": self.recording_id,
            "track": self.track,
            "segment_index": self.segment_index,
            "origin_ms": self.origin_ms,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "frames": self.frames,
            "keyframes": self.keyframes,
            "width": self.width,
            "height": self.height,
            "gaps": [g.to_dict() for g in self.gaps],
            "sha256": self.sha256,
            "plaintext_size": self.plaintext_size,
            "stored_size": self.stored_size,
            "key_id": self.key_id,
            "interrupted": self.interrupted,
        }


@dataclass(slots=True)
class VideoTrackConfig:
    #: Nominal frame rate (the confirmed ``media_params`` fps): the expected frame interval.
    fps: int = 5
    #: Seal on the first keyframe after this much video.
    segment_ms: int = 60_000
    #: A timestamp step above this many frame intervals is a gap.
    gap_factor: float = 1.5
    #: Most bytes one access unit may have (RTMS keyframes at QHD stay well below).
    max_frame_bytes: int = 8 << 20
    #: Cut an MP4 fragment at least this often (bounds what a crash can lose).
    fragment_ms: int = 1000

    @property
    def interval_ms(self) -> int:
        return max(1, round(1000 / max(1, self.fps)))


@dataclass(slots=True)
class _Open:
    writer: Fmp4Writer
    index: int
    gaps: list[VideoGap] = field(default_factory=list)


class VideoTrack:
    def __init__(
        self,
        recording_id: str,
        track: str,
        sinks: SinkFactory,
        config: VideoTrackConfig | None = None,
        *,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        first_segment_index: int = 0,
    ) -> None:
        self.recording_id = recording_id
        self.track = track
        self.config = config or VideoTrackConfig()
        self._sinks = sinks
        self._now_ms = now_ms
        self._open: _Open | None = None
        #: A takeover's epoch starts its own index range, as audio does (no key collides).
        self._next_index = first_segment_index
        #: Timestamp of the last frame placed or skipped (the timeline's position).
        self._last_ms: int | None = None
        #: A gap opened but not closed yet: (start_ms, cause, detail).
        self._gap: tuple[int, str, str] | None = None
        #: The cause the next timestamp jump gets (an interruption, backpressure).
        self._pending_cause: str | None = None
        self._size: tuple[int, int] | None = None
        self._needs_keyframe = False
        #: Gaps closed while no segment was open (they go into the next one).
        self._orphan_gaps: list[VideoGap] = []
        self.counters: collections.Counter[str] = collections.Counter()

    # --- input ------------------------------------------------------------------------------

    def note_cause(self, cause: str) -> None:
        """Frames were lost for this reason (an interruption, our queue): name the next gap."""
        self._pending_cause = cause

    def feed(self, timestamp_ms: int, payload: bytes) -> list[SealedVideo]:
        """Place one access unit; returns the segments this sealed."""
        sealed: list[SealedVideo] = []
        if not is_plausible_timestamp_ms(timestamp_ms):
            self.counters["bad_timestamp"] += 1
            return sealed
        if self._last_ms is not None and timestamp_ms <= self._last_ms:
            self.counters["late_or_duplicate"] += 1
            return sealed
        if len(payload) > self.config.max_frame_bytes:
            self._skip(timestamp_ms, GapCause.DECODE_ERROR, f"frame of {len(payload)} bytes")
            return sealed
        try:
            unit = inspect(payload)
        except VideoError as exc:
            self._skip(timestamp_ms, GapCause.DECODE_ERROR, str(exc))
            return sealed
        self._jump(timestamp_ms)
        if unit.keyframe:
            assert unit.width is not None
            assert unit.height is not None
            size = (unit.width, unit.height)
            current = self._open
            if current is not None:
                started = current.writer.origin_ms
                if size != self._size:
                    current.gaps.append(
                        VideoGap(
                            timestamp_ms,
                            timestamp_ms,
                            RESOLUTION_CHANGE,
                            f"{self._size[0]}x{self._size[1]} -> {size[0]}x{size[1]}"
                            if self._size
                            else "",
                        )
                    )
                    self.counters["resolution_changes"] += 1
                    sealed.append(self._seal())
                elif timestamp_ms - started >= self.config.segment_ms:
                    sealed.append(self._seal())
            if self._open is None:
                try:
                    self._start(timestamp_ms, unit.parameter_sets, size)
                except VideoError as exc:
                    self._skip(timestamp_ms, GapCause.DECODE_ERROR, str(exc))
                    return sealed
            self._needs_keyframe = False
        elif self._open is None or self._needs_keyframe:
            self._skip(timestamp_ms, AWAITING_KEYFRAME, "")
            return sealed
        self._close_gap(timestamp_ms)
        assert self._open is not None
        try:
            self._open.writer.write(
                payload, timestamp_ms, keyframe=unit.keyframe, duration_ms=self.config.interval_ms
            )
        except VideoError as exc:
            # The muxer refused what the parser accepted: left out, a gap to the next keyframe.
            self._skip(timestamp_ms, GapCause.DECODE_ERROR, str(exc))
            return sealed
        self._last_ms = timestamp_ms
        self.counters["frames"] += 1
        return sealed

    def checkpoint(self) -> None:
        if self._open is not None:
            self._open.writer.sink.checkpoint()

    def finish(self, *, interrupted: bool = False) -> list[SealedVideo]:
        """End of stream: close a trailing gap at the last frame and seal."""
        if self._gap is not None and self._last_ms is not None:
            self._close_gap(self._last_ms + self.config.interval_ms)
        if self._open is None:
            return []
        return [self._seal(interrupted=interrupted)]

    @property
    def pending_gaps(self) -> list[VideoGap]:
        """Gaps recorded after the last sealed segment with no segment to carry them."""
        return list(self._orphan_gaps)

    # --- internals --------------------------------------------------------------------------

    def _jump(self, timestamp_ms: int) -> None:
        """A step larger than the frame interval allows opens a gap after the last frame."""
        last = self._last_ms
        interval = self.config.interval_ms
        if last is None or self._gap is not None:
            return
        if timestamp_ms - last > self.config.gap_factor * interval:
            cause = self._pending_cause or GapCause.LOST_PACKETS
            self._gap = (last + interval, str(cause), "")
        self._pending_cause = None

    def _skip(self, timestamp_ms: int, cause: str, detail: str) -> None:
        """A frame that cannot be written: the time from it to the next written frame is a gap
        (the one already open keeps its first cause)."""
        self.counters[f"skipped_{cause}"] += 1
        self._jump(timestamp_ms)
        if self._gap is None:
            self._gap = (timestamp_ms, str(cause), detail[:200])
        self._last_ms = timestamp_ms
        if cause == GapCause.DECODE_ERROR:
            # Later pictures reference the broken one: none is written before a keyframe.
            self._needs_keyframe = True

    def _close_gap(self, end_ms: int) -> None:
        if self._gap is None:
            return
        start, cause, detail = self._gap
        self._gap = None
        if end_ms <= start:
            return
        gap = VideoGap(start, end_ms, cause, detail)
        self.counters["gaps"] += 1
        if self._open is not None:
            self._open.gaps.append(gap)
        else:
            self._orphan_gaps.append(gap)

    def _start(self, timestamp_ms: int, parameter_sets: bytes, size: tuple[int, int]) -> None:
        index = self._next_index
        identity = SegmentIdentity(
            recording_id=self.recording_id,
            track=self.track,
            segment_index=index,
            created_ms=self._now_ms(),
            metadata={"kind": "video", "format": FORMAT, "origin_ms": timestamp_ms},
        )
        sink = self._sinks.open(identity)
        try:
            writer = Fmp4Writer(
                sink,
                parameter_sets=parameter_sets,
                width=size[0],
                height=size[1],
                origin_ms=timestamp_ms,
                fragment_ms=self.config.fragment_ms,
            )
        except VideoError:
            sink.discard()  # nothing was written: no empty evidence file is left behind
            raise
        self._next_index += 1
        self._size = size
        self._open = _Open(writer, index, gaps=self._orphan_gaps)
        self._orphan_gaps = []

    def _seal(self, *, interrupted: bool = False) -> tuple[SealedSegment, VideoSegmentEntry]:
        current = self._open
        assert current is not None
        self._open = None
        writer = current.writer
        sealed = writer.close()
        assert writer.last_ms is not None
        entry = VideoSegmentEntry(
            recording_id=self.recording_id,
            track=self.track,
            segment_index=current.index,
            origin_ms=writer.origin_ms,
            start_ms=writer.origin_ms,
            end_ms=writer.last_ms + self.config.interval_ms,
            frames=writer.frames,
            keyframes=writer.keyframes,
            width=writer.width,
            height=writer.height,
            gaps=tuple(current.gaps),
            sha256=sealed.sha256,
            plaintext_size=sealed.plaintext_size,
            stored_size=sealed.stored_size,
            key_id=sealed.key_id,
            interrupted=interrupted,
        )
        return sealed, entry


__all__ = ["VIDEO_RECORD_KINDS", "VideoGap", "VideoSegmentEntry", "VideoTrack", "VideoTrackConfig"]
