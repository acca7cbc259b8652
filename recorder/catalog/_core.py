"""Every catalog query, written once for both engines.

Rule: this module holds all SQL that reads or writes catalog rows; the engine modules
(``sqlite.py``, ``postgres.py``) only open connections, run transactions and translate driver
errors. Queries use ``?`` placeholders and the portable subset both engines share
(``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE``, ``RETURNING``, ``CASE``, ``COALESCE``), so the
two engines cannot drift apart in behaviour.

Each public method is one transaction. Atomicity of the lease and dedup operations rests on a
single conditional statement, which is correct on PostgreSQL under READ COMMITTED (the upsert
re-checks its ``WHERE`` against the latest committed row) and on SQLite because writers take the
database lock up front (``BEGIN IMMEDIATE``).
"""

# ruff: noqa: S608
# S608 (SQL built from strings) is waived for this module only: every interpolated piece is a
# module constant or a fixed clause chosen in code, and every value is a bound parameter.
from __future__ import annotations

import abc
import dataclasses
import json
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, Protocol

from recorder.catalog.base import (
    LIVE_STREAM_STATES,
    AuditEvent,
    EvidenceKind,
    EvidenceRef,
    GapRow,
    HoldScope,
    JsonValue,
    Lease,
    LegalHoldRow,
    NewRecordFile,
    NewSegment,
    ParticipantInfo,
    ParticipantRow,
    PauseRow,
    Product,
    RecordFileRow,
    RecordingDetail,
    RecordingRow,
    RecordingStart,
    RecordingStatus,
    RenewResult,
    SegmentRow,
    StreamEvent,
    StreamRow,
    StreamState,
    UploadState,
)
from recorder.catalog.schema import MIGRATIONS, SCHEMA_VERSION_DDL, Engine, Migration
from recorder.errors import CatalogError, LeaseLost

Row = tuple[Any, ...]

#: Upper bound on ``search(limit=...)``: officers page, they do not dump the catalog.
MAX_SEARCH_LIMIT: Final = 10_000


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
    " lease_epoch, first_seen_ms, last_event_ts_ms"
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
_AUDIT_COLS: Final = "audit_id, at_ms, actor, action, target, reason, details"

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


def _require_text(operation: str, **values: str | None) -> None:
    missing = [name for name, value in values.items() if value is None or not value.strip()]
    if missing:
        raise CatalogError(f"{operation}: {', '.join(missing)} required")


