"""The assembled service in one process: real signed webhooks over HTTP into the ingress, real
RTMS WebSockets from the project's simulator, the embedded default's SQLite catalog, local store
and local keys on a temporary directory."""

from __future__ import annotations

import hashlib
import io
import os
import re
import sqlite3
import stat
import sys
import time
import wave
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, closing, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from recorder.catalog.base import RecordingStatus, UploadState
from recorder.cli import main as cli_main
from recorder.config import Config
from recorder.errors import StorageError
from recorder.officer.bundle.export import export_bundle, manifest_json
from recorder.officer.bundle.signing import generate_signing_key, load_signing_key
from recorder.officer.verify import Verdict, verify_recording
from recorder.rtms.webhook import sign_webhook
from recorder.service.app import RunningService, run_service
from recorder.service.demo import demo_config, run_demo
from recorder.simulator.engagement import Engagement as SimEngagement
from recorder.simulator.scenario import Action, AudioLayout, Product, Scenario, Step
from recorder.simulator.simulator import SimulatorConfig, open_simulator
from recorder.spool.spool import Spool
from recorder.spool.uploader import Backoff
from recorder.store.local import LocalStore

from ..spool.helpers import sealed_file

pytestmark = pytest.mark.slow


def short_config(tmp_path: Path) -> Config:
    config = demo_config(tmp_path)
    return replace(config, capture=replace(config.capture, segment_seconds=2))


@asynccontextmanager
async def service(config: Config, **options: Any) -> AsyncIterator[RunningService]:
    async with run_service(
        config, owner="test", upload_backoff=Backoff(initial_s=0.1, max_s=1.0), **options
    ) as running:
        yield running


def zcc_call(config: Config, *, seconds: float = 4.0, **changes: Any) -> Scenario:
    assert config.secrets.zoom_client_id is not None
    assert config.secrets.zoom_client_secret is not None
    return Scenario(
        product=Product.CONTACT_CENTER,
        name="zcc",
        layout=AudioLayout.CHANNELS,
        duration_s=seconds,
        client_id=config.secrets.zoom_client_id.reveal(),
        client_secret=config.secrets.zoom_client_secret.reveal(),
        **changes,
    )


def secret_token(config: Config) -> str:
    assert config.secrets.zoom_secret_token is not None
    return config.secrets.zoom_secret_token.reveal()


async def record_calls(
    running: RunningService, config: Config, *scenarios: Scenario
) -> list[SimEngagement]:
    """Run ``scenarios`` through the service over signed webhooks; return once every recording
    ended and every sealed file is uploaded and verified."""
    url = f"http://127.0.0.1:{running.port}/webhook"
    sim_config = SimulatorConfig(webhook_url=url, secret_token=secret_token(config))
    async with open_simulator(sim_config) as sim:
        calls = [await sim.start(scenario) for scenario in scenarios]
        for call in calls:
            await call.finished.wait()
    for engagement in running.supervisor.history:
        await engagement.finished.wait()
    await running.uploads_settled()
    return calls


async def test_a_signed_webhook_becomes_a_verified_recording(tmp_path: Path) -> None:
    config = short_config(tmp_path)
    with trio.fail_after(90):
        async with service(config) as running:
            [eng] = await record_calls(running, config, zcc_call(config, seconds=5.0))
            catalog = running.components.catalog
            [row] = await catalog.search(stream_id=eng.scenario.rtms_stream_id)
            detail = await catalog.show(row.recording_id)
            assert detail is not None
            assert detail.recording.status is RecordingStatus.COMPLETE
            assert {s.track for s in detail.segments} == {"channel-ch-agent", "channel-ch-caller"}
            assert all(s.upload_state is UploadState.VERIFIED for s in detail.segments)
            for track in ("channel-ch-agent", "channel-ch-caller"):
                seconds = sum(
                    s.sample_count / s.sample_rate for s in detail.segments if s.track == track
                )
                assert seconds == pytest.approx(5.0, abs=0.1)
            verdict = await verify_recording(
                running.components, row.recording_id, actor="test", reason="test"
            )
            assert verdict.ok, verdict
            trail = await catalog.audit_trail(row.recording_id)
            assert [e.action for e in trail] == ["verify"]


async def test_a_failover_reconnects_once(tmp_path: Path) -> None:
    """The failover webhook reaches the supervisor, and its new URLs reach the catalog row the
    lease renewer watches: the engagement must reconnect once, not once for each."""
    config = short_config(tmp_path)
    with trio.fail_after(90):
        # Renewing every 0.2 s, the renewer looks at the row several times after the failover.
        async with service(config, lease_ttl_s=0.6) as running:
            [call] = await record_calls(
                running,
                config,
                zcc_call(config, seconds=4.0, steps=(Step(1.5, Action.FAILOVER),)),
            )
    assert call.stats.failovers == 1
    assert call.stats.signaling_accepted == 2
    assert call.stats.signaling_max_open == 1


