"""The timeline is pure: these tests push chunks whose every sample encodes its true position,
so any misplacement, duplicate or drift shows up as a wrong value at a sample index."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.audio.timeline import Audio, Gap, SpanKind, Timeline, TimelineItem
from recorder.rtms.events import GapCause

RATE = 16_000
PACKET = 320  # samples per 20 ms packet at 16 kHz
T0 = 1_738_392_033_000


def chunk(index: int, samples: int = PACKET, offset: int = 0) -> bytes:
    """Packet ``index``: sample values are the true sample positions (mod 2**15)."""
    start = index * PACKET + offset
    return (np.arange(start, start + samples) % 32_000).astype("<i2").tobytes()


def ts(index: int) -> int:
    return T0 + index * 20


def render(items: list[TimelineItem]) -> tuple[np.ndarray, list[Gap]]:
    """Contiguity is part of the contract: every item starts where the previous ended."""
    parts: list[np.ndarray] = []
    gaps: list[Gap] = []
    cursor = 0
    for item in items:
        assert item.start == cursor, f"item at {item.start}, expected {cursor}"
        if isinstance(item, Audio):
            data = np.frombuffer(item.pcm, "<i2")
            parts.append(data)
            cursor += len(data)
        else:
            assert item.end > item.start
            gaps.append(item)
            parts.append(np.full(item.samples, -1, dtype=np.int16))
            cursor = item.end
    return (np.concatenate(parts) if parts else np.zeros(0, np.int16)), gaps


def feed(timeline: Timeline, pushes: list[tuple[int, bytes]]) -> list[TimelineItem]:
    items: list[TimelineItem] = []
    for timestamp, pcm in pushes:
        items += timeline.push(timestamp, pcm)
    return items + timeline.finish()


def assert_audio_where_it_belongs(signal: np.ndarray, first_packet: int = 0) -> None:
    received = signal != -1
    start = first_packet * PACKET
    truth = (np.arange(start, start + len(signal)) % 32_000).astype(np.int16)
    assert np.array_equal(signal[received], truth[received])


def test_in_order_packets_come_out_contiguous_and_exact() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    signal, gaps = render(feed(timeline, [(ts(i), chunk(i)) for i in range(100)]))
    assert gaps == []
    assert len(signal) == 100 * PACKET
    assert_audio_where_it_belongs(signal)
    assert timeline.anchor_ms == T0


def test_lost_packets_leave_an_exact_gap_with_the_default_cause() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    pushes = [(ts(i), chunk(i)) for i in range(60) if not 10 <= i < 20]
    signal, gaps = render(feed(timeline, pushes))
    assert gaps == [Gap(10 * PACKET, 20 * PACKET, SpanKind.GAP, GapCause.LOST_PACKETS)]
    assert_audio_where_it_belongs(signal)


def test_jitter_of_a_few_ms_is_absorbed_without_gaps() -> None:
    rng = random.Random(4)
    timeline = Timeline(sample_rate=RATE, channels=1)
    pushes = [(ts(i) + rng.randint(-4, 4), chunk(i)) for i in range(500)]
    signal, gaps = render(feed(timeline, pushes))
    assert gaps == []
    assert len(signal) == 500 * PACKET
    assert_audio_where_it_belongs(signal)


@pytest.mark.parametrize("ppm", [-1000, 1000])
def test_sender_clock_drift_is_followed_without_gaps_or_duplicates(ppm: int) -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    count = 15_000  # five minutes of 20 ms packets
    pushes = [(T0 + round(i * 20 * (1 + ppm / 1e6)), chunk(i)) for i in range(count)]
    signal, gaps = render(feed(timeline, pushes))
    assert gaps == []
    assert timeline.duplicate_samples == 0
    assert len(signal) == count * PACKET
    assert_audio_where_it_belongs(signal)
    # 1000 ppm over 300 s is 300 ms, i.e. 4800 samples of followed drift.
    assert abs(timeline.drift_samples - ppm * count * PACKET / 1e6) < 400


def test_reordering_within_the_holdback_is_repaired() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    order = []
    for i in range(0, 100, 2):
        order += [i + 1, i]
    signal, gaps = render(feed(timeline, [(ts(i), chunk(i)) for i in order]))
    assert gaps == []
    assert len(signal) == 100 * PACKET
    assert_audio_where_it_belongs(signal)
    assert timeline.duplicate_samples == 0


def test_a_packet_later_than_the_holdback_is_counted_late_not_written() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1, holdback_ms=100)
    pushes = [(ts(i), chunk(i)) for i in range(40) if i != 5] + [(ts(5), chunk(5))]
    signal, gaps = render(feed(timeline, pushes))
    assert gaps == [Gap(5 * PACKET, 6 * PACKET, SpanKind.GAP, GapCause.LOST_PACKETS)]
    assert timeline.late_samples == PACKET
    assert timeline.duplicate_samples == 0
    assert_audio_where_it_belongs(signal)


def test_interruption_window_names_the_gap() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    items = [item for i in range(50) for item in timeline.push(ts(i), chunk(i))]
    timeline.begin_window(GapCause.MEDIA_INTERRUPTED)
    timeline.end_window(span_ms=2_000)
    items += [item for i in range(150, 200) for item in timeline.push(ts(i), chunk(i))]
    signal, gaps = render(items + timeline.finish())
    assert gaps == [Gap(50 * PACKET, 150 * PACKET, SpanKind.GAP, GapCause.MEDIA_INTERRUPTED)]
    assert_audio_where_it_belongs(signal)


def test_replay_after_reconnect_lands_in_place_without_duplicates() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    items = [item for i in range(100) for item in timeline.push(ts(i), chunk(i))]
    timeline.begin_window(GapCause.SIGNALING_INTERRUPTED)
    timeline.end_window(span_ms=4_000)
    # Zoom re-sends what it buffered, overlapping the last 10 packets we already had; then a
    # part it could not buffer is missing; then live audio.
    replay = list(range(90, 150)) + list(range(200, 300))
    items += [item for i in replay for item in timeline.push(ts(i), chunk(i))]
    signal, gaps = render(items + timeline.finish())
    assert gaps == [Gap(150 * PACKET, 200 * PACKET, SpanKind.GAP, GapCause.SIGNALING_INTERRUPTED)]
    assert len(signal) == 300 * PACKET
    assert timeline.duplicate_samples == 10 * PACKET
    assert_audio_where_it_belongs(signal)


def test_an_unused_window_expires_and_does_not_mislabel_later_losses() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    items = [item for i in range(50) for item in timeline.push(ts(i), chunk(i))]
    timeline.begin_window(GapCause.MEDIA_INTERRUPTED)
    timeline.end_window(span_ms=500)
    # The replay covered everything; much later a packet is simply lost.
    pushes = [i for i in range(50, 400) if i != 300]
    items += [item for i in pushes for item in timeline.push(ts(i), chunk(i))]
    _, gaps = render(items + timeline.finish())
    assert gaps == [Gap(300 * PACKET, 301 * PACKET, SpanKind.GAP, GapCause.LOST_PACKETS)]


def test_pause_is_recorded_as_a_pause_with_its_actor() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    items = [item for i in range(20) for item in timeline.push(ts(i), chunk(i))]
    timeline.begin_window(None, kind=SpanKind.PAUSE, actor="host")
    timeline.end_window(span_ms=1_000, kind=SpanKind.PAUSE)
    items += [item for i in range(70, 90) for item in timeline.push(ts(i), chunk(i))]
    _, gaps = render(items + timeline.finish())
    assert gaps == [Gap(20 * PACKET, 70 * PACKET, SpanKind.PAUSE, None, "host")]


def test_undecodable_packet_becomes_a_decode_error_gap_over_its_span() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    items: list[TimelineItem] = []
    for i in range(30):
        if i == 7:
            items += timeline.push_undecodable(ts(i), PACKET)
        else:
            items += timeline.push(ts(i), chunk(i))
    signal, gaps = render(items + timeline.finish())
    assert gaps == [Gap(7 * PACKET, 8 * PACKET, SpanKind.GAP, GapCause.DECODE_ERROR)]
    assert len(signal) == 30 * PACKET
    assert_audio_where_it_belongs(signal)


def test_backpressure_drops_are_labelled_by_timestamp() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    items = [item for i in range(10) for item in timeline.push(ts(i), chunk(i))]
    timeline.label_range(ts(10), ts(15), GapCause.BACKPRESSURE)
    items += [item for i in range(15, 30) for item in timeline.push(ts(i), chunk(i))]
    _, gaps = render(items + timeline.finish())
    assert gaps == [Gap(10 * PACKET, 15 * PACKET, SpanKind.GAP, GapCause.BACKPRESSURE)]


def test_codec_delay_is_trimmed_as_priming_so_audio_starts_at_the_anchor() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1, delay_samples=104)
    # Decoded packet i carries true samples from i*PACKET - 104.
    pushes = [(ts(i), chunk(i, offset=-104)) for i in range(20)]
    signal, gaps = render(feed(timeline, pushes))
    assert gaps == []
    assert timeline.priming_samples == 104
    assert len(signal) == 20 * PACKET - 104
    assert_audio_where_it_belongs(signal)


def test_per_speaker_silence_defaults_to_no_speech() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1, default_cause=GapCause.NO_SPEECH)
    pushes = [(ts(i), chunk(i)) for i in [*range(5), *range(50, 55)]]
    _, gaps = render(feed(timeline, pushes))
    assert [(g.cause, g.samples) for g in gaps] == [(GapCause.NO_SPEECH, 45 * PACKET)]


def test_stereo_frames_are_counted_in_frames_not_bytes() -> None:
    timeline = Timeline(sample_rate=RATE, channels=2)
    stereo = np.repeat(np.arange(PACKET, dtype="<i2"), 2).tobytes()
    items = timeline.push(T0, stereo) + timeline.push(ts(3), stereo) + timeline.finish()
    assert [type(item).__name__ for item in items] == ["Audio", "Gap", "Audio"]
    assert items[1].start == PACKET
    assert items[2].start == 3 * PACKET


def test_memory_is_bounded_by_the_holdback_window() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1, holdback_ms=200)
    payload = chunk(0)
    for i in range(20_000):
        timeline.push(ts(i), payload)
        assert len(timeline._pending) <= 12
    assert len(timeline._labels) == 0
    assert len(timeline._recent_gaps) == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.booleans(), st.integers(min_value=-3, max_value=3)),
        min_size=5,
        max_size=150,
    )
)
def test_any_mix_of_loss_duplication_and_local_reordering_is_placed_exactly(
    plan: list[tuple[bool, bool, int]],
) -> None:
    order: list[int] = []
    for index, (lost, duplicated, swap) in enumerate(plan):
        if lost:
            continue
        order.append(index)
        if duplicated:
            order.append(index)
        if swap and len(order) >= 2 and abs(swap) == 1:
            order[-1], order[-2] = order[-2], order[-1]
    timeline = Timeline(sample_rate=RATE, channels=1)
    signal, gaps = render(feed(timeline, [(ts(i), chunk(i)) for i in order]))
    if order:
        assert_audio_where_it_belongs(signal, first_packet=min(order))
        assert len(signal) == (max(order) - min(order) + 1) * PACKET
    for gap in gaps:
        assert gap.cause in (GapCause.LOST_PACKETS,)


def test_a_lone_packet_with_a_wild_timestamp_is_an_outlier() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    pushes = [(ts(i), chunk(i)) for i in range(20)]
    pushes.insert(10, (ts(10) + 86_400_000, chunk(10)))  # one day ahead, once
    signal, gaps = render(feed(timeline, pushes))
    assert gaps == []
    assert len(signal) == 20 * PACKET
    assert timeline.outlier_samples == PACKET
    assert_audio_where_it_belongs(signal)


def test_a_long_jump_that_the_next_packet_confirms_is_a_gap() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    items = [item for i in range(20) for item in timeline.push(ts(i), chunk(i))]
    timeline.begin_window(None, kind=SpanKind.PAUSE, actor="agent")
    timeline.end_window(span_ms=60_000, kind=SpanKind.PAUSE)
    later = range(3_020, 3_040)  # a minute later
    items += [item for i in later for item in timeline.push(ts(i), chunk(i))]
    signal, gaps = render(items + timeline.finish())
    assert gaps == [Gap(20 * PACKET, 3_020 * PACKET, SpanKind.PAUSE, None, "agent")]
    assert timeline.outlier_samples == 0
    assert_audio_where_it_belongs(signal)


def test_a_jump_in_the_very_last_packet_is_kept() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1)
    pushes = [(ts(i), chunk(i)) for i in [*range(10), 1_000]]
    signal, gaps = render(feed(timeline, pushes))
    assert [(g.start, g.end) for g in gaps] == [(10 * PACKET, 1_000 * PACKET)]
    assert len(signal) == 1_001 * PACKET


def test_a_pause_during_a_speakers_silence_starts_at_the_pause_not_at_their_last_word() -> None:
    timeline = Timeline(sample_rate=RATE, channels=1, default_cause=GapCause.NO_SPEECH)
    items = [item for i in range(10) for item in timeline.push(ts(i), chunk(i))]
    # Silent from packet 10; the host pauses at packet 100 and resumes at packet 200.
    timeline.begin_window(None, kind=SpanKind.PAUSE, actor="host", at_ms=ts(100))
    timeline.end_window(span_ms=2_000, kind=SpanKind.PAUSE)
    items += [item for i in range(250, 260) for item in timeline.push(ts(i), chunk(i))]
    _, gaps = render(items + timeline.finish())
    assert gaps == [
        Gap(10 * PACKET, 100 * PACKET, SpanKind.GAP, GapCause.NO_SPEECH),
        Gap(100 * PACKET, 250 * PACKET, SpanKind.PAUSE, None, "host"),
    ]
