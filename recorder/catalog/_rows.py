"""Shared by the query modules: the transaction seam, column lists and row builders.

Rule: a column list and the function that turns its rows into a dataclass live side by side,
so a ``SELECT`` and its builder cannot disagree about column order.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, Protocol

from recorder.catalog.base import (
    LIVE_STREAM_STATES,
    AuditEvent,
    HoldScope,
    JsonValue,
    Lease,
    LegalHoldRow,
    Product,
    RecordFileRow,
    RecordingRow,
    RecordingStatus,
    SegmentRow,
    StreamRow,
    StreamState,
    UploadState,
)
from recorder.errors import CatalogError, LeaseLost

Row = tuple[Any, ...]


class Tx(Protocol):
    """One open transaction. ``?`` placeholders; the engine adapts them."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        ...

    def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None: ...

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...


# --- column lists and row builders -----------------------------------------------------------

_STREAM_COLS: Final = (
    "rtms_stream_id, product, instance_id, state, server_urls, lease_owner, lease_expires_ms,"
    " lease_epoch, first_seen_ms, last_event_ts_ms, server_urls_ts_ms, lease_checkpoint_ms"
)
_RECORDING_COLS: Final = (
    "recording_id, rtms_stream_id, product, instance_id, operator_id, account_id,"
    " meeting_number, cc_queue_id, cc_queue_name, cc_agent_id, cc_agent_name, started_ms,"
    " ended_ms, end_reason, status"
)
_RECORDING_COLS_AS_R: Final = ", ".join(f"r.{c.strip()}" for c in _RECORDING_COLS.split(","))
_PARTICIPANT_COLS: Final = "recording_id, user_id, user_name, role, first_seen_ms"
_SEGMENT_COLS: Final = (
    "recording_id, track, segment_index, participant_id, object_key, version_id,"
    " plaintext_sha256, stored_sha256, plaintext_size, stored_size, start_ms, end_ms,"
    " start_sample, sample_count, sample_rate, codec, key_id, retain_until_ms, upload_state,"
    " recovered, uploaded_ms, verified_ms"
)
_RECORD_COLS: Final = (
    "recording_id, kind, record_index, object_key, version_id, plaintext_sha256,"
    " stored_sha256, plaintext_size, stored_size, start_ms, end_ms, key_id, retain_until_ms,"
    " upload_state, recovered, uploaded_ms, verified_ms"
)
_GAP_COLS: Final = "recording_id, track, start_ms, end_ms, start_sample, end_sample, cause, detail"
_PAUSE_COLS: Final = "recording_id, start_ms, end_ms, actor"
_HOLD_COLS: Final = (
    "hold_id, matter, scope, scope_value, placed_by, reason, placed_ms, released_by,"
    " released_reason, released_ms"
)
_AUDIT_COLS: Final = "audit_id, at_ms, actor, action, target, reason, details, row_hash"

_LIVE_STATES_SQL: Final = ", ".join(f"'{state.value}'" for state in LIVE_STREAM_STATES)


def _stream(row: Row) -> StreamRow:
    return StreamRow(
        rtms_stream_id=row[0],
        product=None if row[1] is None else Product(row[1]),
        instance_id=row[2],
        state=StreamState(row[3]),
        server_urls=tuple(json.loads(row[4])),
        lease_owner=row[5],
        lease_expires_ms=row[6],
        lease_epoch=int(row[7]),
        first_seen_ms=int(row[8]),
        last_event_ts_ms=int(row[9]),
        server_urls_ts_ms=int(row[10]),
        lease_checkpoint_ms=None if row[11] is None else int(row[11]),
    )


def _recording(row: Row) -> RecordingRow:
    values: list[Any] = list(row)
    values[2] = Product(values[2])
    values[14] = RecordingStatus(values[14])
    return RecordingRow(*values)


def _segment(row: Row) -> SegmentRow:
    values: list[Any] = list(row)
    values[18] = UploadState(values[18])
    values[19] = bool(values[19])
    return SegmentRow(*values)


def _record_file(row: Row) -> RecordFileRow:
    values: list[Any] = list(row)
    values[13] = UploadState(values[13])
    values[14] = bool(values[14])
    return RecordFileRow(*values)


def _hold(row: Row) -> LegalHoldRow:
    return LegalHoldRow(int(row[0]), row[1], HoldScope(row[2]), *row[3:])


def _audit(row: Row) -> AuditEvent:
    return AuditEvent(int(row[0]), *row[1:])


#: The ``prev_hash`` of the first event in the chain.
AUDIT_GENESIS_HASH: Final = "0" * 64


def audit_chain_hash(
    prev_hash: str, at_ms: int, actor: str, action: str, target: str, reason: str, details: str
) -> str:
    """SHA-256 hex over the previous hash and the event's fields as canonical JSON.

    Anyone can recompute it from the table alone: ``sha256(prev_hash + "\n" +
    json([at_ms, actor, action, target, reason, details]))`` with sorted keys, no spaces and
    UTF-8 output; ``details`` is the stored JSON text, verbatim.
    """
    body = json.dumps(
        [at_ms, actor, action, target, reason, details], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def _require_text(operation: str, **values: str | None) -> None:
    missing = [name for name, value in values.items() if value is None or not value.strip()]
    if missing:
        raise CatalogError(f"{operation}: {', '.join(missing)} required")


def canonical_json(details: Mapping[str, JsonValue] | None) -> str:
    """Sorted keys, no spaces: the same details always store the same bytes."""
    return json.dumps(details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class TransactionSource(abc.ABC):
    """What every query mixin needs from an engine: one transaction at a time."""

    def _lock_audit_chain(self, tx: Tx) -> None:  # noqa: B027 - optional hook, no-op default
        """Serialise audit appends so each links to the true last event.

        SQLite writers are already serialised by ``BEGIN IMMEDIATE``; PostgreSQL overrides this.
        """

    #: Appended to the fencing ``SELECT`` so that a concurrent takeover waits for our commit.
    #: PostgreSQL needs ``FOR SHARE``; SQLite writers already hold the database lock.
    _fence_lock_sql: str = ""

    def _check_fence(self, tx: Tx, operation: str, fence: Lease | None) -> None:
        """Refuse the write unless ``fence`` is still the stream's current lease.

        Same rule as ``renew``: an expired lease that nobody has claimed since still counts,
        because its epoch proves no one else held the stream in between.
        """
        if fence is None:
            return
        # The suffix is one of two fixed strings chosen by the engine class, never input.
        sql = (
            "SELECT 1 FROM streams WHERE rtms_stream_id = ? AND lease_owner = ? AND lease_epoch = ?"
        )
        row = tx.fetchone(
            sql + self._fence_lock_sql, (fence.rtms_stream_id, fence.owner, fence.epoch)
        )
        if row is None:
            raise LeaseLost(
                f"{operation}: stream {fence.rtms_stream_id} lease epoch {fence.epoch} of "
                f"{fence.owner} is no longer current"
            )

    @abc.abstractmethod
    def _transaction(self, operation: str, *, write: bool) -> AbstractContextManager[Tx]:
        """Open one transaction; driver errors leave it as ``CatalogError`` naming ``operation``."""
