"""Manifest entries: what each sealed segment holds, so an officer can account for every sample.

Plain frozen dataclasses with a ``to_dict()`` that is JSON-ready (the catalog and the export
manifest store exactly that). Times named ``*_ms`` are UTC Unix milliseconds (RTMS's clock);
``*_sample`` are sample indexes on the track's timeline (absolute) or within the segment
(``segment_*``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recorder.sink import SealedSegment


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """A gap or a pause inside a segment, filled with silence in the WAV."""

    kind: str  #: ``gap`` or ``pause``
    cause: str | None  #: a ``GapCause`` value for gaps; None for pauses
    actor: str | None
    start_sample: int
    end_sample: int
    segment_start_sample: int
    segment_end_sample: int
    start_ms: int
    end_ms: int

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "cause": self.cause,
            "actor": self.actor,
            "start_sample": self.start_sample,
            "end_sample": self.end_sample,
            "segment_start_sample": self.segment_start_sample,
            "segment_end_sample": self.segment_end_sample,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
        }


@dataclass(frozen=True, slots=True)
class Participant:
    """Who a track belongs to: a user in per-speaker mode, a ZCC channel, or nobody (mixed)."""

    user_id: str | None = None
    user_name: str | None = None
    channel_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "user_name": self.user_name,
            "channel_id": self.channel_id,
        }


@dataclass(frozen=True, slots=True)
class SegmentManifestEntry:
    """One sealed audio segment."""

    recording_id: str
    #: Full engagement or meeting id (the bext field only holds 32 bytes of it).
    originator_reference: str
    track: str
    segment_index: int
    participant: Participant
    start_ms: int
    end_ms: int
    start_sample: int
    end_sample: int
    sample_rate: int
    channels: int
    #: ``OPUS 48000 stereo``: the codec, rate and layout RTMS sent.
    source: str
    decoder_version: str
    spans: tuple[SpanRecord, ...]
    sha256: str
    plaintext_size: int
    stored_size: int
    key_id: str
    data_length: int
    #: Sealed by an interrupted shutdown (cancellation, error) rather than a normal rotation/end.
    interrupted: bool = False
    recovered: bool = False
    #: Placement correction that followed the sender's clock, at the segment's end (samples).
    drift_samples: int = 0
    #: The first segment of a track reopened after a retirement: the time between the track's
    #: previous segment and this one, which no WAV holds (no silence is written for it), with
    #: its cause. Sample positions are on the track's axis; ``segment_*`` are negative.
    absence: SpanRecord | None = None

    @property
    def gaps(self) -> tuple[SpanRecord, ...]:
        return tuple(span for span in self.spans if span.kind == "gap")

    @property
    def pauses(self) -> tuple[SpanRecord, ...]:
        return tuple(span for span in self.spans if span.kind == "pause")

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": "audio",
            "recording_id": self.recording_id,
            "originator_reference": self.originator_reference,
            "track": self.track,
            "segment_index": self.segment_index,
            "participant": self.participant.to_dict(),
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "start_sample": self.start_sample,
            "end_sample": self.end_sample,
            "output": {
                "format": "wav-bext",
                "sample_rate": self.sample_rate,
                "channels": self.channels,
                "bits": 16,
            },
            "source": self.source,
            "decoder_version": self.decoder_version,
            "gaps": [span.to_dict() for span in self.gaps],
            "pauses": [span.to_dict() for span in self.pauses],
            "sha256": self.sha256,
            "plaintext_size": self.plaintext_size,
            "stored_size": self.stored_size,
            "key_id": self.key_id,
            "data_length": self.data_length,
            "interrupted": self.interrupted,
            "recovered": self.recovered,
            "drift_samples": self.drift_samples,
            "absence": self.absence.to_dict() if self.absence is not None else None,
        }


@dataclass(frozen=True, slots=True)
class RecordsManifestEntry:
    """One sealed JSON-lines records segment (transcript, chat, events, state, gaps)."""

    recording_id: str
    segment_index: int
    first_ms: int | None
    last_ms: int | None
    count: int
    counts: dict[str, int]
    sha256: str
    plaintext_size: int
    stored_size: int
    key_id: str
    interrupted: bool = False
    recovered: bool = False
    track: str = "records"
    #: The transcript lines, for the blind index (the service turns their words into MACs off
    #: the event loop and drops them). In memory only: never in ``to_dict``, never in ``repr``.
    transcript: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": "records",
            "recording_id": self.recording_id,
            "track": self.track,
            "segment_index": self.segment_index,
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
            "count": self.count,
            "counts": dict(self.counts),
            "sha256": self.sha256,
            "plaintext_size": self.plaintext_size,
            "stored_size": self.stored_size,
            "key_id": self.key_id,
            "interrupted": self.interrupted,
            "recovered": self.recovered,
        }


ManifestEntry = SegmentManifestEntry | RecordsManifestEntry


@dataclass(slots=True)
class EngagementManifest:
    """Everything one engagement produced, in the order segments were sealed."""

    recording_id: str
    entries: list[ManifestEntry] = field(default_factory=list)
    sealed: list[SealedSegment] = field(default_factory=list)
    #: Counters per track: duplicate, late, priming samples; decode errors; dropped packets.
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    #: How the engagement ended: ``ended``, ``cancelled``, ``error``, ``channel_closed``.
    outcome: str = "ended"
    #: Keep every entry and sealed segment here. Production hands each on as it is sealed
    #: (``on_sealed``) and keeps none: 3 speakers cost ~1.8 MiB an hour otherwise.
    keep_entries: bool = True
    #: Sealed segments, entries included or not.
    sealed_count: int = 0
    #: Finalisation ran out of time: segments still being sealed were left to startup
    #: recovery (their ``.part`` files), and are not in ``entries``.
    finalize_timed_out: bool = False

    def note(self, sealed: SealedSegment, entry: ManifestEntry) -> None:
        self.sealed_count += 1
        if self.keep_entries:
            self.entries.append(entry)
            self.sealed.append(sealed)

    def audio_entries(self, track: str | None = None) -> list[SegmentManifestEntry]:
        return [
            entry
            for entry in self.entries
            if isinstance(entry, SegmentManifestEntry) and (track is None or entry.track == track)
        ]

    def records_entries(self) -> list[RecordsManifestEntry]:
        return [entry for entry in self.entries if isinstance(entry, RecordsManifestEntry)]

    def to_dict(self) -> dict[str, object]:
        return {
            "recording_id": self.recording_id,
            "outcome": self.outcome,
            "counters": {track: dict(values) for track, values in self.counters.items()},
            "segments": [entry.to_dict() for entry in self.entries],
        }
