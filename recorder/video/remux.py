"""Export-side MP4 work (blocking; run in worker threads): join a track's segments into one
MP4 on its RTMS timeline, and mux a video track with the listening WAV (AAC) for browsers.

Still no video decode or re-encode: packets are copied, only their timestamps are rebased (each
segment's pts 0 is its ``origin_ms``). The audio is encoded to AAC block by block, and the two
are interleaved by time here, so neither file is ever held in memory whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Final

import av

from recorder.durable import writing_bundle_file
from recorder.errors import BundleWriteFailed, VideoError
from recorder.video.fmp4 import MS

#: What a browser plays: H.264 + AAC in an MP4 whose index comes first.
_FASTSTART: Final = {"movflags": "+faststart"}
AAC_BITRATE: Final = 96_000


@dataclass(slots=True)
class TrackPart:
    """One output MP4 of a track (a track is split where its resolution changes)."""

    path: Path
    start_ms: int
    width: int
    height: int
    frames: int = 0
    end_ms: int = 0
    #: RTMS ms of every picture (bounded by the track's length; for the manifest's counts).
    segments: list[int] = field(default_factory=list)


class TrackJoiner:
    """Append decrypted segments (in order) to MP4 parts of one track."""

    def __init__(self, directory: Path, track: str) -> None:
        self._dir = directory
        self._track = track
        self.parts: list[TrackPart] = []
        self._out: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._last_ms: int | None = None

    def add(self, segment: Path, origin_ms: int, segment_index: int) -> None:
        try:
            with av.open(str(segment), "r") as inp:
                if not inp.streams.video:
                    raise VideoError(f"{self._track} segment {segment_index}: no video stream")
                source = inp.streams.video[0]
                size = (source.codec_context.width, source.codec_context.height)
                part = self.parts[-1] if self.parts else None
                if part is None or (part.width, part.height) != size:
                    self._start(source, origin_ms, size)
                part = self.parts[-1]
                part.segments.append(segment_index)
                assert self._out is not None
                assert self._stream is not None
                for packet in inp.demux(source):
                    if packet.pts is None or packet.size == 0:
                        continue
                    assert source.time_base is not None
                    at_ms = origin_ms + round(packet.pts * source.time_base * 1000)
                    if self._last_ms is not None and at_ms <= self._last_ms:
                        continue  # overlap across a takeover: the first copy is kept
                    duration = round((packet.duration or 0) * source.time_base * 1000)
                    packet.pts = packet.dts = at_ms - part.start_ms
                    packet.duration = max(1, duration)
                    packet.time_base = MS
                    packet.stream = self._stream
                    with writing_bundle_file(part.path):
                        self._out.mux(packet)
                    self._last_ms = at_ms
                    part.frames += 1
                    part.end_ms = at_ms + max(1, duration)
        except BundleWriteFailed:
            self._abandon()
            raise
        except av.FFmpegError as exc:
            raise VideoError(f"{self._track} segment {segment_index}: {exc}") from exc

    def _start(self, source: av.VideoStream, origin_ms: int, size: tuple[int, int]) -> None:
        self.close()
        n = len(self.parts)
        name = f"{self._track}.mp4" if n == 0 else f"{self._track}.{n + 1}.mp4"
        path = self._dir / name
        with writing_bundle_file(path):
            path.touch(mode=0o600, exist_ok=False)
            out = av.open(str(path), "w", format="mp4", options=_FASTSTART)
        stream = out.add_stream_from_template(source)
        stream.time_base = MS
        self._out, self._stream = out, stream
        self.parts.append(TrackPart(path, origin_ms, size[0], size[1]))

    def close(self) -> None:
        if self._out is not None:
            try:
                with writing_bundle_file(self.parts[-1].path):
                    self._out.close()
            except BundleWriteFailed:
                self._abandon()
                raise
            except av.FFmpegError as exc:
                raise VideoError(f"{self._track}: cannot finish the MP4: {exc}") from exc
            finally:
                close_descriptors_left_on(self.parts[-1].path)
            self._out = None
            self._stream = None

    def _abandon(self) -> None:
        """Lets go of the part the disk refused: its file is of no use (the bundle is removed
        whole), and an open descriptor would hold the disk's space until collected."""
        out, self._out, self._stream = self._out, None, None
        if out is not None:
            with contextlib.suppress(OSError, av.FFmpegError):
                out.close()
            close_descriptors_left_on(self.parts[-1].path)


