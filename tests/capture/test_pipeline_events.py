"""run_capture fed directly with capture events (no sockets): real speech in every codec, faults,
modes, rotation, cancellation and a one-hour call with flat memory."""

from __future__ import annotations

import hashlib
import io
import itertools
import wave
from collections.abc import Iterable, Iterator

import av
import numpy as np
import pytest
import trio

from recorder.audio.decoder import KEEP_SOURCE, VOICE, OutputFormat
from recorder.audio.manifest import EngagementManifest, ManifestEntry, SegmentManifestEntry
from recorder.capture.checkpoints import open_checkpoint_coordinator
from recorder.capture.core import CaptureConfig
from recorder.capture.pipeline import run_capture
from recorder.rtms.events import (
    AudioCodec,
    AudioFormat,
    AudioPacket,
    CaptureEvent,
    GapCause,
    Interrupted,
    Paused,
    Recovered,
    Resumed,
    StreamEnded,
    TranscriptMessage,
)
from recorder.sink import SealedSegment, SegmentIdentity
from recorder.testing.audio_source import EncodedSpeech, encode_speech, source_pcm
from recorder.testing.memory_sink import MemorySink, MemorySinkFactory

T0 = 1_763_726_400_000
END = StreamEnded(T0 + 10**7, 1, "HOST_STOPPED", normal=True)


def packets(
    speech: EncodedSpeech,
    indexes: Iterable[int] | None = None,
    track: str = "mixed",
    t0: int = T0,
    **who: str,
) -> Iterator[AudioPacket]:
    for index in indexes if indexes is not None else range(len(speech.packets)):
        yield AudioPacket(
            track, t0 + index * speech.packet_ms, speech.packets[index], speech.format, **who
        )


async def capture(
    events: Iterable[CaptureEvent],
    config: CaptureConfig | None = None,
    sinks: MemorySinkFactory | None = None,
) -> tuple[EngagementManifest, MemorySinkFactory, list[tuple[SealedSegment, ManifestEntry]]]:
    sinks = sinks or MemorySinkFactory()
    sealed: list[tuple[SealedSegment, ManifestEntry]] = []

    async def on_sealed(segment: SealedSegment, entry: ManifestEntry) -> None:
        sealed.append((segment, entry))

    send, receive = trio.open_memory_channel[CaptureEvent](64)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def produce() -> None:
                async with send:
                    for event in events:
                        await send.send(event)

            nursery.start_soon(produce)
            manifest = await run_capture(
                receive, sinks, recording_id="rec-1", config=config, on_sealed=on_sealed
            )
    return manifest, sinks, sealed


def track_audio(sinks: MemorySinkFactory, track: str) -> np.ndarray:
    bodies = [s.plaintext for s in sinks.sinks if s.identity.track == track]
    channels = 1
    frames = []
    for body in bodies:
        with wave.open(io.BytesIO(body)) as wav:
            channels = wav.getnchannels()
            frames.append(wav.readframes(wav.getnframes()))
    return np.frombuffer(b"".join(frames), "<i2").reshape(-1, channels)


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    n = min(len(x), len(y))
    a, b = x[:n].astype(float), y[:n].astype(float)
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def reference_decode(codec: str, speech: EncodedSpeech) -> np.ndarray:
    context = av.CodecContext.create(codec, "r")
    context.sample_rate = speech.sample_rate
    context.layout = "mono"
    frames = [f for p in speech.packets for f in context.decode(av.Packet(p))]
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


L16 = [
    AudioFormat(AudioCodec.L16, rate, channels, packet_ms=packet_ms)
    for rate, channels, packet_ms in [
        (8_000, 1, 20),
        (16_000, 1, 20),
        (16_000, 2, 20),
        (32_000, 1, 40),
        (48_000, 2, 20),
        (16_000, 1, 100),
    ]
]


