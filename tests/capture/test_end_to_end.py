"""Real speech through real sockets: the project's RTMS simulator, the RTMS client and the capture
pipeline, for every codec and layout the simulator produces, plus faults the simulator injects."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import av
import numpy as np
import pytest
import trio

from recorder.audio.decoder import KEEP_SOURCE, VOICE, OutputFormat
from recorder.audio.manifest import EngagementManifest, ManifestEntry
from recorder.capture.core import CaptureConfig
from recorder.capture.pipeline import run_capture
from recorder.rtms.client import ClientConfig, StreamTarget, audio_params, open_rtms_stream
from recorder.rtms.events import AudioCodec
from recorder.rtms.urls import split_server_urls
from recorder.rtms.webhook import Product as RtmsProduct
from recorder.simulator import (
    Action,
    AudioLayout,
    Engagement,
    Product,
    Scenario,
    SimulatorConfig,
    Step,
    open_simulator,
)
from recorder.simulator._codecs import encode_track
from recorder.sink import SealedSegment
from recorder.testing.memory_sink import MemorySinkFactory

T0 = 1_795_276_197_000
#: Scenario seconds per real second: a 3 s call takes under a second of wall time.
SPEED = 4.0

CLIENT = dict(
    allow_insecure_loopback=True,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    connect_timeout_s=5.0,
    handshake_timeout_s=5.0,
    close_timeout_s=1.0,
    media_trigger_guard_s=0.0,
)


@dataclass
class Recording:
    manifest: EngagementManifest
    sinks: MemorySinkFactory
    sealed: list[tuple[SealedSegment, ManifestEntry]]
    engagement: Engagement

    def audio(self, track: str) -> np.ndarray:
        frames, channels = [], 1
        for sink in self.sinks.sinks:
            if sink.identity.track == track:
                with wave.open(io.BytesIO(sink.plaintext)) as wav:
                    channels = wav.getnchannels()
                    frames.append(wav.readframes(wav.getnframes()))
        return np.frombuffer(b"".join(frames), "<i2").reshape(-1, channels)

    def source(self, track: str, seconds: float) -> np.ndarray:
        """The 16 kHz mono speech the simulator played on ``track``, looped to ``seconds``."""
        cycle = self.engagement.program.track(track).pcm
        samples = round(seconds * 16_000)
        return np.tile(cycle, -(-samples // len(cycle)))[:samples]


async def record(
    scenario: Scenario,
    codec: AudioCodec,
    rate: int,
    channels: int = 1,
    *,
    output: OutputFormat = VOICE,
    per_speaker: bool = False,
    mixdown: bool = False,
) -> Recording:
    sinks = MemorySinkFactory()
    sealed: list[tuple[SealedSegment, ManifestEntry]] = []

    async def on_sealed(segment: SealedSegment, entry: ManifestEntry) -> None:
        sealed.append((segment, entry))

    params = audio_params(codec, rate, channels, per_speaker=per_speaker)
    client_config = ClientConfig(audio_params=params, transcript=True, **CLIENT)  # type: ignore[arg-type]
    with trio.fail_after(30):
        async with open_simulator(SimulatorConfig(speed=SPEED)) as sim:
            # Encoding on demand can outlast a short accelerated call on a busy machine.
            await sim.warm_audio(scenario, [params])
            engagement = await sim.start(scenario)
            sim_target = engagement.target
            target = StreamTarget(
                product=RtmsProduct(sim_target.product.value),
                instance_id=sim_target.instance_id,
                rtms_stream_id=sim_target.rtms_stream_id,
                server_urls=split_server_urls(sim_target.server_urls),
                client_id=sim_target.client_id,
                client_secret=sim_target.client_secret,
            )
            async with open_rtms_stream(target, client_config) as stream:
                manifest = await run_capture(
                    stream.events,
                    sinks,
                    recording_id=sim_target.rtms_stream_id,
                    originator_reference=sim_target.instance_id,
                    config=CaptureConfig(output=output, mixdown=mixdown),
                    on_sealed=on_sealed,
                )
    return Recording(manifest, sinks, sealed, engagement)


def meeting(seconds: float = 3.0, **kwargs: object) -> Scenario:
    return Scenario(product=Product.MEETING, duration_s=seconds, t0_ms=T0, **kwargs)  # type: ignore[arg-type]


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    n = min(len(x), len(y))
    a, b = x[:n].astype(float), y[:n].astype(float)
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def aligned_correlation(source: np.ndarray, recorded: np.ndarray) -> tuple[int, float]:
    """Best normalized cross-correlation within +-2 ms (32 samples at 16 kHz), and its lag."""
    margin = 32
    n = min(len(source), len(recorded)) - 2 * margin
    x = source[margin : margin + n].astype(float)
    scores = {}
    for lag in range(-margin, margin + 1):
        y = recorded[margin + lag : margin + lag + n].astype(float)
        scores[lag] = float(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))
    lag = max(scores, key=lambda key: scores[key])
    return lag, scores[lag]


def sent_payloads(rec: Recording, track: str, codec: AudioCodec, rate: int, channels: int):
    params = audio_params(codec, rate, channels)
    return encode_track(rec.engagement.program.track(track).pcm, params)


def reference_decode(codec_name: str, payloads, count: int) -> np.ndarray:
    context = av.CodecContext.create(codec_name, "r")
    context.sample_rate = 8_000 if codec_name == "pcm_alaw" else 16_000
    context.layout = "mono"
    frames = [f for p in list(payloads)[:count] for f in context.decode(av.Packet(p))]
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


async def test_l16_16k_mono_is_bit_exact_end_to_end() -> None:
    rec = await record(meeting(), AudioCodec.L16, 16_000)
    recorded = rec.audio("mixed")[:, 0]
    assert len(recorded) == 3 * 16_000
    assert np.array_equal(recorded, rec.source("mixed", 3.0))
    assert rec.manifest.outcome == "ended"
    entry = rec.manifest.audio_entries("mixed")[0]
    assert entry.start_ms == T0
    assert entry.gaps == ()
    assert entry.originator_reference == rec.engagement.target.instance_id


@pytest.mark.parametrize(("rate", "channels"), [(8_000, 1), (16_000, 2), (32_000, 1), (48_000, 2)])
async def test_l16_in_its_own_format_is_bit_exact_end_to_end(rate: int, channels: int) -> None:
    rec = await record(meeting(2.0), AudioCodec.L16, rate, channels, output=KEEP_SOURCE)
    recorded = rec.audio("mixed")
    packets = len(recorded) // (rate // 50)
    assert packets == 100
    payloads = sent_payloads(rec, "mixed", AudioCodec.L16, rate, channels)
    assert recorded.tobytes() == b"".join(list(payloads)[:packets])


async def test_g711_is_exactly_the_reference_decode_end_to_end() -> None:
    rec = await record(meeting(2.0), AudioCodec.G711, 8_000, output=KEEP_SOURCE)
    recorded = rec.audio("mixed")[:, 0]
    payloads = sent_payloads(rec, "mixed", AudioCodec.G711, 8_000, 1)
    assert np.array_equal(recorded, reference_decode("pcm_alaw", payloads, 100))
    assert correlation(rec.source("mixed", 2.0)[::2], recorded) > 0.9


async def test_g722_is_exactly_the_reference_decode_end_to_end() -> None:
    rec = await record(meeting(2.0), AudioCodec.G722, 16_000)
    recorded = rec.audio("mixed")[:, 0]
    payloads = sent_payloads(rec, "mixed", AudioCodec.G722, 16_000, 1)
    reference = reference_decode("g722", payloads, 100)
    assert np.array_equal(recorded, reference[22:])
    assert correlation(rec.source("mixed", 2.0), recorded) > 0.95


@pytest.mark.parametrize("channels", [1, 2])
async def test_opus_correlates_with_the_source_end_to_end(channels: int) -> None:
    rec = await record(meeting(), AudioCodec.OPUS, 48_000, channels)
    recorded = rec.audio("mixed")[:, 0]
    records = b"".join(s.plaintext for s in rec.sinks.sinks if s.identity.track == "records")
    assert rec.manifest.audio_entries("mixed"), (rec.manifest.outcome, records)
    entry = rec.manifest.audio_entries("mixed")[0]
    diagnostics = (len(recorded), entry.start_ms - T0, entry.gaps, rec.manifest.counters)
    assert entry.gaps == (), diagnostics
    assert entry.start_ms == T0, diagnostics
    lag, best = aligned_correlation(rec.source("mixed", 3.0), recorded)
    # The decoder delay is compensated already: the best alignment is where the audio sits.
    assert abs(lag) <= 2
    assert best >= 0.9
    assert correlation(rec.source("mixed", 3.0), recorded) >= 0.9
    assert entry.source == f"OPUS 48000 {'mono' if channels == 1 else 'stereo'}"
    assert "opus=ffmpeg-native" in entry.decoder_version


async def test_per_speaker_mode_yields_one_track_per_speaker() -> None:
    scenario = meeting(8.0, layout=AudioLayout.PER_SPEAKER)
    rec = await record(scenario, AudioCodec.L16, 16_000, per_speaker=True, mixdown=True)
    tracks = {entry.track for entry in rec.manifest.audio_entries()} - {"mixdown"}
    # Speakers whose turn starts within the call (RTMS sends nothing for the others).
    frames = int(8.0 * 50)
    speakers = [
        t.name
        for t in rec.engagement.program.tracks
        if t.windows is not None and any(start < frames for start, _ in t.windows)
    ]
    assert tracks == set(speakers)
    assert len(speakers) >= 2
    for track in speakers:
        recorded = rec.audio(track)[:, 0]
        entry = rec.manifest.audio_entries(track)[0]
        # The track starts at the speaker's first packet; compare from there.
        offset = (entry.start_ms - T0) * 16
        source = rec.source(track, 8.0)[offset:]
        assert np.array_equal(recorded, source[: len(recorded)])
        assert entry.participant.user_name
        assert {g.cause for g in entry.gaps} <= {"no_speech"}
    # The mixdown is every speaker on one clock (here they take turns, so a plain sum).
    mixdown = rec.audio("mixdown")[:, 0]
    start = (rec.manifest.audio_entries("mixdown")[0].start_ms - T0) * 16
    total = sum(rec.source(track, 8.0).astype(np.int32) for track in speakers)
    assert np.array_equal(mixdown, total[start : start + len(mixdown)])
    assert len(mixdown) >= 8 * 16_000 - start - 320
    transcripts = [
        line
        for sink in rec.sinks.sinks
        if sink.identity.track == "records"
        for line in sink.plaintext.decode().splitlines()
        if '"type":"transcript"' in line
    ]
    assert transcripts  # the words travel with the audio, with the speaker's name
    first_speaker = rec.engagement.program.tracks[0].user_name
    assert first_speaker is not None
    assert first_speaker in transcripts[0]


async def test_contact_center_channels_yield_one_track_per_channel() -> None:
    scenario = Scenario(
        product=Product.CONTACT_CENTER, duration_s=10.0, t0_ms=T0, layout=AudioLayout.CHANNELS
    )
    rec = await record(scenario, AudioCodec.G711, 8_000, output=KEEP_SOURCE)
    channels = [t.name for t in rec.engagement.program.tracks]
    assert len(channels) == 2
    assert {e.track for e in rec.manifest.audio_entries()} == set(channels)
    for track in channels:
        recorded = rec.audio(track)[:, 0]
        source = rec.source(track, 10.0)[::2]
        assert len(recorded) == 10 * 8_000
        assert correlation(source, recorded) > 0.9
        assert rec.manifest.audio_entries(track)[0].participant.channel_id


@pytest.mark.parametrize("fault", [Action.DROP_MEDIA, Action.DROP_SIGNALING])
async def test_a_dropped_connection_replays_in_place_without_duplicates(fault: Action) -> None:
    scenario = meeting(4.0, steps=(Step(1.5, fault),))
    rec = await record(scenario, AudioCodec.L16, 16_000)
    recorded = rec.audio("mixed")[:, 0]
    assert np.array_equal(recorded, rec.source("mixed", 4.0))
    assert rec.manifest.audio_entries("mixed")[0].gaps == ()
    assert rec.manifest.counters["mixed"]["duplicate_samples"] == 0
    assert rec.engagement.stats.interruptions == 1
    records = b"".join(s.plaintext for s in rec.sinks.sinks if s.identity.track == "records")
    assert b'"type":"interrupted"' in records
    assert b'"type":"recovered"' in records


async def test_pause_is_recorded_as_a_pause_end_to_end() -> None:
    steps = (Step(1.0, Action.PAUSE, {"actor": "agent"}), Step(2.0, Action.RESUME))
    rec = await record(meeting(4.0, steps=steps), AudioCodec.L16, 16_000)
    entry = rec.manifest.audio_entries("mixed")[0]
    assert entry.gaps == ()
    assert len(entry.pauses) == 1
    pause = entry.pauses[0]
    assert abs((pause.end_sample - pause.start_sample) - 16_000) <= 320
    assert abs(pause.start_sample - 16_000) <= 320
