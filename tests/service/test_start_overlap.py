"""An engagement connects while its recording row is written (the burst start path).

Real parts: the project's RTMS simulator over real WebSockets, the service's components on the
embedded SQLite catalog, local store and keys. The one stand-in is a catalog whose
``start_recording`` waits for the test (the slow commit of a burst, made deterministic).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import trio

from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import LegalHoldRow, RecordingRow, RecordingStart, RecordingStatus
from recorder.config import Config
from recorder.rtms.urls import split_server_urls
from recorder.rtms.webhook import Product as RtmsProduct
from recorder.service.app import capture_config, client_config
from recorder.service.components import now_ms, open_components
from recorder.service.demo import demo_config
from recorder.service.engagement import Engagement
from recorder.service.lease_keeper import LeaseTimers
from recorder.service.status import EngagementSpec
from recorder.simulator.scenario import Product, Scenario
from recorder.simulator.simulator import SimulatorConfig, open_simulator

pytestmark = pytest.mark.slow

SECONDS = 3.0


class SlowStartCatalog(AsyncCatalog):
    """The service's catalog, whose ``start_recording`` commits only once ``gate`` is set."""

    def __init__(self, inner: AsyncCatalog) -> None:
        super().__init__(inner.sync)
        self.gate = trio.Event()
        self.waiting = trio.Event()

    async def start_recording(
        self, start: RecordingStart, now_ms: int
    ) -> tuple[RecordingRow, list[LegalHoldRow]]:
        self.waiting.set()
        await self.gate.wait()
        return await super().start_recording(start, now_ms)


def _config(tmp_path: Path) -> Config:
    config = demo_config(tmp_path)
    return replace(config, capture=replace(config.capture, segment_seconds=2))


async def test_the_handshakes_run_while_the_recording_row_is_written(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.secrets.zoom_client_id is not None
    assert config.secrets.zoom_client_secret is not None
    client_id = config.secrets.zoom_client_id.reveal()
    client_secret = config.secrets.zoom_client_secret.reveal()
    scenario = Scenario(
        product=Product.MEETING,
        duration_s=SECONDS,
        media=("audio",),
        client_id=client_id,
        client_secret=client_secret,
    )
    with trio.fail_after(60):
        async with (
            open_components(config) as c,
            open_simulator(SimulatorConfig()) as sim,
            trio.open_nursery() as nursery,
        ):
            slow = SlowStartCatalog(c.catalog)
            call = await sim.start(scenario)
            stream_id = call.scenario.rtms_stream_id
            lease = await c.catalog.try_claim(stream_id, "test-owner", 45_000)
            assert lease is not None
            spec = EngagementSpec(
                product=RtmsProduct.MEETING,
                instance_id=call.target.instance_id,
                rtms_stream_id=stream_id,
                server_urls=split_server_urls(call.target.server_urls),
                event_ts_ms=now_ms(),
            )
            engagement = Engagement(
                replace(c, catalog=slow),
                spec,
                lease,
                client_config=client_config(config, RtmsProduct.MEETING),
                capture_config=capture_config(config),
                target_credentials=(client_id, client_secret),
                lease_timers=LeaseTimers.for_ttl(45.0),
            )
            nursery.start_soon(engagement.run)

            await slow.waiting.wait()
            # Signaling and media handshakes complete and audio flows while the row is not
            # written yet.
            await call.wait_for(lambda s: s.ready_acks > 0 and s.frames_sent > 0)
            assert await c.catalog.recording_for_stream(stream_id) is None
            assert engagement.status.recording_id is None

            slow.gate.set()
            await call.finished.wait()
            await engagement.finished.wait()

            assert engagement.status.error is None
            recording = await c.catalog.recording_for_stream(stream_id)
            assert recording is not None
            assert recording.status is RecordingStatus.COMPLETE
            detail = await c.catalog.show(recording.recording_id)
            assert detail is not None
            # Nothing that arrived before the row existed is lost: the whole call is recorded.
            seconds = sum(s.sample_count / s.sample_rate for s in detail.segments)
            assert seconds == pytest.approx(SECONDS, abs=0.1)
