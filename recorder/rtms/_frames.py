"""Whole unfragmented data frames of a read, parsed without wsproto (sans-IO).

wsproto parses every frame in pure Python through a buffer object, a header object, a masker,
a message decoder and a generator: per 20 ms audio message that is most of what bare
trio-websocket costs beyond the read itself (``recorder bench fullpath``: bare minus floor).
RTMS media sockets bring one small text frame per message, unmasked, FIN set, no extension. Such
a frame is two or four header bytes and its payload: ``take_frames`` takes every frame of that
shape from the front of a read, while the connection sits on a frame boundary, and stops at the
first byte it is not sure of (a control frame, a fragment, reserved bits, a mask, an 8-byte
length, a frame cut by the read, a payload that is not UTF-8, a message over the size limit).
From there wsproto gets the rest of the read and decides alone, so what is accepted and every
error (close code and reason included) stays wsproto's; ``tests/rtms/test_frames.py`` compares
the two on arbitrary bytes and reads. A read that ends inside a frame leaves wsproto in the
middle of it: ``split_read`` then gives wsproto only the rest of that frame from the next read,
and the frames after it are taken here again (a lagging socket's 64 KiB reads end inside a frame
almost every time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from wsproto import WSConnection
from wsproto.connection import ConnectionState

#: The wsproto whose private parser state ``at_frame_boundary`` and ``frame_remainder`` read;
#: pinned in pyproject.toml, and ``tests/rtms/test_frames.py`` fails when another is installed.
PINNED_WSPROTO: Final = "1.3.2"

#: First header byte of a final, unextended text / binary frame.
_TEXT: Final = 0x81
_BINARY: Final = 0x82
#: Second header byte values: a 7-bit length, or 126 for a 16-bit length (unmasked).
_LEN16: Final = 126


def take_frames(data: bytes, max_size: int, append: Callable[[str | bytes], None]) -> int:
    """Append the messages of the whole text/binary frames at the front of ``data``.

    ``data`` must start on a frame boundary with no fragmented message under way. Returns how
    many bytes were consumed; the rest (maybe all of it) is the caller's to give to wsproto.
    Nothing is appended for a frame that is not taken.
    """
    end = len(data)
    if end > 4 and data[0] == _TEXT and data[1] == _LEN16:
        # The paced case, one read per message: a read that is exactly one text frame with a
        # 16-bit length (an RTMS audio message). The loop below would take it the same way.
        size = (data[2] << 8) | data[3]
        if size + 4 == end and _LEN16 <= size <= max_size:
            try:
                append(data[4:].decode("utf-8"))
            except UnicodeDecodeError:
                return 0
            return end
    at = 0
    while end - at >= 2:
        first = data[at]
        if first != _TEXT and first != _BINARY:
            break
        size = data[at + 1]
        if size < _LEN16:
            start = at + 2
        elif size == _LEN16:
            if end - at < 4:
                break
            size = (data[at + 2] << 8) | data[at + 3]
            if size < _LEN16:  # a non-minimal length: wsproto's error
                break
            start = at + 4
        else:  # masked (>= 128) or an 8-byte length (127)
            break
        stop = start + size
        if stop > end or size > max_size:
            break
        if first == _TEXT:
            try:
                append(data[start:stop].decode("utf-8"))
            except UnicodeDecodeError:
                break
        else:
            append(data[start:stop])
        at = stop
    return at


def at_frame_boundary(ws: WSConnection) -> bool:
    """True when ``ws`` (wsproto 1.3, pinned with trio-websocket) is open and holds nothing of
    an unfinished frame or message, nor an event not yet taken: the next bytes start a frame,
    so ``take_frames`` may parse them before wsproto sees the rest."""
    connection = ws.connection
    if (
        connection is None
        or connection._state is not ConnectionState.OPEN
        or connection._events
        or ws.handshake._events
    ):
        return False
    proto = connection._proto
    decoder = proto._frame_decoder
    return (
        decoder.header is None
        and not decoder.buffer.buffer
        and proto._message_decoder.opcode is None
        and not proto.extensions
    )


def frame_remainder(ws: WSConnection) -> int | None:
    """Payload bytes wsproto still needs to finish the data frame it is in the middle of, when
    it holds nothing else; None when it is not in that state (at a boundary, in a header or a
    control frame, closing)."""
    connection = ws.connection
    if connection is None or connection._state is not ConnectionState.OPEN or connection._events:
        return None
    proto = connection._proto
    decoder = proto._frame_decoder
    header = decoder.header
    if header is None or header.opcode.iscontrol() or decoder.buffer.buffer or proto.extensions:
        return None
    remaining = header.payload_len - decoder.payload_consumed
    return remaining if remaining > 0 else None


def split_read(
    ws: WSConnection,
    data: bytes,
    max_size: int,
    append: Callable[[str | bytes], None],
    *,
    parts_pending: bool,
) -> tuple[bytes, bytes]:
    """One step over a read: ``(for_wsproto, later)``.

    At a frame boundary (``parts_pending``: the caller holds part of a fragmented message), the
    whole frames at the front are appended and everything after them is wsproto's. In the
    middle of a data frame (the last read ended inside one, as reads of a lagging socket do),
    wsproto gets just the rest of that frame, so that the caller, once it has handled wsproto's
    events, can come back here with ``later`` at a boundary. Otherwise all of it is wsproto's.
    """
    if not parts_pending and at_frame_boundary(ws):
        taken = take_frames(data, max_size, append)
        return data[taken:], b""
    remainder = frame_remainder(ws)
    if remainder is not None and remainder < len(data):
        return data[:remainder], data[remainder:]
    return data, b""


__all__ = ["at_frame_boundary", "frame_remainder", "split_read", "take_frames"]
