"""The bundle's ``listening-video.mp4`` made in memory for the web console (blocking; run in a
worker thread): decrypted segments of one video track (bytes) and, when there is one, the
listening WAV (bytes) in, one MP4 (bytes) out. Nothing is written to disk (invariant 1).

As in the export (``remux``): packets are copied, never decoded or re-encoded, and rebased onto
the RTMS clock (each segment's pts 0 is its ``origin_ms``); the audio is encoded to AAC; zero is
the earlier of the two starts. Only the track's first part is muxed (its pictures up to the
first resolution change: an MP4 track has one size), like the bundle's file. The MP4's index
comes last (ffmpeg's ``faststart`` re-reads its output by name): the console serves it with
``Range`` support, so browsers fetch the index first anyway.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import av

from recorder.errors import VideoError
from recorder.video.fmp4 import MS
from recorder.video.remux import AAC_BITRATE, _audio_packets


@dataclass(frozen=True, slots=True)
class Segment:
    """One decrypted video segment: its plaintext MP4, RTMS start and catalog index."""

    data: bytes
    origin_ms: int
    index: int
    #: Salvaged by crash recovery: may end before its first picture (skipped then, not fatal).
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class MemoryVideo:
    data: bytes
    zero_ms: int
    frames: int
    width: int
    height: int
    with_audio: bool
    #: Segments left out: a recovered one that held no picture, or after a resolution change.
    skipped: tuple[int, ...]

    @property
    def content_type(self) -> str:
        return "video/mp4"


def _sizes(segment: Segment) -> tuple[int, int] | None:
    try:
        with av.open(io.BytesIO(segment.data), "r") as inp:
            if not inp.streams.video:
                return None
            ctx = inp.streams.video[0].codec_context
            return (ctx.width, ctx.height)
    except av.FFmpegError:
        return None


def listening_video(
    segments: Sequence[Segment], wav: bytes | None, audio_start_ms: int
) -> MemoryVideo:
    """The MP4 (see the module doc). Raises ``VideoError`` naming a segment that is damaged
    (a recovered one is skipped instead) or when no segment holds a picture."""
    usable: list[Segment] = []
    skipped: list[int] = []
    size: tuple[int, int] | None = None
    for seg in sorted(segments, key=lambda s: s.index):
        found = _sizes(seg)
        if found is None:
            if seg.recovered:
                skipped.append(seg.index)
                continue
            raise VideoError(f"video segment {seg.index}: not a readable MP4 with a video stream")
        if size is None:
            size = found
        if found != size:  # a resolution change: the rest is another part (see the export)
            skipped.extend(s.index for s in segments if s.index >= seg.index)
            break
        usable.append(seg)
    if not usable or size is None:
        raise VideoError("no video segment of this recording holds a picture")
    video_start = usable[0].origin_ms
    zero = video_start if wav is None else min(video_start, audio_start_ms)
    out_buf = io.BytesIO()
    frames = 0
    try:
        with (
            av.open(io.BytesIO(usable[0].data), "r") as first,
            av.open(out_buf, "w", format="mp4") as out,
        ):
            vstream = out.add_stream_from_template(first.streams.video[0])
            vstream.time_base = MS
            astream: av.AudioStream | None = None
            ait: Iterator[tuple[int, av.Packet[Any]]] = iter(())
            if wav is not None:
                with av.open(io.BytesIO(wav), "r") as ain:
                    channels = ain.streams.audio[0].codec_context.channels
                    rate = ain.streams.audio[0].codec_context.sample_rate
                astream = out.add_stream("aac", rate=rate)
                astream.codec_context.layout = "stereo" if channels == 2 else "mono"
                astream.codec_context.bit_rate = AAC_BITRATE
                ait = _audio_packets(io.BytesIO(wav), audio_start_ms - zero, astream)
            vit = _segment_packets(usable, zero, vstream)
            vnext, anext = next(vit, None), next(ait, None)
            while vnext is not None or anext is not None:
                if anext is None or (vnext is not None and vnext[0] <= anext[0]):
                    assert vnext is not None
                    out.mux(vnext[1])
                    frames += 1
                    vnext = next(vit, None)
                else:
                    out.mux(anext[1])
                    anext = next(ait, None)
    except av.FFmpegError as exc:
        raise VideoError(f"cannot mux the video with the listening audio: {exc}") from exc
    return MemoryVideo(
        out_buf.getvalue(), zero, frames, size[0], size[1], wav is not None, tuple(skipped)
    )


def _segment_packets(
    segments: Sequence[Segment], zero_ms: int, stream: av.VideoStream
) -> Iterator[tuple[int, av.Packet[Any]]]:
    last: int | None = None
    for seg in segments:
        with av.open(io.BytesIO(seg.data), "r") as inp:
            source = inp.streams.video[0]
            assert source.time_base is not None
            for packet in inp.demux(source):
                if packet.pts is None or packet.size == 0:
                    continue
                at_ms = seg.origin_ms + round(packet.pts * source.time_base * 1000)
                if last is not None and at_ms <= last:
                    continue  # overlap across a takeover: the first copy is kept
                duration = round((packet.duration or 0) * source.time_base * 1000)
                packet.pts = packet.dts = at_ms - zero_ms
                packet.duration = max(1, duration)
                packet.time_base = MS
                packet.stream = stream
                last = at_ms
                yield at_ms - zero_ms, packet


__all__ = ["MemoryVideo", "Segment", "listening_video"]
