"""``Timeline.push`` takes an in-order packet by a fast path (rule 2 only, inline); every other
packet goes through ``_accept``. The fast path must be exactly the general one for the packets
it takes: here a timeline whose ``push`` always takes the general path is fed the same hostile
sequence (jitter, drift, loss, reordering, replays, jumps, bad timestamps, undecodable packets,
windows, codec priming) and both must hand out the same items and keep the same counters."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.audio.timeline import Audio, SpanKind, Timeline, TimelineItem, _Chunk
from recorder.rtms.events import GapCause

T0 = 1_738_392_033_000


class GeneralPathTimeline(Timeline):
    """What ``push`` did before its fast path: every chunk through ``_accept``."""

    def push(
        self, timestamp_ms: int, pcm: bytes, *, now_ms: int | None = None
    ) -> list[TimelineItem]:
        chunk = _Chunk(timestamp_ms, now_ms, pcm, len(pcm) // self.frame_bytes)
        if self._t0 is None:
            return self._hold_for_anchor(chunk)
        return self._accept(chunk)


def _state(timeline: Timeline) -> tuple[object, ...]:
    return (
        timeline.emitted_samples,
        timeline.anchor_ms,
        timeline.holding,
        timeline.has_late_spans,
        timeline.drift_samples,
        timeline.duplicate_samples,
        timeline.late_samples,
        timeline.priming_samples,
        timeline.outlier_samples,
        timeline.discontinuities,
        list(timeline._pending),
    )


#: One step: ("push", ms off the ideal timestamp, samples, now_ms off, decodable), a window
#: begun or ended, or a packet refused for its timestamp.
_step = st.one_of(
    st.tuples(
        st.just("push"),
        st.one_of(
            st.integers(min_value=-12, max_value=12),  # jitter around rule 2's tolerance
            st.sampled_from([-400, -60, -40, 40, 60, 250, 6_000, 120_000]),  # late, jumps
        ),
        st.sampled_from([320, 320, 320, 160, 321, 7]),
        st.integers(min_value=-30, max_value=30),
        st.booleans(),
    ),
    st.tuples(st.just("skip"), st.integers(min_value=1, max_value=5)),
    st.tuples(st.just("window"), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(_step, min_size=1, max_size=120),
    delay=st.sampled_from([0, 13]),
    channels=st.sampled_from([1, 2]),
    clocked=st.booleans(),
)
def test_the_fast_path_hands_out_exactly_what_the_general_path_does(
    steps: list[tuple[object, ...]], delay: int, channels: int, clocked: bool
) -> None:
    fast = Timeline(sample_rate=16_000, channels=channels, delay_samples=delay)
    general = GeneralPathTimeline(sample_rate=16_000, channels=channels, delay_samples=delay)
    index = 0
    decodable_pushes = 0
    for step in steps:
        kind = step[0]
        fast_items: list[TimelineItem]
        general_items: list[TimelineItem]
        if kind == "push":
            _, off_ms, samples, now_off, decodable = step
            assert isinstance(off_ms, int)
            assert isinstance(samples, int)
            assert isinstance(now_off, int)
            timestamp = T0 + index * 20 + off_ms
            now = 500_000 + index * 20 + now_off if clocked else None
            if decodable:
                decodable_pushes += 1
                pcm = bytes([index % 251]) * (samples * 2 * channels)
                fast_items = fast.push(timestamp, pcm, now_ms=now)
                general_items = general.push(timestamp, pcm, now_ms=now)
            else:
                fast_items = fast.push_undecodable(timestamp, samples, now_ms=now)
                general_items = general.push_undecodable(timestamp, samples, now_ms=now)
            index += 1
        elif kind == "skip":
            count = step[1]
            assert isinstance(count, int)
            index += count
            fast.note_refused(320 * count)
            general.note_refused(320 * count)
            continue
        else:
            if step[1]:
                fast.begin_window(GapCause.MEDIA_INTERRUPTED, kind=SpanKind.GAP)
                general.begin_window(GapCause.MEDIA_INTERRUPTED, kind=SpanKind.GAP)
            else:
                fast.end_window(span_ms=100, kind=SpanKind.GAP)
                general.end_window(span_ms=100, kind=SpanKind.GAP)
            continue
        assert fast_items == general_items
        assert _state(fast) == _state(general)
    assert fast.finish() == general.finish()
    assert _state(fast) == _state(general)


def test_emitted_audio_is_the_frozen_audio_built_the_ordinary_way() -> None:
    timeline = Timeline(sample_rate=16_000, channels=1)
    items: list[TimelineItem] = []
    for index in range(6):
        items += timeline.push(T0 + index * 20, bytes([index]) * 640, now_ms=index * 20)
    items += timeline.finish()
    assert [type(item) for item in items] == [Audio] * 6
    assert items == [Audio(index * 320, bytes([index]) * 640) for index in range(6)]
    assert [hash(item) for item in items] == [
        hash(Audio(index * 320, bytes([index]) * 640)) for index in range(6)
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        items[0].start = 1  # type: ignore[misc]
