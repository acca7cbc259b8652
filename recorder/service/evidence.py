"""Where a sealed segment goes once the catalog knows it: its object key and the spool.

Shared by live engagements and startup recovery, so that a segment gets the same object key,
retention, legal hold and upload job whichever of the two hands it on.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Final

from recorder.catalog.base import EvidenceKind
from recorder.errors import CatalogError
from recorder.retention.assign import assign_policy
from recorder.retention.policy import PolicyLockMode
from recorder.service.components import Components, now_ms
from recorder.sink import SealedSegment, SegmentIdentity
from recorder.spool.keys import object_key, segment_key
from recorder.spool.spool import upload_job_for
from recorder.store.base import LockMode

logger = logging.getLogger(__name__)

#: Object name endings: the stored bytes are encrypted (``.rec``) WAV or JSON lines.
_EXTENSIONS: Final = {EvidenceKind.SEGMENT: "wav.rec", EvidenceKind.RECORD: "jsonl.rec"}
#: Upload-job metadata key the uploader's callback reads to update the right catalog table.
EVIDENCE_KIND_KEY: Final = "evidence-kind"


async def retain_until(c: Components, recording_id: str) -> datetime:
    """Upload time plus the period of the recording's retention policy (``policies/*.toml``).

    With the catalog unreachable (recording goes on, invariant 10) the longest period of any
    policy applies: evidence may be kept too long, never deleted too early. The policy is
    assigned at the next seal or by the retention run.
    """
    try:
        days = await assign_policy(c.catalog, c.policies, recording_id, now_ms())
    except CatalogError as exc:
        days = c.policies.longest_days
        logger.warning(
            "policy not assigned (catalog unavailable) recording_id=%s: retain %d days: %s",
            recording_id,
            days,
            exc,
        )
    return datetime.now(UTC) + timedelta(days=days)


async def lock_mode_for(c: Components, recording_id: str) -> LockMode:
    """The stricter of the store's lock mode and the recording's policy's: compliance wins."""
    try:
        stored = await c.catalog.recording_policy(recording_id)
    except CatalogError as exc:
        logger.warning(
            "policy lock mode unknown (catalog unavailable) recording_id=%s: %s", recording_id, exc
        )
        return c.lock_mode
    policy = c.policies.by_name(stored[0]) if stored else None
    if policy is not None and policy.lock_mode is PolicyLockMode.COMPLIANCE:
        return LockMode.COMPLIANCE
    return c.lock_mode


def evidence_key(
    identity: SegmentIdentity,
    kind: EvidenceKind,
    *,
    product: str,
    instance_id: str,
    rtms_stream_id: str,
) -> str:
    return object_key(
        segment_key(
            identity,
            product=product,
            instance_id=instance_id,
            rtms_stream_id=rtms_stream_id,
            extension=_EXTENSIONS[kind],
        )
    )


async def spool_sealed(
    c: Components,
    sealed: SealedSegment,
    kind: EvidenceKind,
    *,
    key: str,
    retain: datetime,
) -> None:
    """Queue ``sealed`` for upload under ``key``; a legal hold on its recording travels along."""
    on_hold = await c.catalog.is_on_hold(sealed.identity.recording_id)
    lock_mode = await lock_mode_for(c, sealed.identity.recording_id)
    job = await upload_job_for(
        sealed, object_key=key, retain_until=retain, lock_mode=lock_mode, legal_hold=on_hold
    )
    job = replace(job, metadata={**job.metadata, EVIDENCE_KIND_KEY: kind.value})
    assert sealed.path is not None  # upload_job_for refuses sealed segments without a file
    await c.spool.enqueue(sealed.path, job)
