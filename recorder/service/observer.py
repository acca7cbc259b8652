"""The stream observer: what the capture sees becomes evidence intents, metrics and status.

The capture pipeline calls ``observe`` for every non-audio event and each track's first audio
packet, and ``on_sealed`` for every sealed segment. Nothing here waits on the catalog: each fact
becomes an intent for the engagement's ``EvidenceRecorder`` (participants, the Contact Center
queue and agent, segments and record files with their spool hand-off, gaps, pauses, the
takeover gap), and the per-process metrics and the engagement's live status are updated in
place. One job, one home: the engagement owns the lifetime, the lease keeper the lease, the
evidence recorder the catalog writes, this module the meaning of what was observed.
"""

from __future__ import annotations

import functools
from typing import Final

from recorder.audio.manifest import ManifestEntry, RecordsManifestEntry, SegmentManifestEntry
from recorder.catalog.base import EvidenceKind, NewRecordFile, NewSegment, ParticipantInfo
from recorder.rtms.events import (
    AudioPacket,
    CaptureEvent,
    ContactCenterEvent,
    Interrupted,
    PacketsDropped,
    ParticipantEvent,
    Paused,
    Recovered,
    Resumed,
    StreamEnded,
)
from recorder.service import evidence_recorder as intents
from recorder.service import start_trace
from recorder.service.components import Components
from recorder.service.evidence import evidence_key, retain_until, spool_sealed
from recorder.service.evidence_recorder import EvidenceRecorder
from recorder.service.pause_evidence import PauseEvidence
from recorder.service.status import EngagementSpec, EngagementStatus
from recorder.service.text_index import TranscriptIndexer
from recorder.sink import SealedSegment

#: RTMS event types that name participants joining (meetings) or a ZCC party answering.
_PARTICIPANT_JOIN: Final = 3
_ZCC_ANSWERED: Final = frozenset({8, 10})


