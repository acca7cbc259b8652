"""The pieces of ``serve --workers`` that need no process tree: a worker's own configuration,
``[workers]`` parsing, the status pipe to the parent, and the per-worker systemd template unit."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import trio

from recorder.config import WorkersConfig, parse_config
from recorder.errors import ConfigError
from recorder.service.app import run_service
from recorder.service.demo import demo_config
from recorder.service.prefork import (
    WORKER_BLAS_THREADS,
    WORKER_ENV_DEFAULTS,
    WORKER_MALLOC_ARENA_MAX,
    worker_environ,
)
from recorder.service.workers import ParentNotifier, WorkerRole, worker_config, worker_state_dir
from recorder.simulator.scenario import Action, AudioLayout, Product, Scenario, Step
from recorder.simulator.simulator import SimulatorConfig, open_simulator
from tests.service.test_ops import EXEC_PATH, OPS, systemd_analyze_verify, unit_settings


def test_a_worker_gets_its_own_state_and_spool_and_shares_everything_else(tmp_path: Path) -> None:
    config = parse_config(
        {"storage": {"state_dir": "state"}}, where="t", config_dir=tmp_path, environ={}
    )
    one = worker_config(config, 1)
    base = tmp_path / "state"
    assert one.storage.state_dir == worker_state_dir(base, 1) == base / "workers" / "1"
    assert one.storage.spool_dir == base / "workers" / "1" / "spool"
    assert one.catalog == config.catalog
    assert one.catalog.sqlite_path == base / "catalog.sqlite3"
    assert one.keys.key_dir == base / "keys"
    assert one.storage.local_store_path == base / "store"
    assert one.retention == config.retention
    # A spool placed elsewhere by the operator gets a per-worker folder inside it.
    moved = replace(config, storage=replace(config.storage, spool_dir=tmp_path / "fast-disk"))
    assert worker_config(moved, 0).storage.spool_dir == tmp_path / "fast-disk" / "worker-0"
    with pytest.raises(ValueError, match="worker index"):
        worker_config(config, -1)


def test_workers_section_defaults_limits_and_errors(tmp_path: Path) -> None:
    default = parse_config({}, where="t", config_dir=tmp_path, environ={})
    assert default.workers == WorkersConfig()
    parsed = parse_config(
        {"workers": {"count": 2, "max_engagements": 150, "claim_grace_s": 0.5}},
        where="t",
        config_dir=tmp_path,
        environ={},
    )
    assert (parsed.workers.count, parsed.workers.max_engagements) == (2, 150)
    assert parsed.workers.claim_grace_s == 0.5
    for bad, key in (
        ({"max_engagements": 0}, "max_engagements"),
        ({"restart_delay_s": 10.0, "restart_max_s": 5.0}, "restart_max_s"),
        ({"claim_interval_s": 0}, "claim_interval_s"),
        ({"treads": 2}, "treads"),
    ):
        with pytest.raises(ConfigError, match=rf"\[workers\] {key}"):
            parse_config({"workers": bad}, where="t", config_dir=tmp_path, environ={})


def test_the_status_pipe_carries_sd_notify_lines_and_survives_the_parent(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    notifier = ParentNotifier(write_fd, ping_interval_s=2.0)
    assert notifier.enabled
    assert notifier.ping_interval_s == 2.0
    assert notifier.ready(status="listening\non port 1")
    assert notifier.watchdog()
    assert notifier.stopping()
    lines = os.read(read_fd, 4096).decode().splitlines()
    # A status text never spills into a second assignment.
    assert lines == ["READY=1", "STATUS=listening on port 1", "WATCHDOG=1", "STOPPING=1"]
    os.close(read_fd)
    # The parent is gone: the worker goes on, it only stops telling.
    assert not notifier.watchdog()
    assert not notifier.enabled
    assert notifier.watchdog()


def test_a_worker_environment_drops_systemds_variables_and_bounds_arenas_and_blas() -> None:
    parent = {"PATH": "/usr/bin", "NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "1"}
    env = worker_environ(parent)
    assert env == {
        "PATH": "/usr/bin",
        "MALLOC_ARENA_MAX": str(WORKER_MALLOC_ARENA_MAX),
        "OPENBLAS_NUM_THREADS": str(WORKER_BLAS_THREADS),
        "OMP_NUM_THREADS": str(WORKER_BLAS_THREADS),
    }
    assert "MALLOC_ARENA_MAX" not in parent
    # An operator's own choice (the unit's Environment=, a shell) is kept.
    assert worker_environ({"MALLOC_ARENA_MAX": "8"})["MALLOC_ARENA_MAX"] == "8"
    assert worker_environ({"OPENBLAS_NUM_THREADS": "4"})["OPENBLAS_NUM_THREADS"] == "4"


# A worker's first numpy import is the resamplers'; count its threads right after it.
_THREADS_AFTER_NUMPY = (
    "import os, recorder.audio.polyphase; print(len(os.listdir('/proc/self/task')))"
)


async def _threads_after_numpy_import(env: Mapping[str, str]) -> int:
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-c", _THREADS_AFTER_NUMPY], env=env, capture_stdout=True
        )
    return int(done.stdout)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts no thread on one core")
async def test_a_worker_process_imports_numpy_with_one_blas_thread() -> None:
    """Real processes, the parent's real environment: what a worker gets at exec is what
    OpenBLAS reads when numpy loads. Without the bound the same import starts a thread per
    extra core, which shows the count can tell the two apart."""
    operator = {k: v for k, v in os.environ.items() if k not in WORKER_ENV_DEFAULTS}
    assert await _threads_after_numpy_import(worker_environ(operator)) == 1
    assert await _threads_after_numpy_import(operator) > 1


def test_the_per_worker_template_unit_verifies_and_keeps_the_hardening(tmp_path: Path) -> None:
    text = (OPS / "recorder@.service").read_text().replace(EXEC_PATH, "/bin/true")
    installed = tmp_path / "rtms-recorder@1.service"
    installed.write_text(text)
    returncode, complaints = systemd_analyze_verify([installed])
    assert complaints == []
    assert returncode == 0
    single, template = unit_settings("recorder.service"), unit_settings("recorder@.service")
    differing = {k for k in single.keys() | template.keys() if single.get(k) != template.get(k)}
    assert differing == {"Description", "ExecStart"}
    assert template["ExecStart"] == [
        f"{EXEC_PATH} serve --config /etc/rtms-recorder/recorder.toml --worker-index %i"
    ]


async def test_a_failover_webhook_reaching_another_worker_reaches_the_owner_at_once(
    tmp_path: Path,
) -> None:
    """Two workers in this process on one catalog; Zoom's failover ``rtms_started`` goes to the
    worker that does NOT record the stream. The owner reconnects to the new server within a
    claim interval or two, long before its first lease renew (5 s after its claim)."""
    base = demo_config(tmp_path)
    base = replace(base, workers=replace(base.workers, claim_interval_s=0.1))
    token = base.secrets.zoom_secret_token
    assert token is not None
    async with AsyncExitStack() as stack:
        running = [
            await stack.enter_async_context(
                run_service(worker_config(base, i), owner=f"w{i}", worker=WorkerRole(i))
            )
            for i in range(2)
        ]
        client = await stack.enter_async_context(httpx.AsyncClient())

        async def route(headers: Mapping[str, str], body: bytes) -> int:
            stream_id = json.loads(body)["payload"]["rtms_stream_id"]
            owners = [r for r in running if stream_id in r.supervisor.engagements]
            # First delivery to worker 0; later ones to whichever worker does not own it.
            target = running[1] if owners and owners[0] is running[0] else running[0]
            response = await client.post(
                f"http://127.0.0.1:{target.port}/webhook", content=body, headers=dict(headers)
            )
            return response.status_code

        sim_config = SimulatorConfig(webhook_handler=route, secret_token=token.reveal())
        with trio.fail_after(40):
            async with open_simulator(sim_config) as sim:
                call = await sim.start(
                    Scenario(
                        product=Product.MEETING,
                        duration_s=5.0,
                        media=("audio",),
                        layout=AudioLayout.MIXED,
                        client_id=base.secrets.zoom_client_id.reveal(),  # type: ignore[union-attr]
                        client_secret=base.secrets.zoom_client_secret.reveal(),  # type: ignore[union-attr]
                        steps=(Step(1.5, Action.FAILOVER),),
                    )
                )
                await call.wait_for(lambda s: s.failovers >= 1)
                failed_over = trio.current_time()
                await call.wait_for(lambda s: s.reconnects >= 1)
                reconnect_s = trio.current_time() - failed_over
                await call.finished.wait()
    owners = [r.supervisor.settings.owner for r in running if r.supervisor.history]
    assert len(owners) == 1, "one worker recorded the stream"
    assert reconnect_s < 2.0, f"reconnected {reconnect_s:.2f} s after the failover"
