"""The assembled service retires silent per-speaker tracks and accounts for the time between:
each speaker who talks twice, with others in between, gets two segments on one clock and the
absence between them as a catalog gap with its cause."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
import trio

from recorder.catalog.base import RecordingStatus
from recorder.config import AudioChoice
from recorder.officer.verify import verify_recording
from recorder.service.app import run_service
from recorder.service.demo import demo_config
from recorder.simulator.scenario import AudioLayout, Product, Scenario
from recorder.simulator.simulator import SimulatorConfig, open_simulator
from recorder.spool.uploader import Backoff

pytestmark = pytest.mark.slow


async def test_a_speaker_who_talks_again_reopens_the_same_track_and_the_gap_is_kept(
    tmp_path: Path,
) -> None:
    config = demo_config(tmp_path)
    # Per-speaker audio; a speaker silent for 0.5 s is retired.
    config = replace(
        config,
        capture=replace(config.capture, segment_seconds=30, retire_after_s=0.5),
        rtms=replace(
            config.rtms, audio=AudioChoice(per_speaker=True), audio_by_product=MappingProxyType({})
        ),
    )
    assert config.secrets.zoom_client_id is not None
    assert config.secrets.zoom_client_secret is not None
    assert config.secrets.zoom_secret_token is not None
    # Three speakers, 0.4 s each with 0.5 s between (a 3.2 s round): each speaks twice, silent
    # 2.3 s in between.
    scenario = Scenario(
        product=Product.MEETING,
        layout=AudioLayout.PER_SPEAKER,
        media=("audio",),
        utterance_s=0.4,
        utterance_gap_s=0.5,
        duration_s=6.0,
        client_id=config.secrets.zoom_client_id.reveal(),
        client_secret=config.secrets.zoom_client_secret.reveal(),
    )
    with trio.fail_after(90):
        async with run_service(
            config, owner="test", upload_backoff=Backoff(initial_s=0.1, max_s=1.0)
        ) as running:
            url = f"http://127.0.0.1:{running.port}/webhook"
            sim_config = SimulatorConfig(
                webhook_url=url, secret_token=config.secrets.zoom_secret_token.reveal()
            )
            async with open_simulator(sim_config) as sim:
                call = await sim.start(scenario)
                await call.finished.wait()
            for engagement in running.supervisor.history:
                await engagement.finished.wait()
            await running.uploads_settled()
            catalog = running.components.catalog
            [row] = await catalog.search(stream_id=call.scenario.rtms_stream_id)
            detail = await catalog.show(row.recording_id)
            assert detail is not None
            assert detail.recording.status is RecordingStatus.COMPLETE
            verdict = await verify_recording(
                running.components, row.recording_id, actor="test", reason="test"
            )
            assert verdict.ok, verdict
    speakers = {s.track for s in detail.segments}
    assert len(speakers) == 3
    for track in speakers:
        segments = sorted(
            (s for s in detail.segments if s.track == track), key=lambda s: s.segment_index
        )
        assert [s.segment_index for s in segments] == [0, 1], track
        first, second = segments
        # One clock: the second segment starts where the RTMS time says, not where the first ended.
        assert second.start_sample > first.start_sample + first.sample_count
        absences = [
            g
            for g in detail.gaps
            if g.track == track and g.start_sample is None and g.cause == "no_speech"
        ]
        assert len(absences) == 1, (track, detail.gaps)
        assert absences[0].start_ms == first.end_ms
        assert absences[0].end_ms == second.start_ms
