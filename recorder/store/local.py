"""``LocalStore``: the embedded default object store, a directory on a local filesystem.

Layout under ``root``: each key is split on ``/`` and every component is percent-encoded
(``recorder.store.keycodec``), so no key can leave ``root`` or collide with our own files::

    <root>/<enc(c1)>/<enc(c2)>/<enc(leaf)>          the object, mode 0444
    <root>/<enc(c1)>/<enc(c2)>/<enc(leaf)>%meta     JSON lock record: sha256, size, retain-until,
                                                    lock mode, legal hold, metadata; mode 0444
    ...%tmp-<random>                                a write in progress (removed on failure)

Encoded names never contain ``%m`` or ``%t``, so the suffixes cannot be forged by a key.

Writes follow borg's SaveFile: temp file in the same directory, write, fsync, rename into place,
fsync the directory. The lock record is written *before* the object appears, so an object is
never visible without its lock; a lock record without an object (a crash in between) is ignored
and replaced by the next put. The object itself is published with ``os.link`` rather than
``os.replace`` so that even a concurrent writer in another process can never overwrite it, and
the check, the lock record and the link happen under an exclusive ``flock`` on the object's
directory, which every process (and thread) writing or updating a lock record in it takes: two
processes racing on one key can neither both "win" nor leave one's record beside the other's
bytes.
Retention and legal hold are enforced on ``delete`` against the injectable clock ``now``.

All blocking file I/O runs in worker threads under one ``CapacityLimiter``.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from io import FileIO
from pathlib import Path
from typing import IO, Final, TypeVar

import trio

from recorder.durable import fsync_directory, write_durably
from recorder.errors import (
    DigestMismatch,
    DiskFull,
    ObjectExists,
    ObjectLocked,
    ObjectNotFound,
    StorageError,
    StoreUnavailable,
)
from recorder.store.base import (
    READ_CHUNK_BYTES,
    LockMode,
    ObjectInfo,
    PutResult,
    StorePolicy,
    normalize_sha256,
    round_up_to_second,
)
from recorder.store.keycodec import decode_component, encode_component

META_SUFFIX: Final = "%meta"
TMP_MARKER: Final = "%tmp-"
#: Worker threads doing file I/O for one store at once.
DEFAULT_IO_THREADS: Final = 4
#: A temp file older than this is left over from a crash, not a write in progress.
STALE_TEMP_SECONDS: Final = 3600
_READ_ONLY: Final = 0o444
_NO_SPACE_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})

_T = TypeVar("_T")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _LockRecord:
    sha256: str
    size: int
    retain_until: datetime | None
    lock_mode: LockMode | None
    legal_hold: bool
    metadata: dict[str, str]

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "sha256": self.sha256,
                "size": self.size,
                "retain_until": self.retain_until.isoformat() if self.retain_until else None,
                "lock_mode": self.lock_mode.value if self.lock_mode else None,
                "legal_hold": self.legal_hold,
                "metadata": self.metadata,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> _LockRecord:
        doc = json.loads(raw)
        until = doc["retain_until"]
        mode = doc["lock_mode"]
        return cls(
            sha256=str(doc["sha256"]),
            size=int(doc["size"]),
            retain_until=datetime.fromisoformat(until) if until else None,
            lock_mode=LockMode(mode) if mode else None,
            legal_hold=bool(doc["legal_hold"]),
            metadata={str(k): str(v) for k, v in doc["metadata"].items()},
        )


def _disk_full(exc: OSError, path: Path) -> DiskFull:
    return DiskFull(f"no space left on the device holding {path} ({exc.strerror})")


@contextlib.contextmanager
def _directory_locked(directory: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``directory``: one writer of its keys at a time, host-wide.

    ``flock`` locks belong to an open file description, so two threads of one process that
    each open the directory exclude each other too.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _temp_name(final: Path) -> Path:
    """A write in progress beside ``final``: listing skips and cleanup removes ``TMP_MARKER``."""
    return final.with_name(final.name + TMP_MARKER + secrets.token_hex(8))


@contextlib.contextmanager
def _temp_beside(final: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """A temp file in ``final``'s directory; removed unless the caller moved it away."""
    temp = _temp_name(final)
    handle = temp.open("xb")
    try:
        yield temp, handle
    finally:
        handle.close()
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def write_atomically(final: Path, data: bytes, *, mode: int = _READ_ONLY) -> None:
    """``recorder.durable.write_durably`` under the store's temp names; ``DiskFull`` on ENOSPC."""
    try:
        write_durably(final, data, mode=mode, temp_path=_temp_name(final))
    except OSError as exc:
        if exc.errno in _NO_SPACE_ERRNOS:
            raise _disk_full(exc, final) from exc
        raise


