"""Opus kept at 48 kHz (the shipped output): the numpy float to s16 conversion writes exactly the
bytes swresample wrote, chunk for chunk, on real speech and on anything hypothesis makes of a
frame (ties, clipping, -0.0, NaN, infinities, far beyond full scale), mono and stereo, and the
manifests' decoder version names it."""

from __future__ import annotations

import av
import numpy as np
import pytest
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recorder.audio import s16
from recorder.audio.decoder import KEEP_SOURCE, OutputFormat, decoder_version, make_decoder
from recorder.rtms.events import AudioCodec, AudioFormat
from recorder.testing.audio_source import encode_speech
from tests.audio.support import decoded_around_a_bad_packet

LAYOUTS = {1: "mono", 2: "stereo"}
#: Opus frame durations 2.5, 5, 10, 20, 40 and 60 ms at 48 kHz.
OPUS_FRAMES = [120, 240, 480, 960, 1920, 2880]


def fltp(planes: np.ndarray) -> AudioFrame:
    frame = AudioFrame.from_ndarray(
        np.ascontiguousarray(planes, dtype=np.float32), format="fltp", layout=LAYOUTS[len(planes)]
    )
    frame.sample_rate = 48_000
    return frame


def swresample(frames: list[AudioFrame], channels: int) -> list[bytes]:
    """One chunk a frame, then the flush, as ``AudioResampler`` converts them."""
    resampler = AudioResampler(format="s16", layout=LAYOUTS[channels], rate=48_000)
    chunks = [b"".join(f.to_ndarray().tobytes() for f in resampler.resample(x)) for x in frames]
    return [*chunks, b"".join(f.to_ndarray().tobytes() for f in resampler.resample(None))]


def decoded_frames(packets: list[bytes], channels: int) -> list[AudioFrame]:
    context = av.CodecContext.create("opus", "r")
    context.sample_rate = 48_000
    context.layout = LAYOUTS[channels]
    context.open()
    return [frame for payload in packets for frame in context.decode(av.Packet(payload))]


def test_this_libswresample_rounds_as_the_numpy_conversion_does() -> None:
    # False would silently send every frame back to swresample: still exact, never faster.
    assert s16.exact()
    # Every half LSB (and the floats either side) from beyond -full scale to beyond +full
    # scale, not only the ones a process checks when it starts.
    assert s16.exact((range(-66_000, 66_001),))
    assert "opus-48k-s16=numpy-rint-clip" in decoder_version()
    # The decode itself is unchanged, and still named.
    assert "opus=ffmpeg-native-48k-swresample" in decoder_version()


@pytest.mark.parametrize(
    ("speaker", "channels"), [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("c", 2), ("a|b", 2)]
)
def test_opus_kept_at_48k_writes_swresample_s_bytes_on_speech(speaker: str, channels: int) -> None:
    fmt = AudioFormat(AudioCodec.OPUS, 48_000, channels)
    packets = list(encode_speech(speaker, fmt).packets)
    decoder = make_decoder(fmt, KEEP_SOURCE)
    assert isinstance(decoder._s16, s16.FloatToS16)  # type: ignore[attr-defined]
    ours = [decoder.decode(p) for p in packets] + [decoder.flush()]
    frames = decoded_frames(packets, channels)
    assert len(frames) == len(packets)
    # Chunk for chunk, the flush (empty both ways) included: the timeline sees no difference.
    assert ours == swresample(frames, channels)
    # Real speech, every frame of it taken by numpy, not handed back to swresample.
    converter = s16.FloatToS16(channels)
    assert all(converter.convert(frame) is not None for frame in frames)
    assert np.abs(np.frombuffer(b"".join(ours), "<i2").astype(np.int32)).max() > 5_000


