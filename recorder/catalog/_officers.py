"""What compliance officers use: legal holds, the audit log, search and show.

Rule: every hold change is audited in the same transaction (invariant 9), and a hold always
wins (invariant 8): ``is_on_hold`` fails closed on an unknown recording.
"""

# ruff: noqa: S608
# S608 (SQL built from strings) is waived for this module only: every interpolated piece is a
# module constant or a fixed clause chosen in code, and every value is a bound parameter.
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Final

from recorder.catalog._lifecycle import lifecycle_events_of_recording
from recorder.catalog._rows import (
    _AUDIT_COLS,
    _GAP_COLS,
    _HOLD_COLS,
    _PARTICIPANT_COLS,
    _PAUSE_COLS,
    _RECORD_COLS,
    _RECORDING_COLS,
    _RECORDING_COLS_AS_R,
    _SEGMENT_COLS,
    AUDIT_GENESIS_HASH,
    Row,
    TransactionSource,
    Tx,
    _audit,
    _hold,
    _record_file,
    _recording,
    _require_text,
    _segment,
    audit_chain_hash,
    canonical_json,
)
from recorder.catalog.base import (
    AuditChainCheck,
    AuditEvent,
    GapRow,
    HoldScope,
    JsonValue,
    LegalHoldRow,
    ParticipantRow,
    PauseRow,
    Product,
    RecordingDetail,
    RecordingRow,
)
from recorder.errors import CatalogError

#: Events read per query while verifying the chain: bounded memory on a years-long log.
AUDIT_VERIFY_BATCH: Final = 1_000
#: Upper bound on ``search(limit=...)``: officers page, they do not dump the catalog.
MAX_SEARCH_LIMIT: Final = 10_000


