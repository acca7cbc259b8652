"""Startup recovery never stops the service: poison ``.part`` files beside good ones.

The ``.part`` files are made by the real segment writer (real encryption, real WAV metadata),
abandoned as a killed process leaves them, then damaged: a µs timestamp (which made the BWF
header raise and the service crash on every start), a bit flip in a sealed chunk, a header cut
short, plain garbage. The service restarts on them, recovers and uploads the good and the
damaged-but-authentic ones, records the corrupt chunk as a gap, and quarantines what cannot be
recovered with a reason, counted in /metrics.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import trio

from recorder.audio.segments import SegmentWriter, TrackFormat
from recorder.audio.timeline import Audio
from recorder.audio.wav import HEADER_SIZE, parse_bext
from recorder.catalog.base import UploadState
from recorder.config import Config
from recorder.crypto.reader import iter_plaintext, read_header
from recorder.crypto.recovery import QUARANTINE_DIR, REASON_SUFFIX
from recorder.service.app import RunningService
from recorder.service.components import WRITING_DIR, open_components

from .test_service import record_calls, service, short_config, zcc_call

pytestmark = pytest.mark.slow

RATE = 16000
US_ORIGIN = 1_763_726_400_000_000  # Unix microseconds: a peer that sent µs for ms


def _abandoned_part(
    c_sinks: object, recording_id: str, track: str, origin_ms: int, seconds: float
) -> Path:
    """Write ``seconds`` of tone through the real segment writer, checkpoint, then 'die'."""
    fmt = TrackFormat(track, RATE, 1, "L16 16000 mono", "test")
    writer = SegmentWriter(
        c_sinks,  # type: ignore[arg-type]
        recording_id=recording_id,
        originator_reference="poison-test",
        fmt=fmt,
        sample_to_ms=lambda sample: origin_ms + sample * 1000 // RATE,
        now_ms=lambda: 1_763_726_400_000,
    )
    samples = int(seconds * RATE)
    tone = ((np.arange(samples) % 400) * 50 + 1).astype("<i2").tobytes()
    writer.write(Audio(0, tone))
    writer.checkpoint()
    sink = writer._sink
    assert sink is not None
    part: Path = sink.part_path  # type: ignore[attr-defined]
    os.close(sink._fd)  # type: ignore[attr-defined]  # the process died: nothing else runs
    return part


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _metric(running: RunningService, series: str) -> float:
    text = running.components.metrics.render().decode()
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match is not None, series
    return float(match.group(1))


async def test_poison_part_files_never_stop_the_service(tmp_path: Path) -> None:
    config: Config = short_config(tmp_path)
    with trio.fail_after(120):
        async with service(config) as running:
            [eng] = await record_calls(running, config, zcc_call(config, seconds=2.0))
            [row] = await running.components.catalog.search(stream_id=eng.scenario.rtms_stream_id)
        recording_id = row.recording_id

        writing = config.storage.spool_dir / WRITING_DIR
        async with open_components(config) as c:
            sinks = c.sinks
            good = _abandoned_part(sinks, recording_id, "user-good", 1_763_726_400_000, 1.0)
            micro = _abandoned_part(sinks, recording_id, "user-micro", US_ORIGIN, 1.0)
            flipped = _abandoned_part(sinks, recording_id, "user-flipped", 1_763_726_400_000, 5.0)
        # 5 s of 16 kHz mono is 160000 bytes: chunks 0 and 1 (64 KiB each) and a short chunk 2.
        header = read_header(flipped)
        second_chunk = header.body_offset + (32 + 65536 + 16)
        _flip(flipped, second_chunk + 32 + 1000)  # inside chunk 1's ciphertext
        flipped_bytes = flipped.read_bytes()
        garbage = writing / "garbage.user-x.000000.1.rtmsenc.part"
        garbage.write_bytes(os.urandom(5000))
        truncated = writing / "truncated.user-y.000000.1.rtmsenc.part"
        truncated.write_bytes(good.read_bytes()[:60])

        async with service(config) as running:  # the service starts
            await running.uploads_settled()
            c = running.components
            detail = await c.catalog.show(recording_id)
            assert detail is not None
            by_track = {s.track: s for s in detail.segments}
            for track in ("user-good", "user-micro", "user-flipped"):
                assert by_track[track].upload_state is UploadState.VERIFIED, track
                assert by_track[track].recovered
            assert by_track["user-flipped"].sample_count == 5 * RATE  # the hole is silence
            [gap] = [g for g in detail.gaps if g.cause == "corrupt_chunk"]
            assert gap.track == "user-flipped"
            # Chunk 1 is body bytes 65536..131071: samples 32768..65535 of the segment.
            assert (gap.start_sample, gap.end_sample) == (32768, 65536)
            assert _metric(running, 'rtmsrec_recovery_failures_total{stage="recover"}') == 2.0
            assert _metric(running, "rtmsrec_recovery_segments_recovered_total") == 3.0
            assert _metric(running, "rtmsrec_recovery_corrupt_chunks_total") == 1.0

        # The µs segment's header has no date (it never raises) and says why.
        micro_sealed = micro.with_name(micro.name.removesuffix(".part"))
        quarantine = writing / QUARANTINE_DIR
        for name in ("garbage.user-x.000000.1.rtmsenc.part", truncated.name):
            kept = quarantine / name
            assert kept.exists(), name
            note = json.loads(kept.with_name(name + REASON_SUFFIX).read_text())
            assert note["reason"]
        assert (quarantine / flipped.name).read_bytes() == flipped_bytes  # original kept
        assert not list(writing.glob("*.part"))
        assert not micro_sealed.exists()  # uploaded and removed from local disk
        async with open_components(config) as c:
            detail = await c.catalog.show(recording_id)
            assert detail is not None
            [micro_row] = [s for s in detail.segments if s.track == "user-micro"]
            assert micro_row.start_ms == US_ORIGIN
            async with c.store.open(micro_row.object_key) as chunks:
                stored = b"".join([chunk async for chunk in chunks])
            wav = b"".join(iter_plaintext(io.BytesIO(stored), c.keyring))
            bext = parse_bext(wav[:HEADER_SIZE])
            assert bext.origination_date == ""
            assert "out of range" in bext.description
