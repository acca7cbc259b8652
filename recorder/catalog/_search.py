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
#: A word in at most this many recordings always drives a text search (a few ms of index).
DRIVE_ALWAYS: Final = 5_000

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


def _clauses(query: RecordingQuery, *, text_drives: bool = False) -> tuple[list[str], list[object]]:
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
    if query.text_macs:
        # Ordered rarest first by ``search_recordings``. Driving: every recording of the
        # rarest word, each probed for the others (cost: that word's recordings). Walking:
        # recordings newest first, each probed for every word (cost: recordings walked until
        # a page is full), chosen when all the words are common.
        rarest, *others = query.text_macs
        probes = "".join(
            f" AND EXISTS (SELECT 1 FROM transcript_tokens t{n} WHERE t{n}.token_mac = ?"
            f" AND t{n}.recording_id = t0.recording_id)"
            for n in range(1, len(others) + 1)
        )
        if text_drives:
            clauses.append(
                "r.recording_id IN (SELECT t0.recording_id FROM transcript_tokens t0"
                f" WHERE t0.token_mac = ?{probes})"
            )
            params += [rarest, *others]
        else:
            # A scalar probe per recording, not EXISTS: PostgreSQL would turn EXISTS into a
            # semi-join that reads every recording of a common word before the first row.
            for mac in query.text_macs:
                clauses.append(
                    "(SELECT 1 FROM transcript_tokens t WHERE t.token_mac = ?"
                    " AND t.recording_id = r.recording_id LIMIT 1) IS NOT NULL"
                )
                params.append(mac)
    if query.after is not None:
        try:
            started, recording_id = decode_cursor(query.after)
        except ValueError as exc:
            raise CatalogError(f"search_recordings: {exc}") from exc
        clauses.append("(r.started_ms < ? OR (r.started_ms = ? AND r.recording_id < ?))")
        params.extend([started, started, recording_id])
    return clauses, params


def _drive(limit: int, counts: list[int], indexed: int) -> bool:
    """Drive from the rarest word unless walking the newest recordings is expected cheaper:
    with every word in a share ``c / indexed`` of recordings, independently, a walk probes
    about ``limit / product(shares)`` recordings (each with every word) to fill a page."""
    if counts[0] <= DRIVE_ALWAYS or indexed <= 0:
        return True
    density = 1.0
    for count in counts:
        density *= min(1.0, count / indexed)
    walked = limit / max(density, 1e-12)
    return counts[0] <= walked * len(counts)


class SearchQueries(TransactionSource):
    def search_recordings(self, query: RecordingQuery) -> SearchPage:
        if not 1 <= query.limit <= MAX_PAGE:
            raise CatalogError(f"search_recordings: limit must be 1..{MAX_PAGE}, got {query.limit}")
        check_macs(query.text_macs)
        with self._transaction("search_recordings", write=False) as tx:
            text_drives = False
            if query.text_macs:
                counts, indexed = token_stats(tx, query.text_macs)
                if min(counts.values()) == 0:
                    return SearchPage((), None)
                ordered = tuple(sorted(counts, key=lambda mac: (counts[mac], mac)))
                query = dataclasses.replace(query, text_macs=ordered)
                text_drives = _drive(query.limit, [counts[mac] for mac in ordered], indexed)
            clauses, params = _clauses(query, text_drives=text_drives)
            where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
            params.append(query.limit + 1)
            rows = tx.fetchall(
                f"""SELECT {_RECORDING_COLS_AS_R},
                        (SELECT COUNT(*) FROM gaps g WHERE g.recording_id = r.recording_id),
                        (SELECT COALESCE(SUM(g.end_ms - g.start_ms), 0) FROM gaps g
                            WHERE g.recording_id = r.recording_id),
                        CASE WHEN {_ON_HOLD} THEN 1 ELSE 0 END,
                        (SELECT COUNT(*) FROM participants p
                            WHERE p.recording_id = r.recording_id)
                    FROM recordings r {where}
                    ORDER BY r.started_ms DESC, r.recording_id DESC
                    LIMIT ?""",
                params,
            )
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
