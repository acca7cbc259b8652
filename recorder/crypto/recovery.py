"""Crash recovery: turn a writer's ``.part`` file into a sealed, readable segment.

Rule: recovery keeps every record that authenticates, discards only what does not (a torn
tail), and reports exactly what it did; it never deletes a file and never reads plaintext into
anything but the digest. What it writes uses nonce domains of its own (``LAST_RECOVERED``, and
``PROLOGUE_RECOVERED`` with a random counter), so no nonce the writer may already have used
for other bytes is ever used again, even when recovery itself is interrupted and run twice.

Recovery needs the data key, so it runs where the key can be unwrapped. On an encrypt-only host
it raises ``DecryptNotPermitted`` and leaves the ``.part`` untouched for the officers'
workstation, which holds the private key.
"""

from __future__ import annotations

import enum
import fcntl
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import trio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder.crypto import _format as fmt
from recorder.crypto._format import RecordKind, SegmentHeader
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
    IntegrityError,
    LocalProtocolError,
    RecorderError,
    StorageError,
    TruncatedFile,
)
from recorder.sink import SealedSegment

logger = logging.getLogger(__name__)

#: Builds the prologue from the header (identity and metadata) and the recovered body size.
PrologueBuilder = Callable[[SegmentHeader, int], bytes]


class PrologueStatus(enum.Enum):
    #: The writer had sealed the prologue before it died; kept as is.
    INTACT = "intact"
    #: The slot was empty (or torn) and ``prologue_builder`` rebuilt it.
    REBUILT = "rebuilt"
    #: The slot was empty and no builder was given: sealed as zero bytes, said so here.
    ZERO_FILLED = "zero-filled"


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """Exactly what recovery kept, discarded and added. Logged, and meant for the catalog."""

    part_path: Path
    sealed: SealedSegment
    #: Body bytes kept (authenticated chunks).
    body_bytes_recovered: int
    #: Body chunks kept, including an intact final chunk.
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

    @property
    def was_complete(self) -> bool:
        """The writer had finished sealing; it only died before the rename."""
        return (
            not self.final_chunk_added
            and self.prologue is PrologueStatus.INTACT
            and self.torn_bytes_discarded == 0
        )


@dataclass(frozen=True, slots=True)
class RecoveryFailure:
    part_path: Path
    error: RecorderError


class WriterStillAlive(StorageError):
    """The ``.part`` file is locked by a writer that is still running (another process)."""


def _try_lock(stream: BinaryIO) -> bool:
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass(slots=True)
class _Walk:
    end: int
    body_bytes: int = 0
    chunks: int = 0
    last_seen: bool = False
    stop_reason: str | None = None


def _walk_body(stream: BinaryIO, header: SegmentHeader, aead: AESGCM) -> _Walk:
    """Follow authenticated records from the body start; stop at the first that is not."""
    walk = _Walk(end=header.body_offset)
    digest = header.digest
    while True:
        frame_bytes = read_exact(stream, fmt.FRAME_SIZE)
        if not frame_bytes:
            return walk
        if walk.last_seen:
            walk.stop_reason = f"bytes after the final chunk at offset {walk.end}"
            return walk
        frame = fmt.decode_frame(frame_bytes) if len(frame_bytes) == fmt.FRAME_SIZE else None
        if (
            frame is None
            or frame.file_id != header.file_id
            or frame.index != walk.chunks
            or frame.kind not in RecordKind.BODY_KINDS
            or frame.length > header.chunk_size
        ):
            walk.stop_reason = f"torn or foreign chunk frame at offset {walk.end}"
            return walk
        body = read_exact(stream, frame.length + fmt.TAG_SIZE)
        if len(body) < frame.length + fmt.TAG_SIZE:
            walk.stop_reason = f"chunk {frame.index} at offset {walk.end} is cut short"
            return walk
        try:
            plaintext = aead.decrypt(
                fmt.nonce(header.nonce_prefix, frame.index, frame.kind),
                body,
                fmt.record_aad(digest, frame.body),
            )
        except InvalidTag:
            walk.stop_reason = f"chunk {frame.index} at offset {walk.end} fails authentication"
            return walk
        walk.body_bytes += len(plaintext)
        walk.chunks += 1
        walk.end += fmt.FRAME_SIZE + len(body)
        walk.last_seen = frame.kind in RecordKind.LAST_KINDS


