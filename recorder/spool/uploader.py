"""The uploader: moves spooled sealed files to the object store, verified, then frees the disk.

For each pending job, oldest first:

1. ``store.put`` (idempotent: an object already holding the same bytes is success, so a restart
   simply repeats this step; different bytes under the key is an integrity failure).
2. **Read back** with ``store.head``: size, SHA-256, lock mode, retain-until (at least what the job
   asks) and legal hold. When the store only vouches for a composite checksum, the bytes are
   re-read and hashed.
3. Only when everything matches: delete the local copy, call ``on_uploaded(job, result)`` (the
   catalog update), then drop the job record. A crash between any two steps is finished on the
   next start (the job record outlives the data), so ``on_uploaded`` runs at least once.

Failures are told apart by what they say about the job (``recorder.errors``):

* ``StoreUnavailable`` (the store cannot be reached): an outage, not the job's fault. No new job
  starts; once the jobs in flight end the uploader sleeps ``backoff`` and starts again. The job's
  attempt is not counted.
* ``IntegrityError`` / ``ObjectExists``: logged with the key, counted, reported through
  ``on_integrity_failure``; the job is quarantined at once with its data kept and never retried
  silently.
* Anything else, one job at a time (a refused PUT, an unreadable data file, a catalog that
  refuses ``on_uploaded``, an unexpected error): that job alone backs off, exponentially up to
  ``backoff.max_s``, persisted in its job file so a restart keeps it, while the other jobs go
  on. After ``max_attempts`` counted failures the job is quarantined (data kept) and
  ``stats.quarantined`` goes up; ``recorder spool retry`` puts it back. A ``CatalogError`` in
  ``on_uploaded`` is retried at the initial backoff and never counted or quarantined: the object
  is stored and verified by then, and only the catalog can complete the job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import trio

from recorder.errors import (
    CatalogError,
    DigestMismatch,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    StoreUnavailable,
)
from recorder.spool.spool import Spool, SpooledJob, UploadJob, error_text
from recorder.store.base import ObjectInfo, ObjectStore, PutResult, round_up_to_second

logger: Final = logging.getLogger(__name__)

#: Jobs in flight at once. Each holds at most one multipart part in memory (8 MiB by default).
DEFAULT_CONCURRENCY: Final = 4
#: Counted failures after which a job is quarantined (``[storage] upload_max_attempts``).
DEFAULT_MAX_ATTEMPTS: Final = 10
#: An idle uploader looks at the spool again after this long, even if nothing woke it.
DEFAULT_RESCAN_S: Final = 5.0

OnUploaded = Callable[[UploadJob, PutResult], Awaitable[None]]
OnIntegrityFailure = Callable[[UploadJob, IntegrityError], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between failed attempts, in seconds."""

    initial_s: float = 1.0
    max_s: float = 60.0
    multiplier: float = 2.0

    def delay_s(self, failures_in_a_row: int) -> float:
        exponent = max(0, failures_in_a_row - 1)
        return float(min(self.max_s, self.initial_s * self.multiplier**exponent))


