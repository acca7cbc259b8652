"""``recorder serve --workers 2`` as a real process tree, on SQLite and PostgreSQL: one port,
streams spread by the catalog's work queue, each recorded by one connection at a time, and a
SIGKILLed worker's streams taken over by the other worker once their leases lapse."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from recorder.catalog.aio import AsyncCatalog, open_configured_async_catalog
from recorder.catalog.base import RecordingStatus
from recorder.config import load_config
from recorder.rtms.events import GapCause
from recorder.service.instance import INSTANCE_ID_FILE, INSTANCE_LOCK_FILE
from recorder.service.prefork import WORKER_BLAS_THREADS, WORKER_MALLOC_ARENA_MAX
from recorder.service.workers import worker_state_dir
from recorder.simulator.simulator import SimulatorConfig, open_simulator

from .helpers_fleet import (
    RECORDER,
    FleetSecrets,
    ServeProcess,
    free_port,
    meeting,
    poll,
    serve_config_text,
    serve_processes,
    subprocess_env,
    wall_ms,
)

pytestmark = [pytest.mark.slow]

STREAMS = 8
LABEL = "wq"


class WorkersProcess(ServeProcess):
    """``recorder serve --workers N``: the parent; its workers are its children."""

    workers = 2

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await trio.lowlevel.open_process(
                [
                    str(RECORDER),
                    "serve",
                    "--config",
                    str(self.config_path),
                    "--workers",
                    str(self.workers),
                ],
                env=self.env,
                stdin=None,
                stdout=log,
                stderr=log,
            )

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Started and ready for the body; then stopped with SIGTERM, which must exit 0. On any
        failure the tree's log tail is printed; the process is always closed."""
        try:
            await self.start()
            async with httpx.AsyncClient() as client:
                await self.wait_ready(client)
            yield
            self.terminate()
            assert await self.wait() == 0, self.log_tail()
        except BaseException:
            print(f"----- parent and workers log -----\n{self.log_tail(120)}")
            raise
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        # SIGTERM first: the parent drains and stops its workers (rule 3 of prefork).
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            with trio.move_on_after(15, shield=True):
                await self.process.wait()
        await super().aclose()


def worker_identity(state_dir: Path, index: int) -> tuple[str, int]:
    """(lease owner, pid) of worker ``index``, from its own state directory."""
    own = worker_state_dir(state_dir, index)
    instance = (own / INSTANCE_ID_FILE).read_text().strip()
    pid = int((own / INSTANCE_LOCK_FILE).read_text().strip())
    return f"{LABEL}/{instance}", pid


