"""``search_recordings``: the officer's search, one keyset page at a time (both engines).

Each filter is a clause over ``recordings r`` chosen in code, values always bound. Rare matches
on other tables (a name, an id) are ``r.recording_id IN (SELECT ... UNION ...)`` of indexed
lookups, so the engine starts from the selective side; common ones (gaps, a few percent of
recordings) are ``EXISTS`` probes while walking recordings newest first, which finds a page
without collecting every match. Migration 14 adds the indexes these clauses use.
"""

# ruff: noqa: S608
# S608 (SQL built from strings) is waived here: every interpolated piece is a module constant or a
# fixed clause chosen in code, and every value is a bound parameter.
from __future__ import annotations

import dataclasses
from typing import Final

from recorder.catalog._completeness import ENRICHED_AGENT, ENRICHED_QUEUE, enrichment_clauses
from recorder.catalog._rows import _RECORDING_COLS_AS_R, TransactionSource, _recording
from recorder.catalog._textindex import check_macs, token_stats
from recorder.catalog.search import (
    AGENT_ROLES,
    CALLER_ROLES,
    RecordingQuery,
    SearchHit,
    SearchPage,
    decode_cursor,
    encode_cursor,
)
from recorder.errors import CatalogError

MAX_PAGE: Final = 1_000

_ON_HOLD: Final = """EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_ms IS NULL AND (
        (h.scope = 'recording' AND h.scope_value = r.recording_id)
        OR (h.scope = 'instance' AND h.scope_value = r.instance_id)))"""


def _in_list(values: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in values)


def _role_select(roles: tuple[str, ...]) -> str:
    return f"""SELECT p.recording_id FROM participants p
            WHERE p.role IN ({_in_list(roles)}) AND p.user_id = ?
            UNION SELECT p.recording_id FROM participants p
            WHERE p.role IN ({_in_list(roles)}) AND LOWER(p.user_name) = LOWER(?)"""


def _role_clause(roles: tuple[str, ...]) -> str:
    return f"r.recording_id IN ({_role_select(roles)})"


def _clauses(query: RecordingQuery) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if query.product is not None:
        clauses.append("r.product = ?")
        params.append(query.product.value)
    if query.since_ms is not None:
        clauses.append("(r.ended_ms IS NULL OR r.ended_ms >= ?)")
        params.append(query.since_ms)
    if query.until_ms is not None:
        clauses.append("r.started_ms < ?")
        params.append(query.until_ms)
    if query.statuses:
        clauses.append(f"r.status IN ({_in_list(tuple(s.value for s in query.statuses))})")
        params.extend(s.value for s in query.statuses)
    if query.any_id is not None:
        # One indexed lookup per id column, unioned: an OR across columns would make both
        # engines walk every recording.
        clauses.append(
            """r.recording_id IN (
                SELECT recording_id FROM recordings WHERE recording_id = ?
                UNION SELECT recording_id FROM recordings WHERE instance_id = ?
                UNION SELECT recording_id FROM recordings WHERE rtms_stream_id = ?
                UNION SELECT recording_id FROM recordings WHERE meeting_number = ?
                UNION SELECT recording_id FROM recordings WHERE account_id = ?
                UNION SELECT recording_id FROM recordings WHERE operator_id = ?
                UNION SELECT recording_id FROM recordings WHERE cc_queue_id = ?
                UNION SELECT recording_id FROM recordings WHERE cc_agent_id = ?
                UNION SELECT p.recording_id FROM participants p WHERE p.user_id = ?)"""
        )
        params.extend([query.any_id] * 9)
    if query.participant is not None:
        clauses.append(
            """r.recording_id IN (SELECT p.recording_id FROM participants p WHERE p.user_id = ?
                UNION SELECT p.recording_id FROM participants p
                WHERE LOWER(p.user_name) = LOWER(?))"""
        )
        params.extend([query.participant] * 2)
    if query.agent is not None:
        clauses.append(
            f"""r.recording_id IN (
                SELECT recording_id FROM recordings WHERE cc_agent_id = ?
                UNION SELECT recording_id FROM recordings WHERE LOWER(cc_agent_name) = LOWER(?)
                UNION {_role_select(AGENT_ROLES)}
                UNION {ENRICHED_AGENT})"""
        )
        params.extend([query.agent, query.agent])
        params.extend([*AGENT_ROLES, query.agent, *AGENT_ROLES, query.agent])
        params.extend([query.agent] * 3)
    if query.caller is not None:
        clauses.append(_role_clause(CALLER_ROLES))
        params.extend([*CALLER_ROLES, query.caller, *CALLER_ROLES, query.caller])
    if query.queue is not None:
        # The recording's own columns or its enrichment: a UNION of indexed look-ups (an OR
        # with a subquery would walk every recording).
        clauses.append(
            f"""r.recording_id IN (SELECT recording_id FROM recordings WHERE cc_queue_id = ?
                UNION SELECT recording_id FROM recordings
                    WHERE LOWER(cc_queue_name) = LOWER(?)
                UNION {ENRICHED_QUEUE})"""
        )
        params.extend([query.queue, query.queue, query.queue, query.queue])
    enriched_clauses, enriched_params = enrichment_clauses(query)
    clauses.extend(enriched_clauses)
    params.extend(enriched_params)
    # Gaps are common (a few percent of recordings): walking recordings newest first and
    # probing each one's gaps finds a page long before materialising every gapped recording.
    # (Scalar probes, not EXISTS, which PostgreSQL turns into a semi-join over every gap row.)
    if query.gap_cause is not None:
        clauses.append(
            "(SELECT 1 FROM gaps g WHERE g.recording_id = r.recording_id AND g.cause = ?"
            " LIMIT 1) IS NOT NULL"
        )
        params.append(query.gap_cause)
    elif query.has_gaps:
        clauses.append(
            "(SELECT 1 FROM gaps g WHERE g.recording_id = r.recording_id LIMIT 1) IS NOT NULL"
        )
    if query.on_hold:
        clauses.append(
            """r.recording_id IN (
                SELECT h.scope_value FROM legal_holds h
                WHERE h.released_ms IS NULL AND h.scope = 'recording'
                UNION SELECT held.recording_id FROM recordings held JOIN legal_holds h
                    ON h.scope = 'instance' AND h.scope_value = held.instance_id
                WHERE h.released_ms IS NULL)"""
        )
    if query.policy is not None:
        clauses.append("r.policy_name = ?")
        params.append(query.policy)
    return clauses, params


