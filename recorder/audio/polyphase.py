"""swresample's own resampling filters applied in numpy, for the two conversions every call pays.

Why: PyAV's ``AudioResampler`` runs a filter graph per 20 ms frame, which costs more than the
arithmetic. For the two default conversions (G.711 8 to 16 kHz, Opus 48 to 16 kHz mono) the
installed libswresample's filter is read once per process (``half_band_taps``, ``third_band``)
and applied as one polyphase matrix product per packet. Each reader checks that the filter it
read has the shape its applier assumes and answers None otherwise; the decoders in
``recorder.audio.pyav`` then keep using swresample. Exactness: the G.711 doubler matches
swresample's integer rounding; the Opus decimator works in float32, as swresample does, within
1 LSB of it (tests/audio pin both).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler

_LAYOUTS: Final = {1: "mono", 2: "stereo"}


class Doubler:
    """2x upsampling of G.711 to s16 mono with swresample's own half-band filter, in numpy.

    ``AudioResampler`` costs about 20 µs a 20 ms G.711 packet at 8 to 16 kHz; this about 5 (56k
    instructions with the table look-up, against 100k for the ``np.convolve`` version before).
    What swresample does for an exact 2x ratio, and so what this does (``half_band_taps`` reads
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
    1/2 of swresample's ``(s + 2**14) >> 15`` rides in the table (``HalfBand.offset``), so
    ``floor`` gives exactly that integer (the offset is a multiple of 2**-16: still exact).
    Clipping, one more call, is only needed when a sample in reach is loud enough for the filter
    to overshoot s16; the payload's bytes tell that without numpy.
    """

    SIDE: Final = 16
    #: Input samples kept between packets: the 32 taps' reach, less the one they step past.
    _SPAN: Final = 2 * SIDE - 1
    #: Plans kept for distinct packet lengths (RTMS sends one length; hostile input many).
    _PLANS: Final = 8

    def __init__(self, half_band: HalfBand, table: npt.NDArray[np.int16]) -> None:
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
class HalfBand:
    """swresample's 8 to 16 kHz filter as ``Doubler`` applies it."""

    #: The 32 odd-sample taps, multiples of 2**-15.
    taps: npt.NDArray[np.float64]
    #: (rows' width, 2 * _BLOCK): output pair j of a row is (even, odd) from its inputs.
    matrix: npt.NDArray[np.float64]
    #: Added to every sample: the even outputs floor back to the sample, the odd ones to
    #: swresample's (s + 2**14) >> 15 (see ``half_band``).
    offset: float
    #: The loudest |sample| with which the filter cannot leave s16.
    quiet: int


class Decimator:
    """48 to 16 kHz mono of float frames (Opus to the default output) with swresample's filter.

    What swresample does for this exact 3:1 ratio, and so what this does (``third_band`` reads
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

    def __init__(self, third_band: ThirdBand, channels: int) -> None:
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
        """Room for ``count`` samples, and the last row's overhang (zeros: see ``Doubler``)."""
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
class ThirdBand:
    """swresample's 48 to 16 kHz filter as ``Decimator`` applies it (scaled to s16)."""

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
def third_band() -> ThirdBand | None:
    """swresample's 48 to 16 kHz float filter, read from its responses to impulses.

    None if what it does is not what ``Decimator`` applies (one output per three inputs, one
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
    return ThirdBand(_frozen(mono), _frozen(stereo), before, after)


def _frozen(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    single = matrix.astype(np.float32)
    single.setflags(write=False)
    return single


@functools.cache
def half_band_taps() -> npt.NDArray[np.float64] | None:
    """swresample's 8 to 16 kHz filter (s16 mono), read from its response to an impulse.

    None if its shape is not what ``Doubler`` applies (even outputs untouched, 32 symmetric taps
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
def half_band() -> HalfBand | None:
    """``half_band_taps`` as ``Doubler``'s polyphase matrix, rounding offset and quiet bound.

    None where the offset trick does not hold (the taps' sum far from 1), as for other taps.
    """
    taps = half_band_taps()
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
    width = -(-(block + 2 * Doubler.SIDE - 1) // block) * block
    matrix = np.zeros((width, 2 * block))
    for pair in range(block):
        matrix[pair + Doubler.SIDE - 1, 2 * pair] = 1.0
        matrix[pair : pair + 2 * Doubler.SIDE, 2 * pair + 1] = taps
    matrix.setflags(write=False)
    # |s| <= 32767 cannot round outside s16: |sample| * sum|taps| <= 32767 is quiet enough.
    quiet = 32_767 * 32_768 // sum(abs(t) for t in whole)
    return HalfBand(taps, matrix, k / 65_536, quiet)