@pytest.mark.parametrize("fmt", L16, ids=lambda f: f"{f.sample_rate}-{f.channels}-{f.packet_ms}")
async def test_l16_is_recorded_bit_exact_in_its_own_format(fmt: AudioFormat) -> None:
    speech = encode_speech("a", fmt)
    manifest, sinks, sealed = await capture(
        [*packets(speech), END], CaptureConfig(output=KEEP_SOURCE)
    )
    recorded = track_audio(sinks, "mixed")
    assert recorded.tobytes() == speech.pcm
    assert manifest.outcome == "ended"
    assert [entry.track for _, entry in sealed] == ["mixed", "records"]
    audio = manifest.audio_entries("mixed")[0]
    assert audio.gaps == ()
    assert audio.source == f"L16 {fmt.sample_rate} {'mono' if fmt.channels == 1 else 'stereo'}"
    assert audio.start_ms == T0


async def test_g711_is_exactly_the_reference_decode() -> None:
    speech = encode_speech("b", AudioFormat(AudioCodec.G711, 8_000, 1))
    manifest, sinks, _ = await capture([*packets(speech), END], CaptureConfig(output=KEEP_SOURCE))
    recorded = track_audio(sinks, "mixed")[:, 0]
    assert np.array_equal(recorded, reference_decode("pcm_alaw", speech))
    assert manifest.audio_entries()[0].source == "G711-ALAW 8000 mono"


