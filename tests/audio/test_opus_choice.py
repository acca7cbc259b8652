"""Issue 13's Opus decision, held to real speech: the recorder's Opus path (FFmpeg's native
decoder at 48 kHz, then swresample's filter to 16 kHz mono, applied in numpy) is within 1 LSB
of the plain PyAV pipeline written out here independently, chunk for chunk, and the manifests'
decoder version names that path. The numpy decimator is also held to swresample on frames of
every Opus duration, on audio loud enough to clip, and on anything hypothesis makes of them."""

from __future__ import annotations

import av
import numpy as np
import pytest
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.audio import polyphase
from recorder.audio.decoder import KEEP_SOURCE, VOICE, OutputFormat, decoder_version, make_decoder
from recorder.rtms.events import AudioCodec, AudioFormat
from recorder.testing.audio_source import encode_speech
from tests.audio.support import decoded_around_a_bad_packet


def plain_pyav_chunks(packets: list[bytes], channels: int) -> list[np.ndarray]:
    """One s16 chunk per packet, then the resampler's tail, the way PyAV does it."""
    context = av.CodecContext.create("opus", "r")
    context.sample_rate = 48_000
    context.layout = "mono" if channels == 1 else "stereo"
    context.open()
    resampler = AudioResampler(format="s16", layout="mono", rate=16_000)
    chunks = []
    for payload in packets:
        out = [np.zeros(0, dtype=np.int16)]
        for frame in context.decode(av.Packet(payload)):
            out += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        chunks.append(np.concatenate(out))
    tail = [np.zeros(0, dtype=np.int16)]
    chunks.append(
        np.concatenate(tail + [f.to_ndarray().reshape(-1) for f in resampler.resample(None)])
    )
    return chunks


def plain_pyav(packets: list[bytes], channels: int) -> np.ndarray:
    return np.concatenate(plain_pyav_chunks(packets, channels))


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("speaker", ["a", "b", "c"])
def test_the_opus_path_is_within_one_lsb_of_plain_pyav_on_speech(
    speaker: str, channels: int
) -> None:
    fmt = AudioFormat(AudioCodec.OPUS, 48_000, channels)
    packets = list(encode_speech(speaker, fmt).packets)
    decoder = make_decoder(fmt, VOICE)
    recorded = np.frombuffer(
        b"".join([decoder.decode(p) for p in packets] + [decoder.flush()]), "<i2"
    )
    reference = plain_pyav(packets, channels)
    assert len(recorded) == len(reference) == len(packets) * 320
    difference = np.abs(recorded.astype(np.int32) - reference.astype(np.int32))
    assert difference.max() <= 1
    # Not a systematic half-LSB bias either: almost every sample is equal.
    assert np.count_nonzero(difference) <= len(difference) // 1_000
    # Real speech, not silence: the comparison means something.
    assert np.abs(reference.astype(np.int32)).max() > 1_000
    assert "opus=ffmpeg-native-48k-swresample" in decoder_version()


