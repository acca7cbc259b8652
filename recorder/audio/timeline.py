"""One track's timeline: decoded PCM placed by RTMS timestamp, every other sample accounted for.

Pure and synchronous (no I/O, no clock): the pipeline pushes decoded chunks with their RTMS
timestamps and tells the timeline about interruptions and pauses; the timeline hands back a
contiguous sequence of ``Audio`` and ``Gap`` items, sample-indexed from the track's anchor.

Rules, in the order they apply to each pushed chunk:

1. **Anchor.** The first chunk anchors sample 0 at its timestamp ``t0``. A chunk's *nominal*
   position is ``(ts - t0) * rate / 1000 - delay_samples - correction`` (``delay_samples`` is the
   decoder's lookahead, see ``recorder.audio.decoder``). What lands before sample 0 is codec
   priming and is trimmed without being counted as lost or duplicate.
2. **Snap.** If the nominal position is within ``tolerance_ms`` of where the previous chunk
   ended, the chunk is placed exactly there: small jitter, resampler hold-back and rounding never
   make clicks or one-sample gaps. The difference feeds ``correction`` slowly (``follow``), so a
   sender clock that drifts against its timestamps is followed without ever producing a gap, and
   the accumulated correction is reported (``drift_samples``) for the manifest.
3. **Gap.** A chunk further ahead than the tolerance opens a gap from the previous end to its
   position. Its cause is the most recent *window* the pipeline declared (``begin_window`` /
   ``end_window``: an interruption, a reconnect, a pause), else ``default_cause``
   (``LOST_PACKETS`` for mixed and channel tracks, ``NO_SPEECH`` for per-speaker tracks, since
   RTMS sends nothing for a silent speaker). A window closed with ``end_window`` labels the first
   gap after it and then expires, or expires unused once the track has moved past its span.
4. **Behind.** A chunk whose position is before the previous end (reordering, audio replayed
   after a reconnect) is placed at its own position. Samples that overlap audio already held or
   already emitted are dropped and counted (``duplicate_samples``); samples that fall into a gap
   already emitted are dropped and counted as late (``late_samples``). Nothing is written twice.
5. **Hold-back.** Items are emitted only once they are ``holdback_ms`` behind the newest audio
   seen, so reordering within that window is repaired before anything is written. ``finish()``
   emits the rest.
6. **Outliers.** A chunk more than ``confirm_jump_ms`` ahead (a long pause or hold, or a
   corrupt timestamp) waits for the next chunk: if that one follows it, the jump is real (gap,
   then both chunks); if it continues the old timeline, the lone chunk is dropped and counted
   (``outlier_samples``), so one bad timestamp cannot push hours of silence into the segments
   and turn every later packet into a "duplicate".

Memory is bounded by the hold-back window plus a few small bookkeeping deques, whatever the
length of the call; gap items carry a length, never silence bytes.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Final

from recorder.rtms.events import GapCause

#: Recently emitted gaps remembered to tell a late packet from a duplicate.
_RECENT_GAPS: Final = 64


class SpanKind(enum.StrEnum):
    GAP = "gap"
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class Audio:
    """Received audio for samples ``start`` .. ``start + len(pcm) / frame_bytes``."""

    start: int
    pcm: bytes


@dataclass(frozen=True, slots=True)
class Gap:
    """Samples ``start`` .. ``end`` (exclusive) hold no received audio; written as silence."""

    start: int
    end: int
    kind: SpanKind
    cause: GapCause | None
    actor: str | None = None

    @property
    def samples(self) -> int:
        return self.end - self.start


TimelineItem = Audio | Gap


@dataclass(slots=True)
class _Label:
    start: int
    end: int
    kind: SpanKind
    cause: GapCause | None
    actor: str | None


@dataclass(slots=True)
class _Window:
    kind: SpanKind
    cause: GapCause | None
    actor: str | None
    start: int
    #: Position past which an unused closed window expires; None while open.
    expires_at: int | None = None


class Timeline:
    """See the module docstring. One instance per track; not thread-safe."""

    def __init__(
        self,
        *,
        sample_rate: int,
        channels: int,
        delay_samples: int = 0,
        default_cause: GapCause = GapCause.LOST_PACKETS,
        tolerance_ms: int = 10,
        holdback_ms: int = 200,
        follow: float = 1 / 64,
        confirm_jump_ms: int = 5_000,
    ) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_bytes = 2 * channels
        self.default_cause = default_cause
        self._delay = delay_samples
        self._tolerance = sample_rate * tolerance_ms // 1000
        self._holdback = sample_rate * holdback_ms // 1000
        self._follow = follow
        self._confirm_jump = sample_rate * confirm_jump_ms // 1000
        #: A chunk that jumped far ahead, waiting for the next chunk to confirm it.
        self._tentative: tuple[int, bytes] | None = None
        self._t0: int | None = None
        self._correction = 0.0
        #: Next sample index to emit; everything before it has been handed out.
        self._cursor = 0
        #: Held entries, sorted by start: [start, end, pcm-or-None, label-or-None].
        self._pending: deque[tuple[int, int, bytes | None, _Label | None]] = deque()
        #: End of the furthest audio placed so far.
        self._max_end = 0
        self._labels: deque[_Label] = deque()
        self._windows: list[_Window] = []
        self._recent_gaps: deque[tuple[int, int]] = deque(maxlen=_RECENT_GAPS)
        self._emitted_any = False
        self.duplicate_samples = 0
        self.late_samples = 0
        self.priming_samples = 0
        self.outlier_samples = 0

    # --- queries -------------------------------------------------------------------------------

    @property
    def anchor_ms(self) -> int | None:
        """RTMS timestamp of sample 0, once the first chunk arrived."""
        return self._t0

    @property
    def emitted_samples(self) -> int:
        return self._cursor

    @property
    def drift_samples(self) -> int:
        """How far the placement has been moved to follow the sender's clock (signed)."""
        return round(self._correction)

    def position_of(self, timestamp_ms: int) -> int:
        """Nominal sample index of an RTMS timestamp (before snapping)."""
        if self._t0 is None:
            return 0
        raw = ((timestamp_ms - self._t0) * self.sample_rate + 500) // 1000
        return raw - self._delay - round(self._correction)

    def sample_to_ms(self, sample: int) -> int:
        """RTMS timestamp of the source audio at a sample index, drift included.

        Not ``position_of``'s inverse: a packet at ``ts`` carries audio from ``ts - delay``, and
        placing it ``delay`` samples early is exactly what makes sample ``s`` be time ``t0 + s``.
        """
        base = self._t0 if self._t0 is not None else 0
        offset = sample + round(self._correction)
        return base + (offset * 1000 + self.sample_rate // 2) // self.sample_rate

    def set_delay(self, delay_samples: int) -> None:
        """A new decoder took over mid-stream (after the old one's tail was appended): later
        chunks are placed by its lookahead, not the old one's. Its priming overlaps the tail and
        is dropped as duplicate rather than written twice."""
        self._delay = delay_samples

    # --- input ---------------------------------------------------------------------------------

    def push(self, timestamp_ms: int, pcm: bytes) -> list[TimelineItem]:
        """Place one decoded chunk; returns what is ready to write (maybe nothing)."""
        samples = len(pcm) // self.frame_bytes
        if self._t0 is None:
            # The first chunk goes exactly where its timestamp says, so that codec priming
            # (before sample 0) is trimmed rather than snapped into the audio.
            self._t0 = timestamp_ms
            self._insert_at_tail(-self._delay, pcm, samples)
            return []
        position = self.position_of(timestamp_ms)
        if position < -self._delay - self._tolerance and not self._emitted_any:
            # An earlier packet overtook the first one: the stream starts here, not there.
            position = self._reanchor(timestamp_ms, position)
        if self._tentative is not None:
            self._settle_tentative(confirmed_by=position)
        elif position - self._max_end > self._confirm_jump:
            self._tentative = (timestamp_ms, pcm)
            return []
        self._place(position, pcm, samples)
        self._expire_windows()
        return self._emit(self._max_end - self._holdback)

    def _settle_tentative(self, confirmed_by: int | None) -> None:
        """Rule 6: a huge forward jump is believed once the next packet follows it."""
        assert self._tentative is not None
        timestamp_ms, pcm = self._tentative
        self._tentative = None
        position = self.position_of(timestamp_ms)
        samples = len(pcm) // self.frame_bytes
        if confirmed_by is None or confirmed_by >= position + samples - self._tolerance:
            self._place(position, pcm, samples)
        else:
            self.outlier_samples += samples

    def _place(self, position: int, pcm: bytes, samples: int) -> None:
        tail = self._max_end
        if abs(position - tail) <= self._tolerance:
            if position != tail:
                self._correction += (position - tail) * self._follow
            self._insert_at_tail(tail, pcm, samples)
        elif position > tail:
            self._open_hole(tail, position)
            self._insert_at_tail(position, pcm, samples)
        else:
            self._insert_behind(position, pcm, samples)

    def push_undecodable(self, timestamp_ms: int, samples: int) -> list[TimelineItem]:
        """A packet arrived but did not decode: its span becomes a ``DECODE_ERROR`` gap."""
        if self._t0 is None:
            self._t0 = timestamp_ms
        position = max(self.position_of(timestamp_ms), 0)
        tail = self._max_end
        if abs(position - tail) <= self._tolerance:
            position = tail
        label = _Label(position, position + samples, SpanKind.GAP, GapCause.DECODE_ERROR, None)
        if position >= tail:
            if position > tail:
                self._open_hole(tail, position)
            self._pending.append((position, position + samples, None, label))
            self._max_end = position + samples
        else:
            self._labels.append(label)
        return self._emit(self._max_end - self._holdback)

    def label_range(self, first_ms: int, end_ms: int, cause: GapCause) -> None:
        """Name the cause of a span known to be missing (``PacketsDropped`` with timestamps)."""
        start, end = self.position_of(first_ms), self.position_of(end_ms)
        if end > start:
            self._labels.append(_Label(start, end, SpanKind.GAP, cause, None))

    def begin_window(
        self,
        cause: GapCause | None,
        *,
        kind: SpanKind = SpanKind.GAP,
        actor: str | None = None,
        at_ms: int | None = None,
    ) -> None:
        """From now on, a gap is explained by this (an interruption, or a pause with its actor).

        ``at_ms`` is the RTMS timestamp the window began at, when known (a pause's state
        update carries one): the part of the next gap before it keeps the default cause, which
        matters for a per-speaker track that was already silent when the pause began.
        """
        start = self._max_end
        if at_ms is not None and self._t0 is not None:
            start = max(start, self.position_of(at_ms))
        self._windows.append(_Window(kind, cause, actor, start))

    def end_window(self, *, span_ms: int = 0, kind: SpanKind | None = None) -> None:
        """The most recent open window (of ``kind``, if given) is over.

        ``span_ms`` is how long it lasted on the recorder's clock; once the track has moved more
        than that (plus a second) past where the window began, an unused window expires.
        """
        for window in reversed(self._windows):
            if window.expires_at is None and (kind is None or window.kind == kind):
                margin = self.sample_rate * (span_ms + 1000) // 1000
                window.expires_at = window.start + margin + self._holdback
                return

    def release_until(self, timestamp_ms: int) -> list[TimelineItem]:
        """Emit what is older than ``timestamp_ms`` minus the hold-back, without new audio.

        For a silent speaker whose last words would otherwise wait for their next packet (the
        mixdown needs them in time); gaps after them are still decided by the next packet.
        """
        if self._t0 is None:
            return []
        return self._emit(min(self.position_of(timestamp_ms) - self._holdback, self._max_end))

    def append_tail(self, pcm: bytes) -> list[TimelineItem]:
        """Audio that directly follows the last chunk (a decoder's flushed tail)."""
        if self._tentative is not None:
            self._settle_tentative(confirmed_by=None)
        if self._t0 is None or not pcm:
            return []
        self._insert_at_tail(self._max_end, pcm, len(pcm) // self.frame_bytes)
        return []

    def finish(self) -> list[TimelineItem]:
        """End of the track: emit everything held (a pending big jump is believed)."""
        if self._tentative is not None:
            self._settle_tentative(confirmed_by=None)
        return self._emit(self._max_end)

    # --- internals -----------------------------------------------------------------------------

    def _reanchor(self, timestamp_ms: int, position: int) -> int:
        shift = -self._delay - position
        self._t0 = timestamp_ms
        self._pending = deque((a + shift, b + shift, pcm, lab) for a, b, pcm, lab in self._pending)
        self._max_end += shift
        for label in self._labels:
            label.start += shift
            label.end += shift
        for window in self._windows:
            window.start += shift
            if window.expires_at is not None:
                window.expires_at += shift
        return -self._delay

    def _insert_at_tail(self, position: int, pcm: bytes, samples: int) -> None:
        if position < self._cursor:
            # Only reachable at the very start: codec priming before sample 0.
            skip = self._cursor - position
            if self._cursor == 0:
                self.priming_samples += min(skip, samples)
            else:
                self._count_behind(position, min(self._cursor, position + samples))
            if skip >= samples:
                return
            pcm = pcm[skip * self.frame_bytes :]
            samples -= skip
            position = self._cursor
        self._pending.append((position, position + samples, pcm, None))
        self._max_end = position + samples

    def _insert_behind(self, position: int, pcm: bytes, samples: int) -> None:
        end = position + samples
        fb = self.frame_bytes
        # Snap to the end of the entry before it, so replays and reorders join without clicks.
        for entry_start, entry_end, _, _ in reversed(self._pending):
            if entry_start <= position + self._tolerance:
                if abs(position - entry_end) <= self._tolerance:
                    shift = entry_end - position
                    position, end = entry_end, end + shift
                break
        if position < self._cursor:
            cut = min(self._cursor, end)
            if self._cursor == 0 and self._t0 is not None and position < 0:
                self.priming_samples += cut - position
            else:
                self._count_behind(position, cut)
            if cut >= end:
                return
            pcm = pcm[(cut - position) * fb :]
            position = cut
        # Fill only the holes between held entries; overlaps are duplicates.
        pieces: list[tuple[int, int, bytes | None, _Label | None]] = []
        cursor = position
        for entry_start, entry_end, _, _ in self._pending:
            if entry_end <= cursor:
                continue
            if entry_start >= end:
                break
            if entry_start > cursor:
                piece_end = min(entry_start, end)
                offset = (cursor - position) * fb
                pieces.append((cursor, piece_end, pcm[offset : (piece_end - position) * fb], None))
            overlap = min(entry_end, end) - max(entry_start, cursor)
            if overlap > 0:
                self.duplicate_samples += overlap
            cursor = max(cursor, entry_end)
        if cursor < end:
            offset = (cursor - position) * fb
            pieces.append((cursor, end, pcm[offset:], None))
        if not pieces:
            return
        merged = sorted([*self._pending, *pieces], key=lambda entry: entry[0])
        self._pending = deque(merged)
        self._max_end = max(self._max_end, end)

    def _count_behind(self, start: int, end: int) -> None:
        """Samples before the cursor: late if they fall in an emitted gap, else duplicates."""
        late = 0
        for gap_start, gap_end in self._recent_gaps:
            late += max(0, min(end, gap_end) - max(start, gap_start))
        self.late_samples += late
        self.duplicate_samples += (end - start) - late

    def _open_hole(self, start: int, end: int) -> None:
        window = self._consumable_window()
        if window is None:
            return
        # A window that began within the jitter tolerance of the hole explains all of it.
        label_start = start if window.start - start <= self._tolerance else min(window.start, end)
        if label_start < end:
            self._labels.append(_Label(label_start, end, window.kind, window.cause, window.actor))
        if window.expires_at is not None:
            self._windows.remove(window)

    def _consumable_window(self) -> _Window | None:
        return self._windows[-1] if self._windows else None

    def _expire_windows(self) -> None:
        if self._windows and any(
            w.expires_at is not None and self._max_end > w.expires_at for w in self._windows
        ):
            self._windows = [
                w for w in self._windows if w.expires_at is None or self._max_end <= w.expires_at
            ]

    def _emit(self, horizon: int) -> list[TimelineItem]:
        out: list[TimelineItem] = []
        pending = self._pending
        while pending and pending[0][0] < horizon:
            start, end, pcm, label = pending.popleft()
            if start > self._cursor:
                out.extend(self._gap_items(self._cursor, start))
            if pcm is None:
                assert label is not None
                out.append(Gap(start, end, label.kind, label.cause, label.actor))
                self._recent_gaps.append((start, end))
            else:
                out.append(Audio(start, pcm))
            self._cursor = end
            self._emitted_any = True
        if self._labels and any(label.end <= self._cursor for label in self._labels):
            self._labels = deque(label for label in self._labels if label.end > self._cursor)
        return out

    def _gap_items(self, start: int, end: int) -> list[Gap]:
        """Split a hole by the labels that explain parts of it; the rest is the default."""
        items: list[Gap] = []
        cursor = start
        for label in sorted(self._labels, key=lambda lab: lab.start):
            if label.end <= cursor or label.start >= end:
                continue
            if label.start > cursor:
                items.append(Gap(cursor, label.start, SpanKind.GAP, self.default_cause))
            label_end = min(label.end, end)
            items.append(
                Gap(max(cursor, label.start), label_end, label.kind, label.cause, label.actor)
            )
            cursor = label_end
        if cursor < end:
            # A labelled hole whose label ends early (rounding) keeps its label to the end.
            if items and items[-1].end == cursor and end - cursor <= self._tolerance:
                last = items.pop()
                items.append(Gap(last.start, end, last.kind, last.cause, last.actor))
            else:
                items.append(Gap(cursor, end, SpanKind.GAP, self.default_cause))
        for item in items:
            self._recent_gaps.append((item.start, item.end))
        return _merge_adjacent(items)


def _merge_adjacent(items: list[Gap]) -> list[Gap]:
    merged: list[Gap] = []
    for item in items:
        if (
            merged
            and merged[-1].end == item.start
            and (
                (merged[-1].kind, merged[-1].cause, merged[-1].actor)
                == (item.kind, item.cause, item.actor)
            )
        ):
            previous = merged.pop()
            merged.append(Gap(previous.start, item.end, item.kind, item.cause, item.actor))
        else:
            merged.append(item)
    return merged
