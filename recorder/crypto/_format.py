"""The sealed-segment format, as pure functions over bytes: no files, no clocks, no trio.

Rule: everything that decides what a byte on disk means lives here, and nothing here does I/O.
The writer, the reader and crash recovery all frame, seal and open records through this module,
so the three can never disagree about the layout. The layout and its reasoning are drawn in
``docs/encrypted-format.md``; keep the two in step.

Errors raised here are the ``IntegrityError`` family (a file that fails a check) and
``LocalProtocolError`` (a caller that asks for something the format cannot hold).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from recorder.errors import DecryptionFailed, LocalProtocolError, TruncatedFile
from recorder.sink import MetadataValue, SegmentIdentity

#: PNG-style magic: a high-bit byte, CR LF and ^Z catch text-mode transfers and truncating tools.
MAGIC: Final = b"\x89RTMS\r\n\x1a"
FORMAT_VERSION: Final = 1
#: AES-256-GCM chunks, HKDF-SHA256 key schedule, key commitment, HMAC-SHA256 header tag.
ALGORITHM_AES256GCM_HKDF_SHA256: Final = 1

KEY_SIZE: Final = 32  # bytes: AES-256 data key
SALT_SIZE: Final = 32  # bytes: HKDF salt, fresh per file
FILE_ID_SIZE: Final = 16  # bytes: random, repeated in every record frame
NONCE_PREFIX_SIZE: Final = 7  # bytes: 7 + 4 (counter) + 1 (kind) = the 12-byte GCM nonce
TAG_SIZE: Final = 16  # bytes: GCM tag
COMMITMENT_SIZE: Final = 32
HEADER_MAC_SIZE: Final = 32
CRC_SIZE: Final = 4

#: 64 KiB: the AES-GCM throughput peak on this machine kind (perf-baseline §4).
DEFAULT_CHUNK_SIZE: Final = 64 * 1024
MIN_CHUNK_SIZE: Final = 16
#: A hostile header must not make a reader allocate more than this per chunk.
MAX_CHUNK_SIZE: Final = 16 * 1024 * 1024
MAX_PROLOGUE_SIZE: Final = 1024 * 1024
MAX_HEADER_SIZE: Final = 64 * 1024
#: The chunk counter is 32 bits wide inside the nonce.
MAX_CHUNK_INDEX: Final = 2**32 - 1

_FIXED = struct.Struct(">8sHHIII16s32s7sxIq")
FIXED_HEADER_SIZE: Final = _FIXED.size  # 92
_HEADER_TRAILER_SIZE: Final = COMMITMENT_SIZE + HEADER_MAC_SIZE + CRC_SIZE

_FRAME = struct.Struct(">16sIIB3x")
FRAME_BODY_SIZE: Final = _FRAME.size  # 28: the part of a frame bound as associated data
FRAME_SIZE: Final = FRAME_BODY_SIZE + CRC_SIZE  # 32
RECORD_OVERHEAD: Final = FRAME_SIZE + TAG_SIZE

_HKDF_INFO_PREFIX: Final = b"rtms-recorder/segment/v1 "


class RecordKind:
    """The last byte of every nonce, repeated in the frame: which nonce domain a record uses.

    Distinct values keep the writer's records, recovery's records and the prologue apart, so no
    two records of one file ever share a nonce, even when recovery seals the end a second time.
    """

    #: A body chunk that is not the last.
    BODY: Final = 0x00
    #: The last body chunk, sealed by the writer's ``close()``.
    LAST: Final = 0x01
    #: The last body chunk, sealed by crash recovery (always empty).
    LAST_RECOVERED: Final = 0x03
    #: The prologue, written once by the writer's ``close()``; counter 0.
    PROLOGUE: Final = 0x80
    #: The prologue rebuilt by crash recovery; the counter is random (see recovery.py).
    PROLOGUE_RECOVERED: Final = 0x82

    BODY_KINDS: Final = frozenset({BODY, LAST, LAST_RECOVERED})
    LAST_KINDS: Final = frozenset({LAST, LAST_RECOVERED})
    PROLOGUE_KINDS: Final = frozenset({PROLOGUE, PROLOGUE_RECOVERED})
    RECOVERED_KINDS: Final = frozenset({LAST_RECOVERED, PROLOGUE_RECOVERED})


@dataclass(frozen=True, slots=True)
class SegmentKeys:
    """What the data key expands to. Never logged, never written."""

    payload: bytes = field(repr=False)
    commitment: bytes = field(repr=False)
    header_mac: bytes = field(repr=False)


def derive_keys(data_key: bytes, salt: bytes) -> SegmentKeys:
    """HKDF-SHA256 over the per-file salt; one label per use so no key serves two purposes."""
    if len(data_key) != KEY_SIZE:
        raise LocalProtocolError(f"data key must be {KEY_SIZE} bytes, got {len(data_key)}")

    def expand(label: bytes) -> bytes:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO_PREFIX + label)
        return hkdf.derive(data_key)

    return SegmentKeys(
        payload=expand(b"payload-key"),
        commitment=expand(b"key-commitment"),
        header_mac=expand(b"header-mac"),
    )


def canonical_json(value: Mapping[str, MetadataValue]) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN: one byte string per value, for binding."""
    for key, item in value.items():
        if not isinstance(key, str):
            raise LocalProtocolError(f"metadata keys must be strings, got {key!r}")
        if item is not None and not isinstance(item, str | int | float | bool):
            raise LocalProtocolError(
                f"metadata value for {key!r} must be str, int, float, bool or None, "
                f"got {type(item).__name__}"
            )
        if isinstance(item, float) and not math.isfinite(item):
            raise LocalProtocolError(f"metadata value for {key!r} must be finite")
    return json.dumps(
        dict(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """The parsed header. Every field is public (readable without a key) but only *authentic*
    once the reader has checked the key commitment and the header MAC."""

    format_version: int
    algorithm: int
    chunk_size: int
    prologue_size: int
    file_id: bytes
    salt: bytes
    nonce_prefix: bytes
    identity: SegmentIdentity
    key_id: str
    wrapped_key: bytes = field(repr=False)
    commitment: bytes = field(repr=False)
    mac: bytes = field(repr=False)
    #: The exact header bytes as stored.
    raw: bytes = field(repr=False)

    @property
    def length(self) -> int:
        return len(self.raw)

    @property
    def digest(self) -> bytes:
        """SHA-256 of the whole header: part of every record's associated data."""
        return hashlib.sha256(self.raw).digest()

    @property
    def prologue_slot_size(self) -> int:
        return FRAME_SIZE + self.prologue_size + TAG_SIZE

    @property
    def body_offset(self) -> int:
        return self.length + self.prologue_slot_size

    @property
    def file_id_hex(self) -> str:
        return self.file_id.hex()


def _pack_str(value: str, what: str) -> bytes:
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"{what} is not valid Unicode text") from exc
    if len(data) > 0xFFFF:
        raise LocalProtocolError(f"{what} is {len(data)} bytes; at most 65535 fit the header")
    return struct.pack(">H", len(data)) + data


def _pack_bytes(value: bytes, what: str) -> bytes:
    if len(value) > 0xFFFF:
        raise LocalProtocolError(f"{what} is {len(value)} bytes; at most 65535 fit the header")
    return struct.pack(">H", len(value)) + value


def build_header(
    *,
    identity: SegmentIdentity,
    key_id: str,
    wrapped_key: bytes,
    keys: SegmentKeys,
    file_id: bytes,
    salt: bytes,
    nonce_prefix: bytes,
    chunk_size: int,
    prologue_size: int,
) -> SegmentHeader:
    """Lay out, commit, MAC and checksum a header."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise LocalProtocolError(
            f"chunk_size {chunk_size} outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes"
        )
    if not 0 <= prologue_size <= MAX_PROLOGUE_SIZE:
        raise LocalProtocolError(f"prologue_size {prologue_size} outside 0..{MAX_PROLOGUE_SIZE}")
    if not 0 <= identity.segment_index <= 0xFFFFFFFF:
        raise LocalProtocolError(f"segment_index {identity.segment_index} does not fit 32 bits")
    if not -(2**63) <= identity.created_ms < 2**63:
        raise LocalProtocolError(f"created_ms {identity.created_ms} does not fit 64 bits")
    metadata = canonical_json(identity.metadata)
    variable = b"".join(
        (
            _pack_str(identity.recording_id, "recording_id"),
            _pack_str(identity.track, "track"),
            _pack_str(key_id, "key_id"),
            _pack_bytes(wrapped_key, "wrapped key"),
            struct.pack(">I", len(metadata)),
            metadata,
        )
    )
    length = FIXED_HEADER_SIZE + len(variable) + _HEADER_TRAILER_SIZE
    if length > MAX_HEADER_SIZE:
        raise LocalProtocolError(f"header would be {length} bytes; keep metadata small")
    fixed = _FIXED.pack(
        MAGIC,
        FORMAT_VERSION,
        ALGORITHM_AES256GCM_HKDF_SHA256,
        length,
        chunk_size,
        prologue_size,
        file_id,
        salt,
        nonce_prefix,
        identity.segment_index,
        identity.created_ms,
    )
    committed = fixed + variable + keys.commitment
    mac = hmac.digest(keys.header_mac, committed, "sha256")
    checked = committed + mac
    raw = checked + struct.pack(">I", zlib.crc32(checked))
    return parse_header(raw)


def header_length_from_prefix(prefix: bytes, *, source: str) -> int:
    """Validate the first ``FIXED_HEADER_SIZE`` bytes enough to know how many to read."""
    if len(prefix) >= len(MAGIC) and prefix[: len(MAGIC)] != MAGIC:
        raise DecryptionFailed(f"{source}: not an rtms-recorder sealed segment (bad magic)")
    if len(prefix) < FIXED_HEADER_SIZE:
        raise TruncatedFile(
            f"{source}: {len(prefix)} bytes, shorter than the {FIXED_HEADER_SIZE}-byte fixed header"
        )
    magic, version, algorithm, length = struct.unpack_from(">8sHHI", prefix)
    if magic != MAGIC:
        raise DecryptionFailed(f"{source}: not an rtms-recorder sealed segment (bad magic)")
    if version != FORMAT_VERSION:
        raise DecryptionFailed(f"{source}: format version {version} is not supported (only 1)")
    if algorithm != ALGORITHM_AES256GCM_HKDF_SHA256:
        raise DecryptionFailed(f"{source}: algorithm id {algorithm} is not supported (only 1)")
    if not FIXED_HEADER_SIZE + _HEADER_TRAILER_SIZE <= length <= MAX_HEADER_SIZE:
        raise DecryptionFailed(f"{source}: header length field {length} is corrupt")
    return int(length)


def parse_header(raw: bytes, *, source: str = "header") -> SegmentHeader:
    """Parse and checksum a complete header. Checks structure only; no key involved."""
    length = header_length_from_prefix(raw, source=source)
    if len(raw) < length:
        raise TruncatedFile(f"{source}: header truncated ({len(raw)} of {length} bytes)")
    raw = raw[:length]
    (stored_crc,) = struct.unpack_from(">I", raw, length - CRC_SIZE)
    if zlib.crc32(raw[: length - CRC_SIZE]) != stored_crc:
        raise DecryptionFailed(f"{source}: header checksum mismatch (bit flip or overwrite)")
    (
        _magic,
        version,
        algorithm,
        _length,
        chunk_size,
        prologue_size,
        file_id,
        salt,
        nonce_prefix,
        segment_index,
        created_ms,
    ) = _FIXED.unpack_from(raw)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE or prologue_size > MAX_PROLOGUE_SIZE:
        raise DecryptionFailed(f"{source}: chunk or prologue size out of range")
    end = length - _HEADER_TRAILER_SIZE
    pos = FIXED_HEADER_SIZE
    fields: list[bytes] = []
    try:
        for _ in range(4):
            (size,) = struct.unpack_from(">H", raw, pos)
            pos += 2
            fields.append(raw[pos : pos + size])
            pos += size
        (size,) = struct.unpack_from(">I", raw, pos)
        pos += 4
        metadata_raw = raw[pos : pos + size]
        pos += size
        if pos != end:
            raise ValueError("field lengths do not add up to the header length")
        recording_id, track, key_id = (f.decode("utf-8") for f in fields[:3])
        metadata = json.loads(metadata_raw.decode("utf-8"))
        if not isinstance(metadata, dict):
            raise ValueError("metadata is not a JSON object")
    except (struct.error, ValueError) as exc:
        raise DecryptionFailed(f"{source}: header fields are corrupt ({exc})") from exc
    identity = SegmentIdentity(
        recording_id=recording_id,
        track=track,
        segment_index=segment_index,
        created_ms=created_ms,
        metadata=metadata,
    )
    return SegmentHeader(
        format_version=version,
        algorithm=algorithm,
        chunk_size=chunk_size,
        prologue_size=prologue_size,
        file_id=file_id,
        salt=salt,
        nonce_prefix=nonce_prefix,
        identity=identity,
        key_id=key_id,
        wrapped_key=fields[3],
        commitment=raw[end : end + COMMITMENT_SIZE],
        mac=raw[end + COMMITMENT_SIZE : end + COMMITMENT_SIZE + HEADER_MAC_SIZE],
        raw=raw,
    )


def commitment_matches(header: SegmentHeader, keys: SegmentKeys) -> bool:
    return hmac.compare_digest(header.commitment, keys.commitment)


def header_mac_matches(header: SegmentHeader, keys: SegmentKeys) -> bool:
    covered = header.raw[: header.length - HEADER_MAC_SIZE - CRC_SIZE]
    return hmac.compare_digest(header.mac, hmac.digest(keys.header_mac, covered, "sha256"))


@dataclass(frozen=True, slots=True)
class Frame:
    """The clear framing in front of every record: lets a reader name a misplaced record before
    the AEAD check (which authenticates these same bytes as associated data)."""

    file_id: bytes
    index: int
    length: int
    kind: int
    #: The 28 bytes bound as associated data.
    body: bytes = field(repr=False)


def encode_frame(file_id: bytes, index: int, length: int, kind: int) -> bytes:
    body = _FRAME.pack(file_id, index, length, kind)
    return body + struct.pack(">I", zlib.crc32(body))


def decode_frame(data: bytes) -> Frame | None:
    """The frame in ``data[:FRAME_SIZE]``, or None when its checksum does not match."""
    body = data[:FRAME_BODY_SIZE]
    (stored_crc,) = struct.unpack_from(">I", data, FRAME_BODY_SIZE)
    if zlib.crc32(body) != stored_crc:
        return None
    file_id, index, length, kind = _FRAME.unpack(body)
    return Frame(file_id=file_id, index=index, length=length, kind=kind, body=body)


def nonce(prefix: bytes, index: int, kind: int) -> bytes:
    """prefix (7) || chunk counter (4, big-endian) || record kind (1)."""
    return prefix + index.to_bytes(4, "big") + bytes((kind,))


def record_aad(header_digest: bytes, frame_body: bytes) -> bytes:
    """Header digest first: a record is only valid under the header it was written with."""
    return header_digest + frame_body
