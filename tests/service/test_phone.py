"""Zoom Phone and failed-start evidence through the assembled service: real signed webhooks over
HTTP into the ingress, real RTMS WebSockets from the simulator, the embedded default's SQLite
catalog, local store and keys; the officer commands run as processes."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import trio

from recorder.catalog.base import RecordingStatus, UploadState
from recorder.officer.verify import verify_recording
from recorder.rtms.webhook import sign_webhook
from recorder.simulator.scenario import Action, AudioLayout, Product, Scenario, Step
from recorder.simulator.simulator import SimulatorConfig, open_simulator
from tests.officer.support import sealed_records, sealed_track
from tests.service.test_service import secret_token, service, short_config

pytestmark = pytest.mark.slow

HOLD, RESUME, TRANSFER_INITIATED = 12, 13, 18


def phone_call(config: object, *, seconds: float, steps: tuple[Step, ...] = ()) -> Scenario:
    secrets_ = config.secrets  # type: ignore[attr-defined]
    return Scenario(
        product=Product.PHONE,
        name="phone",
        layout=AudioLayout.CHANNELS,
        duration_s=seconds,
        client_id=secrets_.zoom_client_id.reveal(),
        client_secret=secrets_.zoom_client_secret.reveal(),
        steps=steps,
    )


def call_event(at_s: float, code: int, channel: str) -> Step:
    return Step(at_s, Action.ZCC_EVENT, {"event_type": code, "channel_id": channel})


async def test_a_phone_call_records_each_leg_with_its_call_events(tmp_path: Path) -> None:
    config = short_config(tmp_path)
    seconds = 5.0
    steps = (
        call_event(0.4, 8, "1"),  # the caller's leg answered
        call_event(0.5, 10, "2"),  # the callee's leg answered
        call_event(1.5, HOLD, "2"),
        call_event(2.5, RESUME, "2"),
        call_event(3.5, TRANSFER_INITIATED, "2"),
        Step(3.6, Action.TRANSCRIPT, {"text": "one moment please", "channel_id": "2"}),
    )
    with trio.fail_after(90):
        async with service(config) as running:
            url = f"http://127.0.0.1:{running.port}/webhook"
            sim_config = SimulatorConfig(
                webhook_url=url, secret_token=secret_token(config), phone_call_event_names=True
            )
            async with open_simulator(sim_config) as sim:
                call = await sim.start(phone_call(config, seconds=seconds, steps=steps))
                await call.finished.wait()
            for engagement in running.supervisor.history:
                await engagement.finished.wait()
            await running.uploads_settled()

            # The webhooks went out under Zoom's phone.call_rtms_* alias names.
            assert {w.event for w in call.stats.webhooks} >= {
                "phone.call_rtms_started",
                "phone.call_rtms_stopped",
            }
            c = running.components
            [row] = await c.catalog.search(product=Product.PHONE)
            assert (row.rtms_stream_id, row.instance_id) == (
                call.scenario.rtms_stream_id,
                call.scenario.instance_id,
            )
            detail = await c.catalog.show(row.recording_id)
            assert detail is not None
            assert detail.recording.status is RecordingStatus.COMPLETE
            assert {s.track for s in detail.segments} == {"channel-1", "channel-2"}
            assert all(s.upload_state is UploadState.VERIFIED for s in detail.segments)
            assert detail.gaps == ()
            assert {(p.user_id, p.role) for p in detail.participants} == {
                ("caller-01", "caller"),
                ("callee-01", "callee"),
            }
            verdict = await verify_recording(c, row.recording_id, actor="t", reason="t")
            assert verdict.ok, verdict

            legs = {t: await sealed_track(c, detail, t) for t in ("channel-1", "channel-2")}
            records = await sealed_records(c, detail)

    # Each leg is exactly the speech the simulator played on it (L16 16 kHz, no resampling).
    for track in ("channel-1", "channel-2"):
        rate, audio = legs[track]
        assert (rate, audio.shape[1]) == (16_000, 1)
        recorded = audio[:, 0]
        cycle = call.program.track(track).pcm
        samples = round(seconds * 16_000)
        assert len(recorded) == samples
        assert np.array_equal(recorded, np.tile(cycle, -(-samples // len(cycle)))[:samples])
    # The call events and the transcript are records of the recording, on their leg.
    events = [(r["event"], r["channel_id"]) for r in records if r.get("event_type") is not None]
    assert events == [
        ("CONSUMER_ANSWERED", "1"),
        ("USER_ANSWERED", "2"),
        ("USER_HOLD", "2"),
        ("USER_UNHOLD", "2"),
        ("TRANSFER_INITIATED", "2"),
    ]
    phone_events = [r for r in records if r.get("event_type") is not None]
    assert all(r["type"] == "call_event" for r in phone_events)
    assert all(r["extra"]["event_code"] == r["event_type"] for r in phone_events)
    [transcript] = [r for r in records if r["type"] == "transcript"]
    assert (transcript["text"], transcript["channel_id"]) == ("one moment please", "2")


async def test_failed_starts_are_stored_shown_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = short_config(tmp_path)
    token = secret_token(config)
    reason = "media server unavailable"
    steps = (Step(1.0, Action.LIFECYCLE_WEBHOOK, {"event": "start_failed", "reason": reason}),)
    orphan_stream = "0" * 32
    caplog.set_level(logging.INFO, logger="recorder")
    with trio.fail_after(90):
        async with service(config) as running, httpx.AsyncClient() as http:
            base = f"http://127.0.0.1:{running.port}"
            sim_config = SimulatorConfig(webhook_url=f"{base}/webhook", secret_token=token)
            async with open_simulator(sim_config) as sim:
                call = await sim.start(phone_call(config, seconds=2.5, steps=steps))
                await call.finished.wait()
                orphan = {
                    "rtms_stream_id": orphan_stream,
                    "meeting_uuid": "never+seen/by=us",
                    "error_message": "app not authorized",
                }
                ts = int(time.time() * 1000)
                assert await sim.send_webhook("rtms.start_failed", orphan, event_ts=ts) == 200
                # Zoom's retry of the same delivery: same bytes, stored once.
                assert await sim.send_webhook("rtms.start_failed", orphan, event_ts=ts) == 200
                near = {"concurrency_limit": 2000, "concurrency_number": 1700, "percentage": 85}
                assert await sim.send_webhook("rtms.concurrency_near_limit", near) == 200
            for engagement in running.supervisor.history:
                await engagement.finished.wait()
            await running.uploads_settled()

            # A forged start_failed is refused and leaves no trace.
            forged = json.dumps(
                {"event": "rtms.start_failed", "event_ts": 1, "payload": {"rtms_stream_id": "f"}}
            ).encode()
            now = int(time.time())
            headers = {
                "x-zm-request-timestamp": str(now),
                "x-zm-signature": sign_webhook("not-the-token", now, forged),
                "content-type": "application/json",
            }
            assert (
                await http.post(f"{base}/webhook", content=forged, headers=headers)
            ).status_code == 401

            c = running.components
            stored = await c.catalog.lifecycle_events()
            assert len(stored) == 3
            [row] = await c.catalog.search(stream_id=call.scenario.rtms_stream_id)
            detail = await c.catalog.show(row.recording_id)
            assert detail is not None
            [failed] = detail.lifecycle_events
            assert (failed.event, failed.reason, failed.rtms_stream_id) == (
                "rtms.start_failed",
                reason,
                call.scenario.rtms_stream_id,
            )
            body = json.loads(failed.body)
            assert body["payload"]["call_id"] == call.scenario.instance_id
            [orphan_row] = [e for e in stored if e.rtms_stream_id == orphan_stream]
            assert orphan_row.orphan
            assert json.loads(orphan_row.body)["payload"] == orphan

            metrics = (await http.get(f"{base}/metrics")).text
    counted = {
        (event, product): float(value)
        for event, product, value in re.findall(
            r'^rtmsrec_lifecycle_events_total\{event="(\w+)",product="(\w+)"\} (\S+)$',
            metrics,
            re.M,
        )
    }
    assert counted[("start_failed", "phone")] == 1
    assert counted[("start_failed", "meeting")] == 1
    assert counted[("concurrency_near_limit", "unknown")] == 1
    assert sum(counted.values()) == 3

    lifecycle_logs = [r for r in caplog.records if r.name == "recorder.service.lifecycle"]
    errors = [r for r in lifecycle_logs if r.levelno == logging.ERROR]
    assert len(errors) == 3  # the retry is logged at info, as already stored
    logged = "\n".join(r.getMessage() for r in errors)
    assert "orphan" in logged
    assert f"recording {row.recording_id}" in logged
    assert token not in caplog.text
    assert "app not authorized" in logged

    # What an officer sees, through the command line on the same embedded-default state.
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    cli = [sys.executable, "-m", "recorder"]
    shown = await trio.run_process([*cli, "show", row.recording_id], env=env, capture_stdout=True)
    text = shown.stdout.decode()
    [line] = [line for line in text.splitlines() if "failed start" in line]
    assert "rtms.start_failed" in line
    assert repr(reason) in line
    assert f"(recording {row.recording_id})" in line
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", line)
    listed = await trio.run_process([*cli, "search", "--failed"], env=env, capture_stdout=True)
    lines = listed.stdout.decode().splitlines()
    assert lines[-1] == "2 failed start(s), 1 orphan(s)"
    assert any(orphan_stream in line and "(orphan)" in line for line in lines)
    assert any(call.scenario.rtms_stream_id in line for line in lines)
    assert not any("concurrency_near_limit" in line for line in lines)
    by_product = await trio.run_process(
        [*cli, "search", "--product", "phone"], env=env, capture_stdout=True
    )
    found = by_product.stdout.decode()
    assert row.recording_id in found
    assert found.splitlines()[-1] == "1 recording(s)"
