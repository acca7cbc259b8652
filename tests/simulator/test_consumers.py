"""Slow, stalled and unusual consumers: firehose, stall detection, keep-alive suppression,
``buffer_data: false``, JSON in binary frames."""

from __future__ import annotations

import json

import trio
import trio.testing
from trio_websocket import open_websocket_url

from recorder.rtms.messages import AudioParams, MediaParams
from recorder.simulator import (
    LEGACY_2025,
    Action,
    Product,
    Scenario,
    SimulatorConfig,
    Step,
    open_simulator,
)

from .rawclient import (
    BIG,
    Received,
    join_audio,
    media,
    read_all,
    recv,
    send,
    signaling,
    signaling_request,
)

T0 = 1_795_276_197_000


async def test_firehose_pushes_the_whole_call_as_fast_as_the_client_reads() -> None:
    scenario = Scenario(product=Product.MEETING, duration_s=20.0, t0_ms=T0, firehose=True)
    with trio.fail_after(30):
        async with open_simulator(SimulatorConfig()) as sim:
            eng = await sim.start(scenario)
            _, got = await join_audio(eng.target)
    ts = [m["content"]["timestamp"] for m in got.audio]
    assert ts == [T0 + 20 * k for k in range(1000)]
    assert eng.stats.stop_reason == 6


async def test_stalled_consumer_is_detected_and_cut_by_keepalive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that stops reading media: the TCP window fills, keep-alives cannot even be sent,
    three intervals later the media socket is cut with EVENT_UPDATE 7 and state 2 / 24."""
    scenario = Scenario(product=Product.MEETING, duration_s=3000)
    params = MediaParams(audio=AudioParams(sample_rate=3, channel=2))
    config = SimulatorConfig(encode_in_thread=False)
    with trio.fail_after(2000):
        async with open_simulator(config) as sim:
            eng = await sim.start(scenario)
            target = eng.target
            async with signaling(target) as (sig, resp):
                url = resp["media_server"]["server_urls"]["audio"]
                sig_got = Received()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_all, sig, sig_got)
                    async with media(target, url, 1, params) as (_stalled, ok):
                        assert ok["status_code"] == 0
                        await send(sig, {"msg_type": 7, "rtms_stream_id": target.rtms_stream_id})
                        await eng.wait_for(lambda s: s.events_sent[7] == 1)
                    await eng.stop(1)
    assert eng.stats.keepalive_sends_stalled >= 1
    assert eng.stats.keepalives_missed >= 3
    states = [(m["state"], m.get("reason")) for m in sig_got.other if m["msg_type"] == 8]
    assert (2, 24) in states


async def test_legacy_profile_suppresses_media_keepalives_while_audio_flows(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(product=Product.MEETING, duration_s=60)
    config = SimulatorConfig(profile=LEGACY_2025, encode_in_thread=False)
    with trio.fail_after(200):
        async with open_simulator(config) as sim:
            eng = await sim.start(scenario)
            sig_got, media_got = await join_audio(eng.target)
    assert media_got.keepalives == 0  # audio never stopped flowing
    assert sig_got.keepalives == 6  # signaling always gets them
    assert eng.stats.keepalives_missed == 0
    assert eng.stats.stop_reason == 6


async def test_buffer_data_false_drops_pre_connect_audio(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(product=Product.MEETING, duration_s=10, t0_ms=T0)
    with trio.fail_after(100):
        async with open_simulator(SimulatorConfig(encode_in_thread=False)) as sim:
            eng = await sim.start(scenario)
            await trio.sleep(2.0)  # the app takes 2 s to connect after rtms_started
            async with signaling(eng.target, buffer_data=False) as (sig, resp):
                assert resp["status_code"] == 0
                first = await recv(sig)
                url = resp["media_server"]["server_urls"]["audio"]
                async with media(eng.target, url, 1) as (ws, _ok):
                    await send(sig, {"msg_type": 7, "rtms_stream_id": eng.scenario.rtms_stream_id})
                    msg = await recv(ws)
                    while msg["msg_type"] != 14:
                        msg = await recv(ws)
                await eng.stop(1)
    assert first["event"]["timestamp"] >= T0 + 2000
    assert msg["content"]["timestamp"] >= T0 + 2000
    assert eng.stats.buffer_dropped_frames >= 100
    assert eng.stats.track("mixed").replayed == 0


async def test_buffered_audio_is_replayed_on_first_connect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(product=Product.MEETING, duration_s=4, t0_ms=T0)
    with trio.fail_after(100):
        async with open_simulator(SimulatorConfig(encode_in_thread=False)) as sim:
            eng = await sim.start(scenario)
            await trio.sleep(2.0)
            _, got = await join_audio(eng.target)
    ts = [m["content"]["timestamp"] for m in got.audio]
    assert ts == [T0 + 20 * k for k in range(200)]
    assert eng.stats.track("mixed").replayed >= 100


async def test_start_when_streaming_holds_the_call_until_the_client_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client later than the whole call still gets all of it live from frame 0 (nothing
    replayed, nothing lost), and the call then lasts its full duration."""
    scenario = Scenario(
        product=Product.MEETING, duration_s=4, t0_ms=T0, start_when_streaming=("audio",)
    )
    with trio.fail_after(100):
        async with open_simulator(SimulatorConfig(encode_in_thread=False)) as sim:
            eng = await sim.start(scenario)
            await trio.sleep(20.0)  # the app connects 20 s after rtms_started
            assert not eng.finished.is_set()
            assert eng.stats.frames_sent == 0
            joined = trio.current_time()
            _, got = await join_audio(eng.target)
            lasted = trio.current_time() - joined
    ts = [m["content"]["timestamp"] for m in got.audio]
    assert ts == [T0 + 20 * k for k in range(200)]
    assert eng.stats.track("mixed").replayed == 0
    assert lasted >= 4.0
    assert eng.stats.stop_reason == 6


