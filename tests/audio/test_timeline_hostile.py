"""Timestamps from a hostile or broken sender: the timeline's rules 0, 6 and 7, and the honest
naming of gaps (paired windows, late packets, pauses). Each packet's samples carry its true
position, so misplacement shows as a wrong value (see ``test_timeline``)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.audio.timeline import (
    Audio,
    Gap,
    SpanKind,
    Timeline,
    TimelineItem,
    is_plausible_timestamp_ms,
)
from recorder.rtms.events import GapCause

from .test_timeline import PACKET, RATE, T0, assert_audio_where_it_belongs, chunk, render, ts

#: The recorder's monotonic clock at packet 0 (any origin: only differences count).
C0 = 5_000_000

SECONDS = T0 // 1000
MICROSECONDS = T0 * 1000
GARBAGE = (0, -1, -T0, SECONDS, MICROSECONDS, 2**63 - 1, T0 + 86_400_000, T0 - 86_400_000)


def clock(index: int) -> int:
    return C0 + index * 20


def live(timeline: Timeline, pushes: list[tuple[int, bytes, int]]) -> list[TimelineItem]:
    """Push (timestamp, pcm, clock) triples, then finish."""
    items: list[TimelineItem] = []
    for timestamp, pcm, now in pushes:
        items += timeline.push(timestamp, pcm, now_ms=now)
    return items + timeline.finish()


def good(index: int) -> tuple[int, bytes, int]:
    return ts(index), chunk(index), clock(index)


def test_timestamp_bounds_refuse_seconds_microseconds_and_garbage() -> None:
    assert is_plausible_timestamp_ms(T0)
    for value in (0, -1, SECONDS, MICROSECONDS, 2**63 - 1, -(2**63)):
        assert not is_plausible_timestamp_ms(value), value


def test_a_first_packet_in_seconds_neither_anchors_nor_costs_a_sample() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    pushes = [(SECONDS, chunk(0), clock(0)), *(good(i) for i in range(1, 50))]
    signal, gaps = render(live(timeline, pushes))
    assert gaps == []
    assert timeline.anchor_ms == ts(1)
    assert timeline.outlier_samples == PACKET
    assert len(signal) == 49 * PACKET
    assert_audio_where_it_belongs(signal, first_packet=1)


def test_a_far_future_first_packet_does_not_move_the_holdback_horizon() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    items = timeline.push(T0 + 3_600_000, chunk(0), now_ms=clock(0))
    for i in range(1, 40):
        items += timeline.push(*good(i)[:2], now_ms=clock(i))
    # Audio flows after the hold-back, as if the bad packet had never come.
    assert sum(len(i.pcm) // 2 for i in items if isinstance(i, Audio)) >= 25 * PACKET
    signal, gaps = render(items + timeline.finish())
    assert gaps == []
    assert_audio_where_it_belongs(signal, first_packet=1)


def test_without_agreement_the_oldest_candidate_is_dropped_and_anchoring_waits() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    pushes = [(0, chunk(0), clock(0)), (MICROSECONDS, chunk(1), clock(1))]
    pushes += [good(i) for i in range(2, 30)]
    signal, gaps = render(live(timeline, pushes))
    assert gaps == []
    assert timeline.anchor_ms == ts(2)
    assert timeline.outlier_samples == 2 * PACKET
    assert_audio_where_it_belongs(signal, first_packet=2)


def test_a_microsecond_outlier_mid_stream_loses_only_itself() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    pushes = [good(i) for i in range(60)]
    pushes.insert(30, (MICROSECONDS, chunk(30), clock(30)))
    signal, gaps = render(live(timeline, pushes))
    assert gaps == []
    assert len(signal) == 60 * PACKET
    assert timeline.outlier_samples == PACKET
    assert_audio_where_it_belongs(signal)


def test_a_small_bad_jump_does_not_lose_the_packets_it_skipped() -> None:
    """Three seconds ahead, once: believed at once it would write a hole over good audio."""
    timeline = Timeline(sample_rate=RATE, channels=1)
    pushes = [good(i) for i in range(60)]
    pushes.insert(30, (ts(30) + 3_000, chunk(30), clock(30)))
    signal, gaps = render(live(timeline, pushes))
    assert gaps == []
    assert_audio_where_it_belongs(signal)
    assert timeline.outlier_samples == PACKET


def test_a_confirmed_implausible_jump_is_a_discontinuity_not_silence() -> None:
    """The sender's clock leaps a year ahead and stays there: re-anchored, no year of zeros."""
    timeline = Timeline(sample_rate=RATE, channels=1)
    year = 365 * 86_400_000
    pushes = [good(i) for i in range(50)]
    pushes += [(ts(i) + year, chunk(i), clock(i)) for i in range(50, 100)]
    signal, gaps = render(live(timeline, pushes))
    assert timeline.discontinuities == 1
    [gap] = gaps
    assert gap.cause is GapCause.TIMESTAMP_DISCONTINUITY
    assert gap.start == 50 * PACKET
    # As long as the recorder's clock says the pause between the packets was: nothing.
    assert gap.samples == 1
    assert len(signal) == 100 * PACKET + 1
    audio = np.delete(signal, 50 * PACKET)
    assert_audio_where_it_belongs(audio)


