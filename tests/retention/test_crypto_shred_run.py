"""A crypto-shred policy end to end through the real key store: ``recorder retention run`` in a
real process shreds an expired recording (real encrypted segments in the local store, keys in
the catalog) with ``recorder.officer.shred.CryptoShredder``, and keeps a held one readable."""

from __future__ import annotations

import io
import os
import secrets
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from recorder.catalog import (
    EvidenceKind,
    EvidenceRef,
    NewSegment,
    Product,
    RecordingStart,
    RecordingStatus,
)
from recorder.config import Config
from recorder.crypto.reader import iter_plaintext
from recorder.crypto.writer import SpoolSinkFactory
from recorder.errors import KeyDestroyed
from recorder.evidence_destruction import DestructionMethod
from recorder.officer.shred import VERIFIED_DESTROYED
from recorder.officer.verify import fetch_to
from recorder.service.app import run_service
from recorder.service.components import CLOCK_OFFSET_ENV, Components, open_components
from recorder.service.demo import demo_config
from recorder.simulator.scenario import AudioLayout, Scenario
from recorder.simulator.scenario import Product as SimProduct
from recorder.simulator.simulator import SimulatorConfig, open_simulator
from recorder.sink import SegmentIdentity
from recorder.spool.uploader import Backoff
from recorder.store.base import LockMode
from tests.retention.helpers import DAY_MS
from tests.retention.test_policy import DEFAULT, SHIPPED, write

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

CLI = [sys.executable, "-m", "recorder"]
#: Calls that ended ten years ago: past HIPAA's six years and every lock, on the real clock.
LONG_AGO = 1_460_000_000_000
SEGMENTS = 3


@dataclass
class Recorded:
    recording_id: str
    #: object key -> the plaintext sealed in it
    plaintext: dict[str, bytes]


async def record_encrypted(c: Components, tmp_path: Path, *, queue: str) -> Recorded:
    """One ended Contact Center call whose segments are sealed with the catalog's recording
    key (the service's writer and keyring) and uploaded to the local store."""
    stream = f"stream-{secrets.token_hex(6)}"
    row = await c.catalog.upsert_recording(
        RecordingStart(
            rtms_stream_id=stream,
            product=Product.CONTACT_CENTER,
            instance_id=f"inst-{stream}",
            started_ms=LONG_AGO,
        ),
        LONG_AGO,
    )
    rid = row.recording_id
    await c.catalog.set_contact_center(rid, queue_id=queue, queue_name=queue)
    await c.catalog.end_recording(
        rid, ended_ms=LONG_AGO + 60_000, reason="ended", status=RecordingStatus.COMPLETE
    )
    await c.keyring.prepare_async(rid)
    factory = SpoolSinkFactory(tmp_path / f"writing-{rid}", c.keyring)
    retain_ms = LONG_AGO + DAY_MS
    made = Recorded(rid, {})
    for index in range(SEGMENTS):
        body = secrets.token_bytes(4000) + f"{rid}/{index}".encode()
        identity = SegmentIdentity(
            recording_id=rid,
            track="mixed",
            segment_index=index,
            created_ms=LONG_AGO + index,
            metadata={"codec": "L16", "sample_rate": 8000, "channels": 1},
        )
        sink = await trio.to_thread.run_sync(factory.open, identity)
        sink.write(body)
        sealed = await trio.to_thread.run_sync(sink.close)
        assert sealed.path is not None
        assert sealed.stored_sha256 is not None
        key = f"cc/{rid}/audio.{index:06d}.wav.rec"
        await c.catalog.add_segment(
            NewSegment(
                recording_id=rid,
                track="mixed",
                segment_index=index,
                object_key=key,
                plaintext_sha256=sealed.sha256,
                plaintext_size=sealed.plaintext_size,
                stored_size=sealed.stored_size,
                start_ms=LONG_AGO,
                end_ms=LONG_AGO + 60_000,
                start_sample=index * 8000,
                sample_count=8000,
                sample_rate=8000,
                codec="L16",
                key_id=sealed.key_id,
                retain_until_ms=retain_ms,
                stored_sha256=sealed.stored_sha256,
            ),
            LONG_AGO,
        )
        result = await c.store.put(
            key,
            sealed.path,
            sha256=sealed.stored_sha256,
            retain_until=datetime.fromtimestamp(retain_ms / 1000, UTC),
            lock_mode=LockMode.COMPLIANCE,
        )
        ref = EvidenceRef(EvidenceKind.SEGMENT, rid, "mixed", index)
        await c.catalog.mark_uploaded(
            ref,
            object_key=key,
            version_id=result.version_id,
            stored_sha256=sealed.stored_sha256,
            now_ms=LONG_AGO,
        )
        await c.catalog.mark_verified(ref, LONG_AGO)
        made.plaintext[key] = body
    return made