class StreamObserver:
    """Turns one engagement's capture events and sealed segments into evidence intents."""

    def __init__(
        self,
        components: Components,
        spec: EngagementSpec,
        status: EngagementStatus,
        evidence: EvidenceRecorder,
        *,
        epoch: int,
        first_segment_index: int,
        previous_checkpoint_ms: int | None = None,
    ) -> None:
        self.c = components
        self.spec = spec
        self.status = status
        self.evidence = evidence
        self._epoch = epoch
        self._first_segment_index = first_segment_index
        #: The previous owner's last durable checkpoint, from the lease row at our claim.
        self._previous_checkpoint_ms = previous_checkpoint_ms
        self._first_sealed_tracks: set[str] = set()
        self._speakers: set[str] = set()
        #: Names who asked for a pause, flags long and unconfirmed ones (set by the engagement).
        self.pauses: PauseEvidence | None = None
        self._text_index = TranscriptIndexer(components.config.keys.key_dir)

    async def observe(self, event: CaptureEvent) -> CaptureEvent | None:
        """Called by the pipeline for every non-audio event and each track's first packet;
        returns a replacement event (a ``Paused`` naming its actor) or None."""
        if self.pauses is not None and isinstance(event, Paused | Resumed | StreamEnded):
            replaced = await self.pauses.on_event(event)
            if isinstance(event, StreamEnded):
                self.status.ended = event
            return replaced
        if type(event) is AudioPacket:
            if event.track not in self._speakers:
                if not self._speakers:
                    start_trace.mark("first_packet", self.spec.rtms_stream_id)
                self._speakers.add(event.track)
                self._note_speaker(event)
        elif isinstance(event, ParticipantEvent | ContactCenterEvent):
            self._note_participants(event)
        elif isinstance(event, PacketsDropped):
            self.c.metrics.add_dropped_frames(str(event.cause), event.count)
        elif isinstance(event, Interrupted):
            self.status.interruptions += 1
        elif isinstance(event, Recovered):
            self.c.metrics.add_reconnect(str(event.cause))
        elif isinstance(event, StreamEnded):
            self.status.ended = event
        return None

    def _note_speaker(self, packet: AudioPacket) -> None:
        """A per-speaker track names its participant; RTMS sends no join for who was there."""
        recording_id = self.status.recording_id
        if recording_id is None or packet.user_id is None or packet.user_id == "0":
            return
        self.evidence.submit(
            intents.participants(
                recording_id,
                [
                    ParticipantInfo(
                        packet.user_id, packet.user_name, first_seen_ms=packet.timestamp_ms
                    )
                ],
            )
        )

    def _note_participants(self, event: ParticipantEvent | ContactCenterEvent) -> None:
        recording_id = self.status.recording_id
        if recording_id is None:
            return
        people: list[ParticipantInfo] = []
        if isinstance(event, ParticipantEvent) and event.event_type == _PARTICIPANT_JOIN:
            people = [
                ParticipantInfo(p.user_id, p.user_name, first_seen_ms=event.timestamp_ms)
                for p in event.participants
            ]
        elif isinstance(event, ContactCenterEvent) and event.event_type in _ZCC_ANSWERED:
            if event.channel_id:
                people = [
                    ParticipantInfo(
                        event.user_id or f"channel-{event.channel_id}",
                        event.display_name,
                        role=event.participant_mode,
                        first_seen_ms=event.timestamp_ms,
                    )
                ]
            if event.queue_id or event.queue_name:
                agent = event.participant_mode == "callee"
                self.evidence.submit(
                    intents.contact_center(
                        recording_id,
                        queue_id=event.queue_id,
                        queue_name=event.queue_name,
                        agent_id=event.user_id if agent else None,
                        agent_name=event.display_name if agent else None,
                    )
                )
        if people:
            self.evidence.submit(intents.participants(recording_id, people))

    def _object_key(self, sealed: SealedSegment, kind: EvidenceKind) -> str:
        return evidence_key(
            sealed.identity,
            kind,
            product=self.spec.product.value,
            instance_id=self.spec.instance_id,
            rtms_stream_id=self.spec.rtms_stream_id,
        )

    async def on_sealed(self, sealed: SealedSegment, entry: ManifestEntry) -> None:
        """Catalog first (pending), then the spool: both by the evidence recorder, so the
        capture never waits for them (see the module docstring)."""
        recording_id = sealed.identity.recording_id
        retain = await retain_until(self.c, recording_id)
        retain_ms = int(retain.timestamp() * 1000)
        if isinstance(entry, SegmentManifestEntry):
            kind = EvidenceKind.SEGMENT
            key = self._object_key(sealed, kind)
            intent = intents.segment(
                NewSegment.from_sealed(
                    sealed,
                    object_key=key,
                    start_ms=entry.start_ms,
                    end_ms=entry.end_ms,
                    start_sample=entry.start_sample,
                    sample_count=entry.end_sample - entry.start_sample,
                    sample_rate=entry.sample_rate,
                    codec=entry.source,
                    retain_until_ms=retain_ms,
                    participant_id=entry.participant.user_id or entry.participant.channel_id,
                )
            )
        else:
            kind = EvidenceKind.RECORD
            key = self._object_key(sealed, kind)
            intent = intents.record_file(
                NewRecordFile(
                    recording_id=recording_id,
                    kind=entry.track,
                    record_index=entry.segment_index,
                    object_key=key,
                    plaintext_sha256=sealed.sha256,
                    plaintext_size=sealed.plaintext_size,
                    stored_size=sealed.stored_size,
                    start_ms=entry.first_ms or 0,
                    end_ms=entry.last_ms or 0,
                    key_id=sealed.key_id,
                    retain_until_ms=retain_ms,
                    recovered=sealed.recovered,
                    stored_sha256=sealed.stored_sha256,
                )
            )
        self.evidence.submit(
            intent,
            functools.partial(spool_sealed, self.c, sealed, kind, key=key, retain=retain),
            holds=sealed.path,
        )
        if isinstance(entry, RecordsManifestEntry) and entry.transcript:
            # The transcript's words as blind-index MACs only (the words stay in memory).
            indexed = await self._text_index.intent(recording_id, entry.transcript)
            if indexed is not None:
                self.evidence.submit(indexed)
        if isinstance(entry, SegmentManifestEntry):
            self._note_spans(entry)
        self.status.segments_sealed += 1

    def _note_spans(self, entry: SegmentManifestEntry) -> None:
        metrics = self.c.metrics
        rate = entry.sample_rate
        total_s = (entry.end_sample - entry.start_sample) / rate
        gap_s = 0.0
        if entry.track not in self._first_sealed_tracks:
            self._first_sealed_tracks.add(entry.track)
            if self._epoch > 1:
                # After a takeover or restart, account for the time nobody recorded this track.
                self.evidence.submit(
                    intents.takeover_gap(
                        entry.recording_id,
                        entry.track,
                        start_ms=entry.start_ms,
                        first_segment_index=self._first_segment_index,
                        epoch=self._epoch,
                        checkpoint_ms=self._previous_checkpoint_ms,
                    )
                )
        gaps, pauses = list(entry.gaps), list(entry.pauses)
        absence = entry.absence
        if absence is not None:
            # A retired track's absence is in no WAV (no sample range in the catalog), but it is
            # a gap (or a pause) all the same, and expected time.
            total_s += (absence.end_sample - absence.start_sample) / rate
            (pauses if absence.kind == "pause" else gaps).insert(0, absence)
        for span in gaps:
            seconds = (span.end_sample - span.start_sample) / rate
            gap_s += seconds
            cause = span.cause or "unknown"
            metrics.add_gap(cause, seconds)
            self.status.gap_seconds[cause] = self.status.gap_seconds.get(cause, 0.0) + seconds
            where = (
                {"detail": "track retired; no audio until it reopened"}
                if span is absence
                else {"start_sample": span.start_sample, "end_sample": span.end_sample}
            )
            self.evidence.submit(
                intents.gap(
                    entry.recording_id,
                    entry.track,
                    start_ms=span.start_ms,
                    end_ms=span.end_ms,
                    cause=cause,
                    **where,
                )
            )
        for span in pauses:
            seconds = (span.end_sample - span.start_sample) / rate
            gap_s += seconds
            metrics.add_paused(seconds)
            self.evidence.submit(
                intents.pause(
                    entry.recording_id, start_ms=span.start_ms, end_ms=span.end_ms, actor=span.actor
                )
            )
        metrics.add_capture(expected_s=total_s, captured_s=max(total_s - gap_s, 0.0))
        self.status.seconds_captured += max(total_s - gap_s, 0.0)
