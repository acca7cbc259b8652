"""RTMS control requests in the catalog (migration 13), on SQLite and PostgreSQL: the request
and its audit event in one transaction, Zoom's answer, and which pause a request explains."""

from __future__ import annotations

import pytest

from recorder.catalog import AsyncCatalog
from recorder.catalog.base import RecordingStart
from recorder.errors import CatalogError
from recorder.products import Product
from tests.catalog.support import T0

WINDOW = 120_000


async def _recording(catalog: AsyncCatalog, instance_id: str) -> str:
    row = await catalog.upsert_recording(
        RecordingStart("stream-" + instance_id, Product.CONTACT_CENTER, instance_id, T0), T0
    )
    return row.recording_id


async def test_a_request_is_audited_on_the_live_recording_with_its_outcome(
    catalog: AsyncCatalog,
) -> None:
    recording_id = await _recording(catalog, "eng-1")
    row, event = await catalog.add_rtms_request(
        product="contact_center",
        target_id="eng-1",
        action="pause",
        actor="alice",
        reason="card number",
        now_ms=T0 + 1000,
    )
    assert (row.outcome, row.audit_target, row.matched_recording_id) == (
        "pending",
        recording_id,
        None,
    )
    assert (event.actor, event.action, event.target, event.reason) == (
        "alice",
        "rtms.pause",
        recording_id,
        "card number",
    )
    done = await catalog.finish_rtms_request(
        row.request_id, outcome="refused", error="HTTP 400, code 2310", now_ms=T0 + 1200
    )
    assert (done.outcome, done.error) == ("refused", "HTTP 400, code 2310")
    trail = await catalog.audit_trail(recording_id)
    assert [(e.action, e.actor) for e in trail] == [
        ("rtms.pause", "alice"),
        ("rtms.pause.refused", "alice"),
    ]
    assert (await catalog.verify_audit_chain()).intact
    with pytest.raises(CatalogError, match="no pending request"):
        await catalog.finish_rtms_request(row.request_id, outcome="accepted", error=None, now_ms=0)
    # No recording of the instance: the audit names product and id.
    other, other_event = await catalog.add_rtms_request(
        product="phone", target_id="call-9", action="stop", actor="bob", reason="r", now_ms=T0
    )
    assert other.audit_target == other_event.target == "phone:call-9"


async def test_a_pause_matches_the_newest_unmatched_request_in_its_window_once(
    catalog: AsyncCatalog,
) -> None:
    recording_id = await _recording(catalog, "eng-2")

    async def request(at_ms: int, *, target: str = "eng-2", action: str = "pause") -> int:
        row, _ = await catalog.add_rtms_request(
            product="contact_center",
            target_id=target,
            action=action,
            actor=f"agent-{at_ms}",
            reason="pci",
            now_ms=at_ms,
        )
        return row.request_id

    old = await request(T0)  # far outside the window of the pause below
    await request(T0 + 500_000, target="eng-other")
    await request(T0 + 500_000, action="resume")
    refused = await request(T0 + 500_500)
    await catalog.finish_rtms_request(refused, outcome="refused", error="2310", now_ms=T0)
    wanted = await request(T0 + 499_000)

    async def match(at_ms: int) -> object:
        return await catalog.match_pause_request(
            product="contact_center",
            instance_ids=["eng-2"],
            recording_id=recording_id,
            paused_ms=at_ms,
            window_ms=WINDOW,
        )

    first = await match(T0 + 501_000)
    assert first is not None
    assert (first.request_id, first.actor, first.matched_recording_id, first.matched_ms) == (  # type: ignore[attr-defined]
        wanted,
        f"agent-{T0 + 499_000}",
        recording_id,
        T0 + 501_000,
    )
    assert await match(T0 + 502_000) is None  # a request explains one pause only
    unconfirmed = await catalog.unconfirmed_pause_requests(
        product="contact_center", instance_ids=["eng-2"], since_ms=T0 - 1, before_ms=T0 + 10**7
    )
    assert [r.request_id for r in unconfirmed] == [old]
    assert (
        await catalog.match_pause_request(
            product="contact_center",
            instance_ids=[],
            recording_id=recording_id,
            paused_ms=T0,
            window_ms=WINDOW,
        )
        is None
    )


BAD_REQUESTS = [
    ({"action": "explode"}, "unknown action"),
    ({"actor": " "}, "actor must not be empty"),
    ({"reason": ""}, "reason must not be empty"),
    ({"reason": "x" * 2001}, "longer than"),
]


async def test_bad_requests_are_refused_and_write_nothing(catalog: AsyncCatalog) -> None:
    for changes, problem in BAD_REQUESTS:
        fields = {
            "product": "meeting",
            "target_id": "m1",
            "action": "pause",
            "actor": "a",
            "reason": "r",
        } | changes
        with pytest.raises(CatalogError, match=problem):
            await catalog.add_rtms_request(**fields, now_ms=T0)  # type: ignore[arg-type]
    assert await catalog.rtms_requests() == []
    assert await catalog.audit_events() == []
