"""A poison upload job and an unreadable job file beside a real call: the service stays up.

The service runs on the embedded default (SQLite, local store) and records a real call from the
simulator while the spool also holds a job whose data cannot be read (a directory where the
sealed file should be) and a job file that is not JSON. The call's segments upload and verify;
the poison job is quarantined after ``upload_max_attempts`` and counted in /metrics; the
unreadable job file is set aside. ``recorder spool list`` shows both, and ``recorder spool
retry`` puts the poison job back, audited with the operating-system user as the actor.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from recorder.audio.segments import SegmentWriter, TrackFormat
from recorder.audio.timeline import Audio
from recorder.catalog.base import EvidenceKind, UploadState
from recorder.cli import main as cli_main
from recorder.quarantine import QUARANTINE_DIR
from recorder.service.components import open_components
from recorder.service.evidence import evidence_key, retain_until, spool_sealed
from recorder.spool.admin import RETRY_ACTION
from recorder.spool.spool import JOB_SUFFIX, Spool, UploadJob, job_id_for
from recorder.store.base import LockMode

from .test_service import record_calls, service, short_config, zcc_call

pytestmark = pytest.mark.slow

POISON_KEY = "recordings/zcc/2026/12/07/poison/channel-x/000000.seg"
BROKEN_KEY = "recordings/zcc/2026/12/07/broken/channel-y/000000.seg"


async def _cli(argv: list[str]) -> int:
    """The command in a thread: it runs its own trio loop, as from a shell."""
    code: int = await trio.to_thread.run_sync(cli_main, argv)
    return code


async def test_a_poison_job_and_an_unreadable_job_never_stop_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = short_config(tmp_path)
    config = replace(config, storage=replace(config.storage, upload_max_attempts=3))
    queue = config.storage.spool_dir / "queue"
    spool = Spool(queue)
    not_a_file = tmp_path / "poison-data"
    not_a_file.mkdir()  # the store cannot read it: every attempt fails, never an outage
    retain = datetime.now(UTC) + timedelta(days=1)
    await spool.enqueue(
        not_a_file,
        UploadJob(POISON_KEY, "0" * 64, 1, retain, LockMode.COMPLIANCE, metadata={}),
    )
    broken_id = job_id_for(BROKEN_KEY)
    (queue / (broken_id + JOB_SUFFIX)).write_bytes(b'{"object_key": "half a job')
    poison_id = job_id_for(POISON_KEY)

    with trio.fail_after(120):
        async with service(config) as running:
            [eng] = await record_calls(running, config, zcc_call(config, seconds=2.0))
            c = running.components
            [row] = await c.catalog.search(stream_id=eng.scenario.rtms_stream_id)
            detail = await c.catalog.show(row.recording_id)
            assert detail is not None
            assert detail.segments
            assert all(s.upload_state is UploadState.VERIFIED for s in detail.segments)
            assert running.uploader.quarantined == 1
            text = c.metrics.render().decode()
            assert re.search(r"^rtmsrec_upload_quarantined_total 1\.0$", text, re.MULTILINE)
            [held] = await c.spool.quarantined()
            assert held.job_id == poison_id
            assert held.attempts == 3
    assert (queue / QUARANTINE_DIR / (broken_id + JOB_SUFFIX)).exists()

    # The same installation, seen through the command line.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert await _cli(["spool", "list", "--json"]) == 0
    listed = {row["job"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed[poison_id]["state"] == "quarantined"
    assert listed[poison_id]["object_key"] == POISON_KEY
    assert listed[poison_id]["attempts"] == 3
    assert "3 failed attempts" in listed[poison_id]["reason"]
    assert listed[broken_id]["state"] == "unreadable"
    assert await _cli(["spool", "list"]) == 0
    table = capsys.readouterr().out
    assert poison_id in table
    assert "quarantined" in table

    assert await _cli(["spool", "retry", broken_id]) != 0
    assert "unreadable" in capsys.readouterr().err
    assert await _cli(["spool", "retry", "--all-quarantined", "--reason", "bucket fixed"]) == 0
    assert f"requeued {poison_id}" in capsys.readouterr().out
    [pending] = await Spool(queue).pending()
    assert (pending.job_id, pending.attempts, pending.state) == (poison_id, 0, "pending")
    async with open_components(config) as c:
        [entry] = await c.catalog.audit_trail(POISON_KEY)
    assert entry.action == RETRY_ACTION
    assert entry.actor.startswith("os:")
    assert entry.reason == "bucket fixed"


async def test_the_data_of_an_unreadable_job_file_is_requeued_at_the_next_start(
    tmp_path: Path,
) -> None:
    config = short_config(tmp_path)
    with trio.fail_after(120):
        async with service(config) as running:
            [eng] = await record_calls(running, config, zcc_call(config, seconds=2.0))
            [row] = await running.components.catalog.search(stream_id=eng.scenario.rtms_stream_id)
        # A segment sealed and spooled, whose job file then became unreadable.
        async with open_components(config) as c:
            writer = SegmentWriter(
                c.sinks,
                recording_id=row.recording_id,
                originator_reference="test",
                fmt=TrackFormat("user-late", 16000, 1, "L16 16000 mono", "test"),
                sample_to_ms=lambda sample: 1_763_726_400_000 + sample // 16,
                now_ms=lambda: 1_763_726_400_000,
            )
            writer.write(Audio(0, b"\1\0" * 16000))
            pending = writer.close()
            assert pending is not None
            sealed = pending.seal()
            recording = row
            await spool_sealed(
                c,
                sealed.sealed,
                EvidenceKind.SEGMENT,
                key=evidence_key(
                    sealed.sealed.identity,
                    EvidenceKind.SEGMENT,
                    product=recording.product.value,
                    instance_id=recording.instance_id,
                    rtms_stream_id=recording.rtms_stream_id,
                ),
                retain=await retain_until(c, row.recording_id),
            )
            [job] = await c.spool.pending()
        job_file = config.storage.spool_dir / "queue" / (job.job_id + JOB_SUFFIX)
        job_file.write_bytes(b"\0garbage")

        async with service(config) as running:
            await running.uploads_settled()
            detail = await running.components.catalog.show(row.recording_id)
            assert detail is not None
            [late] = [s for s in detail.segments if s.track == "user-late"]
            assert late.upload_state is UploadState.VERIFIED
            assert late.sample_count == 16000
    kept = config.storage.spool_dir / "queue" / QUARANTINE_DIR / job_file.name
    assert kept.read_bytes() == b"\0garbage"
