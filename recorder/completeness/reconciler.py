"""The reconciler's verdict on one expectation. Pure: rows and ``now`` in, a verdict out.

Rules, in order (each tested in tests/completeness/test_reconciler.py):

1. An expectation younger than ``grace_s`` gets no verdict yet (``None``): RTMS may start late.
2. No recording of the instance (same product and instance id):
   a. an ``rtms.start_failed`` names the instance: ``missing`` / ``rtms.start_failed``, with
      Zoom's reason;
   b. our start request was refused (start state ``failed``): ``missing`` / ``start_refused``,
      with Zoom's code, HTTP status and message;
   c. otherwise ``missing`` / ``never_started``.
3. Recordings exist (several streams of one instance count together: the earliest start, the
   latest end, the longest single gap):
   a. the first started more than ``late_start_s`` after the expected start: ``incomplete`` /
      ``started_late``;
   b. the expected end is known, every recording ended, and the last ended more than
      ``early_end_s`` before it: ``incomplete`` / ``ended_early``;
   c. a single gap longer than ``max_gap_s``: ``incomplete`` / ``large_gaps``;
   d. otherwise the expectation is met: ``COMPLETE``.
4. A verdict is final (``settled``: routine runs leave the expectation alone) once every
   recording of the instance ended, or, with none, ``SETTLE_MISSING_MS`` after the expected
   start; ``recorder completeness reconcile --all`` looks at settled ones again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from recorder.completeness.model import (
    FindingCause,
    FindingKind,
    ReconcileInputs,
    StartState,
)


@dataclass(frozen=True, slots=True)
class Thresholds:
    grace_ms: int
    late_start_ms: int
    early_end_ms: int
    max_gap_ms: int


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: FindingKind | None
    cause: FindingCause | None
    detail: str
    recording_id: str | None = None

    @property
    def met(self) -> bool:
        return self.kind is None


COMPLETE: Final = Verdict(None, None, "recorded as expected")

#: Rule 4: a day without any recording of an expected instance is final.
SETTLE_MISSING_MS: Final = 24 * 3600 * 1000


def settled(inputs: ReconcileInputs, now_ms: int) -> bool:
    """Rule 4."""
    if not inputs.recordings:
        return now_ms - inputs.expectation.expected_start_ms >= SETTLE_MISSING_MS
    return all(r.ended_ms is not None for r in inputs.recordings)


def _s(ms: int) -> str:
    return f"{ms / 1000:.1f} s"


def verdict(inputs: ReconcileInputs, now_ms: int, t: Thresholds) -> Verdict | None:
    x = inputs.expectation
    if now_ms - x.expected_start_ms < t.grace_ms:
        return None
    if not inputs.recordings:
        if inputs.start_failures:
            reasons = [r for r in inputs.start_failures if r]
            why = "; ".join(reasons) if reasons else "no reason given"
            return Verdict(FindingKind.MISSING, FindingCause.START_FAILED, f"Zoom: {why}")
        if x.start_state is StartState.FAILED:
            detail = (
                f"start request refused: code={x.start_error_code} "
                f"status={x.start_error_status} after {x.start_attempts} attempt(s): "
                f"{x.start_error or ''}"
            ).rstrip(": ")
            return Verdict(FindingKind.MISSING, FindingCause.START_REFUSED, detail)
        return Verdict(FindingKind.MISSING, FindingCause.NEVER_STARTED, "no recording")
    first = inputs.recordings[0]
    started = min(r.started_ms for r in inputs.recordings)
    late = started - x.expected_start_ms
    if late > t.late_start_ms:
        return Verdict(
            FindingKind.INCOMPLETE,
            FindingCause.STARTED_LATE,
            f"recording started {_s(late)} after the expected start",
            first.recording_id,
        )
    ends = [r.ended_ms for r in inputs.recordings]
    if x.expected_end_ms is not None and all(end is not None for end in ends):
        last_end = max(end for end in ends if end is not None)
        early = x.expected_end_ms - last_end
        if early > t.early_end_ms:
            return Verdict(
                FindingKind.INCOMPLETE,
                FindingCause.ENDED_EARLY,
                f"recording ended {_s(early)} before the expected end",
                first.recording_id,
            )
    longest = max(inputs.recordings, key=lambda r: r.longest_gap_ms)
    if longest.longest_gap_ms > t.max_gap_ms:
        return Verdict(
            FindingKind.INCOMPLETE,
            FindingCause.LARGE_GAPS,
            f"a gap of {_s(longest.longest_gap_ms)}",
            longest.recording_id,
        )
    return COMPLETE
