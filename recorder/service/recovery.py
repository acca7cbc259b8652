"""Startup recovery (invariant 6): nothing a crashed recorder had sealed is left behind.

At start, before any engagement runs, the writing directory may hold two kinds of leftovers:

* ``*.part`` files whose writer died: ``recover()`` keeps every authenticated chunk (all audio
  checkpointed up to about a second before the crash), rebuilds the WAV header, and reports
  exactly how much was kept;
* sealed files that never reached the spool (the process died between sealing and enqueueing).

Each is entered into the catalog (marked ``recovered`` when recovery sealed it) and handed to the
spool, which uploads and verifies it like any other segment. Chunks that failed authentication
are holes in a recovered segment: each becomes a ``corrupt_chunk`` gap in the catalog.

Nothing here can stop the service from starting: every error is contained to its file. A file
that is the problem (unreadable, corrupt, or an unexpected error) is moved to ``quarantine/`` with
its reason beside it and counted in ``rtmsrec_recovery_failures``; a file that waits on something
else (the catalog, a key service, the disk) stays where it is for the next start.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import trio

from recorder.audio.wav import recovery_prologue
from recorder.catalog.base import (
    EvidenceKind,
    NewRecordFile,
    NewSegment,
    RecordFileRow,
    SegmentRow,
)
from recorder.crypto._format import SegmentHeader
from recorder.crypto.opaque import OPAQUE_PLAINTEXT_DIGEST, scan_opaque
from recorder.crypto.reader import digest_segment
from recorder.crypto.recovery import (
    HOLES_KEY,
    RecoveredHole,
    RecoveryFailure,
    RecoveryReport,
    holes_from_metadata,
    recover_directory_async,
)
from recorder.crypto.writer import PART_SUFFIX
from recorder.durable import fsync_directory
from recorder.errors import DecryptNotPermitted, IntegrityError, RecorderError, StorageError
from recorder.quarantine import QUARANTINE_DIR, quarantine_file
from recorder.rtms.events import GapCause
from recorder.service.components import Components, now_ms
from recorder.service.evidence import evidence_key, retain_until, spool_sealed
from recorder.sink import SealedSegment, SegmentIdentity

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class StartupRecovery:
    recovered: list[RecoveryReport] = field(default_factory=list)
    failed: list[RecoveryFailure] = field(default_factory=list)
    requeued: list[Path] = field(default_factory=list)
    #: Sealed files that could not be requeued and were quarantined.
    quarantined: list[Path] = field(default_factory=list)


def zero_fills_holes(header: SegmentHeader) -> bool:
    """Audio keeps its timeline across a hole (zero samples); records simply lack the bytes."""
    return header.identity.metadata.get("kind") == "audio"


async def recover_at_startup(c: Components) -> StartupRecovery:
    result = StartupRecovery()
    for outcome in await recover_directory_async(
        c.writing_dir, c.keyring, recovery_prologue, zero_fill_holes=zero_fills_holes
    ):
        if isinstance(outcome, RecoveryFailure) and isinstance(outcome.error, DecryptNotPermitted):
            await _ship_opaque_or_keep(c, outcome.part_path, result)
            continue
        if isinstance(outcome, RecoveryFailure):
            result.failed.append(outcome)
            c.metrics.recovery_failed("recover")
            logger.error(
                "segment could not be recovered path=%s quarantined=%s error=%s: %s",
                outcome.part_path,
                outcome.quarantined,
                type(outcome.error).__name__,
                outcome.error,
            )
        else:
            result.recovered.append(outcome)
            c.metrics.segment_recovered(
                corrupt_chunks=sum(h.end_chunk - h.first_chunk for h in outcome.holes)
            )
            logger.warning(
                "segment recovered after a crash path=%s body_bytes=%d torn_bytes=%d holes=%d "
                "prologue=%s",
                outcome.part_path,
                outcome.body_bytes_recovered,
                outcome.torn_bytes_discarded,
                len(outcome.holes),
                outcome.prologue.value,
            )
    # Data a crash left in the spool without its job record goes back through the writing dir,
    # and so does the data of a job file that cannot be read (listing sets that file aside).
    try:
        await c.spool.jobs()
        for orphan in await c.spool.orphaned_data():
            await trio.Path(orphan).rename(c.writing_dir / f"{orphan.stem}.orphan.rtmsenc")
    except (OSError, RecorderError) as exc:
        logger.error("orphaned spool data left in place: %s", exc)
    sealed_files = sorted(
        p for p in c.writing_dir.iterdir() if p.is_file() and not p.name.endswith(PART_SUFFIX)
    )
    for path in sealed_files:
        try:
            await _requeue(c, path)
            result.requeued.append(path)
        except DecryptNotPermitted:
            await _ship_opaque_or_keep(c, path, result)
        except Exception as exc:  # containment per file is the point
            c.metrics.recovery_failed("requeue")
            if isinstance(exc, RecorderError) and not isinstance(exc, IntegrityError):
                # The catalog, a key service or the disk: not this file's fault; next start.
                logger.error("sealed segment left in place path=%s error=%s", path, exc)
                continue
            logger.error(
                "sealed segment cannot be requeued path=%s error=%s: %s",
                path,
                type(exc).__name__,
                exc,
            )
            try:
                kept = await trio.to_thread.run_sync(
                    functools.partial(
                        quarantine_file,
                        path,
                        c.writing_dir / QUARANTINE_DIR,
                        reason=f"cannot requeue: {type(exc).__name__}: {exc}",
                        error=exc,
                    )
                )
                result.quarantined.append(kept)
            except RecorderError as move_error:
                logger.error("could not quarantine path=%s: %s", path, move_error)
    return result


async def _requeue(c: Components, path: Path) -> None:
    digest = await trio.to_thread.run_sync(lambda: digest_segment(path, c.keyring))
    stored_size = (await trio.Path(path).stat()).st_size
    header = digest.header
    sealed = SealedSegment(
        identity=header.identity,
        path=path,
        plaintext_size=digest.plaintext_size,
        sha256=digest.sha256,
        stored_size=stored_size,
        key_id=header.key_id,
        recovered=digest.recovered,
    )
    await _enter_and_spool(c, sealed, header)


async def _enter_and_spool(c: Components, sealed: SealedSegment, header: SegmentHeader) -> None:
    identity = header.identity
    detail = await c.catalog.show(identity.recording_id)
    if detail is None:
        raise RecorderError(
            f"{sealed.path}: recording {identity.recording_id} is not in the catalog"
        )
    recording = detail.recording
    retain = await retain_until(c, identity.recording_id)
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
    holes = holes_from_metadata(identity.metadata.get(HOLES_KEY))
    if audio:
        rate = int(identity.metadata.get("wav.rate") or 16000)
        channels = int(identity.metadata.get("wav.channels") or 1)
        samples = max(sealed.plaintext_size - header.prologue_size, 0) // (2 * channels)
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
                # A video segment's pts 0 is its RTMS ``origin_ms`` (recorder.video.track).
                start_ms=int(identity.metadata.get("origin_ms") or identity.created_ms),
                end_ms=int(identity.metadata.get("origin_ms") or identity.created_ms),
                key_id=sealed.key_id,
                retain_until_ms=retain_ms,
                recovered=sealed.recovered,
            ),
            now_ms(),
        )
    if holes:
        await _record_holes(c, identity, holes)
    await spool_sealed(c, sealed, kind, key=key, retain=retain)


# --- encrypt-only and escrow hosts: upload what cannot be decrypted here as an opaque blob ---


async def _ship_opaque_or_keep(c: Components, path: Path, result: StartupRecovery) -> None:
    """This host may not decrypt ``path`` (public key, KMS without Decrypt, escrow-wrapped key).

    The file still leaves local disk: its framing is checked without a key, it is entered with
    the digests the writer already recorded (or marked opaque when there are none) and uploaded
    byte for byte; the uploader's stored SHA-256 and read-back checks apply as for any object.
    An officer holding the key recovers and authenticates it on read.
    """
    try:
        sealed, header = await trio.to_thread.run_sync(_opaque_sealed, path)
        known = await _writer_digests(c, sealed)
        if known is not None:
            sealed = replace(sealed, sha256=known[0], plaintext_size=known[1], recovered=known[2])
        await _enter_and_spool(c, sealed, header)
    except RecorderError as exc:
        logger.error("undecryptable segment left in place path=%s error=%s", path, exc)
        return
    result.requeued.append(path)
    logger.warning(
        "segment uploaded as an opaque blob (this host cannot decrypt) path=%s "
        "recording_id=%s track=%s segment=%d",
        path,
        sealed.identity.recording_id,
        sealed.identity.track,
        sealed.identity.segment_index,
    )


def _opaque_sealed(path: Path) -> tuple[SealedSegment, SegmentHeader]:
    scan = scan_opaque(path)
    final = path
    if path.name.endswith(PART_SUFFIX):
        final = path.with_name(path.name[: -len(PART_SUFFIX)])
        if final.exists():
            raise StorageError(f"cannot ship {path}: {final} exists already")
        path.rename(final)
        fsync_directory(final.parent)
    header = scan.header
    sealed = SealedSegment(
        identity=header.identity,
        path=final,
        plaintext_size=header.prologue_size + scan.body_bytes,
        sha256=OPAQUE_PLAINTEXT_DIGEST,
        stored_size=final.stat().st_size,
        key_id=header.key_id,
        recovered=not scan.sealed or path != final,
    )
    return sealed, header


async def _writer_digests(c: Components, sealed: SealedSegment) -> tuple[str, int, bool] | None:
    """The plaintext digest the writer recorded in the catalog when it sealed this file."""
    identity = sealed.identity
    detail = await c.catalog.show(identity.recording_id)
    if detail is None:
        return None
    rows: list[SegmentRow | RecordFileRow] = [*detail.segments, *detail.records]
    for row in rows:
        if isinstance(row, SegmentRow):
            name, index = row.track, row.segment_index
        else:
            name, index = row.kind, row.record_index
        if (name, index, row.key_id) == (identity.track, identity.segment_index, sealed.key_id):
            return row.plaintext_sha256, row.plaintext_size, row.recovered
    return None


async def _record_holes(
    c: Components, identity: SegmentIdentity, holes: tuple[RecoveredHole, ...]
) -> None:
    """Each hole recovery left in a segment is a ``corrupt_chunk`` gap, exact where derivable."""
    meta = identity.metadata
    cause = GapCause.CORRUPT_CHUNK.value
    where = f"segment {identity.segment_index} of track {identity.track}"
    if meta.get("kind") != "audio":
        # Records carry their own times; the hole has no timeline place to point at.
        detail = "; ".join(
            f"chunks {h.first_chunk}..{h.end_chunk - 1} ({h.length} bytes) at body offset "
            f"{h.body_offset}"
            for h in holes
        )
        await c.catalog.add_gap(
            identity.recording_id,
            identity.track,
            start_ms=identity.created_ms,
            end_ms=identity.created_ms,
            cause=cause,
            detail=f"{where}: records lost: {detail}",
        )
        return
    rate = int(meta.get("wav.rate") or 16000)
    frame = 2 * int(meta.get("wav.channels") or 1)
    first_sample = int(meta.get("start_sample") or 0)
    origin_ms = int(meta.get("bext.origination_ms") or identity.created_ms)
    for hole in holes:
        if hole.length is None:
            continue  # audio stops at such damage (recovery), so no hole of unknown length
        start = hole.body_offset // frame
        end = -(-(hole.body_offset + hole.length) // frame)
        start_ms = origin_ms + start * 1000 // rate
        end_ms = origin_ms + -(-end * 1000 // rate)
        await c.catalog.add_gap(
            identity.recording_id,
            identity.track,
            start_ms=start_ms,
            end_ms=end_ms,
            cause=cause,
            start_sample=first_sample + start,
            end_sample=first_sample + end,
            detail=(
                f"{where}: chunks {hole.first_chunk}..{hole.end_chunk - 1} failed "
                "authentication at recovery; written as silence"
            ),
        )
        c.metrics.add_gap(cause, (end - start) / rate)


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