def canonical_json(details: Mapping[str, JsonValue] | None) -> str:
    """Sorted keys, no spaces: the same details always store the same bytes."""
    return json.dumps(details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class SqlCatalog(abc.ABC):
    """The ``Catalog`` implementation shared by both engines."""

    engine: Engine

    @abc.abstractmethod
    def _transaction(self, operation: str, *, write: bool) -> AbstractContextManager[Tx]:
        """Open one transaction; driver errors leave it as ``CatalogError`` naming ``operation``."""

    def _lock_for_migration(self, tx: Tx) -> None:  # noqa: B027 - optional hook, no-op default
        """Serialise concurrent migrations across processes (engines override when needed).

        SQLite needs nothing more: ``BEGIN IMMEDIATE`` already excludes every other writer.
        """

    @abc.abstractmethod
    def close(self) -> None: ...

    # --- schema --------------------------------------------------------------------------

    def migrate(self, now_ms: int, migrations: Sequence[Migration] = MIGRATIONS) -> int:
        """Apply every migration newer than the database, all in one transaction.

        Either all pending migrations are applied or none is (both engines have transactional
        DDL). Returns the schema version afterwards. ``migrations`` is for tests of the
        mechanism; the recorder always uses ``schema.MIGRATIONS``.
        """
        latest = migrations[-1].version
        with self._transaction("migrate", write=True) as tx:
            self._lock_for_migration(tx)
            tx.execute(SCHEMA_VERSION_DDL)
            current = self._version(tx)
            if current > latest:
                raise CatalogError(
                    f"catalog schema is version {current}, newer than this recorder knows "
                    f"({latest}): upgrade the recorder before using this catalog"
                )
            for migration in migrations:
                if migration.version <= current:
                    continue
                for statement in migration.statements[self.engine]:
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO schema_version (version, description, applied_ms)"
                    " VALUES (?, ?, ?)",
                    (migration.version, migration.description, now_ms),
                )
            return max(current, latest)

    def schema_version(self) -> int:
        with self._transaction("schema_version", write=False) as tx:
            return self._version(tx)

    @staticmethod
    def _version(tx: Tx) -> int:
        row = tx.fetchone("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return 0 if row is None else int(row[0])

    # --- streams and leases ----------------------------------------------------------------

    def upsert_stream(self, event: StreamEvent, now_ms: int) -> StreamRow:
        # An older webhook arriving late (Zoom retries for up to ~85 minutes) must not move the
        # state backwards, so state and URLs only follow an event at least as new as the last.
        with self._transaction("upsert_stream", write=True) as tx:
            row = tx.fetchone(
                f"""INSERT INTO streams (rtms_stream_id, product, instance_id, state, server_urls,
                        first_seen_ms, last_event_ts_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (rtms_stream_id) DO UPDATE SET
                        product = COALESCE(streams.product, excluded.product),
                        instance_id = COALESCE(streams.instance_id, excluded.instance_id),
                        state = CASE WHEN excluded.last_event_ts_ms >= streams.last_event_ts_ms
                            THEN excluded.state ELSE streams.state END,
                        server_urls = CASE WHEN excluded.server_urls <> '[]'
                            AND excluded.last_event_ts_ms >= streams.last_event_ts_ms
                            THEN excluded.server_urls ELSE streams.server_urls END,
                        last_event_ts_ms = CASE
                            WHEN excluded.last_event_ts_ms > streams.last_event_ts_ms
                            THEN excluded.last_event_ts_ms ELSE streams.last_event_ts_ms END
                    RETURNING {_STREAM_COLS}""",
                (
                    event.rtms_stream_id,
                    event.product.value,
                    event.instance_id,
                    event.state.value,
                    json.dumps(list(event.server_urls)),
                    now_ms,
                    event.event_ts_ms,
                ),
            )
            assert row is not None
            return _stream(row)

    def get_stream(self, rtms_stream_id: str) -> StreamRow | None:
        with self._transaction("get_stream", write=False) as tx:
            row = tx.fetchone(
                f"SELECT {_STREAM_COLS} FROM streams WHERE rtms_stream_id = ?", (rtms_stream_id,)
            )
            return None if row is None else _stream(row)

    def try_claim(self, rtms_stream_id: str, owner: str, ttl_ms: int, now_ms: int) -> Lease | None:
        """Every successful claim starts a new epoch, even a re-claim by the same owner."""
        _require_text("try_claim", rtms_stream_id=rtms_stream_id, owner=owner)
        if ttl_ms <= 0:
            raise CatalogError(f"try_claim: ttl_ms must be positive, got {ttl_ms}")
        expires_ms = now_ms + ttl_ms
        with self._transaction("try_claim", write=True) as tx:
            row = tx.fetchone(
                """INSERT INTO streams (rtms_stream_id, lease_owner, lease_expires_ms, lease_epoch,
                        first_seen_ms)
                    VALUES (?, ?, ?, 1, ?)
                    ON CONFLICT (rtms_stream_id) DO UPDATE SET
                        lease_owner = excluded.lease_owner,
                        lease_expires_ms = excluded.lease_expires_ms,
                        lease_epoch = streams.lease_epoch + 1
                    WHERE streams.lease_owner IS NULL
                        OR streams.lease_expires_ms IS NULL
                        OR streams.lease_expires_ms <= ?
                        OR streams.lease_owner = excluded.lease_owner
                    RETURNING lease_epoch""",
                (rtms_stream_id, owner, expires_ms, now_ms, now_ms),
            )
        if row is None:
            return None
        return Lease(rtms_stream_id, owner, int(row[0]), ttl_ms, expires_ms)

    def renew(self, lease: Lease, now_ms: int) -> Lease:
        """Extend the lease from ``now_ms``.

        A lease that expired but that nobody claimed since is still renewed: the epoch proves no
        one else held the stream in between. The holder must still stop acting on the stream
        once ``expires_ms`` passes without a successful renew, because from then on another
        process may claim it.
        """
        expires_ms = now_ms + lease.ttl_ms
        with self._transaction("renew", write=True) as tx:
            changed = tx.execute(
                """UPDATE streams SET lease_expires_ms = ?
                    WHERE rtms_stream_id = ? AND lease_owner = ? AND lease_epoch = ?""",
                (expires_ms, lease.rtms_stream_id, lease.owner, lease.epoch),
            )
        if changed != 1:
            raise LeaseLost(
                f"stream {lease.rtms_stream_id}: lease epoch {lease.epoch} of {lease.owner} "
                "was taken over or released"
            )
        return Lease(lease.rtms_stream_id, lease.owner, lease.epoch, lease.ttl_ms, expires_ms)

    def renew_many(self, leases: Sequence[Lease], now_ms: int) -> RenewResult:
        """Renew many leases in one transaction (one fsync / round trip for a whole process).

        Same rule per lease as ``renew``; a lost lease does not stop the others from renewing.
        """
        renewed: list[Lease] = []
        lost: list[Lease] = []
        with self._transaction("renew_many", write=True) as tx:
            for lease in leases:
                expires_ms = now_ms + lease.ttl_ms
                changed = tx.execute(
                    """UPDATE streams SET lease_expires_ms = ?
                        WHERE rtms_stream_id = ? AND lease_owner = ? AND lease_epoch = ?""",
                    (expires_ms, lease.rtms_stream_id, lease.owner, lease.epoch),
                )
                if changed == 1:
                    renewed.append(dataclasses.replace(lease, expires_ms=expires_ms))
                else:
                    lost.append(lease)
        return RenewResult(tuple(renewed), tuple(lost))

    def release(self, lease: Lease) -> bool:
        with self._transaction("release", write=True) as tx:
            changed = tx.execute(
                """UPDATE streams SET lease_owner = NULL, lease_expires_ms = NULL
                    WHERE rtms_stream_id = ? AND lease_owner = ? AND lease_epoch = ?""",
                (lease.rtms_stream_id, lease.owner, lease.epoch),
            )
        return changed == 1

    def expired_streams_to_rejoin(self, now_ms: int) -> list[StreamRow]:
        with self._transaction("expired_streams_to_rejoin", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT {_STREAM_COLS} FROM streams
                    WHERE state IN ({_LIVE_STATES_SQL})
                        AND (lease_owner IS NULL OR lease_expires_ms IS NULL
                             OR lease_expires_ms <= ?)
                    ORDER BY first_seen_ms, rtms_stream_id""",
                (now_ms,),
            )
        return [_stream(row) for row in rows]

    def live_streams_owned_by(self, owner: str) -> list[StreamRow]:
        with self._transaction("live_streams_owned_by", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT {_STREAM_COLS} FROM streams
                    WHERE lease_owner = ? AND state IN ({_LIVE_STATES_SQL})
                    ORDER BY first_seen_ms, rtms_stream_id""",
                (owner,),
            )
        return [_stream(row) for row in rows]

    # --- webhook dedup ---------------------------------------------------------------------

    def first_seen(self, key: str, now_ms: int, ttl_ms: int) -> bool:
        """True exactly once per ``key`` within ``ttl_ms``, across every process."""
        _require_text("first_seen", key=key)
        with self._transaction("first_seen", write=True) as tx:
            # Webhooks are rare next to media, so purging on every call keeps the table small
            # without a separate sweeper; the expiry index makes it cheap.
            tx.execute("DELETE FROM webhook_dedup WHERE expires_ms <= ?", (now_ms,))
            row = tx.fetchone(
                """INSERT INTO webhook_dedup (dedup_key, first_seen_ms, expires_ms)
                    VALUES (?, ?, ?)
                    ON CONFLICT (dedup_key) DO NOTHING
                    RETURNING dedup_key""",
                (key, now_ms, now_ms + ttl_ms),
            )
        return row is not None

    def forget(self, key: str) -> None:
        """Undo ``first_seen`` for a delivery that could not be handed on, so a retry counts."""
        with self._transaction("forget", write=True) as tx:
            tx.execute("DELETE FROM webhook_dedup WHERE dedup_key = ?", (key,))

    # --- recordings ------------------------------------------------------------------------

    def upsert_recording(self, start: RecordingStart, now_ms: int) -> RecordingRow:
        with self._transaction("upsert_recording", write=True) as tx:
            tx.execute(
                """INSERT INTO streams (rtms_stream_id, product, instance_id, first_seen_ms,
                        last_event_ts_ms)
                    VALUES (?, ?, ?, ?, 0)
                    ON CONFLICT (rtms_stream_id) DO UPDATE SET
                        product = COALESCE(streams.product, excluded.product),
                        instance_id = COALESCE(streams.instance_id, excluded.instance_id)""",
                (start.rtms_stream_id, start.product.value, start.instance_id, now_ms),
            )
            row = tx.fetchone(
                f"""INSERT INTO recordings (recording_id, rtms_stream_id, product, instance_id,
                        operator_id, account_id, meeting_number, started_ms, status, created_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)
                    ON CONFLICT (rtms_stream_id) DO UPDATE SET
                        operator_id = COALESCE(recordings.operator_id, excluded.operator_id),
                        account_id = COALESCE(recordings.account_id, excluded.account_id),
                        meeting_number = COALESCE(recordings.meeting_number,
                            excluded.meeting_number),
                        started_ms = CASE WHEN excluded.started_ms < recordings.started_ms
                            THEN excluded.started_ms ELSE recordings.started_ms END
                    RETURNING {_RECORDING_COLS}""",
                (
                    f"rec_{uuid.uuid4().hex[:24]}",
                    start.rtms_stream_id,
                    start.product.value,
                    start.instance_id,
                    start.operator_id,
                    start.account_id,
                    start.meeting_number,
                    start.started_ms,
                    now_ms,
                ),
            )
            assert row is not None
            return _recording(row)

    def recording_for_stream(self, rtms_stream_id: str) -> RecordingRow | None:
        with self._transaction("recording_for_stream", write=False) as tx:
            row = tx.fetchone(
                f"SELECT {_RECORDING_COLS} FROM recordings WHERE rtms_stream_id = ?",
                (rtms_stream_id,),
            )
        return None if row is None else _recording(row)

    def add_participants(self, recording_id: str, participants: Sequence[ParticipantInfo]) -> None:
        with self._transaction("add_participants", write=True) as tx:
            for person in participants:
                tx.execute(
                    """INSERT INTO participants (recording_id, user_id, user_name, role,
                            first_seen_ms)
                        VALUES (?, ?, ?, ?, ?)
                        ON CONFLICT (recording_id, user_id) DO UPDATE SET
                            user_name = COALESCE(excluded.user_name, participants.user_name),
                            role = COALESCE(excluded.role, participants.role),
                            first_seen_ms = CASE WHEN participants.first_seen_ms IS NULL
                                OR excluded.first_seen_ms < participants.first_seen_ms
                                THEN excluded.first_seen_ms ELSE participants.first_seen_ms END""",
                    (
                        recording_id,
                        person.user_id,
                        person.user_name,
                        person.role,
                        person.first_seen_ms,
                    ),
                )

    def set_contact_center(
        self,
        recording_id: str,
        *,
        queue_id: str | None = None,
        queue_name: str | None = None,
        agent_id: str | None = None,
        agent_name: str | None = None,
    ) -> None:
        """Fill in what RTMS said; ``None`` keeps what is stored (transfers update it)."""
        with self._transaction("set_contact_center", write=True) as tx:
            changed = tx.execute(
                """UPDATE recordings SET
                        cc_queue_id = COALESCE(?, cc_queue_id),
                        cc_queue_name = COALESCE(?, cc_queue_name),
                        cc_agent_id = COALESCE(?, cc_agent_id),
                        cc_agent_name = COALESCE(?, cc_agent_name)
                    WHERE recording_id = ?""",
                (queue_id, queue_name, agent_id, agent_name, recording_id),
            )
            if changed != 1:
                raise CatalogError(f"set_contact_center: no recording {recording_id}")

    def end_recording(
        self, recording_id: str, *, ended_ms: int, reason: str, status: RecordingStatus
    ) -> RecordingRow:
        """The first end wins; ending again returns the recording unchanged."""
        if status is RecordingStatus.ACTIVE:
            raise CatalogError("end_recording: status must not be active")
        with self._transaction("end_recording", write=True) as tx:
            tx.execute(
                """UPDATE recordings SET ended_ms = ?, end_reason = ?, status = ?
                    WHERE recording_id = ? AND status = 'active'""",
                (ended_ms, reason, status.value, recording_id),
            )
            row = tx.fetchone(
                f"SELECT {_RECORDING_COLS} FROM recordings WHERE recording_id = ?",
                (recording_id,),
            )
            if row is None:
                raise CatalogError(f"end_recording: no recording {recording_id}")
            return _recording(row)

    # --- evidence --------------------------------------------------------------------------

    def add_segment(self, segment: NewSegment, now_ms: int) -> SegmentRow:
        """Idempotent on (recording, track, index); a different digest there is refused."""
        s = segment
        with self._transaction("add_segment", write=True) as tx:
            tx.execute(
                """INSERT INTO segments (recording_id, track, segment_index, participant_id,
                        object_key, plaintext_sha256, stored_sha256, plaintext_size, stored_size,
                        start_ms, end_ms, start_sample, sample_count, sample_rate, codec, key_id,
                        retain_until_ms, recovered, created_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (recording_id, track, segment_index) DO NOTHING""",
                (
                    s.recording_id, s.track, s.segment_index, s.participant_id, s.object_key,
                    s.plaintext_sha256, s.stored_sha256, s.plaintext_size, s.stored_size,
                    s.start_ms, s.end_ms, s.start_sample, s.sample_count, s.sample_rate, s.codec,
                    s.key_id, s.retain_until_ms, s.recovered, now_ms,
                ),
            )  # fmt: skip
            row = tx.fetchone(
                f"""SELECT {_SEGMENT_COLS} FROM segments
                    WHERE recording_id = ? AND track = ? AND segment_index = ?""",
                (s.recording_id, s.track, s.segment_index),
            )
            assert row is not None
            stored = _segment(row)
            if stored.plaintext_sha256 != s.plaintext_sha256:
                raise CatalogError(
                    f"add_segment: {s.recording_id}/{s.track}/{s.segment_index} is already "
                    "catalogued with a different digest"
                )
            return stored

    def add_record_file(self, record: NewRecordFile, now_ms: int) -> RecordFileRow:
        """Idempotent on (recording, kind, index); a different digest there is refused."""
        r = record
        with self._transaction("add_record_file", write=True) as tx:
            tx.execute(
                """INSERT INTO records (recording_id, kind, record_index, object_key,
                        plaintext_sha256, stored_sha256, plaintext_size, stored_size, start_ms,
                        end_ms, key_id, retain_until_ms, recovered, created_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (recording_id, kind, record_index) DO NOTHING""",
                (
                    r.recording_id, r.kind, r.record_index, r.object_key, r.plaintext_sha256,
                    r.stored_sha256, r.plaintext_size, r.stored_size, r.start_ms, r.end_ms,
                    r.key_id, r.retain_until_ms, r.recovered, now_ms,
                ),
            )  # fmt: skip
            row = tx.fetchone(
                f"""SELECT {_RECORD_COLS} FROM records
                    WHERE recording_id = ? AND kind = ? AND record_index = ?""",
                (r.recording_id, r.kind, r.record_index),
            )
            assert row is not None
            stored = _record_file(row)
            if stored.plaintext_sha256 != r.plaintext_sha256:
                raise CatalogError(
                    f"add_record_file: {r.recording_id}/{r.kind}/{r.record_index} is already "
                    "catalogued with a different digest"
                )
            return stored

    @staticmethod
    def _evidence_where(ref: EvidenceRef) -> tuple[str, str]:
        if ref.kind is EvidenceKind.SEGMENT:
            return "segments", "recording_id = ? AND track = ? AND segment_index = ?"
        return "records", "recording_id = ? AND kind = ? AND record_index = ?"

    def mark_uploaded(
        self,
        ref: EvidenceRef,
        *,
        object_key: str,
        version_id: str | None,
        stored_sha256: str,
        now_ms: int,
    ) -> None:
        """pending -> uploaded. A verified row is left exactly as it is."""
        table, where = self._evidence_where(ref)
        key = (ref.recording_id, ref.name, ref.index)
        with self._transaction("mark_uploaded", write=True) as tx:
            changed = tx.execute(
                f"""UPDATE {table} SET upload_state = 'uploaded', object_key = ?,
                        version_id = ?, stored_sha256 = ?, uploaded_ms = ?
                    WHERE {where} AND upload_state <> 'verified'""",
                (object_key, version_id, stored_sha256, now_ms, *key),
            )
            if changed == 0 and self._upload_state(tx, table, where, key) is None:
                raise CatalogError(f"mark_uploaded: no {ref.kind} {'/'.join(map(str, key))}")

    def mark_verified(self, ref: EvidenceRef, now_ms: int) -> None:
        """uploaded -> verified. Refused from pending: only a stored copy can be verified."""
        table, where = self._evidence_where(ref)
        key = (ref.recording_id, ref.name, ref.index)
        with self._transaction("mark_verified", write=True) as tx:
            changed = tx.execute(
                f"""UPDATE {table} SET upload_state = 'verified', verified_ms = ?
                    WHERE {where} AND upload_state = 'uploaded'""",
                (now_ms, *key),
            )
            if changed == 0:
                state = self._upload_state(tx, table, where, key)
                if state is None:
                    raise CatalogError(f"mark_verified: no {ref.kind} {'/'.join(map(str, key))}")
                if state is UploadState.PENDING:
                    raise CatalogError(
                        f"mark_verified: {ref.kind} {'/'.join(map(str, key))} was never uploaded"
                    )

    @staticmethod
    def _upload_state(
        tx: Tx, table: str, where: str, key: tuple[str, str, int]
    ) -> UploadState | None:
        row = tx.fetchone(f"SELECT upload_state FROM {table} WHERE {where}", key)
        return None if row is None else UploadState(row[0])

    def add_gap(
        self,
        recording_id: str,
        track: str,
        *,
        start_ms: int,
        end_ms: int,
        cause: str,
        start_sample: int | None = None,
        end_sample: int | None = None,
        detail: str = "",
    ) -> None:
        if end_ms < start_ms:
            raise CatalogError(f"add_gap: end_ms {end_ms} before start_ms {start_ms}")
        with self._transaction("add_gap", write=True) as tx:
            tx.execute(
                """INSERT INTO gaps (recording_id, track, start_ms, end_ms, start_sample,
                        end_sample, cause, detail)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (recording_id, track, start_ms, cause) DO NOTHING""",
                (recording_id, track, start_ms, end_ms, start_sample, end_sample, cause, detail),
            )

    def add_pause(
        self, recording_id: str, *, start_ms: int, end_ms: int | None, actor: str | None
    ) -> None:
        """Open a pause (``end_ms=None``) and close it later with the same ``start_ms``."""
        with self._transaction("add_pause", write=True) as tx:
            tx.execute(
                """INSERT INTO pauses (recording_id, start_ms, end_ms, actor)
                    VALUES (?, ?, ?, ?)
                    ON CONFLICT (recording_id, start_ms) DO UPDATE SET
                        end_ms = COALESCE(excluded.end_ms, pauses.end_ms),
                        actor = COALESCE(pauses.actor, excluded.actor)""",
                (recording_id, start_ms, end_ms, actor),
            )

    # --- holds and audit -------------------------------------------------------------------

    def place_hold(
        self,
        *,
        matter: str,
        scope: HoldScope,
        scope_value: str,
        placed_by: str,
        reason: str,
        now_ms: int,
    ) -> LegalHoldRow:
        """An instance-scope hold may precede its recordings; a recording-scope one may not."""
        _require_text(
            "place_hold", matter=matter, scope_value=scope_value, placed_by=placed_by, reason=reason
        )
        with self._transaction("place_hold", write=True) as tx:
            if scope is HoldScope.RECORDING and not tx.fetchone(
                "SELECT 1 FROM recordings WHERE recording_id = ?", (scope_value,)
            ):
                raise CatalogError(f"place_hold: no recording {scope_value}")
            row = tx.fetchone(
                f"""INSERT INTO legal_holds (matter, scope, scope_value, placed_by, reason,
                        placed_ms)
                    VALUES (?, ?, ?, ?, ?, ?)
                    RETURNING {_HOLD_COLS}""",
                (matter, scope.value, scope_value, placed_by, reason, now_ms),
            )
            assert row is not None
            hold = _hold(row)
            self._append_audit(
                tx,
                actor=placed_by,
                action="hold.place",
                target=scope_value,
                reason=reason,
                now_ms=now_ms,
                details={"hold_id": hold.hold_id, "matter": matter, "scope": scope.value},
            )
            return hold

    def release_hold(
        self, hold_id: int, *, released_by: str, reason: str, now_ms: int
    ) -> LegalHoldRow:
        _require_text("release_hold", released_by=released_by, reason=reason)
        with self._transaction("release_hold", write=True) as tx:
            row = tx.fetchone(
                f"""UPDATE legal_holds SET released_by = ?, released_reason = ?, released_ms = ?
                    WHERE hold_id = ? AND released_ms IS NULL
                    RETURNING {_HOLD_COLS}""",
                (released_by, reason, now_ms, hold_id),
            )
            if row is None:
                exists = tx.fetchone("SELECT 1 FROM legal_holds WHERE hold_id = ?", (hold_id,))
                state = "already released" if exists else "unknown"
                raise CatalogError(f"release_hold: hold {hold_id} is {state}")
            hold = _hold(row)
            self._append_audit(
                tx,
                actor=released_by,
                action="hold.release",
                target=hold.scope_value,
                reason=reason,
                now_ms=now_ms,
                details={"hold_id": hold.hold_id, "matter": hold.matter, "scope": hold.scope.value},
            )
            return hold

    def is_on_hold(self, recording_id: str) -> bool:
        """Fails closed: an unknown recording is an error, never "not on hold"."""
        with self._transaction("is_on_hold", write=False) as tx:
            recording = tx.fetchone(
                "SELECT instance_id FROM recordings WHERE recording_id = ?", (recording_id,)
            )
            if recording is None:
                raise CatalogError(f"is_on_hold: no recording {recording_id}")
            row = tx.fetchone(
                """SELECT 1 FROM legal_holds WHERE released_ms IS NULL AND (
                        (scope = 'recording' AND scope_value = ?)
                        OR (scope = 'instance' AND scope_value = ?))""",
                (recording_id, recording[0]),
            )
        return row is not None

    def holds(self, *, active_only: bool = True) -> list[LegalHoldRow]:
        condition = "WHERE released_ms IS NULL" if active_only else ""
        with self._transaction("holds", write=False) as tx:
            rows = tx.fetchall(f"SELECT {_HOLD_COLS} FROM legal_holds {condition} ORDER BY hold_id")
        return [_hold(row) for row in rows]

    def append_audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        reason: str,
        now_ms: int,
        details: Mapping[str, JsonValue] | None = None,
    ) -> AuditEvent:
        with self._transaction("append_audit", write=True) as tx:
            return self._append_audit(
                tx,
                actor=actor,
                action=action,
                target=target,
                reason=reason,
                now_ms=now_ms,
                details=details,
            )

    @staticmethod
    def _append_audit(
        tx: Tx,
        *,
        actor: str,
        action: str,
        target: str,
        reason: str,
        now_ms: int,
        details: Mapping[str, JsonValue] | None,
    ) -> AuditEvent:
        _require_text("append_audit", actor=actor, action=action, target=target)
        row = tx.fetchone(
            f"""INSERT INTO audit_log (at_ms, actor, action, target, reason, details)
                VALUES (?, ?, ?, ?, ?, ?)
                RETURNING {_AUDIT_COLS}""",
            (now_ms, actor, action, target, reason, canonical_json(details)),
        )
        assert row is not None
        return _audit(row)

    def audit_trail(self, target: str) -> list[AuditEvent]:
        with self._transaction("audit_trail", write=False) as tx:
            rows = tx.fetchall(
                f"SELECT {_AUDIT_COLS} FROM audit_log WHERE target = ? ORDER BY audit_id",
                (target,),
            )
        return [_audit(row) for row in rows]

    # --- officers --------------------------------------------------------------------------

    def search(
        self,
        *,
        product: Product | None = None,
        instance_id: str | None = None,
        stream_id: str | None = None,
        participant: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[RecordingRow]:
        """Recordings matching every given filter, newest first.

        ``participant`` matches a participant's user id or display name, the Contact Center
        agent's id or name, or the operator id. ``since_ms``/``until_ms`` select recordings that
        overlap the window (an unfinished recording extends to now).
        """
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise CatalogError(f"search: limit must be 1..{MAX_SEARCH_LIMIT}, got {limit}")
        clauses: list[str] = []
        params: list[object] = []
        if product is not None:
            clauses.append("r.product = ?")
            params.append(product.value)
        if instance_id is not None:
            clauses.append("r.instance_id = ?")
            params.append(instance_id)
        if stream_id is not None:
            clauses.append("r.rtms_stream_id = ?")
            params.append(stream_id)
        if participant is not None:
            clauses.append(
                """(EXISTS (SELECT 1 FROM participants p WHERE p.recording_id = r.recording_id
                        AND (p.user_id = ? OR p.user_name = ?))
                    OR r.cc_agent_id = ? OR r.cc_agent_name = ? OR r.operator_id = ?)"""
            )
            params.extend([participant] * 5)
        if since_ms is not None:
            clauses.append("(r.ended_ms IS NULL OR r.ended_ms >= ?)")
            params.append(since_ms)
        if until_ms is not None:
            clauses.append("r.started_ms < ?")
            params.append(until_ms)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(limit)
        with self._transaction("search", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT {_RECORDING_COLS_AS_R} FROM recordings r {where}
                    ORDER BY r.started_ms DESC, r.recording_id
                    LIMIT ?""",
                params,
            )
        return [_recording(row) for row in rows]

    def show(self, recording_id: str) -> RecordingDetail | None:
        with self._transaction("show", write=False) as tx:
            row = tx.fetchone(
                f"SELECT {_RECORDING_COLS} FROM recordings WHERE recording_id = ?",
                (recording_id,),
            )
            if row is None:
                return None
            recording = _recording(row)
            key = (recording_id,)
            participants = tx.fetchall(
                f"SELECT {_PARTICIPANT_COLS} FROM participants WHERE recording_id = ?"
                " ORDER BY user_id",
                key,
            )
            segments = tx.fetchall(
                f"SELECT {_SEGMENT_COLS} FROM segments WHERE recording_id = ?"
                " ORDER BY track, segment_index",
                key,
            )
            gaps = tx.fetchall(
                f"SELECT {_GAP_COLS} FROM gaps WHERE recording_id = ? ORDER BY start_ms, track",
                key,
            )
            pauses = tx.fetchall(
                f"SELECT {_PAUSE_COLS} FROM pauses WHERE recording_id = ? ORDER BY start_ms", key
            )
            records = tx.fetchall(
                f"SELECT {_RECORD_COLS} FROM records WHERE recording_id = ?"
                " ORDER BY kind, record_index",
                key,
            )
            holds = tx.fetchall(
                f"""SELECT {_HOLD_COLS} FROM legal_holds
                    WHERE (scope = 'recording' AND scope_value = ?)
                        OR (scope = 'instance' AND scope_value = ?)
                    ORDER BY hold_id""",
                (recording_id, recording.instance_id),
            )
        return RecordingDetail(
            recording=recording,
            participants=tuple(ParticipantRow(*p) for p in participants),
            segments=tuple(_segment(s) for s in segments),
            gaps=tuple(GapRow(*g) for g in gaps),
            pauses=tuple(PauseRow(*p) for p in pauses),
            records=tuple(_record_file(r) for r in records),
            holds=tuple(_hold(h) for h in holds),
        )