@pytest.mark.parametrize("channels", [1, 2])
def test_the_default_output_goes_through_the_numpy_decimator_chunk_for_chunk(
    channels: int,
) -> None:
    fmt = AudioFormat(AudioCodec.OPUS, 48_000, channels)
    packets = list(encode_speech("a", fmt).packets)
    decoder = make_decoder(fmt, VOICE)
    assert isinstance(decoder._decimator, polyphase.Decimator)  # type: ignore[attr-defined]
    ours = [decoder.decode(p) for p in packets] + [decoder.flush()]
    theirs = plain_pyav_chunks(packets, channels)
    # Same chunk lengths: the timeline places every chunk where it did with swresample.
    assert [len(c) // 2 for c in ours] == [len(c) for c in theirs]
    assert "opus-48k-16k-mono=swresample-taps-numpy" in decoder_version()


@pytest.mark.parametrize(
    "output", [KEEP_SOURCE, OutputFormat(channels=2)], ids=["keep", "16k-stereo"]
)
def test_other_outputs_still_go_through_swresample(output: OutputFormat) -> None:
    decoder = make_decoder(AudioFormat(AudioCodec.OPUS, 48_000, 2), output)
    assert decoder._decimator is None  # type: ignore[attr-defined]


def frames_of(planes: np.ndarray) -> AudioFrame:
    frame = AudioFrame.from_ndarray(
        np.ascontiguousarray(planes, dtype=np.float32),
        format="fltp",
        layout="mono" if len(planes) == 1 else "stereo",
    )
    frame.sample_rate = 48_000
    return frame


def both_ways(signal: np.ndarray, lengths: list[int]) -> tuple[list[bytes], list[bytes]]:
    """The decimator and swresample, chunk by chunk, over ``signal`` cut at ``lengths``."""
    band = polyphase.third_band()
    assert band is not None
    decimator = polyphase.Decimator(band, len(signal))
    resampler = AudioResampler(format="s16", layout="mono", rate=16_000)
    ours, theirs = [], []
    start = 0
    for length in lengths:
        frame = frames_of(signal[:, start : start + length])
        start += length
        assert decimator.accepts(frame)
        ours.append(decimator.push(frame))
        theirs.append(b"".join(f.to_ndarray().tobytes() for f in resampler.resample(frame)))
    ours.append(decimator.flush())
    theirs.append(b"".join(f.to_ndarray().tobytes() for f in resampler.resample(None)))
    return ours, theirs


def assert_within_one_lsb(ours: list[bytes], theirs: list[bytes]) -> None:
    assert [len(c) for c in ours] == [len(c) for c in theirs]
    a = np.frombuffer(b"".join(ours), "<i2").astype(np.int32)
    b = np.frombuffer(b"".join(theirs), "<i2").astype(np.int32)
    assert np.abs(a - b).max(initial=0) <= 1
    # Both sum in float32, in different orders: on loud noise (float32 steps of 1/256 of an
    # LSB near full scale) about 2 in a thousand round apart, a rounding bias would be half.
    # The floor is for short runs: 160 samples had 3 apart in 3 of 400 random loud frames (CI
    # drew one); 8 or more at that rate is about 3 in a billion.
    assert np.count_nonzero(a - b) <= max(8, len(a) // 100)


#: Opus frame durations 2.5, 5, 10, 20, 40 and 60 ms at 48 kHz.
OPUS_FRAMES = [120, 240, 480, 960, 1920, 2880]


@pytest.mark.parametrize("channels", [1, 2])
def test_every_opus_frame_duration_and_full_scale_stay_within_one_lsb(channels: int) -> None:
    rng = np.random.default_rng(13)
    lengths = [*OPUS_FRAMES, *OPUS_FRAMES[::-1]]
    # Noise up to twice full scale: the filter's output clips to s16 as swresample's does.
    signal = rng.uniform(-2.0, 2.0, size=(channels, sum(lengths)))
    ours, theirs = both_ways(signal, lengths)
    assert_within_one_lsb(ours, theirs)
    clipped = np.frombuffer(b"".join(ours), "<i2")
    assert clipped.max() == 32_767
    assert clipped.min() == -32_768


@settings(max_examples=60, deadline=None)
@given(
    channels=st.sampled_from([1, 2]),
    lengths=st.lists(st.sampled_from(OPUS_FRAMES), min_size=1, max_size=12),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-4, 0.3, 1.5]),
)
def test_any_sequence_of_opus_frames_is_within_one_lsb_of_swresample(
    channels: int, lengths: list[int], seed: int, scale: float
) -> None:
    signal = np.random.default_rng(seed).normal(0.0, scale, size=(channels, sum(lengths)))
    ours, theirs = both_ways(signal, lengths)
    assert_within_one_lsb(ours, theirs)


def test_a_bad_opus_packet_leaves_the_decimator_exactly_where_it_was() -> None:
    fmt = AudioFormat(AudioCodec.OPUS, 48_000, 1)
    packets = list(encode_speech("b", fmt).packets[:30])
    ours = decoded_around_a_bad_packet(
        make_decoder(fmt, VOICE), packets, b"\xff\xff\xff\xff", at=15
    )
    clean = make_decoder(fmt, VOICE)
    assert ours == [clean.decode(p) for p in packets] + [clean.flush()]
