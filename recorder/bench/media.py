"""The web console's player on a long call: ``recorder bench media [--minutes 120]``.

Seals a call of ``--minutes`` of 16 kHz mono PCM in five-minute segments (the recorder's
defaults: 64 KiB chunks, a WAV prologue each) into a temporary directory, then prints:

* opening the track (the first segment fetched and its header authenticated): ms;
* a cold range read (a segment not yet open: fetch, index, decrypt the covering chunks) and a
  warm one (the segment open), 64 KiB each, at random places: ms per read;
* one sequential pass reading the whole WAV through ``iter_range`` (what a download does): MB/s;
* the peaks (100 per second) in one verifying pass: seconds, MB/s of PCM, their size in memory
  and as JSON.

The segments are read from files through the ``SealedObjects`` seam (no object store): what is
measured is decryption, indexing and the byte map, not a store's latency.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import trio

from recorder.audio.wav import HEADER_SIZE, BextInfo, build_wav_header
from recorder.catalog.base import SegmentRow, UploadState
from recorder.crypto.keyring import DirectoryRecordingKeyStore, RecordingKeyring
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.crypto.random_access import SealedIndex
from recorder.crypto.writer import SpoolSinkFactory
from recorder.officer.bundle.plan import plan_track
from recorder.officer.media import TrackMedia, segment_format
from recorder.sink import SegmentIdentity

_MB = 1_000_000
RATE = 16_000
SEGMENT_S = 300
T0_MS = 1_765_000_000_000


class _Files:
    def __init__(self, paths: dict[str, Path]) -> None:
        self._paths = paths

    async def fetch(self, segment: SegmentRow) -> BinaryIO:
        return self._paths[segment.object_key].open("rb")


def _seal(
    root: Path, keyring: RecordingKeyring, minutes: int
) -> tuple[list[SegmentRow], dict[str, Path]]:
    factory = SpoolSinkFactory(root / "spool", keyring)
    rows: list[SegmentRow] = []
    paths: dict[str, Path] = {}
    noise = os.urandom(RATE * 2)  # one second of "audio", repeated
    total_s = minutes * 60
    for index, start_s in enumerate(range(0, total_s, SEGMENT_S)):
        seconds = min(SEGMENT_S, total_s - start_s)
        identity = SegmentIdentity("bench-rec", "mixed", index, T0_MS + start_s * 1000, {})
        header = build_wav_header(
            sample_rate=RATE,
            channels=1,
            data_length=seconds * RATE * 2,
            bext=BextInfo("bench-rec", T0_MS + start_s * 1000),
        )
        sink = factory.open(identity, prologue_size=len(header))
        for _ in range(seconds):
            sink.write(noise)
        sealed = sink.close(header)
        assert sealed.path is not None
        key = f"bench/{index}"
        paths[key] = sealed.path
        rows.append(
            SegmentRow(
                recording_id="bench-rec",
                track="mixed",
                segment_index=index,
                participant_id=None,
                object_key=key,
                version_id=None,
                plaintext_sha256=sealed.sha256,
                stored_sha256=None,
                plaintext_size=len(header) + seconds * RATE * 2,
                stored_size=sealed.path.stat().st_size,
                start_ms=T0_MS + start_s * 1000,
                end_ms=T0_MS + (start_s + seconds) * 1000,
                start_sample=start_s * RATE,
                sample_count=seconds * RATE,
                sample_rate=RATE,
                codec="L16",
                key_id=sealed.key_id,
                retain_until_ms=None,
                upload_state=UploadState.VERIFIED,
                recovered=False,
                uploaded_ms=None,
                verified_ms=None,
            )
        )
    return rows, paths


async def _run(root: Path, minutes: int, reads: int) -> None:
    keyring = RecordingKeyring(
        DirectoryRecordingKeyStore(root / "keys" / "recording-keys"),
        provider=LocalKeyProvider(root / "keys" / "kek"),
    )
    start = time.perf_counter()
    rows, paths = await trio.to_thread.run_sync(_seal, root, keyring, minutes)
    print(f"sealed {minutes} min of 16 kHz mono in {len(rows)} segments: "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    objects = _Files(paths)
    start = time.perf_counter()
    plan = plan_track("mixed", rows, [])
    with await objects.fetch(rows[0]) as first:
        head = SealedIndex(first, keyring, source="first").read(0, HEADER_SIZE)
    channels, _, _ = segment_format(head, name="first")
    media = TrackMedia(
        objects, keyring, plan, recording_id="bench-rec", channels=channels, audit_id=0
    )
    print(f"open: {(time.perf_counter() - start) * 1000:.1f} ms; WAV {media.length / _MB:.0f} MB")
    rng = random.Random(7)  # noqa: S311 - places to read, not secrets
    cold = warm = 0.0
    for _ in range(reads):
        at = rng.randrange(0, media.length - 65536)
        await media.aclose()
        media = TrackMedia(
            objects, keyring, plan, recording_id="bench-rec", channels=channels, audit_id=0
        )
        t = time.perf_counter()
        await media.read(at, at + 65536)
        cold += time.perf_counter() - t
        t = time.perf_counter()
        await media.read(at, at + 65536)  # the segment is open now: decryption only
        warm += time.perf_counter() - t
    print(
        f"range read 64 KiB: cold {cold / reads * 1000:.2f} ms, warm {warm / reads * 1000:.2f} ms"
    )
    t = time.perf_counter()
    size = 0
    async for block in media.iter_range(0, media.length):
        size += len(block)
    spent = time.perf_counter() - t
    print(f"sequential pass: {size / _MB / spent:.0f} MB/s ({spent:.1f} s)")
    t = time.perf_counter()
    peaks = await media.peaks(100)
    spent = time.perf_counter() - t
    body = json.dumps(peaks.to_json())
    print(
        f"peaks: {spent:.2f} s ({(media.length - 44) / _MB / spent:.0f} MB/s of PCM), "
        f"{peaks.count} peaks, {peaks.count * 4 / 1024:.0f} KiB in memory, "
        f"{len(body) / _MB:.1f} MB as JSON"
    )
    await media.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=120)
    parser.add_argument("--reads", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None, help="file system to write on")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="rtmsrec-bench-media-") as tmp:
        trio.run(_run, Path(tmp), args.minutes, args.reads)
    return 0


if __name__ == "__main__":
    main()
