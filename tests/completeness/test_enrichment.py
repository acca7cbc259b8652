"""Enrichment on a real catalog (SQLite and PostgreSQL): a directory failure is stored and
retried later with backoff, never touching the recording; once Zoom answers, officers find the
recording by agent, queue, topic, host and phone number however they type it."""

from __future__ import annotations

import pytest
import trio

from recorder.catalog import AsyncCatalog
from recorder.catalog.search import RecordingQuery
from recorder.completeness.enrichment import Enricher
from recorder.completeness.model import EnrichmentState
from recorder.config import CompletenessConfig
from recorder.errors import CatalogError, ZoomApiError
from recorder.products import Product
from recorder.service.metrics import RecorderMetrics
from recorder.testing.zoom_fakes import MemoryDirectory
from recorder.zoom.directory import EngagementInfo, MeetingInfo, PhoneCallInfo
from tests.completeness.helpers import NOW_MS, add_recording

POLICY = CompletenessConfig(enrich_attempts=2, enrich_backoff_s=60, enrich_backoff_max_s=600)


async def found(catalog: AsyncCatalog, **query: str) -> list[str]:
    page = await catalog.search_recordings(RecordingQuery(**query))  # type: ignore[arg-type]
    return [hit.recording.recording_id for hit in page.hits]


async def test_failures_are_retried_later_and_then_officers_search_by_what_zoom_said(
    catalog: AsyncCatalog,
) -> None:
    clock = [NOW_MS]
    directory = MemoryDirectory()
    cc = await add_recording(
        catalog, Product.CONTACT_CENTER, "eng-1", "s-cc", started_ms=NOW_MS - 60_000
    )
    phone = await add_recording(catalog, Product.PHONE, "call-1", "s-ph", started_ms=NOW_MS - 50)
    meeting = await add_recording(
        catalog, Product.MEETING, "m-uuid==", "s-m", started_ms=NOW_MS, meeting_number="8501"
    )
    directory.engagements["eng-1"] = EngagementInfo(
        "eng-1",
        "q-7",
        "Retail Trading",
        "ag-1",
        "Dana Smith",
        "dana@firm.example",
        "+44 20 7946 0018",
        "inbound",
    )
    directory.phone_calls["call-1"] = PhoneCallInfo(
        "call-1", "+1 (555) 010-0199", "+1 555 010 0200", "outbound", "u-trader"
    )
    directory.meetings["8501"] = MeetingInfo(
        "8501", "Q3 Desk Review", "h-1", "ceo@firm.example", "a"
    )
    # Zoom is down for the first look-up of each (5xx), then answers.
    directory.fail_next.extend(ZoomApiError("Internal error", status=500) for _ in range(3))
    enricher = Enricher(catalog, directory, POLICY, RecorderMetrics(), lambda: clock[0])
    with trio.fail_after(20):
        assert await enricher.pass_once() == 3
        assert (enricher.stats.enriched, enricher.stats.failed) == (0, 3)
        row = await catalog._call(lambda: catalog.sync.enrichment_of(Product.PHONE, "call-1"))
        assert row is not None
        assert row.state is EnrichmentState.PENDING
        assert row.attempts == 1
        assert row.last_error == "Internal error"
        assert row.next_attempt_ms == NOW_MS + 60_000
        # Not due yet: nothing is asked again.
        assert await enricher.pass_once() == 0
        assert len(directory.calls) == 3
        # The recordings themselves were never touched.
        for rid in (cc, phone, meeting):
            detail = await catalog.show(rid)
            assert detail is not None
        clock[0] += 60_000
        assert await enricher.pass_once() == 3
        assert enricher.stats.enriched == 3
        # Meetings are looked up by their number, not their uuid.
        assert ("meeting", "8501") in directory.calls

        assert await found(catalog, agent="dana smith") == [cc]
        assert await found(catalog, agent="DANA@firm.example") == [cc]
        assert await found(catalog, agent="u-trader") == [phone]
        assert await found(catalog, queue="retail trading") == [cc]
        assert await found(catalog, queue="q-7") == [cc]
        assert await found(catalog, number="+44 (20) 7946-0018") == [cc]
        assert await found(catalog, number="+15550100199") == [phone]
        assert await found(catalog, number="+1-555-010-0200") == [phone]
        assert await found(catalog, number="+15550000000") == []
        assert await found(catalog, topic="q3 desk review") == [meeting]
        assert await found(catalog, host="ceo@firm.example") == [meeting]
        assert await found(catalog, host="h-1") == [meeting]
        with pytest.raises(CatalogError, match="--number"):
            await found(catalog, number="no digits")


async def test_gives_up_after_the_attempts_until_retry(catalog: AsyncCatalog) -> None:
    clock = [NOW_MS]
    directory = MemoryDirectory()  # knows nothing: 404 each time
    await add_recording(catalog, Product.CONTACT_CENTER, "eng-x", "s-x", started_ms=NOW_MS)
    enricher = Enricher(catalog, directory, POLICY, RecorderMetrics(), lambda: clock[0])
    with trio.fail_after(20):
        await enricher.pass_once()
        clock[0] += 10 * 60_000
        await enricher.pass_once()
        row = await catalog._call(
            lambda: catalog.sync.enrichment_of(Product.CONTACT_CENTER, "eng-x")
        )
        assert row is not None
        assert (row.state, row.attempts) == (EnrichmentState.FAILED, 2)
        clock[0] += 3_600_000
        assert await enricher.pass_once() == 0  # given up: not asked again by itself
        assert await catalog._call(lambda: catalog.sync.retry_enrichments(clock[0])) == 1
        directory.engagements["eng-x"] = EngagementInfo(
            "eng-x", "q", "Q", "a", "A", None, None, None
        )
        assert await enricher.pass_once() == 1
    row = await catalog._call(lambda: catalog.sync.enrichment_of(Product.CONTACT_CENTER, "eng-x"))
    assert row is not None
    assert row.state is EnrichmentState.DONE
