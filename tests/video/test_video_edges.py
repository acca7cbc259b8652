"""Edges of the video path: the bounded video outlet, hostile video media_params at the
simulator, the [video] section, and truncated MP4s (what crash recovery can leave)."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.config import MediaKind, load_config, parse_config
from recorder.errors import ConfigError, DiskFull, VideoError
from recorder.products import Product
from recorder.rtms._protocol_events import VideoFrame
from recorder.rtms._video_outlet import VideoLoss, VideoOutlet
from recorder.rtms.events import GapCause
from recorder.rtms.messages import DeskshareParams, PayloadType, VideoParams
from recorder.service.app import client_config
from recorder.simulator.handshake import confirm_video
from recorder.simulator.scenario import scenario_from_mapping
from recorder.sink import SealedSegment
from recorder.testing.memory_sink import MemorySinkFactory
from recorder.video.capture import VideoCaptureConfig, run_video_capture
from recorder.video.pattern import PatternSpec, encode_pattern
from recorder.video.probe import pictures
from recorder.video.remux import TrackJoiner, mux_with_audio
from recorder.video.track import VideoTrack, VideoTrackConfig

T0 = 1_765_000_000_000
UNITS = encode_pattern(PatternSpec(frames=20, keyframe_interval=5))


def _frame(n: int, kind: str = "video") -> VideoFrame:
    return VideoFrame(kind, T0 + n * 200, UNITS[n][0], "1")


async def test_a_full_video_outlet_drops_counts_and_names_the_gap_backpressure() -> None:
    outlet = VideoOutlet(capacity=4)
    for n in range(8):  # nobody reads: 4 fit, 4 are dropped
        outlet.offer(_frame(n))
    assert outlet.dropped["video"] == 4
    received = [outlet.receive_channel.receive_nowait() for _ in range(4)]
    # Room again: the loss is announced before the next frame, in order.
    outlet.offer(_frame(8))
    outlet.offer(_frame(9))
    outlet.close()
    received += [e async for e in outlet.receive_channel]
    assert received[4] == VideoLoss("video", GapCause.BACKPRESSURE, 4)
    sinks = MemorySinkFactory()
    send, receive = trio.open_memory_channel[Any](20)
    for event in received:
        send.send_nowait(event)
    send.close()
    outcome = await run_video_capture(
        receive, sinks, recording_id="r", config=VideoCaptureConfig(fps={"video": 5})
    )
    [entry] = outcome.segments
    assert [(g.start_ms, g.end_ms, g.cause) for g in entry.gaps] == [
        (T0 + 4 * 200, T0 + 8 * 200, GapCause.BACKPRESSURE)
    ]
    assert entry.frames == 6


def test_an_interruption_names_the_next_video_gap() -> None:
    outlet = VideoOutlet(capacity=10)
    outlet.offer(_frame(0))
    outlet.note_cause(GapCause.SIGNALING_INTERRUPTED)
    outlet.offer(_frame(5))
    events = [outlet.receive_channel.receive_nowait() for _ in range(3)]
    assert events[1] == VideoLoss("video", GapCause.SIGNALING_INTERRUPTED, 0)
    track = VideoTrack("r", "video", MemorySinkFactory(), VideoTrackConfig(fps=5))
    for event in events:
        if isinstance(event, VideoLoss):
            track.note_cause(event.cause)
        else:
            track.feed(event.timestamp_ms, event.payload)
    [(_, entry)] = track.finish()
    assert [g.cause for g in entry.gaps] == [GapCause.SIGNALING_INTERRUPTED]


def test_offers_after_close_are_counted_never_raise() -> None:
    outlet = VideoOutlet(capacity=1)
    outlet.close()
    outlet.offer(_frame(0))
    assert outlet.dropped["after_end"] == 1


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["content_type", "codec", "resolution", "fps", "data_opt", "x"]),
        st.one_of(st.integers(-5, 100), st.text(max_size=3), st.none(), st.booleans()),
    ),
    st.sampled_from(["video", "deskshare"]),
)
def test_hostile_video_params_are_refused_or_confirmed(params: dict[str, Any], name: str) -> None:
    confirmed = confirm_video(name, params)
    if confirmed is not None:
        assert 1 <= confirmed.fps <= 30
        assert confirmed.codec in (PayloadType.JPG, PayloadType.PNG, PayloadType.H264)
        if confirmed.codec != PayloadType.H264:
            assert confirmed.fps <= 5


def test_low_fps_jpg_requests_fall_back_and_h264_is_kept() -> None:
    assert confirm_video("video", {"codec": 5, "fps": 25}) == VideoParams(codec=5, fps=5)
    assert confirm_video("deskshare", {"codec": 7, "fps": 3}) == DeskshareParams(codec=7, fps=3)
    assert confirm_video("video", {"codec": 7, "data_opt": 9}) is None
    assert confirm_video("video", "not a table") is None


def test_video_section_and_product_policy(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path)}
    data = {
        "rtms": {"media": ["audio", "video", "deskshare"]},
        "video": {"fps": 10, "products": ["webinar"], "individual_user_id": "42"},
    }
    config = parse_config(data, where="t", config_dir=tmp_path, environ=env)
    assert MediaKind.VIDEO in config.rtms.media
    webinar = client_config(config, Product.WEBINAR)
    assert (webinar.video, webinar.deskshare, webinar.video_user_id) == (True, True, "42")
    assert (webinar.video_params.codec, webinar.video_params.fps) == (PayloadType.H264, 10)
    assert webinar.video_params.data_opt == 4
    meeting = client_config(config, Product.MEETING)
    assert not meeting.video
    assert not meeting.deskshare
    default = client_config(load_config(None, env), Product.MEETING)
    assert not default.video  # off unless asked
    for bad, message in (
        ({"fps": 5}, "fps"),
        ({"deskshare_fps": 1}, "deskshare_fps"),
        ({"products": ["radio"]}, "products"),
        ({"colour": 1}, "colour"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config({"video": bad}, where="t", config_dir=tmp_path, environ=env)


def test_truncated_segments_keep_every_whole_fragment(tmp_path: Path) -> None:
    sinks = MemorySinkFactory()
    track = VideoTrack("r", "video", sinks, VideoTrackConfig(fps=5, fragment_ms=1000))
    for n in range(20):
        track.feed(T0 + n * 200, UNITS[n][0])
    track.finish()
    data = sinks.sinks[0].plaintext
    frames = []
    for cut in (len(data) // 2, len(data) - 5):
        path = tmp_path / f"cut-{cut}.mp4"
        path.write_bytes(data[:cut])
        joiner = TrackJoiner(tmp_path, f"t{cut}")
        joiner.add(path, T0, 0)
        joiner.close()
        frames.append(joiner.parts[0].frames)
    assert 0 < frames[0] < frames[1] <= 20
    head = tmp_path / "head.mp4"
    head.write_bytes(data[:100])
    with pytest.raises(VideoError, match="no video stream"):
        TrackJoiner(tmp_path, "h").add(head, T0, 0)


class _CountingSink:
    """Keeps no bytes, only how many arrived (what the muxer has let go of)."""

    def __init__(self, identity: Any) -> None:
        self.identity = identity
        self.body_size = 0

    def write(self, data: bytes) -> None:
        self.body_size += len(data)

    def checkpoint(self) -> None:
        pass

    def close(self, prologue: bytes = b"") -> Any:
        return SealedSegment(self.identity, None, self.body_size, "0" * 64, self.body_size, "k")

    def discard(self) -> None:
        raise AssertionError("never discarded")


def test_the_muxer_holds_back_at_most_about_one_fragment() -> None:
    """Memory per track does not grow with the call: every access unit older than one
    fragment (1 s) has already been handed to the (encrypting) sink."""
    units = encode_pattern(PatternSpec(frames=100, keyframe_interval=50))
    opened: list[_CountingSink] = []

    class Factory:
        def open(self, identity: Any, *, prologue_size: int = 0) -> _CountingSink:
            opened.append(_CountingSink(identity))
            return opened[-1]

    track = VideoTrack("r", "video", Factory(), VideoTrackConfig(fps=5, fragment_ms=1000))
    sizes = [len(u) for u, _ in units]
    for n in range(100):
        track.feed(T0 + n * 200, units[n][0])
        settled = sum(sizes[: max(0, n - 6)])  # older than 1 s plus one frame
        assert opened[-1].body_size >= settled, n
    assert len(opened) == 1


def test_the_video_outlet_is_bounded_in_bytes_too() -> None:
    big = VideoFrame("video", T0, b"\x00\x00\x01\x65" + bytes(1000), "1")
    outlet = VideoOutlet(capacity=100, max_bytes=2500)
    for n in range(5):
        outlet.offer(VideoFrame("video", T0 + n, big.payload, "1"))
    assert outlet.queued_bytes == 2008  # two frames fit
    assert outlet.dropped["video"] == 3
    outlet.receive_channel.receive_nowait()
    outlet.receive_channel.receive_nowait()
    # Taken: room again (the loss marker first, then the frame).
    outlet.offer(VideoFrame("video", T0 + 10, big.payload, "1"))
    assert outlet.queued_bytes == 1004
    assert isinstance(outlet.receive_channel.receive_nowait(), VideoLoss)
    # One frame larger than the bound passes when nothing waits.
    outlet.receive_channel.receive_nowait()
    outlet.offer(VideoFrame("video", T0 + 20, bytes(10_000), "1"))
    assert outlet.queued_bytes == 10_000


def test_video_first_then_audio_keeps_both_on_the_rtms_clock(tmp_path: Path) -> None:
    sinks = MemorySinkFactory()
    track = VideoTrack("r", "video", sinks, VideoTrackConfig(fps=5))
    for n in range(20):
        track.feed(T0 + n * 200, UNITS[n][0])
    track.finish()
    video = tmp_path / "v.mp4"
    video.write_bytes(sinks.sinks[0].plaintext)
    rate = 16000
    pcm = np.zeros(rate * 2, dtype="<i2")
    pcm[rate : rate + rate // 2] = (8000 * np.sin(np.arange(rate // 2) * 2 * np.pi / 16)).astype(
        "<i2"
    )
    wav = tmp_path / "a.wav"
    with wave.open(str(wav), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    target = tmp_path / "both.mp4"
    # Audio starts 1 s after the video; its tone 1 s after that: 2 s into the file.
    _sha, _size, zero = mux_with_audio(video, T0, wav, T0 + 1000, target)
    assert zero == T0
    assert [(p.time_ms, p.number) for p in pictures(target)] == [(n * 200, n) for n in range(20)]
    with av.open(str(target)) as container:
        stream = container.streams.audio[0]
        samples = []
        first_ms = None
        for frame in container.decode(stream):
            if first_ms is None:
                assert frame.pts is not None
                first_ms = float(frame.pts * frame.time_base * 1000)
            samples.append(frame.to_ndarray()[0])
        assert first_ms is not None
        audio = np.concatenate(samples)
        onset = int(np.argmax(np.abs(audio) > 0.1))
        onset_ms = first_ms + onset * 1000 / stream.codec_context.sample_rate
    assert abs(onset_ms - 2000) < 30  # AAC priming is ~21 ms


def test_a_scenario_file_asks_for_video_and_names_bad_keys() -> None:
    scenario = scenario_from_mapping(
        {
            "product": "meeting",
            "media": ["audio", "video"],
            "video": {"width": 320, "height": 180, "drop_frames": [3, 4]},
        }
    )
    assert (scenario.video.width, scenario.video.drop_frames) == (320, (3, 4))
    with pytest.raises(ConfigError, match="unknown \\[video\\] keys"):
        scenario_from_mapping({"product": "meeting", "video": {"fps": 5}})
    with pytest.raises(ConfigError, match="size"):
        scenario_from_mapping({"product": "meeting", "video": {"width": 161}})


async def test_a_failing_spool_surfaces_as_a_storage_error() -> None:
    class FullDisk:
        def open(self, identity: Any, *, prologue_size: int = 0) -> Any:
            raise DiskFull("spool full")

    send, receive = trio.open_memory_channel[Any](4)
    send.send_nowait(_frame(0))
    send.close()
    with pytest.raises(DiskFull, match="spool full"):
        await run_video_capture(receive, FullDisk(), recording_id="r")
