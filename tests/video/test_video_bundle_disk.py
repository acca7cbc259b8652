"""The disk refusing an export's video files (a real ENOSPC: a small tmpfs filled up to what a
test leaves free): the error names the bundle file being written, never the evidence, and a
recovered segment is never listed as unreadable because the disk was full."""

from __future__ import annotations

import os
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from recorder.catalog.base import (
    RecordFileRow,
    RecordingDetail,
    RecordingRow,
    RecordingStatus,
    UploadState,
)
from recorder.errors import BundleWriteFailed, VideoError
from recorder.products import Product
from recorder.testing.memory_sink import MemorySinkFactory
from recorder.video.export import export_video
from recorder.video.pattern import PatternSpec, encode_pattern
from recorder.video.probe import pictures
from recorder.video.remux import TrackJoiner, mux_with_audio
from recorder.video.track import VideoTrack, VideoTrackConfig
from tests.conftest import fill_filesystem, mounted_tmpfs

#: What ``with_object`` runs in a thread: the plaintext's chunks and the sealed digest.
Work = Callable[[Iterator[bytes], str | None], None]

T0 = 1_765_000_000_000
FRAMES = 30
NO_SPACE = "cannot write: No space left on device"


def _segment(frames: int) -> bytes:
    """One recorded video segment's plaintext (fragmented MP4 at 5 fps)."""
    sinks = MemorySinkFactory()
    track = VideoTrack("r", "video", sinks, VideoTrackConfig(fps=5, fragment_ms=1000))
    units = encode_pattern(PatternSpec(frames=frames, keyframe_interval=5))
    for n in range(frames):
        track.feed(T0 + n * 200, units[n][0])
    track.finish()
    return sinks.sinks[0].plaintext


#: 6 s, 172 kB: the MP4 muxer keeps it all until the part is closed.
SEGMENT = _segment(FRAMES)


def _leave_free(mount: Path, leave: int) -> None:
    """Empties ``mount``, then fills it so that about ``leave`` bytes stay free."""
    for path in mount.iterdir():
        path.unlink()
    fill_filesystem(mount, leave=leave)


def _descriptors_on(directory: Path) -> list[str]:
    """What this process still has open under ``directory``: a refused output must hold
    nothing (in the long-running console, a descriptor left on a deleted file keeps its
    space taken until the process exits)."""
    inside = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
        if link.startswith(f"{directory}/"):
            inside.append(link)
    return inside


def _wav(path: Path, seconds: float) -> Path:
    rate = 16_000
    t = np.arange(int(rate * seconds)) / rate
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
    return path


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(leave=st.integers(0, 320 << 10))
@example(leave=0)
@example(leave=320 << 10)  # more than the tmpfs holds: nothing is filled
def test_the_joiner_finishes_its_part_or_names_it(
    tiny_filesystem: Path, tmp_path: Path, leave: int
) -> None:
    source = tmp_path / "segment.mp4"
    source.write_bytes(SEGMENT)
    _leave_free(tiny_filesystem, leave)
    joiner = TrackJoiner(tiny_filesystem, "cam")
    part = tiny_filesystem / "cam.mp4"
    refused: BundleWriteFailed | None = None
    try:
        joiner.add(source, T0, 0)
        joiner.close()
    except BundleWriteFailed as exc:
        refused = exc
    if refused is not None:
        assert str(refused) == f"{part}: {NO_SPACE}"
        assert leave < len(SEGMENT)
        assert _descriptors_on(tiny_filesystem) == []
    else:
        assert joiner.parts[0].frames == FRAMES
        assert len(list(pictures(part))) == FRAMES


@pytest.mark.parametrize("leave", [0, 8 << 10, 64 << 10])
def test_the_listening_video_names_its_file_when_the_disk_is_full(
    tiny_filesystem: Path, tmp_path: Path, leave: int
) -> None:
    joiner = TrackJoiner(tmp_path, "cam")
    source = tmp_path / "segment.mp4"
    source.write_bytes(SEGMENT)
    joiner.add(source, T0, 0)
    joiner.close()
    wav = _wav(tmp_path / "listening.wav", FRAMES / 5)
    _leave_free(tiny_filesystem, leave)
    target = tiny_filesystem / "listening-video.mp4"
    with pytest.raises(BundleWriteFailed) as caught:
        mux_with_audio(joiner.parts[0].path, T0, wav, T0, target)
    assert str(caught.value) == f"{target}: {NO_SPACE}"
    assert _descriptors_on(tiny_filesystem) == []


def test_an_input_that_cannot_be_read_is_still_a_video_error(tmp_path: Path) -> None:
    """PyAV's ``OSError`` for an input names that input: not the bundle file's failure."""
    wav = _wav(tmp_path / "listening.wav", 1.0)
    missing = tmp_path / "no-such-video.mp4"
    with pytest.raises(VideoError, match="cannot mux the video") as caught:
        mux_with_audio(missing, T0, wav, T0, tmp_path / "out.mp4")
    assert not isinstance(caught.value, BundleWriteFailed)


def _detail(segment: bytes, *, recovered: bool) -> RecordingDetail:
    recording = RecordingRow(
        recording_id="rec-1",
        rtms_stream_id="s1",
        product=Product.MEETING,
        instance_id="i1",
        operator_id=None,
        account_id=None,
        meeting_number=None,
        cc_queue_id=None,
        cc_queue_name=None,
        cc_agent_id=None,
        cc_agent_name=None,
        started_ms=T0,
        ended_ms=T0 + 60_000,
        end_reason=None,
        status=RecordingStatus.COMPLETE,
    )
    row = RecordFileRow(
        recording_id="rec-1",
        kind="video",
        record_index=0,
        object_key="rec-1/video/000000.mp4.rec",
        version_id=None,
        plaintext_sha256="0" * 64,
        stored_sha256=None,
        plaintext_size=len(segment),
        stored_size=len(segment),
        start_ms=T0,
        end_ms=T0 + 60_000,
        key_id="k",
        retain_until_ms=None,
        upload_state=UploadState.VERIFIED,
        recovered=recovered,
        uploaded_ms=T0,
        verified_ms=T0,
    )
    return RecordingDetail(recording, records=(row,))


@pytest.mark.parametrize("recovered", [False, True])
async def test_a_full_disk_while_joining_is_never_a_recovered_segment_found_unreadable(
    tmp_path: Path, recovered: bool
) -> None:
    """Room for the decrypted segment but not for the part it is joined into, which the muxer
    starts writing while the segment is still there (it writes in blocks of about 1 MB).
    Before, the refusal was a ``VideoError`` "segment 0: No space left": for a recovered
    segment, what the exporter records as unreadable evidence before going on. The export
    then failed only because the part's close failed too."""
    segment = _segment(300)  # 60 s, 1.7 MB

    async def hand_over(row: RecordFileRow, work: Work) -> None:
        # The store seam: the plaintext as ``with_object`` hands it to a thread (no sealed
        # digest to compare: that check has its own tests).
        await trio.to_thread.run_sync(work, iter([segment]), None)

    with trio.fail_after(30), mounted_tmpfs(tmp_path / "small", "4m") as mount:
        _leave_free(mount, len(segment) + (256 << 10))
        rdir = mount / "rec-1"
        rdir.mkdir()
        with pytest.raises(BundleWriteFailed) as caught:
            await export_video(
                _detail(segment, recovered=recovered), mount, rdir, hand_over, listening=None
            )
    assert str(caught.value) == f"{rdir / 'video' / 'video.mp4'}: {NO_SPACE}"
