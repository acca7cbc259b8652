"""H.264 parsing of what a peer sends: the real encoder's output, and hostile bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.errors import VideoError
from recorder.video.h264 import inspect, iter_nals, nal_type, sps_dimensions
from recorder.video.pattern import PatternSpec, encode_pattern


@pytest.mark.parametrize(("width", "height"), [(160, 90), (320, 180), (176, 144)])
def test_keyframes_carry_the_encoded_size(width: int, height: int) -> None:
    units = encode_pattern(PatternSpec(width=width, height=height, frames=12, keyframe_interval=5))
    assert [key for _, key in units] == [i % 5 == 0 for i in range(12)]
    for data, key in units:
        unit = inspect(data)
        assert unit.keyframe is key
        if key:
            assert (unit.width, unit.height) == (width, height)
            kinds = [nal_type(n) for n in iter_nals(unit.parameter_sets)]
            assert kinds == [7, 8]
        else:
            assert unit.width is None
            assert unit.parameter_sets == b""


def test_not_annex_b_is_a_clear_error() -> None:
    with pytest.raises(VideoError, match="no start code"):
        inspect(b"\xff\xd8\xff\xe0 a JPEG")
    with pytest.raises(VideoError, match="without a picture"):
        inspect(b"\x00\x00\x00\x01\x09\xf0")  # an access unit delimiter alone


def test_truncated_sps_is_a_clear_error() -> None:
    data, _ = encode_pattern(PatternSpec(frames=1))[0]
    sps = next(n for n in iter_nals(data) if nal_type(n) == 7)
    with pytest.raises(VideoError, match="SPS"):
        sps_dimensions(sps[:4])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_bytes_raise_only_video_error(data: bytes) -> None:
    for payload in (data, b"\x00\x00\x01" + data, b"\x00\x00\x00\x01\x67" + data):
        try:
            unit = inspect(payload)
        except VideoError:
            continue
        if unit.width is not None:
            assert unit.height is not None
            assert 0 < unit.width <= 8192
