"""The simulator's speech source: packet framing per codec, and that the packets really encode
the PCM they claim to (decoded with PyAV, independently of recorder.audio)."""

from __future__ import annotations

import itertools

import av
import numpy as np
import pytest

from recorder.errors import ConfigError
from recorder.rtms.events import AudioCodec, AudioFormat
from recorder.testing.audio_source import cycle_packets, encode_speech, source_pcm

L16_FORMATS = [
    AudioFormat(AudioCodec.L16, rate, channels)
    for rate in (8_000, 16_000, 32_000, 48_000)
    for channels in (1, 2)
]


@pytest.mark.parametrize("fmt", L16_FORMATS, ids=lambda f: f"L16-{f.sample_rate}-{f.channels}")
def test_l16_packets_are_the_pcm_cut_into_send_rate_pieces(fmt: AudioFormat) -> None:
    speech = encode_speech("a", fmt)
    assert b"".join(speech.packets) == speech.pcm
    assert {len(p) for p in speech.packets} == {fmt.sample_rate // 50 * fmt.channels * 2}
    head = source_pcm("a", fmt.sample_rate, fmt.channels)
    assert speech.pcm[: len(head)] == head


def test_l16_16k_mono_is_the_fixture_bit_for_bit() -> None:
    import wave

    from recorder.testing.audio_source import SPEECH_DIR

    with wave.open(str(SPEECH_DIR / "speech_b.wav")) as wav:
        fixture = wav.readframes(wav.getnframes())
    speech = encode_speech("b", AudioFormat(AudioCodec.L16, 16_000, 1))
    assert speech.pcm[: len(fixture)] == fixture
    assert set(speech.pcm[len(fixture) :]) <= {0}


def test_stereo_pair_puts_each_speaker_on_its_own_side() -> None:
    fmt = AudioFormat(AudioCodec.L16, 16_000, 2)
    pair = encode_speech("a|b", fmt).pcm_array()
    a = np.frombuffer(source_pcm("a", 16_000, 1), "<i2")
    b = np.frombuffer(source_pcm("b", 16_000, 1), "<i2")
    assert np.array_equal(pair[: len(a), 0], a)
    assert np.array_equal(pair[: len(b), 1], b)
    both = encode_speech("a", fmt).pcm_array()
    assert np.array_equal(both[:, 0], both[:, 1])


def test_long_send_rate_and_seconds_loop_the_speech() -> None:
    speech = encode_speech("c", AudioFormat(AudioCodec.L16, 16_000, 1, packet_ms=100), seconds=15)
    assert len(speech.packets) == 150
    assert {len(p) for p in speech.packets} == {3_200}
    clip = source_pcm("c", 16_000, 1)
    assert speech.pcm[len(clip) : 2 * len(clip)] == clip


def _decode(
    codec_name: str, speech_packets: tuple[bytes, ...], rate: int, layout: str
) -> np.ndarray:
    decoder = av.CodecContext.create(codec_name, "r")
    decoder.sample_rate = rate
    decoder.layout = layout
    out = []
    for payload in speech_packets:
        for frame in decoder.decode(av.Packet(payload)):
            array = frame.to_ndarray()
            out.append(array.reshape(-1) if not frame.format.is_planar else array.T.reshape(-1))
    return np.concatenate(out).reshape(-1, 2 if layout == "stereo" else 1)


def _best_lag(source: np.ndarray, decoded: np.ndarray, max_lag: int) -> tuple[int, float]:
    n = len(source) - max_lag
    x = source[:n].astype(float)
    best = max(range(max_lag), key=lambda lag: float(np.dot(x, decoded[lag : lag + n])))
    y = decoded[best : best + n].astype(float)
    return best, float(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))


@pytest.mark.parametrize(
    ("fmt", "codec_name", "layout", "law"),
    [
        (AudioFormat(AudioCodec.G711, 8_000, 1), "pcm_alaw", "mono", "alaw"),
        (AudioFormat(AudioCodec.G711, 8_000, 1), "pcm_mulaw", "mono", "mulaw"),
        (AudioFormat(AudioCodec.G722, 16_000, 1), "g722", "mono", "alaw"),
        (AudioFormat(AudioCodec.OPUS, 48_000, 1), "libopus", "mono", "alaw"),
        (AudioFormat(AudioCodec.OPUS, 48_000, 2), "libopus", "stereo", "alaw"),
    ],
    ids=["alaw", "mulaw", "g722", "opus-mono", "opus-stereo"],
)
def test_coded_packets_decode_to_the_pcm_after_the_stated_delay(
    fmt: AudioFormat, codec_name: str, layout: str, law: str
) -> None:
    speech = encode_speech("a", fmt, g711_law=law)
    assert len(speech.packets) * speech.samples_per_packet * fmt.channels * 2 == len(speech.pcm)
    decoded = _decode(codec_name, speech.packets, fmt.sample_rate, layout)
    source = speech.pcm_array()
    assert decoded.shape == source.shape
    lag, correlation = _best_lag(source[:, 0], decoded[:, 0], 400)
    # Opus's best-correlation lag can sit a sample or two off its nominal lookahead (phase).
    assert abs(lag - speech.encoder_delay) <= 3
    assert correlation > (0.98 if fmt.codec == AudioCodec.OPUS else 0.99)


def test_cycle_packets_repeats_without_copying_the_call() -> None:
    speech = encode_speech("a", AudioFormat(AudioCodec.G711, 8_000, 1))
    looped = list(itertools.islice(cycle_packets(speech), 3 * len(speech.packets)))
    assert looped == list(speech.packets) * 3


def test_encoding_is_cached() -> None:
    fmt = AudioFormat(AudioCodec.OPUS, 48_000, 2)
    assert encode_speech("b", fmt) is encode_speech("b", fmt)


@pytest.mark.parametrize(
    ("speaker", "fmt"),
    [
        ("a", AudioFormat(AudioCodec.OPUS, 16_000, 1)),
        ("a", AudioFormat(AudioCodec.G711, 8_000, 2)),
        ("a", AudioFormat(AudioCodec.G722, 16_000, 1, packet_ms=40)),
        ("a", AudioFormat(AudioCodec.L16, 16_000, 1, packet_ms=30)),
        ("a", AudioFormat(AudioCodec.L16, 22_050, 1)),
        ("z", AudioFormat(AudioCodec.L16, 16_000, 1)),
        ("a|b", AudioFormat(AudioCodec.L16, 16_000, 1)),
    ],
)
def test_combinations_rtms_refuses_are_refused(speaker: str, fmt: AudioFormat) -> None:
    with pytest.raises(ConfigError):
        encode_speech(speaker, fmt)
