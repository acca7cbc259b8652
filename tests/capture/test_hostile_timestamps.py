"""The capture core against hostile timestamps and misleading events, driven directly (sans-IO):
bad timestamps refused at the boundary, gaps bounded by the recorder's clock, every gap named
with its true cause. Audio is L16, so what is recorded must be bit-exact."""

from __future__ import annotations

import io
import json
import wave

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.audio.manifest import SegmentManifestEntry
from recorder.capture.core import CaptureConfig, CaptureCore, Sealed
from recorder.rtms.events import (
    AudioCodec,
    AudioFormat,
    AudioPacket,
    CaptureEvent,
    GapCause,
    Interrupted,
    PacketsDropped,
    Recovered,
)
from recorder.testing.memory_sink import MemorySinkFactory

T0 = 1_763_726_400_000
C0 = 9_000_000
RATE = 16_000
PACKET = 320
FMT = AudioFormat(AudioCodec.L16, RATE, 1)


class Clock:
    """The recorder's monotonic clock, moved by the test (the seam ``clock_ms``)."""

    def __init__(self) -> None:
        self.ms = C0

    def __call__(self) -> int:
        return self.ms


def payload(index: int) -> bytes:
    """Packet ``index``: its samples are their own positions (mod 30000) plus one."""
    start = index * PACKET
    return (np.arange(start, start + PACKET) % 30_000 + 1).astype("<i2").tobytes()


def packet(index: int, timestamp: int | None = None, track: str = "mixed") -> AudioPacket:
    return AudioPacket(
        track, T0 + index * 20 if timestamp is None else timestamp, payload(index), FMT
    )


class Harness:
    def __init__(self, config: CaptureConfig | None = None) -> None:
        self.sinks = MemorySinkFactory()
        self.clock = Clock()
        self.core = CaptureCore(
            self.sinks,
            recording_id="rec-h",
            config=config or CaptureConfig(segment_seconds=60),
            now_ms=lambda: T0,
            clock_ms=self.clock,
        )
        self.sealed: list[Sealed] = []

    def audio(self, index: int, timestamp: int | None = None, track: str = "mixed") -> None:
        self.clock.ms = C0 + index * 20
        self.sealed += self.core.run_inline(self.core.handle_audio(packet(index, timestamp, track)))

    def event(self, event: CaptureEvent) -> None:
        self.sealed += self.core.run_inline(self.core.handle_event(event))

    def finish(self) -> None:
        self.sealed += self.core.run_inline(self.core.finish(interrupted=False))

    def entries(self, track: str = "mixed") -> list[SegmentManifestEntry]:
        return [
            s.entry
            for s in self.sealed
            if isinstance(s.entry, SegmentManifestEntry) and s.entry.track == track
        ]

    def gaps(self, track: str = "mixed") -> list[tuple[str | None, int, int]]:
        return [
            (g.cause, g.start_sample, g.end_sample) for e in self.entries(track) for g in e.gaps
        ]

    def signal(self, track: str = "mixed") -> np.ndarray:
        frames = []
        for sink in self.sinks.sinks:
            if sink.identity.track == track:
                with wave.open(io.BytesIO(sink.plaintext)) as wav:
                    frames.append(wav.readframes(wav.getnframes()))
        return np.frombuffer(b"".join(frames), "<i2")

    def records(self) -> list[dict[str, object]]:
        lines = [
            json.loads(line)
            for sink in self.sinks.sinks
            if sink.identity.track == "records"
            for line in sink.plaintext.splitlines()
        ]
        return lines


def assert_exact(signal: np.ndarray) -> None:
    """Every non-silent sample is at its true position."""
    truth = (np.arange(len(signal)) % 30_000 + 1).astype(np.int16)
    received = signal != 0
    assert np.array_equal(signal[received], truth[received])


def test_impossible_timestamps_are_refused_at_the_boundary_and_said() -> None:
    h = Harness()
    for i in range(100):
        if i in (0, 40, 41, 70):
            # Seconds, microseconds, zero, the largest 64-bit value: never placed.
            bad = [(T0 + i * 20) // 1000, (T0 + i * 20) * 1000, 0, 2**63 - 1][
                [0, 40, 41, 70].index(i)
            ]
            h.audio(i, bad)
        h.audio(i)
    h.finish()
    signal = h.signal()
    assert len(signal) == 100 * PACKET
    assert_exact(signal)
    assert h.gaps() == []
    assert h.core.manifest.counters["mixed"]["bad_timestamp_packets"] == 4
    said = [r for r in h.records() if r["type"] == "bad_timestamp"]
    assert [r["count"] for r in said] == [1, 2, 4]  # 1st, 2nd, 4th: never a flood


def test_a_frame_whose_timestamp_broke_leaves_a_gap_named_after_it() -> None:
    """The sender broke packet 40's timestamp (µs): its 20 ms are missing, and say why."""
    h = Harness()
    for i in range(100):
        h.audio(i, (T0 + i * 20) * 1000 if i == 40 else None)
    h.finish()
    assert h.gaps() == [(GapCause.BAD_TIMESTAMP.value, 40 * PACKET, 41 * PACKET)]
    assert_exact(h.signal())


