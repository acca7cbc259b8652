"""Streaming, verifying reader of sealed segments.

Rule: nothing leaves this module that has not been authenticated, and every way a file can be
wrong has its own error (docs/encrypted-format.md, "What the reader detects"):

* ``DecryptionFailed``: bytes altered (a flipped bit in the header, the prologue or a chunk).
* ``TruncatedFile``: the file ends before the final chunk (or the writer never closed it).
* ``ChunkOrderError``: a chunk out of place: reordered, duplicated, or spliced in from another
  file (the message says which, from the clear per-record index and file id).
* ``HeaderMismatch``: a header that is not this payload's, or not the expected recording, or a
  key that does not commit to it.

Memory is one chunk at a time; the source is read strictly forward, so it may be a pipe or an
HTTP body as well as a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder.crypto import _format as fmt
from recorder.crypto._format import RecordKind, SegmentHeader, SegmentKeys
from recorder.crypto.keyring import SegmentKeyOpener
from recorder.errors import (
    ChunkOrderError,
    DecryptionFailed,
    HeaderMismatch,
    KeyMismatch,
    LocalProtocolError,
    TruncatedFile,
)
from recorder.sink import SegmentIdentity

Source = Path | str | BinaryIO


def read_exact(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at end of file."""
    data = stream.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    remaining = size - len(data)
    while remaining:
        more = stream.read(remaining)
        if not more:
            break
        parts.append(more)
        remaining -= len(more)
    return b"".join(parts)


def read_header_from(stream: BinaryIO, *, source: str) -> SegmentHeader:
    prefix = read_exact(stream, fmt.FIXED_HEADER_SIZE)
    length = fmt.header_length_from_prefix(prefix, source=source)
    rest = read_exact(stream, length - len(prefix))
    return fmt.parse_header(prefix + rest, source=source)


def read_header(path: Path | str) -> SegmentHeader:
    """The header's public fields, checksummed but not yet authenticated (no key needed)."""
    with open(path, "rb") as stream:
        return read_header_from(stream, source=str(path))


def check_expected(header: SegmentHeader, expect: SegmentIdentity, *, source: str) -> None:
    found = header.identity
    if (
        found.recording_id != expect.recording_id
        or found.track != expect.track
        or found.segment_index != expect.segment_index
        or found.created_ms != expect.created_ms
        or fmt.canonical_json(found.metadata) != fmt.canonical_json(expect.metadata)
    ):
        raise HeaderMismatch(
            f"{source}: header is recording {found.recording_id!r} track {found.track!r} "
            f"segment {found.segment_index} created {found.created_ms}, expected recording "
            f"{expect.recording_id!r} track {expect.track!r} segment {expect.segment_index} "
            f"created {expect.created_ms} (or different metadata)"
        )


def authenticate_header(
    header: SegmentHeader,
    *,
    keyring: SegmentKeyOpener | None,
    data_key: bytes | None,
    source: str,
) -> SegmentKeys:
    """Unwrap the data key, check the key commitment, then the header MAC."""
    if data_key is None:
        if keyring is None:
            raise LocalProtocolError("reading a segment needs a keyring or a data key")
        try:
            data_key = keyring.unwrap_segment_key(header)
        except KeyMismatch as exc:
            raise HeaderMismatch(f"{source}: {exc}") from exc
    keys = fmt.derive_keys(data_key, header.salt)
    if not fmt.commitment_matches(header, keys):
        raise HeaderMismatch(
            f"{source}: the data key from {header.key_id} does not commit to this file "
            "(wrong key or a forged header)"
        )
    if not fmt.header_mac_matches(header, keys):
        raise HeaderMismatch(
            f"{source}: header failed authentication under its own key (fields altered)"
        )
    return keys


@dataclass(frozen=True, slots=True)
class SegmentDigest:
    header: SegmentHeader
    plaintext_size: int
    #: SHA-256 hex of prologue + body.
    sha256: str
    body_chunks: int
    recovered: bool


