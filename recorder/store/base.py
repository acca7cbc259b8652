"""The ``ObjectStore`` seam: what the uploader, retention and export need from durable storage.

Rules every implementation follows (``tests/store/conformance.py`` checks them):

1. **Never overwrite.** A ``put`` under an existing key with the same bytes (same SHA-256) is an
   idempotent success; with different bytes it raises ``ObjectExists``.
2. **Locks are enforced by the store**, not by the caller: ``delete`` raises ``ObjectLocked``
   while ``retain_until`` is in the future or a legal hold is on.
3. **Retention only grows.** ``extend_retention`` to an earlier time raises ``ObjectLocked``.
4. **Integrity travels with the bytes.** ``put`` is given the SHA-256 the caller expects; a store
   that reads different bytes from the source refuses with ``DigestMismatch``. ``head`` reports
   the digest the store itself holds, so a caller can verify before deleting its own copy.
5. **Retain-until has whole-second precision** (S3's), rounded *up* so a lock never ends early.

All methods are async (trio); blocking I/O happens in worker threads inside the implementation.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import FileIO
from pathlib import Path
from typing import IO, Final, Protocol, runtime_checkable

from recorder.errors import StorageError

#: Size of the chunks ``open()`` yields and of reads while hashing: constant memory per stream.
READ_CHUNK_BYTES: Final = 1024 * 1024  # 1 MiB


class LockMode(enum.StrEnum):
    """S3 Object Lock retention modes (values are the S3 wire names)."""

    #: Can be shortened or removed by a principal with s3:BypassGovernanceRetention. Tests, staging.
    GOVERNANCE = "GOVERNANCE"
    #: Nobody, not even the account root, can shorten it or delete the version before it lapses.
    COMPLIANCE = "COMPLIANCE"


@dataclass(frozen=True, slots=True)
class PutResult:
    key: str
    #: S3 version id; ``None`` for stores without versioning.
    version_id: str | None
    size: int
    #: Lowercase hex SHA-256 of the stored bytes.
    sha256: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    #: Lowercase hex SHA-256 of the whole object.
    sha256: str
    version_id: str | None
    retain_until: datetime | None
    lock_mode: LockMode | None
    legal_hold: bool
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: False when the store only holds a per-part (composite) checksum and ``sha256`` comes from
    #: metadata written at upload time; a verifier should then re-read the bytes to be sure.
    sha256_verified_by_store: bool = True


@dataclass(frozen=True, slots=True)
class StorePolicy:
    """What the deployment promises about the store; ``self_check`` refuses anything else."""

    #: Bucket default retention mode (``None``: no default rule is expected).
    lock_mode: LockMode | None = LockMode.COMPLIANCE
    #: Bucket default retention in days (``None``: no default rule is expected).
    default_retention_days: int | None = None
    require_object_lock: bool = True
    require_versioning: bool = True


class ObjectStore(Protocol):
    """Durable, retention-locked object storage (S3, a local directory, or memory in tests)."""

    async def put(
        self,
        key: str,
        source: Path,
        *,
        sha256: str,
        retain_until: datetime | None,
        lock_mode: LockMode = LockMode.COMPLIANCE,
        legal_hold: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        """Store the bytes of the local file ``source`` under ``key``.

        Raises:
            DigestMismatch: the source's bytes do not hash to ``sha256``.
            ObjectExists: ``key`` already holds different bytes.
            StoreUnavailable: the store cannot be reached (retry later).
        """
        ...

    async def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        """Describe the current (or given) version. Raises ``ObjectNotFound``."""
        ...

    def open(
        self, key: str, *, version_id: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream an object's bytes in chunks of at most ``READ_CHUNK_BYTES``.

        ``async with store.open(key) as chunks: async for chunk in chunks: ...``
        """
        ...

    async def set_legal_hold(
        self, key: str, on: bool, *, version_id: str | None = None
    ) -> None: ...

    async def extend_retention(
        self, key: str, until: datetime, *, version_id: str | None = None
    ) -> None:
        """Move retain-until later (same lock mode). Earlier than now set: ``ObjectLocked``."""
        ...

    async def delete(self, key: str, *, version_id: str | None = None) -> None:
        """Permanently delete the current (or given) version. Locked: ``ObjectLocked``."""
        ...

    async def list(self, prefix: str = "") -> list[str]:
        """Keys (current versions) starting with ``prefix``, sorted."""
        ...

    async def check_ready(self) -> None:
        """Cheap reachability probe for ``/readyz``; raises ``StoreUnavailable``."""
        ...

    async def self_check(self, policy: StorePolicy) -> None:
        """Startup check that the store can keep the ``policy``; raises ``StoreMisconfigured``."""
        ...


