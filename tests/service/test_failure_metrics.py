"""Failures that used to be invisible are counted: key-service fallbacks, recovery failures, and
the ``keys`` readiness check sees the key service itself, not the escrow behind it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from recorder.config import KeyProviderKind
from recorder.crypto.keys import generate_x25519_keypair, make_kms_client
from recorder.crypto.setup import KeyringSettings, key_service_probe
from recorder.crypto.writer import PART_SUFFIX
from recorder.errors import RecorderError
from recorder.service.app import _keys_check
from recorder.service.components import now_ms, open_components
from recorder.service.demo import demo_config
from recorder.service.metrics import RecorderMetrics
from recorder.service.recovery import recover_at_startup
from recorder.simulator.simulator import SimulatorConfig, open_simulator

from .test_service import secret_token, service, short_config, zcc_call


def _value(metrics: RecorderMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_key_service_fallback_is_counted_and_readiness_still_names_the_outage(
    tmp_path: Path,
) -> None:
    private, public = tmp_path / "escrow", tmp_path / "escrow.pub"
    generate_x25519_keypair(private, public)
    base = demo_config(tmp_path)
    config = replace(
        base,
        keys=replace(
            base.keys,
            provider=KeyProviderKind.KMS,
            kms_key_id="alias/none",
            kms_endpoint_url="http://127.0.0.1:9",  # discard port: nothing answers
            escrow_public_key_path=public,
        ),
    )
    metrics = RecorderMetrics()
    with trio.fail_after(60):
        async with open_components(config, metrics=metrics) as c:
            assert _value(metrics, "rtmsrec_key_escrow_total", cause="key_service_unavailable") == 0
            await c.keyring.prepare_async("recording-1")
            assert _value(metrics, "rtmsrec_key_escrow_total", cause="key_service_unavailable") == 1
        # Recording goes on through the escrow key, but /readyz's keys check says KMS is down
        # (and probing it is not counted as a fallback).
        with pytest.raises(RecorderError):
            await _keys_check(config)()
    assert _value(metrics, "rtmsrec_key_escrow_total", cause="key_service_unavailable") == 1


async def test_recovery_failures_are_counted_by_stage(tmp_path: Path) -> None:
    metrics = RecorderMetrics()
    with trio.fail_after(60):
        async with open_components(demo_config(tmp_path), metrics=metrics) as c:
            (c.writing_dir / f"garbage{PART_SUFFIX}").write_bytes(os.urandom(4096))
            (c.writing_dir / "garbage.rtmsenc").write_bytes(os.urandom(4096))
            result = await recover_at_startup(c)
    assert len(result.failed) == 1
    assert _value(metrics, "rtmsrec_recovery_failures_total", stage="recover") == 1
    assert _value(metrics, "rtmsrec_recovery_failures_total", stage="requeue") == 1


async def test_the_keys_probe_wraps_with_the_configured_kms_key(
    tmp_path: Path, moto_endpoint: str
) -> None:
    """moto 5.2.5 still issues data keys under a disabled or pending-deletion key, so the
    failing case here is a key that does not exist (KMS NotFound, as for a deleted key)."""
    client = make_kms_client(region="us-east-1", endpoint_url=moto_endpoint)

    def probe_for(key_id: str) -> Callable[[], None]:
        return key_service_probe(
            KeyringSettings(
                recording_key_dir=tmp_path / "rk",
                mode="kms",
                kms_key_id=key_id,
                kms_endpoint_url=moto_endpoint,
            )
        )

    with trio.fail_after(30):
        key_id = (await trio.to_thread.run_sync(client.create_key))["KeyMetadata"]["KeyId"]
        await trio.to_thread.run_sync(probe_for(key_id))
        with pytest.raises(RecorderError, match="not found"):
            await trio.to_thread.run_sync(probe_for("11111111-2222-3333-4444-555555555555"))


@pytest.mark.slow
async def test_a_lost_lease_is_counted(tmp_path: Path) -> None:
    config = short_config(tmp_path)
    with trio.fail_after(60):
        async with service(config, lease_ttl_s=0.6) as running:
            url = f"http://127.0.0.1:{running.port}/webhook"
            sim_config = SimulatorConfig(webhook_url=url, secret_token=secret_token(config))
            async with open_simulator(sim_config) as sim:
                call = await sim.start(zcc_call(config, seconds=30.0))
                await call.wait_for(lambda s: s.signaling_accepted >= 1)
                # Another recorder claims the stream (its clock says our lease ran out).
                stolen = await running.components.catalog.try_claim(
                    call.scenario.rtms_stream_id, "thief", 60_000, now_ms() + 60_000
                )
                assert stolen is not None
                [engagement] = running.supervisor.history
                await engagement.finished.wait()
            metrics = running.components.metrics
            assert _value(metrics, "rtmsrec_leases_lost_total", cause="taken_over") == 1
