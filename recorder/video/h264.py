"""Just enough H.264 (Annex-B) to remux without decoding: NAL units, keyframes, SPS size.

Everything here reads bytes a peer sent. It never raises anything but ``VideoError`` and never
reads past a buffer: a hostile SPS makes a clear error, not an IndexError deep in a parser.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from recorder.errors import VideoError

NAL_SLICE: Final = 1
NAL_IDR: Final = 5
NAL_SEI: Final = 6
NAL_SPS: Final = 7
NAL_PPS: Final = 8
NAL_AUD: Final = 9
#: profile_idc values whose SPS carries chroma_format_idc and friends (H.264 7.3.2.1.1).
_HIGH_PROFILES: Final = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
#: Largest picture dimension accepted (8K is 7680; anything above is a broken SPS).
MAX_DIMENSION: Final = 8192


def nal_spans(data: bytes) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each NAL unit of an Annex-B access unit (start codes ``00 00 01`` /
    ``00 00 00 01``); nothing is copied, so a 1 MiB keyframe costs one scan."""
    start = data.find(b"\x00\x00\x01")
    if start < 0:
        raise VideoError("not Annex-B H.264: no start code")
    pos = start + 3
    while True:
        nxt = data.find(b"\x00\x00\x01", pos)
        if nxt < 0:
            if len(data) > pos:
                yield pos, len(data)
            return
        end = nxt - 1 if nxt > pos and data[nxt - 1] == 0 else nxt
        if end > pos:
            yield pos, end
        pos = nxt + 3


def iter_nals(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex-B access unit, as copies."""
    for start, end in nal_spans(data):
        yield data[start:end]


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One RTMS video message, understood."""

    keyframe: bool
    #: The SPS and PPS NAL units (Annex-B, with start codes) when the unit carries them.
    parameter_sets: bytes
    width: int | None
    height: int | None


def inspect(data: bytes) -> AccessUnit:
    """Classify one access unit; ``VideoError`` when it is not H.264 Annex-B with a picture.

    Parameter sets and SEI precede the first slice of an access unit (H.264 7.4.1.2.3), so the
    scan stops at the first slice: a 1 MiB keyframe costs a few header reads, not a full scan.
    """
    keyframe = False
    has_picture = False
    sets: list[bytes] = []
    width = height = None
    pos = data.find(b"\x00\x00\x01")
    if pos < 0:
        raise VideoError("not Annex-B H.264: no start code")
    pos += 3
    while pos < len(data):
        header = data[pos]
        if header & 0x80:
            raise VideoError("H.264 NAL unit with the forbidden bit set")
        kind = header & 0x1F
        if kind in (NAL_IDR, NAL_SLICE):
            keyframe = kind == NAL_IDR
            has_picture = True
            break
        nxt = data.find(b"\x00\x00\x01", pos)
        end = len(data) if nxt < 0 else (nxt - 1 if data[nxt - 1] == 0 else nxt)
        if kind == NAL_SPS:
            nal = data[pos:end]
            width, height = sps_dimensions(nal)
            sets.append(b"\x00\x00\x00\x01" + nal)
        elif kind == NAL_PPS:
            sets.append(b"\x00\x00\x00\x01" + data[pos:end])
        if nxt < 0:
            break
        pos = nxt + 3
    if not has_picture:
        raise VideoError("H.264 access unit without a picture slice")
    if keyframe and width is None:
        raise VideoError("H.264 keyframe without a sequence parameter set")
    return AccessUnit(keyframe, b"".join(sets), width, height)


class _Bits:
    """An exp-Golomb bit reader over an RBSP (emulation prevention removed)."""

    def __init__(self, nal: bytes) -> None:
        self._data = nal.replace(b"\x00\x00\x03", b"\x00\x00")
        self._pos = 8  # past the NAL header
        self._limit = len(self._data) * 8

    def bit(self) -> int:
        if self._pos >= self._limit:
            raise VideoError("H.264 SPS truncated")
        byte = self._data[self._pos >> 3]
        value = (byte >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise VideoError("H.264 SPS: exp-Golomb code too long")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + bits.se() + 256) % 256
        last = nxt if nxt != 0 else last


def sps_dimensions(nal: bytes) -> tuple[int, int]:
    """Display width and height from a sequence parameter set (H.264 7.3.2.1.1)."""
    bits = _Bits(nal)
    profile = bits.bits(8)
    bits.bits(16)  # constraint flags, level_idc
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format > 3:
            raise VideoError(f"H.264 SPS: chroma_format_idc {chroma_format}")
        separate_planes = bits.bit() if chroma_format == 3 else 0
        bits.ue()  # bit_depth_luma
        bits.ue()  # bit_depth_chroma
        bits.bit()  # qpprime_y_zero_transform_bypass
        if bits.bit():  # seq_scaling_matrix_present
            for i in range(8 if chroma_format != 3 else 12):
                if bits.bit():
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
        if separate_planes:
            chroma_format = 0
    bits.ue()  # log2_max_frame_num
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.bit()
        bits.se()
        bits.se()
        cycle = bits.ue()
        if cycle > 255:
            raise VideoError("H.264 SPS: num_ref_frames_in_pic_order_cnt_cycle > 255")
        for _ in range(cycle):
            bits.se()
    elif poc_type != 2:
        raise VideoError(f"H.264 SPS: pic_order_cnt_type {poc_type}")
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_allowed
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()  # mb_adaptive_frame_field
    bits.bit()  # direct_8x8_inference
    width = width_mbs * 16
    height = height_units * 16 * (2 - frame_mbs_only)
    if bits.bit():  # frame_cropping
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        crop_x = 2 if chroma_format in (1, 2) else 1
        crop_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise VideoError(f"H.264 SPS: implausible picture size {width}x{height}")
    return width, height


__all__ = ["AccessUnit", "inspect", "iter_nals", "nal_spans", "nal_type", "sps_dimensions"]