@runtime_checkable
class VersionedObjects(Protocol):
    """Stores that can name every version of a key (retention deletes and holds all of them)."""

    async def list_versions(self, key: str) -> list[str | None]: ...


@runtime_checkable
class LocalObjects(Protocol):
    """Stores whose objects are files on this host. A reader that reads a whole object in a
    worker thread opens it here and reads it into its own buffer: no chunk allocated and handed
    through the event loop per MiB (``open``); a remote store has no such file."""

    async def open_file(self, key: str, *, version_id: str | None = None) -> FileIO:
        """The current (or given) version, open for unbuffered reading from its first byte;
        the caller closes it. Raises ``ObjectNotFound`` as ``open`` does."""
        ...


async def put_document(
    store: ObjectStore, key: str, data: bytes, *, retain_until: datetime, lock_mode: LockMode
) -> PutResult:
    """A small document (a retention run's report, a signed audit head) stored under ``key``.
    Stores take files, so it is staged in a private temporary directory first; one that cannot
    take it (a full ``/tmp``) is a ``StorageError`` naming the document and the directory."""
    try:
        staging = tempfile.TemporaryDirectory(prefix="rtms-document-")
    except OSError as exc:
        raise not_staged(key, tempfile.gettempdir(), exc) from exc
    with staging as tmp:
        source = Path(tmp) / "document"
        try:
            source.write_bytes(data)
        except OSError as exc:
            raise not_staged(key, tmp, exc) from exc
        return await store.put(
            key,
            source,
            sha256=hashlib.sha256(data).hexdigest(),
            retain_until=retain_until,
            lock_mode=lock_mode,
        )


@contextlib.contextmanager
def staging(key: str) -> Iterator[None]:
    """Inside, an ``OSError`` is this host failing to stage a copy of ``key`` in the temporary
    directory (writing it, or flushing it on a seek): ``not_staged``."""
    try:
        yield
    except OSError as exc:
        raise not_staged(key, tempfile.gettempdir(), exc) from exc


def close_after_error(copy: IO[bytes]) -> None:
    """Close a staged copy while an error is on its way out. Closing flushes a spilled copy: a
    flush the disk refuses here must not replace that error (which may be the evidence's own);
    the descriptor is closed either way."""
    with contextlib.suppress(OSError):
        copy.close()


def not_staged(key: str, where: str, exc: OSError) -> StorageError:
    """A copy of ``key`` this host could not stage in ``where`` (a full ``/tmp``): the host's
    problem, never the object's."""
    return StorageError(f"{key}: cannot stage it in {where}: {exc.strerror or exc}")


def round_up_to_second(moment: datetime) -> datetime:
    """Retain-until as the store keeps it: UTC, whole seconds, never earlier than asked."""
    if moment.tzinfo is None:
        raise StorageError("retain_until must be timezone-aware")
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def sha256_of_file(path: Path) -> tuple[str, int]:
    """(hex digest, size) of a file, read in constant memory. Blocking: call from a thread."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(READ_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def normalize_sha256(value: str) -> str:
    """Lowercase hex; refuses anything that is not 64 hex digits."""
    lowered = value.lower()
    if len(lowered) != 64 or any(c not in "0123456789abcdef" for c in lowered):
        raise StorageError("sha256 must be 64 hex digits")
    return lowered
