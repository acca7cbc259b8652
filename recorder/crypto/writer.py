"""The encrypting evidence sink: plaintext exists only in memory, one chunk at most.

``EncryptedSegmentWriter`` implements ``recorder.sink.EvidenceSink``. Life of a segment:

1. open: the header and an all-zero prologue slot are written to ``<name>.part`` and fsynced.
2. ``write``: bytes collect in one chunk buffer; each full chunk is sealed and written at once.
3. ``checkpoint`` (from a worker thread, at least once a second; ``needs_checkpoint(now)``
   says when): the partial chunk is sealed as a shorter chunk and the file is fsynced. This is
   what bounds a crash's loss to about one checkpoint interval.
4. ``close(prologue)``: the last chunk is sealed with the last-chunk flag, the prologue is sealed
   into its slot, the file is fsynced, renamed to its final name and the directory fsynced. The
   file is then read back and decrypted to produce the SHA-256 of prologue + body: the digest
   vouches for what is on disk, not for what was meant to be written.

**Spares.** ``SpoolSinkFactory.open_spare`` opens the next segment of a track ahead of its
rotation, under ``.spare/`` where crash recovery does not look: a crash then leaves no empty
segment behind (the factory deletes stale header-only spares when it starts, and moves one that
holds data, which only an adopted spare whose rename a crash undid can, back for recovery).
``adopt()`` moves it beside the others before its first byte (a rename; the directory entry is
made durable by the next checkpoint or the seal); ``discard()`` removes a spare never needed.

Locking: ``write`` runs on the trio thread, ``checkpoint`` on a worker thread. A lock guards the
chunk buffer and the file offset; fsync runs outside it so ``write`` never waits for the disk.
"""

from __future__ import annotations

import enum
import fcntl
import functools
import hashlib
import logging
import os
import secrets
import threading
import time
import urllib.parse
from pathlib import Path
from typing import BinaryIO, Final, cast

import trio
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder.crypto import _format as fmt
from recorder.crypto._format import RecordKind
from recorder.crypto.keyring import SegmentKeySource
from recorder.crypto.reader import digest_segment, read_header_from
from recorder.durable import fsync_directory, make_durable_dir
from recorder.errors import (
    DigestMismatch,
    LocalProtocolError,
    RecorderError,
    StorageError,
)
from recorder.sink import SealedSegment, SegmentIdentity

logger = logging.getLogger(__name__)

SEALED_SUFFIX: Final = ".rtmsenc"
PART_SUFFIX: Final = ".part"
#: Pre-opened segments wait here, out of crash recovery's sight, until adopted.
SPARE_DIR: Final = ".spare"
#: A header-only spare younger than this may be a live writer's (see ``_reclaim_spares``).
_SPARE_GRACE_S: Final = 30.0
DEFAULT_CHECKPOINT_INTERVAL_S: Final = 1.0
#: File names stay well under the 255-byte limit of common file systems.
_MAX_SLUG: Final = 80


class WriterState(enum.Enum):
    #: Accepting writes.
    OPEN = "open"
    #: Sealed and renamed; immutable.
    CLOSED = "closed"
    #: An I/O error happened; the ``.part`` file is left for ``recover``.
    FAILED = "failed"
    #: Removed before anything was written (a pre-opened spare that was not needed).
    DISCARDED = "discarded"


def _slug(value: str) -> str:
    slug = urllib.parse.quote(value, safe="-_").replace(".", "%2E")
    if len(slug) > _MAX_SLUG:
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
        slug = f"{slug[: _MAX_SLUG - 17]}-{digest}"
    return slug


def segment_file_name(identity: SegmentIdentity) -> str:
    """Deterministic, readable and safe for any id Zoom sends (UUIDs hold ``/``, ``+``, ``=``).

    ``created_ms`` is part of the name so a restarted recorder that numbers segments from 0 again
    never collides with the files of its previous life.
    """
    return (
        f"{_slug(identity.recording_id)}.{_slug(identity.track)}."
        f"{identity.segment_index:06d}.{identity.created_ms}{SEALED_SUFFIX}"
    )