@dataclass
class Captured:
    headers: Mapping[str, str]
    body: bytes


async def test_forged_stale_and_malformed_webhooks_do_nothing_duplicates_connect_once(
    tmp_path: Path,
) -> None:
    config = short_config(tmp_path)
    token = secret_token(config)
    captured: list[Captured] = []

    def keep(headers: Mapping[str, str], body: bytes) -> int:
        captured.append(Captured(headers, body))
        return 200

    with trio.fail_after(90):
        async with service(config) as running, httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{running.port}/webhook"
            sim_config = SimulatorConfig(webhook_handler=keep, secret_token=token)
            async with open_simulator(sim_config) as sim:
                eng = await sim.start(zcc_call(config, seconds=3.0))
                await eng.wait_for(lambda s: any("rtms_started" in w.event for w in s.webhooks))
                started = next(c for c in captured if b"rtms_started" in c.body)
                now = int(time.time())

                async def post(body: bytes, ts: int, secret: str = token) -> int:
                    headers = {
                        "x-zm-request-timestamp": str(ts),
                        "x-zm-signature": sign_webhook(secret, ts, body),
                        "content-type": "application/json",
                    }
                    return (await http.post(url, content=body, headers=headers)).status_code

                other_stream = started.body.replace(eng.scenario.rtms_stream_id.encode(), b"f" * 32)
                assert await post(other_stream, now, secret="forged-secret") == 401
                assert await post(other_stream, now - 3600) == 401
                assert await post(b'{"event": "meeting.rtms_started", "payload": [', now) == 400
                assert await running.components.catalog.get_stream("f" * 32) is None
                assert running.supervisor.history == []
                for _ in range(5):
                    assert await post(started.body, now) == 200
                await eng.wait_for(lambda s: s.signaling_accepted >= 1)
                await eng.finished.wait()
            assert eng.stats.signaling_accepted == 1
            assert eng.stats.signaling_max_open == 1
            assert len(running.supervisor.history) == 1
            metrics = (await http.get(f"http://127.0.0.1:{running.port}/metrics")).text
            rejected = re.findall(
                r'^rtmsrec_webhook_rejections_total\{reason="(\w+)"\} (\S+)$', metrics, re.M
            )
            counts = {reason: float(value) for reason, value in rejected}
            assert counts["bad_signature"] == 1
            assert counts["stale_timestamp"] == 1


async def test_one_broken_engagement_does_not_disturb_the_others(tmp_path: Path) -> None:
    config = short_config(tmp_path)
    with trio.fail_after(120):
        async with service(config) as running:
            garbage = (
                Step(1.0, Action.GARBAGE, {"kind": "all", "socket": "media"}),
                Step(1.5, Action.GARBAGE, {"kind": "all", "socket": "signaling"}),
            )
            *healthy, broken = await record_calls(
                running,
                config,
                *(zcc_call(config, seconds=4.0) for _ in range(3)),
                zcc_call(config, seconds=4.0, steps=garbage),
            )
            catalog = running.components.catalog
            for eng in healthy:
                [row] = await catalog.search(stream_id=eng.scenario.rtms_stream_id)
                detail = await catalog.show(row.recording_id)
                assert detail is not None
                assert detail.recording.status is RecordingStatus.COMPLETE
                assert detail.gaps == ()
                agent = [s for s in detail.segments if s.track == "channel-ch-agent"]
                assert sum(s.sample_count for s in agent) / 8000 == pytest.approx(4.0, abs=0.1)
            [row] = await catalog.search(stream_id=broken.scenario.rtms_stream_id)
            assert row.status in (RecordingStatus.COMPLETE, RecordingStatus.INCOMPLETE)


