"""HTTP Range parsing: what a hostile or buggy client can send, property-tested against a
straightforward model of RFC 9110's byte ranges."""

from __future__ import annotations

import itertools

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.officer.httprange import (
    MAX_RANGES,
    ByteRange,
    RangeNotSatisfiable,
    multipart_byteranges,
    parse_range,
    unsatisfied_content_range,
)


def test_no_header_is_the_whole_representation() -> None:
    assert parse_range(None, 100) is None


@pytest.mark.parametrize(
    ("header", "total", "expected"),
    [
        ("bytes=0-99", 100, [(0, 100)]),
        ("bytes=0-", 100, [(0, 100)]),
        ("bytes=10-19", 100, [(10, 20)]),
        ("bytes=90-1000", 100, [(90, 100)]),  # last beyond the end: clamped
        ("bytes=-10", 100, [(90, 100)]),  # suffix
        ("bytes=-1000", 100, [(0, 100)]),  # suffix longer than the whole
        ("BYTES = 0-0 ,\t-1", 100, [(0, 1), (99, 100)]),  # unit case, whitespace
        ("bytes=0-9,5-14,20-29", 100, [(0, 15), (20, 30)]),  # overlaps coalesced
        ("bytes=20-29,0-9", 100, [(0, 10), (20, 30)]),  # sorted
        ("bytes=0-9,10-19", 100, [(0, 20)]),  # adjacent coalesced
        ("bytes=500-600,0-0", 100, [(0, 1)]),  # one unsatisfiable beside a good one
        ("bytes=-0,5-5", 100, [(5, 6)]),
    ],
)
def test_valid_ranges(header: str, total: int, expected: list[tuple[int, int]]) -> None:
    assert parse_range(header, total) == [ByteRange(a, b) for a, b in expected]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "must be 'bytes="),
        ("bytes", "must be 'bytes="),
        ("items=0-1", "must be 'bytes="),
        ("bytes=", "malformed range ''"),
        ("bytes=,", "malformed range"),
        ("bytes=a-b", "malformed range"),
        ("bytes=1-2-3", "malformed range"),
        ("bytes=--1", "malformed range"),
        ("bytes=+1-2", "malformed range"),
        ("bytes=1 - 2", "malformed range"),
        ("bytes=٣-٤", "malformed range"),  # non-ASCII digits that int() would take
        ("bytes=5-4", "ends before it starts"),
        ("bytes=100-", "no requested range lies within"),
        ("bytes=100-200", "no requested range lies within"),
        ("bytes=-0", "no requested range lies within"),
        ("bytes=" + "9" * 19 + "-", "malformed range"),
        ("bytes=" + ",".join(["0-0"] * (MAX_RANGES + 1)), "more than"),
        ("bytes=0-0" + " " * 2000, "longer than"),
    ],
)
def test_invalid_ranges_are_416_with_a_reason(header: str, message: str) -> None:
    with pytest.raises(RangeNotSatisfiable, match=message.replace("(", r"\(")):
        parse_range(header, 100)


def test_nothing_is_satisfiable_in_an_empty_representation() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-5", 0)
    assert unsatisfied_content_range(0) == "bytes */0"


def _model(specs: list[tuple[int | None, int | None]], total: int) -> set[int]:
    """Which byte positions the specs select (the RFC's meaning, byte by byte)."""
    chosen: set[int] = set()
    for first, last in specs:
        if first is None:
            assert last is not None
            chosen.update(range(max(0, total - last), total))
        else:
            stop = total if last is None else min(last + 1, total)
            chosen.update(range(first, stop))
    return chosen


spec = st.one_of(
    st.tuples(st.integers(0, 300), st.none()),
    st.tuples(st.integers(0, 300), st.integers(0, 300)).map(lambda t: (min(t), max(t))),
    st.tuples(st.none(), st.integers(0, 300)),
)


def _text(s: tuple[int | None, int | None]) -> str:
    first, last = s
    if first is None:
        return f"-{last}"
    return f"{first}-" if last is None else f"{first}-{last}"


@settings(max_examples=300, deadline=None)
@given(specs=st.lists(spec, min_size=1, max_size=MAX_RANGES), total=st.integers(0, 250))
def test_parsed_ranges_select_exactly_what_was_asked(
    specs: list[tuple[int | None, int | None]], total: int
) -> None:
    header = "bytes=" + ",".join(_text(s) for s in specs)
    wanted = _model(specs, total)
    if not wanted:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, total)
        return
    ranges = parse_range(header, total)
    assert ranges is not None
    got: set[int] = set()
    for r in ranges:
        assert 0 <= r.start < r.stop <= total
        got.update(range(r.start, r.stop))
    assert got == wanted
    # Sorted, disjoint and not adjacent: no byte is sent twice.
    for a, b in itertools.pairwise(ranges):
        assert a.stop < b.start


@settings(max_examples=300, deadline=None)
@given(header=st.text(max_size=60), total=st.integers(0, 10**12))
def test_any_text_is_either_ranges_or_a_clear_416(header: str, total: int) -> None:
    try:
        ranges = parse_range(header, total)
    except RangeNotSatisfiable as exc:
        message = str(exc)
    else:
        message = ""
    if message or ranges is None:
        assert message or header is None
        return
    assert ranges
    for r in ranges:
        assert 0 <= r.start < r.stop <= total


async def test_a_multipart_answer_has_the_length_it_announces() -> None:
    data = bytes(range(256)) * 4
    ranges = [ByteRange(0, 10), ByteRange(500, 520)]
    mp = multipart_byteranges(ranges, len(data), "audio/wav", boundary="B0UNDARY")

    async def read(start: int, stop: int):  # type: ignore[no-untyped-def]
        for at in range(start, stop, 7):
            await trio.lowlevel.checkpoint()
            yield data[at : min(at + 7, stop)]

    body = b"".join([block async for block in mp.body(read)])
    assert len(body) == mp.content_length
    assert mp.content_type == "multipart/byteranges; boundary=B0UNDARY"
    assert body == (
        b"\r\n--B0UNDARY\r\nContent-Type: audio/wav\r\nContent-Range: bytes 0-9/1024\r\n\r\n"
        + data[0:10]
        + b"\r\n--B0UNDARY\r\nContent-Type: audio/wav\r\nContent-Range: bytes 500-519/1024\r\n\r\n"
        + data[500:520]
        + b"\r\n--B0UNDARY--\r\n"
    )
    assert ranges[1].content_range(1024) == "bytes 500-519/1024"
