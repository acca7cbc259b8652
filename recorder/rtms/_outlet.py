"""Hands capture events to the consumer without ever blocking a socket reader.

Readers call ``offer()`` synchronously. Media (audio, transcript, chat) is handed on while fewer
than ``capacity`` events wait; beyond that it is dropped, and the loss is recorded per track as
one pending ``PacketsDropped`` with the RTMS timestamp range, delivered in order when the
consumer catches up. Control events (states, interruptions, the end) are never dropped: they are
rare, so they may exceed ``capacity``. Events go straight into a channel of ``capacity`` with
``send_nowait`` (no task hop on the hot path); only what waits behind a full channel goes to a
backlog that one flusher task delivers. Memory is bounded by ``capacity`` plus the control
events and one drop record per track.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

import trio

from recorder.rtms.events import (
    MIXED_TRACK,
    AudioPacket,
    CaptureEvent,
    ChatMessage,
    GapCause,
    PacketsDropped,
    StreamEnded,
    TranscriptMessage,
)


@dataclass(slots=True)
class _DropRecord:
    track: str
    count: int
    first_timestamp_ms: int
    last_timestamp_ms: int


def _track_of(event: AudioPacket | TranscriptMessage | ChatMessage) -> str:
    if isinstance(event, AudioPacket):
        return event.track
    if isinstance(event, TranscriptMessage):
        return "transcript"
    return "chat"


class EventOutlet:
    def __init__(
        self,
        capacity: int,
        wall_ms: Callable[[], int],
        dropped_by_cause: collections.Counter[str] | None = None,
    ) -> None:
        self.capacity = max(1, capacity)
        self._wall_ms = wall_ms
        #: Events waiting behind a full channel: control events and drop records only.
        self._backlog: collections.deque[CaptureEvent | _DropRecord] = collections.deque()
        self._open_drops: dict[str, _DropRecord] = {}
        self._wakeup = trio.Event()
        self._ended = False
        self.send_channel, self.receive_channel = trio.open_memory_channel[CaptureEvent](
            self.capacity
        )
        #: Media events dropped, per track.
        self.dropped: collections.Counter[str] = collections.Counter()
        self._dropped_by_cause = (
            dropped_by_cause if dropped_by_cause is not None else collections.Counter()
        )

    @property
    def ended(self) -> bool:
        return self._ended

    def offer(self, event: CaptureEvent) -> None:
        """Hand on ``event`` now if the channel has room; never waits."""
        if self._ended:
            return
        media = isinstance(event, AudioPacket | TranscriptMessage | ChatMessage)
        if isinstance(event, StreamEnded):
            self._ended = True
        if not self._backlog:
            try:
                self.send_channel.send_nowait(event)
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The consumer went away: nothing more can be delivered.
                self._ended = True
                return
            else:
                if self._ended:
                    self._wakeup.set()  # the flusher closes the channel
                return
        if media:
            # Behind a full channel (or older control events): drop, and say so later.
            assert isinstance(event, AudioPacket | TranscriptMessage | ChatMessage)
            self._drop(event)
            return
        self._backlog.append(event)
        self._wakeup.set()

    def _drop(self, event: AudioPacket | TranscriptMessage | ChatMessage) -> None:
        track = _track_of(event)
        self.dropped[track] += 1
        self._dropped_by_cause["backpressure"] += 1
        record = self._open_drops.get(track)
        timestamp = event.timestamp_ms
        if record is None:
            record = _DropRecord(track, 0, timestamp, timestamp)
            self._open_drops[track] = record
            self._backlog.append(record)
            self._wakeup.set()
        record.count += 1
        record.first_timestamp_ms = min(record.first_timestamp_ms, timestamp)
        record.last_timestamp_ms = max(record.last_timestamp_ms, timestamp)

    async def run_flusher(self) -> None:
        """Deliver the backlog in order, waiting for room; close the channel after the end."""
        async with self.send_channel:
            while True:
                if not self._backlog:
                    if self._ended:
                        return
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                    continue
                item = self._backlog[0]
                event: CaptureEvent
                if isinstance(item, _DropRecord):
                    # Freeze the record before waiting, so later drops open a new one.
                    self._open_drops.pop(item.track, None)
                    event = PacketsDropped(
                        wall_ms=self._wall_ms(),
                        count=item.count,
                        cause=GapCause.BACKPRESSURE,
                        first_timestamp_ms=item.first_timestamp_ms,
                        last_timestamp_ms=item.last_timestamp_ms,
                        # Named even for transcript and chat: the capture core then never
                        # lets their drops name an audio gap.
                        track=item.track,
                    )
                else:
                    event = item
                try:
                    await self.send_channel.send(event)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._ended = True
                    self._backlog.clear()
                    return
                self._backlog.popleft()


__all__ = ["MIXED_TRACK", "EventOutlet"]