async def test_export_writes_verified_wavs_a_manifest_and_an_audit_entry(tmp_path: Path) -> None:
    config = short_config(tmp_path)
    key_path = tmp_path / "signing.ed25519"
    generate_signing_key(key_path)
    key = load_signing_key(key_path)
    with trio.fail_after(90):
        async with service(config) as running:
            [eng] = await record_calls(running, config, zcc_call(config, seconds=3.0))
            c = running.components
            [row] = await c.catalog.search(stream_id=eng.scenario.rtms_stream_id)
            out = tmp_path / "export"
            await export_bundle(
                c,
                [row.recording_id],
                out,
                actor="officer-1",
                reason="FINRA request 42",
                signing_key=key,
            )
            [entry] = manifest_json(out)["recordings"]  # type: ignore[misc]
            assert entry["rtms_stream_id"] == eng.scenario.rtms_stream_id
            listed = {f["path"]: f for f in entry["files"]}
            on_disk = {
                p.relative_to(out).as_posix()
                for p in out.rglob("*")
                if p.is_file() and p.name not in ("manifest.json", "manifest.sig")
            }
            assert set(listed) == on_disk
            wavs = sorted(out.rglob("*.wav"))
            assert len([f for f in listed.values() if f["kind"] == "track"]) >= 2
            for path in out.rglob("*"):
                if path.is_file():
                    assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    name = path.relative_to(out).as_posix()
                    assert name not in listed or listed[name]["sha256"] == digest, name
            for path in wavs:
                with wave.open(io.BytesIO(path.read_bytes())) as wav:
                    assert wav.getframerate() == 8000
                    assert wav.getnframes() > 0
            audits = await c.catalog.audit_trail(row.recording_id)
            assert (audits[0].actor, audits[0].action, audits[0].reason) == (
                "officer-1",
                "export",
                "FINRA request 42",
            )
            with pytest.raises(StorageError, match="never overwrites"):
                await export_bundle(
                    c, [row.recording_id], out, actor="o", reason="again", signing_key=key
                )
            # The same through the command line, on the same embedded-default state.
            env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
            cli = [sys.executable, "-m", "recorder"]
            listed = await trio.run_process(
                [*cli, "search", "--product", "contact_center"], env=env, capture_stdout=True
            )
            assert row.recording_id in listed.stdout.decode()
            checked = await trio.run_process(
                [*cli, "verify", row.recording_id, "--reason", "audit"],
                env=env,
                capture_stdout=True,
            )
            assert f"{row.recording_id}: OK" in checked.stdout.decode()
            # A byte flipped in the store is caught by verification, named per object.
            store_root = config.storage.local_store_path or tmp_path
            victim = sorted(store_root.rglob("*.wav.rec"))[0]
            victim.chmod(0o644)
            data = bytearray(victim.read_bytes())
            data[len(data) // 2] ^= 0x01
            victim.write_bytes(bytes(data))
            verdict = await verify_recording(c, row.recording_id, actor="t", reason="t")
            assert not verdict.ok
            assert verdict.count(Verdict.CORRUPT) == 1


class _InterruptingStore:
    """The real store, but opening ``key`` interrupts the export the way ``interrupt`` says
    (streamed, or as the local store's file the export reads itself)."""

    def __init__(self, store: Any, key: str, interrupt: Any) -> None:
        self._store, self._key, self._interrupt = store, key, interrupt

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def open(self, key: str, **kwargs: Any) -> Any:
        if key == self._key:
            self._interrupt()
        return self._store.open(key, **kwargs)

    async def open_file(self, key: str, **kwargs: Any) -> Any:
        if key == self._key:
            self._interrupt()
        return await self._store.open_file(key, **kwargs)


async def test_a_failed_export_leaves_no_plaintext_and_names_the_object(tmp_path: Path) -> None:
    config = short_config(tmp_path)
    with trio.fail_after(90):
        async with service(config) as running:
            [eng] = await record_calls(running, config, zcc_call(config, seconds=3.0))
            c = running.components
            [row] = await c.catalog.search(stream_id=eng.scenario.rtms_stream_id)
            detail = await c.catalog.show(row.recording_id)
            assert detail is not None
            second = [*detail.segments, *detail.records][1]
            store_root = config.storage.local_store_path
            assert store_root is not None
            exports = tmp_path / "exports"
            exports.mkdir()
            generate_signing_key(tmp_path / "signing.ed25519")
            key = load_signing_key(tmp_path / "signing.ed25519")

            # Interrupted by cancellation and by Ctrl-C after the first file was decrypted.
            def cancel() -> None:
                scope.cancel()

            def ctrl_c() -> None:
                raise KeyboardInterrupt

            for interrupt in (cancel, ctrl_c):
                store = _InterruptingStore(c.store, second.object_key, interrupt)
                expected = (
                    pytest.raises(KeyboardInterrupt) if interrupt is ctrl_c else nullcontext()
                )
                with trio.CancelScope() as scope, expected:
                    await export_bundle(
                        replace(c, store=store),
                        [row.recording_id],
                        exports / "x",
                        actor="o",
                        reason="r",
                        signing_key=key,
                    )
                assert scope.cancelled_caught or interrupt is ctrl_c
                assert list(exports.iterdir()) == [], interrupt

        # The second object corrupted in the store: the CLI exits non-zero naming it.
        victim = LocalStore(store_root)._path(second.object_key)
        victim.chmod(0o644)
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
        env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
        await trio.run_process(
            [sys.executable, "-m", "recorder", "keys", "init", "--export-signing"],
            env=env,
            capture_stdout=True,
        )
        out = exports / "case-42"
        done = await trio.run_process(
            [
                sys.executable,
                "-m",
                "recorder",
                "export",
                row.recording_id,
                "--out",
                str(out),
                "--reason",
                "review",
            ],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert done.returncode != 0
        assert second.object_key in done.stderr.decode()
        assert list(exports.iterdir()) == []
        assert not list(await trio.to_thread.run_sync(lambda: list(tmp_path.rglob("*.wav"))))


async def test_documented_keys_work_and_failures_are_counted(
    tmp_path: Path,
) -> None:
    """``dedup_retention_s`` sets how long dedup keys live, /readyz runs the ``keys`` check, and
    a spool above ``spool_warn_bytes`` raises the warning metric and a /readyz note (still
    ready). The spool is kept full by one job the store refuses (its key is a directory); a
    second job meets other bytes under its key and counts as an integrity failure."""
    base = short_config(tmp_path)
    config = replace(
        base,
        service=replace(base.service, dedup_retention_s=30_000),
        storage=replace(base.storage, spool_warn_bytes=1000),
    )
    store_root = config.storage.local_store_path
    assert store_root is not None
    source, job = sealed_file(tmp_path / "stuck", 0)
    await Spool(config.storage.spool_dir / "queue").enqueue(source, job)
    LocalStore(store_root)._path(job.object_key).mkdir(parents=True)
    # And one job whose key already holds other bytes: an integrity failure, counted.
    clashing, clash_job = sealed_file(tmp_path / "clash", 1)
    other, _ = sealed_file(tmp_path / "other", 1)
    await LocalStore(store_root).put(
        clash_job.object_key,
        other,
        sha256=hashlib.sha256(other.read_bytes()).hexdigest(),
        retain_until=clash_job.retain_until,
    )
    await Spool(config.storage.spool_dir / "queue").enqueue(clashing, clash_job)
    with trio.fail_after(90):
        async with service(config) as running, httpx.AsyncClient() as http:
            base_url = f"http://127.0.0.1:{running.port}"
            await record_calls_started(running, config)
            metrics = ""
            while "rtmsrec_upload_spool_warning 1.0" not in metrics:
                await trio.sleep(0.1)
                metrics = (await http.get(f"{base_url}/metrics")).text
            ready = await http.get(f"{base_url}/readyz")
            assert ready.status_code == 200, ready.text
            checks = ready.json()["checks"]
            assert checks["keys"] == {"ok": True}
            assert "above the warning level of 1000" in checks["spool"]["note"]
            assert checks["spool"]["ok"] is True
            while "rtmsrec_upload_integrity_failures_total 1.0" not in metrics:
                await trio.sleep(0.1)
                metrics = (await http.get(f"{base_url}/metrics")).text
            assert 'rtmsrec_recovery_failures_total{stage="recover"} 0.0' in metrics
    sqlite_path = config.catalog.sqlite_path
    assert sqlite_path is not None
    with closing(sqlite3.connect(sqlite_path)) as db:
        rows = db.execute("SELECT expires_ms - first_seen_ms FROM webhook_dedup").fetchall()
    lifetimes = {row[0] for row in rows}
    assert lifetimes == {30_000_000}


async def record_calls_started(running: RunningService, config: Config) -> None:
    """One short call through the service, up to its recording's end (uploads may lag)."""
    url = f"http://127.0.0.1:{running.port}/webhook"
    sim_config = SimulatorConfig(webhook_url=url, secret_token=secret_token(config))
    async with open_simulator(sim_config) as sim:
        call = await sim.start(zcc_call(config, seconds=1.0))
        await call.finished.wait()


@pytest.mark.timeout(300)
async def test_the_demo_ends_with_verified_recordings(tmp_path: Path) -> None:
    lines: list[str] = []
    with trio.fail_after(240):
        code = await run_demo(tmp_path, print_fn=lines.append)
    text = "\n".join(lines)
    assert code == 0, text
    assert "Every recording verified" in text
    assert text.count("verification: OK") == 4
    assert "failover" in text
    assert "media_interrupted" in text


def test_check_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    for name in ("ZOOM_CLIENT_ID", "ZOOM_CLIENT_SECRET", "ZOOM_SECRET_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert cli_main(["check"]) == 3
    out = capsys.readouterr().out
    assert "FAIL  secrets" in out
    assert "ZOOM_CLIENT_ID" in out
    for part in ("catalog", "store", "keys", "spool"):
        assert f"ok    {part}" in out
    # check reads: no catalog, directory or key is created by it.
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("ZOOM_CLIENT_ID", "id")
    monkeypatch.setenv("ZOOM_CLIENT_SECRET", "client-secret-value")
    monkeypatch.setenv("ZOOM_SECRET_TOKEN", "token-value")
    assert cli_main(["check"]) == 0
    out = capsys.readouterr().out
    assert "client-secret-value" not in out
    assert "token-value" not in out
