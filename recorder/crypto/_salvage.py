"""Salvage of a damaged ``.part``: find every authentic record, name the holes, re-seal.

The pieces ``recovery.recover`` is made of (see its module docstring for the rules): a scanner
that reads records by their framing and resynchronises after damage on the file id every frame
carries, the plan of a recovered body (authentic records and holes, in order), and the writer
of the new sealed file under fresh per-file keys. Blocking file I/O throughout: run in a thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder.crypto import _format as fmt
from recorder.crypto._format import Frame, RecordKind, SegmentHeader
from recorder.errors import StorageError

logger = logging.getLogger(__name__)

#: Gap cause of a hole left by a chunk that failed authentication.
CORRUPT_CHUNK: Final = "corrupt_chunk"
#: Metadata key of a recovered segment's holes (compact JSON text, see ``holes_metadata``).
HOLES_KEY: Final = "recovered.holes"
_SCAN_BLOCK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class RecoveredHole:
    """Plaintext of the original that failed authentication and is not in the recovered file."""

    #: Where in the recovered body the lost bytes belonged.
    body_offset: int
    #: Plaintext bytes lost: exact from the framing; None when the damage changed lengths.
    length: int | None
    #: Chunks of the original lost, ``first_chunk`` included, ``end_chunk`` excluded.
    first_chunk: int
    end_chunk: int
    #: True when the recovered body holds ``length`` zero bytes in their place (audio).
    zero_filled: bool
    cause: str = CORRUPT_CHUNK


def holes_metadata(holes: tuple[RecoveredHole, ...]) -> str:
    return json.dumps(
        [[h.body_offset, h.length, h.first_chunk, h.end_chunk, h.zero_filled] for h in holes],
        separators=(",", ":"),
    )


def holes_from_metadata(value: object) -> tuple[RecoveredHole, ...]:
    """The holes a recovered segment's metadata records (empty when none, or unreadable)."""
    if not isinstance(value, str):
        return ()
    try:
        rows = json.loads(value)
        return tuple(
            RecoveredHole(
                body_offset=int(offset),
                length=None if length is None else int(length),
                first_chunk=int(first),
                end_chunk=int(end),
                zero_filled=bool(zero),
            )
            for offset, length, first, end, zero in rows
        )
    except (ValueError, TypeError):
        logger.error("recovered segment metadata has unreadable holes: %.200s", value)
        return ()


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    frame: Frame

    @property
    def end(self) -> int:
        return self.offset + fmt.RECORD_OVERHEAD + self.frame.length


@dataclass(slots=True)
class Walk:
    """The plan of a recovery: authentic records and holes in order, and what was cut."""

    items: list[Record | RecoveredHole] = dataclasses.field(default_factory=list)
    chunks: int = 0
    body_bytes: int = 0
    #: Length of the recovered body (authentic bytes plus zero-filled holes).
    out_bytes: int = 0
    last_seen: bool = False
    skipped: int = 0
    torn: int = 0
    stop_reason: str | None = None

    @property
    def holes(self) -> tuple[RecoveredHole, ...]:
        return tuple(item for item in self.items if isinstance(item, RecoveredHole))


