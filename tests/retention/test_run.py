"""Retention runs against a real catalog and the local store, with the clock moved forward."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import trio

from recorder.catalog import AsyncCatalog, HoldScope, open_async_catalog
from recorder.crypto.blind_index import SearchKey
from recorder.errors import CatalogError, RetentionRunBusy
from recorder.evidence_destruction import DestructionMethod
from recorder.officer.search_audit import rule_macs
from recorder.retention.apply import RetentionContext, make_plan, run_retention
from recorder.retention.assign import assign_policy
from recorder.retention.extend import extend_locks_for_event
from recorder.retention.holds import HoldSearch, find_recordings, place_holds, release_hold
from recorder.retention.policy import PolicySet, load_policies
from recorder.store.local import LocalStore
from recorder.testing.memory_shredder import MemoryShredder
from tests.catalog.support import CatalogTarget
from tests.conftest import fill_filesystem
from tests.retention.helpers import DAY_MS, T0, Clock, make_recording
from tests.retention.test_policy import DEFAULT, GOOD, write

pytestmark = pytest.mark.timeout(120)

PHI = (
    GOOD.replace('name = "desk"', 'name = "phi"')
    .replace('"desk"]', '"phi"]')
    .replace('period = "6y"', 'period = "10d"')
    .replace('"delete"', '"crypto_shred"')
)


@pytest.fixture
def policies(tmp_path: Path) -> PolicySet:
    return load_policies(write(tmp_path / "policies", phi=PHI, default=DEFAULT))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> LocalStore:
    return LocalStore(tmp_path / "store", now=clock.now)


def context(
    catalog: AsyncCatalog,
    store: LocalStore,
    policies: PolicySet,
    clock: Clock,
    shredder: MemoryShredder | None,
    lines: list[str] | None = None,
) -> RetentionContext:
    return RetentionContext(
        catalog=catalog,
        store=store,
        policies=policies,
        shredder=shredder,
        operator="os:tester",
        now_ms=clock.now_ms,
        on_progress=(lines.append if lines is not None else (lambda line: None)),
    )


async def test_expired_go_held_stay_plan_equals_run_and_second_run_does_nothing(
    catalog: AsyncCatalog, store: LocalStore, policies: PolicySet, clock: Clock, tmp_path: Path
) -> None:
    expired = await make_recording(catalog, store, tmp_path)
    phi = await make_recording(catalog, store, tmp_path, queue="phi")
    held = await make_recording(catalog, store, tmp_path)
    recent = await make_recording(catalog, store, tmp_path, started_ms=T0 + 80 * DAY_MS)
    spooled = await make_recording(catalog, store, tmp_path, queue="phi", uploaded=False)
    for made in (expired, phi, held, recent, spooled):
        await assign_policy(catalog, policies, made.recording_id, T0)
    (hold,) = await place_holds(
        catalog,
        store,
        matter="SEC v. X",
        reason="subpoena",
        actor="os:counsel",
        recording_ids=[held.recording_id],
        now_ms=T0 + DAY_MS,
    )
    shredder = MemoryShredder(catalog, {phi.recording_id: ["rk_phi"]}, now_ms=clock.now_ms)
    clock.ms = T0 + 100 * DAY_MS
    ctx = context(catalog, store, policies, clock, shredder)

    plan = await make_plan(ctx)
    planned = {d.recording_id: d.action for d in plan.to_destroy}
    assert set(planned) == {expired.recording_id, phi.recording_id}
    reasons = {d.recording_id: d.reason for d in plan.decisions}
    assert reasons[held.recording_id].startswith(f"legal hold #{hold.hold_id}")
    assert reasons[recent.recording_id].startswith("retained until")
    assert reasons[spooled.recording_id].startswith("not uploaded yet")

    report = await run_retention(ctx)
    assert not report.failed
    done = {o.recording_id for o in report.outcomes if o.result == "destroyed"}
    assert done == set(planned)
    assert await store.list(f"cc/{expired.recording_id}/") == []
    assert len(await store.list(f"cc/{phi.recording_id}/")) == 2  # shredded, not deleted
    assert shredder.is_destroyed(phi.recording_id)
    assert len(await store.list(f"cc/{held.recording_id}/")) == 2
    assert len(await store.list(f"cc/{recent.recording_id}/")) == 2
    assert report.report_key is not None
    assert report.report_key in await store.list("retention/runs/")

    records = {r.recording_id: r for r in await catalog.destruction_records()}
    assert set(records) == set(planned)
    deleted = records[expired.recording_id]
    assert deleted.method is DestructionMethod.OBJECT_DELETE
    assert {o.key for o in deleted.objects} == set(expired.keys)
    assert deleted.rule.startswith("policy:default@")
    assert deleted.actor == f"retention-run:{report.run_id}"
    assert records[phi.recording_id].method is DestructionMethod.CRYPTO_ERASE
    assert records[phi.recording_id].key_ids == ("rk_phi",)

    trail = await catalog.audit_trail(expired.recording_id)
    assert [e.action for e in trail][-1] == "retention.object_delete"
    assert '"operator":"os:tester"' in trail[-1].details_json
    assert (await catalog.audit_trail(held.recording_id))[0].actor == "os:counsel"

    again = await run_retention(ctx)
    assert again.outcomes == ()
    assert len(await catalog.destruction_records()) == 2
    assert shredder.calls == [phi.recording_id]

    # The held recording survived past its date; released, the next run takes it.
    await release_hold(
        catalog, store, hold.hold_id, actor="os:counsel", reason="settled", now_ms=clock.ms
    )
    third = await run_retention(ctx)
    assert [o.recording_id for o in third.outcomes] == [held.recording_id]
    assert await store.list(f"cc/{held.recording_id}/") == []


async def test_store_lock_is_never_forced_and_failure_is_named(
    catalog: AsyncCatalog, store: LocalStore, policies: PolicySet, clock: Clock, tmp_path: Path
) -> None:
    locked = await make_recording(catalog, store, tmp_path)
    await store.set_legal_hold(locked.keys[0], True)  # drift: the store holds, the catalog not
    clock.ms = T0 + 100 * DAY_MS
    report = await run_retention(context(catalog, store, policies, clock, None))
    assert [o.result for o in report.outcomes] == ["kept"]
    assert "store legal hold is on" in report.outcomes[0].detail
    assert len(await store.list(f"cc/{locked.recording_id}/")) == 2
    assert await catalog.destruction_records() == []

    # The store locks a version longer than the catalog knows: never forced, the failure named.
    longer = await make_recording(catalog, store, tmp_path)
    await store.extend_retention(longer.keys[1], clock.now() + timedelta(days=9))
    report = await run_retention(context(catalog, store, policies, clock, None))
    failed = {o.recording_id: o.detail for o in report.failed}
    assert "the store locks it until" in failed[longer.recording_id]
    assert len(await store.list(f"cc/{longer.recording_id}/")) == 2

    # A shred decision with no shredder wired fails, named, and destroys nothing.
    phi = await make_recording(catalog, store, tmp_path, queue="phi")
    report = await run_retention(context(catalog, store, policies, clock, None))
    failed = {o.recording_id: o.detail for o in report.failed}
    assert "no RecordingShredder" in failed[phi.recording_id]


async def test_a_held_recording_blocks_the_shredder_even_if_placed_during_the_run(
    catalog: AsyncCatalog, store: LocalStore, policies: PolicySet, clock: Clock, tmp_path: Path
) -> None:
    phi = await make_recording(catalog, store, tmp_path, queue="phi")
    clock.ms = T0 + 100 * DAY_MS
    ctx = context(catalog, store, policies, clock, MemoryShredder(catalog, {}, now_ms=clock.now_ms))
    plan = await make_plan(ctx)
    assert [d.recording_id for d in plan.to_destroy] == [phi.recording_id]
    await catalog.place_hold(
        matter="m",
        scope=HoldScope.INSTANCE,
        scope_value=f"inst-{(await catalog.show(phi.recording_id)).recording.rtms_stream_id}",  # type: ignore[union-attr]
        placed_by="os:counsel",
        reason="late",
        now_ms=clock.ms,
    )
    report = await run_retention(ctx)
    assert report.outcomes == ()  # the fresh plan under the lock already keeps it
    assert await catalog.destruction_records() == []


async def test_one_run_at_a_time_and_a_dead_runs_lock_is_taken_over(
    catalog: AsyncCatalog, store: LocalStore, policies: PolicySet, clock: Clock, tmp_path: Path
) -> None:
    import socket

    await make_recording(catalog, store, tmp_path)
    clock.ms = T0 + 100 * DAY_MS
    ctx = context(catalog, store, policies, clock, None)
    assert await catalog.acquire_retention_lock(
        holder="other-run",
        host=socket.gethostname(),
        pid=os.getpid(),
        ttl_ms=DAY_MS,
        now_ms=clock.ms,
    )
    with pytest.raises(RetentionRunBusy, match="other-run"):
        await run_retention(ctx)
    assert await catalog.destruction_records() == []
    await catalog.release_retention_lock("other-run")

    # A run that died holding the lock (its pid is gone) does not block the next one.
    dead = await trio.run_process(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_stdout=True
    )
    assert await catalog.acquire_retention_lock(
        holder="dead-run",
        host=socket.gethostname(),
        pid=int(dead.stdout),
        ttl_ms=DAY_MS,
        now_ms=clock.ms,
    )
    report = await run_retention(ctx)
    assert [o.result for o in report.outcomes] == ["destroyed"]
    actions = [e.action for e in await catalog.audit_events(action="retention.lock.takeover")]
    assert actions == ["retention.lock.takeover"]
    assert await catalog.retention_lock() is None


async def test_two_concurrent_runs_never_both_act(
    target: CatalogTarget, policies: PolicySet, clock: Clock, tmp_path: Path
) -> None:
    async with (
        await open_async_catalog(target.url, now_ms=T0) as first,
        await open_async_catalog(target.url, now_ms=T0) as second,
    ):
        store_a = LocalStore(tmp_path / "store", now=clock.now)
        store_b = LocalStore(tmp_path / "store", now=clock.now)
        made = [await make_recording(first, store_a, tmp_path) for _ in range(6)]
        clock.ms = T0 + 100 * DAY_MS
        results: list[object] = []

        async def run(c: AsyncCatalog, s: LocalStore) -> None:
            try:
                results.append(await run_retention(context(c, s, policies, clock, None)))
            except RetentionRunBusy as exc:
                results.append(exc)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, first, store_a)
                nursery.start_soon(run, second, store_b)
        destroyed = [
            o.recording_id
            for r in results
            if not isinstance(r, RetentionRunBusy)
            for o in r.outcomes  # type: ignore[attr-defined]
            if o.result == "destroyed"
        ]
        assert sorted(destroyed) == sorted(m.recording_id for m in made)
        records = await first.destruction_records()
        assert len(records) == len(made)


async def test_a_future_matter_holds_new_recordings_from_their_creation(
    catalog: AsyncCatalog, store: LocalStore, policies: PolicySet, clock: Clock, tmp_path: Path
) -> None:
    rule = await catalog.add_hold_rule(
        matter="desk-probe",
        rule={"queue": "desk"},
        placed_by="os:counsel",
        reason="investigation",
        now_ms=T0,
        personal_macs=rule_macs(SearchKey(bytes(32)), {"queue": "desk"}),
    )
    other = await make_recording(catalog, store, tmp_path, queue="other")
    joined = await make_recording(catalog, store, tmp_path, queue="Desk")
    for made in (other, joined):
        await catalog.join_hold_rules(made.recording_id, T0)  # the creation hook
        await assign_policy(catalog, policies, made.recording_id, T0)  # the per-seal hook
    assert await catalog.is_on_hold(joined.recording_id)
    assert not await catalog.is_on_hold(other.recording_id)
    holds = [h for h in await catalog.holds() if h.scope_value == joined.recording_id]
    assert [(h.matter, h.placed_by) for h in holds] == [("desk-probe", f"hold-rule:{rule.rule_id}")]
    clock.ms = T0 + 100 * DAY_MS
    report = await run_retention(context(catalog, store, policies, clock, None))
    assert [o.recording_id for o in report.outcomes] == [other.recording_id]


async def test_mifid_extension_extends_store_locks_and_retention(
    catalog: AsyncCatalog, store: LocalStore, clock: Clock, tmp_path: Path
) -> None:
    mifid = (
        GOOD.replace('name = "desk"', 'name = "mifid"')
        .replace('cc_queues = ["desk"]', 'accounts = ["eu-firm"]')
        .replace('period = "6y"', 'period = "5d"\nextendable_to = "7d"\nextend_on = "nca"')
    )
    policies = load_policies(write(tmp_path / "mifid", mifid=mifid, default=DEFAULT))
    extended = await make_recording(catalog, store, tmp_path, account="eu-firm")
    plain = await make_recording(catalog, store, tmp_path, account="eu-firm")
    for made in (extended, plain):
        await assign_policy(catalog, policies, made.recording_id, T0)
    # The authority asks about one account: in this test, both recordings belong to it.
    await catalog.record_account_event(
        "eu-firm", "nca", at_ms=T0 + DAY_MS, recorded_by="os:compliance", now_ms=T0 + DAY_MS
    )
    count = await extend_locks_for_event(
        catalog, store, policies, account_id="eu-firm", event="nca", now_ms=T0 + DAY_MS
    )
    assert count == 4  # two objects each
    info = await store.head(extended.keys[0])
    assert info.retain_until is not None
    assert info.retain_until.timestamp() * 1000 >= T0 + 60_000 + 7 * DAY_MS
    clock.ms = T0 + 6 * DAY_MS
    plan = await make_plan(context(catalog, store, policies, clock, None))
    assert plan.to_destroy == ()
    assert all(d.reason.startswith("retained until") for d in plan.decisions)
    clock.ms = T0 + 8 * DAY_MS
    report = await run_retention(context(catalog, store, policies, clock, None))
    assert sorted(o.recording_id for o in report.outcomes if o.result == "destroyed") == sorted(
        [extended.recording_id, plain.recording_id]
    )
    trail = await catalog.audit_events(action="retention.account_event")
    assert [(e.actor, e.target) for e in trail] == [("os:compliance", "eu-firm")]


async def test_keys_shredded_by_a_run_that_died_are_recorded_by_the_next(
    catalog: AsyncCatalog, store: LocalStore, policies: PolicySet, clock: Clock, tmp_path: Path
) -> None:
    phi = await make_recording(catalog, store, tmp_path, queue="phi")
    shredder = MemoryShredder(
        catalog, {phi.recording_id: ["rk_1"]}, now_ms=clock.now_ms, refuse_twice=True
    )
    clock.ms = T0 + 100 * DAY_MS
    await shredder.shred(phi.recording_id, actor="retention-run:died", rule="policy:phi@x")
    report = await run_retention(context(catalog, store, policies, clock, shredder))
    assert [o.result for o in report.outcomes] == ["destroyed"]
    (record,) = await catalog.destruction_records(phi.recording_id)
    assert record.method is DestructionMethod.CRYPTO_ERASE
    assert "earlier, interrupted run" in record.verification


async def test_a_search_hold_takes_a_participant_queue_or_time_range(
    catalog: AsyncCatalog, store: LocalStore, tmp_path: Path
) -> None:
    early = await make_recording(catalog, store, tmp_path, queue="desk")
    late = await make_recording(catalog, store, tmp_path, queue="desk", started_ms=T0 + 9 * DAY_MS)
    other = await make_recording(
        catalog, store, tmp_path, queue="other", participants=[("u-7", "Eve")]
    )
    by_queue_and_time = await find_recordings(
        catalog, HoldSearch(queue="DESK", since_ms=T0 + 5 * DAY_MS)
    )
    assert [r.recording_id for r in by_queue_and_time] == [late.recording_id]
    by_participant = await find_recordings(catalog, HoldSearch(participant="eve"))
    assert [r.recording_id for r in by_participant] == [other.recording_id]
    with pytest.raises(CatalogError, match="at least one filter"):
        await find_recordings(catalog, HoldSearch())
    held = await place_holds(
        catalog,
        store,
        matter="m",
        reason="r",
        actor="os:counsel",
        recording_ids=[r.recording_id for r in by_queue_and_time],
        now_ms=T0,
    )
    assert [h.scope_value for h in held] == [late.recording_id]
    assert not await catalog.is_on_hold(early.recording_id)


async def test_a_full_temp_disk_loses_only_the_stored_copy_of_the_run_report(
    catalog: AsyncCatalog,
    store: LocalStore,
    policies: PolicySet,
    clock: Clock,
    tmp_path: Path,
    tiny_filesystem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The report is staged in the temporary directory before it is stored: with no room
    there, the run still destroys what is due, says the report was not stored and why, and
    audits its finish (before, the raw ``OSError`` ended the run before that audit event)."""
    expired = await make_recording(catalog, store, tmp_path)
    await assign_policy(catalog, policies, expired.recording_id, T0)
    clock.ms = T0 + 100 * DAY_MS
    fill_filesystem(tiny_filesystem)
    monkeypatch.setattr(tempfile, "tempdir", str(tiny_filesystem))
    report = await run_retention(context(catalog, store, policies, clock, None))
    assert [o.recording_id for o in report.outcomes if o.result == "destroyed"] == [
        expired.recording_id
    ]
    assert report.report_key is None
    [failed] = [o for o in report.outcomes if o.result == "failed"]
    assert re.fullmatch(
        rf"run report not stored: retention/runs/{report.run_id}\.json: cannot stage it in "
        rf"{tiny_filesystem}/rtms-document-\w+: No space left on device",
        failed.detail,
    ), failed.detail
    assert await store.list("retention/runs/") == []
    [finish] = await catalog.audit_events(action="retention.run.finish")
    assert finish.actor == f"retention-run:{report.run_id}"
    assert '"failed":1' in finish.details_json
    assert '"report":null' in finish.details_json
