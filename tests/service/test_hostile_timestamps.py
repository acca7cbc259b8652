"""The service against broken timestamps and a media drop before a failover, beside a healthy
call (invariants 4, 5, 10): one process, real webhooks, real sockets, the real catalog. The
process stays up, the healthy call is complete and gapless, each hostile call loses only its
bad frame, and every gap in ``recorder show`` carries its true cause."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import trio

from recorder.catalog.base import GapRow, RecordingStatus
from recorder.service.app import run_service
from recorder.service.demo import demo_config
from recorder.simulator.scenario import Action, Step
from recorder.simulator.simulator import SimulatorConfig, open_simulator
from recorder.spool.uploader import Backoff

from .helpers_fleet import track_seconds
from .test_isolation import CALL_S, scenario

pytestmark = [pytest.mark.slow]


def joined(gaps: tuple[GapRow, ...]) -> list[tuple[str, int, int]]:
    """Gap rows as (cause, start_ms, end_ms), rows split by a segment boundary joined again."""
    out: list[tuple[str, int, int]] = []
    for gap in sorted(gaps, key=lambda g: g.start_ms):
        if out and out[-1][0] == gap.cause and abs(out[-1][2] - gap.start_ms) <= 1:
            out[-1] = (gap.cause, out[-1][1], gap.end_ms)
        else:
            out.append((gap.cause, gap.start_ms, gap.end_ms))
    return out


async def test_broken_timestamps_and_a_failover_leave_true_gaps_and_a_healthy_neighbour(
    tmp_path: Path,
) -> None:
    config = demo_config(tmp_path)
    config = replace(config, capture=replace(config.capture, segment_seconds=2))
    assert config.secrets.zoom_secret_token is not None
    with trio.fail_after(60):
        async with (
            run_service(
                config,
                owner="hostile",
                upload_backoff=Backoff(initial_s=0.1, max_s=1.0),
                rejoin_interval_s=0.3,
            ) as service,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}") as http,
        ):
            sim_config = SimulatorConfig(
                webhook_url=f"{http.base_url}/webhook",
                secret_token=config.secrets.zoom_secret_token.reveal(),
            )
            async with open_simulator(sim_config) as sim:
                healthy = await sim.start(scenario(config, "healthy"))
                seconds = await sim.start(
                    scenario(
                        config,
                        "first-in-seconds",
                        Step(0.0, Action.TIMESTAMP_FAULT, {"kind": "seconds"}),
                    )
                )
                micro = await sim.start(
                    scenario(
                        config,
                        "microsecond-outlier",
                        Step(4.0, Action.TIMESTAMP_FAULT, {"kind": "microseconds"}),
                    )
                )
                failover = await sim.start(
                    scenario(
                        config,
                        "drop-then-failover",
                        Step(2.0, Action.DROP_MEDIA, {"lose_s": 1.0}),
                        Step(2.2, Action.FAILOVER),
                    )
                )
                everyone = [healthy, seconds, micro, failover]
                for eng in everyone:
                    await eng.finished.wait()
            for recorded in list(service.supervisor.history):
                await recorded.finished.wait()
            await service.uploads_settled()
            assert (await http.get("/healthz")).status_code == 200

            catalog = service.components.catalog
            details = {}
            for eng in everyone:
                assert eng.stats.handler_errors == 0, eng.scenario.name
                [row] = await catalog.search(stream_id=eng.scenario.rtms_stream_id)
                detail = await catalog.show(row.recording_id)
                assert detail is not None
                assert detail.recording.status is RecordingStatus.COMPLETE, eng.scenario.name
                details[eng.scenario.name] = detail

            assert details["healthy"].gaps == ()
            assert track_seconds(details["healthy"], "mixed") == pytest.approx(CALL_S, abs=0.05)

            # The first frame (in seconds) is refused: 20 ms shorter, nothing missing after.
            assert seconds.stats.timestamp_faults_sent == 1
            assert details["first-in-seconds"].gaps == ()
            first = details["first-in-seconds"]
            assert track_seconds(first, "mixed") == pytest.approx(CALL_S - 0.02, abs=0.05)

            # A µs timestamp at 4 s: that frame's 20 ms, named after it.
            [(cause, start_ms, end_ms)] = joined(details["microsecond-outlier"].gaps)
            assert cause == "bad_timestamp"
            assert end_ms - start_ms == pytest.approx(20, abs=1)
            assert start_ms - micro.scenario.t0_ms == pytest.approx(4_000, abs=40)

            # The media drop lost a second; the failover after it lost nothing more and did not
            # name any gap after it (Zoom replayed what it had buffered).
            assert failover.stats.failovers == 1
            [(cause, start_ms, end_ms)] = joined(details["drop-then-failover"].gaps)
            assert cause == "media_interrupted"
            assert end_ms - start_ms == pytest.approx(1_000, abs=40)
            assert start_ms - failover.scenario.t0_ms == pytest.approx(2_000, abs=40)
