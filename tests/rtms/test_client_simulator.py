"""The client against the project's RTMS simulator: real sockets, real audio, webhooks.

The simulator's webhooks go to a small bridge that does what the ingress will do: a new
``rtms_started`` for the live stream is a failover, ``rtms_interrupted`` redoes signaling,
``rtms_stopped`` ends the stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import trio

from recorder.rtms.client import (
    ClientConfig,
    RtmsStream,
    StreamTarget,
    audio_params,
    open_rtms_stream,
)
from recorder.rtms.events import (
    AudioCodec,
    AudioPacket,
    CaptureEvent,
    ContactCenterEvent,
    GapCause,
    Interrupted,
    ParticipantEvent,
    Paused,
    Recovered,
    Resumed,
    StreamEnded,
    TranscriptMessage,
)
from recorder.rtms.signature import Product as RtmsProduct
from recorder.rtms.urls import SocketLayout, split_server_urls
from recorder.rtms.webhook import WebhookKind, parse_webhook
from recorder.simulator import (
    Action,
    AudioLayout,
    Product,
    Scenario,
    SimulatorConfig,
    Step,
    open_simulator,
)

SPEED = 4.0


class Bridge:
    """Webhooks from the simulator to the live stream's controls."""

    def __init__(self) -> None:
        self.stream: RtmsStream | None = None
        self.kinds: list[WebhookKind] = []
        self.started_ts: set[int | None] = set()

    async def __call__(self, headers: Mapping[str, str], body: bytes) -> int:
        event = parse_webhook(body)
        self.kinds.append(event.kind)
        stream = self.stream
        if event.kind is WebhookKind.STARTED:
            # The first rtms_started is what the test itself acted on; only a new event_ts for
            # the live stream is a failover (retries repeat the event_ts).
            first = not self.started_ts
            new = event.event_ts not in self.started_ts
            self.started_ts.add(event.event_ts)
            if stream is not None and new and not first:
                await stream.failover(event.server_urls)
            return 200
        if stream is None:
            return 200
        if event.kind is WebhookKind.INTERRUPTED:
            stream.signaling_interrupted()
        elif event.kind is WebhookKind.STOPPED:
            stream.stopped(event.stop_reason)
        return 200


def client_config(**overrides: Any) -> ClientConfig:
    base: dict[str, Any] = dict(
        allow_insecure_loopback=True,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        close_timeout_s=1.0,
        media_trigger_guard_s=0.0,
        event_buffer=100_000,
    )
    base.update(overrides)
    return ClientConfig(**base)


def to_target(eng: Any) -> StreamTarget:
    t = eng.target
    return StreamTarget(
        product=RtmsProduct(t.product.value),
        instance_id=t.instance_id,
        rtms_stream_id=t.rtms_stream_id,
        server_urls=split_server_urls(t.server_urls),
        client_id=t.client_id,
        client_secret=t.client_secret,
    )


async def record(
    scenario: Scenario, cfg: ClientConfig, *, limit_s: float = 20, **sim_options: Any
) -> tuple[list[CaptureEvent], Any, RtmsStream]:
    bridge = Bridge()
    events: list[CaptureEvent] = []
    with trio.fail_after(limit_s):
        sim_config = SimulatorConfig(
            webhook_handler=bridge,
            speed=SPEED,
            webhook_retry_delays_s=(0.1, 0.2, 0.3),
            **sim_options,
        )
        async with open_simulator(sim_config) as sim:
            # Encode ahead, so that the media handshake is not delayed by on-demand encoding.
            await sim.warm_audio(scenario, [cfg.audio_params])
            eng = await sim.start(scenario)
            async with open_rtms_stream(to_target(eng), cfg) as stream:
                bridge.stream = stream
                async for event in stream.events:
                    events.append(event)
            await eng.finished.wait()
    return events, eng, stream


def packets(events: list[CaptureEvent]) -> list[AudioPacket]:
    return [e for e in events if isinstance(e, AudioPacket)]


