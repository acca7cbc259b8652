"""PyAV implementations of ``AudioDecoder`` (see ``recorder.audio.decoder`` for the contract).

Everything PyAV raises is translated here into ``DecodeError``; no ``av`` exception type leaves
this module. PyAV pitfalls handled (docs/perf-baseline.md §1):

* No container, so no OpusHead: the Opus decoder is given ``layout`` and ``sample_rate``
  explicitly and reports the 312-sample encoder lookahead as ``delay_samples`` instead of
  applying a pre-skip.
* Opus always decodes at 48 kHz (FFmpeg's native decoder, planar float); an ``AudioResampler``
  brings it to s16 at the output rate, and its held-back tail comes out in ``flush()``. The two
  default conversions (Opus to 16 kHz mono, G.711 8 to 16 kHz) apply swresample's own filters
  in numpy instead (``recorder.audio.polyphase``): a filter graph per frame costs more than the
  arithmetic. So does Opus kept at 48 kHz in its own layout: ``recorder.audio.s16`` converts
  float to s16 exactly as swresample does.
* ``bytes(frame.planes[0])`` is the padded buffer; frames are read with ``to_ndarray()``.
"""

from __future__ import annotations

import functools
from typing import Final

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler

from recorder.audio import polyphase, s16
from recorder.audio.decoder import ALAW, describe_source
from recorder.errors import DecodeError
from recorder.rtms.events import AudioCodec, AudioFormat

#: Encoder lookahead at the codec's own rate (samples per channel), when no container tells us.
CODEC_DELAY: Final = {AudioCodec.OPUS: 312, AudioCodec.G722: 22}

_LAYOUTS: Final = {1: "mono", 2: "stereo"}


class PassthroughDecoder:
    """L16 already in the output format: RTMS L16 is little-endian (perf-baseline §3)."""

    def __init__(self, source: AudioFormat) -> None:
        self._source = source
        self._frame_bytes = 2 * source.channels

    @property
    def source(self) -> AudioFormat:
        return self._source

    @property
    def output_rate(self) -> int:
        return self._source.sample_rate

    @property
    def output_channels(self) -> int:
        return self._source.channels

    @property
    def delay_samples(self) -> int:
        return 0

    @property
    def description(self) -> str:
        return describe_source(self._source)

    def decode(self, payload: bytes) -> bytes:
        if len(payload) % self._frame_bytes:
            raise DecodeError(
                f"L16 payload of {len(payload)} bytes is not whole {self._frame_bytes}-byte frames"
            )
        return payload

    def flush(self) -> bytes:
        return b""


class _Resampling:
    """Shared output side: frames of any format/rate/layout in, packed s16 bytes out."""

    def __init__(self, source: AudioFormat, rate: int, channels: int) -> None:
        self._source = source
        self._rate = rate
        self._channels = channels
        self._resampler = AudioResampler(format="s16", layout=_LAYOUTS[channels], rate=rate)
        #: Decided on the first frame: a decoder's frames all share one format.
        self._direct_known: bool | None = None

    @property
    def source(self) -> AudioFormat:
        return self._source

    @property
    def output_rate(self) -> int:
        return self._rate

    @property
    def output_channels(self) -> int:
        return self._channels

    def _resample(self, frame: AudioFrame | None) -> bytes:
        if frame is not None and self._direct(frame):
            return frame.to_ndarray().tobytes()
        try:
            frames = self._resampler.resample(frame)
        except (av.error.FFmpegError, ValueError) as exc:
            raise DecodeError(f"resampling {self._source.codec.name} failed: {exc}") from exc
        if not frames:
            return b""
        if len(frames) == 1:
            return frames[0].to_ndarray().tobytes()
        return b"".join(f.to_ndarray().tobytes() for f in frames)

    def _direct(self, frame: AudioFrame) -> bool:
        """Skip swresample when the codec already yields the output format (G.722 at 16 kHz,
        G.711 or Opus at their own rate): it would only copy, at several µs a packet."""
        if self._direct_known is None:
            self._direct_known = (
                frame.format.name == "s16"
                and frame.sample_rate == self._rate
                and frame.layout.nb_channels == self._channels
            )
        return self._direct_known

    def flush(self) -> bytes:
        if self._direct_known:
            return b""
        return self._resample(None)