class RecordScanner:
    """Random access to the records of a ``.part`` (positioned reads, no shared offset)."""

    def __init__(self, fd: int, header: SegmentHeader, aead: AESGCM, size: int) -> None:
        self.fd = fd
        self.header = header
        self.aead = aead
        self.size = size
        self._digest = header.digest

    def authentic_at(self, offset: int, index: int, *, exact: bool) -> Record | None:
        """The record at ``offset`` if it authenticates at ``index`` (or later, if not exact)."""
        frame = self._frame_at(offset)
        if frame is None or (frame.index != index if exact else frame.index < index):
            return None
        return Record(offset, frame) if self.open(Record(offset, frame)) is not None else None

    def open(self, record: Record) -> bytes | None:
        frame = record.frame
        if record.end > self.size:
            return None
        sealed = os.pread(self.fd, frame.length + fmt.TAG_SIZE, record.offset + fmt.FRAME_SIZE)
        try:
            return self.aead.decrypt(
                fmt.nonce(self.header.nonce_prefix, frame.index, frame.kind),
                sealed,
                fmt.record_aad(self._digest, frame.body),
            )
        except InvalidTag:
            return None

    def diagnose(self, offset: int, index: int) -> str:
        frame = self._frame_at(offset)
        if frame is None or frame.index != index:
            return f"torn or foreign chunk frame at offset {offset}"
        if Record(offset, frame).end > self.size:
            return f"chunk {index} at offset {offset} is cut short"
        return f"chunk {index} at offset {offset} fails authentication"

    def resync(self, start: int, index: int) -> Record | None:
        """The first record from ``start`` on that authenticates at ``index`` or later."""
        for at in self._file_id_offsets(start, self.size):
            found = self.authentic_at(at, index, exact=False)
            if found is not None:
                return found
        return None

    def lost_length(self, start: int, end: int, first: int, stop: int) -> int | None:
        """Plaintext bytes of records ``first..stop-1``, which fill ``start..end`` but failed.

        Each record is its plaintext plus a fixed overhead, so the span gives the total, and
        every frame that still checks out (CRC) gives its own length: the two must agree.
        None when they do not (bytes were inserted or deleted, not just altered), or when
        too many frames are unreadable to tell.
        """
        count = stop - first
        total = (end - start) - fmt.RECORD_OVERHEAD * count
        if not 0 <= total <= count * self.header.chunk_size:
            return None
        known = [
            frame for frame in self._frames_between(start, end) if first <= frame[1].index < stop
        ]
        indices = {frame.index for _, frame in known}
        if len(indices) != len(known):
            return None
        known_sum = sum(frame.length for _, frame in known)
        for at, frame in known:  # a readable frame must end where a record (or the span) ends
            ends = at + fmt.RECORD_OVERHEAD + frame.length
            if ends > end or (ends < end and self._frame_at(ends) is None and count == len(known)):
                return None
        unknown = count - len(known)
        if unknown == 0:
            return total if known_sum == total else None
        rest = total - known_sum
        return total if 0 <= rest <= unknown * self.header.chunk_size else None

    def _frames_between(self, start: int, end: int) -> list[tuple[int, Frame]]:
        """Every frame that passes its checks in ``start..end`` (read a block at a time)."""
        found: list[tuple[int, Frame]] = []
        for at in self._file_id_offsets(start, end):
            frame = self._frame_at(at)
            if frame is not None:
                found.append((at, frame))
        return found

    def _file_id_offsets(self, start: int, end: int) -> Iterator[int]:
        """Offsets in ``start..end`` where the file id begins; memory bounded by one block."""
        needle = self.header.file_id
        offset = start
        while offset < end:
            # The overlap lets a file id that straddles two blocks be found in the first.
            block = os.pread(self.fd, min(_SCAN_BLOCK + len(needle) - 1, end - offset), offset)
            at = block.find(needle)
            while at != -1 and at < _SCAN_BLOCK:
                yield offset + at
                at = block.find(needle, at + 1)
            if not block:
                return
            offset += _SCAN_BLOCK

    def _frame_at(self, offset: int) -> Frame | None:
        raw = os.pread(self.fd, fmt.FRAME_SIZE, offset)
        if len(raw) < fmt.FRAME_SIZE:
            return None
        frame = fmt.decode_frame(raw)
        if (
            frame is None
            or frame.file_id != self.header.file_id
            or frame.kind not in RecordKind.BODY_KINDS
            or frame.length > self.header.chunk_size
        ):
            return None
        return frame


def walk_body(scanner: RecordScanner, *, zero_fill: bool) -> Walk:
    """Plan the recovered body: keep every authentic record, skip damage, resynchronise."""
    walk = Walk()
    offset = scanner.header.body_offset
    expected = 0
    while offset < scanner.size:
        if walk.last_seen:
            walk.torn = scanner.size - offset
            walk.stop_reason = f"bytes after the final chunk at offset {offset}"
            return walk
        record = scanner.authentic_at(offset, expected, exact=True)
        if record is None:
            damage = scanner.diagnose(offset, expected)
            record = scanner.resync(offset + 1, expected)
            if record is None:
                walk.torn = scanner.size - offset
                walk.stop_reason = damage
                return walk
            lost_chunks = record.frame.index - expected
            skipped = record.offset - offset
            length = scanner.lost_length(offset, record.offset, expected, record.frame.index)
            if lost_chunks and length is None and zero_fill:
                # Audio after a hole of unknown length cannot be put at its true position.
                walk.torn = scanner.size - offset
                walk.stop_reason = f"{damage}; damage of unknown length, later audio unplaceable"
                return walk
            if lost_chunks:
                filled = zero_fill and length is not None
                walk.items.append(
                    RecoveredHole(walk.out_bytes, length, expected, record.frame.index, filled)
                )
                if filled and length is not None:
                    walk.out_bytes += length
            logger.warning(
                "recovery skipped damaged bytes: %s; resynchronised at chunk %d offset %d "
                "(%d chunk(s), %s plaintext bytes lost)",
                damage,
                record.frame.index,
                record.offset,
                lost_chunks,
                length if length is not None else "unknown",
            )
            walk.skipped += skipped
            expected = record.frame.index
        walk.items.append(record)
        walk.chunks += 1
        walk.body_bytes += record.frame.length
        walk.out_bytes += record.frame.length
        walk.last_seen = record.frame.kind in RecordKind.LAST_KINDS
        expected += 1
        offset = record.end
    return walk