def ended(events: list[CaptureEvent]) -> StreamEnded:
    assert isinstance(events[-1], StreamEnded)
    return events[-1]


@pytest.mark.parametrize(
    ("product", "layout", "track_prefix"),
    [
        (Product.MEETING, AudioLayout.PER_SPEAKER, "user-"),
        (Product.WEBINAR, AudioLayout.MIXED, "mixed"),
        (Product.SESSION, AudioLayout.MIXED, "mixed"),
        (Product.CONTACT_CENTER, AudioLayout.CHANNELS, "channel-"),
    ],
)
async def test_each_product_records_audio_transcript_events(
    product: Product, layout: AudioLayout, track_prefix: str
) -> None:
    # Zoom does not buffer transcripts: the line must come after the transcript socket is
    # ready, so it is said late in the call (0.5 s of wall time at SPEED), not at its start.
    steps = [Step(2.0, Action.TRANSCRIPT, {"text": "hello there", "user_id": "16778240"})]
    if product is Product.CONTACT_CENTER:
        steps.append(Step(2.2, Action.ZCC_EVENT, {"event_type": 12, "channel_id": "ch-agent"}))
    else:
        steps.append(
            Step(2.2, Action.PARTICIPANT_JOIN, {"user_id": "33556610", "user_name": "Dana"})
        )
    scenario = Scenario(product=product, layout=layout, duration_s=3.0, steps=tuple(steps))
    params = audio_params(AudioCodec.L16, 16000, per_speaker=layout is AudioLayout.PER_SPEAKER)
    events, eng, stream = await record(
        scenario, client_config(transcript=True, audio_params=params)
    )
    audio = packets(events)
    assert audio
    assert all(p.track.startswith(track_prefix) for p in audio)
    assert (
        sum(s.packets for name, s in eng.stats.tracks.items() if name != "transcript")
        >= len(audio)
        > 0
    )
    assert any(isinstance(e, TranscriptMessage) and e.text == "hello there" for e in events)
    if product is Product.CONTACT_CENTER:
        hold = [e for e in events if isinstance(e, ContactCenterEvent) and e.event_type == 12]
        assert hold[0].name == "USER_HOLD"
    else:
        assert any(isinstance(e, ParticipantEvent) and e.name == "PARTICIPANT_JOIN" for e in events)
    end = ended(events)
    assert end.normal
    assert end.reason == 6
    assert eng.stats.signaling_max_open == 1
    assert stream.stats.max_open_signaling == 1


CODECS = [
    (AudioCodec.L16, 8000, 1, SocketLayout.PER_TYPE),
    (AudioCodec.L16, 32000, 2, SocketLayout.ALL),
    (AudioCodec.L16, 48000, 1, SocketLayout.PER_TYPE),
    (AudioCodec.G711, 8000, 1, SocketLayout.ALL),
    (AudioCodec.G722, 16000, 1, SocketLayout.PER_TYPE),
    (AudioCodec.OPUS, 48000, 1, SocketLayout.ALL),
    (AudioCodec.OPUS, 48000, 2, SocketLayout.PER_TYPE),
]


