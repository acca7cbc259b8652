"""The webhook ingress over real HTTP: hypercorn on 127.0.0.1 port 0, httpx as Zoom."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
import trio
import trio.testing

from recorder.config import Secret
from recorder.errors import StoreUnavailable
from recorder.rtms.webhook import WebhookKind, sign_webhook, signed_headers
from recorder.service.health import Liveness, Readiness, spool_below_limit
from recorder.service.ingress import (
    AcceptedWebhook,
    IngressApp,
    IngressSettings,
    MemoryWebhookDedup,
    serve_http,
)
from recorder.service.metrics import RecorderMetrics

SECRET_TOKEN = "test_secret_token"
NOW_S = 1_626_230_691
STARTED_BODY = (
    b'{"event":"meeting.rtms_started","event_ts":1626230691572,"payload":{"meeting_uuid":'
    b'"4444AAAiAAAAAiAiAiiAii==","operator_id":"30R7kT7bTIKSNUFEuH_Qlg","rtms_stream_id":'
    b'"609340fb2a7946909659956c8aa9250c","server_urls":"wss://127.0.0.1:443"}}'
)
MAX_BODY = 4096


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    client: httpx.AsyncClient
    received: trio.MemoryReceiveChannel[AcceptedWebhook]
    dedup: MemoryWebhookDedup
    metrics: RecorderMetrics
    readiness: Readiness
    monotonic: FakeClock

    async def post(
        self, body: bytes, *, ts: int = NOW_S, secret: str = SECRET_TOKEN, **extra: str
    ) -> httpx.Response:
        headers = signed_headers(secret, ts, body) | extra
        return await self.client.post("/webhook", content=body, headers=headers)

    def drain(self) -> list[AcceptedWebhook]:
        events = []
        while True:
            try:
                events.append(self.received.receive_nowait())
            except trio.WouldBlock:
                return events

    def metric(self, name: str, **labels: str) -> float:
        text = self.metrics.render().decode()
        label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        series = f"{name}{{{label_text}}}" if labels else name
        match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
        assert match, f"{series} not in /metrics"
        return float(match.group(1))

    def assert_no_side_effect(self) -> None:
        assert self.drain() == []
        assert len(self.dedup) == 0


@asynccontextmanager
async def running_ingress(*, queue_size: int = 8) -> AsyncIterator[Harness]:
    send, receive = trio.open_memory_channel[AcceptedWebhook](queue_size)
    metrics = RecorderMetrics()
    dedup = MemoryWebhookDedup()
    monotonic = FakeClock(100.0)
    readiness = Readiness(timeout_s=0.5, metrics=metrics)
    app = IngressApp(
        IngressSettings(secret_token=Secret(SECRET_TOKEN), max_body_bytes=MAX_BODY),
        handoff=send,
        dedup=dedup,
        metrics=metrics,
        liveness=Liveness(stale_s=30, clock=monotonic),
        readiness=readiness,
        clock=FakeClock(NOW_S + 2),
    )
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_http, app, "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                yield Harness(client, receive, dedup, metrics, readiness, monotonic)
            nursery.cancel_scope.cancel()


async def test_valid_signed_webhook_is_accepted_and_handed_on_once() -> None:
    async with running_ingress() as h:
        response = await h.post(STARTED_BODY)
        assert response.status_code == 200
        [accepted] = h.drain()
        assert accepted.event.kind is WebhookKind.STARTED
        assert accepted.event.rtms_stream_id == "609340fb2a7946909659956c8aa9250c"
        assert accepted.raw_body == STARTED_BODY
        assert accepted.received_s == NOW_S + 2
        assert h.metric("rtmsrec_webhooks_received_total", kind="started") == 1


async def test_five_deliveries_hand_on_one_event() -> None:
    async with running_ingress() as h:
        for _ in range(5):
            assert (await h.post(STARTED_BODY)).status_code == 200
        assert len(h.drain()) == 1
        assert h.metric("rtmsrec_webhook_duplicates_total") == 4


async def test_concurrent_deliveries_hand_on_one_event() -> None:
    async with running_ingress() as h:
        statuses: list[int] = []

        async def deliver() -> None:
            statuses.append((await h.post(STARTED_BODY)).status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(deliver)
        assert statuses == [200] * 5
        assert len(h.drain()) == 1


async def test_failover_started_with_a_new_event_ts_is_handed_on() -> None:
    async with running_ingress() as h:
        await h.post(STARTED_BODY)
        await h.post(STARTED_BODY.replace(b"1626230691572", b"1626230699999"))
        assert [a.event.event_ts for a in h.drain()] == [1626230691572, 1626230699999]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"x-zm-signature": "v0=" + "0" * 64}, "bad_signature"),
        ({"x-zm-signature": sign_webhook("wrong-secret", NOW_S, STARTED_BODY)}, "bad_signature"),
        ({"x-zm-request-timestamp": "yesterday"}, "malformed_timestamp"),
    ],
)
async def test_forged_signature_is_401_with_no_side_effect(
    headers: dict[str, str], reason: str
) -> None:
    async with running_ingress() as h:
        response = await h.post(STARTED_BODY, **headers)
        assert response.status_code == 401
        assert response.json() == {"error": reason}
        h.assert_no_side_effect()
        assert h.metric("rtmsrec_webhook_rejections_total", reason=reason) == 1


async def test_unsigned_webhook_is_401() -> None:
    async with running_ingress() as h:
        response = await h.client.post("/webhook", content=STARTED_BODY)
        assert response.status_code == 401
        assert response.json() == {"error": "missing_signature"}
        h.assert_no_side_effect()


async def test_stale_timestamp_is_401_with_no_side_effect() -> None:
    async with running_ingress() as h:
        # Correctly signed, but 301 s older than the ingress clock (NOW_S + 2).
        response = await h.post(STARTED_BODY, ts=NOW_S + 2 - 301)
        assert response.status_code == 401
        assert response.json() == {"error": "stale_timestamp"}
        h.assert_no_side_effect()
        assert h.metric("rtmsrec_webhook_rejections_total", reason="stale_timestamp") == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not_json"),
        (b'{"event":"meeting.rtms_started","event_ts":1,"payload":{"meeting_uuid":"m"}}', None),
        (b"[]", "not_an_object"),
    ],
)
async def test_malformed_signed_body_is_400_with_no_side_effect(
    body: bytes, reason: str | None
) -> None:
    async with running_ingress() as h:
        response = await h.post(body)
        assert response.status_code == 400
        assert response.json()["error"] == (reason or "missing_field")
        h.assert_no_side_effect()


async def test_oversized_body_is_413_with_no_side_effect() -> None:
    big = b'{"event":"x","pad":"' + b"a" * MAX_BODY + b'"}'
    async with running_ingress() as h:
        response = await h.post(big)
        assert response.status_code == 413

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"a" * 1024

        streamed = await h.client.post(
            "/webhook", content=chunked(), headers=signed_headers(SECRET_TOKEN, NOW_S, b"")
        )
        assert streamed.status_code == 413
        h.assert_no_side_effect()
        assert h.metric("rtmsrec_webhook_rejections_total", reason="body_too_large") == 2


URL_VALIDATION = (
    b'{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},'
    b'"event_ts":1654503849680}'
)
URL_VALIDATION_ANSWER = {
    "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
    "encryptedToken": "4efea922935c335d972476de138d2208a0d46ab28c79ee592d497a1b216419b8",
}


async def test_url_validation_answered_with_the_vector_signed_and_unsigned() -> None:
    async with running_ingress() as h:
        signed = await h.post(URL_VALIDATION)
        assert signed.status_code == 200
        assert signed.json() == URL_VALIDATION_ANSWER
        unsigned = await h.client.post("/webhook", content=URL_VALIDATION)
        assert unsigned.status_code == 200
        assert unsigned.json() == URL_VALIDATION_ANSWER
        h.assert_no_side_effect()


async def test_url_validation_with_a_bad_signature_is_401() -> None:
    async with running_ingress() as h:
        response = await h.post(URL_VALIDATION, secret="not-the-secret")
        assert response.status_code == 401
        assert "encryptedToken" not in response.text


async def test_url_validation_never_signs_a_webhook_message_for_a_stranger() -> None:
    # Without the ':' restriction this answer would be a valid x-zm-signature for a forged body.
    forged_body = b'{"event":"meeting.rtms_started"}'
    message = f"v0:{NOW_S}:{forged_body.decode()}"
    body = json.dumps(
        {"event": "endpoint.url_validation", "payload": {"plainToken": message}, "event_ts": 1}
    ).encode()
    async with running_ingress() as h:
        response = await h.client.post("/webhook", content=body)
        assert response.status_code == 400
        assert response.json() == {"error": "bad_plain_token"}


async def test_unknown_event_is_acknowledged_not_handed_on() -> None:
    async with running_ingress() as h:
        body = b'{"event":"meeting.participant_joined","event_ts":5,"payload":{}}'
        assert (await h.post(body)).status_code == 200
        h.assert_no_side_effect()
        assert h.metric("rtmsrec_webhooks_received_total", kind="other") == 1


async def test_full_queue_answers_503_and_forgets_so_the_retry_is_accepted() -> None:
    async with running_ingress(queue_size=1) as h:
        assert (await h.post(STARTED_BODY)).status_code == 200
        second = STARTED_BODY.replace(b"1626230691572", b"1626230699999")
        assert (await h.post(second)).status_code == 503
        assert h.metric("rtmsrec_webhook_rejections_total", reason="overloaded") == 1
        assert len(h.drain()) == 1
        # Zoom's retry of the refused delivery is not a duplicate.
        assert (await h.post(second)).status_code == 200
        assert [a.event.event_ts for a in h.drain()] == [1626230699999]


async def test_readyz_names_the_failing_check() -> None:
    async with running_ingress() as h:
        assert (await h.client.get("/readyz")).status_code == 200
        spool = {"bytes": 10}

        async def catalog_ok() -> None:
            pass

        async def store_down() -> None:
            raise StoreUnavailable("bucket unreachable")

        async def keys_hang() -> None:
            await trio.sleep_forever()

        h.readiness.register("catalog", catalog_ok)
        h.readiness.register("spool", spool_below_limit(lambda: spool["bytes"], 100))
        ready = await h.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "ready": True,
            "checks": {"catalog": {"ok": True}, "spool": {"ok": True}},
        }

        h.readiness.register("store", store_down)
        h.readiness.register("keys", keys_hang)
        spool["bytes"] = 1000
        response = await h.client.get("/readyz")
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["catalog"] == {"ok": True}
        assert checks["store"] == {"ok": False, "error": "StoreUnavailable: bucket unreachable"}
        assert checks["keys"]["error"].startswith("timed out")
        assert "above the limit" in checks["spool"]["error"]
        assert h.metric("rtmsrec_ready", check="store") == 0
        assert h.metric("rtmsrec_ready", check="catalog") == 1


async def test_healthz_follows_the_service_loop() -> None:
    async with running_ingress() as h:
        assert (await h.client.get("/healthz")).status_code == 200
        h.monotonic.now += 31
        response = await h.client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["alive"] is False


async def test_metrics_show_rejection_counters_moving() -> None:
    async with running_ingress() as h:
        before = (await h.client.get("/metrics")).text
        assert 'rtmsrec_webhook_rejections_total{reason="bad_signature"} 0.0' in before
        await h.post(STARTED_BODY, **{"x-zm-signature": "v0=00"})
        await h.post(STARTED_BODY, **{"x-zm-signature": "v0=00"})
        response = await h.client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        assert 'rtmsrec_webhook_rejections_total{reason="bad_signature"} 2.0' in response.text
        assert "609340fb2a7946909659956c8aa9250c" not in response.text


async def test_wrong_paths_and_methods() -> None:
    async with running_ingress() as h:
        assert (await h.client.get("/webhook")).status_code == 405
        assert (await h.client.post("/metrics")).status_code == 405
        assert (await h.client.get("/nope")).status_code == 404
        head = await h.client.head("/healthz")
        assert (head.status_code, head.content) == (200, b"")


async def test_dedup_memory_expires_after_retention_and_is_bounded() -> None:
    dedup = MemoryWebhookDedup(retention_s=100, max_keys=2)
    assert await dedup.first_seen("a", 0)
    assert not await dedup.first_seen("a", 99)
    assert await dedup.first_seen("a", 100)
    assert await dedup.first_seen("b", 100)
    assert await dedup.first_seen("c", 100)
    assert len(dedup) == 2
    await dedup.forget("c")
    assert await dedup.first_seen("c", 101)


async def test_default_dedup_outlives_zoom_retries_by_two_hours() -> None:
    dedup = MemoryWebhookDedup()
    assert await dedup.first_seen("k", 0)
    assert not await dedup.first_seen("k", (5 + 20 + 60) * 60 + 2 * 3600 - 1)


async def test_serve_http_stops_on_shutdown_trigger() -> None:
    send, _receive = trio.open_memory_channel[AcceptedWebhook](1)
    metrics = RecorderMetrics()
    app = IngressApp(
        IngressSettings(secret_token=Secret(SECRET_TOKEN)),
        handoff=send,
        dedup=MemoryWebhookDedup(),
        metrics=metrics,
        liveness=Liveness(30),
        readiness=Readiness(timeout_s=1),
    )
    stop = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                lambda task_status: serve_http(
                    app, "127.0.0.1", 0, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            stop.set()
        # The nursery exits only because the server returned on its own.
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/healthz")


def test_settings_from_config_need_the_secret_token() -> None:
    from recorder.config import load_config
    from recorder.errors import ConfigError

    with pytest.raises(ConfigError, match="ZOOM_SECRET_TOKEN"):
        IngressSettings.from_config(load_config(None, {"HOME": "/h"}))
    settings = IngressSettings.from_config(
        load_config(None, {"HOME": "/h", "ZOOM_SECRET_TOKEN": "tok"})
    )
    assert settings.secret_token == Secret("tok")
    assert (settings.webhook_path, settings.max_body_bytes, settings.replay_window_s) == (
        "/webhook",
        65536,
        300,
    )


async def test_client_disconnect_mid_body_is_neither_answered_nor_counted() -> None:
    async with running_ingress() as h:
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream("127.0.0.1", h.client.base_url.port or 0)
            await stream.send_all(
                b'POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{"event"'
            )
            await stream.aclose()
            await trio.testing.wait_all_tasks_blocked()
            # The server must survive it and keep serving.
            assert (await h.client.get("/healthz")).status_code == 200
        h.assert_no_side_effect()
        assert h.metric("rtmsrec_webhook_rejections_total", reason="missing_signature") == 0