class OfficerQueries(TransactionSource):
    """Holds, audit events, search and the full view of one recording."""

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

    def is_instance_on_hold(self, instance_id: str) -> bool:
        """True if a hold covers the instance or any one of its recordings.

        For whatever spans a whole meeting / engagement, such as its encryption key.
        """
        with self._transaction("is_instance_on_hold", write=False) as tx:
            row = tx.fetchone(
                """SELECT 1 FROM legal_holds WHERE released_ms IS NULL AND (
                        (scope = 'instance' AND scope_value = ?)
                        OR (scope = 'recording' AND scope_value IN (
                            SELECT recording_id FROM recordings WHERE instance_id = ?)))""",
                (instance_id, instance_id),
            )
        return row is not None

    def is_key_on_hold(self, key_id: str) -> bool:
        """True if any held segment or record file was sealed under ``key_id``.

        Key destruction (crypto-shredding) asks this first: destroying a key that held evidence
        depends on would be a deletion in disguise (invariant 8).
        """
        with self._transaction("is_key_on_hold", write=False) as tx:
            row = tx.fetchone(
                """WITH keyed AS (
                        SELECT recording_id FROM segments WHERE key_id = ?
                        UNION SELECT recording_id FROM records WHERE key_id = ?)
                    SELECT 1 FROM legal_holds WHERE released_ms IS NULL AND (
                        (scope = 'recording' AND scope_value IN (SELECT recording_id FROM keyed))
                        OR (scope = 'instance' AND scope_value IN (
                            SELECT r.instance_id FROM recordings r
                            WHERE r.recording_id IN (SELECT recording_id FROM keyed))))""",
                (key_id, key_id),
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

    def _append_audit(
        self,
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
        self._lock_audit_chain(tx)
        last = tx.fetchone("SELECT row_hash FROM audit_log ORDER BY audit_id DESC LIMIT 1")
        prev_hash = AUDIT_GENESIS_HASH if last is None else str(last[0])
        details_json = canonical_json(details)
        row_hash = audit_chain_hash(prev_hash, now_ms, actor, action, target, reason, details_json)
        row = tx.fetchone(
            f"""INSERT INTO audit_log (at_ms, actor, action, target, reason, details, prev_hash,
                    row_hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                RETURNING {_AUDIT_COLS}""",
            (now_ms, actor, action, target, reason, details_json, prev_hash, row_hash),
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

    def verify_audit_chain(self) -> AuditChainCheck:
        """Walk the whole log in order; report the first event that does not chain.

        The triggers stop application code; the chain catches whoever disabled them: an edited
        event fails its own hash, a deleted one breaks the next link, a forged one inserted
        without the chain fails either way.
        """
        checked = 0
        prev_hash = AUDIT_GENESIS_HASH
        after_id = 0
        with self._transaction("verify_audit_chain", write=False) as tx:
            while True:
                rows = tx.fetchall(
                    """SELECT audit_id, at_ms, actor, action, target, reason, details, prev_hash,
                            row_hash
                        FROM audit_log WHERE audit_id > ? ORDER BY audit_id LIMIT ?""",
                    (after_id, AUDIT_VERIFY_BATCH),
                )
                for audit_id, at_ms, actor, action, target, reason, details, prev, stored in rows:
                    expected = audit_chain_hash(
                        prev_hash, int(at_ms), actor, action, target, reason, details
                    )
                    if prev != prev_hash or stored != expected:
                        return AuditChainCheck(checked, int(audit_id))
                    prev_hash = expected
                    checked += 1
                    after_id = int(audit_id)
                if len(rows) < AUDIT_VERIFY_BATCH:
                    return AuditChainCheck(checked, None)

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
        agent's id or name, or the operator id (names ignore ASCII case; ids are exact).
        ``since_ms``/``until_ms`` select recordings that overlap the window (an unfinished
        recording extends to now).
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
                        AND (p.user_id = ? OR LOWER(p.user_name) = LOWER(?)))
                    OR r.cc_agent_id = ? OR LOWER(r.cc_agent_name) = LOWER(?)
                    OR r.operator_id = ?)"""
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
            coverage = tx.fetchall(
                """SELECT track, gap_start_ms, cause, covered_start_ms, covered_end_ms,
                        segment_index
                    FROM gap_coverage WHERE recording_id = ?""",
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
            lifecycle = lifecycle_events_of_recording(tx, recording_id)
        return RecordingDetail(
            recording=recording,
            participants=tuple(ParticipantRow(*p) for p in participants),
            segments=tuple(_segment(s) for s in segments),
            gaps=_amended_gaps([GapRow(*g) for g in gaps], coverage),
            pauses=tuple(PauseRow(*p) for p in pauses),
            records=tuple(_record_file(r) for r in records),
            holds=tuple(_hold(h) for h in holds),
            lifecycle_events=tuple(lifecycle),
        )


def _amended_gaps(gaps: list[GapRow], coverage: Sequence[Row]) -> tuple[GapRow, ...]:
    """Gaps as they stand after late recoveries: each ``gap_coverage`` row removes the time a
    recovered segment turned out to hold from its gap (trimming or splitting it; a gap wholly
    covered disappears). The stored gap rows are never changed; this is the view."""
    covered: dict[tuple[str, int, str], list[tuple[int, int, int]]] = {}
    for track, gap_start, cause, start, end, index in coverage:
        covered.setdefault((track, int(gap_start), cause), []).append(
            (int(start), int(end), int(index))
        )
    out: list[GapRow] = []
    for gap in gaps:
        spans = sorted(covered.get((gap.track, gap.start_ms, gap.cause), []))
        if not spans:
            out.append(gap)
            continue
        pieces = [(gap.start_ms, gap.end_ms)]
        for start, end, _ in spans:
            pieces = [
                piece
                for lo, hi in pieces
                for piece in ((lo, min(hi, start)), (max(lo, end), hi))
                if piece[1] > piece[0]
            ]
        indexes = ", ".join(str(index) for _, _, index in spans)
        note = f"partly covered by recovered segment(s) {indexes}"
        detail = f"{gap.detail}; {note}" if gap.detail else note
        out.extend(
            dataclasses.replace(
                gap, start_ms=lo, end_ms=hi, start_sample=None, end_sample=None, detail=detail
            )
            for lo, hi in pieces
        )
    out.sort(key=lambda g: (g.start_ms, g.track))
    return tuple(out)
