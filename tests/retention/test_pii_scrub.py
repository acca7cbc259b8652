"""Destroying a recording takes its personal data out of the catalog (SQLite and PostgreSQL).

Every check plants unique names, emails, numbers and a topic in every place the recorder keeps
them, runs retention, then reads every row of every table of the real database: none of the
planted strings may be left for a destroyed recording, all of them must be left for a held one.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

from recorder.catalog import AsyncCatalog, Product
from recorder.catalog.base import NewLifecycleEvent
from recorder.catalog.search import RecordingQuery
from recorder.completeness.model import (
    EnrichmentFields,
    EnrichmentState,
    ExpectationSource,
    FindingCause,
    FindingKind,
    NewExpectation,
    StartState,
)
from recorder.errors import HoldActive, RecorderError
from recorder.evidence_destruction import DestructionMethod
from recorder.officer.destroyed_view import destruction_fields, destruction_lines
from recorder.retention.apply import run_retention
from recorder.retention.assign import assign_policy
from recorder.retention.holds import place_holds, release_hold
from recorder.retention.policy import PolicySet, load_policies
from recorder.store.local import LocalStore
from recorder.testing.memory_shredder import MemoryShredder
from tests.catalog.support import CatalogTarget
from tests.retention.helpers import DAY_MS, T0, Clock, make_recording
from tests.retention.test_policy import DEFAULT, write
from tests.retention.test_run import PHI, context

pytestmark = pytest.mark.timeout(120)

LATER = T0 + 400 * DAY_MS


@pytest.fixture
def policies(tmp_path: Path) -> PolicySet:
    """Queue "phi": crypto-shred after 10 days; everything else: delete after 30 days."""
    return load_policies(write(tmp_path / "policies", phi=PHI, default=DEFAULT))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> LocalStore:
    return LocalStore(tmp_path / "store", now=clock.now)


@dataclass
class Planted:
    recording_id: str
    instance_id: str
    stream_id: str
    strings: tuple[str, ...]
    macs: tuple[str, ...]
    session_hash: str


async def plant(
    catalog: AsyncCatalog, store: LocalStore, tmp_path: Path, *, queue: str | None = None
) -> Planted:
    """One expired recording with personal data in every table that can hold it."""
    s = secrets.token_hex(5)
    digits = str(int(s, 16) % 10**9).zfill(9)
    name, email, agent = f"Alice Zq{s}", f"alice.{s}@client.example", f"Dana Zq{s}"
    caller, callee, consumer = f"+1555{digits}", f"+4420{digits}", f"+3361{digits}"
    topic, host_email = f"Merger talk {s}", f"ceo.{s}@firm.example"
    user_id, agent_id, pauser, target = f"uid-{s}", f"agt-{s}", f"pauser-{s}", f"8501{digits}"
    made = await make_recording(
        catalog, store, tmp_path, queue=queue, participants=[(user_id, name)]
    )
    rid = made.recording_id
    detail = await catalog.show(rid)
    assert detail is not None
    instance, stream = detail.recording.instance_id, detail.recording.rtms_stream_id
    await catalog.set_contact_center(rid, agent_id=agent_id, agent_name=agent)
    await catalog.add_pause(rid, start_ms=T0 + 1000, end_ms=T0 + 2000, actor=pauser)
    for dedup, stream_of in ((f"s-{s}", stream), (f"i-{s}", None)):
        await catalog.add_lifecycle_event(
            NewLifecycleEvent(
                dedup_key=dedup,
                event="rtms.concurrency_near_limit",
                kind="concurrency",
                failed=False,
                product=Product.CONTACT_CENTER,
                event_ts_ms=T0,
                received_ms=T0,
                rtms_stream_id=stream_of,
                instance_id=instance,
                ids={"user_id": user_id, "operator_id": agent_id},
                reason="near limit",
                body=json.dumps({"payload": {"operator": email, "user_name": name}}),
            )
        )
    db = catalog.sync
    expectation, _ = await catalog._call(
        lambda: db.add_expectation(
            NewExpectation(
                product=Product.CONTACT_CENTER,
                instance_id=instance,
                target_id=target,
                source=ExpectationSource.WEBHOOK,
                event="contact_center.engagement_started",
                expected_start_ms=T0,
                created_ms=T0,
                start_state=StartState.OFF,
                user_id=user_id,
                known=EnrichmentFields(agent_name=agent, consumer_number=consumer),
            )
        )
    )
    await catalog._call(
        lambda: db.put_finding(
            expectation,
            (FindingKind.INCOMPLETE, FindingCause.START_REFUSED, f"refused for {email}", rid),
            T0,
        )
    )
    assert await catalog._call(
        lambda: db.store_enrichment(
            Product.CONTACT_CENTER,
            instance,
            EnrichmentFields(
                topic=topic,
                host_id=f"host-{s}",
                host_email=host_email,
                agent_id=agent_id,
                agent_email=f"dana.{s}@firm.example",
                caller_number=caller,
                callee_number=callee,
            ),
            T0,
        )
    )
    macs = (secrets.token_hex(16), secrets.token_hex(16))
    await catalog.add_transcript_tokens(rid, "rk-text", list(macs), T0)
    session = secrets.token_hex(16)
    await catalog._call(
        lambda: db.web_create_session(
            session_hash=session, username=None, csrf_token="c", now_ms=T0, expires_ms=LATER * 2
        )
    )
    await catalog._call(
        lambda: db.web_give_reason(session, rid, actor="web:o", reason="review", now_ms=T0)
    )
    strings = (name, email, agent, caller, callee, consumer, topic, host_email)
    strings += (user_id, agent_id, pauser, target, f"dana.{s}@firm.example", f"host-{s}")
    return Planted(rid, instance, stream, strings, macs, session)


def dump(target: CatalogTarget) -> str:
    """Every row of every table, as text (lower case)."""
    lines: list[str] = []
    with target.raw() as conn:
        if target.sqlite_path is not None:
            query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        else:
            query = (
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        tables = [str(row[0]) for row in conn.execute(query).fetchall()]
        assert "pii_scrubs" in tables
        assert "enrichments" in tables
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"').fetchall():
                lines.append(f"{table}: {row!r}")
    return "\n".join(lines).lower()


async def searches(catalog: AsyncCatalog, planted: Planted) -> set[str]:
    """The recording ids that officer searches by the planted people and topic find."""
    name, _email, agent, caller, _, consumer, topic, host_email = planted.strings[:8]
    found: set[str] = set()
    for query in (
        RecordingQuery(participant=name),
        RecordingQuery(participant=planted.strings[8]),
        RecordingQuery(agent=agent),
        RecordingQuery(topic=topic),
        RecordingQuery(host=host_email),
        RecordingQuery(number=caller),
        RecordingQuery(number=consumer),
        RecordingQuery(text_macs=planted.macs[:1]),
    ):
        page = await catalog.search_recordings(query)
        found |= {hit.recording.recording_id for hit in page.hits}
    return found


async def test_retention_scrubs_every_planted_string_of_destroyed_recordings_not_of_held_ones(
    catalog: AsyncCatalog,
    target: CatalogTarget,
    store: LocalStore,
    policies: PolicySet,
    clock: Clock,
    tmp_path: Path,
) -> None:
    deleted = await plant(catalog, store, tmp_path)
    shredded = await plant(catalog, store, tmp_path, queue="phi")
    held = await plant(catalog, store, tmp_path)
    for p in (deleted, shredded, held):
        await assign_policy(catalog, policies, p.recording_id, T0)
        assert await searches(catalog, p) == {p.recording_id}
    await place_holds(
        catalog, store, matter="M-1", reason="subpoena", actor="os:counsel",
        recording_ids=[held.recording_id], now_ms=T0 + DAY_MS,
    )  # fmt: skip
    before = dump(target)
    for p in (deleted, shredded, held):
        assert all(s.lower() in before for s in p.strings)

    clock.ms = LATER
    shredder = MemoryShredder(catalog, {shredded.recording_id: ["rk_x"]}, now_ms=clock.now_ms)
    report = await run_retention(context(catalog, store, policies, clock, shredder))
    assert {o.recording_id for o in report.outcomes if o.result == "destroyed"} == {
        deleted.recording_id,
        shredded.recording_id,
    }

    after = dump(target)
    for p in (deleted, shredded):
        left = [s for s in p.strings if s.lower() in after]
        assert left == [], f"personal data of destroyed {p.recording_id} still in the catalog"
        assert not any(mac in after for mac in p.macs)
        assert await searches(catalog, p) == set()
    if target.sqlite_path is not None:
        # Not in the file either (secure_delete), once the WAL is checkpointed into it.
        with target.raw() as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw = target.sqlite_path.read_bytes().lower()
        for p in (deleted, shredded):
            assert [s for s in p.strings if s.lower().encode() in raw] == []
        assert all(s.lower().encode() in raw for s in held.strings)
    assert all(s.lower() in after for s in held.strings)  # a hold always wins
    assert await searches(catalog, held) == {held.recording_id}
    assert await catalog.pii_scrub(held.recording_id) is None

    # What stays: the recording, its times, its objects' hashes, the destruction record.
    for p, method in (
        (deleted, DestructionMethod.OBJECT_DELETE),
        (shredded, DestructionMethod.CRYPTO_ERASE),
    ):
        detail = await catalog.show(p.recording_id)
        assert detail is not None
        assert detail.participants == ()
        assert detail.recording.cc_agent_name is None
        assert detail.recording.started_ms == T0
        assert detail.recording.ended_ms == T0 + 60_000
        assert {s.stored_sha256 for s in detail.segments} != {None}
        (record,) = await catalog.destruction_records(p.recording_id)
        assert record.method is method
        assert record.sha256() in after
        scrub = await catalog.pii_scrub(p.recording_id)
        assert scrub is not None
        assert scrub.scrubbed_ms == record.destroyed_ms
        assert scrub.actor == record.actor
        assert scrub.scrubbed["participants"] == 1
        assert "cc_agent_name" in scrub.scrubbed["recordings"]  # type: ignore[operator]
        assert scrub.scrubbed["transcript_tokens"] == 2
        assert scrub.scrubbed["web_session_reasons"] == 1
        assert scrub.scrubbed["instance"] == "scrubbed"
        enrichment = await catalog._call(
            lambda p=p: catalog.sync.enrichment_of(Product.CONTACT_CENTER, p.instance_id)
        )
        assert enrichment is not None
        assert enrichment.state is EnrichmentState.SCRUBBED
        assert enrichment.fields == EnrichmentFields()
        assert (
            await catalog._call(lambda p=p: catalog.sync.web_reason(p.session_hash, p.recording_id))
            is None
        )
        # ``show`` says what went and when.
        doc = {"destruction": destruction_fields([record], scrub, on_hold=False)}
        lines = destruction_lines(doc, tz=dt.UTC)
        assert lines[0].startswith("DESTROYED ")
        assert f"({method.value})" in lines[0]
        assert "personal data scrubbed" in lines[1]
        assert "participants 1" in lines[1]
        assert "cc_agent_name" in lines[1]
        audit = await catalog.audit_events(action="recording.pii_scrub", target=p.recording_id)
        assert len(audit) == 1
    # A second run finds nothing left to scrub or destroy.
    lines: list[str] = []
    again = await run_retention(context(catalog, store, policies, clock, shredder, lines))
    assert again.outcomes == ()
    assert not [line for line in lines if line.startswith("scrubbed")]


async def test_a_recording_destroyed_under_a_hold_is_scrubbed_only_once_it_is_released(
    catalog: AsyncCatalog,
    target: CatalogTarget,
    store: LocalStore,
    policies: PolicySet,
    clock: Clock,
    tmp_path: Path,
) -> None:
    """Manual destruction recorded while a hold came in: the record is the truth, the personal
    data stays while the hold does; the first retention run after the release scrubs it."""
    p = await plant(catalog, store, tmp_path)
    (hold,) = await place_holds(
        catalog, store, matter="M-2", reason="dispute", actor="os:counsel",
        recording_ids=[p.recording_id], now_ms=T0,
    )  # fmt: skip
    shredder = MemoryShredder(catalog, {}, now_ms=clock.now_ms)
    with pytest.raises(HoldActive, match="legal hold"):
        await shredder.shred(p.recording_id, actor="os:o", rule="manual:test")
    # Keys already gone (an interrupted earlier shred), record written now, under the hold.
    from recorder.retention.apply import _record
    from recorder.retention.engine import Decision, Verdict

    decision = Decision(p.recording_id, Verdict.DESTROY, None, "manual:test", "test", None)
    record = _record(decision, DestructionMethod.CRYPTO_ERASE, "os:o", T0, "keys gone")
    await catalog.add_destruction_record(record)
    assert await catalog.pii_scrub(p.recording_id) is None
    held_dump = dump(target)
    assert all(s.lower() in held_dump for s in p.strings)
    doc = {"destruction": destruction_fields([record], None, on_hold=True)}
    assert "legal hold" in destruction_lines(doc, dt.UTC)[-1]

    ctx = context(catalog, store, policies, clock, shredder)
    await run_retention(ctx)  # still held: nothing scrubbed
    assert await catalog.pii_scrub(p.recording_id) is None
    await release_hold(
        catalog, store, hold.hold_id, actor="os:counsel", reason="settled", now_ms=T0 + 5
    )
    lines: list[str] = []
    clock.ms = T0 + 10
    await run_retention(context(catalog, store, policies, clock, shredder, lines))
    assert f"scrubbed {p.recording_id}: personal data of a recording destroyed earlier" in lines
    scrub = await catalog.pii_scrub(p.recording_id)
    assert scrub is not None
    assert scrub.scrubbed_ms == T0 + 10
    assert scrub.actor.startswith("retention-run:")
    after = dump(target)
    assert [s for s in p.strings if s.lower() in after] == []


async def test_a_crash_between_key_destruction_and_the_record_is_healed_by_the_next_run(
    catalog: AsyncCatalog,
    target: CatalogTarget,
    store: LocalStore,
    policies: PolicySet,
    clock: Clock,
    tmp_path: Path,
) -> None:
    """The keys are destroyed, then the catalog write of record + scrub fails (here: the
    database refuses, as a power cut would lose it): nothing half-scrubbed is left, and the
    next run records the destruction and scrubs in one step."""
    p = await plant(catalog, store, tmp_path, queue="phi")
    await assign_policy(catalog, policies, p.recording_id, T0)
    if target.sqlite_path is not None:
        fault = (
            "CREATE TRIGGER test_power_cut BEFORE DELETE ON participants"
            " BEGIN SELECT RAISE(ABORT, 'power cut'); END"
        )
    else:
        fault = (
            "CREATE TRIGGER test_power_cut BEFORE DELETE ON participants FOR EACH ROW"
            " EXECUTE FUNCTION recorder_refuse_change('power cut')"
        )
    with target.raw() as conn:
        conn.execute(fault)
    clock.ms = LATER
    # Like the real key store: a second shred finds the keys gone (``KeyDestroyed``).
    shredder = MemoryShredder(
        catalog, {p.recording_id: ["rk_p"]}, now_ms=clock.now_ms, refuse_twice=True
    )
    with pytest.raises(RecorderError, match="power cut"):
        await run_retention(context(catalog, store, policies, clock, shredder))
    assert shredder.is_destroyed(p.recording_id)
    assert await catalog.destruction_records(p.recording_id) == []
    assert await catalog.pii_scrub(p.recording_id) is None
    half = dump(target)
    assert all(s.lower() in half for s in p.strings)  # rolled back whole, nothing half-done

    with target.raw() as conn:
        conn.execute(
            "DROP TRIGGER test_power_cut"
            + ("" if target.sqlite_path is not None else " ON participants")
        )
    clock.ms = LATER + 1
    report = await run_retention(context(catalog, store, policies, clock, shredder))
    (outcome,) = report.outcomes
    assert outcome.result == "destroyed"
    assert "interrupted run" in outcome.detail
    assert await catalog.pii_scrub(p.recording_id) is not None
    after = dump(target)
    assert [s for s in p.strings if s.lower() in after] == []


async def test_recordings_destroyed_before_migration_17_are_scrubbed_by_the_next_run(
    catalog: AsyncCatalog,
    target: CatalogTarget,
    store: LocalStore,
    policies: PolicySet,
    clock: Clock,
    tmp_path: Path,
) -> None:
    p = await plant(catalog, store, tmp_path)
    from recorder.retention.apply import _record
    from recorder.retention.engine import Decision, Verdict

    decision = Decision(p.recording_id, Verdict.DESTROY, None, "policy:old@1", "old", None)
    record = _record(decision, DestructionMethod.OBJECT_DELETE, "retention-run:old", T0, "gone")
    with target.raw() as conn:  # what a recorder before this change wrote: the record alone
        conn.execute(
            "INSERT INTO destruction_records (recording_id, method, record_json, record_sha256,"
            f" destroyed_ms) VALUES ('{p.recording_id}', 'object_delete',"
            f" '{record.canonical_json()}', '{record.sha256()}', {T0})"
        )
    assert await catalog.pii_scrub(p.recording_id) is None
    clock.ms = T0 + 7
    lines: list[str] = []
    report = await run_retention(context(catalog, store, policies, clock, None, lines))
    assert report.outcomes == ()  # already destroyed: not planned again
    assert f"scrubbed {p.recording_id}: personal data of a recording destroyed earlier" in lines
    after = dump(target)
    assert [s for s in p.strings if s.lower() in after] == []
    finish = await catalog.audit_events(action="retention.run.finish")
    assert json.loads(finish[-1].details_json)["scrubbed_late"] == 1
