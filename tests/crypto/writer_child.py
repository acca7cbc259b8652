"""Run by test_recovery as a real subprocess: writes a segment at a steady rate until killed.

Usage: writer_child.py <keys-root> <spool-dir> <checkpoint-interval-s>

The body is ``random.Random(SEED).randbytes(...)``, so the parent can regenerate it exactly.
After every checkpoint it prints ``checkpointed <body bytes>``: those bytes were sealed and
fsynced before the line was written.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from recorder.crypto.keyring import DirectoryRecordingKeyStore, RecordingKeyring
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.crypto.writer import SpoolSinkFactory
from recorder.sink import SegmentIdentity

SEED = 20261121
PIECE = 320  # 10 ms of 16 kHz PCM16
TOTAL = 8 * 1024 * 1024
PROLOGUE_SIZE = 44
IDENTITY = SegmentIdentity(
    recording_id="killed/recording+==",
    track="mixed",
    segment_index=3,
    created_ms=1_763_700_000_000,
    metadata={"codec": "L16", "sample_rate": 16000, "channels": 1},
)


def main() -> None:
    keys_root, spool, interval = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    keyring = RecordingKeyring(
        DirectoryRecordingKeyStore(keys_root / "recording-keys"),
        provider=LocalKeyProvider(keys_root / "kek"),
    )
    factory = SpoolSinkFactory(spool, keyring, chunk_size=4096, checkpoint_interval_s=interval)
    body = random.Random(SEED).randbytes(TOTAL)
    sink = factory.open(IDENTITY, prologue_size=PROLOGUE_SIZE)
    print(f"ready {sink.part_path}", flush=True)
    sink.needs_checkpoint(time.monotonic())
    offset = 0
    while offset < TOTAL:
        sink.write(body[offset : offset + PIECE])
        offset += PIECE
        if sink.needs_checkpoint(time.monotonic()):
            sink.checkpoint()
            print(f"checkpointed {sink.body_size}", flush=True)
        time.sleep(0.002)
    print("finished", flush=True)


if __name__ == "__main__":
    main()
