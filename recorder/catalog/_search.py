"""``search_recordings``: the officer's search, one keyset page at a time (both engines).

Each filter is a clause over ``recordings r`` chosen in code, values always bound. Rare matches
on other tables (a name, an id) are ``r.recording_id IN (SELECT ... UNION ...)`` of indexed
lookups, so the engine starts from the selective side; common ones (gaps, a few percent of
recordings) are ``EXISTS`` probes while walking recordings newest first, which finds a page
without collecting every match. Migration 14 adds the indexes these clauses use. A queue or
agent (thousands of recordings each) drives the search instead: a UNION of newest-first walks,
one per place it can be named, each stopping at the page (migration 19's indexes).
"""

# ruff: noqa: S608
# S608 (SQL built from strings) is waived here: every interpolated piece is a module constant or a
# fixed clause chosen in code, and every value is a bound parameter.
from __future__ import annotations

import dataclasses
from typing import Final

from recorder.catalog._completeness import enrichment_clauses
from recorder.catalog._rows import _RECORDING_COLS_AS_R, TransactionSource, _recording
from recorder.catalog._textindex import check_macs, token_stats
from recorder.catalog.schema import Engine
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


#: Where a recording names a queue or an agent, one indexed look-up per place: (source, condition
#: with one ``?`` for the value, whether a recording can come twice). An enrichment is one per
#: (product, instance), so only participants repeat a recording (two people of one name).
_Branch = tuple[str, str, bool]
_ON_RECORDINGS: Final = "recordings r"
_ON_ENRICHMENT: Final = (
    "enrichments e JOIN recordings r ON r.instance_id = e.instance_id AND r.product = e.product"
)
_ON_PARTICIPANT: Final = "participants p JOIN recordings r ON r.recording_id = p.recording_id"
_AGENT_ROLE_IN: Final = f"p.role IN ({_in_list(AGENT_ROLES)})"
_QUEUE_BRANCHES: Final[tuple[_Branch, ...]] = (
    (_ON_RECORDINGS, "r.cc_queue_id = ?", False),
    (_ON_RECORDINGS, "LOWER(r.cc_queue_name) = LOWER(?)", False),
    (_ON_ENRICHMENT, "e.queue_id = ?", False),
    (_ON_ENRICHMENT, "LOWER(e.queue_name) = LOWER(?)", False),
)
_AGENT_BRANCHES: Final[tuple[_Branch, ...]] = (
    (_ON_RECORDINGS, "r.cc_agent_id = ?", False),
    (_ON_RECORDINGS, "LOWER(r.cc_agent_name) = LOWER(?)", False),
    (_ON_PARTICIPANT, f"{_AGENT_ROLE_IN} AND p.user_id = ?", True),
    (_ON_PARTICIPANT, f"{_AGENT_ROLE_IN} AND LOWER(p.user_name) = LOWER(?)", True),
    (_ON_ENRICHMENT, "e.agent_id = ?", False),
    (_ON_ENRICHMENT, "LOWER(e.agent_name) = LOWER(?)", False),
    (_ON_ENRICHMENT, "LOWER(e.agent_email) = LOWER(?)", False),
)


def _branch_params(branch: _Branch, value: str) -> list[object]:
    roles: list[object] = list(AGENT_ROLES) if branch[0] == _ON_PARTICIPANT else []
    return [*roles, value]


def _union_select(branches: tuple[_Branch, ...]) -> str:
    return "\n            UNION ".join(
        f"SELECT r.recording_id FROM {source} WHERE {condition}"
        for source, condition, _ in branches
    )


_QUEUE_SELECT: Final = _union_select(_QUEUE_BRANCHES)
_AGENT_SELECT: Final = _union_select(_AGENT_BRANCHES)


def _agent_params(agent: str) -> list[object]:
    return [p for branch in _AGENT_BRANCHES for p in _branch_params(branch, agent)]


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
        clauses.append(f"r.recording_id IN ({_AGENT_SELECT})")
        params.extend(_agent_params(query.agent))
    if query.caller is not None:
        clauses.append(_role_clause(CALLER_ROLES))
        params.extend([*CALLER_ROLES, query.caller, *CALLER_ROLES, query.caller])
    if query.queue is not None:
        # The recording's own columns or its enrichment: a UNION of indexed look-ups (an OR
        # with a subquery would walk every recording). Used only where another filter drives
        # the walk (``--text``); otherwise ``_walks`` drives from the queue.
        clauses.append(f"r.recording_id IN ({_QUEUE_SELECT})")
        params.extend([query.queue] * 4)
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