class SegmentReader:
    """Opens, authenticates and streams one sealed segment. Use as a context manager.

    Iterating yields the prologue first, then the body, chunk by chunk, each verified.
    """

    def __init__(
        self,
        source: Source,
        keyring: SegmentKeyOpener | None = None,
        *,
        expect: SegmentIdentity | None = None,
        data_key: bytes | None = None,
    ) -> None:
        if isinstance(source, Path | str):
            self._stream: BinaryIO = open(source, "rb")  # noqa: SIM115 - closed in close()
            self._owns_stream = True
            self._source = str(source)
        else:
            self._stream = source
            self._owns_stream = False
            self._source = getattr(source, "name", "<stream>")
        try:
            self.header = read_header_from(self._stream, source=self._source)
            if expect is not None:
                check_expected(self.header, expect, source=self._source)
            keys = authenticate_header(
                self.header, keyring=keyring, data_key=data_key, source=self._source
            )
        except BaseException:
            self.close()
            raise
        self._aead = AESGCM(keys.payload)
        self._digest = self.header.digest
        self._started = False
        self.recovered = False
        self.body_chunks = 0
        self.plaintext_size = 0

    @property
    def identity(self) -> SegmentIdentity:
        return self.header.identity

    def close(self) -> None:
        if self._owns_stream:
            self._stream.close()

    def __enter__(self) -> SegmentReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise LocalProtocolError("a SegmentReader can be iterated once")
        self._started = True
        header = self.header
        prologue = self._read_prologue()
        self.plaintext_size += len(prologue)
        if prologue:
            yield prologue
        offset = header.body_offset
        index = 0
        while True:
            frame_bytes = read_exact(self._stream, fmt.FRAME_SIZE)
            if not frame_bytes:
                raise TruncatedFile(
                    f"{self._source}: ends after {index} chunks without a final chunk "
                    "(truncated, or the writer died: run recover on the .part file)"
                )
            if len(frame_bytes) < fmt.FRAME_SIZE:
                raise TruncatedFile(f"{self._source}: torn chunk frame at offset {offset}")
            frame = fmt.decode_frame(frame_bytes)
            if frame is None:
                raise DecryptionFailed(
                    f"{self._source}: framing of chunk {index} at offset {offset} is corrupt"
                )
            self._check_body_frame(frame, index, offset)
            body = read_exact(self._stream, frame.length + fmt.TAG_SIZE)
            if len(body) < frame.length + fmt.TAG_SIZE:
                raise TruncatedFile(
                    f"{self._source}: chunk {index} at offset {offset} is cut short "
                    f"({len(body)} of {frame.length + fmt.TAG_SIZE} bytes)"
                )
            try:
                plaintext = self._aead.decrypt(
                    fmt.nonce(header.nonce_prefix, index, frame.kind),
                    body,
                    fmt.record_aad(self._digest, frame.body),
                )
            except InvalidTag as exc:
                raise DecryptionFailed(
                    f"{self._source}: chunk {index} at offset {offset} failed authentication "
                    "(altered bytes)"
                ) from exc
            self.body_chunks += 1
            self.plaintext_size += len(plaintext)
            if plaintext:
                yield plaintext
            offset += fmt.FRAME_SIZE + len(body)
            index += 1
            if frame.kind in RecordKind.LAST_KINDS:
                self.recovered = self.recovered or frame.kind in RecordKind.RECOVERED_KINDS
                break
        trailing = read_exact(self._stream, fmt.FRAME_SIZE)
        if trailing:
            raise ChunkOrderError(
                f"{self._source}: {len(trailing)}+ bytes after the final chunk {index - 1} "
                f"at offset {offset} (a chunk appended after the end)"
            )

    def _check_body_frame(self, frame: fmt.Frame, index: int, offset: int) -> None:
        check_body_frame(self.header, frame, index, offset, source=self._source)

    def _read_prologue(self) -> bytes:
        header = self.header
        slot = read_exact(self._stream, header.prologue_slot_size)
        if len(slot) < header.prologue_slot_size:
            raise TruncatedFile(f"{self._source}: file ends inside the prologue slot")
        if not any(slot):
            raise TruncatedFile(
                f"{self._source}: the prologue slot is empty: this segment was never closed "
                "(run recover on it)"
            )
        plaintext, recovered = open_prologue(header, self._aead, slot, source=self._source)
        self.recovered = recovered
        return plaintext


