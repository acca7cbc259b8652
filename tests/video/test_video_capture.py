"""Simulator -> real WebSockets -> RTMS client -> video capture: H.264 for camera and screen
share remuxed into MP4 segments whose pictures sit at the RTMS times the simulator sent them."""

from __future__ import annotations

import trio

from recorder.audio.manifest import EngagementManifest
from recorder.capture.core import CaptureConfig
from recorder.capture.pipeline import run_capture
from recorder.rtms.client import ClientConfig, open_rtms_stream
from recorder.rtms.messages import DeskshareParams, PayloadType, VideoParams
from recorder.simulator import (
    Action,
    Engagement,
    Product,
    Scenario,
    SimulatorConfig,
    Step,
    open_simulator,
)
from recorder.simulator.video import VideoFeedSpec
from recorder.testing.memory_sink import MemorySinkFactory
from recorder.video.capture import VideoCaptureConfig, VideoOutcome, run_video_capture
from recorder.video.probe import pictures
from recorder.video.track import AWAITING_KEYFRAME
from tests.rtms.test_client_simulator import to_target

T0 = 1_795_276_197_000
SPEED = 4.0
CLIENT = dict(
    allow_insecure_loopback=True,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    connect_timeout_s=5.0,
    handshake_timeout_s=5.0,
    close_timeout_s=1.0,
    media_trigger_guard_s=0.0,
)
H264_5FPS = VideoParams(codec=PayloadType.H264, fps=5)
SHARE_2FPS = DeskshareParams(codec=PayloadType.H264, fps=2)


async def _record(
    scenario: Scenario, client: ClientConfig
) -> tuple[EngagementManifest, VideoOutcome, MemorySinkFactory, Engagement]:
    sinks = MemorySinkFactory()
    with trio.fail_after(30):
        async with open_simulator(SimulatorConfig(speed=SPEED)) as sim:
            engagement = await sim.start(scenario)
            target = to_target(engagement)
            async with open_rtms_stream(target, client) as stream:
                assert stream.video_events is not None
                async with trio.open_nursery() as nursery:
                    result: list[VideoOutcome] = []

                    async def video() -> None:
                        assert stream.video_events is not None
                        result.append(
                            await run_video_capture(
                                stream.video_events,
                                sinks,
                                recording_id=target.rtms_stream_id,
                                config=VideoCaptureConfig(
                                    fps={"video": 5, "deskshare": 2}, segment_ms=2000
                                ),
                            )
                        )

                    nursery.start_soon(video)
                    manifest = await run_capture(
                        stream.events,
                        sinks,
                        recording_id=target.rtms_stream_id,
                        config=CaptureConfig(),
                    )
                    stream.end_video()
    return manifest, result[0], sinks, engagement


async def test_video_and_deskshare_land_at_their_rtms_times() -> None:
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=5.0,
        t0_ms=T0,
        media=("audio", "video", "deskshare"),
        video=VideoFeedSpec(keyframe_interval=5, drop_frames=(12, 13)),
        # Zoom does not buffer video: without this, the drop at 2.4 s (0.6 s of wall time)
        # happened before a loaded host's client had its video socket, and nothing was lost.
        start_when_streaming=("audio", "video", "deskshare"),
    )
    client = ClientConfig(
        video=True, deskshare=True, video_params=H264_5FPS, deskshare_params=SHARE_2FPS, **CLIENT
    )  # type: ignore[arg-type]
    manifest, outcome, sinks, engagement = await _record(scenario, client)
    assert manifest.audio_entries()
    for kind in ("video", "deskshare"):
        sent = engagement.video.sent[kind]
        assert len(sent) >= 5, kind
        entries = [e for e in outcome.segments if e.track == kind]
        assert entries, kind
        got: list[tuple[int, int | None]] = []
        for entry in entries:
            sink = next(
                s
                for s in sinks.sinks
                if s.identity.track == kind and s.identity.segment_index == entry.segment_index
            )
            assert sink.plaintext[4:8] == b"ftyp"
            for pic in pictures(sink.plaintext):
                got.append((entry.origin_ms + pic.time_ms, pic.number))
        # Every recorded picture is one the simulator sent, at its RTMS time.
        sent_at = dict(sent)
        for ts, number in got:
            assert ts in sent_at
            assert number in (sent_at[ts], None)
        # What is missing was never sent, or lies inside a recorded gap.
        gaps = [g for e in entries for g in e.gaps]
        recorded = {ts for ts, _ in got}
        for ts, _n in sent:
            if ts not in recorded:
                assert any(g.start_ms <= ts < g.end_ms for g in gaps), (kind, ts, gaps)
        if kind == "video":
            # Frames 12-13 were dropped by the simulator: a lost-packets gap names them.
            lost = [g for g in gaps if g.cause == "lost_packets"]
            assert [(g.start_ms, g.end_ms) for g in lost] == [(T0 + 2400, T0 + 2800)]
            assert engagement.video.dropped["video"] == 2
            assert all(g.cause in ("lost_packets", AWAITING_KEYFRAME) for g in gaps)
            assert len(entries) >= 2  # 2 s segments, rotated on keyframes


