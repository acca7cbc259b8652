"""Each fault step, observed from the client side over real sockets (MockClock: no waiting)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping

import pytest
import trio
import trio.testing
from trio_websocket import HandshakeError, open_websocket_url

from recorder.errors import ConfigError
from recorder.rtms.webhook import verify_webhook
from recorder.simulator import (
    Action,
    Product,
    Scenario,
    SimulatorConfig,
    Step,
    open_simulator,
)
from recorder.simulator.scenario import validate

from .rawclient import Received, join_audio, media, read_all, recv, send, signaling

SECRET = "fault_secret_token"
T0 = 1_795_276_197_000


class Hooks:
    """A webhook sink that keeps every delivery (a plain callable, no HTTP)."""

    def __init__(self) -> None:
        self.raw: list[tuple[dict[str, str], bytes]] = []
        self.arrived = trio.Event()

    def __call__(self, headers: Mapping[str, str], body: bytes) -> int:
        self.raw.append((dict(headers), body))
        self.arrived.set()
        self.arrived = trio.Event()
        return 200

    @property
    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(b) for _, b in self.raw]

    def events(self) -> list[object]:
        return [b["event"] for b in self.bodies]

    def verify_all(self) -> None:
        for headers, body in self.raw:
            verify_webhook(SECRET, headers, body, now_s=float(headers["x-zm-request-timestamp"]))


def config(hooks: Hooks | None = None, **kw: object) -> SimulatorConfig:
    return SimulatorConfig(
        webhook_handler=hooks,
        secret_token=SECRET,
        encode_in_thread=False,
        **kw,  # type: ignore[arg-type]
    )


def timestamps(got: Received) -> list[int]:
    return [m["content"]["timestamp"] for m in got.audio]


def continuous(ts: list[int], frames: int) -> bool:
    return sorted(set(ts)) == [T0 + 20 * k for k in range(frames)]


async def test_drop_media_event_7_then_replay_with_original_timestamps(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=4.0,
        t0_ms=T0,
        steps=(Step(1.0, Action.DROP_MEDIA),),
    )
    with trio.fail_after(60):
        async with open_simulator(config()) as sim:
            eng = await sim.start(scenario)
            target = eng.target
            async with signaling(target) as (sig, resp):
                url = resp["media_server"]["server_urls"]["audio"]
                sig_got = Received()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_all, sig, sig_got)
                    first, second = Received(), Received()
                    async with media(target, url, 1) as (ws, _ok):
                        await send(sig, {"msg_type": 7, "rtms_stream_id": target.rtms_stream_id})
                        await read_all(ws, first)
                    await trio.sleep(0.5)  # the client's backoff, in virtual time
                    async with media(target, url, 1) as (ws, ok):
                        assert ok["status_code"] == 0
                        await send(sig, {"msg_type": 7, "rtms_stream_id": target.rtms_stream_id})
                        await read_all(ws, second)
            await eng.finished.wait()
    assert first.close_code == 1011
    events = [
        (m["msg_type"], m.get("event", {}).get("event_type"), m.get("state"), m.get("reason"))
        for m in sig_got.other
    ]
    assert (6, 7, None, None) in events
    assert (8, None, 2, 14) in events
    assert timestamps(first)[-1] < timestamps(second)[0]
    # The first packets after the reconnect are the buffered ones, with their original times.
    assert eng.stats.track("mixed").replayed >= 20
    assert continuous(timestamps(first) + timestamps(second), 200)
    assert eng.stats.interruptions == 1
    assert eng.stats.reconnects == 1
    assert eng.stats.stop_reason == 6


@pytest.mark.parametrize(("profile", "grace_s"), [("doc-2026", 65), ("legacy-2025", 30)])
async def test_media_not_back_within_grace_ends_with_await_reconnection_timeout(
    profile: str, grace_s: int, autojump_clock: trio.testing.MockClock
) -> None:
    hooks = Hooks()
    scenario = Scenario(
        product=Product.MEETING, duration_s=500, steps=(Step(1.0, Action.DROP_MEDIA),)
    )
    with trio.fail_after(200):
        async with open_simulator(config(hooks, profile=profile)) as sim:
            eng = await sim.start(scenario)
            start = trio.current_time()
            sig_got, _ = await join_audio(eng.target)
            await eng.finished.wait()
            ended_after_s = trio.current_time() - start
    assert eng.stats.stop_reason == 19
    assert round(ended_after_s) == 1 + grace_s
    assert (8, None, 4, 19) in [
        (m["msg_type"], None, m.get("state"), m.get("reason")) for m in sig_got.other
    ]
    assert hooks.events()[-1] == "meeting.rtms_stopped"


async def test_drop_signaling_sends_signed_interrupted_webhook_and_accepts_reconnect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hooks = Hooks()
    scenario = Scenario(
        product=Product.CONTACT_CENTER,
        duration_s=4.0,
        t0_ms=T0,
        steps=(Step(1.0, Action.DROP_SIGNALING),),
    )
    with trio.fail_after(60):
        async with open_simulator(config(hooks)) as sim:
            eng = await sim.start(scenario)
            first_sig, first = await join_audio(eng.target)
            assert first_sig.close_code == 1011
            assert first.close_code == 1011
            await eng.wait_for(lambda s: any("interrupted" in w.event for w in s.webhooks))
            _, second = await join_audio(eng.target)
            await eng.finished.wait()
    assert hooks.events() == [
        "contact_center.voice_rtms_started",
        "contact_center.voice_rtms_interrupted",
        "contact_center.voice_rtms_stopped",
    ]
    interrupted = hooks.bodies[1]["payload"]
    assert interrupted == {
        "engagement_id": eng.scenario.instance_id,
        "rtms_stream_id": eng.scenario.rtms_stream_id,
    }
    hooks.verify_all()
    ts = [m["content"]["timestamp"] for m in first.audio + second.audio]
    assert continuous(ts, 200)
    assert eng.stats.signaling_max_open == 1


async def test_failover_new_urls_new_event_ts_old_endpoint_gone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hooks = Hooks()
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=4.0,
        t0_ms=T0,
        steps=(Step(1.0, Action.FAILOVER),),
    )
    with trio.fail_after(60):
        async with open_simulator(config(hooks)) as sim:
            eng = await sim.start(scenario)
            old_url = eng.target.server_urls
            _, first = await join_audio(eng.target)
            assert first.close_code == 1001
            await eng.wait_for(lambda s: s.failovers == 1 and len(s.webhooks) == 2)
            with pytest.raises(HandshakeError):
                async with open_websocket_url(old_url):
                    pass
            new_target = eng.target
            assert new_target.server_urls != old_url
            _, second = await join_audio(new_target)
            await eng.finished.wait()
    started = [b for b in hooks.bodies if b["event"] == "meeting.rtms_started"]
    assert len(started) == 2
    first_payload, second_payload = (b["payload"] for b in started)
    assert isinstance(first_payload, dict)
    assert isinstance(second_payload, dict)
    assert first_payload["rtms_stream_id"] == second_payload["rtms_stream_id"]
    assert first_payload["server_urls"] == old_url
    assert second_payload["server_urls"] == new_target.server_urls
    first_ts, second_ts = (b["event_ts"] for b in started)
    assert isinstance(first_ts, int)
    assert isinstance(second_ts, int)
    assert second_ts > first_ts
    hooks.verify_all()
    assert continuous(timestamps(first) + timestamps(second), 200)


async def test_pause_resume_updates_and_no_media_while_paused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=3.0,
        t0_ms=T0,
        steps=(Step(1.0, Action.PAUSE), Step(2.0, Action.RESUME)),
    )
    with trio.fail_after(60):
        async with open_simulator(config()) as sim:
            eng = await sim.start(scenario)
            sig_got, got = await join_audio(eng.target)
    states = [(m["msg_type"], m["state"]) for m in sig_got.other if m["msg_type"] in (8, 9)]
    assert states == [(9, 3), (8, 5), (9, 4), (8, 6), (8, 4), (9, 5)]
    ts = timestamps(got)
    assert ts == sorted(ts)
    gaps = [b - a for a, b in itertools.pairwise(ts) if b - a != 20]
    assert gaps == [1020]  # frames 50..99 (1.0 s to 2.0 s) never produced
    # Only the pre-connect buffer is replayed; paused frames are never produced or buffered.
    assert eng.stats.track("mixed").replayed < 5
    assert eng.stats.track("mixed").packets == 100


STOP_REASONS = list(range(1, 27))


@pytest.mark.parametrize("reason", STOP_REASONS)
async def test_stop_with_each_reason(reason: int, autojump_clock: trio.testing.MockClock) -> None:
    hooks = Hooks()
    scenario = Scenario(
        product=Product.WEBINAR,
        duration_s=100,
        media=("transcript",),
        steps=(Step(1.0, Action.STOP, {"reason": reason}),),
    )
    with trio.fail_after(60):
        async with open_simulator(config(hooks)) as sim:
            eng = await sim.start(scenario)
            sig_got, media_got = await join_audio(eng.target, media_type=8, kind="transcript")
    updates = [m for m in sig_got.other if m["msg_type"] in (8, 9)]
    assert updates[0]["state"] == 4
    assert updates[0]["reason"] == reason
    assert updates[1]["state"] == 5
    assert updates[1]["stop_reason"] == reason
    assert sig_got.close_code == 1000
    assert media_got.close_code == 1000
    stopped = hooks.bodies[-1]
    assert stopped["event"] == "webinar.rtms_stopped"
    assert stopped["payload"] == {
        "webinar_uuid": eng.scenario.instance_id,
        "rtms_stream_id": eng.scenario.rtms_stream_id,
        "stop_reason": reason,
    }


@pytest.mark.parametrize("webhook_first", [True, False])
async def test_stop_order_is_configurable(
    webhook_first: bool, autojump_clock: trio.testing.MockClock
) -> None:
    seen_states: list[int] = []
    eng_box: list[object] = []

    def hook(headers: Mapping[str, str], body: bytes) -> int:
        if b"rtms_stopped" in body:
            seen_states.append(len(eng_box[0].stats.state_updates))  # type: ignore[attr-defined]
        return 204

    scenario = Scenario(
        product=Product.SESSION,
        duration_s=100,
        steps=(Step(1.0, Action.STOP, {"reason": 2, "webhook_first": webhook_first}),),
    )
    with trio.fail_after(60):
        async with open_simulator(config(hook)) as sim:  # type: ignore[arg-type]
            eng = await sim.start(scenario)
            eng_box.append(eng)
            await join_audio(eng.target)
    assert seen_states == ([0] if webhook_first else [2])


async def test_stream_close_request_answers_22_then_stops_with_reason_20(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with open_simulator(config()) as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=100))
            async with signaling(eng.target) as (sig, _resp):
                await recv(sig)  # first packet timestamp
                await send(sig, {"msg_type": 19, "rtms_stream_id": eng.scenario.rtms_stream_id})
                assert (await recv(sig))["msg_type"] == 20
                await send(sig, {"msg_type": 10, "rtms_session_id": "s1"})
                resp11 = await recv(sig)
                assert resp11["msg_type"] == 11
                assert resp11["state"] == 2
                await send(sig, {"msg_type": 28, "user_id": 16778240, "subscribe": True})
                assert (await recv(sig))["status_code"] == 0
                await send(sig, {"msg_type": 28, "user_id": 16778240, "subscribe": True})
                assert (await recv(sig))["status_code"] == 44
                await send(sig, {"msg_type": 21, "rtms_stream_id": eng.scenario.rtms_stream_id})
                rest = Received()
                await read_all(sig, rest)
            await eng.finished.wait()
    assert rest.other[0]["msg_type"] == 22
    assert rest.other[0]["status_code"] == 0
    assert rest.other[1] == {**rest.other[1], "msg_type": 8, "state": 4, "reason": 20}
    assert eng.stats.stop_reason == 20


async def test_garbage_frames_are_sent_and_streaming_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=2.0,
        t0_ms=T0,
        steps=(
            Step(0.5, Action.GARBAGE, {"kind": "all", "socket": "signaling"}),
            Step(1.0, Action.GARBAGE, {"kind": "all", "socket": "media"}),
        ),
    )
    with trio.fail_after(60):
        async with open_simulator(config()) as sim:
            eng = await sim.start(scenario)
            sig_got, got = await join_audio(eng.target)
    raw = [m["raw"] for m in got.other if "raw" in m]
    assert "this is not json {" in raw
    assert any(isinstance(r, bytes) for r in raw)
    assert {"msg_type": 99, "foo": "bar"} in got.other
    assert {"msg_type": 23, "content": {}} in sig_got.other
    assert eng.stats.garbage_sent == 14
    assert continuous(timestamps(got), 100)


async def test_oversized_frame_reaches_a_client_that_raised_its_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=2.0,
        t0_ms=T0,
        steps=(Step(1.0, Action.OVERSIZED_FRAME, {"bytes": 2 * 2**20}),),
    )
    with trio.fail_after(60):
        async with open_simulator(config()) as sim:
            eng = await sim.start(scenario)
            _, got = await join_audio(eng.target)
    video = [m for m in got.other if m.get("msg_type") == 15]
    assert len(video) == 1
    assert len(video[0]["content"]["data"]) == 2 * 2**20
    assert eng.stats.garbage_sent == 1
    assert continuous(timestamps(got), 100)


async def test_subscribed_events_participants_speaker_chat_transcript(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=2.0,
        media=("audio", "transcript", "chat"),
        steps=(
            Step(0.2, Action.PARTICIPANT_JOIN, {"user_id": "33556610", "user_name": "Dave"}),
            Step(0.4, Action.ACTIVE_SPEAKER, {"user_id": "33556610", "user_name": "Dave"}),
            Step(
                0.6, Action.CHAT, {"text": "hello desk", "user_id": "33556610", "user_name": "Dave"}
            ),
            Step(0.8, Action.TRANSCRIPT, {"text": "scripted line", "user_id": "33556610"}),
            Step(1.0, Action.PARTICIPANT_LEAVE, {"user_id": "33556610"}),
        ),
    )
    with trio.fail_after(60):
        async with open_simulator(config()) as sim:
            eng = await sim.start(scenario)
            sig_got, got = await join_audio(
                eng.target, media_type=32, kind="all", subscribe=[2, 3, 4]
            )
    events = [m["event"] for m in sig_got.other if m["msg_type"] == 6]
    types = [e["event_type"] for e in events]
    assert types[0] == 1
    assert 3 in types
    assert 4 in types
    join = next(e for e in events if e["event_type"] == 3)
    assert join["participants"] == [{"user_id": 33556610, "user_name": "Dave"}]
    assert any(e["event_type"] == 2 and e.get("user_name") == "Dave" for e in events)
    assert any(e["event_type"] == 2 and e.get("user_name") == "Alice Trader" for e in events)
    assert [c["content"]["data"] for c in got.chats] == ["hello desk"]
    assert "scripted line" in [t["content"]["data"] for t in got.transcripts]


async def test_zcc_events_with_plain_int_subscription(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(
        product=Product.CONTACT_CENTER,
        duration_s=2.0,
        steps=(
            Step(0.5, Action.ZCC_EVENT, {"event_type": 8, "channel_id": "ch-caller"}),
            Step(0.7, Action.ZCC_EVENT, {"event_type": 12, "channel_id": "ch-agent"}),
            Step(0.9, Action.ZCC_EVENT, {"event_type": 21}),
        ),
    )
    with trio.fail_after(60):
        async with open_simulator(config()) as sim:
            eng = await sim.start(scenario)
            async with signaling(eng.target) as (sig, _resp):
                await send(
                    sig,
                    {
                        "msg_type": 5,
                        "rtms_stream_id": eng.scenario.rtms_stream_id,
                        "events": [8, 12],
                    },
                )
                got = Received()
                await read_all(sig, got)
    events = [m["event"] for m in got.other if m["msg_type"] == 6]
    zcc = [e for e in events if e["event_type"] != 1]
    assert [e["event_type"] for e in zcc] == [8, 12]  # 21 was not subscribed
    assert zcc[0]["participant_info"]["participant_mode"] == "caller"
    assert zcc[0]["participant_info"]["channel_id"] == "ch-caller"
    assert "event_ts" in zcc[0]


async def test_drop_only_the_transcript_socket_keeps_audio_flowing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=3.0,
        t0_ms=T0,
        steps=(Step(1.0, Action.DROP_MEDIA, {"media": "transcript"}),),
    )
    with trio.fail_after(60):
        async with open_simulator(config()) as sim:
            eng = await sim.start(scenario)
            target = eng.target
            async with signaling(target) as (sig, resp):
                urls = resp["media_server"]["server_urls"]
                audio_got, transcript_got, sig_got = Received(), Received(), Received()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_all, sig, sig_got)
                    async with media(target, urls["audio"], 1) as (audio_ws, _):
                        await send(sig, {"msg_type": 7, "rtms_stream_id": target.rtms_stream_id})
                        async with media(target, urls["transcript"], 8) as (tr_ws, _):
                            await send(
                                sig, {"msg_type": 7, "rtms_stream_id": target.rtms_stream_id}
                            )
                            await read_all(tr_ws, transcript_got)
                        # A third ack with nothing waiting for it is counted as invalid.
                        await send(sig, {"msg_type": 7, "rtms_stream_id": target.rtms_stream_id})
                        await read_all(audio_ws, audio_got)
    assert transcript_got.close_code == 1011
    assert audio_got.close_code == 1000
    assert continuous(timestamps(audio_got), 150)
    assert eng.stats.events_sent[7] == 1
    assert eng.stats.ready_acks == 2
    assert eng.stats.invalid_ready_acks == 1


async def test_reconnecting_the_dropped_transcript_socket_satisfies_the_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=200.0,
        media=("transcript",),
        steps=(Step(1.0, Action.DROP_MEDIA),),
    )
    with trio.fail_after(400):
        async with open_simulator(config()) as sim:
            eng = await sim.start(scenario)
            target = eng.target
            async with signaling(target) as (sig, resp):
                url = resp["media_server"]["server_urls"]["transcript"]
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_all, sig, Received())
                    for _ in range(2):
                        async with media(target, url, 8) as (ws, _):
                            await send(
                                sig, {"msg_type": 7, "rtms_stream_id": target.rtms_stream_id}
                            )
                            await read_all(ws, Received())
            await eng.finished.wait()
    assert eng.stats.reconnects == 1
    assert eng.stats.stop_reason == 6  # ran to its end: the 65 s grace was satisfied


async def test_hostile_client_frames_are_ignored(autojump_clock: trio.testing.MockClock) -> None:
    hostile: list[object] = [
        "not json",
        b"\x00\x01binary",
        "[1,2,3]",
        '{"msg_type":"13"}',
        '{"msg_type":5,"events":"all"}',
        '{"msg_type":5,"events":[{"event_type":"x"}]}',
        '{"msg_type":7,"rtms_stream_id":["x"]}',
        '{"msg_type":10,"rtms_session_id":{"a":1}}',
        '{"msg_type":28,"user_id":[1],"subscribe":"yes"}',
        '{"msg_type":99}',
        '{"msg_type":13,"sequence":{"a":[]},"timestamp":null}',
        '{"msg_type":1}',
        "{" * 5000 + "}" * 5000,
    ]
    scenario = Scenario(product=Product.MEETING, duration_s=25, t0_ms=T0)
    with trio.fail_after(100):
        async with open_simulator(config()) as sim:
            eng = await sim.start(scenario)
            async with signaling(eng.target) as (sig, resp):
                url = resp["media_server"]["server_urls"]["audio"]
                sig_got = Received()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_all, sig, sig_got)
                    async with media(eng.target, url, 1) as (ws, _ok):
                        for frame in hostile:
                            await sig.send_message(frame)  # type: ignore[arg-type]
                            await ws.send_message(frame)  # type: ignore[arg-type]
                        await send(
                            sig, {"msg_type": 7, "rtms_stream_id": eng.scenario.rtms_stream_id}
                        )
                        got = Received()
                        await read_all(ws, got)
    assert eng.stats.handler_errors == 0
    assert eng.stats.invalid_subscriptions == 2
    assert continuous(timestamps(got), 1250)
    assert sig_got.keepalives == 2
    assert eng.stats.keepalives_answered == 2 + got.keepalives


async def test_timestamp_faults_break_exactly_the_next_packets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A first frame in seconds (the first replayed one), then two in µs at 1 s."""
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=2.0,
        t0_ms=T0,
        steps=(
            Step(0.0, Action.TIMESTAMP_FAULT, {"kind": "seconds"}),
            Step(1.0, Action.TIMESTAMP_FAULT, {"kind": "microseconds", "frames": 2}),
        ),
    )
    with trio.fail_after(60):
        async with open_simulator(config()) as sim:
            eng = await sim.start(scenario)
            _, got = await join_audio(eng.target)
            await eng.finished.wait()
    sent = timestamps(got)
    assert eng.stats.timestamp_faults_sent == 3
    assert sent[0] == T0 // 1000
    assert sent[50:52] == [(T0 + 1_000) * 1000, (T0 + 1_020) * 1000]
    honest = [t for i, t in enumerate(sent) if i not in (0, 50, 51)]
    assert honest == [T0 + 20 * k for k in range(100) if k not in (0, 50, 51)]


def test_an_unknown_timestamp_fault_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="timestamp_fault kind"):
        validate(
            Scenario(
                product=Product.MEETING,
                steps=(Step(0.0, Action.TIMESTAMP_FAULT, {"kind": "nanoseconds"}),),
            )
        )
