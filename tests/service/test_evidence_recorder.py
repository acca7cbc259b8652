"""The evidence recorder (issue 9 defect 7): catalog intents never block capture; what the
catalog cannot take is journaled durably and reconciled, in order, when it is back.

A real SQLite catalog; "the catalog is down" is another connection holding its write lock while
the recorder's busy timeout is short, so every write fails with "database is locked".
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import trio

from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import ParticipantInfo, Product, RecordingStart
from recorder.catalog.sqlite import SqliteCatalog
from recorder.errors import CatalogError
from recorder.service import evidence_recorder as intents
from recorder.service.evidence_recorder import (
    EvidenceRecorder,
    Intent,
    reconcile_journals,
)

T0 = 1_767_225_600_000


@asynccontextmanager
async def sqlite_catalog(path: Path) -> AsyncIterator[AsyncCatalog]:
    sync = await trio.to_thread.run_sync(
        lambda: SqliteCatalog(path, now_ms=T0, busy_timeout_ms=100)
    )
    async with AsyncCatalog(sync) as catalog:
        yield catalog


@contextmanager
def catalog_down(path: Path) -> Iterator[None]:
    blocker = sqlite3.connect(path, isolation_level=None, timeout=5)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


async def new_recording(catalog: AsyncCatalog) -> str:
    row = await catalog.upsert_recording(
        RecordingStart(
            rtms_stream_id="s-1", product=Product.MEETING, instance_id="m", started_ms=T0
        ),
        T0,
    )
    return row.recording_id


def person(n: int) -> ParticipantInfo:
    return ParticipantInfo(f"user-{n}", f"User {n}", first_seen_ms=T0 + n)


async def until(condition: object) -> None:
    """Wait for the recorder's own task, whose catalog writes finish in worker threads
    (bounded by the caller's fail_after)."""
    assert callable(condition)
    while not condition():  # noqa: ASYNC110 - the state changes when a thread's write returns
        await trio.sleep(0.01)


async def test_intents_are_journaled_while_the_catalog_is_down_and_replayed_in_order(
    tmp_path: Path,
) -> None:
    db = tmp_path / "catalog.sqlite3"
    journal = tmp_path / "journal" / "s-1-1.jsonl"
    followed: list[str] = []

    async def follow_up() -> None:
        followed.append("spooled")

    with trio.fail_after(30):
        async with sqlite_catalog(db) as catalog, trio.open_nursery() as nursery:
            recording_id = await new_recording(catalog)
            recorder = EvidenceRecorder(
                catalog, journal, fence=lambda: None, now_ms=lambda: T0, retry_s=0.05
            )
            nursery.start_soon(recorder.run)
            with catalog_down(db):
                # ``submit`` is a plain function: it cannot wait for the catalog.
                for n in range(5):
                    recorder.submit(intents.participants(recording_id, [person(n)]))
                recorder.submit(intents.participants(recording_id, [person(99)]), follow_up)
                await until(lambda: recorder.stats.journaled == 6)
                assert recorder.degraded
                assert followed == [], "a follow-up waits for its catalog write"
                lines = journal.read_bytes().splitlines()
                assert [json.loads(line)["op"] for line in lines] == ["add_participants"] * 6
            await until(lambda: not recorder.degraded)
            assert followed == ["spooled"]
            assert not journal.exists()
            detail = await catalog.show(recording_id)
            assert detail is not None
            assert {p.user_id for p in detail.participants} == {
                *(f"user-{n}" for n in range(5)),
                "user-99",
            }
            recorder.finish()


async def test_a_full_queue_spills_to_the_journal_instead_of_waiting(tmp_path: Path) -> None:
    db = tmp_path / "catalog.sqlite3"
    journal = tmp_path / "journal" / "s-1-1.jsonl"
    with trio.fail_after(30):
        async with sqlite_catalog(db) as catalog:
            recording_id = await new_recording(catalog)
            recorder = EvidenceRecorder(
                catalog, journal, fence=lambda: None, now_ms=lambda: T0, queue_size=2
            )
            # Not running: the queue fills, the rest goes to the journal, nothing blocks.
            for n in range(5):
                recorder.submit(intents.participants(recording_id, [person(n)]))
            assert recorder.stats.journaled == 3
            await recorder.close(timeout_s=5)
            # The queued ones were written; the journal is replayed by the sweep.
            written = await reconcile_journals(catalog, tmp_path, T0, busy=frozenset())
            assert written == 0, "journals live in <state_dir>/evidence-journal only"
            target = tmp_path / "state" / intents.JOURNAL_DIR / journal.name
            target.parent.mkdir(parents=True)
            if journal.exists():
                journal.rename(target)
            await reconcile_journals(catalog, tmp_path / "state", T0)
            detail = await catalog.show(recording_id)
            assert detail is not None
            assert len(detail.participants) == 5
            assert not target.exists()


async def test_a_journal_left_by_a_dead_process_is_reconciled_and_a_torn_line_skipped(
    tmp_path: Path,
) -> None:
    db = tmp_path / "catalog.sqlite3"
    directory = tmp_path / intents.JOURNAL_DIR
    directory.mkdir()
    with trio.fail_after(30):
        async with sqlite_catalog(db) as catalog:
            recording_id = await new_recording(catalog)
            path = directory / "s-1-1.jsonl"
            gap = intents.gap(recording_id, "mixed", start_ms=T0, end_ms=T0 + 500, cause="x")
            path.write_bytes(
                intents.participants(recording_id, [person(1)]).to_line()
                + gap.to_line()
                + b'{"op":"add_gap","args":{"recor'  # torn by the crash
            )
            assert await reconcile_journals(catalog, tmp_path, T0) == 2
            assert not path.exists()
            detail = await catalog.show(recording_id)
            assert detail is not None
            assert [g.cause for g in detail.gaps] == ["x"]
            # Replaying again (a crash after the writes, before the delete) changes nothing.
            path.write_bytes(gap.to_line())
            assert await reconcile_journals(catalog, tmp_path, T0) == 1
            detail = await catalog.show(recording_id)
            assert detail is not None
            assert len(detail.gaps) == 1


@pytest.mark.parametrize(
    "line",
    [b"[]", b'{"op": 3}', b'{"op":"add_gap","args":{"nope":1}}', b'{"op":"drop_table","args":{}}'],
)
async def test_a_hostile_journal_line_is_a_catalog_error_not_a_crash(
    tmp_path: Path, line: bytes
) -> None:
    with trio.fail_after(30):
        async with sqlite_catalog(tmp_path / "catalog.sqlite3") as catalog:
            try:
                intent = Intent.from_line(line)
            except CatalogError:
                return
            with pytest.raises(CatalogError):
                await intents.apply_intent(catalog, intent, fence=None, now_ms=T0)


async def test_a_takeover_inside_the_first_segment_still_writes_a_restart_gap(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with sqlite_catalog(tmp_path / "catalog.sqlite3") as catalog:
            recording_id = await new_recording(catalog)
            # The first owner sealed nothing on this track before it died.
            takeover = intents.takeover_gap(
                recording_id, "mixed", start_ms=T0 + 3_000, first_segment_index=100_000, epoch=2
            )
            await intents.apply_intent(catalog, takeover, fence=None, now_ms=T0)
            detail = await catalog.show(recording_id)
            assert detail is not None
            [gap] = detail.gaps
            assert (gap.start_ms, gap.end_ms) == (T0, T0 + 3_000)
            assert gap.cause == "recorder_restart"
            assert gap.detail == "ownership epoch 2 began"


async def test_a_takeover_gap_starts_at_the_dead_owners_last_checkpoint(tmp_path: Path) -> None:
    """Inside the first segment (nothing sealed) and after one: the kept checkpoint wins over
    the recording's start and over an earlier segment's end; an old journal line has none."""
    with trio.fail_after(30):
        async with sqlite_catalog(tmp_path / "catalog.sqlite3") as catalog:
            recording_id = await new_recording(catalog)
            takeover = intents.takeover_gap(
                recording_id,
                "mixed",
                start_ms=T0 + 3_000,
                first_segment_index=100_000,
                epoch=2,
                checkpoint_ms=T0 + 1_750,
            )
            await intents.apply_intent(catalog, takeover, fence=None, now_ms=T0)
            # A checkpoint at or past this owner's first segment: no gap to write.
            late = intents.takeover_gap(
                recording_id,
                "other",
                start_ms=T0 + 3_000,
                first_segment_index=100_000,
                epoch=2,
                checkpoint_ms=T0 + 3_000,
            )
            await intents.apply_intent(catalog, late, fence=None, now_ms=T0)
            detail = await catalog.show(recording_id)
            assert detail is not None
            [gap] = detail.gaps
            assert (gap.track, gap.start_ms, gap.end_ms) == ("mixed", T0 + 1_750, T0 + 3_000)
            old_line = Intent.from_line(
                b'{"op":"takeover_gap","args":{"recording_id":"' + recording_id.encode() + b'",'
                b'"track":"third","start_ms":' + str(T0 + 500).encode() + b","
                b'"first_segment_index":100000,"epoch":2}}'
            )
            await intents.apply_intent(catalog, old_line, fence=None, now_ms=T0)
            detail = await catalog.show(recording_id)
            assert detail is not None
            [old] = [g for g in detail.gaps if g.track == "third"]
            assert (old.start_ms, old.end_ms) == (T0, T0 + 500)


async def test_an_intent_the_catalog_refuses_for_good_is_set_aside_not_blocking(
    tmp_path: Path,
) -> None:
    directory = tmp_path / intents.JOURNAL_DIR
    directory.mkdir()
    with trio.fail_after(30):
        async with sqlite_catalog(tmp_path / "catalog.sqlite3") as catalog:
            recording_id = await new_recording(catalog)
            path = directory / "s-1-1.jsonl"
            # A gap whose end precedes its start: the catalog refuses it every time.
            bad = intents.gap(recording_id, "mixed", start_ms=T0 + 10, end_ms=T0, cause="x")
            good = intents.participants(recording_id, [person(7)])
            path.write_bytes(bad.to_line() + good.to_line())
            assert await reconcile_journals(catalog, tmp_path, T0) == 1
            assert not path.exists()
            rejected = directory / ("s-1-1.jsonl" + intents.REJECTED_SUFFIX)
            assert [Intent.from_line(line) for line in rejected.read_bytes().splitlines()] == [bad]
            detail = await catalog.show(recording_id)
            assert detail is not None
            assert [p.user_id for p in detail.participants] == ["user-7"]
            # The set-aside file is never replayed again.
            assert await reconcile_journals(catalog, tmp_path, T0) == 0
