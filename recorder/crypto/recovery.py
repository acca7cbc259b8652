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

import enum
import fcntl
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import trio
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder.crypto._format import SegmentHeader
from recorder.crypto._salvage import (
    CORRUPT_CHUNK,
    HOLES_KEY,
    RecordScanner,
    RecoveredHole,
    SealedOutput,
    Walk,
    holes_from_metadata,
    holes_metadata,
    plaintext_of,
    walk_body,
    with_holes,
)
from recorder.crypto.keyring import SegmentKeyOpener
from recorder.crypto.reader import (
    authenticate_header,
    digest_segment,
    open_prologue,
    read_exact,
    read_header_from,
)
from recorder.crypto.writer import PART_SUFFIX
from recorder.durable import fsync_directory
from recorder.errors import (
    DiskFull,
    IntegrityError,
    KeyProviderError,
    LocalProtocolError,
    StorageError,
    TruncatedFile,
)
from recorder.quarantine import QUARANTINE_DIR, REASON_SUFFIX, quarantine_file
from recorder.sink import SealedSegment

logger = logging.getLogger(__name__)

__all__ = [
    "CORRUPT_CHUNK",
    "HOLES_KEY",
    "QUARANTINE_DIR",
    "REASON_SUFFIX",
    "PrologueStatus",
    "RecoveredHole",
    "RecoveryFailure",
    "RecoveryReport",
    "WriterStillAlive",
    "holes_from_metadata",
    "holes_metadata",
    "quarantine_file",
    "recover",
    "recover_directory",
    "recover_directory_async",
]

#: Builds the prologue from the header (identity and metadata) and the recovered body size.
PrologueBuilder = Callable[[SegmentHeader, int], bytes]
#: Says whether a segment's holes are filled with zero bytes (audio) or left out (records).
HoleFill = Callable[[SegmentHeader], bool]

_RECOVERING_SUFFIX: Final = ".recovering"


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
            scanner = RecordScanner(stream.fileno(), header, aead, size)
            zero_fill = zero_fill_holes is not None and zero_fill_holes(header)
            if len(slot) == header.prologue_slot_size:
                walk = walk_body(scanner, zero_fill=zero_fill)
            else:
                walk = Walk(stop_reason="file ends inside the slot")
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
                    scanner, walk, temp, data_key, prologue_builder, intact_prologue
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
    scanner: RecordScanner,
    walk: Walk,
    temp: Path,
    data_key: bytes,
    prologue_builder: PrologueBuilder | None,
    intact_prologue: bytes | None,
) -> tuple[SegmentHeader, PrologueStatus]:
    """Re-encrypt the plan into ``temp``, fsynced and verified; returns its header."""
    temp.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp.unlink(missing_ok=True)  # a torn earlier attempt: the original is still in place
    source_header = with_holes(scanner.header, walk.holes)
    output = SealedOutput(temp, source_header, data_key)
    try:
        for piece in plaintext_of(scanner, walk):
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