def test_a_first_frame_off_by_a_day_costs_only_itself() -> None:
    h = Harness()
    h.audio(0, T0 + 86_400_000)
    for i in range(1, 100):
        h.audio(i)
    h.finish()
    signal = h.signal()
    assert h.gaps() == []
    assert len(signal) == 99 * PACKET
    assert np.array_equal(signal, np.frombuffer(b"".join(payload(i) for i in range(1, 100)), "<i2"))


def test_a_sender_clock_leap_is_a_named_discontinuity_not_hours_of_silence() -> None:
    h = Harness()
    for i in range(50):
        h.audio(i)
    for i in range(50, 100):
        h.audio(i, T0 + i * 20 + 5 * 3_600_000)
    h.finish()
    [(cause, start, end)] = h.gaps()
    assert cause == GapCause.TIMESTAMP_DISCONTINUITY.value
    assert (start, end - start) == (50 * PACKET, 1)
    assert sum(len(s.plaintext) for s in h.sinks.sinks if s.identity.track == "mixed") < 10**6
    assert h.core.manifest.counters["mixed"]["discontinuities"] == 1


def test_media_drop_then_failover_names_one_gap_and_then_nothing_else() -> None:
    """What the client sends now: each Interrupted paired with its own Recovered."""
    h = Harness()
    for i in range(50):
        h.audio(i)
    h.event(Interrupted(C0, GapCause.MEDIA_INTERRUPTED, media=("audio",), interruption_id=11))
    h.event(Interrupted(C0 + 500, GapCause.FAILOVER, interruption_id=12))
    h.event(Recovered(C0 + 2_000, C0, GapCause.MEDIA_INTERRUPTED, interruption_id=11))
    h.event(Recovered(C0 + 2_000, C0, GapCause.FAILOVER, interruption_id=12))
    for i in [*range(150, 300), *range(301, 400)]:
        h.audio(i)
    # A track that appears later opens no stale window either.
    for i in range(350, 360):
        h.audio(i, track="channel-2")
    for i in range(361, 400):
        h.audio(i, track="channel-2")
    h.finish()
    assert h.gaps() == [
        (GapCause.MEDIA_INTERRUPTED.value, 50 * PACKET, 150 * PACKET),
        (GapCause.LOST_PACKETS.value, 300 * PACKET, 301 * PACKET),
    ]
    assert h.gaps("channel-2") == [(GapCause.LOST_PACKETS.value, 10 * PACKET, 11 * PACKET)]


def test_a_failover_while_already_down_is_named_failover() -> None:
    h = Harness()
    for i in range(50):
        h.audio(i)
    h.event(Interrupted(C0, GapCause.SIGNALING_INTERRUPTED, interruption_id=21))
    h.event(Recovered(C0 + 2_000, C0, GapCause.FAILOVER, interruption_id=21))
    for i in range(150, 200):
        h.audio(i)
    h.finish()
    assert h.gaps() == [(GapCause.FAILOVER.value, 50 * PACKET, 150 * PACKET)]


def test_transcript_and_chat_troubles_never_name_an_audio_gap() -> None:
    h = Harness()
    for i in range(50):
        h.audio(i)
    h.event(Interrupted(C0, GapCause.MEDIA_INTERRUPTED, media=("transcript",), interruption_id=31))
    h.event(
        PacketsDropped(
            C0, 3, first_timestamp_ms=T0 + 1_000, last_timestamp_ms=T0 + 3_000, track="transcript"
        )
    )
    h.event(
        PacketsDropped(
            C0, 1, first_timestamp_ms=T0 + 1_100, last_timestamp_ms=T0 + 1_100, track="chat"
        )
    )
    for i in range(60, 120):
        h.audio(i)
    h.event(Recovered(C0 + 2_000, C0, GapCause.MEDIA_INTERRUPTED, interruption_id=31))
    h.finish()
    assert h.gaps() == [(GapCause.LOST_PACKETS.value, 50 * PACKET, 60 * PACKET)]
    kinds = [r["type"] for r in h.records()]
    assert "interrupted" in kinds  # still on the record
    assert "packets_dropped" in kinds


def test_interruptions_that_never_recover_keep_memory_bounded() -> None:
    h = Harness()
    for i in range(20):
        h.audio(i)
    for n in range(1, 2_000):
        h.event(Interrupted(C0, GapCause.MEDIA_INTERRUPTED, media=("audio",), interruption_id=n))
    assert len(h.core._open_windows) <= 32
    assert len(h.core._audio_interruptions) <= 32
    assert len(h.core.tracks["mixed"].timeline._windows) <= 32
    # A recovery of one still open closes it; its gap is named.
    h.event(Recovered(C0 + 1_000, C0, GapCause.MEDIA_INTERRUPTED, interruption_id=1_999))
    for i in range(70, 80):
        h.audio(i)
    h.finish()
    assert h.gaps() == [(GapCause.MEDIA_INTERRUPTED.value, 20 * PACKET, 70 * PACKET)]