def test_a_clock_reset_backwards_is_a_discontinuity_and_nothing_is_a_duplicate() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    pushes = [good(i) for i in range(50)]
    # Half a second of real silence, then timestamps restart an hour earlier.
    pushes += [(ts(i) - 3_600_000, chunk(i), clock(i) + 500) for i in range(50, 100)]
    signal, gaps = render(live(timeline, pushes))
    assert timeline.duplicate_samples == 0
    [gap] = gaps
    assert gap.cause is GapCause.TIMESTAMP_DISCONTINUITY
    assert gap.samples == RATE // 2
    received = np.concatenate([signal[: gap.start], signal[gap.end :]])
    assert_audio_where_it_belongs(received)


def test_a_plausible_long_jump_is_still_a_real_gap() -> None:
    """A minute on both clocks is a minute of gap (a pause nobody announced)."""
    timeline = Timeline(sample_rate=RATE, channels=1)
    pushes = [good(i) for i in range(20)] + [good(i) for i in range(3_020, 3_040)]
    signal, gaps = render(live(timeline, pushes))
    assert gaps == [Gap(20 * PACKET, 3_020 * PACKET, SpanKind.GAP, GapCause.LOST_PACKETS)]
    assert timeline.discontinuities == 0
    assert_audio_where_it_belongs(signal)


def test_a_jump_ahead_of_the_clock_beyond_the_lead_is_a_discontinuity() -> None:
    """Timestamps a day ahead while the clock moved a second: not a day of silence."""
    timeline = Timeline(sample_rate=RATE, channels=1, plausible_lead_ms=70_000)
    pushes = [good(i) for i in range(20)]
    pushes += [(ts(i) + 86_400_000, chunk(i), clock(i) + 1_000) for i in range(20, 40)]
    _, gaps = render(live(timeline, pushes))
    [gap] = gaps
    assert gap.cause is GapCause.TIMESTAMP_DISCONTINUITY
    assert gap.samples == RATE  # the second the clock saw


def test_buffered_replay_after_connect_is_not_implausible() -> None:
    """Zoom delivers up to a minute of buffered audio at once, then live audio (§9.4)."""
    timeline = Timeline(sample_rate=RATE, channels=1)
    replay = [(ts(i), chunk(i), C0) for i in range(3_000)]  # 60 s, all at one instant
    live_part = [(ts(i), chunk(i), C0 + (i - 3_000) * 20) for i in range(3_000, 3_100)]
    signal, gaps = render(live(timeline, replay + live_part))
    assert gaps == []
    assert timeline.discontinuities == 0
    assert len(signal) == 3_100 * PACKET


# --- windows: paired by id, true cause, pause slack, late packets ------------------------------


def test_interruptions_are_paired_by_id_and_a_stale_one_names_nothing_later() -> None:
    """A media drop, then a failover: both end; later losses are plain lost packets."""
    timeline = Timeline(sample_rate=RATE, channels=1)
    items = [x for i in range(50) for x in timeline.push(*good(i)[:2], now_ms=clock(i))]
    timeline.begin_window(GapCause.MEDIA_INTERRUPTED, window_id=7)
    timeline.begin_window(GapCause.FAILOVER, window_id=8)
    timeline.end_window(span_ms=2_000, window_id=7)
    timeline.end_window(span_ms=2_000, window_id=8)
    later = [i for i in range(150, 400) if i != 300]
    items += [x for i in later for x in timeline.push(*good(i)[:2], now_ms=clock(i))]
    _, gaps = render(items + timeline.finish())
    assert gaps == [
        Gap(50 * PACKET, 150 * PACKET, SpanKind.GAP, GapCause.MEDIA_INTERRUPTED),
        Gap(300 * PACKET, 301 * PACKET, SpanKind.GAP, GapCause.LOST_PACKETS),
    ]


