"""Lifecycle evidence in the catalog, on both engines: stored whole and once, matched to the
recording, stream or instance it names when read, orphans kept."""

from __future__ import annotations

import json

import pytest

from recorder.catalog import (
    AsyncCatalog,
    Product,
    RecordingRow,
    RecordingStart,
    StreamEvent,
    StreamState,
)
from recorder.catalog.base import NewLifecycleEvent
from recorder.errors import CatalogError
from tests.catalog.support import T0, CatalogTarget


async def _recording(
    catalog: AsyncCatalog, stream_id: str, instance_id: str, *, started_ms: int = T0
) -> RecordingRow:
    await catalog.upsert_stream(
        StreamEvent(
            stream_id, Product.PHONE, instance_id, StreamState.STARTED, started_ms, ("wss://a",)
        ),
        now_ms=started_ms,
    )
    return await catalog.upsert_recording(
        RecordingStart(stream_id, Product.PHONE, instance_id, started_ms), now_ms=started_ms
    )


def _event(
    key: str,
    *,
    stream_id: str | None = None,
    instance_id: str | None = None,
    event: str = "rtms.start_failed",
    failed: bool = True,
    reason: str | None = "no media server",
    received_ms: int = T0 + 1_000,
) -> NewLifecycleEvent:
    ids = {k: v for k, v in (("rtms_stream_id", stream_id), ("call_id", instance_id)) if v}
    body = json.dumps({"event": event, "event_ts": received_ms, "payload": {**ids, "x": [1]}})
    return NewLifecycleEvent(
        dedup_key=key,
        event=event,
        kind="start_failed" if "start_failed" in event else "concurrency",
        failed=failed,
        product=Product.PHONE if instance_id else None,
        event_ts_ms=received_ms,
        received_ms=received_ms,
        rtms_stream_id=stream_id,
        instance_id=instance_id,
        ids=ids,
        reason=reason,
        body=body,
    )


async def test_an_event_is_stored_whole_and_once(catalog: AsyncCatalog) -> None:
    new = _event("k1", stream_id="s-unknown", reason="line one\nline two ü")
    row, created = await catalog.add_lifecycle_event(new)
    assert created
    assert row.body == new.body
    assert json.loads(row.ids_json) == {"rtms_stream_id": "s-unknown"}
    assert (row.event, row.kind, row.failed, row.reason) == (
        "rtms.start_failed",
        "start_failed",
        True,
        "line one\nline two ü",
    )
    again, created = await catalog.add_lifecycle_event(new)
    assert not created
    assert again == row
    assert len(await catalog.lifecycle_events()) == 1


async def test_events_belong_to_the_recording_they_name(catalog: AsyncCatalog) -> None:
    known = await _recording(catalog, "stream-a", "call-a")
    older = await _recording(catalog, "stream-b1", "call-b", started_ms=T0)
    newer = await _recording(catalog, "stream-b2", "call-b", started_ms=T0 + 60_000)
    await catalog.upsert_stream(
        StreamEvent("stream-c", Product.PHONE, "call-c", StreamState.STARTED, T0, ()), now_ms=T0
    )
    await catalog.add_lifecycle_event(_event("by-stream", stream_id="stream-a"))
    await catalog.add_lifecycle_event(_event("by-instance", instance_id="call-b"))
    await catalog.add_lifecycle_event(_event("stream-no-recording", stream_id="stream-c"))
    await catalog.add_lifecycle_event(_event("orphan", stream_id="nobody", instance_id="none"))
    await catalog.add_lifecycle_event(
        _event("warning", event="rtms.concurrency_near_limit", failed=False, reason=None)
    )

    rows = {row.body: row for row in await catalog.lifecycle_events()}
    assert len(rows) == 5
    by_key = {
        json.loads(r.body)["payload"].get("rtms_stream_id", r.event): r for r in rows.values()
    }
    assert by_key["stream-a"].recording_id == known.recording_id
    assert by_key["stream-c"].recording_id is None
    assert by_key["stream-c"].stream_known
    assert by_key["nobody"].orphan
    instance_only = next(r for r in rows.values() if r.instance_id == "call-b")
    assert instance_only.recording_id == newer.recording_id

    failed = await catalog.lifecycle_events(failed_only=True)
    assert len(failed) == 4
    assert all(row.failed for row in failed)

    detail = await catalog.show(known.recording_id)
    assert detail is not None
    assert [e.rtms_stream_id for e in detail.lifecycle_events] == ["stream-a"]
    newer_detail = await catalog.show(newer.recording_id)
    assert newer_detail is not None
    assert [e.instance_id for e in newer_detail.lifecycle_events] == ["call-b"]
    older_detail = await catalog.show(older.recording_id)
    assert older_detail is not None
    assert older_detail.lifecycle_events == ()


async def test_a_start_failed_before_its_recording_attaches_once_the_recording_exists(
    catalog: AsyncCatalog,
) -> None:
    await catalog.add_lifecycle_event(_event("early", stream_id="stream-late"))
    [row] = await catalog.lifecycle_events()
    assert row.orphan
    recording = await _recording(catalog, "stream-late", "call-late")
    [row] = await catalog.lifecycle_events()
    assert row.recording_id == recording.recording_id


async def test_listing_is_newest_first_bounded_and_windowed(catalog: AsyncCatalog) -> None:
    for i in range(5):
        await catalog.add_lifecycle_event(_event(f"k{i}", received_ms=T0 + i * 1_000))
    rows = await catalog.lifecycle_events(limit=3)
    assert [r.received_ms for r in rows] == [T0 + 4_000, T0 + 3_000, T0 + 2_000]
    window = await catalog.lifecycle_events(since_ms=T0 + 1_000, until_ms=T0 + 3_000)
    assert [r.received_ms for r in window] == [T0 + 2_000, T0 + 1_000]
    with pytest.raises(CatalogError, match="limit"):
        await catalog.lifecycle_events(limit=0)
    with pytest.raises(CatalogError, match="dedup_key"):
        await catalog.add_lifecycle_event(_event(""))


async def test_the_lifecycle_table_exists_on_both_engines(target: CatalogTarget) -> None:
    catalog = target.open()
    try:
        with target.raw() as conn:
            cursor = conn.execute("SELECT COUNT(*) FROM lifecycle_events")
            assert cursor.fetchone()[0] == 0
    finally:
        catalog.close()
