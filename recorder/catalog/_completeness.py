"""Completeness rows (migration 14): expectations, start results, findings, enrichment.

Rule 1: one expectation per (product, instance id): a retried or repeated announcement, or a
pull that lists an instance a webhook already announced, adds nothing (``add_expectation``
answers False).

Rule 2: auto-start and enrichment are claimed with one conditional ``UPDATE`` each, so two
processes never both ask Zoom for the same thing; a claim that is not settled in time (its
process died) becomes claimable again. A pending start whose instance already has a stream is
``not_needed`` instead (the stream's webhook overtook the announcement).

Rule 3: a finding is the reconciler's latest verdict on one expectation: updated in place while
it stands, stamped ``resolved_ms`` (never deleted) once a later run finds the expectation met.

Rule 4: recordings meet expectations by product and instance id; ``rtms.start_failed`` events by
instance id (``lifecycle_events.instance_id``).
"""

# ruff: noqa: S608
# S608 (SQL built from strings) is waived for this module only: every interpolated piece is a
# module constant, and every value is a bound parameter.
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Final

from recorder.catalog._rows import Row, TransactionSource
from recorder.completeness.model import (
    EnrichmentFields,
    EnrichmentRow,
    EnrichmentState,
    EnrichmentTask,
    ExpectationRow,
    ExpectationSource,
    FindingCause,
    FindingKind,
    FindingRow,
    NewExpectation,
    ReconcileInputs,
    RecordingFacts,
    StartState,
    normalise_number,
)
from recorder.errors import CatalogError
from recorder.products import Product

MAX_LIMIT: Final = 10_000
#: Errors kept per row are cut to this many characters (they come from Zoom's answers).
MAX_ERROR_CHARS: Final = 500

_EXPECTATION_COLS: Final = (
    "expectation_id, product, instance_id, target_id, source, event, account_id, user_id,"
    " queue_id, expected_start_ms, expected_end_ms, created_ms, start_state, start_attempts,"
    " start_error_status, start_error_code, start_error"
)
_FINDING_COLS: Final = (
    "f.expectation_id, x.product, x.instance_id, f.kind, f.cause, f.detail, f.recording_id,"
    " f.first_found_ms, f.updated_ms, f.resolved_ms"
)
_ENRICHMENT_FIELDS: Final = tuple(EnrichmentFields.__dataclass_fields__)
_ENRICHMENT_COLS: Final = (
    "product, instance_id, lookup_id, state, attempts, next_attempt_ms, last_error, "
    + ", ".join(_ENRICHMENT_FIELDS)
    + ", updated_ms"
)
_NUMBER_FIELDS: Final = frozenset({"consumer_number", "caller_number", "callee_number"})


def _field_values(fields: EnrichmentFields) -> list[str | None]:
    """``fields`` in ``_ENRICHMENT_FIELDS`` order, phone numbers normalised."""
    return [
        normalise_number(getattr(fields, name)) if name in _NUMBER_FIELDS else getattr(fields, name)
        for name in _ENRICHMENT_FIELDS
    ]


