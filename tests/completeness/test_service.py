"""The assembled service with completeness on: a signed ``contact_center.engagement_started``
for an expected queue makes the service ask the (simulated) RTMS controller to start, the
simulator then sends ``rtms_started`` and streams, and the call is recorded with no manual step,
while Zoom's directory fails every enrichment: recording never waits for it, the failure is
stored to be retried, and the reconciler finds the expectation met."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest
import trio

from recorder.catalog.base import RecordingStatus, UploadState
from recorder.catalog.search import RecordingQuery
from recorder.completeness.model import EnrichmentState, StartState
from recorder.completeness.reconcile import reconcile_once
from recorder.config import CompletenessConfig
from recorder.errors import ZoomApiError
from recorder.products import Product
from recorder.service.app import run_service
from recorder.service.components import ZoomParts
from recorder.service.demo import demo_config
from recorder.simulator.announcements import Announced, announce
from recorder.simulator.engagement import Engagement as SimEngagement
from recorder.simulator.scenario import AudioLayout, Scenario
from recorder.simulator.scenario import Product as SimProduct
from recorder.simulator.simulator import Simulator, SimulatorConfig, open_simulator
from recorder.spool.uploader import Backoff
from recorder.zoom.directory import EngagementInfo, MeetingInfo, PhoneCallInfo, RtmsAction

pytestmark = pytest.mark.slow

ENGAGEMENT = "eng-auto-1"


@dataclasses.dataclass
class SimulatedController:
    """``RtmsController`` on the simulator: a start makes it stream ``scenario`` (what Zoom does
    after ``PUT .../rtms_app/status``: ``rtms_started`` follows)."""

    scenario: Scenario
    sim: Simulator | None = None
    asked: list[tuple[Product, str, RtmsAction]] = dataclasses.field(default_factory=list)
    call: SimEngagement | None = None
    started: trio.Event = dataclasses.field(default_factory=trio.Event)

    async def change(self, product: Product, target_id: str, action: RtmsAction) -> None:
        self.asked.append((product, target_id, action))
        assert self.sim is not None
        assert target_id == self.scenario.instance_id
        self.call = await self.sim.start(self.scenario)
        self.started.set()


@dataclasses.dataclass
class DownDirectory:
    """Zoom's directory during an outage: every look-up fails (the first with a bug)."""

    asked: int = 0
    asked_twice: trio.Event = dataclasses.field(default_factory=trio.Event)

    async def meeting(self, meeting_id: str) -> MeetingInfo:
        raise AssertionError("no meeting here")

    async def engagement(self, engagement_id: str) -> EngagementInfo:
        self.asked += 1
        if self.asked == 1:
            # A client bug outside the RecorderError tree: the enricher restarts, nothing else.
            raise RuntimeError("a bug in the directory client")
        if self.asked >= 3:
            self.asked_twice.set()
        raise ZoomApiError("Service Unavailable", status=503)

    async def phone_call(self, call_id: str) -> PhoneCallInfo:
        raise AssertionError("no call here")


async def test_auto_start_records_the_call_while_enrichment_fails(tmp_path: Path) -> None:
    base = demo_config(tmp_path)
    config = dataclasses.replace(
        base,
        capture=dataclasses.replace(base.capture, segment_seconds=2),
        completeness=CompletenessConfig(
            enabled=True,
            auto_start=True,
            products=(Product.CONTACT_CENTER,),
            queues=("q-retail",),
            grace_s=0,
            late_start_s=30,
            start_backoff_s=0.01,
            enrich_interval_s=0.05,
            enrich_backoff_s=0.05,
            enrich_backoff_max_s=0.2,
            enrich_attempts=100,
            reconcile_interval_s=0.1,
        ),
    )
    assert config.secrets.zoom_client_id is not None
    assert config.secrets.zoom_client_secret is not None
    assert config.secrets.zoom_secret_token is not None
    token = config.secrets.zoom_secret_token.reveal()
    scenario = Scenario(
        product=SimProduct.CONTACT_CENTER,
        name="auto",
        layout=AudioLayout.CHANNELS,
        duration_s=3.0,
        instance_id=ENGAGEMENT,
        client_id=config.secrets.zoom_client_id.reveal(),
        client_secret=config.secrets.zoom_client_secret.reveal(),
    ).resolved()
    controller = SimulatedController(scenario)
    directory = DownDirectory()
    zoom = ZoomParts(rtms_controller=controller, zoom_directory=directory)
    with trio.fail_after(90):
        async with run_service(
            config, owner="test", upload_backoff=Backoff(initial_s=0.1, max_s=1.0), zoom=zoom
        ) as running:
            url = f"http://127.0.0.1:{running.port}/webhook"
            async with open_simulator(SimulatorConfig(webhook_url=url, secret_token=token)) as sim:
                controller.sim = sim
                async with httpx.AsyncClient() as client:
                    who = Announced(account_id="acct-1", queue_id="q-retail")
                    assert await announce(sim, scenario, who) == 200
                    other = dataclasses.replace(scenario, instance_id="eng-other")
                    other_queue = dataclasses.replace(who, queue_id="q-other")
                    assert await announce(sim, other, other_queue) == 200
                    # No manual step: the recording appears because the service asked for it.
                    await controller.started.wait()
                    assert controller.call is not None
                    await controller.call.finished.wait()
                    for engagement in running.supervisor.history:
                        await engagement.finished.wait()
                    await running.uploads_settled()
                    # Enrichment kept failing all along, and kept being retried.
                    await directory.asked_twice.wait()
                    metrics = (await client.get(url.replace("/webhook", "/metrics"))).text
            c = running.components
            assert controller.asked == [(Product.CONTACT_CENTER, ENGAGEMENT, RtmsAction.START)]
            [row] = await c.catalog.search(stream_id=scenario.rtms_stream_id)
            detail = await c.catalog.show(row.recording_id)
            assert detail is not None
            assert detail.recording.status is RecordingStatus.COMPLETE
            assert detail.segments
            assert all(s.upload_state is UploadState.VERIFIED for s in detail.segments)
            db = c.catalog.sync
            enrichment = await c.catalog._call(
                lambda: db.enrichment_of(Product.CONTACT_CENTER, ENGAGEMENT)
            )
            assert enrichment is not None
            assert enrichment.state is EnrichmentState.PENDING
            assert enrichment.attempts >= 2
            assert enrichment.last_error == "Service Unavailable"
            # The directory is down, yet what the signed announcement named is searchable.
            page = await c.catalog.search_recordings(RecordingQuery(queue="simulated queue"))
            assert [hit.recording.recording_id for hit in page.hits] == [row.recording_id]
            [x] = await c.catalog._call(lambda: db.expectations_between(0, 2**62, limit=10))
            assert x.start_state is StartState.REQUESTED
            # The service's own reconciler may have settled it already: look again regardless.
            summary = await reconcile_once(
                c.catalog, config.completeness, x.expected_start_ms, recheck=True
            )
            assert (summary.examined, summary.met) == (1, 1)
            assert 'rtmsrec_rtms_autostarts_total{result="requested"} 1.0' in metrics
            assert 'rtmsrec_enrichments_total{result="failed"}' in metrics
            assert 'rtmsrec_completeness_findings{cause="never_started",kind="missing"}' in metrics
