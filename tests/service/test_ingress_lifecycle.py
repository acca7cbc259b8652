"""The ingress's lifecycle branch over real HTTP: ``rtms.start_failed`` and the concurrency events
are verified, then stored before the answer (200 = stored, 503 = Zoom must retry), never handed on
to the supervisor. The store is the ``LifecycleEvidence`` seam, in memory here; the catalog one is
tested end to end in ``test_phone``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import trio

from recorder.config import Secret
from recorder.errors import CatalogError
from recorder.rtms.webhook import WebhookEvent, WebhookKind, dedup_key, signed_headers
from recorder.service import ingress
from recorder.service.health import Liveness, Readiness
from recorder.service.ingress import (
    AcceptedWebhook,
    IngressApp,
    IngressSettings,
    MemoryWebhookDedup,
    serve_http,
)
from recorder.service.metrics import RecorderMetrics
from tests.service.test_ingress import NOW_S, SECRET_TOKEN, FakeClock


@dataclass
class MemoryLifecycleEvidence:
    """``LifecycleEvidence`` in memory; ``failing`` / ``stalled`` simulate a catalog outage."""

    stored: dict[str, bytes] = field(default_factory=dict)
    failing: bool = False
    stalled: bool = False

    async def record(self, event: WebhookEvent, raw_body: bytes, received_s: float) -> bool:
        if self.stalled:
            await trio.sleep_forever()
        if self.failing:
            raise CatalogError("catalog unavailable")
        key = dedup_key(event)
        if key in self.stored:
            return False
        self.stored[key] = raw_body
        return True


@dataclass
class Harness:
    client: httpx.AsyncClient
    received: trio.MemoryReceiveChannel[AcceptedWebhook]
    evidence: MemoryLifecycleEvidence
    metrics: RecorderMetrics

    async def post(self, body: bytes, *, secret: str = SECRET_TOKEN) -> httpx.Response:
        headers = signed_headers(secret, NOW_S, body)
        return await self.client.post("/webhook", content=body, headers=headers)

    def handed_on(self) -> int:
        count = 0
        while True:
            try:
                self.received.receive_nowait()
            except trio.WouldBlock:
                return count
            count += 1

    def metric(self, line_start: str) -> float:
        for line in self.metrics.render().decode().splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{line_start} not in /metrics")


@asynccontextmanager
async def running_ingress(evidence: MemoryLifecycleEvidence) -> AsyncIterator[Harness]:
    send, receive = trio.open_memory_channel[AcceptedWebhook](8)
    metrics = RecorderMetrics()
    app = IngressApp(
        IngressSettings(secret_token=Secret(SECRET_TOKEN)),
        handoff=send,
        dedup=MemoryWebhookDedup(),
        metrics=metrics,
        liveness=Liveness(stale_s=30, clock=FakeClock(0.0)),
        readiness=Readiness(timeout_s=0.5, metrics=metrics),
        clock=FakeClock(NOW_S),
        lifecycle=evidence,
    )
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_http, app, "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                yield Harness(client, receive, evidence, metrics)
            nursery.cancel_scope.cancel()


def start_failed(**payload: object) -> bytes:
    return json.dumps(
        {"event": "rtms.start_failed", "event_ts": NOW_S * 1000, "payload": payload},
        separators=(",", ":"),
    ).encode()


async def test_a_start_failed_is_stored_whole_once_and_not_handed_on() -> None:
    evidence = MemoryLifecycleEvidence()
    body = start_failed(rtms_stream_id="s1", reason="no capacity", extra={"nested": [1, 2]})
    async with running_ingress(evidence) as h:
        for _ in range(3):
            assert (await h.post(body)).status_code == 200
        near = json.dumps({"event": "rtms.concurrency_near_limit", "payload": {"percentage": 81}})
        assert (await h.post(near.encode())).status_code == 200
        assert h.handed_on() == 0
        assert h.metric('rtmsrec_webhooks_received_total{kind="start_failed"}') == 3
        assert h.metric('rtmsrec_webhooks_received_total{kind="concurrency"}') == 1
        assert h.metric("rtmsrec_webhook_duplicates_total") == 2
    assert list(evidence.stored.values()) == [body, near.encode()]


async def test_a_forged_start_failed_is_refused_and_not_stored() -> None:
    evidence = MemoryLifecycleEvidence()
    async with running_ingress(evidence) as h:
        response = await h.post(start_failed(rtms_stream_id="s1"), secret="forged")
        assert response.status_code == 401
    assert evidence.stored == {}


async def test_a_start_failed_that_cannot_be_stored_is_answered_503_so_zoom_retries() -> None:
    evidence = MemoryLifecycleEvidence(failing=True)
    body = start_failed(call_id="c1")
    async with running_ingress(evidence) as h:
        response = await h.post(body)
        assert response.status_code == 503
        assert response.json() == {"error": "evidence_not_stored"}
        assert h.metric('rtmsrec_webhook_rejections_total{reason="evidence_not_stored"}') == 1
        evidence.failing = False
        assert (await h.post(body)).status_code == 200
    assert list(evidence.stored.values()) == [body]


async def test_a_stalled_store_is_answered_503_within_zoom_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingress, "LIFECYCLE_STORE_TIMEOUT_S", 0.05)
    evidence = MemoryLifecycleEvidence(stalled=True)
    async with running_ingress(evidence) as h:
        with trio.fail_after(2):
            response = await h.post(start_failed(call_id="c1"))
        assert response.status_code == 503


async def test_stream_webhooks_still_go_to_the_supervisor() -> None:
    evidence = MemoryLifecycleEvidence()
    body = json.dumps(
        {
            "event": "phone.call_rtms_started",
            "event_ts": NOW_S * 1000,
            "payload": {"call_id": "c1", "rtms_stream_id": "s1", "server_urls": "wss://x"},
        }
    ).encode()
    async with running_ingress(evidence) as h:
        assert (await h.post(body)).status_code == 200
        accepted = h.received.receive_nowait()
        assert accepted.event.kind is WebhookKind.STARTED
        assert accepted.event.event == "phone.rtms_started"
    assert evidence.stored == {}
