"""The simulator's Zoom Phone product over real sockets: the handshake is keyed and signed by
``call_id``, webhooks are ``phone.rtms_*`` (or the ``phone.call_rtms_*`` aliases) naming the call,
events carry ``event_code`` only, and lifecycle webhooks go out signed."""

from __future__ import annotations

import json
from collections.abc import Mapping

import trio

from recorder.rtms.signature import handshake_signature
from recorder.rtms.webhook import parse_webhook, verify_webhook
from recorder.simulator import Product, Scenario, SimulatorConfig, open_simulator
from recorder.simulator.scenario import Action, AudioLayout, Step

from .rawclient import DROP, recv, send, signaling


async def test_the_phone_handshake_is_keyed_and_signed_by_call_id() -> None:
    with trio.fail_after(20):
        async with open_simulator() as sim:
            call = await sim.start(Scenario(product=Product.PHONE, duration_s=30))
            target = call.target
            assert target.id_key == "call_id"
            assert target.signature == handshake_signature(
                target.client_id, target.client_secret, target.instance_id, target.rtms_stream_id
            )
            meeting_key = {"call_id": DROP, "meeting_uuid": target.instance_id}
            async with signaling(target, **meeting_key) as (_ws, resp):
                assert resp["status_code"] != 0
            wrong = handshake_signature(
                target.client_id, target.client_secret, "other-call", target.rtms_stream_id
            )
            async with signaling(target, signature=wrong) as (_ws, resp):
                assert resp["status_code"] != 0
            async with signaling(target) as (ws, resp):
                assert resp["status_code"] == 0
                assert set(resp["media_server"]["server_urls"]) <= {"audio", "transcript", "all"}
                # Subscribe to hold (12) and resume (13), then script a hold.
                await send(
                    ws,
                    {
                        "msg_type": 5,
                        "events": [{"event_type": 12, "subscribe": True}],
                    },
                )
                await call.wait_for(lambda _s: 12 in call.subscribed)
                await call.run_step(
                    Step(0.0, Action.ZCC_EVENT, {"event_type": 12, "channel_id": "2"})
                )
                codes = []
                while True:
                    msg = await recv(ws)
                    if msg.get("msg_type") == 6:
                        codes.append(msg["event"].get("event_code"))
                        if codes[-1] == 12:
                            break
                        assert "event_type" not in msg["event"]
            assert codes[0] == 1  # even the automatic FIRST_PACKET_TIMESTAMP is an event_code
            event = msg["event"]
            assert event["event_code"] == 12
            assert "event_type" not in event
            info = event["participant_info"]
            assert (info["channel_id"], info["participant_mode"]) == ("2", "callee")
            assert "queue_id" not in info
            await call.stop(1)


async def test_phone_webhooks_and_lifecycle_events_are_signed_and_name_the_call() -> None:
    received: list[tuple[Mapping[str, str], bytes]] = []

    def keep(headers: Mapping[str, str], body: bytes) -> int:
        received.append((dict(headers), body))
        return 200

    config = SimulatorConfig(
        webhook_handler=keep, secret_token="tok", phone_call_event_names=True, speed=10.0
    )
    steps = (Step(0.5, Action.LIFECYCLE_WEBHOOK, {"reason": "no media server"}),)
    with trio.fail_after(20):
        async with open_simulator(config) as sim:
            call = await sim.start(
                Scenario(
                    product=Product.PHONE, duration_s=1.0, layout=AudioLayout.CHANNELS, steps=steps
                )
            )
            await call.finished.wait()
    names = [json.loads(body)["event"] for _, body in received]
    assert names[0] == "phone.call_rtms_started"
    assert "phone.call_rtms_stopped" in names
    assert "rtms.start_failed" in names
    for headers, body in received:
        verify_webhook("tok", headers, body, now_s=float(headers["x-zm-request-timestamp"]))
        event = parse_webhook(body)
        assert event.instance_id == call.scenario.instance_id
        assert event.rtms_stream_id == call.scenario.rtms_stream_id
    failed = next(parse_webhook(body) for _, body in received if b"start_failed" in body)
    assert failed.failure_reason == "no media server"
    assert failed.instance_id_key == "call_id"
