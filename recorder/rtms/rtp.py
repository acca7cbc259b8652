"""RTP packets in audio payloads (``content_type`` 1, rtms-protocol §6.2, §5.15.1): the payload.

With ``content_type`` RTP each MEDIA_DATA_AUDIO ``data`` is one RTP packet (RFC 3550 §5.1):
a 12-byte fixed header, ``CC`` 4-byte CSRC identifiers, an optional header extension (4 bytes
of profile and length, then ``length`` 32-bit words), the payload, and with the ``P`` bit set
padding whose last byte counts the padding bytes. ``rtp_payload`` returns the codec frame the
decoder needs; anything that is not a well-formed version 2 packet raises
``RemoteProtocolError`` naming the problem (that one packet is dropped, counted as malformed).

L16 in RTP is big-endian (RFC 3551 §4.5.11) while raw RTMS L16 is little-endian, so
``l16_to_little_endian`` swaps it. Pure functions, no I/O.
"""

from __future__ import annotations

import sys
from array import array
from typing import Final

from recorder.errors import RemoteProtocolError

RTP_VERSION: Final = 2
_FIXED_HEADER: Final = 12


def _bad(problem: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"msg 14: RTP packet {problem}")


def rtp_payload(packet: bytes) -> bytes:
    """The payload of one RTP packet: header, CSRCs, extension and padding removed."""
    size = len(packet)
    if size < _FIXED_HEADER:
        raise _bad(f"is {size} bytes, shorter than the 12-byte header")
    first = packet[0]
    version = first >> 6
    if version != RTP_VERSION:
        raise _bad(f"has version {version}, expected {RTP_VERSION}")
    padded = bool(first & 0x20)
    extended = bool(first & 0x10)
    start = _FIXED_HEADER + 4 * (first & 0x0F)
    if extended:
        if start + 4 > size:
            raise _bad("ends inside its header extension")
        words = int.from_bytes(packet[start + 2 : start + 4], "big")
        start += 4 + 4 * words
    if start > size:
        raise _bad(f"header ({start} bytes) is longer than the packet ({size} bytes)")
    end = size
    if padded:
        if end == start:
            raise _bad("has the padding bit set but no padding")
        padding = packet[-1]
        if padding == 0 or padding > end - start:
            raise _bad(f"padding count {padding} does not fit the payload")
        end -= padding
    return packet[start:end]


def l16_to_little_endian(payload: bytes) -> bytes:
    """Network-order (big-endian) 16-bit samples to the little-endian the decoder reads."""
    if len(payload) % 2:
        raise _bad(f"L16 payload has an odd length ({len(payload)} bytes)")
    samples = array("h", payload)
    if sys.byteorder == "little":
        samples.byteswap()
    return samples.tobytes()


__all__ = ["RTP_VERSION", "l16_to_little_endian", "rtp_payload"]
