"""``MemoryStore``: the in-memory ``ObjectStore`` for tests of everything above the store.

It follows the same rules as the real stores (``tests/store/conformance.py`` runs against it):
versions, Object Lock retain-until and legal hold enforced on delete, never-overwrite, retention
only extended. Time comes from an injectable ``now`` so tests can let a retention lapse without
waiting. Setting ``unavailable = True`` makes every call raise ``StoreUnavailable`` (an outage).
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import trio

from recorder.errors import (
    DigestMismatch,
    ObjectExists,
    ObjectLocked,
    ObjectNotFound,
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


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Version:
    data: bytes
    sha256: str
    version_id: str
    retain_until: datetime | None
    lock_mode: LockMode | None
    legal_hold: bool
    metadata: dict[str, str] = field(default_factory=dict)


class MemoryStore:
    """An ``ObjectStore`` in a dict. Not durable; for tests and the no-config demo only."""

    def __init__(self, *, now: Callable[[], datetime] = _utc_now) -> None:
        self._now = now
        self._objects: dict[str, list[_Version]] = {}
        self._version_ids = itertools.count(1)
        #: Set to True to simulate an outage: every call raises ``StoreUnavailable``.
        self.unavailable = False
        #: How many ``put`` calls stored new bytes (idempotent re-puts are not counted).
        self.uploads = 0

    def _check_available(self) -> None:
        if self.unavailable:
            raise StoreUnavailable("memory store: simulated outage")

    def _version(self, key: str, version_id: str | None) -> _Version:
        versions = self._objects.get(key)
        if not versions:
            raise ObjectNotFound(f"no object {key!r}")
        if version_id is None:
            return versions[-1]
        for version in versions:
            if version.version_id == version_id:
                return version
        raise ObjectNotFound(f"no version {version_id!r} of {key!r}")

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
        self._check_available()
        expected = normalize_sha256(sha256)
        data = await trio.to_thread.run_sync(source.read_bytes)
        actual = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(actual, expected):
            raise DigestMismatch(f"put {key!r}: source bytes do not match the given sha256")
        until = round_up_to_second(retain_until) if retain_until is not None else None
        existing = self._objects.get(key)
        if existing:
            current = existing[-1]
            if not hmac.compare_digest(current.sha256, actual):
                raise ObjectExists(f"put {key!r}: a different object already exists")
            # Idempotent re-put: make sure the locks asked for now are at least in place.
            if until is not None and (current.retain_until is None or until > current.retain_until):
                current.retain_until = until
                current.lock_mode = current.lock_mode or lock_mode
            current.legal_hold = current.legal_hold or legal_hold
            return PutResult(key, current.version_id, len(current.data), current.sha256)
        version = _Version(
            data=data,
            sha256=actual,
            version_id=f"v{next(self._version_ids)}",
            retain_until=until,
            lock_mode=lock_mode if until is not None else None,
            legal_hold=legal_hold,
            metadata=dict(metadata or {}),
        )
        self._objects[key] = [version]
        self.uploads += 1
        return PutResult(key, version.version_id, len(data), actual)

    async def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        self._check_available()
        version = self._version(key, version_id)
        return ObjectInfo(
            key=key,
            size=len(version.data),
            sha256=version.sha256,
            version_id=version.version_id,
            retain_until=version.retain_until,
            lock_mode=version.lock_mode,
            legal_hold=version.legal_hold,
            metadata=dict(version.metadata),
        )

    @asynccontextmanager
    async def open(
        self, key: str, *, version_id: str | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        self._check_available()
        data = self._version(key, version_id).data

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), READ_CHUNK_BYTES):
                await trio.lowlevel.checkpoint()
                yield data[start : start + READ_CHUNK_BYTES]

        iterator = chunks()
        try:
            yield iterator
        finally:
            await iterator.aclose()  # type: ignore[attr-defined]

    async def set_legal_hold(self, key: str, on: bool, *, version_id: str | None = None) -> None:
        self._check_available()
        self._version(key, version_id).legal_hold = on

    async def extend_retention(
        self, key: str, until: datetime, *, version_id: str | None = None
    ) -> None:
        self._check_available()
        version = self._version(key, version_id)
        until = round_up_to_second(until)
        if version.retain_until is not None and until < version.retain_until:
            raise ObjectLocked(f"retention of {key!r} can only be extended, not shortened")
        version.retain_until = until
        version.lock_mode = version.lock_mode or LockMode.COMPLIANCE

    async def delete(self, key: str, *, version_id: str | None = None) -> None:
        self._check_available()
        version = self._version(key, version_id)
        if version.legal_hold:
            raise ObjectLocked(f"delete {key!r}: a legal hold is on")
        if version.retain_until is not None and version.retain_until > self._now():
            raise ObjectLocked(f"delete {key!r}: retained until {version.retain_until.isoformat()}")
        versions = self._objects[key]
        versions.remove(version)
        if not versions:
            del self._objects[key]

    async def list_versions(self, key: str) -> builtins.list[str | None]:
        self._check_available()
        return [v.version_id for v in reversed(self._objects.get(key, []))]

    async def list(self, prefix: str = "") -> list[str]:
        self._check_available()
        return sorted(key for key in self._objects if key.startswith(prefix))

    async def check_ready(self) -> None:
        self._check_available()

    async def self_check(self, policy: StorePolicy) -> None:
        # Memory enforces every object's lock itself and has no bucket defaults to compare:
        # the uploader always sets retain-until per object, so any policy can be kept.
        self._check_available()
