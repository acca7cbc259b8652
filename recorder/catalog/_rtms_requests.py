"""RTMS control requests made through the recorder (``recorder rtms ...``), and pause evidence.

Rule 1: a request is written, with its audit event, in one transaction **before** Zoom is asked
(``add_rtms_request``), so a pause that Zoom carries out is never without its actor and reason,
even if the asking process dies right after. Its outcome (``accepted`` or ``refused`` with
Zoom's answer) is written afterwards, audited too.

Rule 2: a stream's pause is attributed to at most one request, and one request to at most one
pause (``match_pause_request``): the newest unmatched ``pause`` request for the same product
and instance id, made within ``window_ms`` before the pause was seen (or up to ``SKEW_MS``
after, for clocks of two hosts). The match is written in the same transaction.

Rule 3: a pause request that no stream confirmed within its window is not assumed fine:
``unconfirmed_pause_requests`` lists them, so the service can flag them.
"""

# ruff: noqa: S608
# S608 (SQL built from strings) is waived for this module only: every interpolated piece is a
# module constant, and every value is a bound parameter.
from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from recorder.catalog._officers import OfficerQueries
from recorder.catalog._rows import Row
from recorder.catalog.base import AuditEvent, JsonValue
from recorder.catalog.rtms_request_types import RtmsRequestRow
from recorder.errors import CatalogError

#: Clocks of the host that asked and the host that recorded may differ this much.
SKEW_MS: Final = 5_000
#: Requests the recorder knows (``recorder.zoom.directory.RtmsAction`` values).
ACTIONS: Final = frozenset({"start", "stop", "pause", "resume"})
OUTCOMES: Final = frozenset({"pending", "accepted", "refused"})
_MAX_TEXT: Final = 2_000

_COLS: Final = (
    "request_id, product, target_id, action, actor, reason, requested_ms, outcome, error,"
    " matched_recording_id, matched_ms, audit_target"
)


def _row(row: Row) -> RtmsRequestRow:
    values = list(row)
    return RtmsRequestRow(
        request_id=int(values[0]),
        product=str(values[1]),
        target_id=str(values[2]),
        action=str(values[3]),
        actor=str(values[4]),
        reason=str(values[5]),
        requested_ms=int(values[6]),
        outcome=str(values[7]),
        error=None if values[8] is None else str(values[8]),
        matched_recording_id=None if values[9] is None else str(values[9]),
        matched_ms=None if values[10] is None else int(values[10]),
        audit_target=str(values[11]),
    )


def _check_text(name: str, value: str) -> None:
    if not value or not value.strip():
        raise CatalogError(f"rtms request: {name} must not be empty")
    if len(value) > _MAX_TEXT:
        raise CatalogError(f"rtms request: {name} is longer than {_MAX_TEXT} characters")


