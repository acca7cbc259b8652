"""A recorder killed mid video segment: the encrypted .part is recovered by the same crash
recovery as audio, and what comes back is an MP4 holding every picture up to about one second
before the crash, each at its RTMS time (invariant 6 for video)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from recorder.crypto import DirectoryRecordingKeyStore, RecordingKeyring, iter_plaintext, recover
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.video.probe import pictures

T0 = 1_765_000_000_000
FRAMES = 30  # 6 s at 5 fps

WRITER = textwrap.dedent(
    f"""
    import os, sys
    from pathlib import Path
    from recorder.crypto import DirectoryRecordingKeyStore, RecordingKeyring, SpoolSinkFactory
    from recorder.crypto.keys.local import LocalKeyProvider
    from recorder.video.pattern import PatternSpec, encode_pattern
    from recorder.video.track import VideoTrack, VideoTrackConfig

    root = Path(sys.argv[1])
    keyring = RecordingKeyring(
        DirectoryRecordingKeyStore(root / "recording-keys"),
        provider=LocalKeyProvider(root / "kek"),
    )
    sinks = SpoolSinkFactory(root / "spool", keyring, chunk_size=4096)
    units = encode_pattern(PatternSpec(frames={FRAMES}, keyframe_interval=10))
    track = VideoTrack("rec-crash", "video", sinks, VideoTrackConfig(fps=5))
    for n in range({FRAMES}):
        track.feed({T0} + n * 200, units[n][0])
        if n % 5 == 4:
            track.checkpoint()  # once a second of video, as run_video_capture does
    os._exit(9)
    """
)


def test_a_killed_writer_leaves_a_recoverable_mp4(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(tmp_path)], capture_output=True, timeout=60
    )
    assert done.returncode == 9, done.stderr.decode()
    [part] = (tmp_path / "spool").glob("*.part")
    assert b"moof" not in part.read_bytes()  # encrypted as written
    keyring = RecordingKeyring(
        DirectoryRecordingKeyStore(tmp_path / "recording-keys"),
        provider=LocalKeyProvider(tmp_path / "kek"),
    )
    report = recover(part, keyring)
    assert report.sealed.path is not None
    assert report.sealed.identity.metadata["origin_ms"] == T0
    plain = b"".join(iter_plaintext(report.sealed.path, keyring))
    got = [(T0 + p.time_ms, p.number) for p in pictures(plain)]
    # Everything up to the last checkpoint's fragment survives: at most ~1 s (5 frames) plus
    # the fragment being built is lost (25 of 30 here).
    assert len(got) >= FRAMES - 6, len(got)
    assert got == [(T0 + n * 200, n) for n in range(len(got))]