def check_body_frame(
    header: SegmentHeader, frame: fmt.Frame, index: int, offset: int, *, source: str
) -> None:
    """Raise unless ``frame`` is body chunk ``index`` of this file (shared with the opener)."""
    if frame.file_id != header.file_id:
        raise ChunkOrderError(
            f"{source}: chunk {index} at offset {offset} belongs to file "
            f"{frame.file_id.hex()}, not {header.file_id_hex}: spliced in from another file"
        )
    if frame.kind in RecordKind.PROLOGUE_KINDS:
        raise ChunkOrderError(
            f"{source}: a prologue record sits where chunk {index} should be (offset {offset})"
        )
    if frame.kind not in RecordKind.BODY_KINDS:
        raise DecryptionFailed(
            f"{source}: chunk {index} at offset {offset} has unknown kind {frame.kind}"
        )
    if frame.index < index:
        raise ChunkOrderError(
            f"{source}: chunk {index} at offset {offset} claims index {frame.index}, "
            "which was already read: a duplicated chunk"
        )
    if frame.index > index:
        raise ChunkOrderError(
            f"{source}: chunk {index} at offset {offset} claims index {frame.index}: "
            "chunks reordered or missing"
        )
    if frame.length > header.chunk_size:
        raise DecryptionFailed(
            f"{source}: chunk {index} claims {frame.length} bytes, more than the "
            f"chunk size {header.chunk_size}"
        )


def open_prologue(
    header: SegmentHeader, aead: AESGCM, slot: bytes, *, source: str
) -> tuple[bytes, bool]:
    """Authenticate a filled prologue slot: (plaintext, sealed-by-recovery)."""
    frame = fmt.decode_frame(slot)
    if frame is None:
        raise DecryptionFailed(f"{source}: the prologue framing is corrupt")
    if frame.file_id != header.file_id:
        raise HeaderMismatch(
            f"{source}: header is of file {header.file_id_hex} but the records are of file "
            f"{frame.file_id.hex()}: the header was swapped in from another file"
        )
    if frame.kind not in RecordKind.PROLOGUE_KINDS or frame.length != header.prologue_size:
        raise DecryptionFailed(f"{source}: the prologue framing does not match the header")
    if frame.kind == RecordKind.PROLOGUE and frame.index != 0:
        raise DecryptionFailed(f"{source}: the prologue framing claims counter {frame.index}")
    try:
        plaintext = aead.decrypt(
            fmt.nonce(header.nonce_prefix, frame.index, frame.kind),
            slot[fmt.FRAME_SIZE :],
            fmt.record_aad(header.digest, frame.body),
        )
    except InvalidTag as exc:
        raise DecryptionFailed(f"{source}: the prologue failed authentication") from exc
    return plaintext, frame.kind in RecordKind.RECOVERED_KINDS


def iter_plaintext(
    source: Source,
    keyring: SegmentKeyOpener | None = None,
    *,
    expect: SegmentIdentity | None = None,
    data_key: bytes | None = None,
) -> Iterator[bytes]:
    """Prologue, then body, verified chunk by chunk. Errors surface where they are met.

    Args:
        source: a path, or any binary stream read strictly forward (file, pipe, HTTP body).
        keyring: opens the segment's data key (a ``RecordingKeyring``).
        expect: when given, every field must match the header (metadata included), else
            ``HeaderMismatch`` before any key is fetched.
        data_key: the plaintext data key, instead of a keyring (the writer's own read-back).
    """
    with SegmentReader(source, keyring, expect=expect, data_key=data_key) as reader:
        yield from reader


def digest_segment(
    source: Source,
    keyring: SegmentKeyOpener | None = None,
    *,
    expect: SegmentIdentity | None = None,
    data_key: bytes | None = None,
) -> SegmentDigest:
    """Decrypt and verify a whole segment, returning the SHA-256 of its logical plaintext."""
    hasher = hashlib.sha256()
    with SegmentReader(source, keyring, expect=expect, data_key=data_key) as reader:
        for piece in reader:
            hasher.update(piece)
        return SegmentDigest(
            header=reader.header,
            plaintext_size=reader.plaintext_size,
            sha256=hasher.hexdigest(),
            body_chunks=reader.body_chunks,
            recovered=reader.recovered,
        )
