"""Announcing webhooks over real HTTP into a real catalog (SQLite and PostgreSQL): a signed
``meeting.started`` for a matching account becomes an expectation before the 200 and the
auto-starter asks the ``RtmsController`` to start RTMS; a forged one does nothing; a refused
start and an ``rtms.start_failed`` become ``missing`` findings with their cause; a late
recording becomes ``incomplete``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
import trio

from recorder.catalog import AsyncCatalog, CatalogWebhookDedup
from recorder.catalog.search import RecordingQuery
from recorder.completeness import reconcile
from recorder.completeness.announcements import Announcement
from recorder.completeness.autostart import AutoStarter, StartOutcome
from recorder.completeness.expectations import CatalogExpectations
from recorder.completeness.model import (
    ExpectationRow,
    ExpectationSource,
    FindingCause,
    FindingKind,
    StartState,
)
from recorder.completeness.pull import pull
from recorder.completeness.reconcile import reconcile_once
from recorder.config import CompletenessConfig, Secret
from recorder.errors import CatalogError, ZoomApiError
from recorder.products import Product
from recorder.rtms.webhook import WebhookEvent, signed_headers
from recorder.service.health import Liveness, Readiness
from recorder.service.ingress import AcceptedWebhook, IngressApp, IngressSettings, serve_http
from recorder.service.lifecycle import CatalogLifecycleEvidence
from recorder.service.metrics import RecorderMetrics
from recorder.service.outbox import CatalogOutbox
from recorder.testing.zoom_fakes import MemoryController, MemoryListing
from recorder.zoom.directory import RtmsAction
from tests.completeness.helpers import (
    NOW_MS,
    NOW_S,
    SECRET_TOKEN,
    add_recording,
    body,
    meeting_started,
)

POLICY = CompletenessConfig(
    enabled=True,
    auto_start=True,
    accounts=("acct-1",),
    grace_s=60,
    late_start_s=30,
    start_attempts=3,
    start_backoff_s=0.001,
)


@dataclass
class Harness:
    client: httpx.AsyncClient
    catalog: AsyncCatalog
    controller: MemoryController
    settled: trio.MemoryReceiveChannel[tuple[ExpectationRow, StartOutcome]]
    metrics: RecorderMetrics

    async def post(self, raw: bytes, *, secret: str = SECRET_TOKEN) -> httpx.Response:
        return await self.client.post(
            "/webhook", content=raw, headers=signed_headers(secret, NOW_S, raw)
        )

    async def expectations(self) -> list[ExpectationRow]:
        return await self.catalog._call(
            lambda: self.catalog.sync.expectations_between(0, 2**62, limit=100)
        )


@asynccontextmanager
async def running(
    catalog: AsyncCatalog, controller: MemoryController, policy: CompletenessConfig = POLICY
) -> AsyncIterator[Harness]:
    handoff, _handed = trio.open_memory_channel[AcceptedWebhook](8)
    wake_send, wake_receive = trio.open_memory_channel[int](8)
    settled_send, settled_receive = trio.open_memory_channel[tuple[ExpectationRow, StartOutcome]](8)
    metrics = RecorderMetrics()
    app = IngressApp(
        IngressSettings(secret_token=Secret(SECRET_TOKEN)),
        handoff=handoff,
        dedup=CatalogWebhookDedup(catalog),
        metrics=metrics,
        liveness=Liveness(stale_s=30),
        readiness=Readiness(timeout_s=0.5, metrics=metrics),
        clock=lambda: float(NOW_S),
        lifecycle=CatalogLifecycleEvidence(catalog, metrics),
        outbox=CatalogOutbox(catalog, dedup_ttl_ms=3_600_000),
        announcements=CatalogExpectations(catalog, policy, controller_present=True, wake=wake_send),
    )
    starter = AutoStarter(
        catalog,
        controller,
        policy,
        metrics,
        lambda: NOW_MS,
        on_settled=lambda x, outcome: settled_send.send_nowait((x, outcome)),
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(starter.run, wake_receive)
            port = await nursery.start(serve_http, app, "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                yield Harness(client, catalog, controller, settled_receive, metrics)
            nursery.cancel_scope.cancel()


async def test_signed_meeting_started_expects_and_starts_forged_does_nothing(
    catalog: AsyncCatalog,
) -> None:
    controller = MemoryController()
    async with running(catalog, controller) as h:
        forged = await h.post(meeting_started("forged=="), secret="not-the-token")
        assert forged.status_code == 401
        assert await h.expectations() == []

        raw = meeting_started()
        for _ in range(3):  # Zoom's retries: one expectation, one start
            assert (await h.post(raw)).status_code == 200
        _, outcome = await h.settled.receive()
        assert outcome.ok
        assert controller.changed == [(Product.MEETING, "85012345678", RtmsAction.START)]
        [row] = await h.expectations()
        assert (row.instance_id, row.target_id, row.account_id) == (
            "m-uuid-1==",
            "85012345678",
            "acct-1",
        )
        assert row.start_state is StartState.REQUESTED
        assert row.expected_start_ms == NOW_MS
        [audit] = await catalog.audit_trail("meeting:m-uuid-1==")
        assert (audit.actor, audit.action) == ("recorder:auto-start", "rtms_start")
        assert "meeting.started" in audit.reason
        assert json.loads(audit.details_json)["ok"] is True

        # The stream overtook its announcement: nothing to ask Zoom for.
        await add_recording(catalog, Product.MEETING, "early==", "s-early", started_ms=NOW_MS)
        early = meeting_started("early==", "999", topic="Other", host_id="host-2")
        assert (await h.post(early)).status_code == 200
        # Another account: acknowledged, nothing expected, nothing started.
        other = await h.post(meeting_started("m-uuid-2==", "1", account_id="acct-2"))
        assert other.status_code == 200
        # Authentic but without its uuid: refused by name, nothing stored.
        broken = await h.post(body("meeting.started", {"id": "5"}))
        assert broken.status_code == 400
        assert broken.json() == {"error": "missing_field"}
    # What the signed announcement said is searchable at once, with no directory at all.
    rid = await add_recording(catalog, Product.MEETING, "m-uuid-1==", "s-1", started_ms=NOW_MS)
    for query in (RecordingQuery(topic="q3 DESK"), RecordingQuery(host="host-1")):
        page = await catalog.search_recordings(query)
        assert [hit.recording.recording_id for hit in page.hits] == [rid]
    states = {x.instance_id: x.start_state for x in await h.expectations()}
    assert states == {"m-uuid-1==": StartState.REQUESTED, "early==": StartState.NOT_NEEDED}
    assert controller.changed == [(Product.MEETING, "85012345678", RtmsAction.START)]


async def test_a_refused_start_and_a_start_failed_become_missing_findings(
    catalog: AsyncCatalog,
) -> None:
    controller = MemoryController()
    # 5xx is retried, 2308 (not allowed) is final: two calls, the refusal stored.
    controller.fail_next.extend(
        [
            ZoomApiError("Internal error", status=503),
            ZoomApiError("Not allowed to start RTMS app", status=400, code=2308),
        ]
    )
    async with running(catalog, controller) as h:
        assert (await h.post(meeting_started("refused==", "111"))).status_code == 200
        _, outcome = await h.settled.receive()
        assert not outcome.ok
        assert outcome.attempts == 2
        assert len(controller.calls) == 2

        engagement = body(
            "contact_center.engagement_started",
            {"engagement_id": "eng-9", "queue_id": "q-1", "user_id": "agent-7"},
        )
        assert (await h.post(engagement)).status_code == 200
        _, started = await h.settled.receive()
        assert started.ok
        start_failed = json.dumps(
            {
                "event": "rtms.start_failed",
                "event_ts": NOW_MS,
                "payload": {"engagement_id": "eng-9", "reason": "app not assigned to queue"},
            }
        ).encode()
        assert (await h.post(start_failed)).status_code == 200
        # Expected and recorded (on time): met.
        assert (await h.post(meeting_started("fine==", "222"))).status_code == 200
        await h.settled.receive()
        await add_recording(catalog, Product.MEETING, "fine==", "s-fine", started_ms=NOW_MS + 5)

    early = await reconcile_once(catalog, POLICY, NOW_MS + 1_000)
    assert early.examined == 0  # inside the grace period: no verdict yet
    summary = await reconcile_once(catalog, POLICY, NOW_MS + 120_000)
    assert summary.met == 1
    findings = {
        f.instance_id: f for f in await catalog._call(lambda: catalog.sync.findings(limit=10))
    }
    assert set(findings) == {"refused==", "eng-9"}
    refused = findings["refused=="]
    assert (refused.kind, refused.cause) == (FindingKind.MISSING, FindingCause.START_REFUSED)
    assert "code=2308" in refused.detail
    assert "status=400" in refused.detail
    failed = findings["eng-9"]
    assert (failed.kind, failed.cause) == (FindingKind.MISSING, FindingCause.START_FAILED)
    assert "app not assigned to queue" in failed.detail
    counts = await catalog._call(catalog.sync.finding_counts)
    assert sorted(counts) == [
        ("missing", "rtms.start_failed", 1),
        ("missing", "start_refused", 1),
    ]


async def test_a_late_recording_is_incomplete_and_a_recording_that_appears_resolves_missing(
    catalog: AsyncCatalog,
) -> None:
    controller = MemoryController()
    policy = dataclasses.replace(POLICY, auto_start=False)
    async with running(catalog, controller, policy) as h:
        assert (await h.post(meeting_started("late==", "333"))).status_code == 200
        assert (await h.post(meeting_started("slow==", "444"))).status_code == 200
    assert controller.calls == []  # auto-start off: nothing asked of Zoom
    await add_recording(catalog, Product.MEETING, "late==", "s-late", started_ms=NOW_MS + 95_000)
    await reconcile_once(catalog, policy, NOW_MS + 120_000)
    findings = {
        f.instance_id: f for f in await catalog._call(lambda: catalog.sync.findings(limit=10))
    }
    late = findings["late=="]
    assert (late.kind, late.cause) == (FindingKind.INCOMPLETE, FindingCause.STARTED_LATE)
    assert late.recording_id is not None
    assert "95.0 s" in late.detail
    assert (findings["slow=="].kind, findings["slow=="].cause) == (
        FindingKind.MISSING,
        FindingCause.NEVER_STARTED,
    )
    # The stream shows up after all (on time): the finding is resolved, kept as history.
    await add_recording(catalog, Product.MEETING, "slow==", "s-slow", started_ms=NOW_MS + 10)
    await reconcile_once(catalog, policy, NOW_MS + 180_000)
    open_now = await catalog._call(lambda: catalog.sync.findings(limit=10))
    assert [f.instance_id for f in open_now] == ["late=="]
    history = await catalog._call(lambda: catalog.sync.findings(include_resolved=True, limit=10))
    assert {f.instance_id: f.resolved_ms for f in history}["slow=="] == NOW_MS + 180_000


async def test_ending_events_give_the_expected_end_or_an_expectation_never_started(
    catalog: AsyncCatalog,
) -> None:
    controller = MemoryController()
    end_ms = NOW_MS + 600_000
    end_time = "2021-07-14T02:54:51Z"  # NOW_S + 600 s
    async with running(catalog, controller) as h:
        assert (await h.post(meeting_started("short==", "555"))).status_code == 200
        await h.settled.receive()
        ended = body("meeting.ended", {"uuid": "short==", "id": "555", "end_time": end_time})
        assert (await h.post(ended)).status_code == 200
        # An end whose start never reached us: expected all the same, never started.
        missed = body(
            "phone.callee_ended",
            {
                "call_id": "call-missed",
                "callee": {"user_id": "u-1", "phone_number": "+1 555 010 0200"},
                "caller": {"phone_number": "+44 20 7946 0018"},
                "call_end_time": end_time,
            },
        )
        assert (await h.post(missed)).status_code == 200
        rows = {x.instance_id: x for x in await h.expectations()}
    assert controller.changed == [(Product.MEETING, "555", RtmsAction.START)]
    assert rows["short=="].expected_end_ms == end_ms
    assert rows["call-missed"].start_state is StartState.OFF
    assert rows["call-missed"].expected_end_ms == end_ms
    known = await catalog._call(lambda: catalog.sync.enrichment_of(Product.PHONE, "call-missed"))
    assert known is not None
    assert (known.fields.caller_number, known.fields.callee_number, known.fields.agent_id) == (
        "+442079460018",
        "+15550100200",
        "u-1",
    )
    rid = await add_recording(
        catalog, Product.MEETING, "short==", "s-short", started_ms=NOW_MS, ended_ms=end_ms - 300_000
    )
    first = await reconcile_once(catalog, POLICY, end_ms + 60_000)
    assert (first.examined, first.settled) == (2, 1)  # the ended recording's verdict is final
    routine = await reconcile_once(catalog, POLICY, end_ms + 120_000)
    assert routine.examined == 1
    assert (await reconcile_once(catalog, POLICY, end_ms + 180_000, recheck=True)).examined == 2
    [finding] = await catalog._call(lambda: catalog.sync.findings_of_recording(rid))
    assert (finding.kind, finding.cause) == (FindingKind.INCOMPLETE, FindingCause.ENDED_EARLY)
    assert finding.detail == "recording ended 300.0 s before the expected end"
    findings = {f.instance_id: f for f in await catalog._call(lambda: catalog.sync.findings())}
    assert findings["call-missed"].cause is FindingCause.NEVER_STARTED


async def test_pull_records_what_the_policy_expects_once_and_reconcile_pages_by_start_and_id(
    catalog: AsyncCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = MemoryListing()
    listing.started = [
        Announcement("pull", Product.PHONE, f"call-{n}", f"call-{n}", "acct-1", None, None, NOW_MS)
        for n in range(5)
    ] + [
        Announcement("pull", Product.PHONE, "other", "other", "acct-2", None, None, NOW_MS),
        Announcement("pull", Product.PHONE, "later", "later", "acct-1", None, None, NOW_MS + 9),
    ]
    first = await pull(
        catalog, listing, POLICY, since_ms=NOW_MS, until_ms=NOW_MS + 5, now_ms=NOW_MS + 10
    )
    assert (first.listed, first.matching, first.added) == (6, 5, 5)
    again = await pull(
        catalog, listing, POLICY, since_ms=NOW_MS, until_ms=NOW_MS + 10, now_ms=NOW_MS + 10
    )
    assert (again.listed, again.matching, again.added) == (7, 6, 1)
    rows = await catalog._call(lambda: catalog.sync.expectations_between(0, 2**62, limit=100))
    assert {x.source for x in rows} == {ExpectationSource.PULL}
    # A pull never asks Zoom to start anything, even with auto-start on.
    assert {x.start_state for x in rows} == {StartState.OFF}
    # Five expectations share one start: pages of two must still visit every one.
    monkeypatch.setattr(reconcile, "BATCH", 2)
    summary = await reconcile_once(catalog, POLICY, NOW_MS + 120_000)
    assert summary.examined == 6
    assert summary.findings == {("missing", "never_started"): 6}


async def test_an_expectation_that_cannot_be_stored_is_answered_503_so_zoom_retries(
    catalog: AsyncCatalog,
) -> None:
    @dataclass
    class DownSink:
        asked: int = 0

        async def record(self, event: WebhookEvent, raw_body: bytes, received_s: float) -> bool:
            self.asked += 1
            raise CatalogError("catalog unavailable")

    sink = DownSink()
    metrics = RecorderMetrics()
    handoff, _ = trio.open_memory_channel[AcceptedWebhook](1)
    app = IngressApp(
        IngressSettings(secret_token=Secret(SECRET_TOKEN)),
        handoff=handoff,
        dedup=CatalogWebhookDedup(catalog),
        metrics=metrics,
        liveness=Liveness(stale_s=30),
        readiness=Readiness(timeout_s=0.5, metrics=metrics),
        clock=lambda: float(NOW_S),
        announcements=sink,
    )
    raw = meeting_started()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_http, app, "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                response = await client.post(
                    "/webhook", content=raw, headers=signed_headers(SECRET_TOKEN, NOW_S, raw)
                )
            nursery.cancel_scope.cancel()
    assert response.status_code == 503
    assert response.json() == {"error": "catalog_unavailable"}
    assert sink.asked == 1
