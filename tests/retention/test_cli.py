"""The real commands in real processes: SIGKILL mid-run, concurrent runs, audit verify, actors."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest
import trio

from recorder.catalog import open_async_catalog
from recorder.officer.actor import os_actor
from recorder.store.local import LocalStore
from tests.retention.helpers import DAY_MS, make_recording
from tests.retention.test_policy import DEFAULT, write

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

#: Recordings that ended ten years ago: every lock has lapsed on the real clock.
LONG_AGO = 1_460_000_000_000


def env_for(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg")}


def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "xdg" / "rtms-recorder"


async def populate(tmp_path: Path, count: int) -> list[str]:
    state = state_dir(tmp_path)
    state.mkdir(parents=True, exist_ok=True)
    write(state / "policies", default=DEFAULT)
    store = LocalStore(state / "store")
    url = f"sqlite:///{state / 'catalog.sqlite3'}"
    async with await open_async_catalog(url, now_ms=LONG_AGO) as catalog:
        return [
            (
                await make_recording(
                    catalog, store, tmp_path, started_ms=LONG_AGO + n * DAY_MS, objects=3
                )
            ).recording_id
            for n in range(count)
        ]


def records_by_recording(tmp_path: Path) -> Counter[str]:
    conn = sqlite3.connect(state_dir(tmp_path) / "catalog.sqlite3")
    try:
        rows = conn.execute("SELECT recording_id FROM destruction_records").fetchall()
    finally:
        conn.close()
    return Counter(row[0] for row in rows)


CLI = [sys.executable, "-m", "recorder"]


async def test_a_run_killed_midway_is_finished_cleanly_by_the_next(tmp_path: Path) -> None:
    recordings = await populate(tmp_path, 40)
    env = env_for(tmp_path)
    with trio.fail_after(120):
        process = await trio.lowlevel.open_process(
            [*CLI, "retention", "run"], env=env, stdout=-1, stderr=-1
        )
        assert process.stdout is not None
        seen = b""
        while b"destroyed rec_" not in seen:
            chunk = await process.stdout.receive_some(4096)
            assert chunk, f"the run ended before destroying anything: {seen!r}"
            seen += chunk
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
    partial = records_by_recording(tmp_path)
    assert 1 <= sum(partial.values()) < len(recordings), "the kill came too late to test"

    with trio.fail_after(120):
        rerun = await trio.run_process(
            [*CLI, "retention", "run"],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    final = records_by_recording(tmp_path)
    assert set(final) == set(recordings)
    assert set(final.values()) == {1}  # nothing destroyed twice
    remaining = await LocalStore(state_dir(tmp_path) / "store").list("cc/")
    assert remaining == []

    again = await trio.run_process(
        [*CLI, "retention", "plan", "--json"], env=env, capture_stdout=True
    )
    assert '"verdict": "destroy"' not in again.stdout.decode()


async def test_two_concurrent_runs_never_both_act(tmp_path: Path) -> None:
    recordings = await populate(tmp_path, 15)
    env = env_for(tmp_path)
    codes: list[int] = []

    async def run() -> None:
        done = await trio.run_process(
            [*CLI, "retention", "run"],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        codes.append(done.returncode)
        errors.append(done.stderr.decode()[-2000:])

    errors: list[str] = []
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            nursery.start_soon(run)
    assert set(codes) <= {0, 75}, (codes, errors)
    assert 0 in codes
    final = records_by_recording(tmp_path)
    assert set(final) == set(recordings)
    assert set(final.values()) == {1}


async def test_plan_printed_equals_what_the_run_did_and_actors_are_real(tmp_path: Path) -> None:
    recordings = await populate(tmp_path, 3)
    env = env_for(tmp_path)
    plan = await trio.run_process([*CLI, "retention", "plan"], env=env, capture_stdout=True)
    planned = {line.split()[0] for line in plan.stdout.decode().splitlines() if " destroy " in line}
    assert planned == set(recordings)
    run = await trio.run_process([*CLI, "retention", "run"], env=env, capture_stdout=True)
    done = {
        line.split()[1] for line in run.stdout.decode().splitlines() if line.startswith("destroyed")
    }
    assert done == planned

    # Officer commands: the OS user is the actor, not anything typed.
    await trio.run_process([*CLI, "search"], env=env, capture_stdout=True)
    listed = await trio.run_process(
        [*CLI, "audit", "list", "--action", "search"], env=env, capture_stdout=True
    )
    assert os_actor() in listed.stdout.decode()
    listed = await trio.run_process(
        [*CLI, "audit", "list", "--action", "retention.run.start"], env=env, capture_stdout=True
    )
    assert f"started by {os_actor()}" in listed.stdout.decode()

    verified = await trio.run_process(
        [*CLI, "audit", "verify"], env=env, capture_stdout=True, check=False
    )
    assert verified.returncode == 0
    assert "audit log OK" in verified.stdout.decode()
    # The owner rewrites an event behind the triggers' back: verify fails, naming it.
    conn = sqlite3.connect(state_dir(tmp_path) / "catalog.sqlite3")
    try:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE audit_id = 2")
        conn.commit()
    finally:
        conn.close()
    failed = await trio.run_process(
        [*CLI, "audit", "verify"], env=env, capture_stderr=True, check=False
    )
    assert failed.returncode == 96
    assert "event #2" in failed.stderr.decode()


async def test_hold_commands_hold_list_release(tmp_path: Path) -> None:
    recordings = await populate(tmp_path, 2)
    env = env_for(tmp_path)
    placed = await trio.run_process(
        [*CLI, "hold", "place", "--matter", "M-1", "--reason", "subpoena", "--recording",
         recordings[0]],
        env=env,
        capture_stdout=True,
    )  # fmt: skip
    assert f"on {recordings[0]} (matter M-1)" in placed.stdout.decode()
    listed = await trio.run_process([*CLI, "hold", "list"], env=env, capture_stdout=True)
    assert f"by {os_actor()}" in listed.stdout.decode()
    run = await trio.run_process([*CLI, "retention", "run"], env=env, capture_stdout=True)
    assert f"destroyed {recordings[1]}" in run.stdout.decode()
    assert recordings[0] not in run.stdout.decode()
    released = await trio.run_process(
        [*CLI, "hold", "release", "--matter", "M-1", "--reason", "settled"],
        env=env,
        capture_stdout=True,
    )
    assert "released hold #1" in released.stdout.decode()
    run = await trio.run_process([*CLI, "retention", "run"], env=env, capture_stdout=True)
    assert f"destroyed {recordings[0]}" in run.stdout.decode()


async def test_verify_reports_hold_drift_between_catalog_and_store(tmp_path: Path) -> None:
    recordings = await populate(tmp_path, 1)
    env = env_for(tmp_path)
    store = LocalStore(state_dir(tmp_path) / "store")
    [key, *_] = await store.list(f"cc/{recordings[0]}/")
    await store.set_legal_hold(key, True)  # the store holds what the catalog does not
    checked = await trio.run_process(
        [*CLI, "verify", recordings[0], "--reason", "audit"],
        env=env,
        capture_stdout=True,
        check=False,
    )
    out = checked.stdout.decode()
    # Its objects are not real ciphertext, so they read as tampered too: a mix of classes (76).
    assert checked.returncode == 76
    assert f"hold drift: {key} version None: store legal hold on, catalog says not held" in out
    synced = await trio.run_process([*CLI, "hold", "sync", "--all"], env=env, capture_stdout=True)
    assert "1 object version(s)" in synced.stdout.decode()
    assert not (await store.head(key)).legal_hold
