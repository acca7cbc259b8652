"""The recording-key store and the destruction records, in the catalog.

Rule: only *wrapped* recording keys ever reach these tables (base64 of the KEK's ciphertext).
A destroyed key is not deleted: its row becomes a tombstone (``wrapped`` NULL) and the recording
gets a permanent entry in ``recording_key_tombstones``; the database refuses to undo either,
and refuses any new key for a shredded recording, so a key restored from a cache or an old copy
cannot slip back in silently. ``destruction_records`` is append-only like ``audit_log``.
"""

# ruff: noqa: S608
# S608 is waived for this module only: the interpolated pieces are module constants.
from __future__ import annotations

import abc
import base64
import hmac
from typing import Final

from recorder.catalog._rows import Row, TransactionSource, Tx, _require_text
from recorder.catalog._textindex import forget_transcript
from recorder.catalog.base import KekUsage, RecordingKeyRow
from recorder.catalog.schema import Engine
from recorder.errors import CatalogError, HoldActive, IntegrityError, KeyDestroyed
from recorder.evidence_destruction import DestructionRecord, destruction_record_from_json

_KEY_COLS: Final = (
    "rk_id, recording_id, kek_key_id, wrapped, created_ms, rewrapped_ms, destroyed_ms,"
    " destroy_reason"
)
#: Upper bound on one page of ``recording_keys_not_under``.
MAX_KEY_PAGE: Final = 1_000


