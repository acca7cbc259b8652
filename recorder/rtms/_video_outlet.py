"""Hands video and screen-share frames to the video recorder without ever blocking a reader.

A second, separate bounded channel beside the audio outlet (``_outlet``), so a slow MP4 writer
can never cost audio, nor audio backpressure cost video. Frames that do not fit are dropped and
counted; the loss is announced, in order, by one ``VideoLoss`` before that kind's next frame,
so the video track names the gap (``backpressure``). An interruption does the same with its
cause. Memory: ``capacity`` frames plus one pending loss per kind.
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


@dataclass(frozen=True, slots=True)
class VideoLoss:
    """Frames of ``kind`` are missing before the next one, because of ``cause``."""

    kind: str
    cause: GapCause
    #: Frames dropped here (0 when the cause is an interruption: RTMS never sent them).
    count: int = 0


VideoEvent = VideoFrame | VideoLoss


class VideoOutlet:
    def __init__(self, capacity: int = VIDEO_BUFFER) -> None:
        self.send_channel, self.receive_channel = trio.open_memory_channel[VideoEvent](
            max(1, capacity)
        )
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

    def _send(self, event: VideoEvent) -> bool:
        try:
            self.send_channel.send_nowait(event)
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed = True
            return False
        return True


__all__ = ["VIDEO_BUFFER", "VideoEvent", "VideoLoss", "VideoOutlet"]