def test_the_cause_given_at_recovery_is_the_one_recorded() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    items = [x for i in range(50) for x in timeline.push(*good(i)[:2], now_ms=clock(i))]
    timeline.begin_window(GapCause.SIGNALING_INTERRUPTED, window_id=3)
    timeline.end_window(span_ms=2_000, window_id=3, cause=GapCause.FAILOVER)
    items += [x for i in range(150, 200) for x in timeline.push(*good(i)[:2], now_ms=clock(i))]
    _, gaps = render(items + timeline.finish())
    assert gaps == [Gap(50 * PACKET, 150 * PACKET, SpanKind.GAP, GapCause.FAILOVER)]


def test_windows_that_began_apart_each_name_their_part() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1, default_cause=GapCause.NO_SPEECH)
    items = [x for i in range(10) for x in timeline.push(*good(i)[:2], now_ms=clock(i))]
    timeline.begin_window(GapCause.MEDIA_INTERRUPTED, at_ms=ts(40), window_id=1)
    timeline.begin_window(None, kind=SpanKind.PAUSE, actor="host", at_ms=ts(100))
    timeline.end_window(span_ms=2_000, window_id=1)
    timeline.end_window(span_ms=2_000, kind=SpanKind.PAUSE)
    items += [x for i in range(200, 220) for x in timeline.push(*good(i)[:2], now_ms=clock(i))]
    _, gaps = render(items + timeline.finish())
    assert gaps == [
        Gap(10 * PACKET, 40 * PACKET, SpanKind.GAP, GapCause.NO_SPEECH),
        Gap(40 * PACKET, 100 * PACKET, SpanKind.GAP, GapCause.MEDIA_INTERRUPTED),
        Gap(100 * PACKET, 200 * PACKET, SpanKind.PAUSE, None, "host"),
    ]


def test_a_pause_announced_a_packet_after_the_last_audio_starts_the_gap() -> None:
    """No ~20 ms sliver of ``lost_packets`` before a pause."""
    timeline = Timeline(sample_rate=RATE, channels=1)
    items = [x for i in range(20) for x in timeline.push(*good(i)[:2], now_ms=clock(i))]
    timeline.begin_window(None, kind=SpanKind.PAUSE, actor="host", at_ms=ts(21))
    timeline.end_window(span_ms=1_000, kind=SpanKind.PAUSE)
    items += [x for i in range(70, 90) for x in timeline.push(*good(i)[:2], now_ms=clock(i))]
    _, gaps = render(items + timeline.finish())
    assert gaps == [Gap(20 * PACKET, 70 * PACKET, SpanKind.PAUSE, None, "host")]


def test_late_packets_report_the_span_they_missed() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1, holdback_ms=100)
    pushes = [(ts(i), chunk(i)) for i in range(40) if i != 5] + [(ts(5), chunk(5))]
    for timestamp, pcm in pushes:
        timeline.push(timestamp, pcm)
    assert timeline.take_late_spans() == [(5 * PACKET, 6 * PACKET)]
    assert timeline.take_late_spans() == []


def test_hostile_label_and_window_positions_stay_bounded() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    items = [x for i in range(20) for x in timeline.push(*good(i)[:2], now_ms=clock(i))]
    for n in range(1_000):
        timeline.label_range(2**62, 2**63 - 1, GapCause.BACKPRESSURE)
        timeline.label_range(ts(21), ts(22), GapCause.BACKPRESSURE)
        timeline.begin_window(GapCause.MEDIA_INTERRUPTED, at_ms=2**63 - 1, window_id=n + 1)
    assert len(timeline._labels) <= 256
    assert len(timeline._windows) <= 32
    items += [x for i in range(21, 40) for x in timeline.push(*good(i)[:2], now_ms=clock(i))]
    _, gaps = render(items + timeline.finish())
    assert all(gap.samples <= PACKET for gap in gaps)


# --- property tests -----------------------------------------------------------------------------

#: Each packet's samples are its arrival number: any sample seen twice would show.
_MUTATIONS = st.sampled_from(
    ["good", "good", "good", "good", "dup", "swap", "garbage", "jump_fwd", "jump_back", "gap"]
)


