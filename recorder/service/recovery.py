"""Startup recovery (invariant 6): nothing a crashed recorder had sealed is left behind.

At start, before any engagement runs, the writing directory may hold two kinds of leftovers:

* ``*.part`` files whose writer died: ``recover()`` keeps every authenticated chunk (all audio
  checkpointed up to about a second before the crash), rebuilds the WAV header, and reports
  exactly how much was kept;
* sealed files that never reached the spool (the process died between sealing and enqueueing).

Each is entered into the catalog (marked ``recovered`` when recovery sealed it) and handed to the
spool, which uploads and verifies it like any other segment.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from recorder.audio.wav import recovery_prologue
from recorder.catalog.base import EvidenceKind, NewRecordFile, NewSegment
from recorder.crypto.reader import digest_segment
from recorder.crypto.recovery import RecoveryFailure, RecoveryReport, recover_directory_async
from recorder.crypto.writer import PART_SUFFIX
from recorder.errors import RecorderError
from recorder.service.components import Components, now_ms
from recorder.service.evidence import evidence_key, retain_until, spool_sealed
from recorder.sink import SealedSegment

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class StartupRecovery:
    recovered: list[RecoveryReport] = field(default_factory=list)
    failed: list[RecoveryFailure] = field(default_factory=list)
    requeued: list[Path] = field(default_factory=list)


async def recover_at_startup(c: Components) -> StartupRecovery:
    result = StartupRecovery()
    for outcome in await recover_directory_async(c.writing_dir, c.keyring, recovery_prologue):
        if isinstance(outcome, RecoveryFailure):
            result.failed.append(outcome)
            logger.error(
                "segment could not be recovered path=%s error=%s",
                outcome.part_path,
                outcome.error,
            )
        else:
            result.recovered.append(outcome)
            logger.warning(
                "segment recovered after a crash path=%s body_bytes=%d torn_bytes=%d prologue=%s",
                outcome.part_path,
                outcome.body_bytes_recovered,
                outcome.torn_bytes_discarded,
                outcome.prologue.value,
            )
    # Data a crash left in the spool without its job record goes back through the writing dir.
    for orphan in await c.spool.orphaned_data():
        await trio.Path(orphan).rename(c.writing_dir / f"{orphan.stem}.orphan.rtmsenc")
    sealed_files = sorted(
        p for p in c.writing_dir.iterdir() if p.is_file() and not p.name.endswith(PART_SUFFIX)
    )
    for path in sealed_files:
        try:
            await _requeue(c, path)
            result.requeued.append(path)
        except RecorderError as exc:
            logger.error("sealed segment left in place path=%s error=%s", path, exc)
    return result


async def _requeue(c: Components, path: Path) -> None:
    digest = await trio.to_thread.run_sync(lambda: digest_segment(path, c.keyring))
    stored_size = (await trio.Path(path).stat()).st_size
    header = digest.header
    identity = header.identity
    sealed = SealedSegment(
        identity=identity,
        path=path,
        plaintext_size=digest.plaintext_size,
        sha256=digest.sha256,
        stored_size=stored_size,
        key_id=header.key_id,
        recovered=digest.recovered,
    )
    detail = await c.catalog.show(identity.recording_id)
    if detail is None:
        raise RecorderError(f"{path}: recording {identity.recording_id} is not in the catalog")
    recording = detail.recording
    retain = retain_until(c)
    retain_ms = int(retain.timestamp() * 1000)
    audio = identity.metadata.get("kind") == "audio"
    kind = EvidenceKind.SEGMENT if audio else EvidenceKind.RECORD
    key = evidence_key(
        identity,
        kind,
        product=recording.product.value,
        instance_id=recording.instance_id,
        rtms_stream_id=recording.rtms_stream_id,
    )
    if audio:
        rate = int(identity.metadata.get("wav.rate") or 16000)
        channels = int(identity.metadata.get("wav.channels") or 1)
        samples = max(digest.plaintext_size - header.prologue_size, 0) // (2 * channels)
        start_ms = int(identity.metadata.get("bext.origination_ms") or identity.created_ms)
        await c.catalog.add_segment(
            NewSegment.from_sealed(
                sealed,
                object_key=key,
                start_ms=start_ms,
                end_ms=start_ms + samples * 1000 // rate,
                start_sample=int(identity.metadata.get("start_sample") or 0),
                sample_count=samples,
                sample_rate=rate,
                codec=str(identity.metadata.get("source") or "unknown"),
                retain_until_ms=retain_ms,
            ),
            now_ms(),
        )
    else:
        await c.catalog.add_record_file(
            NewRecordFile(
                recording_id=identity.recording_id,
                kind=identity.track,
                record_index=identity.segment_index,
                object_key=key,
                plaintext_sha256=sealed.sha256,
                plaintext_size=sealed.plaintext_size,
                stored_size=sealed.stored_size,
                start_ms=identity.created_ms,
                end_ms=identity.created_ms,
                key_id=sealed.key_id,
                retain_until_ms=retain_ms,
                recovered=sealed.recovered,
            ),
            now_ms(),
        )
    await spool_sealed(c, sealed, kind, key=key, retain=retain)


async def requeue_orphans(c: Components, *, skip: frozenset[Path], min_age_s: float) -> list[Path]:
    """The periodic sweep's half of recovery: sealed files in the writing directory that no
    live engagement will hand on (not in ``skip``, older than ``min_age_s``) are catalogued and
    spooled, as at startup; a catalog outage that outlasted a call heals without a restart."""
    requeued: list[Path] = []
    now_s = time.time()
    for path in sorted(c.writing_dir.iterdir()):
        if path.name.endswith(PART_SUFFIX) or path in skip or not path.is_file():
            continue
        try:
            if now_s - path.stat().st_mtime < min_age_s:
                continue
            await _requeue(c, path)
            requeued.append(path)
        except (RecorderError, FileNotFoundError) as exc:
            logger.warning("sealed segment not requeued yet path=%s error=%s", path, exc)
    return requeued
