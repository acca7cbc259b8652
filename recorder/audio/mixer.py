"""A mixdown of per-speaker tracks onto one track, on the RTMS clock (per-speaker mode only).

In per-speaker mode (``data_opt`` 2) RTMS sends one packet sequence per active speaker and no
mixed stream; some reviewers still want one track to listen to. The per-speaker timelines stay
the evidence; the mixdown is a convenience copy built from what they emit.

Rules:

* Positions are samples from the engagement's mixdown anchor ``t0`` (the first speaker's first
  sample); a speaker timeline's item at its own sample ``s`` lands at ``s + offset`` where
  ``offset`` is its anchor's distance from ``t0``.
* Contributions are summed in 32 bits and clipped to 16 bits when emitted. A span that nobody
  contributed to for at least ``min_gap_ms`` is a ``NO_SPEECH`` gap; shorter holes are silence
  inside the audio (codec and resampler edges, not absences).
* Output is emitted once it is ``holdback_ms`` behind the newest contribution, which must exceed
  the speaker timelines' own hold-back. A contribution older than what was emitted (audio
  replayed after a reconnect, a speaker far behind) is left out of the mixdown and counted in
  ``late_samples``: the speaker's own track still has it.
* Memory is one fixed accumulator of ``holdback_ms`` plus a second, whatever the call length.
"""

from __future__ import annotations

import itertools
from typing import Final

import numpy as np
import numpy.typing as npt

from recorder.audio.timeline import Audio, Gap, SpanKind, TimelineItem
from recorder.rtms.events import GapCause

#: Emit in pieces of at least this much, so the accumulator shifts rarely.
_EMIT_MS: Final = 100


class Mixer:
    """See the module docstring. Not thread-safe (one owner at a time)."""

    def __init__(
        self,
        *,
        sample_rate: int,
        channels: int,
        holdback_ms: int = 600,
        min_gap_ms: int = 40,
    ) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self._holdback = sample_rate * holdback_ms // 1000
        self._min_gap = sample_rate * min_gap_ms // 1000
        self._emit_step = sample_rate * _EMIT_MS // 1000
        capacity = self._holdback + sample_rate  # frames
        self._acc: npt.NDArray[np.int32] = np.zeros((capacity, channels), dtype=np.int32)
        self._covered: npt.NDArray[np.bool_] = np.zeros(capacity, dtype=bool)
        self._t0: int | None = None
        #: Absolute position of accumulator row 0 (= everything before it was emitted).
        self._base = 0
        self._max_end = 0
        #: Start of the hole (nobody contributing) that the last emission ended inside.
        self._open_gap_start: int | None = None
        self.late_samples = 0

    @property
    def anchor_ms(self) -> int | None:
        return self._t0

    def sample_to_ms(self, sample: int) -> int:
        base = self._t0 if self._t0 is not None else 0
        return base + (sample * 1000 + self.sample_rate // 2) // self.sample_rate

    def offset_for(self, speaker_anchor_ms: int) -> int:
        """Mixdown position of a speaker timeline's sample 0 (anchors the mixdown if first)."""
        if self._t0 is None:
            self._t0 = speaker_anchor_ms
        return ((speaker_anchor_ms - self._t0) * self.sample_rate + 500) // 1000

    def add(self, position: int, pcm: bytes) -> list[TimelineItem]:
        """Add one speaker's audio at mixdown ``position``; returns what is ready."""
        samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, self.channels)
        end = position + len(samples)
        if position < self._base:
            late = min(end, self._base) - position
            self.late_samples += late
            samples = samples[late:]
            position = self._base
            if not len(samples):
                return []
        out: list[TimelineItem] = []
        capacity = len(self._covered)
        if end - self._base > capacity:
            out += self._emit(end - capacity)
        start = position - self._base
        self._acc[start : start + len(samples)] += samples
        self._covered[start : start + len(samples)] = True
        self._max_end = max(self._max_end, end)
        horizon = self._max_end - self._holdback
        if horizon - self._base >= self._emit_step:
            out += self._emit(horizon)
        return out

    def finish(self) -> list[TimelineItem]:
        out = self._emit(self._max_end)
        if self._open_gap_start is not None:
            out.extend(self._close_gap(self._max_end))
        return out

    def _emit(self, until: int) -> list[TimelineItem]:
        count = until - self._base
        if count <= 0:
            return []
        out: list[TimelineItem] = []
        covered = self._covered[:count]
        edges = np.flatnonzero(np.diff(covered.astype(np.int8))) + 1
        bounds = [0, *edges.tolist(), count]
        for left, right in itertools.pairwise(bounds):
            if covered[left]:
                if self._open_gap_start is not None:
                    out.extend(self._close_gap(self._base + left))
                out.append(self._audio(left, right))
            elif self._open_gap_start is None:
                # Whether this hole is a gap or silence inside speech is decided when it ends.
                self._open_gap_start = self._base + left
        self._shift(count)
        return out

    def _close_gap(self, end: int) -> list[TimelineItem]:
        start = self._open_gap_start
        assert start is not None
        self._open_gap_start = None
        if end <= start:
            return []
        if end - start >= self._min_gap:
            return [Gap(start, end, SpanKind.GAP, GapCause.NO_SPEECH)]
        return [self._silence(start, end)]

    def _silence(self, start: int, end: int) -> Audio:
        return Audio(start, bytes((end - start) * 2 * self.channels))

    def _audio(self, left: int, right: int) -> Audio:
        block = np.clip(self._acc[left:right], -32768, 32767).astype("<i2")
        return Audio(self._base + left, block.tobytes())

    def _shift(self, count: int) -> None:
        self._acc[:-count] = self._acc[count:]
        self._acc[-count:] = 0
        self._covered[:-count] = self._covered[count:]
        self._covered[-count:] = False
        self._base += count
