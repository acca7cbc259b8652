"""Transcripts, chat, participant/speaker and Contact Center events, state changes, pauses and gaps
as timestamped JSON lines, written per engagement through the same evidence sink as the audio.

One object per line, UTF-8, keys in a stable order; every line has ``type`` and ``ts_ms`` (the
RTMS timestamp when there is one, else the recorder's wall clock, with ``clock`` saying which).
Speaker names are filled in from what the engagement has seen so far (participant events and
audio packets carry ``user_name``; transcripts sometimes do not). The track is ``records``; the
segments rotate on the same duration as audio so the words and the audio of one stretch of a
call sit side by side, and each sealed segment gets a ``RecordsManifestEntry``.

The sink has no prologue here (``prologue_size=0``): a JSON-lines file needs no header.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final

from recorder.audio.manifest import RecordsManifestEntry
from recorder.audio.segments import SEGMENT_SECONDS
from recorder.audio.timeline import Gap
from recorder.crypto.blind_index import TextCollector
from recorder.rtms.events import (
    AudioPacket,
    CaptureEvent,
    ChatMessage,
    ContactCenterEvent,
    FirstPacketTimestamp,
    Interrupted,
    MediaSocketDropped,
    PacketsDropped,
    ParticipantEvent,
    Paused,
    Recovered,
    Resumed,
    StreamEnded,
    StreamStateChanged,
    TranscriptMessage,
)
from recorder.sink import EvidenceSink, SealedSegment, SegmentIdentity, SinkFactory

RECORDS_TRACK: Final = "records"
#: Speaker names remembered per engagement; a bound, since a webinar can have thousands.
_MAX_NAMES: Final = 10_000
#: How far past its segment's end (beyond the wall-clock time elapsed) a record's timestamp may
#: be and still rotate by it; a wilder one is written where it is, and rotation goes on.
_FUTURE_SKEW_MS: Final = 3_600_000

JsonObject = dict[str, object]


@dataclass(frozen=True, slots=True)
class SealedRecords:
    sealed: SealedSegment
    entry: RecordsManifestEntry


@dataclass(frozen=True, slots=True)
class PendingRecordsSeal:
    """A records segment detached from its writer; ``seal()`` is the blocking part."""

    sink: EvidenceSink
    #: Complete but for what only sealing tells (digest, sizes, key id).
    entry: RecordsManifestEntry

    @property
    def track(self) -> str:
        return self.entry.track

    @property
    def segment_index(self) -> int:
        return self.entry.segment_index

    def seal(self) -> SealedRecords:
        sealed = self.sink.close(b"")
        entry = replace(
            self.entry,
            sha256=sealed.sha256,
            plaintext_size=sealed.plaintext_size,
            stored_size=sealed.stored_size,
            key_id=sealed.key_id,
            recovered=sealed.recovered,
        )
        return SealedRecords(sealed, entry)


class RecordsWriter:
    """Writes one engagement's records; not thread-safe (one owner at a time)."""

    def __init__(
        self,
        sinks: SinkFactory,
        *,
        recording_id: str,
        now_ms: Callable[[], int],
        segment_seconds: float = SEGMENT_SECONDS,
        first_index: int = 0,
    ) -> None:
        self._sinks = sinks
        self._recording_id = recording_id
        self._now_ms = now_ms
        self._segment_ms = max(1, round(segment_seconds * 1000))
        self._names: dict[str, str] = {}
        self._sink: EvidenceSink | None = None
        self._next_index = first_index
        self._segment_start_ms = 0
        self._opened_wall_ms = 0
        self._first_ms: int | None = None
        self._last_ms: int | None = None
        self._counts: dict[str, int] = {}
        self._texts = TextCollector()

    def remember_speaker(self, user_id: str | None, user_name: str | None) -> None:
        if user_id and user_name and self._names.get(user_id) != user_name:
            if len(self._names) >= _MAX_NAMES:
                self._names.pop(next(iter(self._names)))
            self._names[user_id] = user_name

    def record_event(self, event: CaptureEvent) -> list[PendingRecordsSeal]:
        """Write the record for one capture event (audio packets only teach speaker names)."""
        if isinstance(event, AudioPacket):
            self.remember_speaker(event.user_id, event.user_name)
            return []
        line = self._to_record(event)
        return self.write_record(line)

    def record_gap(
        self, track: str, gap: Gap, start_ms: int, end_ms: int
    ) -> list[PendingRecordsSeal]:
        """A gap or pause on an audio track, so the transcript view shows where audio is missing."""
        return self.write_record(
            {
                "type": gap.kind.value,
                "ts_ms": start_ms,
                "clock": "rtms",
                "track": track,
                "cause": gap.cause.value if gap.cause is not None else None,
                "actor": gap.actor,
                "end_ms": end_ms,
                "start_sample": gap.start,
                "end_sample": gap.end,
            }
        )

    def write_record(self, record: Mapping[str, object]) -> list[PendingRecordsSeal]:
        """Append one JSON object (must carry ``type`` and ``ts_ms``); rotates by time."""
        ts_ms = record["ts_ms"]
        assert isinstance(ts_ms, int)
        sealed: list[PendingRecordsSeal] = []
        if self._sink is not None and self._due(ts_ms):
            sealed.append(self._seal(interrupted=False))
        if self._sink is None:
            self._open(ts_ms)
        assert self._sink is not None
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        self._sink.write(line.encode("utf-8") + b"\n")
        kind = str(record["type"])
        if kind == "transcript" and isinstance(record.get("text"), str):
            self._texts.add(str(record["text"]))  # for the blind index (in memory only)
        self._counts[kind] = self._counts.get(kind, 0) + 1
        if self._first_ms is None or ts_ms < self._first_ms:
            self._first_ms = ts_ms
        if self._last_ms is None or ts_ms > self._last_ms:
            self._last_ms = ts_ms
        return sealed

    def checkpoint(self) -> None:
        if self._sink is not None:
            self._sink.checkpoint()

    @property
    def sink(self) -> EvidenceSink | None:
        """The open segment's sink, if any (what a checkpoint makes durable)."""
        return self._sink

    def close(self, *, interrupted: bool = False) -> PendingRecordsSeal | None:
        if self._sink is None:
            return None
        return self._seal(interrupted=interrupted)

    # --- internals -----------------------------------------------------------------------------

    def _due(self, ts_ms: int) -> bool:
        """Rotate by the records' own clock, and by the recorder's: a record stamped far in the
        future (a hostile or broken timestamp) would otherwise start a segment that no later
        record reaches, and rotation would stop for the rest of the call."""
        elapsed = self._now_ms() - self._opened_wall_ms
        if elapsed >= self._segment_ms:
            return True
        due = self._segment_start_ms + self._segment_ms
        return due <= ts_ms <= due + max(elapsed, 0) + _FUTURE_SKEW_MS

    def _open(self, ts_ms: int) -> None:
        identity = SegmentIdentity(
            recording_id=self._recording_id,
            track=RECORDS_TRACK,
            segment_index=self._next_index,
            created_ms=self._now_ms(),
            metadata={"kind": "records", "format": "jsonl", "start_ms": ts_ms},
        )
        self._sink = self._sinks.open(identity, prologue_size=0)
        self._next_index += 1
        self._opened_wall_ms = self._now_ms()
        self._segment_start_ms = ts_ms
        self._first_ms = self._last_ms = None
        self._counts = {}

    def _seal(self, *, interrupted: bool) -> PendingRecordsSeal:
        sink = self._sink
        assert sink is not None
        self._sink = None
        entry = RecordsManifestEntry(
            recording_id=self._recording_id,
            segment_index=sink.identity.segment_index,
            first_ms=self._first_ms,
            last_ms=self._last_ms,
            count=sum(self._counts.values()),
            counts=dict(self._counts),
            sha256="",
            plaintext_size=0,
            stored_size=0,
            key_id="",
            interrupted=interrupted,
            transcript=self._texts.take(),
        )
        return PendingRecordsSeal(sink, entry)

    def _name(self, user_id: str | None, user_name: str | None) -> str | None:
        if user_name:
            return user_name
        return self._names.get(user_id) if user_id else None

    def _to_record(self, event: CaptureEvent) -> JsonObject:
        if isinstance(event, TranscriptMessage):
            self.remember_speaker(event.user_id, event.user_name)
            return {
                "type": "transcript",
                "ts_ms": event.timestamp_ms,
                "clock": "rtms",
                "user_id": event.user_id,
                "user_name": self._name(event.user_id, event.user_name),
                "channel_id": event.channel_id,
                "start_ms": event.start_ms,
                "end_ms": event.end_ms,
                "language": event.language,
                "text": event.text,
            }
        if isinstance(event, ChatMessage):
            self.remember_speaker(event.user_id, event.user_name)
            return {
                "type": "chat",
                "ts_ms": event.timestamp_ms,
                "clock": "rtms",
                "user_id": event.user_id,
                "user_name": self._name(event.user_id, event.user_name),
                "text": event.text,
            }
        if isinstance(event, ParticipantEvent):
            for participant in event.participants:
                self.remember_speaker(participant.user_id, participant.user_name)
            return {
                "type": "participant",
                "ts_ms": event.timestamp_ms,
                "clock": "rtms",
                "event": event.name,
                "event_type": event.event_type,
                "participants": [
                    {
                        "user_id": p.user_id,
                        "user_name": self._name(p.user_id, p.user_name),
                    }
                    for p in event.participants
                ],
            }
        if isinstance(event, ContactCenterEvent):
            self.remember_speaker(event.user_id, event.display_name)
            return {
                # Zoom Phone numbers its call events with event_code only (rtms-protocol §16);
                # Contact Center's come with event_type.
                "type": "call_event" if "event_code" in event.extra else "contact_center",
                "ts_ms": event.timestamp_ms,
                "clock": "rtms",
                "event": event.name,
                "event_type": event.event_type,
                "channel_id": event.channel_id,
                "participant_mode": event.participant_mode,
                "queue_id": event.queue_id,
                "queue_name": event.queue_name,
                "user_id": event.user_id,
                "user_name": self._name(event.user_id, event.display_name),
                "extra": event.extra,
            }
        if isinstance(event, FirstPacketTimestamp):
            return {"type": "first_packet", "ts_ms": event.timestamp_ms, "clock": "rtms"}
        if isinstance(event, StreamStateChanged):
            return {
                **self._when(event.timestamp_ms),
                "type": "state",
                "scope": event.scope,
                "state": event.state,
                "state_name": event.state_name,
                "reason": event.reason,
                "reason_name": event.reason_name,
                "rtms_session_id": event.rtms_session_id,
            }
        if isinstance(event, Paused):
            return {
                **self._when(event.timestamp_ms, event.wall_ms),
                "type": "paused",
                "wall_ms": event.wall_ms,
                "actor": event.actor,
            }
        if isinstance(event, Resumed):
            return {
                **self._when(event.timestamp_ms, event.wall_ms),
                "type": "resumed",
                "wall_ms": event.wall_ms,
            }
        if isinstance(event, Interrupted):
            return {
                **self._when(None, event.wall_ms),
                "type": "interrupted",
                "cause": event.cause.value,
                "media": list(event.media),
                "detail": event.detail,
                "interruption_id": event.interruption_id,
            }
        if isinstance(event, Recovered):
            return {
                **self._when(None, event.wall_ms),
                "type": "recovered",
                "cause": event.cause.value,
                "interrupted_wall_ms": event.interrupted_wall_ms,
                "attempts": event.attempts,
                "interruption_id": event.interruption_id,
            }
        if isinstance(event, PacketsDropped):
            return {
                **self._when(None, event.wall_ms),
                "type": "packets_dropped",
                "count": event.count,
                "cause": event.cause.value,
                "track": event.track,
                "first_timestamp_ms": event.first_timestamp_ms,
                "last_timestamp_ms": event.last_timestamp_ms,
            }
        if isinstance(event, MediaSocketDropped):
            return {
                **self._when(None, event.wall_ms),
                "type": "media_socket_dropped",
                "media": list(event.media),
                "status_code": event.status_code,
                "reason": event.reason,
                "detail": event.detail,
            }
        assert isinstance(event, StreamEnded)
        return {
            **self._when(None, event.wall_ms),
            "type": "stream_ended",
            "reason": event.reason,
            "reason_name": event.reason_name,
            "normal": event.normal,
            "revoked": event.revoked,
        }

    def _when(self, rtms_ms: int | None, wall_ms: int | None = None) -> JsonObject:
        if rtms_ms is not None:
            return {"ts_ms": rtms_ms, "clock": "rtms"}
        return {"ts_ms": wall_ms if wall_ms is not None else self._now_ms(), "clock": "wall"}
