"""One bad job never stalls the uploader; one unreadable job file never stops it.

A poison job (the store refuses that one key, the way a bad ACL or a malformed key is refused)
sits beside good jobs: the good ones upload at once, the poison one backs off alone (persisted
in its job file, so a restart keeps it), and is quarantined after ``max_attempts``. An
unreadable job file is set aside in quarantine with its reason.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from recorder.errors import DiskFull, StorageError, StoreUnavailable
from recorder.quarantine import QUARANTINE_DIR, REASON_SUFFIX
from recorder.spool.spool import (
    JOB_SUFFIX,
    STATE_QUARANTINED,
    Spool,
    job_id_for,
)
from recorder.spool.uploader import Backoff, UploaderStats, run_uploader
from recorder.store.base import PutResult
from recorder.store.memory import MemoryStore

from .fakes import WrappedStore
from .helpers import Uploaded, sealed_file

FAST = Backoff(initial_s=0.01, max_s=0.05)
#: A job that fails once waits this long: far beyond any test's time limit.
SLOW = Backoff(initial_s=3600.0, max_s=3600.0)


class RefusesKeys(WrappedStore):
    """Refuses ``put`` for some keys with a permanent (non-outage) error."""

    def __init__(self, inner: Any, refused: set[str]) -> None:
        super().__init__(inner)
        self.refused = refused
        self.refusals = 0

    async def put(self, key: str, source: Path, **kwargs: Any) -> PutResult:
        if key in self.refused:
            self.refusals += 1
            raise StorageError(f"put {key!r}: AccessDenied")
        return await super().put(key, source, **kwargs)


async def _enqueue(spool: Spool, tmp_path: Path, indices: range) -> list[str]:
    keys = []
    for index in indices:
        source, job = sealed_file(tmp_path / "out", index)
        await spool.enqueue(source, job)
        keys.append(job.object_key)
    return keys


async def test_a_poison_job_backs_off_alone_and_is_quarantined(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    keys = await _enqueue(spool, tmp_path, range(5))
    poison = keys[0]  # the oldest: the one every pass used to start with
    store = RefusesKeys(MemoryStore(), {poison})
    uploaded = Uploaded()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool,
                    store,
                    on_uploaded=uploaded,
                    backoff=FAST,
                    max_attempts=4,
                    task_status=task_status,
                )
            )
            await stats.wait_until(lambda s: s.quarantined >= 1 and s.uploaded >= 4)
            nursery.cancel_scope.cancel()
    assert sorted(uploaded.keys) == sorted(keys[1:])
    assert store.refusals == 4
    assert stats.upload_failures == 4
    assert stats.failures_in_a_row == 0, "a refused job is not a store outage"
    [held] = await spool.quarantined()
    assert held.job.object_key == poison
    assert held.state == STATE_QUARANTINED
    assert held.attempts == 4
    assert held.reason is not None
    assert "4 failed attempts" in held.reason
    assert "AccessDenied" in held.reason
    assert held.data_path.exists(), "quarantine keeps the data"


async def test_good_jobs_do_not_wait_for_a_failing_ones_backoff(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    [poison] = await _enqueue(spool, tmp_path, range(1))
    store = RefusesKeys(MemoryStore(), {poison})
    uploaded = Uploaded()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool, store, on_uploaded=uploaded, backoff=SLOW, task_status=task_status
                )
            )
            await stats.wait_until(lambda s: s.upload_failures >= 1)
            # The poison now waits an hour; new jobs go straight through beside it.
            good = await _enqueue(spool, tmp_path, range(1, 4))
            await stats.wait_until(lambda s: s.uploaded >= 3)
            nursery.cancel_scope.cancel()
    assert sorted(uploaded.keys) == sorted(good)
    assert store.refusals == 1


async def test_the_backoff_is_persisted_and_survives_a_restart(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory)
    [poison] = await _enqueue(spool, tmp_path, range(1))
    store = RefusesKeys(MemoryStore(), {poison})
    before = datetime.now().astimezone()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool, store, backoff=SLOW, task_status=task_status
                )
            )
            await stats.wait_until(lambda s: s.upload_failures >= 1)
            nursery.cancel_scope.cancel()
    doc = json.loads((directory / (job_id_for(poison) + JOB_SUFFIX)).read_bytes())
    assert doc["attempts"] == 1
    assert "AccessDenied" in doc["last_error"]
    assert datetime.fromisoformat(doc["next_attempt_at"]) >= before.replace(microsecond=0)

    # A new process: the same job is read back with its attempts and its next attempt time.
    restarted = Spool(directory)
    [pending] = await restarted.pending()
    assert pending.attempts == 1
    assert pending.next_attempt_at is not None
    assert not pending.due(restarted.now())
    uploaded = Uploaded()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stats = await nursery.start(
                lambda task_status: run_uploader(
                    restarted, store, on_uploaded=uploaded, backoff=SLOW, task_status=task_status
                )
            )
            [good] = await _enqueue(restarted, tmp_path, range(1, 2))
            await stats.wait_until(lambda s: s.uploaded >= 1)
            nursery.cancel_scope.cancel()
    assert uploaded.keys == [good]
    assert store.refusals == 1, "the restarted uploader honoured the persisted backoff"


async def test_a_store_outage_pauses_everything_but_counts_no_attempt(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    keys = await _enqueue(spool, tmp_path, range(2))
    store = WrappedStore(MemoryStore())
    store.down = True
    uploaded = Uploaded()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool,
                    store,
                    on_uploaded=uploaded,
                    backoff=FAST,
                    max_attempts=1,
                    task_status=task_status,
                )
            )
            await stats.wait_until(lambda s: s.failures_in_a_row >= 3)
            for job in await spool.pending():
                assert job.attempts == 0
                assert job.last_error is not None
                assert StoreUnavailable.__name__ in job.last_error
            store.down = False
            await stats.wait_until(lambda s: s.uploaded >= 2)
            nursery.cancel_scope.cancel()
    assert sorted(uploaded.keys) == sorted(keys)
    assert stats.quarantined == 0, "an outage never quarantines, whatever max_attempts is"


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"object_key": 1}', b"\xff\xfe", b'{"state": "pending"}'],
)
async def test_an_unreadable_job_file_is_set_aside_and_the_rest_upload(
    tmp_path: Path, content: bytes
) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory)
    keys = await _enqueue(spool, tmp_path, range(3))
    broken = directory / (job_id_for(keys[1]) + JOB_SUFFIX)
    broken.write_bytes(content)
    store = MemoryStore()
    uploaded = Uploaded()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool, store, on_uploaded=uploaded, backoff=FAST, task_status=task_status
                )
            )
            await stats.wait_until(lambda s: s.uploaded >= 2)
            nursery.cancel_scope.cancel()
    assert sorted(uploaded.keys) == sorted([keys[0], keys[2]])
    assert not broken.exists()
    kept = directory / QUARANTINE_DIR / broken.name
    assert kept.read_bytes() == content, "set aside unchanged, never deleted"
    note = json.loads(kept.with_name(kept.name + REASON_SUFFIX).read_bytes())
    assert "unreadable" in note["reason"]
    [listed] = await spool.unreadable()
    assert listed.job_id == job_id_for(keys[1])
    # Its data is now data without a job: startup recovery requeues it from the segment header.
    assert [p.name for p in spool.orphaned_data_sync()] == [job_id_for(keys[1]) + ".seg"]


async def test_requeue_takes_a_job_out_of_quarantine(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    [poison] = await _enqueue(spool, tmp_path, range(1))
    store = RefusesKeys(MemoryStore(), {poison})
    uploaded = Uploaded()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool,
                    store,
                    on_uploaded=uploaded,
                    backoff=FAST,
                    max_attempts=2,
                    task_status=task_status,
                )
            )
            await stats.wait_until(lambda s: s.quarantined >= 1)
            with pytest.raises(StorageError, match="no spool job"):
                await spool.requeue("0" * 32)
            store.refused.clear()  # the operator fixed the bucket policy
            requeued = await spool.requeue(job_id_for(poison))
            assert (requeued.attempts, requeued.state) == (0, "pending")
            await stats.wait_until(lambda s: s.uploaded >= 1)
            nursery.cancel_scope.cancel()
    assert uploaded.keys == [poison]
    assert await spool.quarantined() == []


class JobFilesCannotBeWritten(Spool):
    """A spool on a full disk: job files cannot be rewritten (data moves still work)."""

    async def _write_job(self, spooled: Any) -> None:
        raise DiskFull("test: no space left for the job file")


async def test_a_failure_that_cannot_be_persisted_still_backs_off(tmp_path: Path) -> None:
    spool = JobFilesCannotBeWritten(tmp_path / "spool")
    [poison] = await _enqueue(spool, tmp_path, range(1))
    store = RefusesKeys(MemoryStore(), {poison})
    uploaded = Uploaded()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool, store, on_uploaded=uploaded, backoff=SLOW, task_status=task_status
                )
            )
            await stats.wait_until(lambda s: s.upload_failures >= 1)
            [good] = await _enqueue(spool, tmp_path, range(1, 2))
            await stats.wait_until(lambda s: s.uploaded >= 1)
            nursery.cancel_scope.cancel()
    assert uploaded.keys == [good]
    assert store.refusals == 1, "no busy retry loop although the backoff was not persisted"