def _text_clauses(query: RecordingQuery, engine: Engine) -> tuple[list[str], list[object]]:
    """Clauses on ``t0``, the rarest word's postings (``query.text_macs`` rarest first).

    The search walks those postings newest first (``transcript_tokens_by_time``, migration 18)
    and probes each for the other words, so it stops once a page is full: its cost is the
    postings walked, about ``limit / share of them holding the other words``, never all of a
    common word's recordings. Probes are scalar subqueries, not EXISTS: PostgreSQL would turn
    EXISTS into a semi-join that reads every posting of a common word before the first row.

    On PostgreSQL a probe names the whole walked key (word, start, recording), so it looks the
    posting up on ``transcript_tokens_by_time`` too: successive probes then land side by side,
    in the other word's postings in the same newest-first order, as a merge of the two walks
    would read them, a few index pages for a page of results. Probed on the recording (the
    planner took ``transcript_tokens_by_recording``), each landed on a page of its own: about
    2,000 page reads for two common words at a million recordings, most of the search's time
    once the index outgrows the server's shared buffers. The copies of a recording's start
    agree: ``add_transcript_tokens`` writes the current one under a row lock, and migration
    18's trigger follows a change. SQLite keeps the probe on the recording: given the start as
    well it picks the (unique) primary key, which does not cover the start, and would read the
    table once per probe.
    """
    rarest, *others = query.text_macs
    same_start = " AND t.started_ms = t0.started_ms" if engine is Engine.POSTGRES else ""
    clauses = ["t0.token_mac = ?"]
    params: list[object] = [rarest]
    for mac in others:
        clauses.append(
            "(SELECT 1 FROM transcript_tokens t WHERE t.token_mac = ?"
            f"{same_start} AND t.recording_id = t0.recording_id LIMIT 1) IS NOT NULL"
        )
        params.append(mac)
    if query.until_ms is not None:
        # Same condition as ``r.started_ms < ?`` (the posting's copy), but on the walked
        # index: the walk starts at the end of the range instead of filtering down to it.
        clauses.append("t0.started_ms < ?")
        params.append(query.until_ms)
    if query.after is not None:
        # Implied by the cursor's clause (an OR, which bounds no index scan): the next page's
        # walk starts at the cursor instead of walking down to it from the newest posting.
        clauses.append("t0.started_ms <= ?")
        params.append(_cursor(query.after)[0])
    return clauses, params


def _cursor(after: str) -> tuple[int, str]:
    try:
        return decode_cursor(after)
    except ValueError as exc:
        raise CatalogError(f"search_recordings: {exc}") from exc


def _after_clause(query: RecordingQuery, table: str) -> tuple[list[str], list[object]]:
    if query.after is None:
        return [], []
    started, recording_id = _cursor(query.after)
    return (
        [f"({table}.started_ms < ? OR ({table}.started_ms = ? AND {table}.recording_id < ?))"],
        [started, started, recording_id],
    )


def _walks(query: RecordingQuery) -> tuple[str, list[object]] | None:
    """The page's recording ids as a UNION of newest-first walks, one per place the queue (or
    else the agent) can be named, each with every other filter and stopping at ``limit + 1``:
    the page is the newest ``limit + 1`` of their union. The recordings' own columns are walked
    straight off ``recordings_by_{queue,agent}_*_started`` (migration 19); enrichments and
    participants hold no start, so those look-ups collect their matches and sort them. ``None``
    when neither filter is set, or the text index drives the walk."""
    if query.text_macs:
        return None
    if query.queue is not None:
        branches, value = _QUEUE_BRANCHES, query.queue
        rest = dataclasses.replace(query, queue=None)
    elif query.agent is not None:
        branches, value = _AGENT_BRANCHES, query.agent
        rest = dataclasses.replace(query, agent=None)
    else:
        return None
    clauses, params = _clauses(rest)
    after, after_params = _after_clause(query, "r")
    walks: list[str] = []
    walk_params: list[object] = []
    for branch in branches:
        source, condition, repeats = branch
        where = " AND ".join([condition, *clauses, *after])
        walks.append(
            f"""SELECT * FROM (SELECT {"DISTINCT " if repeats else ""}r.started_ms, r.recording_id
                FROM {source} WHERE {where}
                ORDER BY r.started_ms DESC, r.recording_id DESC LIMIT ?) w{len(walks)}"""
        )
        walk_params += [*_branch_params(branch, value), *params, *after_params, query.limit + 1]
    union = "\n            UNION ".join(walks)
    sql = f"""SELECT recording_id FROM ({union}) walks
            ORDER BY started_ms DESC, recording_id DESC LIMIT ?"""
    return sql, [*walk_params, query.limit + 1]


def search_sql(query: RecordingQuery, engine: Engine) -> tuple[str, list[object]]:
    """The statement ``search_recordings`` runs (``?`` placeholders): pure, so tests can
    EXPLAIN exactly it. ``query.text_macs`` must already be ordered rarest first."""
    walks = _walks(query)
    if walks is not None:
        # Everything is filtered inside the walks; this only reads the page's rows.
        clauses, params = [f"r.recording_id IN ({walks[0]})"], list(walks[1])
    else:
        clauses, params = _clauses(query)
    # The table walked newest first: the rarest word's postings, or the recordings.
    walked, source = "r", "recordings r"
    if query.text_macs:
        text, text_params = _text_clauses(query, engine)
        walked = "t0"
        source = "transcript_tokens t0 JOIN recordings r ON r.recording_id = t0.recording_id"
        clauses, params = text + clauses, text_params + params
    if walks is None:
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
    engine: Engine

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
            rows = tx.fetchall(*search_sql(query, self.engine))
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
