"""Video recording and export costs: ``recorder bench video``.

Prints, for a libx264 test pattern of the given size and rate (made once, then replayed):

* **record**: CPU µs per video frame and MB/s for ``VideoTrack.feed`` (H.264 inspection, MP4
  remux with PyAV, streaming encryption into the spool) including segment seals, with a
  checkpoint (fsync) every second of video, as the capture does;
* **inspect**: CPU µs per frame of the Annex-B/SPS inspection alone;
* **export**: MB/s of joining the sealed segments back into one MP4 (decrypt, digest, remux).

CPU is ``time.process_time`` (this process, all threads); MB are 10**6 bytes of H.264.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from recorder.crypto.keyring import DirectoryRecordingKeyStore, RecordingKeyring
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.crypto.reader import iter_plaintext
from recorder.crypto.writer import SpoolSinkFactory
from recorder.video.h264 import inspect
from recorder.video.pattern import PatternSpec, encode_pattern
from recorder.video.remux import TrackJoiner
from recorder.video.track import VideoTrack, VideoTrackConfig

_MB = 1_000_000
T0 = 1_765_000_000_000


def run(
    *, width: int, height: int, fps: int, seconds: int, keyint: int, segment_s: int
) -> dict[str, float]:
    frames = min(6000, fps * 10)
    units = encode_pattern(PatternSpec(width, height, fps, keyint, frames))
    total = fps * seconds
    payload_bytes = sum(len(units[n % frames][0]) for n in range(total))
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keyring = RecordingKeyring(
            DirectoryRecordingKeyStore(root / "keys"), provider=LocalKeyProvider(root / "kek")
        )
        sinks = SpoolSinkFactory(root / "spool", keyring)
        track = VideoTrack(
            "bench", "video", sinks, VideoTrackConfig(fps=fps, segment_ms=segment_s * 1000)
        )
        sealed = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for n in range(total):
            sealed += track.feed(T0 + n * 1000 // fps, units[n % frames][0])
            if n % fps == fps - 1:
                track.checkpoint()
        sealed += track.finish()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        figures["record_us_per_frame"] = cpu / total * 1e6
        figures["record_mb_s"] = payload_bytes / _MB / wall
        cpu0 = time.process_time()
        for n in range(total):
            inspect(units[n % frames][0])
        figures["inspect_us_per_frame"] = (time.process_time() - cpu0) / total * 1e6
        out = root / "export"
        out.mkdir()
        joiner = TrackJoiner(out, "video")
        wall0 = time.perf_counter()
        plain_bytes = 0
        for index, (seal, entry) in enumerate(sealed):
            assert seal.path is not None
            tmp_file = out / f".seg-{index}.mp4"
            with tmp_file.open("wb") as handle:
                for chunk in iter_plaintext(seal.path, keyring):
                    handle.write(chunk)
                    plain_bytes += len(chunk)
            joiner.add(tmp_file, entry.origin_ms, entry.segment_index)
            tmp_file.unlink()
        joiner.close()
        figures["export_mb_s"] = plain_bytes / _MB / (time.perf_counter() - wall0)
        figures["segments"] = len(sealed)
        figures["frames"] = total
        figures["h264_mb"] = payload_bytes / _MB
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--keyint", type=int, default=50, help="frames between keyframes")
    parser.add_argument("--segment-seconds", type=int, default=10)
    args = parser.parse_args(argv)
    f = run(
        width=args.width,
        height=args.height,
        fps=args.fps,
        seconds=args.seconds,
        keyint=args.keyint,
        segment_s=args.segment_seconds,
    )
    print(
        f"video {args.width}x{args.height} {args.fps} fps, {int(f['frames'])} frames, "
        f"{f['h264_mb']:.1f} MB H.264, {int(f['segments'])} segments"
    )
    print(f"  record  {f['record_us_per_frame']:8.1f} µs CPU/frame  {f['record_mb_s']:8.1f} MB/s")
    print(f"  inspect {f['inspect_us_per_frame']:8.1f} µs CPU/frame")
    print(f"  export  {f['export_mb_s']:8.1f} MB/s (decrypt + digest + remux)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
