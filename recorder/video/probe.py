"""Read an MP4 back: every picture's presentation time and its burned-in frame number.

Used by tests and by ``recorder bench video`` to check what the recorder exported against what
the simulator sent; decoding is fine here, the recording path never decodes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from recorder.errors import VideoError
from recorder.video.pattern import read_frame_number


@dataclass(frozen=True, slots=True)
class Picture:
    #: Presentation time in ms from the file's zero.
    time_ms: int
    #: The burned-in number, None when unreadable (not a test pattern).
    number: int | None
    width: int
    height: int


def pictures(source: Path | bytes, *, stream_index: int = 0) -> list[Picture]:
    """Decode every picture of the ``stream_index``-th video stream."""
    handle: Path | io.BytesIO = io.BytesIO(source) if isinstance(source, bytes) else source
    out: list[Picture] = []
    try:
        with av.open(handle, "r") as container:
            stream = container.streams.video[stream_index]
            for frame in container.decode(stream):
                if frame.pts is None or frame.time_base is None:
                    raise VideoError("decoded picture without a timestamp")
                luma = np.asarray(frame.to_ndarray(format="gray"), dtype=np.uint8)
                out.append(
                    Picture(
                        time_ms=round(frame.pts * frame.time_base * 1000),
                        number=read_frame_number(luma),
                        width=frame.width,
                        height=frame.height,
                    )
                )
    except av.FFmpegError as exc:
        raise VideoError(f"cannot decode the MP4: {exc}") from exc
    return out


def packet_times(source: Path | bytes, *, stream_index: int = 0) -> list[int]:
    """Presentation time (ms from the file's zero) of every stored access unit, without
    decoding: what the file holds, whether or not each picture decodes cleanly."""
    handle: Path | io.BytesIO = io.BytesIO(source) if isinstance(source, bytes) else source
    out: list[int] = []
    try:
        with av.open(handle, "r") as container:
            stream = container.streams.video[stream_index]
            assert stream.time_base is not None
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:
                    out.append(round(packet.pts * stream.time_base * 1000))
    except av.FFmpegError as exc:
        raise VideoError(f"cannot read the MP4: {exc}") from exc
    return out


__all__ = ["Picture", "packet_times", "pictures"]