def _tagged(tag: int) -> bytes:
    return np.full(PACKET, tag % 30_000 + 1, dtype="<i2").tobytes()


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.tuples(_MUTATIONS, st.sampled_from(GARBAGE), st.integers(-(10**7), 10**7)),
        min_size=1,
        max_size=250,
    ),
    st.booleans(),
)
def test_any_timestamp_sequence_is_bounded_contiguous_named_and_never_doubled(
    plan: list[tuple[str, int, int]], with_clock: bool
) -> None:
    timeline = Timeline(sample_rate=RATE, channels=1, plausible_lead_ms=70_000)
    lead = RATE * 70_000 // 1000
    shift = 0  # a sender clock that jumps, and stays jumped
    index = 0
    pushes: list[tuple[int, int, int | None]] = []
    for tag, (mutation, garbage, jump) in enumerate(plan):
        index += 1
        timestamp = ts(index) + shift
        if mutation == "garbage":
            timestamp = garbage
        elif mutation == "jump_fwd":
            shift += abs(jump)
            timestamp = ts(index) + shift
        elif mutation == "jump_back":
            shift -= abs(jump)
            timestamp = ts(index) + shift
        elif mutation == "gap":
            index += abs(jump) % 500
            timestamp = ts(index) + shift
        now = clock(index) if with_clock else None
        pushes.append((timestamp, tag, now))
        if mutation == "dup":
            pushes.append((timestamp, tag, now))
        elif mutation == "swap" and len(pushes) >= 2:
            pushes[-1], pushes[-2] = pushes[-2], pushes[-1]
    items: list[TimelineItem] = []
    pushed_samples = 0
    emitted = 0
    first_clock = clock(0)
    for timestamp, tag, now in pushes:
        out = timeline.push(timestamp, _tagged(tag), now_ms=now)
        pushed_samples += PACKET
        emitted += sum(i.samples if isinstance(i, Gap) else len(i.pcm) // 2 for i in out)
        items += out
        # Bounded work: nothing beyond the clock's elapsed time, the lead and what was pushed.
        if now is not None:
            bound = RATE * (now - first_clock) // 1000 + 2 * lead + pushed_samples
        else:
            bound = timeline._max_gap * (timeline.discontinuities + 2) + pushed_samples
        assert emitted <= bound
        # Bounded memory, whatever the timestamps.
        assert len(timeline._pending) <= 64
        assert len(timeline._probation) <= 3
        assert len(timeline._labels) <= 256
    items += timeline.finish()
    signal, gaps = render(items)  # contiguous: no sample index is written twice
    for gap in gaps:
        assert gap.cause is not None
    values, counts = np.unique(signal[signal != -1], return_counts=True)
    duplicated = {int(v): int(c) for v, c in zip(values, counts, strict=True) if c > PACKET}
    # Only pushes that were themselves duplicated ("dup") may carry one tag twice.
    assert not duplicated or all(
        sum(1 for _, t, _ in pushes if t % 30_000 + 1 == v) > 1 for v in duplicated
    )


_BAD = st.one_of(
    st.sampled_from(GARBAGE),
    st.integers(250, 10**13).map(lambda d: T0 + d),
    st.integers(250, 10**13).map(lambda d: T0 - d),
)


@settings(max_examples=120, deadline=None)
@given(
    st.integers(min_value=10, max_value=300),
    st.lists(st.tuples(st.integers(min_value=0, max_value=299), _BAD), max_size=20),
)
def test_isolated_bad_timestamps_lose_only_themselves(
    count: int, bad: list[tuple[int, int]]
) -> None:
    """Any lone bad packet (no two in a row), anywhere, even first: the good ones are exact."""
    at = {position: value for position, value in bad if position < count}
    pushes: list[tuple[int, bytes, int]] = []
    for i in range(count):
        if i in at and i - 1 not in at:
            # The bad value is relative to packet i's time when it is a near miss.
            value = at[i] if at[i] in GARBAGE else at[i] - T0 + ts(i)
            pushes.append((value, chunk(i), clock(i)))
        pushes.append(good(i))
    timeline = Timeline(sample_rate=RATE, channels=1)
    signal, gaps = render(live(timeline, pushes))
    assert gaps == []
    assert len(signal) == count * PACKET
    assert_audio_where_it_belongs(signal)
    assert timeline.discontinuities == 0
