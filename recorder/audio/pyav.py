"""PyAV implementations of ``AudioDecoder`` (see ``recorder.audio.decoder`` for the contract).

Everything PyAV raises is translated here into ``DecodeError``; no ``av`` exception type leaves
this module. PyAV pitfalls handled (docs/perf-baseline.md §1):

* No container, so no OpusHead: the Opus decoder is given ``layout`` and ``sample_rate``
  explicitly and reports the 312-sample encoder lookahead as ``delay_samples`` instead of
  applying a pre-skip.
* Opus always decodes at 48 kHz (FFmpeg's native decoder, planar float); an ``AudioResampler``
  brings it to s16 at the output rate, and its held-back tail comes out in ``flush()``.
* ``bytes(frame.planes[0])`` is the padded buffer; frames are read with ``to_ndarray()``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler

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
    swresample, except 8 to 16 kHz mono (the default): ``_Doubler`` applies swresample's filter.
    """

    def __init__(self, source: AudioFormat, rate: int, channels: int, *, g711_law: str) -> None:
        super().__init__(source, rate, channels)
        self._description = describe_source(source, g711_law)
        self._table = _g711_table(g711_law)
        self._resampled = (rate, channels) != (source.sample_rate, 1)
        half_band = _half_band() if (rate, channels) == (2 * source.sample_rate, 1) else None
        #: 8 kHz to 16 kHz mono (the default): swresample's own filter, applied here.
        self._doubler = _Doubler(half_band, self._table) if half_band is not None else None

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
            if self._doubler.started or len(payload) > _Doubler.SIDE:
                return self._doubler.push(payload)
            # Too short to mirror the start from: swresample does it, for the whole track.
            self._doubler = None
        samples = self._table[np.frombuffer(payload, dtype=np.uint8)]
        if not self._resampled:
            return samples.tobytes()
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._source.sample_rate
        return self._resample(frame)

    def flush(self) -> bytes:
        if self._doubler is not None:
            return self._doubler.flush()
        return super().flush()