def plaintext_of(scanner: RecordScanner, walk: Walk) -> Iterator[bytes]:
    """The recovered body, piece by piece: authentic chunks, and zeros where holes are filled."""
    for item in walk.items:
        if isinstance(item, RecoveredHole):
            remaining = item.length if item.zero_filled and item.length is not None else 0
            while remaining:
                piece = min(remaining, scanner.header.chunk_size)
                yield bytes(piece)
                remaining -= piece
            continue
        plaintext = scanner.open(item)
        if plaintext is None:  # it authenticated a moment ago: the file changed under us
            raise StorageError(f"chunk {item.frame.index} changed while being recovered")
        yield plaintext


class SealedOutput:
    """A new sealed file, written in place of the damaged original (see the module rules)."""

    def __init__(self, path: Path, header: SegmentHeader, data_key: bytes) -> None:
        salt = secrets.token_bytes(fmt.SALT_SIZE)
        keys = fmt.derive_keys(data_key, salt)
        self.header = fmt.build_header(
            identity=header.identity,
            key_id=header.key_id,
            wrapped_key=header.wrapped_key,
            keys=keys,
            file_id=secrets.token_bytes(fmt.FILE_ID_SIZE),
            salt=salt,
            nonce_prefix=secrets.token_bytes(fmt.NONCE_PREFIX_SIZE),
            chunk_size=header.chunk_size,
            prologue_size=header.prologue_size,
        )
        self._aead = AESGCM(keys.payload)
        self._digest = self.header.digest
        self._pending = bytearray()
        self._index = 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            self._write(self.header.raw + bytes(self.header.prologue_slot_size))
        except BaseException:
            os.close(self._fd)
            raise

    def write(self, data: bytes) -> None:
        self._pending += data
        size = self.header.chunk_size
        while len(self._pending) >= size:
            self._record(bytes(self._pending[:size]), RecordKind.BODY, self._index)
            del self._pending[:size]
            self._index += 1

    def finish(self, prologue: bytes) -> None:
        try:
            if self._pending:
                self._record(bytes(self._pending), RecordKind.BODY, self._index)
                self._index += 1
                self._pending.clear()
            self._record(b"", RecordKind.LAST_RECOVERED, self._index)
            # Fresh keys make counter 0 safe; a random one keeps the format's rule for the kind.
            counter = secrets.randbelow(2**32)
            frame = fmt.encode_frame(
                self.header.file_id, counter, len(prologue), RecordKind.PROLOGUE_RECOVERED
            )
            sealed = self._aead.encrypt(
                fmt.nonce(self.header.nonce_prefix, counter, RecordKind.PROLOGUE_RECOVERED),
                prologue,
                fmt.record_aad(self._digest, frame[: fmt.FRAME_BODY_SIZE]),
            )
            os.pwrite(self._fd, frame + sealed, self.header.length)
            os.fsync(self._fd)
        finally:
            os.close(self._fd)

    def abandon(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _record(self, plaintext: bytes, kind: int, index: int) -> None:
        frame = fmt.encode_frame(self.header.file_id, index, len(plaintext), kind)
        self._write(
            frame
            + self._aead.encrypt(
                fmt.nonce(self.header.nonce_prefix, index, kind),
                plaintext,
                fmt.record_aad(self._digest, frame[: fmt.FRAME_BODY_SIZE]),
            )
        )

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]


def with_holes(header: SegmentHeader, holes: tuple[RecoveredHole, ...]) -> SegmentHeader:
    if not holes:
        return header
    metadata = dict(header.identity.metadata)
    metadata[HOLES_KEY] = holes_metadata(holes)
    identity = dataclasses.replace(header.identity, metadata=metadata)
    return dataclasses.replace(header, identity=identity)
