"""HTTP ``Range:`` requests over a byte source of known length (RFC 9110 §14), pure.

``parse_range(header, total)``: ``None`` (no header: the whole representation, 200) or the
satisfiable ranges, sorted and coalesced (206); anything else raises ``RangeNotSatisfiable``
(416) with a message naming what was wrong. The parser is strict and bounded because its input
is a hostile client's: only the ``bytes`` unit, ASCII digits of at most 18 places, at most
``MAX_RANGES`` ranges (a many-range request is an amplification attack), no empty specs.

``multipart_byteranges`` lays out a ``multipart/byteranges`` body for several ranges: its
length is known before the first byte is sent, the parts are read from the source on demand.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from recorder.errors import RecorderError

#: Ranges one request may ask for (after that: 416).
MAX_RANGES: Final = 16
#: A range request's header may be at most this long.
MAX_HEADER: Final = 1024
_SPEC = re.compile(r"^(?:(?P<first>[0-9]{1,18})-(?P<last>[0-9]{0,18})|-(?P<suffix>[0-9]{1,18}))$")


class RangeNotSatisfiable(RecorderError):
    """A ``Range:`` header that is malformed or asks for nothing inside the representation:
    answer 416 with ``Content-Range: bytes */<total>``."""


class ByteRange(NamedTuple):
    """Bytes ``[start, stop)`` of the representation (``stop`` exclusive); a plain pair."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    def content_range(self, total: int) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{total}"


def unsatisfied_content_range(total: int) -> str:
    return f"bytes */{total}"


def parse_range(header: str | None, total: int) -> list[ByteRange] | None:
    """The ranges ``header`` asks of a ``total``-byte representation (see the module doc)."""
    if header is None:
        return None
    if total < 0:
        raise ValueError("total must not be negative")
    if len(header) > MAX_HEADER:
        raise RangeNotSatisfiable(f"Range header longer than {MAX_HEADER} characters")
    unit, sep, specs = header.strip(" \t").partition("=")
    if not sep or unit.strip(" \t").lower() != "bytes":
        raise RangeNotSatisfiable("Range header must be 'bytes=<ranges>'")
    parts = [p.strip(" \t") for p in specs.split(",")]
    if len(parts) > MAX_RANGES:
        raise RangeNotSatisfiable(f"more than {MAX_RANGES} ranges requested")
    wanted: list[ByteRange] = []
    for part in parts:
        match = _SPEC.match(part)
        if match is None:
            raise RangeNotSatisfiable(f"malformed range {part[:40]!r}")
        if match["suffix"] is not None:
            count = int(match["suffix"])
            if count == 0 or total == 0:
                continue  # unsatisfiable alone; fine beside others
            wanted.append(ByteRange(max(0, total - count), total))
            continue
        first = int(match["first"])
        last = int(match["last"]) if match["last"] else None
        if last is not None and last < first:
            raise RangeNotSatisfiable(f"range {part!r} ends before it starts")
        if first >= total:
            continue
        stop = total if last is None else min(last + 1, total)
        wanted.append(ByteRange(first, stop))
    if not wanted:
        raise RangeNotSatisfiable(f"no requested range lies within the {total} bytes")
    return _coalesce(wanted)


def _coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    merged: list[ByteRange] = []
    for r in sorted(ranges):
        if merged and r.start <= merged[-1].stop:
            if r.stop > merged[-1].stop:
                merged[-1] = ByteRange(merged[-1].start, r.stop)
        else:
            merged.append(r)
    return merged


#: Reads ``[start, stop)`` of the source as blocks.
ReadFn = Callable[[int, int], AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class Multipart:
    """A ``multipart/byteranges`` response: headers to send and the body as it is read."""

    content_type: str
    content_length: int
    boundary: str
    _heads: tuple[bytes, ...]
    _ranges: tuple[ByteRange, ...]
    _tail: bytes

    async def body(self, read: ReadFn) -> AsyncIterator[bytes]:
        for head, r in zip(self._heads, self._ranges, strict=True):
            yield head
            async for block in read(r.start, r.stop):
                yield block
        yield self._tail


def multipart_byteranges(
    ranges: Sequence[ByteRange], total: int, part_type: str, *, boundary: str | None = None
) -> Multipart:
    """The layout of a several-range answer; ``boundary`` is random unless given (tests)."""
    if boundary is None:
        boundary = secrets.token_hex(16)
    heads = tuple(
        (
            f"\r\n--{boundary}\r\nContent-Type: {part_type}\r\n"
            f"Content-Range: {r.content_range(total)}\r\n\r\n"
        ).encode("ascii")
        for r in ranges
    )
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    length = sum(len(h) for h in heads) + sum(r.length for r in ranges) + len(tail)
    return Multipart(
        f"multipart/byteranges; boundary={boundary}",
        length,
        boundary,
        heads,
        tuple(ranges),
        tail,
    )
