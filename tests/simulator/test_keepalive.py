"""Keep-alive enforcement on a MockClock: misses break the socket, grace ends the stream."""

from __future__ import annotations

import json
from collections.abc import Mapping

import trio
import trio.testing

from recorder.rtms.webhook import verify_webhook
from recorder.simulator import Product, Scenario, SimulatorConfig, open_simulator

from .rawclient import Received, media, read_all, recv, send, signaling

SECRET = "ka_secret_token"


class Hooks:
    """A webhook sink that keeps every delivery (a plain callable, no HTTP)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        self.raw: list[tuple[dict[str, str], bytes]] = []

    def __call__(self, headers: Mapping[str, str], body: bytes) -> int:
        self.raw.append((dict(headers), body))
        self.bodies.append(json.loads(body))
        return 200

    def events(self) -> list[object]:
        return [b["event"] for b in self.bodies]


async def test_signaling_misses_interrupt_then_grace_stops_with_keepalive_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hooks = Hooks()
    config = SimulatorConfig(webhook_handler=hooks, secret_token=SECRET)
    with trio.fail_after(300):  # virtual seconds
        async with open_simulator(config) as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=1000))
            start = trio.current_time()
            async with signaling(eng.target) as (sig, resp):
                assert resp["status_code"] == 0
                got = Received()
                await read_all(sig, got, answer_keepalive=False)
            closed_at = trio.current_time() - start
            await eng.finished.wait()
            ended_at = trio.current_time() - start
    assert got.keepalives == 3
    assert eng.stats.keepalives_sent == 3
    assert eng.stats.keepalives_missed == 3
    assert 39 <= closed_at <= 41
    assert 99 <= ended_at <= 101
    assert hooks.events() == [
        "meeting.rtms_started",
        "meeting.rtms_interrupted",
        "meeting.rtms_stopped",
    ]
    stopped = hooks.bodies[-1]["payload"]
    assert isinstance(stopped, dict)
    assert stopped["stop_reason"] == 24
    for headers, body in hooks.raw:
        verify_webhook(SECRET, headers, body, now_s=float(headers["x-zm-request-timestamp"]))


async def test_answered_keepalives_are_counted_with_latency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(300):
        async with open_simulator() as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=65))
            async with signaling(eng.target) as (sig, _resp):
                got = Received()
                await read_all(sig, got)
            await eng.finished.wait()
    assert got.keepalives == 6
    assert eng.stats.keepalives_answered == 6
    assert eng.stats.keepalives_missed == 0
    assert len(eng.stats.keepalive_latencies_s) == 6
    assert eng.stats.stop_reason == 6


async def test_media_misses_send_event_7_and_state_2_then_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(400):
        async with open_simulator() as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=1000))
            target = eng.target
            async with signaling(target) as (sig, resp):
                url = resp["media_server"]["server_urls"]["transcript"]
                sig_got = Received()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_all, sig, sig_got)
                    async with media(target, url, 8) as (ws, ok):
                        assert ok["status_code"] == 0
                        await send(sig, {"msg_type": 7, "rtms_stream_id": target.rtms_stream_id})
                        media_got = Received()
                        await read_all(ws, media_got, answer_keepalive=False)
                    await eng.finished.wait()
    assert media_got.keepalives == 3
    assert media_got.close_code == 1011
    kinds = [
        (m["msg_type"], m.get("event", {}).get("event_type"), m.get("state"), m.get("reason"))
        for m in sig_got.other
    ]
    assert (6, 7, None, None) in kinds
    assert (8, None, 2, 24) in kinds
    assert (8, None, 4, 24) in kinds  # the media grace (65 s) ran out
    assert eng.stats.stop_reason == 24


async def test_keepalive_carries_sequence_and_timestamp_by_default() -> None:
    with trio.fail_after(20):
        async with open_simulator(
            SimulatorConfig(
                profile=__import__(
                    "recorder.simulator", fromlist=["DOC_2026"]
                ).DOC_2026.with_timers(keepalive_interval_s=0.05)
            )
        ) as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=30))
            async with signaling(eng.target) as (sig, _resp):
                while True:
                    msg = await recv(sig)
                    if msg["msg_type"] == 12:
                        break
            assert isinstance(msg["sequence"], int)
            assert isinstance(msg["timestamp"], int)
            await eng.stop(1)


async def test_docs_form_keepalive_is_matched_by_timestamp(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from dataclasses import replace

    from recorder.simulator import DOC_2026

    profile = replace(DOC_2026, keepalive_sequence=False)
    with trio.fail_after(300):
        async with open_simulator(SimulatorConfig(profile=profile)) as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=35))
            async with signaling(eng.target) as (sig, _resp):
                got = Received()
                await read_all(sig, got)
            await eng.finished.wait()
    requests = got.keepalives
    assert requests == 3
    assert eng.stats.keepalives_answered == 3
    assert eng.stats.keepalives_missed == 0


def test_an_answer_matches_on_whichever_field_it_echoes() -> None:
    from recorder.simulator.connections import KeepAlive

    both = KeepAlive()
    request = both.next_request(now=1.0, timestamp_ms=500, with_sequence=True, with_timestamp=True)
    assert both.answer({"msg_type": 13, "timestamp": request["timestamp"]}, now=1.5) == 0.5
    request = both.next_request(now=2.0, timestamp_ms=500, with_sequence=True, with_timestamp=True)
    assert request["timestamp"] == 501  # unique even when the clock did not move
    assert both.answer({"msg_type": 13, "sequence": 999}, now=2.1) is None
    assert both.answer({"msg_type": 13, "sequence": request["sequence"]}, now=2.25) == 0.25
    mock = KeepAlive()
    request = mock.next_request(now=0.0, timestamp_ms=1, with_sequence=False, with_timestamp=False)
    assert request == {"msg_type": 12, "protocol_version": 1, "status_code": 0}
    assert mock.answer({"msg_type": 13}, now=0.5) == 0.5
    assert mock.count_misses() == 0
    mock.next_request(now=1.0, timestamp_ms=1, with_sequence=False, with_timestamp=False)
    assert mock.count_misses() == 1
    assert mock.consecutive_misses == 1


async def test_zoom_mock_terminates_after_missed_keepalives_without_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from recorder.simulator import ZOOM_MOCK

    hooks = Hooks()
    config = SimulatorConfig(profile=ZOOM_MOCK, webhook_handler=hooks, secret_token=SECRET)
    with trio.fail_after(300):
        async with open_simulator(config) as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=1000))
            start = trio.current_time()
            async with signaling(eng.target) as (sig, _resp):
                got = Received()
                await read_all(sig, got, answer_keepalive=False)
            await eng.finished.wait()
            ended_after_s = trio.current_time() - start
    assert got.keepalives == 3
    assert round(ended_after_s) == 20  # 5 s interval, 3 misses, no grace
    assert hooks.events() == ["meeting.rtms_started", "meeting.rtms_stopped"]
    assert eng.stats.stop_reason == 24
