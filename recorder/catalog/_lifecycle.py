"""Lifecycle evidence: ``rtms.start_failed`` and the concurrency events, kept whole.

Rule 1: the body is stored exactly as it was signed, once per delivery (``dedup_key`` is unique,
so Zoom's retries add nothing), and never changed afterwards.

Rule 2: which recording an event belongs to is decided when it is read, not when it is stored:
a ``start_failed`` may arrive before, after or instead of the stream it names. An event belongs
to the recording of its ``rtms_stream_id``, else to the newest recording of its instance id
(meeting, webinar, session, engagement or call). One that matches no stream, no instance and no
recording is an orphan: a recording that was expected and never reached this recorder.
"""

# ruff: noqa: S608
# S608 (SQL built from strings) is waived for this module only: every interpolated piece is a
# module constant, and every value is a bound parameter.
from __future__ import annotations

from typing import Any, Final

from recorder.catalog._rows import Row, TransactionSource, Tx, canonical_json
from recorder.catalog.base import LifecycleEventRow, NewLifecycleEvent, Product
from recorder.errors import CatalogError

#: Upper bound on ``lifecycle_events(limit=...)``, as for ``search``.
MAX_LIFECYCLE_LIMIT: Final = 10_000

_STORED_COLS: Final = (
    "e.event_id, e.event, e.kind, e.failed, e.product, e.event_ts_ms, e.received_ms,"
    " e.rtms_stream_id, e.instance_id, e.ids, e.reason, e.body"
)
#: The recording an event belongs to (module rule 2), evaluated per row of ``e``.
_RECORDING_OF_EVENT: Final = """COALESCE(
        (SELECT r.recording_id FROM recordings r WHERE r.rtms_stream_id = e.rtms_stream_id),
        (SELECT r.recording_id FROM recordings r WHERE r.instance_id = e.instance_id
            ORDER BY r.started_ms DESC, r.recording_id LIMIT 1))"""
_STREAM_KNOWN: Final = """EXISTS (SELECT 1 FROM streams s
        WHERE s.rtms_stream_id = e.rtms_stream_id OR s.instance_id = e.instance_id)"""
_SELECT: Final = (
    f"SELECT {_STORED_COLS}, {_RECORDING_OF_EVENT} AS recording_id, {_STREAM_KNOWN} AS known"
    " FROM lifecycle_events e"
)


def _lifecycle(row: Row) -> LifecycleEventRow:
    values: list[Any] = list(row)
    values[3] = bool(values[3])
    values[4] = None if values[4] is None else Product(values[4])
    values[13] = bool(values[13])
    return LifecycleEventRow(*values)


def lifecycle_events_of_recording(tx: Tx, recording_id: str) -> list[LifecycleEventRow]:
    """The lifecycle events that belong to ``recording_id`` (inside ``show``'s transaction)."""
    rows = tx.fetchall(
        f"""SELECT * FROM ({_SELECT}
                WHERE e.rtms_stream_id IN (SELECT rtms_stream_id FROM recordings
                        WHERE recording_id = ?)
                    OR e.instance_id IN (SELECT instance_id FROM recordings
                        WHERE recording_id = ?)) matched
            WHERE matched.recording_id = ?
            ORDER BY matched.received_ms, matched.event_id""",
        (recording_id, recording_id, recording_id),
    )
    return [_lifecycle(row) for row in rows]


class LifecycleQueries(TransactionSource):
    """Store and list lifecycle events."""

    def add_lifecycle_event(self, event: NewLifecycleEvent) -> tuple[LifecycleEventRow, bool]:
        if not event.dedup_key or not event.event:
            raise CatalogError("add_lifecycle_event: dedup_key and event required")
        with self._transaction("add_lifecycle_event", write=True) as tx:
            inserted = tx.fetchone(
                """INSERT INTO lifecycle_events (dedup_key, event, kind, failed, product,
                        event_ts_ms, received_ms, rtms_stream_id, instance_id, ids, reason, body)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (dedup_key) DO NOTHING
                    RETURNING event_id""",
                (
                    event.dedup_key,
                    event.event,
                    event.kind,
                    event.failed,
                    None if event.product is None else event.product.value,
                    event.event_ts_ms,
                    event.received_ms,
                    event.rtms_stream_id,
                    event.instance_id,
                    canonical_json(dict(event.ids)),
                    event.reason,
                    event.body,
                ),
            )
            row = tx.fetchone(f"{_SELECT} WHERE e.dedup_key = ?", (event.dedup_key,))
        if row is None:
            raise CatalogError("add_lifecycle_event: the stored event could not be read back")
        return _lifecycle(row), inserted is not None

    def lifecycle_events(
        self,
        *,
        failed_only: bool = False,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[LifecycleEventRow]:
        if not 1 <= limit <= MAX_LIFECYCLE_LIMIT:
            raise CatalogError(
                f"lifecycle_events: limit must be 1..{MAX_LIFECYCLE_LIMIT}, got {limit}"
            )
        clauses: list[str] = []
        params: list[object] = []
        if failed_only:
            clauses.append("e.failed = ?")
            params.append(True)
        if since_ms is not None:
            clauses.append("e.received_ms >= ?")
            params.append(since_ms)
        if until_ms is not None:
            clauses.append("e.received_ms < ?")
            params.append(until_ms)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(limit)
        with self._transaction("lifecycle_events", write=False) as tx:
            rows = tx.fetchall(
                f"{_SELECT} {where} ORDER BY e.received_ms DESC, e.event_id DESC LIMIT ?", params
            )
        return [_lifecycle(row) for row in rows]
