"""Every codec and layout over real sockets: payloads decode (PyAV) back to the source speech."""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt
import pytest
import trio
import trio.testing

from recorder.rtms.messages import AudioParams, MediaParams
from recorder.simulator import (
    AudioLayout,
    Engagement,
    Product,
    Scenario,
    SimulatorConfig,
    open_simulator,
)

from .rawclient import Received, media, read_all, send, signaling

RATES = {0: 8000, 1: 16000, 2: 32000, 3: 48000}


def decode(payloads: list[bytes], codec: int, rate: int, channels: int) -> npt.NDArray[np.int16]:
    """Decode RTMS payloads with PyAV and bring them back to 16 kHz mono s16."""
    layout = "stereo" if channels == 2 else "mono"
    if codec == 1:
        frames = [np.frombuffer(b"".join(payloads), "<i2").reshape(1, -1)]
    else:
        name = {2: "pcm_alaw", 3: "g722", 4: "libopus"}[codec]
        decoder = av.CodecContext.create(name, "r")
        decoder.sample_rate = rate  # type: ignore[attr-defined]
        decoder.layout = layout  # type: ignore[attr-defined]
        frames = []
        for payload in payloads:
            for frame in decoder.decode(av.Packet(payload)):
                frames.append(frame.to_ndarray())
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    out: list[npt.NDArray[np.int16]] = []
    for array in frames:
        fmt = "s16" if array.dtype == np.int16 else "fltp"
        if fmt == "s16" and array.shape[0] == 1 and channels == 2:
            array = array.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(
            array, format=fmt if fmt == "fltp" else "s16", layout=layout
        )
        frame.sample_rate = rate if codec != 4 else 48000
        for res in resampler.resample(frame):
            out.append(res.to_ndarray().reshape(-1))
    for res in resampler.resample(None):
        out.append(res.to_ndarray().reshape(-1))
    return np.concatenate(out).astype(np.int16)


def best_correlation(
    got: npt.NDArray[np.int16], ref: npt.NDArray[np.int16], max_lag: int = 1200
) -> float:
    """Peak normalised cross-correlation for lags 0..max_lag (codec delays shift the signal)."""
    n = min(len(got), len(ref)) - max_lag
    y = ref[:n].astype(np.float64)
    a = got.astype(np.float64)
    size = 1 << (len(a) + n).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(y, size)), size)[:max_lag]
    energy = np.cumsum(np.concatenate([[0.0], a * a]))
    window = np.sqrt(energy[n : n + max_lag] - energy[:max_lag]) * np.linalg.norm(y)
    return float(np.max(corr / np.maximum(window, 1e-9)))


async def stream(
    scenario: Scenario, params: AudioParams, *, unified: bool = False
) -> tuple[Engagement, Received, Received]:
    """Run ``scenario`` to its end with one media socket; the tests run on a MockClock."""
    with trio.fail_after(300):
        async with open_simulator(SimulatorConfig(encode_in_thread=False)) as sim:
            await sim.warm_audio(scenario, [params])
            eng = await sim.start(scenario)
            target = eng.target
            async with signaling(target) as (sig, resp):
                url = resp["media_server"]["server_urls"]["all" if unified else "audio"]
                sig_got = Received()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_all, sig, sig_got)
                    media_type = 32 if unified else 1
                    async with media(target, url, media_type, MediaParams(audio=params)) as (
                        ws,
                        ok,
                    ):
                        assert ok["status_code"] == 0
                        confirmed = ok["media_params"]["audio"]
                        assert confirmed["codec"] == params.codec
                        assert confirmed["sample_rate"] == params.sample_rate
                        await send(sig, {"msg_type": 7, "rtms_stream_id": target.rtms_stream_id})
                        got = Received()
                        await read_all(ws, got)
            await eng.finished.wait()
    return eng, got, sig_got


FORMATS = [
    AudioParams(),
    AudioParams(sample_rate=0),
    AudioParams(sample_rate=2),
    AudioParams(sample_rate=3, channel=2),
    AudioParams(sample_rate=0, channel=2),
    AudioParams(codec=2, sample_rate=0),
    AudioParams(codec=3, sample_rate=1),
    AudioParams(codec=4, sample_rate=3),
    AudioParams(codec=4, sample_rate=3, channel=2),
]