@dataclass(slots=True)
class UploaderStats:
    """Counters for metrics (``rtmsrec_upload_*``). Spool size and age come from ``Spool.stats``."""

    uploaded: int = 0
    #: Jobs completed by verifying an object that was already stored (restart recovery).
    already_stored: int = 0
    upload_failures: int = 0
    integrity_failures: int = 0
    #: Jobs quarantined after ``max_attempts`` failed attempts (integrity failures not included).
    quarantined: int = 0
    #: Store outages in a row (``StoreUnavailable``): what the uploader-wide pause grows with.
    failures_in_a_row: int = 0
    _progress: trio.Event = field(default_factory=trio.Event, repr=False, compare=False)

    def _changed(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    async def wait_until(self, condition: Callable[[UploaderStats], bool]) -> None:
        """Wait until ``condition(self)`` holds (checked after every job ends, either way)."""
        while not condition(self):
            await self._progress.wait()


async def deliver(spool: Spool, store: ObjectStore, spooled: SpooledJob) -> tuple[PutResult, bool]:
    """Upload (if needed) and verify one job. Returns (verified result, True if uploaded now).

    Raises:
        IntegrityError: the store holds other bytes, or a read-back did not match.
        StorageError: the store could not be reached or refused; retry later.
    """
    job = spooled.job
    has_data = await trio.to_thread.run_sync(spooled.data_path.exists)
    uploaded = False
    # The version our PUT created (or found identical): read back and catalog exactly that one,
    # never "whatever is current", which a racing writer could have replaced.
    version_id: str | None = None
    if has_data:
        try:
            put = await store.put(
                job.object_key,
                spooled.data_path,
                sha256=job.sha256,
                retain_until=job.retain_until,
                lock_mode=job.lock_mode,
                legal_hold=job.legal_hold,
                metadata=job.metadata,
            )
        except ObjectExists as exc:
            raise DigestMismatch(
                f"{job.object_key!r}: the store holds different bytes under this key ({exc})"
            ) from exc
        uploaded = True
        version_id = put.version_id
    try:
        info = await store.head(job.object_key, version_id=version_id)
    except ObjectNotFound as exc:
        if has_data:
            raise
        raise IntegrityError(
            f"{job.object_key!r}: spooled data is missing and the store has no object"
        ) from exc
    await _verify(store, job, info)
    return PutResult(job.object_key, info.version_id, info.size, info.sha256), uploaded


async def _verify(store: ObjectStore, job: UploadJob, info: ObjectInfo) -> None:
    problems: list[str] = []
    if info.size != job.size:
        problems.append(f"size {info.size} != {job.size}")
    if not hmac.compare_digest(info.sha256, job.sha256):
        problems.append("sha256 differs")
    if info.lock_mode is not job.lock_mode:
        problems.append(f"lock mode {info.lock_mode} != {job.lock_mode}")
    wanted_until = round_up_to_second(job.retain_until)
    if info.retain_until is None or info.retain_until < wanted_until:
        problems.append(f"retain-until {info.retain_until} earlier than {wanted_until}")
    if job.legal_hold and not info.legal_hold:
        problems.append("legal hold is off")
    if not problems and not info.sha256_verified_by_store:
        digest = hashlib.sha256()
        async with store.open(job.object_key, version_id=info.version_id) as chunks:
            async for chunk in chunks:
                digest.update(chunk)
        if not hmac.compare_digest(digest.hexdigest(), job.sha256):
            problems.append("sha256 of the stored bytes differs on re-read")
    if problems:
        raise DigestMismatch(f"{job.object_key!r}: read-back failed: " + "; ".join(problems))


async def run_uploader(
    spool: Spool,
    store: ObjectStore,
    *,
    backoff: Backoff = Backoff(),
    concurrency: int = DEFAULT_CONCURRENCY,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    rescan_s: float = DEFAULT_RESCAN_S,
    on_uploaded: OnUploaded | None = None,
    on_integrity_failure: OnIntegrityFailure | None = None,
    stats: UploaderStats | None = None,
    task_status: trio.TaskStatus[UploaderStats] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Upload spooled jobs forever; cancel the surrounding scope to stop.

    Pending jobs left by an earlier process are resumed first, each when its own backoff (kept
    in its job file) allows. Up to ``concurrency`` jobs are in flight at once, taken oldest
    first. A failing job backs off alone; only a store outage pauses every job (see the module
    docstring). ``task_status.started`` hands back the live ``UploaderStats``.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    uploader = _Uploader(spool, store, on_uploaded, on_integrity_failure, backoff, max_attempts)
    stats = stats if stats is not None else UploaderStats()
    uploader.stats = stats
    task_status.started(stats)
    while True:
        job_added = spool.job_added_event()
        jobs = await spool.pending()
        now = spool.now()
        due = [job for job in jobs if job.due(now) and uploader.wait_s(job) <= 0]
        if not due:
            waits = [
                max((job.next_attempt_at - now).total_seconds(), uploader.wait_s(job))
                if job.next_attempt_at is not None
                else uploader.wait_s(job)
                for job in jobs
            ]
            # Rescan now and then: ``recorder spool retry`` runs in another process.
            with trio.move_on_after(max(0.0, min([*waits, rescan_s]))):
                await job_added.wait()
            continue
        outage = await uploader.run_pass(due, concurrency)
        if outage is None:
            stats.failures_in_a_row = 0
            continue
        stats.failures_in_a_row += 1
        stats._changed()  # the drain's upload wait stops at an outage (service.app)
        delay = backoff.delay_s(stats.failures_in_a_row)
        logger.warning("uploads paused for %.3gs: the store is unavailable: %s", delay, outage)
        await trio.sleep(delay)


class _Uploader:
    def __init__(
        self,
        spool: Spool,
        store: ObjectStore,
        on_uploaded: OnUploaded | None,
        on_integrity_failure: OnIntegrityFailure | None,
        backoff: Backoff = Backoff(),
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.spool = spool
        self.store = store
        self.on_uploaded = on_uploaded
        self.on_integrity_failure = on_integrity_failure
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.stats = UploaderStats()
        #: Job id -> trio time before which it is not retried, for jobs whose failure could not
        #: be written to their job file (a full disk must not turn into a busy retry loop).
        self._not_before: dict[str, float] = {}

    def wait_s(self, spooled: SpooledJob) -> float:
        """Seconds until this process may try ``spooled`` again (<= 0: now)."""
        not_before = self._not_before.get(spooled.job_id)
        return 0.0 if not_before is None else not_before - trio.current_time()

    async def run_pass(self, jobs: list[SpooledJob], concurrency: int) -> StoreUnavailable | None:
        """Process ``jobs`` oldest first with bounded concurrency; stop at a store outage."""
        queue = iter(jobs)  # shared by the workers: each job is taken exactly once
        outage: StoreUnavailable | None = None

        async def worker() -> None:
            nonlocal outage
            for spooled in queue:
                if outage is not None:
                    return
                error = await self.process(spooled)
                if error is not None:
                    outage = outage or error
                    return

        async with trio.open_nursery() as nursery:
            for _ in range(min(concurrency, len(jobs))):
                nursery.start_soon(worker)
        return outage

    async def process(self, spooled: SpooledJob) -> StoreUnavailable | None:
        """Deliver, verify and complete one job. Returns a store outage, if that is what failed;
        every other failure is this job's alone and is handled here."""
        job = spooled.job
        try:
            result, uploaded = await deliver(self.spool, self.store, spooled)
        except IntegrityError as exc:
            self.stats.integrity_failures += 1
            logger.error(
                "integrity failure, local copy kept object_key=%s job=%s: %s",
                job.object_key,
                spooled.job_id,
                exc,
            )
            await self._contained(self.spool.quarantine(spooled, str(exc)), spooled)
            if self.on_integrity_failure is not None:
                await self._contained(self.on_integrity_failure(job, exc), spooled)
            self.stats._changed()
            return None
        except StoreUnavailable as exc:
            await self._failed(spooled, exc, counted=False)
            return exc
        except Exception as exc:  # one job's failure, whatever it is, is that job's alone
            await self._failed(spooled, exc, counted=True)
            return None
        try:
            # The order matters for crash safety: data, then catalog, then the job record.
            # A failure in between leaves the job, which a later pass completes by verifying
            # the stored object again (so ``on_uploaded`` runs at least once).
            await self.spool.remove_data(spooled)
            if self.on_uploaded is not None:
                await self.on_uploaded(job, result)
            await self.spool.forget(spooled)
        except CatalogError as exc:
            # A catalog outage is not this job's fault (like a store outage): it is not an
            # attempt, so the retry stays prompt and the job is done soon after the catalog is.
            await self._failed(spooled, exc, counted=False, may_quarantine=False)
            return None
        except Exception as exc:  # as above: contained to this job
            await self._failed(spooled, exc, counted=True)
            return None
        self._not_before.pop(spooled.job_id, None)
        if uploaded:
            self.stats.uploaded += 1
        else:
            self.stats.already_stored += 1
        self.stats._changed()
        logger.info(
            "uploaded and verified object_key=%s version=%s size=%d",
            result.key,
            result.version_id,
            result.size,
        )
        return None

    async def _failed(
        self,
        spooled: SpooledJob,
        exc: Exception,
        *,
        counted: bool,
        may_quarantine: bool = True,
    ) -> None:
        self.stats.upload_failures += 1
        attempts = spooled.attempts + (1 if counted else 0)
        if counted and may_quarantine and attempts >= self.max_attempts:
            reason = f"{attempts} failed attempts; last: {error_text(exc)}"
            logger.error(
                "upload job quarantined object_key=%s job=%s: %s",
                spooled.job.object_key,
                spooled.job_id,
                reason,
            )
            failed = dataclasses.replace(spooled, attempts=attempts, last_error=error_text(exc))
            if await self._contained(self.spool.quarantine(failed, reason), spooled):
                self.stats.quarantined += 1
            else:
                delay = self.backoff.delay_s(attempts)
                self._not_before[spooled.job_id] = trio.current_time() + delay
        else:
            delay = self.backoff.delay_s(max(attempts, 1))
            logger.warning(
                "upload failed object_key=%s job=%s attempt=%d retry_in=%.3gs: %s",
                spooled.job.object_key,
                spooled.job_id,
                attempts,
                delay,
                error_text(exc),
            )
            if not await self._contained(
                self.spool.record_failure(spooled, exc, retry_after_s=delay, counted=counted),
                spooled,
            ):
                self._not_before[spooled.job_id] = trio.current_time() + delay
        self.stats._changed()

    async def _contained(self, step: Awaitable[object], spooled: SpooledJob) -> bool:
        """Run a spool bookkeeping step; its failure is logged, never fatal to the uploader."""
        try:
            await step
        except Exception as exc:  # bookkeeping of one job never stops the uploader
            logger.error("spool job %s could not be updated: %s", spooled.job_id, exc)
            return False
        return True
