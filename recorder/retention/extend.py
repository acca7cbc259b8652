"""Extending Object Lock when a policy's period is extended (MiFID II: five years to seven).

When an account event a policy names in ``extend_on`` is reported, every stored version of that
account's recordings under that policy gets its retain-until moved to the end of the extended
period. Retention can only grow (the stores refuse to shorten it), so doing this twice is
harmless. The retention engine already keeps such recordings for the extended period from the
catalog alone; this makes the store enforce it too.
"""

from __future__ import annotations

from datetime import UTC, datetime

from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import UploadState
from recorder.errors import ObjectNotFound
from recorder.retention.apply import object_versions
from recorder.retention.policy import MS_PER_DAY, PolicySet, select_policy
from recorder.store.base import ObjectStore


async def extend_locks_for_event(
    catalog: AsyncCatalog,
    store: ObjectStore,
    policies: PolicySet,
    *,
    account_id: str,
    event: str,
    now_ms: int,
) -> int:
    """Move retain-until of the account's affected versions; returns how many were extended."""
    extended = 0
    for facts in await catalog.retention_inventory():
        recording = facts.recording
        if recording.account_id != account_id:
            continue
        stored = policies.by_name(facts.policy_name) if facts.policy_name else None
        policy = stored or select_policy(policies, recording, facts.participants)
        if policy.extend_on != event or policy.extended_days is None:
            continue
        start = recording.ended_ms or now_ms
        until = datetime.fromtimestamp((start + policy.extended_days * MS_PER_DAY) / 1000, UTC)
        for obj in facts.objects:
            if obj.upload_state is UploadState.PENDING:
                continue
            for version in await object_versions(store, obj.object_key):
                try:
                    info = await store.head(obj.object_key, version_id=version)
                except ObjectNotFound:
                    continue
                if info.retain_until is None or info.retain_until < until:
                    await store.extend_retention(obj.object_key, until, version_id=version)
                    extended += 1
    return extended
