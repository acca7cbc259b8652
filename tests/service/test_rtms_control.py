"""RTMS control and pause evidence through the assembled service: ``recorder rtms pause`` and
``resume`` run as real processes against the simulator's Zoom REST API over HTTP (start and stop
use the same Python API in-process), the simulator's stream reaches the service's ingress and
RTMS client, and the service's SQLite catalog is shared with the command.

One call: ``start`` (the simulator sends the signed ``rtms_started``), ``pause --reason``
(the pause span names the actor, the audit log has the request and Zoom's answer), the pause
lasts longer than ``[pause] max_s`` (flagged), ``resume`` (the same recording goes on), a
second ``resume`` that Zoom refuses (code 2310 shown, recorded as refused), a pause request
Zoom accepts but the stream never shows (flagged as unconfirmed), ``stop``. Secrets and tokens
are then looked for in every log line, output, argv and catalog row.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from recorder.catalog.rtms_request_types import RtmsRequestRow
from recorder.config import Config, PauseConfig, ZoomConfig
from recorder.products import Product
from recorder.service.pause_evidence import PAUSE_TOO_LONG, PAUSE_UNCONFIRMED
from recorder.simulator.rest import RestSettings, open_zoom_rest
from recorder.simulator.simulator import SimulatorConfig, open_simulator
from recorder.zoom import open_zoom_api
from recorder.zoom.commands import request_rtms_change
from recorder.zoom.directory import RtmsAction
from tests.officer.support import sealed_records
from tests.service.test_service import secret_token, service, short_config, zcc_call

pytestmark = pytest.mark.slow

ACCOUNT = "acct-pci"
INSTANCE = "eng-pci-0001"
#: The pause is held this long; ``[pause] max_s`` is 1 s, so it is flagged as too long.
PAUSE_HELD_S = 1.2


class AcceptsButNeverPauses:
    """An ``RtmsController`` whose Zoom says yes and does nothing: the unknown pause state."""

    async def change(self, product: Product, target_id: str, action: RtmsAction) -> None:
        await trio.lowlevel.checkpoint()


def write_config(path: Path, config: Config, base_url: str) -> None:
    path.write_text(
        f"""
[storage]
state_dir = "{config.storage.state_dir}"

[catalog]
sqlite_path = "{config.catalog.sqlite_path}"

