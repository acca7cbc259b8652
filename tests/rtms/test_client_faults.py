"""Hostile streams beside a healthy one, over real sockets against the project's simulator.

Each test runs two engagements in one simulator and two clients in one process: a healthy
stream and a hostile one (a refused transcript socket, status 45 before success, ``rtms_stopped``
overtaking the media, an unknown field in every media frame, RTMS V2 binary frames). For each:
both clients stay up, the healthy stream's audio arrives bit-exact and complete, the hostile
stream loses at most the bad frames, and what happened is in its event stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio

from recorder.rtms.client import ClientConfig, RtmsStream, open_rtms_stream
from recorder.rtms.events import (
    CaptureEvent,
    Interrupted,
    MediaSocketDropped,
    StreamEnded,
    TranscriptMessage,
)
from recorder.rtms.messages import AudioParams
from recorder.rtms.webhook import WebhookKind, parse_webhook
from recorder.simulator import Action, Product, Scenario, SimulatorConfig, Step, open_simulator
from recorder.simulator._codecs import encode_track
from recorder.simulator.faults import Faults, HandshakeRefusal
from recorder.simulator.profiles import Status
from recorder.simulator.program import FRAME_MS
from tests.rtms.test_client_simulator import SPEED, client_config, packets, to_target


class Router:
    """Webhooks to the live stream they name (several engagements share one simulator)."""

    def __init__(self) -> None:
        self.streams: dict[str, RtmsStream] = {}
        self.kinds: dict[str, list[WebhookKind]] = {}

    async def __call__(self, headers: Mapping[str, str], body: bytes) -> int:
        event = parse_webhook(body)
        stream_id = event.rtms_stream_id or ""
        self.kinds.setdefault(stream_id, []).append(event.kind)
        stream = self.streams.get(stream_id)
        if stream is None:
            return 200
        if event.kind is WebhookKind.INTERRUPTED:
            stream.signaling_interrupted(event.server_urls, event_ts_ms=event.event_ts)
        elif event.kind is WebhookKind.STOPPED:
            stream.stopped(event.stop_reason)
        return 200


async def record_side_by_side(
    hostile: Scenario, cfg: ClientConfig, *, limit_s: float = 30
) -> tuple[list[list[CaptureEvent]], list[Any], list[RtmsStream]]:
    """Record a healthy twin of ``hostile`` and ``hostile`` itself, at the same time."""
    healthy = Scenario(
        product=hostile.product,
        media=hostile.media,
        layout=hostile.layout,
        duration_s=hostile.duration_s,
        name="healthy",
    )
    router = Router()
    results: list[list[CaptureEvent]] = [[], []]
    engagements: list[Any] = [None, None]
    streams: list[RtmsStream | None] = [None, None]
    with trio.fail_after(limit_s):
        config = SimulatorConfig(
            webhook_handler=router, speed=SPEED, webhook_retry_delays_s=(0.1, 0.2, 0.3)
        )
        async with open_simulator(config) as sim:
            await sim.warm_audio(healthy, [cfg.audio_params])

            async def run(index: int, scenario: Scenario) -> None:
                eng = await sim.start(scenario)
                engagements[index] = eng
                async with open_rtms_stream(to_target(eng), cfg) as stream:
                    streams[index] = stream
                    router.streams[eng.scenario.rtms_stream_id] = stream
                    async for event in stream.events:
                        results[index].append(event)
                await eng.finished.wait()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, 0, healthy)
                nursery.start_soon(run, 1, hostile)
    assert all(s is not None for s in streams)
    return results, engagements, [s for s in streams if s is not None]


def assert_bit_exact(events: Sequence[CaptureEvent], eng: Any, params: AudioParams) -> None:
    """Every audio packet the simulator sent arrived once, byte for byte, in order."""
    audio = packets(list(events))
    [track] = eng.program.tracks
    payloads = encode_track(track.pcm, params)
    t0 = eng.scenario.t0_ms
    cycle = eng.program.cycle_frames
    for packet in audio:
        frame = (packet.timestamp_ms - t0) // FRAME_MS
        assert packet.payload == payloads[frame % cycle], f"frame {frame} differs"
    timestamps = [p.timestamp_ms for p in audio]
    assert timestamps == sorted(set(timestamps))
    assert len(audio) == eng.stats.track(track.name).packets


def ended(events: Sequence[CaptureEvent]) -> StreamEnded:
    last = events[-1]
    assert isinstance(last, StreamEnded)
    return last


async def test_a_refused_transcript_socket_is_dropped_and_recorded_and_audio_goes_on() -> None:
    refused = HandshakeRefusal("transcript", Status.TRANSCRIPT_NOT_SUPPORTED, times=0)
    hostile = Scenario(product=Product.MEETING, duration_s=2.0, faults=Faults(refusals=(refused,)))
    cfg = client_config(transcript=True)
    (healthy_events, hostile_events), (healthy, eng), (_, stream) = await record_side_by_side(
        hostile, cfg
    )
    assert_bit_exact(healthy_events, healthy, cfg.audio_params)
    assert_bit_exact(hostile_events, eng, cfg.audio_params)
    [dropped] = [e for e in hostile_events if isinstance(e, MediaSocketDropped)]
    assert dropped.media == ("transcript",)
    assert dropped.status_code == 12
    assert "not support" in dropped.reason
    assert stream.stats.media_sockets_dropped == 1
    # One refusal, never retried; no interruption of the audio.
    assert eng.stats.rejected[("media", 12)] == 1
    assert not [e for e in hostile_events if isinstance(e, Interrupted)]
    assert ended(hostile_events).normal


async def test_status_45_then_success_on_signaling_and_audio_loses_nothing() -> None:
    faults = Faults(
        refusals=(
            HandshakeRefusal("signaling", Status.INTERNAL_EXCEPTION, times=1),
            HandshakeRefusal("audio", Status.INTERNAL_EXCEPTION, times=1),
        )
    )
    hostile = Scenario(product=Product.MEETING, media=("audio",), duration_s=2.0, faults=faults)
    cfg = client_config()
    (healthy_events, hostile_events), (healthy, eng), _ = await record_side_by_side(hostile, cfg)
    assert_bit_exact(healthy_events, healthy, cfg.audio_params)
    # Zoom buffers audio until the app connects, so the retried handshakes lose no audio.
    assert_bit_exact(hostile_events, eng, cfg.audio_params)
    assert eng.stats.rejected[("signaling", 45)] == 1
    assert eng.stats.rejected[("media", 45)] == 1
    assert eng.stats.signaling_accepted == 1  # after the one refusal
    assert ended(hostile_events).normal


async def test_rtms_stopped_before_the_media_drained_loses_no_audio() -> None:
    # rtms_stopped overtakes the last 0.8 s of media (0.2 s of wall time, inside the client's
    # 1 s drain bound): the client reads on until the server closes the sockets.
    hostile = Scenario(
        product=Product.MEETING,
        media=("audio",),
        duration_s=2.0,
        end_reason=1,
        faults=Faults(stopped_webhook_lead_s=0.8),
    )
    cfg = client_config()
    (healthy_events, hostile_events), (healthy, eng), (_, stream) = await record_side_by_side(
        hostile, cfg
    )
    assert_bit_exact(healthy_events, healthy, cfg.audio_params)
    assert_bit_exact(hostile_events, eng, cfg.audio_params)
    # Every frame of the call, including those sent after the webhook.
    assert len(packets(hostile_events)) == 2000 // FRAME_MS
    assert [w.event for w in eng.stats.webhooks].count("meeting.rtms_stopped") == 1
    end = ended(hostile_events)
    assert end.normal
    assert end.reason == 1
    assert stream.stats.dropped["after_end"] == 0


async def test_an_unknown_field_in_every_media_frame_stays_on_the_fast_path() -> None:
    hostile = Scenario(
        product=Product.MEETING,
        duration_s=2.0,
        faults=Faults(unknown_media_fields=True),
        steps=(Step(1.5, Action.TRANSCRIPT, {"text": "still here", "user_id": "16778240"}),),
    )
    cfg = client_config(transcript=True)
    (healthy_events, hostile_events), (healthy, eng), (_, stream) = await record_side_by_side(
        hostile, cfg
    )
    assert_bit_exact(healthy_events, healthy, cfg.audio_params)
    assert_bit_exact(hostile_events, eng, cfg.audio_params)
    assert stream.stats.audio_slow_path == 0
    assert stream.stats.dropped["malformed"] == 0
    assert any(isinstance(e, TranscriptMessage) and e.text == "still here" for e in hostile_events)


async def test_a_v2_answer_ends_that_stream_by_name_and_no_other() -> None:
    hostile = Scenario(
        product=Product.MEETING, media=("audio",), duration_s=2.0, faults=Faults(v2_answer=True)
    )
    cfg = client_config()
    (healthy_events, hostile_events), (healthy, eng), _ = await record_side_by_side(hostile, cfg)
    assert_bit_exact(healthy_events, healthy, cfg.audio_params)
    end = ended(hostile_events)
    assert end.reason_name == "UNSUPPORTED_PROTOCOL_VERSION"
    assert not end.normal
    assert not packets(hostile_events)
    assert eng.stats.signaling_accepted == 1  # never retried: an explicit V2 answer is final
    assert ended(healthy_events).normal


async def test_v2_binary_frames_are_dropped_alone_and_counted() -> None:
    hostile = Scenario(
        product=Product.MEETING,
        media=("audio",),
        duration_s=2.0,
        faults=Faults(v2_frame_every=10),
    )
    cfg = client_config()
    (healthy_events, hostile_events), (healthy, eng), (_, stream) = await record_side_by_side(
        hostile, cfg
    )
    assert_bit_exact(healthy_events, healthy, cfg.audio_params)
    assert_bit_exact(hostile_events, eng, cfg.audio_params)
    assert eng.stats.garbage_sent >= 9
    assert stream.stats.dropped["malformed"] == eng.stats.garbage_sent
    assert ended(hostile_events).normal
