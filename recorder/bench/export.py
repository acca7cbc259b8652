"""Export throughput for one large recording: ``recorder bench export [--minutes 120]``.

Builds a Contact Center recording of two legs (16 kHz mono, five-minute segments) the way the
recorder seals them: encrypted segment files from the real spool sink and keyring, put into the
embedded default's local store, catalogued as uploaded and verified. Then times
``export_bundle``: fetch, stored-digest check, decrypt and authenticate every chunk, the
whole-call WAVs, the stereo listening file, the manifest and its signature. (The plaintext is not
hashed again against the digest sealed at recording when the stored digest pins the ciphertext:
AES-GCM then fixes the plaintext. Only objects without a stored digest get that pass, and the
bench has none.)

Prints MB/s (10**6 bytes per wall second) of decrypted, verified track audio written, and of
every byte the bundle holds, per round, and the ratio to copying the finished bundle as ``cp``
does (then fsync, as the export does): the same bytes, file system and memory state, so the ratio
carries across machines where the MB/s do not. On a VM the first round also pays for page-cache
memory the guest never touched before (several times slower writes for any program, ``cp``
included). The state lives in a temporary directory (``--dir`` picks the file system).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
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


async def seal_track(
    c: Components,
    recording_id: str,
    track: str,
    seconds: int,
    t0_ms: int,
    seed: int,
    *,
    segment_s: int = SEGMENT_S,
) -> None:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-8000, 8000, size=RATE * 10, dtype=np.int16).tobytes()
    for index, start_s in enumerate(range(0, seconds, segment_s)):
        length_s = min(segment_s, seconds - start_s)
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


async def seal_call(c: Components, seconds: int, *, segment_s: int = SEGMENT_S) -> str:
    """A finished Contact Center call of two legs (agent, caller) sealed, stored, catalogued and
    verified; returns its recording id."""
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
    for seed, track in enumerate(("channel-agent", "channel-caller")):
        await seal_track(c, row.recording_id, track, seconds, t0, seed, segment_s=segment_s)
    await c.catalog.end_recording(
        row.recording_id,
        ended_ms=t0 + seconds * 1000,
        reason="bench",
        status=RecordingStatus.COMPLETE,
    )
    return row.recording_id


async def run(minutes: int, directory: Path | None, rounds: int = 3) -> None:
    with tempfile.TemporaryDirectory(prefix="rtms-bench-export-", dir=directory) as tmp:
        root = Path(tmp)
        async with open_components(demo_config(root / "state")) as c:
            started = time.perf_counter()
            recording_id = await seal_call(c, minutes * 60)
            print(f"sealed 2 legs x {minutes} min in {time.perf_counter() - started:.1f} s")
            key_path = root / "signing.ed25519"
            generate_signing_key(key_path)
            signing_key = load_signing_key(key_path)
            print(
                f"export of one {minutes}-minute call (2 legs, {RATE} Hz), {rounds} rounds; "
                "cp = the same bundle bytes copied file by file (sendfile) and fsynced"
            )
            ratios: list[float] = []
            rates: list[float] = []
            for round_no in range(1, rounds + 1):
                out = root / f"bundle-{round_no}"
                started, cpu_started = time.perf_counter(), time.process_time()
                result = await export_bundle(
                    c,
                    [recording_id],
                    out,
                    actor="bench",
                    reason="bench export",
                    signing_key=signing_key,
                )
                elapsed = time.perf_counter() - started
                cpu = time.process_time() - cpu_started
                total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
                copy_s = await trio.to_thread.run_sync(_copy_like_cp, out, root / "copy")
                audio_rate = result.audio_bytes / _MB / elapsed
                rates.append(audio_rate)
                ratios.append((total / elapsed) / (total / copy_s))
                print(
                    f"  round {round_no}: {elapsed:.2f} s wall, {cpu:.2f} s CPU (all threads, "
                    f"{result.audio_bytes / _MB / cpu:.0f} MB of track audio per CPU second); "
                    f"track audio {result.audio_bytes / _MB:.0f} MB at {audio_rate:.0f} MB/s "
                    f"(target >= 500); whole bundle {total / _MB:.0f} MB at "
                    f"{total / _MB / elapsed:.0f} MB/s; cp of the bundle {total / _MB / copy_s:.0f}"
                    f" MB/s; export / cp = {ratios[-1]:.2f}"
                )
                await trio.to_thread.run_sync(shutil.rmtree, out)
            print(
                f"  track audio: median of the rounds after the first "
                f"{statistics.median(rates[1:] or rates):.0f} MB/s, best {max(rates):.0f} MB/s; "
                "median export / cp "
                f"{statistics.median(ratios):.2f} (1.0 = as fast as copying the finished bundle)\n"
                f"  peak RSS of the process (sealing included): "
                f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
            )


def _copy_like_cp(bundle: Path, target: Path) -> float:
    """Seconds to copy every file of ``bundle`` as ``cp`` does, then fsync each (as the export
    does); the copy is removed afterwards. The same bytes on the same file system and the same
    memory state: the honest yardstick for the export's figure on any machine."""
    started = time.perf_counter()
    for source in sorted(p for p in bundle.rglob("*") if p.is_file()):
        dest = target / source.relative_to(bundle)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    elapsed = time.perf_counter() - started
    shutil.rmtree(target)
    return elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=120, help="length of the call")
    parser.add_argument("--dir", type=Path, default=None, help="where the state lives")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="exports of the same call (the first pays for memory the machine never touched)",
    )
    args = parser.parse_args(argv)
    if args.dir is not None and not args.dir.is_dir():
        parser.error(f"--dir {args.dir}: no such directory")
    trio.run(run, args.minutes, args.dir, max(1, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
