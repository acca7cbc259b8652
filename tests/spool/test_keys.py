from __future__ import annotations

import re
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.errors import StorageError
from recorder.sink import SegmentIdentity
from recorder.spool.keys import SegmentKey, object_key, parse_object_key, segment_key
from recorder.store.keycodec import decode_component, encode_component

SAFE_KEY = re.compile(r"^[A-Za-z0-9._%/-]+$")


def test_layout_is_readable_and_encodes_zoom_ids() -> None:
    identity = SegmentIdentity(
        recording_id="r1", track="user-16778240", segment_index=7, created_ms=1_738_392_033_699
    )
    key = segment_key(
        identity,
        product="meeting",
        instance_id="4444AAAiAAAAAiAiAiiAii==",
        rtms_stream_id="609340fb2a7946909659956c8aa9250c",
    )
    text = object_key(key)
    assert text == (
        "recordings/meeting/2025/02/01/4444AAAiAAAAAiAiAiiAii%3D%3D/"
        "609340fb2a7946909659956c8aa9250c/user-16778240/000007.seg"
    )
    assert parse_object_key(text) == key


def test_slash_and_dots_never_add_a_level() -> None:
    key = SegmentKey("zcc", date(2026, 1, 2), "a/../../b", "..", ".", 1_234_567, "seg")
    text = object_key(key)
    assert text.count("/") == 8
    assert ".." not in text
    assert all(not part.startswith(".") for part in text.split("/"))
    assert parse_object_key(text) == key


@given(st.text())
def test_component_round_trip_for_any_string(value: str) -> None:
    encoded = encode_component(value)
    assert "/" not in encoded
    assert ".." not in encoded
    assert not encoded.startswith(".")
    assert encoded.isascii()
    assert decode_component(encoded) == value


@given(
    product=st.sampled_from(["meeting", "webinar", "session", "zcc"]),
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2999, 12, 31)),
    instance_id=st.text(min_size=1),
    stream_id=st.text(min_size=1),
    track=st.text(min_size=1),
    index=st.integers(min_value=0, max_value=10**9),
)
def test_object_key_round_trip_for_any_ids(
    product: str, day: date, instance_id: str, stream_id: str, track: str, index: int
) -> None:
    key = SegmentKey(product, day, instance_id, stream_id, track, index)
    text = object_key(key)
    assert SAFE_KEY.match(text)
    assert ".." not in text
    assert len(text.split("/")) == 9
    assert parse_object_key(text) == key


@given(st.text(), st.text())
def test_distinct_ids_give_distinct_keys(a: str, b: str) -> None:
    day = date(2026, 3, 4)
    same = object_key(SegmentKey("meeting", day, a, "s", "mixed", 0)) == object_key(
        SegmentKey("meeting", day, b, "s", "mixed", 0)
    )
    assert same == (a == b)


@pytest.mark.parametrize(
    "text",
    [
        "recordings/meeting/2026/01/02/a/b/c",
        "other/meeting/2026/01/02/a/b/c/000001.seg",
        "recordings/meeting/2026/13/02/a/b/c/000001.seg",
        "recordings/meeting/2026/01/02/a/b/c/1.seg",
        "recordings/meeting/2026/01/02/a=/b/c/000001.seg",
        "recordings/meeting/2026/01/02/%2/b/c/000001.seg",
        "recordings/meeting/2026/01/02/%61/b/c/000001.seg",
    ],
)
def test_parse_refuses_non_canonical_keys(text: str) -> None:
    with pytest.raises(StorageError):
        parse_object_key(text)
