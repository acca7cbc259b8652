"""Stores implementing the ``ObjectStore`` Protocol around a real one, for failure tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path

import trio

from recorder.errors import StoreUnavailable
from recorder.store.base import LockMode, ObjectInfo, ObjectStore, PutResult, StorePolicy


class WrappedStore:
    """Delegates everything to ``inner``; subclasses change one behaviour."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.puts = 0
        self.put_attempts = 0
        #: While True every put/head raises ``StoreUnavailable``, like an unreachable endpoint.
        self.down = False
        #: When set, ``put`` stores the object and then waits on this event before returning.
        self.hold_after_put: trio.Event | None = None
        self.held = trio.Event()

    def _note_attempt(self) -> None:
        self.put_attempts += 1

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
        self._note_attempt()
        if self.down:
            raise StoreUnavailable("test: store is down")
        result = await self.inner.put(
            key,
            source,
            sha256=sha256,
            retain_until=retain_until,
            lock_mode=lock_mode,
            legal_hold=legal_hold,
            metadata=metadata,
        )
        self.puts += 1
        if self.hold_after_put is not None:
            self.held.set()
            await self.hold_after_put.wait()
        return result

    async def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        if self.down:
            raise StoreUnavailable("test: store is down")
        return await self.inner.head(key, version_id=version_id)

    def open(
        self, key: str, *, version_id: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self.inner.open(key, version_id=version_id)

    async def set_legal_hold(self, key: str, on: bool, *, version_id: str | None = None) -> None:
        await self.inner.set_legal_hold(key, on, version_id=version_id)

    async def extend_retention(
        self, key: str, until: datetime, *, version_id: str | None = None
    ) -> None:
        await self.inner.extend_retention(key, until, version_id=version_id)

    async def delete(self, key: str, *, version_id: str | None = None) -> None:
        await self.inner.delete(key, version_id=version_id)

    async def list(self, prefix: str = "") -> list[str]:
        return await self.inner.list(prefix)

    async def check_ready(self) -> None:
        await self.inner.check_ready()

    async def self_check(self, policy: StorePolicy) -> None:
        await self.inner.self_check(policy)


class CorruptingStore(WrappedStore):
    """Reports a read-back that differs from what was stored (a lying or broken store)."""

    def __init__(self, inner: ObjectStore, corrupt: Callable[[ObjectInfo], ObjectInfo]) -> None:
        super().__init__(inner)
        self._corrupt = corrupt

    async def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        return self._corrupt(await super().head(key, version_id=version_id))


def other_sha256(info: ObjectInfo) -> ObjectInfo:
    flipped = ("0" if info.sha256[0] != "0" else "1") + info.sha256[1:]
    return dataclasses.replace(info, sha256=flipped)


def shorter(info: ObjectInfo) -> ObjectInfo:
    return dataclasses.replace(info, size=info.size - 1)


def no_retention(info: ObjectInfo) -> ObjectInfo:
    return dataclasses.replace(info, retain_until=None, lock_mode=None)
