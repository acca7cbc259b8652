"""Records: one JSON object per line, speaker names filled in, rotation and manifest hashes."""

from __future__ import annotations

import hashlib
import json

from recorder.audio.records import PendingRecordsSeal, RecordsWriter, SealedRecords
from recorder.audio.timeline import Gap, SpanKind
from recorder.rtms.events import (
    AudioCodec,
    AudioFormat,
    AudioPacket,
    ChatMessage,
    ContactCenterEvent,
    GapCause,
    Interrupted,
    Participant,
    ParticipantEvent,
    Paused,
    Recovered,
    Resumed,
    StreamEnded,
    StreamStateChanged,
    TranscriptMessage,
)
from recorder.testing.memory_sink import MemorySinkFactory

T0 = 1_763_726_400_000


def lines(plaintext: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in plaintext.decode("utf-8").splitlines()]


def _sealed(pending: PendingRecordsSeal | None) -> SealedRecords | None:
    """The writer only detaches a segment; sealing it is the caller's (blocking) step."""
    return pending.seal() if pending is not None else None


def test_every_event_kind_becomes_one_line_with_names_filled_in() -> None:
    sinks = MemorySinkFactory()
    writer = RecordsWriter(sinks, recording_id="rec-1", now_ms=lambda: T0 + 99)
    fmt = AudioFormat(AudioCodec.L16, 16_000, 1)
    events = [
        ParticipantEvent(T0, 3, "participant_join", (Participant("u1", "Ada Agent"),)),
        AudioPacket("user-u2", T0 + 5, b"\0\0", fmt, user_id="u2", user_name="Carl Caller"),
        TranscriptMessage(T0 + 10, "I would like to sell 200 shares.", user_id="u2"),
        TranscriptMessage(T0 + 20, "Confirmed, sold at market.", user_id="u1"),
        ChatMessage(T0 + 30, "ticket 42", user_id="u1"),
        ContactCenterEvent(T0 + 40, 1, "call_answered", channel_id="ch-1", display_name="Ada"),
        StreamStateChanged(T0 + 50, "stream", 5, "PAUSED"),
        Paused(None, T0 + 51, actor="agent"),
        Resumed(T0 + 60, T0 + 61),
        Interrupted(T0 + 70, GapCause.MEDIA_INTERRUPTED, ("audio",), "socket closed"),
        Recovered(T0 + 80, T0 + 70, GapCause.MEDIA_INTERRUPTED, attempts=2),
        StreamEnded(T0 + 90, 6, "MEETING_ENDED", normal=True),
    ]
    for event in events:
        assert writer.record_event(event) == []
    writer.record_gap(
        "mixed", Gap(0, 32_000, SpanKind.GAP, GapCause.MEDIA_INTERRUPTED), T0 + 70, T0 + 2070
    )
    result = _sealed(writer.close())
    assert result is not None
    plaintext = sinks.sinks[0].plaintext
    assert hashlib.sha256(plaintext).hexdigest() == result.entry.sha256
    records = lines(plaintext)
    kinds = [r["type"] for r in records]
    assert kinds == [
        "participant",
        "transcript",
        "transcript",
        "chat",
        "contact_center",
        "state",
        "paused",
        "resumed",
        "interrupted",
        "recovered",
        "stream_ended",
        "gap",
    ]
    assert records[1]["user_name"] == "Carl Caller"  # learnt from the audio packet
    assert records[2]["user_name"] == "Ada Agent"  # learnt from the join event
    assert records[6] == {
        "ts_ms": T0 + 51,
        "clock": "wall",
        "type": "paused",
        "wall_ms": T0 + 51,
        "actor": "agent",
    }
    assert records[7]["clock"] == "rtms"
    assert records[11]["cause"] == "media_interrupted"
    assert all(isinstance(r["ts_ms"], int) for r in records)
    assert result.entry.count == 12
    assert result.entry.counts["transcript"] == 2
    assert (result.entry.first_ms, result.entry.last_ms) == (T0, T0 + 90)
    assert sinks.sinks[0].identity.track == "records"


def test_records_rotate_by_time_and_unicode_survives() -> None:
    sinks = MemorySinkFactory()
    writer = RecordsWriter(sinks, recording_id="rec-2", now_ms=lambda: T0, segment_seconds=10)
    sealed = []
    for second in range(35):
        pending = writer.record_event(
            TranscriptMessage(T0 + second * 1000, f"Grüße {second} — ok", user_name="Zoë")
        )
        sealed += [p.seal() for p in pending]
    last = _sealed(writer.close(interrupted=True))
    assert last is not None
    entries = [s.entry for s in sealed] + [last.entry]
    assert [e.count for e in entries] == [10, 10, 10, 5]
    assert [e.segment_index for e in entries] == [0, 1, 2, 3]
    assert entries[-1].interrupted
    assert not entries[0].interrupted
    texts = [r["text"] for sink in sinks.sinks for r in lines(sink.plaintext)]
    assert texts[3] == "Grüße 3 — ok"
    assert len(texts) == 35


def test_one_far_future_record_does_not_stop_rotation() -> None:
    """A record stamped ten years ahead is written where it comes; rotation goes on by the
    records' own clock, and by the recorder's when no record reaches the segment's end."""
    sinks = MemorySinkFactory()
    wall = [T0]
    writer = RecordsWriter(sinks, recording_id="rec-3", now_ms=lambda: wall[0], segment_seconds=10)
    sealed = []
    for second in range(35):
        wall[0] = T0 + second * 1000
        if second == 5:
            sealed += writer.record_event(TranscriptMessage(T0 + 10 * 365 * 86_400_000, "wild"))
        sealed += writer.record_event(TranscriptMessage(T0 + second * 1000, f"line {second}"))
    assert [e.entry.count for e in sealed] == [11, 10, 10]


def test_a_far_future_first_record_does_not_stop_rotation_either() -> None:
    sinks = MemorySinkFactory()
    wall = [T0]
    writer = RecordsWriter(sinks, recording_id="rec-4", now_ms=lambda: wall[0], segment_seconds=10)
    sealed = writer.record_event(TranscriptMessage(T0 + 10 * 365 * 86_400_000, "wild"))
    for second in range(35):
        wall[0] = T0 + second * 1000
        sealed += writer.record_event(TranscriptMessage(T0 + second * 1000, f"line {second}"))
    assert len(sealed) == 3


def test_a_segment_hands_its_transcript_lines_to_the_index_in_memory_only() -> None:
    """The blind index's input: each sealed segment's transcript lines (no chat, no events),
    never in the manifest dict or a repr (those can reach logs and files)."""
    writer = RecordsWriter(
        MemorySinkFactory(), recording_id="rec-1", now_ms=lambda: T0, segment_seconds=1
    )
    writer.record_event(TranscriptMessage(T0, "Card number please", user_id="u1"))
    writer.record_event(ChatMessage(T0 + 10, "secret chat", user_id="u1"))
    [first] = writer.record_event(TranscriptMessage(T0 + 1500, "Expiry date", user_id="u2"))
    second = writer.close()
    assert second is not None
    entries = [first.seal().entry, second.seal().entry]
    assert [e.transcript for e in entries] == [("Card number please",), ("Expiry date",)]
    for entry in entries:
        assert "transcript" not in entry.to_dict()
        assert "Card" not in repr(entry)
        assert "Expiry" not in repr(entry)
