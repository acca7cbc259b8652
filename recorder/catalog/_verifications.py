"""Verification runs: what ``recorder verify`` found for a recording, and when.

Rule: append-only. Each run adds one row per recording it checked; nothing is updated, so the
history of a recording's checks (and the first failing one) survives later passing runs.
"""

from __future__ import annotations

from recorder.catalog._rows import TransactionSource
from recorder.catalog.base import VerificationRun
from recorder.errors import CatalogError


class VerificationQueries(TransactionSource):
    """Record and read verification runs."""

    def record_verification(self, run: VerificationRun) -> None:
        if not run.recording_id:
            raise CatalogError("record_verification: recording_id required")
        with self._transaction("record_verification", write=True) as tx:
            tx.execute(
                """INSERT INTO verification_runs (recording_id, verified_ms, ok, failures, detail)
                    VALUES (?, ?, ?, ?, ?)""",
                (run.recording_id, run.verified_ms, run.ok, ",".join(run.failures), run.detail),
            )

    def last_verification(self, recording_id: str) -> VerificationRun | None:
        with self._transaction("last_verification", write=False) as tx:
            row = tx.fetchone(
                """SELECT recording_id, verified_ms, ok, failures, detail FROM verification_runs
                    WHERE recording_id = ? ORDER BY verified_ms DESC, run_id DESC LIMIT 1""",
                (recording_id,),
            )
        if row is None:
            return None
        failures = tuple(f for f in str(row[3]).split(",") if f)
        return VerificationRun(str(row[0]), int(row[1]), bool(row[2]), failures, str(row[4]))