@pytest.mark.parametrize(
    "output",
    [OutputFormat(sample_rate=48_000, channels=1), OutputFormat(sample_rate=16_000, channels=2)],
    ids=["48k-downmix", "16k-stereo"],
)
def test_other_conversions_of_opus_stay_on_swresample(output: OutputFormat) -> None:
    decoder = make_decoder(AudioFormat(AudioCodec.OPUS, 48_000, 2), output)
    assert decoder._s16 is None  # type: ignore[attr-defined]
    upmix = make_decoder(AudioFormat(AudioCodec.OPUS, 48_000, 1), OutputFormat(48_000, 2))
    assert upmix._s16 is None  # type: ignore[attr-defined]


def test_frames_of_another_layout_or_format_are_refused() -> None:
    converter = s16.FloatToS16(2)
    assert converter.convert(fltp(np.zeros((1, 960)))) is None
    packed = AudioFrame.from_ndarray(np.zeros((1, 1920), dtype=np.float32), "flt", "stereo")
    packed.sample_rate = 48_000
    assert converter.convert(packed) is None


#: Every half LSB tie near zero and near both clipping edges, in float32.
TIES = [k / 65_536.0 for k in (*range(-9, 10), *range(65_529, 65_540), *range(-65_540, -65_529))]
#: What no speech decodes to: the edge past which swresample's two paths disagree, and beyond.
BELOW_EDGE = float(np.nextafter(np.float32(65_536.0), np.float32(0.0)))
SPECIAL = [
    *(np.nan, np.inf, -np.inf, -0.0, 65_536.0, -65_536.0, BELOW_EDGE, -BELOW_EDGE),
    *(70_000.0, -70_000.0, 1e20, -1e20, 3.0e38),
]


