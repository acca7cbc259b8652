"""Per-track WAV/BWF segments written through the evidence sink, rotated by duration and size.

A ``SegmentWriter`` consumes a track's timeline items in order (``Audio`` and ``Gap``, which are
contiguous by construction), writes PCM and silence into the current segment's sink, and seals
the segment with its WAV header as the deferred prologue when the segment reaches its duration
(``segment_seconds``), its size cap (``max_data_length``) or the end of the engagement.

Rules:

* A segment covers whole sample ranges ``[start_sample, end_sample)`` of the track timeline;
  item boundaries are split exactly at the rotation point, so consecutive segments abut.
* Silence for a gap is written from one shared zero block, a block at a time: a long gap costs
  no memory.
* Every gap or pause inside a segment becomes a ``SpanRecord`` in its manifest entry, with
  sample ranges relative to the segment and absolute, and UTC times.
* The segment is opened lazily, when its first sample arrives, so an engagement that ends right
  after a rotation does not leave an empty segment behind.
* The next segment is **pre-opened** ``preopen_s`` before the open one is full: its start sample
  is known exactly (this one's start plus the rotation length) and its origination time is
  fixed then, from the clock as it stands (the drift correction moves it by a millisecond at
  most meanwhile); the full segment's end time is that same instant, so the two abut exactly.
  A spare that is not needed (the track ends or retires first) is discarded unwritten and its
  index reused.

Blocking: ``write`` appends to the sink (buffered, encrypted as written). A full or closed
segment is detached from the writer and returned as a ``PendingAudioSeal``: its prologue and
manifest entry are fixed at once, and ``seal()`` (close, fsync, rename, read-back) is the only
blocking part, run off the trio thread by whoever drives the writer (``recorder.capture``).
``checkpoint`` is blocking too. ``sample_offset`` places a track reopened after a retirement on
its old sample axis: item positions come from a fresh timeline, segments carry absolute ones.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

from recorder.audio.manifest import Participant, SegmentManifestEntry, SpanRecord
from recorder.audio.timeline import Audio, Gap, TimelineItem
from recorder.audio.wav import (
    HEADER_SIZE,
    MAX_DATA_LENGTH,
    BextInfo,
    bext_metadata,
    build_wav_header,
    coding_history,
)
from recorder.errors import LocalProtocolError
from recorder.rtms.events import GapCause
from recorder.sink import (
    EvidenceSink,
    SealedSegment,
    SegmentIdentity,
    SinkFactory,
    SpareSink,
    SpareSinkFactory,
)

logger = logging.getLogger(__name__)

#: Default rotation: five minutes per segment (issue 4).
SEGMENT_SECONDS: Final = 300
#: Silence is written in blocks of this many bytes.
_ZERO_BLOCK: Final = bytes(64 * 1024)
#: Gap causes that say only "nothing arrived", which a later fact may name better.
_RENAMEABLE: Final = frozenset({GapCause.LOST_PACKETS.value, GapCause.NO_SPEECH.value})
#: The next segment is opened this long before the open one is full (see module doc).
PREOPEN_SECONDS: Final = 2.0
_NEVER: Final = sys.maxsize


@dataclass(frozen=True, slots=True)
class _Spare:
    """The next segment, opened ahead: nothing is written to it until the rotation."""

    sink: SpareSink
    bext: BextInfo
    start: int


@dataclass(frozen=True, slots=True)
class TrackFormat:
    """What a track's segments are: output PCM format plus where it came from."""

    track: str
    sample_rate: int
    channels: int
    #: ``OPUS 48000 stereo`` (see ``recorder.audio.decoder.describe_source``).
    source: str
    decoder_version: str
    participant: Participant = field(default_factory=Participant)


@dataclass(frozen=True, slots=True)
class SealedAudio:
    sealed: SealedSegment
    entry: SegmentManifestEntry


