"""Decoders against independent references: bit-exact L16, PyAV reference decodes for G.711 and
G.722, correlation for Opus, and bad packets that raise DecodeError without breaking the track."""

from __future__ import annotations

import av
import numpy as np
import pytest

from recorder.audio.decoder import (
    KEEP_SOURCE,
    MULAW,
    VOICE,
    OutputFormat,
    decoder_version,
    describe_source,
    make_decoder,
)
from recorder.errors import ConfigError, DecodeError
from recorder.rtms.events import AudioCodec, AudioFormat
from recorder.testing.audio_source import encode_speech, source_pcm

L16_FORMATS = [
    AudioFormat(AudioCodec.L16, rate, channels)
    for rate in (8_000, 16_000, 32_000, 48_000)
    for channels in (1, 2)
]


def _decode_all(fmt: AudioFormat, output: OutputFormat, speaker: str = "a", law: str = "alaw"):
    speech = encode_speech(speaker, fmt, g711_law=law)
    decoder = make_decoder(fmt, output, g711_law=law)
    pcm = b"".join(decoder.decode(p) for p in speech.packets) + decoder.flush()
    channels = decoder.output_channels
    return speech, decoder, np.frombuffer(pcm, "<i2").reshape(-1, channels)


def _reference(codec_name: str, packets: tuple[bytes, ...], rate: int) -> np.ndarray:
    """An independent decode with a fresh PyAV context, no resampling."""
    context = av.CodecContext.create(codec_name, "r")
    context.sample_rate = rate
    context.layout = "mono"
    frames = [f for p in packets for f in context.decode(av.Packet(p))]
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    n = min(len(x), len(y))
    a, b = x[:n].astype(float), y[:n].astype(float)
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


@pytest.mark.parametrize("fmt", L16_FORMATS, ids=lambda f: f"{f.sample_rate}-{f.channels}")
def test_l16_keeping_the_source_format_is_bit_exact(fmt: AudioFormat) -> None:
    speech, decoder, pcm = _decode_all(fmt, KEEP_SOURCE)
    assert pcm.tobytes() == speech.pcm
    assert decoder.delay_samples == 0


def test_l16_16k_mono_is_passthrough_for_voice_output() -> None:
    fmt = AudioFormat(AudioCodec.L16, 16_000, 1)
    speech, decoder, pcm = _decode_all(fmt, VOICE)
    assert pcm.tobytes() == speech.pcm
    assert decoder.decode(speech.packets[0]) is speech.packets[0]


@pytest.mark.parametrize("fmt", L16_FORMATS, ids=lambda f: f"{f.sample_rate}-{f.channels}")
def test_l16_resampled_to_voice_matches_the_speech(fmt: AudioFormat) -> None:
    speech, decoder, pcm = _decode_all(fmt, VOICE)
    assert (decoder.output_rate, decoder.output_channels) == (16_000, 1)
    # Length is preserved exactly once the resampler's tail is flushed.
    assert len(pcm) == len(speech.pcm) // (2 * fmt.channels) * 16_000 // fmt.sample_rate
    source = np.frombuffer(source_pcm("a", 16_000, 1), "<i2")
    threshold = 0.95 if fmt.sample_rate == 8_000 else 0.99  # 8 kHz loses the top band
    assert _correlation(source, pcm[:, 0]) > threshold


@pytest.mark.parametrize("law", ["alaw", MULAW])
def test_g711_is_exactly_the_reference_decode(law: str) -> None:
    fmt = AudioFormat(AudioCodec.G711, 8_000, 1)
    speech, _, pcm = _decode_all(fmt, KEEP_SOURCE, law=law)
    reference = _reference("pcm_alaw" if law == "alaw" else "pcm_mulaw", speech.packets, 8_000)
    assert np.array_equal(pcm[:, 0], reference)
    assert _correlation(speech.pcm_array()[:, 0], pcm[:, 0]) > 0.999