def process_environ(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/environ").read_text().split("\0")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_kind(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


async def test_two_workers_share_the_port_spread_the_streams_and_take_over_a_killed_one(
    tmp_path: Path, catalog_kind: str | None
) -> None:
    secrets_ = FleetSecrets()
    state_dir = tmp_path / "state"
    port = free_port()
    config_path = tmp_path / "serve.toml"
    config_path.write_text(
        serve_config_text(
            state_dir=state_dir,
            port=port,
            key_dir=tmp_path / "keys",
            store_dir=tmp_path / "store",
            postgres_dsn=catalog_kind,
            # Short for the takeover, long enough that a renew slowed by a busy host does not
            # fence (the fence is at 80 %).
            lease_ttl_s=3.0,
        )
        + "[workers]\nmax_engagements = 20\nclaim_interval_s = 0.1\nclaim_grace_s = 1.0\n"
        # Longer than the lease: the survivor, not the restart, takes the streams over.
        "restart_delay_s = 20.0\nrestart_max_s = 20.0\n"
    )
    config = load_config(config_path, {})
    parent = WorkersProcess(
        "workers",
        config_path,
        port,
        subprocess_env(secrets_, owner=LABEL),
        tmp_path / "workers.log",
    )
    sim_config = SimulatorConfig(
        webhook_url=parent.webhook_url,
        secret_token=secrets_.secret_token,
        webhook_retry_delays_s=(0.5, 1.0),
    )
    with trio.fail_after(75):
        async with parent.serving():
            catalog = await open_configured_async_catalog(config.catalog, now_ms=wall_ms())
            try:
                survivor_pid = await _scenario(catalog, state_dir, sim_config, secrets_)
            finally:
                await catalog.aclose()
            # systemd's KillMode=control-group: SIGTERM to every process of the unit at once,
            # so the surviving worker gets two (one forwarded by the parent). It still drains.
            os.kill(survivor_pid, signal.SIGTERM)
    assert "worker 1 stopped code=0" in parent.log_path.read_text(), parent.log_tail()


async def _scenario(
    catalog: AsyncCatalog, state_dir: Path, sim_config: SimulatorConfig, secrets_: FleetSecrets
) -> int:
    """Returns the surviving worker's pid."""

    async def both_workers_live() -> list[str] | None:
        live = [w.owner for w in await catalog.live_workers()]
        return live if len(live) == 2 else None

    await poll(both_workers_live)
    (owner_0, pid_0), (owner_1, pid_1) = (worker_identity(state_dir, i) for i in (0, 1))
    # Rule 4 of prefork: the real workers run with glibc's arenas and BLAS threads bounded,
    # in the environment they were exec'd with, the one OpenBLAS read when numpy loaded.
    for pid in (pid_0, pid_1):
        environ = process_environ(pid)
        assert f"MALLOC_ARENA_MAX={WORKER_MALLOC_ARENA_MAX}" in environ
        assert f"OPENBLAS_NUM_THREADS={WORKER_BLAS_THREADS}" in environ

    async with open_simulator(sim_config) as sim:
        calls = [
            await sim.start(meeting(secrets_, name=f"call-{n}", seconds=9)) for n in range(STREAMS)
        ]
        ids = [c.scenario.rtms_stream_id for c in calls]

        async def all_owned() -> dict[str, str] | None:
            owners = {}
            for stream_id in ids:
                row = await catalog.get_stream(stream_id)
                if row is None or row.lease_owner is None:
                    return None
                owners[stream_id] = row.lease_owner
            return owners

        owners = await poll(all_owned)
        spread = Counter(owners.values())
        assert set(spread) == {owner_0, owner_1}, spread
        assert min(spread.values()) >= STREAMS // 2 - 1, f"load not spread: {spread}"
        victims = [s for s, o in owners.items() if o == owner_0]
        for call in calls:
            await call.wait_for(lambda s: s.frames_sent >= 50)

        os.kill(pid_0, signal.SIGKILL)
        killed_at_ms = wall_ms()

        async def taken_over() -> bool | None:
            for stream_id in victims:
                row = await catalog.get_stream(stream_id)
                assert row is not None
                if row.lease_owner != owner_1:
                    return None
            return True

        await poll(taken_over)
        took_over_ms = wall_ms() - killed_at_ms
        assert not any(calls[ids.index(v)].finished.is_set() for v in victims)
        for call in calls:
            await call.finished.wait()

    for call, stream_id in zip(calls, ids, strict=True):
        # One connection at a time per stream (invariant 3), whoever held it.
        assert call.stats.signaling_max_open == 1, (stream_id, call.stats)
        assert call.stats.media_max_open == 1, (stream_id, call.stats)

    async def all_ended() -> list[object] | None:
        details = []
        for stream_id in ids:
            rows = await catalog.search(stream_id=stream_id)
            assert len(rows) <= 1, rows
            if not rows or rows[0].status is RecordingStatus.ACTIVE:
                return None
            details.append(await catalog.show(rows[0].recording_id))
        return details

    with trio.fail_after(20):
        details = await poll(all_ended)
    for stream_id, detail in zip(ids, details, strict=True):
        assert detail is not None
        assert detail.recording.status is RecordingStatus.COMPLETE, detail.recording
        assert detail.segments, stream_id
        takeover_gaps = [g for g in detail.gaps if g.cause == GapCause.RECORDER_RESTART.value]
        if stream_id in victims:
            # Taken over by the survivor: the unrecorded time is a gap with its cause.
            assert takeover_gaps, (stream_id, detail.gaps)
            row = await catalog.get_stream(stream_id)
            assert row is not None
            assert row.lease_epoch >= 2
        else:
            assert not takeover_gaps, (stream_id, detail.gaps)
    print(f"spread {dict(spread)}; takeover of {len(victims)} streams after {took_over_ms} ms")
    return pid_1


class StandaloneWorker(ServeProcess):
    """``recorder serve --worker-index I`` with no parent (ops/recorder@.service)."""

    def __init__(self, index: int, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.index = index

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await trio.lowlevel.open_process(
                [
                    str(RECORDER),
                    "serve",
                    "--config",
                    str(self.config_path),
                    "--worker-index",
                    str(self.index),
                ],
                env=self.env,
                stdin=None,
                stdout=log,
                stderr=log,
            )


async def test_workers_of_their_own_units_share_the_port_by_so_reuseport(tmp_path: Path) -> None:
    secrets_ = FleetSecrets()
    state_dir = tmp_path / "state"
    port = free_port()
    config_path = tmp_path / "serve.toml"
    config_path.write_text(
        serve_config_text(state_dir=state_dir, port=port, key_dir=tmp_path / "keys")
        + "[workers]\nclaim_interval_s = 0.1\nclaim_grace_s = 0.5\n"
    )
    config = load_config(config_path, {})
    env = subprocess_env(secrets_, owner=LABEL)
    workers = [
        StandaloneWorker(i, f"w{i}", config_path, port, env, tmp_path / f"w{i}.log")
        for i in range(2)
    ]
    sim_config = SimulatorConfig(
        webhook_url=workers[0].webhook_url, secret_token=secrets_.secret_token
    )
    with trio.fail_after(45):
        async with serve_processes(*workers):
            catalog = await open_configured_async_catalog(config.catalog, now_ms=wall_ms())
            try:

                async def both_live() -> bool | None:
                    return True if len(await catalog.live_workers()) == 2 else None

                await poll(both_live)
                async with open_simulator(sim_config) as sim:
                    calls = [
                        await sim.start(meeting(secrets_, name=f"c{n}", seconds=2))
                        for n in range(4)
                    ]
                    for call in calls:
                        await call.finished.wait()
                for call in calls:
                    assert call.stats.signaling_max_open == 1
                    assert call.stats.frames_sent > 0

                    async def ended_with_segments(stream_id: str) -> bool | None:
                        rows = await catalog.search(stream_id=stream_id)
                        assert len(rows) <= 1
                        if not rows or rows[0].status is RecordingStatus.ACTIVE:
                            return None
                        detail = await catalog.show(rows[0].recording_id)
                        return True if detail is not None and detail.segments else None

                    await poll(functools.partial(ended_with_segments, call.scenario.rtms_stream_id))
                    row = await catalog.get_stream(call.scenario.rtms_stream_id)
                    assert row is not None
                    assert row.lease_epoch == 1
            finally:
                await catalog.aclose()
    for worker in workers:
        assert "work queue: claimed" in worker.log_path.read_text(), worker.log_tail()