async def decrypt(c: Components, key: str) -> bytes:
    buf = io.BytesIO()
    await fetch_to(c.store, key, buf)
    buf.seek(0)
    return await trio.to_thread.run_sync(lambda: b"".join(iter_plaintext(buf, c.keyring)))


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = await trio.run_process(
        [*CLI, *args], env=env, capture_stdout=True, capture_stderr=True, check=False
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def setup(tmp_path: Path) -> tuple[Config, dict[str, str]]:
    config = demo_config(tmp_path)
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    for name in ("ZOOM_CLIENT_ID", "ZOOM_CLIENT_SECRET", "ZOOM_SECRET_TOKEN"):
        env.pop(name, None)
    write(
        config.retention.policies_dir,
        default=DEFAULT,
        hipaa=(SHIPPED / "hipaa.toml").read_text(),
    )
    return config, env


async def test_an_expired_hipaa_recording_is_crypto_shredded_and_a_held_one_kept(
    tmp_path: Path,
) -> None:
    config, env = setup(tmp_path)
    with trio.fail_after(150):
        async with open_components(config) as c:
            expired = await record_encrypted(c, tmp_path, queue="patient-support")
            held = await record_encrypted(c, tmp_path, queue="patient-support")
            for made in (expired, held):
                for key, body in made.plaintext.items():
                    assert await decrypt(c, key) == body  # readable before the run

        code, out, err = await cli(
            env, "hold", "place", "--matter", "M-7", "--reason", "subpoena",
            "--recording", held.recording_id,
        )  # fmt: skip
        assert code == 0, err
        assert f"on {held.recording_id} (matter M-7)" in out

        code, plan_out, err = await cli(env, "retention", "plan")
        assert code == 0, err
        planned = {line.split()[0]: line for line in plan_out.splitlines() if " destroy " in line}
        assert set(planned) == {expired.recording_id}, plan_out
        assert "crypto_shred" in planned[expired.recording_id]
        assert held.recording_id in plan_out  # listed, as kept

        code, run_out, err = await cli(env, "retention", "run")
        assert code == 0, run_out + err
        assert ": 1 destroyed, 1 kept, 0 failed" in run_out
        done = {
            line.split()[1]: line for line in run_out.splitlines() if line.startswith("destroyed")
        }
        assert set(done) == set(planned), run_out
        assert "(crypto_erase)" in done[expired.recording_id]
        assert held.recording_id not in run_out

        async with open_components(config) as c:
            # Every object of the shredded recording is still in the store, and unreadable.
            for key in expired.plaintext:
                assert (await c.store.list(key)) == [key]
                with pytest.raises(KeyDestroyed, match="key destroyed"):
                    await decrypt(c, key)
            for key, body in held.plaintext.items():
                assert await decrypt(c, key) == body
                assert (await c.store.head(key)).legal_hold

            [record] = await c.catalog.destruction_records(expired.recording_id)
            assert record.method is DestructionMethod.CRYPTO_ERASE
            assert record.rule.startswith("policy:hipaa@"), record.rule
            assert record.rule in planned[expired.recording_id]
            assert record.actor.startswith("retention-run:")
            assert record.hold_check.startswith("no holds at")
            assert record.verification.startswith(VERIFIED_DESTROYED)
            assert {o.key for o in record.objects} == set(expired.plaintext)
            detail = await c.catalog.show(expired.recording_id)
            assert detail is not None
            assert {(o.key, o.version_id, o.sha256) for o in record.objects} == {
                (s.object_key, s.version_id, s.stored_sha256) for s in detail.segments
            }
            assert set(record.key_ids) == {s.key_id for s in detail.segments}
            tombstones = await c.catalog.recording_keys_of(expired.recording_id)
            assert tombstones
            assert all(k.destroyed and k.wrapped is None for k in tombstones)
            assert await c.catalog.destruction_records(held.recording_id) == []
            shreds = [
                e
                for e in await c.catalog.audit_trail(expired.recording_id)
                if e.action in ("recording.shred", "retention.crypto_erase")
            ]
            assert {e.action for e in shreds} == {"recording.shred", "retention.crypto_erase"}
            assert all(record.sha256() in e.details_json for e in shreds)

        code, verified, err = await cli(env, "shred", expired.recording_id, "--verify")
        assert code == 0, verified + err
        assert f"destruction record sha256 {record.sha256()}" in verified

        # A second run finds nothing to do and destroys nothing twice.
        code, again, err = await cli(env, "retention", "run")
        assert code == 0, again + err
        assert ": 0 destroyed, 1 kept, 0 failed" in again, again
        assert not [line for line in again.splitlines() if line.startswith("destroyed")], again
        code, plan_json, err = await cli(env, "retention", "plan", "--json")
        assert code == 0, err
        assert '"verdict": "destroy"' not in plan_json
        async with open_components(config) as c:
            assert len(await c.catalog.destruction_records(expired.recording_id)) == 1
            for key, body in held.plaintext.items():
                assert await decrypt(c, key) == body


async def record_calls(config: Config, calls: int) -> list[str]:
    """Real Contact Center calls: the simulator over WebSockets into ``recorder serve``."""
    async with run_service(
        config, owner="test", upload_backoff=Backoff(initial_s=0.1, max_s=1.0)
    ) as running:
        assert config.secrets.zoom_secret_token is not None
        assert config.secrets.zoom_client_id is not None
        assert config.secrets.zoom_client_secret is not None
        sim_config = SimulatorConfig(
            webhook_url=f"http://127.0.0.1:{running.port}/webhook",
            secret_token=config.secrets.zoom_secret_token.reveal(),
        )
        scenario = Scenario(
            product=SimProduct.CONTACT_CENTER,
            name="zcc",
            layout=AudioLayout.CHANNELS,
            duration_s=2.0,
            client_id=config.secrets.zoom_client_id.reveal(),
            client_secret=config.secrets.zoom_client_secret.reveal(),
        )
        async with open_simulator(sim_config) as sim:
            started = [await sim.start(scenario) for _ in range(calls)]
            for call in started:
                await call.finished.wait()
        for engagement in running.supervisor.history:
            await engagement.finished.wait()
        await running.uploads_settled()
        ids = []
        for call in started:
            [row] = await running.components.catalog.search(stream_id=call.scenario.rtms_stream_id)
            ids.append(row.recording_id)
        return ids


#: HIPAA's rule for every Contact Center call (the simulator's calls name no queue).
HIPAA_ALL_CC = (
    (SHIPPED / "hipaa.toml")
    .read_text()
    .replace('cc_queues = ["patient-support", "Patient Support"]\n', "")
)
SEVEN_YEARS_MS = 7 * 366 * DAY_MS


@pytest.mark.timeout(300)
async def test_recordings_from_the_service_are_shredded_seven_years_on(tmp_path: Path) -> None:
    """Calls recorded by ``recorder serve`` (segments and record files, keys in the catalog,
    the policy stored at recording time), then a run with the clock seven years on."""
    config, env = setup(tmp_path)
    assert "cc_queues" not in HIPAA_ALL_CC
    write(config.retention.policies_dir, hipaa=HIPAA_ALL_CC)
    config = replace(config, capture=replace(config.capture, segment_seconds=1))
    later = {**env, CLOCK_OFFSET_ENV: str(SEVEN_YEARS_MS)}
    with trio.fail_after(240):
        expired, held = await record_calls(config, 2)
        async with open_components(config) as c:
            originals: dict[str, bytes] = {}
            for rid in (expired, held):
                assert await c.catalog.recording_policy(rid) is not None
                detail = await c.catalog.show(rid)
                assert detail is not None
                assert detail.segments
                for row in (*detail.segments, *detail.records):
                    originals[row.object_key] = await decrypt(c, row.object_key)
            expired_detail = await c.catalog.show(expired)
            assert expired_detail is not None
            assert expired_detail.records  # the call's record files are shredded with it
            prefix = expired_detail.segments[0].object_key.rsplit("/", 2)[0]
            stored = set(await c.store.list(prefix))

        code, out, err = await cli(
            env, "hold", "place", "--matter", "M-8", "--reason", "audit",
            "--recording", held,
        )  # fmt: skip
        assert code == 0, out + err
        code, plan_now, err = await cli(env, "retention", "plan", "--json")
        assert code == 0, err
        assert '"verdict": "destroy"' not in plan_now  # six years are not over today

        code, plan_out, err = await cli(later, "retention", "plan")
        assert code == 0, err
        planned = {line.split()[0] for line in plan_out.splitlines() if " destroy " in line}
        assert planned == {expired}, plan_out
        run_started_ms = time.time_ns() // 1_000_000
        year_of_run = datetime.fromtimestamp((run_started_ms + SEVEN_YEARS_MS) / 1000, UTC).year
        code, run_out, err = await cli(later, "retention", "run")
        assert code == 0, run_out + err
        done = {line.split()[1] for line in run_out.splitlines() if line.startswith("destroyed")}
        assert done == planned, run_out
        assert ": 1 destroyed, 1 kept, 0 failed" in run_out

        async with open_components(config) as c:
            rows = [*expired_detail.segments, *expired_detail.records]
            for row in rows:
                with pytest.raises(KeyDestroyed, match="key destroyed"):
                    await decrypt(c, row.object_key)
            [record] = await c.catalog.destruction_records(expired)
            assert record.method is DestructionMethod.CRYPTO_ERASE
            # Stamped by the run's clock (seven years on), like its audit events and report.
            assert record.destroyed_ms >= run_started_ms + SEVEN_YEARS_MS
            assert record.hold_check.startswith(f"no holds at {year_of_run}-")
            # Every object the call left in the store is named by the record (and unreadable).
            assert {o.key for o in record.objects} == {r.object_key for r in rows} == stored
            assert all(len(o.sha256) == 64 for o in record.objects)
            held_detail = await c.catalog.show(held)
            assert held_detail is not None
            for row in (*held_detail.segments, *held_detail.records):
                assert await decrypt(c, row.object_key) == originals[row.object_key]
        code, verified, err = await cli(env, "shred", expired, "--verify")
        assert code == 0, verified + err
        assert f"destruction record sha256 {record.sha256()}" in verified
        code, again, err = await cli(later, "retention", "run")
        assert code == 0, again + err
        assert ": 0 destroyed, 1 kept, 0 failed" in again
        code, audit, err = await cli(later, "audit", "verify")
        assert code == 0, audit + err


async def test_a_run_that_died_after_destroying_the_keys_is_recorded_by_the_next(
    tmp_path: Path,
) -> None:
    """The keys went, the run died before its destruction record: the next run must finish
    the job (record, audit, verification) instead of failing on the tombstone forever."""
    config, env = setup(tmp_path)
    with trio.fail_after(120):
        async with open_components(config) as c:
            made = await record_encrypted(c, tmp_path, queue="Patient Support")
            destroyed = await trio.to_thread.run_sync(
                lambda: c.keyring.shred(
                    made.recording_id, on_legal_hold=lambda _: False, reason="killed run"
                )
            )
            assert destroyed
            assert await c.catalog.destruction_records(made.recording_id) == []

        code, run_out, err = await cli(env, "retention", "run")
        assert code == 0, run_out + err
        assert f"destroyed {made.recording_id} (crypto_erase)" in run_out
        async with open_components(config) as c:
            [record] = await c.catalog.destruction_records(made.recording_id)
            assert set(destroyed) <= set(record.key_ids)
            assert record.verification.startswith(VERIFIED_DESTROYED)
            assert {o.key for o in record.objects} == set(made.plaintext)
        code, verified, err = await cli(env, "shred", made.recording_id, "--verify")
        assert code == 0, verified + err
