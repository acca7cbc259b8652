"""An in-memory ``RecordingShredder`` for tests: the seam the real key store plugs into.

It keeps recording-key ids in a dict, asks the catalog about holds first (``HoldActive``, like
the real one), destroys the ids and answers with a ``DestructionRecord``. Shredding again
returns the same keys (idempotent), or raises ``KeyDestroyed`` with ``refuse_twice``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import RecordFileRow, SegmentRow
from recorder.errors import HoldActive, KeyDestroyed
from recorder.evidence_destruction import (
    DestroyedObject,
    DestructionMethod,
    DestructionRecord,
)


class MemoryShredder:
    def __init__(
        self,
        catalog: AsyncCatalog,
        keys: Mapping[str, Sequence[str]],
        *,
        now_ms: Callable[[], int],
        refuse_twice: bool = False,
    ) -> None:
        self._catalog = catalog
        self.live: dict[str, list[str]] = {rid: list(ids) for rid, ids in keys.items()}
        self.destroyed: dict[str, tuple[str, ...]] = {}
        self._now_ms = now_ms
        self.calls: list[str] = []
        #: Like a key store whose keys are simply gone: a second shred raises ``KeyDestroyed``.
        self._refuse_twice = refuse_twice

    async def shred(self, recording_id: str, *, actor: str, rule: str) -> DestructionRecord:
        self.calls.append(recording_id)
        now = self._now_ms()
        if await self._catalog.is_on_hold(recording_id):
            raise HoldActive(f"recording {recording_id} is under legal hold; its keys stay")
        if recording_id in self.destroyed and self._refuse_twice:
            raise KeyDestroyed(f"keys of {recording_id} were destroyed already")
        if recording_id not in self.destroyed:
            self.destroyed[recording_id] = tuple(self.live.pop(recording_id, ()))
        detail = await self._catalog.show(recording_id)
        rows: list[SegmentRow | RecordFileRow] = (
            [*detail.segments, *detail.records] if detail else []
        )
        return DestructionRecord(
            recording_id=recording_id,
            method=DestructionMethod.CRYPTO_ERASE,
            objects=tuple(
                DestroyedObject(row.object_key, row.version_id, row.stored_sha256 or "")
                for row in rows
            ),
            key_ids=self.destroyed[recording_id],
            rule=rule,
            hold_check=f"no holds at {datetime.fromtimestamp(now / 1000, UTC).isoformat()}",
            actor=actor,
            destroyed_ms=now,
            verification="decrypt fails: key destroyed",
        )

    def is_destroyed(self, recording_id: str) -> bool:
        return recording_id in self.destroyed
