"""Legal holds: placed in the catalog, mirrored to the store's legal hold on every version.

Rules:

1. The catalog is the record of a hold (audited in the same transaction, invariant 9); the
   store's per-version legal hold is its mirror, so that not even the retention role can delete
   a held object. Mirroring happens right after the catalog change; ``sync_store_holds`` redoes it
   idempotently (after a crash between the two, or for objects uploaded since).
2. A version's store hold is cleared only when *no* active hold covers its recording any more.
3. ``hold_drift`` compares the two and names every difference (``recorder verify`` prints it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import (
    HoldScope,
    LegalHoldRow,
    RecordFileRow,
    RecordingRow,
    SegmentRow,
    UploadState,
)
from recorder.catalog.retention_types import HoldRuleRow
from recorder.crypto.blind_index import SearchKey
from recorder.errors import CatalogError, ObjectNotFound
from recorder.officer.search_audit import rule_macs
from recorder.retention.apply import object_versions
from recorder.store.base import ObjectStore

#: Recordings a search-scoped hold may cover at once (more: narrow the search).
MAX_SEARCH_HOLD: Final = 10_000


@dataclass(frozen=True, slots=True)
class HoldSearch:
    participant: str | None = None
    queue: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    instance_id: str | None = None

    @property
    def empty(self) -> bool:
        return not any(
            (self.participant, self.queue, self.since_ms, self.until_ms, self.instance_id)
        )


async def find_recordings(catalog: AsyncCatalog, search: HoldSearch) -> list[RecordingRow]:
    if search.empty:
        raise CatalogError("a search hold needs at least one filter (participant, queue, time)")
    rows = await catalog.search(
        participant=search.participant,
        instance_id=search.instance_id,
        since_ms=search.since_ms,
        until_ms=search.until_ms,
        limit=MAX_SEARCH_HOLD,
    )
    if search.queue is not None:
        wanted = search.queue.casefold()
        rows = [
            r
            for r in rows
            if wanted in {(r.cc_queue_id or "").casefold(), (r.cc_queue_name or "").casefold()}
        ]
    return rows


async def _object_keys(catalog: AsyncCatalog, recording_id: str) -> list[str]:
    detail = await catalog.show(recording_id)
    if detail is None:
        raise CatalogError(f"no recording {recording_id}")
    rows: list[SegmentRow | RecordFileRow] = [*detail.segments, *detail.records]
    return [r.object_key for r in rows if r.upload_state is not UploadState.PENDING]


async def mirror_recording(catalog: AsyncCatalog, store: ObjectStore, recording_id: str) -> int:
    """Make every stored version's legal hold equal the catalog's verdict; returns changes."""
    held = await catalog.is_on_hold(recording_id)
    changed = 0
    for key in await _object_keys(catalog, recording_id):
        for version in await object_versions(store, key):
            try:
                info = await store.head(key, version_id=version)
            except ObjectNotFound:
                continue
            if info.legal_hold != held:
                await store.set_legal_hold(key, held, version_id=version)
                changed += 1
    return changed


async def place_holds(
    catalog: AsyncCatalog,
    store: ObjectStore,
    *,
    matter: str,
    reason: str,
    actor: str,
    recording_ids: Sequence[str],
    now_ms: int,
) -> list[LegalHoldRow]:
    placed = []
    for rid in recording_ids:
        placed.append(
            await catalog.place_hold(
                matter=matter,
                scope=HoldScope.RECORDING,
                scope_value=rid,
                placed_by=actor,
                reason=reason,
                now_ms=now_ms,
            )
        )
        await mirror_recording(catalog, store, rid)
    return placed


async def place_instance_hold(
    catalog: AsyncCatalog,
    store: ObjectStore,
    *,
    matter: str,
    reason: str,
    actor: str,
    instance_id: str,
    now_ms: int,
) -> LegalHoldRow:
    hold = await catalog.place_hold(
        matter=matter,
        scope=HoldScope.INSTANCE,
        scope_value=instance_id,
        placed_by=actor,
        reason=reason,
        now_ms=now_ms,
    )
    for row in await catalog.search(instance_id=instance_id, limit=MAX_SEARCH_HOLD):
        await mirror_recording(catalog, store, row.recording_id)
    return hold


async def place_rule(
    catalog: AsyncCatalog,
    store: ObjectStore,
    *,
    matter: str,
    reason: str,
    actor: str,
    rule: dict[str, str],
    now_ms: int,
    key: SearchKey | None,
) -> tuple[HoldRuleRow, list[LegalHoldRow]]:
    """A matter future recordings matching ``rule`` join; existing matches are held now too.

    ``key``: the search key, which the audit event's MACs of a person named are made with
    (``ConfigError`` if the rule names one and it is ``None``)."""
    created = await catalog.add_hold_rule(
        matter=matter,
        rule=rule,
        placed_by=actor,
        reason=reason,
        now_ms=now_ms,
        personal_macs=rule_macs(key, rule),
    )
    search = HoldSearch(participant=rule.get("participant"), queue=rule.get("queue"))
    joined: list[LegalHoldRow] = []
    if not search.empty:
        for row in await find_recordings(catalog, search):
            joined.extend(await catalog.join_hold_rules(row.recording_id, now_ms))
            await mirror_recording(catalog, store, row.recording_id)
    return created, joined


async def covered_recordings(catalog: AsyncCatalog, hold: LegalHoldRow) -> list[str]:
    if hold.scope is HoldScope.RECORDING:
        return [hold.scope_value]
    rows = await catalog.search(instance_id=hold.scope_value, limit=MAX_SEARCH_HOLD)
    return [r.recording_id for r in rows]


async def release_hold(
    catalog: AsyncCatalog,
    store: ObjectStore,
    hold_id: int,
    *,
    actor: str,
    reason: str,
    now_ms: int,
) -> LegalHoldRow:
    released = await catalog.release_hold(hold_id, released_by=actor, reason=reason, now_ms=now_ms)
    for rid in await covered_recordings(catalog, released):
        await mirror_recording(catalog, store, rid)
    return released


async def release_matter(
    catalog: AsyncCatalog,
    store: ObjectStore,
    matter: str,
    *,
    actor: str,
    reason: str,
    now_ms: int,
) -> list[LegalHoldRow]:
    """Release every active hold and hold rule of ``matter``."""
    released = []
    for rule in await catalog.hold_rules(active_only=True):
        if rule.matter == matter:
            await catalog.release_hold_rule(
                rule.rule_id, released_by=actor, reason=reason, now_ms=now_ms
            )
    for hold in await catalog.holds(active_only=True):
        if hold.matter == matter:
            released.append(
                await release_hold(
                    catalog, store, hold.hold_id, actor=actor, reason=reason, now_ms=now_ms
                )
            )
    return released


async def hold_drift(catalog: AsyncCatalog, store: ObjectStore, recording_id: str) -> list[str]:
    """Every stored version whose legal hold differs from the catalog's verdict."""
    held = await catalog.is_on_hold(recording_id)
    problems = []
    for key in await _object_keys(catalog, recording_id):
        versions = await object_versions(store, key)
        for version in versions:
            info = await store.head(key, version_id=version)
            if info.legal_hold != held:
                problems.append(
                    f"{key} version {version}: store legal hold "
                    f"{'on' if info.legal_hold else 'off'}, catalog says "
                    f"{'held' if held else 'not held'}"
                )
    return problems


async def sync_store_holds(
    catalog: AsyncCatalog, store: ObjectStore, *, every_recording: bool = False
) -> int:
    """Re-mirror every recording that has (or had) a hold; returns versions changed.

    ``every_recording`` also visits recordings that never had a hold (a store hold set behind
    the catalog's back); it reads every stored version's state, so it is slow on big stores.
    """
    recordings: set[str] = set()
    for hold in await catalog.holds(active_only=False):
        recordings.update(await covered_recordings(catalog, hold))
    if every_recording:
        recordings.update(f.recording.recording_id for f in await catalog.retention_inventory())
    changed = 0
    for rid in sorted(recordings):
        changed += await mirror_recording(catalog, store, rid)
    return changed
