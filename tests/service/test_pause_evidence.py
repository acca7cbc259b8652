"""``PauseEvidence``'s rules one by one, on a real SQLite catalog and synthetic stream events
(the end-to-end path is ``test_rtms_control.py``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from recorder.catalog import AsyncCatalog, open_async_catalog
from recorder.catalog.base import RecordingStart
from recorder.config import PauseConfig
from recorder.products import Product
from recorder.rtms.events import Paused, Resumed, StreamEnded
from recorder.service.pause_evidence import PAUSE_TOO_LONG, PAUSE_UNCONFIRMED, PauseEvidence
from recorder.service.status import EngagementSpec, EngagementStatus

T0 = 1_767_225_600_000
SPEC = EngagementSpec(Product.CONTACT_CENTER, "eng-1", "stream-1", (), event_ts_ms=T0)
CONFIG = PauseConfig(max_s=10.0, match_window_s=60.0, lookup_timeout_s=1.0)
SHORT = PauseConfig(max_s=10.0, match_window_s=60.0, lookup_timeout_s=0.2)


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[AsyncCatalog]:
    async with await open_async_catalog(f"sqlite:///{tmp_path / 'c.db'}", now_ms=T0) as opened:
        yield opened


async def evidence_for(catalog: AsyncCatalog, now: list[int]) -> tuple[PauseEvidence, str]:
    row = await catalog.upsert_recording(
        RecordingStart(SPEC.rtms_stream_id, SPEC.product, SPEC.instance_id, T0), T0
    )
    status = EngagementStatus(recording_id=row.recording_id)
    return PauseEvidence(catalog, SPEC, status, CONFIG, now_ms=lambda: now[0]), row.recording_id


async def request_pause(catalog: AsyncCatalog, at_ms: int, actor: str = "ann") -> int:
    row, _ = await catalog.add_rtms_request(
        product="contact_center",
        target_id="eng-1",
        action="pause",
        actor=actor,
        reason="pci",
        now_ms=at_ms,
    )
    return row.request_id


async def flags(catalog: AsyncCatalog) -> dict[str, dict[str, object]]:
    events = await catalog.lifecycle_events(limit=100)
    return {e.event: json.loads(e.body)["payload"] for e in events}


async def test_a_pause_is_attributed_to_the_request_before_it(catalog: AsyncCatalog) -> None:
    now = [T0 + 10_000]
    pauses, recording_id = await evidence_for(catalog, now)
    await request_pause(catalog, T0 + 5_000, actor="ann")
    replaced = await pauses.on_event(Paused(timestamp_ms=100, wall_ms=T0 + 6_000))
    assert isinstance(replaced, Paused)
    assert (replaced.actor, replaced.timestamp_ms, replaced.wall_ms) == ("ann", 100, T0 + 6_000)
    assert await pauses.on_event(Resumed(timestamp_ms=200, wall_ms=T0 + 9_000)) is None
    await pauses.finish()
    assert await flags(catalog) == {}  # attributed, and short enough
    [row] = await catalog.rtms_requests()
    assert row.matched_recording_id == recording_id


async def test_a_pause_nobody_asked_the_recorder_for_keeps_zooms_word(
    catalog: AsyncCatalog,
) -> None:
    now = [T0 + 200_000]
    pauses, _ = await evidence_for(catalog, now)
    await request_pause(catalog, T0)  # two minutes before: outside the 60 s window
    assert await pauses.on_event(Paused(timestamp_ms=1, wall_ms=T0 + 120_001)) is None
    already_named = Paused(timestamp_ms=2, wall_ms=T0 + 130_000, actor="host")
    assert await pauses.on_event(already_named) is None
    assert (pauses.pauses_seen, pauses.pauses_attributed) == (2, 0)
    await pauses.finish()
    # The old request was never confirmed by a pause: flagged, not assumed fine.
    assert set(await flags(catalog)) == {PAUSE_UNCONFIRMED}


@pytest.mark.parametrize(
    ("end", "ending"),
    [
        (Resumed(timestamp_ms=9, wall_ms=T0 + 12_000), "resumed"),
        (StreamEnded(T0 + 12_000, 6, "MEETING_ENDED", normal=True), "ended while paused"),
    ],
)
async def test_a_pause_over_the_limit_is_flagged(
    catalog: AsyncCatalog, end: Resumed | StreamEnded, ending: str
) -> None:
    now = [T0 + 20_000]
    pauses, _ = await evidence_for(catalog, now)
    await pauses.on_event(Paused(timestamp_ms=1, wall_ms=T0 + 1_000, actor="consumer"))
    await pauses.on_event(end)
    await pauses.finish()
    found = await catalog.lifecycle_events(limit=10)
    [flag] = found
    assert (flag.event, flag.kind, flag.failed, flag.instance_id) == (
        PAUSE_TOO_LONG,
        "pause",
        False,
        "eng-1",
    )
    assert flag.reason is not None
    assert "11.0 s" in flag.reason
    assert ending in flag.reason
    assert "consumer" in flag.reason
    await pauses.finish()  # idempotent: the flag is stored once
    assert len(await catalog.lifecycle_events(limit=10)) == 1


async def test_a_catalog_that_cannot_answer_leaves_the_pause_unattributed_and_flagged(
    catalog: AsyncCatalog,
) -> None:
    now = [T0 + 10_000]
    _, recording_id = await evidence_for(catalog, now)
    status = EngagementStatus(recording_id=recording_id)
    pauses = PauseEvidence(catalog, SPEC, status, SHORT, now_ms=lambda: now[0])
    await request_pause(catalog, T0 + 5_000)
    # Every catalog slot is taken (another engagement's long statement): the lookup gives up
    # after lookup_timeout_s instead of holding the capture.
    blocker = trio.Event()

    async def hold_slot(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with catalog._limiter:
            task_status.started()
            await blocker.wait()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(hold_slot)
            started = trio.current_time()
            replaced = await pauses.on_event(Paused(timestamp_ms=1, wall_ms=T0 + 6_000))
            waited = trio.current_time() - started
            blocker.set()
    assert replaced is None
    assert waited >= SHORT.lookup_timeout_s
    await pauses.finish()
    assert set(await flags(catalog)) == {PAUSE_UNCONFIRMED}
