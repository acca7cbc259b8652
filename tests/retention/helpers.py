"""Recordings with stored objects, made through the real catalog and a real store."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from recorder.catalog import (
    AsyncCatalog,
    EvidenceKind,
    EvidenceRef,
    NewSegment,
    ParticipantInfo,
    Product,
    RecordingStart,
    RecordingStatus,
)
from recorder.store.base import LockMode, ObjectStore

DAY_MS = 86_400_000
#: 2026-01-01T00:00:00Z
T0 = 1_767_225_600_000


@dataclass
class Clock:
    """The time retention and the local store see; tests move it forward."""

    ms: int = T0

    def now_ms(self) -> int:
        return self.ms

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.ms / 1000, UTC)


@dataclass
class Made:
    recording_id: str
    keys: list[str] = field(default_factory=list)


async def make_recording(
    catalog: AsyncCatalog,
    store: ObjectStore,
    tmp_path: Path,
    *,
    started_ms: int = T0,
    duration_ms: int = 60_000,
    product: Product = Product.CONTACT_CENTER,
    queue: str | None = None,
    participants: Sequence[tuple[str, str | None]] = (),
    account: str | None = None,
    objects: int = 2,
    lock_days: int | None = 1,
    uploaded: bool = True,
) -> Made:
    """One ended recording with ``objects`` segments uploaded to ``store``."""
    stream = f"stream-{secrets.token_hex(6)}"
    row = await catalog.upsert_recording(
        RecordingStart(
            rtms_stream_id=stream,
            product=product,
            instance_id=f"inst-{stream}",
            started_ms=started_ms,
            account_id=account,
        ),
        started_ms,
    )
    rid = row.recording_id
    if queue:
        await catalog.set_contact_center(rid, queue_id=queue, queue_name=queue)
    if participants:
        await catalog.add_participants(
            rid, [ParticipantInfo(user_id=u, user_name=n) for u, n in participants]
        )
    await catalog.end_recording(
        rid,
        ended_ms=started_ms + duration_ms,
        reason="ended",
        status=RecordingStatus.COMPLETE,
    )
    made = Made(rid)
    retain_ms = None if lock_days is None else started_ms + lock_days * DAY_MS
    for index in range(objects):
        data = secrets.token_bytes(256) + f"{rid}/{index}".encode()
        digest = hashlib.sha256(data).hexdigest()
        key = f"cc/{rid}/audio.{index:06d}.wav.rec"
        await catalog.add_segment(
            NewSegment(
                recording_id=rid,
                track="mixed",
                segment_index=index,
                object_key=key,
                plaintext_sha256=digest,
                plaintext_size=len(data),
                stored_size=len(data),
                start_ms=started_ms,
                end_ms=started_ms + duration_ms,
                start_sample=0,
                sample_count=16_000,
                sample_rate=16_000,
                codec="L16",
                key_id=f"rk_{rid}",
                retain_until_ms=retain_ms,
                stored_sha256=digest,
            ),
            started_ms,
        )
        if not uploaded:
            continue
        source = tmp_path / f"{rid}-{index}.bin"
        source.write_bytes(data)
        result = await store.put(
            key,
            source,
            sha256=digest,
            retain_until=None
            if retain_ms is None
            else datetime.fromtimestamp(retain_ms / 1000, UTC),
            lock_mode=LockMode.GOVERNANCE,
        )
        ref = EvidenceRef(EvidenceKind.SEGMENT, rid, "mixed", index)
        await catalog.mark_uploaded(
            ref,
            object_key=key,
            version_id=result.version_id,
            stored_sha256=digest,
            now_ms=started_ms,
        )
        await catalog.mark_verified(ref, started_ms)
        made.keys.append(key)
    return made
