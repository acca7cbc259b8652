"""``recorder completeness pull`` over real HTTP: the simulator's REST API lists meetings, Contact
Center engagements and phone calls page by page; the pull records an expectation for each one
the policy matches (SQLite and PostgreSQL), again and again without duplicates; a refused
listing surfaces Zoom's code; and reconcile turns a listed meeting that was never recorded into
a ``missing`` finding. The last test runs the command itself with ``[zoom]`` configured."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest
import trio

from recorder.catalog import AsyncCatalog, open_async_catalog
from recorder.completeness.model import FindingCause, FindingKind
from recorder.completeness.pull import pull
from recorder.completeness.reconcile import reconcile_once
from recorder.config import CompletenessConfig, load_config
from recorder.errors import ZoomApiError
from recorder.products import Product
from recorder.zoom.listing_http import HttpZoomListing, utc_date
from tests.completeness.helpers import add_recording
from tests.zoom.test_listing import (
    ACCOUNT,
    CLIENT_ID,
    SECRET,
    SINCE_MS,
    UNTIL_MS,
    listing_over_http,
    populate,
    scenario,
)

POLICY = CompletenessConfig(
    enabled=True,
    products=(Product.MEETING, Product.CONTACT_CENTER, Product.PHONE),  # not webinars
    accounts=(ACCOUNT,),
    queues=("q-fx",),
    grace_s=60,
    late_start_s=30,
    reconcile_window_s=10 * 86_400,
)


async def expectations(catalog: AsyncCatalog) -> dict[str, Product]:
    db = catalog.sync
    rows = await catalog._call(lambda: db.expectations_between(0, 2**62, limit=1000))
    return {x.instance_id: x.product for x in rows}


async def test_pull_records_policy_matches_once_and_reconcile_finds_the_missing(
    catalog: AsyncCatalog,
) -> None:
    async with listing_over_http(list_page_size=2) as (rest, client):
        listed = populate(rest)
        rest.add_live(  # another queue: listed, not expected
            scenario(Product.CONTACT_CENTER, "eng-other"),
            profile={"queues": [{"queue_id": "q-retail"}]},
            started_ms=SINCE_MS + 1000,
        )
        listing = HttpZoomListing(client, ACCOUNT, page_size=2)
        now = UNTIL_MS + 3_600_000
        first = await pull(
            catalog, listing, POLICY, since_ms=SINCE_MS, until_ms=UNTIL_MS, now_ms=now
        )
        wanted = {i: p for i, p in listed.items() if p is not Product.WEBINAR}
        assert (first.listed, first.matching, first.added) == (len(listed) + 1, len(wanted), 15)
        assert await expectations(catalog) == wanted
        again = await pull(
            catalog, listing, POLICY, since_ms=SINCE_MS, until_ms=UNTIL_MS, now_ms=now + 1
        )
        assert (again.matching, again.added) == (len(wanted), 0)  # idempotent
        assert await expectations(catalog) == wanted

        rest.inject(403, code=200, message="No permission.")
        with pytest.raises(ZoomApiError) as caught:
            await pull(catalog, listing, POLICY, since_ms=SINCE_MS, until_ms=UNTIL_MS, now_ms=now)
        assert caught.value.code == 200
        assert "code 200" in str(caught.value)

    # mtg-1 was recorded from its start to its end; mtg-0 never was.
    start = SINCE_MS + 2 * 3_600_000
    await add_recording(
        catalog, Product.MEETING, "mtg-1", "s-mtg-1", started_ms=start, ended_ms=start + 600_000
    )
    await reconcile_once(catalog, POLICY, now, recheck=True)
    db = catalog.sync
    found = await catalog._call(functools.partial(db.findings, limit=100))
    by_instance = {f.instance_id: f for f in found}
    assert "mtg-1" not in by_instance
    assert (by_instance["mtg-0"].kind, by_instance["mtg-0"].cause) == (
        FindingKind.MISSING,
        FindingCause.NEVER_STARTED,
    )
    assert by_instance["call-3"].kind is FindingKind.MISSING


async def cli(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    done = await trio.run_process(
        [sys.executable, "-m", "recorder", *args, "--config", str(tmp_path / "recorder.toml")],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).decode()


async def test_the_pull_command_uses_the_configured_zoom_api(tmp_path: Path) -> None:
    async with listing_over_http(list_page_size=3) as (rest, _):
        listed = populate(rest)
        (tmp_path / "recorder.toml").write_text(
            "[completeness]\nenabled = true\n"
            'products = ["meeting", "contact_center", "phone"]\n'
            f'accounts = ["{ACCOUNT}"]\nqueues = ["q-fx"]\n'
            "[zoom]\n"
            f'api_base_url = "{rest.base_url}"\noauth_base_url = "{rest.base_url}"\n'
            f'account_id = "{ACCOUNT}"\nallow_insecure_loopback = true\nlist_page_size = 3\n'
            "max_retries = 0\n"
        )
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ZOOM_", "ZM_")) and k != "CREDENTIALS_DIRECTORY"
        }
        env |= {
            "XDG_STATE_HOME": str(tmp_path),
            "ZOOM_CLIENT_ID": CLIENT_ID,
            "ZOOM_CLIENT_SECRET": SECRET,
        }
        day = utc_date(SINCE_MS)  # --until DAY means to the end of that day
        with trio.fail_after(60):
            code, text = await cli(
                tmp_path, env, "completeness", "pull", "--since", day, "--until", day
            )
            assert code == 0, text
            # Only the policy's products are asked for: no webinar listing.
            assert "listed 15, expected by policy 15, new 15" in text
            assert SECRET not in text
            rest.inject(400, code=4711, message="Invalid access token, does not contain scopes")
            code, text = await cli(
                tmp_path, env, "completeness", "pull", "--since", day, "--until", day
            )
            assert code != 0
            assert "code 4711" in text
            assert "does not contain scopes" in text
    config = load_config(tmp_path / "recorder.toml", {"XDG_STATE_HOME": str(tmp_path)})
    async with await open_async_catalog(
        f"sqlite:///{config.catalog.sqlite_path}", now_ms=UNTIL_MS
    ) as catalog:
        assert await expectations(catalog) == {
            i: p for i, p in listed.items() if p is not Product.WEBINAR
        }


def test_the_pull_timer_runs_before_the_hourly_reconcile_as_the_service_user(
    tmp_path: Path,
) -> None:
    from recorder.cli import build_parser
    from tests.service.test_ops import EXEC_PATH, systemd_analyze_verify, unit_settings

    service = unit_settings("recorder-completeness-pull.service")
    [command] = service["ExecStart"]
    args = build_parser().parse_args(command.split()[1:])
    assert (args.command, args.completeness_command, args.since) == ("completeness", "pull", "3h")
    assert service["User"] == unit_settings("recorder.service")["User"]
    assert sorted(c.split(":")[0] for c in service["LoadCredential"]) == [
        "ZOOM_CLIENT_ID",
        "ZOOM_CLIENT_SECRET",
    ]
    timer = unit_settings("recorder-completeness-pull.timer")
    assert timer["OnCalendar"] == ["*-*-* *:50:00"]
    assert timer["Persistent"] == ["true"]
    fake = tmp_path / "recorder"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    ops = Path(__file__).resolve().parents[2] / "ops"
    paths = []
    for name in ("recorder-completeness-pull.service", "recorder-completeness-pull.timer"):
        path = tmp_path / f"rtms-{name}"
        path.write_text((ops / name).read_text().replace(EXEC_PATH, str(fake)))
        paths.append(path)
    code, problems = systemd_analyze_verify(paths)
    assert problems == []
    assert code == 0