@pytest.mark.parametrize(("codec", "rate", "channels", "layout"), CODECS)
async def test_every_codec_from_the_simulator(
    codec: AudioCodec, rate: int, channels: int, layout: SocketLayout
) -> None:
    scenario = Scenario(product=Product.MEETING, media=("audio",), duration_s=1.0)
    cfg = client_config(audio_params=audio_params(codec, rate, channels), layout=layout)
    events, _eng, _ = await record(scenario, cfg)
    audio = packets(events)
    assert len(audio) >= 5
    fmt = audio[0].format
    assert (fmt.codec, fmt.sample_rate, fmt.channels) == (codec, rate, channels)
    timestamps = [p.timestamp_ms for p in audio]
    assert timestamps == sorted(timestamps)
    if codec is AudioCodec.L16:
        assert {len(p.payload) for p in audio} == {rate * channels * 2 // 50}
    assert ended(events).normal


async def test_drop_media_recovers_only_media() -> None:
    scenario = Scenario(
        product=Product.MEETING,
        media=("audio",),
        duration_s=2.0,
        steps=(Step(0.5, Action.DROP_MEDIA),),
    )
    events, eng, _stream = await record(scenario, client_config())
    interrupted = [e for e in events if isinstance(e, Interrupted)]
    recovered = [e for e in events if isinstance(e, Recovered)]
    assert [i.cause for i in interrupted] == [GapCause.MEDIA_INTERRUPTED]
    assert interrupted[0].media == ("audio",)
    assert len(recovered) == 1
    assert recovered[0].interrupted_wall_ms == interrupted[0].wall_ms
    assert eng.stats.signaling_accepted == 1
    assert eng.stats.media_accepted == 2
    after = [p for p in packets(events) if events.index(p) > events.index(recovered[0])]
    assert after
    assert ended(events).normal


async def test_drop_signaling_and_rtms_interrupted_recover_once() -> None:
    scenario = Scenario(
        product=Product.MEETING,
        media=("audio",),
        duration_s=2.0,
        steps=(Step(0.5, Action.DROP_SIGNALING),),
    )
    events, eng, stream = await record(scenario, client_config())
    interrupted = [e for e in events if isinstance(e, Interrupted) and not e.media]
    recovered = [
        e for e in events if isinstance(e, Recovered) and e.cause is GapCause.SIGNALING_INTERRUPTED
    ]
    assert len(interrupted) == 1
    assert len(recovered) == 1
    assert eng.stats.signaling_accepted == 2
    assert eng.stats.signaling_max_open == 1
    assert stream.stats.max_open_signaling == 1
    assert ended(events).normal


async def test_failover_webhook_moves_to_new_urls() -> None:
    scenario = Scenario(
        product=Product.CONTACT_CENTER,
        layout=AudioLayout.CHANNELS,
        media=("audio",),
        duration_s=2.0,
        steps=(Step(0.5, Action.FAILOVER),),
    )
    events, eng, _stream = await record(scenario, client_config())
    recovered = [e for e in events if isinstance(e, Recovered)]
    assert [r.cause for r in recovered] == [GapCause.FAILOVER]
    assert eng.stats.failovers == 1
    assert eng.stats.signaling_accepted == 2
    assert eng.stats.signaling_max_open == 1
    assert ended(events).normal


async def test_pause_resume_garbage_oversized_and_revocation() -> None:
    steps = (
        Step(0.2, Action.GARBAGE, {"kind": "all", "socket": "signaling"}),
        Step(0.3, Action.GARBAGE, {"kind": "all", "socket": "media"}),
        Step(0.4, Action.PAUSE),
        Step(0.7, Action.RESUME),
        Step(1.0, Action.OVERSIZED_FRAME, {"bytes": 20 * 2**20, "socket": "media"}),
        Step(1.6, Action.STOP, {"reason": 8}),
    )
    scenario = Scenario(product=Product.MEETING, media=("audio",), duration_s=3.0, steps=steps)
    events, eng, stream = await record(scenario, client_config())
    assert sum(isinstance(e, Paused) for e in events) == 1
    assert sum(isinstance(e, Resumed) for e in events) == 1
    assert stream.stats.dropped["malformed"] >= 1
    end = ended(events)
    assert end.revoked
    assert end.reason == 8
    assert eng.stats.signaling_accepted == 1


async def test_wrong_secret_ends_without_reconnect() -> None:
    scenario = Scenario(product=Product.MEETING, media=("audio",), duration_s=1.0)
    with trio.fail_after(10):
        async with open_simulator(SimulatorConfig(speed=SPEED)) as sim:
            eng = await sim.start(scenario)
            bad = to_target(eng)
            bad = StreamTarget(
                bad.product,
                bad.instance_id,
                bad.rtms_stream_id,
                bad.server_urls,
                bad.client_id,
                "not-the-secret",
            )
            async with open_rtms_stream(bad, client_config()) as stream:
                events = [e async for e in stream.events]
            end = ended(events)
            assert not end.normal
            assert "SIGNATURE" in end.reason_name
            assert eng.stats.signaling_accepted == 0
            assert sum(eng.stats.rejected.values()) == 1


async def test_binary_json_frames_like_the_official_sdk() -> None:
    scenario = Scenario(product=Product.MEETING, media=("audio",), duration_s=1.0)
    events, _eng, stream = await record(scenario, client_config(), binary_frames=True)
    assert len(packets(events)) >= 5
    assert stream.stats.dropped["malformed"] == 0
    assert ended(events).normal


async def test_legacy_2025_profile_status_table() -> None:
    scenario = Scenario(
        product=Product.MEETING,
        media=("audio",),
        duration_s=1.5,
        steps=(Step(0.4, Action.DROP_MEDIA),),
    )
    events, _eng, _ = await record(scenario, client_config(), profile="legacy-2025")
    assert any(isinstance(e, Recovered) for e in events)
    assert ended(events).normal


async def test_configurable_handshake_key_for_webinars() -> None:
    """§14.1: a server that wants the webinar id under ``meeting_uuid`` (S17's claim)."""
    scenario = Scenario(
        product=Product.WEBINAR, media=("audio",), duration_s=1.0, handshake_id_key="meeting_uuid"
    )
    bridge = Bridge()
    with trio.fail_after(20):
        async with open_simulator(SimulatorConfig(webhook_handler=bridge, speed=SPEED)) as sim:
            await sim.warm_audio(scenario, [client_config().audio_params])
            eng = await sim.start(scenario)
            base = to_target(eng)
            keyed = StreamTarget(
                base.product,
                base.instance_id,
                base.rtms_stream_id,
                base.server_urls,
                base.client_id,
                base.client_secret,
                handshake_instance_key="meeting_uuid",
            )
            async with open_rtms_stream(keyed, client_config()) as stream:
                events = [e async for e in stream.events]
    assert packets(events)
    assert ended(events).normal
    assert eng.stats.signaling_accepted == 1


async def test_a_rejected_http_upgrade_is_a_failed_connect_not_a_crash() -> None:
    """A signaling URL the server answers with 404 (a stream that is gone, a stale failover
    URL) ends the stream with that reason; never an exception that takes down every engagement
    in the process (trio-websocket raises it in its reader task)."""
    scenario = Scenario(product=Product.MEETING, media=("audio",), duration_s=1.0)
    with trio.fail_after(20):
        async with open_simulator(SimulatorConfig(speed=SPEED)) as sim:
            eng = await sim.start(scenario)
            good = to_target(eng)
            gone = StreamTarget(
                good.product,
                good.instance_id,
                good.rtms_stream_id,
                tuple(url.replace("/signaling", "/no-such-path") for url in good.server_urls),
                good.client_id,
                good.client_secret,
            )
            async with open_rtms_stream(gone, client_config()) as stream:
                events = [e async for e in stream.events]
            end = ended(events)
            assert not end.normal
            # The server says the stream is not there: no pointless retries of the same URL.
            assert end.reason_name == "SIGNALING_REFUSED_HTTP_404"
            assert eng.stats.signaling_accepted == 0


async def test_a_firehose_call_arrives_whole_up_to_its_end() -> None:
    """Audio pushed as fast as the socket takes it, then the stream ends: every frame the
    simulator sent arrives exactly once (the end never cuts off audio already on its way)."""
    scenario = Scenario(product=Product.MEETING, media=("audio",), duration_s=20.0, firehose=True)
    events, eng, _stream = await record(scenario, client_config(), limit_s=60)
    sent = eng.stats.track("mixed").packets
    received = packets(events)
    assert sent == 1000
    assert len(received) == sent
    assert len({p.timestamp_ms for p in received}) == sent
    assert ended(events).normal
