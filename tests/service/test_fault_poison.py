"""Fault cases of issue 9 on real ``recorder serve`` processes (PostgreSQL, moto's S3 server).

* A bit flip in a killed process's ``.part``: the restarted process recovers every authentic
  chunk into a new sealed file, records the damaged chunk as a ``corrupt_chunk`` gap with its
  exact sample range, keeps the original in quarantine, and the recovered segment uploads to
  S3 and verifies.
* A poison upload job and an unreadable job file in the spool at start: the process starts and
  stays up, the call's segments upload and verify, the poison job is quarantined after
  ``upload_max_attempts`` (counted in /metrics), and the ``recorder spool`` commands show it
  and put it back, audited.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trio

from recorder.catalog.base import RecordingDetail
from recorder.config import load_config
from recorder.crypto import _format as fmt
from recorder.crypto.reader import read_header
from recorder.officer.verify import verify_recording
from recorder.quarantine import QUARANTINE_DIR
from recorder.rtms.events import GapCause
from recorder.service.components import WRITING_DIR, open_components
from recorder.simulator.simulator import open_simulator
from recorder.spool.spool import JOB_SUFFIX, Spool, UploadJob, job_id_for
from recorder.store.base import LockMode

from .helpers_fleet import (
    RECORDER,
    FanOut,
    FleetSecrets,
    fleet_simulator,
    meeting,
    poll,
    segments_of,
    serve_processes,
)
from .test_fleet import TRACK, kill_mid_segment, make_process, postgres_catalog, settled_detail
from .test_outages import new_locked_bucket

pytestmark = [pytest.mark.slow]


def _audio_part(writing: Path) -> Path:
    parts = [p for p in writing.glob("*.part") if read_header(p).identity.track == TRACK]
    assert len(parts) == 1, parts
    return parts[0]


def _body_records(path: Path) -> list[tuple[int, int]]:
    """(offset, plaintext length) of every body record, by the clear framing."""
    header = read_header(path)
    data = path.read_bytes()
    records = []
    offset = header.body_offset
    while offset + fmt.FRAME_SIZE <= len(data):
        frame = fmt.decode_frame(data[offset : offset + fmt.FRAME_SIZE])
        assert frame is not None
        if offset + fmt.RECORD_OVERHEAD + frame.length > len(data):
            break  # a torn tail: not a chunk
        records.append((offset, frame.length))
        offset += fmt.RECORD_OVERHEAD + frame.length
    return records


async def test_a_bit_flip_in_a_killed_process_part_keeps_every_authentic_chunk(
    tmp_path: Path, postgres_dsn: str, moto_endpoint: str
) -> None:
    secrets_ = FleetSecrets()
    proc = make_process(
        tmp_path,
        "solo",
        secrets_,
        key_dir=tmp_path / "keys",
        lease_ttl_s=30.0,
        postgres_dsn=postgres_dsn,
        s3_endpoint=moto_endpoint,
        s3_bucket=new_locked_bucket(moto_endpoint),
    )
    writing = load_config(proc.config_path, {}).storage.spool_dir / WRITING_DIR
    fan = FanOut([proc.webhook_url])
    with trio.fail_after(120):
        async with (
            postgres_catalog(postgres_dsn) as catalog,
            serve_processes(proc),
            open_simulator(fleet_simulator(fan, secrets_)) as sim,
        ):
            call = await sim.start(meeting(secrets_, name="call", seconds=12))
            stream_id = call.scenario.rtms_stream_id

            async def sealed() -> int | None:
                rows = await catalog.search(stream_id=stream_id)
                detail = await catalog.show(rows[0].recording_id) if rows else None
                if detail is None or not detail.segments:
                    return None
                return max(s.end_ms for s in detail.segments)

            await kill_mid_segment(proc, call, await poll(sealed))
            part = _audio_part(writing)
            records = _body_records(part)
            assert len(records) >= 3, records
            flipped_offset, flipped_length = records[1]
            data = bytearray(part.read_bytes())
            data[flipped_offset + fmt.FRAME_SIZE + flipped_length // 2] ^= 0x04
            part.write_bytes(bytes(data))
            hole_start = records[0][1]  # body bytes before the flipped chunk

            async with serve_processes(proc):
                await call.finished.wait()
                detail: RecordingDetail = await settled_detail(catalog, stream_id)
            [partial] = [s for s in segments_of(detail, TRACK) if s.recovered]
            frame = 2 * int(
                str(
                    read_header(writing / QUARANTINE_DIR / part.name).identity.metadata[
                        "wav.channels"
                    ]
                )
            )
            body = sum(length for _, length in records)
            # Every authentic chunk is there, and the hole keeps the timeline: full length.
            assert partial.sample_count == body // frame
            [gap] = [g for g in detail.gaps if g.cause == GapCause.CORRUPT_CHUNK.value]
            assert gap.track == TRACK
            assert gap.start_sample == partial.start_sample + hole_start // frame
            assert gap.end_sample == partial.start_sample + (hole_start + flipped_length) // frame
            async with open_components(load_config(proc.config_path, {})) as c:
                verdict = await verify_recording(
                    c, detail.recording.recording_id, actor="test", reason="bit flip test"
                )
            assert verdict.ok, verdict
    await fan.aclose()
    assert (writing / QUARANTINE_DIR / part.name).read_bytes() == bytes(data)


POISON_KEY = "recordings/meeting/2026/12/07/poison/mixed/000000.seg"


async def _metrics(url: str) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics", timeout=2.0)
    return response.text


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RECORDER), "spool", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_poison_job_and_an_unreadable_job_file_on_a_serving_process(
    tmp_path: Path, postgres_dsn: str, moto_endpoint: str
) -> None:
    secrets_ = FleetSecrets()
    proc = make_process(
        tmp_path,
        "solo",
        secrets_,
        key_dir=tmp_path / "keys",
        postgres_dsn=postgres_dsn,
        s3_endpoint=moto_endpoint,
        s3_bucket=new_locked_bucket(moto_endpoint),
    )
    text = proc.config_path.read_text()
    proc.config_path.write_text(text.replace("[storage]\n", "[storage]\nupload_max_attempts = 2\n"))
    queue = load_config(proc.config_path, {}).storage.spool_dir / "queue"
    spool = Spool(queue)
    not_a_file = tmp_path / "poison-data"
    not_a_file.mkdir()
    retain = datetime.now(UTC) + timedelta(days=1)
    await spool.enqueue(not_a_file, UploadJob(POISON_KEY, "0" * 64, 1, retain, LockMode.GOVERNANCE))
    broken = queue / ("f" * 32 + JOB_SUFFIX)
    broken.write_bytes(b"\x00\x01 not a job")
    fan = FanOut([proc.webhook_url])
    with trio.fail_after(120):
        async with (
            postgres_catalog(postgres_dsn) as catalog,
            serve_processes(proc),
            open_simulator(fleet_simulator(fan, secrets_)) as sim,
        ):
            call = await sim.start(meeting(secrets_, name="call", seconds=4))
            await call.finished.wait()
            detail = await settled_detail(catalog, call.scenario.rtms_stream_id)
            assert detail.segments

            async def quarantined() -> str | None:
                metrics = await _metrics(proc.base_url)
                found = re.search(r"^rtmsrec_upload_quarantined_total (\S+)$", metrics, re.M)
                return metrics if found and float(found.group(1)) == 1.0 else None

            await poll(quarantined)
            assert proc.running
            listed = await trio.to_thread.run_sync(_cli, proc.config_path, "list", "--json")
            assert listed.returncode == 0, listed.stderr
            rows = {row["job"]: row for row in json.loads(listed.stdout)}
            poison = rows[job_id_for(POISON_KEY)]
            assert (poison["state"], poison["attempts"]) == ("quarantined", 2)
            assert rows["f" * 32]["state"] == "unreadable"
            retried = await trio.to_thread.run_sync(
                _cli, proc.config_path, "retry", job_id_for(POISON_KEY), "--reason", "test"
            )
            assert retried.returncode == 0, retried.stderr
            [entry] = await catalog.audit_trail(POISON_KEY)
            assert entry.action == "spool_retry"
            assert entry.actor.startswith("os:")
            # Back in the queue, it fails again (its data is still a directory): quarantined
            # again, and the service is still up.
            await poll(lambda: _quarantined_again(proc.base_url))
            assert proc.running
    await fan.aclose()
    assert not broken.exists()
    assert (queue / QUARANTINE_DIR / broken.name).exists()


async def _quarantined_again(url: str) -> bool | None:
    metrics = await _metrics(url)
    found = re.search(r"^rtmsrec_upload_quarantined_total (\S+)$", metrics, re.M)
    return True if found and float(found.group(1)) == 2.0 else None