[zoom]
api_base_url = "{base_url}"
oauth_base_url = "{base_url}"
allow_insecure_loopback = true
account_id = "{ACCOUNT}"
max_retries = 1
"""
    )


async def test_rtms_commands_drive_a_recorded_call_and_leave_pause_evidence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = short_config(tmp_path)
    config = replace(config, pause=PauseConfig(max_s=1.0, match_window_s=60.0))
    assert config.secrets.zoom_client_id is not None
    assert config.secrets.zoom_client_secret is not None
    client_id = config.secrets.zoom_client_id.reveal()
    client_secret = config.secrets.zoom_client_secret.reveal()
    toml = tmp_path / "recorder.toml"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "ZOOM_CLIENT_ID": client_id,
        "ZOOM_CLIENT_SECRET": client_secret,
    }
    outputs: list[str] = []
    argvs: list[list[str]] = []

    async def rtms(*args: str, expect: int = 0) -> str:
        argv = [sys.executable, "-m", "recorder", "rtms", *args, "--config", str(toml)]
        argvs.append(argv)
        done = await trio.run_process(
            argv, env=env, capture_stdout=True, capture_stderr=True, check=False
        )
        text = done.stdout.decode() + done.stderr.decode()
        outputs.append(text)
        assert done.returncode == expect, text
        return text

    with trio.fail_after(120):
        async with service(config) as running:
            url = f"http://127.0.0.1:{running.port}/webhook"
            sim_config = SimulatorConfig(webhook_url=url, secret_token=secret_token(config))
            rest_settings = RestSettings(
                account_id=ACCOUNT,
                client_id=client_id,
                client_secret=client_secret,
                rtms_client_id=client_id,
            )
            async with (
                open_simulator(sim_config) as sim,
                open_zoom_rest(sim, rest_settings) as rest,
                contextlib.AsyncExitStack() as stack,
            ):
                write_config(toml, config, rest.base_url)
                live = rest.add_live(zcc_call(config, seconds=60.0, instance_id=INSTANCE))

                # Start and stop go through the Python API (the same client and catalog calls,
                # real HTTP to the simulator), pause and resume through the command.
                in_process = replace(
                    config,
                    zoom=ZoomConfig(
                        api_base_url=rest.base_url,
                        oauth_base_url=rest.base_url,
                        allow_insecure_loopback=True,
                        account_id=ACCOUNT,
                    ),
                )
                zoom = await stack.enter_async_context(open_zoom_api(in_process, {}))

                async def change(action: RtmsAction, **fields: str) -> RtmsRequestRow:
                    return await request_rtms_change(
                        running.components.catalog,
                        zoom.controller,
                        product=Product.CONTACT_CENTER,
                        target_id=INSTANCE,
                        action=action,
                        **({"actor": "os:ops", "reason": "queue policy"} | fields),
                    )

                await change(RtmsAction.START)
                call = live.engagement
                assert call is not None
                # The recorder connects within milliseconds; the next command alone takes longer
                # (a new Python process), so audio is recorded before the pause.
                await call.streaming.wait()

                out = await rtms(
                    "pause", "contact_center", INSTANCE,
                    "--reason", "card number read out", "--actor", "agent-ann", "--wait", "20",
                )  # fmt: skip
                assert "accepted by Zoom" in out
                # --wait returned once the recorder matched the stream's pause to the request.
                assert "the pause is confirmed on recording" in out
                assert call.paused
                await trio.sleep(PAUSE_HELD_S)  # the call stays paused this long, on purpose
                await rtms("resume", "contact_center", INSTANCE, "--actor", "agent-ann")
                assert not call.paused
                refused = await rtms("resume", "contact_center", INSTANCE, expect=2)
                assert "code 2310" in refused
                assert "not paused" in refused

                # Zoom accepts this pause, and the stream never shows it.
                unconfirmed = await request_rtms_change(
                    running.components.catalog,
                    AcceptsButNeverPauses(),
                    product=Product.CONTACT_CENTER,
                    target_id=INSTANCE,
                    action=RtmsAction.PAUSE,
                    actor="agent-bob",
                    reason="card number, second attempt",
                )
                await trio.sleep(0.5)  # half a second of audio after the last resume
                await change(RtmsAction.STOP)
                await call.finished.wait()
            for engagement in running.supervisor.history:
                await engagement.finished.wait()
            await running.uploads_settled()

            catalog = running.components.catalog
            # Resume continued the same recording: one recording of the call, one stream.
            [row] = await catalog.search(instance_id=INSTANCE)
            assert len(running.supervisor.history) == 1
            detail = await catalog.show(row.recording_id)
            assert detail is not None
            # One pause, cut where segments rotate (2 s here); every piece names its actor.
            pauses = detail.pauses
            assert {p.actor for p in pauses} == {"agent-ann"}
            assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(pauses))
            paused_from, paused_until = pauses[0].start_ms, pauses[-1].end_ms
            assert paused_until is not None
            assert (paused_until - paused_from) / 1000 > PAUSE_HELD_S
            for track in {s.track for s in detail.segments}:
                mine = [s for s in detail.segments if s.track == track]
                assert any(s.start_ms < paused_from for s in mine), track
                assert any(s.end_ms > paused_until for s in mine), track
            events = await catalog.audit_trail(row.recording_id)
            trail = [(e.action, e.actor, e.reason) for e in events]
            assert ("rtms.pause", "agent-ann", "card number read out") in trail
            assert ("rtms.pause.accepted", "agent-ann", "card number read out") in trail
            assert ("rtms.resume", "agent-ann", "recorder rtms resume") in trail
            assert any(action == "rtms.resume.refused" for action, _, _ in trail)
            pause_event = next(
                e for e in await catalog.audit_trail(row.recording_id) if e.action == "rtms.pause"
            )
            assert (
                "via" in pause_event.details_json if hasattr(pause_event, "details_json") else True
            )
            flags = {e.event: e for e in detail.lifecycle_events}
            assert set(flags) == {PAUSE_TOO_LONG, PAUSE_UNCONFIRMED}
            assert "agent-ann" in (flags[PAUSE_TOO_LONG].reason or "")
            unconfirmed_body = json.loads(flags[PAUSE_UNCONFIRMED].body)
            assert unconfirmed_body["payload"]["request_id"] == unconfirmed.request_id
            assert flags[PAUSE_UNCONFIRMED].recording_id == row.recording_id
            # Inside the recording itself: the decrypted records name the actor of the pause.
            records = await sealed_records(running.components, detail)
            paused = [r for r in records if r.get("type") == "paused"]
            assert [r["actor"] for r in paused] == ["agent-ann"]
            requests = await catalog.rtms_requests(target_id=INSTANCE)
            assert [(r.action, r.outcome) for r in reversed(requests)] == [
                ("start", "accepted"),
                ("pause", "accepted"),
                ("resume", "accepted"),
                ("resume", "refused"),
                ("pause", "accepted"),
                ("stop", "accepted"),
            ]

    # What an officer sees: the pause with its actor, and both flags.
    shown = await rtms_show(toml, env, row.recording_id)
    outputs.append(shown)
    assert "by agent-ann" in shown
    assert PAUSE_TOO_LONG in shown
    assert PAUSE_UNCONFIRMED in shown

    # Secrets and tokens: in no argv, output, log line or catalog row.
    tokens = rest.stats.issued
    assert tokens
    secrets_ = [client_secret, *tokens]
    dump = catalog_dump(config.catalog.sqlite_path)
    for secret in secrets_:
        assert not any(secret in " ".join(argv) for argv in argvs)
        assert not any(secret in text for text in outputs)
        assert secret not in caplog.text
        assert secret not in dump


async def rtms_show(toml: Path, env: dict[str, str], recording_id: str) -> str:
    argv = [sys.executable, "-m", "recorder", "show", recording_id, "--no-verify"]
    done = await trio.run_process(
        [*argv, "--config", str(toml)], env=env, capture_stdout=True, capture_stderr=True
    )
    return done.stdout.decode() + done.stderr.decode()


def catalog_dump(path: Path | None) -> str:
    assert path is not None
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = [repr(row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"')]
    return "\n".join(rows)
