"""One engagement fed garbage does not disturb three healthy ones beside it (invariant 10), and
``/metrics`` shows the capture figures moving while they run.

All four run in one service (one process, one trio loop, one nursery per engagement). The
garbage engagement gets every kind of malformed frame on signaling and on media, and a frame
larger than the client accepts; the healthy ones must still end complete with every second of
their audio and no gap, and the process keeps serving.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import trio

from recorder.catalog.base import RecordingStatus, UploadState
from recorder.config import Config
from recorder.officer.verify import verify_recording
from recorder.rtms.client import MAX_MESSAGE_SIZE
from recorder.service.app import run_service
from recorder.service.demo import demo_config
from recorder.service.engagement import RECORDER_FAILURE_REASON
from recorder.service.supervisor import OWNER_LOST_REASON
from recorder.simulator.scenario import Action, Product, Scenario, Step
from recorder.simulator.simulator import SimulatorConfig, open_simulator
from recorder.spool.uploader import Backoff

from .helpers_fleet import track_seconds

pytestmark = [pytest.mark.slow]

CALL_S = 8
OVERSIZED = MAX_MESSAGE_SIZE + 2**20


def metric(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match, f"{series} not in /metrics"
    return float(match.group(1))


def scenario(config: Config, name: str, *steps: Step) -> Scenario:
    assert config.secrets.zoom_client_id is not None
    assert config.secrets.zoom_client_secret is not None
    return Scenario(
        product=Product.MEETING,
        name=name,
        duration_s=CALL_S,
        media=("audio", "transcript"),
        client_id=config.secrets.zoom_client_id.reveal(),
        client_secret=config.secrets.zoom_client_secret.reveal(),
        steps=steps,
    )


GARBAGE_STEPS = (
    Step(at_s=1.0, action=Action.GARBAGE, args={"kind": "all", "socket": "signaling"}),
    Step(at_s=1.5, action=Action.GARBAGE, args={"kind": "all", "socket": "media"}),
    # Larger than the client's 16 MiB message limit: it must refuse the frame and reconnect.
    Step(at_s=2.5, action=Action.OVERSIZED_FRAME, args={"socket": "media", "bytes": OVERSIZED}),
    Step(at_s=4.0, action=Action.GARBAGE, args={"kind": "all", "socket": "media"}),
    Step(at_s=6.0, action=Action.GARBAGE, args={"kind": "all", "socket": "signaling"}),
)


async def test_garbage_in_one_engagement_leaves_three_healthy_ones_untouched(
    tmp_path: Path,
) -> None:
    config = demo_config(tmp_path)
    config = replace(config, capture=replace(config.capture, segment_seconds=2))
    assert config.secrets.zoom_secret_token is not None
    with trio.fail_after(60):
        async with (
            run_service(
                config,
                owner="isolation",
                upload_backoff=Backoff(initial_s=0.1, max_s=1.0),
                rejoin_interval_s=0.3,
            ) as service,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}") as http,
        ):
            before = (await http.get("/metrics")).text
            assert metric(before, "rtmsrec_active_engagements") == 0
            assert metric(before, "rtmsrec_capture_captured_seconds_total") == 0
            sim_config = SimulatorConfig(
                webhook_url=f"{http.base_url}/webhook",
                secret_token=config.secrets.zoom_secret_token.reveal(),
            )
            async with open_simulator(sim_config) as sim:
                healthy = [await sim.start(scenario(config, f"healthy-{i}")) for i in range(3)]
                garbage = await sim.start(scenario(config, "garbage", *GARBAGE_STEPS))
                everyone = [*healthy, garbage]

                # Mid-call: a segment of every healthy call is sealed and uploaded.
                await service.uploader.wait_until(lambda s: s.uploaded >= 3)
                during = (await http.get("/metrics")).text
                assert not any(e.finished.is_set() for e in healthy)
                assert metric(during, "rtmsrec_active_engagements") >= 3
                captured = metric(during, "rtmsrec_capture_captured_seconds_total")
                assert captured > 0
                assert metric(during, "rtmsrec_capture_expected_seconds_total") >= captured

                for eng in everyone:
                    await eng.finished.wait()
            for recorded in list(service.supervisor.history):
                await recorded.finished.wait()
            await service.uploads_settled()
            after = (await http.get("/metrics")).text
            assert metric(after, "rtmsrec_active_engagements") == 0
            assert metric(after, "rtmsrec_capture_captured_seconds_total") > captured
            assert (await http.get("/healthz")).status_code == 200

            assert garbage.stats.garbage_sent > 0
            for eng in everyone:
                assert eng.stats.handler_errors == 0
            catalog = service.components.catalog
            for eng in healthy:
                [row] = await catalog.search(stream_id=eng.scenario.rtms_stream_id)
                detail = await catalog.show(row.recording_id)
                assert detail is not None
                assert detail.recording.status is RecordingStatus.COMPLETE, eng.scenario.name
                assert detail.gaps == (), eng.scenario.name
                assert track_seconds(detail, "mixed") == pytest.approx(CALL_S, abs=0.05)
                assert all(s.upload_state is UploadState.VERIFIED for s in detail.segments)
                assert eng.stats.signaling_accepted == 1
                assert eng.stats.reconnects == 0
                verdict = await verify_recording(
                    service.components, row.recording_id, actor="test", reason="isolation"
                )
                assert verdict.ok, verdict

            [row] = await catalog.search(stream_id=garbage.scenario.rtms_stream_id)
            detail = await catalog.show(row.recording_id)
            assert detail is not None
            assert detail.recording.status in (
                RecordingStatus.COMPLETE,
                RecordingStatus.INCOMPLETE,
            )
            assert all(s.upload_state is UploadState.VERIFIED for s in detail.segments)
            # Its failure is on record: every malformed frame counted and shown on /metrics
            # (and, if the engagement itself failed, the rejoin's gap says where).
            mine = [e for e in service.supervisor.history if e.stream_id == row.rtms_stream_id]
            malformed = sum(e.status.frames_malformed for e in mine)
            assert malformed > 0
            dropped = sum(
                float(value)
                for value in re.findall(
                    r'^rtmsrec_capture_frames_dropped_total\{cause="malformed"\} (\S+)$',
                    after,
                    re.MULTILINE,
                )
            )
            assert dropped >= malformed
            if any(e.status.error for e in mine):
                # The failed engagement's stream was rejoined (a gap says where nobody
                # recorded), or it had stopped by then and its recording was closed as such.
                if len(mine) == 2:
                    assert {g.cause for g in detail.gaps} == {"recorder_restart"}
                else:
                    assert detail.recording.status is RecordingStatus.INCOMPLETE
                    # Ended by the failed engagement itself, or by the rtms_stopped webhook
                    # that found no live lease (whichever saw the stop first).
                    assert detail.recording.end_reason in (
                        RECORDER_FAILURE_REASON,
                        OWNER_LOST_REASON,
                    )
            verdict = await verify_recording(
                service.components, row.recording_id, actor="test", reason="isolation"
            )
            assert verdict.ok, verdict