def close_descriptors_left_on(path: Path) -> None:
    """Closes what this process still has open on ``path``, an output already closed.

    Why: when the disk refuses an MP4's header, PyAV never closes the file FFmpeg opened for
    it (``close`` skips ``avio_closep`` for an output that never started), not even when the
    container is collected. In the web console that descriptor, and the refused file's space
    once the bundle is removed, would stay taken until the process exits. Only for a path no
    other code holds open: a bundle file in the export's own directory.
    """
    wanted = str(path.resolve())
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return  # no /proc: nothing to find the descriptor by
    for name in descriptors:
        try:
            if os.readlink(f"/proc/self/fd/{name}") == wanted:
                os.close(int(name))
        except OSError:
            continue  # the listing's own descriptor, closed by now


def _video_packets(
    inp: av.container.InputContainer, shift_ms: int, stream: av.VideoStream
) -> Iterator[tuple[int, av.Packet[Any]]]:
    source = inp.streams.video[0]
    assert source.time_base is not None
    for packet in inp.demux(source):
        if packet.pts is None or packet.size == 0:
            continue
        ms = round(packet.pts * source.time_base * 1000) + shift_ms
        duration = round((packet.duration or 0) * source.time_base * 1000)
        packet.pts = packet.dts = ms
        packet.duration = max(1, duration)
        packet.time_base = MS
        packet.stream = stream
        yield ms, packet


def _audio_packets(
    wav: Path | BinaryIO, shift_ms: int, encoder: av.AudioStream
) -> Iterator[tuple[int, av.Packet[Any]]]:
    rate = encoder.codec_context.sample_rate
    base = shift_ms * rate // 1000
    resampler = av.AudioResampler(format="fltp", layout=encoder.codec_context.layout, rate=rate)
    sent = 0
    with av.open(str(wav) if isinstance(wav, Path) else wav, "r") as inp:
        for frame in inp.decode(audio=0):
            for out in resampler.resample(frame):
                out.pts = base + sent
                out.time_base = Fraction(1, rate)
                sent += out.samples
                for packet in encoder.encode(out):
                    yield _packet_ms(packet, rate), packet
        for out in resampler.resample(None):
            out.pts = base + sent
            sent += out.samples
            for packet in encoder.encode(out):
                yield _packet_ms(packet, rate), packet
    for packet in encoder.encode(None):
        yield _packet_ms(packet, rate), packet


def _packet_ms(packet: av.Packet[Any], rate: int) -> int:
    return (packet.pts or 0) * 1000 // rate


def mux_with_audio(
    video: Path, video_start_ms: int, wav: Path, audio_start_ms: int, target: Path
) -> tuple[str, int, int]:
    """``target``: the video and the WAV as AAC, both on the RTMS clock, zero at the earlier
    of the two starts. Returns (sha256, size, zero_ms)."""
    zero = min(video_start_ms, audio_start_ms)
    try:
        with writing_bundle_file(target):
            target.touch(mode=0o600, exist_ok=False)
        with av.open(str(wav), "r") as ain:
            channels = ain.streams.audio[0].codec_context.channels
            rate = ain.streams.audio[0].codec_context.sample_rate
        with (
            writing_bundle_file(target),
            av.open(str(video), "r") as vin,
            av.open(str(target), "w", format="mp4", options=_FASTSTART) as out,
        ):
            vstream = out.add_stream_from_template(vin.streams.video[0])
            vstream.time_base = MS
            astream = out.add_stream("aac", rate=rate)
            astream.codec_context.layout = "stereo" if channels == 2 else "mono"
            astream.codec_context.bit_rate = AAC_BITRATE
            vit = _video_packets(vin, video_start_ms - zero, vstream)
            ait = _audio_packets(wav, audio_start_ms - zero, astream)
            vnext, anext = next(vit, None), next(ait, None)
            while vnext is not None or anext is not None:
                if anext is None or (vnext is not None and vnext[0] <= anext[0]):
                    assert vnext is not None
                    out.mux(vnext[1])
                    vnext = next(vit, None)
                else:
                    out.mux(anext[1])
                    anext = next(ait, None)
    except BundleWriteFailed:
        close_descriptors_left_on(target)
        raise
    except av.FFmpegError as exc:
        close_descriptors_left_on(target)
        raise VideoError(f"cannot mux the video with the listening audio: {exc}") from exc
    sha, size = hash_file(target)
    return sha, size, zero


def hash_file(path: Path) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            hasher.update(block)
            size += len(block)
    return hasher.hexdigest(), size


__all__ = ["TrackJoiner", "TrackPart", "hash_file", "mux_with_audio"]
