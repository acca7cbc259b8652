"""The outlet behind a stalled consumer: bounded, and every loss counted and surfaced in order."""

from __future__ import annotations

import collections

import pytest
import trio

from recorder.rtms._outlet import CONTROL_TRACK, EventOutlet
from recorder.rtms.events import (
    AudioCodec,
    AudioFormat,
    AudioPacket,
    CaptureEvent,
    GapCause,
    Interrupted,
    PacketsDropped,
    ParticipantEvent,
    Recovered,
    StreamEnded,
    StreamStateChanged,
)

FMT = AudioFormat(AudioCodec.L16, 16000, 1)


def _packet(ts: int) -> AudioPacket:
    return AudioPacket("mixed", ts, b"\x00\x00", FMT)


def _state(ts: int) -> StreamStateChanged:
    return StreamStateChanged(ts, "stream", 1, "ACTIVE")


async def _drain(outlet: EventOutlet) -> list[CaptureEvent]:
    received: list[CaptureEvent] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outlet.run_flusher)
            async for event in outlet.receive_channel:
                received.append(event)
    return received


async def test_control_backlog_is_bounded_and_audio_shaping_events_are_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dropped: collections.Counter[str] = collections.Counter()
    outlet = EventOutlet(2, lambda: 0, dropped, control_capacity=3)
    outlet.offer(_packet(0))
    outlet.offer(_packet(20))  # the channel is full now
    for i in range(5):
        outlet.offer(_state(i))  # 3 wait, 2 are dropped
    outlet.offer(Interrupted(1, GapCause.MEDIA_INTERRUPTED))  # over the bound, kept
    outlet.offer(ParticipantEvent(9, 3, "PARTICIPANT_JOIN"))  # dropped
    outlet.offer(Recovered(2, 1, GapCause.MEDIA_INTERRUPTED))  # kept
    outlet.offer(StreamEnded(3, 6, "MEETING_ENDED", normal=True))
    outlet.offer(_packet(40))  # after the end: counted
    assert dropped["control_backlog"] == 3
    assert dropped["after_end"] == 1
    assert outlet.control_over_bound == 3  # Interrupted, Recovered, StreamEnded
    # Surfaced in the log at 1 and 2 (powers of two), never once per event.
    stalled = [r for r in caplog.records if "consumer stalled" in r.getMessage()]
    assert len(stalled) == 2

    received = await _drain(outlet)
    kinds = [type(e).__name__ for e in received]
    assert kinds == [
        "AudioPacket",
        "AudioPacket",
        "StreamStateChanged",
        "StreamStateChanged",
        "StreamStateChanged",
        "PacketsDropped",
        "Interrupted",
        "Recovered",
        "StreamEnded",
    ]
    [record] = [e for e in received if isinstance(e, PacketsDropped)]
    assert record.track == CONTROL_TRACK
    assert record.count == 3
    # No timestamps: an informational loss never relabels an audio gap.
    assert record.first_timestamp_ms is None


async def test_media_drops_still_carry_their_timestamp_range() -> None:
    dropped: collections.Counter[str] = collections.Counter()
    outlet = EventOutlet(1, lambda: 0, dropped)
    for ts in (0, 20, 40, 60):
        outlet.offer(_packet(ts))
    outlet.offer(StreamEnded(3, 6, "MEETING_ENDED", normal=True))
    received = await _drain(outlet)
    [record] = [e for e in received if isinstance(e, PacketsDropped)]
    assert (record.count, record.first_timestamp_ms, record.last_timestamp_ms) == (3, 20, 60)
    assert dropped["backpressure"] == 3