class LocalStore:
    """A directory as an ``ObjectStore`` with enforced retain-until and legal hold."""

    def __init__(
        self,
        root: Path,
        *,
        now: Callable[[], datetime] = _utc_now,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        self.root = root
        self._now = now
        self._limiter = limiter or trio.CapacityLimiter(DEFAULT_IO_THREADS)
        # Read-modify-write of lock records happens in worker threads.
        self._records_lock = threading.Lock()

    # --- trio shell ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[[], _T]) -> _T:
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

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
        until = round_up_to_second(retain_until) if retain_until is not None else None
        record = _LockRecord(
            sha256=normalize_sha256(sha256),
            size=-1,
            retain_until=until,
            lock_mode=lock_mode if until is not None else None,
            legal_hold=legal_hold,
            metadata=dict(metadata or {}),
        )
        return await self._run(partial(self._put_sync, key, source, record))

    async def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        return await self._run(partial(self._head_sync, key, version_id))

    @asynccontextmanager
    async def open(
        self, key: str, *, version_id: str | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        path = await self._run(partial(self._existing_path, key, version_id))
        try:
            handle = await trio.open_file(path, "rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key!r}") from exc

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await handle.read(READ_CHUNK_BYTES):
                yield chunk

        iterator = chunks()
        try:
            yield iterator
        finally:
            await iterator.aclose()  # type: ignore[attr-defined]
            with trio.CancelScope(shield=True):
                await handle.aclose()

    async def open_file(self, key: str, *, version_id: str | None = None) -> FileIO:
        """The object's file itself (``LocalObjects``), unbuffered: one ``readinto`` is one
        ``read(2)`` into the caller's buffer."""
        return await self._run(partial(self._open_file_sync, key, version_id))

    async def set_legal_hold(self, key: str, on: bool, *, version_id: str | None = None) -> None:
        def change(record: _LockRecord) -> None:
            record.legal_hold = on

        await self._run(partial(self._update_record, key, version_id, change))

    async def extend_retention(
        self, key: str, until: datetime, *, version_id: str | None = None
    ) -> None:
        new_until = round_up_to_second(until)

        def change(record: _LockRecord) -> None:
            if record.retain_until is not None and new_until < record.retain_until:
                raise ObjectLocked(f"retention of {key!r} can only be extended, not shortened")
            record.retain_until = new_until
            record.lock_mode = record.lock_mode or LockMode.COMPLIANCE

        await self._run(partial(self._update_record, key, version_id, change))

    async def delete(self, key: str, *, version_id: str | None = None) -> None:
        await self._run(partial(self._delete_sync, key, version_id))

    async def list_versions(self, key: str) -> builtins.list[str | None]:
        """The one version a directory keeps (``[None]``), or none."""

        def exists() -> builtins.list[str | None]:
            return [None] if self._path(key).is_file() else []

        return await self._run(exists)

    async def list(self, prefix: str = "") -> list[str]:
        return await self._run(partial(self._list_sync, prefix))

    async def check_ready(self) -> None:
        await self._run(self._check_ready_sync)

    async def self_check(self, policy: StorePolicy) -> None:
        # The directory enforces each object's own lock record; there are no bucket defaults
        # to compare, so any policy can be kept as long as the directory is usable.
        await self._run(self._check_ready_sync)
        await self._run(self._remove_stale_temps)

    # --- blocking internals (worker threads) ----------------------------------------------------

    def _path(self, key: str) -> Path:
        components = key.split("/")
        return self.root.joinpath(*(encode_component(c) for c in components))

    def _existing_path(self, key: str, version_id: str | None) -> Path:
        self._read_record(key, version_id)
        return self._path(key)

    def _open_file_sync(self, key: str, version_id: str | None) -> FileIO:
        path = self._existing_path(key, version_id)
        try:
            return path.open("rb", buffering=0)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key!r}") from exc

    def _record_path(self, path: Path) -> Path:
        return path.with_name(path.name + META_SUFFIX)

    def _read_record(self, key: str, version_id: str | None) -> _LockRecord:
        if version_id is not None:
            raise ObjectNotFound(f"local store keeps no versions; no version {version_id!r}")
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r}")
        try:
            return _LockRecord.from_json(self._record_path(path).read_bytes())
        except FileNotFoundError as exc:
            raise StorageError(f"object {key!r} has no lock record at {path}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"lock record of {key!r} is unreadable") from exc

    def _put_sync(self, key: str, source: Path, wanted: _LockRecord) -> PutResult:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise StorageError(f"put {key!r}: a prefix of the key is already an object") from exc
        except OSError as exc:
            if exc.errno in _NO_SPACE_ERRNOS:
                raise _disk_full(exc, path.parent) from exc
            raise StorageError(f"put {key!r}: cannot create {path.parent}") from exc
        if path.is_dir():
            raise StorageError(f"put {key!r}: the key is already a prefix of other objects")
        if path.exists():
            return self._reput(key, path, wanted)
        # Copy and hash outside the directory lock; only publishing is serialised.
        try:
            with _temp_beside(path) as (temp, handle):
                digest = hashlib.sha256()
                size = 0
                with source.open("rb") as reader:
                    while chunk := reader.read(READ_CHUNK_BYTES):
                        digest.update(chunk)
                        handle.write(chunk)
                        size += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
                if not hmac.compare_digest(digest.hexdigest(), wanted.sha256):
                    raise DigestMismatch(f"put {key!r}: source bytes do not match the sha256")
                os.chmod(temp, _READ_ONLY)
                wanted.size = size
                with self._records_lock, _directory_locked(path.parent):
                    if path.exists():
                        # Lost a race with another writer of the same key: judge its bytes.
                        return self._reput_locked(key, wanted)
                    # A record without an object is a crash's leftover: ours replaces it.
                    write_atomically(self._record_path(path), wanted.to_json())
                    # link, not rename: never replaces, even if the lock were bypassed.
                    os.link(temp, path)
            fsync_directory(path.parent)
        except OSError as exc:
            if exc.errno in _NO_SPACE_ERRNOS:
                raise _disk_full(exc, path) from exc
            raise StorageError(f"put {key!r} failed: {exc.strerror}") from exc
        return PutResult(key, None, size, wanted.sha256)

    def _reput(self, key: str, path: Path, wanted: _LockRecord) -> PutResult:
        with self._records_lock, _directory_locked(path.parent):
            return self._reput_locked(key, wanted)

    def _reput_locked(self, key: str, wanted: _LockRecord) -> PutResult:
        def merge(record: _LockRecord) -> None:
            if not hmac.compare_digest(record.sha256, wanted.sha256):
                raise ObjectExists(f"put {key!r}: a different object already exists")
            if wanted.retain_until is not None and (
                record.retain_until is None or wanted.retain_until > record.retain_until
            ):
                record.retain_until = wanted.retain_until
                record.lock_mode = record.lock_mode or wanted.lock_mode
            record.legal_hold = record.legal_hold or wanted.legal_hold

        record = self._change_record(key, None, merge)
        return PutResult(key, None, record.size, record.sha256)

    def _update_record(
        self, key: str, version_id: str | None, change: Callable[[_LockRecord], None]
    ) -> _LockRecord:
        path = self._path(key)
        if not path.parent.is_dir():
            raise ObjectNotFound(f"no object {key!r}")
        with self._records_lock, _directory_locked(path.parent):
            return self._change_record(key, version_id, change)

    def _change_record(
        self, key: str, version_id: str | None, change: Callable[[_LockRecord], None]
    ) -> _LockRecord:
        """Read-modify-write of a lock record; the caller holds both locks."""
        record = self._read_record(key, version_id)
        before = record.to_json()
        change(record)
        after = record.to_json()
        if after != before:
            write_atomically(self._record_path(self._path(key)), after)
        return record

    def _head_sync(self, key: str, version_id: str | None) -> ObjectInfo:
        record = self._read_record(key, version_id)
        return ObjectInfo(
            key=key,
            size=self._path(key).stat().st_size,
            sha256=record.sha256,
            version_id=None,
            retain_until=record.retain_until,
            lock_mode=record.lock_mode,
            legal_hold=record.legal_hold,
            metadata=record.metadata,
        )

    def _delete_sync(self, key: str, version_id: str | None) -> None:
        path = self._path(key)
        if not path.parent.is_dir():
            raise ObjectNotFound(f"no object {key!r}")
        with self._records_lock, _directory_locked(path.parent):
            try:
                record = self._read_record(key, version_id)
            except ObjectNotFound:
                raise
            except StorageError as exc:
                raise ObjectLocked(f"delete {key!r}: its lock record cannot be read") from exc
            if record.legal_hold:
                raise ObjectLocked(f"delete {key!r}: a legal hold is on")
            if record.retain_until is not None and record.retain_until > self._now():
                raise ObjectLocked(
                    f"delete {key!r}: retained until {record.retain_until.isoformat()}"
                )
            path.unlink()
            fsync_directory(path.parent)
            self._record_path(path).unlink(missing_ok=True)

    def _list_sync(self, prefix: str) -> builtins.list[str]:
        keys: builtins.list[str] = []
        if not self.root.is_dir():
            return keys
        for directory, _subdirs, files in os.walk(self.root):
            relative = Path(directory).relative_to(self.root)
            parents = [decode_component(part) for part in relative.parts]
            for name in files:
                if name.endswith(META_SUFFIX) or TMP_MARKER in name:
                    continue
                key = "/".join([*parents, decode_component(name)])
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def _check_ready_sync(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"store directory {self.root} is unusable") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreUnavailable(f"store directory {self.root} is not writable")

    def _remove_stale_temps(self) -> None:
        # Temp files only survive a crash mid-write; none of them was ever a visible object.
        # Young ones may belong to another worker process writing right now.
        cutoff = self._now().timestamp() - STALE_TEMP_SECONDS
        for directory, _subdirs, files in os.walk(self.root):
            for name in files:
                if TMP_MARKER in name:
                    temp = Path(directory) / name
                    with contextlib.suppress(FileNotFoundError):
                        if temp.stat().st_mtime < cutoff:
                            temp.unlink()