def _key(row: Row) -> RecordingKeyRow:
    wrapped = None if row[3] is None else base64.b64decode(row[3])
    return RecordingKeyRow(
        rk_id=row[0],
        recording_id=row[1],
        kek_key_id=row[2],
        wrapped=wrapped,
        created_ms=int(row[4]),
        rewrapped_ms=None if row[5] is None else int(row[5]),
        destroyed_ms=None if row[6] is None else int(row[6]),
        destroy_reason=row[7],
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class KeyQueries(TransactionSource):
    """Wrapped recording keys, their tombstones, and destruction records."""

    @abc.abstractmethod
    def _scrub_destroyed(self, tx: Tx, recording_id: str, *, now_ms: int, actor: str) -> object:
        """``recorder.catalog._scrub.ScrubQueries`` erases a destroyed recording's personal data."""

    def put_recording_key(self, row: RecordingKeyRow) -> None:
        if row.wrapped is None or row.destroyed:
            raise CatalogError(f"put_recording_key: {row.rk_id} carries no wrapped key")
        _require_text(
            "put_recording_key",
            rk_id=row.rk_id,
            recording_id=row.recording_id,
            kek_key_id=row.kek_key_id,
        )
        with self._transaction("put_recording_key", write=True) as tx:
            tomb = tx.fetchone(
                "SELECT destroyed_ms FROM recording_key_tombstones WHERE recording_id = ?",
                (row.recording_id,),
            )
            if tomb is not None:
                raise KeyDestroyed(
                    f"recording {row.recording_id!r} was crypto-shredded; refusing to store "
                    f"recording key {row.rk_id} for it (key destroyed)"
                )
            inserted = tx.execute(
                f"""INSERT INTO recording_keys ({_KEY_COLS})
                    VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL)
                    ON CONFLICT (rk_id) DO NOTHING""",
                (row.rk_id, row.recording_id, row.kek_key_id, _b64(row.wrapped), row.created_ms),
            )
            if inserted != 1:
                stored = tx.fetchone(
                    "SELECT recording_id, kek_key_id, wrapped FROM recording_keys WHERE rk_id = ?",
                    (row.rk_id,),
                )
                same = stored is not None and tuple(stored) == (
                    row.recording_id,
                    row.kek_key_id,
                    _b64(row.wrapped),
                )
                if not same:
                    raise CatalogError(
                        f"put_recording_key: a different key {row.rk_id} is stored already"
                    )

    def get_recording_key(self, rk_id: str) -> RecordingKeyRow | None:
        with self._transaction("get_recording_key", write=False) as tx:
            row = tx.fetchone(f"SELECT {_KEY_COLS} FROM recording_keys WHERE rk_id = ?", (rk_id,))
        return None if row is None else _key(row)

    def recording_keys_of(self, recording_id: str) -> list[RecordingKeyRow]:
        with self._transaction("recording_keys_of", write=False) as tx:
            rows = tx.fetchall(
                f"SELECT {_KEY_COLS} FROM recording_keys WHERE recording_id = ? ORDER BY rk_id",
                (recording_id,),
            )
        return [_key(row) for row in rows]

    def recording_key_tombstone(self, recording_id: str) -> tuple[int, str] | None:
        with self._transaction("recording_key_tombstone", write=False) as tx:
            row = tx.fetchone(
                "SELECT destroyed_ms, reason FROM recording_key_tombstones WHERE recording_id = ?",
                (recording_id,),
            )
        return None if row is None else (int(row[0]), str(row[1]))

    def destroy_recording_keys(self, recording_id: str, *, reason: str, now_ms: int) -> list[str]:
        _require_text("destroy_recording_keys", recording_id=recording_id, reason=reason)
        with self._transaction("destroy_recording_keys", write=True) as tx:
            # A hold always wins (invariant 8); checked again in the destroying transaction so a
            # hold placed after the caller's own check still stops it. SQLite writers are
            # serialised already; on PostgreSQL a SHARE lock makes a concurrent place_hold wait
            # for this commit (or this check wait for its), so no hold slips in between.
            if getattr(self, "engine", None) is Engine.POSTGRES:
                tx.execute("LOCK TABLE legal_holds IN SHARE MODE")
            held = tx.fetchone(
                """SELECT hold_id FROM legal_holds WHERE released_ms IS NULL AND (
                        (scope = 'recording' AND scope_value = ?)
                        OR (scope = 'instance' AND scope_value IN (
                            SELECT instance_id FROM recordings WHERE recording_id = ?)))""",
                (recording_id, recording_id),
            )
            if held is not None:
                raise HoldActive(
                    f"recording {recording_id!r} is under legal hold {held[0]}; its keys may "
                    "not be destroyed"
                )
            # The recording's tombstone first: from this commit on no key can be added for it.
            tx.execute(
                """INSERT INTO recording_key_tombstones (recording_id, destroyed_ms, reason)
                    VALUES (?, ?, ?) ON CONFLICT (recording_id) DO NOTHING""",
                (recording_id, now_ms, reason),
            )
            tx.execute(
                """UPDATE recording_keys SET wrapped = NULL, destroyed_ms = ?, destroy_reason = ?
                    WHERE recording_id = ? AND destroyed_ms IS NULL""",
                (now_ms, reason, recording_id),
            )
            forget_transcript(tx, recording_id)  # the blind index of what it said goes too
            rows = tx.fetchall(
                "SELECT rk_id FROM recording_keys WHERE recording_id = ? ORDER BY rk_id",
                (recording_id,),
            )
        return [str(row[0]) for row in rows]

    def kek_usage(self) -> list[KekUsage]:
        with self._transaction("kek_usage", write=False) as tx:
            rows = tx.fetchall(
                """SELECT kek_key_id,
                        SUM(CASE WHEN destroyed_ms IS NULL THEN 1 ELSE 0 END),
                        SUM(CASE WHEN destroyed_ms IS NULL THEN 0 ELSE 1 END)
                    FROM recording_keys GROUP BY kek_key_id ORDER BY kek_key_id"""
            )
        return [KekUsage(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    def recording_keys_not_under(
        self, kek_key_id: str, *, after_rk_id: str = "", limit: int = 100
    ) -> list[RecordingKeyRow]:
        limit = max(1, min(limit, MAX_KEY_PAGE))
        with self._transaction("recording_keys_not_under", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT {_KEY_COLS} FROM recording_keys
                    WHERE kek_key_id <> ? AND destroyed_ms IS NULL AND rk_id > ?
                    ORDER BY rk_id LIMIT ?""",
                (kek_key_id, after_rk_id, limit),
            )
        return [_key(row) for row in rows]

    def rewrap_recording_key(
        self, rk_id: str, *, old_kek_key_id: str, new_kek_key_id: str, wrapped: bytes, now_ms: int
    ) -> bool:
        with self._transaction("rewrap_recording_key", write=True) as tx:
            changed = tx.execute(
                """UPDATE recording_keys SET kek_key_id = ?, wrapped = ?, rewrapped_ms = ?
                    WHERE rk_id = ? AND kek_key_id = ? AND destroyed_ms IS NULL""",
                (new_kek_key_id, _b64(wrapped), now_ms, rk_id, old_kek_key_id),
            )
        return changed == 1

    def add_destruction_record(self, record: DestructionRecord) -> None:
        _require_text(
            "add_destruction_record",
            recording_id=record.recording_id,
            rule=record.rule,
            actor=record.actor,
        )
        digest = record.sha256()
        with self._transaction("add_destruction_record", write=True) as tx:
            # The same record again (a retention re-run after a crash) changes nothing.
            if tx.fetchone("SELECT 1 FROM destruction_records WHERE record_sha256 = ?", (digest,)):
                return
            tx.execute(
                """INSERT INTO destruction_records (recording_id, method, record_json,
                        record_sha256, destroyed_ms)
                    VALUES (?, ?, ?, ?, ?)""",
                (
                    record.recording_id,
                    record.method.value,
                    record.canonical_json(),
                    digest,
                    record.destroyed_ms,
                ),
            )
            # Personal data goes in this same transaction (``recorder.catalog._scrub``).
            self._scrub_destroyed(
                tx, record.recording_id, now_ms=record.destroyed_ms, actor=record.actor
            )

    def destruction_records(self, recording_id: str | None = None) -> list[DestructionRecord]:
        where, params = ("WHERE recording_id = ?", (recording_id,)) if recording_id else ("", ())
        with self._transaction("destruction_records", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT id, record_json, record_sha256 FROM destruction_records {where}
                    ORDER BY id""",
                params,
            )
        records = []
        for record_id, text, stored_sha in rows:
            record = destruction_record_from_json(text)
            if not hmac.compare_digest(record.sha256(), str(stored_sha)):
                raise IntegrityError(
                    f"destruction record {record_id} of recording {record.recording_id!r} does "
                    "not match its stored SHA-256 (altered behind the append-only triggers)"
                )
            records.append(record)
        return records
