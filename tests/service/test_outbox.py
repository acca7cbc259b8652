"""The webhook outbox (issue 9 defect 1): a 200 means the stream row is in the catalog.

Real HTTP (hypercorn on port 0, httpx as Zoom) and a real SQLite catalog. A catalog that cannot
commit is made by holding SQLite's write lock from another connection, with a short busy
timeout on the recorder's side.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import StreamState
from recorder.catalog.sqlite import SqliteCatalog
from recorder.config import Secret
from recorder.rtms.webhook import signed_headers
from recorder.service.health import Liveness, Readiness
from recorder.service.ingress import (
    AcceptedWebhook,
    IngressApp,
    IngressSettings,
    MemoryWebhookDedup,
    serve_http,
)
from recorder.service.metrics import RecorderMetrics
from recorder.service.outbox import CatalogOutbox

from .test_ingress import NOW_S, SECRET_TOKEN, STARTED_BODY, FakeClock

STREAM_ID = "609340fb2a7946909659956c8aa9250c"
INTERRUPTED_BODY = (
    b'{"event":"meeting.rtms_interrupted","event_ts":1626230695000,"payload":{"meeting_uuid":'
    b'"4444AAAiAAAAAiAiAiiAii==","rtms_stream_id":"609340fb2a7946909659956c8aa9250c"}}'
)


@dataclass
class Outboxed:
    client: httpx.AsyncClient
    catalog: AsyncCatalog
    received: trio.MemoryReceiveChannel[AcceptedWebhook]
    path: Path
    metrics: RecorderMetrics

    async def post(self, body: bytes) -> httpx.Response:
        return await self.client.post(
            "/webhook", content=body, headers=signed_headers(SECRET_TOKEN, NOW_S, body)
        )

    def woken(self) -> list[AcceptedWebhook]:
        out = []
        while True:
            try:
                out.append(self.received.receive_nowait())
            except trio.WouldBlock:
                return out


@asynccontextmanager
async def outboxed_ingress(tmp_path: Path, *, queue_size: int = 8) -> AsyncIterator[Outboxed]:
    path = tmp_path / "catalog.sqlite3"
    sync = await trio.to_thread.run_sync(
        lambda: SqliteCatalog(path, now_ms=NOW_S * 1000, busy_timeout_ms=200)
    )
    catalog = AsyncCatalog(sync)
    send, receive = trio.open_memory_channel[AcceptedWebhook](queue_size)
    metrics = RecorderMetrics()
    app = IngressApp(
        IngressSettings(secret_token=Secret(SECRET_TOKEN)),
        handoff=send,
        dedup=MemoryWebhookDedup(),
        metrics=metrics,
        liveness=Liveness(stale_s=30, clock=FakeClock(1.0)),
        readiness=Readiness(timeout_s=0.5, metrics=metrics),
        clock=FakeClock(NOW_S + 2),
        outbox=CatalogOutbox(catalog, dedup_ttl_ms=4 * 3600 * 1000),
    )
    with trio.fail_after(20):
        async with catalog, trio.open_nursery() as nursery:
            port = await nursery.start(serve_http, app, "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                yield Outboxed(client, catalog, receive, path, metrics)
            nursery.cancel_scope.cancel()


async def test_the_200_comes_after_the_stream_row_is_committed(tmp_path: Path) -> None:
    async with outboxed_ingress(tmp_path) as h:
        assert (await h.post(STARTED_BODY)).status_code == 200
        row = await h.catalog.get_stream(STREAM_ID)
        assert row is not None
        assert row.state is StreamState.STARTED
        assert row.server_urls == ("wss://127.0.0.1:443",)
        assert (row.last_event_ts_ms, row.server_urls_ts_ms) == (1626230691572, 1626230691572)
        assert row.lease_owner is None
        # ...so the rejoin loop of any process finds it, whatever happens to the wake-up.
        assert [r.rtms_stream_id for r in await h.catalog.expired_streams_to_rejoin()] == [
            STREAM_ID
        ]
        assert len(h.woken()) == 1
        # A retry is a duplicate: acknowledged, no second wake-up, nothing rewritten.
        assert (await h.post(STARTED_BODY)).status_code == 200
        assert h.woken() == []


async def test_a_full_wake_up_queue_still_answers_200_the_row_is_the_hand_off(
    tmp_path: Path,
) -> None:
    async with outboxed_ingress(tmp_path, queue_size=0) as h:
        assert (await h.post(STARTED_BODY)).status_code == 200
        assert h.woken() == []
        assert await h.catalog.get_stream(STREAM_ID) is not None


async def test_interrupted_keeps_the_urls_and_their_own_timestamp(tmp_path: Path) -> None:
    async with outboxed_ingress(tmp_path) as h:
        assert (await h.post(STARTED_BODY)).status_code == 200
        assert (await h.post(INTERRUPTED_BODY)).status_code == 200
        row = await h.catalog.get_stream(STREAM_ID)
        assert row is not None
        assert row.state is StreamState.INTERRUPTED
        assert row.last_event_ts_ms == 1626230695000
        # Not a failover: the URLs' own timestamp is still the rtms_started's.
        assert row.server_urls_ts_ms == 1626230691572


async def test_a_catalog_that_cannot_commit_answers_503_and_leaves_no_key(tmp_path: Path) -> None:
    async with outboxed_ingress(tmp_path) as h:
        blocker = sqlite3.connect(h.path, isolation_level=None, timeout=5)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            assert (await h.post(STARTED_BODY)).status_code == 503
            rendered = h.metrics.render().decode()
            assert 'rtmsrec_webhook_rejections_total{reason="catalog_unavailable"} 1.0' in rendered
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert h.woken() == []
        assert await h.catalog.get_stream(STREAM_ID) is None
        # Zoom's retry is not taken for a duplicate: the key was never committed.
        assert (await h.post(STARTED_BODY)).status_code == 200
        assert len(h.woken()) == 1
        assert await h.catalog.get_stream(STREAM_ID) is not None