@dataclass(frozen=True, slots=True)
class PendingAudioSeal:
    """A segment detached from its writer: nobody writes to ``sink`` any more."""

    sink: EvidenceSink
    prologue: bytes
    #: Complete but for what only sealing tells (digest, sizes, key id).
    entry: SegmentManifestEntry

    @property
    def track(self) -> str:
        return self.entry.track

    @property
    def segment_index(self) -> int:
        return self.entry.segment_index

    def seal(self) -> SealedAudio:
        """Close the segment (blocking: fsync, rename, read-back)."""
        sealed = self.sink.close(self.prologue)
        entry = replace(
            self.entry,
            sha256=sealed.sha256,
            plaintext_size=sealed.plaintext_size,
            stored_size=sealed.stored_size,
            key_id=sealed.key_id,
            recovered=sealed.recovered,
        )
        logger.debug(
            "segment sealed recording_id=%s track=%s segment=%d samples=%d",
            entry.recording_id,
            entry.track,
            entry.segment_index,
            entry.end_sample - entry.start_sample,
        )
        return SealedAudio(sealed, entry)


class SegmentWriter:
    """See the module docstring. One per track; not thread-safe (one owner at a time)."""

    def __init__(
        self,
        sinks: SinkFactory,
        *,
        recording_id: str,
        originator_reference: str,
        fmt: TrackFormat,
        sample_to_ms: Callable[[int], int],
        now_ms: Callable[[], int],
        segment_seconds: float = SEGMENT_SECONDS,
        max_data_length: int = MAX_DATA_LENGTH,
        drift_samples: Callable[[], int] | None = None,
        first_index: int = 0,
        sample_offset: int = 0,
        absence: SpanRecord | None = None,
        preopen_s: float = PREOPEN_SECONDS,
    ) -> None:
        self._sinks = sinks
        self._recording_id = recording_id
        self._reference = originator_reference
        self._fmt = fmt
        self._sample_to_ms = sample_to_ms
        self._now_ms = now_ms
        self._drift = drift_samples
        self._frame = 2 * fmt.channels
        if segment_seconds <= 0:
            raise LocalProtocolError("segment_seconds must be positive")
        self._segment_samples = max(1, round(segment_seconds * fmt.sample_rate))
        cap = min(max_data_length, MAX_DATA_LENGTH)
        self._cap_samples = cap // self._frame
        if self._cap_samples < 1:
            raise LocalProtocolError(f"max_data_length {max_data_length} holds no sample")
        #: Samples per segment: the rotation duration or the size cap, whichever is smaller.
        self._limit = min(self._segment_samples, self._cap_samples)
        self._first_index = first_index
        self._next_index = first_index
        self._sink: EvidenceSink | None = None
        self._bext: BextInfo | None = None
        self._start = 0
        self._written = 0  # samples in the open segment
        self._spans: list[SpanRecord] = []
        #: Next absolute sample expected (items must be contiguous).
        self._position: int | None = None
        #: Added to every item position (a reopened track's fresh timeline starts at 0).
        self._offset = sample_offset
        #: The time this track was retired before this writer, told by its first segment.
        self._absence = absence
        #: Where spares come from: only a factory that keeps them out of crash recovery's
        #: sight (``SpareSinkFactory``) pre-opens.
        self._spares = sinks if isinstance(sinks, SpareSinkFactory) else None
        #: Samples before the limit at which the next segment is pre-opened (0: never).
        self._preopen = (
            min(round(preopen_s * fmt.sample_rate), self._limit // 2)
            if preopen_s > 0 and self._spares is not None
            else 0
        )
        #: ``_written`` value that triggers the pre-open of the next segment.
        self._preopen_at = _NEVER
        self._spare: _Spare | None = None

    @property
    def track(self) -> str:
        return self._fmt.track

    @property
    def is_open(self) -> bool:
        return self._sink is not None

    @property
    def sink(self) -> EvidenceSink | None:
        """The open segment's sink, if any (what a checkpoint makes durable)."""
        return self._sink

    @property
    def next_index(self) -> int:
        """Index the next segment this writer opens will get."""
        return self._next_index

    @property
    def segments_sealed(self) -> int:
        unsealed = (self._sink is not None) + (self._spare is not None)
        return self._next_index - self._first_index - unsealed

    def write(self, item: TimelineItem) -> list[PendingAudioSeal]:
        """Append one timeline item; returns the segments this detached by rotation."""
        item_start = item.start + self._offset
        if self._position is not None and item_start != self._position:
            raise LocalProtocolError(
                f"track {self._fmt.track}: item at sample {item_start}, expected {self._position}"
            )
        if isinstance(item, Audio):
            pcm = item.pcm
            count = len(pcm) // self._frame
            sink = self._sink
            if sink is not None and self._written + count < self._limit:
                # The per-packet case: the chunk fits in the open segment.
                sink.write(pcm)
                self._written += count
                self._position = item_start + count
                if self._written >= self._preopen_at:
                    self._preopen_next()
                return []
        sealed: list[PendingAudioSeal] = []
        if isinstance(item, Audio):
            start = item_start
            remaining = len(pcm) // self._frame
            offset = 0
            while remaining:
                sink = self._ensure_open(start, sealed)
                take = min(remaining, self._room())
                sink.write(
                    pcm
                    if take * self._frame == len(pcm)
                    else pcm[offset * self._frame : (offset + take) * self._frame]
                )
                self._written += take
                offset += take
                start += take
                remaining -= take
            self._position = item_start + len(pcm) // self._frame
        else:
            self._write_gap(item, sealed)
            self._position = item.end + self._offset
        if self._written >= self._preopen_at:
            self._preopen_next()
        return sealed

    def checkpoint(self) -> None:
        """Make what was written durable (blocking)."""
        if self._sink is not None:
            self._sink.checkpoint()

    def close(self, *, interrupted: bool = False) -> PendingAudioSeal | None:
        """Detach the open segment, if any, for sealing; discard an unneeded spare."""
        pending = self._seal(interrupted=interrupted) if self._sink is not None else None
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.sink.discard()
            # The spare took the last index; the next segment (after a reopen) reuses it.
            self._next_index -= 1
        return pending

    def place(self, sample_offset: int, absence: SpanRecord | None) -> None:
        """Where a reopened track's fresh timeline sits on the track's axis, and the absence
        before it: known only once that timeline anchored, always before its first item."""
        if self._position is not None or self._sink is not None:
            raise LocalProtocolError(f"track {self.track} placed after it was written to")
        self._offset = sample_offset
        self._absence = absence

    def relabel(self, start: int, end: int, cause: GapCause) -> None:
        """Name the part ``start``..``end`` (timeline positions) of a gap already written in the
        open segment.

        Late packets learn the true cause of a gap only after its silence was written; spans of
        a sealed segment stay as they were (the records say the rest). Only unexplained gaps
        (``LOST_PACKETS``, ``NO_SPEECH``) are renamed; an interruption or pause keeps its name.
        """
        if self._sink is None:
            return
        # Timeline positions, like the items written; the spans are on the track's axis.
        start, end = start + self._offset, end + self._offset
        renamed: list[SpanRecord] = []
        for span in self._spans:
            cut_start, cut_end = max(start, span.start_sample), min(end, span.end_sample)
            if cut_end <= cut_start or span.kind != "gap" or span.cause not in _RENAMEABLE:
                renamed.append(span)
                continue
            pieces = [
                (span.start_sample, cut_start, span.cause),
                (cut_start, cut_end, cause.value),
                (cut_end, span.end_sample, span.cause),
            ]
            renamed += [
                SpanRecord(
                    kind=span.kind,
                    cause=piece_cause,
                    actor=span.actor,
                    start_sample=a,
                    end_sample=b,
                    segment_start_sample=a - self._start,
                    segment_end_sample=b - self._start,
                    start_ms=self._sample_to_ms(a),
                    end_ms=self._sample_to_ms(b),
                )
                for a, b, piece_cause in pieces
                if b > a
            ]
        self._spans = renamed

    # --- internals -----------------------------------------------------------------------------

    def _room(self) -> int:
        return self._limit - self._written

    def _ensure_open(self, start: int, sealed: list[PendingAudioSeal]) -> EvidenceSink:
        if self._sink is not None and self._room() <= 0:
            sealed.append(self._seal(interrupted=False))
        if self._sink is None:
            self._open(start)
        assert self._sink is not None
        return self._sink

    def _open(self, start: int) -> None:
        spare, self._spare = self._spare, None
        if spare is not None and spare.start == start:
            spare.sink.adopt()
            self._sink, self._bext = spare.sink, spare.bext
        else:
            if spare is not None:
                # Unreachable by rotation (segments abut); kept safe all the same.
                spare.sink.discard()
            self._sink, self._bext = self._open_sink(start)
        self._start = start
        self._written = 0
        self._spans = []
        self._preopen_at = self._limit - self._preopen if self._preopen else _NEVER

    def _preopen_next(self) -> None:
        self._preopen_at = _NEVER
        assert self._spares is not None
        start = self._start + self._limit
        identity, bext = self._identity(start)
        sink = self._spares.open_spare(identity, prologue_size=HEADER_SIZE)
        self._next_index += 1
        self._spare = _Spare(sink, bext, start)

    def _open_sink(self, start: int) -> tuple[EvidenceSink, BextInfo]:
        identity, bext = self._identity(start)
        sink = self._sinks.open(identity, prologue_size=HEADER_SIZE)
        self._next_index += 1
        return sink, bext

    def _identity(self, start: int) -> tuple[SegmentIdentity, BextInfo]:
        fmt = self._fmt
        origination_ms = self._sample_to_ms(start)
        bext = BextInfo(
            originator_reference=self._reference,
            origination_ms=origination_ms,
            description=f"{self._recording_id} {fmt.track} #{self._next_index}",
            coding_history=coding_history(
                sample_rate=fmt.sample_rate,
                channels=fmt.channels,
                source=fmt.source,
                decoder_version=fmt.decoder_version,
            ),
        )
        metadata = bext_metadata(sample_rate=fmt.sample_rate, channels=fmt.channels, bext=bext)
        metadata.update({"kind": "audio", "source": fmt.source, "start_sample": start})
        identity = SegmentIdentity(
            recording_id=self._recording_id,
            track=fmt.track,
            segment_index=self._next_index,
            created_ms=self._now_ms(),
            metadata=metadata,
        )
        return identity, bext

    def _write_gap(self, gap: Gap, sealed: list[PendingAudioSeal]) -> None:
        start, gap_end = gap.start + self._offset, gap.end + self._offset
        while start < gap_end:
            sink = self._ensure_open(start, sealed)
            take = min(gap_end - start, self._room())
            self._spans.append(
                SpanRecord(
                    kind=gap.kind.value,
                    cause=gap.cause.value if gap.cause is not None else None,
                    actor=gap.actor,
                    start_sample=start,
                    end_sample=start + take,
                    segment_start_sample=start - self._start,
                    segment_end_sample=start + take - self._start,
                    start_ms=self._sample_to_ms(start),
                    end_ms=self._sample_to_ms(start + take),
                )
            )
            remaining = take * self._frame
            block = len(_ZERO_BLOCK)
            while remaining >= block:
                sink.write(_ZERO_BLOCK)
                remaining -= block
            if remaining:
                sink.write(_ZERO_BLOCK[:remaining])
            self._written += take
            start += take

    def _seal(self, *, interrupted: bool) -> PendingAudioSeal:
        sink, bext = self._sink, self._bext
        assert sink is not None
        assert bext is not None
        # Detached here, closed by the pending seal (``sink.close`` releases its descriptor and
        # lock even when it fails, leaving the .part for recovery).
        self._sink = None
        data_length = self._written * self._frame
        header = build_wav_header(
            sample_rate=self._fmt.sample_rate,
            channels=self._fmt.channels,
            data_length=data_length,
            bext=bext,
        )
        end = self._start + self._written
        spare = self._spare
        # The next segment's origination was fixed when it was pre-opened: the two abut.
        end_ms = (
            spare.bext.origination_ms
            if spare is not None and spare.start == end
            else self._sample_to_ms(end)
        )
        absence, self._absence = self._absence, None
        entry = SegmentManifestEntry(
            recording_id=self._recording_id,
            originator_reference=self._reference,
            track=self._fmt.track,
            segment_index=sink.identity.segment_index,
            participant=self._fmt.participant,
            start_ms=bext.origination_ms,
            end_ms=end_ms,
            start_sample=self._start,
            end_sample=end,
            sample_rate=self._fmt.sample_rate,
            channels=self._fmt.channels,
            source=self._fmt.source,
            decoder_version=self._fmt.decoder_version,
            spans=tuple(self._spans),
            sha256="",
            plaintext_size=0,
            stored_size=0,
            key_id="",
            data_length=data_length,
            interrupted=interrupted,
            drift_samples=self._drift() if self._drift is not None else 0,
            absence=absence,
        )
        return PendingAudioSeal(sink, header, entry)
