"""Track retirement in the synchronous core: leave, transfer and long silence seal a track and
free it; its next packet reopens it on the same sample axis; the time between is accounted."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.audio.manifest import SegmentManifestEntry
from recorder.audio.wav import HEADER_SIZE
from recorder.capture.actions import (
    DeferredSink,
    DiscardSegment,
    OpenSegment,
    SealSegment,
    run_inline,
)
from recorder.capture.core import CaptureConfig, CaptureCore
from recorder.rtms.events import (
    AudioCodec,
    AudioFormat,
    AudioPacket,
    ContactCenterEvent,
    GapCause,
    Interrupted,
    Participant,
    ParticipantEvent,
    Recovered,
)
from recorder.testing.memory_sink import MemorySinkFactory

T0 = 1_763_726_400_000
L16 = AudioFormat(AudioCodec.L16, 16_000, 1, 20, data_opt=2)


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


def voice(seed: int, packets: int) -> list[bytes]:
    """Distinct, non-silent PCM per speaker (L16 passes through bit-exact)."""
    rng = np.random.default_rng(seed)
    pcm = rng.integers(-20_000, 20_000, size=packets * 320, dtype=np.int16)
    return [pcm[i * 320 : (i + 1) * 320].tobytes() for i in range(packets)]


def make_core(clock: Clock, **config: object) -> tuple[CaptureCore, MemorySinkFactory]:
    sinks = MemorySinkFactory()
    options: dict[str, object] = {"holdback_ms": 40, "retire_after_s": 1.0}
    options.update(config)
    core = CaptureCore(
        sinks,
        recording_id="rec-r",
        config=CaptureConfig(**options),  # type: ignore[arg-type]
        now_ms=clock,
        clock_ms=clock,
    )
    return core, sinks


def speak(core: CaptureCore, track: str, start_ms: int, pcm: list[bytes]) -> list[object]:
    sealed: list[object] = []
    for index, payload in enumerate(pcm):
        packet = AudioPacket(track, start_ms + index * 20, payload, L16, user_id=track[5:])
        sealed += core.run_inline(core.handle_audio(packet))
    return sealed


def audio_of(sinks: MemorySinkFactory, track: str) -> list[bytes]:
    return [
        sink.plaintext[HEADER_SIZE:]
        for sink in sinks.sinks
        if sink.identity.track == track and sink.sealed is not None
    ]


def open_sinks(sinks: MemorySinkFactory) -> int:
    return sum(1 for sink in sinks.sinks if sink.sealed is None)


def test_three_hundred_speakers_who_spoke_once_leave_three_hundred_sealed_segments() -> None:
    clock = Clock()
    core, sinks = make_core(clock)
    spoken: dict[str, bytes] = {}
    for n in range(300):
        track = f"user-{n}"
        pcm = voice(n, 10)
        spoken[track] = b"".join(pcm)
        speak(core, track, T0 + n * 400, pcm)
        clock.ms = T0 + n * 400 + 200
        # The shell calls this at every checkpoint; two silent checks a second apart retire.
        core.run_inline(core.retire_silent(clock.ms))
        core.run_inline(core.retire_silent(clock.ms + 1_000))
        assert len(core.tracks) <= 1
    assert len(core.tracks) == 0
    assert len(core.dormant) == 300
    # Only the records segment is still open: one file, not 300.
    assert open_sinks(sinks) <= 1
    for track, pcm in spoken.items():
        assert audio_of(sinks, track) == [pcm], track
    core.run_inline(core.finish(interrupted=False))
    assert open_sinks(sinks) == 0


def test_a_speaker_who_returns_reopens_the_same_track_on_the_same_clock() -> None:
    clock = Clock()
    core, sinks = make_core(clock)
    first, second = voice(1, 25), voice(2, 25)
    speak(core, "user-ada", T0, first)
    clock.ms += 2_000
    core.run_inline(core.retire_silent(clock.ms))
    core.run_inline(core.retire_silent(clock.ms + 1_000))
    assert "user-ada" not in core.tracks
    back_ms = T0 + 3_600_000  # an hour later
    speak(core, "user-ada", back_ms, second)
    core.run_inline(core.finish(interrupted=False))
    entries = core.manifest.audio_entries("user-ada")
    assert [e.segment_index for e in entries] == [0, 1]
    before, after = entries
    assert before.absence is None
    assert before.start_sample == 0
    assert before.end_sample == 25 * 320
    # Same axis: sample s is t0 + s/16 ms, before and after the retirement.
    assert after.start_sample == (back_ms - T0) * 16
    assert after.start_ms == back_ms
    absence = after.absence
    assert absence is not None
    assert (absence.start_sample, absence.end_sample) == (before.end_sample, after.start_sample)
    assert (absence.start_ms, absence.end_ms) == (before.end_ms, after.start_ms)
    assert absence.cause == GapCause.NO_SPEECH.value
    assert absence.segment_end_sample == 0
    # No hour of silence in any WAV: each segment holds exactly what was said.
    assert audio_of(sinks, "user-ada") == [b"".join(first), b"".join(second)]
    assert after.to_dict()["absence"] == absence.to_dict()


@pytest.mark.parametrize("first_back", ["reordered", "outlier"])
def test_a_returning_speaker_is_placed_by_the_anchor_not_by_the_first_packet(
    first_back: str,
) -> None:
    """A reopened track's fresh timeline anchors on agreeing packets, not on the first one: the
    place on the track's axis (and the absence before it) must come from that anchor. The first
    packet back may be overtaken by an earlier one, or be an outlier the anchoring drops."""
    clock = Clock()
    core, sinks = make_core(clock)
    first, second = voice(1, 25), voice(2, 25)
    speak(core, "user-ada", T0, first)
    clock.ms += 2_000
    core.run_inline(core.retire_silent(clock.ms))
    core.run_inline(core.retire_silent(clock.ms + 1_000))
    assert "user-ada" not in core.tracks
    back_ms = T0 + 600_000
    clock.ms = back_ms
    packets = [
        AudioPacket("user-ada", back_ms + index * 20, payload, L16, user_id="ada")
        for index, payload in enumerate(second)
    ]
    if first_back == "reordered":
        packets[0], packets[1] = packets[1], packets[0]
    else:
        stray = AudioPacket("user-ada", back_ms + 1_800_000, voice(3, 1)[0], L16, user_id="ada")
        packets.insert(0, stray)
    for packet in packets:
        core.run_inline(core.handle_audio(packet))
    core.run_inline(core.finish(interrupted=False))
    before, after = core.manifest.audio_entries("user-ada")
    assert after.start_sample == (back_ms - T0) * 16
    assert after.start_ms == back_ms
    absence = after.absence
    assert absence is not None
    assert (absence.start_sample, absence.end_sample) == (before.end_sample, after.start_sample)
    assert (absence.start_ms, absence.end_ms) == (before.end_ms, back_ms)
    assert audio_of(sinks, "user-ada") == [b"".join(first), b"".join(second)]


def test_a_participant_who_leaves_is_retired_at_once_and_the_absence_says_so() -> None:
    clock = Clock()
    core, sinks = make_core(clock, retire_after_s=0.0)
    speak(core, "user-bob", T0, voice(3, 10))
    leave = ParticipantEvent(T0 + 500, 4, "PARTICIPANT_LEAVE", (Participant("bob", "Bob"),))
    core.run_inline(core.handle_event(leave))
    assert "user-bob" not in core.tracks
    assert audio_of(sinks, "user-bob") == [b"".join(voice(3, 10))]
    speak(core, "user-bob", T0 + 60_000, voice(4, 10))
    core.run_inline(core.finish(interrupted=False))
    absence = core.manifest.audio_entries("user-bob")[1].absence
    assert absence is not None
    assert absence.cause == GapCause.PARTICIPANT_LEFT.value


def test_a_transfer_retires_the_channel_and_an_interruption_names_the_absence() -> None:
    clock = Clock()
    core, _ = make_core(clock)
    channel = AudioFormat(AudioCodec.L16, 16_000, 1, 20, data_opt=2)
    for index, payload in enumerate(voice(5, 10)):
        core.run_inline(
            core.handle_audio(
                AudioPacket("channel-agent", T0 + index * 20, payload, channel, channel_id="agent")
            )
        )
    transfer = ContactCenterEvent(T0 + 300, 21, "TRANSFER_COMPLETED", channel_id="agent")
    core.run_inline(core.handle_event(transfer))
    assert "channel-agent" in core.dormant
    core.run_inline(
        core.handle_event(Interrupted(T0 + 400, GapCause.MEDIA_INTERRUPTED, detail="drop"))
    )
    core.run_inline(
        core.handle_audio(AudioPacket("channel-agent", T0 + 5_000, voice(6, 1)[0], channel))
    )
    core.run_inline(core.finish(interrupted=False))
    absence = core.manifest.audio_entries("channel-agent")[1].absence
    assert absence is not None
    assert absence.cause == GapCause.MEDIA_INTERRUPTED.value


def test_the_core_never_opens_or_seals_a_file_itself() -> None:
    """Rotation and first packets return actions; the sink factory is only called by them."""
    clock = Clock()
    core, sinks = make_core(clock, segment_seconds=1)
    actions = []
    for index, payload in enumerate(voice(7, 120)):
        actions += core.handle_audio(AudioPacket("mixed", T0 + index * 20, payload, L16))
    assert sinks.sinks == []
    opens = [a for a in actions if isinstance(a, OpenSegment)]
    seals = [a for a in actions if isinstance(a, SealSegment)]
    assert len(opens) == 3
    assert len(seals) == 2
    # Every segment is opened before it is sealed, in the order returned.
    assert [a.sink.identity.segment_index for a in opens] == [0, 1, 2]
    for seal in seals:
        opened = next(a for a in opens if a.sink.identity.segment_index == seal.segment_index)
        assert actions.index(opened) < actions.index(seal)
    sealed = run_inline(actions)
    entries = [s.entry for s in sealed]
    assert isinstance(entries[0], SegmentManifestEntry)
    assert [e.segment_index for e in entries] == [0, 1]
    assert all(s.entry.sha256 == s.segment.sha256 for s in sealed)
    assert sinks.sinks[0].plaintext[HEADER_SIZE:] == b"".join(voice(7, 120)[:50])


def test_a_deferred_sink_keeps_bytes_in_memory_until_opened_then_writes_them_first() -> None:
    sinks = MemorySinkFactory()
    from recorder.sink import SegmentIdentity

    sink = DeferredSink(sinks, SegmentIdentity("rec", "mixed", 0, T0), 0)
    sink.write(b"abc")
    sink.checkpoint()  # nothing opened yet: nothing to make durable, nothing lost
    assert sink.buffered_bytes == 3
    assert sinks.sinks == []
    sink.open_now()
    sink.write(b"def")
    assert sink.buffered_bytes == 0
    assert sink.close(b"").plaintext_size == 6
    assert sinks.sinks[0].plaintext == b"abcdef"


def test_a_decoder_swap_mid_stream_flushes_the_old_decoder_into_the_timeline() -> None:
    """48 kHz L16 resampled to 16 kHz, then (after a reconnect) 16 kHz passthrough: the
    resampler's held tail is written before the new decoder's audio, and the new decoder's
    delay (none) places what follows: 2 s of packets make exactly 2 s of track, no gap."""
    from recorder.testing.audio_source import encode_speech

    clock = Clock()
    core, sinks = make_core(clock)
    before = encode_speech("a", AudioFormat(AudioCodec.L16, 48_000, 1, 20), seconds=1.0)
    after = encode_speech("a", AudioFormat(AudioCodec.L16, 16_000, 1, 20), seconds=1.0)
    for index, payload in enumerate(before.packets):
        core.run_inline(
            core.handle_audio(AudioPacket("mixed", T0 + index * 20, payload, before.format))
        )
    start = T0 + len(before.packets) * 20
    for index, payload in enumerate(after.packets):
        core.run_inline(
            core.handle_audio(AudioPacket("mixed", start + index * 20, payload, after.format))
        )
    core.run_inline(core.finish(interrupted=False))
    (entry,) = core.manifest.audio_entries("mixed")
    assert entry.gaps == ()
    # Without the flush the resampler's last 16 samples were lost (31,984).
    assert entry.end_sample - entry.start_sample == 32_000
    assert core.manifest.counters["mixed"]["duplicate_samples"] == 0
    body = audio_of(sinks, "mixed")[0]
    # The passthrough second is bit-exact and ends the track.
    assert body[-len(after.pcm) :] == b"".join(after.packets)


def test_a_retired_track_discards_its_pre_opened_spare_and_reuses_the_index() -> None:
    clock = Clock()
    core, sinks = make_core(clock, segment_seconds=1)
    speak(core, "user-eve", T0, voice(8, 40))  # 0.8 s: the spare is open from 0.5 s on
    assert [s.identity.segment_index for s in sinks.sinks] == [0, 1]
    actions = core.retire_silent(clock.ms)
    actions += core.retire_silent(clock.ms + 1_000)
    assert any(isinstance(a, DiscardSegment) for a in actions)
    core.run_inline(actions)
    assert [(s.identity.segment_index, s.sealed is not None) for s in sinks.sinks] == [(0, True)]
    speak(core, "user-eve", T0 + 10_000, voice(9, 5))
    core.run_inline(core.finish(interrupted=False))
    assert [e.segment_index for e in core.manifest.audio_entries("user-eve")] == [0, 1]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("speak"),
                st.integers(0, 3),
                st.integers(1, 12),
                st.integers(0, 3_000),
            ),
            st.tuples(st.just("wait"), st.integers(0, 3), st.integers(0, 4), st.integers(0, 3_000)),
            st.tuples(st.just("leave"), st.integers(0, 3), st.integers(0, 0), st.integers(0, 0)),
        ),
        max_size=25,
    )
)
def test_retirement_never_loses_or_repeats_a_sample_and_accounts_for_all_time(
    steps: list[tuple[str, int, int, int]],
) -> None:
    """Random speaking turns, silences, leaves and retirement checks: every sample a speaker
    sent is in their segments once, in order, on one clock; every stretch between two segments
    of a track is either nothing (a rotation) or an absence that covers it exactly."""
    clock = Clock()
    core, sinks = make_core(clock, segment_seconds=1)
    sent: dict[str, list[bytes]] = {}
    next_ms: dict[str, int] = {}
    first_ms: dict[str, int] = {}
    seed = 0
    for kind, who, count, pause_ms in steps:
        track = f"user-{who}"
        clock.ms += pause_ms
        if kind == "speak":
            start = max(next_ms.get(track, 0), clock.ms)
            seed += 1
            pcm = voice(seed, count)
            first_ms.setdefault(track, start)
            speak(core, track, start, pcm)
            sent.setdefault(track, []).extend(pcm)
            next_ms[track] = start + 20 * count
            clock.ms = max(clock.ms, next_ms[track])
        elif kind == "wait":
            for _ in range(count):
                core.run_inline(core.retire_silent(clock.ms))
                clock.ms += 500
        else:
            leave = ParticipantEvent(clock.ms, 4, "PARTICIPANT_LEAVE", (Participant(str(who)),))
            core.run_inline(core.handle_event(leave))
    core.run_inline(core.finish(interrupted=False))
    for track, pcm in sent.items():
        entries = sorted(core.manifest.audio_entries(track), key=lambda e: e.segment_index)
        assert [e.segment_index for e in entries] == list(range(len(entries)))
        heard = b""
        drift_ms = 0
        for entry in entries:
            # Same clock: sample s of the track is t0 + s / 16 ms, but for the placement the
            # timeline moved to follow the sender's jitter (each entry says how far; rounding
            # to a whole ms adds one). A reopen on the wrong clock is off by a packet or more.
            drift_ms += -(-abs(entry.drift_samples) // 16)
            assert abs(entry.start_ms - (first_ms[track] + entry.start_sample // 16)) <= (
                drift_ms + 1
            )
            body = next(
                s.plaintext[HEADER_SIZE:]
                for s in sinks.sinks
                if s.identity.track == track and s.identity.segment_index == entry.segment_index
            )
            assert len(body) == 2 * (entry.end_sample - entry.start_sample)
            cursor = 0
            for span in sorted(entry.spans, key=lambda s: s.segment_start_sample):
                # Gaps inside a segment are silence; everything else is what was sent.
                heard += body[2 * cursor : 2 * span.segment_start_sample]
                silence = body[2 * span.segment_start_sample : 2 * span.segment_end_sample]
                assert silence == bytes(len(silence))
                cursor = span.segment_end_sample
            heard += body[2 * cursor :]
        assert heard == b"".join(pcm), track
        for before, after in itertools.pairwise(entries):
            if after.absence is None:
                assert after.start_sample == before.end_sample
            else:
                assert after.absence.start_sample == before.end_sample
                assert after.absence.end_sample == after.start_sample
                assert after.absence.start_ms == before.end_ms
                assert after.absence.cause in {"no_speech", "participant_left"}


def test_late_packets_rename_the_gap_they_missed_on_a_reopened_track() -> None:
    """Late-packet relabelling speaks the timeline's positions; a reopened track's spans are on
    the track's axis, further on by the retirement's absence."""
    clock = Clock()
    core, _ = make_core(clock, gaps_in_records=False)
    speak(core, "user-ada", T0, voice(1, 5))
    clock.ms += 2_000
    core.run_inline(core.retire_silent(clock.ms))
    core.run_inline(core.retire_silent(clock.ms + 1_000))
    assert "user-ada" not in core.tracks
    back_ms = T0 + 600_000
    clock.ms = back_ms
    second = voice(2, 20)
    order = [index for index in range(20) if index != 8] + [8]
    for index in order:
        packet = AudioPacket("user-ada", back_ms + index * 20, second[index], L16, user_id="ada")
        core.run_inline(core.handle_audio(packet))
    core.run_inline(core.finish(interrupted=False))
    _, after = core.manifest.audio_entries("user-ada")
    start = (back_ms - T0) * 16
    assert after.start_sample == start
    assert [(g.cause, g.start_sample, g.end_sample) for g in after.gaps] == [
        (GapCause.LATE_PACKETS.value, start + 8 * 320, start + 9 * 320)
    ]


def test_a_recovery_that_names_the_true_cause_names_a_retired_tracks_absence() -> None:
    """A failover learnt only during the interruption: ``Recovered`` carries the true cause for
    its interruption id, and a track retired meanwhile says that cause too."""
    clock = Clock()
    core, _ = make_core(clock)
    channel = AudioFormat(AudioCodec.L16, 16_000, 1, 20, data_opt=2)
    for index, payload in enumerate(voice(5, 10)):
        core.run_inline(
            core.handle_audio(
                AudioPacket("channel-agent", T0 + index * 20, payload, channel, channel_id="agent")
            )
        )
    transfer = ContactCenterEvent(T0 + 300, 21, "TRANSFER_COMPLETED", channel_id="agent")
    core.run_inline(core.handle_event(transfer))
    down = Interrupted(T0 + 400, GapCause.SIGNALING_INTERRUPTED, interruption_id=7)
    core.run_inline(core.handle_event(down))
    back = Recovered(T0 + 4_000, T0 + 400, GapCause.FAILOVER, interruption_id=7)
    core.run_inline(core.handle_event(back))
    core.run_inline(
        core.handle_audio(AudioPacket("channel-agent", T0 + 5_000, voice(6, 1)[0], channel))
    )
    core.run_inline(core.finish(interrupted=False))
    absence = core.manifest.audio_entries("channel-agent")[1].absence
    assert absence is not None
    assert absence.cause == GapCause.FAILOVER.value
