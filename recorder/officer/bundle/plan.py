"""Where every segment and every filled gap sits in a track's whole-call WAV (pure).

A track's segments are laid end to end in segment order. While the recorder's timeline goes on,
a segment starts at the sample where the previous one ended plus any samples the timeline skipped
(``start_sample`` jumps); when a new timeline began (a takeover by another recorder process, a
format change after a reconnect), ``start_sample`` starts again and the distance is taken from the
RTMS clock instead. Whatever lies between two segments is written as silence and listed as a
``filled`` span, with the catalog's gap cause when a catalog gap covers it. Gaps inside segments
are silence the recorder already wrote; they are listed at their exact samples too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from recorder.catalog.base import GapRow, SegmentRow
from recorder.errors import RecorderError


class PlanError(RecorderError):
    """A track's segments cannot be laid on one clock (the message names the segment)."""


@dataclass(frozen=True, slots=True)
class Placed:
    """A segment at ``position`` (samples from the WAV's start)."""

    segment: SegmentRow
    position: int


@dataclass(frozen=True, slots=True)
class Filler:
    """Silence written between segments: ``count`` samples at ``position``."""

    position: int
    count: int
    start_ms: int
    end_ms: int
    cause: str


@dataclass(frozen=True, slots=True)
class ListedGap:
    """A catalog gap at its place in the WAV (samples), for the manifest."""

    start_ms: int
    end_ms: int
    wav_start_sample: int
    wav_end_sample: int
    cause: str
    detail: str


@dataclass(frozen=True, slots=True)
class TrackPlan:
    track: str
    sample_rate: int
    #: RTMS time (Unix ms) of the WAV's first sample.
    start_ms: int
    pieces: tuple[Placed | Filler, ...]
    gaps: tuple[ListedGap, ...]

    @property
    def total_samples(self) -> int:
        last = self.pieces[-1]
        if isinstance(last, Placed):
            return last.position + last.segment.sample_count
        return last.position + last.count

    @property
    def fillers(self) -> tuple[Filler, ...]:
        return tuple(p for p in self.pieces if isinstance(p, Filler))

    def ms_to_sample(self, ms: int) -> int:
        """The WAV sample of an RTMS time, through the segment (or filler) holding it."""
        for piece in self.pieces:
            if isinstance(piece, Placed):
                seg = piece.segment
                if ms < seg.end_ms or piece is self.pieces[-1]:
                    offset = ((ms - seg.start_ms) * seg.sample_rate + 500) // 1000
                    return max(0, piece.position + offset)
            elif ms < piece.end_ms:
                offset = ((ms - piece.start_ms) * self.sample_rate + 500) // 1000
                return piece.position + max(0, min(offset, piece.count))
        return self.total_samples


def _covering_cause(gaps: Sequence[GapRow], start_ms: int, end_ms: int) -> str:
    causes = sorted({g.cause for g in gaps if g.start_ms < end_ms and g.end_ms > start_ms})
    return ",".join(causes) if causes else "not_recorded"


def plan_track(track: str, segments: Sequence[SegmentRow], gaps: Sequence[GapRow]) -> TrackPlan:
    ordered = sorted(segments, key=lambda s: s.segment_index)
    if not ordered:
        raise PlanError(f"track {track} has no segments")
    rate = ordered[0].sample_rate
    pieces: list[Placed | Filler] = []
    position = 0
    previous: SegmentRow | None = None
    for seg in ordered:
        if seg.sample_rate != rate:
            raise PlanError(
                f"track {track} segment {seg.segment_index} is {seg.sample_rate} Hz after "
                f"{rate} Hz: one WAV cannot hold both"
            )
        if previous is not None:
            previous_end_sample = previous.start_sample + previous.sample_count
            if seg.start_sample >= previous_end_sample:
                skipped = seg.start_sample - previous_end_sample
            else:
                skipped = max(0, ((seg.start_ms - previous.end_ms) * rate + 500) // 1000)
            if skipped:
                cause = _covering_cause(gaps, previous.end_ms, seg.start_ms)
                pieces.append(Filler(position, skipped, previous.end_ms, seg.start_ms, cause))
                position += skipped
        pieces.append(Placed(seg, position))
        position += seg.sample_count
        previous = seg
    plan = TrackPlan(track, rate, ordered[0].start_ms, tuple(pieces), ())
    listed = tuple(_list_gap(plan, g) for g in sorted(gaps, key=lambda g: g.start_ms))
    return TrackPlan(track, rate, plan.start_ms, plan.pieces, listed)


def _list_gap(plan: TrackPlan, gap: GapRow) -> ListedGap:
    start = end = None
    if gap.start_sample is not None and gap.end_sample is not None:
        # Exact: the gap's samples in the segment that holds them.
        for piece in plan.pieces:
            if not isinstance(piece, Placed):
                continue
            seg = piece.segment
            if seg.start_sample <= gap.start_sample < seg.start_sample + seg.sample_count:
                start = piece.position + gap.start_sample - seg.start_sample
                end = start + gap.end_sample - gap.start_sample
                break
    if start is None or end is None:
        start, end = plan.ms_to_sample(gap.start_ms), plan.ms_to_sample(gap.end_ms)
    return ListedGap(gap.start_ms, gap.end_ms, start, end, gap.cause, gap.detail)
