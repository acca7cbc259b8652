"""One track's timeline: decoded PCM placed by RTMS timestamp, every other sample accounted for.

Pure and synchronous (no I/O, no clock): the pipeline pushes decoded chunks with their RTMS
timestamps and tells the timeline about interruptions and pauses; the timeline hands back a
contiguous sequence of ``Audio`` and ``Gap`` items, sample-indexed from the track's anchor.

Rules, in the order they apply to each pushed chunk:

0. **Sanity.** ``push`` takes the recorder's clock (``now_ms``) beside each RTMS timestamp. A
   track is not anchored on one packet: the first ``anchor_packets`` chunks are held and the
   track anchors on the largest group of them that agree (their timestamps advance as the
   recorder's clock does, within ``holdback_ms``), at the group's earliest timestamp; the others
   are outliers. Until two agree, the oldest held chunk is dropped as each new one comes. So a
   first packet in seconds, 0 or µs neither anchors the track nor moves the hold-back horizon.
   A packet the capture boundary refused for its timestamp (``note_refused``) names the hole
   the next chunk opens at the tail, up to its length: ``BAD_TIMESTAMP``.
1. **Anchor.** The anchor chunk puts sample 0 at its timestamp ``t0``. A chunk's *nominal*
   position is ``(ts - t0) * rate / 1000 - delay_samples - correction`` (``delay_samples`` is the
   decoder's lookahead, see ``recorder.audio.decoder``). What lands before sample 0 is codec
   priming and is trimmed without being counted as lost or duplicate.
2. **Snap.** If the nominal position is within ``tolerance_ms`` of where the previous chunk
   ended, the chunk is placed exactly there: small jitter, resampler hold-back and rounding never
   make clicks or one-sample gaps. The difference feeds ``correction`` slowly (``follow``), so a
   sender clock that drifts against its timestamps is followed without ever producing a gap, and
   the accumulated correction is reported (``drift_samples``) for the manifest.
3. **Gap.** A chunk further ahead than the tolerance opens a gap from the previous end to its
   position. Its cause is the *window* the pipeline declared over it (``begin_window`` /
   ``end_window``: an interruption, a reconnect, a pause), else ``default_cause``
   (``LOST_PACKETS`` for mixed and channel tracks, ``NO_SPEECH`` for per-speaker tracks, since
   RTMS sends nothing for a silent speaker). Windows are paired by id: ``end_window`` closes the
   window it names, and may correct its cause (the true cause can be known only at recovery).
   When several windows cover one gap, each labels the part from where it began to where the
   next began; windows that began at the same place leave the gap to the one begun first (the
   event that stopped the audio). A closed window labels the first gap after it and then
   expires, or expires unused once the track has moved past its span. A window that begins
   within one packet of the previous end explains the whole gap (a pause never starts with a
   sliver of ``lost_packets``).
4. **Behind.** A chunk whose position is before the previous end (reordering, audio replayed
   after a reconnect) is placed at its own position. Samples that overlap audio already held or
   already emitted are dropped and counted (``duplicate_samples``); samples that fall into a gap
   already emitted are dropped and counted as late (``late_samples``, and their sample range in
   ``take_late_spans()``, so the gap they missed can be named ``LATE_PACKETS``). Nothing is
   written twice.
5. **Hold-back.** Items are emitted only once they are ``holdback_ms`` behind the newest audio
   seen, so reordering within that window is repaired before anything is written. ``finish()``
   emits the rest.
6. **Outliers.** A chunk more than ``holdback_ms`` ahead (a pause, a silent speaker, a long
   hold, or a corrupt timestamp), more than ``plausible_lead_ms`` behind, or whose timestamp ran
   further ahead of the recorder's clock than rule 7 allows, waits for the next chunk: if that
   one follows it (later, and agreeing within ``confirm_jump_ms``), the jump is real; if it
   continues the old timeline, the lone chunk is dropped and counted (``outlier_samples``; a
   lone chunk behind takes rule 4 instead). So one bad timestamp cannot push silence into the
   segments, lose the packets it jumped over, nor turn later packets into "duplicates".
7. **Plausibility.** A confirmed jump becomes a gap of that length only if it is plausible:
   since the last anchor the timestamps may not run more than ``plausible_lead_ms`` ahead of the
   recorder's clock (Zoom replays at most 60 s of buffered audio at once, §9.4); without a
   clock, no gap may exceed ``max_gap_ms``. Any other confirmed jump, forward or back, is a
   *discontinuity*: the track re-anchors on the new timestamps, and the span between is a
   ``TIMESTAMP_DISCONTINUITY`` gap as long as the recorder's clock says it was (at least one
   sample, so the manifest shows it). Either way no gap is longer than the wall-clock time it
   stands for plus ``plausible_lead_ms``, and the work per chunk is bounded by that.

Memory is bounded by the hold-back window plus a few small bookkeeping deques (labels, windows,
recent gaps, late spans, the ``anchor_packets`` held before the anchor), whatever the length of
the call or the timestamps sent; gap items carry a length, never silence bytes. Work per chunk
is bounded too: no loop runs over a timestamp difference, and rule 7 keeps every gap within the
wall-clock time it stands for.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from typing import Final

from recorder.frozen import new_object, slot_setters
from recorder.rtms.events import GapCause

#: Recently emitted gaps remembered to tell a late packet from a duplicate.
_RECENT_GAPS: Final = 64
#: Bounds on bookkeeping that hostile or buggy events could otherwise grow without end.
_MAX_LABELS: Final = 256
_MAX_WINDOWS: Final = 32
_MAX_LATE_SPANS: Final = 64

#: RTMS timestamps are Unix milliseconds. Anything outside these years is not one: a value in
#: seconds or microseconds, 0, negative, or a wrapped 64-bit integer (checked at the capture
#: boundary, before a timeline sees it).
MIN_TIMESTAMP_MS: Final = 1_420_070_400_000  # 2015-01-01
MAX_TIMESTAMP_MS: Final = 4_102_444_800_000  # 2100-01-01


def is_plausible_timestamp_ms(timestamp_ms: int) -> bool:
    """Whether a sender's timestamp can be Unix milliseconds at all (see the bounds above)."""
    return MIN_TIMESTAMP_MS <= timestamp_ms <= MAX_TIMESTAMP_MS


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

