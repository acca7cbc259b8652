"""VideoTrack over real encrypted sinks: keyframe-aligned segments, gaps and their causes,
resolution changes, hostile frames; every MP4 decodes and its pictures sit at their RTMS times."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.crypto.keyring import DirectoryRecordingKeyStore, RecordingKeyring
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.crypto.reader import iter_plaintext
from recorder.crypto.writer import SpoolSinkFactory
from recorder.rtms.events import GapCause
from recorder.sink import SealedSegment
from recorder.testing.memory_sink import MemorySinkFactory
from recorder.video.pattern import PatternSpec, encode_pattern
from recorder.video.probe import packet_times, pictures
from recorder.video.track import (
    AWAITING_KEYFRAME,
    RESOLUTION_CHANGE,
    VideoSegmentEntry,
    VideoTrack,
    VideoTrackConfig,
)

T0 = 1_765_000_000_000
SPEC = PatternSpec(width=160, height=90, fps=5, keyframe_interval=10, frames=40)
INTERVAL = 200


@pytest.fixture
def keyring(tmp_path: Path) -> RecordingKeyring:
    return RecordingKeyring(
        DirectoryRecordingKeyStore(tmp_path / "keys"),
        provider=LocalKeyProvider(tmp_path / "kek"),
    )


@pytest.fixture
def sinks(tmp_path: Path, keyring: RecordingKeyring) -> SpoolSinkFactory:
    return SpoolSinkFactory(tmp_path / "spool", keyring, chunk_size=4096)


def _plain(sealed: SealedSegment, keyring: RecordingKeyring) -> bytes:
    assert sealed.path is not None
    return b"".join(iter_plaintext(sealed.path, keyring))


def _run(
    track: VideoTrack, frames: list[tuple[int, bytes]]
) -> list[tuple[SealedSegment, VideoSegmentEntry]]:
    out = []
    for ts, data in frames:
        out += track.feed(ts, data)
    out += track.finish()
    return out


def test_segments_rotate_on_keyframes_and_decode_at_rtms_times(
    sinks: SpoolSinkFactory, keyring: RecordingKeyring, tmp_path: Path
) -> None:
    units = encode_pattern(SPEC)
    track = VideoTrack("rec-1", "video", sinks, VideoTrackConfig(fps=5, segment_ms=3000))
    dropped = {13, 14, 27}
    frames = [(T0 + n * INTERVAL, units[n][0]) for n in range(40) if n not in dropped]
    sealed = _run(track, frames)
    # 3 s = 15 frames: rotation waits for the next keyframe (every 10 frames).
    assert [e.start_ms for _, e in sealed] == [T0, T0 + 20 * INTERVAL]
    assert [e.frames for _, e in sealed] == [18, 19]
    assert all(e.keyframes == 2 for _, e in sealed)
    gaps = [g for _, e in sealed for g in e.gaps]
    assert [(g.start_ms, g.end_ms, g.cause) for g in gaps] == [
        (T0 + 13 * INTERVAL, T0 + 15 * INTERVAL, GapCause.LOST_PACKETS),
        (T0 + 27 * INTERVAL, T0 + 28 * INTERVAL, GapCause.LOST_PACKETS),
    ]
    got = []
    for seal, entry in sealed:
        plain = _plain(seal, keyring)
        assert seal.plaintext_size == len(plain)
        for pic in pictures(plain):
            got.append((entry.origin_ms + pic.time_ms, pic.number))
    sent = [n for n in range(40) if n not in dropped]
    assert [t for t, _ in got] == [T0 + n * INTERVAL for n in sent]
    # Pictures that reference a lost one (up to the next keyframe) are kept as received, but
    # may not decode cleanly; every other picture shows its own frame number.
    damaged = set(range(15, 20)) | set(range(28, 30))
    assert [num for (_, num), n in zip(got, sent, strict=True) if n not in damaged] == [
        n for n in sent if n not in damaged
    ]
    # Encrypted as written: the spool holds no MP4 box in the clear.
    for path in (tmp_path / "spool").rglob("*"):
        if path.is_file():
            assert b"ftyp" not in path.read_bytes()
            assert b"moof" not in path.read_bytes()


def test_waits_for_a_keyframe_and_skips_after_a_broken_frame(
    sinks: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    units = encode_pattern(SPEC)
    track = VideoTrack("rec-2", "deskshare", sinks, VideoTrackConfig(fps=5))
    frames = [(T0 + n * INTERVAL, units[n][0]) for n in range(3, 30)]
    frames[10] = (frames[10][0], b"\x00\x00\x01garbage")  # frame 13
    sealed = _run(track, frames)
    assert len(sealed) == 1
    _, entry = sealed[0]
    assert entry.start_ms == T0 + 10 * INTERVAL
    assert [(g.start_ms, g.end_ms, g.cause) for g in entry.gaps] == [
        (T0 + 3 * INTERVAL, T0 + 10 * INTERVAL, AWAITING_KEYFRAME),
        (T0 + 13 * INTERVAL, T0 + 20 * INTERVAL, GapCause.DECODE_ERROR),
    ]
    numbers = [p.number for p in pictures(_plain(sealed[0][0], keyring))]
    assert numbers == [10, 11, 12, *range(20, 30)]
    assert track.counters["skipped_decode_error"] == 1


def test_resolution_change_seals_and_is_recorded(
    sinks: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    small = encode_pattern(PatternSpec(width=160, height=90, frames=10, keyframe_interval=5))
    big = encode_pattern(PatternSpec(width=320, height=180, frames=10, keyframe_interval=5))
    track = VideoTrack("rec-3", "video", sinks, VideoTrackConfig(fps=5))
    frames = [(T0 + n * INTERVAL, small[n][0]) for n in range(10)]
    frames += [(T0 + (10 + n) * INTERVAL, big[n][0]) for n in range(10)]
    sealed = _run(track, frames)
    assert [(e.width, e.height, e.frames) for _, e in sealed] == [(160, 90, 10), (320, 180, 10)]
    change = sealed[0][1].gaps[-1]
    assert change.cause == RESOLUTION_CHANGE
    assert change.detail == "160x90 -> 320x180"
    assert {(p.width, p.height) for p in pictures(_plain(sealed[1][0], keyring))} == {(320, 180)}


def test_replayed_and_implausible_timestamps_are_left_out(sinks: SpoolSinkFactory) -> None:
    units = encode_pattern(SPEC)
    track = VideoTrack("rec-4", "video", sinks, VideoTrackConfig(fps=5))
    frames = [(T0 + n * INTERVAL, units[n][0]) for n in range(5)]
    frames += [(T0 + 2 * INTERVAL, units[2][0]), (17, units[5][0]), (2**62, units[5][0])]
    frames += [(T0 + 5 * INTERVAL, units[5][0])]
    sealed = _run(track, frames)
    assert sealed[0][1].frames == 6
    assert sealed[0][1].gaps == ()
    assert track.counters["late_or_duplicate"] == 1
    assert track.counters["bad_timestamp"] == 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-500, max_value=1500),  # timestamp step (ms)
            # a keyframe, any real unit, or garbage
            st.one_of(st.sampled_from([0, 10, 20]), st.integers(0, 39), st.binary(max_size=40)),
        ),
        max_size=60,
    )
)
def test_any_stream_gives_decodable_segments_with_ordered_gaps(
    steps: list[tuple[int, int | bytes]],
) -> None:
    units = encode_pattern(SPEC)
    sinks = MemorySinkFactory()
    track = VideoTrack("rec-h", "video", sinks, VideoTrackConfig(fps=5, segment_ms=1500))
    ts = T0
    sealed = []
    for step, what in steps:
        ts += step
        payload = units[what][0] if isinstance(what, int) else what
        sealed += track.feed(ts, payload)
    sealed += track.finish()
    written = 0
    last_end = None
    for seal, entry in sealed:
        assert entry.frames >= 1
        assert entry.start_ms <= entry.end_ms
        plain = next(s.plaintext for s in sinks.sinks if s.sealed is seal)
        times = [entry.origin_ms + t for t in packet_times(plain)]
        assert len(times) == entry.frames
        # Pictures referencing ones never received may not decode; the rest must.
        assert 1 <= len(pictures(plain)) <= entry.frames
        assert times == sorted(set(times))
        if last_end is not None:
            assert times[0] > last_end  # segments follow each other
        last_end = times[-1]
        starts = [g.start_ms for g in entry.gaps]
        assert starts == sorted(starts)
        assert all(g.start_ms <= g.end_ms for g in entry.gaps)
        written += entry.frames
    assert written == track.counters["frames"]