def recover(
    path: Path | str,
    keyring: SegmentKeyOpener,
    prologue_builder: PrologueBuilder | None = None,
) -> RecoveryReport:
    """Seal a ``.part`` file left by a writer that died, and say exactly what was kept.

    Raises:
        TruncatedFile: the header itself is incomplete: the writer died before any audio was
            sealed. The file is left in place.
        HeaderMismatch, DecryptionFailed: the header does not authenticate. Left in place.
        KeyProviderError: the data key cannot be unwrapped here (e.g. encrypt-only host).
        WriterStillAlive: a running writer still holds the file (a ``StorageError``).
        StorageError: the final name exists already, or the file cannot be rewritten.
    """
    part = Path(path)
    if not part.name.endswith(PART_SUFFIX):
        raise LocalProtocolError(f"recover expects a {PART_SUFFIX} file, got {part}")
    final = part.with_name(part.name[: -len(PART_SUFFIX)])
    if final.exists():
        raise StorageError(f"cannot recover {part}: {final} exists already")
    source = str(part)
    try:
        with open(part, "r+b") as stream:
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
            prologue_status = PrologueStatus.INTACT
            slot_torn = False
            if len(slot) < header.prologue_slot_size or not any(slot):
                prologue_status = PrologueStatus.REBUILT
            else:
                try:
                    open_prologue(header, aead, slot, source=source)
                except IntegrityError:
                    slot_torn = True
                    prologue_status = PrologueStatus.REBUILT
            walk = (
                _walk_body(stream, header, aead)
                if len(slot) == header.prologue_slot_size
                else _Walk(end=header.body_offset, stop_reason="file ends inside the slot")
            )
            size = os.fstat(stream.fileno()).st_size
            torn = max(0, size - walk.end)
            stream.truncate(walk.end)
            if walk.end > size:
                # The slot itself was cut short: restore its zero bytes before appending.
                stream.seek(size)
                stream.write(bytes(walk.end - size))
            stream.seek(walk.end)
            final_added = not walk.last_seen
            if final_added:
                frame = fmt.encode_frame(header.file_id, walk.chunks, 0, RecordKind.LAST_RECOVERED)
                stream.write(
                    frame
                    + aead.encrypt(
                        fmt.nonce(header.nonce_prefix, walk.chunks, RecordKind.LAST_RECOVERED),
                        b"",
                        fmt.record_aad(header.digest, frame[: fmt.FRAME_BODY_SIZE]),
                    )
                )
            if prologue_status is not PrologueStatus.INTACT:
                if prologue_builder is None:
                    prologue = bytes(header.prologue_size)
                    prologue_status = PrologueStatus.ZERO_FILLED
                else:
                    prologue = prologue_builder(header, walk.body_bytes)
                if len(prologue) != header.prologue_size:
                    raise LocalProtocolError(
                        f"prologue builder returned {len(prologue)} bytes, "
                        f"the segment declares {header.prologue_size}"
                    )
                # A random counter: a torn earlier attempt may have used another one.
                counter = secrets.randbelow(2**32)
                frame = fmt.encode_frame(
                    header.file_id, counter, header.prologue_size, RecordKind.PROLOGUE_RECOVERED
                )
                stream.seek(header.length)
                stream.write(
                    frame
                    + aead.encrypt(
                        fmt.nonce(header.nonce_prefix, counter, RecordKind.PROLOGUE_RECOVERED),
                        prologue,
                        fmt.record_aad(header.digest, frame[: fmt.FRAME_BODY_SIZE]),
                    )
                )
            stream.flush()
            os.fsync(stream.fileno())
        os.rename(part, final)
        fsync_directory(final.parent)
    except OSError as exc:
        raise StorageError(f"cannot recover {part}: {exc.strerror or exc}") from exc
    verified = digest_segment(final, data_key=data_key, expect=header.identity)
    report = RecoveryReport(
        part_path=part,
        sealed=SealedSegment(
            identity=header.identity,
            path=final,
            plaintext_size=verified.plaintext_size,
            sha256=verified.sha256,
            stored_size=final.stat().st_size,
            key_id=header.key_id,
            recovered=True,
        ),
        body_bytes_recovered=walk.body_bytes,
        chunks_recovered=walk.chunks,
        torn_bytes_discarded=torn,
        stop_reason=walk.stop_reason,
        prologue=prologue_status,
        prologue_slot_was_torn=slot_torn,
        final_chunk_added=final_added,
    )
    logger.warning(
        "segment recovered path=%s recording_id=%s track=%s segment=%d body_bytes=%d chunks=%d "
        "torn_bytes_discarded=%d prologue=%s final_chunk_added=%s stop_reason=%s",
        final,
        header.identity.recording_id,
        header.identity.track,
        header.identity.segment_index,
        walk.body_bytes,
        walk.chunks,
        torn,
        prologue_status.value,
        final_added,
        walk.stop_reason,
    )
    return report


def recover_directory(
    directory: Path | str,
    keyring: SegmentKeyOpener,
    prologue_builder: PrologueBuilder | None = None,
) -> list[RecoveryReport | RecoveryFailure]:
    """Recover every ``.part`` file in ``directory`` (at startup). One failure stops nothing.

    Files still locked by a live writer (another worker process sharing the spool) are skipped
    and left out of the result.
    """
    results: list[RecoveryReport | RecoveryFailure] = []
    for part in sorted(Path(directory).glob(f"*{PART_SUFFIX}")):
        try:
            results.append(recover(part, keyring, prologue_builder))
        except WriterStillAlive:
            logger.debug("skipping segment held by a live writer path=%s", part)
        except RecorderError as exc:
            logger.error("segment recovery failed path=%s error=%s", part, exc)
            results.append(RecoveryFailure(part_path=part, error=exc))
    return results


async def recover_directory_async(
    directory: Path | str,
    keyring: SegmentKeyOpener,
    prologue_builder: PrologueBuilder | None = None,
    *,
    limiter: trio.CapacityLimiter | None = None,
) -> list[RecoveryReport | RecoveryFailure]:
    """``recover_directory`` in a worker thread, for the service's startup."""
    return await trio.to_thread.run_sync(
        recover_directory, directory, keyring, prologue_builder, limiter=limiter
    )