async def test_g722_is_the_reference_decode_moved_by_its_delay() -> None:
    speech = encode_speech("c", AudioFormat(AudioCodec.G722, 16_000, 1))
    _, sinks, _ = await capture([*packets(speech), END])
    recorded = track_audio(sinks, "mixed")[:, 0]
    reference = reference_decode("g722", speech)
    assert np.array_equal(recorded, reference[22:])


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("output", [VOICE, KEEP_SOURCE], ids=["voice", "keep"])
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "threaded"])
async def test_opus_correlates_with_the_source_at_its_place(
    channels: int, output: OutputFormat, inline: bool
) -> None:
    speech = encode_speech("a", AudioFormat(AudioCodec.OPUS, 48_000, channels))
    config = CaptureConfig(output=output, decode_inline=inline, decode_batch=7)
    manifest, sinks, _ = await capture([*packets(speech), END], config)
    entry = manifest.audio_entries()[0]
    recorded = track_audio(sinks, "mixed")[:, 0]
    source = np.frombuffer(source_pcm("a", entry.sample_rate, 1), "<i2")
    assert correlation(source, recorded) >= 0.9  # aligned without searching for a lag
    assert (
        abs(len(recorded) - len(speech.pcm) // (2 * channels) * entry.sample_rate // 48_000) < 400
    )


async def test_a_two_second_media_drop_is_two_seconds_of_named_silence() -> None:
    speech = encode_speech("a", AudioFormat(AudioCodec.L16, 16_000, 1), seconds=8)
    events: list[CaptureEvent] = [*packets(speech, range(100))]
    events.append(Interrupted(T0 + 2_100, GapCause.MEDIA_INTERRUPTED, ("audio",), "closed"))
    events.append(Recovered(T0 + 4_100, T0 + 2_100, GapCause.MEDIA_INTERRUPTED))
    events += [*packets(speech, range(200, 400)), END]
    manifest, sinks, _ = await capture(events)
    entry = manifest.audio_entries()[0]
    assert len(entry.gaps) == 1
    gap = entry.gaps[0]
    assert gap.cause == "media_interrupted"
    assert abs(gap.start_sample - 100 * 320) <= 320
    assert abs((gap.end_sample - gap.start_sample) - 2 * 16_000) <= 320  # 2 s +- 20 ms
    assert gap.start_ms == T0 + 2_000
    recorded = track_audio(sinks, "mixed")[:, 0]
    source = speech.pcm_array()[:, 0]
    assert np.array_equal(recorded[: gap.start_sample], source[: gap.start_sample])
    assert not recorded[gap.start_sample : gap.end_sample].any()
    assert np.array_equal(recorded[gap.end_sample :], source[gap.end_sample :])
    records = [
        line
        for s in sinks.sinks
        if s.identity.track == "records"
        for line in s.plaintext.decode().splitlines()
    ]
    assert any('"type":"gap"' in line and "media_interrupted" in line for line in records)


async def test_a_pause_is_recorded_as_a_pause_with_its_actor() -> None:
    speech = encode_speech("b", AudioFormat(AudioCodec.G711, 8_000, 1), seconds=6)
    events: list[CaptureEvent] = [*packets(speech, range(50))]
    events += [Paused(T0 + 1_000, T0 + 1_000, actor="agent"), Resumed(T0 + 3_000, T0 + 3_000)]
    events += [*packets(speech, range(150, 300)), END]
    manifest, _, _ = await capture(events)
    entry = manifest.audio_entries()[0]
    assert entry.gaps == ()
    assert len(entry.pauses) == 1
    pause = entry.pauses[0]
    assert pause.actor == "agent"
    assert abs(pause.end_sample - pause.start_sample - 2 * 16_000) <= 320


async def test_audio_replayed_after_reconnect_lands_in_place_once() -> None:
    speech = encode_speech("c", AudioFormat(AudioCodec.L16, 16_000, 1), seconds=8)
    events: list[CaptureEvent] = [*packets(speech, range(150))]
    events.append(Interrupted(T0 + 3_000, GapCause.SIGNALING_INTERRUPTED))
    events.append(Recovered(T0 + 6_000, T0 + 3_000, GapCause.SIGNALING_INTERRUPTED))
    # Zoom replays its buffer from before the drop (overlapping 20 packets we have) to now.
    events += [*packets(speech, range(130, 400)), END]
    manifest, sinks, _ = await capture(events)
    entry = manifest.audio_entries()[0]
    assert entry.gaps == ()
    assert manifest.counters["mixed"]["duplicate_samples"] == 20 * 320
    assert track_audio(sinks, "mixed").tobytes() == speech.pcm


async def test_per_speaker_mode_gives_one_track_per_speaker_with_their_speech() -> None:
    fmt = AudioFormat(AudioCodec.OPUS, 48_000, 1, data_opt=2)
    a, b = encode_speech("a", fmt), encode_speech("b", fmt)
    events: list[CaptureEvent] = []
    for index in range(max(len(a.packets), len(b.packets))):
        if index < len(a.packets):
            events += packets(a, [index], "user-1", user_id="1", user_name="Ada")
        if index < len(b.packets):
            events += packets(b, [index], "user-2", T0 + 1_000, user_id="2", user_name="Bob")
    manifest, sinks, _ = await capture([*events, END])
    assert {e.track for e in manifest.audio_entries()} == {"user-1", "user-2"}
    ada = manifest.audio_entries("user-1")[0]
    bob = manifest.audio_entries("user-2")[0]
    assert (ada.participant.user_name, bob.participant.user_name) == ("Ada", "Bob")
    assert abs(bob.start_ms - (T0 + 1_000)) <= 2
    for track, name, other in [("user-1", "a", "b"), ("user-2", "b", "a")]:
        recorded = track_audio(sinks, track)[:, 0]
        mine = np.frombuffer(source_pcm(name, 16_000, 1), "<i2")
        theirs = np.frombuffer(source_pcm(other, 16_000, 1), "<i2")
        assert correlation(mine, recorded) >= 0.9
        assert abs(correlation(theirs, recorded)) < 0.3


async def test_contact_center_channels_give_one_track_per_channel() -> None:
    fmt = AudioFormat(AudioCodec.G711, 8_000, 1)
    agent, caller = encode_speech("a", fmt), encode_speech("b", fmt)
    events = [
        *packets(agent, track="channel-agent", channel_id="agent"),
        *packets(caller, track="channel-caller", channel_id="caller"),
        END,
    ]
    manifest, sinks, _ = await capture(events, CaptureConfig(output=KEEP_SOURCE))
    assert {e.track for e in manifest.audio_entries()} == {"channel-agent", "channel-caller"}
    assert manifest.audio_entries("channel-caller")[0].participant.channel_id == "caller"
    for track, speech in [("channel-agent", agent), ("channel-caller", caller)]:
        assert correlation(speech.pcm_array()[:, 0], track_audio(sinks, track)[:, 0]) > 0.99


async def test_segments_rotate_and_every_hash_matches_its_plaintext() -> None:
    speech = encode_speech("a", AudioFormat(AudioCodec.L16, 16_000, 1), seconds=10)
    words = [TranscriptMessage(T0 + i * 1_000, f"word {i}", user_id="1") for i in range(10)]
    manifest, sinks, sealed = await capture(
        [*packets(speech), *words, END], CaptureConfig(segment_seconds=3)
    )
    audio = manifest.audio_entries("mixed")
    assert [(e.start_sample, e.end_sample) for e in audio] == [
        (0, 48_000),
        (48_000, 96_000),
        (96_000, 144_000),
        (144_000, 160_000),
    ]
    assert [e.start_ms for e in audio] == [T0, T0 + 3_000, T0 + 6_000, T0 + 9_000]
    plaintexts = {(s.identity.track, s.identity.segment_index): s.plaintext for s in sinks.sinks}
    for segment, entry in sealed:
        assert entry.sha256 == segment.sha256
        plaintext = plaintexts[(segment.identity.track, segment.identity.segment_index)]
        assert hashlib.sha256(plaintext).hexdigest() == entry.sha256
        if isinstance(entry, SegmentManifestEntry):
            with wave.open(io.BytesIO(plaintext)) as wav:
                assert wav.getnframes() == entry.end_sample - entry.start_sample
            with av.open(io.BytesIO(plaintext), format="wav") as container:
                assert container.streams.audio[0].sample_rate == 16_000
    assert track_audio(sinks, "mixed").tobytes() == speech.pcm
    assert len(manifest.records_entries()) >= 3


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "threaded"])
async def test_undecodable_packets_become_decode_error_gaps(inline: bool) -> None:
    speech = encode_speech("a", AudioFormat(AudioCodec.OPUS, 48_000, 1), seconds=3)
    events = list(packets(speech))
    broken = events[40]
    events[40] = AudioPacket(broken.track, broken.timestamp_ms, b"\xff\xff", broken.format)
    manifest, _, _ = await capture([*events, END], CaptureConfig(decode_inline=inline))
    entry = manifest.audio_entries()[0]
    assert [g.cause for g in entry.gaps] == ["decode_error"]
    assert manifest.counters["mixed"]["decode_errors"] == 1