class L16Decoder(_Resampling):
    """L16 at another rate or layout than the output: numpy view, then swresample."""

    def __init__(self, source: AudioFormat, rate: int, channels: int) -> None:
        super().__init__(source, rate, channels)
        self._frame_bytes = 2 * source.channels
        self._layout = _LAYOUTS[source.channels]

    @property
    def delay_samples(self) -> int:
        return 0

    @property
    def description(self) -> str:
        return describe_source(self._source)

    def decode(self, payload: bytes) -> bytes:
        if not payload or len(payload) % self._frame_bytes:
            raise DecodeError(
                f"L16 payload of {len(payload)} bytes is not whole {self._frame_bytes}-byte frames"
            )
        samples = np.frombuffer(payload, dtype="<i2").reshape(1, -1)
        frame = AudioFrame.from_ndarray(samples, format="s16", layout=self._layout)
        frame.sample_rate = self._source.sample_rate
        return self._resample(frame)


class G711Decoder(_Resampling):
    """G.711 through a 256-entry table (1.7 µs a packet instead of PyAV's 6, perf-baseline §2).

    The table is PyAV's own decode of every code value, so the output is bit-identical to the
    ``pcm_alaw`` / ``pcm_mulaw`` decoders (checked in tests); only resampling goes through
    swresample, except 8 to 16 kHz mono (the default): ``polyphase.Doubler`` applies
    swresample's filter.
    """

    def __init__(self, source: AudioFormat, rate: int, channels: int, *, g711_law: str) -> None:
        super().__init__(source, rate, channels)
        self._description = describe_source(source, g711_law)
        self._table = _g711_table(g711_law)
        self._resampled = (rate, channels) != (source.sample_rate, 1)
        #: At the source's own rate: the table's low and high bytes as ``bytes.translate``
        #: maps, interleaved by slice assignment (0.9 µs a packet against numpy's 1.9).
        low, high = self._table.view(np.uint8).reshape(256, 2).T
        self._low, self._high = low.tobytes(), high.tobytes()
        half_band = (
            polyphase.half_band() if (rate, channels) == (2 * source.sample_rate, 1) else None
        )
        #: 8 kHz to 16 kHz mono (the default): swresample's own filter, applied here.
        self._doubler = polyphase.Doubler(half_band, self._table) if half_band is not None else None

    @property
    def delay_samples(self) -> int:
        return 0

    @property
    def description(self) -> str:
        return self._description

    def decode(self, payload: bytes) -> bytes:
        if not payload:
            raise DecodeError("empty G.711 payload")
        if self._doubler is not None:
            if self._doubler.started or len(payload) > polyphase.Doubler.SIDE:
                return self._doubler.push(payload)
            # Too short to mirror the start from: swresample does it, for the whole track.
            self._doubler = None
        if not self._resampled:
            pcm = bytearray(2 * len(payload))
            pcm[0::2] = payload.translate(self._low)
            pcm[1::2] = payload.translate(self._high)
            return bytes(pcm)
        samples = self._table[np.frombuffer(payload, dtype=np.uint8)]
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._source.sample_rate
        return self._resample(frame)

    def flush(self) -> bytes:
        if self._doubler is not None:
            return self._doubler.flush()
        return super().flush()


@functools.cache
def _g711_table(law: str) -> npt.NDArray[np.int16]:
    context = av.CodecContext.create("pcm_alaw" if law == ALAW else "pcm_mulaw", "r")
    assert isinstance(context, AudioCodecContext)
    context.sample_rate = 8_000
    context.layout = "mono"
    frames = context.decode(av.Packet(bytes(range(256))))
    table = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype("<i2")
    if table.shape != (256,):
        raise DecodeError(f"G.711 table has {table.shape} entries, not 256")
    table.setflags(write=False)
    return table


