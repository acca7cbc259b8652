"""The operator's view of a real ``recorder serve --workers 2`` tree: /metrics answered by
whichever worker accepts the scrape shows both workers' counters and never goes back, a killed
worker's figures stay (marked down), and ``recorder spool list|retry`` see every worker's spool.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from recorder.config import load_config
from recorder.service.instance import INSTANCE_LOCK_FILE
from recorder.service.workers import worker_config, worker_state_dir
from recorder.spool.spool import Spool
from tests.spool.helpers import sealed_file

from .helpers_fleet import (
    POLL_S,
    RECORDER,
    FleetSecrets,
    free_port,
    serve_config_text,
    subprocess_env,
)
from .test_workers import WorkersProcess

pytestmark = [pytest.mark.slow]

REJECTED = "rtmsrec_webhook_rejections_total"
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Series:
    # A new connection each time: the kernel hands it to whichever worker accepts first.
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics", timeout=5.0)
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def send_unsigned_webhook(url: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{url}/webhook", content=b"{}", timeout=5.0)
    assert 400 <= response.status_code < 500, response.text


def rejected_by_worker(page: Series) -> dict[str, float]:
    by_worker: dict[str, float] = {}
    for (name, labels), value in page.items():
        if name == REJECTED:
            worker = dict(labels).get("worker", "?")
            by_worker[worker] = by_worker.get(worker, 0.0) + value
    return by_worker


def assert_not_back(seen: Series, page: Series) -> None:
    for key, was in seen.items():
        if key[0].endswith("_total"):
            assert key in page, f"{key} vanished"
            assert page[key] >= was, f"{key} went back from {was} to {page[key]}"


@pytest.mark.timeout(150)
async def test_metrics_and_spools_of_every_worker_from_one_place(tmp_path: Path) -> None:
    secrets_ = FleetSecrets()
    state_dir = tmp_path / "state"
    port = free_port()
    config_path = tmp_path / "serve.toml"
    config_path.write_text(
        serve_config_text(
            state_dir=state_dir, port=port, key_dir=tmp_path / "keys", store_dir=tmp_path / "store"
        ).replace("[service]\n", "[service]\nliveness_stale_s = 4.0\n")
        # No restart during the test: the killed worker's last figures are what is looked at.
        + "[workers]\nrestart_delay_s = 120.0\nrestart_max_s = 120.0\n"
    )
    env = subprocess_env(secrets_, owner="ops")
    parent = WorkersProcess("workers", config_path, port, env, tmp_path / "workers.log")
    with trio.fail_after(100):
        async with parent.serving():
            await _metrics_scenario(parent.base_url, state_dir)
    with trio.fail_after(60):
        await _spool_scenario(tmp_path, config_path, env)


async def _metrics_scenario(url: str, state_dir: Path) -> None:
    seen: Series = {}
    sent = 0
    # Rejections counted by whichever worker took each webhook; scrapes in between.
    while sent < 20 or len([n for n in rejected_by_worker(seen).values() if n > 0]) < 2:
        await send_unsigned_webhook(url)
        sent += 1
        for _ in range(2):
            page = await scrape(url)
            assert_not_back(seen, page)
            seen.update(page)
    # Every worker publishes within a second: soon any scrape shows the whole count.
    while sum(rejected_by_worker(seen).values()) != sent:
        assert sum(rejected_by_worker(seen).values()) < sent
        await trio.sleep(POLL_S)  # another process's publication: polled, as helpers_fleet does
        page = await scrape(url)
        assert_not_back(seen, page)
        seen.update(page)
    by_worker = rejected_by_worker(seen)
    assert set(by_worker) == {"0", "1"}, by_worker
    for _ in range(6):
        page = await scrape(url)
        assert_not_back(seen, page)
        assert rejected_by_worker(page) == by_worker
        seen.update(page)

    # A killed worker: its counters stay on the page, it is marked down, its gauges go.
    pid = int((worker_state_dir(state_dir, 1) / INSTANCE_LOCK_FILE).read_text())
    os.kill(pid, signal.SIGKILL)
    up_1 = ("rtmsrec_worker_up", (("worker", "1"),))
    while True:
        page = await scrape(url)
        assert_not_back(seen, page)
        assert rejected_by_worker(page) == by_worker
        if page[up_1] == 0:
            break
        await trio.sleep(POLL_S)  # the stale mark is a wall-clock age in another process
    assert ("rtmsrec_active_engagements", (("worker", "1"),)) not in page
    assert page[("rtmsrec_active_engagements", (("worker", "0"),))] == 0
    assert page[("rtmsrec_worker_up", (("worker", "0"),))] == 1


async def _spool_scenario(tmp_path: Path, config_path: Path, env: dict[str, str]) -> None:
    """A job in each worker's spool (a stopped tree: no uploader takes them away meanwhile)."""
    config = load_config(config_path, {})
    ids = {}
    for index in (0, 1):
        spool = Spool(worker_config(config, index).storage.spool_dir / "queue")
        source, job = sealed_file(tmp_path / f"out-{index}", index)
        spooled = await spool.enqueue(source, job)
        ids[str(index)] = spooled.job_id
        if index == 1:
            await spool.quarantine(spooled, "integrity: test")
    listed = json.loads(await _recorder(env, "spool", "list", "--json", "--config", config_path))
    assert {(row["worker"], row["job"], row["state"]) for row in listed} == {
        ("0", ids["0"], "pending"),
        ("1", ids["1"], "quarantined"),
    }
    table = await _recorder(env, "spool", "list", "--config", config_path)
    assert table.splitlines()[0].split()[:2] == ["WORKER", "JOB"]
    out = await _recorder(env, "spool", "retry", ids["1"], "--config", config_path)
    assert f"requeued {ids['1']}" in out
    listed = json.loads(await _recorder(env, "spool", "list", "--json", "--config", config_path))
    assert {(row["worker"], row["state"]) for row in listed} == {("0", "pending"), ("1", "pending")}


async def _recorder(env: dict[str, str], *args: str | Path) -> str:
    result = await trio.run_process(
        [str(RECORDER), *map(str, args)],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()
