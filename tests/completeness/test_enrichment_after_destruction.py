"""Enrichment and destruction on a real catalog (SQLite and PostgreSQL): a pending look-up of a
destroyed instance is cancelled, an answer arriving after the destruction is dropped, and the
enrichment of an instance stays while one of its recordings is still kept."""

from __future__ import annotations

import pytest
import trio

from recorder.catalog import AsyncCatalog
from recorder.completeness.enrichment import Enricher
from recorder.completeness.model import (
    EnrichmentFields,
    EnrichmentState,
    EnrichmentTask,
    ExpectationSource,
    NewExpectation,
    StartState,
)
from recorder.config import CompletenessConfig
from recorder.evidence_destruction import DestructionMethod, DestructionRecord
from recorder.products import Product
from recorder.service.metrics import RecorderMetrics
from recorder.testing.zoom_fakes import MemoryDirectory
from recorder.zoom.directory import EngagementInfo
from tests.catalog.support import CatalogTarget
from tests.completeness.helpers import NOW_MS, add_recording

POLICY = CompletenessConfig(enrich_attempts=2, enrich_backoff_s=60, enrich_backoff_max_s=600)
AGENT = EngagementInfo(
    "eng-1", "q-7", "Retail", "ag-1", "Dana Smith", "dana@firm.example", "+442079460018", "in"
)


def destroyed(recording_id: str, at_ms: int) -> DestructionRecord:
    return DestructionRecord(
        recording_id=recording_id,
        method=DestructionMethod.OBJECT_DELETE,
        objects=(),
        key_ids=(),
        rule="manual:test",
        hold_check="no holds",
        actor="os:officer",
        destroyed_ms=at_ms,
        verification="no object versions remain",
    )


async def claim(catalog: AsyncCatalog, now_ms: int) -> list[EnrichmentTask]:
    return await catalog._call(
        lambda: catalog.sync.claim_due_enrichments(now_ms, lease_ms=1, limit=10)
    )


async def test_a_late_answer_for_a_destroyed_engagement_is_dropped_and_nothing_is_asked_again(
    catalog: AsyncCatalog, target: CatalogTarget
) -> None:
    db = catalog.sync
    directory = MemoryDirectory()
    directory.engagements["eng-1"] = AGENT
    first = await add_recording(
        catalog, Product.CONTACT_CENTER, "eng-1", "s-1", started_ms=NOW_MS, ended_ms=NOW_MS + 10
    )
    second = await add_recording(
        catalog,
        Product.CONTACT_CENTER,
        "eng-1",
        "s-2",
        started_ms=NOW_MS + 20,
        ended_ms=NOW_MS + 30,
    )
    enricher = Enricher(catalog, directory, POLICY, RecorderMetrics(), lambda: NOW_MS + 100)
    await catalog._call(lambda: db.enqueue_enrichments(NOW_MS))
    (task,) = await claim(catalog, NOW_MS)  # a look-up in flight

    with trio.fail_after(20):
        # One recording of the engagement destroyed: the other one still needs its enrichment.
        await catalog.add_destruction_record(destroyed(first, NOW_MS + 40))
        kept = await catalog.pii_scrub(first)
        assert kept is not None
        assert kept.scrubbed["instance"] == "kept: 1 recording(s) of the instance not destroyed"
        assert await enricher.enrich_one(task) is True
        row = await catalog._call(lambda: db.enrichment_of(Product.CONTACT_CENTER, "eng-1"))
        assert row is not None
        assert row.fields.agent_name == "Dana Smith"

        # The last one destroyed: the enrichment goes, as a final tombstone.
        await catalog.add_destruction_record(destroyed(second, NOW_MS + 50))
        scrub = await catalog.pii_scrub(second)
        assert scrub is not None
        assert scrub.scrubbed["instance"] == "scrubbed"
        assert scrub.scrubbed["enrichments"] == 1
        row = await catalog._call(lambda: db.enrichment_of(Product.CONTACT_CENTER, "eng-1"))
        assert row is not None
        assert row.state is EnrichmentState.SCRUBBED
        # Only whether the call came in or went out stays: it names nobody.
        assert row.fields == EnrichmentFields(direction="in")
        assert row.lookup_id == "eng-1"

        # An answer that was on its way (a retry of the claimed look-up) is not stored.
        calls = len(directory.calls)
        assert await enricher.enrich_one(task) is False
        assert enricher.stats.enriched == 1
        await catalog._call(
            lambda: db.enrichment_failed(
                Product.CONTACT_CENTER,
                "eng-1",
                "dana@firm.example unknown",
                NOW_MS + 60,
                next_attempt_ms=NOW_MS,
                give_up=False,
            )
        )
        await catalog._call(lambda: db.retry_enrichments(NOW_MS + 60))
        assert await enricher.pass_once() == 0  # never claimed, never asked again
        assert len(directory.calls) == calls + 1  # only the dropped answer's own look-up
        after = await catalog._call(lambda: db.enrichment_of(Product.CONTACT_CENTER, "eng-1"))
        assert after == row

    # Behind the application's back, the database itself refuses to refill it.
    with target.raw() as conn, pytest.raises(target.driver_error, match="enrichment scrubbed"):
        conn.execute("UPDATE enrichments SET agent_name = 'Dana Smith' WHERE instance_id = 'eng-1'")