@pytest.mark.parametrize(
    "params", FORMATS, ids=lambda p: f"codec{p.codec}-sr{p.sample_rate}-ch{p.channel}"
)
async def test_mixed_audio_in_every_codec_decodes_to_the_source(
    params: AudioParams, autojump_clock: trio.testing.MockClock
) -> None:
    scenario = Scenario(
        product=Product.MEETING, duration_s=2.0, utterance_gap_s=0.0, t0_ms=1_000_000
    )
    eng, got, _ = await stream(scenario, params)
    packets = got.payloads()
    assert [ts for ts, _ in packets] == [1_000_000 + 20 * k for k in range(100)]
    assert all(
        m["content"]["length"] == len(p) for m, (_, p) in zip(got.audio, packets, strict=True)
    )
    rate = RATES[params.sample_rate]
    decoded = decode([p for _, p in packets], params.codec, rate, params.channel)
    reference = eng.program.track("mixed").pcm[: 2 * 16000]
    if params.codec == 1 and params.sample_rate == 1 and params.channel == 1:
        assert np.array_equal(decoded, reference)  # L16 16 kHz mono is bit-exact
    assert best_correlation(decoded, reference) > 0.85


async def test_send_rate_100_packs_five_frames_per_packet(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(product=Product.MEETING, duration_s=1.0, utterance_gap_s=0.0, t0_ms=5_000)
    eng, got, _ = await stream(scenario, AudioParams(send_rate=100))
    packets = got.payloads()
    assert [ts for ts, _ in packets] == [5_000 + 100 * k for k in range(10)]
    assert all(len(p) == 3200 for _, p in packets)
    pcm = b"".join(p for _, p in packets)
    assert pcm == eng.program.track("mixed").pcm[:16000].astype("<i2").tobytes()


async def test_per_speaker_audio_carries_up_to_three_speakers_while_they_talk(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(
        product=Product.MEETING, layout=AudioLayout.PER_SPEAKER, duration_s=20.0, t0_ms=0 + 10
    )
    eng, got, _ = await stream(scenario, AudioParams(data_opt=2), unified=True)
    speakers = eng.scenario.speakers
    assert len(speakers) == 3
    for speaker, utterance in zip(speakers, eng.program.utterances, strict=True):
        packets = got.payloads("user_id", int(speaker.user_id))
        names = {
            m["content"]["user_name"]
            for m in got.audio
            if m["content"]["user_id"] == int(speaker.user_id)
        }
        assert names == {speaker.user_name}
        expected_ts = [10 + 20 * f for f in range(utterance.start_frame, utterance.end_frame)]
        assert [ts for ts, _ in packets] == expected_ts
        pcm = np.frombuffer(b"".join(p for _, p in packets), "<i2")
        track = eng.program.track(f"user-{speaker.user_id}").pcm
        assert np.array_equal(pcm, track[utterance.start_frame * 320 : utterance.end_frame * 320])
    # Transcripts say what the speaker said, when they said it.
    assert [t["content"]["data"] for t in got.transcripts] == [
        u.text for u in eng.program.utterances
    ]
    first = got.transcripts[0]["content"]
    assert first["user_id"] == int(speakers[0].user_id)
    assert first["start_time"] == 10 + 20 * eng.program.utterances[0].start_frame


async def test_contact_center_channels_carry_each_party(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(
        product=Product.CONTACT_CENTER, layout=AudioLayout.CHANNELS, duration_s=13.0
    )
    eng, got, _ = await stream(scenario, AudioParams(codec=2, sample_rate=0), unified=True)
    channels = {m["content"]["channel_id"] for m in got.audio}
    assert channels == {"ch-agent", "ch-caller"}
    assert all("user_id" not in m["content"] for m in got.audio)
    for channel in channels:
        packets = got.payloads("channel_id", channel)
        assert len(packets) == 650  # continuous, silence included
        decoded = decode([p for _, p in packets], 2, 8000, 1)
        reference = eng.program.track(f"channel-{channel}").pcm[: 13 * 16000]
        assert best_correlation(decoded, reference) > 0.9
    assert {t["content"]["channel_id"] for t in got.transcripts} == channels


async def test_cross_talk_gives_up_to_three_packets_per_20_ms(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(
        product=Product.MEETING,
        layout=AudioLayout.PER_SPEAKER,
        duration_s=10.36,  # one cycle (518 frames): nobody speaks twice
        utterance_gap_s=-4.0,
    )
    eng, got, _ = await stream(scenario, AudioParams(data_opt=2))
    per_timestamp: dict[int, set[int]] = {}
    for m in got.audio:
        per_timestamp.setdefault(m["content"]["timestamp"], set()).add(m["content"]["user_id"])
    assert max(len(users) for users in per_timestamp.values()) == 3
    for speaker in eng.scenario.speakers:
        packets = got.payloads("user_id", int(speaker.user_id))
        utterance = next(u for u in eng.program.utterances if u.speaker == speaker)
        pcm = np.frombuffer(b"".join(p for _, p in packets), "<i2")
        track = eng.program.track(f"user-{speaker.user_id}").pcm
        assert np.array_equal(pcm, track[utterance.start_frame * 320 : utterance.end_frame * 320])
