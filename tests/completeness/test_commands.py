"""The completeness commands as an operator and an officer type them (subprocesses on the
embedded default): ``completeness reconcile``, ``search --findings`` (table and ``--json``),
``search --number``, ``show`` with enrichment and findings, and clear refusals for ``enrich`` and
``completeness pull`` while no Zoom REST client is configured."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import trio

from recorder.catalog import open_async_catalog
from recorder.cli import main as cli_main
from recorder.completeness.model import (
    EnrichmentFields,
    ExpectationSource,
    NewExpectation,
    StartState,
)
from recorder.config import load_config
from recorder.crypto.blind_index import load_search_key
from recorder.products import Product
from tests.completeness.helpers import NOW_MS, add_recording

CONFIG = (
    "[completeness]\nenabled = true\ngrace_s = 60\nlate_start_s = 30\n"
    "reconcile_window_s = 315360000\n"  # the fixture times are from 2021
)


async def seed(tmp_path: Path) -> str:
    (tmp_path / "recorder.toml").write_text(CONFIG)
    config = load_config(tmp_path / "recorder.toml", {"XDG_STATE_HOME": str(tmp_path)})
    path = config.catalog.sqlite_path
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    async with await open_async_catalog(f"sqlite:///{path}", now_ms=NOW_MS) as catalog:
        db = catalog.sync
        for instance, state in (("eng-late", StartState.REQUESTED), ("eng-none", StartState.OFF)):
            new = NewExpectation(
                Product.CONTACT_CENTER,
                instance,
                instance,
                ExpectationSource.WEBHOOK,
                "contact_center.engagement_started",
                expected_start_ms=NOW_MS,
                created_ms=NOW_MS,
                start_state=state,
            )
            await catalog._call(functools.partial(db.add_expectation, new))
        rid = await add_recording(
            catalog, Product.CONTACT_CENTER, "eng-late", "s-late", started_ms=NOW_MS + 45_000
        )
        fields = EnrichmentFields(agent_name="Dana Smith", consumer_number="+44 20 7946 0018")
        await catalog._call(
            functools.partial(db.store_enrichment, Product.CONTACT_CENTER, "eng-late", fields, 1)
        )
    return rid


def test_reconcile_then_officers_see_findings_in_search_and_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In process (``recorder.cli.main``): ten subprocesses would cost ten interpreter starts.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    for name in ("ZOOM_CLIENT_ID", "ZM_RTMS_CLIENT", "CREDENTIALS_DIRECTORY", "ZOOM_ACCOUNT_ID"):
        monkeypatch.delenv(name, raising=False)
    rid = trio.run(seed, tmp_path)
    config = ("--config", str(tmp_path / "recorder.toml"))

    def cli(*args: str) -> tuple[int, str]:
        code = cli_main(list(args))
        out = capsys.readouterr()
        return code, out.out + out.err

    code, text = cli("completeness", "reconcile", *config, "--json")
    assert code == 0, text
    summary = json.loads(text)
    assert summary["examined"] == 2
    assert sorted((f["kind"], f["cause"]) for f in summary["open_findings"]) == [
        ("incomplete", "started_late"),
        ("missing", "never_started"),
    ]
    code, text = cli("search", *config, "--findings", "--json")
    assert code == 0, text
    body = json.loads(text)
    assert body["schema"] == "rtms-recorder.findings/1"
    by_instance = {f["instance_id"]: f for f in body["findings"]}
    assert by_instance["eng-late"]["recording_id"] == rid
    assert by_instance["eng-late"]["detail"] == (
        "recording started 45.0 s after the expected start"
    )
    assert by_instance["eng-none"]["cause"] == "never_started"
    code, text = cli("search", *config, "--findings")
    assert code == 0, text
    assert "2 open finding(s)" in text
    assert "started_late" in text
    # A number is a person's: the search is audited as its MAC under the search-index key.
    state = {"XDG_STATE_HOME": str(tmp_path)}
    load_search_key(load_config(tmp_path / "recorder.toml", state).keys.key_dir, create=True)
    code, text = cli("search", *config, "--number", "0044-20-7946-0018")
    assert code == 0, text
    assert "0 recording(s)" in text  # a different number: 0044... is not +44...
    code, text = cli("search", *config, "--number", "+442079460018")
    assert rid in text
    code, text = cli("show", rid, *config, "--no-verify", "--json")
    assert code == 0, text
    shown = json.loads(text)
    assert shown["enrichment"]["agent_name"] == "Dana Smith"
    assert shown["enrichment"]["consumer_number"] == "+442079460018"
    assert [(f["kind"], f["cause"]) for f in shown["findings"]] == [("incomplete", "started_late")]
    code, text = cli("show", rid, *config, "--no-verify")
    assert "completeness finding (OPEN): incomplete/started_late" in text
    assert "agent name: Dana Smith" in text
    code, text = cli("enrich", *config, "--retry")
    assert code == 3  # the Zoom REST client says what it is missing
    assert "missing secrets" in text
    assert "ZOOM_CLIENT_ID" in text
    code, text = cli("completeness", "pull", *config, "--since", "2d")
    assert code == 3
    assert "Zoom's REST API, which is not configured" in text
    assert "ZOOM_CLIENT_ID" in text  # names what to configure
    assert "account_id" in text


def test_the_timer_runs_a_json_reconcile_as_the_service_user(tmp_path: Path) -> None:
    from recorder.cli import build_parser
    from tests.service.test_ops import EXEC_PATH, systemd_analyze_verify, unit_settings

    service = unit_settings("recorder-completeness.service")
    [command] = service["ExecStart"]
    args = build_parser().parse_args(command.split()[1:])
    assert (args.command, args.completeness_command, args.json) == (
        "completeness",
        "reconcile",
        True,
    )
    assert service["Type"] == ["oneshot"]
    assert service["User"] == unit_settings("recorder.service")["User"]
    assert unit_settings("recorder-completeness.timer")["Persistent"] == ["true"]
    fake = tmp_path / "recorder"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    ops = Path(__file__).resolve().parents[2] / "ops"
    paths = []
    for name in ("recorder-completeness.service", "recorder-completeness.timer"):
        path = tmp_path / f"rtms-{name}"
        path.write_text((ops / name).read_text().replace(EXEC_PATH, str(fake)))
        paths.append(path)
    code, problems = systemd_analyze_verify(paths)
    assert problems == []
    assert code == 0