def frames_strategy(special: bool) -> st.SearchStrategy[tuple[int, list[np.ndarray]]]:
    """1 to 4 frames of ties and values up to 4 times full scale; with ``special``, a few
    samples of each replaced by anything at all (NaN, infinities, past 65536)."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[int, list[np.ndarray]]:
        channels = draw(st.sampled_from([1, 2]))
        # Short lengths put samples in the C tail past the last 16; Opus sizes as decoded.
        lengths = st.one_of(st.integers(1, 40), st.sampled_from(OPUS_FRAMES))
        elements = st.one_of(st.sampled_from(TIES), st.floats(-4.0, 4.0, width=32))
        anything = st.one_of(
            st.sampled_from(SPECIAL), st.floats(width=32, allow_nan=True, allow_infinity=True)
        )
        arrays = []
        for _ in range(draw(st.integers(1, 4))):
            shape = (channels, draw(lengths))
            array = draw(hnp.arrays(np.float32, shape, elements=elements))
            if special:
                for _ in range(draw(st.integers(0, 2))):
                    channel = draw(st.integers(0, channels - 1))
                    array[channel, draw(st.integers(0, shape[1] - 1))] = draw(anything)
            arrays.append(array)
        return channels, arrays

    return build()


@settings(max_examples=150, deadline=None)
@given(frames_strategy(special=True))
def test_the_decoder_writes_swresample_s_bytes_for_any_frame(
    case: tuple[int, list[np.ndarray]],
) -> None:
    """Whatever a hostile packet decodes to: frames numpy refuses go to swresample, which keeps
    nothing from one frame to the next at equal rates, so the mix is still its output."""
    channels, arrays = case
    decoder = make_decoder(AudioFormat(AudioCodec.OPUS, 48_000, channels), KEEP_SOURCE)
    frames = [fltp(a) for a in arrays]
    ours = [decoder._output(f) for f in frames] + [decoder.flush()]  # type: ignore[attr-defined]
    assert ours == swresample(frames, channels)


@settings(max_examples=150, deadline=None)
@given(frames_strategy(special=False))
def test_numpy_takes_every_frame_within_four_times_full_scale(
    case: tuple[int, list[np.ndarray]],
) -> None:
    channels, arrays = case
    converter = s16.FloatToS16(channels)
    frames = [fltp(a) for a in arrays]
    ours = [converter.convert(f) for f in frames]
    assert ours == swresample(frames, channels)[:-1]


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("where", [0, 15, 16, 18], ids=["simd-first", "simd-last", "c", "c-last"])
@pytest.mark.parametrize("value", SPECIAL, ids=[str(v) for v in SPECIAL])
def test_each_unusual_sample_in_either_path_is_written_as_swresample_writes_it(
    value: float, where: int, channels: int
) -> None:
    signal = np.full((channels, 19), 0.25, dtype=np.float32)
    signal[channels - 1, where] = value
    frames = [fltp(signal)]
    decoder = make_decoder(AudioFormat(AudioCodec.OPUS, 48_000, channels), KEEP_SOURCE)
    ours = [decoder._output(f) for f in frames] + [decoder.flush()]  # type: ignore[attr-defined]
    assert ours == swresample(frames, channels)
    # Numpy refuses only what it must: anything finite short of 65536 is its own.
    taken = s16.FloatToS16(channels).convert(frames[0]) is not None
    assert taken == bool(abs(value) < 65_536.0)


def test_what_swresample_writes_for_nan_and_infinity_is_kept() -> None:
    """Not a choice made here: its SIMD body writes -32768 for NaN, infinities and anything
    past 65536 times full scale, its C tail (samples past the last multiple of 16) 0 or a
    wrapped value. Numpy refuses such frames, so a recording keeps exactly those bytes."""
    signal = np.zeros((1, 20), dtype=np.float32)
    signal[0, :4] = [np.nan, np.inf, -np.inf, 70_000.0]
    signal[0, 16:] = [np.nan, np.inf, 70_000.0, -70_000.0]
    frame = fltp(signal)
    assert s16.FloatToS16(1).convert(frame) is None
    decoder = make_decoder(AudioFormat(AudioCodec.OPUS, 48_000, 1), KEEP_SOURCE)
    written = np.frombuffer(decoder._output(frame), "<i2")  # type: ignore[attr-defined]
    assert written[:4].tolist() == [-32_768] * 4
    assert written[16:].tolist() == [0, 0, -32_768, 32_767]


def test_a_bad_packet_changes_nothing_after_it() -> None:
    fmt = AudioFormat(AudioCodec.OPUS, 48_000, 2)
    packets = list(encode_speech("b", fmt).packets[:30])
    ours = decoded_around_a_bad_packet(
        make_decoder(fmt, KEEP_SOURCE), packets, b"\xff\xff\xff\xff", at=15
    )
    clean = make_decoder(fmt, KEEP_SOURCE)
    assert ours == [clean.decode(p) for p in packets] + [clean.flush()]


@pytest.mark.parametrize("channels", [1, 2])
def test_random_packets_are_written_as_swresample_writes_them(channels: int) -> None:
    """Hostile packets through the real decoder: a third decode louder than full scale (the
    clipping path), about one in a thousand past 65536 times it (handed to swresample).

    The frames are the decoder's own (``CodecDecoder.decode`` is its context's ``decode``, then
    ``_output`` a frame): FFmpeg's Opus decoder does not always decode the same garbage to the
    same floats twice (about one run in four differs, by 1e-8, within 8 000 random packets),
    so a second decoder would not be a reference."""
    fmt = AudioFormat(AudioCodec.OPUS, 48_000, channels)
    decoder = make_decoder(fmt, KEEP_SOURCE)
    resampler = AudioResampler(format="s16", layout=LAYOUTS[channels], rate=48_000)
    converter = s16.FloatToS16(channels)
    rng = np.random.default_rng(7)
    loud = refused = 0
    for _ in range(RANDOM_PACKETS):
        payload = rng.bytes(int(rng.integers(1, 400)))
        try:
            frames = decoder._context.decode(av.Packet(payload))  # type: ignore[attr-defined]
        except av.error.FFmpegError:
            continue
        for frame in frames:
            ours = decoder._output(frame)  # type: ignore[attr-defined]
            assert ours == b"".join(f.to_ndarray().tobytes() for f in resampler.resample(frame))
            loud += bool(np.abs(frame.to_ndarray()).max() > 1.0)
            refused += converter.convert(frame) is None
    assert decoder.flush() == b"".join(f.to_ndarray().tobytes() for f in resampler.resample(None))
    assert loud > RANDOM_PACKETS // 10
    assert refused > 0


RANDOM_PACKETS = 8_000
