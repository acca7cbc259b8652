"""Broadcast WAV headers of a fixed size, so the header can be the sink's deferred prologue.

Byte layout of every header this module writes (little-endian, ``HEADER_SIZE`` bytes)::

    offset  size  field
         0     4  "RIFF"
         4     4  RIFF size = HEADER_SIZE - 8 + data_length (+1 pad byte if odd)
         8     4  "WAVE"
        12     8  "fmt " + 16
        20    16  PCM (1), channels, rate, byte rate, block align, 16 bits
        36     8  "bext" + BEXT_SIZE
        44   602  bext fields (EBU Tech 3285 v2): Description 256, Originator 32,
                  OriginatorReference 32, OriginationDate 10, OriginationTime 8,
                  TimeReference 2x32 bits, Version 2, UMID 64, loudness 5x16 bits,
                  Reserved 180
       646   512  CodingHistory, ASCII, CR/LF terminated, NUL padded
      1158     8  "data" + data_length
      1166        samples

Size limit: a RIFF file cannot describe more than 4 GiB. Rather than RF64 (which the stdlib
``wave`` module cannot read), segments are capped: ``max_data_length`` bytes per segment, below
4 GiB, and the segment writer rotates before crossing it. At the default five-minute rotation
even 48 kHz stereo is 58 MB, so the cap is a guard, not a working limit.

The same header can be rebuilt by crash recovery from a sealed segment's authenticated metadata
(``build_wav_prologue``), which is why everything the header needs lives in
``SegmentIdentity.metadata`` under the ``wav.*`` and ``bext.*`` keys.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from recorder.errors import LocalProtocolError
from recorder.sink import MetadataValue, SegmentIdentity

BEXT_FIXED_SIZE: Final = 602
#: Room reserved for the coding history so the header size never depends on its text.
CODING_HISTORY_SIZE: Final = 512
BEXT_SIZE: Final = BEXT_FIXED_SIZE + CODING_HISTORY_SIZE
HEADER_SIZE: Final = 12 + (8 + 16) + (8 + BEXT_SIZE) + 8
#: Largest data chunk a RIFF header can describe, rounded down to whole 4-byte frames.
MAX_DATA_LENGTH: Final = ((2**32 - 1) - (HEADER_SIZE - 8) - 1) // 4 * 4

ORIGINATOR: Final = "rtms-recorder"
_ORIGINATOR_REFERENCE_SIZE: Final = 32
_DESCRIPTION_SIZE: Final = 256
#: Bounds that keep every ``fmt `` field inside its 16/32 bits.
_MAX_SAMPLE_RATE: Final = 384_000
_MAX_CHANNELS: Final = 8


@dataclass(frozen=True, slots=True)
class BextInfo:
    """What goes into the ``bext`` chunk."""

    #: Engagement or meeting id; truncated to 32 bytes here, kept whole in the manifest.
    originator_reference: str
    #: UTC Unix milliseconds of the segment's first sample.
    origination_ms: int
    description: str = ""
    coding_history: str = ""


def coding_history(*, sample_rate: int, channels: int, source: str, decoder_version: str) -> str:
    """EBU R98-style line: ``A=PCM,F=16000,W=16,M=mono,T=rtms-recorder;source=...;...``."""
    mode = "mono" if channels == 1 else "stereo"
    line = (
        f"A=PCM,F={sample_rate},W=16,M={mode},T={ORIGINATOR};"
        f"source={source};decoder={decoder_version}"
    )
    return line[: CODING_HISTORY_SIZE - 2] + "\r\n"


def build_wav_header(*, sample_rate: int, channels: int, data_length: int, bext: BextInfo) -> bytes:
    """A ``HEADER_SIZE``-byte RIFF/WAVE/bext header for ``data_length`` bytes of s16 PCM."""
    if not 0 <= data_length <= MAX_DATA_LENGTH:
        raise LocalProtocolError(f"WAV data length {data_length} is beyond the RIFF limit")
    block_align = 2 * channels
    riff_size = HEADER_SIZE - 8 + data_length + (data_length & 1)
    header = bytearray()
    header += struct.pack("<4sI4s", b"RIFF", riff_size, b"WAVE")
    header += struct.pack(
        "<4sIHHIIHH",
        b"fmt ",
        16,
        1,
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        16,
    )
    header += struct.pack("<4sI", b"bext", BEXT_SIZE)
    header += _bext_body(bext, sample_rate)
    header += struct.pack("<4sI", b"data", data_length)
    assert len(header) == HEADER_SIZE
    return bytes(header)


def bext_metadata(*, sample_rate: int, channels: int, bext: BextInfo) -> dict[str, MetadataValue]:
    """The ``SegmentIdentity.metadata`` entries ``build_wav_prologue`` needs."""
    return {
        "wav.rate": sample_rate,
        "wav.channels": channels,
        "bext.ref": bext.originator_reference,
        "bext.origination_ms": bext.origination_ms,
        "bext.description": bext.description,
        "bext.history": bext.coding_history,
    }


def build_wav_prologue(metadata: Mapping[str, MetadataValue], body_length: int) -> bytes:
    """Rebuild a segment's header from its metadata: the crash-recovery ``prologue_builder``.

    A body cut mid-frame by a crash is described as its whole frames only; the stray bytes
    stay in the file after the data chunk, where WAV readers ignore them.
    """
    try:
        rate = int(_required(metadata, "wav.rate"))
        channels = int(_required(metadata, "wav.channels"))
        bext = BextInfo(
            originator_reference=str(_required(metadata, "bext.ref")),
            origination_ms=int(_required(metadata, "bext.origination_ms")),
            description=str(metadata.get("bext.description") or ""),
            coding_history=str(metadata.get("bext.history") or ""),
        )
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"segment metadata cannot describe a WAV header: {exc}") from exc
    if not (1 <= rate <= _MAX_SAMPLE_RATE and 1 <= channels <= _MAX_CHANNELS):
        raise LocalProtocolError(
            f"segment metadata cannot describe a WAV header: {rate} Hz, {channels} channels"
        )
    frame = 2 * channels
    data_length = min(body_length // frame * frame, MAX_DATA_LENGTH // frame * frame)
    return build_wav_header(sample_rate=rate, channels=channels, data_length=data_length, bext=bext)


class _HasIdentity(Protocol):
    @property
    def identity(self) -> SegmentIdentity: ...


def recovery_prologue(header: _HasIdentity, body_length: int) -> bytes:
    """The ``prologue_builder`` to hand ``recorder.crypto.recover`` for this recorder's segments.

    Audio segments get their WAV header rebuilt from the sealed file's metadata; records
    segments (JSON lines) have no prologue.
    """
    metadata = header.identity.metadata
    if metadata.get("kind") != "audio":
        return b""
    return build_wav_prologue(metadata, body_length)


def _required(metadata: Mapping[str, MetadataValue], key: str) -> str | int | float:
    value = metadata.get(key)
    if value is None or isinstance(value, bool):
        raise LocalProtocolError(f"segment metadata lacks {key!r}")
    return value


def _ascii(text: str, size: int) -> bytes:
    return text.encode("ascii", "replace")[:size].ljust(size, b"\0")


#: Origination times a BWF date field can hold (years 1970..9999); anything else is omitted.
_MIN_ORIGINATION_MS: Final = 0
_MAX_ORIGINATION_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def origination_fits(origination_ms: int) -> bool:
    """True when ``origination_ms`` can be written as a BWF OriginationDate/Time."""
    return _MIN_ORIGINATION_MS <= origination_ms <= _MAX_ORIGINATION_MS


def _bext_body(bext: BextInfo, sample_rate: int) -> bytes:
    # A header field never raises: a hostile or mis-scaled timestamp (µs, far future, negative)
    # leaves date, time and time reference empty and says so in the description, so the segment
    # still seals and the manifest (which keeps origination_ms whole) tells the true story.
    description = bext.description
    date_time = bytes(10 + 8)
    time_reference = 0
    if origination_fits(bext.origination_ms):
        origin = dt.datetime.fromtimestamp(bext.origination_ms / 1000, tz=dt.UTC)
        midnight = origin.replace(hour=0, minute=0, second=0, microsecond=0)
        since_midnight_ms = bext.origination_ms - int(midnight.timestamp() * 1000)
        time_reference = max(0, since_midnight_ms) * sample_rate // 1000
        date_time = (
            f"{origin.year:04d}-{origin.month:02d}-{origin.day:02d}"
            f"{origin.hour:02d}:{origin.minute:02d}:{origin.second:02d}"
        ).encode("ascii")
    else:
        note = f" [origination {bext.origination_ms} ms out of range: date omitted]"
        description = description[: _DESCRIPTION_SIZE - len(note)] + note
    body = bytearray()
    body += _ascii(description, _DESCRIPTION_SIZE)
    body += _ascii(ORIGINATOR, 32)
    body += _ascii(bext.originator_reference, _ORIGINATOR_REFERENCE_SIZE)
    body += date_time
    body += struct.pack("<II", time_reference & 0xFFFFFFFF, (time_reference >> 32) & 0xFFFFFFFF)
    body += struct.pack("<H", 2)  # BWF version 2: loudness fields present (left 0: unknown)
    body += bytes(64)  # UMID: none
    body += bytes(10)  # loudness value, range, max true peak, max momentary, max short-term
    body += bytes(180)  # reserved
    assert len(body) == BEXT_FIXED_SIZE
    body += _ascii(bext.coding_history, CODING_HISTORY_SIZE)
    return bytes(body)


@dataclass(frozen=True, slots=True)
class ParsedBext:
    """What ``parse_bext`` reads back (for verification and tests)."""

    description: str
    originator: str
    originator_reference: str
    origination_date: str
    origination_time: str
    time_reference: int
    version: int
    coding_history: str


def parse_bext(header: bytes) -> ParsedBext:
    """Read the ``bext`` chunk of a header written by this module."""
    offset = 12 + 8 + 16
    tag, size = struct.unpack_from("<4sI", header, offset)
    if tag != b"bext" or size != BEXT_SIZE:
        raise LocalProtocolError("no bext chunk where this recorder writes it")
    body = header[offset + 8 : offset + 8 + size]

    def text(start: int, length: int) -> str:
        return body[start : start + length].rstrip(b"\0").decode("ascii", "replace")

    low, high = struct.unpack_from("<II", body, 338)
    (version,) = struct.unpack_from("<H", body, 346)
    return ParsedBext(
        description=text(0, 256),
        originator=text(256, 32),
        originator_reference=text(288, 32),
        origination_date=text(320, 10),
        origination_time=text(330, 8),
        time_reference=low | (high << 32),
        version=version,
        coding_history=text(BEXT_FIXED_SIZE, CODING_HISTORY_SIZE),
    )