async def test_binary_frames_both_ways() -> None:
    """The official SDK sends pretty-printed JSON in binary frames (§15); the simulator accepts it
    and can answer the same way."""
    with trio.fail_after(20):
        async with open_simulator(SimulatorConfig(binary_frames=True)) as sim:
            eng = await sim.start(Scenario(product=Product.MEETING, duration_s=30))
            async with open_websocket_url(eng.target.server_urls, max_message_size=BIG) as ws:
                request = signaling_request(
                    eng.target, sequence=1_795_276_197_123, rtms_client_agent="rtms-sdk/1.1.0"
                )
                await ws.send_message(json.dumps(request, indent="\t", sort_keys=True).encode())
                raw = await ws.get_message()
                assert isinstance(raw, bytes)
                assert json.loads(raw)["status_code"] == 0
            await eng.stop(1)


async def test_steps_run_without_any_client(autojump_clock: trio.testing.MockClock) -> None:
    """Faults with nobody connected do not crash the engagement (a recorder may be down)."""
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=10,
        steps=(
            Step(1, Action.DROP_MEDIA),
            Step(2, Action.DROP_SIGNALING),
            Step(3, Action.FAILOVER),
            Step(4, Action.PAUSE),
            Step(5, Action.GARBAGE),
            Step(6, Action.CHAT, {"text": "x"}),
            Step(7, Action.ZCC_EVENT),
            Step(8, Action.RESUME),
        ),
    )
    with trio.fail_after(100):
        async with open_simulator(SimulatorConfig(encode_in_thread=False)) as sim:
            eng = await sim.start(scenario)
            await eng.finished.wait()
    assert eng.stats.failovers == 1
    assert eng.stats.frames_sent == 0
    assert eng.stats.stop_reason == 6


async def test_batched_pacing_keeps_every_timestamp(autojump_clock: trio.testing.MockClock) -> None:
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=3.0,
        t0_ms=T0,
        steps=(Step(1.0, Action.PAUSE), Step(1.5, Action.RESUME)),
    )
    config = SimulatorConfig(encode_in_thread=False, pace_batch_frames=5)
    with trio.fail_after(60):
        async with open_simulator(config) as sim:
            eng = await sim.start(scenario)
            _, got = await join_audio(eng.target)
    ts = [m["content"]["timestamp"] for m in got.audio]
    expected = [T0 + 20 * k for k in range(150) if not 50 <= k < 75]
    assert ts == expected
