"""Startup recovery on an encrypt-only host: what it cannot decrypt still leaves the disk.

A crashed writer's ``.part`` and a sealed file that never reached the spool are both queued for
upload: the sealed one with the plaintext digest the writer recorded in the catalog when it
sealed it, the ``.part`` as an opaque blob whose clean framing was checked without a key.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import trio

from recorder.catalog.base import NewSegment, RecordingStart, StreamEvent, StreamState
from recorder.config import KeyProviderKind
from recorder.crypto.keys import generate_x25519_keypair
from recorder.crypto.opaque import OPAQUE_PLAINTEXT_DIGEST
from recorder.products import Product
from recorder.service.components import open_components
from recorder.service.demo import demo_config
from recorder.service.recovery import recover_at_startup
from recorder.sink import SegmentIdentity

PCM = bytes(range(256)) * 64  # 16 KiB of "audio"


def _identity(recording_id: str, index: int) -> SegmentIdentity:
    return SegmentIdentity(
        recording_id=recording_id,
        track="mixed",
        segment_index=index,
        created_ms=1_767_225_600_000 + index,
        metadata={
            "kind": "audio",
            "source": "L16",
            "wav.rate": 16000,
            "wav.channels": 1,
            "bext.ref": "test",
            "bext.origination_ms": 1_767_225_600_000,
        },
    )


async def test_encrypt_only_startup_recovery_queues_what_it_cannot_decrypt(
    tmp_path: Path,
) -> None:
    generate_x25519_keypair(tmp_path / "officer.key", tmp_path / "officer.pub")
    config = demo_config(tmp_path)
    config = replace(
        config,
        keys=replace(
            config.keys,
            provider=KeyProviderKind.PUBLIC,
            public_key_path=tmp_path / "officer.pub",
        ),
    )
    with trio.fail_after(60):
        async with open_components(config) as c:
            await c.catalog.upsert_stream(
                StreamEvent("s-1", Product.MEETING, "m-1", StreamState.STARTED, 1, ()), 1
            )
            rec = await c.catalog.upsert_recording(
                RecordingStart("s-1", Product.MEETING, "m-1", 1), 1
            )
            # Sealed and entered in the catalog, then the process died before the spool.
            sink = c.sinks.open(_identity(rec.recording_id, 0), prologue_size=44)
            sink.write(PCM)
            sealed = sink.close(b"R" * 44)
            await c.catalog.add_segment(
                NewSegment.from_sealed(
                    sealed,
                    object_key="k0",
                    start_ms=1,
                    end_ms=513,
                    start_sample=0,
                    sample_count=len(PCM) // 2,
                    sample_rate=16000,
                    codec="L16",
                ),
                2,
            )
            # And a writer that died mid-segment, after a checkpoint.
            dead = c.sinks.open(_identity(rec.recording_id, 1), prologue_size=44)
            dead.write(PCM)
            dead.checkpoint()
            os.close(dead._fd)
        # The restart: a new process, nothing of the old one's keys in memory.
        async with open_components(config) as c:
            result = await recover_at_startup(c)

            assert not result.failed
            assert len(result.requeued) == 2
            # Nothing left but the (empty) directory of pre-opened spare segments.
            assert not [p for p in c.writing_dir.rglob("*") if p.is_file()]
            jobs = {j.job.metadata["segment-index"]: j.job for j in await c.spool.pending()}
            assert jobs["0"].metadata["plaintext-sha256"] == sealed.sha256
            assert jobs["1"].metadata["plaintext-sha256"] == OPAQUE_PLAINTEXT_DIGEST
            assert jobs["1"].metadata["recovered"] == "true"
            detail = await c.catalog.show(rec.recording_id)
            assert detail is not None
            [partial] = [s for s in detail.segments if s.segment_index == 1]
            assert partial.sample_count == len(PCM) // 2
            assert partial.plaintext_sha256 == OPAQUE_PLAINTEXT_DIGEST
