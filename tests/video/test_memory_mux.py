"""The console's in-memory listening video (``recorder.video.memory_mux``) over real segments
from ``VideoTrack`` (encrypted, then decrypted): pictures at their RTMS times, the audio on the
same clock, a resolution change ends the MP4, a damaged segment is named (a recovered one is
skipped)."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import pytest

from recorder.crypto.keyring import RecordingKeyring
from recorder.crypto.writer import SpoolSinkFactory
from recorder.errors import VideoError
from recorder.video.memory_mux import Segment, listening_video
from recorder.video.pattern import PatternSpec, encode_pattern
from recorder.video.track import VideoTrack, VideoTrackConfig
from tests.video.test_video_track import INTERVAL, T0, _plain, _run, keyring, sinks

__all__ = ["keyring", "sinks"]  # fixtures


def _segments(sinks: SpoolSinkFactory, keyring: RecordingKeyring) -> list[Segment]:
    small = encode_pattern(PatternSpec(width=160, height=90, frames=10, keyframe_interval=5))
    big = encode_pattern(PatternSpec(width=320, height=180, frames=5, keyframe_interval=5))
    track = VideoTrack("rec-m", "video", sinks, VideoTrackConfig(fps=5, segment_ms=1000))
    frames = [(T0 + n * INTERVAL, small[n][0]) for n in range(10)]
    frames += [(T0 + (10 + n) * INTERVAL, big[n][0]) for n in range(5)]
    return [
        Segment(_plain(sealed, keyring), entry.start_ms, entry.segment_index)
        for sealed, entry in _run(track, frames)
    ]


def _wav(seconds: float, rate: int = 16_000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x10\x00" * int(seconds * rate))
    return out.getvalue()


def test_pictures_and_audio_on_one_clock_until_the_resolution_change(
    sinks: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    segments = _segments(sinks, keyring)
    assert len(segments) == 3  # 160x90 in two 1 s segments, then 320x180
    # The audio starts 400 ms before the video: zero is the audio's start.
    video = listening_video(segments, _wav(3.0), T0 - 400)
    assert video.zero_ms == T0 - 400
    assert (video.width, video.height, video.frames) == (160, 90, 10)
    assert video.skipped == (segments[2].index,)
    assert video.with_audio
    with av.open(io.BytesIO(video.data)) as mp4:
        times = [
            round(float(f.pts * f.time_base) * 1000)
            for f in mp4.decode(video=0)
            if f.pts is not None and f.time_base is not None
        ]
    assert times == [400 + n * INTERVAL for n in range(10)]
    with av.open(io.BytesIO(video.data)) as mp4:
        assert mp4.streams.audio[0].codec_context.name == "aac"
        audio_s = sum(f.samples / f.sample_rate for f in mp4.decode(audio=0))
    assert audio_s == pytest.approx(3.0, abs=0.1)
    alone = listening_video(segments[:2], None, 0)
    assert alone.zero_ms == T0
    assert not alone.with_audio


def test_a_damaged_segment_is_named_and_a_recovered_one_skipped(
    sinks: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    good = _segments(sinks, keyring)[:2]
    broken = Segment(b"\x00\x00\x00\x08junk" * 10, good[1].origin_ms + 1000, 7)
    with pytest.raises(VideoError, match="video segment 7"):
        listening_video([*good, broken], None, 0)
    salvaged = Segment(broken.data, broken.origin_ms, 7, recovered=True)
    video = listening_video([*good, salvaged], None, 0)
    assert video.frames == 10
    assert video.skipped == (7,)
    with pytest.raises(VideoError, match="no video segment"):
        listening_video([salvaged], None, 0)


def test_memory_only(tmp_path: Path, sinks: SpoolSinkFactory, keyring: RecordingKeyring) -> None:
    """Nothing of the plaintext reaches a file (the spool holds ciphertext only)."""
    segments = _segments(sinks, keyring)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    video = listening_video(segments, _wav(1.0), T0)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert video.data[4:8] == b"ftyp"