class _Doubler:
    """2x upsampling of G.711 to s16 mono with swresample's own half-band filter, in numpy.

    ``AudioResampler`` costs about 20 µs a 20 ms G.711 packet at 8 to 16 kHz; this about 5 (56k
    instructions with the table look-up, against 100k for the ``np.convolve`` version before).
    What swresample does for an exact 2x ratio, and so what this does (``_half_band_taps`` reads
    the taps out of the installed libswresample): every even output sample is the input sample,
    every odd one a 32-tap symmetric filter over the 16 input samples either side; the stream
    starts and ends mirrored; the last 16 input samples are held back until more arrive (the
    first chunk is 16 samples short, ``flush()`` hands them out), so the output is time-aligned
    exactly like swresample's. swresample rounds its sums differently (this sums exactly and
    rounds as its integer path would): about 2-3% of the samples of speech differ from its output
    by 1 (of 32768), near full scale by up to 4.

    How, at a few numpy calls a packet (their fixed cost, not the arithmetic, is what a
    160-sample packet pays for): the G.711 codes are looked up straight into a float64 buffer
    behind the 31 samples the filter still needs; one matrix product of overlapping
    ``_BLOCK``-sample rows of that buffer (a strided view over it) with a precomputed polyphase
    matrix yields the output already interleaved, even and odd samples; floor and a cast make it
    s16. Exactness: the taps are multiples of 2**-15 and the samples integers, so every product
    and partial sum is exact in float64 whatever order BLAS adds them in; the rounding constant
    1/2 of swresample's ``(s + 2**14) >> 15`` rides in the table (``_HalfBand.offset``), so
    ``floor`` gives exactly that integer (the offset is a multiple of 2**-16: still exact).
    Clipping, one more call, is only needed when a sample in reach is loud enough for the filter
    to overshoot s16; the payload's bytes tell that without numpy.
    """

    SIDE: Final = 16
    #: Input samples kept between packets: the 32 taps' reach, less the one they step past.
    _SPAN: Final = 2 * SIDE - 1
    #: Plans kept for distinct packet lengths (RTMS sends one length; hostile input many).
    _PLANS: Final = 8

    def __init__(self, half_band: _HalfBand, table: npt.NDArray[np.int16]) -> None:
        self._matrix = half_band.matrix
        self._table = table.astype(np.float64) + half_band.offset
        #: Codes whose sample is too quiet to make the filter overshoot, deleted to test a payload.
        quiet = np.abs(table.astype(np.int64)) <= half_band.quiet
        self._quiet = bytes(np.flatnonzero(quiet).tolist())
        self._buffer = np.zeros(0)
        self._plans: dict[int, _Plan] = {}
        self._grow(4 * 160)
        self._started = False
        #: The samples held back may include a loud one (conservative).
        self._loud_history = True

    @property
    def started(self) -> bool:
        return self._started

    def push(self, payload: bytes) -> bytes:
        """More than ``SIDE`` codes the first time (the start is mirrored from them)."""
        count = len(payload)
        if not self._started:
            return self._start(payload)
        plan = self._plans.get(count) or self._plan(count)
        self._table.take(np.frombuffer(payload, dtype=np.uint8), None, plan.fresh, "clip")
        loud = bool(payload.translate(None, self._quiet))
        data = self._emit(plan, clip=loud or self._loud_history)
        self._loud_history = loud or (self._loud_history and count < self._SPAN)
        self._buffer[: self._SPAN] = plan.history
        return data

    def flush(self) -> bytes:
        if not self._started:
            return b""
        self._started = False
        buffer, side, span = self._buffer, self.SIDE, self._SPAN
        # The end is mirrored onto itself: the last input sample is used twice, as swresample.
        buffer[span : span + side] = buffer[span - 1 : span - side - 1 : -1]
        return self._emit(self._plans.get(side) or self._plan(side), clip=True)

    def _start(self, payload: bytes) -> bytes:
        samples = self._table[np.frombuffer(payload, dtype=np.uint8)]
        side, count = self.SIDE, len(payload) - self.SIDE
        self._grow(len(payload))
        buffer = self._buffer
        buffer[: side - 1] = samples[side - 1 : 0 : -1]
        buffer[side - 1 : side - 1 + len(samples)] = samples
        self._started = True
        self._loud_history = True
        plan = self._plans.get(count) or self._plan(count)
        data = self._emit(plan, clip=True)
        buffer[: self._SPAN] = plan.history
        return data

    def _emit(self, plan: _Plan, *, clip: bool) -> bytes:
        np.dot(plan.rows, self._matrix, out=plan.product)
        used = plan.used
        if clip:
            np.clip(used, -32_768.0, 32_767.0, out=used)
        np.floor(used, used)
        plan.out[...] = used
        return bytes(plan.data)

    def _plan(self, count: int) -> _Plan:
        self._grow(count)
        if len(self._plans) >= self._PLANS:
            self._plans.clear()
        plan = _Plan(self._buffer, count, self._SPAN, len(self._matrix))
        self._plans[count] = plan
        return plan

    def _grow(self, count: int) -> None:
        """Room for ``count`` fresh samples after the history, and the rows' overhang."""
        size = self._SPAN + count + len(self._matrix)
        if len(self._buffer) >= size:
            return
        # Zeros, not garbage: rows overhanging the fresh samples only ever meet zero weights,
        # but a NaN there would still poison the product.
        buffer = np.zeros(2 * size)
        buffer[: len(self._buffer)] = self._buffer
        self._buffer = buffer
        self._plans.clear()


