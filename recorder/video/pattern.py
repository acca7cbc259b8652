"""A moving H.264 test pattern with the frame number burned in, and the reader of that number.

The simulator streams these access units as RTMS video and screen share; tests decode what the
recorder exported and read the number back (``read_frame_number``) to check, frame by frame,
that each picture sits at the RTMS time it was sent. Digits are drawn as 3x5 blocks scaled up,
white on black, so they survive lossy encoding without any font.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import av
import numpy as np
import numpy.typing as npt

from recorder.errors import ConfigError

#: 3x5 glyphs, rows top to bottom.
_GLYPHS: Final = (
    "111101101101111",  # 0
    "010110010010111",  # 1
    "111001111100111",  # 2
    "111001111001111",  # 3
    "101101111001001",  # 4
    "111100111001111",  # 5
    "111100111101111",  # 6
    "111001001001001",  # 7
    "111101111101111",  # 8
    "111101111001111",  # 9
)
_GLYPH_ARRAYS: Final = tuple(
    np.array([int(c) for c in g], dtype=np.uint8).reshape(5, 3) for g in _GLYPHS
)
DIGITS: Final = 6
#: Most frames generated for one profile; longer streams repeat the cycle.
MAX_FRAMES: Final = 6000


@dataclass(frozen=True, slots=True)
class PatternSpec:
    width: int = 160
    height: int = 90
    fps: int = 5
    #: A keyframe (IDR with SPS/PPS) every this many frames.
    keyframe_interval: int = 10
    frames: int = 50

    def validate(self) -> PatternSpec:
        if self.width % 2 or self.height % 2 or not (32 <= self.width <= 1920):
            raise ConfigError(f"video pattern size {self.width}x{self.height} not even/32..1920")
        if not 16 <= self.height <= 1080:
            raise ConfigError(f"video pattern height {self.height} outside 16..1080")
        if not 1 <= self.fps <= 60:
            raise ConfigError(f"video fps {self.fps} outside 1..60")
        if not 1 <= self.keyframe_interval <= 600:
            raise ConfigError(f"keyframe interval {self.keyframe_interval} outside 1..600")
        if not 1 <= self.frames <= MAX_FRAMES:
            raise ConfigError(f"video pattern frames {self.frames} outside 1..{MAX_FRAMES}")
        return self


def _scale(width: int, height: int) -> int:
    """Pixels per glyph cell: the number fills about 60% of the width."""
    return max(2, min(width * 6 // 10 // (DIGITS * 4), height // 3 // 5))


def _origin(width: int, height: int) -> tuple[int, int]:
    s = _scale(width, height)
    return s, s  # one cell of margin, top left


def draw_pattern(spec: PatternSpec, number: int) -> npt.NDArray[np.uint8]:
    """The RGB picture of frame ``number``: moving bars, and the number in a black box."""
    w, h = spec.width, spec.height
    x = np.arange(w, dtype=np.int32)
    y = np.arange(h, dtype=np.int32)[:, None]
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[..., 0] = ((x * 4 + number * 9) % 256).astype(np.uint8)
    img[..., 1] = ((y * 3 + number * 5) % 256).astype(np.uint8)
    img[..., 2] = (((x + y + number * 7) // 8 % 2) * 160).astype(np.uint8)
    s = _scale(w, h)
    ox, oy = _origin(w, h)
    img[oy - s // 2 : oy + 5 * s + s // 2, ox - s // 2 : ox + DIGITS * 4 * s] = 0
    for i, ch in enumerate(f"{number % 10**DIGITS:0{DIGITS}d}"):
        glyph = np.kron(_GLYPH_ARRAYS[int(ch)], np.ones((s, s), dtype=np.uint8)) * 255
        x0 = ox + i * 4 * s
        img[oy : oy + 5 * s, x0 : x0 + 3 * s] = glyph[..., None]
    return img


def read_frame_number(luma: npt.NDArray[np.uint8]) -> int | None:
    """The number burned into a decoded picture (its Y plane, height x width); None when
    any digit is unreadable."""
    h, w = luma.shape
    s = _scale(w, h)
    ox, oy = _origin(w, h)
    value = 0
    for i in range(DIGITS):
        x0 = ox + i * 4 * s
        cells = np.empty((5, 3), dtype=np.uint8)
        for r in range(5):
            for c in range(3):
                cy, cx = oy + r * s + s // 2, x0 + c * s + s // 2
                cells[r, c] = 1 if int(luma[cy, cx]) > 128 else 0
        for digit, glyph in enumerate(_GLYPH_ARRAYS):
            if np.array_equal(cells, glyph):
                value = value * 10 + digit
                break
        else:
            return None
    return value


@functools.lru_cache(maxsize=8)
def encode_pattern(spec: PatternSpec) -> tuple[tuple[bytes, bool], ...]:
    """``spec.frames`` H.264 access units (Annex-B, SPS/PPS before every keyframe), with
    whether each is a keyframe. Made once per spec with PyAV's libx264: no B-frames, so
    decode order is presentation order, as RTMS sends it."""
    spec.validate()
    enc = av.CodecContext.create("libx264", "w")
    assert isinstance(enc, av.VideoCodecContext)
    enc.width, enc.height = spec.width, spec.height
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1, spec.fps)
    enc.framerate = Fraction(spec.fps)
    enc.gop_size = spec.keyframe_interval
    k = str(spec.keyframe_interval)
    enc.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x264-params": f"keyint={k}:min-keyint={k}:scenecut=0:bframes=0:repeat-headers=1",
        "crf": "18",
    }
    out: list[tuple[bytes, bool]] = []
    for n in range(spec.frames):
        frame = av.VideoFrame.from_ndarray(draw_pattern(spec, n), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = n
        out.extend((bytes(p), bool(p.is_keyframe)) for p in enc.encode(frame))
    out.extend((bytes(p), bool(p.is_keyframe)) for p in enc.encode(None))
    if len(out) != spec.frames:
        raise ConfigError(f"encoder produced {len(out)} access units for {spec.frames} frames")
    return tuple(out)


__all__ = ["PatternSpec", "draw_pattern", "encode_pattern", "read_frame_number"]