class CodecDecoder(_Resampling):
    """G.711 (A-law, mu-law), G.722 and Opus through an FFmpeg decoder without a container."""

    def __init__(self, source: AudioFormat, rate: int, channels: int, *, g711_law: str) -> None:
        super().__init__(source, rate, channels)
        self._description = describe_source(source, g711_law)
        if source.codec == AudioCodec.G711:
            name = "pcm_alaw" if g711_law == ALAW else "pcm_mulaw"
        elif source.codec == AudioCodec.G722:
            name = "g722"
        else:
            # FFmpeg's own Opus decoder, not the libopus wrapper (issue 13, measured again on
            # the speech fixtures, 20 ms packets to 16 kHz mono s16): native + swresample
            # 46-49 µs a packet (decode alone 23-25), libopus + swresample 55. Neither decodes
            # at 16 kHz: both force 48 kHz whatever ``sample_rate`` asks. libopus is also not
            # within 1 LSB of what this records (up to 3045 LSB apart on mono SILK speech, a
            # sample off, and 17-39 on stereo), so it would change recordings for no gain;
            # swresample to float and a numpy conversion gives the same samples for about
            # the same cost. The output sits exactly 312 samples (at 48 kHz) behind the
            # packets in SILK mode too. ``version_string`` names this choice. To 16 kHz mono
            # (the default) ``polyphase.Decimator`` then applies swresample's own filter in numpy,
            # within 1 LSB of it and cheaper (PyAV's resampler runs a filter graph a frame).
            name = "opus"
        try:
            context = av.CodecContext.create(name, "r")
            assert isinstance(context, AudioCodecContext)
            context.sample_rate = source.sample_rate
            context.layout = _LAYOUTS[source.channels]
            context.open()
        except av.error.FFmpegError as exc:
            raise DecodeError(f"cannot open the {name} decoder: {exc}") from exc
        self._context = context
        third_band = None
        if source.codec == AudioCodec.OPUS and (rate, channels) == (16_000, 1):
            third_band = polyphase.third_band()
        #: Opus to 16 kHz mono (the default): swresample's own filter, applied here.
        self._decimator = polyphase.Decimator(third_band, source.channels) if third_band else None
        #: Opus at its own rate and layout (the shipped output): swresample's conversion to
        #: s16, applied here; frames it refuses (NaN, far beyond full scale) still go to it.
        self._s16 = (
            s16.FloatToS16(channels)
            if source.codec == AudioCodec.OPUS
            and (rate, channels) == (source.sample_rate, source.channels)
            and s16.exact()
            else None
        )
        codec_delay = CODEC_DELAY.get(source.codec, 0)
        self._delay = round(codec_delay * rate / source.sample_rate)

    @property
    def delay_samples(self) -> int:
        return self._delay

    @property
    def description(self) -> str:
        return self._description

    def decode(self, payload: bytes) -> bytes:
        if not payload:
            raise DecodeError(f"empty {self._source.codec.name} payload")
        try:
            frames = self._context.decode(av.Packet(payload))
        except (av.error.FFmpegError, ValueError) as exc:
            raise DecodeError(f"{self._source.codec.name} packet did not decode: {exc}") from exc
        if len(frames) == 1:
            return self._output(frames[0])
        return b"".join(self._output(frame) for frame in frames)

    def _output(self, frame: AudioFrame) -> bytes:
        decimator = self._decimator
        if decimator is not None:
            if decimator.accepts(frame):
                return decimator.push(frame)
            if not decimator.started:
                # Not what it takes (or too short to mirror the start from): swresample does
                # it, for the whole track.
                self._decimator = None
            else:
                raise DecodeError(f"{frame.format.name} {frame.sample_rate} Hz frame mid-track")
        converter = self._s16
        if converter is not None and frame.sample_rate == self._rate:
            data = converter.convert(frame)
            if data is not None:
                return data
        return self._resample(frame)

    def flush(self) -> bytes:
        if self._decimator is not None:
            return self._decimator.flush()
        return super().flush()


@functools.cache
def version_string() -> str:
    """``pyav=18.1.0 ffmpeg=8.1.2 libavcodec=62.28.102 libswresample=6.3.102 opus=...``.

    Opus is decoded by FFmpeg's native decoder (part of libavcodec), so no libopus version
    applies; G.711 by a table derived from libavcodec's ``pcm_alaw``/``pcm_mulaw``.
    """
    libs = av.library_versions
    parts = [
        f"pyav={av.__version__}",
        f"ffmpeg={av.ffmpeg_version_info}",
        "libavcodec={}.{}.{}".format(*libs["libavcodec"]),
        "libswresample={}.{}.{}".format(*libs["libswresample"]),
        # The Opus path chosen in issue 13 (see ``CodecDecoder``): FFmpeg's native decoder
        # at 48 kHz, then swresample to the output rate.
        "opus=ffmpeg-native-48k-swresample",
        "g711-8k-16k=swresample-taps-numpy",
        # Opus to 16 kHz mono (the default output): swresample's filter applied in numpy,
        # within 1 LSB of swresample (``polyphase.Decimator``); other outputs still go through it.
        "opus-48k-16k-mono=swresample-taps-numpy",
        # Opus at 48 kHz in its own layout (the shipped output): swresample's float to s16
        # conversion in numpy, bit-exact (``s16.FloatToS16``), unless this libswresample
        # rounds otherwise.
        "opus-48k-s16=" + ("numpy-rint-clip" if s16.exact() else "swresample"),
    ]
    return " ".join(parts)