async def test_video_is_not_requested_unless_configured() -> None:
    scenario = Scenario(product=Product.MEETING, duration_s=1.0, t0_ms=T0, media=("audio", "video"))
    manifest, _outcome, _sinks, engagement = await _record_audio_only(scenario)
    assert manifest.audio_entries()
    assert engagement.video.sent == {}


async def _record_audio_only(
    scenario: Scenario,
) -> tuple[EngagementManifest, None, None, Engagement]:
    with trio.fail_after(30):
        async with open_simulator(SimulatorConfig(speed=SPEED)) as sim:
            engagement = await sim.start(scenario)
            target = to_target(engagement)
            async with open_rtms_stream(target, ClientConfig(**CLIENT)) as stream:  # type: ignore[arg-type]
                assert stream.video_events is None
                manifest = await run_capture(
                    stream.events, MemorySinkFactory(), recording_id=target.rtms_stream_id
                )
    return manifest, None, None, engagement


async def test_individual_video_is_subscribed_once_the_video_socket_is_ready() -> None:
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=2.0,
        t0_ms=T0,
        media=("audio", "video"),
        video=VideoFeedSpec(keyframe_interval=3),
        start_when_streaming=("audio", "video"),
    )
    individual = VideoParams(codec=PayloadType.H264, fps=5, data_opt=4)
    client = ClientConfig(video=True, video_params=individual, video_user_id="16778240", **CLIENT)  # type: ignore[arg-type]
    _manifest, outcome, _sinks, engagement = await _record(scenario, client)
    assert str(engagement.video_subscribed_user) == "16778240"
    assert engagement.video.sent["video"]
    assert sum(e.frames for e in outcome.segments) >= 1


async def test_individual_video_without_a_subscription_sends_nothing() -> None:
    # The video socket is live for the whole call: nothing is sent because nobody subscribed,
    # not because the call ended before a loaded host's client connected.
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=1.0,
        t0_ms=T0,
        media=("audio", "video"),
        start_when_streaming=("audio", "video"),
    )
    individual = VideoParams(codec=PayloadType.H264, fps=5, data_opt=4)
    client = ClientConfig(video=True, video_params=individual, **CLIENT)  # type: ignore[arg-type]
    _manifest, outcome, _sinks, engagement = await _record(scenario, client)
    assert engagement.video_subscribed_user is None
    assert not engagement.video.sent.get("video")
    assert outcome.segments == []


async def test_a_dropped_video_socket_is_a_media_interrupted_gap() -> None:
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=4.0,
        t0_ms=T0,
        media=("audio", "video"),
        video=VideoFeedSpec(keyframe_interval=2),
        steps=(Step(2.0, Action.DROP_MEDIA, {"media": "video"}),),
        # The drop must find a live video socket (0.5 s of wall time into the call).
        start_when_streaming=("audio", "video"),
    )
    client = ClientConfig(video=True, video_params=H264_5FPS, **CLIENT)  # type: ignore[arg-type]
    manifest, outcome, _sinks, engagement = await _record(scenario, client)
    assert manifest.audio_entries()
    gaps = [g for e in outcome.segments for g in e.gaps if g.cause == "media_interrupted"]
    assert len(gaps) == 1
    sent = [ts for ts, _ in engagement.video.sent["video"]]
    # The gap lies between the last frame before the drop and the first after the reconnect.
    before = max(ts for ts in sent if ts < gaps[0].start_ms)
    after = min(ts for ts in sent if ts >= gaps[0].end_ms)
    assert before < T0 + 2000 <= after
    assert not [ts for ts in sent if gaps[0].start_ms <= ts < gaps[0].end_ms]
