"""The uploader over MemoryStore and failure-injecting wrappers (fakes of the Protocol)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from recorder.errors import CatalogError, IntegrityError
from recorder.spool.spool import Spool, UploadJob
from recorder.spool.uploader import Backoff, UploaderStats, run_uploader
from recorder.store.base import ObjectInfo, PutResult
from recorder.store.memory import MemoryStore

from .fakes import CorruptingStore, WrappedStore, no_retention, other_sha256, shorter
from .helpers import Uploaded, sealed_file

FAST = Backoff(initial_s=0.01, max_s=0.05)


async def test_uploads_verifies_and_frees_the_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    store = MemoryStore()
    uploaded = Uploaded()
    jobs: list[UploadJob] = []
    with trio.fail_after(20):
        for index in range(3):
            source, job = sealed_file(tmp_path / "out", index)
            await spool.enqueue(source, job)
            jobs.append(job)
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool, store, on_uploaded=uploaded, backoff=FAST, task_status=task_status
                )
            )
            await stats.wait_until(lambda s: s.uploaded >= 3)
            # Idle now; a new file wakes it through the spool's event, not a poll.
            source, job = sealed_file(tmp_path / "out", 3)
            await spool.enqueue(source, job)
            jobs.append(job)
            await stats.wait_until(lambda s: s.uploaded >= 4)
            nursery.cancel_scope.cancel()
    assert sorted(uploaded.keys) == sorted(job.object_key for job in jobs)
    assert stats.uploaded == 4
    assert stats.upload_failures == 0
    assert list((tmp_path / "spool").iterdir()) == []
    for job in jobs:
        info = await store.head(job.object_key)
        assert (info.sha256, info.size, info.lock_mode) == (job.sha256, job.size, job.lock_mode)
        assert info.retain_until is not None
        assert info.retain_until >= job.retain_until


async def test_outage_keeps_everything_local_then_drains(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    store = WrappedStore(MemoryStore())
    store.down = True
    uploaded = Uploaded()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool, store, on_uploaded=uploaded, backoff=FAST, task_status=task_status
                )
            )
            for index in range(4):
                source, job = sealed_file(tmp_path / "out", index)
                await spool.enqueue(source, job)
            await stats.wait_until(lambda s: s.upload_failures >= 3)
            spool_stats = await spool.stats()
            assert spool_stats.pending_count == 4
            assert spool_stats.pending_bytes == 4 * 4096
            assert uploaded.results == []
            assert stats.upload_failures >= 3
            store.down = False
            await stats.wait_until(lambda s: s.uploaded >= 4)
            nursery.cancel_scope.cancel()
    assert (await spool.stats()).pending_count == 0
    assert store.puts == 4


async def test_restart_mid_upload_finishes_exactly_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    memory = MemoryStore()
    first = WrappedStore(memory)
    first.hold_after_put = trio.Event()  # never set: the first uploader dies after storing
    source, job = sealed_file(tmp_path / "out", 1)
    first_uploaded = Uploaded()
    with trio.fail_after(20):
        await spool.enqueue(source, job)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: run_uploader(spool, first, on_uploaded=first_uploaded))
            await first.held.wait()
            nursery.cancel_scope.cancel()
        assert memory.uploads == 1
        assert first_uploaded.results == []
        [still_pending] = await spool.pending()
        assert still_pending.data_path.exists(), "not verified yet, so the local copy stays"

        second_uploaded = Uploaded()
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool, memory, on_uploaded=second_uploaded, task_status=task_status
                )
            )
            await stats.wait_until(lambda s: s.uploaded >= 1)
            nursery.cancel_scope.cancel()
    assert memory.uploads == 1, "the object was stored once, under one key"
    assert second_uploaded.keys == [job.object_key]
    assert await memory.list() == [job.object_key]
    assert await spool.pending() == []
    assert stats.uploaded == 1


async def test_crash_after_local_delete_is_completed_from_the_store(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    store = MemoryStore()
    source, job = sealed_file(tmp_path / "out", 1)
    uploaded = Uploaded()
    with trio.fail_after(20):
        spooled = await spool.enqueue(source, job)
        # What a crash between "delete local copy" and "forget job" leaves behind.
        await store.put(
            job.object_key,
            spooled.data_path,
            sha256=job.sha256,
            retain_until=job.retain_until,
            lock_mode=job.lock_mode,
        )
        await spool.remove_data(spooled)
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool, store, on_uploaded=uploaded, task_status=task_status
                )
            )
            await stats.wait_until(lambda s: s.already_stored >= 1)
            nursery.cancel_scope.cancel()
    assert stats.already_stored == 1
    assert stats.uploaded == 0
    assert store.uploads == 1
    assert await spool.pending() == []


@pytest.mark.parametrize("corrupt", [other_sha256, shorter, no_retention])
async def test_verification_failure_keeps_the_local_copy(
    tmp_path: Path, corrupt: Callable[[ObjectInfo], ObjectInfo]
) -> None:
    spool = Spool(tmp_path / "spool")
    store = CorruptingStore(MemoryStore(), corrupt)
    failures: list[tuple[UploadJob, IntegrityError]] = []
    failed = trio.Event()

    async def on_integrity_failure(job: UploadJob, exc: IntegrityError) -> None:
        failures.append((job, exc))
        failed.set()

    bad_source, bad_job = sealed_file(tmp_path / "out", 1)
    bad_bytes = bad_source.read_bytes()
    uploaded = Uploaded()
    with trio.fail_after(20):
        await spool.enqueue(bad_source, bad_job)
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool,
                    store,
                    on_uploaded=uploaded,
                    on_integrity_failure=on_integrity_failure,
                    backoff=FAST,
                    task_status=task_status,
                )
            )
            await failed.wait()
            nursery.cancel_scope.cancel()
    assert [job for job, _ in failures] == [bad_job]
    assert "read-back failed" in str(failures[0][1])
    assert uploaded.results == []
    assert stats.integrity_failures == 1
    [held] = await spool.quarantined()
    assert held.data_path.read_bytes() == bad_bytes
    assert held.reason is not None
    assert "read-back failed" in held.reason
    assert store.put_attempts == 1, "an integrity failure is never retried silently"


async def test_quarantine_does_not_block_other_jobs(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    memory = MemoryStore()
    bad_source, bad_job = sealed_file(tmp_path / "out", 1)
    good_source, good_job = sealed_file(tmp_path / "out", 2)

    def corrupt_only_bad(info: ObjectInfo) -> ObjectInfo:
        return other_sha256(info) if info.key == bad_job.object_key else info

    store = CorruptingStore(memory, corrupt_only_bad)
    uploaded = Uploaded()
    with trio.fail_after(20):
        await spool.enqueue(bad_source, bad_job)
        await spool.enqueue(good_source, good_job)
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool, store, on_uploaded=uploaded, task_status=task_status
                )
            )
            await stats.wait_until(lambda s: s.uploaded + s.integrity_failures >= 2)
            nursery.cancel_scope.cancel()
    assert uploaded.keys == [good_job.object_key]
    assert [q.job for q in await spool.quarantined()] == [bad_job]
    assert store.puts == 2


async def test_composite_checksum_is_verified_by_reading_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    source, job = sealed_file(tmp_path / "out", 1)
    # A store vouching only for a composite checksum, whose bytes were altered: the claimed
    # sha256 matches the job, so only re-reading the bytes can catch it.
    memory = MemoryStore()
    other_source, other_job = sealed_file(tmp_path / "elsewhere", 1)

    def claims_job_digest(info: ObjectInfo) -> ObjectInfo:
        return dataclasses.replace(info, sha256=job.sha256, sha256_verified_by_store=False)

    store = CorruptingStore(memory, claims_job_digest)
    failed = trio.Event()

    async def on_integrity_failure(job: UploadJob, exc: IntegrityError) -> None:
        failed.set()

    with trio.fail_after(20):
        await memory.put(
            job.object_key,
            other_source,
            sha256=other_job.sha256,
            retain_until=job.retain_until,
            lock_mode=job.lock_mode,
        )
        spooled = await spool.enqueue(source, job)
        await spool.remove_data(spooled)  # as after a crash: only the store's copy is judged
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: run_uploader(spool, store, on_integrity_failure=on_integrity_failure)
            )
            await failed.wait()
            nursery.cancel_scope.cancel()
    [held] = await spool.quarantined()
    assert held.reason is not None
    assert "re-read" in held.reason


async def test_catalog_failure_after_upload_is_retried_until_recorded(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    store = MemoryStore()
    source, job = sealed_file(tmp_path / "out", 1)
    recorded = Uploaded()
    calls = 0

    async def flaky_catalog(job: UploadJob, result: PutResult) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise CatalogError("test: catalog briefly unavailable")
        await recorded(job, result)

    with trio.fail_after(20):
        await spool.enqueue(source, job)
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool, store, on_uploaded=flaky_catalog, backoff=FAST, task_status=task_status
                )
            )
            await stats.wait_until(lambda s: s.already_stored >= 1)
            nursery.cancel_scope.cancel()
    assert calls == 2
    assert stats.upload_failures == 1
    assert stats.already_stored == 1, "the retry verified the stored object, it did not re-upload"
    assert store.uploads == 1
    assert await spool.pending() == []


async def test_a_catalog_outage_is_not_counted_against_the_job(tmp_path: Path) -> None:
    """Each retry during a catalog outage stays at the initial backoff: once the catalog is
    back, the job completes within one short interval, however long the outage was."""
    spool = Spool(tmp_path / "spool")
    store = MemoryStore()
    source, job = sealed_file(tmp_path / "out", 1)
    recorded = Uploaded()
    attempts_seen: list[int] = []

    async def catalog_down_four_times(job: UploadJob, result: PutResult) -> None:
        attempts_seen.extend(spooled.attempts for spooled in await spool.pending())
        if len(attempts_seen) <= 4:
            raise CatalogError("test: catalog unavailable")
        await recorded(job, result)

    with trio.fail_after(20):
        await spool.enqueue(source, job)
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool,
                    store,
                    on_uploaded=catalog_down_four_times,
                    backoff=FAST,
                    max_attempts=2,
                    task_status=task_status,
                )
            )
            await stats.wait_until(lambda s: s.already_stored >= 1)
            nursery.cancel_scope.cancel()
    assert attempts_seen == [0] * 5
    assert stats.quarantined == 0
    assert await spool.pending() == []


class CountsInFlight(WrappedStore):
    """Holds every put until ``expected`` are in flight together, then lets them all go."""

    def __init__(self, inner: MemoryStore, expected: int) -> None:
        super().__init__(inner)
        self.expected = expected
        self.in_flight = 0
        self.most_in_flight = 0
        self._all_in = trio.Event()

    async def put(self, key: str, source: Path, **kwargs: Any) -> PutResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= self.expected:
            self._all_in.set()
        try:
            await self._all_in.wait()
            return await super().put(key, source, **kwargs)
        finally:
            self.in_flight -= 1


async def test_uploads_run_concurrently_up_to_the_limit(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    store = CountsInFlight(MemoryStore(), expected=3)
    with trio.fail_after(20):
        for index in range(7):
            source, job = sealed_file(tmp_path / "out", index)
            await spool.enqueue(source, job)
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool, store, concurrency=3, task_status=task_status
                )
            )
            await stats.wait_until(lambda s: s.uploaded >= 7)
            nursery.cancel_scope.cancel()
    assert store.most_in_flight == 3
    assert store.puts == 7


async def test_enqueue_interrupted_before_the_move_is_reported_then_completed(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool")
    store = MemoryStore()
    source, job = sealed_file(tmp_path / "out", 1)
    kept = tmp_path / "kept.seg"
    kept.write_bytes(source.read_bytes())
    failed = trio.Event()

    async def on_integrity_failure(job: UploadJob, exc: IntegrityError) -> None:
        failed.set()

    with trio.fail_after(20):
        spooled = await spool.enqueue(source, job)
        # What a crash between "write job" and "move data in" leaves: a job without data.
        await trio.to_thread.run_sync(spooled.data_path.unlink)
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool,
                    store,
                    on_integrity_failure=on_integrity_failure,
                    task_status=task_status,
                )
            )
            await failed.wait()
            [held] = await spool.quarantined()
            assert held.reason is not None
            assert "missing" in held.reason
            # The writer's recovery enqueues the same file again: the job resumes.
            await spool.enqueue(kept, job)
            await stats.wait_until(lambda s: s.uploaded >= 1)
            nursery.cancel_scope.cancel()
    assert (await store.head(job.object_key)).sha256 == job.sha256
    assert await spool.quarantined() == []
    assert await spool.pending() == []
