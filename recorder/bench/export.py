"""Export throughput for one large recording: ``recorder bench export [--minutes 120]``.

Builds a Contact Center recording of two legs (16 kHz mono, five-minute segments) the way the
recorder seals them: encrypted segment files from the real spool sink and keyring, put into the
embedded default's local store, catalogued as uploaded and verified. Then times
``export_bundle``: fetch, stored-digest check, decrypt and authenticate every chunk, plaintext
digest check, the whole-call WAVs, the stereo listening file, the manifest and its signature.

Prints MB/s (10**6 bytes per wall second) of decrypted, verified track audio written, and of
every byte the bundle holds. The state lives in a temporary directory (``--dir`` picks the file
system).
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import trio

from recorder.audio.wav import HEADER_SIZE, BextInfo, build_wav_header
from recorder.catalog.base import (
    EvidenceKind,
    EvidenceRef,
    NewSegment,
    ParticipantInfo,
    Product,
    RecordingStart,
    RecordingStatus,
)
from recorder.officer.bundle.export import export_bundle
from recorder.officer.bundle.signing import generate_signing_key, load_signing_key
from recorder.service.components import Components, now_ms, open_components
from recorder.service.demo import demo_config
from recorder.sink import SegmentIdentity
from recorder.store.base import sha256_of_file

_MB: Final = 1_000_000
RATE: Final = 16_000
SEGMENT_S: Final = 300
_WRITE: Final = 1 << 16


async def _seal_track(
    c: Components, recording_id: str, track: str, seconds: int, t0_ms: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-8000, 8000, size=RATE * 10, dtype=np.int16).tobytes()
    for index, start_s in enumerate(range(0, seconds, SEGMENT_S)):
        length_s = min(SEGMENT_S, seconds - start_s)
        identity = SegmentIdentity(
            recording_id=recording_id,
            track=track,
            segment_index=index,
            created_ms=t0_ms + start_s * 1000,
            metadata={"kind": "audio", "wav.rate": RATE, "wav.channels": 1},
        )
        sink = await c.sinks.open_async(identity, prologue_size=HEADER_SIZE)
        data_length = length_s * RATE * 2

        def fill(sink: object = sink, data_length: int = data_length) -> None:
            written = 0
            while written < data_length:
                piece = noise[: min(len(noise), data_length - written)]
                sink.write(piece)  # type: ignore[attr-defined]
                written += len(piece)

        await trio.to_thread.run_sync(fill)
        header = build_wav_header(
            sample_rate=RATE,
            channels=1,
            data_length=data_length,
            bext=BextInfo(recording_id, t0_ms + start_s * 1000),
        )
        sealed = await trio.to_thread.run_sync(sink.close, header)
        assert sealed.path is not None
        stored_sha, _ = await trio.to_thread.run_sync(sha256_of_file, sealed.path)
        key = f"bench/{recording_id}/{track}/{index:06d}.wav.rec"
        await c.catalog.add_segment(
            NewSegment.from_sealed(
                sealed,
                object_key=key,
                start_ms=t0_ms + start_s * 1000,
                end_ms=t0_ms + (start_s + length_s) * 1000,
                start_sample=start_s * RATE,
                sample_count=length_s * RATE,
                sample_rate=RATE,
                codec="L16",
            ),
            now_ms(),
        )
        put = await c.store.put(key, sealed.path, sha256=stored_sha, retain_until=None)
        ref = EvidenceRef(EvidenceKind.SEGMENT, recording_id, track, index)
        await c.catalog.mark_uploaded(
            ref,
            object_key=key,
            version_id=put.version_id,
            stored_sha256=stored_sha,
            now_ms=now_ms(),
        )
        await c.catalog.mark_verified(ref, now_ms())
        await trio.Path(sealed.path).unlink()


async def run(minutes: int, directory: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="rtms-bench-export-", dir=directory) as tmp:
        root = Path(tmp)
        async with open_components(demo_config(root / "state")) as c:
            t0 = now_ms()
            row = await c.catalog.upsert_recording(
                RecordingStart(
                    rtms_stream_id="bench-stream",
                    product=Product.CONTACT_CENTER,
                    instance_id="bench-engagement",
                    started_ms=t0,
                ),
                t0,
            )
            await c.catalog.add_participants(
                row.recording_id,
                [
                    ParticipantInfo("channel-agent", "Agent", role="callee"),
                    ParticipantInfo("channel-caller", "Caller", role="caller"),
                ],
            )
            seconds = minutes * 60
            started = time.perf_counter()
            for seed, track in enumerate(("channel-agent", "channel-caller")):
                await _seal_track(c, row.recording_id, track, seconds, t0, seed)
            await c.catalog.end_recording(
                row.recording_id,
                ended_ms=t0 + seconds * 1000,
                reason="bench",
                status=RecordingStatus.COMPLETE,
            )
            print(f"sealed 2 legs x {minutes} min in {time.perf_counter() - started:.1f} s")
            key_path = root / "signing.ed25519"
            generate_signing_key(key_path)
            out = root / "bundle"
            started, cpu_started = time.perf_counter(), time.process_time()
            result = await export_bundle(
                c,
                [row.recording_id],
                out,
                actor="bench",
                reason="bench export",
                signing_key=load_signing_key(key_path),
            )
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            digest = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()[:16]
            total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            print(
                f"export of one {minutes}-minute call (2 legs, {RATE} Hz): {elapsed:.2f} s wall, "
                f"{cpu:.2f} s CPU (all threads)\n"
                f"  decrypted, verified track audio written: {result.audio_bytes / _MB:.0f} MB, "
                f"{result.audio_bytes / _MB / elapsed:.0f} MB/s (target >= 500)\n"
                f"  every byte of the bundle (tracks + stereo listening file + manifest): "
                f"{total / _MB:.0f} MB, {total / _MB / elapsed:.0f} MB/s\n"
                f"  per CPU second: {result.audio_bytes / _MB / cpu:.0f} MB/s of track audio\n"
                f"  peak RSS of the process (sealing included): "
                f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB\n"
                f"  manifest sha256 {digest}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=120, help="length of the call")
    parser.add_argument("--dir", type=Path, default=None, help="where the state lives")
    args = parser.parse_args(argv)
    trio.run(run, args.minutes, args.dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
