"""Key commands and crypto-shredding on the embedded default (SQLite catalog, local store, local
KEK), through the real ``recorder`` command line: ``keys rotate`` then ``keys rewrap`` (SIGKILLed
half way and run again) leaves every old recording readable and is audited; ``shred`` refuses
under hold, then makes decryption fail with "key destroyed" and writes a destruction record
that verifies. No unwrapped key in the catalog or the logs; key files 0600."""

from __future__ import annotations

import base64
import logging
import os
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from recorder.catalog.base import HoldScope
from recorder.config import Config
from recorder.crypto.keyring import RecordingKeyEntry
from recorder.errors import KeyDestroyed, StorageError
from recorder.officer.bundle.export import export_bundle
from recorder.officer.bundle.signing import generate_signing_key, load_signing_key
from recorder.officer.shred import VERIFIED_DESTROYED
from recorder.officer.verify import Verdict, verify_recording
from recorder.service.app import RunningService, run_service
from recorder.service.components import open_components
from recorder.service.demo import demo_config
from recorder.simulator.scenario import AudioLayout, Product, Scenario
from recorder.simulator.simulator import SimulatorConfig, open_simulator
from recorder.spool.uploader import Backoff
from tests.conftest import fill_filesystem

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "recorder"]
#: Keys made up for the rewrap run, so that it has several pages to be killed in.
EXTRA_KEYS = 600


@asynccontextmanager
async def service(config: Config) -> AsyncIterator[RunningService]:
    async with run_service(
        config, owner="test", upload_backoff=Backoff(initial_s=0.1, max_s=1.0)
    ) as running:
        yield running


def zcc_call(config: Config, seconds: float) -> Scenario:
    assert config.secrets.zoom_client_id is not None
    assert config.secrets.zoom_client_secret is not None
    return Scenario(
        product=Product.CONTACT_CENTER,
        name="zcc",
        layout=AudioLayout.CHANNELS,
        duration_s=seconds,
        client_id=config.secrets.zoom_client_id.reveal(),
        client_secret=config.secrets.zoom_client_secret.reveal(),
    )


async def record_calls(config: Config, calls: int) -> list[str]:
    async with service(config) as running:
        assert config.secrets.zoom_secret_token is not None
        sim_config = SimulatorConfig(
            webhook_url=f"http://127.0.0.1:{running.port}/webhook",
            secret_token=config.secrets.zoom_secret_token.reveal(),
        )
        async with open_simulator(sim_config) as sim:
            started = [await sim.start(zcc_call(config, 2.0)) for _ in range(calls)]
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


async def cli(env: dict[str, str], *args: str, check: bool = True) -> tuple[int, str]:
    done = await trio.run_process(
        [*CLI, *args], env=env, capture_stdout=True, capture_stderr=True, check=False
    )
    out = done.stdout.decode() + done.stderr.decode()
    if check:
        assert done.returncode == 0, out
    return done.returncode, out


async def key_material(config: Config) -> dict[str, bytes]:
    """Every live recording key, unwrapped (test-side only, to search for leaks)."""
    async with open_components(config) as c:
        material = {}
        for row in await c.catalog.recording_keys_not_under("no such KEK", limit=1000):
            entry = RecordingKeyEntry(
                row.rk_id, row.recording_id, row.kek_key_id, row.wrapped or b"", 0
            )
            material[row.rk_id] = await trio.to_thread.run_sync(c.keyring._unwrap_entry, entry)
        return material