async def test_a_channel_closed_without_stream_end_seals_segments_as_interrupted() -> None:
    speech = encode_speech("a", AudioFormat(AudioCodec.L16, 16_000, 1), seconds=2)
    manifest, _, sealed = await capture(list(packets(speech)))
    assert manifest.outcome == "channel_closed"
    assert sealed
    assert all(entry.interrupted for _, entry in sealed)


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "threaded"])
async def test_cancellation_seals_every_open_segment_as_interrupted(inline: bool) -> None:
    speech = encode_speech("a", AudioFormat(AudioCodec.OPUS, 48_000, 2), seconds=4)
    config = CaptureConfig(decode_inline=inline)
    sinks = MemorySinkFactory()
    sealed: list[ManifestEntry] = []

    async def on_sealed(segment: SealedSegment, entry: ManifestEntry) -> None:
        sealed.append(entry)

    # Unbuffered: once the second transcript is taken, everything before it was handled.
    send, receive = trio.open_memory_channel[CaptureEvent](0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def capture_task() -> None:
                await run_capture(
                    receive, sinks, recording_id="rec-c", config=config, on_sealed=on_sealed
                )

            nursery.start_soon(capture_task)
            for packet in packets(speech):
                await send.send(packet)
            await send.send(TranscriptMessage(T0, "hello"))
            await send.send(TranscriptMessage(T0 + 1, "still here"))
            nursery.cancel_scope.cancel()
    assert {entry.track for entry in sealed} == {"mixed", "records"}
    assert all(entry.interrupted for entry in sealed)
    assert all(sink.sealed is not None for sink in sinks.sinks)


class CheckpointSignallingSinks(MemorySinkFactory):
    """Memory sinks that tell the test (on the trio thread) when a checkpoint happened."""

    def __init__(self, checkpointed: trio.Event) -> None:
        super().__init__()
        self._checkpointed = checkpointed
        self._token = trio.lowlevel.current_trio_token()

    def open(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> MemorySink:
        sink = super().open(identity, prologue_size=prologue_size)
        plain_checkpoint = sink.checkpoint

        def checkpoint() -> None:
            plain_checkpoint()
            self._token.run_sync_soon(self._checkpointed.set)

        sink.checkpoint = checkpoint  # type: ignore[method-assign]
        return sink


async def test_sinks_are_checkpointed_while_the_call_is_live() -> None:
    speech = encode_speech("a", AudioFormat(AudioCodec.L16, 16_000, 1), seconds=1)
    checkpointed = trio.Event()
    sinks = CheckpointSignallingSinks(checkpointed)
    send, receive = trio.open_memory_channel[CaptureEvent](8)
    config = CaptureConfig(checkpoint_interval_s=0.05)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: run_capture(receive, sinks, recording_id="rec-k", config=config)
            )
            async with send:
                for packet in packets(speech):
                    await send.send(packet)
                # The stream stays open and idle: the periodic checkpoint must still come.
                await checkpointed.wait()
                assert sinks.sinks[0].sealed is None
    assert sinks.sinks[0].checkpoints >= 1


async def test_per_speaker_mixdown_sums_the_speakers_on_one_clock() -> None:
    fmt = AudioFormat(AudioCodec.L16, 16_000, 1, data_opt=2)
    a, b = encode_speech("a", fmt, seconds=3), encode_speech("b", fmt, seconds=3)
    events: list[CaptureEvent] = []
    # Ada speaks 0-3 s, Bob 2-5 s: one second of overlap, then Bob alone.
    for index in range(250):
        if index < 150:
            events += packets(a, [index], "user-1", user_id="1", user_name="Ada")
        if index >= 100:
            events += packets(b, [index - 100], "user-2", T0 + 2_000, user_id="2")
    manifest, sinks, _ = await capture([*events, END], CaptureConfig(mixdown=True))
    assert {e.track for e in manifest.audio_entries()} == {"user-1", "user-2", "mixdown"}
    mixed = track_audio(sinks, "mixdown")[:, 0].astype(np.int32)
    expected = np.zeros(5 * 16_000, np.int32)
    expected[: 3 * 16_000] += a.pcm_array()[:, 0]
    expected[2 * 16_000 :] += b.pcm_array()[:, 0]
    assert np.array_equal(mixed, np.clip(expected, -32768, 32767))
    assert manifest.counters["mixdown"]["late_samples"] == 0
    entry = manifest.audio_entries("mixdown")[0]
    assert entry.start_ms == T0
    assert entry.source.startswith("MIXDOWN")


async def test_a_new_output_format_mid_stream_seals_and_starts_a_new_segment() -> None:
    narrow = encode_speech("a", AudioFormat(AudioCodec.L16, 16_000, 1), seconds=1)
    wide = encode_speech("a", AudioFormat(AudioCodec.L16, 48_000, 2), seconds=1)
    events = [*packets(narrow), *packets(wide, t0=T0 + 1_000), END]
    manifest, sinks, _ = await capture(events, CaptureConfig(output=KEEP_SOURCE))
    entries = manifest.audio_entries("mixed")
    assert [(e.segment_index, e.sample_rate, e.channels) for e in entries] == [
        (0, 16_000, 1),
        (1, 48_000, 2),
    ]
    assert entries[1].start_ms == T0 + 1_000
    assert sinks.sinks[1].plaintext[-len(wide.pcm) :] == wide.pcm


async def test_audio_in_a_format_nobody_can_decode_is_counted_not_fatal() -> None:
    good = encode_speech("b", AudioFormat(AudioCodec.L16, 16_000, 1), seconds=1)
    odd = AudioFormat(AudioCodec.OPUS, 16_000, 1)  # RTMS only sends Opus at 48 kHz
    strange = [AudioPacket("user-9", T0 + i * 20, b"\x00" * 40, odd) for i in range(5)]
    manifest, sinks, _ = await capture([*strange, *packets(good), END])
    assert manifest.outcome == "ended"
    assert manifest.counters["user-9"]["unsupported_packets"] == 5
    assert track_audio(sinks, "mixed").tobytes() == good.pcm
    records = b"".join(s.plaintext for s in sinks.sinks if s.identity.track == "records")
    assert records.count(b'"type":"unsupported_audio"') == 1


async def test_a_segment_whose_hand_off_was_cancelled_is_handed_on_by_the_finaliser() -> None:
    speech = encode_speech("a", AudioFormat(AudioCodec.L16, 16_000, 1), seconds=4)
    sinks = MemorySinkFactory()
    delivered: list[tuple[str, int]] = []
    attempts: list[tuple[str, int]] = []
    stuck = trio.Event()

    async def on_sealed(segment: SealedSegment, entry: ManifestEntry) -> None:
        key = (segment.identity.track, segment.identity.segment_index)
        attempts.append(key)
        if len(attempts) == 1:
            stuck.set()
            await trio.sleep_forever()  # the spool hangs; the engagement gets cancelled
        delivered.append(key)

    send, receive = trio.open_memory_channel[CaptureEvent](0)
    config = CaptureConfig(segment_seconds=1)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def capture_task() -> None:
                await run_capture(
                    receive, sinks, recording_id="rec-h", config=config, on_sealed=on_sealed
                )

            async def send_all() -> None:
                for packet in packets(speech):
                    await send.send(packet)

            nursery.start_soon(capture_task)
            nursery.start_soon(send_all)
            await stuck.wait()
            nursery.cancel_scope.cancel()
    # At least once: the interrupted hand-off is retried, then everything else follows.
    assert attempts[0] == ("mixed", 0)
    assert delivered[0] == ("mixed", 0)
    assert sorted(delivered) == sorted(
        {(s.identity.track, s.identity.segment_index) for s in sinks.sinks}
    )


async def test_on_event_sees_every_non_audio_event_and_each_tracks_first_packet() -> None:
    speech = encode_speech("a", AudioFormat(AudioCodec.L16, 16_000, 1), seconds=1.0)
    transcript = TranscriptMessage(T0 + 500, "hello", user_id="1", user_name="Ann")
    interrupted = Interrupted(T0 + 600, GapCause.MEDIA_INTERRUPTED)
    events: list[CaptureEvent] = [
        *packets(speech, track="user-1", user_id="1", user_name="Ann"),
        transcript,
        interrupted,
        *packets(speech, track="user-2", t0=T0 + 2_000, user_id="2", user_name="Bo"),
        END,
    ]
    seen: list[CaptureEvent] = []

    async def on_event(event: CaptureEvent) -> None:
        seen.append(event)

    send, receive = trio.open_memory_channel[CaptureEvent](len(events))
    for event in events:
        send.send_nowait(event)
    send.close()
    with trio.fail_after(30):
        await run_capture(receive, MemorySinkFactory(), recording_id="rec-1", on_event=on_event)
    audio_seen = [e for e in seen if isinstance(e, AudioPacket)]
    assert [(p.track, p.timestamp_ms) for p in audio_seen] == [
        ("user-1", T0),
        ("user-2", T0 + 2_000),
    ]
    assert [e for e in seen if not isinstance(e, AudioPacket)] == [transcript, interrupted, END]


async def test_a_paced_stream_is_checkpointed_every_interval() -> None:
    """One packet per wakeup, as live streams bring them: the wait itself must not let the
    checkpoint deadline slip (the consumer keeps one wait scope across many packets)."""
    speech = encode_speech("a", AudioFormat(AudioCodec.L16, 16_000, 1), seconds=1)
    sinks = MemorySinkFactory()
    send, receive = trio.open_memory_channel[CaptureEvent](8)
    config = CaptureConfig(checkpoint_interval_s=0.05)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: run_capture(receive, sinks, recording_id="rec-p", config=config)
            )
            async with send:
                start = trio.current_time()
                for index, packet in enumerate(packets(speech, range(30))):
                    await trio.sleep_until(start + index * 0.01)
                    await send.send(packet)
                await send.send(END)
    # 0.3 s at one checkpoint per 0.05 s; generous for a loaded machine.
    assert sinks.sinks[0].checkpoints >= 3