def test_late_packets_rename_the_gap_they_missed() -> None:
    h = Harness()
    for i in range(100):
        if i != 40:
            h.audio(i)
    h.audio(40)  # 1.2 s late: its gap was written already
    h.finish()
    assert h.gaps() == [(GapCause.LATE_PACKETS.value, 40 * PACKET, 41 * PACKET)]
    late = [r for r in h.records() if r.get("cause") == GapCause.LATE_PACKETS.value]
    assert [(r["start_sample"], r["end_sample"]) for r in late] == [(40 * PACKET, 41 * PACKET)]


# --- property ----------------------------------------------------------------------------------

_GARBAGE = st.sampled_from([0, -1, T0 // 1000, T0 * 1000, 2**63 - 1, -(2**63), T0 + 10**10])
_STEP = st.one_of(
    st.just(("next", 0)),
    st.tuples(st.just("skip"), st.integers(1, 400)),
    st.tuples(st.just("dup"), st.just(0)),
    st.tuples(st.just("back"), st.integers(1, 300)),
    st.tuples(st.just("shift"), st.integers(-(10**9), 10**9)),
    st.tuples(st.just("garbage"), _GARBAGE),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_STEP, min_size=1, max_size=200))
def test_any_timestamp_sequence_is_recorded_bounded_named_and_once(
    steps: list[tuple[str, int]],
) -> None:
    h = Harness(CaptureConfig(segment_seconds=5, plausible_lead_ms=70_000))
    index, shift = 0, 0
    written_before = 0
    lead_samples = RATE * 70
    for action, value in steps:
        if action == "skip":
            index += value
        elif action == "back":
            index = max(0, index - value)
        elif action == "shift":
            shift += value
        timestamp = value if action == "garbage" else T0 + index * 20 + shift
        # The recorder's clock is monotonic whatever the sender claims; a skip takes real time.
        h.clock.ms += 20 * (value if action == "skip" else 1)
        h.sealed += h.core.run_inline(
            h.core.handle_audio(AudioPacket("mixed", timestamp, payload(index), FMT))
        )
        if action != "dup":
            index += 1
        written = sum(s.body_size for s in h.sinks.sinks if s.identity.track == "mixed")
        # Bounded work per packet: what one packet makes the writer write is at most the
        # clock's time since the stream began, plus the plausible lead, plus one packet.
        per_packet = (written - written_before) // 2
        assert per_packet <= RATE * (h.clock.ms - C0) // 1000 + 2 * lead_samples + PACKET
        written_before = written
        # Bounded memory whatever the timestamps.
        for track in h.core.tracks.values():
            assert len(track.timeline._pending) <= 64
            assert len(track.timeline._labels) <= 256
    h.finish()
    entries = h.entries()
    cursor = 0
    for entry in sorted(entries, key=lambda e: e.segment_index):
        assert entry.start_sample == cursor  # segments abut: no sample written twice
        cursor = entry.end_sample
        for gap in entry.gaps:
            assert gap.cause in {c.value for c in GapCause}
    assert len(h.signal()) == cursor


def test_a_far_future_packet_of_one_speaker_releases_no_other_speaker_early() -> None:
    """Per-speaker tracks are released to the mixdown by the others' timestamps: a bad one
    must not flush a speaker's hold-back, or that speaker's reordered packets come too late."""
    h = Harness(CaptureConfig(segment_seconds=60, mixdown=True))
    order = [*range(30), 31, 30, *range(32, 60)]
    for i in order:
        h.audio(i, track="user-1")
        if i == 31:
            # While user-1's packet 30 is still on its way.
            h.audio(i, T0 + 31 * 20 + 3_600_000, track="user-2")
        h.audio(i, track="user-2")
    h.finish()
    for track in ("user-1", "user-2"):
        assert h.gaps(track) == [], track
        assert_exact(h.signal(track))
        assert h.core.manifest.counters[track]["late_samples"] == 0, track


def test_a_drop_range_with_a_broken_timestamp_names_only_what_it_can() -> None:
    h = Harness()
    for i in range(50):
        h.audio(i)
    # The outlet's range spans the dropped packets' own timestamps: one was garbage.
    h.event(
        PacketsDropped(
            C0, 5, first_timestamp_ms=T0 + 1_000, last_timestamp_ms=2**63 - 1, track="mixed"
        )
    )
    h.event(
        PacketsDropped(C0, 5, first_timestamp_ms=0, last_timestamp_ms=T0 + 5_000, track="mixed")
    )
    for i in [*range(51, 150), *range(160, 200)]:
        h.audio(i)
    h.finish()
    assert h.gaps() == [
        (GapCause.BACKPRESSURE.value, 50 * PACKET, 51 * PACKET),
        (GapCause.LOST_PACKETS.value, 150 * PACKET, 160 * PACKET),
    ]