class _Plan:
    """Views into the doubler's buffer for one packet length (made once, reused)."""

    __slots__ = ("data", "fresh", "history", "out", "product", "rows", "used")

    def __init__(self, buffer: npt.NDArray[np.float64], count: int, span: int, width: int) -> None:
        block = _BLOCK
        blocks = -(-count // block)
        #: Row r is buffer[r * block :][:width]: the inputs of output pairs r*block .. +block-1.
        self.rows = np.ndarray(
            (blocks, width), dtype=np.float64, buffer=buffer, strides=(8 * block, 8)
        )
        self.product = np.empty((blocks, 2 * block))
        self.used = self.product.reshape(-1)[: 2 * count]
        self.out = np.empty(2 * count, dtype="<i2")
        self.data = self.out.data.cast("B")
        self.fresh = buffer[span : span + count]
        self.history = buffer[count : count + span]


#: Output pairs per row of the polyphase product (8 measured cheapest against 16 and 32).
_BLOCK: Final = 8


@dataclass(frozen=True, slots=True)
class _HalfBand:
    """swresample's 8 to 16 kHz filter as ``_Doubler`` applies it."""

    #: The 32 odd-sample taps, multiples of 2**-15.
    taps: npt.NDArray[np.float64]
    #: (rows' width, 2 * _BLOCK): output pair j of a row is (even, odd) from its inputs.
    matrix: npt.NDArray[np.float64]
    #: Added to every sample: the even outputs floor back to the sample, the odd ones to
    #: swresample's (s + 2**14) >> 15 (see ``_half_band``).
    offset: float
    #: The loudest |sample| with which the filter cannot leave s16.
    quiet: int


class _Decimator:
    """48 to 16 kHz mono of float frames (Opus to the default output) with swresample's filter.

    What swresample does for this exact 3:1 ratio, and so what this does (``_third_band`` reads
    the filter out of the installed libswresample, as float): stereo is mixed down by 1/2 a
    channel; output m weighs input 3m-49 .. 3m+50 (100 taps); the stream starts mirrored about
    its first sample and ends mirrored onto its last; input not yet reached by a whole window is
    held back (the first chunk is 16 samples short, ``flush()`` hands them out), so the chunks
    are exactly swresample's. Both sum in float32 (in different orders) and round to s16 to
    nearest: the output is within 1 (of 32768) of swresample's and almost always equal (3 samples
    in 107 200 of speech differ, checked in tests). The product is the doubler's: one matrix
    product of overlapping rows of a float32 buffer with a precomputed polyphase matrix, in place
    of PyAV's ``AudioResampler``, which runs a filter graph per frame.
    """

    #: Plans kept for distinct (held-back, frame) lengths: Opus frames come in six sizes.
    _PLANS: Final = 16

    def __init__(self, third_band: _ThirdBand, channels: int) -> None:
        self._band = third_band
        self._matrix = third_band.stereo if channels == 2 else third_band.mono
        self._channels = channels
        self._buffer = np.zeros(0, dtype=np.float32)
        self._plans: dict[tuple[int, int], _DecimationPlan] = {}
        self._grow(4 * 960)
        #: Samples held back at the start of the buffer; None before the first frame.
        self._held: int | None = None

    @property
    def started(self) -> bool:
        return self._held is not None

    def accepts(self, frame: AudioFrame) -> bool:
        """A frame this can take: 48 kHz float planar of the track's layout, and the first one
        long enough to mirror the start from."""
        return (
            frame.format.name == "fltp"
            and frame.sample_rate == 48_000
            and frame.layout.nb_channels == self._channels
            and (self._held is not None or frame.samples > self._band.before)
        )

    def push(self, frame: AudioFrame) -> bytes:
        count = frame.samples
        # The planes straight: ``to_ndarray`` stacks them through numpy, 3 µs a frame.
        planes = frame.planes
        left = np.frombuffer(memoryview(planes[0]), dtype=np.float32, count=count)
        right = (
            np.frombuffer(memoryview(planes[1]), dtype=np.float32, count=count)
            if len(planes) > 1
            else None
        )
        if self._held is None:
            # Mirrored about the first sample: input -k is input k.
            before = self._band.before
            self._grow(before + count)
            mirrored = slice(before, 0, -1)
            self._mix(
                left[mirrored], None if right is None else right[mirrored], self._buffer[:before]
            )
            self._held = before
        plan = self._plans.get((self._held, count)) or self._plan(self._held, count)
        self._mix(left, right, plan.fresh)
        data = self._emit(plan)
        self._held = plan.kept
        return data

    def flush(self) -> bytes:
        if self._held is None:
            return b""
        held, after = self._held, self._band.after
        self._held = None
        self._grow(held + after)
        buffer = self._buffer
        # Mirrored onto the last sample: it is used twice, as swresample does.
        buffer[held : held + after] = buffer[held - 1 : held - after - 1 : -1]
        plan = self._plans.get((held, after)) or self._plan(held, after)
        return self._emit(plan)

    def _mix(
        self,
        left: npt.NDArray[np.float32],
        right: npt.NDArray[np.float32] | None,
        out: npt.NDArray[np.float32],
    ) -> None:
        if right is None:
            out[...] = left
        else:
            # The downmix's 1/2 is in the matrix.
            np.add(left, right, out=out)

    def _emit(self, plan: _DecimationPlan) -> bytes:
        """The outputs the buffer holds whole windows for; what they leave moves to its start."""
        if plan.rows is None:
            return b""
        np.dot(plan.rows, self._matrix, out=plan.product)
        used = plan.used
        np.rint(used, out=used)
        # Two ufuncs: ``np.clip`` goes through Python wrappers, twice their cost here.
        np.minimum(used, _S16_MAX, out=used)
        np.maximum(used, _S16_MIN, out=used)
        plan.out[...] = used
        self._buffer[: plan.kept] = plan.history
        return bytes(plan.data)

    def _plan(self, held: int, count: int) -> _DecimationPlan:
        self._grow(held + count)
        if len(self._plans) >= self._PLANS:
            self._plans.clear()
        plan = _DecimationPlan(self._buffer, held, count, self._band.window, len(self._matrix))
        self._plans[held, count] = plan
        return plan

    def _grow(self, count: int) -> None:
        """Room for ``count`` samples, and the last row's overhang (zeros: see ``_Doubler``)."""
        size = count + len(self._matrix)
        if len(self._buffer) >= size:
            return
        buffer = np.zeros(2 * size, dtype=np.float32)
        buffer[: len(self._buffer)] = self._buffer
        self._buffer = buffer
        self._plans.clear()


#: Clipping bounds as float32 scalars: a Python float costs a conversion every call.
_S16_MAX: Final = np.float32(32_767.0)
_S16_MIN: Final = np.float32(-32_768.0)


class _DecimationPlan:
    """Views into the decimator's buffer for one (held-back, fresh) length pair."""

    __slots__ = ("data", "fresh", "history", "kept", "out", "product", "rows", "used")

    def __init__(
        self, buffer: npt.NDArray[np.float32], held: int, count: int, window: int, width: int
    ) -> None:
        block = _BLOCK
        total = held + count
        self.fresh = buffer[held:total]
        #: Outputs whose whole window (``window`` inputs, 3 apart) is in the buffer.
        outputs = max(0, (total - window) // 3 + 1)
        self.kept = total - 3 * outputs
        self.history = buffer[3 * outputs : total]
        self.rows: npt.NDArray[np.float32] | None = None
        if not outputs:
            return
        blocks = -(-outputs // block)
        self.rows = np.ndarray(
            (blocks, width), dtype=np.float32, buffer=buffer, strides=(4 * 3 * block, 4)
        )
        self.product = np.empty((blocks, block), dtype=np.float32)
        self.used = self.product.reshape(-1)[:outputs]
        self.out = np.empty(outputs, dtype="<i2")
        self.data = self.out.data.cast("B")


@dataclass(frozen=True, slots=True)
class _ThirdBand:
    """swresample's 48 to 16 kHz filter as ``_Decimator`` applies it (scaled to s16)."""

    #: (rows' width, _BLOCK): output j of a row weighs the row's inputs 3j .. 3j + window - 1.
    mono: npt.NDArray[np.float32]
    #: The same with the downmix's 1/2 a channel folded in.
    stereo: npt.NDArray[np.float32]
    #: Inputs an output weighs before and after its own (49 and 50).
    before: int
    after: int

    @property
    def window(self) -> int:
        return self.before + 1 + self.after


@functools.cache
def _third_band() -> _ThirdBand | None:
    """swresample's 48 to 16 kHz float filter, read from its responses to impulses.

    None if what it does is not what ``_Decimator`` applies (one output per three inputs, one
    filter shifted by three inputs an output, mirrored ends): swresample keeps being used.
    """
    length = 3 * 640
    at = 3 * 320

    def response(
        channel_gains: tuple[float, ...], shift: int, fmt: str = "flt"
    ) -> npt.NDArray[np.float64]:
        impulse = np.zeros((len(channel_gains), length), dtype=np.float32)
        impulse[:, at + shift] = channel_gains
        layout = _LAYOUTS[len(channel_gains)]
        frame = AudioFrame.from_ndarray(impulse, format="fltp", layout=layout)
        frame.sample_rate = 48_000
        resampler = AudioResampler(format=fmt, layout="mono", rate=16_000)
        frames = [*resampler.resample(frame), *resampler.resample(None)]
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float64)

    # taps[d] weighs input 3m - d for output m; impulses at three phases fill every d.
    taps: dict[int, float] = {}
    for phase in range(3):
        out = response((1.0,), phase)
        if len(out) != length // 3:
            return None
        for index in np.flatnonzero(out):
            taps[3 * int(index) - (at + phase)] = float(out[index])
    if not taps:
        return None
    before, after = max(taps), -min(taps)
    if not (0 < before < 3 * 64 and 0 < after < 3 * 64):
        return None
    # One filter, shifted by three inputs an output.
    later = response((1.0,), 3)
    expected = np.zeros(length // 3)
    for d, tap in taps.items():
        m, rest = divmod(at + 3 + d, 3)
        if rest == 0 and 0 <= m < len(expected):
            expected[m] = tap
    if not np.array_equal(later, expected):
        return None
    # The downmix to s16 (not float: it is normalised there) weighs each channel by 1/2.
    both = response((0.5, 0.5), 0, "s16")
    single = response((0.5,), 0, "s16")
    if not np.array_equal(both, single):
        return None
    stereo_gain = 0.5
    block = _BLOCK
    window = before + 1 + after
    width = 3 * (block - 1) + window
    mono = np.zeros((width, block))
    for j in range(block):
        for d, tap in taps.items():
            mono[3 * j + before - d, j] = tap * 32_768.0
    stereo = mono * stereo_gain
    return _ThirdBand(_frozen(mono), _frozen(stereo), before, after)


def _frozen(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    single = matrix.astype(np.float32)
    single.setflags(write=False)
    return single


@functools.cache
def _half_band_taps() -> npt.NDArray[np.float64] | None:
    """swresample's 8 to 16 kHz filter (s16 mono), read from its response to an impulse.

    None if its shape is not what ``_Doubler`` applies (even outputs untouched, 32 symmetric taps
    for the odd ones): a libswresample that resamples differently keeps being used instead.
    """
    length, at = 256, 128
    impulse = np.zeros((1, length), dtype=np.int16)
    impulse[0, at] = -32_768
    frame = AudioFrame.from_ndarray(impulse, format="s16", layout="mono")
    frame.sample_rate = 8_000
    resampler = AudioResampler(format="s16", layout="mono", rate=16_000)
    frames = [*resampler.resample(frame), *resampler.resample(None)]
    response = -np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int64)
    if len(response) != 2 * length:
        return None
    centre = 2 * at
    even = response[0::2].copy()
    odd = response[1::2]
    # The odd output between inputs n and n+1 weighs input n-15 .. n+16.
    taps = odd[at - 16 : at + 16][::-1] / 32_768.0  # exact: a power of two
    even[at] -= 32_768
    outside = np.delete(odd, np.arange(at - 16, at + 16))
    if even.any() or outside.any() or response[centre] != 32_768:
        return None
    if not np.array_equal(taps, taps[::-1]):
        return None
    taps.setflags(write=False)
    return taps


@functools.cache
def _half_band() -> _HalfBand | None:
    """``_half_band_taps`` as ``_Doubler``'s polyphase matrix, rounding offset and quiet bound.

    None where the offset trick does not hold (the taps' sum far from 1), as for other taps.
    """
    taps = _half_band_taps()
    if taps is None:
        return None
    whole = [round(t * 32_768) for t in taps]  # exact: the taps are multiples of 2**-15
    total = sum(whole)
    # Every sample carries offset c = k / 2**16: an even output floors back to its sample
    # (0 <= c < 1); an odd output is s + c * total / 2**15, and on s's 2**-15 grid
    # floor(s + d) == floor(s + 1/2) for every d in [1/2, 1/2 + 2**-15), i.e. for
    # k * total in [2**30, 2**30 + 2**16): the smallest such k, if the taps allow one.
    k = -(-(1 << 30) // total) if total > 0 else 0
    if not (0 < k < 1 << 16 and k * total < (1 << 30) + (1 << 16)):
        return None
    block = _BLOCK
    width = -(-(block + 2 * _Doubler.SIDE - 1) // block) * block
    matrix = np.zeros((width, 2 * block))
    for pair in range(block):
        matrix[pair + _Doubler.SIDE - 1, 2 * pair] = 1.0
        matrix[pair : pair + 2 * _Doubler.SIDE, 2 * pair + 1] = taps
    matrix.setflags(write=False)
    # |s| <= 32767 cannot round outside s16: |sample| * sum|taps| <= 32767 is quiet enough.
    quiet = 32_767 * 32_768 // sum(abs(t) for t in whole)
    return _HalfBand(taps, matrix, k / 65_536, quiet)


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
            # (the default) ``_Decimator`` then applies swresample's own filter in numpy,
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
            third_band = _third_band()
        #: Opus to 16 kHz mono (the default): swresample's own filter, applied here.
        self._decimator = _Decimator(third_band, source.channels) if third_band else None
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
        # within 1 LSB of swresample (``_Decimator``); other outputs still go through it.
        "opus-48k-16k-mono=swresample-taps-numpy",
    ]
    return " ".join(parts)
