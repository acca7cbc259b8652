"""Crash recovery: turn a writer's ``.part`` file into a sealed, readable segment.

Rules:

* **The original is evidence: recovery never changes or deletes it.** A ``.part`` whose every
  record authenticates and whose writer had sealed it (it died before the rename) is renamed
  as is. Anything else is recovered into a *new* file and the original is moved, byte for byte,
  into the quarantine directory beside it (``quarantine/``), where an officer can still examine
  it. A ``.part`` that cannot be recovered at all is quarantined too, with a ``.reason.json``
  saying why.
* **Every authentic chunk is kept.** The walk follows the records by their framing; a record
  that fails its checks (bit flip, torn write, foreign bytes) is skipped and the walk
  resynchronises on the next record that authenticates, found by the file id every frame
  carries. The plaintext lost in between is exactly derivable from the framing (each record is
  its plaintext plus a fixed overhead), and becomes a *hole*: zero bytes in an audio body (so
  later samples keep their positions), nothing in a records body, and in both cases an entry in
  the recovered segment's authenticated metadata (``recovered.holes``), which the service turns
  into a ``corrupt_chunk`` gap. Only damage with nothing authentic after it is a torn tail.
* **The new file is a fresh sealed file, verifiable like any other.** Authentic plaintext is
  re-encrypted chunk by chunk in memory (no plaintext touches the disk) under a fresh salt, file
  id and nonce prefix: a new payload key, commitment and header MAC derived from the same data
  key, whose wrapping (bound to recording, track and segment index) is kept. Chunk indices run
  from 0 again, so the reader's order, truncation and splice checks hold unchanged, and no nonce
  of the original is ever used again. The end is sealed with ``LAST_RECOVERED`` and the
  prologue with ``PROLOGUE_RECOVERED``: the file says, in authenticated bytes, that it was
  recovered.

Recovery needs the data key, so it runs where the key can be unwrapped. On an encrypt-only host
it raises ``DecryptNotPermitted`` and leaves the ``.part`` untouched for the officers'
workstation, which holds the private key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import functools
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import trio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder.crypto import _format as fmt
from recorder.crypto._format import Frame, RecordKind, SegmentHeader
from recorder.crypto.keyring import SegmentKeyOpener
from recorder.crypto.keys.local import fsync_directory
from recorder.crypto.reader import (
    authenticate_header,
    digest_segment,
    open_prologue,
    read_exact,
    read_header_from,
)
from recorder.crypto.writer import PART_SUFFIX
from recorder.errors import (
    DiskFull,
    IntegrityError,
    KeyProviderError,
    LocalProtocolError,
    StorageError,
    TruncatedFile,
)
from recorder.sink import SealedSegment

logger = logging.getLogger(__name__)

#: Builds the prologue from the header (identity and metadata) and the recovered body size.
PrologueBuilder = Callable[[SegmentHeader, int], bytes]
#: Says whether a segment's holes are filled with zero bytes (audio) or left out (records).
HoleFill = Callable[[SegmentHeader], bool]

#: Where originals and unrecoverable files go, under the directory of the ``.part``.
QUARANTINE_DIR: Final = "quarantine"
REASON_SUFFIX: Final = ".reason.json"
_RECOVERING_SUFFIX: Final = ".recovering"
#: Gap cause of a hole left by a chunk that failed authentication.
CORRUPT_CHUNK: Final = "corrupt_chunk"
#: Metadata key of a recovered segment's holes (canonical JSON text, see ``holes_metadata``).
HOLES_KEY: Final = "recovered.holes"
_SCAN_BLOCK: Final = 1 << 20


class PrologueStatus(enum.Enum):
    #: The writer had sealed the prologue before it died; kept as is.
    INTACT = "intact"
    #: The slot was empty (or torn) and ``prologue_builder`` rebuilt it.
    REBUILT = "rebuilt"
    #: The slot was empty and no builder was given: sealed as zero bytes, said so here.
    ZERO_FILLED = "zero-filled"


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
class RecoveryReport:
    """Exactly what recovery kept, discarded and added. Logged, and meant for the catalog."""

    part_path: Path
    sealed: SealedSegment
    #: Authentic body bytes kept (zero bytes filling holes not included).
    body_bytes_recovered: int
    #: Authentic body chunks kept, including an intact final chunk.
    chunks_recovered: int
    #: Bytes after the last authenticated record, cut off.
    torn_bytes_discarded: int
    #: Why the walk stopped short of the end of the file, if it did.
    stop_reason: str | None
    prologue: PrologueStatus
    #: True when the prologue slot held bytes that did not authenticate (a torn close).
    prologue_slot_was_torn: bool
    #: True when recovery sealed the end; False when the writer's final chunk was intact.
    final_chunk_added: bool
    #: Damaged records skipped between authentic ones, in body order.
    holes: tuple[RecoveredHole, ...] = ()
    #: Bytes of the original skipped between authentic records (damaged records, stray bytes).
    skipped_bytes: int = 0
    #: Where the original ``.part`` is kept, when recovery wrote a new file.
    quarantined: Path | None = None

    @property
    def was_complete(self) -> bool:
        """The writer had finished sealing; it only died before the rename."""
        return (
            not self.final_chunk_added
            and self.prologue is PrologueStatus.INTACT
            and self.torn_bytes_discarded == 0
            and not self.holes
            and self.skipped_bytes == 0
        )


@dataclass(frozen=True, slots=True)
class RecoveryFailure:
    part_path: Path
    error: Exception
    #: Where the file was moved; None when it was left in place (to be retried: a key service
    #: or disk problem, not the file's) or when even the move failed.
    quarantined: Path | None = None


class WriterStillAlive(StorageError):
    """The ``.part`` file is locked by a writer that is still running (another process)."""


def _try_lock(stream: BinaryIO) -> bool:
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Record:
    offset: int
    frame: Frame

    @property
    def end(self) -> int:
        return self.offset + fmt.RECORD_OVERHEAD + self.frame.length


@dataclass(slots=True)
class _Walk:
    """The plan of a recovery: authentic records and holes in order, and what was cut."""

    items: list[_Record | RecoveredHole] = dataclasses.field(default_factory=list)
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


class _Body:
    """Random access to the records of a ``.part`` (positioned reads, no shared offset)."""

    def __init__(self, fd: int, header: SegmentHeader, aead: AESGCM, size: int) -> None:
        self.fd = fd
        self.header = header
        self.aead = aead
        self.size = size
        self._digest = header.digest

    def authentic_at(self, offset: int, index: int, *, exact: bool) -> _Record | None:
        """The record at ``offset`` if it authenticates at ``index`` (or later, if not exact)."""
        frame = self._frame_at(offset)
        if frame is None or (frame.index != index if exact else frame.index < index):
            return None
        return _Record(offset, frame) if self.open(_Record(offset, frame)) is not None else None

    def open(self, record: _Record) -> bytes | None:
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
        if _Record(offset, frame).end > self.size:
            return f"chunk {index} at offset {offset} is cut short"
        return f"chunk {index} at offset {offset} fails authentication"

    def resync(self, start: int, index: int) -> _Record | None:
        """The first record from ``start`` on that authenticates at ``index`` or later."""
        needle = self.header.file_id
        offset = start
        while offset < self.size:
            block = os.pread(self.fd, _SCAN_BLOCK + len(needle) - 1, offset)
            at = block.find(needle)
            while at != -1:
                found = self.authentic_at(offset + at, index, exact=False)
                if found is not None:
                    return found
                at = block.find(needle, at + 1)
            offset += _SCAN_BLOCK
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
        needle = self.header.file_id
        data = os.pread(self.fd, end - start, start)
        found: list[tuple[int, Frame]] = []
        at = data.find(needle)
        while at != -1:
            frame = self._frame_at(start + at)
            if frame is not None:
                found.append((start + at, frame))
            at = data.find(needle, at + 1)
        return found

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


def _walk_body(body: _Body, *, zero_fill: bool) -> _Walk:
    """Plan the recovered body: keep every authentic record, skip damage, resynchronise."""
    walk = _Walk()
    offset = body.header.body_offset
    expected = 0
    while offset < body.size:
        if walk.last_seen:
            walk.torn = body.size - offset
            walk.stop_reason = f"bytes after the final chunk at offset {offset}"
            return walk
        record = body.authentic_at(offset, expected, exact=True)
        if record is None:
            damage = body.diagnose(offset, expected)
            record = body.resync(offset + 1, expected)
            if record is None:
                walk.torn = body.size - offset
                walk.stop_reason = damage
                return walk
            lost_chunks = record.frame.index - expected
            skipped = record.offset - offset
            length = body.lost_length(offset, record.offset, expected, record.frame.index)
            if lost_chunks and length is None and zero_fill:
                # Audio after a hole of unknown length cannot be put at its true position.
                walk.torn = body.size - offset
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


def _plaintext(body: _Body, walk: _Walk) -> Iterator[bytes]:
    """The recovered body, piece by piece: authentic chunks, and zeros where holes are filled."""
    for item in walk.items:
        if isinstance(item, RecoveredHole):
            remaining = item.length if item.zero_filled and item.length is not None else 0
            while remaining:
                piece = min(remaining, body.header.chunk_size)
                yield bytes(piece)
                remaining -= piece
            continue
        plaintext = body.open(item)
        if plaintext is None:  # it authenticated a moment ago: the file changed under us
            raise StorageError(f"chunk {item.frame.index} changed while being recovered")
        yield plaintext


class _SealedOutput:
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


def _with_holes(header: SegmentHeader, holes: tuple[RecoveredHole, ...]) -> SegmentHeader:
    if not holes:
        return header
    metadata = dict(header.identity.metadata)
    metadata[HOLES_KEY] = holes_metadata(holes)
    identity = dataclasses.replace(header.identity, metadata=metadata)
    return dataclasses.replace(header, identity=identity)


def quarantine_file(
    path: Path, quarantine_dir: Path, *, reason: str, error: BaseException | None = None
) -> Path:
    """Move ``path`` into ``quarantine_dir`` unchanged, beside a ``.reason.json``. Never deletes.

    Raises ``StorageError`` when the move fails (the file is then where it was).
    """
    try:
        quarantine_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = quarantine_dir / path.name
        serial = 1
        while target.exists() or target.with_name(target.name + REASON_SUFFIX).exists():
            target = quarantine_dir / f"{path.name}.{serial}"
            serial += 1
        note = {
            "original_path": str(path),
            "reason": reason,
            "error": type(error).__name__ if error is not None else None,
            "quarantined_at_ms": int(time.time() * 1000),
        }
        reason_path = target.with_name(target.name + REASON_SUFFIX)
        fd = os.open(reason_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(note, indent=2, sort_keys=True).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(path, target)
        fsync_directory(quarantine_dir)
        fsync_directory(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot quarantine {path}: {exc.strerror or exc}") from exc
    logger.warning("file quarantined path=%s kept_at=%s reason=%s", path, target, reason)
    return target


def recover(
    path: Path | str,
    keyring: SegmentKeyOpener,
    prologue_builder: PrologueBuilder | None = None,
    *,
    zero_fill_holes: HoleFill | None = None,
    quarantine_dir: Path | None = None,
) -> RecoveryReport:
    """Seal what a writer that died left in a ``.part`` file, and say exactly what was kept.

    Args:
        zero_fill_holes: says, per segment, whether lost chunks become zero bytes in the new
            body (audio: later samples keep their positions) or are left out (records).
        quarantine_dir: where the original goes when a new file is written; default
            ``quarantine/`` beside the ``.part``.

    Raises:
        TruncatedFile: the header itself is incomplete: the writer died before any audio was
            sealed. The file is left in place.
        HeaderMismatch, DecryptionFailed: the header does not authenticate. Left in place.
        KeyProviderError: the data key cannot be unwrapped here (e.g. encrypt-only host).
        WriterStillAlive: a running writer still holds the file (a ``StorageError``).
        StorageError: the final name exists already, or a file cannot be written.
    """
    part = Path(path)
    if not part.name.endswith(PART_SUFFIX):
        raise LocalProtocolError(f"recover expects a {PART_SUFFIX} file, got {part}")
    final = part.with_name(part.name[: -len(PART_SUFFIX)])
    if final.exists():
        raise StorageError(f"cannot recover {part}: {final} exists already")
    quarantine = quarantine_dir if quarantine_dir is not None else part.parent / QUARANTINE_DIR
    source = str(part)
    temp = quarantine / (final.name + _RECOVERING_SUFFIX)
    kept_at: Path | None = None
    try:
        with open(part, "rb") as stream:
            if not _try_lock(stream):
                raise WriterStillAlive(f"{part} is held by a live writer; not recovering it")
            try:
                header = read_header_from(stream, source=source)
            except TruncatedFile as exc:
                raise TruncatedFile(
                    f"{source}: header incomplete; the writer died before sealing any audio, "
                    "nothing to recover"
                ) from exc
            data_key = keyring.unwrap_segment_key(header)
            keys = authenticate_header(header, keyring=None, data_key=data_key, source=source)
            aead = AESGCM(keys.payload)
            slot = read_exact(stream, header.prologue_slot_size)
            intact_prologue: bytes | None = None
            slot_torn = False
            if len(slot) == header.prologue_slot_size and any(slot):
                try:
                    intact_prologue, _ = open_prologue(header, aead, slot, source=source)
                except IntegrityError:
                    slot_torn = True
            size = os.fstat(stream.fileno()).st_size
            body = _Body(stream.fileno(), header, aead, size)
            zero_fill = zero_fill_holes is not None and zero_fill_holes(header)
            if len(slot) == header.prologue_slot_size:
                walk = _walk_body(body, zero_fill=zero_fill)
            else:
                walk = _Walk(stop_reason="file ends inside the slot")
            untouched = (
                walk.last_seen
                and intact_prologue is not None
                and walk.torn == 0
                and walk.skipped == 0
            )
            if untouched:
                # The writer sealed everything and died before its rename: nothing to rewrite.
                os.rename(part, final)
                fsync_directory(final.parent)
                sealed_header = header
                prologue_status = PrologueStatus.INTACT
            else:
                sealed_header, prologue_status = _rewrite(
                    body, walk, temp, data_key, prologue_builder, intact_prologue
                )
                os.rename(temp, final)
                fsync_directory(final.parent)
                kept_at = quarantine_file(
                    part,
                    quarantine,
                    reason=f"recovered into {final.name}; original kept"
                    + (f": {walk.stop_reason}" if walk.stop_reason else ""),
                )
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise StorageError(f"cannot recover {part}: {exc.strerror or exc}") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    verified = digest_segment(final, data_key=data_key, expect=sealed_header.identity)
    holes = walk.holes
    report = RecoveryReport(
        part_path=part,
        sealed=SealedSegment(
            identity=sealed_header.identity,
            path=final,
            plaintext_size=verified.plaintext_size,
            sha256=verified.sha256,
            stored_size=final.stat().st_size,
            key_id=header.key_id,
            recovered=True,
        ),
        body_bytes_recovered=walk.body_bytes,
        chunks_recovered=walk.chunks,
        torn_bytes_discarded=walk.torn,
        stop_reason=walk.stop_reason,
        prologue=prologue_status,
        prologue_slot_was_torn=slot_torn,
        final_chunk_added=not untouched,
        holes=holes,
        skipped_bytes=walk.skipped,
        quarantined=kept_at,
    )
    logger.warning(
        "segment recovered path=%s recording_id=%s track=%s segment=%d body_bytes=%d chunks=%d "
        "holes=%d skipped_bytes=%d torn_bytes_discarded=%d prologue=%s final_chunk_added=%s "
        "original_kept_at=%s stop_reason=%s",
        final,
        header.identity.recording_id,
        header.identity.track,
        header.identity.segment_index,
        walk.body_bytes,
        walk.chunks,
        len(holes),
        walk.skipped,
        walk.torn,
        prologue_status.value,
        report.final_chunk_added,
        kept_at,
        walk.stop_reason,
    )
    return report


def _rewrite(
    body: _Body,
    walk: _Walk,
    temp: Path,
    data_key: bytes,
    prologue_builder: PrologueBuilder | None,
    intact_prologue: bytes | None,
) -> tuple[SegmentHeader, PrologueStatus]:
    """Re-encrypt the plan into ``temp``, fsynced and verified; returns its header."""
    temp.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp.unlink(missing_ok=True)  # a torn earlier attempt: the original is still in place
    source_header = _with_holes(body.header, walk.holes)
    output = _SealedOutput(temp, source_header, data_key)
    try:
        for piece in _plaintext(body, walk):
            output.write(piece)
    except BaseException:
        output.abandon()
        raise
    header = output.header
    if prologue_builder is not None:
        prologue, status = prologue_builder(header, walk.out_bytes), PrologueStatus.REBUILT
    elif intact_prologue is not None:
        prologue, status = intact_prologue, PrologueStatus.INTACT
    else:
        prologue, status = bytes(header.prologue_size), PrologueStatus.ZERO_FILLED
    if len(prologue) != header.prologue_size:
        output.abandon()
        raise LocalProtocolError(
            f"prologue builder returned {len(prologue)} bytes, "
            f"the segment declares {header.prologue_size}"
        )
    output.finish(prologue)
    digest_segment(temp, data_key=data_key, expect=header.identity)
    return header, status


def _left_in_place(exc: Exception) -> bool:
    """Errors about this host (keys, disk), not the file: retried at the next start."""
    return isinstance(exc, KeyProviderError | DiskFull | WriterStillAlive)


def recover_directory(
    directory: Path | str,
    keyring: SegmentKeyOpener,
    prologue_builder: PrologueBuilder | None = None,
    *,
    zero_fill_holes: HoleFill | None = None,
    quarantine_dir: Path | None = None,
) -> list[RecoveryReport | RecoveryFailure]:
    """Recover every ``.part`` file in ``directory`` (at startup). One failure stops nothing.

    Any error is contained to its file: a file that cannot be recovered is moved to the
    quarantine directory with the reason beside it (never deleted), except when the cause is
    this host's (a key service or the disk), which leaves the file for the next start. Files
    still locked by a live writer (another worker process sharing the spool) are skipped and
    left out of the result.
    """
    root = Path(directory)
    quarantine = quarantine_dir if quarantine_dir is not None else root / QUARANTINE_DIR
    results: list[RecoveryReport | RecoveryFailure] = []
    for part in sorted(root.glob(f"*{PART_SUFFIX}")):
        try:
            results.append(
                recover(
                    part,
                    keyring,
                    prologue_builder,
                    zero_fill_holes=zero_fill_holes,
                    quarantine_dir=quarantine,
                )
            )
        except WriterStillAlive:
            logger.debug("skipping segment held by a live writer path=%s", part)
        except Exception as exc:  # containment per file is the point
            logger.error(
                "segment recovery failed path=%s error=%s: %s", part, type(exc).__name__, exc
            )
            kept_at: Path | None = None
            if not _left_in_place(exc):
                try:
                    kept_at = quarantine_file(
                        part, quarantine, reason=f"{type(exc).__name__}: {exc}", error=exc
                    )
                except StorageError as move_error:
                    logger.error("could not quarantine path=%s: %s", part, move_error)
            results.append(RecoveryFailure(part_path=part, error=exc, quarantined=kept_at))
    return results


async def recover_directory_async(
    directory: Path | str,
    keyring: SegmentKeyOpener,
    prologue_builder: PrologueBuilder | None = None,
    *,
    zero_fill_holes: HoleFill | None = None,
    limiter: trio.CapacityLimiter | None = None,
) -> list[RecoveryReport | RecoveryFailure]:
    """``recover_directory`` in a worker thread, for the service's startup."""
    return await trio.to_thread.run_sync(
        functools.partial(
            recover_directory, directory, keyring, prologue_builder, zero_fill_holes=zero_fill_holes
        ),
        limiter=limiter,
    )