def _text_clauses(query: RecordingQuery) -> tuple[list[str], list[object]]:
    """Clauses on ``t0``, the rarest word's postings (``query.text_macs`` rarest first).

    The search walks those postings newest first (``transcript_tokens_by_time``, migration 18)
    and probes each for the other words, so it stops once a page is full: its cost is the
    postings walked, about ``limit / share of them holding the other words``, never all of a
    common word's recordings. Probes are scalar subqueries, not EXISTS: PostgreSQL would turn
    EXISTS into a semi-join that reads every posting of a common word before the first row.
    """
    rarest, *others = query.text_macs
    clauses = ["t0.token_mac = ?"]
    params: list[object] = [rarest]
    for mac in others:
        clauses.append(
            "(SELECT 1 FROM transcript_tokens t WHERE t.token_mac = ?"
            " AND t.recording_id = t0.recording_id LIMIT 1) IS NOT NULL"
        )
        params.append(mac)
    if query.until_ms is not None:
        # Same condition as ``r.started_ms < ?`` (the posting's copy), but on the walked
        # index: the walk starts at the end of the range instead of filtering down to it.
        clauses.append("t0.started_ms < ?")
        params.append(query.until_ms)
    return clauses, params


def _after_clause(query: RecordingQuery, table: str) -> tuple[list[str], list[object]]:
    if query.after is None:
        return [], []
    try:
        started, recording_id = decode_cursor(query.after)
    except ValueError as exc:
        raise CatalogError(f"search_recordings: {exc}") from exc
    return (
        [f"({table}.started_ms < ? OR ({table}.started_ms = ? AND {table}.recording_id < ?))"],
        [started, started, recording_id],
    )


def search_sql(query: RecordingQuery) -> tuple[str, list[object]]:
    """The statement ``search_recordings`` runs (``?`` placeholders): pure, so tests can
    EXPLAIN exactly it. ``query.text_macs`` must already be ordered rarest first."""
    clauses, params = _clauses(query)
    # The table walked newest first: the rarest word's postings, or the recordings.
    walked, source = "r", "recordings r"
    if query.text_macs:
        text, text_params = _text_clauses(query)
        walked = "t0"
        source = "transcript_tokens t0 JOIN recordings r ON r.recording_id = t0.recording_id"
        clauses, params = text + clauses, text_params + params
    after, after_params = _after_clause(query, walked)
    clauses += after
    params += after_params
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    params.append(query.limit + 1)
    sql = f"""SELECT {_RECORDING_COLS_AS_R},
            (SELECT COUNT(*) FROM gaps g WHERE g.recording_id = r.recording_id),
            (SELECT COALESCE(SUM(g.end_ms - g.start_ms), 0) FROM gaps g
                WHERE g.recording_id = r.recording_id),
            CASE WHEN {_ON_HOLD} THEN 1 ELSE 0 END,
            (SELECT COUNT(*) FROM participants p WHERE p.recording_id = r.recording_id)
        FROM {source} {where}
        ORDER BY {walked}.started_ms DESC, {walked}.recording_id DESC
        LIMIT ?"""
    return sql, params


class SearchQueries(TransactionSource):
    def search_recordings(self, query: RecordingQuery) -> SearchPage:
        if not 1 <= query.limit <= MAX_PAGE:
            raise CatalogError(f"search_recordings: limit must be 1..{MAX_PAGE}, got {query.limit}")
        check_macs(query.text_macs)
        with self._transaction("search_recordings", write=False) as tx:
            if query.text_macs:
                counts, _ = token_stats(tx, query.text_macs)
                if min(counts.values()) == 0:
                    return SearchPage((), None)
                ordered = tuple(sorted(counts, key=lambda mac: (counts[mac], mac)))
                query = dataclasses.replace(query, text_macs=ordered)
            rows = tx.fetchall(*search_sql(query))
        hits = [
            SearchHit(
                _recording(row[:-4]),
                gap_count=int(row[-4]),
                gap_ms=int(row[-3]),
                on_hold=bool(row[-2]),
                participant_count=int(row[-1]),
            )
            for row in rows[: query.limit]
        ]
        cursor = None
        if len(rows) > query.limit:
            last = hits[-1].recording
            cursor = encode_cursor(last.started_ms, last.recording_id)
        return SearchPage(tuple(hits), cursor)