class _HashingReader:
    """A read-only file view that hashes every byte read through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self._size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._hash.update(data)
        self._size += len(data)
        return data

    def finish(self) -> tuple[str, int]:
        """Hash whatever the reader left unread too; returns (sha256 hex, size) of the file."""
        while self.read(1 << 20):
            continue
        return self._hash.hexdigest(), self._size


class EncryptedSegmentWriter:
    """One segment, encrypted as written. See the module docstring for the life cycle."""

    def __init__(
        self,
        path: Path,
        identity: SegmentIdentity,
        *,
        keys: SegmentKeySource,
        prologue_size: int = 0,
        chunk_size: int = fmt.DEFAULT_CHUNK_SIZE,
        checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S,
        spare: bool = False,
    ) -> None:
        self._path = Path(path)
        self._part = self._path.with_name(self._path.name + PART_SUFFIX)
        #: Not adopted yet: the file waits under ``.spare/`` (see the module docstring).
        self._spare = spare
        #: A rename since the last directory fsync (adoption).
        self._dir_unsynced = False
        if spare:
            self._part = self._path.parent / SPARE_DIR / self._part.name
        self._identity = identity
        self._prologue_size = prologue_size
        self._chunk_size = chunk_size
        self._interval = checkpoint_interval_s
        if self._path.exists():
            raise StorageError(f"refusing to overwrite sealed segment {self._path}")
        data_key = keys.new_segment_key(identity)
        derived = fmt.derive_keys(data_key.plaintext, salt := secrets.token_bytes(fmt.SALT_SIZE))
        self._header = fmt.build_header(
            identity=identity,
            key_id=data_key.key_id,
            wrapped_key=data_key.wrapped,
            keys=derived,
            file_id=secrets.token_bytes(fmt.FILE_ID_SIZE),
            salt=salt,
            nonce_prefix=secrets.token_bytes(fmt.NONCE_PREFIX_SIZE),
            chunk_size=chunk_size,
            prologue_size=prologue_size,
        )
        self._data_key = data_key.plaintext
        self._key_id = data_key.key_id
        self._aead = AESGCM(derived.payload)
        self._digest = self._header.digest
        self._file_id = self._header.file_id
        self._prefix = self._header.nonce_prefix
        self._pending = bytearray()
        self._next_index = 0
        self._body_size = 0
        self._unsynced = False
        self._anchor: float | None = None
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._state = WriterState.OPEN
        #: Why the segment failed, when a checkpoint in a worker thread failed it: the owner's
        #: next write raises it, naming the file, instead of a bare protocol error.
        self._failure: StorageError | None = None
        try:
            self._fd = os.open(
                self._part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
            )
        except FileExistsError as exc:
            raise StorageError(f"segment file {self._part} already exists") from exc
        except OSError as exc:
            raise StorageError.from_os_error(exc, "cannot create", self._part) from exc
        try:
            # Held until close or process death: recovery never touches a live writer's file.
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._write_all(self._header.raw + bytes(self._header.prologue_slot_size))
            os.fsync(self._fd)
            fsync_directory(self._part.parent)
        except BaseException as exc:
            self._state = WriterState.FAILED
            os.close(self._fd)
            # No audio was written yet: a header-only file is not evidence, only clutter that
            # recovery would report on every start.
            self._part.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StorageError.from_os_error(exc, "cannot write header of", self._part) from exc
            raise

    # --- EvidenceSink ------------------------------------------------------------------------

    @property
    def identity(self) -> SegmentIdentity:
        return self._identity

    @property
    def body_size(self) -> int:
        return self._body_size

    @property
    def pending_bytes(self) -> int:
        """Plaintext held in memory, not yet sealed: always less than one chunk."""
        return len(self._pending)

    @property
    def state(self) -> WriterState:
        return self._state

    @property
    def part_path(self) -> Path:
        return self._part

    @property
    def path(self) -> Path:
        return self._path

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._state is not WriterState.OPEN:
                if self._failure is not None:
                    raise StorageError(f"{self._failure} (before this write)") from self._failure
                raise LocalProtocolError(f"write to a {self._state.value} segment {self._path}")
            size = len(data)
            pending = self._pending
            room = self._chunk_size - len(pending)
            if size < room:
                # The per-message hot path: one append, nothing else.
                pending += data
                self._body_size += size
                return
            view = memoryview(data)
            pending += view[:room]
            self._seal(bytes(pending), RecordKind.BODY)
            pending.clear()
            offset = room
            while size - offset >= self._chunk_size:
                self._seal(bytes(view[offset : offset + self._chunk_size]), RecordKind.BODY)
                offset += self._chunk_size
            pending += view[offset:]
            self._body_size += size

    def needs_checkpoint(self, now: float) -> bool:
        """True when unsealed or unsynced bytes are older than the checkpoint interval.

        ``now`` is any monotonic clock, the same on every call. A True answer restarts the
        interval: the caller is expected to call ``checkpoint()`` now.
        """
        if self._anchor is None:
            self._anchor = now
            return False
        if now - self._anchor < self._interval:
            return False
        if not (self._pending or self._unsynced):
            return False
        self._anchor = now
        return True

    def checkpoint(self) -> None:
        """Seal the pending partial chunk and fsync (a worker thread; ``write`` may go on
        meanwhile). After a seal (or discard) there is nothing left to do; after a failure
        the bytes are not durable, and saying nothing would let the caller report them so
        (a checkpoint runs beside a seal that may fail)."""
        with self._sync_lock:
            with self._lock:
                if self._state is WriterState.FAILED:
                    raise StorageError(f"cannot checkpoint failed segment {self._part}")
                if self._state is not WriterState.OPEN:
                    return
                if self._pending:
                    self._seal(bytes(self._pending), RecordKind.BODY)
                    self._pending.clear()
                if not self._unsynced:
                    return
                self._unsynced = False
            try:
                os.fsync(self._fd)
                if self._dir_unsynced:
                    # The adoption's rename, durable with the bytes it now holds.
                    fsync_directory(self._part.parent)
                    self._dir_unsynced = False
            except OSError as exc:
                error = StorageError.from_os_error(exc, "cannot fsync", self._part)
                # Under the write lock: the owner may be writing to this descriptor right now.
                with self._lock:
                    self._fail(error)
                raise error from exc

    def adopt(self) -> None:
        """A spare becomes the track's live segment: moved to where crash recovery finds it.

        A rename in one directory tree (microseconds, no fsync here): called before the first
        byte is written, by whoever writes; the next checkpoint fsyncs the directory.
        """
        with self._lock:
            if not self._spare:
                return
            if self._state is not WriterState.OPEN or self._body_size:
                raise LocalProtocolError(f"adopt of a {self._state.value} spare {self._part}")
            target = self._path.with_name(self._path.name + PART_SUFFIX)
            try:
                os.rename(self._part, target)
            except OSError as exc:
                self._fail()
                raise StorageError.from_os_error(exc, "cannot adopt", self._part) from exc
            self._part = target
            self._spare = False
            self._dir_unsynced = True

    def discard(self) -> None:
        """Remove this segment's ``.part``: allowed only while nothing was written to it."""
        with self._sync_lock, self._lock:
            if self._state is not WriterState.OPEN or self._body_size:
                raise LocalProtocolError(
                    f"refusing to discard {self._part}: {self._state.value}, "
                    f"{self._body_size} bytes written"
                )
            self._state = WriterState.DISCARDED
            os.close(self._fd)
            self._part.unlink(missing_ok=True)

    def close(self, prologue: bytes = b"") -> SealedSegment:
        if len(prologue) != self._prologue_size:
            raise LocalProtocolError(
                f"prologue is {len(prologue)} bytes, segment declared {self._prologue_size}"
            )
        if self._spare:
            # Sealed without being adopted (nothing written): it still becomes a segment.
            self.adopt()
        with self._sync_lock, self._lock:
            if self._state is not WriterState.OPEN:
                raise LocalProtocolError(f"close of a {self._state.value} segment {self._path}")
            try:
                self._seal(bytes(self._pending), RecordKind.LAST)
                self._pending.clear()
                slot = fmt.encode_frame(self._file_id, 0, self._prologue_size, RecordKind.PROLOGUE)
                slot += self._aead.encrypt(
                    fmt.nonce(self._prefix, 0, RecordKind.PROLOGUE),
                    bytes(prologue),
                    fmt.record_aad(self._digest, slot[: fmt.FRAME_BODY_SIZE]),
                )
                os.pwrite(self._fd, slot, self._header.length)
                os.fsync(self._fd)
                os.close(self._fd)
                # The descriptor is gone: from here a failure leaves a sealed .part for recover.
                self._state = WriterState.FAILED
                os.rename(self._part, self._path)
                fsync_directory(self._path.parent)
                self._state = WriterState.CLOSED
            except OSError as exc:
                self._fail()
                raise StorageError.from_os_error(exc, "cannot seal", self._part) from exc
            except BaseException:
                self._fail()
                raise
        # One read of the sealed file both verifies the plaintext and hashes the stored bytes,
        # so the spool need not read the file again for its upload checksum.
        with open(self._path, "rb") as stored:
            hashing = _HashingReader(stored)
            verified = digest_segment(
                cast(BinaryIO, hashing), data_key=self._data_key, expect=self._identity
            )
            stored_sha256, stored_size = hashing.finish()
        expected_size = self._prologue_size + self._body_size
        if verified.plaintext_size != expected_size:
            raise DigestMismatch(
                f"{self._path}: read back {verified.plaintext_size} bytes, wrote {expected_size}"
            )
        return SealedSegment(
            identity=self._identity,
            path=self._path,
            plaintext_size=verified.plaintext_size,
            sha256=verified.sha256,
            stored_size=stored_size,
            key_id=self._key_id,
            stored_sha256=stored_sha256,
        )

    # --- internals ---------------------------------------------------------------------------

    def _seal(self, plaintext: bytes, kind: int) -> None:
        """Encrypt one record and append it. Caller holds ``_lock``."""
        index = self._next_index
        if index > fmt.MAX_CHUNK_INDEX:
            raise LocalProtocolError(f"segment {self._path} exceeded 2**32 chunks")
        frame = fmt.encode_frame(self._file_id, index, len(plaintext), kind)
        sealed = self._aead.encrypt(
            fmt.nonce(self._prefix, index, kind),
            plaintext,
            fmt.record_aad(self._digest, frame[: fmt.FRAME_BODY_SIZE]),
        )
        try:
            # writev saves concatenating a chunk-sized buffer just to write it.
            written = os.writev(self._fd, (frame, sealed))
            if written < len(frame) + len(sealed):
                self._write_all((frame + sealed)[written:])
        except OSError as exc:
            self._fail()
            raise StorageError.from_os_error(exc, "cannot write", self._part) from exc
        self._next_index = index + 1
        self._unsynced = True

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _fail(self, cause: StorageError | None = None) -> None:
        if self._state is WriterState.OPEN:
            self._failure = cause
            self._state = WriterState.FAILED
            try:
                os.close(self._fd)
            except OSError:
                logger.warning("closing failed segment fd failed path=%s", self._part)
            logger.error(
                "segment writer failed; .part left for recovery path=%s recording_id=%s",
                self._part,
                self._identity.recording_id,
            )


