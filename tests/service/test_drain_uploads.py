"""What a drain seals is uploaded before the process exits.

A SIGTERM drain ends the engagements, which seal their last segment and records file into the
spool at the very end. The uploader used to be cancelled the moment the drain returned, so those
files stayed in the spool of a process that may never start again on this host (the fault
matrix's drained owner lost its last records file that way). Now the uploader gets a bounded
time (``DRAIN_UPLOAD_S``) after the drain; a store that is down ends that time at once, and what
is left stays spooled for the next start.

The store is moto's S3 behind a TCP proxy the test holds: the uploads are in flight (held) when
the service block is left, so nothing can reach the store before the drain has returned.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from recorder.catalog.aio import open_configured_async_catalog
from recorder.catalog.base import RecordingDetail, UploadState
from recorder.config import Config
from recorder.service.app import RunningService, run_service
from recorder.simulator.scenario import Product, Scenario
from recorder.simulator.simulator import SimulatorConfig, open_simulator
from recorder.spool.spool import Spool
from recorder.spool.uploader import Backoff

from .helpers_fleet import poll, wall_ms
from .test_fault_matrix import TcpProxy
from .test_outages import new_locked_bucket, s3_config

pytestmark = [pytest.mark.slow]


@asynccontextmanager
async def held_store(tmp_path: Path, moto_endpoint: str) -> AsyncIterator[tuple[Config, TcpProxy]]:
    """A service configuration whose S3 store is reached through a proxy the test controls."""
    proxy = TcpProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    bucket = await trio.to_thread.run_sync(new_locked_bucket, moto_endpoint)
    config = s3_config(tmp_path, f"http://127.0.0.1:{proxy.port}", bucket)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        yield config, proxy
        proxy.release()
        proxy.stop()


async def record_with_uploads_held(running: RunningService, config: Config, proxy: TcpProxy) -> str:
    """One short call recorded to its end while every upload hangs in the proxy; returns the
    stream id once the engagement has finished and a PUT is in flight."""
    assert config.secrets.zoom_client_id is not None
    assert config.secrets.zoom_client_secret is not None
    assert config.secrets.zoom_secret_token is not None
    proxy.hold()
    sim_config = SimulatorConfig(
        webhook_url=f"http://127.0.0.1:{running.port}/webhook",
        secret_token=config.secrets.zoom_secret_token.reveal(),
    )
    async with open_simulator(sim_config) as sim:
        call = await sim.start(
            Scenario(
                product=Product.MEETING,
                name="drained",
                duration_s=3.0,
                media=("audio",),
                client_id=config.secrets.zoom_client_id.reveal(),
                client_secret=config.secrets.zoom_client_secret.reveal(),
            )
        )
        await call.finished.wait()
    [engagement] = running.supervisor.history
    await engagement.finished.wait()

    async def in_flight() -> bool | None:
        return proxy.held_bytes > 0 or None

    await poll(in_flight)
    assert (await running.components.spool.stats()).pending_count >= 1
    assert running.uploader.uploaded == 0
    return call.scenario.rtms_stream_id


async def detail_of(config: Config, stream_id: str) -> RecordingDetail:
    catalog = await open_configured_async_catalog(config.catalog, now_ms=wall_ms())
    try:
        [row] = await catalog.search(stream_id=stream_id)
        detail = await catalog.show(row.recording_id)
    finally:
        await catalog.aclose()
    assert detail is not None
    return detail


async def test_files_still_spooled_when_the_drain_returns_are_uploaded_before_exit(
    tmp_path: Path, moto_endpoint: str
) -> None:
    with trio.fail_after(60):
        async with held_store(tmp_path, moto_endpoint) as (config, proxy), trio.open_nursery() as n:
            leaving = trio.Event()

            async def release_once_leaving() -> None:
                # Runs at the first checkpoint after the block is left: the drain has nothing
                # to wait for (the engagement is over), so before the fix the uploader was
                # already cancelled by then.
                await leaving.wait()
                proxy.release()

            n.start_soon(release_once_leaving)
            async with run_service(
                config, owner="drain", upload_backoff=Backoff(initial_s=0.1, max_s=1.0)
            ) as running:
                stream_id = await record_with_uploads_held(running, config, proxy)
                leaving.set()
    assert (await Spool(config.storage.spool_dir / "queue").stats()).pending_count == 0
    detail = await detail_of(config, stream_id)
    assert detail.segments
    assert detail.records
    evidence = [*detail.segments, *detail.records]
    assert all(e.upload_state is UploadState.VERIFIED for e in evidence), evidence


async def test_a_store_down_at_the_drain_keeps_the_files_spooled_and_says_so(
    tmp_path: Path, moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="recorder.service.app")
    with trio.fail_after(60):
        async with (
            held_store(tmp_path, moto_endpoint) as (config, proxy),
            run_service(
                config, owner="drain", upload_backoff=Backoff(initial_s=0.1, max_s=1.0)
            ) as running,
        ):
            stream_id = await record_with_uploads_held(running, config, proxy)
            # The store becomes unreachable: the held PUTs fail, new connections too.
            await proxy.partition()
    left = (await Spool(config.storage.spool_dir / "queue").stats()).pending_count
    assert left >= 1
    assert f"left in the spool for the next start: {left}" in caplog.text
    detail = await detail_of(config, stream_id)
    assert any(s.upload_state is UploadState.PENDING for s in detail.segments)
