from __future__ import annotations

import dataclasses
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from recorder.errors import ObjectExists, StorageError
from recorder.sink import SealedSegment, SegmentIdentity
from recorder.spool.spool import Spool, upload_job_for

from .helpers import sealed_file


class StepClock:
    def __init__(self) -> None:
        self.current = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current


async def test_enqueue_moves_the_file_in_with_a_private_job_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    source, job = sealed_file(tmp_path / "out", 1)
    data = source.read_bytes()
    with trio.fail_after(10):
        spooled = await spool.enqueue(source, job)
    assert not source.exists()
    assert spooled.data_path.read_bytes() == data
    job_file = spooled.data_path.with_name(spooled.job_id + ".job.json")
    assert stat.S_IMODE(job_file.stat().st_mode) == 0o600
    [pending] = await spool.pending()
    assert pending.job == job


async def test_pending_is_oldest_first_and_survives_a_new_spool_object(tmp_path: Path) -> None:
    clock = StepClock()
    spool = Spool(tmp_path / "spool", now=clock.now)
    with trio.fail_after(10):
        for index in (5, 3, 9):
            source, job = sealed_file(tmp_path / "out", index)
            await spool.enqueue(source, job)
            clock.current += timedelta(seconds=1)
        reopened = Spool(tmp_path / "spool")
        order = [s.job.metadata["segment-index"] for s in await reopened.pending()]
    assert order == ["5", "3", "9"]


async def test_same_key_is_one_job(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    source, job = sealed_file(tmp_path / "out", 1)
    copy = tmp_path / "copy.seg"
    copy.write_bytes(source.read_bytes())
    other, _ = sealed_file(tmp_path / "other", 2)
    with trio.fail_after(10):
        first = await spool.enqueue(source, job)
        again = await spool.enqueue(copy, job)
        assert again.data_path == first.data_path
        assert copy.exists(), "a duplicate source is left to its owner, never deleted"
        with pytest.raises(ObjectExists):
            await spool.enqueue(other, dataclasses.replace(job, sha256="ab" * 32))
        assert len(await spool.pending()) == 1


async def test_stats_report_bytes_count_and_oldest_age(tmp_path: Path) -> None:
    clock = StepClock()
    spool = Spool(tmp_path / "spool", now=clock.now)
    with trio.fail_after(10):
        assert (await spool.stats()).pending_count == 0
        for index, size in ((1, 1000), (2, 3000)):
            source, job = sealed_file(tmp_path / "out", index, size=size)
            await spool.enqueue(source, job)
            clock.current += timedelta(seconds=30)
        stats = await spool.stats()
    assert (stats.pending_bytes, stats.pending_count) == (4000, 2)
    assert stats.oldest_pending_age_s == 60.0


async def test_quarantined_jobs_keep_data_and_leave_pending(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    source, job = sealed_file(tmp_path / "out", 1)
    with trio.fail_after(10):
        spooled = await spool.enqueue(source, job)
        await spool.quarantine(spooled, "sha256 differs")
        assert await spool.pending() == []
        [held] = await spool.quarantined()
        assert held.reason == "sha256 differs"
        assert held.data_path.exists()
        with pytest.raises(StorageError):
            await spool.forget(held)
        assert (await spool.stats()).quarantined_count == 1


async def test_disk_free_warns_below_threshold(tmp_path: Path) -> None:
    with trio.fail_after(10):
        roomy = await Spool(tmp_path / "a", warn_free_bytes=0).disk_free()
        tight = await Spool(tmp_path / "b", warn_free_bytes=2**62).disk_free()
    assert not roomy.low
    assert tight.low
    assert 0 < tight.free_bytes <= tight.total_bytes


async def test_enqueue_wakes_a_waiter(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    event = spool.job_added_event()
    source, job = sealed_file(tmp_path / "out", 1)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(spool.enqueue, source, job)
            await event.wait()
    assert not spool.job_added_event().is_set()


async def test_upload_job_for_hashes_the_stored_bytes(tmp_path: Path) -> None:
    source, job = sealed_file(tmp_path / "out", 4)
    identity = SegmentIdentity("rec-1", "mixed", 4, 1_763_726_400_000)
    sealed = SealedSegment(identity, source, 10, "cd" * 32, job.size, "key-1")
    with trio.fail_after(10):
        made = await upload_job_for(
            sealed, object_key=job.object_key, retain_until=job.retain_until
        )
    assert (made.sha256, made.size) == (job.sha256, job.size)
    assert made.metadata["plaintext-sha256"] == "cd" * 32
    assert made.metadata["recording-id"] == "rec-1"


async def test_enqueue_from_another_filesystem_copies_durably(
    tmp_path: Path, tiny_filesystem: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    source, job = sealed_file(tiny_filesystem / "out", 1)
    data = source.read_bytes()
    with trio.fail_after(10):
        spooled = await spool.enqueue(source, job)
    assert not source.exists()
    assert spooled.data_path.read_bytes() == data
    assert [p.name for p in (tmp_path / "spool").iterdir() if p.name.endswith(".partial")] == []


async def test_a_listed_job_always_has_its_data(tmp_path: Path) -> None:
    """The uploader lists jobs while enqueues run; it must never see a job without data."""
    spool = Spool(tmp_path / "spool")
    seen_without_data: list[str] = []

    async def watch(done: trio.Event) -> None:
        while not done.is_set():
            for job in await spool.pending():
                if not job.data_path.exists():
                    seen_without_data.append(job.job_id)
            await trio.lowlevel.checkpoint()

    with trio.fail_after(30):
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, done)
            for n in range(40):
                source, job = sealed_file(tmp_path / "out", n)
                await spool.enqueue(source, job)
            done.set()
    assert seen_without_data == []
    assert len(await spool.pending()) == 40


async def test_data_left_without_a_job_is_reported_as_orphaned(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    source, job = sealed_file(tmp_path / "out", 1)
    with trio.fail_after(10):
        spooled = await spool.enqueue(source, job)
        # The crash window: data moved in, job record not yet written.
        spooled.data_path.with_name(spooled.job_id + ".job.json").unlink()
        assert await spool.orphaned_data() == [spooled.data_path]
        assert await spool.pending() == []