async def test_a_pending_enrichment_of_a_destroyed_recording_is_cancelled_before_zoom_is_asked(
    catalog: AsyncCatalog,
) -> None:
    db = catalog.sync
    directory = MemoryDirectory()
    directory.engagements["eng-2"] = AGENT
    rid = await add_recording(
        catalog, Product.CONTACT_CENTER, "eng-2", "s-3", started_ms=NOW_MS, ended_ms=NOW_MS + 10
    )
    await catalog._call(lambda: db.enqueue_enrichments(NOW_MS))
    await catalog.add_destruction_record(destroyed(rid, NOW_MS + 20))
    enricher = Enricher(catalog, directory, POLICY, RecorderMetrics(), lambda: NOW_MS + 100)
    with trio.fail_after(20):
        assert await enricher.pass_once() == 0
    assert directory.calls == []
    row = await catalog._call(lambda: db.enrichment_of(Product.CONTACT_CENTER, "eng-2"))
    assert row is not None
    assert row.state is EnrichmentState.SCRUBBED


async def test_a_destroyed_recording_without_enrichment_never_gets_one(
    catalog: AsyncCatalog,
) -> None:
    """The scrub leaves a tombstone row, so the scanner's enqueue adds nothing for it."""
    db = catalog.sync
    directory = MemoryDirectory()
    directory.engagements["eng-3"] = AGENT
    rid = await add_recording(
        catalog, Product.CONTACT_CENTER, "eng-3", "s-4", started_ms=NOW_MS, ended_ms=NOW_MS + 10
    )
    await catalog.add_destruction_record(destroyed(rid, NOW_MS + 20))
    assert await catalog._call(lambda: db.enqueue_enrichments(NOW_MS + 30)) == 0
    enricher = Enricher(catalog, directory, POLICY, RecorderMetrics(), lambda: NOW_MS + 100)
    with trio.fail_after(20):
        assert await enricher.pass_once() == 0
    assert directory.calls == []


async def test_a_late_announcement_of_a_destroyed_engagement_keeps_no_ids_and_starts_nothing(
    catalog: AsyncCatalog,
) -> None:
    """A pull listing the engagement after its recordings were destroyed."""
    db = catalog.sync
    rid = await add_recording(
        catalog, Product.CONTACT_CENTER, "eng-4", "s-5", started_ms=NOW_MS, ended_ms=NOW_MS + 10
    )
    await catalog.add_destruction_record(destroyed(rid, NOW_MS + 20))
    row, inserted = await catalog._call(
        lambda: db.add_expectation(
            NewExpectation(
                product=Product.CONTACT_CENTER,
                instance_id="eng-4",
                target_id="eng-4-target",
                source=ExpectationSource.PULL,
                event="engagement",
                expected_start_ms=NOW_MS,
                created_ms=NOW_MS + 30,
                start_state=StartState.PENDING,
                user_id="agent-uid",
                queue_id="q-7",
                known=EnrichmentFields(agent_name="Dana Smith"),
            )
        )
    )
    assert inserted
    assert (row.target_id, row.user_id, row.queue_id) == ("eng-4", None, None)
    assert row.start_state is StartState.OFF
    enrichment = await catalog._call(lambda: db.enrichment_of(Product.CONTACT_CENTER, "eng-4"))
    assert enrichment is not None
    assert enrichment.state is EnrichmentState.SCRUBBED
    assert enrichment.fields == EnrichmentFields()