def _limit(operation: str, limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise CatalogError(f"{operation}: limit must be 1..{MAX_LIMIT}, got {limit}")


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _expectation(row: Row) -> ExpectationRow:
    return ExpectationRow(
        expectation_id=int(row[0]),
        product=Product(row[1]),
        instance_id=row[2],
        target_id=row[3],
        source=ExpectationSource(row[4]),
        event=row[5],
        account_id=row[6],
        user_id=row[7],
        queue_id=row[8],
        expected_start_ms=int(row[9]),
        expected_end_ms=_optional_int(row[10]),
        created_ms=int(row[11]),
        start_state=StartState(row[12]),
        start_attempts=int(row[13]),
        start_error_status=_optional_int(row[14]),
        start_error_code=_optional_int(row[15]),
        start_error=row[16],
    )


def _finding(row: Row) -> FindingRow:
    return FindingRow(
        expectation_id=int(row[0]),
        product=Product(row[1]),
        instance_id=row[2],
        kind=FindingKind(row[3]),
        cause=FindingCause(row[4]),
        detail=row[5],
        recording_id=row[6],
        first_found_ms=int(row[7]),
        updated_ms=int(row[8]),
        resolved_ms=_optional_int(row[9]),
    )


def _enrichment(row: Row) -> EnrichmentRow:
    n = len(_ENRICHMENT_FIELDS)
    return EnrichmentRow(
        product=Product(row[0]),
        instance_id=row[1],
        lookup_id=row[2],
        state=EnrichmentState(row[3]),
        attempts=int(row[4]),
        next_attempt_ms=int(row[5]),
        last_error=row[6],
        fields=EnrichmentFields(*row[7 : 7 + n]),
        updated_ms=int(row[7 + n]),
    )


# --- search (``recorder.catalog._search`` uses these) ------------------------------------------

# Each is a UNION of look-ups that start from one indexed column of ``enrichments`` and join
# the recordings of that instance (``recordings_by_instance``): an OR across columns, or a
# row-value IN over ``recordings``, would make the engines walk every recording.


def _enriched(*conditions: str) -> str:
    """Recording ids whose enrichment meets any of ``conditions`` (one parameter each)."""
    return "\n        UNION ".join(
        "SELECT r2.recording_id FROM enrichments e JOIN recordings r2"
        f" ON r2.instance_id = e.instance_id AND r2.product = e.product WHERE {condition}"
        for condition in conditions
    )


_ENRICHED_TOPIC: Final = _enriched("LOWER(e.topic) = LOWER(?)")
_ENRICHED_HOST: Final = _enriched("e.host_id = ?", "LOWER(e.host_email) = LOWER(?)")
_ENRICHED_NUMBER: Final = _enriched(
    "e.consumer_number = ?", "e.caller_number = ?", "e.callee_number = ?"
)


def enrichment_clauses(query: Any) -> tuple[list[str], list[object]]:
    """Clauses over ``recordings r`` for ``topic``, ``host`` and ``number`` of a
    ``RecordingQuery``."""
    clauses: list[str] = []
    params: list[object] = []
    if query.topic is not None:
        clauses.append(f"r.recording_id IN ({_ENRICHED_TOPIC})")
        params.append(query.topic)
    if query.host is not None:
        clauses.append(f"r.recording_id IN ({_ENRICHED_HOST})")
        params.extend([query.host, query.host])
    if query.number is not None:
        number = normalise_number(query.number)
        if number is None:
            raise CatalogError("search_recordings: --number has no digits")
        clauses.append(f"r.recording_id IN ({_ENRICHED_NUMBER})")
        params.extend([number] * 3)
    return clauses, params


def findings_of_recording_tx(tx: Any, recording_id: str) -> list[FindingRow]:
    rows = tx.fetchall(
        f"""SELECT {_FINDING_COLS} FROM findings f
            JOIN expectations x ON x.expectation_id = f.expectation_id
            WHERE f.recording_id = ?
               OR (x.product, x.instance_id) IN (SELECT product, instance_id FROM recordings
                    WHERE recording_id = ?)
            ORDER BY f.first_found_ms, f.expectation_id""",
        (recording_id, recording_id),
    )
    return [_finding(row) for row in rows]


class CompletenessQueries(TransactionSource):
    """See the module rules."""

    # --- expectations and auto-start ------------------------------------------------------

    def add_expectation(self, new: NewExpectation) -> tuple[ExpectationRow, bool]:
        if not new.instance_id or not new.target_id:
            raise CatalogError("add_expectation: instance_id and target_id required")
        with self._transaction("add_expectation", write=True) as tx:
            if tx.fetchone(
                """SELECT 1 FROM enrichments
                    WHERE product = ? AND instance_id = ? AND state = 'scrubbed'""",
                (new.product.value, new.instance_id),
            ):
                # Every recording of it was destroyed (a late pull lists it): keep no person's
                # ids for it, and never ask Zoom to start it again.
                new = dataclasses.replace(
                    new,
                    target_id=new.instance_id,
                    user_id=None,
                    queue_id=None,
                    known=None,
                    start_state=StartState.OFF,
                )
            state = new.start_state
            if state is StartState.PENDING and tx.fetchone(
                "SELECT 1 FROM streams WHERE product = ? AND instance_id = ?",
                (new.product.value, new.instance_id),
            ):
                state = StartState.NOT_NEEDED  # rule 2: the stream overtook its announcement
            inserted = tx.fetchone(
                """INSERT INTO expectations (product, instance_id, target_id, source, event,
                        account_id, user_id, queue_id, expected_start_ms, expected_end_ms,
                        created_ms, start_state)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (product, instance_id) DO NOTHING
                    RETURNING expectation_id""",
                (
                    new.product.value,
                    new.instance_id,
                    new.target_id,
                    new.source.value,
                    new.event,
                    new.account_id,
                    new.user_id,
                    new.queue_id,
                    new.expected_start_ms,
                    new.expected_end_ms,
                    new.created_ms,
                    state.value,
                ),
            )
            if inserted is None and new.expected_end_ms is not None:
                # A pull may learn the end of an instance a webhook announced.
                tx.execute(
                    """UPDATE expectations SET expected_end_ms = ?
                        WHERE product = ? AND instance_id = ? AND expected_end_ms IS NULL""",
                    (new.expected_end_ms, new.product.value, new.instance_id),
                )
            # Enrichment of what is expected starts now, before any recording exists, with
            # what the announcement itself said; Zoom's directory is asked for the rest.
            known = _field_values(new.known or EnrichmentFields())
            tx.execute(
                f"""INSERT INTO enrichments (product, instance_id, lookup_id, state,
                        next_attempt_ms, updated_ms, {", ".join(_ENRICHMENT_FIELDS)})
                    VALUES (?, ?, ?, 'pending', ?, ?, {", ".join("?" for _ in known)})
                    ON CONFLICT (product, instance_id) DO NOTHING""",
                (
                    new.product.value,
                    new.instance_id,
                    new.target_id,
                    new.created_ms,
                    new.created_ms,
                    *known,
                ),
            )
            row = tx.fetchone(
                f"SELECT {_EXPECTATION_COLS} FROM expectations"
                " WHERE product = ? AND instance_id = ?",
                (new.product.value, new.instance_id),
            )
        if row is None:
            raise CatalogError("add_expectation: the stored expectation could not be read back")
        return _expectation(row), inserted is not None

    def claim_expectation_starts(
        self, now_ms: int, *, stale_ms: int, limit: int
    ) -> list[ExpectationRow]:
        _limit("claim_expectation_starts", limit)
        claimed: list[ExpectationRow] = []
        with self._transaction("claim_expectation_starts", write=True) as tx:
            # Webhook order is not guaranteed: the stream may have started (and reached us)
            # before its announcement did. Asking Zoom again would only be refused.
            tx.execute(
                """UPDATE expectations SET start_state = 'not_needed', start_result_ms = ?
                    WHERE start_state = 'pending' AND EXISTS (SELECT 1 FROM streams s
                        WHERE s.product = expectations.product
                            AND s.instance_id = expectations.instance_id)""",
                (now_ms,),
            )
            candidates = tx.fetchall(
                """SELECT expectation_id FROM expectations
                    WHERE start_state = 'pending'
                       OR (start_state = 'requesting' AND start_claimed_ms < ?)
                    ORDER BY expected_start_ms, expectation_id LIMIT ?""",
                (now_ms - stale_ms, limit),
            )
            for (expectation_id,) in candidates:
                row = tx.fetchone(
                    f"""UPDATE expectations SET start_state = 'requesting', start_claimed_ms = ?
                        WHERE expectation_id = ? AND (start_state = 'pending'
                            OR (start_state = 'requesting' AND start_claimed_ms < ?))
                        RETURNING {_EXPECTATION_COLS}""",
                    (now_ms, expectation_id, now_ms - stale_ms),
                )
                if row is not None:
                    claimed.append(_expectation(row))
        return claimed

    def set_start_result(
        self,
        expectation_id: int,
        now_ms: int,
        *,
        ok: bool,
        attempts: int,
        status: int | None = None,
        code: int | None = None,
        message: str | None = None,
    ) -> None:
        state = StartState.REQUESTED if ok else StartState.FAILED
        with self._transaction("set_start_result", write=True) as tx:
            changed = tx.execute(
                """UPDATE expectations SET start_state = ?, start_attempts = ?,
                        start_error_status = ?, start_error_code = ?, start_error = ?,
                        start_result_ms = ?
                    WHERE expectation_id = ?""",
                (
                    state.value,
                    attempts,
                    status,
                    code,
                    None if message is None else message[:MAX_ERROR_CHARS],
                    now_ms,
                    expectation_id,
                ),
            )
        if changed != 1:
            raise CatalogError(f"set_start_result: no expectation {expectation_id}")

    # --- reconciliation -------------------------------------------------------------------

    def expectations_between(
        self,
        since_ms: int,
        until_ms: int,
        *,
        limit: int,
        after: tuple[int, int] | None = None,
        unsettled_only: bool = False,
    ) -> list[ExpectationRow]:
        """Oldest expected start first; ``after`` is the (start, id) of the last row of the
        page before (keyset paging: rows sharing one start are never skipped)."""
        _limit("expectations_between", limit)
        clause, params = "", [since_ms, until_ms]
        if unsettled_only:
            clause = " AND settled_ms IS NULL"
        if after is not None:
            clause += (
                " AND (expected_start_ms > ? OR (expected_start_ms = ? AND expectation_id > ?))"
            )
            params += [after[0], after[0], after[1]]
        with self._transaction("expectations_between", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT {_EXPECTATION_COLS} FROM expectations
                    WHERE expected_start_ms >= ? AND expected_start_ms < ?{clause}
                    ORDER BY expected_start_ms, expectation_id LIMIT ?""",
                (*params, limit),
            )
        return [_expectation(row) for row in rows]

    def reconcile_inputs(self, expectation_ids: Sequence[int]) -> list[ReconcileInputs]:
        out: list[ReconcileInputs] = []
        with self._transaction("reconcile_inputs", write=False) as tx:
            for expectation_id in expectation_ids:
                row = tx.fetchone(
                    f"SELECT {_EXPECTATION_COLS} FROM expectations WHERE expectation_id = ?",
                    (expectation_id,),
                )
                if row is None:
                    continue
                expectation = _expectation(row)
                recordings = tx.fetchall(
                    """SELECT r.recording_id, r.started_ms, r.ended_ms,
                            (SELECT COALESCE(MAX(g.end_ms - g.start_ms), 0) FROM gaps g
                                WHERE g.recording_id = r.recording_id)
                        FROM recordings r WHERE r.product = ? AND r.instance_id = ?
                        ORDER BY r.started_ms, r.recording_id""",
                    (expectation.product.value, expectation.instance_id),
                )
                failures = tx.fetchall(
                    """SELECT reason FROM lifecycle_events
                        WHERE failed = ? AND kind = 'start_failed' AND instance_id = ?
                        ORDER BY received_ms, event_id""",
                    (True, expectation.instance_id),
                )
                out.append(
                    ReconcileInputs(
                        expectation=expectation,
                        recordings=tuple(
                            RecordingFacts(r[0], int(r[1]), _optional_int(r[2]), int(r[3]))
                            for r in recordings
                        ),
                        start_failures=tuple(f[0] for f in failures),
                    )
                )
        return out

    def put_finding(
        self,
        expectation: ExpectationRow,
        verdict: tuple[FindingKind, FindingCause, str, str | None] | None,
        now_ms: int,
        *,
        settled: bool = False,
    ) -> None:
        """Store ``verdict`` (kind, cause, detail, recording id) for ``expectation``; None
        means the expectation is met: an open finding is resolved. ``settled``: the verdict is
        final, the expectation is left out of routine runs from now on."""
        with self._transaction("put_finding", write=True) as tx:
            if settled:
                tx.execute(
                    "UPDATE expectations SET settled_ms = ? WHERE expectation_id = ?",
                    (now_ms, expectation.expectation_id),
                )
            if verdict is None:
                tx.execute(
                    """UPDATE findings SET resolved_ms = ?, updated_ms = ?
                        WHERE expectation_id = ? AND resolved_ms IS NULL""",
                    (now_ms, now_ms, expectation.expectation_id),
                )
                return
            kind, cause, detail, recording_id = verdict
            tx.execute(
                """INSERT INTO findings (expectation_id, kind, cause, detail, recording_id,
                        first_found_ms, updated_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (expectation_id) DO UPDATE SET kind = excluded.kind,
                        cause = excluded.cause, detail = excluded.detail,
                        recording_id = excluded.recording_id, updated_ms = excluded.updated_ms,
                        resolved_ms = NULL""",
                (
                    expectation.expectation_id,
                    kind.value,
                    cause.value,
                    detail,
                    recording_id,
                    now_ms,
                    now_ms,
                ),
            )

    def findings(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        include_resolved: bool = False,
        limit: int = 100,
    ) -> list[FindingRow]:
        _limit("findings", limit)
        clauses: list[str] = []
        params: list[object] = []
        if not include_resolved:
            clauses.append("f.resolved_ms IS NULL")
        if since_ms is not None:
            clauses.append("x.expected_start_ms >= ?")
            params.append(since_ms)
        if until_ms is not None:
            clauses.append("x.expected_start_ms < ?")
            params.append(until_ms)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(limit)
        with self._transaction("findings", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT {_FINDING_COLS} FROM findings f
                    JOIN expectations x ON x.expectation_id = f.expectation_id {where}
                    ORDER BY x.expected_start_ms DESC, f.expectation_id DESC LIMIT ?""",
                params,
            )
        return [_finding(row) for row in rows]

    def finding_counts(self) -> list[tuple[str, str, int]]:
        with self._transaction("finding_counts", write=False) as tx:
            rows = tx.fetchall(
                """SELECT kind, cause, COUNT(*) FROM findings WHERE resolved_ms IS NULL
                    GROUP BY kind, cause ORDER BY kind, cause"""
            )
        return [(row[0], row[1], int(row[2])) for row in rows]

    def findings_of_recording(self, recording_id: str) -> list[FindingRow]:
        with self._transaction("findings_of_recording", write=False) as tx:
            return findings_of_recording_tx(tx, recording_id)

    # --- enrichment -----------------------------------------------------------------------

    def enqueue_enrichments(self, now_ms: int, *, since_ms: int | None = None) -> int:
        """A pending enrichment for every recording (started since ``since_ms``: the service's
        frequent scan stays on ``recordings_by_started``) that has none yet. Meetings are looked
        up by their number when RTMS gave one, else by their uuid."""
        with self._transaction("enqueue_enrichments", write=True) as tx:
            return tx.execute(
                """INSERT INTO enrichments (product, instance_id, lookup_id, state,
                        next_attempt_ms, updated_ms)
                    SELECT r.product, r.instance_id,
                        MIN(COALESCE(r.meeting_number, r.instance_id)), 'pending', ?, ?
                    FROM recordings r
                    WHERE r.started_ms >= ? AND NOT EXISTS (SELECT 1 FROM enrichments e
                        WHERE e.product = r.product AND e.instance_id = r.instance_id)
                    GROUP BY r.product, r.instance_id
                    ON CONFLICT (product, instance_id) DO NOTHING""",
                (now_ms, now_ms, -(2**62) if since_ms is None else since_ms),
            )

    def claim_due_enrichments(
        self, now_ms: int, *, lease_ms: int, limit: int
    ) -> list[EnrichmentTask]:
        _limit("claim_due_enrichments", limit)
        claimed: list[EnrichmentTask] = []
        with self._transaction("claim_due_enrichments", write=True) as tx:
            due = tx.fetchall(
                """SELECT product, instance_id FROM enrichments
                    WHERE state = 'pending' AND next_attempt_ms <= ?
                    ORDER BY next_attempt_ms LIMIT ?""",
                (now_ms, limit),
            )
            for product, instance_id in due:
                row = tx.fetchone(
                    """UPDATE enrichments SET next_attempt_ms = ?
                        WHERE product = ? AND instance_id = ? AND state = 'pending'
                            AND next_attempt_ms <= ?
                        RETURNING product, instance_id, lookup_id, attempts""",
                    (now_ms + lease_ms, product, instance_id, now_ms),
                )
                if row is not None:
                    claimed.append(EnrichmentTask(Product(row[0]), row[1], row[2], int(row[3])))
        return claimed

    def store_enrichment(
        self, product: Product, instance_id: str, fields: EnrichmentFields, now_ms: int
    ) -> bool:
        """False: dropped, the instance's recordings were destroyed meanwhile (scrubbed)."""
        values = _field_values(fields)
        # What Zoom's directory does not know keeps what the announcement said.
        assignments = ", ".join(f"{name} = COALESCE(?, {name})" for name in _ENRICHMENT_FIELDS)
        with self._transaction("store_enrichment", write=True) as tx:
            changed = tx.execute(
                f"""UPDATE enrichments SET {assignments}, state = 'done',
                        attempts = attempts + 1, last_error = NULL, updated_ms = ?
                    WHERE product = ? AND instance_id = ? AND state <> 'scrubbed'""",
                (*values, now_ms, product.value, instance_id),
            )
            scrubbed = changed != 1 and tx.fetchone(
                """SELECT 1 FROM enrichments
                    WHERE product = ? AND instance_id = ? AND state = 'scrubbed'""",
                (product.value, instance_id),
            )
        if scrubbed:
            return False
        if changed != 1:
            raise CatalogError(f"store_enrichment: no enrichment row for {product.value}")
        return True

    def enrichment_failed(
        self,
        product: Product,
        instance_id: str,
        error: str,
        now_ms: int,
        *,
        next_attempt_ms: int,
        give_up: bool,
    ) -> None:
        state = EnrichmentState.FAILED if give_up else EnrichmentState.PENDING
        with self._transaction("enrichment_failed", write=True) as tx:
            tx.execute(
                """UPDATE enrichments SET state = ?, attempts = attempts + 1,
                        last_error = ?, next_attempt_ms = ?, updated_ms = ?
                    WHERE product = ? AND instance_id = ? AND state <> 'scrubbed'""",
                (
                    state.value,
                    error[:MAX_ERROR_CHARS],
                    next_attempt_ms,
                    now_ms,
                    product.value,
                    instance_id,
                ),
            )

    def retry_enrichments(self, now_ms: int) -> int:
        with self._transaction("retry_enrichments", write=True) as tx:
            return tx.execute(
                """UPDATE enrichments SET state = 'pending', attempts = 0, next_attempt_ms = ?,
                        updated_ms = ?
                    WHERE state = 'failed'""",
                (now_ms, now_ms),
            )

    def enrichment_of(self, product: Product, instance_id: str) -> EnrichmentRow | None:
        with self._transaction("enrichment_of", write=False) as tx:
            row = tx.fetchone(
                f"SELECT {_ENRICHMENT_COLS} FROM enrichments WHERE product = ? AND instance_id = ?",
                (product.value, instance_id),
            )
        return None if row is None else _enrichment(row)
