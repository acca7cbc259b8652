"""Random access into one sealed segment: decrypt only the chunks that cover a byte range.

``reader.py`` streams a segment front to back; a player seeking in a two-hour call needs the
bytes of one second without decrypting the hour before it. ``SealedIndex`` reads a seekable
sealed file once, frame by frame (the clear framing names each record's length, so the index is
built without decrypting anything but the prologue), then ``read(start, end)`` decrypts only the
covering chunks.

Rule: the same checks as the streaming reader, nothing returned unauthenticated. The header is
authenticated (key commitment and MAC) and the prologue decrypted when the index is built; the
chain of frames must be this file's, numbered 0, 1, 2... and end in exactly one last-chunk
record with nothing after it (a truncated or extended file is refused before any read); each
chunk is decrypted under the nonce of its *position*, so a chunk moved or swapped after the
index was built fails authentication. What random access cannot check is the whole plaintext's
SHA-256 sealed at recording: only a full pass can (``media.py`` does it when it computes peaks).

Memory: the index is 24 bytes per chunk (a five-minute segment at 64 KiB chunks: ~150 chunks);
a read holds the chunks it covers. Blocking: run it in a thread.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder.crypto import _format as fmt
from recorder.crypto._format import RecordKind, SegmentHeader
from recorder.crypto.keyring import SegmentKeyOpener
from recorder.crypto.reader import (
    authenticate_header,
    open_prologue,
    read_exact,
    read_header_from,
)
from recorder.errors import ChunkOrderError, DecryptionFailed, LocalProtocolError, TruncatedFile

#: Bytes one ``read`` may return (a range request is served in pieces of at most this).
MAX_READ: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Chunk:
    #: Offset of the record's frame in the sealed file.
    file_offset: int
    #: Offset of the chunk's first plaintext byte in the logical plaintext (prologue first).
    plain_offset: int
    length: int
    kind: int


class SealedIndex:
    """A sealed segment, indexed for random access. ``stream`` must be seekable and stay open
    (and unchanged) while the index is used; the caller owns it."""

    def __init__(self, stream: BinaryIO, keyring: SegmentKeyOpener, *, source: str) -> None:
        self._stream = stream
        self._source = source
        stream.seek(0)
        self.header: SegmentHeader = read_header_from(stream, source=source)
        keys = authenticate_header(self.header, keyring=keyring, data_key=None, source=source)
        self._aead = AESGCM(keys.payload)
        self._digest = self.header.digest
        slot = read_exact(stream, self.header.prologue_slot_size)
        if len(slot) < self.header.prologue_slot_size:
            raise TruncatedFile(f"{source}: file ends inside the prologue slot")
        if not any(slot):
            raise TruncatedFile(f"{source}: the prologue slot is empty: never closed")
        self.prologue, self.recovered = open_prologue(self.header, self._aead, slot, source=source)
        self._chunks = self._scan()
        self._starts = [c.plain_offset for c in self._chunks]
        last = self._chunks[-1]
        #: Bytes of logical plaintext: prologue + body.
        self.size: int = last.plain_offset + last.length

    def _scan(self) -> list[_Chunk]:
        header, stream, source = self.header, self._stream, self._source
        chunks: list[_Chunk] = []
        offset = header.body_offset
        plain = len(self.prologue)
        stream.seek(offset)
        while True:
            index = len(chunks)
            raw = read_exact(stream, fmt.FRAME_SIZE)
            if not raw:
                raise TruncatedFile(
                    f"{source}: ends after {index} chunks without a final chunk (truncated)"
                )
            if len(raw) < fmt.FRAME_SIZE:
                raise TruncatedFile(f"{source}: torn chunk frame at offset {offset}")
            frame = fmt.decode_frame(raw)
            if frame is None:
                raise DecryptionFailed(
                    f"{source}: framing of chunk {index} at offset {offset} is corrupt"
                )
            if frame.file_id != header.file_id:
                raise ChunkOrderError(
                    f"{source}: chunk {index} at offset {offset} belongs to another file"
                )
            if frame.kind not in RecordKind.BODY_KINDS:
                raise ChunkOrderError(
                    f"{source}: chunk {index} at offset {offset} has kind {frame.kind}, "
                    "not a body chunk"
                )
            if frame.index != index:
                raise ChunkOrderError(
                    f"{source}: chunk {index} at offset {offset} claims index {frame.index}: "
                    "chunks reordered, duplicated or missing"
                )
            if frame.length > header.chunk_size:
                raise DecryptionFailed(
                    f"{source}: chunk {index} claims {frame.length} bytes, more than the chunk "
                    f"size {header.chunk_size}"
                )
            chunks.append(_Chunk(offset, plain, frame.length, frame.kind))
            plain += frame.length
            offset += fmt.FRAME_SIZE + frame.length + fmt.TAG_SIZE
            stream.seek(offset)
            if frame.kind in RecordKind.LAST_KINDS:
                break
        end = stream.seek(0, 2)
        if end < offset:
            raise TruncatedFile(f"{source}: the final chunk {len(chunks) - 1} is cut short")
        if end > offset:
            raise ChunkOrderError(
                f"{source}: {end - offset} bytes after the final chunk at offset {offset}"
            )
        return chunks

    def read(self, start: int, end: int) -> bytes:
        """Logical plaintext bytes ``[start, end)`` (prologue first, then the body), every chunk
        they touch decrypted and authenticated."""
        if not 0 <= start <= end <= self.size:
            raise LocalProtocolError(
                f"{self._source}: read [{start}, {end}) outside the plaintext (0..{self.size})"
            )
        if end - start > MAX_READ:
            raise LocalProtocolError(f"{self._source}: one read is at most {MAX_READ} bytes")
        parts: list[bytes] = []
        prologue_len = len(self.prologue)
        if start < prologue_len:
            parts.append(self.prologue[start : min(end, prologue_len)])
        position = max(start, prologue_len)
        if position < end:
            first = bisect.bisect_right(self._starts, position) - 1
            for number in range(first, len(self._chunks)):
                chunk = self._chunks[number]
                if chunk.plain_offset >= end:
                    break
                if chunk.length == 0:
                    continue
                plaintext = self._decrypt(number, chunk)
                lo = max(start, chunk.plain_offset) - chunk.plain_offset
                hi = min(end, chunk.plain_offset + chunk.length) - chunk.plain_offset
                parts.append(plaintext[lo:hi])
        return b"".join(parts)

    def _decrypt(self, number: int, chunk: _Chunk) -> bytes:
        stream = self._stream
        stream.seek(chunk.file_offset)
        raw = read_exact(stream, fmt.FRAME_SIZE + chunk.length + fmt.TAG_SIZE)
        frame = fmt.decode_frame(raw) if len(raw) >= fmt.FRAME_SIZE else None
        if frame is None or len(raw) < fmt.FRAME_SIZE + chunk.length + fmt.TAG_SIZE:
            raise TruncatedFile(f"{self._source}: chunk {number} changed since it was indexed")
        try:
            # The nonce is the position's, not the frame's claim: a moved chunk fails here.
            return self._aead.decrypt(
                fmt.nonce(self.header.nonce_prefix, number, chunk.kind),
                raw[fmt.FRAME_SIZE :],
                fmt.record_aad(self._digest, frame.body),
            )
        except InvalidTag as exc:
            raise DecryptionFailed(
                f"{self._source}: chunk {number} at offset {chunk.file_offset} failed "
                "authentication (altered bytes)"
            ) from exc

    @property
    def chunk_count(self) -> int:
        return len(self._chunks)
