"""The whole path over real HTTP with no fakes at all: a simulated, signed ``meeting.started``
for a matching account reaches the service, which asks the simulator's Zoom REST API (OAuth
token, ``PATCH /v2/live_meetings/{id}/rtms_app/status``) to start RTMS through zoom-control's
client; the simulator then sends ``rtms_started`` and streams, and the meeting is recorded with
no manual step. ``recorder enrich``'s pass then asks the same API who and what it was, and an
officer finds the recording by topic and host."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import pytest
import trio

from recorder.catalog.base import RecordingStatus
from recorder.catalog.search import RecordingQuery
from recorder.completeness.enrichment import Enricher
from recorder.completeness.model import StartState
from recorder.completeness.reconcile import reconcile_once
from recorder.config import CompletenessConfig, ZoomConfig
from recorder.products import Product
from recorder.service.app import run_service
from recorder.service.components import now_ms
from recorder.service.demo import demo_config
from recorder.simulator.announcements import Announced, announce
from recorder.simulator.rest import RestSettings, open_zoom_rest
from recorder.simulator.scenario import AudioLayout, Scenario
from recorder.simulator.simulator import SimulatorConfig, open_simulator
from recorder.spool.uploader import Backoff

pytestmark = pytest.mark.slow

ACCOUNT = "acct-http"
NUMBER = "85012345678"


def free_port() -> int:
    # The Zoom API's address must be in the configuration before the service opens its client;
    # the simulator's REST server binds it once the simulator (which needs the service's URL) is up.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_meeting_started_is_auto_started_over_http_and_enriched(tmp_path: Path) -> None:
    base = demo_config(tmp_path)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    config = dataclasses.replace(
        base,
        capture=dataclasses.replace(base.capture, segment_seconds=2),
        zoom=ZoomConfig(
            api_base_url=api, oauth_base_url=api, allow_insecure_loopback=True, account_id=ACCOUNT
        ),
        completeness=CompletenessConfig(
            enabled=True,
            auto_start=True,
            products=(Product.MEETING,),
            accounts=(ACCOUNT,),
            grace_s=0,
            enrich=False,  # enriched below by `recorder enrich`'s own pass, deterministically
        ),
    )
    assert config.secrets.zoom_client_id is not None
    assert config.secrets.zoom_client_secret is not None
    assert config.secrets.zoom_secret_token is not None
    client_id = config.secrets.zoom_client_id.reveal()
    client_secret = config.secrets.zoom_client_secret.reveal()
    scenario = Scenario(
        product=Product.MEETING,
        name="board",
        layout=AudioLayout.MIXED,
        duration_s=2.0,
        instance_id="mtg-uuid/1==",
        client_id=client_id,
        client_secret=client_secret,
    ).resolved()
    with trio.fail_after(90):
        async with run_service(
            config, owner="test", upload_backoff=Backoff(initial_s=0.1, max_s=1.0)
        ) as running:
            c = running.components
            assert c.rtms_controller is not None  # wired from [zoom], not given by the test
            assert c.zoom_directory is not None
            sim_config = SimulatorConfig(
                webhook_url=f"http://127.0.0.1:{running.port}/webhook",
                secret_token=config.secrets.zoom_secret_token.reveal(),
            )
            rest_settings = RestSettings(
                account_id=ACCOUNT,
                client_id=client_id,
                client_secret=client_secret,
                rtms_client_id=client_id,
                port=port,
            )
            async with (
                open_simulator(sim_config) as sim,
                open_zoom_rest(sim, rest_settings) as rest,
            ):
                live = rest.add_live(
                    scenario,
                    rest_id=NUMBER,
                    profile={
                        "topic": "Board call",
                        "host_id": "h-1",
                        "host_email": "chair@x.ex",
                    },
                )
                who = Announced(account_id=ACCOUNT, number=NUMBER, topic="Board call")
                assert await announce(sim, scenario, who) == 200
                await live.started.wait()  # asked for by the service, over HTTP
                assert live.engagement is not None
                await live.engagement.finished.wait()
                for engagement in running.supervisor.history:
                    await engagement.finished.wait()
                await running.uploads_settled()
                enriched = await Enricher(
                    c.catalog, c.zoom_directory, config.completeness, c.metrics, now_ms
                ).pass_once()
                assert enriched == 1
            [row] = await c.catalog.search(stream_id=scenario.rtms_stream_id)
            assert row.status is RecordingStatus.COMPLETE
            for query in (
                RecordingQuery(topic="board call"),
                RecordingQuery(host="CHAIR@x.ex"),
            ):
                page = await c.catalog.search_recordings(query)
                assert [hit.recording.recording_id for hit in page.hits] == [row.recording_id]
            db = c.catalog.sync
            [x] = await c.catalog._call(lambda: db.expectations_between(0, 2**62, limit=10))
            assert (x.target_id, x.start_state) == (NUMBER, StartState.REQUESTED)
            [audit] = await c.catalog.audit_trail(f"meeting:{scenario.instance_id}")
            assert json.loads(audit.details_json)["ok"] is True
            summary = await reconcile_once(
                c.catalog, config.completeness, x.expected_start_ms + 1, recheck=True
            )
            assert (summary.examined, summary.met) == (1, 1)
