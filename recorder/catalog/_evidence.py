"""Recordings and their evidence: segments, record files, gaps, pauses, participants.

Rule: every write here may be repeated (webhook retries, restarts, a second process) and is
idempotent; evidence rows only move forward (upload state never goes back from ``verified``,
and a second add with a different digest is refused rather than overwriting).
"""

# ruff: noqa: S608
# S608 (SQL built from strings) is waived for this module only: every interpolated piece is a
# module constant or a fixed clause chosen in code, and every value is a bound parameter.
from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Final

from recorder.catalog._rows import (
    _RECORD_COLS,
    _RECORDING_COLS,
    _SEGMENT_COLS,
    TransactionSource,
    Tx,
    _record_file,
    _recording,
    _segment,
)
from recorder.catalog.base import (
    EvidenceKind,
    EvidenceRef,
    Lease,
    NewRecordFile,
    NewSegment,
    ParticipantInfo,
    RecordFileRow,
    RecordingRow,
    RecordingStart,
    RecordingStatus,
    SegmentRow,
    UploadState,
)
from recorder.errors import CatalogError

#: The gap cause a takeover writes (``GapCause.RECORDER_RESTART``); late recovery may cover it.
_RECORDER_RESTART: Final = "recorder_restart"


class EvidenceQueries(TransactionSource):
    """Writes the service makes while recording."""

    # --- recordings ------------------------------------------------------------------------

    def upsert_recording(self, start: RecordingStart, now_ms: int) -> RecordingRow:
        with self._transaction("upsert_recording", write=True) as tx:
            return _upsert_recording(tx, start, now_ms)

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
        self,
        recording_id: str,
        *,
        ended_ms: int,
        reason: str,
        status: RecordingStatus,
        fence: Lease | None = None,
    ) -> RecordingRow:
        """The first end wins; ending again returns the recording unchanged."""
        if status is RecordingStatus.ACTIVE:
            raise CatalogError("end_recording: status must not be active")
        with self._transaction("end_recording", write=True) as tx:
            self._check_fence(tx, "end_recording", fence)
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

    def add_segment(
        self, segment: NewSegment, now_ms: int, *, fence: Lease | None = None
    ) -> SegmentRow:
        """Idempotent on (recording, track, index); a different digest there is refused."""
        s = segment
        with self._transaction("add_segment", write=True) as tx:
            self._check_fence(tx, "add_segment", fence)
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
            if s.recovered:
                self._cover_gaps(tx, s, now_ms)
            return stored

    def add_record_file(
        self, record: NewRecordFile, now_ms: int, *, fence: Lease | None = None
    ) -> RecordFileRow:
        """Idempotent on (recording, kind, index); a different digest there is refused."""
        r = record
        with self._transaction("add_record_file", write=True) as tx:
            self._check_fence(tx, "add_record_file", fence)
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

    @staticmethod
    def _cover_gaps(tx: Tx, s: NewSegment, now_ms: int) -> None:
        """A dead owner's partial segment, recovered after the new owner recorded a
        ``recorder_restart`` gap over the same time: append what of the gap it covers (the
        officers' view trims the gap by it; the gap row stays as written)."""
        tx.execute(
            """INSERT INTO gap_coverage (recording_id, track, gap_start_ms, cause,
                    covered_start_ms, covered_end_ms, segment_index, at_ms)
                SELECT recording_id, track, start_ms, cause,
                    CASE WHEN start_ms > ? THEN start_ms ELSE ? END,
                    CASE WHEN end_ms < ? THEN end_ms ELSE ? END, ?, ?
                FROM gaps
                WHERE recording_id = ? AND track = ? AND cause = ?
                    AND start_ms < ? AND end_ms > ?
                ON CONFLICT DO NOTHING""",
            (
                s.start_ms, s.start_ms, s.end_ms, s.end_ms, s.segment_index, now_ms,
                s.recording_id, s.track, _RECORDER_RESTART, s.end_ms, s.start_ms,
            ),
        )  # fmt: skip

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
        fence: Lease | None = None,
    ) -> None:
        if end_ms < start_ms:
            raise CatalogError(f"add_gap: end_ms {end_ms} before start_ms {start_ms}")
        with self._transaction("add_gap", write=True) as tx:
            self._check_fence(tx, "add_gap", fence)
            tx.execute(
                """INSERT INTO gaps (recording_id, track, start_ms, end_ms, start_sample,
                        end_sample, cause, detail)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (recording_id, track, start_ms, cause) DO NOTHING""",
                (recording_id, track, start_ms, end_ms, start_sample, end_sample, cause, detail),
            )

    def add_pause(
        self,
        recording_id: str,
        *,
        start_ms: int,
        end_ms: int | None,
        actor: str | None,
        fence: Lease | None = None,
    ) -> None:
        """Open a pause (``end_ms=None``) and close it later with the same ``start_ms``."""
        with self._transaction("add_pause", write=True) as tx:
            self._check_fence(tx, "add_pause", fence)
            tx.execute(
                """INSERT INTO pauses (recording_id, start_ms, end_ms, actor)
                    VALUES (?, ?, ?, ?)
                    ON CONFLICT (recording_id, start_ms) DO UPDATE SET
                        end_ms = COALESCE(excluded.end_ms, pauses.end_ms),
                        actor = COALESCE(pauses.actor, excluded.actor)""",
                (recording_id, start_ms, end_ms, actor),
            )


def _upsert_recording(tx: Tx, start: RecordingStart, now_ms: int) -> RecordingRow:
    """The stream's active recording, made if there is none (a rejoin keeps the one it has)."""
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