def assert_private(key_dir: Path) -> None:
    for path in [key_dir, *key_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
        elif path.name != ".lock":
            assert mode == 0o600, (path, oct(mode))


def assert_not_in(blob: bytes, material: dict[str, bytes], where: str) -> None:
    for rk_id, key in material.items():
        for spelling in (key, key.hex().encode(), base64.b64encode(key)):
            assert spelling not in blob, f"recording key {rk_id} found in {where}"


@pytest.mark.timeout(300)
async def test_rotate_rewrap_resume_and_shred(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = demo_config(tmp_path)
    config = replace(config, capture=replace(config.capture, segment_seconds=2))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    for name in ("ZOOM_CLIENT_ID", "ZOOM_CLIENT_SECRET", "ZOOM_SECRET_TOKEN"):
        env.pop(name, None)
    with trio.fail_after(240):
        held, other = await record_calls(config, 2)
        # Plenty of recording keys, so that the rewrap below is killed with pages to go.
        async with open_components(config) as c:
            await trio.to_thread.run_sync(
                lambda: [c.keyring.prepare(f"made-up-{i}") for i in range(EXTRA_KEYS)]
            )
            [(old_kek, live)] = [(u.kek_key_id, u.live) for u in await c.catalog.kek_usage()]
            assert live >= EXTRA_KEYS + 2
        before = await key_material(config)

        _, status = await cli(env, "keys", "status")
        assert f"{old_kek}: {live} / 0" in status
        _, rotated = await cli(env, "keys", "rotate", "--reason", "yearly rotation")
        new_kek = rotated.split()[2].rstrip(":")
        assert new_kek.startswith("local:kek-")
        assert new_kek != old_kek

        # A rewrap SIGKILLed after its first page, then run again to the end.
        process = await trio.lowlevel.open_process(
            [*CLI, "keys", "rewrap", "--reason", "after rotation"],
            env=env,
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        seen = b""
        while b"re-wrapped" not in seen:
            chunk = await process.stdout.receive_some(4096)
            assert chunk, "rewrap ended without progress output"
            seen += chunk
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        async with open_components(config) as c:
            usage = {u.kek_key_id: u.live for u in await c.catalog.kek_usage()}
        assert usage.get(new_kek, 0) >= 100, usage
        assert usage.get(old_kek, 0) > 0, usage  # killed half way: some still under the old
        _, out = await cli(env, "keys", "rewrap", "--reason", "after rotation, resumed")
        assert "0 failed" in out
        async with open_components(config) as c:
            usage = {u.kek_key_id: u.live for u in await c.catalog.kek_usage()}
            assert usage == {new_kek: live}
            trail = await c.catalog.audit_trail(new_kek)
            actions = [e.action for e in trail]
            assert actions.count("keys.rewrap.start") == 2
            assert actions.count("keys.rewrap.done") == 1
            assert "keys.rotate" in actions
            assert all(e.actor for e in trail)
        # Same keys, new wrapping; the old KEK is no longer needed for any recording.
        assert await key_material(config) == before
        kek_dir = config.keys.key_dir / "kek" / "keks"
        (kek_dir / f"{old_kek.removeprefix('local:')}.key").unlink()
        async with open_components(config) as c:
            for rid in (held, other):
                verdict = await verify_recording(c, rid, actor="t", reason="after rewrap")
                assert verdict.ok, verdict

            # Shredding refuses under a hold (and destroys nothing), then works once released.
            hold = await c.catalog.place_hold(
                matter="m-1",
                scope=HoldScope.RECORDING,
                scope_value=held,
                placed_by="legal",
                reason="litigation",
                now_ms=1,
            )
        code, out = await cli(env, "shred", held, "--reason", "erasure request 7", check=False)
        assert code == 4, out
        assert "legal hold" in out
        async with open_components(config) as c:
            assert (await verify_recording(c, held, actor="t", reason="held")).ok
            await c.catalog.release_hold(
                hold.hold_id, released_by="legal", reason="case closed", now_ms=2
            )
        _, out = await cli(env, "shred", held, "--reason", "erasure request 7")
        assert VERIFIED_DESTROYED in out
        async with open_components(config) as c:
            verdict = await verify_recording(c, held, actor="t", reason="after shred")
            assert verdict.objects
            assert verdict.count(Verdict.ERROR) == len(verdict.objects)
            assert all("key destroyed" in o.detail for o in verdict.objects)
            generate_signing_key(tmp_path / "signing.ed25519")
            with pytest.raises(KeyDestroyed, match="key destroyed"):
                await export_bundle(
                    c,
                    [held],
                    tmp_path / "export",
                    actor="t",
                    reason="t",
                    signing_key=load_signing_key(tmp_path / "signing.ed25519"),
                )
            assert not (tmp_path / "export").exists()
            assert (await verify_recording(c, other, actor="t", reason="unaffected")).ok
            [record] = await c.catalog.destruction_records(held)
            assert record.verification.startswith(VERIFIED_DESTROYED)
            assert record.rule == "manual:erasure request 7"
            assert record.actor
            assert record.hold_check.startswith("no holds at")
            detail = await c.catalog.show(held)
            assert detail is not None
            assert {o.key for o in record.objects} == {
                s.object_key for s in (*detail.segments, *detail.records)
            }
            assert all(len(o.sha256) == 64 for o in record.objects)
            [audit] = [
                e for e in await c.catalog.audit_trail(held) if e.action == "recording.shred"
            ]
            assert record.sha256() in audit.details_json
            tombstones = await c.catalog.recording_keys_of(held)
            assert tombstones
            assert all(k.destroyed and k.wrapped is None for k in tombstones)
            # Its personal data went with it, in the record's transaction; ``show`` says so.
            scrub = await c.catalog.pii_scrub(held)
            assert scrub is not None
            assert (scrub.scrubbed_ms, scrub.actor) == (record.destroyed_ms, record.actor)
            assert detail.participants == ()
            assert await c.catalog.pii_scrub(other) is None
        code, shown = await cli(env, "show", held)
        assert code == 0, shown
        assert "(crypto_erase) under manual:erasure request 7" in shown
        assert "personal data scrubbed" in shown
        _, verified = await cli(env, "shred", held, "--verify")
        assert f"destruction record sha256 {record.sha256()}" in verified
        code, out = await cli(env, "shred", other, "--verify", check=False)
        assert code == 90
        assert "no destruction record" in out

    catalog_bytes = b"".join(
        p.read_bytes() for p in config.storage.state_dir.rglob("catalog*") if p.is_file()
    )
    assert catalog_bytes
    assert_not_in(catalog_bytes, before, "the catalog")
    assert_not_in(caplog.text.encode(), before, "the logs")
    assert_not_in((status + rotated + out).encode(), before, "command output")
    assert_private(config.keys.key_dir)


async def test_check_reads_an_existing_installation_and_changes_nothing(tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "ZOOM_CLIENT_ID": "id"}
    env |= {"ZOOM_CLIENT_SECRET": "s", "ZOOM_SECRET_TOKEN": "t"}
    with trio.fail_after(60):
        async with open_components(config) as c:
            await trio.to_thread.run_sync(c.keyring.prepare, "existing")
            usage = await c.catalog.kek_usage()

        def snapshot() -> dict[str, tuple[int, int]]:
            return {
                str(p): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in tmp_path.rglob("*")
                # SQLite's own shared-memory and (empty) WAL files come and go with any reader.
                if p.is_file()
                and not p.name.endswith("-shm")
                and not (p.name.endswith("-wal") and p.stat().st_size == 0)
            }

        before = snapshot()
        _, out = await cli(env, "check")
        assert "ok    catalog: sqlite reachable, schema version" in out
        assert "ok    keys: local KEK local:kek-" in out
        assert snapshot() == before
        async with open_components(config) as c:
            assert await c.catalog.kek_usage() == usage


async def test_a_public_key_exported_to_a_full_disk_is_named_and_not_left_half(
    tmp_path: Path, tiny_filesystem: Path
) -> None:
    """Both public-key exports, onto a full file system (a USB stick, say): a storage error,
    the file named, and no truncated key left to be handed out."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    private = tmp_path / "officer.x25519"
    fill_filesystem(tiny_filesystem)
    with trio.fail_after(60):
        await cli(env, "keys", "init", "--x25519", "--private", str(private), "--public",
                  str(tmp_path / "officer.pub"))  # fmt: skip
        await cli(env, "keys", "init", "--export-signing")
        for command, extra in (
            ("export-public", ["--private", str(private)]),
            ("export-signing-public", []),
        ):
            out = tiny_filesystem / f"{command}.pub"
            code, text = await cli(env, "keys", command, *extra, "--out", str(out), check=False)
            assert code == StorageError.exit_code, text
            assert f"error: {out}: cannot write: No space left on device" in text
            assert "Traceback" not in text
    assert os.listdir(tiny_filesystem) == ["filler"]


async def test_init_and_export_public_make_private_keys_0600_and_never_overwrite(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    private, public = tmp_path / "officer.x25519", tmp_path / "officer.x25519.pub"
    with trio.fail_after(60):
        _, out = await cli(
            env, "keys", "init", "--x25519", "--private", str(private), "--public", str(public)
        )
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        key_id = out.split()[4].rstrip(":")
        assert key_id.startswith("x25519:")
        code, out = await cli(
            env,
            "keys",
            "init",
            "--x25519",
            "--private",
            str(private),
            "--public",
            str(public),
            check=False,
        )
        assert code == 3
        assert "refusing to overwrite" in out
        again = tmp_path / "again.pub"
        _, out = await cli(
            env, "keys", "export-public", "--private", str(private), "--out", str(again)
        )
        assert key_id in out
        assert again.read_bytes() == public.read_bytes()
        code, out = await cli(
            env,
            "keys",
            "export-public",
            "--private",
            str(private),
            "--out",
            str(again),
            check=False,
        )
        assert code == 3
        # The local KEK of the embedded default: created once, 0600, then refused.
        _, out = await cli(env, "keys", "init")
        assert "created local KEK local:kek-" in out
        code, out = await cli(env, "keys", "init", check=False)
        assert code == 3
        assert "refusing to overwrite" in out
        assert_private(tmp_path / "state" / "rtms-recorder" / "keys")


async def test_escrowed_keys_are_counted_alerted_and_rewrapped_to_the_primary(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from recorder.catalog.aio import open_async_catalog
    from recorder.crypto.keys import generate_x25519_keypair
    from recorder.crypto.keys.x25519 import X25519Unwrapper
    from recorder.officer import keys as key_commands
    from recorder.service.components import open_keyring
    from recorder.service.metrics import RecorderMetrics

    generate_x25519_keypair(tmp_path / "escrow.x25519", tmp_path / "escrow.pub")
    escrow_id = X25519Unwrapper.from_file(tmp_path / "escrow.x25519").key_id
    config = demo_config(tmp_path)
    config = replace(
        config, keys=replace(config.keys, escrow_public_key_path=tmp_path / "escrow.pub")
    )
    assert config.catalog.sqlite_path is not None
    metrics = RecorderMetrics()
    with trio.fail_after(60):
        # The catalog goes away under a running recorder: the key is escrowed, never lost.
        dead = await open_async_catalog(f"sqlite:///{config.catalog.sqlite_path}", now_ms=1)
        keyring = await trio.to_thread.run_sync(open_keyring, config, dead, metrics)
        await dead.aclose()
        rk_id = await trio.to_thread.run_sync(keyring.prepare, "rec-escrowed")
        assert 'rtmsrec_key_escrow_total{cause="key_store_unavailable"} 1.0' in (
            metrics.render().decode()
        )
        assert "ALERT key store unreachable" in caplog.text
        assert rk_id in caplog.text
        # The next start moves it into the catalog; an officer holding the escrow private key
        # re-wraps it under the primary KEK.
        officer_config = replace(
            config,
            keys=replace(config.keys, private_key_paths=(tmp_path / "escrow.x25519",)),
        )
        async with open_components(officer_config) as c:
            [row] = await c.catalog.recording_keys_of("rec-escrowed")
            assert row.kek_key_id == escrow_id
            args = type("Args", (), {"reason": "escrow cleanup", "from_kek": escrow_id})()
            assert await key_commands.rewrap(c, args) == 0  # type: ignore[arg-type]
            [row] = await c.catalog.recording_keys_of("rec-escrowed")
            assert row.kek_key_id.startswith("local:kek-")
        async with open_components(config) as c:  # no escrow private key needed any more
            await trio.to_thread.run_sync(c.keyring.open_recording_key, rk_id, "rec-escrowed")
