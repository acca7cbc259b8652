"""Webhooks: signed, compact, retried with identical bytes, duplicated on demand, validated,
delivered over real HTTP to a loopback server."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
import trio
import trio.testing

from recorder.errors import WebhookError
from recorder.rtms.webhook import parse_webhook, url_validation_response, verify_webhook
from recorder.simulator import Action, Product, Scenario, SimulatorConfig, Step, open_simulator

from .httpserver import http_server

SECRET = "hook_secret_token"


def verified(headers: Mapping[str, str], body: bytes) -> None:
    verify_webhook(SECRET, headers, body, now_s=float(headers["x-zm-request-timestamp"]))


async def test_failed_delivery_is_retried_with_identical_bytes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[float, dict[str, str], bytes]] = []

    def flaky(headers: Mapping[str, str], body: bytes) -> int:
        seen.append((trio.current_time(), dict(headers), body))
        return 500 if len(seen) < 3 else 200

    config = SimulatorConfig(
        webhook_handler=flaky, secret_token=SECRET, webhook_retry_delays_s=(5.0, 20.0, 60.0)
    )
    with trio.fail_after(200):
        async with open_simulator(config) as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=100))
            await eng.wait_for(lambda s: len(s.webhooks) == 3)
            await eng.stop(1)
    bodies = {body for _, _, body in seen[:3]}
    assert len(bodies) == 1
    assert [w.attempt for w in eng.stats.webhooks[:3]] == [1, 2, 3]
    assert [w.http_status for w in eng.stats.webhooks[:3]] == [500, 500, 200]
    assert round(seen[1][0] - seen[0][0]) == 5
    assert round(seen[2][0] - seen[1][0]) == 20
    for _, headers, body in seen:
        verified(headers, body)
        assert headers["content-type"] == "application/json"
    body = seen[0][2]
    assert body == json.dumps(json.loads(body), separators=(",", ":")).encode()  # compact
    event = parse_webhook(body)
    assert event.event == "meeting.rtms_started"
    assert event.server_urls == (eng.target.server_urls,)


async def test_no_answer_within_timeout_counts_as_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[float] = []

    async def slow(headers: Mapping[str, str], body: bytes) -> int:
        calls.append(trio.current_time())
        if len(calls) == 1:
            await trio.sleep(10)  # longer than Zoom's 3 s
        return 200

    config = SimulatorConfig(
        webhook_handler=slow, secret_token=SECRET, webhook_retry_delays_s=(1.0,)
    )
    with trio.fail_after(100):
        async with open_simulator(config) as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=100))
            await eng.wait_for(lambda s: len(s.webhooks) == 2)
            await eng.stop(1)
    assert [w.http_status for w in eng.stats.webhooks[:2]] == [None, 200]
    assert round(calls[1] - calls[0]) == 4  # 3 s timeout + 1 s delay


async def test_duplicate_and_retry_steps_resend_the_same_bytes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[bytes] = []

    def ok(headers: Mapping[str, str], body: bytes) -> int:
        verified(headers, body)
        seen.append(body)
        return 200

    scenario = Scenario(
        product=Product.SESSION,
        duration_s=10,
        steps=(
            Step(1.0, Action.DUPLICATE_WEBHOOK, {"event": "started"}),
            Step(2.0, Action.RETRY_WEBHOOK, {"event": "started"}),
        ),
    )
    config = SimulatorConfig(webhook_handler=ok, secret_token=SECRET)
    with trio.fail_after(100):
        async with open_simulator(config) as sim:
            eng = await sim.start(scenario)
            await eng.finished.wait()
    started = [b for b in seen if b"rtms_started" in b]
    assert len(started) == 3
    assert len(set(started)) == 1
    payload = json.loads(started[0])["payload"]
    assert payload["session_id"] == eng.scenario.instance_id
    assert "session_key" in payload
    assert [w.attempt for w in eng.stats.webhooks if b"rtms_started" in w.body] == [1, 2, 3]


async def test_nested_payload_form(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[bytes] = []
    config = SimulatorConfig(
        webhook_handler=lambda h, b: seen.append(b) or 200, webhook_nested=True
    )
    with trio.fail_after(100):
        async with open_simulator(config) as sim:
            eng = await sim.start(Scenario(product=Product.WEBINAR, duration_s=1))
            await eng.finished.wait()
    body = json.loads(seen[0])
    assert body["payload"]["object"]["webinar_uuid"] == eng.scenario.instance_id
    assert parse_webhook(seen[0]).instance_id == eng.scenario.instance_id


async def test_url_validation_checks_the_answer() -> None:
    def good(headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        token = json.loads(body)["payload"]["plainToken"]
        return 200, json.dumps(url_validation_response(SECRET, token)).encode()

    def bad(headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        token = json.loads(body)["payload"]["plainToken"]
        return 200, json.dumps(url_validation_response("wrong", token)).encode()

    with trio.fail_after(10):
        async with open_simulator(
            SimulatorConfig(webhook_handler=good, secret_token=SECRET)
        ) as sim:
            await sim.validate_endpoint()
        async with open_simulator(SimulatorConfig(webhook_handler=bad, secret_token=SECRET)) as sim:
            with pytest.raises(WebhookError):
                await sim.validate_endpoint()


async def test_http_delivery_to_a_real_server() -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(http_server, received)
            config = SimulatorConfig(
                webhook_url=f"http://127.0.0.1:{port}/zoom", secret_token=SECRET
            )
            async with open_simulator(config) as sim:
                eng = await sim.start(Scenario(product=Product.CONTACT_CENTER, duration_s=0.2))
                await eng.finished.wait()
            nursery.cancel_scope.cancel()
    assert [parse_webhook(b).event for _, b in received] == [
        "contact_center.voice_rtms_started",
        "contact_center.voice_rtms_stopped",
    ]
    for headers, body in received:
        verified(headers, body)
        assert headers["content-type"] == "application/json"
    assert [w.http_status for w in eng.stats.webhooks] == [200, 200]
    stopped = json.loads(received[1][1])["payload"]
    assert stopped["stop_reason"] == 6


async def test_any_webhook_can_be_sent_signed() -> None:
    seen: list[tuple[dict[str, str], bytes]] = []

    def ok(headers: Mapping[str, str], body: bytes) -> int:
        seen.append((dict(headers), body))
        return 204

    with trio.fail_after(10):
        async with open_simulator(SimulatorConfig(webhook_handler=ok, secret_token=SECRET)) as sim:
            status = await sim.send_webhook(
                "rtms.concurrency_near_limit",
                {"concurrency_limit": 2000, "concurrency_number": 1700, "percentage": 85},
                event_ts=1_795_276_197_188,
            )
    assert status == 204
    headers, body = seen[0]
    verified(headers, body)
    assert body == (
        b'{"event":"rtms.concurrency_near_limit","event_ts":1795276197188,"payload":'
        b'{"concurrency_limit":2000,"concurrency_number":1700,"percentage":85}}'
    )
