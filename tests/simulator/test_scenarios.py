"""Scenario files: the shipped examples load, JSON and TOML agree, mistakes are named; and the
``recorder simulate`` entry point runs them against a real HTTP receiver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from recorder.errors import ConfigError
from recorder.rtms.webhook import parse_webhook, verify_webhook
from recorder.simulator import Action, AudioLayout, Product, load_scenario
from recorder.simulator.cli import run_simulate
from recorder.simulator.program import build_program
from recorder.simulator.scenario import builtin_scenarios, scenario_from_mapping

from .httpserver import http_server


def test_shipped_scenarios_load_and_cover_the_demo() -> None:
    paths = builtin_scenarios()
    scenarios = {p.stem: load_scenario(p) for p in paths}
    assert set(scenarios) == {
        "zcc_call",
        "meeting_per_speaker",
        "g711_drop_failover",
        "webinar",
        "phone_call",
    }
    assert scenarios["phone_call"].product is Product.PHONE
    zcc = scenarios["zcc_call"]
    assert zcc.product is Product.CONTACT_CENTER
    assert zcc.layout is AudioLayout.CHANNELS
    assert [s.channel_id for s in zcc.speakers] == ["ch-agent", "ch-caller"]
    meeting = scenarios["meeting_per_speaker"]
    assert meeting.audio_hint == {"codec": 4, "sample_rate": 3, "channel": 2, "data_opt": 2}
    assert meeting.audio_params().codec == 4
    assert meeting.audio_params().send_rate == 20
    assert len(meeting.speakers) == 3
    faults = [s.action for s in scenarios["g711_drop_failover"].steps]
    assert faults == [Action.DROP_MEDIA, Action.FAILOVER, Action.DUPLICATE_WEBHOOK]
    assert scenarios["webinar"].product is Product.WEBINAR
    for scenario in scenarios.values():
        program = build_program(scenario.resolved())
        assert program.utterances


def test_json_and_toml_agree(tmp_path: Path) -> None:
    toml_path = builtin_scenarios()[0]
    import tomllib

    data = tomllib.loads(toml_path.read_text())
    json_path = tmp_path / f"{toml_path.stem}.json"
    json_path.write_text(json.dumps(data))
    assert load_scenario(json_path) == load_scenario(toml_path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"product": "zoom_room"}, "zoom_room"),
        ({"product": "phone", "media": ["audio", "video"]}, "phone offers audio"),
        (
            {
                "product": "phone",
                "steps": [{"at_s": 1, "action": "lifecycle_webhook", "args": {"event": "stopped"}}],
            },
            "lifecycle_webhook event",
        ),
        ({"product": "meeting", "colour": "red"}, "colour"),
        ({"product": "meeting", "steps": [{"at_s": 1, "action": "explode"}]}, "explode"),
        (
            {"product": "meeting", "steps": [{"at_s": 1, "action": "stop", "args": {"why": 1}}]},
            "why",
        ),
        (
            {
                "product": "meeting",
                "speakers": [{"user_id": "1", "user_name": "x", "fixture": "nope"}],
            },
            "nope",
        ),
        ({"product": "contact_center", "media": ["audio", "chat"]}, "contact_center"),
        ({"product": "meeting", "audio": {"bitrate": 5}}, "bitrate"),
        ({"product": "meeting", "duration_s": 0}, "duration_s"),
        (
            {"product": "meeting", "media": ["audio"], "start_when_streaming": ["video"]},
            r"start_when_streaming names media the scenario does not offer: \['video'\]",
        ),
        ({"product": "meeting", "audio": {"codec": 4, "sample_rate": 1}}, "sample_rate"),
    ],
)
def test_scenario_mistakes_are_named(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        scenario_from_mapping(data)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_scenario(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("product = ")
    with pytest.raises(ConfigError):
        load_scenario(broken)


async def test_run_simulate_drives_every_shipped_scenario_against_http() -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    lines: list[str] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(http_server, received)
            code = await run_simulate(
                builtin_scenarios(),
                webhook_url=f"http://127.0.0.1:{port}/webhooks/zoom",
                secret_token="cli_token",
                profile="doc-2026",
                speed=50.0,
                print_fn=lines.append,
                client_id="cid",
                client_secret="csecret",
            )
            nursery.cancel_scope.cancel()
    assert code == 0
    assert lines[0].startswith("simulator: profile doc-2026, RTMS endpoints at ws://127.0.0.1:")
    assert sum(line.startswith("started ") for line in lines) == 5
    assert "g711-drop-failover: t=5s drop_media lose_s=1.5" in lines
    assert "g711-drop-failover: t=12s failover" in lines
    assert "zcc-call: t=19.5s stop reason=22" in lines
    assert "csecret" not in "\n".join(lines)
    events = [parse_webhook(body).event for _, body in received]
    assert events.count("contact_center.voice_rtms_started") == 4  # 2 calls + failover + duplicate
    assert "webinar.rtms_stopped" in events
    assert {"phone.rtms_started", "phone.rtms_stopped", "rtms.start_failed"} <= set(events)
    for headers, body in received:
        verify_webhook("cli_token", headers, body, now_s=float(headers["x-zm-request-timestamp"]))


async def test_run_simulate_reports_bad_files_profiles_and_dead_receivers(tmp_path: Path) -> None:
    lines: list[str] = []
    bad = tmp_path / "bad.toml"
    bad.write_text('product = "fax"')
    code = await run_simulate(
        [bad],
        webhook_url="http://127.0.0.1:9/",
        secret_token="t",
        profile="doc-2026",
        print_fn=lines.append,
    )
    assert code == 3
    assert lines[0].startswith("error:")
    code = await run_simulate(
        [],
        webhook_url="http://127.0.0.1:9/",
        secret_token="t",
        profile="nope",
        print_fn=lines.append,
    )
    assert code == 3