class SpoolSinkFactory:
    """``recorder.sink.SinkFactory`` writing sealed segments into one directory.

    Args:
        directory: the spool directory (created 0700 if missing).
        keys: where each segment's fresh data key comes from (a ``RecordingKeyring``).
        chunk_size: plaintext bytes per full chunk.
        checkpoint_interval_s: what ``needs_checkpoint`` measures against.
    """

    def __init__(
        self,
        directory: Path | str,
        keys: SegmentKeySource,
        *,
        chunk_size: int = fmt.DEFAULT_CHUNK_SIZE,
        checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S,
    ) -> None:
        self._dir = Path(directory)
        make_durable_dir(self._dir)
        make_durable_dir(self._dir / SPARE_DIR)
        self._keys = keys
        self._chunk_size = chunk_size
        self._interval = checkpoint_interval_s
        self._reclaim_spares()

    @property
    def directory(self) -> Path:
        return self._dir

    async def open_async(
        self,
        identity: SegmentIdentity,
        *,
        prologue_size: int = 0,
        limiter: trio.CapacityLimiter | None = None,
    ) -> EncryptedSegmentWriter:
        """``open`` in a worker thread: it creates and fsyncs a file, and may need a key."""
        return await trio.to_thread.run_sync(
            functools.partial(self.open, identity, prologue_size=prologue_size), limiter=limiter
        )

    def open(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> EncryptedSegmentWriter:
        return EncryptedSegmentWriter(
            self._dir / segment_file_name(identity),
            identity,
            keys=self._keys,
            prologue_size=prologue_size,
            chunk_size=self._chunk_size,
            checkpoint_interval_s=self._interval,
        )

    def open_spare(
        self, identity: SegmentIdentity, *, prologue_size: int = 0
    ) -> EncryptedSegmentWriter:
        """``open`` for a segment opened ahead of its rotation (see the module docstring)."""
        return EncryptedSegmentWriter(
            self._dir / segment_file_name(identity),
            identity,
            keys=self._keys,
            prologue_size=prologue_size,
            chunk_size=self._chunk_size,
            checkpoint_interval_s=self._interval,
            spare=True,
        )

    def _reclaim_spares(self) -> None:
        """Spares a crashed process left: header-only ones go; one holding data (an adoption
        whose rename the crash undid) goes back beside the others for crash recovery. A spare
        still locked belongs to a live process sharing this directory and is left alone, and so
        is a header-only one younger than ``_SPARE_GRACE_S`` (a live writer may have created it
        an instant before taking its lock)."""
        for part in sorted((self._dir / SPARE_DIR).glob(f"*{PART_SUFFIX}")):
            try:
                fd = os.open(part, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                status = os.fstat(fd)
                size = status.st_size
                try:
                    with os.fdopen(os.dup(fd), "rb") as stream:
                        body_offset = read_header_from(stream, source=str(part)).body_offset
                except (RecorderError, OSError):
                    body_offset = size  # a torn header: it was being created, nothing in it
                if size <= body_offset:
                    if time.time() - status.st_mtime < _SPARE_GRACE_S:
                        continue
                    part.unlink(missing_ok=True)
                    logger.info("stale spare segment removed path=%s", part)
                else:
                    os.rename(part, self._dir / part.name)
                    logger.warning("spare segment holding data moved for recovery path=%s", part)
            finally:
                os.close(fd)
        fsync_directory(self._dir / SPARE_DIR)
        fsync_directory(self._dir)