#: Checkpoints of the audio sink a busy consumer must see (the first may find no sink yet: the
#: segment opens in a worker thread).
BUSY_CHECKPOINTS = 5


async def checkpointed_while_never_dry(
    events: Iterable[CaptureEvent],
) -> tuple[EngagementManifest, MemorySinkFactory, list[CaptureEvent]]:
    """Feeds ``events`` so the channel never runs dry (refilled, without a schedule point, each
    time the consumer yields) until the audio sink saw ``BUSY_CHECKPOINTS`` checkpoints, then
    ends the stream: the consumer is never idle, so only its own snapshots can checkpoint. An
    offline replay (no clock bound), so an endless stream of events can be fed."""
    sinks = MemorySinkFactory()
    send, receive = trio.open_memory_channel[CaptureEvent](256)
    config = CaptureConfig(checkpoint_interval_s=0.0)
    manifests: list[EngagementManifest] = []
    sent: list[CaptureEvent] = []

    def audio_checkpoints() -> int:
        return sum(s.checkpoints for s in sinks.sinks if s.identity.track == "mixed")

    with trio.fail_after(60):
        async with open_checkpoint_coordinator(0.0) as ticker, trio.open_nursery() as nursery:

            async def capture_task() -> None:
                manifests.append(
                    await run_capture(
                        receive,
                        sinks,
                        recording_id="rec-f",
                        config=config,
                        checkpoints=ticker,
                        clock_ms=None,
                    )
                )

            nursery.start_soon(capture_task)
            async with send:
                for event in events:
                    if audio_checkpoints() >= BUSY_CHECKPOINTS:
                        break
                    try:
                        send.send_nowait(event)
                    except trio.WouldBlock:
                        await send.send(event)
                    sent.append(event)
                await send.send(END)
    assert audio_checkpoints() >= BUSY_CHECKPOINTS
    return manifests[0], sinks, sent


async def test_a_channel_that_never_runs_dry_is_still_checkpointed() -> None:
    speech = encode_speech("a", AudioFormat(AudioCodec.L16, 16_000, 1), seconds=10)
    endless = (
        AudioPacket(
            "mixed",
            T0 + index * speech.packet_ms,
            speech.packets[index % len(speech.packets)],
            speech.format,
        )
        for index in itertools.count()
    )
    manifest, sinks, sent = await checkpointed_while_never_dry(endless)
    assert manifest.outcome == "ended"
    fed = b"".join(event.payload for event in sent if isinstance(event, AudioPacket))
    assert track_audio(sinks, "mixed").tobytes() == fed


async def test_a_channel_of_non_audio_events_that_never_runs_dry_is_still_checkpointed() -> None:
    speech = encode_speech("a", AudioFormat(AudioCodec.L16, 16_000, 1), seconds=1)
    words = (TranscriptMessage(T0 + i, f"word {i}", user_id="1") for i in itertools.count())
    manifest, _, _ = await checkpointed_while_never_dry(
        itertools.chain(packets(speech, range(30)), words)
    )
    assert manifest.outcome == "ended"