class RtmsRequestQueries(OfficerQueries):
    """Control requests, their audit events and the pauses they explain."""

    def add_rtms_request(
        self,
        *,
        product: str,
        target_id: str,
        action: str,
        actor: str,
        reason: str,
        now_ms: int,
        via: str | None = None,
    ) -> tuple[RtmsRequestRow, AuditEvent]:
        """Rule 1: the request row and its audit event (``rtms.<action>``), one transaction.

        The audit target is the newest open recording of the instance when there is one (so
        ``recorder show`` lists it), else ``<product>:<target_id>``.
        """
        if action not in ACTIONS:
            raise CatalogError(f"rtms request: unknown action {action!r}")
        for name, value in (("product", product), ("target id", target_id), ("actor", actor)):
            _check_text(name, value)
        _check_text("reason", reason)
        with self._transaction("add_rtms_request", write=True) as tx:
            live = tx.fetchone(
                """SELECT recording_id FROM recordings
                    WHERE instance_id = ? AND product = ? AND ended_ms IS NULL
                    ORDER BY started_ms DESC, recording_id DESC LIMIT 1""",
                (target_id, product),
            )
            audit_target = str(live[0]) if live is not None else f"{product}:{target_id}"
            inserted = tx.fetchone(
                f"""INSERT INTO rtms_requests (product, target_id, action, actor, reason,
                        requested_ms, outcome, audit_target)
                    VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)
                    RETURNING {_COLS}""",
                (product, target_id, action, actor, reason, now_ms, audit_target),
            )
            assert inserted is not None
            row = _row(inserted)
            details: dict[str, JsonValue] = {
                "request_id": row.request_id,
                "product": product,
                "target_id": target_id,
            }
            if via is not None:
                # Who ran the command, when it acted for someone else (``--actor``).
                details["via"] = via
            event = self._append_audit(
                tx,
                actor=actor,
                action=f"rtms.{action}",
                target=audit_target,
                reason=reason,
                now_ms=now_ms,
                details=details,
            )
        return row, event

    def finish_rtms_request(
        self, request_id: int, *, outcome: str, error: str | None, now_ms: int
    ) -> RtmsRequestRow:
        """Rule 1: Zoom's answer, once; audited as ``rtms.<action>.<outcome>``."""
        if outcome not in ("accepted", "refused"):
            raise CatalogError(
                f"rtms request: outcome must be accepted or refused, not {outcome!r}"
            )
        with self._transaction("finish_rtms_request", write=True) as tx:
            updated = tx.fetchone(
                f"""UPDATE rtms_requests SET outcome = ?, error = ?
                    WHERE request_id = ? AND outcome = 'pending'
                    RETURNING {_COLS}""",
                (outcome, None if error is None else error[:_MAX_TEXT], request_id),
            )
            if updated is None:
                raise CatalogError(f"rtms request {request_id}: no pending request to finish")
            row = _row(updated)
            details: dict[str, JsonValue] = {"request_id": request_id}
            if error is not None:
                details["error"] = error[:_MAX_TEXT]
            self._append_audit(
                tx,
                actor=row.actor,
                action=f"rtms.{row.action}.{outcome}",
                target=row.audit_target,
                reason=row.reason,
                now_ms=now_ms,
                details=details,
            )
        return row

    def match_pause_request(
        self,
        *,
        product: str,
        instance_ids: Sequence[str],
        recording_id: str,
        paused_ms: int,
        window_ms: int,
    ) -> RtmsRequestRow | None:
        """Rule 2: the request that explains a pause seen at ``paused_ms``, now matched."""
        ids = [i for i in dict.fromkeys(instance_ids) if i]
        if not ids:
            return None
        marks = ", ".join("?" for _ in ids)
        with self._transaction("match_pause_request", write=True) as tx:
            found = tx.fetchone(
                f"""SELECT request_id FROM rtms_requests
                    WHERE action = 'pause' AND product = ? AND target_id IN ({marks})
                        AND outcome IN ('pending', 'accepted')
                        AND matched_recording_id IS NULL
                        AND requested_ms BETWEEN ? AND ?
                    ORDER BY requested_ms DESC, request_id DESC LIMIT 1""",
                (product, *ids, paused_ms - window_ms, paused_ms + SKEW_MS),
            )
            if found is None:
                return None
            updated = tx.fetchone(
                f"""UPDATE rtms_requests SET matched_recording_id = ?, matched_ms = ?
                    WHERE request_id = ? AND matched_recording_id IS NULL
                    RETURNING {_COLS}""",
                (recording_id, paused_ms, found[0]),
            )
        return None if updated is None else _row(updated)

    def unconfirmed_pause_requests(
        self, *, product: str, instance_ids: Sequence[str], since_ms: int, before_ms: int
    ) -> list[RtmsRequestRow]:
        """Rule 3: pause requests Zoom did not refuse, that no stream's pause matched, made
        in ``[since_ms, before_ms)``."""
        ids = [i for i in dict.fromkeys(instance_ids) if i]
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        with self._transaction("unconfirmed_pause_requests", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT {_COLS} FROM rtms_requests
                    WHERE action = 'pause' AND product = ? AND target_id IN ({marks})
                        AND outcome IN ('pending', 'accepted')
                        AND matched_recording_id IS NULL
                        AND requested_ms >= ? AND requested_ms < ?
                    ORDER BY request_id""",
                (product, *ids, since_ms, before_ms),
            )
        return [_row(r) for r in rows]

    def rtms_requests(
        self, *, target_id: str | None = None, limit: int = 100
    ) -> list[RtmsRequestRow]:
        """Newest first; all of them, or those naming ``target_id``."""
        if not 1 <= limit <= 10_000:
            raise CatalogError(f"rtms_requests: limit must be 1..10000, got {limit}")
        where = "WHERE target_id = ?" if target_id is not None else ""
        params: tuple[object, ...] = (target_id,) if target_id is not None else ()
        with self._transaction("rtms_requests", write=False) as tx:
            rows = tx.fetchall(
                f"SELECT {_COLS} FROM rtms_requests {where} ORDER BY request_id DESC LIMIT ?",
                (*params, limit),
            )
        return [_row(r) for r in rows]
