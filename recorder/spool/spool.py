"""``Spool``: the local directory where sealed (encrypted) files wait for the uploader.

Layout (one job = two files, named by a digest of the object key, so one key is one job)::

    <dir>/<job id>.seg          the sealed file, moved in atomically
    <dir>/<job id>.job.json     the job: object key, stored sha256, size, retain-until, lock
                                mode, legal hold, metadata, enqueue time, state

Rules:

1. **The job is written before the data moves in**, both atomically (SaveFile). A crash in
   between leaves a job without data and the sealed file still at its source: the uploader
   reports it and ``enqueue`` of the same file later completes it.
2. **Completion removes the data first, the job last**, so a crash in between leaves a job that
   the uploader finishes by verifying the stored object (it never needs the data again).
3. **One object key, one job.** Enqueueing a different file for a key that has a job raises
   ``ObjectExists``; the same bytes again is a no-op.
4. Jobs that failed verification, or failed ``max_attempts`` times, are *quarantined* (state in
   the job file): they keep their data and are not retried until an operator runs
   ``recorder spool retry``. Each failed attempt is persisted in the job (attempts, next attempt,
   last error), so a restart keeps a job's backoff.
5. **One unreadable job file is that job's problem only.** It is moved, unchanged, into
   ``<dir>/quarantine/`` with a ``.reason.json`` beside it; its data (if any) is then data
   without a job, which startup recovery requeues from the segment's own authenticated header.

Blocking file I/O runs in worker threads under a ``CapacityLimiter``.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import trio

from recorder.durable import fsync_directory
from recorder.errors import DiskFull, ObjectExists, SpoolJobUnreadable, StorageError
from recorder.quarantine import QUARANTINE_DIR, REASON_SUFFIX, quarantine_file
from recorder.sink import SealedSegment
from recorder.store.base import LockMode, normalize_sha256, sha256_of_file
from recorder.store.local import write_atomically

DATA_SUFFIX: Final = ".seg"
JOB_SUFFIX: Final = ".job.json"
#: Free space below which ``disk_free()`` reports ``low`` (the service raises an alert).
DEFAULT_WARN_FREE_BYTES: Final = 2 * 2**30  # 2 GiB
DEFAULT_IO_THREADS: Final = 2
STATE_PENDING: Final = "pending"
STATE_QUARANTINED: Final = "quarantined"
#: A job file that could not be read (listed from the quarantine directory).
STATE_UNREADABLE: Final = "unreadable"
_STATE_PENDING: Final = STATE_PENDING
_STATE_QUARANTINED: Final = STATE_QUARANTINED
#: Longest error text kept in a job file.
_MAX_ERROR_TEXT: Final = 500

_T = TypeVar("_T")

logger = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class UploadJob:
    object_key: str
    #: SHA-256 hex of the stored (sealed, encrypted) bytes: what the store must hold.
    sha256: str
    size: int
    retain_until: datetime
    lock_mode: LockMode = LockMode.COMPLIANCE
    legal_hold: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpooledJob:
    job: UploadJob
    job_id: str
    data_path: Path
    enqueued_at: datetime
    state: str = _STATE_PENDING
    #: Why a quarantined job was set aside.
    reason: str | None = None
    #: Failed upload attempts so far (persisted: a restart keeps the backoff).
    attempts: int = 0
    #: Not retried before this time (None: at once).
    next_attempt_at: datetime | None = None
    #: The last failure, as ``ErrorClass: message``.
    last_error: str | None = None

    def due(self, now: datetime) -> bool:
        return self.next_attempt_at is None or self.next_attempt_at <= now


@dataclass(frozen=True, slots=True)
class UnreadableJob:
    """A job file the spool could not parse, set aside in the quarantine directory."""

    job_id: str
    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class SpoolStats:
    pending_bytes: int
    pending_count: int
    #: Seconds since the oldest pending job was enqueued; 0 when nothing waits.
    oldest_pending_age_s: float
    quarantined_count: int


@dataclass(frozen=True, slots=True)
class DiskSpace:
    free_bytes: int
    total_bytes: int
    warn_below_bytes: int

    @property
    def low(self) -> bool:
        return self.free_bytes < self.warn_below_bytes


def job_id_for(object_key: str) -> str:
    return hashlib.sha256(object_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


async def upload_job_for(
    sealed: SealedSegment,
    *,
    object_key: str,
    retain_until: datetime,
    lock_mode: LockMode = LockMode.COMPLIANCE,
    legal_hold: bool = False,
) -> UploadJob:
    """The job for a sealed segment file: hashes the stored bytes (in a thread)."""
    if sealed.path is None:
        raise StorageError("sealed segment has no file to spool")
    if sealed.stored_sha256 is not None:
        digest, size = sealed.stored_sha256, sealed.stored_size
    else:
        digest, size = await trio.to_thread.run_sync(sha256_of_file, sealed.path)
    identity = sealed.identity
    return UploadJob(
        object_key=object_key,
        sha256=digest,
        size=size,
        retain_until=retain_until,
        lock_mode=lock_mode,
        legal_hold=legal_hold,
        metadata={
            "recording-id": identity.recording_id,
            "track": identity.track,
            "segment-index": str(identity.segment_index),
            "plaintext-sha256": sealed.sha256,
            "key-id": sealed.key_id,
            "recovered": "true" if sealed.recovered else "false",
        },
    )


def _job_to_json(spooled: SpooledJob) -> bytes:
    job = spooled.job
    return json.dumps(
        {
            "object_key": job.object_key,
            "sha256": job.sha256,
            "size": job.size,
            "retain_until": job.retain_until.isoformat(),
            "lock_mode": job.lock_mode.value,
            "legal_hold": job.legal_hold,
            "metadata": dict(job.metadata),
            "enqueued_at": spooled.enqueued_at.isoformat(),
            "state": spooled.state,
            "reason": spooled.reason,
            "attempts": spooled.attempts,
            "next_attempt_at": (
                spooled.next_attempt_at.isoformat() if spooled.next_attempt_at else None
            ),
            "last_error": spooled.last_error,
        },
        sort_keys=True,
    ).encode()


def _job_from_json(raw: bytes, directory: Path, job_id: str) -> SpooledJob:
    """Parse a job file; anything malformed is ``SpoolJobUnreadable`` naming what was wrong."""
    try:
        return _parse_job(raw, directory, job_id)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SpoolJobUnreadable(
            f"spool job {job_id} is unreadable: {type(exc).__name__}: {exc}"
        ) from exc


def _parse_job(raw: bytes, directory: Path, job_id: str) -> SpooledJob:
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise TypeError(f"a job is a JSON object, not {type(doc).__name__}")
    job = UploadJob(
        object_key=str(doc["object_key"]),
        sha256=str(doc["sha256"]),
        size=int(doc["size"]),
        retain_until=datetime.fromisoformat(doc["retain_until"]),
        lock_mode=LockMode(doc["lock_mode"]),
        legal_hold=bool(doc["legal_hold"]),
        metadata={str(k): str(v) for k, v in doc["metadata"].items()},
    )
    return SpooledJob(
        job=job,
        job_id=job_id,
        data_path=directory / (job_id + DATA_SUFFIX),
        enqueued_at=datetime.fromisoformat(doc["enqueued_at"]),
        state=str(doc["state"]),
        reason=_optional_str(doc.get("reason")),
        attempts=int(doc.get("attempts") or 0),
        next_attempt_at=(
            datetime.fromisoformat(doc["next_attempt_at"]) if doc.get("next_attempt_at") else None
        ),
        last_error=_optional_str(doc.get("last_error")),
    )


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def error_text(exc: BaseException) -> str:
    """``ErrorClass: message``, bounded, for a job file and ``recorder spool list``."""
    return f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_TEXT]


class Spool:
    def __init__(
        self,
        directory: Path,
        *,
        warn_free_bytes: int = DEFAULT_WARN_FREE_BYTES,
        now: Callable[[], datetime] = _utc_now,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        self.directory = directory
        self.warn_free_bytes = warn_free_bytes
        self._now = now
        self._limiter = limiter or trio.CapacityLimiter(DEFAULT_IO_THREADS)
        self._job_added = trio.Event()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def _run(self, fn: Callable[[], _T]) -> _T:
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    def job_added_event(self) -> trio.Event:
        """An event set by the next ``enqueue``. Take it *before* listing, so no job is missed."""
        return self._job_added

    async def enqueue(self, sealed_file: Path, job: UploadJob) -> SpooledJob:
        """Move ``sealed_file`` into the spool (atomically) with its job. Wakes the uploader."""
        job = replace(job, sha256=normalize_sha256(job.sha256))
        if job.retain_until.tzinfo is None:
            raise StorageError("retain_until must be timezone-aware")
        spooled = await self._run(partial(self._enqueue_sync, sealed_file, job))
        self._job_added.set()
        self._job_added = trio.Event()
        return spooled

    async def orphaned_data(self) -> list[Path]:
        return await self._run(self.orphaned_data_sync)

    async def pending(self) -> list[SpooledJob]:
        """Jobs waiting for upload, oldest first."""
        jobs = await self._run(self._all_jobs)
        return [job for job in jobs if job.state == _STATE_PENDING]

    async def quarantined(self) -> list[SpooledJob]:
        jobs = await self._run(self._all_jobs)
        return [job for job in jobs if job.state == _STATE_QUARANTINED]

    async def remove_data(self, spooled: SpooledJob) -> None:
        """Delete the local copy. Only after the stored object has been verified."""

        def remove() -> None:
            spooled.data_path.unlink(missing_ok=True)
            fsync_directory(self.directory)

        await self._run(remove)

    async def forget(self, spooled: SpooledJob) -> None:
        """Drop the job record (its data must be gone already)."""

        def forget() -> None:
            if spooled.data_path.exists():
                raise StorageError(f"job {spooled.job_id} still has data; refusing to forget it")
            self._job_path(spooled.job_id).unlink(missing_ok=True)
            fsync_directory(self.directory)

        await self._run(forget)

    async def quarantine(self, spooled: SpooledJob, reason: str) -> SpooledJob:
        """Set a job aside after a verification failure; its data stays."""
        marked = replace(spooled, state=_STATE_QUARANTINED, reason=reason)
        await self._run(
            partial(
                write_atomically, self._job_path(spooled.job_id), _job_to_json(marked), mode=0o600
            )
        )
        return marked

    async def jobs(self) -> list[SpooledJob]:
        """Every readable job, pending and quarantined, oldest first."""
        return await self._run(self._all_jobs)

    async def unreadable(self) -> list[UnreadableJob]:
        """Job files set aside because they could not be read."""
        return await self._run(self._unreadable_sync)

    async def record_failure(
        self, spooled: SpooledJob, error: BaseException, *, retry_after_s: float, counted: bool
    ) -> SpooledJob:
        """Persist a failed attempt: the job is not retried for ``retry_after_s``."""
        failed = replace(
            spooled,
            attempts=spooled.attempts + (1 if counted else 0),
            next_attempt_at=self._now() + timedelta(seconds=retry_after_s),
            last_error=error_text(error),
        )
        await self._write_job(failed)
        return failed

    async def requeue(self, job_id: str) -> SpooledJob:
        """Take a quarantined job out of quarantine: pending, attempts reset, due at once."""

        def requeue() -> SpooledJob:
            path = self._job_path(job_id)
            try:
                raw = path.read_bytes()
            except FileNotFoundError as exc:
                raise StorageError(f"no spool job {job_id!r}") from exc
            spooled = _job_from_json(raw, self.directory, job_id)
            if spooled.state != _STATE_QUARANTINED:
                raise StorageError(f"spool job {job_id} is {spooled.state}, not quarantined")
            pending = replace(
                spooled, state=_STATE_PENDING, reason=None, attempts=0, next_attempt_at=None
            )
            write_atomically(path, _job_to_json(pending), mode=0o600)
            return pending

        pending = await self._run(requeue)
        self._job_added.set()
        self._job_added = trio.Event()
        return pending

    def now(self) -> datetime:
        return self._now()

    async def _write_job(self, spooled: SpooledJob) -> None:
        def write() -> None:
            try:
                write_atomically(self._job_path(spooled.job_id), _job_to_json(spooled), mode=0o600)
            except OSError as exc:
                raise StorageError(
                    f"cannot write spool job {spooled.job_id}: {exc.strerror or exc}"
                ) from exc

        await self._run(write)

    async def stats(self) -> SpoolStats:
        jobs = await self._run(self._all_jobs)
        now = self._now()
        pending = [job for job in jobs if job.state == _STATE_PENDING]
        sizes = await self._run(lambda: [_size_or_zero(job.data_path) for job in pending])
        oldest = min((job.enqueued_at for job in pending), default=None)
        return SpoolStats(
            pending_bytes=sum(sizes),
            pending_count=len(pending),
            oldest_pending_age_s=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
            quarantined_count=len(jobs) - len(pending),
        )

    async def disk_free(self) -> DiskSpace:
        usage = await self._run(lambda: shutil.disk_usage(self.directory))
        return DiskSpace(usage.free, usage.total, self.warn_free_bytes)

    # --- blocking internals -----------------------------------------------------------------

    def _job_path(self, job_id: str) -> Path:
        return self.directory / (job_id + JOB_SUFFIX)

    def _enqueue_sync(self, sealed_file: Path, job: UploadJob) -> SpooledJob:
        job_id = job_id_for(job.object_key)
        spooled = SpooledJob(job, job_id, self.directory / (job_id + DATA_SUFFIX), self._now())
        job_path = self._job_path(job_id)
        existing: SpooledJob | None = None
        if job_path.exists():
            try:
                existing = _job_from_json(job_path.read_bytes(), self.directory, job_id)
            except SpoolJobUnreadable as exc:
                self._set_aside(job_path, exc)
        if existing is not None:
            if not hmac.compare_digest(existing.job.sha256, job.sha256):
                raise ObjectExists(f"spool already holds other bytes for {job.object_key!r}")
            if existing.data_path.exists():
                return existing
            # A crash between writing the job and moving the data in: finish that enqueue, and
            # take the job out of quarantine if the uploader already reported the data missing.
            spooled = replace(existing, state=_STATE_PENDING, reason=None)
            if spooled != existing:
                write_atomically(job_path, _job_to_json(spooled), mode=0o600)
            self._move_in(sealed_file, spooled.data_path)
            return spooled
        # Data first, then the job record: the uploader only ever sees a job whose data is in
        # place. A crash in between leaves data without a job: ``orphaned_data`` finds it.
        self._move_in(sealed_file, spooled.data_path)
        try:
            write_atomically(job_path, _job_to_json(spooled), mode=0o600)
        except OSError as exc:
            raise StorageError(f"cannot write spool job {job_path}: {exc.strerror}") from exc
        return spooled

    def orphaned_data_sync(self) -> list[Path]:
        """Spooled data files with no job record (a crash between moving data and job in)."""
        return sorted(
            path
            for path in self.directory.glob("*" + DATA_SUFFIX)
            if not self._job_path(path.name.removesuffix(DATA_SUFFIX)).exists()
        )

    def _move_in(self, source: Path, target: Path) -> None:
        try:
            try:
                os.replace(source, target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                self._copy_across_devices(source, target)
            fsync_directory(target.parent)
            fsync_directory(source.parent)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(f"no space left in spool {target.parent}") from exc
            raise StorageError(f"cannot move {source} into the spool: {exc.strerror}") from exc

    def _copy_across_devices(self, source: Path, target: Path) -> None:
        temp = target.with_name(target.name + ".partial")
        try:
            with source.open("rb") as reader, temp.open("wb") as writer:
                shutil.copyfileobj(reader, writer, 1024 * 1024)
                writer.flush()
                os.fsync(writer.fileno())
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        fsync_directory(target.parent)
        source.unlink()

    def _all_jobs(self) -> list[SpooledJob]:
        jobs: list[SpooledJob] = []
        for path in self.directory.glob("*" + JOB_SUFFIX):
            job_id = path.name.removesuffix(JOB_SUFFIX)
            try:
                jobs.append(_job_from_json(path.read_bytes(), self.directory, job_id))
            except FileNotFoundError:
                continue  # completed while we listed
            except (SpoolJobUnreadable, OSError) as exc:
                self._set_aside(path, exc)
        jobs.sort(key=lambda job: (job.enqueued_at, job.job_id))
        return jobs

    def _set_aside(self, path: Path, error: BaseException) -> None:
        """Move one unreadable job file into quarantine (never fatal, never deleted)."""
        try:
            quarantine_file(
                path, self.directory / QUARANTINE_DIR, reason=error_text(error), error=error
            )
        except StorageError as exc:
            if path.exists():  # else: completed, or set aside by another lister meanwhile
                logger.error("unreadable spool job left in place path=%s: %s", path, exc)

    def _unreadable_sync(self) -> list[UnreadableJob]:
        quarantine = self.directory / QUARANTINE_DIR
        if not quarantine.is_dir():
            return []
        found: list[UnreadableJob] = []
        for path in sorted(quarantine.iterdir()):
            if path.name.endswith(REASON_SUFFIX) or JOB_SUFFIX not in path.name:
                continue
            reason = "unreadable"
            try:
                note = json.loads(path.with_name(path.name + REASON_SUFFIX).read_bytes())
                reason = str(note.get("reason") or reason)
            except (OSError, ValueError, AttributeError):
                pass
            job_id = path.name.split(JOB_SUFFIX, 1)[0]
            found.append(UnreadableJob(job_id=job_id, path=path, reason=reason))
        return found


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
