"""Signed announcing webhooks and catalog rows for the completeness tests."""

from __future__ import annotations

import json
from typing import Any

from recorder.catalog import AsyncCatalog, RecordingStart, StreamEvent, StreamState
from recorder.catalog.base import RecordingStatus
from recorder.products import Product

NOW_S = 1_626_230_691
NOW_MS = NOW_S * 1000
SECRET_TOKEN = "test_secret_token"


def body(event: str, obj: dict[str, Any], *, account_id: str | None = "acct-1") -> bytes:
    payload: dict[str, Any] = {"object": obj}
    if account_id is not None:
        payload["account_id"] = account_id
    return json.dumps(
        {"event": event, "event_ts": NOW_MS, "payload": payload}, separators=(",", ":")
    ).encode()


def meeting_started(uuid: str = "m-uuid-1==", number: str = "85012345678", **extra: Any) -> bytes:
    account = extra.pop("account_id", "acct-1")
    obj = {"uuid": uuid, "id": number, "host_id": "host-1", "topic": "Q3 desk", **extra}
    return body("meeting.started", obj, account_id=account)


async def add_recording(
    catalog: AsyncCatalog,
    product: Product,
    instance_id: str,
    stream: str,
    *,
    started_ms: int,
    ended_ms: int | None = None,
    meeting_number: str | None = None,
) -> str:
    await catalog.upsert_stream(
        StreamEvent(stream, product, instance_id, StreamState.STARTED, started_ms, ("wss://x",)),
        started_ms,
    )
    row = await catalog.upsert_recording(
        RecordingStart(stream, product, instance_id, started_ms, meeting_number=meeting_number),
        started_ms,
    )
    if ended_ms is not None:
        await catalog.end_recording(
            row.recording_id, ended_ms=ended_ms, reason="stopped", status=RecordingStatus.COMPLETE
        )
    return row.recording_id
