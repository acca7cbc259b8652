"""Hands video and screen-share frames to the video recorder without ever blocking a reader.

A second, separate bounded channel beside the audio outlet (``_outlet``), so a slow MP4 writer
can never cost audio, nor audio backpressure cost video. Frames that do not fit are dropped and
counted; the loss is announced, in order, by one ``VideoLoss`` before that kind's next frame,
so the video track names the gap (``backpressure``). An interruption does the same with its
cause. Memory: at most ``capacity`` frames and ``max_bytes`` of payload (what the consumer has
taken is known from the channel's own count, so the consumer reports nothing), plus one
pending loss per kind.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Final

import trio

from recorder.rtms._protocol_events import VideoFrame
from recorder.rtms.events import GapCause

#: Frames waiting for the video recorder (a few seconds at 5-25 fps).
VIDEO_BUFFER: Final = 64
#: Payload bytes waiting for the video recorder; one frame larger than this still passes
#: when nothing else waits.
VIDEO_BUFFER_BYTES: Final = 4 << 20


@dataclass(frozen=True, slots=True)
class VideoLoss:
    """Frames of ``kind`` are missing before the next one, because of ``cause``."""

    kind: str
    cause: GapCause
    #: Frames dropped here (0 when the cause is an interruption: RTMS never sent them).
    count: int = 0


VideoEvent = VideoFrame | VideoLoss


class VideoOutlet:
    def __init__(self, capacity: int = VIDEO_BUFFER, max_bytes: int = VIDEO_BUFFER_BYTES) -> None:
        self.send_channel, self.receive_channel = trio.open_memory_channel[VideoEvent](
            max(1, capacity)
        )
        self.max_bytes = max_bytes
        #: Payload sizes of the events in the channel, oldest first, and their sum.
        self._sizes: collections.deque[int] = collections.deque()
        self.queued_bytes = 0
        self._pending: dict[str, VideoLoss] = {}
        self._kinds: set[str] = set()
        self._closed = False
        #: Frames dropped, per kind.
        self.dropped: collections.Counter[str] = collections.Counter()

    def offer(self, frame: VideoFrame) -> None:
        if self._closed:
            self.dropped["after_end"] += 1
            return
        kind = frame.kind
        self._kinds.add(kind)
        pending = self._pending.get(kind)
        # The loss marker and the frame go together or not at all (no marker floods).
        if not self._room(len(frame.payload), 2 if pending is not None else 1):
            self._lose(kind, GapCause.BACKPRESSURE)
            return
        if pending is not None:
            if not self._send(pending):
                self._lose(kind, GapCause.BACKPRESSURE)
                return
            del self._pending[kind]
        if not self._send(frame):
            self._lose(kind, GapCause.BACKPRESSURE)

    def note_cause(self, cause: GapCause) -> None:
        """An interruption: whatever each kind misses next is for this reason."""
        for kind in self._kinds:
            old = self._pending.get(kind)
            self._pending[kind] = VideoLoss(kind, cause, old.count if old else 0)

    def close(self) -> None:
        """No more frames: the video recorder seals what it has."""
        self._closed = True
        self.send_channel.close()

    def _lose(self, kind: str, cause: GapCause) -> None:
        self.dropped[kind] += 1
        old = self._pending.get(kind)
        self._pending[kind] = VideoLoss(
            kind, old.cause if old else cause, (old.count if old else 0) + 1
        )

    def _room(self, size: int, items: int) -> bool:
        stats = self.send_channel.statistics()
        while len(self._sizes) > stats.current_buffer_used:  # taken by the consumer since
            self.queued_bytes -= self._sizes.popleft()
        if stats.max_buffer_size - stats.current_buffer_used < items:
            return False
        return not (size and self._sizes and self.queued_bytes + size > self.max_bytes)

    def _send(self, event: VideoEvent) -> bool:
        try:
            self.send_channel.send_nowait(event)
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed = True
            return False
        size = len(event.payload) if isinstance(event, VideoFrame) else 0
        self._sizes.append(size)
        self.queued_bytes += size
        return True


__all__ = ["VIDEO_BUFFER", "VideoEvent", "VideoLoss", "VideoOutlet"]
