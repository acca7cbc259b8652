"""Remux H.264 access units into fragmented MP4, straight into an ``EvidenceSink``.

PyAV (libavformat's mov muxer) writes to a file-like object whose ``write`` is the sink's: the
bytes are encrypted as they are produced, nothing touches the disk in the clear, and nothing is
decoded or re-encoded. ``empty_moov`` puts the init segment first; a fragment is cut at every
keyframe and at least every ``fragment_ms``, so what the muxer holds back (and a crash could
lose) is at most one fragment.

Timestamps are the RTMS clock: a packet's pts is its RTMS timestamp minus the segment's
``origin_ms``, in a 1/1000 time base, so every segment maps back to Unix milliseconds exactly.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

import av

from recorder.errors import VideoError
from recorder.sink import EvidenceSink, SealedSegment

MS: Final = Fraction(1, 1000)


class _SinkFile:
    """The file-like object PyAV writes to: no ``seek``, so libavformat streams."""

    def __init__(self, sink: EvidenceSink) -> None:
        self._sink = sink

    def write(self, data: bytes) -> int:
        self._sink.write(bytes(data))
        return len(data)


class Fmp4Writer:
    """One video segment being written. Not thread-safe; one thread drives it at a time."""

    def __init__(
        self,
        sink: EvidenceSink,
        *,
        parameter_sets: bytes,
        width: int,
        height: int,
        origin_ms: int,
        fragment_ms: int = 1000,
    ) -> None:
        self.sink = sink
        self.origin_ms = origin_ms
        self.width = width
        self.height = height
        self.frames = 0
        self.keyframes = 0
        self.last_ms: int | None = None
        try:
            self._container = av.open(
                _SinkFile(sink),
                "w",
                format="mp4",
                options={
                    "movflags": "empty_moov+default_base_moof+frag_keyframe",
                    "frag_duration": str(fragment_ms * 1000),
                },
            )
            stream = self._container.add_stream("h264")
            stream.width = width
            stream.height = height
            stream.time_base = MS
            stream.codec_context.extradata = parameter_sets
            self._stream = stream
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"cannot start an MP4 segment: {exc}") from exc

    def write(self, payload: bytes, timestamp_ms: int, *, keyframe: bool, duration_ms: int) -> None:
        """Append one access unit; timestamps must increase (the caller's job)."""
        if self.last_ms is not None and timestamp_ms <= self.last_ms:
            raise VideoError(f"video timestamp {timestamp_ms} not after {self.last_ms}")
        packet = av.Packet(payload)
        packet.pts = packet.dts = timestamp_ms - self.origin_ms
        packet.duration = max(1, duration_ms)
        packet.time_base = MS
        packet.stream = self._stream
        packet.is_keyframe = keyframe
        try:
            self._container.mux(packet)
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"cannot mux a video frame at {timestamp_ms}: {exc}") from exc
        self.frames += 1
        self.keyframes += int(keyframe)
        self.last_ms = timestamp_ms

    def close(self) -> SealedSegment:
        """Write the last fragment and seal the segment."""
        try:
            self._container.close()
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"cannot finish an MP4 segment: {exc}") from exc
        return self.sink.close()


__all__ = ["Fmp4Writer"]
