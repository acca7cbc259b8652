"""Planar float frames to packed s16 at the same rate and layout, as swresample converts them.

Why: Opus decodes to 48 kHz planar float, and the shipped output keeps the source rate and
layout, so all that is left is a format conversion; PyAV's ``AudioResampler`` runs a filter
graph per 20 ms frame for it (about 15 µs), this a few numpy calls on preallocated buffers.

What swresample does, and so what this does: with equal rates and layouts it converts straight
(``swri_audio_convert``, nothing held back, nothing to flush). Mono goes through
``ff_float_to_int16_a_sse2``, stereo through ``ff_pack_2ch_float_to_int16_a_sse2``: multiply by
32768, ``cvtps2dq`` (round half to even), ``packssdw`` (saturate to s16); samples past the last
multiple of 16 in a frame through the C ``av_clip_int16(lrintf(x * 32768))``, which agrees with
the SIMD path wherever ``x * 32768`` fits an int32. Multiplying by 2**15 is exact in float32,
so ``rint`` and a clip give those same samples.

Where the two paths disagree, so does swresample with itself: for NaN, infinities and
|x| >= 65536 (x * 32768 past int32) the SIMD path writes -32768, the C tail 0 or a wrapped value
(``lrintf`` returns a long, ``av_clip_int16`` takes an int). ``FloatToS16.convert`` does not
take a frame holding such a sample (it answers None) and the decoder hands that frame to
swresample, which keeps nothing between frames at equal rates: every frame is written exactly as
before. Speech never gets there; hostile packets do (random bytes: about a third of the frames
they decode to go past full scale, one in a thousand past 65536 times it; tests/audio/test_s16.py).
The loudest sample is found from the floats' bits, in integers, so no input raises a floating
point warning.

``exact()`` checks once a process that the installed libswresample still rounds this way; the
decoders keep using swresample if it does not.
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np
import numpy.typing as npt
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler

_LAYOUTS: Final = {1: "mono", 2: "stereo"}
_SCALE: Final = np.float32(32_768.0)
#: Clipping bounds as float32 scalars: a Python float costs a conversion every call.
_S16_MAX: Final = np.float32(32_767.0)
_S16_MIN: Final = np.float32(-32_768.0)


def _magnitude_bits(value: float) -> int:
    """A float32's bits shifted left by one: the sign gone, ordered as |value| is (NaN and the
    infinities above every finite value)."""
    return int(np.array(value, dtype=np.float32).view(np.uint32)) << 1 & 0xFFFF_FFFF


#: A frame with a sample this loud or louder, or NaN, goes to swresample: |x| * 32768 no
#: longer fits an int32 there and its SIMD body and C tail disagree (see the module doc).
_REFUSED: Final = _magnitude_bits(65_536.0)
#: Every sample quieter than this rounds inside s16: no clipping needed (most speech frames).
_UNCLIPPED: Final = _magnitude_bits(32_767.5 / 32_768.0)
_ONE: Final = np.uint32(1)
_FLOAT32: Final = np.dtype(np.float32)
#: ``exact()``'s last samples (in LSB), past the SIMD blocks.
_TAIL: Final = (
    *(-0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5),
    *(32_766.5, 32_767.5, 32_768.0, -32_767.5, -32_768.5, -32_769.0),
)


class FloatToS16:
    """fltp frames of ``channels`` channels to packed (interleaved) s16 bytes, or None when a
    frame is not one this converts exactly as swresample does (see the module doc)."""

    #: Plans kept for distinct frame lengths: Opus frames come in a few sizes.
    _PLANS: Final = 16

    def __init__(self, channels: int) -> None:
        self._channels = channels
        self._plans: dict[int, _Plan] = {}

    def convert(self, frame: AudioFrame) -> bytes | None:
        count = frame.samples
        if frame.format.name != "fltp" or frame.layout.nb_channels != self._channels or count == 0:
            return None
        plan = self._plans.get(count) or self._plan(count)
        scaled = plan.scaled
        # The planes straight: ``to_ndarray`` stacks them through numpy, 3 µs a frame; they
        # may be padded, hence ``count``. Positional arguments: ``frombuffer`` parses keywords
        # slowly (0.5 µs a call against 0.2).
        planes = frame.planes
        if self._channels == 1:
            samples = np.frombuffer(memoryview(planes[0]), _FLOAT32, count)
        else:
            for plane, column in zip(planes, plan.columns, strict=True):
                column[...] = np.frombuffer(memoryview(plane), _FLOAT32, count)
            samples = scaled
        # The loudest sample's magnitude from its bits: integer operations, so no floating
        # point overflow warning whatever a hostile packet decodes to, and NaN counted in.
        np.left_shift(samples.view(np.uint32), _ONE, out=plan.bits)
        loudest = np.maximum.reduce(plan.bits)
        if loudest >= _REFUSED:
            return None
        # Exact: a power of two, and no sample is loud enough to overflow.
        np.multiply(samples, _SCALE, out=scaled)
        np.rint(scaled, out=scaled)
        if loudest >= _UNCLIPPED:
            # Two ufuncs: ``np.clip`` goes through Python wrappers, twice their cost here.
            np.minimum(scaled, _S16_MAX, out=scaled)
            np.maximum(scaled, _S16_MIN, out=scaled)
        plan.out[...] = scaled
        return bytes(plan.data)

    def _plan(self, count: int) -> _Plan:
        if len(self._plans) >= self._PLANS:
            self._plans.clear()
        plan = _Plan(count, self._channels)
        self._plans[count] = plan
        return plan


class _Plan:
    """Buffers for one frame length (made once, reused)."""

    __slots__ = ("bits", "columns", "data", "out", "scaled")

    def __init__(self, count: int, channels: int) -> None:
        interleaved = np.empty((count, channels), dtype=np.float32)
        #: Channel c's samples land in column c: interleaved as they are written.
        self.columns = [interleaved[:, c] for c in range(channels)]
        self.scaled: npt.NDArray[np.float32] = interleaved.reshape(-1)
        self.bits = np.empty(count * channels, dtype=np.uint32)
        self.out = np.empty(count * channels, dtype="<i2")
        self.data = self.out.data.cast("B")


#: Half LSBs ``exact()`` probes by default: about zero, and about either clipping edge (a
#: tenth of every one from beyond -full scale to beyond +full scale, which tests/audio probes).
PROBED: Final = (range(-4_096, 4_097), range(63_488, 66_001), range(-66_000, -63_487))


@functools.cache
def exact(half_lsbs: tuple[range, ...] = PROBED) -> bool:
    """Whether ``FloatToS16`` gives exactly what the installed libswresample gives: each of
    ``half_lsbs`` (ties both ways, and the floats either side of each), and -0.0, mono and
    stereo, through its SIMD body and its C tail. About 5 ms, once a process."""
    steps = np.concatenate([np.arange(span.start, span.stop) for span in half_lsbs])
    ties = (steps / 65_536.0).astype(np.float32)
    samples = np.concatenate(
        [ties, np.nextafter(ties, np.float32(-1.0)), np.nextafter(ties, np.float32(1.0))]
    )
    # Whole SIMD blocks, then 15 samples for the C path: ties about zero and both edges.
    body = np.concatenate([samples, np.zeros(-len(samples) % 16, dtype=np.float32)])
    tail = np.array(_TAIL, dtype=np.float32) / _SCALE
    samples = np.concatenate([body, tail])
    for channels in (1, 2):
        planes = np.stack([samples, samples[::-1]][:channels])
        frame = AudioFrame.from_ndarray(planes, format="fltp", layout=_LAYOUTS[channels])
        frame.sample_rate = 48_000
        resampler = AudioResampler(format="s16", layout=_LAYOUTS[channels], rate=48_000)
        theirs = b"".join(f.to_ndarray().tobytes() for f in resampler.resample(frame))
        if resampler.resample(None) or FloatToS16(channels).convert(frame) != theirs:
            return False
    return True
