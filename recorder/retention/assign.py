"""Which policy a recording is kept under, decided when its evidence is sealed.

Called for every sealed segment or record file (``recorder.service.evidence``): the facts grow
while a call goes on (the queue and participants arrive after the start), so the choice is
made again each time and stored only if its period is longer (``set_recording_policy``). The
same transaction lets the recording join any hold rule it now matches, before the object is
queued for upload with or without a legal hold.
"""

from __future__ import annotations

from recorder.catalog.aio import AsyncCatalog
from recorder.errors import CatalogError
from recorder.retention.policy import PolicySet, select_policy


async def assign_policy(
    catalog: AsyncCatalog, policies: PolicySet, recording_id: str, now_ms: int
) -> int:
    """Store the policy in force for ``recording_id``; returns its period in days."""
    detail = await catalog.show(recording_id)
    if detail is None:
        raise CatalogError(f"assign_policy: no recording {recording_id}")
    people = [(p.user_id, p.user_name) for p in detail.participants]
    policy = select_policy(policies, detail.recording, people)
    _name, _sha, days = await catalog.set_recording_policy(
        recording_id,
        name=policy.name,
        sha256=policy.sha256,
        retain_days=policy.retain_days,
        now_ms=now_ms,
    )
    return days
