"""``recorder spool list|retry`` over a real spool and an in-memory audit log (the seam)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
import trio

from recorder.catalog.base import JsonValue
from recorder.errors import StorageError
from recorder.spool import admin
from recorder.spool.spool import JOB_SUFFIX, Spool

from .helpers import sealed_file


class MemoryAudit:
    def __init__(self) -> None:
        self.entries: list[dict[str, object]] = []

    async def append_audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        reason: str,
        now_ms: int,
        details: Mapping[str, JsonValue] | None = None,
    ) -> object:
        entry = {"actor": actor, "action": action, "target": target, "reason": reason}
        entry.update(details or {})
        self.entries.append(entry)
        return entry


async def _spool_with_three(tmp_path: Path) -> tuple[Spool, list[str]]:
    spool = Spool(tmp_path / "spool")
    ids = []
    for index in range(3):
        source, job = sealed_file(tmp_path / "out", index)
        ids.append((await spool.enqueue(source, job)).job_id)
    pending = {job.job_id: job for job in await spool.pending()}
    await spool.record_failure(
        pending[ids[0]], StorageError("AccessDenied\nsecond line"), retry_after_s=60, counted=True
    )
    await spool.quarantine(pending[ids[1]], "5 failed attempts; last: StorageError: AccessDenied")
    (spool.directory / (ids[2] + JOB_SUFFIX)).write_bytes(b"not json")
    return spool, ids


async def test_list_shows_state_attempts_next_attempt_and_errors(tmp_path: Path) -> None:
    with trio.fail_after(10):
        spool, ids = await _spool_with_three(tmp_path)
        views = {view.job: view for view in await admin.job_views(spool)}
    assert views[ids[0]].state == "pending"
    assert views[ids[0]].attempts == 1
    assert views[ids[0]].next_attempt is not None
    assert views[ids[0]].last_error == "StorageError: AccessDenied\nsecond line"
    assert views[ids[1]].state == "quarantined"
    assert views[ids[2]].state == "unreadable"
    assert views[ids[2]].object_key is None
    table = admin.render_table(list(views.values())).splitlines()
    assert table[0].split()[:4] == ["JOB", "STATE", "ATTEMPTS", "NEXT"]
    assert len(table) == 4
    assert any("AccessDenied second line" in line for line in table), "one line per job"
    rows = json.loads(admin.render_json(list(views.values())))
    assert {row["job"] for row in rows} == set(ids)
    assert admin.render_table([]) == "the spool is empty"


async def test_retry_requeues_only_quarantined_jobs_and_audits_first(tmp_path: Path) -> None:
    audit = MemoryAudit()
    with trio.fail_after(10):
        spool, ids = await _spool_with_three(tmp_path)
        for job_id, message in (
            (ids[0], "is pending, not quarantined"),
            (ids[2], "unreadable job file"),
            ("f" * 32, "no spool job"),
        ):
            with pytest.raises(StorageError, match=message):
                await admin.retry_jobs(
                    spool,
                    audit,
                    job_ids=[job_id],
                    all_quarantined=False,
                    actor="os:tester",
                    reason="r",
                    now_ms=1,
                )
        assert audit.entries == []
        [requeued] = await admin.retry_jobs(
            spool,
            audit,
            job_ids=[],
            all_quarantined=True,
            actor="os:tester",
            reason="bucket policy fixed",
            now_ms=1,
        )
        assert requeued.job_id == ids[1]
        assert await spool.quarantined() == []
    [entry] = audit.entries
    assert entry["action"] == admin.RETRY_ACTION
    assert entry["actor"] == "os:tester"
    assert entry["job"] == ids[1]
    assert entry["reason"] == "bucket policy fixed"


def test_the_actor_is_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "alice")
    actor = admin.os_actor()
    assert actor.startswith("os:")
    assert "alice" in actor


async def test_a_worker_tree_lists_and_retries_in_the_spool_that_holds_each_job(
    tmp_path: Path,
) -> None:
    audit = MemoryAudit()
    with trio.fail_after(10):
        base = Spool(tmp_path / "base")
        worker_spool, ids = await _spool_with_three(tmp_path / "w1")
        spools: admin.TreeSpools = [(None, base), ("1", worker_spool)]
        views = await admin.tree_job_views(spools)
        assert {(view.worker, view.job) for view in views} == {("1", job_id) for job_id in ids}
        table = admin.render_table(views).splitlines()
        assert table[0].split()[:2] == ["WORKER", "JOB"]
        assert all(line.startswith("1 ") for line in table[1:])
        for job_id, message in ((ids[0], "is pending"), ("f" * 32, "no spool job")):
            with pytest.raises(StorageError, match=message):
                await admin.retry_in_tree(
                    spools,
                    audit,
                    job_ids=[job_id],
                    all_quarantined=False,
                    actor="os:tester",
                    reason="r",
                    now_ms=1,
                )
        [requeued] = await admin.retry_in_tree(
            spools,
            audit,
            job_ids=[ids[1]],
            all_quarantined=False,
            actor="os:tester",
            reason="fixed",
            now_ms=1,
        )
        assert requeued.job_id == ids[1]
        assert await worker_spool.quarantined() == []
    assert [entry["job"] for entry in audit.entries] == [ids[1]]
