"""Hands capture events to the consumer without ever blocking a socket reader.

Readers call ``offer()`` synchronously. Media (audio, transcript, chat) is handed on while fewer
than ``capacity`` events wait; beyond that it is dropped, and the loss is recorded per track as
one pending ``PacketsDropped`` with the RTMS timestamp range, delivered in order when the
consumer catches up. Events go straight into a channel of ``capacity`` with ``send_nowait`` (no
task hop on the hot path); only what waits behind a full channel goes to a backlog that one
flusher task delivers.

Control events wait in that backlog, at most ``control_capacity`` of them:

* Events that shape the audio record (interruptions and recoveries, pause and resume, a dropped
  socket, the end) are never dropped. Beyond the bound they are still kept, and counted
  (``control_over_bound``): the engine's backoff limits how fast they can come.
* Informational events (participants, contact center events, stream states, first packet)
  beyond the bound are dropped, counted (``control_backlog``) and surfaced in order as one
  ``PacketsDropped`` with ``track="control"`` and no timestamps, so no audio gap is relabelled.

Anything offered after ``StreamEnded`` is counted (``after_end``), never silently lost.

**Inline hand-off** (``InlineSlot``): a consumer that is idle, blocked on the empty channel,
may take events synchronously in the offering socket's task instead (``capture``'s cheap audio
path), which saves the consumer's wakeup per message. The consumer says it is idle with
``ready`` and the outlet clears it as soon as anything goes the channel's way, so an event is
never taken inline while an earlier one still waits: order is kept. What the consumer does
inline is synchronous and never awaits (a decode in a worker thread, segment I/O, a callback:
none of them); anything else it declines, and the event goes the channel's way as before, so a
slow consumer still never holds up a socket, its keep-alive replies included.
Memory is bounded by ``capacity``, ``control_capacity`` plus the audio-shaping events, and one
drop record per track.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from recorder.rtms.events import (
    MIXED_TRACK,
    AudioPacket,
    CaptureEvent,
    ChatMessage,
    GapCause,
    Interrupted,
    MediaSocketDropped,
    PacketsDropped,
    Paused,
    Recovered,
    Resumed,
    StreamEnded,
    TranscriptMessage,
)

logger = logging.getLogger(__name__)

#: Control events that shape the audio record (gap causes, pauses, the end): never dropped.
_AUDIO_SHAPING = (Interrupted, Recovered, Paused, Resumed, MediaSocketDropped, StreamEnded)
#: ``PacketsDropped.track`` of informational control events dropped behind a full backlog.
CONTROL_TRACK = "control"
DEFAULT_CONTROL_CAPACITY = 1000


@dataclass(slots=True)
class InlineSlot:
    """Where a consumer offers its synchronous fast path (see the module docstring)."""

    #: Takes the event now (True) or declines it (False: it goes through the channel).
    take: Callable[[CaptureEvent], bool] | None = None
    #: Set by the consumer while it is blocked on the empty channel; cleared by the outlet
    #: whenever an event goes the channel's way, and by the consumer when it wakes.
    ready: bool = False


@dataclass(slots=True)
class _DropRecord:
    track: str
    count: int
    first_timestamp_ms: int | None
    last_timestamp_ms: int | None


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
        *,
        control_capacity: int = DEFAULT_CONTROL_CAPACITY,
    ) -> None:
        self.capacity = max(1, capacity)
        self.control_capacity = max(1, control_capacity)
        #: Control events now in the backlog (drop records are bounded per track instead).
        self._control_waiting = 0
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
        #: Audio-shaping control events kept beyond ``control_capacity`` (never dropped).
        self.control_over_bound = 0
        self.inline = InlineSlot()

    @property
    def ended(self) -> bool:
        return self._ended

    def offer(self, event: CaptureEvent) -> None:
        """Hand on ``event`` now if the channel has room; never waits."""
        if self._ended:
            self._dropped_by_cause["after_end"] += 1
            return
        inline = self.inline
        if inline.ready:
            take = inline.take
            if take is not None and not self._backlog and take(event):
                return
            inline.ready = False  # this one goes the channel's way: later ones follow it
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
        if self._control_waiting >= self.control_capacity:
            if not isinstance(event, _AUDIO_SHAPING):
                self._drop_control()
                return
            self.control_over_bound += 1
            count = self.control_over_bound
            if count & (count - 1) == 0:  # 1, 2, 4, 8...: surfaced, never a flood
                logger.warning(
                    "rtms consumer stalled: %d audio-shaping events kept beyond the control "
                    "backlog of %d",
                    count,
                    self.control_capacity,
                )
        self._control_waiting += 1
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
        first, last = record.first_timestamp_ms, record.last_timestamp_ms
        record.first_timestamp_ms = timestamp if first is None else min(first, timestamp)
        record.last_timestamp_ms = timestamp if last is None else max(last, timestamp)

    def _drop_control(self) -> None:
        """An informational control event behind a full backlog: counted, surfaced in order."""
        self.dropped[CONTROL_TRACK] += 1
        self._dropped_by_cause["control_backlog"] += 1
        record = self._open_drops.get(CONTROL_TRACK)
        if record is None:
            record = _DropRecord(CONTROL_TRACK, 0, None, None)
            self._open_drops[CONTROL_TRACK] = record
            self._backlog.append(record)
            self._wakeup.set()
        record.count += 1

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
                    self._control_waiting -= 1
                try:
                    await self.send_channel.send(event)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._ended = True
                    self._backlog.clear()
                    self._control_waiting = 0
                    return
                self._backlog.popleft()


__all__ = ["CONTROL_TRACK", "MIXED_TRACK", "EventOutlet", "InlineSlot"]