def test_g722_is_exactly_the_reference_decode_and_reports_its_delay() -> None:
    fmt = AudioFormat(AudioCodec.G722, 16_000, 1)
    speech, decoder, pcm = _decode_all(fmt, VOICE)
    assert np.array_equal(pcm[:, 0], _reference("g722", speech.packets, 16_000))
    delay = decoder.delay_samples
    assert delay == 22
    assert _correlation(speech.pcm_array()[:-delay, 0], pcm[delay:, 0]) > 0.99


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("output", [VOICE, KEEP_SOURCE], ids=["voice", "keep"])
def test_opus_correlates_with_the_source_once_its_delay_is_removed(
    channels: int, output: OutputFormat
) -> None:
    fmt = AudioFormat(AudioCodec.OPUS, 48_000, channels)
    _speech, decoder, pcm = _decode_all(fmt, output)
    rate = decoder.output_rate
    assert decoder.delay_samples == 312 * rate // 48_000
    source = np.frombuffer(source_pcm("a", rate, 1), "<i2")
    aligned = pcm[decoder.delay_samples :, 0]
    assert _correlation(source, aligned) >= 0.9


def test_opus_stereo_keeps_left_and_right_apart() -> None:
    fmt = AudioFormat(AudioCodec.OPUS, 48_000, 2)
    _speech, decoder, pcm = _decode_all(fmt, KEEP_SOURCE, speaker="a|b")
    left = np.frombuffer(source_pcm("a", 48_000, 1), "<i2")
    right = np.frombuffer(source_pcm("b", 48_000, 1), "<i2")
    aligned = pcm[decoder.delay_samples :]
    assert _correlation(left, aligned[:, 0]) >= 0.9
    assert _correlation(right, aligned[:, 1]) >= 0.9
    assert abs(_correlation(left, aligned[:, 1])) < 0.3


@pytest.mark.parametrize(
    ("fmt", "bad"),
    [
        (AudioFormat(AudioCodec.L16, 16_000, 1), b"\x01\x02\x03"),
        (AudioFormat(AudioCodec.L16, 48_000, 2), b"\x00" * 6),
        (AudioFormat(AudioCodec.L16, 48_000, 2), b""),
        (AudioFormat(AudioCodec.OPUS, 48_000, 1), b"\xff\xff\xff\xff"),
        (AudioFormat(AudioCodec.OPUS, 48_000, 2), b""),
        (AudioFormat(AudioCodec.G711, 8_000, 1), b""),
    ],
)
def test_a_bad_packet_raises_decode_error_and_the_track_goes_on(
    fmt: AudioFormat, bad: bytes
) -> None:
    speech = encode_speech("b", fmt)
    decoder = make_decoder(fmt, VOICE)
    good = [decoder.decode(p) for p in speech.packets[:10]]
    with pytest.raises(DecodeError):
        decoder.decode(bad)
    after = decoder.decode(speech.packets[10])
    assert len(after) == len(good[-1])


@pytest.mark.parametrize(
    "fmt",
    [
        AudioFormat(AudioCodec.OPUS, 16_000, 1),
        AudioFormat(AudioCodec.G711, 16_000, 1),
        AudioFormat(AudioCodec.G722, 16_000, 2),
        AudioFormat(AudioCodec.L16, 44_100, 1),
        AudioFormat(AudioCodec.L16, 16_000, 3),
    ],
)
def test_formats_rtms_does_not_send_are_refused(fmt: AudioFormat) -> None:
    with pytest.raises(ConfigError):
        make_decoder(fmt)


def test_unusual_output_formats_are_refused() -> None:
    with pytest.raises(ConfigError):
        make_decoder(AudioFormat(AudioCodec.L16, 16_000, 1), OutputFormat(sample_rate=11_025))
    with pytest.raises(ConfigError):
        make_decoder(AudioFormat(AudioCodec.L16, 16_000, 1), OutputFormat(channels=6))


def test_version_and_description_name_what_decoded_the_audio() -> None:
    version = decoder_version()
    for part in (
        "pyav=",
        "ffmpeg=",
        "libavcodec=",
        "libswresample=",
        "opus=ffmpeg-native-48k-swresample",
    ):
        assert part in version
    assert describe_source(AudioFormat(AudioCodec.OPUS, 48_000, 2)) == "OPUS 48000 stereo"
    g711 = AudioFormat(AudioCodec.G711, 8_000, 1)
    assert describe_source(g711, MULAW) == "G711-MULAW 8000 mono"
    assert make_decoder(g711).description == "G711-ALAW 8000 mono"