# Built once per packet: through the slots' setters, a third of ``__init__``'s cost for the
# same frozen Audio (``recorder.frozen``).
_set_audio_start, _set_audio_pcm = slot_setters(Audio, ("start", "pcm"))


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
    window_id: int = 0


@dataclass(frozen=True, slots=True)
class _Chunk:
    """A chunk held before anchoring (rule 0) or while a jump awaits confirmation (rule 6)."""

    timestamp_ms: int
    now_ms: int | None
    #: None for an undecodable packet (a ``DECODE_ERROR`` span of ``samples``).
    pcm: bytes | None
    samples: int


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
        anchor_packets: int = 3,
        plausible_lead_ms: int = 70_000,
        max_gap_ms: int = 6 * 3_600_000,
    ) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_bytes = 2 * channels
        self.default_cause = default_cause
        self._delay = delay_samples
        self._tolerance = sample_rate * tolerance_ms // 1000
        self._holdback = sample_rate * holdback_ms // 1000
        self._holdback_ms = holdback_ms
        self._follow = follow
        self._confirm_jump_ms = confirm_jump_ms
        self._anchor_packets = max(1, anchor_packets)
        self._plausible_lead_ms = plausible_lead_ms
        self._plausible_lead = sample_rate * plausible_lead_ms // 1000
        self._max_gap = sample_rate * max_gap_ms // 1000
        #: Chunks before the anchor (rule 0); at most ``anchor_packets``.
        self._probation: list[_Chunk] = []
        #: A chunk that jumped far, waiting for the next chunk to confirm it (rule 6).
        self._tentative: _Chunk | None = None
        #: (RTMS ms, recorder ms) of the last anchor, for rule 7; the clock part may be None.
        self._reference: tuple[int, int | None] = (0, None)
        #: (recorder ms, end sample) of the last chunk placed at the tail, for rule 7.
        self._last_tail_now: int | None = None
        self._last_chunk_samples = 0
        #: Chunks taken since the anchor (an overtaken anchor is repaired only at first).
        self._accepted = 0
        #: Samples of packets refused for their timestamp since the last chunk (``note_refused``).
        self._refused_samples = 0
        self._t0: int | None = None
        self._correction = 0.0
        #: Next sample index to emit; everything before it has been handed out.
        self._cursor = 0
        #: Held entries, sorted by start: [start, end, pcm-or-None, label-or-None].
        self._pending: deque[tuple[int, int, bytes | None, _Label | None]] = deque()
        #: End of the furthest audio placed so far.
        self._max_end = 0
        self._labels: deque[_Label] = deque(maxlen=_MAX_LABELS)
        self._windows: list[_Window] = []
        self._recent_gaps: deque[tuple[int, int]] = deque(maxlen=_RECENT_GAPS)
        self._late_spans: deque[tuple[int, int]] = deque(maxlen=_MAX_LATE_SPANS)
        self._emitted_any = False
        self.duplicate_samples = 0
        self.late_samples = 0
        self.priming_samples = 0
        self.outlier_samples = 0
        #: Rule 7 re-anchors; each is also a ``TIMESTAMP_DISCONTINUITY`` gap.
        self.discontinuities = 0

    # --- queries -------------------------------------------------------------------------------

    @property
    def anchor_ms(self) -> int | None:
        """RTMS timestamp of sample 0, once the first chunk arrived."""
        return self._t0

    @property
    def emitted_samples(self) -> int:
        return self._cursor

    @property
    def holding(self) -> bool:
        """Whether the last chunk is held, unplaced (before the anchor, or a jump awaiting
        confirmation): its timestamp must not move anything else yet."""
        return self._t0 is None or self._tentative is not None

    @property
    def has_late_spans(self) -> bool:
        return bool(self._late_spans)

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

    def push(
        self, timestamp_ms: int, pcm: bytes, *, now_ms: int | None = None
    ) -> list[TimelineItem]:
        """Place one decoded chunk; returns what is ready to write (maybe nothing).

        ``now_ms`` is the recorder's clock when the chunk arrived (rules 0 and 7).
        """
        samples = len(pcm) // self.frame_bytes
        t0 = self._t0
        if t0 is not None and self._tentative is None:
            # position_of, inline: this runs once per packet.
            position = (
                ((timestamp_ms - t0) * self.sample_rate + 500) // 1000
                - self._delay
                - round(self._correction)
            )
            tail = self._max_end
            if -self._tolerance <= position - tail <= self._tolerance:
                # The per-packet case (rule 2 only): the chunk continues the track.
                self._accepted += 1
                if position != tail:
                    self._correction += (position - tail) * self._follow
                if tail >= self._cursor:
                    # _insert_at_tail with nothing before the cursor to trim, inline.
                    self._max_end = end = tail + samples
                    self._pending.append((tail, end, pcm, None))
                else:
                    self._insert_at_tail(tail, pcm, samples)
                self._last_tail_now = now_ms
                self._last_chunk_samples = samples
                self._refused_samples = 0
                if self._windows:
                    self._expire_windows()
                return self._emit(self._max_end - self._holdback)
        chunk = _Chunk(timestamp_ms, now_ms, pcm, samples)
        if self._t0 is None:
            return self._hold_for_anchor(chunk)
        return self._accept(chunk)

    def push_undecodable(
        self, timestamp_ms: int, samples: int, *, now_ms: int | None = None
    ) -> list[TimelineItem]:
        """A packet arrived but did not decode: its span becomes a ``DECODE_ERROR`` gap."""
        chunk = _Chunk(timestamp_ms, now_ms, None, samples)
        if self._t0 is None:
            return self._hold_for_anchor(chunk)
        return self._accept(chunk)

    # --- rules 0, 6 and 7 ----------------------------------------------------------------------

    def _hold_for_anchor(self, chunk: _Chunk) -> list[TimelineItem]:
        self._probation.append(chunk)
        if len(self._probation) < self._anchor_packets:
            return []
        return self._anchor(final=False)

    def _agree(self, a: _Chunk, b: _Chunk, within_ms: int) -> bool:
        """Two chunks are on one timeline: their timestamps advance as the clock does."""
        clock = 0 if a.now_ms is None or b.now_ms is None else b.now_ms - a.now_ms
        return abs((b.timestamp_ms - a.timestamp_ms) - clock) <= within_ms

    def _anchor(self, *, final: bool) -> list[TimelineItem]:
        """Rule 0: anchor on the largest agreeing group of the held chunks."""
        held = self._probation
        # Tighter than a jump's confirmation: an anchor a little off would make every later
        # packet "behind" it, beyond what the hold-back repairs.
        within = self._holdback_ms
        support = [sum(self._agree(a, b, within) for b in held) for a in held]
        best = max(range(len(held)), key=lambda i: (support[i], -i))
        if support[best] < 2 and not final and len(held) > 1:
            # Nothing agrees yet: the oldest is dropped, the others wait for company.
            dropped = held.pop(0)
            self.outlier_samples += dropped.samples
            return []
        self._probation = []
        group = [c for c in held if self._agree(held[best], c, within)]
        for chunk in held:
            if chunk not in group:
                self.outlier_samples += chunk.samples
        # The earliest timestamp anchors (a later one that arrived first would make it late).
        first = min(group, key=lambda c: c.timestamp_ms if c.pcm is not None else math.inf)
        group.remove(first)
        group.insert(0, first)
        self._t0 = first.timestamp_ms
        self._reference = (first.timestamp_ms, first.now_ms)
        out: list[TimelineItem] = []
        for chunk in group:
            if chunk is first and chunk.pcm is not None:
                # The first chunk goes exactly where its timestamp says, so that codec priming
                # (before sample 0) is trimmed rather than snapped into the audio.
                self._insert_at_tail(-self._delay, chunk.pcm, chunk.samples)
                self._last_tail_now = chunk.now_ms
                self._last_chunk_samples = chunk.samples
            else:
                out += self._accept(chunk)
        return out

    def _accept(self, chunk: _Chunk) -> list[TimelineItem]:
        self._accepted += 1
        position = self.position_of(chunk.timestamp_ms)
        if (
            position < -self._delay - self._tolerance
            and not self._emitted_any
            and self._accepted < 2 * self._anchor_packets
            and -self._delay - position
            <= self._anchor_packets * self._last_chunk_samples + self._tolerance
        ):
            # An earlier packet overtook the anchor group: the stream starts here, not there.
            # Only by a few packets and right after anchoring: a stray further back or later
            # would shift the whole track.
            position = self._reanchor(chunk.timestamp_ms, position)
        far = self._is_far(chunk, position)
        tentative = self._tentative
        if tentative is not None:
            self._tentative = None
            if far and self._follows(tentative, chunk):
                out = self._jump(tentative)
                return out + self._accept(chunk)
            self._reject(tentative)
        if far:
            self._tentative = chunk
            return []
        self._place_chunk(chunk, position)
        self._expire_windows()
        return self._emit(self._max_end - self._holdback)

    def _is_far(self, chunk: _Chunk, position: int) -> bool:
        ahead = position - self._max_end
        if ahead > self._holdback or -ahead > self._plausible_lead:
            # Believed at once, a jump past the hold-back would write its hole before the
            # packets it skipped could arrive, and lose them if the jump was a bad timestamp.
            return True
        return ahead > self._tolerance and self._lead_ms(chunk) > self._plausible_lead_ms

    def _lead_ms(self, chunk: _Chunk) -> int:
        """How far the timestamps ran ahead of the recorder's clock since the last anchor."""
        ref_ts, ref_now = self._reference
        if ref_now is None or chunk.now_ms is None:
            return 0
        return (chunk.timestamp_ms - ref_ts) - (chunk.now_ms - ref_now)

    def _follows(self, first: _Chunk, second: _Chunk) -> bool:
        """Rule 6: the chunk after a far one continues from it."""
        if second.timestamp_ms < first.timestamp_ms:
            return False
        return self._agree(first, second, self._confirm_jump_ms)

    def _reject(self, chunk: _Chunk) -> None:
        """The old timeline went on: a lone far chunk ahead is an outlier; one behind is late."""
        position = self.position_of(chunk.timestamp_ms)
        if position < self._max_end - self._plausible_lead or position >= self._max_end:
            self.outlier_samples += chunk.samples
            return
        self._place_chunk(chunk, position)

    def _plausible_gap(self, chunk: _Chunk, position: int) -> bool:
        gap = position - self._max_end
        if gap <= 0:
            return False
        if chunk.now_ms is None or self._reference[1] is None:
            return gap <= self._max_gap
        return self._lead_ms(chunk) <= self._plausible_lead_ms

    def _jump(self, chunk: _Chunk) -> list[TimelineItem]:
        """A confirmed far chunk: a real gap if plausible, else a discontinuity (rule 7)."""
        position = self.position_of(chunk.timestamp_ms)
        if not self._plausible_gap(chunk, position):
            self._discontinuity(chunk)
            position = self.position_of(chunk.timestamp_ms)
        self._place_chunk(chunk, position)
        return []

    def _discontinuity(self, chunk: _Chunk) -> None:
        """Re-anchor on ``chunk``; the span before it is as long as the clock says it was."""
        self.discontinuities += 1
        elapsed = 0
        if chunk.now_ms is not None and self._last_tail_now is not None:
            previous_ms = self._last_chunk_samples * 1000 // self.sample_rate
            elapsed = chunk.now_ms - self._last_tail_now - previous_ms
        length = min(max(1, self.sample_rate * elapsed // 1000), self._plausible_lead)
        start = self._max_end
        label = _Label(start, start + length, SpanKind.GAP, GapCause.TIMESTAMP_DISCONTINUITY, None)
        self._pending.append((start, start + length, None, label))
        self._max_end = start + length
        # t0 such that the chunk's nominal position is the new tail (to within a millisecond;
        # rule 2 absorbs the rest).
        offset = self._max_end + self._delay + round(self._correction)
        self._t0 = chunk.timestamp_ms - (offset * 1000 + self.sample_rate // 2) // self.sample_rate
        self._reference = (chunk.timestamp_ms, chunk.now_ms)
        # Windows and labels are in sample positions of the old clock; later ones are moot.
        for window in self._windows:
            window.start = min(window.start, start)

    def _place_chunk(self, chunk: _Chunk, position: int) -> None:
        if chunk.pcm is None:
            self._place_undecodable(position, chunk.samples)
        else:
            self._place(position, chunk.pcm, chunk.samples)
        self._refused_samples = 0
        if position >= self._max_end - chunk.samples - self._tolerance:
            self._last_tail_now = chunk.now_ms
            self._last_chunk_samples = chunk.samples

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

    def _place_undecodable(self, position: int, samples: int) -> None:
        position = max(position, 0)
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

    def label_range(self, first_ms: int, end_ms: int, cause: GapCause) -> None:
        """Name the cause of a span known to be missing (``PacketsDropped`` with timestamps)."""
        if self._t0 is None:
            return
        start = max(self.position_of(first_ms), self._cursor)
        # A range reaching implausibly far ahead (a hostile timestamp in the drop) is cut.
        end = min(self.position_of(end_ms), self._max_end + self._plausible_lead)
        if end > start:
            self._labels.append(_Label(start, end, SpanKind.GAP, cause, None))

    def begin_window(
        self,
        cause: GapCause | None,
        *,
        kind: SpanKind = SpanKind.GAP,
        actor: str | None = None,
        at_ms: int | None = None,
        window_id: int = 0,
    ) -> None:
        """From now on, a gap is explained by this (an interruption, or a pause with its actor).

        ``at_ms`` is the RTMS timestamp the window began at, when known (a pause's state
        update carries one): the part of the next gap before it keeps the default cause, which
        matters for a per-speaker track that was already silent when the pause began.
        ``window_id`` pairs it with its ``end_window`` (0: the most recent of its kind).
        """
        start = self._max_end
        if at_ms is not None and self._t0 is not None:
            at = self.position_of(at_ms)
            if at - start <= self._plausible_lead:
                start = max(start, at)
        if len(self._windows) >= _MAX_WINDOWS:
            # Never closed (a producer that lost track): the oldest goes first.
            del self._windows[0]
        self._windows.append(_Window(kind, cause, actor, start, window_id=window_id))

    def end_window(
        self,
        *,
        span_ms: int = 0,
        kind: SpanKind | None = None,
        window_id: int = 0,
        cause: GapCause | None = None,
    ) -> None:
        """The window ``window_id`` (or the most recent open one of ``kind``) is over.

        ``span_ms`` is how long it lasted on the recorder's clock; once the track has moved more
        than that (plus a second) past where the window began, an unused window expires.
        ``cause``, when given, replaces the window's: the true cause, known at its end.
        """
        for window in reversed(self._windows):
            if window.expires_at is not None:
                continue
            if window_id:
                if window.window_id != window_id:
                    continue
            elif kind is not None and window.kind != kind:
                continue
            margin = self.sample_rate * (min(max(span_ms, 0), 86_400_000) + 1000) // 1000
            window.expires_at = window.start + margin + self._holdback
            if cause is not None and window.kind is SpanKind.GAP:
                window.cause = cause
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
        out = self._settle()
        if self._t0 is None or not pcm:
            return out
        self._insert_at_tail(self._max_end, pcm, len(pcm) // self.frame_bytes)
        return out

    def finish(self) -> list[TimelineItem]:
        """End of the track: emit everything held (a pending plausible jump is believed)."""
        out = self._settle()
        return out + self._emit(self._max_end)

    def note_refused(self, samples: int) -> None:
        """A packet of ``samples`` arrived here but was refused for its timestamp: the hole the
        next chunk opens at the tail is its, up to that length (``BAD_TIMESTAMP``)."""
        if self._t0 is not None:
            self._refused_samples += samples

    def take_late_spans(self) -> list[tuple[int, int]]:
        """Sample ranges of emitted gaps that late packets would have filled (rule 4)."""
        spans = list(self._late_spans)
        self._late_spans.clear()
        return spans

    def _settle(self) -> list[TimelineItem]:
        """No more chunks follow: anchor on what is held, decide a pending far chunk."""
        out: list[TimelineItem] = []
        if self._t0 is None and self._probation:
            out += self._anchor(final=True)
        tentative = self._tentative
        if tentative is not None:
            self._tentative = None
            position = self.position_of(tentative.timestamp_ms)
            if self._plausible_gap(tentative, position):
                self._place_chunk(tentative, position)
            else:
                self._reject(tentative)
        return out

    # --- internals -----------------------------------------------------------------------------

    def _reanchor(self, timestamp_ms: int, position: int) -> int:
        shift = -self._delay - position
        self._t0 = timestamp_ms
        self._reference = (timestamp_ms, self._reference[1])
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
            overlap_start, overlap_end = max(start, gap_start), min(end, gap_end)
            if overlap_end > overlap_start:
                late += overlap_end - overlap_start
                self._late_spans.append((overlap_start, overlap_end))
        self.late_samples += late
        self.duplicate_samples += (end - start) - late

    def _open_hole(self, start: int, end: int) -> None:
        if self._refused_samples:
            # First, so it wins over a window for its own span (labels sort stably).
            refused_end = min(end, start + self._refused_samples + self._tolerance)
            self._labels.append(
                _Label(start, refused_end, SpanKind.GAP, GapCause.BAD_TIMESTAMP, None)
            )
        if not self._windows:
            return
        # A window that began within a packet of the hole explains all of it from the start.
        slack = self._tolerance + self._last_chunk_samples
        bounds: list[tuple[int, _Window]] = []
        for window in sorted(self._windows, key=lambda w: w.start):
            begin = start if window.start - start <= slack else min(window.start, end)
            if bounds and begin <= bounds[-1][0]:
                continue  # began where an earlier window did: that one explains it
            bounds.append((begin, window))
        for index, (begin, window) in enumerate(bounds):
            until = bounds[index + 1][0] if index + 1 < len(bounds) else end
            if begin < until:
                self._labels.append(_Label(begin, until, window.kind, window.cause, window.actor))
        self._windows = [w for w in self._windows if w.expires_at is None or w.start >= end]

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
                audio: Audio = new_object(Audio)  # Audio(start, pcm), see _set_audio_start
                _set_audio_start(audio, start)
                _set_audio_pcm(audio, pcm)
                out.append(audio)
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