@pytest.mark.parametrize(("law", "codec_name"), [("alaw", "pcm_alaw"), (MULAW, "pcm_mulaw")])
def test_g711_table_matches_pyav_for_every_code(law: str, codec_name: str) -> None:
    fmt = AudioFormat(AudioCodec.G711, 8_000, 1)
    every_code = bytes(range(256)) * 2
    ours = np.frombuffer(make_decoder(fmt, KEEP_SOURCE, g711_law=law).decode(every_code), "<i2")
    assert np.array_equal(ours, _reference(codec_name, (every_code,), 8_000))


def test_no_upsampling_keeps_narrowband_sources_at_their_rate() -> None:
    narrow = OutputFormat(upsample=False)
    assert make_decoder(AudioFormat(AudioCodec.G711, 8_000, 1), narrow).output_rate == 8_000
    assert make_decoder(AudioFormat(AudioCodec.OPUS, 48_000, 2), narrow).output_rate == 16_000
    assert make_decoder(AudioFormat(AudioCodec.L16, 8_000, 1), VOICE).output_rate == 16_000


def _swresample(packets: tuple[bytes, ...], law: str) -> list[bytes]:
    """G.711 to 16 kHz the way PyAV's AudioResampler does it, one chunk per packet + flush."""
    from av.audio.frame import AudioFrame
    from av.audio.resampler import AudioResampler

    context = av.CodecContext.create("pcm_alaw" if law == "alaw" else "pcm_mulaw", "r")
    context.sample_rate = 8_000
    context.layout = "mono"
    resampler = AudioResampler(format="s16", layout="mono", rate=16_000)
    chunks = []
    for packet in packets:
        samples = np.concatenate(
            [f.to_ndarray().reshape(-1) for f in context.decode(av.Packet(packet))]
        )
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 8_000
        chunks.append(b"".join(f.to_ndarray().tobytes() for f in resampler.resample(frame)))
    chunks.append(b"".join(f.to_ndarray().tobytes() for f in resampler.resample(None)))
    return chunks


@pytest.mark.parametrize("law", ["alaw", "mulaw"])
@pytest.mark.parametrize("speaker", ["a", "b"])
def test_g711_to_16k_matches_swresample_in_timing_and_within_one_lsb(
    speaker: str, law: str
) -> None:
    fmt = AudioFormat(AudioCodec.G711, 8_000, 1)
    speech = encode_speech(speaker, fmt, g711_law=law)
    decoder = make_decoder(fmt, VOICE, g711_law=law)
    ours = [decoder.decode(p) for p in speech.packets] + [decoder.flush()]
    theirs = _swresample(speech.packets, law)
    # Same chunk lengths: the timeline places every chunk exactly where it did with swresample.
    assert [len(c) for c in ours] == [len(c) for c in theirs]
    a = np.frombuffer(b"".join(ours), "<i2").astype(np.int32)
    b = np.frombuffer(b"".join(theirs), "<i2").astype(np.int32)
    assert np.abs(a - b).max() <= 1
    assert np.count_nonzero(a - b) < 0.05 * len(a)
    # Every even sample is the G.711 sample itself.
    assert np.array_equal(
        a[0::2], _reference("pcm_alaw" if law == "alaw" else "pcm_mulaw", speech.packets, 8_000)
    )


def test_g711_to_16k_with_a_tiny_first_packet_still_decodes_every_sample() -> None:
    fmt = AudioFormat(AudioCodec.G711, 8_000, 1)
    speech = encode_speech("a", fmt)
    decoder = make_decoder(fmt, VOICE)
    packets = (speech.packets[0][:8], *speech.packets[1:20])
    pcm = b"".join(decoder.decode(p) for p in packets) + decoder.flush()
    assert len(pcm) == 2 * 2 * (8 + 19 * 160)
